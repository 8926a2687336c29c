"""Speed penalty, fine-tuning modes and their comparison on tiny networks."""

import dataclasses
import hashlib
import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from haviv_tf.analysis import pipeline
from haviv_tf.base import artifacts
from haviv_tf.base import config as config_lib
from haviv_tf.analysis import control
from haviv_tf.task import curricula
from haviv_tf.task import datasets
from haviv_tf.models import network
from haviv_tf.probes import slow_points
from haviv_tf.probes import speed_targets
from haviv_tf.training import checkpoints
from haviv_tf.training import train
from haviv_tf.task import trials

# No XLA but where a test says so: compiling a tiny network's steps and searches costs more than
# running them (tests/jit_test.py compares compiled and plain steps).
SP = slow_points.SlowPointConfig(max_iters=200, chunk=100, q_tol=1e-8, jit_compile=False)


def _tiny(**overrides):
  base = dict(units=8, batch_size=16, train_steps=20, checkpoint_every=10, log_every=5,
              eval_delays=(5, 30), eval_trials=20, protocol="nacu", history_every=10,
              jit_compile=False)
  base.update(overrides)
  return config_lib.resolve("quick", "mnist_sample", base)


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
  """A tiny trained, evaluated and analysed run."""
  workdir = str(tmp_path_factory.mktemp("parent") / "run")
  pipeline.train_and_analyze(_tiny(), workdir, verbose=0, sp_config=SP)
  return workdir


def _tree(path):
  """{relative path: sha256} of every file under `path` (and the mtimes)."""
  out = {}
  for root, _, files in os.walk(path):
    for f in files:
      full = os.path.join(root, f)
      with open(full, "rb") as fh:
        out[os.path.relpath(full, path)] = (hashlib.sha256(fh.read()).hexdigest(),
                                            os.stat(full).st_mtime_ns)
  return out


# -- the penalty ---------------------------------------------------------------------------------


def _direct_penalty(model, targets, weights, noise):
  """sum_k w_k ||F(s_k, x_k) - s_k||^2 written out per row, LSTM cell term via tanh(c)."""
  total = tf.constant(0.0)
  u = model.units
  for k in range(len(targets)):
    s = tf.constant(targets[k:k + 1])
    x = tf.concat([tf.constant(noise[k:k + 1]), tf.zeros([1, 1])], axis=-1)
    new = model.cell.step(s, model.cell.project(x))
    if model.arch == "lstm":
      d = tf.concat([new[:, :u] - s[:, :u], tf.tanh(new[:, u:]) - tf.tanh(s[:, u:])], -1)
    else:
      d = new - s
    total += weights[k] * tf.reduce_sum(tf.square(d))
  return total


def _step_speed(model, states, x):
  """[P] ||F(s, x) - s|| per row from the cell's step (an LSTM's cell term via tanh(c))."""
  s = tf.constant(states, tf.float32)
  xs = tf.constant(np.tile(np.asarray(x, np.float32), [len(states), 1]))
  new = model.cell.step(s, model.cell.project(model.encode(xs)))
  if model.arch == "lstm":
    u = model.units
    d = tf.concat([new[:, :u] - s[:, :u], tf.tanh(new[:, u:]) - tf.tanh(s[:, u:])], -1)
  else:
    d = new - s
  return np.linalg.norm(d.numpy(), axis=-1)


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_penalty_value_and_gradient_match_a_direct_computation(arch):
  keras.utils.set_random_seed(1)
  model = network.DelayedClassifier(arch=arch, units=6, frame_shape=(4, 4, 1), readout="linear")
  model.enable_speed_penalty(5)
  rng = np.random.default_rng(0)
  targets = rng.normal(size=(5, model.state_size)).astype(np.float32)
  weights = np.array([1, 1, 0, 1, 1], np.float32)
  targets[2] = np.nan  # a class without a target: weight 0, its row is ignored
  model.set_speed_targets(targets, weights)
  noise = rng.normal(size=(5, 16)).astype(np.float32)
  with tf.GradientTape(persistent=True) as tape:
    penalty, mean_sq = model.speed_penalty(tf.constant(noise))
    direct = _direct_penalty(model, np.nan_to_num(targets), weights, noise)
  np.testing.assert_allclose(float(penalty), float(direct), rtol=1e-5)
  np.testing.assert_allclose(float(mean_sq), float(direct) / 4, rtol=1e-5)
  g = tape.gradient(penalty, model.cell.trainable_variables)
  g_direct = tape.gradient(direct, model.cell.trainable_variables)
  for a, b in zip(g, g_direct):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
  # Finite differences along the gradient confirm it is the penalty's gradient.
  var = model.cell.trainable_variables[0]
  direction = g[0] / tf.norm(g[0])
  eps = 1e-2
  var.assign_add(eps * direction)
  plus = float(model.speed_penalty(tf.constant(noise))[0])
  var.assign_sub(2 * eps * direction)
  minus = float(model.speed_penalty(tf.constant(noise))[0])
  var.assign_add(eps * direction)
  np.testing.assert_allclose((plus - minus) / (2 * eps), float(tf.norm(g[0])), rtol=2e-2)
  # Targets are not trained: no gradient reaches them.
  assert tape.gradient(penalty, model.speed_targets) is None


def test_train_step_adds_mu_times_the_penalty_gradient():
  """One SGD step of the custom train_step moves weights by -lr (g_task + mu g_penalty)."""
  keras.utils.set_random_seed(2)
  mu, lr = 0.5, 0.1
  model = network.DelayedClassifier(arch="gru", units=6, frame_shape=(4, 4, 1), readout="linear")
  model.enable_speed_penalty(3)
  rng = np.random.default_rng(1)
  model.set_speed_targets(rng.normal(size=(3, 6)).astype(np.float32), np.ones(3, np.float32))
  model.compile(optimizer=keras.optimizers.SGD(lr), speed_weight=mu)
  split = datasets.Split(images=rng.integers(0, 255, (30, 4, 4, 1)).astype(np.uint8),
                         labels=np.arange(30) % 10)
  gen = trials.TrialGenerator(split, [0.1], [0.3])
  ds = gen.training_dataset(0, 8, 10, curricula.Curriculum((), (10,), (10,)), speed_noise=3)
  inputs, targets = next(iter(ds))
  before = [v.numpy() for v in model.trainable_variables]
  with tf.GradientTape(persistent=True) as tape:
    task, _, _ = model.task_loss(inputs, targets, training=True)
    pen, _ = model.speed_penalty(targets["speed_noise"])
  g_task = tape.gradient(task, model.trainable_variables)
  g_pen = tape.gradient(pen, model.trainable_variables)
  logs = model.train_step((inputs, targets))
  for v, b, gt, gp in zip(model.trainable_variables, before, g_task, g_pen):
    gp = 0 if gp is None else gp.numpy()
    np.testing.assert_allclose(v.numpy(), b - lr * (gt.numpy() + mu * gp), rtol=1e-5,
                               atol=1e-7)
  assert float(logs["speed_sq"]) > 0


# -- fine-tuning ---------------------------------------------------------------------------------


def test_finetune_config_follows_the_paper_and_the_quick_scaling():
  quick = config_lib.resolve("quick", "mnist", {"protocol": "decu"})
  cfg = control.finetune_config(quick, "slow_points")
  assert cfg.train_steps == 300  # a tenth of the quick preset's 3000 (the dose-response's choice)
  assert cfg.learning_rate == quick.learning_rate and cfg.lr_decay_step == cfg.train_steps
  assert cfg.speed_weight == 1e-2 and cfg.speed_targets == "slow_points"
  longer = config_lib.resolve("quick", "mnist", {"train_steps": 9000})
  assert control.finetune_config(longer, "slow_points").train_steps == 900
  paper_mnist = control.finetune_config(config_lib.resolve("paper", "mnist", {}), "slow_points")
  assert paper_mnist.train_steps == 5000 and paper_mnist.speed_weight == 1e-3
  quick_cifar = control.finetune_config(config_lib.resolve("quick", "cifar10", {}), "slow_points")
  assert quick_cifar.train_steps == 400 and quick_cifar.speed_weight == 1e-2  # a tenth of 4000
  assert cfg.data_offset == quick.train_steps and cfg.protocol == "decu"
  assert curricula.for_config(cfg).at(0) == (10, 20)  # all classes, T_max 20
  paper = control.finetune_config(config_lib.resolve("paper", "cifar10", {}), "center_mass")
  assert paper.train_steps == 5000 and paper.speed_weight == 1e-2
  assert paper.learning_rate == 1e-4
  ctrl = control.finetune_config(quick, "control")
  assert ctrl.speed_weight == 0 and ctrl.speed_targets == "center_mass"
  with pytest.raises(ValueError, match="unknown fine-tuning 'foo'"):
    control.finetune_config(quick, "foo")
  # A fine-tuning as the parent: only with its length given, on the data after its own steps.
  with pytest.raises(ValueError, match="itself a fine-tuning .*give --steps"):
    control.finetune_config(cfg, "control")
  again = control.finetune_config(cfg, "control", steps=50, learning_rate=1e-4)
  assert again.finetune == "control" and again.train_steps == 50 and again.speed_weight == 0
  assert again.data_offset == cfg.data_offset + cfg.train_steps and again.learning_rate == 1e-4
  with pytest.raises(ValueError, match="speed_weight` 0"):
    config_lib.validate(dataclasses.replace(ctrl, speed_weight=1.0))


@pytest.mark.parametrize("rate", [None, 6e-3])   # the parent's rate (the paper's rule), or given
def test_control_equals_plain_continued_training(parent, tmp_path, rate):
  steps = 6
  workdir = str(tmp_path / "control")
  control.finetune(parent, "control", workdir, steps=steps, analyze=False, verbose=0,
                   learning_rate=rate)
  cfg, source, ft = pipeline.restore(workdir)
  assert ft.step == steps

  # By hand: the parent's weights, a fresh Adam at the training rate, plain train_step (no
  # penalty), the parent's trial stream continued with all classes.
  pcfg = config_lib.Config.from_dict(artifacts.read_json(os.path.join(parent,
                                                                      "config.json"))["config"])
  model = network.build(pcfg, source.frame_shape)
  checkpoints.load_weights(model, parent)
  # Compiled as the fine-tuning compiles its step (as the parent's config says): the comparison
  # is exact.
  assert cfg.learning_rate == (pcfg.learning_rate if rate is None else rate)
  model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate, epsilon=1e-8),
                jit_compile=pcfg.jit_compile)
  gen = trials.generator_for(source, "train", pcfg)
  ds = gen.training_dataset(pcfg.seed, pcfg.batch_size, pcfg.seq_len,
                            curricula.Curriculum((), (10,), (pcfg.seq_len,)),
                            data_offset=pcfg.train_steps, backend=pcfg.trial_backend)
  model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
  # Float32 rounding (the schedule's tensor rate against the plain float): 2e-8 at the parent's
  # rate, 2e-7 at twice it, measured; a wrong rate would be off by about 1e-2.
  atol = 1e-7 if rate is None else 1e-6
  for a, b in zip(ft.model.trainable_variables, model.trainable_variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=atol)
  # ... and training did move away from the parent.
  p = network.build(pcfg, source.frame_shape)
  checkpoints.load_weights(p, parent)
  assert not np.allclose(p.trainable_variables[0].numpy(), model.trainable_variables[0].numpy())
  if rate is not None:
    # The continued network continued again (at another rate): the fine-tuning is the parent.
    again = str(tmp_path / "again")
    control.finetune(workdir, "control", again, steps=3, analyze=False, verbose=0,
                     learning_rate=1e-4)
    cfg2, _, ft2 = pipeline.restore(again)
    rec = artifacts.read_json(os.path.join(again, "config.json"))
    assert ft2.step == 3 and rec["parent"]["workdir"] == os.path.abspath(workdir)
    assert cfg2.learning_rate == 1e-4 and cfg2.data_offset == cfg.data_offset + steps
    assert not np.allclose(ft2.model.trainable_variables[0].numpy(),
                           ft.model.trainable_variables[0].numpy())


def test_finetune_never_writes_into_the_parent_and_records_it(parent, tmp_path):
  before = _tree(parent)
  workdir = str(tmp_path / "sp")
  results = control.finetune(parent, "slow_points", workdir, steps=4, verbose=0, sp_config=SP)
  assert _tree(parent) == before
  rec = artifacts.read_json(os.path.join(workdir, "config.json"))
  assert rec["parent"]["workdir"] == os.path.abspath(parent) and rec["parent"]["step"] == 20
  # The quick preset's default mu (the parent is a quick mnist_sample run).
  assert rec["config"]["finetune"] == "slow_points" and rec["config"]["speed_weight"] == 1e-2
  assert results["step"] == 4 and set(results["accuracy_by_delay"]) == {"5", "30"}
  targets = artifacts.load_npz(os.path.join(workdir, control.TARGETS_FILE))
  have = targets["counts"] > 0
  assert have.any()
  # The targets in force are the slow points found from the (training-image) centres.
  cfg, _, run = pipeline.restore(workdir)
  live = run.model.speed_target_weights.numpy().reshape(10, cfg.speed_copies)
  np.testing.assert_array_equal(live[:, 0] > 0, have)
  stored = run.model.speed_targets.numpy().reshape(10, cfg.speed_copies, -1)
  np.testing.assert_allclose(stored[have, 0], targets["per_class"][have], rtol=1e-6)
  # Their speeds are the parent network's ||F(s, x̄) - s|| at the stored points (x̄: the mean
  # noise frame, trigger off), recomputed with the cell's own step.
  np.testing.assert_array_equal(targets["slow_point_class"], np.flatnonzero(have))
  _, _, parent_run = pipeline.restore(parent)
  pm = parent_run.model
  x_bar = np.concatenate([np.full([pm.frame_size], datasets.MNIST_MEAN), [0.0]])
  np.testing.assert_allclose(targets["slow_point_speed"],
                             _step_speed(pm, targets["per_class"][have], x_bar),
                             rtol=1e-4, atol=1e-7)
  # Resuming onto a different parent is refused.
  other = str(tmp_path / "other_parent")
  pipeline.train_and_analyze(_tiny(seed=1), other, verbose=0, sp_config=SP)
  with pytest.raises(artifacts.RunError, match="different"):
    control.finetune(other, "slow_points", workdir, steps=4, verbose=0, sp_config=SP)


def test_finetune_takes_given_targets_and_callbacks(parent, tmp_path):
  cfg = _tiny()
  given = np.full([10, cfg.units], np.nan, np.float32)
  given[3] = np.linspace(-0.5, 0.5, cfg.units)
  given[7] = 0.25
  seen = []

  class Steps(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
      seen.append(int(self.model.optimizer.iterations.numpy()))

  workdir = str(tmp_path / "given")
  control.finetune(parent, "center_mass", workdir, steps=3, verbose=0, analyze=False,
                   targets=given, extra_callbacks=[Steps()])
  assert seen == [1, 2, 3]
  stored = artifacts.load_npz(os.path.join(workdir, control.TARGETS_FILE))
  np.testing.assert_array_equal(stored["counts"] > 0, np.isfinite(given).all(axis=1))
  _, _, run = pipeline.restore(workdir)
  live = run.model.speed_target_weights.numpy().reshape(10, cfg.speed_copies)
  np.testing.assert_array_equal(np.flatnonzero(live[:, 0]), [3, 7])
  states = run.model.speed_targets.numpy().reshape(10, cfg.speed_copies, -1)
  np.testing.assert_array_equal(states[[3, 7], 0], given[[3, 7]])
  with pytest.raises(ValueError, match="speed targets of shape"):
    control.finetune(parent, "slow_points", str(tmp_path / "bad"), steps=2, verbose=0,
                     analyze=False, targets=given[:, :3])


def test_compare_writes_the_table_and_plots(parent, tmp_path):
  out = str(tmp_path / "cmp")
  summary = control.compare(parent, out, steps=3, sp_config=SP)
  assert set(summary["rows"]) == {"trained", "control", "slow_points", "center_mass"}
  with open(os.path.join(out, control.COMPARE_MD)) as f:
    md = f.read()
  for name in summary["rows"]:
    assert f"| {name} |" in md
  for png in (control.COMPARE_ACCURACY_PNG, control.COMPARE_SPEED_PNG):
    with open(os.path.join(out, png), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  with open(os.path.join(out, control.COMPARE_JSON)) as f:
    assert json.load(f)["delays"] == [5, 30]
  # A second call finds every fine-tuning finished and only rewrites the comparison.
  mtimes = {m: os.stat(os.path.join(out, m, "results.json")).st_mtime_ns for m in control.MODES}
  control.compare(parent, out, steps=3, sp_config=SP)
  assert mtimes == {m: os.stat(os.path.join(out, m, "results.json")).st_mtime_ns
                    for m in control.MODES}


# -- the penalty while training from scratch -----------------------------------------------------


def test_penalty_from_scratch_refreshes_targets_and_resumes_exactly(tmp_path):
  # With XLA (the default): the compiled steps resume exactly too.
  cfg = _tiny(speed_weight=1e-2, speed_targets="center_mass", speed_refresh_every=5,
              protocol="vocu", train_steps=20, checkpoint_every=10, jit_compile=True)
  src = train.prepare_workdir(cfg, str(tmp_path / "a"))
  full = train.train(cfg, str(tmp_path / "a"), src, verbose=0)
  # The targets in force are the centres of mass of the step-20 network (the refresh's seed for
  # step 20), each class's repeated speed_copies times, weight 1 where a class has correct trials.
  gen = trials.generator_for(src, "train", cfg)
  centres, counts = slow_points.class_centres(
      full.model, gen, trials_per_class=speed_targets.CENTRE_TRIALS,
      seed=(cfg.seed * 1_000_003 + 20) % (2**31 - 1))
  assert counts.any()
  np.testing.assert_array_equal(full.model.speed_target_weights.numpy(),
                                np.repeat((counts > 0).astype(np.float32), cfg.speed_copies))
  np.testing.assert_allclose(full.model.speed_targets.numpy(),
                             np.repeat(np.nan_to_num(centres), cfg.speed_copies, axis=0),
                             rtol=1e-6, atol=1e-7)
  # As if killed before the step-20 checkpoint: resume from the step-10 one.
  b = str(tmp_path / "b")
  shutil.copytree(str(tmp_path / "a"), b)
  ckpts = os.path.join(b, "checkpoints")
  for f in os.listdir(ckpts):
    if f.startswith("ckpt-20"):
      os.remove(os.path.join(ckpts, f))
  tf.compat.v1.train.update_checkpoint_state(ckpts, os.path.join(ckpts, "ckpt-10"),
                                   [os.path.join(ckpts, "ckpt-10")])
  resumed = train.train(cfg, b, src, verbose=0)
  assert resumed.step == 20
  for x, y in zip(full.model.variables, resumed.model.variables):
    np.testing.assert_array_equal(x.numpy(), y.numpy())
  # The targets were re-estimated from the network at step 20: they equal a fresh estimate.
  gen = trials.generator_for(src, "train", cfg)
  targets = resumed.model.speed_targets.numpy().copy()
  speed_targets.set_centre_targets(resumed.model, gen, cfg, seed=(cfg.seed, 20))
  np.testing.assert_array_equal(targets, resumed.model.speed_targets.numpy())


def test_penalty_config_is_validated():
  with pytest.raises(ValueError, match="speed_refresh_every"):
    _tiny(speed_weight=1e-2)
  with pytest.raises(ValueError, match="non-negative finite"):
    _tiny(speed_weight=-1.0)
  with pytest.raises(ValueError, match="unknown speed_targets"):
    _tiny(speed_targets="everywhere")
