"""The throughput benchmark runs end to end and its last line is the promised JSON object."""

import json
import os
import subprocess
import sys

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
