"""Does --precision=mixed_bfloat16 change what the networks learn? For experiments/bf16_learning.md.

  # train and evaluate every run of the grid that is not finished (resumable; each run's workdir
  # is a normal haviv_tf run: config.json, checkpoints, results.json)
  python3 experiments/bf16_learning.py run --root=ROOT --data_dir=../shared/data
  # the comparison table of whatever has finished
  python3 experiments/bf16_learning.py report --root=ROOT [--out=experiments/bf16_learning.json]

The grid: quick preset, DeCu, full MNIST, GRU and LSTM, seeds 0-2, float32 and mixed_bfloat16
(12 runs), all with the preset's defaults otherwise (XLA-compiled steps). Each run is trained to
the preset's 3,000 steps and evaluated at the preset's delays (5-1000, 1,000 test trials each;
evaluation runs in float32 for both precisions). The report compares, per arch and delay, the
two precisions' seed means (difference against twice its standard error) and tests the paired
differences (a seed's two runs share initialisation and trials) with a Wilcoxon signed-rank test.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top

from haviv_tf.base import artifacts
from haviv_tf.base import config as config_lib

ARCHS = ("gru", "lstm")
SEEDS = (0, 1, 2)
PRECISIONS = ("float32", "mixed_bfloat16")


def _name(arch, precision, seed):
  return f"mnist-decu-{arch}-quick-{precision}-s{seed}"


def _done(workdir, steps):
  path = os.path.join(workdir, artifacts.RESULTS_FILE)
  return os.path.exists(path) and artifacts.read_json(path).get("step") == steps


def cmd_run(args):
  from haviv_tf.analysis import pipeline  # pylint: disable=g-import-not-at-top
  from haviv_tf.training import train  # pylint: disable=g-import-not-at-top
  source = None
  for seed in SEEDS:
    for arch in ARCHS:
      for precision in PRECISIONS:
        cfg = config_lib.resolve("quick", "mnist", dict(
            protocol="decu", arch=arch, seed=seed, precision=precision, data_dir=args.data_dir))
        workdir = os.path.join(args.root, _name(arch, precision, seed))
        if _done(workdir, cfg.train_steps):
          continue
        t0 = time.time()
        with artifacts.workdir_lock(workdir):
          source = train.prepare_workdir(cfg, workdir, source=source)
          run = train.train(cfg, workdir, source, verbose=0)
          t1 = time.time()
          pipeline.evaluate(cfg, run, source, workdir)
          artifacts.update_json(os.path.join(workdir, artifacts.RESULTS_FILE),
                                dict(train_seconds=t1 - t0, eval_seconds=time.time() - t1))
        print(f"{workdir}: trained {t1 - t0:.0f} s, evaluated {time.time() - t1:.0f} s",
              flush=True)


def collect(root):
  """{(arch, precision): {seed: {delay: accuracy}}} of the finished runs, and their seconds."""
  out, secs = {}, {}
  for arch in ARCHS:
    for precision in PRECISIONS:
      for seed in SEEDS:
        path = os.path.join(root, _name(arch, precision, seed), artifacts.RESULTS_FILE)
        if not os.path.exists(path):
          continue
        res = artifacts.read_json(path)
        if "accuracy_by_delay" not in res:
          continue
        out.setdefault((arch, precision), {})[seed] = {
            int(k): float(v) for k, v in res["accuracy_by_delay"].items()}
        secs.setdefault((arch, precision), []).append(res.get("train_seconds"))
  return out, secs


def cmd_report(args):
  """Per arch and delay: both precisions' seeds, the difference of means against twice its
  standard error (from the two groups' seed spread), and a Wilcoxon signed-rank test over all
  (seed, delay) pairs (a seed's two runs share initialisation and trials)."""
  from haviv_tf.study import significance  # pylint: disable=g-import-not-at-top
  runs, secs = collect(args.root)
  lines, summary = [], {}
  for arch in ARCHS:
    f32, b16 = runs.get((arch, "float32"), {}), runs.get((arch, "mixed_bfloat16"), {})
    seeds = sorted(set(f32) & set(b16))
    if not seeds:
      lines.append(f"{arch}: not finished (float32 seeds {sorted(f32)}, bfloat16 {sorted(b16)})")
      continue
    delays = sorted(set.intersection(*(set(f32[s]) & set(b16[s]) for s in seeds)))
    lines.append(f"\n### {arch.upper()} (seeds {seeds}; 1,000 test trials per delay)\n")
    lines.append("| delay | float32 per seed | float32 mean ± s.d. | bfloat16 per seed | "
                 "bfloat16 mean ± s.d. | difference of means | 2 s.e. | within |")
    lines.append("| ---: | --- | --- | --- | --- | ---: | ---: | --- |")
    diffs, outside = [], 0
    for d in delays:
      a = np.array([f32[s][d] for s in seeds])
      b = np.array([b16[s][d] for s in seeds])
      n = len(seeds)
      se = float(np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / n)) if n > 1 else float("nan")
      diff = float(b.mean() - a.mean())
      inside = bool(abs(diff) <= 2 * se) if n > 1 else None
      outside += inside is False
      diffs += list(b - a)
      lines.append(f"| {d} | {' '.join(f'{x:.3f}' for x in a)} | {significance.mean_sd(a)} | "
                   f"{' '.join(f'{x:.3f}' for x in b)} | {significance.mean_sd(b)} | "
                   f"{diff:+.3f} | {2 * se:.3f} | "
                   f"{'–' if inside is None else 'yes' if inside else 'no'} |")
      summary.setdefault(arch, {})[str(d)] = dict(float32=a.tolist(), bfloat16=b.tolist(),
                                                  difference=diff, two_se=2 * se)
    p = significance.wilcoxon(diffs)
    lines.append(f"\nPaired over all {len(diffs)} (seed, delay) pairs: mean difference "
                 f"{np.mean(diffs):+.4f}, bfloat16 higher in {sum(x > 0 for x in diffs)}, lower "
                 f"in {sum(x < 0 for x in diffs)}; Wilcoxon signed-rank p = "
                 f"{significance.fmt_p(p)}. Delays where the difference of means exceeds 2 s.e.: "
                 f"{outside} of {len(delays)}.")
    summary.setdefault(arch, {})["paired"] = dict(n=len(diffs), mean=float(np.mean(diffs)),
                                                  wilcoxon_p=p, delays_outside=outside)
    t32 = [s for s in secs.get((arch, "float32"), []) if s]
    t16 = [s for s in secs.get((arch, "mixed_bfloat16"), []) if s]
    if t32 and t16:
      lines.append(f"\nTraining wall time per run (3,000 steps, XLA): float32 "
                   f"{np.median(t32):.0f} s, bfloat16 {np.median(t16):.0f} s (medians; other "
                   "work shared the machine, so these are not speed measurements).")
  print("\n".join(lines))
  if args.out:
    artifacts.write_json(args.out, summary)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("command", choices=("run", "report"))
  parser.add_argument("--root", required=True)
  parser.add_argument("--data_dir", default="")
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  try:
    {"run": cmd_run, "report": cmd_report}[args.command](args)
  except config_lib.InputError as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  main()
