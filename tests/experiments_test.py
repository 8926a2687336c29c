"""The experiment scripts that read committed grids or finished runs: grid_files,
compare_grids and centre_targets."""

import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "experiments"))

import centre_targets  # pylint: disable=g-import-not-at-top,wrong-import-position
import compare_grids  # pylint: disable=g-import-not-at-top,wrong-import-position
import grid_files  # pylint: disable=g-import-not-at-top,wrong-import-position

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from haviv_tf.models import network  # pylint: disable=g-import-not-at-top,wrong-import-position
from haviv_tf.study import report  # pylint: disable=g-import-not-at-top,wrong-import-position
from haviv_tf.study import sweep  # pylint: disable=g-import-not-at-top,wrong-import-position

SMALL = os.path.join(REPO, "experiments", "study_small")
MEDIUM = os.path.join(REPO, "experiments", "study_medium")


@pytest.mark.skipif(not os.path.exists(os.path.join(SMALL, "report.json")),
                    reason="the committed small grid is not in this tree")
def test_compare_grids_recomputes_the_committed_report_from_the_run_files():
  numbers, n, of, _ = compare_grids.claims(SMALL)
  with open(os.path.join(SMALL, "report.json")) as f:
    saved = json.load(f)["claims"]
  assert (n, of) == (8, 8)
  assert numbers["a"]["min_accuracy"] == saved["a"]["min_accuracy"]
  assert numbers["b"]["spans"] == pytest.approx(saved["b"]["spans"])
  for delay, row in saved["d"]["table"].items():
    for m in ("slow_points", "center_mass"):
      assert numbers["d"]["table"][delay]["diffs"][m]["mean"] == pytest.approx(
          row["diffs"][m]["mean"])
  assert numbers["e"]["born_at_introduction"] == saved["e"]["born_at_introduction"]
  c = numbers["c"]["correlations"][numbers["c"]["key"]]
  assert c["spearman"] == pytest.approx(saved["c"]["correlations"][saved["c"]["key"]]["spearman"])
  assert numbers["c"]["predictors"]["best"] == saved["c"]["predictors"]["best"]
  lines = compare_grids.rows({"small": dict(claims=numbers, n=n, of=of, ev=_)})
  assert lines[0] == "| | small |"
  assert "| (d) slow_points − control at the test delay | 500: +0.037 (6/8 > 0, p 0.15) |" in lines
  # Accuracy by delay and slow-point speeds, from the run files.
  acc5 = [x["results"]["accuracy_by_delay"]["5"] for x in _.have]
  (acc_row,) = [x for x in lines if x.startswith("| report accuracy by delay")]
  assert f"5: {np.mean(acc5):.3f} ({min(acc5):.3f}-{max(acc5):.3f})" in acc_row
  med = [float(np.median([v for v in x["results"]["slow_point_speed"].values() if v is not None]))
         for x in _.have]
  assert numbers["speeds"] == {"default": pytest.approx(med)}
  # Memory half-lives, by the report's own rule: the small grid's networks were evaluated to
  # delay 1000 only, and none fell halfway by then, so the row gives a lower bound.
  (hl_row,) = [x for x in lines if x.startswith("| memory half-life")]
  halves = [h for h in report.network_half_lives(_.have, _.seq_len).values() if h]
  assert len(halves) == 8 and all(h["censored"] for h in halves)
  assert f"| ≥ {min(h['half_life'] for h in halves):.0f} (all 8 nets censored" in hl_row
  (speed_row,) = [x for x in lines if x.startswith("| slow-point speed by recipe")]
  assert f"default: {np.median(med):.2e} " in speed_row and "8 nets" in speed_row


def test_ds_longest_delay_is_the_longest_the_fine_tunings_were_compared_at():
  # Parents followed to 10,000 by --mode=memory, their fine-tunings evaluated to 1000 only.
  none = dict(mean=None, n=0, p=None, positive=0)
  some = dict(mean=0.1, n=3, p=0.25, positive=3)
  table = {"500": dict(diffs=dict(slow_points=some, center_mass=some)),
           "1000": dict(diffs=dict(slow_points=some, center_mass=none)),
           "10000": dict(diffs=dict(slow_points=none, center_mass=none))}
  r = dict(claims=dict(d=dict(delay=500, table=table)))
  assert compare_grids._d_delay(r, "test") == "500"
  assert compare_grids._d_delay(r, "longest") == "1000"


@pytest.mark.skipif(not os.path.exists(os.path.join(MEDIUM, "runs", sweep.GRID_FILE)),
                    reason="the committed medium grid is not in this tree")
def test_restored_runs_count_as_finished_and_restore_never_overwrites(tmp_path):
  root = str(tmp_path / "root")
  runs, total, files = grid_files.transfer(os.path.join(MEDIUM, "runs"), root, overwrite=False)
  assert total == 12 and runs >= 1 and files > 0
  _, specs = sweep.load_grid(root)
  done = [s for s in specs if sweep.is_done(s, root)]
  assert len(done) == runs
  # A second restore copies nothing: it never overwrites what a root holds.
  path = os.path.join(root, done[0].name, "results.json")
  with open(path, "w") as f:
    f.write("{}")
  assert grid_files.transfer(os.path.join(MEDIUM, "runs"), root, overwrite=False)[2] == 0
  with open(path) as f:
    assert f.read() == "{}"


def test_centre_targets_moved_is_the_distance_to_the_nearest_point_of_the_class(tmp_path):
  model = network.DelayedClassifier("gru", units=3, frame_shape=(2, 2, 1))  # speed coords: h
  targets = np.full([10, 3], np.nan, np.float32)
  targets[0], targets[1] = [0, 0, 0], [1, 1, 1]
  states = np.array([[0, 0, 0.5], [0, 0.3, 0], [1, 1, 1], [5, 5, 5]], np.float32)
  np.savez(tmp_path / "slow_points.npz", states=states, readout=np.array([0, 0, 2, 1]))
  # class 0: nearest of its two points 0.3 away; class 1: its one point sqrt(48) away
  got = centre_targets._moved(model, str(tmp_path), targets)  # pylint: disable=protected-access
  assert got == pytest.approx(np.median([0.3, np.sqrt(48)]), rel=1e-6)
  np.savez(tmp_path / "slow_points.npz", states=states, readout=np.array([5, 5, 5, 5]))
  assert centre_targets._moved(model, str(tmp_path), targets) is None  # pylint: disable=protected-access


def test_nearest_targets_measures_each_target_set_on_the_same_trials():
  import lstm_penalty  # pylint: disable=g-import-not-at-top
  from haviv_tf.base import config as config_lib  # pylint: disable=g-import-not-at-top
  from haviv_tf.task import datasets  # pylint: disable=g-import-not-at-top
  from haviv_tf.task import trials  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  source = datasets.load("mnist_sample")
  cfg = config_lib.resolve("quick", "mnist_sample", dict(arch="gru", units=4))
  model = network.build(cfg, source.frame_shape)
  same = np.tile(np.array([[0.1, -0.2, 0.3, 0.0]], np.float32), [10, 1])
  only3 = np.full([10, 4], np.nan, np.float32)
  only3[3] = [0.5, 0.5, -0.5, 0.2]
  out = lstm_penalty.nearest_targets(model, cfg, source, dict(same=same, only3=only3),
                                     delay=6, num=40)
  assert 0.0 <= out["accuracy"] <= 1.0
  # Every class's target at one point: all ties, the first (class 0) is nearest: 4 of 40.
  assert out["same"]["nearest_is_own"] == pytest.approx(0.1)
  assert out["same"]["distance_between_targets"] == 0.0
  # One class with a target: it is everyone's nearest (4 of 40 are that class); the distance
  # to the own target is over those 4 trials only, and matches a direct computation.
  assert out["only3"]["nearest_is_own"] == pytest.approx(0.1)
  gen = trials.generator_for(source, "test", cfg)
  batch = gen.sample(tf.constant([cfg.seed, 77_001], tf.int64), 40, 16, delay=6,
                     classes=tf.range(40) % 10)
  _, states = model(batch["inputs"], training=False)
  t_a = batch["t_a"].numpy()
  mine = np.flatnonzero(batch["classes"].numpy() == 3)
  direct = np.linalg.norm(states.numpy()[mine, t_a[mine] - 1] - only3[3], axis=-1).mean()
  assert out["only3"]["distance_own"] == pytest.approx(direct, rel=1e-5)
  flat = lstm_penalty.long_delay(model, cfg, source, only3, delay=6, num=40)
  assert flat == dict(out["only3"], accuracy=out["accuracy"])


def test_centre_targets_report_averages_each_type(tmp_path, capsys):
  def row(arch, acc, speed):
    long = {m: dict(accuracy=acc, slow_points=dict(nearest_is_own=1.0, distance_own=2.0),
                    center_mass=dict(nearest_is_own=0.5, distance_own=3.0))
            for m in centre_targets.MODES}
    return dict(arch=arch, protocol="decu", seed=0, delay=500, trials=20, cm_to_sp=1.0,
                between_classes=4.0, long=long, moved={m: 1.5 for m in centre_targets.MODES},
                speed={m: dict(slow_points=speed, center_mass=speed)
                       for m in ("trained",) + centre_targets.MODES})
  store = {"a": row("gru", 0.9, 1e-3), "b": row("gru", 0.7, 3e-3), "c": row("lstm", 0.5, 2.0)}
  (tmp_path / centre_targets.JSON).write_text(json.dumps(store))
  centre_targets.main(["report", "--out", str(tmp_path)])
  text = (tmp_path / centre_targets.MD).read_text()
  assert "| decu gru | slow_points | 2.0e-03 |" in text
  assert "| decu gru | control | 0.800 | 1.000 | 2.00 | 0.500 | 3.00 |" in text
  assert "| decu lstm | 1 | 1.00 | 4.00 |" in text
  assert text in capsys.readouterr().out + "\n"


def test_centre_targets_refuses_a_missing_root_or_report(tmp_path):
  with pytest.raises(SystemExit) as e:
    centre_targets.main(["run", "--root", str(tmp_path / "none"), "--out", str(tmp_path)])
  assert e.value.code == 1
  with pytest.raises(SystemExit) as e:
    centre_targets.main(["report", "--out", str(tmp_path)])
  assert e.value.code == 1


def test_cnn_ceiling_writes_the_ceiling_a_report_reads(tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  from haviv_tf.study import evidence  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  np.savez(tmp_path / "cifar10.npz",
           x_train=rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8),
           y_train=np.arange(40, dtype=np.uint8) % 10,
           x_test=rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
           y_test=np.arange(20, dtype=np.uint8) % 10)
  out = tmp_path / "report"
  out.mkdir()
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, "experiments", "cnn_ceiling.py"), "--data_dir",
       str(tmp_path), "--steps", "3", "--batch", "4", "--seeds", "0,1", "--json",
       str(out / evidence.CEILING_JSON), "--out", str(out / "ceiling.md")],
      capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  with open(out / "ceiling.md") as f:
    md = f.read().splitlines()
  assert md[0].startswith("# ") and "--steps 3 --batch 4 --seeds 0,1" in md[2]
  assert sum(line.startswith("| 3 | 12 (") for line in md) == 2  # a row per seed
  ceiling = evidence.read_ceiling(str(out))
  assert ceiling["dataset"] == "cifar10" and "--steps 3 --batch 4" in ceiling["measured_by"]
  assert [r["seed"] for r in ceiling["runs"]] == [0, 1]
  assert all(0.0 <= r["test_accuracy"] <= 1.0 and r["images"] == 12 for r in ceiling["runs"])
  bad = subprocess.run(
      [sys.executable, os.path.join(REPO, "experiments", "cnn_ceiling.py"), "--data_dir",
       str(tmp_path / "none")], capture_output=True, text=True, timeout=300, check=False)
  assert bad.returncode != 0 and "Traceback" not in bad.stderr
