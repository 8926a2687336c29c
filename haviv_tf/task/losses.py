"""Masked null-label cross-entropy, its trivial-solution bound, and hidden-state speed."""

import keras
import numpy as np
import tensorflow as tf

from haviv_tf.base import config as config_lib

MASKED_LOGIT = -1e9  # exp() underflows to exactly 0 in float32: no probability, no gradient
AUTHORS_MASK = -1000.0  # the authors' factor on the logits of classes not shown (TMC L62-63, L290)
NUM_OUTPUTS = config_lib.NUM_OUTPUTS


def mask_logits(logits, class_mask, mask="hard"):
  """Masks the logits of classes not shown.

  Args:
    logits: [batch, time, classes] float.
    class_mask: [batch, classes] bool, True for the classes in play (null included).
    mask: "hard": masked logits become MASKED_LOGIT (tf.where: zero gradient to them);
      "authors": masked logits are multiplied by AUTHORS_MASK, as the authors' code
      (softmax(logits * W), W = -1000 for classes not shown): a sigmoid logit s becomes -1000 s,
      whose probability is negligible but whose gradient is not cut.

  Returns:
    [batch, time, classes] logits.
  """
  keep = tf.cast(class_mask, tf.bool)[:, None, :]
  if mask == "authors":
    return logits * tf.where(keep, tf.ones([], logits.dtype), tf.cast(AUTHORS_MASK, logits.dtype))
  return tf.where(keep, logits, tf.cast(MASKED_LOGIT, logits.dtype))


def masked_null_label(labels, logits, weights, class_mask, loss_norm="weights", log_eps=0.0,
                      mask="hard"):
  """Weighted cross-entropy over all steps, normalised.

  loss = sum_{b,t} w[b,t] * CE(labels[b,t], softmax(masked logits[b,t])) / N
  with N = sum_{b,t} w[b,t] (loss_norm "weights") or batch x time x 11 (loss_norm "authors": the
  authors' tf.reduce_mean over their [batch, 11, time] label tensor, TMC L298). CE is
  -log p (log_eps 0) or -log(p + log_eps) (the authors' TINY = 1e-4).

  Args:
    labels: [batch, time] int (0 = null).
    logits: [batch, time, classes] float.
    weights: [batch, time] float (report weight at t_a, 1 at null steps < T_max, 0 after).
    class_mask: [batch, classes] bool.
    loss_norm, log_eps, mask: as Config's fields of these names.

  Returns:
    scalar float32.
  """
  weighted_ce, norm = masked_null_label_sums(labels, logits, weights, class_mask, loss_norm,
                                             log_eps, mask)
  return tf.math.divide_no_nan(weighted_ce, norm)


def masked_null_label_sums(labels, logits, weights, class_mask, loss_norm="weights",
                           log_eps=0.0, mask="hard"):
  """The numerator and denominator of `masked_null_label`: (sum w * CE, N), scalars.

  Both are sums over the batch, so a replica holding one shard of a global batch divides its
  sum w * CE by the all-reduced N.
  """
  labels = tf.cast(labels, tf.int32)
  masked = mask_logits(tf.cast(logits, tf.float32), class_mask, mask)
  if log_eps:
    p = tf.reduce_sum(tf.nn.softmax(masked, axis=-1)
                      * tf.one_hot(labels, masked.shape[-1], dtype=tf.float32), axis=-1)
    ce = -tf.math.log(p + tf.cast(log_eps, tf.float32))
  else:
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=masked)
  weights = tf.cast(weights, tf.float32)
  if loss_norm == "authors":
    norm = tf.cast(tf.size(weights), tf.float32) * float(masked.shape[-1])
  else:
    norm = tf.reduce_sum(weights)
  return tf.reduce_sum(ce * weights), norm


TARGET_KEYS = ("labels", "weights", "class_mask")


@keras.saving.register_keras_serializable(package="haviv_tf")
class MaskedNullLabel(keras.losses.Loss):
  """The task loss as a Keras loss, handed to `DelayedClassifier.compile(loss=...)`.

  `y_true` is the trial batch's targets, a dict with "labels" [batch, time] (0 = null),
  "weights" [batch, time] and "class_mask" [batch, classes] (other keys are ignored); `y_pred`
  the logits [batch, time, classes]. The value is `masked_null_label`'s, already reduced over
  the batch (reduction None): sum w CE / N. `sums` gives its numerator and denominator, which
  a replica of a distributed train step needs separately.

  Args:
    loss_norm: "weights" (N = sum w) or "authors" (N = batch x time x classes, TMC L298).
    log_eps: 0 (CE = -log p) or the authors' TINY = 1e-4 (CE = -log(p + log_eps)).
    mask: "hard" or "authors" (see `mask_logits`); the metrics' predictions use it too.
  """

  def __init__(self, loss_norm="weights", log_eps=0.0, mask="hard", name="masked_null_label",
               **kwargs):
    if loss_norm not in config_lib.LOSS_NORMS:
      raise ValueError(f"loss_norm must be one of {config_lib.LOSS_NORMS}, got {loss_norm!r}")
    if mask not in config_lib.MASKS:
      raise ValueError(f"mask must be one of {config_lib.MASKS}, got {mask!r}")
    if not (isinstance(log_eps, (int, float)) and 0.0 <= log_eps < 1.0):
      raise ValueError(f"log_eps must be a number in [0, 1), got {log_eps!r}")
    kwargs.pop("reduction", None)
    super().__init__(name=name, reduction=None, **kwargs)
    self.loss_norm, self.log_eps, self.mask = loss_norm, float(log_eps), mask

  def sums(self, y_true, y_pred):
    """(sum w CE, N) of the batch: see `masked_null_label_sums`."""
    return masked_null_label_sums(y_true["labels"], y_pred, y_true["weights"],
                                  y_true["class_mask"], self.loss_norm, self.log_eps, self.mask)

  def call(self, y_true, y_pred):
    weighted_ce, norm = self.sums(y_true, y_pred)
    return tf.math.divide_no_nan(weighted_ce, norm)

  def __call__(self, y_true, y_pred, sample_weight=None):
    if sample_weight is not None:
      raise ValueError("MaskedNullLabel weighs each step by y_true['weights'], not sample_weight")
    return super().__call__({k: y_true[k] for k in TARGET_KEYS}, y_pred)

  def get_config(self):
    return dict(loss_norm=self.loss_norm, log_eps=self.log_eps, mask=self.mask, name=self.name)

  @classmethod
  def from_settings(cls, cfg):
    """The loss of a Config (or anything with loss_norm, log_eps and mask)."""
    return cls(cfg.loss_norm, cfg.log_eps, cfg.mask)


def trivial_loss(num_classes, t_max, seq_len, report_weight=20.0, null_weight=1.0,
                 readout="sigmoid", loss_norm="weights", log_eps=0.0):
  """The lowest expected loss of a network that gives the same output at every step.

  Such a network ignores its input: one null logit l0 and (by symmetry) one logit l for each
  of the `num_classes` classes shown (classes not shown get no probability). A trial then costs
  w_r (-log q + eps) at its report step, w_r = report_weight - 1 + null_weight, and
  null_weight (-log q0 + eps) at each of its t_max - 1 null steps, q0 = e^d / (e^d + K),
  q = 1 / (e^d + K), d = l0 - l. The sigmoid read-out bounds d to [-1, 1]; the linear one
  does not. Minimised over d and divided by the normaliser of `loss_norm`.

  Returns:
    (loss, d at the minimum) as floats.
  """
  k, n0 = float(num_classes), float(t_max - 1)
  w_r = float(report_weight) - 1.0 + float(null_weight)
  norm = (w_r + n0 * null_weight) if loss_norm == "weights" else NUM_OUTPUTS * float(seq_len)
  lo, hi = (-1.0, 1.0) if readout == "sigmoid" else (-40.0, 40.0)

  def loss(d):
    z = np.exp(d) + k
    return (w_r * -np.log(1.0 / z + log_eps) + n0 * null_weight * -np.log(np.exp(d) / z + log_eps)) / norm

  d = np.linspace(lo, hi, 4001)
  for _ in range(3):  # refine around the grid minimum (the loss is unimodal in d)
    i = int(np.argmin(loss(d)))
    step = d[1] - d[0]
    d = np.linspace(max(lo, d[i] - step), min(hi, d[i] + step), 401)
  i = int(np.argmin(loss(d)))
  return float(loss(d[i])), float(d[i])


def speed_squared(cell, state, new_state):
  """||F(s, x) - s||^2 per row; for an LSTM state (h, c) the cell term uses tanh(c), as the paper.

  Args:
    cell: a models cell (GRUCell or LSTMCell).
    state, new_state: [batch, state_size] float.

  Returns:
    [batch] float32.
  """
  return tf.reduce_sum(tf.square(cell.speed_coordinates(new_state)
                                 - cell.speed_coordinates(state)), axis=-1)
