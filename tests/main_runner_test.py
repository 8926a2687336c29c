"""tests/main_runner.py: a forked run of haviv_tf.main ends as a real `python3 -m` run does."""

import os
import subprocess
import sys

import pytest

import main_runner  # pylint: disable=g-bad-import-order


def _real(args, cwd, env=None):
  return subprocess.run([sys.executable, "-m", "haviv_tf.main", *args], capture_output=True,
                        text=True, timeout=300, cwd=cwd, env=env)


@pytest.mark.parametrize("args", [
    ["--mode=bogus"],                                           # a flag error: one line, exit 1
    ["--dry_run", "--dataset=mnist_sample", "--workdir=w"],     # the resolved config, exit 0
    ["--dry_run", "--strategy=multi_worker", "--workdir=w"],    # reads TF_CONFIG from the env
    ["--unknown_flag=1"],                                       # absl's own usage error
])
def test_a_forked_run_prints_and_exits_as_a_real_one(tmp_path, args):
  env = dict(os.environ, TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:1"]}, '
                                   '"task": {"type": "worker", "index": 0}}')
  real = _real(args, str(tmp_path), env)
  forked = main_runner.run(args, cwd=str(tmp_path), env=env, timeout=300)
  assert forked.returncode == real.returncode, (forked.stderr, real.stderr)
  assert forked.stdout == real.stdout
  assert forked.stderr == real.stderr
  assert not os.listdir(tmp_path)   # a dry run and a refused run write nothing


def test_a_started_run_can_be_killed_and_reports_its_signal(tmp_path):
  proc = main_runner.start(["--dataset=mnist_sample", "--steps=100000", "--jit_compile=false",
                            f"--workdir={tmp_path / 'w'}"], stdout=str(tmp_path / "log"))
  assert proc.poll() is None and proc.pid > 0
  proc.kill()
  assert proc.wait(timeout=60) == -9
