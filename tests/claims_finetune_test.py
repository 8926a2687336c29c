"""Claim (d): each penalty against the control, paired over networks, and why it fails."""

import dataclasses

import pytest

from haviv_tf.study import claims_finetune
from haviv_tf.study import evidence as evd
from run_records import rec as _rec  # pylint: disable=g-bad-import-order


def test_claim_d_when_it_does_not_hold_shows_the_room_left_and_the_longest_delay(tmp_path):
  ev = evd.Evidence(root=str(tmp_path), out=str(tmp_path), have=[], delays=[5, 500, 2000],
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
  numbers, lines = claims_finetune.claim_d(ev, recs)
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
  assert "Why: slow_points − control at delay 500 is +0.000 (3/6 > 0, one-sided p " in text
  assert "): it fails the test." in text
  assert "At the longest evaluated delay, 2000: slow_points − control +0.033 (6/6 > 0" in text
  assert "target_speeds" not in numbers and "Speed at each penalty" not in text
  # With a measurement of the targets (experiments/centre_targets.py) for two of the networks
  # (and one network not in the grid), the Why lines give their speeds per type.
  def speeds(trained, control, penalty):
    return {m: dict(slow_points=v, center_mass=10 * v) for m, v in dict(
        trained=trained, control=control, slow_points=penalty, center_mass=penalty).items()}
  targets = {"n0": dict(speed=speeds(1e-3, 1.0, 1e-2)), "n1": dict(speed=speeds(1e-3, 4.0, 4e-2)),
             "other": dict(speed=speeds(1.0, 1.0, 1.0))}
  numbers, lines = claims_finetune.claim_d(dataclasses.replace(ev, targets=targets), recs)
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
  numbers, lines = claims_finetune.claim_d(ev, recs)
  assert numbers["held"] is True and "control_headroom" not in numbers
  assert not any(x.startswith("Why:") for x in lines)


def test_claim_d_is_one_sided_and_not_testable_below_five_networks(tmp_path):
  ev = evd.Evidence(root=str(tmp_path), out=str(tmp_path), have=[], delays=[5, 500],
                    seq_len=20)

  def recs(n, gain):
    return [_rec(f"n{i}", {5: 0.98, 500: 0.4}, 1000, compare=dict(
        trained={5: 0.98, 500: 0.4}, control={5: 0.98, 500: 0.4 + 0.01 * i},
        slow_points={5: 0.98, 500: 0.4 + 0.01 * i + gain * (i + 1)},
        center_mass={5: 0.98, 500: 0.4 + 0.01 * i + gain * (i + 1)})) for i in range(n)]

  # Two networks, both better with each penalty: positive in every one, but 2 of 2 happens
  # by chance one time in four: not testable, no "Why" section.
  numbers, lines = claims_finetune.claim_d(ev, recs(2, 0.01))
  assert numbers["held"] is None
  text = "\n".join(lines)
  assert "**Not testable** at delay 500 (2 networks; at least 5 needed)." in text
  assert not any(x.startswith("Why:") for x in lines)
  # Five networks, every one better: the one-sided exact p is 1/32 < 0.05 (two-sided 1/16).
  numbers, _ = claims_finetune.claim_d(ev, recs(5, 0.01))
  diff = numbers["table"]["500"]["diffs"]["slow_points"]
  assert diff["p_greater"] == pytest.approx(1 / 32) and diff["p"] == pytest.approx(1 / 16)
  assert numbers["held"] is True
  # Five networks, every one worse: not held (the test is one-sided).
  numbers, _ = claims_finetune.claim_d(ev, recs(5, -0.01))
  assert numbers["held"] is False
