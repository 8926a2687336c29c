"""Tests for haviv_tf.task.curricula: the paper's VoCu / DeCu / NaCu schedules and their scaling."""

import dataclasses

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from haviv_tf.base import config
from haviv_tf.task import curricula


def _curriculum(protocol, dataset="mnist", preset="paper", **overrides):
  cfg = dataclasses.replace(config.preset(preset, dataset), protocol=protocol, **overrides)
  return curricula.for_config(cfg)


class PaperScheduleTest(tf.test.TestCase, parameterized.TestCase):

  def test_mnist_vocu_adds_one_class_at_the_paper_boundaries(self):
    cur = _curriculum("vocu")
    self.assertEqual(cur.boundaries,
                     (8_000, 16_000, 26_000, 36_000, 48_000, 62_000, 78_000, 98_000))
    self.assertEqual(cur.num_classes, tuple(range(2, 11)))
    self.assertEqual(cur.t_max, (20,) * 9)

  def test_mnist_decu_raises_t_max_by_two_every_10k_steps_after_20k(self):
    cur = _curriculum("decu")
    self.assertEqual(cur.boundaries, (20_000, 30_000, 40_000, 50_000, 60_000, 70_000, 80_000))
    self.assertEqual(cur.t_max, (6, 8, 10, 12, 14, 16, 18, 20))
    self.assertEqual(cur.num_classes, (10,) * 8)

  def test_cifar10_decu_starts_at_100k_then_every_20k(self):
    cur = _curriculum("decu", "cifar10")
    self.assertEqual(cur.boundaries,
                     (100_000, 120_000, 140_000, 160_000, 180_000, 200_000, 220_000))
    self.assertEqual(cur.t_max, (6, 8, 10, 12, 14, 16, 18, 20))
    self.assertEqual(cur.num_classes, (10,) * 8)

  def test_cifar10_vocu_adds_a_class_every_30k(self):
    cur = _curriculum("vocu", "cifar10")
    self.assertEqual(cur.boundaries,
                     (30_000, 60_000, 90_000, 120_000, 150_000, 180_000, 210_000, 240_000))
    self.assertEqual(cur.num_classes, tuple(range(2, 11)))
    self.assertEqual(cur.t_max, (20,) * 9)

  @parameterized.parameters("mnist", "cifar10")
  def test_nacu_is_one_stage_with_everything(self, dataset):
    cur = _curriculum("nacu", dataset)
    self.assertEqual(cur.boundaries, ())
    self.assertEqual(cur.num_classes, (10,))
    self.assertEqual(cur.t_max, (20,))
    for step in (0, 1, 139_999, 10**9):
      self.assertEqual(cur.at(step), (10, 20))
      self.assertEqual(cur.stage(step), 0)

  def test_mnist_sample_uses_the_mnist_schedule(self):
    self.assertEqual(_curriculum("vocu", "mnist_sample"), _curriculum("vocu", "mnist"))

  def test_stage_i_starts_at_boundary_i_minus_1(self):
    cur = _curriculum("vocu")
    self.assertEqual(cur.at(0), (2, 20))
    self.assertEqual(cur.at(7_999), (2, 20))
    self.assertEqual(cur.at(8_000), (3, 20))
    self.assertEqual(cur.at(97_999), (9, 20))
    self.assertEqual(cur.at(98_000), (10, 20))
    self.assertEqual(cur.at(139_999), (10, 20))

  def test_short_seq_len_caps_decu_t_max_and_ends_at_seq_len(self):
    cur = _curriculum("decu", seq_len=11)
    self.assertEqual(cur.t_max, (6, 8, 10, 11, 11, 11, 11, 11))
    cur = _curriculum("decu", seq_len=30)
    self.assertEqual(cur.t_max, (6, 8, 10, 12, 14, 16, 18, 30))

  def test_vocu_and_nacu_train_at_seq_len(self):
    self.assertEqual(set(_curriculum("vocu", seq_len=12).t_max), {12})
    self.assertEqual(_curriculum("nacu", seq_len=12).t_max, (12,))


class ScalingTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.product(protocol=("vocu", "decu"), dataset=("mnist", "cifar10"),
                         train_steps=(3_000, 1_000, 700_000))
  def test_boundaries_scale_in_proportion_to_the_run(self, protocol, dataset, train_steps):
    paper = _curriculum(protocol, dataset)
    paper_steps = config.preset("paper", dataset).train_steps
    scaled = _curriculum(protocol, dataset, train_steps=train_steps)
    self.assertLen(scaled.boundaries, len(paper.boundaries))
    expected = np.asarray(paper.boundaries) * train_steps / paper_steps
    self.assertAllClose(scaled.boundaries, expected, atol=0.5)
    self.assertTrue(np.all(np.diff(scaled.boundaries) > 0))
    self.assertGreaterEqual(scaled.boundaries[0], 1)
    self.assertLess(scaled.boundaries[-1], train_steps)
    self.assertEqual(scaled.num_classes, paper.num_classes)
    self.assertEqual(scaled.t_max, paper.t_max)

  def test_quick_mnist_vocu_boundaries(self):
    cur = _curriculum("vocu", preset="quick")
    self.assertEqual(cur.boundaries, (171, 343, 557, 771, 1029, 1329, 1671, 2100))

  @parameterized.parameters(("vocu", 8), ("vocu", 3), ("decu", 5), ("decu", 1))
  def test_very_short_runs_keep_boundaries_strictly_increasing(self, protocol, train_steps):
    cur = _curriculum(protocol, train_steps=train_steps)
    self.assertTrue(np.all(np.diff(cur.boundaries) >= 1), cur.boundaries)
    self.assertGreaterEqual(cur.boundaries[0], 1)


class AtTfTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.product(protocol=("vocu", "decu", "nacu"), dataset=("mnist", "cifar10"),
                         preset=("paper", "quick"))
  def test_at_tf_agrees_with_at_on_and_around_every_boundary(self, protocol, dataset, preset):
    cur = _curriculum(protocol, dataset, preset)
    steps = sorted({s for b in cur.boundaries for s in (b - 1, b, b + 1)}
                   | {0, 1, 10**7, 2**40})
    stage, num_classes, t_max = tf.function(
        lambda s: tf.map_fn(cur.at_tf, s, fn_output_signature=(tf.int32,) * 3))(
            tf.constant(steps, tf.int64))
    self.assertAllEqual(stage, [cur.stage(s) for s in steps])
    self.assertAllEqual(num_classes, [cur.at(s)[0] for s in steps])
    self.assertAllEqual(t_max, [cur.at(s)[1] for s in steps])

  def test_at_tf_accepts_a_python_int_and_returns_int32(self):
    cur = _curriculum("decu")
    stage, num_classes, t_max = cur.at_tf(30_000)
    self.assertEqual(stage.dtype, tf.int32)
    self.assertEqual(num_classes.dtype, tf.int32)
    self.assertEqual(t_max.dtype, tf.int32)
    self.assertEqual((int(stage), int(num_classes), int(t_max)), (2, 10, 10))

  def test_at_tf_inside_tf_data(self):
    cur = _curriculum("vocu")
    ds = tf.data.Dataset.from_tensor_slices(tf.constant([0, 7_999, 8_000, 98_000], tf.int64))
    got = [int(n) for n in ds.map(lambda s: cur.at_tf(s)[1])]
    self.assertEqual(got, [2, 2, 3, 10])


if __name__ == "__main__":
  tf.test.main()
