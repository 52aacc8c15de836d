"""The PyTorch reference's side of `python -m benchmarks.throughput --reference` (one process).

Times `torch_reference.ReferencePix2Pix.optimize_parameters` (the reference's train step:
G forward, D update, G update through the new D, two Adams) on random NCHW batches at
`--batch_size`, or the reference generator's inference (eval mode under no_grad = our
`running`; train mode = the reference's default test.py, our `paper`), for the networks of
`--config`. Imports torch and nothing of JAX, so its peak memory is the reference's own.
Prints one JSON line. throughput.py starts it in fresh processes pinned to the same cores as
ours; run alone it is:

  python -m benchmarks.reference_timing --config=configs/default.py --task=train --batch_size=1
"""

import json
import resource
import sys
import time

from absl import app
from absl import flags
from ml_collections import config_flags
import numpy as np

from benchmarks.timing import median_seconds
from benchmarks.timing import pin_threads

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/default.py", "Model config.",
                                lock_config=True)
flags.DEFINE_enum("task", "train", ["train", "infer"], "What to time.")
flags.DEFINE_integer("batch_size", 1, "Batch size of the timed train step.")
flags.DEFINE_integer("steps", 7, "Timed train steps (after 2 warm-up steps).")
flags.DEFINE_integer("infer_repeats", 20, "Timed generator calls per setting.")
flags.DEFINE_integer("infer_batch_size", 8, "Batch size of the inference-throughput setting.")
flags.DEFINE_integer("matmul_size", 2048, "Side of the square matmul that measures the peak.")
flags.DEFINE_integer("threads", 0, "Cores to pin to and torch's intra-op threads (0: all).")
flags.DEFINE_float("start_time", None, "time.time() when the parent started this process "
                   "(for first_step_s); default: when main() starts.")


def main(argv):
  del argv
  start_time = FLAGS.start_time or time.time()
  threads = pin_threads(FLAGS.threads)
  import torch  # pylint: disable=g-import-not-at-top
  from pix2pix_jax import torch_reference as ref  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(threads)
  torch.set_num_interop_threads(1)
  config = FLAGS.config

  def matmul_peak() -> float:
    a = torch.randn(FLAGS.matmul_size, FLAGS.matmul_size)
    torch.mm(a, a)
    best = min(median_seconds(lambda: torch.mm(a, a), 1) for _ in range(10))
    return 2 * FLAGS.matmul_size ** 3 / best / 1e9

  generator, discriminator = ref.networks_from_config(config.model, config.seed)
  rng = np.random.default_rng(0)
  size = config.data.crop_size

  def images(batch: int, channels: int) -> torch.Tensor:
    return torch.from_numpy(rng.uniform(-1, 1, (batch, channels, size, size)).astype(np.float32))
  record = {"side": "reference", "task": FLAGS.task, "torch": torch.__version__,
            "threads": threads}
  if FLAGS.task == "train":
    model = ref.ReferencePix2Pix(generator, discriminator, gan_mode=config.loss.gan,
                                 lambda_l1=float(config.loss.l1_weight), lr=config.optim.lr,
                                 beta1=config.optim.beta1)
    real_a = images(FLAGS.batch_size, config.model.input_channels)
    real_b = images(FLAGS.batch_size, config.model.output_channels)
    model.optimize_parameters(real_a, real_b)
    first_step_s = time.time() - start_time
    model.optimize_parameters(real_a, real_b)
    seconds = median_seconds(lambda: model.optimize_parameters(real_a, real_b), FLAGS.steps)
    record.update(batch_size=FLAGS.batch_size, step_s=seconds,
                  images_per_s=FLAGS.batch_size / seconds, first_step_s=first_step_s)
  else:
    net = generator
    for name, train_mode, batch in (("infer_latency_ms_bs1", False, 1),
                                    ("infer_latency_ms_bs1_paper", True, 1),
                                    ("infer_images_per_s_bs8", False, FLAGS.infer_batch_size)):
      net.train(train_mode)
      x = images(batch, config.model.input_channels)
      with torch.no_grad():
        net(x)
        seconds = median_seconds(lambda: net(x), FLAGS.infer_repeats)  # pylint: disable=cell-var-from-loop
      record[name] = seconds * 1e3 if name.startswith("infer_latency") else batch / seconds
  record["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  record["matmul_peak_gflops"] = max(matmul_peak() for _ in range(2))  # after the timing
  print(json.dumps(record), flush=True)


if __name__ == "__main__":
  sys.exit(app.run(main))
