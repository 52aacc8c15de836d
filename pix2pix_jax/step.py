"""Training state and the pure pix2pix train step (what `train.py`'s loop runs).

One step (as the reference's `optimize_parameters`): the generator runs once; the discriminator
is updated on (input, fake) with the fake detached and on (input, real) in a separate pass,
with loss 0.5 x (fake + real); then the generator is updated through the freshly updated
discriminator with GAN + l1_weight x L1. The generator's forward pass is reused for its
backward pass through `jax.vjp`, so it runs once per step.
"""

import dataclasses
import functools
from typing import Any, Optional

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from pix2pix_jax import losses
from pix2pix_jax import models
from pix2pix_jax import optimizers
from pix2pix_jax import parallel


@flax.struct.dataclass
class NetworkState:
  """One network's variables and optimizer state."""
  params: Any
  batch_stats: Any
  opt_state: Any

  @property
  def variables(self):
    return {"params": self.params, "batch_stats": self.batch_stats}


@flax.struct.dataclass
class TrainState:
  """Everything a step changes. Pure data: the modules and optimizers live in `Pix2Pix`.

  `nonfinite_step` is the first step whose losses or gradients were not finite (-1: none),
  kept on the device so that no step waits for the host; the loop checks it when it logs
  or saves.
  """
  step: jax.Array
  generator: NetworkState
  discriminator: NetworkState
  nonfinite_step: jax.Array


@dataclasses.dataclass(frozen=True)
class Pix2Pix:
  """The static half of training: modules, optimizers and loss settings (from the config)."""
  generator: Any  # models.UNetGenerator or models.ResnetGenerator
  discriminator: models.PatchDiscriminator
  generator_tx: optax.GradientTransformation
  discriminator_tx: optax.GradientTransformation
  gan_loss: str
  l1_weight: float
  conditional: bool

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict,
                  axis_name: Optional[str] = parallel.AXIS_NAME) -> "Pix2Pix":
    return cls(
        generator=models.create_generator(config.model, axis_name=axis_name),
        discriminator=models.create_discriminator(config.model, axis_name=axis_name),
        generator_tx=optimizers.create_optimizer(config, "generator"),
        discriminator_tx=optimizers.create_optimizer(config, "discriminator"),
        gan_loss=config.loss.gan, l1_weight=float(config.loss.l1_weight),
        conditional=bool(config.loss.conditional))


def create_train_state(config: ml_collections.ConfigDict, rng: jax.Array,
                       pix2pix: Optional[Pix2Pix] = None) -> TrainState:
  """Freshly initialised networks and optimizer states (on the host, unreplicated)."""
  pix2pix = pix2pix or Pix2Pix.from_config(config, axis_name=None)
  size = config.data.crop_size
  inputs = jnp.zeros((1, size, size, config.model.input_channels), jnp.float32)
  d_channels = config.model.output_channels + (
      config.model.input_channels if config.loss.conditional else 0)
  d_inputs = jnp.zeros((1, size, size, d_channels), jnp.float32)
  g_key, d_key = jax.random.split(rng)
  # Initialise the modules without a device axis; the variables are the same.
  generator = pix2pix.generator.clone(axis_name=None)
  discriminator = pix2pix.discriminator.clone(axis_name=None)
  g_vars = jax.jit(functools.partial(generator.init, train=False))({"params": g_key}, inputs)
  d_vars = jax.jit(functools.partial(discriminator.init, train=False))(d_key, d_inputs)

  def network(variables, tx):
    return NetworkState(params=variables["params"],
                        batch_stats=variables.get("batch_stats", {}),
                        opt_state=tx.init(variables["params"]))
  return TrainState(step=jnp.zeros((), jnp.int32),
                    generator=network(g_vars, pix2pix.generator_tx),
                    discriminator=network(d_vars, pix2pix.discriminator_tx),
                    nonfinite_step=jnp.full((), -1, jnp.int32))


def state_from_weights(state: TrainState, weights: dict[str, Any],
                       pix2pix: Pix2Pix) -> TrainState:
  """`state` at step 0 with the given networks' weights and fresh optimizer states.

  `weights` maps 'generator' (and optionally 'discriminator') to {'params', 'batch_stats'};
  a network not given keeps its fresh initialisation.
  """
  def network(current: NetworkState, variables, tx):
    if variables is None:
      return current
    return NetworkState(params=variables["params"],
                        batch_stats=variables.get("batch_stats", {}),
                        opt_state=tx.init(variables["params"]))
  return state.replace(
      step=jnp.zeros((), jnp.int32), nonfinite_step=jnp.full((), -1, jnp.int32),
      generator=network(state.generator, weights.get("generator"), pix2pix.generator_tx),
      discriminator=network(state.discriminator, weights.get("discriminator"),
                            pix2pix.discriminator_tx))


def all_finite(tree) -> jax.Array:
  """True iff every element is finite: x * 0 is 0 for finite x and NaN otherwise, so one
  fused multiply-sum per leaf answers exactly (XLA:CPU's is-finite + all is ~3x slower)."""
  sums = [jnp.sum(x * 0, dtype=jnp.float32) for x in jax.tree.leaves(tree)]
  return jnp.isfinite(jnp.sum(jnp.stack(sums)))


def train_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array, *,
               pix2pix: Pix2Pix, axis_name: Optional[str] = parallel.AXIS_NAME,
               with_grads: bool = False) -> tuple[TrainState, dict[str, jax.Array]]:
  """One D update then one G update. Pure; pmapped over `axis_name` by the loop.

  `batch` holds this device's `input`, `target` and `index` (global example positions, which
  pick the dropout masks). `rng` is the run's key, the same on every device; the step number is
  folded in here. Metrics are means over the global batch. With `with_grads`, the metrics also
  hold both networks' gradients (before Adam), for tests.
  """
  def pmean(tree):  # on one device an all-reduce would only copy every gradient.
    if axis_name is None or jax.lax.axis_size(axis_name) == 1:
      return tree
    return jax.lax.pmean(tree, axis_name)

  g, d = state.generator, state.discriminator
  inputs, targets, example_ids = batch["input"], batch["target"], batch["index"]
  dropout_rng = jax.random.fold_in(rng, state.step)

  def generate(g_params):
    fake, updates = pix2pix.generator.apply(
        {"params": g_params, "batch_stats": g.batch_stats}, inputs, train=True,
        example_ids=example_ids, rngs={"dropout": dropout_rng}, mutable=["batch_stats"])
    return fake, updates.get("batch_stats", {})
  fakes, generator_vjp, g_batch_stats = jax.vjp(generate, g.params, has_aux=True)

  def discriminate(d_params, d_batch_stats, images):
    logits, updates = pix2pix.discriminator.apply(
        {"params": d_params, "batch_stats": d_batch_stats},
        losses.discriminator_input(inputs, images, pix2pix.conditional), train=True,
        mutable=["batch_stats"])
    return logits, updates.get("batch_stats", {})

  def penalty(d_params, d_batch_stats):
    """wgangp's gradient penalty. D sees the interpolates in train mode (their batch
    statistics) but updates no running statistics: a pure function of its input."""
    alpha_rng = jax.random.split(dropout_rng)[1]
    alpha = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(alpha_rng, i)))(
        example_ids)  # one per example, from its global index: device-count independent.
    critic = lambda x: pix2pix.discriminator.apply(
        {"params": d_params, "batch_stats": d_batch_stats}, x, train=True)
    real, fake = (losses.discriminator_input(inputs, images, pix2pix.conditional)
                  for images in (targets, jax.lax.stop_gradient(fakes)))
    return losses.gradient_penalty(critic, real, fake, alpha)

  metrics, grads = {}, {}
  d_params, d_batch_stats, d_opt_state = d.params, d.batch_stats, d.opt_state
  if pix2pix.gan_loss != "none":
    def d_loss_fn(params):
      fake_logits, stats = discriminate(params, d_batch_stats, jax.lax.stop_gradient(fakes))
      real_logits, stats = discriminate(params, stats, targets)
      loss = losses.discriminator_loss(fake_logits, real_logits, pix2pix.gan_loss)
      gp = penalty(params, stats) if pix2pix.gan_loss == "wgangp" else jnp.zeros([])
      return loss + gp, (stats, fake_logits, real_logits, gp)
    (d_loss, (d_batch_stats, fake_logits, real_logits, gp)), d_grads = jax.value_and_grad(
        d_loss_fn, has_aux=True)(d_params)
    d_grads = pmean(d_grads)
    updates, d_opt_state = pix2pix.discriminator_tx.update(
        d_grads, d_opt_state, d_params, lr_scale=optimizers.plateau_scale(g.opt_state))
    d_params = optax.apply_updates(d_params, updates)
    # wgangp's D outputs are critic values, not logits: reported as they are.
    squash = (lambda x: x) if pix2pix.gan_loss == "wgangp" else jax.nn.sigmoid
    metrics.update(d_loss=d_loss, d_real=jnp.mean(squash(real_logits)),
                   d_fake=jnp.mean(squash(fake_logits)))
    if pix2pix.gan_loss == "wgangp":
      metrics["d_penalty"] = gp
    grads["d_grads"] = d_grads

  def g_loss_fn(fake_images):
    l1 = losses.l1_loss(fake_images, targets)
    if pix2pix.gan_loss == "none":
      return pix2pix.l1_weight * l1, (d_batch_stats, {"g_l1": l1})
    # Through the updated D, in train mode (its statistics move, as in the reference).
    logits, stats = discriminate(d_params, d_batch_stats, fake_images)
    gan = losses.gan_loss(logits, True, pix2pix.gan_loss)
    return gan + pix2pix.l1_weight * l1, (stats, {"g_gan": gan, "g_l1": l1})
  (g_loss, (d_batch_stats, g_metrics)), loss_grad_wrt_fakes = jax.value_and_grad(
      g_loss_fn, has_aux=True)(fakes)
  (g_grads,) = generator_vjp(loss_grad_wrt_fakes)
  g_grads = pmean(g_grads)
  metrics.update(g_metrics, g_loss=g_loss)
  metrics = pmean(metrics)
  updates, g_opt_state = pix2pix.generator_tx.update(g_grads, g.opt_state, g.params,
                                                     value=metrics["g_loss"])
  g_params = optax.apply_updates(g.params, updates)
  grads["g_grads"] = g_grads
  finite = all_finite((metrics, grads))
  if with_grads:
    metrics.update(grads)

  new_state = TrainState(
      step=state.step + 1,
      generator=NetworkState(g_params, g_batch_stats, g_opt_state),
      discriminator=NetworkState(d_params, d_batch_stats, d_opt_state),
      nonfinite_step=jnp.where((state.nonfinite_step < 0) & ~finite, state.step + 1,
                               state.nonfinite_step))
  return new_state, metrics


def make_parallel_train_step(pix2pix: Pix2Pix, *, with_grads: bool = False, devices=None):
  """`train_step` pmapped over the local devices once: (state, sharded batch, rng) -> ..."""
  return jax.pmap(
      functools.partial(train_step, pix2pix=pix2pix, axis_name=parallel.AXIS_NAME,
                        with_grads=with_grads),
      axis_name=parallel.AXIS_NAME, in_axes=(0, 0, None), donate_argnums=(0,),
      devices=devices)


def abstract_train_state(config: ml_collections.ConfigDict) -> TrainState:
  """The shapes and dtypes of `config`'s training state (nothing computed): the template
  checkpoints restore into and weights are checked against."""
  return jax.eval_shape(lambda: create_train_state(
      config, jax.random.key(0), Pix2Pix.from_config(config, axis_name=None)))
