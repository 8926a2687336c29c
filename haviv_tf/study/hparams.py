"""TensorBoard's HParams dashboard for a sweep: one session per network and per fine-tuning.

Each session is written to <workdir>/tensorboard/hparams with the run's recorded config and
its final metrics (report accuracy per delay, median slow-point speed); the experiment (which
hyper-parameters and metrics the dashboard shows) goes to the sweep root, so that
`tensorboard --logdir ROOT` lists them all.
"""

import glob
import os
import shutil

import numpy as np

from haviv_tf.analysis import control
from haviv_tf.base import artifacts
from haviv_tf.base import config as config_lib
from haviv_tf.base import summaries


def _hparam(hp, name, domain=None):
  """The HParam of Config field `name`, described by the field's documentation."""
  return hp.HParam(name, domain, description=config_lib.field_help(name))


def _sessions(rec) -> list:
  """(path, mode, results) of a run and of each of its fine-tunings that has results."""
  sessions = [(rec["workdir"], "trained", rec["results"])]
  if rec["compare"]:
    for m in control.MODES:
      path = os.path.join(control.default_out(rec["workdir"]), m)
      res = os.path.join(path, artifacts.RESULTS_FILE)
      if os.path.exists(res):
        sessions.append((path, m, artifacts.read_json(res)))
  return sessions


def _write_session(tf, hp, root, path, mode, res, metrics) -> bool:
  """One session's hyper-parameters and final metrics (adding their tags to `metrics`);
  False when the run recorded no config."""
  # The recorded config: a committed grid keeps its runs' files but not their checkpoints.
  cfg = artifacts.recorded_config(path)
  if cfg is None:
    return False
  logdir = os.path.join(path, "tensorboard", "hparams")
  if os.path.isdir(logdir):
    shutil.rmtree(logdir)  # one session per run, however often the report is rebuilt
  hparams = dict(protocol=cfg.protocol, arch=cfg.arch, dataset=cfg.dataset, seed=cfg.seed,
                 preset=cfg.preset, finetune=mode, speed_weight=cfg.speed_weight,
                 learning_rate=cfg.learning_rate, train_steps=cfg.train_steps)
  writer = tf.summary.create_file_writer(logdir)
  with writer.as_default():
    hp.hparams(hparams, trial_id=os.path.relpath(path, root))
    for d, a in res.get("accuracy_by_delay", {}).items():
      tf.summary.scalar(f"hparams/accuracy_delay_{d}", a, step=res.get("step", 0),
                        description=summaries.describe(f"hparams/accuracy_delay_{d}"))
      metrics.add((int(d), f"hparams/accuracy_delay_{d}"))
    speeds = [v for v in (res.get("slow_point_speed") or {}).values() if v is not None]
    if speeds:
      tf.summary.scalar("hparams/median_slow_point_speed", float(np.median(speeds)),
                        step=res.get("step", 0),
                        description=summaries.describe("hparams/median_slow_point_speed"))
      metrics.add((10**9, "hparams/median_slow_point_speed"))
  writer.close()
  return True


def _write_experiment(tf, hp, root, modes, metrics):
  """The experiment at the root: which hyper-parameters and metrics the dashboard shows."""
  for old in glob.glob(os.path.join(root, "events.out.tfevents.*.hparams")):
    os.remove(old)
  writer = tf.summary.create_file_writer(root, filename_suffix=".hparams")
  with writer.as_default():
    hp.hparams_config(
        hparams=[_hparam(hp, "protocol", hp.Discrete(list(config_lib.PROTOCOLS))),
                 _hparam(hp, "arch", hp.Discrete(list(config_lib.ARCHS))),
                 _hparam(hp, "dataset", hp.Discrete(list(config_lib.DATASETS))),
                 _hparam(hp, "seed"), _hparam(hp, "preset", hp.Discrete(
                     list(config_lib.PRESET_NAMES))),
                 _hparam(hp, "finetune", hp.Discrete(sorted(modes))),
                 _hparam(hp, "speed_weight"), _hparam(hp, "learning_rate"),
                 _hparam(hp, "train_steps")],
        metrics=[hp.Metric(tag, display_name=tag.split("/", 1)[1],
                           description=summaries.describe(tag))
                 for _, tag in sorted(metrics)])
  writer.close()


def write_hparams(root: str, recs) -> None:
  """HParams-dashboard sessions: one per network and per fine-tuning, with final metrics.

  Args:
    root: the sweep root; the experiment is written there.
    recs: the runs' records (evidence.collect); those without results are skipped.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorboard.plugins.hparams import api as hp  # pylint: disable=g-import-not-at-top
  metrics = set()
  modes = {"trained"}
  for r in recs:
    if not r["results"]:
      continue
    for path, mode, res in _sessions(r):
      if _write_session(tf, hp, root, path, mode, res, metrics):
        modes.add(mode)
  _write_experiment(tf, hp, root, modes, metrics)
