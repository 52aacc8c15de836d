"""Checkpoints written by earlier code still restore, and compute what they computed then.

The fixtures (tests/fixtures/checkpoints/, written by tests/fixtures/make_checkpoints.py) are
full training checkpoints of tiny U-Net and ResNet generators with batch and instance norm.
A renamed parameter or batch statistic, a moved optimizer state or a changed computation in
the layers fails here: restoring needs every name to match the template today's code builds.
"""

import os
import shutil
import sys

import jax
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "fixtures"))
import make_checkpoints  # pylint: disable=g-import-not-at-top,wrong-import-position

from pix2pix_jax import checkpoints  # pylint: disable=wrong-import-position
from pix2pix_jax import step as step_lib  # pylint: disable=wrong-import-position


def _restore(workdir: str, template):
  manager = checkpoints.create_manager(workdir, checkpoints.load_config(workdir), read_only=True)
  try:
    return checkpoints.restore_step(manager, make_checkpoints.STEPS, template, jax.random.key(0))
  finally:
    manager.close()


@pytest.fixture(name="fixture_workdir", params=sorted(make_checkpoints.FIXTURES))
def _fixture_workdir(request, tmp_path):
  workdir = tmp_path / request.param
  shutil.copytree(os.path.join(make_checkpoints.HERE, request.param), workdir)
  return str(workdir)


def test_fixture_restores_and_computes_what_it_did(fixture_workdir):
  config = checkpoints.load_config(fixture_workdir)
  state, rng, weights = _restore(fixture_workdir, step_lib.abstract_train_state(config))
  assert weights is None and int(state.step) == make_checkpoints.STEPS
  assert np.array_equal(jax.random.key_data(rng), jax.random.key_data(jax.random.key(1)))
  expected = dict(np.load(os.path.join(fixture_workdir, "expected.npz")))
  pix2pix = step_lib.Pix2Pix.from_config(config, axis_name=None)
  got = make_checkpoints.outputs(state, pix2pix, expected)
  for name, value in got.items():
    np.testing.assert_allclose(value, expected[name], atol=2e-5, rtol=1e-5, err_msg=name)


def test_a_renamed_parameter_does_not_restore(fixture_workdir):
  """The check above could fail: a template whose names differ is refused."""
  config = checkpoints.load_config(fixture_workdir)
  template = step_lib.abstract_train_state(config)
  params = dict(template.generator.params)
  first = sorted(params)[0]
  params["renamed_" + first] = params.pop(first)
  template = template.replace(generator=template.generator.replace(params=params))
  with pytest.raises(Exception):
    _restore(fixture_workdir, template)
