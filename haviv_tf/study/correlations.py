"""Across networks: slow-point speed vs. long-delay accuracy (table, correlations, scatter)."""

import math
import os

import numpy as np

from haviv_tf.base import artifacts
from haviv_tf.base import config as config_lib
from haviv_tf.probes import memory
from haviv_tf.analysis import plotting
from haviv_tf.study import significance as sig

FORMAT_VERSION = config_lib.SLOW_POINTS_FORMAT  # results.json's slow_points_format read here
PREDICTORS = config_lib.PREDICTORS
PREDICTOR_DELAYS = (200, 500, 1000)
BOOTSTRAP = 2000
ANALYSIS_JSON = "analysis.json"
ANALYSIS_MD = "analysis.md"
SCATTER_PNG = "speed_vs_accuracy.png"


def load_run(workdir):
  """(config, results) of a finished run with slow points; RunError otherwise."""
  cfg_path = os.path.join(workdir, artifacts.CONFIG_FILE)
  res_path = os.path.join(workdir, artifacts.RESULTS_FILE)
  if not os.path.exists(cfg_path) or not os.path.exists(res_path):
    raise artifacts.RunError(f"{workdir} is not a finished haviv_tf run (no config.json or "
                             "results.json)")
  cfg = artifacts.recorded_config(workdir)
  try:
    results = artifacts.read_json(res_path)
  except (OSError, ValueError) as e:
    raise artifacts.RunError(f"{workdir}: unreadable run files ({e})") from None
  if "slow_point_speed" not in results:
    raise artifacts.RunError(f"{workdir} has no slow points yet; run --mode=slow_points on it")
  if results.get("slow_points_format") != FORMAT_VERSION:
    raise artifacts.RunError(
        f"{workdir}'s slow points were written by an older format (without the reachable-set "
        "constraint and the memory predictors); re-run --mode=slow_points on it")
  return cfg, results


def run_half_lives(cfg, results):
  """The run's memory half-lives by today's rule (memory.half_lives), computed from its accuracy
  tables, so that a report applies one rule to every network whatever code evaluated it; the
  half-lives stored in results.json only where the tables cannot give one; None where neither
  can (no trial counts, no training delay)."""
  try:
    return memory.half_lives(results, cfg.seq_len - 1)
  except ValueError:
    return results.get("memory_half_life") or None


def table(workdirs) -> list[dict]:
  """One row per (network, class): protocol, arch, slow-point speed, accuracy at every delay
  ("acc_<delay>"; "inf_<delay>" its informedness where the run recorded its confusion table,
  memory.informedness), the class's memory half-life (None where the class starts at chance)
  and the network's."""
  rows = []
  for w in workdirs:
    cfg, res = load_run(w)
    per_class = res.get("per_class_accuracy_by_delay", {})
    halves = run_half_lives(cfg, res) or {}
    informed = {d: memory.informedness(t)
                for d, t in res.get("report_confusion_by_delay", {}).items()}
    overall = halves.get("overall") or {}
    for c in range(config_lib.NUM_CLASSES):
      speed = res["slow_point_speed"].get(str(c))
      row = dict(network=os.path.basename(os.path.normpath(w)), workdir=w,
                 protocol=cfg.protocol, arch=cfg.arch, dataset=cfg.dataset, seed=cfg.seed,
                 cls=c, speed=speed, readout=res.get("slow_point_readout", {}).get(str(c)),
                 recipe=res.get("slow_points_recipe"))
      h = (halves.get("per_class") or {}).get(str(c)) or {}
      hi = (halves.get("per_class_informedness") or {}).get(str(c)) or {}
      row.update(half_life=h.get("half_life"), half_life_censored=h.get("censored"),
                 inf_half_life=hi.get("half_life"),
                 network_half_life=overall.get("half_life"),
                 network_half_life_censored=overall.get("censored"))
      for name in PREDICTORS:
        v = res.get("memory_predictors", {}).get(name, {}).get(str(c))
        if name == "time_constant" and v is None and speed is not None:
          v = math.inf  # |λ1| >= 1 at a found point (results.json holds no infinity)
        row[f"pred_{name}"] = v
      for d, accs in per_class.items():
        row[f"acc_{d}"] = accs[c]
      for d, table in informed.items():
        row[f"inf_{d}"] = table[c]
      rows.append(row)
  return rows


def correlations(rows, delays) -> dict:
  """Spearman and Pearson correlation of log10 speed with accuracy at each delay.

  "per_class" pools every (network, class) pair; "per_network" uses each network's mean log
  speed and mean accuracy over classes.
  """
  out = {"per_class": {}, "per_network": {}}
  for d in delays:
    key = f"acc_{d}"
    pairs = [(math.log10(r["speed"]), r[key]) for r in rows
             if r.get("speed") and r["speed"] > 0 and r.get(key) is not None]
    out["per_class"][str(d)] = sig.correlate(pairs)
    nets = {}
    for r in rows:
      if r.get("speed") and r["speed"] > 0 and r.get(key) is not None:
        nets.setdefault(r["workdir"], []).append((math.log10(r["speed"]), r[key]))
    means = [tuple(np.mean(v, axis=0)) for v in nets.values()]
    out["per_network"][str(d)] = sig.correlate(means)
  return out


def _same_runs(a, b) -> bool:
  norm = lambda ws: sorted(os.path.abspath(w) for w in ws)  # pylint: disable=unnecessary-lambda-assignment
  return norm(a) == norm(b) or sorted(map(os.path.normpath, a)) == sorted(map(os.path.normpath, b))


def analyze(workdirs, out_dir, delays=(100, 200, 500, 1000), predictor_delays=None,
            overwrite=True) -> dict:
  """Writes analysis.json, analysis.md and speed_vs_accuracy.png to `out_dir`.

  An analysis of other runs (or other delays) already in `out_dir` is replaced only with
  `overwrite` (the command line's default is not to: RunError naming --overwrite); the same
  runs are analysed again from their current results.

  Args:
    workdirs: finished runs (results.json with slow_point_speed and per-class accuracies).
    out_dir: where to write.
    delays: long delays to correlate against (those a run lacks are skipped).
    predictor_delays: delays of the predictor ranking (default PREDICTOR_DELAYS; those not
      in `delays` are skipped).

  Raises:
    artifacts.RunError: a workdir is not a finished run with slow points.
  """
  if not workdirs:
    raise config_lib.InputError("`workdirs` must name at least one run")
  stored_path = os.path.join(out_dir, ANALYSIS_JSON)
  if not overwrite and os.path.exists(stored_path):
    stored = artifacts.read_json(stored_path)
    if not _same_runs(stored.get("workdirs") or [], workdirs) or stored.get("requested_delays",
                                                                        list(delays)) != list(delays):
      raise artifacts.RunError(
          f"{out_dir} holds an analysis of other runs or delays (runs "
          f"{', '.join(stored.get('workdirs') or [])}); --overwrite replaces it, or use another "
          "--out")
  rows = table(workdirs)
  have = [d for d in delays if any(r.get(f"acc_{d}") is not None for r in rows)]
  if not have:
    raise artifacts.RunError(f"none of the runs was evaluated at delays {list(delays)}")
  corr = correlations(rows, have)
  pred_delays = [d for d in (predictor_delays or PREDICTOR_DELAYS) if d in have] or have
  ranking = rank_predictors(rows, pred_delays)
  halves = rank_half_life(rows)
  os.makedirs(out_dir, exist_ok=True)
  result = dict(workdirs=list(workdirs), delays=have, requested_delays=list(delays),
                rows=_finite_rows(rows), correlations=corr, predictors=ranking, half_life=halves,
                environment=artifacts.environment())
  artifacts.write_json(os.path.join(out_dir, ANALYSIS_JSON), result)
  artifacts.write_text(os.path.join(out_dir, ANALYSIS_MD),
                       _markdown(rows, corr, have) + "\n" + predictors_markdown(ranking)
                       + "\n" + half_life_markdown(halves))
  longest = have[-1]
  pts = [r for r in rows if r.get("speed") and r.get(f"acc_{longest}") is not None]
  fig = plotting.speed_vs_accuracy(
      [r["speed"] for r in pts], [r[f"acc_{longest}"] for r in pts],
      groups=[f"{r['protocol']} {r['arch']}" for r in pts],
      title=f"Slow-point speed vs. accuracy at delay {longest}")
  plotting.save_png(fig, os.path.join(out_dir, SCATTER_PNG))
  return result


def _markdown(rows, corr, delays):
  lines = ["# Slow-point speed vs. long-delay accuracy", "",
           "| network | protocol | arch | class | speed | read-out | "
           + " | ".join(f"acc@{d}" for d in delays) + " |",
           "| --- | --- | --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in delays) + " |"]
  for r in rows:
    readout = r["readout"] if r["readout"] is not None else "–"
    lines.append(f"| {r['network']} | {r['protocol']} | {r['arch']} | {r['cls']} | "
                 f"{sig.fmt(r['speed'], '.2e')} | {readout} | "
                 + " | ".join(sig.fmt(r.get(f'acc_{d}')) for d in delays) + " |")
  lines += ["", "## Correlation of log10 speed with accuracy", "",
            "| delay | pooling | n | Spearman ρ (p) | Pearson r (p) |",
            "| ---: | --- | ---: | --- | --- |"]
  for d in delays:
    for pooling in ("per_class", "per_network"):
      c = corr[pooling][str(d)]
      lines.append(f"| {d} | {pooling.replace('_', ' ')} | {c['n']} | "
                   f"{sig.fmt(c['spearman'])} ({sig.fmt(c['spearman_p'], '.1e')}) | "
                   f"{sig.fmt(c['pearson'])} ({sig.fmt(c['pearson_p'], '.1e')}) |")
  return "\n".join(lines) + "\n"


# -- which per-class quantity predicts memory best ----------------------------------------------


def _finite_rows(rows):
  """Rows for JSON: an infinite time constant becomes None."""
  return [{k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in r.items()}
          for r in rows]


def _rank_one(x, y, groups, sign, num_boot) -> dict:
  """One predictor x against a memory measure y: Spearman ρ pooled over every pair and within
  `groups` (networks), each with its bootstrap interval and "oriented" (ρ x the predictor's
  expected `sign`: larger is a better prediction).

  Returns:
    {"pooled", "within" (significance.spearman_with_ci dicts, plus "oriented"), "sign"}.
  """
  # The pooled interval resamples whole networks (a network's classes are not independent).
  pooled = sig.spearman_with_ci(x, y, None, num_boot, clusters=groups)
  within = sig.spearman_with_ci(x, y, groups, num_boot)
  for v in (pooled, within):
    v["oriented"] = None if v["rho"] is None else sign * v["rho"]
  return dict(pooled=pooled, within=within, sign=sign)


def rank_predictors(rows, delays, num_boot: int = BOOTSTRAP) -> dict:
  """Spearman ρ of every predictor against per-class accuracy, pooled and within networks.

  Each ρ is reported as measured; "oriented" multiplies it by the predictor's expected sign
  (PREDICTORS: +1 if a larger value should mean longer memory), so that larger oriented ρ is a
  better prediction. The best predictor at a delay has the largest pooled oriented ρ.

  Returns:
    {"delays", "table": {predictor: {delay: {"pooled": ..., "within": ..., "sign"}}},
     "best": {delay: predictor}}.
  """
  table, best, counts = {}, {}, {}
  # The bootstrap resamples by position: a canonical order (network name, class) makes the
  # intervals independent of the order in which the runs were listed.
  rows = sorted(rows, key=lambda r: (r["network"], r["cls"], r["workdir"]))
  for name, sign in PREDICTORS.items():
    table[name] = {}
    vals = [r[f"pred_{name}"] for r in rows if r.get(f"pred_{name}") is not None]
    counts[name] = dict(values=len(vals), infinite=sum(math.isinf(v) for v in vals))
    for d in delays:
      pairs = [(r[f"pred_{name}"], r[f"acc_{d}"], r["workdir"]) for r in rows
               if r.get(f"pred_{name}") is not None and r.get(f"acc_{d}") is not None]
      x, y, g = ([p[i] for p in pairs] for i in range(3))
      table[name][str(d)] = _rank_one(x, y, g, sign, num_boot)
  for d in delays:
    scored = [(table[n][str(d)]["pooled"]["oriented"], n) for n in PREDICTORS
              if table[n][str(d)]["pooled"]["oriented"] is not None]
    best[str(d)] = max(scored)[1] if scored else None
  return dict(delays=list(delays), table=table, best=best, counts=counts)


def _few(v) -> str:
  """" (k networks)" where v resampled fewer than sig.MIN_CLUSTERS networks (no interval)."""
  k = v.get("clusters")
  return f" ({k} networks)" if k is not None and k < sig.MIN_CLUSTERS else ""


def _ci(v):
  if v["rho"] is None:
    return "–"
  if not sig.interval_shown(v):
    return f"{v['rho']:+.2f}{_few(v)}"
  return f"{v['rho']:+.2f} [{v['low']:+.2f}, {v['high']:+.2f}]"


def _c_ci(v):
  if not v or v["c"] is None:
    return "–"
  if not sig.interval_shown(v):
    return f"{v['c']:.2f} ({v['pairs']} pairs{_few(v).replace(' (', '; ').rstrip(')')})"
  return f"{v['c']:.2f} [{v['low']:.2f}, {v['high']:.2f}]"


def predictors_markdown(ranking, title_level="##") -> str:
  """The predictor table: Spearman ρ [bootstrap 95% interval] per delay, pooled / within."""
  delays = ranking["delays"]
  lines = [f"{title_level} Which per-class quantity predicts long-delay accuracy", "",
           "Spearman ρ of each predictor against per-class report accuracy, with bootstrap 95% "
           "intervals; *pooled* over every (network, class) pair, its interval from resampling "
           f"whole networks (none shown with fewer than {sig.MIN_CLUSTERS}); *within* the mean "
           "of the per-network ρ, its interval from resampling classes in each network. "
           "Expected sign: − for speeds and decay rates (faster = shorter memory), + for the "
           "time constant. `accuracy_decay` is the class's "
           "own read-out accuracy falling under noise, a positive control rather than a "
           "dynamical predictor.", "",
           "| predictor | sign | " + " | ".join(f"pooled @{d} | within @{d}" for d in delays)
           + " |", "|---|---|" + "---|---|" * len(delays)]
  for name, per in ranking["table"].items():
    lines.append(f"| {name} | {'+' if per[str(delays[0])]['sign'] > 0 else '−'} | "
                 + " | ".join(f"{_ci(per[str(d)]['pooled'])} | {_ci(per[str(d)]['within'])}"
                              for d in delays) + " |")
  for name, c in ranking.get("counts", {}).items():
    if all(ranking["table"][name][str(d)]["pooled"]["rho"] is None for d in delays):
      why = ("no values recorded" if not c["values"] else
             f"all {c['values']} values infinite (|λ1| ≥ 1 at every slow point)"
             if c["infinite"] == c["values"] else "constant over the classes")
      lines += ["", f"{name}: no ρ ({why})."]
    elif c["values"] and 2 * c["infinite"] > c["values"]:
      within = ranking["table"][name][str(delays[0])]["within"].get("groups", 0)
      lines += ["", f"{name}: {c['infinite']} of {c['values']} values infinite (tied at the "
                f"top), so its ρ ranks the few finite ones; its within-network ρ rests on "
                f"{within} network(s). Read it with care."]
  lines += ["", "Best predictor (largest pooled ρ in the expected direction): "
            + "; ".join(f"delay {d}: {ranking['best'][str(d)] or '–'}" for d in delays) + "."]
  return "\n".join(lines) + "\n"


# -- memory half-lives: (c) tested where memory decays, whatever the delay ----------------------


def rank_half_life(rows, num_boot: int = BOOTSTRAP) -> dict:
  """Spearman ρ of every predictor against the per-class memory half-life.

  Pairs are (network, class) with a half-life (classes that start at chance have none); a
  censored half-life enters at its censoring delay, a lower bound, so that censored classes tie
  at the top of the ranking. Spearman ρ is a rank correlation: ρ(log speed, log half-life) is
  ρ(speed, half-life). Beside it, Harrell's concordance C (significance.concordance), which
  never ranks a censored half-life against one it may exceed: the share of comparable pairs
  the predictor orders the expected way (0.5 none, 1 all), its interval from resampling
  networks. "pooled" ranks every pair, "within" averages the per-network ρ (bootstrap
  95% intervals: rank_predictors's resampling). "per_network" correlates each network's
  geometric-mean slow-point speed with its overall half-life.

  Returns:
    {"table": {predictor: {"pooled", "within", "concordance", "sign"}}, "per_network": {...},
     "pairs",
     "censored", "at_chance", "best"}.
  """
  rows = sorted(rows, key=lambda r: (r["network"], r["cls"], r["workdir"]))
  with_half = [r for r in rows if r.get("half_life") is not None]
  out_table = {}
  for name, sign in PREDICTORS.items():
    pairs = [(r[f"pred_{name}"], r["half_life"], r["workdir"], bool(r.get("half_life_censored")))
             for r in with_half if r.get(f"pred_{name}") is not None]
    x, y, g, cens = ([p[i] for p in pairs] for i in range(4))
    out_table[name] = _rank_one(x, y, g, sign, num_boot)
    # Censoring-aware: a larger risk (-sign x) should mean a shorter half-life.
    out_table[name]["concordance"] = sig.concordance(
        [-sign * v for v in x], y, cens, clusters=g, num_boot=num_boot)
  nets = {}
  for r in rows:
    if r.get("speed") and r["speed"] > 0 and r.get("network_half_life") is not None:
      nets.setdefault(r["workdir"], [r["network_half_life"], []])[1].append(math.log(r["speed"]))
  x = [float(np.mean(v[1])) for v in nets.values()]
  y = [v[0] for v in nets.values()]
  # One pair per network: resampling pairs is resampling networks (clusters make it say so).
  per_network = sig.spearman_with_ci(x, y, None, num_boot, clusters=list(range(len(x))))
  scored = [(v["pooled"]["oriented"], n) for n, v in out_table.items()
            if v["pooled"]["oriented"] is not None]
  return dict(table=out_table, per_network=per_network, pairs=len(with_half),
              censored=sum(bool(r.get("half_life_censored")) for r in with_half),
              at_chance=len(rows) - len(with_half), best=max(scored)[1] if scored else None)


def half_life_markdown(h, title_level="##") -> str:
  """The half-life table: Spearman ρ [bootstrap 95% interval] of each predictor, pooled and
  within networks, and the per-network correlation of speed with half-life."""
  lines = [f"{title_level} Which per-class quantity predicts the memory half-life", "",
           f"{h['pairs']} (network, class) pairs with a half-life ({h['censored']} censored at "
           f"the longest delay evaluated, entered there as lower bounds; {h['at_chance']} at "
           "chance from the start, left out). Pooled intervals resample whole networks "
           f"(none is shown with fewer than {sig.MIN_CLUSTERS}), within-network ones the classes "
           "of each network. Spearman ρ is unchanged by taking logs, so the speed row is "
           "ρ(log speed, log half-life). Expected sign: − for speeds and decay rates, + for "
           "the time constant.", "",
           "The last column is Harrell's concordance C, which never ranks a censored half-life "
           "against one it may exceed: the share of comparable pairs the predictor orders the "
           "expected way (0.5: no relation; 1: every pair), its interval from resampling whole "
           "networks.", "",
           "| predictor | sign | pooled ρ | within networks ρ | concordance C |",
           "|---|---|---|---|---|"]
  for name, v in h["table"].items():
    lines.append(f"| {name} | {'+' if v['sign'] > 0 else '−'} | {_ci(v['pooled'])} | "
                 f"{_ci(v['within'])} | {_c_ci(v.get('concordance'))} |")
  pn = h["per_network"]
  lines += ["", f"Per network (mean log speed over classes vs the network's half-life, "
            f"n = {pn['n']}): ρ = {_ci(pn)}.",
            "", f"Best predictor of the half-life (largest pooled ρ in the expected direction): "
            f"{h['best'] or '–'}."]
  return "\n".join(lines) + "\n"
