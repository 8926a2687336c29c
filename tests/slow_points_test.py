"""Tests for the slow-point search (haviv_tf.dynamics) on this project's network and for the
application side (haviv_tf.probes.slow_points): fixed points of hand-built cells, speed, Jacobians,
SlowPoints, the format-2 fixture.

The hand-built cells have zero input weights and decoupled units, so their fixed points are known
in closed form up to one scalar equation per unit (solved with scipy.optimize.brentq).
"""

import dataclasses
import itertools
import os
import tempfile

from absl.testing import parameterized
import numpy as np
from scipy import optimize
import tensorflow as tf

from haviv_tf.base import artifacts
from haviv_tf.base import config as config_lib
from haviv_tf.dynamics import finder as finder_lib
from haviv_tf.dynamics import linearize
from haviv_tf.dynamics import points as points_lib
from haviv_tf.task import datasets
from haviv_tf.models import network
from haviv_tf.probes import slow_points
from haviv_tf.task import trials

_FRAME = (2, 2, 1)
_FIXTURE_V2 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures",
                           "slow_points_v2.npz")  # format 2, written by 9fc73eb
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
  model = network.DelayedClassifier(arch=arch, units=units, frame_shape=_FRAME, readout="linear")
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
  return points_lib.SlowPoints(
      states=np.asarray(states, np.float32), speed=np.sqrt(2 * np.asarray(q)), q=q,
      iters=np.arange(n), eigenvalues=np.arange(n * k).reshape(n, k) * (1 + 1j),
      max_abs_eig=np.ones(n), num_unstable=np.zeros(n),
      extras=dict(readout=np.arange(n) % 10, init_class=np.full(n, -1)))


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
    finder = slow_points.ClassPointFinder(
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
    finder = finder_lib.SlowPointFinder(
        model, finder_lib.SlowPointConfig(max_iters=30, chunk=20, learning_rate=1e-4))
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
    model = network.DelayedClassifier(arch=arch, units=4, frame_shape=_FRAME)
    rng = np.random.default_rng(0)
    states = rng.normal(size=[16, model.state_size]).astype(np.float32)
    features = rng.normal(size=[16, model.feature_size]).astype(np.float32)
    got = linearize.speeds(model, states, features)
    new = _numpy_transition(model, states.astype(np.float64), features.astype(np.float64))
    np.testing.assert_allclose(got, _numpy_speed(model, states, new), rtol=1e-4, atol=1e-5)

  @parameterized.parameters("gru", "lstm")
  def test_jacobian_matches_finite_differences(self, arch):
    tf.random.set_seed(2)
    model = network.DelayedClassifier(arch=arch, units=3, frame_shape=_FRAME)
    rng = np.random.default_rng(1)
    states = rng.normal(size=[4, model.state_size])
    features = rng.normal(size=[model.feature_size])
    jac = linearize.jacobians(model, states.astype(np.float32), features.astype(np.float32))
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
    head = np.zeros([2, network.NUM_OUTPUTS], np.float32)
    head[0, 4] = 1.0   # unit 0 positive -> class 3
    head[0, 8] = -1.0  # unit 0 negative -> class 7
    model.head.kernel.assign(head)
    model.head.bias.assign(np.zeros([network.NUM_OUTPUTS], np.float32))
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
    both = points_lib.SlowPoints.concatenate([pts, _points([[9, 9]], q=[.1], k=3)])
    self.assertEqual(both.eigenvalues.shape, (5, 3))
    self.assertTrue(np.all(np.isnan(both.eigenvalues[:4, 2])))
    with self.assertRaisesRegex(ValueError, "points"):
      points_lib.SlowPoints(**dict(vars(pts), q=np.zeros(3)))
    with self.assertRaisesRegex(ValueError, "points"):
      pts.with_extras(readout=np.zeros(3))
    with self.assertRaisesRegex(ValueError, "extras"):
      points_lib.SlowPoints.concatenate([pts, pts.replace(extras={})])
    np.testing.assert_array_equal(both.extras["readout"], [0, 1, 2, 3, 0])

  def test_save_load_round_trip(self):
    pts = _points(np.random.default_rng(0).normal(size=[3, 4]), q=[1e-11, 2e-3, 0.5], k=4)
    path = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()), "pts.npz")
    pts.save(path)
    got = points_lib.SlowPoints.load(path)
    for name in points_lib.FIELDS:
      np.testing.assert_array_equal(getattr(got, name), getattr(pts, name))
      self.assertEqual(getattr(got, name).dtype, getattr(pts, name).dtype)
    self.assertEqual(list(got.extras), ["readout", "init_class"])
    for name, value in pts.extras.items():
      np.testing.assert_array_equal(got.extras[name], value)
    self.assertEqual(os.listdir(os.path.dirname(path)), ["pts.npz"])  # no temporary left
    self.assertEqual(got.eigenvalues.dtype, np.complex128)


def _materialised_trials(model, gen, classes, length, seed, batch=0):
  """States [n, length, S] of slow_points' trials (batch `batch` of `seed`), built as whole
  input sequences and run by model.run, and the class read out by one more step (noise frame
  `length`, trigger on)."""
  # pylint: disable-next=protected-access
  stream = tf.constant([seed, slow_points._SAMPLE_STREAM + 1 + batch], tf.int64)
  s_stim, s_noise = tf.unstack(tf.random.experimental.stateless_split(stream, 2))
  n = len(classes)
  images, _ = gen.stimuli(s_stim, n, classes=tf.constant(classes, tf.int32))
  frames = tf.stack([images] + [gen.noise(s_noise, t, n) for t in range(1, length)], axis=1)
  states = model.run(tf.concat([frames, tf.zeros([n, length, 1])], axis=-1)).numpy()
  _, logits = model.step(tf.constant(states[:, -1]), tf.concat(
      [gen.noise(s_noise, length, n), tf.ones([n, 1])], axis=-1))
  return states, np.argmax(logits.numpy()[:, 1:], axis=-1)


class TrialStatesTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.source = datasets.load("mnist_sample")

  @parameterized.parameters("gru", "lstm")
  def test_shapes_on_sample_data(self, arch):
    cfg = config_lib.resolve("quick", "mnist_sample", dict(units=8, arch=arch))
    gen = trials.generator_for(self.source, "test", cfg)
    model = network.build(cfg, self.source.frame_shape)
    x_bar = slow_points.mean_input_features(model, gen)
    self.assertEqual(x_bar.shape, (785,))
    np.testing.assert_allclose(x_bar[:-1], gen.mean)
    self.assertEqual(x_bar[-1], 0.0)

    centres, counts = slow_points.class_centres(model, gen, steps_after=15, trials_per_class=4)
    self.assertEqual(centres.shape, (10, model.state_size))
    # Against the same trials materialised and run whole (model.run, not the rollout runner).
    cls = np.arange(40) % 10
    traj, read = _materialised_trials(model, gen, cls, 16, seed=0)
    want_counts = np.bincount(cls[read == cls], minlength=10)
    np.testing.assert_array_equal(counts, want_counts)
    for c in range(10):
      if want_counts[c]:
        np.testing.assert_allclose(centres[c], traj[(read == cls) & (cls == c), 15].mean(0),
                                   atol=1e-5)
      else:
        self.assertTrue(np.isnan(centres[c]).all())

    states, classes, times = slow_points.states_of_new_trials(model, gen, 12, length=6)
    np.testing.assert_array_equal(classes, np.arange(12) % 10)
    np.testing.assert_array_equal(times, np.random.default_rng(0).integers(1, 6, 12))
    traj, _ = _materialised_trials(model, gen, classes, 6, seed=0)
    np.testing.assert_allclose(states, traj[np.arange(12), times], atol=1e-5)

    finder = slow_points.ClassPointFinder(model, slow_points.SlowPointConfig(max_iters=400))
    unique, everything = finder.find(states, x_bar, extras=dict(init_class=classes))
    self.assertLen(everything, 12)
    # unique is everything's rows that are pairwise more than dedup_tol apart and cover every
    # point within dedup_tol by one no slower than it (checked here with pairwise distances).
    tol = finder.config.dedup_tol
    rows = [int(np.flatnonzero((everything.states == u).all(1))[0]) for u in unique.states]
    dist = np.linalg.norm(everything.states[:, None] - everything.states[None], axis=-1)
    kept = dist[np.ix_(rows, rows)] + np.eye(len(rows)) * (tol + 1)
    self.assertGreater(kept.min(), tol)
    for p in range(12):
      near = [r for r in rows if dist[p, r] <= tol and everything.q[r] <= everything.q[p]]
      self.assertTrue(near, f"point {p} is not covered by a kept point")
    # Recorded: on this network all 12 searches end within dedup_tol of each other (pairs
    # 3e-6 to 4e-5 apart), so exactly one point is kept.
    self.assertLessEqual(dist.max(), tol)
    self.assertLen(unique, 1)
    self.assertEqual(everything.eigenvalues.shape, (12, min(10, model.state_size)))
    np.testing.assert_array_equal(everything.extras["init_class"], classes)
    np.testing.assert_array_equal(everything.init_states, states)
    np.testing.assert_array_equal(everything.inputs, np.broadcast_to(x_bar, [12, 785]))
    readout = slow_points.readout_classes(model, everything.states, x_bar)
    np.testing.assert_array_equal(everything.extras["readout"], readout)

  def test_cnn_mean_features_average_the_encoder(self):
    rng = np.random.default_rng(0)
    split = datasets.Split(rng.integers(0, 256, [10, 32, 32, 3], dtype=np.uint8),
                           np.arange(10, dtype=np.int32))
    gen = trials.TrialGenerator(split, np.float32([.5, .4, .3]), np.float32([.2, .2, .2]))
    model = network.DelayedClassifier(units=4, frame_shape=(32, 32, 3), encoder="cnn")
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


def _outward_gru():
  """1-unit GRU whose q slopes outward past the box: z = sigmoid(2 - 10 h), r = 1,
  candidate tanh(b) = -0.5 (constant). q(h) = ½ z² (h + 0.5)² has its fixed point at h = -0.5, a
  local maximum near h = 0.05 and, for h above it, falls towards 0 as h -> +inf: a descent from
  h = 0.6 leaves the box, and the constrained minimum from there is the boundary h = 1
  (dq/dh(1) < 0, checked in the test)."""
  model = network.DelayedClassifier(arch="gru", units=1, frame_shape=_FRAME, readout="linear")
  kernel = np.zeros([model.feature_size, 3], np.float32)
  recurrent = np.float32([[-10.0, 0.0, 0.0]])
  bias = np.float32([2.0, _BIG, np.arctanh(-0.5)])
  model.cell.kernel.assign(kernel)
  model.cell.recurrent_kernel.assign(recurrent)
  model.cell.bias.assign(bias)
  return model


def _q_outward(h):
  z = _sigmoid(2.0 - 10.0 * h)
  return 0.5 * z ** 2 * (h + 0.5) ** 2


def _leaky_lstm():
  """1-unit LSTM with constant gates: i = g = 1, f = 0.9, o = 1/2 (zero recurrent weights).
  c' = 0.9 c + 1 has its fixed point at c = 10; within c in [-2, 2] the q minimum reached from
  c = 1.5 is c = 2 (tanh(0.9 c + 1) - tanh(c) falls on [1.5, 2]) with h = ½ tanh(2.8)."""
  model = network.DelayedClassifier(arch="lstm", units=1, frame_shape=_FRAME, readout="linear")
  model.cell.kernel.assign(np.zeros([model.feature_size, 4], np.float32))
  model.cell.recurrent_kernel.assign(np.zeros([1, 4], np.float32))
  model.cell.bias.assign(np.float32([_BIG, _BIG, np.log(9.0), 0.0]))  # i, g, f, o
  return model


class ConstrainedSearchTest(tf.test.TestCase, parameterized.TestCase):

  def test_gru_point_stops_on_the_boundary_the_analysis_predicts(self):
    model = _outward_gru()
    x_bar = np.zeros([model.feature_size], np.float32)
    eps = 1e-5
    self.assertLess(_q_outward(1 + eps) - _q_outward(1 - eps), 0)   # q still falls at h = 1
    init = np.float32([[0.6], [-0.1], [1.7]])
    free = finder_lib.SlowPointFinder(model, slow_points.SlowPointConfig(
        max_iters=3000, constrain=False, early_stop=False, learning_rate=1e-2, decay=1.0))
    unconstrained, _, _ = free.minimize(init, x_bar)
    self.assertGreater(float(unconstrained[0, 0]), 1.05)   # the unconstrained descent leaves
    boxed = finder_lib.SlowPointFinder(model, slow_points.SlowPointConfig(
        max_iters=3000, early_stop=False, learning_rate=1e-2, decay=1.0, dedup_tol=0.0))
    _, pts = boxed.find(init, x_bar)
    np.testing.assert_array_equal(pts.states[[0, 2], 0], [1.0, 1.0])   # on the boundary
    np.testing.assert_allclose(pts.states[1, 0], -0.5, atol=1e-3)        # interior fixed point
    self.assertTrue(np.all(pts.in_box))
    np.testing.assert_allclose(pts.q[0], _q_outward(1.0), rtol=1e-3)

  def test_lstm_h_stays_in_the_box_and_c_on_its_bound(self):
    model = _leaky_lstm()
    x_bar = np.zeros([model.feature_size], np.float32)
    init = np.float32([[3.0, 1.5], [-2.5, 1.5]])
    cfg = slow_points.SlowPointConfig(max_iters=4000, early_stop=False, learning_rate=1e-2,
                                      decay=1.0, dedup_tol=0.0)
    finder = finder_lib.SlowPointFinder(model, cfg)
    bounds = slow_points.hidden_box(model, (np.float32([-2.0]), np.float32([2.0])))
    _, pts = finder.find(init, x_bar, bounds=bounds)
    self.assertTrue(np.all(np.abs(pts.states[:, 0]) <= 1.0))
    self.assertTrue(np.all(pts.in_box))
    np.testing.assert_array_equal(pts.states[:, 1], [2.0, 2.0])
    np.testing.assert_allclose(pts.states[:, 0], 0.5 * np.tanh(2.8), atol=1e-3)
    # c free (the authors' choice): the search heads for the fixed point c = 10, h in the box.
    free, _, _ = finder.minimize(init, x_bar)
    self.assertGreater(float(free[:, 1].min()), 3.0)   # far past the bound 2, still going
    self.assertTrue(np.all(np.abs(free[:, 0]) <= 1.0))

  @parameterized.parameters("gru", "lstm")
  def test_random_network_points_are_in_the_box(self, arch):
    tf.random.set_seed(3)
    model = network.DelayedClassifier(arch=arch, units=6, frame_shape=_FRAME)
    for v in (model.cell.recurrent_kernel,):
      v.assign(v * 4.0)   # strong recurrence: unconstrained minima wander off
    rng = np.random.default_rng(0)
    init = rng.uniform(-3, 3, [40, model.state_size]).astype(np.float32)
    x_bar = rng.normal(size=[model.feature_size]).astype(np.float32)
    _, pts = finder_lib.SlowPointFinder(model, slow_points.SlowPointConfig(
        max_iters=600, chunk=100)).find(init, x_bar)
    self.assertTrue(np.all(np.abs(pts.states[:, :model.units]) <= 1.0))
    self.assertTrue(np.all(pts.in_box))

  def test_stall_rule_ends_a_stalled_point_and_keeps_an_improving_one(self):
    model = _outward_gru()
    x_bar = np.zeros([model.feature_size], np.float32)
    cfg = slow_points.SlowPointConfig(max_iters=2000, window=50, rel_tol=1e-3,
                                      learning_rate=1e-3, decay=1.0, q_tol=1e-10, chunk=100)
    # Row 0 sits on the boundary (pushed outward, clipped back: its speed cannot improve);
    # row 1 descends slowly towards the fixed point at -0.5 (about 1e-3 per update), improving
    # by far more than 0.1% per 50 updates until it gets there.
    states, q, iters, info = finder_lib.SlowPointFinder(model, cfg).minimize(
        np.float32([[1.0], [0.0]]), x_bar, return_info=True)
    reasons = [slow_points.STOP_REASONS[r] for r in info["stop_reason"]]
    self.assertEqual(reasons[0], "stalled")
    self.assertEqual(int(iters[0]), 50)
    self.assertEqual(reasons[1], "q_tol")
    self.assertGreater(int(iters[1]), 400)
    self.assertLess(float(q[1]), 1e-10)
    np.testing.assert_allclose(states[1, 0], -0.5, atol=1e-4)

  def test_window_and_tolerances_must_be_positive(self):
    for field in ("window", "rel_tol", "q_tol"):
      with self.assertRaisesRegex(ValueError, field):
        slow_points.SlowPointConfig(**{field: 0})
    with self.assertRaisesRegex(ValueError, "recipe"):
      slow_points.recipe_config("foo")


def _tf1_adam_reference(model, init, x_bar, steps, lr, drop_step, box=1.0):
  """The authors' loop in NumPy: TF1 Adam on sum ||F(h) - h||^2 (finite-difference gradient),
  lr / 10 from `drop_step`, h clipped after every step."""
  b1, b2, eps = 0.9, 0.999, 1e-8
  h = init.astype(np.float64)
  m, v = np.zeros_like(h), np.zeros_like(h)
  x = np.broadcast_to(x_bar, [len(h), len(x_bar)]).astype(np.float64)
  obj = lambda s: np.sum(np.square(_numpy_transition(model, s, x) - s), axis=1)
  for j in range(steps):
    rate = lr / 10 if j >= drop_step else lr
    g = np.zeros_like(h)
    for k in range(h.shape[1]):
      d = np.zeros_like(h)
      d[:, k] = 1e-6
      g[:, k] = (obj(h + d) - obj(h - d)) / 2e-6
    t = j + 1
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    h = h - rate * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps)
    h = np.clip(h, -box, box)
  return h


class PaperRecipeTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.source = datasets.load("mnist_sample")

  def test_search_is_tf1_adam_with_the_drop_at_40_percent(self):
    cfg = config_lib.resolve("quick", "mnist", {})
    sp = slow_points.recipe_config("paper", cfg)
    steps = round(100_000 * cfg.train_steps / config_lib.preset("paper", "mnist").train_steps)
    self.assertEqual(sp.max_iters, steps)
    self.assertEqual(sp.drop_step, round(0.4 * steps))
    self.assertEqual((sp.learning_rate, sp.early_stop, sp.lstm_c, sp.objective_scale),
                     (1e-3, False, "free", 1.0))
    self.assertEqual(slow_points.recipe_config("paper").max_iters, 100_000)
    self.assertEqual(slow_points.recipe_config("paper").drop_step, 40_000)
    # A run trained without XLA searches without it, with either recipe, unless overridden.
    plain = dataclasses.replace(cfg, jit_compile=False)
    self.assertTrue(sp.jit_compile)
    self.assertFalse(slow_points.recipe_config("paper", plain).jit_compile)
    self.assertFalse(slow_points.recipe_config("default", plain).jit_compile)
    self.assertTrue(slow_points.recipe_config("default", plain, jit_compile=True).jit_compile)
    # The loop itself, against the NumPy reference, with a drop inside the run.
    tf.random.set_seed(5)
    model = network.DelayedClassifier(arch="gru", units=3, frame_shape=_FRAME)
    model.cell.recurrent_kernel.assign(model.cell.recurrent_kernel * 3.0)
    rng = np.random.default_rng(2)
    init = rng.uniform(-0.9, 0.9, [4, 3]).astype(np.float32)
    x_bar = rng.uniform(0, 1, [model.feature_size]).astype(np.float32)
    small = slow_points.recipe_config("paper", None, max_iters=30, learning_rate=0.05,
                                      chunk=7)
    self.assertEqual(small.drop_step, 12)
    got, _, iters = finder_lib.SlowPointFinder(model, small).minimize(init, x_bar)
    want = _tf1_adam_reference(model, init, x_bar, 30, 0.05, 12)
    np.testing.assert_array_equal(iters, [30] * 4)
    np.testing.assert_allclose(got, want, atol=2e-4)
    no_drop = _tf1_adam_reference(model, init, x_bar, 30, 0.05, 10**9)
    self.assertGreater(np.max(np.abs(no_drop - want)), 1e-2)   # the drop matters here

  def test_centre_trials_share_one_sigma_third_noise_sequence(self):
    cfg = config_lib.resolve("quick", "mnist_sample", {})
    inputs, classes = slow_points.paper_centre_inputs(self.source, cfg, seed=0)
    self.assertEqual(inputs.shape, (1000, 15, 785))     # 100 per class, image + 14 frames
    np.testing.assert_array_equal(classes, np.repeat(np.arange(10), 100))
    np.testing.assert_array_equal(inputs[:, :, -1], 0.0)          # trigger off
    noise = inputs[:, 1:, :-1]
    np.testing.assert_array_equal(noise, np.broadcast_to(noise[0], noise.shape))  # shared
    std = float(np.asarray(self.source.std).ravel()[0])
    self.assertAllClose(noise[0].std(), std / 3, rtol=0.03)
    self.assertAllClose(noise[0].mean(), float(np.asarray(self.source.mean).ravel()[0]),
                        atol=0.01)
    # Frame 0 shows train-split images of the trial's class.
    train = self.source.train.images.reshape(len(self.source.train.labels), -1) / 255.0
    for i in (0, 150, 999):
      match = np.flatnonzero(np.all(np.abs(train - inputs[i, 0, :-1]) < 1e-6, axis=1))
      self.assertNotEmpty(match)
      self.assertEqual(int(self.source.train.labels[match[0]]), int(classes[i]))

  def test_centres_use_the_state_after_14_noise_steps_and_the_11_output_test(self):
    cfg = config_lib.resolve("quick", "mnist_sample", dict(units=5))
    tf.random.set_seed(7)
    model = network.build(cfg, self.source.frame_shape)
    gen = trials.generator_for(self.source, "test", cfg)
    x_bar = slow_points.mean_input_features(model, gen)
    inputs, classes = slow_points.paper_centre_inputs(self.source, cfg, seed=0,
                                                      trials_per_class=8)
    # The state after the 15th frame (14 steps after the stimulus) ...
    final = np.stack([_run_numpy(model, inp) for inp in inputs])
    # ... read out by x̄ + trigger, argmax over all 11 outputs, minus 1.
    read_x = np.concatenate([x_bar[:-1], [1.0]])[None].repeat(len(final), 0)
    new = _numpy_transition(model, final, read_x)
    w, b = (np.asarray(v, np.float64) for v in (model.head.kernel, model.head.bias))
    pred = np.argmax(new @ w + b, axis=1) - 1
    centres, counts, states, got_classes = slow_points.paper_class_centres(
        model, self.source, cfg, x_bar, seed=0, trials_per_class=8)
    np.testing.assert_allclose(states, final, atol=1e-5)
    np.testing.assert_array_equal(got_classes, classes)
    for c in range(10):
      ok = (pred == c) & (classes == c)
      self.assertEqual(int(counts[c]), int(ok.sum()))
      if ok.any():
        np.testing.assert_allclose(centres[c], final[ok].mean(0), atol=1e-5)
    # Null can win the test: a huge null bias leaves no trial counted.
    model.head.bias.assign(np.float32([100.0] + [0.0] * 10))
    centres, counts, _, _ = slow_points.paper_class_centres(model, self.source, cfg, x_bar,
                                                            seed=0, trials_per_class=8)
    np.testing.assert_array_equal(counts, 0)
    self.assertTrue(np.all(np.isnan(centres)))
    pts = slow_points.ClassPointFinder(model, include_null=True).describe(final[:3], x_bar)
    np.testing.assert_array_equal(pts.extras["readout"], [-1, -1, -1])


def _run_numpy(model, inputs):
  state = np.zeros([1, model.state_size])
  for frame in inputs:
    state = _numpy_transition(model, state, frame[None].astype(np.float64))
  return state[0]


class FormatTest(tf.test.TestCase):

  def test_an_older_file_is_refused_with_the_fix(self):
    path = os.path.join(self.get_temp_dir(), "old.npz")
    pts = _points([[0.1, 0.2]], q=[1e-3])
    arrays = {k: getattr(pts, k) for k in points_lib.FIELDS[:7]}
    np.savez(path, format_version=np.int32(1), **arrays)
    with self.assertRaisesRegex(slow_points.OldFormatError, "re-run --mode=slow_points"):
      slow_points.load_points(path)
    with self.assertRaisesRegex(points_lib.FormatVersionError, r"older slow-point format \(1"):
      points_lib.SlowPoints.load(path)

  def test_a_broken_file_is_one_line_run_error(self):
    path = os.path.join(self.get_temp_dir(), "broken.npz")
    with open(path, "wb") as f:
      f.write(b"not a zip")
    with self.assertRaisesRegex(artifacts.RunError, "not a readable SlowPoints file"):
      slow_points.load_points(path)

  def test_the_format_2_fixture_loads_with_the_application_fields_in_extras(self):
    raw = np.load(_FIXTURE_V2, allow_pickle=False)
    self.assertEqual(int(raw["format_version"]), 2)
    pts = slow_points.load_points(_FIXTURE_V2)
    self.assertLen(pts, 43)
    for name in points_lib.FIELDS[:7] + ("stop_reason", "in_box"):
      np.testing.assert_array_equal(getattr(pts, name), raw[name])
      self.assertEqual(getattr(pts, name).dtype, raw[name].dtype)
    self.assertEqual(sorted(pts.extras), sorted(slow_points.CLASS_EXTRAS))
    for name in slow_points.CLASS_EXTRAS:
      np.testing.assert_array_equal(pts.extras[name], raw[name])
    self.assertEqual(pts.extras["dist_traj"].shape, (43, slow_points.NUM_DIST_TRAJ))
    # Not recorded in format 2: starting states (NaN), inputs (no columns); stability derived.
    self.assertTrue(np.all(np.isnan(pts.init_states)) and pts.init_states.shape == (43, 8))
    self.assertEqual(pts.inputs.shape, (43, 0))
    np.testing.assert_array_equal(pts.stable, raw["max_abs_eig"] < 1)
    # Rewritten, it is format 3 and reads back the same, extras included.
    path = os.path.join(self.get_temp_dir(), "v3.npz")
    pts.save(path, dist_traj_times=raw["dist_traj_times"])
    self.assertEqual(int(np.load(path)["format_version"]), points_lib.FORMAT_VERSION)
    again = slow_points.load_points(path)
    for name in slow_points.CLASS_EXTRAS:
      np.testing.assert_array_equal(again.extras[name], pts.extras[name])
    np.testing.assert_array_equal(again.states, pts.states)
    unique = pts.unique(1e-3)
    self.assertEqual(sorted(unique.extras), sorted(slow_points.CLASS_EXTRAS))


class ConfigTest(tf.test.TestCase):

  def test_authors_config_holds_their_search(self):
    sp = finder_lib.SlowPointConfig.authors()
    self.assertEqual((sp.learning_rate, sp.decay, sp.max_iters, sp.drop_step, sp.drop_factor,
                      sp.early_stop, sp.lstm_c, sp.objective_scale, sp.tf1_adam),
                     (1e-3, 1.0, 100_000, 40_000, 0.1, False, "free", 1.0, True))
    self.assertEqual(finder_lib.SlowPointConfig.authors(max_iters=50).drop_step, 20)
    self.assertEqual(finder_lib.SlowPointConfig.authors(max_iters=50, drop_step=7).drop_step, 7)
    self.assertEqual(slow_points.recipe_config("paper"), sp)

  def test_library_raises_value_error_and_the_application_input_error(self):
    with self.assertRaisesRegex(ValueError, "max_iters") as caught:
      finder_lib.SlowPointConfig(max_iters=0)
    self.assertNotIsInstance(caught.exception, config_lib.InputError)
    with self.assertRaisesRegex(config_lib.InputError, "`max_iters` must be a positive integer"):
      slow_points.recipe_config("default", None, max_iters=0)
    with self.assertRaisesRegex(config_lib.InputError, "q_tol"):
      slow_points.recipe_config("paper", None, q_tol=-1.0)
