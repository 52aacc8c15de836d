"""Multi-process training on jax.distributed: start-up from the flags or the cluster
environment, and two processes on 127.0.0.1 training exactly as one."""

import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import default
from pix2pix_jax import checkpoints
from pix2pix_jax import configuration
from pix2pix_jax import datasets
from pix2pix_jax import distributed
from pix2pix_jax import step as step_lib
from pix2pix_jax import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SLURM_TWO_TASKS = {"SLURM_JOB_ID": "4242", "SLURM_STEP_NODELIST": "gpu[017-018]",
                    "SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_LOCALID": "0"}


@pytest.fixture
def no_cluster(monkeypatch):
  """An environment where JAX detects no cluster (whatever the machine running the tests)."""
  for name in list(os.environ):
    if name.startswith(("SLURM_", "OMPI_", "TPU_", "MEGASCALE_", "KUBERNETES_")):
      monkeypatch.delenv(name)
  return monkeypatch


# ------------------------------------------------------------------ start-up


def test_one_plain_process_starts_nothing(no_cluster):
  assert distributed.detect_cluster() is None
  assert distributed.initialize_arguments() is None
  assert distributed.initialize_arguments("", None, None) is None
  assert not distributed.initialize()  # (JAX already runs here: initializing would raise.)
  assert distributed.initialize_arguments("10.0.0.1:1234", 1, 0) is None  # one process.


def test_flags_are_what_jax_gets(no_cluster):
  assert distributed.initialize_arguments("10.0.0.1:1234", 4, 0) == {
      "coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 0}


@pytest.mark.parametrize("flags, message", [
    (("10.0.0.1", 2, 0), "--coordinator_address='10.0.0.1' is not HOST:PORT"),
    (("host:99999", 2, 0), "the port must be in"),
    (("host:1234", 0, 0), "--num_processes=0 must be >= 1"),
    (("host:1234", 2, 2), r"--process_id=2 must be in \[0, --num_processes=2\)"),
    ((None, 2, 0), "--coordinator_address missing"),
    (("host:1234", None, None), "--num_processes, --process_id missing"),
])
def test_bad_or_missing_flags_name_the_flag(no_cluster, flags, message):
  with pytest.raises(configuration.ConfigError, match=message):
    distributed.initialize_arguments(*flags)


def test_slurm_with_several_tasks_is_detected(no_cluster):
  for name, value in _SLURM_TWO_TASKS.items():
    no_cluster.setenv(name, value)
  assert distributed.detect_cluster() == ("slurm", 2)
  assert distributed.initialize_arguments() == {}  # JAX's auto-detection fills in all.
  # A flag given wins; JAX takes the others from SLURM.
  assert distributed.initialize_arguments(coordinator_address="gpu017:5555") == {
      "coordinator_address": "gpu017:5555"}
  no_cluster.setenv("SLURM_NTASKS", "1")
  assert distributed.initialize_arguments() is None  # one task: one plain process.


def test_cli_missing_flag_is_one_clear_line(tmp_path):
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("SLURM_", "OMPI_", "TPU_", "MEGASCALE_", "KUBERNETES_"))}
  result = subprocess.run(
      [sys.executable, "main.py", f"--workdir={tmp_path / 'w'}", "--config=configs/default.py:tiny",
       "--num_processes=2", "--process_id=1"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode != 0
  assert "--coordinator_address missing" in result.stderr
  assert "Traceback" not in result.stderr
  assert not os.path.exists(tmp_path / "w")


# ------------------------------------------------------------------ two processes


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("dataset_cache"))


# The real command line (main.py's flags) in a process with one CPU device; on the way out
# it saves the final parameters it holds, per process.
_WORKER = """
import sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.config.update("jax_num_cpu_devices", 1)
from absl import app
import numpy as np
import main
from pix2pix_jax import train
params_file, argv = sys.argv[1], sys.argv[2:]
train_and_evaluate = train.train_and_evaluate
def train_and_save_params(config, workdir, **kwargs):
  state = train_and_evaluate(config, workdir, **kwargs)
  leaves = jax.tree_util.tree_flatten_with_path((state.generator, state.discriminator))[0]
  np.savez(params_file.format(jax.process_index()),
           **{jax.tree_util.keystr(path): leaf for path, leaf in leaves})
  return state
train.train_and_evaluate = train_and_save_params
app.run(main.main, argv=["main.py"] + argv)
"""
_OVERRIDES = {"batch_size": 2, "num_train_steps": 3, "eval_every_steps": 0,
              # Multi-host runs are GPU/TPU runs, where `auto` is the plain XLA convolution;
              # it also compiles faster on this CPU than the tuned plan.
              "model.conv_impl": "xla"}
_TIMEOUT_S = 300


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _flat(state) -> dict[str, np.ndarray]:
  leaves = jax.tree_util.tree_flatten_with_path(
      jax.device_get((state.generator, state.discriminator)))[0]
  return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def test_two_processes_train_as_one_process(tmp_path, cache_dir):
  config = default.get_config("tiny")
  config.data.cache_dir = cache_dir
  config.update_from_flattened_dict(_OVERRIDES)
  datasets.prepare(config.data, seed=config.seed)  # built once, before the processes read it.
  workdir, params_file = tmp_path / "two_processes", str(tmp_path / "params_{}.npz")
  argv = [f"--workdir={workdir}", "--config=configs/default.py:tiny",
          f"--config.data.cache_dir={cache_dir}", "--num_processes=2",
          f"--coordinator_address=127.0.0.1:{_free_port()}",
          *[f"--config.{key}={value}" for key, value in _OVERRIDES.items()]]
  logs = [open(tmp_path / f"process_{i}.log", "w") for i in range(2)]
  processes = [subprocess.Popen(
      [sys.executable, "-c", _WORKER, params_file, *argv, f"--process_id={i}"], cwd=ROOT,
      stdout=logs[i], stderr=subprocess.STDOUT, start_new_session=True) for i in range(2)]
  deadline = time.monotonic() + _TIMEOUT_S
  try:
    # The same global batch in this one process (2 devices), while the two run.
    single = train.train_and_evaluate(config, str(tmp_path / "one_process"))
    # Until both end, one fails (the other would wait for it) or the time is up.
    while time.monotonic() < deadline and not all(p.poll() == 0 for p in processes):
      if any(p.poll() not in (None, 0) for p in processes):
        break
      time.sleep(0.2)
  finally:
    for process in processes:
      if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    for log in logs:
      log.close()
  for i, process in enumerate(processes):
    log = (tmp_path / f"process_{i}.log").read_text()
    assert process.returncode == 0, f"process {i} (killed if still running):\n{log[-3000:]}"

  expected = _flat(single)
  for i in range(2):
    with np.load(params_file.format(i)) as held:
      assert sorted(held.files) == sorted(expected)
      for name, value in expected.items():
        np.testing.assert_allclose(held[name], value, atol=1e-5, err_msg=f"process {i} {name}")
  # Process 0 alone wrote the logs; the checkpoint restores in this one process.
  assert (workdir / "metrics.jsonl").read_text().count('"step": 3') == 1
  assert "100%" not in (tmp_path / "process_1.log").read_text()  # no progress bar there.
  manager = checkpoints.create_manager(str(workdir), config, read_only=True)
  try:
    restored, _, _ = checkpoints.restore_latest(
        manager, step_lib.create_train_state(config, jax.random.key(0)), jax.random.key(0))
  finally:
    manager.close()
  assert int(restored.step) == 3
  for name, value in _flat(restored).items():
    np.testing.assert_allclose(value, expected[name], atol=1e-5, err_msg=f"restored {name}")
