"""Where training reports go: the console (absl logging + a progress bar), a JSON-lines file
(W/metrics.jsonl) and TensorBoard (W/tensorboard, via tensorboardX)."""

import json
import logging as std_logging
import os
import sys
import time
from typing import Mapping

from absl import logging
import numpy as np
import tqdm

from pix2pix_jax import inference


class _DropLibraryInfo(std_logging.Filter):
  """Drops the INFO chatter of Orbax, TFDS and grain (their warnings still pass)."""
  _LIBRARIES = ("/orbax/", "/tensorflow_datasets/", "/grain/")

  def filter(self, record):
    return record.levelno >= std_logging.WARNING or not any(
        lib in record.pathname for lib in self._LIBRARIES)


def quiet_library_logs() -> None:
  """Keeps the console to our own messages: libraries log INFO lines at every save."""
  absl_logger = logging.get_absl_logger()
  if not any(isinstance(f, _DropLibraryInfo) for f in absl_logger.filters):
    absl_logger.addFilter(_DropLibraryInfo())


def progress_bar(total_steps: int, start_step: int, *, enabled: bool = True) -> tqdm.tqdm:
  """A step progress bar with rate and ETA (plain lines when not on a terminal); a
  disabled one (the other processes of a multi-process run) prints nothing."""
  return tqdm.tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                   mininterval=1.0 if sys.stderr.isatty() else 30.0, file=sys.stderr,
                   disable=not enabled)


def image_grid(*columns) -> np.ndarray:
  """uint8 grid with one row per example and one column per [-1, 1] image batch given."""
  columns = [inference.to_uint8(c) for c in columns]
  channels = max(c.shape[-1] for c in columns)
  columns = [np.repeat(c, channels, axis=-1) if c.shape[-1] == 1 else c for c in columns]
  rows = [np.concatenate([c[i] for c in columns], axis=1) for i in range(len(columns[0]))]
  return np.concatenate(rows, axis=0)


class MetricWriter:
  """Writes scalars and images to the console, W/metrics.jsonl and TensorBoard.

  Only one process writes (`enabled`); the others' calls do nothing.
  """

  def __init__(self, workdir: str, *, enabled: bool = True):
    self._enabled = enabled
    self._jsonl = None
    self._tensorboard = None
    if enabled:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
      self._tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self._enabled:
      return
    logging.info("step %d: %s", step, ", ".join(f"{k}={v:.4g}" for k, v in scalars.items()))
    record = {"step": int(step), "time": time.time(), **{k: float(v) for k, v in scalars.items()}}
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    for name, value in scalars.items():
      self._tensorboard.add_scalar(name, value, step)

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """`images`: name -> uint8 HxWxC."""
    if not self._enabled:
      return
    for name, image in images.items():
      self._tensorboard.add_image(name, image, step, dataformats="HWC")
    self._tensorboard.flush()

  def close(self) -> None:
    if self._enabled:
      self._jsonl.close()
      self._tensorboard.close()
