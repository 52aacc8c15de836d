"""TFDS builder of synthetic rain pairs: A (rainy) and B (clean) crops of photos.

The photos are scikit-image's photographs of the world (shipped in its wheel, so no
download) or the images in a folder (`data.path`). The test split never shares pixels
with the training split, in one of two ways (`data.synthetic.split`):
  regions  every photo gives its left (1 - TEST_REGION) of columns to training and its
           right TEST_REGION to the test split: the same kind of photos on both sides,
           none of the test pixels seen in training (the default for the built-in photos
           and for folders of fewer than MIN_PHOTOS_TO_HOLD_OUT photos);
  photos   ~10% of the photos (at least 1) are held out whole (folders of many photos).
Each example is a random square crop of a random photo's region, its side uniform in
[size, min(MAX_ZOOM x size, region's shorter side)], resized to `size` (`image_size` for
training, `test_size` for the test split: the same zoom law on both sides), with rain
rendered by `rain_renderer` (streaks and drops; the veil and the cool tint only when
asked for). Everything is fixed by the builder config (see `make_config`), whose name is
a hash of all its parameters: any change builds a new dataset next to the old one
instead of reusing a stale one.

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

# scikit-image's photographs of the world: name -> (function in skimage.data, index in
# its result). Its other colour images (hubble_deep_field, immunohistochemistry, retina)
# are not photographs of the world; of the stereo pair only the left view is used (the
# right one shows the same scene, shifted by up to ~70 px: it would put test pixels into
# training across the region boundary).
SKIMAGE_PHOTOS = {
    "astronaut": ("astronaut", None),  # 512x512
    "chelsea": ("chelsea", None),  # 300x451
    "coffee": ("coffee", None),  # 400x600
    "motorcycle": ("stereo_motorcycle", 0),  # 500x741
    "rocket": ("rocket", None),  # 427x640
}
SKIMAGE_PREFIX = "skimage:"  # photo references that are not file paths.

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
SPLITS = ("auto", "regions", "photos")
TEST_FRACTION = 0.1  # split=photos: the share of whole photos held out.
TEST_REGION = 0.25  # split=regions: the right quarter of each photo is test pixels.
MIN_PHOTOS_TO_HOLD_OUT = 10  # split=auto: fewer photos -> regions.
MAX_ZOOM = 2.0  # a crop spans at most MAX_ZOOM x its stored side of the photo.
_SPLIT_IDS = {"train": 0, "test": 1}  # separate random streams per split.


@dataclasses.dataclass(eq=False)
class SyntheticRainConfig(tfds.core.BuilderConfig):
  """Everything that determines the dataset's bytes (see `make_config`)."""
  image_size: int = 286
  test_size: int = 96
  num_train: int = 2000
  num_test: int = 100
  rain: str = "mixed"
  veil: bool = False
  tint: bool = False
  seed: int = 0
  split: str = "regions"  # regions | photos (resolved from data.synthetic.split).
  train_photos: tuple[str, ...] = ()  # "skimage:NAME" or absolute file paths.
  test_photos: tuple[str, ...] = ()
  photos_fingerprint: str = ""  # names, sizes and mtimes of the files in data.path.


def folder_photos(folder: str) -> tuple[str, ...]:
  """The image files directly in `folder`, sorted by path."""
  folder = os.path.abspath(os.path.expanduser(folder))
  if not os.path.isdir(folder):
    raise ValueError(f"data.path={folder!r}: no such folder (expected a folder of photos).")
  paths = tuple(sorted(
      os.path.join(folder, name) for name in os.listdir(folder)
      if name.lower().endswith(IMAGE_EXTENSIONS)
      and os.path.isfile(os.path.join(folder, name))))
  if not paths:
    raise ValueError(
        f"data.path={folder!r} has no photos ({'/'.join(IMAGE_EXTENSIONS)}).")
  return paths


def hold_out_photos(paths: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
  """Splits photos into train and test; ~10% (at least 1) whole photos to test.

  The held-out photos are those whose file names hash lowest: the choice is fixed for
  a file, whatever the seed, and mostly stable when photos are added.
  """
  if len(paths) < 2:
    raise ValueError(
        f"data.synthetic.split=photos needs at least 2 photos in data.path (one is held "
        f"out for the test split); it has {len(paths)}. Use data.synthetic.split=regions.")
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


def resolve_split(split: str, num_photos: int) -> str:
  """data.synthetic.split with `auto` resolved: regions below MIN_PHOTOS_TO_HOLD_OUT."""
  if split not in SPLITS:
    raise ValueError(f"data.synthetic.split={split!r}; known: {SPLITS}.")
  if split == "auto":
    return "photos" if num_photos >= MIN_PHOTOS_TO_HOLD_OUT else "regions"
  return split


def make_config(data_config: ml_collections.ConfigDict, seed: int) -> SyntheticRainConfig:
  """Returns the builder config for `data_config` (keys `path` and `synthetic.*`)."""
  synthetic = data_config.synthetic
  if synthetic.rain not in RAIN:
    raise ValueError(f"data.synthetic.rain={synthetic.rain!r}; known: {RAIN}.")
  for key in ("image_size", "test_size", "num_train", "num_test"):
    if synthetic[key] < 1:
      raise ValueError(f"data.synthetic.{key}={synthetic[key]} must be positive.")
  if data_config.path:
    paths = folder_photos(data_config.path)
    fingerprint = _fingerprint(paths)
  else:
    paths = tuple(SKIMAGE_PREFIX + n for n in SKIMAGE_PHOTOS)
    fingerprint = ""
  split = resolve_split(synthetic.split, len(paths))
  photos = (hold_out_photos(paths) if split == "photos"
            else {"train": paths, "test": paths})
  params = dict(
      version=str(SyntheticRain.VERSION), image_size=int(synthetic.image_size),
      test_size=int(synthetic.test_size),
      num_train=int(synthetic.num_train), num_test=int(synthetic.num_test),
      rain=synthetic.rain, veil=bool(synthetic.veil), tint=bool(synthetic.tint),
      seed=int(seed), split=split, train_photos=photos["train"],
      test_photos=photos["test"], photos_fingerprint=fingerprint)
  digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
  del params["version"]
  return SyntheticRainConfig(
      name=f"{synthetic.rain}_{synthetic.image_size}px_{digest}",
      version=SyntheticRain.VERSION,
      description=(f"{synthetic.rain} rain, {synthetic.image_size}px (test "
                   f"{synthetic.test_size}px), split by {split}, seed {seed}."),
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


def region(photo: np.ndarray, split: str, how: str) -> np.ndarray:
  """The part of `photo` that `split` may use: all of it (split by photos), else its left
  1 - TEST_REGION (train) or right TEST_REGION (test) of columns."""
  if how == "photos":
    return photo
  boundary = int(round(photo.shape[1] * (1.0 - TEST_REGION)))
  return photo[:, :boundary] if split == "train" else photo[:, boundary:]


def random_crop(photo: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
  """A random square crop, its side uniform in [size, min(MAX_ZOOM x size, H, W)] (the
  shorter side where that is below `size`), resized to `size`."""
  h, w, _ = photo.shape
  short = min(h, w)
  side = int(rng.integers(min(size, short), min(short, int(MAX_ZOOM * size)) + 1))
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
                 *, image_size: int, rain: str, veil: bool = False, tint: bool = False
                 ) -> dict[str, object]:
  """One example: a crop of a random photo, clean (B) and rainy (A)."""
  which = int(rng.integers(len(photos)))
  clean = random_crop(photos[which], rng, image_size)
  style = rain if rain != "mixed" else str(rng.choice(rain_renderer.STYLES))
  kind = str(rng.choice(list(KIND_PROBS), p=list(KIND_PROBS.values())))
  rainy = rain_renderer.render_rain(clean, rng, style=style, kind=kind, veil=veil,
                                    tint=tint)
  return {"A": rainy, "B": clean, "name": f"{names[which]}_{style}_{kind}"}


class SyntheticRain(tfds.core.GeneratorBasedBuilder):
  """Synthetic rain pairs: A (rainy) and B (clean)."""

  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {
      "1.0.0": "Streaks and raindrops on scikit-image or folder photos.",
      "2.0.0": "Photographs of the world only; test pixels held out by region (or whole "
               "photos); test crops at test_size; crops span at most 2x their side; the "
               "veil and tint off unless asked for.",
  }

  def _info(self) -> tfds.core.DatasetInfo:
    image = tfds.features.Image(shape=(None, None, 3), encoding_format="png")
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
        "train": self._generate_examples("train", config.train_photos, config.num_train,
                                         config.image_size),
        "test": self._generate_examples("test", config.test_photos, config.num_test,
                                        config.test_size),
    }

  def _generate_examples(self, split, refs, count, size):
    config = self.builder_config
    photos = [region(load_photo(ref), split, config.split) for ref in refs]
    names = [photo_name(ref) for ref in refs]
    for index in range(count):
      rng = np.random.default_rng([config.seed, _SPLIT_IDS[split], index])
      example = make_example(photos, names, rng, image_size=size, rain=config.rain,
                             veil=config.veil, tint=config.tint)
      yield index, {"A": encode_png(example["A"]), "B": encode_png(example["B"]),
                    "name": f"{split}/{index:06d}_{example['name']}"}

  # The caller (datasets.get_data_sources) logs the build; TFDS's own prints name the
  # temporary build folder, which would mislead.
  def _log_download_bytes(self):
    pass

  def _log_download_done(self):
    pass
