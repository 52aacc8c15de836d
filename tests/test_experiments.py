"""The ablation runner: a tiny two-variant suite end to end, resuming, planning, D fields."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from configs.experiments import generators, losses, patch_sizes, scales
from pix2pix_jax import configuration
from pix2pix_jax import experiments
from pix2pix_jax import models
from pix2pix_jax import step as step_lib
from pix2pix_jax import train
from pix2pix_jax.experiments import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ["l1", "l1_cgan"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("experiments_cache"))


@pytest.fixture(scope="module")
def suite(tmp_path_factory, cache_dir):
  """The losses suite at the tiny scale, two variants, 4 steps each."""
  workdir = str(tmp_path_factory.mktemp("experiments") / "W")
  overrides = {"data.cache_dir": cache_dir}
  results = experiments.run_suite("losses", workdir, scale="tiny", variants=VARIANTS,
                                  overrides=overrides)
  return workdir, results, overrides


def test_suite_trains_scores_and_reports_each_variant(suite):
  workdir, results, _ = suite
  assert [r["variant"] for r in results] == VARIANTS
  for result in results:
    assert result["steps"] == scales.SCALES["tiny"][1]["num_train_steps"]
    # auto: the tiny scale trains at batch 8, so running statistics.
    assert result["num_test"] == 4 and result["norm_mode"] == "running"
    assert np.isfinite(result["model"]["psnr_y"]) and 0 < result["model"]["hist_L"] <= 1
  # The same test images for every variant: one identity baseline.
  assert results[0]["identity"] == results[1]["identity"]
  # Different objectives give different generators.
  assert results[0]["model"]["psnr_y"] != results[1]["model"]["psnr_y"]

  with open(os.path.join(workdir, "losses.md")) as f:
    table = f.read()
  assert "--suite=losses" in table and "`tiny`" in table
  rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
  assert rows[0].startswith("| variant | overrides of the default | Y-PSNR (dB) | gain (dB) "
                            "| Y-PSNR, `paper` | Y-SSIM")
  identity = results[0]['identity']['psnr_y']
  assert rows[1].startswith(f"| identity (the input) | - | {identity:.2f} | 0 | - |")
  l1 = results[0]["model"]["psnr_y"]
  assert rows[2].startswith(
      f"| L1 | `loss.gan='none'` | {l1:.2f} | {l1 - identity:+.2f} | "
      f"{results[0]['by_norm_mode']['paper']['psnr_y']:.2f} |")
  # The tiny scale rescales its crops (resize_and_crop): scored at the crop size.
  assert "brought to 32x32 as in training" in table
  assert rows[3].startswith("| L1+cGAN | (none: the default) | ")


def test_figure_rows_are_input_variants_target(suite):
  workdir, _, overrides = suite
  figure = np.asarray(Image.open(os.path.join(workdir, "losses.png")).convert("RGB"))
  runs = [p.workdir for p in experiments.plan("losses", workdir, scale="tiny",
                                              variants=VARIANTS, overrides=overrides)]
  identity = report.identity_psnr_y(runs[0])
  indices = report.figure_indices(4, identity_psnr=identity)
  assert sorted(indices) == [0, 1, 2, 3]  # all 4, the heaviest rain (lowest PSNR) first
  assert [identity[i] for i in indices] == sorted(identity)
  assert report.figure_indices(100, 3, np.arange(100)[::-1]) == [99, 49, 0]
  tile, gap = 32, 2
  assert figure.shape[0] == 4 * (tile + gap)  # input, 2 variants, target
  label_w = figure.shape[1] - len(indices) * (tile + gap)
  for row, (run, kind) in enumerate([(runs[0], "input"), (runs[0], "output"),
                                     (runs[1], "output"), (runs[1], "target")]):
    for column in (0, 3):
      expected = np.asarray(Image.open(os.path.join(
          run, "eval", "images", f"{indices[column]:04d}_{kind}.png")).convert("RGB"))
      top, left = row * (tile + gap), label_w + column * (tile + gap)
      np.testing.assert_array_equal(figure[top:top + tile, left:left + tile], expected)


def test_finished_variants_are_skipped_and_interrupted_ones_refused(suite, monkeypatch):
  workdir, results, overrides = suite

  def must_not_train(config, workdir):
    raise AssertionError(f"trained again in {workdir}")
  monkeypatch.setattr(train, "train_and_evaluate", must_not_train)
  again = experiments.run_suite("losses", workdir, scale="tiny", variants=VARIANTS,
                                overrides=overrides)
  assert again == results
  # A run another suite shares is read back under this suite's name, label and overrides.
  (shared,) = experiments.plan("generators", workdir, scale="tiny", variants=["unet_l1_cgan"],
                               overrides=overrides)
  result = experiments.train_and_score(shared)
  assert result["label"] == shared.variant.label != results[-1]["label"]
  assert result["model"] == results[-1]["model"]

  # A run stopped by a signal returns early: the suite stops, nothing counts as done.
  monkeypatch.setattr(train, "train_and_evaluate",
                      lambda config, workdir: step_lib.TrainState(
                          step=jnp.int32(1), generator=None, discriminator=None,
                          nonfinite_step=jnp.int32(-1)))
  with pytest.raises(experiments.InterruptedRun, match="stopped at step 1 of 2"):
    experiments.run_suite("losses", workdir, scale="tiny", variants=["cgan"],
                          overrides=overrides)
  (cgan,) = experiments.plan("losses", workdir, scale="tiny", variants=["cgan"],
                             overrides=overrides)
  assert not os.path.exists(os.path.join(cgan.workdir, experiments.RESULT_FILE))


def test_suites_share_runs_and_check_configs_first(tmp_path):
  workdir = str(tmp_path)
  shared = {experiments.plan(suite, workdir, variants=[name])[0].workdir
            for suite, name in (("losses", "l1_cgan"), ("generators", "unet_l1_cgan"),
                                ("patch_sizes", "patch70"))}
  assert len(shared) == 1 and os.path.basename(shared.pop()).startswith("unet_d3_l1-cgan_")
  names = [os.path.basename(p.workdir) for p in experiments.plan("losses", workdir)]
  assert len(set(names)) == len(losses.VARIANTS)
  assert [n.rsplit("_", 1)[0] for n in names] == [
      "unet_d3_l1", "unet_d3_gan", "unet_d3_cgan", "unet_d3_l1-gan", "unet_d3_l1-cgan"]
  # Another config gives another run directory.
  assert experiments.plan("losses", workdir, variants=["l1"],
                          overrides={"seed": 1})[0].workdir != experiments.plan(
                              "losses", workdir, variants=["l1"])[0].workdir

  with pytest.raises(configuration.ConfigError, match="--config.loss.gan is what the losses"):
    experiments.plan("losses", workdir, overrides={"loss.gan": "lsgan"})
  with pytest.raises(configuration.ConfigError, match="Unknown variant 'nope'"):
    experiments.plan("generators", workdir, variants=["nope"])
  for key in ("model.ngff", "nope.ngf"):
    with pytest.raises(configuration.ConfigError, match=f"{key} is not a key"):
      experiments.plan("generators", workdir, overrides={key: 3})
  # 286x286 needs a 64+ crop: refused before anything trains, naming the variant.
  with pytest.raises(configuration.ConfigError, match="'image286'.*model.d_layers=5"):
    experiments.plan("patch_sizes", workdir, scale="tiny")
  assert generators.get_config("encoder_decoder_l1,paper").model.skip_connections is False
  assert patch_sizes.get_config("pixel").data.crop_size == 64  # cpu by default
  # The cpu scale crops the stored 96x96 pairs without rescaling: scored whole, as eval does.
  assert not experiments.scored_at_crop_size(patch_sizes.get_config("pixel"))
  assert experiments.scored_at_crop_size(patch_sizes.get_config("pixel,small"))
  # 286x286 does not fit the cpu scale's 64x64 crops; the other three do.
  with pytest.raises(configuration.ConfigError, match="'image286'.*too deep for data.crop_size=64"):
    experiments.plan("patch_sizes", workdir)
  assert len(experiments.plan("patch_sizes", workdir, variants=["pixel", "patch16", "patch70"])) == 3


@pytest.mark.parametrize("d_layers,crop", [(3, 64), (5, 128)])
def test_discriminator_fields_match_gradients(d_layers, crop):
  d = models.PatchDiscriminator(ndf=2, n_layers=d_layers, conv_impl="xla")
  x = jax.random.normal(jax.random.key(0), (1, crop, crop, 3))
  variables = d.init(jax.random.key(1), x, train=False)
  fields = report.discriminator_fields(crop, d_layers)

  @jax.jit
  def input_rows_used(row_weights):  # which input rows the weighted logit rows depend on
    grad = jax.grad(lambda x: jnp.sum(
        d.apply(variables, x, train=False)[0, :, :, 0].sum(1) * row_weights))(x)
    return jnp.abs(grad)[0].sum(axis=(1, 2)) > 0
  for row in (0, len(fields) // 2, len(fields) - 1):
    used = np.nonzero(np.asarray(input_rows_used(jnp.eye(len(fields))[row])))[0]
    start, end = fields[row]
    assert (used[0], used[-1] + 1) == (max(start, 0), min(end, crop))
  config = patch_sizes.get_config("image286,small")
  assert report.describe_discriminator(config).startswith(
      "2x2 logits, each on the whole 128x128 image")


def test_cli_refuses_overriding_what_the_suite_varies(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "pix2pix_jax.experiments", "--suite=losses",
       f"--workdir={tmp_path}", "--config.loss.l1_weight=10"],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 1
  assert "--config.loss.l1_weight is what the losses suite varies" in result.stderr
  assert not os.listdir(tmp_path)


def test_run_report_writes_the_table_curve_and_figure(suite, tmp_path):
  from pix2pix_jax.experiments import run_report  # pylint: disable=g-import-not-at-top
  workdir, _, _ = suite
  runs = os.path.join(workdir, experiments.RUNS_DIR)
  run = os.path.join(runs, sorted(os.listdir(runs))[0])  # a trained variant's workdir.
  out = str(tmp_path / "run")
  summary = run_report.write(run, out, command="CMD", trained_by="TRAIN")
  page = open(out + ".md").read()
  assert "Made by: `CMD`, after training W with `TRAIN`." in page
  identity = summary["identity"]["psnr_y"]
  assert f"| identity (the rainy input) | {identity:.2f} | 0 |" in page
  for mode, means in summary["by_norm_mode"].items():
    assert f"`{mode}` norm mode" in page and f"{means['psnr_y'] - identity:+.2f}" in page
  assert os.path.getsize(out + ".png") > 0 and "/tmp" not in page.replace(str(tmp_path), "")


def test_committed_tables_name_no_absolute_workdir(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert experiments.displayed_workdir("runs/x") == "runs/x"
  assert experiments.displayed_workdir(str(tmp_path / "runs" / "x")) == "runs/x"
  assert experiments.displayed_workdir("/elsewhere/results") == "W"
  assert experiments.displayed_command(["--suite=losses", "--workdir=/elsewhere/r"]) == (
      "python -m pix2pix_jax.experiments --suite=losses --workdir=W")
  assert experiments.displayed_command(["--workdir", "/elsewhere/r", "--scale=cpu"]) == (
      "python -m pix2pix_jax.experiments --workdir W --scale=cpu")
  assert "--workdir=W " in experiments.default_command("losses", "/elsewhere/r", "cpu")


def test_keys_added_later_leave_the_run_folders_of_older_runs_alone():
  from configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config("tiny")
  older = default.get_config("tiny")
  for key in experiments.HASH_NEUTRAL:
    section, name = key.split(".")
    if name in older[section]:
      del older[section][name]
  del older["eval"]
  assert experiments.config_hash(config) == experiments.config_hash(older)
  config.model.upsample = "nearest"
  assert experiments.config_hash(config) != experiments.config_hash(older)
