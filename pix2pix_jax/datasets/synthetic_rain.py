"""TFDS builder of synthetic rain pairs: A (rainy) and B (clean) crops of photos.

The photos are scikit-image's colour photos (shipped in its wheel, so no download) or
the images in a folder (`data.path`). Whole photos are held out for the test split.
Each example is a random square crop of a random photo of its split, resized to
`image_size`, with rain rendered by `rain_renderer`. Everything is fixed by the
builder config (see `make_config`), whose name is a hash of all its parameters: any
change builds a new dataset next to the old one instead of reusing a stale one.

Written as array_record, with the images PNG-encoded by PIL: no TensorFlow needed.
"""

import dataclasses
import hashlib
import io
import json
import os

import ml_collections
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from pix2pix_jax.datasets import rain_renderer

RAIN = ("light", "heavy", "mixed")
# Rain kinds of an example, and how often each is drawn.
KIND_PROBS = {"streaks": 0.3, "drops": 0.3, "both": 0.4}

# scikit-image's colour photos: name -> (function in skimage.data, index in its result).
SKIMAGE_PHOTOS = {
    "astronaut": ("astronaut", None),
    "rocket": ("rocket", None),
    "motorcycle_left": ("stereo_motorcycle", 0),
    "motorcycle_right": ("stereo_motorcycle", 1),
    "hubble_deep_field": ("hubble_deep_field", None),
    "immunohistochemistry": ("immunohistochemistry", None),
    "retina": ("retina", None),
    "chelsea": ("chelsea", None),
    "coffee": ("coffee", None),
}
SKIMAGE_TRAIN = ("astronaut", "rocket", "motorcycle_left", "motorcycle_right",
                 "hubble_deep_field", "immunohistochemistry", "retina")
SKIMAGE_TEST = ("chelsea", "coffee")
SKIMAGE_PREFIX = "skimage:"  # photo references that are not file paths.

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
TEST_FRACTION = 0.1
_SPLIT_IDS = {"train": 0, "test": 1}  # separate random streams per split.


@dataclasses.dataclass(eq=False)
class SyntheticRainConfig(tfds.core.BuilderConfig):
  """Everything that determines the dataset's bytes (see `make_config`)."""
  image_size: int = 286
  num_train: int = 2000
  num_test: int = 100
  rain: str = "mixed"
  seed: int = 0
  train_photos: tuple[str, ...] = ()  # "skimage:NAME" or absolute file paths.
  test_photos: tuple[str, ...] = ()
  photos_fingerprint: str = ""  # names, sizes and mtimes of the files in data.path.


def list_folder_photos(folder: str) -> dict[str, tuple[str, ...]]:
  """Splits a folder's images into train and test; ~10% (at least 1) whole photos to test.

  The held-out photos are those whose file names hash lowest: the choice is fixed for
  a file, whatever the seed, and mostly stable when photos are added.
  """
  folder = os.path.abspath(os.path.expanduser(folder))
  if not os.path.isdir(folder):
    raise ValueError(f"data.path={folder!r}: no such folder (expected a folder of photos).")
  paths = sorted(
      os.path.join(folder, name) for name in os.listdir(folder)
      if name.lower().endswith(IMAGE_EXTENSIONS)
      and os.path.isfile(os.path.join(folder, name)))
  if len(paths) < 2:
    raise ValueError(
        f"data.path={folder!r} has {len(paths)} photos ({'/'.join(IMAGE_EXTENSIONS)}); "
        "synthetic_rain needs at least 2 (one is held out for the test split).")
  num_test = max(1, round(TEST_FRACTION * len(paths)))
  by_hash = sorted(paths, key=lambda p: hashlib.sha256(
      os.path.basename(p).encode()).hexdigest())
  test = set(by_hash[:num_test])
  return {"train": tuple(p for p in paths if p not in test),
          "test": tuple(p for p in paths if p in test)}


def _fingerprint(paths) -> str:
  """A hash of the files' names, sizes and modification times."""
  entries = []
  for path in paths:
    stat = os.stat(path)
    entries.append([os.path.basename(path), stat.st_size, stat.st_mtime_ns])
  return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def make_config(data_config: ml_collections.ConfigDict, seed: int) -> SyntheticRainConfig:
  """Returns the builder config for `data_config` (keys `path` and `synthetic.*`)."""
  synthetic = data_config.synthetic
  if synthetic.rain not in RAIN:
    raise ValueError(f"data.synthetic.rain={synthetic.rain!r}; known: {RAIN}.")
  for key in ("image_size", "num_train", "num_test"):
    if synthetic[key] < 1:
      raise ValueError(f"data.synthetic.{key}={synthetic[key]} must be positive.")
  if data_config.path:
    photos = list_folder_photos(data_config.path)
    fingerprint = _fingerprint(photos["train"] + photos["test"])
  else:
    photos = {"train": tuple(SKIMAGE_PREFIX + n for n in SKIMAGE_TRAIN),
              "test": tuple(SKIMAGE_PREFIX + n for n in SKIMAGE_TEST)}
    fingerprint = ""
  params = dict(
      version=str(SyntheticRain.VERSION), image_size=int(synthetic.image_size),
      num_train=int(synthetic.num_train), num_test=int(synthetic.num_test),
      rain=synthetic.rain, seed=int(seed), train_photos=photos["train"],
      test_photos=photos["test"], photos_fingerprint=fingerprint)
  digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
  del params["version"]
  return SyntheticRainConfig(
      name=f"{synthetic.rain}_{synthetic.image_size}px_{digest}",
      version=SyntheticRain.VERSION,
      description=f"{synthetic.rain} rain, {synthetic.image_size}px, seed {seed}.",
      **params)


def load_photo(ref: str) -> np.ndarray:
  """Returns the photo `ref` ("skimage:NAME" or a path) as uint8 (H, W, 3)."""
  if ref.startswith(SKIMAGE_PREFIX):
    import skimage.data  # pylint: disable=g-import-not-at-top  (slow import, build only)
    function, index = SKIMAGE_PHOTOS[ref[len(SKIMAGE_PREFIX):]]
    photo = getattr(skimage.data, function)()
    return np.ascontiguousarray(photo if index is None else photo[index])
  try:
    with Image.open(ref) as image:
      return np.asarray(image.convert("RGB"))
  except OSError as e:
    raise ValueError(f"Cannot read the photo {ref!r}: {e}") from e


def photo_name(ref: str) -> str:
  """A short name for a photo reference."""
  if ref.startswith(SKIMAGE_PREFIX):
    return ref[len(SKIMAGE_PREFIX):]
  return os.path.splitext(os.path.basename(ref))[0]


def random_crop(photo: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
  """A random square crop, its side uniform in [size, min(H, W)], resized to `size`."""
  h, w, _ = photo.shape
  short = min(h, w)
  side = int(rng.integers(min(size, short), short + 1))
  top = int(rng.integers(0, h - side + 1))
  left = int(rng.integers(0, w - side + 1))
  crop = Image.fromarray(photo[top:top + side, left:left + side])
  if side != size:
    crop = crop.resize((size, size), Image.BICUBIC)
  return np.asarray(crop)


def encode_png(image: np.ndarray) -> bytes:
  """PNG bytes of a uint8 image (fast compression: the build is CPU bound)."""
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
  return buffer.getvalue()


def make_example(photos: list[np.ndarray], names: list[str], rng: np.random.Generator,
                 *, image_size: int, rain: str) -> dict[str, object]:
  """One example: a crop of a random photo, clean (B) and rainy (A)."""
  which = int(rng.integers(len(photos)))
  clean = random_crop(photos[which], rng, image_size)
  style = rain if rain != "mixed" else str(rng.choice(rain_renderer.STYLES))
  kind = str(rng.choice(list(KIND_PROBS), p=list(KIND_PROBS.values())))
  rainy = rain_renderer.render_rain(clean, rng, style=style, kind=kind)
  return {"A": rainy, "B": clean, "name": f"{names[which]}_{style}_{kind}"}


class SyntheticRain(tfds.core.GeneratorBasedBuilder):
  """Synthetic rain pairs: A (rainy) and B (clean)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Streaks and raindrops on scikit-image or folder photos."}

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.image_size
    image = tfds.features.Image(shape=(size, size, 3), encoding_format="png")
    return tfds.core.DatasetInfo(
        builder=self,
        description="Synthetic rain pairs: A (rainy) and B (clean) crops of photos.",
        features=tfds.features.FeaturesDict(
            {"A": image, "B": image, "name": tfds.features.Text()}),
        supervised_keys=("A", "B"),
        disable_shuffling=True,  # example i of a split is at index i.
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download.
    config = self.builder_config
    return {
        "train": self._generate_examples("train", config.train_photos, config.num_train),
        "test": self._generate_examples("test", config.test_photos, config.num_test),
    }

  def _generate_examples(self, split, refs, count):
    config = self.builder_config
    photos = [load_photo(ref) for ref in refs]
    names = [photo_name(ref) for ref in refs]
    for index in range(count):
      rng = np.random.default_rng([config.seed, _SPLIT_IDS[split], index])
      example = make_example(photos, names, rng, image_size=config.image_size,
                             rain=config.rain)
      yield index, {"A": encode_png(example["A"]), "B": encode_png(example["B"]),
                    "name": f"{split}/{index:06d}_{example['name']}"}

  # The caller (datasets.get_data_sources) logs the build; TFDS's own prints name the
  # temporary build folder, which would mislead.
  def _log_download_bytes(self):
    pass

  def _log_download_done(self):
    pass
