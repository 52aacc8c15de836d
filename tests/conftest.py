"""Test set-up: the repo root on sys.path, two fake CPU devices, a compilation cache.

Two devices make every pmapped step in the tests a real data-parallel step; single-device
runs use `devices=jax.local_devices()[:1]`. The persistent compilation cache (inherited by
the subprocesses the tests start) lets the many tiny runs share their compiled steps.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(ROOT, ".pytest_cache", "jax_compilation_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import jax  # pylint: disable=g-import-not-at-top

jax.config.update("jax_num_cpu_devices", 2)


def pytest_configure(config):
  # `make test` runs every test; a fast tier deselects these with -m "not slow".
  config.addinivalue_line(
      "markers", "slow: long-running parity tests (e.g. 3 train steps against torch)")
