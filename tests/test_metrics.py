"""PSNR, SSIM (checked against scikit-image), luma and Lab histogram intersection."""

import numpy as np
import pytest
from skimage import metrics as skmetrics

from pix2pix_jax import metrics


def _random_pair(rng, shape):
  a = rng.integers(0, 256, shape, dtype=np.uint8)
  noise = rng.normal(0, 20, shape)
  b = np.clip(a + noise, 0, 255).astype(np.uint8)
  return a, b


@pytest.mark.parametrize("shape", [(37, 53), (64, 40, 3)])
def test_ssim_matches_scikit_image(shape):
  rng = np.random.default_rng(0)
  a, b = _random_pair(rng, shape)
  expected = skmetrics.structural_similarity(
      a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255,
      channel_axis=-1 if len(shape) == 3 else None)
  assert metrics.ssim(a, b) == pytest.approx(expected, abs=1e-6)
  assert metrics.ssim(a, a) == pytest.approx(1.0)


def test_psnr_known_values():
  a = np.zeros((8, 8), np.uint8)
  assert metrics.psnr(a, a) == float("inf")
  assert metrics.psnr(a, np.full_like(a, 255)) == pytest.approx(0.0)
  # MSE 1 -> 20 log10(255) = 48.13 dB.
  assert metrics.psnr(a, np.ones_like(a)) == pytest.approx(48.1308, abs=1e-4)
  # MSE 100 -> 28.13 dB; matches scikit-image.
  b = np.full_like(a, 10)
  assert metrics.psnr(a, b) == pytest.approx(28.1308, abs=1e-4)
  assert metrics.psnr(a, b) == pytest.approx(skmetrics.peak_signal_noise_ratio(a, b))


def test_luma_is_bt601_full_range():
  rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], np.uint8)
  np.testing.assert_array_equal(metrics.luma(rgb), [[76, 150, 29, 255]])


def test_image_metrics_crop_to_multiple_of_4():
  rng = np.random.default_rng(1)
  a, b = _random_pair(rng, (30, 45, 3))
  m = metrics.image_metrics(a, b)
  assert set(m) == set(metrics.PIXEL_METRICS)
  assert m["psnr_rgb"] == pytest.approx(metrics.psnr(a[:28, :44], b[:28, :44]))
  assert m["ssim_y"] == pytest.approx(
      metrics.ssim(metrics.luma(a[:28, :44]), metrics.luma(b[:28, :44])))
  with pytest.raises(ValueError, match="different shapes"):
    metrics.image_metrics(a, b[:20])


def test_lab_histogram_intersection():
  rng = np.random.default_rng(2)
  a, b = _random_pair(rng, (32, 32, 3))
  acc = metrics.Accumulator()
  acc.add(a, a)
  same = acc.summary()
  for key in metrics.LAB_METRICS:
    assert same[key] == pytest.approx(1.0)
  lab = metrics.LabHistograms()
  lab.add(np.zeros_like(a), np.full_like(a, 255))  # black vs white: disjoint L.
  assert lab.intersections()["hist_L"] == pytest.approx(0.0)
  lab = metrics.LabHistograms()
  lab.add(a, b)
  assert 0.3 < lab.intersections()["hist_L"] < 1.0


# --- The two protocols, each against values computed independently of pix2pix_jax.metrics.

def test_raindrop_luma_is_opencvs_fixed_point_y():
  """Values from OpenCV 5.1 `cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)[..., 0]` (run once by
  hand; OpenCV is not a dependency): the last six are colours where rounding the float
  0.299 R + 0.587 G + 0.114 B gives another value than OpenCV's fixed-point weights."""
  colours_and_y = [([255, 0, 0], 76), ([0, 255, 0], 150), ([0, 0, 255], 29),
                   ([255, 255, 255], 255), ([10, 200, 30], 124),
                   ([68, 120, 252], 120), ([167, 149, 36], 141), ([133, 184, 59], 154),
                   ([78, 90, 82], 85), ([9, 227, 233], 162), ([221, 165, 119], 177)]
  rgb = np.array([[c for c, _ in colours_and_y]], np.uint8)
  np.testing.assert_array_equal(metrics.luma(rgb, "raindrop")[0], [y for _, y in colours_and_y])


def _matlab_rgb2ycbcr_y(rgb: np.ndarray) -> np.ndarray:
  """MATLAB's rgb2ycbcr on uint8, Y only, written from its documentation: the float Y of
  scikit-image's rgb2ycbcr (the same ITU-R BT.601 studio-range matrix, unrounded), then
  MATLAB's conversion to uint8 (round half away from zero, saturate), in exact decimals."""
  from decimal import Decimal, ROUND_HALF_UP  # pylint: disable=g-import-not-at-top
  from skimage import color  # pylint: disable=g-import-not-at-top
  y_float = color.rgb2ycbcr(rgb)[..., 0]
  r, g, b = (rgb[..., c].astype(object) for c in range(3))
  exact = np.vectorize(lambda r, g, b: int(
      (Decimal(16) + (Decimal("65.481") * r + Decimal("128.553") * g + Decimal("24.966") * b)
       / 255).quantize(Decimal(1), rounding=ROUND_HALF_UP)))(r, g, b)
  np.testing.assert_allclose(y_float, exact, atol=0.5 + 1e-9)  # the same matrix
  return np.clip(exact, 0, 255).astype(np.uint8)


def _real_pairs():
  """Crops of real photographs (scikit-image's) and a degraded copy of each."""
  from skimage import data  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  for image in (data.astronaut()[:90, :130], data.coffee()[100:187, 200:333],
                data.chelsea()[50:121, 100:203]):
    noisy = np.clip(image + rng.normal(0, 12, image.shape) + 6, 0, 255).astype(np.uint8)
    yield image, noisy


def test_rain13k_luma_is_matlabs_rounded_studio_range_y():
  np.testing.assert_array_equal(
      metrics.luma(np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0],
                              [0, 0, 255]]], np.uint8), "rain13k")[0],
      [235, 16, 81, 145, 41])  # 16 + 65.481 = 81.48; 16 + 128.553 = 144.55; 40.97
  for image, _ in _real_pairs():
    np.testing.assert_array_equal(metrics.luma(image, "rain13k"), _matlab_rgb2ycbcr_y(image))


def _matlab_ssim_index(a: np.ndarray, b: np.ndarray) -> float:
  """Wang et al.'s ssim_index.m (v1.0, the one evaluate_PSNR_SSIM.m calls), line by line:
  fspecial('gaussian', 11, 1.5) normalised, filter2(window, x, 'valid'), mean2."""
  from scipy import signal  # pylint: disable=g-import-not-at-top
  x = np.arange(-5, 6)
  window = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 1.5 ** 2))
  window /= window.sum()
  c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
  a, b = a.astype(np.float64), b.astype(np.float64)
  filt = lambda z: signal.correlate2d(z, window, mode="valid")
  mu1, mu2 = filt(a), filt(b)
  s1, s2, s12 = filt(a * a) - mu1 ** 2, filt(b * b) - mu2 ** 2, filt(a * b) - mu1 * mu2
  ssim_map = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / (
      (mu1 ** 2 + mu2 ** 2 + c1) * (s1 + s2 + c2))
  return float(ssim_map.mean())


def test_rain13k_protocol_is_the_matlab_script():
  """evaluate_PSNR_SSIM.m: Y as rgb2ycbcr (uint8), no crop, PSNR 20 log10(255 / rmse)."""
  for image, noisy in _real_pairs():
    y_a, y_b = _matlab_rgb2ycbcr_y(noisy), _matlab_rgb2ycbcr_y(image)
    rmse = np.sqrt(np.mean((y_a.astype(np.float64) - y_b) ** 2))
    scores = metrics.image_metrics(noisy, image, "rain13k")
    assert scores["psnr_y"] == pytest.approx(20 * np.log10(255 / rmse), abs=1e-9)
    assert scores["ssim_y"] == pytest.approx(_matlab_ssim_index(y_a, y_b), abs=1e-9)
    assert scores["psnr_rgb"] == pytest.approx(metrics.psnr(noisy, image))  # not cropped


def test_raindrop_protocol_crops_to_multiples_of_4_and_differs_from_rain13k():
  for image, noisy in _real_pairs():
    h, w = image.shape[0] // 4 * 4, image.shape[1] // 4 * 4
    y_a, y_b = (metrics.luma(x[:h, :w], "raindrop") for x in (noisy, image))
    scores = metrics.image_metrics(noisy, image, "raindrop")
    assert scores["psnr_y"] == pytest.approx(metrics.psnr(y_a, y_b))
    assert scores["ssim_y"] == pytest.approx(_matlab_ssim_index(y_a, y_b), abs=1e-9)
    assert scores["psnr_y"] != metrics.image_metrics(noisy, image, "rain13k")["psnr_y"]


def test_unknown_protocol_is_refused():
  with pytest.raises(ValueError, match="eval.protocol='rain100' is not one of"):
    metrics.Accumulator("rain100")
