"""Workdir layout and Orbax checkpoints.

A workdir is self-describing:
  W/config.json          the run's full config (written at start)
  W/checkpoints/<step>/  Orbax checkpoints, each with the items
      state    the unreplicated host TrainState: both networks' params, batch statistics
               and optax states, and the step
      rng      the run's key (raw uint32 key data)
      config   the full config as JSON
    or, for a workdir that holds only weights (e.g. imported from PyTorch):
      generator_weights, discriminator_weights (optional)   {'params', 'batch_stats'}
  W/metrics.jsonl        one JSON object per log step
  W/tensorboard/         TensorBoard events

A checkpoint is written to a temporary folder and renamed into place when complete, so a
run killed mid-write leaves only a temporary folder, which is ignored (and cleaned up).
"""

import fcntl
import json
import os
import socket
import sys
import time
from typing import Any, Callable, Optional

from absl import logging
from etils import epath
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from pix2pix_jax import configuration
from pix2pix_jax import step as step_lib

ITEMS = ("state", "rng", "config", "generator_weights", "discriminator_weights")
# Keys that change the networks' variables: a checkpoint only fits a config that agrees.
ARCHITECTURE_KEYS = ("model.num_downs", "model.ngf", "model.ndf", "model.norm",
                     "model.d_layers", "model.input_channels", "model.output_channels",
                     "model.skip_connections", "loss.conditional", "model.generator",
                     "model.upsample")
# The value of an architecture key that older configs lack.
ARCHITECTURE_DEFAULTS = {"model.generator": "unet", "model.upsample": "transpose"}
# Keys whose change re-shapes the learning-rate schedule of a resumed run.
SCHEDULE_KEYS = ("num_train_steps", "decay_steps", "optim.lr", "optim.lr_policy",
                 "optim.lr_decay_steps")


def config_path(workdir: str) -> str:
  return os.path.join(workdir, "config.json")


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a workdir was trained with (its config.json)."""
  path = config_path(workdir)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist: {workdir} is not a pix2pix_jax workdir.")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def architecture_value(config: Any, key: str) -> Any:
  """The config's value of an architecture key (its default where an older config lacks it)."""
  value = configuration.lookup(config, key)
  return ARCHITECTURE_DEFAULTS.get(key) if value is None else value


def architecture_differences(saved: Any, config: Any) -> list[str]:
  """`key: saved -> new` for each architecture key on which the two configs differ."""
  values = [(key, architecture_value(saved, key), architecture_value(config, key))
            for key in ARCHITECTURE_KEYS]
  return [f"{key}: {before!r} -> {now!r}" for key, before, now in values if before != now]


LOCK_FILE = ".lock"


class WorkdirLock:
  """W/.lock, held by the one process that trains into W (process 0 of a multi-process run).

  An advisory `fcntl.flock`: the kernel drops it when its holder exits, however it exits
  (SIGKILL, power loss), so a dead run never blocks the next. eval, predict and export only
  read and take no lock. The file says who holds it, for the refusal's message.
  """

  def __init__(self, workdir: str):
    workdir = os.path.abspath(os.path.expanduser(workdir))
    _make_workdir(workdir)
    self.path = os.path.join(workdir, LOCK_FILE)
    try:
      self._file = open(self.path, "a+")  # pylint: disable=consider-using-with
    except OSError as e:
      raise configuration.ConfigError(
          f"--workdir={workdir}: cannot write {self.path} ({e.strerror or e}); training "
          "needs a workdir it can write (eval --output=DIR reads one it cannot).") from None
    try:
      fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      self._file.seek(0)
      holder = self._file.read().strip() or "another process"
      self._file.close()
      raise configuration.ConfigError(
          f"{workdir} is in use: {holder} is training into it. Wait for it to finish or "
          "stop it (Ctrl-C or SIGTERM saves a checkpoint), or use another --workdir; "
          "--mode=eval, predict and export may run beside it.") from None
    self._file.seek(0)
    self._file.truncate()
    self._file.write(f"process {os.getpid()} on {socket.gethostname()} (since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n")
    self._file.flush()

  def release(self) -> None:
    if not self._file.closed:
      self._file.close()


def _make_workdir(workdir: str) -> None:
  """Creates W for writing; a one-line ConfigError naming it where that cannot be done."""
  configuration.make_folder(workdir, "--workdir", "give a folder that can be written (a new "
                            "one starts a new run)", writable=True)


def check_workdir(workdir: str, config: ml_collections.ConfigDict) -> str:
  """Checks a previous run's config in `workdir` against `config`; writes nothing.

  Resuming with other networks is an error that lists the differing keys; a changed
  schedule (e.g. a longer run) is allowed and logged. Returns the absolute path.
  """
  workdir = os.path.abspath(os.path.expanduser(workdir))
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise configuration.ConfigError(f"--workdir={workdir} is a file, not a folder: give a "
                                    "folder (a new one starts a new run).")
  if os.path.exists(config_path(workdir)):
    try:
      saved = json.loads(epath.Path(config_path(workdir)).read_text())
    except (OSError, ValueError) as e:
      raise configuration.ConfigError(
          f"{config_path(workdir)} cannot be read ({e}): restore it, or use a new "
          "--workdir.") from None
    differences = architecture_differences(saved, config)
    if differences:
      raise configuration.ConfigError(
          f"{workdir} holds a run with other networks than this config ("
          + "; ".join(differences) + "): use a new --workdir, or the workdir's own values.")
    policies = [configuration.lookup(c, "optim.lr_policy") or "linear" for c in (saved, config)]
    if (policies[0] == "plateau") != (policies[1] == "plateau") and _holds_state(workdir):
      raise configuration.ConfigError(
          f"optim.lr_policy: {policies[0]!r} -> {policies[1]!r}: the optimizer states in "
          f"{workdir} do not fit (plateau keeps its own); keep {policies[0]!r}, or start a new "
          f"--workdir with --init_from={workdir}.")
    for key in SCHEDULE_KEYS:
      before, now = configuration.lookup(saved, key), configuration.lookup(config, key)
      if before is not None and before != now:  # None: a key older runs did not have.
        logging.warning("%s changed from %r to %r since the last run in %s: the learning-rate "
                        "schedule is recomputed from the new values.", key, before, now, workdir)
  return workdir


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Writes W/config.json (process 0), by renaming a complete file into place (so no
  process reads half a file)."""
  _make_workdir(workdir)
  if jax.process_index() == 0:
    temporary = epath.Path(config_path(workdir) + ".tmp")
    temporary.write_text(config.to_json_best_effort(indent=2, sort_keys=True))
    temporary.replace(config_path(workdir))


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict) -> str:
  """`check_workdir`, then creates `workdir` and writes config.json; returns the absolute
  path. Every process checks; process 0 alone writes."""
  workdir = check_workdir(workdir, config)
  write_config(workdir, config)
  return workdir


def create_manager(workdir: str, config: ml_collections.ConfigDict, *,
                   read_only: bool = False) -> ocp.CheckpointManager:
  """An Orbax manager over W/checkpoints keeping the last `checkpoint_keep` steps."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=config.get("checkpoint_keep", 3), create=not read_only,
      read_only=read_only, cleanup_tmp_directories=not read_only)
  return ocp.CheckpointManager(epath.Path(workdir) / "checkpoints", options=options,
                               item_names=ITEMS)


def save(manager: ocp.CheckpointManager, step: int, state: Any,
         config: ml_collections.ConfigDict, rng: jax.Array) -> None:
  """Saves the host copy of `state`, the run's key and config at `step`, asynchronously."""
  manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      rng=ocp.args.StandardSave({"key_data": np.asarray(jax.random.key_data(rng))}),
      config=ocp.args.JsonSave(json.loads(config.to_json_best_effort()))))


def save_weights(workdir: str, config: ml_collections.ConfigDict, generator_variables: Any,
                 discriminator_variables: Any = None, *, step: int = 0,
                 keep: Optional[int] = None, primary_only: bool = False) -> str:
  """Writes a weights-only workdir (config + weights at `step`) that training fine-tunes.

  Training from it starts at step 0 with fresh optimizer states; eval and predict use the
  weights as they are. `keep`: the steps kept (default config.checkpoint_keep).
  `primary_only`: process 0 alone saves and no other process is waited for (in-training
  validation's W/best, which only process 0 writes); the others return at once.
  """
  if primary_only and jax.process_index() != 0:
    return os.path.abspath(os.path.expanduser(workdir))
  workdir = prepare_workdir(workdir, config)
  items = {"generator_weights": ocp.args.StandardSave(jax.device_get(generator_variables)),
           "config": ocp.args.JsonSave(json.loads(config.to_json_best_effort()))}
  if discriminator_variables is not None:
    items["discriminator_weights"] = ocp.args.StandardSave(
        jax.device_get(discriminator_variables))
  keep = config.get("checkpoint_keep", 3) if keep is None else keep
  if primary_only:
    # Orbax then leaves creating the folder to us.
    os.makedirs(os.path.join(workdir, "checkpoints"), exist_ok=True)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=False, multiprocessing_options=ocp.options.MultiprocessingOptions(
            primary_host=0, active_processes={0}))
  else:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           cleanup_tmp_directories=True)
  with ocp.CheckpointManager(epath.Path(workdir) / "checkpoints", options=options,
                             item_names=ITEMS) as manager:
    manager.save(step, args=ocp.args.Composite(**items), force=True)
    manager.wait_until_finished()
  return workdir


def has_checkpoints(workdir: str) -> bool:
  """Whether `workdir` holds a finished checkpoint (temporary folders do not count)."""
  directory = os.path.join(os.path.abspath(os.path.expanduser(workdir)), "checkpoints")
  return os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))


def _holds_state(workdir: str) -> bool:
  """Whether a checkpoint of `workdir` holds a training state (not only weights)."""
  directory = os.path.join(workdir, "checkpoints")
  return has_checkpoints(workdir) and any(
      os.path.isdir(os.path.join(directory, name, "state"))
      for name in os.listdir(directory) if name.isdigit())


def _has_item(manager: ocp.CheckpointManager, step: int, item: str) -> bool:
  return (epath.Path(manager.directory) / str(step) / item).exists()


def _abstract(tree: Any) -> Any:
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _restore_weights(manager: ocp.CheckpointManager, step: int, template: Any
                     ) -> dict[str, Any]:
  """{'generator': variables, 'discriminator': variables (if saved)} of a weights-only step."""
  items = {"generator_weights": ocp.args.StandardRestore(
      _abstract(template.generator.variables))}
  if _has_item(manager, step, "discriminator_weights"):
    items["discriminator_weights"] = ocp.args.StandardRestore(
        _abstract(template.discriminator.variables))
  restored = manager.restore(step, args=ocp.args.Composite(**items))
  return {name.removesuffix("_weights"): restored[name] for name in items}


def restore_latest(manager: ocp.CheckpointManager, template: Any, rng: jax.Array,
                   ) -> tuple[Any, jax.Array, Optional[dict[str, Any]]]:
  """(state, rng, weights) from the latest checkpoint; (template, rng, None) if none.

  A full checkpoint restores `state` and the run's key. A weights-only checkpoint returns
  `template` and the weights (a dict with 'generator' and maybe 'discriminator'
  variables), for the caller to start from at step 0. No fallback: see `restore_newest`.
  """
  step = manager.latest_step()
  if step is None:
    return template, rng, None
  return restore_step(manager, step, template, rng)


def restore_step(manager: ocp.CheckpointManager, step: int, template: Any, rng: jax.Array,
                  ) -> tuple[Any, jax.Array, Optional[dict[str, Any]]]:
  """`restore_latest`'s (state, rng, weights) of the checkpoint at `step`."""
  if not _has_item(manager, step, "state"):
    weights = _restore_weights(manager, step, template)
    logging.info("Starting from the weights in %s (step 0, fresh optimizer states).",
                 manager.directory / str(step))
    return template, rng, weights
  key_data = np.asarray(jax.random.key_data(rng))
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(_abstract(template)),
      rng=ocp.args.StandardRestore({"key_data": _abstract(key_data)})))
  logging.info("Restored the checkpoint at step %d from %s.", step, manager.directory)
  rng = jax.random.wrap_key_data(restored["rng"]["key_data"], impl=jax.random.key_impl(rng))
  return restored["state"], rng, None


DAMAGED_DIR = "damaged"  # W/damaged/<step>: checkpoints that did not restore, moved aside.


def _first_line(error: BaseException) -> str:
  """`Type: first line of the message`, at most 200 characters."""
  lines = str(error).strip().splitlines()
  text = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
  return text if len(text) <= 200 else text[:197] + "..."


def _move_aside(workdir: str, step: int) -> str:
  """Renames W/checkpoints/<step> to W/damaged/<step> (or <step>.1, ...); returns where."""
  source = os.path.join(workdir, "checkpoints", str(step))
  damaged = os.path.join(workdir, DAMAGED_DIR)
  os.makedirs(damaged, exist_ok=True)
  target, suffix = os.path.join(damaged, str(step)), 0
  while os.path.exists(target):
    suffix += 1
    target = os.path.join(damaged, f"{step}.{suffix}")
  os.rename(source, target)
  return target


def _quiet_closed_event_loops() -> Callable[[Any], None]:
  """Drops the "Event loop is closed" reports of a failed Orbax restore; returns the hook
  it replaced (for the caller to put back where no restore failed).

  The restore's asyncio loop ends at the first error while tensorstore still completes the
  other reads; each then reports, through sys.unraisablehook, that it could not post to the
  closed loop: a traceback per read, with nothing to act on. Other reports pass on.
  """
  previous = sys.unraisablehook
  if getattr(previous, "quiet_closed_event_loops", False):
    return previous

  def hook(unraisable):
    if not (isinstance(unraisable.exc_value, RuntimeError)
            and str(unraisable.exc_value) == "Event loop is closed"):
      previous(unraisable)
  hook.quiet_closed_event_loops = True
  sys.unraisablehook = hook
  return previous


def _may_move(workdir: str) -> bool:
  """Whether a reader (eval, predict, export) may move damaged checkpoints aside: the
  workdir can be written and no training run holds it (its lock is free)."""
  if not os.access(workdir, os.W_OK):
    return False
  try:
    WorkdirLock(workdir).release()
  except (configuration.ConfigError, OSError):
    return False
  return True


def restore_newest(workdir: str, config: ml_collections.ConfigDict,
                   restore: Callable[[ocp.CheckpointManager, int], Any], *,
                   writer: bool = True, step: Optional[int] = None) -> tuple[Optional[int], Any]:
  """(step, restore(manager, step)) of the newest checkpoint of W that restores.

  Tries the newest step, then older ones, each with a fresh read-only manager (a failed
  Orbax restore can leave its manager unusable). Once one restores, each newer one (it
  failed where an older one with the same template did not: damaged) gets one warning
  naming its folder and error, and is moved aside to W/damaged/<step>, never deleted:
  by a `writer` (training) always, by a reader only where the workdir can be written and
  no training run holds it. With none that restores, nothing is moved (the cause may be
  the code or config rather than the files) and a ConfigError names the folder and what
  to do. (None, None) if W has no checkpoint. `step` tries that step only.
  """
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return None, None
  manager = create_manager(workdir, config, read_only=True)
  steps = sorted(manager.all_steps(), reverse=True)
  manager.close()
  if step is not None:
    steps = [step] if step in steps else []
  failures = []
  unraisablehook = _quiet_closed_event_loops()  # kept after a failure: late reports come.
  for candidate in steps:
    manager = create_manager(workdir, config, read_only=True)
    try:
      result = restore(manager, candidate)
    except Exception as e:  # pylint: disable=broad-exception-caught  (Orbax, tensorstore, json)
      failures.append((candidate, e))
      logging.debug("Restoring step %d of %s failed.", candidate, workdir, exc_info=True)
      continue
    finally:
      try:
        manager.close()
      except Exception:  # pylint: disable=broad-exception-caught
        pass
    if not failures:
      sys.unraisablehook = unraisablehook
    move = bool(failures) and ((writer and jax.process_index() == 0) or
                               (not writer and _may_move(workdir)))
    for damaged_step, error in failures:
      folder = os.path.join(directory, str(damaged_step))
      where = ("left in place (process 0 moves it aside)" if writer else
               "left in place (the workdir cannot be written, or a training run holds it)")
      if move:
        try:
          where = f"moved aside to {_move_aside(workdir, damaged_step)}"
        except OSError as e:
          where = f"left in place (moving it failed: {e.strerror or e})"
      logging.warning("The checkpoint %s does not restore (%s): %s; using step %d.",
                      folder, _first_line(error), where, candidate)
    if failures and writer and jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices("pix2pix_jax: damaged checkpoints moved aside")
    return candidate, result
  if not failures:
    return None, None
  if step is not None:
    raise configuration.ConfigError(
        f"The checkpoint {os.path.join(directory, str(step))} does not restore "
        f"({_first_line(failures[0][1])}): use another checkpoint (--checkpoint=latest takes "
        "the newest that restores).")
  listed = "; ".join(f"step {s}: {_first_line(e)}" for s, e in failures)
  raise configuration.ConfigError(
      f"No checkpoint in {directory} restores ({listed}). If the files are damaged, move "
      f"those folders aside (e.g. into {os.path.join(workdir, DAMAGED_DIR)}) to start this "
      "workdir afresh, or start a new --workdir (--init_from=W2 takes another workdir's "
      "weights); if the config or code changed, use the ones that wrote them.")


def load_variables(workdir: str, step: Optional[int] = None
                   ) -> tuple[ml_collections.ConfigDict, dict[str, Any], Optional[dict[str, Any]]]:
  """(config, generator variables, discriminator variables or None) of a workdir.

  `step=None` takes the newest checkpoint that restores (see `restore_newest`: damaged
  newer ones are skipped with a warning). Works on full and weights-only checkpoints and
  writes nothing into the workdir, except that damaged checkpoints may be moved aside
  (what eval, predict and export build on).
  """
  workdir = os.path.abspath(os.path.expanduser(workdir))
  config = load_config(workdir)
  manager = create_manager(workdir, config, read_only=True)
  try:
    steps = manager.all_steps()
  finally:
    manager.close()
  if not steps:
    raise FileNotFoundError(f"{workdir}/checkpoints has no checkpoint: train first, or "
                            "import weights.")
  if step is not None and step not in steps:
    raise FileNotFoundError(f"{workdir}/checkpoints has no checkpoint at step {step}; "
                            f"it has steps {sorted(steps)}.")
  template = step_lib.abstract_train_state(config)

  def restore(manager: ocp.CheckpointManager, step: int):
    if _has_item(manager, step, "state"):
      state = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(template)))["state"]
      return state.generator.variables, state.discriminator.variables
    weights = _restore_weights(manager, step, template)
    return weights["generator"], weights.get("discriminator")
  _, (generator, discriminator) = restore_newest(workdir, config, restore, writer=False,
                                                 step=step)
  return config, generator, discriminator


def _shape_differences(name: str, loaded: Any, template: Any) -> list[str]:
  """`name/path: loaded shape -> expected shape` (or missing / unexpected) per variable."""
  flat = lambda tree: {"/".join(str(getattr(k, "key", k)) for k in path): tuple(leaf.shape)
                       for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}
  loaded, expected = flat(loaded), flat(template)
  params_first = lambda key: (not key.startswith("params/"), key)
  return [f"{name}/{key}: {loaded.get(key, 'missing')} -> {expected.get(key, 'unexpected')}"
          for key in sorted(loaded.keys() | expected.keys(), key=params_first)
          if loaded.get(key) != expected.get(key)]


def weights_to_start_from(source: str, config: ml_collections.ConfigDict, template: Any
                          ) -> dict[str, Any]:
  """{'generator': variables[, 'discriminator': variables]} of `source`'s latest checkpoint.

  What `--init_from=W2` starts a new run from (the reference's --continue_train, for a new
  run). `template` is the new run's fresh TrainState; every network key and variable shape
  of `source` must fit it, or a ConfigError lists the differences.
  """
  try:
    saved_config, generator, discriminator = load_variables(source)
  except FileNotFoundError as e:
    raise configuration.ConfigError(f"--init_from={source}: {e}") from None
  weights = {"generator": generator}
  if discriminator is not None:
    weights["discriminator"] = discriminator
  keys = architecture_differences(saved_config, config)
  shapes = [line for name, variables in weights.items()
            for line in _shape_differences(name, variables, getattr(template, name).variables)]
  if keys or shapes:
    listed = keys + ([f"{len(shapes)} variable(s) differ, e.g. {shapes[0]}"] if keys and shapes
                     else shapes[:8] + ([f"and {len(shapes) - 8} more"] if len(shapes) > 8 else []))
    raise configuration.ConfigError(
        f"--init_from={source} holds other networks than this config (" + "; ".join(listed)
        + "): give this run that workdir's values of these keys.")
  logging.info("Starting a new run from the weights of %s (step 0, fresh optimizer states).",
               source)
  return weights
