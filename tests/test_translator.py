"""The Translator: any size, grey and RGBA inputs, paper mode per image, tiling."""

import numpy as np
from PIL import Image
import pytest

import pix2pix_jax
from pix2pix_jax import configuration
from pix2pix_jax import inference
from pix2pix_jax import translator as translator_lib

import tiny_workdir


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  root = tmp_path_factory.mktemp("translator")
  return tiny_workdir.make(str(root / "w"), str(root / "cache"))


def _image(h, w, c=3, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def test_any_size_returns_the_same_size(workdir):
  translator = pix2pix_jax.Translator.from_workdir(workdir, norm_mode="running")
  for shape in [(32, 32), (33, 70), (5, 9)]:
    out = translator(_image(*shape))
    assert out.shape == shape + (3,) and out.dtype == np.uint8
  batch = np.stack([_image(20, 40, seed=s) for s in range(3)])
  out = translator(batch)
  assert out.shape == batch.shape
  np.testing.assert_array_equal(out[1], translator(batch[1]))


def test_large_image_keeps_its_size_and_compiles_once_per_padded_shape(workdir):
  translator = pix2pix_jax.Translator.from_workdir(workdir, norm_mode="paper")
  out = translator(_image(1000, 700))
  assert out.shape == (1000, 700, 3)
  translator(_image(999, 690, seed=1))  # the same padded shape (1024, 704): no new compile.
  assert translator._apply._cache_size() == 1


def test_paper_mode_is_per_image(workdir):
  translator = pix2pix_jax.Translator.from_workdir(workdir, norm_mode="paper")
  batch = np.stack([_image(32, 32, seed=s) for s in range(3)])
  together = translator(batch)
  np.testing.assert_array_equal(together[2], translator(batch[2]))
  # Batch statistics and dropout: differs from running mode.
  running = pix2pix_jax.Translator.from_workdir(workdir, norm_mode="running")
  assert not np.array_equal(together, running(batch))


def test_grey_pil_and_rgba_inputs(workdir):
  translator = pix2pix_jax.Translator.from_workdir(workdir, norm_mode="running")
  grey = _image(40, 30, 1)
  expected = translator(np.repeat(grey, 3, axis=-1))
  np.testing.assert_array_equal(translator(grey[..., 0]), expected)
  np.testing.assert_array_equal(translator(Image.fromarray(grey[..., 0])), expected)
  rgb = _image(40, 30)
  rgba = np.concatenate([rgb, np.full((40, 30, 1), 7, np.uint8)], axis=-1)
  with pytest.warns(UserWarning, match="alpha"):
    out = translator(rgba)
  np.testing.assert_array_equal(out, translator(rgb))
  with pytest.warns(UserWarning, match="alpha"):
    translator(Image.fromarray(rgba))
  with pytest.raises(TypeError, match="uint8"):
    translator(rgb.astype(np.float32))


def test_tiled_matches_untiled(workdir):
  untiled = pix2pix_jax.Translator.from_workdir(workdir, norm_mode="running")
  tiled = pix2pix_jax.Translator.from_workdir(
      workdir, norm_mode="running",
      config_overrides={"predict.tile_size": 160, "predict.overlap": 64})
  image = _image(200, 230, seed=3)
  whole, tiles = untiled(image).astype(int), tiled(image).astype(int)
  assert tiled._apply._cache_size() == 1  # 2x2 tiles, all of one shape.
  assert whole.std() > 20  # the test model's outputs vary (tiny_workdir scales them up).
  # A U-Net's output depends on the whole tile (the bottleneck sees it all), so tiles only
  # approximate the whole image; with an overlap of 64 on this tiny model, closely.
  difference = np.abs(whole - tiles)
  assert difference.mean() < 2 and np.percentile(difference, 99) < 12, (
      difference.mean(), np.percentile(difference, 99))


def test_tile_helpers_cover_without_seams():
  assert translator_lib.tile_starts(100, 64, 16) == [0, 36]
  assert translator_lib.tile_starts(64, 64, 16) == [0]
  starts = translator_lib.tile_starts(1000, 256, 32)
  assert starts[0] == 0 and starts[-1] == 1000 - 256
  assert all(b - a <= 256 - 32 for a, b in zip(starts, starts[1:]))
  window = translator_lib.blend_window(64, 16)
  assert window[:4].max() == 0 and window[12:-12].min() == 1
  assert np.all(np.abs(np.diff(window)) <= 1 / 8 + 1e-6)  # no step: no seam.
  # Two neighbours overlapping by 16 cross-fade to a total weight of 1.
  left = translator_lib.blend_window(64, 16, fade_in=False)
  right = translator_lib.blend_window(64, 16, fade_out=False)
  np.testing.assert_allclose(left[-16:] + right[:16], 1.0)
  assert left[0] == 1 and right[-1] == 1  # image borders keep full weight.


def test_paper_mode_refuses_to_tile(workdir):
  translator = pix2pix_jax.Translator.from_workdir(
      workdir, norm_mode="paper", config_overrides={"predict.tile_size": 64, "predict.overlap": 16})
  with pytest.raises(ValueError, match="paper norm mode cannot tile"):
    translator(_image(65, 40))


def test_checkpoint_choices_and_errors(workdir, tmp_path):
  pix2pix_jax.Translator.from_workdir(workdir, checkpoint=0)
  with pytest.raises(FileNotFoundError, match="no checkpoint at step 7"):
    pix2pix_jax.Translator.from_workdir(workdir, checkpoint="7")
  with pytest.raises(FileNotFoundError, match="has no best checkpoint"):
    pix2pix_jax.Translator.from_workdir(workdir, checkpoint="best")
  with pytest.raises(ValueError, match="use 'latest', 'best' or a step"):
    pix2pix_jax.Translator.from_workdir(workdir, checkpoint="newest")
  with pytest.raises(FileNotFoundError, match="does not exist"):
    pix2pix_jax.Translator.from_workdir(str(tmp_path / "missing"))
  with pytest.raises(configuration.ConfigError, match="model.ngf"):
    pix2pix_jax.Translator.from_workdir(workdir, config_overrides={"model.ngf": 16})


@pytest.mark.parametrize("key, value, message", [
    ("predict.tile_size", 100, "predict.tile_size=100 must be a positive multiple of"),
    ("predict.overlap", 512, "predict.overlap=512 must be in"),
    ("eval_every_steps", -1, "eval_every_steps=-1 must be >= 0"),
])
def test_config_checks_name_the_key(key, value, message):
  from configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config("tiny")
  section, _, name = key.rpartition(".")
  (config[section] if section else config)[name] = value
  with pytest.raises(configuration.ConfigError, match=message):
    configuration.validate(config)


@pytest.mark.parametrize("norm_mode", ["running", "paper"])
def test_ensemble_is_the_mean_over_flips_and_rotations(workdir, norm_mode):
  plain = pix2pix_jax.Translator.from_workdir(workdir, norm_mode=norm_mode)
  ensemble = pix2pix_jax.Translator.from_workdir(workdir, norm_mode=norm_mode, ensemble=True)
  assert ensemble.ensemble and not plain.ensemble
  image = _image(32, 64, seed=4)
  expected = np.mean([inference.undo_dihedral(
      plain._generate(inference.dihedral(image[None], k)[0])[None], k)[0]
                      for k in range(inference.ENSEMBLE_SIZE)], axis=0)
  np.testing.assert_array_equal(ensemble(image), inference.to_uint8(expected))
  assert not np.array_equal(ensemble(image), plain(image))


def test_ensemble_with_tiles_and_in_export(workdir, tmp_path):
  from jax import export as jax_export  # pylint: disable=g-import-not-at-top
  from pix2pix_jax import export  # pylint: disable=g-import-not-at-top
  tiled = pix2pix_jax.Translator.from_workdir(
      workdir, norm_mode="running", ensemble=True,
      config_overrides={"predict.tile_size": 32, "predict.overlap": 8})
  assert tiled(_image(40, 70)).shape == (40, 70, 3)
  path = str(tmp_path / "g.jax")
  info = export.export_workdir(workdir, path, overrides={"inference.ensemble": True,
                                                         "inference.norm_mode": "running"})
  assert info["ensemble"].startswith("mean over dihedral (8 transforms")
  with open(path, "rb") as f:
    exported = jax_export.deserialize(f.read())
  image = _image(32, 64, seed=5)
  ensemble = pix2pix_jax.Translator.from_workdir(workdir, norm_mode="running", ensemble=True)
  output = np.asarray(exported.call(inference.from_uint8(image[None])))[0]
  np.testing.assert_allclose(output, ensemble._generate(image), atol=1e-5)
