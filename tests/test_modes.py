"""eval, predict, export and in-training validation on a tiny trained workdir (and eval on a
never-trained one): the library functions and the command line."""

import csv
import json
import os
import subprocess
import sys

from jax import export as jax_export
import numpy as np
from PIL import Image
from PIL import ImageFile
import pytest

from pix2pix_jax import evaluation
from pix2pix_jax import export
from pix2pix_jax import inference
from pix2pix_jax import metrics
from pix2pix_jax import models
from pix2pix_jax import translator as translator_lib

import tiny_workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("modes_cache"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, cache_dir):
  """The tiny config trained 10 steps, validated at steps 5 and 10 on 2 test pairs."""
  from configs import default  # pylint: disable=g-import-not-at-top
  from pix2pix_jax import train  # pylint: disable=g-import-not-at-top
  config = default.get_config("tiny")
  config.data.cache_dir = cache_dir
  config.num_train_steps = 10
  config.eval_every_steps = 5
  config.eval_examples = 2
  workdir = str(tmp_path_factory.mktemp("modes") / "trained")
  train.train_and_evaluate(config, workdir)
  return workdir


@pytest.fixture(scope="module")
def untrained_workdir(tmp_path_factory, cache_dir):
  return tiny_workdir.make(str(tmp_path_factory.mktemp("modes") / "untrained"), cache_dir)


def _main(*args):
  return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=600)


def test_eval_writes_reports_with_identity(workdir):
  result = _main(f"--workdir={workdir}", "--mode=eval", "--checkpoint=best",
                 "--config.inference.norm_mode=running")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "identity" in result.stdout and "psnr_y" in result.stdout  # the printed table.
  assert "in running norm mode" in result.stderr  # the override applied to the saved config.
  assert "Evaluating checkpoint best" in result.stderr
  eval_dir = os.path.join(workdir, "eval")
  with open(os.path.join(eval_dir, "metrics.json")) as f:
    summary = json.load(f)
  expected = set(metrics.PIXEL_METRICS) | set(metrics.LAB_METRICS)
  assert set(summary["model"]) == expected and set(summary["identity"]) == expected
  # Both norm modes side by side; "model" is the chosen one.
  assert summary["norm_mode"] == "running"
  assert set(summary["by_norm_mode"]) == {"paper", "running"}
  assert summary["by_norm_mode"]["running"] == summary["model"]
  assert summary["by_norm_mode"]["paper"]["psnr_y"] != summary["model"]["psnr_y"]
  header = result.stdout.splitlines()[0]
  assert "model (running)" in header and "paper mode" in header and "identity" in header
  with open(os.path.join(eval_dir, "per_image.csv")) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 4  # the tiny test split.
  assert {"name", "model_psnr_y", "identity_ssim_rgb", "gain_psnr_y", "paper_psnr_y"
          } <= set(rows[0])
  assert float(rows[0]["gain_psnr_y"]) == pytest.approx(
      float(rows[0]["model_psnr_y"]) - float(rows[0]["identity_psnr_y"]))
  page = open(os.path.join(eval_dir, "index.html")).read()
  assert "sortBy" in page and page.count("<img") == 16  # input, 2 outputs, target.
  assert "paper mode" in page
  for name in ("0000_input.png", "0003_output.png", "0003_target.png",
               "0003_output_paper.png"):
    assert os.path.exists(os.path.join(eval_dir, "images", name))


def test_eval_of_a_never_trained_model_shows_the_identity_baseline(untrained_workdir):
  summary = evaluation.evaluate_workdir(untrained_workdir)
  table = evaluation.format_table(summary)
  assert "identity" in table.splitlines()[0]
  # The rainy input is closer to the clean target than an untrained model's output.
  assert summary["identity"]["psnr_y"] > summary["model"]["psnr_y"]
  assert os.path.exists(os.path.join(untrained_workdir, "eval", "index.html"))


def test_evaluate_agrees_with_metrics_of_the_translator(workdir, tmp_path):
  config, variables, _ = translator_lib.load_workdir(workdir)
  translator = translator_lib.Translator(config, variables, norm_mode="paper")
  rng = np.random.default_rng(0)
  pairs = [(f"p{i}", rng.integers(0, 256, (40, 52, 3), dtype=np.uint8),
            rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)) for i in range(2)]
  summary = evaluation.evaluate(translator, pairs, str(tmp_path))
  first = metrics.image_metrics(translator(pairs[0][1]), pairs[0][2])
  second = metrics.image_metrics(translator(pairs[1][1]), pairs[1][2])
  assert summary["model"]["psnr_y"] == pytest.approx((first["psnr_y"] + second["psnr_y"]) / 2)
  assert "| model" not in evaluation.format_table(summary)  # plain text, one row per metric.
  assert evaluation.format_table(summary).count("\n") == len(summary["model"])


def test_predict_mirrors_names_and_skips_unreadable_files(workdir, tmp_path):
  inputs = tmp_path / "in"
  (inputs / "sub").mkdir(parents=True)
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 256, (1000, 700, 3), dtype=np.uint8)).save(inputs / "big.png")
  Image.fromarray(rng.integers(0, 256, (50, 30), dtype=np.uint8)).save(inputs / "sub" / "g.jpg")
  (inputs / "broken.png").write_bytes(b"not an image")
  out = tmp_path / "out"
  result = _main(f"--workdir={workdir}", "--mode=predict", f"--input={inputs}",
                 f"--output={out}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Wrote 2 image(s)" in result.stdout and "skipped 1." in result.stdout
  assert "skipped " + str(inputs / "broken.png") + ": cannot identify image" in result.stdout
  with Image.open(out / "big.png") as image:
    assert image.size == (700, 1000)
  with Image.open(out / "sub" / "g.jpg") as image:
    assert image.size == (30, 50)
  assert not (out / "broken.png").exists()


def test_cli_errors_name_the_problem(workdir, tmp_path):
  result = _main(f"--workdir={tmp_path / 'missing'}", "--mode=eval")
  assert result.returncode != 0 and "does not exist" in result.stderr
  assert "Traceback" not in result.stderr
  result = _main(f"--workdir={workdir}", "--mode=predict", f"--output={tmp_path}")
  assert result.returncode != 0 and "--mode=predict needs --input" in result.stderr
  result = _main(f"--workdir={workdir}", "--mode=export", f"--output={tmp_path / 'g'}",
                 "--checkpoint=3")
  assert result.returncode != 0 and "no checkpoint at step 3" in result.stderr


@pytest.mark.parametrize("norm_mode", ["running", "paper"])
def test_export_reloads_with_jax_alone(workdir, tmp_path, norm_mode):
  path = str(tmp_path / "generator.jax")
  info = export.export_workdir(workdir, path, overrides={"inference.norm_mode": norm_mode})
  assert info["norm_mode"] == norm_mode
  with open(path + ".json") as f:
    assert json.load(f)["norm_mode"] == norm_mode
  with open(path, "rb") as f:
    exported = jax_export.deserialize(f.read())
  config, variables, _ = translator_lib.load_workdir(workdir)
  generate = inference.make_generate_fn(models.create_generator(config.model))
  for shape in [(1, 32, 32, 3), (3, 64, 96, 3)]:  # any batch, any multiple of 32.
    images = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    np.testing.assert_allclose(exported.call(images),
                               generate(variables, images, norm_mode=norm_mode), atol=1e-5)


def test_cli_export(workdir, tmp_path):
  path = tmp_path / "g.jax"
  result = _main(f"--workdir={workdir}", "--mode=export", f"--output={path}",
                 "--checkpoint=10")
  assert result.returncode == 0, result.stderr[-3000:]
  # The tiny config trains at batch 2, so `auto` exports running statistics.
  assert "running norm mode" in result.stdout
  exported = jax_export.deserialize(path.read_bytes())
  assert exported.call(np.zeros((2, 32, 64, 3), np.float32)).shape == (2, 32, 64, 3)


def test_training_validates_and_keeps_the_best(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  validation = [r for r in records if "val_psnr_y" in r]
  assert [r["step"] for r in validation] == [5, 10]
  with open(os.path.join(workdir, "best", "best.json")) as f:
    best = json.load(f)
  assert best["psnr_y"] == max(r["val_psnr_y"] for r in validation)
  assert os.listdir(os.path.join(workdir, "best", "checkpoints")) == [str(best["step"])]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["10"]  # rolling ones.
  translator = translator_lib.Translator.from_workdir(workdir, checkpoint="best")
  assert translator(np.zeros((36, 36, 3), np.uint8)).shape == (36, 36, 3)


def test_validation_logs_the_gain_in_both_norm_modes(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  validations = [r for r in rows if "val_psnr_y" in r]
  assert [r["step"] for r in validations] == [5, 10]
  for row in validations:
    assert row["val_psnr_y"] == row["val_running_psnr_y"]  # tiny trains at batch 8: auto.
    assert np.isfinite(row["val_paper_psnr_y"])
    assert row["val_gain_psnr_y"] == pytest.approx(
        row["val_psnr_y"] - row["val_identity_psnr_y"])


def test_run_report_writes_the_table_the_curve_and_the_figure(workdir, tmp_path):
  from pix2pix_jax.experiments import run_report  # pylint: disable=g-import-not-at-top
  out = str(tmp_path / "cpu")
  summary = run_report.write(workdir, out, command="python -m ... --out=docs/results/cpu")
  page = open(out + ".md").read()
  assert "identity (the rainy input)" in page and "`running` norm mode (the default)" in page
  assert f"{summary['model']['psnr_y']:.2f}" in page
  assert "| 5 |" in page and "| 10 |" in page  # the gain curve's rows.
  assert workdir not in page  # no absolute paths of this machine.
  with Image.open(out + ".png") as figure:
    assert figure.width > 32 and figure.height >= 3 * 32  # input, output, target rows.


def _photos(folder, count=3):
  os.makedirs(folder, exist_ok=True)
  for i in range(count):
    Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(os.path.join(folder, f"{i}.png"))
  return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def _inverted(image):  # a stand-in generator: no compilation needed.
  return 255 - np.asarray(image)


def test_predict_never_overwrites_an_input(tmp_path):
  photos = tmp_path / "photos"
  before = _photos(photos)
  for output in (photos, photos / "0.png"):  # the input folder itself; an input file.
    with pytest.raises(ValueError, match="Nothing was written|is a file"):
      evaluation.predict_path(_inverted, str(photos), str(output))
  with pytest.raises(ValueError, match="would overwrite the input"):  # one file, its folder.
    evaluation.predict_path(_inverted, str(photos / "1.png"), str(photos))
  assert {name: (photos / name).read_bytes() for name in os.listdir(photos)} == before


def test_predict_into_a_folder_inside_the_input_leaves_its_outputs_out(tmp_path):
  photos = tmp_path / "photos"
  before = _photos(photos)
  for _ in range(2):  # the second run must not translate the first run's outputs.
    written, failed = evaluation.predict_path(_inverted, str(photos), str(photos / "out"))
    assert len(written) == 3 and not failed
  assert sorted(os.listdir(photos / "out")) == sorted(before)
  assert {n: (photos / n).read_bytes() for n in before} == before


def test_one_decoder_for_deep_float_and_animated_images(tmp_path):
  """16-bit is scaled by 65535 and float taken as [0, 1], in predict as in training."""
  from pix2pix_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
  deep = Image.fromarray(ramp)
  path = tmp_path / "deep.png"
  deep.save(path)
  with Image.open(path) as reopened:
    predicted, _ = translator_lib.as_batch(reopened, 3)
  trained = np.asarray(input_pipeline.decode(path.read_bytes(), 3))
  np.testing.assert_array_equal(predicted[0], trained)
  assert predicted.min() == 0 and predicted.max() == 255 and (predicted == 255).mean() < 0.01
  half = translator_lib.as_batch(Image.fromarray(np.full((4, 4), 0.5, np.float32)), 3)[0]
  assert (half == 128).all()
  with pytest.raises(ValueError, match=r"floating-point image with values in \[0, 2\]"):
    translator_lib.as_batch(Image.fromarray(np.linspace(0, 2, 16, dtype=np.float32)
                                            .reshape(4, 4)), 3)
  frames = [Image.new("RGB", (8, 8), (i * 50, 0, 0)) for i in range(3)]
  frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
  with Image.open(tmp_path / "anim.gif") as animated:
    with pytest.warns(UserWarning, match="3 frames"):
      translator_lib.as_batch(animated, 3)


def test_predict_checks_the_size_from_the_header_before_decoding(tmp_path, monkeypatch):
  photos = tmp_path / "photos"
  _photos(photos, count=1)
  decoded = []
  monkeypatch.setattr(ImageFile.ImageFile, "load",
                      lambda self: decoded.append(self.filename))

  class RefusesLargeImages:
    def check_size(self, width, height):
      raise ValueError(f"A {width}x{height} image is larger than predict.tile_size")

    def __call__(self, image):
      raise AssertionError("a refused image was translated")

  written, failed = evaluation.predict_path(RefusesLargeImages(), str(photos),
                                            str(tmp_path / "out"))
  assert not written and "8x8 image is larger" in failed[0][1] and not decoded


def test_eval_writes_its_reports_where_asked(untrained_workdir, tmp_path):
  report = tmp_path / "report"
  default_reports = os.path.join(untrained_workdir, "eval", "metrics.json")
  before = os.stat(default_reports).st_mtime_ns if os.path.exists(default_reports) else None
  evaluation.evaluate_workdir(untrained_workdir, out_dir=str(report))
  assert {"metrics.json", "per_image.csv", "index.html"} <= set(os.listdir(report))
  after = os.stat(default_reports).st_mtime_ns if os.path.exists(default_reports) else None
  assert after == before  # W/eval untouched.
