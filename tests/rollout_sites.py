"""Records what every "image, then noise" rollout site returns on the committed finished run.

Run as a script (`python3 tests/rollout_sites.py OUT.npz`) to write the record; rollouts_test.py
compares today's code with the record committed in tests/fixtures/rollout_sites.npz (written by
the code before the rollout runner was shared, commit 34455f6), bit for bit.
"""

import json
import os
import shutil
import sys
import tempfile

import numpy as np
import tensorflow as tf

from haviv_tf.analysis import backtrack
from haviv_tf.analysis import pipeline
from haviv_tf.probes import evaluation
from haviv_tf.probes import predictors
from haviv_tf.probes import slow_points
from haviv_tf.task import trials

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "v1",
                       "finished")
RECORD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures",
                      "rollout_sites.npz")


def restore_fixture():
  """(cfg, source, run) of a copy of the finished tiny run (the copy is removed after restore)."""
  tmp = tempfile.mkdtemp()
  try:
    workdir = os.path.join(tmp, "run")
    shutil.copytree(FIXTURE, workdir)
    return pipeline.restore(workdir)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def site_outputs(cfg, source, run) -> dict:
  """{name: array} of every rollout site, small sizes, several batches (seed streams per batch)."""
  model = run.model
  gen = trials.generator_for(source, "test", cfg)
  out = {}
  centres, counts = slow_points.class_centres(model, gen, steps_after=15, trials_per_class=6,
                                              seed=3, batch_size=25)
  out.update(class_centres=centres, class_counts=counts)
  states, classes, times = slow_points.states_of_new_trials(model, gen, 23, seed=4, batch_size=10)
  out.update(sample_states=states, sample_classes=classes, sample_times=times)
  x_bar = slow_points.mean_input_features(model, gen, seed=cfg.seed)
  p_centres, p_counts, p_states, p_classes = slow_points.paper_class_centres(
      model, source, cfg, x_bar, seed=5, trials_per_class=4, batch_size=16)
  out.update(paper_centres=p_centres, paper_counts=p_counts, paper_states=p_states,
             paper_classes=p_classes)
  cloud = predictors.trajectory_cloud(model, gen, (15, 3, 40), per_class=3, seed=6,
                                      batch_size=16)
  for k in ("times", "states", "correct", "classes", "lo", "hi"):
    out[f"cloud_{k}"] = getattr(cloud, k)
  out["cloud_rates"] = np.stack(predictors.cloud_rates(cloud, 15, 40))
  traj, traj_classes = pipeline.post_stimulus_trajectories(model, gen, 7, num=23, steps=20,
                                                           max_frames=400)
  out.update(post_stimulus=traj, post_stimulus_classes=traj_classes)
  out["cloud_centres"] = backtrack.cloud_centres(model, gen, 8, num=30)
  for jit in (False, True):
    ev = evaluation.Evaluator(model, gen, cfg.seq_len, jit_compile=jit)
    for delay in (5, 27):
      # pylint: disable=protected-access
      s = tf.constant([9, evaluation._EVAL_STREAM + delay], tf.int64)
      n = 26 if jit else tf.constant(26)
      for name, v in zip(("classes", "report", "full"), ev._run(s, tf.constant(delay), n)):
        out[f"eval_{int(jit)}_{delay}_{name}"] = v.numpy()
  return out


def pipeline_outputs(cfg, source, run) -> dict:
  """{name: array} of analysis.pipeline.find_slow_points (both recipes, short searches): its
  results summary (as JSON text) and every array of its slow_points.npz."""
  out = {}
  for recipe in ("default", "paper"):
    with tempfile.TemporaryDirectory() as tmp:
      summary = pipeline.find_slow_points(
          cfg, run, source, tmp, slow_points.recipe_config(recipe, cfg, max_iters=30),
          num_sampled=5, trials_per_class=5, recipe=recipe,
          diag_config=predictors.DiagnosticsConfig(trials_per_class=2, min_frames=64,
                                                   max_frames=128))
      out[f"{recipe}_summary"] = np.asarray(json.dumps(summary, sort_keys=True))
      with np.load(os.path.join(tmp, pipeline.SLOW_POINTS_FILE)) as f:
        out.update({f"{recipe}_npz_{k}": f[k] for k in f.files})
  return out


def main(argv):
  restored = restore_fixture()
  out = site_outputs(*restored)
  if "--pipeline" in argv:
    out.update(pipeline_outputs(*restored))
  argv = [a for a in argv if not a.startswith("--")]
  np.savez(argv[1] if len(argv) > 1 else RECORD, **out)
  print(f"recorded {len(out)} arrays")


if __name__ == "__main__":
  main(sys.argv)
