"""haviv_tf's slow-point search against FixedPointFinder's PyTorch version on one trained GRU.

  pip install -e ".[benchmark]"      # torch (CPU), for this script only
  python3 benchmarks/fpf_comparison.py --fpf_path=/path/to/fixed-point-finder \
      --workdir=runs/small/mnist-vocu-gru-quick-s0 [--num_states=1000] [--threads=2]

FixedPointFinder (github.com/mattgolub/fixed-point-finder, FixedPointFinderTorch.py) is not
part of haviv_tf: --fpf_path names a checkout of it. The script ports the trained paper-form
GRU (cells.GRUCell) to a torch.nn.Module with FixedPointFinder's nn.GRU calling convention,
checks that one step agrees with TensorFlow to 1e-6 on the initial states (and the same weights
as a keras.layers.GRUCell(reset_after=False) to 1e-5), and then, for the
same x̄ (mean_input_features) and the same `--num_states` initial states (states of noise
trials, slow_points.sample_states):

  per iteration   seconds per search iteration over a fixed number of iterations, no stopping:
                  haviv_tf's compiled chunk (projected Adam, the default recipe's settings) on
                  the model and on the same weights as a keras.layers.GRUCell (the library
                  route for any Keras cell: dynamics.SlowPointFinder(cell); the cell
                  recomputes W x̄ every step, the model's cell projects it once), and
                  FixedPointFinder's joint optimisation loop (_run_joint_optimization,
                  tol_q = 0 so that it runs the full count). FixedPointFinder's module gets the
                  input x̄ every iteration, as its API has it, so it multiplies W x̄ anew each
                  time; a second FPF row caches W x̄ + b in the module (the fair floor for it).
  own stop        each tool with its own default stopping rule (haviv_tf: the default recipe,
                  q_tol 1e-10, stall window, 20,000 iterations at most; FixedPointFinder: its
                  defaults, tol_q 1e-12, tol_dq 1e-20, 5,000 iterations at most, lr 1.0 with
                  ReduceLROnPlateau): wall time, iterations, q reached (median, 90th
                  percentile, max).
  same target     wall time until the median q over the points falls below a target both tools
                  reach (the larger of their own-stop medians): haviv_tf checked every 50
                  iterations, FixedPointFinder by re-running with 100, 200, 400, ... iterations
                  (the time of the first run that reaches it).
  reachable set   for every result: points with some |h_i| > 1 (outside the set a GRU started at
                  h = 0 can reach, whose closure is [-1, 1]^n), the largest |h_i| and the mean
                  distance ||h - clip(h, -1, 1)||.
Prints Markdown tables and the machine context (top).
"""

import argparse
import dataclasses
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf

import common  # pylint: disable=g-bad-import-order  (benchmarks/common.py)
from haviv_tf import dynamics
from haviv_tf.analysis import pipeline
from haviv_tf.models import cells
from haviv_tf.probes import slow_points
from haviv_tf.task import trials


def torch_gru(cell, cache_input=False):
  """The paper-form GRU as a module called like nn.GRU(batch_first=True): (x [B, 1, D],
  h0 [1, B, H]) -> (out [B, 1, H], h_n [1, B, H])."""
  import torch  # pylint: disable=g-import-not-at-top

  class PaperGRU(torch.nn.Module):
    batch_first = True

    def __init__(self):
      super().__init__()
      self.kernel = torch.nn.Parameter(torch.tensor(cell.kernel.numpy()))
      self.recurrent = torch.nn.Parameter(torch.tensor(cell.recurrent_kernel.numpy()))
      self.bias = torch.nn.Parameter(torch.tensor(cell.bias.numpy()))
      self.units = cell.units
      self._cache = None

    def forward(self, x, h0):
      u = self.units
      x, h = x[:, 0, :], h0[0]
      if cache_input and self._cache is not None and self._cache[0] is x.untyped_storage():
        xp = self._cache[1]
      else:
        xp = x @ self.kernel + self.bias
        if cache_input:
          self._cache = (x.untyped_storage(), xp)
      zr = torch.sigmoid(xp[:, :2 * u] + h @ self.recurrent[:, :2 * u])
      z, r = zr[:, :u], zr[:, u:]
      c = torch.tanh(xp[:, 2 * u:] + (r * h) @ self.recurrent[:, 2 * u:])
      new = (1 - z) * h + z * c
      return new[:, None, :], new[None]

  return PaperGRU()


def keras_gru(cell):
  """The paper-form GRU as a keras.layers.GRUCell (reset_after=False) with the same weights.

  The paper's h' = (1 - z) h + z c is Keras's h' = z' h + (1 - z') c with z' = 1 - z =
  sigmoid(-(W_z x + U_z h + b_z)): the z columns change sign; r and the candidate are equal.
  """
  import keras  # pylint: disable=g-import-not-at-top
  u = cell.units
  flip = np.concatenate([-np.ones(u), np.ones(2 * u)]).astype(np.float32)
  out = keras.layers.GRUCell(u, reset_after=False)
  out.build((None, int(cell.kernel.shape[0])))
  out.set_weights([cell.kernel.numpy() * flip, cell.recurrent_kernel.numpy() * flip,
                   cell.bias.numpy() * flip])
  return out


def fpf_run(fpf_cls, module, inits, x_bar, **hps):
  fpf = fpf_cls(module, verbose=False, super_verbose=False, do_compute_jacobians=False,
                do_exclude_distance_outliers=False, **hps)
  inputs = np.tile(x_bar[None], [len(inits), 1]).astype(np.float32)
  t0 = time.perf_counter()
  fps = fpf._run_joint_optimization(inits.astype(np.float32), inputs)  # pylint: disable=protected-access
  return time.perf_counter() - t0, fps


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--fpf_path", required=True, help="checkout of fixed-point-finder")
  parser.add_argument("--workdir", required=True, help="a trained haviv_tf GRU run")
  parser.add_argument("--num_states", type=int, default=1000)
  parser.add_argument("--iters", type=int, default=300, help="iterations per timing run")
  parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
  parser.add_argument("--fpf_max_iters", type=int, default=5000,
                      help="FixedPointFinder's iteration cap (its default 5000)")
  parser.add_argument("--repeats", type=int, default=3, help="timing runs per tool (best kept)")
  args = parser.parse_args()
  sys.path.insert(0, args.fpf_path)
  import torch  # pylint: disable=g-import-not-at-top
  from FixedPointFinderTorch import FixedPointFinderTorch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(args.threads)

  cfg, source, run = pipeline.restore(args.workdir)
  if cfg.arch != "gru":
    sys.exit(f"error: {args.workdir} is a {cfg.arch} run; the comparison needs a GRU")
  model = run.model
  gen = trials.generator_for(source, "test", cfg)
  x_bar = slow_points.mean_input_features(model, gen, seed=cfg.seed)
  inits, _, _ = slow_points.states_of_new_trials(model, gen, args.num_states,
                                                   seed=cfg.seed)
  n = len(inits)

  # One step agrees: in float64 (the same function), and in float32 (rounding only).
  module = torch_gru(model.cell)
  feats = np.tile(x_bar[None], [n, 1])
  cell64 = cells.GRUCell(model.cell.units, dtype="float64")
  cell64.build((None, model.feature_size))
  for dst, src in ((cell64.kernel, model.cell.kernel),
                   (cell64.recurrent_kernel, model.cell.recurrent_kernel),
                   (cell64.bias, model.cell.bias)):
    dst.assign(tf.cast(src, tf.float64))
  want64 = cell64.step(tf.constant(inits, tf.float64),
                       cell64.project(tf.constant(feats, tf.float64))).numpy()
  with torch.no_grad():
    _, got64 = module.double()(torch.tensor(feats, dtype=torch.float64)[:, None],
                               torch.tensor(inits, dtype=torch.float64)[None])
    module.float()
    _, got32 = module(torch.tensor(feats)[:, None], torch.tensor(inits)[None])
  want32 = model.transition(tf.constant(inits), tf.constant(feats)).numpy()
  err64 = float(np.max(np.abs(got64[0].numpy() - want64)))
  err32 = float(np.max(np.abs(got32[0].numpy() - want32)))
  print(f"one step, torch port vs TensorFlow over {n} states: max |difference| {err64:.1e} in "
        f"float64, {err32:.1e} in float32 (rounding of 785-term sums)")
  if not err64 <= 1e-6:
    sys.exit("error: the torch port disagrees with the TensorFlow cell by more than 1e-6")
  kcell = keras_gru(model.cell)
  got_k = kcell(tf.constant(feats), [tf.constant(inits)], training=False)[1][0].numpy()
  err_k = float(np.max(np.abs(got_k - want32)))
  print(f"one step, keras.layers.GRUCell (reset_after=False, z columns negated) vs the paper "
        f"cell: max |difference| {err_k:.1e} in float32")
  if not err_k <= 1e-5:
    sys.exit("error: the keras.layers.GRUCell port disagrees with the paper cell by more than 1e-5")

  rows = []
  # Per iteration, no stopping: the model, then the same weights as a Keras cell.
  ours = (("haviv_tf (projected Adam, XLA)", model),
          ("haviv_tf on keras.layers.GRUCell (same weights, XLA)", kcell))
  cfg_fixed = dynamics.SlowPointConfig(max_iters=args.iters, early_stop=False, chunk=args.iters)
  for label, net in ours:
    finder = dynamics.SlowPointFinder(net, cfg_fixed)
    finder.minimize(inits, x_bar)          # compile
    times = []
    for _ in range(args.repeats):
      t0 = time.perf_counter()
      s_fixed, _, _ = finder.minimize(inits, x_bar)
      times.append(time.perf_counter() - t0)
    rows.append((label, min(times) / args.iters, common.box_stats(s_fixed)))
  ours_it = rows[0][1]
  for label, cache in (("FixedPointFinder torch", False),
                       ("FixedPointFinder torch, W x̄ cached", True)):
    mod = torch_gru(model.cell, cache_input=cache)
    fpf_run(FixedPointFinderTorch, mod, inits, x_bar, tol_q=0.0, tol_dq=0.0, max_iters=5)
    times = []
    for _ in range(args.repeats):
      sec, fps = fpf_run(FixedPointFinderTorch, mod, inits, x_bar, tol_q=0.0, tol_dq=0.0,
                         max_iters=args.iters)
      times.append(sec)
    rows.append((label, min(times) / args.iters, common.box_stats(fps.xstar)))
  print(f"\n### Per iteration ({n} states, {model.units} units, {args.iters} iterations, "
        f"best of {args.repeats})\n")
  print("| tool | ms / iteration | iterations / s | / haviv_tf | points outside the box | "
        "max abs h |")
  print("|---|---:|---:|---:|---:|---:|")
  for label, sec, box in rows:
    print(f"| {label} | {1e3 * sec:.2f} | {1 / sec:.0f} | {sec / ours_it:.1f}x | "
          f"{box['outside']} of {n} | {box['max_abs_h']:.3f} |")

  # Each to its own stopping rule.
  own = []
  for label, net in ours:
    finder = dynamics.SlowPointFinder(net, dynamics.SlowPointConfig())
    finder.minimize(inits[:2], x_bar)
    t0 = time.perf_counter()
    s_own, _, it_own, info = finder.minimize(inits, x_bar, return_info=True)
    t_own = time.perf_counter() - t0
    reasons = {r: int(np.sum(info["stop_reason"] == i)) for i, r in
               enumerate(dynamics.STOP_REASONS)}
    own.append((label.split(" (")[0] + ", default recipe", t_own, int(it_own.max()),
                common.q_of(model, s_own, x_bar), common.box_stats(s_own), f"stop reasons {reasons}"))
  q_ours = own[0][3]
  mod = torch_gru(model.cell)
  t_fpf, fps = fpf_run(FixedPointFinderTorch, mod, inits, x_bar, max_iters=args.fpf_max_iters)
  q_fpf = common.q_of(model, fps.xstar, x_bar)
  own.append((f"FixedPointFinder torch, defaults (cap {args.fpf_max_iters})", t_fpf, int(fps.n_iters.max()), q_fpf,
              common.box_stats(fps.xstar), "joint stop (every point's q < tol_q or dq < tol_dq lr)"))
  print(f"\n### Each tool to its own stopping rule ({n} states)\n")
  print("| tool | wall s | iterations | median q | 90% q | max q | outside the box | max abs h "
        "| mean distance to the box | note |")
  print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
  for label, sec, iters, q, box, note in own:
    print(f"| {label} | {sec:.1f} | {iters} | {np.median(q):.2e} | {np.percentile(q, 90):.2e} | "
          f"{q.max():.2e} | {box['outside']} of {n} | {box['max_abs_h']:.3f} | "
          f"{box['mean_dist']:.3g} | {note} |")

  # Same target: median q below the larger of the two own-stop medians.
  target = float(max(np.median(q_ours), np.median(q_fpf)))
  finder = dynamics.SlowPointFinder(model, dataclasses.replace(
      dynamics.SlowPointConfig(), early_stop=False, chunk=50))
  finder.minimize(inits[:2], x_bar)
  hit = []
  t0 = time.perf_counter()
  finder.minimize(inits, x_bar, callback=lambda t, q: (
      hit.append((time.perf_counter() - t0, t)) or True) if np.median(q) <= target else False)
  ours_hit = hit[0] if hit else None
  fpf_hit, k, total = None, 100, 0.0
  while k <= args.fpf_max_iters:
    sec, fps = fpf_run(FixedPointFinderTorch, torch_gru(model.cell), inits, x_bar, tol_q=0.0,
                       tol_dq=0.0, max_iters=k)
    total += sec
    if np.median(common.q_of(model, fps.xstar, x_bar)) <= target:
      fpf_hit = (sec, k)
      break
    if k == args.fpf_max_iters:
      break
    k = min(2 * k, args.fpf_max_iters)   # the cap itself is tried last
  print(f"\n### Time to the same target: median q <= {target:.2e}\n")
  print("| tool | wall s | iterations |")
  print("|---|---:|---:|")
  for label, hit in (("haviv_tf (checked every 50 iterations)", ours_hit),
                     ("FixedPointFinder torch (fresh run of that many iterations)", fpf_hit)):
    print(f"| {label} | " + (f"{hit[0]:.1f} | {hit[1]} |" if hit else "not reached | – |"))

  print("\nMachine while measuring (top -bn1):\n```")
  print("\n".join(subprocess.run(["top", "-bn1"], capture_output=True,
                                 text=True).stdout.splitlines()[:15]))
  print("```")
  print(f"torch {torch.__version__} ({args.threads} threads), tensorflow {tf.__version__}, "
        f"{os.cpu_count()} CPUs")


if __name__ == "__main__":
  main()
