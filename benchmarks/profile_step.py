"""Where one train step's time goes, per kind of XLA op: `python -m benchmarks.profile_step`.

Traces `--trace_steps` calls of the compiled train step (one device, random batches, built
by benchmarks/throughput.py's `prepared_train_step`, whose flags it shares) with XLA:CPU's
per-thunk trace events on, reads the trace with xprof (`pip install xprof`: a profiling tool,
not a dependency of the project) and prints one JSON line: the step's wall time and, per op kind (the HLO name without its number:
`ynn_fusion` = YNNPACK convolutions and matrix products, `add_bitcast_fusion` /
`multiply_bitcast_fusion` = mostly Adam, `copy` / `transpose_copy_fusion` /
`copy_bitcast_fusion` = copies and layout changes, `convolution-base-dilated` = XLA:CPU's
slow generic convolution), milliseconds per step and ops per step, largest first.
`--hlo=FILE` also writes the compiled step's HLO text (to look an op up by name).
`--infer` profiles the generator's inference (`running` norm mode, `--batch_size` images)
instead of the train step. XLA:CPU's own (Eigen) convolutions run on its thread pool without
trace events: the wall time less the ops' sum is mostly theirs.

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
import jax  # XLA_FLAGS is read when the backend starts (main), not at import

from benchmarks import throughput  # its flags (--config, --batch_size) and the prepared step

FLAGS = flags.FLAGS
flags.DEFINE_integer("trace_steps", 3, "Traced steps (after 2 untraced ones).")
flags.DEFINE_integer("top", 20, "Op kinds to list.")
flags.DEFINE_string("hlo", None, "Optional file for the compiled step's HLO text.")
flags.DEFINE_bool("infer", False, "Profile the generator's inference (running mode) instead "
                  "of the train step.")

_HOST_EVENTS = ("ThreadpoolListener", "ThunkExecutor", "$", "PjitFunction",
                "PythonRefManager", "SlinkyThreadPool")


def op_kind(name: str) -> str:
  """'ynn_fusion.80' -> 'ynn_fusion'."""
  return re.sub(r"\.\d+$", "", name)


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


def prepared_step(config):
  """(a call of one train step that waits for it, the compiled step)."""
  compiled, state, batch, rng, _ = throughput.prepared_train_step(config, FLAGS.batch_size)
  def call():
    nonlocal state
    state, metrics = compiled(state, batch, rng)
    jax.block_until_ready(metrics)
  return call, compiled


def prepared_inference(config):
  """(a call of the generator on a random batch in running mode that waits for it, the
  compiled generator), compiled as `inference.make_generate_fn` compiles it."""
  from pix2pix_jax import inference  # pylint: disable=g-import-not-at-top
  generator, variables = throughput.fresh_generator(config)
  images = jax.device_put(throughput.random_batch(config, FLAGS.batch_size)["input"])
  rng = jax.random.key(0)
  compiled = inference.jit_generator(generator, paper_mode=False).lower(
      variables, images, rng).compile()
  return lambda: jax.block_until_ready(compiled(variables, images, rng)), compiled


def main(argv):
  del argv
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_cpu_enable_xprof_traceme=true")
  from xprof.convert import raw_to_tool_data  # pylint: disable=g-import-not-at-top
  config = FLAGS.config
  call, compiled = (prepared_inference if FLAGS.infer else prepared_step)(config)
  if FLAGS.hlo:
    with open(FLAGS.hlo, "w", encoding="utf-8") as f:
      f.write(compiled.as_text())
  for _ in range(2):
    call()
  folder = tempfile.mkdtemp(prefix="profile_step_")
  start = time.perf_counter()
  with jax.profiler.trace(folder):
    for _ in range(FLAGS.trace_steps):
      call()
  wall_ms = (time.perf_counter() - start) / FLAGS.trace_steps * 1e3
  path = glob.glob(os.path.join(folder, "**", "*.xplane.pb"), recursive=True)[0]
  data, _ = raw_to_tool_data.xspace_to_tool_data([path], "trace_viewer", {})
  events = json.loads(data)["traceEvents"]
  print(json.dumps({"what": "infer" if FLAGS.infer else "train_step",
                    "batch_size": FLAGS.batch_size, "crop_size": config.data.crop_size,
                    "conv_impl": config.model.conv_impl, "jax": jax.__version__,
                    "wall_ms_per_step": round(wall_ms, 1),
                    **summarise(events, FLAGS.trace_steps, FLAGS.top)}), flush=True)


if __name__ == "__main__":
  sys.exit(app.run(main))
