"""Pinning a timed process to the same cores on both sides of a comparison."""

import os


def pin_threads(threads: int) -> int:
  """Pins this process to its first `threads` allowed cores (0: all); returns the count.

  Call it before the first JAX or torch operation: XLA:CPU sizes its thread pool from the
  cores this process may use; torch is then given as many intra-op threads."""
  cores = sorted(os.sched_getaffinity(0))
  threads = min(threads or len(cores), len(cores))
  os.sched_setaffinity(0, cores[:threads])
  return threads
