"""The shared statistics: each against a direct computation, and the cases they refuse."""

import math

import numpy as np
import pytest
from scipy import stats

from haviv_tf import significance as sig


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
  assert sig.mann_whitney(a, b) == pytest.approx(stats.mannwhitneyu(a, b).pvalue)
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


def test_bootstrap_ci_covers_the_mean_and_narrows_with_more_data():
  rng = np.random.default_rng(1)
  small, large = rng.normal(1.0, 1.0, 20), rng.normal(1.0, 1.0, 2000)
  lo_s, hi_s = sig.bootstrap_ci(np.mean, small, n_boot=500)
  lo_l, hi_l = sig.bootstrap_ci(np.mean, large, n_boot=500)
  assert lo_l < 1.0 < hi_l and lo_s < np.mean(small) < hi_s
  assert (hi_l - lo_l) < (hi_s - lo_s) / 5       # ~ 1/sqrt(n): 10x narrower
  # The same seed gives the same interval.
  assert sig.bootstrap_ci(np.mean, small, n_boot=500) == (lo_s, hi_s)


def test_bootstrap_ci_resamples_whole_groups():
  # Two groups whose values are constant within a group: resampling groups can only give
  # group means of 0, 0.5 or 1; resampling rows would give many values in between.
  data = np.array([0.0] * 10 + [1.0] * 10)
  groups = ["a"] * 10 + ["b"] * 10
  lo, hi = sig.bootstrap_ci(np.mean, data, n_boot=400, groups=groups)
  assert lo == 0.0 and hi == 1.0
  lo_rows, hi_rows = sig.bootstrap_ci(np.mean, data, n_boot=400)
  assert 0.0 < lo_rows < 0.5 < hi_rows < 1.0


def test_bootstrap_ci_is_none_when_the_statistic_is_mostly_undefined():
  assert sig.bootstrap_ci(lambda v: None, [1.0, 2.0, 3.0], n_boot=50) is None
  assert sig.bootstrap_ci(np.mean, [], n_boot=50) is None
