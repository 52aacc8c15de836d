"""Every formulation of each convolution equals plain `lax` convolution: forward and gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from pix2pix_jax import conv_ops
from pix2pix_jax import models
from pix2pix_jax import step as step_lib

OPS = {"conv": conv_ops.conv2d, "transpose": conv_ops.conv_transpose2d}
# (kind, input NHWC, out features, stride): tiny to inner-U-Net-like, odd sides, batch > 1, and
# sizes on both sides of the 'tuned' plan's and 'gemm''s pixel thresholds.
CASES = [
    ("conv", (2, 8, 8, 3), 5, 2),
    ("conv", (1, 4, 4, 16), 8, 2),
    ("conv", (3, 5, 7, 4), 6, 2),
    ("conv", (1, 32, 32, 4), 4, 2),
    ("conv", (2, 9, 9, 6), 1, 1),
    ("conv", (2, 9, 9, 6), 12, 1),
    ("transpose", (2, 1, 1, 8), 4, 2),
    ("transpose", (1, 2, 2, 16), 8, 2),
    ("transpose", (3, 5, 3, 4), 6, 2),
    ("transpose", (1, 16, 16, 4), 3, 2),
]


def _forward_and_grads(kind, impl, stride, x, kernel, cotangent):
  op = functools.partial(OPS[kind], stride=stride, padding=1, impl=impl)
  y, vjp = jax.vjp(op, x, kernel)
  return (y,) + vjp(cotangent)


@pytest.mark.parametrize("impl", ["gemm", "tuned"])
@pytest.mark.parametrize("kind,shape,features,stride", CASES)
def test_formulations_equal_plain_lax(kind, shape, features, stride, impl):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
  kernel = jnp.asarray(rng.standard_normal((4, 4, shape[-1], features)), jnp.float32)
  y = OPS[kind](x, kernel, stride=stride, padding=1, impl="xla")
  cotangent = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
  expected = _forward_and_grads(kind, "xla", stride, x, kernel, cotangent)
  got = jax.jit(functools.partial(_forward_and_grads, kind, impl, stride))(x, kernel, cotangent)
  for name, want, have in zip(("forward", "input grad", "kernel grad"), expected, got):
    assert have.shape == want.shape, name
    np.testing.assert_allclose(have, want, atol=1e-4, rtol=1e-5, err_msg=f"{kind} {name}")


@pytest.mark.parametrize("kind,shape,features,stride", CASES)
def test_phase_formulation_equals_plain_lax(kind, shape, features, stride):
  """The phase decomposition (used by 'tuned' only), forward and both gradients."""
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
  kernel = jnp.asarray(rng.standard_normal((4, 4, shape[-1], features)), jnp.float32)
  formulations = conv_ops.FORMULATIONS[kind]

  def passes(name):
    op = lambda x_, k_: formulations[name](x_, k_, stride, 1)
    y, vjp = jax.vjp(op, x, kernel)
    return (y,) + vjp(cotangent)
  cotangent = jnp.asarray(
      rng.standard_normal(formulations["xla"](x, kernel, stride, 1).shape), jnp.float32)
  for name, want, have in zip(("forward", "input grad", "kernel grad"), passes("xla"),
                              jax.jit(lambda: passes("phase"))()):
    assert have.shape == want.shape, name
    np.testing.assert_allclose(have, want, atol=1e-4, rtol=1e-5, err_msg=f"{kind} {name}")
  if kind == "conv" and stride == 2:  # a kernel side that is not a multiple of the stride
    kernel = kernel[:3, :3]
    cotangent = jnp.asarray(
        rng.standard_normal(formulations["xla"](x, kernel, stride, 1).shape), jnp.float32)
    for want, have in zip(passes("xla"), passes("phase")):
      np.testing.assert_allclose(have, want, atol=1e-4, rtol=1e-5, err_msg="3x3")


@pytest.mark.parametrize("impl", ["gemm", "tuned"])
def test_resnet_3x3_and_output_padding_equal_plain_lax(impl):
  """The ResNet's 3x3 stride-2 conv and its transposed conv with output_padding=1 (doubling
  the side), forward and gradients, against plain lax."""
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.standard_normal((2, 8, 8, 4)), jnp.float32)
  kernel = jnp.asarray(rng.standard_normal((3, 3, 4, 6)), jnp.float32)
  ops = {"conv": functools.partial(conv_ops.conv2d, stride=2, padding=1),
         "transpose": functools.partial(conv_ops.conv_transpose2d, stride=2, padding=1,
                                        output_padding=1)}
  for kind, op in ops.items():
    y = op(x, kernel, impl="xla")
    assert y.shape == ((2, 4, 4, 6) if kind == "conv" else (2, 16, 16, 6))
    cotangent = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
    grads = lambda impl_, op=op: (lambda x_, k_: jax.vjp(
        functools.partial(op, impl=impl_), x_, k_)[1](cotangent))
    expected = (y,) + grads("xla")(x, kernel)
    got = (op(x, kernel, impl=impl),) + jax.jit(grads(impl))(x, kernel)
    for name, want, have in zip(("forward", "input grad", "kernel grad"), expected, got):
      np.testing.assert_allclose(have, want, atol=1e-4, rtol=1e-5, err_msg=f"{kind} {name}")


def test_every_plan_of_a_layer_is_exact():
  """Each of the 27 mixes of formulations (forward, input grad, kernel grad) is exact."""
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((2, 4, 4, 3)), jnp.float32)
  for kind in OPS:
    kernel = jnp.asarray(rng.standard_normal((4, 4, 3, 5)), jnp.float32)
    ref = _forward_and_grads(kind, "xla", 2, x, kernel,
                             jnp.ones_like(OPS[kind](x, kernel, stride=2, padding=1, impl="xla")))
    for choice in np.ndindex(3, 3, 3):
      plan = conv_ops.Plan(*(("xla", "gemm", "phase")[i] for i in choice))
      y, vjp = jax.vjp(lambda x_, k_: conv_ops._planned(x_, k_, kind, plan, 2, 1), x, kernel)  # pylint: disable=cell-var-from-loop,protected-access
      got = (y,) + vjp(jnp.ones_like(y))
      for want, have in zip(ref, got):
        np.testing.assert_allclose(have, want, atol=1e-4, rtol=1e-5, err_msg=f"{kind} {plan}")


def test_plans_image_by_image_are_exact():
  """A formulation applied image by image ('/image'), in every pass, is the same conv."""
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.standard_normal((3, 6, 6, 3)), jnp.float32)
  for kind in OPS:
    kernel = jnp.asarray(rng.standard_normal((4, 4, 3, 5)), jnp.float32)
    cotangent = jnp.ones_like(OPS[kind](x, kernel, stride=2, padding=1, impl="xla"))
    ref = _forward_and_grads(kind, "xla", 2, x, kernel, cotangent)
    for name in ("xla", "gemm", "phase"):
      plan = conv_ops.Plan(f"{name}/image", name, f"{name}/image")
      y, vjp = jax.vjp(lambda x_, k_: conv_ops._planned(x_, k_, kind, plan, 2, 1), x, kernel)  # pylint: disable=cell-var-from-loop,protected-access
      for want, have in zip(ref, (y,) + vjp(cotangent)):
        np.testing.assert_allclose(have, want, atol=1e-4, rtol=1e-5, err_msg=f"{kind} {plan}")
  with pytest.raises(ValueError, match="formulation"):
    conv_ops.formulation("conv", "xla/pixel")


def test_tuned_plan_mixes_formulations_at_unet_256_sizes():
  """The CPU plan really uses the matrix products where the plain path is slow."""
  inner = conv_ops.cpu_plan("transpose", (1, 2, 2, 1024), (1, 4, 4, 512), 2)
  outer = conv_ops.cpu_plan("transpose", (1, 128, 128, 128), (1, 256, 256, 3), 2)
  assert inner == conv_ops.Plan("gemm", "gemm", "gemm")
  assert outer == conv_ops.Plan("xla", "xla", "gemm")  # the weight gradient is never plain.
  # The PatchGAN's stride-1 convs: kernel gradients as products (D.conv_3) or with the
  # padding outside the conv (D.conv_4, one output channel); plain at more pixels, and for
  # other kernel sizes (the ResNet generator's, unmeasured).
  assert conv_ops.cpu_plan("conv", (1, 32, 32, 256), (1, 31, 31, 512), 1) == conv_ops.Plan(
      "xla", "xla", "gemm")
  assert conv_ops.cpu_plan("conv", (4, 31, 31, 512), (4, 30, 30, 1), 1) == conv_ops.Plan(
      "xla", "xla", "phase")
  assert conv_ops.cpu_plan("conv", (8, 32, 32, 256), (8, 31, 31, 512), 1).kernel_grad == "xla"
  assert conv_ops.cpu_plan("conv", (1, 64, 64, 256), (1, 64, 64, 256), 1,
                           kernel_size=3).kernel_grad == "xla"
  # The same inner up-conv at batch 4 (16 input pixels) is still products in every pass.
  assert conv_ops.cpu_plan("transpose", (4, 2, 2, 1024), (4, 4, 4, 512), 2) == inner
  # At batch 4 the big levels' stride-dilated passes go through the phases.
  assert conv_ops.cpu_plan("conv", (4, 128, 128, 64), (4, 64, 64, 128), 2).input_grad == "phase"
  assert conv_ops.cpu_plan("transpose", (4, 64, 64, 256), (4, 128, 128, 64), 2).forward == "phase"
  # The large strided convs' kernel gradients go image by image in a batch of a few.
  down_1 = lambda n: conv_ops.cpu_plan("conv", (n, 128, 128, 64), (n, 64, 64, 128), 2)
  assert [down_1(n).kernel_grad for n in (1, 4, 8, 16)] == ["xla", "xla/image", "xla/image",
                                                           "xla"]
  assert conv_ops.resolve_impl("auto") == ("tuned" if jax.default_backend() == "cpu" else "xla")
  with pytest.raises(ValueError, match="conv_impl"):
    conv_ops.resolve_impl("fast")


@pytest.mark.slow  # ~1 min: three impls compile a whole train step each
def test_train_step_is_the_same_with_every_conv_impl():
  """One whole tiny train step: same losses and parameters whatever model.conv_impl is."""
  results = {}
  for impl in ("xla", "gemm", "tuned"):
    config = default.get_config("tiny")
    config.model.conv_impl = impl
    pix2pix = step_lib.Pix2Pix.from_config(config, axis_name=None)
    state = step_lib.create_train_state(config, jax.random.key(0), pix2pix)
    rng = np.random.default_rng(0)
    shape = (2, config.data.crop_size, config.data.crop_size, 3)
    batch = {"input": rng.uniform(-1, 1, shape).astype(np.float32),
             "target": rng.uniform(-1, 1, shape).astype(np.float32),
             "index": np.arange(2, dtype=np.int32)}
    step = jax.jit(functools.partial(step_lib.train_step, pix2pix=pix2pix, axis_name=None))
    state, metrics = step(state, batch, jax.random.key(1))
    results[impl] = (metrics, state.generator.params, state.discriminator.params)
  for impl in ("gemm", "tuned"):
    for name in ("g_loss", "d_loss", "g_l1"):
      np.testing.assert_allclose(results[impl][0][name], results["xla"][0][name], atol=1e-5)
    # Adam's first update is about lr * g / |g|: it magnifies the rounding of gradients
    # near zero, so the parameters are compared at the gradients' tolerance, 1e-4.
    jax.tree.map(functools.partial(np.testing.assert_allclose, atol=1e-4),
                 results[impl][1:], results["xla"][1:])


def test_conv_impl_leaves_the_parameters_alone():
  config = default.get_config("tiny")
  shapes = {}
  for impl in ("xla", "tuned"):
    config.model.conv_impl = impl
    generator = models.create_generator(config.model)
    variables = jax.eval_shape(functools.partial(generator.init, train=False),
                               jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    shapes[impl] = jax.tree.map(lambda x: x.shape, variables)
  assert shapes["xla"] == shapes["tuned"]


@pytest.mark.slow  # compiles and trains a bfloat16 step
def test_bfloat16_training_runs_and_the_loss_falls():
  """model.dtype=bfloat16 computes in bf16; params and Adam states stay float32."""
  config = default.get_config("tiny")
  config.model.dtype = "bfloat16"
  pix2pix = step_lib.Pix2Pix.from_config(config, axis_name=None)
  assert pix2pix.generator.dtype == jnp.bfloat16
  state = step_lib.create_train_state(config, jax.random.key(0), pix2pix)
  rng = np.random.default_rng(0)
  shape = (4, config.data.crop_size, config.data.crop_size, 3)
  target = rng.uniform(-1, 1, shape).astype(np.float32)
  batch = {"input": np.clip(target + rng.normal(0, 0.3, shape), -1, 1).astype(np.float32),
           "target": target, "index": np.arange(4, dtype=np.int32)}
  step = jax.jit(functools.partial(step_lib.train_step, pix2pix=pix2pix, axis_name=None))
  l1 = []
  for _ in range(15):
    state, metrics = step(state, batch, jax.random.key(1))
    l1.append(float(metrics["g_l1"]))
  assert all(np.isfinite(l1))
  assert np.mean(l1[-3:]) < 0.95 * l1[0], l1  # fell steadily: 0.503 -> 0.457 when written.
  for leaf in jax.tree.leaves((state.generator, state.discriminator)):
    if jnp.issubdtype(leaf.dtype, jnp.floating):
      assert leaf.dtype == jnp.float32
