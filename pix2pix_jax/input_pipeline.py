"""Input pipeline: the training step alone fixes its data.

Order. Each epoch is a seeded permutation of the example indices; global example
position p is example `permutation(epoch=p // n)[p % n]`. The global batch of step t
is positions [t*B, (t+1)*B) (B = config.batch_size), and process i of P takes the
contiguous part [t*B + i*B/P, t*B + (i+1)*B/P). The random crop and flip of position
p come from a generator seeded with (seed, p). So the batch of a step is the same
whatever the device, process or worker count, and resuming at step s is `ds[s:]`.

Preprocessing follows the reference's aligned dataset (data.preprocess): resize A and
B to load_size (`resize_and_crop`, PIL bicubic), or their width to load_size
(`scale_width`, `scale_width_and_crop`), or not at all (`crop`, `none`); then the same
random crop_size crop
and horizontal flip for both; scale to float32 [-1, 1]. Test images are brought to
crop_size without randomness (see `eval_geometry`).

A batch: {'input': float32 (b, crop, crop, C), 'target': float32 (b, crop, crop, C),
'index': int32 (b,)}, with index the global position (train) or example index (test).
"""

import atexit
from collections.abc import Iterator, Mapping
import dataclasses
import functools
import gc
import io
from typing import Any
import warnings
import weakref

from absl import flags
import grain
import ml_collections
import numpy as np
from PIL import Image

DIRECTIONS = ("AtoB", "BtoA")
PREPROCESS = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
SCALE_WIDTH = ("scale_width", "scale_width_and_crop")  # the same here (see train_geometry)
# Separate random streams derived from config.seed.
_ORDER_STREAM = 0
_AUGMENT_STREAM = 1


# ----------------------------------------------------------------------------------
# Order: step -> positions -> example indices.


@functools.lru_cache(maxsize=4)
def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  """The example order of `epoch` (a permutation of range(num_examples))."""
  permutation = np.random.default_rng([seed, _ORDER_STREAM, epoch]).permutation(
      num_examples)
  permutation.flags.writeable = False  # shared by the cache.
  return permutation


def example_index(position: int, num_examples: int, seed: int) -> int:
  """The example read at global example position `position`."""
  epoch, offset = divmod(position, num_examples)
  return int(epoch_permutation(num_examples, seed, epoch)[offset])


def local_batch_size(batch_size: int, process_count: int) -> int:
  """The per-process share of the global batch; raises if it does not divide."""
  if process_count < 1 or batch_size % process_count:
    raise ValueError(
        f"batch_size={batch_size} (the global batch) must be divisible by the process "
        f"count {process_count}.")
  return batch_size // process_count


def global_position(local_position: int, *, batch_size: int, process_index: int,
                    process_count: int) -> int:
  """Global example position of this process's `local_position`-th example."""
  local = batch_size // process_count
  step, offset = divmod(local_position, local)
  return step * batch_size + process_index * local + offset


# ----------------------------------------------------------------------------------
# Per-example preprocessing.


_HIGH_BIT_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I")  # grayscale of > 8 bits.


def eight_bit(image: Image.Image, *, name: str = "the image") -> Image.Image:
  """`image` with 8 bits per channel, the one rule for training, eval and predict.

  16-bit grayscale (PNG/TIFF, PIL modes I;16* and I) is scaled by its full range 65535;
  floating point ('F', e.g. a float32 TIFF) is taken as [0, 1] and refused outside it; an
  animated image keeps its first frame, with a warning. Other modes are returned as given.
  """
  if getattr(image, "n_frames", 1) > 1:
    warnings.warn(f"{name} has {image.n_frames} frames (an animation): only the first is "
                  "used.", stacklevel=2)
  if image.mode in _HIGH_BIT_DEPTH_MODES:
    scaled = np.asarray(image, np.float32) * np.float32(255 / 65535)
  elif image.mode == "F":
    values = np.asarray(image, np.float32)
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    if not (np.isfinite(values).all() and low >= 0 and high <= 1):
      raise ValueError(f"{name} is a floating-point image with values in [{low:g}, {high:g}]"
                       "; only [0, 1] is understood: save it as 8- or 16-bit.")
    scaled = values * np.float32(255)
  else:
    return image
  return Image.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8))


def decode(image: Any, channels: int) -> Image.Image:
  """A PIL image with `channels` (1 or 3) from encoded bytes, an array or a PIL image.

  Grayscale is expanded to RGB for 3 channels and colour turned grey for 1; alpha is
  dropped. 16-bit grayscale (PNG/TIFF) is scaled by its full range 65535 to [0, 255]
  and kept in float ('F') for 1 channel (rounded to 8 bits when expanded to 3).
  """
  if isinstance(image, (bytes, np.bytes_)):
    image = Image.open(io.BytesIO(image))
  elif isinstance(image, np.ndarray):
    image = Image.fromarray(image.squeeze(-1) if image.ndim == 3 and image.shape[-1] == 1
                            else image)
  elif not isinstance(image, Image.Image):
    raise TypeError(f"Cannot decode an image from {type(image).__name__}.")
  mode = {1: "L", 3: "RGB"}.get(channels)
  if mode is None:
    raise ValueError(f"model.input_channels/output_channels={channels}: must be 1 or 3.")
  if image.mode in _HIGH_BIT_DEPTH_MODES and channels == 1:
    scaled = np.asarray(image, np.float32) * np.float32(255 / 65535)
    return Image.fromarray(scaled, mode="F")
  image = eight_bit(image)
  return image if image.mode == mode else image.convert(mode)


def to_array(image: Image.Image) -> np.ndarray:
  """(H, W, C) array of a PIL image (uint8, or float32 for 'F')."""
  array = np.asarray(image)
  return array[..., None] if array.ndim == 2 else array


def resize(image: Image.Image, size: int | tuple[int, int]) -> np.ndarray:
  """(H, W, C) array of `image` resized to `size` (side, or (width, height)) with PIL
  bicubic, as the reference."""
  size = (size, size) if isinstance(size, int) else size
  if image.size != size:
    image = image.resize(size, Image.BICUBIC)
  return to_array(image)


def scale_width_size(width: int, height: int, target_width: int, min_height: int
                     ) -> tuple[int, int]:
  """(width, height) for `scale_width`: width to target_width, aspect kept, height at
  least min_height (the reference's __scale_width: int(max(w * h / w0, min)), truncated)."""
  return target_width, int(max(target_width * height / width, min_height))


def to_float(image: np.ndarray) -> np.ndarray:
  """[0, 255] (uint8, or float32 from 16-bit data) -> float32 [-1, 1]."""
  return image.astype(np.float32) * np.float32(1 / 127.5) - np.float32(1.0)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
  """The central size x size part of an (H, W, C) array at least that large."""
  h, w = image.shape[:2]
  top, left = (h - size) // 2, (w - size) // 2
  return image[top:top + size, left:left + size]


def random_crop_flip(images: list[np.ndarray], rng: np.random.Generator, *,
                     crop_size: int, flip: bool) -> list[np.ndarray]:
  """The same random crop (and horizontal flip, if `flip`) of each equal-sized image."""
  h, w = images[0].shape[:2]
  if min(h, w) < crop_size:
    raise ValueError(f"An image of {w}x{h} is smaller than data.crop_size={crop_size}.")
  top = int(rng.integers(0, h - crop_size + 1))
  left = int(rng.integers(0, w - crop_size + 1))
  mirror = flip and rng.random() < 0.5
  out = []
  for image in images:
    image = image[top:top + crop_size, left:left + crop_size]
    out.append(image[:, ::-1] if mirror else image)
  return out


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """The config values per-example preprocessing reads (a snapshot: later config
  changes do not reach a dataset already made)."""
  seed: int
  load_size: int
  crop_size: int
  flip: bool
  preprocess: str
  direction: str
  input_channels: int
  output_channels: int

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> "Preprocessing":
    data, model = config.data, config.model
    if data.get("preprocess", "resize_and_crop") not in PREPROCESS:
      raise ValueError(f"data.preprocess={data.preprocess!r} is not one of {PREPROCESS}.")
    if data.direction not in DIRECTIONS:
      raise ValueError(f"data.direction={data.direction!r} is not one of {DIRECTIONS}.")
    if not 0 < data.crop_size <= data.load_size:
      raise ValueError(f"data.crop_size={data.crop_size} must be in [1, data.load_size="
                       f"{data.load_size}].")
    return cls(seed=int(config.seed), load_size=int(data.load_size),
               crop_size=int(data.crop_size), flip=bool(data.flip),
               preprocess=data.get("preprocess", "resize_and_crop"),
               direction=data.direction, input_channels=int(model.input_channels),
               output_channels=int(model.output_channels))


def input_target(example: Mapping[str, Any], prep: Preprocessing):
  """Decoded (input, target) PIL images of a source example, per data.direction."""
  input_key, target_key = ("A", "B") if prep.direction == "AtoB" else ("B", "A")
  return (decode(example[input_key], prep.input_channels),
          decode(example[target_key], prep.output_channels))


def train_geometry(image: Image.Image, prep: Preprocessing) -> np.ndarray:
  """The training resize of data.preprocess (before the random crop).

  `scale_width_and_crop` is the reference's: width to load_size keeping the aspect, then
  the random crop. The reference's `scale_width` does not crop (whole images of varying
  height, batch 1 only); here batches need one size, so it crops too.
  """
  if prep.preprocess == "resize_and_crop":
    return resize(image, prep.load_size)
  if prep.preprocess in SCALE_WIDTH:
    return resize(image, scale_width_size(*image.size, prep.load_size, prep.crop_size))
  return to_array(image)  # crop, none: as stored.


def eval_geometry(image: Image.Image, prep: Preprocessing) -> np.ndarray:
  """A test image at crop_size x crop_size, deterministic: `resize_and_crop` resizes to
  crop_size, `scale_width` (and `scale_width_and_crop`) scales the width to crop_size and
  crops the centre, `crop`
  crops the centre, `none` keeps the image (crop_size square)."""
  if prep.preprocess == "resize_and_crop":
    return resize(image, prep.crop_size)
  if prep.preprocess in SCALE_WIDTH:
    image = resize(image, scale_width_size(*image.size, prep.crop_size, prep.crop_size))
  else:
    image = to_array(image)
  return center_crop(image, prep.crop_size)


def train_example(position: int, *, source, prep: Preprocessing) -> dict[str, np.ndarray]:
  """The preprocessed training example at global example position `position`."""
  example = source[example_index(position, len(source), prep.seed)]
  images = [train_geometry(image, prep) for image in input_target(example, prep)]
  rng = np.random.default_rng([prep.seed, _AUGMENT_STREAM, position])
  inputs, target = random_crop_flip(images, rng, crop_size=prep.crop_size, flip=prep.flip)
  return {"input": to_float(inputs), "target": to_float(target),
          "index": np.int32(position)}


def eval_example(index: int, *, source, prep: Preprocessing) -> dict[str, np.ndarray]:
  """The test example `index` at crop_size (see `eval_geometry`; no flip)."""
  inputs, target = (eval_geometry(image, prep)
                    for image in input_target(source[index], prep))
  return {"input": to_float(inputs), "target": to_float(target),
          "index": np.int32(index)}


# ----------------------------------------------------------------------------------
# Datasets and iterators.


def _check_not_empty(source):
  if not len(source):
    raise ValueError(f"The data source {source!r} is empty.")


def create_train_dataset(config: ml_collections.ConfigDict, sources_or_train_source, *,
                         process_index: int = 0, process_count: int = 1
                         ) -> grain.MapDataset:
  """A MapDataset whose element t is this process's batch of step t.

  Args:
    config: the full config (batch_size, seed, num_train_steps, data.*, model.*).
    sources_or_train_source: `datasets.get_data_sources`'s dict or its 'train' source.
    process_index: this process, in [0, process_count).
    process_count: processes sharing each global batch; must divide batch_size.

  Returns:
    A dataset of config.num_train_steps batches; resume at step s with `ds[s:]`.
  """
  source = sources_or_train_source
  if isinstance(source, Mapping):
    source = source["train"]
  local = local_batch_size(config.batch_size, process_count)
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} must be in [0, {process_count}).")
  _check_not_empty(source)
  to_global = functools.partial(global_position, batch_size=config.batch_size,
                                process_index=process_index, process_count=process_count)
  preprocess = functools.partial(train_example, source=source,
                                 prep=Preprocessing.from_config(config))
  return (grain.MapDataset.range(config.num_train_steps * local)
          .map(to_global)
          .map(preprocess)
          .batch(local))


def _mark_flags_parsed():
  """Lets grain read its absl flags' defaults where none were parsed (pytest, notebooks).

  Starting worker processes, grain reads its flags in this process (an error if flags
  were never parsed) and in the workers (which never parse any).
  """
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def _init_worker(worker_index: int, worker_count: int):
  del worker_index, worker_count
  _mark_flags_parsed()


class BatchIterator(Iterator[dict[str, np.ndarray]]):
  """Batches from a grain iterator; `close()` stops its threads and worker processes.

  Still open at exit, it is closed then, while the modules grain's cleanup needs still
  exist (cleaning up during interpreter teardown prints tracebacks).
  """

  _open = weakref.WeakSet()

  def __init__(self, iterator: grain.DatasetIterator):
    self._iterator = iterator
    BatchIterator._open.add(self)

  def __next__(self) -> dict[str, np.ndarray]:
    if self._iterator is None:
      raise ValueError("The batch iterator was closed.")
    return next(self._iterator)

  def close(self):
    """Stops reading; idempotent."""
    iterator, self._iterator = self._iterator, None
    if iterator is not None:
      iterator.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()


@atexit.register
def _close_open_iterators():
  for iterator in list(BatchIterator._open):  # pylint: disable=protected-access
    iterator.close()
  gc.collect()  # frees grain's iterators now rather than during teardown.


def train_batches(config: ml_collections.ConfigDict, train_source, *, start_step: int,
                  process_index: int = 0, process_count: int = 1
                  ) -> BatchIterator:
  """An iterator of this process's batches from step `start_step` on.

  Reads `data.prefetch` batches ahead in threads and, if `data.num_workers` > 0, in
  that many grain worker processes (then call it from under `if __name__ ==
  "__main__":`, as any spawned multiprocessing). Call `.close()` when done to stop
  them (or use it as a context manager); exit does it too.
  """
  dataset = create_train_dataset(config, train_source, process_index=process_index,
                                 process_count=process_count)
  if not 0 <= start_step <= len(dataset):
    raise ValueError(f"start_step={start_step} must be in [0, num_train_steps="
                     f"{len(dataset)}].")
  prefetch = max(int(config.data.prefetch), 0)
  dataset = dataset[start_step:].to_iter_dataset(
      grain.ReadOptions(num_threads=prefetch, prefetch_buffer_size=prefetch))
  if config.data.num_workers > 0:
    _mark_flags_parsed()
    dataset = dataset.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=int(config.data.num_workers),
                                     per_worker_buffer_size=max(prefetch, 1)),
        worker_init_fn=_init_worker)
  return BatchIterator(iter(dataset))


def eval_batches(config: ml_collections.ConfigDict, source, *, batch_size: int,
                 max_examples: int | None = None) -> Iterator[dict[str, np.ndarray]]:
  """Batches of the test examples in index order; the last one may be smaller.

  Args:
    config: the full config (data.*, model.*).
    source: a test source (`get_data_sources(...)['test']`).
    batch_size: examples per batch.
    max_examples: read only the first `max_examples` examples.
  """
  if batch_size < 1:
    raise ValueError(f"eval_batches: batch_size={batch_size} must be >= 1.")
  _check_not_empty(source)
  count = len(source) if max_examples is None else min(max_examples, len(source))
  preprocess = functools.partial(eval_example, source=source,
                                 prep=Preprocessing.from_config(config))
  dataset = (grain.MapDataset.range(count)
             .map(preprocess)
             .batch(batch_size))
  return (dataset[i] for i in range(len(dataset)))  # in this thread: nothing left running.
