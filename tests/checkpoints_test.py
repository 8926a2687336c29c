"""Checkpoints that survive damage: fallback on restore, verified saves, pruning after them."""

import os

from absl import logging
import numpy as np
import pytest
import tensorflow as tf

from haviv_tf.base import artifacts
from haviv_tf.base import config as config_lib
from haviv_tf.task import datasets
from haviv_tf.training import checkpoints

_SOURCE = datasets.load("mnist_sample")


def _cfg(**overrides):
  return config_lib.resolve("quick", "mnist_sample", dict(
      dict(units=8, batch_size=8, train_steps=50, keep_checkpoints=2), **overrides))


def _run(workdir, **overrides):
  return checkpoints.Run(_cfg(**overrides), str(workdir), _SOURCE.frame_shape)


def _save_at(run, step):
  run.optimizer.iterations.assign(step)
  run.model.cell.bias.assign(tf.fill(run.model.cell.bias.shape, float(step)))
  return run.save()


def _damage(prefix, how):
  data = prefix + ".data-00000-of-00001"
  if how == "truncate_data":
    with open(data, "r+b") as f:
      f.truncate(os.path.getsize(data) // 2)
  elif how == "flip_data":
    raw = bytearray(open(data, "rb").read())
    for i in range(0, len(raw), 97):
      raw[i] ^= 0xFF
    open(data, "wb").write(bytes(raw))
  elif how == "garbage_index":
    open(prefix + ".index", "wb").write(b"not a checkpoint")
  elif how == "empty_index":
    open(prefix + ".index", "wb").close()
  else:
    raise AssertionError(how)


def test_saves_keep_the_newest_and_name_the_latest(tmp_path):
  run = _run(tmp_path)
  for step in (10, 20, 30):
    _save_at(run, step)
  names = sorted(f for f in os.listdir(tmp_path / "checkpoints") if f.endswith(".index"))
  assert names == ["ckpt-20.index", "ckpt-30.index"]
  assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-30")
  state = tf.train.get_checkpoint_state(str(tmp_path / "checkpoints"))
  assert [p.rsplit("-", 1)[1] for p in state.all_model_checkpoint_paths] == ["20", "30"]


def test_a_save_that_does_not_read_back_deletes_nothing(tmp_path, monkeypatch):
  run = _run(tmp_path)
  _save_at(run, 10)
  _save_at(run, 20)

  def broken_write(self, prefix, options=None):  # writes a checkpoint that cannot be read
    del self, options
    open(prefix + ".index", "wb").write(b"torn")
    return prefix
  monkeypatch.setattr(tf.train.Checkpoint, "write", broken_write)
  with pytest.raises(artifacts.RunError, match="does not read back"):
    _save_at(run, 30)
  for step in (10, 20):
    assert os.path.exists(tmp_path / "checkpoints" / f"ckpt-{step}.index")
  assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-20")


@pytest.mark.parametrize("how", ["truncate_data", "flip_data", "garbage_index", "empty_index"])
def test_restore_falls_back_to_the_newest_readable_checkpoint(tmp_path, how, monkeypatch):
  run = _run(tmp_path, keep_checkpoints=3)
  paths = [_save_at(run, step) for step in (10, 20, 30)]
  _damage(paths[-1], how)
  warnings = []
  monkeypatch.setattr(logging, "warning", lambda msg, *a: warnings.append(msg % a))
  fresh = _run(tmp_path, keep_checkpoints=3)
  assert fresh.restore() == 20
  np.testing.assert_array_equal(fresh.model.cell.bias.numpy(), 20.0)
  assert any("skipped checkpoint" in w and "ckpt-30" in w for w in warnings), warnings
  # load_weights (the analysis modes' reader) falls back likewise.
  model = checkpoints.Run(_cfg(), str(tmp_path / "other"), _SOURCE.frame_shape).model
  assert checkpoints.load_weights(model, str(tmp_path)) == 20
  # Nothing was deleted by reading.
  assert all(os.path.exists(p + ".index") for p in paths)


def test_no_readable_checkpoint_is_one_run_error_naming_each(tmp_path):
  run = _run(tmp_path)
  paths = [_save_at(run, step) for step in (10, 20)]
  _damage(paths[0], "truncate_data")
  _damage(paths[1], "garbage_index")
  with pytest.raises(artifacts.RunError) as e:
    _run(tmp_path).restore()
  message = str(e.value)
  assert "\n" not in message and "ckpt-10" in message and "ckpt-20" in message
  assert "can be read" in message


def test_fallback_then_training_overwrites_the_damaged_newer_checkpoint(tmp_path):
  run = _run(tmp_path, keep_checkpoints=2)
  paths = [_save_at(run, step) for step in (10, 20)]
  _damage(paths[1], "truncate_data")
  fresh = _run(tmp_path, keep_checkpoints=2)
  assert fresh.restore() == 10
  _save_at(fresh, 20)  # the step the damaged one held: rewritten, verified
  checkpoints.verify_checkpoint(paths[1])
  assert os.path.exists(paths[0] + ".index")
