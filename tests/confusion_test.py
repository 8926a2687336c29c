"""experiments/confusion.py: where each shown class is reported, from a finished run."""

import contextlib
import io
import json
import os
import sys

import pytest

from shared_run import trained_run  # pylint: disable=unused-import,g-bad-import-order

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "experiments"))
import confusion  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_the_counts_are_the_runs_own_accuracy_and_name_where_each_class_goes(trained_run,
                                                                           tmp_path):
  out, js = str(tmp_path / "c.md"), str(tmp_path / "c.json")
  with contextlib.redirect_stdout(io.StringIO()):
    assert confusion.main([trained_run.workdir, "--delays=5,19", "--trials=40", f"--out={out}",
                           f"--json={js}"]) == 0
  data = json.load(open(js))
  for delay in ("5", "19"):
    counts = data["report_confusion_by_delay"][delay]
    assert sum(map(sum, counts)) == 40 and [sum(r) for r in counts] == [4] * 10
    # The diagonal is the report accuracy the evaluation gives for the same trials.
    assert sum(counts[c][c] for c in range(10)) / 40 == pytest.approx(
        data["accuracy_by_delay"][delay])
  # At the same delay and trial count, the run's own evaluation (results.json) agrees.
  res = json.load(open(os.path.join(trained_run.workdir, "results.json")))
  assert data["accuracy_by_delay"]["5"] == pytest.approx(res["accuracy_by_delay"]["5"])
  text = open(out).read()
  assert "## Delay 19" in text and text.count("| kept | drains into |") == 2


def test_bad_input_is_one_error_line(tmp_path):
  with pytest.raises(SystemExit, match="error: --delays must be integers"):
    confusion.main([str(tmp_path), "--delays=5,x"])
  with pytest.raises(SystemExit, match="error: .*"):
    confusion.main([str(tmp_path), "--delays=5"])   # no run there
