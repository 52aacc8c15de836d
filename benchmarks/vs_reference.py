"""Training outcomes against the PyTorch reference: `python -m benchmarks.vs_reference`.

Trains this project (the pmapped `step_lib.train_step` on one device, state and step key as
`train_and_evaluate` draws them from config.seed) and the reference
(`torch_reference.ReferencePix2Pix`, networks initialised by its `init_weights` after
`torch.manual_seed(seed)`) side by side on the same batches: each step's batch is drawn
once from this project's input pipeline (the config's dataset, crops and flips for that
seed) and fed to both (NHWC -> NCHW for torch). Same architecture, loss, Adam and LR
schedule (the `linear` policy as a torch LambdaLR); each side keeps its own initialisation
and randomness, so this compares training outcomes, not individual steps.

Both are then scored on the whole test split at the stored size, as `evaluation.evaluate`
does: each image reflect-padded to a multiple of 2**model.num_downs (4 for the ResNets),
translated alone, cropped back; Y-PSNR means (metrics.Accumulator) in both norm modes:
  paper    batch statistics and dropout (ours: Translator norm_mode='paper'; the reference:
           train mode, as its test.py)
  running  running averages, no dropout (the reference: eval mode)
and gain_* = that minus identity_psnr_y (the input itself scored against the target).

Prints one JSON line per implementation and seed: impl, seed, steps, identity_psnr_y,
paper_psnr_y, running_psnr_y, gain_paper, gain_running, train_s (the training loop's wall
time, our step's compilation included), then a last line with both sides' mean and min-max
over the seeds and every run. `--out=FILE.md` also writes those as markdown tables.

  python -m benchmarks.vs_reference --config=configs/default.py:cpu --seeds=0,1,2 \\
      --out=docs/vs_reference.md

Nothing is downloaded: the synthetic dataset is rendered from scikit-image's bundled photos
into data.cache_dir. Needs torch (requirements-torch.txt).
"""

import copy
import json
import os
import shlex
import sys
import time

from absl import app
from absl import flags
import jax
from ml_collections import config_flags
import numpy as np
import torch

from pix2pix_jax import configuration
from pix2pix_jax import datasets
from pix2pix_jax import evaluation
from pix2pix_jax import inference
from pix2pix_jax import input_pipeline
from pix2pix_jax import metrics
from pix2pix_jax import models
from pix2pix_jax import optimizers
from pix2pix_jax import parallel
from pix2pix_jax import step as step_lib
from pix2pix_jax import torch_reference as ref
from pix2pix_jax import translator as translator_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/default.py:cpu", "Model config.",
                                lock_config=True)
flags.DEFINE_list("seeds", ["0"], "Seeds (config.seed: data, order, init); a run per seed.")
flags.DEFINE_integer("steps", None, "Overrides num_train_steps (decay_steps is kept, capped "
                     "at the run as the schedule does).")
flags.DEFINE_string("out", None, "Optional markdown file: the tables and the command.")

IMPLS = ("pix2pix_jax", "reference")


def emit(record: dict) -> None:
  print(json.dumps(record), flush=True)


def check_supported(config) -> None:
  """Raises ConfigError for settings the reference has no counterpart of."""
  unsupported = {
      "loss.gan": (config.loss.gan, ("vanilla", "lsgan", "none")),
      "loss.conditional": (config.loss.conditional, (True,)),
      "model.skip_connections": (config.model.skip_connections, (True,)),
      "optim.lr_policy": (config.optim.lr_policy, ("linear",)),
      "model.dtype": (config.model.dtype, ("float32",)),
  }
  for key, (value, allowed) in unsupported.items():
    if value not in allowed:
      raise configuration.ConfigError(
          f"--config.{key}={value!r}: the reference comparison supports {allowed}.")
  if config.model.input_channels != config.model.output_channels:
    raise configuration.ConfigError("The reference's generators map C channels to C.")


def linear_lr_factor(config):
  """The `linear` policy's LR factor of 0-based step t (optimizers.learning_rate_schedule /
  lr): constant, then linear to 0 over the last decay_steps; the reference's lambda_rule
  with its epochs read as steps."""
  decay_steps = min(config.decay_steps, config.num_train_steps)
  constant_steps = config.num_train_steps - decay_steps
  return lambda t: 1.0 - max(0, t + 1 - constant_steps) / (decay_steps + 1.0)


class Ours:
  """This project's train step on one device, started as train_and_evaluate starts."""

  def __init__(self, config):
    self.devices = jax.local_devices()[:1]
    self.pix2pix = step_lib.Pix2Pix.from_config(config)
    init_rng, self.step_rng = jax.random.split(jax.random.key(config.seed))
    self.state = parallel.replicate(
        step_lib.create_train_state(config, init_rng, self.pix2pix), self.devices)
    self.step_fn = step_lib.make_parallel_train_step(self.pix2pix, devices=self.devices)

  def step(self, batch) -> None:
    self.state, step_metrics = self.step_fn(self.state, parallel.shard(batch, 1),
                                            self.step_rng)
    jax.block_until_ready(step_metrics)

  def translators(self, config):
    variables = parallel.unreplicate(self.state).generator.variables
    return {mode: translator_lib.Translator(config, variables, norm_mode=mode)
            for mode in inference.NORM_MODES}


class Reference:
  """ReferencePix2Pix with the config's networks, Adams and a LambdaLR per optimizer."""

  def __init__(self, config):
    models.resnet_blocks(config.model.generator)  # a clear error for an unknown name.
    generator, discriminator = ref.networks_from_config(config.model, config.seed)
    self.model = ref.ReferencePix2Pix(
        generator, discriminator, gan_mode=config.loss.gan,
        lambda_l1=float(config.loss.l1_weight), lr=config.optim.lr, beta1=config.optim.beta1)
    factor = linear_lr_factor(config)
    self.schedulers = []
    for optimizer in (self.model.optimizer_g, self.model.optimizer_d):
      if optimizer is not None:
        for group in optimizer.param_groups:
          group["betas"] = (config.optim.beta1, config.optim.beta2)
        self.schedulers.append(torch.optim.lr_scheduler.LambdaLR(optimizer, factor))

  @staticmethod
  def nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))

  def step(self, batch) -> None:
    self.model.optimize_parameters(self.nchw(batch["input"]), self.nchw(batch["target"]))
    for scheduler in self.schedulers:
      scheduler.step()

  def lr(self) -> float:
    return self.model.optimizer_g.param_groups[0]["lr"]

  def translators(self, config):
    multiple, _ = models.size_multiple(config.model)
    net = self.model.net_g
    # paper: train mode on a copy (its forward passes update running statistics).
    nets = {"paper": copy.deepcopy(net).train(), "running": net.eval()}

    def translator(mode):
      def translate(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        padded, (top, left) = translator_lib.reflect_pad(image, multiple)
        with torch.no_grad():
          output = nets[mode](self.nchw(inference.from_uint8(padded[None])))
        output = output[0].numpy().transpose(1, 2, 0)
        return inference.to_uint8(output[top:top + h, left:left + w])
      return translate
    return {mode: translator(mode) for mode in inference.NORM_MODES}


def score(translators, pairs) -> dict[str, float]:
  """Mean Y-PSNR of each translator on the pairs, and of the identity."""
  accumulators = {mode: metrics.Accumulator() for mode in (*translators, "identity")}
  for _, inputs, target in pairs:
    accumulators["identity"].add(inputs, target)
    for mode, translate in translators.items():
      accumulators[mode].add(translate(inputs), target)
  return {f"{mode}_psnr_y": acc.summary()["psnr_y"] for mode, acc in accumulators.items()}


def run_seed(config, seed: int) -> list[dict]:
  """Trains both sides on the same batches and scores them: a record per implementation."""
  config = config.copy_and_resolve_references()
  config.seed = seed
  configuration.validate(config)
  check_supported(config)
  sources = datasets.get_data_sources(config.data, seed=config.seed)
  pairs = list(evaluation.eval_pairs(config, sources["test"]))
  sides = {"pix2pix_jax": Ours(config), "reference": Reference(config)}
  train_s = dict.fromkeys(IMPLS, 0.0)
  schedule = optimizers.learning_rate_schedule(config)
  with input_pipeline.train_batches(config, sources["train"], start_step=0) as batches:
    for t in range(config.num_train_steps):
      batch = next(batches)
      # float32 schedule against torch's float64 factor: near the end of the decay the
      # LR is ~1e-3 of its base, so the tolerance is relative to the base LR.
      np.testing.assert_allclose(sides["reference"].lr(), float(schedule(t)), rtol=1e-5,
                                 atol=1e-6 * config.optim.lr)
      for impl, side in sides.items():
        start = time.perf_counter()
        side.step(batch)
        train_s[impl] += time.perf_counter() - start
  records = []
  for impl, side in sides.items():
    torch.manual_seed(seed)  # the reference's paper-mode dropout masks.
    scores = score(side.translators(config), pairs)
    identity = scores.pop("identity_psnr_y")
    records.append({
        "impl": impl, "seed": seed, "steps": config.num_train_steps,
        "identity_psnr_y": identity, **scores,
        **{f"gain_{mode}": scores[f"{mode}_psnr_y"] - identity for mode in inference.NORM_MODES},
        "train_s": train_s[impl]})
  return records


def summarise(records: list[dict]) -> dict:
  """Per implementation: mean, min and max over seeds of the gains and train_s."""
  summary = {}
  for impl in IMPLS:
    runs = [r for r in records if r["impl"] == impl]
    summary[impl] = {}
    for key in ("gain_paper", "gain_running", "train_s"):
      values = [r[key] for r in runs]
      summary[impl].update({f"{key}_mean": float(np.mean(values)),
                            f"{key}_min": float(np.min(values)),
                            f"{key}_max": float(np.max(values))})
  return summary


def command_line() -> str:
  """This run's command, paths under the repo written relative to it."""
  def relative(arg):
    name, sep, value = arg.partition("=")
    if sep and os.path.isabs(value) and value.startswith(ROOT + os.sep):
      return f"{name}={os.path.relpath(value, ROOT)}"
    return arg
  return " ".join(["python -m benchmarks.vs_reference"]
                  + [shlex.quote(relative(a)) for a in sys.argv[1:]])


def markdown(records: list[dict], summary: dict, command: str) -> str:
  """A table per seed, then each side's mean and min-max over seeds."""
  columns = ("identity_psnr_y", "paper_psnr_y", "running_psnr_y", "gain_paper",
             "gain_running", "train_s")
  lines = ["# pix2pix_jax vs the PyTorch reference", "", "```", command, "```", ""]
  for seed in dict.fromkeys(r["seed"] for r in records):
    runs = [r for r in records if r["seed"] == seed]
    lines += [f"## seed {seed} ({runs[0]['steps']} steps)", "",
              "| impl | " + " | ".join(columns) + " |",
              "| --- |" + " ---: |" * len(columns)]
    lines += [f"| {r['impl']} | " + " | ".join(f"{r[c]:.3f}" for c in columns) + " |"
              for r in runs]
    lines.append("")
  seeds = len(dict.fromkeys(r["seed"] for r in records))
  lines += [f"## over {seeds} seed(s): mean [min, max]", "",
            "| impl | gain_paper | gain_running | train_s |", "| --- | ---: | ---: | ---: |"]
  for impl, values in summary.items():
    cells = [f"{values[k + '_mean']:.3f} [{values[k + '_min']:.3f}, "
             f"{values[k + '_max']:.3f}]" for k in ("gain_paper", "gain_running", "train_s")]
    lines.append(f"| {impl} | " + " | ".join(cells) + " |")
  lines += ["", "gain_*: Y-PSNR (dB) in that norm mode minus the identity's (the input "
            "scored against the target), means over the test split at its stored size."]
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  torch.set_num_threads(os.cpu_count() or 1)
  config = FLAGS.config.copy_and_resolve_references()
  if FLAGS.steps is not None:
    config.num_train_steps = FLAGS.steps
  records = []
  for seed in map(int, FLAGS.seeds):
    for record in run_seed(config, seed):
      emit(record)
      records.append(record)
  summary = summarise(records)
  command = command_line()
  emit({"summary": True, "seeds": [int(s) for s in FLAGS.seeds],
        "steps": config.num_train_steps, **summary, "runs": records, "command": command})
  if FLAGS.out:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    with open(FLAGS.out, "w") as f:
      f.write(markdown(records, summary, command))


if __name__ == "__main__":
  sys.exit(app.run(main))
