"""The one device axis, and moving state and batches onto / off the local devices.

Training is data parallel over `jax.local_devices()` with `jax.pmap` on one named axis,
`AXIS_NAME`: gradients and losses are `pmean`ed over it and batch norm reduces its statistics
over it, so a step sees the global batch whatever the device count.
"""

from typing import Any

import jax
import numpy as np

from pix2pix_jax import configuration

AXIS_NAME = "batch"


def check_batch_size(global_batch_size: int, *, device_count: int | None = None,
                     process_count: int | None = None) -> int:
  """Returns the per-device batch size; a clear error where the batch does not divide."""
  device_count = device_count or jax.device_count()
  process_count = process_count or jax.process_count()
  if global_batch_size < 1 or global_batch_size % device_count:
    raise configuration.ConfigError(
        f"batch_size={global_batch_size} must be a positive multiple of the device count "
        f"({device_count} device(s) over {process_count} process(es)); set --config.batch_size "
        f"to a multiple of {device_count}.")
  return global_batch_size // device_count


def shard(batch: Any, num_devices: int | None = None) -> Any:
  """Splits each array's leading (local batch) axis into (num_devices, per-device batch)."""
  num_devices = num_devices or jax.local_device_count()
  return jax.tree.map(lambda x: np.reshape(x, (num_devices, -1) + x.shape[1:]), batch)


def device_sharding(devices=None) -> jax.sharding.NamedSharding:
  """Leading axis split over `devices` (default: the local ones), named `AXIS_NAME`.

  The same sharding as pmap's outputs, so a step fed with arrays placed this way compiles
  once (arrays placed under another axis name would trigger a second compilation).
  """
  devices = np.asarray(devices if devices is not None else jax.local_devices())
  return jax.sharding.NamedSharding(jax.sharding.Mesh(devices, (AXIS_NAME,)),
                                    jax.sharding.PartitionSpec(AXIS_NAME))


def replicate(tree: Any, devices=None) -> Any:
  """One copy of `tree` on each local device (the leading axis of a pmap argument)."""
  sharding = device_sharding(devices)
  count = sharding.mesh.size

  def put(x):
    x = np.asarray(jax.device_get(x))
    return jax.device_put(np.broadcast_to(x, (count,) + x.shape), sharding)
  return jax.tree.map(put, tree)


def first_copy(tree: Any) -> Any:
  """Device 0's copy of a replicated tree, left on the device (no host transfer)."""
  return jax.tree.map(lambda x: x[0], tree)


def unreplicate(tree: Any) -> Any:
  """The host copy (numpy) of a replicated tree: what checkpoints save."""
  return jax.device_get(first_copy(tree))
