"""Translating images of any size with a trained generator: `Translator`.

    translator = Translator.from_workdir("runs/rain", norm_mode="running")
    clean = translator(rainy)          # uint8 HxWxC (or NxHxWxC, or a PIL image) of any size

Each image is reflect-padded to a multiple of 2**model.num_downs (the U-Net's stride; 4 for
the ResNets, `models.size_multiple`), run
through the jitted generator (compiled once per padded shape) and cropped back. Images are
translated one at a time, so in `paper` norm mode an image is normalised by its own statistics
alone, as the reference's test script. In `running` mode an image larger than
`predict.tile_size` on a side is translated in overlapping tiles cross-faded over
`predict.overlap` pixels (see `blend_window`), so no seam shows; `paper` mode cannot tile (a tile's statistics are
not the image's) and says so.
"""

import os
from typing import Any, Mapping, Optional, Union
import warnings

import jax
import ml_collections
import numpy as np
from PIL import Image

from pix2pix_jax import checkpoints
from pix2pix_jax import configuration
from pix2pix_jax import inference
from pix2pix_jax import input_pipeline
from pix2pix_jax import metrics
from pix2pix_jax import models

DEFAULT_TILE_SIZE = 1024
DEFAULT_OVERLAP = 64
ImageLike = Union[np.ndarray, Image.Image]


def apply_overrides(config: ml_collections.ConfigDict, overrides: Optional[Mapping[str, Any]]
                    ) -> ml_collections.ConfigDict:
  """A copy of `config` with {'a.b': value} overrides set (missing sections are created).

  Overrides of keys that change the networks are refused: the weights fit the saved ones.
  """
  config = ml_collections.ConfigDict(config.to_dict())
  for key, value in (overrides or {}).items():
    saved = checkpoints.architecture_value(config, key)
    if key in checkpoints.ARCHITECTURE_KEYS and saved != value:
      raise configuration.ConfigError(
          f"--config.{key}={value!r} differs from the workdir's {saved!r}"
          ": the saved weights fit only the network they were trained as.")
    *parents, name = key.split(".")
    node = config
    for part in parents:
      if part not in node:
        node[part] = ml_collections.ConfigDict()
      node = node[part]
    node[name] = value
  return config


def load_workdir(workdir: str, checkpoint: Union[str, int, None] = "latest",
                 overrides: Optional[Mapping[str, Any]] = None
                 ) -> tuple[ml_collections.ConfigDict, dict[str, Any], str]:
  """(config with overrides, generator variables, checkpoint description) of a workdir.

  `checkpoint`: 'latest' (or None), 'best' (the best validation checkpoint, in W/best) or a
  step number.
  """
  workdir = os.path.abspath(os.path.expanduser(workdir))
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"The workdir {workdir} does not exist.")
  checkpoint = "latest" if checkpoint is None else str(checkpoint)
  if checkpoint == "latest":
    source, step = workdir, None
  elif checkpoint == "best":
    source, step = os.path.join(workdir, "best"), None
    if not os.path.exists(checkpoints.config_path(source)):
      raise FileNotFoundError(
          f"{source} does not exist: {workdir} has no best checkpoint (it is kept by "
          "in-training validation, eval_every_steps > 0); use --checkpoint=latest or a step.")
  elif checkpoint.isdigit():
    source, step = workdir, int(checkpoint)
  else:
    raise ValueError(f"--checkpoint={checkpoint!r}: use 'latest', 'best' or a step number.")
  config, generator_variables, _ = checkpoints.load_variables(source, step)
  config = apply_overrides(config, overrides)
  return config, generator_variables, f"{checkpoint} ({source})"


def reflect_pad(image: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
  """(HxWxC image reflect-padded to multiples of `multiple`, (top, left) offsets)."""
  h, w = image.shape[:2]
  pad_h, pad_w = -h % multiple, -w % multiple
  top, left = pad_h // 2, pad_w // 2
  padded = np.pad(image, ((top, pad_h - top), (left, pad_w - left), (0, 0)), mode="reflect")
  return padded, (top, left)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
  """Start offsets of tiles of `tile` covering [0, length), consecutive ones overlapping
  by at least `overlap` (the last one flush with the end)."""
  if length <= tile:
    return [0]
  starts = list(range(0, length - tile, tile - overlap))
  return starts + [length - tile]


def blend_window(tile: int, overlap: int, *, fade_in: bool = True, fade_out: bool = True
                 ) -> np.ndarray:
  """1-D weights of a tile along one axis, for a cross-fade with its neighbours.

  On a side shared with a neighbour (`fade_in` at the start, `fade_out` at the end) the
  outer quarter of the overlap gets weight 0 (the pixels that miss the most context), the
  middle half a linear ramp and the rest 1; sides on the image border keep weight 1. Two
  tiles overlapping by >= `overlap` pixels thus cross-fade continuously: no seam.
  """
  weights = np.ones(tile, np.float32)
  if overlap > 0:
    positions = np.arange(overlap, dtype=np.float32) + 0.5
    ramp = np.clip((positions - overlap / 4) / (overlap / 2), 0.0, 1.0)
    if fade_in:
      weights[:overlap] = ramp
    if fade_out:
      weights[-overlap:] = np.minimum(weights[-overlap:], ramp[::-1])
  return weights


def _to_array(image: ImageLike) -> np.ndarray:
  if isinstance(image, Image.Image):
    image = input_pipeline.eight_bit(image, name=getattr(image, "filename", "") or "the image")
    has_alpha = "A" in image.getbands() or "transparency" in image.info
    if image.mode not in ("L", "RGB", "RGBA", "LA"):
      image = image.convert("RGBA" if has_alpha else "RGB")
    return np.asarray(image)
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise TypeError(f"Translator takes uint8 images (0-255), got dtype {image.dtype}.")
  return image


def as_batch(image: ImageLike, channels: int) -> tuple[np.ndarray, bool]:
  """(uint8 NxHxWx`channels` batch, whether a single image was given).

  Grey images are repeated to 3 channels (RGB to luma for a 1-channel model); an alpha
  channel is dropped with a warning.
  """
  array = _to_array(image)
  single = array.ndim in (2, 3)
  if array.ndim == 2:
    array = array[..., None]
  if single:
    array = array[None]
  if array.ndim != 4 or array.shape[-1] not in (1, 2, 3, 4):
    raise ValueError(f"Expected an HxW, HxWxC or NxHxWxC image with C in 1..4, got shape "
                     f"{np.shape(image)}.")
  if array.shape[-1] in (2, 4):
    warnings.warn("The image has an alpha channel; it is ignored (dropped).", stacklevel=3)
    array = array[..., :-1]
  if array.shape[-1] != channels:
    if channels == 3:
      array = np.repeat(array, 3, axis=-1)
    else:
      array = np.stack([metrics.luma(a) for a in array])[..., None]
  return array, single


class Translator:
  """A trained generator as a function of uint8 images of any size (see the module doc)."""

  def __init__(self, config: ml_collections.ConfigDict, variables: Mapping[str, Any], *,
               norm_mode: Optional[str] = None, seed: int = 0,
               ensemble: Optional[bool] = None):
    """`variables`: the generator's {'params', 'batch_stats'}; `norm_mode` defaults to
    config.inference.norm_mode; `seed` draws paper mode's dropout (fixed per call);
    `ensemble` (default config.inference.ensemble): the mean over the 8 flips and
    rotations of each image (of each tile, when tiled)."""
    self.config = config
    self.norm_mode = inference.resolve_norm_mode(
        norm_mode or config.inference.norm_mode, config.batch_size)
    self.ensemble = bool(config.inference.get("ensemble", False) if ensemble is None
                         else ensemble)
    self.ensemble_transforms = config.inference.get("ensemble_transforms",
                                                    inference.DEFAULT_ENSEMBLE_TRANSFORMS)
    inference.ensemble_indices(self.ensemble_transforms)  # a bad name fails here, not later.
    self.multiple, why = models.size_multiple(config.model)
    self.input_channels = int(config.model.input_channels)
    self.output_channels = int(config.model.output_channels)
    predict = config.get("predict") or {}
    self.tile_size = int(predict.get("tile_size", DEFAULT_TILE_SIZE))
    self.overlap = int(predict.get("overlap", DEFAULT_OVERLAP))
    if self.tile_size < self.multiple or self.tile_size % self.multiple:
      raise configuration.ConfigError(
          f"predict.tile_size={self.tile_size} must be a positive multiple of {why}.")
    if not 0 <= self.overlap < self.tile_size // 2:
      raise configuration.ConfigError(
          f"predict.overlap={self.overlap} must be in [0, predict.tile_size / 2).")
    self.variables = jax.device_put({"params": variables["params"],
                                     "batch_stats": variables.get("batch_stats", {})})
    self._rng = jax.random.key(seed)
    # Compiled once per padded shape.
    self._apply = inference.jit_generator(models.create_generator(config.model),
                                          paper_mode=self.norm_mode == "paper")

  @classmethod
  def from_workdir(cls, workdir: str, norm_mode: Optional[str] = None,
                   checkpoint: Union[str, int, None] = "latest",
                   config_overrides: Optional[Mapping[str, Any]] = None, seed: int = 0,
                   ensemble: Optional[bool] = None) -> "Translator":
    """The generator of a trained workdir; `checkpoint` is 'latest', 'best' or a step."""
    config, variables, _ = load_workdir(workdir, checkpoint, config_overrides)
    return cls(config, variables, norm_mode=norm_mode, seed=seed, ensemble=ensemble)

  def __call__(self, image: ImageLike) -> np.ndarray:
    """uint8 output(s) of the same height and width (and batch) as `image`."""
    batch, single = as_batch(image, self.input_channels)
    outputs = np.stack([self.translate_one(x) for x in batch])
    return outputs[0] if single else outputs

  def _generate(self, padded: np.ndarray) -> np.ndarray:
    """[-1, 1] output of one padded uint8 HxWxC image (the ensemble's mean if on)."""
    images = inference.from_uint8(padded[None])
    generate = lambda x: np.asarray(self._apply(self.variables, x, self._rng))
    if self.ensemble:
      return inference.ensemble_mean(generate, images,
                                     transforms=self.ensemble_transforms)[0]
    return generate(images)[0]

  def check_size(self, width: int, height: int) -> None:
    """Raises ValueError for a size this translator refuses (known from a file's header,
    before its pixels are decoded)."""
    if max(height, width) > self.tile_size and self.norm_mode == "paper":
      raise ValueError(
          f"A {width}x{height} image is larger than predict.tile_size={self.tile_size}, and "
          "paper norm mode cannot tile: it normalises each image by its own statistics. Use "
          "--config.inference.norm_mode=running (tiled), or a larger "
          "--config.predict.tile_size if the image fits in memory in one piece.")

  def translate_one(self, image: np.ndarray) -> np.ndarray:
    """uint8 output of one uint8 HxWxC image with the model's input channels."""
    h, w = image.shape[:2]
    self.check_size(w, h)
    padded, (top, left) = reflect_pad(image, self.multiple)
    if max(h, w) > self.tile_size:
      output = self._generate_tiled(padded)
    else:
      output = self._generate(padded)
    return inference.to_uint8(output[top:top + h, left:left + w])

  def _generate_tiled(self, padded: np.ndarray) -> np.ndarray:
    """[-1, 1] output of a padded image from overlapping tiles, cross-faded."""
    height, width = padded.shape[:2]
    tile_h, tile_w = min(self.tile_size, height), min(self.tile_size, width)
    total = np.zeros((height, width, self.output_channels), np.float32)
    weights = np.zeros((height, width, 1), np.float32)
    tops = tile_starts(height, tile_h, self.overlap)
    lefts = tile_starts(width, tile_w, self.overlap)
    for top in tops:
      rows = blend_window(tile_h, self.overlap, fade_in=top > 0, fade_out=top < tops[-1])
      for left in lefts:
        columns = blend_window(tile_w, self.overlap, fade_in=left > 0,
                               fade_out=left < lefts[-1])
        window = np.outer(rows, columns)[..., None]
        tile = padded[top:top + tile_h, left:left + tile_w]
        total[top:top + tile_h, left:left + tile_w] += self._generate(tile) * window
        weights[top:top + tile_h, left:left + tile_w] += window
    return total / weights
