"""The layers of the networks, with PyTorch's semantics: convolutions, norms, dropout, init.

`Conv` / `ConvTranspose` take a kernel (kh, kw, in, out) with PyTorch's symmetric padding and
init (`kernel_init`); `BatchNorm` is PyTorch's (momentum 0.1, unbiased running variance) with
the statistics reduced over a named device axis; `InstanceNorm` the reference's (no affine, no
running statistics); `Dropout` draws each example's mask from its global index. `layer_defs`
builds, from a network's fields, the partials its blocks are handed (as flax's ResNet hands
`conv` and `norm` down), so that `clone(axis_name=None)` on a network reaches every norm.
"""

import functools
from typing import Any, Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from pix2pix_jax import conv_ops

Array = jax.Array
ModuleDef = Callable[..., nn.Module]
NORMS = ("batch", "instance", "none")
INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")


def _torch_fans(shape, transposed: bool) -> tuple[int, int]:
  """PyTorch's (fan_in, fan_out) of a conv weight, from our (kh, kw, in, out) kernel shape.

  PyTorch reads them off its weight layout: Conv2d (out, in, kh, kw) gives fan_in = in*kh*kw,
  but ConvTranspose2d (in, out, kh, kw) gives fan_in = out*kh*kw.
  """
  kh, kw, features_in, features_out = shape
  fan_in, fan_out = features_in * kh * kw, features_out * kh * kw
  return (fan_out, fan_in) if transposed else (fan_in, fan_out)


def _torch_orthogonal(key, shape, gain: float, transposed: bool) -> jax.Array:
  """torch.nn.init.orthogonal_ on the PyTorch weight, returned in our kernel layout.

  The weight flattened to (rows = its first dim, rest) has orthonormal rows (or columns,
  if there are more rows than columns), times `gain`.
  """
  kh, kw, features_in, features_out = shape
  rows = features_in if transposed else features_out
  cols = kh * kw * (features_out if transposed else features_in)
  flat = jax.random.normal(key, (max(rows, cols), min(rows, cols)), jnp.float32)
  q, r = jnp.linalg.qr(flat)
  q = q * jnp.sign(jnp.diagonal(r))  # as torch: a uniformly distributed rotation.
  q = (q.T if rows < cols else q) * gain
  if transposed:  # torch (in, out, kh, kw) -> ours, flipped as ConvTranspose.
    return q.reshape(features_in, features_out, kh, kw).transpose(2, 3, 0, 1)[::-1, ::-1]
  return q.reshape(features_out, features_in, kh, kw).transpose(2, 3, 1, 0)


def kernel_init(init_type: str, gain: float, transposed: bool = False):
  """The reference's init_weights for a conv kernel (kh, kw, in, out).

  normal: N(0, gain); xavier: xavier_normal_(gain); kaiming: kaiming_normal_(a=0,
  mode='fan_in'), std sqrt(2 / fan_in), gain unused as in the reference; orthogonal:
  orthogonal_(gain). Fans and orthogonality are PyTorch's, on its weight layout.
  """
  def init(key, shape, dtype=jnp.float32):
    fan_in, fan_out = _torch_fans(shape, transposed)
    if init_type == "normal":
      std = gain
    elif init_type == "xavier":
      std = gain * (2.0 / (fan_in + fan_out)) ** 0.5
    elif init_type == "kaiming":
      std = (2.0 / fan_in) ** 0.5
    elif init_type == "orthogonal":
      return _torch_orthogonal(key, shape, gain, transposed).astype(dtype)
    else:
      raise ValueError(f"model.init_type={init_type!r} is not one of {INIT_TYPES}.")
    return std * jax.random.normal(key, shape, dtype)
  return init


conv_init = kernel_init("normal", 0.02)  # the reference's default init_weights('normal', 0.02)


def scale_init(gain: float = 0.02):
  """Batch-norm scale ~ N(1, gain), as the reference (for every init_type)."""
  def init(key, shape, dtype=jnp.float32):
    return 1.0 + gain * jax.random.normal(key, shape, dtype)
  return init


def reflect_pad(x: jax.Array, pad: int) -> jax.Array:
  """PyTorch's ReflectionPad2d(pad) of an NHWC array (the edge pixel is not repeated)."""
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


class Conv(nn.Module):
  """A 2-D convolution with PyTorch's symmetric zero padding; kernel (kh, kw, in, out)."""
  features: int
  kernel_size: int = 4
  strides: int = 2
  padding: int = 1
  use_bias: bool = True
  dtype: Any = jnp.float32
  conv_impl: str = "auto"  # how weight gradients are computed (conv_ops); same parameters.
  init_type: str = "normal"  # model.init_type / init_gain (kernel_init).
  init_gain: float = 0.02

  def _kernel(self, in_features: int) -> jax.Array:
    k = self.kernel_size
    init = kernel_init(self.init_type, self.init_gain,
                       transposed=isinstance(self, ConvTranspose))
    kernel = self.param("kernel", init, (k, k, in_features, self.features), jnp.float32)
    return kernel.astype(self.dtype)

  def _add_bias(self, y: jax.Array) -> jax.Array:
    if not self.use_bias:
      return y
    return y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)

  @nn.compact
  def __call__(self, x):
    y = conv_ops.conv2d(x.astype(self.dtype), self._kernel(x.shape[-1]), stride=self.strides,
                        padding=self.padding, impl=self.conv_impl)
    return self._add_bias(y)


class ConvTranspose(Conv):
  """PyTorch's ConvTranspose2d(k=4, stride=2, padding=1): doubles height and width.

  Written as a convolution of the 2x-dilated input, padded by k - 1 - padding. The kernel is
  stored (kh, kw, in, out) and applied unflipped, so a PyTorch weight (in, out, kh, kw) maps to
  `w.transpose(2, 3, 0, 1)[::-1, ::-1]`. `output_padding` as PyTorch's (the ResNet's
  k=3, padding=1, output_padding=1 also doubles).
  """
  output_padding: int = 0

  @nn.compact
  def __call__(self, x):
    y = conv_ops.conv_transpose2d(x.astype(self.dtype), self._kernel(x.shape[-1]),
                                  stride=self.strides, padding=self.padding,
                                  impl=self.conv_impl, output_padding=self.output_padding)
    return self._add_bias(y)


UPSAMPLES = ("transpose", "nearest", "bilinear")


class ResizeConv(Conv):
  """x2 resize then a 3x3 stride-1 convolution (padding 1): Odena et al. 2016's cure for
  the checkerboard of transposed convolutions (`model.upsample` nearest / bilinear).

  Called as `ConvTranspose` is (its kernel_size, strides, padding and output_padding are
  ignored); the kernel is a plain conv's (kh, kw, in, out) with its init.
  """
  method: str = "nearest"
  output_padding: int = 0  # ConvTranspose's signature; unused.

  @nn.compact
  def __call__(self, x):
    n, h, w, c = x.shape
    x = jax.image.resize(x.astype(self.dtype), (n, 2 * h, 2 * w, c), method=self.method)
    kernel = self.param("kernel", kernel_init(self.init_type, self.init_gain),
                        (3, 3, c, self.features), jnp.float32).astype(self.dtype)
    return self._add_bias(conv_ops.conv2d(x, kernel, stride=1, padding=1,
                                          impl=self.conv_impl))


class BatchNorm(nn.Module):
  """Batch norm with PyTorch's semantics (momentum 0.1, eps 1e-5, affine, running stats).

  Normalises with the biased batch variance but, like PyTorch, folds the UNBIASED variance
  (n / (n - 1)) into `running_var`; Flax's nn.BatchNorm folds the biased one, which differs by
  4/3 at the 2x2 innermost level of a U-Net at batch 1. With `axis_name` the statistics are
  over the global batch (all devices), so results do not depend on the device count.
  """
  momentum: float = 0.1  # weight of the new batch statistics, PyTorch convention.
  epsilon: float = 1e-5
  axis_name: Optional[str] = None
  init_gain: float = 0.02  # scale ~ N(1, init_gain)

  @nn.compact
  def __call__(self, x, *, train: bool):
    features = x.shape[-1]
    scale = self.param("scale", scale_init(self.init_gain), (features,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
    running_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
    running_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
    x32 = x.astype(jnp.float32)
    if train:
      reduce_axes = tuple(range(x.ndim - 1))
      mean = jnp.mean(x32, reduce_axes)
      count = x.size // features
      if self.axis_name is not None:
        mean = lax.pmean(mean, self.axis_name)
        count = count * lax.psum(1, self.axis_name)
      var = jnp.mean(jnp.square(x32 - mean), reduce_axes)
      if self.axis_name is not None:
        var = lax.pmean(var, self.axis_name)
      if self.is_mutable_collection("batch_stats") and not self.is_initializing():
        unbiased_var = var * count / max(count - 1, 1)
        running_mean.value = (1 - self.momentum) * running_mean.value + self.momentum * mean
        running_var.value = (1 - self.momentum) * running_var.value + self.momentum * unbiased_var
    else:
      mean, var = running_mean.value, running_var.value
    y = (x32 - mean) * lax.rsqrt(var + self.epsilon) * scale + bias
    return y.astype(x.dtype)


class InstanceNorm(nn.Module):
  """Instance norm as the reference builds it: no affine parameters, no running statistics."""
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train  # the same in both modes.
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=(1, 2), keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=(1, 2), keepdims=True)
    return ((x32 - mean) * lax.rsqrt(var + self.epsilon)).astype(x.dtype)


class Identity(nn.Module):
  """No normalisation."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train
    return x


def make_norm(norm: str, axis_name: Optional[str] = None,
              init_gain: float = 0.02) -> Callable[..., nn.Module]:
  """Returns a factory of the norm layer named `norm` ('batch', 'instance' or 'none')."""
  if norm == "batch":
    return functools.partial(BatchNorm, axis_name=axis_name, init_gain=init_gain)
  if norm == "instance":
    return InstanceNorm
  if norm == "none":
    return Identity
  raise ValueError(f"model.norm={norm!r} is not one of {NORMS}.")


def uses_bias(norm: str) -> bool:
  """The reference gives a norm-followed conv a bias only without batch norm's shift.

  The reference tests `norm_layer == InstanceNorm2d`, so with no norm at all its convs have no
  bias either; we keep the bias there (a conv with neither norm nor bias is a quirk, not a
  design), which only affects `norm='none'`.
  """
  return norm != "batch"


class Dropout(nn.Module):
  """Dropout with one mask per example, drawn from the example's GLOBAL index.

  Flax's nn.Dropout draws one mask for the whole local batch, so a model sharded over devices
  would see other masks than on one device. Here the mask of example i depends only on the
  'dropout' rng and `example_ids[i]`, whatever the device count.
  """
  rate: float

  @nn.compact
  def __call__(self, x, *, deterministic: bool, example_ids: Optional[Array] = None):
    if deterministic or self.rate == 0.0:
      return x
    key = self.make_rng("dropout")
    if example_ids is None:
      example_ids = jnp.arange(x.shape[0])
    keep = 1.0 - self.rate
    masks = jax.vmap(lambda i: jax.random.bernoulli(
        jax.random.fold_in(key, i), keep, x.shape[1:]))(example_ids)
    return jnp.where(masks, x / keep, 0).astype(x.dtype)


class LayerDefs(NamedTuple):
  """What a network hands its blocks: layer factories with its dtype, impl, init and axis."""
  conv: ModuleDef  # Conv(features, kernel_size, strides, padding, use_bias=...)
  up_conv: ModuleDef  # x2 up: ConvTranspose(...) (+ output_padding) or ResizeConv
  norm: ModuleDef  # norm(name=...)(x, train=...)
  use_bias: bool  # whether a conv followed by `norm` has a bias (`uses_bias`)


def layer_defs(*, norm: str, axis_name: Optional[str], dtype: Any, conv_impl: str,
               init_type: str, init_gain: float, upsample: str = "transpose") -> LayerDefs:
  """The `LayerDefs` of a network with these fields."""
  common = {"dtype": dtype, "conv_impl": conv_impl, "init_type": init_type,
            "init_gain": init_gain}
  if upsample == "transpose":
    up_conv = functools.partial(ConvTranspose, **common)
  elif upsample in UPSAMPLES:
    up_conv = functools.partial(ResizeConv, method=upsample, **common)
  else:
    raise ValueError(f"model.upsample={upsample!r} is not one of {UPSAMPLES}.")
  return LayerDefs(conv=functools.partial(Conv, **common), up_conv=up_conv,
                   norm=make_norm(norm, axis_name, init_gain), use_bias=uses_bias(norm))
