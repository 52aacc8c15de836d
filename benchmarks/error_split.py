"""Where a model's error is: on the rain, or on the background it should leave alone.

  python -m benchmarks.error_split --workdir=W [--norm_mode=running] [--split=test]

Splits each test pair's pixels by whether the rain touched them (|Y(input) - Y(target)| above
`--threshold` levels of 255) and prints one JSON line: the share of rain pixels and, over all
pixels, the squared Y error per pixel of the identity (the rainy input) and of the model, on
the rain and on the background. A model below the identity has either left the rain (its
rain error is close to the identity's) or damaged the background (its background error,
zero for the identity, is large): the fix differs.
"""

import json

from absl import app
from absl import flags
import numpy as np

from pix2pix_jax import datasets
from pix2pix_jax import evaluation
from pix2pix_jax import translator as translator_lib
from pix2pix_jax import writers

def luma(image: np.ndarray) -> np.ndarray:
  """Full-range BT.601 Y of a uint8 RGB image, float64."""
  image = image.astype(np.float64)
  return 0.299 * image[..., 0] + 0.587 * image[..., 1] + 0.114 * image[..., 2]


def error_split(translator, pairs, threshold: float) -> dict[str, float]:
  """Squared Y error per pixel (over all pixels) on rain and background, identity and model."""
  sums = dict(rain_identity=0.0, rain_model=0.0, background_identity=0.0,
              background_model=0.0)
  pixels = rain_pixels = 0
  for _, rainy, clean in pairs:
    y_rainy, y_clean, y_out = luma(rainy), luma(clean), luma(translator(rainy))
    rain = np.abs(y_rainy - y_clean) > threshold
    for name, y in (("identity", y_rainy), ("model", y_out)):
      squared = (y - y_clean) ** 2
      sums[f"rain_{name}"] += squared[rain].sum()
      sums[f"background_{name}"] += squared[~rain].sum()
    pixels += rain.size
    rain_pixels += int(rain.sum())
  result = {key: round(value / pixels, 3) for key, value in sums.items()}
  result["rain_fraction"] = round(rain_pixels / pixels, 4)
  return result


def _define_flags() -> None:
  """The command line's flags (defined only when run as a script: its flag names are shared
  with the other tools, which may be imported in the same process, e.g. by the tests)."""
  flags.DEFINE_string("workdir", None, "A trained workdir.", required=True)
  flags.DEFINE_enum("norm_mode", None, ["paper", "running"],
                    "Norm mode (default: the config's, `auto` resolved).")
  flags.DEFINE_enum("split", "test", ["train", "test"], "The split to score.")
  flags.DEFINE_integer("examples", 100, "At most this many pairs.")
  flags.DEFINE_float("threshold", 4.0, "Rain: |dY| above this, in levels of 255.")


def main(argv):
  del argv
  args = flags.FLAGS
  writers.quiet_library_logs()
  config, variables, description = translator_lib.load_workdir(args.workdir)
  translator = translator_lib.Translator(config, variables, norm_mode=args.norm_mode)
  source = datasets.get_data_sources(config.data, seed=config.seed)[args.split]
  result = error_split(translator, evaluation.eval_pairs(config, source, args.examples),
                       args.threshold)
  print(json.dumps({"checkpoint": description, "norm_mode": translator.norm_mode,
                    "split": args.split, **result}))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
