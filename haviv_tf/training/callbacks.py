"""The Keras callbacks of a training run: checkpoints each epoch, TensorBoard scalars and the
trivial-solution warning, history snapshots, a non-finite-loss guard, refreshed speed targets."""

import math
import os

from absl import logging
import keras
import tensorflow as tf

from haviv_tf.base import config as config_lib
from haviv_tf.base import summaries
from haviv_tf.probes import speed_targets
from haviv_tf.task import losses
from haviv_tf.training import checkpoints


def null_warning_steps(cfg: config_lib.Config) -> int:
  """How long a run must sit at the trivial solution before it is warned about."""
  return max(5 * cfg.log_every, cfg.train_steps // 50)


class Guard(keras.callbacks.Callback):
  """Stops at the first non-finite loss, so that no checkpoint is written after it."""

  def __init__(self):
    super().__init__()
    self.bad_step = None

  def on_train_batch_end(self, batch, logs=None):
    loss = (logs or {}).get("loss")
    if loss is not None and not math.isfinite(float(loss)):
      self.bad_step = int(self.model.optimizer.iterations.numpy())
      self.model.stop_training = True


class Checkpointer(keras.callbacks.Callback):

  def __init__(self, run: checkpoints.Run, guard: Guard):
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


class Scalars(keras.callbacks.Callback):
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


class Historian(keras.callbacks.Callback):
  """Takes checkpoints.History snapshots during fit()."""

  def __init__(self, history: checkpoints.History, curriculum, total: int, guard: Guard):
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


class RefreshTargets(keras.callbacks.Callback):
  """Re-estimates the speed penalty's centre-of-mass targets every `every` steps (and at step 0).

  Runs before the checkpointer at an epoch end, so a checkpoint holds the targets in force.
  """

  def __init__(self, run: checkpoints.Run, generator, every: int, guard: Guard):
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
