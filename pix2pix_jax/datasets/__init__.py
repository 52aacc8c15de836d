"""Datasets: built once into `data.cache_dir`, read as random-access sources.

`get_data_sources(data_config, seed)` returns {'train': source, 'test': source}: a
source has `len()` and `source[i]` -> {'A': PNG bytes, 'B': PNG bytes, 'name': bytes}.
A is the rainy (input) image and B the clean (target) one; `input_pipeline` decodes.
"""

import os
import shutil
import tempfile
import time
from typing import Any, Callable

from absl import logging
import ml_collections
import tensorflow_datasets as tfds

from pix2pix_jax.datasets import synthetic_rain

_DATASET_INFO = "dataset_info.json"  # written last by TFDS: marks a complete dataset.


def build_once(builder_cls: type[tfds.core.DatasetBuilder],
               builder_config: tfds.core.BuilderConfig, cache_dir: str) -> str:
  """Builds the dataset into `cache_dir` unless it is there; returns its folder.

  The build runs in a temporary folder inside `cache_dir` that is renamed into place,
  so no process ever sees half a dataset and a failed build leaves nothing behind.
  When two processes build at once, the first rename wins and the other is dropped.
  """
  final_dir = os.path.join(cache_dir, builder_cls.name, builder_config.name,
                           str(builder_cls.VERSION))
  if os.path.exists(os.path.join(final_dir, _DATASET_INFO)):
    return final_dir
  os.makedirs(cache_dir, exist_ok=True)
  tmp_dir = tempfile.mkdtemp(prefix=f".tmp-{builder_config.name}-", dir=cache_dir)
  try:
    logging.info("Building dataset %s/%s into %s (first use)...", builder_cls.name,
                 builder_config.name, final_dir)
    start = time.perf_counter()
    builder = builder_cls(data_dir=tmp_dir, config=builder_config)
    builder.download_and_prepare(
        download_dir=os.path.join(tmp_dir, "downloads"),
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    os.makedirs(os.path.dirname(final_dir), exist_ok=True)
    try:
      os.rename(os.fspath(builder.data_path), final_dir)
    except OSError:
      if not os.path.exists(os.path.join(final_dir, _DATASET_INFO)):
        raise
      logging.info("Another process built %s first; using its copy.", final_dir)
    else:
      logging.info("Built dataset %s/%s in %.1f s.", builder_cls.name,
                   builder_config.name, time.perf_counter() - start)
  finally:
    shutil.rmtree(tmp_dir, ignore_errors=True)
  return final_dir


def _image_bytes_sources(dataset_dir: str) -> dict[str, Any]:
  """Random-access train/test sources of a built dataset; images left PNG-encoded."""
  builder = tfds.builder_from_directory(dataset_dir)
  decoders = {"A": tfds.decode.SkipDecoding(), "B": tfds.decode.SkipDecoding()}
  return {split: builder.as_data_source(split, decoders=decoders)
          for split in ("train", "test")}


def _synthetic_rain(data_config: ml_collections.ConfigDict, seed: int) -> dict[str, Any]:
  builder_config = synthetic_rain.make_config(data_config, seed)
  cache_dir = os.path.expanduser(data_config.cache_dir)
  return _image_bytes_sources(
      build_once(synthetic_rain.SyntheticRain, builder_config, cache_dir))


# data.source -> function(data_config, seed) returning {'train': ..., 'test': ...}.
SOURCES: dict[str, Callable[[ml_collections.ConfigDict, int], dict[str, Any]]] = {
    "synthetic_rain": _synthetic_rain,
}


def get_data_sources(data_config: ml_collections.ConfigDict, seed: int) -> dict[str, Any]:
  """Returns {'train': source, 'test': source} for `data_config.source`, built if needed."""
  if data_config.source not in SOURCES:
    raise ValueError(
        f"Unknown data.source={data_config.source!r}; known: {', '.join(SOURCES)}.")
  return SOURCES[data_config.source](data_config, seed)
