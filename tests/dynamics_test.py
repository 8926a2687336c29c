"""Tests for haviv_tf.dynamics (core, finder, points, linearize) on Keras 3 cells, layers, SavedModels.

The hand-set cells have zero input weights and decoupled units with recurrent gain 2, so every
unit's fixed points are 0 and ±h*, with h* the root of one scalar equation (scipy brentq).
"""

import importlib.util
import itertools
import os
import shutil
import tempfile

from absl.testing import parameterized
import keras
import numpy as np
from scipy import optimize
import tensorflow as tf

from haviv_tf import dynamics
from haviv_tf.analysis import export
from haviv_tf.models import network

_GAIN, _BIG, _UNITS, _INPUTS = 2.0, 20.0, 2, 3
_CELLS = ("simple", "gru", "gru_reset_before", "lstm")
_FAST = dynamics.SlowPointConfig(max_iters=3000, jit_compile=False, q_tol=1e-12)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _cell(kind, units=_UNITS):
  return {"simple": lambda: keras.layers.SimpleRNNCell(units),
          "gru": lambda: keras.layers.GRUCell(units),
          "gru_reset_before": lambda: keras.layers.GRUCell(units, reset_after=False),
          "lstm": lambda: keras.layers.LSTMCell(units)}[kind]()


def _hand_set(kind):
  """A built cell with known fixed points; returns (cell, h*, c* or None).

  SimpleRNN: h = tanh(2 h). GRU (z = 1/2, r = sigmoid(20)): h = tanh(2 r h). LSTM (i = f = 1/2,
  o = sigmoid(20)): c = tanh(2 h), h = o tanh(c).
  """
  cell, u = _cell(kind), _UNITS
  cell.build((None, _INPUTS))
  weights = [np.zeros(w.shape, np.float32) for w in cell.get_weights()]
  kernel, recurrent, bias = weights
  r = _sigmoid(_BIG)
  if kind == "simple":
    recurrent[:] = _GAIN * np.eye(u)
    h_star = optimize.brentq(lambda h: np.tanh(_GAIN * h) - h, 0.1, 1.0)
  elif kind.startswith("gru"):          # Keras gate order z, r, candidate
    recurrent[:, 2 * u:] = _GAIN * np.eye(u)
    if bias.ndim == 2:                  # reset_after: [input bias, recurrent bias]
      bias[0, u:2 * u] = _BIG
    else:
      bias[u:2 * u] = _BIG
    h_star = optimize.brentq(lambda h: np.tanh(_GAIN * r * h) - h, 0.1, 1.0)
  else:                                 # Keras gate order i, f, c, o
    recurrent[:, 2 * u:3 * u] = _GAIN * np.eye(u)
    bias[3 * u:] = _BIG
    h_star = optimize.brentq(lambda h: r * np.tanh(np.tanh(_GAIN * h)) - h, 0.1, 1.0)
  cell.set_weights([kernel, recurrent, bias])
  c_star = np.tanh(_GAIN * h_star) if kind == "lstm" else None
  return cell, h_star, c_star


def _true_fixed_points(h_star, c_star):
  out = []
  for signs in itertools.product((-1.0, 0.0, 1.0), repeat=_UNITS):
    h = np.asarray(signs) * h_star
    out.append(h if c_star is None else np.concatenate([h, np.asarray(signs) * c_star]))
  return np.asarray(out)


def _inits(state_size, n=24, seed=0):
  return np.random.default_rng(seed).uniform(-0.95, 0.95, [n, state_size]).astype(np.float32)


class KerasCellTest(parameterized.TestCase):

  @parameterized.parameters(*_CELLS)
  def test_analytic_fixed_points(self, kind):
    cell, h_star, c_star = _hand_set(kind)
    truth = _true_fixed_points(h_star, c_star)
    x = np.zeros([_INPUTS], np.float32)
    rng = np.random.default_rng(0)
    near = truth + rng.uniform(-0.05, 0.05, truth.shape)   # one start beside each fixed point
    starts = np.concatenate([near, _inits(len(truth[0]), 16)]).astype(np.float32)
    unique, everything = dynamics.find_slow_points(cell, starts, x, _FAST)
    converged = everything[everything.stop_reason == dynamics.STOP_REASONS.index("q_tol")]
    self.assertGreaterEqual(len(converged), len(truth))
    dist = np.linalg.norm(converged.states[:, None] - truth[None], axis=-1).min(axis=1)
    np.testing.assert_array_less(dist, 1e-3)       # every converged point is a true one
    found = np.linalg.norm(unique.states[:, None] - truth[None], axis=-1).min(0)
    np.testing.assert_array_less(found, 1e-3)      # and every true one (saddles too) is found
    self.assertTrue(not everything.extras and np.all(everything.in_box))
    np.testing.assert_array_equal(everything.stable, everything.max_abs_eig < 1)
    np.testing.assert_array_equal(everything.init_states, starts)
    # At the stable points every eigenvalue lies inside the unit circle.
    at_stable = unique[np.all(np.abs(unique.states[:, :_UNITS]) > 0.5 * h_star, axis=1)]
    self.assertTrue(np.all(at_stable.max_abs_eig < 1.0))

  @parameterized.parameters(*_CELLS)
  def test_jacobian_matches_finite_differences(self, kind):
    cell = _cell(kind, units=3)
    dyn = dynamics.from_cell(cell, input_size=_INPUTS)
    rng = np.random.default_rng(1)
    states = rng.uniform(-0.9, 0.9, [4, dyn.state_size]).astype(np.float32)
    x = rng.standard_normal([4, _INPUTS]).astype(np.float32)
    jac = dynamics.jacobians(cell, states, x)
    eps = 1e-2
    fd = np.zeros_like(jac)
    for j in range(dyn.state_size):
      d = np.zeros_like(states)
      d[:, j] = eps
      hi = dyn.transition(tf.constant(states + d), tf.constant(x)).numpy()
      lo = dyn.transition(tf.constant(states - d), tf.constant(x)).numpy()
      fd[:, :, j] = (hi - lo) / (2 * eps)
    np.testing.assert_allclose(jac, fd, atol=2e-3)

  def test_box_of_each_cell(self):
    for kind in _CELLS:
      lo, hi = dynamics.from_cell(_cell(kind), input_size=_INPUTS).bounds
      np.testing.assert_array_equal(hi[:_UNITS], 1.0)
      np.testing.assert_array_equal(lo[:_UNITS], -1.0)
      if kind == "lstm":
        self.assertTrue(np.all(np.isinf(hi[_UNITS:])))
    relu = dynamics.from_cell(keras.layers.SimpleRNNCell(2, activation="relu"), input_size=1)
    self.assertTrue(np.all(np.isinf(relu.bounds[1])))
    c_box = dynamics.from_cell(_cell("lstm"), input_size=_INPUTS, c_bounds=(-0.5, 0.5))
    np.testing.assert_array_equal(c_box.bounds[1][_UNITS:], 0.5)

  def test_lstm_c_bounds_hold_when_the_fixed_point_lies_outside(self):
    cell, h_star, c_star = _hand_set("lstm")
    c_cap = 0.5 * c_star          # the nonzero fixed points' c lies beyond the box
    inits = np.tile(np.float32([[0.9, 0.9, 0.4, 0.4]]), [3, 1])
    _, free = dynamics.find_slow_points(cell, inits, np.zeros(_INPUTS), _FAST)
    np.testing.assert_allclose(free.states[0], [h_star, h_star, c_star, c_star], atol=1e-3)
    visited = np.float32([[[0.5, 0.5, -c_cap, -c_cap]], [[0.0, 0.0, c_cap, c_cap]]])  # c: ±c_cap
    _, boxed = dynamics.find_slow_points(cell, inits, np.zeros(_INPUTS), _FAST,
                                            trajectories=visited)
    self.assertTrue(np.all(np.abs(boxed.states[:, _UNITS:]) <= c_cap + 1e-7))
    np.testing.assert_allclose(boxed.states[:, _UNITS:], c_cap, atol=1e-6)  # on the face
    self.assertGreater(boxed.q.min(), 1e-6)     # a slow point, not a fixed point


class LeakyCell(keras.layers.Layer):
  """A user's own cell: h' = a h + x (linear; fixed point x / (1 - a))."""

  def __init__(self, units, a, **kwargs):
    super().__init__(**kwargs)
    self.units, self.a, self.state_size = units, a, units

  def call(self, inputs, states):
    h = self.a * states[0] + inputs
    return h, [h]


class UserCellTest(tf.test.TestCase):

  def test_linear_fixed_point_and_bounds(self):
    cell = LeakyCell(2, 0.5)
    x = np.float32([0.2, 1.5])             # fixed point (0.4, 3.0): its 2nd unit is outside [-1, 1]
    dyn = dynamics.from_cell(cell, input_size=2)
    self.assertTrue(np.all(np.isinf(dyn.bounds[1])))
    _, free = dynamics.find_slow_points(cell, _inits(2, 4), x, _FAST, input_size=2)
    np.testing.assert_allclose(free.states, np.tile([[0.4, 3.0]], [4, 1]), atol=1e-4)
    np.testing.assert_allclose(free.eigenvalues.real, 0.5, atol=1e-6)
    _, boxed = dynamics.find_slow_points(cell, _inits(2, 4), x, _FAST, bounds=(-1.0, 1.0),
                                            input_size=2)
    # q = ½ ((a - 1) h + x)² is separable: unit 0 still reaches 0.4, unit 1 stops on the face.
    np.testing.assert_allclose(boxed.states, np.tile([[0.4, 1.0]], [4, 1]), atol=1e-4)
    np.testing.assert_allclose(boxed.speed, 1.0, atol=1e-4)


class RoutesTest(tf.test.TestCase):

  def test_cell_layer_and_saved_model_find_the_same_points(self):
    # (The LSTM's SavedModel route, with its (h, tanh c) speed, is the export test below.)
    cell, _, _ = _hand_set("gru")
    net = keras.Sequential([keras.Input((None, _INPUTS)),
                            keras.layers.GRU(_UNITS, return_sequences=True), keras.layers.Dense(1)])
    net.layers[0].cell.set_weights(cell.get_weights())
    cfg = dynamics.SlowPointConfig(max_iters=400, chunk=200, jit_compile=False)
    s0 = _inits(_UNITS, 6)
    x = np.zeros([_INPUTS], np.float32)
    with tempfile.TemporaryDirectory() as tmp:
      path = dynamics.save_step(net.layers[0], os.path.join(tmp, "step"))
      _, via_saved = dynamics.find_slow_points(path, s0, x, cfg)
    _, via_cell = dynamics.find_slow_points(cell, s0, x, cfg)
    _, via_layer = dynamics.find_slow_points(net.layers[0], s0, x, cfg)
    for other in (via_layer, via_saved):
      np.testing.assert_allclose(other.states, via_cell.states, atol=1e-6)
      np.testing.assert_allclose(other.eigenvalues, via_cell.eigenvalues, atol=1e-5)
      np.testing.assert_array_equal(other.stop_reason, via_cell.stop_reason)

  def test_trajectories_match_the_keras_layer(self):
    layer = keras.layers.LSTM(3, return_sequences=True, return_state=True)
    inputs = np.random.default_rng(2).standard_normal([2, 5, _INPUTS]).astype(np.float32)
    seq, h_last, c_last = layer(inputs)
    traj = dynamics.trajectories(layer, inputs)
    np.testing.assert_allclose(traj[:, :, :3], seq, atol=1e-6)
    np.testing.assert_allclose(traj[:, -1, 3:], c_last, atol=1e-6)
    lo, hi = dynamics.reached_bounds(layer, traj)
    np.testing.assert_array_equal(hi[:3], 1.0)
    np.testing.assert_allclose(hi[3:], traj[..., 3:].max(axis=(0, 1)))
    starts = dynamics.sample_states(traj, 7, min_time=2, seed=3)
    self.assertEqual(starts.shape, (7, 6))
    self.assertTrue(all(np.any(np.all(traj[:, 2:] == s, axis=-1)) for s in starts))

  def test_project_export_matches_the_delayed_classifier(self):
    model = network.DelayedClassifier(arch="lstm", units=3, frame_shape=(2, 2, 1),
                                     readout="linear")
    model(tf.zeros([1, 2, 5]))
    x = np.float32([0.5, 0.5, 0.5, 0.5, 0.0])
    s0 = np.random.default_rng(4).uniform(-0.9, 0.9, [5, 6]).astype(np.float32)
    cfg = dynamics.SlowPointConfig(max_iters=200, jit_compile=False)
    with tempfile.TemporaryDirectory() as tmp:
      path = export.export_saved_model(model, os.path.join(tmp, "sm"),
                                       dict(noise_mean=[0.5], noise_std=[0.1]))
      dyn = dynamics.from_saved_model(path)
      np.testing.assert_array_equal(dyn.bounds[1], [1, 1, 1, np.inf, np.inf, np.inf])
      _, via_saved = dynamics.find_slow_points(dyn, s0, x, cfg)
    _, via_model = dynamics.SlowPointFinder(model, cfg).find(s0, x)
    np.testing.assert_allclose(via_saved.states, via_model.states, atol=1e-6)
    np.testing.assert_allclose(via_saved.q, via_model.q, rtol=1e-4, atol=1e-12)

  def test_bad_networks_and_options(self):
    with self.assertRaisesRegex(ValueError, "cannot find slow points of a Dense"):
      dynamics.as_dynamics(keras.layers.Dense(2))
    with self.assertRaisesRegex(ValueError, "not built"):
      dynamics.from_cell(keras.layers.GRUCell(2))
    with self.assertRaisesRegex(ValueError, "takes inputs of 3 entries, not 4"):
      dynamics.from_cell(_hand_set("gru")[0], input_size=4)
    with self.assertRaisesRegex(ValueError, "lo <= hi"):
      dynamics.from_cell(_cell("simple"), input_size=1, bounds=(1.0, -1.0))
    with self.assertRaisesRegex(ValueError, "must have 3 entries"):
      dynamics.find_slow_points(_cell("gru"), _inits(2, 2), np.zeros(4), _FAST,
                                   input_size=3)


_FLIPFLOP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples",
                         "flipflop.py")


class FlipFlopExampleTest(tf.test.TestCase):

  def test_shortened_example_runs(self):
    spec = importlib.util.spec_from_file_location("flipflop_example", _FLIPFLOP)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    inputs, targets = example.flipflop_trials(4, 30, seed=1)
    self.assertTrue(np.all(np.abs(targets) == 1.0))                # every bit set at t = 0
    self.assertTrue(np.all(targets[inputs != 0] == inputs[inputs != 0]))
    out = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, out, True)
    got = example.main(["--out", out, "--units", "4", "--train_trials", "64", "--length", "16",
                        "--epochs", "1", "--batch_size", "64", "--num_states", "8",
                        "--max_iters", "100"])
    self.assertTrue(os.path.getsize(os.path.join(out, "flipflop.png")) > 0)
    saved = dynamics.SlowPoints.load(os.path.join(out, "slow_points.npz"))
    np.testing.assert_array_equal(saved.states, got["unique"].states)
    self.assertEqual(len(got["stable"]) + len(got["saddles"]),
                     int(np.sum(saved.q < 1e-8)))


if __name__ == "__main__":
  tf.test.main()
