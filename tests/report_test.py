"""The study report on a tiny grid, and --mode=study end to end."""

import json
import os
import sys

import tensorflow as tf

from haviv_tf.analysis import pipeline
from haviv_tf.base import artifacts
from haviv_tf.analysis import backtrack
from haviv_tf.base import config as config_lib
from haviv_tf.analysis import control
from haviv_tf.study import claims
from haviv_tf.study import claims_finetune
from haviv_tf.study import evidence as evd
from haviv_tf.study import report
from haviv_tf.probes import slow_points
from haviv_tf.study import sweep
import main_runner  # pylint: disable=g-bad-import-order
from run_records import rec as _rec  # pylint: disable=g-bad-import-order

# No XLA (what is tested here is the report, not the compiled steps; tests/jit_test.py covers
# XLA): compiling each tiny network's steps and searches costs more than running them.
SP = slow_points.SlowPointConfig(max_iters=100, chunk=100, q_tol=1e-8, jit_compile=False)
OVERRIDES = (("units", 8), ("train_steps", 20), ("batch_size", 16), ("eval_delays", (5, 30)),
             ("eval_trials", 20), ("checkpoint_every", 10), ("history_every", 10),
             ("jit_compile", False))


def _grid(**kw):
  base = dict(datasets=("mnist_sample",), protocols=("vocu", "decu"), archs=("gru",),
              seeds=(0,), finetune_steps=2, overrides=OVERRIDES, sp_max_iters=100)
  base.update(kw)
  return sweep.Grid("tiny", **base)


def _tags(logdir):
  tags = set()
  for name in os.listdir(logdir):
    for e in tf.compat.v1.train.summary_iterator(os.path.join(logdir, name)):
      tags.update(v.tag for v in e.summary.value)
  return tags


def test_busy_seconds_is_the_union_of_the_runs_intervals():
  # Two workers overlapping, then a pause (a resumed sweep), then one more run.
  assert report.busy_seconds([(0, 10), (5, 12), (100, 130), (11, 12)]) == 12 + 30
  assert report.busy_seconds([]) == 0.0

def test_report_on_a_tiny_grid_states_every_claim(tmp_path):
  root = str(tmp_path / "sweep")
  specs = sweep.expand(_grid())
  sweep.write_grid(specs, root, "tiny")
  # What the launcher's subprocesses do, in-process; the DeCu network is left unfinished after
  # its analysis (no fine-tunings, no back-tracking: the report takes what there is), which also
  # keeps this test's cost to one network's fine-tunings.
  for spec in specs:
    workdir = os.path.join(root, spec.name)
    pipeline.train_and_analyze(spec.config(), workdir, verbose=0, sp_config=SP)
    if spec.protocol == "vocu":
      control.compare(workdir, steps=2, sp_config=SP, verbose=0)
      backtrack.backtrack(workdir, SP)
  compared = [spec for spec in specs if spec.protocol == "vocu"]
  summary = report.build(root)
  assert summary["analysed"] == 2 and not summary["missing"]
  assert set(summary["claims"]) == {"a", "b", "c", "d", "e"}
  with open(os.path.join(root, report.REPORT_MD)) as f:
    md = f.read()
  for heading in ("## (a)", "## (b)", "## (c)", "## (d)", "## (e)", "## Summary"):
    assert heading in md
  for png in (claims.ACCURACY_PNG, claims.SPEED_PNG, claims_finetune.FINETUNE_PNG):
    assert f"]({png})" in md
    with open(os.path.join(root, png), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  # The numbers in the report are the runs' own.
  res = artifacts.read_json(os.path.join(root, specs[0].name, "results.json"))
  assert f"{res['accuracy_by_delay']['5']:.3f}" in md
  worst = min(res["accuracy_by_delay"]["5"], 1.0)
  assert summary["claims"]["a"]["min_accuracy"][specs[0].name] == worst
  assert summary["claims"]["a"]["held"] == all(
      v >= evd.SOLVED for v in summary["claims"]["a"]["min_accuracy"].values())
  # Pooled over the training delays (here only 5): that delay's accuracy, inside its interval.
  pooled = summary["claims"]["a"]["pooled_training_accuracy"][specs[0].name]
  assert abs(pooled["accuracy"] - res["accuracy_by_delay"]["5"]) < 1e-9
  assert pooled["ci95"][0] <= pooled["accuracy"] <= pooled["ci95"][1]
  assert "95% (Wilson) interval" in md
  # (d) states the cost at the training delays: mode - control, from the runs' own files.
  cost = summary["claims"]["d"]["training_delay_cost"]["slow_points"]
  assert cost["n"] == len(compared) == 1
  per = []
  for spec in compared:
    rows = artifacts.read_json(os.path.join(control.default_out(os.path.join(root, spec.name)),
                                            control.COMPARE_JSON))["rows"]
    per.append(rows["slow_points"]["accuracy_by_delay"]["5"]
               - rows["control"]["accuracy_by_delay"]["5"])
  assert abs(cost["mean"] - sum(per) / len(per)) < 1e-9 and cost["worst"] == min(per)
  assert "Cost at the training delays" in md
  # HParams sessions: one per network and per fine-tuning, with final metrics.
  for spec in specs:
    for path in [os.path.join(root, spec.name)] + [
        os.path.join(root, spec.name + "_finetune", m) for m in control.MODES
        if spec in compared]:
      tags = _tags(os.path.join(path, "tensorboard", "hparams"))
      assert "_hparams_/session_start_info" in tags
      assert "hparams/accuracy_delay_30" in tags
  # The experiment config at the root names the hyper-parameters and metrics.
  root_events = [f for f in os.listdir(root) if f.endswith(".hparams")]
  assert len(root_events) == 1
  content = tf.compat.v1.train.summary_iterator(os.path.join(root, root_events[0]))
  assert any(v.tag == "_hparams_/experiment" for e in content for v in e.summary.value)
  # Rebuilding keeps one session per run and one experiment config.
  report.build(root)
  assert len(os.listdir(os.path.join(root, specs[0].name, "tensorboard", "hparams"))) == 1
  assert len([f for f in os.listdir(root) if f.endswith(".hparams")]) == 1

def test_study_mode_runs_the_grid_and_writes_the_report(tmp_path):
  root = str(tmp_path / "sweep")
  specs = sweep.expand(_grid(protocols=("decu",), finetunes=("control",), backtrack=False))
  sweep.write_grid(specs, root, "tiny")
  cmd = [sys.executable, "-m", "haviv_tf.main", "--mode=study", f"--workdir={root}",
         "--workers=1", "--threads=1"]
  proc = main_runner.run(cmd[3:], timeout=600)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  assert "REPORT.md: 1 of 1 networks" in proc.stdout
  assert sweep.is_done(specs[0], root)
  with open(os.path.join(root, specs[0].name, sweep.DONE_FILE)) as f:
    done = json.load(f)
  assert set(done["seconds_per_step"]) == {"train", "finetune_control", "compare"}
  with open(os.path.join(root, "REPORT.md")) as f:
    assert "wall time of the sweep" in f.read()  # measured by the launcher
  # A second study finds everything done and only rebuilds the report.
  proc = main_runner.run(cmd[3:], timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  with open(os.path.join(root, specs[0].name, sweep.DONE_FILE)) as f:
    assert json.load(f) == done
  with open(os.path.join(root, "REPORT.md")) as f:  # nothing ran: from the runs' records
    text = f.read()
  assert "wall time with at least one network running (from the runs' records)" in text
  assert "recorded only the sweep invocation" not in text
  # A run finished before attempts were kept: its time is flagged, no wall time is guessed.
  done_path = os.path.join(root, specs[0].name, sweep.DONE_FILE)
  legacy = {k: v for k, v in done.items() if k not in ("intervals", "interrupted")}
  with open(done_path, "w") as f:
    json.dump(legacy, f)
  report.build(root)
  with open(os.path.join(root, "REPORT.md")) as f:
    text = f.read()
  assert ("1 of 1 runs recorded only the sweep invocation that finished them, so time spent "
          "before a resume is not in this sum") in text
  assert "wall time" not in text
  bad = main_runner.run(cmd[3:-2] + ["--grid=paper"], timeout=600)
  assert bad.returncode == 1 and "holds the 'tiny' grid" in bad.stderr

def test_the_half_life_delay_is_chosen_among_delays_every_network_was_evaluated_at(tmp_path):
  cfg = config_lib.resolve("quick", "mnist", {})
  # Half-lives near 300 (between 200 and 500) and near 3000 (between 2000 and 5000); the
  # second network was not evaluated at 500.
  a = dict(_rec("a", {5: 0.98, 19: 0.98, 200: 0.9, 500: 0.3, 2000: 0.2, 5000: 0.1}, 1000),
           config=cfg)
  b = dict(_rec("b", {5: 0.98, 19: 0.98, 200: 0.95, 2000: 0.9, 5000: 0.2}, 1000), config=cfg)
  c = dict(_rec("c", {5: 0.98, 19: 0.98, 200: 0.95, 2000: 0.93, 5000: 0.25}, 1000), config=cfg)
  halves = report.network_half_lives([a, b, c], cfg.seq_len)
  assert 200 < halves["a"]["half_life"] < 500 and 2000 < halves["c"]["half_life"] < 5000
  chosen = report.choose_claim_delay([a, b, c], halves, [200, 500, 2000, 5000])
  # The median half-life is b's (between 2000 and 5000); 500 is not a common delay.
  assert chosen["delay"] in (2000, 5000) and chosen["networks"] == 3
  only_a = report.choose_claim_delay([a], {"a": halves["a"]}, [200, 500, 2000, 5000])
  assert only_a["delay"] in (200, 500)
  # No network with a half-life, or no common long delay: no second test.
  assert report.choose_claim_delay([a], {"a": None}, [200, 500]) is None
  assert report.choose_claim_delay([a, b], halves, [500]) is None
  ev = evd.Evidence(root=str(tmp_path), out=str(tmp_path), have=[a, b, c],
                       delays=[5, 19, 200, 500, 2000, 5000], seq_len=20, claim_delay=chosen)
  numbers, lines = report.memory_section(ev, halves)
  assert numbers["claim_delay"] == chosen
  assert any(f"again at delay **{chosen['delay']}**" in x for x in lines)
  # (b) is re-tested there: spans at the chosen delay.
  numbers, lines = claims.claim_b(ev, [a, b, c])
  at = numbers["at_claim_delay"]
  span = numbers["spans"][str(at["delay"])]
  assert at["span"] == span and at["held"] == (span >= evd.WIDE)
