"""Datasets: built once into `data.cache_dir`, read as random-access sources.

`prepare(data_config, seed)` builds (if needed) and checks the dataset of
`data.source`; its `.sources` are {'train': source, 'test': source, ...} (plus 'val'
or a layout's other splits where there are some): a source has `len()` and
`source[i]` -> {'A': image bytes, 'B': image bytes, 'name': bytes}. A is the input
(e.g. rainy) image and B the target (clean) one; `input_pipeline` decodes them. Its
`.report` (data_report.json) says what was used, skipped and why.
`get_data_sources(data_config, seed)` is `prepare(...).sources`.

Sources: synthetic_rain (rendered rain on photos), and folders of your own pairs:
paired_folder (aligned AB images or A/ B/ folders), raindrop, rain100 (see `layouts`).
Bad files are found before training: `data.on_bad_file=error` stops with a list of
every problem (a DataError), `skip` leaves them out and lists them in the report.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import Any, Callable, Mapping, Sequence

from absl import logging
import ml_collections
import tensorflow_datasets as tfds

from pix2pix_jax import configuration
from pix2pix_jax.configuration import DataError
from pix2pix_jax.datasets import layouts
from pix2pix_jax.datasets import paired
from pix2pix_jax.datasets import synthetic_rain

_DATASET_INFO = "dataset_info.json"  # written last by TFDS: marks a complete dataset.
REPORT_FILE = paired.REPORT_FILE
# Every file of a built dataset with its size and sha256, written when it is built.
CHECKSUM_FILE = "pix2pix_checksums.json"


def dataset_dir(builder_cls: type[tfds.core.DatasetBuilder], config_name: str,
                cache_dir: str) -> str:
  """Where `build_once` puts a builder config's dataset."""
  return os.path.join(cache_dir, builder_cls.name, config_name, str(builder_cls.VERSION))


def is_built(folder: str) -> bool:
  return os.path.exists(os.path.join(folder, _DATASET_INFO))


def _sha256(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def write_checksums(folder: str) -> None:
  """Writes folder/pix2pix_checksums.json: each file's size and sha256."""
  files = {}
  for directory, _, names in os.walk(folder):
    for name in names:
      path = os.path.join(directory, name)
      relative = os.path.relpath(path, folder)
      if relative != CHECKSUM_FILE:
        files[relative] = {"size": os.path.getsize(path), "sha256": _sha256(path)}
  temporary = os.path.join(folder, CHECKSUM_FILE + ".tmp")
  with open(temporary, "w") as f:
    json.dump({"files": files}, f, indent=1, sort_keys=True)
  os.replace(temporary, os.path.join(folder, CHECKSUM_FILE))


def _unverified_problem(folder: str) -> str:
  """Why a dataset built before checksums were written cannot be used ("" if it can):
  its dataset_info must load and every shard must read back, record by record."""
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  try:
    builder = tfds.builder_from_directory(folder)
    for split, info in builder.info.splits.items():
      for path, length in zip(info.filepaths, info.shard_lengths):
        reader = array_record_module.ArrayRecordReader(os.fspath(path))
        try:
          if reader.num_records() != length or len(reader.read_all()) != length:
            return f"{os.path.basename(os.fspath(path))} does not hold {length} records"
        finally:
          reader.close()
      del split
  except Exception as e:  # pylint: disable=broad-exception-caught  (protobuf, json, riegeli)
    lines = str(e).strip().splitlines()
    return f"it does not read back ({type(e).__name__}: {lines[0] if lines else ''})"
  try:
    write_checksums(folder)
  except OSError as e:
    logging.info("Could not write %s into %s (%s); it is checked in full at each use.",
                 CHECKSUM_FILE, folder, e)
  return ""


def cache_problem(folder: str) -> str:
  """Why the built dataset in `folder` cannot be used ("" if it is intact).

  Sizes and sha256 checksums against its pix2pix_checksums.json; a dataset built before
  those were written is read back in full once, then gets the file.
  """
  if not is_built(folder):
    return f"{_DATASET_INFO} is missing"
  path = os.path.join(folder, CHECKSUM_FILE)
  if not os.path.exists(path):
    return _unverified_problem(folder)
  try:
    with open(path) as f:
      recorded = {name: (int(entry["size"]), str(entry["sha256"]))
                  for name, entry in json.load(f)["files"].items()}
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
    return f"{CHECKSUM_FILE} cannot be read ({type(e).__name__})"
  for name, (size, _) in recorded.items():
    file_path = os.path.join(folder, name)
    if not os.path.isfile(file_path):
      return f"{name} is missing"
    if os.path.getsize(file_path) != size:
      return f"{name} is {os.path.getsize(file_path)} bytes, not {size}"
  for name, (_, digest) in recorded.items():
    if _sha256(os.path.join(folder, name)) != digest:
      return f"{name} does not match its checksum"
  return ""


def _intact(folder: str) -> bool:
  """Whether `folder` holds an intact built dataset. A damaged one (see `cache_problem`)
  is removed, saying so, for the caller to rebuild; a DataError names it where it cannot
  be removed."""
  if not os.path.exists(folder):
    return False
  problem = cache_problem(folder)
  if not problem:
    return True
  logging.warning("The cached dataset %s is damaged (%s): removing it and building it again.",
                  folder, problem)
  try:
    shutil.rmtree(folder)
  except OSError as e:
    raise DataError(f"The cached dataset {folder} is damaged ({problem}) and cannot be "
                    f"removed ({e.strerror or e}): delete that folder, or set "
                    "data.cache_dir to a folder that can be written.") from None
  return False


def _writable_cache(cache_dir: str) -> None:
  """Creates data.cache_dir; a ConfigError naming it where it cannot be."""
  configuration.make_folder(cache_dir, "data.cache_dir", "set --config.data.cache_dir to a "
                            "folder that can be written")


def build_once(builder_cls: type[tfds.core.DatasetBuilder],
               builder_config: tfds.core.BuilderConfig, cache_dir: str, *,
               manual_dir: str | None = None,
               extra_files: Mapping[str, str] | None = None) -> str:
  """Builds the dataset into `cache_dir` unless it is there; returns its folder.

  The build runs in a temporary folder inside `cache_dir` that is renamed into place,
  so no process ever sees half a dataset and a failed build leaves nothing behind.
  When two processes build at once, the first rename wins and the other is dropped.
  `manual_dir` is the builder's input folder; `extra_files` (name -> text) are written
  next to the dataset before the rename.
  """
  final_dir = dataset_dir(builder_cls, builder_config.name, cache_dir)
  _writable_cache(cache_dir)
  damaged = os.path.exists(final_dir)
  if _intact(final_dir):
    return final_dir
  try:
    tmp_dir = tempfile.mkdtemp(prefix=f".tmp-{builder_config.name}-", dir=cache_dir)
  except OSError as e:
    raise configuration.ConfigError(
        f"data.cache_dir={cache_dir}: cannot build the dataset there ({e.strerror or e}); "
        "set --config.data.cache_dir to a folder that can be written.") from None
  try:
    logging.info("Building dataset %s/%s into %s (%s)...", builder_cls.name,
                 builder_config.name, final_dir,
                 "again: the cached copy was damaged" if damaged else "first use")
    start = time.perf_counter()
    builder = builder_cls(data_dir=tmp_dir, config=builder_config)
    builder.download_and_prepare(
        download_dir=os.path.join(tmp_dir, "downloads"),
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(try_download_gcs=False,
                                                     manual_dir=manual_dir))
    for name, text in (extra_files or {}).items():
      with open(os.path.join(os.fspath(builder.data_path), name), "w") as f:
        f.write(text)
    write_checksums(os.fspath(builder.data_path))
    os.makedirs(os.path.dirname(final_dir), exist_ok=True)
    try:
      os.rename(os.fspath(builder.data_path), final_dir)
    except OSError:
      if not os.path.exists(os.path.join(final_dir, _DATASET_INFO)):
        raise
      logging.info("Another process built %s first; using its copy.", final_dir)
    else:
      logging.info("Built dataset %s/%s in %.1f s.", builder_cls.name,
                   builder_config.name, time.perf_counter() - start)
  finally:
    shutil.rmtree(tmp_dir, ignore_errors=True)
  return final_dir


def _image_bytes_sources(folder: str, splits: Sequence[str] = ("train", "test")
                         ) -> dict[str, Any]:
  """Random-access sources of a built dataset's splits; images left encoded."""
  builder = tfds.builder_from_directory(folder)
  decoders = {"A": tfds.decode.SkipDecoding(), "B": tfds.decode.SkipDecoding()}
  if isinstance(builder.info.features["A"], tfds.features.Tensor):
    decoders = None  # encoded bytes stored as they are: nothing to decode.
  return {split: builder.as_data_source(split, decoders=decoders) for split in splits}


class Subset(Sequence):
  """The examples `indices` of a source, as a source."""

  def __init__(self, source, indices: Sequence[int]):
    self.source = source
    self.indices = tuple(int(i) for i in indices)

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, index: int):
    return self.source[self.indices[index]]

  def __repr__(self):
    return f"Subset({self.source!r}, {len(self.indices)} examples)"


@dataclasses.dataclass
class PreparedData:
  """A built, checked dataset: its sources and its report (see the module docstring)."""
  sources: dict[str, Any]
  report: dict[str, Any]


def _synthetic_rain(data_config: ml_collections.ConfigDict, seed: int) -> PreparedData:
  builder_config = synthetic_rain.make_config(data_config, seed)
  cache_dir = os.path.expanduser(data_config.cache_dir)
  sources = _image_bytes_sources(
      build_once(synthetic_rain.SyntheticRain, builder_config, cache_dir))
  size = int(data_config.synthetic.image_size)
  why = too_small(size, size, data_config)
  if why:
    raise configuration.ConfigError(f"data.synthetic.image_size={size}: {why}.")
  return _limit_train(PreparedData(sources, {
      "source": "synthetic_rain", "path": data_config.path, "status": "ok",
      "dataset": builder_config.name,
      "splits": {split: len(source) for split, source in sources.items()}}), data_config)


def _limit_train(data: PreparedData, data_config: ml_collections.ConfigDict
                 ) -> PreparedData:
  """Cuts the training set to data.max_dataset_size (if > 0); notes it in the report."""
  limit = data_config.max_dataset_size
  if limit > 0 and len(data.sources["train"]) > limit:
    data.sources["train"] = Subset(data.sources["train"], range(limit))
    data.report["max_dataset_size"] = limit
  data.report["used"] = {split: len(source) for split, source in data.sources.items()}
  return data


def too_small(height: int, width: int, data_config: ml_collections.ConfigDict) -> str:
  """Why an image of this size cannot be preprocessed as configured ("" if it can)."""
  crop, preprocess = data_config.crop_size, data_config.preprocess
  if preprocess == "crop" and min(height, width) < crop:
    return (f"image is {width}x{height}, smaller than data.crop_size={crop} "
            "(data.preprocess='crop' does not resize)")
  if preprocess == "none" and (height, width) != (crop, crop):
    return (f"image is {width}x{height}; data.preprocess='none' needs exactly "
            f"data.crop_size={crop} square images")
  return ""


def _select(built: Mapping[str, Any], report: dict, data_config: ml_collections.ConfigDict
            ) -> PreparedData:
  """The sources to read: the test split chosen, examples too small for the crop
  reported (or skipped), the training set cut to data.max_dataset_size."""
  report = json.loads(json.dumps(report))  # a copy.
  sources = dict(built)
  if data_config.source == "raindrop":
    if data_config.test_split not in sources:
      raise DataError(f"data.test_split={data_config.test_split!r}: {report['path']} has "
                      f"no {data_config.test_split}/ folder.")
    sources["test"] = sources[data_config.test_split]
    report["test_split"] = data_config.test_split
  problems = []
  for split, examples in report.pop("examples").items():
    keep = []
    for index, (path, height, width) in enumerate(examples):
      why = too_small(height, width, data_config)
      if why:
        problems.append(f"{path}: {why}")
      else:
        keep.append(index)
    if len(keep) < len(examples):
      sources[split] = Subset(sources[split], keep)
  if problems and data_config.on_bad_file == "error":
    report.update(status="error", problems=problems)
    raise DataError(
        f"data.path={report['path']}: {len(problems)} image(s) cannot be preprocessed as "
        "configured. Change data.preprocess / data.crop_size, remove the files, or set "
        "data.on_bad_file=skip:\n" + "\n".join(f"  {p}" for p in problems), report=report)
  for problem in problems:
    logging.warning("skipped %s", problem)
  report["skipped"] = report.get("skipped", []) + problems
  for split in ("train", "test"):
    if not len(sources.get(split, ())):
      raise DataError(f"data.path={report['path']}: no usable {split} example is left.",
                      report=dict(report, status="error"))
  return _limit_train(PreparedData(sources, report), data_config)


def _paired(data_config: ml_collections.ConfigDict, seed: int) -> PreparedData:
  """A folder of pairs (paired_folder, raindrop, rain100): checked, built once, read."""
  del seed  # the files fix the dataset.
  configuration.validate_data_choices(data_config)
  if not data_config.path:
    raise configuration.ConfigError(
        f"data.path is empty: data.source={data_config.source!r} reads your pairs from "
        "the folder data.path.")
  scan = layouts.scan(data_config)
  digest = paired.fingerprint(scan, paired.options_of(data_config))
  cache_dir = os.path.expanduser(data_config.cache_dir)
  folder = dataset_dir(paired.PairedImages, paired.config_name(data_config.source, scan,
                                                                digest), cache_dir)
  if os.path.exists(cache_dir) and not os.path.isdir(cache_dir):
    _writable_cache(cache_dir)  # the one-line error.
  if not _intact(folder) or any(p.fatal for p in scan.problems):
    builder_config, report = paired.check_and_configure(data_config, scan, digest)
    folder = build_once(paired.PairedImages, builder_config, cache_dir,
                        manual_dir=scan.root,
                        extra_files={REPORT_FILE: json.dumps(report, indent=1)})
  with open(os.path.join(folder, REPORT_FILE)) as f:
    report = json.load(f)
  for problem in report["skipped"]:
    logging.warning("skipped %s (data.on_bad_file=skip: its pair is left out)", problem)
  for warning in report["warnings"]:
    logging.warning("%s", warning)
  report["dataset"] = folder
  return _select(_image_bytes_sources(folder, tuple(report["splits"])), report,
                 data_config)


class FolderSet(Sequence):
  """A checked test set read straight from its files (nothing is built): a source."""

  def __init__(self, root: str, layout: str, entries: Sequence[paired.Entry]):
    self.root, self.layout, self.entries = root, layout, tuple(entries)

  def __len__(self) -> int:
    return len(self.entries)

  def __getitem__(self, index: int):
    entry = self.entries[index]
    a, b = paired.stored_images(self.root, entry, self.layout)
    return {"A": a, "B": b, "name": entry.pair.name.split("/", 1)[-1].encode()}


def test_sets(data_config: ml_collections.ConfigDict, sets_dir: str,
              names: Sequence[str] = ()) -> dict[str, FolderSet]:
  """{set name: source} of the test sets in `sets_dir` (`layouts.scan_sets`), every image
  decoded once to check it; raises DataError listing each missing folder, unpaired,
  unreadable or (without data.allow_size_mismatch) mismatched file."""
  scan = layouts.scan_sets(data_config, sets_dir, names)
  problems = list(scan.problems)
  checked = paired.check(scan, bool(data_config.get("allow_size_mismatch", False)))
  problems += checked.problems
  if problems:
    lines = "\n".join(f"  {p}" for p in problems)
    raise DataError(f"eval.sets_dir={scan.root}: {len(problems)} problem(s) in the test "
                    f"sets; nothing was scored.\n{lines}")
  for warning in checked.warnings:
    logging.warning("%s", warning)
  return {name: FolderSet(scan.root, scan.rules[name]["layout"], checked.splits[name])
          for name in scan.splits}


# data.source -> function(data_config, seed) returning a PreparedData.
SOURCES: dict[str, Callable[[ml_collections.ConfigDict, int], PreparedData]] = {
    "synthetic_rain": _synthetic_rain,
    "paired_folder": _paired,
    "raindrop": _paired,
    "rain100": _paired,
}


def prepare(data_config: ml_collections.ConfigDict, seed: int) -> PreparedData:
  """Builds (once) and checks the dataset of `data_config.source`; raises DataError
  listing every bad file (data.on_bad_file=error) or leaves them out (skip)."""
  if data_config.source not in SOURCES:
    raise configuration.ConfigError(
        f"Unknown data.source={data_config.source!r}; known: {', '.join(SOURCES)}.")
  return SOURCES[data_config.source](data_config, seed)


def get_data_sources(data_config: ml_collections.ConfigDict, seed: int) -> dict[str, Any]:
  """Returns {'train': source, 'test': source, ...} for `data_config.source`, built if
  needed (see `prepare`)."""
  return prepare(data_config, seed).sources


def write_report(workdir: str, report: Mapping[str, Any]) -> str:
  """Writes `report` as workdir/data_report.json; returns its path."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, REPORT_FILE)
  with open(path, "w") as f:
    json.dump(report, f, indent=1)
  return path
