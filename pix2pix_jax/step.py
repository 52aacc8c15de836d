"""Training state and the pure pix2pix train step (what `train.py`'s loop runs).

One step (as the reference's `optimize_parameters`): the generator runs once (`jax.vjp` keeps
its backward pass for later); `update_discriminator` trains D on (input, fake) with the fake
detached and on (input, real) in a separate pass, loss 0.5 x (fake + real) (plus the penalty
for wgangp); `update_generator` then trains G through the freshly updated D with GAN +
l1_weight x L1, pulling the loss's gradient back through the kept vjp. What differs between
the GAN losses is `losses.GanObjective`."""

import dataclasses
import functools
from typing import Any, Callable, Optional

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

  @property
  def objective(self) -> losses.GanObjective:
    """What differs between the `loss.gan` values (losses.GanObjective)."""
    return losses.GanObjective(self.gan_loss)

  def discriminate(self, params, batch_stats, inputs: jax.Array, images: jax.Array):
    """(logits, updated batch statistics) of D on (inputs, images), in train mode."""
    logits, updates = self.discriminator.apply(
        {"params": params, "batch_stats": batch_stats},
        losses.discriminator_input(inputs, images, self.conditional), train=True,
        mutable=["batch_stats"])
    return logits, updates.get("batch_stats", {})


# One random draw per parameter, each its own fused loop of threefry and erf_inv: LLVM spends
# 0.1-0.2 s optimising each, for code that runs once. On CPU, level 0 compiles the unet_256 +
# PatchGAN init in 3.1 s instead of 13.4 (AVX2); the values differ only in float rounding
# (<= 1 ulp: 1.2e-7 at most). XLA drops the forward pass `init` traces (nothing returns it).
_INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def _jit_init(module: "flax.linen.Module", key: jax.Array):
  """`module.init` in train=False mode, jitted (at LLVM level 0 on CPU, unless traced: a
  nested jit takes no compiler options, and compiles nothing itself)."""
  options = None
  if jax.default_backend() == "cpu" and not isinstance(key, jax.core.Tracer):
    options = _INIT_COMPILER_OPTIONS
  return jax.jit(functools.partial(module.init, train=False), compiler_options=options)


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
  g_vars = _jit_init(generator, g_key)({"params": g_key}, inputs)
  d_vars = _jit_init(discriminator, d_key)(d_key, d_inputs)

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
  """True iff every element is finite: x - x is 0 for finite x and NaN otherwise, so one
  fused subtract-sum per leaf answers exactly. (XLA:CPU's is-finite + all is 4x slower;
  x * 0 3x: it multiplies by a materialised array of zeros, written every step.)"""
  sums = [jnp.sum(x - x, dtype=jnp.float32) for x in jax.tree.leaves(tree)]
  return jnp.isfinite(jnp.sum(jnp.stack(sums)))


def _pmean(tree, axis_name: Optional[str]):
  """The mean over the device axis (on one device an all-reduce would only copy)."""
  if axis_name is None or jax.lax.axis_size(axis_name) == 1:
    return tree
  return jax.lax.pmean(tree, axis_name)


def update_discriminator(d: NetworkState, batch: dict[str, jax.Array], fakes: jax.Array,
                         rng: jax.Array, *, pix2pix: Pix2Pix, lr_scale: jax.Array,
                         axis_name: Optional[str]) -> tuple[NetworkState, dict, Any]:
  """One optimizer step of D on (input, fake) then (input, real), plus wgangp's penalty.

  `fakes` are the generator's outputs, detached here. D runs in train mode: its batch
  statistics move on both passes (the penalty's pass on the interpolates sees the statistics
  of its batch but moves none). Returns (D, metrics, gradients).
  """
  inputs, targets = batch["input"], batch["target"]
  fakes = jax.lax.stop_gradient(fakes)
  objective = pix2pix.objective

  def loss_fn(params):
    fake_logits, stats = pix2pix.discriminate(params, d.batch_stats, inputs, fakes)
    real_logits, stats = pix2pix.discriminate(params, stats, inputs, targets)
    critic = lambda x: pix2pix.discriminator.apply(
        {"params": params, "batch_stats": stats}, x, train=True)
    penalty = objective.penalty(
        critic, *(losses.discriminator_input(inputs, images, pix2pix.conditional)
                  for images in (targets, fakes)),
        jax.random.split(rng)[1], batch["index"])
    loss = objective.discriminator_loss(fake_logits, real_logits)
    return loss + penalty, (stats, objective.report(fake_logits, real_logits, penalty))
  (loss, (batch_stats, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(d.params)
  grads = _pmean(grads, axis_name)
  params, opt_state = optimizers.apply_in_place(pix2pix.discriminator_tx, grads, d.opt_state,
                                                d.params, lr_scale=lr_scale)
  d = NetworkState(params, batch_stats, opt_state)
  return d, _pmean({"d_loss": loss, **metrics}, axis_name), grads


def update_generator(g: NetworkState, d: NetworkState, batch: dict[str, jax.Array],
                     fakes: jax.Array, generator_vjp: Callable[[jax.Array], Any], *,
                     pix2pix: Pix2Pix, axis_name: Optional[str]
                     ) -> tuple[NetworkState, Any, dict, Any]:
  """One optimizer step of G on GAN + l1_weight x L1, through the given (updated) D.

  The generator's forward pass is not run again: `fakes` and `generator_vjp` come from
  `jax.vjp` of the step's one forward pass, and `g.batch_stats` already holds the statistics
  it moved. D runs in train mode, as in the reference, so its batch statistics move: returns
  (G, D's batch statistics, metrics, gradients).
  """
  objective = pix2pix.objective

  def loss_fn(fake_images):
    l1 = losses.l1_loss(fake_images, batch["target"])
    if not objective.has_discriminator:
      return pix2pix.l1_weight * l1, (d.batch_stats, {"g_l1": l1})
    logits, stats = pix2pix.discriminate(d.params, d.batch_stats, batch["input"], fake_images)
    gan = objective.generator_loss(logits)
    return gan + pix2pix.l1_weight * l1, (stats, {"g_gan": gan, "g_l1": l1})
  (loss, (d_batch_stats, metrics)), loss_grad_wrt_fakes = jax.value_and_grad(
      loss_fn, has_aux=True)(fakes)
  (grads,) = generator_vjp(loss_grad_wrt_fakes)
  grads = _pmean(grads, axis_name)
  metrics = _pmean({**metrics, "g_loss": loss}, axis_name)
  params, opt_state = optimizers.apply_in_place(pix2pix.generator_tx, grads, g.opt_state,
                                                g.params, value=metrics["g_loss"])
  g = NetworkState(params, g.batch_stats, opt_state)
  return g, d_batch_stats, metrics, grads


def train_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array, *,
               pix2pix: Pix2Pix, axis_name: Optional[str] = parallel.AXIS_NAME,
               with_grads: bool = False) -> tuple[TrainState, dict[str, jax.Array]]:
  """One D update then one G update. Pure; pmapped over `axis_name` by the loop.

  `batch` holds this device's `input`, `target` and `index` (global example positions, which
  pick the dropout masks and the penalty's alphas). `rng` is the run's key, the same on every
  device; the step number is folded in here. Metrics are means over the global batch. With
  `with_grads`, the metrics also hold both networks' gradients (before Adam), for tests.
  """
  g, d = state.generator, state.discriminator
  step_rng = jax.random.fold_in(rng, state.step)

  def generate(params):
    fakes, updates = pix2pix.generator.apply(
        {"params": params, "batch_stats": g.batch_stats}, batch["input"], train=True,
        example_ids=batch["index"], rngs={"dropout": step_rng}, mutable=["batch_stats"])
    return fakes, updates.get("batch_stats", {})
  fakes, generator_vjp, g_batch_stats = jax.vjp(generate, g.params, has_aux=True)

  metrics, grads = {}, {}
  if pix2pix.objective.has_discriminator:
    d, metrics, grads["d_grads"] = update_discriminator(
        d, batch, fakes, step_rng, pix2pix=pix2pix, axis_name=axis_name,
        lr_scale=optimizers.plateau_scale(g.opt_state))
  g, d_batch_stats, g_metrics, grads["g_grads"] = update_generator(
      g.replace(batch_stats=g_batch_stats), d, batch, fakes, generator_vjp, pix2pix=pix2pix,
      axis_name=axis_name)
  metrics.update(g_metrics)
  finite = all_finite((metrics, grads))
  if with_grads:
    metrics.update(grads)
  new_state = TrainState(
      step=state.step + 1, generator=g, discriminator=d.replace(batch_stats=d_batch_stats),
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
