"""U-Net generator and PatchGAN discriminator, as in pix2pix (Isola et al. 2017).

Layer for layer the PyTorch reference (junyanz/pytorch-CycleGAN-and-pix2pix `unet_256` /
`unet_128`, `basic` / `n_layers` / `pixel` discriminators): same biases, paddings, init and
batch-norm semantics, so parameter counts and receptive fields match exactly.

Variables are `{'params', 'batch_stats'}`; no module keeps state between calls. Every module
takes `train`: with `train=True` batch norm normalises with the statistics of the given batch
(reduced over the named device axis when `axis_name` is set) and dropout is on. Running averages
are updated only when the caller makes `batch_stats` mutable, so inference in the paper's
"train mode" never changes the stored statistics.
"""

import functools
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from pix2pix_jax import conv_ops

Array = jax.Array
NORMS = ("batch", "instance", "none")
DROPOUT_PLACEMENTS = ("pytorch", "lua")

conv_init = nn.initializers.normal(stddev=0.02)  # the reference's init_weights('normal', 0.02)


def _scale_init(key, shape, dtype=jnp.float32):
  """Batch-norm scale ~ N(1, 0.02), as the reference."""
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


class Conv(nn.Module):
  """A 2-D convolution with PyTorch's symmetric zero padding; kernel (kh, kw, in, out)."""
  features: int
  kernel_size: int = 4
  strides: int = 2
  padding: int = 1
  use_bias: bool = True
  dtype: Any = jnp.float32
  conv_impl: str = "auto"  # how weight gradients are computed (conv_ops); same parameters.

  def _kernel(self, in_features: int) -> jax.Array:
    k = self.kernel_size
    kernel = self.param("kernel", conv_init, (k, k, in_features, self.features), jnp.float32)
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
  `w.transpose(2, 3, 0, 1)[::-1, ::-1]`.
  """

  @nn.compact
  def __call__(self, x):
    y = conv_ops.conv_transpose2d(x.astype(self.dtype), self._kernel(x.shape[-1]),
                                  stride=self.strides, padding=self.padding,
                                  impl=self.conv_impl)
    return self._add_bias(y)


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

  @nn.compact
  def __call__(self, x, *, train: bool):
    features = x.shape[-1]
    scale = self.param("scale", _scale_init, (features,), jnp.float32)
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


def make_norm(norm: str, axis_name: Optional[str] = None) -> Callable[..., nn.Module]:
  """Returns a factory of the norm layer named `norm` ('batch', 'instance' or 'none')."""
  if norm == "batch":
    return functools.partial(BatchNorm, axis_name=axis_name)
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


class UNetBlock(nn.Module):
  """One level of the reference's UnetSkipConnectionBlock, with the levels below it inside.

  `channels` holds (outer, inner) feature counts from this level down to the innermost one;
  `dropout_levels` the depths (0 = outermost) whose decoder conv is followed by dropout.
  """
  channels: Sequence[tuple[int, int]]
  out_features: int
  norm: str
  axis_name: Optional[str]
  skip_connections: bool
  dropout_levels: tuple[int, ...]
  depth: int = 0
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, *, train: bool, example_ids=None):
    outermost = self.depth == 0
    innermost = self.depth == len(self.channels) - 1
    outer, inner = self.channels[self.depth]
    norm = make_norm(self.norm, self.axis_name)
    bias = uses_bias(self.norm)
    conv = functools.partial(Conv, dtype=self.dtype, conv_impl=self.conv_impl)

    h = x if outermost else nn.leaky_relu(x, 0.2)
    h = conv(inner, use_bias=bias, name="down_conv")(h)
    if not (outermost or innermost):
      h = norm(name="down_norm")(h, train=train)
    if not innermost:
      h = UNetBlock(
          channels=self.channels, out_features=inner, norm=self.norm, axis_name=self.axis_name,
          skip_connections=self.skip_connections, dropout_levels=self.dropout_levels,
          depth=self.depth + 1, dtype=self.dtype, conv_impl=self.conv_impl, name="submodule")(
              h, train=train, example_ids=example_ids)
    h = nn.relu(h)
    h = ConvTranspose(self.out_features, use_bias=outermost or bias, dtype=self.dtype,
                      conv_impl=self.conv_impl, name="up_conv")(h)
    if outermost:
      return jnp.tanh(h)
    h = norm(name="up_norm")(h, train=train)
    if self.depth in self.dropout_levels:
      h = Dropout(0.5)(h, deterministic=not train, example_ids=example_ids)
    if self.skip_connections:
      h = jnp.concatenate([x, h], axis=-1)
    return h


def unet_channels(num_downs: int, ngf: int, output_channels: int) -> list[tuple[int, int]]:
  """(outer, inner) features of each U-Net level, outermost first, as the reference's unet_*."""
  if num_downs < 5:
    raise ValueError(f"model.num_downs={num_downs} must be >= 5 (the reference's U-Net).")
  return ([(output_channels, ngf), (ngf, ngf * 2), (ngf * 2, ngf * 4), (ngf * 4, ngf * 8)]
          + [(ngf * 8, ngf * 8)] * (num_downs - 4))


def dropout_levels(num_downs: int, placement: str) -> tuple[int, ...]:
  """Depths whose decoder output gets 50% dropout.

  'pytorch': the num_downs - 5 ngf*8 levels just outside the innermost one (for unet_256:
  decoder blocks 2-4 counted from the bottleneck). 'lua' (phillipi/pix2pix): the innermost
  three decoder layers, the bottleneck's own up-conv included (blocks 1-3).
  """
  innermost = num_downs - 1
  if placement == "pytorch":
    return tuple(range(4, innermost))
  if placement == "lua":
    return tuple(d for d in range(innermost - 2, innermost + 1) if d >= 1)
  raise ValueError(
      f"model.dropout_placement={placement!r} is not one of {DROPOUT_PLACEMENTS}.")


class UNetGenerator(nn.Module):
  """The pix2pix U-Net: 4x4 stride-2 convs down, 4x4 stride-2 transposed convs up, tanh out.

  A (crop // 2**num_downs)-pixel bottleneck; with `skip_connections=False` it is the paper's
  encoder-decoder ablation (same layers, decoder convs see only the level below).
  """
  num_downs: int = 8
  ngf: int = 64
  output_channels: int = 3
  norm: str = "batch"
  use_dropout: bool = True
  dropout_placement: str = "pytorch"
  skip_connections: bool = True
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, *, train: bool, example_ids=None):
    # Without skip connections the up-convs simply see fewer input channels.
    channels = unet_channels(self.num_downs, self.ngf, self.output_channels)
    levels = dropout_levels(self.num_downs, self.dropout_placement) if self.use_dropout else ()
    y = UNetBlock(
        channels=tuple(channels), out_features=self.output_channels, norm=self.norm,
        axis_name=self.axis_name, skip_connections=self.skip_connections,
        dropout_levels=levels, dtype=self.dtype, conv_impl=self.conv_impl, name="unet")(
            x, train=train, example_ids=example_ids)
    return y.astype(jnp.float32)


class PatchDiscriminator(nn.Module):
  """The PatchGAN: one logit per overlapping patch (no norm and no sigmoid on the last layer).

  n_layers 0 is the reference's PixelDiscriminator (1x1 patches); n >= 1 its NLayerDiscriminator
  with receptive field 16, 34, 70, 142, 286 for n = 1..5 (n = 3 is the paper's 70x70).
  """
  ndf: int = 64
  n_layers: int = 3
  norm: str = "batch"
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, *, train: bool):
    norm = make_norm(self.norm, self.axis_name)
    bias = uses_bias(self.norm)
    conv = functools.partial(Conv, dtype=self.dtype, conv_impl=self.conv_impl)
    if self.n_layers == 0:
      h = nn.leaky_relu(conv(self.ndf, 1, 1, 0, name="conv_0")(x), 0.2)
      h = conv(self.ndf * 2, 1, 1, 0, use_bias=bias, name="conv_1")(h)
      h = nn.leaky_relu(norm(name="norm_1")(h, train=train), 0.2)
      # The reference's PixelDiscriminator gives its last conv a bias only without batch norm.
      return conv(1, 1, 1, 0, use_bias=bias, name="conv_2")(h).astype(jnp.float32)
    if self.n_layers < 0:
      raise ValueError(f"model.d_layers={self.n_layers} must be >= 0.")
    h = nn.leaky_relu(conv(self.ndf, name="conv_0")(x), 0.2)
    for n in range(1, self.n_layers + 1):
      strides = 2 if n < self.n_layers else 1
      features = self.ndf * min(2 ** n, 8)
      h = conv(features, strides=strides, use_bias=bias, name=f"conv_{n}")(h)
      h = nn.leaky_relu(norm(name=f"norm_{n}")(h, train=train), 0.2)
    return conv(1, strides=1, name=f"conv_{self.n_layers + 1}")(h).astype(jnp.float32)


def compute_dtype(model_config, dtype: Any = None) -> Any:
  """`dtype` if given, else the config's `model.dtype` (float32 when the key is absent)."""
  if dtype is not None:
    return dtype
  return jnp.dtype(model_config.get("dtype", "float32"))


def create_generator(model_config, *, axis_name: Optional[str] = None,
                     dtype: Any = None) -> UNetGenerator:
  """The generator the config describes (`config.model`)."""
  dtype = compute_dtype(model_config, dtype)
  return UNetGenerator(
      num_downs=model_config.num_downs, ngf=model_config.ngf,
      output_channels=model_config.output_channels, norm=model_config.norm,
      use_dropout=model_config.dropout, dropout_placement=model_config.dropout_placement,
      skip_connections=model_config.skip_connections, axis_name=axis_name, dtype=dtype,
      conv_impl=model_config.get("conv_impl", "auto"))


def create_discriminator(model_config, *, axis_name: Optional[str] = None,
                         dtype: Any = None) -> PatchDiscriminator:
  """The discriminator the config describes (`config.model`)."""
  dtype = compute_dtype(model_config, dtype)
  return PatchDiscriminator(ndf=model_config.ndf, n_layers=model_config.d_layers,
                            norm=model_config.norm, axis_name=axis_name, dtype=dtype,
                            conv_impl=model_config.get("conv_impl", "auto"))
