"""Claims (a)-(c) of the study report, each on hand-made run records."""

import dataclasses

import numpy as np
import pytest

from haviv_tf.study import claims
from haviv_tf.study import evidence as evd
from haviv_tf.study import significance as sig
from run_records import rec as _rec  # pylint: disable=g-bad-import-order


def test_claim_a_reads_a_measured_ceiling_when_the_report_folder_has_one():
  ev = evd.Evidence(root="r", out="r", have=[], delays=[5, 10, 500], seq_len=20)
  low = _rec("low", {5: 0.975, 10: 0.971, 500: 0.9}, 1000)
  high = _rec("high", {5: 0.99, 10: 0.985, 500: 0.95}, 1000)
  numbers, lines = claims.claim_a(ev, [low, high])
  assert "ceiling" not in numbers and not any("Measured ceiling" in x for x in lines)
  ceiling = dict(dataset="mnist", model="m", measured_by="cmd", runs=[
      dict(test_accuracy=0.979), dict(test_accuracy=0.981)])
  ev = evd.Evidence(root="r", out="r", have=[], delays=[5, 10, 500], seq_len=20,
                       ceiling=ceiling)
  numbers, lines = claims.claim_a(ev, [low, high])
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
  numbers, lines = claims.claim_a(ev, [low, high])
  assert numbers["ceiling"]["reaching_ceiling"] == 0
  assert numbers["ceiling"]["below_ceiling"] == ["low"]
  assert "The other 1 (low) are measurably below the ceiling" in "\n".join(lines)
  # A ceiling of another data set is not used.
  ev = dataclasses.replace(ev, ceiling=dict(ceiling, dataset="cifar10"))
  assert "ceiling" not in claims.claim_a(ev, [low, high])[0]

def test_claim_a_is_relative_to_a_ceiling_below_the_solved_level():
  # A data set whose plain classifier reaches only ~0.78: 0.95 cannot be reached, so the test
  # becomes 0.95 x the ceiling's mean, and "high" is the ceiling's lowest run.
  ceiling = dict(dataset="mnist", model="cnn", measured_by="cmd", runs=[
      dict(test_accuracy=0.77), dict(test_accuracy=0.79)])
  ev = evd.Evidence(root="r", out="r", have=[], delays=[5, 10, 500], seq_len=20,
                       ceiling=ceiling)
  good = _rec("good", {5: 0.78, 10: 0.775, 500: 0.1}, 1000)
  fair = _rec("fair", {5: 0.75, 10: 0.745, 500: 0.1}, 1000)
  numbers, lines = claims.claim_a(ev, [good, fair])
  text = "\n".join(lines)
  assert numbers["relative"] and abs(numbers["threshold"] - 0.95 * 0.78) < 1e-12
  assert numbers["high"] == 0.77 and numbers["held"]  # 0.745 >= 0.741
  assert "≥ 0.741 at every" in text and "0.95 × 0.7800 = 0.741" in text
  assert "1 of 2 networks are ≥ 0.77 at every training delay" in text
  # The same networks against MNIST's absolute levels do not hold.
  numbers, _ = claims.claim_a(dataclasses.replace(ev, ceiling=None), [good, fair])
  assert not numbers["held"] and not numbers["relative"] and numbers["threshold"] == 0.95
  # One network below the relative level: the claim does not hold.
  fair["results"]["accuracy_by_delay"]["10"] = 0.70
  assert not claims.claim_a(ev, [good, fair])[0]["held"]

def test_claim_b_when_it_does_not_hold_names_the_least_accurate_network(tmp_path):
  ev = evd.Evidence(root=str(tmp_path), out=str(tmp_path), have=[], delays=[5, 500, 2000],
                       seq_len=20)
  recs = [dict(_rec(f"n{i}", {5: 0.98, 500: 0.97, 2000: 0.9 + 0.01 * i}, 1000),
               seed=i, arch=("gru", "lstm")[i % 2]) for i in range(4)]
  numbers, lines = claims.claim_b(ev, recs)
  assert numbers["held"] is False
  assert numbers["why"] == dict(delay=2000, lowest=0.9, highest=0.93)
  assert any(x.startswith("Why: at delay 2000 the networks are at 0.900-0.930") and
             "every network keeps its memories" in x for x in lines)
  # All forgotten by the long delays, alike: said so, not that they keep their memories.
  forgot = [dict(_rec(f"f{i}", {5: 0.95, 500: 0.2 + 0.01 * i, 2000: 0.1}, 1000), seed=i,
                 arch="gru") for i in range(2)]
  numbers, lines = claims.claim_b(ev, forgot)
  assert numbers["held"] is False and numbers["why"]["delay"] == 500
  assert any("every network has forgotten by then" in x for x in lines)
  # One network: nothing to span, so not tested (not "did not hold").
  numbers, lines = claims.claim_b(ev, recs[:1])
  assert numbers["held"] is None and "at_claim_delay" not in numbers
  assert any(x.startswith("**Not tested**: 1 network") for x in lines)
  recs[0]["results"]["accuracy_by_delay"]["2000"] = 0.5
  numbers, lines = claims.claim_b(ev, recs)
  assert numbers["held"] is True and "why" not in numbers

def test_claim_b_needs_the_networks_to_differ_beyond_trial_noise(tmp_path):
  ev = evd.Evidence(root=str(tmp_path), out=str(tmp_path), have=[], delays=[5, 500],
                    seq_len=20)
  # A span of 0.25 from 1000 trials each is far beyond noise...
  recs = [dict(_rec(f"n{i}", {5: 0.98, 500: a}, 1000), seed=i, arch="gru")
          for i, a in enumerate([0.50, 0.75])]
  numbers, lines = claims.claim_b(ev, recs)
  assert numbers["held"] is True and numbers["heterogeneity_p"] < 1e-6
  assert any("beyond trial noise with p = " in x for x in lines)
  # ...from 8 trials each it is 4 of 8 against 6 of 8: noise (expected counts below 5, so the
  # permutation test: p 0.6), so it does not hold.
  for r in recs:
    r["results"]["trials_per_delay"] = {"5": 8, "500": 8}
  numbers, _ = claims.claim_b(ev, recs)
  assert numbers["held"] is False and numbers["heterogeneity_p"] > 0.05
  # The widest span's delay is chosen from every long delay: its p is Bonferroni-corrected.
  # 18 of 40 against 28 of 40 (span 0.25): χ² p 0.024, held chosen from 2 delays (0.047), not
  # from 3 (0.071).
  for delays in ([5, 500, 1000], [5, 500, 1000, 2000]):
    ev3 = evd.Evidence(root=str(tmp_path), out=str(tmp_path), have=[], delays=delays,
                       seq_len=20)
    rows = [dict(_rec(f"m{i}", {d: (a if d == 500 else 0.2) for d in delays}, 40), seed=i,
                 arch="gru") for i, a in enumerate([0.45, 0.70])]
    numbers, lines = claims.claim_b(ev3, rows)
    raw = sig.homogeneity([[18, 22], [28, 12]])
    assert numbers["delays_compared"] == len(delays) - 1
    assert numbers["heterogeneity_p"] == pytest.approx(raw * (len(delays) - 1))
    assert numbers["held"] is (len(delays) == 3)
    assert any(f"Bonferroni-corrected for the {len(delays) - 1} delays" in x for x in lines)
  # A long delay only one network reached is not one the widest span was chosen from; with a
  # single delay compared there is nothing to correct (and the text says nothing of it).
  ev3 = evd.Evidence(root=str(tmp_path), out=str(tmp_path), have=[], delays=[5, 500, 1000],
                     seq_len=20)
  rows = [dict(_rec("m0", {5: 0.98, 500: 0.45, 1000: 0.2}, 40), seed=0, arch="gru"),
          dict(_rec("m1", {5: 0.98, 500: 0.70}, 40), seed=1, arch="gru")]
  numbers, lines = claims.claim_b(ev3, rows)
  assert numbers["delays_compared"] == 1 and numbers["widest_delay"] == 500
  assert numbers["heterogeneity_p"] == pytest.approx(raw) and numbers["held"] is True
  assert not any("Bonferroni" in x for x in lines)
  # A network of the span without trial counts: noise is not tested (not a test of the others).
  recs.append(dict(_rec("n2", {5: 0.98, 500: 0.74}, 1000), seed=2, arch="gru"))
  for r, n in zip(recs, (None, 1000, 1000)):
    r["results"]["trials_per_delay"] = {"5": n, "500": n} if n else {}
  numbers, lines = claims.claim_b(ev, recs)
  assert numbers["heterogeneity_p"] is None and numbers["held"] is True
  assert any("trial counts not recorded for every network" in x for x in lines)


def test_claim_b_compares_protocols_and_cells_where_both_were_evaluated(tmp_path):
  # Networks followed until their memory faded stop at delays of their own: a GRU evaluated to
  # 500, an LSTM to 2000. The cells are compared at 500 only, each mean over its own networks.
  ev = evd.Evidence(root=str(tmp_path), out=str(tmp_path), have=[], delays=[5, 500, 2000],
                    seq_len=20)
  gru = dict(_rec("g", {5: 0.98, 500: 0.30}, 1000), arch="gru")
  lstm = dict(_rec("l", {5: 0.97, 500: 0.60, 2000: 0.20}, 1000), arch="lstm")
  numbers, _ = claims.claim_b(ev, [gru, lstm])
  assert set(numbers["effects"]) == {"arch@500"}
  assert numbers["effects"]["arch@500"]["means"] == [0.30, 0.60]
  assert numbers["spans"] == {"500": pytest.approx(0.30), "2000": 0.0}

def test_claim_c_when_it_does_not_hold_gives_the_spread_of_both_quantities():
  rows = [dict(speed=10.0 ** -k, acc_500=0.95 + 0.001 * k) for k in range(1, 9)]
  rows.append(dict(speed=None, acc_500=0.9))
  found = rows[:-1]
  numbers = {}
  (line, blank) = claims._why_not_c(rows, found, "500", numbers)  # pylint: disable=protected-access
  assert blank == "" and numbers["why"]["log10_speed_range"] == [-8.0, -1.0]
  assert abs(numbers["why"]["accuracy_quartiles"][0] - 0.951) < 1e-12
  assert "ranges 0.951-0.958" in line and "log10 speed -8.00 to -1.00" in line
  assert "little accuracy left for speed to explain" in line
  assert "1 of 9 network × class pairs have no slow point" in line


def _class_rows(network, speeds, accs, halves):
  return [dict(network=network, cls=c, speed=s, acc_500=a, half_life=h)
          for c, (s, a, h) in enumerate(zip(speeds, accs, halves))]


def test_claim_c_within_each_network_counts_the_networks_whose_own_classes_follow_speed():
  speeds = [10.0 ** -(2 + c / 3) for c in range(10)]          # class 9 slowest
  ordered = _class_rows("ordered", speeds, [0.1 + 0.08 * c for c in range(10)],
                        [20 * (c + 1) for c in range(10)])
  shuffled = _class_rows("shuffled", speeds, [0.5, 0.2, 0.9, 0.1, 0.6, 0.3, 0.8, 0.4, 0.7, 0.2],
                         [None] * 10)
  numbers = {}
  lines = claims._c_within(ordered + shuffled, "500", numbers)
  within = numbers["within_networks"]
  assert within["ordered"]["accuracy"]["spearman"] == pytest.approx(-1.0)
  assert within["ordered"]["half_life"]["spearman"] == pytest.approx(-1.0)
  assert within["shuffled"]["accuracy"]["spearman_p"] > 0.05
  assert within["shuffled"]["half_life"]["spearman"] is None    # no class has a half-life
  text = "\n".join(lines)
  assert "| shuffled |" in text and "| – |" in text
  assert "within 1 of 2 networks, their half-lives within 1." in text
  assert "informedness" not in text                       # no confusion tables recorded
  # One network: its ρ is the pooled one, so no table.
  assert claims._c_within(ordered, "500", {}) == []


def test_claim_c_within_each_network_adds_informedness_where_confusion_was_recorded():
  speeds = [10.0 ** -(2 + c / 3) for c in range(10)]          # class 9 slowest
  # The fastest class is a sink: high accuracy, no information. Accuracy then misses the
  # order speed predicts; informedness keeps it.
  accs = [0.95] + [0.1 + 0.08 * c for c in range(1, 10)]
  sink = _class_rows("sink", speeds, accs, [None] * 10)
  for r in sink:
    r["inf_500"] = 0.02 if r["cls"] == 0 else r["acc_500"] - 0.05
    r["inf_half_life"] = 10.0 * (r["cls"] + 1)
  plain = _class_rows("plain", speeds, accs, [None] * 10)      # an older run: no confusion
  numbers = {}
  text = "\n".join(claims._c_within(sink + plain, "500", numbers))
  within = numbers["within_networks"]
  assert within["sink"]["informedness"]["spearman"] == pytest.approx(-1.0)
  assert within["sink"]["accuracy"]["spearman"] > -1.0
  assert within["plain"]["informedness"]["spearman"] is None
  assert within["sink"]["informedness_half_life"]["spearman"] == pytest.approx(-1.0)
  assert "ρ(log speed, informedness at 500) | ρ(log speed, informedness half-life) |" in text
  assert "their informedness within 1 and its half-lives within 1 (" in text
  informed = "\n".join(claims._c_informed(sink + plain, "500", numbers))
  assert numbers["informedness"]["n"] == 10                     # the sink network's rows only
  assert numbers["informedness"]["spearman"] == pytest.approx(-1.0)
  assert "ρ = -1.000 (p = " in informed
  assert claims._c_informed(plain, "500", {}) == []
  plain_row = next(line for line in text.splitlines() if line.startswith("| plain | "))
  assert plain_row.endswith("| – | – | – |")     # no half-life, nor either informedness


def _network_rows(networks, slope_of, seed=0):
  """10 classes per network: accuracy falls with log speed with each network's `slope_of(k)`."""
  rng = np.random.default_rng(seed)
  rows = []
  for k in range(networks):
    logs = rng.uniform(-5, -1, 10)
    accs = np.clip(0.5 - slope_of(k) * (logs + 3) / 4 + rng.normal(0, 0.02, 10), 0, 1)
    rows += [dict(workdir=f"net{k}", speed=10.0 ** l, acc_500=float(a))
             for l, a in zip(logs, accs)]
  return rows


def test_claim_c_rests_on_networks_not_on_pooled_classes():
  cc = dict(spearman=-0.5, spearman_p=0.001)
  # Two networks, one with the relation and one against it: the pooled classes' p is small,
  # but two networks cannot carry a verdict across networks.
  two = _network_rows(2, lambda k: 0.4 if k == 0 else -0.1)
  ci = claims._network_interval(two, "500")  # pylint: disable=protected-access
  assert ci["clusters"] == 2
  assert claims._speed_predicts(cc, True, ci) is None  # pylint: disable=protected-access
  # Six networks that all follow speed: held, its interval from resampling networks below 0.
  six = _network_rows(6, lambda k: 0.4)
  ci = claims._network_interval(six, "500")  # pylint: disable=protected-access
  assert ci["clusters"] == 6 and ci["high"] < 0
  assert claims._speed_predicts(cc, True, ci) is True  # pylint: disable=protected-access
  # Six networks, three with the relation and three against: the interval reaches 0.
  mixed = _network_rows(6, lambda k: 0.4 if k % 2 else -0.4)
  ci = claims._network_interval(mixed, "500")  # pylint: disable=protected-access
  assert ci["high"] > 0
  assert claims._speed_predicts(cc, True, ci) is False  # pylint: disable=protected-access


def test_c_shows_no_interval_from_resampling_too_few_networks():
  few = dict(low=-0.9, high=-0.1, clusters=evd.MIN_NETWORKS - 1)
  for ci in (few, dict(few, low=None, high=None)):   # with or without an interval computed
    assert claims._interval(ci) == (  # pylint: disable=protected-access
        f"{evd.MIN_NETWORKS - 1} networks, too few to resample: at least {evd.MIN_NETWORKS}")
  enough = dict(few, clusters=evd.MIN_NETWORKS)
  assert claims._interval(enough) == (  # pylint: disable=protected-access
      f"resampling the {evd.MIN_NETWORKS} networks: [-0.90, -0.10]")
  assert claims._interval(dict(enough, low=None, high=None)).endswith(": –")  # pylint: disable=protected-access
