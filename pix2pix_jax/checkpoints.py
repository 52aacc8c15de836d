"""Workdir layout and Orbax checkpoints.

A workdir is self-describing:
  W/config.json        the run's full config (written at start)
  W/checkpoints/<step>  Orbax checkpoints of the unreplicated host state, plus the config
  W/metrics.jsonl      one JSON object per log step
  W/tensorboard/       TensorBoard events
"""

import json
import os
from typing import Any, Optional

from absl import logging
from etils import epath
import jax
import ml_collections
import orbax.checkpoint as ocp


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict) -> str:
  """Creates `workdir` and writes its config.json; returns the absolute path."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  return workdir


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a workdir was trained with (its config.json)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist: {workdir} is not a pix2pix_jax workdir.")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def create_manager(workdir: str, config: ml_collections.ConfigDict) -> ocp.CheckpointManager:
  """An Orbax manager over W/checkpoints keeping the last `checkpoint_keep` steps."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=config.get("checkpoint_keep", 3), create=True)
  return ocp.CheckpointManager(epath.Path(workdir) / "checkpoints", options=options,
                               item_names=("state", "config"))


def save(manager: ocp.CheckpointManager, step: int, state: Any,
         config: Optional[ml_collections.ConfigDict] = None) -> None:
  """Saves the host copy of `state` (and the config as JSON) at `step`, asynchronously."""
  items = {"state": ocp.args.StandardSave(state)}
  if config is not None:
    items["config"] = ocp.args.JsonSave(json.loads(config.to_json_best_effort()))
  manager.save(step, args=ocp.args.Composite(**items))


def restore_latest(manager: ocp.CheckpointManager, template: Any) -> Any:
  """The latest checkpoint's state, shaped like `template`; `template` itself if none."""
  step = manager.latest_step()
  if step is None:
    return template
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
  restored = manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
  logging.info("Restored the checkpoint at step %d from %s.", step, manager.directory)
  return restored["state"]
