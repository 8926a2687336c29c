"""Training snapshots (bounded history) and back-tracking slow points through them."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from haviv_tf import dynamics
from haviv_tf.analysis import pipeline
from haviv_tf.base import artifacts
from haviv_tf.analysis import backtrack
from haviv_tf.base import config as config_lib
from haviv_tf.models import network
from haviv_tf.probes import slow_points
from haviv_tf.training import checkpoints
from haviv_tf.task import trials

# No XLA (tests/jit_test.py covers it): compiling a tiny network's steps and searches costs more
# than running them.
SP = slow_points.SlowPointConfig(max_iters=200, chunk=100, q_tol=1e-8, jit_compile=False)


def test_history_is_bounded_and_keeps_stage_changes(tmp_path):
  model = network.DelayedClassifier(units=4, frame_shape=(2, 2, 1))
  history = checkpoints.History(str(tmp_path), every=1, keep=4)
  boundaries = {7, 13}
  for step in range(0, 41):
    if history.wants(step, boundaries, 40):
      history.save(model, step, stage_change=step in boundaries)
  history.mark_final(40)
  entries = checkpoints.History.load(str(tmp_path))
  steps = [e["step"] for e in entries]
  cadence = [e["step"] for e in entries if not e["stage_change"] and not e.get("final")]
  assert len(cadence) <= 4 and history.every == 16
  assert cadence == [0, 16, 32]
  assert {7, 13, 40} <= set(steps)
  # Thinned snapshots' files are gone; kept ones are readable.
  files = {f.split(".")[0] for f in os.listdir(tmp_path / "history") if f != "history.json"}
  assert files == {e["path"] for e in entries}
  assert checkpoints.read_snapshot(model, str(tmp_path / "history" / "snapshot-13")) == 13
  # Weights only: no optimizer slots in a snapshot.
  keys = tf.train.load_checkpoint(str(tmp_path / "history" / "snapshot-13")
                                  ).get_variable_to_shape_map()
  assert any("cell/kernel" in k for k in keys) and not any("optimizer" in k for k in keys)
  # A reopened History continues at the doubled cadence.
  assert checkpoints.History(str(tmp_path), every=1, keep=4).every == 16


def test_find_merges_reports_where_two_points_meet_going_back():
  steps = [30, 20, 10, 0]
  a = np.array([[0.0, 0], [0, 0], [0, 0], [0, 0]])
  b = np.array([[5.0, 0], [2, 0], [0.01, 0], [0, 0]])      # meets a at step 10
  c = np.array([[0.0, 5], [0, 4], [0, 3], [0, 2]])          # never meets
  points = np.stack([a, b, c], axis=1)
  merges = backtrack.find_merges(steps, points, [3, 7, 1], tol=0.1)
  assert [(s, x, y) for s, x, y, _ in merges] == [(10, 3, 7)]
  assert merges[0][3] == pytest.approx(0.01)


_CFG = dict(units=8, batch_size=16, train_steps=20, checkpoint_every=10, log_every=5,
            eval_delays=(5,), eval_trials=20, protocol="nacu", history_every=10,
            jit_compile=False)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
  """A tiny run trained and analysed once for this file (tests copy it before changing it)."""
  workdir = str(tmp_path_factory.mktemp("backtrack") / "run")
  cfg = config_lib.resolve("quick", "mnist_sample", _CFG)
  pipeline.train_and_analyze(cfg, workdir, verbose=0, sp_config=SP)
  return cfg, workdir


def test_backtrack_on_a_tiny_vocu_run_with_two_snapshots(analysed, tmp_path):
  cfg, workdir = analysed[0], str(tmp_path / "run")
  shutil.copytree(analysed[1], workdir)
  entries = checkpoints.History.load(workdir)
  assert [e["step"] for e in entries] == [0, 10, 20]
  out = backtrack.backtrack(workdir, SP)
  assert out["steps"] == [20, 10, 0]
  n = len(out["classes"])
  results = artifacts.read_json(os.path.join(workdir, "results.json"))
  assert n == sum(1 for c in results["centre_counts"] if c > 0) and n >= 1
  assert np.asarray(out["pca"]).shape == (3, n, 2)
  assert np.all(np.isfinite(out["pca"])) and np.asarray(out["speed"]).shape == (3, n)
  assert [b["class"] for b in out["births"]] == out["classes"]
  # The read-out-free criterion: the nearest class centre of each snapshot's own clouds.
  assert np.asarray(out["nearest_centre"]).shape == (3, n)
  assert [b["class"] for b in out["births_by_centre"]] == out["classes"]
  ratio = np.asarray(out["centre_ratio"])
  assert ratio.shape == (3, n) and np.all((ratio >= 0) & (ratio <= 1 + 1e-9))
  # Row 0 is the final network's own slow points, as found by the pipeline.
  final = slow_points.load_points(os.path.join(workdir, pipeline.SLOW_POINTS_FILE))
  np.testing.assert_allclose(out["speed"][0], final.speed[:n], rtol=1e-6)
  # Each earlier point is a slow point of its snapshot's network: re-measuring it agrees.
  saved = artifacts.load_npz(os.path.join(workdir, backtrack.BACKTRACK_NPZ))
  _, source, run = pipeline.restore(workdir)
  model = network.build(cfg, source.frame_shape)
  checkpoints.read_snapshot(model, os.path.join(workdir, "history", "snapshot-0"))
  x_bar = slow_points.mean_input_features(model, trials.generator_for(source, "test", cfg))
  np.testing.assert_allclose(dynamics.speeds(model, saved["points"][2], x_bar),
                             out["speed"][2], rtol=1e-4)
  with open(os.path.join(workdir, backtrack.BACKTRACK_PNG), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  del run


def test_nearest_centres_in_speed_coordinates():
  cfg = config_lib.resolve("quick", "mnist_sample", dict(units=3, arch="lstm"))
  model = network.build(cfg, (4,))
  centres = np.full([10, 6], np.nan)
  centres[2] = [0, 0, 0, 0, 0, 0]
  centres[7] = [0, 0, 0, np.tanh(3.0), 0, 0]
  # (h, c) = (0, 3) is (0, tanh 3) in speed coordinates: exactly at class 7's centre.
  points = np.array([[0.0, 0, 0, 3.0, 0, 0], [0.9, 0, 0, 0.2, 0, 0], [0.1, 0, 0, 0, 0, 0]])
  nearest, ratio = backtrack.nearest_centres(model, points, centres)
  assert nearest.tolist() == [7, 2, 2]
  assert ratio[0] < 1e-6
  np.testing.assert_allclose(ratio[1], np.hypot(0.9, np.tanh(0.2))
                             / np.hypot(0.9, np.tanh(3.0) - np.tanh(0.2)), rtol=1e-5)
  np.testing.assert_allclose(ratio[2], 0.1 / np.hypot(0.1, np.tanh(3.0)), rtol=1e-5)
  assert np.all(ratio < 1)
  np.testing.assert_array_equal(backtrack.centre_labels(nearest, [0.2, 0.95, 0.9]), [7, -1, -1])


def test_backtrack_needs_snapshots_and_slow_points(analysed, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(analysed[1], workdir)
  sp_path = os.path.join(workdir, pipeline.SLOW_POINTS_FILE)
  os.rename(sp_path, sp_path + ".away")
  with pytest.raises(artifacts.RunError, match="no slow points"):
    backtrack.backtrack(workdir, SP)
  os.rename(sp_path + ".away", sp_path)
  os.remove(os.path.join(workdir, "history", "history.json"))
  with pytest.raises(artifacts.RunError, match="no training snapshots"):
    backtrack.backtrack(workdir, SP)
  assert not os.path.exists(os.path.join(workdir, backtrack.BACKTRACK_NPZ))


def test_find_births_marks_classes_born_at_their_introduction():
  steps = [30, 20, 10, 0]
  readout = np.array([[3, 5, 2, 4],
                      [3, 5, 2, 4],
                      [1, 5, 2, 0],
                      [1, 5, 2, 0]])
  introduced = [0] * 10
  introduced[3], introduced[4] = 10, 25
  births = {b["class"]: b for b in backtrack.find_births(steps, readout, [3, 5, 7, 4],
                                                          introduced)}
  assert births[3] == {"class": 3, "birth_step": 20, "before_step": 10, "from_class": 1,
                       "introduced_at": 10, "at_introduction": True}
  assert births[5]["birth_step"] == 0 and births[5]["from_class"] is None
  assert not births[5]["at_introduction"]
  assert births[7]["birth_step"] is None  # the final network's point reads out 2, not 7
  assert births[4]["birth_step"] == 20 and not births[4]["at_introduction"]  # born before 25


def test_introduction_steps_follow_the_vocu_curriculum():
  cfg = config_lib.resolve("quick", "mnist", {"protocol": "vocu"})
  intro = backtrack.introduction_steps(cfg)
  assert intro[:2] == [0, 0] and intro[2] == 171 and intro[9] == 2100
  assert backtrack.introduction_steps(config_lib.resolve("quick", "mnist", {"protocol": "decu"})
                                      ) == [0] * 10
