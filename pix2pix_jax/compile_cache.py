"""JAX's persistent compilation cache, so that a second run skips compiling the step.

`enable(config)` points JAX at `compilation_cache.dir` (default: `data.cache_dir`'s
jax_compilation_cache/, beside the built datasets), keeps only compilations that took at
least a second, and bounds the folder to `compilation_cache.max_mb` (JAX evicts the least
recently used entries). `main.py` calls it for every mode; call it yourself before the first
compilation when you train or translate from Python. An environment that already sets
JAX_COMPILATION_CACHE_DIR (e.g. the tests) keeps its own.
"""

import os
from typing import Optional

from absl import logging
import jax
import ml_collections

OFF = "off"


def cache_dir(config: ml_collections.ConfigDict) -> Optional[str]:
  """The folder `config` asks for (None: off)."""
  section = config.get("compilation_cache") or {}
  folder = section.get("dir", "")
  if folder == OFF:
    return None
  if not folder:
    folder = os.path.join(config.data.get("cache_dir", "~/.cache/pix2pix_jax"),
                          "jax_compilation_cache")
  return os.path.abspath(os.path.expanduser(folder))


def enable(config: ml_collections.ConfigDict) -> Optional[str]:
  """Turns the cache on as `config` says; returns its folder (None: off or set elsewhere)."""
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return None
  folder = cache_dir(config)
  if folder is None:
    return None
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError as e:  # a read-only home, a file in the way: run without the cache.
    logging.warning("No compilation cache (%s: %s); set compilation_cache.dir elsewhere, or "
                    "to 'off'.", folder, e.strerror or e)
    return None
  max_mb = int((config.get("compilation_cache") or {}).get("max_mb", 2048))
  jax.config.update("jax_compilation_cache_dir", folder)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  jax.config.update("jax_compilation_cache_max_size", max_mb * 2 ** 20 if max_mb > 0 else -1)
  return folder
