"""train_and_evaluate(config, workdir): fit() with checkpoints, resume, TensorBoard, evaluation."""

import math
import os
import shutil
import sys

from absl import logging
import keras
import tensorflow as tf

from haviv_tf import artifacts
from haviv_tf import config as config_lib
from haviv_tf import curricula
from haviv_tf import datasets
from haviv_tf import models
from haviv_tf import trials

CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
# Fields that do not change what a run computes; a resumed run may differ in them.
_RUN_CONTROL_FIELDS = ("data_dir",)


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
    if os.path.isdir(os.path.join(workdir, CHECKPOINT_DIR)) and not overwrite:
      raise RunError(f"{workdir} has checkpoints but no {artifacts.CONFIG_FILE}; "
                     "use --overwrite to start afresh")
    return False
  try:
    old = config_lib.Config.from_dict(artifacts.read_json(path)["config"])
  except (ValueError, KeyError, TypeError) as e:
    if overwrite:
      return False
    raise RunError(f"{path} is not a haviv_tf config ({e}); use --overwrite to replace the run")
  diffs = [f"{k}: {getattr(old, k)!r} -> {getattr(cfg, k)!r}" for k in cfg.to_dict()
           if k not in _RUN_CONTROL_FIELDS and getattr(old, k) != getattr(cfg, k)]
  if diffs and not overwrite:
    raise RunError(f"{workdir} holds a run with a different config ({'; '.join(diffs)}); "
                   "use --overwrite to replace it, or another --workdir")
  return not diffs


def _clear_run(workdir):
  for name in (CHECKPOINT_DIR, TENSORBOARD_DIR, artifacts.RESULTS_FILE, artifacts.CONFIG_FILE):
    path = os.path.join(workdir, name)
    if os.path.isdir(path):
      shutil.rmtree(path)
    elif os.path.exists(path):
      os.remove(path)


def lr_schedule(cfg: config_lib.Config):
  """The learning rate: cfg.learning_rate up to step lr_decay_step, then x lr_decay_factor."""
  return keras.optimizers.schedules.PiecewiseConstantDecay(
      [cfg.lr_decay_step], [cfg.learning_rate, cfg.learning_rate * cfg.lr_decay_factor])


def make_optimizer(cfg: config_lib.Config) -> keras.optimizers.Optimizer:
  """Adam (TF1's epsilon 1e-8, as the authors) on lr_schedule(cfg)."""
  return keras.optimizers.Adam(learning_rate=lr_schedule(cfg), epsilon=1e-8)


class Run:
  """A model, its optimizer and checkpoints in a workdir."""

  def __init__(self, cfg: config_lib.Config, workdir: str, frame_shape):
    self.cfg, self.workdir = cfg, workdir
    keras.utils.set_random_seed(cfg.seed)
    self.model = models.build(cfg, frame_shape)
    self.optimizer = make_optimizer(cfg)
    self.model.compile(optimizer=self.optimizer)
    self.optimizer.build(self.model.trainable_variables)
    self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, os.path.join(workdir, CHECKPOINT_DIR), max_to_keep=cfg.keep_checkpoints,
        checkpoint_name="ckpt")

  @property
  def step(self) -> int:
    return int(self.optimizer.iterations.numpy())

  def restore(self) -> int:
    """Restores the latest checkpoint (if any); returns the step it holds.

    Raises:
      RunError: the checkpoint exists but cannot be read.
    """
    path = self.manager.latest_checkpoint
    if path is None:
      return 0
    try:
      self.checkpoint.restore(path).assert_existing_objects_matched()
    except (tf.errors.OpError, ValueError, AssertionError) as e:
      first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
      raise RunError(f"checkpoint {path} is corrupt or from another model ({first}); move it "
                     "away to resume from an earlier one, or use --overwrite") from None
    return self.step

  def save(self) -> str:
    return self.manager.save(checkpoint_number=self.step)


class _Guard(keras.callbacks.Callback):
  """Stops at the first non-finite loss, so that no checkpoint is written after it."""

  def __init__(self):
    super().__init__()
    self.bad_step = None

  def on_train_batch_end(self, batch, logs=None):
    loss = (logs or {}).get("loss")
    if loss is not None and not math.isfinite(float(loss)):
      self.bad_step = int(self.model.optimizer.iterations.numpy())
      self.model.stop_training = True


class _Checkpointer(keras.callbacks.Callback):

  def __init__(self, run: Run, guard: _Guard):
    super().__init__()
    self.run, self.guard = run, guard

  def on_epoch_end(self, epoch, logs=None):
    if self.guard.bad_step is None:
      self.run.save()


class _Scalars(keras.callbacks.Callback):
  """TensorBoard scalars every `every` steps at the global step (so resumed runs line up).

  Values are means over the steps since the previous write (metrics are reset after each).
  """

  def __init__(self, logdir, every, curriculum, schedule, guard):
    super().__init__()
    self.writer = tf.summary.create_file_writer(logdir)
    self.every, self.curriculum, self.schedule, self.guard = every, curriculum, schedule, guard

  def on_train_batch_end(self, batch, logs=None):
    step = int(self.model.optimizer.iterations.numpy())
    if step % self.every or self.guard.bad_step is not None:
      return
    num_classes, t_max = self.curriculum.at(step - 1)
    with self.writer.as_default(step=step):
      for m in self.model.metrics:
        tf.summary.scalar("train/" + m.name, m.result())
      tf.summary.scalar("curriculum/stage", self.curriculum.stage(step - 1))
      tf.summary.scalar("curriculum/num_classes", num_classes)
      tf.summary.scalar("curriculum/t_max", t_max)
      tf.summary.scalar("learning_rate", float(self.schedule(step - 1)))
    self.writer.flush()
    for m in self.model.metrics:
      m.reset_state()

  def on_train_end(self, logs=None):
    self.writer.flush()


def train(cfg: config_lib.Config, workdir: str, source: datasets.Source, verbose=None,
          extra_callbacks=()) -> Run:
  """Trains (or resumes) the run of `cfg` in `workdir` up to cfg.train_steps.

  `extra_callbacks` (Keras callbacks) are added to fit()'s, e.g. for timing.

  Raises:
    RunError: corrupt checkpoint, or a non-finite loss (the last good checkpoint is kept).
  """
  run = Run(cfg, workdir, source.frame_shape)
  start = run.restore()
  total = cfg.train_steps
  if start >= total:
    logging.info("%s already trained to step %d", workdir, start)
    return run
  if start:
    logging.info("resuming %s from step %d", workdir, start)
  generator = trials.generator_for(source, "train", cfg)
  curriculum = curricula.for_config(cfg)
  guard = _Guard()
  callbacks = [guard, _Checkpointer(run, guard),
               _Scalars(os.path.join(workdir, TENSORBOARD_DIR, "train"), cfg.log_every,
                        curriculum, lr_schedule(cfg), guard)] + list(extra_callbacks)
  if verbose is None:
    verbose = 1 if sys.stdout.isatty() else 2
  chunk = cfg.checkpoint_every

  def fit(step, steps_per_epoch, initial_epoch, epochs):
    ds = generator.training_dataset(cfg.seed, cfg.batch_size, cfg.seq_len, curriculum,
                                    start_step=step)
    run.model.fit(ds, steps_per_epoch=steps_per_epoch, initial_epoch=initial_epoch,
                  epochs=epochs, callbacks=callbacks, verbose=verbose, shuffle=False)

  if start % chunk == 0 and start // chunk < total // chunk:
    fit(start, chunk, start // chunk, total // chunk)
  if guard.bad_step is None and run.step < total:
    # The run length is not a multiple of the checkpoint interval: one shorter last epoch.
    fit(run.step, total - run.step, 0, 1)
  if guard.bad_step is not None:
    last = run.manager.latest_checkpoint
    raise RunError(f"loss became non-finite at step {guard.bad_step}; training stopped and the "
                   f"last good checkpoint ({last or 'none: no checkpoint was reached'}) is kept")
  return run


def prepare_workdir(cfg: config_lib.Config, workdir: str, overwrite: bool = False):
  """Checks `workdir`, loads the data, writes config.json for a new run; returns the Source.

  Raises:
    RunError, datasets.DataError: with a one-line message.
  """
  config_lib.validate(cfg)
  resume = check_workdir(cfg, workdir, overwrite)
  source = datasets.load(cfg.dataset, cfg.data_dir)
  if not resume:
    _clear_run(workdir)
    os.makedirs(workdir, exist_ok=True)
    artifacts.write_json(os.path.join(workdir, artifacts.CONFIG_FILE), dict(
        config=cfg.to_dict(), seed=cfg.seed, data_origin=source.origin,
        environment=artifacts.environment()))
  return source
