"""pix2pix in JAX/Flax: paired image-to-image translation (Isola et al., CVPR 2017).

The public API (imported lazily, so `import pix2pix_jax.input_pipeline` stays light):
  train_and_evaluate(config, workdir[, init_from=W2])  train (or resume) a run into a workdir
  train_step(state, batch, rng, ...)   the pure pix2pix step (D, then G through the new D)
  UNetGenerator, ResnetGenerator, PatchDiscriminator  the networks (Flax Linen)
  make_generate_fn(generator)          jitted inference with an explicit norm_mode
  Translator.from_workdir(W, ...)      a trained generator as a function of uint8 images of
                                       any size (`translator(image)`)
The configs live in configs/default.py (`get_config(variant)`).
"""

import importlib

_EXPORTS = {
    "train_and_evaluate": "pix2pix_jax.train",
    "train_step": "pix2pix_jax.train",
    "create_train_state": "pix2pix_jax.train",
    "UNetGenerator": "pix2pix_jax.models",
    "ResnetGenerator": "pix2pix_jax.models",
    "PatchDiscriminator": "pix2pix_jax.models",
    "make_generate_fn": "pix2pix_jax.inference",
    "Translator": "pix2pix_jax.translator",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name in _EXPORTS:
    return getattr(importlib.import_module(_EXPORTS[name]), name)
  raise AttributeError(f"module 'pix2pix_jax' has no attribute {name!r}")
