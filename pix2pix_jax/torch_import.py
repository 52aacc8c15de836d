"""Importing the PyTorch reference's pix2pix weights (junyanz/pytorch-CycleGAN-and-pix2pix).

The reference saves each network's `state_dict`: a flat dict from dotted module paths to
tensors. Its layout follows the module nesting:

  UnetGenerator       `model` is the outermost UnetSkipConnectionBlock; each block's `model`
                      is an nn.Sequential:
                        outermost  [downconv, submodule, uprelu, upconv, tanh]
                        middle     [downrelu, downconv, downnorm, submodule, uprelu, upconv,
                                    upnorm(, dropout)]
                        innermost  [downrelu, downconv, uprelu, upconv, upnorm]
                      so the outermost down-conv is `model.model.0.weight` and the next level's
                      down-conv `model.model.1.model.1.weight`.
  NLayerDiscriminator `model.N`: conv, LeakyReLU, then (conv, norm, LeakyReLU) per layer, conv.
  PixelDiscriminator  `net.N`: conv, LeakyReLU, conv, norm, LeakyReLU, conv.
  ResnetGenerator     `model.N`, one nn.Sequential: pad, conv, norm, ReLU (0-3), two (conv,
                      norm, ReLU) downsamplings (4-9), the n ResnetBlocks (10 ...), each a
                      `conv_block` Sequential [pad, conv, norm, ReLU, (dropout,) pad, conv,
                      norm], two (conv-transpose, norm, ReLU) upsamplings, pad, conv, tanh.

Conv2d weights (out, in, kh, kw) become our (kh, kw, in, out) kernels; ConvTranspose2d weights
(in, out, kh, kw) become `w.transpose(2, 3, 0, 1)[::-1, ::-1]` (see layers.ConvTranspose).
Batch norm's weight / bias / running_mean / running_var become scale / bias / mean / var;
`num_batches_tracked` is ignored, and so are running statistics of instance norms (older
reference versions saved them; the reference's own loader drops them too). With
`model.norm='none'` the reference's convs have no bias where ours have one: those are zero.

torch is needed only to read `.pth` files (`load_state_dict`); the conversion takes any dict
of arrays.
"""

import dataclasses
import os
import pickle
from typing import Any, Callable, Mapping, Optional

from absl import logging
from flax import traverse_util
import ml_collections
import numpy as np

from pix2pix_jax import checkpoints
from pix2pix_jax import configuration
from pix2pix_jax import models
from pix2pix_jax import step as step_lib

StateDict = Mapping[str, Any]
_LISTED = 8  # keys listed per kind of mismatch in an error message.


@dataclasses.dataclass(frozen=True)
class Layer:
  """One of our modules and the reference module it corresponds to."""
  flax_path: tuple[str, ...]  # module path inside 'params' / 'batch_stats'
  torch_prefix: str  # the reference module's state_dict prefix, e.g. 'model.model.0'
  kind: str  # 'conv', 'conv_transpose' or 'norm'
  always_bias: bool = False  # a conv the reference gives a bias whatever the norm


@dataclasses.dataclass(frozen=True)
class _Entry:
  """How one of our variables is filled: from a state_dict key, or with zeros (key None)."""
  torch_key: Optional[str]
  torch_shape: tuple[int, ...]
  to_flax: Callable[[np.ndarray], np.ndarray]


def _unet_level_prefix(depth: int) -> str:
  """The state_dict prefix of the U-Net block at `depth` (0 = outermost)."""
  # The outermost block holds its submodule at index 1, the middle blocks at index 3.
  return "model.model" + "".join(".1.model" if d == 0 else ".3.model" for d in range(depth))


def generator_layers(num_downs: int) -> list[Layer]:
  """The U-Net's layers with their reference counterparts, outermost level first."""
  layers = []
  for depth in range(num_downs):
    flax_path = ("unet",) + ("submodule",) * depth
    prefix = _unet_level_prefix(depth)
    if depth == 0:
      indices = {"down_conv": 0, "up_conv": 3}
    elif depth == num_downs - 1:
      indices = {"down_conv": 1, "up_conv": 3, "up_norm": 4}
    else:
      indices = {"down_conv": 1, "down_norm": 2, "up_conv": 5, "up_norm": 6}
    for name, index in indices.items():
      kind = {"down_conv": "conv", "up_conv": "conv_transpose"}.get(name, "norm")
      layers.append(Layer(flax_path + (name,), f"{prefix}.{index}", kind,
                          always_bias=depth == 0 and name == "up_conv"))
  return layers


def resnet_generator_layers(n_blocks: int, dropout: bool) -> list[Layer]:
  """The ResnetGenerator's layers with their reference counterparts, input side first."""
  layers = [Layer(("conv_in",), "model.1", "conv"), Layer(("norm_in",), "model.2", "norm")]
  for i in range(2):  # downsamplings at 4 and 7
    layers += [Layer((f"down_{i}",), f"model.{4 + 3 * i}", "conv"),
               Layer((f"down_norm_{i}",), f"model.{5 + 3 * i}", "norm")]
  second = 6 if dropout else 5  # a block's second conv comes after the dropout.
  for i in range(n_blocks):
    prefix = f"model.{10 + i}.conv_block"
    for j, index in enumerate((1, second)):
      layers += [Layer((f"block_{i}", f"conv_{j}"), f"{prefix}.{index}", "conv"),
                 Layer((f"block_{i}", f"norm_{j}"), f"{prefix}.{index + 1}", "norm")]
  up = 10 + n_blocks
  for i in range(2):
    layers += [Layer((f"up_{i}",), f"model.{up + 3 * i}", "conv_transpose"),
               Layer((f"up_norm_{i}",), f"model.{up + 3 * i + 1}", "norm")]
  layers.append(Layer(("conv_out",), f"model.{up + 7}", "conv", always_bias=True))
  return layers


def discriminator_layers(n_layers: int) -> list[Layer]:
  """The PatchGAN's layers: NLayerDiscriminator for n_layers >= 1, PixelDiscriminator for 0."""
  if n_layers == 0:
    return [Layer(("conv_0",), "net.0", "conv", always_bias=True),
            Layer(("conv_1",), "net.2", "conv"), Layer(("norm_1",), "net.3", "norm"),
            Layer(("conv_2",), "net.5", "conv")]
  layers = [Layer(("conv_0",), "model.0", "conv", always_bias=True)]
  for n in range(1, n_layers + 1):  # (conv, norm, LeakyReLU) from index 2 on.
    layers += [Layer((f"conv_{n}",), f"model.{3 * n - 1}", "conv"),
               Layer((f"norm_{n}",), f"model.{3 * n}", "norm")]
  last = n_layers + 1
  layers.append(Layer((f"conv_{last}",), f"model.{3 * last - 1}", "conv", always_bias=True))
  return layers


def _conv_kernel(w: np.ndarray) -> np.ndarray:
  return w.transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)


def _conv_transpose_kernel(w: np.ndarray) -> np.ndarray:
  return w.transpose(2, 3, 0, 1)[::-1, ::-1]  # (in, out, kh, kw) -> flipped (kh, kw, in, out)


def _same(w: np.ndarray) -> np.ndarray:
  return w


def _layer_entries(layer: Layer, norm: str, template: dict) -> dict[tuple[str, ...], _Entry]:
  """{(collection, *flax_path, leaf): entry} for one layer; `template` is our flat shapes."""
  entries = {}
  if layer.kind == "norm":
    if norm == "batch":
      for collection, leaf, torch_leaf in (("params", "scale", "weight"),
                                           ("params", "bias", "bias"),
                                           ("batch_stats", "mean", "running_mean"),
                                           ("batch_stats", "var", "running_var")):
        path = (collection, *layer.flax_path, leaf)
        entries[path] = _Entry(f"{layer.torch_prefix}.{torch_leaf}", template[path], _same)
    return entries  # instance and none norms have no variables.
  kernel = ("params", *layer.flax_path, "kernel")
  kh, kw, features_in, features_out = template[kernel]
  if layer.kind == "conv":
    entries[kernel] = _Entry(f"{layer.torch_prefix}.weight",
                             (features_out, features_in, kh, kw), _conv_kernel)
  else:
    entries[kernel] = _Entry(f"{layer.torch_prefix}.weight",
                             (features_in, features_out, kh, kw), _conv_transpose_kernel)
  bias = ("params", *layer.flax_path, "bias")
  # The reference's use_bias: only instance norm (it tests the norm layer's type).
  if layer.always_bias or norm == "instance":
    entries[bias] = _Entry(f"{layer.torch_prefix}.bias", template[bias], _same)
  elif bias in template:  # norm='none': our conv has a bias, the reference's none.
    entries[bias] = _Entry(None, template[bias], _same)
  return entries


def _numpy(value: Any) -> np.ndarray:
  """A float32 numpy copy of a numpy array or a torch tensor."""
  if hasattr(value, "detach"):  # a torch tensor (maybe bfloat16, which numpy lacks).
    value = value.detach().cpu().float().numpy()
  return np.asarray(value, np.float32)


def _shape_of(value: Any) -> tuple[int, ...]:
  return tuple(value.shape if hasattr(value, "shape") else np.shape(value))


def _flat_shapes(variables: Any) -> dict[tuple[str, ...], tuple[int, ...]]:
  return {path: tuple(leaf.shape) for path, leaf in traverse_util.flatten_dict(
      {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}).items()}


def _natural(key: str) -> list[tuple[int, Any]]:
  """Sort key putting 'model.2' before 'model.11'."""
  return [(0, int(part)) if part.isdigit() else (1, part)
          for part in key.replace(" ", ".").split(".")]


def _listing(title: str, items: list[str]) -> str:
  items = sorted(items, key=_natural)
  more = f" and {len(items) - _LISTED} more" if len(items) > _LISTED else ""
  return f"{title} ({len(items)}): " + ", ".join(items[:_LISTED]) + more


def _is_ignored(key: str, norm: str, norm_prefixes: set[str]) -> bool:
  """num_batches_tracked anywhere; the running statistics of an instance norm."""
  prefix, _, leaf = key.rpartition(".")
  if leaf == "num_batches_tracked":
    return True
  return norm == "instance" and prefix in norm_prefixes and leaf in ("running_mean",
                                                                     "running_var")


def _mismatches(state_dict: StateDict, entries: dict, norm: str, layers: list[Layer]
                ) -> list[str]:
  """Missing, unexpected and mis-shaped keys, one listing per kind that occurs."""
  expected = {e.torch_key: e.torch_shape for e in entries.values() if e.torch_key}
  norm_prefixes = {layer.torch_prefix for layer in layers if layer.kind == "norm"}
  missing = set(expected) - set(state_dict)
  unexpected = [k for k in state_dict
                if k not in expected and not _is_ignored(k, norm, norm_prefixes)]
  shapes = [f"{k} {_shape_of(state_dict[k])} != {expected[k]}"
            for k in set(expected) & set(state_dict) if _shape_of(state_dict[k]) != expected[k]]
  return [_listing(title, items) for title, items in (
      ("missing keys", missing), ("unexpected keys", unexpected),
      ("wrong shapes (file != expected)", shapes)) if items]


def _convert(state_dict: StateDict, layers: list[Layer], norm: str, template_variables: Any,
             *, network: str, described_config: str, file_hint: str, source: str) -> dict:
  """Our {'params', 'batch_stats'} from `state_dict`, after checking every key and shape."""
  template = _flat_shapes(template_variables)
  entries = {}
  for layer in layers:
    entries.update(_layer_entries(layer, norm, template))
  if set(entries) != set(template):  # a bug in the layer tables, not in the file.
    raise AssertionError(f"Unmapped {network} variables: {sorted(set(template) ^ set(entries))}")
  problems = _mismatches(state_dict, entries, norm, layers)
  if problems:
    hint = f" The file looks like {file_hint}." if file_hint else ""
    raise configuration.ConfigError(
        f"{source} does not fit the {network} of this config ({described_config}): "
        + "; ".join(problems) + "." + hint)
  flat = {}
  for path, entry in entries.items():
    if entry.torch_key is None:
      flat[path] = np.zeros(entry.torch_shape, np.float32)
    else:
      flat[path] = np.ascontiguousarray(entry.to_flax(_numpy(state_dict[entry.torch_key])))
  variables = traverse_util.unflatten_dict(flat)
  return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def _templates(config: ml_collections.ConfigDict) -> Any:
  """Shapes of the generator's and discriminator's variables for `config` (nothing computed)."""
  return step_lib.abstract_train_state(config)


def _check_supported(config: ml_collections.ConfigDict) -> None:
  configuration.validate(config)
  if not config.model.skip_connections:
    raise configuration.ConfigError(
        "model.skip_connections=False (the encoder-decoder ablation) has no counterpart in the "
        "PyTorch reference; import with model.skip_connections=True.")
  upsample = checkpoints.architecture_value(config, "model.upsample")
  if upsample != "transpose":
    raise configuration.ConfigError(
        f"model.upsample={upsample!r} (resize, then a 3x3 convolution) has no counterpart in "
        "the PyTorch reference, whose generators upsample with transposed convolutions: "
        "import with model.upsample='transpose'.")


def _describe(config: ml_collections.ConfigDict, keys: tuple[str, ...]) -> str:
  return ", ".join(f"{key}={configuration.lookup(config, key)!r}" for key in keys)


def _shape(state_dict: StateDict, key: str) -> Optional[tuple[int, ...]]:
  return _shape_of(state_dict[key]) if key in state_dict else None


def _file_norm(state_dict: StateDict, norm_conv_bias: str) -> str:
  """The norm a reference state_dict was built with, from a conv that has a bias only then."""
  if norm_conv_bias in state_dict:
    return "instance"
  return "batch" if any(k.endswith(".running_mean") for k in state_dict) else "none"


def describe_resnet_file(state_dict: StateDict) -> str:
  """What a reference ResnetGenerator state_dict looks like in our keys ('' if not one)."""
  first = _shape(state_dict, "model.1.weight")
  if not first or len(first) != 4 or first[2:] != (7, 7):
    return ""
  n_blocks = 0
  while f"model.{10 + n_blocks}.conv_block.1.weight" in state_dict:
    n_blocks += 1
  last = _shape(state_dict, f"model.{17 + n_blocks}.weight") or (None,)
  dropout = "model.10.conv_block.6.weight" in state_dict
  return (f"model.generator='resnet_{n_blocks}blocks', model.ngf={first[0]}, "
          f"model.norm={_file_norm(state_dict, 'model.1.bias')!r}, model.dropout={dropout}, "
          f"model.input_channels={first[1]}, model.output_channels={last[0]}")


def describe_generator_file(state_dict: StateDict) -> str:
  """What a reference generator state_dict looks like in our config keys ('' if not one)."""
  resnet = describe_resnet_file(state_dict)
  if resnet:
    return resnet
  first = _shape(state_dict, "model.model.0.weight")
  last = _shape(state_dict, "model.model.3.weight")
  if not first or not last or len(first) != 4 or len(last) != 4:
    return ""
  levels = 0
  while any(k.startswith(_unet_level_prefix(levels) + ".") for k in state_dict):
    levels += 1
  return (f"model.num_downs={levels}, model.ngf={first[0]}, "
          f"model.norm={_file_norm(state_dict, 'model.model.0.bias')!r}, "
          f"model.input_channels={first[1]}, model.output_channels={last[1]}")


def describe_discriminator_file(state_dict: StateDict) -> str:
  """What a reference PatchGAN state_dict looks like in our config keys ('' if unknown)."""
  pixel = "net.0.weight" in state_dict
  first = _shape(state_dict, "net.0.weight" if pixel else "model.0.weight")
  if not first or len(first) != 4:
    return ""
  prefix = "net." if pixel else "model."
  convs = [k for k in state_dict if k.startswith(prefix) and k.endswith(".weight")
           and len(_shape_of(state_dict[k])) == 4]
  d_layers = 0 if pixel else len(convs) - 2
  norm = _file_norm(state_dict, prefix + "2.bias")
  return (f"model.d_layers={d_layers}, model.ndf={first[0]}, model.norm={norm!r}, "
          f"{first[1]} input channels")


def describe_file(state_dict: StateDict) -> str:
  """'a generator with ...' or 'a discriminator with ...' in our config keys; '' if neither."""
  generator, discriminator = (describe_generator_file(state_dict),
                              describe_discriminator_file(state_dict))
  if generator:
    return f"a generator with {generator}"
  return f"a discriminator with {discriminator}" if discriminator else ""


def generator_variables(state_dict: StateDict, config: ml_collections.ConfigDict, *,
                        source: str = "The generator state_dict") -> dict:
  """The generator's variables ({'params', 'batch_stats'}) for `config` from a reference
  state_dict: a U-Net (unet_256, unet_128, ...) or a ResnetGenerator (resnet_6blocks,
  resnet_9blocks, whose keys depend on model.dropout, the reference's --no_dropout).

  `state_dict` maps the reference's keys to numpy arrays or torch tensors; every key and
  shape is checked against `config.model` (ConfigError listing the mismatches, naming
  `source`, e.g. the file).
  """
  _check_supported(config)
  n_blocks = models.resnet_blocks(config.model.get("generator", "unet"))
  if n_blocks:
    layers = resnet_generator_layers(n_blocks, config.model.dropout)
    described = ("model.generator", "model.ngf", "model.norm", "model.dropout",
                 "model.input_channels", "model.output_channels")
  else:
    layers = generator_layers(config.model.num_downs)
    described = ("model.num_downs", "model.ngf", "model.norm", "model.input_channels",
                 "model.output_channels")
  return _convert(
      state_dict, layers, config.model.norm, _templates(config).generator.variables,
      network="generator", source=source, file_hint=describe_file(state_dict),
      described_config=_describe(config, described))


def discriminator_variables(state_dict: StateDict, config: ml_collections.ConfigDict, *,
                            source: str = "The discriminator state_dict") -> dict:
  """The PatchGAN variables for `config` from a reference state_dict (basic, n_layers, pixel).

  The reference's `basic` D is model.d_layers=3, `n_layers` any d_layers >= 1, `pixel`
  d_layers=0. Its input channels follow model.input_channels, output_channels and
  loss.conditional, as in training.
  """
  _check_supported(config)
  layers = discriminator_layers(config.model.d_layers)
  return _convert(
      state_dict, layers, config.model.norm, _templates(config).discriminator.variables,
      network="discriminator", source=source,
      file_hint=describe_file(state_dict),
      described_config=_describe(config, ("model.d_layers", "model.ndf", "model.norm",
                                          "loss.conditional")))


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """The state_dict in a reference `.pth` file, as float32 numpy arrays (needs torch).

  Read with `torch.load(map_location='cpu', weights_only=True)`, so a file cannot run code.
  A `module.` prefix (a network saved inside nn.DataParallel) is dropped.
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("Reading PyTorch .pth files needs torch: "
                      "pip install -r requirements-torch.txt") from e
  try:
    loaded = torch.load(os.path.expanduser(path), map_location="cpu", weights_only=True)
  except (pickle.UnpicklingError, RuntimeError) as e:  # not a torch file, or not weights only
    raise configuration.ConfigError(
        f"{path} is not a state_dict that torch.load(weights_only=True) reads (a whole pickled "
        f"model, or not a .pth file): {str(e).splitlines()[0][:200]}") from e
  if not isinstance(loaded, Mapping) or not all(
      isinstance(v, torch.Tensor) for v in loaded.values()):
    raise configuration.ConfigError(
        f"{path} does not hold a state_dict (a dict of tensors), as the reference's "
        "latest_net_G.pth does.")
  state_dict = {k: _numpy(v) for k, v in loaded.items()}
  if state_dict and all(k.startswith("module.") for k in state_dict):
    state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
  return state_dict


def import_torch_weights(workdir: str, config: ml_collections.ConfigDict,
                         generator_path: str, discriminator_path: Optional[str] = None) -> str:
  """Writes a weights-only workdir from reference `.pth` files; returns its absolute path.

  Training from it fine-tunes from step 0 with fresh optimizer states; a discriminator that
  is not given starts from its usual initialisation. Nothing is written when a file does not
  fit the config or `workdir` already holds checkpoints.
  """
  checkpoint_dir = os.path.join(os.path.expanduser(workdir), "checkpoints")
  if os.path.isdir(checkpoint_dir) and os.listdir(checkpoint_dir):
    raise configuration.ConfigError(
        f"{workdir} already holds checkpoints: import into a new --workdir.")
  g_vars = generator_variables(load_state_dict(generator_path), config, source=generator_path)
  d_vars = None
  if discriminator_path:
    d_vars = discriminator_variables(load_state_dict(discriminator_path), config,
                                     source=discriminator_path)
  workdir = checkpoints.save_weights(workdir, config, g_vars, d_vars)
  logging.info("Imported %s%s into %s.", generator_path,
               f" and {discriminator_path}" if discriminator_path else "", workdir)
  return workdir
