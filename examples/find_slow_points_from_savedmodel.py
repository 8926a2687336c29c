"""Slow points of an exported haviv_tf network, using only TensorFlow, NumPy and the SavedModel.

  python examples/find_slow_points_from_savedmodel.py --saved_model=runs/x/saved_model \
      --out=slow_points.npz

Starting states are the hidden states of noise trials (per-pixel Gaussian noise with the
metadata's mean/std, trigger off) run through `serving_default`; each is moved by Adam down
q = ½ speed² from the `speed` signature at the mean noise frame (trigger off). Points closer than
--dedup_tol are merged, and one trigger step (`step` signature) reads out each point's class.
The npz holds states, speed, readout (all points) and unique (indices of the merged points).
"""

import argparse

import numpy as np
import tensorflow as tf


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--saved_model", required=True, help="SavedModel directory")
  parser.add_argument("--out", required=True, help="output .npz")
  parser.add_argument("--num_trials", type=int, default=64, help="starting states")
  parser.add_argument("--length", type=int, default=20, help="noise frames per trial")
  parser.add_argument("--iters", type=int, default=3000, help="Adam iterations")
  parser.add_argument("--learning_rate", type=float, default=1e-2)
  parser.add_argument("--decay", type=float, default=0.9998, help="learning rate decay per step")
  parser.add_argument("--dedup_tol", type=float, default=1e-3)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()

  loaded = tf.saved_model.load(args.saved_model)
  meta = {k: v.numpy() for k, v in loaded.signatures["metadata"]().items()}
  mean, std = meta["noise_mean"], meta["noise_std"]
  rng = np.random.default_rng(args.seed)

  # Starting states: random noise trials, trigger off, one state per trial at a random time.
  frames = mean + std * rng.standard_normal([args.num_trials, args.length, mean.size])
  inputs = np.concatenate([frames, np.zeros([args.num_trials, args.length, 1])], axis=-1)
  states = loaded.signatures["serving_default"](inputs=tf.constant(inputs, tf.float32))["states"]
  times = rng.integers(1, args.length, args.num_trials)
  init = tf.gather(states, times, axis=1, batch_dims=1)

  # Mean input: the mean noise frame, trigger off.
  x_bar = np.concatenate([mean, [0.0]]).astype(np.float32)
  x_bar = tf.constant(np.tile(x_bar, [args.num_trials, 1]))
  speed_fn = loaded.signatures["speed"]

  @tf.function
  def descend(s):
    m, v = tf.zeros_like(s), tf.zeros_like(s)
    for t in tf.range(args.iters):
      with tf.GradientTape() as tape:
        tape.watch(s)
        q = speed_fn(state=s, inputs=x_bar)["q"]
      g = tape.gradient(q, s)
      m = 0.9 * m + 0.1 * g
      v = 0.999 * v + 0.001 * tf.square(g)
      k = tf.cast(t + 1, tf.float32)
      lr = args.learning_rate * tf.pow(args.decay, tf.cast(t, tf.float32))
      s = s - lr * (m / (1 - 0.9 ** k)) / (tf.sqrt(v / (1 - 0.999 ** k)) + 1e-8)
    return s

  points = descend(init)
  speed = speed_fn(state=points, inputs=x_bar)["speed"].numpy()
  trigger = np.array(x_bar)
  trigger[:, int(meta["trigger_index"])] = 1.0
  logits = loaded.signatures["step"](inputs=tf.constant(trigger), state=points)["logits"]
  readout = np.argmax(logits.numpy()[:, 1:], axis=-1)

  points = points.numpy()
  unique = []
  for i in np.argsort(speed):
    if all(np.linalg.norm(points[i] - points[j]) > args.dedup_tol for j in unique):
      unique.append(i)
  unique = np.sort(np.asarray(unique, np.int64))
  np.savez(args.out, states=points, speed=speed, readout=readout, unique=unique)
  print(f"{len(unique)} slow points from {args.num_trials} starting states "
        f"({meta['arch'].decode()}, state_size {int(meta['state_size'])}); written to {args.out}")
  for i in unique:
    print(f"  speed {speed[i]:.3g}  readout class {readout[i]}")


if __name__ == "__main__":
  main()
