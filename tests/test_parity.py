"""The PyTorch reference's pix2pix options: ResNet generators, init types, LR policies,
WGAN-GP, --init_from. (scale_width_and_crop: test_input_pipeline; the ResNet against torch:
test_torch_import; 3x3 and output_padding convolutions: test_conv_ops.)

Expected values come from the reference's definitions (networks.py, torch's init and
lr_scheduler), not from running our code.
"""

import math
import os

from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from pix2pix_jax import checkpoints
from pix2pix_jax import configuration
from pix2pix_jax import layers
from pix2pix_jax import losses
from pix2pix_jax import models
from pix2pix_jax import optimizers
from pix2pix_jax import parallel
from pix2pix_jax import step as step_lib
from pix2pix_jax import train


def _tiny(**overrides):
  config = default.get_config("tiny")
  config.batch_size = 4
  config.update_from_flattened_dict(overrides)
  return config


def _count(tree) -> int:
  return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))


# ------------------------------------------------------------------ ResNet generators


def reference_resnet_parameter_count(n_blocks, ngf, norm, input_nc=3, output_nc=3):
  """The reference's ResnetGenerator, layer by layer: c7s1-ngf, two stride-2 3x3 downs,
  n_blocks x (two 3x3 convs at 4 ngf), two 3x3 transposed ups, c7s1-output_nc (+ bias).
  Inner convs have a bias only with instance norm; batch norm has 2 parameters a channel."""
  bias = norm == "instance"
  per_norm = 2 if norm == "batch" else 0

  def layer(c_in, c_out, k):  # conv + its norm
    return k * k * c_in * c_out + (c_out if bias else 0) + per_norm * c_out
  total = layer(input_nc, ngf, 7) + layer(ngf, 2 * ngf, 3) + layer(2 * ngf, 4 * ngf, 3)
  total += n_blocks * 2 * layer(4 * ngf, 4 * ngf, 3)
  total += layer(4 * ngf, 2 * ngf, 3) + layer(2 * ngf, ngf, 3)
  return total + 7 * 7 * ngf * output_nc + output_nc


def _generator_shapes(**model_overrides):
  config = _tiny(**{f"model.{k}": v for k, v in model_overrides.items()})
  generator = models.create_generator(config.model)
  return generator, jax.eval_shape(lambda: generator.init(
      {"params": jax.random.key(0), "dropout": jax.random.key(1)},
      jnp.zeros((2, 32, 32, 3)), train=False))


@pytest.mark.parametrize("generator,norm", [("resnet_6blocks", "batch"),
                                            ("resnet_9blocks", "batch"),
                                            ("resnet_9blocks", "instance")])
def test_resnet_parameter_counts_equal_the_reference(generator, norm):
  n_blocks = int(generator.split("_")[1][0])
  _, variables = _generator_shapes(generator=generator, ngf=64, norm=norm)
  assert _count(variables["params"]) == reference_resnet_parameter_count(n_blocks, 64, norm)
  if (generator, norm) == ("resnet_9blocks", "instance"):
    assert _count(variables["params"]) == 11_378_179  # the count CycleGAN's logs print


def test_resnet_layout_biases_and_dropout():
  generator, variables = _generator_shapes(generator="resnet_6blocks", ngf=4)
  assert isinstance(generator, models.ResnetGenerator) and generator.n_blocks == 6
  out = jax.eval_shape(lambda v: generator.apply(v, jnp.zeros((2, 32, 32, 3)), train=False),
                       variables)
  assert out.shape == (2, 32, 32, 3)
  params = variables["params"]
  assert params["conv_in"]["kernel"].shape == (7, 7, 3, 4)
  assert params["block_5"]["conv_1"]["kernel"].shape == (3, 3, 16, 16)
  assert params["up_1"]["kernel"].shape == (3, 3, 8, 4)
  # With batch norm only the last conv has a bias, as the reference's use_bias.
  flat = {"/".join(path): leaf for path, leaf in traverse_util.flatten_dict(params).items()}
  convs = [key.removesuffix("/kernel") for key in flat if key.endswith("kernel")]
  assert len(convs) == 1 + 2 + 6 * 2 + 2 + 1
  assert [conv for conv in convs if f"{conv}/bias" in flat] == ["conv_out"]

  def dropouts(dropout):
    gen = _generator_shapes(generator="resnet_9blocks", ngf=2, dropout=dropout)[0]
    calls = []

    def record(next_fun, args, kwargs, context):
      if isinstance(context.module, layers.Dropout):
        calls.append(context.module.path)
      return next_fun(*args, **kwargs)
    with nn.intercept_methods(record):
      jax.eval_shape(lambda: gen.init({"params": jax.random.key(0), "dropout": jax.random.key(1)},
                                      jnp.zeros((1, 16, 16, 3)), train=True))
    return len(calls)
  assert dropouts(True) == 9 and dropouts(False) == 0  # one per block, as use_dropout


def test_resnet_crop_size_must_be_a_multiple_of_4():
  configuration.validate(_tiny(**{"model.generator": "resnet_6blocks", "data.crop_size": 36,
                                  "data.load_size": 40, "predict.tile_size": 100,
                                  "predict.overlap": 16}))
  with pytest.raises(configuration.ConfigError,
                     match="data.crop_size=34 must be a positive multiple of the "
                           "resnet_6blocks generator's two stride-2 levels: 4"):
    configuration.validate(_tiny(**{"model.generator": "resnet_6blocks", "data.crop_size": 34,
                                    "data.load_size": 40}))


@pytest.mark.parametrize("overrides,message", [
    ({"model.generator": "resnet_12blocks"}, "model.generator='resnet_12blocks' is not one of"),
    ({"model.init_type": "uniform"}, "model.init_type='uniform' is not one of"),
    ({"model.init_gain": 0.0}, "model.init_gain=0.0 must be > 0"),
    ({"optim.lr_policy": "exponential"}, "optim.lr_policy='exponential' is not one of"),
    ({"optim.lr_decay_steps": 0}, "optim.lr_decay_steps=0 must be >= 1"),
    ({"optim.plateau_steps": 0}, "optim.plateau_steps=0 must be >= 1"),
    ({"optim.lr": 0.0}, "optim.lr=0.0 must be > 0"),
    ({"optim.beta1": 1.0}, r"optim.beta1=1.0 must be in \[0, 1\)"),
])
def test_invalid_parity_values_name_the_key(overrides, message):
  with pytest.raises(configuration.ConfigError, match=message):
    configuration.validate(_tiny(**overrides))


# ------------------------------------------------------------------ init_type / init_gain


def _kernel(init_type, gain, shape, transposed=False, seed=0):
  return np.asarray(layers.kernel_init(init_type, gain, transposed)(jax.random.key(seed), shape))


def _torch_matrix(kernel, transposed):
  """Our (kh, kw, in, out) kernel as the reference's weight flattened to (dim 0, rest)."""
  if transposed:  # (in, out, kh, kw), un-flipped
    return kernel[::-1, ::-1].transpose(2, 3, 0, 1).reshape(kernel.shape[2], -1)
  return kernel.transpose(3, 2, 0, 1).reshape(kernel.shape[3], -1)  # (out, in, kh, kw)


@pytest.mark.parametrize("init_type,gain,transposed,expected_std", [
    ("normal", 0.05, False, 0.05),
    # xavier_normal_: gain * sqrt(2 / (fan_in + fan_out)), fans 32*16 and 128*16.
    ("xavier", 0.5, False, 0.5 * math.sqrt(2 / (512 + 2048))),
    # kaiming_normal_(a=0, mode='fan_in'): sqrt(2 / fan_in), gain unused; PyTorch takes a
    # ConvTranspose2d's fan_in from its weight's dim 1, the OUTPUT channels.
    ("kaiming", 0.5, False, math.sqrt(2 / 512)),
    ("kaiming", 0.5, True, math.sqrt(2 / 2048)),
])
def test_init_type_std(init_type, gain, transposed, expected_std):
  kernel = _kernel(init_type, gain, (4, 4, 32, 128), transposed)
  assert abs(kernel.mean()) < 0.02 * expected_std * 10
  assert abs(kernel.std() / expected_std - 1) < 0.02


@pytest.mark.parametrize("shape,transposed", [((3, 3, 16, 8), False), ((4, 4, 64, 8), True),
                                              ((1, 1, 8, 32), False)])
def test_orthogonal_init_is_orthogonal_in_the_reference_layout(shape, transposed):
  matrix = _torch_matrix(_kernel("orthogonal", 0.5, shape, transposed), transposed)
  rows, cols = matrix.shape
  gram = matrix @ matrix.T if rows <= cols else matrix.T @ matrix
  np.testing.assert_allclose(gram, 0.25 * np.eye(min(rows, cols)), atol=1e-5)


def test_batch_norm_scale_follows_init_gain():
  scale = np.asarray(layers.scale_init(0.1)(jax.random.key(0), (20_000,)))
  assert abs(scale.mean() - 1) < 0.01 and abs(scale.std() / 0.1 - 1) < 0.03
  # The default keeps the former init bit for bit.
  np.testing.assert_array_equal(
      layers.kernel_init("normal", 0.02)(jax.random.key(3), (4, 4, 3, 8)),
      nn.initializers.normal(0.02)(jax.random.key(3), (4, 4, 3, 8)))


# ------------------------------------------------------------------ LR policies


def _schedule(**overrides):
  return optimizers.learning_rate_schedule(_tiny(**overrides))


def test_step_and_cosine_schedules_at_given_steps():
  lr = 2e-3  # the tiny config's
  step = _schedule(**{"optim.lr_policy": "step", "optim.lr_decay_steps": 30})
  np.testing.assert_allclose([step(0), step(29), step(30), step(59), step(60)],
                             [lr, lr, lr * 0.1, lr * 0.1, lr * 0.01], rtol=1e-6)
  cosine = _schedule(**{"optim.lr_policy": "cosine", "num_train_steps": 200})
  np.testing.assert_allclose([cosine(0), cosine(50), cosine(100), cosine(150), cosine(200)],
                             [lr, lr * (1 + math.sqrt(0.5)) / 2, lr / 2,
                              lr * (1 - math.sqrt(0.5)) / 2, 0], rtol=1e-5, atol=1e-12)
  plateau = _schedule(**{"optim.lr_policy": "plateau"})
  np.testing.assert_allclose([plateau(0), plateau(10_000)], [lr, lr])
  # Configs saved before lr_policy existed keep the linear rule.
  config = _tiny(num_train_steps=200, decay_steps=100)
  del config.optim["lr_policy"]
  np.testing.assert_allclose(optimizers.learning_rate_schedule(config)(199), lr / 101, rtol=1e-6)


def test_schedules_equal_torch_lr_schedulers():
  torch = pytest.importorskip("torch")
  lr = 2e-3
  cases = {
      "step": ({"optim.lr_decay_steps": 7},
               lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.1)),
      "cosine": ({"num_train_steps": 40},
                 lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=40)),
      # The reference's lambda_rule with epoch_count 1, n_epochs 25, n_epochs_decay 15.
      "linear": ({"num_train_steps": 40, "decay_steps": 15},
                 lambda opt: torch.optim.lr_scheduler.LambdaLR(
                     opt, lambda epoch: 1.0 - max(0, epoch + 1 - 25) / float(15 + 1))),
  }
  for policy, (overrides, make_scheduler) in cases.items():
    schedule = _schedule(**{"optim.lr_policy": policy, **overrides})
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = make_scheduler(optimizer)
    for t in range(40):  # one scheduler step per epoch = per step here
      np.testing.assert_allclose(schedule(t), scheduler.get_last_lr()[0], rtol=1e-5,
                                 atol=1e-9, err_msg=f"{policy} at {t}")
      optimizer.step()
      scheduler.step()


def _adam_steps(config, network, num_updates, **extra_args):
  """The updates of `network`'s optimizer for a constant gradient of 1 (Adam's update is
  then -lr(t) exactly, up to its eps), and its final state."""
  tx = optimizers.create_optimizer(config, network)
  params = {"w": jnp.zeros([])}
  state = tx.init(params)
  values = extra_args.pop("values", [0.0] * num_updates)
  updates = []
  for value in values:
    update, state = tx.update({"w": jnp.ones([])}, state, params, value=value, **extra_args)
    updates.append(-float(update["w"]))
  return np.array(updates), state


def test_optimizer_follows_the_step_policy():
  config = _tiny(**{"optim.lr_policy": "step", "optim.lr_decay_steps": 3})
  updates, _ = _adam_steps(config, "generator", 7)
  np.testing.assert_allclose(updates, 2e-3 * np.array([1, 1, 1, .1, .1, .1, .01]), rtol=1e-4)


def test_plateau_drops_the_lr_as_torch_reduce_on_plateau():
  config = _tiny(**{"optim.lr_policy": "plateau", "optim.plateau_steps": 2})
  # A flat loss: the first period sets `best`, the next 6 are bad, > patience 5: x0.2 from
  # the 8th period (update 14) on, and again 6 periods later.
  updates, state = _adam_steps(config, "generator", 30, values=[1.0] * 30)
  expected = 2e-3 * np.array([1] * 14 + [0.2] * 12 + [0.04] * 4)
  np.testing.assert_allclose(updates, expected, rtol=1e-4)
  np.testing.assert_allclose(optimizers.learning_rate(config, state, 30), 2e-3 * 0.04, rtol=1e-6)
  # The discriminator's optimizer follows the generator's scale.
  d_updates, _ = _adam_steps(config, "discriminator", 2, lr_scale=optimizers.plateau_scale(state))
  np.testing.assert_allclose(d_updates, 2e-3 * 0.04, rtol=1e-4)
  # A loss that keeps falling by more than the 1% threshold never drops it.
  falling = [0.95 ** (t // 2) for t in range(30)]
  updates, _ = _adam_steps(config, "generator", 30, values=falling)
  np.testing.assert_allclose(updates, 2e-3, rtol=1e-4)


def test_plateau_scale_equals_torch_reduce_on_plateau():
  torch = pytest.importorskip("torch")
  config = _tiny(**{"optim.lr_policy": "plateau", "optim.plateau_steps": 1})
  rng = np.random.default_rng(0)
  # Falling, then flat with noise below and above the threshold, then falling again.
  metrics = np.concatenate([np.linspace(2, 1, 5), 1 + 0.004 * rng.standard_normal(20),
                            np.linspace(0.9, 0.5, 5), np.full(15, 0.5)]).astype(np.float32)
  updates, _ = _adam_steps(config, "generator", len(metrics), values=list(metrics))
  optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=2e-3)
  scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
      optimizer, mode="min", factor=0.2, threshold=0.01, patience=5)
  expected = []
  for metric in metrics:  # the LR of a period, then the scheduler steps with its metric
    expected.append(optimizer.param_groups[0]["lr"])
    scheduler.step(float(metric))
  assert len(set(expected)) >= 3  # it did drop, twice
  np.testing.assert_allclose(updates, expected, rtol=1e-4)


# ------------------------------------------------------------------ WGAN-GP


def test_wgangp_losses_and_gradient_penalty_values():
  logits = jnp.array([1.0, 3.0])
  assert losses.gan_loss(logits, True, "wgangp") == -2.0
  assert losses.discriminator_loss(jnp.array([1.0]), jnp.array([4.0]), "wgangp") == -3.0
  real = jnp.ones((2, 4, 4, 3))
  fake = jnp.zeros((2, 4, 4, 3))
  # A linear critic: its input gradient is w everywhere, of norm 3: 10 * (3 - 1)**2.
  w = jnp.full((4, 4, 3), 3.0 / math.sqrt(48))
  linear = lambda x: jnp.sum(x * w, axis=(1, 2, 3))
  np.testing.assert_allclose(losses.gradient_penalty(linear, real, fake, jnp.array([.3, .8])),
                             40.0, rtol=1e-5)
  # critic = sum(x**2): gradient 2x at the interpolate alpha * 1 + (1 - alpha) * 0.
  square = lambda x: jnp.sum(jnp.square(x), axis=(1, 2, 3))
  alpha = jnp.array([0.25, 0.5])
  norms = 2 * np.array([0.25, 0.5]) * math.sqrt(48)
  np.testing.assert_allclose(losses.gradient_penalty(square, real, fake, alpha),
                             10 * np.mean((norms - 1) ** 2), rtol=1e-5)


def test_wgangp_penalty_pass_updates_no_batch_statistics():
  config = _tiny(**{"loss.gan": "wgangp"})
  pix2pix = step_lib.Pix2Pix.from_config(config, axis_name=None)
  state = jax.eval_shape(lambda: step_lib.create_train_state(config, jax.random.key(0), pix2pix))
  mutable = []

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, models.PatchDiscriminator) and context.method_name == "__call__":
      mutable.append(context.module.is_mutable_collection("batch_stats"))
    return next_fun(*args, **kwargs)
  batch = {"input": jnp.zeros((4, 32, 32, 3)), "target": jnp.zeros((4, 32, 32, 3)),
           "index": jnp.arange(4)}
  with nn.intercept_methods(record):
    jax.eval_shape(lambda s: step_lib.train_step(s, batch, jax.random.key(1), pix2pix=pix2pix,
                                              axis_name=None), state)
  # D on fake and real (statistics updated), on the interpolates for the penalty (a pure
  # function of them: their train-mode statistics, nothing stored), then on fake for G.
  assert mutable == [True, True, False, True]


# ------------------------------------------------------------------ one step with them all


def _state_with_numpy_weights(config, pix2pix):
  """create_train_state's state with the 'normal' init drawn by numpy: N(0, 0.02) kernels,
  N(1, 0.02) batch-norm scales, zero biases (jax.random compiles for seconds per shape)."""
  template = jax.eval_shape(lambda: step_lib.create_train_state(config, jax.random.key(0), pix2pix))
  rng = np.random.default_rng(0)
  values = {"kernel": lambda shape: 0.02 * rng.standard_normal(shape),
            "scale": lambda shape: 1 + 0.02 * rng.standard_normal(shape),
            "var": np.ones}
  draw = lambda path, leaf: np.asarray(values.get(path[-1].key, np.zeros)(leaf.shape),
                                       np.float32)
  weights = {net: jax.tree_util.tree_map_with_path(draw, getattr(template, net).variables)
             for net in ("generator", "discriminator")}
  return step_lib.state_from_weights(template, weights, pix2pix)


@pytest.fixture(scope="module")
def parity_run():
  """Two steps of resnet_6blocks + wgangp + plateau on 2 devices.

  Plain XLA convolutions compile in half the time; the penalty's second derivative through
  the 'tuned' convolutions is traced by test_wgangp_penalty_pass_updates_no_batch_statistics.
  """
  config = _tiny(**{"model.generator": "resnet_6blocks", "loss.gan": "wgangp",
                    "optim.lr_policy": "plateau", "optim.plateau_steps": 1,
                    "model.conv_impl": "xla"})
  pix2pix = step_lib.Pix2Pix.from_config(config)
  initial = _state_with_numpy_weights(config, pix2pix)
  step = step_lib.make_parallel_train_step(pix2pix)
  replicated = parallel.replicate(initial)
  rng = np.random.default_rng(0)
  history = []
  for t in range(2):
    inputs = rng.uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
    batch = {"input": inputs, "target": inputs[..., ::-1] * 0.5,
             "index": np.arange(4, dtype=np.int32) + 4 * t}
    replicated, metrics = step(replicated, parallel.shard(batch), jax.random.key(1))
    history.append(jax.device_get(metrics))
  return config, initial, parallel.unreplicate(replicated), history


def test_resnet_wgangp_plateau_steps_run(parity_run):
  _, initial, final, history = parity_run
  assert int(final.step) == 2 and int(final.nonfinite_step) == -1
  for metrics in history:
    assert all(np.isfinite(v).all() for v in metrics.values())
    assert metrics["d_penalty"][0] > 0
    np.testing.assert_allclose(  # D's loss: critic(fake) - critic(real) + penalty
        metrics["d_loss"][0],
        metrics["d_fake"][0] - metrics["d_real"][0] + metrics["d_penalty"][0], rtol=1e-4)
  plateau = final.generator.opt_state[1]  # chain(adam, reduce_on_plateau)
  assert isinstance(plateau, optimizers.PlateauState)
  # Two one-step periods: the first sets `best`, the second at most one bad period.
  assert float(plateau.scale) == 1.0 and np.isfinite(float(plateau.best))
  moved = {net: jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()),
                             getattr(final, net).params, getattr(initial, net).params)
           for net in ("generator", "discriminator")}
  # The critic's last bias shifts D(real) and D(fake) alike: its Wasserstein gradient is 0.
  assert moved["discriminator"]["conv_4"].pop("bias") == 0.0
  assert min(jax.tree.leaves(moved)) > 0


def test_init_type_and_gain_reach_every_layer():
  config = _tiny(**{"model.generator": "resnet_6blocks", "model.init_type": "orthogonal",
                    "model.init_gain": 0.2})
  seen = []

  def record(next_fun, args, kwargs, context):
    module = context.module
    if context.method_name != "__call__":
      pass
    elif isinstance(module, layers.Conv):
      seen.append((type(module).__name__, module.init_type, module.init_gain))
    elif isinstance(module, layers.BatchNorm):
      seen.append(("BatchNorm", module.init_gain))
    return next_fun(*args, **kwargs)
  with nn.intercept_methods(record):
    for network in (models.create_generator(config.model),
                    models.create_discriminator(config.model)):
      jax.eval_shape(lambda n=network: n.init(jax.random.key(0), jnp.zeros((1, 32, 32, 6)),
                                              train=False))
  assert seen.count(("Conv", "orthogonal", 0.2)) == 1 + 2 + 12 + 1 + 5
  assert seen.count(("ConvTranspose", "orthogonal", 0.2)) == 2
  assert seen.count(("BatchNorm", 0.2)) == 1 + 2 + 12 + 2 + 3
  assert len(seen) == 21 + 2 + 20


# ------------------------------------------------------------------ --init_from


@pytest.fixture(scope="module")
def source_workdir(parity_run, tmp_path_factory):
  """A workdir holding the parity run's state as a full checkpoint (plateau state included)."""
  config, _, final, _ = parity_run
  workdir = checkpoints.prepare_workdir(str(tmp_path_factory.mktemp("source")), config)
  manager = checkpoints.create_manager(workdir, config)
  checkpoints.save(manager, 2, final, config, jax.random.key(0))
  manager.wait_until_finished()
  manager.close()
  return workdir


def test_init_from_starts_a_new_run_from_the_weights(parity_run, source_workdir, tmp_path):
  config, _, final, _ = parity_run
  config = config.copy_and_resolve_references()
  config.seed = 5  # another seed: the weights must still be the source's
  weights = train.start_weights(config, str(tmp_path / "new"), source_workdir)
  pix2pix = step_lib.Pix2Pix.from_config(config)
  manager = checkpoints.create_manager(str(tmp_path / "new"), config)
  state, _ = train.initial_state(config, pix2pix, manager, weights)
  manager.close()
  assert int(state.step) == 0
  for net in ("generator", "discriminator"):
    jax.tree.map(np.testing.assert_array_equal, getattr(state, net).variables,
                 getattr(final, net).variables)
    adam = getattr(state, net).opt_state[0][0]  # chain(adam(...), plateau): fresh moments
    assert int(adam.count) == 0 and not any(np.any(m) for m in jax.tree.leaves(adam.mu))
  assert float(optimizers.plateau_scale(state.generator.opt_state)) == 1.0
  assert np.isinf(float(state.generator.opt_state[1].best))


def test_init_from_other_networks_is_a_clear_error(source_workdir, tmp_path):
  with pytest.raises(configuration.ConfigError) as error:
    train.start_weights(_tiny(), str(tmp_path / "new"), source_workdir)
  message = str(error.value)
  assert message.startswith(f"--init_from={source_workdir} holds other networks than this "
                            "config (model.generator: 'resnet_6blocks' -> 'unet'; ")
  assert message.endswith("): give this run that workdir's values of these keys.")
  with pytest.raises(configuration.ConfigError, match=(
      r"\(model.ndf: 8 -> 4; 18 variable\(s\) differ, e.g. "
      r"discriminator/params/conv_0/bias: \(8,\) -> \(4,\)\)")):
    train.start_weights(_tiny(**{"model.generator": "resnet_6blocks", "model.ndf": 4}),
                        str(tmp_path / "new"), source_workdir)
  with pytest.raises(configuration.ConfigError, match="--init_from=.*nowhere.* is not a "
                                                      "pix2pix_jax workdir"):
    train.start_weights(_tiny(), str(tmp_path / "new"), str(tmp_path / "nowhere"))


def test_init_from_is_ignored_when_the_workdir_resumes(tmp_path):
  os.makedirs(tmp_path / "w" / "checkpoints" / "7")
  assert train.start_weights(_tiny(), str(tmp_path / "w"), str(tmp_path / "nowhere")) is None
  assert train.start_weights(_tiny(), str(tmp_path / "w"), "") is None
