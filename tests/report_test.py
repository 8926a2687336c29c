"""The study report on a tiny grid, and --mode=study end to end."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from haviv_tf.analysis import pipeline
from haviv_tf.base import artifacts
from haviv_tf.analysis import backtrack
from haviv_tf.base import config as config_lib
from haviv_tf.analysis import control
from haviv_tf.study import report
from haviv_tf.probes import slow_points
from haviv_tf.study import sweep

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


def test_claim_e_compares_births_by_read_out_and_by_nearest_centre():
  cfg = config_lib.resolve("quick", "mnist_sample", dict(protocol="vocu", train_steps=90))
  assert backtrack.introduction_steps(cfg)[2:4] == [5, 10]
  b = dict(steps=[90, 20, 8, 0], stage_change=[False] * 4, classes=[2, 3], merges=[],
           merge_frac=0.05,
           # class 2's point reads out 2 from step 8 on (born at its introduction, 5), but it
           # is nearest its own centre at every snapshot; class 3's is born at 20 by both.
           readout=[[2, 3], [2, 3], [2, 1], [0, 1]],
           nearest_centre=[[2, 3], [2, 3], [2, 1], [2, 1]],
           centre_ratio=[[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5, 0.95]])
  rec = dict(name="r", protocol="vocu", arch="gru", config=cfg, backtrack=b)
  numbers, lines = report.claim_e(None, [rec])
  assert numbers["held"] is True
  assert (numbers["born_at_introduction"], numbers["later_classes"]) == (2, 2)
  assert numbers["born_at_introduction_by_centre"] == 1
  row = next(line for line in lines if line.startswith("| vocu gru |"))
  assert row.split(" | ")[2:5] == ["2 of 2", "1 of 2", "1 of 2"]
  assert "- r: 2: 8 ← 0, 3: 20 ← 1" in lines and "- r: 3: 20 ← 1" in lines
  assert lines[-2].endswith("by the nearest class centre, 1 of 2 (under 75%).")
  # Not nearer its centre by the margin at step 8, class 3's point belongs to no class (-1)
  # there: born from no class's point, which is not a birth from another class.
  b["centre_ratio"][2][1] = 0.95
  numbers, lines = report.claim_e(None, [rec])
  assert "- r: 3: 20 ← -1" in lines and numbers["born_at_introduction_by_centre"] == 0
  b["centre_ratio"][2][1] = 0.5
  # Not held (class 2 born after its introduction by the read-out too): the report says how
  # many centre births come from no class and how many networks merge all their points.
  b["readout"][2] = [0, 1]
  b["merges"] = [dict(step=8, a=2, b=3, distance=0.0)]
  numbers, lines = report.claim_e(None, [rec])
  assert numbers["held"] is False
  assert numbers["why"] == dict(births_by_centre=1, from_no_class=0,
                                networks_all_points_merged=1, networks=1)
  assert any(x.startswith("Why: by the nearest class centre, 0 of 1 births") for x in lines)
  b["readout"][2] = [2, 1]
  b["merges"] = []
  # A back-tracking from before the centre criterion: read-out only.
  del b["nearest_centre"]
  numbers, lines = report.claim_e(None, [rec])
  assert numbers["born_at_introduction_by_centre"] is None
  assert next(line for line in lines if line.startswith("| vocu gru |")).split(" | ")[3] == "–"


def _rec(name, accs, trials, compare=None):
  return dict(name=name, dataset="mnist", protocol="decu", arch="gru",
              results=dict(accuracy_by_delay={str(d): a for d, a in accs.items()},
                           trials_per_delay={str(d): trials for d in accs}),
              compare=compare and dict(rows={m: dict(accuracy_by_delay={
                  str(d): a for d, a in by_d.items()}) for m, by_d in compare.items()}))


def test_busy_seconds_is_the_union_of_the_runs_intervals():
  # Two workers overlapping, then a pause (a resumed sweep), then one more run.
  assert report.busy_seconds([(0, 10), (5, 12), (100, 130), (11, 12)]) == 12 + 30
  assert report.busy_seconds([]) == 0.0


def test_claim_a_reads_a_measured_ceiling_when_the_report_folder_has_one():
  ev = report.Evidence(root="r", out="r", have=[], delays=[5, 10, 500], seq_len=20)
  low = _rec("low", {5: 0.975, 10: 0.971, 500: 0.9}, 1000)
  high = _rec("high", {5: 0.99, 10: 0.985, 500: 0.95}, 1000)
  numbers, lines = report.claim_a(ev, [low, high])
  assert "ceiling" not in numbers and not any("Measured ceiling" in x for x in lines)
  ceiling = dict(dataset="mnist", model="m", measured_by="cmd", runs=[
      dict(test_accuracy=0.979), dict(test_accuracy=0.981)])
  ev = report.Evidence(root="r", out="r", have=[], delays=[5, 10, 500], seq_len=20,
                       ceiling=ceiling)
  numbers, lines = report.claim_a(ev, [low, high])
  c = numbers["ceiling"]
  assert abs(c["mean"] - 0.98) < 1e-12 and (c["min"], c["max"], c["runs"]) == (0.979, 0.981, 2)
  # Only "low" is pooled below 0.98 (0.973 over 2000 trials); its interval's top (~0.979)
  # reaches the ceiling's lowest run (0.979).
  assert c["below_high"] == 1 and c["reaching_ceiling"] == 1 and c["below_ceiling"] == []
  text = "\n".join(lines)
  assert "0.9790-0.9810" in text and "low 0.9730 [" in text and "high" not in text.split(
      "Measured ceiling")[1]
  assert "measurably below the ceiling" not in text
  # With many more trials the same accuracy is measurably below: the interval no longer
  # reaches the ceiling, and the report says the ceiling does not explain it.
  low["results"]["trials_per_delay"] = {"5": 10 ** 6, "10": 10 ** 6}
  numbers, lines = report.claim_a(ev, [low, high])
  assert numbers["ceiling"]["reaching_ceiling"] == 0
  assert numbers["ceiling"]["below_ceiling"] == ["low"]
  assert "The other 1 (low) are measurably below the ceiling" in "\n".join(lines)
  # A ceiling of another data set is not used.
  ev = dataclasses.replace(ev, ceiling=dict(ceiling, dataset="cifar10"))
  assert "ceiling" not in report.claim_a(ev, [low, high])[0]


def test_claim_a_is_relative_to_a_ceiling_below_the_solved_level():
  # A data set whose plain classifier reaches only ~0.78: 0.95 cannot be reached, so the test
  # becomes 0.95 x the ceiling's mean, and "high" is the ceiling's lowest run.
  ceiling = dict(dataset="mnist", model="cnn", measured_by="cmd", runs=[
      dict(test_accuracy=0.77), dict(test_accuracy=0.79)])
  ev = report.Evidence(root="r", out="r", have=[], delays=[5, 10, 500], seq_len=20,
                       ceiling=ceiling)
  good = _rec("good", {5: 0.78, 10: 0.775, 500: 0.1}, 1000)
  fair = _rec("fair", {5: 0.75, 10: 0.745, 500: 0.1}, 1000)
  numbers, lines = report.claim_a(ev, [good, fair])
  text = "\n".join(lines)
  assert numbers["relative"] and abs(numbers["threshold"] - 0.95 * 0.78) < 1e-12
  assert numbers["high"] == 0.77 and numbers["held"]  # 0.745 >= 0.741
  assert "≥ 0.741 at every" in text and "0.95 × 0.7800 = 0.741" in text
  assert "1 of 2 networks are ≥ 0.77 at every training delay" in text
  # The same networks against MNIST's absolute levels do not hold.
  numbers, _ = report.claim_a(dataclasses.replace(ev, ceiling=None), [good, fair])
  assert not numbers["held"] and not numbers["relative"] and numbers["threshold"] == 0.95
  # One network below the relative level: the claim does not hold.
  fair["results"]["accuracy_by_delay"]["10"] = 0.70
  assert not report.claim_a(ev, [good, fair])[0]["held"]


def test_claims_c_and_d_are_tested_at_their_data_sets_delay():
  mnist, cifar = dict(dataset="mnist"), dict(dataset="cifar10")
  assert report.test_delay([mnist, mnist], [50, 500, 2000]) == 500
  assert report.test_delay([cifar], [50, 100, 500, 1000]) == 100
  assert report.test_delay([mnist, cifar], [100, 500, 1000]) == 500  # a mix: MNIST's
  assert report.test_delay([cifar], [50, 200]) == 200  # not evaluated there: the longest


def test_delays_where_every_network_is_at_chance_are_named():
  def rec(accs, trials=1000):
    return dict(results=dict(accuracy_by_delay={str(d): a for d, a in accs.items()},
                             trials_per_delay={str(d): trials for d in accs}))
  recs = [rec({100: 0.5, 500: 0.1, 1000: 0.115}), rec({100: 0.1, 500: 0.118, 1000: 0.13})]
  # two standard errors of 0.1 with 1000 trials: 0.119
  assert report.chance_delays(recs, [100, 500, 1000]) == [500]
  assert report.chance_delays([rec({500: 0.13}, trials=100)], [500]) == [500]  # 0.16 with 100
  assert report.chance_delays(recs + [dict(results=None)], [500]) == []  # one not evaluated


def test_claim_b_when_it_does_not_hold_names_the_least_accurate_network(tmp_path):
  ev = report.Evidence(root=str(tmp_path), out=str(tmp_path), have=[], delays=[5, 500, 2000],
                       seq_len=20)
  recs = [dict(_rec(f"n{i}", {5: 0.98, 500: 0.97, 2000: 0.9 + 0.01 * i}, 1000),
               seed=i, arch=("gru", "lstm")[i % 2]) for i in range(4)]
  numbers, lines = report.claim_b(ev, recs)
  assert numbers["held"] is False and numbers["why"] == dict(delay=2000, lowest=0.9)
  assert any(x.startswith("Why: even at delay 2000 the least accurate network is at 0.900")
             for x in lines)
  recs[0]["results"]["accuracy_by_delay"]["2000"] = 0.5
  numbers, lines = report.claim_b(ev, recs)
  assert numbers["held"] is True and "why" not in numbers


def test_claim_c_when_it_does_not_hold_gives_the_spread_of_both_quantities():
  rows = [dict(speed=10.0 ** -k, acc_500=0.95 + 0.001 * k) for k in range(1, 9)]
  rows.append(dict(speed=None, acc_500=0.9))
  found = rows[:-1]
  numbers = {}
  (line, blank) = report._why_not_c(rows, found, "500", numbers)  # pylint: disable=protected-access
  assert blank == "" and numbers["why"]["log10_speed_range"] == [-8.0, -1.0]
  assert abs(numbers["why"]["accuracy_quartiles"][0] - 0.951) < 1e-12
  assert "ranges 0.951-0.958" in line and "log10 speed -8.00 to -1.00" in line
  assert "little accuracy left for speed to explain" in line
  assert "1 of 9 network × class pairs have no slow point" in line


def test_claim_d_when_it_does_not_hold_shows_the_room_left_and_the_longest_delay(tmp_path):
  ev = report.Evidence(root=str(tmp_path), out=str(tmp_path), have=[], delays=[5, 500, 2000],
                       seq_len=20)
  recs = []
  for i in range(6):
    # Near the ceiling at 500 (mixed signs), a clear gain at 2000.
    sign = 1 if i % 2 else -1
    recs.append(_rec(f"n{i}", {5: 0.98, 500: 0.97, 2000: 0.9}, 1000, compare=dict(
        trained={5: 0.98, 500: 0.97, 2000: 0.9},
        control={5: 0.98, 500: 0.97 - 0.001 * i, 2000: 0.9},
        slow_points={5: 0.98, 500: 0.97 - 0.001 * i + sign * 0.002, 2000: 0.93 + 0.001 * i},
        center_mass={5: 0.979, 500: 0.97 - 0.001 * i + sign * 0.001, 2000: 0.94})))
  numbers, lines = report.claim_d(ev, recs)
  assert numbers["held"] is False and numbers["delay"] == 500
  room = numbers["control_headroom"]
  assert abs(room["min"] - 0.01) < 1e-9 and abs(room["max"] - 0.015) < 1e-9
  longest = numbers["longest_delay"]
  assert longest["delay"] == 2000 and longest["diffs"]["slow_points"]["positive"] == 6
  assert longest["diffs"]["slow_points"]["p"] < 0.05
  text = "\n".join(lines)
  # Per network type (all six are decu gru here): the same differences and counts.
  group = numbers["by_group"]["mnist decu gru"]
  assert group["n"] == 6 and group["slow_points"]["positive"] == 3
  assert abs(group["center_mass"]["mean"] - numbers["table"]["500"]["diffs"]["center_mass"][
      "mean"]) < 1e-12
  assert "| mnist decu gru | 6 | +0.000 (3/6 > 0) |" in text
  assert "Room: at delay 500 the control is on average 0.013 below" in text
  assert "Why: slow_points − control at delay 500 is +0.000 (3/6 > 0, p 1): it fails" in text
  assert "At the longest evaluated delay, 2000: slow_points − control +0.033 (6/6 > 0" in text
  assert "target_speeds" not in numbers and "Speed at each penalty" not in text
  # With a measurement of the targets (experiments/centre_targets.py) for two of the networks
  # (and one network not in the grid), the Why lines give their speeds per type.
  def speeds(trained, control, penalty):
    return {m: dict(slow_points=v, center_mass=10 * v) for m, v in dict(
        trained=trained, control=control, slow_points=penalty, center_mass=penalty).items()}
  targets = {"n0": dict(speed=speeds(1e-3, 1.0, 1e-2)), "n1": dict(speed=speeds(1e-3, 4.0, 4e-2)),
             "other": dict(speed=speeds(1.0, 1.0, 1.0))}
  numbers, lines = report.claim_d(dataclasses.replace(ev, targets=targets), recs)
  sp = numbers["target_speeds"]["mnist decu gru"]["slow_points"]
  assert sp == pytest.approx(dict(trained=1e-3, control=2.0, slow_points=2e-2))
  text = "\n".join(lines)
  assert "(centre_targets.json, 2 networks;" in text
  assert ("mnist decu gru slow_points targets 1.0e-03 → control 2.0e+00 / slow_points 2.0e-02, "
          "center_mass targets 1.0e-02 → control 2.0e+01 / center_mass 2.0e-01") in text
  # When it holds, no explanation is added.
  for r in recs:
    for m in ("slow_points", "center_mass"):
      r["compare"]["rows"][m]["accuracy_by_delay"]["500"] = 0.99
  numbers, lines = report.claim_d(ev, recs)
  assert numbers["held"] is True and "control_headroom" not in numbers
  assert not any(x.startswith("Why:") for x in lines)


def test_report_on_a_tiny_grid_states_every_claim(tmp_path):
  root = str(tmp_path / "sweep")
  specs = sweep.expand(_grid())
  sweep.write_grid(specs, root, "tiny")
  for spec in specs:  # what the launcher's subprocesses do, in-process
    workdir = os.path.join(root, spec.name)
    pipeline.train_and_analyze(spec.config(), workdir, verbose=0, sp_config=SP)
    control.compare(workdir, steps=2, sp_config=SP, verbose=0)
    backtrack.backtrack(workdir, SP)
  summary = report.build(root)
  assert summary["analysed"] == 2 and not summary["missing"]
  assert set(summary["claims"]) == {"a", "b", "c", "d", "e"}
  with open(os.path.join(root, report.REPORT_MD)) as f:
    md = f.read()
  for heading in ("## (a)", "## (b)", "## (c)", "## (d)", "## (e)", "## Summary"):
    assert heading in md
  for png in (report.ACCURACY_PNG, report.SPEED_PNG, report.FINETUNE_PNG):
    assert f"]({png})" in md
    with open(os.path.join(root, png), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  # The numbers in the report are the runs' own.
  res = artifacts.read_json(os.path.join(root, specs[0].name, "results.json"))
  assert f"{res['accuracy_by_delay']['5']:.3f}" in md
  worst = min(res["accuracy_by_delay"]["5"], 1.0)
  assert summary["claims"]["a"]["min_accuracy"][specs[0].name] == worst
  assert summary["claims"]["a"]["held"] == all(
      v >= report.SOLVED for v in summary["claims"]["a"]["min_accuracy"].values())
  # Pooled over the training delays (here only 5): that delay's accuracy, inside its interval.
  pooled = summary["claims"]["a"]["pooled_training_accuracy"][specs[0].name]
  assert abs(pooled["accuracy"] - res["accuracy_by_delay"]["5"]) < 1e-9
  assert pooled["ci95"][0] <= pooled["accuracy"] <= pooled["ci95"][1]
  assert "95% (Wilson) interval" in md
  # (d) states the cost at the training delays: mode - control, from the runs' own files.
  cost = summary["claims"]["d"]["training_delay_cost"]["slow_points"]
  assert cost["n"] == len(specs)
  per = []
  for spec in specs:
    rows = artifacts.read_json(os.path.join(control.default_out(os.path.join(root, spec.name)),
                                            control.COMPARE_JSON))["rows"]
    per.append(rows["slow_points"]["accuracy_by_delay"]["5"]
               - rows["control"]["accuracy_by_delay"]["5"])
  assert abs(cost["mean"] - sum(per) / len(per)) < 1e-9 and cost["worst"] == min(per)
  assert "Cost at the training delays" in md
  # HParams sessions: one per network and per fine-tuning, with final metrics.
  for spec in specs:
    for path in [os.path.join(root, spec.name)] + [
        os.path.join(root, spec.name + "_finetune", m) for m in control.MODES]:
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
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  assert "REPORT.md: 1 of 1 networks" in proc.stdout
  assert sweep.is_done(specs[0], root)
  with open(os.path.join(root, specs[0].name, sweep.DONE_FILE)) as f:
    done = json.load(f)
  assert set(done["seconds_per_step"]) == {"train", "finetune_control", "compare"}
  with open(os.path.join(root, "REPORT.md")) as f:
    assert "wall time of the sweep" in f.read()  # measured by the launcher
  # A second study finds everything done and only rebuilds the report.
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
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
  bad = subprocess.run(cmd[:-2] + ["--grid=paper"], capture_output=True, text=True)
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
  ev = report.Evidence(root=str(tmp_path), out=str(tmp_path), have=[a, b, c],
                       delays=[5, 19, 200, 500, 2000, 5000], seq_len=20, claim_delay=chosen)
  numbers, lines = report.memory_section(ev, halves)
  assert numbers["claim_delay"] == chosen
  assert any(f"again at delay **{chosen['delay']}**" in x for x in lines)
  # (b) is re-tested there: spans at the chosen delay.
  numbers, lines = report.claim_b(ev, [a, b, c])
  at = numbers["at_claim_delay"]
  span = numbers["spans"][str(at["delay"])]
  assert at["span"] == span and at["held"] == (span >= report.WIDE)
