"""Tests for haviv_tf.slow_points: fixed points of hand-built cells, speed, Jacobians, SlowPoints.

The hand-built cells have zero input weights and decoupled units, so their fixed points are known
in closed form up to one scalar equation per unit (solved with scipy.optimize.brentq).
"""

import itertools
import os
import tempfile

from absl.testing import parameterized
import numpy as np
from scipy import optimize
import tensorflow as tf

from haviv_tf import config as config_lib
from haviv_tf import datasets
from haviv_tf import models
from haviv_tf import slow_points
from haviv_tf import trials

_FRAME = (2, 2, 1)
_GAIN = 2.0       # recurrent gain of the candidate / g gate: fixed points 0 and ±h*
_BIG = 20.0       # bias that saturates a gate to ~1


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _tiny_model(arch, units):
  """DelayedClassifier with hand-set weights and known fixed points.

  GRU: z = 1/2, r = sigmoid(20), candidate tanh(2 r h): fixed points h = tanh(2 r h) per unit.
  LSTM: i = f = 1/2, o = sigmoid(20), g = tanh(2 h): c = g, h = o tanh(tanh(2 h)) per unit.

  Returns:
    the model, the per-unit nonzero fixed point (h*, c*) and the eigenvalue function per unit.
  """
  model = models.DelayedClassifier(arch=arch, units=units, frame_shape=_FRAME, readout="linear")
  cell, u = model.cell, units
  n_gates = 3 if arch == "gru" else 4
  kernel = np.zeros([model.feature_size, n_gates * u], np.float32)
  recurrent = np.zeros([u, n_gates * u], np.float32)
  if arch == "gru":
    recurrent[:, 2 * u:] = _GAIN * np.eye(u)
    bias = np.concatenate([np.zeros(u), np.full(u, _BIG), np.zeros(u)])
    r = _sigmoid(_BIG)
    h_star = optimize.brentq(lambda h: np.tanh(_GAIN * r * h) - h, 0.1, 1.0)
    c_star = None
  else:
    recurrent[:, u:2 * u] = _GAIN * np.eye(u)
    bias = np.concatenate([np.zeros(3 * u), np.full(u, _BIG)])
    o = _sigmoid(_BIG)
    h_star = optimize.brentq(lambda h: o * np.tanh(np.tanh(_GAIN * h)) - h, 0.1, 1.0)
    c_star = np.tanh(_GAIN * h_star)
  cell.kernel.assign(kernel)
  cell.recurrent_kernel.assign(recurrent)
  cell.bias.assign(bias.astype(np.float32))
  return model, h_star, c_star


def _true_fixed_points(arch, units, h_star, c_star):
  points = []
  for signs in itertools.product((-1.0, 0.0, 1.0), repeat=units):
    h = np.asarray(signs) * h_star
    points.append(h if arch == "gru" else np.concatenate([h, np.asarray(signs) * c_star]))
  return np.asarray(points)


def _numpy_transition(model, state, features):
  """F(s, x) in NumPy (float64) from the model's weights."""
  cell, u = model.cell, model.units
  w, rk, b = (np.asarray(v, np.float64) for v in (cell.kernel, cell.recurrent_kernel, cell.bias))
  xp = features @ w + b
  if model.arch == "gru":
    h = state
    zr = _sigmoid(xp[:, :2 * u] + h @ rk[:, :2 * u])
    z, r = zr[:, :u], zr[:, u:]
    c = np.tanh(xp[:, 2 * u:] + (r * h) @ rk[:, 2 * u:])
    return (1 - z) * h + z * c
  h, c = state[:, :u], state[:, u:]
  a = xp + h @ rk
  i, g, f, o = (_sigmoid(a[:, :u]), np.tanh(a[:, u:2 * u]), _sigmoid(a[:, 2 * u:3 * u]),
                _sigmoid(a[:, 3 * u:]))
  c = f * c + i * g
  return np.concatenate([o * np.tanh(c), c], axis=1)


def _numpy_speed(model, state, new):
  if model.arch == "lstm":
    u = model.units
    to_speed = lambda s: np.concatenate([s[:, :u], np.tanh(s[:, u:])], axis=1)
    state, new = to_speed(state), to_speed(new)
  return np.sqrt(np.sum(np.square(new - state), axis=1))


def _points(states, q, k=2):
  n = len(states)
  return slow_points.SlowPoints(
      states=np.asarray(states, np.float32), speed=np.sqrt(2 * np.asarray(q)), q=q,
      readout=np.arange(n) % 10, init_class=np.full(n, -1), iters=np.arange(n),
      eigenvalues=np.arange(n * k).reshape(n, k) * (1 + 1j), max_abs_eig=np.ones(n),
      num_unstable=np.zeros(n))


class FixedPointTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters("gru", "lstm")
  def test_finds_exactly_the_known_fixed_points(self, arch):
    units = 2
    model, h_star, c_star = _tiny_model(arch, units)
    truth = _true_fixed_points(arch, units, h_star, c_star)  # 9 points
    grid = np.linspace(-1.3, 1.3, 8)
    h0 = np.asarray(list(itertools.product(grid, repeat=units)), np.float32)
    init = h0 if arch == "gru" else np.concatenate([h0, np.tanh(_GAIN * h0)], axis=1)
    x_bar = np.zeros([model.feature_size], np.float32)
    finder = slow_points.SlowPointFinder(
        model, slow_points.SlowPointConfig(max_iters=6000, chunk=500, dedup_tol=1e-2))
    unique, everything = finder.find(init, x_bar)

    self.assertLen(everything, len(init))
    self.assertLess(float(everything.q.max()), 1e-9)
    self.assertLess(float(everything.speed.max()), 1e-4)
    # Every true point is found, and every found point is a true one.
    dist = np.linalg.norm(unique.states[:, None, :] - truth[None, :, :], axis=-1)
    np.testing.assert_array_less(dist.min(axis=0), 1e-3)
    np.testing.assert_array_less(dist.min(axis=1), 1e-3)
    self.assertLen(unique, len(truth))
    # Stability: each unit off zero is stable (|λ| < 1), each unit at zero is unstable.
    at_zero = np.sum(np.abs(unique.states[:, :units]) < 0.1, axis=1)
    np.testing.assert_array_equal(unique.num_unstable, at_zero)
    if arch == "gru":
      lam_zero = 0.5 + 0.5 * _GAIN * _sigmoid(_BIG)
      np.testing.assert_allclose(unique.max_abs_eig[at_zero > 0], lam_zero, atol=1e-4)

  def test_stops_at_max_iters(self):
    model, _, _ = _tiny_model("gru", 1)
    finder = slow_points.SlowPointFinder(
        model, slow_points.SlowPointConfig(max_iters=30, chunk=20, learning_rate=1e-4))
    _, q, iters = finder.minimize(np.float32([[0.5], [-0.6]]), np.zeros([5], np.float32))
    np.testing.assert_array_equal(iters, [30, 30])
    self.assertGreater(float(q.min()), 1e-10)

  def test_bad_config_names_the_field(self):
    with self.assertRaisesRegex(ValueError, "chunk"):
      slow_points.SlowPointConfig(chunk=0)
    with self.assertRaisesRegex(ValueError, "decay"):
      slow_points.SlowPointConfig(decay=1.5)


class DynamicsTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters("gru", "lstm")
  def test_speed_matches_numpy(self, arch):
    tf.random.set_seed(1)
    model = models.DelayedClassifier(arch=arch, units=4, frame_shape=_FRAME)
    rng = np.random.default_rng(0)
    states = rng.normal(size=[16, model.state_size]).astype(np.float32)
    features = rng.normal(size=[16, model.feature_size]).astype(np.float32)
    got = slow_points.speeds(model, states, features)
    new = _numpy_transition(model, states.astype(np.float64), features.astype(np.float64))
    np.testing.assert_allclose(got, _numpy_speed(model, states, new), rtol=1e-4, atol=1e-5)

  @parameterized.parameters("gru", "lstm")
  def test_jacobian_matches_finite_differences(self, arch):
    tf.random.set_seed(2)
    model = models.DelayedClassifier(arch=arch, units=3, frame_shape=_FRAME)
    rng = np.random.default_rng(1)
    states = rng.normal(size=[4, model.state_size])
    features = rng.normal(size=[model.feature_size])
    jac = slow_points.jacobians(model, states.astype(np.float32), features.astype(np.float32))
    eps = 1e-4
    fd = np.zeros_like(jac, dtype=np.float64)
    feats = np.broadcast_to(features, [len(states), len(features)])
    for j in range(model.state_size):
      d = np.zeros(model.state_size)
      d[j] = eps
      fd[:, :, j] = (_numpy_transition(model, states + d, feats)
                     - _numpy_transition(model, states - d, feats)) / (2 * eps)
    np.testing.assert_allclose(jac, fd, atol=1e-5)

  def test_readout_uses_the_trigger_step(self):
    model, _, _ = _tiny_model("gru", 2)
    head = np.zeros([2, models.NUM_OUTPUTS], np.float32)
    head[0, 4] = 1.0   # unit 0 positive -> class 3
    head[0, 8] = -1.0  # unit 0 negative -> class 7
    model.head.kernel.assign(head)
    model.head.bias.assign(np.zeros([models.NUM_OUTPUTS], np.float32))
    x_bar = np.zeros([model.feature_size], np.float32)
    got = slow_points.readout_classes(model, np.float32([[0.9, 0.0], [-0.9, 0.0]]), x_bar)
    np.testing.assert_array_equal(got, [3, 7])


class SlowPointsTest(tf.test.TestCase):

  def test_unique_keeps_the_smallest_q(self):
    pts = _points([[0, 0], [0, 1e-4], [1, 1], [1, 1 + 1e-4], [5, 5]], q=[2., 1., 3., .5, 4.])
    got = pts.unique(1e-3)
    np.testing.assert_array_equal(got.iters, [1, 3, 4])
    np.testing.assert_allclose(got.q, [1., .5, 4.])
    self.assertLen(pts.unique(0.0), 5)

  def test_indexing_and_concatenate(self):
    pts = _points(np.arange(8).reshape(4, 2), q=[1., 2., 3., 4.])
    self.assertLen(pts[2], 1)
    self.assertLen(pts[1:3], 2)
    np.testing.assert_array_equal(pts[pts.q > 2].iters, [2, 3])
    both = slow_points.SlowPoints.concatenate([pts, _points([[9, 9]], q=[.1], k=3)])
    self.assertEqual(both.eigenvalues.shape, (5, 3))
    self.assertTrue(np.all(np.isnan(both.eigenvalues[:4, 2])))
    with self.assertRaisesRegex(ValueError, "points"):
      slow_points.SlowPoints(**dict(vars(pts), q=np.zeros(3)))

  def test_save_load_round_trip(self):
    pts = _points(np.random.default_rng(0).normal(size=[3, 4]), q=[1e-11, 2e-3, 0.5], k=4)
    path = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()), "pts.npz")
    pts.save(path)
    got = slow_points.SlowPoints.load(path)
    for name in slow_points._FIELDS:  # pylint: disable=protected-access
      np.testing.assert_array_equal(getattr(got, name), getattr(pts, name))
      self.assertEqual(getattr(got, name).dtype, getattr(pts, name).dtype)
    self.assertEqual(got.eigenvalues.dtype, np.complex128)


class TrialStatesTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.source = datasets.load("mnist_sample")

  @parameterized.parameters("gru", "lstm")
  def test_shapes_on_sample_data(self, arch):
    cfg = config_lib.resolve("quick", "mnist_sample", dict(units=8, arch=arch))
    gen = trials.generator_for(self.source, "test", cfg)
    model = models.build(cfg, self.source.frame_shape)
    x_bar = slow_points.mean_input_features(model, gen)
    self.assertEqual(x_bar.shape, (785,))
    np.testing.assert_allclose(x_bar[:-1], gen.mean)
    self.assertEqual(x_bar[-1], 0.0)

    centres, counts = slow_points.class_centres(model, gen, steps_after=15, trials_per_class=4)
    self.assertEqual(centres.shape, (10, model.state_size))
    self.assertEqual(counts.shape, (10,))
    self.assertBetween(int(counts.sum()), 0, 40)
    self.assertEqual(np.isnan(centres[:, 0]).tolist(), (counts == 0).tolist())

    states, classes, times = slow_points.sample_states(model, gen, 12, length=6)
    self.assertEqual(states.shape, (12, model.state_size))
    np.testing.assert_array_equal(classes, np.arange(12) % 10)
    self.assertTrue(np.all((times >= 1) & (times < 6)))

    finder = slow_points.SlowPointFinder(model, slow_points.SlowPointConfig(max_iters=400))
    unique, everything = finder.find(states, x_bar, classes)
    self.assertLen(everything, 12)
    self.assertBetween(len(unique), 1, 12)
    self.assertEqual(everything.eigenvalues.shape, (12, min(10, model.state_size)))
    np.testing.assert_array_equal(everything.init_class, classes)
    self.assertTrue(np.all((everything.readout >= 0) & (everything.readout < 10)))

  def test_cnn_mean_features_average_the_encoder(self):
    rng = np.random.default_rng(0)
    split = datasets.Split(rng.integers(0, 256, [10, 32, 32, 3], dtype=np.uint8),
                           np.arange(10, dtype=np.int32))
    gen = trials.TrialGenerator(split, np.float32([.5, .4, .3]), np.float32([.2, .2, .2]))
    model = models.DelayedClassifier(units=4, frame_shape=(32, 32, 3), encoder="cnn")
    x_bar = slow_points.mean_input_features(model, gen, num=6, batch_size=4)
    self.assertEqual(x_bar.shape, (model.feature_size,))
    self.assertEqual(x_bar[-1], 0.0)
    stream = slow_points._SAMPLE_STREAM  # pylint: disable=protected-access
    seed = tf.constant([0, stream], tf.int64)
    frames = tf.concat([gen.noise(seed, 0, 4), gen.noise(seed, 1, 2)], axis=0)
    want = model.encode(tf.concat([frames, tf.zeros([6, 1])], axis=-1)).numpy().mean(0)
    np.testing.assert_allclose(x_bar, want, rtol=1e-4, atol=1e-5)


if __name__ == "__main__":
  tf.test.main()
