"""pix2pix_jax command line: `python main.py --workdir=W [--config=configs/default.py[:tiny]]`.

After training: `--mode=eval`, `--mode=predict --input=FILE_OR_DIR --output=DIR` and
`--mode=export --output=FILE` read W's saved config, with `--config.KEY=VALUE` on top, and
the weights `--checkpoint=latest|best|STEP` picks.

Flags set the run; the config (ml_collections, `--config.KEY=VALUE` to override) sets the model,
data and schedule. All work is done by library functions that the tests call directly.
"""

import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from pix2pix_jax import configuration
from pix2pix_jax import parallel
from pix2pix_jax import train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and the run's config.")
flags.DEFINE_enum("mode", "train", ["train", "eval", "predict", "export"],
                  "What to do with the workdir.")
flags.DEFINE_string("input", None, "predict: an image file or a folder of images.")
flags.DEFINE_string("output", None, "predict: the output folder; export: the output file.")
flags.DEFINE_string("checkpoint", "latest", "eval/predict/export: latest, best or a step.")
config_flags.DEFINE_config_file(
    "config", "configs/default.py", "A config file (`path.py[:variant]`).", lock_config=True)
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.mode in ("eval", "predict", "export"):
    return run_on_workdir(FLAGS.mode)
  config = FLAGS.config
  try:
    configuration.validate(config)
    parallel.check_batch_size(config.batch_size)
  except configuration.ConfigError as e:
    raise app.UsageError(str(e)) from None
  logging.info("JAX devices: %s (process %d of %d).", jax.devices(), jax.process_index(),
               jax.process_count())
  if FLAGS.mode == "train":
    try:
      train.train_and_evaluate(config, FLAGS.workdir)
    except configuration.ConfigError as e:
      raise app.UsageError(str(e)) from None
    except train.NonFiniteError as e:
      logging.error("%s", e)
      sys.exit(1)


def run_on_workdir(mode: str) -> None:
  """eval / predict / export with W's saved config and the command line's overrides."""
  from pix2pix_jax import evaluation, export, translator, writers  # pylint: disable=g-import-not-at-top
  needed = {"eval": (), "predict": ("input", "output"), "export": ("output",)}[mode]
  missing = [f"--{name}" for name in needed if not FLAGS[name].value]
  if missing:
    raise app.UsageError(f"--mode={mode} needs {' and '.join(missing)}.")
  writers.quiet_library_logs()
  overrides = config_flags.get_override_values(FLAGS["config"])
  try:
    if mode == "eval":
      summary = evaluation.evaluate_workdir(FLAGS.workdir, checkpoint=FLAGS.checkpoint,
                                            overrides=overrides)
      print(evaluation.format_table(summary))
    elif mode == "predict":
      model = translator.Translator.from_workdir(
          FLAGS.workdir, checkpoint=FLAGS.checkpoint, config_overrides=overrides)
      written, failed = evaluation.predict_path(model, FLAGS.input, FLAGS.output)
      print(f"Wrote {len(written)} image(s) to {FLAGS.output}; skipped {len(failed)}.")
      for path, reason in failed:
        print(f"  skipped {path}: {reason}")
    else:
      info = export.export_workdir(FLAGS.workdir, FLAGS.output, checkpoint=FLAGS.checkpoint,
                                   overrides=overrides)
      print(f"Exported to {FLAGS.output} ({info['norm_mode']} norm mode; see "
            f"{FLAGS.output}.json).")
  except (FileNotFoundError, ValueError) as e:  # ConfigError is a ValueError.
    raise app.UsageError(str(e)) from None


if __name__ == "__main__":
  app.run(main)
