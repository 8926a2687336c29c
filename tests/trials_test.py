"""Tests for haviv_tf.task.trials: trial layout, timing, noise statistics, determinism, tf.data."""

import concurrent.futures
import functools
import os
import sys

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from haviv_tf.base import config as config_lib
from haviv_tf.task import curricula
from haviv_tf.task import datasets
from haviv_tf.task import trials

_PER_CLASS = 3


@functools.lru_cache(maxsize=None)
def _sample_source():
  return datasets.load("mnist_sample")


def _coded_split(frame_shape=(28, 28, 1), seed=0):
  """_PER_CLASS images per class, in shuffled order; every pixel of image j of class c is
  _code(c, j), so a stimulus frame tells which image it shows."""
  rng = np.random.default_rng(seed)
  labels = rng.permutation(np.repeat(np.arange(10), _PER_CLASS))
  within = np.zeros_like(labels)
  for c in range(10):
    within[labels == c] = np.arange(_PER_CLASS)
  images = np.broadcast_to(_code(labels, within)[:, None, None, None].astype(np.uint8),
                           (len(labels),) + frame_shape).copy()
  return datasets.Split(images, labels.astype(np.int32))


def _code(c, j):
  return 20 * np.asarray(c) + np.asarray(j) + 1


def _threads():
  return {int(t) for t in os.listdir("/proc/self/task")}


def _niceness(tid):
  """A thread's niceness, from /proc (field 19 of its stat line)."""
  try:
    with open(f"/proc/self/task/{tid}/stat") as f:
      return int(f.read().rsplit(")", 1)[1].split()[16])
  except (FileNotFoundError, ProcessLookupError):
    return None


def _mnist_generator(**kwargs):
  src = _sample_source()
  return trials.TrialGenerator(src.train, src.mean, src.std, **kwargs)


def _coded_generator(**kwargs):
  return trials.TrialGenerator(_coded_split(), [datasets.MNIST_MEAN], [datasets.MNIST_STD],
                               **kwargs)


def _np(batch):
  return {k: v.numpy() for k, v in batch.items()}


class SampleLayoutTest(tf.test.TestCase, parameterized.TestCase):

  def test_sample_returns_the_documented_shapes_and_dtypes(self):
    b = _mnist_generator().sample([1, 2], batch_size=4, length=20)
    expected = dict(inputs=([4, 20, 785], tf.float32), labels=([4, 20], tf.int32),
                    weights=([4, 20], tf.float32), class_mask=([4, 11], tf.bool),
                    classes=([4], tf.int32), t_s=([4], tf.int32), t_a=([4], tf.int32))
    self.assertEqual(set(b), set(expected))
    for k, (shape, dtype) in expected.items():
      self.assertEqual(b[k].shape.as_list(), shape, k)
      self.assertEqual(b[k].dtype, dtype, k)

  def test_generator_sizes_follow_the_frames(self):
    g = _mnist_generator()
    self.assertEqual((g.frame_shape, g.frame_size, g.input_size), ((28, 28, 1), 784, 785))
    g = trials.TrialGenerator(_coded_split((32, 32, 3)), [0.1, 0.2, 0.3], [1.0, 1.0, 1.0])
    self.assertEqual((g.frame_shape, g.frame_size, g.input_size), ((32, 32, 3), 3072, 3073))
    b = g.sample([0, 0], batch_size=2, length=6)
    self.assertEqual(b["inputs"].shape.as_list(), [2, 6, 3073])

  def test_stimulus_frame_is_an_image_of_the_class_and_trigger_marks_t_a(self):
    g = _coded_generator()
    split = _coded_split()
    b = _np(g.sample([3, 4], batch_size=600, length=20))
    rows = np.arange(600)
    frames, trigger = b["inputs"][..., :-1], b["inputs"][..., -1]
    stim = frames[rows, b["t_s"]]                                   # [batch, 784]
    self.assertAllEqual(stim, np.repeat(stim[:, :1], 784, axis=1))  # one coded value per image
    pixel = np.rint(stim[:, 0] * 255).astype(np.int64)
    self.assertAllEqual(stim, np.broadcast_to(pixel[:, None].astype(np.float32) / np.float32(255),
                                              stim.shape))
    self.assertAllEqual((pixel - 1) // 20, b["classes"])            # an image of its class
    j = (pixel - 1) % 20
    self.assertAllInSet(j, range(_PER_CLASS))
    self.assertLen(set(zip(b["classes"], j)), 10 * _PER_CLASS)      # every image gets drawn
    # The stimulus frame is exactly image / 255 (an image of the split, not a noisy copy).
    images = split.images.reshape(len(split.labels), -1)
    match = (images[None, :, :].astype(np.float32) / np.float32(255) == stim[:, None, :]).all(-1)
    self.assertTrue(match.any(-1).all())
    # The trigger channel is one-hot at t_a.
    self.assertAllEqual(trigger, np.arange(20)[None, :] == b["t_a"][:, None])
    self.assertEqual(trigger.dtype, np.float32)

  def test_non_stimulus_frames_are_noise(self):
    b = _np(_coded_generator().sample([3, 4], batch_size=16, length=10))
    frames = b["inputs"][..., :-1]
    not_stim = np.arange(10)[None, :] != b["t_s"][:, None]
    noise = frames[not_stim]                                        # [frames, 784]
    self.assertTrue((noise.std(axis=-1) > 0.2).all())               # not a constant image
    self.assertTrue((noise < 0).any(axis=-1).all())                 # Gaussian, not pixels

  @parameterized.parameters((20, None), (20, 12), (20, 5), (9, 9))
  def test_labels_are_null_except_class_plus_one_at_t_a(self, length, t_max):
    b = _np(_mnist_generator().sample([5, 6], batch_size=64, length=length, t_max=t_max))
    expected = np.where(np.arange(length)[None, :] == b["t_a"][:, None],
                        b["classes"][:, None] + 1, 0)
    self.assertAllEqual(b["labels"], expected)
    self.assertAllInSet(b["labels"][np.arange(64), b["t_a"]], range(1, 11))

  @parameterized.parameters((20, None, 20.0), (20, 12, 20.0), (16, 6, 7.5))
  def test_weights_are_report_weight_at_t_a_one_before_t_max_zero_after(self, length, t_max,
                                                                         report_weight):
    g = _mnist_generator(report_weight=report_weight)
    b = _np(g.sample([7, 8], batch_size=64, length=length, t_max=t_max))
    t_max = length if t_max is None else t_max
    steps = np.arange(length)[None, :]
    expected = np.where(steps == b["t_a"][:, None], report_weight, 1.0)
    expected = np.where(steps < t_max, expected, 0.0)
    self.assertAllEqual(b["weights"], expected)
    self.assertAllEqual(b["weights"].sum(1), np.full(64, t_max - 1 + report_weight))

  def test_given_classes_are_shown(self):
    classes = np.array([9, 0, 3, 3, 7], np.int32)
    b = _np(_coded_generator().sample([1, 1], batch_size=5, length=8, classes=classes))
    self.assertAllEqual(b["classes"], classes)
    self.assertAllEqual(b["labels"][np.arange(5), b["t_a"]], classes + 1)
    stim = b["inputs"][np.arange(5), b["t_s"], 0]
    self.assertAllEqual((np.rint(stim * 255).astype(int) - 1) // 20, classes)


class TimingTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(5, 6, 8, 13, 20)
  def test_training_times_cover_exactly_the_documented_ranges(self, t_max):
    g = _mnist_generator()
    t_s, t_a = (v.numpy() for v in g.stimulus_times([11, t_max], 4000, t_max))
    self.assertAllInRange(t_s, 0, t_max - 5)
    self.assertTrue((t_a >= t_s + 4).all())
    self.assertTrue((t_a <= t_max - 1).all())
    # Every allowed (t_s, t_a) pair occurs (there are at most 136 of them).
    pairs = {(s, a) for s in range(t_max - 4) for a in range(s + 4, t_max)}
    self.assertEqual(set(zip(t_s.tolist(), t_a.tolist())), pairs)

  @parameterized.parameters(5, 12, 20)
  def test_sample_times_match_stimulus_times_bounds(self, t_max):
    b = _np(_mnist_generator().sample([2, t_max], batch_size=256, length=20, t_max=t_max))
    self.assertAllInRange(b["t_s"], 0, t_max - 5)
    self.assertTrue((b["t_a"] >= b["t_s"] + 4).all())
    self.assertTrue((b["t_a"] <= t_max - 1).all())

  def test_min_delay_sets_the_shortest_delay(self):
    g = _mnist_generator(min_delay=2)
    t_s, t_a = (v.numpy() for v in g.stimulus_times([0, 1], 3000, 10))
    self.assertAllInRange(t_s, 0, 7)
    self.assertEqual((t_a - t_s).min(), 2)
    self.assertEqual(t_a.max(), 9)

  @parameterized.parameters((20, 4), (20, 5), (20, 10), (20, 16), (20, 19), (12, 7))
  def test_fixed_delay_places_t_s_uniformly_where_t_a_fits(self, t_max, delay):
    g = _mnist_generator()
    t_s, t_a = (v.numpy() for v in g.stimulus_times([5, delay], 3000, t_max, delay=delay))
    self.assertAllEqual(t_a - t_s, np.full(3000, delay))
    last = max(0, min(t_max - 4, t_max - delay) - 1)
    self.assertEqual(set(t_s.tolist()), set(range(last + 1)))
    self.assertTrue((t_a <= t_max - 1).all())

  @parameterized.parameters(20, 25, 50)
  def test_delay_beyond_t_max_puts_the_stimulus_first(self, delay):
    g = _mnist_generator()
    b = _np(g.sample([1, delay], batch_size=32, length=delay + 1, t_max=20, delay=delay))
    self.assertAllEqual(b["t_s"], np.zeros(32))
    self.assertAllEqual(b["t_a"], np.full(32, delay))
    self.assertAllEqual(b["inputs"][:, delay, -1], np.ones(32))
    # Steps from t_max on carry no loss weight, the report step included.
    self.assertAllEqual(b["weights"][:, 20:], np.zeros((32, delay - 19)))

  @parameterized.parameters(4, 7, 15)
  def test_fixed_delay_sample_reports_at_t_s_plus_delay(self, delay):
    b = _np(_mnist_generator().sample([0, 9], batch_size=64, length=20, delay=delay))
    self.assertAllEqual(b["t_a"] - b["t_s"], np.full(64, delay))
    self.assertAllEqual(b["labels"][np.arange(64), b["t_a"]], b["classes"] + 1)


class NoiseTest(tf.test.TestCase, parameterized.TestCase):

  def test_noise_frames_have_the_mnist_pixel_statistics(self):
    b = _np(_mnist_generator().sample([21, 22], batch_size=64, length=20))
    frames = b["inputs"][..., :-1]
    noise = frames[np.arange(20)[None, :] != b["t_s"][:, None]].astype(np.float64)
    n = noise.size                                                  # 64 * 19 * 784 ~ 950k
    mean_tol = 5 * datasets.MNIST_STD / np.sqrt(n)                  # ~0.0016
    std_tol = 5 * datasets.MNIST_STD / np.sqrt(2 * n)               # ~0.0011
    self.assertAllClose(noise.mean(), datasets.MNIST_MEAN, atol=mean_tol, rtol=0)
    self.assertAllClose(noise.std(), datasets.MNIST_STD, atol=std_tol, rtol=0)
    # Frames are independent in time and across pixels.
    z = (noise.reshape(-1, 784) - datasets.MNIST_MEAN) / datasets.MNIST_STD
    self.assertLess(abs(np.mean(z[1:] * z[:-1])), 5 / np.sqrt(z[1:].size))
    self.assertLess(abs(np.mean(z[:, 1:] * z[:, :-1])), 5 / np.sqrt(z[:, 1:].size))

  def test_noise_is_tiled_per_channel_last(self):
    mean, std = np.float32([0.2, 0.5, 0.8]), np.float32([0.05, 0.1, 0.2])
    g = trials.TrialGenerator(_coded_split((32, 32, 3)), mean, std)
    noise = g.noise([4, 4], 0, 400).numpy().reshape(400, 32, 32, 3).astype(np.float64)
    n = noise[..., 0].size
    for c in range(3):
      self.assertAllClose(noise[..., c].mean(), mean[c], atol=5 * std[c] / np.sqrt(n), rtol=0)
      self.assertAllClose(noise[..., c].std(), std[c], atol=5 * std[c] / np.sqrt(2 * n), rtol=0)

  @parameterized.parameters((1, 7), (20, 3), (70, 2))
  def test_noise_sequence_frame_t_equals_noise_at_t(self, length, batch):
    g = _mnist_generator()
    seed = tf.constant([12, 34], tf.int64)
    seq = g.noise_sequence(seed, length, batch).numpy()
    self.assertEqual(seq.shape, (batch, length, 784))
    for t in range(length):
      self.assertAllEqual(seq[:, t], g.noise(seed, t, batch).numpy())
    if length > 1:
      self.assertNotAllClose(seq[:, 0], seq[:, 1])

  def test_noise_depends_on_seed_and_time(self):
    g = _mnist_generator()
    self.assertAllEqual(g.noise([1, 2], 3, 2), g.noise([1, 2], 3, 2))
    self.assertNotAllClose(g.noise([1, 2], 3, 2), g.noise([1, 2], 4, 2))
    self.assertNotAllClose(g.noise([1, 2], 3, 2), g.noise([2, 2], 3, 2))


class DeterminismAndClassesTest(tf.test.TestCase, parameterized.TestCase):

  def test_same_seed_gives_the_identical_batch(self):
    g = _mnist_generator()
    a = _np(g.sample([8, 9], batch_size=16, length=12, t_max=10, num_classes=6))
    b = _np(_mnist_generator().sample([8, 9], batch_size=16, length=12, t_max=10,
                                      num_classes=6))
    for k in a:
      self.assertAllEqual(a[k], b[k], msg=k)

  @parameterized.parameters([8, 10], [9, 9], [0, 0])
  def test_different_seed_gives_a_different_batch(self, *seed):
    g = _mnist_generator()
    a = _np(g.sample([8, 9], batch_size=16, length=12))
    b = _np(g.sample(list(seed), batch_size=16, length=12))
    self.assertNotAllClose(a["inputs"], b["inputs"])
    self.assertFalse(np.array_equal(a["classes"], b["classes"]))
    self.assertFalse(np.array_equal(np.stack([a["t_s"], a["t_a"]]),
                                    np.stack([b["t_s"], b["t_a"]])))

  @parameterized.parameters(1, 2, 5, 9, 10)
  def test_num_classes_limits_the_classes_drawn_and_the_mask(self, n):
    b = _np(_coded_generator().sample([3, n], batch_size=500, length=8, num_classes=n))
    self.assertEqual(set(b["classes"].tolist()), set(range(n)))
    self.assertAllEqual(b["class_mask"], np.tile(np.arange(11) <= n, (500, 1)))
    self.assertEqual(b["class_mask"][0, 0], True)      # null is always in play

  @parameterized.parameters(2, 10)
  def test_classes_are_drawn_uniformly(self, n):
    classes = _coded_generator().stimuli([6, 6], 10_000, num_classes=n)[1].numpy()
    counts = np.bincount(classes, minlength=n)
    self.assertLen(counts, n)
    p = 1.0 / n
    sigma = np.sqrt(10_000 * p * (1 - p))
    self.assertAllClose(counts, np.full(n, 10_000 * p), atol=5 * sigma, rtol=0)

  def test_images_within_a_class_are_drawn_uniformly(self):
    images, classes = _coded_generator().stimuli([2, 3], 9_000, num_classes=1)
    self.assertAllEqual(classes, np.zeros(9_000))
    j = (np.rint(images.numpy()[:, 0] * 255).astype(int) - 1) % 20
    counts = np.bincount(j, minlength=_PER_CLASS)
    self.assertAllClose(counts, np.full(_PER_CLASS, 3_000), atol=5 * np.sqrt(9_000 * 2 / 9),
                        rtol=0)


class NumpySamplerTest(tf.test.TestCase, parameterized.TestCase):
  """sample_numpy (the "numpy" trial backend) has sample's layout and distributions."""

  def test_keys_shapes_and_dtypes_match_the_tf_sampler(self):
    g = _mnist_generator()
    a = g.sample_numpy(1, 2, batch_size=4, length=20)
    b = _np(g.sample([1, 2], batch_size=4, length=20))
    self.assertEqual(set(a), set(b))
    for k in b:
      self.assertEqual(a[k].shape, b[k].shape, k)
      self.assertEqual(a[k].dtype, b[k].dtype, k)

  def test_stimulus_frame_is_an_exact_image_of_the_class_and_trigger_marks_t_a(self):
    split = _coded_split()
    b = _coded_generator().sample_numpy(3, 4, batch_size=600, length=20)
    rows = np.arange(600)
    stim = b["inputs"][rows, b["t_s"], :-1]
    images = split.images.reshape(len(split.labels), -1).astype(np.float32) / np.float32(255)
    match = (images[None] == stim[:, None]).all(-1)                # [batch, images]
    self.assertTrue((match.sum(-1) == 1).all())                     # exactly one image each
    shown = np.argmax(match, -1)
    self.assertAllEqual(split.labels[shown], b["classes"])          # an image of its class
    self.assertLen(set(shown.tolist()), 10 * _PER_CLASS)            # every image gets drawn
    self.assertAllEqual(b["inputs"][..., -1], np.arange(20)[None, :] == b["t_a"][:, None])

  @parameterized.parameters((20, None, 20.0), (20, 12, 20.0), (16, 6, 7.5), (9, 9, 20.0))
  def test_labels_and_weights(self, length, t_max, report_weight):
    g = _mnist_generator(report_weight=report_weight)
    b = g.sample_numpy(7, 8, batch_size=64, length=length, t_max=t_max)
    t_max = length if t_max is None else t_max
    steps = np.arange(length)[None, :]
    at_report = steps == b["t_a"][:, None]
    self.assertAllEqual(b["labels"], np.where(at_report, b["classes"][:, None] + 1, 0))
    weights = np.where(steps < t_max, np.where(at_report, report_weight, 1.0), 0.0)
    self.assertAllEqual(b["weights"], weights)

  @parameterized.parameters(5, 6, 13, 20)
  def test_training_times_cover_exactly_the_documented_ranges(self, t_max):
    b = _mnist_generator().sample_numpy(11, t_max, batch_size=4000, length=20, t_max=t_max)
    pairs = {(s, a) for s in range(t_max - 4) for a in range(s + 4, t_max)}
    self.assertEqual(set(zip(b["t_s"].tolist(), b["t_a"].tolist())), pairs)

  def test_noise_is_gaussian_with_the_pixel_statistics_and_independent(self):
    b = _mnist_generator().sample_numpy(21, 22, batch_size=64, length=20)
    noise = b["inputs"][..., :-1][np.arange(20)[None, :] != b["t_s"][:, None]].astype(np.float64)
    n = noise.size
    self.assertAllClose(noise.mean(), datasets.MNIST_MEAN, atol=5 * datasets.MNIST_STD /
                        np.sqrt(n), rtol=0)
    self.assertAllClose(noise.std(), datasets.MNIST_STD, atol=5 * datasets.MNIST_STD /
                        np.sqrt(2 * n), rtol=0)
    z = (noise - datasets.MNIST_MEAN) / datasets.MNIST_STD
    # Normal moments: skew 0 (sd sqrt(6/n)), kurtosis 3 (sd sqrt(24/n)), and tails.
    self.assertLess(abs(np.mean(z ** 3)), 5 * np.sqrt(6 / n))
    self.assertLess(abs(np.mean(z ** 4) - 3), 5 * np.sqrt(96 / n))
    self.assertAllClose(np.mean(np.abs(z) > 2), 0.0455, atol=5 * np.sqrt(0.0455 / n), rtol=0)
    # Independent in time, across pixels, and between the cos and sin halves of Box-Muller.
    frames = z.reshape(-1, 784)
    self.assertLess(abs(np.mean(frames[1:] * frames[:-1])), 5 / np.sqrt(frames[1:].size))
    self.assertLess(abs(np.mean(frames[:, 1:] * frames[:, :-1])), 5 / np.sqrt(frames.size))
    full = (b["inputs"][..., :-1].reshape(64 * 20, 784) - datasets.MNIST_MEAN) / datasets.MNIST_STD
    top, bottom = full[:640], full[640:]
    keep = np.ones(640, bool)
    stim = np.arange(64) * 20 + b["t_s"]
    keep[stim[stim < 640]] = False
    keep[stim[stim >= 640] - 640] = False
    self.assertLess(abs(np.mean(top[keep] * bottom[keep])), 5 / np.sqrt(keep.sum() * 784))

  def test_noise_is_tiled_per_channel_last(self):
    mean, std = np.float32([0.2, 0.5, 0.8]), np.float32([0.05, 0.1, 0.2])
    g = trials.TrialGenerator(_coded_split((32, 32, 3)), mean, std)
    b = g.sample_numpy(4, 4, batch_size=100, length=5)
    noise = b["inputs"][..., :-1][np.arange(5)[None, :] != b["t_s"][:, None]]
    noise = noise.reshape(-1, 32, 32, 3).astype(np.float64)
    n = noise[..., 0].size
    for c in range(3):
      self.assertAllClose(noise[..., c].mean(), mean[c], atol=5 * std[c] / np.sqrt(n), rtol=0)
      self.assertAllClose(noise[..., c].std(), std[c], atol=5 * std[c] / np.sqrt(2 * n), rtol=0)

  def test_odd_frame_count_is_filled(self):
    b = _mnist_generator().sample_numpy(0, 0, batch_size=3, length=5)  # 15 frames
    self.assertTrue(np.isfinite(b["inputs"]).all())
    self.assertTrue((b["inputs"][..., :-1].std(-1) > 0.2).sum() >= 12)

  def test_seed_and_step_identify_the_batch(self):
    g = _mnist_generator()
    a = g.sample_numpy(8, 9, batch_size=16, length=12, t_max=10, num_classes=6)
    b = _mnist_generator().sample_numpy(8, 9, batch_size=16, length=12, t_max=10, num_classes=6)
    for k in a:
      self.assertAllEqual(a[k], b[k], msg=k)
    for seed, step in ((8, 10), (9, 9), (0, 0)):
      c = g.sample_numpy(seed, step, batch_size=16, length=12)
      self.assertNotAllClose(a["inputs"], c["inputs"])
      self.assertFalse(np.array_equal(np.stack([a["t_s"], a["t_a"]]),
                                      np.stack([c["t_s"], c["t_a"]])))

  def test_concurrent_calls_match_sequential_ones_and_buffers_are_reused(self):
    g = _mnist_generator()
    steps = list(range(12))
    kw = dict(batch_size=32, length=12)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
      together = list(pool.map(lambda k: g.sample_numpy(3, k, **kw)["inputs"], steps))
    self.assertBetween(len(g._free_scratch), 1, 6)   # one buffer set per concurrent call
    pooled = len(g._free_scratch)
    for k in steps:
      self.assertAllEqual(together[k], _mnist_generator().sample_numpy(3, k, **kw)["inputs"])
      g.sample_numpy(3, k, **kw)
    self.assertLen(g._free_scratch, pooled)          # sequential calls allocate none

  @parameterized.parameters(1, 2, 10)
  def test_classes_are_uniform_over_the_shown_ones_and_the_rest_masked(self, n):
    b = _coded_generator().sample_numpy(6, n, batch_size=10_000, length=6, num_classes=n)
    counts = np.bincount(b["classes"], minlength=n)
    self.assertLen(counts, n)
    sigma = np.sqrt(10_000 * (1 / n) * (1 - 1 / n))
    self.assertAllClose(counts, np.full(n, 10_000 / n), atol=5 * sigma + 1e-9, rtol=0)
    self.assertAllEqual(b["class_mask"], np.tile(np.arange(11) <= n, (10_000, 1)))

  def test_images_within_a_class_are_drawn_uniformly(self):
    b = _coded_generator().sample_numpy(2, 3, batch_size=9_000, length=5, num_classes=1)
    stim = b["inputs"][np.arange(9_000), b["t_s"], 0]
    j = (np.rint(stim * 255).astype(int) - 1) % 20
    counts = np.bincount(j, minlength=_PER_CLASS)
    self.assertAllClose(counts, np.full(_PER_CLASS, 3_000), atol=5 * np.sqrt(9_000 * 2 / 9),
                        rtol=0)

  @parameterized.parameters(4, 21)
  def test_t_max_outside_the_trial_is_refused(self, t_max):
    with self.assertRaisesRegex(ValueError, "t_max must be in"):
      _mnist_generator().sample_numpy(0, 0, batch_size=2, length=20, t_max=t_max)


class TrainingDatasetTest(tf.test.TestCase, parameterized.TestCase):

  _CURRICULUM = curricula.Curriculum(boundaries=(2, 4), num_classes=(2, 5, 10), t_max=(6, 8, 10))

  def _take(self, ds, n):
    return [(x.numpy(), {k: v.numpy() for k, v in y.items()}) for x, y in ds.take(n)]

  def test_elements_have_the_keras_fit_structure(self):
    ds = _coded_generator().training_dataset(0, 3, 10, self._CURRICULUM)
    x_spec, y_spec = ds.element_spec
    self.assertEqual(x_spec.shape.as_list(), [3, 10, 785])
    self.assertEqual(set(y_spec), {"labels", "weights", "class_mask"})
    self.assertEqual(y_spec["class_mask"].dtype, tf.bool)

  @parameterized.parameters(1, 3, 5)
  def test_starting_at_step_k_replays_step_k(self, k):
    g = _coded_generator()
    full = self._take(g.training_dataset(7, 4, 10, self._CURRICULUM), 6)
    resumed = self._take(g.training_dataset(7, 4, 10, self._CURRICULUM, start_step=k), 6 - k)
    self.assertLen(resumed, 6 - k)
    for (xa, ya), (xb, yb) in zip(full[k:], resumed):
      self.assertAllEqual(xa, xb)
      for key in ya:
        self.assertAllEqual(ya[key], yb[key])
    self.assertNotAllClose(full[0][0], full[1][0])

  def test_step_k_is_sample_seeded_by_seed_and_k_under_the_curriculum(self):
    g = _coded_generator()
    got = self._take(g.training_dataset(7, 4, 10, self._CURRICULUM), 6)
    for step, (x, y) in enumerate(got):
      num_classes, t_max = self._CURRICULUM.at(step)
      b = _np(g.sample(tf.constant([7, step], tf.int64), 4, 10, t_max=t_max,
                       num_classes=num_classes))
      self.assertAllEqual(x, b["inputs"])
      for key in y:
        self.assertAllEqual(y[key], b[key])

  def test_curriculum_stage_is_applied_per_step(self):
    cur = curricula.Curriculum(boundaries=(3, 6), num_classes=(2, 5, 10), t_max=(6, 8, 10))
    got = self._take(_coded_generator().training_dataset(1, 200, 12, cur), 8)
    for step, (_, y) in enumerate(got):
      num_classes, t_max = cur.at(step)
      self.assertAllEqual(y["class_mask"], np.tile(np.arange(11) <= num_classes, (200, 1)))
      reports = y["labels"][y["labels"] > 0] - 1
      self.assertEqual(set(reports.tolist()), set(range(num_classes)), msg=f"step {step}")
      self.assertAllEqual(y["weights"][:, t_max:], np.zeros((200, 12 - t_max)))
      self.assertTrue((y["weights"][:, :t_max] >= 1).all())
      report_steps = np.argmax(y["labels"] > 0, axis=1)
      self.assertEqual(report_steps.max(), t_max - 1, msg=f"step {step}")

  def test_numpy_backend_step_k_is_sample_numpy_of_seed_and_offset_step(self):
    g = _coded_generator()
    ds = g.training_dataset(7, 4, 10, self._CURRICULUM, backend="numpy", data_offset=100)
    self.assertEqual(ds.element_spec, g.training_dataset(7, 4, 10, self._CURRICULUM).element_spec)
    got = self._take(ds, 6)
    for step, (x, y) in enumerate(got):
      num_classes, t_max = self._CURRICULUM.at(step)
      b = g.sample_numpy(7, 100 + step, 4, 10, t_max=t_max, num_classes=num_classes)
      self.assertAllEqual(x, b["inputs"])
      for key in y:
        self.assertAllEqual(y[key], b[key])
    resumed = self._take(g.training_dataset(7, 4, 10, self._CURRICULUM, start_step=3,
                                            backend="numpy", data_offset=100), 3)
    for (xa, _), (xb, _) in zip(got[3:], resumed):
      self.assertAllEqual(xa, xb)

  @absltest.skipUnless(sys.platform.startswith("linux"), "thread niceness is Linux's")
  def test_numpy_sampler_threads_lower_their_priority_and_draw_the_same_trials(self):
    g = _coded_generator()
    own = {tid: _niceness(tid) for tid in _threads()}
    base = os.getpriority(os.PRIO_PROCESS, 0)
    try:
      trials.set_sampler_nice(3)
      ds = g.training_dataset(7, 4, 10, self._CURRICULUM, backend="numpy")
      it = iter(ds)
      niced = [next(it)[0].numpy() for _ in range(4)]
      lowered = {tid for tid in _threads() if _niceness(tid) == min(19, base + 3)}
      trials.set_sampler_nice(0)
      plain = self._take(g.training_dataset(7, 4, 10, self._CURRICULUM, backend="numpy"), 4)
    finally:
      trials.set_sampler_nice(config_lib.SAMPLER_NICE)
    self.assertNotEmpty(lowered)                    # the sampler ran in threads of its own
    self.assertEmpty(lowered & set(own))            # none of the test's own threads changed
    self.assertEqual({tid: _niceness(tid) for tid in own if tid in _threads()},
                     {tid: v for tid, v in own.items() if tid in _threads()})
    for a, (b, _) in zip(niced, plain):
      self.assertAllEqual(a, b)

  @parameterized.parameters(-1, 20, 2.5, True)
  def test_sampler_nice_outside_its_range_is_refused(self, nice):
    with self.assertRaisesRegex(ValueError, r"sampler_nice must be an integer in \[0, 19\]"):
      trials.set_sampler_nice(nice)
    self.assertEqual(trials.sampler_nice(), config_lib.SAMPLER_NICE)

  def test_unknown_backend_is_refused(self):
    with self.assertRaisesRegex(ValueError, "unknown trial backend 'jax'; valid: numpy, tf"):
      _coded_generator().training_dataset(0, 2, 6, self._CURRICULUM, backend="jax")

  def test_num_steps_bounds_the_dataset(self):
    ds = _coded_generator().training_dataset(0, 2, 6, self._CURRICULUM, start_step=3,
                                             num_steps=4)
    self.assertLen(list(ds), 4)

  def test_different_seeds_give_different_streams(self):
    g = _coded_generator()
    a = self._take(g.training_dataset(0, 4, 8, self._CURRICULUM), 1)[0][0]
    b = self._take(g.training_dataset(1, 4, 8, self._CURRICULUM), 1)[0][0]
    self.assertNotAllClose(a, b)


if __name__ == "__main__":
  tf.test.main()
