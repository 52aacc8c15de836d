"""Renders synthetic rain on a clean photo: falling streaks and drops on the lens.

Pure numpy/scipy, deterministic for a given `np.random.Generator`. Everything runs
in float32 [0, 1]; only `render_rain` converts from and to uint8.

Streaks follow the classic recipe: sparse gaussian noise, a small blur for thickness,
a motion blur along a line near vertical, levels, then a screen blend over the photo.
Two depths: a far layer (short, thin, dense, dim) and a near layer (long, wide, sparse,
bright). Two global effects are options, off by default: `veil` (a haze of scattered
light with heavy rain's slight blur of the scene) and `tint` (streaks coloured by a cool
sky rather than white). Either changes every pixel, so a model scored on them is mostly
scored on global de-hazing and colour correction rather than on removing rain.

Adherent raindrops act as small lenses close to the camera: each shows a flipped,
rescaled, blurred view of the scene around it, with a soft edge, a darker rim and a
specular highlight; the scene right behind the drops is slightly defocused.
"""

import dataclasses

import numpy as np
from scipy import ndimage
from scipy import signal

STYLES = ("light", "heavy")
KINDS = ("streaks", "drops", "both")


@dataclasses.dataclass(frozen=True)
class _StreakStyle:
  """Ranges (low, high) that a streak layer's parameters are drawn from."""
  far_density: tuple[float, float]  # fraction of pixels that seed a far streak.
  near_density: tuple[float, float]
  far_length: tuple[float, float]  # streak length, as a fraction of the image side.
  near_length: tuple[float, float]
  far_opacity: tuple[float, float]
  near_opacity: tuple[float, float]
  haze: tuple[float, float]  # veil strength.
  scatter_blur: tuple[float, float]  # background blur sigma, fraction of the side.


@dataclasses.dataclass(frozen=True)
class _DropStyle:
  """Ranges (low, high) that the raindrops' parameters are drawn from."""
  count: tuple[int, int]
  radius: tuple[float, float]  # drop radius, as a fraction of the image side.


_STREAK_STYLES = {
    "light": _StreakStyle(
        far_density=(0.002, 0.006), near_density=(0.0006, 0.0015),
        far_length=(0.03, 0.06), near_length=(0.06, 0.12),
        far_opacity=(0.25, 0.45), near_opacity=(0.4, 0.65),
        haze=(0.03, 0.1), scatter_blur=(0.0, 0.0)),
    "heavy": _StreakStyle(
        far_density=(0.006, 0.016), near_density=(0.0015, 0.004),
        far_length=(0.05, 0.1), near_length=(0.1, 0.2),
        far_opacity=(0.3, 0.55), near_opacity=(0.45, 0.75),
        haze=(0.12, 0.3), scatter_blur=(0.001, 0.003)),
}
_DROP_STYLES = {
    "light": _DropStyle(count=(4, 14), radius=(0.015, 0.05)),
    "heavy": _DropStyle(count=(15, 40), radius=(0.015, 0.07)),
}


def render_rain(clean: np.ndarray, rng: np.random.Generator, *, style: str,
                kind: str = "both", veil: bool = False, tint: bool = False
                ) -> np.ndarray:
  """Returns `clean` (uint8 HxWx3) seen through rain, as uint8 HxWx3.

  Args:
    clean: the photo, uint8 of shape (H, W, 3).
    rng: the only source of randomness; the same state gives the same output.
    style: 'light' or 'heavy'.
    kind: 'streaks' (falling rain), 'drops' (raindrops on the lens) or 'both'.
    veil: streaks add a haze veil (and, heavy, a slight blur of the whole scene).
    tint: streaks take a cool sky's colour instead of white.
  """
  if style not in STYLES:
    raise ValueError(f"render_rain: unknown style {style!r}; known: {STYLES}.")
  if kind not in KINDS:
    raise ValueError(f"render_rain: unknown kind {kind!r}; known: {KINDS}.")
  if clean.ndim != 3 or clean.shape[-1] != 3 or clean.dtype != np.uint8:
    raise ValueError(
        f"render_rain: expected a uint8 (H, W, 3) image, got {clean.dtype} {clean.shape}.")
  image = clean.astype(np.float32) / 255.0
  if kind in ("streaks", "both"):
    image = add_streaks(image, rng, _STREAK_STYLES[style], veil=veil, tint=tint)
  if kind in ("drops", "both"):
    image = add_drops(image, rng, _DROP_STYLES[style])
  return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _uniform(rng, bounds):
  return float(rng.uniform(*bounds))


# ----------------------------------------------------------------------------------
# Streaks.


def line_kernel(length: float, angle: float, width: float = 1.0) -> np.ndarray:
  """Returns a normalised, anti-aliased motion-blur kernel.

  Args:
    length: line length in pixels.
    angle: radians from vertical (positive leans the top to the right).
    width: line thickness in pixels (gaussian profile across the line).
  """
  half = int(np.ceil(length / 2 + 2 * width)) + 1
  ys, xs = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float32)
  along = ys * np.cos(angle) - xs * np.sin(angle)  # distance along the streak.
  across = ys * np.sin(angle) + xs * np.cos(angle)
  cap = np.clip(length / 2 - np.abs(along) + 0.5, 0.0, 1.0)  # anti-aliased ends.
  kernel = cap * np.exp(-0.5 * (across / max(width, 0.3) * 2.0) ** 2)
  return kernel / kernel.sum()


def _levels(layer: np.ndarray, low: float, high: float, gamma: float = 1.0) -> np.ndarray:
  """Photoshop-style levels: maps [low, high] to [0, 1], clips, applies gamma."""
  out = np.clip((layer - low) / max(high - low, 1e-6), 0.0, 1.0)
  return out if gamma == 1.0 else out ** gamma


def streak_layer(shape: tuple[int, int], rng: np.random.Generator, *, density: float,
                 length: float, angle: float, width: float) -> np.ndarray:
  """Returns a float32 (H, W) layer of rain streaks in [0, 1].

  Args:
    shape: (H, W) of the layer.
    rng: randomness.
    density: fraction of pixels that seed a streak.
    length: streak length in pixels.
    angle: radians from vertical.
    width: streak thickness in pixels.
  """
  kernel = line_kernel(length, angle, width)
  pad = kernel.shape[0] - 1  # noise on a padded canvas: no faded streaks at edges.
  canvas = (shape[0] + pad, shape[1] + pad)
  seeds = rng.random(canvas, dtype=np.float32)
  # Keep `density` of the pixels, with random brightness (the sparse "noise + levels").
  seeds = np.where(seeds < density, seeds / density, 0.0).astype(np.float32)
  seeds = seeds ** 0.5
  streaks = signal.fftconvolve(seeds, kernel, mode="valid")
  # A lone seed becomes a line of peak ~ 1 / (length * width); levels restore it.
  peak = kernel.max()
  return _levels(streaks, 0.15 * peak, 0.9 * peak, gamma=1.2).astype(np.float32)


def _haze_field(shape, rng, strength):
  """A smooth, uneven veil in [0, strength]: low-res noise upsampled."""
  coarse = rng.uniform(0.6, 1.0, size=(4, 4)).astype(np.float32)
  field = ndimage.zoom(coarse, (shape[0] / 4, shape[1] / 4), order=1,
                       mode="nearest", grid_mode=True)
  return strength * field[:shape[0], :shape[1], None]


def add_streaks(image: np.ndarray, rng: np.random.Generator, style: _StreakStyle, *,
                veil: bool = False, tint: bool = False) -> np.ndarray:
  """Returns float32 `image` (H, W, 3 in [0, 1]) behind falling rain (see render_rain)."""
  h, w, _ = image.shape
  side = min(h, w)
  angle = float(rng.normal(0.0, 0.2))  # wind: the same direction at every depth.
  # Scattering: heavy rain blurs and veils the scene a little. The draws are made with or
  # without the veil, so that turning it on changes nothing else of the example.
  blur = _uniform(rng, style.scatter_blur) * side
  if veil and blur > 0.2:
    image = ndimage.gaussian_filter(image, (blur, blur, 0))
  haze = _haze_field((h, w), rng, _uniform(rng, style.haze))
  if veil:
    airlight = np.float32(0.75 + 0.2 * image.mean())
    image = image * (1.0 - haze) + airlight * haze
  colour = (np.array([0.93, 0.96, 1.0], np.float32) if tint  # rain reflects a cool sky.
            else np.ones(3, np.float32))
  for density, length, opacity, width in (
      (style.far_density, style.far_length, style.far_opacity, (0.5, 0.8)),
      (style.near_density, style.near_length, style.near_opacity, (0.8, 1.6)),
  ):
    layer = streak_layer(
        (h, w), rng, density=_uniform(rng, density),
        length=max(3.0, _uniform(rng, length) * side),
        angle=angle + float(rng.normal(0.0, 0.03)),
        width=_uniform(rng, width) * max(1.0, side / 256))
    layer = layer[..., None] * (_uniform(rng, opacity) * colour)
    image = 1.0 - (1.0 - image) * (1.0 - layer)  # screen blend.
  return image.astype(np.float32)


# ----------------------------------------------------------------------------------
# Raindrops on the lens.


@dataclasses.dataclass
class _Drop:
  """One rendered drop: its box in the image, colour and opacity there."""
  box: tuple[slice, slice]
  color: np.ndarray  # (h, w, 3)
  alpha: np.ndarray  # (h, w, 1)
  halo: np.ndarray  # (h, w): where the scene behind is defocused.


def _bilinear(image: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
  """Samples `image` (H, W, C) at float coordinates, clamped to the border."""
  h, w, _ = image.shape
  ys = np.clip(ys, 0, h - 1.001)
  xs = np.clip(xs, 0, w - 1.001)
  y0 = ys.astype(np.int32)
  x0 = xs.astype(np.int32)
  fy = (ys - y0)[..., None]
  fx = (xs - x0)[..., None]
  top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
  bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
  return top * (1 - fy) + bottom * fy


def _render_drop(image: np.ndarray, rng: np.random.Generator, radius: float
                 ) -> _Drop | None:
  """Renders one drop of `radius` pixels at a random place; None if off-image."""
  h, w, _ = image.shape
  cy = rng.uniform(-0.3 * radius, h + 0.3 * radius)
  cx = rng.uniform(-0.3 * radius, w + 0.3 * radius)
  aspect = rng.uniform(0.75, 1.2)  # < 1: wider than tall, > 1: a drop running down.
  ry, rx = radius * aspect, radius / aspect
  # Irregular outline: radius modulated by low harmonics of the polar angle.
  harmonics = rng.normal(0.0, 0.06, size=3)
  phases = rng.uniform(0, 2 * np.pi, size=3)
  zoom = rng.uniform(0.5, 1.6)  # < 1 magnifies, > 1 shows a wider (minified) view.
  lift = rng.uniform(0.5, 1.5)  # drops refract the scene above them.
  defocus = rng.uniform(0.4, 1.0) + 0.08 * radius
  edge = rng.uniform(1.0, 2.5) + 0.05 * radius  # soft, out-of-focus outline.
  opacity = rng.uniform(0.8, 1.0)
  shine = rng.uniform(0.25, 0.6)

  reach = 1.45 * max(ry, rx) + edge + 2 * defocus
  y0, y1 = max(int(cy - reach), 0), min(int(np.ceil(cy + reach)) + 1, h)
  x0, x1 = max(int(cx - reach), 0), min(int(np.ceil(cx + reach)) + 1, w)
  if y1 - y0 < 2 or x1 - x0 < 2:
    return None
  ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
  dy, dx = (ys - cy) / ry, (xs - cx) / rx
  dist = np.sqrt(dy * dy + dx * dx)
  theta = np.arctan2(dy, dx)
  outline = 1.0 + sum(a * np.cos((k + 2) * theta + p)
                      for k, (a, p) in enumerate(zip(harmonics, phases)))
  rel = dist / outline  # < 1 inside the drop.

  # Refraction: a flipped, fish-eye view of the scene around the drop.
  bend = zoom * (1.0 + 0.35 * rel * rel)
  src_y = cy - lift * radius - dy * ry * bend
  src_x = cx - dx * rx * bend
  color = _bilinear(image, src_y, src_x)
  color = ndimage.gaussian_filter(color, (defocus, defocus, 0))
  # Brighter, slightly cooler body; darker rim (total internal reflection).
  rim = np.clip(rel, 0, 1) ** 4
  color = color * (1.08 - 0.45 * rim)[..., None] + 0.04
  spot = np.exp(-(((dy + 0.45) / 0.22) ** 2 + ((dx + 0.35) / 0.22) ** 2))
  color = color + (shine * spot)[..., None]
  outline_px = np.minimum(ry, rx)
  alpha = np.clip((1.0 - rel) * outline_px / edge + 0.5, 0.0, 1.0) * opacity
  halo = np.clip((1.3 - rel) * 4.0, 0.0, 1.0)
  return _Drop(box=(slice(y0, y1), slice(x0, x1)), color=color.astype(np.float32),
               alpha=alpha[..., None].astype(np.float32), halo=halo.astype(np.float32))


def add_drops(image: np.ndarray, rng: np.random.Generator, style: _DropStyle
              ) -> np.ndarray:
  """Returns float32 `image` (H, W, 3 in [0, 1]) seen through drops on the lens."""
  h, w, _ = image.shape
  side = min(h, w)
  count = int(rng.integers(style.count[0], style.count[1] + 1))
  low, high = style.radius
  # Many small drops, few large ones: radius uniform in 1 / r.
  radii = side / rng.uniform(1 / high, 1 / low, size=count)
  drops = [d for r in radii if (d := _render_drop(image, rng, float(r))) is not None]
  if not drops:
    return image
  halo = np.zeros((h, w), np.float32)
  for drop in drops:
    np.maximum(halo[drop.box], drop.halo, out=halo[drop.box])
  sigma = max(0.6, 0.004 * side)
  behind = ndimage.gaussian_filter(image, (sigma, sigma, 0))
  out = image + (behind - image) * halo[..., None]
  for drop in drops:
    region = out[drop.box]
    region += (drop.color - region) * drop.alpha
  return out
