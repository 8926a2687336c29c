"""The trajectory cloud of a CIFAR-10 network: noise frame by frame against an encoded bank.

  python3 benchmarks/cloud_throughput.py [--data_dir ../shared/data] [--per_class 5] \
      [--steps 1000] [--archs gru,lstm]

find_slow_points runs a cloud of test trials (predictors.trajectory_cloud: 50 per class in the
pipeline, to step 1000) before every search. With the CNN front end each noise frame costs a
CNN pass; a noise bank (rollouts.Rollout, as the evaluation of a network trained with one)
encodes 4096 images once per batch of trials instead. For an untrained quick-preset CIFAR-10
network (keras seed 0) this times one cloud each way after a short warm-up cloud (tracing
excluded): frame by frame with --per_class trials per class (it is slow), the bank with the
pipeline's 50 (two batches of 250, a bank each). It prints the measured seconds and
trial-steps per second of each, and the frame-by-frame seconds of a 500-trial cloud at the
measured rate (its cost is a CNN pass per trial-step: linear in the trials; marked as
extrapolated), with the machine context. Untrained weights: a step's cost does not depend on
them.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # pylint: disable=g-import-not-at-top
import tensorflow as tf

import common  # pylint: disable=g-bad-import-order  (benchmarks/common.py)
from haviv_tf.base import config as config_lib
from haviv_tf.models import network
from haviv_tf.probes import predictors
from haviv_tf.probes import rollouts
from haviv_tf.task import trials

PIPELINE_TRIALS = 500   # 50 per class, predictors.DiagnosticsConfig's default


def time_cloud(model, generator, per_class, steps, bank) -> float:
  """Seconds of one cloud of `per_class` trials per class to step `steps` (after a warm-up)."""
  predictors.trajectory_cloud(model, generator, (2,), per_class=1, noise_bank=bank)
  t0 = time.perf_counter()
  predictors.trajectory_cloud(model, generator, (steps,), per_class=per_class, noise_bank=bank)
  return time.perf_counter() - t0


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", default=common.DEFAULT_DATA_DIR)
  parser.add_argument("--archs", default="gru,lstm")
  parser.add_argument("--per_class", type=int, default=5, help="trials per class per cloud")
  parser.add_argument("--steps", type=int, default=1000, help="steps each trial runs")
  args = parser.parse_args()
  source = common.load_source("cifar10", args.data_dir)
  print(common.machine_context())
  origin = source.origin.replace(os.path.abspath(args.data_dir), "<data_dir>")
  print(f"data: {origin}; TensorFlow threads: intra "
        f"{tf.config.threading.get_intra_op_parallelism_threads() or 'default'}\n")
  bank = rollouts.EVAL_NOISE_BANK
  full = PIPELINE_TRIALS // 10
  print(f"| arch | units | steps | frame by frame: trials | s | trial-steps/s | "
        f"bank of {bank}: trials | s | trial-steps/s | rate ratio | frame by frame at "
        f"{PIPELINE_TRIALS} trials (extrapolated) |")
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for arch in args.archs.split(","):
    cfg = config_lib.resolve("quick", "cifar10", dict(arch=arch))
    keras.utils.set_random_seed(0)
    model = network.build(cfg, source.frame_shape)
    generator = trials.generator_for(source, "test", cfg)
    fresh = time_cloud(model, generator, args.per_class, args.steps, 0)
    banked = time_cloud(model, generator, full, args.steps, bank)
    rate_f = 10 * args.per_class * (args.steps + 1) / fresh
    rate_b = PIPELINE_TRIALS * (args.steps + 1) / banked
    print(f"| {arch} | {cfg.units} | {args.steps} | {10 * args.per_class} | {fresh:.1f} | "
          f"{rate_f:,.0f} | {PIPELINE_TRIALS} | {banked:.1f} | {rate_b:,.0f} | "
          f"{rate_b / rate_f:.1f} | {PIPELINE_TRIALS * (args.steps + 1) / rate_f:.0f} s |")
  print(f"\nload average after: {common.load_average()}")


if __name__ == "__main__":
  main()
