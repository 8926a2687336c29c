"""The library's calls in a loop on one network: the first call against every later one.

  python3 benchmarks/repeated_calls.py [--units 64] [--points 50] [--iters 300] [--calls 5]

A user who searches one network again and again (other inputs, starting states or settings)
calls `find_slow_points` and `jacobians` in a loop. Each call on the same Keras cell reuses the
Dynamics kept on the cell and its compiled functions (`Dynamics.compiled`), so only the first
call traces and XLA-compiles. This prints, for an untrained Keras GRUCell (keras seed 0), the
wall time of each of `--calls` calls of each function, and the same with a new Dynamics per
call (`core.from_cell`: what every call cost before the functions were kept), with the
machine context. Nothing is cached between runs of this script.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # pylint: disable=g-import-not-at-top
import numpy as np

import common  # pylint: disable=g-bad-import-order  (benchmarks/common.py)
from haviv_tf import dynamics
from haviv_tf.dynamics import core
from haviv_tf.dynamics import linearize


def _times(fn, calls):
  out = []
  for _ in range(calls):
    t = time.perf_counter()
    fn()
    out.append(time.perf_counter() - t)
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--units", type=int, default=64)
  p.add_argument("--points", type=int, default=50)
  p.add_argument("--iters", type=int, default=300)
  p.add_argument("--calls", type=int, default=5)
  args = p.parse_args(argv)
  print(common.machine_context())
  print(f"command: python3 benchmarks/repeated_calls.py {' '.join(sys.argv[1:])}".rstrip())
  keras.utils.set_random_seed(0)
  cell = keras.layers.GRUCell(args.units)
  cell.build((None, 8))
  starts = np.random.default_rng(0).uniform(-0.5, 0.5, (args.points, args.units)).astype(
      np.float32)
  x_bar = np.zeros(8, np.float32)
  cfg = dynamics.SlowPointConfig(max_iters=args.iters)
  kept = dict(search=lambda: dynamics.find_slow_points(cell, starts, x_bar, cfg),
              jacobians=lambda: linearize.jacobians(cell, starts, x_bar))
  fresh = dict(search=lambda: dynamics.find_slow_points(core.from_cell(cell), starts, x_bar, cfg),
               jacobians=lambda: linearize.jacobians(core.from_cell(cell), starts, x_bar))
  print(f"\nGRUCell({args.units}), {args.points} points, search max_iters {args.iters} "
        f"(XLA), {args.calls} calls each: seconds per call\n")
  print("| function | Dynamics | first call | later calls (mean) | later calls (each) |")
  print("|---|---|---|---|---|")
  for name in kept:
    for label, fns in (("kept on the cell", kept), ("new per call", fresh)):
      t = _times(fns[name], args.calls)
      later = t[1:] or [float("nan")]
      print(f"| {name} | {label} | {t[0]:.2f} | {np.mean(later):.3f} | "
            + ", ".join(f"{v:.3f}" for v in later) + " |")


if __name__ == "__main__":
  main()
