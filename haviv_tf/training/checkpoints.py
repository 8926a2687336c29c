"""A run's weights on disk: checkpoints (exact resume), the training snapshots back-tracking
reads (`History`), and the `Run` that holds model, optimizer and checkpoint together."""

import contextlib
import os
import re

from absl import logging
import keras
import tensorflow as tf
from tensorflow.python.util import deprecation  # pylint: disable=g-direct-tensorflow-import

from haviv_tf.base import artifacts
from haviv_tf.base import config as config_lib
from haviv_tf.models import network
from haviv_tf.task import losses
from haviv_tf.training import distribute
from haviv_tf.training import schedules


CHECKPOINT_DIR = "checkpoints"


HISTORY_DIR = "history"


HISTORY_FILE = "history.json"


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

  `read` raises artifacts.RunError for a checkpoint that cannot be read. Each one skipped is logged as a
  warning with the reason. Returns (path, read's result), or (None, None) if there is no
  checkpoint.

  Raises:
    artifacts.RunError: checkpoints exist but none can be read (each one named, with its reason).
  """
  paths = checkpoint_paths(workdir)
  skipped = []
  for path in paths:
    try:
      result = read(path)
    except artifacts.RunError as e:
      logging.warning("skipped checkpoint %s: %s", path, e)
      skipped.append(f"{os.path.basename(path)} ({e})")
      continue
    if skipped:
      logging.warning("using checkpoint %s, the newest that reads (skipped %d newer)", path,
                      len(skipped))
    return path, result
  if skipped:
    raise artifacts.RunError(f"no checkpoint in {os.path.join(workdir, CHECKPOINT_DIR)} can be read: "
                   f"{'; '.join(skipped)}")
  return None, None


def verify_checkpoint(path: str) -> None:
  """Reads every tensor of the checkpoint at `path` (checksums included); artifacts.RunError if any fails."""
  try:
    reader = tf.train.load_checkpoint(path)
    for key in reader.get_variable_to_shape_map():
      reader.get_tensor(key)
  except (tf.errors.OpError, ValueError, IndexError) as e:
    raise artifacts.RunError(f"checkpoint {path} does not read back ({_first_line(e)})") from None


def load_weights(model, workdir: str) -> int:
  """Reads the model weights of `workdir`'s newest readable checkpoint into `model` (read-only).

  Returns the checkpoint's step. Raises artifacts.RunError if there is none or none can be read.
  """
  path, step = _read_newest(workdir, lambda p: read_snapshot(model, p))
  if path is None:
    raise artifacts.RunError(f"{workdir} has no trained model (no checkpoint)")
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
    raise artifacts.RunError(f"checkpoint {path} is corrupt or from another model "
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
    artifacts.RunError: `workdir` already has a checkpoint, or `prefix` is not weights of this model.
  """
  if checkpoint_paths(workdir):
    raise artifacts.RunError(f"{workdir} already has a checkpoint: refusing to replace it")
  run = Run(cfg, workdir, frame_shape)
  step = read_snapshot(run.model, prefix)
  if step < 0:
    raise artifacts.RunError(f"{prefix} records no step")
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
      self.optimizer = schedules.make_optimizer(cfg)
      # jit_compile explicitly: Keras resolves "auto" to False on a CPU. Under a tf.distribute
      # strategy the step stays uncompiled: XLA cannot compile the replicas' all-reduces on CPU.
      self.model.compile(optimizer=self.optimizer, loss=losses.MaskedNullLabel.from_settings(cfg),
                         speed_weight=cfg.speed_weight,
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
      artifacts.RunError: checkpoints exist but none can be read.
    """
    def read(path):
      try:
        self.checkpoint.restore(path).assert_existing_objects_matched()
      except (tf.errors.OpError, ValueError, AssertionError, IndexError) as e:
        raise artifacts.RunError(f"corrupt or from another model: {_first_line(e)}") from None
    path, _ = _read_newest(self.workdir, read)
    return 0 if path is None else self.step

  def save(self) -> str:
    """Writes checkpoint ckpt-<step>, reads it back, then records it and prunes old ones.

    Raises:
      artifacts.RunError: the new checkpoint does not read back (the older ones are all kept).
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


def speed_penalty_enabled(cfg: config_lib.Config) -> bool:
  return cfg.speed_targets != "none"


def speed_noise_frames(cfg: config_lib.Config) -> int:
  """K, the speed penalty's noise frames per step (one per target row); 0 without a penalty."""
  return config_lib.NUM_CLASSES * cfg.speed_copies if speed_penalty_enabled(cfg) else 0
