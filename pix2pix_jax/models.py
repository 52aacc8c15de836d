"""U-Net and ResNet generators and the PatchGAN discriminator, as in pix2pix (Isola et al. 2017).

Layer for layer the PyTorch reference (junyanz/pytorch-CycleGAN-and-pix2pix `unet_256` /
`unet_128` / `resnet_6blocks` / `resnet_9blocks`, `basic` / `n_layers` / `pixel`
discriminators): same biases, paddings, init (`init_type`, `init_gain`) and batch-norm
semantics, so parameter counts and receptive fields match exactly.

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

GENERATORS = ("unet", "resnet_6blocks", "resnet_9blocks")
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
  if transposed:  # torch (in, out, kh, kw) -> ours, flipped as models.ConvTranspose.
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
  init_type: str = "normal"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x, *, train: bool, example_ids=None):
    outermost = self.depth == 0
    innermost = self.depth == len(self.channels) - 1
    outer, inner = self.channels[self.depth]
    norm = make_norm(self.norm, self.axis_name, self.init_gain)
    bias = uses_bias(self.norm)
    init = {"init_type": self.init_type, "init_gain": self.init_gain}
    conv = functools.partial(Conv, dtype=self.dtype, conv_impl=self.conv_impl, **init)

    h = x if outermost else nn.leaky_relu(x, 0.2)
    h = conv(inner, use_bias=bias, name="down_conv")(h)
    if not (outermost or innermost):
      h = norm(name="down_norm")(h, train=train)
    if not innermost:
      h = UNetBlock(
          channels=self.channels, out_features=inner, norm=self.norm, axis_name=self.axis_name,
          skip_connections=self.skip_connections, dropout_levels=self.dropout_levels,
          depth=self.depth + 1, dtype=self.dtype, conv_impl=self.conv_impl, **init,
          name="submodule")(h, train=train, example_ids=example_ids)
    h = nn.relu(h)
    h = ConvTranspose(self.out_features, use_bias=outermost or bias, dtype=self.dtype,
                      conv_impl=self.conv_impl, **init, name="up_conv")(h)
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
  init_type: str = "normal"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x, *, train: bool, example_ids=None):
    # Without skip connections the up-convs simply see fewer input channels.
    channels = unet_channels(self.num_downs, self.ngf, self.output_channels)
    levels = dropout_levels(self.num_downs, self.dropout_placement) if self.use_dropout else ()
    y = UNetBlock(
        channels=tuple(channels), out_features=self.output_channels, norm=self.norm,
        axis_name=self.axis_name, skip_connections=self.skip_connections,
        dropout_levels=levels, dtype=self.dtype, conv_impl=self.conv_impl,
        init_type=self.init_type, init_gain=self.init_gain, name="unet")(
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
  init_type: str = "normal"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x, *, train: bool):
    norm = make_norm(self.norm, self.axis_name, self.init_gain)
    bias = uses_bias(self.norm)
    conv = functools.partial(Conv, dtype=self.dtype, conv_impl=self.conv_impl,
                             init_type=self.init_type, init_gain=self.init_gain)
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


class ResnetBlock(nn.Module):
  """The reference's ResnetBlock: x + (reflect-pad 1, 3x3 conv, norm, ReLU, [dropout 0.5],
  reflect-pad 1, 3x3 conv, norm)."""
  features: int
  norm: str
  axis_name: Optional[str]
  use_dropout: bool
  dtype: Any = jnp.float32
  conv_impl: str = "auto"
  init_type: str = "normal"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x, *, train: bool, example_ids=None):
    norm = make_norm(self.norm, self.axis_name, self.init_gain)
    conv = functools.partial(
        Conv, self.features, kernel_size=3, strides=1, padding=0,
        use_bias=uses_bias(self.norm), dtype=self.dtype, conv_impl=self.conv_impl,
        init_type=self.init_type, init_gain=self.init_gain)
    h = nn.relu(norm(name="norm_0")(conv(name="conv_0")(reflect_pad(x, 1)), train=train))
    if self.use_dropout:
      h = Dropout(0.5)(h, deterministic=not train, example_ids=example_ids)
    h = norm(name="norm_1")(conv(name="conv_1")(reflect_pad(h, 1)), train=train)
    return x + h


class ResnetGenerator(nn.Module):
  """The reference's ResnetGenerator (resnet_6blocks / resnet_9blocks, after Johnson et al.).

  Reflect-pad 3, 7x7 conv (ngf), norm, ReLU; two 3x3 stride-2 convs (ngf*2, ngf*4), each
  with norm and ReLU; `n_blocks` ResnetBlocks at ngf*4; two 3x3 stride-2 transposed convs
  (padding 1, output_padding 1) back to ngf, each with norm and ReLU; reflect-pad 3, 7x7
  conv to output_channels with a bias, tanh. Inner convs have a bias as `uses_bias(norm)`.
  Height and width must be multiples of 4.
  """
  n_blocks: int = 9
  ngf: int = 64
  output_channels: int = 3
  norm: str = "batch"
  use_dropout: bool = True
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  conv_impl: str = "auto"
  init_type: str = "normal"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x, *, train: bool, example_ids=None):
    norm = make_norm(self.norm, self.axis_name, self.init_gain)
    common = {"dtype": self.dtype, "conv_impl": self.conv_impl, "init_type": self.init_type,
              "init_gain": self.init_gain}
    bias = uses_bias(self.norm)
    h = Conv(self.ngf, 7, 1, 0, use_bias=bias, **common, name="conv_in")(reflect_pad(x, 3))
    h = nn.relu(norm(name="norm_in")(h, train=train))
    for i in range(2):
      h = Conv(self.ngf * 2 ** (i + 1), 3, 2, 1, use_bias=bias, **common, name=f"down_{i}")(h)
      h = nn.relu(norm(name=f"down_norm_{i}")(h, train=train))
    for i in range(self.n_blocks):
      h = ResnetBlock(self.ngf * 4, self.norm, self.axis_name, self.use_dropout, **common,
                      name=f"block_{i}")(h, train=train, example_ids=example_ids)
    for i in range(2):
      h = ConvTranspose(self.ngf * 2 ** (1 - i), 3, 2, 1, use_bias=bias, output_padding=1,
                        **common, name=f"up_{i}")(h)
      h = nn.relu(norm(name=f"up_norm_{i}")(h, train=train))
    h = Conv(self.output_channels, 7, 1, 0, **common, name="conv_out")(reflect_pad(h, 3))
    return jnp.tanh(h).astype(jnp.float32)


def resnet_blocks(generator: str) -> int:
  """6 or 9 for 'resnet_6blocks' / 'resnet_9blocks'; 0 for the U-Net."""
  if generator not in GENERATORS:
    raise ValueError(f"model.generator={generator!r} is not one of {GENERATORS}.")
  return {"resnet_6blocks": 6, "resnet_9blocks": 9}.get(generator, 0)


def size_multiple(model_config) -> tuple[int, str]:
  """(m, why): image sides must be multiples of m for the configured generator."""
  if resnet_blocks(model_config.get("generator", "unet")):
    return 4, f"the {model_config.generator} generator's two stride-2 levels: 4"
  multiple = 2 ** int(model_config.num_downs)
  return multiple, f"2**model.num_downs={multiple}"


def compute_dtype(model_config, dtype: Any = None) -> Any:
  """`dtype` if given, else the config's `model.dtype` (float32 when the key is absent)."""
  if dtype is not None:
    return dtype
  return jnp.dtype(model_config.get("dtype", "float32"))


def _init_args(model_config) -> dict[str, Any]:
  """model.init_type / init_gain (the reference's defaults where the keys are absent)."""
  return {"init_type": model_config.get("init_type", "normal"),
          "init_gain": float(model_config.get("init_gain", 0.02))}


# PatchGAN receptive field (pixels) by model.d_layers (0: PixelGAN).
RECEPTIVE_FIELDS = {0: 1, 1: 16, 2: 34, 3: 70, 4: 142, 5: 286}


def create_generator(model_config, *, axis_name: Optional[str] = None,
                     dtype: Any = None) -> nn.Module:
  """The generator the config describes (`config.model`): U-Net or ResNet."""
  dtype = compute_dtype(model_config, dtype)
  common = {"ngf": model_config.ngf, "output_channels": model_config.output_channels,
            "norm": model_config.norm, "use_dropout": model_config.dropout,
            "axis_name": axis_name, "dtype": dtype,
            "conv_impl": model_config.get("conv_impl", "auto"), **_init_args(model_config)}
  n_blocks = resnet_blocks(model_config.get("generator", "unet"))
  if n_blocks:
    return ResnetGenerator(n_blocks=n_blocks, **common)
  return UNetGenerator(
      num_downs=model_config.num_downs, dropout_placement=model_config.dropout_placement,
      skip_connections=model_config.skip_connections, **common)


def create_discriminator(model_config, *, axis_name: Optional[str] = None,
                         dtype: Any = None) -> PatchDiscriminator:
  """The discriminator the config describes (`config.model`)."""
  dtype = compute_dtype(model_config, dtype)
  return PatchDiscriminator(ndf=model_config.ndf, n_layers=model_config.d_layers,
                            norm=model_config.norm, axis_name=axis_name, dtype=dtype,
                            conv_impl=model_config.get("conv_impl", "auto"),
                            **_init_args(model_config))
