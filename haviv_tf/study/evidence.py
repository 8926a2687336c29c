"""What the study report's claims read: the runs' records, their accuracies and the test levels.

`collect` loads one record per run from the files the sweep wrote (results.json, compare.json,
backtrack.json, sweep_done.json); `Evidence` is what every claim gets; the accessors below read
one number from a record. The constants are the levels the claims test against.
"""

import dataclasses
import datetime
import math
import os
from typing import Optional

from haviv_tf.analysis import backtrack as backtrack_lib
from haviv_tf.analysis import control
from haviv_tf.base import artifacts
from haviv_tf.study import significance as sig
from haviv_tf.study import sweep

CEILING_JSON = "ceiling.json"  # optional: experiments/mlp_ceiling.py --json, read by claim (a)
# optional: experiments/centre_targets.py, read by claim (d) where a penalty fails
TARGETS_JSON = "centre_targets.json"
SOLVED = 0.95          # (a): a network solves the task if report accuracy >= this at every
                       # training delay (x the measured ceiling where that is below SOLVED)
HIGH = 0.98            # (a): the plain classifier's level on MNIST (experiments/mlp_ceiling.md)
# The delay at which claims (c) and (d) are tested, by data set. MNIST memories decay over
# hundreds of steps: 500. The quick CIFAR-10 networks keep theirs to ~50 steps and are at chance
# from 200: 100, where memory has decayed partway and a penalty has room to act. Chosen from the
# trained accuracy of the pilot network of experiments/cifar10_quick.md (a DeCu GRU, seed 0),
# before any fine-tuning or slow-point result of a grid was seen.
TEST_DELAY = {"mnist": 500, "cifar10": 100}
WIDE = 0.2             # (b): networks differ widely if accuracies at a long delay span >= this
ALPHA = 0.05
CHANCE = 0.1  # report accuracy of a guess among the 10 classes


@dataclasses.dataclass(frozen=True)
class Evidence:
  """What every claim reads: the analysed runs and the delays they were evaluated at."""
  root: str
  out: str
  have: list               # records (see collect) of runs with an evaluation
  delays: list
  seq_len: int
  ceiling: Optional[dict] = None  # a measured ceiling (CEILING_JSON) for claim (a), if given
  targets: Optional[dict] = None  # the penalties' targets measured (TARGETS_JSON), for (d)
  # Where the claims are tested a second time: memory.claim_delay's choice (median network
  # half-life) among the long delays every network was evaluated at; None where none can be.
  claim_delay: Optional[dict] = None

  @property
  def train_delays(self):
    return [d for d in self.delays if d < self.seq_len]

  @property
  def long_delays(self):
    return [d for d in self.delays if d >= self.seq_len]


def _read_optional(path):
  return artifacts.read_json(path) if os.path.exists(path) else None


def collect(root: str, specs) -> list:
  """One record per run that finished its training analysis (others are listed as missing)."""
  out = []
  for s in specs:
    workdir = os.path.join(root, s.name)
    # The config the run recorded (the grid's presets may have changed since it ran).
    cfg = artifacts.recorded_config(workdir) or s.config()
    rec = dict(name=s.name, protocol=s.protocol, arch=s.arch, dataset=s.dataset, seed=s.seed,
               workdir=workdir, done=sweep.is_done(s, root), config=cfg)
    rec["results"] = _read_optional(os.path.join(workdir, artifacts.RESULTS_FILE))
    rec["compare"] = _read_optional(os.path.join(control.default_out(workdir),
                                                 control.COMPARE_JSON))
    rec["backtrack"] = _read_optional(os.path.join(workdir, backtrack_lib.BACKTRACK_JSON))
    done_path = os.path.join(workdir, sweep.DONE_FILE)
    rec["seconds"] = rec["finished"] = rec["intervals"] = None
    rec["interrupted"] = 0
    if os.path.exists(done_path):
      done = artifacts.read_json(done_path)
      rec["seconds"] = sum(done["seconds_per_step"].values())
      rec["finished"] = datetime.datetime.strptime(done["finished"],
                                                   "%Y-%m-%dT%H:%M:%S%z").timestamp()
      # Runs finished before step attempts were kept (no "intervals") recorded only the sweep
      # invocation that finished them.
      if "intervals" in done:
        rec["intervals"] = [tuple(i) for i in done["intervals"]]
        rec["interrupted"] = int(done.get("interrupted", 0))
    out.append(rec)
  return out


def read_first(name, *folders):
  """The JSON file `name` from the first of `folders` that has it, or None."""
  for f in folders:
    path = os.path.join(f, name)
    if os.path.exists(path):
      return artifacts.read_json(path)
  return None


def read_ceiling(*folders):
  """The first CEILING_JSON found in `folders`, or None."""
  return read_first(CEILING_JSON, *folders)


def acc(rec, delay, row=None):
  """A run's report accuracy at `delay` (None: not evaluated); `row`: a fine-tuning's instead."""
  if row is None:
    table = (rec["results"] or {}).get("accuracy_by_delay", {})
  else:
    table = ((rec["compare"] or {}).get("rows", {}).get(row) or {}).get("accuracy_by_delay", {})
  return table.get(str(delay))


def groups(recs) -> dict:
  """{"dataset protocol arch": [records]}, sorted by the group's name."""
  g = {}
  for r in recs:
    g.setdefault(f"{r['dataset']} {r['protocol']} {r['arch']}", []).append(r)
  return dict(sorted(g.items()))


# Claims (c) and (d) compare networks: with fewer than this many, a verdict would rest on a
# test that cannot reach ALPHA (one-sided Wilcoxon, exact: p >= 1/2^n) or on a bootstrap of
# a handful of networks; they are then "not testable" and their numbers descriptive.
MIN_NETWORKS = sig.MIN_CLUSTERS


def verdict(held) -> str:
  """Held / Did not hold; None: not testable (too few networks, or nothing to test)."""
  return "Not testable" if held is None else ("Held" if held else "Did not hold")


def pooled_training_accuracy(rec, train_delays):
  """(accuracy, lo, hi): report accuracy pooled over the training delays' test trials."""
  res = rec["results"] or {}
  counts = res.get("trials_per_delay", {})
  n = [int(counts.get(str(d), 0)) for d in train_delays]
  k = [acc(rec, d) * m for d, m in zip(train_delays, n)]
  total = sum(n)
  if not total:
    return (float("nan"),) * 3
  lo, hi = sig.wilson(sum(k), total)
  return (sum(k) / total, lo, hi)


def test_delay(have, available):
  """The delay of claims (c) and (d) among `available` (ints): TEST_DELAY of the networks' data
  set (500 for a mix), else the longest available."""
  datasets = {r["dataset"] for r in have}
  want = TEST_DELAY.get(datasets.pop(), 500) if len(datasets) == 1 else 500
  return want if want in available else available[-1]


def chance_delays(recs, delays) -> list:
  """The delays (of `delays`) at which every network's report accuracy is within two binomial
  standard errors of chance (1 in 10 classes), given each run's trial count there."""
  out = []
  for d in delays:
    accs = [((r["results"] or {}).get("accuracy_by_delay", {}).get(str(d)),
             (r["results"] or {}).get("trials_per_delay", {}).get(str(d))) for r in recs]
    if accs and all(a is not None and n and a <= CHANCE + 2 * math.sqrt(
        CHANCE * (1 - CHANCE) / n) for a, n in accs):
      out.append(d)
  return out
