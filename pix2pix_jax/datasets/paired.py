"""TFDS builder of paired images found in a folder (paired_folder, raindrop, rain100).

`layouts.scan` lists the pairs; `check` opens every image once (before anything is
built) and reports every problem with its file; `PairedImages` then stores the pairs
as array_record from its manual_dir (= data.path). The images keep their encoded
bytes (PNG, JPEG, 16-bit PNG, ...) except where the build must change them (the two
halves of an `aligned` image, a target resized to its input's size): those are
re-encoded losslessly as PNG. The input pipeline decodes with PIL.

The builder config's name holds a hash of the files' bytes, their pairing and the
build options, so changing any file builds a new dataset instead of reusing a stale one.
"""

import concurrent.futures
import dataclasses
import hashlib
import io
import json
import os

import ml_collections
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from pix2pix_jax.configuration import DataError
from pix2pix_jax.datasets import layouts

REPORT_FILE = "data_report.json"
# PNG stores these modes as they are; others (CMYK, YCbCr, ...) are converted to RGB.
_PNG_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16")


@dataclasses.dataclass(frozen=True)
class Entry:
  """A checked pair, ready to build: its files, stored size and what the build does."""
  pair: layouts.Pair
  height: int  # of each stored image (the input's).
  width: int
  resize_target: bool = False  # allow_size_mismatch: the target is resized to the input.


@dataclasses.dataclass
class Checked:
  """The result of `check`: usable entries per split, and what was found wrong."""
  splits: dict[str, list[Entry]]
  problems: list[layouts.Problem]
  warnings: list[str]


def _inspect(path: str) -> tuple[int, int, str] | str:
  """(width, height, mode) of a fully decoded image, or why it cannot be read."""
  try:
    with Image.open(path) as image:
      image.load()  # decodes everything: finds truncated files.
      return image.size[0], image.size[1], image.mode
  except Exception as e:  # pylint: disable=broad-except  (PIL raises many kinds)
    return f"not a readable image (truncated or corrupt?): {type(e).__name__}: {e}"


def _has_alpha(mode: str) -> bool:
  return mode in ("RGBA", "LA", "PA", "RGBa", "La")


def _check_pair(root: str, pair: layouts.Pair, layout: str, allow_size_mismatch: bool
                ) -> tuple[Entry | None, list[layouts.Problem], list[str]]:
  """Opens the pair's images; returns (entry or None, problems, warnings)."""
  problems, warnings, infos = [], [], []
  for rel in pair.files:
    info = _inspect(os.path.join(root, rel))
    if isinstance(info, str):
      problems.append(layouts.Problem(rel, info))
      continue
    infos.append(info)
    if _has_alpha(info[2]):
      warnings.append(f"{rel}: has an alpha channel ({info[2]}); the alpha is dropped")
  if problems:
    return None, problems, warnings
  (width, height, _), resize_target = infos[0], False
  if layout == "aligned":
    if width % 2:
      problems.append(layouts.Problem(
          pair.input, f"aligned image has an odd width ({width}): it cannot be split into "
          "equal A and B halves"))
    width //= 2
  elif infos[1][:2] != infos[0][:2]:
    sizes = f"{width}x{height}, its target {pair.target} is {infos[1][0]}x{infos[1][1]}"
    if allow_size_mismatch:
      warnings.append(f"{pair.input}: input is {sizes}; the target is resized to the "
                      "input's size (data.allow_size_mismatch)")
      resize_target = True
    else:
      problems.append(layouts.Problem(
          pair.input, f"pair of different sizes: input is {sizes} (set "
          "data.allow_size_mismatch=True to resize targets to their inputs)"))
  if problems:
    return None, problems, warnings
  return Entry(pair, height, width, resize_target), problems, warnings


def check(scan: layouts.Scan, allow_size_mismatch: bool) -> Checked:
  """Decodes every image of every pair (in threads); sorts pairs into usable and not."""
  already_bad = {p.path for p in scan.problems}  # e.g. zero-byte: reported once.
  jobs = [(split, pair) for split, pairs in scan.splits.items() for pair in pairs
          if not already_bad.intersection(pair.files)]
  with concurrent.futures.ThreadPoolExecutor(max(2, os.cpu_count() or 1)) as pool:
    results = list(pool.map(
        lambda job: _check_pair(scan.root, job[1], scan.layout, allow_size_mismatch),
        jobs))
  checked = Checked({split: [] for split in scan.splits}, [], [])
  for (split, _), (entry, problems, warnings) in zip(jobs, results):
    checked.problems.extend(problems)
    checked.warnings.extend(warnings)
    if entry is not None:
      checked.splits[split].append(entry)
  return checked


def hold_out(entries: list[Entry], fraction: float) -> tuple[list[Entry], list[Entry]]:
  """(train, test): the `fraction` (at least 1) of pairs whose names hash lowest to test.

  The choice depends only on the names: fixed for a dataset, whatever the seed, and
  mostly stable when pairs are added.
  """
  count = max(1, round(fraction * len(entries)))
  by_hash = sorted(entries, key=lambda e: hashlib.sha256(e.pair.name.encode()).hexdigest())
  test = {e.pair.name for e in by_hash[:count]}
  return ([e for e in entries if e.pair.name not in test],
          [e for e in entries if e.pair.name in test])


def fingerprint(scan: layouts.Scan, options: dict) -> str:
  """A hash of the image files' names and bytes, their pairing rule and `options`."""
  digest = hashlib.sha256(json.dumps(
      {"version": str(PairedImages.VERSION), "layout": scan.layout, "rules": scan.rules,
       "options": options}, sort_keys=True).encode())
  for rel in scan.files:
    digest.update(rel.encode() + b"\0")
    try:
      with open(os.path.join(scan.root, rel), "rb") as f:
        digest.update(hashlib.file_digest(f, "sha256").digest())
    except OSError as e:
      digest.update(f"unreadable: {e}".encode())
  return digest.hexdigest()


def format_problems(scan: layouts.Scan, problems: list[layouts.Problem], source: str
                    ) -> str:
  """The DataError message: every problem on its own line, then what to do."""
  fatal = [p for p in problems if p.fatal]
  if fatal:
    advice = ("Fix these (data.on_bad_file=skip cannot skip a missing or empty folder, "
              "nor leave a split empty).")
  else:
    advice = ("Fix or remove these files, or set data.on_bad_file=skip to train without "
              "them.")
  lines = "\n".join(f"  {p}" for p in problems)
  return (f"data.path={scan.root} (data.source={source}, layout {scan.layout or '?'}): "
          f"{len(problems)} problem(s); nothing was built. {advice}\n{lines}")


# ------------------------------------------------------------------------------- builder


@dataclasses.dataclass(eq=False, repr=False)
class PairedImagesConfig(tfds.core.BuilderConfig):
  """The checked pairs of each split; the name holds the content fingerprint."""
  layout: str = "folders"
  splits: tuple[tuple[str, tuple[Entry, ...]], ...] = ()

  def __repr__(self):  # TFDS logs it: counts, not every file.
    counts = ", ".join(f"{split}: {len(entries)}" for split, entries in self.splits)
    return f"PairedImagesConfig({self.name}, {self.layout}, {counts})"


def encode_png(image: Image.Image) -> bytes:
  """Lossless PNG bytes of `image` (fast compression: the build is CPU bound)."""
  if image.mode not in _PNG_MODES:
    image = image.convert("RGB")
  buffer = io.BytesIO()
  image.save(buffer, format="PNG", compress_level=1)
  return buffer.getvalue()


def stored_images(root: str, entry: Entry, layout: str) -> tuple[bytes, bytes]:
  """The encoded (A, B) images of an entry as stored in the dataset."""
  input_path = os.path.join(root, entry.pair.input)
  if layout == "aligned":
    with Image.open(input_path) as image:
      w = image.size[0] // 2
      return (encode_png(image.crop((0, 0, w, image.size[1]))),
              encode_png(image.crop((w, 0, 2 * w, image.size[1]))))
  target_path = os.path.join(root, entry.pair.target)
  with open(input_path, "rb") as f:
    input_bytes = f.read()
  if entry.resize_target:
    with Image.open(target_path) as image:
      return input_bytes, encode_png(
          image.resize((entry.width, entry.height), Image.BICUBIC))
  with open(target_path, "rb") as f:
    return input_bytes, f.read()


class PairedImages(tfds.core.GeneratorBasedBuilder):
  """Paired images from a folder: A (input) and B (target), as encoded image bytes."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "aligned and folders layouts; raindrop and rain100 rules."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Point data.path at the dataset's folder (see docs/data.md).")

  def _info(self) -> tfds.core.DatasetInfo:
    encoded = tfds.features.Tensor(shape=(), dtype=np.object_)  # PNG/JPEG/... bytes.
    return tfds.core.DatasetInfo(
        builder=self,
        description="Paired images: A (input) and B (target), encoded as in the files.",
        features=tfds.features.FeaturesDict(
            {"A": encoded, "B": encoded, "name": tfds.features.Text()}),
        supervised_keys=("A", "B"),
        disable_shuffling=True,  # example i of a split is at index i.
    )

  def _split_generators(self, dl_manager):
    root = os.fspath(dl_manager.manual_dir)
    return {split: self._generate_examples(root, entries)
            for split, entries in self.builder_config.splits}

  def _generate_examples(self, root, entries):
    for index, entry in enumerate(entries):
      a, b = stored_images(root, entry, self.builder_config.layout)
      yield index, {"A": a, "B": b, "name": entry.pair.name}

  # The caller logs the build; TFDS's own prints name the temporary build folder.
  def _log_download_bytes(self):
    pass

  def _log_download_done(self):
    pass


def build_config(source: str, scan: layouts.Scan, splits: dict[str, list[Entry]],
                 digest: str) -> PairedImagesConfig:
  return PairedImagesConfig(
      name=config_name(source, scan, digest), version=PairedImages.VERSION,
      description=f"{source} ({scan.layout}) from {scan.root}.", layout=scan.layout,
      splits=tuple((split, tuple(entries)) for split, entries in splits.items()))


def options_of(data: ml_collections.ConfigDict) -> dict:
  """The data.* values that change what is built (not how it is read)."""
  return {"source": data.source, "on_bad_file": data.on_bad_file,
          "allow_size_mismatch": bool(data.allow_size_mismatch),
          "test_fraction": float(data.test_fraction)}


def config_name(source: str, scan: layouts.Scan, digest: str) -> str:
  """The builder config's name: a new one for any change of files or options."""
  return f"{source}_{scan.layout or 'unknown'}_{digest[:16]}"


def problems_report(scan: layouts.Scan, data, problems, warnings=()) -> dict:
  """The data_report.json of a dataset that cannot be built."""
  return {"source": data.source, "path": scan.root, "layout": scan.layout,
          "on_bad_file": data.on_bad_file, "status": "error",
          "problems": [str(p) for p in problems], "warnings": list(warnings),
          "ignored": scan.ignored}


def check_and_configure(data: ml_collections.ConfigDict, scan: layouts.Scan, digest: str
                        ) -> tuple[PairedImagesConfig, dict]:
  """Checks every image; returns (builder config, build report) or raises DataError."""
  checked = check(scan, bool(data.allow_size_mismatch))
  problems = scan.problems + checked.problems
  splits = checked.splits
  if scan.held_out_test and splits.get("train"):
    if len(splits["train"]) < 2:
      problems.append(layouts.Problem(".", "only one usable pair: at least 2 are needed "
                                      "(one is held out for the test split)", fatal=True))
    else:
      splits["train"], splits["test"] = hold_out(splits["train"], data.test_fraction)
  for split, entries in splits.items():
    if not entries and not any(p.fatal for p in problems):
      problems.append(layouts.Problem(split + "/", "no usable pair in this split",
                                      fatal=True))
  if problems and (data.on_bad_file == "error" or any(p.fatal for p in problems)):
    raise DataError(format_problems(scan, problems, data.source),
                    report=problems_report(scan, data, problems, checked.warnings))
  report = {
      "source": data.source, "path": scan.root, "layout": scan.layout,
      "fingerprint": digest, "on_bad_file": data.on_bad_file, "status": "ok",
      "held_out_test": scan.held_out_test,
      "splits": {split: len(entries) for split, entries in splits.items()},
      "skipped": [str(p) for p in problems], "warnings": checked.warnings,
      "ignored": scan.ignored,
      "examples": {split: [[e.pair.input, e.height, e.width] for e in entries]
                   for split, entries in splits.items()},
  }
  return build_config(data.source, scan, splits, digest), report
