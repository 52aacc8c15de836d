"""Input pipeline throughput: `python benchmarks/input_pipeline.py [--num_train=64]`.

Builds (or reuses) a small synthetic_rain dataset at the default image size (or reads
your own: `--source=paired_folder --path=DIR`, any `data.source`), then reads
training batches with the default preprocessing (286 -> random 256 crop, flip) from the
main process (num_workers=0) and from one grain worker process. Prints one JSON line
per setting: {"num_workers", "batch_size", "examples_per_s", ...}, after one line with what
the default train step consumes on this machine (`train_step_examples_per_s`), so
`times_the_step` says how many times faster than training the pipeline is.
"""

import json
import os
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from configs import default
from pix2pix_jax import datasets
from pix2pix_jax import input_pipeline

FLAGS = flags.FLAGS
flags.DEFINE_string("cache_dir", None, "Dataset cache (default: the config's).")
flags.DEFINE_string("source", "synthetic_rain", "data.source to read.")
flags.DEFINE_string("path", "", "data.path (the dataset's folder for folder sources).")
flags.DEFINE_string("preprocess", "resize_and_crop", "data.preprocess.")
flags.DEFINE_integer("num_train", 64, "Training examples to build.")
flags.DEFINE_integer("batch_size", 1, "Global batch size (the paper's is 1).")
flags.DEFINE_integer("num_batches", 100, "Batches timed per setting, after 5 warm-up ones.")
flags.DEFINE_list("num_workers", ["0", "1"], "Worker process counts to time.")
flags.DEFINE_integer("train_steps", 3, "Train steps timed for the consumption line (0 = skip).")


def time_batches(config, source, num_batches: int) -> float:
  """Seconds to read `num_batches` batches, after a warm-up (worker start-up excluded)."""
  with input_pipeline.train_batches(config, source, start_step=0) as batches:
    for _ in range(5):
      next(batches)
    start = time.perf_counter()
    for _ in range(num_batches):
      next(batches)
    return time.perf_counter() - start


def main(argv):
  del argv
  config = default.get_config()
  config.batch_size = FLAGS.batch_size
  config.data.synthetic.num_train = FLAGS.num_train
  config.data.synthetic.num_test = 4
  config.data.update(source=FLAGS.source, path=FLAGS.path, preprocess=FLAGS.preprocess)
  if FLAGS.cache_dir:
    config.data.cache_dir = FLAGS.cache_dir
  sources = datasets.get_data_sources(config.data, seed=config.seed)
  consumed = None
  if FLAGS.train_steps:  # what the train step consumes, to compare the pipeline with.
    from benchmarks import throughput  # pylint: disable=g-import-not-at-top
    step = throughput.time_train(config, config.batch_size, FLAGS.train_steps)
    consumed = round(step["images_per_s"], 2)
    print(json.dumps({"train_step_examples_per_s": consumed,
                      "batch_size": config.batch_size}), flush=True)
  for num_workers in map(int, FLAGS.num_workers):
    config.data.num_workers = num_workers
    seconds = time_batches(config, sources["train"], FLAGS.num_batches)
    print(json.dumps({
        "source": config.data.source, "preprocess": config.data.preprocess,
        "num_workers": num_workers, "batch_size": config.batch_size,
        "crop_size": config.data.crop_size, "prefetch": config.data.prefetch,
        "examples_per_s": round(FLAGS.num_batches * config.batch_size / seconds, 1),
        "cpu_count": os.cpu_count(), "train_step_examples_per_s": consumed,
        "times_the_step": (round(FLAGS.num_batches * config.batch_size / seconds / consumed, 1)
                           if consumed else None)}), flush=True)


if __name__ == "__main__":
  app.run(main)
