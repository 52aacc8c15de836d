"""Where one train step's time goes, per kind of XLA op: `python -m benchmarks.profile_step`.

Traces `--steps` calls of the compiled train step (one device, random batches, as
benchmarks/throughput.py) with XLA:CPU's per-thunk trace events on, reads the trace with
xprof (`pip install xprof`: a profiling tool, not a dependency of the project) and prints one
JSON line: the step's wall time and, per op kind (the HLO name without its number:
`ynn_fusion` = YNNPACK convolutions and matrix products, `add_bitcast_fusion` /
`multiply_bitcast_fusion` = mostly Adam, `copy` / `transpose_copy_fusion` /
`copy_bitcast_fusion` = copies and layout changes, `convolution-base-dilated` = XLA:CPU's
slow generic convolution), milliseconds per step and ops per step, largest first.
`--hlo=FILE` also writes the compiled step's HLO text (to look an op up by name).

  python -m benchmarks.profile_step --config=configs/default.py --batch_size=4
"""

import collections
import glob
import json
import os
import re
import sys
import tempfile
import time

from absl import app
from absl import flags
from ml_collections import config_flags
import numpy as np

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/default.py", "Model config.",
                                lock_config=True)
flags.DEFINE_integer("batch_size", 1, "Batch size of the traced step.")
flags.DEFINE_integer("steps", 3, "Traced steps (after 2 untraced ones).")
flags.DEFINE_integer("top", 20, "Op kinds to list.")
flags.DEFINE_string("hlo", None, "Optional file for the compiled step's HLO text.")

_HOST_EVENTS = ("ThreadpoolListener", "ThunkExecutor", "$", "PjitFunction",
                "PythonRefManager", "SlinkyThreadPool")


def op_kind(name: str) -> str:
  """'ynn_fusion.80' -> 'ynn_fusion'."""
  return re.sub(r"\.\d+$", "", name)


def random_batch(config, batch_size: int) -> dict[str, np.ndarray]:
  """As benchmarks/throughput.py's (which defines the same flags, so is not imported)."""
  rng = np.random.default_rng(0)
  shape = (batch_size, config.data.crop_size, config.data.crop_size)
  return {
      "input": rng.uniform(-1, 1, shape + (config.model.input_channels,)).astype(np.float32),
      "target": rng.uniform(-1, 1, shape + (config.model.output_channels,)).astype(np.float32),
      "index": np.arange(batch_size, dtype=np.int32),
  }


def summarise(events: list[dict], steps: int, top: int) -> dict:
  """Milliseconds and counts per step of each op kind in trace-viewer events."""
  total_us, count = collections.Counter(), collections.Counter()
  for event in events:
    if event.get("ph") == "X" and "dur" in event and not event["name"].startswith(
        _HOST_EVENTS):
      kind = op_kind(event["name"])
      total_us[kind] += event["dur"]
      count[kind] += 1
  return {"ops_ms_per_step": round(sum(total_us.values()) / 1e3 / steps, 1),
          "by_kind": [{"kind": kind, "ms_per_step": round(us / 1e3 / steps, 1),
                       "ops_per_step": count[kind] // steps}
                      for kind, us in total_us.most_common(top)]}


def main(argv):
  del argv
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_cpu_enable_xprof_traceme=true")
  import jax  # pylint: disable=g-import-not-at-top
  from xprof.convert import raw_to_tool_data  # pylint: disable=g-import-not-at-top
  from pix2pix_jax import parallel  # pylint: disable=g-import-not-at-top
  from pix2pix_jax import step as step_lib  # pylint: disable=g-import-not-at-top
  config = FLAGS.config.copy_and_resolve_references()
  config.batch_size = FLAGS.batch_size
  pix2pix = step_lib.Pix2Pix.from_config(config)
  devices = jax.local_devices()[:1]
  rng = jax.random.key(0)
  state = parallel.replicate(step_lib.create_train_state(config, rng, pix2pix), devices)
  batch = jax.device_put(parallel.shard(random_batch(config, FLAGS.batch_size), 1),
                         parallel.device_sharding(devices))
  compiled = step_lib.make_parallel_train_step(pix2pix, devices=devices).lower(
      state, batch, rng).compile()
  if FLAGS.hlo:
    with open(FLAGS.hlo, "w", encoding="utf-8") as f:
      f.write(compiled.as_text())
  for _ in range(2):
    state, metrics = compiled(state, batch, rng)
    jax.block_until_ready(metrics)
  folder = tempfile.mkdtemp(prefix="profile_step_")
  start = time.perf_counter()
  with jax.profiler.trace(folder):
    for _ in range(FLAGS.steps):
      state, metrics = compiled(state, batch, rng)
      jax.block_until_ready(metrics)
  wall_ms = (time.perf_counter() - start) / FLAGS.steps * 1e3
  path = glob.glob(os.path.join(folder, "**", "*.xplane.pb"), recursive=True)[0]
  data, _ = raw_to_tool_data.xspace_to_tool_data([path], "trace_viewer", {})
  events = json.loads(data)["traceEvents"]
  print(json.dumps({"batch_size": FLAGS.batch_size, "crop_size": config.data.crop_size,
                    "conv_impl": config.model.conv_impl, "jax": jax.__version__,
                    "wall_ms_per_step": round(wall_ms, 1),
                    **summarise(events, FLAGS.steps, FLAGS.top)}), flush=True)


if __name__ == "__main__":
  sys.exit(app.run(main))
