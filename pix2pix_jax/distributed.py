"""Multi-process start-up on JAX's own runtime (`jax.distributed`).

A run of several processes (several hosts, or one process per GPU) starts each process
with `initialize(...)` before anything else touches JAX:

  - given `coordinator_address` (HOST:PORT of process 0), `num_processes` and
    `process_id` (main.py's `--coordinator_address --num_processes --process_id`), it
    calls `jax.distributed.initialize` with them; any left unset are filled in by the
    cluster environment, as JAX does;
  - given none, it asks JAX's own cluster detection (SLURM, Open MPI, Cloud TPU pod
    slices, ...) and initializes if that finds more than one process;
  - otherwise (one plain process) it does nothing.

After it, `jax.process_index()` / `jax.process_count()` say which process this is, the
pmapped step's collectives span every process's devices, and only process 0 writes.
"""

import re
from typing import Any, Optional

from absl import logging
import jax

from pix2pix_jax import configuration

_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[^:\s\[\]]+):(\d{1,5})$")


def detect_cluster() -> Optional[tuple[str, int]]:
  """(name, process count) of the cluster environment JAX auto-detects, or None.

  Uses JAX's own detectors in JAX's order (the first present one is what
  `jax.distributed.initialize()` would use); opt-in ones (mpi4py) are skipped, as JAX
  skips them.
  """
  try:
    from jax._src import clusters  # pylint: disable=g-import-not-at-top
    candidates = list(clusters.ClusterEnv._cluster_types)  # pylint: disable=protected-access
  except (ImportError, AttributeError) as e:  # JAX moved its detectors.
    logging.warning("Cannot look for a cluster environment (%s): pass --coordinator_address, "
                    "--num_processes and --process_id to run several processes.", e)
    return None
  for env in candidates:
    if not env.opt_in_only_method and env.is_env_present():
      return env.name or env.__name__, int(env.get_process_count())
  return None


def _check_flags(coordinator_address: str, num_processes: int, process_id: int) -> None:
  if coordinator_address and not _ADDRESS.match(coordinator_address):
    raise configuration.ConfigError(
        f"--coordinator_address={coordinator_address!r} is not HOST:PORT (process 0's "
        "address and a free port, e.g. 10.0.0.1:1234).")
  if coordinator_address and not 0 < int(_ADDRESS.match(coordinator_address)[2]) < 65536:
    raise configuration.ConfigError(
        f"--coordinator_address={coordinator_address!r}: the port must be in [1, 65535].")
  if num_processes is not None and num_processes < 1:
    raise configuration.ConfigError(f"--num_processes={num_processes} must be >= 1.")
  if process_id is not None and (process_id < 0 or (
      num_processes is not None and process_id >= num_processes)):
    raise configuration.ConfigError(
        f"--process_id={process_id} must be in [0, --num_processes={num_processes}).")


def initialize_arguments(coordinator_address: Optional[str] = None,
                         num_processes: Optional[int] = None,
                         process_id: Optional[int] = None) -> Optional[dict[str, Any]]:
  """The `jax.distributed.initialize` keyword arguments for this run; None = one process.

  Flags left unset (None or "") are filled in by the detected cluster environment, as
  JAX does; where none is detected they are all needed. Raises ConfigError naming the
  bad or missing flag.
  """
  coordinator_address = coordinator_address or None
  _check_flags(coordinator_address, num_processes, process_id)
  given = {"coordinator_address": coordinator_address, "num_processes": num_processes,
           "process_id": process_id}
  if num_processes == 1:
    return None  # one process: nothing to start.
  if all(value is None for value in given.values()):
    cluster = detect_cluster()
    if cluster is None or cluster[1] <= 1:
      return None
    logging.info("Detected a %s cluster of %d processes.", *cluster)
    return {}  # JAX's auto-detection fills in everything.
  missing = [f"--{name}" for name, value in given.items() if value is None]
  if missing and detect_cluster() is None:
    raise configuration.ConfigError(
        f"A multi-process run needs --coordinator_address=HOST:PORT, --num_processes=N and "
        f"--process_id=I; {', '.join(missing)} missing (and no cluster environment such as "
        "SLURM or a TPU pod slice to fill them in).")
  return {name: value for name, value in given.items() if value is not None}


def initialize(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
               process_id: Optional[int] = None) -> bool:
  """Starts `jax.distributed` if this run is one of several processes; True if it did.

  Call it first, before any JAX computation. A no-op on one process, and when the
  runtime is already up.
  """
  if jax.distributed.is_initialized():
    return False
  arguments = initialize_arguments(coordinator_address, num_processes, process_id)
  if arguments is None:
    return False
  if not getattr(jax.config, "jax_cpu_collectives_implementation", "gloo"):
    # CPU processes need a cross-process collective library for the pmapped step.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**arguments)
  logging.info("Process %d of %d; devices: %d local, %d in all.", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
  return True


def is_primary() -> bool:
  """True in the one process that writes logs, images, reports and TensorBoard."""
  return jax.process_index() == 0
