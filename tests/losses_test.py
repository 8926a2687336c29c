"""Tests for haviv_tf.task.losses: masked null-label cross-entropy and hidden-state speed."""

from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from haviv_tf.task import losses
from haviv_tf.models import cells
from haviv_tf.models import network

_B, _T, _C = 4, 6, 11


def _np_masked_null_label(labels, logits, weights, class_mask):
  """sum w * CE / sum w, with the softmax restricted to the classes in the mask."""
  logits = logits.astype(np.float64)
  z = np.where(class_mask[:, None, :], logits, -np.inf)
  z = z - z.max(-1, keepdims=True)
  log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
  ce = -np.take_along_axis(log_p, labels[..., None], axis=-1)[..., 0]
  return (weights * ce).sum() / weights.sum()


def _masks():
  """Named [batch, classes] masks; null (column 0) is always in play."""
  rng = np.random.default_rng(0)
  random = rng.random((_B, _C)) < 0.5
  random[:, 0] = True
  per_row = np.stack([np.arange(_C) <= n for n in (1, 3, 7, 10)])
  return dict(all=np.ones((_B, _C), bool), first_two_classes=np.tile(np.arange(_C) <= 2, (_B, 1)),
              per_row_vocabulary=per_row, random=random,
              null_only=np.tile(np.arange(_C) == 0, (_B, 1)))


def _batch(mask, seed=0, scale=3.0):
  """Labels drawn among the classes in play; weights as the trials make them."""
  rng = np.random.default_rng(seed)
  logits = (scale * rng.standard_normal((_B, _T, _C))).astype(np.float32)
  labels = np.zeros((_B, _T), np.int64)
  weights = np.ones((_B, _T), np.float32)
  for b in range(_B):
    t_max = _T - 2 * (b % 2)            # odd rows: the last two steps are past T_max
    t_a = rng.integers(t_max)
    labels[b, t_a] = rng.choice(np.flatnonzero(mask[b]))
    weights[b, t_a] = 20.0
    weights[b, t_max:] = 0.0
  return labels, logits, weights


class MaskedNullLabelTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(*[(name, name) for name in _masks()])
  def test_equals_the_numpy_formula(self, mask_name):
    mask = _masks()[mask_name]
    for seed in range(3):
      labels, logits, weights = _batch(mask, seed)
      got = losses.masked_null_label(labels, logits, weights, mask)
      self.assertEqual(got.dtype, tf.float32)
      self.assertEqual(got.shape, ())
      self.assertAllClose(got, _np_masked_null_label(labels, logits, weights, mask),
                          rtol=1e-5, atol=1e-6)

  def test_mask_changes_the_loss(self):
    masks = _masks()
    labels, logits, weights = _batch(masks["first_two_classes"])
    full = losses.masked_null_label(labels, logits, weights, masks["all"])
    masked = losses.masked_null_label(labels, logits, weights, masks["first_two_classes"])
    self.assertLess(float(masked), float(full))   # fewer competitors, higher probabilities

  def test_null_only_mask_with_null_labels_costs_nothing(self):
    mask = _masks()["null_only"]
    labels, logits, weights = _batch(mask)
    self.assertAllEqual(labels, np.zeros_like(labels))
    self.assertEqual(float(losses.masked_null_label(labels, logits, weights, mask)), 0.0)

  def test_is_normalised_by_the_total_weight(self):
    mask = _masks()["all"]
    labels, logits, weights = _batch(mask)
    a = losses.masked_null_label(labels, logits, weights, mask)
    b = losses.masked_null_label(labels, logits, 3.5 * weights, mask)
    self.assertAllClose(a, b)

  def test_hand_computed_value(self):
    # One step, two classes in play with logits (0, ln 3): p = (1/4, 3/4).
    logits = np.zeros((1, 2, _C), np.float32)
    logits[0, :, 1] = np.log(3.0)
    logits[0, :, 5] = 100.0                       # masked out: must not matter
    mask = np.zeros((1, _C), bool)
    mask[0, :2] = True
    labels = np.array([[0, 1]])
    weights = np.array([[1.0, 20.0]], np.float32)
    expected = (np.log(4.0) + 20 * np.log(4.0 / 3.0)) / 21.0
    self.assertAllClose(losses.masked_null_label(labels, logits, weights, mask), expected)

  def test_zero_total_weight_gives_zero_not_nan(self):
    mask = _masks()["all"]
    labels, logits, _ = _batch(mask)
    loss = losses.masked_null_label(labels, logits, np.zeros((_B, _T), np.float32), mask)
    self.assertEqual(float(loss), 0.0)

  def test_zero_weight_steps_do_not_count(self):
    mask = _masks()["all"]
    labels, logits, weights = _batch(mask)
    changed = logits.copy()
    changed[weights == 0] += 50.0 * np.random.default_rng(1).standard_normal(
        changed[weights == 0].shape).astype(np.float32)
    self.assertAllEqual(losses.masked_null_label(labels, logits, weights, mask),
                        losses.masked_null_label(labels, changed, weights, mask))


class KerasLossTest(tf.test.TestCase, parameterized.TestCase):
  """losses.MaskedNullLabel: the same numbers as the function, as a keras.losses.Loss."""

  @parameterized.parameters(("weights", 0.0, "hard"), ("authors", 1e-4, "authors"))
  def test_equals_the_function_and_its_sums(self, loss_norm, log_eps, mask):
    class_mask = _masks()["per_row_vocabulary"]
    labels, logits, weights = _batch(class_mask, seed=4)
    loss = losses.MaskedNullLabel(loss_norm, log_eps, mask)
    self.assertIsInstance(loss, keras.losses.Loss)
    y_true = dict(labels=labels, weights=weights, class_mask=class_mask,
                  speed_noise=np.zeros((2, 3), np.float32))   # other keys are ignored
    want = losses.masked_null_label(labels, logits, weights, class_mask, loss_norm, log_eps, mask)
    self.assertAllEqual(loss(y_true, tf.constant(logits)), want)
    num, den = loss.sums(y_true, tf.constant(logits))
    self.assertAllClose(num / den, want, rtol=1e-6)
    self.assertNotAllClose(loss(y_true, tf.constant(logits)),
                           losses.MaskedNullLabel()(y_true, tf.constant(logits))
                           if (loss_norm, mask) != ("weights", "hard") else want + 1.0)

  def test_config_round_trip_and_bad_settings(self):
    loss = losses.MaskedNullLabel("authors", 1e-4, "authors")
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    self.assertEqual((again.loss_norm, again.log_eps, again.mask), ("authors", 1e-4, "authors"))
    for bad in (dict(loss_norm="mean"), dict(mask="soft"), dict(log_eps=-1.0)):
      with self.assertRaises(ValueError):
        losses.MaskedNullLabel(**bad)
    with self.assertRaisesRegex(ValueError, "sample_weight"):
      loss(dict(labels=np.zeros((1, 2), np.int64), weights=np.ones((1, 2), np.float32),
                class_mask=np.ones((1, 11), bool)), tf.zeros((1, 2, 11)), sample_weight=[1.0])

  def test_compile_takes_the_loss_and_refuses_another(self):
    model = network.DelayedClassifier("gru", units=4, frame_shape=(2, 2, 1))
    loss = losses.MaskedNullLabel("authors", 1e-4, "authors")
    model.compile(optimizer="sgd", loss=loss)
    self.assertIs(model.loss, loss)
    with self.assertRaisesRegex(TypeError, "MaskedNullLabel"):
      model.compile(optimizer="sgd", loss="mse")


class MaskTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(*[(name, name) for name in _masks()])
  def test_masked_class_has_exactly_zero_probability(self, mask_name):
    mask = _masks()[mask_name]
    _, logits, _ = _batch(mask, scale=20.0)
    logits[..., 3] = 80.0                       # even a huge masked logit gets nothing
    p = tf.nn.softmax(losses.mask_logits(tf.constant(logits), mask)).numpy()
    off = np.broadcast_to(~mask[:, None, :], p.shape)
    self.assertTrue((p[off] == 0.0).all())
    self.assertAllClose(p.sum(-1), np.ones((_B, _T)))
    self.assertTrue((p[~off] >= 0).all())

  @parameterized.named_parameters(*[(name, name) for name in _masks() if name != "all"])
  def test_masked_class_gets_exactly_zero_gradient(self, mask_name):
    mask = _masks()[mask_name]
    labels, logits, weights = _batch(mask)
    logits = tf.constant(logits)
    with tf.GradientTape() as tape:
      tape.watch(logits)
      loss = losses.masked_null_label(labels, logits, weights, mask)
    grad = tape.gradient(loss, logits).numpy()
    off = np.broadcast_to(~mask[:, None, :], grad.shape)
    live = np.broadcast_to(weights[..., None] > 0, grad.shape)
    self.assertTrue((grad[off] == 0.0).all())
    self.assertTrue(np.isfinite(grad).all())
    if mask.sum(-1).min() > 1:                   # (with null alone, p = 1 and CE is flat)
      self.assertTrue((grad[~off & live] != 0.0).any())
    self.assertTrue((grad[~live] == 0.0).all())  # zero-weight steps pass no gradient either

  def test_mask_logits_keeps_live_logits_and_sets_masked_ones(self):
    mask = _masks()["random"]
    _, logits, _ = _batch(mask)
    got = losses.mask_logits(logits, mask).numpy()
    live = np.broadcast_to(mask[:, None, :], got.shape)
    self.assertAllEqual(got[live], logits[live])
    self.assertTrue((got[~live] == np.float32(losses.MASKED_LOGIT)).all())


class SpeedSquaredTest(tf.test.TestCase, parameterized.TestCase):

  def test_gru_speed_is_the_squared_distance_between_states(self):
    rng = np.random.default_rng(3)
    cell = cells.GRUCell(5)
    s, s2 = (rng.standard_normal((7, 5)).astype(np.float32) for _ in range(2))
    got = losses.speed_squared(cell, s, s2)
    self.assertEqual(got.shape, (7,))
    self.assertAllClose(got, ((s2 - s) ** 2).sum(-1), rtol=1e-6)

  def test_lstm_speed_uses_h_and_tanh_c(self):
    rng = np.random.default_rng(4)
    u = 5
    cell = cells.LSTMCell(u)
    s, s2 = (3.0 * rng.standard_normal((7, 2 * u)).astype(np.float32) for _ in range(2))
    expected = (((s2[:, :u] - s[:, :u]) ** 2).sum(-1)
                + ((np.tanh(s2[:, u:]) - np.tanh(s[:, u:])) ** 2).sum(-1))
    got = losses.speed_squared(cell, s, s2)
    self.assertEqual(got.shape, (7,))
    self.assertAllClose(got, expected, rtol=1e-5)
    self.assertNotAllClose(got, ((s2 - s) ** 2).sum(-1))   # c enters through tanh only

  @parameterized.parameters("gru", "lstm")
  def test_a_fixed_point_has_zero_speed(self, arch):
    cell = cells.CELLS[arch](4)
    s = np.random.default_rng(5).standard_normal((3, cell.state_size)).astype(np.float32)
    self.assertAllEqual(losses.speed_squared(cell, s, s), np.zeros(3))

  @parameterized.parameters("gru", "lstm")
  def test_speed_of_a_real_transition(self, arch):
    cell = cells.CELLS[arch](6)
    cell.build((None, 3))
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    s = 0.5 * rng.standard_normal((5, cell.state_size)).astype(np.float32)
    new = cell.step(tf.constant(s), cell.project(tf.constant(x))).numpy()
    u = 6
    if arch == "gru":
      expected = ((new - s) ** 2).sum(-1)
    else:
      expected = (((new[:, :u] - s[:, :u]) ** 2).sum(-1)
                  + ((np.tanh(new[:, u:]) - np.tanh(s[:, u:])) ** 2).sum(-1))
    self.assertAllClose(losses.speed_squared(cell, s, new), expected, rtol=1e-5)
    self.assertTrue((expected > 0).all())


if __name__ == "__main__":
  tf.test.main()
