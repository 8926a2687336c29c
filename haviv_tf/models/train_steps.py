"""The training side of DelayedClassifier: the task loss settings, the speed penalty at fixed
targets, the metrics, and one train step for one device or several replicas.

A mixin, so that the network's checkpoints keep their layout (every variable an attribute of the
one Keras model, as before the split); the private Keras APIs it relies on are in
keras_private.py.
"""

import keras
import numpy as np
import tensorflow as tf

from haviv_tf.base import config as config_lib
from haviv_tf.models import keras_private
from haviv_tf.task import losses


class TrainSteps:
  """Mixin of DelayedClassifier (a keras.Model with `cell`, `encode`, `transition`, `state_size`):
  compile() settings, the speed penalty, metric trackers, train_step and test_step."""

  def init_training_state(self):
    """Creates the training settings and metric trackers (called by the model's __init__)."""
    self.speed_weight = 0.0
    self.loss = losses.MaskedNullLabel()   # see compile
    self.speed_targets = None          # see enable_speed_penalty
    self.speed_target_weights = None
    self.speed_tracker = keras.metrics.Mean(name="speed_sq")
    self.loss_tracker = keras.metrics.Mean(name="loss")
    self.report_acc = keras.metrics.Mean(name="report_acc")
    self.null_acc = keras.metrics.Mean(name="null_acc")
    self.class_acc = [keras.metrics.Mean(name=f"class_{c}_acc")
                      for c in range(config_lib.NUM_CLASSES)]

  def compile(self, optimizer="rmsprop", loss=None, speed_weight=0.0, **kwargs):
    """Keras' compile with the task loss and the speed penalty's weight.

    Args:
      optimizer: as Keras'.
      loss: the task loss, a `losses.MaskedNullLabel` (default: its defaults;
        `MaskedNullLabel.from_settings(cfg)` is a Config's). train_step and test_step call it
        themselves: Keras' compiled loss, which would expect one target per output, is not
        built.
      speed_weight: μ of the speed penalty (a Python float, traced once).
      **kwargs: Keras' (jit_compile, steps_per_execution, ...); no `metrics`, the model keeps
        its own trackers.
    """
    loss = losses.MaskedNullLabel() if loss is None else loss
    if not isinstance(loss, losses.MaskedNullLabel):
      raise TypeError(f"loss must be a haviv_tf MaskedNullLabel, got {type(loss).__name__}")
    super().compile(optimizer=optimizer, **kwargs)
    self.loss = loss
    self.speed_weight = float(speed_weight)

  def get_compile_config(self):
    """Keras' compile config plus the task loss and the speed weight, so that a model saved
    with `model.save` loads (`keras.saving.load_model`) compiled as it was."""
    config = super().get_compile_config()
    if config:
      config = dict(config, loss=keras.losses.serialize(self.loss),
                    speed_weight=self.speed_weight)
    return config

  def compile_from_config(self, config):
    """Compiles a model that keras.saving loads with the settings `get_compile_config` saved
    (a file written before the loss was recorded: the default loss)."""
    config = dict(config)
    speed_weight = float(config.pop("speed_weight", 0.0))
    config = keras.saving.deserialize_keras_object(config)
    self.compile(speed_weight=speed_weight, **config)
    if self.built:
      self.optimizer.build(self.trainable_variables)

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
    penalty, weight = weighted_speed_squared(self, self.speed_targets, self.speed_target_weights,
                                             noise_frames)
    return penalty, tf.math.divide_no_nan(penalty, weight)

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
    return weighted_speed_squared(self, tf.slice(self.speed_targets, [first_row, 0], [k, -1]),
                                  tf.slice(self.speed_target_weights, [first_row], [k]),
                                  noise_frames)

  @property
  def metrics(self):
    trackers = [self.loss_tracker, self.report_acc, self.null_acc] + self.class_acc
    return trackers + ([self.speed_tracker] if self.speed_targets is not None else [])

  def _logs(self):
    logs = {m.name: m.result() for m in self.metrics[:3]}
    if self.speed_targets is not None:
      logs["speed_sq"] = self.speed_tracker.result()
    return logs

  def task_loss(self, inputs, targets, training):
    logits, states = self(inputs, training=training)
    loss = self.loss(targets, logits)
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
    ctx = _replica_context()
    if ctx is not None:
      return self.speed_weight * _replica_penalty_share(self, ctx, targets["speed_noise"])
    penalty, mean_sq = self.speed_penalty(tf.cast(targets["speed_noise"], tf.float32))
    self.speed_tracker.update_state(mean_sq)
    return self.speed_weight * penalty

  def train_step(self, data):
    """One optimizer step on a batch, on one device or on replica r of R holding one shard.

    The loss is sum w CE / N over the global batch (N: sum w, or batch x time x 11 with
    loss_norm "authors"). Each replica divides its own sum w CE by the global N (all-reduced, no
    gradient) and adds its share of the speed penalty, so the replicas' objectives add up to the
    single-device loss; the optimizer (Keras 3, TensorFlow backend) all-reduces the replicas'
    gradients with SUM before applying them, which is then the gradient of the global loss.
    Metrics update with the global loss and the local predictions; on several replicas the logs
    are all-reduced (see `_global_logs`). On one device every all-reduce is the identity.
    """
    ctx = _replica_context()
    reduce_sum = ((lambda v: ctx.all_reduce(tf.distribute.ReduceOp.SUM, v)) if ctx is not None
                  else (lambda v: v))
    inputs, targets = data[0], data[1]
    weights = tf.cast(targets["weights"], tf.float32)
    with tf.GradientTape() as tape:
      logits, states = self(inputs, training=True)
      weighted_ce, norm = self.loss.sums(targets, logits)
      share = tf.math.divide_no_nan(weighted_ce, reduce_sum(tf.stop_gradient(norm)))
      share = share + self.extra_loss(inputs, targets, states)
    grads = tape.gradient(share, self.trainable_variables)
    self.optimizer.apply(grads, self.trainable_variables)
    total = reduce_sum(tf.stop_gradient(share))
    _update_metrics(self, total, targets["labels"], logits, weights, targets["class_mask"])
    if ctx is None:
      return self._logs()
    return keras_private.multi_worker_logs(_global_logs(self, ctx))

  def test_step(self, data):
    inputs, targets = data[0], data[1]
    loss, logits, _ = self.task_loss(inputs, targets, training=False)
    _update_metrics(self, loss, targets["labels"], logits, targets["weights"],
                         targets["class_mask"])
    return self._logs()

  def _maybe_symbolic_build(self, iterator=None, data_batch=None):
    """Keras' fit() hook, skipped under a strategy (see keras_private.maybe_symbolic_build)."""
    return keras_private.maybe_symbolic_build(self, super()._maybe_symbolic_build, iterator,
                                              data_batch)

  def per_class_accuracy(self):
    """{class: running report accuracy} from the trackers (empty classes give 0)."""
    return {c: float(m.result()) for c, m in enumerate(self.class_acc)}


def weighted_speed_squared(model, targets, weights, noise_frames):
  """(sum_k w_k ||F(s_k, x_k) - s_k||^2, sum_k w_k) of `model` at targets s_k [K, state_size]
  (no gradient) with weights w_k [K] and noise frames x_k [K, frame_size] (trigger off)."""
  k = tf.shape(noise_frames)[0]
  frames = tf.concat([noise_frames, tf.zeros([k, 1], noise_frames.dtype)], axis=-1)
  targets = tf.stop_gradient(targets)
  sq = losses.speed_squared(model.cell, targets, model.transition(targets, model.encode(frames)))
  return tf.reduce_sum(weights * sq), tf.reduce_sum(weights)


def _replica_penalty_share(model, ctx, speed_noise):
  """Replica ctx's share of the speed penalty (its shard of the noise frames, paired with its
  rows of the targets); logs the global mean squared speed in model.speed_tracker."""
  noise = tf.cast(speed_noise, tf.float32)
  first = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * tf.shape(noise)[0]
  share, weight = model.speed_penalty_shard(noise, first)
  total, total_weight = ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                                       [tf.stop_gradient(share), weight])
  model.speed_tracker.update_state(tf.math.divide_no_nan(total, total_weight))
  return share


def _global_logs(model, ctx):
  """`_logs` over every replica's metric state, from inside a replica (ctx its context).

  The metrics' variables are sync-on-read sums, so read from outside the replicas (callbacks,
  fit's epoch logs) they already cover the global batch; within a replica they hold its own
  shard only, so the running totals and counts are all-reduced here.
  """
  trackers = model.metrics[:3] + ([model.speed_tracker] if model.speed_targets is not None else [])
  sums = ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                        [tf.stack([tf.convert_to_tensor(m.total), tf.convert_to_tensor(m.count)])
                         for m in trackers])
  return {m.name: tf.math.divide_no_nan(s[0], s[1]) for m, s in zip(trackers, sums)}


def _replica_context():
  """The replica context when training runs on more than one replica, else None."""
  ctx = tf.distribute.get_replica_context()
  return ctx if ctx is not None and ctx.num_replicas_in_sync > 1 else None


def _update_metrics(model, loss, labels, logits, weights, class_mask):
  """Updates `model`'s loss and accuracy trackers with a batch's loss and predictions."""
  pred = tf.argmax(losses.mask_logits(logits, class_mask, model.loss.mask), axis=-1,
                   output_type=tf.int32)
  labels = tf.cast(labels, tf.int32)
  live = tf.cast(weights, tf.float32) > 0
  correct = tf.cast(tf.equal(pred, labels), tf.float32)
  report = tf.logical_and(live, labels > 0)
  null = tf.logical_and(live, labels == 0)
  model.loss_tracker.update_state(loss)
  model.report_acc.update_state(correct, sample_weight=tf.cast(report, tf.float32))
  model.null_acc.update_state(correct, sample_weight=tf.cast(null, tf.float32))
  for c, tracker in enumerate(model.class_acc):
    tracker.update_state(correct, sample_weight=tf.cast(
        tf.logical_and(report, tf.equal(labels, c + 1)), tf.float32))
