"""Train-step tests: device-count independence, one generator pass, losses, schedule, config."""

import functools

import flax.linen as nn
import jax
import numpy as np
import pytest

from configs import default
from pix2pix_jax import configuration
from pix2pix_jax import inference
from pix2pix_jax import models
from pix2pix_jax import optimizers
from pix2pix_jax import parallel
from pix2pix_jax import step as step_lib
from pix2pix_jax import train
import test_optimizers as optimizers_test


def _tiny_config(**overrides):
  config = default.get_config("tiny")
  config.batch_size = 4
  config.update_from_flattened_dict(overrides)
  return config


def _batch(config, seed=0):
  rng = np.random.default_rng(seed)
  size, b = config.data.crop_size, config.batch_size
  inputs = rng.uniform(-1, 1, (b, size, size, 3)).astype(np.float32)
  # A learnable target: a fixed function of the input.
  return {"input": inputs, "target": np.flip(inputs, -1).copy() * 0.5,
          "index": np.arange(b, dtype=np.int32) + 100 * seed}


def _run_steps(config, devices, num_steps, with_grads=False):
  pix2pix = step_lib.Pix2Pix.from_config(config)
  state = step_lib.create_train_state(config, jax.random.key(0), pix2pix)
  step = step_lib.make_parallel_train_step(pix2pix, with_grads=with_grads, devices=devices)
  replicated = parallel.replicate(state, devices)
  history = []
  for i in range(num_steps):
    batch = parallel.shard(_batch(config, seed=i), len(devices))
    replicated, metrics = step(replicated, batch, jax.random.key(1))
    history.append(jax.device_get(metrics))
  return replicated, history


@pytest.mark.slow  # compiles a pmapped step on 1 and on 2 devices (~45 s cold)
def test_two_devices_match_one_device():
  assert jax.local_device_count() == 2, "tests/conftest.py should fake 2 CPU devices"
  # The paper's LR: G's gradients pass through D after its first (sign-like) Adam step,
  # which scales D's float noise by the LR.
  config = _tiny_config(**{"optim.lr": 2e-4})
  one, one_history = _run_steps(config, jax.local_devices()[:1], 1, with_grads=True)
  two, two_history = _run_steps(config, jax.local_devices(), 1, with_grads=True)
  m1 = jax.tree.map(lambda x: x[0], one_history[0])
  m2 = jax.tree.map(lambda x: x[0], two_history[0])
  # Losses and gradients before Adam (whose first, sign-like step amplifies float noise).
  for key in ("d_loss", "g_gan", "g_l1", "d_grads", "g_grads"):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), m1[key], m2[key])
  # Batch statistics over the global batch, whatever the device count.
  for net in ("generator", "discriminator"):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[0], b[0], atol=1e-5),
                 getattr(one, net).batch_stats, getattr(two, net).batch_stats)
  # Device copies stay identical.
  jax.tree.map(lambda x: np.testing.assert_array_equal(x[0], x[1]), jax.device_get(two))
  jax.tree.map(lambda x: np.testing.assert_array_equal(x[0], x[1]), two_history[0])


def test_training_reduces_l1_and_moves_both_networks():
  config = _tiny_config()
  before = step_lib.create_train_state(config, jax.random.key(0))
  state, history = _run_steps(config, jax.local_devices(), 12)
  state = parallel.unreplicate(state)
  assert int(state.step) == 12
  l1 = [h["g_l1"][0] for h in history]
  assert np.mean(l1[-3:]) < np.mean(l1[:3])
  for net in ("generator", "discriminator"):
    moved = jax.tree.map(lambda a, b: np.abs(np.asarray(a) - np.asarray(b)).max(),
                         getattr(state, net).params, getattr(before, net).params)
    assert min(jax.tree.leaves(moved)) > 0
  assert all(np.isfinite(h["d_loss"][0]) for h in history)


def test_gan_none_trains_generator_only():
  config = _tiny_config(**{"loss.gan": "none"})
  before = step_lib.create_train_state(config, jax.random.key(0))
  state, history = _run_steps(config, jax.local_devices(), 1)
  state = parallel.unreplicate(state)
  jax.tree.map(np.testing.assert_array_equal, state.discriminator.params,
               before.discriminator.params)
  assert "d_loss" not in history[0] and "g_gan" not in history[0]
  np.testing.assert_allclose(history[0]["g_loss"][0], 100 * history[0]["g_l1"][0], rtol=1e-6)


@pytest.mark.slow  # a whole step per GAN loss (~30 s cold)
@pytest.mark.parametrize("overrides", [{"loss.gan": "lsgan"},
                                       {"loss.conditional": False, "model.norm": "instance"}])
def test_loss_variants_run(overrides):
  config = _tiny_config(**overrides)
  _, history = _run_steps(config, jax.local_devices(), 1)
  assert np.isfinite(history[0]["g_loss"][0]) and np.isfinite(history[0]["d_loss"][0])


def test_unconditional_discriminator_sees_output_only():
  config = _tiny_config(**{"loss.conditional": False})
  state = step_lib.create_train_state(config, jax.random.key(0))
  assert state.discriminator.params["conv_0"]["kernel"].shape[2] == 3
  state = step_lib.create_train_state(_tiny_config(), jax.random.key(0))
  assert state.discriminator.params["conv_0"]["kernel"].shape[2] == 6


def test_generator_runs_once_per_step():
  config = _tiny_config()
  pix2pix = step_lib.Pix2Pix.from_config(config, axis_name=None)
  state = step_lib.create_train_state(config, jax.random.key(0), pix2pix)
  calls = {"generator": 0, "discriminator": 0}

  def count(next_fun, args, kwargs, context):
    if context.method_name == "__call__":
      if isinstance(context.module, models.UNetGenerator):
        calls["generator"] += 1
      elif isinstance(context.module, models.PatchDiscriminator):
        calls["discriminator"] += 1
    return next_fun(*args, **kwargs)
  with nn.intercept_methods(count):
    jax.make_jaxpr(lambda s, b: step_lib.train_step(s, b, jax.random.key(1), pix2pix=pix2pix,
                                                 axis_name=None))(state, _batch(config))
  # G once; D on fake and on real (separate passes), then on fake again for G's loss.
  assert calls == {"generator": 1, "discriminator": 3}


def test_learning_rate_schedule_is_the_reference_linear_rule():
  config = _tiny_config(num_train_steps=200, decay_steps=100)
  schedule = optimizers.learning_rate_schedule(config)
  lr = config.optim.lr
  np.testing.assert_allclose([schedule(0), schedule(98), schedule(99)], [lr, lr, lr], rtol=1e-6)
  np.testing.assert_allclose(schedule(100), lr * (1 - 1 / 101), rtol=1e-6)
  np.testing.assert_allclose(schedule(199), lr / 101, rtol=1e-6)
  # A decay longer than the run decays over the whole run.
  schedule = optimizers.learning_rate_schedule(_tiny_config(num_train_steps=20, decay_steps=100))
  np.testing.assert_allclose([schedule(0), schedule(19)], [lr * 20 / 21, lr / 21], rtol=1e-6)


@pytest.mark.parametrize("overrides,message", [
    ({"model.norm": "group"}, "model.norm='group'"),
    ({"data.crop_size": 48}, "data.crop_size=48 must be a positive multiple of 2**model.num_downs=32"),
    ({"loss.gan": "hinge"}, "loss.gan='hinge'"),
    ({"data.direction": "AB"}, "data.direction='AB'"),
    ({"inference.norm_mode": "eval"}, "inference.norm_mode='eval'"),
    ({"model.d_layers": 5}, "model.d_layers=5 is too deep"),
    ({"decay_steps": -1}, "decay_steps=-1 must be >= 0"),
    ({"data.load_size": 16}, "data.load_size=16 must be >= data.crop_size=32"),
    ({"data.synthetic.split": "halves"}, "data.synthetic.split='halves'"),
    ({"eval.protocol": "rain100"}, "eval.protocol='rain100' is not one of"),
    ({"inference.ensemble_transforms": "rot"},
     "inference.ensemble_transforms='rot' is not one of"),
])
def test_invalid_config_values_name_the_key(overrides, message):
  with pytest.raises(configuration.ConfigError, match=message.replace("*", r"\*")):
    configuration.validate(_tiny_config(**overrides))


def test_default_configs_are_valid():
  configuration.validate(default.get_config())
  configuration.validate(default.get_config("tiny"))
  configuration.validate(default.get_config("cpu"))
  with pytest.raises(ValueError, match="Unknown config variant 'huge'"):
    default.get_config("huge")


def test_auto_norm_mode_follows_the_training_batch_size():
  assert inference.resolve_norm_mode("auto", 1) == "paper"
  assert inference.resolve_norm_mode("auto", 4) == "running"
  assert inference.resolve_norm_mode("paper", 4) == "paper"
  assert inference.resolve_norm_mode("running", 1) == "running"
  with pytest.raises(ValueError, match="norm_mode='eval'"):
    inference.resolve_norm_mode("eval", 1)
  # The paper's configuration (batch 1) keeps the paper's test time; the CPU variant
  # (batch 4) uses the running statistics.
  for variant, expected in (("", "paper"), ("cpu", "running")):
    config = default.get_config(variant)
    assert inference.resolve_norm_mode(config.inference.norm_mode,
                                       config.batch_size) == expected


def test_a_whole_run_decay_is_warned_about_with_the_fix():
  warning = train.whole_run_decay_warning(_tiny_config(num_train_steps=400, decay_steps=100_000))
  assert "decay_steps=100000 >= num_train_steps=400" in warning
  assert "--config.decay_steps" in warning and "(e.g. 100)" in warning
  assert not train.whole_run_decay_warning(_tiny_config(num_train_steps=400, decay_steps=100))
  assert not train.whole_run_decay_warning(default.get_config())
  assert not train.whole_run_decay_warning(default.get_config("cpu"))
  step_policy = _tiny_config(num_train_steps=400, decay_steps=100_000)
  step_policy.optim.lr_policy = "step"
  assert not train.whole_run_decay_warning(step_policy)


def test_batch_not_divisible_by_devices_is_a_clear_error():
  with pytest.raises(configuration.ConfigError, match="batch_size=3 must be a positive multiple"):
    parallel.check_batch_size(3, device_count=2, process_count=1)
  assert parallel.check_batch_size(4, device_count=2, process_count=1) == 2


def test_all_finite_finds_every_inf_and_nan_and_nothing_else():
  """The step's finiteness check (x - x summed per leaf) on trees of extreme values."""
  big = np.full((3, 5), np.finfo(np.float32).max, np.float32)  # sums would overflow
  tiny = np.full((7,), np.finfo(np.float32).tiny / 2, np.float32)  # subnormal
  check = jax.jit(step_lib.all_finite)
  assert bool(check({"a": big, "b": -big, "c": tiny, "d": np.float32(0)}))
  for bad in (np.inf, -np.inf, np.nan):
    broken = big.copy()
    broken[2, 4] = bad
    assert not bool(check({"a": tiny, "b": broken})), bad


def test_step_updates_in_place_as_plain_adam(monkeypatch):
  """The step's Adam through optimizers.apply_in_place's loop (forced onto the tiny networks'
  kernels) leaves the state where the ordinary optax update does, to float32 rounding (XLA
  may contract a multiply-add into one instruction in one program and not in the other)."""
  config = _tiny_config()
  devices = jax.local_devices()[:1]
  apply_in_place = optimizers.apply_in_place
  states = []
  for min_chunk in (8, 2**40):  # every kernel through the loop; none
    monkeypatch.setattr(optimizers, "apply_in_place", functools.partial(
        apply_in_place, chunks=4, min_chunk=min_chunk))
    states.append(jax.device_get(_run_steps(config, devices, 1)[0]))
  jax.tree.map(optimizers_test.assert_equal_to_rounding, *states)


@pytest.mark.parametrize("device_count", [1, 2])
def test_replicate_copies_onto_each_device_and_consumes_on_request(device_count):
  devices = jax.local_devices()[:device_count]
  shared = jax.numpy.arange(6.0).reshape(2, 3)
  tree = {"a": shared, "b": shared, "c": np.int32(7)}
  kept = parallel.replicate(tree, devices)
  assert not shared.is_deleted()
  consumed = parallel.replicate(tree, devices, consume=True)
  assert shared.is_deleted()  # after its last use in the tree, not its first
  for replicated in (kept, consumed):
    assert replicated["a"].shape == (device_count, 2, 3)
    assert replicated["a"].sharding == parallel.device_sharding(devices)
    for copy in range(device_count):
      np.testing.assert_array_equal(replicated["b"][copy], np.arange(6.0).reshape(2, 3))
      assert int(replicated["c"][copy]) == 7
