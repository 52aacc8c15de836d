"""A tiny workdir holding fresh weights (no training: cheap), for the tests of eval, predict,
export and the Translator.

The running batch-norm statistics are gathered on random images (a few forward passes in
train mode) and the last up-convolution is scaled up, so that running mode gives varied
outputs rather than the near-constant ones of a fresh network.
"""

import functools

import jax
import numpy as np

from configs import default
from pix2pix_jax import checkpoints
from pix2pix_jax import models
from pix2pix_jax import step as step_lib


def _gather_running_statistics(config, variables, steps: int = 40):
  generator = models.create_generator(config.model)

  @jax.jit
  def update(variables, images, rng):
    _, updates = generator.apply(variables, images, train=True, rngs={"dropout": rng},
                                 mutable=["batch_stats"])
    return {"params": variables["params"], "batch_stats": updates["batch_stats"]}
  rng = np.random.default_rng(0)
  size = config.data.crop_size
  for step in range(steps):
    images = rng.uniform(-1, 1, (4, size, size, config.model.input_channels)).astype(np.float32)
    variables = update(variables, images, jax.random.key(step))
  variables = jax.device_get(variables)
  up_conv = variables["params"]["unet"]["up_conv"]
  up_conv["kernel"] = up_conv["kernel"] * 20.0
  return variables


def make(workdir: str, cache_dir: str, **overrides) -> str:
  """Writes the `tiny` config's fresh weights into `workdir` (a weights-only checkpoint)."""
  config = default.get_config("tiny")
  config.data.cache_dir = cache_dir
  for key, value in overrides.items():
    functools.reduce(lambda node, part: node[part], key.split(".")[:-1], config)[
        key.split(".")[-1]] = value
  state = step_lib.create_train_state(config, jax.random.key(0))
  generator_variables = _gather_running_statistics(config, state.generator.variables)
  return checkpoints.save_weights(workdir, config, generator_variables,
                                  jax.device_get(state.discriminator.variables))
