"""Where training reports go: the console (absl logging + a progress bar), a JSON-lines file
(W/metrics.jsonl), TensorBoard (W/tensorboard, via tensorboardX) and, for runs started from
main.py, the full log (W/train.log, the libraries' chatter included)."""

import json
import logging as std_logging
from logging import handlers as std_handlers
import os
import sys
import time
from typing import Mapping, Optional

from absl import logging
import numpy as np
import tqdm

from pix2pix_jax import inference


class _DropLibraryInfo(std_logging.Filter):
  """Drops the INFO chatter of JAX, Orbax, TFDS and grain (their warnings still pass), and
  the warnings that say nothing to a user: TFDS's dump of a builder's whole config, and
  Orbax's notices that a read-only manager (how checkpoints are looked for) is read-only."""
  _LIBRARIES = ("/jax/", "/orbax/", "/tensorflow_datasets/", "/grain/")
  _MESSAGES = {"/tensorflow_datasets/": ("Using custom data configuration",),
               "/orbax/": ("CheckpointManagerOptions.read_only=True",
                           "Given directory is read only")}

  def filter(self, record):
    for library, messages in self._MESSAGES.items():
      if record.pathname and library in record.pathname and any(
          m in str(record.msg) for m in messages):
        return False
    return record.levelno >= std_logging.WARNING or not any(
        lib in record.pathname for lib in self._LIBRARIES)


def quiet_library_logs() -> None:
  """Keeps the console to our own messages: libraries log INFO lines at every save (the
  full log still gets them, see `buffer_logs`), and TFDS draws no progress bars."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  console = logging.get_absl_handler()
  if not any(isinstance(f, _DropLibraryInfo) for f in console.filters):
    console.addFilter(_DropLibraryInfo())


_LOG_FILE = "train.log"
_log_buffer: Optional[std_handlers.MemoryHandler] = None


def buffer_logs() -> None:
  """Keeps every log record from now on until `log_to_file` knows the workdir (main.py
  calls it first thing: the workdir is written only once the run is known to start)."""
  global _log_buffer
  if _log_buffer is None:
    _log_buffer = std_handlers.MemoryHandler(capacity=100_000,
                                             flushLevel=std_logging.CRITICAL + 1)
    std_logging.getLogger().addHandler(_log_buffer)


def log_to_file(workdir: str) -> Optional[std_logging.Handler]:
  """After `buffer_logs`: the buffered and all later records go to W/train.log (appended).

  Returns the file's handler (close it with `close_log_file`), or None where nothing was
  buffered (library use, tests): then nothing is written.
  """
  global _log_buffer
  if _log_buffer is None:
    return None
  handler = std_logging.FileHandler(os.path.join(workdir, _LOG_FILE))
  handler.setFormatter(logging.PythonFormatter())
  root = std_logging.getLogger()
  _log_buffer.setTarget(handler)
  _log_buffer.flush()
  root.removeHandler(_log_buffer)
  _log_buffer.close()
  _log_buffer = None
  root.addHandler(handler)
  return handler


def close_log_file(handler: Optional[std_logging.Handler]) -> None:
  if handler is not None:
    std_logging.getLogger().removeHandler(handler)
    handler.close()


def progress_bar(total_steps: int, start_step: int, *, enabled: bool = True) -> tqdm.tqdm:
  """A step progress bar with rate and ETA on a terminal. Elsewhere (a log file, CI) and in
  the other processes of a multi-process run it prints nothing: the log lines of each
  log interval carry the step and the ETA instead of cursor escapes."""
  return tqdm.tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                   mininterval=1.0, file=sys.stderr,
                   disable=not enabled or not sys.stderr.isatty())


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

  def write_scalars(self, step: int, scalars: Mapping[str, float], note: str = "") -> None:
    """Logs `scalars` at `step` (console line + `note`, JSON line, TensorBoard)."""
    if not self._enabled:
      return
    logging.info("step %d: %s%s", step, ", ".join(f"{k}={v:.4g}" for k, v in scalars.items()),
                 note)
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
