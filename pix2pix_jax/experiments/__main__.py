"""`python -m pix2pix_jax.experiments --suite=losses|generators|patch_sizes --workdir=W
[--scale=cpu|small|paper|tiny] [--variants=A,B] [--config.KEY=VALUE ...]`

Trains and evaluates every variant of the suite and writes W/<suite>.md and W/<suite>.png
(see `pix2pix_jax.experiments`). Run it from the repository root. Running it again skips
the finished variants and resumes an interrupted one. `--config.KEY=VALUE` applies to every
variant (e.g. another data set), except the keys the suite varies.
"""

import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from configs import default
from configs.experiments import scales
from pix2pix_jax import configuration
from pix2pix_jax import experiments
from pix2pix_jax import writers

FLAGS = flags.FLAGS
flags.DEFINE_enum("suite", None, experiments.SUITES, "The paper's ablation to rerun.")
flags.DEFINE_string("workdir", None, "Where the runs, the table and the figure go.")
flags.DEFINE_enum("scale", scales.DEFAULT_SCALE, experiments.SCALES,
                  "cpu: configs/default.py:cpu for 5000 steps (64x64 crops, ~8 minutes a "
                  "variant on 2 cores); small: 128x128 crops at batch 1, 2000 steps; paper: "
                  "the paper's sizes and schedule (for a GPU); tiny: a smoke test.")
flags.DEFINE_list("variants", [], "Run only these variants (names in configs/experiments).")
config_flags.DEFINE_config_dict(
    "config", default.get_config(), "Overrides for every variant: --config.KEY=VALUE.")
flags.mark_flags_as_required(["suite", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  writers.quiet_library_logs()
  overrides = config_flags.get_override_values(FLAGS["config"])
  command = experiments.displayed_command(sys.argv[1:])
  try:
    experiments.run_suite(FLAGS.suite, FLAGS.workdir, scale=FLAGS.scale,
                          overrides=overrides, variants=FLAGS.variants, command=command)
  except configuration.DataError as e:
    print(e, file=sys.stderr)
    sys.exit(1)
  except configuration.ConfigError as e:
    raise app.UsageError(str(e)) from None
  except experiments.InterruptedRun as e:
    print(e, file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
