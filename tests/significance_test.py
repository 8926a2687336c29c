"""The shared statistics: each against a direct computation, and the cases they refuse."""

import itertools
import math
import warnings

import numpy as np
import pytest
from scipy import stats

from haviv_tf.study import significance as sig


def test_mean_sd_skips_missing_values_and_uses_the_sample_sd():
  assert sig.mean_sd([1.0, None, 3.0, float("nan")]) == f"2.000 ± {math.sqrt(2):.3f}"
  assert sig.mean_sd([0.25]) == "0.250"
  assert sig.mean_sd([None]) == "–"


def test_formats():
  assert sig.fmt(None) == "–" and sig.fmt(0.12345) == "0.123"
  assert sig.fmt(2e-5, ".1e") == "2.0e-05"
  assert sig.fmt_p(None) == "–" and sig.fmt_p(float("nan")) == "–"
  assert sig.fmt_p(0.01234) == "0.012"
  assert sig.signed(0.05) == "+0.050" and sig.signed(-0.05) == "-0.050"
  assert sig.signed(None) == "–"


def test_rank_tests_match_scipy_and_refuse_degenerate_data():
  d = [0.1, 0.3, -0.05, 0.2, 0.15, 0.4]
  assert sig.wilcoxon(d) == pytest.approx(stats.wilcoxon(d).pvalue)
  assert sig.wilcoxon([0.2]) is None and sig.wilcoxon([0.0, 0.0, 0.0]) is None
  a, b = [0.1, 0.2, 0.3], [0.5, 0.6, 0.7, 0.8]
  # No ties: SciPy's exact p; with a tie, the exact permutation p (not the normal approximation).
  assert sig.mann_whitney(a, b) == pytest.approx(stats.mannwhitneyu(a, b, method="exact").pvalue)
  tied_a, tied_b = [0.1, 0.2, 0.2, 0.3, 0.4, 0.5], [0.2, 0.35, 0.45, 0.6, 0.7, 0.8]
  splits = [set(c) for c in itertools.combinations(range(12), 6)]
  values = np.array(tied_a + tied_b)
  u_of = lambda s: stats.mannwhitneyu(values[sorted(s)], values[sorted(set(range(12)) - s)]).statistic  # pylint: disable=unnecessary-lambda-assignment
  u = stats.mannwhitneyu(tied_a, tied_b).statistic
  centre = 18.0
  exact = np.mean([abs(u_of(s) - centre) >= abs(u - centre) - 1e-9 for s in splits])
  assert sig.mann_whitney(tied_a, tied_b) == pytest.approx(exact)
  assert sig.mann_whitney([0.1], b) is None and sig.mann_whitney([1, 1], [1, 1]) is None


def test_correlate_matches_scipy():
  rng = np.random.default_rng(0)
  x = rng.normal(size=20)
  pairs = list(zip(x, x + rng.normal(size=20)))
  c = sig.correlate(pairs)
  s, sp = stats.spearmanr(*np.array(pairs).T)
  r, rp = stats.pearsonr(*np.array(pairs).T)
  assert c["n"] == 20 and c["spearman"] == pytest.approx(s)
  assert c["spearman_p"] == pytest.approx(sp)
  assert c["pearson"] == pytest.approx(r) and c["pearson_p"] == pytest.approx(rp)
  assert sig.correlate(pairs[:2])["spearman"] is None
  assert sig.correlate([(1, 1), (1, 2), (1, 3)])["spearman"] is None


def test_spearman_with_ci_pooled_matches_scipy_and_its_interval_narrows_with_data():
  rng = np.random.default_rng(1)
  x = rng.normal(size=400)
  y = x + rng.normal(size=400)
  small = sig.spearman_with_ci(x[:20], y[:20], num_boot=500)
  large = sig.spearman_with_ci(x, y, num_boot=500)
  assert large["rho"] == pytest.approx(stats.spearmanr(x, y).statistic)
  assert large["low"] < large["rho"] < large["high"] and large["n"] == 400
  assert (large["high"] - large["low"]) < (small["high"] - small["low"]) / 2
  assert sig.spearman_with_ci(x[:20], y[:20], num_boot=500) == small   # same seed, same answer


def test_spearman_with_ci_within_groups_averages_the_groups():
  # Within each group y rises with x, but the groups are offset so that the pooled ranks fall.
  x = np.concatenate([np.arange(10.0), np.arange(10.0) + 10])
  y = np.concatenate([np.arange(10.0) + 10, np.arange(10.0)])
  groups = ["a"] * 10 + ["b"] * 10
  within = sig.spearman_with_ci(x, y, groups, num_boot=200)
  assert within["rho"] == pytest.approx(1.0) and within["groups"] == 2
  assert sig.spearman_with_ci(x, y, num_boot=200)["rho"] < 0
  assert sig.spearman_with_ci([1, 1, 1], [1, 2, 3])["rho"] is None


def test_spearman_with_ci_within_small_groups_drops_constant_resamples_quietly():
  # Groups of 3 pairs: a resample comes out constant in every group now and then (both groups
  # at once in ~5% of 2000); those resamples are dropped without a warning, the rest averaged.
  x = np.array([0.0, 1.0, 2.0, 0.0, 1.0, 2.0])
  y = np.array([0.0, 1.0, 2.0, 2.0, 1.0, 0.0])
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    out = sig.spearman_with_ci(x, y, ["a"] * 3 + ["b"] * 3, num_boot=2000)
  assert out["rho"] == pytest.approx(0.0) and out["groups"] == 2
  assert -1.0 <= out["low"] < 0.0 < out["high"] <= 1.0


def test_wilson_interval_matches_published_values():
  # Textbook values (Newcombe 1998, table I): 0/10 -> [0, 0.278], 5/10 -> [0.237, 0.763].
  lo, hi = sig.wilson(0, 10)
  assert abs(lo) < 1e-12 and abs(hi - 0.2775) < 1e-3
  lo, hi = sig.wilson(5, 10)
  assert abs(lo - 0.2366) < 1e-3 and abs(hi - 0.7634) < 1e-3
  # More trials, narrower interval, always around the observed proportion.
  lo1, hi1 = sig.wilson(970, 1000)
  lo3, hi3 = sig.wilson(2910, 3000)
  assert lo1 < lo3 < 0.97 < hi3 < hi1
  assert all(math.isnan(v) for v in sig.wilson(0, 0))


def test_wilson_is_scipys_wilson_interval_at_scipys_z():
  # The same formula as scipy.stats.binomtest's; the report keeps z = 1.96 and float counts.
  z = stats.norm.ppf(0.975)
  for k, n in [(973, 1000), (0, 10), (10, 10), (5, 17), (19_990, 20_000)]:
    ci = stats.binomtest(k, n).proportion_ci(method="wilson")
    lo, hi = sig.wilson(k, n, z=z)
    assert abs(lo - ci.low) < 1e-12 and abs(hi - ci.high) < 1e-12
  ci = stats.binomtest(973, 1000).proportion_ci(method="wilson")
  assert abs(sig.wilson(973, 1000)[0] - ci.low) > 1e-8  # z = 1.96: why SciPy is not used


def test_pooled_bootstrap_is_scipys_percentile_bootstrap_with_the_same_generator():
  rng = np.random.default_rng(1)
  x = rng.normal(size=30)
  y = x + rng.normal(size=30)
  ours = sig.spearman_with_ci(x, y, None, num_boot=2000, seed=0)

  def rho(a, b, axis=-1):
    del axis
    return sig._spearman_rows(np.atleast_2d(a), np.atleast_2d(b))  # pylint: disable=protected-access

  res = stats.bootstrap((x, y), rho, paired=True, vectorized=True, n_resamples=2000,
                        method="percentile", rng=np.random.default_rng(0))
  assert abs(ours["low"] - res.confidence_interval.low) < 1e-12
  assert abs(ours["high"] - res.confidence_interval.high) < 1e-12


def test_the_pooled_interval_over_clusters_resamples_whole_networks():
  # Two networks of 10 classes with opposite relations and one of them shifted: pooled over
  # the 20 pairs ρ is clearly negative and the pair bootstrap's interval excludes 0, but
  # resampling the two networks (each draw: two networks, possibly the same one twice) spans
  # both relations.
  rng = np.random.default_rng(1)
  x = np.concatenate([np.arange(10.0), np.arange(10.0) + 10])
  y = np.concatenate([-np.arange(10.0) + 20, np.arange(10.0) * 0.2]) + rng.normal(0, 0.1, 20)
  nets = ["a"] * 10 + ["b"] * 10
  pairs = sig.spearman_with_ci(x, y)
  by_net = sig.spearman_with_ci(x, y, clusters=nets)
  assert by_net["rho"] == pytest.approx(pairs["rho"]) and by_net["clusters"] == 2
  assert pairs["high"] < 0
  assert by_net["low"] < pairs["low"] and by_net["high"] > 0
  # The same seed gives the same interval; the order of the networks does not matter.
  again = sig.spearman_with_ci(x, y, clusters=nets)
  assert (again["low"], again["high"]) == (by_net["low"], by_net["high"])
  one = sig.spearman_with_ci(x[:10], y[:10], clusters=nets[:10])
  assert one["clusters"] == 1 and one["low"] is None   # one network: no interval


def _concordance_by_loops(risk, time, censored):
  num = den = 0.0
  for i in range(len(time)):
    for j in range(len(time)):
      if censored[i]:
        continue
      if time[i] < time[j] or (time[i] == time[j] and censored[j]):
        den += 1
        num += 1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0
  return num / den if den else None


def test_concordance_counts_only_pairs_whose_shorter_time_is_observed():
  # Times 1-4 observed, two censored at 5: every comparable pair has its shorter time observed;
  # the two censored ones are never compared with each other.
  time = [1, 2, 3, 4, 5, 5]
  censored = [False] * 4 + [True, True]
  out = sig.concordance([6, 5, 4, 3, 2, 1], time, censored, num_boot=100)
  assert out["pairs"] == 5 + 4 + 3 + 2     # each observed time against every longer one
  assert out["c"] == 1.0
  assert sig.concordance([1, 2, 3, 4, 5, 6], time, censored)["c"] == 0.0
  assert sig.concordance([1] * 6, time, censored)["c"] == 0.5


def test_concordance_matches_a_loop_over_pairs_with_ties_in_time_risk_and_censoring():
  rng = np.random.default_rng(3)
  time = rng.integers(1, 8, 40).astype(float)
  risk = rng.integers(0, 5, 40).astype(float)
  censored = rng.random(40) < 0.3
  out = sig.concordance(risk, time, censored, clusters=np.repeat(np.arange(8), 5),
                        num_boot=300)
  assert out["c"] == pytest.approx(_concordance_by_loops(risk, time, censored))
  assert out["clusters"] == 8 and out["low"] <= out["c"] <= out["high"]


def test_concordance_cluster_weights_equal_a_concatenated_resample():
  # A resample drawing cluster 0 twice and cluster 1 once is the data with those rows repeated.
  risk = np.array([3.0, 1.0, 2.0, 0.5])
  time = np.array([2.0, 9.0, 4.0, 6.0])
  censored = np.array([False, True, False, False])
  rows = np.array([0, 1, 0, 1, 2, 3])
  want = _concordance_by_loops(risk[rows], time[rows], censored[rows])
  comp, conc = sig._concordance_pairs(risk, time, censored)
  got = sig.weighted_concordance(comp, conc, [[2.0, 2.0, 1.0, 1.0], [0, 0, 0, 1.0]])
  assert got[0] == pytest.approx(want)
  assert np.isnan(got[1])                  # one value: no comparable pair


def test_concordance_leaves_out_nan_risks_and_ranks_infinite_ones():
  time, censored = [1, 2, 3], [False, False, False]
  assert sig.concordance([np.nan, 2, 1], time, censored)["c"] == 1.0     # pair (2, 3) only
  assert sig.concordance([np.nan, 2, 1], time, censored)["n"] == 2
  assert sig.concordance([np.inf, 2, -np.inf], time, censored)["c"] == 1.0


def test_homogeneity_uses_a_permutation_test_where_expected_counts_are_small():
  # 4 of 8 against 6 of 8: expected counts 3 and 5, below 5: χ² would say p = 0.30.
  p = sig.homogeneity([[4, 4], [6, 2]])
  assert 0.5 < p < 0.7                 # exact two-sided Fisher: 0.61
  assert sig.homogeneity([[400, 400], [600, 200]]) < 1e-10     # large counts: χ²
  assert sig.homogeneity([[5, 0], [5, 0]]) is None               # one outcome only
  assert sig.homogeneity([[5, 1]]) is None


@pytest.mark.parametrize("alternative", ["two-sided", "greater"])
def test_wilcoxon_with_ties_or_zeros_gives_scipys_permutation_p(alternative):
  rng = np.random.default_rng(0)
  cases = [rng.integers(-3, 4, n) / 4.0 for n in (2, 5, 9, 13)] + [
      np.array([0.1, 0.1, -0.2, 0.0, 0.3]), np.array([0.5, 0.5, 0.5])]
  for d in cases:
    if not np.any(d != 0):
      continue
    assert sig.wilcoxon(d, alternative) == pytest.approx(
        stats.wilcoxon(d, alternative=alternative).pvalue, rel=1e-12, abs=1e-15), d


def test_the_cluster_bootstrap_equals_spearman_over_each_concatenated_resample():
  rng = np.random.default_rng(3)
  clusters = np.repeat(np.arange(4), [3, 5, 2, 4])
  x = np.round(rng.normal(size=14), 1)                   # ties within and across clusters
  y = np.round(x + rng.normal(size=14), 1)
  members = [np.flatnonzero(clusters == c) for c in range(4)]
  picks = np.random.default_rng(0).integers(0, 4, [50, 4])
  want = []
  for pick in picks:
    i = np.concatenate([members[k] for k in pick])
    want.append(stats.spearmanr(x[i], y[i])[0] if np.ptp(x[i]) and np.ptp(y[i]) else np.nan)
  weights = np.stack([np.bincount(p, minlength=4) for p in picks])[:, clusters]
  np.testing.assert_allclose(sig._weighted_spearman_rows(x, y, weights), want, atol=1e-12)
