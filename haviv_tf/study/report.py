"""REPORT.md of a finished sweep: each of the paper's claims next to the numbers that test it.

Everything is computed from the files the runs wrote (results.json, compare.json,
backtrack.json, sweep_done.json); nothing is typed in by hand. Each section states its test and
whether the claim held on this grid. Small grids have little statistical power: the p-values
are printed so that the reader can judge.
"""

import dataclasses
import datetime
import math
import os
import platform
import shutil
import time
from typing import Callable, Optional

import numpy as np

from haviv_tf.base import artifacts
from haviv_tf.analysis import backtrack as backtrack_lib
from haviv_tf.base import config as config_lib
from haviv_tf.analysis import control
from haviv_tf.probes import memory
from haviv_tf.analysis import plotting
from haviv_tf.study import significance as sig
from haviv_tf.study import correlations
from haviv_tf.base import summaries
from haviv_tf.study import sweep

REPORT_MD = "REPORT.md"
REPORT_JSON = "report.json"
ACCURACY_PNG = "report_accuracy_vs_delay.png"
SPEED_PNG = "report_speed_vs_accuracy.png"
FINETUNE_PNG = "report_finetune.png"
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


def collect(root: str, specs) -> list:
  """One record per run that finished its training analysis (others are listed as missing)."""
  out = []
  for s in specs:
    workdir = os.path.join(root, s.name)
    # The config the run recorded (the grid's presets may have changed since it ran).
    cfg = artifacts.recorded_config(workdir) or s.config()
    rec = dict(name=s.name, protocol=s.protocol, arch=s.arch, dataset=s.dataset, seed=s.seed,
               workdir=workdir, done=sweep.is_done(s, root), config=cfg)
    res_path = os.path.join(workdir, artifacts.RESULTS_FILE)
    rec["results"] = artifacts.read_json(res_path) if os.path.exists(res_path) else None
    cmp_path = os.path.join(control.default_out(workdir), control.COMPARE_JSON)
    rec["compare"] = artifacts.read_json(cmp_path) if os.path.exists(cmp_path) else None
    bt_path = os.path.join(workdir, backtrack_lib.BACKTRACK_JSON)
    rec["backtrack"] = artifacts.read_json(bt_path) if os.path.exists(bt_path) else None
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


def _acc(rec, delay, row=None):
  if row is None:
    table = (rec["results"] or {}).get("accuracy_by_delay", {})
  else:
    table = ((rec["compare"] or {}).get("rows", {}).get(row) or {}).get("accuracy_by_delay", {})
  return table.get(str(delay))


def _groups(recs):
  g = {}
  for r in recs:
    g.setdefault(f"{r['dataset']} {r['protocol']} {r['arch']}", []).append(r)
  return dict(sorted(g.items()))


def _verdict(held) -> str:
  return "Held" if held else "Did not hold"


def busy_seconds(intervals) -> float:
  """Length of the union of (start, end) intervals."""
  total, end = 0.0, None
  for a, b in sorted(intervals):
    if end is None or a > end:
      total += b - a
      end = b
    elif b > end:
      total += b - end
      end = b
  return total


def _header(ev: Evidence, grid_name, specs, recs, missing, wall_seconds) -> list:
  """The report's title, provenance, machine and the per-network accuracy table."""
  name = os.path.basename(os.path.abspath(ev.root))
  lines = [f"# haviv_tf study report: grid `{grid_name}`", "",
           f"Generated by `haviv_tf.study.report` on {time.strftime('%Y-%m-%d %H:%M %Z')} from "
           f"{len(ev.have)} of {len(specs)} networks in `{name}`"
           + (f" (missing: {', '.join(missing)})" if missing else "") + ".", ""]
  timed = [r for r in recs if r["seconds"] is not None]
  secs = [r["seconds"] for r in timed]
  legacy = [r for r in timed if r["intervals"] is None]
  wall_label = "wall time of the sweep"
  if wall_seconds is None and recs and len(timed) == len(recs) and not legacy:
    # From the runs' own records: the time during which at least one network was being worked
    # on (a sweep resumed after a pause does not count the pause).
    wall_seconds = busy_seconds([i for r in recs for i in r["intervals"]])
    wall_label = "wall time with at least one network running (from the runs' records)"
  caveats = []
  if legacy:
    caveats.append(f"{len(legacy)} of {len(timed)} runs recorded only the sweep invocation that "
                   "finished them, so time spent before a resume is not in this sum")
  interrupted = sum(r["interrupted"] for r in timed)
  if interrupted:
    caveats.append(f"{interrupted} step attempts were interrupted and are not timed")
  trained = _trained_revisions(recs)
  lines += [f"Code: haviv_tf {artifacts.revision_text(artifacts.code_revision())} (this report); "
            "networks trained at " + (", ".join(f"{k} ({v})" for k, v in trained.items())
                                      or "none") + ".", ""]
  lines += [f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python "
            f"{platform.python_version()}. Compute summed over runs: "
            f"{sum(secs) / 60:.1f} min" + (f" ({'; '.join(caveats)})" if caveats else "")
            + (f"; {wall_label}: {wall_seconds / 60:.1f} min" if wall_seconds else "")
            + ".", ""]
  lines += ["| network | protocol | arch | seed | "
            + " | ".join(f"acc@{d}" for d in ev.delays) + " |",
            "|---" * (4 + len(ev.delays)) + "|"]
  for r in ev.have:
    lines.append(f"| {r['name']} | {r['protocol']} | {r['arch']} | {r['seed']} | "
                 + " | ".join(f"{_acc(r, d):.3f}" if _acc(r, d) is not None else "–"
                              for d in ev.delays) + " |")
  lines.append("")
  return lines


def network_half_lives(ev_have, seq_len) -> dict:
  """{run name: memory.half_life dict of its overall accuracy curve, or None}."""
  out = {}
  for r in ev_have:
    halves = correlations.run_half_lives(r["config"], r["results"]) if r["config"] else None
    out[r["name"]] = (halves or {}).get("overall")
  return out


def choose_claim_delay(have, halves, long_delays) -> Optional[dict]:
  """memory.claim_delay over the long delays that every network in `have` was evaluated at,
  or None (with no such delay, or no network with a half-life)."""
  common = [d for d in long_delays
            if all(str(d) in r["results"]["accuracy_by_delay"] for r in have)]
  try:
    return memory.claim_delay(list(halves.values()), common)
  except ValueError:
    return None


def memory_section(ev: Evidence, halves) -> tuple:
  """How long each network remembers: its half-life, and the delay the claims are re-tested at."""
  lines = ["## Memory half-lives", "",
           "The delay at which each network's report accuracy has fallen halfway from its level "
           "at the training delays to chance (interpolated in log delay; ≥ where the curve never "
           "fell that far by the longest delay evaluated).", "",
           "| network | level at training delays | half-life | longest delay evaluated |",
           "|---|---|---|---|"]
  for name, h in halves.items():
    if not h:
      lines.append(f"| {name} | – | – | – |")
      continue
    value = ("at chance" if h.get("half_life") is None else
             f"{'≥ ' if h['censored'] else ''}{h['half_life']:.0f}")
    lines.append(f"| {name} | {h['level']:.3f} | {value} | {h['longest_delay']} |")
  cd = ev.claim_delay
  if cd:
    lines += ["", f"Claims (b)-(d) are tested at the fixed delay and again at delay "
              f"**{cd['delay']}**: {cd['rule']} ({cd['median_half_life']:.0f} over "
              f"{cd['networks']} networks, {cd['censored']} of them censored"
              + (", so the median is a lower bound" if cd["censored"] else "") + ")."]
  else:
    lines += ["", "No delay for a second test: no network has a half-life, or no long delay was "
              "evaluated on every network."]
  lines.append("")
  numbers = dict(half_lives=halves, claim_delay=cd)
  return numbers, lines


def _levels(ev: Evidence, have):
  """(solved, high, ceiling runs' test accuracies) of claim (a) for these networks' data set.

  SOLVED and HIGH are MNIST's levels. Where the report folder's measured ceiling (the same
  read-in trained as a plain classifier, CEILING_JSON) is below SOLVED, no network can reach
  them, and the test becomes relative to the ceiling: solved = SOLVED x the ceiling's mean,
  high = the ceiling's lowest run.
  """
  c = ev.ceiling
  tests = ([float(r["test_accuracy"]) for r in c["runs"]]
           if c and c.get("runs") and c.get("dataset") in {r["dataset"] for r in have} else [])
  if tests and max(tests) < SOLVED:
    return SOLVED * float(np.mean(tests)), min(tests), tests
  return SOLVED, HIGH, tests


def claim_a(ev: Evidence, have):
  """(a) every network solves the task at the training delays."""
  train_delays = ev.train_delays
  solved, high, tests = _levels(ev, have)
  relative = solved != SOLVED
  worst = {r["name"]: min(_acc(r, d) for d in train_delays) for r in have} if train_delays else {}
  held = bool(worst) and all(v >= solved for v in worst.values())
  numbers = dict(held=held, min_accuracy=worst, threshold=solved, high=high, relative=relative)
  lines = [f"Test: report accuracy on test trials ≥ {solved:.3g} at every evaluated delay < "
           f"{ev.seq_len} ({', '.join(map(str, train_delays))}) for every network."]
  if relative:
    lines.append(f"This data set's measured ceiling (below) is {np.mean(tests):.4f}, under "
                 f"{SOLVED}, so the test is relative to it: {SOLVED} × {np.mean(tests):.4f} = "
                 f"{solved:.3g}; and the level called high below is the ceiling's lowest run "
                 f"({high:.4f}) instead of {HIGH}.")
  lines += ["", "| group | n | " + " | ".join(f"acc@{d}" for d in train_delays) + " | worst |",
            "|---" * (3 + len(train_delays)) + "|"]
  for g, rs in _groups(have).items():
    lines.append(f"| {g} | {len(rs)} | " + " | ".join(sig.mean_sd([_acc(r, d) for r in rs])
                                                      for d in train_delays)
                 + f" | {min(worst[r['name']] for r in rs):.3f} |")
  n_high = sum(v >= high for v in worst.values())
  pooled = {r["name"]: _pooled_training_accuracy(r, train_delays) for r in have}
  reach = sum(1 for acc, lo, hi in pooled.values() if hi >= high)
  numbers["pooled_training_accuracy"] = {k: dict(accuracy=a, ci95=[lo, hi])
                                         for k, (a, lo, hi) in pooled.items()}
  lines += ["", f"**{_verdict(held)}**: the worst network's worst training-"
            f"delay accuracy is {min(worst.values()) if worst else float('nan'):.3f}; "
            f"{n_high} of {len(worst)} networks are ≥ {high:.4g} at every training delay."]
  if pooled:
    accs = [a for a, _, _ in pooled.values()]
    lines += ["", f"Pooled over the training delays (all their test trials), the networks are at "
              f"{min(accs):.3f}-{max(accs):.3f}; for {reach} of {len(pooled)} the 95% (Wilson) "
              f"interval reaches {high:.4g}, i.e. their accuracy is not measurably below "
              f"{high:.4g} with these trials."]
    if tests:
      lines += _ceiling_lines(ev.ceiling, pooled, numbers, high)
  lines.append("")
  return numbers, lines


def _ceiling_lines(ceiling, pooled, numbers, high=HIGH) -> list:
  """Claim (a) next to a measured ceiling (CEILING_JSON), when the report folder has one."""
  if not ceiling or not ceiling.get("runs"):
    return []
  tests = [float(r["test_accuracy"]) for r in ceiling["runs"]]
  top = float(np.mean(tests))
  below = {k: v for k, v in pooled.items() if v[0] < high}
  reach = {k for k, (_, lo, hi) in below.items() if hi >= min(tests)}
  numbers["ceiling"] = dict(mean=top, runs=len(tests), min=min(tests), max=max(tests),
                            model=ceiling.get("model"), below_high=len(below),
                            reaching_ceiling=len(reach),
                            below_ceiling=sorted(set(below) - reach))
  lines = ["", f"Measured ceiling: {ceiling.get('model', 'a plain classifier')}, trained on the "
           f"same image budget, reaches {min(tests):.4f}-{max(tests):.4f} on the test images "
           f"(mean {top:.4f} over {len(tests)} runs; `{ceiling.get('measured_by', '?')}`, "
           f"{ceiling.get('date', '')}). The recurrent network reads the image through "
           + ("the same CNN" if ceiling.get("dataset") == "cifar10" else
              "a layer of the same width") + ", so its report accuracy can hardly exceed this."]
  if below:
    lines.append(f"Of the {len(below)} networks pooled below {high:.4g}, {len(reach)} have a 95% "
                 f"interval reaching the ceiling's lowest run ({min(tests):.4f}): "
                 + ", ".join(f"{k} {a:.4f} [{lo:.4f}, {hi:.4f}]"
                             for k, (a, lo, hi) in sorted(below.items())) + ".")
    if len(reach) < len(below):
      lines.append(f"The other {len(below) - len(reach)} ("
                   + ", ".join(sorted(set(below) - reach)) + ") are measurably below the "
                   "ceiling: the read-in's own limit does not explain them.")
  return lines


def _pooled_training_accuracy(rec, train_delays):
  """(accuracy, lo, hi): report accuracy pooled over the training delays' test trials."""
  res = rec["results"] or {}
  counts = res.get("trials_per_delay", {})
  n = [int(counts.get(str(d), 0)) for d in train_delays]
  k = [_acc(rec, d) * m for d, m in zip(train_delays, n)]
  total = sum(n)
  if not total:
    return (float("nan"),) * 3
  lo, hi = sig.wilson(sum(k), total)
  return (sum(k) / total, lo, hi)


def claim_b(ev: Evidence, have):
  """(b) networks differ widely at long delays, by protocol and architecture."""
  delays, long_delays = ev.delays, ev.long_delays
  lines = [f"Test: at some delay ≥ {ev.seq_len}, the accuracies of the networks span ≥ {WIDE} "
           "(max − min). Group means ± s.d. over seeds; protocol and architecture effects by "
           "Mann–Whitney U over networks.", "",
           "| group | n | " + " | ".join(f"acc@{d}" for d in long_delays) + " |",
           "|---" * (2 + len(long_delays)) + "|"]
  for g, rs in _groups(have).items():
    lines.append(f"| {g} | {len(rs)} | " + " | ".join(sig.mean_sd([_acc(r, d) for r in rs])
                                                      for d in long_delays) + " |")
  spans = {}
  for d in long_delays:
    v = [_acc(r, d) for r in have if _acc(r, d) is not None]
    spans[d] = (max(v) - min(v)) if v else 0.0
  effects = {}
  for factor in ("protocol", "arch"):
    levels = sorted({r[factor] for r in have})
    for d in long_delays:
      if len(levels) != 2:
        continue
      a = [_acc(r, d) for r in have if r[factor] == levels[0]]
      b = [_acc(r, d) for r in have if r[factor] == levels[1]]
      effects[f"{factor}@{d}"] = dict(levels=levels, means=[float(np.mean(a)), float(np.mean(b))],
                                      p=sig.mann_whitney(a, b))
  best = max(spans, key=spans.get) if spans else None
  held = bool(spans) and max(spans.values()) >= WIDE
  numbers = dict(held=held, spans={str(k): v for k, v in spans.items()}, effects=effects)
  cd = ev.claim_delay and ev.claim_delay["delay"]
  if cd in spans:
    numbers["at_claim_delay"] = dict(delay=cd, span=spans[cd], held=spans[cd] >= WIDE)
  lines += ["", "| effect | delay | means | Mann–Whitney p |", "|---|---|---|---|"]
  for k, e in effects.items():
    factor, d = k.split("@")
    lines.append(f"| {factor}: {e['levels'][0]} vs {e['levels'][1]} | {d} | "
                 f"{e['means'][0]:.3f} vs {e['means'][1]:.3f} | {sig.fmt_p(e['p'])} |")
  fig_curves = {}
  for r in have:
    ds = [d for d in delays if _acc(r, d) is not None]
    fig_curves[r["name"]] = (ds, [_acc(r, d) for d in ds])
  plotting.save_png(plotting.accuracy_vs_delay(fig_curves, title="Every network"),
                    os.path.join(ev.out, ACCURACY_PNG))
  lines += ["", f"![accuracy vs delay]({ACCURACY_PNG})", "",
            f"**{_verdict(held)}**: the widest span is "
            + (f"{spans[best]:.3f} at delay {best}" if best else "n/a")
            + " (" + ", ".join(f"{d}: {s:.3f}" for d, s in spans.items()) + ").", ""]
  if "at_claim_delay" in numbers:
    lines += [f"At the half-life delay {cd}: span {spans[cd]:.3f}, "
              f"**{_verdict(numbers['at_claim_delay']['held']).lower()}**.", ""]
  if spans and not held:
    worst = min(_acc(r, best) for r in have if _acc(r, best) is not None)
    train = [_pooled_training_accuracy(r, ev.train_delays)[0] for r in have]
    numbers["why"] = dict(delay=best, lowest=worst)
    lines += [f"Why: even at delay {best} the least accurate network is at {worst:.3f} "
              f"(the networks are at {min(train):.3f}-{max(train):.3f} pooled over the training "
              "delays): every network keeps its memories over the delays evaluated, so they "
              f"cannot span {WIDE}. A longer delay (`--mode=evaluate --eval_delays=...` on the "
              "finished runs) is where they would differ, if they do.", ""]
  return numbers, lines


def test_delay(have, available):
  """The delay of claims (c) and (d) among `available` (ints): TEST_DELAY of the networks' data
  set (500 for a mix), else the longest available."""
  datasets = {r["dataset"] for r in have}
  want = TEST_DELAY.get(datasets.pop(), 500) if len(datasets) == 1 else 500
  return want if want in available else available[-1]


def claim_c(ev: Evidence, with_sp):
  """(c) each class has a slow point, and its speed predicts long-delay accuracy."""
  delays = ev.long_delays or ev.delays
  # The predictors are ranked at the claim's own delay too (CIFAR-10's 100 is below the
  # default 200-1000, where a quick CIFAR-10 network is at chance).
  predictor_delays = sorted(set(correlations.PREDICTOR_DELAYS)
                            | {test_delay(with_sp, sorted(int(d) for d in delays))})
  res = correlations.analyze([r["workdir"] for r in with_sp], os.path.join(ev.out, "study"),
                      delays=delays, predictor_delays=predictor_delays)
  # The table names runs relative to the sweep root, so that the report can move with it.
  path = os.path.join(ev.out, "study", correlations.ANALYSIS_JSON)
  saved = artifacts.read_json(path)
  saved["workdirs"] = [os.path.relpath(w, ev.root) for w in saved["workdirs"]]
  for row in saved["rows"]:
    row["workdir"] = os.path.relpath(row["workdir"], ev.root)
  artifacts.write_json(path, saved)
  rows = res["rows"]
  found = [r for r in rows if r["speed"] is not None]
  own = [r for r in found if r["readout"] == r["cls"]]
  corr = res["correlations"]["per_class"]
  key = str(test_delay(with_sp, sorted(int(d) for d in corr)))
  c = corr[key]
  held = (c["spearman"] is not None and c["spearman"] < 0 and c["spearman_p"] < ALPHA
          and len(found) == len(rows))
  numbers = dict(held=held, classes=len(rows), with_slow_point=len(found),
                 reading_out_own_class=len(own), correlations=corr, key=key)
  lines = [f"Test: a slow point is found from every class's centre of mass (in {len(found)} "
            f"of {len(rows)} network × class pairs; {len(own)} of them read out their own "
            "class), and log10 speed correlates negatively with per-class accuracy "
            f"(Spearman, p < {ALPHA}) at delay {key}.", "",
            "| delay | n | Spearman ρ | p | Pearson r (log speed) | p |",
            "|---|---|---|---|---|---|"]
  for d, cc in corr.items():
    lines.append(f"| {d} | {cc['n']} | {sig.fmt(cc['spearman'])} | "
                 f"{sig.fmt_p(cc['spearman_p'])} | {sig.fmt(cc['pearson'])} | "
                 f"{sig.fmt_p(cc['pearson_p'])} |")
  longest = int(key)
  pts = [r for r in rows if r["speed"] and r.get(f"acc_{longest}") is not None]
  plotting.save_png(plotting.speed_vs_accuracy(
      [r["speed"] for r in pts], [r[f"acc_{longest}"] for r in pts],
      groups=[f"{r['protocol']} {r['arch']}" for r in pts],
      title=f"Slow-point speed vs. class accuracy at delay {longest}"),
      os.path.join(ev.out, SPEED_PNG))
  lines += ["", f"![speed vs accuracy]({SPEED_PNG})", "",
            f"**{_verdict(held)}** at delay {key}: ρ = "
            f"{sig.fmt(c['spearman'])} (p = {sig.fmt_p(c['spearman_p'])}, n = {c['n']}).", ""]
  cd = ev.claim_delay and str(ev.claim_delay["delay"])
  if cd in corr and cd != key:
    cc = corr[cd]
    ok = (cc["spearman"] is not None and cc["spearman"] < 0 and cc["spearman_p"] < ALPHA
          and len(found) == len(rows))
    numbers["at_claim_delay"] = dict(delay=int(cd), spearman=cc["spearman"],
                                     p=cc["spearman_p"], n=cc["n"], held=ok)
    lines += [f"At the half-life delay {cd}: ρ = {sig.fmt(cc['spearman'])} "
              f"(p = {sig.fmt_p(cc['spearman_p'])}, n = {cc['n']}), "
              f"**{_verdict(ok).lower()}**.", ""]
  elif cd == key:
    numbers["at_claim_delay"] = dict(delay=int(cd), spearman=c["spearman"], p=c["spearman_p"],
                                     n=c["n"], held=held)
  if not held:
    lines += _why_not_c(rows, found, key, numbers)
  pred_lines, numbers["predictors"] = section_c_predictors(res, with_sp)
  halves = res.get("half_life")
  if halves:
    sp = halves["table"]["speed"]["pooled"]
    numbers["half_life"] = dict(halves, held=bool(
        sp["rho"] is not None and sp["high"] is not None and sp["high"] < 0))
    pred_lines += ["", correlations.half_life_markdown(halves, title_level="###"),
                   f"On half-lives, (c) **{_verdict(numbers['half_life']['held']).lower()}** "
                   "(pooled ρ of speed with half-life negative, its bootstrap 95% interval "
                   "below 0).", ""]
  return numbers, lines + pred_lines


def _why_not_c(rows, found, key, numbers) -> list:
  """Where (c) did not hold: how much the two quantities vary, and whether the points are
  where the read-out puts their class."""
  accs = [r[f"acc_{key}"] for r in found if r.get(f"acc_{key}") is not None]
  logs = [float(np.log10(r["speed"])) for r in found if r["speed"] and r["speed"] > 0]
  if not accs or not logs:
    return []
  q = np.percentile(accs, [0, 25, 75, 100])
  numbers["why"] = dict(accuracy_quartiles=[float(v) for v in q],
                        log10_speed_range=[min(logs), max(logs)])
  lines = [f"Why it can fail here: per-class accuracy at delay {key} ranges {q[0]:.3f}-{q[3]:.3f} "
           f"(middle half {q[1]:.3f}-{q[2]:.3f}) and log10 speed {min(logs):.2f} to "
           f"{max(logs):.2f}."]
  if q[2] - q[1] < 0.05:
    lines.append("Most classes are remembered almost equally well at this delay, so there is "
                 "little accuracy left for speed to explain.")
  if len(found) < len(rows):
    lines.append(f"{len(rows) - len(found)} of {len(rows)} network × class pairs have no slow "
                 "point.")
  lines.append("The predictors below rank what does explain per-class memory.")
  return [" ".join(lines), ""]


def claim_d(ev: Evidence, ft):
  """(d) speed regularisation beats control at long delays (paired over networks)."""
  long_delays, delays = ev.long_delays, ev.delays
  d_key = test_delay(ft, list(long_delays or delays))
  rows_d = {}
  lines = [f"Test: for each network, accuracy of the slow_points and center_mass fine-tunings "
            f"minus that of the control fine-tuning (same steps, μ = 0); the claim holds if "
            f"both mean differences at delay {d_key} are positive with Wilcoxon signed-rank "
            f"p < {ALPHA} (two-sided; with fewer than 6 networks p cannot fall below 0.05, "
            "so then: positive in every network).", "",
            "| delay | trained | control | slow_points | center_mass | slow_points − control "
            "| center_mass − control |", "|---|---|---|---|---|---|---|"]
  verdicts = []
  for d in long_delays or delays:
    vals = {m: [_acc(r, d, m) for r in ft] for m in ("trained",) + control.MODES}
    diffs = {}
    for m in ("slow_points", "center_mass"):
      pairs = [(a, b) for a, b in zip(vals[m], vals["control"]) if a is not None and b is not None]
      dd = [a - b for a, b in pairs]
      p = sig.wilcoxon(dd)
      diffs[m] = dict(mean=float(np.mean(dd)) if dd else None, n=len(dd),
                      positive=sum(x > 0 for x in dd), p=p)
      if d == d_key:
        verdicts.append(_beats_control(diffs[m]))
    rows_d[str(d)] = dict(means={m: sig.mean_sd(v) for m, v in vals.items()}, diffs=diffs)
    lines.append(f"| {d} | " + " | ".join(sig.mean_sd(vals[m])
                                           for m in ("trained",) + control.MODES)
                 + " | " + " | ".join(
                     f"{sig.signed(diffs[m]['mean'])} ({diffs[m]['positive']}/{diffs[m]['n']} "
                     f"> 0, p {sig.fmt_p(diffs[m]['p'])})" for m in ("slow_points", "center_mass"))
                 + " |")
  short = {m: [_acc(r, d, m) for r in ft for d in ev.train_delays] for m in control.MODES}
  # The cost at the training delays: per network, the mean over those delays of (mode - control).
  cost = {}
  for m in ("slow_points", "center_mass"):
    per_net = []
    for r in ft:
      dd = [_acc(r, d, m) - _acc(r, d, "control") for d in ev.train_delays
            if _acc(r, d, m) is not None and _acc(r, d, "control") is not None]
      if dd:
        per_net.append(float(np.mean(dd)))
    cost[m] = dict(mean=float(np.mean(per_net)) if per_net else None,
                   worst=min(per_net) if per_net else None, n=len(per_net))
  held = all(verdicts) and bool(verdicts)
  numbers = dict(held=held, delay=d_key, table=rows_d, training_delay_cost=cost,
                 worst_training_delay_accuracy={m: min(v) if v else None for m, v in short.items()})
  cd = ev.claim_delay and ev.claim_delay["delay"]
  if str(cd) in rows_d:
    numbers["at_claim_delay"] = dict(delay=cd, held=all(
        _beats_control(rows_d[str(cd)]["diffs"][m]) for m in ("slow_points", "center_mass")))
  curves = {}
  for m in ("trained",) + control.MODES:
    ds = long_delays or delays
    curves[m] = (ds, [float(np.mean([_acc(r, d, m) for r in ft
                                     if _acc(r, d, m) is not None] or [np.nan])) for d in ds])
  plotting.save_png(plotting.accuracy_vs_delay(
      curves, title=f"Fine-tuning, mean over {len(ft)} networks"),
      os.path.join(ev.out, FINETUNE_PNG))
  lines += ["", f"![fine-tuning]({FINETUNE_PNG})", "",
            "Worst accuracy at the training delays after fine-tuning: " + ", ".join(
                f"{m} {min(v):.3f}" for m, v in short.items() if v) + ". Cost at the training "
            "delays (mode − control, averaged over those delays, per network): " + ", ".join(
                f"{m} {sig.signed(c['mean'])} on average, worst {sig.signed(c['worst'])}"
                for m, c in cost.items()) + ".", "",
            f"**{_verdict(held)}** at delay {d_key}."
            + (f" At the half-life delay {cd}: "
               f"**{_verdict(numbers['at_claim_delay']['held']).lower()}**."
               if "at_claim_delay" in numbers and cd != d_key else ""), ""]
  by_group, group_lines = _d_by_group(ft, d_key)
  numbers["by_group"] = by_group
  lines += group_lines
  if not held:
    lines += _why_not_d(ev, ft, d_key, rows_d, numbers)
  return numbers, lines


def _d_by_group(ft, d_key):
  """(d) per network type at the test delay, with the class points' speed after each
  fine-tuning (slow points searched again on the fine-tuned network, median over classes;
  geometric mean over the group's networks)."""
  modes = ("trained",) + control.MODES
  out = {}
  lines = [f"By network type at delay {d_key} (and the median slow-point speed of each "
           "fine-tuned network, geometric mean over the type's networks):", "",
           "| group | n | slow_points − control | center_mass − control | speed: "
           + " / ".join(modes) + " |", "|---|---|---|---|---|"]

  def speed(r, m):
    return ((r["compare"] or {}).get("rows", {}).get(m) or {}).get("median_slow_point_speed")

  for g, rs in _groups(ft).items():
    row = dict(n=len(rs))
    cells = []
    for m in ("slow_points", "center_mass"):
      dd = [_acc(r, d_key, m) - _acc(r, d_key, "control") for r in rs
            if _acc(r, d_key, m) is not None and _acc(r, d_key, "control") is not None]
      row[m] = dict(mean=float(np.mean(dd)) if dd else None, positive=sum(x > 0 for x in dd),
                    n=len(dd))
      cells.append(f"{sig.signed(row[m]['mean'])} ({row[m]['positive']}/{len(dd)} > 0)"
                   if dd else "–")
    speeds = {}
    for m in modes:
      v = [speed(r, m) for r in rs if speed(r, m)]
      speeds[m] = float(np.exp(np.mean(np.log(v)))) if v else None
    row["median_speed"] = speeds
    out[g] = row
    lines.append(f"| {g} | {len(rs)} | " + " | ".join(cells) + " | " + " / ".join(
        f"{v:.1e}" if v else "–" for v in speeds.values()) + " |")
  return out, lines + [""]


def _beats_control(diff) -> bool:
  """(d)'s test on one penalty's paired differences: a positive mean with Wilcoxon p < ALPHA,
  or, with fewer than 6 networks (where p cannot fall below 0.05), positive in every one."""
  if not diff["n"] or diff["mean"] is None or diff["mean"] <= 0:
    return False
  if diff["n"] >= 6:
    return diff["p"] is not None and diff["p"] < ALPHA
  return diff["positive"] == diff["n"]


def _why_not_d(ev: Evidence, ft, d_key, rows_d, numbers) -> list:
  """Where (d) did not hold: how much room the control left at the test delay, and the test
  at the longest evaluated delay (reported beside the verdict, not in place of it)."""
  lines = []
  for m in ("slow_points", "center_mass"):
    d = rows_d[str(d_key)]["diffs"][m]
    worse = {g: v[m]["mean"] for g, v in numbers.get("by_group", {}).items()
             if v[m]["mean"] is not None and v[m]["mean"] < 0}
    ok = _beats_control(d)
    text = (f"Why: {m} − control at delay {d_key} is {sig.signed(d['mean'])} "
            f"({d['positive']}/{d['n']} > 0, p {sig.fmt_p(d['p'])}): "
            + ("it passes on its own." if ok else "it fails the test."))
    if worse:
      text += (f" It is below the control in " + ", ".join(
          f"{g} ({sig.signed(v)})" for g, v in sorted(worse.items())) + " (table above).")
    lines.append(text)
  lines += _target_speeds(ev, ft, numbers)
  room = []
  for r in ft:
    pooled = _pooled_training_accuracy(r, ev.train_delays)[0]
    c = _acc(r, d_key, "control")
    if c is not None and np.isfinite(pooled):
      room.append(pooled - c)
  if room:
    numbers["control_headroom"] = dict(delay=d_key, mean=float(np.mean(room)),
                                       min=float(np.min(room)), max=float(np.max(room)))
    lines.append(f"Room: at delay {d_key} the control is on average {np.mean(room):.3f} below "
                 "the same network's pooled accuracy at the training delays (from "
                 f"{np.min(room):.3f} to {np.max(room):.3f}); a penalty can add at most that "
                 "there, so a small room needs many networks for a significant gain.")
  longest = max(int(k) for k in rows_d)
  if longest != d_key:
    diffs = rows_d[str(longest)]["diffs"]
    lines.append(f"At the longest evaluated delay, {longest}: " + "; ".join(
        f"{m} − control {sig.signed(v['mean'])} ({v['positive']}/{v['n']} > 0, Wilcoxon p "
        f"{sig.fmt_p(v['p'])})" for m, v in diffs.items()) + ".")
    numbers["longest_delay"] = dict(delay=longest, diffs=diffs)
  return lines + ([""] if lines else [])


def _target_speeds(ev: Evidence, ft, numbers) -> list:
  """(d)'s measurement of the targets themselves (TARGETS_JSON, when the report folder has
  one): per network type, the speed at each penalty's targets in the trained network, after
  the control and after that penalty; a penalty that cannot hold its targets slow against the
  control's drift cannot hold the memories there."""
  store = {k: v for k, v in (ev.targets or {}).items() if k in {r["name"] for r in ft}}
  if not store:
    return []
  out, cells = {}, []
  for g, recs in _groups([r for r in ft if r["name"] in store]).items():
    rows = [store[r["name"]] for r in recs]
    out[g] = {t: {m: float(np.exp(np.mean(np.log([x["speed"][m][t] for x in rows]))))
                  for m in ("trained", "control", t)} for t in ("slow_points", "center_mass")}
    cells.append(f"{g} " + ", ".join(
        f"{t} targets {v['trained']:.1e} → control {v['control']:.1e} / {t} {v[t]:.1e}"
        for t, v in out[g].items()))
  numbers["target_speeds"] = out
  return [f"Speed at each penalty's own targets ({TARGETS_JSON}, {len(store)} networks; "
          "trained → after the control / after that penalty, geometric mean per type): "
          + "; ".join(cells) + ". The control moves the dynamics away from the trained "
          "network's states; the speed after a penalty shows how far it held its targets "
          "slow against that drift."]


def _births(b, cfg, by):
  """find_births by the read-out ("readout") or by the nearest class centre ("nearest_centre");
  None when the back-tracking predates the centre criterion."""
  if by not in b:
    return None
  labels = b[by]
  if by == "nearest_centre":
    labels = backtrack_lib.centre_labels(labels, b["centre_ratio"],
                                         b.get("centre_margin", backtrack_lib.CENTRE_MARGIN))
  return backtrack_lib.find_births(b["steps"], labels, b["classes"],
                                   backtrack_lib.introduction_steps(cfg))


def claim_e(ev: Evidence, bt):
  """(e) back-tracking: VoCu's later classes are born from existing slow points."""
  by_proto = {}
  for r in bt:
    b = r["backtrack"]
    stage = {s for s, c in zip(b["steps"], b["stage_change"]) if c}
    births = _births(b, r["config"], "readout")
    centre = _births(b, r["config"], "nearest_centre")
    late = [x for x in births if x["introduced_at"] > 0]
    total = r["config"].train_steps
    by_proto.setdefault(f"{r['protocol']} {r['arch']}", []).append(dict(
        name=r["name"], merges=len(b["merges"]),
        merges_at_stage_change=sum(m["step"] in stage for m in b["merges"]),
        snapshots=len(b["steps"]) - 1, births=births, births_by_centre=centre,
        late_classes=len(late), born_at_introduction=sum(x["at_introduction"] for x in late),
        born_at_introduction_by_centre=(None if centre is None else sum(
            x["at_introduction"] for x in centre if x["introduced_at"] > 0)),
        same_birth=(None if centre is None else sum(
            (x["birth_step"], x["from_class"]) == (y["birth_step"], y["from_class"])
            for x, y in zip(births, centre))),
        birth_fraction=[x["birth_step"] / total for x in births
                        if x["birth_step"] is not None and x["from_class"] is not None]))
  lines = ["Each network's final class slow points are followed back through its training "
            "snapshots. A point's *birth* is the earliest snapshot from which on it reads out "
            "its own class; just before, it reads out another class (the class it was born "
            "from). A *merge* is where two classes' points come within "
            f"{bt[0]['backtrack']['merge_frac']} × the median distance between the final "
            "points. The claim (a class that VoCu introduces later is born from the slow point "
            "of a class already trained, when it enters training) holds if at least 75% of "
            "the VoCu classes introduced after the start are born exactly at their "
            "introduction step.", "",
            "A second criterion does not use the read-out: at each snapshot a point belongs to "
            "the class whose centre (that snapshot's mean state 15 steps after the stimulus, "
            "all test trials, in speed coordinates) is nearest, if it is nearer than "
            f"{backtrack_lib.CENTRE_MARGIN} × the next nearest centre (else to no class, "
            "written −1); births by it are found the same way. *Same birth* counts the points "
            "whose birth step and source class agree under both criteria.", "",
            "| protocol, arch | networks | later-introduced classes born at their introduction "
            "(read-out) | same, by nearest class centre | same birth under both criteria | "
            "births (fraction of training, median) | points reading out their own class at "
            "every snapshot | merges per network |",
            "|---|---|---|---|---|---|---|---|"]

  def count(rs, key, of):
    vals = [x[key] for x in rs]
    if any(v is None for v in vals):
      return "–"
    return f"{sum(vals)} of {of}" if of else "–"

  for p, rs in sorted(by_proto.items()):
    fr = [f for x in rs for f in x["birth_fraction"]]
    late = sum(x["late_classes"] for x in rs)
    born = f"{sum(x['born_at_introduction'] for x in rs)} of {late}" if late else "–"
    median = f"{np.median(fr):.2f} ({len(fr)} births)" if fr else "– (0 births)"
    always = sum(b["from_class"] is None and b["birth_step"] is not None
                 for x in rs for b in x["births"])
    points = sum(len(x["births"]) for x in rs)
    lines.append(f"| {p} | {len(rs)} | {born} | "
                 f"{count(rs, 'born_at_introduction_by_centre', late)} | "
                 f"{count(rs, 'same_birth', points)} | {median} | {always} | "
                 f"{sig.mean_sd([x['merges'] for x in rs])} |")
  for key, what in (("births", "read-out"), ("births_by_centre", "nearest class centre")):
    if any(x[key] is None for rs in by_proto.values() for x in rs):
      continue
    lines += ["", f"Births per network by the {what} (class: step ← class it was born from):",
              ""]
    for p, rs in sorted(by_proto.items()):
      for x in rs:
        born = [f"{b['class']}: {b['birth_step']} ← {b['from_class']}" for b in x[key]
                if b["from_class"] is not None]
        lines.append(f"- {x['name']}: " + (", ".join(born) or "none (every point is its own "
                                                               "class's at every snapshot)"))
  vocu = [x for k, rs in by_proto.items() if k.startswith("vocu ") for x in rs]
  late = sum(x["late_classes"] for x in vocu)
  at = sum(x["born_at_introduction"] for x in vocu)
  held = bool(late) and at / late >= 0.75
  at_c = (None if any(x["born_at_introduction_by_centre"] is None for x in vocu)
          else sum(x["born_at_introduction_by_centre"] for x in vocu))
  numbers = dict(held=held if late else None, born_at_introduction=at, later_classes=late,
                 born_at_introduction_by_centre=at_c, by_protocol=by_proto)
  verdict = (f"**{_verdict(held)}**: {at} of {late} later VoCu classes are born at their "
             "introduction") if late else "**n/a**: no VoCu network was back-tracked"
  if late and at_c is not None:
    verdict += (f" by the read-out; by the nearest class centre, {at_c} of {late} "
                f"({'at least' if at_c / late >= 0.75 else 'under'} 75%)")
  lines += ["", verdict + ".", ""]
  if late and not held:
    lines += _why_not_e(by_proto, numbers)
  return numbers, lines


def _why_not_e(by_proto, numbers) -> list:
  """Where (e) did not hold: whether the births are from another class's point at all, and
  whether the points are one region in the young network (all pairs merged)."""
  births = [b for rs in by_proto.values() for x in rs for b in (x["births_by_centre"] or [])
            if b["from_class"] is not None]
  from_none = sum(b["from_class"] == -1 for b in births)
  nets = [x for rs in by_proto.values() for x in rs]
  all_merged = sum(x["merges"] == len(x["births"]) * (len(x["births"]) - 1) // 2 for x in nets
                   if len(x["births"]) > 1)
  numbers["why"] = dict(births_by_centre=len(births), from_no_class=from_none,
                        networks_all_points_merged=all_merged, networks=len(nets))
  parts = []
  if births:
    parts.append(f"by the nearest class centre, {from_none} of {len(births)} births come from a "
                 "region near no class's trials (−1), not from another class's point")
  parts.append(f"in {all_merged} of {len(nets)} networks every pair of class points merges "
               "going back (the points start in one region of the young network)")
  text = "Why: " + "; ".join(parts) + "."
  if births and from_none > len(births) / 2:
    text += (" A read-out birth \"from class k\" is then mostly the class the read-out gives "
             "in a region no class occupies yet, not a class's slow point splitting.")
  return [text, ""]


@dataclasses.dataclass(frozen=True)
class Claim:
  """One of the paper's claims and the function that tests it.

  `test(evidence, runs)` gets the analysed runs that carry what it needs (`needs`; all of them
  when None) and returns (numbers with a "held" entry: True / False / None, its section's lines
  below the heading). With no such run the claim is not testable: `empty` is printed instead.
  """
  key: str
  heading: str
  summary: str
  test: Callable
  needs: Optional[Callable] = None
  empty: str = ""


CLAIMS = (
    Claim("a", "All networks solve the task at the training delays",
          "all networks solve the task at training delays", claim_a),
    Claim("b", "Networks differ widely at long delays",
          "networks differ widely at long delays", claim_b),
    Claim("c", "Each class has a slow point, and its speed predicts memory",
          "slow-point speed predicts long-delay accuracy", claim_c,
          lambda r: "slow_point_speed" in r["results"], "No run has slow points yet."),
    Claim("d", "Speed regularisation beats control at long delays",
          "speed regularisation beats control at long delays", claim_d,
          lambda r: r["compare"], "No fine-tuning comparisons yet."),
    Claim("e", "Back-tracking: how VoCu and DeCu form their slow points",
          "VoCu classes are born from existing slow points", claim_e,
          lambda r: r["backtrack"], "No back-tracking results yet."),
)


def build(root: str, out=None, wall_seconds=None) -> dict:
  """Writes REPORT.md, report.json and the PNGs into `out` (default `root`)."""
  grid_name, specs = sweep.load_grid(root)
  out = out or root
  os.makedirs(out, exist_ok=True)
  recs = collect(root, specs)
  have = [r for r in recs if r["results"] and "accuracy_by_delay" in r["results"]]
  missing = [r["name"] for r in recs if r not in have]
  seq_len = specs[0].config().seq_len if specs else 20
  delays = sorted({int(d) for r in have for d in r["results"]["accuracy_by_delay"]})
  halves = network_half_lives(have, seq_len)
  ev = Evidence(root=root, out=out, have=have, delays=delays, seq_len=seq_len,
                ceiling=_read_ceiling(out, root), targets=_read_first(TARGETS_JSON, out, root),
                claim_delay=choose_claim_delay(have, halves,
                                               [d for d in delays if d >= seq_len]))
  summary = dict(grid=grid_name, root=os.path.basename(os.path.abspath(root)), runs=len(specs),
                 analysed=len(have), missing=missing, delays=ev.delays, claims={},
                 environment=artifacts.environment(), trained_at=_trained_revisions(recs))
  lines = _header(ev, grid_name, specs, recs, missing, wall_seconds)
  summary["memory"], section = memory_section(ev, halves)
  lines += section
  for claim in CLAIMS:
    runs = [r for r in have if claim.needs is None or claim.needs(r)]
    if claim.needs is not None and not runs:
      numbers, section = dict(held=None), [claim.empty, ""]
    else:
      numbers, section = claim.test(ev, runs)
    summary["claims"][claim.key] = numbers
    lines += [f"## ({claim.key}) {claim.heading}", ""] + section
  cd = ev.claim_delay["delay"] if ev.claim_delay else None
  lines += ["## Summary", "", f"| claim | held | at the half-life delay ({cd or '–'}) |",
            "|---|---|---|"]

  def word(held):
    return "yes" if held else ("n/a" if held is None else "no")

  for claim in CLAIMS:
    numbers = summary["claims"][claim.key]
    at = numbers.get("at_claim_delay")
    lines.append(f"| ({claim.key}) {claim.summary} | {word(numbers['held'])} | "
                 f"{word(at['held']) if at else 'n/a'} |")
  artifacts.write_text(os.path.join(out, REPORT_MD), "\n".join(lines) + "\n")
  artifacts.write_json(os.path.join(out, REPORT_JSON), summary)
  write_hparams(root, recs)
  return summary


def _trained_revisions(recs) -> dict:
  """{code revision text: number of networks} of the revisions the runs recorded in their
  config.json ("unknown": recorded none, or outside git)."""
  counts = {}
  for r in recs:
    path = os.path.join(r["workdir"], artifacts.CONFIG_FILE)
    record = artifacts.read_json(path) if os.path.exists(path) else {}
    env = record.get("environment") if isinstance(record, dict) else None
    text = artifacts.revision_text((env or {}).get("code_revision"))
    counts[text] = counts.get(text, 0) + 1
  return dict(sorted(counts.items()))


def _read_ceiling(*folders):
  """The first CEILING_JSON found in `folders`, or None."""
  return _read_first(CEILING_JSON, *folders)


def _read_first(name, *folders):
  """The JSON file `name` from the first of `folders` that has it, or None."""
  for f in folders:
    path = os.path.join(f, name)
    if os.path.exists(path):
      return artifacts.read_json(path)
  return None


def section_c_predictors(res, recs):
  """Section (c)'s second part: where the slow points lie and which per-class quantity predicts
  memory best. `res` is correlations.analyze's result, `recs` the runs it covered.

  Returns:
    (Markdown lines, summary dict).
  """
  recipes = sorted({str(r["results"].get("slow_points_recipe")) for r in recs})
  inside = sum(r["results"].get("slow_point_summary", {}).get("in_box", 0) for r in recs)
  points = sum(r["results"].get("slow_point_summary", {}).get("points", 0) for r in recs)
  stops = {}
  for r in recs:
    for k, v in r["results"].get("slow_point_summary", {}).get("stop_reasons", {}).items():
      stops[k] = stops.get(k, 0) + v
  lines = [f"Slow points ({', '.join(recipes)} recipe): {inside} of {points} searched points "
           "lie in the reachable box (|h| ≤ 1); stop reasons "
           + ", ".join(f"{k} {v}" for k, v in stops.items()) + "."]
  ranking = res["predictors"]
  lines += ["", correlations.predictors_markdown(ranking, title_level="###")]
  at_chance = chance_delays(recs, sorted(int(d) for d in ranking["best"]))
  if at_chance:
    lines += ["", f"At delay {', '.join(map(str, at_chance))} every network is at chance "
              f"(report accuracy within two standard errors of {CHANCE}): per-class accuracy "
              "there says which class a network falls back to, not how long it remembers, so "
              "those columns do not rank memory."]
  summary = dict(recipes=recipes, in_box=inside, points=points, stop_reasons=stops,
                 best=ranking["best"], table=ranking["table"], at_chance=at_chance)
  return lines, summary


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


def _hparam(hp, name, domain=None):
  """The HParam of Config field `name`, described by the field's documentation."""
  return hp.HParam(name, domain, description=config_lib.field_help(name))


def write_hparams(root: str, recs) -> None:
  """HParams-dashboard sessions: one per network and per fine-tuning, with final metrics.

  Written to <workdir>/tensorboard/hparams, so `tensorboard --logdir ROOT` lists them all.
  """
  import glob  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorboard.plugins.hparams import api as hp  # pylint: disable=g-import-not-at-top
  metrics = set()
  modes = {"trained"}
  for r in recs:
    if not r["results"]:
      continue
    sessions = [(r["workdir"], "trained", r["results"])]
    if r["compare"]:
      for m in control.MODES:
        path = os.path.join(control.default_out(r["workdir"]), m)
        res = os.path.join(path, artifacts.RESULTS_FILE)
        if os.path.exists(res):
          sessions.append((path, m, artifacts.read_json(res)))
    for path, mode, res in sessions:
      # The recorded config: a committed grid keeps its runs' files but not their checkpoints.
      cfg = artifacts.recorded_config(path)
      if cfg is None:
        continue
      logdir = os.path.join(path, "tensorboard", "hparams")
      if os.path.isdir(logdir):
        shutil.rmtree(logdir)  # one session per run, however often the report is rebuilt
      hparams = dict(protocol=cfg.protocol, arch=cfg.arch, dataset=cfg.dataset, seed=cfg.seed,
                     preset=cfg.preset, finetune=mode, speed_weight=cfg.speed_weight,
                     learning_rate=cfg.learning_rate, train_steps=cfg.train_steps)
      writer = tf.summary.create_file_writer(logdir)
      with writer.as_default():
        hp.hparams(hparams, trial_id=os.path.relpath(path, root))
        for d, a in res.get("accuracy_by_delay", {}).items():
          tf.summary.scalar(f"hparams/accuracy_delay_{d}", a, step=res.get("step", 0),
                            description=summaries.describe(f"hparams/accuracy_delay_{d}"))
          metrics.add((int(d), f"hparams/accuracy_delay_{d}"))
        speeds = [v for v in (res.get("slow_point_speed") or {}).values() if v is not None]
        if speeds:
          tf.summary.scalar("hparams/median_slow_point_speed", float(np.median(speeds)),
                            step=res.get("step", 0),
                            description=summaries.describe("hparams/median_slow_point_speed"))
          metrics.add((10**9, "hparams/median_slow_point_speed"))
      writer.close()
      modes.add(mode)
  # The experiment: which hyper-parameters and metrics the dashboard shows, at the root.
  for old in glob.glob(os.path.join(root, "events.out.tfevents.*.hparams")):
    os.remove(old)
  writer = tf.summary.create_file_writer(root, filename_suffix=".hparams")
  with writer.as_default():
    hp.hparams_config(
        hparams=[_hparam(hp, "protocol", hp.Discrete(list(config_lib.PROTOCOLS))),
                 _hparam(hp, "arch", hp.Discrete(list(config_lib.ARCHS))),
                 _hparam(hp, "dataset", hp.Discrete(list(config_lib.DATASETS))),
                 _hparam(hp, "seed"), _hparam(hp, "preset", hp.Discrete(
                     list(config_lib.PRESET_NAMES))),
                 _hparam(hp, "finetune", hp.Discrete(sorted(modes))),
                 _hparam(hp, "speed_weight"), _hparam(hp, "learning_rate"),
                 _hparam(hp, "train_steps")],
        metrics=[hp.Metric(tag, display_name=tag.split("/", 1)[1],
                           description=summaries.describe(tag))
                 for _, tag in sorted(metrics)])
  writer.close()
