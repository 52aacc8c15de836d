"""Running a trained generator: the two named normalisation modes.

`paper`: the paper's (and the reference test script's) test time: batch norm uses the
statistics of the batch being translated and dropout stays on, drawn from `rng` (the same rng
gives the same output). `running`: batch norm uses the running averages gathered in training
and dropout is off, as a conventional network in eval mode. Neither mode changes the stored
statistics. The config's `inference.norm_mode` may also be `auto` (its default), which
`resolve_norm_mode` turns into one of the two by the batch size training used.
"""

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

NORM_MODES = ("paper", "running")
CONFIG_NORM_MODES = ("auto",) + NORM_MODES  # what inference.norm_mode may say.


def check_norm_mode(norm_mode: str) -> str:
  if norm_mode not in NORM_MODES:
    raise ValueError(f"inference.norm_mode={norm_mode!r} is not one of {NORM_MODES}.")
  return norm_mode


def resolve_norm_mode(norm_mode: str, batch_size: int) -> str:
  """`paper` or `running`; `auto` picks by the training batch size.

  `auto` is `paper` when training used batch 1: there every training step normalised by
  one image's own statistics, which is what paper mode does at test time (the paper's
  and the reference's choice). After training at batch > 1 a single test image's
  statistics are not what the network was trained with, and `running` is used: measured
  on the default CPU task (batch 4), it scores several dB above `paper` (README,
  "Test-time normalisation").
  """
  if norm_mode == "auto":
    return "paper" if int(batch_size) == 1 else "running"
  return check_norm_mode(norm_mode)


# On CPU, running-mode inference compiles without XLA's YNNPACK fusions (its convolutions and
# products go to XLA's own, Eigen's): unet_256 at batch 1 101.5, 114.3, 100.1, 100.8, 98.9 ms
# against 121.5, 110.9, 121.8, 112.3, 113.8 with them, batch 8 +8% (the CPU variant's batch 8
# +24%, its batch 1 even; docs/performance.md, change 14). Paper mode and training keep them:
# both were slower without. The same functions, rounded differently.
_RUNNING_MODE_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def compiler_options(paper_mode: bool) -> Optional[dict[str, str]]:
  """XLA compiler options for the generator's inference in this mode (None: the defaults)."""
  if paper_mode or jax.default_backend() != "cpu":
    return None
  return dict(_RUNNING_MODE_CPU_OPTIONS)


def jit_generator(generator, paper_mode: bool) -> Callable[..., jax.Array]:
  """`apply(variables, images, rng)`: the generator in this norm mode, jitted with this mode's
  `compiler_options` (what `make_generate_fn` and `Translator` run)."""
  def apply(variables, images, rng):
    return generator.apply(variables, images, train=paper_mode, rngs={"dropout": rng})
  return jax.jit(apply, compiler_options=compiler_options(paper_mode))


def make_generate_fn(generator) -> Callable[..., jax.Array]:
  """Returns `generate(variables, images, *, norm_mode, rng=None)`, jitted per norm mode.

  `images` are float NHWC in [-1, 1]; the result is too. `generator` must have no device axis
  (`axis_name=None`). With `rng=None`, paper mode uses the fixed key 0.
  """
  jitted = {paper_mode: jit_generator(generator, paper_mode) for paper_mode in (False, True)}

  def generate(variables, images, *, norm_mode: str, rng: Optional[jax.Array] = None):
    paper_mode = check_norm_mode(norm_mode) == "paper"
    rng = jax.random.key(0) if rng is None else rng
    variables = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
    return jitted[paper_mode](variables, jnp.asarray(images, jnp.float32), rng)
  return generate


ENSEMBLE_SIZE = 8  # the dihedral group of the square: 4 rotations, each flipped or not.


def dihedral(images, k: int, xp=np):
  """The k-th of the 8 flips and 90-degree rotations of NHWC `images` (k = 0: as they are);
  `xp` is numpy or jax.numpy."""
  if k >= 4:
    images = xp.flip(images, axis=2)
  return xp.rot90(images, k % 4, axes=(1, 2))


def undo_dihedral(images, k: int, xp=np):
  """The inverse of `dihedral(., k)`."""
  images = xp.rot90(images, -(k % 4), axes=(1, 2))
  return xp.flip(images, axis=2) if k >= 4 else images


# inference.ensemble_transforms -> the `dihedral` indices averaged.
ENSEMBLE_TRANSFORMS = {"dihedral": tuple(range(ENSEMBLE_SIZE)), "hflip": (0, 4)}
DEFAULT_ENSEMBLE_TRANSFORMS = "dihedral"  # where a config lacks the key


def ensemble_indices(transforms: str) -> tuple[int, ...]:
  """The `dihedral` indices `inference.ensemble_transforms` names; ValueError if none."""
  if transforms not in ENSEMBLE_TRANSFORMS:
    raise ValueError(f"inference.ensemble_transforms={transforms!r} is not one of "
                     f"{tuple(ENSEMBLE_TRANSFORMS)}.")
  return ENSEMBLE_TRANSFORMS[transforms]


def ensemble_mean(generate: Callable, images, xp=np,
                  transforms: str = DEFAULT_ENSEMBLE_TRANSFORMS):
  """The mean of `generate`'s outputs over the flips and rotations of `images`, each
  transformed back: `dihedral`, all 8 (MAXIM's and other deraining papers' test-time
  ensemble), or `hflip`, the image and its mirror (the flips training augments with). Each
  transform is its own `generate` call, so paper mode's batch statistics never mix them."""
  ks = ensemble_indices(transforms)
  total = None
  for k in ks:
    output = undo_dihedral(generate(dihedral(images, k, xp)), k, xp)
    total = output if total is None else total + output
  return total / len(ks)


def to_uint8(images) -> np.ndarray:
  """[-1, 1] floats -> uint8 pixels (rounded, clipped)."""
  images = (np.asarray(images, np.float32) + 1.0) * 127.5
  return np.clip(np.round(images), 0, 255).astype(np.uint8)


def from_uint8(images) -> np.ndarray:
  """uint8 pixels -> [-1, 1] floats, as the input pipeline scales them."""
  return np.asarray(images, np.float32) / 127.5 - 1.0
