"""haviv_tf's slow-point search against BrainPy's SlowPointFinder (JAX) on one trained GRU.

  pip install -e ".[benchmark]"      # brainpy, jax, jaxlib (CPU), for this script only
  python3 benchmarks/brainpy_comparison.py --workdir=runs/small/mnist-vocu-gru-quick-s0 \
      [--num_states=1000] [--iters=300] [--repeats=3]
  # a smoke run: --num_states=100 --iters=200 --repeats=1 --bp_max_iters=800 --max_iters=2000

BrainPy (brainpy.analysis.SlowPointFinder, pip package `brainpy`) is not part of haviv_tf. The
script ports the trained paper-form GRU (cells.GRUCell) to a JAX function f(h) = F(h, x̄) of
one state (BrainPy vmaps it over the candidates; W x̄ + b is computed once, as haviv_tf's
model does), checks that one step agrees with TensorFlow to 1e-5 on the starting states, and
then, for the same x̄ (mean_input_features) and the same `--num_states` starting states (one
state of each of that many new noise trials, slow_points.states_of_new_trials):

  one scale       q = ½ ||F(h) - h||² per point for both: every q in the tables is computed by
                  the same TensorFlow function (dynamics.speeds) on the states each tool
                  returns. BrainPy's own per-point loss (its default, mean_squared_error over
                  the units) is ||F(h) - h||² / n = 2 q / n for n units (checked on the starting
                  states and printed); it minimises the mean of that over the points, and its
                  stopping `tolerance` is on that mean, i.e. mean q < tolerance * n / 2.
  per iteration   ms per Adam iteration at the same batch (all the states), no stopping,
                  after warm-up. haviv_tf: the best of --repeats runs of its compiled chunk
                  (projected Adam, default recipe's settings, early_stop off). BrainPy:
                  find_fps_with_gd_method with its default optimiser (Adam, lr 0.2 x 0.9999^t)
                  and tolerance 0; it re-traces and re-compiles its loop (bm.for_loop) on every
                  call of a chunk of `num_batch` iterations, so the steady cost is taken from
                  two run lengths, one chunk each: (best T(5 k) - best T(k)) / 4 k with
                  k = --iters; the per-chunk overhead (trace + compile) is best T(k) - k x that,
                  and the row "as called" adds it once per 100 iterations (num_batch default).
                  (jax_log_compiles shows an XLA compile of jit(scan) for every chunk: each
                  call closes over new Variables. JAX's persistent compilation cache, which
                  BrainPy does not turn on, might avoid it; it is not used here.)
  own stop        each tool to its own default stopping rule. haviv_tf: SlowPointConfig()
                  (q_tol 1e-10 per point, stall window, --max_iters at most, default 20,000).
                  BrainPy: find_fps_with_gd_method's defaults (tolerance 1e-5 on the mean loss,
                  checked every num_batch = 100 iterations, num_opt = --bp_max_iters, default
                  its 10,000): wall time (BrainPy's includes its per-chunk compiles, as a user
                  pays them), iterations, q reached (median, 90th percentile, max).
  same target     wall time until the median q falls below a target both reach (--target, else
                  the larger of the two own-stop medians): haviv_tf checked every 50
                  iterations; BrainPy by fresh runs of 100, 200, 400, ... iterations (chunks of
                  100, tolerance 0; its learning-rate schedule restarts, so a run of k
                  iterations is the first k of a longer one), the time of the first run that
                  reaches it, with the estimate without compilation (iterations x steady ms).
  reachable set   for every result: points with some |h_i| > 1 (outside the set a GRU started
                  at h = 0 can reach, whose closure is [-1, 1]^n), the largest |h_i| and the
                  mean distance ||h - clip(h, -1, 1)||. haviv_tf projects onto the box after
                  every step; BrainPy does not constrain the search.
Both tools run float32 on the CPU with their default thread pools (TensorFlow's intra-op pool
and XLA:CPU's, each over all cores); the timed tool runs alone. haviv_tf is warmed up at the
full batch before every timed run (its XLA compile excluded). Prints Markdown tables, the
machine context (cores, load average before and after, package versions, commit) and the
command.
"""

import argparse
import dataclasses
import os
import shlex
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf

import common  # pylint: disable=g-bad-import-order  (benchmarks/common.py)
from haviv_tf import dynamics
from haviv_tf.analysis import pipeline
from haviv_tf.probes import slow_points
from haviv_tf.task import trials

BP_NUM_BATCH = 100      # find_fps_with_gd_method's default chunk (num_batch)
BP_TOLERANCE = 1e-5     # its default tolerance on the mean loss
LONG = 5                # the long BrainPy run is LONG x --iters iterations


def jax_gru(cell, x_bar):
  """f(h) = F(h, x̄) of the paper-form GRU for one state h [n] (BrainPy vmaps it)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  u = cell.units
  kernel, recurrent, bias = (jnp.asarray(w.numpy(), jnp.float32)
                             for w in (cell.kernel, cell.recurrent_kernel, cell.bias))
  xp = jnp.asarray(x_bar, jnp.float32) @ kernel + bias   # W x̄ + b, once
  r_zr, r_c = recurrent[:, :2 * u], recurrent[:, 2 * u:]

  def f(h):
    zr = jax.nn.sigmoid(xp[:2 * u] + h @ r_zr)
    z, r = zr[:u], zr[u:]
    c = jnp.tanh(xp[2 * u:] + (r * h) @ r_c)
    return (1 - z) * h + z * c

  return f


def bp_run(bp, f, inits, num_opt, num_batch, tolerance=0.0):
  """One BrainPy search from `inits`; (wall s, states [N, n], iterations run)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  finder = bp.analysis.SlowPointFinder(f_cell=f, f_type="discrete", verbose=False)
  cands = jnp.asarray(inits, jnp.float32)
  t0 = time.perf_counter()
  finder.find_fps_with_gd_method(cands, tolerance=tolerance, num_batch=num_batch,
                                 num_opt=num_opt)
  states = finder.fixed_points          # numpy: waits for the device
  sec = time.perf_counter() - t0
  return sec, states, int(finder.opt_losses.shape[0])


def commit():
  here = os.path.dirname(os.path.abspath(__file__))
  def git(*a):
    return subprocess.run(["git", "-C", here, *a], capture_output=True,
                          text=True).stdout.strip()
  rev = git("rev-parse", "--short", "HEAD") or "?"
  return rev + (" (dirty)" if git("status", "--porcelain", "--untracked-files=no") else "")


def warm(finder, inits, x_bar):
  """One chunk at the full batch: XLA compiles for this shape before the timed run."""
  finder.minimize(inits, x_bar, callback=lambda t, q: True, progress=False)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True, help="a trained haviv_tf GRU run")
  parser.add_argument("--num_states", type=int, default=1000)
  parser.add_argument("--iters", type=int, default=300,
                      help="iterations per timing run (BrainPy's long run: 5 x this)")
  parser.add_argument("--repeats", type=int, default=3, help="timing runs per tool (best kept)")
  parser.add_argument("--max_iters", type=int, default=20_000,
                      help="haviv_tf's own-stop iteration cap (its default 20,000)")
  parser.add_argument("--bp_max_iters", type=int, default=10_000,
                      help="BrainPy's num_opt, its own-stop and same-target cap (default 10,000)")
  parser.add_argument("--target", type=float, default=None,
                      help="median q target (default: the larger of the own-stop medians)")
  args = parser.parse_args()
  if args.iters <= 0 or args.repeats <= 0 or args.num_states <= 0:
    sys.exit("error: --iters, --repeats and --num_states must be positive")
  print(common.machine_context())
  print(f"command: python3 {shlex.join(sys.argv)}")
  import jax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  import brainpy as bp  # pylint: disable=g-import-not-at-top
  print(f"commit {commit()}; brainpy {bp.__version__}, jax {jax.__version__}, jaxlib "
        f"{jaxlib.__version__} ({jax.default_backend()}, {jax.devices()}), numpy "
        f"{np.__version__}; TensorFlow intra-op threads "
        f"{tf.config.threading.get_intra_op_parallelism_threads() or 'default (all cores)'}, "
        f"XLA:CPU's own pool for JAX")

  cfg, source, run = pipeline.restore(args.workdir)
  if cfg.arch != "gru":
    sys.exit(f"error: {args.workdir} is a {cfg.arch} run; the comparison needs a GRU")
  model = run.model
  gen = trials.generator_for(source, "test", cfg)
  x_bar = slow_points.mean_input_features(model, gen, seed=cfg.seed)
  inits, _, _ = slow_points.states_of_new_trials(model, gen, args.num_states, seed=cfg.seed)
  n, units = len(inits), model.units

  # One step agrees (float32 both), and BrainPy's loss on q's scale.
  f = jax_gru(model.cell, x_bar)
  feats = np.tile(x_bar[None], [n, 1])
  want = model.transition(tf.constant(inits), tf.constant(feats)).numpy()
  got = np.asarray(jax.vmap(f)(jax.numpy.asarray(inits)))
  err = float(np.max(np.abs(got - want)))
  print(f"one step, JAX port vs TensorFlow over {n} states: max |difference| {err:.1e} in "
        f"float32")
  if not err <= 1e-5:
    sys.exit("error: the JAX port disagrees with the TensorFlow cell by more than 1e-5")
  probe = bp.analysis.SlowPointFinder(f_cell=f, f_type="discrete", verbose=False)
  h0 = jax.numpy.asarray(inits)
  bp_loss = np.asarray(probe.f_loss(h0, jax.vmap(f)(h0), axis=1))   # its default loss
  ratio = bp_loss / np.maximum(common.q_of(model, inits, x_bar), 1e-30)
  print(f"BrainPy's per-point loss / q on the starting states: median {np.median(ratio):.5f} "
        f"(2/n = {2 / units:.5f}): its loss is ||F(h) - h||^2 / n; its default tolerance "
        f"{BP_TOLERANCE:g} on the mean loss is mean q < {BP_TOLERANCE * units / 2:.3g}")

  # Per iteration, no stopping.
  rows = []
  finder = dynamics.SlowPointFinder(model, dynamics.SlowPointConfig(
      max_iters=args.iters, early_stop=False, chunk=args.iters))
  finder.minimize(inits, x_bar, progress=False)          # compile at the full batch
  times = []
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    s_fixed, _, _ = finder.minimize(inits, x_bar, progress=False)
    times.append(time.perf_counter() - t0)
  ours_it = min(times) / args.iters
  rows.append(("haviv_tf (projected Adam, XLA)", ours_it, common.box_stats(s_fixed)))
  bp_run(bp, f, inits, BP_NUM_BATCH, BP_NUM_BATCH)        # warm-up (JAX's first use)
  short, long_ = [], []
  for _ in range(args.repeats):
    sec, s_bp, _ = bp_run(bp, f, inits, args.iters, args.iters)
    short.append(sec)
    sec, _, _ = bp_run(bp, f, inits, LONG * args.iters, LONG * args.iters)
    long_.append(sec)
  bp_it = (min(long_) - min(short)) / ((LONG - 1) * args.iters)
  if bp_it > 0:
    overhead = min(short) - args.iters * bp_it
    rows.append(("BrainPy, steady state (compile excluded)", bp_it, common.box_stats(s_bp)))
    rows.append((f"BrainPy as called (one trace + compile of {overhead:.2f} s per "
                 f"{BP_NUM_BATCH}-iteration chunk)", bp_it + overhead / BP_NUM_BATCH,
                 common.box_stats(s_bp)))
  else:
    bp_it = None    # the compile time's spread exceeds the difference of the two runs
    rows.append((f"BrainPy, whole call of {args.iters} iterations (compile included; the "
                 f"steady state was not resolved: raise --iters or --repeats)",
                 min(short) / args.iters, common.box_stats(s_bp)))
  print(f"\n### Per iteration ({n} states, {units} units, {args.iters} iterations for "
        f"haviv_tf; BrainPy {args.iters} and {LONG * args.iters} in one chunk each; best of "
        f"{args.repeats})\n")
  print("| tool | ms / iteration | iterations / s | / haviv_tf | points outside the box | "
        "max abs h |")
  print("|---|---:|---:|---:|---:|---:|")
  for label, sec, box in rows:
    print(f"| {label} | {1e3 * sec:.3g} | {1 / sec:.0f} | {sec / ours_it:.1f}x | "
          f"{box['outside']} of {n} | {box['max_abs_h']:.3f} |")
  print(f"\nBrainPy one-chunk runs (s): {args.iters} iterations {[round(t, 2) for t in short]}, "
        f"{LONG * args.iters} iterations {[round(t, 2) for t in long_]}")

  # Each to its own stopping rule.
  own = []
  finder = dynamics.SlowPointFinder(model, dynamics.SlowPointConfig(max_iters=args.max_iters))
  warm(finder, inits, x_bar)
  t0 = time.perf_counter()
  s_own, _, it_own, info = finder.minimize(inits, x_bar, return_info=True, progress=False)
  t_own = time.perf_counter() - t0
  reasons = {r: int(np.sum(info["stop_reason"] == i)) for i, r in
             enumerate(dynamics.STOP_REASONS)}
  q_ours = common.q_of(model, s_own, x_bar)
  own.append((f"haviv_tf, default recipe (cap {args.max_iters})", t_own, int(it_own.max()),
              q_ours, common.box_stats(s_own), f"stop reasons {reasons}"))
  t_bp, s_bp, it_bp = bp_run(bp, f, inits, args.bp_max_iters, BP_NUM_BATCH, BP_TOLERANCE)
  q_bp = common.q_of(model, s_bp, x_bar)
  own.append((f"BrainPy, defaults (cap {args.bp_max_iters})", t_bp, it_bp, q_bp,
              common.box_stats(s_bp), f"mean loss < {BP_TOLERANCE:g} (mean q < "
              f"{BP_TOLERANCE * units / 2:.3g}) checked every {BP_NUM_BATCH}, or the cap"))
  print(f"\n### Each tool to its own stopping rule ({n} states)\n")
  print("| tool | wall s | iterations | median q | 90% q | max q | outside the box | max abs h "
        "| mean distance to the box | note |")
  print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
  for label, sec, iters, q, box, note in own:
    print(f"| {label} | {sec:.3g} | {iters} | {np.median(q):.2e} | {np.percentile(q, 90):.2e} | "
          f"{q.max():.2e} | {box['outside']} of {n} | {box['max_abs_h']:.3f} | "
          f"{box['mean_dist']:.3g} | {note} |")

  # Same target.
  target = args.target if args.target is not None else float(
      max(np.median(q_ours), np.median(q_bp)))
  finder = dynamics.SlowPointFinder(model, dataclasses.replace(
      dynamics.SlowPointConfig(), max_iters=args.max_iters, early_stop=False, chunk=50))
  warm(finder, inits, x_bar)
  hit = []
  t0 = time.perf_counter()
  s_hit, _, _ = finder.minimize(inits, x_bar, progress=False, callback=lambda t, q: (
      hit.append((time.perf_counter() - t0, t)) or True) if np.median(q) <= target else False)
  ours_hit = (hit[0] + (common.box_stats(s_hit),)) if hit else None
  bp_hit, k = None, BP_NUM_BATCH
  while k <= args.bp_max_iters:
    sec, s_k, _ = bp_run(bp, f, inits, k, BP_NUM_BATCH)
    if np.median(common.q_of(model, s_k, x_bar)) <= target:
      bp_hit = (sec, k, common.box_stats(s_k))
      break
    if k == args.bp_max_iters:
      break
    k = min(2 * k, args.bp_max_iters)   # the cap itself is tried last
  print(f"\n### Time to the same target: median q <= {target:.2e}\n")
  print("| tool | wall s | iterations | without compilation (iterations x steady ms) | "
        "outside the box |")
  print("|---|---:|---:|---:|---:|")
  for label, h, it in (("haviv_tf (checked every 50 iterations)", ours_hit, ours_it),
                       ("BrainPy (fresh run of that many iterations, chunks of 100)", bp_hit,
                        bp_it)):
    floor = f"{h[1] * it:.3g}" if h and it else "–"
    print(f"| {label} | " + (f"{h[0]:.3g} | {h[1]} | {floor} | "
                             f"{h[2]['outside']} of {n} |" if h else
                             "not reached | – | – | – |"))
  print(f"\nload average after: {common.load_average()}")


if __name__ == "__main__":
  main()
