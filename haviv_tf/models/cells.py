"""The paper's recurrent cells (GRU, LSTM) with TF1's or the authors' initialisation.

A cell splits its step into `project` (the input's part, W x + b, computed once for a whole
sequence) and `step` (the recurrence), and names its speed coordinates (LSTM: (h, tanh c)).
"""

import math

import keras
import numpy as np
import tensorflow as tf


def _glorot_joint(fan_in, fan_out, seed=None):
  """TF1 cells draw one glorot-uniform matrix over [x, h]; its limit uses both fan-ins."""
  limit = math.sqrt(6.0 / (fan_in + fan_out))
  return keras.initializers.RandomUniform(-limit, limit, seed=seed)


def normal_initializer(std):
  return keras.initializers.RandomNormal(stddev=std)


def _cell_initializers(init, d, u, gates):
  """(kernel, recurrent kernel, bias) initialisers of a cell with `gates` blocks.

  "tf1": TF1's GRUCell/LSTMCell, one glorot-uniform draw over [x, h] (the gate offsets are
  added by the cell). "authors": the authors' hand-written cells (TriggerMNISTCloud.py
  L188-215, TriggerCIFARCloud.py L199-227): every input matrix randn / sqrt(input size), every
  recurrent matrix randn / sqrt(units), every bias 0.01 randn, no gate or forget offset.
  """
  if init == "authors":
    return normal_initializer(1.0 / math.sqrt(d)), normal_initializer(1.0 / math.sqrt(u)), normal_initializer(0.01)
  glorot = _glorot_joint(d + u, gates * u)
  return glorot, _glorot_joint(d + u, gates * u), None


def _matmul(x, kernel, low_precision=False):
  """x @ kernel (2-D); with `low_precision` the product (and its gradients) in bfloat16, the
  result in float32."""
  if not low_precision:
    return tf.matmul(x, kernel)
  return tf.cast(tf.matmul(tf.cast(x, tf.bfloat16), tf.cast(kernel, tf.bfloat16)), tf.float32)


def _dense(x, kernel, bias, low_precision=False):
  """x @ kernel + bias over any leading axes, as one 2-D matmul (bfloat16 if `low_precision`).

  (tf.einsum's gradient for "...i,ij->...j" materialises a [batch, in, out] tensor: 100x slower.)
  """
  if x.shape.rank == 2:
    return _matmul(x, kernel, low_precision) + bias
  lead = tf.shape(x)[:-1]
  y = _matmul(tf.reshape(x, [-1, x.shape[-1]]), kernel, low_precision) + bias
  return tf.reshape(y, tf.concat([lead, [kernel.shape[-1]]], 0))


@keras.saving.register_keras_serializable(package="haviv_tf")
class GRUCell(keras.layers.Layer):
  """GRU in the paper's form: h' = (1 - z) h + z tanh(W_h x + U_h (r h) + b_h).

  z = sigmoid(W_z x + U_z h + b_z), r = sigmoid(W_r x + U_r h + b_r). The state is h.
  init "authors" (the paper preset) is the authors' hand-written cell's: W randn/sqrt(input
  size), U randn/sqrt(units), biases 0.01 randn. init "tf1" is TF1's GRUCell's: glorot-uniform
  over [x, h], gate bias +1 on the state-keeping side (b_r = 1, b_z = -1 since here z weighs
  the candidate), candidate bias 0.
  """

  def __init__(self, units, init="tf1", **kwargs):
    super().__init__(**kwargs)
    self.units = int(units)
    self.init = init
    self.state_size = self.units

  def build(self, input_shape):
    d, u = int(input_shape[-1]), self.units
    kernel, recurrent, bias = _cell_initializers(self.init, d, u, 3)
    if bias is None:
      bias = keras.initializers.Constant(
          np.concatenate([-np.ones(u), np.ones(u), np.zeros(u)]).astype(np.float32))
    self.kernel = self.add_weight(name="kernel", shape=(d, 3 * u), initializer=kernel)
    self.recurrent_kernel = self.add_weight(name="recurrent_kernel", shape=(u, 3 * u),
                                            initializer=recurrent)
    self.bias = self.add_weight(name="bias", shape=(3 * u,), initializer=bias)

  def project(self, x, low_precision=False):
    """W x + b for every frame at once: [..., input] -> [..., 3 units] (float32; the product
    in bfloat16 if `low_precision`)."""
    return _dense(x, self.kernel, self.bias, low_precision)

  def step(self, h, xp):
    """One step from state h [batch, u] and projected input xp [batch, 3u]."""
    u = self.units
    zr = tf.sigmoid(xp[:, :2 * u] + tf.matmul(h, self.recurrent_kernel[:, :2 * u]))
    z, r = zr[:, :u], zr[:, u:]
    c = tf.tanh(xp[:, 2 * u:] + tf.matmul(r * h, self.recurrent_kernel[:, 2 * u:]))
    return (1.0 - z) * h + z * c

  def hidden(self, state):
    return state

  def speed_coordinates(self, state):
    return state

  def get_config(self):
    return dict(units=self.units, init=self.init, **super().get_config())


@keras.saving.register_keras_serializable(package="haviv_tf")
class LSTMCell(keras.layers.Layer):
  """Standard LSTM; the state is [h, c] concatenated (size 2 units).

  i, f, o = sigmoid(.), g = tanh(.), c' = f c + i g, h' = o tanh(c'). Gate order in the weights
  is (i, g, f, o) as TF1's LSTMCell. init "authors": as GRUCell's (no forget offset); "tf1":
  glorot-uniform over [x, h] and forget bias 1 (TF1's forget_bias=1.0).
  """

  state_layout = "h,c"  # flat [h, c] state (haviv_tf.dynamics reads it)

  def __init__(self, units, init="tf1", **kwargs):
    super().__init__(**kwargs)
    self.units = int(units)
    self.init = init
    self.state_size = 2 * self.units

  def build(self, input_shape):
    d, u = int(input_shape[-1]), self.units
    kernel, recurrent, bias = _cell_initializers(self.init, d, u, 4)
    if bias is None:
      bias = keras.initializers.Constant(
          np.concatenate([np.zeros(2 * u), np.ones(u), np.zeros(u)]).astype(np.float32))
    self.kernel = self.add_weight(name="kernel", shape=(d, 4 * u), initializer=kernel)
    self.recurrent_kernel = self.add_weight(name="recurrent_kernel", shape=(u, 4 * u),
                                            initializer=recurrent)
    self.bias = self.add_weight(name="bias", shape=(4 * u,), initializer=bias)

  def project(self, x, low_precision=False):
    """W x + b for every frame at once: [..., input] -> [..., 4 units] (float32; the product
    in bfloat16 if `low_precision`)."""
    return _dense(x, self.kernel, self.bias, low_precision)

  def step(self, state, xp):
    """One step from state [h, c] [batch, 2u] and projected input xp [batch, 4u]."""
    u = self.units
    h, c = state[:, :u], state[:, u:]
    a = xp + tf.matmul(h, self.recurrent_kernel)
    i = tf.sigmoid(a[:, :u])
    g = tf.tanh(a[:, u:2 * u])
    f = tf.sigmoid(a[:, 2 * u:3 * u])
    o = tf.sigmoid(a[:, 3 * u:])
    c = f * c + i * g
    return tf.concat([o * tf.tanh(c), c], axis=-1)

  def hidden(self, state):
    return state[..., :self.units]

  def speed_coordinates(self, state):
    """(h, tanh c): the paper's LSTM speed includes ||tanh c' - tanh c||^2."""
    return tf.concat([state[..., :self.units], tf.tanh(state[..., self.units:])], axis=-1)

  def get_config(self):
    return dict(units=self.units, init=self.init, **super().get_config())


CELLS = {"gru": GRUCell, "lstm": LSTMCell}
