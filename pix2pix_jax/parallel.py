"""The one device axis, and moving state and batches onto / off the local devices.

Training is data parallel over `jax.local_devices()` with `jax.pmap` on one named axis,
`AXIS_NAME`: gradients and losses are `pmean`ed over it and batch norm reduces its statistics
over it, so a step sees the global batch whatever the device count.
"""

import collections
import functools
from typing import Any

import jax
import jax.numpy as jnp
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


def replicate(tree: Any, devices=None, *, consume: bool = False) -> Any:
  """One copy of `tree` on each local device (the leading axis of a pmap argument).

  On one device the copy is computed there (a jitted broadcast) rather than put there from
  host memory: XLA:CPU copied a state put from host memory once more at the first step it
  was donated to, ~650 MB above the steady state at unet_256 (docs/performance.md). With
  `consume`, each array of `tree` is deleted once copied (the caller's `tree` is then
  unusable), so that at most one array is held twice rather than the whole state.
  """
  sharding = device_sharding(devices)
  count = sharding.mesh.size
  broadcast = _broadcaster(sharding)

  def put(x):
    if count == 1 and (not isinstance(x, jax.Array) or x.sharding.device_set ==
                       sharding.device_set):
      return broadcast(x)
    x = np.asarray(jax.device_get(x))
    return jax.device_put(np.broadcast_to(x, (count,) + x.shape), sharding)
  leaves, treedef = jax.tree.flatten(tree)
  uses = collections.Counter(id(x) for x in leaves)
  copies = []
  for x in leaves:
    copies.append(put(x))
    uses[id(x)] -= 1
    if consume and isinstance(x, jax.Array) and not uses[id(x)]:
      copies[-1].block_until_ready()
      x.delete()
  return jax.tree.unflatten(treedef, copies)


@functools.lru_cache(maxsize=None)
def _broadcaster(sharding: jax.sharding.NamedSharding):
  """A jitted x -> (device count, *x.shape) laid out over `sharding`'s devices."""
  count = sharding.mesh.size
  return jax.jit(lambda x: jnp.broadcast_to(x, (count,) + jnp.shape(x)),
                 out_shardings=sharding)


def first_copy(tree: Any) -> Any:
  """Device 0's copy of a replicated tree, left on the device (no host transfer)."""
  return jax.tree.map(lambda x: x[0], tree)


def unreplicate(tree: Any) -> Any:
  """The host copy (numpy) of a replicated tree: what checkpoints save."""
  return jax.device_get(first_copy(tree))
