"""Does the paper preset leave the trivial solution? Measurements for experiments/paper_preset.md.

  # a bounded training run of a preset (resumable; writes WORKDIR like haviv_tf.main, train only)
  python3 experiments/paper_preset.py train --workdir=W --protocol=nacu --steps=3000 \
      --data_dir=../shared/data [--set field=value ...]
  # its learning curve against the trivial-solution loss, from its TensorBoard events
  python3 experiments/paper_preset.py curve --workdir=W
  # the trivial solution of each protocol's first and last stage (analytic)
  python3 experiments/paper_preset.py trivial
  # gradients at initialisation under both initialisations and loss normalisations
  python3 experiments/paper_preset.py grads --data_dir=../shared/data
  # a run's checkpoints: read-out saturation, Adam's state against epsilon, class information
  python3 experiments/paper_preset.py grads --workdir=W

Every number printed is computed by the command from the run's own files or a fresh batch.
"""

import argparse
import glob
import os
import platform
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf

from haviv_tf.base import config as config_lib
from haviv_tf.task import curricula
from haviv_tf.task import datasets
from haviv_tf.task import losses
from haviv_tf.base import artifacts
from haviv_tf.training import checkpoints
from haviv_tf.training import train as train_lib
from haviv_tf.task import trials


def _config(args, extra=()):
  overrides = dict(protocol=args.protocol, arch=args.arch, seed=args.seed,
                   data_dir=args.data_dir)
  if args.steps:
    overrides["train_steps"] = args.steps
  for item in list(args.set or []) + list(extra):
    k, v = item.split("=", 1)
    field = {f.name: f for f in config_lib.dataclasses.fields(config_lib.Config)}[k]
    overrides[k] = (int(v) if field.type in (int, "int") else
                    float(v) if field.type in (float, "float") else v)
  return config_lib.resolve(args.preset, args.dataset, overrides)


def cmd_train(args):
  # Keep the paper run's schedule (lr decay at 120k, curriculum boundaries) when it is cut
  # short: --steps is how far to train, not a shorter paper run.
  cfg = _config(args, [f"train_steps={config_lib.PAPER.train_steps}"] if args.preset == "paper"
                and args.dataset != "cifar10" else [])
  cfg = config_lib.dataclasses.replace(cfg, log_every=args.log_every,
                                       checkpoint_every=args.checkpoint_every,
                                       keep_checkpoints=50)
  source = train_lib.prepare_workdir(cfg, args.workdir, overwrite=False)
  stop = args.steps
  if stop % cfg.checkpoint_every:
    sys.exit("error: --steps must be a multiple of --checkpoint_every")

  class Stop(keras.callbacks.Callback):
    """Ends training at step `stop`, after the epoch's checkpoint (it runs after it)."""
    def on_epoch_end(self, epoch, logs=None):
      if int(self.model.optimizer.iterations.numpy()) >= stop:
        raise _Stopped()

  try:
    train_lib.train(cfg, args.workdir, source, verbose=2, extra_callbacks=[Stop()])
  except _Stopped:
    pass
  print(f"{args.workdir}: trained to step {stop}")


class _Stopped(Exception):
  pass


def _scalars(workdir):
  out = {}
  for path in sorted(glob.glob(os.path.join(workdir, "tensorboard", "train", "events.*"))):
    for e in tf.compat.v1.train.summary_iterator(path):
      for v in e.summary.value:
        out.setdefault(v.tag, {})[e.step] = float(tf.make_ndarray(v.tensor)) if v.HasField(
            "tensor") and v.tensor.dtype != tf.string.as_datatype_enum else None
  return out


def cmd_curve(args):
  s = _scalars(args.workdir)
  cfg = config_lib.Config.from_record(
      artifacts.read_json(os.path.join(args.workdir, "config.json"))["config"])
  print(f"run {args.workdir}: {cfg.preset} {cfg.protocol} {cfg.arch} {cfg.dataset} init={cfg.init}"
        f" loss_norm={cfg.loss_norm} log_eps={cfg.log_eps} mask={cfg.mask} "
        f"lr={cfg.learning_rate}")
  print("| step | classes | loss | trivial loss | loss - trivial | report acc | null acc |")
  print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
  steps = sorted(s.get("train/loss", {}))
  pick = [t for t in steps if t % args.every == 0 or t == steps[-1]]
  for t in pick:
    loss, triv = s["train/loss"][t], s["train/trivial_loss"][t]
    print(f"| {t} | {int(s['curriculum/num_classes'][t])} | {loss:.5f} | {triv:.5f} | "
          f"{loss - triv:+.5f} | {s['train/report_acc'][t]:.3f} | {s['train/null_acc'][t]:.3f} |")


def _grad_stats(model, batch, names):
  inputs, targets = batch
  with tf.GradientTape() as tape:
    loss, logits, _ = model.task_loss(inputs, targets, training=True)
  grads = tape.gradient(loss, model.trainable_variables)
  out = {}
  for v, g in zip(model.trainable_variables, grads):
    key = v.path
    if names and not any(n in key for n in names):
      continue
    g = g.numpy()
    out[key] = (float(np.sqrt(np.mean(g * g))), float(np.abs(g).max()))
  z = logits.numpy()  # sigmoid outputs in (0, 1)
  return float(loss), out, z


def cmd_grads(args):
  print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"tensorflow {tf.__version__}")
  if args.workdir:
    _adam_state(args)
    return
  source = datasets.load(args.dataset, args.data_dir)
  for init in ("authors", "tf1"):
    for norm in ("authors", "weights"):
      cfg = _config(args, [f"init={init}", f"loss_norm={norm}"])
      src = datasets.apply_recipe(source, cfg.data_recipe)
      run = checkpoints.Run(cfg, os.path.join(tempfile.gettempdir(), "unused"), src.frame_shape)
      gen = trials.generator_for(src, "train", cfg)
      cur = curricula.for_config(cfg)
      ds = gen.training_dataset(cfg.seed, cfg.batch_size, cfg.seq_len, cur, backend="numpy")
      batch = next(iter(ds))
      loss, stats, z = _grad_stats(run.model, batch, [])
      triv = losses.trivial_loss(*cur.at(0), cfg.seq_len, cfg.report_weight,
                                 cur.null_weight_at(0), cfg.readout, cfg.loss_norm,
                                 cfg.log_eps)[0]
      s = z * (1 - z)
      print(f"\ninit={init} loss_norm={norm} ({cfg.protocol}, step 0): loss {loss:.5f}, "
            f"trivial {triv:.5f}; sigmoid read-out s(1-s) mean {s.mean():.4f}")
      print("| variable | RMS gradient | max abs gradient | RMS / Adam eps 1e-8 |")
      print("| --- | ---: | ---: | ---: |")
      for k, (rms, mx) in stats.items():
        print(f"| {k} | {rms:.3e} | {mx:.3e} | {rms / 1e-8:.1f} |")


def _adam_state(args):
  """Adam's second moments in the workdir's checkpoints: sqrt(v_hat) against epsilon, and the
  sigmoid read-out's saturation on a fresh batch."""
  cfg = config_lib.Config.from_record(
      artifacts.read_json(os.path.join(args.workdir, "config.json"))["config"])
  source = datasets.apply_recipe(datasets.load(cfg.dataset, cfg.data_dir), cfg.data_recipe)
  gen = trials.generator_for(source, "train", cfg)
  ckpts = sorted(glob.glob(os.path.join(args.workdir, "checkpoints", "ckpt-*.index")),
                 key=lambda p: int(p.split("-")[-1].split(".")[0]))
  print(f"\n{args.workdir}: Adam state and read-out saturation by checkpoint")
  print("| step | head bias (null, mean class) | read-out s(1-s) mean | weights with sqrt(v_hat)"
        " < 10 eps | RMS grad head kernel | RMS grad recurrent kernel | report step: class "
        "read out by the 10 class logits (chance 1/K) | report step: null logit wins |")
  print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
  for path in ckpts:
    run = checkpoints.Run(cfg, args.workdir, source.frame_shape)
    run.checkpoint.restore(path[:-len(".index")]).expect_partial()
    step = run.step
    cur = curricula.for_config(cfg)
    ds = gen.training_dataset(cfg.seed + 1, 1024, cfg.seq_len, cur, start_step=step,
                              backend="numpy")
    batch = next(iter(ds))
    _, stats, z = _grad_stats(run.model, batch, ["head/kernel", "cell/recurrent_kernel"])
    labels, mask = batch[1]["labels"].numpy(), batch[1]["class_mask"].numpy()
    at = labels > 0
    cls_logits = np.where(mask[:, None, 1:], z[..., 1:], -np.inf)
    class_acc = float(np.mean(np.argmax(cls_logits, -1)[at] + 1 == labels[at]))
    null_wins = float(np.mean(z[..., 0][at] >= cls_logits.max(-1)[at]))
    b = run.model.head.bias.numpy()
    t = float(step)
    small, total = 0, 0
    for var in run.model.trainable_variables:
      v = run.optimizer._velocities[run.optimizer._get_variable_index(var)].numpy()  # pylint: disable=protected-access
      v_hat = v / (1 - 0.999 ** t)
      small += int(np.sum(np.sqrt(v_hat) < 10e-8))
      total += v.size
    s = z * (1 - z)
    head = next(v for k, v in stats.items() if "head/kernel" in k)
    rec = next(v for k, v in stats.items() if "recurrent_kernel" in k)
    print(f"| {step} | {b[0]:+.3f}, {b[1:].mean():+.3f} | {s.mean():.4f} | {small / total:.4f} |"
          f" {head[0]:.2e} | {rec[0]:.2e} | {class_acc:.3f} | {null_wins:.3f} |")


def cmd_trivial(args):
  """The trivial solution of each protocol's first and last stage under the paper preset."""
  print("| protocol | stage | classes K | T_max | null weight | d* unbounded | d* sigmoid | "
        "at the sigmoid's bound | trivial loss (paper) |")
  print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
  for protocol in ("nacu", "vocu", "decu", "recu"):
    cfg = config_lib.resolve("paper", args.dataset, dict(protocol=protocol))
    cur = curricula.for_config(cfg)
    for name, step in (("first", 0), ("last", cfg.train_steps - 1)):
      k, t_max = cur.at(step)
      alpha = cur.null_weight_at(step)
      common = (k, t_max, cfg.seq_len, cfg.report_weight, alpha)
      free = losses.trivial_loss(*common, "linear", cfg.loss_norm, cfg.log_eps)[1]
      loss, d = losses.trivial_loss(*common, cfg.readout, cfg.loss_norm, cfg.log_eps)
      free = f"{free:+.3f}" if abs(free) < 39.9 else ("+∞" if free > 0 else "−∞")
      print(f"| {protocol} | {name} | {k} | {t_max} | {alpha:g} | {free} | {d:+.3f} | "
            f"{'yes' if abs(d) > 0.999 else 'no'} | {loss:.5f} |")


def main(argv):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("cmd", choices=("train", "curve", "grads", "trivial"))
  p.add_argument("--workdir")
  p.add_argument("--preset", default="paper")
  p.add_argument("--dataset", default="mnist")
  p.add_argument("--protocol", default="nacu")
  p.add_argument("--arch", default="gru")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--steps", type=int, default=0)
  p.add_argument("--data_dir", default="")
  p.add_argument("--log_every", type=int, default=100)
  p.add_argument("--checkpoint_every", type=int, default=500)
  p.add_argument("--every", type=int, default=500, help="curve: rows every N steps")
  p.add_argument("--set", action="append", help="field=value Config override")
  args = p.parse_args(argv)
  {"train": cmd_train, "curve": cmd_curve, "grads": cmd_grads, "trivial": cmd_trivial}[
      args.cmd](args)


if __name__ == "__main__":
  main(sys.argv[1:])
