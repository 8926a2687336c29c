"""Sweep launcher: run a grid of haviv_tf networks locally, or write a Slurm job array.

  # 8 quick MNIST networks (VoCu/DeCu x GRU/LSTM x 2 seeds), each fine-tuned three ways and
  # back-tracked, by 2 workers with 1 TensorFlow thread each:
  python3 launch/sweep.py --grid=small --root=runs/small --workers=2 --data_dir=../shared/data

  # The paper's grid as a Slurm job array (one task per network; resubmit to resume):
  python3 launch/sweep.py --grid=paper --root=runs/paper --slurm=haviv_paper.sbatch
  sbatch haviv_paper.sbatch

  # A grid of one's own (a JSON object of haviv_tf.study.sweep.Grid fields), written and submitted:
  python3 launch/sweep.py --grid_file=mine.json --root=runs/mine --slurm=mine.sbatch --submit

Re-running the same command skips finished runs and resumes interrupted ones. Two launchers on
one root never run the same network twice (each run is locked while a worker holds it).
The report over a finished sweep: python3 -m haviv_tf.main --mode=study --workdir=ROOT.
"""

import argparse
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from haviv_tf.base import artifacts  # pylint: disable=g-import-not-at-top,wrong-import-position
from haviv_tf.study import runner  # pylint: disable=g-import-not-at-top,wrong-import-position
from haviv_tf.study import slurm  # pylint: disable=g-import-not-at-top,wrong-import-position
from haviv_tf.study import sweep  # pylint: disable=g-import-not-at-top,wrong-import-position


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
  p.add_argument("--grid_file", default=None, help="a JSON object of Grid fields: a grid of "
                 "one's own (instead of --grid)")
  p.add_argument("--submit", action="store_true", help="with --slurm: submit it with sbatch")
  p.add_argument("--slurm_hours", type=int, default=24)
  p.add_argument("--slurm_mem_gb", type=int, default=16)
  p.add_argument("--slurm_cpus", type=int, default=0, help="CPUs per task, and TensorFlow "
                 "threads (the task uses SLURM_CPUS_PER_TASK; default --threads or 2)")
  p.add_argument("--slurm_gpus", type=int, default=0, help="GPUs per task (--gres=gpu:N)")
  p.add_argument("--slurm_throttle", type=int, default=0,
                 help="at most N array tasks at once (--array=...%%N; 0: no limit)")
  p.add_argument("--slurm_requeue", action="store_true", help="requeue a preempted task; it "
                 "resumes from its checkpoints, appending to its log")
  p.add_argument("--slurm_logs", default="", help="directory of the per-task log files "
                 "(default ROOT/logs)")
  p.add_argument("--grid_digest", default=None, help=argparse.SUPPRESS)  # set by job scripts
  p.add_argument("--list", action="store_true", help="print the runs and where each stands "
                 "(done, to do, or its step, whether it runs, training's last checkpoint)")
  return p.parse_args(argv)


def specs_for(root, grid, grid_file=None):
  """The grid's runs; grid.json in root fixes them (a different --grid is refused)."""
  path = os.path.join(root, sweep.GRID_FILE)
  if grid and grid_file:
    raise ValueError("give --grid or --grid_file, not both")
  custom = sweep.load_grid_file(grid_file) if grid_file else None
  if os.path.exists(path):
    name, specs = sweep.load_grid(root)
    if custom and [x.name for x in sweep.expand(custom)] != [x.name for x in specs]:
      raise ValueError(f"{root} holds the {name!r} grid, not the one in {grid_file}; use "
                       "another --root")
    if grid and grid != name:
      raise ValueError(f"{root} holds the {name!r} grid; use another --root for {grid!r}")
    if grid:
      specs = sweep.refresh_grid(root, name, specs, sweep.expand(sweep.get_grid(grid)))
    return name, specs
  if custom:
    name, specs = custom.name, sweep.expand(custom)
  else:
    name = grid or "small"
    specs = sweep.expand(sweep.get_grid(name))
  sweep.write_grid(specs, root, name)
  return name, specs


def write_slurm(a, name, specs):
  """Writes the job script (refusing to overwrite another root's); submits it with --submit."""
  if a.submit and not shutil.which("sbatch"):
    raise ValueError("sbatch not found on PATH: submit from a Slurm login node (the script "
                     f"is written by --slurm={a.slurm} without --submit)")
  other = slurm.script_root(a.slurm)
  if other is not None and other != os.path.abspath(a.root):
    raise ValueError(f"{a.slurm} is the job script of root {other}, not {os.path.abspath(a.root)}"
                     "; write this root's script to another file")
  launcher = os.path.abspath(__file__)
  os.makedirs(a.slurm_logs or os.path.join(a.root, sweep.LOG_DIR), exist_ok=True)
  cpus = a.slurm_cpus or max(1, a.threads or 2)
  artifacts.write_text(a.slurm, slurm.slurm_script(
      specs, a.root, launcher, a.data_dir, cpus=cpus, hours=a.slurm_hours,
      mem_gb=a.slurm_mem_gb, python=sys.executable, grid_name=name, gpus=a.slurm_gpus,
      throttle=a.slurm_throttle, requeue=a.slurm_requeue, log_dir=a.slurm_logs,
      digest=sweep.grid_digest(a.root)))
  print(f"wrote {a.slurm}: {len(specs)} array tasks; submit with: sbatch {a.slurm}")
  if a.submit:
    out = subprocess.run(["sbatch", "--parsable", a.slurm], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
      why = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
      raise ValueError(f"sbatch {a.slurm} failed: {why}")
    print(f"submitted job {out.stdout.strip().split(';')[0]}")


def check_digest(root, digest):
  """A job script's task: refuses a root whose grid.json is not the script's."""
  if not os.path.exists(os.path.join(root, sweep.GRID_FILE)):
    raise ValueError(f"{root} holds no sweep ({sweep.GRID_FILE} missing): this job script was "
                     "written for a sweep root that is gone or elsewhere")
  if sweep.grid_digest(root) != digest:
    raise ValueError(f"{root}/{sweep.GRID_FILE} is not the grid this job script was written "
                     "for; write the script again with launch/sweep.py --slurm")


def main(argv=None):
  a = _args(argv)
  try:
    if a.workers < 1 or a.threads < 0:
      raise ValueError("--workers must be >= 1 and --threads >= 0")
    if min(a.slurm_cpus, a.slurm_gpus, a.slurm_throttle) < 0:
      raise ValueError("--slurm_cpus, --slurm_gpus and --slurm_throttle must be >= 0")
    if a.submit and not a.slurm:
      raise ValueError("--submit needs --slurm=FILE")
    if a.grid_digest is not None:
      check_digest(a.root, a.grid_digest)
    name, specs = specs_for(a.root, a.grid, a.grid_file)
    if a.list:
      for s in specs:
        print(f"{s.name}\t{runner.describe(s, a.root)}")
      return 0
    if a.slurm:
      write_slurm(a, name, specs)
      return 0
    if a.only:
      chosen = [s for s in specs if s.name == a.only]
      if not chosen:
        raise ValueError(f"no run named {a.only!r} in {a.root}/{sweep.GRID_FILE}")
      specs = chosen
    results = runner.run_local(specs, a.root, a.workers, a.threads, a.data_dir)
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
