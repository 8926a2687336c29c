"""The experiment scripts that read committed grids: grid_files and compare_grids."""

import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "experiments"))

import compare_grids  # pylint: disable=g-import-not-at-top,wrong-import-position
import grid_files  # pylint: disable=g-import-not-at-top,wrong-import-position

from haviv_tf import sweep  # pylint: disable=g-import-not-at-top,wrong-import-position

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
  assert "| (d) slow_points − control at 500 | +0.037 (6/8 > 0, p 0.15) |" in lines


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
