"""Why does the speed penalty help GRUs more than LSTMs? Measurements for experiments/dose_response.md.

  python3 experiments/lstm_penalty.py --parents=RUN[,RUN...] --root=ROOT [--out=FILE.json]

ROOT is experiments/dose_response.py's --root: each parent's slow-point targets
(ROOT/<name>/targets.npz, the targets every fine-tuning of the dose-response used) and, where
they exist, its fine-tuned weights (ROOT/<name>/<mu>/dose_snapshots/step-K.npz). Per parent:

  terms     the penalty's two parts at the targets (one noise frame per copy, as in training):
            sum ||h' - h||^2 and, for an LSTM, sum ||tanh c' - tanh c||^2;
  gradients on one training batch of the final task (all classes, T_max 20): per weight block
            (kernel / recurrent kernel / bias, split by gate) the RMS of the task loss's gradient
            and of mu * the penalty's gradient (mu = 1e-3), and their ratio;
  long      trials at delay 500 (200, classes balanced, the parent's test split): the state
            just before the trigger, in speed coordinates, against the targets: how often the
            nearest target is the trial's own class, the mean distance to the own target, and
            the report accuracy of those trials; for the parent and for each fine-tuned
            snapshot given by --snapshots (e.g. control/3000,mu0.01/3000).
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from haviv_tf.analysis import pipeline  # pylint: disable=g-import-not-at-top
from haviv_tf.base import artifacts  # pylint: disable=g-import-not-at-top
from haviv_tf.task import curricula  # pylint: disable=g-import-not-at-top
from haviv_tf.task import losses  # pylint: disable=g-import-not-at-top
from haviv_tf.probes import speed_targets  # pylint: disable=g-import-not-at-top
from haviv_tf.task import trials  # pylint: disable=g-import-not-at-top

MU = 1e-3
GATES = {"gru": ("z", "r", "h"), "lstm": ("i", "g", "f", "o")}


def _batch(cfg, source, seed_step):
  gen = trials.generator_for(source, "train", cfg)
  ds = gen.training_dataset(cfg.seed, cfg.batch_size, cfg.seq_len,
                            curricula.Curriculum((), (10,), (cfg.seq_len,)),
                            start_step=seed_step, speed_noise=10 * cfg.speed_copies,
                            data_offset=cfg.train_steps, backend=cfg.trial_backend)
  return next(iter(ds))


def terms(model, cfg, targets, noise):
  """(h term, c term) of sum_k ||F(s_k, x_k) - s_k||^2 over the live targets."""
  states, weights = speed_targets.targets_from(targets, cfg.speed_copies)
  live = weights > 0
  states = tf.constant(states[live])
  frames = tf.concat([noise[:int(live.sum())], tf.zeros([int(live.sum()), 1])], axis=-1)
  new = model.transition(states, model.encode(frames))
  a, b = model.cell.speed_coordinates(states), model.cell.speed_coordinates(new)
  u = cfg.units
  sq = tf.square(b - a).numpy()
  return float(sq[:, :u].sum()), float(sq[:, u:].sum())


def gradients(model, cfg, targets, batch):
  """Per weight block: RMS of the task loss's gradient and of MU x the penalty's, as the
  fine-tuning's train step would compute them (targets fixed, one noise frame per copy)."""
  inputs, tgt = batch
  states, weights = speed_targets.targets_from(targets, cfg.speed_copies)
  live = weights > 0
  s = tf.constant(states[live])
  k = int(live.sum())
  frames = tf.concat([tf.cast(tgt["speed_noise"], tf.float32)[:k], tf.zeros([k, 1])], axis=-1)
  with tf.GradientTape(persistent=True) as tape:
    loss, _, _ = model.task_loss(inputs, tgt, training=True)
    penalty = tf.reduce_sum(losses.speed_squared(model.cell, s,
                                                 model.transition(s, model.encode(frames))))
  g_task = tape.gradient(loss, model.trainable_variables)
  g_pen = tape.gradient(penalty, model.trainable_variables)
  rows = []
  gates = GATES[cfg.arch]
  for v, a, b in zip(model.trainable_variables, g_task, g_pen):
    name = v.path if hasattr(v, "path") else v.name
    a = np.zeros(v.shape) if a is None else a.numpy()
    b = np.zeros(v.shape) if b is None else b.numpy()
    blocks = [("all", slice(None))]
    if "cell" in name and v.shape[-1] == len(gates) * cfg.units:
      blocks = [(g, slice(i * cfg.units, (i + 1) * cfg.units)) for i, g in enumerate(gates)]
    for gate, sl in blocks:
      ta, tb = a[..., sl], MU * b[..., sl]
      rows.append(dict(variable=name, block=gate,
                       rms_task=float(np.sqrt(np.mean(ta ** 2))),
                       rms_penalty=float(np.sqrt(np.mean(tb ** 2))),
                       ratio=float(np.sqrt(np.mean(tb ** 2)) / max(np.sqrt(np.mean(ta ** 2)),
                                                                    1e-30))))
  return dict(task_loss=float(loss), penalty=float(penalty), rows=rows)


def nearest_targets(model, cfg, source, target_sets, delay=500, num=200):
  """Test trials at `delay` (classes balanced): the report accuracy and, for each named target
  set [10, S] (NaN rows: classes without a target), how often the state just before the
  trigger is nearest its own class's target, the mean distance to that target and the median
  distance between targets, all in the network's speed coordinates."""
  gen = trials.generator_for(source, "test", cfg)
  batch = gen.sample(tf.constant([cfg.seed, 77_001], tf.int64), num, delay + 10, delay=delay,
                     classes=tf.range(num) % 10)
  logits, states = model(batch["inputs"], training=False)
  t_a = batch["t_a"].numpy() if "t_a" in batch else batch["t_s"].numpy() + delay
  classes, idx = batch["classes"].numpy(), np.arange(num)

  def coords(x):
    return model.cell.speed_coordinates(tf.constant(np.nan_to_num(x), tf.float32)).numpy()

  before = coords(states.numpy()[idx, t_a - 1])
  out = dict(accuracy=float(np.mean(np.argmax(logits.numpy()[idx, t_a, 1:], -1) == classes)))
  for name, targets in target_sets.items():
    tg = coords(targets)
    d = np.linalg.norm(before[:, None] - tg[None], axis=-1)
    d[:, ~np.isfinite(targets).all(axis=1)] = np.inf
    own = d[idx, classes]
    out[name] = dict(nearest_is_own=float(np.mean(np.argmin(d, axis=1) == classes)),
                     distance_own=float(np.mean(own[np.isfinite(own)])),
                     distance_between_targets=float(np.median(
                         np.linalg.norm(tg[:, None] - tg[None], axis=-1)[np.triu_indices(10, 1)])))
  return out


def long_delay(model, cfg, source, targets, delay=500, num=200):
  """nearest_targets for one target set, flat."""
  out = nearest_targets(model, cfg, source, {"targets": targets}, delay, num)
  return dict(out["targets"], accuracy=out["accuracy"])


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--parents", required=True)
  p.add_argument("--root", required=True)
  p.add_argument("--snapshots", default="control/3000,mu0.001/3000,mu0.01/3000,mu0.1/3000")
  p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                               "dose_response", "lstm_penalty.json"))
  args = p.parse_args(argv)
  out = artifacts.read_json(args.out) if os.path.exists(args.out) else {}
  for parent in args.parents.split(","):
    name = os.path.basename(os.path.normpath(parent))
    cfg, source, run = pipeline.restore(parent)
    targets = artifacts.load_npz(os.path.join(args.root, name, "targets.npz"))["per_class"]
    batch = _batch(cfg, source, 0)
    noise = tf.cast(batch[1]["speed_noise"], tf.float32)
    h_term, c_term = terms(run.model, cfg, targets, noise)
    rec = dict(arch=cfg.arch, protocol=cfg.protocol, h_term=h_term, c_term=c_term,
               gradients=gradients(run.model, cfg, targets, batch),
               long={"parent": long_delay(run.model, cfg, source, targets)})
    weights = run.model.get_weights()
    for snap in filter(None, args.snapshots.split(",")):
      tag, k = snap.split("/")
      path = os.path.join(args.root, name, tag, "dose_snapshots", f"step-{k}.npz")
      if not os.path.exists(path):
        continue
      arrays = artifacts.load_npz(path)
      run.model.set_weights([arrays[f"w{i}"] for i in range(len(arrays))])
      rec["long"][snap] = long_delay(run.model, cfg, source, targets)
      rec.setdefault("terms_after", {})[snap] = terms(run.model, cfg, targets, noise)
    run.model.set_weights(weights)
    out[name] = rec
    artifacts.write_json(args.out, out)
    g = rec["gradients"]
    print(f"{name}: speed^2 terms h {h_term:.3e} c {c_term:.3e}; task loss {g['task_loss']:.4f} "
          f"penalty {g['penalty']:.3e}")
    for r in g["rows"]:
      print(f"  {r['variable']:<40} {r['block']:<4} task {r['rms_task']:.2e}  "
            f"mu*penalty {r['rms_penalty']:.2e}  ratio {r['ratio']:.2e}")
    for k, v in rec["long"].items():
      print(f"  delay 500 [{k}]: " + ", ".join(f"{a} {b:.3f}" for a, b in v.items()))
  return 0


if __name__ == "__main__":
  sys.exit(main())
