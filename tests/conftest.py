"""Test set-up: the repo root on sys.path, two fake CPU devices, a compilation cache.

Two devices make every pmapped step in the tests a real data-parallel step; single-device
runs use `devices=jax.local_devices()[:1]`. The persistent compilation cache (inherited by
the subprocesses the tests start) lets the many tiny runs share their compiled steps.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# One folder per xdist worker (gw0, gw1; "main" without xdist), shared only with the processes it
# starts: the two workers never load each other's entries (a CI run segfaulted loading a cached
# executable while both shared one folder; the exact cause in XLA is not known).
# (A worker inherits the controller's environment, so its own folder replaces the controller's.)
_CACHE_ROOT = os.path.join(ROOT, ".pytest_cache", "jax_compilation_cache")
if os.environ.get("JAX_COMPILATION_CACHE_DIR", _CACHE_ROOT).startswith(_CACHE_ROOT):
  os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(
      _CACHE_ROOT, os.environ.get("PYTEST_XDIST_WORKER", "main"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
# The suite compiles a few hundred small programs and runs each for milliseconds: compiling is
# most of its time. LLVM's optimisation level 0 halves that (make test from a cold cache:
# 30:03 -> 13:54 on the 2-core AVX2 machine); XLA:CPU's older elemental emitters instead of
# its MLIR fusion emitters halve the compilation of a tiny train step again (`compile_s` of
# benchmarks.throughput.prepared_train_step, configs/default.py:tiny at batch 4, in a process
# with this conftest's flags and JAX_ENABLE_COMPILATION_CACHE=false: 11.7-19.1 s in 4 runs
# without, 8.2-9.5 s in 3 with, interleaved). The whole suite from a cold cache in a fresh
# clone: 16:50 -> 11:39 (398 tests). At unet_256 and XLA's default level the emitters made no
# difference (`python -m benchmarks.throughput --worker=train --batch_size=1 --steps=5
# --config.compilation_cache.dir=off`, one pair: compile 30.0 vs 29.0 s, step 1.52 vs 1.68 s,
# within the noise), so users keep XLA's defaults. Both change float rounding only (e.g. fused
# multiply-adds), not what is computed. Every test asserts the same either way, and
# test_torch_training's optimisation-level test reruns the torch parity at XLA's defaults.
# PIX2PIX_TEST_XLA_OPTIMIZATION=default runs the whole suite at XLA's defaults.
OPTIMIZATION_FLAG = "--xla_backend_optimization_level=0"
TEST_XLA_FLAGS = (OPTIMIZATION_FLAG, "--xla_cpu_use_fusion_emitters=false")
if os.environ.get("PIX2PIX_TEST_XLA_OPTIMIZATION", "0") != "default":
  for _flag in TEST_XLA_FLAGS:
    if _flag not in os.environ.get("XLA_FLAGS", ""):
      os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_flag}".strip()

import jax  # pylint: disable=g-import-not-at-top

jax.config.update("jax_num_cpu_devices", 2)


# Modules whose tests train whole runs, start subprocesses (the CLI, several processes) or
# train against torch: the `slow` tier. `make test-fast` (-m "not slow") runs the rest:
# models, conv_ops, losses and steps, metrics, the input pipeline and datasets. A few
# single tests are marked `@pytest.mark.slow` where they are (a whole step per conv impl or
# GAN loss, one against two devices): make test-fast, 227 tests, 1:32 with a warm
# compilation cache on the 2-core AVX2 machine (2026-12-03).
SLOW_MODULES = frozenset({
    "test_benchmarks", "test_distributed", "test_end_to_end", "test_eval_sets", "test_experiments",
    "test_gallery_browser",
    "test_modes", "test_resume", "test_safeguards", "test_torch_import",
    "test_torch_training", "test_vs_reference", "test_translator", "test_paired_datasets",
})


def pytest_configure(config):
  # `make test` runs every test; `make test-fast` deselects these with -m "not slow".
  config.addinivalue_line(
      "markers", "slow: whole runs, subprocesses and torch training (see SLOW_MODULES)")


def pytest_collection_modifyitems(config, items):
  del config
  import pytest  # pylint: disable=g-import-not-at-top
  for item in items:
    if item.module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES:
      item.add_marker(pytest.mark.slow)
