"""Tests of the rain renderer, the synthetic_rain builder and get_data_sources."""

import io
import os

import numpy as np
from PIL import Image
import pytest

from configs import default
from pix2pix_jax import datasets
from pix2pix_jax.datasets import rain_renderer
from pix2pix_jax.datasets import synthetic_rain


def tiny_data_config(cache_dir, **synthetic):
  config = default.get_config("tiny")
  config.data.cache_dir = str(cache_dir)
  config.data.synthetic.num_train = 6
  config.data.synthetic.num_test = 3
  config.data.synthetic.update(synthetic)
  return config.data


def all_examples(source):
  return [source[i] for i in range(len(source))]


def decoded(png: bytes) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(png)))


@pytest.fixture(scope="module")
def photo():
  """A 96x128 crop of a scikit-image photo."""
  return synthetic_rain.load_photo("skimage:coffee")[100:196, 200:328]


# --------------------------------------------------------------------------- renderer


@pytest.mark.parametrize("style", rain_renderer.STYLES)
@pytest.mark.parametrize("kind", rain_renderer.KINDS)
def test_render_rain_changes_image_but_keeps_it_recognisable(photo, style, kind):
  rainy = rain_renderer.render_rain(photo, np.random.default_rng(0), style=style, kind=kind)
  assert rainy.shape == photo.shape and rainy.dtype == np.uint8
  changed = np.abs(rainy.astype(int) - photo.astype(int)).max(-1) > 8
  assert changed.mean() > 0.01, "too little rain"
  correlation = np.corrcoef(rainy.ravel().astype(float), photo.ravel().astype(float))[0, 1]
  assert correlation > 0.8, "the rainy image no longer looks like the clean one"


def test_render_rain_is_deterministic_for_an_rng(photo):
  render = lambda seed: rain_renderer.render_rain(
      photo, np.random.default_rng(seed), style="heavy", kind="both")
  np.testing.assert_array_equal(render(1), render(1))
  assert not np.array_equal(render(1), render(2))


def test_render_rain_rejects_unknown_style_and_kind(photo):
  with pytest.raises(ValueError, match="'drizzle'"):
    rain_renderer.render_rain(photo, np.random.default_rng(0), style="drizzle")
  with pytest.raises(ValueError, match="'snow'"):
    rain_renderer.render_rain(photo, np.random.default_rng(0), style="light", kind="snow")


# ---------------------------------------------------------------------------- builder


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """(data_config, sources) of a tiny dataset built once for this module."""
  data_config = tiny_data_config(tmp_path_factory.mktemp("cache"))
  return data_config, datasets.get_data_sources(data_config, seed=0)


def test_sources_have_the_configured_examples(built):
  data_config, sources = built
  assert len(sources["train"]) == 6 and len(sources["test"]) == 3
  example = sources["train"][0]
  size = data_config.synthetic.image_size
  for key in ("A", "B"):
    image = decoded(example[key])
    assert image.shape == (size, size, 3) and image.dtype == np.uint8
  assert not np.array_equal(decoded(example["A"]), decoded(example["B"]))


def test_build_is_deterministic_for_a_seed(built, tmp_path):
  data_config, sources = built
  rebuilt = datasets.get_data_sources(tiny_data_config(tmp_path / "again"), seed=0)
  other_seed = datasets.get_data_sources(tiny_data_config(tmp_path / "other"), seed=1)
  for split in ("train", "test"):
    assert all_examples(rebuilt[split]) == all_examples(sources[split])
    other = all_examples(other_seed[split])
    assert [e["A"] for e in other] != [e["A"] for e in all_examples(sources[split])]


def test_default_photos_are_photographs_split_by_region(built):
  data_config, sources = built
  config = synthetic_rain.make_config(data_config, seed=0)
  assert config.split == "regions" and config.version == "2.0.0"
  names = {synthetic_rain.photo_name(p) for p in config.train_photos}
  assert names == {"astronaut", "chelsea", "coffee", "motorcycle", "rocket"}
  assert config.test_photos == config.train_photos
  assert not {"hubble_deep_field", "immunohistochemistry", "retina"} & names
  for split in ("train", "test"):
    for example in all_examples(sources[split]):
      assert example["name"].decode().startswith(f"{split}/")


def _two_colour_photos(folder, count):
  """Photos whose left 3/4 of columns is red and right 1/4 blue (at the region boundary)."""
  folder.mkdir()
  for i in range(count):
    width = 200 + 8 * i
    pixels = np.zeros((120 + i, width, 3), np.uint8)
    boundary = round(width * (1 - synthetic_rain.TEST_REGION))
    pixels[:, :boundary, 0] = 200
    pixels[:, boundary:, 2] = 200
    Image.fromarray(pixels).save(folder / f"photo{i}.png")


def test_no_test_pixel_is_seen_in_training(tmp_path):
  """split=regions: training crops come from the left 3/4 of each photo only, test crops
  from the right 1/4 only (the clean targets are pure red, resp. pure blue)."""
  _two_colour_photos(tmp_path / "photos", 3)
  data_config = tiny_data_config(tmp_path / "cache", num_train=12, num_test=6,
                                 rain="light")
  data_config.path = str(tmp_path / "photos")
  sources = datasets.get_data_sources(data_config, seed=0)
  assert synthetic_rain.make_config(data_config, seed=0).split == "regions"  # auto, 3 photos
  for split, (seen, unseen) in (("train", (0, 2)), ("test", (2, 0))):
    for example in all_examples(sources[split]):
      clean = decoded(example["B"]).astype(int)
      assert clean[..., seen].min() == 200 and clean[..., unseen].max() == 0, split


def test_test_crops_have_their_own_size(tmp_path):
  data_config = tiny_data_config(tmp_path / "cache", test_size=48)
  sources = datasets.get_data_sources(data_config, seed=0)
  assert decoded(sources["test"][0]["A"]).shape == (48, 48, 3)
  assert decoded(sources["train"][0]["A"]).shape == (36, 36, 3)


def test_rain_is_streaks_and_drops_the_veil_and_tint_are_options(photo):
  def render(**options):
    rainy = rain_renderer.render_rain(photo, np.random.default_rng(3), style="heavy",
                                      kind="streaks", **options)
    return np.abs(rainy.astype(int) - photo.astype(int)).max(-1)
  plain, veiled = render(), render(veil=True)
  assert np.median(plain) == 0 and (plain > 8).mean() > 0.01  # rain, not a global change.
  assert np.median(veiled) > 3  # the veil changes every pixel.
  tinted = rain_renderer.render_rain(photo, np.random.default_rng(3), style="heavy",
                                     kind="streaks", tint=True)
  untinted = rain_renderer.render_rain(photo, np.random.default_rng(3), style="heavy",
                                       kind="streaks")
  assert (tinted.astype(int) - untinted.astype(int))[..., 0].mean() < 0  # less red.


def test_default_test_split_identity_is_in_range(tmp_path):
  """The default test split (96px crops of the photos' right quarters, mixed rain, no
  veil): the rainy input scored against its target stays a hard task, 22-32 dB Y-PSNR."""
  from pix2pix_jax import metrics  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  config.data.cache_dir = str(tmp_path)
  config.data.synthetic.num_train = 1
  test = datasets.get_data_sources(config.data, seed=0)["test"]
  assert len(test) == 100
  identity = metrics.Accumulator()
  for example in all_examples(test):
    identity.add(decoded(example["A"]), decoded(example["B"]))
  assert 22 < identity.summary()["psnr_y"] < 32


def test_changing_a_parameter_builds_a_new_dataset(tmp_path):
  cache_dir = tmp_path / "cache"
  configs_dir = cache_dir / "synthetic_rain"
  base = datasets.get_data_sources(tiny_data_config(cache_dir), seed=0)
  datasets.get_data_sources(tiny_data_config(cache_dir), seed=0)
  assert len(os.listdir(configs_dir)) == 1  # same parameters: reused.
  changes = [({"num_train": 5}, 0), ({"rain": "light"}, 0), ({"image_size": 40}, 0),
             ({}, 1)]
  for i, (synthetic, seed) in enumerate(changes):
    sources = datasets.get_data_sources(tiny_data_config(cache_dir, **synthetic), seed=seed)
    assert len(os.listdir(configs_dir)) == 2 + i, (synthetic, seed)
    assert all_examples(sources["train"]) != all_examples(base["train"])


def test_build_is_atomic(tmp_path, monkeypatch):
  cache_dir = tmp_path / "cache"
  datasets.get_data_sources(tiny_data_config(cache_dir), seed=0)
  assert os.listdir(cache_dir) == ["synthetic_rain"]  # no temporary folders left.

  def fail(*args, **kwargs):
    raise RuntimeError("renderer crashed")

  monkeypatch.setattr(rain_renderer, "render_rain", fail)
  with pytest.raises(RuntimeError, match="renderer crashed"):
    datasets.get_data_sources(tiny_data_config(cache_dir, num_train=4), seed=0)
  assert os.listdir(cache_dir) == ["synthetic_rain"]
  assert len(os.listdir(cache_dir / "synthetic_rain")) == 1  # the failed one left nothing.


def test_photo_folder(tmp_path):
  folder = tmp_path / "photos"
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(12):
    pixels = rng.integers(0, 256, size=(48 + i, 60, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / f"photo{i:02d}.{'png' if i % 2 else 'jpg'}")
  (folder / "notes.txt").write_text("not a photo")
  paths = synthetic_rain.folder_photos(str(folder))
  assert len(paths) == 12 and synthetic_rain.resolve_split("auto", len(paths)) == "photos"
  split = synthetic_rain.hold_out_photos(paths)
  assert len(split["test"]) == 1 and len(split["train"]) == 11
  assert not set(split["test"]) & set(split["train"])
  assert split == synthetic_rain.hold_out_photos(synthetic_rain.folder_photos(str(folder)))

  data_config = tiny_data_config(tmp_path / "cache")
  data_config.path = str(folder)
  sources = datasets.get_data_sources(data_config, seed=0)
  test_photo = synthetic_rain.photo_name(split["test"][0])
  assert all(f"_{test_photo}_" in e["name"].decode() for e in all_examples(sources["test"]))
  assert not any(f"_{test_photo}_" in e["name"].decode()
                 for e in all_examples(sources["train"]))


def test_empty_or_missing_photo_folder_is_a_clear_error(tmp_path):
  data_config = tiny_data_config(tmp_path / "cache")
  data_config.path = str(tmp_path / "empty")
  os.mkdir(data_config.path)
  with pytest.raises(ValueError, match=str(tmp_path / "empty")):
    datasets.get_data_sources(data_config, seed=0)
  data_config.path = str(tmp_path / "missing")
  with pytest.raises(ValueError, match=str(tmp_path / "missing")):
    datasets.get_data_sources(data_config, seed=0)
  assert not os.path.exists(tmp_path / "cache" / "synthetic_rain")


def test_unknown_source_lists_the_known_ones(tmp_path):
  data_config = tiny_data_config(tmp_path)
  data_config.source = "paired_folders_typo"
  with pytest.raises(ValueError, match="paired_folders_typo.*synthetic_rain"):
    datasets.get_data_sources(data_config, seed=0)


def test_max_dataset_size_and_preprocess_none(built):
  data_config, _ = built
  data_config = data_config.copy_and_resolve_references()
  data_config.max_dataset_size = 2
  data = datasets.prepare(data_config, seed=0)
  assert len(data.sources["train"]) == 2 and len(data.sources["test"]) == 3
  assert data.report["used"] == {"train": 2, "test": 3}
  data_config.preprocess = "none"  # needs images of crop_size; they are image_size.
  with pytest.raises(ValueError, match="data.synthetic.image_size=36"):
    datasets.prepare(data_config, seed=0)
