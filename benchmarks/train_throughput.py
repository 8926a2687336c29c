"""Training throughput: the full trainer vs. the bare train step, and trial synthesis rate.

  python3 benchmarks/train_throughput.py [--data_dir ../shared/data] [--steps 200]

For MNIST GRU and LSTM at paper size (200 units, batch 128, 20 frames) it measures, in one run:
  full     steps/s of train.train(): tf.data trial synthesis + fit() + train_step + TensorBoard
           scalars + checkpoint, timed over the second of two fit() epochs (the first traces);
  compute  steps/s of the same compiled train_step fed one pre-built batch (no input pipeline);
  trials   batches/s of the trial pipeline alone (tf.data, parallel map, prefetch);
and the achieved GFLOP/s from an analytic count of the step's matmul FLOPs (forward + backward).
Prints a Markdown table with the machine context.
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # pylint: disable=g-import-not-at-top
import tensorflow as tf

import common  # pylint: disable=g-bad-import-order  (benchmarks/common.py)
from haviv_tf import config as config_lib
from haviv_tf import curricula
from haviv_tf import train
from haviv_tf import trials


class _EpochTimer(keras.callbacks.Callback):

  def __init__(self):
    super().__init__()
    self.times = []

  def on_epoch_begin(self, epoch, logs=None):
    self._t = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    self.times.append(time.perf_counter() - self._t)


def step_flops(cfg, input_size):
  """Matmul FLOPs of one training step (forward + backward; no input gradient for frames)."""
  b, t, u = cfg.batch_size, cfg.seq_len, cfg.units
  g = (3 if cfg.arch == "gru" else 4) * u
  proj = 2 * b * t * input_size * g        # W x for all frames
  rec = 2 * b * t * u * g                  # U h per step
  head = 2 * b * t * u * 11
  return 2 * proj + 3 * rec + 3 * head     # proj: fwd + weight grad; others: fwd + 2 grads


def bench(cfg, source, steps):
  out = {}
  with tempfile.TemporaryDirectory() as workdir:
    full_cfg = config_lib.Config.from_dict(dict(
        cfg.to_dict(), train_steps=2 * steps, checkpoint_every=steps, log_every=100))
    timer = _EpochTimer()
    train.train(full_cfg, workdir, source, verbose=0, extra_callbacks=[timer])
    out["full"] = steps / timer.times[1]

  keras.utils.set_random_seed(0)
  with tempfile.TemporaryDirectory() as workdir:
    run = train.Run(cfg, workdir, source.frame_shape)
  gen = trials.generator_for(source, "train", cfg)
  batch = gen.sample(tf.constant([0, 1], tf.int64), cfg.batch_size, cfg.seq_len)
  data = (batch["inputs"], {k: batch[k] for k in ("labels", "weights", "class_mask")})
  step = tf.function(lambda: run.model.train_step(data))
  step()
  for _ in range(5):
    step()
  t0 = time.perf_counter()
  for _ in range(steps):
    logs = step()
  float(logs["loss"])
  out["compute"] = steps / (time.perf_counter() - t0)

  ds = gen.training_dataset(0, cfg.batch_size, cfg.seq_len, curricula.for_config(cfg))
  it = iter(ds)
  for _ in range(20):
    next(it)
  n = 5 * steps
  t0 = time.perf_counter()
  for _ in range(n):
    x, _ = next(it)
  out["trials"] = n / (time.perf_counter() - t0)
  out["gflops"] = step_flops(cfg, gen.input_size) * out["compute"] / 1e9
  out["gflops_full"] = step_flops(cfg, gen.input_size) * out["full"] / 1e9
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", default=common.DEFAULT_DATA_DIR)
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--archs", default="gru,lstm")
  args = parser.parse_args()
  source = common.load_mnist(args.data_dir)
  print(common.machine_context())
  print(f"data: {source.origin}; {args.steps} timed steps per figure\n")
  print("| arch | full trainer steps/s | bare train_step steps/s | full / bare | "
        "trial batches/s | trials / full | GFLOP/s (bare) | GFLOP/s (full) |")
  print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
  for arch in args.archs.split(","):
    cfg = config_lib.resolve("paper", "mnist", dict(arch=arch, protocol="nacu", seed=0))
    r = bench(cfg, source, args.steps)
    print(f"| {arch} | {r['full']:.2f} | {r['compute']:.2f} | {r['full'] / r['compute']:.2f} | "
          f"{r['trials']:.1f} | {r['trials'] / r['full']:.1f} | {r['gflops']:.1f} | "
          f"{r['gflops_full']:.1f} |", flush=True)
  print(f"\nload average after: {common.load_average()}")


if __name__ == "__main__":
  main()
