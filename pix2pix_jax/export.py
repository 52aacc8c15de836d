"""The generator as a self-contained `jax.export` artifact (serialized StableHLO).

The artifact holds the weights as constants and takes float32 images in [-1, 1] of shape
(batch, M*h, M*w, input_channels), M = 2**model.num_downs (4 for the ResNets), with a
symbolic batch and symbolic h and w (any batch, any multiple of M); it returns (batch, M*h, M*w,
output_channels) in [-1, 1]. It is loaded and called with jax alone:

    from jax import export
    with open("generator.jax", "rb") as f:
      generate = export.deserialize(f.read())
    outputs = generate.call(images)

The norm mode is fixed at export and written beside the artifact in FILE.json (with the
shapes, value range and checkpoint): `running` uses the running averages (each image
independent of the batch); `paper` normalises with the statistics of the batch it is given
(call it with one image per batch, as the reference's test script) with dropout drawn from a
fixed key.
"""

import json
import os
from typing import Any, Mapping, Optional

from absl import logging
import jax
from jax import export as jax_export
import jax.numpy as jnp
import ml_collections

from pix2pix_jax import inference
from pix2pix_jax import models
from pix2pix_jax import translator as translator_lib


def export_generator(config: ml_collections.ConfigDict, variables: Mapping[str, Any], *,
                     norm_mode: str, seed: int = 0, ensemble: bool = False,
                     ensemble_transforms: str = inference.DEFAULT_ENSEMBLE_TRANSFORMS
                     ) -> jax_export.Exported:
  """The generator with `variables` baked in, exported with symbolic batch, height, width;
  with `ensemble`, the mean over the 8 flips and rotations is part of the function."""
  paper_mode = inference.check_norm_mode(norm_mode) == "paper"
  # With symbolic shapes conv_ops takes the plain XLA convolutions whatever model.conv_impl
  # says, so the artifact runs on any device it is loaded on.
  generator = models.create_generator(config.model)
  variables = jax.device_get({"params": variables["params"],
                              "batch_stats": variables.get("batch_stats", {})})

  def generate_one(images):
    return generator.apply(variables, images, train=paper_mode,
                           rngs={"dropout": jax.random.key(seed)})

  def generate(images):
    if ensemble:
      return inference.ensemble_mean(generate_one, images, xp=jnp,
                                     transforms=ensemble_transforms)
    return generate_one(images)
  multiple, _ = models.size_multiple(config.model)
  # The ResNets reflect-pad their (h, w) bottleneck by 1: it needs 2 pixels a side.
  resnet = models.resnet_blocks(config.model.get("generator", "unet"))
  constraints = ("h >= 2", "w >= 2") if resnet else ()
  shape = jax_export.symbolic_shape(
      f"b, {multiple}*h, {multiple}*w, {int(config.model.input_channels)}",
      constraints=constraints)
  return jax_export.export(jax.jit(generate))(jax.ShapeDtypeStruct(shape, jnp.float32))


def export_workdir(workdir: str, output: str, *, checkpoint: str = "latest",
                   overrides: Optional[Mapping[str, Any]] = None,
                   norm_mode: Optional[str] = None) -> dict[str, Any]:
  """Writes a workdir's generator to `output` and its description to `output`.json.

  Returns the description (norm mode, shapes, value range, checkpoint).
  """
  config, variables, description = translator_lib.load_workdir(workdir, checkpoint, overrides)
  norm_mode = inference.resolve_norm_mode(norm_mode or config.inference.norm_mode,
                                          config.batch_size)
  ensemble = bool(config.inference.get("ensemble", False))
  transforms = config.inference.get("ensemble_transforms",
                                    inference.DEFAULT_ENSEMBLE_TRANSFORMS)
  exported = export_generator(config, variables, norm_mode=norm_mode, ensemble=ensemble,
                              ensemble_transforms=transforms)
  output = os.path.abspath(os.path.expanduser(output))
  os.makedirs(os.path.dirname(output), exist_ok=True)
  with open(output, "wb") as f:
    f.write(exported.serialize())
  multiple, _ = models.size_multiple(config.model)
  info = {
      "format": "jax.export (StableHLO), load with jax.export.deserialize",
      "norm_mode": norm_mode,
      "ensemble": (f"mean over {transforms} ({len(inference.ensemble_indices(transforms))} "
                   "transforms, inside the function)" if ensemble else "off"),
      "input": f"float32 [batch, {multiple}*h, {multiple}*w, {config.model.input_channels}] "
               "in [-1, 1] (uint8 / 127.5 - 1)",
      "output": f"float32 [batch, {multiple}*h, {multiple}*w, "
                f"{config.model.output_channels}] in [-1, 1]",
      "size_multiple": multiple,
      "checkpoint": description,
      "jax_version": jax.__version__,
  }
  with open(output + ".json", "w") as f:
    json.dump(info, f, indent=2)
  logging.info("Exported the generator (%s norm mode) to %s (%d bytes).", norm_mode, output,
               os.path.getsize(output))
  return info
