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
"""

import dataclasses
import hashlib
import json
import os
import time

from absl import logging
import numpy as np
import tensorflow as tf

from haviv_tf.analysis import pipeline
from haviv_tf.base import artifacts
from haviv_tf.base import config as config_lib
from haviv_tf.dynamics import finder as finder_lib
from haviv_tf.dynamics import linearize
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
CENTRE_MARGIN = 0.9       # nearest centre / next nearest below this: the point is that class's


def _speed_coordinates(model, states):
  return np.asarray(model.cell.speed_coordinates(tf.convert_to_tensor(states, tf.float32)),
                    np.float64)


def cloud_centres(model, generator, seed, num=CENTRE_TRIALS, steps_after=CENTRE_STEPS_AFTER):
  """Every class's mean state `steps_after` steps after its stimulus, over all `num` test
  trials (correct or not), in speed coordinates: [10, S'] (NaN rows for absent classes)."""
  traj, classes = pipeline.post_stimulus_trajectories(model, generator, seed, num=num,
                                                      steps=steps_after + 1)
  return rollouts.class_centres(_speed_coordinates(model, traj[:, steps_after]), classes)[0]


def nearest_centres(model, points, centres):
  """(class of the nearest centre [P], distance to the own class's centre / to the nearest
  other class's centre [P] given the points' classes are those nearest) for points [P, S]."""
  coords = _speed_coordinates(model, points)
  d = np.linalg.norm(coords[:, None] - centres[None], axis=-1)
  d = np.where(np.isnan(d), np.inf, d)
  nearest = np.argmin(d, axis=1)
  second = np.sort(d, axis=1)[:, 1]
  return nearest.astype(np.int32), d[np.arange(len(points)), nearest] / second


def find_merges(steps, points, classes, tol):
  """Where two tracked points meet going back.

  Args:
    steps: [T] snapshot steps, latest first.
    points: [T, P, S] tracked points.
    classes: [P] class of each point.
    tol: distance below which two points count as one.

  Returns:
    [(step, class_a, class_b, distance)]: the first (latest) snapshot at which a pair is within
    `tol` after being farther apart at the snapshot before it in the list.
  """
  points = np.asarray(points, np.float64)
  out, merged = [], set()
  for t in range(1, len(steps)):
    d = np.linalg.norm(points[t][:, None] - points[t][None], axis=-1)
    d_later = np.linalg.norm(points[t - 1][:, None] - points[t - 1][None], axis=-1)
    for a in range(len(classes)):
      for b in range(a + 1, len(classes)):
        key = (int(classes[a]), int(classes[b]))
        if key not in merged and d[a, b] < tol and d_later[a, b] >= tol:
          merged.add(key)
          out.append((int(steps[t]), key[0], key[1], float(d[a, b])))
  return out


def introduction_steps(cfg) -> list:
  """The step at which each class enters training (VoCu: its stage boundary; else 0)."""
  bounds = curricula.for_config(cfg).boundaries
  if cfg.protocol != "vocu" or cfg.finetune:
    return [0] * config_lib.NUM_CLASSES
  return [0, 0] + [int(b) for b in bounds][:config_lib.NUM_CLASSES - 2]


def centre_labels(nearest, ratio, margin=CENTRE_MARGIN):
  """The class of each point by its nearest centre, -1 where that centre is not nearer than
  `margin` x the next nearest one."""
  return np.where(np.asarray(ratio) < margin, np.asarray(nearest), -1).astype(np.int32)


def find_births(steps, readout, classes, introduced):
  """Where each tracked point stops reading out its own class, going back.

  Args:
    steps: [T] snapshot steps, latest first.
    readout: [T, P] class read out by each point at each snapshot.
    classes: [P] class of each point.
    introduced: [10] step at which each class enters training (a snapshot at that step holds
      the network before its first update on the class).

  Returns:
    [{"class", "birth_step", "before_step", "from_class", "introduced_at", "at_introduction"}]:
    birth_step is the earliest snapshot (walking back without a gap) at which the point reads
    out its own class; before_step the snapshot before it, where it reads out from_class (both
    None if it reads out its own class all the way back; birth_step None if not even the final
    network's point does). at_introduction: before_step <= introduced_at < birth_step and
    from_class is a class (not -1, see centre_labels), i.e. the point turned from another
    class's into its own class's as training on that class began.
  """
  readout = np.asarray(readout)
  out = []
  for p, c in enumerate(classes):
    t = next((t for t in range(len(steps)) if readout[t, p] != c), None)
    birth = before = source = None
    if t is None:
      birth = int(steps[-1])
    elif t > 0:
      birth, before, source = int(steps[t - 1]), int(steps[t]), int(readout[t, p])
    intro = int(introduced[int(c)])
    out.append({"class": int(c), "birth_step": birth, "before_step": before,
                "from_class": source, "introduced_at": intro,
                "at_introduction": bool(before is not None and source >= 0 and intro > 0
                                        and before <= intro < birth)})
  return out


def _sp_record(sp_config) -> dict:
  return json.loads(json.dumps(dataclasses.asdict(sp_config), default=artifacts.jsonable))


def backtrack(workdir: str, sp_config=None, merge_frac: float = 0.05, overwrite=True) -> dict:
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
  # Its slow points are checked first: stale ones need --mode=slow_points, not --overwrite.
  digest = hashlib.sha256(np.ascontiguousarray(final.states, np.float32).tobytes()).hexdigest()
  stored_path = os.path.join(workdir, BACKTRACK_JSON)
  if os.path.exists(stored_path):
    stored = artifacts.read_json(stored_path)
    same = (stored.get("final_step") == run.step and stored.get("merge_frac") == merge_frac
            and stored.get("slow_points_digest", digest) == digest
            and stored.get("sp_max_iters") == sp_config.max_iters
            and stored.get("sp_config", _sp_record(sp_config)) == _sp_record(sp_config))
    if same:
      return dict(stored, unchanged=True)
    if not overwrite and stored.get("final_step") == run.step:
      raise artifacts.RunError(
          f"{workdir} holds a back-tracking of step {run.step} with other settings (merge_frac "
          f"{stored.get('merge_frac')}, sp_max_iters {stored.get('sp_max_iters')}) or from "
          "other slow points; --overwrite replaces it")
  entries = [e for e in checkpoints.History.load(workdir) if e["step"] < run.step]
  if not entries:
    raise artifacts.RunError(f"{workdir} has no training snapshots before step {run.step} "
                             f"(the {checkpoints.HISTORY_DIR}/ folder); train with --history_every")
  entries = entries[::-1]
  gen = trials.generator_for(source, "test", cfg)
  classes = np.asarray(final.extras["init_class"], np.int32)

  # The final network's PCA plane, from trajectories after the stimulus.
  traj, _ = pipeline.post_stimulus_trajectories(run.model, gen, cfg.seed)
  traj = traj.reshape(-1, traj.shape[-1])
  mean, comps = plotting.pca_basis(np.concatenate([traj, final.states]), 2)

  steps = [run.step]
  points = [final.states]
  speed, readout, q = [final.speed], [final.extras["readout"]], [final.q]
  near, ratio = nearest_centres(run.model, final.states, cloud_centres(run.model, gen, cfg.seed))
  nearest, near_ratio = [near], [ratio]
  model = network.build(cfg, source.frame_shape)
  finder = finder_lib.SlowPointFinder(model, sp_config)  # weights change, the graph not
  started = time.monotonic()
  for k, e in enumerate(entries, 1):
    checkpoints.read_snapshot(model, os.path.join(workdir, checkpoints.HISTORY_DIR, e["path"]))
    x_bar = slow_points_lib.mean_input_features(model, gen, seed=cfg.seed)
    found, _, _ = finder.minimize(points[-1], x_bar, progress=False)
    steps.append(int(e["step"]))
    points.append(found)
    speed.append(linearize.speeds(model, found, x_bar))
    readout.append(slow_points_lib.readout_classes(model, found, x_bar))
    q.append(0.5 * np.square(speed[-1]))
    near, ratio = nearest_centres(model, found, cloud_centres(model, gen, cfg.seed))
    nearest.append(near)
    near_ratio.append(ratio)
    elapsed = time.monotonic() - started
    logging.info("back-tracking: snapshot %d of %d (step %d) done; %s so far, about %s left",
                 k, len(entries), int(e["step"]), artifacts.duration(elapsed),
                 artifacts.duration(elapsed / k * (len(entries) - k)))
  points = np.stack(points)
  coords = (points - mean) @ comps.T
  finals = final.states
  pair = np.linalg.norm(finals[:, None] - finals[None], axis=-1)
  scale = float(np.median(pair[np.triu_indices(len(finals), 1)])) if len(finals) > 1 else 1.0
  tol = merge_frac * scale
  merges = find_merges(steps, points, classes, tol)
  births = find_births(steps, np.stack(readout), classes, introduction_steps(cfg))
  births_by_centre = find_births(steps, centre_labels(np.stack(nearest), np.stack(near_ratio)),
                                 classes, introduction_steps(cfg))
  stage_steps = {int(e["step"]) for e in entries if e.get("stage_change")}
  out = dict(
      steps=steps, stage_change=[s in stage_steps for s in steps], classes=classes.tolist(),
      speed=np.stack(speed).tolist(), readout=np.stack(readout).tolist(),
      pca=coords.tolist(), merge_tol=tol, merge_frac=merge_frac,
      merges=[dict(step=s, classes=[a, b], distance=d) for s, a, b, d in merges],
      births=births, nearest_centre=np.stack(nearest).tolist(),
      centre_ratio=np.round(np.stack(near_ratio), 4).tolist(), centre_margin=CENTRE_MARGIN,
      births_by_centre=births_by_centre,
      final_step=run.step, sp_max_iters=sp_config.max_iters, sp_config=_sp_record(sp_config),
      slow_points_digest=digest)
  artifacts.write_json(os.path.join(workdir, BACKTRACK_JSON), out)
  artifacts.save_npz(os.path.join(workdir, BACKTRACK_NPZ), steps=np.asarray(steps),
                     points=points.astype(np.float32), classes=classes)
  fig = plotting.backtrack_paths(steps, coords, np.stack(speed), classes,
                                 [(s, a, b) for s, a, b, _ in merges],
                                 title=f"{cfg.protocol} {cfg.arch} (seed {cfg.seed})")
  plotting.save_png(fig, os.path.join(workdir, BACKTRACK_PNG))
  return out
