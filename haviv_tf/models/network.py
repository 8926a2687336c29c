"""Recurrent cells, the CIFAR-10 CNN front end, and DelayedClassifier with its train/test steps."""

import math

import keras
import numpy as np
import tensorflow as tf

from haviv_tf import dynamics as dynamics_lib
from haviv_tf.base import config as config_lib
from haviv_tf.task import losses

NUM_OUTPUTS = config_lib.NUM_CLASSES + 1
_UNROLL_MAX = 64  # sequences up to this length are unrolled in the graph (faster on CPU)


def _glorot_joint(fan_in, fan_out, seed=None):
  """TF1 cells draw one glorot-uniform matrix over [x, h]; its limit uses both fan-ins."""
  limit = math.sqrt(6.0 / (fan_in + fan_out))
  return keras.initializers.RandomUniform(-limit, limit, seed=seed)


def _normal(std):
  return keras.initializers.RandomNormal(stddev=std)


def _cell_initializers(init, d, u, gates):
  """(kernel, recurrent kernel, bias) initialisers of a cell with `gates` blocks.

  "tf1": TF1's GRUCell/LSTMCell, one glorot-uniform draw over [x, h] (the gate offsets are
  added by the cell). "authors": the authors' hand-written cells (TriggerMNISTCloud.py
  L188-215, TriggerCIFARCloud.py L199-227): every input matrix randn / sqrt(input size), every
  recurrent matrix randn / sqrt(units), every bias 0.01 randn, no gate or forget offset.
  """
  if init == "authors":
    return _normal(1.0 / math.sqrt(d)), _normal(1.0 / math.sqrt(u)), _normal(0.01)
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

  def step(self, xp, h):
    """One step from projected input xp [batch, 3u] and state h [batch, u]."""
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

  def step(self, xp, state):
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


@keras.saving.register_keras_serializable(package="haviv_tf")
class ScaledConv2D(keras.layers.Layer):
  """3x3 'same' convolution whose weights are trainable variables times fixed factors.

  The authors' parametrisation (TriggerCIFARCloud.py L238-265): kernel = v / kernel_div with
  v ~ truncated_normal(std 1) trainable, bias = b / bias_div with b = 0.1 trainable. Under
  Adam a variable moves about lr per step, so the effective weights move kernel_div (bias_div)
  times more slowly than plain variables would.
  """

  def __init__(self, filters, kernel_div, bias_div, **kwargs):
    super().__init__(**kwargs)
    self.filters, self.kernel_div, self.bias_div = int(filters), float(kernel_div), float(bias_div)

  def build(self, input_shape):
    self.kernel = self.add_weight(name="kernel", shape=(3, 3, int(input_shape[-1]), self.filters),
                                  initializer=keras.initializers.TruncatedNormal(stddev=1.0))
    self.bias = self.add_weight(name="bias", shape=(self.filters,),
                                initializer=keras.initializers.Constant(0.1))

  def call(self, x):
    y = tf.nn.conv2d(x, self.kernel / self.kernel_div, strides=1, padding="SAME")
    return y + self.bias / self.bias_div

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:-1]) + (self.filters,)

  def get_config(self):
    return dict(filters=self.filters, kernel_div=self.kernel_div, bias_div=self.bias_div,
                **super().get_config())


@keras.saving.register_keras_serializable(package="haviv_tf")
class ConvEncoder(keras.layers.Layer):
  """CIFAR-10 front end: 3 x [3x3 conv 128, leaky ReLU, 2x2 max pool] -> dense layers -> 1024.

  kind "authors" (TriggerCIFARCloud.py L238-291): the convolutions are ScaledConv2D with
  kernel divisors sqrt(3 x 128), 128, 128 and bias divisor sqrt(128); three dense layers
  2048 -> 2048 -> 2048 -> 1024, weights randn / sqrt(2048), biases 0.01 randn; leaky ReLU
  (slope 0.2) after every layer. kind "keras": Keras' default Conv2D and Dense layers, dense
  2048 -> 2048 -> 1024.
  """

  def __init__(self, frame_shape, kind="keras", **kwargs):
    super().__init__(**kwargs)
    self.frame_shape = tuple(int(v) for v in frame_shape)
    self.kind = kind
    self.blocks = []
    for k in range(3):
      if kind == "authors":
        div = math.sqrt(3 * 128) if k == 0 else 128.0
        conv = ScaledConv2D(128, div, math.sqrt(128), name=f"conv{k}")
      else:
        conv = keras.layers.Conv2D(128, 3, padding="same", name=f"conv{k}")
      self.blocks += [conv, keras.layers.LeakyReLU(negative_slope=0.2),
                      keras.layers.MaxPooling2D(2)]
      # An attribute of its own as well: checkpoints track layers held in attributes, not in
      # lists, so without it a model-only checkpoint (a history snapshot) would miss the
      # convolutions. The variables and their order stay those of `blocks`.
      setattr(self, f"conv{k}", conv)
    self.flatten = keras.layers.Flatten()
    if kind == "authors":
      init = dict(kernel_initializer=_normal(1.0 / math.sqrt(2048)), bias_initializer=_normal(0.01))
      self.dense1 = keras.layers.Dense(2048, name="dense1", **init)
      self.dense2 = keras.layers.Dense(2048, name="dense2", **init)
      self.dense3 = keras.layers.Dense(1024, name="dense3", **init)
    else:
      self.dense1 = keras.layers.Dense(2048, name="dense1")
      self.dense2 = keras.layers.Dense(1024, name="dense2")
    self.act = keras.layers.LeakyReLU(negative_slope=0.2)
    self.output_size = 1024

  @property
  def dense_layers(self):
    """The dense layers in order (a property, not an attribute: the checkpoint keeps one path
    to each layer, dense1 ...)."""
    return [self.dense1, self.dense2] + ([self.dense3] if self.kind == "authors" else [])

  def build(self, input_shape):
    """Creates every sub-layer's weights now (not at the first call), so that optimizers and
    checkpoints built before any call see them."""
    del input_shape  # frames are [n, prod(frame_shape)]; the layers see frame_shape
    shape = (None,) + self.frame_shape
    for layer in self.blocks + [self.flatten]:
      layer.build(shape)
      shape = layer.compute_output_shape(shape)
    for layer in self.dense_layers:
      layer.build(shape)
      shape = layer.compute_output_shape(shape)
    self.act.build(shape)

  def call(self, frames, low_precision=False):
    """frames [n, prod(frame_shape)] -> features [n, 1024] float32.

    With `low_precision` the convolutions and dense layers compute in bfloat16 (weights kept
    in float32 and cast), the same operations as the Keras layers.
    """
    x = tf.reshape(frames, (-1,) + self.frame_shape)
    if not low_precision:
      for layer in self.blocks:
        x = layer(x)
      x = self.flatten(x)
      for layer in self.dense_layers:
        x = self.act(layer(x))
      return x
    bf16 = lambda v: tf.cast(v, tf.bfloat16)  # pylint: disable=unnecessary-lambda-assignment
    slope = self.act.negative_slope
    x = bf16(x)
    for conv in self.blocks[::3]:
      kernel, bias = conv.kernel, conv.bias
      if isinstance(conv, ScaledConv2D):  # the effective weights, as ScaledConv2D.call
        kernel, bias = kernel / conv.kernel_div, bias / conv.bias_div
      x = tf.nn.conv2d(x, bf16(kernel), strides=1, padding="SAME") + bf16(bias)
      x = tf.nn.max_pool2d(tf.nn.leaky_relu(x, slope), 2, 2, "VALID")
    x = tf.reshape(x, [tf.shape(x)[0], -1])
    for layer in self.dense_layers:
      x = tf.nn.leaky_relu(tf.matmul(x, bf16(layer.kernel)) + bf16(layer.bias), slope)
    return tf.cast(x, tf.float32)

  def get_config(self):
    return dict(frame_shape=list(self.frame_shape), kind=self.kind, **super().get_config())


@keras.saving.register_keras_serializable(package="haviv_tf")
class DelayedClassifier(keras.Model):
  """RNN for the delayed classification task.

  Inputs are [batch, time, frame_size + 1] (flattened frame, then the trigger). With
  encoder="cnn" every frame goes through ConvEncoder and the trigger joins after it; with
  encoder="none" pixels and trigger go straight into the cell. The call returns
  (logits [batch, time, 11], states [batch, time, state_size]); the state after frame t is read
  out at t.
  """

  def __init__(self, arch="gru", units=200, frame_shape=(28, 28, 1), readout="sigmoid",
               encoder="none", init="tf1", cnn="keras", precision="float32", **kwargs):
    super().__init__(**kwargs)
    if arch not in CELLS:
      raise ValueError(f"unknown arch {arch!r}; valid: {', '.join(CELLS)}")
    if readout not in config_lib.READOUTS:
      raise ValueError(f"unknown readout {readout!r}; valid: {', '.join(config_lib.READOUTS)}")
    if init not in config_lib.INITS:
      raise ValueError(f"unknown init {init!r}; valid: {', '.join(config_lib.INITS)}")
    if cnn not in config_lib.CNNS:
      raise ValueError(f"unknown cnn {cnn!r}; valid: {', '.join(config_lib.CNNS)}")
    if precision not in config_lib.PRECISIONS:
      raise ValueError(f"unknown precision {precision!r}; valid: "
                       f"{', '.join(config_lib.PRECISIONS)}")
    self.precision = precision
    self.arch, self.units, self.readout, self.encoder_kind = arch, int(units), readout, encoder
    self.init, self.cnn = init, cnn
    self.frame_shape = tuple(int(v) for v in frame_shape)
    self.frame_size = int(np.prod(self.frame_shape))
    self.input_size = self.frame_size + 1
    self.encoder = (ConvEncoder(self.frame_shape, kind=cnn, name="encoder") if encoder == "cnn"
                    else None)
    self.feature_size = (self.encoder.output_size if self.encoder else self.frame_size) + 1
    self.cell = CELLS[arch](units, init=init, name="cell")
    # init "authors": W_out randn / sqrt(units), b_out 0.01 randn (TriggerMNISTCloud.py L219-220)
    head_init = (dict(kernel_initializer=_normal(1.0 / math.sqrt(self.units)),
                      bias_initializer=_normal(0.01)) if init == "authors" else {})
    self.head = keras.layers.Dense(NUM_OUTPUTS, name="head", **head_init)
    self.state_size = self.cell.state_size
    self.cell.build((None, self.feature_size))
    self.head.build((None, self.units))
    if self.encoder is not None:
      self.encoder.build((None, self.frame_size))
    # Training runs with a noise bank set this (train.Run): a setting of the run, not of the
    # network, so it is not in get_config and an exported model never uses it.
    self.dedup_frames = False
    self.speed_weight = 0.0
    self.loss_norm, self.log_eps, self.mask = "weights", 0.0, "hard"  # see compile
    self.speed_targets = None          # see enable_speed_penalty
    self.speed_target_weights = None
    self.speed_tracker = keras.metrics.Mean(name="speed_sq")
    self.loss_tracker = keras.metrics.Mean(name="loss")
    self.report_acc = keras.metrics.Mean(name="report_acc")
    self.null_acc = keras.metrics.Mean(name="null_acc")
    self.class_acc = [keras.metrics.Mean(name=f"class_{c}_acc")
                      for c in range(config_lib.NUM_CLASSES)]

  # -- dynamics -------------------------------------------------------------------------------

  def encode(self, inputs, low_precision=False, dedup=False):
    """Raw inputs [..., frame_size + 1] -> cell input features [..., feature_size].

    `dedup`: the CNN encodes each distinct frame once and the copies share its features (the
    same features and gradients as encoding every frame; fewer FLOPs when frames repeat, as
    with a noise bank). Uses tf.unique over rows, which XLA cannot compile.
    """
    if self.encoder is None:
      return inputs
    lead = tf.shape(inputs)[:-1]
    frames = tf.reshape(inputs[..., :-1], [-1, self.frame_size])
    if dedup:
      distinct, index = tf.raw_ops.UniqueV2(x=frames, axis=tf.constant([0], tf.int64))
      feats = tf.gather(self.encoder(distinct, low_precision=low_precision), index)
    else:
      feats = self.encoder(frames, low_precision=low_precision)
    feats = tf.reshape(feats, tf.concat([lead, [self.encoder.output_size]], 0))
    return tf.concat([feats, inputs[..., -1:]], axis=-1)

  def transition(self, state, features):
    """F(s, x): next state [batch, state_size] from state and encoded features [batch, feat]."""
    return self.cell.step(self.cell.project(features), state)

  def step(self, state, inputs):
    """One time step from raw inputs [batch, frame_size + 1] -> (next state, logits)."""
    new_state = self.transition(state, self.encode(inputs))
    return new_state, self.logits(new_state)

  def to_dynamics(self):
    """This network as a haviv_tf.dynamics.Dynamics: the transition on encoded features (h in
    [-1, 1], an LSTM's c free). The library's adapter for `as_dynamics(model)`."""
    u = self.units
    lo = np.full([self.state_size], -np.inf, np.float32)
    lo[:u] = -1.0
    hi = -lo
    hi[:u] = 1.0
    return dynamics_lib.Dynamics(
        self.cell.step, self.state_size, self.feature_size, project=self.cell.project,
        speed_coordinates=self.cell.speed_coordinates, bounds=(lo, hi),
        name=f"DelayedClassifier({self.arch})")

  def logits(self, state):
    """Read-out logits [..., 11] from states [..., state_size]."""
    z = self.head(self.cell.hidden(state))
    return tf.sigmoid(z) if self.readout == "sigmoid" else z

  def initial_state(self, batch_size):
    return tf.zeros([batch_size, self.state_size])

  def run(self, inputs, initial_state=None, low_precision=False, dedup=False):
    """States [batch, time, state_size] for raw inputs [batch, time, frame_size + 1].

    `low_precision`: the front end (input projection; CIFAR-10: the CNN) in bfloat16; the
    recurrence and the states are float32 either way. `dedup`: see `encode`.
    """
    xp = self.cell.project(self.encode(inputs, low_precision, dedup), low_precision)
    batch = tf.shape(inputs)[0]
    state = self.initial_state(batch) if initial_state is None else initial_state
    length = inputs.shape[1]
    if length is not None and length <= _UNROLL_MAX:
      states = []
      for t in range(length):
        state = self.cell.step(xp[:, t], state)
        states.append(state)
      return tf.stack(states, axis=1)
    states = tf.scan(lambda s, x: self.cell.step(x, s), tf.transpose(xp, [1, 0, 2]),
                     initializer=state)
    return tf.transpose(states, [1, 0, 2])

  def call(self, inputs, training=False):
    """(logits, states). Training steps of a "mixed_bfloat16" model run the front end in
    bfloat16, and those of a model with `dedup_frames` encode each distinct frame once; every
    other call (evaluation, analysis, export) runs in float32, frame by frame."""
    states = self.run(inputs, low_precision=training and self.precision == "mixed_bfloat16",
                      dedup=training and self.dedup_frames and self.encoder is not None)
    return self.logits(states), states

  # -- training -------------------------------------------------------------------------------

  def compile(self, speed_weight=0.0, loss_norm="weights", log_eps=0.0, mask="hard", **kwargs):
    """`speed_weight` (a Python float, traced once) is used by the regularised train_step;
    `loss_norm`, `log_eps` and `mask` (Config's fields) define the task loss
    (losses.masked_null_label)."""
    super().compile(**kwargs)
    self.speed_weight = float(speed_weight)
    self.loss_norm, self.log_eps, self.mask = loss_norm, float(log_eps), mask

  def enable_speed_penalty(self, num_targets: int):
    """Creates the penalty's target variables (before any checkpoint is built or restored).

    speed_targets [num_targets, state_size] and speed_target_weights [num_targets] (1 for a
    live target, 0 for a class without one) are non-trainable: the targets stay fixed within a
    step (and, for fine-tuning, for the whole run); they are saved with the model.
    """
    if self.speed_targets is not None:
      raise ValueError("the speed penalty is already enabled")
    self.speed_targets = tf.Variable(tf.zeros([num_targets, self.state_size]), trainable=False,
                                     name="speed_targets")
    self.speed_target_weights = tf.Variable(tf.zeros([num_targets]), trainable=False,
                                            name="speed_target_weights")

  def set_speed_targets(self, states, weights):
    """Assigns targets [K, state_size] (NaN rows allowed where the weight is 0) and weights [K]."""
    states = np.asarray(states, np.float32)
    weights = np.asarray(weights, np.float32)
    if states.shape != tuple(self.speed_targets.shape) or weights.shape != (states.shape[0],):
      raise ValueError(f"speed targets must be {tuple(self.speed_targets.shape)} with "
                       f"[{self.speed_targets.shape[0]}] weights, got {states.shape} and "
                       f"{weights.shape}")
    states = np.where(weights[:, None] > 0, np.nan_to_num(states), 0.0)
    self.speed_targets.assign(states)
    self.speed_target_weights.assign(weights)

  def speed_penalty(self, noise_frames):
    """sum_k w_k ||F(s_k, x_k) - s_k||^2 at the targets s_k with noise frames x_k (trigger off).

    Args:
      noise_frames: [K, frame_size] one frame per target.

    Returns:
      (penalty, mean squared speed over the live targets), scalars.
    """
    k = tf.shape(noise_frames)[0]
    frames = tf.concat([noise_frames, tf.zeros([k, 1], noise_frames.dtype)], axis=-1)
    targets = tf.stop_gradient(self.speed_targets)
    sq = losses.speed_squared(self.cell, targets, self.transition(targets, self.encode(frames)))
    w = self.speed_target_weights
    return tf.reduce_sum(w * sq), tf.math.divide_no_nan(tf.reduce_sum(w * sq), tf.reduce_sum(w))

  def speed_penalty_shard(self, noise_frames, first_row):
    """The penalty over target rows [first_row, first_row + k) with their k noise frames.

    A replica holding shard r of the K noise frames passes first_row = r k; the shards' sums add
    up to `speed_penalty`'s penalty.

    Args:
      noise_frames: [k, frame_size].
      first_row: scalar int, the first target row the frames pair with.

    Returns:
      (sum_k w_k ||F(s_k, x_k) - s_k||^2, sum_k w_k) over the shard's rows, scalars.
    """
    k = tf.shape(noise_frames)[0]
    frames = tf.concat([noise_frames, tf.zeros([k, 1], noise_frames.dtype)], axis=-1)
    targets = tf.stop_gradient(tf.slice(self.speed_targets, [first_row, 0], [k, -1]))
    sq = losses.speed_squared(self.cell, targets, self.transition(targets, self.encode(frames)))
    w = tf.slice(self.speed_target_weights, [first_row], [k])
    return tf.reduce_sum(w * sq), tf.reduce_sum(w)

  @property
  def metrics(self):
    trackers = [self.loss_tracker, self.report_acc, self.null_acc] + self.class_acc
    return trackers + ([self.speed_tracker] if self.speed_targets is not None else [])

  def _update_metrics(self, loss, labels, logits, weights, class_mask):
    pred = tf.argmax(losses.mask_logits(logits, class_mask, self.mask), axis=-1,
                     output_type=tf.int32)
    labels = tf.cast(labels, tf.int32)
    live = tf.cast(weights, tf.float32) > 0
    correct = tf.cast(tf.equal(pred, labels), tf.float32)
    report = tf.logical_and(live, labels > 0)
    null = tf.logical_and(live, labels == 0)
    self.loss_tracker.update_state(loss)
    self.report_acc.update_state(correct, sample_weight=tf.cast(report, tf.float32))
    self.null_acc.update_state(correct, sample_weight=tf.cast(null, tf.float32))
    for c, tracker in enumerate(self.class_acc):
      tracker.update_state(correct, sample_weight=tf.cast(
          tf.logical_and(report, tf.equal(labels, c + 1)), tf.float32))

  def _logs(self):
    logs = {m.name: m.result() for m in self.metrics[:3]}
    if self.speed_targets is not None:
      logs["speed_sq"] = self.speed_tracker.result()
    return logs

  def _global_logs(self, ctx):
    """`_logs` over every replica's metric state, from inside a replica (ctx its context).

    The metrics' variables are sync-on-read sums, so read from outside the replicas (callbacks,
    fit's epoch logs) they already cover the global batch; within a replica they hold its own
    shard only, so the running totals and counts are all-reduced here.
    """
    trackers = self.metrics[:3] + ([self.speed_tracker] if self.speed_targets is not None else [])
    sums = ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                          [tf.stack([tf.convert_to_tensor(m.total), tf.convert_to_tensor(m.count)])
                           for m in trackers])
    return {m.name: tf.math.divide_no_nan(s[0], s[1]) for m, s in zip(trackers, sums)}

  @staticmethod
  def _replica_context():
    """The replica context when training runs on more than one replica, else None."""
    ctx = tf.distribute.get_replica_context()
    return ctx if ctx is not None and ctx.num_replicas_in_sync > 1 else None

  def task_loss(self, inputs, targets, training):
    logits, states = self(inputs, training=training)
    loss = losses.masked_null_label(targets["labels"], logits, targets["weights"],
                                    targets["class_mask"], self.loss_norm, self.log_eps, self.mask)
    return loss, logits, states

  def extra_loss(self, inputs, targets, states):
    """speed_weight x the speed penalty when it is enabled and the batch carries noise frames
    ("speed_noise"); zero for plain training. With speed_weight 0 the penalty is still computed
    (and logged as speed_sq), adding exactly 0 to the loss and its gradient.

    On more than one replica the batch holds replica r's shard of the K noise frames, which
    pair with target rows [r K/R, (r+1) K/R): the replica returns its share of the penalty (the
    shares add up to the whole) and logs the global mean squared speed."""
    del inputs, states
    if self.speed_targets is None or "speed_noise" not in targets:
      return 0.0
    ctx = self._replica_context()
    if ctx is not None:
      noise = tf.cast(targets["speed_noise"], tf.float32)
      first = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * tf.shape(noise)[0]
      share, weight = self.speed_penalty_shard(noise, first)
      total, total_weight = ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                                           [tf.stop_gradient(share), weight])
      self.speed_tracker.update_state(tf.math.divide_no_nan(total, total_weight))
      return self.speed_weight * share
    penalty, mean_sq = self.speed_penalty(tf.cast(targets["speed_noise"], tf.float32))
    self.speed_tracker.update_state(mean_sq)
    return self.speed_weight * penalty

  def train_step(self, data):
    ctx = self._replica_context()
    if ctx is not None:
      return self._distributed_train_step(data, ctx)
    inputs, targets = data[0], data[1]
    with tf.GradientTape() as tape:
      loss, logits, states = self.task_loss(inputs, targets, training=True)
      total = loss + self.extra_loss(inputs, targets, states)
    grads = tape.gradient(total, self.trainable_variables)
    self.optimizer.apply(grads, self.trainable_variables)
    self._update_metrics(total, targets["labels"], logits, targets["weights"],
                         targets["class_mask"])
    return self._logs()

  def _distributed_train_step(self, data, ctx):
    """train_step on replica ctx.replica_id_in_sync_group of R, holding one shard of the batch.

    The loss is sum w CE / N over the global batch (N: sum w, or batch x time x 11 with
    loss_norm "authors"). Each replica divides its own sum w CE by the global N (all-reduced, no
    gradient) and adds its share of the speed penalty, so the
    replicas' objectives add up to the single-device loss; the optimizer (Keras 3, TensorFlow
    backend) all-reduces the replicas' gradients with SUM before applying them, which is then the
    gradient of the global loss. Metrics update with the global loss and the local predictions;
    the logs are all-reduced (see `_global_logs`).
    """
    inputs, targets = data[0], data[1]
    weights = tf.cast(targets["weights"], tf.float32)
    with tf.GradientTape() as tape:
      logits, states = self(inputs, training=True)
      weighted_ce, norm = losses.masked_null_label_sums(
          targets["labels"], logits, weights, targets["class_mask"], self.loss_norm, self.log_eps,
          self.mask)
      total_weight = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(norm))
      share = tf.math.divide_no_nan(weighted_ce, total_weight)
      share = share + self.extra_loss(inputs, targets, states)
    grads = tape.gradient(share, self.trainable_variables)
    self.optimizer.apply(grads, self.trainable_variables)
    total = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(share))
    self._update_metrics(total, targets["labels"], logits, weights, targets["class_mask"])
    logs = self._global_logs(ctx)
    strategy = tf.distribute.get_strategy()
    if (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and strategy.extended._in_multi_worker_mode()):  # pylint: disable=protected-access
      # Keras 3's fit() reduces each log across workers with strategy.reduce(MEAN, v, axis=0),
      # which fails on scalars (tensorflow/tensorflow#72388); the logs are equal on every
      # replica, so with a length-1 axis that reduce gives back the same scalar.
      logs = {k: v[None] for k, v in logs.items()}
    return logs

  def test_step(self, data):
    inputs, targets = data[0], data[1]
    loss, logits, _ = self.task_loss(inputs, targets, training=False)
    self._update_metrics(loss, targets["labels"], logits, targets["weights"],
                         targets["class_mask"])
    return self._logs()

  def _maybe_symbolic_build(self, iterator=None, data_batch=None):
    """Keras 3 (TensorFlow backend) hook run by fit() before training; skipped under a strategy.

    Under a tf.distribute strategy Keras would reduce the first (nested) batch across replicas
    to build the model symbolically, which MultiWorkerMirroredStrategy cannot do for a nested
    batch and no strategy can for bool tensors. Nothing needs it here: every weight exists from
    __init__ and train_step uses no compiled loss or metrics.
    """
    if getattr(self, "_distribute_strategy", None) is None:
      return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
    if self.optimizer is not None and not self.optimizer.built:
      with self._distribute_strategy.scope():
        self.optimizer.build(self.trainable_variables)
    return None

  def per_class_accuracy(self):
    """{class: running report accuracy} from the trackers (empty classes give 0)."""
    return {c: float(m.result()) for c, m in enumerate(self.class_acc)}

  def get_config(self):
    return dict(arch=self.arch, units=self.units, frame_shape=list(self.frame_shape),
                readout=self.readout, encoder=self.encoder_kind, init=self.init, cnn=self.cnn,
                precision=self.precision,
                name=self.name)


def build(cfg: config_lib.Config, frame_shape) -> DelayedClassifier:
  """The network of `cfg` for frames of `frame_shape` (weights created, not compiled)."""
  return DelayedClassifier(arch=cfg.arch, units=cfg.units, frame_shape=frame_shape,
                           readout=cfg.readout,
                           encoder="cnn" if cfg.dataset == "cifar10" else "none",
                           init=cfg.init, cnn=cfg.cnn, precision=cfg.precision,
                           name="delayed_classifier")
