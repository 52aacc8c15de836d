"""Variants, the scales the suites run at, and building a variant's config.

A scale is a variant of configs/default.py plus overrides; a suite's variant adds its own
overrides on top. Every variant of a suite thus shares the data, seed, schedule and test
images, and differs only in the keys the suite ablates.
"""

import dataclasses
from typing import Any, Mapping, Optional, Sequence

import ml_collections

from configs import default

# name -> (variant of configs/default.py, overrides on top of it).
SCALES: dict[str, tuple[str, dict[str, Any]]] = {
    # The paper's sizes and schedule: the default config (256x256 crops from 286, unet_256,
    # batch 1, 200k steps). Meant for a GPU.
    "paper": ("", {"checkpoint_keep": 1}),
    # For the 2-core CPU machine: 128x128 crops (resized to 143 first, the paper's 286/256
    # jitter halved) of the default dataset, unet_128, half-width networks, a short
    # schedule. A step there costs 0.17 (L1 only) to 0.30 (286x286 D) CPU-seconds, so one
    # variant takes about 5-9 minutes with the compilation and the evaluation.
    "small": ("", {
        "data.load_size": 143,
        "data.crop_size": 128,
        "model.num_downs": 7,
        "model.ngf": 32,
        "model.ndf": 32,
        "batch_size": 1,
        "num_train_steps": 2000,
        "decay_steps": 1000,
        "log_every_steps": 100,
        "checkpoint_every_steps": 500,
        "checkpoint_keep": 1,
        "eval_every_steps": 0,
        "num_image_summaries": 2,
    }),
    # The CPU variant (`make train`'s: 64x64 crops of the 96x96 stored pairs, a 6-level
    # U-Net with ngf = ndf = 32, batch 4, lambda_L1 = 1000, LR 5e-4) for 5000 steps, the LR
    # decaying over the last 1250: L1+cGAN scores ~+3 dB over the identity there
    # (docs/results/cpu_tuning.md). About 8 minutes a variant on an idle 2-core machine. The
    # 286x286 ImageGAN does not fit 64x64 crops (its D reduces them to nothing): run the
    # patch_sizes suite with --variants=pixel,patch16,patch70 (70x70 covers the whole crop).
    "cpu": ("cpu", {
        "num_train_steps": 5000,
        "decay_steps": 1250,
        "log_every_steps": 100,
        "checkpoint_every_steps": 1000,
        "checkpoint_keep": 1,
        "eval_every_steps": 0,
        "num_image_summaries": 2,
    }),
    # Smoke tests: the `tiny` config (32x32, ngf 8) for 2 steps (as other tests train it,
    # so that compiled steps are shared through the compilation cache).
    "tiny": ("tiny", {
        "num_train_steps": 2,
        "log_every_steps": 2,
        "checkpoint_every_steps": 2,
        "checkpoint_keep": 1,
        "eval_every_steps": 0,
        "num_image_summaries": 1,
    }),
}
DEFAULT_SCALE = "cpu"


@dataclasses.dataclass(frozen=True)
class Variant:
  """One row of a suite's table: `overrides` of the default config (dotted keys)."""
  name: str  # identifier: get_config("NAME,SCALE"), --variants=NAME
  label: str  # as the paper's table names it
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def set_values(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]
               ) -> ml_collections.ConfigDict:
  """Sets {'a.b': value} on `config` in place (every key must exist); returns it."""
  for key, value in overrides.items():
    *parents, name = key.split(".")
    node = config
    for part in parents:
      node = node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
    if not isinstance(node, ml_collections.ConfigDict) or name not in node:
      raise KeyError(f"{key} is not a key of configs/default.py.")
    node[name] = value
  return config


def scale_config(scale: str, overrides: Optional[Mapping[str, Any]] = None
                 ) -> ml_collections.ConfigDict:
  """configs/default.py at `scale`, with `overrides` on top."""
  if scale not in SCALES:
    raise ValueError(f"Unknown scale {scale!r}; known: {tuple(SCALES)}.")
  base_variant, scale_overrides = SCALES[scale]
  config = set_values(default.get_config(base_variant), scale_overrides)
  return set_values(config, overrides or {})


def variant_config(variant: Variant, scale: str,
                   overrides: Optional[Mapping[str, Any]] = None
                   ) -> ml_collections.ConfigDict:
  """The config of one variant: default -> scale -> `overrides` -> the variant's keys."""
  return set_values(scale_config(scale, overrides), variant.overrides)


def find(variants: Sequence[Variant], name: str) -> Variant:
  for variant in variants:
    if variant.name == name:
      return variant
  raise ValueError(f"Unknown variant {name!r}; known: {[v.name for v in variants]}.")


def get_config_for(variants: Sequence[Variant], arg: str) -> ml_collections.ConfigDict:
  """The config of 'VARIANT[,SCALE]' (the scale defaults to `cpu`), for config_flags."""
  name, _, scale = arg.partition(",")
  return variant_config(find(variants, name), scale or DEFAULT_SCALE)
