"""Several test sets, one table: eval.sets / eval.sets_dir (Rain13K's test/<set>/{input,target}/)."""

import json
import os

import numpy as np
from PIL import Image
import pytest

from pix2pix_jax import configuration
from pix2pix_jax import evaluation
import tiny_workdir


def _write_set(root, name, count, size=(36, 40), seed=0, missing=()):
  rng = np.random.default_rng(seed)
  for kind in ("input", "target"):
    if kind in missing:
      continue
    os.makedirs(os.path.join(root, name, kind), exist_ok=True)
  for i in range(count):
    for kind in ("input", "target"):
      if kind in missing:
        continue
      image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
      Image.fromarray(image).save(os.path.join(root, name, kind, f"{i}.png"))


@pytest.fixture(name="workdir", scope="module")
def _workdir(tmp_path_factory):
  base = tmp_path_factory.mktemp("sets")
  return tiny_workdir.make(str(base / "w"), str(base / "cache"))


def test_every_set_scored_with_the_average_of_the_set_means(workdir, tmp_path):
  sets = tmp_path / "test"
  _write_set(sets, "Rain100H", 3, seed=1)
  _write_set(sets, "Rain100L", 2, seed=2)
  out = tmp_path / "eval"
  summary = evaluation.evaluate_workdir(
      workdir, overrides={"eval.sets": "all", "eval.sets_dir": str(sets)}, out_dir=str(out))
  assert list(summary["sets"]) == ["Rain100H", "Rain100L"]
  assert [s["num_images"] for s in summary["sets"].values()] == [3, 2]
  for key in ("model", "identity"):
    expected = np.mean([s[key]["psnr_y"] for s in summary["sets"].values()])
    assert summary["average"][key]["psnr_y"] == pytest.approx(expected)
    assert summary[key] == summary["average"][key]
  with open(out / "metrics.json") as f:
    saved = json.load(f)
  assert saved["protocol"] == "raindrop" and set(saved["sets"]) == {"Rain100H", "Rain100L"}
  for name in ("Rain100H", "Rain100L"):
    assert (out / name / "index.html").exists() and (out / name / "per_image.csv").exists()
  page = (out / "index.html").read_text()
  assert "href='Rain100H/index.html'" in page and "average" in page
  table = (out / "sets.md").read_text()
  assert "[Rain100L](Rain100L/index.html) | 2 |" in table and "| **average** |" in table
  text = evaluation.format_sets_table(summary)
  assert text.splitlines()[0].startswith("set") and len(text.splitlines()) == 4

  only = evaluation.evaluate_workdir(
      workdir, overrides={"eval.sets": "Rain100L", "eval.sets_dir": str(sets),
                          "eval.protocol": "rain13k"}, out_dir=str(tmp_path / "eval_l"))
  assert list(only["sets"]) == ["Rain100L"] and only["protocol"] == "rain13k"
  assert only["average"]["model"] == only["sets"]["Rain100L"]["model"]


@pytest.mark.parametrize("make,overrides,message", [
    (lambda d: _write_set(d, "Rain100H", 1, missing=("target",)), {},
     "Rain100H/target/: missing folder: a test set needs its targets"),
    (lambda d: (_write_set(d, "Test100", 2), os.remove(os.path.join(d, "Test100", "target",
                                                                     "1.png"))), {},
     "Test100/input/1.png: no partner"),
    (lambda d: (_write_set(d, "A", 1), _write_set(d, "A", 1, size=(30, 40), missing=("input",))),
     {}, "pair of different sizes"),
    (lambda d: _write_set(d, "Rain100H", 1), {"eval.sets": "Rain100X"},
     "Rain100X/: no such test set folder (eval.sets); it has Rain100H"),
])
def test_bad_sets_stop_with_a_line_naming_them(workdir, tmp_path, make, overrides, message):
  sets = tmp_path / "test"
  os.makedirs(sets)
  make(str(sets))
  with pytest.raises(configuration.DataError, match="nothing was scored") as error:
    evaluation.evaluate_workdir(
        workdir, overrides={"eval.sets": "all", "eval.sets_dir": str(sets), **overrides},
        out_dir=str(tmp_path / "eval"))
  assert message in str(error.value)
  assert not (tmp_path / "eval").exists()


def test_size_mismatch_follows_allow_size_mismatch(workdir, tmp_path):
  sets = tmp_path / "test"
  _write_set(sets, "A", 1)
  _write_set(sets, "A", 1, size=(30, 40), missing=("input",))
  summary = evaluation.evaluate_workdir(
      workdir, overrides={"eval.sets": "all", "eval.sets_dir": str(sets),
                          "data.allow_size_mismatch": True}, out_dir=str(tmp_path / "eval"))
  assert summary["sets"]["A"]["num_images"] == 1


def test_sets_need_a_folder():
  config = tiny_workdir.default.get_config("tiny")
  config.eval.sets = "all"
  with pytest.raises(configuration.ConfigError, match="eval.sets needs the folder"):
    evaluation.sets_dir(config)
