"""Importing PyTorch reference weights: outputs equal torch's, and mismatches are clear errors.

The torch networks (pix2pix_jax/torch_reference.py) are written from the reference's published
architecture (junyanz/pytorch-CycleGAN-and-pix2pix, models/networks.py) with the same module
nesting, so their state_dict keys are the reference's.
"""

import copy
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import default
from pix2pix_jax import checkpoints
from pix2pix_jax import configuration
from pix2pix_jax import inference
from pix2pix_jax import models
from pix2pix_jax import torch_import

torch = pytest.importorskip("torch")
from pix2pix_jax import torch_reference as ref  # pylint: disable=g-import-not-at-top

nn = torch.nn
torch.set_num_threads(1)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ATOL = 1e-4


def _torch_outputs(module, images_nhwc):
  """(running, paper) outputs as NHWC numpy: eval(); train() with dropout off.

  The train() pass runs on a copy, since it updates the running statistics.
  """
  x = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))
  paper = copy.deepcopy(module).train()
  for m in paper.modules():
    if isinstance(m, nn.Dropout):
      m.eval()
  with torch.no_grad():
    outputs = [module.eval()(x), paper(x)]
  return [y.numpy().transpose(0, 2, 3, 1) for y in outputs]


def _save(module, path):
  torch.save(module.state_dict(), path)
  return str(path)


def _config(**overrides):
  config = default.get_config("tiny")  # 32x32, num_downs 5, ngf / ndf 8, d_layers 3.
  config.update_from_flattened_dict(overrides)
  return config


def _images(shape, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def _flax_generator_outputs(config, variables, images):
  # Paper mode with dropout off on our side too: the same weights without Dropout modules.
  no_dropout = config.model.copy_and_resolve_references()
  no_dropout.dropout = False
  generate = inference.make_generate_fn(models.create_generator(no_dropout))
  return [np.asarray(generate(variables, images, norm_mode=mode))
          for mode in ("running", "paper")]


def _assert_close(flax_outputs, torch_outputs):
  for mode, ours, theirs in zip(("running", "paper"), flax_outputs, torch_outputs):
    assert ours.shape == theirs.shape, mode
    error = np.abs(ours - theirs).max()
    assert error < ATOL, f"{mode}: max abs error {error}"


def test_reference_builder_knows_every_generator_as_models_does():
  """torch_reference keeps its own name -> ResNet blocks table (its processes import no JAX):
  it must agree with models.resnet_blocks, and build the config's networks."""
  assert ref.RESNET_BLOCKS == {name: models.resnet_blocks(name) for name in models.GENERATORS}
  config = default.get_config("tiny").model
  generator, discriminator = ref.networks_from_config(config, seed=0)
  assert isinstance(generator, ref.RefUnetGenerator)
  assert isinstance(discriminator, ref.RefNLayerDiscriminator)


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_generator_outputs_equal_torch(norm, tmp_path):
  config = _config(**{"model.norm": norm})
  reference = ref.randomise(ref.RefUnetGenerator(5, 8, norm), seed=1)
  images = _images((4, 32, 32, 3))
  expected = _torch_outputs(reference, images)
  # Far from saturated tanh, and batch statistics matter: a meaningful comparison.
  assert np.abs(expected[0]).mean() < 0.8
  if norm == "batch":
    assert np.abs(expected[0] - expected[1]).max() > 0.1
  state_dict = torch_import.load_state_dict(_save(reference, tmp_path / "G.pth"))
  variables = torch_import.generator_variables(state_dict, config)
  _assert_close(_flax_generator_outputs(config, variables, images), expected)


def test_unet_128_outputs_equal_torch(tmp_path):
  config = _config(**{"model.num_downs": 7, "model.ngf": 2, "data.crop_size": 128,
                      "data.load_size": 128, "model.dropout_placement": "pytorch"})
  reference = ref.randomise(ref.RefUnetGenerator(7, 2, "batch"), seed=2)
  images = _images((2, 128, 128, 3))
  variables = torch_import.generator_variables(
      torch_import.load_state_dict(_save(reference, tmp_path / "G.pth")), config)
  _assert_close(_flax_generator_outputs(config, variables, images),
                _torch_outputs(reference, images))


def test_unet_256_key_layout_and_parameter_count():
  config = _config(**{"model.num_downs": 8, "model.ngf": 64, "data.crop_size": 256,
                      "data.load_size": 286})
  reference = ref.RefUnetGenerator(8, 64, "batch")
  assert sum(p.numel() for p in reference.parameters()) == 54_413_955
  state_dict = {k: v.numpy() for k, v in reference.state_dict().items()}
  assert "model.model.1.model.3.model.3.model.3.model.3.model.3.model.3.model.3.weight" in (
      state_dict)  # the innermost up-conv of unet_256
  variables = torch_import.generator_variables(state_dict, config)
  innermost = variables["params"]["unet"]
  for _ in range(7):
    innermost = innermost["submodule"]
  np.testing.assert_array_equal(
      innermost["up_conv"]["kernel"][::-1, ::-1].transpose(2, 3, 0, 1),
      state_dict["model.model.1.model.3.model.3.model.3.model.3.model.3.model.3.model.3.weight"])


def test_resnet_generator_outputs_equal_torch(tmp_path):
  """Reflect padding, 3x3 stride-2 convs, transposed convs with output_padding, blocks."""
  config = _config(**{"model.generator": "resnet_6blocks", "model.ngf": 4})
  reference = ref.randomise(ref.RefResnetGenerator(6, 4, "batch"), seed=7)
  images = _images((2, 32, 32, 3))
  expected = _torch_outputs(reference, images)
  assert np.abs(expected[0]).mean() < 0.8 and np.abs(expected[0] - expected[1]).max() > 0.1
  state_dict = torch_import.load_state_dict(_save(reference, tmp_path / "G.pth"))
  assert "model.10.conv_block.6.weight" in state_dict  # after the dropout: index 6
  variables = torch_import.generator_variables(state_dict, config)
  _assert_close(_flax_generator_outputs(config, variables, images), expected)


@pytest.mark.parametrize("n_blocks,norm,dropout", [(9, "instance", False), (6, "none", True)])
def test_resnet_key_layouts_and_parameter_counts(n_blocks, norm, dropout):
  reference = ref.RefResnetGenerator(n_blocks, 64, norm, dropout=dropout)
  config = _config(**{"model.generator": f"resnet_{n_blocks}blocks", "model.ngf": 64,
                      "model.norm": norm, "model.dropout": dropout})
  state_dict = {k: v.numpy() for k, v in reference.state_dict().items()}
  variables = torch_import.generator_variables(state_dict, config)
  ours = sum(np.size(v) for v in jax.tree.leaves(variables["params"]))
  torch_count = sum(p.numel() for p in reference.parameters())
  # norm='none': our inner convs keep a bias (zero here), the reference's have none (see
  # layers.uses_bias): ngf * (1 + 2 + 4 + n_blocks * 2 * 4 + 2 + 1) more parameters.
  extra = 64 * (10 + 8 * n_blocks) if norm == "none" else 0
  assert ours == torch_count + extra
  assert torch_import.describe_file(state_dict) == (
      f"a generator with model.generator='resnet_{n_blocks}blocks', model.ngf=64, "
      f"model.norm={norm!r}, model.dropout={dropout}, model.input_channels=3, "
      "model.output_channels=3")


@pytest.mark.parametrize("d_layers,norm", [(3, "batch"), (3, "instance"), (1, "batch"),
                                           (0, "batch"), (0, "instance")])
def test_discriminator_outputs_equal_torch(d_layers, norm, tmp_path):
  config = _config(**{"model.d_layers": d_layers, "model.norm": norm})
  if d_layers == 0:
    reference = ref.RefPixelDiscriminator(6, 8, norm)
  else:
    reference = ref.RefNLayerDiscriminator(6, 8, d_layers, norm)
  reference = ref.randomise(reference, seed=3)
  images = _images((4, 32, 32, 6))
  expected = _torch_outputs(reference, images)
  state_dict = torch_import.load_state_dict(_save(reference, tmp_path / "D.pth"))
  variables = torch_import.discriminator_variables(state_dict, config)
  discriminator = models.create_discriminator(config.model)
  ours = [np.asarray(discriminator.apply(variables, images, train=train))
          for train in (False, True)]
  _assert_close(ours, expected)


def test_wrong_num_downs_lists_the_differing_keys(tmp_path):
  path = _save(ref.RefUnetGenerator(6, 8, "batch"), tmp_path / "six_levels.pth")
  state_dict = torch_import.load_state_dict(path)
  with pytest.raises(configuration.ConfigError) as error:
    torch_import.generator_variables(state_dict, _config(), source=path)
  message = str(error.value)
  level_4 = "model.model.1.model.3.model.3.model.3"
  assert message.startswith(f"{path} does not fit the generator of this config "
                            "(model.num_downs=5, model.ngf=8, model.norm='batch'")
  assert f"missing keys (5): {level_4}.model.3.weight, {level_4}.model.4.bias" in message
  assert "unexpected keys (" in message and f"{level_4}.model.2.running_mean" in message
  assert "num_batches_tracked" not in message
  assert ("The file looks like a generator with model.num_downs=6, model.ngf=8, "
          "model.norm='batch'") in message


def test_wrong_norm_and_width_are_listed(tmp_path):
  state_dict = torch_import.load_state_dict(
      _save(ref.RefNLayerDiscriminator(6, 16, 3, "batch"), tmp_path / "D.pth"))
  with pytest.raises(configuration.ConfigError) as error:
    torch_import.discriminator_variables(state_dict, _config(**{"model.norm": "instance"}))
  message = str(error.value)
  assert "missing keys (3): model.2.bias, model.5.bias, model.8.bias" in message
  # (Running statistics at a norm's place are ignored with instance norm: see below.)
  assert "unexpected keys (6): model.3.bias, model.3.weight, model.6.bias" in message
  assert ("wrong shapes (file != expected) (6): model.0.bias (16,) != (8,), model.0.weight "
          "(16, 6, 4, 4) != (8, 6, 4, 4), model.2.weight") in message
  assert ("looks like a discriminator with model.d_layers=3, model.ndf=16, model.norm='batch', "
          "6 input channels") in message


def test_a_file_that_is_not_a_state_dict_is_a_clear_error(tmp_path):
  garbage = tmp_path / "garbage.pth"
  garbage.write_bytes(b"not a .pth file")
  with pytest.raises(configuration.ConfigError, match="garbage.pth is not a state_dict"):
    torch_import.load_state_dict(str(garbage))
  torch.save({"step": 3}, tmp_path / "not_tensors.pth")
  with pytest.raises(configuration.ConfigError, match="does not hold a state_dict"):
    torch_import.load_state_dict(str(tmp_path / "not_tensors.pth"))


def test_instance_norm_running_stats_of_old_files_are_ignored():
  state_dict = dict(ref.RefUnetGenerator(5, 8, "instance").state_dict())  # torch tensors
  config = _config(**{"model.norm": "instance"})
  expected = torch_import.generator_variables(state_dict, config)
  # Older reference versions built InstanceNorm2d(track_running_stats=True).
  state_dict["model.model.1.model.2.running_mean"] = np.zeros(16, np.float32)
  state_dict["model.model.1.model.2.running_var"] = np.ones(16, np.float32)
  state_dict["model.model.1.model.2.num_batches_tracked"] = np.array(3)
  jax.tree.map(np.testing.assert_array_equal,
               torch_import.generator_variables(state_dict, config), expected)



def test_import_writes_a_workdir_that_loads_and_refuses_to_overwrite(tmp_path):
  config = _config(**{"model.norm": "instance"})
  reference = ref.randomise(ref.RefUnetGenerator(5, 8, "instance"), seed=6)
  path = _save(reference, tmp_path / "G.pth")
  workdir = torch_import.import_torch_weights(str(tmp_path / "imported"), config, path)
  loaded_config, g_vars, d_vars = checkpoints.load_variables(workdir)
  assert loaded_config.model.norm == "instance" and d_vars is None
  jax.tree.map(np.testing.assert_array_equal, g_vars,
               torch_import.generator_variables(torch_import.load_state_dict(path), config))
  with pytest.raises(configuration.ConfigError, match="already holds checkpoints"):
    torch_import.import_torch_weights(workdir, config, path)


def _import_cli(workdir, *args):
  return subprocess.run(
      [sys.executable, "main.py", f"--workdir={workdir}", "--mode=import_torch",
       "--config=configs/default.py:tiny", *args],
      cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_cli_imports_into_a_workdir_that_loads(tmp_path):
  reference_g = ref.randomise(ref.RefUnetGenerator(5, 8, "batch"), seed=4)
  reference_d = ref.randomise(ref.RefNLayerDiscriminator(6, 8, 3, "batch"), seed=5)
  g_path, d_path = _save(reference_g, tmp_path / "G.pth"), _save(reference_d, tmp_path / "D.pth")
  workdir = tmp_path / "imported"
  result = _import_cli(workdir, f"--torch_generator={g_path}", f"--torch_discriminator={d_path}")
  assert result.returncode == 0, result.stderr[-3000:]

  config, g_vars, d_vars = checkpoints.load_variables(str(workdir))
  assert config.model.num_downs == 5
  images = _images((4, 32, 32, 3))
  _assert_close(_flax_generator_outputs(config, g_vars, images),
                _torch_outputs(reference_g, images))
  pairs = _images((4, 32, 32, 6), seed=1)
  logits = models.create_discriminator(config.model).apply(d_vars, pairs, train=False)
  np.testing.assert_allclose(logits, _torch_outputs(reference_d, pairs)[0], atol=ATOL)

  # A file that does not fit (here D given as G) is one clear error, and nothing is written.
  result = _import_cli(tmp_path / "bad", f"--torch_generator={d_path}")
  assert result.returncode != 0
  assert f"{d_path} does not fit the generator of this config" in result.stderr
  assert "The file looks like a discriminator with model.d_layers=3" in result.stderr
  assert "Traceback" not in result.stderr
  assert not os.path.exists(tmp_path / "bad")
