"""Training and inference speed: `python -m benchmarks.throughput --config=configs/default.py`.

Times the real jitted, pmapped train step (D + G update, donated state) on batches already on
the device, and the jitted generator at batch 1 (both norm modes) and batch 8. Prints one JSON
line per measurement while it runs and, as its LAST line, one JSON object with everything:

  train_images_per_s, train_images_per_s_bs4   median over --steps timed steps (after warm-up)
  infer_latency_ms_bs1 (running mode), infer_latency_ms_bs1_paper, infer_images_per_s_bs8
  compile_s            compilation of the batch-1 train step
  train_gflop_per_image  XLA's cost analysis of the batch-1 step
  matmul_peak_gflops   a large matmul in the model's dtype, best of the start and end of the run
  fraction_of_peak     train_images_per_s * train_gflop_per_image / matmul_peak_gflops
  peak_rss_mb          the process's peak resident memory

Any config key can be overridden, e.g. `--config.model.conv_impl=xla` (the plain XLA
convolutions) or `--config.model.dtype=bfloat16`; `--train_batch_sizes=1,16,64` on a GPU. The
same script runs unchanged on a GPU or TPU (one device is used).
"""

import json
import platform
import resource
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np

from pix2pix_jax import inference
from pix2pix_jax import models
from pix2pix_jax import parallel
from pix2pix_jax import step as step_lib

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/default.py", "Model config.",
                                lock_config=True)
flags.DEFINE_integer("steps", 7, "Timed train steps per batch size (after 2 warm-up steps).")
flags.DEFINE_list("train_batch_sizes", ["1", "4"], "Batch sizes to time the train step at.")
flags.DEFINE_integer("infer_repeats", 20, "Timed generator calls per setting.")
flags.DEFINE_integer("infer_batch_size", 8, "Batch size of the inference-throughput setting.")
flags.DEFINE_integer("matmul_size", 2048, "Side of the square matmul that measures the peak.")


def emit(record: dict) -> None:
  print(json.dumps(record), flush=True)


def median_seconds(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def matmul_peak_gflops(dtype, size: int = 2048, repeats: int = 10) -> float:
  """Best of `repeats` jitted size x size matmuls: the machine's practical matmul peak."""
  a = jnp.asarray(np.random.default_rng(0).standard_normal((size, size)), dtype)
  matmul = jax.jit(jnp.dot)
  matmul(a, a).block_until_ready()
  best = min(median_seconds(lambda: matmul(a, a), 1) for _ in range(repeats))
  return 2 * size ** 3 / best / 1e9


def random_batch(config, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  size = config.data.crop_size
  shape = (batch_size, size, size)
  return {
      "input": rng.uniform(-1, 1, shape + (config.model.input_channels,)).astype(np.float32),
      "target": rng.uniform(-1, 1, shape + (config.model.output_channels,)).astype(np.float32),
      "index": np.arange(batch_size, dtype=np.int32),
  }


def time_train(config, batch_size: int, steps: int) -> dict:
  """Images/s of the train step at `batch_size` on one device, plus compile time and FLOPs."""
  devices = jax.local_devices()[:1]
  config = config.copy_and_resolve_references()
  config.batch_size = batch_size
  pix2pix = step_lib.Pix2Pix.from_config(config)
  rng = jax.random.key(0)
  state = parallel.replicate(step_lib.create_train_state(config, rng, pix2pix), devices)
  batch = jax.device_put(parallel.shard(random_batch(config, batch_size), 1),
                         parallel.device_sharding(devices))
  step_fn = step_lib.make_parallel_train_step(pix2pix, devices=devices)
  start = time.perf_counter()
  compiled = step_fn.lower(state, batch, rng).compile()
  compile_s = time.perf_counter() - start
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
  for _ in range(2):
    state, _ = step_fn(state, batch, rng)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state, metrics = step_fn(state, batch, rng)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  seconds = float(np.median(times))
  return {"batch_size": batch_size, "step_s": seconds, "images_per_s": batch_size / seconds,
          "compile_s": compile_s, "gflop_per_image": flops / batch_size / 1e9}


def time_inference(config, repeats: int, batch_size: int) -> dict:
  """Generator latency at batch 1 (running and paper modes) and throughput at `batch_size`."""
  generator = models.create_generator(config.model)
  state = step_lib.create_train_state(config, jax.random.key(0), step_lib.Pix2Pix.from_config(
      config, axis_name=None))
  variables = state.generator.variables
  generate = inference.make_generate_fn(generator)
  results = {}
  for name, norm_mode, batch in (("infer_latency_ms_bs1", "running", 1),
                                 ("infer_latency_ms_bs1_paper", "paper", 1),
                                 ("infer_images_per_s_bs8", "running", batch_size)):
    images = jax.device_put(random_batch(config, batch)["input"])
    call = lambda: generate(variables, images, norm_mode=norm_mode)  # pylint: disable=cell-var-from-loop
    jax.block_until_ready(call())
    seconds = median_seconds(call, repeats)
    results[name] = seconds * 1e3 if name.startswith("infer_latency") else batch / seconds
    emit({"measurement": name, "value": results[name]})
  return results


def main(argv):
  del argv
  config = FLAGS.config
  summary = {
      "date": time.strftime("%Y-%m-%d"), "device": str(jax.devices()[0].device_kind),
      "backend": jax.default_backend(), "cpu": platform.processor() or platform.machine(),
      "jax": jax.__version__, "conv_impl": config.model.conv_impl,
      "dtype": config.model.dtype, "crop_size": config.data.crop_size,
      "num_downs": config.model.num_downs,
  }
  peak = matmul_peak_gflops(jnp.dtype(config.model.dtype), FLAGS.matmul_size)
  summary["matmul_peak_gflops"] = peak
  emit({"measurement": "matmul_peak_gflops", "value": peak})
  for batch_size in map(int, FLAGS.train_batch_sizes):
    result = time_train(config, batch_size, FLAGS.steps)
    emit({"measurement": "train", **result})
    suffix = "" if batch_size == 1 else f"_bs{batch_size}"
    summary[f"train_images_per_s{suffix}"] = result["images_per_s"]
    if batch_size == 1 or "compile_s" not in summary:  # the headline: batch 1, else the first.
      headline = result
      summary["compile_s"] = result["compile_s"]
      summary["train_gflop_per_image"] = result["gflop_per_image"]
  summary.update(time_inference(config, FLAGS.infer_repeats, FLAGS.infer_batch_size))
  # Measured again at the end; the higher reading is the machine's (less disturbed) peak.
  peak = max(peak, matmul_peak_gflops(jnp.dtype(config.model.dtype), FLAGS.matmul_size))
  summary["matmul_peak_gflops"] = peak
  summary["fraction_of_peak"] = headline["images_per_s"] * headline["gflop_per_image"] / peak
  summary["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  emit(summary)


if __name__ == "__main__":
  sys.exit(app.run(main))
