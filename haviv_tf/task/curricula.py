"""VoCu / DeCu / NaCu / ReCu as piecewise-constant schedules of (classes shown, maximum delay,
null-step loss weight) over steps."""

import dataclasses

import numpy as np
import tensorflow as tf

from haviv_tf.base import config as config_lib

# The authors' schedules at the paper's run lengths: (run length, stage boundaries).
# VoCu adds one class per stage (2 -> 10); DeCu raises T_max by 2 per stage (6 -> 20).
_PAPER_SCHEDULES = {
    ("mnist", "vocu"): (140_000, (8_000, 16_000, 26_000, 36_000, 48_000, 62_000, 78_000, 98_000)),
    ("mnist", "decu"): (140_000, (20_000, 30_000, 40_000, 50_000, 60_000, 70_000, 80_000)),
    ("cifar10", "vocu"): (300_000, tuple(30_000 * k for k in range(1, 9))),
    ("cifar10", "decu"): (300_000, tuple(100_000 + 20_000 * k for k in range(7))),
    # ReCu ramps the null steps' loss weight alpha 0, 0.25, 0.5, 0.75, 1 (the report step weighs
    # report_weight - 1 + alpha); the same steps for both data sets (TriggerMNISTCloud.py
    # L148-154, TriggerCIFARCloud.py L154-160).
    ("mnist", "recu"): (140_000, (20_000, 30_000, 40_000, 60_000)),
    ("cifar10", "recu"): (300_000, (20_000, 30_000, 40_000, 60_000)),
}
_RECU_NULL_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclasses.dataclass(frozen=True)
class Curriculum:
  """Stage i runs from boundaries[i-1] (0 for i = 0) up to, not including, boundaries[i].

  Attributes:
    boundaries: [stages - 1] increasing step numbers where a new stage starts.
    num_classes: [stages] image classes shown (classes 0 .. n-1); the others are masked.
    t_max: [stages] maximum trial length used by the loss; t_a <= t_max - 1.
    null_weight: [stages] loss weight alpha of the null steps (the report step weighs
      report_weight - 1 + alpha); () means 1 throughout.
  """
  boundaries: tuple
  num_classes: tuple
  t_max: tuple
  null_weight: tuple = ()

  def null_weight_at(self, step: int) -> float:
    return float(self.null_weight[self.stage(step)]) if self.null_weight else 1.0

  def null_weight_tf(self, step: tf.Tensor) -> tf.Tensor:
    """The null-step weight at an int64 step tensor (float32)."""
    if not self.null_weight:
      return tf.constant(1.0)
    s, _, _ = self.at_tf(step)
    return tf.gather(tf.constant(self.null_weight, tf.float32), s)

  def stage(self, step: int) -> int:
    return int(np.searchsorted(np.asarray(self.boundaries, np.int64), step, side="right"))

  def at(self, step: int) -> tuple[int, int]:
    """(num_classes, t_max) in force at `step` (Python ints)."""
    s = self.stage(step)
    return self.num_classes[s], self.t_max[s]

  def at_tf(self, step: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(stage, num_classes, t_max) at an int64 step tensor, for use inside tf.data."""
    bounds = tf.constant(list(self.boundaries) or [np.iinfo(np.int64).max], tf.int64)
    s = tf.searchsorted(bounds, tf.reshape(tf.cast(step, tf.int64), [1]), side="right")[0]
    if not self.boundaries:
      s = tf.zeros_like(s)
    s = tf.cast(s, tf.int32)
    return (s, tf.gather(tf.constant(self.num_classes, tf.int32), s),
            tf.gather(tf.constant(self.t_max, tf.int32), s))


def _scaled(boundaries, paper_steps, train_steps):
  """Boundaries moved in proportion to the run length, kept strictly increasing and >= 1."""
  out, last = [], 0
  for b in boundaries:
    v = max(last + 1, int(round(b * train_steps / paper_steps)))
    out.append(v)
    last = v
  return tuple(out)


def for_config(cfg: config_lib.Config) -> Curriculum:
  """The curriculum of `cfg.protocol`, scaled to `cfg.train_steps`.

  Fine-tuning runs (cfg.finetune set) train on the final task: all classes, T_max = seq_len.
  """
  family = "cifar10" if cfg.dataset == "cifar10" else "mnist"
  n, t = config_lib.NUM_CLASSES, cfg.seq_len
  if cfg.protocol == "nacu" or cfg.finetune:
    return Curriculum(boundaries=(), num_classes=(n,), t_max=(t,))
  paper_steps, bounds = _PAPER_SCHEDULES[(family, cfg.protocol)]
  bounds = _scaled(bounds, paper_steps, cfg.train_steps)
  if cfg.protocol == "recu":
    return Curriculum(boundaries=bounds, num_classes=(n,) * (len(bounds) + 1),
                      t_max=(t,) * (len(bounds) + 1), null_weight=_RECU_NULL_WEIGHTS)
  if cfg.protocol == "vocu":
    return Curriculum(boundaries=bounds, num_classes=tuple(range(2, n + 1)),
                      t_max=(t,) * (len(bounds) + 1))
  t_max = tuple(min(6 + 2 * k, t) for k in range(len(bounds) + 1))
  t_max = t_max[:-1] + (t,)  # the last stage always trains at the full length
  return Curriculum(boundaries=bounds, num_classes=(n,) * (len(bounds) + 1), t_max=t_max)
