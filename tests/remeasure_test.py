"""experiments/remeasure.py: a re-trained grid's longer curves join the committed results only
when every committed value is reproduced exactly; otherwise nothing is written."""

import json
import os
import shutil
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "experiments"))

import remeasure  # pylint: disable=g-import-not-at-top,wrong-import-position

from haviv_tf.study import sweep  # pylint: disable=g-import-not-at-top,wrong-import-position

NAME = "mnist-vocu-gru-quick-s0"
COMMITTED_CONFIG = os.path.join(REPO, "experiments", "study_small", "runs", NAME, "config.json")


def _results(delays, acc):
  """A results.json's evaluation tables, 100 trials per delay, class c at acc(d) - c/100."""
  keys = [str(d) for d in delays]
  return dict(
      step=3000, slow_point_speed=[1e-3] * 10,
      trials_per_delay={k: 100 for k in keys},
      accuracy_by_delay={k: acc[d] for k, d in zip(keys, delays)},
      full_trial_accuracy_by_delay={k: acc[d] - 0.01 for k, d in zip(keys, delays)},
      per_class_accuracy_by_delay={k: [acc[d] - c / 100 for c in range(10)]
                                   for k, d in zip(keys, delays)},
      per_class_full_trial_accuracy_by_delay={k: [acc[d]] * 10 for k, d in zip(keys, delays)},
      report_confusion_by_delay={k: [[10] * 10] * 10 for k in keys})


ACC = {5: 0.98, 19: 0.97, 1000: 0.9, 2000: 0.7, 5000: 0.3, 10000: 0.12}


@pytest.fixture
def grids(tmp_path):
  """A one-network small_10k root (finished) and the committed folder of its twin."""
  root, dest = str(tmp_path / "root"), str(tmp_path / "committed")
  spec = next(s for s in sweep.expand(sweep.get_grid("small_10k")) if s.name == NAME)
  sweep.write_grid([spec], root, "small_10k")
  os.makedirs(os.path.join(root, NAME))
  os.makedirs(os.path.join(dest, NAME))
  shutil.copy(COMMITTED_CONFIG, os.path.join(root, NAME, "config.json"))
  with open(os.path.join(root, NAME, sweep.DONE_FILE), "w") as f:
    json.dump(dict(spec=spec.to_dict()), f)
  with open(os.path.join(root, NAME, "results.json"), "w") as f:
    json.dump(_results(sorted(ACC), ACC), f)
  with open(os.path.join(dest, NAME, "results.json"), "w") as f:
    json.dump(_results([5, 19, 1000], ACC), f)
  return root, dest


def _committed(dest):
  with open(os.path.join(dest, NAME, "results.json")) as f:
    return json.load(f)


def test_merge_adds_the_new_delays_and_half_lives_and_keeps_every_committed_value(grids):
  root, dest = grids
  before = _committed(dest)
  assert remeasure.main(["check", f"--root={root}", f"--dest={dest}"]) == 0
  assert remeasure.main(["merge", f"--root={root}", f"--dest={dest}"]) == 0
  after = _committed(dest)
  assert sorted(map(int, after["accuracy_by_delay"])) == [5, 19, 1000, 2000, 5000, 10000]
  for table in remeasure.EVAL_TABLES:
    for k, v in before[table].items():
      assert after[table][k] == v
  assert after["slow_point_speed"] == before["slow_point_speed"]
  half = after["memory_half_life"]["overall"]
  assert half["status"] == "decayed" and 2000 < half["half_life"] < 5000
  assert after["remeasured"]["added_delays"] == [2000, 5000, 10000]
  assert after["remeasured"]["compared_delays"] == [5, 19, 1000]
  # Merging again changes nothing.
  assert remeasure.main(["merge", f"--root={root}", f"--dest={dest}"]) == 0
  assert _committed(dest) == after


def test_a_network_that_differs_anywhere_is_reported_and_nothing_is_written(grids, capsys):
  root, dest = grids
  path = os.path.join(root, NAME, "results.json")
  with open(path) as f:
    new = json.load(f)
  new["per_class_accuracy_by_delay"]["1000"][3] += 0.01
  with open(path, "w") as f:
    json.dump(new, f)
  with open(os.path.join(dest, NAME, "results.json"), "rb") as f:
    before = f.read()
  assert remeasure.main(["check", f"--root={root}", f"--dest={dest}"]) == 1
  assert "DIFFERS" in capsys.readouterr().out
  assert remeasure.main(["merge", f"--root={root}", f"--dest={dest}"]) == 1
  err = capsys.readouterr().err
  assert err.startswith("error: 1 re-trained network(s) differ") and "nothing merged" in err
  with open(os.path.join(dest, NAME, "results.json"), "rb") as f:
    assert f.read() == before


def test_a_root_without_a_grid_or_a_missing_committed_run_is_one_error_line(grids, tmp_path,
                                                                           capsys):
  root, dest = grids
  assert remeasure.main(["check", f"--root={tmp_path / 'none'}", f"--dest={dest}"]) == 1
  assert capsys.readouterr().err.count("\n") == 1
  shutil.rmtree(os.path.join(dest, NAME))
  assert remeasure.main(["merge", f"--root={root}", f"--dest={dest}"]) == 1
  assert "holds no committed results.json" in capsys.readouterr().err
