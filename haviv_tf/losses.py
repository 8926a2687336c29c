"""Masked null-label cross-entropy and hidden-state speed."""

import tensorflow as tf

MASKED_LOGIT = -1e9  # exp() underflows to exactly 0 in float32: no probability, no gradient


def mask_logits(logits, class_mask):
  """Sets the logits of classes not shown to MASKED_LOGIT.

  Args:
    logits: [batch, time, classes] float.
    class_mask: [batch, classes] bool, True for the classes in play (null included).

  Returns:
    [batch, time, classes] logits; tf.where passes zero gradient to masked entries.
  """
  mask = tf.cast(class_mask, tf.bool)[:, None, :]
  return tf.where(mask, logits, tf.cast(MASKED_LOGIT, logits.dtype))


def masked_null_label(labels, logits, weights, class_mask):
  """Weighted cross-entropy over all steps, normalised by the total weight.

  loss = sum_{b,t} w[b,t] * CE(labels[b,t], softmax(masked logits[b,t])) / sum_{b,t} w[b,t]

  Args:
    labels: [batch, time] int (0 = null).
    logits: [batch, time, classes] float.
    weights: [batch, time] float (report weight at t_a, 1 at null steps < T_max, 0 after).
    class_mask: [batch, classes] bool.

  Returns:
    scalar float32.
  """
  weighted_ce, total_weight = masked_null_label_sums(labels, logits, weights, class_mask)
  return tf.math.divide_no_nan(weighted_ce, total_weight)


def masked_null_label_sums(labels, logits, weights, class_mask):
  """The numerator and denominator of `masked_null_label`: (sum w * CE, sum w), scalars.

  A replica holding one shard of a global batch divides its sum w * CE by the global sum w.
  """
  ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.cast(labels, tf.int32), logits=mask_logits(tf.cast(logits, tf.float32), class_mask))
  weights = tf.cast(weights, tf.float32)
  return tf.reduce_sum(ce * weights), tf.reduce_sum(weights)


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
