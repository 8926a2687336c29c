"""Slow points of the hidden dynamics h <- F(h, x̄): search, Jacobians, class centres.

A slow point is a local minimum of q(s) = ½ ||F(s, x̄) - s||² under the mean noise input x̄
(trigger off), measured in the cell's speed coordinates (GRU: h; LSTM: (h, tanh c), as the
paper). SlowPointFinder minimises q for many states at once with Adam inside a compiled loop;
Python only looks at the result every `chunk` iterations.
"""

import dataclasses
import math
from typing import Sequence
import weakref
import zipfile

from absl import logging

import numpy as np
import tensorflow as tf

from haviv_tf import artifacts
from haviv_tf import config as config_lib
from haviv_tf import losses
from haviv_tf import models
from haviv_tf import trials

_FORMAT_VERSION = 1
_SAMPLE_STREAM = 104_729  # separates slow-point trial seeds from training/evaluation streams


# -- configuration and results ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SlowPointConfig:
  """How SlowPointFinder searches.

  Termination: every point is updated by Adam until its own q < q_tol (then it is frozen); the
  search stops when no point is left unfrozen (max q < q_tol) or after max_iters iterations,
  whichever comes first. Points that never reach q_tol are kept (they are slow, not fixed,
  points or still converging); their q says how slow.
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

  def __post_init__(self):
    for name in ("learning_rate", "q_tol"):
      value = getattr(self, name)
      if not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise config_lib.InputError(f"`{name}` must be a positive finite number, got {value!r}")
    if not isinstance(self.decay, (int, float)) or not 0 < self.decay <= 1:
      raise config_lib.InputError(f"`decay` must be in (0, 1], got {self.decay!r}")
    if not isinstance(self.dedup_tol, (int, float)) or not 0 <= self.dedup_tol < math.inf:
      raise config_lib.InputError(f"`dedup_tol` must be a finite number >= 0, got {self.dedup_tol!r}")
    for name in ("max_iters", "chunk", "num_eigenvalues", "batch_size"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise config_lib.InputError(f"`{name}` must be a positive integer, got {value!r}")


_FIELDS = ("states", "speed", "q", "readout", "init_class", "eigenvalues", "max_abs_eig",
           "num_unstable", "iters")


@dataclasses.dataclass(frozen=True, eq=False)
class SlowPoints:
  """Slow points; axis 0 of every array indexes the points.

  Attributes:
    states: [P, S] float32 states (LSTM: [h, c]).
    speed: [P] float32 ||F(s, x̄) - s|| in speed coordinates.
    q: [P] float32 ½ speed².
    readout: [P] int32 class 0..9 read out by one trigger step from the point (argmax of the
      10 class logits after F(s, x̄ with trigger 1)).
    init_class: [P] int32 class of the trial the search started from (-1 if unknown).
    eigenvalues: [P, K] complex128 leading eigenvalues of dF/ds by magnitude (NaN padded when
      concatenated with a larger K).
    max_abs_eig: [P] float64 largest |eigenvalue|.
    num_unstable: [P] int32 eigenvalues with |λ| > 1 (whole spectrum).
    iters: [P] int32 Adam updates applied to the point (the search froze it once q < q_tol).
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

  def __post_init__(self):
    dtypes = dict(states=np.float32, speed=np.float32, q=np.float32, readout=np.int32,
                  init_class=np.int32, eigenvalues=np.complex128, max_abs_eig=np.float64,
                  num_unstable=np.int32, iters=np.int32)
    ranks = dict(states=2, eigenvalues=2)
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

  def save(self, path: str) -> None:
    """Writes an npz (atomic, no pickle)."""
    artifacts.save_npz(path, format_version=np.int32(_FORMAT_VERSION),
                       **{k: getattr(self, k) for k in _FIELDS})

  @classmethod
  def load(cls, path: str) -> "SlowPoints":
    """Raises artifacts.RunError (one line) if `path` is not a readable SlowPoints file."""
    try:
      arrays = artifacts.load_npz(path)
      missing = [k for k in _FIELDS if k not in arrays]
      if missing:
        raise ValueError(f"missing fields {missing}")
      return cls(**{k: arrays[k] for k in _FIELDS})
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
      raise artifacts.RunError(f"{path} is not a readable SlowPoints file ({e})") from None


# -- dynamics helpers ---------------------------------------------------------------------------


def _features_for(features, n):
  """[F] or [n, F] -> [n, F] float32 tensor."""
  features = tf.convert_to_tensor(features, tf.float32)
  if features.shape.rank == 1:
    features = features[None, :]
  if features.shape.rank != 2:
    raise ValueError(f"`features` must be [F] or [N, F], got shape {features.shape}")
  return tf.broadcast_to(features, [n, features.shape[-1]])


def _check_features(model, features):
  if features.shape[-1] != model.feature_size:
    raise ValueError(f"`features` must have {model.feature_size} entries (the model's "
                     f"feature_size), got {features.shape[-1]}")


def _as_states(model, states):
  states = tf.convert_to_tensor(states, tf.float32)
  if states.shape.rank != 2 or states.shape[-1] != model.state_size:
    raise ValueError(f"`states` must be [N, {model.state_size}] (state_size), got {states.shape}")
  return states


def speeds(model: models.DelayedClassifier, states, features) -> np.ndarray:
  """||F(s, x) - s|| in speed coordinates.

  Args:
    model: the network.
    states: [N, state_size].
    features: encoded input [feature_size] or [N, feature_size].

  Returns:
    [N] float32.
  """
  states = _as_states(model, states)
  features = _features_for(features, tf.shape(states)[0])
  _check_features(model, features)
  new = model.transition(states, features)
  return tf.sqrt(losses.speed_squared(model.cell, states, new)).numpy()


def trigger_features(features):
  """The same features with the trigger (last entry) on: [..., F] -> [..., F]."""
  features = tf.convert_to_tensor(features, tf.float32)
  return tf.concat([features[..., :-1], tf.ones_like(features[..., -1:])], axis=-1)


def readout_classes(model: models.DelayedClassifier, states, features) -> np.ndarray:
  """Class 0..9 read out by one trigger step F(s, x with trigger 1) from each state.

  Args:
    model: the network.
    states: [N, state_size].
    features: encoded input with the trigger off, [F] or [N, F]; the trigger is switched on here.

  Returns:
    [N] int32 argmax over the 10 class logits (null excluded).
  """
  states = _as_states(model, states)
  features = trigger_features(_features_for(features, tf.shape(states)[0]))
  _check_features(model, features)
  logits = model.logits(model.transition(states, features))
  return tf.argmax(logits[:, 1:], axis=-1, output_type=tf.int32).numpy()


def jacobians(model: models.DelayedClassifier, states, features,
              batch_size: int = 256) -> np.ndarray:
  """dF/ds at each state (state coordinates, LSTM [h, c]).

  Args:
    model: the network.
    states: [N, state_size].
    features: encoded input [F] or [N, F].
    batch_size: states per batch_jacobian call.

  Returns:
    [N, S, S] float32; entry [n, i, j] = dF_i/ds_j at states[n].
  """
  states = _as_states(model, states)
  n = int(states.shape[0])
  features = _features_for(features, n)
  _check_features(model, features)
  spec = [tf.TensorSpec([None, model.state_size], tf.float32),
          tf.TensorSpec([None, model.feature_size], tf.float32)]

  @tf.function(input_signature=spec)  # one trace; 1.5-3x faster than eager batch_jacobian
  def batch(s, f):
    with tf.GradientTape() as tape:
      tape.watch(s)
      new = model.transition(s, f)
    return tape.batch_jacobian(new, s)

  out = [batch(states[lo:lo + batch_size], features[lo:lo + batch_size]).numpy()
         for lo in range(0, n, batch_size)]
  if not out:
    return np.zeros([0, model.state_size, model.state_size], np.float32)
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

  Adam (β1 0.9, β2 0.999, ε 1e-8, per-point bias correction) runs `chunk` iterations per call
  of one compiled tf.while_loop; a point whose q drops below q_tol is frozen. See
  SlowPointConfig for the stopping rule.

  Points on slow manifolds without a nearby fixed point keep drifting along them and stop at
  max_iters with q > q_tol. For an LSTM, q is flat in c where tanh(c) saturates, so a point can
  drift to large |c| and stall there (slow by the paper's definition, far from the trajectories).
  """

  def __init__(self, model: models.DelayedClassifier, config: SlowPointConfig = SlowPointConfig()):
    self.model, self.config = model, config
    self._chunk = tf.function(self._chunk_py, jit_compile=config.jit_compile,
                              reduce_retracing=True)

  def _q(self, s, xp):
    return 0.5 * losses.speed_squared(self.model.cell, s, self.model.cell.step(xp, s))

  def _chunk_py(self, s, m, v, iters, t, xp, num_steps, hyper):
    """Up to `num_steps` Adam iterations (fewer once every point is frozen).

    Args:
      s, m, v: [N, S] points and Adam moments.
      iters: [N] updates applied so far. t: iterations so far. xp: [N, G] projected x̄.
      num_steps: iterations to run. hyper: [3] (learning_rate, decay, q_tol).

    Returns:
      (s, m, v, iters, t) after the chunk, and q [N] at the new points.
    """
    b1, b2, eps = 0.9, 0.999, 1e-8
    lr0, decay, q_tol = tf.unstack(hyper)
    stop = t + num_steps

    def body(s, m, v, iters, t, active):
      with tf.GradientTape() as tape:
        tape.watch(s)
        q = self._q(s, xp)
      g = tape.gradient(q, s)
      active = tf.logical_not(q < q_tol)
      lr = lr0 * tf.pow(decay, tf.cast(t, tf.float32))
      live = tf.cast(active, tf.float32)[:, None]
      m = m + live * (1.0 - b1) * (g - m)
      v = v + live * (1.0 - b2) * (tf.square(g) - v)
      k = tf.cast(iters + 1, tf.float32)[:, None]
      m_hat = m / (1.0 - tf.pow(b1, k))
      v_hat = v / (1.0 - tf.pow(b2, k))
      s = s - live * lr * m_hat / (tf.sqrt(v_hat) + eps)
      iters = iters + tf.cast(active, tf.int32)
      return s, m, v, iters, t + 1, active

    active = tf.ones(tf.shape(iters), tf.bool)
    out = tf.while_loop(lambda *a: tf.logical_and(a[4] < stop, tf.reduce_any(a[5])), body,
                        (s, m, v, iters, t, active))
    return tuple(out[:5]) + (self._q(out[0], xp),)

  def minimize(self, init_states, features):
    """Runs the search.

    Args:
      init_states: [N, state_size] starting states.
      features: encoded input x̄, [F] or [N, F].

    Returns:
      states [N, S] float32, q [N] float32, iters [N] int32 (updates applied per point).
    """
    cfg = self.config
    s = _as_states(self.model, init_states)
    n = int(s.shape[0])
    feats = _features_for(features, n)
    _check_features(self.model, feats)
    xp = self.model.cell.project(feats)
    m = v = tf.zeros_like(s)
    q = self._q(s, xp)
    iters = tf.zeros([n], tf.int32)
    t = tf.constant(0, tf.int32)
    hyper = tf.constant([cfg.learning_rate, cfg.decay, cfg.q_tol], tf.float32)
    while int(t) < cfg.max_iters and n and not float(tf.reduce_max(q)) < cfg.q_tol:
      steps = tf.constant(min(cfg.chunk, cfg.max_iters - int(t)), tf.int32)
      s, m, v, iters, t, q = self._chunk(s, m, v, iters, t, xp, steps, hyper)
      logging.debug("slow points: iteration %d, max q %.3g, %d of %d converged", int(t),
                    float(tf.reduce_max(q)), int(tf.reduce_sum(tf.cast(q < cfg.q_tol, tf.int32))),
                    n)
    q = q.numpy()
    logging.info("slow points: %d iterations, %d of %d points with q < %g, max q %.3g",
                 int(t), int(np.sum(q < cfg.q_tol)), n, cfg.q_tol,
                 float(q.max()) if n else 0.0)
    return s.numpy(), q, iters.numpy()

  def describe(self, states, features, init_class=None, iters=None) -> SlowPoints:
    """SlowPoints for given states: speed, q, readout, Jacobian spectrum."""
    states = np.asarray(states, np.float32)
    n = len(states)
    init_class = np.full([n], -1, np.int32) if init_class is None else np.asarray(init_class)
    if init_class.shape != (n,):
      raise ValueError(f"`init_class` must be [{n}], got shape {init_class.shape}")
    iters = np.zeros([n], np.int32) if iters is None else iters
    speed = speeds(self.model, states, features) if n else np.zeros([0], np.float32)
    readout = readout_classes(self.model, states, features) if n else np.zeros([0], np.int32)
    eig, max_abs, unstable = spectra(
        jacobians(self.model, states, features, self.config.batch_size),
        self.config.num_eigenvalues)
    return SlowPoints(states=states, speed=speed, q=0.5 * np.square(speed), readout=readout,
                      init_class=init_class, eigenvalues=eig, max_abs_eig=max_abs,
                      num_unstable=unstable, iters=iters)

  def find(self, init_states, features, init_class=None):
    """Slow points reached from `init_states`.

    Args:
      init_states: [N, state_size] starting states (e.g. from `sample_states`).
      features: encoded mean input x̄ (see `mean_input_features`), [F] or [N, F].
      init_class: optional [N] int class of each starting state (-1 unknown).

    Returns:
      (unique, all): `all` has the N points the search ended at, in input order;
      `unique` is `all.unique(config.dedup_tol)`.
    """
    states, _, iters = self.minimize(init_states, features)
    everything = self.describe(states, features, init_class, iters)
    return everything.unique(self.config.dedup_tol), everything


# -- inputs and starting states -----------------------------------------------------------------


def _check_generator(model, generator):
  if generator.frame_size != model.frame_size:
    raise ValueError(f"generator frame_size {generator.frame_size} does not match the model's "
                     f"frame_size {model.frame_size}")


def mean_input_features(model: models.DelayedClassifier, generator: trials.TrialGenerator,
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


def class_centres(model: models.DelayedClassifier, generator: trials.TrialGenerator,
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
  final = states[:, -1]
  ok = preds == classes
  centres = np.full([config_lib.NUM_CLASSES, model.state_size], np.nan, np.float32)
  counts = np.zeros([config_lib.NUM_CLASSES], np.int64)
  for c in range(config_lib.NUM_CLASSES):
    sel = ok & (classes == c)
    counts[c] = int(sel.sum())
    if counts[c]:
      centres[c] = final[sel].mean(axis=0)
  return centres, counts


def sample_states(model: models.DelayedClassifier, generator: trials.TrialGenerator,
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
