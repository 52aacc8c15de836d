"""Training equals the PyTorch reference's: 3 steps of our train step against
torch_reference.ReferencePix2Pix (the reference's optimize_parameters).

Both sides start from the same weights (the reference's networks with its init_weights,
imported with torch_import), see the same batches, with dropout off. Every step's losses
agree, and after 3 steps so do both networks' parameters and batch-norm running statistics.
Parameters are compared norm-wise per tensor, against the size of the update:
||ours - theirs|| / ||theirs - initial||. Adam's first steps are sign-like (m / sqrt(v) is
+-1 at step 1), so where a gradient is near 0 its float noise decides the sign of a full-size
step and an element-wise check would fail there; a tensor's norm is dominated by its large
entries, which agree. The losses are what shows a wrongly scaled loss: Adam is invariant to
a gradient's scale, so a D loss without its 0.5 leaves the parameters within tolerance.

The matrix is 6 of the 18 (loss.gan x layout x model.conv_impl) cases: every GAN loss
(vanilla, lsgan, none) at batch 1 on one device and at batch 2 on two fake CPU devices (the
reference runs the whole batch at once), and every conv_impl (xla, gemm, tuned) in both
layouts, each with two of the losses. Each case compiles its own step (most of its time,
longest for gemm and tuned), so the 18 would take ~3x as long; the pairs left out add little:
a conv_impl computes the same convolutions and gradients whatever loss feeds them.
"""

import os
import subprocess
import sys

from flax import traverse_util
import jax
import numpy as np
import pytest

from configs import default
from pix2pix_jax import parallel
from pix2pix_jax import torch_import
from pix2pix_jax import step as step_lib

import conftest  # pylint: disable=g-bad-import-order

torch = pytest.importorskip("torch")
from pix2pix_jax import torch_reference as ref  # pylint: disable=g-import-not-at-top

STEPS = 3
# Tolerances: the two sides round differently (summation orders of convolutions, batch
# statistics and reductions: ~1e-7 relative per float32 op, a few 1e-6 through the networks).
# Measured worst cases in the comments; each bound leaves a margin of 5-10x.
# Losses: means of well-conditioned terms, ~7e-7 relative, except lsgan's G loss (6e-6): a
# mean over only 4-8 patch logits, so the rounding of D's outputs does not average out.
LOSS_RTOL = 3e-5
# Parameters after 3 steps, per tensor, relative to the update: the rounding enters through
# Adam's normalisation (m / sqrt(v) turns the noise of a near-zero gradient into a full-size
# step) and through D's rounding in G's gradients; measured <= 1.1e-4 (BN scales; conv kernels
# ~1e-5).
PARAM_RTOL = 1e-3
# Running statistics: momentum averages of batch means and (unbiased) variances, no Adam in
# between, so only the activations' rounding: measured <= 1.3e-6 of the update.
STATS_RTOL = 1e-5

# (loss.gan, batch size = device count, model.conv_impl): every GAN loss on both device
# layouts, every conv_impl on both layouts (see the module docstring).
CASES = [("vanilla", 1, "xla"), ("vanilla", 2, "tuned"), ("lsgan", 1, "gemm"),
         ("lsgan", 2, "xla"), ("none", 1, "tuned"), ("none", 2, "gemm")]


def _config(gan, batch_size, conv_impl):
  config = default.get_config("tiny")  # 32x32, num_downs 5, ngf / ndf 8, d_layers 3.
  config.update_from_flattened_dict({
      "batch_size": batch_size, "loss.gan": gan, "model.conv_impl": conv_impl,
      "model.dropout": False,  # the reference's --no_dropout; random masks cannot agree.
      "optim.lr": 2e-4})  # the paper's LR (constant over these steps).
  return config


def _batches(batch_size):
  rng = np.random.default_rng(0)
  for t in range(STEPS):
    inputs = rng.uniform(-1, 1, (batch_size, 32, 32, 3)).astype(np.float32)
    targets = np.ascontiguousarray(np.flip(inputs, -1) * 0.5)  # learnable: a fixed function.
    yield {"input": inputs, "target": targets,
           "index": np.arange(batch_size, dtype=np.int32) + batch_size * t}


def _nchw(images):
  return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def _our_variables(state_dicts, config):
  """The reference networks' state_dicts in our layout: {net: {'params', 'batch_stats'}}."""
  return {"generator": torch_import.generator_variables(state_dicts["generator"], config),
          "discriminator": torch_import.discriminator_variables(
              state_dicts["discriminator"], config)}


def _flat(variables):
  return traverse_util.flatten_dict(jax.device_get(variables), sep="/")


@pytest.mark.slow
@pytest.mark.parametrize("gan,batch_size,conv_impl", CASES)
def test_three_steps_equal_the_reference(gan, batch_size, conv_impl):
  config = _config(gan, batch_size, conv_impl)
  torch.set_num_threads(1)
  torch.manual_seed(0)
  reference = ref.ReferencePix2Pix(
      ref.init_weights(ref.RefUnetGenerator(5, 8, "batch", dropout=False),
                       config.model.init_type, config.model.init_gain),
      ref.init_weights(ref.RefNLayerDiscriminator(6, 8, 3, "batch"),
                       config.model.init_type, config.model.init_gain),
      gan_mode=gan, lambda_l1=config.loss.l1_weight, lr=config.optim.lr,
      beta1=config.optim.beta1)
  initial = _our_variables(ref.state_dicts(reference), config)

  pix2pix = step_lib.Pix2Pix.from_config(config)
  template = jax.eval_shape(lambda: step_lib.create_train_state(config, jax.random.key(0), pix2pix))
  devices = jax.local_devices()[:batch_size]
  assert len(devices) == batch_size, "tests/conftest.py should fake 2 CPU devices"
  state = parallel.replicate(step_lib.state_from_weights(template, initial, pix2pix), devices)
  step = step_lib.make_parallel_train_step(pix2pix, devices=devices)

  for t, batch in enumerate(_batches(batch_size)):
    theirs = reference.optimize_parameters(_nchw(batch["input"]), _nchw(batch["target"]))
    state, metrics = step(state, parallel.shard(batch, len(devices)), jax.random.key(1))
    ours = {k: float(v[0]) for k, v in jax.device_get(metrics).items()}
    pairs = {"loss_G": ours["g_loss"], "loss_G_L1": ours["g_l1"] * config.loss.l1_weight}
    if gan != "none":
      pairs.update(loss_G_GAN=ours["g_gan"], loss_D=ours["d_loss"])
    for name, value in pairs.items():
      np.testing.assert_allclose(value, theirs[name], rtol=LOSS_RTOL,
                                 err_msg=f"step {t + 1}: {name}")

  state = parallel.unreplicate(state)
  final = _our_variables(ref.state_dicts(reference), config)
  for net in ("generator", "discriminator"):
    before, after = _flat(initial[net]), _flat(final[net])
    mine = _flat(getattr(state, net).variables)
    assert mine.keys() == after.keys()
    for key, expected in after.items():
      update = np.linalg.norm(expected - before[key])
      error = np.linalg.norm(mine[key] - expected)
      if net == "discriminator" and gan == "none":  # L1 only: D never changes.
        assert update == 0 and error == 0, f"{net} {key}: {error} (update {update})"
        continue
      assert update > 0, f"{net} {key} did not change in the reference"
      rtol = STATS_RTOL if key.startswith("batch_stats/") else PARAM_RTOL
      assert error <= rtol * update, (
          f"{net} {key}: ||ours - theirs|| = {error:.3g} is {error / update:.3g} of the "
          f"update ({update:.3g}); allowed {rtol}")


@pytest.mark.slow
def test_parity_holds_at_xla_default_optimization_level():
  """The suite compiles at LLVM level 0 with XLA:CPU's elemental emitters
  (tests/conftest.py: they cut the suite's time and change only float rounding); users' runs
  compile at XLA's defaults. One case of the parity
  above, rerun in a process at the default level, keeps that difference covered."""
  env = dict(os.environ, PIX2PIX_TEST_XLA_OPTIMIZATION="default")
  flags = env.get("XLA_FLAGS", "")
  for flag in conftest.TEST_XLA_FLAGS:
    flags = flags.replace(flag, "")
  env["XLA_FLAGS"] = " ".join(flags.split())
  case = f"{__file__}::test_three_steps_equal_the_reference[vanilla-2-tuned]"
  result = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", case],
      cwd=os.path.dirname(os.path.dirname(__file__)), env=env, capture_output=True, text=True,
      timeout=600, check=False)
  assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout[-3000:]
