"""Claim (d) of the study report: speed regularisation beats the control fine-tuning.

Each network is fine-tuned three ways (control.MODES: the control with μ = 0, and the
slow_points and center_mass penalties); the claim compares each penalty with the control,
paired over networks, at the data set's test delay and at the half-life delay.
"""

import os

import numpy as np

from haviv_tf.analysis import control
from haviv_tf.analysis import plotting
from haviv_tf.study import evidence as evd
from haviv_tf.study import significance as sig

FINETUNE_PNG = "report_finetune.png"
# The fine-tunings with a speed penalty, each compared with the control.
PENALTIES = tuple(m for m in control.MODES if m != "control")  # slow_points, center_mass


def _minus_control(rec, delay, mode):
  """A network's accuracy after `mode` minus after the control at `delay`; None if either is."""
  a, b = evd.acc(rec, delay, mode), evd.acc(rec, delay, "control")
  return None if a is None or b is None else a - b


def _delay_table(ft, delays):
  """{delay: {"means", "diffs"}} (each penalty − control, paired over networks) and its rows."""
  rows_d, lines = {}, []
  for d in delays:
    vals = {m: [evd.acc(r, d, m) for r in ft] for m in ("trained",) + control.MODES}
    diffs = {}
    for m in PENALTIES:
      dd = [x for x in (_minus_control(r, d, m) for r in ft) if x is not None]
      diffs[m] = dict(mean=float(np.mean(dd)) if dd else None, n=len(dd),
                      positive=sum(x > 0 for x in dd), p=sig.wilcoxon(dd),
                      p_greater=sig.wilcoxon(dd, "greater"))
    rows_d[str(d)] = dict(means={m: sig.mean_sd(v) for m, v in vals.items()}, diffs=diffs)
    lines.append(f"| {d} | " + " | ".join(sig.mean_sd(vals[m])
                                           for m in ("trained",) + control.MODES)
                 + " | " + " | ".join(
                     f"{sig.signed(diffs[m]['mean'])} ({diffs[m]['positive']}/{diffs[m]['n']} "
                     f"> 0, p {sig.fmt_p(diffs[m]['p'])})" for m in PENALTIES)
                 + " |")
  return rows_d, lines


def _training_delay_cost(ft, train_delays) -> dict:
  """Per penalty: per network, the mean over the training delays of (penalty − control)."""
  cost = {}
  for m in PENALTIES:
    per_net = []
    for r in ft:
      dd = [x for x in (_minus_control(r, d, m) for d in train_delays) if x is not None]
      if dd:
        per_net.append(float(np.mean(dd)))
    cost[m] = dict(mean=float(np.mean(per_net)) if per_net else None,
                   worst=min(per_net) if per_net else None, n=len(per_net))
  return cost


def _finetune_plot(ft, delays, path):
  """Mean accuracy over the networks against delay, after training and each fine-tuning."""
  curves = {}
  for m in ("trained",) + control.MODES:
    curves[m] = (delays, [float(np.mean([evd.acc(r, d, m) for r in ft
                                         if evd.acc(r, d, m) is not None] or [np.nan]))
                          for d in delays])
  plotting.save_png(plotting.accuracy_vs_delay(
      curves, title=f"Fine-tuning, mean over {len(ft)} networks"), path)


def claim_d(ev: evd.Evidence, ft):
  """(d) speed regularisation beats control at long delays (paired over networks)."""
  delays = ev.long_delays or ev.delays
  d_key = evd.test_delay(ft, list(delays))
  lines = [f"Test: for each network, accuracy of the slow_points and center_mass fine-tunings "
           f"minus that of the control fine-tuning (same steps, μ = 0); the claim holds if "
           f"both mean differences at delay {d_key} are positive with a one-sided Wilcoxon "
           f"signed-rank p < {evd.ALPHA} (the claim is that the penalties help; the table's p "
           f"is two-sided). With fewer than {evd.MIN_NETWORKS} networks the one-sided exact p "
           "cannot fall below 0.05: not testable, the differences are descriptive.", "",
           "| delay | trained | control | slow_points | center_mass | slow_points − control "
           "| center_mass − control |", "|---|---|---|---|---|---|---|"]
  rows_d, table = _delay_table(ft, delays)
  lines += table
  short = {m: [evd.acc(r, d, m) for r in ft for d in ev.train_delays] for m in control.MODES}
  cost = _training_delay_cost(ft, ev.train_delays)
  held = _beats_control_at(rows_d, d_key)
  numbers = dict(held=held, delay=d_key, table=rows_d, training_delay_cost=cost,
                 worst_training_delay_accuracy={m: min(v) if v else None for m, v in short.items()})
  cd = ev.claim_delay and ev.claim_delay["delay"]
  if str(cd) in rows_d:
    numbers["at_claim_delay"] = dict(delay=cd, held=_beats_control_at(rows_d, cd))
  _finetune_plot(ft, delays, os.path.join(ev.out, FINETUNE_PNG))
  lines += ["", f"![fine-tuning]({FINETUNE_PNG})", "",
            "Worst accuracy at the training delays after fine-tuning: " + ", ".join(
                f"{m} {min(v):.3f}" for m, v in short.items() if v) + ". Cost at the training "
            "delays (mode − control, averaged over those delays, per network): " + ", ".join(
                f"{m} {sig.signed(c['mean'])} on average, worst {sig.signed(c['worst'])}"
                for m, c in cost.items()) + ".", "",
            f"**{evd.verdict(held)}** at delay {d_key}"
            + (f" ({len(ft)} networks; at least {evd.MIN_NETWORKS} needed)." if held is None
               else ".")
            + (f" At the half-life delay {cd}: "
               f"**{evd.verdict(numbers['at_claim_delay']['held']).lower()}**."
               if "at_claim_delay" in numbers and cd != d_key else ""), ""]
  by_group, group_lines = _d_by_group(ft, d_key)
  numbers["by_group"] = by_group
  lines += group_lines
  if held is False:
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

  for g, rs in evd.groups(ft).items():
    row = dict(n=len(rs))
    cells = []
    for m in PENALTIES:
      dd = [x for x in (_minus_control(r, d_key, m) for r in rs) if x is not None]
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


def _beats_control(diff):
  """(d)'s test on one penalty's paired differences: a positive mean with one-sided Wilcoxon
  p < ALPHA; None (not testable) with fewer than MIN_NETWORKS networks, where that p cannot
  fall below 0.05 (positive in 2 of 2 networks happens by chance one time in four)."""
  if diff["n"] < evd.MIN_NETWORKS:
    return None
  p = diff.get("p_greater")
  return bool(diff["mean"] is not None and diff["mean"] > 0 and p is not None and p < evd.ALPHA)


def _beats_control_at(rows_d, delay):
  """(d)'s verdict at one delay of _delay_table: both penalties beat the control (None: not
  testable)."""
  tests = [_beats_control(rows_d[str(delay)]["diffs"][m]) for m in PENALTIES]
  return None if None in tests else all(tests)


def _why_not_d(ev: evd.Evidence, ft, d_key, rows_d, numbers) -> list:
  """Where (d) did not hold: how much room the control left at the test delay, and the test
  at the longest evaluated delay (reported beside the verdict, not in place of it)."""
  lines = []
  for m in PENALTIES:
    d = rows_d[str(d_key)]["diffs"][m]
    worse = {g: v[m]["mean"] for g, v in numbers.get("by_group", {}).items()
             if v[m]["mean"] is not None and v[m]["mean"] < 0}
    ok = _beats_control(d)
    text = (f"Why: {m} − control at delay {d_key} is {sig.signed(d['mean'])} "
            f"({d['positive']}/{d['n']} > 0, one-sided p {sig.fmt_p(d.get('p_greater'))}): "
            + ("it passes on its own." if ok else "it fails the test."))
    if worse:
      text += (f" It is below the control in " + ", ".join(
          f"{g} ({sig.signed(v)})" for g, v in sorted(worse.items())) + " (table above).")
    lines.append(text)
  lines += _target_speeds(ev, ft, numbers)
  room = []
  for r in ft:
    pooled = evd.pooled_training_accuracy(r, ev.train_delays)[0]
    c = evd.acc(r, d_key, "control")
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


def _target_speeds(ev: evd.Evidence, ft, numbers) -> list:
  """(d)'s measurement of the targets themselves (TARGETS_JSON, when the report folder has
  one): per network type, the speed at each penalty's targets in the trained network, after
  the control and after that penalty; a penalty that cannot hold its targets slow against the
  control's drift cannot hold the memories there."""
  store = {k: v for k, v in (ev.targets or {}).items() if k in {r["name"] for r in ft}}
  if not store:
    return []
  out, cells = {}, []
  for g, recs in evd.groups([r for r in ft if r["name"] in store]).items():
    rows = [store[r["name"]] for r in recs]
    out[g] = {t: {m: float(np.exp(np.mean(np.log([x["speed"][m][t] for x in rows]))))
                  for m in ("trained", "control", t)} for t in PENALTIES}
    cells.append(f"{g} " + ", ".join(
        f"{t} targets {v['trained']:.1e} → control {v['control']:.1e} / {t} {v[t]:.1e}"
        for t, v in out[g].items()))
  numbers["target_speeds"] = out
  return [f"Speed at each penalty's own targets ({evd.TARGETS_JSON}, {len(store)} networks; "
          "trained → after the control / after that penalty, geometric mean per type): "
          + "; ".join(cells) + ". The control moves the dynamics away from the trained "
          "network's states; the speed after a penalty shows how far it held its targets "
          "slow against that drift."]

