"""Re-running a mode on a finished workdir never silently replaces what it holds (issue 31,
item 4), and every mode says what it did: progress lines, `wrote:` lines, the TensorBoard
command after training (item 3)."""

import json
import os
import re
import shutil

import pytest

from haviv_tf.base import artifacts
import shared_run  # pylint: disable=g-bad-import-order
from shared_run import trained_run  # pylint: disable=unused-import,g-bad-import-order
import main_runner  # pylint: disable=g-bad-import-order

TRAIN = shared_run.ARGS   # the shared run's training command (tests/shared_run.py)


def _cli(args, timeout=600):
  return main_runner.run(args, timeout=timeout)


def _one_error(proc):
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert lines and lines[-1].startswith("error: ") and "Traceback" not in proc.stderr, lines
  assert not [l for l in lines if l.startswith("error:")][1:], lines
  return lines[-1]


def _bytes(*paths):
  return [open(p, "rb").read() for p in paths]


@pytest.fixture
def trained(trained_run):  # pylint: disable=redefined-outer-name
  """(workdir, the training's output (.stdout, .stderr)) of the shared run; copy before changing."""
  return trained_run.workdir, trained_run


def _copy(trained, tmp_path, name="run"):
  workdir = str(tmp_path / name)
  shutil.copytree(trained[0], workdir)
  return workdir


def test_training_shows_progress_names_its_files_and_the_tensorboard_command(trained):
  workdir, proc = trained
  for line in ("evaluated delay 5 (1 of 4): report accuracy", "evaluated delay 100 (4 of 4)",
               "slow points: iteration ", " points stopped", "slow points: "):
    assert line in proc.stderr, (line, proc.stderr[-3000:])
  out = proc.stdout.splitlines()
  for line in (f"wrote: {os.path.join(workdir, 'results.json')}",
               f"wrote: {os.path.join(workdir, 'config.json')}",
               f"wrote: {os.path.join(workdir, 'accuracy_vs_delay.png')}"):
    assert line in out, (line, out)
  assert any(l.startswith(f"wrote: {os.path.join(workdir, 'checkpoints')}{os.sep} (") for l in out)
  assert any(l.startswith(f"wrote: {os.path.join(workdir, 'tensorboard')}{os.sep} (") for l in out)
  assert out[-1] == f"TensorBoard: tensorboard --logdir {workdir}"
  # TensorFlow's own INFO chatter stays out (-v 0 shows it).
  assert "Sharding callback" not in proc.stderr
  record = json.load(open(os.path.join(workdir, "config.json")))
  assert set(record["environment"]["code_revision"]) == {"commit", "dirty"}


def test_training_again_with_another_recipe_keeps_the_slow_points(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  files = [os.path.join(workdir, n) for n in ("slow_points.npz", "slow_points_unique.npz")]
  before = _bytes(*files)
  proc = _cli(TRAIN + [f"--workdir={workdir}", "--sp_recipe=paper", "--sp_max_iters=50"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "kept the stored slow points of step 20" in proc.stdout and "--overwrite" in proc.stdout
  assert _bytes(*files) == before
  results = artifacts.read_json(os.path.join(workdir, "results.json"))
  assert results["slow_points_recipe"] == "default"
  assert f"wrote: {os.path.join(workdir, 'results.json')}" in proc.stdout
  assert f"wrote: {os.path.join(workdir, 'slow_points.npz')}" not in proc.stdout


def test_slow_points_of_an_older_trajectory_cloud_are_kept_and_named(trained, tmp_path):
  # A run whose memory predictors came from a cloud of another noise bank (a CIFAR-10 run
  # searched before the bank existed, here simulated on the shared MNIST run: its bank is 0):
  # a re-run with the same search settings keeps the points and says what differs, so a
  # sweep resumes past them; --overwrite searches again.
  workdir = _copy(trained, tmp_path)
  path = os.path.join(workdir, "results.json")
  results = artifacts.read_json(path)
  results["memory_predictor_settings"]["cloud_noise_bank"] = 4096
  artifacts.write_json(path, results)
  files = [os.path.join(workdir, n) for n in ("slow_points.npz", "results.json")]
  before = _bytes(*files)
  proc = _cli(["--mode=slow_points", f"--workdir={workdir}", "--sp_max_iters=300"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "trajectory cloud drawn with noise bank 4096 (today's: 0); kept them" in proc.stdout
  assert "--overwrite" in proc.stdout and _bytes(*files) == before
  # Other search settings are still refused.
  line = _one_error(_cli(["--mode=slow_points", f"--workdir={workdir}", "--sp_max_iters=40"]))
  assert "--overwrite" in line and _bytes(*files) == before
  proc = _cli(["--mode=slow_points", f"--workdir={workdir}", "--sp_max_iters=300",
               "--overwrite"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "cloud_noise_bank" not in artifacts.read_json(path)["memory_predictor_settings"]


def test_export_of_an_exported_network_does_nothing_without_overwrite(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  model = os.path.join(workdir, "saved_model", "saved_model.pb")
  before = os.stat(model).st_mtime_ns
  proc = _cli(["--mode=export", f"--workdir={workdir}"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "already exported at step 20" in proc.stdout and "--overwrite" in proc.stdout
  assert f"wrote: nothing new in {workdir}" in proc.stdout
  assert os.stat(model).st_mtime_ns == before
  proc = _cli(["--mode=export", f"--workdir={workdir}", "--overwrite"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert f"wrote: {os.path.join(workdir, 'saved_model')}{os.sep} (" in proc.stdout


def test_backtracking_shows_progress_and_keeps_a_result_of_other_settings(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  proc = _cli(["--mode=backtrack", f"--workdir={workdir}", "--sp_max_iters=30"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert re.search(r"\d+ slow points followed back through \d+ snapshots", proc.stdout)
  assert "retracing" not in proc.stderr   # one compiled search serves every snapshot
  assert "back-tracking: snapshot 1 of " in proc.stderr and " left" in proc.stderr
  assert f"wrote: {os.path.join(workdir, 'backtrack.json')}" in proc.stdout
  path = os.path.join(workdir, "backtrack.json")
  stored = _bytes(path)
  proc = _cli(["--mode=backtrack", f"--workdir={workdir}", "--sp_max_iters=30"])
  assert proc.returncode == 0 and "nothing to do" in proc.stdout, proc.stderr[-2000:]
  assert _bytes(path) == stored
  for other in (["--sp_max_iters=30", "--merge_frac=0.2"], ["--sp_max_iters=40"]):
    line = _one_error(_cli(["--mode=backtrack", f"--workdir={workdir}", *other]))
    assert "other settings" in line and "--overwrite" in line, line
    assert _bytes(path) == stored
  proc = _cli(["--mode=backtrack", f"--workdir={workdir}", "--sp_max_iters=30",
               "--merge_frac=0.2", "--overwrite"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  record = artifacts.read_json(path)
  # Merges measured between the states (the application never dedups in speed coordinates).
  assert record["merge_frac"] == 0.2 and record["merge_space"] == "state"


def test_analysis_of_other_runs_is_not_written_over_without_overwrite(trained, tmp_path):
  a, b = _copy(trained, tmp_path, "a"), _copy(trained, tmp_path, "b")
  out = str(tmp_path / "out")
  proc = _cli(["--mode=analyze", f"--workdirs={a}", f"--out={out}"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert f"wrote: {os.path.join(out, 'analysis.json')}" in proc.stdout
  stored = _bytes(os.path.join(out, "analysis.json"))
  line = _one_error(_cli(["--mode=analyze", f"--workdirs={a},{b}", f"--out={out}"]))
  assert "analysis of other runs" in line and "--overwrite" in line, line
  assert _bytes(os.path.join(out, "analysis.json")) == stored
  proc = _cli(["--mode=analyze", f"--workdirs={a}", f"--out={out}"])  # the same runs: redone
  assert proc.returncode == 0, proc.stderr[-2000:]
  proc = _cli(["--mode=analyze", f"--workdirs={a},{b}", f"--out={out}", "--overwrite"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert len(artifacts.read_json(os.path.join(out, "analysis.json"))["workdirs"]) == 2


def test_compare_refuses_a_finished_fine_tuning_of_other_settings(trained, tmp_path):
  parent = _copy(trained, tmp_path)
  out = str(tmp_path / "ft")
  proc = _cli(["--mode=finetune", f"--parent={parent}", "--finetune=control", "--steps=2",
               f"--workdir={os.path.join(out, 'control')}", "--sp_max_iters=50"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "fine-tuning control of" in proc.stderr
  assert proc.stdout.splitlines()[-1].startswith("TensorBoard: tensorboard --logdir ")
  stored = _bytes(os.path.join(out, "control", "results.json"))
  line = _one_error(_cli(["--mode=compare", f"--parent={parent}", "--steps=3", f"--out={out}",
                          "--sp_max_iters=50"]))
  assert "different config" in line and "train_steps: 2 -> 3" in line and "--overwrite" in line
  assert _bytes(os.path.join(out, "control", "results.json")) == stored
  assert not os.path.exists(os.path.join(out, "slow_points"))  # refused before any training


def test_study_refuses_an_out_holding_another_grids_report(tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  (out / "report.json").write_text(json.dumps({"grid": "medium", "root": "elsewhere"}))
  root = tmp_path / "root"
  line = _one_error(_cli(["--mode=study", "--grid=small", f"--workdir={root}", f"--out={out}"]))
  assert "holds the report of grid 'medium'" in line and "--overwrite" in line, line
  assert not root.exists() or not os.listdir(root)
