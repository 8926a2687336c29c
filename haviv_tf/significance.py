"""The statistics the study report and the cross-network analysis share.

Summaries (mean ± s.d.), rank tests (Wilcoxon signed-rank, Mann–Whitney U), correlations
(Spearman, Pearson) and bootstrap confidence intervals, each returning None where the data
cannot support the test (too few values, no spread), plus the number formats the reports print.
NumPy and SciPy only: no TensorFlow, nothing from the rest of the package.
"""

import math
from typing import Callable, Optional, Sequence

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


def wilcoxon(diffs: Sequence[float]) -> Optional[float]:
  """Two-sided Wilcoxon signed-rank p of paired differences (None: < 2 values or all zero)."""
  if len(diffs) < 2 or not any(x != 0 for x in diffs):
    return None
  return float(stats.wilcoxon(diffs).pvalue)


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> Optional[float]:
  """Two-sided Mann–Whitney U p of two samples (None: either has < 2 values, or no spread)."""
  if len(a) < 2 or len(b) < 2 or np.ptp(list(a) + list(b)) == 0:
    return None
  return float(stats.mannwhitneyu(a, b).pvalue)


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


def bootstrap_ci(statistic: Callable[[np.ndarray], float], data, n_boot: int = 2000,
                 level: float = 0.95, seed: int = 0, groups=None) -> Optional[tuple]:
  """Percentile bootstrap interval of `statistic` over the rows of `data`.

  Rows are resampled with replacement; with `groups` (one label per row), whole groups are
  resampled instead (a cluster bootstrap, e.g. networks rather than classes). Resamples on
  which the statistic is undefined (returns None or NaN) are dropped. Returns (low, high), or
  None when fewer than half of the resamples give a value.
  """
  data = np.asarray(data)
  if len(data) == 0:
    return None
  rng = np.random.default_rng(seed)
  if groups is None:
    index_sets = [np.array([i]) for i in range(len(data))]
  else:
    labels = np.asarray(groups)
    index_sets = [np.flatnonzero(labels == g) for g in dict.fromkeys(labels.tolist())]
  values = []
  for _ in range(n_boot):
    pick = rng.integers(0, len(index_sets), len(index_sets))
    v = statistic(data[np.concatenate([index_sets[i] for i in pick])])
    if v is not None and np.isfinite(v):
      values.append(v)
  if len(values) < n_boot / 2:
    return None
  tail = (1 - level) / 2 * 100
  return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))
