"""The compiled slow-point search: SlowPointConfig, SlowPointFinder, find_slow_points.

A slow point is a local minimum of q(s) = ½ ||F(s, x̄) - s||² under a constant input x̄, measured
in the dynamics' speed coordinates (GRU: h; LSTM: (h, tanh c)). SlowPointFinder minimises q for
many states at once with projected Adam inside a compiled loop (the states stay in the box the
network can reach, e.g. GRU and LSTM h in [-1, 1]); Python only looks at the result every `chunk`
iterations.
"""

import dataclasses
import functools
import math
import time

from absl import logging
import numpy as np
import tensorflow as tf

from haviv_tf.dynamics import core
from haviv_tf.dynamics import linearize
from haviv_tf.dynamics import points as points_lib

PROGRESS_SECONDS = 30  # at most one progress line per this many seconds of search
STOP_REASONS = points_lib.STOP_REASONS
LSTM_C = ("reached", "free")
DEDUP_SPACES = ("state", "speed")
# The authors' search (Haviv et al.'s BlackBoxMNIST.py L63-67, L288-295; BlackBoxCIFAR.py
# L98-100, L381-388).
AUTHORS_MAX_ITERS = 100_000
AUTHORS_DROP_FRACTION = 0.4    # lr / 10 at j == 40000 of 100000 (BBM L289-290)
AUTHORS_LEARNING_RATE = 1e-3   # BBM L63


@dataclasses.dataclass(frozen=True)
class SlowPointConfig:
  """How SlowPointFinder searches.

  Every Adam step is followed by a projection onto the search box (`constrain`): the dynamics'
  reachable box (GRU h and LSTM h in [-1, 1]^n, the only states a network started at h0 = 0 can
  be in) or bounds the caller passes; an LSTM's c is free or kept in bounds (see `lstm_c`).

  Termination (early_stop True): a point stops, and is frozen, at the first of
    q_tol      its q < q_tol (a fixed point, to tolerance);
    stalled    its best speed so far improved by less than rel_tol (relative) over the last
               `window` of its updates (a slow point that is not a fixed point);
    max_iters  the search reached max_iters iterations.
  Whatever early_stop, a point where q or its gradient is NaN or inf stops there ("nonfinite";
  its eigenvalues are NaN, so it is not stable). The search ends when every point has
  stopped. With early_stop False every other point runs max_iters iterations (the authors'
  recipe, `SlowPointConfig.authors()`).
  SlowPoints.stop_reason records which rule ended each point.

  Raises:
    ValueError: a field out of range (the message names it).
  """
  learning_rate: float = 1e-2   # Adam step size at iteration 0
  decay: float = 0.9998         # learning rate at iteration t is learning_rate * decay**t
  q_tol: float = 1e-10          # a point is converged (and frozen) once q < q_tol
  max_iters: int = 20_000       # Adam iterations at most
  chunk: int = 200              # iterations per compiled call; stopping is checked between
  dedup_tol: float = 1e-3       # points closer than this (Euclidean, see dedup_space) are one
  dedup_space: str = "state"    # distances for dedup_tol and follow_back's merges: "state"
                                # (the flat state) or "speed" (the speed coordinates: an
                                # LSTM's (h, tanh c), where points apart only in saturated c,
                                # the same dynamics, are one)
  num_eigenvalues: int = 10     # leading Jacobian eigenvalues (by magnitude) kept per point
  jit_compile: bool = True      # XLA-compile the search loop
  batch_size: int = 256         # points per Jacobian batch
  constrain: bool = True        # project onto the box after every step (and c, see lstm_c)
  lstm_c: str = "reached"       # LSTM c, for find_slow_points: "reached" (bounded by the range
                                # trajectories reach) or "free" (the authors'); the finder
                                # itself clips to the bounds it is given
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
        raise ValueError(f"`{name}` must be a positive finite number, got {value!r}")
    if not isinstance(self.decay, (int, float)) or not 0 < self.decay <= 1:
      raise ValueError(f"`decay` must be in (0, 1], got {self.decay!r}")
    if not isinstance(self.dedup_tol, (int, float)) or not 0 <= self.dedup_tol < math.inf:
      raise ValueError(f"`dedup_tol` must be a finite number >= 0, got {self.dedup_tol!r}")
    for name in ("max_iters", "chunk", "num_eigenvalues", "batch_size", "window"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
    if isinstance(self.drop_step, bool) or not isinstance(self.drop_step, int) or (
        self.drop_step < 0):
      raise ValueError(f"`drop_step` must be a non-negative integer, got {self.drop_step!r}")
    if self.lstm_c not in LSTM_C:
      raise ValueError(f"unknown lstm_c {self.lstm_c!r}; valid: {', '.join(LSTM_C)}")
    if self.dedup_space not in DEDUP_SPACES:
      raise ValueError(f"unknown dedup_space {self.dedup_space!r}; valid: "
                       f"{', '.join(DEDUP_SPACES)}")

  @classmethod
  def authors(cls, **overrides) -> "SlowPointConfig":
    """The authors' search (BlackBoxMNIST.py L63-67, L258-295; BlackBoxCIFAR.py L98-100,
    L350-388): TF1 Adam at lr 1e-3 on sum ||F(h) - h||^2 over the points, lr / 10 at 40% of
    100,000 steps, h clipped to [-1, 1] after every step, c not clipped, no tolerance or early
    stop. `overrides` replace fields; a shorter `max_iters` moves the drop to 40% of it unless
    `drop_step` is given too.
    """
    max_iters = overrides.get("max_iters", AUTHORS_MAX_ITERS)
    fields = dict(learning_rate=AUTHORS_LEARNING_RATE, decay=1.0, max_iters=max_iters,
                  drop_step=max(1, round(AUTHORS_DROP_FRACTION * max_iters)),
                  drop_factor=0.1, early_stop=False, constrain=True, lstm_c="free",
                  objective_scale=1.0, tf1_adam=True)
    fields.update(overrides)
    return cls(**fields)


class SlowPointFinder:
  """Minimises q(s) = ½ ||F(s, x̄) - s||² (speed coordinates) from many states at once.

  Projected Adam (β1 0.9, β2 0.999, ε 1e-8, per-point bias correction; or TF1's form) runs
  `chunk` iterations per call of one compiled tf.while_loop: after each step every point is
  clipped into the search box (SlowPointConfig.constrain). The stopping rules (q_tol, stalled,
  max_iters; see SlowPointConfig) are evaluated per point inside the loop; a stopped point is
  frozen.

  Points on slow manifolds without a nearby fixed point keep drifting along them; the stall rule
  ends them once their speed stops improving. For an LSTM, q is flat in c where tanh(c)
  saturates, so a point with free c can drift to large |c| (slow by the paper's definition, far
  from the trajectories). The finder itself clips to the box it is given (`bounds`, else the
  dynamics' own, where c is unbounded): `lstm_c` is read by `find_slow_points`, which makes
  the bounds (the range the trajectories reach for "reached", none for "free").

  A subclass may override `point_extras` to attach its own per-point arrays to every
  SlowPoints it describes.
  """

  def __init__(self, rnn, config: SlowPointConfig = SlowPointConfig()):
    """`rnn`: anything `core.as_dynamics` accepts (a Keras 3 cell or RNN layer, a SavedModel
    step signature, an object with `to_dynamics()`, a `core.Dynamics`)."""
    if not isinstance(config, SlowPointConfig):
      raise TypeError(f"`config` must be a SlowPointConfig, got {type(config).__name__}")
    self.dynamics = core.as_dynamics(rnn)
    self.config = config
    # One compiled search loop per network and XLA setting (Dynamics.compiled): another finder,
    # or find_slow_points called again, on the same network does not compile it again.
    self._chunk = self.dynamics.compiled(
        ("search_chunk", bool(config.jit_compile)),
        lambda: tf.function(functools.partial(_run_chunk, self.dynamics),
                            jit_compile=config.jit_compile, reduce_retracing=True))

  def minimize(self, init_states, inputs, bounds=None, return_info=False, callback=None,
               progress=True):
    """Runs the search.

    Args:
      init_states: [N, state_size] starting states (projected into the box first).
      inputs: the constant input x̄, [I] or [N, I].
      bounds: optional (lo, hi), each a number or [state_size], replacing the dynamics'
        reachable box; ignored when config.constrain is False.
      return_info: also return {"stop_reason": [N] int32, "q_last": [N] q where the last
        gradient was taken}.
      callback: optional fn(iteration, q [N] numpy) called after every chunk; returning True
        ends the search there (points still running get stop reason max_iters).
      progress: log INFO progress lines (after the first chunk, then at most every
        PROGRESS_SECONDS) and the closing summary; False: DEBUG.

    Returns:
      states [N, S] float32, q [N] float32, iters [N] int32 (updates applied per point)
      (and the info dict).
    """
    cfg = self.config
    lo, hi, xp, carry, q = _search_start(self.dynamics, self.config, init_states, inputs,
                                         bounds)
    n = int(carry[0].shape[0])
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
                points_lib.stop_reason_counts(reason),
                float(q.max()) if n else 0.0)
    out = carry[0].numpy(), q, carry[3].numpy()
    if return_info:
      return out + (dict(stop_reason=reason.astype(np.int32), q_last=carry[8].numpy()),)
    return out

  def point_extras(self, points: points_lib.SlowPoints, inputs) -> dict:
    """A subclass's own per-point arrays for `points` (searched under `inputs` [N, I]); each
    [P, ...]. They are added to (and replace) the extras the caller passed. Default: none."""
    del points, inputs
    return {}

  def describe(self, states, inputs, init_states=None, iters=None, stop_reason=None,
               speed=None, extras=None) -> points_lib.SlowPoints:
    """SlowPoints for given states: speed, q, Jacobian spectrum, stability, in_box.

    Args:
      states: [N, state_size].
      inputs: the constant input, [I] or [N, I].
      init_states: optional [N, state_size] where the search started.
      iters, stop_reason: optional [N] int32 (default 0 and max_iters).
      speed: optional [N] replacing the speed computed at `states` (e.g. where the last
        gradient was taken).
      extras: optional per-point arrays of the caller, each [N, ...].

    Returns:
      SlowPoints of the N states, in order.
    """
    states = np.asarray(states, np.float32)
    n = len(states)
    x = linearize.broadcast_inputs(inputs, n)
    iters = np.zeros([n], np.int32) if iters is None else iters
    if speed is None:
      speed = (linearize.speeds(self.dynamics, states, x) if n
               else np.zeros([0], np.float32))
    eig, max_abs, unstable = linearize.spectra(
        linearize.jacobians(self.dynamics, states, x, self.config.batch_size),
        self.config.num_eigenvalues)
    points = points_lib.SlowPoints(
        states=states, speed=speed, q=0.5 * np.square(speed), eigenvalues=eig,
        max_abs_eig=max_abs, num_unstable=unstable, iters=iters, init_states=init_states,
        inputs=x.numpy(), stop_reason=stop_reason,
        in_box=linearize.in_box(self.dynamics, states) if n else np.zeros([0], bool),
        extras=extras)
    return points.with_extras(**self.point_extras(points, x))

  def find(self, init_states, inputs, bounds=None, last_step_speed=False, extras=None):
    """Slow points reached from `init_states`.

    Args:
      init_states: [N, state_size] starting states (e.g. from `core.sample_states`).
      inputs: the constant input x̄, [I] or [N, I].
      bounds: optional search box (see `minimize`).
      last_step_speed: report the speed where the last gradient was taken (the authors' fetch
        of SpeedEach in the same session run as the last update, BlackBoxMNIST.py L294, L331)
        instead of at the returned state.
      extras: optional per-point arrays of the caller, each [N, ...], kept with the points.

    Returns:
      (unique, all): `all` has the N points the search ended at, in input order;
      `unique` is `all.unique(config.dedup_tol)` (in `config.dedup_space`).
    """
    states, _, iters, info = self.minimize(init_states, inputs, bounds, return_info=True)
    speed = np.sqrt(2.0 * info["q_last"]).astype(np.float32) if last_step_speed else None
    everything = self.describe(states, inputs, np.asarray(init_states, np.float32), iters,
                               info["stop_reason"], speed, extras)
    return self.unique(everything), everything

  def unique(self, points):
    """`points.unique(config.dedup_tol)`, its distances in `config.dedup_space`."""
    coordinates = None
    if self.config.dedup_space == "speed" and len(points):
      coordinates = self.dynamics.speed_coordinates(tf.constant(points.states)).numpy()
    return points.unique(self.config.dedup_tol, coordinates=coordinates)


def _q(dynamics, s, xp):
  """q = ½ ||F(s, x) - s||² per point (speed coordinates)."""
  return 0.5 * dynamics.speed_squared(s, dynamics.step(s, xp))


def _stops(reason, q, g, early_stop, q_tol):
  """The stopping rules taken before a step: (reason, running: still running or converged just
  now, active: to be updated). A point whose q or gradient is not finite stops where it is
  ("nonfinite": it cannot descend, and would otherwise keep the search running to max_iters)."""
  running = reason < 0
  converged = tf.logical_and(running, tf.logical_and(early_stop > 0, q < q_tol))
  reason = tf.where(converged, STOP_REASONS.index("q_tol"), reason)
  finite = tf.logical_and(tf.math.is_finite(q), tf.reduce_all(tf.math.is_finite(g), axis=-1))
  bad = tf.logical_and(tf.logical_and(running, tf.logical_not(converged)),
                       tf.logical_not(finite))
  reason = tf.where(bad, STOP_REASONS.index("nonfinite"), reason)
  running = tf.logical_and(running, tf.logical_not(bad))
  return reason, running, tf.logical_and(running, tf.logical_not(converged))


def _run_chunk(dynamics, carry, xp, lo, hi, num_steps, hyper):
  """SlowPointFinder's compiled chunk: up to `num_steps` projected Adam iterations of
  `dynamics` (fewer once every point has stopped).

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
      q = _q(dynamics, s, xp)
      objective = tf.reduce_sum(q) * (2.0 * scale)
    g = tape.gradient(objective, s)
    reason, running, active = _stops(reason, q, g, early_stop, q_tol)
    tf_t = tf.cast(t, tf.float32)
    lr = lr0 * tf.pow(decay, tf_t) * tf.where(
        tf.logical_and(drop_step > 0, tf_t >= drop_step), drop_factor, 1.0)
    # Stopped points keep their state and moments (tf.where, not a 0/1 mask: 0 x inf is NaN).
    live = active[:, None]
    m = tf.where(live, m + (1.0 - b1) * (g - m), m)
    v = tf.where(live, v + (1.0 - b2) * (tf.square(g) - v), v)
    k = tf.cast(iters + 1, tf.float32)[:, None]
    c1, c2 = 1.0 - tf.pow(b1, k), 1.0 - tf.pow(b2, k)
    # TF1 AdamOptimizer (the authors'): lr sqrt(c2) / c1 * m / (sqrt(v) + eps).
    step = tf.where(tf1 > 0, lr * tf.sqrt(c2) / c1 * m / (tf.sqrt(v) + eps),
                    lr * (m / c1) / (tf.sqrt(v / c2) + eps))
    s = tf.where(live, tf.clip_by_value(s - step, lo, hi), s)
    iters = iters + tf.cast(active, tf.int32)
    q_last = tf.where(running, q, q_last)  # a point stopping by q_tol now: q at its final state
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
  return out, _q(dynamics, out[0], xp)


def _search_start(dyn, cfg, init_states, inputs, bounds):
  """The box (lo, hi), projected input xp and initial carry of a search."""
  s = linearize.check_states(dyn, init_states)
  n = int(s.shape[0])
  x = linearize.broadcast_inputs(inputs, n)
  linearize.check_inputs(dyn, x)
  box = None if not cfg.constrain else (dyn.bounds if bounds is None else bounds)
  lo, hi = (tf.constant(b) for b in core.check_bounds(box, dyn.state_size))
  s = tf.clip_by_value(s, lo, hi)
  xp = dyn.project(x)
  # (no states: no transition; Keras's LSTMCell fails on an empty batch)
  q = _q(dyn, s, xp) if n else tf.zeros([0], tf.float32)
  speed0 = tf.sqrt(2.0 * q)
  carry = (s, tf.zeros_like(s), tf.zeros_like(s), tf.zeros([n], tf.int32),
           tf.constant(0, tf.int32), tf.fill([n], -1), speed0, speed0, q)
  return lo, hi, xp, carry, q


def find_slow_points(rnn, init_states, inputs, config: SlowPointConfig = SlowPointConfig(),
                     bounds=None, trajectories=None, **dynamics_options):
  """Slow points of any recurrent network under a constant input: the library entry point.

  Args:
    rnn: a Keras 3 recurrent cell (SimpleRNNCell, GRUCell, LSTMCell or a user's cell following
      Keras's cell protocol), a keras.layers.RNN / GRU / LSTM layer (its cell), a SavedModel
      (directory or loaded) with a step signature (state, inputs) -> state, an object with
      `to_dynamics()` or a core.Dynamics.
    init_states: [N, state_size] starting states (flat: an LSTM's are [h, c]); e.g.
      core.sample_states(core.trajectories(rnn, your_inputs), N).
    inputs: the constant input x̄, [input_size] or [N, input_size].
    config: the search settings (SlowPointConfig).
    bounds: (lo, hi), each a number or [state_size], replacing the network's reachable box
      (tanh-bounded h for the built-in cells, an LSTM's c free); e.g.
      core.reached_bounds(rnn, trajectories). Ignored when config.constrain is False.
    trajectories: optional states [B, T, S] the network visits (core.trajectories); with
      config.lstm_c "reached" (the default) and no `bounds`, the box's unbounded coordinates
      (an LSTM's c) are kept within the range they reach.
    **dynamics_options: passed to core.as_dynamics (e.g. input_size= for an unbuilt cell,
      c_bounds= of an LSTMCell, signature= of a SavedModel). A user's own cell is unbounded
      unless `bounds` are passed (then the search stays in them; in_box checks only the
      network's own box).

  Returns:
    (unique, all) SlowPoints: `all` the N points the search ended at, in input order (states,
    starting states, inputs, speed, q, Jacobian spectrum, stability, stop reason, in_box);
    `unique` is `all.unique(config.dedup_tol)`, in `config.dedup_space`.
  """
  dyn = core.as_dynamics(rnn, **dynamics_options)
  if bounds is None and trajectories is not None and config.lstm_c == "reached":
    bounds = core.reached_bounds(dyn, trajectories)
  return SlowPointFinder(dyn, config).find(init_states, inputs, bounds=bounds)
