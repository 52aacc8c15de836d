"""losses.GanObjective: what differs between the loss.gan values, in one place."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pix2pix_jax import losses


@pytest.mark.parametrize("kind,has_discriminator,has_penalty", [
    ("vanilla", True, False), ("lsgan", True, False), ("wgangp", True, True),
    ("none", False, False)])
def test_objective_names_what_each_loss_needs(kind, has_discriminator, has_penalty):
  objective = losses.GanObjective(kind)
  assert objective.has_discriminator == has_discriminator
  assert objective.has_penalty == has_penalty


def test_unknown_gan_loss_is_refused():
  with pytest.raises(ValueError, match="loss.gan='hinge' is not one of"):
    losses.GanObjective("hinge")


def test_report_squashes_logits_except_wgangp_critic_values():
  fake, real = jnp.array([0.0, 2.0]), jnp.array([-1.0, 3.0])
  vanilla = losses.GanObjective("vanilla").report(fake, real, jnp.zeros([]))
  assert set(vanilla) == {"d_real", "d_fake"}
  np.testing.assert_allclose(vanilla["d_fake"], np.mean(jax.nn.sigmoid(fake)), rtol=1e-6)
  wgangp = losses.GanObjective("wgangp").report(fake, real, jnp.array(0.5))
  np.testing.assert_allclose([wgangp["d_fake"], wgangp["d_real"], wgangp["d_penalty"]],
                             [1.0, 1.0, 0.5])


def test_penalty_alphas_follow_global_example_ids():
  """An example's alpha depends on its id only: split over devices, each gets the same."""
  rng = jax.random.key(0)
  whole = losses.penalty_alphas(rng, jnp.arange(4))
  halves = [losses.penalty_alphas(rng, jnp.arange(2) + 2 * i) for i in range(2)]
  np.testing.assert_array_equal(whole, jnp.concatenate(halves))
  assert len(set(np.asarray(whole).tolist())) == 4 and np.all((whole >= 0) & (whole < 1))


def test_penalty_is_zero_without_wgangp():
  critic = lambda x: jnp.sum(x ** 2)
  real, fake = jnp.ones((2, 4, 4, 3)), jnp.zeros((2, 4, 4, 3))
  ids = jnp.arange(2)
  assert float(losses.GanObjective("vanilla").penalty(critic, real, fake,
                                                      jax.random.key(0), ids)) == 0.0
  assert float(losses.GanObjective("wgangp").penalty(critic, real, fake,
                                                     jax.random.key(0), ids)) > 0.0
