"""Slow points followed back through weight snapshots (dynamics.tracking) and the Keras callback
that takes the snapshots (dynamics.snapshots), on 1-unit cells whose fixed points are known."""

import importlib.util
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from haviv_tf import dynamics

# A 1-unit search converges in a few hundred iterations; no XLA (compiling costs more).
SP = dynamics.SlowPointConfig(learning_rate=1e-2, max_iters=20_000, q_tol=1e-16, rel_tol=1e-6,
                              window=2000, jit_compile=False, num_eigenvalues=1)
X = np.ones([1], np.float32)   # the constant input


def _linear_model():
  """h' = w x + u h + b with one unit: fixed point h* = (w x + b) / (1 - u) for |u| < 1."""
  model = keras.Sequential([keras.Input((None, 1)),
                            keras.layers.SimpleRNN(1, activation="linear", name="rnn")])
  return model, model.get_layer("rnn")


def _linear_weights(w, u, b):
  return [np.full([1, 1], w, np.float32), np.full([1, 1], u, np.float32),
          np.full([1], b, np.float32)]


# Snapshots of (u, b), earliest first; the final network is the last one.
LINEAR = [(0, 0.9, 0.5), (10, 0.5, -0.2), (20, 0.2, 0.3), (30, -0.4, 0.8), (40, 0.3, 0.1)]


def _analytic(u, b, w=0.0):
  return (w + b) / (1.0 - u)


def test_linear_fixed_point_is_tracked_to_its_analytic_place_at_every_snapshot():
  model, layer = _linear_model()
  snaps = [dynamics.Snapshot(s, weights=tuple(_linear_weights(0.0, u, b)))
           for s, u, b in LINEAR]
  model.set_weights(_linear_weights(0.0, *LINEAR[-1][1:]))
  final = np.array([[_analytic(*LINEAR[-1][1:])]], np.float32)
  track = dynamics.follow_back(layer, snaps, final, X, SP, progress=False)
  assert track.steps.tolist() == [40, 30, 20, 10, 0]
  expected = [_analytic(u, b) for _, u, b in LINEAR[::-1]]
  np.testing.assert_allclose(track.points[:, 0, 0], expected, rtol=2e-6, atol=2e-6)
  assert np.all(track.speed < 1e-6) and track.points.shape == (5, 1, 1)
  np.testing.assert_allclose(track.q, 0.5 * np.square(track.speed))
  # The model gets its final weights back.
  np.testing.assert_array_equal(model.get_weights()[1], np.float32([[0.3]]))


def test_tracking_follows_the_nearest_point_not_any_fixed_point():
  # h' = tanh(g h) is bistable for g > 1 (±h*, h* = tanh(g h*)) and has the one point 0 for
  # g < 1: going back, the two final points each stay on their own branch until g drops below
  # 1, where both fall to 0 and merge; their sign labels are born at the first bistable step.
  model = keras.Sequential([keras.Input((None, 1)),
                            keras.layers.SimpleRNN(1, activation="tanh", use_bias=False,
                                                   name="rnn")])
  gains = [(0, 0.5), (10, 0.7), (20, 1.5), (30, 2.0)]
  snaps = [dynamics.Snapshot(s, weights=(np.zeros([1, 1], np.float32),
                                         np.full([1, 1], g, np.float32))) for s, g in gains]

  def branch(g):
    h = 1.0
    for _ in range(10_000):
      h = np.tanh(g * h)
    return h if g > 1 else 0.0

  def sign_label(step, states, x):
    del step, x
    s = states[:, 0]
    return dict(sign=np.where(s > 0.1, 1, np.where(s < -0.1, 0, -1)), h=s)

  layer = model.get_layer("rnn")
  model.set_weights(list(snaps[-1].weights))
  final = np.array([[-branch(2.0)], [branch(2.0)]], np.float32)
  track = dynamics.follow_back(layer, snaps, final, np.zeros([1], np.float32), SP,
                               classes=[0, 1], measure=sign_label, label_keys=("sign",),
                               introduced={0: 0, 1: 15}, progress=False)
  expected = np.array([[-branch(g), branch(g)] for _, g in gains[::-1]])
  np.testing.assert_allclose(track.points[..., 0], expected, atol=1e-4)
  assert track.labels["sign"].tolist() == [[0, 1], [0, 1], [-1, -1], [-1, -1]]
  np.testing.assert_allclose(track.extras["h"], track.points[..., 0])
  np.testing.assert_allclose(track.merge_tol, 0.05 * 2 * branch(2.0), rtol=1e-6)
  assert [(m["step"], m["classes"]) for m in track.merges] == [(10, [0, 1])]
  births = track.births["sign"]
  assert births[1] == {"class": 1, "birth_step": 20, "before_step": 10, "from_class": -1,
                       "introduced_at": 15, "at_introduction": False}
  assert births[0]["birth_step"] == 20 and births[0]["introduced_at"] == 0
  json.dumps(track.summary())


def test_snapshot_files_a_dynamics_callable_and_save_load(tmp_path):
  model, layer = _linear_model()
  folder = str(tmp_path / "snaps")
  for s, u, b in LINEAR:
    model.set_weights(_linear_weights(0.25, u, b))
    dynamics.snapshots.save_weights(model, os.path.join(folder, f"snapshot-{s:09d}.weights.h5"))
  assert [f for f in os.listdir(folder) if f.startswith(".")] == []
  snaps = dynamics.load_snapshots(folder)
  assert [s.step for s in snaps] == [0, 10, 20, 30, 40]
  final = np.array([[_analytic(*LINEAR[-1][1:], w=0.25)]], np.float32)  # the model's weights
  track = dynamics.follow_back(lambda: dynamics.from_layer(layer), snaps, final, X, SP,
                               model=model, progress=False)
  expected = [_analytic(u, b, w=0.25) for _, u, b in LINEAR[::-1]]
  np.testing.assert_allclose(track.points[:, 0, 0], expected, rtol=2e-6, atol=2e-6)
  path = str(tmp_path / "track.npz")
  track.save(path)
  loaded = dynamics.Track.load(path)
  for name in ("steps", "points", "speed", "q", "classes", "introduced"):
    np.testing.assert_array_equal(getattr(loaded, name), getattr(track, name))
  assert loaded.merges == track.merges and loaded.merge_tol == track.merge_tol
  with np.load(path, allow_pickle=False) as f:
    assert int(f["track_format"]) == 1


def test_follow_back_raises_value_errors():
  model, layer = _linear_model()
  model.set_weights(_linear_weights(0.0, 0.5, 0.0))
  snap = dynamics.Snapshot(5, weights=tuple(_linear_weights(0.0, 0.5, 0.0)))
  with pytest.raises(ValueError, match="no snapshot before"):
    dynamics.follow_back(layer, [snap], np.zeros([1, 1]), X, SP, final_step=5)
  with pytest.raises(ValueError, match="exactly one"):
    dynamics.Snapshot(1)
  with pytest.raises(ValueError, match="`steps`"):
    dynamics.follow_back(layer, [_linear_weights(0.0, 0.5, 0.0)], np.zeros([1, 1]), X, SP)
  with pytest.raises(ValueError, match="does not restore"):
    dynamics.follow_back(layer, [dynamics.Snapshot(0, weights=(np.zeros([3, 3]),))],
                         np.zeros([1, 1]), X, SP, final_step=9, progress=False)
  with pytest.raises(ValueError, match="merge_frac"):
    dynamics.follow_back(layer, [snap], np.zeros([1, 1]), X, SP, merge_frac=0)


class _Recorder(keras.callbacks.Callback):
  def __init__(self):
    super().__init__()
    self.weights = {}

  def on_train_begin(self, logs=None):
    self.weights.setdefault(0, self.model.get_weights())

  def on_train_batch_end(self, batch, logs=None):
    self.weights[len(self.weights)] = self.model.get_weights()


@pytest.mark.parametrize("on_disk", [False, True])
def test_snapshot_callback_takes_the_weights_of_its_steps(tmp_path, on_disk):
  keras.utils.set_random_seed(0)
  model, _ = _linear_model()
  model.compile(keras.optimizers.SGD(0.1), "mse", jit_compile=False)
  x = np.random.default_rng(0).normal(size=[40, 3, 1]).astype(np.float32)
  y = x.sum(axis=1)
  folder = str(tmp_path / "snaps") if on_disk else None
  callback = dynamics.SnapshotCallback(every=3, directory=folder)
  recorder = _Recorder()
  model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[callback, recorder])  # 20 steps
  model.fit(x[:8], y[:8], batch_size=4, epochs=1, verbose=0, callbacks=[callback, recorder])
  steps = [s.step for s in callback.snapshots]
  # Every 3rd step, the start and the end of each fit (20; the second fit's 22).
  assert steps == [0, 3, 6, 9, 12, 15, 18, 20, 21, 22] and callback.step == 22
  fresh, _ = _linear_model()
  for snap in callback.snapshots:
    dynamics.snapshots.restore(fresh, snap)
    for got, want in zip(fresh.get_weights(), recorder.weights[snap.step]):
      np.testing.assert_array_equal(got, want)
  if on_disk:
    assert [s.step for s in dynamics.load_snapshots(folder)] == steps
    assert all(s.path and os.path.exists(s.path) for s in callback.snapshots)
    assert not [f for f in os.listdir(folder) if f.startswith(".")]
  else:
    assert all(s.path is None for s in callback.snapshots)
  with pytest.raises(ValueError, match="every"):
    dynamics.SnapshotCallback(every=0)


_EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples",
                        "flipflop_backtrack.py")


def test_shortened_flipflop_backtrack_example_runs(tmp_path, capsys):
  spec = importlib.util.spec_from_file_location("flipflop_backtrack_example", _EXAMPLE)
  example = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(example)
  assert example.pattern([[1.0, -1.0, 1.0], [-0.5, 0.2, -0.1]]).tolist() == [5, 2]
  merges = [dict(step=5, classes=[0, 1]), dict(step=5, classes=[1, 2]),
            dict(step=5, classes=[4, 6]), dict(step=2, classes=[0, 4])]
  assert example.merge_groups(merges) == {5: [[0, 1, 2], [4, 6]], 2: [[0, 4]]}
  got = example.main(["--out", str(tmp_path), "--units", "4", "--train_trials", "64",
                      "--length", "16", "--epochs", "2", "--batch_size", "32", "--every", "2",
                      "--num_states", "8", "--max_iters", "200"])
  assert "stable fixed points" in capsys.readouterr().out
  assert got["track"] is not None  # seeded: this 4-step network has a stable point
  assert got["track"].steps.tolist() == [4, 2, 0]
  loaded = dynamics.Track.load(str(tmp_path / "track.npz"))
  np.testing.assert_array_equal(loaded.labels["pattern"], got["track"].labels["pattern"])


if __name__ == "__main__":
  tf.test.main()
