"""Training a run in its workdir: fit() with checkpoints, exact resume, TensorBoard, snapshots.

`train(cfg, workdir, source)` trains (or resumes) up to cfg.train_steps and returns the `Run`
(model, optimizer, checkpoint); `prepare_workdir` writes or checks config.json first. Callbacks
save checkpoints, log scalars, keep the `History` snapshots that back-tracking reads, stop on a
non-finite loss, and (for the speed penalty from scratch) re-estimate the centre-of-mass targets.
What follows training (evaluation, slow points, export) is analysis.py's.
"""

import contextlib
import json
import math
import os
import re
import shutil
import sys

from absl import logging
import keras
import tensorflow as tf
from tensorflow.python.util import deprecation  # pylint: disable=g-direct-tensorflow-import

from haviv_tf.base import artifacts
from haviv_tf.base import config as config_lib
from haviv_tf.task import curricula
from haviv_tf.task import datasets
from haviv_tf.training import distribute
from haviv_tf.task import losses
from haviv_tf.models import network
from haviv_tf.probes import speed_targets
from haviv_tf.base import summaries
from haviv_tf.task import trials

CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
HISTORY_DIR = "history"
HISTORY_FILE = "history.json"
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
    if os.path.isdir(os.path.join(workdir, CHECKPOINT_DIR)) and not overwrite:
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
  for name in (CHECKPOINT_DIR, TENSORBOARD_DIR, HISTORY_DIR, artifacts.RESULTS_FILE,
               artifacts.CONFIG_FILE):
    path = os.path.join(workdir, name)
    if os.path.isdir(path):
      shutil.rmtree(path)
    elif os.path.exists(path):
      os.remove(path)


@keras.saving.register_keras_serializable(package="haviv_tf")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
  """Linear warm-up from 0 to `peak` over `warmup` steps, then a half cosine down to
  `peak * final_fraction` at step `total` (and flat after it)."""

  def __init__(self, peak, total, final_fraction, warmup=0):
    self.peak, self.total = float(peak), int(total)
    self.final_fraction, self.warmup = float(final_fraction), int(warmup)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    warm = float(max(self.warmup, 1))
    up = self.peak * tf.minimum(1.0, (step + 1.0) / warm)
    frac = tf.clip_by_value((step - self.warmup) / float(max(self.total - self.warmup, 1)),
                            0.0, 1.0)
    floor = self.peak * self.final_fraction
    down = floor + (self.peak - floor) * 0.5 * (1.0 + tf.cos(math.pi * frac))
    return down if self.warmup <= 0 else tf.where(step < self.warmup, up, down)

  def get_config(self):
    return dict(peak=self.peak, total=self.total, final_fraction=self.final_fraction,
                warmup=self.warmup)


def lr_schedule(cfg: config_lib.Config):
  """The learning rate at each optimizer step.

  "step" (the paper's): cfg.learning_rate for updates 1 .. lr_decay_step + 1 (the schedule
  sees the update count before the update, 0 .. lr_decay_step), then x lr_decay_factor.
  "cosine": linear warm-up over warmup_steps, then a half cosine from learning_rate down to
  learning_rate x lr_decay_factor at train_steps.
  """
  if cfg.lr_schedule == "cosine":
    return WarmupCosine(cfg.learning_rate, cfg.train_steps, cfg.lr_decay_factor,
                        cfg.warmup_steps)
  return keras.optimizers.schedules.PiecewiseConstantDecay(
      [cfg.lr_decay_step], [cfg.learning_rate, cfg.learning_rate * cfg.lr_decay_factor])


def make_optimizer(cfg: config_lib.Config) -> keras.optimizers.Optimizer:
  """Adam (TF1's epsilon 1e-8, as the authors) on lr_schedule(cfg)."""
  return keras.optimizers.Adam(learning_rate=lr_schedule(cfg), epsilon=1e-8)


def null_warning_steps(cfg: config_lib.Config) -> int:
  """How long a run must sit at the trivial solution before it is warned about."""
  return max(5 * cfg.log_every, cfg.train_steps // 50)


def speed_penalty_enabled(cfg: config_lib.Config) -> bool:
  return cfg.speed_targets != "none"


def speed_noise_frames(cfg: config_lib.Config) -> int:
  """K, the speed penalty's noise frames per step (one per target row); 0 without a penalty."""
  return config_lib.NUM_CLASSES * cfg.speed_copies if speed_penalty_enabled(cfg) else 0


def checkpoint_paths(workdir: str) -> list:
  """The checkpoint prefixes in workdir/checkpoints (ckpt-<step>.index present), newest first.

  Found from the files themselves, not from the `checkpoint` state file, so that a damaged
  state file hides none of them.
  """
  directory = os.path.join(workdir, CHECKPOINT_DIR)
  found = []
  for name in tf.io.gfile.listdir(directory) if tf.io.gfile.isdir(directory) else []:
    m = re.fullmatch(r"ckpt-(\d+)\.index", name)
    if m:
      found.append((int(m.group(1)), os.path.join(directory, name[:-len(".index")])))
  return [path for _, path in sorted(found, reverse=True)]


def _step_of(path: str) -> int:
  return int(path.rsplit("-", 1)[1])


def _first_line(e: Exception) -> str:
  text = str(e).strip()
  return text.splitlines()[0][:200] if text else type(e).__name__


def _read_newest(workdir: str, read) -> tuple:
  """Calls read(path) on workdir's checkpoints, newest first, until one succeeds.

  `read` raises RunError for a checkpoint that cannot be read. Each one skipped is logged as a
  warning with the reason. Returns (path, read's result), or (None, None) if there is no
  checkpoint.

  Raises:
    RunError: checkpoints exist but none can be read (each one named, with its reason).
  """
  paths = checkpoint_paths(workdir)
  skipped = []
  for path in paths:
    try:
      result = read(path)
    except RunError as e:
      logging.warning("skipped checkpoint %s: %s", path, e)
      skipped.append(f"{os.path.basename(path)} ({e})")
      continue
    if skipped:
      logging.warning("using checkpoint %s, the newest that reads (skipped %d newer)", path,
                      len(skipped))
    return path, result
  if skipped:
    raise RunError(f"no checkpoint in {os.path.join(workdir, CHECKPOINT_DIR)} can be read: "
                   f"{'; '.join(skipped)}")
  return None, None


def verify_checkpoint(path: str) -> None:
  """Reads every tensor of the checkpoint at `path` (checksums included); RunError if any fails."""
  try:
    reader = tf.train.load_checkpoint(path)
    for key in reader.get_variable_to_shape_map():
      reader.get_tensor(key)
  except (tf.errors.OpError, ValueError, IndexError) as e:
    raise RunError(f"checkpoint {path} does not read back ({_first_line(e)})") from None


def load_weights(model, workdir: str) -> int:
  """Reads the model weights of `workdir`'s newest readable checkpoint into `model` (read-only).

  Returns the checkpoint's step. Raises RunError if there is none or none can be read.
  """
  path, step = _read_newest(workdir, lambda p: read_snapshot(model, p))
  if path is None:
    raise RunError(f"{workdir} has no trained model (no checkpoint)")
  return step


def read_snapshot(model, path: str) -> int:
  """Model weights from a checkpoint or history snapshot at `path`; returns its step, or -1.

  The checkpoint is read into a throwaway copy of the model and its weights copied over, so
  that no deferred restoration (e.g. of an optimizer created later) attaches to `model`.
  """
  try:
    reader = tf.train.load_checkpoint(path)
    step = -1
    for key in reader.get_variable_to_shape_map():
      if key.startswith(("optimizer/iterations", "optimizer/_iterations", "step/")):
        step = int(reader.get_tensor(key))
    scratch = network.DelayedClassifier(**model.get_config())
    tf.train.Checkpoint(model=scratch).read(path).expect_partial().assert_existing_objects_matched()
  except (tf.errors.OpError, ValueError, AssertionError, IndexError) as e:
    raise RunError(f"checkpoint {path} is corrupt or from another model "
                   f"({_first_line(e)})") from None
  for dst, src in zip(model.trainable_variables, scratch.trainable_variables):
    dst.assign(src)
  return step


def write_weights(model, step: int, prefix: str) -> str:
  """Writes `model`'s layers and `step` (no optimizer state) as checkpoint `prefix`.

  The format of the history snapshots: read back with `read_snapshot` (any copy of the model)
  or turned into a training checkpoint with `checkpoint_from_weights`.
  """
  # The model's layers only (under the same names as in the model): the model also tracks
  # its optimizer, whose two Adam slots per weight would triple the file's size.
  layers = {k: getattr(model, k) for k in ("cell", "head", "encoder")
            if getattr(model, k, None) is not None}
  return tf.train.Checkpoint(model=tf.train.Checkpoint(**layers),
                             step=tf.Variable(step, dtype=tf.int64)).write(prefix)


def checkpoint_from_weights(cfg: config_lib.Config, workdir: str, prefix: str,
                            frame_shape) -> int:
  """Makes weights-only checkpoint `prefix` the training checkpoint of `workdir`; returns its step.

  The optimizer is fresh (its step set to the weights' step, its moments zero): evaluation,
  the slow-point search, export and fine-tuning (which starts a fresh Adam) read the network
  exactly; training further would not continue the original optimizer.

  Raises:
    RunError: `workdir` already has a checkpoint, or `prefix` is not weights of this model.
  """
  if checkpoint_paths(workdir):
    raise RunError(f"{workdir} already has a checkpoint: refusing to replace it")
  run = Run(cfg, workdir, frame_shape)
  step = read_snapshot(run.model, prefix)
  if step < 0:
    raise RunError(f"{prefix} records no step")
  run.optimizer.iterations.assign(step)
  run.save()
  return step


class Run:
  """A model, its optimizer and checkpoints in a workdir.

  With a `strategy` (tf.distribute) the model, optimizer and checkpoint are created under its
  scope; None keeps the current (normally the default, single-device) strategy. Checkpoints are
  restored from workdir/checkpoints and saved to `save_dir`/checkpoints (default: the workdir;
  a non-chief multi-worker task saves to a scratch directory).

  A restore falls back to the newest checkpoint that reads, logging each one skipped and why.
  A save is read back in full before the `checkpoint` state file names it and before any older
  checkpoint beyond cfg.keep_checkpoints is deleted.
  """

  def __init__(self, cfg: config_lib.Config, workdir: str, frame_shape, strategy=None,
               save_dir=None):
    self.cfg, self.workdir, self.save_dir = cfg, workdir, save_dir or workdir
    self.strategy = strategy or tf.distribute.get_strategy()
    default = distribute.is_default(strategy)
    with contextlib.nullcontext() if default else strategy.scope():
      keras.utils.set_random_seed(cfg.seed)
      self.model = network.build(cfg, frame_shape)
      # A noise bank repeats frames within a batch: the CNN encodes each distinct one once.
      self.model.dedup_frames = cfg.noise_bank > 0
      if speed_penalty_enabled(cfg):
        self.model.enable_speed_penalty(config_lib.NUM_CLASSES * cfg.speed_copies)
      self.optimizer = make_optimizer(cfg)
      # jit_compile explicitly: Keras resolves "auto" to False on a CPU. Under a tf.distribute
      # strategy the step stays uncompiled: XLA cannot compile the replicas' all-reduces on CPU.
      self.model.compile(optimizer=self.optimizer, speed_weight=cfg.speed_weight,
                         loss_norm=cfg.loss_norm, log_eps=cfg.log_eps, mask=cfg.mask,
                         jit_compile=cfg.jit_compile and default)
      self.optimizer.build(self.model.trainable_variables)
      self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer)
      # Created now, so that every checkpoint written holds it and every restore matches it.
      _ = self.checkpoint.save_counter
    self.checkpoint_dir = os.path.join(self.save_dir, CHECKPOINT_DIR)

  @property
  def step(self) -> int:
    return int(self.optimizer.iterations.numpy())

  @property
  def latest_checkpoint(self):
    """The newest checkpoint this run has saved (or found on disk), or None."""
    paths = checkpoint_paths(self.save_dir)
    return paths[0] if paths else None

  def restore(self) -> int:
    """Restores the newest checkpoint that reads (if any); returns the step it holds.

    A non-chief multi-worker task restores the chief's, from the workdir.

    Raises:
      RunError: checkpoints exist but none can be read.
    """
    def read(path):
      try:
        self.checkpoint.restore(path).assert_existing_objects_matched()
      except (tf.errors.OpError, ValueError, AssertionError, IndexError) as e:
        raise RunError(f"corrupt or from another model: {_first_line(e)}") from None
    path, _ = _read_newest(self.workdir, read)
    return 0 if path is None else self.step

  def save(self) -> str:
    """Writes checkpoint ckpt-<step>, reads it back, then records it and prunes old ones.

    Raises:
      RunError: the new checkpoint does not read back (the older ones are all kept).
    """
    path = self.checkpoint.write(os.path.join(self.checkpoint_dir, f"ckpt-{self.step}"))
    verify_checkpoint(path)
    # Older checkpoints only: newer ones (left by a run that fell back past them) are
    # overwritten as this run reaches their steps.
    paths = [p for p in checkpoint_paths(self.save_dir) if _step_of(p) < self.step]
    keep = [path] + paths[:self.cfg.keep_checkpoints - 1]
    with deprecation.silence():  # its deprecation notice would be a stray line on stderr
      tf.compat.v1.train.update_checkpoint_state(
          self.checkpoint_dir, path, all_model_checkpoint_paths=keep[::-1])
    for old in paths[self.cfg.keep_checkpoints - 1:]:
      for f in tf.io.gfile.glob(old + ".*"):
        tf.io.gfile.remove(f)
    return path

  def single_device(self) -> "Run":
    """This run as a default-strategy Run restored from its latest checkpoint in the workdir.

    For the analysis after distributed training: evaluation, slow-point search and export then
    see plain variables and never wait on other workers.
    """
    if distribute.is_default(self.strategy):
      return self
    run = Run(self.cfg, self.workdir, self.model.frame_shape)
    run.restore()
    return run


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


def last_logged_step(logdir: str) -> int:
  """The largest step of any summary already in `logdir`'s event files (-1 if none).

  A run killed after its last checkpoint has logged steps beyond it; its truncated last record
  (if any) is ignored.
  """
  last = -1
  for path in tf.io.gfile.glob(os.path.join(logdir, "events.out.tfevents.*")):
    try:
      for event in tf.compat.v1.train.summary_iterator(path):
        if event.HasField("summary"):
          last = max(last, int(event.step))
    except tf.errors.DataLossError:
      pass
  return last


NULL_WARNING_TAG = "warnings/null_everywhere"
NULL_MARGIN = 0.01  # relative distance to the trivial-solution loss counted as "at it"


class _Scalars(keras.callbacks.Callback):
  """TensorBoard scalars every `every` steps at the global step (so resumed runs line up).

  Values are means over the steps since the previous write (metrics are reset after each).
  Steps the workdir's event files already hold (a run killed after its last checkpoint, then
  resumed from it, recomputes them identically) are not written again, so every curve has one
  point per step.

  Also watches for the trivial solution: when the report accuracy has been 0 and the loss within
  NULL_MARGIN of `losses.trivial_loss` (the best loss of a constant output) at every write over
  at least `null_steps` steps, it logs one warning and writes it as TensorBoard text
  (NULL_WARNING_TAG).
  """

  def __init__(self, logdir, every, curriculum, schedule, guard, cfg=None, null_steps=None):
    super().__init__()
    self.written = last_logged_step(logdir)
    self.writer = tf.summary.create_file_writer(logdir)
    self.every, self.curriculum, self.schedule, self.guard = every, curriculum, schedule, guard
    self.cfg = cfg
    self.null_steps = null_steps
    self.null_since = None   # first write of the current stretch at the trivial solution
    self.warned = False

  def trivial_loss(self, step):
    """The trivial-solution loss under the curriculum stage of update `step`."""
    num_classes, t_max = self.curriculum.at(step - 1)
    c = self.cfg
    return losses.trivial_loss(num_classes, t_max, c.seq_len, c.report_weight,
                               self.curriculum.null_weight_at(step - 1), c.readout, c.loss_norm,
                               c.log_eps)[0]

  def _watch_null(self, step, logs):
    """Returns the warning to write at `step`, if the stretch at the trivial solution is due."""
    if self.cfg is None or self.warned:
      return None
    loss, report = float(logs["loss"]), float(logs["report_acc"])
    trivial = self.trivial_loss(step)
    if report > 0 or abs(loss - trivial) > NULL_MARGIN * trivial:
      self.null_since = None
      return None
    if self.null_since is None:
      self.null_since = step - self.every
    if step - self.null_since < self.null_steps:
      return None
    self.warned = True
    return (f"the network outputs null everywhere: report accuracy 0 and loss {loss:.5f} within "
            f"{NULL_MARGIN:.0%} of the trivial-solution loss {trivial:.5f} (a constant output) "
            f"over steps {self.null_since + 1}-{step}. It has not left the trivial solution; "
            "see docs/fidelity.md")

  def on_train_batch_end(self, batch, logs=None):
    step = int(self.model.optimizer.iterations.numpy())
    if step % self.every or self.guard.bad_step is not None:
      return
    num_classes, t_max = self.curriculum.at(step - 1)
    values = {m.name: m.result() for m in self.model.metrics}
    warning = self._watch_null(step, values)
    if warning:
      logging.warning("step %d: %s", step, warning)
    if step > self.written:
      with self.writer.as_default(step=step):
        for name, value in values.items():
          tf.summary.scalar("train/" + name, value,
                            description=summaries.describe("train/" + name))
        scalars = {"curriculum/stage": self.curriculum.stage(step - 1),
                   "curriculum/num_classes": num_classes, "curriculum/t_max": t_max}
        if self.curriculum.null_weight:
          scalars["curriculum/null_weight"] = self.curriculum.null_weight_at(step - 1)
        scalars["learning_rate"] = float(self.schedule(step - 1))
        if self.cfg is not None:
          scalars["train/trivial_loss"] = self.trivial_loss(step)
        for tag, value in scalars.items():
          tf.summary.scalar(tag, value, description=summaries.describe(tag))
        if warning:
          tf.summary.text(NULL_WARNING_TAG, warning,
                          description=summaries.describe(NULL_WARNING_TAG))
      self.writer.flush()
    for m in self.model.metrics:
      m.reset_state()

  def on_train_end(self, logs=None):
    self.writer.flush()


class History:
  """Model-only snapshots for back-tracking, in workdir/history, with a bounded count.

  A snapshot is taken at step 0, every `every` steps, at every curriculum stage change and at
  the end. When more than `keep` cadence snapshots exist, the cadence doubles and snapshots off
  the new cadence are deleted (stage-change and final snapshots stay), so the count stays below
  keep + stages + 2 however long the run. history.json lists them; it is written atomically
  after each snapshot, so a snapshot missing from it was never complete.
  """

  def __init__(self, workdir: str, every: int, keep: int):
    self.dir = os.path.join(workdir, HISTORY_DIR)
    self.manifest = os.path.join(self.dir, HISTORY_FILE)
    state = artifacts.read_json(self.manifest) if os.path.exists(self.manifest) else {}
    self.every = int(state.get("every", every))
    self.keep = int(keep)
    self.entries = list(state.get("entries", []))

  @staticmethod
  def load(workdir: str) -> list:
    """The snapshot entries of `workdir` ({"step", "path", "stage_change"}), by step."""
    path = os.path.join(workdir, HISTORY_DIR, HISTORY_FILE)
    if not os.path.exists(path):
      return []
    return sorted(artifacts.read_json(path)["entries"], key=lambda e: e["step"])

  def wants(self, step: int, boundaries, final: int) -> bool:
    return bool(self.every) and step % self.every == 0 or step in boundaries or step == final

  def save(self, model, step: int, stage_change: bool) -> None:
    os.makedirs(self.dir, exist_ok=True)
    name = f"snapshot-{step}"
    write_weights(model, step, os.path.join(self.dir, name))
    self.entries = [e for e in self.entries if e["step"] != step]
    self.entries.append(dict(step=step, path=name, stage_change=bool(stage_change)))
    self.entries.sort(key=lambda e: e["step"])
    cadence = [e for e in self.entries if not e["stage_change"] and not e.get("final")]
    while self.every and len(cadence) > self.keep:
      self.every *= 2
      drop = [e for e in cadence if e["step"] % self.every]
      self.entries = [e for e in self.entries if e not in drop]
      cadence = [e for e in cadence if e not in drop]
      for e in drop:
        for f in tf.io.gfile.glob(os.path.join(self.dir, e["path"]) + ".*"):
          tf.io.gfile.remove(f)
    artifacts.write_json(self.manifest, dict(every=self.every, entries=self.entries))

  def mark_final(self, step: int) -> None:
    for e in self.entries:
      if e["step"] == step:
        e["final"] = True
    artifacts.write_json(self.manifest, dict(every=self.every, entries=self.entries))


class _Historian(keras.callbacks.Callback):
  """Takes History snapshots during fit()."""

  def __init__(self, history: History, curriculum, total: int, guard: _Guard):
    super().__init__()
    self.history, self.total, self.guard = history, total, guard
    self.boundaries = set(int(b) for b in curriculum.boundaries)

  def _maybe(self):
    step = int(self.model.optimizer.iterations.numpy())
    if self.guard.bad_step is None and self.history.wants(step, self.boundaries, self.total):
      if not any(e["step"] == step for e in self.history.entries):
        self.history.save(self.model, step, stage_change=step in self.boundaries)
      if step == self.total:
        self.history.mark_final(step)

  def on_train_begin(self, logs=None):
    if int(self.model.optimizer.iterations.numpy()) == 0:
      self._maybe()

  def on_train_batch_end(self, batch, logs=None):
    self._maybe()


class _RefreshTargets(keras.callbacks.Callback):
  """Re-estimates the speed penalty's centre-of-mass targets every `every` steps (and at step 0).

  Runs before the checkpointer at an epoch end, so a checkpoint holds the targets in force.
  """

  def __init__(self, run: Run, generator, every: int, guard: _Guard):
    super().__init__()
    self.run, self.generator, self.every, self.guard = run, generator, every, guard

  def _refresh(self, step):
    speed_targets.set_centre_targets(self.run.model, self.generator, self.run.cfg,
                                     seed=(self.run.cfg.seed, step))

  def on_train_begin(self, logs=None):
    if int(self.model.optimizer.iterations.numpy()) == 0:
      self._refresh(0)

  def on_train_batch_end(self, batch, logs=None):
    step = int(self.model.optimizer.iterations.numpy())
    if step % self.every == 0 and self.guard.bad_step is None:
      self._refresh(step)


def train(cfg: config_lib.Config, workdir: str, source: datasets.Source, verbose=None,
          extra_callbacks=(), init_fn=None, strategy=None) -> Run:
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


def _train(cfg, workdir, source, verbose, extra_callbacks, init_fn, strategy, scratch) -> Run:
  out = scratch or workdir  # where this process writes
  speed_noise = speed_noise_frames(cfg)
  distributed = not distribute.is_default(strategy) and strategy.num_replicas_in_sync > 1
  if distributed:
    distribute.check_divisible(strategy, cfg.batch_size, speed_noise)
  distribute.barrier(strategy)  # multi-worker: the chief has prepared the workdir
  run = Run(cfg, workdir, source.frame_shape, strategy, save_dir=out)
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
  guard = _Guard()
  callbacks = [guard]
  if cfg.speed_refresh_every and speed_penalty_enabled(cfg):
    callbacks.append(_RefreshTargets(run, generator, cfg.speed_refresh_every, guard))
  scalars = _Scalars(os.path.join(out, TENSORBOARD_DIR, "train"), cfg.log_every, curriculum,
                     lr_schedule(cfg), guard, cfg, null_warning_steps(cfg))
  callbacks += [_Historian(History(out, cfg.history_every, cfg.keep_history), curriculum,
                           total, guard),
                _Checkpointer(run, guard),
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
    distribute.check_divisible(strategy, cfg.batch_size, speed_noise_frames(cfg))
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
