"""DelayedClassifier: the paper's network (optional CNN front end, a recurrent cell, a read-out)
and its dynamics; its training steps are models/train_steps.py's."""

import math

import keras
import numpy as np
import tensorflow as tf

from haviv_tf import dynamics as dynamics_lib
from haviv_tf.base import config as config_lib
from haviv_tf.models import cells
from haviv_tf.models import cnn as cnn_lib
from haviv_tf.models import train_steps

NUM_OUTPUTS = config_lib.NUM_OUTPUTS
_UNROLL_MAX = 64  # sequences up to this length are unrolled in the graph (faster on CPU)


@keras.saving.register_keras_serializable(package="haviv_tf")
class DelayedClassifier(train_steps.TrainSteps, keras.Model):
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
    if arch not in cells.CELLS:
      raise ValueError(f"unknown arch {arch!r}; valid: {', '.join(cells.CELLS)}")
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
    self.encoder = (cnn_lib.ConvEncoder(self.frame_shape, kind=cnn, name="encoder")
                    if encoder == "cnn"
                    else None)
    self.feature_size = (self.encoder.output_size if self.encoder else self.frame_size) + 1
    self.cell = cells.CELLS[arch](units, init=init, name="cell")
    # init "authors": W_out randn / sqrt(units), b_out 0.01 randn (TriggerMNISTCloud.py L219-220)
    head_init = (dict(kernel_initializer=cells.normal_initializer(1.0 / math.sqrt(self.units)),
                      bias_initializer=cells.normal_initializer(0.01))
                 if init == "authors" else {})
    self.head = keras.layers.Dense(NUM_OUTPUTS, name="head", **head_init)
    self.state_size = self.cell.state_size
    self.cell.build((None, self.feature_size))
    self.head.build((None, self.units))
    if self.encoder is not None:
      self.encoder.build((None, self.frame_size))
    # Training runs with a noise bank set this (training.checkpoints.Run): a setting of the
    # run, not of the network, so it is not in get_config and an exported model never uses it.
    self.dedup_frames = False
    self.init_training_state()

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
    return self.cell.step(state, self.cell.project(features))

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
    dyn = dynamics_lib.Dynamics(
        self.cell.step, self.state_size, self.feature_size, project=self.cell.project,
        speed_coordinates=self.cell.speed_coordinates, bounds=(lo, hi),
        name=f"DelayedClassifier({self.arch})")
    if self.arch == "lstm":
      dyn.lstm_units = u  # the state is [h, c] (dynamics.save_step records the layout)
    return dyn

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
        state = self.cell.step(state, xp[:, t])
        states.append(state)
      return tf.stack(states, axis=1)
    states = tf.scan(self.cell.step, tf.transpose(xp, [1, 0, 2]),
                     initializer=state)
    return tf.transpose(states, [1, 0, 2])

  def call(self, inputs, training=False):
    """(logits, states). Training steps of a "mixed_bfloat16" model run the front end in
    bfloat16, and those of a model with `dedup_frames` encode each distinct frame once; every
    other call (evaluation, analysis, export) runs in float32, frame by frame."""
    states = self.run(inputs, low_precision=training and self.precision == "mixed_bfloat16",
                      dedup=training and self.dedup_frames and self.encoder is not None)
    return self.logits(states), states

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
