"""experiments/rate_switch.py: continued training at other rates, its commands and its table."""

import json
import os
import shutil
import sys

import numpy as np
import pytest

from haviv_tf.base import artifacts
from haviv_tf.base import config as config_lib
from haviv_tf.probes import memory
from haviv_tf.training import schedules
from shared_run import trained_run  # pylint: disable=unused-import,g-bad-import-order

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "experiments"))
import rate_switch  # pylint: disable=g-import-not-at-top,wrong-import-position


# Accuracy at the shared run's delays 5, 10, 19, 100: one that decays past 19, one that never does.
DECAYS, KEPT = (0.9, 0.9, 0.9, 0.15), (0.9, 0.9, 0.9, 0.9)


def _with_curves(workdir, overall, per_class, trials=1000):
  """Replaces a run's accuracy tables (overall and per class, `trials` trials a delay, no
  confusion tables) with the given curves: the report computes its half-lives from them."""
  path = os.path.join(workdir, artifacts.RESULTS_FILE)
  results = artifacts.read_json(path)
  keys = sorted(results["accuracy_by_delay"], key=int)
  assert keys == ["5", "10", "19", "100"]
  results["accuracy_by_delay"] = dict(zip(keys, overall))
  results["per_class_accuracy_by_delay"] = {
      k: [curve[i] for curve in per_class] for i, k in enumerate(keys)}
  results["trials_per_delay"] = {k: trials for k in keys}
  results.pop("report_confusion_by_delay", None)
  artifacts.write_json(path, results)
  return results


def _still_remembering(workdir, accuracy=0.9):
  """Sets a run's accuracy at its longest delay (100): 0.9, well above chance (--mode=memory
  would evaluate it further), or 0.1, within noise of chance (it would stop there)."""
  path = os.path.join(workdir, artifacts.RESULTS_FILE)
  results = artifacts.read_json(path)
  results["accuracy_by_delay"]["100"] = accuracy
  artifacts.write_json(path, results)


def test_run_issues_the_documented_commands_and_skips_what_is_done(trained_run, tmp_path,
                                                                   monkeypatch):
  parent = str(tmp_path / "parent")
  shutil.copytree(trained_run.workdir, parent)
  _still_remembering(parent)
  issued = []
  monkeypatch.setattr(rate_switch, "_main", lambda args, *flags: issued.append(flags))
  out = str(tmp_path / "out")
  rate_switch.main(["run", f"--parents={parent}", "--runs=1e-3:7,3e-3:5", f"--out={out}",
                    "--max_delay=300"])
  cont = os.path.join(out, "parent", "lr0.001_n7")
  assert issued[0] == ("--mode=memory", f"--workdir={parent}", "--max_delay=300")
  assert issued[1] == ("--mode=finetune", f"--parent={parent}", "--finetune=control",
                       "--learning_rate=0.001", "--steps=7", f"--workdir={cont}")
  assert issued[2] == ("--mode=memory", f"--workdir={cont}", "--max_delay=300")
  assert len(issued) == 5 and issued[3][3:5] == ("--learning_rate=0.003", "--steps=5")
  # A second run issues only what is not done yet. The parent is followed to --max_delay, the
  # second continuation to chance; the first continuation is trained but still remembers at its
  # longest delay.
  results = artifacts.read_json(os.path.join(parent, artifacts.RESULTS_FILE))
  results["accuracy_by_delay"]["300"] = 0.5
  results["trials_per_delay"]["300"] = 40
  artifacts.write_json(os.path.join(parent, artifacts.RESULTS_FILE), results)
  shutil.copytree(trained_run.workdir, cont)
  _still_remembering(cont)
  shutil.copytree(trained_run.workdir, os.path.join(out, "parent", "lr0.003_n5"))
  _still_remembering(os.path.join(out, "parent", "lr0.003_n5"), accuracy=0.1)
  issued.clear()
  rate_switch.main(["run", f"--parents={parent}", "--runs=1e-3:7,3e-3:5", f"--out={out}",
                    "--max_delay=300"])
  assert issued == [("--mode=memory", f"--workdir={cont}", "--max_delay=300")]


def test_report_tabulates_the_parent_and_each_continuation(trained_run, tmp_path):
  parent = str(tmp_path / "parent")
  shutil.copytree(trained_run.workdir, parent)
  _with_curves(parent, DECAYS, [DECAYS] * 9 + [KEPT])
  cont = os.path.join(str(tmp_path / "out"), "parent", "lr0.003_n5")
  shutil.copytree(trained_run.workdir, cont)
  record = artifacts.read_json(os.path.join(cont, artifacts.CONFIG_FILE))
  record["config"].update(learning_rate=3e-3, train_steps=5, lr_decay_step=5)
  artifacts.write_json(os.path.join(cont, artifacts.CONFIG_FILE), record)
  _with_curves(cont, KEPT, [KEPT] * 10)
  out = str(tmp_path / "out")
  rate_switch.main(["report", f"--parents={parent}", "--runs=3e-3:5,1e-3:9", f"--out={out}"])
  rows = json.load(open(os.path.join(out, "rate_switch.json")))["parent"]
  assert [r["run"] for r in rows] == ["parent (as trained)", "+ 5 steps at 0.003"]  # 1e-3: not run
  parent_cfg = config_lib.Config.from_record(
      artifacts.read_json(os.path.join(parent, artifacts.CONFIG_FILE))["config"])
  assert rows[0]["summed_rate"] == pytest.approx(schedules.summed_rate(parent_cfg))
  assert rows[1]["summed_rate"] == pytest.approx(5 * 3e-3)
  results = artifacts.read_json(os.path.join(parent, artifacts.RESULTS_FILE))
  want = memory.half_lives(results, parent_cfg.seq_len - 1)
  assert 19 < want["overall"]["half_life"] < 100
  assert (rows[0]["half_life"], rows[0]["censored"], rows[0]["classes_kept"]) == (
      want["overall"]["half_life"], False, 1)
  assert rows[0]["median_class_half_life"] == want["per_class"]["0"]["half_life"]
  assert (rows[1]["half_life"], rows[1]["censored"], rows[1]["classes_kept"]) == (100, True, 10)
  results = artifacts.read_json(os.path.join(parent, artifacts.RESULTS_FILE))
  acc = results["accuracy_by_delay"]
  assert rows[0]["training_delay_accuracy"] == pytest.approx(
      (acc["5"] + acc["10"] + acc["19"]) / 3)
  assert rows[0]["accuracy"]["100"] == acc["100"] and rows[0]["accuracy"]["1000"] is None
  with np.load(os.path.join(parent, "slow_points.npz"), allow_pickle=False) as points:
    tenth = np.sort(np.abs(points["eigenvalues"]), axis=1)[:, -10]
  assert rows[0]["tenth_eigenvalue"] == pytest.approx(float(np.median(tenth)))
  table = open(os.path.join(out, "tables.md")).read()
  assert "| + 5 steps at 0.003 | 0.015 |" in table and "| 100 (≥, censored) |" in table


@pytest.mark.parametrize("argv, message", [
    (["run", "--parents=/nonexistent", "--out=x"], "is not a finished run"),
    (["run", "--parents=PARENT", "--runs=3e-3:0", "--out=x"], "steps be positive"),
    (["report", "--parents=PARENT", "--runs=2:10", "--out=x"], "must lie in (0, 1)"),
])
def test_bad_input_is_one_error_line(trained_run, argv, message):
  argv = [a.replace("PARENT", trained_run.workdir) for a in argv]
  with pytest.raises(SystemExit, match=message.replace("(", r"\(").replace(")", r"\)")):
    rate_switch.main(argv)


def test_a_run_list_that_is_not_rate_steps_is_refused(capsys):
  with pytest.raises(SystemExit) as e:
    rate_switch.main(["run", "--parents=x", "--runs=3e-3", "--out=x"])
  assert e.value.code == 2 and "is not RATE:STEPS" in capsys.readouterr().err


def test_saved_files_remake_the_same_table_without_the_machines_paths(trained_run, tmp_path):
  parent = str(tmp_path / "parent")
  shutil.copytree(trained_run.workdir, parent)
  _with_curves(parent, DECAYS, [DECAYS] * 10)
  out = str(tmp_path / "out")
  cont = os.path.join(out, "parent", "lr0.003_n5")
  shutil.copytree(trained_run.workdir, cont)
  record = artifacts.read_json(os.path.join(cont, artifacts.CONFIG_FILE))
  record["parent"] = dict(workdir=parent, step=20)
  artifacts.write_json(os.path.join(cont, artifacts.CONFIG_FILE), record)
  _with_curves(cont, KEPT, [DECAYS] * 5 + [KEPT] * 5)
  argv = [f"--parents={parent}", "--runs=3e-3:5"]
  rate_switch.main(["report", *argv, f"--out={out}"])
  dest = str(tmp_path / "committed")
  rate_switch.main(["save", *argv, f"--out={out}", f"--dest={dest}"])
  saved = os.path.join(dest, "parent", "lr0.003_n5")
  assert sorted(os.listdir(saved)) == sorted(rate_switch.SAVED)
  for name in ("config.json", "results.json"):
    assert str(tmp_path) not in open(os.path.join(saved, name)).read(), name
  assert artifacts.read_json(os.path.join(saved, "config.json"))["parent"]["workdir"] == "parent"
  rate_switch.main(["report", *argv, f"--out={dest}"])
  assert (json.load(open(os.path.join(dest, "rate_switch.json")))
          == json.load(open(os.path.join(out, "rate_switch.json"))))


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMITTED = os.path.join(REPO, "experiments", "rate_switch")
PARENTS = ("experiments/paper_compressed/runs/mnist-vocu-gru-paper-s0-60cc580e",
           "experiments/paper_compressed/runs/mnist-vocu-lstm-paper-s0-60cc580e",
           "experiments/study_paper/runs/mnist-vocu-gru-paper-s0",
           "experiments/study_paper/runs/mnist-vocu-lstm-paper-s0")


@pytest.mark.skipif(not all(os.path.isdir(os.path.join(REPO, p)) for p in PARENTS)
                    or not os.path.isdir(COMMITTED),
                    reason="the committed rate-switch runs are not in this tree")
def test_the_committed_tables_are_made_from_the_committed_runs(tmp_path):
  out = str(tmp_path / "rate_switch")
  shutil.copytree(COMMITTED, out)
  os.remove(os.path.join(out, "tables.md"))
  rate_switch.main(["report", "--parents=" + ",".join(os.path.join(REPO, p) for p in PARENTS),
                    "--runs=1e-5:1000,1e-4:1000,1e-3:1000,3e-3:300,3e-3:1000,3e-3:3000",
                    f"--out={out}"])
  with open(os.path.join(out, "tables.md")) as f, \
      open(os.path.join(COMMITTED, "tables.md")) as g:
    assert f.read() == g.read(), "experiments/rate_switch/tables.md is stale: re-run its report"
  made = artifacts.read_json(os.path.join(out, "rate_switch.json"))
  assert [r["half_life"] for r in made["mnist-vocu-gru-paper-s0"]][-1] > 1000


def _md_rows(text, first_cell):
  """The body rows (lists of cells) of every Markdown table whose header starts `first_cell`."""
  rows, inside = [], False
  for line in text.splitlines():
    if line.startswith(f"| {first_cell} |"):
      inside = True
    elif inside and line.startswith("|") and not line.startswith("| ---") \
        and not line.startswith("|---"):
      rows.append([c.strip() for c in line.strip("|").split("|")])
    elif not line.startswith("|"):
      inside = False
  return rows


def test_the_write_ups_tables_quote_the_generated_ones():
  """Every number in rate_switch.md's tables is in one generated row (tables.md), the same row
  for all the numbers of a write-up row: the write-up selects columns, it does not type them."""
  with open(os.path.join(REPO, "experiments", "rate_switch.md")) as f:
    quoted = _md_rows(f.read(), "continuation")
  generated = []
  for path in (os.path.join(COMMITTED, "tables.md"), os.path.join(COMMITTED, "back", "tables.md")):
    with open(path) as f:
      generated += [{c.replace(" of 10", "") for c in row} for row in _md_rows(f.read(), "run")]
  assert len(quoted) >= 18
  for row in quoted:
    numbers = {c for c in row[1:] if c and c[0].isdigit()}
    assert any(numbers <= g for g in generated), f"rate_switch.md row not generated: {row}"


def test_report_computes_half_lives_from_the_tables_not_from_a_stored_record(trained_run,
                                                                            tmp_path):
  parent = str(tmp_path / "parent")
  shutil.copytree(trained_run.workdir, parent)
  results = _with_curves(parent, DECAYS, [DECAYS] * 10)
  stored = dict(half_life=7.0, censored=False, status="decayed", longest_delay=100)
  for record in (dict(overall=stored, rule_version=memory.RULE_VERSION),   # today's rule
                 dict(overall=stored)):                                    # rule 1's record
    results["memory_half_life"] = record
    artifacts.write_json(os.path.join(parent, artifacts.RESULTS_FILE), results)
    cfg = artifacts.recorded_config(parent)
    want = memory.half_lives(results, cfg.seq_len - 1)["overall"]["half_life"]
    assert rate_switch.row(parent, "parent")["half_life"] == want != 7.0
