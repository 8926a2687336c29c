"""Tests for haviv_tf.train's learning-rate schedules."""

import math

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from haviv_tf import config
from haviv_tf import train


def _rates(cfg, steps):
  schedule = train.lr_schedule(cfg)
  return np.array([float(schedule(s)) for s in steps])


class LrScheduleTest(tf.test.TestCase, parameterized.TestCase):

  def test_step_schedule_drops_after_the_decay_step(self):
    cfg = config.resolve("quick", "mnist", {"learning_rate": 1e-3, "lr_decay_step": 2000,
                                            "lr_decay_factor": 0.1})
    rates = _rates(cfg, [0, 2000, 2001, 2999])
    self.assertAllClose(rates, [1e-3, 1e-3, 1e-4, 1e-4])

  def test_cosine_warms_up_linearly_then_follows_the_half_cosine(self):
    cfg = config.resolve("quick", "mnist", {"lr_schedule": "cosine", "learning_rate": 2e-3,
                                            "warmup_steps": 100, "lr_decay_factor": 0.01})
    steps = [0, 49, 99, 100, 1550, 2999, 3000, 4000]
    lo = 2e-3 * 0.01

    def cosine(s):
      frac = min(1.0, (s - 100) / 2900)
      return lo + (2e-3 - lo) * 0.5 * (1 + math.cos(math.pi * frac))

    want = [2e-3 * 1 / 100, 2e-3 * 50 / 100, 2e-3, 2e-3] + [cosine(s) for s in steps[4:]]
    self.assertAllClose(_rates(cfg, steps), want, rtol=1e-5)
    self.assertAllClose(_rates(cfg, [3000, 4000]), [lo, lo], rtol=1e-5)

  def test_cosine_without_warmup_starts_at_the_peak(self):
    cfg = config.resolve("quick", "mnist", {"lr_schedule": "cosine", "learning_rate": 1e-3,
                                            "lr_decay_factor": 0.5})
    rates = _rates(cfg, [0, 1500, 3000])
    self.assertAllClose(rates, [1e-3, 0.75e-3, 0.5e-3], rtol=1e-4)

  def test_cosine_is_monotone_after_warmup(self):
    cfg = config.resolve("quick", "mnist", {"lr_schedule": "cosine", "warmup_steps": 10})
    rates = _rates(cfg, range(10, 3001, 50))
    self.assertTrue(np.all(np.diff(rates) < 0))

  @parameterized.parameters(
      ({"lr_schedule": "linear"}, r"unknown lr_schedule 'linear'; valid: step, cosine"),
      ({"lr_schedule": "cosine", "warmup_steps": 3000}, r"`warmup_steps` \(3000\) must be below"),
      ({"warmup_steps": -1}, r"`warmup_steps` must be a non-negative integer"))
  def test_bad_schedules_are_refused(self, overrides, message):
    with self.assertRaisesRegex(ValueError, message):
      config.resolve("quick", "mnist", overrides)


if __name__ == "__main__":
  tf.test.main()
