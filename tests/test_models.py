"""Architecture tests: parameter counts, biases, receptive fields, shapes, norms, dropout."""

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pix2pix_jax import layers
from pix2pix_jax import models


def _init(module, shape, **kwargs):
  return module.init({"params": jax.random.key(0), "dropout": jax.random.key(1)},
                     jnp.zeros(shape), train=False, **kwargs)


def _abstract_init(module, shape):
  return jax.eval_shape(lambda: _init(module, shape))


def _count(params) -> int:
  return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))


def _flat(params):
  return {"/".join(k): v for k, v in traverse_util.flatten_dict(params).items()}


def test_unet_256_parameter_count_matches_reference():
  variables = _abstract_init(models.UNetGenerator(num_downs=8, ngf=64), (1, 256, 256, 3))
  assert _count(variables["params"]) == 54_413_955


def test_70x70_discriminator_parameter_count_matches_reference():
  variables = _abstract_init(models.PatchDiscriminator(ndf=64, n_layers=3), (1, 256, 256, 6))
  assert _count(variables["params"]) == 2_768_705


def test_generator_biases_follow_reference():
  params = _flat(_abstract_init(models.UNetGenerator(num_downs=5, ngf=4), (1, 32, 32, 3))["params"])
  biased_convs = sorted(k for k in params if k.endswith("conv/bias"))
  # With batch norm only the outermost up-conv has a bias, not even the outermost down-conv.
  assert biased_convs == ["unet/up_conv/bias"]
  params = _flat(_abstract_init(models.UNetGenerator(num_downs=5, ngf=4, norm="instance"),
                                (1, 32, 32, 3))["params"])
  kernels = [k for k in params if k.endswith("conv/kernel")]
  assert len(kernels) == 10
  assert all(k.replace("kernel", "bias") in params for k in kernels)
  assert not [k for k in params if "norm" in k]  # instance norm: no affine parameters.


def test_discriminator_biases_follow_reference():
  params = _flat(_abstract_init(models.PatchDiscriminator(ndf=4, n_layers=3),
                                (1, 64, 64, 6))["params"])
  assert sorted(k for k in params if k.endswith("bias") and "conv" in k) == [
      "conv_0/bias", "conv_4/bias"]


def test_generator_norm_layers_as_reference():
  variables = _abstract_init(models.UNetGenerator(num_downs=5, ngf=4), (1, 32, 32, 3))
  params = _flat(variables["params"])
  # No norm on the outermost level; none after the innermost down-conv.
  assert "unet/down_norm/scale" not in params
  innermost = "unet" + "/submodule" * 4
  assert f"{innermost}/down_norm/scale" not in params
  assert f"{innermost}/up_norm/scale" in params
  assert "unet/submodule/down_norm/scale" in params
  assert set(_flat(variables["batch_stats"])) == {
      k.replace("scale", s) for k in params if k.endswith("scale") for s in ("mean", "var")}


@pytest.mark.parametrize("n_layers,expected", [(0, 1), (1, 16), (3, 70), (5, 286)])
def test_discriminator_receptive_field(n_layers, expected):
  size = 384 if n_layers == 5 else 160
  d = models.PatchDiscriminator(ndf=2, n_layers=n_layers)
  variables = _init(d, (1, size, size, 3))
  logits_shape = jax.eval_shape(lambda x: d.apply(variables, x, train=False),
                                jnp.zeros((1, size, size, 3))).shape
  center = (logits_shape[1] // 2, logits_shape[2] // 2)

  def center_logit(x):
    return d.apply(variables, x, train=False)[0, center[0], center[1], 0]
  x = jax.random.normal(jax.random.key(2), (1, size, size, 3))
  grad = np.abs(np.asarray(jax.grad(center_logit)(x)))[0].sum(-1)
  rows, cols = np.nonzero(grad.sum(1))[0], np.nonzero(grad.sum(0))[0]
  assert rows[-1] - rows[0] + 1 == expected
  assert cols[-1] - cols[0] + 1 == expected
  assert rows[0] > 0 and rows[-1] < size - 1  # fully inside the image, not cut by it.


@pytest.mark.parametrize("num_downs,size,d_side", [(8, 256, 30), (7, 128, 14)])
def test_output_shapes(num_downs, size, d_side):
  g = models.UNetGenerator(num_downs=num_downs, ngf=8)
  x = jnp.zeros((2, size, size, 3))
  g_vars = _abstract_init(g, x.shape)
  out = jax.eval_shape(lambda v, x: g.apply(v, x, train=False), g_vars, x)
  assert out.shape == (2, size, size, 3)
  d = models.PatchDiscriminator(ndf=8)
  d_vars = _abstract_init(d, (2, size, size, 6))
  logits = jax.eval_shape(lambda v, x: d.apply(v, x, train=False), d_vars,
                          jnp.zeros((2, size, size, 6)))
  assert logits.shape == (2, d_side, d_side, 1)


def test_encoder_decoder_has_no_skips():
  x = jnp.zeros((1, 32, 32, 3))
  unet = _abstract_init(models.UNetGenerator(num_downs=5, ngf=4), x.shape)
  plain = _abstract_init(models.UNetGenerator(num_downs=5, ngf=4, skip_connections=False),
                         x.shape)
  unet_k, plain_k = _flat(unet["params"]), _flat(plain["params"])
  assert unet_k.keys() == plain_k.keys()
  # Up-convs see the level below alone: half the input channels, except the innermost.
  assert unet_k["unet/up_conv/kernel"].shape == (4, 4, 8, 3)
  assert plain_k["unet/up_conv/kernel"].shape == (4, 4, 4, 3)
  innermost = "unet" + "/submodule" * 4 + "/up_conv/kernel"
  assert unet_k[innermost].shape == plain_k[innermost].shape


def test_init_distributions():
  params = _flat(_init(models.UNetGenerator(num_downs=8, ngf=16), (1, 256, 256, 3))["params"])
  kernels = np.concatenate([np.ravel(v) for k, v in params.items() if k.endswith("kernel")])
  scales = np.concatenate([np.ravel(v) for k, v in params.items() if k.endswith("scale")])
  biases = np.concatenate([np.ravel(v) for k, v in params.items() if k.endswith("bias")])
  assert abs(kernels.mean()) < 1e-3 and abs(kernels.std() - 0.02) < 1e-3
  assert abs(scales.mean() - 1) < 5e-3 and abs(scales.std() - 0.02) < 5e-3
  assert not biases.any()


def test_batch_norm_matches_pytorch_semantics():
  x = jax.random.normal(jax.random.key(0), (1, 2, 2, 5)) * 3 + 1  # 4 values per channel.
  bn = layers.BatchNorm()
  variables = bn.init(jax.random.key(1), x, train=True)
  y, updates = bn.apply(variables, x, train=True, mutable=["batch_stats"])
  flat = np.asarray(x).reshape(-1, 5)
  mean, biased_var = flat.mean(0), flat.var(0)
  scale = np.asarray(variables["params"]["scale"])
  np.testing.assert_allclose(
      np.asarray(y).reshape(-1, 5), (flat - mean) / np.sqrt(biased_var + 1e-5) * scale,
      atol=1e-5)
  stats = updates["batch_stats"]
  np.testing.assert_allclose(stats["mean"], 0.1 * mean, atol=1e-6)
  np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * biased_var * 4 / 3, rtol=1e-5)
  # Running mode normalises with the running averages.
  y_running = bn.apply({**variables, **updates}, x, train=False)
  np.testing.assert_allclose(
      np.asarray(y_running).reshape(-1, 5),
      (flat - stats["mean"]) / np.sqrt(np.asarray(stats["var"]) + 1e-5) * scale, rtol=1e-5)


def test_batch_norm_train_mode_without_mutable_keeps_statistics():
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
  bn = layers.BatchNorm()
  variables = bn.init(jax.random.key(1), x, train=True)
  y_frozen = bn.apply(variables, x, train=True)  # no mutable collection: nothing to update.
  y, _ = bn.apply(variables, x, train=True, mutable=["batch_stats"])
  np.testing.assert_array_equal(y_frozen, y)


def test_instance_norm_has_no_state_and_normalises_each_image():
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3)) * 5 + 2
  norm = layers.InstanceNorm()
  variables = norm.init(jax.random.key(1), x, train=True)
  assert not jax.tree.leaves(variables)
  y = np.asarray(norm.apply(variables, x, train=True))
  np.testing.assert_allclose(y.mean((1, 2)), 0, atol=1e-5)
  np.testing.assert_allclose(y.std((1, 2)), 1, atol=1e-3)


def test_dropout_mask_depends_only_on_global_example_index():
  x = jnp.ones((3, 4, 4, 8))
  drop = layers.Dropout(0.5)
  rngs = {"dropout": jax.random.key(3)}
  together = drop.apply({}, x, deterministic=False, example_ids=jnp.array([7, 8, 9]), rngs=rngs)
  alone = drop.apply({}, x[1:2], deterministic=False, example_ids=jnp.array([8]), rngs=rngs)
  np.testing.assert_array_equal(together[1:2], alone)
  assert not np.array_equal(together[0], together[1])
  assert set(np.unique(together)) == {0.0, 2.0}
  np.testing.assert_array_equal(drop.apply({}, x, deterministic=True), x)


@pytest.mark.parametrize("placement,num_downs,levels", [
    ("pytorch", 8, (4, 5, 6)), ("pytorch", 7, (4, 5)), ("pytorch", 5, ()),
    ("lua", 8, (5, 6, 7)), ("lua", 5, (2, 3, 4))])
def test_dropout_levels(placement, num_downs, levels):
  assert models.dropout_levels(num_downs, placement) == levels


def test_generator_dropout_modules_placed_as_configured():
  def count_dropouts(**kwargs):
    g = models.UNetGenerator(num_downs=8, ngf=2, **kwargs)
    calls = []

    def interceptor(next_fun, args, kwargs_, context):
      if isinstance(context.module, layers.Dropout):
        calls.append(context.module.path)
      return next_fun(*args, **kwargs_)
    with nn.intercept_methods(interceptor):
      jax.eval_shape(lambda: _init(g, (1, 256, 256, 3)))
    return len(calls)
  assert count_dropouts() == 3
  assert count_dropouts(dropout_placement="lua") == 3
  assert count_dropouts(use_dropout=False) == 0


@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
def test_resize_conv_upsampling_is_resize_then_a_3x3_conv(upsample):
  layer = layers.ResizeConv(5, method=upsample, conv_impl="xla")
  x = jax.random.normal(jax.random.key(0), (2, 4, 6, 3))
  variables = layer.init(jax.random.key(1), x)
  assert variables["params"]["kernel"].shape == (3, 3, 3, 5)
  expected = jax.lax.conv_general_dilated(
      jax.image.resize(x, (2, 8, 12, 3), upsample), variables["params"]["kernel"], (1, 1),
      ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(layer.apply(variables, x), expected + variables["params"]["bias"],
                             atol=1e-5)


@pytest.mark.parametrize("make,shape,transpose,resize", [
    (lambda up: models.UNetGenerator(num_downs=8, ngf=64, upsample=up), (1, 256, 256, 3),
     54_413_955, 39_157_763),
    (lambda up: models.ResnetGenerator(n_blocks=9, ngf=64, upsample=up), (1, 256, 256, 3),
     11_383_427, 11_383_427),
    (lambda up: models.UNetGenerator(num_downs=6, ngf=32, upsample=up), (1, 64, 64, 3),
     7_314_755, 5_335_043),
])
def test_upsample_parameter_counts_as_documented(make, shape, transpose, resize):
  """The counts configs/default.py's help of model.upsample states."""
  counts = {}
  for upsample in layers.UPSAMPLES:
    params = _abstract_init(make(upsample), shape)["params"]
    counts[upsample] = sum(x.size for x in jax.tree.leaves(params))
    output = jax.eval_shape(lambda m=make(upsample): m.apply(
        _init(m, shape), jnp.zeros(shape), train=False))
    assert output.shape == shape
  assert counts == {"transpose": transpose, "nearest": resize, "bilinear": resize}


def test_upsample_is_an_architecture_key_and_the_torch_import_needs_transpose():
  from configs import default  # pylint: disable=g-import-not-at-top
  from pix2pix_jax import checkpoints, configuration, torch_import  # pylint: disable=g-import-not-at-top
  saved = default.get_config("tiny")
  del saved.model["upsample"]  # a config written before the key: reads as transpose.
  config = default.get_config("tiny")
  assert checkpoints.architecture_differences(saved, config) == []
  config.model.upsample = "bilinear"
  assert checkpoints.architecture_differences(saved, config) == [
      "model.upsample: 'transpose' -> 'bilinear'"]
  with pytest.raises(configuration.ConfigError, match="model.upsample='bilinear'.*no "
                     "counterpart in the PyTorch reference"):
    torch_import._check_supported(config)  # pylint: disable=protected-access
  config.model.upsample = "cubic"
  with pytest.raises(configuration.ConfigError, match="model.upsample='cubic' is not one of"):
    configuration.validate(config)
