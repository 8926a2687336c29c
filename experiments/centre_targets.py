"""Where the two penalties' targets sit, and what fine-tuning at them does to the class memories.

  python3 experiments/centre_targets.py run --root=runs/medium [--delay=500] [--trials=200]
  python3 experiments/centre_targets.py report [--out=experiments/study_medium]

For every network of a study root whose fine-tunings finished (<run>_finetune/{control,
slow_points,center_mass}) it loads the two target sets the fine-tunings used (each mode's
speed_targets.npz: per class, the class's slow point, or its centre of mass: the mean state 15
steps after the stimulus) and measures, in the network's speed coordinates (GRU: h; LSTM:
(h, tanh c)):

  targets   the distance between a class's centre-of-mass target and its slow-point target,
            and the median distance between different classes' slow-point targets;
  speed     ||F(s, x̄) - s|| at both target sets (median over classes), in the trained network
            and after each fine-tuning: which targets each penalty actually slowed;
  moved     the distance from a class's slow-point target (the trained network's point) to the
            nearest slow point the fine-tuned network reads out as the class;
  long      test trials at `delay` (classes balanced): the state just before the trigger against
            both target sets: how often the nearest target is the trial's own class, the mean
            distance to the own target, and the report accuracy, for each fine-tuned network
            (lstm_penalty.nearest_targets).

Writes <out>/centre_targets.json (resumes: networks already measured are skipped) and
<out>/centre_targets.md (report).
"""

import argparse
import glob
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top

from haviv_tf.base import artifacts  # pylint: disable=g-import-not-at-top

HERE = os.path.dirname(os.path.abspath(__file__))
JSON, MD = "centre_targets.json", "centre_targets.md"
MODES = ("control", "slow_points", "center_mass")
TARGETS = ("slow_points", "center_mass")


def _targets(finetune_dir, mode):
  with np.load(os.path.join(finetune_dir, mode, "speed_targets.npz"), allow_pickle=False) as f:
    return np.asarray(f["per_class"], np.float32)


def _coords(model, states):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return model.cell.speed_coordinates(tf.constant(np.nan_to_num(states), tf.float32)).numpy()


def measure(run_dir, delay, num):
  from haviv_tf.analysis import pipeline  # pylint: disable=g-import-not-at-top
  from haviv_tf import dynamics  # pylint: disable=g-import-not-at-top
  from haviv_tf.probes import slow_points  # pylint: disable=g-import-not-at-top
  from haviv_tf.task import trials  # pylint: disable=g-import-not-at-top
  import lstm_penalty  # pylint: disable=g-import-not-at-top  (beside this file)
  ft = run_dir + "_finetune"
  targets = {name: _targets(ft, name) for name in TARGETS}
  cfg, source, parent = pipeline.restore(run_dir)
  x_bar = slow_points.mean_input_features(
      parent.model, trials.generator_for(source, "test", cfg), seed=cfg.seed)
  live = np.isfinite(targets["slow_points"]).all(1) & np.isfinite(targets["center_mass"]).all(1)
  sp, cm = (_coords(parent.model, targets[n]) for n in TARGETS)
  between = np.linalg.norm(sp[:, None] - sp[None], axis=-1)[np.triu_indices(10, 1)]
  row = dict(arch=cfg.arch, protocol=cfg.protocol, seed=cfg.seed, delay=delay, trials=num,
             cm_to_sp=float(np.median(np.linalg.norm(cm - sp, axis=-1)[live])),
             between_classes=float(np.nanmedian(between)), speed={}, long={})

  def speeds(model):
    return {n: float(np.median(dynamics.speeds(model, targets[n][live], x_bar)))
            for n in TARGETS}
  row["speed"]["trained"] = speeds(parent.model)
  row["moved"] = {}
  for mode in MODES:
    _, _, run = pipeline.restore(os.path.join(ft, mode))
    row["speed"][mode] = speeds(run.model)
    row["long"][mode] = lstm_penalty.nearest_targets(run.model, cfg, source, targets, delay, num)
    row["moved"][mode] = _moved(run.model, os.path.join(ft, mode), targets["slow_points"])
  return row


def _moved(model, mode_dir, targets):
  """Median over classes of the distance from the parent's slow point of a class to the nearest
  slow point the fine-tuned network reads out as that class (None if it has none)."""
  with np.load(os.path.join(mode_dir, "slow_points.npz"), allow_pickle=False) as f:
    states, readout = np.asarray(f["states"]), np.asarray(f["readout"])
  points, tg = _coords(model, states), _coords(model, targets)
  d = [float(np.min(np.linalg.norm(points[readout == c] - tg[c], axis=-1)))
       for c in range(len(tg)) if np.isfinite(targets[c]).all() and np.any(readout == c)]
  return float(np.median(d)) if d else None


def cmd_run(args):
  path = os.path.join(args.out, JSON)
  store = artifacts.read_json(path) if os.path.exists(path) else {}
  for ft in sorted(glob.glob(os.path.join(args.root, "*_finetune"))):
    run_dir = ft[:-len("_finetune")]
    name = os.path.basename(run_dir)
    if name in store or not all(
        os.path.exists(os.path.join(ft, m, "speed_targets.npz")) for m in MODES):
      continue
    store[name] = measure(run_dir, args.delay, args.trials)
    artifacts.write_json(path, store)
    r = store[name]
    print(f"{name}: cm-sp {r['cm_to_sp']:.2f} (between {r['between_classes']:.2f}); " +
          " ".join(f"{m} acc {r['long'][m]['accuracy']:.3f}" for m in MODES), flush=True)


def _fmt(values, spec=".3f"):
  values = [v for v in values if v is not None]
  return format(float(np.mean(values)), spec) if values else "–"


def cmd_report(args):
  store = artifacts.read_json(os.path.join(args.out, JSON))
  groups = {}
  for name, r in sorted(store.items()):
    groups.setdefault(f"{r['protocol']} {r['arch']}", []).append(r)
  delay = next(iter(store.values()))["delay"]
  lines = [
      "# Where the penalties' targets sit (measured by `experiments/centre_targets.py`)", "",
      f"{len(store)} networks; means over each type's networks. Distances and speeds in speed "
      "coordinates (GRU: h; LSTM: (h, tanh c)); speeds are medians over the ten classes at "
      f"x̄; long-delay figures from {next(iter(store.values()))['trials']} test trials at delay "
      f"{delay}, the state just before the trigger.", "",
      "## The targets", "",
      "| type | n | centre-of-mass target to slow-point target | between classes' slow points |",
      "|---|---|---|---|"]
  for g, rows in groups.items():
    lines.append(f"| {g} | {len(rows)} | {_fmt([r['cm_to_sp'] for r in rows], '.2f')} | "
                 f"{_fmt([r['between_classes'] for r in rows], '.2f')} |")
  lines += ["", "## Speed at each target set (trained → after each fine-tuning)", "",
            "| type | targets | trained | control | slow_points | center_mass |",
            "|---|---|---|---|---|---|"]
  for g, rows in groups.items():
    for t in TARGETS:
      cells = [_fmt([r["speed"][m][t] for r in rows], ".1e")
               for m in ("trained",) + MODES]
      lines.append(f"| {g} | {t} | " + " | ".join(cells) + " |")
  lines += ["", "## How far the class slow points moved in fine-tuning", "",
            "Distance from a class's slow point in the trained network (the slow-point target) "
            "to the nearest slow point the fine-tuned network reads out as that class (median "
            "over classes).", "",
            "| type | control | slow_points | center_mass |", "|---|---|---|---|"]
  for g, rows in groups.items():
    lines.append(f"| {g} | " + " | ".join(
        _fmt([r["moved"][m] for r in rows], ".2f") for m in MODES) + " |")
  lines += ["", f"## Long-delay states against the targets (delay {delay})", "",
            "| type | fine-tuning | accuracy | nearest slow-point target is own | distance to own "
            "slow-point target | nearest centre target is own | distance to own centre target |",
            "|---|---|---|---|---|---|---|"]
  for g, rows in groups.items():
    for m in MODES:
      cells = [_fmt([r["long"][m]["accuracy"] for r in rows])]
      for t in TARGETS:
        cells += [_fmt([r["long"][m][t]["nearest_is_own"] for r in rows]),
                  _fmt([r["long"][m][t]["distance_own"] for r in rows], ".2f")]
      lines.append(f"| {g} | {m} | " + " | ".join(cells) + " |")
  artifacts.write_text(os.path.join(args.out, MD), "\n".join(lines) + "\n")
  print("\n".join(lines))


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  sub = p.add_subparsers(dest="cmd", required=True)
  r = sub.add_parser("run")
  r.add_argument("--root", required=True, help="a study root (--mode=sweep's --workdir)")
  r.add_argument("--delay", type=int, default=500)
  r.add_argument("--trials", type=int, default=200)
  r.add_argument("--out", default=os.path.join(HERE, "study_medium"))
  q = sub.add_parser("report")
  q.add_argument("--out", default=os.path.join(HERE, "study_medium"))
  args = p.parse_args(argv)
  if args.cmd == "run":
    if not os.path.isdir(args.root):
      p.exit(1, f"error: no study root {args.root}\n")
    if args.delay < 5 or args.trials < 10:
      p.exit(1, "error: --delay must be >= 5 and --trials >= 10\n")
    cmd_run(args)
  else:
    if not os.path.exists(os.path.join(args.out, JSON)):
      p.exit(1, f"error: no {JSON} in {args.out}; run `run` first\n")
    cmd_report(args)


if __name__ == "__main__":
  sys.exit(main())
