"""The persistent compilation cache: where it goes, its bound, and that it can be turned off."""

import os

import jax
import pytest

from configs import default
from pix2pix_jax import compile_cache


@pytest.fixture(name="restore_jax_config")
def _restore_jax_config(monkeypatch):
  keys = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
          "jax_compilation_cache_max_size")
  saved = {key: getattr(jax.config, key) for key in keys}
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  yield
  for key, value in saved.items():
    jax.config.update(key, value)


def test_default_is_beside_the_datasets_and_bounded(tmp_path, restore_jax_config):
  del restore_jax_config
  config = default.get_config("tiny")
  config.data.cache_dir = str(tmp_path / "cache")
  folder = compile_cache.enable(config)
  assert folder == str(tmp_path / "cache" / "jax_compilation_cache") and os.path.isdir(folder)
  assert jax.config.jax_compilation_cache_dir == folder
  assert jax.config.jax_compilation_cache_max_size == 2048 * 2 ** 20


def test_off_and_an_environment_setting_win(tmp_path, monkeypatch, restore_jax_config):
  del restore_jax_config
  config = default.get_config("tiny")
  config.compilation_cache.dir = "off"
  assert compile_cache.enable(config) is None
  config.compilation_cache.dir = str(tmp_path / "jcc")
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "env"))
  assert compile_cache.enable(config) is None and not (tmp_path / "jcc").exists()


def test_an_unusable_folder_means_no_cache_not_a_crash(tmp_path, restore_jax_config):
  del restore_jax_config
  config = default.get_config("tiny")
  (tmp_path / "file").write_text("in the way")
  config.compilation_cache.dir = str(tmp_path / "file" / "cache")
  assert compile_cache.enable(config) is None
