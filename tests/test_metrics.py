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
