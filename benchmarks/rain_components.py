"""How much each part of the synthetic rain costs the identity (the rainy input itself).

  python -m benchmarks.rain_components [--cache_dir=DIR]

Builds the default test split (configs/default.py: 96px crops of the right quarters of the
photos, mixed rain) with each rendering option toggled, and prints one JSON line per
setting: the identity's Y-PSNR / Y-SSIM against the clean targets, and its difference
from the default's. The veil and the tint change every pixel (a global de-hazing and
colour task); streaks and drops are the rain.
"""

import io
import json
import tempfile

from absl import app
from absl import flags
import numpy as np
from PIL import Image

from configs import default
from pix2pix_jax import datasets
from pix2pix_jax import metrics
from pix2pix_jax import writers

_CACHE_DIR = flags.DEFINE_string("cache_dir", None, "Where to build (default: a temporary "
                                 "folder, deleted afterwards).")

SETTINGS = (
    ("default (streaks and drops)", {}),
    ("light rain only", {"rain": "light"}),
    ("heavy rain only", {"rain": "heavy"}),
    ("+ tint", {"tint": True}),
    ("+ veil", {"veil": True}),
    ("+ veil + tint (before 2.0.0)", {"veil": True, "tint": True}),
)


def identity_scores(cache_dir: str, **synthetic) -> dict[str, float]:
  """The identity's mean metrics on the default test split with `synthetic` overrides."""
  config = default.get_config()
  config.data.cache_dir = cache_dir
  config.data.synthetic.num_train = 1  # only the test split is scored.
  config.data.synthetic.update(synthetic)
  test = datasets.get_data_sources(config.data, seed=config.seed)["test"]
  accumulator = metrics.Accumulator()
  for index in range(len(test)):
    example = test[index]
    rainy, clean = (np.asarray(Image.open(io.BytesIO(example[k]))) for k in ("A", "B"))
    accumulator.add(rainy, clean)
  return accumulator.summary()


def main(argv):
  del argv
  writers.quiet_library_logs()
  with tempfile.TemporaryDirectory() as tmp:
    cache_dir = _CACHE_DIR.value or tmp
    baseline = None
    for name, synthetic in SETTINGS:
      scores = identity_scores(cache_dir, **synthetic)
      baseline = baseline or scores
      print(json.dumps({
          "setting": name, "overrides": {f"data.synthetic.{k}": v for k, v in synthetic.items()},
          "identity_psnr_y": round(scores["psnr_y"], 3),
          "identity_ssim_y": round(scores["ssim_y"], 4),
          "vs_default_psnr_y": round(scores["psnr_y"] - baseline["psnr_y"], 3)}), flush=True)


if __name__ == "__main__":
  app.run(main)
