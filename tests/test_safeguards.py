"""Damaged checkpoints and dataset caches, and workdirs or caches that cannot be written:
each is recovered from, or stopped with one line naming the path."""

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import default
from pix2pix_jax import checkpoints
from pix2pix_jax import configuration
from pix2pix_jax import datasets
from pix2pix_jax import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(cache_dir, **overrides):
  config = default.get_config("tiny")
  config.data.cache_dir = cache_dir
  config.batch_size = 4
  config.log_every_steps = 2
  config.checkpoint_every_steps = 2
  config.num_train_steps = 4
  config.update_from_flattened_dict(overrides)
  return config


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("dataset_cache"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir):
  """(workdir with checkpoints 2 and 4, the final state): copied by each test, never
  changed."""
  workdir = str(tmp_path_factory.mktemp("trained") / "run")
  state = train.train_and_evaluate(_config(cache_dir), workdir)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]
  return workdir, jax.device_get(state)


def _files(folder):
  return [os.path.join(d, f) for d, _, names in os.walk(folder) for f in names]


def _digests(folder):
  """{relative path: sha256} of every file under `folder`."""
  return {os.path.relpath(path, folder): hashlib.sha256(open(path, "rb").read()).hexdigest()
          for path in _files(folder)}


def _delete_largest(folder):
  os.remove(max(_files(folder), key=os.path.getsize))


def _truncate_largest(folder):
  path = max(_files(folder), key=os.path.getsize)
  os.truncate(path, os.path.getsize(path) // 2)


def _garble_metadata(folder):
  with open(os.path.join(folder, "state", "_METADATA"), "w") as f:
    f.write('{"tree_metadata": {garbled')


DAMAGES = {"deleted": _delete_largest, "truncated": _truncate_largest,
           "garbled": _garble_metadata}


def _damaged_copy(trained, tmp_path, damage, steps=(4,)):
  workdir = str(tmp_path / "run")
  shutil.copytree(trained[0], workdir)
  for step in steps:
    DAMAGES[damage](os.path.join(workdir, "checkpoints", str(step)))
  return workdir


def _assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(a), jax.device_get(b))


def _warnings(caplog):
  return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_readers_fall_back_from_a_damaged_checkpoint(trained, tmp_path, caplog, damage):
  workdir = _damaged_copy(trained, tmp_path, damage)
  intact = _digests(os.path.join(workdir, "checkpoints", "2"))
  _, expected, _ = checkpoints.load_variables(trained[0], step=2)
  with caplog.at_level(logging.WARNING):
    _, generator, discriminator = checkpoints.load_variables(workdir)
  _assert_trees_equal(generator, expected)
  assert discriminator is not None
  moved = os.path.join(workdir, "damaged", "4")
  warning, = [w for w in _warnings(caplog) if "does not restore" in w]
  assert os.path.join(workdir, "checkpoints", "4") in warning
  assert f"moved aside to {moved}; using step 2" in warning
  assert os.path.isdir(moved)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2"]
  assert _digests(os.path.join(workdir, "checkpoints", "2")) == intact


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_resume_falls_back_from_a_damaged_checkpoint(trained, tmp_path, caplog, cache_dir,
                                                      damage):
  workdir = _damaged_copy(trained, tmp_path, damage)
  intact = _digests(os.path.join(workdir, "checkpoints", "2"))
  with caplog.at_level(logging.WARNING):
    state = train.train_and_evaluate(_config(cache_dir), workdir)
  assert any("does not restore" in w and "using step 2" in w for w in _warnings(caplog))
  _assert_trees_equal(state, trained[1])  # steps 3 and 4 again, exactly as the first time.
  assert os.path.isdir(os.path.join(workdir, "damaged", "4"))
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]
  assert _digests(os.path.join(workdir, "checkpoints", "2")) == intact


def test_a_second_damaged_step_goes_beside_the_first(trained, tmp_path):
  workdir = _damaged_copy(trained, tmp_path, "garbled")
  os.makedirs(os.path.join(workdir, "damaged", "4"))
  checkpoints.load_variables(workdir)
  assert sorted(os.listdir(os.path.join(workdir, "damaged"))) == ["4", "4.1"]


def test_a_reader_leaves_a_read_only_or_locked_workdir_as_it_is(trained, tmp_path, caplog):
  workdir = _damaged_copy(trained, tmp_path, "truncated")
  lock = checkpoints.WorkdirLock(workdir)  # as a training run would hold it.
  try:
    with caplog.at_level(logging.WARNING):
      checkpoints.load_variables(workdir)
  finally:
    lock.release()
  assert any("left in place" in w and "using step 2" in w for w in _warnings(caplog))
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]
  assert not os.path.exists(os.path.join(workdir, "damaged"))


def test_with_every_checkpoint_damaged_one_line_and_nothing_changes(trained, tmp_path,
                                                                     cache_dir):
  workdir = _damaged_copy(trained, tmp_path, "garbled", steps=(2, 4))
  before = _digests(workdir)
  with pytest.raises(configuration.ConfigError,
                     match=r"No checkpoint in .*/checkpoints restores \(step 4: .*step 2: "):
    train.train_and_evaluate(_config(cache_dir, num_train_steps=6), workdir)
  with pytest.raises(configuration.ConfigError, match="No checkpoint in"):
    checkpoints.load_variables(workdir)
  after = _digests(workdir)
  after.pop(".lock", None)
  before.pop(".lock", None)
  assert after == before  # config.json, the checkpoints: as they were.
  result = subprocess.run(
      [sys.executable, "main.py", "--mode=eval", f"--workdir={workdir}"],
      cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True,
      timeout=300)
  assert result.returncode != 0
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  assert f"No checkpoint in {workdir}/checkpoints restores" in result.stderr


def test_an_explicit_damaged_step_is_one_line(trained, tmp_path):
  workdir = _damaged_copy(trained, tmp_path, "truncated")
  with pytest.raises(configuration.ConfigError,
                     match=r"checkpoints/4 does not restore .*--checkpoint=latest"):
    checkpoints.load_variables(workdir, step=4)


def test_a_file_for_a_workdir_is_one_line(tmp_path, cache_dir):
  path = tmp_path / "file"
  path.write_text("not a folder")
  with pytest.raises(configuration.ConfigError, match=f"--workdir={path} is a file"):
    train.train_and_evaluate(_config(cache_dir), str(path))
  with pytest.raises(configuration.ConfigError, match=f"--workdir={path} is a file"):
    checkpoints.WorkdirLock(str(path))
  assert path.read_text() == "not a folder"


# Damaged dataset caches.


def _prepare(cache_dir):
  config = _config(str(cache_dir))
  return datasets.prepare(config.data, seed=config.seed)


def _built_folder(cache_dir):
  folder, = [d for d, _, names in os.walk(cache_dir) if "dataset_info.json" in names]
  return folder


def _read_all(data):
  for source in data.sources.values():
    for index in range(len(source)):
      assert source[index]["A"]


def _train_shard(folder):
  name, = [n for n in os.listdir(folder) if "train.array_record" in n]
  return os.path.join(folder, name)


def _truncate_shard(folder):
  path = _train_shard(folder)
  os.truncate(path, os.path.getsize(path) // 2)


def _scramble_shard(folder):
  path = _train_shard(folder)
  with open(path, "r+b") as f:
    f.seek(os.path.getsize(path) // 3)
    f.write(bytes(range(256)) * 16)


def _garble_info(folder):
  with open(os.path.join(folder, "dataset_info.json"), "w") as f:
    f.write('{"name": "synthetic_rain", garbled')


def _delete_info(folder):
  os.remove(os.path.join(folder, "dataset_info.json"))


CACHE_DAMAGES = {"truncated": _truncate_shard, "scrambled": _scramble_shard,
                 "garbled_info": _garble_info, "deleted_info": _delete_info}


@pytest.fixture(scope="module")
def built_cache(tmp_path_factory):
  """A cache holding the tiny synthetic dataset, with its checksums: copied by each test."""
  cache = tmp_path_factory.mktemp("built_cache")
  _read_all(_prepare(cache))
  folder = _built_folder(cache)
  with open(os.path.join(folder, datasets.CHECKSUM_FILE)) as f:
    listed = json.load(f)["files"]
  assert {"dataset_info.json", os.path.basename(_train_shard(folder))} <= set(listed)
  assert datasets.cache_problem(folder) == ""
  return cache


def _cache_copy(built_cache, tmp_path):
  cache = tmp_path / "cache"
  shutil.copytree(built_cache, cache)
  return cache, _built_folder(cache)


@pytest.mark.parametrize("damage", sorted(CACHE_DAMAGES))
def test_a_damaged_dataset_cache_is_rebuilt(built_cache, tmp_path, caplog, damage):
  cache, folder = _cache_copy(built_cache, tmp_path)
  intact = _digests(folder)
  CACHE_DAMAGES[damage](folder)
  assert datasets.cache_problem(folder)
  with caplog.at_level(logging.WARNING):
    data = _prepare(cache)
  assert any(f"The cached dataset {folder} is damaged" in w for w in _warnings(caplog))
  _read_all(data)
  assert datasets.cache_problem(folder) == ""
  assert _digests(folder) == intact  # the same dataset, built again.


def test_a_cache_built_before_checksums_is_checked_once_and_gets_them(built_cache, tmp_path):
  cache, folder = _cache_copy(built_cache, tmp_path)
  checksums = os.path.join(folder, datasets.CHECKSUM_FILE)
  with open(checksums) as f:
    written = f.read()
  os.remove(checksums)
  _read_all(_prepare(cache))
  with open(checksums) as f:
    assert f.read() == written
  # ... and one damaged then is rebuilt, too.
  os.remove(checksums)
  _truncate_shard(folder)
  assert "does not" in datasets.cache_problem(folder)
  _read_all(_prepare(cache))
  assert datasets.cache_problem(folder) == ""


def test_a_damaged_cache_that_cannot_be_removed_is_one_line(built_cache, tmp_path,
                                                            monkeypatch):
  cache, folder = _cache_copy(built_cache, tmp_path)
  _truncate_shard(folder)

  def refuse(path, *args, **kwargs):
    raise PermissionError(13, "Permission denied", path)
  monkeypatch.setattr(datasets.shutil, "rmtree", refuse)
  with pytest.raises(configuration.DataError,
                     match=rf"The cached dataset {folder} is damaged .*: delete that folder"):
    _prepare(cache)


def test_a_file_for_a_cache_dir_is_one_line(tmp_path):
  path = tmp_path / "file"
  path.write_text("not a folder")
  with pytest.raises(configuration.ConfigError, match=f"data.cache_dir={path} is a file"):
    _prepare(path)
  assert path.read_text() == "not a folder"


def test_a_workdir_or_cache_that_cannot_be_written_is_one_line(tmp_path, monkeypatch):
  workdir = tmp_path / "read_only"
  workdir.mkdir()
  # Root writes anywhere: the folders are made read-only for the code by its own checks.
  monkeypatch.setattr(checkpoints.os, "access", lambda path, mode: False)
  with pytest.raises(configuration.ConfigError,
                     match=f"--workdir={workdir}: the folder cannot be written"):
    checkpoints.WorkdirLock(str(workdir))
  monkeypatch.undo()

  def refuse(*args, **kwargs):
    raise PermissionError(13, "Permission denied")
  monkeypatch.setattr(datasets.tempfile, "mkdtemp", refuse)
  cache = tmp_path / "read_only_cache"
  with pytest.raises(configuration.ConfigError,
                     match=rf"data.cache_dir={cache}: cannot build the dataset there "
                           r"\(Permission denied\)"):
    _prepare(cache)
