"""The console filter: library chatter goes to the log file only."""

import logging

from pix2pix_jax import writers


def _record(pathname, level, msg):
  return logging.LogRecord("absl", level, pathname, 1, msg, None, None)


def test_console_drops_library_chatter_but_keeps_warnings_and_our_lines():
  keep = writers._DropLibraryInfo().filter  # pylint: disable=protected-access
  orbax = "/site-packages/orbax/checkpoint/checkpoint_manager.py"
  assert not keep(_record(orbax, logging.INFO, "Saving checkpoint at step 5"))
  assert not keep(_record(orbax, logging.WARNING, "Given directory is read only=/w/checkpoints"))
  assert not keep(_record(orbax, logging.WARNING,
                          "CheckpointManagerOptions.read_only=True, setting max_to_keep=None."))
  assert keep(_record(orbax, logging.WARNING, "Checkpoint at step 5 is corrupt"))
  tfds = "/site-packages/tensorflow_datasets/core/dataset_builder.py"
  assert not keep(_record(tfds, logging.WARNING, "Using custom data configuration x"))
  assert keep(_record("/repo/pix2pix_jax/train.py", logging.INFO, "Data: synthetic_rain"))
