"""optimizers.apply_in_place: tx.update + optax.apply_updates (to float32 rounding), without
copies."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from pix2pix_jax import optimizers


def assert_equal_to_rounding(got, want):
  """Equal but for float32 rounding at the array's scale: a few units in the last place of
  its largest element (an element near 0 may differ in many of its own: p + u rounded)."""
  got, want = np.asarray(got), np.asarray(want)
  if not np.issubdtype(want.dtype, np.floating):
    np.testing.assert_array_equal(got, want)
    return
  scale = np.finfo(np.float32).eps * max(float(np.max(np.abs(want), initial=0)), 1e-30)
  np.testing.assert_allclose(got, want, rtol=0, atol=4 * scale)


def _config(policy):
  config = default.get_config()
  config.num_train_steps, config.decay_steps = 10, 5
  config.optim.lr_policy = policy
  config.optim.plateau_steps = 2
  return config


def _tree(rng, scale=1.0):
  """Parameters of the shapes the loop takes (a multiple of the chunks) and those it does not."""
  shapes = {"kernel": (4, 4, 8, 16), "odd": (3, 5, 7), "bias": (16,), "wide": (64, 32)}
  keys = jax.random.split(rng, len(shapes))
  return {name: scale * jax.random.normal(key, shape)
          for (name, shape), key in zip(sorted(shapes.items()), keys)}


@pytest.mark.parametrize("policy,network,extra", [
    ("linear", "generator", {"value": 1.0}),
    ("plateau", "generator", {"value": 1.0}),
    ("plateau", "discriminator", {"lr_scale": 0.2})])
def test_apply_in_place_equals_update_then_apply_updates(policy, network, extra):
  tx = optimizers.create_optimizer(_config(policy), network)
  params = _tree(jax.random.key(0))
  reference = (params, tx.init(params))
  in_place = reference

  @jax.jit
  def plain(params, opt_state, grads, extra):
    updates, opt_state = tx.update(grads, opt_state, params, **extra)
    return optimizers.optax.apply_updates(params, updates), opt_state

  fused = jax.jit(functools.partial(optimizers.apply_in_place, tx, chunks=8, min_chunk=16))
  for step in range(4):  # past a plateau period and the decay's start
    grads = _tree(jax.random.key(step + 1), scale=10.0 ** (step - 2))
    step_extra = {k: jnp.float32(v * (step + 1)) for k, v in extra.items()}
    reference = plain(*reference, grads, step_extra)
    in_place = fused(grads, in_place[1], in_place[0], **step_extra)
    for want, got in zip(jax.tree.leaves(reference), jax.tree.leaves(in_place)):
      assert_equal_to_rounding(got, want)
  assert jax.tree.structure(in_place) == jax.tree.structure(reference)


def test_apply_in_place_copies_no_parameter_or_moment():
  """Donated, the large leaves' parameters and moments are updated where they lie (plain
  tx.update + apply_updates copies them on XLA:CPU: the reason for apply_in_place)."""
  tx = optimizers.create_optimizer(_config("linear"))
  params = {"kernel": jnp.ones((64, 4096)), "bias": jnp.ones((4096,))}
  opt_state = tx.init(params)

  def step(params, opt_state, grads):
    return optimizers.apply_in_place(tx, grads, opt_state, params, value=jnp.float32(0))
  text = jax.jit(step, donate_argnums=(0, 1)).lower(
      params, opt_state, params).compile().as_text()
  large_copies = re.findall(r"= f32\[64,4096\]\S* copy\(", text)
  assert not large_copies
