"""The learning-rate schedules (step decay, warm-up cosine) and the optimizer of a run."""

import math

import keras
import numpy as np
import tensorflow as tf

from haviv_tf.base import config as config_lib


@keras.saving.register_keras_serializable(package="haviv_tf")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
  """Linear warm-up from 0 to `peak` over `warmup` steps, then a half cosine down to
  `peak * final_fraction` at step `total` (and flat after it).

  Without warm-up this is keras.optimizers.schedules.CosineDecay(peak, total, final_fraction)
  (tests/train_test.py checks it). With warm-up Keras' schedule differs by one step: its
  learning rate is 0 at update 0 and reaches `peak` at update `warmup`, this one is
  peak / warmup at update 0 and `peak` at update warmup - 1 (no update at rate 0). Runs trained
  with it must resume on the same schedule, so it stays.
  """

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


# The Config fields that fix a run's learning-rate schedule (lr_schedule).
SCHEDULE_FIELDS = ("learning_rate", "lr_schedule", "lr_decay_step", "lr_decay_factor",
                   "warmup_steps", "train_steps")


def summed_rate(cfg: config_lib.Config, updates: int = None) -> float:
  """The learning rate summed over the first `updates` optimizer updates (default: all
  train_steps): Adam moves a weight by about the rate per update, so this bounds how far
  training can move it."""
  updates = cfg.train_steps if updates is None else int(updates)
  rates = lr_schedule(cfg)(np.arange(updates, dtype=np.int64))
  return float(np.sum(np.asarray(rates, np.float64)))


def make_optimizer(cfg: config_lib.Config) -> keras.optimizers.Optimizer:
  """Adam (TF1's epsilon 1e-8, as the authors) on lr_schedule(cfg)."""
  return keras.optimizers.Adam(learning_rate=lr_schedule(cfg), epsilon=1e-8)
