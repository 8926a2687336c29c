"""Continued training at another learning rate: does a network's memory follow the rate?

The paper's recipe (Adam at 1e-5, or 1e-4 compressed) gives networks that forget within a few
hundred steps; the quick recipe (3e-3) gives networks that remember past delay 1000
(experiments/memory_length.md). This experiment takes a finished network and continues its
training on the final task (all classes, delays up to 20: a `control` fine-tuning, no speed
penalty) for N updates at rate R, for each R:N of `--runs`, with a fresh Adam, then follows each
continued network's memory until it fades (--mode=memory). If memory length is set by what the
rate lets training reach, a short continuation at the quick rate should lengthen it; if it is
set by the early history of training (the curriculum the network grew through), it should not.
Two continuations with about the same summed rate (R x N) but rates three times apart tell the
rate per update from the distance the weights may travel.

  run:    for each R:N, the two documented commands (resumable; finished ones kept)
            python3 -m haviv_tf.main --mode=finetune --parent=P --finetune=control \\
                --learning_rate=R --steps=N --workdir=OUT/<parent name>/lrR_nN
            python3 -m haviv_tf.main --mode=memory --workdir=OUT/<parent name>/lrR_nN
          (and --mode=memory on the parent, if it has no half-lives yet)
  report: one table per parent from the runs' results.json, into OUT/tables.md and
          OUT/rate_switch.json
  save:   each continued run's config.json, results.json and slow_points.npz copied to
          DEST/<parent name>/lrR_nN, the machine's paths taken out (experiments/
          relative_paths.py), so that `report --out=DEST` re-makes the tables from them
"""

import argparse
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from haviv_tf.base import artifacts  # pylint: disable=g-import-not-at-top,wrong-import-position
from haviv_tf.base import config as config_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from haviv_tf.probes import memory  # pylint: disable=g-import-not-at-top,wrong-import-position
from haviv_tf.study import correlations  # pylint: disable=g-import-not-at-top,wrong-import-position
from haviv_tf.training import schedules  # pylint: disable=g-import-not-at-top,wrong-import-position
import common  # pylint: disable=g-import-not-at-top,wrong-import-position
import relative_paths  # pylint: disable=g-import-not-at-top,wrong-import-position

SAVED = ("config.json", "results.json", "slow_points.npz")

TRAINING_DELAYS = (5, 10, 19)
LONG_DELAYS = (50, 100, 200, 500, 1000)


def run_dirs(out, parent, runs):
  name = os.path.basename(os.path.normpath(parent))
  return [(r, n, os.path.join(out, name, f"lr{r:g}_n{n}")) for r, n in runs]


def _main(args, *flags):
  cmd = [sys.executable, "-m", "haviv_tf.main", *flags]
  print("$ " + " ".join(cmd[1:]), flush=True)
  if subprocess.run(cmd, check=False).returncode:
    raise SystemExit(f"error: `{' '.join(cmd[2:])}` failed (see its error above)")


def _has_half_lives(workdir):
  path = os.path.join(workdir, artifacts.RESULTS_FILE)
  return os.path.exists(path) and bool(artifacts.read_json(path).get("memory_half_life"))


def _followed(workdir, max_delay):
  """Whether --mode=memory would add nothing: the run is evaluated to `max_delay`, or to a
  delay beyond a training trial where it is within noise of chance (where that mode stops)."""
  if not _has_half_lives(workdir):
    return False
  results = artifacts.read_json(os.path.join(workdir, artifacts.RESULTS_FILE))
  seq_len = artifacts.read_json(os.path.join(workdir, artifacts.CONFIG_FILE))["config"]["seq_len"]
  acc, trials = results["accuracy_by_delay"], results["trials_per_delay"]
  delays = sorted(int(d) for d in acc)
  return delays[-1] >= max_delay or any(
      d >= seq_len and memory.at_chance(acc[str(d)], trials[str(d)]) for d in delays)


def run(args):
  extra = [f"--data_dir={args.data_dir}"] if args.data_dir else []
  for parent in args.parents:
    if not _followed(parent, args.max_delay):
      _main(args, "--mode=memory", f"--workdir={parent}", f"--max_delay={args.max_delay}", *extra)
    for rate, n, workdir in run_dirs(args.out, parent, args.runs):
      if not os.path.exists(os.path.join(workdir, artifacts.RESULTS_FILE)):
        # (the fine-tuning reads its data as the parent's config.json records it)
        _main(args, "--mode=finetune", f"--parent={parent}", "--finetune=control",
              f"--learning_rate={rate:g}", f"--steps={n}", f"--workdir={workdir}")
      if not _followed(workdir, args.max_delay):
        _main(args, "--mode=memory", f"--workdir={workdir}", f"--max_delay={args.max_delay}",
              *extra)


def row(workdir, label):
  """One table row of a finished, memory-measured run (None where it has no such record)."""
  results = artifacts.read_json(os.path.join(workdir, artifacts.RESULTS_FILE))
  cfg = config_lib.Config.from_record(
      artifacts.read_json(os.path.join(workdir, artifacts.CONFIG_FILE))["config"])
  acc = results.get("accuracy_by_delay", {})
  lived = correlations.run_half_lives(cfg, results) or {}   # today's rule, as every report
  overall = lived.get("overall") or {}
  per_class = lived.get("per_class") or {}
  kept = sum(1 for v in per_class.values() if v.get("status") == "censored")
  lives = [v["half_life"] for v in per_class.values() if v.get("half_life") is not None]
  return dict(
      run=label, learning_rate=cfg.learning_rate, steps=cfg.train_steps,
      summed_rate=schedules.summed_rate(cfg),
      training_delay_accuracy=float(np.mean([acc[str(d)] for d in TRAINING_DELAYS])),
      accuracy={str(d): acc.get(str(d)) for d in LONG_DELAYS},
      half_life=overall.get("half_life"), censored=bool(overall.get("censored")),
      median_class_half_life=float(np.median(lives)) if lives else None,
      classes_kept=kept, longest_delay=overall.get("longest_delay"),
      median_speed=common.median_speeds(workdir, results).get("default"),
      tenth_eigenvalue=common.leading_modes(workdir, results))


def _fmt(v, spec):
  return "n/a" if v is None else format(v, spec)


def report(args):
  table, lines = {}, ["# Continued training at another learning rate", ""]
  for parent in args.parents:
    name = os.path.basename(os.path.normpath(parent))
    rows = [row(parent, "parent (as trained)")]
    rows += [row(w, f"+ {n} steps at {r:g}") for r, n, w in
             run_dirs(args.out, parent, args.runs)
             if _has_half_lives(w)]
    table[name] = rows
    lines += [f"## {name}", "",
              "| run | summed rate | acc. 5-19 | " + " | ".join(f"acc. {d}" for d in LONG_DELAYS)
              + " | half-life | median class half-life | classes kept | median speed | λ₁₀ magnitude |",
              "|---" * (8 + len(LONG_DELAYS)) + "|"]
    for r in rows:
      life = _fmt(r["half_life"], ".0f") + (" (≥, censored)" if r["censored"] else "")
      lines.append(
          f"| {r['run']} | {r['summed_rate']:.3g} | {r['training_delay_accuracy']:.3f} | "
          + " | ".join(_fmt(r["accuracy"][str(d)], ".3f") for d in LONG_DELAYS)
          + f" | {life} | {_fmt(r['median_class_half_life'], '.0f')} | {r['classes_kept']} of "
          f"{config_lib.NUM_CLASSES} | {_fmt(r['median_speed'], '.2e')} | "
          f"{_fmt(r['tenth_eigenvalue'], '.4f')} |")
    lines.append("")
  lines += ["Summed rate: the learning rate summed over the run's own updates (the parent's "
            "whole training; a continuation's own steps). Accuracy: report accuracy on 1000 "
            "test trials per delay (acc. 5-19: mean over the training delays 5, 10, 19). "
            "Half-life: the delay at which report accuracy falls halfway from its training-"
            "delay level to chance (--mode=memory; censored: not reached by the longest delay "
            "evaluated). Classes kept: classes whose own half-life is censored. Median speed: "
            "the median over the classes of the slow-point speed by the default recipe. λ₁₀ magnitude: the "
            "median over the default recipe's slow points (class centres and sampled starts) "
            "of the 10th largest eigenvalue magnitude of the Jacobian of h ← F(h, x̄) there."]
  os.makedirs(args.out, exist_ok=True)
  artifacts.write_json(os.path.join(args.out, "rate_switch.json"), table)
  common.write_tables(args.out, lines)


def save(args):
  for parent in args.parents:
    for _, _, workdir in run_dirs(args.out, parent, args.runs):
      if not _has_half_lives(workdir):
        continue
      dest = os.path.join(args.dest, os.path.relpath(workdir, args.out))
      os.makedirs(dest, exist_ok=True)
      for name in SAVED:
        src = os.path.join(workdir, name)
        if not os.path.exists(src):
          continue
        if name.endswith(".json"):
          obj = relative_paths.portable(artifacts.read_json(src), args.out)
          obj = relative_paths.rewrite(obj, roots=[(os.path.dirname(os.path.abspath(parent)), "")])
          artifacts.write_json(os.path.join(dest, name), obj)
        else:
          with open(src, "rb") as f:
            artifacts.write_bytes(os.path.join(dest, name), f.read())
      print(f"saved {workdir} -> {dest}")


def _runs(text):
  """"R:N,R:N" -> [(rate, steps)]."""
  out = []
  for item in text.split(","):
    rate, _, steps = item.partition(":")
    try:
      out.append((float(rate), int(steps)))
    except ValueError:
      raise argparse.ArgumentTypeError(f"{item!r} is not RATE:STEPS (e.g. 3e-3:1000)") from None
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("mode", choices=("run", "report", "save"))
  p.add_argument("--parents", type=lambda s: s.split(","), required=True,
                 help="finished runs (workdirs), comma-separated")
  p.add_argument("--runs", type=_runs, default=_runs("1e-4:1000,1e-3:1000,3e-3:300,3e-3:1000"),
                 help="the continuations, RATE:STEPS comma-separated (default: %(default)s)")
  p.add_argument("--out", required=True, help="folder of the continued runs and the tables")
  p.add_argument("--max_delay", type=int, default=10_000, help="--mode=memory's longest delay")
  p.add_argument("--data_dir", default="", help="the parents' data (full MNIST / CIFAR-10)")
  p.add_argument("--dest", help="save: where the runs' files go (e.g. experiments/rate_switch)")
  args = p.parse_args(argv)
  for parent in args.parents:
    if not os.path.exists(os.path.join(parent, artifacts.RESULTS_FILE)):
      raise SystemExit(f"error: {parent} is not a finished run (no {artifacts.RESULTS_FILE})")
  if any(not 0 < r < 1 or n <= 0 for r, n in args.runs):
    raise SystemExit("error: every --runs rate must lie in (0, 1) and its steps be positive")
  if args.mode == "save" and not args.dest:
    raise SystemExit("error: save needs --dest")
  {"run": run, "report": report, "save": save}[args.mode](args)


if __name__ == "__main__":
  main()
