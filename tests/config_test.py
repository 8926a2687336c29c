"""Tests for haviv_tf.base.config: presets, resolve(), validate() and the JSON round trip."""

import dataclasses
import json

from absl.testing import parameterized
import tensorflow as tf

from haviv_tf.base import config


class PresetTest(tf.test.TestCase, parameterized.TestCase):

  def test_paper_mnist_matches_the_paper(self):
    cfg = config.preset("paper", "mnist")
    self.assertEqual(cfg.learning_rate, 1e-5)
    self.assertEqual(cfg.batch_size, 128)
    self.assertEqual(cfg.train_steps, 140_000)
    self.assertEqual(cfg.lr_decay_step, 119_998)  # first update at lr / 10: 120,000
    self.assertEqual(cfg.units, 200)
    self.assertEqual(cfg.dataset, "mnist")
    self.assertEqual(cfg.preset, "paper")
    self.assertEqual(cfg.seq_len, 20)
    self.assertEqual(cfg.min_delay, 4)
    self.assertEqual(cfg.report_weight, 20.0)

  def test_paper_cifar10_is_larger_and_longer(self):
    cfg = config.preset("paper", "cifar10")
    self.assertEqual(cfg.units, 512)
    self.assertEqual(cfg.learning_rate, 1e-4)
    self.assertEqual(cfg.batch_size, 64)
    self.assertEqual(cfg.train_steps, 300_000)
    self.assertEqual(cfg.lr_decay_step, 279_998)
    self.assertEqual(cfg.dataset, "cifar10")

  @parameterized.parameters(("mnist", 3e-3, 3_000), ("mnist_sample", 3e-3, 3_000),
                            ("cifar10", 3e-4, 4_000))
  def test_quick_preset_rate_and_length(self, dataset, learning_rate, steps):
    cfg = config.preset("quick", dataset)
    self.assertEqual(cfg.learning_rate, learning_rate)
    self.assertEqual(cfg.train_steps, steps)
    self.assertLess(cfg.lr_decay_step, cfg.train_steps)
    self.assertEqual(cfg.preset, "quick")
    self.assertEqual(cfg.dataset, dataset)
    self.assertEqual(cfg.units, 512 if dataset == "cifar10" else 200)

  @parameterized.parameters(("paper", "mnist"), ("paper", "cifar10"), ("quick", "mnist"),
                            ("quick", "cifar10"), ("quick", "mnist_sample"))
  def test_every_preset_is_valid(self, name, dataset):
    config.validate(config.preset(name, dataset))  # does not raise

  def test_mnist_sample_uses_the_mnist_settings(self):
    self.assertEqual(config.preset("paper", "mnist_sample"),
                     dataclasses.replace(config.preset("paper", "mnist"), dataset="mnist_sample"))

  def test_unknown_preset_or_dataset_is_rejected(self):
    with self.assertRaisesRegex(ValueError, r"preset 'fast'"):
      config.preset("fast")
    with self.assertRaisesRegex(ValueError, r"dataset 'svhn'"):
      config.preset("paper", "svhn")


class ResolveTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(
      ("paper", "mnist", 14_000, 12_000),
      ("paper", "mnist", 7_000, 6_000),
      ("paper", "cifar10", 30_000, 28_000),
      ("quick", "mnist", 6_000, 5_200),
      ("quick", "mnist", 1, 1),
  )
  def test_overriding_train_steps_rescales_lr_decay_step(self, name, dataset, steps, decay):
    cfg = config.resolve(name, dataset, {"train_steps": steps})
    self.assertEqual(cfg.train_steps, steps)
    self.assertEqual(cfg.lr_decay_step, decay)

  def test_explicit_lr_decay_step_is_kept(self):
    cfg = config.resolve("paper", "mnist", {"train_steps": 14_000, "lr_decay_step": 500})
    self.assertEqual(cfg.lr_decay_step, 500)

  def test_none_overrides_are_ignored(self):
    cfg = config.resolve("paper", "mnist", {"train_steps": None, "units": None, "arch": "lstm"})
    self.assertEqual(cfg, dataclasses.replace(config.preset("paper", "mnist"), arch="lstm"))

  def test_overrides_are_applied_on_top_of_the_dataset_preset(self):
    cfg = config.resolve("paper", "cifar10", {"units": 64, "protocol": "decu"})
    self.assertEqual(cfg.units, 64)
    self.assertEqual(cfg.protocol, "decu")
    self.assertEqual(cfg.learning_rate, 1e-4)

  def test_invalid_override_is_rejected(self):
    with self.assertRaisesRegex(ValueError, r"`batch_size` must be a positive integer, got 0"):
      config.resolve("quick", "mnist", {"batch_size": 0})


class ValidateTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(
      ("protocol", "curriculum"), ("dataset", "svhn"), ("arch", "rnn"), ("preset", "slow"),
      ("readout", "softmax"), ("lr_schedule", "linear"),
      ("trial_backend", "jax"))
  def test_bad_choice_names_field_and_value(self, field, value):
    cfg = dataclasses.replace(config.PAPER, **{field: value})
    with self.assertRaises(ValueError) as cm:
      config.validate(cfg)
    message = str(cm.exception)
    self.assertIn(field, message)
    self.assertIn(repr(value), message)

  @parameterized.product(
      field=("units", "batch_size", "train_steps", "seq_len", "min_delay", "eval_trials",
             "checkpoint_every", "keep_checkpoints", "log_every", "lr_decay_step"),
      value=(0, -3))
  def test_non_positive_integer_names_field_and_value(self, field, value):
    cfg = dataclasses.replace(config.PAPER, **{field: value})
    with self.assertRaisesRegex(ValueError, rf"`{field}` must be a positive integer, got {value}"):
      config.validate(cfg)

  @parameterized.parameters(("units", 2.5), ("batch_size", True), ("train_steps", "100"))
  def test_non_integer_size_is_rejected(self, field, value):
    cfg = dataclasses.replace(config.PAPER, **{field: value})
    with self.assertRaisesRegex(ValueError, f"`{field}`"):
      config.validate(cfg)

  @parameterized.product(field=("learning_rate", "lr_decay_factor", "report_weight"),
                         value=(0.0, -1e-3, float("nan"), float("inf")))
  def test_non_positive_or_non_finite_rate_is_rejected(self, field, value):
    cfg = dataclasses.replace(config.PAPER, **{field: value})
    with self.assertRaisesRegex(ValueError, rf"`{field}` must be a positive finite number"):
      config.validate(cfg)

  def test_seq_len_must_exceed_min_delay(self):
    with self.assertRaisesRegex(ValueError, r"`seq_len` \(4\) must exceed `min_delay` \(4\)"):
      config.validate(dataclasses.replace(config.PAPER, seq_len=4))
    config.validate(dataclasses.replace(config.PAPER, seq_len=5, protocol="vocu"))

  def test_decu_needs_seq_len_of_at_least_6(self):
    with self.assertRaisesRegex(ValueError, r"at least 6 for decu"):
      config.validate(dataclasses.replace(config.PAPER, seq_len=5, protocol="decu"))

  @parameterized.parameters(-1, 2**31, 1.5)
  def test_bad_seed_is_rejected(self, seed):
    with self.assertRaisesRegex(ValueError, r"`seed`"):
      config.validate(dataclasses.replace(config.PAPER, seed=seed))

  def test_empty_eval_delays_is_rejected(self):
    with self.assertRaisesRegex(ValueError, r"`eval_delays` must name at least one delay"):
      config.validate(dataclasses.replace(config.PAPER, eval_delays=()))

  @parameterized.parameters((3,), (5, 2.0), (True,))
  def test_eval_delay_below_min_delay_or_not_int_is_rejected(self, *delays):
    with self.assertRaisesRegex(ValueError, r"`eval_delays` entries"):
      config.validate(dataclasses.replace(config.PAPER, eval_delays=delays))


class SerialisationTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(("paper", "mnist"), ("quick", "cifar10"))
  def test_json_round_trip_gives_an_equal_config(self, name, dataset):
    cfg = dataclasses.replace(config.preset(name, dataset), arch="lstm", seed=7,
                              eval_delays=(4, 9), data_dir="/some/where")
    text = cfg.to_json()
    back = config.Config.from_dict(json.loads(text))
    self.assertEqual(back, cfg)
    self.assertIsInstance(back.eval_delays, tuple)
    self.assertEqual(back.to_json(), text)

  def test_to_dict_lists_every_field_with_json_types(self):
    d = config.PAPER.to_dict()
    self.assertEqual(set(d), {f.name for f in dataclasses.fields(config.Config)})
    self.assertIsInstance(d["eval_delays"], list)
    self.assertEqual(d["eval_delays"], list(config.PAPER.eval_delays))
    self.assertEqual(json.loads(config.PAPER.to_json()), d)

  def test_from_dict_accepts_a_partial_dict(self):
    cfg = config.Config.from_dict({"units": 8, "eval_delays": [6]})
    self.assertEqual(cfg, dataclasses.replace(config.Config(), units=8, eval_delays=(6,)))

  def test_a_record_without_trial_backend_was_made_with_the_tf_sampler(self):
    # Runs recorded before the numpy sampler existed drew their trials with the TF ops; reading
    # their config.json must say so, or a resumed run would switch streams.
    d = config.QUICK.to_dict()
    del d["trial_backend"]
    self.assertEqual(config.Config.from_record(d).trial_backend, "tf")
    self.assertEqual(config.Config.from_dict(d).trial_backend, "numpy")
    self.assertEqual(config.Config.from_record(config.QUICK.to_dict()), config.QUICK)

  def test_from_dict_rejects_unknown_fields(self):
    d = config.PAPER.to_dict()
    d["hidden_units"] = 3
    with self.assertRaisesRegex(ValueError, r"unknown config fields \['hidden_units'\]"):
      config.Config.from_dict(d)


if __name__ == "__main__":
  tf.test.main()
