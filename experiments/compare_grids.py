"""Two (or more) study grids side by side, claim by claim, from their committed files.

  python3 experiments/compare_grids.py small=experiments/study_small \
      medium=experiments/study_medium --out experiments/study_medium/COMPARISON.md

Each folder is a grid as committed: `runs/` (experiments/grid_files.py save), `grid.json` (in
`runs/` or beside it) and, optionally, `ceiling.json` (experiments/mlp_ceiling.py --json).
Every claim is computed again here by the report's own functions from the runs' JSON files
(config.json, results.json, compare.json, backtrack.json), so grids reported before a line was
added to the report get it too. Prints a Markdown table and writes it to --out if given.
"""

import argparse
import os
import shutil
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from haviv_tf.base import artifacts  # pylint: disable=g-import-not-at-top,wrong-import-position
from haviv_tf.study import claims as claims_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from haviv_tf.study import claims_backtrack  # pylint: disable=g-import-not-at-top,wrong-import-position
from haviv_tf.study import claims_finetune  # pylint: disable=g-import-not-at-top,wrong-import-position
from haviv_tf.study import evidence as evd  # pylint: disable=g-import-not-at-top,wrong-import-position
from haviv_tf.study import report  # pylint: disable=g-import-not-at-top,wrong-import-position
from haviv_tf.study import significance as sig  # pylint: disable=g-import-not-at-top,wrong-import-position
from haviv_tf.study import sweep  # pylint: disable=g-import-not-at-top,wrong-import-position
import common  # pylint: disable=g-import-not-at-top,wrong-import-position
import grid_files  # pylint: disable=g-import-not-at-top,wrong-import-position


def claims(folder):
  """(numbers per claim, number of finished networks, number in the grid) of one folder."""
  tmp = tempfile.mkdtemp(prefix="compare_grids_")
  try:
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    grid_dir, _ = common.grid_folders(folder)
    shutil.copyfile(os.path.join(grid_dir, sweep.GRID_FILE), os.path.join(root, sweep.GRID_FILE))
    if grid_dir != folder:
      grid_files.transfer(grid_dir, root, overwrite=False)
    else:
      _copy_runs(folder, root)
    _, specs = sweep.load_grid(root)
    recs = [r for r in evd.collect(root, specs)
            if r["results"] and "accuracy_by_delay" in r["results"]]
    ceiling = evd.read_ceiling(folder)
    ev = evd.Evidence(root=root, out=tmp, have=recs, seq_len=specs[0].config().seq_len,
                      delays=sorted({int(d) for r in recs
                                     for d in r["results"]["accuracy_by_delay"]}),
                      ceiling=ceiling)
    out = {"a": claims_lib.claim_a(ev, recs)[0], "b": claims_lib.claim_b(ev, recs)[0]}
    ft = [r for r in recs if r["compare"]]
    out["d"] = claims_finetune.claim_d(ev, ft)[0] if ft else None
    bt = [r for r in recs if r["backtrack"]]
    out["e"] = claims_backtrack.claim_e(ev, bt)[0] if bt else None
    sp = [r for r in recs if "slow_point_speed" in r["results"]]
    out["c"] = claims_lib.claim_c(ev, sp)[0] if sp else None
    out["speeds"] = speeds_by_recipe(root, recs)
    return out, len(recs), len(specs), ev
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def speeds_by_recipe(root, recs) -> dict:
  """{slow-point recipe: [each network's median speed over its classes]} (common.median_speeds)."""
  out = {}
  for r in recs:
    for recipe, speed in common.median_speeds(os.path.join(root, r["name"]), r["results"]).items():
      if speed is not None:
        out.setdefault(recipe, []).append(speed)
  return out


def _accuracy_by_delay(r):
  """Mean report accuracy at each delay over the networks evaluated there (min-max, and how
  many networks where not all were)."""
  have = r["ev"].have
  cells = []
  for d in sorted({int(k) for x in have for k in x["results"]["accuracy_by_delay"]}):
    v = [x["results"]["accuracy_by_delay"][str(d)] for x in have
         if str(d) in x["results"]["accuracy_by_delay"]]
    n = "" if len(v) == len(have) else f", {len(v)} nets"
    cells.append(f"{d}: {np.mean(v):.3f} ({min(v):.3f}-{max(v):.3f}{n})")
  return "; ".join(cells)


def _speeds(r):
  return "; ".join(f"{recipe}: {np.median(v):.2e} ({min(v):.2e}-{max(v):.2e}, {len(v)} nets)"
                   for recipe, v in sorted(r["claims"]["speeds"].items()))


def _copy_runs(folder, root):
  """A folder of the older layout: grid.json beside runs/ (runs/ may hold a copy of it)."""
  src = os.path.join(folder, "runs")
  for name in os.listdir(src):
    if os.path.isdir(os.path.join(src, name)):
      shutil.copytree(os.path.join(src, name), os.path.join(root, name))


def _fmt_diff(d):
  return f"{sig.signed(d['mean'])} ({d['positive']}/{d['n']} > 0, p {sig.fmt_p(d['p'])})"


def rows(results):
  """Markdown rows: one per claim and quantity, one column per grid."""
  names = list(results)
  table = []

  def row(label, fn):
    cells = []
    for n in names:
      try:
        cells.append(fn(results[n]))
      except (KeyError, TypeError, ValueError):
        cells.append("–")
    table.append(f"| {label} | " + " | ".join(cells) + " |")

  _rows_overview(row)
  _rows_a(row)
  _rows_b_c(row)
  _rows_d(row, results)
  _rows_e(row)
  return ["| | " + " | ".join(names) + " |", "|---" * (1 + len(names)) + "|"] + table


def _verdict(key):
  return lambda r: {True: "**held**", False: "**did not hold**", None: "not testable"}[
      r["claims"][key]["held"] if r["claims"][key] else None]


def _half_lives(r):
  """Median network half-life over the grid's networks (min-max; how many censored)."""
  halves = [h for h in report.network_half_lives(r["ev"].have, r["ev"].seq_len).values() if h]
  if not halves:
    return "–"
  v = [h["half_life"] for h in halves]
  censored = sum(bool(h["censored"]) for h in halves)
  if censored == len(v):   # none fell halfway by its longest delay: lower bounds only
    return f"≥ {min(v):.0f} (all {len(v)} nets censored at the longest delay evaluated)"
  return (f"{np.median(v):.0f} ({min(v):.0f}-{max(v):.0f}, {len(v)} nets"
          + (f"; {censored} censored, entered as lower bounds" if censored else "") + ")")


def _rows_overview(row):
  row("networks (finished / grid)", lambda r: f"{r['n']} / {r['of']}")
  row("train steps", lambda r: ", ".join(sorted({str(x["config"].train_steps)
                                                 for x in r["ev"].have})))
  row("report accuracy by delay: mean over the networks (min-max)", _accuracy_by_delay)
  row("memory half-life: median over the networks (min-max)", _half_lives)
  row("slow-point speed by recipe: median over the networks of each network's median over its "
      "classes (min-max)", _speeds)


def _rows_a(row):
  row("(a) verdict (every network ≥ the solved level at the training delays)", lambda r: (
      _verdict("a")(r) + " (level {:.3g}{})".format(
          r["claims"]["a"]["threshold"],
          ", relative to the ceiling" if r["claims"]["a"].get("relative") else "")))
  row("(a) worst training-delay accuracy", lambda r: f"{min(r['claims']['a']['min_accuracy'].values()):.3f}")
  row("(a) pooled training-delay accuracy, range", lambda r: "{:.3f}-{:.3f}".format(
      *_range([v["accuracy"] for v in r["claims"]["a"]["pooled_training_accuracy"].values()])))
  row("(a) networks ≥ the high level at every training delay", lambda r: "{} of {} (≥ {:.4g})".format(
      sum(v >= _high(r) for v in r["claims"]["a"]["min_accuracy"].values()),
      len(r["claims"]["a"]["min_accuracy"]), _high(r)))
  row("(a) networks whose pooled 95% interval reaches the high level", lambda r: "{} of {}".format(
      sum(v["ci95"][1] >= _high(r)
          for v in r["claims"]["a"]["pooled_training_accuracy"].values()),
      len(r["claims"]["a"]["pooled_training_accuracy"])))
  row("(a) measured ceiling (the same read-in as a plain classifier, same image budget)",
      lambda r: "{:.4f} ({} runs)".format(r["claims"]["a"]["ceiling"]["mean"],
                                         r["claims"]["a"]["ceiling"]["runs"]))


def _rows_b_c(row):
  row("(b) verdict (a long delay's accuracies span ≥ 0.2)", _verdict("b"))
  row("(b) span at each long delay", lambda r: ", ".join(
      f"{d}: {v:.3f}" for d, v in sorted(r["claims"]["b"]["spans"].items(), key=lambda kv: int(kv[0]))))
  row("(b) GRU vs LSTM at the longest delay (Mann-Whitney p)", lambda r: _effect(r, "arch"))
  row("(b) DeCu vs VoCu at the longest delay (Mann-Whitney p)", lambda r: _effect(r, "protocol"))
  row("(c) verdict (log speed vs per-class accuracy, Spearman p < 0.05)", _verdict("c"))
  row("(c) ρ at its test delay (n, p)", lambda r: "{} at {} (n {}, p {})".format(
      sig.fmt(r["claims"]["c"]["correlations"][r["claims"]["c"]["key"]]["spearman"]),
      r["claims"]["c"]["key"], r["claims"]["c"]["correlations"][r["claims"]["c"]["key"]]["n"],
      sig.fmt_p(r["claims"]["c"]["correlations"][r["claims"]["c"]["key"]]["spearman_p"])))
  row("(c) best predictor at its test delay", lambda r: "{} at {}".format(
      r["claims"]["c"]["predictors"]["best"].get(r["claims"]["c"]["key"]), r["claims"]["c"]["key"]))


def _rows_d(row, results):
  row("(d) verdict (both penalties > control at the test delay, Wilcoxon p < 0.05)",
      lambda r: _verdict("d")(r) + " at {}".format(r["claims"]["d"]["delay"]))
  for which in ("test", "longest"):
    for m in ("slow_points", "center_mass"):
      row(f"(d) {m} − control at the {which} delay",
          lambda r, which=which, m=m: "{}: {}".format(
              _d_delay(r, which), _fmt_diff(r["claims"]["d"]["table"][_d_delay(r, which)]["diffs"][m])))
  groups = sorted({g for r in results.values() if r["claims"]["d"]
                   for g in r["claims"]["d"].get("by_group", {})})
  for g in groups:
    row(f"(d) {g}: slow_points / center_mass − control at the test delay", lambda r, g=g: " / ".join(
        f"{sig.signed(v['mean'])} ({v['positive']}/{v['n']})"
        for v in (r["claims"]["d"]["by_group"][g][m] for m in ("slow_points", "center_mass"))))
  for m in ("slow_points", "center_mass"):
    row(f"(d) {m} cost at the training delays (mean, worst)", lambda r, m=m: "{}, {}".format(
        sig.signed(r["claims"]["d"]["training_delay_cost"][m]["mean"]),
        sig.signed(r["claims"]["d"]["training_delay_cost"][m]["worst"])))
  row("(d) control's room at the test delay (pooled training-delay accuracy − control)", lambda r: (
      "{:.3f} ({:.3f} to {:.3f})".format(*[r["claims"]["d"]["control_headroom"][k]
                                          for k in ("mean", "min", "max")])
      if "control_headroom" in r["claims"]["d"] else _room(r)))


def _rows_e(row):
  row("(e) verdict (≥ 75% of later VoCu classes born at their introduction)", _verdict("e"))
  row("(e) born at introduction, by the read-out", lambda r: "{} of {}".format(
      r["claims"]["e"]["born_at_introduction"], r["claims"]["e"]["later_classes"]))
  row("(e) born at introduction, by the nearest class centre", lambda r: "{} of {}".format(
      r["claims"]["e"]["born_at_introduction_by_centre"], r["claims"]["e"]["later_classes"]))


def _high(r):
  """Claim (a)'s high level of a grid (0.98, or its ceiling's lowest run where that is lower)."""
  return r["claims"]["a"].get("high", evd.HIGH)


def _d_delay(r, which):
  """Claim (d)'s test delay of a grid, or the longest delay of its table where the fine-tunings
  were compared (a str; the parents may be evaluated further, e.g. by --mode=memory)."""
  d = r["claims"]["d"]
  if which == "test":
    return str(d["delay"])
  compared = [k for k, v in d["table"].items() if any(x["n"] for x in v["diffs"].values())]
  return max(compared or d["table"], key=int)


def _range(v):
  return min(v), max(v)


def _effect(r, kind):
  effects = r["claims"]["b"]["effects"]
  key = max((k for k in effects if k.startswith(kind + "@")), key=lambda k: int(k.split("@")[1]))
  e = effects[key]
  return "{}: {} {:.3f} vs {} {:.3f} (p {})".format(
      key.split("@")[1], e["levels"][0], e["means"][0], e["levels"][1], e["means"][1],
      sig.fmt_p(e["p"]))


def _room(r):
  """The control's room at the test delay when (d) held (the report adds it only when it did
  not)."""
  ev = r["ev"]
  vals = []
  for x in ev.have:
    c = evd.acc(x, r["claims"]["d"]["delay"], "control")
    if c is not None:
      vals.append(evd.pooled_training_accuracy(x, ev.train_delays)[0] - c)
  return "{:.3f} ({:.3f} to {:.3f})".format(sum(vals) / len(vals), min(vals), max(vals))


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("grids", nargs="+", help="name=folder, e.g. small=experiments/study_small")
  p.add_argument("--out", default="")
  args = p.parse_args(argv)
  results = {}
  for item in args.grids:
    name, sep, folder = item.partition("=")
    if not sep or not os.path.isdir(folder):
      p.error(f"expected name=folder with an existing folder, got {item!r}")
    numbers, n, of, ev = claims(folder)
    results[name] = dict(claims=numbers, n=n, of=of, ev=ev)
  lines = rows(results)
  text = "\n".join(lines) + "\n"
  print(text, end="")
  if args.out:
    artifacts.write_text(args.out, text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
