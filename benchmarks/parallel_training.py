"""How to spend the cores on a grid: one training with every thread, or several side by side.

  python3 benchmarks/parallel_training.py [--data_dir ../shared/data] [--steps 300]
      [--preset paper] [--layouts 1x2,2x1]

A layout WxT runs W trainings at once (GRU, LSTM, GRU, ... as a grid's workers would), each a
process of its own with T TensorFlow threads (the sweep's `thread_env`). Each process runs the
full trainer (`train.train`: tf.data trials, fit, TensorBoard scalars, checkpoints) on MNIST
VoCu at the preset's size for two epochs of --steps steps and times the second (the first
traces). A layout's throughput is network-steps per second, what a sweep's wall time divides
by: the sum of its processes' steps/s; for one training at a time (W = 1), a GRU then an LSTM
are timed one after the other and the figure is 2 / (1/r_GRU + 1/r_LSTM). Prints a Markdown table with the machine context; the
layouts run one after another, so run it on an otherwise idle machine.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _worker(args):
  """One training; prints one JSON line: steps/s of its second epoch, and when that ran."""
  import keras  # pylint: disable=g-import-not-at-top
  import common  # pylint: disable=g-import-not-at-top,g-bad-import-order
  from haviv_tf.base import config as config_lib  # pylint: disable=g-import-not-at-top
  from haviv_tf.training import train  # pylint: disable=g-import-not-at-top

  class Timer(keras.callbacks.Callback):
    def __init__(self):
      super().__init__()
      self.spans = []

    def on_epoch_begin(self, epoch, logs=None):
      self._t = time.time()

    def on_epoch_end(self, epoch, logs=None):
      self.spans.append((self._t, time.time()))

  source = common.load_mnist(args.data_dir)
  cfg = config_lib.resolve(args.preset, "mnist", dict(
      arch=args.worker, protocol="vocu", seed=0, train_steps=2 * args.steps,
      checkpoint_every=args.steps, log_every=100))
  timer = Timer()
  with tempfile.TemporaryDirectory() as workdir:
    train.train(cfg, workdir, source, verbose=0, extra_callbacks=[timer])
  start, end = timer.spans[1]
  print(json.dumps(dict(arch=args.worker, rate=args.steps / (end - start), start=start,
                        end=end)), flush=True)


def _layout(spec: str):
  workers, threads = (int(v) for v in spec.lower().split("x"))
  if workers < 1 or threads < 1:
    raise ValueError(f"layout {spec!r}: workers and threads must be positive")
  return workers, threads


def _run_layout(workers, threads, args, archs=None):
  """Starts `workers` trainings at once and returns their JSON results."""
  env = dict(os.environ, TF_NUM_INTRAOP_THREADS=str(threads),
             TF_NUM_INTEROP_THREADS=str(min(2, threads)), OMP_NUM_THREADS=str(threads))
  archs = archs or [("gru", "lstm")[i % 2] for i in range(workers)]
  procs = [subprocess.Popen(
      [sys.executable, __file__, f"--worker={arch}", f"--steps={args.steps}",
       f"--preset={args.preset}", f"--data_dir={args.data_dir}"],
      env=env, stdout=subprocess.PIPE, text=True) for arch in archs]
  out = []
  for p in procs:
    stdout, _ = p.communicate()
    if p.returncode:
      raise SystemExit(f"error: a training worker failed (exit {p.returncode})")
    out.append(json.loads(stdout.strip().splitlines()[-1]))
  return out


def main():
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  import common  # pylint: disable=g-import-not-at-top
  parser.add_argument("--data_dir", default=common.DEFAULT_DATA_DIR)
  parser.add_argument("--steps", type=int, default=300, help="timed steps per training")
  parser.add_argument("--preset", default="paper")
  parser.add_argument("--layouts", default="1x2,2x1",
                      help="comma-separated WxT: W trainings at once, T threads each")
  parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    _worker(args)
    return
  try:
    layouts = [_layout(s) for s in args.layouts.split(",")]
  except ValueError as e:
    parser.exit(1, f"error: {e}\n")
  print(common.machine_context())
  print(f"command: python3 benchmarks/parallel_training.py --steps={args.steps} "
        f"--preset={args.preset} --layouts={args.layouts}")
  print(f"MNIST VoCu, preset {args.preset}; the second of two {args.steps}-step epochs timed "
        f"per training\n")
  print("| layout | trainings at once | threads each | steps/s of each (arch) | "
        "ms/step of each | network-steps/s | overlap of the timed epochs |")
  print("| --- | ---: | ---: | --- | --- | ---: | ---: |")
  for workers, threads in layouts:
    if workers == 1:  # one at a time: a GRU, then an LSTM; a grid alternates the two
      res = _run_layout(1, threads, args, ["gru"]) + _run_layout(1, threads, args, ["lstm"])
      total = len(res) / sum(1 / r["rate"] for r in res)
    else:
      res = _run_layout(workers, threads, args)
      total = sum(r["rate"] for r in res)
    both = min(r["end"] for r in res) - max(r["start"] for r in res)
    longest = max(r["end"] - r["start"] for r in res)
    each = ", ".join(f"{r['rate']:.2f} ({r['arch']})" for r in res)
    ms = ", ".join(f"{1000 / r['rate']:.0f}" for r in res)
    overlap = f"{max(0.0, both) / longest:.0%}" if workers > 1 else "- (one after another)"
    print(f"| {workers}x{threads} | {workers} | {threads} | {each} | {ms} | {total:.2f} | "
          f"{overlap} |", flush=True)
  print(f"\nload average after: {common.load_average()}")


if __name__ == "__main__":
  main()
