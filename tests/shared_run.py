"""One finished tiny run shared by the test files that start from a trained workdir.

main_test, rerun_test and summaries_test each trained the same tiny network in a subprocess,
once per pytest-xdist worker that ran one of their tests. `trained_run` trains it once per test
session (the workers take turns on a file lock in the session's shared temporary folder; the
second finds it done) and hands out its workdir and the training's output. Tests read it, or
copy it (`copy_run`) before changing it.

Import the fixture into a test file (`from shared_run import trained_run`): Bazel runs a test
file without conftest.py.
"""

import fcntl
import json
import os
import shutil

import pytest
import main_runner  # pylint: disable=g-bad-import-order

# The run: 20 steps of a 16-unit GRU on the packaged MNIST sample, no XLA (compiling a tiny
# network's steps costs more than running them; the default, XLA, is tested end to end in
# main_test's first test), evaluated at delays 5, 10, 19 and 100, 300 slow-point iterations.
ARGS = ["--preset=quick", "--dataset=mnist_sample", "--units=16", "--batch_size=16",
        "--eval_trials=40", "--eval_delays=5,10,19,100", "--sp_max_iters=300",
        "--jit_compile=false", "--steps=20", "--checkpoint_every=10", "--log_every=5"]


class Run:
  """A finished run: its workdir and the training command's return code, stdout and stderr."""

  def __init__(self, workdir, returncode, stdout, stderr):
    self.workdir, self.returncode, self.stdout, self.stderr = workdir, returncode, stdout, stderr


def _shared_folder(tmp_path_factory):
  """The session's temporary folder, the same for every xdist worker of the session."""
  base = tmp_path_factory.getbasetemp()
  return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def build(folder) -> Run:
  """Trains ARGS into folder/shared_run once (under a lock); later calls read what it wrote."""
  workdir = os.path.join(folder, "shared_run", "run")
  record = os.path.join(folder, "shared_run", "training.json")
  os.makedirs(os.path.dirname(workdir), exist_ok=True)
  with open(os.path.join(folder, "shared_run.lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not os.path.exists(record):
      shutil.rmtree(workdir, ignore_errors=True)   # a build another worker did not finish
      proc = main_runner.run([*ARGS, f"--workdir={workdir}"], timeout=900)
      if proc.returncode != 0:
        return Run(workdir, proc.returncode, proc.stdout, proc.stderr)
      with open(record + ".tmp", "w") as f:
        json.dump(dict(returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr), f)
      os.replace(record + ".tmp", record)
  with open(record) as f:
    return Run(workdir, **json.load(f))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Run:
  """The shared finished run (see the module docstring); never change its workdir."""
  run = build(str(_shared_folder(tmp_path_factory)))
  assert run.returncode == 0, run.stderr[-3000:]
  return run


def copy_run(run: Run, tmp_path, name="run") -> str:
  """A copy of the run's workdir that a test may change."""
  workdir = str(tmp_path / name)
  shutil.copytree(run.workdir, workdir)
  return workdir
