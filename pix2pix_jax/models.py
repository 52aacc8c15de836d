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

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from pix2pix_jax import layers

DROPOUT_PLACEMENTS = ("pytorch", "lua")
GENERATORS = ("unet", "resnet_6blocks", "resnet_9blocks")


class Network(nn.Module):
  """The fields every network shares; `layers()` turns them into its blocks' layer factories."""
  norm: str = "batch"
  axis_name: Optional[str] = None  # the device axis batch norm reduces over (None: local)
  dtype: Any = jnp.float32  # compute dtype; parameters and norms stay float32
  conv_impl: str = "auto"  # how each conv pass is computed (conv_ops); same parameters
  init_type: str = "normal"  # the reference's init_weights (layers.kernel_init)
  init_gain: float = 0.02
  upsample: str = "transpose"  # generators' x2 up: transpose | nearest | bilinear (+ 3x3 conv)

  def layers(self) -> layers.LayerDefs:
    return layers.layer_defs(norm=self.norm, axis_name=self.axis_name, dtype=self.dtype,
                             conv_impl=self.conv_impl, init_type=self.init_type,
                             init_gain=self.init_gain, upsample=self.upsample)


class UNetBlock(nn.Module):
  """One level of the reference's UnetSkipConnectionBlock, with the levels below it inside.

  `channels` holds (outer, inner) feature counts from this level down to the innermost one;
  `dropout_levels` the depths (0 = outermost) whose decoder conv is followed by dropout.
  """
  channels: Sequence[tuple[int, int]]
  out_features: int
  skip_connections: bool
  dropout_levels: tuple[int, ...]
  layer_defs: layers.LayerDefs
  depth: int = 0

  @nn.compact
  def __call__(self, x, *, train: bool, example_ids=None):
    outermost = self.depth == 0
    innermost = self.depth == len(self.channels) - 1
    outer, inner = self.channels[self.depth]
    conv, up_conv, norm, bias = self.layer_defs

    h = x if outermost else nn.leaky_relu(x, 0.2)
    h = conv(inner, use_bias=bias, name="down_conv")(h)
    if not (outermost or innermost):
      h = norm(name="down_norm")(h, train=train)
    if not innermost:
      h = UNetBlock(self.channels, inner, self.skip_connections, self.dropout_levels,
                    self.layer_defs, depth=self.depth + 1, name="submodule")(
                        h, train=train, example_ids=example_ids)
    h = nn.relu(h)
    h = up_conv(self.out_features, use_bias=outermost or bias, name="up_conv")(h)
    if outermost:
      return jnp.tanh(h)
    h = norm(name="up_norm")(h, train=train)
    if self.depth in self.dropout_levels:
      h = layers.Dropout(0.5)(h, deterministic=not train, example_ids=example_ids)
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


class UNetGenerator(Network):
  """The pix2pix U-Net: 4x4 stride-2 convs down, 4x4 stride-2 transposed convs up, tanh out.

  A (crop // 2**num_downs)-pixel bottleneck; with `skip_connections=False` it is the paper's
  encoder-decoder ablation (same layers, decoder convs see only the level below).
  """
  num_downs: int = 8
  ngf: int = 64
  output_channels: int = 3
  use_dropout: bool = True
  dropout_placement: str = "pytorch"
  skip_connections: bool = True

  @nn.compact
  def __call__(self, x, *, train: bool, example_ids=None):
    # Without skip connections the up-convs simply see fewer input channels.
    channels = unet_channels(self.num_downs, self.ngf, self.output_channels)
    levels = dropout_levels(self.num_downs, self.dropout_placement) if self.use_dropout else ()
    y = UNetBlock(tuple(channels), self.output_channels, self.skip_connections, levels,
                  self.layers(), name="unet")(x, train=train, example_ids=example_ids)
    return y.astype(jnp.float32)


class PatchDiscriminator(Network):
  """The PatchGAN: one logit per overlapping patch (no norm and no sigmoid on the last layer).

  n_layers 0 is the reference's PixelDiscriminator (1x1 patches); n >= 1 its NLayerDiscriminator
  with receptive field 16, 34, 70, 142, 286 for n = 1..5 (n = 3 is the paper's 70x70).
  """
  ndf: int = 64
  n_layers: int = 3

  @nn.compact
  def __call__(self, x, *, train: bool):
    conv, _, norm, bias = self.layers()
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
  use_dropout: bool
  layer_defs: layers.LayerDefs

  @nn.compact
  def __call__(self, x, *, train: bool, example_ids=None):
    conv, _, norm, bias = self.layer_defs
    def conv3x3(name):
      return conv(self.features, kernel_size=3, strides=1, padding=0, use_bias=bias, name=name)
    h = nn.relu(norm(name="norm_0")(conv3x3("conv_0")(layers.reflect_pad(x, 1)), train=train))
    if self.use_dropout:
      h = layers.Dropout(0.5)(h, deterministic=not train, example_ids=example_ids)
    h = norm(name="norm_1")(conv3x3("conv_1")(layers.reflect_pad(h, 1)), train=train)
    return x + h


class ResnetGenerator(Network):
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
  use_dropout: bool = True

  @nn.compact
  def __call__(self, x, *, train: bool, example_ids=None):
    defs = self.layers()
    conv, up_conv, norm, bias = defs
    h = conv(self.ngf, 7, 1, 0, use_bias=bias, name="conv_in")(layers.reflect_pad(x, 3))
    h = nn.relu(norm(name="norm_in")(h, train=train))
    for i in range(2):
      h = conv(self.ngf * 2 ** (i + 1), 3, 2, 1, use_bias=bias, name=f"down_{i}")(h)
      h = nn.relu(norm(name=f"down_norm_{i}")(h, train=train))
    for i in range(self.n_blocks):
      h = ResnetBlock(self.ngf * 4, self.use_dropout, defs, name=f"block_{i}")(
          h, train=train, example_ids=example_ids)
    for i in range(2):
      h = up_conv(self.ngf * 2 ** (1 - i), 3, 2, 1, use_bias=bias, output_padding=1,
                  name=f"up_{i}")(h)
      h = nn.relu(norm(name=f"up_norm_{i}")(h, train=train))
    h = conv(self.output_channels, 7, 1, 0, name="conv_out")(layers.reflect_pad(h, 3))
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
            "conv_impl": model_config.get("conv_impl", "auto"),
            "upsample": model_config.get("upsample", "transpose"), **_init_args(model_config)}
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
