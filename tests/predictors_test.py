"""Tests for haviv_tf.probes.predictors: every diagnostic and predictor against NumPy on small networks."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from haviv_tf.task import datasets
from haviv_tf.models import network
from haviv_tf.probes import predictors
from haviv_tf import dynamics
from haviv_tf.task import trials

_FRAME = (2, 2, 1)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _numpy_transition(model, state, features):
  """F(s, x) in NumPy (float64)."""
  cell, u = model.cell, model.units
  w, rk, b = (np.asarray(v, np.float64) for v in (cell.kernel, cell.recurrent_kernel, cell.bias))
  xp = features @ w + b
  if model.arch == "gru":
    zr = _sigmoid(xp[:, :2 * u] + state @ rk[:, :2 * u])
    z, r = zr[:, :u], zr[:, u:]
    return (1 - z) * state + z * np.tanh(xp[:, 2 * u:] + (r * state) @ rk[:, 2 * u:])
  h, c = state[:, :u], state[:, u:]
  a = xp + h @ rk
  i, g, f, o = (_sigmoid(a[:, :u]), np.tanh(a[:, u:2 * u]), _sigmoid(a[:, 2 * u:3 * u]),
                _sigmoid(a[:, 3 * u:]))
  c = f * c + i * g
  return np.concatenate([o * np.tanh(c), c], axis=1)


def _speed_coords(model, s):
  if model.arch == "lstm":
    u = model.units
    return np.concatenate([s[:, :u], np.tanh(s[:, u:])], axis=1)
  return s


def _generator(num_images=40):
  rng = np.random.default_rng(0)
  split = datasets.Split(rng.integers(0, 256, [num_images, 2, 2, 1], dtype=np.uint8),
                         np.arange(num_images, dtype=np.int32) % 10)
  return trials.TrialGenerator(split, np.float32([0.3]), np.float32([0.4]))


class PredictorTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters("gru", "lstm")
  def test_expected_flow_speed_matches_numpy(self, arch):
    tf.random.set_seed(0)
    model = network.DelayedClassifier(arch=arch, units=3, frame_shape=_FRAME)
    rng = np.random.default_rng(1)
    states = rng.uniform(-0.8, 0.8, [4, model.state_size]).astype(np.float32)
    frames = (0.3 + 0.4 * rng.normal(size=[500, 4])).astype(np.float32)
    got, se, used = predictors.expected_flow_speed(model, _generator(), states,
                                                   noise_frames=frames, batch_size=128)
    feats = np.concatenate([frames, np.zeros([500, 1])], axis=1).astype(np.float64)
    for i, s in enumerate(states.astype(np.float64)):
      new = _speed_coords(model, _numpy_transition(model, np.repeat(s[None], 500, 0), feats))
      d = new.mean(0) - _speed_coords(model, s[None])[0]
      self.assertAllClose(got[i], np.linalg.norm(d), rtol=1e-4)
      proj = new @ (d / np.linalg.norm(d))
      self.assertAllClose(se[i], proj.std(ddof=1) / np.sqrt(500), rtol=1e-3)
    np.testing.assert_array_equal(used, 500)
    # x̄ is not the average: ||F(s, x̄) - s|| differs from ||E_x F(s, x) - s||.
    x_bar = np.float32([0.3] * 4 + [0.0])
    at_mean = dynamics.speeds(model, states, x_bar)
    self.assertGreater(float(np.max(np.abs(at_mean - got) / got)), 1e-3)

  def test_expected_flow_speed_adds_frames_until_the_error_is_small(self):
    tf.random.set_seed(0)
    model = network.DelayedClassifier(arch="gru", units=3, frame_shape=_FRAME)
    states = np.float32([[0.1, -0.2, 0.3], [0.5, 0.5, -0.5]])
    speed, se, used = predictors.expected_flow_speed(model, _generator(), states, rel_se=0.01,
                                                     min_frames=64, max_frames=1 << 16,
                                                     batch_size=64)
    self.assertTrue(np.all(se < 0.01 * speed))
    self.assertTrue(np.all(used >= 64))
    self.assertTrue(np.all(np.log2(used / 64) == np.round(np.log2(used / 64))))  # doublings

  def test_time_constant_matches_numpy_eigenvalues(self):
    tf.random.set_seed(4)
    model = network.DelayedClassifier(arch="gru", units=4, frame_shape=_FRAME)
    rng = np.random.default_rng(3)
    states = rng.uniform(-0.5, 0.5, [3, 4]).astype(np.float32)
    x_bar = np.float32([0.3] * 4 + [0.0])
    pts = dynamics.SlowPointFinder(model).describe(states, x_bar)
    tau = predictors.time_constants(pts.max_abs_eig)
    feats = np.repeat(x_bar[None].astype(np.float64), 1, 0)
    for i, s in enumerate(states.astype(np.float64)):
      jac = np.zeros([4, 4])
      for j in range(4):
        d = np.zeros(4)
        d[j] = 1e-6
        jac[:, j] = (_numpy_transition(model, (s + d)[None], feats)[0]
                     - _numpy_transition(model, (s - d)[None], feats)[0]) / 2e-6
      lam = np.max(np.abs(np.linalg.eigvals(jac)))
      self.assertAllClose(tau[i], -1 / np.log(lam) if lam < 1 else np.inf, rtol=1e-3)
    np.testing.assert_array_equal(predictors.time_constants([1.0, 1.5]), [np.inf, np.inf])

  def test_cloud_states_match_a_numpy_run_and_rates_the_formulas(self):
    tf.random.set_seed(2)
    model = network.DelayedClassifier(arch="gru", units=3, frame_shape=_FRAME)
    gen = _generator()
    cloud = predictors.trajectory_cloud(model, gen, times=(3, 7), per_class=2, seed=5,
                                        batch_size=8)
    self.assertEqual(cloud.states.shape, (2, 20, 3))
    # NumPy: the same stimuli and noise frames (the cloud's seeds), stepped by hand.
    for k, b0 in enumerate(range(0, 20, 8)):
      cls = cloud.classes[b0:b0 + 8]
      s_stim, s_noise, _ = tf.unstack(tf.random.experimental.stateless_split(
          tf.constant([5, predictors._CLOUD_STREAM + k], tf.int64), 3))  # pylint: disable=protected-access
      images, _ = gen.stimuli(s_stim, len(cls), classes=tf.constant(cls))
      state = _numpy_transition(model, np.zeros([len(cls), 3]), np.concatenate(
          [images.numpy(), np.zeros([len(cls), 1])], 1).astype(np.float64))
      lo, hi = state.min(0), state.max(0)
      for t in range(1, 8):
        x = gen.noise(s_noise, t, len(cls)).numpy().astype(np.float64)
        state = _numpy_transition(model, state, np.concatenate([x, np.zeros([len(cls), 1])], 1))
        lo, hi = np.minimum(lo, state.min(0)), np.maximum(hi, state.max(0))
        if t in (3, 7):
          np.testing.assert_allclose(cloud.states[cloud.at(t), b0:b0 + 8], state, atol=1e-5)
      self.assertTrue(np.all(cloud.lo <= lo + 1e-6) and np.all(cloud.hi >= hi - 1e-6))
    # Rates: hand formulas on the cloud's arrays.
    drift, spread, decay = predictors.cloud_rates(cloud, 3, 7)
    for c in range(10):
      sel = cloud.classes == c
      a, b = cloud.states[0, sel].astype(np.float64), cloud.states[1, sel].astype(np.float64)
      self.assertAllClose(drift[c], np.linalg.norm(b.mean(0) - a.mean(0)) / 4)
      rms = lambda x: np.sqrt(np.mean(np.sum((x - x.mean(0)) ** 2, 1)))
      self.assertAllClose(spread[c], (rms(b) - rms(a)) / 4)
      self.assertAllClose(decay[c], (cloud.correct[0, sel].mean()
                                     - cloud.correct[1, sel].mean()) / 4)

  def test_point_distances_are_brute_force_nearest_states(self):
    rng = np.random.default_rng(0)
    classes = np.arange(30) % 10
    states = rng.normal(size=[3, 30, 4]).astype(np.float32)
    cloud = predictors.Cloud(times=np.array([15, 100, 1000]), states=states,
                             correct=np.ones([3, 30], bool), classes=classes,
                             lo=states.min((0, 1)), hi=states.max((0, 1)))
    pts = dynamics.SlowPoints(
        states=rng.normal(size=[3, 4]), speed=np.ones(3), q=np.ones(3),
        eigenvalues=np.ones([3, 1]), max_abs_eig=np.ones(3), num_unstable=np.zeros(3),
        iters=np.zeros(3), extras=dict(readout=[0, 1, 2], init_class=[2, 7, -1]))
    centres = rng.normal(size=[10, 4]).astype(np.float32)
    centres[7] = np.nan
    dc, dt = predictors.point_distances(pts, centres, cloud, (15, 100, 1000))
    self.assertAllClose(dc[0], np.linalg.norm(pts.states[0] - centres[2]))
    self.assertTrue(np.isnan(dc[1]) and np.isnan(dc[2]) and np.all(np.isnan(dt[2])))
    for p, c in ((0, 2), (1, 7)):
      for j in range(3):
        want = np.min(np.linalg.norm(states[j, classes == c] - pts.states[p], axis=1))
        self.assertAllClose(dt[p, j], want)


if __name__ == "__main__":
  tf.test.main()
