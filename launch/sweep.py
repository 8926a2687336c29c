"""Sweep launcher: run a grid of haviv_tf networks locally, or write a Slurm job array.

  # 8 quick MNIST networks (VoCu/DeCu x GRU/LSTM x 2 seeds), each fine-tuned three ways and
  # back-tracked, by 2 workers with 1 TensorFlow thread each:
  python3 launch/sweep.py --grid=small --root=runs/small --workers=2 --data_dir=../shared/data

  # The paper's grid as a Slurm job array (one task per network; resubmit to resume):
  python3 launch/sweep.py --grid=paper --root=/scratch/haviv --slurm=haviv_paper.sbatch
  sbatch haviv_paper.sbatch

Re-running the same command skips finished runs and resumes interrupted ones. Two launchers on
one root never run the same network twice (each run is locked while a worker holds it).
The report over a finished sweep: python3 -m haviv_tf.main --mode=study --workdir=ROOT.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from haviv_tf import artifacts  # pylint: disable=g-import-not-at-top,wrong-import-position
from haviv_tf import sweep  # pylint: disable=g-import-not-at-top,wrong-import-position


class _Parser(argparse.ArgumentParser):
  """argparse, but a usage error is one line on stderr (exit status 1)."""

  def error(self, message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def _args(argv):
  p = _Parser(description=__doc__.split("\n")[0])
  p.add_argument("--grid", default=None, help=f"one of {', '.join(sweep.GRIDS)} (default: the "
                 "grid already in --root, else small)")
  p.add_argument("--root", required=True, help="sweep directory (one workdir per network)")
  p.add_argument("--workers", type=int, default=1, help="parallel worker processes")
  p.add_argument("--threads", type=int, default=0,
                 help="TensorFlow threads per worker (default: cores // workers)")
  p.add_argument("--data_dir", default="", help="canonical data files (offline), or tfds cache")
  p.add_argument("--only", default=None, help="run just this network of --root's grid.json")
  p.add_argument("--slurm", default=None, help="write a Slurm job-array script here instead of "
                 "running")
  p.add_argument("--slurm_hours", type=int, default=24)
  p.add_argument("--slurm_mem_gb", type=int, default=16)
  p.add_argument("--list", action="store_true", help="print the runs and whether they are done")
  return p.parse_args(argv)


def specs_for(root, grid):
  """The grid's runs; grid.json in root fixes them (a different --grid is refused)."""
  path = os.path.join(root, sweep.GRID_FILE)
  if os.path.exists(path):
    name, specs = sweep.load_grid(root)
    if grid and grid != name:
      raise ValueError(f"{root} holds the {name!r} grid; use another --root for {grid!r}")
    return name, specs
  name = grid or "small"
  specs = sweep.expand(sweep.get_grid(name))
  sweep.write_grid(specs, root, name)
  return name, specs


def main(argv=None):
  a = _args(argv)
  try:
    if a.workers < 1 or a.threads < 0:
      raise ValueError("--workers must be >= 1 and --threads >= 0")
    name, specs = specs_for(a.root, a.grid)
    if a.list:
      for s in specs:
        print(f"{s.name}\t{'done' if sweep.is_done(s, a.root) else 'to do'}")
      return 0
    if a.slurm:
      launcher = os.path.abspath(__file__)
      artifacts.write_text(a.slurm, sweep.slurm_script(
          specs, a.root, launcher, a.data_dir, cpus=max(1, a.threads or 2), hours=a.slurm_hours,
          mem_gb=a.slurm_mem_gb, python=sys.executable, grid_name=name))
      print(f"wrote {a.slurm}: {len(specs)} array tasks; submit with: sbatch {a.slurm}")
      return 0
    if a.only:
      chosen = [s for s in specs if s.name == a.only]
      if not chosen:
        raise ValueError(f"no run named {a.only!r} in {a.root}/{sweep.GRID_FILE}")
      specs = chosen
    results = sweep.run_local(specs, a.root, a.workers, a.threads, a.data_dir)
  except (ValueError, artifacts.RunError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  failed = [r for r in results if r["status"] not in ("done", "skipped")]
  for r in failed:
    print(f"error: {r['name']} {r['status']}" + (f" at {r['failed_step']}; see {r['log']}"
                                                 if r["status"] == "failed" else ""),
          file=sys.stderr)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
