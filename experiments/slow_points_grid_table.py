"""Where each network's class slow points lie, both recipes: a table for slow_points_reachable.md.

  python3 experiments/slow_points_grid_table.py --default=experiments/study_small/runs \
      --paper=experiments/slow_points_reachable/grid/paper

Reads each run's results.json ("slow_point_diagnostics", "slow_point_speed",
"slow_point_readout"; a row only where "slow_points_recipe" names the recipe): the ten class points the search started from the class centres. Prints,
per network and recipe: points in the reachable box, the largest |h|, the median distance to the
class's centre of mass and to the nearest state of the class's trajectories at the centre-of-mass
time and after 100 / 1000 steps, the median speed, the stop reasons and how many points read out
their own class.
"""

import argparse
import collections
import glob
import json
import os

import numpy as np


def _row(name, recipe, res):
  diag = res.get("slow_point_diagnostics") or {}
  if not diag or res.get("slow_points_recipe", "default") != recipe:
    return None
  classes = sorted(diag, key=int)
  d = [diag[c] for c in classes]
  med = lambda k: float(np.median([x[k] for x in d]))  # pylint: disable=unnecessary-lambda-assignment
  t_com = min(int(k.rsplit("_", 1)[1]) for k in d[0] if k.startswith("dist_traj_"))
  speed = res.get("slow_point_speed") or {}
  readout = res.get("slow_point_readout") or {}
  own = sum(1 for c in classes if str(readout.get(c)) == c)
  stops = collections.Counter(x["stop_reason"] for x in d)
  return (f"| {name} | {recipe} | {sum(x['in_box'] for x in d)}/{len(d)} | "
          f"{max(x['max_abs_h'] for x in d):.2f} | {med('dist_centre'):.2f} | "
          f"{med(f'dist_traj_{t_com}'):.2f} / {med('dist_traj_100'):.2f} / "
          f"{med('dist_traj_1000'):.2f} | "
          f"{np.median([speed[c] for c in classes if c in speed]):.2e} | "
          f"{', '.join(f'{k} {v}' for k, v in sorted(stops.items()))} | {own}/{len(d)} |")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--default", required=True, help="folder of the default recipe's runs")
  parser.add_argument("--paper", required=True, help="folder of the paper recipe's copies")
  args = parser.parse_args()
  print("| network | recipe | in box | max abs h | median distance to its centre | median "
        "distance to the nearest class state at the CoM time / after 100 / 1000 steps | median "
        "speed | stop reasons | own class read out |")
  print("|---|---|---:|---:|---:|---|---:|---|---:|")
  names = sorted(os.path.basename(os.path.dirname(p)) for p in
                 glob.glob(os.path.join(args.default, "mnist-*-s[0-9]", "results.json")))
  for name in names:
    for recipe, root in (("default", args.default), ("paper", args.paper)):
      path = os.path.join(root, name, "results.json")
      if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
          row = _row(name, recipe, json.load(f))
        if row:
          print(row)


if __name__ == "__main__":
  main()
