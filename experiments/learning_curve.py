"""Learning curves from a run's training snapshots: accuracy at the training and long delays.

  # train a long run (its history snapshots are the curve's points), e.g.
  python3 -m haviv_tf.main --dataset=mnist --protocol=decu --arch=gru --preset=quick \\
      --train_steps=12000 --seed=20 --workdir=RUN
  # evaluate every snapshot (resumable: finished snapshots are kept in the JSON)
  python3 experiments/learning_curve.py run --runs=RUN[,RUN...] [--delays=19,200,500] \\
      [--trials=500] [--out=experiments/learning_curve]
  # table and figure from the JSON
  python3 experiments/learning_curve.py report [--out=experiments/learning_curve]
  # the runs side by side against the learning rate summed up to each snapshot, a panel per
  # delay (runs whose schedule the JSON holds: re-running `run` on a run adds it)
  python3 experiments/learning_curve.py report --x=lr_sum [--out=...]

A run keeps model snapshots at step 0, on a cadence (250 steps, doubling when more than 32
accumulate), at every curriculum stage change and at the end (checkpoints.History). Each is read
into the run's model and evaluated on the run's test trials with the same seed, so the points
of one curve differ only by the weights. All classes are evaluated at every point, also while
a vocabulary curriculum has shown only some of them.
"""

import argparse
import dataclasses
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from haviv_tf.base import artifacts  # pylint: disable=g-import-not-at-top
import common  # pylint: disable=g-import-not-at-top  (experiments/common.py)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "learning_curve")
JSON = "curves.json"
LR_SUM_PNG = "learning_curve_lr_sum.png"
# The config fields kept per run: what the tables name, and the learning-rate schedule
# (haviv_tf.training.schedules.SCHEDULE_FIELDS) for --x=lr_sum.
RECORDED = ("dataset", "protocol", "arch", "seed", "batch_size", "units", "preset",
            "learning_rate", "lr_schedule", "lr_decay_step", "lr_decay_factor", "warmup_steps",
            "train_steps")


def cmd_run(args):
  from haviv_tf.analysis import pipeline  # pylint: disable=g-import-not-at-top
  from haviv_tf.task import curricula  # pylint: disable=g-import-not-at-top
  from haviv_tf.probes import evaluation  # pylint: disable=g-import-not-at-top
  from haviv_tf.training import checkpoints  # pylint: disable=g-import-not-at-top
  delays = sorted({int(d) for d in args.delays.split(",") if d})
  path = os.path.join(args.out, JSON)
  store = artifacts.read_json(path) if os.path.exists(path) else {}
  for workdir in args.runs.split(","):
    workdir = os.path.normpath(workdir)
    cfg, source, run = pipeline.restore(workdir)
    name = os.path.basename(workdir)
    entry = store.setdefault(name, dict(
        config={k: getattr(cfg, k) for k in RECORDED},
        stages=[dict(step=int(s), **{k: v for k, v in st.items() if k != "step"})
                for s, st in _stages(curricula, cfg)],
        trials=args.trials, points={}))
    for k in RECORDED:   # entries written before a field was recorded
      entry["config"].setdefault(k, getattr(cfg, k))
    if entry["trials"] != args.trials:
      raise SystemExit(f"error: {name} was evaluated with --trials={entry['trials']}; "
                       "use the same count or another --out")
    evaluator = evaluation.for_config(run.model, source, cfg)
    for snap in checkpoints.History.load(workdir):
      key = str(snap["step"])
      have = entry["points"].get(key, {})
      todo = [d for d in delays if str(d) not in have]
      if not todo:
        continue
      checkpoints.read_snapshot(run.model, os.path.join(workdir, checkpoints.HISTORY_DIR, snap["path"]))
      t0 = time.time()
      res = evaluator.evaluate(todo, args.trials, cfg.seed)
      have.update(res["accuracy_by_delay"])
      entry["points"][key] = have
      artifacts.write_json(path, store)
      print(f"{name} step {key}: " + " ".join(f"{d}:{have[str(d)]:.3f}" for d in todo)
            + f" ({time.time() - t0:.0f} s)", flush=True)
  store.setdefault("_environment", artifacts.environment())
  artifacts.write_json(path, store)
  return 0


def _stages(curricula, cfg):
  """(start step, {"num_classes", "t_max"}) of each curriculum stage of cfg."""
  cur = curricula.for_config(cfg)
  starts = [0] + [int(b) for b in cur.boundaries]
  return [(s, dict(num_classes=int(n), t_max=int(t)))
          for s, n, t in zip(starts, cur.num_classes, cur.t_max)]


def summed_rates(entry, steps) -> list:
  """The learning rate summed over the updates before each snapshot step of a run, from the
  schedule fields its entry holds; None when it holds them not (an entry written before they
  were recorded)."""
  from haviv_tf.base import config as config_lib  # pylint: disable=g-import-not-at-top
  from haviv_tf.training import schedules  # pylint: disable=g-import-not-at-top
  c = entry["config"]
  if any(k not in c for k in schedules.SCHEDULE_FIELDS):
    return None
  cfg = dataclasses.replace(config_lib.preset(c["preset"], c["dataset"]),
                            **{k: c[k] for k in schedules.SCHEDULE_FIELDS})
  return [schedules.summed_rate(cfg, int(s)) for s in steps]


def _lr_sum_figure(plt, runs):
  """One panel per delay every run has: report accuracy against the summed learning rate,
  a line per run. Returns (figure, names of the runs left out)."""
  have = {name: entry for name, entry in runs.items()
          if summed_rates(entry, [0]) is not None}
  left_out = sorted(set(runs) - set(have))
  delays = sorted(set.intersection(*[{int(d) for p in e["points"].values() for d in p}
                                     for e in have.values()])) if have else []
  fig, axes = plt.subplots(1, max(len(delays), 1), figsize=(4.2 * max(len(delays), 1), 3.5),
                           squeeze=False)
  for ax, d in zip(axes[0], delays):
    for name, entry in sorted(have.items()):
      steps = sorted((s for s in entry["points"] if str(d) in entry["points"][s]), key=int)
      xs = summed_rates(entry, steps)
      keep = [i for i, x in enumerate(xs) if x > 0]   # log axis: step 0 has summed nothing
      ax.plot([xs[i] for i in keep], [entry["points"][steps[i]][str(d)] for i in keep],
              marker=".", label=name)
    ax.set_xscale("log")
    ax.set_ylim(0, 1.0)
    ax.set_title(f"delay {d}", fontsize=9)
    ax.set_xlabel("learning rate summed over the updates so far")
    ax.set_ylabel("report accuracy")
    ax.grid(True, which="both", alpha=0.3)
  if have:
    axes[0][0].legend(fontsize=7)
  fig.tight_layout()
  return fig, left_out


def cmd_report(args):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from haviv_tf.analysis import plotting  # pylint: disable=g-import-not-at-top
  path = os.path.join(args.out, JSON)
  if not os.path.exists(path):
    print(f"error: no {path}; run `learning_curve.py run` first", file=sys.stderr)
    return 1
  store = artifacts.read_json(path)
  runs = {k: v for k, v in store.items() if not k.startswith("_")}
  lines = []
  for name, entry in sorted(runs.items()):
    c = entry["config"]
    delays = sorted({int(d) for p in entry["points"].values() for d in p})
    final_stage = max(s["step"] for s in entry["stages"])
    lines.append(f"### {name}\n\n{c['protocol']} {c['arch']}, {c['train_steps']} steps, lr "
                 f"{c['learning_rate']:g} ({c['lr_schedule']}, x0.1 at step {c['lr_decay_step']}),"
                 f" last curriculum stage from step {final_stage}; {entry['trials']} test "
                 "trials per delay, all 10 classes.\n")
    lines.append("| step | " + " | ".join(f"acc {d}" for d in delays) + " |")
    lines.append("| ---: | " + " | ".join("---:" for _ in delays) + " |")
    for step in sorted(entry["points"], key=int):
      p = entry["points"][step]
      lines.append(f"| {step} | " + " | ".join(
          f"{p[str(d)]:.3f}" if str(d) in p else "" for d in delays) + " |")
    lines.append("")
  if args.x == "lr_sum":
    fig, left_out = _lr_sum_figure(plt, runs)
    os.makedirs(args.out, exist_ok=True)
    plotting.save_png(fig, os.path.join(args.out, LR_SUM_PNG))
    plt.close(fig)
    print(f"wrote: {os.path.join(args.out, LR_SUM_PNG)}"
          + (f" (left out, no schedule recorded: {', '.join(left_out)}; re-run `run` on them)"
             if left_out else ""))
    return 0
  n = len(runs)
  fig, axes = plt.subplots(1, max(n, 1), figsize=(5 * max(n, 1), 3.5), squeeze=False)
  for ax, (name, entry) in zip(axes[0], sorted(runs.items())):
    steps = sorted(entry["points"], key=int)
    delays = sorted({int(d) for p in entry["points"].values() for d in p})
    for d in delays:
      xs = [int(s) for s in steps if str(d) in entry["points"][s]]
      ax.plot(xs, [entry["points"][str(s)][str(d)] for s in xs], marker=".", label=f"delay {d}")
    for s in entry["stages"][1:]:
      ax.axvline(s["step"], color="0.85", lw=0.8, zorder=0)
    ax.axvline(entry["config"]["lr_decay_step"], color="k", ls="--", lw=0.8)
    ax.set_ylim(0, 1.0)
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("training step (grey: stage changes, dashed: lr x0.1)")
    ax.set_ylabel("report accuracy")
    ax.legend(fontsize=8)
  fig.tight_layout()
  os.makedirs(args.out, exist_ok=True)
  plotting.save_png(fig, os.path.join(args.out, "learning_curve.png"))
  plt.close(fig)
  common.write_tables(args.out, lines)
  return 0


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  sub = p.add_subparsers(dest="cmd", required=True)
  r = sub.add_parser("run")
  r.add_argument("--runs", required=True)
  r.add_argument("--delays", default="19,200,500")
  r.add_argument("--trials", type=int, default=500)
  r.add_argument("--out", default=OUT)
  s = sub.add_parser("report")
  s.add_argument("--out", default=OUT)
  s.add_argument("--x", choices=("step", "lr_sum"), default="step",
                 help="step: a panel per run against the training step (tables.md and "
                      "learning_curve.png); lr_sum: a panel per delay, the runs against the "
                      f"summed learning rate ({LR_SUM_PNG})")
  args = p.parse_args(argv)
  if args.cmd == "report":
    return cmd_report(args)
  from haviv_tf.base import config as config_lib  # pylint: disable=g-import-not-at-top
  try:
    return cmd_run(args)
  except (config_lib.InputError, artifacts.RunError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1


if __name__ == "__main__":
  sys.exit(main())
