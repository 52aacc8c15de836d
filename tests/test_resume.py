"""Exact resume and fault tolerance: SIGKILL, SIGTERM, changed configs, weights-only
workdirs, non-finite steps and another device count."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import default
from pix2pix_jax import checkpoints
from pix2pix_jax import configuration
from pix2pix_jax import step as step_lib
from pix2pix_jax import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("dataset_cache"))


def _config(cache_dir, **overrides):
  config = default.get_config("tiny")
  config.data.cache_dir = cache_dir
  config.batch_size = 4
  config.log_every_steps = 4
  config.checkpoint_every_steps = 4
  config.num_train_steps = 8
  config.update_from_flattened_dict(overrides)
  return config


def _env(devices=2):
  env = dict(os.environ)
  env["XLA_FLAGS"] = (f"{os.environ.get('XLA_FLAGS', '')} "  # (conftest's flags kept)
                      f"--xla_force_host_platform_device_count={devices}")
  env["PYTHONPATH"] = ROOT
  return env


# Trains as `main` would, but SIGKILLs itself right after the checkpoint of KILL_AT_STEP is
# complete ("after") or while it is being written ("during").
_KILLED_RUN = """
import json, os, signal, sys
from configs import default
from pix2pix_jax import checkpoints, train
import ml_collections
config = ml_collections.ConfigDict(json.loads(sys.argv[1]))
workdir, kill_at, when = sys.argv[2], int(sys.argv[3]), sys.argv[4]
real_save = checkpoints.save
def save(manager, step, *args):
  real_save(manager, step, *args)
  if step == kill_at:
    if when == "after":
      manager.wait_until_finished()
    os.kill(os.getpid(), signal.SIGKILL)
checkpoints.save = save
train.train_and_evaluate(config, workdir)
"""


def _killed_run(config, workdir, kill_at, when):
  result = subprocess.run(
      [sys.executable, "-c", _KILLED_RUN, config.to_json(), workdir, str(kill_at), when],
      cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
  assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]


def _assert_states_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(a), jax.device_get(b))


def test_sigkill_and_resume_is_bit_identical(tmp_path, cache_dir):
  config = _config(cache_dir)
  straight = train.train_and_evaluate(config, str(tmp_path / "straight"))

  # Killed after its step-4 checkpoint, then resumed to 8.
  workdir = str(tmp_path / "killed")
  _killed_run(config, workdir, kill_at=4, when="after")
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["4"]
  shutil.copytree(workdir, tmp_path / "killed_copy")
  resumed = train.train_and_evaluate(config, workdir)
  _assert_states_equal(straight, resumed)

  # Killed while writing the step-8 checkpoint: the half-written one is ignored and the
  # run resumes from step 4 again.
  workdir = str(tmp_path / "killed_mid_write")
  shutil.copytree(tmp_path / "killed_copy", workdir)  # the step-4 kill, as it was left.
  config_8 = _config(cache_dir)
  _killed_run(config_8, workdir, kill_at=8, when="during")
  names = os.listdir(os.path.join(workdir, "checkpoints"))
  assert "4" in names and "8" not in names, names
  resumed = train.train_and_evaluate(config, workdir)
  _assert_states_equal(straight, resumed)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["4", "8"]


def test_sigterm_saves_and_exits_cleanly(tmp_path, cache_dir):
  workdir = tmp_path / "term"
  process = subprocess.Popen(
      [sys.executable, "main.py", f"--workdir={workdir}", "--config=configs/default.py:tiny",
       "--config.num_train_steps=100000", "--config.log_every_steps=1",
       "--config.checkpoint_every_steps=100000", f"--config.data.cache_dir={cache_dir}"],
      cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 300
    while not (workdir / "metrics.jsonl").exists() or not (
        workdir / "metrics.jsonl").read_text().strip():
      assert time.time() < deadline and process.poll() is None, "training never logged"
      time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
  finally:
    process.kill()
  assert process.returncode == 0, stderr[-3000:]
  assert "SIGTERM received: stopped after step" in stderr
  steps = [int(name) for name in os.listdir(workdir / "checkpoints")]
  last_logged = json.loads((workdir / "metrics.jsonl").read_text().splitlines()[-1])["step"]
  assert steps == [last_logged] and 1 <= last_logged < 100000


def test_resume_with_other_networks_is_an_error(tmp_path, cache_dir):
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(_config(cache_dir, num_train_steps=1), workdir)
  with pytest.raises(configuration.ConfigError,
                     match=r"model.ngf: 8 -> 16; model.norm: 'batch' -> 'instance'"):
    train.train_and_evaluate(
        _config(cache_dir, num_train_steps=2, **{"model.ngf": 16, "model.norm": "instance"}),
        workdir)
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["model"]["ngf"] == 8  # the workdir's config is left as it was.


def test_weights_only_workdir_fine_tunes_from_step_0(tmp_path, cache_dir):
  config = _config(cache_dir, num_train_steps=2, log_every_steps=1)
  source = train.train_and_evaluate(config, str(tmp_path / "source"))
  workdir = checkpoints.save_weights(str(tmp_path / "weights"), config,
                                     source.generator.variables)
  fine_tuned = train.train_and_evaluate(config, workdir)
  assert int(fine_tuned.step) == 2
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    assert [json.loads(line)["step"] for line in f] == [1, 2]
  # Two Adam steps from the given weights move each parameter by at most 2 x lr.
  moved = jax.tree.map(lambda a, b: np.abs(a - b).max(), fine_tuned.generator.params,
                       source.generator.params)
  assert max(jax.tree.leaves(moved)) <= 2 * config.optim.lr * 1.001
  # ... with fresh optimizer states (the source's Adam count was 2, now 2 again, not 4).
  assert int(fine_tuned.generator.opt_state[0].count) == 2


def test_nonfinite_step_stops_and_keeps_last_good_checkpoint(tmp_path, cache_dir):
  workdir = str(tmp_path / "nan")
  train.train_and_evaluate(_config(cache_dir, num_train_steps=3), workdir)
  # Going on with an absurd learning rate: the first step's update overflows D.
  config = _config(cache_dir, num_train_steps=50, log_every_steps=10,
                   checkpoint_every_steps=10, **{"optim.lr": 1e30})
  with pytest.raises(train.NonFiniteError,
                     match=r"Step 4 produced a non-finite loss or gradient.*"
                           r"The last good checkpoint is step 3"):
    train.train_and_evaluate(config, workdir)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3"]
  manager = checkpoints.create_manager(workdir, config, read_only=True)
  state, _, _ = checkpoints.restore_latest(
      manager, step_lib.create_train_state(config, jax.random.key(0)), jax.random.key(0))
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state))
  assert int(state.nonfinite_step) == -1


def test_resume_on_another_device_count(tmp_path, cache_dir):
  workdir = tmp_path / "devices"
  train.train_and_evaluate(_config(cache_dir, num_train_steps=4), str(workdir))  # 2 devices
  result = subprocess.run(
      [sys.executable, "main.py", f"--workdir={workdir}", "--config=configs/default.py:tiny",
       "--config.num_train_steps=6", "--config.batch_size=4", "--config.log_every_steps=4",
       "--config.checkpoint_every_steps=4", f"--config.data.cache_dir={cache_dir}"],
      cwd=ROOT, env=_env(devices=1), capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Resuming from the checkpoint at step 4" in result.stderr
  assert sorted(os.listdir(workdir / "checkpoints")) == ["4", "6"]


def _tree_snapshot(root):
  return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
          for d, _, files in os.walk(root) for f in files} | {
              d: None for d, _, _ in os.walk(root)}


def test_load_variables_reads_without_writing(tmp_path, cache_dir):
  config = _config(cache_dir, num_train_steps=2, checkpoint_every_steps=1)
  workdir = str(tmp_path / "read_only")
  state = train.train_and_evaluate(config, workdir)
  before = _tree_snapshot(workdir)
  loaded_config, generator, discriminator = checkpoints.load_variables(workdir)
  assert _tree_snapshot(workdir) == before
  assert loaded_config.model.ngf == config.model.ngf
  _assert_states_equal(generator, state.generator.variables)
  _assert_states_equal(discriminator, state.discriminator.variables)
  _, step_1, _ = checkpoints.load_variables(workdir, step=1)
  assert not np.array_equal(step_1["params"]["unet"]["up_conv"]["bias"],
                            generator["params"]["unet"]["up_conv"]["bias"])
  with pytest.raises(FileNotFoundError, match="no checkpoint at step 7; it has steps"):
    checkpoints.load_variables(workdir, step=7)
  with pytest.raises(FileNotFoundError, match="is not a pix2pix_jax workdir"):
    checkpoints.load_variables(str(tmp_path / "nothing"))
  # A weights-only workdir loads the same way.
  weights_dir = checkpoints.save_weights(str(tmp_path / "weights"), config, generator)
  _, loaded, no_discriminator = checkpoints.load_variables(weights_dir)
  _assert_states_equal(loaded, generator)
  assert no_discriminator is None


def test_a_second_writer_is_refused_and_a_dead_ones_lock_is_not_in_the_way(tmp_path):
  workdir = str(tmp_path / "run")
  holder = subprocess.Popen(  # holds the lock as a training run would, then is killed.
      [sys.executable, "-c",
       "import sys, time; from pix2pix_jax import checkpoints; "
       "lock = checkpoints.WorkdirLock(sys.argv[1]); print('locked', flush=True); time.sleep(600)",
       workdir], cwd=ROOT, env=_env(), stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(configuration.ConfigError,
                       match=rf"is in use: process {holder.pid} on .* is training into it"):
      checkpoints.WorkdirLock(workdir)
  finally:
    holder.kill()
    holder.wait()
  checkpoints.WorkdirLock(workdir).release()  # SIGKILLed: its lock went with it.
  lock = checkpoints.WorkdirLock(workdir)  # released locks can be taken again.
  lock.release()


def test_nonfinite_message_says_when_there_is_no_checkpoint():
  class NoCheckpoints:
    directory = "W/checkpoints"

    def latest_step(self):
      return None

  state = type("State", (), {"nonfinite_step": np.array([3])})()
  with pytest.raises(train.NonFiniteError, match=r"Step 3 .* No checkpoint was saved before "
                                                 r"it \(W/checkpoints holds none\)"):
    train.check_finite(state, NoCheckpoints())
