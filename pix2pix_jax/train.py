"""The training loop: start or resume a run, step it, log, validate, checkpoint, stop cleanly.

The state and the pure train step it runs live in `step.py`.
"""

import os
import signal
import threading
import time
from typing import Any, Optional

from absl import logging
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

from pix2pix_jax import checkpoints
from pix2pix_jax import configuration
from pix2pix_jax import datasets
from pix2pix_jax import distributed
from pix2pix_jax import evaluation
from pix2pix_jax import host_memory
from pix2pix_jax import inference
from pix2pix_jax import input_pipeline
from pix2pix_jax import models
from pix2pix_jax import optimizers
from pix2pix_jax import parallel
from pix2pix_jax import step as step_lib
from pix2pix_jax import writers

def _mean_metrics(history: list[dict[str, jax.Array]]) -> dict[str, float]:
  """Host means of the metrics kept on device since the last log (one transfer)."""
  history = jax.device_get(history)
  return {k: float(np.mean([h[k][0] for h in history])) for k in history[0]}


MAX_STEPS_IN_FLIGHT = 2  # steps dispatched ahead of the one the host waits for.


class NonFiniteError(FloatingPointError):
  """A step produced a non-finite loss or gradient."""


def check_finite(state: step_lib.TrainState, manager) -> None:
  """Raises NonFiniteError naming the first non-finite step (one scalar from device 0)."""
  nonfinite_step = int(parallel.first_copy(state.nonfinite_step))
  if nonfinite_step >= 0:
    latest = manager.latest_step()
    kept = (f"The last good checkpoint is step {latest} in {manager.directory}."
            if latest is not None else
            f"No checkpoint was saved before it ({manager.directory} holds none).")
    raise NonFiniteError(
        f"Step {nonfinite_step} produced a non-finite loss or gradient; nothing after it was "
        f"saved. {kept} Try a lower optim.lr or check the data.")


class StopRequest:
  """Turns SIGTERM / SIGINT into a request to stop after the current step.

  The loop then saves a checkpoint and returns normally; a second signal is handled as
  usual (SIGINT raises KeyboardInterrupt). Installed only in the main thread.

  With several processes, all must stop after the same step: SIGTERM to any of them
  (a cluster's preemption notice, `scancel`) goes to JAX's preemption service, which
  picks the step (`multihost_utils.reached_preemption_sync_point`); SIGINT is left as
  usual (it ends a process without a checkpoint).
  """

  def __init__(self):
    self.signal_name = None
    self._previous = {}
    self._multi_process = jax.process_count() > 1

  def __enter__(self):
    if threading.current_thread() is threading.main_thread() and not self._multi_process:
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    self.signal_name = signal.Signals(signum).name
    for sig, handler in self._previous.items():  # a second signal acts as usual.
      signal.signal(sig, handler)

  def __exit__(self, *exc_info):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)

  def requested(self, step: int) -> bool:
    """Whether to stop after `step` (called once per step, by every process)."""
    if self._multi_process and self.signal_name is None and (
        multihost_utils.reached_preemption_sync_point(step)):
      self.signal_name = "SIGTERM (preemption, all processes)"
    return self.signal_name is not None


def fresh_state(config: ml_collections.ConfigDict, rng: jax.Array, pix2pix: step_lib.Pix2Pix
                ) -> step_lib.TrainState:
  """`step.create_train_state`'s state; with several processes, process 0's, sent to all.

  The others only take the shapes: compiling the initializers costs a fresh process
  ~20 s on a CPU, and JAX's persistent compilation cache serves process 0 alone.
  """
  if jax.process_count() == 1:
    return step_lib.create_train_state(config, rng, pix2pix)
  if distributed.is_primary():
    state = step_lib.create_train_state(config, rng, pix2pix)
  else:
    shapes = jax.eval_shape(lambda: step_lib.create_train_state(config, rng, pix2pix))
    state = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
  return multihost_utils.broadcast_one_to_all(state)


def start_weights(config: ml_collections.ConfigDict, workdir: str, init_from: str
                  ) -> Optional[dict[str, Any]]:
  """The weights a new run in `workdir` starts from: `init_from`'s latest (checked against
  `config`'s networks, ConfigError otherwise), or None without `init_from` or when `workdir`
  already holds checkpoints (the run resumes from them; `init_from` is ignored)."""
  if not init_from:
    return None
  if checkpoints.has_checkpoints(workdir):
    logging.warning("%s already holds checkpoints: resuming from them; --init_from=%s is "
                    "ignored.", workdir, init_from)
    return None
  return checkpoints.weights_to_start_from(init_from, config,
                                          step_lib.abstract_train_state(config))


def initial_state(config: ml_collections.ConfigDict, pix2pix: step_lib.Pix2Pix, manager,
                  weights: Optional[dict[str, Any]] = None
                  ) -> tuple[step_lib.TrainState, jax.Array]:
  """(state, step rng) to start from: the latest checkpoint's, or fresh ones from the seed.

  A damaged newest checkpoint is moved aside and an older one taken (see
  `checkpoints.restore_newest`). A weights-only checkpoint (e.g. imported weights) gives
  those weights at step 0 with fresh optimizer states; so do `weights`
  ({'generator'[, 'discriminator']} variables, see `start_weights`) when the workdir has no
  checkpoint yet.
  """
  init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
  if weights is not None and manager.latest_step() is None:
    fresh = lambda: step_lib.create_train_state(config, init_rng, pix2pix)
    # Only a network that `weights` lacks needs initialising; else its shapes suffice.
    state = fresh() if "discriminator" not in weights else jax.eval_shape(fresh)
    return step_lib.state_from_weights(state, weights, pix2pix), step_rng
  state = fresh_state(config, init_rng, pix2pix)
  workdir = os.path.dirname(os.fspath(manager.directory))
  step, restored = checkpoints.restore_newest(
      workdir, config, lambda reader, at_step: checkpoints.restore_step(
          reader, at_step, state, step_rng))
  if step is None:
    return state, step_rng
  manager.reload()  # damaged steps may have been moved aside.
  state, step_rng, weights = restored
  if weights is not None:
    state = step_lib.state_from_weights(state, weights, pix2pix)
  return state, step_rng


def whole_run_decay_warning(config: ml_collections.ConfigDict) -> str:
  """The warning for a linear policy that decays the LR over the whole run ("" if not).

  The default decay_steps (100k) is sized for the paper's 200k steps: a short run
  (`--config.num_train_steps=400`) then never trains at the full LR, which cost 3.5 dB
  on a 400-step run. It stays a warning: smoke runs and the reference's `--n_epochs 0`
  mean it.
  """
  if (config.optim.get("lr_policy", "linear") != "linear"
      or config.decay_steps < config.num_train_steps):
    return ""
  return (f"decay_steps={config.decay_steps} >= num_train_steps={config.num_train_steps}: "
          "the learning rate decays linearly over the whole run and is never constant. "
          "If that is not meant, set --config.decay_steps to a part of the run (e.g. "
          f"{config.num_train_steps // 4}) or 0 (constant).")


def describe_run(config: ml_collections.ConfigDict, workdir: str, data) -> list[str]:
  """What a run trains, on what, and where it writes: the first lines a person reads."""
  model, splits = config.model, data.report.get("splits", {})
  generator = (f"U-Net ({model.num_downs} levels" if model.generator == "unet"
               else f"{model.generator} (") + f", ngf {model.ngf}, {model.norm} norm)"
  if config.loss.gan == "none":
    objective = f"L1 only (x{config.loss.l1_weight:g})"
  else:
    field = models.RECEPTIVE_FIELDS.get(int(model.d_layers))
    patch = f"{field}x{field} " if field else ""
    objective = (f"{config.loss.gan} GAN ({patch}PatchGAN, ndf {model.ndf}) + "
                 f"{config.loss.l1_weight:g} x L1")
  decay = min(config.decay_steps, config.num_train_steps)
  lines = [
      f"Data: {config.data.source} ({data.report.get('dataset', config.data.path)}): "
      + ", ".join(f"{n} {split}" for split, n in splits.items()) + " pairs; "
      f"{config.data.crop_size}x{config.data.crop_size} training crops.",
      f"Model: {generator}, {objective}; batch {config.batch_size}, "
      f"{config.num_train_steps} steps (LR {config.optim.lr:g}"
      + (f", linear decay over the last {decay})." if decay else ", constant)."),
      f"Writes: {workdir}/checkpoints every {config.checkpoint_every_steps} steps, "
      f"metrics.jsonl and tensorboard/ every {config.log_every_steps}"
      + (f", validation every {config.eval_every_steps} (best in {workdir}/best)"
         if config.eval_every_steps > 0 else "") + ", the full log in train.log.",
      f"Then: python main.py --mode=eval --workdir={workdir}  (scores the test split; "
      f"tensorboard --logdir {workdir}/tensorboard to watch).",
  ]
  return lines


def _eta(remaining_steps: int, steps_per_s: float) -> str:
  seconds = remaining_steps / max(steps_per_s, 1e-9)
  return (f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       init_from: str = "") -> step_lib.TrainState:
  """Trains pix2pix as `config` says, writing logs and checkpoints into `workdir`.

  Re-running with the same workdir continues from its latest checkpoint, exactly: the
  batches, dropout masks and optimizer states are those an uninterrupted run would have
  used. SIGTERM / SIGINT stop after the current step with a checkpoint. `init_from`: a
  new run starts at step 0 from that workdir's latest weights (both networks, fresh Adam;
  ConfigError if its networks differ). Returns the final state (host copy).
  """
  configuration.validate(config)
  parallel.check_batch_size(config.batch_size)
  writers.quiet_library_logs()
  if warning := whole_run_decay_warning(config):
    logging.warning("%s", warning)
  norm_mode = inference.resolve_norm_mode(config.inference.norm_mode, config.batch_size)
  weights = start_weights(config, workdir, init_from)  # checked before anything is written.
  # The data first: a bad file stops the run before anything is written.
  data = datasets.prepare(config.data, seed=config.seed)
  # One writer per workdir: a second training run refuses at once (the lock dies with its
  # holder, so a killed run never blocks the next one).
  lock = checkpoints.WorkdirLock(workdir) if jax.process_index() == 0 else None
  try:
    return _train(config, workdir, norm_mode, weights, data)
  finally:
    if lock is not None:
      lock.release()


def abstract_replicated_state(config: ml_collections.ConfigDict, devices=None):
  """The shapes, dtypes and shardings of `parallel.replicate(state, devices)` for `config`."""
  sharding = parallel.device_sharding(devices)
  return jax.tree.map(
      lambda s: jax.ShapeDtypeStruct((sharding.mesh.size,) + s.shape, s.dtype,
                                     sharding=sharding, weak_type=s.weak_type),
      step_lib.abstract_train_state(config))


def precompiled_step(config: ml_collections.ConfigDict, p_train_step, train_source):
  """`compile_step` for `config`'s state and the first batch of `train_source`, called
  before the state exists: the compiler's working memory (~600 MB at unet_256 with a cold
  compilation cache) is then not held on top of the state (docs/performance.md)."""
  if jax.process_count() > 1:
    return p_train_step
  batch = parallel.shard(input_pipeline.create_train_dataset(config, train_source)[0])
  return compile_step(p_train_step, abstract_replicated_state(config), batch,
                      jax.eval_shape(lambda: jax.random.key(0)))


def compile_step(p_train_step, replicated_state, batch, step_rng):
  """The pmapped step compiled before its first call, the compiler's freed memory handed
  back to the OS, so that the first step's buffers do not come on top of it (host_memory).
  With several processes the pmapped function itself (ahead-of-time lowering sees the
  global device count, a call the process's own arrays)."""
  if jax.process_count() > 1:
    return p_train_step
  compiled = p_train_step.lower(replicated_state, batch, step_rng).compile()
  host_memory.release_freed_memory()
  return compiled


def _train(config: ml_collections.ConfigDict, workdir: str, norm_mode: str, weights, data
           ) -> step_lib.TrainState:
  """train_and_evaluate's loop, with the workdir's lock held."""
  workdir = checkpoints.check_workdir(workdir, config)
  pix2pix = step_lib.Pix2Pix.from_config(config)
  p_train_step = step_lib.make_parallel_train_step(pix2pix)
  compiled_step = precompiled_step(config, p_train_step, data.sources["train"])
  manager = checkpoints.create_manager(workdir, config)
  # The state to resume from first: config.json is rewritten only once it is known.
  try:
    state, step_rng = initial_state(config, pix2pix, manager, weights)
    checkpoints.write_config(workdir, config)
  except BaseException:
    manager.close()
    raise
  primary = distributed.is_primary()  # the one process that writes logs and reports.
  log_file = writers.log_to_file(workdir) if primary else None
  if primary:
    datasets.write_report(workdir, data.report)
    for line in describe_run(config, workdir, data):
      logging.info("%s", line)
  sources = data.sources

  start_step = int(state.step)
  if start_step:
    logging.info("Resuming from the checkpoint at step %d in %s.", start_step, workdir)

  writer = writers.MetricWriter(workdir, enabled=primary)
  summary_batch = next(iter(input_pipeline.eval_batches(
      config, sources["test"], batch_size=config.num_image_summaries,
      max_examples=config.num_image_summaries)))
  generate = inference.make_generate_fn(models.create_generator(config.model))
  validator = (evaluation.make_validator(config, workdir, sources["test"], writer)
               if primary else None)

  replicated_state = parallel.replicate(state, consume=True)
  del state  # its arrays are deleted: each was copied onto the devices and freed in turn.
  host_memory.release_freed_memory()  # what initialising the networks used.
  batches = input_pipeline.train_batches(
      config, sources["train"], start_step=start_step,
      process_index=jax.process_index(), process_count=jax.process_count())
  history = []
  progress = writers.progress_bar(config.num_train_steps, start_step, enabled=primary)
  last_log_time, last_log_step = time.perf_counter(), start_step
  try:
    with StopRequest() as stop:
      for step in range(start_step + 1, config.num_train_steps + 1):
        batch = parallel.shard(next(batches))
        replicated_state, metrics = compiled_step(replicated_state, batch, step_rng)
        history.append(metrics)
        if len(history) > MAX_STEPS_IN_FLIGHT:
          # Bound how far the host runs ahead of the devices, so that the progress bar is
          # true and a stop request is served within a step or two.
          jax.block_until_ready(history[-1 - MAX_STEPS_IN_FLIGHT])
        progress.update(1)
        # Read the request once: a signal arriving later in this iteration must not make
        # the loop stop without the checkpoint below.
        stopping = stop.requested(step)
        last_step = step == config.num_train_steps or stopping
        if step % config.log_every_steps == 0 or last_step:
          scalars = _mean_metrics(history)  # waits for the step: the one host sync.
          history = []
          check_finite(replicated_state, manager)
          scalars["steps_per_s"] = (step - last_log_step) / (
              time.perf_counter() - last_log_time)
          scalars["learning_rate"] = optimizers.learning_rate(
              config, parallel.first_copy(replicated_state.generator.opt_state), step - 1)
          writer.write_scalars(step, scalars, note=(
              f" [{step}/{config.num_train_steps}, ETA "
              f"{_eta(config.num_train_steps - step, scalars['steps_per_s'])}]"
              if step < config.num_train_steps else ""))
          progress.set_postfix(d=f"{scalars.get('d_loss', 0):.3f}",
                               l1=f"{scalars['g_l1']:.3f}", refresh=False)
          if primary and not stopping:  # a stop is served without compiling summaries.
            outputs = generate(parallel.first_copy(replicated_state.generator).variables,
                               summary_batch["input"], norm_mode=norm_mode)
            writer.write_images(step, {"input_output_target": writers.image_grid(
                summary_batch["input"], outputs, summary_batch["target"])})
          last_log_time, last_log_step = time.perf_counter(), step  # summaries not timed.
        if validator and step % config.eval_every_steps == 0 and not stopping:
          validation_start = time.perf_counter()
          validator(step, parallel.first_copy(replicated_state.generator).variables,
                    parallel.first_copy(replicated_state.discriminator).variables)
          last_log_time += time.perf_counter() - validation_start  # not timed as steps.
        if step % config.checkpoint_every_steps == 0 or last_step:
          check_finite(replicated_state, manager)  # never save a non-finite state.
          checkpoints.save(manager, step, parallel.unreplicate(replicated_state), config,
                           step_rng)
        if stopping:
          logging.warning("%s received: stopped after step %d and saved its checkpoint in %s. "
                          "Run the same command to resume.", stop.signal_name, step, workdir)
          break
  finally:
    batches.close()
    progress.close()
    manager.wait_until_finished()
    manager.close()
    writer.close()
    writers.close_log_file(log_file)
  return parallel.unreplicate(replicated_state)
