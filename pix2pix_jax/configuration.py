"""Checks a config before anything runs: each bad value is a one-line error naming its key."""

import os

import ml_collections

from pix2pix_jax import conv_ops
from pix2pix_jax import inference
from pix2pix_jax import layers
from pix2pix_jax import losses
from pix2pix_jax import metrics
from pix2pix_jax import models

DIRECTIONS = ("AtoB", "BtoA")
PREPROCESS = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
LR_POLICIES = ("linear", "step", "plateau", "cosine")
LAYOUTS = ("auto", "aligned", "folders")
ON_BAD_FILE = ("error", "skip")
TEST_SPLITS = ("test_a", "test_b")
DTYPES = ("float32", "bfloat16")
SYNTHETIC_SPLITS = ("auto", "regions", "photos")


class ConfigError(ValueError):
  """A config value that cannot work; the message names the key and says what would."""


class DataError(ConfigError):
  """Input data that cannot be used; the message lists every problem with its file.

  `report` holds the same problems as data (see `datasets.prepare`), for data_report.json.
  """

  def __init__(self, message: str, report: dict | None = None):
    super().__init__(message)
    self.report = report or {}


def make_folder(path: str, name: str, remedy: str, *, writable: bool = False) -> None:
  """Creates the folder `path` (the value of option `name`); a one-line ConfigError naming it,
  and ending with `remedy`, if it is a file, cannot be created or (`writable`) written."""
  if os.path.exists(path) and not os.path.isdir(path):
    raise ConfigError(f"{name}={path} is a file, not a folder: {remedy}.")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise ConfigError(f"{name}={path}: cannot create the folder ({e.strerror or e}); "
                      f"{remedy}.") from None
  if writable and not os.access(path, os.W_OK | os.X_OK):
    raise ConfigError(f"{name}={path}: the folder cannot be written; {remedy}.")


def _check(ok: bool, message: str):
  if not ok:
    raise ConfigError(message)


def lookup(tree, dotted_key: str):
  """tree['a']['b'] for 'a.b' in a ConfigDict or a dict; None where a part is missing."""
  for part in dotted_key.split("."):
    if not isinstance(tree, (dict, ml_collections.ConfigDict)) or part not in tree:
      return None
    tree = tree[part]
  return tree


def _one_of(config, key: str, allowed, prefix: str = ""):
  value = lookup(config, key)
  _check(value in allowed, f"{prefix}{key}={value!r} is not one of {tuple(allowed)}.")


def discriminator_output_size(crop_size: int, d_layers: int) -> int:
  """Side of the PatchGAN's logit map for a crop_size input (30 for 256 with 3 layers)."""
  if d_layers == 0:
    return crop_size
  size = crop_size
  for _ in range(d_layers):  # 4x4 stride-2 pad-1 convs halve the side.
    size //= 2
  return size - 2  # two 4x4 stride-1 pad-1 convs each take one pixel off.


def validate_data_choices(data: ml_collections.ConfigDict) -> None:
  """Raises ConfigError on a data.* value that is not a known choice (no file is read)."""
  for key, allowed in (("preprocess", PREPROCESS), ("layout", LAYOUTS),
                       ("on_bad_file", ON_BAD_FILE), ("test_split", TEST_SPLITS),
                       ("direction", DIRECTIONS)):
    _one_of(data, key, allowed, prefix="data.")
  if "synthetic" in data:
    _one_of(data.synthetic, "split", SYNTHETIC_SPLITS, prefix="data.synthetic.")
  _check(0 < data.test_fraction < 1,
         f"data.test_fraction={data.test_fraction} must be in (0, 1).")
  _check(data.max_dataset_size >= 0,
         f"data.max_dataset_size={data.max_dataset_size} must be >= 0 (0: all).")
  for key in ("input_pattern", "target_pattern"):
    _check(data[key].count("{}") == 1,
           f"data.{key}={data[key]!r} must contain '{{}}' once (where the part of the file "
           "name that a pair shares goes, e.g. 'rain-{}').")
  _check((data.input_dir, data.input_pattern) != (data.target_dir, data.target_pattern),
         f"data.input_dir and data.target_dir are both {data.input_dir!r} with the same "
         f"pattern {data.input_pattern!r}: each file would be its own partner; give the "
         "inputs and targets different folders or patterns (e.g. 'rain-{}', 'norain-{}').")


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Raises ConfigError on the first invalid value; returns the config unchanged."""
  for key in ("num_train_steps", "batch_size", "log_every_steps", "checkpoint_every_steps"):
    _check(int(config[key]) >= 1, f"{key}={config[key]!r} must be >= 1.")
  _check(config.decay_steps >= 0, f"decay_steps={config.decay_steps} must be >= 0.")
  _one_of(config, "model.norm", layers.NORMS)
  _one_of(config, "model.dropout_placement", models.DROPOUT_PLACEMENTS)
  _one_of(config, "loss.gan", losses.GAN_LOSSES)
  validate_data_choices(config.data)
  _one_of(config, "inference.norm_mode", inference.CONFIG_NORM_MODES)
  if lookup(config, "eval.protocol") is not None:  # older configs lack it: raindrop.
    _one_of(config, "eval.protocol", metrics.PROTOCOLS)
  if lookup(config, "inference.ensemble_transforms") is not None:  # older: dihedral.
    _one_of(config, "inference.ensemble_transforms", inference.ENSEMBLE_TRANSFORMS)
  _one_of(config, "model.conv_impl", conv_ops.CONV_IMPLS)
  _one_of(config, "model.dtype", DTYPES)
  model, data = config.model, config.data
  _check(model.num_downs >= 5,
         f"model.num_downs={model.num_downs} must be >= 5 (8 = unet_256, 7 = unet_128).")
  for key in ("ngf", "ndf", "input_channels", "output_channels"):
    _check(model[key] >= 1, f"model.{key}={model[key]!r} must be >= 1.")
  _check(model.d_layers >= 0, f"model.d_layers={model.d_layers} must be >= 0.")
  _validate_parity(config)
  multiple, why = models.size_multiple(model)
  _check(data.crop_size >= multiple and data.crop_size % multiple == 0,
         f"data.crop_size={data.crop_size} must be a positive multiple of {why}.")
  _check(data.load_size >= data.crop_size,
         f"data.load_size={data.load_size} must be >= data.crop_size={data.crop_size}.")
  _check(discriminator_output_size(data.crop_size, model.d_layers) >= 1,
         f"model.d_layers={model.d_layers} is too deep for data.crop_size={data.crop_size}: "
         f"the discriminator would output no logits; use a larger crop or fewer layers.")
  _check(config.loss.l1_weight >= 0, f"loss.l1_weight={config.loss.l1_weight} must be >= 0.")
  _check(config.loss.gan != "none" or config.loss.l1_weight > 0,
         "loss.gan='none' with loss.l1_weight=0 leaves the generator nothing to learn.")
  _validate_evaluation(config, multiple, why)
  return config


def _validate_parity(config: ml_collections.ConfigDict) -> None:
  """model.generator / init_type / init_gain and optim.lr_policy and its keys (absent in
  older configs: the defaults)."""
  model, optim = config.model, config.optim
  if "generator" in model:
    _one_of(model, "generator", models.GENERATORS, prefix="model.")
  if "upsample" in model:
    _one_of(model, "upsample", layers.UPSAMPLES, prefix="model.")
  if "init_type" in model:
    _one_of(model, "init_type", layers.INIT_TYPES, prefix="model.")
    _check(model.init_gain > 0, f"model.init_gain={model.init_gain} must be > 0.")
  _check(optim.lr > 0, f"optim.lr={optim.lr} must be > 0.")
  _check(0 <= optim.beta1 < 1, f"optim.beta1={optim.beta1} must be in [0, 1).")
  if "lr_policy" in optim:
    _one_of(optim, "lr_policy", LR_POLICIES, prefix="optim.")
    for key in ("lr_decay_steps", "plateau_steps"):
      _check(optim[key] >= 1, f"optim.{key}={optim[key]} must be >= 1.")


def _validate_evaluation(config: ml_collections.ConfigDict, multiple: int, why: str) -> None:
  """In-training validation and any-size inference keys (absent in older configs)."""
  eval_every_steps = config.get("eval_every_steps", 0)
  _check(eval_every_steps >= 0, f"eval_every_steps={eval_every_steps} must be >= 0 (0 = off).")
  _check(not eval_every_steps or config.get("eval_examples", 1) >= 1,
         f"eval_examples={config.get('eval_examples')} must be >= 1.")
  predict = config.get("predict")
  if predict is None:
    return
  _check(predict.tile_size >= multiple and predict.tile_size % multiple == 0,
         f"predict.tile_size={predict.tile_size} must be a positive multiple of {why}.")
  _check(0 <= predict.overlap < predict.tile_size // 2,
         f"predict.overlap={predict.overlap} must be in [0, predict.tile_size / 2).")
