"""Tables for experiments/slow_points_reachable.md from the runs of its experiment folder.

  PYTHONPATH=. python3 experiments/summarize_slow_points.py --root=EXP_DIR \
      --trained=TRAINED_ROOT > tables.md

(EXP_DIR: the folder experiments/slow_points_reachable/run.sh wrote; TRAINED_ROOT: the small
grid's root the networks were copied from.)

For every network with results under ROOT/{default,paper}/<name>: where the slow points from
the class centres lie (in the box, distance to the nearest class state at the centre-of-mass
time and after 100 / 1000 steps, stop reasons), the same for the points the previous code
wrote during training (TRAINED/<name>/slow_points.npz, format 1; distances measured against
the same trajectory cloud), back-tracking (births, merges) with each code, and fine-tuning
accuracies (control, center_mass and slow_points with the new search; slow_points with the
previous code's targets) at the long delays.
"""

import argparse
import os

import numpy as np

from haviv_tf.analysis import pipeline
from haviv_tf.base import artifacts
from haviv_tf.probes import predictors
from haviv_tf.task import trials


def _json(path):
  return artifacts.read_json(path) if os.path.exists(path) else None


def old_points(trained, name, root):
  """Diagnostics of the previous code's class slow points against the default recipe's cloud."""
  path = os.path.join(trained, name, "slow_points.npz")
  res = _json(os.path.join(trained, name, "results.json"))
  if not os.path.exists(path) or not res:
    return None
  arrays = artifacts.load_npz(path)
  have = np.flatnonzero(np.asarray(res["centre_counts"]) > 0)
  states = arrays["states"][:len(have)]
  workdir = os.path.join(root, "default", name)
  cfg, source, run = pipeline.restore(workdir)
  gen = trials.generator_for(source, "test", cfg)
  cloud = predictors.trajectory_cloud(run.model, gen, (15, 100, 1000), 50, cfg.seed)
  u = run.model.units
  dist = []
  for p, c in zip(states, have):
    row = []
    for t in (15, 100, 1000):
      cs = cloud.states[cloud.at(t), cloud.classes == c]
      row.append(float(np.min(np.linalg.norm(cs - p, axis=1))))
    dist.append(row)
  dist = np.asarray(dist)
  return dict(in_box=int(np.sum(np.all(np.abs(states[:, :u]) <= 1 + 1e-6, axis=1))),
              points=len(states), max_abs_h=float(np.abs(states[:, :u]).max()),
              median_dist=[float(np.median(dist[:, j])) for j in range(3)],
              speed_median=float(np.median(arrays["speed"][:len(have)])),
              iters=int(np.max(arrays["iters"][:len(have)])))


def new_points(root, recipe, name):
  res = _json(os.path.join(root, recipe, name, "results.json"))
  if not res or "slow_point_diagnostics" not in res:
    return None
  diag = [v for v in res["slow_point_diagnostics"].values() if v]
  times = res["slow_point_summary"]["dist_traj_times"]
  speeds = [v for v in res["slow_point_speed"].values() if v is not None]
  return dict(in_box=sum(d["in_box"] for d in diag), points=len(diag),
              max_abs_h=max(d["max_abs_h"] for d in diag),
              median_dist=[float(np.median([d[f"dist_traj_{t}"] for d in diag])) for t in times],
              speed_median=float(np.median(speeds)),
              stops={r: sum(d["stop_reason"] == r for d in diag)
                     for r in ("q_tol", "stalled", "max_iters")},
              readout_own=sum(int(res["slow_point_readout"][k]) == int(k)
                              for k, v in res["slow_point_diagnostics"].items() if v))


def backtrack_row(path):
  b = _json(path)
  if not b:
    return None
  births = [x for x in b["births"] if x["from_class"] is not None]
  return dict(merges=len(b["merges"]), births=len(births),
              at_intro=sum(x["at_introduction"] for x in b["births"]),
              late=sum(x["introduced_at"] > 0 for x in b["births"]),
              readout_changes=int(np.sum(np.any(np.asarray(b["readout"]) !=
                                                np.asarray(b["readout"])[:1], axis=0))))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--root", required=True,
                      help="the experiment folder (default/, paper/, old/, lstm_c/ inside)")
  parser.add_argument("--trained", required=True, help="the small grid's root")
  args = parser.parse_args()
  names = sorted(n for n in os.listdir(os.path.join(args.root, "default"))
                 if os.path.isdir(os.path.join(args.root, "default", n))
                 and not n.endswith("_finetune"))
  print("## Where the class slow points lie\n")
  print("| network | code | in box | max abs h | median distance to nearest class state at "
        "CoM time / 100 / 1000 steps | median speed | stop reasons | own class read out |")
  print("|---|---|---:|---:|---|---:|---|---:|")
  for n in names:
    rows = [("previous (unconstrained)", old_points(args.trained, n, args.root))]
    rows += [(f"{r} recipe", new_points(args.root, r, n)) for r in ("default", "paper")]
    for label, r in rows:
      if r is None:
        continue
      d = " / ".join(f"{v:.3g}" for v in r["median_dist"])
      stops = ", ".join(f"{k} {v}" for k, v in r.get("stops", {}).items() if v) or (
          f"cap {r['iters']} iterations" if "iters" in r else "–")
      print(f"| {n} | {label} | {r['in_box']}/{r['points']} | {r['max_abs_h']:.2f} | {d} | "
            f"{r['speed_median']:.2e} | {stops} | {r.get('readout_own', '–')} |")
  print("\n## Back-tracking\n")
  print("| network | code | births | later classes born at introduction | merges | points "
        "whose read-out changes |")
  print("|---|---|---:|---:|---:|---:|")
  for n in names:
    for label, path in (("previous", os.path.join(args.root, "old", n, "backtrack.json")),
                        ("default recipe", os.path.join(args.root, "default", n,
                                                        "backtrack.json")),
                        ("paper recipe", os.path.join(args.root, "paper", n, "backtrack.json"))):
      r = backtrack_row(path)
      if r:
        print(f"| {n} | {label} | {r['births']} | {r['at_intro']} of {r['late']} | "
              f"{r['merges']} | {r['readout_changes']} |")
  print("\n## Fine-tuning (report accuracy at long delays)\n")
  delays = ("100", "200", "500", "1000")
  print("| network | run | " + " | ".join(f"acc@{d}" for d in delays) + " |")
  print("|---|---|" + "---:|" * len(delays))
  for n in names:
    runs = [("trained", os.path.join(args.root, "default", n))]
    runs += [(f"{m} (new search)", os.path.join(args.root, "default", n + "_finetune", m))
             for m in ("control", "center_mass", "slow_points")]
    runs += [("slow_points (previous search)",
              os.path.join(args.root, "old", n + "_finetune", "slow_points"))]
    for label, w in runs:
      res = _json(os.path.join(w, "results.json"))
      if res and "accuracy_by_delay" in res:
        print(f"| {n} | {label} | " + " | ".join(
            f"{res['accuracy_by_delay'].get(d, float('nan')):.3f}" for d in delays) + " |")


if __name__ == "__main__":
  main()
