"""A tiny run trained, then evaluated, searched for slow points and exported in its workdir."""

import dataclasses
import json
import os

import numpy as np
import tensorflow as tf

from haviv_tf.analysis import export
from haviv_tf.analysis import pipeline
from haviv_tf.base import artifacts
from haviv_tf.base import config as config_lib
from haviv_tf.task import datasets
from haviv_tf.models import network
from haviv_tf.probes import rollouts
from haviv_tf.probes import slow_points
from haviv_tf.task import trials


def test_train_and_analyze_writes_every_artifact(tmp_path, monkeypatch):
  workdir = str(tmp_path / "run")
  # No XLA: what is tested is the artifacts; compiling a tiny network's steps and search costs
  # more than running them (main_test's first run goes through the XLA default end to end).
  cfg = config_lib.resolve("quick", "mnist_sample", dict(
      units=8, batch_size=16, train_steps=20, checkpoint_every=10, log_every=5,
      eval_delays=(5, 40), eval_trials=20, protocol="nacu", jit_compile=False,
      data_dir=str(tmp_path)))
  sp = slow_points.SlowPointConfig(max_iters=400, chunk=100, q_tol=1e-8, jit_compile=False)
  results = pipeline.train_and_analyze(cfg, workdir, verbose=0, sp_config=sp)

  assert results["step"] == 20
  assert set(results["accuracy_by_delay"]) == {"5", "40"}
  assert set(results["slow_point_speed"]) == {str(c) for c in range(10)}
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f) == results

  points = artifacts.load_npz(os.path.join(workdir, pipeline.SLOW_POINTS_FILE))
  for key in ("states", "speed", "q", "readout", "init_class", "eigenvalues"):
    assert key in points
  assert points["states"].shape[1] == 8
  have = [c for c in range(10) if results["slow_point_speed"][str(c)] is not None]
  np.testing.assert_array_equal(points["init_class"][:len(have)], have)
  np.testing.assert_allclose([results["slow_point_speed"][str(c)] for c in have],
                             points["speed"][:len(have)], rtol=1e-6)
  unique = slow_points.load_points(os.path.join(workdir, pipeline.UNIQUE_SLOW_POINTS_FILE))
  assert 1 <= len(unique) <= len(points["states"])
  assert results["num_unique_slow_points"] == len(unique)

  loaded = tf.saved_model.load(os.path.join(workdir, pipeline.SAVED_MODEL_DIR))
  assert {"serving_default", "step", "speed", "metadata"} <= set(loaded.signatures)
  # The exported config is the run's, but for this machine's data folder.
  meta = export.load_metadata(os.path.join(workdir, pipeline.SAVED_MODEL_DIR))["metadata"]
  assert meta["config"] == dict(cfg.to_dict(), data_dir="") and meta["step"] == 20
  for png in (pipeline.ACCURACY_PNG, pipeline.TRAJECTORIES_PNG):
    with open(os.path.join(workdir, png), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  tags = set()
  tb = os.path.join(workdir, pipeline.ANALYSIS_TB)
  for name in os.listdir(tb):
    for e in tf.compat.v1.train.summary_iterator(os.path.join(tb, name)):
      tags.update(v.tag for v in e.summary.value)
  assert {"eval/report_accuracy_delay_40", "eval/accuracy_vs_delay",
          "slow_points/trajectories_pca"} <= tags

  # The analysis steps alone on the restored run reproduce the evaluation exactly.
  cfg2, source, run = pipeline.restore(workdir)
  assert cfg2 == cfg and run.step == 20
  again = pipeline.evaluate(cfg2, run, source, workdir)
  assert again["accuracy_by_delay"] == results["accuracy_by_delay"]

  # Re-running the finished run resumes: nothing is evaluated, searched or exported again ...
  assert pipeline.analysed(cfg, workdir, 20, sp)
  def refuse(*args, **kwargs):
    raise AssertionError("the finished analysis ran again")
  for name in ("evaluate", "find_slow_points", "export_model"):
    monkeypatch.setattr(pipeline, name, refuse)
  assert pipeline.train_and_analyze(cfg, workdir, verbose=0, sp_config=sp) == results
  # ... but any change to what the analysis would produce, or a missing part, redoes it.
  assert not pipeline.analysed(cfg, workdir, 21, sp)
  assert not pipeline.analysed(cfg, workdir, 20, slow_points.SlowPointConfig(max_iters=800))
  assert not pipeline.analysed(cfg, workdir, 20, sp, recipe="paper")
  assert not pipeline.analysed(dataclasses.replace(cfg, eval_trials=40), workdir, 20, sp)
  assert not pipeline.analysed(dataclasses.replace(cfg, eval_delays=(5, 40, 80)), workdir, 20, sp)
  os.rename(os.path.join(workdir, pipeline.SAVED_MODEL_DIR), str(tmp_path / "moved"))
  assert not pipeline.analysed(cfg, workdir, 20, sp)


def test_restore_refuses_a_workdir_without_a_model(tmp_path):
  import pytest  # pylint: disable=g-import-not-at-top
  with pytest.raises(artifacts.RunError, match="no haviv_tf run"):
    pipeline.restore(str(tmp_path))
  cfg = config_lib.resolve("quick", "mnist_sample", {})
  artifacts.write_json(str(tmp_path / "config.json"), dict(config=cfg.to_dict()))
  with pytest.raises(artifacts.RunError, match="no trained model"):
    pipeline.restore(str(tmp_path))


def test_post_stimulus_trajectories_do_not_depend_on_the_frames_per_call():
  # 1000 CIFAR-10 trials of 32 frames in one CNN call need ~16 GB of activations: the trials run
  # in slices of max_frames frames, and a slice boundary must not change any state.
  rng = np.random.default_rng(0)
  split = datasets.Split(rng.integers(0, 256, [20, 8, 8, 3], dtype=np.uint8),
                         np.arange(20, dtype=np.int32) % 10)
  gen = trials.TrialGenerator(split, np.float32([.5, .4, .3]), np.float32([.2, .2, .2]))
  model = network.DelayedClassifier(units=4, frame_shape=(8, 8, 3), encoder="cnn")
  whole, classes = pipeline.post_stimulus_trajectories(model, gen, 3, num=7, steps=3,
                                                       max_frames=10_000)
  sliced, classes2 = pipeline.post_stimulus_trajectories(model, gen, 3, num=7, steps=3,
                                                         max_frames=12)   # 2 trials a call
  assert whole.shape == (7, 3, model.state_size)
  np.testing.assert_array_equal(classes, np.arange(7))
  np.testing.assert_array_equal(classes2, classes)
  np.testing.assert_allclose(sliced, whole, rtol=1e-5, atol=1e-6)


_PAPER_GRU = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "experiments", "study_paper", "runs", "mnist-vocu-gru-paper-s0")


def test_an_analysis_recorded_before_a_search_field_existed_stays_current():
  # The paper grid's VoCu GRU s0 was analysed before SlowPointConfig had dedup_space: its
  # record lacks the field, which counts as its default (what the search then did), so the
  # sweep and --mode=slow_points do not search it again.
  results = artifacts.read_json(os.path.join(_PAPER_GRU, artifacts.RESULTS_FILE))
  assert "dedup_space" not in results["slow_point_config"]
  cfg = artifacts.recorded_config(_PAPER_GRU)
  recipe = results["slow_points_recipe"]
  sp = slow_points.recipe_config(recipe, cfg)
  bank = rollouts.noise_bank_for(cfg)
  step = results["slow_points_step"]
  assert pipeline.slow_points_current(results, step, sp, recipe, bank)
  # Another value of the new field, or of an old one, is another search.
  for other in (dataclasses.replace(sp, dedup_space="speed"),
                dataclasses.replace(sp, max_iters=sp.max_iters + 1)):
    assert not pipeline.slow_points_current(results, step, other, recipe, bank)
  assert not pipeline.same_sp_config(None, sp)
  assert pipeline.same_sp_config(pipeline.sp_config_record(sp), sp)
