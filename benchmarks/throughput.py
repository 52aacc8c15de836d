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

With `--reference` it times both sides in fresh processes instead (see `compare`): this
project's step and generator as above, and the PyTorch reference's (benchmarks/
reference_timing.py, needs torch) at the same sizes, `--processes` (5) processes per side and
measurement, each pinned to the same `--threads` cores (torch: that many intra-op threads,
one inter-op); medians over the processes. Its last line then also carries, per train batch
size B (suffix `_bsB`, none for 1):

  reference_train_images_per_s, train_speedup_vs_reference   ours / the reference's img/s
  fraction_of_peak, reference_fraction_of_peak   img/s x train_gflop_per_image / the machine's
                       matmul peak (the higher of both sides' median readings)
  first_step_s_cold, first_step_s_warm, reference_first_step_s   from starting the process
                       to the end of the first step (imports, init, compilation: our first
                       process compiles into an empty compilation cache, the others load it)
  peak_rss_mb_train_cold, peak_rss_mb_train_warm, reference_peak_rss_mb_train,
  peak_rss_vs_reference  that training process's peak RSS (ours cold / the reference's)

and infer_speedup_vs_reference (the reference's bs-1 latency / ours, running = its eval
mode), _paper (train mode, its test.py's default), _bs8 (throughput), dataset_build_s /
dataset_open_s (the config's dataset built into an empty cache, then opened again), and
`spread` (min, max over the processes of each median). E.g.

  python -m benchmarks.throughput --config=configs/default.py --reference
  python -m benchmarks.throughput --config=configs/default.py:cpu --reference --train_batch_sizes=4

Any config key can be overridden, e.g. `--config.model.conv_impl=xla` (the plain XLA
convolutions) or `--config.model.dtype=bfloat16`; `--train_batch_sizes=1,16,64` on a GPU. The
same script runs unchanged on a GPU or TPU (one device is used).
"""

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from typing import Optional

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np

from benchmarks import timing
from benchmarks.timing import pin_threads
from pix2pix_jax import compile_cache
from pix2pix_jax import host_memory
from pix2pix_jax import inference
from pix2pix_jax import models
from pix2pix_jax import parallel
from pix2pix_jax import step as step_lib
from pix2pix_jax import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/default.py", "Model config.",
                                lock_config=True)
flags.DEFINE_integer("steps", 7, "Timed train steps per batch size (after 2 warm-up steps).")
flags.DEFINE_list("train_batch_sizes", ["1", "4"], "Batch sizes to time the train step at.")
flags.DEFINE_integer("infer_repeats", 20, "Timed generator calls per setting.")
flags.DEFINE_integer("infer_batch_size", 8, "Batch size of the inference-throughput setting.")
flags.DEFINE_integer("matmul_size", 2048, "Side of the square matmul that measures the peak.")
flags.DEFINE_bool("reference", False, "Also time the PyTorch reference, both sides in fresh "
                  "processes (needs torch); the last line carries the ratios.")
flags.DEFINE_integer("processes", 5, "With --reference: fresh processes per side and "
                     "measurement; medians over them are reported.")
flags.DEFINE_integer("threads", 0, "With --reference: cores each timed process is pinned to "
                     "(0: all this process may use).")
flags.DEFINE_bool("measure_data", True, "With --reference: also time building the config's "
                  "dataset into an empty cache (dataset_build_s).")
flags.DEFINE_string("table", None, "A file of a --reference run's output: print the markdown "
                    "table of its last line and exit.")
flags.DEFINE_enum("worker", None, ["train", "infer", "data"], "Internal (--reference): time "
                  "one thing of ours in this process and print one JSON line.")
flags.DEFINE_integer("batch_size", 1, "Internal: the train worker's batch size.")
flags.DEFINE_float("start_time", None, "Internal: time.time() when the parent started this "
                   "process (for first_step_s).")


def emit(record: dict) -> None:
  print(json.dumps(record), flush=True)


def median_seconds(fn, repeats: int) -> float:
  """timing.median_seconds of a JAX computation, waited for."""
  return timing.median_seconds(lambda: jax.block_until_ready(fn()), repeats)


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


def current_rss_mb() -> float:
  """This process's resident memory now (Linux; nan elsewhere)."""
  try:
    with open("/proc/self/status", encoding="ascii") as status:
      for line in status:
        if line.startswith("VmRSS:"):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  return float("nan")


def prepared_train_step(config, batch_size: int, memory: Optional[dict] = None):
  """(compiled step, replicated state, batch, rng, compile seconds) on one device, compiled
  and built as train.py does (the step first, then the state; the freed memory of each
  handed back); `memory` gets the resident memory after each (rss_mb_compiled,
  rss_mb_state)."""
  memory = {} if memory is None else memory
  devices = jax.local_devices()[:1]
  config = config.copy_and_resolve_references()
  config.batch_size = batch_size
  pix2pix = step_lib.Pix2Pix.from_config(config)
  rng = jax.random.key(0)
  batch = jax.device_put(parallel.shard(random_batch(config, batch_size), 1),
                         parallel.device_sharding(devices))
  step_fn = step_lib.make_parallel_train_step(pix2pix, devices=devices)
  start = time.perf_counter()
  compiled = train.compile_step(step_fn, train.abstract_replicated_state(config, devices),
                                batch, rng)
  compile_s = time.perf_counter() - start
  memory["rss_mb_compiled"] = current_rss_mb()
  state = parallel.replicate(step_lib.create_train_state(config, rng, pix2pix), devices,
                             consume=True)
  jax.block_until_ready(state)
  host_memory.release_freed_memory()  # as train.py does
  memory["rss_mb_state"] = current_rss_mb()
  return compiled, state, batch, rng, compile_s


def time_train(config, batch_size: int, steps: int, start_time: float = None) -> dict:
  """Images/s of the train step at `batch_size` on one device, plus compile time and FLOPs.

  first_step_s: from `start_time` (default: this call) to the end of the first step. Where
  the memory goes: rss_mb_{start,compiled,state,steps} (resident memory when called, with
  the step compiled, with the train state built, after the timed steps), state_mb (the step's
  arguments: both networks' parameters, batch statistics and Adam states) and step_temp_mb
  (XLA's scratch buffers of one step: gradients, activations kept for the backward pass).
  page_faults_per_step and system_s_per_step (medians): the minor page faults and the
  kernel's CPU seconds of a timed step (docs/performance.md, *Tried*: the scratch buffer is
  mapped afresh at every step).
  """
  start_time = time.time() if start_time is None else start_time
  memory = {"rss_mb_start": current_rss_mb()}
  compiled, state, batch, rng, compile_s = prepared_train_step(config, batch_size, memory)
  analysis = compiled.memory_analysis()
  if analysis is not None:
    memory["state_mb"] = analysis.argument_size_in_bytes / 2**20
    memory["step_temp_mb"] = analysis.temp_size_in_bytes / 2**20
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
  state, metrics = compiled(state, batch, rng)
  jax.block_until_ready(metrics)
  first_step_s = time.time() - start_time
  state, _ = compiled(state, batch, rng)
  times, faults, system_s = [], [], []
  for _ in range(steps):
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    state, metrics = compiled(state, batch, rng)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
    after = resource.getrusage(resource.RUSAGE_SELF)
    faults.append(after.ru_minflt - before.ru_minflt)
    system_s.append(after.ru_stime - before.ru_stime)
  seconds = float(np.median(times))
  memory["rss_mb_steps"] = current_rss_mb()
  return {"batch_size": batch_size, "step_s": seconds, "images_per_s": batch_size / seconds,
          "compile_s": compile_s, "gflop_per_image": flops / batch_size / 1e9,
          "first_step_s": first_step_s, "page_faults_per_step": float(np.median(faults)),
          "system_s_per_step": float(np.median(system_s)), **memory}


def fresh_generator(config):
  """(the generator of `config`, freshly initialised variables of it)."""
  state = step_lib.create_train_state(config, jax.random.key(0), step_lib.Pix2Pix.from_config(
      config, axis_name=None))
  return models.create_generator(config.model), state.generator.variables


def time_inference(config, repeats: int, batch_size: int) -> dict:
  """Generator latency at batch 1 (running and paper modes) and throughput at `batch_size`."""
  generator, variables = fresh_generator(config)
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


def worker(config) -> dict:
  """One measurement of ours in this (fresh, pinned) process: --worker=train|infer|data."""
  threads = pin_threads(FLAGS.threads)
  record = {"side": "ours", "task": FLAGS.worker, "jax": jax.__version__, "threads": threads}
  if FLAGS.worker == "data":
    from pix2pix_jax import datasets  # pylint: disable=g-import-not-at-top
    for name in ("dataset_build_s", "dataset_open_s"):
      start = time.perf_counter()
      datasets.prepare(config.data, config.seed)
      record[name] = time.perf_counter() - start
    return record
  record["compilation_cache"] = compile_cache.enable(config) is not None
  if FLAGS.worker == "train":
    record.update(time_train(config, FLAGS.batch_size, FLAGS.steps, FLAGS.start_time))
  else:
    record.update(time_inference(config, FLAGS.infer_repeats, FLAGS.infer_batch_size))
  # After the timing (first_step_s is a user's wait); the matmul's buffers are small.
  dtype = jnp.dtype(config.model.dtype)
  record["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  record["matmul_peak_gflops"] = max(matmul_peak_gflops(dtype, FLAGS.matmul_size)
                                     for _ in range(2))
  return record


def config_args(argv: list[str]) -> list[str]:
  """This command line's --config flags (the config and its overrides), for the workers."""
  return [arg for arg in argv[1:] if arg.startswith("--config")]


def run_worker(command: list[str], env: dict[str, str]) -> dict:
  """Starts one fresh process and returns the JSON object of its last line."""
  command = command + [f"--start_time={time.time()!r}"]
  result = subprocess.run(command, env=env, capture_output=True, text=True, check=False,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  if result.returncode != 0:
    raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n"
                       f"{result.stderr[-3000:]}")
  record = json.loads(result.stdout.strip().splitlines()[-1])
  emit(record)
  return record


def median_of(records: list[dict], key: str) -> float:
  return float(np.median([r[key] for r in records]))


def run_description(config) -> dict:
  """What a summary line says of the run: date, machine, versions and the model's sizes."""
  return {
      "date": time.strftime("%Y-%m-%d"), "device": str(jax.devices()[0].device_kind),
      "backend": jax.default_backend(), "cpu": platform.processor() or platform.machine(),
      "cpu_isa": timing.cpu_vector_isa(), "jax": jax.__version__,
      "conv_impl": config.model.conv_impl, "dtype": config.model.dtype,
      "crop_size": config.data.crop_size, "num_downs": config.model.num_downs,
      "ngf": config.model.ngf,
  }


def compare(argv: list[str]) -> dict:
  """Ours and the reference in fresh processes, interleaved; the summary of medians."""
  config = FLAGS.config
  threads = pin_threads(FLAGS.threads)
  env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
  env.pop("JAX_COMPILATION_CACHE_DIR", None)  # ours manages its own, cold then warm.
  scratch = tempfile.mkdtemp(prefix="throughput_")
  common = config_args(argv) + [
      f"--threads={threads}", f"--matmul_size={FLAGS.matmul_size}", f"--steps={FLAGS.steps}",
      f"--infer_repeats={FLAGS.infer_repeats}", f"--infer_batch_size={FLAGS.infer_batch_size}"]
  ours = [sys.executable, "-m", "benchmarks.throughput", *common,
          f"--config.compilation_cache.dir={os.path.join(scratch, 'jax_cache')}"]
  reference = [sys.executable, "-m", "benchmarks.reference_timing", *common]
  tasks = [("train", [f"--batch_size={b}"], f"train_bs{b}")
           for b in map(int, FLAGS.train_batch_sizes)] + [("infer", [], "infer")]
  runs = {(side, key): [] for side in ("ours", "reference") for _, _, key in tasks}
  for _ in range(FLAGS.processes):
    for task, extra, key in tasks:
      runs["ours", key].append(run_worker(ours + [f"--worker={task}", *extra], env))
      runs["reference", key].append(run_worker(reference + [f"--task={task}", *extra], env))
  summary = {**run_description(config), "torch": runs["reference", "infer"][0]["torch"],
             "threads": threads, "processes": FLAGS.processes}
  every = [r for records in runs.values() for r in records]
  peaks = {side: median_of([r for r in every if r["side"] == side], "matmul_peak_gflops")
           for side in ("ours", "reference")}
  peak = max(peaks.values())
  summary.update(matmul_peak_gflops=peak, ours_matmul_peak_gflops=peaks["ours"],
                 reference_matmul_peak_gflops=peaks["reference"])
  spread = {}

  def put(name: str, records: list[dict], key: str) -> float:
    values = [r[key] for r in records]
    summary[name] = float(np.median(values))
    spread[name] = [float(min(values)), float(max(values))]
    return summary[name]
  for task, _, key in tasks:
    if task != "train":
      continue
    batch_size = runs["ours", key][0]["batch_size"]
    suffix = "" if batch_size == 1 else f"_bs{batch_size}"
    ours_runs, reference_runs = runs["ours", key], runs["reference", key]
    warm = ours_runs[1:] or ours_runs
    ours_rate = put(f"train_images_per_s{suffix}", ours_runs, "images_per_s")
    reference_rate = put(f"reference_train_images_per_s{suffix}", reference_runs,
                         "images_per_s")
    summary[f"train_speedup_vs_reference{suffix}"] = ours_rate / reference_rate
    gflop = ours_runs[0]["gflop_per_image"]
    summary[f"train_gflop_per_image{suffix}"] = gflop
    summary[f"fraction_of_peak{suffix}"] = ours_rate * gflop / peak
    summary[f"reference_fraction_of_peak{suffix}"] = reference_rate * gflop / peak
    summary[f"compile_s{suffix}_cold"] = ours_runs[0]["compile_s"]
    put(f"compile_s{suffix}_warm", warm, "compile_s")
    summary[f"first_step_s{suffix}_cold"] = ours_runs[0]["first_step_s"]
    put(f"first_step_s{suffix}_warm", warm, "first_step_s")
    put(f"reference_first_step_s{suffix}", reference_runs, "first_step_s")
    summary[f"peak_rss_mb_train{suffix}_cold"] = ours_runs[0]["peak_rss_mb"]
    put(f"peak_rss_mb_train{suffix}_warm", warm, "peak_rss_mb")
    reference_rss = put(f"reference_peak_rss_mb_train{suffix}", reference_runs, "peak_rss_mb")
    summary[f"peak_rss_vs_reference{suffix}"] = ours_runs[0]["peak_rss_mb"] / reference_rss
  for name, speedup in (("infer_latency_ms_bs1", "infer_speedup_vs_reference"),
                        ("infer_latency_ms_bs1_paper", "infer_speedup_vs_reference_paper"),
                        ("infer_images_per_s_bs8", "infer_speedup_vs_reference_bs8")):
    ours_value = put(name, runs["ours", "infer"], name)
    reference_value = put(f"reference_{name}", runs["reference", "infer"], name)
    latency = name.startswith("infer_latency")
    summary[speedup] = (reference_value / ours_value if latency
                        else ours_value / reference_value)
  if FLAGS.measure_data:
    data_cache = os.path.join(scratch, "datasets")
    data = run_worker(ours + ["--worker=data", f"--config.data.cache_dir={data_cache}"],
                      env)
    summary.update(dataset_build_s=data["dataset_build_s"],
                   dataset_open_s=data["dataset_open_s"])
  summary["spread"] = spread
  return summary


def _spread(summary: dict, key: str, digits: int) -> str:
  low, high = summary.get("spread", {}).get(key, (None, None))
  return "" if low is None else f" ({low:.{digits}f}-{high:.{digits}f})"


def comparison_table(summary: dict) -> str:
  """The markdown table of a --reference summary: medians (min-max over the processes)."""
  rows = ["| measurement | this project | the reference | ratio (> 1: ours better) |",
          "| --- | --- | --- | --- |"]

  def row(label, ours_key, reference_key, ratio, digits=2):
    rows.append(f"| {label} | {summary[ours_key]:.{digits}f}{_spread(summary, ours_key, digits)}"
                f" | {summary[reference_key]:.{digits}f}"
                f"{_spread(summary, reference_key, digits)} | {ratio:.2f} |")
  suffixes = sorted((key[len("train_speedup_vs_reference"):]
                     for key in summary if key.startswith("train_speedup_vs_reference")),
                    key=lambda suffix: int(suffix[3:] or 1))
  for suffix in suffixes:
    batch = suffix[3:] or "1"
    row(f"train img/s, batch {batch}", f"train_images_per_s{suffix}",
        f"reference_train_images_per_s{suffix}",
        summary[f"train_speedup_vs_reference{suffix}"])
    rows.append(f"| fraction of the matmul peak, batch {batch} | "
                f"{summary[f'fraction_of_peak{suffix}']:.2f} | "
                f"{summary[f'reference_fraction_of_peak{suffix}']:.2f} | |")
  for name, speedup, label, digits in (
      ("infer_latency_ms_bs1", "infer_speedup_vs_reference", "inference ms, batch 1 "
       "(running / eval mode)", 1),
      ("infer_latency_ms_bs1_paper", "infer_speedup_vs_reference_paper", "inference ms, "
       "batch 1 (paper / train mode)", 1),
      ("infer_images_per_s_bs8", "infer_speedup_vs_reference_bs8", "inference img/s, "
       "batch 8", 1)):
    row(label, name, f"reference_{name}", summary[speedup], digits)
  for suffix in suffixes:
    batch = suffix[3:] or "1"
    reference_rss = summary[f"reference_peak_rss_mb_train{suffix}"]
    for state in ("cold", "warm"):
      key = f"peak_rss_mb_train{suffix}_{state}"
      row(f"peak RSS MB of a batch-{batch} training process ({state} compilation cache)",
          key, f"reference_peak_rss_mb_train{suffix}", reference_rss / summary[key], 0)
    for state in ("cold", "warm"):
      key = f"first_step_s{suffix}_{state}"
      row(f"seconds to the first step, batch {batch} ({state} compilation cache)", key,
          f"reference_first_step_s{suffix}",
          summary[f"reference_first_step_s{suffix}"] / summary[key], 1)
  if "dataset_build_s" in summary:
    rows.append(f"| dataset build s (once per cache) | {summary['dataset_build_s']:.1f} | | |")
  return "\n".join(rows)


def main(argv):
  del argv
  config = FLAGS.config
  if FLAGS.table:
    with open(FLAGS.table, encoding="utf-8") as f:
      print(comparison_table(json.loads(f.read().strip().splitlines()[-1])))
    return
  if FLAGS.worker:
    emit(worker(config))
    return
  if FLAGS.reference:
    emit(compare(sys.argv))
    return
  summary = run_description(config)
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
