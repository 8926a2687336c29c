"""Controlling memory: speed-regularised fine-tuning of a trained run, and its comparison.

A fine-tuning run starts from the weights of a trained (parent) workdir and trains on the final
task (all classes, T_max = seq_len) with loss + mu * sum_k ||F(s_k, x_k) - s_k||^2, where the
targets s_k (speed_targets.py) are fixed before it starts:

  control      mu = 0 (the same extra training; the speed at the class centres is only logged)
  slow_points  the slow points found from the parent's class centres
  center_mass  the parent's class centres of mass

Each class's target appears `speed_copies` times, each copy with its own noise frame every step.
Targets are estimated on training images, never test images. The fine-tuning run lives in its
own workdir (config.json records the parent); the parent workdir is only read.
"""

import dataclasses
import os

from absl import logging
import numpy as np

from haviv_tf.analysis import pipeline
from haviv_tf.base import artifacts
from haviv_tf.base import config as config_lib
from haviv_tf.analysis import plotting
from haviv_tf.probes import slow_points as slow_points_lib
from haviv_tf.probes import speed_targets
from haviv_tf.training import train
from haviv_tf.task import trials

MODES = config_lib.FINETUNE_MODES
TARGETS_FILE = "speed_targets.npz"
COMPARE_JSON = "compare.json"
COMPARE_MD = "compare.md"
COMPARE_ACCURACY_PNG = "compare_accuracy.png"
COMPARE_SPEED_PNG = "compare_speed.png"


def finetune_config(parent: config_lib.Config, mode: str, steps=None, speed_weight=None,
                    learning_rate=None) -> config_lib.Config:
  """The config of fine-tuning `parent` in `mode`.

  Paper: mu 1e-3 (MNIST) / 1e-2 (CIFAR-10), 5000 steps at the training learning rate, no decay.
  Quick: a tenth of the training steps at mu 1e-2 (config.QUICK_FINETUNE; chosen from the
  MNIST dose-response, and taken over for CIFAR-10). At the parent's learning rate unless
  `learning_rate` is given. A fine-tuning may itself be the parent when `steps` is given; the
  data stream continues after the parent's own steps.
  """
  if mode not in MODES:
    raise config_lib.InputError(f"unknown fine-tuning {mode!r}; valid: {', '.join(MODES)}")
  if parent.finetune and steps is None:  # the default length is a share of a trained run's
    raise config_lib.InputError(
        f"the parent run is itself a fine-tuning ({parent.finetune}): give --steps to fine-tune "
        "it again (the default length is set from a run trained from scratch)")
  quick = config_lib.QUICK_FINETUNE.get(parent.dataset) if parent.preset == "quick" else None
  if steps is None:
    if quick:
      steps = max(1, round(quick[0] * parent.train_steps))
    else:
      paper_steps = config_lib.preset("paper", parent.dataset).train_steps
      steps = max(1, round(config_lib.FINETUNE_PAPER_STEPS * parent.train_steps / paper_steps))
  if speed_weight is None:
    speed_weight = quick[1] if quick else config_lib.FINETUNE_SPEED_WEIGHT[parent.dataset]
  cfg = dataclasses.replace(
      parent, finetune=mode, train_steps=int(steps), lr_schedule="step", lr_decay_step=int(steps),
      warmup_steps=0,
      learning_rate=parent.learning_rate if learning_rate is None else learning_rate,
      speed_weight=0.0 if mode == "control" else float(speed_weight),
      speed_targets="center_mass" if mode == "control" else mode, speed_refresh_every=0,
      data_offset=parent.data_offset + parent.train_steps,
      checkpoint_every=min(parent.checkpoint_every, int(steps)),
      history_every=max(1, int(steps) // 4))
  config_lib.validate(cfg)
  return cfg


def default_out(parent_workdir: str) -> str:
  return os.path.normpath(parent_workdir) + "_finetune"


def finetune(parent_workdir: str, mode: str, workdir=None, steps=None, speed_weight=None,
             overwrite=False, verbose=None, sp_config=None, analyze=True,
             recipe="default", targets=None, extra_callbacks=(), learning_rate=None) -> dict:
  """Fine-tunes the trained run in `parent_workdir` into `workdir` (resumable); then, unless
  `analyze` is False, evaluates it, finds its slow points and exports it like any run.

  `learning_rate`: the fine-tuning's rate (default: the parent's, the paper's rule).
  `targets` ([10, S], NaN rows: no target) replaces the estimated speed targets, e.g. to give
  several fine-tunings of one parent the same slow points without searching again; a
  `control` fine-tuning ignores it. `extra_callbacks` are added to training's (train.train).
  Returns results.json of the fine-tuning run ({} with analyze=False).

  Raises:
    artifacts.RunError, datasets.DataError, ValueError: with a one-line message.
  """
  workdir = workdir or os.path.join(default_out(parent_workdir), mode)
  if os.path.abspath(workdir) == os.path.abspath(parent_workdir):
    raise artifacts.RunError("the fine-tuning --workdir must differ from the parent workdir")
  parent_cfg, source, parent_run = pipeline.restore(parent_workdir)
  if parent_run.step < parent_cfg.train_steps:
    raise artifacts.RunError(f"{parent_workdir} is trained to step {parent_run.step} of "
                             f"{parent_cfg.train_steps}; finish its training first")
  cfg = finetune_config(parent_cfg, mode, steps, speed_weight, learning_rate)
  source = train.prepare_workdir(cfg, workdir, overwrite, source=source, extra=dict(parent=dict(
      workdir=os.path.abspath(parent_workdir), step=parent_run.step,
      config=parent_cfg.to_dict())))
  generator = trials.generator_for(source, "train", cfg)
  logging.info("fine-tuning %s of %s (step %d): %d steps at mu %g into %s", mode,
               parent_workdir, parent_run.step, cfg.train_steps, cfg.speed_weight, workdir)

  def init(run):
    for dst, src in zip(run.model.trainable_variables, parent_run.model.trainable_variables):
      dst.assign(src)
    seed = cfg.seed
    if targets is not None and cfg.finetune != "control":
      per_class = np.asarray(targets, np.float32)
      if per_class.shape != (config_lib.NUM_CLASSES, run.model.state_size):
        raise ValueError(f"speed targets of shape {per_class.shape}; this network takes "
                         f"({config_lib.NUM_CLASSES}, {run.model.state_size})")
      counts = np.isfinite(per_class).all(axis=1).astype(np.int64)
      extra = dict(given=np.asarray(True))
    elif cfg.speed_targets == "slow_points":
      per_class, found, counts = speed_targets.slow_point_targets(
          run.model, generator, seed, sp_config, recipe, source, parent_cfg)
      extra = dict(slow_point_speed=found.speed, slow_point_q=found.q,
                   slow_point_class=found.extras["init_class"])
    else:
      per_class, counts = speed_targets.centre_targets(run.model, generator, seed, recipe,
                                                       source, parent_cfg)
      extra = {}
    states, weights = speed_targets.targets_from(per_class, cfg.speed_copies)
    run.model.set_speed_targets(states, weights)
    artifacts.save_npz(os.path.join(workdir, TARGETS_FILE), per_class=per_class, counts=counts,
                       **extra)

  run = train.train(cfg, workdir, source, verbose, extra_callbacks=extra_callbacks, init_fn=init)
  if not analyze:
    return {}
  return pipeline.after_training(cfg, run, source, workdir, sp_config, recipe,
                                 overwrite=overwrite)


def _complete(workdir, cfg_steps) -> bool:
  path = os.path.join(workdir, artifacts.RESULTS_FILE)
  if not os.path.exists(path) or not os.path.isdir(os.path.join(workdir,
                                                                pipeline.SAVED_MODEL_DIR)):
    return False
  results = artifacts.read_json(path)
  return (results.get("step") == cfg_steps and "slow_point_speed" in results
          and results.get("slow_points_format") == slow_points_lib.FORMAT_VERSION)


def _finished_other(workdir, cfg, parent_workdir, parent_cfg, parent_step):
  """Why the fine-tuning in `workdir` is not `cfg` of this parent network (None if it is).

  The parent is compared by its config and step, not its path: a grid moved to another
  directory keeps its fine-tunings."""
  try:
    train.check_workdir(cfg, workdir, overwrite=False)
  except artifacts.RunError as e:
    return str(e)
  parent = artifacts.read_json(os.path.join(workdir, artifacts.CONFIG_FILE)).get("parent") or {}
  try:
    same = config_lib.Config.from_record(parent.get("config") or {}) == parent_cfg
  except (TypeError, ValueError):
    same = False
  if parent.get("step") != parent_step or not same:
    return (f"{workdir} holds a fine-tuning of another network ({parent.get('workdir')}, step "
            f"{parent.get('step')}) than {parent_workdir} (step {parent_step}); use --overwrite "
            "to replace it, or another --out")
  return None


def compare(parent_workdir: str, out=None, steps=None, speed_weight=None, verbose=None,
            sp_config=None, recipe="default", overwrite=False) -> dict:
  """Runs (or resumes; finished ones are skipped) the three fine-tunings of `parent_workdir`
  into out/{control,slow_points,center_mass}, then writes out/compare.{json,md} and the plots
  of accuracy vs. delay and of slow-point speed before/after.

  A finished fine-tuning there with other settings (steps, mu, parent) is never mixed into the
  comparison nor silently replaced: RunError naming --overwrite, unless `overwrite`.
  """
  out = out or default_out(parent_workdir)
  parent_cfg = pipeline.trained_config(parent_workdir)  # each fine-tuning restores the model
  parent_results_path = os.path.join(parent_workdir, artifacts.RESULTS_FILE)
  parent_results = (artifacts.read_json(parent_results_path)
                    if os.path.exists(parent_results_path) else {})
  if "accuracy_by_delay" not in parent_results or "slow_point_speed" not in parent_results:
    raise artifacts.RunError(f"{parent_workdir} has no evaluation and slow points yet; run "
                             "--mode=evaluate and --mode=slow_points on it first")
  rows = {"trained": parent_results}
  parent_step = parent_results.get("step")
  # Every finished one is checked before any trains: a refusal costs no training.
  for mode in MODES:
    workdir = os.path.join(out, mode)
    cfg = finetune_config(parent_cfg, mode, steps, speed_weight)
    if not overwrite and os.path.exists(os.path.join(workdir, artifacts.CONFIG_FILE)):
      why = _finished_other(workdir, cfg, parent_workdir, parent_cfg, parent_step)
      if why:
        raise artifacts.RunError(why)
  for k, mode in enumerate(MODES, 1):
    workdir = os.path.join(out, mode)
    cfg = finetune_config(parent_cfg, mode, steps, speed_weight)
    if _complete(workdir, cfg.train_steps) and not (
        overwrite and _finished_other(workdir, cfg, parent_workdir, parent_cfg, parent_step)):
      logging.info("compare: fine-tuning %d of %d (%s) already finished in %s; kept", k,
                   len(MODES), mode, workdir)
      rows[mode] = artifacts.read_json(os.path.join(workdir, artifacts.RESULTS_FILE))
    else:
      logging.info("compare: fine-tuning %d of %d (%s) into %s", k, len(MODES), mode, workdir)
      rows[mode] = finetune(parent_workdir, mode, workdir, steps, speed_weight,
                            overwrite=overwrite, verbose=verbose, sp_config=sp_config,
                            recipe=recipe)
  return write_comparison(out, parent_workdir, rows)


def write_comparison(out: str, parent_workdir: str, rows: dict) -> dict:
  """compare.json / compare.md / two PNGs from {row name: results.json content}."""
  delays = sorted({int(d) for r in rows.values() for d in r.get("accuracy_by_delay", {})})
  table = {}
  for name, r in rows.items():
    speeds = [v for v in (r.get("slow_point_speed") or {}).values() if v is not None]
    table[name] = dict(
        accuracy_by_delay={str(d): r.get("accuracy_by_delay", {}).get(str(d)) for d in delays},
        slow_point_speed=r.get("slow_point_speed"),
        median_slow_point_speed=float(np.median(speeds)) if speeds else None)
  summary = dict(parent=os.path.abspath(parent_workdir), delays=delays, rows=table)
  os.makedirs(out, exist_ok=True)
  artifacts.write_json(os.path.join(out, COMPARE_JSON), summary)

  def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)

  lines = [f"# Fine-tuning comparison of {os.path.abspath(parent_workdir)}", "",
           "Report-step accuracy on test trials by delay:", "",
           "| run | " + " | ".join(str(d) for d in delays) + " | median slow-point speed |",
           "|---" * (len(delays) + 2) + "|"]
  for name, t in table.items():
    lines.append(f"| {name} | " + " | ".join(fmt(t["accuracy_by_delay"][str(d)], ".3f")
                                           for d in delays)
                 + f" | {fmt(t['median_slow_point_speed'], '.2e')} |")
  lines += ["", "Slow-point speed per class (from each class's centre of mass):", "",
            "| run | " + " | ".join(str(c) for c in range(config_lib.NUM_CLASSES)) + " |",
            "|---" * (config_lib.NUM_CLASSES + 1) + "|"]
  for name, t in table.items():
    sp = t["slow_point_speed"] or {}
    lines.append(f"| {name} | " + " | ".join(fmt(sp.get(str(c)), ".1e")
                                           for c in range(config_lib.NUM_CLASSES)) + " |")
  artifacts.write_text(os.path.join(out, COMPARE_MD), "\n".join(lines) + "\n")

  curves = {}
  for name, t in table.items():
    ds = [d for d in delays if t["accuracy_by_delay"][str(d)] is not None]
    curves[name] = (ds, [t["accuracy_by_delay"][str(d)] for d in ds])
  plotting.save_png(plotting.accuracy_vs_delay(curves, title="Fine-tuning: report accuracy"),
                    os.path.join(out, COMPARE_ACCURACY_PNG))
  before = table.get("trained", {}).get("slow_point_speed") or {}
  after = {name: t["slow_point_speed"] or {} for name, t in table.items() if name != "trained"}
  plotting.save_png(plotting.speed_before_after(before, after),
                    os.path.join(out, COMPARE_SPEED_PNG))
  return summary
