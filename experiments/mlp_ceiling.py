"""How accurate can a 200-unit, one-hidden-layer network be on MNIST test digits?

  python3 experiments/mlp_ceiling.py [--data_dir ../shared/data/mnist] [--epochs 6,30]
      [--seeds 0,1] [--out experiments/mlp_ceiling.md]

At the stimulus frame the paper's MNIST GRU reads the raw pixels through one layer of 200 units
(its candidate tanh(W x + ...) and gates), and its readout sees only those units. So a plain
784-200(tanh)-10 classifier, trained on single digits with the quick preset's optimiser (Adam,
lr 3e-3, x0.1 for the last 4/30 of the run, batch 128), shows what accuracy that width reaches
on the test set. 6 epochs is the quick preset's image budget (3000 steps x 128 trials, one image
each); 30 epochs shows whether more passes help. Writes a Markdown table of what it measured,
with the machine context.
"""

import argparse
import os
import platform
import shlex
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from haviv_tf.base import artifacts  # pylint: disable=g-import-not-at-top,wrong-import-position
from haviv_tf.task import datasets  # pylint: disable=g-import-not-at-top,wrong-import-position

DEFAULT_DATA_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")
BATCH = 128


def _flat(split):
  return (np.asarray(split.images, np.float32).reshape(len(split.labels), -1) / 255.0,
          np.asarray(split.labels, np.int64))


def fit(source, epochs: int, seed: int, units: int = 200, lr: float = 3e-3):
  """(train accuracy, test accuracy, seconds) of one 784-units(tanh)-10 network."""
  x_train, y_train = _flat(source.train)
  x_test, y_test = _flat(source.test)
  keras.utils.set_random_seed(seed)
  model = keras.Sequential([keras.Input((x_train.shape[1],)),
                            keras.layers.Dense(units, activation="tanh"),
                            keras.layers.Dense(10)])
  steps = epochs * -(-len(y_train) // BATCH)
  schedule = keras.optimizers.schedules.PiecewiseConstantDecay([round(steps * 26 / 30)],
                                                               [lr, lr / 10])
  model.compile(keras.optimizers.Adam(schedule),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
  t0 = time.perf_counter()
  model.fit(x_train, y_train, batch_size=BATCH, epochs=epochs, verbose=0)
  seconds = time.perf_counter() - t0
  return (model.evaluate(x_train, y_train, verbose=0)[1],
          model.evaluate(x_test, y_test, verbose=0)[1], seconds)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
  parser.add_argument("--epochs", default="6,30")
  parser.add_argument("--seeds", default="0,1")
  parser.add_argument("--out", default="", help="also write the table to this file")
  parser.add_argument("--json", default="",
                      help="also write the measurements to this JSON file (a study report "
                      "reads it as the measured ceiling of claim (a) when it is named "
                      "ceiling.json in the report's folder)")
  args = parser.parse_args()
  try:
    epochs = [int(v) for v in args.epochs.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]
    if min(epochs) < 1:
      raise ValueError
  except ValueError:
    parser.error("--epochs and --seeds are comma-separated integers (epochs >= 1)")
  try:
    source = datasets.load("mnist", args.data_dir)
  except datasets.DataError as e:
    parser.error(str(e))
  lines = [
      f"machine: {platform.machine()}, {os.cpu_count()} cpus; python "
      f"{platform.python_version()}, tensorflow {tf.__version__}, keras {keras.__version__}",
      f"data: {source.origin}", "",
      "| epochs | seed | train accuracy | test accuracy | fit seconds |",
      "| ---: | ---: | ---: | ---: | ---: |"]
  print("\n".join(lines), flush=True)
  runs = []
  for e in epochs:
    for s in seeds:
      train_acc, test_acc, seconds = fit(source, e, s)
      runs.append(dict(epochs=e, seed=s, train_accuracy=float(train_acc),
                       test_accuracy=float(test_acc), fit_seconds=round(seconds, 1)))
      lines.append(f"| {e} | {s} | {train_acc:.4f} | {test_acc:.4f} | {seconds:.0f} |")
      print(lines[-1], flush=True)
  if args.out:
    # A document on its own: what it is, the command that wrote it and when, then the table.
    head = [f"# {parser.description}", "",
            f"Written by `python3 experiments/{os.path.basename(__file__)} "
            f"{shlex.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
            ""]
    artifacts.write_text(args.out, "\n".join(head + lines) + "\n")
  if args.json:
    artifacts.write_json(args.json, dict(
        dataset="mnist", model="a 784-200(tanh)-10 classifier of single digits",
        measured_by="experiments/mlp_ceiling.py --epochs " + args.epochs + " --seeds "
        + args.seeds, machine=lines[0], data=source.origin,
        date=time.strftime("%Y-%m-%d"), runs=runs))


if __name__ == "__main__":
  main()
