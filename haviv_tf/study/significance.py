"""The statistics the study report and the cross-network analysis share.

Summaries (mean ± s.d.), rank tests (Wilcoxon signed-rank, Mann–Whitney U), correlations
(Spearman, Pearson), Spearman's ρ with a bootstrap 95% interval (pooled, or averaged within
groups such as networks), each giving None where the data cannot support it (too few values,
no spread), and the number formats the reports print.
NumPy and SciPy only: no TensorFlow, nothing from the rest of the package.
"""

import math
from typing import Optional, Sequence

import numpy as np
from scipy import stats


def _finite(values):
  return [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]


def mean_sd(values) -> str:
  """'m ± s' (sample s.d.) over the values that are not None/NaN; '–' when there are none."""
  v = _finite(values)
  if not v:
    return "–"
  if len(v) == 1:
    return f"{v[0]:.3f}"
  return f"{np.mean(v):.3f} ± {np.std(v, ddof=1):.3f}"


def fmt(v, spec=".3f") -> str:
  return "–" if v is None else format(v, spec)


def fmt_p(p) -> str:
  return "–" if p is None or (isinstance(p, float) and math.isnan(p)) else f"{p:.2g}"


def signed(v) -> str:
  return "–" if v is None else f"{v:+.3f}"


def wilson(successes: float, n: int, z: float = 1.96) -> tuple:
  """Wilson score interval (lo, hi) of a binomial proportion; (nan, nan) for n = 0."""
  # Not scipy.stats.binomtest(k, n).proportion_ci(method="wilson"): that is the same formula
  # (tests/significance_test.py checks it to 1e-12 at SciPy's z), but it takes an integer k
  # (the report passes accuracy x trials, a float) and fixes z = ndtri(0.975) = 1.95996...,
  # which would move the committed intervals (computed with z = 1.96) by ~3e-7.
  if n <= 0:
    return (float("nan"), float("nan"))
  p = successes / n
  centre = (p + z * z / (2 * n)) / (1 + z * z / n)
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
  return (centre - half, centre + half)


def wilcoxon(diffs: Sequence[float], alternative: str = "two-sided") -> Optional[float]:
  """Wilcoxon signed-rank p of paired differences (None: < 2 values or all zero);
  `alternative` "greater": one-sided, that the differences lean positive."""
  if len(diffs) < 2 or not any(x != 0 for x in diffs):
    return None
  d = np.asarray(diffs, np.float64)
  nonzero = d != 0
  ties = len(np.unique(np.abs(d[nonzero]))) < nonzero.sum()
  if (ties or not nonzero.all()) and len(d) <= _WILCOXON_PERMUTED:
    return _wilcoxon_permuted(d, nonzero, alternative)
  return float(stats.wilcoxon(d, alternative=alternative).pvalue)


# With ties or zeros and at most this many differences, SciPy's wilcoxon takes the exact
# permutation test over all 2^n sign flips, recomputing the ranks per flip (about 2 s for n 13).
_WILCOXON_PERMUTED = 13


def _wilcoxon_permuted(d, nonzero, alternative):
  """SciPy's p for that case (zeros dropped, "wilcox"): the same permutation test, with the
  ranks of |d| computed once (a sign flip leaves them as they are) and the flips vectorised.
  tests/significance_test.py checks it equals stats.wilcoxon's p."""
  ranks = np.zeros_like(d)
  ranks[nonzero] = stats.rankdata(np.abs(d[nonzero]))
  return float(stats.permutation_test(
      (d,), lambda x, axis: np.sum((x > 0) * ranks, axis=axis), permutation_type="samples",
      vectorized=True, n_resamples=np.inf, alternative=alternative, axis=-1).pvalue)


# A bootstrap over fewer clusters (networks) than this has too few distinct resamples for its
# interval to mean anything (2 networks: 3 resamples); reports then print no interval.
MIN_CLUSTERS = 5


def interval_shown(v) -> bool:
  """Whether a spearman_with_ci / concordance result's 95% interval is worth printing: it was
  computed and, where it resampled whole clusters, over at least MIN_CLUSTERS of them."""
  return bool(v) and v.get("low") is not None and v.get("clusters", MIN_CLUSTERS) >= MIN_CLUSTERS


# Up to this many ways to split the values into the two samples the permutation p is exact.
_EXACT_SPLITS = 20_000


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> Optional[float]:
  """Two-sided Mann–Whitney U p of two samples (None: either has < 2 values, or no spread),
  by permutation: exact over every split of the values for small samples (accuracies share a
  1/trials grid, so ties are common, and SciPy's default then falls back to the normal
  approximation, 0.199 against the exact 0.240 for 6 vs 6 with one tie), else 9,999 seeded
  random splits."""
  if len(a) < 2 or len(b) < 2 or np.ptp(list(a) + list(b)) == 0:
    return None
  exact = math.comb(len(a) + len(b), len(a)) <= _EXACT_SPLITS
  method = stats.PermutationMethod(n_resamples=np.inf if exact else 9_999, random_state=0)
  return float(stats.mannwhitneyu(a, b, method=method).pvalue)


def homogeneity(counts, num_perm: int = 10_000, seed: int = 0) -> Optional[float]:
  """p of the test that the rows of a [groups, outcomes] count table share one distribution
  (e.g. each network's correct and wrong trials): Pearson's χ², or where an expected count is
  below 5 (the χ² approximation is poor there) its permutation version, the outcomes shuffled
  over the trials `num_perm` times. None with fewer than two rows, or when an outcome never
  occurs (all equal: nothing to test)."""
  table = np.asarray(counts, np.float64)
  if table.ndim != 2 or len(table) < 2:
    return None
  table = table[table.sum(1) > 0]
  if len(table) < 2 or np.any(table.sum(0) == 0):
    return None
  chi2, p, _, expected = stats.chi2_contingency(table, correction=False)
  if expected.min() >= 5:
    return float(p)
  return _permutation_homogeneity(table.astype(np.int64), expected, float(chi2), num_perm, seed)


def _permutation_homogeneity(table, expected, observed, num_perm, seed):
  rows = np.repeat(np.arange(table.shape[0]), table.sum(1))
  outcomes = np.concatenate([np.repeat(np.arange(table.shape[1]), r) for r in table])
  rng = np.random.default_rng(seed)
  hits = 0
  for _ in range(num_perm):
    t = np.bincount(rows * table.shape[1] + rng.permutation(outcomes),
                    minlength=table.size).reshape(table.shape)
    hits += np.sum((t - expected) ** 2 / expected) >= observed - 1e-9
  return float((hits + 1) / (num_perm + 1))


def correlate(pairs) -> dict:
  """Spearman and Pearson correlation of (x, y) pairs; None values below 3 pairs or no spread."""
  n = len(pairs)
  none = dict(n=n, spearman=None, spearman_p=None, pearson=None, pearson_p=None)
  if n < 3:
    return none
  x, y = np.array(pairs, dtype=float).T
  if np.ptp(x) == 0 or np.ptp(y) == 0:
    return none
  s, sp = stats.spearmanr(x, y)
  p, pp = stats.pearsonr(x, y)
  return dict(n=n, spearman=float(s), spearman_p=float(sp), pearson=float(p),
              pearson_p=float(pp))


def _spearman(x, y):
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if len(x) < 3 or np.ptp(stats.rankdata(x)) == 0 or np.ptp(y) == 0:
    return None
  rx, ry = stats.rankdata(x), stats.rankdata(y)
  return float(np.corrcoef(rx, ry)[0, 1])


def _spearman_rows(x, y):
  """Spearman ρ of each row pair of x, y [B, n] (NaN where a row is constant)."""
  rx = stats.rankdata(x, axis=1)
  ry = stats.rankdata(y, axis=1)
  rx -= rx.mean(1, keepdims=True)
  ry -= ry.mean(1, keepdims=True)
  den = np.sqrt(np.sum(rx * rx, 1) * np.sum(ry * ry, 1))
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(den > 0, np.sum(rx * ry, 1) / np.where(den > 0, den, 1.0), np.nan)


def spearman_with_ci(x, y, groups=None, num_boot: int = 2000, seed: int = 0,
                     clusters=None) -> dict:
  """Spearman ρ of x and y with a percentile bootstrap 95% interval.

  groups None: ρ over all pairs ("pooled"); the bootstrap resamples pairs, or, with `clusters`
  [n] (the network of each pair), whole clusters with all their pairs: the pairs of one
  network are not independent, and resampling them one by one would give an interval that
  ignores the network-to-network spread. groups [n]: the mean over groups (networks) of the
  within-group ρ ("within"); the bootstrap resamples pairs within each group. Groups with fewer
  than 3 pairs or constant values are left out; bootstrap resamples where a group comes out
  constant are dropped.

  Returns:
    {"rho", "low", "high", "n" (pairs), "groups" (used groups; pooled: 1), "clusters" (pooled
    with clusters: how many)}; rho None if not computable.
  """
  # Not scipy.stats.bootstrap: with the same generator its paired percentile bootstrap draws
  # the same indices and gives the same pooled interval (tests/significance_test.py), but it
  # cannot drop the resamples whose values come out constant (ρ undefined; SciPy's interval
  # becomes NaN) and cannot resample within groups (the "within" interval, stratified by
  # network, one draw per group from the same generator), so both keep this one resampling.
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  rng = np.random.default_rng(seed)
  if groups is None and clusters is not None:
    return _cluster_bootstrap(x, y, np.asarray(clusters), num_boot, rng)
  if groups is None:
    rho = _spearman(x, y)
    boots = np.zeros([0])
    if rho is not None:
      i = rng.integers(0, len(x), [num_boot, len(x)])
      boots = _spearman_rows(x[i], y[i])
    used = 1
  else:
    groups = np.asarray(groups)
    members = [np.flatnonzero(groups == g) for g in dict.fromkeys(groups.tolist())]
    members = [m for m in members if _spearman(x[m], y[m]) is not None]
    rho = float(np.mean([_spearman(x[m], y[m]) for m in members])) if members else None
    boots = np.zeros([0])
    if members:
      per = []
      for m in members:
        i = m[rng.integers(0, len(m), [num_boot, len(m)])]
        per.append(_spearman_rows(x[i], y[i]))
      # Mean over the groups whose resample is not constant; NaN (dropped below) where none is.
      per = np.stack(per)
      count = np.isfinite(per).sum(0)
      boots = np.where(count > 0, np.nansum(per, 0) / np.maximum(count, 1), np.nan)
    used = len(members)
  boots = boots[np.isfinite(boots)]
  low, high = (np.percentile(boots, [2.5, 97.5]).tolist() if len(boots) >= 20 else (None, None))
  return dict(rho=rho, low=low, high=high, n=int(len(x)), groups=used)


def _cluster_bootstrap(x, y, clusters, num_boot, rng) -> dict:
  """spearman_with_ci pooled over every pair, its interval from resampling whole clusters."""
  rho = _spearman(x, y)
  labels = list(dict.fromkeys(clusters.tolist()))
  low = high = None
  if rho is not None and len(labels) >= 2:
    picks = rng.integers(0, len(labels), [num_boot, len(labels)])
    drawn = np.stack([np.bincount(p, minlength=len(labels)) for p in picks])  # [B, clusters]
    boots = _weighted_spearman_rows(x, y, drawn[:, [labels.index(c) for c in clusters.tolist()]])
    boots = boots[np.isfinite(boots)]
    if len(boots) >= 20:
      low, high = np.percentile(boots, [2.5, 97.5]).tolist()
  return dict(rho=rho, low=low, high=high, n=int(len(x)), groups=1, clusters=len(labels))


def _weighted_midranks(v, weights):
  """[B, n] midranks of v [n] in each resample given as weights [B, n] (how often it holds each
  value): the ranks a value repeated that often would get among the concatenated resample."""
  values, inverse = np.unique(v, return_inverse=True)
  onehot = np.zeros([len(v), len(values)])
  onehot[np.arange(len(v)), inverse] = 1.0
  tied = weights @ onehot                                       # [B, distinct values]
  mid = np.cumsum(tied, axis=1) - tied + (tied + 1.0) / 2.0
  return mid[:, inverse]


def _weighted_spearman_rows(x, y, weights):
  """Spearman ρ of each resample [B] given as weights [B, n]: equal to ρ over the concatenated
  resample (each pair repeated its weight times), without building it; NaN where the ranks of
  x or y are constant."""
  weights = np.asarray(weights, np.float64)
  rx, ry = _weighted_midranks(x, weights), _weighted_midranks(y, weights)
  total = weights.sum(1, keepdims=True)
  rx -= np.sum(weights * rx, 1, keepdims=True) / total
  ry -= np.sum(weights * ry, 1, keepdims=True) / total
  den = np.sqrt(np.sum(weights * rx * rx, 1) * np.sum(weights * ry * ry, 1))
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(den > 1e-12, np.sum(weights * rx * ry, 1) / np.where(den > 0, den, 1.0),
                    np.nan)


def concordance(risk, time, censored, clusters=None, num_boot: int = 2000, seed: int = 0) -> dict:
  """Harrell's concordance C of a risk score with censored times, with a bootstrap 95% interval.

  A pair is comparable when the shorter time is observed (not censored) and the other is longer,
  or censored at the same or a later time (it lasted at least as long); it is concordant when
  the shorter time has the higher risk (ties in risk count one half). C is the concordant share
  of the comparable pairs: 0.5 without relation, 1 when risk orders every comparable pair.
  Unlike a rank correlation with censored times entered at their censoring time, a censored
  pair is never ranked against itself. The bootstrap resamples whole `clusters` (networks) when
  given, else single values, by weighting each value with how often a resample holds it.

  Returns:
    {"c", "low", "high", "pairs" (comparable pairs), "n", "clusters" (with clusters)}; c None
    without comparable pairs.
  """
  risk, time = np.asarray(risk, np.float64), np.asarray(time, np.float64)
  censored = np.asarray(censored, bool)
  keep = ~np.isnan(risk) & ~np.isnan(time)   # ±inf risks rank; NaN ones cannot
  risk, time, censored = risk[keep], time[keep], censored[keep]
  if clusters is not None:
    clusters = np.asarray(clusters)[keep]
  comp, conc = _concordance_pairs(risk, time, censored)
  out = dict(c=None, low=None, high=None, pairs=int(comp.sum()), n=int(len(time)))
  if clusters is not None:
    labels = list(dict.fromkeys(np.asarray(clusters).tolist()))
    out["clusters"] = len(labels)
  if not comp.sum():
    return out
  out["c"] = float(conc.sum() / comp.sum())
  rng = np.random.default_rng(seed)
  if clusters is None:
    weights = rng.multinomial(len(time), np.full(len(time), 1 / len(time)), num_boot)
  else:
    index = np.array([labels.index(c) for c in np.asarray(clusters).tolist()])
    picks = rng.multinomial(len(labels), np.full(len(labels), 1 / len(labels)), num_boot)
    weights = picks[:, index]
  boots = weighted_concordance(comp, conc, weights)
  boots = boots[np.isfinite(boots)]
  if len(boots) >= 20:
    out["low"], out["high"] = np.percentile(boots, [2.5, 97.5]).tolist()
  return out


def _concordance_pairs(risk, time, censored):
  """(comparable, concordant) [n, n] of float64 [n] risk, time and bool [n] censored: row i the
  shorter, observed time of the pair."""
  event = ~censored
  shorter = event[:, None] & ((time[:, None] < time[None, :])
                              | ((time[:, None] == time[None, :]) & ~event[None, :]))
  comp = shorter.astype(np.float64)
  conc = comp * np.where(risk[:, None] > risk[None, :], 1.0,
                         np.where(risk[:, None] == risk[None, :], 0.5, 0.0))
  return comp, conc


def weighted_concordance(comp, conc, weights):
  """C of each resample [B] given as weights [B, n] (how often it holds each value): a value
  drawn k times enters k x k' times into each pair, and a value paired with its own copy is not
  comparable (equal times), so this equals C over the concatenated resample. NaN where a
  resample has no comparable pair."""
  weights = np.asarray(weights, np.float64)
  num = np.einsum("bi,ij,bj->b", weights, conc, weights)
  den = np.einsum("bi,ij,bj->b", weights, comp, weights)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
