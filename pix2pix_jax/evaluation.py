"""Evaluation on a test split, predicting folders of images, and the reports they write.

`evaluate_workdir(W)` translates every test pair at its own resolution with a `Translator`
(reflect-padded, cropped back) and writes into W/eval:
  metrics.json    {"model": {...}, "identity": {...}}: means of PSNR / SSIM on Y and RGB and
                  the Lab histogram intersections; "identity" scores the input itself, the
                  baseline a model must beat
  per_image.csv   one row per test pair, model and identity metrics
  index.html      a sortable gallery input | output | target with per-image metrics
  images/         the PNGs the gallery shows
`predict_path(translator, input, output)` translates a file or a folder of images.
`Validator` scores a fixed test subset during training and keeps the best weights in W/best.
"""

import csv
import html
import json
import math
import os
import sys
import time
from typing import Any, Iterator, Mapping, Optional

from absl import logging
import jax
import numpy as np
from PIL import Image
import tqdm

from pix2pix_jax import checkpoints
from pix2pix_jax import configuration
from pix2pix_jax import datasets
from pix2pix_jax import inference
from pix2pix_jax import input_pipeline
from pix2pix_jax import metrics
from pix2pix_jax import translator as translator_lib

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")


def _progress(total: int, unit: str) -> tqdm.tqdm:
  return tqdm.tqdm(total=total, unit=unit, dynamic_ncols=True, file=sys.stderr,
                   mininterval=1.0 if sys.stderr.isatty() else 30.0)


def _as_array(image: Image.Image) -> np.ndarray:
  array = np.asarray(image)
  return array[..., None] if array.ndim == 2 else array


def eval_pairs(config, source, max_examples: Optional[int] = None, *,
               at_crop_size: bool = False) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
  """(name, input, target) uint8 HxWxC at the stored resolution, per data.direction.

  With `at_crop_size`, each image is brought to data.crop_size square as the pipeline's
  test batches are (`input_pipeline.eval_geometry`: resized or centre-cropped), i.e. at the
  scale the model was trained at.
  """
  prep = input_pipeline.Preprocessing.from_config(config)
  count = len(source) if max_examples is None else min(max_examples, len(source))
  for index in range(count):
    example = source[index]
    name = example.get("name", b"") if hasattr(example, "get") else b""
    name = name.decode() if isinstance(name, bytes) else str(name)
    images = input_pipeline.input_target(example, prep)
    if at_crop_size:
      inputs, target = (input_pipeline.eval_geometry(image, prep) for image in images)
    else:
      inputs, target = (_as_array(image) for image in images)
    yield name or f"{index:06d}", inputs, target


def _save_image(image: np.ndarray, path: str) -> None:
  """Saves a uint8 HxWxC image in the format of the path's extension (JPEG at quality 95)."""
  options = {"quality": 95} if path.lower().endswith((".jpg", ".jpeg")) else {}
  Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(path, **options)


def protocol_of(config) -> str:
  """The config's `eval.protocol` (`raindrop` where an older config lacks the key)."""
  return config.get("eval", {}).get("protocol", metrics.DEFAULT_PROTOCOL)


def evaluate(translator: translator_lib.Translator, pairs, out_dir: str, *,
             total: Optional[int] = None,
             other: Optional[translator_lib.Translator] = None,
             protocol: str = metrics.DEFAULT_PROTOCOL,
             about: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
  """Scores `translator` on (name, input, target) pairs; writes the reports into out_dir.

  `pairs` is iterated once (images are not kept); `total` sizes the progress bar. `other`
  (the same generator in the other norm mode) is scored beside it; `protocol` is one of
  metrics.PROTOCOLS; `about` (e.g. workdir, checkpoint, date) heads the gallery and is kept
  in the summary.

  Returns {"norm_mode": translator's, "protocol", "model": means, "identity": means, "by_norm_mode":
  {mode: means} for translator (and other)}; "identity" is empty when inputs and targets
  differ in shape (e.g. grey to colour), where the input cannot be scored against the
  target. Per image (per_image.csv, index.html): model_*, identity_*, gain_psnr_y (model
  minus identity) and, with `other`, MODE_psnr_y / MODE_ssim_y of the other mode.
  """
  image_dir = os.path.join(out_dir, "images")
  os.makedirs(image_dir, exist_ok=True)
  model, identity, other_model = (metrics.Accumulator(protocol) for _ in range(3))
  rows = []
  with _progress(total, "image") as progress:
    for index, (name, inputs, target) in enumerate(pairs):
      output = translator(inputs)
      row = {"index": index, "name": name,
             **{f"model_{k}": v for k, v in model.add(output, target).items()}}
      images = [("input", inputs), ("output", output), ("target", target)]
      if inputs.shape == target.shape:
        row.update({f"identity_{k}": v for k, v in identity.add(inputs, target).items()})
        row["gain_psnr_y"] = row["model_psnr_y"] - row["identity_psnr_y"]
      if other is not None:
        other_output = other(inputs)
        scores = other_model.add(other_output, target)
        row.update({f"{other.norm_mode}_{k}": scores[k] for k in ("psnr_y", "ssim_y")})
        images.append((f"output_{other.norm_mode}", other_output))
      for kind, image in images:
        _save_image(image, os.path.join(image_dir, f"{index:04d}_{kind}.png"))
      rows.append(row)
      progress.update()
  summary = {"norm_mode": translator.norm_mode, "protocol": protocol,
             "ensemble": translator.ensemble, "about": dict(about or {}),
             "num_images": len(model.per_image), "model": model.summary(),
             "identity": identity.summary() if identity.per_image else {},
             "by_norm_mode": {translator.norm_mode: model.summary()}}
  if other is not None:
    summary["by_norm_mode"][other.norm_mode] = other_model.summary()
  _write_json(summary, os.path.join(out_dir, "metrics.json"))
  _write_csv(rows, os.path.join(out_dir, "per_image.csv"))
  _write_gallery(rows, summary, os.path.join(out_dir, "index.html"))
  return summary


def evaluate_workdir(workdir: str, *, checkpoint: str = "latest",
                     overrides: Optional[Mapping[str, Any]] = None,
                     norm_mode: Optional[str] = None, out_dir: Optional[str] = None
                     ) -> dict[str, dict[str, float]]:
  """Evaluates a workdir's generator on its (or the overridden) test split into `out_dir`
  (default W/eval; another folder for a workdir you cannot write to).

  The generator is scored in both norm modes side by side; `norm_mode` (default: the
  config's, `auto` resolved) is the one reported as "model" and shown in the gallery.
  """
  config, variables, description = translator_lib.load_workdir(workdir, checkpoint, overrides)
  names = set_names(config)
  sets = (datasets.test_sets(config.data, sets_dir(config), names)
          if names is not None else None)  # checked before anything compiles.
  translator = translator_lib.Translator(config, variables, norm_mode=norm_mode)
  other_mode, = (m for m in inference.NORM_MODES if m != translator.norm_mode)
  other = translator_lib.Translator(config, variables, norm_mode=other_mode)
  logging.info("Evaluating checkpoint %s in %s norm mode (and %s beside it).", description,
               translator.norm_mode, other_mode)
  out_dir = os.path.abspath(os.path.expanduser(
      out_dir or os.path.join(os.path.expanduser(workdir), "eval")))
  protocol = protocol_of(config)
  about = {"workdir": os.path.abspath(os.path.expanduser(workdir)), "checkpoint": description,
           "date": time.strftime("%Y-%m-%d %H:%M")}
  if sets is not None:
    return evaluate_sets(translator, other, config, sets, out_dir, protocol=protocol,
                         about=about)
  source = datasets.get_data_sources(config.data, seed=config.seed)["test"]
  summary = evaluate(translator, eval_pairs(config, source), out_dir, total=len(source),
                     other=other, protocol=protocol, about={**about, "test set": "test split"})
  logging.info("Wrote %s/metrics.json, per_image.csv and index.html.", out_dir)
  return summary


def set_names(config) -> Optional[list[str]]:
  """`eval.sets`: None for the config's own test split (""), [] for every set folder
  ("all"), else the named sets."""
  value = str(config.get("eval", {}).get("sets", "") or "").strip()
  if not value:
    return None
  return [] if value == "all" else [name.strip() for name in value.split(",") if name.strip()]


def sets_dir(config) -> str:
  """`eval.sets_dir`, or data.path/test (Rain13K's layout: test/<set>/{input,target}/)."""
  folder = config.get("eval", {}).get("sets_dir", "")
  if folder:
    return folder
  if not config.data.get("path"):
    raise configuration.ConfigError(
        "eval.sets needs the folder holding the sets: set eval.sets_dir (or data.path, "
        "whose test/ holds them).")
  return os.path.join(config.data.path, "test")


def average_of_sets(per_set: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
  """The mean of the set means, per metric (as deraining papers print their "average")."""
  def mean(key, subkey=None):
    tables = [summary[key] if subkey is None else summary[key].get(subkey, {})
              for summary in per_set.values()]
    if not all(tables):
      return {}
    return {metric: float(np.mean([t[metric] for t in tables])) for metric in tables[0]}
  first = next(iter(per_set.values()))
  return {"model": mean("model"), "identity": mean("identity"),
          "by_norm_mode": {mode: mean("by_norm_mode", mode) for mode in first["by_norm_mode"]}}


def evaluate_sets(translator, other, config, sets: Mapping[str, Any], out_dir: str, *,
                  protocol: str, about: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
  """Scores every set into out_dir/<set>/ (its own gallery) and writes one table of them.

  metrics.json: {"norm_mode", "protocol", "sets": {name: `evaluate`'s summary},
  "average": {"model", "identity", "by_norm_mode"} (the mean of the set means), and
  "model", "identity", "by_norm_mode" (the average again, for readers of one-set files)};
  sets.md: a markdown table, a row per set and the average; index.html links the galleries.
  """
  per_set = {}
  for name, source in sets.items():
    logging.info("Scoring the test set %s (%d pairs).", name, len(source))
    per_set[name] = evaluate(translator, eval_pairs(config, source),
                             os.path.join(out_dir, name), total=len(source), other=other,
                             protocol=protocol, about={**(about or {}), "test set": name})
  average = average_of_sets(per_set)
  summary = {"norm_mode": translator.norm_mode, "protocol": protocol,
             "ensemble": translator.ensemble, "about": dict(about or {}), "sets": per_set,
             "average": average, **average}
  os.makedirs(out_dir, exist_ok=True)
  _write_json(summary, os.path.join(out_dir, "metrics.json"))
  with open(os.path.join(out_dir, "sets.md"), "w") as f:
    f.write(format_sets_markdown(summary) + "\n")
  _write_sets_page(summary, os.path.join(out_dir, "index.html"))
  logging.info("Wrote %s/metrics.json, sets.md, index.html and a gallery per set.", out_dir)
  return summary


def _set_rows(summary: Mapping[str, Any]) -> list[tuple[str, Any, list[Optional[float]]]]:
  """(set, images, [Y-PSNR, Y-SSIM, identity Y-PSNR, identity Y-SSIM, gain, other mode's
  Y-PSNR]) for each set, then the average."""
  mode = summary["norm_mode"]
  def cells(part):
    model, identity = part["model"], part.get("identity") or {}
    others = [m for m in part.get("by_norm_mode", {}) if m != mode]
    gain = (model["psnr_y"] - identity["psnr_y"]) if identity else None
    return [model["psnr_y"], model["ssim_y"], identity.get("psnr_y"), identity.get("ssim_y"),
            gain, part["by_norm_mode"][others[0]]["psnr_y"] if others else None]
  rows = [(name, part["num_images"], cells(part)) for name, part in summary["sets"].items()]
  return rows + [("average", "", cells(summary["average"]))]


def _set_headings(summary) -> list[str]:
  other = [m for m in summary["average"]["by_norm_mode"] if m != summary["norm_mode"]]
  return ["set", "images", f"Y-PSNR ({summary['norm_mode']})", "Y-SSIM", "identity Y-PSNR",
          "identity Y-SSIM", "gain (dB)"] + ([f"Y-PSNR ({other[0]})"] if other else [])


_SET_DIGITS = (2, 4, 2, 4, 2, 2)  # decimals of each _set_rows value: dB 2, SSIM 4.


def _cells(values: list[Optional[float]], count: int) -> list[str]:
  """The first `count` values of a set row, formatted ('-' where missing)."""
  return ["-" if v is None else f"{v:.{d}f}" for v, d in zip(values, _SET_DIGITS)][:count]


def format_sets_table(summary: Mapping[str, Any]) -> str:
  """Plain text: a row per set and the average (the mean of the set means)."""
  headings = _set_headings(summary)
  rows = [[name, str(count)] + _cells(values, len(headings) - 2)
          for name, count, values in _set_rows(summary)]
  widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headings)]
  line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths)))
  return "\n".join([line(headings)] + [line(r) for r in rows])


def format_sets_markdown(summary: Mapping[str, Any]) -> str:
  """The same table in markdown, each set linking its gallery."""
  headings = _set_headings(summary)
  lines = [f"Protocol `{summary['protocol']}`, norm mode `{summary['norm_mode']}`; average: "
           "the mean of the set means.", "",
           "| " + " | ".join(headings) + " |", "|" + "---|" + "---:|" * (len(headings) - 1)]
  for name, count, values in _set_rows(summary):
    label = f"[{name}]({name}/index.html)" if count != "" else f"**{name}**"
    cells = _cells(values, len(headings) - 2)
    lines.append(f"| {label} | {count} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _write_sets_page(summary: Mapping[str, Any], path: str) -> None:
  """index.html of a multi-set evaluation: the table, each set linking its gallery."""
  headings = _set_headings(summary)
  out = ["<!doctype html><html><head><meta charset='utf-8'><title>pix2pix_jax eval</title>",
         "<link rel='icon' href='data:,'>",
         f"<style>{_GALLERY_STYLE}</style></head><body><h1>Evaluation: "
         f"{len(summary['sets'])} test sets</h1>", _about_paragraph(summary),
         "<p>average: the mean of the set means. Each set links its gallery.</p>"
         "<table id='sets'><tr>"
         + "".join(f"<th>{html.escape(h)}</th>" for h in headings) + "</tr>"]
  for name, count, values in _set_rows(summary):
    label = (f"<a href='{html.escape(name, quote=True)}/index.html'>{html.escape(name)}</a>"
             if count != "" else "<b>average</b>")
    cells = _cells(values, len(headings) - 2)
    out.append(f"<tr><td>{label}</td><td>{count}</td>"
               + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
  out.append("</table></body></html>")
  with open(path, "w") as f:
    f.write("\n".join(out))


def _columns(summary: Mapping[str, Any]) -> list[tuple[str, Mapping[str, float]]]:
  """(heading, means) of the model in its norm mode, the other mode, the identity."""
  mode = summary.get("norm_mode")
  columns = [(f"model ({mode})" if mode else "model", summary["model"])]
  columns += [(f"{other} mode", means)
              for other, means in summary.get("by_norm_mode", {}).items() if other != mode]
  return columns + [("identity", summary.get("identity", {}))]


def format_table(summary: Mapping[str, Any]) -> str:
  """A plain-text table: one row per metric; columns the model (in its norm mode), the
  other norm mode where it was scored, and the identity (the input itself)."""
  columns = _columns(summary)
  width = max(9, *(len(heading) for heading, _ in columns))
  lines = [f"{'metric':<10}" + "".join(f" {h:>{width}}" for h, _ in columns)]
  for key in summary["model"]:
    cells = [means.get(key) for _, means in columns]
    lines.append(f"{key:<10}" + "".join(
        f" {v:>{width}.4f}" if v is not None else f" {'-':>{width}}" for v in cells))
  return "\n".join(lines)


def _write_json(summary, path: str) -> None:
  with open(path, "w") as f:
    json.dump(summary, f, indent=2, sort_keys=True)


def _write_csv(rows: list[dict[str, Any]], path: str) -> None:
  fields = list(dict.fromkeys(key for row in rows for key in row))
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)


_GALLERY_SCRIPT = """
function sortBy(col) {
  const table = document.getElementById('gallery');
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const asc = table.dataset.col == col ? table.dataset.asc != 'true' : true;
  rows.sort((a, b) => {
    const x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
    const nx = parseFloat(x), ny = parseFloat(y);
    const c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
    return asc ? c : -c;
  });
  rows.forEach(r => body.appendChild(r));
  table.dataset.col = col; table.dataset.asc = asc;
}
"""
_GALLERY_STYLE = """
body { font-family: sans-serif; margin: 1em; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ccc; padding: 4px; text-align: center; }
th.sort { cursor: pointer; background: #eee; }
th.sort:hover { background: #ddd; }
img { max-width: 256px; image-rendering: pixelated; }
"""


def _number(value: Optional[float]) -> str:
  if value is None:
    return "-"
  return "inf" if math.isinf(value) else f"{value:.4f}"


def _write_gallery(rows: list[dict[str, Any]], summary, path: str) -> None:
  """index.html: the summary table, then one row per pair, sortable by any column."""
  metric_columns = [f"model_{k}" for k in metrics.PIXEL_METRICS]
  if summary.get("identity"):
    metric_columns += ["identity_psnr_y", "identity_ssim_y", "gain_psnr_y"]
  others = [m for m in summary.get("by_norm_mode", {}) if m != summary.get("norm_mode")]
  metric_columns += [f"{m}_{k}" for m in others for k in ("psnr_y", "ssim_y")]
  image_kinds = ["input", "output", "target"] + [f"output_{m}" for m in others]
  header = ["#", "name"] + image_kinds + metric_columns
  columns = _columns(summary)
  out = ["<!doctype html><html><head><meta charset='utf-8'><title>pix2pix_jax eval</title>",
         "<link rel='icon' href='data:,'>",
         f"<style>{_GALLERY_STYLE}</style><script>{_GALLERY_SCRIPT}</script></head><body>",
         "<h1>Evaluation</h1>", _about_paragraph(summary), "<table><tr><th>metric</th>"
         + "".join(f"<th>{html.escape(h)}</th>" for h, _ in columns) + "</tr>"]
  for key in summary["model"]:
    out.append(f"<tr><td>{key}</td>" + "".join(
        f"<td>{_number(means.get(key))}</td>" for _, means in columns) + "</tr>")
  out.append("</table><p>identity: the input itself scored against the target. "
             "Click a column header to sort.</p><table id='gallery'><thead><tr>")
  for col, name in enumerate(header):
    sortable = name not in image_kinds
    out.append(f"<th class='sort' onclick='sortBy({col})'>{name}</th>" if sortable
               else f"<th>{name}</th>")
  out.append("</tr></thead><tbody>")
  for row in rows:
    index = row["index"]
    cells = [f"<td data-v='{index}'>{index}</td>",
             f"<td data-v='{html.escape(row['name'], quote=True)}'>"
             f"{html.escape(row['name'])}</td>"]
    for kind in image_kinds:
      cells.append(f"<td><img src='images/{index:04d}_{kind}.png' alt='{kind}'></td>")
    for column in metric_columns:
      value = row.get(column)
      cells.append(f"<td data-v='{value if value is not None else ''}'>{_number(value)}</td>")
    out.append("<tr>" + "".join(cells) + "</tr>")
  out.append("</tbody></table></body></html>")
  with open(path, "w") as f:
    f.write("\n".join(out))


def _about_paragraph(summary: Mapping[str, Any]) -> str:
  """What was scored: workdir, checkpoint, test set, norm mode, protocol, ensemble, date."""
  about = dict(summary.get("about") or {})
  items = [(key, about.pop(key)) for key in ("workdir", "checkpoint", "test set") if key in about]
  items += [("norm mode", summary.get("norm_mode")), ("protocol", summary.get("protocol")),
            ("ensemble", "on" if summary.get("ensemble") else "off")]
  items += list(about.items())
  return "<p id='about'>" + "; ".join(
      f"<b>{html.escape(str(k))}</b>: {html.escape(str(v))}" for k, v in items
      if v is not None) + "</p>"


def _inside(path: str, folder: str) -> bool:
  """Whether `path` is `folder` or lies under it (symbolic links resolved)."""
  path, folder = os.path.realpath(path), os.path.realpath(folder)
  return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def image_files(path: str, *, exclude: Optional[str] = None) -> list[tuple[str, str]]:
  """(absolute path, path relative to `path`'s folder) of an image file or of the image
  files in a folder (recursively), sorted; files under the folder `exclude` are left out
  (predict's output folder inside its input folder)."""
  path = os.path.abspath(os.path.expanduser(path))
  if os.path.isfile(path):
    return [(path, os.path.basename(path))]
  if not os.path.isdir(path):
    raise FileNotFoundError(f"--input={path} is neither a file nor a folder.")
  files = []
  for folder, subfolders, names in os.walk(path):
    if exclude is not None:
      subfolders[:] = [d for d in subfolders
                       if not _inside(os.path.join(folder, d), exclude)]
    for name in names:
      if name.lower().endswith(IMAGE_EXTENSIONS):
        full = os.path.join(folder, name)
        files.append((full, os.path.relpath(full, path)))
  if not files:
    raise FileNotFoundError(f"--input={path} holds no image files ({', '.join(IMAGE_EXTENSIONS)}).")
  return sorted(files)


def refuse_overwriting_inputs(files: list[tuple[str, str]], input_path: str,
                              output_dir: str) -> None:
  """Raises ValueError, before anything is written, when an output would replace an input."""
  inputs = {os.path.realpath(full) for full, _ in files}
  for _, relative in files:
    destination = os.path.realpath(os.path.join(output_dir, relative))
    if destination in inputs:
      raise ValueError(
          f"--output={output_dir} would overwrite the input {destination} (predict writes "
          f"each output under the input's name): choose an output folder outside "
          f"--input={os.path.abspath(os.path.expanduser(input_path))}, or a sub-folder of "
          "it. Nothing was written.")


def predict_path(translator: translator_lib.Translator, input_path: str, output_dir: str
                 ) -> tuple[list[str], list[tuple[str, str]]]:
  """Translates an image file or a folder of them into output_dir, mirroring the names
  (and sub-folders; the same format as each input).

  Files that cannot be read or translated are reported and skipped. Returns
  (written paths, [(input path, reason)]).
  """
  output_dir = os.path.abspath(os.path.expanduser(output_dir))
  if os.path.isfile(output_dir):
    raise ValueError(f"--output={output_dir} is a file: predict writes into a folder "
                     "(a new or an existing one).")
  files = image_files(input_path, exclude=output_dir)
  refuse_overwriting_inputs(files, input_path, output_dir)
  written, failed = [], []
  with _progress(len(files), "image") as progress:
    for full, relative in files:
      try:
        with Image.open(full) as image:
          if hasattr(translator, "check_size"):
            translator.check_size(*image.size)  # from the header: nothing decoded yet.
          image.load()
          output = translator(image)
      # PIL's errors for a bad file; ValueError also for paper mode with too large an image.
      except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        logging.warning("Skipped %s: %s", full, e)
        failed.append((full, str(e)))
        progress.update()
        continue
      destination = os.path.join(output_dir, relative)
      os.makedirs(os.path.dirname(destination), exist_ok=True)
      _save_image(output, destination)
      written.append(destination)
      progress.update()
  return written, failed


BEST_DIR = "best"  # W/best: a weights-only workdir holding the best validation checkpoint.


class Validator:
  """In-training validation: metrics on a fixed subset of the test split, best kept apart.

  Each call translates the first `eval_examples` test pairs at their own resolution in both
  norm modes and writes `val_*` scalars through `writer`: val_psnr_y, val_ssim_y, ... in
  config.inference.norm_mode (`auto` resolved; the mode inference uses by default),
  val_gain_psnr_y (that minus the identity's, the inputs' own score), and
  val_paper_psnr_y / val_running_psnr_y. When val_psnr_y beats the best so far it saves
  the generator (and discriminator) as a weights-only workdir in W/best (its own
  config.json and Orbax checkpoint, step = the training step; W/best/best.json says which
  step and scores). `--checkpoint=best` loads it. The best score survives a resume (read
  back from best.json).
  """

  def __init__(self, config, workdir: str, test_source, writer):
    self.config = config
    self.writer = writer
    self.best_dir = os.path.join(workdir, BEST_DIR)
    self.pairs = list(eval_pairs(config, test_source,
                                 max_examples=int(config.get("eval_examples", 16))))
    self.norm_mode = inference.resolve_norm_mode(config.inference.norm_mode,
                                                 config.batch_size)
    self.translators = {}  # norm mode -> Translator, compiled once.
    self.protocol = protocol_of(config)
    identity = metrics.Accumulator(self.protocol)
    for _, inputs, target in self.pairs:
      if inputs.shape == target.shape:
        identity.add(inputs, target)
    self.identity_psnr_y = (identity.summary()["psnr_y"] if identity.per_image else None)
    self.best_psnr_y = -math.inf
    if os.path.exists(os.path.join(self.best_dir, "best.json")):
      with open(os.path.join(self.best_dir, "best.json")) as f:
        self.best_psnr_y = json.load(f)["psnr_y"]

  def __call__(self, step: int, generator_variables, discriminator_variables=None
               ) -> dict[str, float]:
    """Scores the generator at `step`; returns the metrics (means over the subset) in the
    config's norm mode."""
    by_mode = {}
    for mode in inference.NORM_MODES:
      translator = self.translators.get(mode)
      if translator is None:  # compiled once; later calls only swap the weights.
        translator = self.translators[mode] = translator_lib.Translator(  # no ensemble: 8x
            self.config, generator_variables, norm_mode=mode, ensemble=False)
      else:
        translator.variables = jax.device_put(
            {"params": generator_variables["params"],
             "batch_stats": generator_variables.get("batch_stats", {})})
      accumulator = metrics.Accumulator(self.protocol)
      for _, inputs, target in self.pairs:
        accumulator.add(translator(inputs), target)
      by_mode[mode] = accumulator.summary()
    summary = by_mode[self.norm_mode]
    scalars = {f"val_{k}": v for k, v in summary.items()}
    if self.identity_psnr_y is not None:
      scalars["val_gain_psnr_y"] = summary["psnr_y"] - self.identity_psnr_y
      scalars["val_identity_psnr_y"] = self.identity_psnr_y
    scalars.update({f"val_{mode}_psnr_y": s["psnr_y"] for mode, s in by_mode.items()})
    self.writer.write_scalars(step, scalars)
    if summary["psnr_y"] > self.best_psnr_y:
      self.best_psnr_y = summary["psnr_y"]
      self._save_best(step, generator_variables, discriminator_variables, summary)
    return summary

  def _save_best(self, step, generator_variables, discriminator_variables, summary):
    if jax.process_index() != 0:
      return
    checkpoints.save_weights(self.best_dir, self.config, generator_variables,
                             discriminator_variables, step=step, keep=1, primary_only=True)
    with open(os.path.join(self.best_dir, "best.json"), "w") as f:
      json.dump({"step": int(step), **summary}, f, indent=2)
    logging.info("New best validation psnr_y %.4f at step %d: saved to %s.",
                 summary["psnr_y"], step, self.best_dir)


def make_validator(config, workdir: str, test_source, writer) -> Optional[Validator]:
  """A Validator if config.eval_every_steps > 0, else None."""
  if int(config.get("eval_every_steps", 0)) <= 0:
    return None
  return Validator(config, workdir, test_source, writer)
