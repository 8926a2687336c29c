"""Back-tracking slow points through a run's training snapshots.

Starting from the final network's slow points (one per class, found from the class centres),
the search is re-run on each earlier snapshot in turn (latest first), initialised at the points
found on the snapshot after it. Each point's path records its speed, read-out class and position
in the final network's principal-component plane. Two classes' points "merge" at a snapshot
where they come within `merge_frac` x (median distance between the final points) of each other
having been apart at the later snapshot: going back in time, one slow point served both classes.
A point's "birth" is the earliest snapshot from which on it reads out its own class; before it,
it reads out another class (VoCu: a class introduced later is born from the slow point of a
class already there, at the step its class enters training).

The read-out is one criterion of whose a point is; the other, which does not use the read-out,
is the network's own class clouds: at each snapshot, the class whose centre (the mean state 15
steps after the stimulus over the same 1,000 test trials of every class, all trials, correct
or not) is nearest to the point, in speed coordinates ((h, tanh c) for an LSTM). Births by that
criterion are found the same way (`births_by_centre`).

The following itself, and the merge and birth rules, are the library's
(haviv_tf.dynamics.tracking.follow_back, find_merges, find_births, centre_labels); this module
supplies what is this task's: the run's snapshots and final class points, x̄ per snapshot, the
read-out, the class clouds' centres, the classes' introduction steps, the PCA plane and files.
"""

import hashlib
import os

import numpy as np

from haviv_tf.analysis import pipeline
from haviv_tf.base import artifacts
from haviv_tf.base import config as config_lib
from haviv_tf.dynamics import snapshots as snapshots_lib
from haviv_tf.dynamics import tracking
from haviv_tf.task import curricula
from haviv_tf.models import network
from haviv_tf.analysis import plotting
from haviv_tf.probes import rollouts
from haviv_tf.probes import slow_points as slow_points_lib
from haviv_tf.training import checkpoints
from haviv_tf.task import trials

BACKTRACK_JSON = "backtrack.json"
BACKTRACK_NPZ = "backtrack.npz"
BACKTRACK_PNG = "backtrack.png"
CENTRE_STEPS_AFTER = rollouts.STEPS_AFTER_STIMULUS  # as the slow-point search's centres
CENTRE_TRIALS = 1000      # 100 per class
CENTRE_MARGIN = tracking.CENTRE_MARGIN  # nearest centre / next nearest below this: that class's
MERGE_FRAC = tracking.MERGE_FRAC

# The bookkeeping is the library's (one implementation); these names stay for their callers.
nearest_centres = tracking.nearest_centres
find_merges = tracking.find_merges
find_births = tracking.find_births
centre_labels = tracking.centre_labels


def cloud_centres(model, generator, seed, num=CENTRE_TRIALS, steps_after=CENTRE_STEPS_AFTER):
  """Every class's mean state `steps_after` steps after its stimulus, over all `num` test
  trials (correct or not), in speed coordinates: [10, S'] (NaN rows for absent classes)."""
  traj, classes = pipeline.post_stimulus_trajectories(model, generator, seed, num=num,
                                                      steps=steps_after + 1)
  return rollouts.class_centres(tracking.speed_coordinates(model, traj[:, steps_after]), classes)[0]


def introduction_steps(cfg) -> list:
  """The step at which each class enters training (VoCu: its stage boundary; else 0)."""
  bounds = curricula.for_config(cfg).boundaries
  if cfg.protocol != "vocu" or cfg.finetune:
    return [0] * config_lib.NUM_CLASSES
  return [0, 0] + [int(b) for b in bounds][:config_lib.NUM_CLASSES - 2]


def _final_points(workdir, run):
  """(the final network's class slow points, the digest of their states)."""
  sp_path = os.path.join(workdir, pipeline.SLOW_POINTS_FILE)
  res_path = os.path.join(workdir, artifacts.RESULTS_FILE)
  if not os.path.exists(sp_path) or not os.path.exists(res_path):
    raise artifacts.RunError(f"{workdir} has no slow points yet; run --mode=slow_points first")
  results = artifacts.read_json(res_path)
  if results.get("slow_points_step") != run.step or "centre_counts" not in results:
    raise artifacts.RunError(f"{workdir}'s slow points are not of its final network; run "
                             "--mode=slow_points again")
  have = np.flatnonzero(np.asarray(results["centre_counts"]) > 0)
  final = slow_points_lib.load_points(sp_path)[:len(have)]
  if not len(final):
    raise artifacts.RunError(f"{workdir}: no class is remembered correctly, so there are no "
                             "class slow points to follow back")
  digest = hashlib.sha256(np.ascontiguousarray(final.states, np.float32).tobytes()).hexdigest()
  return final, digest


def _stored(workdir, run, sp_config, merge_frac, digest, overwrite):
  """The stored back-tracking if it has these settings (None if it is to be made)."""
  stored_path = os.path.join(workdir, BACKTRACK_JSON)
  if not os.path.exists(stored_path):
    return None
  stored = artifacts.read_json(stored_path)
  same = (stored.get("final_step") == run.step and stored.get("merge_frac") == merge_frac
          and stored.get("slow_points_digest", digest) == digest
          and stored.get("sp_max_iters") == sp_config.max_iters
          and ("sp_config" not in stored
               or pipeline.same_sp_config(stored["sp_config"], sp_config)))
  if same:
    return dict(stored, unchanged=True)
  if not overwrite and stored.get("final_step") == run.step:
    raise artifacts.RunError(
        f"{workdir} holds a back-tracking of step {run.step} with other settings (merge_frac "
        f"{stored.get('merge_frac')}, sp_max_iters {stored.get('sp_max_iters')}) or from "
        "other slow points; --overwrite replaces it")
  return None


def _earlier_entries(workdir, run):
  """The history entries before the final step, latest first."""
  entries = [e for e in checkpoints.History.load(workdir) if e["step"] < run.step]
  if not entries:
    raise artifacts.RunError(f"{workdir} has no training snapshots before step {run.step} "
                             f"(the {checkpoints.HISTORY_DIR}/ folder); train with --history_every")
  return entries[::-1]


def _follow(workdir, cfg, source, gen, run, final, entries, sp_config, merge_frac):
  """The library's Track of the class points through the snapshots `entries` (test trials of
  `gen`), with the read-out ("readout") and nearest-centre ("centre") labels."""
  near, ratio = nearest_centres(run.model, final.states, cloud_centres(run.model, gen, cfg.seed))
  model = network.build(cfg, source.frame_shape)  # weights change, the graph not

  def measure(step, states, x_bar):
    del step
    n, r = nearest_centres(model, states, cloud_centres(model, gen, cfg.seed))
    return dict(readout=slow_points_lib.readout_classes(model, states, x_bar),
                nearest_centre=n, centre_ratio=r)

  snaps = [snapshots_lib.Snapshot(int(e["step"]),
                                  path=os.path.join(workdir, checkpoints.HISTORY_DIR, e["path"]))
           for e in entries]
  track = tracking.follow_back(
      model, snaps, final,
      lambda step: slow_points_lib.mean_input_features(model, gen, seed=cfg.seed), sp_config,
      final_step=run.step, classes=np.asarray(final.extras["init_class"], np.int32),
      restore=lambda snap: checkpoints.read_snapshot(model, snap.path), measure=measure,
      final_measures=dict(readout=final.extras["readout"], nearest_centre=near,
                          centre_ratio=ratio),
      label_keys=("readout",), introduced=introduction_steps(cfg), merge_frac=merge_frac)
  return track.with_labels(centre=centre_labels(track.extras["nearest_centre"],
                                                track.extras["centre_ratio"]))


def _record(track, entries, run, sp_config, digest) -> dict:
  """backtrack.json's content (without the PCA coordinates)."""
  stage_steps = {int(e["step"]) for e in entries if e.get("stage_change")}
  steps = track.steps.tolist()
  return dict(
      steps=steps, stage_change=[s in stage_steps for s in steps],
      classes=track.classes.tolist(), speed=track.speed.tolist(),
      readout=track.labels["readout"].tolist(), pca=None, merge_space=track.merge_space,
      merge_tol=track.merge_tol,
      merge_frac=track.merge_frac, merges=track.merges, births=track.births["readout"],
      nearest_centre=track.extras["nearest_centre"].tolist(),
      centre_ratio=np.round(track.extras["centre_ratio"], 4).tolist(),
      centre_margin=CENTRE_MARGIN, births_by_centre=track.births["centre"],
      final_step=run.step, sp_max_iters=sp_config.max_iters,
      sp_config=pipeline.sp_config_record(sp_config), slow_points_digest=digest)


def backtrack(workdir: str, sp_config=None, merge_frac: float = MERGE_FRAC,
              overwrite=True) -> dict:
  """Back-tracks the final slow points of `workdir` through its history snapshots.

  Writes backtrack.json (paths), backtrack.npz (points), backtrack.png into `workdir`. A stored
  back-tracking of this network with the same settings is returned as it is (with
  "unchanged": True); one with other settings (merge_frac, search settings) is replaced only
  with `overwrite` (the command line's default is not to: RunError naming --overwrite).

  Raises:
    artifacts.RunError: no trained run, no final slow points, or fewer than one earlier snapshot.
  """
  if not merge_frac > 0:
    raise config_lib.InputError(f"`merge_frac` must be positive, got {merge_frac!r}")
  cfg, source, run = pipeline.restore(workdir)
  sp_config = sp_config or slow_points_lib.SlowPointConfig()
  # Its slow points are checked first: stale ones need --mode=slow_points, not --overwrite.
  final, digest = _final_points(workdir, run)
  stored = _stored(workdir, run, sp_config, merge_frac, digest, overwrite)
  if stored is not None:
    return stored
  entries = _earlier_entries(workdir, run)
  # The final network's PCA plane, from trajectories after the stimulus.
  gen = trials.generator_for(source, "test", cfg)
  traj, _ = pipeline.post_stimulus_trajectories(run.model, gen, cfg.seed)
  traj = traj.reshape(-1, traj.shape[-1])
  mean, comps = plotting.pca_basis(np.concatenate([traj, final.states]), 2)
  track = _follow(workdir, cfg, source, gen, run, final, entries, sp_config, merge_frac)
  coords = (track.points - mean) @ comps.T
  out = _record(track, entries, run, sp_config, digest)
  out["pca"] = coords.tolist()
  artifacts.write_json(os.path.join(workdir, BACKTRACK_JSON), out)
  artifacts.save_npz(os.path.join(workdir, BACKTRACK_NPZ), steps=track.steps,
                     points=track.points.astype(np.float32), classes=track.classes)
  fig = plotting.backtrack_paths(track.steps.tolist(), coords, track.speed, track.classes,
                                 [(m["step"], *m["classes"]) for m in track.merges],
                                 title=f"{cfg.protocol} {cfg.arch} (seed {cfg.seed})")
  plotting.save_png(fig, os.path.join(workdir, BACKTRACK_PNG))
  return out
