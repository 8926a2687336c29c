"""Tests for haviv_tf.training.train: learning-rate schedules, TensorBoard logs on resume, the
trivial-solution warning."""

import math
import os
import shutil
import tempfile

from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from haviv_tf.base import config
from haviv_tf.task import datasets
from haviv_tf.task import losses
from haviv_tf.training import callbacks
from haviv_tf.training import checkpoints
from haviv_tf.training import schedules
from haviv_tf.training import train


def _rates(cfg, steps):
  schedule = schedules.lr_schedule(cfg)
  return np.array([float(schedule(s)) for s in steps])


class LrScheduleTest(tf.test.TestCase, parameterized.TestCase):

  def test_step_schedule_drops_after_the_decay_step(self):
    cfg = config.resolve("quick", "mnist", {"learning_rate": 1e-3, "lr_decay_step": 2000,
                                            "lr_decay_factor": 0.1})
    rates = _rates(cfg, [0, 2000, 2001, 2999])
    self.assertAllClose(rates, [1e-3, 1e-3, 1e-4, 1e-4])

  def test_summed_rate_adds_the_rate_of_each_update(self):
    cfg = config.resolve("quick", "mnist", {"learning_rate": 1e-3, "lr_decay_step": 2000,
                                            "lr_decay_factor": 0.1, "train_steps": 3000})
    # Updates 0..2000 at 1e-3 (2001 of them), 2001..2999 at 1e-4 (999).
    self.assertAllClose(schedules.summed_rate(cfg), 2001 * 1e-3 + 999 * 1e-4, rtol=1e-6)
    self.assertAllClose(schedules.summed_rate(cfg, 10), 10 * 1e-3, rtol=1e-6)
    self.assertAllClose(schedules.summed_rate(cfg, 2500), 2001 * 1e-3 + 499 * 1e-4, rtol=1e-6)
    self.assertEqual(schedules.summed_rate(cfg, 0), 0.0)

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


def _tiny_source():
  rng = np.random.default_rng(0)
  def split(n):
    return datasets.Split(rng.integers(0, 255, (n, 4, 4, 1)).astype(np.uint8),
                          (np.arange(n) % 10).astype(np.int32))
  return datasets.Source("mnist_sample", split(40), split(20), np.float32([0.13]),
                         np.float32([0.3]), "test")


def _logged(workdir, tag):
  """[(step, value)] of `tag` over every event file of the run's training logs, in file order."""
  out = []
  for path in sorted(tf.io.gfile.glob(os.path.join(workdir, "tensorboard", "train", "events.*"))):
    try:
      for e in tf.compat.v1.train.summary_iterator(path):
        for v in e.summary.value:
          if v.tag == tag:
            out.append((e.step, tf.make_ndarray(v.tensor)))
    except tf.errors.DataLossError:
      pass
  return out


def _tempdir(test):
  path = tempfile.mkdtemp()
  test.addCleanup(shutil.rmtree, path, ignore_errors=True)
  return path


class _Crash(Exception):
  pass


class _CrashAt(keras.callbacks.Callback):
  def __init__(self, step):
    super().__init__()
    self.step = step

  def on_train_batch_end(self, batch, logs=None):
    if int(self.model.optimizer.iterations.numpy()) == self.step:
      raise _Crash()


# No XLA in the two classes below: they test what is logged, and compiling a tiny network's
# steps costs more than running them (tests/jit_test.py compares XLA with plain steps).
class TensorBoardResumeTest(tf.test.TestCase):

  def test_a_resumed_run_does_not_log_the_killed_runs_steps_again(self):
    cfg = config.resolve("quick", "mnist_sample", dict(
        units=6, batch_size=8, train_steps=30, checkpoint_every=10, log_every=2,
        protocol="nacu", history_every=0, jit_compile=False))
    source = _tiny_source()
    straight = _tempdir(self)
    train.prepare_workdir(cfg, straight, source=source)
    train.train(cfg, straight, source, verbose=0)

    killed = _tempdir(self)
    train.prepare_workdir(cfg, killed, source=source)
    with self.assertRaises(_Crash):  # dies at step 25: checkpoint 20, scalars up to 24
      train.train(cfg, killed, source, verbose=0, extra_callbacks=[_CrashAt(25)])
    self.assertEqual([s for s, _ in _logged(killed, "train/loss")], list(range(2, 25, 2)))
    # what a kill can leave: a torn last record
    last = sorted(tf.io.gfile.glob(os.path.join(killed, "tensorboard", "train", "events.*")))[-1]
    with open(last, "ab") as f:
      f.write(b"\x10\x00\x00\x00\x00")
    self.assertEqual(callbacks.last_logged_step(os.path.join(killed, "tensorboard", "train")), 24)
    train.train(cfg, killed, source, verbose=0)  # resumes from 20

    for tag in ("train/loss", "train/report_acc", "learning_rate", "curriculum/stage"):
      got, want = _logged(killed, tag), _logged(straight, tag)
      self.assertEqual([s for s, _ in got], list(range(2, 31, 2)), tag)  # each step once, in order
      self.assertAllClose([v for _, v in got], [v for _, v in want], rtol=1e-6, atol=1e-7)


class NullWarningTest(tf.test.TestCase):

  def test_a_run_stuck_at_the_trivial_solution_is_warned_once(self):
    cfg = config.resolve("paper", "mnist_sample", dict(
        units=6, batch_size=16, train_steps=40, checkpoint_every=40, log_every=2,
        protocol="nacu", history_every=0, learning_rate=1e-7, jit_compile=False))
    source = _tiny_source()
    workdir = _tempdir(self)
    train.prepare_workdir(cfg, workdir, source=source)

    def trivial(run):
      # the trivial solution: null logit sigmoid(12) ~ 1, class logits sigmoid(-12) ~ 0
      head = run.model.head
      head.kernel.assign(tf.zeros_like(head.kernel))
      head.bias.assign([12.0] + [-12.0] * 10)

    self.assertEqual(callbacks.null_warning_steps(cfg), 10)
    with self.assertLogs(level="WARNING") as logs:
      train.train(cfg, workdir, source, verbose=0, init_fn=trivial)
    warnings = [r.getMessage() for r in logs.records if "outputs null everywhere" in r.getMessage()]
    self.assertLen(warnings, 1)
    self.assertIn("trivial-solution loss", warnings[0])
    self.assertIn("step 10:", warnings[0])   # at the first write 10 steps into the stretch
    text = _logged(workdir, callbacks.NULL_WARNING_TAG)
    self.assertEqual([s for s, _ in text], [10])
    self.assertIn(b"outputs null everywhere", text[0][1].item())
    trivial_logged = dict(_logged(workdir, "train/trivial_loss"))
    self.assertAllClose(trivial_logged[2], losses.trivial_loss(10, 20, 20, loss_norm="authors",
                                                               log_eps=1e-4)[0])

  def test_a_learning_run_is_not_warned(self):
    cfg = config.resolve("quick", "mnist_sample", dict(
        units=6, batch_size=16, train_steps=20, checkpoint_every=20, log_every=2,
        protocol="nacu", history_every=0, jit_compile=False))
    source = _tiny_source()
    workdir = _tempdir(self)
    train.prepare_workdir(cfg, workdir, source=source)

    def confident(run):  # a network that reports class 1 at every step: far from trivial
      head = run.model.head
      head.kernel.assign(tf.zeros_like(head.kernel))
      head.bias.assign([0.0, 20.0] + [0.0] * 9)

    train.train(cfg, workdir, source, verbose=0, init_fn=confident)
    self.assertEqual(_logged(workdir, callbacks.NULL_WARNING_TAG), [])


class CnnSnapshotTest(tf.test.TestCase):

  def test_history_snapshot_of_a_cnn_model_holds_every_weight(self):
    from haviv_tf.models import network  # pylint: disable=g-import-not-at-top
    keras.utils.set_random_seed(0)
    model = network.DelayedClassifier("gru", units=4, frame_shape=(8, 8, 3), encoder="cnn")
    with tempfile.TemporaryDirectory() as workdir:
      history = checkpoints.History(workdir, every=10, keep=4)
      history.save(model, 10, stage_change=False)
      keras.utils.set_random_seed(1)
      other = network.DelayedClassifier("gru", units=4, frame_shape=(8, 8, 3), encoder="cnn")
      self.assertEqual(checkpoints.read_snapshot(
          other, os.path.join(workdir, checkpoints.HISTORY_DIR, "snapshot-10")), 10)
      for a, b in zip(model.trainable_variables, other.trainable_variables):
        self.assertAllEqual(a, b, msg=a.path)
      # A snapshot without the convolutions (as written before they were tracked) is refused
      # (its model's convolution weights are bound to nothing).
      old_encoder = tf.train.Checkpoint(dense1=model.encoder.dense1, dense2=model.encoder.dense2)
      partial = tf.train.Checkpoint(model=tf.train.Checkpoint(
          cell=model.cell, head=model.head, encoder=old_encoder), step=tf.Variable(3, tf.int64))
      path = partial.write(os.path.join(workdir, "partial"))
      with self.assertRaisesRegex(train.RunError, "corrupt or from another model.*conv"):
        checkpoints.read_snapshot(other, path)


def test_warmup_cosine_is_keras_cosine_decay_without_warmup_and_one_step_ahead_with_it():
  steps = np.arange(0, 1200, 7)
  ours = schedules.WarmupCosine(1e-3, 1000, 0.1)
  keras_cos = keras.optimizers.schedules.CosineDecay(1e-3, 1000, alpha=0.1)
  np.testing.assert_allclose([float(ours(s)) for s in steps],
                             [float(keras_cos(s)) for s in steps], rtol=1e-6)
  ours = schedules.WarmupCosine(1e-3, 1000, 0.1, warmup=100)
  keras_warm = keras.optimizers.schedules.CosineDecay(0.0, 900, alpha=0.1, warmup_target=1e-3,
                                                      warmup_steps=100)
  np.testing.assert_allclose([float(ours(s)) for s in range(100)],
                             [float(keras_warm(s + 1)) for s in range(100)], rtol=1e-6)
  assert float(keras_warm(0)) == 0.0 and float(ours(0)) > 0.0
  np.testing.assert_allclose([float(ours(s)) for s in steps[steps >= 100]],
                             [float(keras_warm(s)) for s in steps[steps >= 100]], rtol=1e-6)
