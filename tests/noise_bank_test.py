"""Noise banks: the trials they make, the CNN's de-duplicated encoding and the evaluator's
encoded bank, each against the frame-by-frame computation it replaces."""

import dataclasses
import tempfile

from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from haviv_tf.base import config as config_lib
from haviv_tf.task import datasets
from haviv_tf.task import losses
from haviv_tf.probes import evaluation
from haviv_tf.probes import predictors
from haviv_tf.probes import rollouts
from haviv_tf.models import network
from haviv_tf.training import checkpoints
from haviv_tf.training import train
from haviv_tf.task import trials

_SHAPE = (8, 8, 3)  # the smallest frames the CNN's three 2x2 poolings take


def _source(n=60, seed=0):
  rng = np.random.default_rng(seed)

  def split():
    images = rng.integers(0, 256, (n,) + _SHAPE, dtype=np.uint8)
    return datasets.Split(images, np.arange(n, dtype=np.int32) % 10)
  return datasets.Source("cifar10", split(), split(), np.full([3], 0.45, np.float32),
                         np.full([3], 0.25, np.float32), "synthetic")


def _model(arch="gru", seed=0):
  keras.utils.set_random_seed(seed)
  model = network.DelayedClassifier(arch, units=6, frame_shape=_SHAPE, readout="linear",
                                   encoder="cnn")
  model.head.kernel.assign(model.head.kernel * 30.0)  # predictions vary across trials and steps
  return model


class TrialsTest(tf.test.TestCase):

  def test_noise_comes_from_the_bank_of_its_seed(self):
    src = _source()
    gen = trials.TrialGenerator(src.train, src.mean, src.std, noise_bank=5)
    seed = tf.constant([3, 4], tf.int64)
    bank = gen.noise_bank_frames(seed).numpy()
    self.assertEqual(bank.shape, (5, gen.frame_size))
    seen = set()
    for t in range(4):
      frames = gen.noise(seed, t, 30).numpy()
      idx = gen.noise_bank_index(seed, t, 30).numpy()
      np.testing.assert_array_equal(frames, bank[idx])
      seen.update(idx.tolist())
    self.assertEqual(seen, set(range(5)))
    seq = gen.noise_sequence(seed, 4, 30).numpy()
    for t in range(4):
      np.testing.assert_array_equal(seq[:, t], gen.noise(seed, t, 30).numpy())
    other = gen.noise_bank_frames(tf.constant([3, 5], tf.int64)).numpy()
    self.assertFalse(np.any(np.all(other[:, None] == bank[None], axis=-1)))

  def test_batch_holds_its_stimuli_and_at_most_bank_noise_images(self):
    src = _source()
    gen = trials.TrialGenerator(src.train, src.mean, src.std, noise_bank=7)
    b = gen.sample(tf.constant([1, 2], tf.int64), 16, 10)
    frames = b["inputs"].numpy()[..., :-1].reshape(16 * 10, -1)
    self.assertLessEqual(len(np.unique(frames, axis=0)), 16 + 7)
    plain = trials.TrialGenerator(src.train, src.mean, src.std)
    frames = plain.sample(tf.constant([1, 2], tf.int64), 16, 10)["inputs"].numpy()
    # without a bank every noise frame is an image of its own (stimuli may repeat)
    self.assertGreaterEqual(len(np.unique(frames[..., :-1].reshape(160, -1), axis=0)), 160 - 16)

  def test_speed_noise_is_fresh_and_numpy_backend_refuses_a_bank(self):
    src = _source()
    gen = trials.TrialGenerator(src.train, src.mean, src.std, noise_bank=3)
    cfg = config_lib.resolve("quick", "mnist_sample", dict(seq_len=8, protocol="nacu"))
    from haviv_tf.task import curricula  # pylint: disable=g-import-not-at-top
    cur = curricula.for_config(cfg)
    _, targets = next(iter(gen.training_dataset(0, 4, 8, cur, speed_noise=12)))
    self.assertEqual(len(np.unique(targets["speed_noise"].numpy(), axis=0)), 12)
    with self.assertRaisesRegex(ValueError, "needs backend tf"):
      gen.training_dataset(0, 4, 8, cur, backend="numpy")

  def test_only_the_training_split_gets_the_bank(self):
    cfg = dataclasses.replace(config_lib.preset("quick", "cifar10"), noise_bank=9)
    self.assertEqual(config_lib.preset("quick", "cifar10").noise_bank, 256)
    self.assertEqual(trials.generator_for(_source(), "train", cfg).noise_bank, 9)
    self.assertEqual(trials.generator_for(_source(), "test", cfg).noise_bank, 0)


class DedupTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters("gru", "lstm")
  def test_dedup_gives_the_same_loss_and_gradients(self, arch):
    src = _source()
    gen = trials.TrialGenerator(src.train, src.mean, src.std, noise_bank=4)
    b = gen.sample(tf.constant([0, 1], tf.int64), 8, 9)
    model = _model(arch)
    model.compile(loss=losses.MaskedNullLabel("weights", 0.0, "hard"))

    def loss_and_grads(dedup):
      model.dedup_frames = dedup
      with tf.GradientTape() as tape:
        loss, _, _ = model.task_loss(b["inputs"], b, training=True)
      return loss, tape.gradient(loss, model.trainable_variables)

    loss0, grads0 = loss_and_grads(False)
    loss1, grads1 = loss_and_grads(True)
    self.assertAllClose(loss0, loss1, rtol=1e-5, atol=1e-6)
    for g0, g1 in zip(grads0, grads1):
      self.assertAllClose(g0, g1, rtol=1e-4, atol=1e-6)
    self.assertNotAllClose(grads0[0], tf.zeros_like(grads0[0]))

  def test_encode_dedup_matches_every_frame(self):
    model = _model()
    frames = tf.random.uniform([3, _SHAPE[0] * _SHAPE[1] * 3])
    inputs = tf.concat([tf.gather(frames, [0, 1, 0, 2, 1, 0]), tf.ones([6, 1])], -1)
    self.assertAllClose(model.encode(inputs, dedup=True), model.encode(inputs), atol=1e-5)

  def test_training_run_with_a_bank_dedups_and_trains(self):
    cfg = config_lib.resolve("quick", "cifar10", dict(
        units=4, batch_size=4, seq_len=6, train_steps=3, protocol="nacu", noise_bank=5,
        trial_backend="tf",
        jit_compile=False, eval_delays=(5,), eval_trials=10, checkpoint_every=3))
    with tempfile.TemporaryDirectory() as workdir:
      run = train.train(cfg, workdir, _source(), verbose=0)
      self.assertTrue(run.model.dedup_frames)
      self.assertEqual(run.step, 3)
    with tempfile.TemporaryDirectory() as workdir:
      plain = checkpoints.Run(dataclasses.replace(cfg, noise_bank=0), workdir, _SHAPE)
      self.assertFalse(plain.model.dedup_frames)


class EvaluatorBankTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(("gru", 5), ("lstm", 30))
  def test_encoded_bank_matches_frame_by_frame_trials(self, arch, delay):
    """The evaluator's encoded bank of K gives what a generator with a bank of K makes when
    every frame goes through the CNN."""
    src = _source()
    model = _model(arch, seed=2)
    plain = trials.TrialGenerator(src.test, src.mean, src.std)
    banked = trials.TrialGenerator(src.test, src.mean, src.std, noise_bank=6)
    want = evaluation.Evaluator(model, banked, 8).evaluate([delay], 40, 5)
    got = evaluation.Evaluator(model, plain, 8, noise_bank=6).evaluate([delay], 40, 5)
    for key in ("accuracy_by_delay", "full_trial_accuracy_by_delay"):
      self.assertEqual(got[key], want[key])
    self.assertEqual(got["per_class_accuracy_by_delay"], want["per_class_accuracy_by_delay"])
    self.assertBetween(got["accuracy_by_delay"][str(delay)], 0.0, 1.0)

  def test_bank_needs_a_cnn_and_for_config_picks_it(self):
    src = _source()
    keras.utils.set_random_seed(0)
    mlp = network.DelayedClassifier("gru", units=4, frame_shape=_SHAPE)
    with self.assertRaisesRegex(ValueError, "no CNN"):
      evaluation.Evaluator(mlp, trials.TrialGenerator(src.test, src.mean, src.std), 8,
                           noise_bank=4)
    cfg = config_lib.preset("quick", "cifar10")  # trained with a bank of 256
    self.assertEqual(evaluation.for_config(_model(), src, cfg).noise_bank,
                     evaluation.EVAL_NOISE_BANK)
    plain = dataclasses.replace(cfg, noise_bank=0)
    self.assertEqual(evaluation.for_config(_model(), src, plain).noise_bank, 0)


class CloudBankTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters("gru", "lstm")
  def test_encoded_bank_cloud_matches_frame_by_frame_trials(self, arch):
    """The cloud's encoded bank of K gives the states a generator with a bank of K makes when
    every frame goes through the CNN."""
    src = _source()
    model = _model(arch, seed=3)
    plain = trials.TrialGenerator(src.test, src.mean, src.std)
    banked = trials.TrialGenerator(src.test, src.mean, src.std, noise_bank=6)
    want = predictors.trajectory_cloud(model, banked, (2, 9), per_class=3, seed=4, batch_size=20)
    got = predictors.trajectory_cloud(model, plain, (2, 9), per_class=3, seed=4, batch_size=20,
                                      noise_bank=6)
    fresh = predictors.trajectory_cloud(model, plain, (2, 9), per_class=3, seed=4,
                                        batch_size=20)
    self.assertAllClose(got.states, want.states, atol=1e-5)
    self.assertAllClose(got.lo, want.lo, atol=1e-5)
    self.assertAllClose(got.hi, want.hi, atol=1e-5)
    self.assertNotAllClose(fresh.states[1], got.states[1])     # the bank is not fresh noise
    self.assertEqual(got.correct.shape, (2, 30))

  def test_pipeline_uses_a_bank_for_a_cnn_trained_with_one(self):
    cfg = config_lib.preset("quick", "cifar10")
    self.assertEqual(rollouts.noise_bank_for(cfg, _model()), rollouts.EVAL_NOISE_BANK)
    self.assertEqual(rollouts.noise_bank_for(dataclasses.replace(cfg, noise_bank=0), _model()), 0)
    with self.assertRaisesRegex(ValueError, "non-negative"):
      predictors.DiagnosticsConfig(noise_bank=-1)
    keras.utils.set_random_seed(0)
    mlp = network.DelayedClassifier("gru", units=4, frame_shape=_SHAPE)
    with self.assertRaisesRegex(ValueError, "no CNN"):
      rollouts.Rollout(mlp, trials.TrialGenerator(_source().test, np.zeros(3), np.ones(3)), 4)


class ConfigTest(parameterized.TestCase):

  @parameterized.parameters(
      (dict(noise_bank=-1), "non-negative integer"),
      (dict(noise_bank=8, trial_backend="numpy"), "needs trial_backend tf"),
      (dict(noise_bank=8, trial_backend="tf", jit_compile=True), "XLA cannot compile"))
  def test_bad_bank_is_refused(self, overrides, message):
    with self.assertRaisesRegex(config_lib.InputError, message):
      config_lib.resolve("quick", "cifar10", overrides)


if __name__ == "__main__":
  tf.test.main()
