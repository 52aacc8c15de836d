"""The pix2pix objective: a (conditional) GAN loss on PatchGAN logits plus lambda * L1.

`vanilla` is the reference's BCE on logits, with the non-saturating generator loss (the
generator maximises log D(x, G(x))); `lsgan` is least squares to 1 / 0; `wgangp` is the
Wasserstein loss (D minimises D(fake) - D(real), G minimises -D(fake)) with the reference's
gradient penalty (`gradient_penalty`, which `GanObjective.penalty` adds); `none` trains the
generator on L1 alone (the paper's L1-only ablation) and leaves the discriminator untouched.
"""

import dataclasses
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


def penalty_alphas(rng: jax.Array, example_ids: jax.Array) -> jax.Array:
  """One interpolation weight ~ U(0, 1) per example, drawn from its GLOBAL index, so that the
  penalty does not depend on how the batch is split over devices."""
  return jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(rng, i)))(example_ids)


@dataclasses.dataclass(frozen=True)
class GanObjective:
  """What differs between the `loss.gan` values, for the train step.

  Whether there is a discriminator (not for `none`), its loss and the generator's, whether a
  gradient penalty is added (`wgangp`), and how D's outputs are reported: `d_real` / `d_fake`
  are mean probabilities (sigmoid of the logits) except for `wgangp`, whose critic values are
  reported as they are, with `d_penalty`.
  """
  kind: str

  def __post_init__(self):
    if self.kind not in GAN_LOSSES:
      raise ValueError(f"loss.gan={self.kind!r} is not one of {GAN_LOSSES}.")

  @property
  def has_discriminator(self) -> bool:
    return self.kind != "none"

  @property
  def has_penalty(self) -> bool:
    return self.kind == "wgangp"

  def discriminator_loss(self, fake_logits: jax.Array, real_logits: jax.Array) -> jax.Array:
    return discriminator_loss(fake_logits, real_logits, self.kind)

  def generator_loss(self, fake_logits: jax.Array) -> jax.Array:
    return gan_loss(fake_logits, True, self.kind)

  def penalty(self, critic: Callable[[jax.Array], jax.Array], real: jax.Array,
              fake: jax.Array, rng: jax.Array, example_ids: jax.Array) -> jax.Array:
    """`gradient_penalty` with `penalty_alphas(rng, example_ids)` for `wgangp`, else 0."""
    if not self.has_penalty:
      return jnp.zeros([])
    return gradient_penalty(critic, real, fake, penalty_alphas(rng, example_ids))

  def report(self, fake_logits: jax.Array, real_logits: jax.Array,
             penalty: jax.Array) -> dict[str, jax.Array]:
    """The discriminator's metrics besides its loss."""
    squash = (lambda x: x) if self.kind == "wgangp" else jax.nn.sigmoid
    metrics = {"d_real": jnp.mean(squash(real_logits)), "d_fake": jnp.mean(squash(fake_logits))}
    if self.has_penalty:
      metrics["d_penalty"] = penalty
    return metrics


def l1_loss(output: jax.Array, target: jax.Array) -> jax.Array:
  """Mean absolute error over all pixels and channels."""
  return jnp.mean(jnp.abs(output - target))


def discriminator_input(conditioning: jax.Array, image: jax.Array, conditional: bool):
  """What D sees: concat(input, image) for the cGAN, the image alone for the plain GAN."""
  return jnp.concatenate([conditioning, image], axis=-1) if conditional else image
