"""The paper's ablation suites: train each variant, evaluate it, write a table and a figure.

    python -m pix2pix_jax.experiments --suite=losses --workdir=W [--scale=cpu|small|paper]

`run_suite("losses", W, scale="cpu")` does the same from Python. The suites and their
variants are configs: `configs/experiments/{losses,generators,patch_sizes}.py`, overrides
of configs/default.py at a scale of `configs/experiments/scales.py`.

Each variant trains in its own workdir `W/runs/<name>` (named by its generator, loss and
discriminator and a hash of its whole config), so suites run in the same W share the
variants they have in common (L1+cGAN with the U-Net and the 70x70 PatchGAN is in all
three) and a changed config never reuses a stale run. A variant is done when
`W/runs/<name>/result.json` exists: running the command again skips finished variants and
resumes an interrupted one from its latest checkpoint. Then the generator is scored on the
whole test split (`evaluation.evaluate`: W/runs/<name>/eval) and the suite's table and
figure are written: `W/<suite>.md` and `W/<suite>.png`.
"""

import dataclasses
import hashlib
import importlib
import json
import os
import shlex
import time
from types import ModuleType
from typing import Any, Mapping, Optional, Sequence

import jax
import ml_collections

from configs import experiments as experiment_configs
from configs.experiments import scales
from pix2pix_jax import configuration
from pix2pix_jax import datasets
from pix2pix_jax import evaluation
from pix2pix_jax import inference
from pix2pix_jax import train
from pix2pix_jax import translator as translator_lib
from pix2pix_jax.experiments import report

SUITES = experiment_configs.SUITES
SCALES = tuple(scales.SCALES)
RESULT_FILE = "result.json"
RUNS_DIR = "runs"


class InterruptedRun(RuntimeError):
  """A variant's training stopped before num_train_steps (SIGTERM / Ctrl-C)."""


@dataclasses.dataclass
class PlannedRun:
  """A variant of a suite and the config and workdir it trains with."""
  variant: scales.Variant
  config: ml_collections.ConfigDict
  workdir: str


def load_suite(suite: str) -> ModuleType:
  """The suite's config module (configs/experiments/SUITE.py)."""
  if suite not in SUITES:
    raise configuration.ConfigError(f"--suite={suite!r} is not one of {SUITES}.")
  return importlib.import_module(f"configs.experiments.{suite}")


# Keys added to configs/default.py after suites had been run, left out of the hash while
# they hold these values: runs made before a key existed keep their folders (and a suite
# run again finds them). A key added later, with a value that changes nothing, goes here.
HASH_NEUTRAL = {"eval.protocol": "raindrop", "eval.sets": "", "eval.sets_dir": "",
                "inference.ensemble": False, "inference.ensemble_transforms": "dihedral",
                "model.upsample": "transpose", "compilation_cache.dir": "",
                "compilation_cache.max_mb": 2048}


def config_hash(config: ml_collections.ConfigDict) -> str:
  """A short hash of the whole config (any change gives another run directory), but the
  `HASH_NEUTRAL` keys at their neutral values."""
  tree = json.loads(config.to_json_best_effort())
  for key, neutral in HASH_NEUTRAL.items():
    *parents, name = key.split(".")
    node = tree
    for part in parents:
      node = node.get(part, {}) if isinstance(node, dict) else {}
    if isinstance(node, dict) and name in node and node[name] == neutral:
      del node[name]
  for section in {key.split(".")[0] for key in HASH_NEUTRAL}:
    if tree.get(section) == {}:
      del tree[section]
  text = json.dumps(tree, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:10]


def run_name(config: ml_collections.ConfigDict) -> str:
  """'unet_d3_l1-cgan_<hash>': the generator, D depth and loss terms, then the config hash."""
  loss, model = config.loss, config.model
  terms = ["l1"] if loss.l1_weight > 0 else []
  if loss.gan != "none":
    terms.append(("cgan" if loss.conditional else "gan")
                 + ("" if loss.gan == "vanilla" else f"_{loss.gan}"))
  generator = "unet" if model.skip_connections else "encdec"
  return f"{generator}_d{model.d_layers}_{'-'.join(terms)}_{config_hash(config)}"


def varied_keys(variants: Sequence[scales.Variant]) -> set[str]:
  """The config keys the suite's variants set (they cannot be overridden for the suite)."""
  return {key for variant in variants for key in variant.overrides}


def plan(suite: str, workdir: str, *, scale: str = scales.DEFAULT_SCALE,
         overrides: Optional[Mapping[str, Any]] = None,
         variants: Optional[Sequence[str]] = None) -> list[PlannedRun]:
  """The runs of a suite, every config validated before anything trains.

  `overrides` ({'a.b': value}) apply to every variant (on top of the scale); keys the
  suite varies are refused. `variants` picks some variants by name (default: all).
  """
  module = load_suite(suite)
  if scale not in scales.SCALES:
    raise configuration.ConfigError(f"--scale={scale!r} is not one of {SCALES}.")
  overrides = dict(overrides or {})
  varied = sorted(varied_keys(module.VARIANTS))
  clash = [key for key in overrides if key in varied]
  if clash:
    raise configuration.ConfigError(
        f"--config.{clash[0]} is what the {suite} suite varies between its variants; "
        f"overrides may set other keys only (this suite sets {varied}).")
  chosen = list(module.VARIANTS)
  if variants:
    try:
      chosen = [scales.find(module.VARIANTS, name) for name in variants]
    except ValueError as e:
      raise configuration.ConfigError(f"--variants: {e}") from None
  runs = []
  for variant in chosen:
    try:
      config = scales.variant_config(variant, scale, overrides)
    except (KeyError, TypeError) as e:
      raise configuration.ConfigError(f"--config: {e.args[0]}") from None
    try:
      configuration.validate(config)
    except configuration.ConfigError as e:
      raise configuration.ConfigError(
          f"Variant {variant.name!r} of the {suite} suite at scale {scale!r}: {e}") from None
    runs.append(PlannedRun(variant, config,
                           os.path.join(workdir, RUNS_DIR, run_name(config))))
  return runs


def _say(message: str) -> None:
  print(message, flush=True)


def seconds_per_step(workdir: str) -> Optional[float]:
  """Median s/step over the logged intervals of W/metrics.jsonl (None if none)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    rates = [row["steps_per_s"] for row in map(json.loads, f) if row.get("steps_per_s")]
  if not rates:
    return None
  rates.sort()
  return 1.0 / rates[len(rates) // 2]


def scored_at_crop_size(config: ml_collections.ConfigDict) -> bool:
  """Whether test pairs are brought to the crop size before scoring: when training
  rescales the stored images (`resize_and_crop`, `scale_width*`), the test images are
  rescaled the same way; with `crop` or `none` training sees the stored scale, so the
  stored test images are scored whole (as `--mode=eval` scores them)."""
  return config.data.preprocess not in ("crop", "none")


def train_and_score(run: PlannedRun, *, progress: str = "") -> dict[str, Any]:
  """Trains (or resumes) one variant, scores it on the test split, writes result.json.

  A variant whose result.json exists is not run again: its result is read back.
  Raises InterruptedRun when training stopped early (a signal): run again to resume.
  """
  result_path = os.path.join(run.workdir, RESULT_FILE)
  label = f"{progress}{run.variant.label}"
  if os.path.exists(result_path):
    _say(f"{label}: done before, skipped ({result_path}).")
    with open(result_path) as f:
      result = json.load(f)
    # A run shared with another suite is named as this suite names it.
    return {**result, "variant": run.variant.name, "label": run.variant.label,
            "overrides": dict(run.variant.overrides)}
  config = run.config
  _say(f"{label}: training {config.num_train_steps} steps in {run.workdir}")
  start = time.perf_counter()
  try:
    state = train.train_and_evaluate(config, run.workdir)
  except train.NonFiniteError as e:  # a result too (the paper's GAN-only runs can fail).
    _say(f"{label}: diverged: {e}")
    return _write_result(result_path, {
        "variant": run.variant.name, "label": run.variant.label,
        "overrides": dict(run.variant.overrides), "error": f"diverged: {e}",
        "config_hash": config_hash(config)})
  steps = int(state.step)
  if steps < config.num_train_steps:
    raise InterruptedRun(
        f"{run.variant.label} stopped at step {steps} of {config.num_train_steps} (its "
        f"checkpoint is in {run.workdir}); run the same command to continue.")
  train_s = time.perf_counter() - start
  _say(f"{label}: trained in {train_s:.0f} s; evaluating on the test split")
  test_source = datasets.get_data_sources(config.data, seed=config.seed)["test"]
  variables = jax.device_get(state.generator.variables)
  translator = translator_lib.Translator(config, variables)
  other_mode, = (m for m in inference.NORM_MODES if m != translator.norm_mode)
  summary = evaluation.evaluate(
      translator, evaluation.eval_pairs(config, test_source,
                                        at_crop_size=scored_at_crop_size(config)),
      os.path.join(run.workdir, "eval"), total=len(test_source),
      other=translator_lib.Translator(config, variables, norm_mode=other_mode))
  result = {
      "variant": run.variant.name, "label": run.variant.label,
      "overrides": dict(run.variant.overrides), "steps": steps,
      "norm_mode": translator.norm_mode, "num_test": len(test_source),
      "model": summary["model"], "identity": summary["identity"],
      "by_norm_mode": summary["by_norm_mode"],
      "seconds_per_step": seconds_per_step(run.workdir),
      "config_hash": config_hash(config),
  }
  _write_result(result_path, result)
  model = summary["model"]
  _say(f"{label}: Y-PSNR {model['psnr_y']:.2f} dB, Y-SSIM {model['ssim_y']:.4f} "
       f"(identity {summary['identity'].get('psnr_y', float('nan')):.2f} dB, "
       f"{summary['identity'].get('ssim_y', float('nan')):.4f}).")
  return result


def _write_result(path: str, result: dict[str, Any]) -> dict[str, Any]:
  """Writes result.json atomically: the run counts as done only once it exists."""
  with open(path + ".tmp", "w") as f:
    json.dump(result, f, indent=2)
  os.replace(path + ".tmp", path)
  return result


def displayed_workdir(workdir: str) -> str:
  """How a committed table names `workdir`: as given if relative, relative to the current
  folder if it lies below it, else the placeholder `W` (no machine's absolute folders)."""
  if not os.path.isabs(os.path.expanduser(workdir)):
    return workdir
  relative = os.path.relpath(os.path.expanduser(workdir))
  return "W" if relative.startswith("..") else relative


def displayed_command(argv: Sequence[str]) -> str:
  """`python -m pix2pix_jax.experiments ARGS` with the workdir as `displayed_workdir`."""
  args = list(argv)
  for i, arg in enumerate(args):
    if arg.startswith("--workdir="):
      args[i] = f"--workdir={displayed_workdir(arg.split('=', 1)[1])}"
    elif arg == "--workdir" and i + 1 < len(args):
      args[i + 1] = displayed_workdir(args[i + 1])
  return shlex.join(["python", "-m", "pix2pix_jax.experiments"] + args)


def default_command(suite: str, workdir: str, scale: str,
                    overrides: Optional[Mapping[str, Any]] = None,
                    variants: Optional[Sequence[str]] = None) -> str:
  """The command line that runs what run_suite was given."""
  args = ["python", "-m", "pix2pix_jax.experiments", f"--suite={suite}",
          f"--workdir={displayed_workdir(workdir)}", f"--scale={scale}"]
  if variants:
    args.append(f"--variants={','.join(variants)}")
  args += [f"--config.{key}={value}" for key, value in (overrides or {}).items()]
  return shlex.join(args)


def run_suite(suite: str, workdir: str, *, scale: str = scales.DEFAULT_SCALE,
              overrides: Optional[Mapping[str, Any]] = None,
              variants: Optional[Sequence[str]] = None,
              command: Optional[str] = None) -> list[dict[str, Any]]:
  """Trains and scores each variant of `suite`, then writes W/<suite>.md and W/<suite>.png.

  `overrides` apply to every variant; `variants` runs some of them only; `command` is
  the command line quoted in the table (default: the equivalent CLI). Returns the
  variants' results (result.json contents) in the suite's order.
  """
  workdir = os.path.abspath(os.path.expanduser(workdir))
  runs = plan(suite, workdir, scale=scale, overrides=overrides, variants=variants)
  module = load_suite(suite)
  _say(f"{module.TITLE}, scale {scale}: {len(runs)} variant(s) in {workdir}")
  results = []
  for number, run in enumerate(runs, 1):
    results.append(train_and_score(run, progress=f"[{suite} {number}/{len(runs)}] "))
  first_config = runs[0].config
  sources = datasets.get_data_sources(first_config.data, seed=first_config.seed)
  context = report.Context(
      title=module.TITLE, suite=suite, scale=scale,
      command=command or default_command(suite, workdir, scale, overrides, variants),
      scale_overrides={**scales.SCALES[scale][1], **(overrides or {})},
      at_crop_size=scored_at_crop_size(first_config),
      base_variant=scales.SCALES[scale][0], num_train=len(sources["train"]),
      describe_discriminator=getattr(module, "DESCRIBE_DISCRIMINATOR", False))
  table_path = os.path.join(workdir, f"{suite}.md")
  figure_path = os.path.join(workdir, f"{suite}.png")
  with open(table_path, "w") as f:
    f.write(report.markdown_table(context, [run.config for run in runs], results,
                                  [os.path.relpath(run.workdir, workdir) for run in runs]))
  report.figure([run.workdir for run in runs], [r["label"] for r in results],
                len(sources["test"]), figure_path)
  _say(f"Wrote {table_path} and {figure_path}.")
  return results
