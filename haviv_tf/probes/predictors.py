"""Where slow points sit relative to the trajectories, and per-class predictors of memory.

Diagnostics (per slow point): distance to its class's centre of mass and to the nearest state
of trials of that class at the centre-of-mass time and after long stretches of noise.

Predictors (per class; each is compared with per-class accuracy at long delays by
study.rank_predictors):
  speed               ||F(s, x̄) - s|| at the class's slow point (the paper's predictor)
  expected_speed      ||E_x F(s, x) - s|| over training-noise frames x (F is non-linear, so
                      F(s, x̄) differs from E_x F(s, x)); frames are added until the estimate's
                      standard error is below `rel_se` of it
  time_constant       -1 / log |λ1| of dF/ds at the slow point (inf when |λ1| >= 1)
  com_drift           rate at which the centre of mass of the class's trials moves between
                      the centre-of-mass time and `drift_time` (distance / steps)
  spread_rate         rate at which their RMS spread about that centre grows over that span
  accuracy_decay      rate at which their read-out accuracy falls over that span
All speeds are in the cell's speed coordinates (GRU h; LSTM (h, tanh c)).
"""

import dataclasses
import time

from absl import logging
import numpy as np
import tensorflow as tf

from haviv_tf.base import config as config_lib
from haviv_tf.models import network
from haviv_tf.probes import rollouts
from haviv_tf.probes import slow_points as slow_points_lib
from haviv_tf.task import trials

_CLOUD_STREAM = 65_537   # separates these trials' seeds from the other analysis streams
_FLOW_STREAM = 65_539

# name -> +1 if a larger value should mean longer memory, -1 if shorter.
PREDICTORS = config_lib.PREDICTORS
PREDICTOR_TEXT = {
    "speed": "slow-point speed ||F(s, x̄) − s|| (the paper's)",
    "expected_speed": "expected-flow speed ||E_x F(s, x) − s||",
    "time_constant": "slowest time constant −1/log|λ1| at the slow point",
    "com_drift": "drift rate of the class's centre of mass under noise",
    "spread_rate": "growth rate of the class cloud's RMS spread under noise",
    "accuracy_decay": "decay rate of the class's read-out accuracy under noise",
}


@dataclasses.dataclass(frozen=True)
class DiagnosticsConfig:
  """How the trajectory cloud and the predictors are measured."""
  trials_per_class: int = 50          # trials per class in the cloud
  long_times: tuple = (100, 1000)     # steps after the stimulus of the two long-noise snapshots
  drift_time: int = 100               # com_drift etc. span centre-of-mass time .. drift_time
  rel_se: float = 0.05                # expected_speed: standard error below this fraction
  min_frames: int = 1024              # expected_speed: first number of frames ...
  max_frames: int = 65_536            # ... doubled up to this
  batch_size: int = 250
  # The cloud's noise from K images encoded once per batch (rollouts.Rollout), for a CNN model
  # whose frames otherwise cost a CNN pass each (rollouts.noise_bank_for); 0: frame by frame.
  noise_bank: int = 0

  def __post_init__(self):
    if len(self.long_times) != slow_points_lib.NUM_DIST_TRAJ - 1:
      raise ValueError(f"`long_times` must hold {slow_points_lib.NUM_DIST_TRAJ - 1} times")
    for name in ("trials_per_class", "drift_time", "min_frames", "max_frames", "batch_size"):
      v = getattr(self, name)
      if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {v!r}")
    if isinstance(self.noise_bank, bool) or not isinstance(self.noise_bank, int) or (
        self.noise_bank < 0):
      raise ValueError(f"`noise_bank` must be a non-negative integer, got {self.noise_bank!r}")
    if not 0 < self.rel_se < 1:
      raise ValueError(f"`rel_se` must be in (0, 1), got {self.rel_se!r}")


@dataclasses.dataclass(frozen=True)
class Cloud:
  """Trials of every class under training noise, at a few times after the stimulus.

  Attributes:
    times: [T] steps after the stimulus (sorted, distinct).
    states: [T, N, S] state of each trial at each time.
    correct: [T, N] bool: one trigger step (fresh noise frame) from that state reads out the
      trial's class (argmax of the 10 class logits, as the evaluation).
    classes: [N] int32.
    lo, hi: [S] smallest / largest value of each state coordinate over every step of every
      trial up to times[-1].
  """
  times: np.ndarray
  states: np.ndarray
  correct: np.ndarray
  classes: np.ndarray
  lo: np.ndarray
  hi: np.ndarray

  def at(self, time: int) -> int:
    hit = np.flatnonzero(self.times == time)
    if not len(hit):
      raise ValueError(f"the cloud has no snapshot at time {time} (has {self.times.tolist()})")
    return int(hit[0])


def trajectory_cloud(model: network.DelayedClassifier, generator: trials.TrialGenerator, times,
                     per_class: int = 50, seed: int = 0, batch_size: int = 250,
                     noise_bank: int = 0) -> Cloud:
  """Runs `per_class` trials of every class (image at step 0, then fresh training noise,
  trigger off) and keeps their states at `times` (steps after the stimulus; the state after
  frame t). `noise_bank` K > 0: each batch's noise frames come from K images encoded once
  (rollouts.Rollout), as the evaluation of such a model draws them.

  Returns:
    Cloud.
  """
  times = np.unique(np.asarray(times, np.int64))
  if not len(times) or times[0] < 0:
    raise ValueError(f"`times` must be non-negative, got {times.tolist()}")
  run = rollouts.rollout(model, generator, noise_bank)
  classes = (np.arange(config_lib.NUM_CLASSES * per_class) % config_lib.NUM_CLASSES).astype(
      np.int32)
  states = np.zeros([len(times), len(classes), model.state_size], np.float32)
  correct = np.zeros([len(times), len(classes)], bool)
  lo = np.full([model.state_size], np.inf, np.float32)
  hi = -lo
  start = time.monotonic()
  for k, b0 in enumerate(range(0, len(classes), batch_size)):
    cls = classes[b0:b0 + batch_size]
    stream = rollouts.Stream.split(tf.constant([seed, _CLOUD_STREAM + k], tf.int64),
                                   ("stimulus", "noise", "readout"))
    states[:, b0:b0 + len(cls)], read, blo, bhi = run.states_at(stream, cls, times)
    correct[:, b0:b0 + len(cls)] = read == cls
    lo, hi = np.minimum(lo, blo), np.maximum(hi, bhi)
    logging.info("trajectory cloud: %d of %d trials run to step %d (%.0f s)",
                 b0 + len(cls), len(classes), times[-1], time.monotonic() - start)
  return Cloud(times=times, states=states, correct=correct, classes=classes, lo=lo, hi=hi)


def point_distances(points: slow_points_lib.SlowPoints, centres, cloud: Cloud, times):
  """(dist_centre [P], dist_traj [P, len(times)]) of each point to its init_class's centre and
  to the nearest cloud state of that class at each of `times` (NaN for init_class -1 or a
  class without a centre)."""
  n = len(points)
  dist_centre = np.full([n], np.nan, np.float32)
  dist_traj = np.full([n, len(times)], np.nan, np.float32)
  for p in range(n):
    c = int(points.extras["init_class"][p])
    if c < 0:
      continue
    if np.all(np.isfinite(centres[c])):
      dist_centre[p] = np.linalg.norm(points.states[p] - centres[c])
    for j, t in enumerate(times):
      cloud_c = cloud.states[cloud.at(int(t)), cloud.classes == c]
      if len(cloud_c):
        dist_traj[p, j] = np.min(np.linalg.norm(cloud_c - points.states[p], axis=1))
  return dist_centre, dist_traj


def expected_flow_speed(model: network.DelayedClassifier, generator: trials.TrialGenerator,
                        states, seed: int = 0, rel_se: float = 0.05, min_frames: int = 1024,
                        max_frames: int = 65_536, batch_size: int = 4096, noise_frames=None):
  """||E_x F(s, x) - s|| (speed coordinates) over fresh training-noise frames x, trigger off.

  The mean over K frames m_K estimates E_x F; its standard error along d = m_K - s is
  sqrt(gᵀ C g / K), g = d / ||d||, C the covariance of F(s, x) over frames (the delta method).
  K doubles from `min_frames` until that error is below `rel_se` x ||d|| or K = max_frames.
  The same frames serve every state. `noise_frames` [K, frame_size] (raw frames) replaces the
  drawn ones, all K of them used (no doubling).

  Returns:
    speed [P] float64, standard error [P] float64, frames used [P] int64.
  """
  states = np.asarray(states, np.float32)
  cell = model.cell
  frames = _FramePool(model, generator, seed, batch_size, noise_frames)
  if noise_frames is not None:
    min_frames = max_frames = len(noise_frames)

  @tf.function(reduce_retracing=True)
  def moments(s, xp):
    states = tf.broadcast_to(s[None], [tf.shape(xp)[0], tf.shape(s)[0]])
    new = cell.speed_coordinates(cell.step(states, xp))
    new = tf.cast(new, tf.float64)
    return tf.reduce_sum(new, 0), tf.matmul(new, new, transpose_a=True)

  speed = np.zeros([len(states)], np.float64)
  se = np.zeros([len(states)], np.float64)
  used = np.zeros([len(states)], np.int64)
  for i in range(len(states)):
    speed[i], se[i], used[i] = _flow_speed_at(cell, states[i], frames, moments, rel_se,
                                              min_frames, max_frames)
  return speed, se, used


class _FramePool:
  """Projected noise frames, [batch, G] each: the given ones, or drawn on demand (same frames
  for every state)."""

  def __init__(self, model, generator, seed, batch_size, noise_frames):
    self.model, self.generator, self.seed, self.batch_size = model, generator, seed, batch_size
    self.pool = []
    if noise_frames is not None:
      noise_frames = np.asarray(noise_frames, np.float32)
      for lo in range(0, len(noise_frames), batch_size):
        x = tf.constant(noise_frames[lo:lo + batch_size])
        self.pool.append(model.cell.project(
            model.encode(tf.concat([x, tf.zeros([len(x), 1])], axis=-1))))

  def __call__(self, k):
    """The pool, grown to at least `k` frames."""
    pool = self.pool
    while sum(len(b) for b in pool) < k:
      b = min(self.batch_size, k - sum(len(b) for b in pool))
      x = self.generator.noise(tf.constant([self.seed, _FLOW_STREAM], tf.int64), len(pool), b)
      feats = self.model.encode(tf.concat([x, tf.zeros([b, 1])], axis=-1))
      pool.append(self.model.cell.project(feats))
    return pool


def _flow_speed_at(cell, state, frames, moments, rel_se, min_frames, max_frames):
  """(speed, standard error, frames used) of one state (expected_flow_speed)."""
  s = tf.constant(state)
  here = cell.speed_coordinates(tf.constant(state[None]))[0].numpy().astype(np.float64)
  total = np.zeros_like(here)
  outer = np.zeros([len(here), len(here)], np.float64)
  k, done, target = 0, 0, min_frames
  while True:
    batches = frames(target)
    while done < len(batches) and k < target:
      a, b = moments(s, batches[done])
      total += a.numpy()
      outer += b.numpy()
      k += int(batches[done].shape[0])
      done += 1
    mean = total / k
    cov = outer / k - np.outer(mean, mean)
    d = mean - here
    norm = float(np.linalg.norm(d))
    g = d / norm if norm > 0 else np.zeros_like(d)
    err = float(np.sqrt(max(g @ cov @ g, 0.0) * k / max(k - 1, 1) / k))
    if err < rel_se * norm or target >= max_frames:
      return norm, err, k
    target = min(2 * target, max_frames)


def time_constants(max_abs_eig) -> np.ndarray:
  """-1 / log |λ1| (steps) per point; inf where |λ1| >= 1."""
  lam = np.asarray(max_abs_eig, np.float64)
  with np.errstate(divide="ignore"):
    return np.where(lam < 1.0, -1.0 / np.log(np.maximum(lam, 1e-300)), np.inf)


def cloud_rates(cloud: Cloud, t0: int, t1: int):
  """Per class: (com_drift, spread_rate, accuracy_decay) between times t0 < t1 of the cloud.

  com_drift = ||m(t1) - m(t0)|| / (t1 - t0) with m the class's mean state; spread_rate =
  (σ(t1) - σ(t0)) / (t1 - t0) with σ the RMS distance of its trials to m; accuracy_decay =
  (acc(t0) - acc(t1)) / (t1 - t0). Each is [10] float64 (NaN for a class without trials).
  """
  i0, i1 = cloud.at(t0), cloud.at(t1)
  span = float(t1 - t0)
  m0, _ = rollouts.class_centres(cloud.states[i0].astype(np.float64), cloud.classes)
  m1, _ = rollouts.class_centres(cloud.states[i1].astype(np.float64), cloud.classes)
  out = np.full([3, config_lib.NUM_CLASSES], np.nan)
  for c in range(config_lib.NUM_CLASSES):
    sel = cloud.classes == c
    if not sel.any():
      continue
    a, b = cloud.states[i0, sel].astype(np.float64), cloud.states[i1, sel].astype(np.float64)
    sa = np.sqrt(np.mean(np.sum((a - m0[c]) ** 2, axis=1)))
    sb = np.sqrt(np.mean(np.sum((b - m1[c]) ** 2, axis=1)))
    out[0, c] = np.linalg.norm(m1[c] - m0[c]) / span
    out[1, c] = (sb - sa) / span
    out[2, c] = (cloud.correct[i0, sel].mean() - cloud.correct[i1, sel].mean()) / span
  return out[0], out[1], out[2]
