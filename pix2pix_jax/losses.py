"""The pix2pix objective: a (conditional) GAN loss on PatchGAN logits plus lambda * L1.

`vanilla` is the reference's BCE on logits, with the non-saturating generator loss (the
generator maximises log D(x, G(x))); `lsgan` is least squares to 1 / 0; `wgangp` is the
Wasserstein loss (D minimises D(fake) - D(real), G minimises -D(fake)) with the reference's
gradient penalty (`gradient_penalty`, added by the train step); `none` trains the generator
on L1 alone (the paper's L1-only ablation) and leaves the discriminator untouched.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import optax

GAN_LOSSES = ("vanilla", "lsgan", "wgangp", "none")
# The reference's cal_gradient_penalty defaults: type 'mixed', constant 1.0, lambda_gp 10.
GP_CONSTANT = 1.0
GP_WEIGHT = 10.0


def gan_loss(logits: jax.Array, target_is_real: bool, kind: str) -> jax.Array:
  """The mean GAN loss of `logits` against an all-real or all-fake label."""
  if kind == "wgangp":  # the reference's GANLoss: -mean for real, mean for fake.
    return -jnp.mean(logits) if target_is_real else jnp.mean(logits)
  labels = jnp.full_like(logits, 1.0 if target_is_real else 0.0)
  if kind == "vanilla":
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))
  if kind == "lsgan":
    return jnp.mean(jnp.square(logits - labels))
  raise ValueError(f"loss.gan={kind!r} is not one of {GAN_LOSSES}.")


def discriminator_loss(fake_logits, real_logits, kind: str) -> jax.Array:
  """0.5 x (loss on fakes labelled fake + loss on reals labelled real), as the reference.

  For `wgangp` the critic's loss D(fake) - D(real) (Gulrajani et al.), not halved: the
  penalty weight 10 is meant against it.
  """
  total = gan_loss(fake_logits, False, kind) + gan_loss(real_logits, True, kind)
  return total if kind == "wgangp" else 0.5 * total


def gradient_penalty(critic: Callable[[jax.Array], jax.Array], real: jax.Array,
                     fake: jax.Array, alpha: jax.Array, *, constant: float = GP_CONSTANT,
                     weight: float = GP_WEIGHT) -> jax.Array:
  """The reference's cal_gradient_penalty(type='mixed'): on x = alpha*real + (1-alpha)*fake
  (one alpha per example), weight * mean over examples of (||d sum(critic(x)) / dx|| -
  constant)**2, the norm over all of an example's values (+1e-16, as the reference).

  `critic` must be a pure function of its input (no statistics updates).
  """
  alpha = alpha.reshape((-1,) + (1,) * (real.ndim - 1)).astype(real.dtype)
  interpolates = alpha * real + (1 - alpha) * fake
  grads = jax.grad(lambda x: jnp.sum(critic(x)))(interpolates)
  norms = jnp.sqrt(jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1) + 1e-16), axis=1))
  return weight * jnp.mean(jnp.square(norms - constant))


def l1_loss(output: jax.Array, target: jax.Array) -> jax.Array:
  """Mean absolute error over all pixels and channels."""
  return jnp.mean(jnp.abs(output - target))


def discriminator_input(conditioning: jax.Array, image: jax.Array, conditional: bool):
  """What D sees: concat(input, image) for the cGAN, the image alone for the plain GAN."""
  return jnp.concatenate([conditioning, image], axis=-1) if conditional else image
