"""Fixed points of a Keras GRU trained on the 3-bit flip-flop task.

  python3 examples/flipflop.py --out=runs/flipflop

The task (Sussillo & Barak 2013, the standard fixed-point demonstration): three input channels
carry pulses of +1 or -1 (one on every channel at the start, then rare ones); each output
channel must hold the sign of its channel's last pulse. A keras.layers.GRU learns it by building 2^3 = 8 stable fixed
points, one per memory state, with saddles between them.

The script trains the GRU (Keras fit), runs its cell over held-out trials
(dynamics.trajectories), starts the slow-point search from states sampled on them plus noise
(dynamics.sample_states), searches with dynamics.find_slow_points at the constant input 0
(no pulse), and sorts the unique points with q below --fixed_q into stable (every Jacobian
eigenvalue inside the unit circle) and unstable (saddles: some |λ| > 1). It prints the counts
and the output each stable point reads out, and writes:

  OUT/flipflop.png          trajectories and fixed points in the first 3 principal components
  OUT/slow_points.npz       every unique point (the SlowPoints fields)
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # pylint: disable=g-import-not-at-top
from matplotlib.figure import Figure
import numpy as np

from haviv_tf import dynamics
from haviv_tf.analysis import plotting


def flipflop_trials(num, length, bits=3, p=0.1, seed=0):
  """(inputs, targets), each [num, length, bits] float32: pulses of ±1 on every channel at t = 0,
  then with probability p per step and channel; a target holds the sign of its channel's last
  pulse."""
  rng = np.random.default_rng(seed)
  pulse = rng.random([num, length, bits]) < p
  pulse[:, 0] = True
  inputs = np.where(pulse, rng.choice([-1.0, 1.0], [num, length, bits]), 0.0).astype(np.float32)
  targets = np.zeros_like(inputs)
  held = np.zeros([num, bits], np.float32)
  for t in range(length):
    held = np.where(pulse[:, t], inputs[:, t], held)
    targets[:, t] = held
  return inputs, targets


def build_model(units, bits=3):
  return keras.Sequential([keras.Input((None, bits)),
                           keras.layers.GRU(units, return_sequences=True, name="gru"),
                           keras.layers.Dense(bits, name="readout")])


def parse(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="output directory")
  parser.add_argument("--units", type=int, default=16)
  parser.add_argument("--length", type=int, default=64, help="steps per training trial")
  parser.add_argument("--train_trials", type=int, default=4096)
  parser.add_argument("--epochs", type=int, default=30)
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--learning_rate", type=float, default=1e-2)
  parser.add_argument("--num_states", type=int, default=256, help="starting states")
  parser.add_argument("--noise", type=float, default=0.1, help="std of the noise added to them")
  parser.add_argument("--max_iters", type=int, default=20000, help="search iterations at most")
  parser.add_argument("--dedup_tol", type=float, default=0.1,
                      help="points closer than this are one (memory states lie ~1 apart)")
  parser.add_argument("--fixed_q", type=float, default=1e-8, help="q below which a point is fixed")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  for name in ("units", "length", "train_trials", "epochs", "batch_size", "num_states",
               "max_iters"):
    if getattr(args, name) <= 0:
      parser.error(f"--{name} must be positive")
  return args


def main(argv=None):
  args = parse(argv)
  os.makedirs(args.out, exist_ok=True)
  keras.utils.set_random_seed(args.seed)

  # 1. Train the GRU.
  inputs, targets = flipflop_trials(args.train_trials, args.length, seed=args.seed)
  model = build_model(args.units)
  model.compile(keras.optimizers.Adam(args.learning_rate), "mse", jit_compile=False)
  history = model.fit(inputs, targets, batch_size=args.batch_size, epochs=args.epochs, verbose=0)
  test_in, test_out = flipflop_trials(128, 2 * args.length, seed=args.seed + 1)
  mse = float(np.mean(np.square(model.predict(test_in, verbose=0) - test_out)))
  print(f"trained {args.epochs} epochs: final training loss {history.history['loss'][-1]:.2e}, "
        f"held-out MSE {mse:.2e}")

  # 2. Slow points of the GRU's cell at the constant input 0.
  layer = model.get_layer("gru")
  traj = dynamics.trajectories(layer, test_in)                       # [128, T, units]
  starts = dynamics.sample_states(traj, args.num_states, noise=args.noise, seed=args.seed)
  config = dynamics.SlowPointConfig(max_iters=args.max_iters, q_tol=1e-12,
                                    dedup_tol=args.dedup_tol, num_eigenvalues=args.units)
  unique, everything = dynamics.find_slow_points(layer, starts, np.zeros(3, np.float32), config)
  fixed = unique[unique.q < args.fixed_q]
  stable, saddles = fixed[fixed.stable], fixed[~fixed.stable]
  reasons = {r: int(np.sum(everything.stop_reason == i))
             for i, r in enumerate(dynamics.STOP_REASONS)}
  print(f"{len(everything)} searches ({reasons}) -> {len(unique)} unique points, {len(fixed)} "
        f"with q < {args.fixed_q:g}: {len(stable)} stable fixed points, {len(saddles)} unstable "
        f"(saddles by index: {np.bincount(saddles.num_unstable).tolist()[1:]})")
  readout = model.get_layer("readout")
  for point in stable:
    bits = np.asarray(readout(point.states))[0]
    print(f"  stable: reads out {np.array2string(bits, precision=2, sign='+')}, "
          f"max |λ| {point.max_abs_eig[0]:.3f}")

  # 3. Plot: trajectories and fixed points in the first 3 principal components.
  mean, basis, var = plotting.pca_basis(traj.reshape(-1, args.units), 3, return_variance=True)
  project = lambda s: (np.asarray(s, np.float64) - mean) @ basis.T
  fig = Figure(figsize=(7, 6))
  ax = fig.add_subplot(projection="3d")
  for trial in project(traj[:12]):
    ax.plot(*trial.T, color="0.6", lw=0.6)
  if len(stable):
    ax.scatter(*project(stable.states).T, color="k", s=40, label=f"stable ({len(stable)})")
  if len(saddles):
    ax.scatter(*project(saddles.states).T, color="r", marker="x", s=40,
               label=f"unstable ({len(saddles)})")
  ax.set_xlabel(f"PC1 ({100 * var[0]:.0f}%)")
  ax.set_ylabel(f"PC2 ({100 * var[1]:.0f}%)")
  ax.set_zlabel(f"PC3 ({100 * var[2]:.0f}%)")
  ax.set_title("3-bit flip-flop GRU: fixed points at input 0")
  ax.legend(loc="upper left")
  plotting.save_png(fig, os.path.join(args.out, "flipflop.png"))
  unique.save(os.path.join(args.out, "slow_points.npz"))
  print(f"wrote {os.path.join(args.out, 'flipflop.png')} and slow_points.npz")
  return dict(mse=mse, unique=unique, stable=stable, saddles=saddles)


if __name__ == "__main__":
  try:
    main()
  except (ValueError, OSError) as e:
    sys.exit(f"error: {e}")
