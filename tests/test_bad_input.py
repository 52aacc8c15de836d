"""Bad input is found before training, every problem at once, each naming its file.

`data.on_bad_file=error` (default) raises a DataError listing everything; `skip` builds
without the bad pairs and lists them in the report (W/data_report.json).
"""

import io
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

import dataset_writers as writers
from configs import default
from pix2pix_jax import configuration
from pix2pix_jax import datasets
from pix2pix_jax import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def folders_config(tmp_path, **overrides):
  """A paired_folder config over a fresh A/B dataset (train 4 pairs, test 2)."""
  root = writers.write_folders(str(tmp_path / "data"), {"train": 4, "test": 2})
  config = default.get_config("tiny")
  config.data.source = "paired_folder"
  config.data.path = root
  config.data.cache_dir = str(tmp_path / "cache")
  config.update_from_flattened_dict(overrides)
  return config, root


def problems_of(config) -> str:
  with pytest.raises(configuration.DataError) as error:
    datasets.prepare(config.data, seed=0)
  assert not os.path.exists(os.path.join(config.data.cache_dir, "paired_images"))
  return str(error.value)


def truncate(path):
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])


def test_truncated_image(tmp_path):
  config, root = folders_config(tmp_path)
  truncate(os.path.join(root, "train", "B", "1.png"))
  message = problems_of(config)
  assert "train/B/1.png: not a readable image" in message
  assert "data.on_bad_file=skip" in message


def test_unreadable_file(tmp_path):
  config, root = folders_config(tmp_path)
  with open(os.path.join(root, "test", "A", "0.png"), "wb") as f:
    f.write(b"this is not a PNG")
  assert "test/A/0.png: not a readable image" in problems_of(config)


def test_zero_byte_file(tmp_path):
  config, root = folders_config(tmp_path)
  open(os.path.join(root, "train", "A", "3.png"), "wb").close()
  message = problems_of(config)
  assert "train/A/3.png: zero-byte file" in message
  assert message.count("train/A/3.png") == 1  # reported once, not again as unreadable.


def test_pair_of_different_sizes(tmp_path):
  config, root = folders_config(tmp_path)
  a, _ = writers.pair_images("train2")
  writers.save(a[:36], os.path.join(root, "train", "B", "2.png"))
  message = problems_of(config)
  assert "train/A/2.png: pair of different sizes" in message
  assert "train/B/2.png is 40x36" in message
  assert "data.allow_size_mismatch" in message


def test_size_mismatch_allowed_resizes_the_target_with_a_warning(tmp_path):
  config, root = folders_config(tmp_path, **{"data.allow_size_mismatch": True})
  a, b = writers.pair_images("train2")
  writers.save(b[:36], os.path.join(root, "train", "B", "2.png"))
  data = datasets.prepare(config.data, seed=0)
  assert any("train/A/2.png" in w and "resized" in w for w in data.report["warnings"])
  target = np.asarray(Image.open(io.BytesIO(data.sources["train"][2]["B"])))
  assert target.shape == a.shape


def test_file_with_no_partner(tmp_path):
  config, root = folders_config(tmp_path)
  writers.save(writers.pair_images("x")[0], os.path.join(root, "train", "A", "extra.png"))
  os.remove(os.path.join(root, "test", "A", "1.png"))
  message = problems_of(config)
  assert "train/A/extra.png: no partner: expected extra.* in train/B/" in message
  assert "test/B/1.png: no partner: expected 1.* in test/A/" in message


def test_file_not_matching_the_stem_pattern(tmp_path):
  root = writers.write_rain100(str(tmp_path / "data"))
  writers.save(writers.pair_images("x")[0], os.path.join(root, "train", "snow-3.png"))
  config = default.get_config("tiny")
  config.data.update(source="rain100", path=root, cache_dir=str(tmp_path / "cache"))
  assert "train/snow-3.png: file name does not match" in problems_of(config)


def test_empty_folder(tmp_path):
  config, root = folders_config(tmp_path)
  for name in os.listdir(os.path.join(root, "test", "B")):
    os.remove(os.path.join(root, "test", "B", name))
  message = problems_of(config)
  assert "test/B/: empty folder" in message
  assert "cannot skip" in message


def test_missing_folder(tmp_path):
  config, _ = folders_config(tmp_path)
  config.data.path = str(tmp_path / "nowhere")
  assert f"{tmp_path / 'nowhere'}: missing folder" in problems_of(config)
  root = writers.write_raindrop(str(tmp_path / "raindrop"), {"train": 3, "test_b": 1})
  config.data.update(source="raindrop", path=root)
  assert "test_a/: missing folder" in problems_of(config)  # data.test_split=test_a.
  config.data.test_split = "test_b"
  assert len(datasets.prepare(config.data, seed=0).sources["test"]) == 1


def test_aligned_image_with_odd_width(tmp_path):
  root = writers.write_aligned(str(tmp_path / "data"), {"train": 3, "test": 1})
  writers.save(np.zeros((40, 81, 3), np.uint8), os.path.join(root, "train", "odd.png"))
  config = default.get_config("tiny")
  config.data.update(source="paired_folder", path=root, cache_dir=str(tmp_path / "cache"))
  assert "train/odd.png: aligned image has an odd width (81)" in problems_of(config)


def test_image_smaller_than_the_crop(tmp_path):
  config, root = folders_config(tmp_path, **{"data.preprocess": "crop"})
  a, b = writers.pair_images("small", size=24)
  writers.save(a, os.path.join(root, "train", "A", "1.png"))
  writers.save(b, os.path.join(root, "train", "B", "1.png"))
  message = problems_of_prepared(config)
  assert "train/A/1.png: image is 24x24, smaller than data.crop_size=32" in message
  config.data.preprocess = "resize_and_crop"  # resized first: fits (same built dataset).
  assert len(datasets.prepare(config.data, seed=0).sources["train"]) == 4
  config.data.update(preprocess="crop", on_bad_file="skip")
  data = datasets.prepare(config.data, seed=0)
  assert len(data.sources["train"]) == 3
  assert [data.sources["train"][i]["name"] for i in range(3)] == [
      b"train/0", b"train/2", b"train/3"]
  assert any("train/A/1.png" in s for s in data.report["skipped"])


def problems_of_prepared(config) -> str:
  """The DataError of a dataset that builds but cannot be read as configured."""
  with pytest.raises(configuration.DataError) as error:
    datasets.prepare(config.data, seed=0)
  return str(error.value)


def test_non_image_files_are_ignored(tmp_path):
  config, root = folders_config(tmp_path)
  for name in ("notes.txt", "labels.csv", ".DS_Store"):
    with open(os.path.join(root, "train", "A", name), "w") as f:
      f.write("x")
  data = datasets.prepare(config.data, seed=0)
  assert len(data.sources["train"]) == 4 and not data.report["skipped"]
  assert "train/A/notes.txt" in data.report["ignored"]


def _break_several(root):
  truncate(os.path.join(root, "train", "A", "0.png"))
  open(os.path.join(root, "train", "B", "3.png"), "wb").close()
  os.remove(os.path.join(root, "test", "B", "0.png"))
  return ("train/A/0.png", "train/B/3.png", "test/A/0.png")


def test_every_problem_is_listed_at_once(tmp_path):
  config, root = folders_config(tmp_path)
  names = _break_several(root)
  message = problems_of(config)
  assert "3 problem(s)" in message
  for name in names:
    assert name in message


def test_skip_leaves_bad_pairs_out_and_reports_them(tmp_path):
  config, root = folders_config(tmp_path, **{"data.on_bad_file": "skip"})
  names = _break_several(root)
  data = datasets.prepare(config.data, seed=0)
  assert len(data.sources["train"]) == 2 and len(data.sources["test"]) == 1
  report_path = datasets.write_report(str(tmp_path / "w"), data.report)
  with open(report_path) as f:
    report = json.load(f)
  assert report["status"] == "ok"
  for name in names:
    assert any(s.startswith(name) for s in report["skipped"]), name


def test_skip_cannot_leave_a_split_empty(tmp_path):
  config, root = folders_config(tmp_path, **{"data.on_bad_file": "skip"})
  for i in range(2):
    truncate(os.path.join(root, "test", "A", f"{i}.png"))
  assert "test/: no usable pair" in problems_of(config)


def test_cli_prepare_data_lists_bad_files_and_writes_the_report(tmp_path):
  config, root = folders_config(tmp_path)
  names = _break_several(root)
  workdir = tmp_path / "w"
  result = subprocess.run(
      [sys.executable, "main.py", "--mode=prepare_data", f"--workdir={workdir}",
       "--config=configs/default.py:tiny", "--config.data.source=paired_folder",
       f"--config.data.path={root}", f"--config.data.cache_dir={tmp_path / 'cache'}"],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  for name in names:
    assert name in result.stderr
  with open(workdir / "data_report.json") as f:
    assert json.load(f)["status"] == "error"


def test_two_files_for_one_pair(tmp_path):
  root = writers.write_aligned(str(tmp_path / "data"), {"train": 3, "test": 1})
  a, b = writers.pair_images("dup")
  writers.save(np.concatenate([a, b], axis=1), os.path.join(root, "train", "1.jpg"))
  config = default.get_config("tiny")
  config.data.update(source="paired_folder", path=root, cache_dir=str(tmp_path / "cache"))
  assert "train/1.png: two aligned files for pair '1' (also train/1.jpg)" in problems_of(
      config)


def test_training_on_bad_data_stops_before_writing_anything(tmp_path):
  config, root = folders_config(tmp_path)
  truncate(os.path.join(root, "train", "B", "1.png"))
  with pytest.raises(configuration.DataError, match="train/B/1.png"):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")


def test_input_and_target_cannot_be_the_same_files(tmp_path):
  config, _ = folders_config(tmp_path, **{"data.target_dir": "A"})
  with pytest.raises(configuration.ConfigError, match="its own partner"):
    configuration.validate(config)


def test_preprocess_none_needs_crop_size_images(tmp_path):
  config, _ = folders_config(tmp_path, **{"data.preprocess": "none"})
  message = problems_of_prepared(config)
  assert "6 image(s) cannot be preprocessed" in message
  assert "train/A/0.png: image is 40x40; data.preprocess='none' needs exactly" in message


@pytest.mark.parametrize("flag,message", [
    ("--config.modle.ngf=3", '--config.modle.ngf names no config key: \'modle\' Did you mean '
                             '"model" instead of "modle"?'),
    ("--config.model.ngff=3", '--config.model.ngff names no config key: \'ngff\' Did you mean '
                              '"ngf" instead of "ngff"?'),
])
def test_cli_mistyped_config_key_is_one_line(tmp_path, flag, message):
  result = subprocess.run(
      [sys.executable, "main.py", f"--workdir={tmp_path / 'w'}", flag],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [f"FATAL Flags parsing error: {message}"]
  assert not (tmp_path / "w").exists()
