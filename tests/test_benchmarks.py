"""The throughput benchmark runs end to end and its last line is the promised JSON object;
error_split splits a model's error between the rain and the background."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = ("train_images_per_s", "train_images_per_s_bs4", "infer_latency_ms_bs1",
        "infer_latency_ms_bs1_paper", "infer_images_per_s_bs8", "compile_s", "peak_rss_mb",
        "train_gflop_per_image", "matmul_peak_gflops", "fraction_of_peak")


def test_throughput_prints_every_field_as_its_last_line():
  command = [sys.executable, "-m", "benchmarks.throughput", "--config=configs/default.py:tiny",
             "--train_batch_sizes=1,4", "--steps=1", "--infer_repeats=1",
             "--matmul_size=256"]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads(result.stdout.strip().splitlines()[-1])
  for key in KEYS:
    assert key in summary, key
    assert summary[key] > 0, (key, summary[key])
  assert summary["conv_impl"] == "auto" and summary["crop_size"] == 32
  assert 0 < summary["fraction_of_peak"] < 1.5
  trains = [json.loads(line) for line in result.stdout.strip().splitlines()[:-1]]
  trains = [line for line in trains if line.get("measurement") == "train"]
  assert [line["batch_size"] for line in trains] == [1, 4]
  for line in trains:  # what the kernel did for a step: counted, not guessed.
    assert line["page_faults_per_step"] >= 0 and line["system_s_per_step"] >= 0


@pytest.mark.slow
def test_throughput_against_the_reference_carries_the_ratios(tmp_path):
  pytest.importorskip("torch")
  command = [sys.executable, "-m", "benchmarks.throughput", "--config=configs/default.py:tiny",
             "--reference", "--processes=2", "--train_batch_sizes=2", "--steps=1",
             "--infer_repeats=1", "--matmul_size=128", "--threads=1"]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
  workers, summary = lines[:-1], lines[-1]
  # 2 processes x (train, infer) x (ours, reference), then the dataset build.
  assert [(w["side"], w["task"]) for w in workers] == (
      [("ours", "train"), ("reference", "train"), ("ours", "infer"), ("reference", "infer")]
      * 2 + [("ours", "data")])
  assert all(w["threads"] == 1 for w in workers)
  # Ours used the run's own compilation cache (empty for the first process).
  assert all(w["compilation_cache"] for w in workers
             if w["side"] == "ours" and w["task"] != "data")
  ours = [w["images_per_s"] for w in workers if w["side"] == "ours" and w["task"] == "train"]
  theirs = [w["images_per_s"] for w in workers
            if w["side"] == "reference" and w["task"] == "train"]
  assert summary["train_images_per_s_bs2"] == pytest.approx(np.median(ours))
  assert summary["reference_train_images_per_s_bs2"] == pytest.approx(np.median(theirs))
  assert summary["train_speedup_vs_reference_bs2"] == pytest.approx(
      np.median(ours) / np.median(theirs))
  assert summary["spread"]["train_images_per_s_bs2"] == [min(ours), max(ours)]
  for key in ("infer_speedup_vs_reference", "infer_speedup_vs_reference_paper",
              "infer_speedup_vs_reference_bs8", "fraction_of_peak_bs2",
              "reference_fraction_of_peak_bs2", "first_step_s_bs2_cold",
              "first_step_s_bs2_warm", "reference_first_step_s_bs2",
              "peak_rss_mb_train_bs2_cold", "reference_peak_rss_mb_train_bs2",
              "peak_rss_vs_reference_bs2", "dataset_build_s", "dataset_open_s"):
    assert summary[key] > 0, key
  latency = summary["infer_latency_ms_bs1"]
  assert summary["infer_speedup_vs_reference"] == pytest.approx(
      summary["reference_infer_latency_ms_bs1"] / latency)
  assert summary["processes"] == 2 and summary["threads"] == 1
  saved = tmp_path / "run.jsonl"
  saved.write_text(result.stdout)
  table = subprocess.run([sys.executable, "-m", "benchmarks.throughput", f"--table={saved}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                         check=True).stdout
  assert "| train img/s, batch 2 |" in table
  assert f"| {summary['train_speedup_vs_reference_bs2']:.2f} |" in table


def test_error_split_separates_rain_from_background():
  from benchmarks import error_split  # pylint: disable=g-import-not-at-top
  clean = np.full((8, 8, 3), 100, np.uint8)
  rainy = clean.copy()
  rainy[:2] = 200  # a quarter of the pixels carry rain.
  leaves_the_rain = error_split.error_split(lambda image: image, [("a", rainy, clean)], 4.0)
  assert leaves_the_rain["rain_fraction"] == 0.25
  assert leaves_the_rain["rain_model"] == leaves_the_rain["rain_identity"] == 0.25 * 100**2
  assert leaves_the_rain["background_model"] == leaves_the_rain["background_identity"] == 0
  darkens_everything = error_split.error_split(
      lambda image: np.zeros_like(image) + 90, [("a", rainy, clean)], 4.0)
  assert darkens_everything["rain_model"] == 0.25 * 10**2
  assert darkens_everything["background_model"] == 0.75 * 10**2


def test_ensemble_benchmark_scores_every_setting(tmp_path):
  sys.path.insert(0, os.path.join(ROOT, "tests"))
  import tiny_workdir  # pylint: disable=g-import-not-at-top
  from benchmarks import ensemble  # pylint: disable=g-import-not-at-top
  workdir = tiny_workdir.make(str(tmp_path / "w"), str(tmp_path / "cache"))
  rows = ensemble.measure(workdir)
  assert [(r["norm_mode"], r["ensemble"]) for r in rows] == [
      (m, e) for m in ("paper", "running") for e in ("off", "dihedral", "hflip")]
  assert len({round(r["psnr_y"], 6) for r in rows}) > 1
  table = ensemble.markdown(rows, "python -m benchmarks.ensemble --workdir=W")
  assert table.count("\n| `") == 6 and "--workdir=W" in table


def test_profile_summary_groups_ops_by_kind():
  """benchmarks.profile_step's summary (the trace itself needs xprof, not a dependency)."""
  code = """
import json
from benchmarks.profile_step import summarise
events = [{"ph": "X", "name": "ynn_fusion.1", "dur": 3000},
          {"ph": "X", "name": "ynn_fusion.22", "dur": 1000},
          {"ph": "X", "name": "copy.7", "dur": 500},
          {"ph": "X", "name": "ThunkExecutor::Execute", "dur": 9000},
          {"ph": "i", "name": "copy.8"}]
print(json.dumps(summarise(events, steps=2, top=5)))
"""
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
  summary = json.loads(result.stdout)
  assert summary == {"ops_ms_per_step": 2.2, "by_kind": [
      {"kind": "ynn_fusion", "ms_per_step": 2.0, "ops_per_step": 1},
      {"kind": "copy", "ms_per_step": 0.2, "ops_per_step": 0}]}


def test_layers_formulation_one_image_at_a_time_computes_the_same_conv():
  """benchmarks.layers --formulations: each formulation, batched or image by image, is the
  same convolution (its own process: the benchmarks' absl flags share names)."""
  code = """
import jax.numpy as jnp
import numpy as np
from benchmarks import layers
rng = np.random.default_rng(0)
x = jnp.asarray(rng.standard_normal((3, 8, 8, 4)), jnp.float32)
for kind in ("conv", "transpose"):
  kernel = jnp.asarray(rng.standard_normal((4, 4, 4, 5)), jnp.float32)
  batched = layers.formulation_forward(kind, "xla", 2, 1)(x, kernel)
  for name in ("gemm/image", "phase/image", "xla/image"):
    image_by_image = layers.formulation_forward(kind, name, 2, 1)(x, kernel)
    assert image_by_image.shape == batched.shape, (kind, name)
    np.testing.assert_allclose(image_by_image, batched, rtol=1e-4, atol=1e-4)
print("ok")
"""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_cpu_vector_isa_names_the_widest_flag(monkeypatch, tmp_path):
  from benchmarks import timing
  assert isinstance(timing.cpu_vector_isa(), str) and timing.cpu_vector_isa()
  cpuinfo = tmp_path / "cpuinfo"
  cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n")
  real_open = open
  monkeypatch.setattr("builtins.open", lambda path, *a, **k: real_open(
      cpuinfo if path == "/proc/cpuinfo" else path, *a, **k))
  assert timing.cpu_vector_isa() == "avx2"
