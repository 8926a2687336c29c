"""XLA-compiled steps and the mixed_bfloat16 front end: same computation, float tolerance."""

import numpy as np
import pytest
import tensorflow as tf

from haviv_tf.base import config as config_lib
from haviv_tf.task import datasets
from haviv_tf.probes import evaluation
from haviv_tf.models import cnn
from haviv_tf.models import network
from haviv_tf.training import train
from haviv_tf.task import trials

_SOURCE = datasets.load("mnist_sample")


def _cfg(**overrides):
  return config_lib.resolve("quick", "mnist_sample", dict(
      dict(units=16, batch_size=16, train_steps=20, checkpoint_every=10, log_every=5,
           protocol="decu", history_every=0), **overrides))


_TRAINED = {}   # config JSON -> the first run of it in this process (see _train)


def _train(tmp_path, name, fresh=False, **overrides):
  """A 20-step run of _cfg(**overrides); the same config is trained once per process unless
  `fresh` (the determinism test compares a fresh run with the first)."""
  cfg = _cfg(**overrides)
  key = repr(sorted(cfg.to_dict().items()))
  if fresh or key not in _TRAINED:
    run = train.train(cfg, str(tmp_path / name), _SOURCE, verbose=0)
    if fresh:
      return run
    _TRAINED[key] = run
  return _TRAINED[key]


@pytest.mark.parametrize("arch, speed", [("gru", False), ("lstm", False), ("gru", True)])
def test_jit_and_plain_training_agree_to_float_tolerance(tmp_path, arch, speed):
  extra = dict(speed_weight=1e-2, speed_targets="center_mass", speed_refresh_every=10,
               speed_copies=1) if speed else {}
  runs = {jit: _train(tmp_path, f"jit{jit}", arch=arch, jit_compile=jit, **extra)
          for jit in (True, False)}
  assert runs[True].model.jit_compile is True and runs[False].model.jit_compile is False
  for a, b in zip(runs[True].model.trainable_variables, runs[False].model.trainable_variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=2e-4, atol=2e-5, err_msg=a.name)
    assert not np.array_equal(a.numpy(), a.numpy() * 0)  # trained, not zero
  assert runs[True].step == runs[False].step == 20
  if arch == "gru" and not speed:
    # XLA training is deterministic: a fresh run of the same config ends with the same weights.
    # (Here rather than in a test of its own, which pytest-xdist may send to the other worker,
    # where the first XLA run would be trained again.)
    fresh = _train(tmp_path, "fresh", fresh=True, arch=arch, jit_compile=True)
    for x, y in zip(runs[True].model.trainable_variables, fresh.model.trainable_variables):
      np.testing.assert_array_equal(x.numpy(), y.numpy())


def _batch(cfg, seed=0):
  gen = trials.generator_for(_SOURCE, "train", cfg)
  b = gen.sample(tf.constant([seed, 1], tf.int64), cfg.batch_size, cfg.seq_len)
  return b["inputs"], {k: b[k] for k in ("labels", "weights", "class_mask")}


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_bfloat16_front_end_only_in_training_calls(arch):
  cfg = _cfg(arch=arch)
  tf.keras.utils.set_random_seed(0)
  f32 = network.build(cfg, _SOURCE.frame_shape)
  bf16 = network.build(config_lib.Config.from_dict(dict(cfg.to_dict(), precision="mixed_bfloat16")),
                      _SOURCE.frame_shape)
  bf16.set_weights(f32.get_weights())
  inputs, _ = _batch(cfg)
  # Evaluation, analysis and export calls are float32 and identical.
  for training in (False,):
    a, sa = f32(inputs, training=training)
    b, sb = bf16(inputs, training=training)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  state = tf.random.normal([4, f32.state_size])
  np.testing.assert_array_equal(f32.step(state, inputs[:4, 0])[0].numpy(),
                                bf16.step(state, inputs[:4, 0])[0].numpy())
  # A training call runs the projection in bfloat16: close, not equal; states stay float32.
  a, sa = f32(inputs, training=True)
  b, sb = bf16(inputs, training=True)
  assert sb.dtype == tf.float32 and b.dtype == tf.float32
  assert not np.array_equal(sa.numpy(), sb.numpy())
  np.testing.assert_allclose(sa.numpy(), sb.numpy(), atol=0.05)


def test_bfloat16_cnn_front_end_is_close_to_float32():
  frame_shape = (32, 32, 3)
  tf.keras.utils.set_random_seed(0)
  enc = cnn.ConvEncoder(frame_shape)
  enc.build((None, 32 * 32 * 3))
  frames = tf.random.uniform([4, 32 * 32 * 3])
  a = enc(frames).numpy()
  b = enc(frames, low_precision=True)
  assert b.dtype == tf.float32
  assert not np.array_equal(a, b.numpy())
  np.testing.assert_allclose(b.numpy(), a, atol=0.05 * np.abs(a).max())


def test_bfloat16_training_runs_and_gradients_are_float32(tmp_path):
  run = _train(tmp_path, "bf16", precision="mixed_bfloat16")
  assert run.step == 20
  assert all(v.dtype == tf.float32 for v in run.model.trainable_variables)
  assert all(np.all(np.isfinite(v.numpy())) for v in run.model.trainable_variables)


def test_evaluator_compiled_or_not_evaluates_the_same_number_of_trials():
  cfg = _cfg()
  model = network.build(cfg, _SOURCE.frame_shape)
  gen = trials.generator_for(_SOURCE, "test", cfg)
  out = {jit: evaluation.Evaluator(model, gen, cfg.seq_len, jit_compile=jit).evaluate(
      [5, 30], 20, 0) for jit in (False, True)}
  for jit in (False, True):
    assert out[jit]["trials_per_delay"] == {"5": 20, "30": 20}
    for acc in out[jit]["accuracy_by_delay"].values():
      assert 0.0 <= acc <= 1.0
