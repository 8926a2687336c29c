"""Slow-point search and long-delay evaluation throughput, against the bare cell cost.

  python3 benchmarks/slow_points_throughput.py [--data_dir ../shared/data] [--time_cap 60]

For untrained paper-size MNIST networks (200 units, GRU and LSTM, keras seed 0) it measures,
in one run:
  search   for N = 10 .. 10000 starting states (tanh of unit Gaussian noise) and the mean input
           x̄ (mean_input_features: [pixel mean, trigger 0]): iterations/s of SlowPointFinder's
           compiled chunk (the first, tracing/compiling call excluded), and the wall time of
           SlowPointFinder.minimize until max q < q_tol, its max_iters lowered to the number of
           iterations the measured rate fits into --time_cap seconds;
  F        on the same N states: one forward + backward pass of q = ½ Σ ||F(s, x̄) - s||²
           (speed coordinates, as the finder) w.r.t. s, as a tf.function compiled like the
           finder's chunk, timed over many calls; and the same pass run back to back inside one
           compiled tf.while_loop (no per-call dispatch); the ratios per-iteration / fwd+bwd
           say what the search adds around the gradient (Adam update, freezing);
  eval     trial-steps/s of evaluation.Evaluator at one long delay (t_s = 0, so every trial
           runs delay + 1 steps) against a compiled tf.while_loop of the same number of
           model.step calls on pre-built inputs (no noise, stimulus or report bookkeeping),
           and, to explain the gap, the time of a loop drawing the same noise frames alone.
The search figures time SlowPointFinder's (private) compiled chunk by wrapping it, and run
minimize() with config fields replaced (learning rate etc. stay the defaults).
Prints a Markdown table per section with the machine context.
"""

import argparse
import dataclasses
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

import common  # pylint: disable=g-bad-import-order  (benchmarks/common.py)
from haviv_tf import dynamics
from haviv_tf.base import config as config_lib
from haviv_tf.probes import evaluation
from haviv_tf.task import losses
from haviv_tf.models import network
from haviv_tf.probes import slow_points
from haviv_tf.task import trials


def build_model(arch):
  cfg = config_lib.resolve("paper", "mnist", dict(arch=arch))
  keras.utils.set_random_seed(0)
  return cfg, network.build(cfg, (28, 28, 1))


def per_call_seconds(fn, min_seconds=1.0, min_calls=3):
  """Median seconds per call of fn() over batches of calls lasting >= min_seconds in total.

  fn must return something with .numpy() (forces the result before the clock stops).
  """
  fn().numpy()  # not timed: a first call may trace or compile
  t0 = time.perf_counter()
  fn().numpy()
  once = time.perf_counter() - t0
  calls = max(min_calls, int(np.ceil(min_seconds / max(once, 1e-6))))
  batch = max(1, calls // min_calls)
  times = []
  for _ in range(min_calls):
    t0 = time.perf_counter()
    for _ in range(batch):
      out = fn()
    out.numpy()
    times.append((time.perf_counter() - t0) / batch)
  return statistics.median(times)


# -- section 1 and 2: the slow-point search and F alone -----------------------------------------


class ChunkTimer:
  """Stands in for a SlowPointFinder's compiled chunk: calls it and records each call's time.

  minimize() passes its whole search state through the chunk, so wrapping the call is enough:
  nothing here depends on the chunk's arguments.
  """

  def __init__(self, finder):
    self.chunk, self.times = finder._chunk, []  # pylint: disable=protected-access
    finder._chunk = self  # pylint: disable=protected-access

  def __call__(self, *args):
    t0 = time.perf_counter()
    out = self.chunk(*args)
    tf.nest.flatten(out)[-1].numpy()  # every output of the call is ready with this one
    self.times.append(time.perf_counter() - t0)
    return out


def run_minimize(finder, init_states, features, **config):
  """finder.minimize under config fields replaced for this call (same compiled chunk).

  Returns:
    seconds, iterations run (updates of the longest-running point, + 1 for the final check
    iteration when every point converged), and minimize's (states, q, iters).
  """
  base = finder.config
  finder.config = dataclasses.replace(base, **config)
  try:
    t0 = time.perf_counter()
    states, q, iters = finder.minimize(init_states, features)
    seconds = time.perf_counter() - t0
  finally:
    finder.config = base
  done = bool(np.all(q < base.q_tol))
  return seconds, int(iters.max()) + int(done and iters.max() > 0), (states, q, iters)


def fwd_bwd_fns(model, states, features, jit_compile):
  """(one pass per call, K passes in one while_loop) of q and dq/ds on fixed states."""
  s = tf.constant(states, tf.float32)
  xp = model.cell.project(tf.broadcast_to(features[None, :], [len(states), features.shape[-1]]))

  def q_and_grad(s):
    with tf.GradientTape() as tape:
      tape.watch(s)
      q = 0.5 * tf.reduce_sum(losses.speed_squared(model.cell, s, model.cell.step(xp, s)))
    return q, tape.gradient(q, s)

  @tf.function(jit_compile=jit_compile)
  def once():
    return q_and_grad(s)[1]

  @tf.function(jit_compile=jit_compile)
  def loop(num_passes):
    def body(k, acc):
      _, g = q_and_grad(s + acc)  # acc (~0) feeds back: no pass can be merged or hoisted
      return k + 1, acc + 1e-30 * g
    return tf.while_loop(lambda k, _: k < num_passes, body,
                         (tf.constant(0), tf.zeros_like(s)))[1]

  return once, loop


def bench_search(model, init_states, features, sp_config, time_cap, min_seconds):
  """Figures for one batch of starting states (see the module docstring)."""
  out = {}
  finder = dynamics.SlowPointFinder(model, sp_config)
  timer = ChunkTimer(finder)
  chunk = sp_config.chunk

  # Iteration rate: one chunk of `steps` iterations per minimize call, always from the same
  # starting states (the search never gets near q_tol in it).
  run_minimize(finder, init_states, features, max_iters=1, chunk=1)
  out["compile_s"] = timer.times[-1]
  run_minimize(finder, init_states, features, max_iters=1, chunk=1)
  # >= 10 iterations per call: the chunk's fixed costs (final q, outputs) stay small.
  steps = int(np.clip(min_seconds / 3 / timer.times[-1], min(10, chunk), chunk))
  per_iter = []
  while len(per_iter) < 3 or sum(per_iter) * steps < min_seconds:
    _, ran, _ = run_minimize(finder, init_states, features, max_iters=steps, chunk=steps)
    per_iter.append(timer.times[-1] / max(ran, 1))
    if len(per_iter) >= 50:
      break
  out["iter_s"] = statistics.median(per_iter)

  # F alone on the same states.
  once_fn, loop_fn = fwd_bwd_fns(model, init_states, features, sp_config.jit_compile)
  out["fb_call_s"] = per_call_seconds(once_fn, min_seconds)
  passes = tf.constant(steps)
  out["fb_loop_s"] = per_call_seconds(lambda: loop_fn(passes), min_seconds) / steps

  # Time to max q < q_tol: minimize() as configured, with max_iters lowered to what the measured
  # rate fits into time_cap.
  cap = min(sp_config.max_iters, max(1, int(time_cap / out["iter_s"])))
  seconds, ran, (_, q, _) = run_minimize(finder, init_states, features, max_iters=cap)
  out.update(search_s=seconds, search_iters=ran, max_q=float(q.max()),
             converged=bool(q.max() < sp_config.q_tol),
             num_converged=int(np.sum(q < sp_config.q_tol)),
             limit="max_iters" if cap == sp_config.max_iters else "time cap")
  return out


def search_section(archs, generator, sizes, sp_config, time_cap, min_seconds):
  print(f"## Slow-point search (SlowPointConfig defaults: q_tol {sp_config.q_tol:g}, chunk "
        f"{sp_config.chunk}, max_iters {sp_config.max_iters}, jit_compile "
        f"{sp_config.jit_compile}; max_iters lowered to fit the search into {time_cap:g} s)\n")
  print("| arch | N | first call s (trace + compile) | iterations/s | ms / iteration | "
        "F fwd+bwd ms (per call) | iteration / fwd+bwd call | F fwd+bwd ms (in loop) | "
        "iteration / fwd+bwd in loop | "
        "time to max q < q_tol | iterations | iterations/s in search | points with q < q_tol | "
        "max q |")
  print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
        "---: | ---: |", flush=True)
  for arch in archs:
    _, model = build_model(arch)
    features = tf.constant(slow_points.mean_input_features(model, generator))
    for n in sizes:
      rng = np.random.default_rng(n)
      init = np.tanh(rng.standard_normal([n, model.state_size])).astype(np.float32)
      r = bench_search(model, init, features, sp_config, time_cap, min_seconds)
      if r["converged"]:
        reached = f"{r['search_s']:.2f} s"
      else:
        reached = f"not reached in {r['search_s']:.1f} s ({r['limit']})"
      print(f"| {arch} | {n} | {r['compile_s']:.1f} | {1 / r['iter_s']:.1f} | "
            f"{1e3 * r['iter_s']:.3f} | {1e3 * r['fb_call_s']:.3f} | "
            f"{r['iter_s'] / r['fb_call_s']:.2f} | {1e3 * r['fb_loop_s']:.3f} | "
            f"{r['iter_s'] / r['fb_loop_s']:.2f} | {reached} | {r['search_iters']} | "
            f"{r['search_iters'] / r['search_s']:.1f} | "
            f"{r['num_converged']} / {n} | {r['max_q']:.3g} |", flush=True)
  print()


# -- section 3: long-delay evaluation -----------------------------------------------------------


def step_loop_fn(model):
  """A compiled loop of model.step calls over a bank of pre-built inputs [K, n, input_size]."""

  @tf.function
  def run(bank, num_steps):
    k, n = tf.shape(bank)[0], tf.shape(bank)[1]

    def body(t, state, logits):
      state, logits = model.step(state, bank[tf.math.floormod(t, k)])
      return t + 1, state, logits

    _, state, logits = tf.while_loop(
        lambda t, *_: t < num_steps, body,
        (tf.constant(0), model.initial_state(n), tf.zeros([n, network.NUM_OUTPUTS])))
    return state, logits

  return run


def noise_loop_fn(generator):
  """A compiled loop drawing the Evaluator's noise frames alone, one [n, frame_size] per step."""

  @tf.function
  def run(seed, n, num_steps):
    def body(t, frame):
      return t + 1, generator.noise(seed, t, n)

    return tf.while_loop(lambda t, _: t < num_steps, body,
                         (tf.constant(0), tf.zeros([n, generator.frame_size])))[1]

  return run


def eval_section(archs, generator, delay, num_trials, t_max, seed, xla=True):
  steps = delay + 1  # delay >= t_max: every trial has t_s = 0, t_a = delay
  print(f"## Evaluation at delay {delay}: {num_trials} trials x {steps} steps\n")
  print("| arch | Evaluator s | Evaluator trial-steps/s | model.step loop s | "
        "model.step loop trial-steps/s | Evaluator / model.step loop | noise frames alone s | "
        "Evaluator with XLA s | XLA trial-steps/s |")
  print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)
  for arch in archs:
    _, model = build_model(arch)
    evaluator = evaluation.Evaluator(model, generator, t_max)
    evaluator.evaluate([delay], 10, seed)  # traces once (delay and trial count are tensors)
    t0 = time.perf_counter()
    evaluator.evaluate([delay], num_trials, seed)
    eval_s = time.perf_counter() - t0
    xla_s = None
    if xla:
      compiled = evaluation.Evaluator(model, generator, t_max, jit_compile=True)
      compiled.evaluate([delay], num_trials, seed)  # compiles once for this trial count
      t0 = time.perf_counter()
      compiled.evaluate([delay], num_trials, seed)
      xla_s = time.perf_counter() - t0

    noise = tf.stack([generator.noise(tf.constant([seed, 1], tf.int64), t, num_trials)
                      for t in range(4)])
    bank = tf.concat([noise, tf.zeros([4, num_trials, 1])], axis=-1)
    run = step_loop_fn(model)
    run(bank, tf.constant(2))[0].numpy()  # traces once
    t0 = time.perf_counter()
    run(bank, tf.constant(steps))[0].numpy()
    loop_s = time.perf_counter() - t0

    noise_fn = noise_loop_fn(generator)
    seed_t = tf.constant([seed, 2], tf.int64)
    noise_fn(seed_t, tf.constant(num_trials), tf.constant(2)).numpy()  # traces once
    t0 = time.perf_counter()
    noise_fn(seed_t, tf.constant(num_trials), tf.constant(steps)).numpy()
    noise_s = time.perf_counter() - t0
    work = num_trials * steps
    print(f"| {arch} | {eval_s:.1f} | {work / eval_s:,.0f} | {loop_s:.1f} | "
          f"{work / loop_s:,.0f} | {eval_s / loop_s:.2f} | {noise_s:.1f} | "
          + (f"{xla_s:.1f} | {work / xla_s:,.0f} |" if xla_s else "– | – |"), flush=True)
  print()


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", default=common.DEFAULT_DATA_DIR)
  parser.add_argument("--archs", default="gru,lstm")
  parser.add_argument("--sizes", default="10,100,1000,10000",
                      help="numbers of starting states for the search")
  parser.add_argument("--time_cap", type=float, default=60.0,
                      help="seconds at most per search to max q < q_tol")
  parser.add_argument("--min_seconds", type=float, default=2.0,
                      help="timed seconds at least per iteration-rate / fwd+bwd figure")
  parser.add_argument("--delay", type=int, default=1000)
  parser.add_argument("--eval_trials", type=int, default=1000)
  parser.add_argument("--sections", default="search,eval")
  parser.add_argument("--eval_xla", action=argparse.BooleanOptionalAction, default=True,
                      help="also time the evaluation under XLA (compiled twice per arch: at "
                      "delay 10,000 that is most of the run)")
  args = parser.parse_args()
  source = common.load_mnist(args.data_dir)
  cfg = config_lib.resolve("paper", "mnist", {})
  generator = trials.generator_for(source, "test", cfg)
  if args.delay < cfg.seq_len:
    parser.error(f"--delay must be >= seq_len ({cfg.seq_len}) so that every trial starts at 0")
  archs = args.archs.split(",")
  sections = args.sections.split(",")
  print(common.machine_context())
  print(f"data: {source.origin}; untrained networks, {cfg.units} units, keras seed 0\n")
  if "search" in sections:
    search_section(archs, generator, [int(n) for n in args.sizes.split(",")],
                   dynamics.SlowPointConfig(), args.time_cap, args.min_seconds)
  if "eval" in sections:
    eval_section(archs, generator, args.delay, args.eval_trials, cfg.seq_len, cfg.seed,
                 args.eval_xla)
  print(f"load average after: {common.load_average()}")


if __name__ == "__main__":
  main()
