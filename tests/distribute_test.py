"""--strategy: mirrored over two logical CPUs and two local multi-worker processes train the same
network as one device; bad strategies and TF_CONFIGs are refused with one line.

Logical CPU devices must be configured before TensorFlow initialises, and a multi-worker
cluster needs one process per worker, so the distributed runs are subprocesses. The
single-device references are trained in this process with the same Config.
"""

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from haviv_tf.base import config as config_lib
from haviv_tf.training import distribute
from haviv_tf.training import checkpoints
from haviv_tf.training import train
import main_runner  # pylint: disable=g-bad-import-order

# Tiny: units 8, batch 16, 20 steps; the analysis after training is shrunk to seconds. The
# learning rate is pinned: the tolerance below is for rounding differences amplified by 20 Adam
# steps at this rate. No XLA: a strategy's steps are not compiled anyway, and compiling the
# single-device reference (and the slow-point search) would cost more than the tiny runs.
OVERRIDES = dict(units=8, batch_size=16, train_steps=20, checkpoint_every=10, log_every=5,
                 protocol="vocu", history_every=10, eval_trials=20, eval_delays=(5,),
                 learning_rate=1e-3, jit_compile=False)
PENALTY = dict(speed_weight=1e-2, speed_targets="center_mass", speed_refresh_every=5)
TINY = ["--preset=quick", "--dataset=mnist_sample", "--arch=gru", "--protocol=vocu",
        "--units=8", "--batch_size=16", "--steps=20", "--checkpoint_every=10", "--log_every=5",
        "--history_every=10", "--eval_trials=20", "--eval_delays=5", "--sp_max_iters=100",
        "--learning_rate=1e-3", "--jit_compile=false"]
TINY_PENALTY = ["--speed_weight=0.01", "--speed_targets=center_mass", "--speed_refresh_every=5"]
# Float summation order differs between one device and two replicas (per-replica sums, then an
# all-reduce), so the weights agree to rounding, not bit for bit. Adam divides by sqrt(v), so a
# rounding difference in a near-zero gradient can move a weight by a visible part of one step
# (lr = 1e-3); ATOL is 1% of one step. A real fault, such as a shard seen twice and another
# not at all, changes the gradients' directions and moves weights by whole steps.
RTOL, ATOL = 1e-5, 1e-5
TIMEOUT = 900  # a safety net against a hung collective, not a timing assertion


def _cli(args, env=None, timeout=TIMEOUT):
  return main_runner.run(args, timeout=timeout, env=env)


def _env(**extra):
  env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
  env.update(extra)
  return env


def _checkpoint(workdir):
  """{name: value} of the latest checkpoint's numeric variables (model and optimizer)."""
  reader = tf.train.load_checkpoint(os.path.join(workdir, checkpoints.CHECKPOINT_DIR))
  values = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if "save_counter" not in k}
  return {k: v for k, v in values.items() if isinstance(v, np.ndarray) and v.dtype.kind in "fiu"}


def _assert_same_weights(reference, workdir):
  a, b = _checkpoint(reference), _checkpoint(workdir)
  assert a.keys() == b.keys()
  assert any(k.startswith("model/cell/kernel") for k in a)
  for k in a:
    if a[k].dtype.kind == "f":
      np.testing.assert_allclose(b[k], a[k], rtol=RTOL, atol=ATOL, err_msg=k)
    else:
      np.testing.assert_array_equal(b[k], a[k], err_msg=k)


def _scalars(workdir):
  """{(tag, step): value} of the training TensorBoard events; also the number of event files."""
  root = os.path.join(workdir, train.TENSORBOARD_DIR, "train")
  files = sorted(os.listdir(root))
  out = {}
  for name in files:
    for e in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
      for v in e.summary.value:
        out[(v.tag, e.step)] = float(tf.make_ndarray(v.tensor))
  return out, len(files)


def _assert_same_metrics(reference, workdir):
  """Every logged training metric (read across replicas) equals the single-device one."""
  a, _ = _scalars(reference)
  b, _ = _scalars(workdir)
  assert a.keys() == b.keys()
  assert ("train/loss", 20) in a
  for k in a:
    np.testing.assert_allclose(b[k], a[k], rtol=RTOL, atol=ATOL, err_msg=str(k))


def _config(penalty):
  overrides = dict(OVERRIDES, **(PENALTY if penalty else {}))
  return config_lib.resolve("quick", "mnist_sample", overrides)


class _References(dict):
  """{penalty: workdir} of the single-device (default strategy) runs, each trained in-process
  when a test first asks for it (a worker of `pytest -n N` may need only one of them)."""

  def __init__(self, folder):
    super().__init__()
    self.folder = folder

  def __missing__(self, penalty):
    workdir = str(self.folder / ("penalty" if penalty else "plain"))
    cfg = _config(penalty)
    source = train.prepare_workdir(cfg, workdir)
    assert train.train(cfg, workdir, source, verbose=0).step == 20
    self[penalty] = workdir
    return workdir


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  return _References(tmp_path_factory.mktemp("reference"))


def _check_config_json(workdir, penalty, strategy):
  with open(os.path.join(workdir, "config.json")) as f:
    written = json.load(f)
  assert written["config"] == _config(penalty).to_dict()
  assert written["strategy"] == strategy


@pytest.mark.parametrize("penalty", [False, True], ids=["plain", "speed_penalty"])
def test_mirrored_over_two_cpu_devices_matches_one_device(reference, tmp_path, penalty):
  workdir = str(tmp_path / "mirrored")
  proc = _cli(TINY + (TINY_PENALTY if penalty else []) + [
      "--strategy=mirrored", "--cpu_devices=2", f"--workdir={workdir}"], env=_env())
  assert proc.returncode == 0, proc.stderr[-3000:]
  _check_config_json(workdir, penalty, dict(name="mirrored", num_replicas=2, num_workers=1))
  _assert_same_weights(reference[penalty], workdir)
  _assert_same_metrics(reference[penalty], workdir)
  # The analysis after training ran (on the chief, on a single-device copy of the model).
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  assert results["step"] == 20 and set(results["accuracy_by_delay"]) == {"5"}
  assert os.path.isdir(os.path.join(workdir, "saved_model"))


def test_a_run_resumes_under_another_strategy(reference, tmp_path):
  """The strategy is not part of the config: a default-strategy run resumes under mirrored."""
  workdir = str(tmp_path / "resumed")
  shutil.copytree(reference[False], workdir)
  ckpts = os.path.join(workdir, checkpoints.CHECKPOINT_DIR)
  for name in os.listdir(ckpts):
    if name.startswith("ckpt-20"):
      os.remove(os.path.join(ckpts, name))
  tf.compat.v1.train.update_checkpoint_state(ckpts, os.path.join(ckpts, "ckpt-10"),
                                             [os.path.join(ckpts, "ckpt-10")])
  proc = _cli(TINY + ["--strategy=mirrored", "--cpu_devices=2", f"--workdir={workdir}"],
              env=_env())
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert tf.train.latest_checkpoint(ckpts).endswith("ckpt-20")
  _check_config_json(workdir, False, dict(name="mirrored", num_replicas=2, num_workers=1))
  _assert_same_weights(reference[False], workdir)


# One SGD step scales with the gradient, which Adam (the runs' optimizer) normalises away: this
# pins the loss scaling (global sum of weights, SUM of replica gradients) and the pairing of the
# speed-noise shards with the target rows of each replica, and checks the logged metrics.
_SGD_SCRIPT = r"""
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from haviv_tf.training import distribute
strategy = distribute.make_strategy("mirrored", cpu_devices=2)
assert strategy.num_replicas_in_sync == 2
import keras
import numpy as np
from haviv_tf.task import curricula
from haviv_tf.task import datasets
from haviv_tf.models import network
from haviv_tf.task import trials

rng = np.random.default_rng(0)
split = datasets.Split(images=rng.integers(0, 255, (40, 4, 4, 1)).astype(np.uint8),
                       labels=np.arange(40) % 10)
gen = trials.TrialGenerator(split, [0.1], [0.3])
K, B, LENGTH = 6, 8, 10
targets = rng.normal(size=(K, 6)).astype(np.float32)
live = np.array([1, 1, 0, 1, 1, 1], np.float32)  # row 2: a class without a target
curriculum = curricula.Curriculum((), (6,), (LENGTH,))

def make_dataset():
  return gen.training_dataset(0, B, LENGTH, curriculum, speed_noise=K)

def build():
  keras.utils.set_random_seed(2)
  model = network.DelayedClassifier(arch="gru", units=6, frame_shape=(4, 4, 1), readout="linear")
  model.enable_speed_penalty(K)
  model.set_speed_targets(targets, live)
  model.compile(optimizer=keras.optimizers.SGD(0.5), speed_weight=0.5)
  return model

single = build()
before = [v.numpy() for v in single.trainable_variables]
logs_single = single.fit(make_dataset(), steps_per_epoch=3, epochs=1, verbose=0).history
with strategy.scope():
  multi = build()
logs_multi = multi.fit(distribute.distribute_batches(strategy, make_dataset, B, K),
                       steps_per_epoch=3, epochs=1, verbose=0).history
out = {}
for i, (a, b, c) in enumerate(zip(before, single.trainable_variables, multi.trainable_variables)):
  out[f"before_{i}"], out[f"single_{i}"], out[f"multi_{i}"] = a, b.numpy(), c.numpy()
for name in logs_single:
  out[f"log_single_{name}"] = np.asarray(logs_single[name], np.float64)
  out[f"log_multi_{name}"] = np.asarray(logs_multi[name], np.float64)
np.savez(sys.argv[1], **out)
"""


def test_sgd_steps_on_two_replicas_equal_one_device(tmp_path):
  path = str(tmp_path / "sgd.npz")
  proc = subprocess.run([sys.executable, "-c", _SGD_SCRIPT, path], capture_output=True, text=True,
                        timeout=TIMEOUT, env=_env())
  assert proc.returncode == 0, proc.stderr[-3000:]
  with np.load(path, allow_pickle=False) as f:
    out = {k: f[k] for k in f.files}
  n = sum(k.startswith("single_") for k in out)
  assert n >= 5
  moved = 0.0
  for i in range(n):
    np.testing.assert_allclose(out[f"multi_{i}"], out[f"single_{i}"], rtol=RTOL, atol=1e-7,
                               err_msg=f"variable {i}")
    moved = max(moved, float(np.abs(out[f"single_{i}"] - out[f"before_{i}"]).max()))
  assert moved > 1e-2  # the steps did move the weights
  logs = {k[len("log_single_"):] for k in out if k.startswith("log_single_")}
  assert {"loss", "report_acc", "null_acc", "speed_sq"} <= logs
  for name in logs:
    np.testing.assert_allclose(out[f"log_multi_{name}"], out[f"log_single_{name}"], rtol=RTOL,
                               atol=1e-7, err_msg=name)
  assert float(out["log_single_speed_sq"][-1]) > 0


def _free_ports(n):
  socks = [socket.socket() for _ in range(n)]
  try:
    for s in socks:
      s.bind(("127.0.0.1", 0))
    return [s.getsockname()[1] for s in socks]
  finally:
    for s in socks:
      s.close()


def _two_workers(tmp_path, workdirs, args):
  """Runs worker 0 (the chief) and worker 1 on 127.0.0.1; returns (exit codes, outputs)."""
  cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
  procs = []
  for i in range(2):
    scratch = tmp_path / f"tmp{i}"  # the worker's TMPDIR
    scratch.mkdir()
    env = _env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
               TMPDIR=str(scratch))
    procs.append(main_runner.start(
        [*args, "--strategy=multi_worker", f"--workdir={workdirs[i]}"], env=env,
        stdout=str(tmp_path / f"worker{i}.log")))
  try:
    codes = [p.wait(timeout=TIMEOUT) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  return codes, [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]


def test_two_local_workers_match_one_device(reference, tmp_path):
  workdir = str(tmp_path / "multi_worker")
  codes, outputs = _two_workers(tmp_path, [workdir, workdir], TINY + TINY_PENALTY)
  assert codes == [0, 0], "\n".join(o[-3000:] for o in outputs)
  assert "worker 1 finished training; the chief writes the results" in outputs[1]
  assert f"{workdir}: step 20, report accuracy" in outputs[0]

  # The chief's final checkpoint is the single-device run's, and so are its metrics.
  _check_config_json(workdir, True, dict(name="multi_worker", num_replicas=2, num_workers=2))
  _assert_same_weights(reference[True], workdir)
  _assert_same_metrics(reference[True], workdir)
  # The non-chief wrote only to its scratch directory, now deleted: nothing of it in the
  # workdir (one TensorBoard event file, no worker directories) or in its TMPDIR.
  _, event_files = _scalars(workdir)
  assert event_files == 1
  assert not [n for n in os.listdir(workdir) if "worker" in n or n.startswith("haviv_tf_")]
  assert not os.listdir(tmp_path / "tmp1")
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["step"] == 20


def test_workers_that_restore_different_steps_are_refused(reference, tmp_path):
  """As if the workdir were not on a shared filesystem: the chief finds the step-10 checkpoint,
  the other worker none. Both stop with one line instead of training out of step (and hanging)."""
  chief = str(tmp_path / "chief")
  shutil.copytree(reference[False], chief)
  ckpts = os.path.join(chief, checkpoints.CHECKPOINT_DIR)
  for name in os.listdir(ckpts):
    if name.startswith("ckpt-20"):
      os.remove(os.path.join(ckpts, name))
  tf.compat.v1.train.update_checkpoint_state(ckpts, os.path.join(ckpts, "ckpt-10"),
                                             [os.path.join(ckpts, "ckpt-10")])
  other = str(tmp_path / "other")
  codes, outputs = _two_workers(tmp_path, [chief, other], TINY)
  assert codes == [1, 1], "\n".join(o[-3000:] for o in outputs)
  errors = [[l for l in out.splitlines() if l.startswith("error: ")] for out in outputs]
  different = ["error: the workers restored different steps [0, 10]: the workdir must be on a "
               "filesystem every worker shares"]
  # Both name the different steps, or one does and the other (cut off by the first one's exit
  # in their collective) says that another worker stopped.
  assert different in errors, "\n".join(o[-3000:] for o in outputs)
  for e in errors:
    assert e == different or (len(e) == 1 and e[0].startswith(
        "error: another worker stopped during the check")), "\n".join(o[-3000:] for o in outputs)
  assert tf.train.latest_checkpoint(ckpts).endswith("ckpt-10")
  assert not os.path.exists(other)


# -- refusals ------------------------------------------------------------------------------------


def _one_line(proc):
  lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert len(lines) == 1, lines
  assert "Traceback" not in proc.stderr
  return lines[0]


@pytest.mark.parametrize("args, tf_config, message", [
    (["--strategy=foo"], None,
     "unknown strategy 'foo'; valid: default, mirrored, multi_worker, tpu"),
    (["--strategy=multi_worker"], None, "--strategy=multi_worker needs the TF_CONFIG environment"),
    (["--strategy=multi_worker"], "{not json", "TF_CONFIG is not valid JSON"),
    (["--strategy=multi_worker"], '{"cluster": {"worker": ["127.0.0.1:1"]}}',
     "TF_CONFIG has no \"task\""),
    (["--strategy=default", "--cpu_devices=2"], None,
     "--cpu_devices goes with --strategy=mirrored"),
    (["--cpu_devices=-1"], None, "--cpu_devices must be >= 0"),
    (["--mode=evaluate", "--strategy=mirrored"], None, "go with --mode=train"),
    (["--strategy=mirrored", "--cpu_devices=2", "--batch_size=15"], None,
     "`batch_size` 15 does not split evenly over the 2 replicas"),
    (["--strategy=mirrored", "--cpu_devices=3", "--batch_size=15", "--speed_copies=1",
      *TINY_PENALTY], None,
     "the speed penalty's 10 targets (10 x `speed_copies`) do not split evenly over the 3"),
])
def test_bad_strategy_input_is_one_line_and_exit_1(tmp_path, args, tf_config, message):
  env = _env(**({"TF_CONFIG": tf_config} if tf_config is not None else {}))
  workdir = tmp_path / "w"
  line = _one_line(_cli(["--units=8", "--steps=2", *args, f"--workdir={workdir}"], env=env))
  assert message in line
  assert not workdir.exists()  # refused before anything is written


@pytest.mark.parametrize("tf_config, message", [
    ("", "needs the TF_CONFIG environment variable"),
    ("[1, 2]", "must be a JSON object"),
    ('{"task": {"type": "worker", "index": 0}}', "has no \"cluster\""),
    ('{"cluster": {"ps": ["h:1"]}, "task": {"type": "ps", "index": 0}}',
     "job 'ps' is not supported"),
    ('{"cluster": {"worker": ["nohostport"]}, "task": {"type": "worker", "index": 0}}',
     "non-empty list of \"host:port\""),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "chief", "index": 0}}',
     "task type 'chief' is not a job of the cluster"),
    ('{"cluster": {"worker": ["h:1", "h:2"]}, "task": {"type": "worker", "index": 2}}',
     "task index 2 is out of range for the 2 worker task(s)"),
])
def test_tf_config_is_checked(monkeypatch, tf_config, message):
  monkeypatch.setenv("TF_CONFIG", tf_config)
  with pytest.raises(ValueError, match="TF_CONFIG") as e:
    distribute.tf_config()
  assert message in str(e.value) and "\n" not in str(e.value)


def test_valid_tf_config_and_the_default_strategy(monkeypatch):
  monkeypatch.delenv("TF_CONFIG", raising=False)
  default = distribute.make_strategy("default")
  assert default is tf.distribute.get_strategy() and distribute.is_default(default)
  assert distribute.is_chief(default) and distribute.is_chief(None)
  assert distribute.describe(None) == dict(name="default", num_replicas=1, num_workers=1)
  with pytest.raises(ValueError, match="unknown strategy 'gpu'"):
    distribute.make_strategy("gpu")
  config = {"cluster": {"chief": ["h:1"], "worker": ["h:2"]}, "task": {"type": "worker",
                                                                        "index": 0}}
  monkeypatch.setenv("TF_CONFIG", json.dumps(config))
  assert distribute.tf_config() == config
