"""How close one slow-point search iteration is to the machine's floor for its arithmetic.

  python3 benchmarks/search_floor.py [--num_states=1000] [--units=200] [--input_size=785] \
      [--iters=300] [--repeats=3]

One iteration of the search (haviv_tf.dynamics, projected Adam) on a GRU of `units` costs, per
point, the step F(h) and the gradient of q = ½‖F(h) − h‖² with respect to h: the cell's
recurrent product h·U ([units, 3 units]) forward and its transpose backward, six
[units × units] products in all (the input term W x̄ is one row, computed once). No tool that
iterates gradient descent on q can do less arithmetic per iteration. This script times, on a
keras.layers.GRUCell with random weights (the cost does not depend on the weights), at the
same batch and in the same kind of compiled XLA loop:

  search      the library's search (SlowPointFinder.minimize, early_stop off, every point
              running every iteration);
  grad        the step and gradient alone (h <- h - 1e-3 grad q, no Adam, no projection);
  matmuls     the six products alone, chained so that no iteration can be skipped
              (h <- h - 1e-6 (h U) Uᵀ with U of [units, 3 units]);
  peak        one large float32 product (4096³), the machine's best matmul rate.

Each row prints ms per iteration (best of --repeats, after a warm-up call), and GFLOP/s
counting the six products only (2 · N · units · 3 units · 2 flops per iteration). A tool that
is k times faster per iteration than `matmuls` would have to do less arithmetic or do it
faster than this machine's matmul kernels.
"""

import argparse
import time

import numpy as np
import tensorflow as tf
import keras

from haviv_tf import dynamics

from common import load_average, machine_context


def _best(fn, repeats):
  fn()  # warm-up: trace and compile
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return min(times)


def _loop(body, h0, iters):
  @tf.function(jit_compile=True)
  def run(h):
    return tf.while_loop(lambda i, h: i < iters, lambda i, h: (i + 1, body(h)), (0, h))[1]
  return lambda: run(h0).numpy()


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--num_states", type=int, default=1000)
  p.add_argument("--units", type=int, default=200)
  p.add_argument("--input_size", type=int, default=785)
  p.add_argument("--iters", type=int, default=300)
  p.add_argument("--repeats", type=int, default=3)
  a = p.parse_args(argv)
  print(machine_context())
  print("command: python3 benchmarks/search_floor.py " + " ".join(
      f"--{k}={v}" for k, v in vars(a).items()))
  keras.utils.set_random_seed(0)
  cell = keras.layers.GRUCell(a.units)
  cell.build((None, a.input_size))
  rng = np.random.default_rng(0)
  h0 = tf.constant(rng.uniform(-0.5, 0.5, (a.num_states, a.units)), tf.float32)
  x_bar = rng.uniform(0, 1, a.input_size).astype(np.float32)
  n, u = a.num_states, a.units
  flops = 2 * n * u * 3 * u * 2

  cfg = dynamics.SlowPointConfig(max_iters=a.iters, chunk=a.iters, early_stop=False)
  finder = dynamics.SlowPointFinder(cell, cfg)
  rows = [("search (SlowPointFinder, projected Adam)",
           _best(lambda: finder.minimize(h0.numpy(), x_bar, progress=False), a.repeats))]

  dyn = dynamics.as_dynamics(cell)
  xp = dyn.project(tf.constant(np.tile(x_bar, (n, 1))))

  def grad_step(h):
    with tf.GradientTape() as tape:
      tape.watch(h)
      q = 0.5 * tf.reduce_sum(tf.square(dyn.step(h, xp) - h))
    return h - 1e-3 * tape.gradient(q, h)
  rows.append(("step and gradient only", _best(_loop(grad_step, h0, a.iters), a.repeats)))

  U = tf.constant(rng.normal(0, 0.05, (u, 3 * u)), tf.float32)
  rows.append(("the six products only", _best(
      _loop(lambda h: h - 1e-6 * tf.matmul(tf.matmul(h, U), U, transpose_b=True), h0, a.iters),
      a.repeats)))

  big = tf.constant(rng.normal(0, 1, (4096, 4096)), tf.float32)
  peak_s = _best(tf.function(lambda: tf.matmul(big, big), jit_compile=True), a.repeats)
  peak = 2 * 4096 ** 3 / peak_s / 1e9

  print(f"\n{n} states, {u} units, {a.iters} iterations a call; best of {a.repeats}\n")
  print("| loop | ms / iteration | GFLOP/s (the six products) | / the six products |")
  print("|---|---:|---:|---:|")
  floor = rows[-1][1] / a.iters
  for name, secs in rows:
    ms = secs / a.iters
    print(f"| {name} | {1e3 * ms:.3f} | {flops / ms / 1e9:.0f} | {ms / floor:.2f}x |")
  print(f"\npeak: one 4096^3 float32 product, {1e3 * peak_s:.1f} ms, {peak:.0f} GFLOP/s; "
        f"the six products run at {flops / floor / 1e9 / peak:.0%} of it")
  print(f"load average after: {load_average()}")


if __name__ == "__main__":
  main()
