"""Cross-network analysis on hand-made run files: table, correlations, scatter."""

import json
import os

import numpy as np
import pytest
from scipy import stats

from haviv_tf import artifacts
from haviv_tf import config as config_lib
from haviv_tf import study


def _fake_run(path, protocol, arch, speeds, accs):
  os.makedirs(path)
  cfg = config_lib.resolve("quick", "mnist", dict(protocol=protocol, arch=arch))
  artifacts.write_json(os.path.join(path, "config.json"), dict(config=cfg.to_dict()))
  artifacts.write_json(os.path.join(path, "results.json"), dict(
      slow_point_speed={str(c): s for c, s in enumerate(speeds)},
      slow_point_readout={str(c): c for c in range(10)},
      per_class_accuracy_by_delay={"500": list(accs), "5": [1.0] * 10}))


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
  result = study.analyze(runs, out, delays=(200, 500))
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


def test_analyze_refuses_runs_without_slow_points(tmp_path):
  path = tmp_path / "run"
  path.mkdir()
  cfg = config_lib.resolve("quick", "mnist", {})
  artifacts.write_json(str(path / "config.json"), dict(config=cfg.to_dict()))
  artifacts.write_json(str(path / "results.json"), dict(accuracy_by_delay={"5": 1.0}))
  with pytest.raises(artifacts.RunError, match="no slow points"):
    study.analyze([str(path)], str(tmp_path / "out"))
  with pytest.raises(artifacts.RunError, match="not a finished haviv_tf run"):
    study.analyze([str(tmp_path / "missing")], str(tmp_path / "out"))
