"""pix2pix_jax command line: `python main.py --workdir=W [--config=configs/default.py[:tiny]]`.

`--mode=train` (the default) trains or resumes (`--init_from=W2`: a new run from W2's
weights); `--mode=import_torch --torch_generator=G.pth
[--torch_discriminator=D.pth]` writes a workdir from the PyTorch reference's weights, which
training then fine-tunes; `--mode=prepare_data` builds and checks the config's dataset without
training, prints its report (JSON) and, given a --workdir, writes it to W/data_report.json.
After training: `--mode=eval`, `--mode=predict --input=FILE_OR_DIR --output=DIR` and
`--mode=export --output=FILE` read W's saved config, with `--config.KEY=VALUE` on top, and
the weights `--checkpoint=latest|best|STEP` picks. Training on several processes (hosts):
`--coordinator_address=HOST:PORT --num_processes=N --process_id=I` on each, or nothing under
SLURM or on a TPU pod slice (auto-detected); see pix2pix_jax/distributed.py.

Flags set the run; the config (ml_collections, `--config.KEY=VALUE` to override) sets the model,
data and schedule. All work is done by library functions that the tests call directly.
"""

import json
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from pix2pix_jax import configuration
from pix2pix_jax import datasets
from pix2pix_jax import distributed
from pix2pix_jax import parallel
from pix2pix_jax import torch_import
from pix2pix_jax import train
from pix2pix_jax import writers

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and the run's config "
                    "(required, except by prepare_data, where it only gets data_report.json).")
flags.DEFINE_enum("mode", "train",
                  ["train", "eval", "predict", "export", "prepare_data", "import_torch"],
                  "train: train (or resume) into the workdir; eval / predict / export: use a "
                  "trained workdir; prepare_data: build and check the dataset only; "
                  "import_torch: a workdir from PyTorch reference weights.")
flags.DEFINE_string("input", None, "predict: an image file or a folder of images.")
flags.DEFINE_string("output", None, "predict: the output folder; export: the output file; "
                    "eval: the report folder (default W/eval).")
flags.DEFINE_string("checkpoint", "latest", "eval/predict/export: latest, best or a step.")
flags.DEFINE_string("torch_generator", None,
                    "--mode=import_torch: the reference's generator state_dict (latest_net_G.pth).")
flags.DEFINE_string("torch_discriminator", None,
                    "--mode=import_torch: the reference's discriminator state_dict (optional).")
# Multi-process training (jax.distributed); unset: auto-detected (SLURM, TPU pods) or one process.
flags.DEFINE_string("coordinator_address", None, "train, several processes: process 0's HOST:PORT.")
flags.DEFINE_integer("num_processes", None, "train, several processes: how many in all.")
flags.DEFINE_integer("process_id", None, "train, several processes: this one's index, 0..N-1.")
flags.DEFINE_string("init_from", "", "--mode=train: start a new run (step 0, fresh Adam) from "
                    "this workdir's latest weights (the reference's --continue_train into a "
                    "new run); ignored when --workdir already holds checkpoints.")


def exit_on_unknown_config_key(error: Exception, argv) -> None:
  """One line, not a traceback, for a mistyped `--config.KEY` (ml_collections raises
  KeyError / AttributeError with "Did you mean ..." while the config flag is defined)."""
  hint = str(error.args[0] if error.args else error)
  if hint.startswith("'") and hint.endswith("'"):  # an AttributeError wraps the KeyError's repr.
    hint = hint[1:-1].replace("\\n", "\n").replace("\\'", "'")
  hint = " ".join(hint.split())
  key = hint.split()[0].strip("'") if hint else ""
  culprit = next((arg.split("=")[0] for arg in argv[1:] if arg.startswith("--config.")
                  and key in arg.split("=")[0].split(".")), "a --config.KEY flag")
  print(f"FATAL Flags parsing error: {culprit} names no config key: {hint}", file=sys.stderr)
  sys.exit(1)


try:
  config_flags.DEFINE_config_file(
      "config", "configs/default.py", "A config file (`path.py[:variant]`).", lock_config=True)
except (KeyError, AttributeError) as e:  # raised while sys.argv's overrides are applied.
  exit_on_unknown_config_key(e, sys.argv)


def prepare_data(config, workdir):
  """Builds and checks the dataset; prints the report; exits 1 listing bad files."""
  try:
    data = datasets.prepare(config.data, seed=config.seed)
  except configuration.DataError as e:
    if workdir and e.report:
      datasets.write_report(workdir, e.report)
    logging.error("%s", e)
    sys.exit(1)
  except configuration.ConfigError as e:
    raise app.UsageError(str(e)) from None
  if workdir:
    datasets.write_report(workdir, data.report)
  print(json.dumps(data.report, indent=1))


def main(argv):
  writers.quiet_library_logs()  # the console is for a person; W/train.log gets it all.
  if FLAGS.mode == "train":
    writers.buffer_logs()
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.mode != "prepare_data" and not FLAGS.workdir:
    raise app.UsageError(f"--workdir is required for --mode={FLAGS.mode}.")
  if FLAGS.mode != "import_torch" and (FLAGS.torch_generator or FLAGS.torch_discriminator):
    raise app.UsageError("--torch_generator / --torch_discriminator need --mode=import_torch.")
  start_processes()  # before anything touches a device.
  if FLAGS.init_from and FLAGS.mode != "train":
    raise app.UsageError("--init_from needs --mode=train.")
  if FLAGS.mode in ("eval", "predict", "export"):
    return run_on_workdir(FLAGS.mode)
  config = FLAGS.config
  try:
    configuration.validate(config)
    if FLAGS.mode == "train":
      parallel.check_batch_size(config.batch_size)
  except configuration.ConfigError as e:
    raise app.UsageError(str(e)) from None
  if FLAGS.mode == "import_torch":
    import_torch(config)
    return
  logging.info("Devices: %d x %s (process %d of %d).", jax.device_count(), jax.default_backend(),
               jax.process_index(),
               jax.process_count())
  if FLAGS.mode == "prepare_data":
    prepare_data(config, FLAGS.workdir)
  elif FLAGS.mode == "train":
    try:
      train.train_and_evaluate(config, FLAGS.workdir, init_from=FLAGS.init_from)
    except configuration.DataError as e:
      logging.error("%s", e)
      sys.exit(1)
    except configuration.ConfigError as e:
      raise app.UsageError(str(e)) from None
    except train.NonFiniteError as e:
      logging.error("%s", e)
      sys.exit(1)


def start_processes():
  """--mode=train on several processes: jax.distributed from the flags or the cluster."""
  multi_process_flags = (FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  if FLAGS.mode != "train":
    if any(flag is not None for flag in multi_process_flags):
      raise app.UsageError("--coordinator_address / --num_processes / --process_id are for "
                           "--mode=train.")
    return
  try:
    distributed.initialize(*multi_process_flags)
  except configuration.ConfigError as e:
    raise app.UsageError(str(e)) from None


def import_torch(config):
  """--mode=import_torch: reference .pth files -> a weights-only workdir."""
  if not FLAGS.torch_generator:
    raise app.UsageError("--mode=import_torch needs --torch_generator=PATH (a .pth state_dict).")
  try:
    workdir = torch_import.import_torch_weights(
        FLAGS.workdir, config, FLAGS.torch_generator, FLAGS.torch_discriminator)
  except (configuration.ConfigError, ImportError, FileNotFoundError) as e:
    raise app.UsageError(str(e)) from None
  logging.info("Wrote %s: train (fine-tune) from it with --workdir=%s.", workdir, workdir)


def run_on_workdir(mode: str) -> None:
  """eval / predict / export with W's saved config and the command line's overrides."""
  from pix2pix_jax import evaluation, export, translator  # pylint: disable=g-import-not-at-top
  needed = {"eval": (), "predict": ("input", "output"), "export": ("output",)}[mode]
  missing = [f"--{name}" for name in needed if not FLAGS[name].value]
  if missing:
    raise app.UsageError(f"--mode={mode} needs {' and '.join(missing)}.")
  overrides = config_flags.get_override_values(FLAGS["config"])
  try:
    if mode == "eval":
      summary = evaluation.evaluate_workdir(FLAGS.workdir, checkpoint=FLAGS.checkpoint,
                                            overrides=overrides, out_dir=FLAGS.output)
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
