"""Bare train-step speed: float32 / XLA / bfloat16 front end, next to Keras's GRU and LSTM
layers and to the machine's matmul peak, all measured in one run.

  python3 benchmarks/step_speed.py [--steps 30] [--repeats 3] [--archs gru,lstm]

The step is DelayedClassifier.train_step on one pre-built batch of the quick MNIST preset
(batch 128, 20 frames, 785 inputs -> 200 units -> 11 outputs, weighted cross-entropy, Adam),
in tf.function with and without jit_compile, in float32 and with the mixed_bfloat16 front end
(--precision). The Keras peers are keras.layers.GRU(200, reset_after=False) /
keras.layers.LSTM(200) + Dense(11) under the same loss and optimizer, in tf.function with and
without XLA. The matmul peak is the best of float32 and bfloat16 products of the projection's
shape ([2560, 785] x [785, 600|800]) and a square 2048^3, with and without XLA. Figures are
medians of --repeats rounds in which every variant runs once (alternating, so a slow spell of
the machine hits them alike). GFLOP/s counts the matmul FLOPs of forward and backward
(train_throughput.step_flops).
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

import common  # pylint: disable=g-bad-import-order  (benchmarks/common.py)
from haviv_tf.base import config as config_lib
from haviv_tf.task import losses
from haviv_tf.training import checkpoints
from haviv_tf.task import trials
from train_throughput import step_flops  # pylint: disable=g-bad-import-order


def _time(fn, steps):
  out = fn()
  float(out)
  t0 = time.perf_counter()
  for _ in range(steps):
    out = fn()
  float(out)
  return (time.perf_counter() - t0) / steps


def matmul_peaks(steps):
  """{(shape name, dtype, xla): GFLOP/s}."""
  shapes = {"proj gru [2560,785]x[785,600]": (2560, 785, 600),
            "proj lstm [2560,785]x[785,800]": (2560, 785, 800),
            "square 2048^3": (2048, 2048, 2048)}
  out = {}
  for name, (m, k, n) in shapes.items():
    for dtype in (tf.float32, tf.bfloat16):
      a = tf.cast(tf.random.normal([m, k]), dtype)
      b = tf.cast(tf.random.normal([k, n]), dtype)
      for xla in (False, True):
        # Summed whole, so that no compiler can skip part of the product.
        f = tf.function(lambda a=a, b=b: tf.reduce_sum(tf.cast(tf.matmul(a, b), tf.float32)),
                        jit_compile=xla)
        f()
        out[(name, dtype.name, xla)] = 2 * m * k * n / _time(f, steps) / 1e9
  return out


def our_step(cfg, source, batch, xla):
  with tempfile.TemporaryDirectory() as workdir:
    run = checkpoints.Run(cfg, workdir, source.frame_shape)
  fn = tf.function(lambda: run.model.train_step(batch)["loss"], jit_compile=xla)
  fn()
  return fn


def keras_step(cfg, batch, xla):
  keras.utils.set_random_seed(0)
  rnn = (keras.layers.GRU(cfg.units, reset_after=False, return_sequences=True)
         if cfg.arch == "gru" else keras.layers.LSTM(cfg.units, return_sequences=True))
  head = keras.layers.Dense(config_lib.NUM_CLASSES + 1)
  inputs, targets = batch
  rnn.build(inputs.shape)
  head.build((None, cfg.units))
  variables = rnn.trainable_variables + head.trainable_variables
  opt = keras.optimizers.Adam(1e-3, epsilon=1e-8)
  opt.build(variables)

  def step():
    with tf.GradientTape() as tape:
      logits = head(rnn(inputs))
      loss = losses.masked_null_label(targets["labels"], logits, targets["weights"],
                                      targets["class_mask"])
    opt.apply(tape.gradient(loss, variables), variables)
    return loss
  fn = tf.function(step, jit_compile=xla)
  fn()
  return fn


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=30, help="timed steps per figure and round")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--archs", default="gru,lstm")
  args = parser.parse_args()
  source = __import__("haviv_tf.task.datasets", fromlist=["x"]).load("mnist_sample")
  print(common.machine_context())
  print(f"{args.steps} timed steps per figure, median of {args.repeats} alternating rounds\n")

  peaks = matmul_peaks(max(5, args.steps // 3))
  print("## Matmul peak (this run)\n")
  print("| product | float32 GFLOP/s | float32 XLA | bfloat16 GFLOP/s | bfloat16 XLA |")
  print("| --- | ---: | ---: | ---: | ---: |")
  for name in dict.fromkeys(k[0] for k in peaks):
    print(f"| {name} | " + " | ".join(f"{peaks[(name, d, x)]:.0f}" for d in ("float32", "bfloat16")
                                        for x in (False, True)) + " |")
  peak32 = max(v for k, v in peaks.items() if k[1] == "float32")
  peak16 = max(v for k, v in peaks.items() if k[1] == "bfloat16")
  print(f"\npeak: float32 {peak32:.0f} GFLOP/s, bfloat16 {peak16:.0f} GFLOP/s\n", flush=True)

  for arch in args.archs.split(","):
    cfg = config_lib.resolve("quick", "mnist", dict(arch=arch, protocol="nacu", seed=0))
    gen = trials.generator_for(source, "train", cfg)
    b = gen.sample(tf.constant([0, 1], tf.int64), cfg.batch_size, cfg.seq_len)
    batch = (b["inputs"], {k: b[k] for k in ("labels", "weights", "class_mask")})
    bf16 = config_lib.Config.from_dict(dict(cfg.to_dict(), precision="mixed_bfloat16"))
    variants = {
        "train_step float32, no XLA (fit() before --jit_compile)": our_step(cfg, source, batch, False),
        "train_step float32, XLA (default)": our_step(cfg, source, batch, True),
        "train_step mixed_bfloat16, no XLA": our_step(bf16, source, batch, False),
        "train_step mixed_bfloat16, XLA": our_step(bf16, source, batch, True),
        f"keras.layers.{arch.upper()} + Dense, no XLA": keras_step(cfg, batch, False),
        f"keras.layers.{arch.upper()} + Dense, XLA": keras_step(cfg, batch, True),
    }
    rounds = {k: [] for k in variants}
    for _ in range(args.repeats):
      for k, fn in variants.items():
        rounds[k].append(_time(fn, args.steps))
    ms = {k: 1e3 * float(np.median(v)) for k, v in rounds.items()}
    flops = step_flops(cfg, gen.input_size)
    base = ms["train_step float32, no XLA (fit() before --jit_compile)"]
    print(f"## {arch.upper()}: batch {cfg.batch_size}, {cfg.seq_len} frames, "
          f"{gen.input_size} -> {cfg.units} -> 11; {flops / 1e9:.2f} GFLOP per step\n")
    print("| step | ms / step (median) | range | speed-up vs. float32 no XLA | GFLOP/s | "
          "% of float32 peak | % of bfloat16 peak |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for k, v in ms.items():
      lo, hi = 1e3 * min(rounds[k]), 1e3 * max(rounds[k])
      g = flops / v / 1e6
      print(f"| {k} | {v:.1f} | {lo:.1f}-{hi:.1f} | {base / v:.2f} | {g:.0f} | "
            f"{100 * g / peak32:.0f} | {100 * g / peak16:.0f} |")
    print(flush=True)
  print(f"load average after: {common.load_average()}")


if __name__ == "__main__":
  main()
