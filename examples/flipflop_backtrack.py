"""Where the 3-bit flip-flop GRU's 8 stable fixed points appear during training.

  python3 examples/flipflop_backtrack.py --out=runs/flipflop_backtrack

Trains the GRU of examples/flipflop.py with dynamics.SnapshotCallback keeping its weights every
--every training steps (in memory), finds the stable fixed points of the trained network at
input 0 (as flipflop.py does), then follows them back through the snapshots with
dynamics.follow_back: at each earlier snapshot the search restarts from the points found on the
later one. Each point's label at a snapshot is the 3-bit pattern its network reads out there
(the sign of each output channel); it prints, for every final stable point, the step from which
on it reads out its own pattern (its birth) and what it read out before, and where points merge
going back (one slow point serving two memories). Writes OUT/track.npz (dynamics.Track).
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # pylint: disable=g-import-not-at-top
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flipflop  # pylint: disable=g-import-not-at-top,wrong-import-position

from haviv_tf import dynamics  # pylint: disable=wrong-import-position


def pattern(bits) -> np.ndarray:
  """The 3-bit pattern (0..7, bit i set when channel i reads out > 0) of outputs [..., 3]."""
  return np.sum((np.asarray(bits) > 0) * (1 << np.arange(3)), axis=-1).astype(np.int32)


def signs(label: int) -> str:
  return " ".join("+" if label >> i & 1 else "-" for i in range(3))


def parse(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="output directory")
  parser.add_argument("--units", type=int, default=16)
  parser.add_argument("--length", type=int, default=64, help="steps per training trial")
  parser.add_argument("--train_trials", type=int, default=2048)
  parser.add_argument("--epochs", type=int, default=25)
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--learning_rate", type=float, default=1e-2)
  parser.add_argument("--every", type=int, default=25, help="training steps between snapshots")
  parser.add_argument("--num_states", type=int, default=256, help="starting states")
  parser.add_argument("--max_iters", type=int, default=10000, help="search iterations at most")
  parser.add_argument("--fixed_q", type=float, default=1e-8, help="q below which a point is fixed")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  for name in ("units", "length", "train_trials", "epochs", "batch_size", "every", "num_states",
               "max_iters"):
    if getattr(args, name) <= 0:
      parser.error(f"--{name} must be positive")
  return args


def train(args):
  """(model, its SnapshotCallback, held-out inputs) after training."""
  keras.utils.set_random_seed(args.seed)
  inputs, targets = flipflop.flipflop_trials(args.train_trials, args.length, seed=args.seed)
  model = flipflop.build_model(args.units)
  model.compile(keras.optimizers.Adam(args.learning_rate), "mse", jit_compile=False)
  snapshots = dynamics.SnapshotCallback(every=args.every)
  model.fit(inputs, targets, batch_size=args.batch_size, epochs=args.epochs, verbose=0,
            callbacks=[snapshots])
  test_in, _ = flipflop.flipflop_trials(128, 2 * args.length, seed=args.seed + 1)
  return model, snapshots, test_in


def report(track, readout_final):
  """Prints where each point appears and where points merge, going back."""
  births = track.births["pattern"]
  for p, birth in enumerate(births):
    own = signs(birth["class"])
    if birth["birth_step"] is None:
      print(f"  point {p} ({own}): the final network's point reads out "
            f"{signs(int(readout_final[p]))}, not a pattern of its own")
    elif birth["before_step"] is None:
      print(f"  point {p} ({own}): reads out its pattern at every snapshot back to step "
            f"{birth['birth_step']}")
    else:
      before = ("no clear pattern" if birth["from_class"] < 0
                else f"pattern {signs(birth['from_class'])}")
      print(f"  point {p} ({own}): its own pattern from step {birth['birth_step']} on; at step "
            f"{birth['before_step']} the point there read out {before}")
  for step, groups in merge_groups(track.merges).items():
    print(f"  going back, at step {step} these points become one each: "
          + "; ".join("{" + ", ".join(signs(c) for c in g) + "}" for g in groups))


def merge_groups(merges) -> dict:
  """{step: groups of classes joined by the merges at that step (sorted lists)}."""
  out = {}
  for step in dict.fromkeys(m["step"] for m in merges):
    parent = {}

    def root(c):
      while parent.setdefault(c, c) != c:
        c = parent[c]
      return c

    for m in merges:
      if m["step"] == step:
        parent[root(m["classes"][0])] = root(m["classes"][1])
    groups = {}
    for c in parent:
      groups.setdefault(root(c), []).append(c)
    out[step] = sorted(sorted(g) for g in groups.values())
  return out


def main(argv=None):
  args = parse(argv)
  os.makedirs(args.out, exist_ok=True)
  model, snapshots, test_in = train(args)
  layer, readout = model.get_layer("gru"), model.get_layer("readout")
  traj = dynamics.trajectories(layer, test_in)
  starts = dynamics.sample_states(traj, args.num_states, noise=0.1, seed=args.seed)
  config = dynamics.SlowPointConfig(max_iters=args.max_iters, q_tol=1e-12, dedup_tol=0.1,
                                    num_eigenvalues=args.units)
  x0 = np.zeros(3, np.float32)
  unique, _ = dynamics.find_slow_points(layer, starts, x0, config)
  stable = unique[(unique.q < args.fixed_q) & unique.stable]
  labels = pattern(readout(stable.states))
  print(f"trained {snapshots.step} steps ({len(snapshots.snapshots)} snapshots); "
        f"{len(stable)} stable fixed points, patterns {sorted(labels.tolist())}")
  if not len(stable):
    return dict(stable=stable, track=None)

  def measure(step, states, x):
    del step, x
    return dict(pattern=pattern(readout(states)))

  # Classes: the pattern each point reads out at the end (its index where two share one).
  classes = labels if len(set(labels.tolist())) == len(labels) else np.arange(len(labels))
  track = dynamics.follow_back(layer, snapshots.snapshots, stable, x0, config, model=model,
                               classes=classes, measure=measure, label_keys=("pattern",),
                               progress=False)
  print(f"followed back through steps {track.steps.tolist()}:")
  report(track, labels)
  track.save(os.path.join(args.out, "track.npz"))
  print(f"wrote {os.path.join(args.out, 'track.npz')}")
  return dict(stable=stable, track=track)


if __name__ == "__main__":
  try:
    main()
  except (ValueError, OSError) as e:
    sys.exit(f"error: {e}")
