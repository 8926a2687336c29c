"""Memory half-lives on curves with known answers, the delay grids and the claim-delay rule."""

import math

import numpy as np
import pytest

from haviv_tf.probes import memory

CHANCE = memory.CHANCE


def _exp_curve(delays, level, tau):
  return [CHANCE + (level - CHANCE) * math.exp(-d / tau) for d in delays]


def test_exponential_decay_half_life_is_tau_ln2_within_the_grid_resolution():
  delays = np.unique(np.round(np.geomspace(5, 20_000, 200)).astype(int))
  # The level is the mean over the training delays (<= 19), so the known answer is where the
  # curve falls halfway from that level to chance.
  acc = _exp_curve(delays, 0.98, tau=300.0)
  level = np.mean([a for d, a in zip(delays, acc) if d <= 19])
  want = -300.0 * math.log((level - CHANCE) / 2 / (0.98 - CHANCE))
  h = memory.half_life(delays, acc, 19, 1000)
  assert h["status"] == "decayed" and not h["censored"]
  assert h["half_life"] == pytest.approx(want, rel=0.01)
  assert h["level"] == pytest.approx(level)


def test_step_decay_half_life_is_the_log_midpoint_of_the_step():
  delays = [5, 10, 19, 50, 100, 200, 500, 1000]
  acc = [0.9, 0.9, 0.9, 0.9, 0.9, CHANCE, CHANCE, CHANCE]
  h = memory.half_life(delays, acc, 19, 1000)
  assert h["half_life"] == pytest.approx(math.sqrt(100 * 200))
  assert h["target"] == pytest.approx((0.9 + CHANCE) / 2)


def test_a_curve_that_falls_and_comes_back_keeps_its_first_crossing_and_says_when_it_returned():
  # The full-length paper VoCu LSTM's class 9: forgotten by delay 200, reported again from
  # delay 500 on, when the other classes' memories have drained into its state.
  delays = [5, 10, 19, 50, 100, 200, 500, 1000, 2000]
  acc = [0.88, 0.88, 0.89, 0.77, 0.25, 0.22, 0.70, 0.81, 0.90]
  h = memory.half_life(delays, acc, 19, 100)
  assert h["status"] == "decayed" and 50 < h["half_life"] < 100
  assert h["recovers_at"] == 500
  # A wobble within noise of the halfway mark is not a return, and a monotone decay has none.
  target = h["target"]
  wobble = acc[:6] + [target + 0.05, target - 0.1, 0.15]
  assert memory.half_life(delays, wobble, 19, 100)["recovers_at"] is None
  assert memory.half_life(delays, acc[:6] + [0.1] * 3, 19, 100)["recovers_at"] is None


def test_a_dip_the_next_delay_contradicts_is_noise_not_the_crossing():
  # 100 trials: noise margin at the halfway mark 0.5 is 2 x sqrt(0.25 / 100) = 0.1.
  delays = [5, 10, 19, 50, 100, 200, 500, 1000]
  acc = [0.9, 0.9, 0.9, 0.48, 0.75, 0.7, 0.3, 0.1]
  h = memory.half_life(delays, acc, 19, 100)
  # Not at 50 (the dip, contradicted at 100 by 0.75 > 0.5 + 0.1) but between 200 and 500.
  assert h["status"] == "decayed" and not h["upper_bound"]
  assert h["half_life"] == pytest.approx(
      math.exp(math.log(200) + (0.7 - 0.5) / (0.7 - 0.3) * math.log(500 / 200)))
  # A next delay within noise of the mark confirms the crossing; the last delay needs no next.
  confirmed = acc[:4] + [0.58, 0.3, 0.2, 0.1]
  assert memory.half_life(delays, confirmed, 19, 100)["half_life"] < 50
  last = [0.9, 0.9, 0.9, 0.8, 0.8, 0.75, 0.7, 0.4]
  assert 500 < memory.half_life(delays, last, 19, 100)["half_life"] < 1000


def test_a_deep_fall_is_the_crossing_even_when_the_next_delay_comes_back():
  # A fall to near chance (0.12, 7 standard errors below the halfway mark 0.49) and a return:
  # a fall, then a recovery (the sink case), not a noisy dip.
  delays = [5, 10, 19, 50, 100, 200, 500, 1000]
  h = memory.half_life(delays, [0.88, 0.88, 0.89, 0.77, 0.12, 0.70, 0.81, 0.90], 19, 100)
  assert h["status"] == "decayed" and 50 < h["half_life"] < 100 and h["recovers_at"] == 200
  # A missing (NaN) accuracy is left out with its delay, as None is.
  nan = memory.half_life(delays, [0.9, 0.9, 0.9, 0.48, float("nan"), 0.3, 0.2, 0.1], 19, 100)
  assert nan["half_life"] < 50 and math.isfinite(nan["half_life"])


def test_per_class_trials_are_the_confusion_rows_where_the_results_hold_them():
  delays = ["5", "10", "19", "100"]
  conf = np.eye(10, dtype=int) * 100
  conf[0, 0] = 9                          # class 0 drawn 9 times only
  results = dict(accuracy_by_delay={d: 0.9 for d in delays},
                 per_class_accuracy_by_delay={d: [0.2] + [0.9] * 9 for d in delays},
                 trials_per_delay={d: 909 for d in delays},
                 report_confusion_by_delay={d: conf.tolist() for d in delays})
  assert memory._class_trials(results, delays, 909) == [9] + [100] * 9
  # Class 0's level 0.2 from 3 x 9 trials is within noise of chance (up to 0.1 + 2 x 0.3 /
  # sqrt(27) = 0.215); read as 3 x 90 trials (n / K) it would not be (bound 0.137).
  assert memory.half_lives(results, 19)["per_class"]["0"]["status"] == "at_chance"
  del results["report_confusion_by_delay"]
  assert memory._class_trials(results, delays, 909) == [90] * 10
  assert memory.half_lives(results, 19)["per_class"]["0"]["status"] != "at_chance"


def test_a_curve_below_halfway_at_its_shortest_delay_gives_an_upper_bound():
  # The level is the mean over delays <= 19 (0.533); halfway is 0.317, already passed at 5.
  h = memory.half_life([5, 10, 19, 100], [0.3, 0.3, 1.0, 0.1], 19, 1000)
  assert h["half_life"] == 5 and h["upper_bound"] and h["status"] == "decayed"


def test_informedness_within_its_noise_floor_is_at_chance_not_decayed():
  # 100 trials of a class: guessing gives informedness 0 +- sqrt(0.09 x 10/9 / 100) = 0.032.
  sd = memory.INFORMEDNESS_NULL_SD / math.sqrt(100)
  assert sd == pytest.approx(math.sqrt(0.1 * 0.9 * (1 + 1 / 9) / 100))
  noisy = [0.03, 0.02, 0.04, 0.0, -0.02]        # 0.03 over 3 x 100 trials: within 2 x 0.018
  h = memory.half_life([5, 10, 19, 100, 1000], noisy, 19, 100, chance=0.0,
                       null_sd=memory.INFORMEDNESS_NULL_SD)
  assert h["status"] == "at_chance" and h["half_life"] is None
  # Without the floor (chance 0, binomial sd 0) the same curve read as a memory that decays.
  assert memory.half_life([5, 10, 19, 100, 1000], noisy, 19, 100, chance=0.0)["status"] == (
      "decayed")


def test_a_curve_that_never_decays_is_censored_at_the_longest_delay():
  h = memory.half_life([5, 10, 19, 1000, 5000], [0.97, 0.97, 0.96, 0.9, 0.7], 19, 1000)
  assert h["censored"] and h["status"] == "censored" and h["half_life"] == 5000


def test_a_curve_at_chance_from_the_start_has_no_half_life():
  h = memory.half_life([5, 10, 19, 100], [0.11, 0.09, 0.1, 0.1], 19, 1000)
  assert h["half_life"] is None and h["status"] == "at_chance" and not h["censored"]


@pytest.mark.parametrize("delays, acc, message", [
    ([5], [0.9], "two or more delays"),
    ([50, 100], [0.9, 0.5], "no evaluated delay within a training trial"),
    ([10, 5], [0.9, 0.8], "increasing"),
])
def test_half_life_refuses_curves_it_cannot_read(delays, acc, message):
  with pytest.raises(ValueError, match=message):
    memory.half_life(delays, acc, 19, 1000)


def test_half_lives_reads_results_tables_overall_and_per_class():
  delays = ["5", "10", "19", "100", "1000"]
  per_class = {d: [0.9] * 10 for d in delays}
  per_class["1000"] = [CHANCE] * 9 + [1.0]   # class 9 is the one the network falls back to
  results = dict(accuracy_by_delay={"5": 0.9, "10": 0.9, "19": 0.9, "100": 0.9, "1000": 0.19},
                 per_class_accuracy_by_delay=per_class,
                 trials_per_delay={d: 1000 for d in delays})
  out = memory.half_lives(results, 19)
  assert out["overall"]["half_life"] == pytest.approx(
      math.exp(math.log(100) + (0.9 - 0.5) / (0.9 - 0.19) * math.log(10)))
  assert out["per_class"]["9"]["censored"]
  assert out["per_class"]["0"]["half_life"] == pytest.approx(math.sqrt(100 * 1000))
  assert out["delays"] == [5, 10, 19, 100, 1000] and out["trials"] == 1000


def _drain_confusion(kept):
  """100 trials per class: each class reported as itself with probability `kept`, the rest of
  its trials reported as class 9 (the sink), whose own trials are all reported as 9."""
  conf = np.zeros((10, 10), int)
  for c in range(9):
    conf[c, c] = round(100 * kept)
    conf[c, 9] = 100 - conf[c, c]
  conf[9, 9] = 100
  return conf.tolist()


def test_half_lives_of_informedness_unmask_a_sink_class():
  delays = ["5", "10", "19", "100", "1000"]
  kept = {"5": 0.9, "10": 0.9, "19": 0.9, "100": 0.5, "1000": 0.1}
  conf = {d: _drain_confusion(kept[d]) for d in delays}
  per_class = {d: [kept[d]] * 9 + [1.0] for d in delays}
  results = dict(accuracy_by_delay={d: (9 * kept[d] + 1) / 10 for d in delays},
                 per_class_accuracy_by_delay=per_class,
                 trials_per_delay={d: 1000 for d in delays}, report_confusion_by_delay=conf)
  out = memory.half_lives(results, 19)
  assert out["per_class"]["9"]["censored"]                   # by accuracy, class 9 is kept...
  inf9 = out["per_class_informedness"]["9"]                   # ...by informedness it decays
  assert inf9["status"] == "decayed" and inf9["chance"] == 0.0
  assert inf9["level"] == pytest.approx(1.0 - 0.1)
  # Informedness of class 0: 0.9, 0.9, 0.9, 0.5, 0.1 (nobody else is reported as 0), halfway
  # to 0 at 0.45, between delays 100 (0.5) and 1000 (0.1).
  assert out["per_class_informedness"]["0"]["half_life"] == pytest.approx(
      math.exp(math.log(100) + (0.5 - 0.45) / (0.5 - 0.1) * math.log(10)))
  assert memory.sinks(out) == ["9"]
  del results["report_confusion_by_delay"]["1000"]            # not at every delay: none
  assert "per_class_informedness" not in memory.half_lives(results, 19)


def test_geometric_delays_follow_the_1_2_5_series_and_include_both_ends():
  assert memory.geometric_delays(5, 1000) == (5, 10, 20, 50, 100, 200, 500, 1000)
  assert memory.geometric_delays(4, 300) == (4, 5, 10, 20, 50, 100, 200, 300)
  with pytest.raises(ValueError):
    memory.geometric_delays(10, 5)


@pytest.mark.parametrize("delays, message", [
    ((5, 3), "below the minimum delay 4"),
    ((5, 5), "sorted and distinct"),
    ((10, 5), "sorted and distinct"),
    ((5, 200_000), "beyond the longest delay"),
    ((), "no delays"),
])
def test_check_delays_names_the_offending_delay(delays, message):
  with pytest.raises(ValueError, match=message):
    memory.check_delays(delays, 4)


def test_check_delays_passes_good_delays_through():
  assert memory.check_delays([5, np.int64(10), 10_000], 4) == (5, 10, 10_000)


def test_at_chance_is_two_standard_errors_above_chance():
  bound = CHANCE + 2 * math.sqrt(CHANCE * (1 - CHANCE) / 1000)
  assert memory.at_chance(bound - 1e-9, 1000) and not memory.at_chance(bound + 1e-9, 1000)


def test_claim_delay_is_the_evaluated_delay_nearest_the_median_half_life():
  grid = [dict(half_life=150.0, censored=False), dict(half_life=400.0, censored=False),
          dict(half_life=1000.0, censored=True), None, dict(half_life=None, censored=False)]
  out = memory.claim_delay(grid, [5, 10, 19, 50, 100, 200, 500, 1000])
  # The median of 150, 400, 1000 is 400: nearer 500 than 200 in log delay.
  assert out["median_half_life"] == 400.0 and out["delay"] == 500
  assert out["networks"] == 3 and out["censored"] == 1
  with pytest.raises(ValueError, match="no network has a half-life"):
    memory.claim_delay([None], [5])


def test_informedness_scores_a_sink_class_near_zero_and_a_kept_class_near_one():
  n = 10
  conf = np.zeros((n, n), int)
  conf[0, 0] = 100                      # kept: reported as itself, nobody else reported as 0
  conf[9, 9] = 90                       # the sink: its own trials mostly right...
  conf[9, 1] = 10
  for c in range(1, 9):                 # ...and most other classes drain into it
    conf[c, 9] = 80
    conf[c, c] = 20
  inf = memory.informedness(conf)
  assert inf[0] == pytest.approx(1.0)
  assert inf[9] == pytest.approx(0.9 - (0 + 8 * 0.8) / 9)     # 0.19: accuracy 0.9, little memory
  assert inf[1] == pytest.approx(0.2 - 0.1 / 9)
  uniform = memory.informedness(np.full((n, n), 7))
  assert uniform == pytest.approx([0.0] * n)                    # guessing tells nothing


def test_informedness_of_a_class_without_trials_is_none_and_a_non_square_table_an_error():
  conf = np.eye(3, dtype=int) * 5
  conf[1] = 0
  assert memory.informedness(conf) == [1.0, None, 1.0]
  with pytest.raises(ValueError, match="square"):
    memory.informedness(np.zeros((2, 3)))


def test_no_claim_delay_when_most_half_lives_are_censored():
  grid = [dict(half_life=2000.0, censored=True), dict(half_life=2000.0, censored=True),
          dict(half_life=300.0, censored=False)]
  with pytest.raises(ValueError, match="2 of 3 half-lives are censored"):
    memory.claim_delay(grid, [100, 200, 500, 1000, 2000])
  # Half censored: the median is still set by an exact half-life.
  out = memory.claim_delay(grid[1:] + [dict(half_life=200.0, censored=False),
                                        dict(half_life=2000.0, censored=True)],
                           [100, 200, 500, 1000, 2000])
  assert out["censored"] == 2 and out["networks"] == 4
