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


def grid_root(folder: str) -> str:
  """The folder holding a grid's grid.json and runs: `folder`/runs for a committed grid
  (experiments/<name>/runs, written by `grid_files.py save`), else `folder` itself (a sweep's
  --root). Neither: SystemExit with one error line."""
  for root in (os.path.join(folder, "runs"), folder):
    if os.path.exists(os.path.join(root, sweep.GRID_FILE)):
      return root
  raise SystemExit(f"error: {folder} has no {sweep.GRID_FILE} (in runs/ or beside it)")
