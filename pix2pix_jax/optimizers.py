"""Adam and the reference's learning-rate policies (optim.lr_policy), expressed in steps.

`create_optimizer(config, network)` is Adam(optim.lr, (optim.beta1, optim.beta2)) on the
policy's schedule. `linear`, `step` and `cosine` are schedules of the step; `plateau` keeps
PyTorch's ReduceLROnPlateau state in the generator's optimizer state (fed the generator loss)
and scales the discriminator's updates by the same factor, as the reference steps both
networks' schedulers with one metric.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """The LR of step t (0-based) under optim.lr_policy, the reference's policies in steps.

  linear (the default): constant, then linear decay over decay_steps,
    lr(t) = lr * (1 - max(0, t + 1 - (num_train_steps - decay_steps)) / (decay_steps + 1)),
    the reference's rule with its epochs read as steps; a decay_steps beyond
    num_train_steps decays over the whole run.
  step: lr * 0.1 ** (t // optim.lr_decay_steps) (StepLR, gamma 0.1).
  cosine: lr * (1 + cos(pi * t / num_train_steps)) / 2 (CosineAnnealingLR, eta_min 0).
  plateau: lr; `reduce_on_plateau` scales it from the optimizer state.
  """
  base_lr = config.optim.lr
  policy = config.optim.get("lr_policy", "linear")
  if policy == "step":
    decay_every = config.optim.lr_decay_steps
    return lambda count: base_lr * jnp.power(0.1, count // decay_every)
  if policy == "cosine":
    total = config.num_train_steps
    return lambda count: base_lr * 0.5 * (1 + jnp.cos(jnp.pi * jnp.minimum(count, total) / total))
  if policy == "plateau":
    return lambda count: base_lr * jnp.ones_like(count, jnp.float32)
  decay_steps = min(config.decay_steps, config.num_train_steps)
  constant_steps = config.num_train_steps - decay_steps

  def schedule(count):
    decayed = jnp.maximum(0, count + 1 - constant_steps) / (decay_steps + 1.0)
    return base_lr * (1.0 - decayed)
  return schedule


# The reference's ReduceLROnPlateau(mode='min', factor=0.2, threshold=0.01, patience=5).
PLATEAU_FACTOR = 0.2
PLATEAU_THRESHOLD = 0.01  # relative: a period is better if its mean < best * (1 - 0.01).
PLATEAU_PATIENCE = 5


class PlateauState(NamedTuple):
  """`reduce_on_plateau`'s state: `scale` multiplies the LR."""
  scale: jax.Array
  best: jax.Array  # the best period mean so far (inf before the first period)
  bad_periods: jax.Array  # periods since the last improvement
  total: jax.Array  # sum of the values of the current period
  count: jax.Array  # updates in the current period


def reduce_on_plateau(period_steps: int, base_lr: float
                      ) -> optax.GradientTransformationExtraArgs:
  """PyTorch's ReduceLROnPlateau on the mean `value` of each period of `period_steps` updates.

  `update(..., value=loss)` scales the updates by the current scale, then counts `value`;
  at the end of a period, if its mean is not below best * (1 - PLATEAU_THRESHOLD) for more
  than PLATEAU_PATIENCE periods in a row, the scale is multiplied by PLATEAU_FACTOR (unless
  the LR would change by less than PyTorch's eps 1e-8). A period's LR is fixed during it, as
  the reference steps its scheduler between epochs.
  """
  def init(params):
    del params
    return PlateauState(scale=jnp.ones([], jnp.float32), best=jnp.full([], jnp.inf),
                        bad_periods=jnp.zeros([], jnp.int32), total=jnp.zeros([]),
                        count=jnp.zeros([], jnp.int32))

  def update(updates, state, params=None, *, value, **extra_args):
    del params, extra_args
    updates = jax.tree.map(lambda u: (u * state.scale).astype(u.dtype), updates)
    total, count = state.total + value, state.count + 1
    mean = total / count
    better = mean < state.best * (1 - PLATEAU_THRESHOLD)
    bad_periods = jnp.where(better, 0, state.bad_periods + 1)
    reduce = bad_periods > PLATEAU_PATIENCE
    lr = base_lr * state.scale
    scale = jnp.where(reduce & (lr * (1 - PLATEAU_FACTOR) > 1e-8),
                      state.scale * PLATEAU_FACTOR, state.scale)
    period_end = PlateauState(scale, jnp.where(better, mean, state.best),
                              jnp.where(reduce, 0, bad_periods), jnp.zeros([]),
                              jnp.zeros([], jnp.int32))
    within = state._replace(total=total, count=count)
    new_state = jax.tree.map(lambda a, b: jnp.where(count >= period_steps, a, b),
                             period_end, within)
    return updates, PlateauState(*new_state)
  return optax.GradientTransformationExtraArgs(init, update)


def scale_by_shared_plateau() -> optax.GradientTransformationExtraArgs:
  """Scales updates by the `lr_scale` given to update: the discriminator follows the
  generator's plateau scale, as the reference steps both schedulers with one metric."""
  def update(updates, state, params=None, *, lr_scale, **extra_args):
    del params, extra_args
    return jax.tree.map(lambda u: (u * lr_scale).astype(u.dtype), updates), state
  return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)


def plateau_scale(opt_state) -> jax.Array:
  """The plateau LR scale held in an optimizer state (1 without the plateau policy)."""
  found = [s.scale for s in jax.tree.leaves(
      opt_state, is_leaf=lambda x: isinstance(x, PlateauState)) if isinstance(s, PlateauState)]
  return found[0] if found else jnp.ones([], jnp.float32)


def learning_rate(config: ml_collections.ConfigDict, generator_opt_state, step: int) -> float:
  """The LR of (0-based) step `step`, the plateau scale of `generator_opt_state` included."""
  return float(learning_rate_schedule(config)(step)) * float(plateau_scale(generator_opt_state))


def create_optimizer(config: ml_collections.ConfigDict, network: str = "generator"
                     ) -> optax.GradientTransformationExtraArgs:
  """Adam(optim.lr, betas (beta1, beta2)) on optim.lr_policy, as the reference.

  Its update takes `value` (the global generator loss) and `lr_scale` (the generator's
  plateau scale); only the plateau policy reads them: the generator's optimizer then holds
  the plateau state and the discriminator's follows its scale.
  """
  adam = optax.adam(learning_rate_schedule(config), b1=config.optim.beta1,
                    b2=config.optim.beta2, eps=1e-8)
  if config.optim.get("lr_policy", "linear") != "plateau":
    return optax.with_extra_args_support(adam)
  if network == "generator":
    return optax.chain(adam, reduce_on_plateau(config.optim.plateau_steps, config.optim.lr))
  return optax.chain(adam, scale_by_shared_plateau())
