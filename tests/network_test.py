"""Tests for haviv_tf.models.network: cells against NumPy, DelayedClassifier paths, saving, learning."""

import dataclasses
import os
import shutil
import tempfile
import warnings
from unittest import mock

from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from haviv_tf.base import config
from haviv_tf.task import curricula
from haviv_tf.task import datasets
from haviv_tf.task import losses
from haviv_tf.models import cells
from haviv_tf.models import cnn
from haviv_tf.models import network
from haviv_tf.task import trials


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _np_gru_step(x, h, kernel, recurrent_kernel, bias):
  """z, r = sigmoid(W x + U h + b); c = tanh(W_h x + U_h (r h) + b_h); h' = (1 - z) h + z c."""
  u = h.shape[-1]
  a = x @ kernel + bias
  zr = _sigmoid(a[:, :2 * u] + h @ recurrent_kernel[:, :2 * u])
  z, r = zr[:, :u], zr[:, u:]
  c = np.tanh(a[:, 2 * u:] + (r * h) @ recurrent_kernel[:, 2 * u:])
  return (1.0 - z) * h + z * c


def _np_lstm_step(x, state, kernel, recurrent_kernel, bias):
  """Gates (i, g, f, o) in the weights; c' = f c + i g; h' = o tanh(c'); state = [h, c]."""
  u = state.shape[-1] // 2
  h, c = state[:, :u], state[:, u:]
  a = x @ kernel + h @ recurrent_kernel + bias
  i, g, f, o = (a[:, k * u:(k + 1) * u] for k in range(4))
  c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
  return np.concatenate([_sigmoid(o) * np.tanh(c), c], axis=-1)


_NP_STEPS = {"gru": _np_gru_step, "lstm": _np_lstm_step}


def _randomise(layer_or_model, seed=0, scale=0.5):
  """Random weights (so that biases and every gate matter); returns them."""
  rng = np.random.default_rng(seed)
  weights = [(scale * rng.standard_normal(w.shape)).astype(np.float32)
             for w in layer_or_model.get_weights()]
  layer_or_model.set_weights(weights)
  return weights


def _model(arch="gru", units=8, frame_shape=(4, 4, 1), readout="sigmoid", seed=0, **kwargs):
  model = network.DelayedClassifier(arch=arch, units=units, frame_shape=frame_shape,
                                   readout=readout, **kwargs)
  _randomise(model, seed)
  return model


def _inputs(model, batch=3, length=5, seed=1):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((batch, length, model.input_size)).astype(np.float32)
  x[..., -1] = (rng.random((batch, length)) < 0.2)
  return tf.constant(x)


class CellTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.product(arch=("gru", "lstm"), seed=(0, 1))
  def test_step_matches_the_documented_equations(self, arch, seed):
    u, d = 6, 5
    cell = cells.CELLS[arch](u)
    cell.build((None, d))
    kernel, recurrent_kernel, bias = _randomise(cell, seed, scale=0.8)
    rng = np.random.default_rng(seed + 10)
    x = rng.standard_normal((4, d)).astype(np.float32)
    state = rng.standard_normal((4, cell.state_size)).astype(np.float32)
    got = cell.step(tf.constant(state), cell.project(tf.constant(x)))
    expected = _NP_STEPS[arch](x.astype(np.float64), state.astype(np.float64), kernel,
                               recurrent_kernel, bias)
    self.assertEqual(got.shape, (4, cell.state_size))
    self.assertAllClose(got, expected, rtol=1e-5, atol=1e-5)

  @parameterized.parameters(("gru", 3), ("lstm", 4))
  def test_weight_shapes_and_state_size(self, arch, gates):
    cell = cells.CELLS[arch](7)
    cell.build((None, 5))
    self.assertEqual(cell.kernel.shape, (5, gates * 7))
    self.assertEqual(cell.recurrent_kernel.shape, (7, gates * 7))
    self.assertEqual(cell.bias.shape, (gates * 7,))
    self.assertEqual(cell.state_size, 7 if arch == "gru" else 14)

  def test_gru_initial_biases_favour_keeping_the_state(self):
    cell = cells.GRUCell(4)
    cell.build((None, 3))
    self.assertAllEqual(cell.bias, [-1.0] * 4 + [1.0] * 4 + [0.0] * 4)

  def test_lstm_initial_forget_bias_is_one(self):
    cell = cells.LSTMCell(4)
    cell.build((None, 3))
    self.assertAllEqual(cell.bias, [0.0] * 8 + [1.0] * 4 + [0.0] * 4)

  @parameterized.parameters(("gru", 3), ("lstm", 4))
  def test_initial_kernels_are_glorot_uniform_over_x_and_h(self, arch, gates):
    d, u = 300, 50
    cell = cells.CELLS[arch](u)
    cell.build((None, d))
    limit = np.sqrt(6.0 / (d + u + gates * u))
    for w in (cell.kernel.numpy(), cell.recurrent_kernel.numpy()):
      self.assertLessEqual(np.abs(w).max(), limit)
      self.assertGreater(np.abs(w).max(), 0.95 * limit)
      self.assertAllClose(w.std(), limit / np.sqrt(3.0), rtol=0.05)

  def test_hidden_is_h(self):
    s = tf.constant(np.arange(12, dtype=np.float32).reshape(2, 6))
    self.assertAllEqual(cells.GRUCell(6).hidden(s), s)
    self.assertAllEqual(cells.LSTMCell(3).hidden(s), s[:, :3])

  @parameterized.parameters("gru", "lstm")
  def test_project_applies_to_any_leading_axes(self, arch):
    cell = cells.CELLS[arch](3)
    cell.build((None, 4))
    _randomise(cell)
    x = np.random.default_rng(0).standard_normal((2, 5, 4)).astype(np.float32)
    got = cell.project(tf.constant(x))
    self.assertAllClose(got, x @ cell.kernel.numpy() + cell.bias.numpy(), rtol=1e-5, atol=1e-6)


class DelayedClassifierTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.product(arch=("gru", "lstm"), readout=("sigmoid", "linear"))
  def test_output_shapes(self, arch, readout):
    model = _model(arch, units=8, readout=readout)
    logits, states = model(_inputs(model, batch=3, length=5))
    self.assertEqual(logits.shape, (3, 5, 11))
    self.assertEqual(states.shape, (3, 5, 8 if arch == "gru" else 16))
    self.assertEqual(model.state_size, 8 if arch == "gru" else 16)
    self.assertEqual(model.input_size, 17)

  @parameterized.parameters("gru", "lstm")
  def test_call_equals_the_numpy_recurrence_and_read_out(self, arch):
    model = _model(arch, units=6, readout="linear")
    x = _inputs(model, batch=2, length=7).numpy().astype(np.float64)
    logits, states = model(tf.constant(x, tf.float32))
    cell = [w.numpy() for w in (model.cell.kernel, model.cell.recurrent_kernel, model.cell.bias)]
    head_w, head_b = (w.numpy() for w in model.head.weights)
    s = np.zeros((2, model.state_size))
    for t in range(7):
      s = _NP_STEPS[arch](x[:, t], s, *cell)
      self.assertAllClose(states[:, t], s, rtol=1e-4, atol=1e-5)
      self.assertAllClose(logits[:, t], s[:, :6] @ head_w + head_b, rtol=1e-4, atol=1e-5)

  @parameterized.parameters("gru", "lstm")
  def test_sigmoid_readout_gives_logits_in_0_1(self, arch):
    model = _model(arch, readout="sigmoid", seed=3)
    logits, states = model(_inputs(model, length=8))
    self.assertTrue(((logits > 0) & (logits < 1)).numpy().all())
    self.assertAllClose(logits, tf.sigmoid(model.head(model.cell.hidden(states))))
    linear = _model(arch, readout="linear", seed=3)
    linear_logits, _ = linear(_inputs(linear, length=8))
    self.assertFalse(((linear_logits > 0) & (linear_logits < 1)).numpy().all())

  @parameterized.parameters("gru", "lstm")
  def test_unrolled_and_scan_paths_agree(self, arch):
    model = _model(arch, units=5, seed=4)
    x = _inputs(model, batch=2, length=70, seed=5)
    # 70 > 64 frames go through tf.scan; their first 64 states are the unrolled run's.
    scanned = model.run(x)
    unrolled = model.run(x[:, :64])
    self.assertAllClose(scanned[:, :64], unrolled, rtol=1e-5, atol=1e-6)
    # And the same short sequence either way.
    with mock.patch.object(network, "_UNROLL_MAX", 0):
      forced_scan = model.run(x[:, :10])
    self.assertAllClose(forced_scan, unrolled[:, :10], rtol=1e-5, atol=1e-6)

  @parameterized.parameters("gru", "lstm")
  def test_unrolled_and_scan_paths_agree_inside_tf_function(self, arch):
    model = _model(arch, units=5, seed=4)
    x = _inputs(model, batch=2, length=12, seed=6)
    with mock.patch.object(network, "_UNROLL_MAX", 8):   # 12 frames scan, 8 unroll
      run = tf.function(model.run)
      scanned, unrolled = run(x), run(x[:, :8])
    self.assertAllClose(scanned[:, :8], unrolled, rtol=1e-5, atol=1e-6)
    self.assertAllClose(scanned, model.run(x), rtol=1e-5, atol=1e-6)

  @parameterized.parameters("gru", "lstm")
  def test_chained_step_equals_call(self, arch):
    model = _model(arch, seed=7)
    x = _inputs(model, batch=3, length=6, seed=8)
    logits, states = model(x)
    state = model.initial_state(3)
    self.assertAllEqual(state, np.zeros((3, model.state_size)))
    for t in range(6):
      state, step_logits = model.step(state, x[:, t])
      self.assertAllClose(state, states[:, t], rtol=1e-5, atol=1e-6)
      self.assertAllClose(step_logits, logits[:, t], rtol=1e-5, atol=1e-6)

  def test_run_continues_from_an_initial_state(self):
    model = _model("lstm", seed=9)
    x = _inputs(model, batch=2, length=8, seed=10)
    full = model.run(x)
    rest = model.run(x[:, 3:], initial_state=full[:, 2])
    self.assertAllClose(rest, full[:, 3:], rtol=1e-5, atol=1e-6)

  @parameterized.parameters("gru", "lstm")
  def test_transition_is_the_numpy_gru_or_lstm_step(self, arch):
    model = _model(arch, seed=11)
    x = _inputs(model, batch=2, length=1)[:, 0]
    s = tf.random.stateless_normal([2, model.state_size], [1, 2])
    weights = [w.numpy().astype(np.float64)
               for w in (model.cell.kernel, model.cell.recurrent_kernel, model.cell.bias)]
    expected = _NP_STEPS[arch](x.numpy().astype(np.float64), s.numpy().astype(np.float64),
                               *weights)
    self.assertAllClose(model.transition(s, model.encode(x)), expected, rtol=1e-5, atol=1e-6)

  def test_cnn_encoder_path(self):
    model = network.DelayedClassifier("gru", units=4, frame_shape=(32, 32, 3), encoder="cnn")
    self.assertEqual(model.input_size, 3073)
    self.assertEqual(model.feature_size, 1025)
    self.assertEqual(model.cell.kernel.shape, (1025, 12))
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 3073)).astype(np.float32)
    x[..., -1] = [[0, 0, 1], [0, 1, 0]]
    logits, states = model(tf.constant(x))
    self.assertEqual(logits.shape, (2, 3, 11))
    self.assertEqual(states.shape, (2, 3, 4))
    features = model.encode(tf.constant(x))
    self.assertEqual(features.shape, (2, 3, 1025))
    self.assertAllEqual(features[..., -1], x[..., -1])             # trigger joins after the CNN
    frames = x[0, :, :-1]
    self.assertAllClose(features[0, :, :-1], model.encoder(tf.constant(frames)),
                        rtol=1e-5, atol=1e-5)
    self.assertAllClose(states, model.run(tf.constant(x)))

  def test_cnn_weights_exist_before_the_first_call(self):
    # checkpoints.Run builds the optimizer on trainable_variables before any call; every weight of
    # the encoder must already be there, or the first train step fails with "Unknown variable".
    model = network.DelayedClassifier("gru", units=4, frame_shape=(32, 32, 3), encoder="cnn")
    shapes = [tuple(w.shape) for w in model.encoder.weights]
    self.assertEqual(shapes, [(3, 3, 3, 128), (128,), (3, 3, 128, 128), (128,),
                              (3, 3, 128, 128), (128,), (2048, 2048), (2048,), (2048, 1024),
                              (1024,)])
    self.assertLen(model.trainable_variables, 15)
    optimizer = keras.optimizers.Adam(1e-3)
    model.compile(optimizer=optimizer)
    optimizer.build(model.trainable_variables)
    before = [w.numpy() for w in model.encoder.weights]
    x = tf.random.stateless_uniform([2, 3, 3073], [0, 1])
    targets = dict(labels=tf.constant([[0, 0, 4], [0, 7, 0]]), weights=tf.ones([2, 3]),
                   class_mask=tf.ones([2, 11], tf.bool))
    model.train_step((x, targets))
    self.assertEqual(int(optimizer.iterations.numpy()), 1)
    for a, b in zip(before, model.encoder.weights):
      self.assertNotAllClose(a, b)

  def test_build_picks_the_cnn_for_cifar10_only(self):
    cfg = dataclasses.replace(config.PAPER, units=3, arch="lstm")
    mnist = network.build(cfg, (28, 28, 1))
    self.assertIsNone(mnist.encoder)
    self.assertEqual((mnist.arch, mnist.units, mnist.readout), ("lstm", 3, "sigmoid"))
    self.assertEqual(mnist.feature_size, 785)
    cifar = network.build(dataclasses.replace(cfg, dataset="cifar10"), (32, 32, 3))
    self.assertIsInstance(cifar.encoder, cnn.ConvEncoder)
    self.assertEqual(cifar.feature_size, 1025)

  @parameterized.parameters(dict(arch="rnn"), dict(readout="softmax"))
  def test_unknown_arch_or_readout_is_rejected(self, **kwargs):
    with self.assertRaisesRegex(ValueError, "unknown (arch 'rnn'|readout 'softmax')"):
      network.DelayedClassifier(**kwargs)


class SerialisationTest(tf.test.TestCase, parameterized.TestCase):

  def _tmpdir(self):
    path = tempfile.mkdtemp(prefix="haviv_tf_test_")
    self.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path

  @parameterized.parameters(("gru", "sigmoid"), ("lstm", "linear"))
  def test_from_config_rebuilds_the_same_network(self, arch, readout):
    model = _model(arch, units=5, readout=readout, name="net")
    clone = network.DelayedClassifier.from_config(model.get_config())
    self.assertEqual(clone.get_config(), model.get_config())
    self.assertEqual((clone.arch, clone.units, clone.readout, clone.frame_shape, clone.name),
                     (arch, 5, readout, (4, 4, 1), "net"))
    self.assertEqual([w.shape for w in clone.weights], [w.shape for w in model.weights])
    clone.set_weights(model.get_weights())
    x = _inputs(model)
    for a, b in zip(model(x), clone(x)):
      self.assertAllEqual(a, b)

  @parameterized.parameters(("gru", "sigmoid", False), ("lstm", "linear", True))
  def test_keras_save_and_load_round_trip(self, arch, readout, compiled):
    model = _model(arch, units=5, readout=readout, seed=12)
    if compiled:
      model.compile(optimizer=keras.optimizers.Adam(1e-3), speed_weight=0.5,
                    loss=losses.MaskedNullLabel("authors", 1e-4, "authors"))
    x = _inputs(model, length=6)
    expected = model(x)
    path = os.path.join(self._tmpdir(), "x.keras")
    model.save(path)
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      loaded = keras.saving.load_model(path)
    self.assertFalse([w for w in caught if "compile" in str(w.message)])
    self.assertIsInstance(loaded, network.DelayedClassifier)
    self.assertEqual(loaded.compiled, compiled)
    if compiled:   # compiled as it was: the loss, its settings, μ and the optimizer
      self.assertEqual((loaded.loss.loss_norm, loaded.loss.log_eps, loaded.loss.mask),
                       ("authors", 1e-4, "authors"))
      self.assertEqual(loaded.speed_weight, 0.5)
      self.assertIsInstance(loaded.optimizer, keras.optimizers.Adam)
      self.assertAllClose(loaded.optimizer.learning_rate, 1e-3)
    self.assertEqual(loaded.get_config(), model.get_config())
    for a, b in zip(expected, loaded(x)):
      self.assertAllEqual(a, b)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
      self.assertAllEqual(a, b)


class TrainingTest(tf.test.TestCase):

  def _report_accuracy(self, model, generator, curriculum):
    ds = generator.training_dataset(1, 250, 20, curriculum, num_steps=4)
    return model.evaluate(ds, verbose=0, return_dict=True)

  def test_tiny_gru_learns_the_task_far_above_chance(self):
    # Verified at seed 0, 1, 2: test report accuracy 0.87-0.89 after 300 steps (chance 0.1).
    src = datasets.load("mnist_sample")
    cfg = dataclasses.replace(config.QUICK, protocol="nacu", dataset="mnist_sample")
    curriculum = curricula.for_config(cfg)
    self.assertEqual(curriculum.at(0), (10, 20))
    keras.utils.set_random_seed(0)
    model = network.DelayedClassifier("gru", units=32, readout="linear")
    model.compile(optimizer=keras.optimizers.Adam(3e-3, epsilon=1e-8))
    test = trials.TrialGenerator(src.test, src.mean, src.std)
    before = self._report_accuracy(model, test, curriculum)
    self.assertLess(before["report_acc"], 0.3)
    train = trials.TrialGenerator(src.train, src.mean, src.std)
    model.fit(train.training_dataset(0, 32, 20, curriculum, num_steps=300), epochs=1,
              steps_per_epoch=300, verbose=0, shuffle=False)
    self.assertEqual(int(model.optimizer.iterations.numpy()), 300)
    after = self._report_accuracy(model, test, curriculum)
    self.assertGreaterEqual(after["report_acc"], 0.6)
    self.assertGreaterEqual(after["null_acc"], 0.95)
    self.assertLess(after["loss"], 0.6 * before["loss"])
    per_class = model.per_class_accuracy()
    self.assertLen(per_class, 10)
    self.assertGreater(np.mean(list(per_class.values())), 0.5)


if __name__ == "__main__":
  tf.test.main()
