"""The paper preset against the authors' TF1 code, point by point (docs/fidelity.md).

Each test rebuilds what the authors' scripts (DoronHaviv/MemoryRNN, TriggerMNISTCloud.py = TMC,
TriggerCIFARCloud.py = TCC) compute, written out in numpy from their equations, and compares.
"""

import dataclasses
import math

from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from haviv_tf.base import config
from haviv_tf.task import curricula
from haviv_tf.task import datasets
from haviv_tf.task import losses
from haviv_tf.models import cnn
from haviv_tf.models import network
from haviv_tf.training import schedules
from haviv_tf.training import train
from haviv_tf.task import trials


def _paper(dataset="mnist", **overrides):
  return dataclasses.replace(config.preset("paper", dataset), **overrides)


class PresetTest(tf.test.TestCase):

  def test_paper_takes_the_authors_choices_and_quick_keeps_its_own(self):
    for dataset in ("mnist", "cifar10"):
      p, q = config.preset("paper", dataset), config.preset("quick", dataset)
      self.assertEqual((p.init, p.cnn, p.loss_norm, p.log_eps, p.mask, p.data_recipe),
                       ("authors", "authors", "authors", 1e-4, "authors", "authors"))
      self.assertEqual((q.init, q.cnn, q.loss_norm, q.log_eps, q.mask, q.data_recipe),
                       ("tf1", "keras", "weights", 0.0, "hard", "all"))

  def test_a_record_without_the_fidelity_fields_resumes_as_it_was_made(self):
    record = {k: v for k, v in config.PAPER.to_dict().items()
              if k not in ("init", "cnn", "loss_norm", "log_eps", "mask", "data_recipe")}
    cfg = config.Config.from_record(record)
    self.assertEqual((cfg.init, cfg.cnn, cfg.loss_norm, cfg.log_eps, cfg.mask, cfg.data_recipe),
                     ("tf1", "keras", "weights", 0.0, "hard", "all"))

  def test_bad_fidelity_values_are_refused(self):
    for overrides, message in [({"init": "he"}, "unknown init"), ({"cnn": "x"}, "unknown cnn"),
                               ({"loss_norm": "sum"}, "unknown loss_norm"),
                               ({"mask": "soft"}, "unknown mask"),
                               ({"data_recipe": "x"}, "unknown data_recipe"),
                               ({"log_eps": -1.0}, "log_eps"),
                               ({"readout": "linear"}, "mask"),
                               ({"protocol": "recu", "report_weight": 1.0}, "report_weight")]:
      with self.assertRaisesRegex(ValueError, message):
        config.resolve("paper", "mnist", overrides)


class LearningRateTest(tf.test.TestCase):

  def test_the_paper_rate_drops_at_update_120000_as_the_authors(self):
    # TMC L325-328: `if step == 120000: learning_rate /= 10` runs before update 120,000.
    cfg = config.preset("paper", "mnist")
    opt = schedules.make_optimizer(cfg)
    var = tf.Variable(0.0)
    opt.build([var])
    rates = {}
    for update in (119_999, 120_000):
      opt.iterations.assign(update - 1)  # the count of updates before this one
      rates[update] = float(opt.learning_rate)
    self.assertAllClose([rates[119_999], rates[120_000]], [1e-5, 1e-6])


class InitialisationTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(("gru", 3), ("lstm", 4))
  def test_authors_init_is_randn_over_sqrt_fan_in_and_small_zero_mean_biases(self, arch, gates):
    # TMC L188-220: W randn/sqrt(785), U randn/sqrt(200), biases 0.01 randn, no offsets;
    # W_out randn/sqrt(200), b_out 0.01 randn.
    keras.utils.set_random_seed(0)
    model = network.build(_paper(arch=arch), (28, 28, 1))
    cell, head = model.cell, model.head
    for value, std in [(cell.kernel, 1 / math.sqrt(785)), (cell.recurrent_kernel, 1 / math.sqrt(200)),
                       (head.kernel, 1 / math.sqrt(200))]:
      v = value.numpy()
      self.assertAllClose(v.std(), std, rtol=0.03)
      self.assertLess(abs(v.mean()), 4 * std / math.sqrt(v.size))
      self.assertGreater(np.abs(v).max(), 3.5 * std)  # a normal, not a uniform on [-a, a]
    for b in (cell.bias.numpy(), head.bias.numpy()):
      self.assertAllClose(b.std(), 0.01, rtol=0.25 if b.size < 100 else 0.1)
      self.assertLess(abs(b.mean()), 0.005)
    # no block starts offset: every gate's bias has mean ~ 0
    for block in np.split(cell.bias.numpy(), gates):
      self.assertLess(abs(block.mean()), 0.005)

  def test_tf1_init_keeps_the_glorot_draw_and_gate_offsets(self):
    keras.utils.set_random_seed(0)
    model = network.build(config.preset("quick", "mnist"), (28, 28, 1))
    limit = math.sqrt(6 / (785 + 200 + 600))
    self.assertLessEqual(np.abs(model.cell.kernel.numpy()).max(), limit)
    self.assertAllEqual(model.cell.bias.numpy()[:200], -np.ones(200))
    self.assertAllEqual(model.head.bias.numpy(), np.zeros(11))

  def test_cifar_cell_input_size_is_1025(self):
    keras.utils.set_random_seed(0)
    model = network.build(_paper("cifar10", units=16), (32, 32, 3))
    self.assertEqual(model.cell.kernel.shape, (1025, 48))
    self.assertAllClose(model.cell.kernel.numpy().std(), 1 / math.sqrt(1025), rtol=0.05)


class CnnTest(tf.test.TestCase):

  def _encoder(self, kind):
    keras.utils.set_random_seed(0)
    return network.build(_paper("cifar10", units=8, cnn=kind), (32, 32, 3)).encoder

  def test_authors_cnn_has_three_dense_layers(self):
    # TCC L267-274, L287-290: 2048 -> 2048 -> 2048 -> 1024.
    enc = self._encoder("authors")
    self.assertEqual([tuple(d.kernel.shape) for d in enc.dense_layers],
                     [(2048, 2048), (2048, 2048), (2048, 1024)])
    for d in enc.dense_layers:
      self.assertAllClose(d.kernel.numpy().std(), 1 / math.sqrt(2048), rtol=0.02)
      self.assertAllClose(d.bias.numpy().std(), 0.01, rtol=0.15)
    out = enc(tf.random.uniform([2, 32 * 32 * 3]))
    self.assertEqual(out.shape, (2, 1024))
    keras_enc = self._encoder("keras")
    self.assertEqual([tuple(d.kernel.shape) for d in keras_enc.dense_layers],
                     [(2048, 2048), (2048, 1024)])

  def test_authors_conv_weights_are_scaled_variables(self):
    # TCC L238-265: truncated_normal(std 1) / sqrt(3*128) (conv1), / 128 (conv2, conv3);
    # bias 0.1 / sqrt(128).
    enc = self._encoder("authors")
    convs = [b for b in enc.blocks if isinstance(b, cnn.ScaledConv2D)]
    self.assertLen(convs, 3)
    self.assertEqual([c.kernel_div for c in convs], [math.sqrt(384), 128.0, 128.0])
    for c in convs:
      v = c.kernel.numpy()
      self.assertLessEqual(np.abs(v).max(), 2.0)          # truncated at 2 std
      self.assertAllClose(v.std(), 0.88, atol=0.05)        # std of N(0,1) truncated at +-2
      self.assertAllClose(c.bias.numpy(), np.full(128, 0.1))
    # the convolution uses variable / divisor
    x = tf.random.uniform([1, 8, 8, 3])
    want = tf.nn.conv2d(x, convs[0].kernel / math.sqrt(384), 1, "SAME") + 0.1 / math.sqrt(128)
    self.assertAllClose(convs[0](x), want, atol=1e-5)

  def test_adam_moves_the_effective_conv_weight_divisor_times_slower(self):
    layer = cnn.ScaledConv2D(4, kernel_div=128.0, bias_div=1.0)
    layer.build((None, 5, 5, 2))
    before = layer.kernel.numpy() / 128.0
    opt = keras.optimizers.Adam(1e-3)
    x = tf.random.uniform([3, 5, 5, 2])
    with tf.GradientTape() as tape:
      y = tf.reduce_sum(layer(x))
    opt.apply(tape.gradient(y, [layer.kernel]), [layer.kernel])
    moved = np.abs(layer.kernel.numpy() / 128.0 - before)
    self.assertAllClose(moved.max(), 1e-3 / 128.0, rtol=0.01)  # Adam's first step is lr


def _authors_loss(logits_bct, y, z, w, alpha, t_max=20, tiny=1e-4):
  """TMC L290-298 in numpy: -mean((t_max-1) Z Y log(p + TINY) + alpha Y log(p + TINY)),
  p = softmax(logits * W over the class axis); arrays [batch, 11, time]."""
  a = logits_bct * w
  p = np.exp(a - a.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  return -np.mean((t_max - 1) * z * y * np.log(p + tiny) + alpha * y * np.log(p + tiny))


def _authors_batch(rng, batch, time, t_max_stage, max_classes):
  """TMC L57-84's Labels, t_error_mat and OnesMat, plus the class and report step drawn."""
  y = np.zeros((batch, 11, time))
  z = np.zeros((batch, 11, time))
  w = -1000 * np.ones((batch, 11, time))
  w[:, :max_classes, :] = 1
  y[:, 0, :t_max_stage] = 1
  classes = rng.integers(0, max_classes - 1, batch)
  t_s = rng.integers(0, t_max_stage - 4, batch)
  t_a = np.array([rng.integers(s + 4, t_max_stage) for s in t_s])
  for i in range(batch):
    z[i, :max_classes, t_a[i]] = 1
    y[i, :, t_a[i]] = 0
    y[i, classes[i] + 1, t_a[i]] = 1
  return y, z, w, classes.astype(np.int32), t_a.astype(np.int32)


class LossTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters((20, 11, 1.0), (12, 11, 1.0), (20, 4, 1.0), (20, 11, 0.25),
                            (20, 11, 0.0))
  def test_the_paper_loss_is_the_authors_formula(self, t_max, max_classes, alpha):
    rng = np.random.default_rng(t_max + max_classes)
    b, time = 6, 20
    y, z, w, classes, t_a = _authors_batch(rng, b, time, t_max, max_classes)
    logits = 1 / (1 + np.exp(-rng.normal(0, 2, (b, time, 11))))  # sigmoid outputs, [B, T, 11]
    want = _authors_loss(np.transpose(logits, (0, 2, 1)), y, z, w, alpha)
    gen = trials.TrialGenerator(datasets.Split(np.zeros((10, 2, 2, 1), np.uint8),
                                               np.arange(10, dtype=np.int32)), [0.5], [0.2])
    labels, weights, mask = gen._targets(tf.constant(classes), tf.constant(t_a), time, t_max,
                                         max_classes - 1, alpha)
    got = losses.masked_null_label(labels, tf.constant(logits, tf.float32), weights, mask,
                                   loss_norm="authors", log_eps=1e-4, mask="authors")
    self.assertAllClose(float(got), want, rtol=1e-5)

  def test_weights_normalisation_is_the_old_loss(self):
    rng = np.random.default_rng(1)
    labels = tf.constant(rng.integers(0, 11, (3, 5)), tf.int32)
    logits = tf.constant(rng.normal(size=(3, 5, 11)), tf.float32)
    weights = tf.constant(rng.uniform(size=(3, 5)), tf.float32)
    mask = tf.ones((3, 11), tf.bool)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    want = tf.reduce_sum(ce * weights) / tf.reduce_sum(weights)
    self.assertAllClose(losses.masked_null_label(labels, logits, weights, mask), want)
    # authors' normalisation: the same sum over batch x time x 11
    got = losses.masked_null_label(labels, logits, weights, mask, loss_norm="authors")
    self.assertAllClose(got, tf.reduce_sum(ce * weights) / (3 * 5 * 11))

  def test_authors_mask_passes_gradient_to_masked_classes(self):
    # TMC L62-63, L290: a masked class's logit is -1000 s; with s small its probability and so
    # its gradient are not zero. The hard mask (tf.where) cuts it.
    labels = tf.constant([[0]], tf.int32)
    mask = tf.constant([[True] * 3 + [False] * 8])
    logits = tf.Variable([[[0.5, 0.2, 0.1] + [0.002] * 8]])
    for kind, nonzero in (("authors", True), ("hard", False)):
      with tf.GradientTape() as tape:
        loss = losses.masked_null_label(labels, logits, tf.ones([1, 1]), mask, mask=kind)
      g = tape.gradient(loss, logits).numpy()[0, 0, 3:]
      if nonzero:
        self.assertTrue(np.all(g < -1e-3), g)  # -1000 p: descent raises s, masking harder
      else:
        self.assertAllEqual(g, np.zeros(8))
    # with s ~ 0.5 (no saturation) the masked probability underflows: exactly as the authors'
    p = tf.nn.softmax(losses.mask_logits(tf.fill([1, 1, 11], 0.5), mask, "authors"))
    self.assertAllEqual(p.numpy()[0, 0, 3:], np.zeros(8))


class SpeedPenaltyTest(tf.test.TestCase):

  def test_mu_is_the_authors_lambda_on_the_authors_loss(self):
    # TSC L401: loss = SoftMaxLoss + Lambda * sum speed^2, SoftMaxLoss the authors' mean (L399).
    keras.utils.set_random_seed(3)
    cfg = _paper(units=6)
    model = network.DelayedClassifier("gru", units=6, frame_shape=(2, 2, 1), init="authors")
    model.compile(optimizer=keras.optimizers.SGD(0.0), speed_weight=1e-3,
                  loss=losses.MaskedNullLabel.from_settings(cfg))
    model.enable_speed_penalty(2)
    targets_s = np.random.default_rng(0).normal(size=(2, 6)).astype(np.float32)
    model.set_speed_targets(targets_s, np.ones(2))
    rng = np.random.default_rng(1)
    b, time = 3, 20
    y, z, w, classes, t_a = _authors_batch(rng, b, time, 20, 11)
    gen = trials.TrialGenerator(datasets.Split(np.zeros((10, 2, 2, 1), np.uint8),
                                               np.arange(10, dtype=np.int32)), [0.5], [0.2])
    labels, weights, mask = gen._targets(tf.constant(classes), tf.constant(t_a), time, 20, 10)
    inputs = tf.constant(rng.uniform(size=(b, time, 5)), tf.float32)
    noise = tf.constant(rng.uniform(size=(2, 4)), tf.float32)
    logs = model.train_step((inputs, dict(labels=labels, weights=weights, class_mask=mask,
                                          speed_noise=noise)))
    logits = model(inputs)[0].numpy()
    speed = sum(np.sum((model.transition(targets_s[k:k + 1], tf.concat(
        [noise[k:k + 1], tf.zeros([1, 1])], -1)).numpy() - targets_s[k]) ** 2) for k in range(2))
    want = _authors_loss(np.transpose(logits, (0, 2, 1)), y, z, w, 1.0) + 1e-3 * speed
    self.assertAllClose(float(logs["loss"]), want, rtol=1e-5)


class TrivialLossTest(tf.test.TestCase):

  def test_sigmoid_trivial_loss_is_null_1_classes_0(self):
    # null logit 1, class logits 0: q0 = e/(e+10), q = 1/(e+10), 19 : 20 null : report weight
    z = math.e + 10
    want = (19 * (math.log(z) - 1) + 20 * math.log(z)) / 39
    loss, d = losses.trivial_loss(10, 20, 20)
    self.assertAllClose([loss, d], [want, 1.0])
    self.assertAllClose(loss, 2.05586, atol=1e-5)
    # authors' normalisation: the same sum per trial over 11 x 20
    self.assertAllClose(losses.trivial_loss(10, 20, 20, loss_norm="authors")[0], want * 39 / 220)

  def test_linear_and_two_class_optima_are_interior(self):
    # unconstrained: q0 = 19/39, q = 20/(39 K) -> d = log(19 K / 20)
    for k, readout in ((10, "linear"), (2, "sigmoid")):
      loss, d = losses.trivial_loss(k, 20, 20, readout=readout)
      self.assertAllClose(d, math.log(19 * k / 20), atol=1e-4)
      want = (-19 * math.log(19 / 39) - 20 * math.log(20 / (39 * k))) / 39
      self.assertAllClose(loss, want, atol=1e-6)

  def test_a_constant_network_reaches_the_trivial_loss_and_no_less(self):
    cfg = _paper()
    rng = np.random.default_rng(0)
    b = 64
    y, z, w, classes, t_a = _authors_batch(rng, b, 20, 20, 11)
    gen = trials.TrialGenerator(datasets.Split(np.zeros((10, 2, 2, 1), np.uint8),
                                               np.arange(10, dtype=np.int32)), [0.5], [0.2])
    labels, weights, mask = gen._targets(tf.constant(classes), tf.constant(t_a), 20, 20, 10)
    want = losses.trivial_loss(10, 20, 20, 20.0, 1.0, "sigmoid", cfg.loss_norm, cfg.log_eps)[0]
    const = np.zeros((b, 20, 11), np.float32)
    const[..., 0] = 1.0
    got = losses.masked_null_label(labels, tf.constant(const), weights, mask, cfg.loss_norm,
                                   cfg.log_eps, cfg.mask)
    self.assertAllClose(float(got), want, rtol=1e-5)
    const[..., 0] = 0.9
    worse = losses.masked_null_label(labels, tf.constant(const), weights, mask, cfg.loss_norm,
                                     cfg.log_eps, cfg.mask)
    self.assertGreater(float(worse), want)


class ReCuTest(tf.test.TestCase):

  def test_null_weight_ramp_matches_the_authors(self):
    # TMC L148-154: alpha 0 on [0, 20k), .25 to 30k, .5 to 40k, .75 to 60k, then 1
    # (their update k uses ZeroWeight[k - 1], i.e. the step count before it, as here).
    cur = curricula.for_config(_paper(protocol="recu"))
    want = {0: 0, 19_999: 0, 20_000: .25, 29_999: .25, 30_000: .5, 39_999: .5, 40_000: .75,
            50_000: .75, 59_999: .75, 60_000: 1, 139_999: 1}
    self.assertEqual({s: cur.null_weight_at(s) for s in want}, want)
    self.assertEqual({s: float(cur.null_weight_tf(tf.constant(s, tf.int64))) for s in want},
                     want)
    self.assertEqual(set(cur.num_classes), {10})
    self.assertEqual(set(cur.t_max), {20})
    cifar = curricula.for_config(_paper("cifar10", protocol="recu"))
    self.assertEqual(cifar.boundaries, (20_000, 30_000, 40_000, 60_000))

  def test_recu_batches_weigh_null_steps_alpha_and_the_report_19_plus_alpha(self):
    split = datasets.Split(np.arange(20 * 4, dtype=np.uint8).reshape(20, 2, 2, 1),
                           np.repeat(np.arange(10, dtype=np.int32), 2))
    gen = trials.TrialGenerator(split, [0.5], [0.2])
    cfg = dataclasses.replace(_paper(protocol="recu"), train_steps=140)  # boundaries / 1000
    cur = curricula.for_config(cfg)
    for backend in ("numpy", "tf"):
      for step, alpha in ((0, 0.0), (25, 0.25), (45, 0.75), (100, 1.0)):
        ds = gen.training_dataset(0, 4, 20, cur, start_step=step, backend=backend)
        _, targets = next(iter(ds))
        w, lab = targets["weights"].numpy(), targets["labels"].numpy()
        self.assertAllEqual(w[lab > 0], np.full(4, 19.0 + alpha))
        self.assertAllEqual(w[lab == 0], np.full(4 * 19, alpha))


class ImageSubsetTest(tf.test.TestCase):

  def test_authors_indices_drop_the_holdout_and_keep_the_first_n_minus_1_per_class(self):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 700)
    idx = datasets.authors_train_indices(labels, holdout=100)
    rest = labels[100:]
    n = np.bincount(rest, minlength=10).min()
    want = np.sort(np.concatenate([np.flatnonzero(rest == c)[:n - 1] + 100 for c in range(10)]))
    self.assertAllEqual(idx, want)
    self.assertAllEqual(np.bincount(labels[idx], minlength=10), np.full(10, n - 1))
    self.assertGreaterEqual(idx.min(), 100)

  def test_recipe_cuts_the_train_split_and_sets_cifar_scalar_noise(self):
    rng = np.random.default_rng(1)
    def split(n):
      return datasets.Split(rng.integers(0, 255, (n, 32, 32, 3)).astype(np.uint8),
                            (np.arange(n) % 10).astype(np.int32))
    source = datasets.Source("cifar10", split(60), split(20), np.float32([0.49, 0.48, 0.45]),
                             np.float32([0.25, 0.24, 0.26]), "test")
    cut = datasets.apply_recipe(source, "authors")
    self.assertAllEqual(cut.train.images, source.train.images[:50])  # 6 per class, first 5 kept
    self.assertAllEqual(cut.test.images, source.test.images)
    self.assertAllClose(cut.mean, [0.4734] * 3)
    self.assertAllClose(cut.std, [0.2517] * 3)
    self.assertIs(datasets.apply_recipe(cut, "authors"), cut)
    self.assertIs(datasets.apply_recipe(source, "all"), source)
    # the training trials are drawn from the cut split only
    gen = trials.generator_for(source, "train", config.preset("paper", "cifar10"))
    self.assertEqual(gen._images_np.shape[0], 50)
    self.assertAllClose(gen.std, np.full(32 * 32 * 3, 0.2517))

  def test_mnist_recipe_holds_out_tf1s_validation_images(self):
    labels = np.tile(np.arange(10, dtype=np.int32), 510)   # 5,100 images, 10 per class after 5k
    images = np.arange(5100, dtype=np.uint32).astype(np.uint8).reshape(-1, 1, 1, 1)
    images = np.broadcast_to(images, (5100, 28, 28, 1)).copy()
    source = datasets.Source("mnist", datasets.Split(images, labels),
                             datasets.Split(images[:10], labels[:10]), np.float32([0.1307]),
                             np.float32([0.30816]), "test")
    cut = datasets.apply_recipe(source, "authors")
    self.assertAllEqual(cut.train.labels, np.tile(np.arange(10), 9))
    self.assertAllEqual(cut.train.images[:, 0, 0, 0], images[5000:5090, 0, 0, 0])


if __name__ == "__main__":
  tf.test.main()


class FinetuneTest(tf.test.TestCase):
  """The paper preset's fine-tuning against the authors' TriggerSpeedCont.py (TSC)."""

  def test_paper_finetuning_takes_the_authors_settings(self):
    from haviv_tf.analysis import control  # pylint: disable=g-import-not-at-top
    parent = config.preset("paper", "mnist")
    for mode, mu in (("control", 0.0), ("slow_points", 1e-3), ("center_mass", 1e-3)):
      cfg = control.finetune_config(parent, mode)
      self.assertEqual(cfg.train_steps, 5000)           # TSC L249: training_steps = 5000
      self.assertEqual(cfg.learning_rate, 1e-5)         # TSC L248: learning_rate = 0.00001
      self.assertEqual(cfg.speed_weight, mu)            # TSC L106-121: Lambda 0 / 0.001
      self.assertEqual(cfg.speed_copies, 10)            # TSC L167: NumRep = 10 per class
      self.assertEqual(cfg.speed_refresh_every, 0)      # TSC L165-179: targets are constants
      self.assertEqual(cfg.speed_targets, "center_mass" if mode == "control" else mode)
      schedule = schedules.lr_schedule(cfg)                 # no rate drop within the 5000 steps
      self.assertAllClose([float(schedule(s)) for s in (0, 2500, 4999)], [1e-5] * 3)
      # New trials: the fine-tuning's stream continues after the parent's 140,000 steps
      # (TSC draws fresh batches and, L44 / L50 / L61, fresh speed noise every step).
      self.assertEqual(cfg.data_offset, 140_000)
      self.assertEqual((cfg.batch_size, cfg.seq_len, cfg.units), (128, 20, 200))

  def test_finetuning_starts_a_fresh_optimizer_from_the_parents_weights(self):
    # TSC L148 builds a new AdamOptimizer and L291 initialises it; only the network's
    # variables come from the parent (L252-262).
    import os  # pylint: disable=g-import-not-at-top
    import tempfile  # pylint: disable=g-import-not-at-top
    from haviv_tf.analysis import control  # pylint: disable=g-import-not-at-top
    tiny = dict(units=8, batch_size=8, train_steps=6, checkpoint_every=6, eval_trials=20,
                eval_delays=(5, 10), jit_compile=False, history_every=3)
    parent_cfg = config.resolve("quick", "mnist_sample", tiny)
    with tempfile.TemporaryDirectory() as tmp:
      parent = os.path.join(tmp, "parent")
      source = train.prepare_workdir(parent_cfg, parent)
      parent_run = train.train(parent_cfg, parent, source, verbose=0)
      self.assertEqual(int(parent_run.model.optimizer.iterations), 6)
      out = os.path.join(tmp, "ft")
      control.finetune(parent, "control", out, steps=2, analyze=False, verbose=0)
      reader = tf.train.load_checkpoint(os.path.join(out, "checkpoints"))
      iterations = [k for k in reader.get_variable_to_shape_map() if "iteration" in k]
      self.assertTrue(iterations)
      self.assertEqual(int(reader.get_tensor(iterations[0])), 2)   # not 6 + 2

  def test_paper_centre_targets_are_the_authors_centres(self):
    # TSC L117-121: CenterMass reads 'Hid20', the class centres of BlackBoxMNIST.py.
    from haviv_tf.probes import slow_points  # pylint: disable=g-import-not-at-top
    from haviv_tf.probes import speed_targets  # pylint: disable=g-import-not-at-top
    keras.utils.set_random_seed(0)
    cfg = config.resolve("paper", "mnist_sample", dict(units=8))
    source = datasets.apply_recipe(datasets.load("mnist_sample"), cfg.data_recipe)
    model = network.build(cfg, source.frame_shape)
    gen = trials.generator_for(source, "train", cfg)
    got, counts = speed_targets.centre_targets(model, gen, 3, "paper", source, cfg)
    x_bar = slow_points.mean_input_features(model, gen, seed=3)
    want, want_counts, _, _ = slow_points.paper_class_centres(model, source, cfg, x_bar, 3)
    np.testing.assert_array_equal(counts, want_counts)
    np.testing.assert_allclose(got, want)
    default, _ = speed_targets.centre_targets(model, gen, 3)
    self.assertFalse(np.allclose(np.nan_to_num(default), np.nan_to_num(got)))
