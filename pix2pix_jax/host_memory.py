"""Handing memory the process has freed back to the operating system.

XLA's compiler frees what it used once a step is compiled (~0.7 GB for the default train
step on a CPU; several hundred MB for the tiny one), but glibc keeps freed memory in the
process's heap, so the first step's own buffers come on top of it and the process's peak
resident memory is the compiler's plus the step's. `release_freed_memory()` (glibc's
malloc_trim) returns it; train.py calls it once the state is built and once the step is
compiled. Elsewhere (macOS, musl) it does nothing.
"""

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return libc.malloc_trim
  except (OSError, AttributeError):
    return None


def release_freed_memory() -> bool:
  """Returns the heap's free pages to the OS (glibc); True when that was possible."""
  trim = _malloc_trim()
  if trim is None:
    return False
  trim(0)
  return True
