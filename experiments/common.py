"""What several experiment scripts share."""

import os

import numpy as np

from haviv_tf.base import artifacts
from haviv_tf.study import sweep


def write_tables(out: str, lines) -> str:
  """Writes `lines` as `out`/tables.md (atomically), prints them and returns the text."""
  text = "\n".join(lines) + "\n"
  artifacts.write_text(os.path.join(out, "tables.md"), text)
  print(text)
  return text


def grid_folders(folder: str) -> tuple:
  """(the folder holding a grid's grid.json, the folder holding its runs) for the three layouts:
  a sweep's --root (both `folder`), a grid committed by `grid_files.py save` (both
  `folder`/runs) and the older committed grids (grid.json in `folder`, the runs in
  `folder`/runs; its runs/ may hold a copy of grid.json, so that report.build reads it as a
  root). Neither holding a grid.json: SystemExit with one error line."""
  runs = os.path.join(folder, "runs")
  if os.path.exists(os.path.join(folder, sweep.GRID_FILE)):
    return folder, runs if os.path.isdir(runs) else folder
  if os.path.exists(os.path.join(runs, sweep.GRID_FILE)):
    return runs, runs
  raise SystemExit(f"error: {folder} has no {sweep.GRID_FILE} (in runs/ or beside it)")


def median_speeds(workdir: str, results: dict) -> dict:
  """{slow-point recipe: the median over the classes of a run's slow-point speeds (None: no
  speed)}: the run's own recipe (`results`, its results.json; "default" where it records none)
  and every further one (`workdir`/slow_points_<recipe>/results.json)."""
  found = {results.get("slow_points_recipe") or "default": results}
  for d in sorted(os.listdir(workdir)):
    path = os.path.join(workdir, d, "results.json")
    if d.startswith(sweep.SLOW_POINTS_DIR_PREFIX) and os.path.exists(path):
      found[d[len(sweep.SLOW_POINTS_DIR_PREFIX):]] = artifacts.read_json(path)
  out = {}
  for recipe, res in found.items():
    speeds = [v for v in res.get("slow_point_speed", {}).values() if v is not None]
    out[recipe] = float(np.median(speeds)) if speeds else None
  return out


def leading_modes(workdir, results, k=10):
  """The median over a run's default-recipe slow points of the k-th largest |eigenvalue| of
  the Jacobian there (the search stores the leading 10 per point; None: no such file). Near 1:
  k directions around the point decay slowly, if at all."""
  path = os.path.join(workdir, sweep.SLOW_POINTS_DIR_PREFIX + "default", "slow_points.npz")
  if not os.path.exists(path) and (results.get("slow_points_recipe") or "default") == "default":
    path = os.path.join(workdir, "slow_points.npz")
  if not os.path.exists(path):
    return None
  with np.load(path, allow_pickle=False) as points:
    mags = np.abs(points["eigenvalues"])
  if mags.shape[1] < k:
    return None
  return float(np.nanmedian(np.sort(mags, axis=1)[:, -k]))
