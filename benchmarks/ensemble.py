"""What the test-time ensemble (inference.ensemble) gains and costs on a workdir's test split.

  python -m benchmarks.ensemble --workdir=W [--checkpoint=latest] [--out=docs/results/ensemble.md]

Scores W's generator on its test split as `--mode=eval` does, in both norm modes, without
the ensemble and with each `inference.ensemble_transforms`, and prints one JSON line per setting (Y-PSNR,
Y-SSIM, gain over the identity, seconds per image), then one with the ensemble's gain and
cost in each mode. `--out` writes the same as a markdown table, under the command line.
"""

import json
import os
import shlex
import sys
import tempfile
import time

from absl import app
from absl import flags

from pix2pix_jax import datasets
from pix2pix_jax import evaluation
from pix2pix_jax import inference
from pix2pix_jax import translator as translator_lib
from pix2pix_jax import writers

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line's flags (defined when run as a script: importing defines none)."""
  flags.DEFINE_string("workdir", None, "The trained workdir.", required=True)
  flags.DEFINE_string("checkpoint", "latest", "latest, best or a step.")
  flags.DEFINE_string("out", "", "A markdown file for the table (optional).")


def measure(workdir: str, checkpoint: str = "latest") -> list[dict]:
  """One dict per (norm mode, ensemble): the model's and identity's means, s per image."""
  config, variables, _ = translator_lib.load_workdir(workdir, checkpoint)
  source = datasets.get_data_sources(config.data, seed=config.seed)["test"]
  pairs = list(evaluation.eval_pairs(config, source))
  rows = []
  for norm_mode in inference.NORM_MODES:
    for ensemble in ("off", *inference.ENSEMBLE_TRANSFORMS):
      config.inference.ensemble_transforms = ensemble if ensemble != "off" else "dihedral"
      translator = translator_lib.Translator(config, variables, norm_mode=norm_mode,
                                             ensemble=ensemble != "off")
      translator(pairs[0][1])  # compile outside the timing.
      with tempfile.TemporaryDirectory() as out_dir:
        start = time.perf_counter()
        summary = evaluation.evaluate(translator, iter(pairs), out_dir,
                                      protocol=evaluation.protocol_of(config))
        seconds = (time.perf_counter() - start) / len(pairs)
      rows.append({"norm_mode": norm_mode, "ensemble": ensemble,
                   "psnr_y": summary["model"]["psnr_y"], "ssim_y": summary["model"]["ssim_y"],
                   "gain_psnr_y": summary["model"]["psnr_y"] - summary["identity"]["psnr_y"],
                   "identity_psnr_y": summary["identity"]["psnr_y"],
                   "seconds_per_image": seconds, "num_images": len(pairs)})
  return rows


_ENSEMBLE_LABELS = {"off": "off", "dihedral": "`dihedral`: 8 flips and rotations",
                    "hflip": "`hflip`: the image and its mirror"}


def markdown(rows: list[dict], command: str) -> str:
  lines = ["# Test-time ensemble: what it gains and costs", "", f"```\n{command}\n```", "",
           f"{rows[0]['num_images']} test pairs; identity (the rainy input) "
           f"{rows[0]['identity_psnr_y']:.2f} dB Y-PSNR. Seconds per image include scoring "
           "and writing the gallery images (the same for both).", "",
           "| norm mode | ensemble | Y-PSNR (dB) | gain over identity (dB) | Y-SSIM | s / image |",
           "| --- | --- | ---: | ---: | ---: | ---: |"]
  for r in rows:
    lines.append(f"| `{r['norm_mode']}` | {_ENSEMBLE_LABELS[r['ensemble']]} "
                 f"| {r['psnr_y']:.2f} | {r['gain_psnr_y']:+.2f} | {r['ssim_y']:.4f} "
                 f"| {r['seconds_per_image']:.3f} |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  writers.quiet_library_logs()
  rows = measure(FLAGS.workdir, FLAGS.checkpoint)
  for row in rows:
    print(json.dumps(row))
  by = {(r["norm_mode"], r["ensemble"]): r for r in rows}
  summary = {}
  for mode in inference.NORM_MODES:
    for transforms in inference.ENSEMBLE_TRANSFORMS:
      on, off = by[mode, transforms], by[mode, "off"]
      summary[f"{mode}_{transforms}_gain_db"] = on["psnr_y"] - off["psnr_y"]
      summary[f"{mode}_{transforms}_time_ratio"] = (on["seconds_per_image"]
                                                    / off["seconds_per_image"])
  print(json.dumps(summary))
  if FLAGS.out:
    workdir = FLAGS.workdir
    shown = workdir if not os.path.isabs(workdir) else "W"
    args = [f"--workdir={shown}" if a.startswith("--workdir") else a for a in sys.argv[1:]]
    command = shlex.join(["python", "-m", "benchmarks.ensemble"] + args)
    with open(FLAGS.out, "w") as f:
      f.write(markdown(rows, command))


if __name__ == "__main__":
  define_flags()
  app.run(main)
