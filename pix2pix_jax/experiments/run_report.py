"""A trained workdir as a results page: the eval table, the gain curve, a before / after figure.

  python -m pix2pix_jax.experiments.run_report --workdir=W --out=docs/results/cpu

writes OUT.md and OUT.png. It evaluates W on its test split in both norm modes (W/eval,
unless that is there already), reads the validation rows of W/metrics.jsonl (the gain in
Y-PSNR over the identity, the rainy input itself, as training went) and the run's wall
time from W/train.log, and draws rows input / output / target for test images from the
heaviest rain to the lightest. Paths in OUT.md are relative to the repository (or `W`).
"""

import datetime
import json
import os
import re
from typing import Any, Optional, Sequence

from absl import app
from absl import flags
from absl import logging

from pix2pix_jax import evaluation
from pix2pix_jax import writers
from pix2pix_jax.experiments import report

_LOG_TIME = re.compile(r"^[IWEF](\d\d)(\d\d) (\d\d):(\d\d):(\d\d)")


def validation_rows(workdir: str) -> list[dict[str, Any]]:
  """The rows of W/metrics.jsonl that hold validation scores, in step order."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return sorted((r for r in rows if "val_psnr_y" in r), key=lambda r: r["step"])


def log_span_minutes(workdir: str) -> Optional[float]:
  """Minutes from the first to the last timestamped line of W/train.log (None if absent):
  the run from start-up (dataset build and compilation included) to its last line."""
  path = os.path.join(workdir, "train.log")
  if not os.path.exists(path):
    return None
  stamps = []
  with open(path) as f:
    for line in f:
      match = _LOG_TIME.match(line)
      if match:
        month, day, hour, minute, second = (int(g) for g in match.groups())
        stamps.append(datetime.datetime(2000, month, day, hour, minute, second))
  if len(stamps) < 2:
    return None
  return (stamps[-1] - stamps[0]).total_seconds() / 60


def gain_curve(rows: Sequence[dict[str, Any]]) -> list[str]:
  """Markdown lines: per validation step, the gain over the identity in both norm modes."""
  if not rows or "val_identity_psnr_y" not in rows[0]:
    return []
  start = rows[0]["time"]
  lines = ["| step | minutes since the first validation | gain, running (dB) | "
           "gain, paper (dB) |", "|---:|---:|---:|---:|"]
  for row in rows:
    identity = row["val_identity_psnr_y"]
    gains = [row.get(f"val_{mode}_psnr_y") for mode in ("running", "paper")]
    cells = [f"{g - identity:+.2f}" if g is not None else "-" for g in gains]
    lines.append(f"| {row['step']} | {(row['time'] - start) / 60:.1f} | "
                 + " | ".join(cells) + " |")
  return lines


def write(workdir: str, out: str, *, command: str, trained_by: str = ""
          ) -> dict[str, Any]:
  """Writes OUT.md and OUT.png for `workdir`; returns the eval summary."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  metrics_path = os.path.join(workdir, "eval", "metrics.json")
  if os.path.exists(metrics_path):
    with open(metrics_path) as f:
      summary = json.load(f)
  else:
    summary = evaluation.evaluate_workdir(workdir)
  with open(os.path.join(workdir, "config.json")) as f:
    config = json.load(f)
  num_test = len(report.identity_psnr_y(workdir) or [])
  mode = summary["norm_mode"]
  report.figure([workdir], [f"output ({mode})"], num_test, out + ".png")
  identity = summary["identity"]
  lines = [
      f"# {os.path.basename(out)}: what training on this machine buys", "",
      f"Made by: `{command}`" + (f", after training W with `{trained_by}`"
                                 if trained_by else "") + ".", "",
      f"- Workdir `W`: `{config['data']['source']}` data, {config['num_train_steps']} steps "
      f"at batch {config['batch_size']}, {config['data']['crop_size']}px crops, U-Net of "
      f"{config['model']['num_downs']} levels (ngf {config['model']['ngf']}), "
      f"`loss.gan={config['loss']['gan']}` + {config['loss']['l1_weight']:g} x L1.",
  ]
  minutes = log_span_minutes(workdir)
  if minutes is not None:
    lines.append(f"- Wall time, start-up to the last line of `W/train.log` (dataset build, "
                 f"compilation, training, validation): {minutes:.1f} min.")
  lines += [
      f"- Test split: {num_test} pairs, each scored at its stored size; the identity is the "
      "rainy input itself scored against the clean target.", "",
      "| | Y-PSNR (dB) | gain over identity (dB) | Y-SSIM |", "|---|---:|---:|---:|"]
  for name, means in summary["by_norm_mode"].items():
    label = f"model, `{name}` norm mode" + (" (the default)" if name == mode else "")
    lines.append(f"| {label} | {means['psnr_y']:.2f} | "
                 f"{means['psnr_y'] - identity['psnr_y']:+.2f} | {means['ssim_y']:.4f} |")
  lines += [f"| identity (the rainy input) | {identity['psnr_y']:.2f} | 0 | "
            f"{identity['ssim_y']:.4f} |", ""]
  curve = gain_curve(validation_rows(workdir))
  if curve:
    lines += ["Gain over the identity during training (in-training validation on the "
              "first `eval_examples` test pairs):", ""] + curve + [""]
  lines += [f"Rows: the rainy input, the output ({mode} mode), the clean target; columns: "
            "test images from the heaviest rain to the lightest.", "",
            f"![before and after]({os.path.basename(out)}.png)", ""]
  with open(out + ".md", "w") as f:
    f.write("\n".join(lines))
  return summary


_WORKDIR = flags.DEFINE_string("workdir", None, "A trained workdir.", required=True)
_TRAINED_BY = flags.DEFINE_string(
    "trained_by", "make train WORKDIR=W", "The command that trained W, for the header.")
_OUT = flags.DEFINE_string("out", None, "Output path without extension (OUT.md, OUT.png).",
                           required=True)


def main(argv):
  del argv
  writers.quiet_library_logs()
  command = (f"python -m pix2pix_jax.experiments.run_report --workdir=W "
             f"--out={os.path.relpath(_OUT.value)}")
  summary = write(_WORKDIR.value, _OUT.value, command=command, trained_by=_TRAINED_BY.value)
  logging.info("Wrote %s.md and %s.png.", _OUT.value, _OUT.value)
  print(evaluation.format_table(summary))


if __name__ == "__main__":
  app.run(main)
