"""Cross-network analysis on hand-made run files: table, correlations, scatter."""

import json
import math
import os

import numpy as np
import pytest
from scipy import stats

from haviv_tf.base import artifacts
from haviv_tf.base import config as config_lib
from haviv_tf.probes import memory
from haviv_tf.study import correlations


def _fake_run(path, protocol, arch, speeds, accs, preds=None, fmt=2, accs_100=None):
  os.makedirs(path)
  cfg = config_lib.resolve("quick", "mnist", dict(protocol=protocol, arch=arch))
  artifacts.write_json(os.path.join(path, "config.json"), dict(config=cfg.to_dict()))
  preds = preds or {}
  artifacts.write_json(os.path.join(path, "results.json"), dict(
      slow_point_speed={str(c): s for c, s in enumerate(speeds)},
      slow_point_readout={str(c): c for c in range(10)}, slow_points_format=fmt,
      memory_predictors={k: {str(c): v for c, v in enumerate(vals)} for k, vals in
                         dict(speed=speeds, **preds).items()},
      per_class_accuracy_by_delay={"500": list(accs), "5": [1.0] * 10,
                                   **({"100": list(accs_100)} if accs_100 else {})}))


def test_analyze_table_correlations_and_plot(tmp_path):
  rng = np.random.default_rng(0)
  runs, all_speed, all_acc = [], [], []
  for k, (protocol, arch) in enumerate([("vocu", "gru"), ("decu", "gru"), ("decu", "lstm")]):
    speed = 10.0 ** rng.uniform(-8, -2, size=10)
    acc = np.clip(1.0 - 0.1 * (np.log10(speed) + 8) + rng.normal(0, 0.05, 10), 0, 1)
    path = str(tmp_path / f"run{k}")
    _fake_run(path, protocol, arch, speed.tolist(), acc.tolist())
    runs.append(path)
    all_speed += speed.tolist()
    all_acc += acc.tolist()
  out = str(tmp_path / "out")
  result = correlations.analyze(runs, out, delays=(200, 500))
  assert result["delays"] == [500]  # 200 was never evaluated
  assert len(result["rows"]) == 30
  c = result["correlations"]["per_class"]["500"]
  want_s = stats.spearmanr(np.log10(all_speed), all_acc)[0]
  want_p = stats.pearsonr(np.log10(all_speed), all_acc)[0]
  assert c["n"] == 30
  assert c["spearman"] == pytest.approx(want_s)
  assert c["pearson"] == pytest.approx(want_p)
  assert c["spearman"] < -0.5  # slower points, longer memory, as built in
  assert result["correlations"]["per_network"]["500"]["n"] == 3
  with open(os.path.join(out, "analysis.json")) as f:
    assert json.load(f)["delays"] == [500]
  with open(os.path.join(out, "analysis.md")) as f:
    md = f.read()
  assert "| run0 | vocu | gru | 0 |" in md and "Spearman" in md
  with open(os.path.join(out, "speed_vs_accuracy.png"), "rb") as f:
    assert f.read(4) == b"\x89PNG"


def test_table_rows_carry_informedness_where_the_run_recorded_its_confusion(tmp_path):
  _fake_run(str(tmp_path / "old"), "vocu", "gru", [1e-3] * 10, [0.5] * 10)
  path = str(tmp_path / "new")
  _fake_run(path, "vocu", "gru", [1e-3] * 10, [0.5] * 10)
  res = artifacts.read_json(os.path.join(path, "results.json"))
  conf = np.eye(10, dtype=int) * 50
  conf[1:, 0] += 50                                  # every class half drained into class 0
  res["report_confusion_by_delay"] = {"500": conf.tolist()}
  artifacts.write_json(os.path.join(path, "results.json"), res)
  rows = correlations.table([str(tmp_path / "old"), path])
  assert all("inf_500" not in r for r in rows[:10])
  new = rows[10:]
  assert new[0]["inf_500"] == pytest.approx(1.0 - 0.5)     # the sink: accuracy 1, half informed
  assert new[3]["inf_500"] == pytest.approx(0.5)


def test_analyze_refuses_runs_without_slow_points(tmp_path):
  path = tmp_path / "run"
  path.mkdir()
  cfg = config_lib.resolve("quick", "mnist", {})
  artifacts.write_json(str(path / "config.json"), dict(config=cfg.to_dict()))
  artifacts.write_json(str(path / "results.json"), dict(accuracy_by_delay={"5": 1.0}))
  with pytest.raises(artifacts.RunError, match="no slow points"):
    correlations.analyze([str(path)], str(tmp_path / "out"))
  with pytest.raises(artifacts.RunError, match="not a finished haviv_tf run"):
    correlations.analyze([str(tmp_path / "missing")], str(tmp_path / "out"))


def test_analyze_refuses_slow_points_of_an_older_format(tmp_path):
  path = str(tmp_path / "old")
  _fake_run(path, "vocu", "gru", [1e-3] * 10, [0.5] * 10, fmt=None)
  with pytest.raises(artifacts.RunError, match="older format.*re-run --mode=slow_points"):
    correlations.analyze([path], str(tmp_path / "out"))
  assert not os.path.exists(tmp_path / "out")


def test_predictors_are_ranked_by_spearman_with_bootstrap_intervals(tmp_path):
  rng = np.random.default_rng(1)
  runs, acc_all, tau_all, speed_all, groups = [], [], [], [], []
  for k in range(4):
    acc = rng.uniform(0.1, 1.0, 10)
    tau = np.exp(3 * acc + rng.normal(0, 0.2, 10))          # strongly monotone in accuracy
    speed = 10.0 ** rng.uniform(-6, -2, 10)                 # unrelated
    tau_json = [float(t) for t in tau]
    tau_json[3] = None                                      # |λ1| >= 1: infinite time constant
    tau[3] = np.inf
    path = str(tmp_path / f"run{k}")
    _fake_run(path, "decu", "gru", speed.tolist(), acc.tolist(),
              preds=dict(time_constant=tau_json, com_drift=(1 - acc).tolist()))
    runs.append(path)
    acc_all += acc.tolist()
    tau_all += tau.tolist()
    speed_all += speed.tolist()
    groups += [k] * 10
  result = correlations.analyze(runs, str(tmp_path / "out"), delays=(500,))
  table = result["predictors"]["table"]
  tau_all, acc_all, groups = np.array(tau_all), np.array(acc_all), np.array(groups)
  pooled = table["time_constant"]["500"]["pooled"]
  assert pooled["rho"] == pytest.approx(stats.spearmanr(tau_all, acc_all)[0])
  assert pooled["low"] <= pooled["rho"] <= pooled["high"]
  within = table["time_constant"]["500"]["within"]
  want = np.mean([stats.spearmanr(tau_all[groups == g], acc_all[groups == g])[0]
                  for g in range(4)])
  assert within["rho"] == pytest.approx(want)
  assert within["groups"] == 4 and within["low"] <= within["rho"] <= within["high"]
  assert table["speed"]["500"]["pooled"]["rho"] == pytest.approx(
      stats.spearmanr(speed_all, acc_all)[0])
  assert table["com_drift"]["500"]["pooled"]["rho"] == pytest.approx(-1.0)
  assert table["com_drift"]["500"]["pooled"]["oriented"] == pytest.approx(1.0)
  assert result["predictors"]["best"]["500"] == "com_drift"
  assert table["expected_speed"]["500"]["pooled"]["rho"] is None     # not given
  with open(os.path.join(tmp_path, "out", "analysis.md")) as f:
    md = f.read()
  assert "Which per-class quantity predicts" in md and "| time_constant | + |" in md


def test_predictor_intervals_do_not_depend_on_the_order_of_the_runs(tmp_path):
  rng = np.random.default_rng(2)
  runs = []
  for k in range(3):
    acc = rng.uniform(0.1, 1.0, 10)
    path = str(tmp_path / f"net{k}")
    _fake_run(path, "decu", "gru", (10.0 ** rng.uniform(-6, -2, 10)).tolist(), acc.tolist(),
              preds=dict(com_drift=(1 - acc + rng.normal(0, 0.3, 10)).tolist()))
    runs.append(path)
  one = correlations.analyze(runs, str(tmp_path / "a"), delays=(500,))["predictors"]
  two = correlations.analyze(runs[::-1], str(tmp_path / "b"), delays=(500,))["predictors"]
  for name in ("speed", "com_drift"):
    for kind in ("pooled", "within"):
      a, b = one["table"][name]["500"][kind], two["table"][name]["500"][kind]
      assert (a["low"], a["rho"], a["high"]) == (b["low"], b["rho"], b["high"])
      assert a["low"] < a["rho"] < a["high"]


def test_predictors_can_be_ranked_at_a_delay_below_the_default_ones(tmp_path):
  rng = np.random.default_rng(2)
  runs = []
  for k in range(3):
    acc = rng.uniform(0.1, 1.0, 10)
    path = str(tmp_path / f"run{k}")
    _fake_run(path, "decu", "gru", (10.0 ** rng.uniform(-6, -2, 10)).tolist(), [0.1] * 10,
              preds=dict(com_drift=(1 - acc).tolist()), accs_100=acc.tolist())
    runs.append(path)
  default = correlations.analyze(runs, str(tmp_path / "a"), delays=(100, 500))["predictors"]
  assert set(default["best"]) == {"500"}  # 100 is below correlations.PREDICTOR_DELAYS
  ranked = correlations.analyze(runs, str(tmp_path / "b"), delays=(100, 500),
                         predictor_delays=(100, 200, 500))["predictors"]
  assert set(ranked["best"]) == {"100", "500"}  # 200 was never evaluated
  assert ranked["best"]["100"] == "com_drift"
  assert ranked["table"]["com_drift"]["100"]["pooled"]["rho"] == pytest.approx(-1.0)


def _half_life_run(path, speeds, halves, trained=0.98):
  """A run whose per-class curves decay to chance at the given per-class half-lives
  (None: the class never decays by delay 10,000, so it is censored there)."""
  os.makedirs(path)
  cfg = config_lib.resolve("quick", "mnist", {})
  artifacts.write_json(os.path.join(path, "config.json"), dict(config=cfg.to_dict()))
  delays = [5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000]
  per_class = {}
  for d in delays:
    row = []
    for h in halves:
      if h is None or d < h:
        row.append(trained)
      else:
        row.append(0.1)
    per_class[str(d)] = row
  artifacts.write_json(os.path.join(path, "results.json"), dict(
      slow_point_speed={str(c): s for c, s in enumerate(speeds)},
      slow_point_readout={str(c): c for c in range(10)}, slow_points_format=2,
      memory_predictors={"speed": {str(c): s for c, s in enumerate(speeds)}},
      per_class_accuracy_by_delay=per_class,
      accuracy_by_delay={k: float(np.mean(v)) for k, v in per_class.items()},
      trials_per_delay={str(d): 1000 for d in delays}))


def test_half_lives_are_computed_from_the_tables_of_runs_that_did_not_store_them(tmp_path):
  path = str(tmp_path / "run")
  _half_life_run(path, [1e-3] * 10, [100] * 5 + [None] * 5)
  rows = correlations.table([path])
  # The step from 0.98 to chance between delays 50 and 100: half-way at the log midpoint.
  assert [r["half_life"] for r in rows[:5]] == pytest.approx([np.sqrt(50 * 100)] * 5)
  assert all(r["half_life_censored"] is False for r in rows[:5])
  assert [r["half_life"] for r in rows[5:]] == [10_000] * 5
  assert all(r["half_life_censored"] for r in rows[5:])


def test_stored_half_lives_gain_informedness_half_lives_from_the_confusion_tables(tmp_path):
  path = str(tmp_path / "run")
  _half_life_run(path, [1e-3] * 10, [100] * 10)
  res = artifacts.read_json(os.path.join(path, "results.json"))
  cfg = artifacts.recorded_config(path)
  res["memory_half_life"] = memory.half_lives(res, cfg.seq_len - 1)     # stored without them
  assert "per_class_informedness" not in res["memory_half_life"]
  res["report_confusion_by_delay"] = {
      d: (np.eye(10, dtype=int) * 100 if accs[0] > 0.5 else np.full((10, 10), 10)).tolist()
      for d, accs in res["per_class_accuracy_by_delay"].items()}
  artifacts.write_json(os.path.join(path, "results.json"), res)
  rows = correlations.table([path])
  assert [r["inf_half_life"] for r in rows] == pytest.approx([np.sqrt(50 * 100)] * 10)
  assert [r["half_life"] for r in rows] == pytest.approx([np.sqrt(50 * 100)] * 10)


def test_reports_apply_todays_half_life_rule_to_half_lives_stored_by_an_older_one(tmp_path):
  path = str(tmp_path / "run")
  _half_life_run(path, [1e-3] * 10, [100] * 10)
  res = artifacts.read_json(os.path.join(path, "results.json"))
  cfg = artifacts.recorded_config(path)
  stored = memory.half_lives(res, cfg.seq_len - 1)
  for h in stored["per_class"].values():     # as an older rule might have stored them
    h["half_life"] = 7.0
  res["memory_half_life"] = stored
  artifacts.write_json(os.path.join(path, "results.json"), res)
  halves = correlations.run_half_lives(cfg, res)
  assert halves["rule_version"] == memory.RULE_VERSION
  assert [r["half_life"] for r in correlations.table([path])] == pytest.approx(
      [np.sqrt(50 * 100)] * 10)
  # Tables that cannot give a half-life (no trial counts): the stored one is all there is.
  del res["trials_per_delay"]
  assert correlations.run_half_lives(cfg, res) == stored


def test_slower_points_with_longer_half_lives_give_a_negative_speed_rho(tmp_path):
  runs = []
  for k in range(3):
    path = str(tmp_path / f"run{k}")
    # Slower points (smaller speed) keep their class longer; class 9 never decays (censored).
    speeds = [10.0 ** (-2 - c / 3 - k / 10) for c in range(10)]
    halves = [10, 20, 50, 100, 200, 500, 1000, 2000, 5000] + [None]
    _half_life_run(path, speeds, halves)
    runs.append(path)
  h = correlations.rank_half_life(correlations.table(runs), num_boot=200)
  assert h["pairs"] == 30 and h["censored"] == 3 and h["at_chance"] == 0
  within = h["table"]["speed"]["within"]
  assert within["rho"] == pytest.approx(-1.0) and within["groups"] == 3
  pooled = h["table"]["speed"]["pooled"]
  assert pooled["rho"] < -0.9 and pooled["high"] < 0
  assert h["best"] == "speed"
  # Concordance never compares the three censored class 9s with each other; the other pairs
  # (shorter half-life observed, faster point) are all ordered the claimed way.
  cc = h["table"]["speed"]["concordance"]
  assert cc["c"] == 1.0 and cc["clusters"] == 3
  assert cc["pairs"] == 45 * 3 * 3        # class pairs c < c' x (network, network) pairs
  text = correlations.half_life_markdown(h)
  assert "3 censored" in text and "| speed | − |" in text and "concordance C" in text


def test_classes_at_chance_from_the_start_have_no_half_life_and_are_left_out(tmp_path):
  path = str(tmp_path / "run")
  _half_life_run(path, [1e-3] * 10, [100] * 10)
  results = artifacts.read_json(os.path.join(path, "results.json"))
  for row in results["per_class_accuracy_by_delay"].values():
    row[0] = 0.1  # class 0 is never reported
  artifacts.write_json(os.path.join(path, "results.json"), results)
  h = correlations.rank_half_life(correlations.table([path]), num_boot=50)
  assert h["pairs"] == 9 and h["at_chance"] == 1


def test_the_predictor_table_flags_mostly_infinite_predictors_and_names_its_resampling():
  rows = []
  for net in range(3):
    for c in range(10):
      rows.append(dict(network=f"n{net}", workdir=f"w{net}", cls=c, speed=10.0 ** -(c + 1),
                       acc_500=0.5 + 0.04 * c + 0.01 * net,
                       **{f"pred_{p}": 10.0 ** -(c + 1) for p in correlations.PREDICTORS},
                       ))
  for r in rows:   # time constants: infinite but for network 0's classes
    r["pred_time_constant"] = float(r["cls"] + 1) if r["workdir"] == "w0" else math.inf
  ranking = correlations.rank_predictors(rows, [500], num_boot=200)
  assert ranking["counts"]["time_constant"] == dict(values=30, infinite=20)
  text = correlations.predictors_markdown(ranking)
  assert "time_constant: 20 of 30 values infinite (tied at the top)" in text
  assert "rests on 1 network(s)" in text
  assert "its interval from resampling whole networks" in text
  assert "speed: " not in text   # finite predictors get no note
  assert ranking["table"]["speed"]["500"]["pooled"]["clusters"] == 3


def test_intervals_from_resampling_fewer_than_min_networks_are_not_printed():
  few = dict(rho=-0.8, low=-0.9, high=-0.7, n=20, groups=1, clusters=2)
  many = dict(few, clusters=correlations.sig.MIN_CLUSTERS)
  within = dict(rho=-0.5, low=-0.6, high=-0.4, n=20, groups=2)   # resamples classes: shown
  assert correlations._ci(few) == "-0.80 (2 networks)"
  assert correlations._ci(many) == "-0.80 [-0.90, -0.70]"
  assert correlations._ci(within) == "-0.50 [-0.60, -0.40]"
  c = dict(c=0.7, low=0.69, high=0.71, pairs=40, clusters=2)
  assert correlations._c_ci(c) == "0.70 (40 pairs; 2 networks)"
  assert correlations._c_ci(dict(c, clusters=6)) == "0.70 [0.69, 0.71]"
