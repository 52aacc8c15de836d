"""The two named inference modes: what each normalises with, and that neither mutates."""

import jax
import numpy as np
import pytest

from configs import default
from pix2pix_jax import inference
from pix2pix_jax import models
from pix2pix_jax import step as step_lib


@pytest.fixture(scope="module")
def trained():
  """A tiny generator whose running statistics differ from fresh ones (a few steps)."""
  config = default.get_config("tiny")
  pix2pix = step_lib.Pix2Pix.from_config(config, axis_name=None)
  state = step_lib.create_train_state(config, jax.random.key(0), pix2pix)
  rng = np.random.default_rng(0)
  batch = {"input": rng.uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32),
           "target": rng.uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32),
           "index": np.arange(4, dtype=np.int32)}
  step = jax.jit(lambda s, b: step_lib.train_step(s, b, jax.random.key(1), pix2pix=pix2pix,
                                               axis_name=None))
  for _ in range(3):
    state, _ = step(state, batch)
  generate = inference.make_generate_fn(models.create_generator(config.model))
  return jax.device_get(state.generator.variables), generate, batch["input"]


def test_running_mode_is_deterministic_and_per_image(trained):
  variables, generate, images = trained
  together = np.asarray(generate(variables, images, norm_mode="running"))
  alone = np.asarray(generate(variables, images[1:2], norm_mode="running"))
  np.testing.assert_allclose(together[1:2], alone, atol=1e-5)
  np.testing.assert_array_equal(together, generate(variables, images, norm_mode="running",
                                                   rng=jax.random.key(5)))
  assert together.shape == images.shape and np.abs(together).max() <= 1


def test_paper_mode_uses_batch_statistics_and_dropout(trained):
  variables, generate, images = trained
  paper = np.asarray(generate(variables, images, norm_mode="paper", rng=jax.random.key(0)))
  # Deterministic for a given rng, different for another (dropout on).
  np.testing.assert_array_equal(
      paper, generate(variables, images, norm_mode="paper", rng=jax.random.key(0)))
  assert not np.allclose(
      paper, generate(variables, images, norm_mode="paper", rng=jax.random.key(1)), atol=1e-4)
  # Batch statistics: the output depends on the rest of the batch...
  alone = np.asarray(generate(variables, images[:1], norm_mode="paper", rng=jax.random.key(0)))
  assert not np.allclose(paper[:1], alone, atol=1e-4)
  # ...and differs from running mode.
  assert not np.allclose(paper, generate(variables, images, norm_mode="running"), atol=1e-4)


def test_inference_never_changes_statistics(trained):
  variables, generate, images = trained
  before = jax.tree.map(np.array, variables)
  for mode in inference.NORM_MODES:
    generate(variables, images, norm_mode=mode)
  jax.tree.map(np.testing.assert_array_equal, variables, before)


def test_unknown_norm_mode_is_a_clear_error(trained):
  variables, generate, images = trained
  with pytest.raises(ValueError, match="norm_mode='eval' is not one of"):
    generate(variables, images, norm_mode="eval")


def test_uint8_round_trip():
  pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
  np.testing.assert_array_equal(inference.to_uint8(inference.from_uint8(pixels)), pixels)


def test_dihedral_transforms_are_eight_and_undone():
  images = np.arange(2 * 3 * 5 * 1).reshape(2, 3, 5, 1)  # not square: rotations swap sides.
  seen = set()
  for k in range(inference.ENSEMBLE_SIZE):
    moved = inference.dihedral(images, k)
    seen.add(moved.tobytes() + bytes(moved.shape))
    np.testing.assert_array_equal(inference.undo_dihedral(moved, k), images)
  assert len(seen) == 8


def test_ensemble_calls_each_transform_alone():
  """An equivariant function comes back unchanged; a batch-statistics one sees one
  transform per call (paper mode must not mix the 8)."""
  images = np.random.default_rng(0).uniform(-1, 1, (1, 4, 6, 3))
  np.testing.assert_allclose(inference.ensemble_mean(lambda x: 2 * x, images), 2 * images)
  shapes = []
  def centred(x):
    shapes.append(x.shape)
    return x - x.mean()
  np.testing.assert_allclose(inference.ensemble_mean(centred, images), images - images.mean())
  assert shapes == [(1, 4, 6, 3), (1, 6, 4, 3)] * 4


def test_hflip_ensemble_is_the_image_and_its_mirror():
  images = np.random.default_rng(1).uniform(-1, 1, (1, 4, 6, 3))
  calls = []
  def record(x):
    calls.append(x)
    return x
  np.testing.assert_allclose(inference.ensemble_mean(record, images, transforms="hflip"), images)
  assert len(calls) == 2 and np.array_equal(calls[1], images[:, :, ::-1])
  with pytest.raises(ValueError, match="ensemble_transforms='rot'"):
    inference.ensemble_mean(record, images, transforms="rot")


def test_running_mode_compiles_without_ynnpack_on_cpu(trained):
  """Running mode's CPU compilation (inference.jit_generator, which make_generate_fn and
  Translator run) leaves YNNPACK out (faster there; docs/performance.md, change 14); paper
  mode keeps XLA's defaults; running mode computes the same as XLA's defaults."""
  variables, _, inputs = trained
  generator = models.create_generator(default.get_config("tiny").model)
  if jax.default_backend() != "cpu":
    assert inference.compiler_options(False) is None
    return
  assert inference.compiler_options(True) is None
  rng = jax.random.key(0)
  lowered = lambda apply: apply.lower(variables, inputs, rng).compile()
  running = lowered(inference.jit_generator(generator, paper_mode=False))
  plain = lowered(jax.jit(lambda v, x, r: generator.apply(v, x, train=False)))
  paper = lowered(inference.jit_generator(generator, paper_mode=True))
  assert "ynn_fusion" in plain.as_text() and "ynn_fusion" in paper.as_text()
  assert "ynn_fusion" not in running.as_text()
  np.testing.assert_allclose(running(variables, inputs, rng), plain(variables, inputs, rng),
                             atol=1e-5)
