"""What the timed processes of both sides of a comparison share (no JAX, no torch here)."""

import os
import platform
import time
from typing import Any, Callable

import numpy as np


def pin_threads(threads: int) -> int:
  """Pins this process to its first `threads` allowed cores (0: all); returns the count.

  Call it before the first JAX or torch operation: XLA:CPU sizes its thread pool from the
  cores this process may use; torch is then given as many intra-op threads."""
  cores = sorted(os.sched_getaffinity(0))
  threads = min(threads or len(cores), len(cores))
  os.sched_setaffinity(0, cores[:threads])
  return threads


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
  """The median wall time of `repeats` calls of `fn` (which must return once done)."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def cpu_vector_isa() -> str:
  """The widest vector instructions this CPU offers ('avx512', 'avx2', ...), from
  /proc/cpuinfo; else the architecture. Machines of one name differ in it, and the
  products' speed (and which formulation of a layer wins) with it."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      flags = next((line.split(":", 1)[1].split() for line in f
                    if line.startswith(("flags", "Features"))), [])
  except OSError:
    flags = []
  for isa, flag in (("avx512", "avx512f"), ("avx2", "avx2"), ("avx", "avx"),
                    ("sve", "sve"), ("neon", "asimd")):
    if flag in flags:
      return isa
  return platform.machine()
