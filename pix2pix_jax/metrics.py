"""Image-quality metrics of uint8 images: PSNR and SSIM on luma and RGB, Lab histograms.

Two published evaluation protocols (`PROTOCOLS`, the config's `eval.protocol`), which differ
only in the luma and the crop:

- `raindrop`, Qian et al.'s raindrop evaluation (CVPR 2018): both images cropped to a multiple
  of 4, then full-range BT.601 Y exactly as OpenCV's `cvtColor(..., COLOR_RGB2YCrCb)` computes
  it on uint8 (fixed point: Y = (4899 R + 9617 G + 1868 B + 2**13) >> 14).
- `rain13k`, the Rain13K test sets (Rain100H/L, Test100/1200/2800) as the MATLAB script of
  MPRNet / Restormer, `Deraining/evaluate_PSNR_SSIM.m`, scores them: no crop; Y of MATLAB's
  `rgb2ycbcr` on uint8 images, which is studio range and rounded to uint8 (Y = round(16 +
  (65.481 R + 128.553 G + 24.966 B) / 255), halves away from zero); PSNR with peak 255.
  The lines followed, in swz30/Restormer at df766d55 (MPRNet's copy is the same, one line
  lower): 56-58 and 69-77 (`rgb2ycbcr` on the uint8 images read by `imread`, channel 1;
  grey images as they are), 79-82 (PSNR = 20 log10(255 / rmse) over all Y values), 180-183
  (`fspecial('gaussian', 11, 1.5)`, K = [0.01 0.03], L = 255), 254-261 (`filter2(window,
  ., 'valid')`), 277 (`mean2` of the map), 40-50 (a set's score: the mean over its images;
  "all datasets": the unweighted mean of the set means).

Both score a pair's Y with PSNR and with SSIM as Wang et al.'s `ssim_index.m` (the one that
script calls: an 11x11 Gaussian window with sigma 1.5, K1 0.01, K2 0.03, L 255, `filter2(...,
'valid')`, no downsampling: the mean over the pixels whose window lies inside the image; the
same as scikit-image's `structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=255)`), and a test set's score is the mean over its
images. RGB PSNR and SSIM (the mean over channels) are reported beside them, on the same crop.

The colour experiment of the pix2pix paper (its Table 5) compares the marginal distributions
of L, a and b over a whole test set: `LabHistograms` accumulates them for outputs and targets
and reports their histogram intersections (1 = identical distributions).
"""

from typing import Mapping

import numpy as np
from scipy import ndimage

PIXEL_METRICS = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")
PROTOCOLS = ("raindrop", "rain13k")
DEFAULT_PROTOCOL = "raindrop"
LAB_METRICS = ("hist_L", "hist_a", "hist_b")
# (low, high) of each Lab channel; one bin per unit.
LAB_RANGES = {"L": (0.0, 100.0), "a": (-128.0, 128.0), "b": (-128.0, 128.0)}
_SSIM_SIGMA = 1.5
_SSIM_TRUNCATE = 3.5  # radius int(3.5 * 1.5 + 0.5) = 5: an 11x11 window.
_SSIM_RADIUS = 5


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
  if a.shape != b.shape:
    raise ValueError(f"Images of different shapes cannot be compared: {a.shape} vs {b.shape}.")
  if a.dtype != np.uint8 or b.dtype != np.uint8:
    raise TypeError(f"Metrics take uint8 images, got {a.dtype} and {b.dtype}.")


def crop_to_multiple(image: np.ndarray, multiple: int = 4) -> np.ndarray:
  """The top-left (H - H % multiple) x (W - W % multiple) of an HxW[xC] image."""
  h, w = image.shape[:2]
  return image[:h - h % multiple, :w - w % multiple]


def luma(image: np.ndarray, protocol: str = DEFAULT_PROTOCOL) -> np.ndarray:
  """The protocol's Y of a uint8 HxWx3 RGB image, as uint8 HxW; a grey HxW[x1] image as is.

  `raindrop`: full-range BT.601 as OpenCV's RGB2YCrCb on uint8 (its fixed-point weights 4899,
  9617, 1868 over 2**14, rounded; modules/imgproc/src/color_yuv.simd.hpp). `rain13k`: MATLAB's
  rgb2ycbcr on uint8 (studio range 16-235; computed in double, then rounded to nearest with
  halves away from zero, as MATLAB's conversion to uint8).
  """
  image = np.asarray(image)
  if image.ndim == 2 or image.shape[-1] == 1:
    return image.reshape(image.shape[:2])
  _check_protocol(protocol)
  if protocol == "raindrop":
    r, g, b = (image[..., c].astype(np.int64) for c in range(3))
    return ((4899 * r + 9617 * g + 1868 * b + (1 << 13)) >> 14).astype(np.uint8)
  r, g, b = (image[..., c].astype(np.float64) for c in range(3))
  y = (65.481 / 255) * r + (128.553 / 255) * g + (24.966 / 255) * b + 16.0
  return np.clip(np.floor(y + 0.5), 0, 255).astype(np.uint8)  # y > 0: half up = away from 0


def _check_protocol(protocol: str) -> None:
  if protocol not in PROTOCOLS:
    raise ValueError(f"eval.protocol={protocol!r} is not one of {PROTOCOLS}.")


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
  """Peak signal-to-noise ratio in dB over all values (inf for identical images)."""
  mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
  return float("inf") if mse == 0 else float(10.0 * np.log10(data_range ** 2 / mse))


def _blur(x: np.ndarray) -> np.ndarray:
  return ndimage.gaussian_filter(x, _SSIM_SIGMA, truncate=_SSIM_TRUNCATE, mode="reflect")


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> np.ndarray:
  """Per-pixel SSIM of two HxW images (valid window positions only)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
  mu_a, mu_b = _blur(a), _blur(b)
  var_a = _blur(a * a) - mu_a ** 2
  var_b = _blur(b * b) - mu_b ** 2
  cov = _blur(a * b) - mu_a * mu_b
  ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
      (mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
  r = _SSIM_RADIUS
  return ssim[r:-r, r:-r]


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
  """Mean SSIM of two HxW or HxWxC images (the mean over channels for C > 1)."""
  a, b = np.asarray(a), np.asarray(b)
  if min(a.shape[:2]) < 2 * _SSIM_RADIUS + 1:
    raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {a.shape[:2]}.")
  if a.ndim == 2:
    return float(ssim_map(a, b, data_range).mean())
  return float(np.mean([ssim_map(a[..., c], b[..., c], data_range).mean()
                        for c in range(a.shape[-1])]))


def image_metrics(output: np.ndarray, target: np.ndarray,
                  protocol: str = DEFAULT_PROTOCOL) -> dict[str, float]:
  """{'psnr_y', 'ssim_y', 'psnr_rgb', 'ssim_rgb'} of one uint8 HxWxC pair, by `protocol`
  (`raindrop` first crops both to a multiple of 4; `rain13k` scores them whole)."""
  output, target = np.asarray(output), np.asarray(target)
  _check_pair(output, target)
  _check_protocol(protocol)
  if protocol == "raindrop":
    output, target = crop_to_multiple(output), crop_to_multiple(target)
  y_out, y_target = luma(output, protocol), luma(target, protocol)
  return {"psnr_y": psnr(y_out, y_target), "ssim_y": ssim(y_out, y_target),
          "psnr_rgb": psnr(output, target), "ssim_rgb": ssim(output, target)}


def to_lab(image: np.ndarray) -> np.ndarray:
  """CIE Lab (D65) of a uint8 RGB (or grey) image: HxWx3 floats."""
  from skimage import color  # pylint: disable=g-import-not-at-top  (slow import)
  image = np.asarray(image)
  if image.ndim == 2 or image.shape[-1] == 1:
    image = np.repeat(image.reshape(image.shape[:2] + (1,)), 3, axis=-1)
  return color.rgb2lab(image[..., :3])


def lab_histograms(image: np.ndarray) -> dict[str, np.ndarray]:
  """Unit-bin pixel counts of L, a and b of a uint8 RGB image."""
  lab = to_lab(image)
  out = {}
  for c, (name, (low, high)) in enumerate(LAB_RANGES.items()):
    bins = int(high - low)
    out[name] = np.histogram(np.clip(lab[..., c], low, high), bins=bins,
                             range=(low, high))[0].astype(np.int64)
  return out


def histogram_intersection(p: np.ndarray, q: np.ndarray) -> float:
  """sum(min(p, q)) of two histograms normalised to sum 1 (1 = the same distribution)."""
  p = p / max(p.sum(), 1)
  q = q / max(q.sum(), 1)
  return float(np.minimum(p, q).sum())


class LabHistograms:
  """Accumulates the L, a, b marginals of outputs and targets over a test set."""

  def __init__(self):
    self._outputs = {name: 0 for name in LAB_RANGES}
    self._targets = {name: 0 for name in LAB_RANGES}

  def add(self, output: np.ndarray, target: np.ndarray) -> None:
    for totals, image in ((self._outputs, output), (self._targets, target)):
      for name, counts in lab_histograms(image).items():
        totals[name] = totals[name] + counts

  def intersections(self) -> dict[str, float]:
    """{'hist_L', 'hist_a', 'hist_b'}: output-vs-target histogram intersections."""
    return {f"hist_{name}": histogram_intersection(np.asarray(self._outputs[name]),
                                                   np.asarray(self._targets[name]))
            for name in LAB_RANGES}


def mean_metrics(per_image: list[Mapping[str, float]]) -> dict[str, float]:
  """Means over images of each metric in PIXEL_METRICS."""
  return {key: float(np.mean([m[key] for m in per_image])) for key in PIXEL_METRICS}


class Accumulator:
  """Per-image metrics and Lab histograms of (output, target) pairs, and their summary.

  `add` returns the image's metrics; `summary()` gives the means of PIXEL_METRICS and the
  Lab histogram intersections over all pairs added, scored by `protocol`.
  """

  def __init__(self, protocol: str = DEFAULT_PROTOCOL):
    _check_protocol(protocol)
    self.protocol = protocol
    self.per_image: list[dict[str, float]] = []
    self._lab = LabHistograms()

  def add(self, output: np.ndarray, target: np.ndarray) -> dict[str, float]:
    metrics = image_metrics(output, target, self.protocol)
    self.per_image.append(metrics)
    self._lab.add(output, target)
    return metrics

  def summary(self) -> dict[str, float]:
    if not self.per_image:
      raise ValueError("No images were evaluated.")
    return {**mean_metrics(self.per_image), **self._lab.intersections()}
