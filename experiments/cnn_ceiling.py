"""How accurate can the CIFAR-10 networks' CNN front end be as a plain image classifier?

  python3 experiments/cnn_ceiling.py [--data_dir ../shared/data/cifar10] [--steps 3000]
      [--batch 64] [--lr 1e-3] [--cnn keras|authors] [--seeds 0] [--out FILE.md]
      [--json ceiling.json] [--precision mixed_bfloat16|float32] [--jit_compile 0|1]

The CIFAR-10 networks read every frame through `cnn.ConvEncoder` (three 3x3 convolutions of
128 channels with pooling, then dense layers to 1024 features) and their read-out sees only
the recurrent state built from those features. The same encoder with a 10-way linear read-out,
trained on single images (pixels / 255, as in the trials) with the quick preset's optimiser
(Adam, x0.1 for the last 13% of the run), shows what accuracy that front end reaches on the
test set with the same image budget: a delayed-classification network sees one image per trial,
so `--steps` x `--batch` images (the quick preset's training) is its budget. Writes a Markdown
table of what it measured, with the machine context.
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
from haviv_tf.models import cnn as cnn_lib  # pylint: disable=g-import-not-at-top,wrong-import-position

DEFAULT_DATA_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                "cifar10")


def _flat(split):
  return (np.asarray(split.images, np.float32).reshape(len(split.labels), -1) / 255.0,
          np.asarray(split.labels, np.int64))


def fit(source, steps: int, batch: int, lr: float, seed: int, cnn: str,
        precision: str = "float32", jit_compile: bool = True):
  """(train accuracy on 10,000 training images, test accuracy, seconds, epochs).

  `precision` "mixed_bfloat16": the CNN computes in bfloat16 (Keras' mixed policy; weights and
  the read-out's logits float32), as the quick CIFAR-10 preset trains it."""
  x_train, y_train = _flat(source.train)
  x_test, y_test = _flat(source.test)
  keras.utils.set_random_seed(seed)
  keras.mixed_precision.set_global_policy(precision)
  frames = keras.Input((x_train.shape[1],))
  encoder = cnn_lib.ConvEncoder(source.frame_shape, kind=cnn)
  logits = keras.layers.Dense(10, dtype="float32")(encoder(frames))
  model = keras.Model(frames, logits)
  schedule = keras.optimizers.schedules.PiecewiseConstantDecay([round(steps * 2600 / 3000)],
                                                               [lr, lr / 10])
  model.compile(keras.optimizers.Adam(schedule),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"], jit_compile=jit_compile)
  ds = (tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(y_train), seed=seed).repeat().batch(batch, drop_remainder=True)
        .prefetch(2))
  t0 = time.perf_counter()
  model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
  seconds = time.perf_counter() - t0
  return (model.evaluate(x_train[:10_000], y_train[:10_000], verbose=0)[1],
          model.evaluate(x_test, y_test, verbose=0)[1], seconds, steps * batch / len(y_train))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
  parser.add_argument("--steps", type=int, default=3000)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--lr", type=float, default=1e-3)
  parser.add_argument("--cnn", default="keras", choices=("keras", "authors"))
  parser.add_argument("--seeds", default="0")
  parser.add_argument("--out", default="", help="also write the table to this file")
  parser.add_argument("--json", default="",
                      help="also write the measurements to this JSON file (a study report "
                      "reads it as the measured ceiling of claim (a) when it is named "
                      "ceiling.json in the report's folder)")
  parser.add_argument("--precision", default="mixed_bfloat16",
                      choices=("float32", "mixed_bfloat16"))
  parser.add_argument("--jit_compile", type=int, default=0, choices=(0, 1))
  args = parser.parse_args()
  try:
    seeds = [int(v) for v in args.seeds.split(",")]
  except ValueError:
    parser.error("--seeds is a comma-separated list of integers")
  if args.steps < 1 or args.batch < 1 or not args.lr > 0:
    parser.error("--steps and --batch must be positive integers and --lr a positive number")
  try:
    source = datasets.load("cifar10", args.data_dir)
  except datasets.DataError as e:
    parser.error(str(e))
  lines = [
      f"machine: {platform.machine()}, {os.cpu_count()} cpus; python "
      f"{platform.python_version()}, tensorflow {tf.__version__}, keras {keras.__version__}",
      f"data: {source.origin}; CNN `{args.cnn}`, Adam lr {args.lr:g} (x0.1 for the last 13%), "
      f"batch {args.batch}, {args.precision}, jit_compile {bool(args.jit_compile)}", "",
      "| steps | images (epochs) | seed | train accuracy (10k) | test accuracy | fit seconds |",
      "| ---: | ---: | ---: | ---: | ---: | ---: |"]
  print("\n".join(lines), flush=True)
  runs = []
  for s in seeds:
    train_acc, test_acc, seconds, epochs = fit(source, args.steps, args.batch, args.lr, s,
                                               args.cnn, args.precision, bool(args.jit_compile))
    runs.append(dict(steps=args.steps, images=args.steps * args.batch, seed=s,
                     train_accuracy=float(train_acc), test_accuracy=float(test_acc),
                     fit_seconds=round(seconds, 1)))
    lines.append(f"| {args.steps} | {args.steps * args.batch} ({epochs:.2f}) | {s} | "
                 f"{train_acc:.4f} | {test_acc:.4f} | {seconds:.0f} |")
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
        dataset="cifar10", model=f"the `{args.cnn}` CNN front end with a 10-way linear read-out, "
        "classifying single images", measured_by=f"experiments/cnn_ceiling.py --steps "
        f"{args.steps} --batch {args.batch} --lr {args.lr:g} --cnn {args.cnn} --seeds "
        f"{args.seeds} --precision {args.precision} --jit_compile {args.jit_compile}",
        machine=lines[0], data=source.origin, date=time.strftime("%Y-%m-%d"), runs=runs))


if __name__ == "__main__":
  main()
