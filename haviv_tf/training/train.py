"""Training a run in its workdir: fit() with checkpoints, exact resume, TensorBoard, snapshots.

`train(cfg, workdir, source)` trains (or resumes) up to cfg.train_steps and returns the `checkpoints.Run`
(model, optimizer, checkpoint); `prepare_workdir` writes or checks config.json first. Callbacks
save checkpoints, log scalars, keep the `checkpoints.History` snapshots that back-tracking reads, stop on a
non-finite loss, and (for the speed penalty from scratch) re-estimate the centre-of-mass targets.
What follows training (evaluation, slow points, export) is analysis.py's.
"""

import json
import os
import shutil
import sys

from absl import logging

from haviv_tf.base import artifacts
from haviv_tf.base import config as config_lib
from haviv_tf.task import curricula
from haviv_tf.task import datasets
from haviv_tf.task import trials
from haviv_tf.training import callbacks as callbacks_lib
from haviv_tf.training import checkpoints
from haviv_tf.training import distribute
from haviv_tf.training import schedules

TENSORBOARD_DIR = "tensorboard"
# Fields that do not change what a run computes (jit_compile: up to float rounding); a resumed
# run may differ in them.
_RUN_CONTROL_FIELDS = ("data_dir", "history_every", "keep_history", "jit_compile")


RunError = artifacts.RunError


def check_workdir(cfg: config_lib.Config, workdir: str, overwrite: bool) -> bool:
  """Checks `workdir` against `cfg`; returns True if it holds a run of this config to resume.

  Raises:
    RunError: the workdir holds a different run and `overwrite` is False, or is unreadable.
  """
  path = os.path.join(workdir, artifacts.CONFIG_FILE)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise RunError(f"--workdir {workdir} exists and is not a directory")
  if not os.path.exists(path):
    if os.path.isdir(os.path.join(workdir, checkpoints.CHECKPOINT_DIR)) and not overwrite:
      raise RunError(f"{workdir} has checkpoints but no {artifacts.CONFIG_FILE}; "
                     "use --overwrite to start afresh")
    return False
  try:
    old = artifacts.recorded_config(workdir)
  except RunError as e:
    if overwrite:
      return False
    raise RunError(f"{e}; use --overwrite to replace the run") from None
  diffs = [f"{k}: {getattr(old, k)!r} -> {getattr(cfg, k)!r}" for k in cfg.to_dict()
           if k not in _RUN_CONTROL_FIELDS and getattr(old, k) != getattr(cfg, k)]
  if diffs and not overwrite:
    raise RunError(f"{workdir} holds a run with a different config ({'; '.join(diffs)}); "
                   "use --overwrite to replace it, or another --workdir")
  return not diffs


def _clear_run(workdir):
  for name in (checkpoints.CHECKPOINT_DIR, TENSORBOARD_DIR, checkpoints.HISTORY_DIR, artifacts.RESULTS_FILE,
               artifacts.CONFIG_FILE):
    path = os.path.join(workdir, name)
    if os.path.isdir(path):
      shutil.rmtree(path)
    elif os.path.exists(path):
      os.remove(path)


def train(cfg: config_lib.Config, workdir: str, source: datasets.Source, verbose=None,
          extra_callbacks=(), init_fn=None, strategy=None) -> checkpoints.Run:
  """Trains (or resumes) the run of `cfg` in `workdir` up to cfg.train_steps.

  `extra_callbacks` (Keras callbacks) are added to fit()'s, e.g. for timing. `init_fn(run)`
  is called on a new run (no checkpoint yet) before its first step, e.g. to load a parent's
  weights and set speed targets. `strategy` (tf.distribute; None: the current one, normally
  the default) distributes the training (see haviv_tf.training.distribute); on a non-chief
  multi-worker task checkpoints, snapshots and TensorBoard go to a scratch directory that is
  deleted before returning, and the workdir is only read.

  Raises:
    RunError: corrupt checkpoint, or a non-finite loss (the last good checkpoint is kept).
    ValueError: the batch does not split evenly over the replicas; workers out of step.
  """
  scratch = None if distribute.is_chief(strategy) else distribute.scratch_dir(strategy)
  try:
    return _train(cfg, workdir, source, verbose, extra_callbacks, init_fn, strategy, scratch)
  finally:
    if scratch is not None:
      shutil.rmtree(scratch, ignore_errors=True)


def _train(cfg, workdir, source, verbose, extra_callbacks, init_fn, strategy, scratch) -> checkpoints.Run:
  out = scratch or workdir  # where this process writes
  speed_noise = checkpoints.speed_noise_frames(cfg)
  distributed = not distribute.is_default(strategy) and strategy.num_replicas_in_sync > 1
  if distributed:
    distribute.check_divisible(strategy, cfg.batch_size, speed_noise)
  distribute.barrier(strategy)  # multi-worker: the chief has prepared the workdir
  run = checkpoints.Run(cfg, workdir, source.frame_shape, strategy, save_dir=out)
  start = run.restore()
  distribute.check_same_step(strategy, start)
  total = cfg.train_steps
  if start >= total:
    logging.info("%s already trained to step %d", workdir, start)
    return run
  if start:
    logging.info("resuming %s from step %d", workdir, start)
  elif init_fn is not None:
    init_fn(run)
  generator = trials.generator_for(source, "train", cfg)
  curriculum = curricula.for_config(cfg)
  guard = callbacks_lib.Guard()
  callbacks = [guard]
  if cfg.speed_refresh_every and checkpoints.speed_penalty_enabled(cfg):
    callbacks.append(callbacks_lib.RefreshTargets(run, generator, cfg.speed_refresh_every, guard))
  scalars = callbacks_lib.Scalars(os.path.join(out, TENSORBOARD_DIR, "train"), cfg.log_every, curriculum,
                     schedules.lr_schedule(cfg), guard, cfg, callbacks_lib.null_warning_steps(cfg))
  callbacks += [callbacks_lib.Historian(checkpoints.History(out, cfg.history_every, cfg.keep_history), curriculum,
                           total, guard),
                callbacks_lib.Checkpointer(run, guard),
                scalars] + list(extra_callbacks)
  if verbose is None:
    verbose = 1 if sys.stdout.isatty() else 2
  chunk = cfg.checkpoint_every

  def fit(step, steps_per_epoch, initial_epoch, epochs):
    def make_dataset():
      return generator.training_dataset(cfg.seed, cfg.batch_size, cfg.seq_len, curriculum,
                                        start_step=step, speed_noise=speed_noise,
                                        data_offset=cfg.data_offset,
                                        backend=cfg.trial_backend)
    if distributed:
      ds = distribute.distribute_batches(strategy, make_dataset, cfg.batch_size, speed_noise)
    else:
      ds = make_dataset()
    run.model.fit(ds, steps_per_epoch=steps_per_epoch, initial_epoch=initial_epoch,
                  epochs=epochs, callbacks=callbacks, verbose=verbose, shuffle=False)

  try:
    if start % chunk == 0 and start // chunk < total // chunk:
      fit(start, chunk, start // chunk, total // chunk)
    if guard.bad_step is None and run.step < total:
      # The run length is not a multiple of the checkpoint interval: one shorter last epoch.
      fit(run.step, total - run.step, 0, 1)
  finally:
    scalars.writer.close()
  if guard.bad_step is not None:
    last = run.latest_checkpoint
    raise RunError(f"loss became non-finite at step {guard.bad_step}; training stopped and the "
                   f"last good checkpoint ({last or 'none: no checkpoint was reached'}) is kept")
  return run


def prepare_workdir(cfg: config_lib.Config, workdir: str, overwrite: bool = False,
                    source=None, extra=None, strategy=None):
  """Checks `workdir`, loads the data, writes config.json for a new run; returns the Source.

  `source` skips loading the data again; `extra` (JSON-able dict, e.g. a fine-tuning run's
  parent) is recorded in config.json and must match on resume. The tf.distribute `strategy`
  (None: the current one) is recorded as config.json's "strategy" (name, replicas, workers)
  but never compared: it does not change what the run computes, and a run may resume under
  another one (the entry then names the latest). A non-chief multi-worker task only checks
  and loads: it writes nothing.

  Raises:
    RunError, datasets.DataError: with a one-line message.
  """
  config_lib.validate(cfg)
  if not distribute.is_default(strategy):
    distribute.check_divisible(strategy, cfg.batch_size, checkpoints.speed_noise_frames(cfg))
  resume = check_workdir(cfg, workdir, overwrite)
  if resume and extra:
    stored = artifacts.read_json(os.path.join(workdir, artifacts.CONFIG_FILE))
    diffs = [k for k in extra
             if json.loads(json.dumps(extra[k], default=artifacts.jsonable)) != stored.get(k)]
    if diffs and not overwrite:
      raise RunError(f"{workdir} holds a run with a different {', '.join(diffs)}; use "
                     "--overwrite to replace it, or another --workdir")
    resume = not diffs
  source = datasets.apply_recipe(source or datasets.load(cfg.dataset, cfg.data_dir),
                                 cfg.data_recipe)
  if not distribute.is_chief(strategy):
    return source
  described = distribute.describe(strategy)
  path = os.path.join(workdir, artifacts.CONFIG_FILE)
  if not resume:
    _clear_run(workdir)
    os.makedirs(workdir, exist_ok=True)
    artifacts.write_json(path, dict(
        config=cfg.to_dict(), seed=cfg.seed, data_origin=source.origin,
        environment=artifacts.environment(), strategy=described, **(extra or {})))
  elif artifacts.read_json(path).get("strategy", described) != described:
    artifacts.update_json(path, dict(strategy=described))
  return source

