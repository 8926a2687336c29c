"""The command line end to end: runs, resumes after SIGKILL, refuses bad input with one line."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from haviv_tf.base import artifacts
import shared_run  # pylint: disable=g-bad-import-order
from shared_run import trained_run  # pylint: disable=unused-import,g-bad-import-order
from haviv_tf.base import config as config_lib
import file_tree  # pylint: disable=g-bad-import-order
import main_runner  # pylint: disable=g-bad-import-order

# Tiny but real: the quick preset on the shipped sample, shrunk to seconds.
TINY = ["--preset=quick", "--dataset=mnist_sample", "--units=16", "--batch_size=16",
        "--eval_trials=40", "--eval_delays=5,10,19", "--sp_max_iters=300"]
# The same without XLA, for the tests of everything but the compiled steps (the default, XLA,
# runs end to end in the first test; tests/jit_test.py compares the two): compiling a tiny
# network's steps costs more than running them.
PLAIN = TINY + ["--jit_compile=false"]
# The run most tests start from: trained once per test session (shared_run), copied where a test
# changes it.
TRAINED_ARGS = shared_run.ARGS


def _cli(args, timeout=300, **kwargs):
  return main_runner.run(args, timeout=timeout, **kwargs)


def _weights(workdir):
  """{variable name: value} of the latest checkpoint (model and optimizer)."""
  reader = tf.train.load_checkpoint(os.path.join(workdir, "checkpoints"))
  values = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if "save_counter" not in k}
  return {k: v for k, v in values.items() if isinstance(v, np.ndarray) and v.dtype.kind in "fiu"}


@pytest.fixture
def trained(trained_run):  # pylint: disable=redefined-outer-name
  """The finished TRAINED_ARGS run's workdir; read it, or copy it with _copy before changing it."""
  return trained_run.workdir


def _copy(trained, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(trained, workdir)
  return workdir


def _error_line(proc):
  lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
  assert lines, "nothing on stderr"
  return lines


def test_quick_run_writes_config_checkpoints_events_and_results(tmp_path):
  workdir = str(tmp_path / "run")
  flagfile = tmp_path / "run.flags"
  flagfile.write_text("# a comment\n--steps=30\n--checkpoint_every=10\n--seed=3\n")
  # A real `python3 -m haviv_tf.main` process (the other tests' runs are forked from one that
  # has imported TensorFlow: main_runner.py), so the whole start-up is tested once end to end.
  proc = subprocess.run([sys.executable, "-m", "haviv_tf.main", *TINY, f"--flagfile={flagfile}",
                         "--log_every=5", f"--workdir={workdir}"], capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  with open(os.path.join(workdir, "config.json")) as f:
    written = json.load(f)
  cfg = config_lib.Config.from_dict(written["config"])
  assert (cfg.train_steps, cfg.units, cfg.seed, cfg.preset) == (30, 16, 3, "quick")
  assert cfg.jit_compile  # the default: XLA
  assert written["environment"]["tensorflow"].startswith("2.")
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  assert results["step"] == 30
  assert set(results["accuracy_by_delay"]) == {"5", "10", "19"}
  for acc in results["accuracy_by_delay"].values():
    assert 0.0 <= acc <= 1.0
  weights = _weights(workdir)
  assert weights, "empty checkpoint"
  assert all(np.all(np.isfinite(v)) for v in weights.values() if v.dtype.kind == "f")
  events = [f for _, _, fs in os.walk(os.path.join(workdir, "tensorboard")) for f in fs
            if "tfevents" in f]
  assert events
  tags = set()
  for path in (os.path.join(r, f) for r, _, fs in os.walk(os.path.join(workdir, "tensorboard"))
               for f in fs):
    for e in tf.compat.v1.train.summary_iterator(path):
      for v in e.summary.value:
        tags.add(v.tag)
        if v.tag == "train/loss":
          assert np.isfinite(tf.make_ndarray(v.tensor))
  assert {"train/loss", "train/report_acc", "train/null_acc", "curriculum/stage",
          "learning_rate"} <= tags


def test_sigkill_and_resume_ends_with_the_same_weights(tmp_path):
  args = PLAIN + ["--steps=150", "--checkpoint_every=25", "--protocol=decu", "--seed=7",
                 "--eval_delays=5", "--eval_trials=10", "--sp_max_iters=20"]
  straight = str(tmp_path / "straight")
  proc = _cli(args + [f"--workdir={straight}"])
  assert proc.returncode == 0, proc.stderr[-2000:]

  killed = str(tmp_path / "killed")
  child = main_runner.start(args + [f"--workdir={killed}"])
  first = os.path.join(killed, "checkpoints", "checkpoint")  # written after the shards
  deadline = time.time() + 240
  while not os.path.exists(first) and child.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  os.kill(child.pid, signal.SIGKILL)
  child.wait()
  state = tf.train.get_checkpoint_state(os.path.join(killed, "checkpoints"))
  assert state is not None, "killed before the first checkpoint"
  interrupted_at = int(state.model_checkpoint_path.rsplit("-", 1)[1])
  assert interrupted_at < 150, "the run finished before it could be killed"
  assert not os.path.exists(os.path.join(killed, "results.json"))

  proc = _cli(args + [f"--workdir={killed}"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  a, b = _weights(straight), _weights(killed)
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  with open(os.path.join(straight, "results.json")) as f, \
      open(os.path.join(killed, "results.json")) as g:
    assert json.load(f)["accuracy_by_delay"] == json.load(g)["accuracy_by_delay"]


def test_rerun_of_a_finished_run_resumes_without_training(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  before = _weights(workdir)
  proc = _cli(TRAINED_ARGS + [f"--workdir={workdir}"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  after = _weights(workdir)
  for k in before:
    np.testing.assert_array_equal(before[k], after[k])


def test_finetuning_an_unfinished_training_is_one_error_and_writes_nothing(trained, tmp_path):
  parent = _copy(trained, tmp_path)
  ckpts = os.path.join(parent, "checkpoints")
  last = tf.train.latest_checkpoint(ckpts)            # step 20 of 20: back to step 10
  for name in os.listdir(ckpts):
    if name.startswith(os.path.basename(last) + "."):
      os.remove(os.path.join(ckpts, name))
  with open(os.path.join(ckpts, "checkpoint"), "w") as f:   # the index TensorFlow reads
    f.write('model_checkpoint_path: "ckpt-10"\nall_model_checkpoint_paths: "ckpt-10"\n')
  before = file_tree.tree(tmp_path)
  for mode in (["--mode=finetune", "--finetune=control"], ["--mode=compare"]):
    proc = _cli(mode + [f"--parent={parent}"])
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = _error_line(proc)
    assert lines[-1] == (f"error: {parent} is trained to step 10 of 20; finish its training "
                         "first"), lines
    assert "Traceback" not in proc.stderr
    assert file_tree.tree(tmp_path) == before   # no fine-tuning folder, nothing in the parent changed


def test_different_config_in_workdir_is_refused_unless_overwrite(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  proc = _cli(TRAINED_ARGS + ["--units=8", f"--workdir={workdir}"])
  assert proc.returncode == 1
  lines = _error_line(proc)
  assert len(lines) == 1 and "different config" in lines[0] and "units: 16 -> 8" in lines[0]
  assert os.path.exists(os.path.join(workdir, "checkpoints", "ckpt-10.index"))
  # The paper preset's command on this quick-preset run: the same refusal, naming the fields.
  before = file_tree.tree(workdir)
  paper = [a for a in TRAINED_ARGS if not a.startswith("--preset=")] + ["--preset=paper"]
  proc = _cli(paper + [f"--workdir={workdir}"])
  assert proc.returncode == 1
  lines = _error_line(proc)
  assert len(lines) == 1 and "different config" in lines[0] and "--overwrite" in lines[0], lines
  assert "'quick' -> 'paper'" in lines[0] and "readout: 'linear' -> 'sigmoid'" in lines[0], lines
  assert file_tree.tree(workdir) == before
  proc = _cli(TRAINED_ARGS + ["--units=8", "--overwrite", f"--workdir={workdir}"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["config"]["units"] == 8


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_latest_checkpoint_is_skipped_and_the_run_resumes_from_the_one_before(
    trained, tmp_path, damage):
  straight = trained  # an undamaged run of the same config
  workdir = _copy(trained, tmp_path)
  data = os.path.join(workdir, "checkpoints", "ckpt-20.data-00000-of-00001")
  raw = bytearray(open(data, "rb").read())
  if damage == "truncate":
    raw = raw[:len(raw) // 2]
  else:
    for i in range(0, len(raw), 101):
      raw[i] ^= 0xFF
  open(data, "wb").write(bytes(raw))
  # An analysis mode reads the one before, and says so.
  proc = _cli(["--mode=evaluate", f"--workdir={workdir}", "--eval_delays=5"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "skipped checkpoint" in proc.stderr and "ckpt-20" in proc.stderr
  # Training resumes from ckpt-10 and ends where an undamaged run ends.
  proc = _cli(TRAINED_ARGS + [f"--workdir={workdir}"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "skipped checkpoint" in proc.stderr and "ckpt-20" in proc.stderr
  assert os.path.exists(os.path.join(workdir, "checkpoints", "ckpt-10.index"))
  a, b = _weights(straight), _weights(workdir)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("mode", ["evaluate", "slow_points", "export"])
def test_analysis_modes_without_a_readable_checkpoint_end_with_one_error_line(
    trained, tmp_path, mode):
  workdir = _copy(trained, tmp_path)
  for step in (10, 20):
    with open(os.path.join(workdir, "checkpoints", f"ckpt-{step}.index"), "wb") as f:
      f.write(b"not a checkpoint")
  proc = _cli([f"--mode={mode}", f"--workdir={workdir}"])
  assert proc.returncode == 1
  lines = _error_line(proc)
  assert lines[-1].startswith("error: no checkpoint in") and "can be read" in lines[-1], lines
  assert "Traceback" not in proc.stderr
  assert all(l.startswith(("error:", "W")) or "skipped checkpoint" in l for l in lines), lines


def test_a_second_writer_is_refused_and_a_killed_holder_does_not_block(tmp_path):
  workdir = str(tmp_path / "run")
  args = PLAIN + ["--steps=100000", "--checkpoint_every=50", f"--workdir={workdir}"]
  child = main_runner.start(args)
  try:
    first = os.path.join(workdir, "checkpoints", "checkpoint")
    deadline = time.time() + 240
    while not os.path.exists(first) and child.poll() is None and time.time() < deadline:
      time.sleep(0.05)
    assert child.poll() is None, "the first run ended early"
    os.kill(child.pid, signal.SIGSTOP)   # alive and holding the lock, but off the CPU
    for second in (args, ["--mode=evaluate", f"--workdir={workdir}"]):
      proc = _cli(second)
      assert proc.returncode == 1
      lines = _error_line(proc)
      assert len(lines) == 1 and f"in use by process {child.pid}" in lines[0], lines
  finally:
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
  with open(os.path.join(workdir, ".lock")) as f:
    assert f.read().strip() == str(child.pid)  # left behind by the killed process
  proc = _cli(["--mode=evaluate", f"--workdir={workdir}", "--eval_delays=5", "--eval_trials=10"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "report accuracy by delay" in proc.stdout


def test_an_internal_value_error_is_reported_as_a_bug_not_as_bad_input(tmp_path):
  # A ValueError from inside the package (not bad input): traceback, then the bug line.
  code = ("import sys; from haviv_tf.base import config; from haviv_tf import main\n"
          "def broken(*a, **k): raise ValueError('internal failure 1234')\n"
          "config.resolve = broken\n"
          "sys.argv = ['haviv_tf.main'] + sys.argv[1:]\n"
          "main.run()\n")
  proc = subprocess.run([sys.executable, "-c", code, f"--workdir={tmp_path}/w"],
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "Traceback" in proc.stderr and "ValueError: internal failure 1234" in proc.stderr
  last = _error_line(proc)[-1]
  assert last.startswith("internal error:") and "bug" in last and "not a problem with the input" in last
  assert "error: internal failure" not in proc.stderr


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  workdir = str(tmp_path / "run")
  # First a sane run to step 10, then the same run continued at an absurd learning rate
  # cannot be a resume (config differs), so use one run whose decayed phase explodes: the
  # learning rate is tiny until lr_decay_step, then multiplied by 1e40.
  proc = _cli(PLAIN + ["--steps=40", "--checkpoint_every=10", "--learning_rate=1e-3",
                      "--lr_decay_step=20", "--lr_decay_factor=1e41", f"--workdir={workdir}"])
  assert proc.returncode == 1
  lines = _error_line(proc)
  assert len(lines) == 1 and "non-finite" in lines[0], lines
  state = tf.train.get_checkpoint_state(os.path.join(workdir, "checkpoints"))
  last = int(state.model_checkpoint_path.rsplit("-", 1)[1])
  assert last == 20, state.model_checkpoint_path
  assert all(np.all(np.isfinite(v)) for v in _weights(workdir).values() if v.dtype.kind == "f")
  assert not os.path.exists(os.path.join(workdir, "results.json"))


@pytest.mark.parametrize("args, message", [
    (["--protocol=foo"], "unknown protocol 'foo'; valid: vocu, decu, nacu"),
    (["--dataset=svhn"], "unknown dataset 'svhn'; valid: mnist, mnist_sample, cifar10"),
    (["--arch=rnn"], "unknown arch 'rnn'; valid: gru, lstm"),
    (["--preset=huge"], "unknown preset 'huge'; valid: paper, quick"),
    (["--steps=0"], "`train_steps` must be a positive integer, got 0"),
    (["--batch_size=-4"], "`batch_size` must be a positive integer, got -4"),
    (["--units=abc"], "--units=abc"),
    (["--mode=dance"], "unknown mode 'dance'"),
    (["stray"], "unexpected arguments: stray"),
    (["--dataset=mnist", "--data_dir=/nonexistent/dir"], "/nonexistent/dir is not a directory"),
    (["--mode=correlate"], "--mode=correlate needs --workdirs"),
    (["--mode=analyze"], "--mode=correlate needs --workdirs"),  # the earlier name, an alias
    (["--sampler_nice=20"], "--sampler_nice must be in [0, 19], got 20"),
    (["--sampler_nice=-1"], "--sampler_nice must be in [0, 19], got -1"),
    (["--mode=evaluate", "--sampler_nice=5"],
     "--sampler_nice goes with --mode=train, --mode=finetune, --mode=compare"),
    (["--sp_recipe=foo"], "unknown --sp_recipe 'foo'; valid: default, paper"),
    (["--mode=slow_points", "--sp_window=0"], "--sp_window must be positive, got 0"),
    (["--mode=slow_points", "--sp_rel_tol=-0.1"], "--sp_rel_tol must be positive, got -0.1"),
    (["--mode=backtrack", "--sp_q_tol=0"], "--sp_q_tol must be positive, got 0.0"),
])
def test_bad_input_is_one_line_and_exit_1(tmp_path, args, message):
  proc = _cli(args + [f"--workdir={tmp_path}/w"])
  assert proc.returncode == 1
  lines = _error_line(proc)
  assert len(lines) == 1, lines
  assert message in lines[0]
  assert "Traceback" not in proc.stderr


def test_unreadable_data_is_one_line(tmp_path):
  data = tmp_path / "data"
  data.mkdir()
  for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
    (data / name).write_bytes(b"garbage")
  proc = _cli(["--dataset=mnist", f"--data_dir={data}", f"--workdir={tmp_path}/w"])
  assert proc.returncode == 1
  lines = _error_line(proc)
  assert len(lines) == 1 and "not a readable gzip file" in lines[0], lines


@pytest.mark.parametrize("mode", ["evaluate", "slow_points", "export"])
def test_analysis_modes_refuse_a_workdir_without_a_trained_model(tmp_path, mode):
  proc = _cli([f"--mode={mode}", f"--workdir={tmp_path}"])
  assert proc.returncode == 1
  lines = _error_line(proc)
  assert len(lines) == 1 and "no haviv_tf run" in lines[0], lines


def test_modes_on_a_trained_workdir_and_analyze(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  proc = _cli(["--mode=evaluate", f"--workdir={workdir}", "--eval_delays=7,100",
               "--eval_trials=20"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  assert {"5", "7", "100"} <= set(results["accuracy_by_delay"])
  proc = _cli(["--mode=analyze", f"--workdirs={workdir}", f"--out={tmp_path}/out"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  with open(os.path.join(tmp_path, "out", "analysis.json")) as f:
    assert len(json.load(f)["rows"]) == 10
  proc = _cli(["--mode=finetune", f"--parent={workdir}", "--finetune=center_mass", "--steps=3"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "fine-tuned (center_mass)" in proc.stdout
  with open(os.path.join(workdir + "_finetune", "center_mass", "config.json")) as f:
    assert json.load(f)["parent"]["workdir"] == os.path.abspath(workdir)
  # (--mode=backtrack on a trained workdir: rerun_test's back-tracking test.)
  # Stored slow points of another recipe are kept unless --overwrite; the same settings again
  # are found to be done.
  stored = open(os.path.join(workdir, "slow_points.npz"), "rb").read()
  proc = _cli(["--mode=slow_points", "--sp_recipe=paper", f"--workdir={workdir}",
               "--sp_max_iters=50"])
  assert proc.returncode == 1
  lines = _error_line(proc)
  assert len(lines) == 1 and "--overwrite replaces them" in lines[0], lines
  assert open(os.path.join(workdir, "slow_points.npz"), "rb").read() == stored
  proc = _cli(["--mode=slow_points", f"--workdir={workdir}", "--sp_max_iters=300"])
  assert proc.returncode == 0 and "nothing to do" in proc.stdout, proc.stderr[-2000:]
  # A second recipe beside the first: its own folder, the workdir's results.json unchanged.
  before = json.load(open(os.path.join(workdir, "results.json")))
  proc = _cli(["--mode=slow_points", "--sp_recipe=paper", f"--workdir={workdir}",
               "--sp_max_iters=50", "--sp_dir=slow_points_paper"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert json.load(open(os.path.join(workdir, "results.json"))) == before
  side = json.load(open(os.path.join(workdir, "slow_points_paper", "results.json")))
  assert side["slow_points_recipe"] == "paper" and side["slow_points_step"] == before["step"]
  assert os.path.exists(os.path.join(workdir, "slow_points_paper", "slow_points.npz"))
  assert "accuracy_by_delay" not in side
  # The authors' recipe writes the same files.
  proc = _cli(["--mode=slow_points", "--sp_recipe=paper", f"--workdir={workdir}",
               "--sp_max_iters=50", "--overwrite"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "paper recipe" in proc.stdout
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  assert results["slow_points_recipe"] == "paper" and results["slow_points_format"] == 2
  assert results["slow_point_config"]["max_iters"] == 50
  assert results["slow_point_config"]["drop_step"] == 20
  assert set(results["memory_predictors"]) >= {"speed", "expected_speed", "time_constant",
                                                "com_drift", "spread_rate", "accuracy_decay"}
  # Slow points of an older format: one line naming the fix, nothing overwritten.
  sp_path = os.path.join(workdir, "slow_points.npz")
  with np.load(sp_path) as f:
    old = {k: f[k] for k in f.files if k in ("states", "speed", "q", "readout", "init_class",
                                             "eigenvalues", "max_abs_eig", "num_unstable",
                                             "iters")}
  np.savez(sp_path, format_version=np.int32(1), **old)
  del results["slow_points_format"]
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f)
  def files():  # the lock file records the latest holder's PID; everything else must stay
    return {n: open(os.path.join(workdir, n), "rb").read() for n in os.listdir(workdir)
            if os.path.isfile(os.path.join(workdir, n)) and n != artifacts.LOCK_FILE}
  before = files()
  for args in (["--mode=backtrack", f"--workdir={workdir}"],
               ["--mode=analyze", f"--workdirs={workdir}", f"--out={tmp_path}/out2"]):
    proc = _cli(args)
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = _error_line(proc)
    assert len(lines) == 1 and "older" in lines[0] and "re-run --mode=slow_points" in lines[0], lines
  assert files() == before
  assert not os.path.exists(tmp_path / "out2")


@pytest.mark.parametrize("args, message", [
    (["--mode=finetune"], "--mode=finetune needs --parent=DIR"),
    (["--mode=compare"], "--mode=compare needs --parent=DIR"),
    (["--mode=finetune", "--parent=/x", "--finetune=louder"], "needs --finetune, one of control"),
    (["--mode=compare", "--parent=/x", "--units=4"], "takes its config from --parent; drop --units"),
    (["--mode=compare", "--parent=/x", "--learning_rate=1e-3"], "drop --learning_rate"),
    (["--mode=finetune", "--parent=/x", "--finetune=control", "--learning_rate=-1"],
     "--learning_rate must be a positive finite number"),
    (["--mode=compare", "--parent=/x", "--steps=-1"], "--steps must be a positive integer"),
    (["--mode=finetune", "--parent=/nonexistent", "--finetune=control"], "no haviv_tf run"),
    (["--finetune=control"], "--finetune goes with --mode=finetune"),
    (["--mode=backtrack"], "--mode=backtrack needs --workdir"),
])
def test_control_modes_refuse_bad_input_with_one_line(tmp_path, args, message):
  proc = _cli(args)
  assert proc.returncode == 1
  lines = _error_line(proc)
  assert len(lines) == 1 and message in lines[0], lines


def test_evaluate_keeps_stored_accuracies_of_more_trials_and_adds_new_delays(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  path = os.path.join(workdir, "results.json")
  before = json.load(open(path))
  proc = _cli(["--mode=evaluate", f"--workdir={workdir}", "--eval_trials=7",
               "--eval_delays=5,7"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "kept the stored 40-trial accuracy" in proc.stdout and "--overwrite" in proc.stdout
  after = json.load(open(path))
  assert after["accuracy_by_delay"]["5"] == before["accuracy_by_delay"]["5"]
  assert after["trials_per_delay"]["5"] == 40 and after["trials_per_delay"]["7"] == 7
  assert after["per_class_accuracy_by_delay"]["5"] == before["per_class_accuracy_by_delay"]["5"]
  proc = _cli(["--mode=evaluate", f"--workdir={workdir}", "--eval_trials=7",
               "--eval_delays=5", "--overwrite"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert json.load(open(path))["trials_per_delay"]["5"] == 7


def test_memory_mode_follows_delays_and_stores_half_lives(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  # Past the training delays the memory mode picks its own delays: drop the run's delay 100.
  path = os.path.join(workdir, "results.json")
  stored = json.load(open(path))
  for by_delay in stored.values():
    if isinstance(by_delay, dict):
      by_delay.pop("100", None)
  with open(path, "w") as f:
    json.dump(stored, f)
  proc = _cli(["--mode=memory", f"--workdir={workdir}", "--max_delay=200"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "memory half-life" in proc.stdout
  results = json.load(open(os.path.join(workdir, "results.json")))
  half = results["memory_half_life"]
  assert set(half["per_class"]) == {str(c) for c in range(10)}
  assert set(half["per_class_informedness"]) == set(half["per_class"])  # confusion at each delay
  assert half["overall"]["status"] in ("decayed", "censored", "at_chance")
  evaluated = sorted(int(d) for d in results["accuracy_by_delay"])
  assert evaluated[:3] == [5, 10, 19] and evaluated[-1] <= 200
  # Stops at the first delay beyond a training trial within noise of chance, or goes to 200.
  beyond = [d for d in evaluated if d >= 20]
  accs = [results["accuracy_by_delay"][str(d)] for d in beyond]
  bound = 0.1 + 2 * (0.09 / 40) ** 0.5
  assert all(a > bound for a in accs[:-1]) and (accs[-1] <= bound or beyond[-1] == 200)
  # Every evaluated delay keeps where each class went: its diagonal is the report accuracy.
  for d in evaluated:
    counts = results["report_confusion_by_delay"][str(d)]
    assert sum(map(sum, counts)) == results["trials_per_delay"][str(d)]
    assert sum(counts[c][c] for c in range(10)) / sum(map(sum, counts)) == pytest.approx(
        results["accuracy_by_delay"][str(d)])
  # Run again on the finished curve: nothing is measured again (a stored value stays as it
  # was written), and the half-lives are recomputed from the stored curve.
  results["accuracy_by_delay"]["10"] = 0.5
  del results["memory_half_life"]
  with open(path, "w") as f:
    json.dump(results, f)
  proc = _cli(["--mode=memory", f"--workdir={workdir}", "--max_delay=200"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  again = json.load(open(path))
  assert again["accuracy_by_delay"] == results["accuracy_by_delay"]
  assert again["memory_half_life"]["overall"]["level"] == pytest.approx(np.mean(
      [results["accuracy_by_delay"][k] for k in ("5", "10", "19")]))


def test_memory_mode_names_the_classes_others_drain_into():
  from haviv_tf.cli import analysis_modes  # pylint: disable=g-import-not-at-top
  decayed = lambda h: dict(half_life=h, censored=False, status="decayed", recovers_at=None)
  half = dict(per_class={"0": decayed(50.0), "9": dict(decayed(40.0), recovers_at=500)},
              per_class_informedness={"0": decayed(45.0), "9": decayed(42.0)})
  assert analysis_modes.sink_lines(half) == [
      "  class 9: accuracy half-life 40 (back above halfway by 500), informedness half-life "
      "42: other classes' trials are reported as 9"]


@pytest.mark.parametrize("args, message", [
    (["--eval_delays=10,5"], "sorted and distinct"),
    (["--eval_delays=5,5"], "sorted and distinct"),
    (["--eval_delays=2,5"], "below the run's minimum delay 4"),
    (["--eval_delays=5,200000"], "beyond the longest delay"),
    (["--max_delay=200000"], "--max_delay must be in"),
    (["--eval_delays=5"], "a half-life needs accuracies at two or more delays"),
])
def test_memory_mode_bad_input_is_one_line_and_keeps_results(trained, tmp_path, args, message):
  workdir = _copy(trained, tmp_path)
  os.remove(os.path.join(workdir, "results.json")) if "--eval_delays=5" in args else None
  before = {n: open(os.path.join(workdir, n), "rb").read() for n in os.listdir(workdir)
            if n.endswith(".json") and n != artifacts.LOCK_FILE}
  proc = _cli(["--mode=memory", f"--workdir={workdir}"] + args)
  assert proc.returncode == 1, proc.stdout[-2000:]
  lines = _error_line(proc)
  assert len(lines) == 1 and message in lines[0], lines
  if "--eval_delays=5" not in args:
    after = {n: open(os.path.join(workdir, n), "rb").read() for n in before}
    assert after == before
