"""Claims (a)-(c) of the study report: one function per claim, verdict and numbers from the runs.

(a) every network solves the task at the training delays; (b) the networks differ widely at long
delays; (c) each class has a slow point whose speed predicts its memory. Each claim returns
(numbers with a "held" entry, its section's Markdown lines below the heading); (d) and (e) are
in claims_finetune.py and claims_backtrack.py.
"""

import math
import os

import numpy as np

from haviv_tf.analysis import plotting
from haviv_tf.base import artifacts
from haviv_tf.study import correlations
from haviv_tf.study import evidence as evd
from haviv_tf.study import significance as sig

ACCURACY_PNG = "report_accuracy_vs_delay.png"
SPEED_PNG = "report_speed_vs_accuracy.png"


def _levels(ev: evd.Evidence, have):
  """(solved, high, ceiling runs' test accuracies) of claim (a) for these networks' data set.

  SOLVED and HIGH are MNIST's levels. Where the report folder's measured ceiling (the same
  read-in trained as a plain classifier, CEILING_JSON) is below SOLVED, no network can reach
  them, and the test becomes relative to the ceiling: solved = SOLVED x the ceiling's mean,
  high = the ceiling's lowest run.
  """
  c = ev.ceiling
  tests = ([float(r["test_accuracy"]) for r in c["runs"]]
           if c and c.get("runs") and c.get("dataset") in {r["dataset"] for r in have} else [])
  if tests and max(tests) < evd.SOLVED:
    return evd.SOLVED * float(np.mean(tests)), min(tests), tests
  return evd.SOLVED, evd.HIGH, tests


def claim_a(ev: evd.Evidence, have):
  """(a) every network solves the task at the training delays."""
  train_delays = ev.train_delays
  solved, high, tests = _levels(ev, have)
  relative = solved != evd.SOLVED
  worst = ({r["name"]: min(evd.acc(r, d) for d in train_delays) for r in have}
           if train_delays else {})
  held = bool(worst) and all(v >= solved for v in worst.values())
  numbers = dict(held=held, min_accuracy=worst, threshold=solved, high=high, relative=relative)
  lines = [f"Test: report accuracy on test trials ≥ {solved:.3g} at every evaluated delay < "
           f"{ev.seq_len} ({', '.join(map(str, train_delays))}) for every network."]
  if relative:
    lines.append(f"This data set's measured ceiling (below) is {np.mean(tests):.4f}, under "
                 f"{evd.SOLVED}, so the test is relative to it: {evd.SOLVED} × "
                 f"{np.mean(tests):.4f} = "
                 f"{solved:.3g}; and the level called high below is the ceiling's lowest run "
                 f"({high:.4f}) instead of {evd.HIGH}.")
  lines += ["", "| group | n | " + " | ".join(f"acc@{d}" for d in train_delays) + " | worst |",
            "|---" * (3 + len(train_delays)) + "|"]
  for g, rs in evd.groups(have).items():
    lines.append(f"| {g} | {len(rs)} | " + " | ".join(sig.mean_sd([evd.acc(r, d) for r in rs])
                                                      for d in train_delays)
                 + f" | {min(worst[r['name']] for r in rs):.3f} |")
  n_high = sum(v >= high for v in worst.values())
  pooled = {r["name"]: evd.pooled_training_accuracy(r, train_delays) for r in have}
  reach = sum(1 for acc, lo, hi in pooled.values() if hi >= high)
  numbers["pooled_training_accuracy"] = {k: dict(accuracy=a, ci95=[lo, hi])
                                         for k, (a, lo, hi) in pooled.items()}
  lines += ["", f"**{evd.verdict(held)}**: the worst network's worst training-"
            f"delay accuracy is {min(worst.values()) if worst else float('nan'):.3f}; "
            f"{n_high} of {len(worst)} networks are ≥ {high:.4g} at every training delay."]
  if pooled:
    accs = [a for a, _, _ in pooled.values()]
    lines += ["", f"Pooled over the training delays (all their test trials), the networks are at "
              f"{min(accs):.3f}-{max(accs):.3f}; for {reach} of {len(pooled)} the 95% (Wilson) "
              f"interval reaches {high:.4g} (those networks are not measurably below "
              f"{high:.4g} with these trials; the others are)."]
    if tests:
      lines += _ceiling_lines(ev.ceiling, pooled, numbers, high)
  lines.append("")
  return numbers, lines


def _ceiling_lines(ceiling, pooled, numbers, high=evd.HIGH) -> list:
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



def _factor_effects(have, delays) -> dict:
  """{"protocol@d" / "arch@d": the two levels' mean accuracies and Mann-Whitney p} at each
  delay where both levels have networks evaluated (networks followed until their memory faded
  were evaluated at delays of their own)."""
  effects = {}
  for factor in ("protocol", "arch"):
    levels = sorted({r[factor] for r in have})
    if len(levels) != 2:
      continue
    for d in delays:
      a = [x for x in (evd.acc(r, d) for r in have if r[factor] == levels[0]) if x is not None]
      b = [x for x in (evd.acc(r, d) for r in have if r[factor] == levels[1]) if x is not None]
      if a and b:
        effects[f"{factor}@{d}"] = dict(levels=levels,
                                        means=[float(np.mean(a)), float(np.mean(b))],
                                        p=sig.mann_whitney(a, b))
  return effects


def claim_b(ev: evd.Evidence, have):
  """(b) networks differ widely at long delays, by protocol and architecture."""
  delays, long_delays = ev.delays, ev.long_delays
  lines = [f"Test: at some delay ≥ {ev.seq_len}, the accuracies of the networks span ≥ "
           f"{evd.WIDE} (max − min). Group means ± s.d. over seeds; protocol and architecture "
           "effects by Mann–Whitney U over networks.", "",
           "| group | n | " + " | ".join(f"acc@{d}" for d in long_delays) + " |",
           "|---" * (2 + len(long_delays)) + "|"]
  for g, rs in evd.groups(have).items():
    lines.append(f"| {g} | {len(rs)} | " + " | ".join(sig.mean_sd([evd.acc(r, d) for r in rs])
                                                      for d in long_delays) + " |")
  spans, compared = {}, 0
  for d in long_delays:
    v = [evd.acc(r, d) for r in have if evd.acc(r, d) is not None]
    spans[d] = (max(v) - min(v)) if v else 0.0
    compared += len(v) >= 2   # a delay only one network reached spans nothing to choose
  effects = _factor_effects(have, long_delays)
  best = max(spans, key=spans.get) if spans else None
  # One network spans nothing: the claim is about several, so it is not tested (None).
  testable = len(have) > 1
  # The widest span's delay is chosen after looking at every long delay's span: its p is
  # Bonferroni-corrected for the delays it was chosen from (those two networks or more reached).
  held, noise_p = _wide_at(have, spans, best, looked=max(compared, 1)) if testable and best else (
      None if not testable else False, None)
  numbers = dict(held=held, spans={str(k): v for k, v in spans.items()}, effects=effects,
                 widest_delay=best, heterogeneity_p=noise_p, delays_compared=compared)
  cd = ev.claim_delay and ev.claim_delay["delay"]
  if cd in spans and testable:
    # Chosen by the half-lives, not by the spans: no correction (its p is not the one above).
    cd_held, cd_p = _wide_at(have, spans, cd)
    numbers["at_claim_delay"] = dict(delay=cd, span=spans[cd], heterogeneity_p=cd_p,
                                     held=cd_held)
  lines += ["", "| effect | delay | means | Mann–Whitney p |", "|---|---|---|---|"]
  for k, e in effects.items():
    factor, d = k.split("@")
    lines.append(f"| {factor}: {e['levels'][0]} vs {e['levels'][1]} | {d} | "
                 f"{e['means'][0]:.3f} vs {e['means'][1]:.3f} | {sig.fmt_p(e['p'])} |")
  lines += ["", _accuracy_figure(ev, have, delays), ""]
  if not testable:
    lines += [f"**Not tested**: {len(have)} network; the claim compares networks.", ""]
    return numbers, lines
  lines += [f"**{evd.verdict(held)}**: the widest span is "
            + (f"{spans[best]:.3f} at delay {best}" if best else "n/a")
            + " (" + ", ".join(f"{d}: {s:.3f}" for d, s in spans.items()) + ")"
            + ("; trial counts not recorded for every network there, so trial noise is not "
               "tested" if noise_p is None
               else f"; the networks differ there beyond trial noise with p = {sig.fmt_p(noise_p)} "
               f"(test of equal accuracy over networks, χ² or, with few trials, its permutation "
               f"version" + (f", Bonferroni-corrected for the {compared} delays the widest span "
                             "was chosen from" if compared > 1 else "")
               + f"; needed: < {evd.ALPHA})") + ".", ""]
  if "at_claim_delay" in numbers:
    lines += [f"At the half-life delay {cd}: span {spans[cd]:.3f}, "
              f"**{evd.verdict(numbers['at_claim_delay']['held']).lower()}**.", ""]
  if spans and not held:
    numbers["why"], why = _why_narrow(ev, have, best)
    lines += [why, ""]
  return numbers, lines


def _wide_at(have, spans, delay, looked=1):
  """(held, p) of (b) at `delay`: the span is at least WIDE and, a span of point estimates
  being also trial noise, the networks differ there beyond it (p < ALPHA; None: not tested).
  `looked`: how many delays `delay` was chosen from, by their spans (p × looked, at most 1)."""
  p = _heterogeneity_p(have, delay)
  p = None if p is None else min(1.0, p * looked)
  return bool(spans[delay] >= evd.WIDE and (p is None or p < evd.ALPHA)), p


def _accuracy_figure(ev: evd.Evidence, have, delays) -> str:
  """Every network's accuracy against delay, saved as ACCURACY_PNG; its Markdown link."""
  curves = {}
  for r in have:
    ds = [d for d in delays if evd.acc(r, d) is not None]
    curves[r["name"]] = (ds, [evd.acc(r, d) for d in ds])
  plotting.save_png(plotting.accuracy_vs_delay(curves, title="Every network"),
                    os.path.join(ev.out, ACCURACY_PNG))
  return f"![accuracy vs delay]({ACCURACY_PNG})"


def _heterogeneity_p(have, delay):
  """p of the χ² test that every network has the same report accuracy at `delay` (correct and
  wrong trial counts, network by network); None with fewer than two networks evaluated there."""
  counts = []
  for r in have:
    a = evd.acc(r, delay)
    if a is None:
      continue
    n = ((r["results"] or {}).get("trials_per_delay") or {}).get(str(delay))
    if not n:   # a network of the span without its counts: the span cannot be tested
      return None
    k = int(round(float(a) * int(n)))
    counts.append([k, int(n) - k])
  return sig.homogeneity(counts)


def _why_narrow(ev: evd.Evidence, have, delay):
  """(numbers, line): why the networks' accuracies at `delay` (their widest span) are close:
  all still near their training-delay level, all fallen to about chance, or alike between."""
  acc = [evd.acc(r, delay) for r in have if evd.acc(r, delay) is not None]
  train = [evd.pooled_training_accuracy(r, ev.train_delays)[0] for r in have]
  lo, hi = min(acc), max(acc)
  numbers = dict(delay=delay, lowest=lo, highest=hi)
  head = (f"Why: at delay {delay} the networks are at {lo:.3f}-{hi:.3f} (at the training delays "
          f"{min(train):.3f}-{max(train):.3f} pooled; chance {evd.CHANCE:.2f}): ")
  if lo >= min(train) - evd.WIDE:
    return numbers, head + (
        "every network keeps its memories over the delays evaluated, so they cannot span "
        f"{evd.WIDE}. A longer delay (`--mode=evaluate --eval_delays=...` on the finished runs) "
        "is where they would differ, if they do.")
  if hi <= evd.CHANCE + evd.WIDE:
    return numbers, head + (
        "every network has forgotten by then, and at the shorter delays they forget alike.")
  return numbers, head + "the networks forget, and at much the same rate."


def _analyze_slow_points(ev: evd.Evidence, with_sp) -> dict:
  """correlations.analyze on the runs with slow points, into <out>/study/ (paths made relative)."""
  delays = ev.long_delays or ev.delays
  # The predictors are ranked at the claim's own delay too (CIFAR-10's 100 is below the
  # default 200-1000, where a quick CIFAR-10 network is at chance).
  predictor_delays = sorted(set(correlations.PREDICTOR_DELAYS)
                            | {evd.test_delay(with_sp, sorted(int(d) for d in delays))})
  res = correlations.analyze([r["workdir"] for r in with_sp], os.path.join(ev.out, "study"),
                             delays=delays, predictor_delays=predictor_delays)
  # The table names runs relative to the sweep root, so that the report can move with it.
  path = os.path.join(ev.out, "study", correlations.ANALYSIS_JSON)
  saved = artifacts.read_json(path)
  saved["workdirs"] = [os.path.relpath(w, ev.root) for w in saved["workdirs"]]
  for row in saved["rows"]:
    row["workdir"] = os.path.relpath(row["workdir"], ev.root)
  artifacts.write_json(path, saved)
  return res


def _network_interval(found, key) -> dict:
  """Pooled Spearman ρ of log10 speed with accuracy at `key`, its 95% interval from resampling
  whole networks (significance.spearman_with_ci with clusters)."""
  pts = [(math.log10(r["speed"]), r[f"acc_{key}"], r["workdir"]) for r in found
         if r["speed"] > 0 and r.get(f"acc_{key}") is not None]
  x, y, g = ([p[i] for p in pts] for i in range(3))
  return sig.spearman_with_ci(x, y, clusters=g)


def _speed_predicts(cc, every_class, ci):
  """(c)'s test at one delay: a negative Spearman ρ of log speed with per-class accuracy at
  p < ALPHA over the pairs (`cc`, a correlations row), its interval from resampling networks
  (`ci`, _network_interval) below 0, and a slow point for every class (`every_class`). None
  (not testable) with fewer than MIN_NETWORKS networks: the classes of one network are not
  independent, so the pairs' p alone overstates the evidence."""
  if ci["clusters"] < evd.MIN_NETWORKS:
    return None
  return bool(cc["spearman"] is not None and cc["spearman"] < 0
              and cc["spearman_p"] < evd.ALPHA and every_class
              and ci["high"] is not None and ci["high"] < 0)


def claim_c(ev: evd.Evidence, with_sp):
  """(c) each class has a slow point, and its speed predicts long-delay accuracy."""
  res = _analyze_slow_points(ev, with_sp)
  rows = res["rows"]
  found = [r for r in rows if r["speed"] is not None]
  own = [r for r in found if r["readout"] == r["cls"]]
  corr = res["correlations"]["per_class"]
  key = str(evd.test_delay(with_sp, sorted(int(d) for d in corr)))
  c = corr[key]
  ci = _network_interval(found, key)
  held = _speed_predicts(c, len(found) == len(rows), ci)
  numbers = dict(held=held, classes=len(rows), with_slow_point=len(found),
                 reading_out_own_class=len(own), correlations=corr, key=key,
                 network_interval=dict(low=ci["low"], high=ci["high"], networks=ci["clusters"]))
  lines = [f"Test: a slow point is found from every class's centre of mass (in {len(found)} "
           f"of {len(rows)} network × class pairs; {len(own)} of them read out their own "
           "class), and log10 speed correlates negatively with per-class accuracy at delay "
           f"{key}, pooled over the pairs as the paper pools them (Spearman, p < {evd.ALPHA}) "
           "and with its 95% interval from resampling whole networks below 0 (a network's "
           "classes are not independent, so the pairs' p alone overstates the evidence); "
           f"with fewer than {evd.MIN_NETWORKS} networks the claim is not testable across "
           "networks and the numbers are descriptive.", "",
           "| delay | n | Spearman ρ | p | Pearson r (log speed) | p |",
           "|---|---|---|---|---|---|"]
  for d, cc in corr.items():
    lines.append(f"| {d} | {cc['n']} | {sig.fmt(cc['spearman'])} | "
                 f"{sig.fmt_p(cc['spearman_p'])} | {sig.fmt(cc['pearson'])} | "
                 f"{sig.fmt_p(cc['pearson_p'])} |")
  _speed_plot(rows, int(key), os.path.join(ev.out, SPEED_PNG))
  lines += ["", f"![speed vs accuracy]({SPEED_PNG})", "",
            f"**{evd.verdict(held)}** at delay {key}: ρ = "
            f"{sig.fmt(c['spearman'])} (p = {sig.fmt_p(c['spearman_p'])}, n = {c['n']} pairs; "
            f"{_interval(ci)}).", ""]
  cd = ev.claim_delay and str(ev.claim_delay["delay"])
  if cd in corr:
    cc = corr[cd]
    cci = _network_interval(found, cd)
    ok = _speed_predicts(cc, len(found) == len(rows), cci)
    numbers["at_claim_delay"] = dict(delay=int(cd), spearman=cc["spearman"],
                                     p=cc["spearman_p"], n=cc["n"], held=ok,
                                     low=cci["low"], high=cci["high"])
    if cd != key:
      lines += [f"At the half-life delay {cd}: ρ = {sig.fmt(cc['spearman'])} "
                f"(p = {sig.fmt_p(cc['spearman_p'])}, n = {cc['n']}; "
                f"{_interval(cci)}), **{evd.verdict(ok).lower()}**.", ""]
  lines += _c_informed(found, key, numbers)
  lines += _c_within(found, key, numbers)
  if held is False:
    lines += _why_not_c(rows, found, key, numbers)
  pred_lines, numbers["predictors"] = section_c_predictors(res, with_sp)
  return numbers, lines + pred_lines + _c_half_life(res.get("half_life"), numbers)


def _interval(ci) -> str:
  """The interval from resampling networks, as a phrase (none shown from too few networks)."""
  n = ci["clusters"]
  if n < sig.MIN_CLUSTERS:   # the rule of sig.interval_shown
    return f"{n} networks, too few to resample: at least {sig.MIN_CLUSTERS}"
  return (f"resampling the {n} networks: "
          + ("–" if ci["low"] is None else f"[{ci['low']:+.2f}, {ci['high']:+.2f}]"))


def _c_informed(found, key, numbers) -> list:
  """(c) pooled with each class's informedness at `key` in place of its accuracy (rows of runs
  that recorded confusion tables): a class the others drain into is not counted as remembered.
  Stated beside the paper's test, not instead of it."""
  pairs = [(math.log10(r["speed"]), r[f"inf_{key}"]) for r in found
           if r["speed"] > 0 and r.get(f"inf_{key}") is not None]
  if not pairs:
    return []
  c = sig.correlate(pairs)
  numbers["informedness"] = dict(delay=int(key), spearman=c["spearman"], p=c["spearman_p"],
                                 n=c["n"])
  return [f"With informedness in place of accuracy (a class's accuracy less the rate at which "
          f"the other classes are reported as it; {c['n']} network × class pairs whose runs "
          f"recorded confusion tables): ρ = {sig.fmt(c['spearman'])} "
          f"(p = {sig.fmt_p(c['spearman_p'])}) at delay {key}.", ""]


def _c_within(found, key, numbers) -> list:
  """(c) within each network: its classes' log speed against their accuracy at `key`, against
  their half-lives and, where the runs recorded confusion tables, against their informedness at
  `key` (memory.informedness: a sink class's accuracy is not memory) (Spearman), a row per
  network, and how many networks it holds in."""
  nets = {}
  for r in found:
    nets.setdefault(r["network"], []).append(r)
  kinds = {"accuracy": f"acc_{key}", "half_life": "half_life", "informedness": f"inf_{key}",
           "informedness_half_life": "inf_half_life"}
  within = {name: {kind: sig.correlate([(math.log10(r["speed"]), r[col]) for r in rs
                                        if r["speed"] > 0 and r.get(col) is not None])
                   for kind, col in kinds.items()}
            for name, rs in sorted(nets.items())}
  numbers["within_networks"] = within
  if len(within) < 2:
    return []
  informed = any(w["informedness"]["n"] for w in within.values())

  def cell(c):
    return "–" if c["spearman"] is None else (
        f"{sig.fmt(c['spearman'], '+.2f')} (p {sig.fmt_p(c['spearman_p'])}, n {c['n']})")

  def count(kind):
    return sum(1 for w in within.values() if w[kind]["spearman"] is not None
               and w[kind]["spearman"] < 0 and w[kind]["spearman_p"] < evd.ALPHA)

  head = f"| network | ρ(log speed, accuracy at {key}) | ρ(log speed, half-life) |"
  if informed:
    head += (f" ρ(log speed, informedness at {key}) | ρ(log speed, informedness half-life) |")
  lines = [f"Within each network (its own classes; with 10 classes p < {evd.ALPHA} needs "
           "ρ ≤ −0.63 by the p shown, SciPy's t approximation, and ≤ −0.65 by the exact "
           "table):", "", head, "|---|---|---|" + ("---|---|" if informed else "")]
  lines += [f"| {n} | {cell(w['accuracy'])} | {cell(w['half_life'])} |" + (
      f" {cell(w['informedness'])} | {cell(w['informedness_half_life'])} |" if informed else "")
            for n, w in within.items()]
  lines += ["", f"Speed predicts its classes' accuracy at delay {key} (ρ < 0, p < {evd.ALPHA}) "
            f"within {count('accuracy')} of {len(within)} networks, their half-lives within "
            f"{count('half_life')}" + (
                f", their informedness within {count('informedness')} and its half-lives "
                f"within {count('informedness_half_life')} (informedness: a class's accuracy "
                "less the rate at which the other classes are reported as it, so a class the "
                "forgotten memories drain into keeps its accuracy, not its informedness; "
                "networks without recorded confusion tables show –)" if informed else "") + ".",
            ""]
  return lines


def _speed_plot(rows, delay, path):
  """The classes' slow-point speed against their accuracy at `delay`, saved to `path`."""
  pts = [r for r in rows if r["speed"] and r.get(f"acc_{delay}") is not None]
  plotting.save_png(plotting.speed_vs_accuracy(
      [r["speed"] for r in pts], [r[f"acc_{delay}"] for r in pts],
      groups=[f"{r['protocol']} {r['arch']}" for r in pts],
      title=f"Slow-point speed vs. class accuracy at delay {delay}"), path)


def _c_half_life(halves, numbers) -> list:
  """(c) on the memory half-life (correlations.rank_half_life's `halves`, when there are any)."""
  if not halves:
    return []
  sp = halves["table"]["speed"]["pooled"]
  held = (None if sp.get("clusters", 0) < evd.MIN_NETWORKS else bool(
      sp["rho"] is not None and sp["high"] is not None and sp["high"] < 0))
  numbers["half_life"] = dict(halves, held=held)
  cc = halves["table"]["speed"].get("concordance") or {}
  check = ("" if cc.get("c") is None else
           f" Censoring-aware check: speed orders {cc['c']:.2f} of the {cc['pairs']} comparable "
           "(network, class) pairs the claimed way (concordance C; 0.5 is no relation"
           + (f", 95% interval {cc['low']:.2f}-{cc['high']:.2f}" if sig.interval_shown(cc)
              else f"; no interval with fewer than {evd.MIN_NETWORKS} networks"
              if cc.get("low") is not None else "") + ").")
  return ["", correlations.half_life_markdown(halves, title_level="###"),
          f"On half-lives, (c) **{evd.verdict(held).lower()}** (the test: pooled ρ of speed "
          "with half-life negative, its 95% interval from resampling whole networks below 0; "
          f"{sp.get('clusters', 0)} networks, at least {evd.MIN_NETWORKS} needed).{check}", ""]


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
  at_chance = evd.chance_delays(recs, sorted(int(d) for d in ranking["best"]))
  if at_chance:
    lines += ["", f"At delay {', '.join(map(str, at_chance))} every network is at chance "
              f"(report accuracy within two standard errors of {evd.CHANCE}): per-class accuracy "
              "there says which class a network falls back to, not how long it remembers, so "
              "those columns do not rank memory."]
  summary = dict(recipes=recipes, in_box=inside, points=points, stop_reasons=stops,
                 best=ranking["best"], table=ranking["table"], at_chance=at_chance)
  return lines, summary

