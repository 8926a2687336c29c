"""A finished network saved as weights only (no optimizer state) restores and re-measures exactly.

experiments/grid_files.py `save --weights` writes a run's final weights; `restore --weights`
makes them the run's checkpoint. The restored run's network equals the trained one variable by
variable, and a re-evaluation with the same trials gives the recorded accuracy.
"""

import json
import os
import shutil
import sys

import numpy as np
import pytest
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "experiments"))

import grid_files  # pylint: disable=g-import-not-at-top,wrong-import-position

from haviv_tf.base import artifacts  # pylint: disable=g-import-not-at-top,wrong-import-position
from haviv_tf.training import checkpoints  # pylint: disable=g-import-not-at-top,wrong-import-position
import main_runner  # pylint: disable=g-bad-import-order
from shared_run import copy_run  # pylint: disable=g-bad-import-order
from shared_run import trained_run  # pylint: disable=g-bad-import-order,unused-import

# The shared run (tests/shared_run.py): 20 steps, evaluated with 40 trials at 5, 10, 19, 100.


def _cli(args):
  return main_runner.run(args, timeout=300)


def _model_values(prefix):
  reader = tf.train.load_checkpoint(prefix)
  return {k.split("/.ATTRIBUTES")[0]: reader.get_tensor(k)
          for k in reader.get_variable_to_shape_map()
          if k.startswith("model/") and not k.startswith("model/optimizer")}


def test_weights_restore_the_network_and_its_recorded_accuracy(trained_run, tmp_path):  # pylint: disable=redefined-outer-name
  trained = copy_run(trained_run, tmp_path, "trained")

  prefix = grid_files.write_final_weights(trained)
  reader = tf.train.load_checkpoint(prefix)
  assert not any("optimizer" in k for k in reader.get_variable_to_shape_map())

  restored = str(tmp_path / "restored")
  os.makedirs(os.path.join(restored, "weights"))
  for name in ("config.json", "results.json"):
    shutil.copy(os.path.join(trained, name), restored)
  for f in os.listdir(os.path.join(trained, "weights")):
    shutil.copy(os.path.join(trained, "weights", f), os.path.join(restored, "weights"))
  assert grid_files.weights_to_checkpoint(restored) == 20
  assert grid_files.weights_to_checkpoint(restored) is None  # it has a checkpoint now

  before = _model_values(checkpoints.checkpoint_paths(trained)[0])
  after = _model_values(checkpoints.checkpoint_paths(restored)[0])
  assert before.keys() == after.keys() and before
  for k, v in before.items():
    np.testing.assert_array_equal(v, after[k], err_msg=k)

  proc = _cli(["--mode=evaluate", f"--workdir={restored}", "--eval_delays=5,10",
               "--eval_trials=40", "--overwrite"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  want = artifacts.read_json(os.path.join(trained, "results.json"))["accuracy_by_delay"]
  got = artifacts.read_json(os.path.join(restored, "results.json"))["accuracy_by_delay"]
  assert got["5"] == want["5"] and got["10"] == want["10"]

  # The re-check on the shipped sample: written once, recomputed equal from the copied weights.
  check = grid_files.write_check(trained)
  assert check["step"] == 20 and check["trials"] == grid_files.CHECK_TRIALS
  assert 0.0 <= check["accuracy"] <= 1.0
  assert grid_files.write_check(trained) == check  # never recomputed over the stored one
  again = grid_files.check_accuracy(restored)
  assert again["accuracy"] == check["accuracy"]
  assert again["per_class_accuracy"] == check["per_class_accuracy"]


def test_weights_never_replace_a_checkpoint(trained_run, tmp_path):  # pylint: disable=redefined-outer-name
  trained = copy_run(trained_run, tmp_path, "trained")
  prefix = grid_files.write_final_weights(trained)
  cfg = artifacts.recorded_config(trained)
  with pytest.raises(artifacts.RunError, match="already has a checkpoint"):
    checkpoints.checkpoint_from_weights(cfg, trained, prefix, (28, 28, 1))
  json.dumps(cfg.to_dict())  # the recorded config still reads
