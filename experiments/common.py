"""What several experiment scripts share."""

import os

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
  `folder`/runs). Neither holding a grid.json: SystemExit with one error line."""
  runs = os.path.join(folder, "runs")
  if os.path.exists(os.path.join(runs, sweep.GRID_FILE)):
    return runs, runs
  if os.path.exists(os.path.join(folder, sweep.GRID_FILE)):
    return folder, runs if os.path.isdir(runs) else folder
  raise SystemExit(f"error: {folder} has no {sweep.GRID_FILE} (in runs/ or beside it)")
