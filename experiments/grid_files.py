"""A sweep's finished runs as small files in the repository, and back into a sweep root.

  # copy the result files of every finished run (and the grid) from a sweep root
  python3 experiments/grid_files.py save --root=runs/medium --dest=experiments/study_medium/runs
  # on another machine: put them into a new sweep root, so that the sweep skips those runs
  # and its report covers them
  python3 experiments/grid_files.py restore --dest=experiments/study_medium/runs --root=runs/medium

A run counts as finished when its sweep_done.json exists (every step of the run succeeded).
Saved per run: config.json, results.json, backtrack.json and sweep_done.json, and of each
fine-tuning <name>_finetune/<mode>/{config,results}.json and compare.json: everything the
report reads. Checkpoints, snapshots and logs are not saved: a restored run can be reported
on, not trained further or re-analysed (the same seed rebuilds it). Files are copied
atomically; `restore` never overwrites a file that exists in the root.
"""

import argparse
import glob
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from haviv_tf import sweep  # pylint: disable=g-import-not-at-top

RUN_FILES = ("config.json", "results.json", "backtrack.json", sweep.DONE_FILE)
FINETUNE_FILES = ("compare.json", "*/config.json", "*/results.json")


def _copy(src, dst, overwrite):
  if os.path.exists(dst) and not overwrite:
    return False
  os.makedirs(os.path.dirname(dst), exist_ok=True)
  tmp = dst + ".tmp"
  shutil.copyfile(src, tmp)
  os.replace(tmp, dst)
  return True


def _files(base, name):
  out = [os.path.join(name, f) for f in RUN_FILES if os.path.exists(os.path.join(base, name, f))]
  for pattern in FINETUNE_FILES:
    for path in sorted(glob.glob(os.path.join(base, name + "_finetune", pattern))):
      out.append(os.path.relpath(path, base))
  return out


def transfer(src_root, dst_root, overwrite):
  """Copies the files of src_root's finished runs to dst_root; returns (runs, files) copied."""
  grid = os.path.join(src_root, sweep.GRID_FILE)
  if not os.path.exists(grid):
    raise SystemExit(f"error: {src_root} holds no sweep ({sweep.GRID_FILE} missing)")
  _, specs = sweep.load_grid(src_root)
  runs = files = 0
  for spec in specs:
    if not sweep.is_done(spec, src_root):
      continue
    runs += 1
    for rel in _files(src_root, spec.name):
      files += _copy(os.path.join(src_root, rel), os.path.join(dst_root, rel), overwrite)
  _copy(grid, os.path.join(dst_root, sweep.GRID_FILE), overwrite)
  return runs, len(specs), files


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("cmd", choices=("save", "restore"))
  p.add_argument("--root", required=True, help="the sweep root (--workdir of --mode=study)")
  p.add_argument("--dest", required=True, help="the folder in the repository")
  args = p.parse_args(argv)
  if args.cmd == "save":
    runs, total, files = transfer(args.root, args.dest, overwrite=True)
  else:
    runs, total, files = transfer(args.dest, args.root, overwrite=False)
  print(f"{args.cmd}: {runs} of {total} runs finished; {files} files copied")
  return 0


if __name__ == "__main__":
  sys.exit(main())
