"""Slow points of the hidden dynamics h <- F(h, x̄): search, Jacobians, class centres.

A slow point is a local minimum of q(s) = ½ ||F(s, x̄) - s||² under the mean noise input x̄
(trigger off), measured in the cell's speed coordinates (GRU: h; LSTM: (h, tanh c), as the
paper). SlowPointFinder minimises q for many states at once with projected Adam inside a
compiled loop (the states stay in the box the network can reach: GRU h and LSTM h in [-1, 1]);
Python only looks at the result every `chunk` iterations. The search runs on a
dynamics.Dynamics: this project's DelayedClassifier, or any Keras 3 recurrent cell, RNN layer or
SavedModel step signature (`find_slow_points`, the library entry point).

Two recipes (RECIPES) make the class slow points: "default" (this package's: centres of test
trials, 40 extra sampled starts, a stopping rule) and "paper" (the authors' BlackBoxMNIST.py /
BlackBoxCIFAR.py, reproduced step by step in `paper_class_centres` and `recipe_config`).
"""

import dataclasses
import math
import time
from typing import Sequence
import weakref
import zipfile

from absl import logging

import numpy as np
import tensorflow as tf

from haviv_tf.base import artifacts
from haviv_tf.base import config as config_lib
from haviv_tf import dynamics as dynamics_lib
from haviv_tf.models import network
from haviv_tf.task import trials

# 2: projected search, stop reasons and per-point diagnostics (in_box, distances). Files of an
# older format cannot be read: their points may lie outside the reachable set.
_FORMAT_VERSION = 2
FORMAT_VERSION = _FORMAT_VERSION  # results.json records it as slow_points_format
_SAMPLE_STREAM = 104_729  # separates slow-point trial seeds from training/evaluation streams
RECIPES = config_lib.SP_RECIPES
PROGRESS_SECONDS = 30  # at most one progress line per this many seconds of search
STOP_REASONS = ("q_tol", "stalled", "max_iters")  # SlowPoints.stop_reason indexes this
LSTM_C = ("reached", "free")
# The authors' search (BlackBoxMNIST.py L63-67, L288-295; BlackBoxCIFAR.py L98-100, L381-388).
PAPER_SEARCH_STEPS = 100_000
PAPER_DROP_FRACTION = 0.4    # lr / 10 at j == 40000 of 100000 (BBM L289-290)
PAPER_LEARNING_RATE = 1e-3   # BBM L63
PAPER_TRIALS = {"mnist": 100, "mnist_sample": 100, "cifar10": 1000}  # BBM L53, BBC L88
PAPER_CENTRE_FRAMES = 15     # image + 14 noise frames (BBM L50-51, L217-219)
TF1_VALIDATION = 5_000       # TF1's read_data_sets holds out the first 5,000 training images


class OldFormatError(config_lib.InputError):
  """A slow-point file written by an older haviv_tf; the message names the fix."""


# -- configuration and results ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SlowPointConfig:
  """How SlowPointFinder searches.

  Every Adam step is followed by a projection onto the search box (`constrain`): GRU h and LSTM
  h in [-1, 1]^n, the only states a network started at h0 = 0 can be in; an LSTM's c is free or
  kept in bounds the caller passes (see `lstm_c`).

  Termination (early_stop True): a point stops, and is frozen, at the first of
    q_tol      its q < q_tol (a fixed point, to tolerance);
    stalled    its best speed so far improved by less than rel_tol (relative) over the last
               `window` of its updates (a slow point that is not a fixed point);
    max_iters  the search reached max_iters iterations.
  The search ends when every point has stopped. With early_stop False every point runs
  max_iters iterations (the authors' recipe). SlowPoints.stop_reason records which rule ended
  each point.
  """
  learning_rate: float = 1e-2   # Adam step size at iteration 0
  decay: float = 0.9998         # learning rate at iteration t is learning_rate * decay**t
  q_tol: float = 1e-10          # a point is converged (and frozen) once q < q_tol
  max_iters: int = 20_000       # Adam iterations at most
  chunk: int = 200              # iterations per compiled call; stopping is checked between
  dedup_tol: float = 1e-3       # points closer than this (Euclidean, state coordinates) are one
  num_eigenvalues: int = 10     # leading Jacobian eigenvalues (by magnitude) kept per point
  jit_compile: bool = True      # XLA-compile the search loop
  batch_size: int = 256         # points per Jacobian batch
  constrain: bool = True        # project h onto [-1, 1]^n after every step (and c, see lstm_c)
  lstm_c: str = "reached"       # LSTM c: "reached" (kept within the bounds the caller passes,
                                # e.g. the range trajectories reach) or "free" (the authors')
  window: int = 500             # stalled: no relative improvement >= rel_tol over this many ...
  rel_tol: float = 1e-3         # ... updates of the point's best speed
  early_stop: bool = True       # False: no q_tol / stall stop, every point runs max_iters
  drop_step: int = 0            # > 0: learning rate x drop_factor from this iteration on
  drop_factor: float = 0.1
  objective_scale: float = 0.5  # minimise scale * ||F(s) - s||^2 (0.5: q; the authors: 1)
  tf1_adam: bool = False        # TF1's Adam update (epsilon added to sqrt(v) before bias
                                # correction, lr_t = lr sqrt(1 - b2^t) / (1 - b1^t))

  def __post_init__(self):
    for name in ("learning_rate", "q_tol", "rel_tol", "objective_scale", "drop_factor"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
          0 < value < math.inf):
        raise config_lib.InputError(f"`{name}` must be a positive finite number, got {value!r}")
    if not isinstance(self.decay, (int, float)) or not 0 < self.decay <= 1:
      raise config_lib.InputError(f"`decay` must be in (0, 1], got {self.decay!r}")
    if not isinstance(self.dedup_tol, (int, float)) or not 0 <= self.dedup_tol < math.inf:
      raise config_lib.InputError(f"`dedup_tol` must be a finite number >= 0, got {self.dedup_tol!r}")
    for name in ("max_iters", "chunk", "num_eigenvalues", "batch_size", "window"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise config_lib.InputError(f"`{name}` must be a positive integer, got {value!r}")
    if isinstance(self.drop_step, bool) or not isinstance(self.drop_step, int) or (
        self.drop_step < 0):
      raise config_lib.InputError(f"`drop_step` must be a non-negative integer, got {self.drop_step!r}")
    if self.lstm_c not in LSTM_C:
      raise config_lib.InputError(f"unknown lstm_c {self.lstm_c!r}; valid: {', '.join(LSTM_C)}")


def recipe_config(recipe: str, cfg=None, **overrides) -> SlowPointConfig:
  """The SlowPointConfig of a recipe (then `overrides`, e.g. max_iters from a flag).

  "paper" is the authors' search (BlackBoxMNIST.py L63-67, L258-295; BlackBoxCIFAR.py L98-100,
  L350-388): Adam (TF1) at lr 1e-3 on sum ||F(h) - h||^2 over the points, lr / 10 at step
  40,000 of 100,000, h clipped to [-1, 1] after every step, c not clipped, no tolerance or
  early stop. For a run `cfg` trained with fewer steps than its data set's paper preset (the
  quick preset), both step counts shrink in the proportion its training did. A run `cfg`
  with jit_compile False gets an uncompiled search (either recipe), unless `overrides` say
  otherwise.
  """
  if recipe not in RECIPES:
    raise config_lib.InputError(f"unknown slow-point recipe {recipe!r}; valid: {', '.join(RECIPES)}")
  if cfg is not None and not cfg.jit_compile:
    overrides = dict(overrides)
    overrides.setdefault("jit_compile", False)  # a run without XLA searches without it too
  if recipe == "default":
    return SlowPointConfig(**overrides)
  steps = PAPER_SEARCH_STEPS
  if cfg is not None:
    paper_steps = config_lib.preset("paper", cfg.dataset).train_steps
    if cfg.train_steps < paper_steps:
      steps = max(10, round(PAPER_SEARCH_STEPS * cfg.train_steps / paper_steps))
  fields = dict(learning_rate=PAPER_LEARNING_RATE, decay=1.0, max_iters=steps,
                drop_step=max(1, round(PAPER_DROP_FRACTION * steps)), drop_factor=0.1,
                early_stop=False, constrain=True, lstm_c="free", objective_scale=1.0,
                tf1_adam=True)
  fields.update(overrides)
  if "max_iters" in overrides and "drop_step" not in overrides:
    fields["drop_step"] = max(1, round(PAPER_DROP_FRACTION * fields["max_iters"]))
  return SlowPointConfig(**fields)


_FIELDS = ("states", "speed", "q", "readout", "init_class", "eigenvalues", "max_abs_eig",
           "num_unstable", "iters", "stop_reason", "in_box", "dist_centre", "dist_traj")
NUM_DIST_TRAJ = 3  # dist_traj columns: at the centre-of-mass time, after long noise (2 times)


@dataclasses.dataclass(frozen=True, eq=False)
class SlowPoints:
  """Slow points; axis 0 of every array indexes the points.

  Attributes:
    states: [P, S] float32 states (LSTM: [h, c]).
    speed: [P] float32 ||F(s, x̄) - s|| in speed coordinates.
    q: [P] float32 ½ speed².
    readout: [P] int32 class read out by one trigger step from the point (F(s, x̄ with
      trigger 1)): default recipe 0..9 (argmax of the 10 class logits); paper recipe -1..9
      (argmax of all 11 logits minus 1, null possible, BlackBoxMNIST.py L303-312); -1 for
      networks without this readout (Keras cells, SavedModels).
    init_class: [P] int32 class of the trial the search started from (-1 if unknown).
    eigenvalues: [P, K] complex128 leading eigenvalues of dF/ds by magnitude (NaN padded when
      concatenated with a larger K).
    max_abs_eig: [P] float64 largest |eigenvalue|.
    num_unstable: [P] int32 eigenvalues with |λ| > 1 (whole spectrum).
    iters: [P] int32 Adam updates applied to the point.
    stop_reason: [P] int32 index into STOP_REASONS (q_tol, stalled, max_iters).
    in_box: [P] bool every h coordinate in [-1, 1] (1e-6 slack): inside the closure of the
      set a GRU / LSTM started at h0 = 0 can reach (other networks: within the finite bounds
      of their reachable box, see dynamics.Dynamics.bounds).
    dist_centre: [P] float32 distance to the centre of mass of the point's init_class (NaN:
      unknown).
    dist_traj: [P, 3] float32 distance to the nearest state of trials of that class at the
      centre-of-mass time, and after two longer stretches of noise (the times are in the file
      as dist_traj_times; NaN: not computed).
  """
  states: np.ndarray
  speed: np.ndarray
  q: np.ndarray
  readout: np.ndarray
  init_class: np.ndarray
  eigenvalues: np.ndarray
  max_abs_eig: np.ndarray
  num_unstable: np.ndarray
  iters: np.ndarray
  stop_reason: np.ndarray = None
  in_box: np.ndarray = None
  dist_centre: np.ndarray = None
  dist_traj: np.ndarray = None

  def __post_init__(self):
    n = len(np.asarray(self.states))
    defaults = dict(stop_reason=np.full([n], STOP_REASONS.index("max_iters"), np.int32),
                    in_box=np.all(np.abs(np.asarray(self.states)) <= 1 + 1e-6, axis=-1)
                    if n else np.zeros([0], bool),
                    dist_centre=np.full([n], np.nan, np.float32),
                    dist_traj=np.full([n, NUM_DIST_TRAJ], np.nan, np.float32))
    for name, value in defaults.items():
      if getattr(self, name) is None:
        object.__setattr__(self, name, value)
    dtypes = dict(states=np.float32, speed=np.float32, q=np.float32, readout=np.int32,
                  init_class=np.int32, eigenvalues=np.complex128, max_abs_eig=np.float64,
                  num_unstable=np.int32, iters=np.int32, stop_reason=np.int32, in_box=bool,
                  dist_centre=np.float32, dist_traj=np.float32)
    ranks = dict(states=2, eigenvalues=2, dist_traj=2)
    for name in _FIELDS:
      value = np.asarray(getattr(self, name), dtypes[name])
      if value.ndim != ranks.get(name, 1):
        raise ValueError(f"`{name}` must have rank {ranks.get(name, 1)}, got shape {value.shape}")
      object.__setattr__(self, name, value)
    n = len(self.states)
    bad = [f"{k} {getattr(self, k).shape}" for k in _FIELDS if len(getattr(self, k)) != n]
    if bad:
      raise ValueError(f"every field needs {n} points (states has {n}); got {', '.join(bad)}")

  def __len__(self) -> int:
    return len(self.states)

  def __getitem__(self, index) -> "SlowPoints":
    """Points by int, slice, index array or boolean mask (always a SlowPoints)."""
    if isinstance(index, (int, np.integer)):
      index = [int(index)]
    return SlowPoints(**{k: getattr(self, k)[index] for k in _FIELDS})

  def unique(self, tol: float) -> "SlowPoints":
    """Greedy de-duplication: visiting points by increasing q, a point is kept unless a kept one
    lies within `tol` (Euclidean distance of states). Kept points stay in their original order.
    """
    if not tol >= 0:
      raise ValueError(f"`tol` must be >= 0, got {tol!r}")
    order = np.argsort(self.q, kind="stable")
    kept = np.zeros_like(self.states)
    keep_idx = []
    for i in order:
      if keep_idx and np.min(np.linalg.norm(kept[:len(keep_idx)] - self.states[i], axis=1)) <= tol:
        continue
      kept[len(keep_idx)] = self.states[i]
      keep_idx.append(i)
    return self[np.sort(np.asarray(keep_idx, np.int64))]

  @staticmethod
  def concatenate(parts: Sequence["SlowPoints"]) -> "SlowPoints":
    """Stacks points; eigenvalue columns are NaN-padded to the largest K."""
    parts = list(parts)
    if not parts:
      raise ValueError("`parts` must hold at least one SlowPoints")
    k = max(p.eigenvalues.shape[1] for p in parts)
    fields = {}
    for name in _FIELDS:
      arrays = [getattr(p, name) for p in parts]
      if name == "eigenvalues":
        arrays = [np.pad(a, ((0, 0), (0, k - a.shape[1])), constant_values=np.nan)
                  for a in arrays]
      fields[name] = np.concatenate(arrays, axis=0)
    return SlowPoints(**fields)

  def replace(self, **fields) -> "SlowPoints":
    return dataclasses.replace(self, **fields)

  def save(self, path: str, **extra) -> None:
    """Writes an npz (atomic, no pickle); `extra` arrays (e.g. dist_traj_times) ride along."""
    artifacts.save_npz(path, format_version=np.int32(_FORMAT_VERSION),
                       **{k: getattr(self, k) for k in _FIELDS}, **extra)

  @classmethod
  def load(cls, path: str) -> "SlowPoints":
    """Reads a file written by `save`.

    Raises:
      OldFormatError: the file was written by an older format (the message says to re-run
        --mode=slow_points).
      artifacts.RunError: not a readable SlowPoints file (one line).
    """
    try:
      arrays = artifacts.load_npz(path)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
      raise artifacts.RunError(f"{path} is not a readable SlowPoints file ({e})") from None
    version = int(arrays.get("format_version", 0))
    if version < _FORMAT_VERSION:
      raise OldFormatError(
          f"{path} was written by an older slow-point format ({version}, now "
          f"{_FORMAT_VERSION}: its points were searched without the reachable-set constraint); "
          "re-run --mode=slow_points on the run")
    missing = [k for k in _FIELDS if k not in arrays]
    if missing:
      raise artifacts.RunError(f"{path} is not a SlowPoints file: missing fields {missing}")
    return cls(**{k: arrays[k] for k in _FIELDS})


# -- dynamics helpers ---------------------------------------------------------------------------


def _features_for(features, n):
  """[F] or [n, F] -> [n, F] float32 tensor."""
  features = tf.convert_to_tensor(features, tf.float32)
  if features.shape.rank == 1:
    features = features[None, :]
  if features.shape.rank != 2:
    raise ValueError(f"`features` must be [F] or [N, F], got shape {features.shape}")
  return tf.broadcast_to(features, [n, features.shape[-1]])


def _check_features(dyn, features):
  if features.shape[-1] != dyn.input_size:
    raise ValueError(f"`features` must have {dyn.input_size} entries (the input size of "
                     f"{dyn.name}), got {features.shape[-1]}")


def _as_states(dyn, states):
  states = tf.convert_to_tensor(states, tf.float32)
  if states.shape.rank != 2 or states.shape[-1] != dyn.state_size:
    raise ValueError(f"`states` must be [N, {dyn.state_size}] (state_size), got {states.shape}")
  return states


def speeds(model, states, features) -> np.ndarray:
  """||F(s, x) - s|| in speed coordinates.

  Args:
    model: the network: a DelayedClassifier, a Keras cell or RNN layer, a SavedModel or a
      dynamics.Dynamics (see dynamics.as_dynamics).
    states: [N, state_size].
    features: the input x (DelayedClassifier: encoded) [F] or [N, F].

  Returns:
    [N] float32.
  """
  dyn = dynamics_lib.as_dynamics(model)
  states = _as_states(dyn, states)
  features = _features_for(features, tf.shape(states)[0])
  _check_features(dyn, features)
  new = dyn.transition(states, features)
  return tf.sqrt(dyn.speed_squared(states, new)).numpy()


def trigger_features(features):
  """The same features with the trigger (last entry) on: [..., F] -> [..., F]."""
  features = tf.convert_to_tensor(features, tf.float32)
  return tf.concat([features[..., :-1], tf.ones_like(features[..., -1:])], axis=-1)


def readout_classes(model: network.DelayedClassifier, states, features,
                    include_null: bool = False) -> np.ndarray:
  """Class read out by one trigger step F(s, x with trigger 1) from each state.

  Args:
    model: the network.
    states: [N, state_size].
    features: encoded input with the trigger off, [F] or [N, F]; the trigger is switched on here.
    include_null: False: argmax over the 10 class logits (0..9); True: argmax over all 11
      outputs minus 1, so -1 when null wins (the authors' test, BlackBoxMNIST.py L241, L303).

  Returns:
    [N] int32.
  """
  states = _as_states(model.to_dynamics(), states)
  features = trigger_features(_features_for(features, tf.shape(states)[0]))
  _check_features(model.to_dynamics(), features)
  logits = model.logits(model.transition(states, features))
  if include_null:
    return (tf.argmax(logits, axis=-1, output_type=tf.int32) - 1).numpy()
  return tf.argmax(logits[:, 1:], axis=-1, output_type=tf.int32).numpy()


def hidden_box(model: network.DelayedClassifier, c_bounds=None):
  """Bounds (lo, hi), each [state_size] float32, of the search box: h in [-1, 1]; an LSTM's c
  within `c_bounds` = (lo [units], hi [units]) or free (±inf) without it."""
  lo, hi = model.to_dynamics().bounds
  if model.state_size > model.units and c_bounds is not None:
    u = model.units
    lo[u:], hi[u:] = (np.broadcast_to(np.asarray(b, np.float32), [u]) for b in c_bounds)
  return lo, hi


def in_box(model, states, slack: float = 1e-6) -> np.ndarray:
  """[N] bool: every coordinate of each state within the reachable box of `model` (see
  dynamics.as_dynamics; its unbounded coordinates, e.g. an LSTM's c, are not checked), with
  `slack`: for a DelayedClassifier, every h coordinate in [-1 - slack, 1 + slack]."""
  lo, hi = dynamics_lib.as_dynamics(model).bounds
  states = np.asarray(states)
  return np.all((states >= lo - slack) & (states <= hi + slack), axis=-1)


def jacobians(model, states, features, batch_size: int = 256) -> np.ndarray:
  """dF/ds at each state (state coordinates, LSTM [h, c]).

  Args:
    model: the network (see `speeds`).
    states: [N, state_size].
    features: the input x (DelayedClassifier: encoded) [F] or [N, F].
    batch_size: states per batch_jacobian call.

  Returns:
    [N, S, S] float32; entry [n, i, j] = dF_i/ds_j at states[n].
  """
  dyn = dynamics_lib.as_dynamics(model)
  states = _as_states(dyn, states)
  n = int(states.shape[0])
  features = _features_for(features, n)
  _check_features(dyn, features)
  spec = [tf.TensorSpec([None, dyn.state_size], tf.float32),
          tf.TensorSpec([None, dyn.input_size], tf.float32)]

  @tf.function(input_signature=spec)  # one trace; 1.5-3x faster than eager batch_jacobian
  def batch(s, f):
    with tf.GradientTape() as tape:
      tape.watch(s)
      new = dyn.transition(s, f)
    return tape.batch_jacobian(new, s)

  out = [batch(states[lo:lo + batch_size], features[lo:lo + batch_size]).numpy()
         for lo in range(0, n, batch_size)]
  if not out:
    return np.zeros([0, dyn.state_size, dyn.state_size], np.float32)
  return np.concatenate(out, axis=0)


def spectra(jac: np.ndarray, k: int):
  """Leading eigenvalues of Jacobians.

  Args:
    jac: [N, S, S].
    k: eigenvalues kept (at most S).

  Returns:
    eigenvalues [N, min(k, S)] complex128 sorted by decreasing magnitude, max |λ| [N] float64,
    number of |λ| > 1 [N] int32.
  """
  n, s = jac.shape[0], jac.shape[-1]
  k = min(int(k), s)
  if n == 0:
    return np.zeros([0, k], np.complex128), np.zeros([0]), np.zeros([0], np.int32)
  # tf.linalg.eigvals (Eigen) rather than np.linalg.eigvals: in a process where TensorFlow has
  # run, OpenBLAS's threads contend with TF's and numpy's eig was measured 50-90x slower on 2 CPUs
  # (same eigenvalues to 1e-13).
  eig = np.concatenate([tf.linalg.eigvals(tf.constant(jac[lo:lo + 256], tf.float64)).numpy()
                        for lo in range(0, n, 256)])
  order = np.argsort(-np.abs(eig), axis=-1, kind="stable")
  eig = np.take_along_axis(eig, order, axis=-1)
  mags = np.abs(eig)
  return eig[:, :k], mags[:, 0], np.sum(mags > 1.0, axis=-1).astype(np.int32)


# -- the finder ---------------------------------------------------------------------------------


class SlowPointFinder:
  """Minimises q(s) = ½ ||F(s, x̄) - s||² (speed coordinates) from many states at once.

  Projected Adam (β1 0.9, β2 0.999, ε 1e-8, per-point bias correction; or TF1's form) runs
  `chunk` iterations per call of one compiled tf.while_loop: after each step every point is
  clipped into the search box (SlowPointConfig.constrain; GRU/LSTM h in [-1, 1]). The stopping
  rules (q_tol, stalled, max_iters; see SlowPointConfig) are evaluated per point inside the
  loop; a stopped point is frozen.

  Points on slow manifolds without a nearby fixed point keep drifting along them; the stall rule
  ends them once their speed stops improving. For an LSTM, q is flat in c where tanh(c)
  saturates, so a point with free c can drift to large |c| (slow by the paper's definition, far
  from the trajectories); lstm_c="reached" keeps c within bounds passed to `minimize`.
  """

  def __init__(self, model, config: SlowPointConfig = SlowPointConfig()):
    """`model`: a DelayedClassifier, or any recurrent network dynamics.as_dynamics accepts (a
    Keras 3 cell or RNN layer, a SavedModel step signature, a dynamics.Dynamics)."""
    self.dynamics = dynamics_lib.as_dynamics(model)
    self.model = model if isinstance(model, network.DelayedClassifier) else None
    self.config = config
    self._chunk = tf.function(self._chunk_py, jit_compile=config.jit_compile,
                              reduce_retracing=True)

  def _q(self, s, xp):
    return 0.5 * self.dynamics.speed_squared(s, self.dynamics.step(xp, s))

  def _chunk_py(self, carry, xp, lo, hi, num_steps, hyper):
    """Up to `num_steps` projected Adam iterations (fewer once every point has stopped).

    Args:
      carry: (s, m, v [N, S] points and Adam moments; iters [N] updates so far; t iterations so
        far; reason [N] int32, -1 while running, else an index into STOP_REASONS; best [N]
        lowest speed seen; ref [N] best speed at the point's last window boundary; q_last [N]
        q where the last gradient was taken).
      xp: [N, G] projected x̄. lo, hi: [S] box. num_steps: iterations to run.
      hyper: [10] float32 (learning_rate, decay, q_tol, rel_tol, window, early_stop, drop_step,
        drop_factor, objective_scale, tf1_adam).

    Returns:
      the carry after the chunk, and q [N] at the new points.
    """
    b1, b2, eps = 0.9, 0.999, 1e-8
    (lr0, decay, q_tol, rel_tol, window, early_stop, drop_step, drop_factor, scale,
     tf1) = tf.unstack(hyper)
    window = tf.cast(window, tf.int32)
    stop = carry[4] + num_steps

    def body(s, m, v, iters, t, reason, best, ref, q_last):
      with tf.GradientTape() as tape:
        tape.watch(s)
        q = self._q(s, xp)
        objective = tf.reduce_sum(q) * (2.0 * scale)
      g = tape.gradient(objective, s)
      running = reason < 0
      converged = tf.logical_and(running, tf.logical_and(early_stop > 0, q < q_tol))
      reason = tf.where(converged, STOP_REASONS.index("q_tol"), reason)
      active = tf.logical_and(running, tf.logical_not(converged))
      tf_t = tf.cast(t, tf.float32)
      lr = lr0 * tf.pow(decay, tf_t) * tf.where(
          tf.logical_and(drop_step > 0, tf_t >= drop_step), drop_factor, 1.0)
      live = tf.cast(active, tf.float32)[:, None]
      m = m + live * (1.0 - b1) * (g - m)
      v = v + live * (1.0 - b2) * (tf.square(g) - v)
      k = tf.cast(iters + 1, tf.float32)[:, None]
      c1, c2 = 1.0 - tf.pow(b1, k), 1.0 - tf.pow(b2, k)
      # TF1 AdamOptimizer (the authors'): lr sqrt(c2) / c1 * m / (sqrt(v) + eps).
      step = tf.where(tf1 > 0, lr * tf.sqrt(c2) / c1 * m / (tf.sqrt(v) + eps),
                      lr * (m / c1) / (tf.sqrt(v / c2) + eps))
      s = tf.clip_by_value(s - live * step, lo, hi)
      iters = iters + tf.cast(active, tf.int32)
      q_last = tf.where(active, q, q_last)
      # Stall rule on the best speed seen, checked every `window` updates of a point.
      best = tf.where(active, tf.minimum(best, tf.sqrt(2.0 * q)), best)
      check = tf.logical_and(tf.logical_and(active, early_stop > 0),
                             tf.equal(tf.math.floormod(iters, window), 0))
      stalled = tf.logical_and(check, ref - best <= rel_tol * ref)
      reason = tf.where(stalled, STOP_REASONS.index("stalled"), reason)
      ref = tf.where(check, best, ref)
      return s, m, v, iters, t + 1, reason, best, ref, q_last

    out = tf.while_loop(lambda *a: tf.logical_and(a[4] < stop, tf.reduce_any(a[5] < 0)), body,
                        carry)
    return out, self._q(out[0], xp)

  def minimize(self, init_states, features, bounds=None, return_info=False, callback=None,
               progress=True):
    """Runs the search.

    Args:
      init_states: [N, state_size] starting states (projected into the box first).
      features: the constant input x̄ (DelayedClassifier: encoded), [F] or [N, F].
      bounds: optional (lo, hi), each [state_size], replacing the dynamics' reachable box
        (DelayedClassifier: `hidden_box(model)`, h in [-1, 1], LSTM c free); ignored when
        config.constrain is False.
      return_info: also return {"stop_reason": [N] int32, "q_last": [N] q where the last
        gradient was taken}.
      callback: optional fn(iteration, q [N] numpy) called after every chunk; returning True
        ends the search there (points still running get stop reason max_iters).
      progress: log INFO progress lines (iterations, points stopped: after the first chunk,
        then at most every PROGRESS_SECONDS) and the closing summary; False: DEBUG (a search
        that is one step of a longer job with its own progress, as back-tracking).

    Returns:
      states [N, S] float32, q [N] float32, iters [N] int32 (updates applied per point)
      (and the info dict).
    """
    cfg, dyn = self.config, self.dynamics
    s = _as_states(dyn, init_states)
    n = int(s.shape[0])
    feats = _features_for(features, n)
    _check_features(dyn, feats)
    if not cfg.constrain:
      lo, hi = dynamics_lib.check_bounds(None, dyn.state_size)
    else:
      lo, hi = dynamics_lib.check_bounds(dyn.bounds if bounds is None else bounds,
                                         dyn.state_size)
    lo, hi = tf.constant(lo), tf.constant(hi)
    s = tf.clip_by_value(s, lo, hi)
    xp = dyn.project(feats)
    q = self._q(s, xp)
    speed0 = tf.sqrt(2.0 * q)
    carry = (s, tf.zeros_like(s), tf.zeros_like(s), tf.zeros([n], tf.int32),
             tf.constant(0, tf.int32), tf.fill([n], -1), speed0, speed0, q)
    hyper = tf.constant([cfg.learning_rate, cfg.decay, cfg.q_tol, cfg.rel_tol, cfg.window,
                         float(cfg.early_stop), cfg.drop_step, cfg.drop_factor,
                         cfg.objective_scale, float(cfg.tf1_adam)], tf.float32)
    t = 0
    level = logging.INFO if progress else logging.DEBUG
    last_report = None  # progress: after the first chunk, then every PROGRESS_SECONDS
    while t < cfg.max_iters and n and bool(tf.reduce_any(carry[5] < 0)):
      steps = tf.constant(min(cfg.chunk, cfg.max_iters - t), tf.int32)
      carry, q = self._chunk(carry, xp, lo, hi, steps, hyper)
      t = int(carry[4])
      if callback is not None and callback(t, q.numpy()):
        break
      now = time.monotonic()
      if last_report is None or now - last_report >= PROGRESS_SECONDS:
        last_report = now
        logging.log(level, "slow points: iteration %d of at most %d, %d of %d points stopped, "
                    "max q %.3g", t, cfg.max_iters,
                    int(tf.reduce_sum(tf.cast(carry[5] >= 0, tf.int32))), n,
                    float(tf.reduce_max(q)))
    reason = carry[5].numpy()
    reason[reason < 0] = STOP_REASONS.index("max_iters")
    q = q.numpy()
    logging.log(level, "slow points: %d iterations; stop reasons %s; max q %.3g", t,
                 {r: int(np.sum(reason == i)) for i, r in enumerate(STOP_REASONS)},
                 float(q.max()) if n else 0.0)
    out = carry[0].numpy(), q, carry[3].numpy()
    if return_info:
      return out + (dict(stop_reason=reason.astype(np.int32), q_last=carry[8].numpy()),)
    return out

  def describe(self, states, features, init_class=None, iters=None, stop_reason=None,
               include_null=False, speed=None) -> SlowPoints:
    """SlowPoints for given states: speed, q, readout, Jacobian spectrum, in_box.

    `speed` replaces the speed computed at `states` (the paper recipe reports the speed where
    its last gradient was taken); `include_null` reads classes out of all 11 outputs. Only a
    DelayedClassifier has a readout: for other networks `readout` is -1.
    """
    states = np.asarray(states, np.float32)
    n = len(states)
    init_class = np.full([n], -1, np.int32) if init_class is None else np.asarray(init_class)
    if init_class.shape != (n,):
      raise ValueError(f"`init_class` must be [{n}], got shape {init_class.shape}")
    iters = np.zeros([n], np.int32) if iters is None else iters
    if speed is None:
      speed = speeds(self.dynamics, states, features) if n else np.zeros([0], np.float32)
    if self.model is not None and n:
      readout = readout_classes(self.model, states, features, include_null)
    else:
      readout = np.full([n], -1, np.int32)
    eig, max_abs, unstable = spectra(
        jacobians(self.dynamics, states, features, self.config.batch_size),
        self.config.num_eigenvalues)
    return SlowPoints(states=states, speed=speed, q=0.5 * np.square(speed), readout=readout,
                      init_class=init_class, eigenvalues=eig, max_abs_eig=max_abs,
                      num_unstable=unstable, iters=iters, stop_reason=stop_reason,
                      in_box=in_box(self.dynamics, states) if n else np.zeros([0], bool))

  def find(self, init_states, features, init_class=None, bounds=None, include_null=False,
           last_step_speed=False):
    """Slow points reached from `init_states`.

    Args:
      init_states: [N, state_size] starting states (e.g. from `sample_states`).
      features: encoded mean input x̄ (see `mean_input_features`), [F] or [N, F].
      init_class: optional [N] int class of each starting state (-1 unknown).
      bounds: optional search box (see `minimize`).
      include_null: read classes out of all 11 outputs (see `readout_classes`).
      last_step_speed: report the speed where the last gradient was taken (the authors' fetch
        of SpeedEach in the same session run as the last update, BlackBoxMNIST.py L294, L331)
        instead of at the returned state.

    Returns:
      (unique, all): `all` has the N points the search ended at, in input order;
      `unique` is `all.unique(config.dedup_tol)`.
    """
    states, _, iters, info = self.minimize(init_states, features, bounds, return_info=True)
    speed = np.sqrt(2.0 * info["q_last"]).astype(np.float32) if last_step_speed else None
    everything = self.describe(states, features, init_class, iters, info["stop_reason"],
                               include_null, speed)
    return everything.unique(self.config.dedup_tol), everything


def find_slow_points(rnn, init_states, inputs, config: SlowPointConfig = SlowPointConfig(),
                     bounds=None, trajectories=None, **dynamics_options):
  """Slow points of any recurrent network under a constant input: the library entry point.

  Args:
    rnn: a Keras 3 recurrent cell (SimpleRNNCell, GRUCell, LSTMCell or a user's cell following
      Keras's cell protocol), a keras.layers.RNN / GRU / LSTM layer (its cell), a SavedModel
      (directory or loaded) with a step signature (state, inputs) -> state, a
      network.DelayedClassifier or a dynamics.Dynamics.
    init_states: [N, state_size] starting states (flat: an LSTM's are [h, c]); e.g.
      dynamics.sample_states(dynamics.trajectories(rnn, your_inputs), N).
    inputs: the constant input x̄, [input_size] or [N, input_size].
    config: the search settings (SlowPointConfig).
    bounds: (lo, hi), each a number or [state_size], replacing the network's reachable box
      (see dynamics: tanh-bounded h for the built-in cells, an LSTM's c free); e.g.
      dynamics.reached_bounds(rnn, trajectories) to keep an LSTM's c in the range trajectories
      reach. Ignored when config.constrain is False.
    trajectories: optional states [B, T, S] the network visits (dynamics.trajectories); with
      config.lstm_c "reached" (the default) and no `bounds`, the box's unbounded coordinates
      (an LSTM's c) are kept within the range they reach, as this project's LSTM search.
    **dynamics_options: passed to dynamics.as_dynamics (e.g. input_size= for an unbuilt cell,
      c_bounds= of an LSTMCell, signature= of a SavedModel). A user's own cell is unbounded
      unless `bounds` are passed (then the search stays in them; in_box checks only the
      network's own box).

  Returns:
    (unique, all) SlowPoints: `all` the N points the search ended at, in input order (states,
    speed, q, Jacobian spectrum, stop reason, in_box; readout and init_class -1 except for a
    DelayedClassifier); `unique` is `all.unique(config.dedup_tol)`.
  """
  dyn = dynamics_lib.as_dynamics(rnn, **dynamics_options)
  if bounds is None and trajectories is not None and config.lstm_c == "reached":
    bounds = dynamics_lib.reached_bounds(dyn, trajectories)
  return SlowPointFinder(dyn, config).find(init_states, inputs, bounds=bounds)


# -- inputs and starting states -----------------------------------------------------------------


def _check_generator(model, generator):
  if generator.frame_size != model.frame_size:
    raise ValueError(f"generator frame_size {generator.frame_size} does not match the model's "
                     f"frame_size {model.frame_size}")


def mean_input_features(model: network.DelayedClassifier, generator: trials.TrialGenerator,
                        num: int = 1000, seed: int = 0, batch_size: int = 250) -> np.ndarray:
  """x̄: the mean noise frame's features with the trigger off.

  Without an encoder this is [noise mean per pixel, 0]; with the CNN it is the mean of
  model.encode over `num` noise frames (trigger 0).

  Returns:
    [feature_size] float32.
  """
  _check_generator(model, generator)
  if model.encoder is None:
    return np.concatenate([generator.mean, [0.0]]).astype(np.float32)
  if num <= 0:
    raise ValueError(f"`num` must be positive, got {num!r}")
  total = np.zeros([model.feature_size], np.float64)
  seed_t = tf.constant([seed, _SAMPLE_STREAM], tf.int64)
  for k, lo in enumerate(range(0, num, batch_size)):
    b = min(batch_size, num - lo)
    frames = generator.noise(seed_t, k, b)
    feats = model.encode(tf.concat([frames, tf.zeros([b, 1])], axis=-1))
    total += tf.reduce_sum(tf.cast(feats, tf.float64), axis=0).numpy()
  return (total / num).astype(np.float32)


def _noise_trials_fn(model, generator, length):
  """A compiled fn (seed [2], classes [B]) -> (states [B, length, S], trigger readout [B]).

  Frame 0 shows an image of each class, frames 1..length-1 are noise; states[:, t] is the state
  after frame t; the readout is the class (0..9) of one more step with a noise frame and the
  trigger on.
  """

  @tf.function(reduce_retracing=True)
  def run(seed, classes):
    n = tf.shape(classes)[0]
    s_stim, s_noise = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    images, _ = generator.stimuli(s_stim, n, classes=classes)
    off, on = tf.zeros([n, 1]), tf.ones([n, 1])
    state, _ = model.step(model.initial_state(n), tf.concat([images, off], axis=-1))
    out = tf.TensorArray(tf.float32, size=length).write(0, state)
    for t in tf.range(1, length):
      state, _ = model.step(state, tf.concat([generator.noise(s_noise, t, n), off], axis=-1))
      out = out.write(t, state)
    _, logits = model.step(state, tf.concat([generator.noise(s_noise, length, n), on], axis=-1))
    states = tf.transpose(out.stack(), [1, 0, 2])
    return states, tf.argmax(logits[:, 1:], axis=-1, output_type=tf.int32)

  return run


_TRIAL_FNS = weakref.WeakKeyDictionary()  # model -> {(id(generator), length): (generator, fn)}


def _cached_trials_fn(model, generator, length):
  """_noise_trials_fn, traced once per (model, generator, length) and reused."""
  fns = _TRIAL_FNS.setdefault(model, {})
  entry = fns.get((id(generator), length))
  if entry is None or entry[0] is not generator:
    entry = fns[(id(generator), length)] = (generator, _noise_trials_fn(model, generator, length))
  return entry[1]


def _batched_trials(model, generator, classes, length, seed, batch_size):
  run = _cached_trials_fn(model, generator, length)
  states, preds = [], []
  for k, lo in enumerate(range(0, len(classes), batch_size)):
    s, p = run(tf.constant([seed, _SAMPLE_STREAM + 1 + k], tf.int64),
               tf.constant(classes[lo:lo + batch_size], tf.int32))
    states.append(s.numpy())
    preds.append(p.numpy())
  return np.concatenate(states), np.concatenate(preds)


def class_centres(model: network.DelayedClassifier, generator: trials.TrialGenerator,
                  steps_after: int = 15, trials_per_class: int = 100, seed: int = 0,
                  batch_size: int = 250):
  """Centre of mass per class of the state `steps_after` steps after the stimulus.

  Trials show the image at t = 0 and noise at t = 1..steps_after (trigger off); a trial counts
  if one trigger step (noise frame, trigger on) from its state at t = steps_after reads out the
  shown class.

  Returns:
    centres [10, state_size] float32 (NaN rows for classes with no correct trial),
    counts [10] int64 correct trials per class.
  """
  _check_generator(model, generator)
  if steps_after < 0 or trials_per_class <= 0:
    raise ValueError(f"`steps_after` must be >= 0 and `trials_per_class` positive, got "
                     f"{steps_after!r} and {trials_per_class!r}")
  classes = np.arange(config_lib.NUM_CLASSES * trials_per_class) % config_lib.NUM_CLASSES
  states, preds = _batched_trials(model, generator, classes, steps_after + 1, seed, batch_size)
  return _centres_of(states[:, -1], preds == classes, classes)


def _centres_of(states, ok, classes):
  """Per-class mean of the states of correct trials: ([10, S] with NaN rows, counts [10])."""
  centres = np.full([config_lib.NUM_CLASSES, states.shape[-1]], np.nan, np.float32)
  counts = np.zeros([config_lib.NUM_CLASSES], np.int64)
  for c in range(config_lib.NUM_CLASSES):
    sel = ok & (classes == c)
    counts[c] = int(sel.sum())
    if counts[c]:
      centres[c] = states[sel].mean(axis=0)
  return centres, counts


def sample_states(model: network.DelayedClassifier, generator: trials.TrialGenerator,
                  num_states: int, length: int = 20, min_time: int = 1, seed: int = 0,
                  batch_size: int = 250):
  """Starting states for the search, one from each of `num_states` trials.

  Trial i shows class i mod 10 at t = 0, then noise; its state is taken at a time drawn
  uniformly from [min_time, length - 1].

  Returns:
    states [num_states, state_size] float32, classes [num_states] int32, times [num_states] int32.
  """
  _check_generator(model, generator)
  if num_states <= 0 or not 0 <= min_time < length:
    raise ValueError(f"`num_states` must be positive and 0 <= `min_time` < `length`, got "
                     f"{num_states!r}, {min_time!r}, {length!r}")
  classes = (np.arange(num_states) % config_lib.NUM_CLASSES).astype(np.int32)
  states, _ = _batched_trials(model, generator, classes, length, seed, batch_size)
  times = np.random.default_rng(seed).integers(min_time, length, num_states).astype(np.int32)
  return states[np.arange(num_states), times], classes, times


def _paper_trial_images(source, dataset: str, per_class: int, rng):
  """The authors' stimuli for the centre trials: [10 * per_class] train-split image indices,
  class-major (trial i shows class i // per_class).

  MNIST (BlackBoxMNIST.py L8-18, L38-44): TF1's train split (the 60,000 minus the first 5,000
  it holds out), the first MinSize images of each digit (MinSize: the smallest digit's count),
  index np.random.randint(0, MinSize - 1). CIFAR-10 (BlackBoxCIFAR.py L58-78): from
  j = randint(1, number of test images), the first train image at or after j showing the class.
  """
  labels = np.asarray(source.train.labels).astype(np.int64)
  start = TF1_VALIDATION if dataset == "mnist" and len(labels) == 60_000 else 0
  out = []
  if dataset == "cifar10":
    for c in range(config_lib.NUM_CLASSES):
      where = np.flatnonzero(labels == c)
      j = rng.integers(1, len(source.test.labels), per_class)
      pos = np.minimum(np.searchsorted(where, j), len(where) - 1)
      out.append(where[pos])
    return np.concatenate(out)
  per = [np.flatnonzero(labels[start:] == c) + start for c in range(config_lib.NUM_CLASSES)]
  min_size = min(len(p) for p in per)
  for c in range(config_lib.NUM_CLASSES):
    out.append(per[c][rng.integers(0, max(1, min_size - 1), per_class)])
  return np.concatenate(out)


def paper_centre_inputs(source, cfg, seed: int = 0, trials_per_class=None):
  """The raw inputs of the authors' centre trials (see `paper_class_centres`).

  Returns:
    inputs [10 * per_class, 15, frame_size + 1] float32 (frame 0 the image, frames 1..14 the
    shared noise sequence, trigger 0), classes [10 * per_class] int32 (class-major).
  """
  per_class = trials_per_class or PAPER_TRIALS[cfg.dataset]
  rng = np.random.default_rng([seed, _SAMPLE_STREAM + 2])
  idx = _paper_trial_images(source, cfg.dataset, per_class, rng)
  classes = np.repeat(np.arange(config_lib.NUM_CLASSES), per_class).astype(np.int32)
  frame_shape = source.train.images.shape[1:]
  frame_size = int(np.prod(frame_shape))
  channels = frame_shape[-1]
  mean = np.tile(np.asarray(source.mean, np.float64).reshape(channels), frame_size // channels)
  std = np.tile(np.asarray(source.std, np.float64).reshape(channels), frame_size // channels)
  noise_std = std / 3.0 if cfg.dataset in ("mnist", "mnist_sample") else std
  # NoiseImages = np.random.normal(NoiseMu, NoiseSig / 3, (1000, 784))[0:15] (BBM L227): one
  # sequence; FeedImages repeats it for every trial and generate_batch overwrites frame 0.
  noise = mean + noise_std * rng.standard_normal([PAPER_CENTRE_FRAMES, frame_size])
  inputs = np.zeros([len(idx), PAPER_CENTRE_FRAMES, frame_size + 1], np.float32)
  inputs[:, :, :frame_size] = noise[None].astype(np.float32)
  images = np.asarray(source.train.images).reshape(len(source.train.labels), -1)
  inputs[:, 0, :frame_size] = images[idx].astype(np.float32) / 255.0
  return inputs, classes


def paper_class_centres(model: network.DelayedClassifier, source, cfg, x_bar, seed: int = 0,
                        trials_per_class=None, batch_size: int = 250):
  """The authors' class centres of mass (items D13-D16 of the audit of their code).

  - Trials (BlackBoxMNIST.py L226-230, BlackBoxCIFAR.py L319-327): 100 per class (CIFAR-10:
    1,000) from the train split (see _paper_trial_images); frame 0 shows the image, frames
    1..14 are noise, trigger off.
  - Noise (BBM L227-228; BBC L319-320): ONE sequence of 15 frames, drawn once and shared by
    every trial of every class: N(mean, std / 3) for MNIST, N(mean, std) for CIFAR-10.
  - State: after frame 14, i.e. 14 steps after the stimulus (BBM L50-51, L217-219).
  - A trial counts when one step from its state with the constant mean input plus the trigger
    (x̄ with trigger 1) reads out its class by argmax over all 11 outputs, null included
    (BBM L96-97, L151-155, L241-255); the centre is the mean of the trials that count.

  Args:
    model: the network.
    source: the run's datasets.Source (train split in its original order).
    cfg: the run's Config (dataset).
    x_bar: encoded mean input [feature_size] (trigger off), as `mean_input_features`.
    seed: numpy seed of the image draws and the noise sequence.
    trials_per_class: default PAPER_TRIALS[dataset].

  Returns:
    centres [10, state_size] float32 (NaN rows: no trial counted), counts [10] int64,
    states [10 * per_class, state_size] of every trial, trial classes [10 * per_class].
  """
  inputs, classes = paper_centre_inputs(source, cfg, seed, trials_per_class)
  readout_x = trigger_features(tf.constant(x_bar[None], tf.float32))
  states, ok = [], []
  for lo in range(0, len(classes), batch_size):
    final = model.run(tf.constant(inputs[lo:lo + batch_size]))[:, -1]
    n = int(final.shape[0])
    logits = model.logits(model.transition(final, tf.broadcast_to(
        readout_x, [n, readout_x.shape[-1]])))
    pred = tf.argmax(logits, axis=-1, output_type=tf.int32).numpy() - 1
    states.append(final.numpy())
    ok.append(pred == classes[lo:lo + batch_size])
  states, ok = np.concatenate(states), np.concatenate(ok)
  centres, counts = _centres_of(states, ok, classes)
  return centres, counts, states, classes
