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


def apply_in_place(tx: optax.GradientTransformationExtraArgs, grads, opt_state, params, *,
                   chunks: int = 64, min_chunk: int = 1024, **extra_args):
  """(new params, new optimizer state): `tx.update` then `optax.apply_updates`, in place.

  XLA:CPU fuses no multi-output loops, so Adam's new moments and the parameter update
  become separate passes: the parameter's pass recomputes the new moments from the old ones,
  and since the moments' passes overwrite the old moments (the state is donated), XLA first
  copies the old parameters and moments of the whole state (docs/performance.md). Here each
  parameter of at least `chunks` x `min_chunk` elements (a multiple of `chunks`) is updated
  by one loop over `chunks` pieces: iteration k applies `tx` to piece k of the parameter,
  its gradient and its moments and writes the results into the same arrays; the moments'
  piece k was read by iteration k - 1 from the arrays it had written, so no pass reads an
  array that another pass of the same iteration overwrites and XLA needs no copies. The
  other parameters and the scalars of the state (step counts, plateau state) take one
  ordinary `tx.update`. Every value is computed by `tx.update` itself, so the results are
  those of `tx.update` + `optax.apply_updates` for a `tx` that is elementwise given its
  scalar state (Adam and this module's learning-rate policies are; a global-norm clip is not).
  """
  param_leaves, params_def = jax.tree.flatten(params)
  grad_leaves = params_def.flatten_up_to(grads)
  state_leaves, state_def = jax.tree.flatten(opt_state)
  # For each leaf of the state, the parameter it is a moment of (-1: a scalar of the state).
  roles = jax.tree.leaves(optax.tree_utils.tree_map_params(
      tx, lambda _, index: index, opt_state,
      jax.tree.unflatten(params_def, range(len(param_leaves))),
      transform_non_params=lambda _: -1))
  large = {i for i, p in enumerate(param_leaves)
           if p.size >= chunks * min_chunk and p.size % chunks == 0}
  empty = lambda x: jnp.zeros((0,), x.dtype)

  def apply(params, grads, state):
    """tx.update + apply_updates on flat leaves (the large ones replaced by `params` etc.)."""
    params = jax.tree.unflatten(params_def, params)
    updates, new_state = tx.update(jax.tree.unflatten(params_def, grads),
                                   jax.tree.unflatten(state_def, state), params, **extra_args)
    return jax.tree.leaves(optax.apply_updates(params, updates)), jax.tree.leaves(new_state)

  def leaves_with(large_params, large_grads, large_state):
    """The flat leaves with the large parameters' (and their moments') given, others empty."""
    return ([large_params[i] if i in large else empty(p) for i, p in enumerate(param_leaves)],
            [large_grads[i] if i in large else empty(g) for i, g in enumerate(grad_leaves)],
            [large_state[j] if j in large_state else x if role < 0 else empty(x)
             for j, (role, x) in enumerate(zip(roles, state_leaves))])

  small_params, small_state = apply(
      [empty(p) if i in large else p for i, p in enumerate(param_leaves)],
      [empty(g) if i in large else g for i, g in enumerate(grad_leaves)],
      [x if role < 0 or role not in large else empty(x) for role, x in zip(roles, state_leaves)])
  if not large:
    return (jax.tree.unflatten(params_def, small_params),
            jax.tree.unflatten(state_def, small_state))
  pieces = lambda x: jnp.reshape(x, (chunks, -1))
  piece_grads = {i: pieces(grad_leaves[i]) for i in large}
  piece_params = {i: pieces(param_leaves[i]) for i in large}
  piece_state = {j: pieces(x) for j, (role, x) in enumerate(zip(roles, state_leaves))
                 if role in large}
  row = lambda arrays, k: {key: x[k] for key, x in arrays.items()}

  def body(k, carry):
    piece_params, piece_state, state_k = carry
    new_params, new_state = apply(*leaves_with(row(piece_params, k), row(piece_grads, k),
                                               state_k))
    piece_params = {i: x.at[k].set(new_params[i]) for i, x in piece_params.items()}
    piece_state = {j: x.at[k].set(new_state[j]) for j, x in piece_state.items()}
    return piece_params, piece_state, row(piece_state, jnp.minimum(k + 1, chunks - 1))
  piece_params, piece_state, _ = jax.lax.fori_loop(
      0, chunks, body, (piece_params, piece_state, row(piece_state, 0)))
  new_params = [jnp.reshape(piece_params[i], p.shape) if i in large else small_params[i]
                for i, p in enumerate(param_leaves)]
  new_state = [jnp.reshape(piece_state[j], x.shape) if j in piece_state else small_state[j]
               for j, x in enumerate(state_leaves)]
  return jax.tree.unflatten(params_def, new_params), jax.tree.unflatten(state_def, new_state)
