"""Tests of the folder sources (paired_folder, raindrop, rain100): layouts, pairing,
splits, caching by content, and training on them."""

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
from pix2pix_jax import datasets
from pix2pix_jax import input_pipeline
from pix2pix_jax import train
from pix2pix_jax.datasets import layouts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(cache_dir, source, path, **overrides):
  config = default.get_config("tiny")
  config.num_train_steps = 2  # tiny's batch of 8: the compiled step is shared with other tests.
  config.data.cache_dir = str(cache_dir)
  config.data.source = source
  config.data.path = str(path)
  config.update_from_flattened_dict(overrides)
  return config


def decoded(image_bytes) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(image_bytes)))


# (name, source, writer, config overrides, expected split sizes).
LAYOUTS = {
    "aligned": ("paired_folder", lambda r: writers.write_aligned(
        r, {"train": 6, "val": 2, "test": 3}, ext="png"), {},
        {"train": 6, "val": 2, "test": 3}),
    "aligned_jpg_no_splits": ("paired_folder", lambda r: writers.write_aligned(
        r, {"": 10}, ext="jpg"), {"data.layout": "aligned"}, {"train": 9, "test": 1}),
    "folders": ("paired_folder", lambda r: writers.write_folders(
        r, {"train": 6, "test": 2}), {}, {"train": 6, "test": 2}),
    "folders_with_splits_inside": ("paired_folder", lambda r: (
        writers.write_split_inside_folders(r, {"train": 5, "val": 1, "test": 2})), {},
        {"train": 5, "val": 1, "test": 2}),
    "folders_renamed": ("paired_folder", lambda r: writers.write_folders(
        r, {"": 8}, input_dir="input", target_dir="target", input_name="rain-{}",
        target_name="norain-{}"),
        {"data.layout": "folders", "data.input_dir": "input", "data.target_dir": "target",
         "data.input_pattern": "rain-{}", "data.target_pattern": "norain-{}"},
        {"train": 7, "test": 1}),
    "raindrop": ("raindrop", writers.write_raindrop, {},
                 {"train": 6, "test_a": 3, "test_b": 2, "test": 3}),
    "raindrop_test_b": ("raindrop", writers.write_raindrop, {"data.test_split": "test_b"},
                        {"train": 6, "test_a": 3, "test_b": 2, "test": 2}),
    "rain100": ("rain100", writers.write_rain100, {}, {"train": 6, "test": 2}),
    "rain100_subfolders": ("rain100", lambda r: writers.write_rain100(r, subfolders=True),
                           {}, {"train": 6, "test": 2}),
}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def layout_roots(tmp_path_factory):
  """name -> folder of each layout in LAYOUTS, written once for the module."""
  base = tmp_path_factory.mktemp("layouts")
  roots = {}
  for name, (_, write, _, _) in LAYOUTS.items():
    folder = str(base / name.replace("_test_b", ""))
    if not os.path.exists(folder):
      write(folder)
    roots[name] = folder
  return roots


def layout_config(name, layout_roots, cache_dir):
  source, _, overrides, _ = LAYOUTS[name]
  return tiny_config(cache_dir, source, layout_roots[name], **overrides)


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_each_layout_builds_its_splits_of_true_pairs(name, layout_roots, cache_dir):
  config = layout_config(name, layout_roots, cache_dir)
  data = datasets.prepare(config.data, seed=0)
  assert {s: len(source) for s, source in data.sources.items()} == LAYOUTS[name][3]
  assert data.report["status"] == "ok" and not data.report["skipped"]
  for split, source in data.sources.items():
    for i in range(len(source)):
      example = source[i]
      a, b = decoded(example["A"]), decoded(example["B"])
      assert a.shape == b.shape == (writers.SIZE, writers.SIZE, 3)
      if "jpg" not in name and not example["name"].endswith(b"train/0"):
        np.testing.assert_array_equal(b, 255 - a, err_msg=f"{split}[{i}] not a pair")
  batch = input_pipeline.create_train_dataset(config, data.sources)[0]
  assert batch["input"].shape == (8, 32, 32, 3)
  eval_batch = next(iter(input_pipeline.eval_batches(config, data.sources["test"],
                                                     batch_size=2)))
  assert eval_batch["target"].shape[1:] == (32, 32, 3)


def test_auto_detects_aligned_and_folders(layout_roots):
  for name, layout in (("aligned", "aligned"), ("folders", "folders")):
    config = layout_config(name, layout_roots, "unused")
    assert config.data.layout == "auto"
    assert layouts.scan(config.data).layout == layout


def test_stems_are_matched_in_natural_order(tmp_path):
  root = writers.write_folders(str(tmp_path / "d"), {"train": 12, "test": 1})
  config = tiny_config(tmp_path / "cache", "paired_folder", root)
  names = [p.name for p in layouts.scan(config.data).splits["train"]]
  assert names == [f"train/{i}" for i in range(12)]


def test_held_out_test_is_deterministic_and_disjoint(layout_roots, tmp_path):
  config = layout_config("folders_renamed", layout_roots, tmp_path / "cache")
  config.data.test_fraction = 0.25
  first = datasets.prepare(config.data, seed=0)
  again = datasets.prepare(config.data, seed=1)  # the seed does not change the split.
  names = {split: {source[i]["name"] for i in range(len(source))}
           for split, source in first.sources.items()}
  assert len(names["test"]) == 2 and len(names["train"]) == 6
  assert not names["test"] & names["train"]
  assert names["test"] == {again.sources["test"][i]["name"] for i in range(2)}
  assert first.report["held_out_test"]


def test_btoa_swaps_the_aligned_halves(layout_roots, cache_dir):
  config = layout_config("aligned", layout_roots, cache_dir)
  sources = datasets.get_data_sources(config.data, seed=0)
  a_to_b = input_pipeline.create_train_dataset(config, sources)[0]
  config.data.direction = "BtoA"
  b_to_a = input_pipeline.create_train_dataset(config, sources)[0]
  np.testing.assert_array_equal(a_to_b["input"], b_to_a["target"])
  np.testing.assert_allclose(a_to_b["input"], -a_to_b["target"], atol=0.02)  # 255 - A.


def test_rebuilt_when_a_file_changes_reused_otherwise(tmp_path):
  root = writers.write_folders(str(tmp_path / "d"), {"train": 4, "test": 1})
  config = tiny_config(tmp_path / "cache", "paired_folder", root)
  built = tmp_path / "cache" / "paired_images"
  first = datasets.prepare(config.data, seed=0)
  path = os.path.join(root, "train", "B", "2.png")
  os.utime(path, (0, 0))  # touched: same bytes, same dataset.
  assert datasets.prepare(config.data, seed=0).report["dataset"] == first.report["dataset"]
  assert len(os.listdir(built)) == 1
  a, b = writers.pair_images("train2")
  b[0, 0, 0] ^= 1  # one bit of one pixel.
  writers.save(b, path)
  second = datasets.prepare(config.data, seed=0)
  assert second.report["dataset"] != first.report["dataset"]
  assert len(os.listdir(built)) == 2
  assert decoded(second.sources["train"][2]["B"])[0, 0, 0] == b[0, 0, 0]
  del a


def test_max_dataset_size_keeps_the_first_training_pairs(layout_roots, cache_dir):
  config = layout_config("folders", layout_roots, cache_dir)
  config.data.max_dataset_size = 4
  data = datasets.prepare(config.data, seed=0)
  assert len(data.sources["train"]) == 4 and len(data.sources["test"]) == 2
  assert [data.sources["train"][i]["name"] for i in range(4)] == [
      f"train/{i}".encode() for i in range(4)]


def test_missing_data_path_is_a_config_error(tmp_path):
  config = tiny_config(tmp_path / "cache", "paired_folder", "")
  with pytest.raises(ValueError, match="data.path is empty"):
    datasets.prepare(config.data, seed=0)


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_trains_two_steps(name, layout_roots, cache_dir, tmp_path):
  config = layout_config(name, layout_roots, cache_dir)
  workdir = str(tmp_path / "run")
  state = train.train_and_evaluate(config, workdir)
  assert int(state.step) == 2
  with open(os.path.join(workdir, "data_report.json")) as f:
    report = json.load(f)
  assert report["source"] == LAYOUTS[name][0] and report["status"] == "ok"
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "2"))


def test_cli_prepare_data_builds_without_training(layout_roots, tmp_path):
  workdir = tmp_path / "w"
  result = subprocess.run(
      [sys.executable, "main.py", "--mode=prepare_data", f"--workdir={workdir}",
       "--config=configs/default.py:tiny", "--config.data.source=rain100",
       f"--config.data.path={layout_roots['rain100']}",
       f"--config.data.cache_dir={tmp_path / 'cache'}"],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout)
  assert report["splits"] == {"train": 6, "test": 2}
  assert os.listdir(workdir) == ["data_report.json"]  # no training.
  assert os.listdir(tmp_path / "cache" / "paired_images")


# ------------------------------------------------------------------------- channels


def write_pairs(root, make_pair, count=3):
  """A folders dataset of `count` train and 1 test pairs from make_pair(key) -> (a, b)."""
  for split, n in (("train", count), ("test", 1)):
    for i in range(n):
      a, b = make_pair(f"{split}{i}")
      writers.save(a, os.path.join(root, split, "A", f"{i}.png"))
      writers.save(b, os.path.join(root, split, "B", f"{i}.png"))
  return root


def first_batch(config):
  data = datasets.prepare(config.data, seed=0)
  return data, next(iter(input_pipeline.eval_batches(config, data.sources["test"],
                                                     batch_size=1)))


def test_grayscale_is_read_as_one_channel_or_expanded_to_three(tmp_path):
  root = write_pairs(str(tmp_path / "gray"),
                     lambda key: writers.pair_images(key, channels=1))
  config = tiny_config(tmp_path / "cache", "paired_folder", root,
                       **{"model.input_channels": 1, "model.output_channels": 1})
  data, batch = first_batch(config)
  assert batch["input"].shape == (1, 32, 32, 1)
  assert input_pipeline.create_train_dataset(config, data.sources)[0]["input"].shape == (
      8, 32, 32, 1)
  config.model.update(input_channels=3, output_channels=3)
  _, batch = first_batch(config)
  assert batch["input"].shape == (1, 32, 32, 3)
  np.testing.assert_array_equal(batch["input"][..., 0], batch["input"][..., 2])


def test_rgba_loses_its_alpha_with_a_warning(tmp_path):
  def rgba_pair(key):
    a, b = writers.pair_images(key, channels=4)
    return a, b[..., :3]
  root = write_pairs(str(tmp_path / "rgba"), rgba_pair)
  config = tiny_config(tmp_path / "cache", "paired_folder", root)
  data, batch = first_batch(config)
  assert any(w.startswith("train/A/0.png: has an alpha channel")
             for w in data.report["warnings"])
  assert batch["input"].shape == (1, 32, 32, 3)


def test_16_bit_png_is_scaled_by_its_full_range(tmp_path):
  levels = np.array([0, 32896, 65535], np.uint16)  # 0, 128 and 255 in 8 bits.

  def deep_pair(key):
    del key
    image = np.repeat(levels, 40 // 3 + 1)[:40][None, :].repeat(40, 0).astype(np.uint16)
    return image, image
  root = write_pairs(str(tmp_path / "deep"), deep_pair)
  with Image.open(os.path.join(root, "train", "A", "0.png")) as image:
    assert image.mode == "I;16"
  for channels in (1, 3):
    config = tiny_config(tmp_path / "cache", "paired_folder", root,
                         **{"data.preprocess": "crop", "model.input_channels": channels,
                            "model.output_channels": channels})
    _, batch = first_batch(config)
    row = batch["input"][0, 0, :, 0]
    assert row.min() == -1.0 and row.max() == 1.0
    assert np.isclose(row, 128 / 127.5 - 1, atol=1e-3).any()


def test_worker_processes_read_folder_sources(layout_roots, cache_dir):
  config = layout_config("folders", layout_roots, cache_dir)
  config.num_train_steps = 4
  config.data.max_dataset_size = 5  # a Subset of the built source, sent to the worker.
  sources = datasets.get_data_sources(config.data, seed=0)
  expected = input_pipeline.create_train_dataset(config, sources)
  config.data.num_workers = 1
  with input_pipeline.train_batches(config, sources["train"], start_step=1) as batches:
    for step in range(1, 4):
      batch = next(batches)
      for key in batch:
        np.testing.assert_array_equal(batch[key], expected[step][key])
