"""How long a network remembers: delays that grow until memory fades, and memory half-lives.

The memory half-life of a network (or of one class) is the delay at which its report accuracy
has fallen halfway from its level at the training delays to chance, interpolated linearly in
log delay between the two evaluated delays around the crossing. A curve that never falls that
far is *censored* at the longest delay evaluated (the half-life is at least that); one that
starts within noise of chance has no half-life. A curve that falls below halfway and later
rises clearly above it again (a class whose state is where other memories end up, reached again
after a detour) keeps its first crossing as its half-life and records the delay it came back
at (`recovers_at`). A dip to within noise below halfway that the next evaluated delay
contradicts (back above halfway by more than noise) is a noisy dip, not the crossing. Pure numpy: no TensorFlow here.
"""

import math

import numpy as np

from haviv_tf.base import config as config_lib

CHANCE = 1.0 / config_lib.NUM_CLASSES
DEFAULT_MAX_DELAY = 10_000   # --mode=memory evaluates up to this delay by default
MAX_DELAY = 100_000          # the longest delay any evaluation accepts (--eval_delays too)
NOISE_Z = 2.0                # "within noise of chance": at most chance + NOISE_Z binomial SEs
SERIES = (1, 2, 5)           # delays 1-2-5 per decade: 5, 10, 20, 50, 100, ...
# The half-life rule's version, stored with each half-life. 2: a dip within noise below
# halfway that the next delay contradicts is skipped, informedness has a noise floor (INFORMEDNESS_NULL_SD), a
# decayed half-life says whether it is an upper bound. 1 (no "rule_version"): first crossing.
RULE_VERSION = 2


def geometric_delays(start: int, max_delay: int = DEFAULT_MAX_DELAY) -> tuple:
  """Delays of the 1-2-5 series from `start` (included) up to `max_delay` (included).

  >>> geometric_delays(5, 1000)
  (5, 10, 20, 50, 100, 200, 500, 1000)
  """
  if start < 1 or max_delay < start:
    raise ValueError(f"delays from {start} to {max_delay}: need 1 <= start <= max_delay")
  out = {int(start), int(max_delay)}
  decade = 1
  while decade <= max_delay:
    out.update(m * decade for m in SERIES if start <= m * decade <= max_delay)
    decade *= 10
  return tuple(sorted(out))


def check_delays(delays, min_delay: int, max_delay: int = MAX_DELAY) -> tuple:
  """`delays` as a tuple of ints, if sorted, distinct, >= min_delay and <= max_delay.

  Raises:
    ValueError: naming the first offending delay.
  """
  out = []
  for d in delays:
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
      raise ValueError(f"delays must be integers, got {d!r}")
    d = int(d)
    if d < min_delay:
      raise ValueError(f"delay {d} is below the minimum delay {min_delay}")
    if d > max_delay:
      raise ValueError(f"delay {d} is beyond the longest delay evaluated, {max_delay}")
    if out and d <= out[-1]:
      raise ValueError(f"delays must be sorted and distinct: {d} after {out[-1]}")
    out.append(d)
  if not out:
    raise ValueError("no delays given")
  return tuple(out)


# The standard deviation of one trial's contribution to a class's informedness when the network
# guesses (each class reported with probability p = 1/K): the hit rate's binomial variance plus
# that of the mean false-alarm rate over the K - 1 other classes, sqrt(p(1-p)(1 + 1/(K-1))).
INFORMEDNESS_NULL_SD = math.sqrt(CHANCE * (1 - CHANCE) * (1 + 1 / (config_lib.NUM_CLASSES - 1)))


def noise_bound(num_trials: int, chance: float = CHANCE, null_sd=None) -> float:
  """The value up to which a measure from `num_trials` trials is within noise of chance.

  null_sd: the per-trial standard deviation of the measure when guessing; None for an accuracy
  (binomial, sqrt(chance (1 - chance))). Informedness (chance 0) uses INFORMEDNESS_NULL_SD.
  """
  sd = math.sqrt(chance * (1 - chance)) if null_sd is None else float(null_sd)
  return chance + NOISE_Z * sd / math.sqrt(max(1, num_trials))


def at_chance(accuracy: float, num_trials: int, chance: float = CHANCE, null_sd=None) -> bool:
  return accuracy <= noise_bound(num_trials, chance, null_sd)


def half_life(delays, accuracies, training_max_delay: int, num_trials: int,
              chance: float = CHANCE, null_sd=None) -> dict:
  """The memory half-life of one accuracy-vs-delay curve.

  Args:
    delays: evaluated delays, increasing.
    accuracies: report accuracy at each delay (None entries are dropped with their delay).
    training_max_delay: the longest delay of a training trial (seq_len - 1); the level is the
      mean accuracy over the evaluated delays up to it.
    num_trials: trials behind each accuracy (for "within noise of chance").
    chance: accuracy of guessing.
    null_sd: per-trial standard deviation of the measure when guessing (noise_bound); None for
      an accuracy.

  Returns:
    {"half_life": delay or None, "censored": bool, "status": "decayed" | "censored" |
     "at_chance", "level", "target" (the accuracy halfway to chance), "longest_delay",
     "recovers_at": for a decayed curve, the first later delay whose accuracy is above the
     target by more than noise (None if none), "upper_bound": for a decayed curve, True when it
     is already below the target at the shortest delay (the half-life is at most that delay)}.

  Raises:
    ValueError: fewer than two delays, or none within a training trial.
  """
  pairs = [(int(d), float(a)) for d, a in zip(delays, accuracies)
            if a is not None and math.isfinite(float(a))]
  if len(pairs) < 2:
    raise ValueError("a half-life needs accuracies at two or more delays; evaluate more delays "
                     "first (--mode=memory)")
  d = np.array([p[0] for p in pairs], np.float64)
  a = np.array([p[1] for p in pairs], np.float64)
  if np.any(np.diff(d) <= 0):
    raise ValueError("delays must be increasing")
  train = d <= training_max_delay
  if not train.any():
    raise ValueError(f"no evaluated delay within a training trial (<= {training_max_delay}): "
                     "the level to decay from is unknown")
  level = float(a[train].mean())
  target = chance + (level - chance) / 2
  out = dict(level=level, target=float(target), longest_delay=int(d[-1]), chance=chance)
  if at_chance(level, num_trials * int(train.sum()), chance, null_sd):
    return dict(out, half_life=None, censored=False, status="at_chance")
  sd = math.sqrt(max(target * (1 - target), 0.0))
  margin = NOISE_Z * max(sd, 0.0 if null_sd is None else float(null_sd)) / math.sqrt(
      max(1, num_trials))
  i = _first_crossing(a, target, margin)
  if i is None:
    return dict(out, half_life=int(d[-1]), censored=True, status="censored")
  back = np.flatnonzero(a[i + 1:] > target + margin)
  out["recovers_at"] = int(d[i + 1 + back[0]]) if len(back) else None
  if i == 0:  # already below at the shortest delay (a level from later training delays)
    return dict(out, half_life=float(d[0]), censored=False, status="decayed", upper_bound=True)
  d0, d1, a0, a1 = d[i - 1], d[i], a[i - 1], a[i]
  frac = (a0 - target) / (a0 - a1)
  value = math.exp(math.log(d0) + frac * (math.log(d1) - math.log(d0)))
  return dict(out, half_life=float(value), censored=False, status="decayed", upper_bound=False)


def _first_crossing(a, target, margin):
  """Index of the first accuracy at or below `target` that is not a noisy dip: it is clearly
  below (by more than `margin`), or the next one does not contradict it (is at most
  `target + margin`), or it is the last; None if there is no such one. A shallow dip that the
  next delay contradicts is noise; a deep one is a fall (a later return is `recovers_at`)."""
  for i in np.flatnonzero(a <= target):
    if i + 1 == len(a) or a[i] < target - margin or a[i + 1] <= target + margin:
      return int(i)
  return None


def half_lives(results: dict, training_max_delay: int) -> dict:
  """Half-lives of a results.json's accuracy tables: overall and per class.

  Returns {"overall": half_life(...), "per_class": {"0".."9": half_life(...) or None},
  "delays": [...], "rule": "..."}, and where the results hold a confusion table at every delay
  "per_class_informedness": the same per class for its informedness (chance 0).
  """
  table = results.get("accuracy_by_delay") or {}
  trials = results.get("trials_per_delay") or {}
  keys = sorted(table, key=int)
  delays = [int(k) for k in keys]
  n = min((int(trials.get(k, 0)) for k in keys), default=0)
  if not n:
    raise ValueError("results hold no trial counts per delay (trials_per_delay)")
  overall = half_life(delays, [table[k] for k in keys], training_max_delay, n)
  per_class = {}
  pcs = results.get("per_class_accuracy_by_delay") or {}
  n_class = _class_trials(results, keys, n)
  for c in range(config_lib.NUM_CLASSES):
    accs = [(pcs.get(k) or [None] * config_lib.NUM_CLASSES)[c] for k in keys]
    try:
      per_class[str(c)] = half_life(delays, accs, training_max_delay, n_class[c])
    except ValueError:
      per_class[str(c)] = None
  out = dict(overall=overall, per_class=per_class, delays=delays, trials=n,
             rule_version=RULE_VERSION,
             rule=(f"delay where report accuracy falls halfway from its mean over delays <= "
                   f"{training_max_delay} to chance {CHANCE:g}, log-linear interpolation; a "
                   f"crossing the next delay contradicts beyond noise is skipped; censored at "
                   f"the longest delay evaluated"))
  informed = _informedness_half_lives(results, keys, delays, training_max_delay, n_class)
  return dict(out, per_class_informedness=informed) if informed else out


def _class_trials(results, keys, n):
  """Trials of each class behind its per-class figures: the fewest over the delays of its row
  of the confusion table where the results hold one at every delay (classes are drawn at
  random, so they are not n / K each), else n / K."""
  tables = results.get("report_confusion_by_delay") or {}
  if keys and all(k in tables for k in keys):
    rows = np.array([np.asarray(tables[k], np.float64).sum(axis=1) for k in keys])
    if rows.ndim == 2 and rows.shape[1] == config_lib.NUM_CLASSES:
      return [max(1, int(v)) for v in rows.min(axis=0)]
  return [max(1, n // config_lib.NUM_CLASSES)] * config_lib.NUM_CLASSES


def _informedness_half_lives(results, keys, delays, training_max_delay, n_class):
  """Per class, the half-life of its informedness (`informedness`, chance 0) where the results
  hold a confusion table at every delay, else None: a class the others drain into keeps its
  accuracy, not its informedness (its accuracy half-life is then censored or recovers)."""
  tables = results.get("report_confusion_by_delay") or {}
  if not keys or any(k not in tables for k in keys):
    return None
  curves = [informedness(tables[k]) for k in keys]
  out = {}
  for c in range(config_lib.NUM_CLASSES):
    try:
      out[str(c)] = half_life(delays, [row[c] for row in curves], training_max_delay,
                              n_class[c], chance=0.0, null_sd=INFORMEDNESS_NULL_SD)
    except ValueError:
      out[str(c)] = None
  return out


def sinks(halves: dict) -> list:
  """Classes ("0".."9") of half_lives' result whose accuracy outlasts their informedness by more
  than twice (the later of the accuracy half-life and its recovers_at against the decayed
  informedness half-life): the other classes' trials are reported as them, so their accuracy
  at long delays is not memory of them. [] without informedness half-lives."""
  out = []
  for c, h in (halves.get("per_class_informedness") or {}).items():
    acc = halves["per_class"].get(c)
    if not h or h["status"] != "decayed" or not acc or acc.get("half_life") is None:
      continue
    if max(acc["half_life"], acc.get("recovers_at") or 0) > 2 * h["half_life"]:
      out.append(c)
  return out


def stop_delay(accuracy: float, num_trials: int) -> bool:
  """Whether an evaluation growing its delay can stop: accuracy within noise of chance."""
  return at_chance(accuracy, num_trials)


def claim_delay(half_life_values, evaluated_delays) -> dict:
  """The delay at which a grid's claims are tested where its memory actually decays.

  Rule: the evaluated delay nearest, in log delay, to the median of the networks' overall
  half-lives (censored ones at their censoring delay, a lower bound: the median is then one
  too). Networks without a half-life (at chance from the start) are left out. When more than
  half are censored the median is no half-life at all, only the longest delays evaluated:
  no delay is chosen (ValueError).

  Returns {"delay", "median_half_life", "networks", "censored", "rule"}.
  """
  vals = [(float(h["half_life"]), bool(h["censored"])) for h in half_life_values
          if h and h.get("half_life") is not None]
  if not vals:
    raise ValueError("no network has a half-life: no delay to choose")
  if not evaluated_delays:
    raise ValueError("no evaluated delays to choose from")
  censored = sum(c for _, c in vals)
  if 2 * censored > len(vals):
    raise ValueError(f"{censored} of {len(vals)} half-lives are censored: their median is not "
                     "a half-life")
  median = float(np.median([v for v, _ in vals]))
  delays = sorted(int(d) for d in evaluated_delays)
  best = min(delays, key=lambda d: (abs(math.log(d) - math.log(median)), d))
  return dict(delay=best, median_half_life=median, networks=len(vals), censored=censored,
              rule="the evaluated delay nearest in log delay to the median network half-life")


def informedness(confusion) -> list:
  """Per class, how much a report of it tells about what was shown, from a confusion table
  (row the class shown, column the class reported; evaluation's "report_confusion_by_delay"):
  the rate at which its trials are reported as it, minus the mean rate at which the other
  classes' trials are (Youden's J, Peirce's skill score). A class every forgotten memory
  drains into (a sink) keeps a high accuracy but an informedness near 0; guessing gives 0 and
  a perfect memory 1. None for a class that has no trials, or that every other class lacks.
  """
  counts = np.asarray(confusion, dtype=np.float64)
  if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
    raise ValueError(f"a confusion table is square; got shape {counts.shape}")
  shown = counts.sum(axis=1)
  rates = np.divide(counts, shown[:, None], out=np.full_like(counts, np.nan),
                    where=shown[:, None] > 0)
  out = []
  for c in range(counts.shape[0]):
    others = np.delete(rates[:, c], c)
    others = others[np.isfinite(others)]
    out.append(None if shown[c] == 0 or others.size == 0
               else float(rates[c, c] - others.mean()))
  return out
