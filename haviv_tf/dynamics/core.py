"""Recurrent dynamics s <- F(s, x) for the slow-point search: any Keras 3 cell, a cell inside a
trained Keras RNN layer, a SavedModel's step signature, or an object that adapts itself (`to_dynamics()`).

A `Dynamics` is what `finder.SlowPointFinder` searches: a step function on a flat state
[N, S], an optional projection of the constant input (computed once per search), the speed
coordinates in which q = ½ ||F(s, x) - s||² is measured, and the reachable box (lo, hi), each
[S], where it is known (±inf where it is not):

  from_cell(cell)        keras.layers.SimpleRNNCell / GRUCell (either reset_after) / LSTMCell, or
                         a user's cell following Keras's protocol (call(inputs, states) ->
                         (output, new_states), state_size); several states are concatenated in
                         state_size order (LSTM: [h, c]).
  from_layer(layer)      the cell of a keras.layers.RNN / GRU / LSTM / SimpleRNN layer.
  from_saved_model(p)    a SavedModel signature (state, inputs) -> state, e.g. this project's
                         export (`step`).
  obj.to_dynamics()      an application's adapter (haviv_tf's DelayedClassifier: features =
                         encoded inputs).
  as_dynamics(obj)       any of the above (or a Dynamics, returned as is).

Reachable set of the built-in Keras cells (from a state inside it, e.g. the zero state): tanh
SimpleRNN h in [-1, 1] (sigmoid: [0, 1]); GRU h in [-1, 1] when the candidate is tanh and the
update gate's activation is in [0, 1] (h' is a convex combination of h and the candidate); LSTM
h = o ⊙ tanh(c) in [-1, 1], c free unless `c_bounds` are passed or `reached_bounds` takes them
from trajectories. Other activations and a user's own cell: unbounded unless `bounds` are given.
LSTM speed coordinates are (h, tanh c), as the paper's.
"""

from absl import logging
import keras
import numpy as np
import tensorflow as tf


_UNIT_RANGE = {"tanh": (-1.0, 1.0), "softsign": (-1.0, 1.0), "sigmoid": (0.0, 1.0),
               "hard_sigmoid": (0.0, 1.0)}
_GATE_ACTIVATIONS = ("sigmoid", "hard_sigmoid")


class Dynamics:
  """A recurrent step s <- F(s, x) on flat float32 states.

  Args:
    step: fn(s [N, S], xp [N, G]) -> new s [N, S] (tensors; traceable and differentiable in s).
      The state comes first, as everywhere in haviv_tf (and in the exported `speed` signature).
    state_size: S.
    input_size: entries of one input x.
    project: fn(x [N, input_size]) -> xp, the part of the step that depends on the input
      alone, computed once per search (default: the identity).
    speed_coordinates: fn(s [N, S]) -> [N, C], the coordinates of the speed (default: s).
    bounds: (lo, hi), each [S] (±inf allowed): the reachable box; None: unbounded.
    name: for messages.
  """

  def __init__(self, step, state_size, input_size, project=None, speed_coordinates=None,
               bounds=None, name="dynamics"):
    self.step = step
    self.state_size, self.input_size = int(state_size), int(input_size)
    self.project = project if project is not None else (lambda x: x)
    self.speed_coordinates = speed_coordinates if speed_coordinates is not None else (
        lambda s: s)
    self.bounds = check_bounds(bounds, self.state_size)
    self.name = name

  def transition(self, states, inputs):
    """F(s, x): [N, S], [N, input_size] -> [N, S]."""
    return self.step(states, self.project(inputs))

  def speed_squared(self, states, new_states):
    """||F(s) - s||² in speed coordinates, [N]."""
    return tf.reduce_sum(tf.square(self.speed_coordinates(new_states)
                                   - self.speed_coordinates(states)), axis=-1)

  def compiled(self, key, build):
    """The function `build()` makes, made once per Dynamics and `key`: the finder's search
    loop, the Jacobian and trajectory functions are traced (and XLA-compiled) on first use and
    reused by every later call on the same network, not traced again in a loop."""
    cache = self.__dict__.setdefault("_compiled", {})
    if key not in cache:
      cache[key] = build()
    return cache[key]

  def __repr__(self):
    return f"Dynamics({self.name}, state_size={self.state_size}, input_size={self.input_size})"


def check_bounds(bounds, state_size):
  """(lo, hi) -> two [state_size] float32 arrays with lo <= hi; None -> (-inf, +inf)."""
  if bounds is None:
    lo = np.full([state_size], -np.inf, np.float32)
    return lo, -lo
  try:
    lo, hi = bounds
    lo, hi = (np.broadcast_to(np.asarray(b, np.float32), [state_size]).copy() for b in (lo, hi))
  except (TypeError, ValueError):
    raise ValueError(f"`bounds` must be (lo, hi), each a number or [{state_size}] "
                     "(state_size)") from None
  if np.any(np.isnan(lo)) or np.any(np.isnan(hi)) or np.any(lo > hi):
    raise ValueError("`bounds` must hold lo <= hi with no NaN")
  return lo, hi


def _h_tanh_c(units):
  """Speed coordinates of a flat LSTM state [h, c]: (h, tanh c)."""
  return lambda s: tf.concat([s[:, :units], tf.tanh(s[:, units:])], axis=-1)


def _activation_name(fn):
  return getattr(fn, "__name__", type(fn).__name__)


def _state_sizes(cell):
  sizes = getattr(cell, "state_size", None)
  if sizes is None:
    raise ValueError(f"{type(cell).__name__} has no `state_size`: not a Keras recurrent cell")
  flat = tf.nest.flatten(sizes)
  if not flat or not all(isinstance(s, (int, np.integer)) and s > 0 for s in flat):
    raise ValueError(f"`state_size` must be a positive int or a list of them (flat states), got "
                     f"{sizes!r}")
  return [int(s) for s in flat]


def _builtin_bounds(cell, sizes, c_bounds):
  """The reachable box of a built-in Keras cell (see the module docstring), else None."""
  s = sum(sizes)
  lo, hi = np.full([s], -np.inf, np.float32), np.full([s], np.inf, np.float32)
  act = _activation_name(getattr(cell, "activation", None))
  gate = _activation_name(getattr(cell, "recurrent_activation", None))
  if isinstance(cell, keras.layers.SimpleRNNCell):
    if act in _UNIT_RANGE:
      lo[:], hi[:] = _UNIT_RANGE[act]
  elif isinstance(cell, keras.layers.GRUCell):
    if act == "tanh" and gate in _GATE_ACTIVATIONS:
      lo[:], hi[:] = -1.0, 1.0
  elif isinstance(cell, keras.layers.LSTMCell):
    u = cell.units
    if act == "tanh" and gate in _GATE_ACTIVATIONS:
      lo[:u], hi[:u] = -1.0, 1.0
    if c_bounds is not None:
      lo[u:], hi[u:] = check_bounds(c_bounds, u)
  else:
    return None
  return lo, hi


def from_cell(cell, input_size=None, bounds="default", c_bounds=None, speed_coordinates=None):
  """Dynamics of a Keras recurrent cell (built-in or a user's own).

  Args:
    cell: a Keras 3 cell: call(inputs, states) -> (output, new_states) and state_size (an int
      or a list of ints; the flat state is their concatenation). It must be built (e.g. trained)
      unless `input_size` is given, which builds it.
    input_size: entries of one input (default: from the built cell's kernel).
    bounds: "default" (the built-in cells' reachable box, see the module docstring; a user's
      cell: unbounded), None (unbounded) or (lo, hi) each [state_size].
    c_bounds: LSTMCell only: (lo, hi) [units] for c (default free), e.g. the range
      trajectories reach (`reached_bounds` does this from trajectories).
    speed_coordinates: fn(s) -> coordinates of the speed (default: s; LSTMCell (h, tanh c)).
  """
  sizes = _state_sizes(cell)
  if input_size is None:
    kernel = getattr(cell, "kernel", None)
    if kernel is None or not getattr(cell, "built", False):
      raise ValueError(f"{type(cell).__name__} is not built: pass `input_size` (entries of one "
                       "input) to build it")
    input_size = int(kernel.shape[0])
  elif not getattr(cell, "built", True):
    cell.build((None, int(input_size)))
  elif getattr(cell, "kernel", None) is not None and int(cell.kernel.shape[0]) != input_size:
    raise ValueError(f"{type(cell).__name__} takes inputs of {int(cell.kernel.shape[0])} "
                     f"entries, not {input_size}")
  is_layer = isinstance(cell, keras.layers.Layer)
  compute = str(getattr(cell, "compute_dtype", "float32") or "float32")
  if compute != "float32":
    # Keras casts the state to the compute dtype: F is then piecewise constant in s at that
    # precision, so q, its gradient and the Jacobians are those of the rounded map.
    logging.warning("%s computes in %s: its slow points and Jacobians are those of the "
                    "rounded map; for float32 ones, rebuild the cell with dtype='float32' and "
                    "copy its weights", type(cell).__name__, compute)

  def step(s, x):
    states = tf.split(s, sizes, axis=-1) if len(sizes) > 1 else [s]   # a list, as keras.RNN
    out = cell(x, states, training=False) if is_layer else cell(x, states)
    if not isinstance(out, (list, tuple)) or len(out) != 2:
      raise ValueError(f"{type(cell).__name__}.call must return (output, new_states)")
    new = [tf.cast(t, tf.float32) for t in tf.nest.flatten(out[1])]
    if [int(t.shape[-1]) for t in new] != sizes:
      raise ValueError(f"{type(cell).__name__} returned states of sizes "
                       f"{[int(t.shape[-1]) for t in new]}, state_size says {sizes}")
    return tf.concat(new, axis=-1) if len(new) > 1 else new[0]

  if isinstance(cell, keras.layers.LSTMCell) and speed_coordinates is None:
    speed_coordinates = _h_tanh_c(cell.units)
  if isinstance(bounds, str):
    if bounds != "default":
      raise ValueError(f"`bounds` must be 'default', None or (lo, hi), got {bounds!r}")
    bounds = _builtin_bounds(cell, sizes, c_bounds)
  elif c_bounds is not None:
    raise ValueError("pass `c_bounds` with bounds='default' (or put them in `bounds`)")
  dyn = Dynamics(step, sum(sizes), input_size, speed_coordinates=speed_coordinates,
                 bounds=bounds, name=type(cell).__name__)
  if isinstance(cell, keras.layers.LSTMCell) or getattr(cell, "state_layout", None) == "h,c":
    dyn.lstm_units = int(cell.units)  # the state is [h, c]: save_step records its layout
  return dyn


def from_layer(layer, **kwargs):
  """Dynamics of the cell of a keras.layers.RNN (GRU, LSTM, SimpleRNN) layer; see `from_cell`."""
  cell = getattr(layer, "cell", None)
  if cell is None:
    raise ValueError(f"{type(layer).__name__} has no `cell`: not a Keras RNN layer")
  if isinstance(cell, keras.layers.StackedRNNCells):
    raise ValueError("a stack of cells is not one cell: build a Dynamics of the stack's step "
                     "(core.Dynamics), or pass one of its cells")
  return from_cell(cell, **kwargs)


def from_saved_model(saved_model, signature="step", state_arg="state", input_arg="inputs",
                     output_key="state", bounds="default", speed_coordinates=None):
  """Dynamics of a SavedModel signature (state [N, S], inputs [N, I]) -> {output_key: [N, S]}.

  Args:
    saved_model: a directory or a loaded object (tf.saved_model.load).
    signature: the step signature's name; its inputs are named `state_arg` and `input_arg`.
    bounds: "default": the box a `metadata` signature records (`save_step`'s lo, hi; this
      project's export: h in [-1, 1], c free); without one, unbounded. None (unbounded) or
      (lo, hi) each [S]. The speed coordinates are (h, tanh c) when the metadata's
      speed_coordinates say "h,tanh(c)" (an LSTM), else the state.
  """
  loaded = tf.saved_model.load(saved_model) if isinstance(saved_model, str) else saved_model
  sigs = getattr(loaded, "signatures", {})
  if signature not in sigs:
    raise ValueError(f"the SavedModel has no signature {signature!r} (it has "
                     f"{', '.join(sorted(sigs)) or 'none'})")
  fn = sigs[signature]
  spec = fn.structured_input_signature[1]
  if state_arg not in spec or input_arg not in spec:
    raise ValueError(f"signature {signature!r} takes {sorted(spec)}, not "
                     f"({state_arg!r}, {input_arg!r})")
  state_size, input_size = spec[state_arg].shape[-1], spec[input_arg].shape[-1]
  if state_size is None or input_size is None:
    raise ValueError(f"signature {signature!r} must fix the last dimension of "
                     f"{state_arg!r} and {input_arg!r}")
  if output_key not in fn.structured_outputs:
    raise ValueError(f"signature {signature!r} returns {sorted(fn.structured_outputs)}, not "
                     f"{output_key!r}")

  def step(s, x):
    return fn(**{state_arg: s, input_arg: x})[output_key]

  meta = {}
  if "metadata" in sigs:
    meta = {k: v.numpy() for k, v in sigs["metadata"]().items()}
    meta = {k: v.decode() if isinstance(v, bytes) else v for k, v in meta.items()}
  if meta.get("speed_coordinates") == "h,tanh(c)" and speed_coordinates is None:
    speed_coordinates = _h_tanh_c(int(meta["units"]))
  if isinstance(bounds, str) and "lo" in meta and "hi" in meta:
    bounds = (meta["lo"], meta["hi"])
  elif isinstance(bounds, str) and meta.get("state_layout") in ("h", "h,c") and "units" in meta:
    lo = np.full([state_size], -np.inf, np.float32)   # this project's export: h in [-1, 1]
    lo[:int(meta["units"])] = -1.0
    bounds = (lo, np.where(np.isinf(lo), np.inf, 1.0).astype(np.float32))
  if isinstance(bounds, str):
    if bounds != "default":
      raise ValueError(f"`bounds` must be 'default', None or (lo, hi), got {bounds!r}")
    bounds = None
  dyn = Dynamics(step, state_size, input_size, speed_coordinates=speed_coordinates,
                 bounds=bounds, name=f"SavedModel:{signature}")
  dyn.saved_model = loaded  # the signature's variables live as long as the loaded object
  return dyn


def as_dynamics(obj, **kwargs) -> Dynamics:
  """A Dynamics from a Dynamics, a Keras RNN layer or cell, a SavedModel (directory or loaded
  object), or any object with a `to_dynamics()` method (an application's adapter, e.g.
  haviv_tf's DelayedClassifier); `kwargs` go to the matching from_* function."""
  if isinstance(obj, Dynamics):
    if kwargs:
      raise ValueError(f"options {sorted(kwargs)} do not apply to a Dynamics")
    return obj
  if callable(getattr(obj, "to_dynamics", None)):  # an application's own network (adapter)
    if kwargs:
      raise ValueError(f"options {sorted(kwargs)} do not apply to a {type(obj).__name__}")
    return obj.to_dynamics()
  if isinstance(obj, keras.layers.RNN):
    return _remembered(obj, kwargs, from_layer)
  if isinstance(obj, str):
    return from_saved_model(obj, **kwargs)
  if hasattr(obj, "signatures"):
    return _remembered(obj, kwargs, from_saved_model)
  if hasattr(obj, "state_size"):
    return _remembered(obj, kwargs, from_cell)
  raise ValueError(f"cannot find slow points of a {type(obj).__name__}: pass a Keras recurrent "
                   "cell or RNN layer (of a model: model.get_layer(name)), a SavedModel, a "
                   "Dynamics or an object with a `to_dynamics()` method")


_REMEMBERED = "_slow_point_dynamics"   # the attribute of a cell, layer or loaded SavedModel


class _Kept(dict):
  """The Dynamics kept on an object, by options. A copy of the object starts empty (a kept
  Dynamics calls the object it was made of, not the copy; its compiled graphs cannot be
  copied or pickled)."""

  def __deepcopy__(self, memo):
    return _Kept()

  def __copy__(self):
    return _Kept()

  def __reduce__(self):
    return (_Kept, ())


def _plain(value) -> bool:
  """A value that can key a kept Dynamics: a number, string, None, or a tuple of them (not a
  function or array: a new one each call would keep a new Dynamics each call)."""
  if isinstance(value, tuple):
    return all(_plain(v) for v in value)
  return value is None or isinstance(value, (bool, int, float, str))


def _remembered(obj, kwargs, make):
  """make(obj, **kwargs), kept on `obj` so that a later call with the same object and options
  returns the same Dynamics, with its compiled functions (Dynamics.compiled): a loop over
  find_slow_points or jacobians on one network then traces once. Options other than plain
  values (functions, arrays) are not kept. The compiled functions read the variables when they
  run, so new weights are seen; Python attributes of a cell of one's own (a constant, a dtype
  policy) are read when first traced: after changing one, `forget(obj)`. Set with
  object.__setattr__ so that Keras and tf.Module do not track it."""
  if not all(_plain(v) for v in kwargs.values()):
    return make(obj, **kwargs)
  key = tuple(sorted(kwargs.items()))
  made = obj.__dict__.get(_REMEMBERED) if hasattr(obj, "__dict__") else None
  if made is None:
    made = _Kept()
    try:
      object.__setattr__(obj, _REMEMBERED, made)
    except (AttributeError, TypeError):
      return make(obj, **kwargs)
  if key not in made:
    made[key] = make(obj, **kwargs)
  return made[key]


def forget(obj) -> None:
  """Drops the Dynamics (and compiled functions) kept on `obj` by as_dynamics, so that the next
  call makes them again: after changing a Python attribute its step reads (a cell of one's own
  with a constant, a new dtype policy). Nothing happens for an object with none kept."""
  if hasattr(obj, "__dict__") and _REMEMBERED in obj.__dict__:
    object.__delattr__(obj, _REMEMBERED)


# -- trajectories and starting states -----------------------------------------------------------


def trajectories(dynamics, inputs, initial_state=None, batch_size=256) -> np.ndarray:
  """The states along input sequences: [B, T, I] inputs -> [B, T, S] (state after step t).

  `initial_state` [S] or [B, S] (default zeros). For a Keras LSTM the c half is included.
  """
  dyn = as_dynamics(dynamics)
  inputs = np.asarray(inputs, np.float32)
  if inputs.ndim != 3 or inputs.shape[-1] != dyn.input_size:
    raise ValueError(f"`inputs` must be [batch, time, {dyn.input_size}], got {inputs.shape}")
  b = len(inputs)
  if inputs.shape[1] == 0:   # no step: no state after one
    return np.zeros([b, 0, dyn.state_size], np.float32)
  s0 = np.zeros([b, dyn.state_size], np.float32) if initial_state is None else np.broadcast_to(
      np.asarray(initial_state, np.float32), [b, dyn.state_size])

  def build():
    @tf.function(input_signature=[  # one trace for every batch and every call on this network
        tf.TensorSpec([None, None, dyn.input_size], tf.float32),
        tf.TensorSpec([None, dyn.state_size], tf.float32)])
    def run(x, s):
      xp = tf.map_fn(dyn.project, tf.transpose(x, [1, 0, 2]))
      return tf.transpose(tf.scan(lambda st, xt: dyn.step(st, xt), xp, initializer=s),
                          [1, 0, 2])
    return run

  run = dyn.compiled("trajectories", build)

  out = [run(tf.constant(inputs[lo:lo + batch_size]), tf.constant(s0[lo:lo + batch_size])).numpy()
         for lo in range(0, b, batch_size)]
  return np.concatenate(out) if out else np.zeros([0, inputs.shape[1], dyn.state_size], np.float32)


def sample_states(trajectory_states, num_states, min_time=0, noise=0.0, seed=0) -> np.ndarray:
  """Starting states drawn from recorded trajectories [B, T, S] (e.g. `trajectories`).

  Each state is a uniformly drawn (trial, time >= min_time) pair, plus optional Gaussian noise of
  standard deviation `noise` (a common way to start near, not on, the trajectories).

  Returns:
    [num_states, S] float32.
  """
  traj = np.asarray(trajectory_states, np.float32)
  if traj.ndim != 3 or not 0 <= min_time < traj.shape[1] or len(traj) == 0:
    raise ValueError(f"`trajectory_states` must be [batch, time, S] with time > min_time "
                     f"({min_time}), got {traj.shape}")
  if num_states <= 0 or not noise >= 0:
    raise ValueError(f"`num_states` must be positive and `noise` >= 0, got {num_states!r}, "
                     f"{noise!r}")
  rng = np.random.default_rng(seed)
  trial = rng.integers(0, traj.shape[0], num_states)
  time = rng.integers(min_time, traj.shape[1], num_states)
  states = traj[trial, time]
  if noise:
    states = states + noise * rng.standard_normal(states.shape).astype(np.float32)
  return states.astype(np.float32)


def reached_bounds(dynamics, trajectory_states):
  """The dynamics' box with its unbounded coordinates (e.g. an LSTM's c) replaced by the range
  (per coordinate) the trajectories [B, T, S] reach: the project's lstm_c="reached"."""
  dyn = as_dynamics(dynamics)
  traj = np.asarray(trajectory_states, np.float32).reshape([-1, dyn.state_size])
  if not len(traj):
    raise ValueError("`trajectory_states` holds no state")
  lo, hi = (b.copy() for b in dyn.bounds)
  free_lo, free_hi = np.isinf(lo), np.isinf(hi)
  lo[free_lo], hi[free_hi] = traj.min(0)[free_lo], traj.max(0)[free_hi]
  return lo, hi



def save_step(dynamics, path, variables=None):
  """Writes a SavedModel with signatures `step(state [N, S], inputs [N, I]) -> {"state"}` and
  `metadata() -> {state_size, units, lo, hi, speed_coordinates}` (the reachable box, and
  "h,tanh(c)" for an LSTM cell, else "state"): the form `from_saved_model` reads, loadable with
  TensorFlow alone.

  `variables`: the variables the step reads (default: the weights of `dynamics` when it is a
  Keras cell or layer); a Dynamics built by hand must pass them.
  """
  if variables is None:
    if not hasattr(dynamics, "weights"):
      raise ValueError("pass `variables` (the step's weights) for a Dynamics")
    variables = dynamics.weights
  dyn = as_dynamics(dynamics)
  module = tf.Module()
  module.step_variables = [getattr(v, "value", v) for v in variables]

  @tf.function(input_signature=[tf.TensorSpec([None, dyn.state_size], tf.float32, name="state"),
                                tf.TensorSpec([None, dyn.input_size], tf.float32, name="inputs")])
  def step(state, inputs):
    return {"state": dyn.transition(state, inputs)}

  # An LSTM's [h, c] layout: from its cell (a cell of one's own declares it with
  # `state_layout = "h,c"`), or from the Dynamics `from_cell` made of such a cell.
  units = getattr(dyn, "lstm_units", None)
  lstm = units is not None
  constants = dict(state_size=np.int32(dyn.state_size),
                   units=np.int32(units if lstm else dyn.state_size),
                   lo=dyn.bounds[0], hi=dyn.bounds[1],
                   speed_coordinates="h,tanh(c)" if lstm else "state")
  module.constants = {k: tf.Variable(v, trainable=False) for k, v in constants.items()}

  @tf.function(input_signature=[])
  def metadata():
    return {k: tf.identity(v) for k, v in module.constants.items()}

  module.step, module.metadata = step, metadata
  tf.saved_model.save(module, path, signatures={"step": step, "metadata": metadata})
  return path
