"""pix2pix_jax command line: `python main.py --workdir=W [--config=configs/default.py[:tiny]]`.

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
flags.DEFINE_enum("mode", "train", ["train"], "What to do with the workdir.")
config_flags.DEFINE_config_file(
    "config", "configs/default.py", "A config file (`path.py[:variant]`).", lock_config=True)
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
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


if __name__ == "__main__":
  app.run(main)
