"""Claim (e): births by the read-out and by the nearest class centre, merges, the verdict."""

from haviv_tf.base import config as config_lib
from haviv_tf.analysis import backtrack
from haviv_tf.study import claims_backtrack

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
  numbers, lines = claims_backtrack.claim_e(None, [rec])
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
  numbers, lines = claims_backtrack.claim_e(None, [rec])
  assert "- r: 3: 20 ← -1" in lines and numbers["born_at_introduction_by_centre"] == 0
  b["centre_ratio"][2][1] = 0.5
  # Not held (class 2 born after its introduction by the read-out too): the report says how
  # many centre births come from no class and how many networks merge all their points.
  b["readout"][2] = [0, 1]
  b["merges"] = [dict(step=8, a=2, b=3, distance=0.0)]
  numbers, lines = claims_backtrack.claim_e(None, [rec])
  assert numbers["held"] is False
  assert numbers["why"] == dict(births_by_centre=1, from_no_class=0,
                                networks_all_points_merged=1, networks=1)
  assert any(x.startswith("Why: by the nearest class centre, 0 of 1 births") for x in lines)
  b["readout"][2] = [2, 1]
  b["merges"] = []
  # A back-tracking from before the centre criterion: read-out only.
  del b["nearest_centre"]
  numbers, lines = claims_backtrack.claim_e(None, [rec])
  assert numbers["born_at_introduction_by_centre"] is None
  assert next(line for line in lines if line.startswith("| vocu gru |")).split(" | ")[3] == "–"
