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

from pix2pix_jax import compile_cache
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


def prepare_data():
  """--mode=prepare_data: builds and checks the dataset; prints the report (and writes it
  to W/data_report.json); a DataError lists the bad files."""
  config, workdir = checked_config("prepare_data"), FLAGS.workdir
  try:
    data = datasets.prepare(config.data, seed=config.seed)
  except configuration.DataError as e:
    if workdir and e.report:
      datasets.write_report(workdir, e.report)
    raise
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
  if FLAGS.init_from and FLAGS.mode != "train":
    raise app.UsageError("--init_from needs --mode=train.")
  try:
    start_processes()  # before anything touches a device.
    compile_cache.enable(FLAGS.config)  # before anything compiles.
    MODES[FLAGS.mode]()
  except (configuration.DataError, train.NonFiniteError) as e:  # the run's data or numbers.
    logging.error("%s", e)
    sys.exit(1)
  except (configuration.ConfigError, FileNotFoundError, ImportError, ValueError) as e:
    raise app.UsageError(str(e)) from None  # what the command line asked for.


def checked_config(mode: str):
  """--config, validated (and its batch checked against the devices for training)."""
  config = FLAGS.config
  configuration.validate(config)
  if mode == "train":
    parallel.check_batch_size(config.batch_size)
  logging.info("Devices: %d x %s (process %d of %d).", jax.device_count(),
               jax.default_backend(), jax.process_index(), jax.process_count())
  return config


def train_mode():
  """--mode=train: train or resume W (or start from --init_from's weights)."""
  train.train_and_evaluate(checked_config("train"), FLAGS.workdir, init_from=FLAGS.init_from)


def start_processes():
  """--mode=train on several processes: jax.distributed from the flags or the cluster."""
  multi_process_flags = (FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  if FLAGS.mode != "train":
    if any(flag is not None for flag in multi_process_flags):
      raise app.UsageError("--coordinator_address / --num_processes / --process_id are for "
                           "--mode=train.")
    return
  distributed.initialize(*multi_process_flags)


def import_torch():
  """--mode=import_torch: reference .pth files -> a weights-only workdir."""
  if not FLAGS.torch_generator:
    raise app.UsageError("--mode=import_torch needs --torch_generator=PATH (a .pth state_dict).")
  workdir = torch_import.import_torch_weights(
      FLAGS.workdir, checked_config("import_torch"), FLAGS.torch_generator,
      FLAGS.torch_discriminator)
  logging.info("Wrote %s: train (fine-tune) from it with --workdir=%s.", workdir, workdir)


def _workdir_inputs(mode: str):
  """eval / predict / export: the flags they need, and the command line's config overrides
  (applied on top of W's saved config)."""
  needed = {"eval": (), "predict": ("input", "output"), "export": ("output",)}[mode]
  missing = [f"--{name}" for name in needed if not FLAGS[name].value]
  if missing:
    raise app.UsageError(f"--mode={mode} needs {' and '.join(missing)}.")
  return config_flags.get_override_values(FLAGS["config"])


def eval_mode():
  """--mode=eval: scores W's generator on its test split in both norm modes."""
  from pix2pix_jax import evaluation  # pylint: disable=g-import-not-at-top
  summary = evaluation.evaluate_workdir(FLAGS.workdir, checkpoint=FLAGS.checkpoint,
                                        overrides=_workdir_inputs("eval"),
                                        out_dir=FLAGS.output)
  print(evaluation.format_sets_table(summary) if "sets" in summary
        else evaluation.format_table(summary))
  print(f"(scored by the {summary['protocol']} protocol, eval.protocol)")


def predict_mode():
  """--mode=predict: translates --input (a file or a folder) into --output."""
  from pix2pix_jax import evaluation, translator  # pylint: disable=g-import-not-at-top
  overrides = _workdir_inputs("predict")
  model = translator.Translator.from_workdir(
      FLAGS.workdir, checkpoint=FLAGS.checkpoint, config_overrides=overrides)
  written, failed = evaluation.predict_path(model, FLAGS.input, FLAGS.output)
  print(f"Wrote {len(written)} image(s) to {FLAGS.output}; skipped {len(failed)}.")
  for path, reason in failed:
    print(f"  skipped {path}: {reason}")


def export_mode():
  """--mode=export: W's generator as a serialised jax.export function (--output)."""
  from pix2pix_jax import export  # pylint: disable=g-import-not-at-top
  info = export.export_workdir(FLAGS.workdir, FLAGS.output, checkpoint=FLAGS.checkpoint,
                               overrides=_workdir_inputs("export"))
  print(f"Exported to {FLAGS.output} ({info['norm_mode']} norm mode; see "
        f"{FLAGS.output}.json).")


# --mode -> what it runs; main() turns their errors into messages.
MODES = {"train": train_mode, "eval": eval_mode, "predict": predict_mode,
         "export": export_mode, "prepare_data": prepare_data, "import_torch": import_torch}


if __name__ == "__main__":
  app.run(main)
