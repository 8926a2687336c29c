"""experiments/learning_curve.py: every snapshot of a run evaluated, its tables and figures."""

import contextlib
import io
import json
import os
import sys

import pytest

from haviv_tf.analysis import pipeline
from haviv_tf.training import schedules
from shared_run import trained_run  # pylint: disable=unused-import,g-bad-import-order

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "experiments"))
import learning_curve  # pylint: disable=g-import-not-at-top,wrong-import-position


def _main(argv):
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    code = learning_curve.main(argv)
  return code, out.getvalue()


def test_every_snapshot_is_evaluated_and_drawn_against_step_and_summed_rate(trained_run,
                                                                            tmp_path):
  out = str(tmp_path / "lc")
  run = ["run", f"--runs={trained_run.workdir}", "--delays=5,19", "--trials=20", f"--out={out}"]
  code, printed = _main(run)
  assert code == 0
  store = json.load(open(os.path.join(out, learning_curve.JSON)))
  (name,) = [k for k in store if not k.startswith("_")]
  entry = store[name]
  steps = sorted(entry["points"], key=int)
  assert len(steps) >= 2 and steps[0] == "0" and all(
      set(p) == {"5", "19"} for p in entry["points"].values())
  assert f"{name} step {steps[-1]}: 5:" in printed
  cfg = pipeline.trained_config(trained_run.workdir)
  assert {k: entry["config"][k] for k in schedules.SCHEDULE_FIELDS} == {
      k: getattr(cfg, k) for k in schedules.SCHEDULE_FIELDS}
  # The summed rate at each snapshot is the schedule's, summed over the updates before it.
  assert learning_curve.summed_rates(entry, steps) == pytest.approx(
      [schedules.summed_rate(cfg, int(s)) for s in steps])
  # A second run evaluates nothing again and keeps the numbers.
  code, printed = _main(run)
  assert code == 0 and " step " not in printed
  assert json.load(open(os.path.join(out, learning_curve.JSON)))[name] == entry
  # Against the step: a table row per snapshot; against the summed rate: one figure.
  assert _main(["report", f"--out={out}"])[0] == 0
  table = open(os.path.join(out, "tables.md")).read()
  assert all(f"| {s} | " in table for s in steps)
  code, printed = _main(["report", "--x=lr_sum", f"--out={out}"])
  assert code == 0 and "left out" not in printed
  with open(os.path.join(out, learning_curve.LR_SUM_PNG), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  # An entry written before the schedule was recorded is left out, and the line says so.
  del store[name]["config"]["lr_decay_factor"]
  with open(os.path.join(out, learning_curve.JSON), "w") as f:
    json.dump(store, f)
  code, printed = _main(["report", "--x=lr_sum", f"--out={out}"])
  assert code == 0 and f"left out, no schedule recorded: {name}" in printed
  # Re-running `run` on it records the schedule again.
  assert _main(run)[0] == 0
  assert "lr_decay_factor" in json.load(open(os.path.join(out, learning_curve.JSON)))[name][
      "config"]
