"""The pix2pix objective: a (conditional) GAN loss on PatchGAN logits plus lambda * L1.

`vanilla` is the reference's BCE on logits, with the non-saturating generator loss (the
generator maximises log D(x, G(x))); `lsgan` is least squares to 1 / 0; `none` trains the
generator on L1 alone (the paper's L1-only ablation) and leaves the discriminator untouched.
"""

import jax
import jax.numpy as jnp
import optax

GAN_LOSSES = ("vanilla", "lsgan", "none")


def gan_loss(logits: jax.Array, target_is_real: bool, kind: str) -> jax.Array:
  """The mean GAN loss of `logits` against an all-real or all-fake label."""
  labels = jnp.full_like(logits, 1.0 if target_is_real else 0.0)
  if kind == "vanilla":
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))
  if kind == "lsgan":
    return jnp.mean(jnp.square(logits - labels))
  raise ValueError(f"loss.gan={kind!r} is not one of {GAN_LOSSES}.")


def discriminator_loss(fake_logits, real_logits, kind: str) -> jax.Array:
  """0.5 x (loss on fakes labelled fake + loss on reals labelled real), as the reference."""
  return 0.5 * (gan_loss(fake_logits, False, kind) + gan_loss(real_logits, True, kind))


def l1_loss(output: jax.Array, target: jax.Array) -> jax.Array:
  """Mean absolute error over all pixels and channels."""
  return jnp.mean(jnp.abs(output - target))


def discriminator_input(conditioning: jax.Array, image: jax.Array, conditional: bool):
  """What D sees: concat(input, image) for the cGAN, the image alone for the plain GAN."""
  return jnp.concatenate([conditioning, image], axis=-1) if conditional else image
