"""benchmarks.vs_reference runs end to end (a JSON line per implementation, then both),
and the reference's U-Net drops out where ours does (model.dropout_placement)."""

import json
import math
import os
import subprocess
import sys

import pytest

from pix2pix_jax import models

torch = pytest.importorskip("torch")
from pix2pix_jax import torch_reference as ref  # pylint: disable=g-import-not-at-top

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = ("impl", "seed", "steps", "identity_psnr_y", "paper_psnr_y", "running_psnr_y",
        "gain_paper", "gain_running", "train_s")
# Any download attempt fails: nothing may be fetched.
NO_NETWORK = {name: "http://127.0.0.1:9" for name in
              ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}


def test_two_steps_print_both_implementations_and_the_table(tmp_path):
  out = tmp_path / "vs_reference.md"
  command = [sys.executable, "-m", "benchmarks.vs_reference",
             "--config=configs/default.py:tiny", "--steps=2",
             f"--config.data.cache_dir={tmp_path / 'cache'}", f"--out={out}"]
  env = dict(os.environ, JAX_PLATFORMS="cpu", **NO_NETWORK)
  result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  *records, summary = [json.loads(line) for line in result.stdout.strip().splitlines()]
  assert [r["impl"] for r in records] == ["pix2pix_jax", "reference"]
  for record in records:
    assert tuple(record) == KEYS
    assert record["seed"] == 0 and record["steps"] == 2
    for key in KEYS[3:]:
      assert math.isfinite(record[key]), (record["impl"], key, record[key])
    assert record["gain_paper"] == pytest.approx(
        record["paper_psnr_y"] - record["identity_psnr_y"])
  assert records[0]["identity_psnr_y"] == records[1]["identity_psnr_y"]  # the same test set.
  assert summary["runs"] == records
  for impl in ("pix2pix_jax", "reference"):
    assert math.isfinite(summary[impl]["gain_running_mean"])
  table = out.read_text()
  assert "| reference |" in table and "--config=configs/default.py:tiny" in table


@pytest.mark.parametrize("placement", ["pytorch", "lua"])
@pytest.mark.parametrize("num_downs", [5, 6, 8])
def test_reference_unet_drops_out_where_ours_does(num_downs, placement):
  """The reference's U-Net has a Dropout after the decoder blocks of models.dropout_levels."""
  net = ref.RefUnetGenerator(num_downs, 2, "batch", dropout_placement=placement)
  depths, block = [], net.model
  for depth in range(num_downs):
    if any(isinstance(m, torch.nn.Dropout) for m in block.model.children()):
      depths.append(depth)
    block = next((m for m in block.model.children() if isinstance(m, ref.RefUnetBlock)), None)
  assert tuple(depths) == models.dropout_levels(num_downs, placement)
