"""A suite's report: the markdown table (W/<suite>.md) and the figure (W/<suite>.png)."""

import csv
import dataclasses
import datetime
import math
import os
import platform
from typing import Any, Mapping, Optional, Sequence

import jax
import ml_collections
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pix2pix_jax import configuration

FIGURE_EXAMPLES = 6  # test images in the figure, from the heaviest rain to the lightest.
_METRICS = (("psnr_y", "Y-PSNR (dB)", "{:.2f}"), ("ssim_y", "Y-SSIM", "{:.4f}"),
            ("hist_L", "hist L", "{:.3f}"), ("hist_a", "hist a", "{:.3f}"),
            ("hist_b", "hist b", "{:.3f}"))


@dataclasses.dataclass
class Context:
  """What the table's header says about the run."""
  title: str
  suite: str
  scale: str
  command: str
  scale_overrides: Mapping[str, Any]  # of configs/default.py[:base_variant], incl. the CLI's
  base_variant: str
  num_train: int
  describe_discriminator: bool = False
  at_crop_size: bool = True  # test pairs brought to the crop size (else scored whole).


def discriminator_fields(crop_size: int, d_layers: int) -> list[tuple[int, int]]:
  """[start, end) of the input rows each row of the PatchGAN's logits depends on.

  n stride-2 4x4 convs then two stride-1 4x4 convs, all padded by 1; n = 0 is the 1x1
  PixelGAN. Rows outside [0, crop_size) are zero padding.
  """
  if d_layers == 0:
    return [(i, i + 1) for i in range(crop_size)]
  jump = 2 ** d_layers
  field = 1 + 3 + 3  # the two stride-1 convs, from the output back.
  for _ in range(d_layers):
    field = 2 * field + 2
  padding = (jump - 1) + 2 * jump  # sum of each layer's padding times its input jump.
  side = configuration.discriminator_output_size(crop_size, d_layers)
  return [(i * jump - padding, i * jump - padding + field) for i in range(side)]


def describe_discriminator(config: ml_collections.ConfigDict) -> str:
  """E.g. '14x14 logits, each on a 70x70 patch' at the config's crop size."""
  crop, d_layers = config.data.crop_size, config.model.d_layers
  fields = discriminator_fields(crop, d_layers)
  side, size = len(fields), fields[0][1] - fields[0][0]
  if size < crop:
    return f"{side}x{side} logits, each on a {size}x{size} patch"
  covered = [min(end, crop) - max(start, 0) for start, end in fields]
  if min(covered) == crop:
    return (f"{side}x{side} logits, each on the whole {crop}x{crop} image (a {size}x{size} "
            f"field, mostly zero padding)")
  return (f"{side}x{side} logits on {size}x{size} fields, each covering at least "
          f"{min(covered) / crop:.0%} of the image's side")


def _format_value(value: Any) -> str:
  return repr(value) if isinstance(value, str) else str(value)


def _overrides_text(overrides: Mapping[str, Any]) -> str:
  if not overrides:
    return "(none: the default)"
  return ", ".join(f"`{key}={_format_value(value)}`" for key, value in overrides.items())


def _number(value: Optional[float], fmt: str) -> str:
  if value is None:
    return "-"
  return "inf" if math.isinf(value) else fmt.format(value)


def _scale_text(context: Context, config: ml_collections.ConfigDict) -> str:
  data, model = config.data, config.model
  decay = min(config.decay_steps, config.num_train_steps)
  return (
      f"`{context.scale}`: {data.crop_size}x{data.crop_size} crops ("
      + (f"random crops of the stored {data.load_size}x{data.load_size} pairs, no resize, "
         "and a flip" if data.preprocess == "crop" else
         f"resized to {data.load_size}x{data.load_size}, then a random crop and flip")
      + f"), U-Net of {model.num_downs} levels, `model.ngf={model.ngf}`, "
      f"`model.ndf={model.ndf}` (the paper: 64, 64), batch {config.batch_size}, "
      f"lambda_L1 = {config.loss.l1_weight:g} where the L1 term is on (the paper: 100), "
      f"{config.num_train_steps} steps (learning "
      f"rate {config.optim.lr:g}, constant then linear to 0 over the last {decay}), seed "
      f"{config.seed}. Overrides of `configs/default.py"
      f"{':' + context.base_variant if context.base_variant else ''}`: "
      f"{_overrides_text(context.scale_overrides)}.")


def _dataset_text(context: Context, config: ml_collections.ConfigDict, num_test: int) -> str:
  data = config.data
  if data.source == "synthetic_rain":
    photos = data.path or "scikit-image's bundled photographs"
    what = (f"`synthetic_rain`: {data.synthetic.rain} synthetic rain (streaks and drops"
            + (", veil" if data.synthetic.get("veil") else "")
            + (", tint" if data.synthetic.get("tint") else "")
            + f") rendered on crops of {photos}, stored at {data.synthetic.image_size}px "
            f"(test crops at {data.synthetic.get('test_size', data.synthetic.image_size)}px, "
            f"split by {data.synthetic.get('split', 'photos')}: no test pixel is seen in "
            "training)")
  else:
    what = f"`{data.source}` from `{data.path}`"
  return f"{what}. {context.num_train} training pairs, {num_test} test pairs."


def markdown_table(context: Context, configs: Sequence[ml_collections.ConfigDict],
                   results: Sequence[Mapping[str, Any]], run_dirs: Sequence[str]) -> str:
  """W/<suite>.md: a header saying how the numbers were made, then one row per variant."""
  config = configs[0]
  scored = [r for r in results if "model" in r]
  num_test = scored[0]["num_test"] if scored else 0
  norm_mode = scored[0]["norm_mode"] if scored else config.inference.norm_mode
  crop = config.data.crop_size
  other_mode = "running" if norm_mode == "paper" else "paper"
  lines = [
      f"# {context.title}, `{context.scale}` scale", "",
      f"Command: `{context.command}`", "",
      f"Date: {datetime.date.today().isoformat()}; machine: {platform.machine()}, "
      f"{os.cpu_count()} CPU cores, jax {jax.__version__} on {jax.default_backend()}.", "",
      f"- Scale {_scale_text(context, config)}",
      f"- Dataset: {_dataset_text(context, config, num_test)}",
      "- Evaluation: every test pair, " + (
          f"brought to {crop}x{crop} as in training (`evaluation.eval_pairs(at_crop_size"
          "=True)`)" if context.at_crop_size else
          "whole at its stored size (training crops it without rescaling), as "
          "`--mode=eval` scores it") + f", generator in `{norm_mode}` norm mode"
      + (" (batch statistics of each image alone, dropout on: the paper's and the "
         "reference's test time)" if norm_mode == "paper" else
         " (running batch-norm statistics, no dropout)")
      + f" (`inference.norm_mode=auto` after training at batch {config.batch_size}); "
      f"gain: its Y-PSNR minus the identity's; `{other_mode}`: the Y-PSNR of the same "
      "generator in the other norm mode. Y-PSNR and Y-SSIM on the "
      "BT.601 luma, mean over images; hist L / a / b: histogram intersection of the "
      "outputs' and targets' Lab marginals over the test set (1 = the same distribution; "
      "the paper's colour experiment). The identity row scores the rainy input itself.",
      "- s/step: median training time per step on this machine (shared; noisy).",
      f"- Figure (`{context.suite}.png`, below): rows input, each variant, target; columns "
      f"{min(FIGURE_EXAMPLES, num_test)} test images from the heaviest rain (left) to the "
      "lightest (evenly spaced quantiles of the input's own Y-PSNR).",
  ]
  if context.describe_discriminator:
    lines.append(f"- The D column: what each discriminator outputs for a {crop}x{crop} "
                 "input (a logit's field beyond the image is zero padding).")
  lines += ["", "What this does and does not show: each variant is trained with the same "
            "data, seed, schedule and test images, so the rows compare the variants under "
            "these conditions; " + (
                "the scale is far below the paper's (smaller crops and networks, a short "
                "schedule) and " if context.scale != "paper" else "")
            + "the data set is what `data.source` names, not the paper's (its tables score "
            "Cityscapes with FCN). The numbers are not comparable with the paper's.", ""]
  header = ["variant", "overrides of the default"]
  if context.describe_discriminator:
    header.append("D")
  header += ([_METRICS[0][1], "gain (dB)", f"Y-PSNR, `{other_mode}`"]
             + [name for _, name, _ in _METRICS[1:]] + ["s/step", "run"])
  lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
  identity = scored[0]["identity"] if scored else {}
  if identity:
    row = ["identity (the input)", "-"] + (["-"] if context.describe_discriminator else [])
    row += [_number(identity.get("psnr_y"), "{:.2f}"), "0", "-"]
    row += [_number(identity.get(key), fmt) for key, _, fmt in _METRICS[1:]] + ["-", "-"]
    lines.append("| " + " | ".join(row) + " |")
  for variant_config, result, run_dir in zip(configs, results, run_dirs):
    row = [result["label"], _overrides_text(result["overrides"])]
    if context.describe_discriminator:
      row.append(describe_discriminator(variant_config))
    if "model" in result:
      psnr = result["model"].get("psnr_y")
      gain = (psnr - identity["psnr_y"] if psnr is not None and "psnr_y" in identity
              else None)
      other = result.get("by_norm_mode", {}).get(other_mode, {}).get("psnr_y")
      row += [_number(psnr, "{:.2f}"), _number(gain, "{:+.2f}"), _number(other, "{:.2f}")]
      row += [_number(result["model"].get(key), fmt) for key, _, fmt in _METRICS[1:]]
    else:
      row += [result.get("error", "failed")] + ["-"] * (len(_METRICS) + 1)
    row += [_number(result.get("seconds_per_step"), "{:.3f}"), f"`{run_dir}`"]
    lines.append("| " + " | ".join(row) + " |")
  lines += ["", "Each run's per-image scores and gallery: `<run>/eval/per_image.csv`, "
            "`<run>/eval/index.html` (in the workdir the command wrote).", "",
            f"![{context.title}]({context.suite}.png)", ""]
  return "\n".join(lines)


def figure_indices(num_test: int, count: int = FIGURE_EXAMPLES,
                   identity_psnr: Optional[Sequence[float]] = None) -> list[int]:
  """`count` test indices, the same for every variant: given the inputs' own Y-PSNR
  (`identity_psnr`, one per test image), evenly spaced quantiles of it, from the heaviest
  rain to the lightest; else evenly spaced over the split."""
  count = min(count, num_test)
  order = (np.argsort(identity_psnr, kind="stable") if identity_psnr is not None
           else np.arange(num_test))
  positions = sorted({int(round(i)) for i in np.linspace(0, num_test - 1, count)})
  return [int(order[p]) for p in positions]


def identity_psnr_y(run_dir: str) -> Optional[list[float]]:
  """Each test input's Y-PSNR against its target, from <run>/eval/per_image.csv."""
  path = os.path.join(run_dir, "eval", "per_image.csv")
  if not os.path.exists(path):
    return None
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  if not rows or not rows[0].get("identity_psnr_y"):
    return None
  return [float(row["identity_psnr_y"]) for row in sorted(rows, key=lambda r: int(r["index"]))]


def _load(path: str) -> Optional[np.ndarray]:
  if not os.path.exists(path):
    return None
  with Image.open(path) as image:
    return np.asarray(image.convert("RGB"))


def figure(run_dirs: Sequence[str], labels: Sequence[str], num_test: int, path: str,
           count: int = FIGURE_EXAMPLES) -> np.ndarray:
  """Writes (and returns) the suite's figure: rows input, each variant, target; one
  column per test image (the eval images in <run>/eval/images; see `figure_indices`).
  A variant without outputs (diverged) gets grey tiles."""
  def image_dir(run):
    return os.path.join(run, "eval", "images")
  reference = next((run for run in run_dirs
                    if os.path.exists(os.path.join(run, "eval", "per_image.csv"))), None)
  if reference is None:
    raise FileNotFoundError(f"No evaluated run among {list(run_dirs)}: nothing to show.")
  indices = figure_indices(num_test, count, identity_psnr_y(reference))
  rows = [("input", reference, "input")]
  rows += [(label, run, "output") for label, run in zip(labels, run_dirs)]
  rows.append(("target", reference, "target"))
  first = _load(os.path.join(image_dir(reference), f"{indices[0]:04d}_input.png"))
  tile_h, tile_w = first.shape[:2]
  font = ImageFont.load_default()
  probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
  label_w = 8 + max(int(probe.textlength(label, font=font)) for label, _, _ in rows)
  gap = 2
  canvas = Image.new("RGB", (label_w + len(indices) * (tile_w + gap),
                             len(rows) * (tile_h + gap)), "white")
  draw = ImageDraw.Draw(canvas)
  for r, (label, run, kind) in enumerate(rows):
    top = r * (tile_h + gap)
    draw.text((4, top + tile_h // 2 - 5), label, fill="black", font=font)
    for c, index in enumerate(indices):
      tile = _load(os.path.join(image_dir(run), f"{index:04d}_{kind}.png"))
      if tile is None:
        tile = np.full((tile_h, tile_w, 3), 128, np.uint8)
      canvas.paste(Image.fromarray(tile), (label_w + c * (tile_w + gap), top))
  canvas.save(path)
  return np.asarray(canvas)
