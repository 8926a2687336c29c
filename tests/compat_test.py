"""Runs written by an older haviv_tf still load, resume and analyse (issue 30, item 6).

tests/fixtures/v1 holds two tiny runs written by commit bd059a0 (how: the docstring of
tests/fixtures/make_v1_fixtures.py) and what that code computed from them (expected.json,
expected.npz): `finished` (trained, evaluated, slow points, SavedModel, back-tracking) and
`half` (stopped after its step-20 checkpoint, as by Ctrl-C). Every test works on a copy in a
temporary directory and compares with those recorded values, so that each check fails if
today's code reads the files differently, not only if it cannot read them.

The command line (`python -m haviv_tf.main`) and the files are the interface tested wherever
possible; the few haviv_tf readers called directly are bound in one place below.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

# -- The only haviv_tf imports and names: module paths change when the package is reorganised
# -- into subpackages; this block is what to update.
from haviv_tf.base import artifacts
from haviv_tf.models import network
from haviv_tf.probes import slow_points
from haviv_tf.training import checkpoints
import main_runner  # pylint: disable=g-bad-import-order

recorded_config = artifacts.recorded_config  # workdir -> its Config (config.json)
build_model = network.build                  # (Config, frame_shape) -> the network
load_weights = checkpoints.load_weights            # (model, workdir) -> step of its newest checkpoint
read_snapshot = checkpoints.read_snapshot          # (model, history snapshot prefix) -> its step
load_slow_points = slow_points.SlowPoints.load  # slow_points.npz -> SlowPoints
# --

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "v1")
# Arrays of a slow-point file that are not per-point fields of SlowPoints.
SLOW_POINT_EXTRAS = ("format_version", "dist_traj_times")
EVAL_TABLES = ("accuracy_by_delay", "full_trial_accuracy_by_delay",
               "per_class_accuracy_by_delay", "per_class_full_trial_accuracy_by_delay",
               "trials_per_delay")
# On the machine and TensorFlow that wrote the fixtures every value is reproduced bit for bit
# (the resumed run's checkpoint included); the tolerance is for another TensorFlow or oneDNN
# build, which may sum in another order.
RTOL, ATOL = 1e-5, 1e-6


# Runs in a fresh interpreter that imports TensorFlow and numpy only: calls the signatures of
# the SavedModel argv[1] on the inputs in argv[2] and writes their outputs to argv[3].
_SAVED_MODEL_LOADER = """
import sys
import numpy as np
import tensorflow as tf
a = dict(np.load(sys.argv[2], allow_pickle=False))
sig = tf.saved_model.load(sys.argv[1]).signatures
served = sig["serving_default"](inputs=tf.constant(a["inputs"]))
stepped = sig["step"](inputs=tf.constant(a["inputs"][:, 3]), state=tf.constant(a["step_state_in"]))
speed = sig["speed"](state=tf.constant(a["step_state_in"]), inputs=tf.constant(a["inputs"][:, 3]))
meta = sig["metadata"]()["metadata_json"].numpy().decode()
assert not [m for m in sys.modules if m.startswith("haviv_tf")], "the SavedModel needs haviv_tf"
np.savez(sys.argv[3], saved_model_logits=served["logits"].numpy(),
         saved_model_states=served["states"].numpy(), step_state=stepped["state"].numpy(),
         step_logits=stepped["logits"].numpy(), speed=speed["speed"].numpy(),
         metadata_json=np.asarray(meta))
"""


def _read_json(path):
  with open(path) as f:
    return json.load(f)


def _cli(args, cwd):
  """`python -m haviv_tf.main ARGS` in `cwd`; the CompletedProcess (it must succeed)."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  proc = main_runner.run(args, cwd=cwd, env=env, timeout=900)
  assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-4000:])
  return proc


def _scalars(logdir, tag):
  """{step: value} of scalar `tag` in the TensorBoard event files under `logdir`."""
  out = {}
  for path in tf.io.gfile.glob(os.path.join(logdir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        if v.tag == tag:
          out[int(event.step)] = float(tf.make_ndarray(v.tensor))
  return out


def _npz(path):
  with np.load(path, allow_pickle=False) as f:
    return {k: f[k] for k in f.files}


class CompatTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.expected = _read_json(os.path.join(FIXTURES, "expected.json"))
    cls.arrays = _npz(os.path.join(FIXTURES, "expected.npz"))
    cls.flags = cls.expected["flags"] + cls.expected["sp_flags"]

  def _copy(self, name):
    """(temporary folder, name): a copy of fixture run `name` as `folder/name`."""
    root = tempfile.mkdtemp(dir=self.get_temp_dir())
    shutil.copytree(os.path.join(FIXTURES, name), os.path.join(root, name))
    return root, name

  def _predict(self, workdir):
    """(step, logits, states) of the package's network restored from `workdir`'s checkpoint
    on the recorded inputs."""
    model = build_model(recorded_config(workdir), tuple(self.expected["frame_shape"]))
    step = load_weights(model, workdir)
    logits, states = model(tf.constant(self.arrays["inputs"]))
    return step, logits.numpy(), states.numpy()

  def test_fixtures_were_written_by_commit_bd059a0(self):
    self.assertEqual(self.expected["commit"][:7], "bd059a0")
    for name in ("finished", "half"):
      record = _read_json(os.path.join(FIXTURES, name, "config.json"))
      self.assertEqual(record["environment"]["code_revision"],
                       {"commit": self.expected["commit"], "dirty": False})

  def test_half_run_resumes_from_its_checkpoint_to_the_uninterrupted_end(self):
    root, name = self._copy("half")
    workdir = os.path.join(root, name)
    history_before = _read_json(os.path.join(workdir, "history", "history.json"))["entries"]
    _cli(self.flags + [f"--workdir={name}"], root)
    # Continued from step 20: training scalars (log_every 10) only after it; a run started
    # over would log steps 10 and 20 again (the fixture holds no TensorBoard logs).
    losses = _scalars(os.path.join(workdir, "tensorboard", "train"), "train/loss")
    self.assertEqual(sorted(losses), [30, 40])
    recorded = self.expected["train_loss_by_step"]
    self.assertTrue(np.isfinite(losses[40]))
    self.assertAllClose([losses[30], losses[40]], [recorded["30"], recorded["40"]],
                        rtol=RTOL, atol=ATOL)
    # The snapshots taken before the interruption are kept; those after it are added as the
    # uninterrupted run took them.
    entries = _read_json(os.path.join(workdir, "history", "history.json"))["entries"]
    self.assertEqual(entries[:len(history_before)], history_before)
    finished_history = _read_json(os.path.join(FIXTURES, "finished", "history",
                                               "history.json"))["entries"]
    self.assertEqual([e["step"] for e in entries], [e["step"] for e in finished_history])
    # The network reached is the uninterrupted run's (weights and Adam state resumed), and
    # so are its evaluation and export.
    step, logits, states = self._predict(workdir)
    self.assertEqual(step, self.expected["final_step"])
    self.assertAllClose(logits, self.arrays["finished_checkpoint_logits"], rtol=RTOL, atol=ATOL)
    self.assertAllClose(states, self.arrays["finished_checkpoint_states"], rtol=RTOL, atol=ATOL)
    results = _read_json(os.path.join(workdir, "results.json"))
    finished = _read_json(os.path.join(FIXTURES, "finished", "results.json"))
    self.assertEqual(results["step"], self.expected["final_step"])
    self.assertEqual(results["accuracy_by_delay"], finished["accuracy_by_delay"])
    served = tf.saved_model.load(os.path.join(workdir, "saved_model")).signatures[
        "serving_default"](inputs=tf.constant(self.arrays["inputs"]))
    self.assertAllClose(served["logits"], self.arrays["saved_model_logits"], rtol=RTOL,
                        atol=ATOL)

  def test_finished_run_evaluates_a_new_delay_and_keeps_the_stored_ones(self):
    root, name = self._copy("finished")
    delay = str(self.expected["extra_delay"])
    _cli([f"--workdir={name}", "--mode=evaluate", f"--eval_delays={delay}"], root)
    results = _read_json(os.path.join(root, name, "results.json"))
    stored = _read_json(os.path.join(FIXTURES, name, "results.json"))
    for table in EVAL_TABLES:
      want = dict(stored[table], **{delay: self.expected["extra_delay_evaluation"][table]})
      self.assertEqual(results[table], want, table)
    self.assertEqual(results["step"], self.expected["final_step"])
    # The slow-point summary of the stored search is left as it was.
    self.assertEqual(results["slow_point_speed"], stored["slow_point_speed"])

  def test_finished_run_searches_its_slow_points_again(self):
    root, name = self._copy("finished")
    _cli([f"--workdir={name}", "--mode=slow_points", "--sp_dir=again"]
         + self.expected["sp_flags"], root)
    for filename in ("slow_points.npz", "slow_points_unique.npz"):
      again = _npz(os.path.join(root, name, "again", filename))
      stored = _npz(os.path.join(FIXTURES, name, filename))
      # Format 3 adds the starting states, inputs, stability and the list of the application's
      # fields; every field of format 2 is still written, with the same values.
      self.assertEqual(sorted(set(again) - set(stored)),
                       ["extra_fields", "init_states", "inputs", "stable"])
      self.assertEqual(sorted(set(stored) - set(again)), [])
      for key, value in stored.items():
        if key == "format_version":
          self.assertEqual(int(again[key]), 3)
          continue
        if value.dtype.kind in "fc":
          self.assertAllClose(again[key], value, rtol=1e-4, atol=1e-5, msg=f"{filename} {key}")
        else:
          self.assertAllEqual(again[key], value, msg=f"{filename} {key}")
    summary = _read_json(os.path.join(root, name, "again", "results.json"))
    stored = _read_json(os.path.join(FIXTURES, name, "results.json"))
    for key in ("num_unique_slow_points", "centre_counts", "slow_point_readout",
                "slow_points_step", "slow_points_format"):
      self.assertEqual(summary[key], stored[key], key)
    # The search settings gained dedup_space since; at its default it is the search v1 ran.
    self.assertEqual(summary["slow_point_config"],
                     dict(stored["slow_point_config"], dedup_space="state"))

  def test_finished_run_keeps_its_backtracking(self):
    # The stored back-tracking is of this network, these slow points and this search: it is
    # recognised and left as it is (a run that does not read it would redo or refuse it).
    root, name = self._copy("finished")
    path = os.path.join(root, name, "backtrack.json")
    before = (os.stat(path).st_mtime_ns, _read_json(path))
    _cli([f"--workdir={name}", "--mode=backtrack"] + self.expected["sp_flags"], root)
    self.assertEqual((os.stat(path).st_mtime_ns, _read_json(path)), before)
    self.assertFalse(os.path.exists(os.path.join(root, name, "backtrack.png")))

  def test_history_snapshots_restore_the_networks_of_their_steps(self):
    # Back-tracking reads these. Snapshot 20 is the network of the half run's checkpoint (the
    # same command, interrupted), snapshot 40 that of the finished run's.
    root, name = self._copy("finished")
    workdir = os.path.join(root, name)
    entries = _read_json(os.path.join(workdir, "history", "history.json"))["entries"]
    self.assertEqual([e["step"] for e in entries], [0, 2, 5, 7, 10, 14, 18, 20, 22, 28, 30, 40])
    model = build_model(recorded_config(workdir), tuple(self.expected["frame_shape"]))
    for e in entries:
      step = read_snapshot(model, os.path.join(workdir, "history", e["path"]))
      self.assertEqual(step, e["step"])
      if step in (self.expected["half_step"], self.expected["final_step"]):
        run = "half" if step == self.expected["half_step"] else "finished"
        logits, states = model(tf.constant(self.arrays["inputs"]))
        self.assertAllClose(logits, self.arrays[f"{run}_checkpoint_logits"], rtol=RTOL,
                            atol=ATOL)
        self.assertAllClose(states, self.arrays[f"{run}_checkpoint_states"], rtol=RTOL,
                            atol=ATOL)

  def test_saved_model_loads_with_tensorflow_alone_and_gives_the_recorded_outputs(self):
    root, name = self._copy("finished")
    out = os.path.join(root, "outputs.npz")
    proc = subprocess.run(
        [sys.executable, "-c", _SAVED_MODEL_LOADER, os.path.join(root, name, "saved_model"),
         os.path.join(FIXTURES, "expected.npz"), out],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True, text=True,
        timeout=600)
    self.assertEqual(proc.returncode, 0, proc.stderr[-4000:])
    got, a = _npz(out), self.arrays
    for key in ("saved_model_logits", "saved_model_states", "step_state", "step_logits",
                "speed"):
      self.assertAllClose(got[key], a[key], rtol=RTOL, atol=ATOL, msg=key)
    self.assertEqual(json.loads(got["metadata_json"].item())["step"],
                     self.expected["saved_model_step"])

  @parameterized.named_parameters(("finished", "finished", "final_step"),
                                  ("half", "half", "half_step"))
  def test_checkpoint_restores_into_the_package_model(self, name, step_key):
    root, name = self._copy(name)
    step, logits, states = self._predict(os.path.join(root, name))
    self.assertEqual(step, self.expected[step_key])
    self.assertAllClose(logits, self.arrays[f"{name}_checkpoint_logits"], rtol=RTOL, atol=ATOL)
    self.assertAllClose(states, self.arrays[f"{name}_checkpoint_states"], rtol=RTOL, atol=ATOL)

  @parameterized.parameters("slow_points.npz", "slow_points_unique.npz")
  def test_slow_points_load_with_the_stored_values(self, filename):
    root, name = self._copy("finished")
    path = os.path.join(root, name, filename)
    points = load_slow_points(path)
    stored = _npz(path)
    fields = sorted(k for k in stored if k not in SLOW_POINT_EXTRAS)
    self.assertNotEmpty(fields)
    self.assertLen(points, len(stored["states"]))
    for key in fields:
      # The task's own per-point fields (readout, init_class, dist_*) load into `extras`.
      value = points.extras[key] if key in points.extras else getattr(points, key)
      np.testing.assert_array_equal(value, stored[key], err_msg=key)
      self.assertEqual(value.dtype, stored[key].dtype, key)
    self.assertEqual(sorted(points.extras), ["dist_centre", "dist_traj", "init_class", "readout"])


if __name__ == "__main__":
  tf.test.main()
