"""Whole runs of the tiny config: training, logs, checkpoints, resume and the CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import default
from pix2pix_jax import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("dataset_cache"))


def _read_log(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_train_logs_checkpoints_and_resumes(tmp_path, cache_dir):
  workdir = str(tmp_path / "run")
  config = default.get_config("tiny")
  config.data.cache_dir = cache_dir
  config.num_train_steps = 20
  state = train.train_and_evaluate(config, workdir)
  assert int(state.step) == 20
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["20"]
  log = _read_log(workdir)
  assert [r["step"] for r in log] == [5, 10, 15, 20]
  assert log[-1]["g_l1"] < log[0]["g_l1"]  # tiny learns visibly within 20 steps.
  for key in ("d_loss", "g_gan", "g_l1", "steps_per_s", "learning_rate"):
    assert np.isfinite(log[-1][key])
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(
      os.path.join(workdir, "tensorboard")))
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["model"]["ngf"] == 8

  # The same command with a longer schedule continues from step 20.
  config.num_train_steps = 25
  resumed = train.train_and_evaluate(config, workdir)
  assert int(resumed.step) == 25
  assert [r["step"] for r in _read_log(workdir)][-2:] == [20, 25]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["20", "25"]


def _main(*args, cwd=ROOT):
  return subprocess.run([sys.executable, "main.py", *args], cwd=cwd, capture_output=True,
                        text=True, timeout=600)


def test_cli_trains_the_tiny_config(tmp_path, cache_dir):
  result = _main(f"--workdir={tmp_path / 'cli'}", "--config=configs/default.py:tiny",
                 "--config.num_train_steps=5", f"--config.data.cache_dir={cache_dir}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert os.path.isdir(tmp_path / "cli" / "checkpoints" / "5")
  # Not a terminal: no progress bar; the log lines carry the step and the ETA instead.
  assert "step 5: " in result.stderr, result.stderr[-3000:]


def test_cli_bad_config_value_is_one_clear_line(tmp_path):
  result = _main(f"--workdir={tmp_path / 'bad'}", "--config=configs/default.py:tiny",
                 "--config.model.norm=group")
  assert result.returncode != 0
  assert "model.norm='group' is not one of ('batch', 'instance', 'none')" in result.stderr
  assert "Traceback" not in result.stderr
  assert not os.path.exists(tmp_path / "bad")  # nothing written for a run that cannot start.


def test_cli_batch_not_divisible_by_devices(tmp_path):
  env = dict(os.environ, XLA_FLAGS=os.environ.get("XLA_FLAGS", "")
             + " --xla_force_host_platform_device_count=2")
  result = subprocess.run(
      [sys.executable, "main.py", f"--workdir={tmp_path / 'odd'}",
       "--config=configs/default.py:tiny", "--config.batch_size=3"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode != 0
  assert "batch_size=3 must be a positive multiple of the device count (2 device(s)" in (
      result.stderr)
  assert "Traceback" not in result.stderr
