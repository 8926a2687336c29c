"""Tests for haviv_tf.analysis.export: the SavedModel loads and runs in a process without haviv_tf.

Each SavedModel is checked in a subprocess that imports only tensorflow and numpy; its outputs
travel back through an npz file and are compared with the in-memory model.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import tensorflow as tf

from haviv_tf.base import config as config_lib
from haviv_tf.task import datasets
from haviv_tf.analysis import export
from haviv_tf.task import losses
from haviv_tf.models import network

_ARCHS = ("gru", "lstm")
_EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples",
                        "find_slow_points_from_savedmodel.py")

# Runs in a fresh interpreter: loads each SavedModel, calls every signature on the inputs of
# argv[1] and writes the outputs to argv[2].
_LOADER = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    data = dict(np.load(sys.argv[1], allow_pickle=False))
    out = {}
    for arch in ("gru", "lstm"):
      loaded = tf.saved_model.load(data[arch + "_path"].item())
      sig = loaded.signatures
      for t in ("long", "short"):
        res = sig["serving_default"](inputs=tf.constant(data[arch + "_inputs_" + t]))
        out[arch + "_logits_" + t] = res["logits"].numpy()
        out[arch + "_states_" + t] = res["states"].numpy()
      res = sig["run_from_state"](inputs=tf.constant(data[arch + "_inputs_short"]),
                                  initial_state=tf.constant(data[arch + "_state"]))
      out[arch + "_from_state"] = res["states"].numpy()
      res = sig["step"](inputs=tf.constant(data[arch + "_frame"]),
                        state=tf.constant(data[arch + "_state"]))
      out[arch + "_step_state"], out[arch + "_step_logits"] = (res["state"].numpy(),
                                                               res["logits"].numpy())
      res = sig["speed"](state=tf.constant(data[arch + "_state"]),
                         inputs=tf.constant(data[arch + "_frame"]))
      out[arch + "_speed"], out[arch + "_q"] = res["speed"].numpy(), res["q"].numpy()
      for k, v in sig["metadata"]().items():
        out[arch + "_meta_" + k] = v.numpy()
      out[arch + "_attr_state_size"] = loaded.state_size.numpy()
    assert "haviv_tf" not in sys.modules, "the SavedModel pulled in haviv_tf"
    np.savez(sys.argv[2], **out)
""")


def _env():
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


class ExportTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    source = datasets.load("mnist_sample")
    rng = np.random.default_rng(0)
    cls.models, cls.paths, cls.cfgs = {}, {}, {}
    data = {}
    for k, arch in enumerate(_ARCHS):
      cfg = config_lib.resolve("quick", "mnist_sample", dict(units=8, arch=arch))
      tf.random.set_seed(k)
      model = network.build(cfg, source.frame_shape)
      path = os.path.join(cls.tmp, arch, "saved_model")
      export.export_saved_model(model, path, dict(noise_mean=source.mean, noise_std=source.std,
                                                  config=cfg.to_dict(), dataset=source.name))
      cls.models[arch], cls.paths[arch], cls.cfgs[arch] = model, path, cfg
      data[arch + "_path"] = np.array(path)
      # 70 frames is beyond network._UNROLL_MAX; 5 frames is unrolled in the in-memory model.
      data[arch + "_inputs_long"] = rng.random([3, 70, model.input_size], np.float32)
      data[arch + "_inputs_short"] = rng.random([2, 5, model.input_size], np.float32)
      data[arch + "_state"] = rng.normal(size=[2, model.state_size]).astype(np.float32)
      data[arch + "_frame"] = rng.random([2, model.input_size], np.float32)
    cls.data = data
    inputs_path = os.path.join(cls.tmp, "inputs.npz")
    outputs_path = os.path.join(cls.tmp, "outputs.npz")
    np.savez(inputs_path, **data)
    cls.proc = subprocess.run([sys.executable, "-c", _LOADER, inputs_path, outputs_path],
                              capture_output=True, text=True, env=_env(), cwd=cls.tmp,
                              timeout=300, check=False)
    cls.out = (dict(np.load(outputs_path, allow_pickle=False))
               if cls.proc.returncode == 0 else None)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.tmp, ignore_errors=True)
    super().tearDownClass()

  def _out(self):
    self.assertEqual(self.proc.returncode, 0, self.proc.stderr[-3000:])
    return self.out

  def test_signatures_match_the_model_without_haviv_tf(self):
    out = self._out()
    for arch in _ARCHS:
      model, d = self.models[arch], self.data
      with self.subTest(arch=arch):
        for t in ("long", "short"):
          logits, states = model(tf.constant(d[arch + "_inputs_" + t]))
          np.testing.assert_allclose(out[arch + "_logits_" + t], logits, atol=1e-5)
          np.testing.assert_allclose(out[arch + "_states_" + t], states, atol=1e-5)
        states = model.run(tf.constant(d[arch + "_inputs_short"]),
                           initial_state=tf.constant(d[arch + "_state"]))
        np.testing.assert_allclose(out[arch + "_from_state"], states, atol=1e-5)
        state, frame = tf.constant(d[arch + "_state"]), tf.constant(d[arch + "_frame"])
        new_state, logits = model.step(state, frame)
        np.testing.assert_allclose(out[arch + "_step_state"], new_state, atol=1e-5)
        np.testing.assert_allclose(out[arch + "_step_logits"], logits, atol=1e-5)
        sq = losses.speed_squared(model.cell, state, model.transition(state, model.encode(frame)))
        np.testing.assert_allclose(out[arch + "_speed"], np.sqrt(sq), atol=1e-5)
        np.testing.assert_allclose(out[arch + "_q"], 0.5 * sq.numpy(), atol=1e-5)

  def test_metadata_without_haviv_tf(self):
    out = self._out()
    for arch in _ARCHS:
      model = self.models[arch]
      with self.subTest(arch=arch):
        meta = {k[len(arch) + 6:]: v for k, v in out.items() if k.startswith(arch + "_meta_")}
        self.assertEqual(meta["noise_mean"].shape, (784,))
        np.testing.assert_allclose(meta["noise_mean"], datasets.MNIST_MEAN)
        np.testing.assert_allclose(meta["noise_std"], datasets.MNIST_STD)
        np.testing.assert_array_equal(meta["frame_shape"], [28, 28, 1])
        self.assertEqual(int(meta["num_outputs"]), 11)
        self.assertEqual(int(meta["state_size"]), model.state_size)
        self.assertEqual(int(out[arch + "_attr_state_size"]), model.state_size)
        self.assertEqual(int(meta["units"]), 8)
        self.assertEqual(int(meta["trigger_index"]), 784)
        self.assertEqual(meta["arch"].item(), arch.encode())
        self.assertEqual(meta["state_layout"].item(), b"h,c" if arch == "lstm" else b"h")

  def test_load_metadata_helper(self):
    meta = export.load_metadata(self.paths["lstm"])
    self.assertEqual(meta["arch"], "lstm")
    self.assertEqual(meta["speed_coordinates"], "h,tanh(c)")
    self.assertEqual(meta["metadata"]["dataset"], "mnist_sample")
    self.assertEqual(meta["metadata"]["config"], self.cfgs["lstm"].to_dict())

  def test_saved_model_cli_lists_the_signatures(self):
    cli = shutil.which("saved_model_cli")
    if cli is None:
      self.skipTest("saved_model_cli is not on PATH")
    proc = subprocess.run([cli, "show", "--dir", self.paths["gru"], "--all"], capture_output=True,
                          text=True, env=_env(), timeout=300, check=False)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    for name in export.SIGNATURES:
      self.assertIn(f"signature_def['{name}']", proc.stdout)
    self.assertIn("(-1, -1, 785)", proc.stdout)

  def test_overwrite_and_bad_metadata(self):
    model = self.models["gru"]
    path = os.path.join(self.tmp, "overwrite", "again")
    meta = dict(noise_mean=[0.1], noise_std=[0.3])
    export.export_saved_model(model, path, meta)
    export.export_saved_model(model, path, meta)  # replaces it
    self.assertTrue(os.path.exists(os.path.join(path, "saved_model.pb")))
    self.assertEqual(os.listdir(os.path.dirname(path)), ["again"])  # no temporary left
    with self.assertRaises(FileExistsError):
      export.export_saved_model(model, path, meta, overwrite=False)
    with self.assertRaisesRegex(ValueError, "noise_std"):
      export.export_saved_model(model, path, dict(noise_mean=[0.1]))
    with self.assertRaisesRegex(ValueError, "noise_mean"):
      export.export_saved_model(model, path, dict(noise_mean=[0.1, 0.2], noise_std=[0.3]))

  def test_example_script_writes_slow_points(self):
    out = os.path.join(self.tmp, "example_points.npz")
    # A tolerance that merges some of the 6 points (3 are kept; their distances are ~0.1-0.4).
    tol = 0.3
    proc = subprocess.run([sys.executable, _EXAMPLE, "--saved_model", self.paths["lstm"],
                           "--out", out, "--iters", "50", "--num_trials", "6", "--length", "4",
                           "--dedup_tol", str(tol)],
                          capture_output=True, text=True, env=_env(), cwd=self.tmp, timeout=300,
                          check=False)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    with np.load(out, allow_pickle=False) as f:
      states, speed, readout, unique = f["states"], f["speed"], f["readout"], f["unique"]
    self.assertEqual(states.shape, (6, 16))
    # The speeds are the in-memory model's at the mean noise frame (trigger off), and the
    # read-out is its trigger step's class.
    model = self.models["lstm"]
    mean = np.broadcast_to(np.float32(datasets.MNIST_MEAN), [model.input_size - 1])
    x_bar = np.tile(np.concatenate([mean, [0.0]]).astype(np.float32), [6, 1])
    s = tf.constant(states)
    sq = losses.speed_squared(model.cell, s, model.transition(s, model.encode(tf.constant(x_bar))))
    np.testing.assert_allclose(speed, np.sqrt(sq.numpy()), rtol=1e-4, atol=1e-6)
    x_bar[:, -1] = 1.0
    _, logits = model.step(s, tf.constant(x_bar))
    np.testing.assert_array_equal(readout, np.argmax(logits.numpy()[:, 1:], axis=-1))
    # De-duplication, greedy from the slowest point: the kept points are pairwise more than
    # `tol` apart and every point is within `tol` of a kept point no slower than it. (These two
    # properties determine the kept set, whatever the order of equally slow points.)
    dist = np.linalg.norm(states[:, None] - states[None], axis=-1)
    self.assertTrue(np.any(dist[~np.eye(6, dtype=bool)] <= tol),
                    "no two points within the tolerance: the test no longer merges any")
    self.assertEqual(len(set(unique.tolist())), len(unique))
    kept = dist[np.ix_(unique, unique)] + np.diag(np.full(len(unique), np.inf))
    self.assertTrue(np.all(kept > tol), dist[np.ix_(unique, unique)])
    for i in range(6):
      covers = unique[(dist[i, unique] <= tol) & (speed[unique] <= speed[i])]
      self.assertNotEmpty(covers, f"point {i} (speed {speed[i]}) has no slower kept point")
    # ... and the script reports that count and one line per kept point.
    self.assertIn(f"{len(unique)} slow points from 6 starting states", proc.stdout)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("  speed ")]
    self.assertEqual(lines, [f"  speed {speed[i]:.3g}  readout class {readout[i]}"
                             for i in unique])


if __name__ == "__main__":
  tf.test.main()
