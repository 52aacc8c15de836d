"""Pairing rules: which files of a folder tree form (input, target) pairs, per split.

Pure file listing (no image is opened): `scan(data_config)` returns the pairs of each
split found under `data.path`, and the problems a listing can see (missing or empty
folders, files with no partner, zero-byte files), each naming its file. Non-image
files are ignored. The layouts:

  aligned   (paired_folder) one image per pair, A left and B right (the pix2pix format),
            in split folders train/ val/ test/ (or directly in data.path).
  folders   (paired_folder) two folders, data.input_dir and data.target_dir (A/ and B/),
            in each split folder (or directly in data.path, or holding the split
            folders: A/train/, B/train/, as the reference's combine_A_and_B); files are
            matched by stem,
            through data.input_pattern / data.target_pattern ("rain-{}" <-> "norain-{}").
  raindrop  Qian et al. 2018: train/ test_a/ test_b/, each with data/ (N_rain.*) and
            gt/ (N_clean.*).
  rain100   Rain100L/H: rain-N.* and norain-N.*, in one folder or in rain/ and norain/,
            in train/ test/ split folders or directly in data.path.
"""

import dataclasses
import os
import re
from typing import Sequence

import ml_collections

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclasses.dataclass(frozen=True)
class Pair:
  """One example: its name and its files, relative to the dataset root."""
  name: str  # "split/key": unique in the dataset.
  input: str  # the A file (for `aligned`, the side-by-side AB file).
  target: str | None  # the B file; None for `aligned`.

  @property
  def files(self) -> tuple[str, ...]:
    return (self.input,) if self.target is None else (self.input, self.target)


@dataclasses.dataclass(frozen=True)
class Problem:
  """A file (or folder) that cannot be used, and why."""
  path: str  # relative to the dataset root ("." for the root itself).
  message: str
  fatal: bool = False  # True: no `on_bad_file=skip` can work around it (missing folder).

  def __str__(self):
    return f"{self.path}: {self.message}"


@dataclasses.dataclass
class Scan:
  """The listing of a dataset folder."""
  root: str
  layout: str  # aligned | folders (after auto detection).
  splits: dict[str, list[Pair]]  # split -> pairs, in natural name order.
  files: list[str]  # every image file seen (relative), for the fingerprint.
  problems: list[Problem]
  ignored: list[str]  # non-image files.
  held_out_test: bool  # no test split on disk: test is held out from train.
  rules: dict[str, dict[str, str]]  # split -> its pairing rule (for the fingerprint).


@dataclasses.dataclass(frozen=True)
class _Rule:
  """How a split folder holds its pairs."""
  layout: str  # aligned | folders
  input_dir: str = ""  # "" = the split folder itself.
  target_dir: str = ""
  input_pattern: str = "{}"
  target_pattern: str = "{}"


def natural_key(text: str):
  """Sort key with digit runs compared as numbers: 2 < 10."""
  return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def is_image(name: str) -> bool:
  return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def pattern_regex(pattern: str, key: str) -> re.Pattern:
  """The regex of a stem pattern such as "rain-{}" ("{}" is the pair's key)."""
  if pattern.count("{}") != 1:
    raise ValueError(f"data.{key}={pattern!r} must contain '{{}}' exactly once "
                     "(where the pair's shared part of the file name goes).")
  before, after = pattern.split("{}")
  return re.compile(f"^{re.escape(before)}(.+){re.escape(after)}$")


class _Lister:
  """Lists folders relative to the root, collecting problems and ignored files."""

  def __init__(self, root: str):
    self.root = root
    self.problems: list[Problem] = []
    self.ignored: list[str] = []
    self.files: list[str] = []

  def rel(self, path: str) -> str:
    return os.path.relpath(path, self.root)

  def images(self, folder: str) -> list[str] | None:
    """Relative paths of the images in `folder`; None (and a problem) if it is missing."""
    if not os.path.isdir(folder):
      self.problems.append(Problem(self.rel(folder) + "/", "missing folder", fatal=True))
      return None
    images = []
    for name in sorted(os.listdir(folder)):
      path = os.path.join(folder, name)
      if not os.path.isfile(path):
        continue
      if not is_image(name):
        self.ignored.append(self.rel(path))
        continue
      images.append(self.rel(path))
      if os.path.getsize(path) == 0:
        self.problems.append(Problem(self.rel(path), "zero-byte file"))
    if not images:
      self.problems.append(Problem(
          self.rel(folder) + "/", f"empty folder: no images ({'/'.join(IMAGE_EXTENSIONS)})",
          fatal=True))
    self.files.extend(images)
    return images

  def keyed(self, images: list[str], regex: re.Pattern, other: re.Pattern | None,
            what: str) -> dict[str, str]:
    """key -> file for the images whose stem matches `regex`.

    Images matching `other` (the partner's pattern, when both share a folder) are left
    to it; the rest are reported.
    """
    keyed = {}
    for path in images:
      stem = os.path.splitext(os.path.basename(path))[0]
      match = regex.match(stem)
      if match is None:
        if other is None or not other.match(stem):
          self.problems.append(Problem(path, f"file name does not match the {what} "
                                       f"pattern {regex.pattern!r}: no partner"))
        continue
      key = match.group(1)
      if key in keyed:
        self.problems.append(Problem(path, f"two {what} files for pair {key!r} "
                                     f"(also {keyed[key]})"))
        continue
      keyed[key] = path
    return keyed


def _pairs_in(lister: _Lister, split: str, folder: str, rule: _Rule) -> list[Pair]:
  """The pairs of one split folder under `rule`."""
  if rule.layout == "aligned":
    keyed = lister.keyed(lister.images(folder) or [], pattern_regex("{}", "pattern"), None,
                         "aligned")
    return [Pair(f"{split}/{key}", keyed[key], None) for key in sorted(keyed, key=natural_key)]
  input_folder = os.path.join(folder, rule.input_dir)
  target_folder = os.path.join(folder, rule.target_dir)
  input_re = pattern_regex(rule.input_pattern, "input_pattern")
  target_re = pattern_regex(rule.target_pattern, "target_pattern")
  shared = os.path.normpath(input_folder) == os.path.normpath(target_folder)
  if shared:
    images = lister.images(input_folder) or []
    inputs = lister.keyed(images, input_re, target_re, "input")
    targets = lister.keyed(images, target_re, input_re, "target")
  else:
    inputs = lister.keyed(lister.images(input_folder) or [], input_re, None, "input")
    targets = lister.keyed(lister.images(target_folder) or [], target_re, None, "target")
  for mine, theirs, pattern, theirs_folder in (
      (inputs, targets, rule.target_pattern, target_folder),
      (targets, inputs, rule.input_pattern, input_folder)):
    for key in mine.keys() - theirs.keys():
      lister.problems.append(Problem(
          mine[key], f"no partner: expected {pattern.format(key)}.* in "
          f"{lister.rel(theirs_folder)}/"))
  keys = sorted(inputs.keys() & targets.keys(), key=natural_key)
  return [Pair(f"{split}/{key}", inputs[key], targets[key]) for key in keys]


def _split_folders(root: str, names: dict[str, str]) -> dict[str, str]:
  """split -> folder for the split folders that exist under `root`."""
  return {split: os.path.join(root, name) for split, name in names.items()
          if os.path.isdir(os.path.join(root, name))}


def _has_images(folder: str) -> bool:
  return os.path.isdir(folder) and any(
      is_image(n) and os.path.isfile(os.path.join(folder, n)) for n in os.listdir(folder))


def _paired_folder_rule(folder: str, data: ml_collections.ConfigDict) -> _Rule:
  """The rule of `data.layout` (auto: A/ and B/ folders -> folders; images -> aligned)."""
  layout = data.layout
  if layout == "auto":
    both = all(os.path.isdir(os.path.join(folder, d)) for d in (data.input_dir,
                                                                 data.target_dir))
    layout = "folders" if both else "aligned" if _has_images(folder) else ""
  if layout == "aligned":
    return _Rule("aligned")
  if layout == "folders":
    return _Rule("folders", data.input_dir, data.target_dir, data.input_pattern,
                 data.target_pattern)
  raise LayoutError(Problem(
      os.path.relpath(folder, data_root(data)) + "/",
      f"cannot detect data.layout: expected the folders {data.input_dir}/ and "
      f"{data.target_dir}/ (layout 'folders') or side-by-side AB images (layout 'aligned')",
      fatal=True))


def _rain100_rule(folder: str) -> _Rule:
  """rain-N / norain-N, in rain/ and norain/ if both exist, else side by side."""
  subfolders = all(os.path.isdir(os.path.join(folder, d)) for d in ("rain", "norain"))
  return _Rule("folders", *(("rain", "norain") if subfolders else ("", "")),
               input_pattern="rain-{}", target_pattern="norain-{}")


_RAINDROP_RULE = _Rule("folders", "data", "gt", "{}_rain", "{}_clean")


def _rule_for(folder: str, data: ml_collections.ConfigDict) -> _Rule:
  """How the split folder `folder` of `data.source` holds its pairs."""
  if data.source == "raindrop":
    return _RAINDROP_RULE
  if data.source == "rain100":
    return _rain100_rule(folder)
  return _paired_folder_rule(folder, data)


class LayoutError(ValueError):
  """The folder's layout cannot be worked out; holds the problem."""

  def __init__(self, problem: Problem):
    super().__init__(str(problem))
    self.problem = problem


def _splits_inside_folders(root: str, data: ml_collections.ConfigDict,
                           split_names: dict[str, str]) -> dict[str, _Rule]:
  """paired_folder's A/train/, B/train/, ... (the reference's combine_A_and_B input):
  split -> rule, or {} if data.input_dir holds no split folders."""
  if data.source != "paired_folder" or data.layout == "aligned":
    return {}
  return {split: _Rule("folders", os.path.join(data.input_dir, name),
                       os.path.join(data.target_dir, name), data.input_pattern,
                       data.target_pattern)
          for split, name in split_names.items()
          if os.path.isdir(os.path.join(root, data.input_dir, name))}


def data_root(data: ml_collections.ConfigDict) -> str:
  """The absolute data.path."""
  return os.path.abspath(os.path.expanduser(data.path))


def scan(data: ml_collections.ConfigDict) -> Scan:
  """Lists `data.path` under the rule of `data.source` (see the module docstring)."""
  root = data_root(data)
  lister = _Lister(root)
  if not os.path.isdir(root):
    lister.problems.append(Problem(root, "missing folder (data.path)", fatal=True))
    return Scan(root, "", {}, [], lister.problems, [], False, {})
  if data.source == "raindrop":
    split_names = {"train": "train", "test_a": "test_a", "test_b": "test_b"}
    required = ("train", data.test_split)
  else:
    split_names = {"train": "train", "val": "val", "test": "test"}
    required = ("train",)
  folders = _split_folders(root, split_names)
  inner_rules = {} if folders else _splits_inside_folders(root, data, split_names)
  if inner_rules:
    folders = {split: root for split in inner_rules}
  elif not folders and data.source != "raindrop":
    folders = {"train": root}  # no split folders: one pool, test held out.
  for split in required:
    if split not in folders:
      lister.problems.append(Problem(split_names[split] + "/", "missing folder",
                                     fatal=True))
  splits, rules = {}, {}
  for split, folder in folders.items():
    try:
      rule = inner_rules.get(split) or _rule_for(folder, data)
    except LayoutError as e:
      lister.problems.append(e.problem)
      continue
    rules[split] = rule
    splits[split] = _pairs_in(lister, split, folder, rule)
  layouts = {r.layout for r in rules.values()}
  if len(layouts) > 1:
    lister.problems.append(Problem(".", f"split folders have different layouts: "
                                   f"{ {s: r.layout for s, r in rules.items()} }",
                                   fatal=True))
  rule = next(iter(rules.values()), _Rule(""))
  return Scan(root=root, layout=rule.layout, splits=splits, files=sorted(lister.files),
              problems=lister.problems, ignored=lister.ignored,
              held_out_test=data.source != "raindrop" and "test" not in splits,
              rules={s: dataclasses.asdict(r) for s, r in sorted(rules.items())})


# Rain13K's test sets: test/<set>/input/ and test/<set>/target/, files paired by name.
SET_INPUT_DIR, SET_TARGET_DIR = "input", "target"


def _set_rule(folder: str, data: ml_collections.ConfigDict) -> _Rule:
  """A test set folder's rule: the source's, or input/ and target/ (Rain13K) when the
  source is not a folder layout or its input / target folders are not there."""
  if data.source in ("raindrop", "rain100"):
    return _rule_for(folder, data)
  if data.source == "paired_folder":
    try:
      return _paired_folder_rule(folder, data)
    except LayoutError:
      if not os.path.isdir(os.path.join(folder, SET_INPUT_DIR)):
        raise
  return _Rule("folders", SET_INPUT_DIR, SET_TARGET_DIR, data.get("input_pattern", "{}"),
               data.get("target_pattern", "{}"))


def scan_sets(data: ml_collections.ConfigDict, sets_dir: str,
              names: Sequence[str] = ()) -> Scan:
  """The test sets in `sets_dir`, one split per set folder (e.g. Rain13K's test/Rain100H/
  {input,target}/), each paired under `_set_rule`; `names`: only these sets."""
  root = os.path.abspath(os.path.expanduser(sets_dir))
  lister = _Lister(root)
  if not os.path.isdir(root):
    lister.problems.append(Problem(root, "missing folder (eval.sets_dir)", fatal=True))
    return Scan(root, "", {}, [], lister.problems, [], False, {})
  folders = {name: os.path.join(root, name)
             for name in sorted(os.listdir(root), key=natural_key)
             if os.path.isdir(os.path.join(root, name)) and not name.startswith(".")}
  for name in names:
    if name not in folders:
      lister.problems.append(Problem(name + "/", "no such test set folder (eval.sets); it "
                                     f"has {', '.join(folders) or 'none'}", fatal=True))
  if names:
    folders = {name: folder for name, folder in folders.items() if name in names}
  if not folders and not lister.problems:
    lister.problems.append(Problem(".", "no test set folders (eval.sets=all)", fatal=True))
  splits, rules = {}, {}
  for name, folder in folders.items():
    try:
      rule = _set_rule(folder, data)
    except LayoutError as e:
      lister.problems.append(e.problem)
      continue
    if rule.layout == "folders" and not os.path.isdir(os.path.join(folder, rule.target_dir)):
      lister.problems.append(Problem(
          os.path.join(name, rule.target_dir) + "/", "missing folder: a test set needs its "
          "targets (the clean images) to be scored", fatal=True))
      continue
    rules[name] = rule
    splits[name] = _pairs_in(lister, name, folder, rule)
  rule = next(iter(rules.values()), _Rule(""))
  return Scan(root=root, layout=rule.layout, splits=splits, files=sorted(lister.files),
              problems=lister.problems, ignored=lister.ignored, held_out_test=False,
              rules={s: dataclasses.asdict(r) for s, r in rules.items()})
