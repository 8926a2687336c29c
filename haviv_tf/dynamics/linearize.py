"""Linearisation of a recurrent step around states: speeds, Jacobians, spectra, stability, box.

Every function takes anything `core.as_dynamics` accepts (a Keras 3 cell or RNN layer, a
SavedModel step signature, an object with `to_dynamics()`, a `core.Dynamics`).
"""

import numpy as np
import tensorflow as tf

from haviv_tf.dynamics import core

_EIG_BATCH = 256  # Jacobians per tf.linalg.eigvals call


def broadcast_inputs(inputs, n):
  """A constant input [I] or per-state inputs [N, I] -> [n, I] float32 tensor."""
  inputs = tf.cast(tf.convert_to_tensor(inputs), tf.float32)  # float64 / float16 tensors too
  if inputs.shape.rank == 1:
    inputs = inputs[None, :]
  if inputs.shape.rank != 2:
    raise ValueError(f"`inputs` must be [I] or [N, I], got shape {inputs.shape}")
  return tf.broadcast_to(inputs, [n, inputs.shape[-1]])


def check_inputs(dyn, inputs):
  """ValueError unless `inputs` [N, I] have the input size of `dyn`."""
  if inputs.shape[-1] != dyn.input_size:
    raise ValueError(f"`inputs` must have {dyn.input_size} entries (the input size of "
                     f"{dyn.name}), got {inputs.shape[-1]}")


def check_states(dyn, states):
  """`states` as a [N, state_size] float32 tensor (ValueError otherwise)."""
  states = tf.cast(tf.convert_to_tensor(states), tf.float32)
  if states.shape.rank != 2 or states.shape[-1] != dyn.state_size:
    raise ValueError(f"`states` must be [N, {dyn.state_size}] (state_size), got {states.shape}")
  return states


def speeds(rnn, states, inputs) -> np.ndarray:
  """||F(s, x) - s|| in the dynamics' speed coordinates.

  Args:
    rnn: the network (see `core.as_dynamics`).
    states: [N, state_size].
    inputs: the input x, [I] or [N, I] (an application's adapter may take encoded features).

  Returns:
    [N] float32.
  """
  dyn = core.as_dynamics(rnn)
  states = check_states(dyn, states)
  inputs = broadcast_inputs(inputs, tf.shape(states)[0])
  check_inputs(dyn, inputs)
  if not states.shape[0]:   # Keras's LSTMCell fails on an empty batch
    return np.zeros([0], np.float32)
  new = dyn.transition(states, inputs)
  return tf.sqrt(dyn.speed_squared(states, new)).numpy()


def in_box(rnn, states, slack: float = 1e-6) -> np.ndarray:
  """Whether each state lies in the reachable box of `rnn` (`core.Dynamics.bounds`).

  Unbounded coordinates (e.g. an LSTM's c) are not checked; `slack` widens every bound.

  Args:
    rnn: the network (see `core.as_dynamics`).
    states: [N, state_size].
    slack: tolerance added to each side of the box.

  Returns:
    [N] bool.
  """
  lo, hi = core.as_dynamics(rnn).bounds
  states = np.asarray(states)
  return np.all((states >= lo - slack) & (states <= hi + slack), axis=-1)


def jacobians(rnn, states, inputs, batch_size: int = 256) -> np.ndarray:
  """dF/ds at each state (state coordinates; an LSTM's state is [h, c]).

  Args:
    rnn: the network (see `core.as_dynamics`).
    states: [N, state_size].
    inputs: the input x, [I] or [N, I].
    batch_size: states per batch_jacobian call.

  Returns:
    [N, S, S] float32; entry [n, i, j] = dF_i/ds_j at states[n].
  """
  dyn = core.as_dynamics(rnn)
  states = check_states(dyn, states)
  n = int(states.shape[0])
  inputs = broadcast_inputs(inputs, n)
  check_inputs(dyn, inputs)
  batch = dyn.compiled("jacobian", lambda: _jacobian_fn(dyn))

  out = [batch(states[lo:lo + batch_size], inputs[lo:lo + batch_size]).numpy()
         for lo in range(0, n, batch_size)]
  if not out:
    return np.zeros([0, dyn.state_size, dyn.state_size], np.float32)
  return np.concatenate(out, axis=0)


def _jacobian_fn(dyn):
  spec = [tf.TensorSpec([None, dyn.state_size], tf.float32),
          tf.TensorSpec([None, dyn.input_size], tf.float32)]

  @tf.function(input_signature=spec)  # one trace; 1.5-3x faster than eager batch_jacobian
  def batch(s, x):
    with tf.GradientTape() as tape:
      tape.watch(s)
      new = dyn.transition(s, x)
    return tape.batch_jacobian(new, s)
  return batch


def spectra(jac: np.ndarray, k: int):
  """Leading eigenvalues of Jacobians.

  Args:
    jac: [N, S, S].
    k: eigenvalues kept (at most S).

  Returns:
    eigenvalues [N, min(k, S)] complex128 sorted by decreasing magnitude, max |λ| [N] float64,
    number of |λ| > 1 [N] int32 (whole spectrum).
  """
  n, s = jac.shape[0], jac.shape[-1]
  k = min(int(k), s)
  if n == 0:
    return np.zeros([0, k], np.complex128), np.zeros([0]), np.zeros([0], np.int32)
  # tf.linalg.eigvals (Eigen) rather than np.linalg.eigvals: in a process where TensorFlow has
  # run, OpenBLAS's threads contend with TF's and numpy's eig was measured 50-90x slower on 2 CPUs
  # (same eigenvalues to 1e-13).
  # A Jacobian with NaN or inf entries (a point where the step is not finite) gets NaN
  # eigenvalues (not stable) instead of failing the decomposition of every point.
  ok = np.all(np.isfinite(jac), axis=(1, 2))
  eig = np.full([n, s], np.nan, np.complex128)
  good = jac[ok]
  if len(good):
    eig[ok] = np.concatenate([
        tf.linalg.eigvals(tf.constant(good[lo:lo + _EIG_BATCH], tf.float64)).numpy()
        for lo in range(0, len(good), _EIG_BATCH)])
  order = np.argsort(-np.abs(eig), axis=-1, kind="stable")
  eig = np.take_along_axis(eig, order, axis=-1)
  mags = np.abs(eig)
  return eig[:, :k], mags[:, 0], np.sum(mags > 1.0, axis=-1).astype(np.int32)


def stable(max_abs_eig) -> np.ndarray:
  """Whether a fixed point of the map s <- F(s, x) is linearly stable: max |λ| < 1.

  Args:
    max_abs_eig: [N] largest eigenvalue magnitude of dF/ds (NaN: unknown, not stable).

  Returns:
    [N] bool.
  """
  mags = np.asarray(max_abs_eig, np.float64)
  return np.less(mags, 1.0, where=~np.isnan(mags), out=np.zeros(mags.shape, bool))
