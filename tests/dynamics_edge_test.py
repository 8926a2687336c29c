"""The slow-point library at its edges: no starting states, non-finite points, files that must
not pickle or lose fields, foreign files, one class centre, float64 tensors, back-tracking's
merge coordinates."""

import os
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from haviv_tf import dynamics
from haviv_tf.dynamics import linearize
from haviv_tf.dynamics import points as points_lib
from haviv_tf.dynamics import tracking


def _gru(units=4):
  keras.utils.set_random_seed(0)   # the same weights every run (GRUCell's seed is dropout's)
  cell = keras.layers.GRUCell(units)
  cell.build((None, 2))
  return cell


def _config(**kw):
  return dynamics.SlowPointConfig(**dict(dict(max_iters=3000, chunk=100, jit_compile=False,
                                              q_tol=1e-8, num_eigenvalues=4), **kw))


@pytest.mark.parametrize("cell_class", [keras.layers.GRUCell, keras.layers.LSTMCell])
def test_no_starting_states_give_no_points_for_either_cell(cell_class):
  cell = cell_class(3)
  cell.build((None, 2))
  size = 6 if cell_class is keras.layers.LSTMCell else 3
  empty = np.zeros([0, size], np.float32)
  unique, found = dynamics.find_slow_points(cell, empty, np.zeros(2, np.float32), _config())
  assert len(unique) == len(found) == 0 and found.states.shape == (0, size)
  assert dynamics.speeds(cell, empty, np.zeros(2, np.float32)).shape == (0,)


def test_a_nan_start_stops_at_once_and_the_others_search_on_their_own_rules():
  cell = _gru()
  starts = np.random.default_rng(0).uniform(-0.5, 0.5, (6, 4)).astype(np.float32)
  starts[3] = np.nan
  finder = dynamics.SlowPointFinder(cell, _config())
  _, found = finder.find(starts, np.zeros(2, np.float32))
  reasons = [dynamics.STOP_REASONS[r] for r in found.stop_reason]
  assert reasons[3] == "nonfinite" and found.iters[3] == 0
  assert not found.stable[3] and np.isnan(found.max_abs_eig[3])
  others = [r for i, r in enumerate(reasons) if i != 3]
  assert set(others) <= {"q_tol", "stalled"}, reasons   # they stopped by their own rules
  assert int(found.iters.max()) < 3000
  ok = np.delete(np.arange(6), 3)
  assert np.all(np.isfinite(found.states[ok])) and np.all(found.q[ok] < 1e-8)
  # The same five points without the NaN one: the same points (to float rounding: a batch of
  # another size may round the products differently).
  _, alone = finder.find(starts[ok], np.zeros(2, np.float32))
  np.testing.assert_allclose(alone.states, found.states[ok], atol=1e-5)
  np.testing.assert_array_equal(alone.stop_reason, found.stop_reason[ok])


@tf.custom_gradient
def _zero_with_infinite_gradient(s):
  return tf.zeros_like(s), lambda dy: tf.fill(tf.shape(dy), np.float32(np.inf))


def test_points_with_an_infinite_gradient_keep_their_state():
  # F(s) = 1.001 s + z(s), z = 0 with an infinite gradient: q = 0 at s = 0 (converged, kept
  # there); at s = 0.5, q > 0 and the gradient is not finite (stopped there, "nonfinite").
  dyn = dynamics.Dynamics(lambda s, x: 1.001 * s + _zero_with_infinite_gradient(s),
                          state_size=1, input_size=1, name="inf-grad")
  finder = dynamics.SlowPointFinder(dyn, _config(q_tol=1e-14, max_iters=200))
  states, q, iters, info = finder.minimize(np.array([[0.0], [0.5]], np.float32),
                                           np.zeros(1, np.float32), return_info=True)
  np.testing.assert_array_equal(states, [[0.0], [0.5]])
  assert [dynamics.STOP_REASONS[r] for r in info["stop_reason"]] == ["q_tol", "nonfinite"]
  np.testing.assert_array_equal(iters, [0, 0])
  assert q[0] == 0.0 and np.isfinite(q[1])


def test_the_last_step_speed_of_a_point_stopped_by_q_tol_is_at_its_final_state():
  cell = _gru()
  starts = np.random.default_rng(1).uniform(-0.5, 0.5, (4, 4)).astype(np.float32)
  finder = dynamics.SlowPointFinder(cell, _config())
  states, q, _, info = finder.minimize(starts, np.zeros(2, np.float32), return_info=True)
  done = info["stop_reason"] == dynamics.STOP_REASONS.index("q_tol")
  assert done.any()
  np.testing.assert_allclose(info["q_last"][done], q[done], rtol=1e-6)
  assert np.all(info["q_last"][done] < 1e-8)


def _points(n=3, **extras):
  rng = np.random.default_rng(0)
  states = rng.normal(size=(n, 4)).astype(np.float32)
  speed = rng.uniform(0, 1, n).astype(np.float32)
  return points_lib.SlowPoints(states=states, speed=speed, q=0.5 * speed ** 2,
                               eigenvalues=np.zeros((n, 2), np.complex128),
                               max_abs_eig=np.zeros(n), num_unstable=np.zeros(n, np.int32),
                               iters=np.zeros(n, np.int32), init_states=states,
                               inputs=np.zeros((n, 2), np.float32), extras=extras)


def test_saving_refuses_an_object_array_instead_of_pickling_it(tmp_path):
  path = str(tmp_path / "p.npz")
  with pytest.raises(ValueError, match="Python objects"):
    _points().save(path, note=np.array([{"a": 1}], dtype=object))
  assert not os.path.exists(path)
  with pytest.raises(ValueError, match="Python objects"):
    points_lib.save_npz(path, x=np.array([None, 1], dtype=object))


def test_any_array_name_survives_a_save(tmp_path):
  # np.savez's own keywords (file, allow_pickle) as names of a caller's arrays.
  path = str(tmp_path / "p.npz")
  p = _points(allow_pickle=np.arange(3), file=np.ones(3))
  p.save(path)
  back = points_lib.SlowPoints.load(path)
  np.testing.assert_array_equal(back.extras["allow_pickle"], np.arange(3))
  np.testing.assert_array_equal(back.extras["file"], np.ones(3))


def test_loading_a_foreign_or_newer_file_says_what_it_is(tmp_path):
  foreign = str(tmp_path / "foreign.npz")
  np.savez(foreign, steps=np.arange(3))
  with pytest.raises(ValueError, match="not a SlowPoints file") as e:
    points_lib.SlowPoints.load(foreign)
  assert not isinstance(e.value, points_lib.FormatVersionError)
  newer = str(tmp_path / "newer.npz")
  _points().save(newer)
  arrays = dict(np.load(newer))
  arrays["format_version"] = np.int32(points_lib.FORMAT_VERSION + 1)
  np.savez(newer, **arrays)
  with pytest.raises(ValueError, match="newer than this haviv_tf reads"):
    points_lib.SlowPoints.load(newer)


def _track(**labels):
  t, p = 2, 3
  return tracking.Track(steps=np.array([20, 10]), points=np.zeros((t, p, 4), np.float32),
                        speed=np.ones((t, p), np.float32), q=np.ones((t, p), np.float32),
                        classes=np.arange(p), introduced=np.zeros(p, np.int64), merge_frac=0.05, merge_tol=0.1,
                        labels={k: np.asarray(v, np.int32) for k, v in labels.items()})


def test_a_track_label_that_would_overwrite_the_files_own_lists_is_refused(tmp_path):
  path = str(tmp_path / "t.npz")
  with pytest.raises(ValueError, match="may not be called 'names'"):
    _track(names=np.zeros((2, 3))).save(path)
  _track(label=np.zeros((2, 3))).save(path)
  assert set(tracking.Track.load(path).labels) == {"label"}


def test_a_damaged_track_file_is_a_value_error(tmp_path):
  path = tmp_path / "t.npz"
  path.write_bytes(b"PK\x03\x04 not really a zip")
  with pytest.raises(ValueError, match="not a readable Track file"):
    tracking.Track.load(str(path))
  assert issubclass(zipfile.BadZipFile, Exception)


def test_nearest_centres_with_one_centre_has_no_second():
  cell = _gru()
  pts = np.zeros((2, 4), np.float32)
  nearest, ratio = tracking.nearest_centres(cell, pts, np.ones((1, 4)))
  np.testing.assert_array_equal(nearest, [0, 0])
  np.testing.assert_array_equal(ratio, [0.0, 0.0])
  np.testing.assert_array_equal(tracking.centre_labels(nearest, ratio), [0, 0])


def test_float64_tensors_are_accepted_as_states_and_inputs():
  cell = _gru()
  s64 = tf.constant(np.zeros((2, 4)), tf.float64)
  x64 = tf.constant(np.zeros(2), tf.float64)
  got = linearize.speeds(cell, s64, x64)
  want = linearize.speeds(cell, np.zeros((2, 4), np.float32), np.zeros(2, np.float32))
  np.testing.assert_array_equal(got, want)


def test_spectra_of_a_non_finite_jacobian_are_nan_and_the_rest_are_computed():
  jac = np.stack([np.eye(3) * 0.5, np.full((3, 3), np.nan), np.eye(3) * 2.0])
  eig, max_abs, unstable = linearize.spectra(jac, 2)
  np.testing.assert_allclose(max_abs[[0, 2]], [0.5, 2.0])
  assert np.isnan(max_abs[1]) and np.all(np.isnan(eig[1]))
  np.testing.assert_array_equal(unstable, [0, 0, 3])
  np.testing.assert_array_equal(linearize.stable(max_abs), [True, False, False])


@pytest.mark.parametrize("route", ["cell", "dynamics"])
def test_save_step_keeps_an_lstms_speed_coordinates(route, tmp_path):
  keras.utils.set_random_seed(0)
  cell = keras.layers.LSTMCell(3)
  cell.build((None, 2))
  source = cell if route == "cell" else dynamics.from_cell(cell)
  path = dynamics.save_step(source, str(tmp_path / "step"), variables=cell.weights)
  meta = {k: v.numpy() for k, v in tf.saved_model.load(path).signatures["metadata"]().items()}
  assert meta["speed_coordinates"] == b"h,tanh(c)" and int(meta["units"]) == 3
  # Speeds through the SavedModel are those of the cell, (h, tanh c).
  s = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32) * 3
  x = np.zeros(2, np.float32)
  np.testing.assert_allclose(linearize.speeds(path, s, x), linearize.speeds(cell, s, x),
                             rtol=1e-5)


def test_calls_in_a_loop_on_one_network_trace_once_and_see_new_weights(tmp_path):
  cell = _gru()
  cfg = _config(max_iters=200)
  starts = np.random.default_rng(0).uniform(-0.5, 0.5, (6, 4)).astype(np.float32)
  dyn = dynamics.as_dynamics(cell)
  assert dynamics.as_dynamics(cell) is dyn                     # kept on the cell
  assert dynamics.as_dynamics(cell, input_size=2) is not dyn   # other options: another one
  first = [dynamics.find_slow_points(cell, starts, np.zeros(2), cfg)[1] for _ in range(3)]
  jac = [linearize.jacobians(cell, starts, np.zeros(2)) for _ in range(3)]
  dynamics.core.trajectories(cell, np.zeros((2, 5, 2), np.float32))
  dynamics.core.trajectories(cell, np.zeros((3, 9, 2), np.float32))   # another length
  counts = {k: f.experimental_get_tracing_count() for k, f in dyn._compiled.items()}
  assert counts == {("search_chunk", False): 1, "jacobian": 1, "trajectories": 1}
  assert all(np.array_equal(f.states, first[0].states) for f in first)
  assert all(np.array_equal(j, jac[0]) for j in jac)
  # The compiled functions read the variables when they run: new weights, new points.
  cell.set_weights([w * 0.5 for w in cell.get_weights()])
  assert not np.array_equal(linearize.jacobians(cell, starts, np.zeros(2)), jac[0])
  assert not np.allclose(dynamics.find_slow_points(cell, starts, np.zeros(2), cfg)[1].states,
                         first[0].states)
  assert dyn._compiled["jacobian"].experimental_get_tracing_count() == 1
  # A model holding the cell still saves: the kept Dynamics is not tracked as its child.
  layer = keras.layers.RNN(cell)
  model = keras.Sequential([keras.Input((3, 2)), layer])
  dynamics.find_slow_points(layer, starts, np.zeros(2), cfg)
  model.export(str(tmp_path / "exported"), verbose=False)
  assert os.path.exists(tmp_path / "exported" / "saved_model.pb")


def test_dedup_in_speed_coordinates_merges_lstm_points_apart_only_in_saturated_c():
  keras.utils.set_random_seed(0)
  cell = keras.layers.LSTMCell(3)
  cell.build((None, 2))
  dyn = dynamics.as_dynamics(cell)
  h = np.full((2, 3), 0.2, np.float32)
  c = np.array([[9.0] * 3, [12.0] * 3], np.float32)        # tanh 9 and tanh 12: 1 to 1e-7
  pts = dynamics.SlowPoints(
      states=np.concatenate([h, c], 1), init_states=np.zeros((2, 6), np.float32),
      inputs=np.zeros((2, 2), np.float32), speed=np.array([1e-3, 2e-3], np.float32),
      q=np.array([5e-7, 2e-6], np.float32), eigenvalues=np.zeros((2, 1), np.complex64),
      max_abs_eig=np.zeros(2, np.float32), num_unstable=np.zeros(2, np.int32),
      iters=np.zeros(2, np.int32), stop_reason=np.zeros(2, np.int32),
      in_box=np.ones(2, bool), stable=np.ones(2, bool))
  assert len(pts.unique(0.1)) == 2                              # c is 5.2 apart
  coords = dyn.speed_coordinates(tf.constant(pts.states)).numpy()
  assert len(pts.unique(0.1, coordinates=coords)) == 1          # (h, tanh c): the same point
  with pytest.raises(ValueError, match=r"`coordinates` must be \[2, C\]"):
    pts.unique(0.1, coordinates=coords[:1])
  finder = dynamics.SlowPointFinder(cell, _config(dedup_tol=0.1, dedup_space="speed"))
  assert len(finder.unique(pts)) == 1
  assert len(dynamics.SlowPointFinder(cell, _config(dedup_tol=0.1)).unique(pts)) == 2
  with pytest.raises(ValueError, match="unknown dedup_space 'h'"):
    _config(dedup_space="h")


def test_back_tracking_measures_merges_in_speed_coordinates_where_the_search_dedups_there(
    tmp_path):
  keras.utils.set_random_seed(0)
  layer = keras.layers.RNN(keras.layers.LSTMCell(3))
  layer.build((None, None, 2))
  # Going back, two points come together in h and tanh(c) while c stays 5.2 apart (saturated).
  h = np.array([[[0.9] * 3, [-0.9] * 3], [[0.2] * 3, [0.2] * 3]], np.float32)
  c = np.array([[[9.0] * 3, [9.0] * 3], [[9.0] * 3, [12.0] * 3]], np.float32)
  points = np.concatenate([h, c], -1)
  coords = np.concatenate([h, np.tanh(c)], -1).astype(np.float64)
  kw = dict(steps=np.array([20, 10]), points=points, speed=np.ones((2, 2), np.float32),
            q=np.ones((2, 2), np.float32), classes=np.arange(2), introduced=np.zeros(2, np.int64),
            merge_frac=0.05)
  in_states = tracking.Track(merge_tol=tracking.merge_tolerance(points[0]), **kw)
  in_speed = tracking.Track(merge_tol=tracking.merge_tolerance(coords[0]), coordinates=coords,
                            **kw)
  assert in_states.merges == [] and [m["step"] for m in in_speed.merges] == [10]
  assert (in_states.summary()["merge_space"], in_speed.summary()["merge_space"]) == (
      "state", "speed")
  path = str(tmp_path / "track.npz")
  in_speed.save(path)
  np.testing.assert_array_equal(tracking.Track.load(path).coordinates, coords)
  assert int(np.load(path)["track_format"]) == 2       # a reader of format 1 refuses it
  in_states.save(path)                                 # as every file before the field
  assert tracking.Track.load(path).coordinates is None
  assert int(np.load(path)["track_format"]) == 1
  # follow_back records the speed coordinates only when the search dedups in them.
  snaps = [dynamics.Snapshot(0, weights=tuple(w * 0.9 for w in layer.get_weights()))]
  start = np.zeros((2, 6), np.float32)
  for space, shape in (("speed", (2, 2, 6)), ("state", None)):
    track = dynamics.follow_back(layer, snaps, start, np.zeros(2, np.float32),
                                 _config(max_iters=50, dedup_space=space), final_step=5,
                                 progress=False)
    assert (None if track.coordinates is None else track.coordinates.shape) == shape
    if shape:
      assert track.merge_tol == pytest.approx(tracking.merge_tolerance(track.coordinates[0]))
      p = track.points
      np.testing.assert_allclose(track.coordinates,
                                 np.concatenate([p[..., :3], np.tanh(p[..., 3:])], -1), atol=1e-6)


class _Leaky(tf.Module):
  """A cell of one's own whose step reads a Python constant, alpha."""
  state_size = 3

  def __init__(self):
    super().__init__()
    self.alpha = 0.5
    self.w = tf.Variable(np.eye(3, dtype=np.float32))

  def __call__(self, inputs, states):
    h = states[0] if isinstance(states, (list, tuple)) else states
    new = (1 - self.alpha) * h + self.alpha * tf.tanh(h @ self.w + tf.reduce_sum(inputs))
    return new, [new]


def test_forget_drops_what_is_kept_and_copies_start_without_it():
  import copy  # pylint: disable=g-import-not-at-top
  cell = _Leaky()
  starts = np.full((2, 3), 0.3, np.float32)

  def jac(c):
    return linearize.jacobians(dynamics.as_dynamics(c, input_size=1), starts, np.zeros(1))

  first = jac(cell)
  cell.alpha = 0.1
  # The kept function was traced with alpha 0.5 (documented); forget makes it again.
  assert np.array_equal(jac(cell), first)
  dynamics.forget(cell)
  changed = jac(cell)
  assert not np.allclose(changed, first)
  # A deep copy starts with nothing kept: its own variables, not the original's.
  twin = copy.deepcopy(cell)
  twin.w.assign(2 * np.eye(3, dtype=np.float32))
  assert not np.allclose(jac(twin), changed)
  assert np.array_equal(jac(cell), changed)
  dynamics.forget(_Leaky())                                   # nothing kept: nothing happens
  # A function-valued option is not kept: a new one each call would keep one each call.
  dyn = dynamics.as_dynamics(cell, input_size=1, speed_coordinates=lambda s: s)
  assert dyn is not dynamics.as_dynamics(cell, input_size=1, speed_coordinates=lambda s: s)
  assert dynamics.core.trajectories(dynamics.as_dynamics(cell, input_size=1),
                                    np.zeros((2, 0, 1), np.float32)).shape == (2, 0, 3)
