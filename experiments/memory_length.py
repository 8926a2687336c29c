"""How training sets memory length: each variant's networks against a reference's, seed by seed.

  python3 experiments/memory_length.py RUNS_paper_mnist RUNS_paper_compressed --reference=paper \
      --out memory_length.md --json memory_length.json --png memory_length.png

Each folder is a sweep root (launch/sweep.py --root) or a committed grid folder
(experiments/grid_files.py save: `runs/` with grid.json). Its finished networks (results.json
with slow points) are read; nothing is trained or evaluated here.

A network's *variant* is its preset and the training overrides of its grid spec, named after
haviv_tf.study.sweep's ABLATION_SWITCHES, ABLATION_LR, PAPER_COMPRESSED or PAPER_QUICK_SCHEDULE
where they match (`quick:readout_sigmoid`, `paper:compressed`, `paper:quick_schedule`), else listed (`quick:train_steps=9000`);
evaluation-only overrides (EVAL_ONLY) are left out. A variant's networks are paired with the
reference's by data set, protocol, cell and seed; `--reference_of=VARIANT=REFERENCE` gives a
variant its own reference (a switch that only acts on top of another: the authors' class mask
needs their sigmoid read-out), in a section of its own. Per network: the report accuracy pooled over
the evaluated training delays (<= seq_len - 1), the memory half-life (haviv_tf.probes.memory;
`>=` where censored at the longest delay evaluated), the median of the per-class half-lives,
and the median slow-point speed over the classes (the run's own recipe, named; a pair's speeds
are compared in a recipe both networks were searched with, the reference's own first, a
further recipe read from slow_points_<recipe>/results.json), and the median over the default
recipe's slow points of the 10th largest Jacobian eigenvalue magnitude (λ₁₀: how many
directions around them are nearly marginal; common.leading_modes). Per variant and
network type: each pair's difference from the reference (accuracy: variant - reference;
half-life and speed: log2 and log10 ratios), their mean and range over the seeds, and whether
that mean lies within the reference's own spread over its seeds (max - min of the same
measure): the rule by which a variant "gives the same networks".

Across every network read, whatever its variant: memory against the *summed learning rate*,
the sum of the learning rate over the run's optimizer updates (haviv_tf.training.schedules'
schedule of its config; Adam moves each weight by about the learning rate per update, so the
sum bounds how far training can move a weight). Per variant and network type its value and
the half-lives; over the networks whose half-life is not censored, Spearman's rho between the
two with a bootstrap interval over networks (a censored half-life is only a lower bound set by
the longest delay evaluated, so ranking it would measure the evaluation, not the network). An observation across grids
that differ in more than their schedules, not an ablation: the section says so.
"""

import argparse
import math
import os
import sys

import numpy as np
from scipy import stats

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from haviv_tf.analysis import plotting  # pylint: disable=g-import-not-at-top,wrong-import-position
from haviv_tf.base import artifacts  # pylint: disable=g-import-not-at-top,wrong-import-position
from haviv_tf.study import correlations  # pylint: disable=g-import-not-at-top,wrong-import-position
from haviv_tf.study import significance as sig  # pylint: disable=g-import-not-at-top,wrong-import-position
from haviv_tf.study import sweep  # pylint: disable=g-import-not-at-top,wrong-import-position
from haviv_tf.training import schedules  # pylint: disable=g-import-not-at-top,wrong-import-position
import common  # pylint: disable=g-import-not-at-top,wrong-import-position

EVAL_ONLY = ("eval_delays", "eval_trials")
NAMED = dict(compressed=sweep.PAPER_COMPRESSED, lr_tenth_x10=sweep.ABLATION_LR,
             quick_schedule=sweep.PAPER_QUICK_SCHEDULE,
             **{k: v for k, v in sweep.ABLATION_SWITCHES.items() if v})
# (key, what it is, how a pair's difference is taken)
MEASURES = (("train_accuracy", "accuracy at the training delays", "difference"),
            ("half_life", "memory half-life", "log2 ratio"),
            ("class_half_life", "median class half-life", "log2 ratio"),
            ("speed", "median slow-point speed", "log10 ratio"))


def variant_name(spec) -> str:
  """The preset and the training overrides of a RunSpec, named where a grid names them."""
  train = {k: v for k, v in spec.overrides if k not in EVAL_ONLY}
  for name, switch in NAMED.items():
    if train == dict(switch):
      return f"{spec.preset}:{name}"
  if not train:
    return spec.preset
  return spec.preset + ":" + ",".join(f"{k}={v}" for k, v in sorted(train.items()))


def network(workdir, spec) -> dict:
  """One finished network's measures (see the module docstring)."""
  cfg, res = correlations.load_run(workdir)
  train_delays = [d for d in res["accuracy_by_delay"] if int(d) <= cfg.seq_len - 1]
  halves = correlations.run_half_lives(cfg, res) or {}
  overall = halves.get("overall") or {}
  per_class = [h for h in (halves.get("per_class") or {}).values()
               if h and h.get("half_life") is not None]
  recipe = res.get("slow_points_recipe") or "default"
  by_recipe = common.median_speeds(workdir, res)
  return dict(
      name=spec.name, variant=variant_name(spec), dataset=spec.dataset, protocol=spec.protocol,
      arch=spec.arch, seed=spec.seed, recipe=recipe,
      train_accuracy=(float(np.mean([res["accuracy_by_delay"][d] for d in train_delays]))
                      if train_delays else None),
      half_life=overall.get("half_life"), half_life_censored=bool(overall.get("censored")),
      class_half_life=(float(np.median([h["half_life"] for h in per_class]))
                       if per_class else None),
      censored_classes=sum(bool(h["censored"]) for h in per_class),
      classes=len(per_class),
      speed=by_recipe[recipe], speed_by_recipe=by_recipe, lr_sum=schedules.summed_rate(cfg),
      tenth_eigenvalue=common.leading_modes(workdir, res))


def collect(folders) -> list:
  """Every finished network of the folders' grids (unfinished ones are left out)."""
  nets = []
  for folder in folders:
    grid_dir, runs = common.grid_folders(folder)
    try:
      _, specs = sweep.load_grid(grid_dir)
    except artifacts.RunError as e:
      raise SystemExit(f"error: {e}") from None
    for spec in specs:
      workdir = os.path.join(runs, spec.name)
      try:
        nets.append(network(workdir, spec))
      except artifacts.RunError:
        continue
  return nets


def _common_recipe(n, r):
  """The slow-point recipe both networks were searched with: the reference's own if the
  variant has it too, else the variant's own if the reference has it; None if none."""
  nb, rb = n.get("speed_by_recipe") or {}, r.get("speed_by_recipe") or {}
  for c in (r["recipe"], n["recipe"]):
    if nb.get(c) is not None and rb.get(c) is not None:
      return c
  return None


def _diff(key, v, r):
  if v is None or r is None:
    return None
  if key == "train_accuracy":
    return v - r
  if v <= 0 or r <= 0:
    return None
  return math.log2(v / r) if key != "speed" else math.log10(v / r)


def _variants_found(nets) -> str:
  return ", ".join(sorted({n["variant"] for n in nets})) or "none"


def parse_reference_of(specs, nets, reference=None) -> dict:
  """{variant: its own reference} from `--reference_of` values VARIANT=REFERENCE. Variant names
  hold '=' themselves (`quick:train_steps=9000`), so the value is split at the '=' whose two
  sides are both variants of the networks read (one such '=', else an error)."""
  names = {n["variant"] for n in nets}
  out = {}
  for spec in specs or ():
    splits = [(spec[:i], spec[i + 1:]) for i, ch in enumerate(spec) if ch == "="]
    found = [(v, r) for v, r in splits if v in names and r in names and v != r]
    if len(found) > 1:
      raise SystemExit(f"error: --reference_of={spec} is ambiguous: "
                       + " or ".join(f"{v!r} against {r!r}" for v, r in found))
    if not found:
      raise SystemExit(f"error: --reference_of={spec}: expected VARIANT=REFERENCE, two different "
                       f"variants of the networks read; variants found: {_variants_found(nets)}")
    variant, ref = found[0]
    if variant == reference:
      raise SystemExit(f"error: --reference_of={spec}: {variant!r} is --reference itself")
    if variant in out:
      raise SystemExit(f"error: --reference_of names {variant!r} twice")
    out[variant] = ref
  return out


def compare(nets, reference: str, reference_of=None) -> list:
  """Per variant and network type: the pairs' differences from its reference (see docstring):
  `reference_of` {variant: reference} names a variant's own, else `reference`."""
  kind = lambda n: (n["dataset"], n["protocol"], n["arch"])  # pylint: disable=unnecessary-lambda-assignment
  reference_of = dict(reference_of or {})
  if not any(n["variant"] == reference for n in nets):
    raise SystemExit(f"error: no finished network of the reference variant {reference!r}; "
                     f"variants found: {_variants_found(nets)}")
  rows = []
  for variant in sorted({n["variant"] for n in nets} - {reference}):
    own = reference_of.get(variant, reference)
    ref = {kind(n) + (n["seed"],): n for n in nets if n["variant"] == own}
    for k in sorted({kind(n) for n in nets if n["variant"] == variant}):
      pairs = [(n, ref[k + (n["seed"],)]) for n in nets
               if n["variant"] == variant and kind(n) == k and k + (n["seed"],) in ref]
      if not pairs:   # no network of this type and seed in the reference
        continue
      recipes = [_common_recipe(n, r) for n, r in pairs]
      row = dict(variant=variant, reference=own, dataset=k[0], protocol=k[1], arch=k[2],
                 seeds=[n["seed"] for n, _ in pairs],
                 censored_pairs=sum(n["half_life_censored"] or r["half_life_censored"]
                                    for n, r in pairs),
                 same_recipe=all(c is not None for c in recipes),
                 speed_recipes=sorted({c for c in recipes if c is not None}))
      ref_vals = {key: [r[key] for r in ref.values() if kind(r) == k and r[key] is not None]
                  for key, _, _ in MEASURES}
      if len(row["speed_recipes"]) == 1:   # the reference's spread in that recipe
        c = row["speed_recipes"][0]
        ref_vals["speed"] = [r["speed_by_recipe"][c] for r in ref.values()
                             if kind(r) == k and r["speed_by_recipe"].get(c) is not None]
      for key, _, _ in MEASURES:
        if key == "speed":   # each pair in a recipe both networks were searched with
          values = [(n["speed_by_recipe"][c], r["speed_by_recipe"][c]) if c is not None
                    else (n[key], r[key]) for (n, r), c in zip(pairs, recipes)]
        else:
          values = [(n[key], r[key]) for n, r in pairs]
        d = [x for x in (_diff(key, v, w) for v, w in values) if x is not None]
        vals = ref_vals[key]
        spread = (_diff(key, max(vals), min(vals)) if len(vals) >= 2 else None)
        mean = float(np.mean(d)) if d else None
        row[key] = dict(mean=mean, min=min(d) if d else None, max=max(d) if d else None,
                        n=len(d), pairs=d, ci=_t_interval(d), reference_spread=spread,
                        within_spread=(None if mean is None or spread is None
                                       else abs(mean) <= spread))
      rows.append(row)
  return rows


def _t_interval(d, level=0.95):
  """The `level` t-interval of the mean of the seed pairs' differences [low, high]; None with
  fewer than two pairs (one pair has no spread to estimate)."""
  if len(d) < 2:
    return None
  m, se = float(np.mean(d)), float(np.std(d, ddof=1)) / math.sqrt(len(d))
  h = float(stats.t.ppf((1 + level) / 2, len(d) - 1)) * se
  return [m - h, m + h]


def _f(v, fmt):
  return "–" if v is None else format(v, fmt)


def markdown(nets, rows, reference) -> str:
  out = ["## Networks", "",
         "| variant | network | seed | accuracy at training delays | half-life | median class "
         "half-life (censored classes) | median slow-point speed (recipe) | λ₁₀ magnitude |",
         "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
  for n in sorted(nets, key=lambda n: (n["variant"], n["protocol"], n["arch"], n["seed"])):
    hl = ("≥ " if n["half_life_censored"] else "") + _f(n["half_life"], ".0f")
    # The median of the class half-lives is a lower bound once half of them are.
    chl = ("≥ " if 2 * n["censored_classes"] >= n.get("classes", 0) > 0 else "") + _f(
        n["class_half_life"], ".0f")
    out.append(f"| {n['variant']} | {n['dataset']} {n['protocol']} {n['arch']} | {n['seed']} | "
               f"{_f(n['train_accuracy'], '.3f')} | {hl} | {chl} "
               f"({n['censored_classes']}) | {_f(n['speed'], '.2e')} ({n['recipe']}) | "
               f"{_f(n.get('tenth_eigenvalue'), '.4f')} |")
  unpaired = sorted({n["variant"] for n in nets} - {reference} - {r["variant"] for r in rows})
  if unpaired:   # no network of the same cell and seed in its reference
    out += ["", "Not compared (no network of the same cell and seed in its reference): "
            + ", ".join(unpaired) + "."]
  refs = [reference] + sorted({r["reference"] for r in rows} - {reference})
  for i, ref in enumerate(refs):
    out += ["", f"## Against {ref}", ""]
    if i == 0:
      out += ["Each cell: mean over the seed pairs [min, max], then with two or more pairs the "
              "95% t-interval of that mean over the seeds (`CI`: an effect is established where "
              "it excludes 0); `=` where the mean lies within the reference's own spread over its "
              "seeds, `≠` where it does not (the rule for the same networks). Half-lives and "
              "speeds as log2 and log10 ratios variant / reference; a pair with a censored "
              "half-life gives a bound, not a ratio (last column).", ""]
    else:
      out += [f"The variants compared against {ref} (`--reference_of`); cells as above.", ""]
    out += _comparison_table([r for r in rows if r["reference"] == ref])
  return "\n".join(out) + "\n"


def _comparison_table(rows) -> list:
  out = ["| variant | network | seeds | " + " | ".join(f"{t} ({how})" for _, t, how in MEASURES)
         + " | pairs with a censored half-life |",
         "| --- | --- | --- | " + " | ".join("---:" for _ in MEASURES) + " | ---: |"]
  for r in rows:
    cells = []
    for key, _, _ in MEASURES:
      m = r[key]
      mark = {True: " =", False: " ≠", None: ""}[m["within_spread"]]
      ci = ("" if not m.get("ci") else
            f"; CI {m['ci'][0]:+.3f} to {m['ci'][1]:+.3f}")
      cells.append("–" if m["mean"] is None else
                   f"{m['mean']:+.3f} [{m['min']:+.3f}, {m['max']:+.3f}]{ci}{mark}")
    recipe = (f" (speeds: {', '.join(r['speed_recipes'])} recipe)" if r["same_recipe"]
              else " (slow-point recipes differ)")
    out.append(f"| {r['variant']} | {r['dataset']} {r['protocol']} {r['arch']}{recipe} | "
               f"{', '.join(map(str, r['seeds']))} | " + " | ".join(cells)
               + f" | {r['censored_pairs']} |")
  return out


def lr_section(nets, resamples=2000, seed=0) -> tuple:
  """(numbers, Markdown lines): memory against the summed learning rate (module docstring)."""
  lines = ["## Memory against the summed learning rate", "",
           "The sum of the learning rate over each run's updates (its schedule), against its "
           "memory half-life. Across grids this compares recipes that differ in more than their "
           "schedules; only pairs of variants that differ in the schedule alone (e.g. "
           "paper:compressed against paper, quick:lr_tenth_x10 against quick) isolate it.", "",
           "| variant | network | networks | summed learning rate | half-lives (≥: censored) |",
           "| --- | --- | ---: | ---: | --- |"]
  groups = {}
  for n in nets:
    groups.setdefault((n["variant"], n["dataset"], n["protocol"], n["arch"]), []).append(n)
  for (variant, dataset, protocol, arch), group in sorted(groups.items()):
    sums = sorted({round(n["lr_sum"], 4) for n in group})
    halves = ", ".join(("≥ " if n["half_life_censored"] else "") + _f(n["half_life"], ".0f")
                       for n in sorted(group, key=lambda n: n["seed"]))
    lines.append(f"| {variant} | {dataset} {protocol} {arch} | {len(group)} | "
                 f"{', '.join(f'{v:g}' for v in sums)} | {halves} |")
  have = [n for n in nets if n["half_life"] and n["lr_sum"] > 0 and not n["half_life_censored"]]
  numbers = dict(networks=len(have),
                 censored=sum(bool(n["half_life"]) and n["half_life_censored"] for n in nets))
  # Sums that agree to 3 significant figures are one sum (a compressed schedule keeps the sum
  # up to the rounding of its scaled decay steps): ranks are not drawn from rounding.
  same = lambda v: float(f"{v:.3g}")  # pylint: disable=unnecessary-lambda-assignment
  if len(have) >= 3 and len({same(n["lr_sum"]) for n in have}) >= 2:
    x = np.log([same(n["lr_sum"]) for n in have])
    y = np.log([n["half_life"] for n in have])
    # One pair per network: resampling networks is resampling pairs (clusters make it say so).
    ci = sig.spearman_with_ci(x, y, num_boot=resamples, seed=seed, clusters=np.arange(len(x)))
    numbers.update(rho=ci["rho"], ci95=[ci["low"], ci["high"]])
    interval = (f"95% bootstrap interval over networks [{_f(ci['low'], '+.2f')}, "
                f"{_f(ci['high'], '+.2f')}], {resamples} resamples" if sig.interval_shown(ci)
                else f"no interval with fewer than {sig.MIN_CLUSTERS} networks")
    lines += ["", f"Spearman's rho between the summed learning rate and the half-life over the "
              f"{len(have)} networks whose half-life is measured (the "
              f"{numbers['censored']} censored ones left out): **{ci['rho']:+.2f}** "
              f"({interval})."]
  else:
    lines += ["", f"No rank correlation: {len(have)} networks with a measured (uncensored) "
              f"half-life, {numbers['censored']} censored; it needs 3 with two summed learning "
              "rates or more (sums equal to 3 significant figures count as one)."]
  return numbers, lines + [""]


def lr_figure(nets):
  """Half-life against the summed learning rate, one marker colour per variant (open: a
  censored half-life, a lower bound)."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(5.5, 4), dpi=100)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot(1, 1, 1)
  for i, variant in enumerate(sorted({n["variant"] for n in nets})):
    group = [n for n in nets if n["variant"] == variant and n["half_life"]]
    color = f"C{i % 10}"
    for censored in (False, True):
      sub = [n for n in group if n["half_life_censored"] == censored]
      if sub:
        ax.scatter([n["lr_sum"] for n in sub], [n["half_life"] for n in sub], s=24,
                   facecolors="none" if censored else color, edgecolors=color,
                   label=variant + (" (censored)" if censored else ""))
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("summed learning rate over training")
  ax.set_ylabel("memory half-life (steps of delay)")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  return fig


def figure(rows, reference):
  """One panel per measure: each variant-and-network row's seed pairs (dots), their mean (bar)
  and the reference's own spread over its seeds (grey band around 0)."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(3.2 * len(MEASURES), 0.45 * len(rows) + 1.6), dpi=100)
  FigureCanvasAgg(fig)
  labels = [f"{r['variant']} {r['protocol']} {r['arch']}"
            + ("" if r["reference"] == reference else f" (vs {r['reference']})") for r in rows]
  for i, (key, title, how) in enumerate(MEASURES):
    ax = fig.add_subplot(1, len(MEASURES), i + 1)
    for y, r in enumerate(rows):
      pairs, spread = r[key]["pairs"], r[key]["reference_spread"]
      if spread is not None:   # the reference's own spread over its seeds, around 0
        ax.fill_betweenx([y - 0.35, y + 0.35], -spread, spread, color="grey", alpha=0.2, lw=0)
      ax.scatter(pairs, [y] * len(pairs), s=16, color="#1f77b4", alpha=0.7)
      if r[key]["mean"] is not None:
        ax.plot([r[key]["mean"]] * 2, [y - 0.3, y + 0.3], color="#d62728")
    ax.axvline(0.0, color="grey", lw=0.8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels if i == 0 else [""] * len(rows), fontsize=7)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_title(f"{title}\n({how} vs {reference})", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(True, axis="x", alpha=0.3)
  fig.tight_layout()
  return fig


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("folders", nargs="+", help="sweep roots or committed grid folders")
  p.add_argument("--reference", required=True, help="the variant the others are compared with "
                 "(e.g. paper, quick)")
  p.add_argument("--reference_of", action="append", default=[], metavar="VARIANT=REFERENCE",
                 help="compare VARIANT against REFERENCE instead of --reference (a switch that "
                 "needs another: quick:readout_sigmoid_mask_authors=quick:readout_sigmoid); "
                 "repeatable")
  p.add_argument("--out", default=None, help="write the Markdown tables here")
  p.add_argument("--json", default=None, help="write the networks and the comparison here")
  p.add_argument("--png", default=None, help="draw the comparison here (a panel per measure)")
  p.add_argument("--lr_png", default=None,
                 help="draw the half-lives against the summed learning rate here")
  args = p.parse_args(argv)
  for folder in args.folders:
    if not os.path.isdir(folder):
      raise SystemExit(f"error: {folder} is not a folder")
  nets = collect(args.folders)
  reference_of = parse_reference_of(args.reference_of, nets, args.reference)
  rows = compare(nets, args.reference, reference_of)
  lr_numbers, lr_lines = lr_section(nets)
  text = markdown(nets, rows, args.reference) + "\n" + "\n".join(lr_lines)
  print(text, end="")
  if args.out:
    artifacts.write_text(args.out, text)
  if args.png and rows:
    plotting.save_png(figure(rows, args.reference), args.png)
  if args.lr_png:
    plotting.save_png(lr_figure(nets), args.lr_png)
  if args.json:
    artifacts.write_json(args.json, dict(reference=args.reference, reference_of=reference_of,
                                         networks=nets,
                                         comparison=rows, lr=lr_numbers,
                                         folders=args.folders))


if __name__ == "__main__":
  main()
