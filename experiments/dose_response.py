"""Dose-response of the speed penalty: fine-tuning steps x mu. For experiments/dose_response.md.

  # fine-tune every parent at every mu (and mu = 0, the control) and evaluate each at every
  # step count (resumable; finished cells are skipped)
  python3 experiments/dose_response.py run --parents=RUN[,RUN...] --root=ROOT \\
      [--steps=107,300,1000,3000] [--mus=1e-4,1e-3,1e-2,1e-1] [--results=DIR]
  # the tables and one figure per architecture from whatever has finished
  python3 experiments/dose_response.py report [--results=DIR] [--out=experiments/dose_response]

A parent is a trained run (e.g. the `small` grid's mnist-decu-gru-quick-s0). Per parent and mu,
ONE fine-tuning of max(--steps) steps runs (`--mode=finetune` with --finetune=slow_points, or
control for mu = 0) and the model's weights are kept at every step count of --steps on the way.
Fine-tuning runs at a constant learning rate (its only decay step is its last step) and reads
the same trial stream whatever its length, so the weights after k steps of the long run are
those of a k-step fine-tuning; `check` verifies that against a separately run short one.

Every parent's slow-point targets are found once (the default recipe, from the class centres,
exactly as `--finetune=slow_points` finds them) and given to all its fine-tunings. Each cell
(parent, mu, steps) is evaluated on the parent's test trials (same seed: paired with the
control's) at the training delays and 200, 500, 1000, and the speed ||F(s_k, x̄) - s_k|| at the
ten targets is measured before and after. One JSON per cell in --results.
"""

import argparse
import glob
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top

from haviv_tf.base import artifacts  # pylint: disable=g-import-not-at-top
import common  # pylint: disable=g-import-not-at-top  (experiments/common.py)

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "dose_response", "results")
DELAYS = (5, 10, 19, 200, 500, 1000)
TRAIN_DELAYS = ("5", "10", "19")
LONG_DELAYS = ("200", "500", "1000")


def _floats(text):
  return [float(v) for v in text.split(",") if v]


def _ints(text):
  return sorted({int(v) for v in text.split(",") if v})


def _mu_tag(mu):
  return "control" if mu == 0 else f"mu{mu:g}"


def _cell_path(results, parent_name, mu, steps):
  return os.path.join(results, f"{parent_name}__{_mu_tag(mu)}__{steps}.json")


def _snapshot_path(workdir, steps):
  return os.path.join(workdir, "dose_snapshots", f"step-{steps}.npz")


class _Snapshots:
  """Keras callback: the model's weights at the given global steps, as .npz files."""

  def __new__(cls, *args, **kwargs):
    import keras  # pylint: disable=g-import-not-at-top

    class Callback(keras.callbacks.Callback):

      def __init__(self, workdir, steps):
        super().__init__()
        self.workdir, self.steps = workdir, set(steps)

      def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if step in self.steps:
          artifacts.save_npz(_snapshot_path(self.workdir, step),
                             **{f"w{i}": w.numpy() for i, w in enumerate(self.model.weights)})

    return Callback(*args, **kwargs)


def _load_weights(model, path):
  arrays = artifacts.load_npz(path)
  model.set_weights([arrays[f"w{i}"] for i in range(len(arrays))])


def _measure(model, source, cfg, targets, x_bar):
  """Accuracy on the parent's test trials at DELAYS and the targets' speed."""
  from haviv_tf.probes import evaluation  # pylint: disable=g-import-not-at-top
  from haviv_tf import dynamics  # pylint: disable=g-import-not-at-top
  evaluator = evaluation.for_config(model, source, cfg)
  res = evaluator.evaluate(DELAYS, cfg.eval_trials, cfg.seed)
  ok = np.all(np.isfinite(targets), axis=1)
  speed = np.full([len(targets)], np.nan, np.float32)
  speed[ok] = dynamics.speeds(model, targets[ok], x_bar)
  return dict(accuracy_by_delay=res["accuracy_by_delay"],
              full_trial_accuracy_by_delay=res["full_trial_accuracy_by_delay"],
              target_speed=[None if not np.isfinite(v) else float(v) for v in speed])


def _parent_targets(parent, root_p, parent_cfg, source, parent_run):
  """The parent's slow-point targets [10, S] (found once, kept in root_p/targets.npz)."""
  from haviv_tf.probes import speed_targets  # pylint: disable=g-import-not-at-top
  from haviv_tf.task import trials  # pylint: disable=g-import-not-at-top
  path = os.path.join(root_p, "targets.npz")
  if not os.path.exists(path):
    generator = trials.generator_for(source, "train", parent_cfg)
    t0 = time.time()
    per_class, found, counts = speed_targets.slow_point_targets(
        parent_run.model, generator, parent_cfg.seed, None, "default", source, parent_cfg)
    artifacts.save_npz(path, per_class=per_class, counts=counts, speed=found.speed,
                       seconds=np.asarray(time.time() - t0))
    print(f"{parent}: slow-point targets in {time.time() - t0:.0f} s", flush=True)
  return artifacts.load_npz(path)["per_class"]


def cmd_run(args):
  from haviv_tf.analysis import pipeline  # pylint: disable=g-import-not-at-top
  from haviv_tf.analysis import control  # pylint: disable=g-import-not-at-top
  from haviv_tf.probes import slow_points  # pylint: disable=g-import-not-at-top
  from haviv_tf.task import trials  # pylint: disable=g-import-not-at-top
  steps, mus = _ints(args.steps), [0.0] + [m for m in _floats(args.mus) if m != 0]
  os.makedirs(args.results, exist_ok=True)
  for parent in args.parents.split(","):
    parent = os.path.normpath(parent)
    name = os.path.basename(parent)
    root_p = os.path.join(args.root, name)
    os.makedirs(root_p, exist_ok=True)
    todo = [(mu, k) for mu in mus for k in [0] + steps
            if not os.path.exists(_cell_path(args.results, name, 0 if k == 0 else mu, k))]
    if not todo:
      continue
    parent_cfg, source, parent_run = pipeline.restore(parent)
    targets = _parent_targets(parent, root_p, parent_cfg, source, parent_run)
    x_bar = slow_points.mean_input_features(
        parent_run.model, trials.generator_for(source, "train", parent_cfg), seed=parent_cfg.seed)
    meta = dict(parent=name, arch=parent_cfg.arch, protocol=parent_cfg.protocol,
                dataset=parent_cfg.dataset, seed=parent_cfg.seed,
                parent_steps=parent_cfg.train_steps, learning_rate=parent_cfg.learning_rate,
                environment=artifacts.environment())
    path0 = _cell_path(args.results, name, 0, 0)
    if not os.path.exists(path0):
      artifacts.write_json(path0, dict(meta, mu=None, steps=0, **_measure(
          parent_run.model, source, parent_cfg, targets, x_bar)))
    for mu in mus:
      cells = [k for k in steps if not os.path.exists(_cell_path(args.results, name, mu, k))]
      if not cells:
        continue
      mode = "control" if mu == 0 else "slow_points"
      workdir = os.path.join(root_p, _mu_tag(mu))
      t0 = time.time()
      control.finetune(parent, mode, workdir, steps=max(steps), speed_weight=mu, verbose=0,
                       analyze=False, targets=targets,
                       extra_callbacks=[_Snapshots(workdir, steps)])
      seconds = time.time() - t0
      cfg, _, run = pipeline.restore(workdir)
      for k in cells:
        snap = _snapshot_path(workdir, k)
        if not os.path.exists(snap):
          raise SystemExit(f"error: {snap} is missing (the run was resumed past step {k} "
                           "without it); delete {workdir} to redo this fine-tuning")
        _load_weights(run.model, snap)
        row = _measure(run.model, source, parent_cfg, targets, x_bar)
        artifacts.write_json(_cell_path(args.results, name, mu, k), dict(
            meta, mu=mu, steps=k, finetune=mode, finetune_seconds_this_call=round(seconds, 1),
            finetune_learning_rate=cfg.learning_rate, **row))
        print(f"{name} {_mu_tag(mu)} {k}: " + " ".join(
            f"{d}:{row['accuracy_by_delay'][d]:.3f}" for d in ("19", "200", "500", "1000")),
              flush=True)


def cmd_check(args):
  """The weights after k steps of the long run == a separate k-step fine-tuning's."""
  from haviv_tf.analysis import pipeline  # pylint: disable=g-import-not-at-top
  from haviv_tf.analysis import control  # pylint: disable=g-import-not-at-top
  name = os.path.basename(os.path.normpath(args.parents.split(",")[0]))
  k = _ints(args.steps)[0]
  mu = [m for m in _floats(args.mus) if m != 0][0]
  long_dir = os.path.join(args.root, name, _mu_tag(mu))
  targets = artifacts.load_npz(os.path.join(args.root, name, "targets.npz"))["per_class"]
  short_dir = os.path.join(args.root, name, f"check-{_mu_tag(mu)}-{k}")
  control.finetune(args.parents.split(",")[0], "slow_points", short_dir, steps=k,
                   speed_weight=mu, verbose=0, analyze=False, targets=targets)
  _, _, short = pipeline.restore(short_dir)
  _, _, long_run = pipeline.restore(long_dir)
  _load_weights(long_run.model, _snapshot_path(long_dir, k))
  diffs = [float(np.max(np.abs(a.numpy() - b.numpy())))
           for a, b in zip(short.model.trainable_variables, long_run.model.trainable_variables)]
  print(f"{name} {_mu_tag(mu)}: max |w(long run at {k}) - w({k}-step run)| = {max(diffs):.3g}")
  return 0 if max(diffs) == 0 else 1


def _load_cells(results):
  cells = []
  for path in sorted(glob.glob(os.path.join(results, "*.json"))):
    cells.append(artifacts.read_json(path))
  return cells


def _mean(values):
  values = [v for v in values if v is not None]
  return float(np.mean(values)) if values else float("nan")


def summarise(cells):
  """{(arch, protocol): {"parents": [...], "rows": {(mu, steps): stats}}} with gains over the
  control at the same steps, averaged over the parents that have both."""
  by_parent = {}
  for c in cells:
    by_parent.setdefault(c["parent"], {})[(c["mu"], c["steps"])] = c
  out = {}
  for parent, cs in sorted(by_parent.items()):
    trained = cs.get((None, 0))
    for (mu, k), c in cs.items():
      if mu is None or (0.0, k) not in cs:
        continue
      ctrl = cs[(0.0, k)]
      acc, acc0 = c["accuracy_by_delay"], ctrl["accuracy_by_delay"]
      before = trained["target_speed"] if trained else None
      stats = dict(
          gain={d: acc[d] - acc0[d] for d in LONG_DELAYS},
          acc={d: acc[d] for d in TRAIN_DELAYS + LONG_DELAYS},
          cost=_mean([acc[d] - acc0[d] for d in TRAIN_DELAYS]),
          speed_after=_mean(c["target_speed"]),
          speed_before=_mean(before) if before else float("nan"))
      entry = out.setdefault((c["arch"], c["protocol"]), {"parents": set(), "rows": {}})
      entry["parents"].add(parent)
      entry["rows"].setdefault((mu, k), []).append(stats)
  return out


def _avg(stats, path):
  vals = []
  for s in stats:
    v = s
    for p in path:
      v = v[p]
    vals.append(v)
  return float(np.mean(vals)), float(np.std(vals)), len(vals)


def pooled_lines(summary):
  """One table over every network: per (mu, steps), the gains' mean, sign count and Wilcoxon p."""
  from haviv_tf.study import significance as sig  # pylint: disable=g-import-not-at-top
  pooled = {}
  for entry in summary.values():
    for key, stats in entry["rows"].items():
      pooled.setdefault(key, []).extend(stats)
  lines = ["### All networks pooled (each network's gain over its own control)\n",
           "| μ | steps | n | gain 200 | gain 500 (> 0) | gain 1000 (> 0) | p 500 | p 1000 "
           "| cost at 5-19 (worst) |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
  for (mu, k), stats in sorted(pooled.items()):
    if mu == 0:
      continue
    g = {d: [st["gain"][d] for st in stats] for d in LONG_DELAYS}
    cost = [st["cost"] for st in stats]
    lines.append(
        f"| {mu:g} | {k} | {len(stats)} | {sig.mean_sd(g['200'])} | {sig.mean_sd(g['500'])} "
        f"({sum(v > 0 for v in g['500'])}/{len(stats)}) | {sig.mean_sd(g['1000'])} "
        f"({sum(v > 0 for v in g['1000'])}/{len(stats)}) | {sig.fmt_p(sig.wilcoxon(g['500']))} | "
        f"{sig.fmt_p(sig.wilcoxon(g['1000']))} | {np.mean(cost):+.3f} ({min(cost):+.3f}) |")
  lines += ["", "Gains are accuracy minus the control's (μ = 0, same steps, same trials); "
            "mean ± s.d. over networks; p: two-sided Wilcoxon signed-rank over networks "
            "(below 6 networks it cannot fall under 0.05).", ""]
  return lines


def _cell_lines(cells, arch, protocol, entry):
  """One network type's section of tables.md: its parents as trained, then every (μ, steps)."""
  parents = sorted(entry["parents"])
  lines = [f"### {protocol.upper()} {arch.upper()} ({', '.join(parents)})\n"]
  for parent in parents:
    trained = next((c for c in cells if c["parent"] == parent and c["steps"] == 0), None)
    if trained:
      acc = trained["accuracy_by_delay"]
      lines.append(f"- {parent} as trained (no fine-tuning): " + ", ".join(
          f"{acc[d]:.3f} at {d}" for d in TRAIN_DELAYS + LONG_DELAYS if d in acc)
                   + f"; target speed {_mean(trained['target_speed']):.2e}")
  lines.append("")
  lines.append("| μ | steps | acc 19 | acc 500 | gain 200 | gain 500 | gain 1000 | cost at 5-19 "
               "| target speed after (before) | n |")
  lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
  for (mu, k), stats in sorted(entry["rows"].items(), key=lambda kv: (kv[0][0], kv[0][1])):
    g = [_avg(stats, ("gain", d)) for d in LONG_DELAYS]
    lines.append(
        f"| {'control' if mu == 0 else f'{mu:g}'} | {k} | {_avg(stats, ('acc', '19'))[0]:.3f} | "
        f"{_avg(stats, ('acc', '500'))[0]:.3f} | "
        + " | ".join(f"{m:+.3f}" + (f" ± {s:.3f}" if n > 1 else "") for m, s, n in g)
        + f" | {_avg(stats, ('cost',))[0]:+.3f} | {_avg(stats, ('speed_after',))[0]:.2e} "
        f"({_avg(stats, ('speed_before',))[0]:.2e}) | {len(stats)} |")
  lines.append("")
  return lines


def _gain_figure(summary, arch, path):
  """gain_<arch>.png: accuracy − control against fine-tuning steps, per μ, protocol and delay."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from haviv_tf.analysis import plotting  # pylint: disable=g-import-not-at-top
  protocols = sorted({p for a, p in summary if a == arch})
  fig, axes = plt.subplots(len(protocols), len(LONG_DELAYS), squeeze=False,
                           figsize=(4 * len(LONG_DELAYS), 3.2 * len(protocols)), sharex=True)
  for i, protocol in enumerate(protocols):
    rows = summary[(arch, protocol)]["rows"]
    mus = sorted({mu for mu, _ in rows if mu != 0})
    for j, d in enumerate(LONG_DELAYS):
      ax = axes[i][j]
      ax.axhline(0, color="k", lw=0.8)
      for mu in mus:
        ks = sorted(k for m, k in rows if m == mu)
        means = [_avg(rows[(mu, k)], ("gain", d)) for k in ks]
        ax.errorbar(ks, [m for m, _, _ in means], yerr=[s for _, s, _ in means],
                    marker="o", capsize=2, label=f"μ = {mu:g}")
      ax.set_xscale("log")
      ax.set_title(f"{protocol} {arch}: delay {d}")
      ax.set_xlabel("fine-tuning steps")
      ax.set_ylabel("accuracy − control")
      if i == 0 and j == 0:
        ax.legend(fontsize=8)
  fig.tight_layout()
  plotting.save_png(fig, path)
  plt.close(fig)


def cmd_report(args):
  cells = _load_cells(args.results)
  if not cells:
    print(f"error: no results in {args.results}", file=sys.stderr)
    return 1
  summary = summarise(cells)
  lines = []
  for (arch, protocol), entry in sorted(summary.items()):
    lines += _cell_lines(cells, arch, protocol, entry)
  lines += pooled_lines(summary)
  os.makedirs(args.out, exist_ok=True)
  for arch in sorted({a for a, _ in summary}):
    _gain_figure(summary, arch, os.path.join(args.out, f"gain_{arch}.png"))
  common.write_tables(args.out, lines)
  return 0


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  sub = p.add_subparsers(dest="cmd", required=True)
  for name in ("run", "check"):
    s = sub.add_parser(name)
    s.add_argument("--parents", required=True)
    s.add_argument("--root", required=True)
    s.add_argument("--steps", default="107,300,1000,3000")
    s.add_argument("--mus", default="1e-4,1e-3,1e-2,1e-1")
    s.add_argument("--results", default=RESULTS)
  r = sub.add_parser("report")
  r.add_argument("--results", default=RESULTS)
  r.add_argument("--out", default=os.path.join(HERE, "dose_response"))
  args = p.parse_args(argv)
  if args.cmd == "report":
    return cmd_report(args)
  if args.cmd == "check":
    return cmd_check(args)
  from haviv_tf.base import config as config_lib  # pylint: disable=g-import-not-at-top
  try:
    cmd_run(args)
  except config_lib.InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
