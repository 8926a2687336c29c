"""Tests for haviv_tf.base.artifacts: reading a run's recorded config."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from haviv_tf.base import artifacts
from haviv_tf.base import config as config_lib


def _write(workdir, text):
  workdir.mkdir(exist_ok=True)
  (workdir / artifacts.CONFIG_FILE).write_text(text)


def test_recorded_config_round_trips_and_is_none_without_a_file(tmp_path):
  assert artifacts.recorded_config(str(tmp_path / "empty")) is None
  cfg = config_lib.resolve("quick", "mnist_sample", dict(seed=5, protocol="decu"))
  artifacts.write_json(str(tmp_path / "run" / artifacts.CONFIG_FILE),
                       dict(config=cfg.to_dict(), seed=5))
  assert artifacts.recorded_config(str(tmp_path / "run")) == cfg


def test_a_record_without_newer_fields_gets_their_earlier_values(tmp_path):
  d = config_lib.preset("quick", "mnist").to_dict()
  del d["trial_backend"]
  _write(tmp_path / "old", json.dumps(dict(config=d)))
  assert artifacts.recorded_config(str(tmp_path / "old")).trial_backend == "tf"


@pytest.mark.parametrize("text, why", [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", 'no "config" object'),
    ('{"seed": 1}', 'no "config" object'),
    ('{"config": {"protocol": "vocu", "colour": 3}}', "unknown config fields ['colour']"),
    ('{"config": {"units": "many"}}', "units"),
])
def test_an_unreadable_record_is_one_run_error_naming_the_file(tmp_path, text, why):
  _write(tmp_path / "bad", text)
  with pytest.raises(artifacts.RunError) as e:
    artifacts.recorded_config(str(tmp_path / "bad"))
  msg = str(e.value)
  assert str(tmp_path / "bad" / artifacts.CONFIG_FILE) in msg and why in msg, msg
  assert "\n" not in msg


def _git(repo, *args):
  subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                 env=dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
                          GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t"))


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git program")
def test_code_revision_names_the_commit_and_whether_tracked_files_changed(tmp_path):
  repo = tmp_path / "repo"
  code = repo.joinpath(*artifacts.PACKAGE_MARKER)
  code.parent.mkdir(parents=True)
  code.write_text("x = 1\n")
  _git(repo, "init", "-q")
  _git(repo, "add", "-A")
  _git(repo, "commit", "-qm", "one")
  head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                        text=True, check=True).stdout.strip()
  assert artifacts.code_revision(str(repo / "haviv_tf")) == {"commit": head, "dirty": False}
  (repo / "runs").mkdir()
  (repo / "runs" / "new.txt").write_text("untracked output")  # not code: still clean
  assert artifacts.code_revision(str(repo))["dirty"] is False
  code.write_text("x = 2\n")
  assert artifacts.code_revision(str(repo)) == {"commit": head, "dirty": True}
  assert artifacts.revision_text(artifacts.code_revision(str(repo))) == head[:12] + " (dirty)"


def test_code_revision_is_unknown_outside_a_checkout_or_without_git(tmp_path):
  unknown = {"commit": "unknown", "dirty": "unknown"}
  assert artifacts.code_revision(str(tmp_path)) == unknown
  assert artifacts.revision_text(unknown) == "unknown"
  # A copy of the package outside git, as an installed wheel: environment() still works, and
  # with no git program at all too.
  shutil.copytree(os.path.dirname(os.path.dirname(artifacts.__file__)), tmp_path / "haviv_tf",
                  ignore=shutil.ignore_patterns("__pycache__"))
  script = ("import json; from haviv_tf.base import artifacts; "
            "print(json.dumps(artifacts.environment()['code_revision']))")
  for path in (os.environ.get("PATH", ""), str(tmp_path / "nobin")):
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(tmp_path),
                                                 PATH=path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == unknown


def test_environment_records_the_code_revision_beside_the_versions():
  env = artifacts.environment()
  assert env["numpy"] and set(env["code_revision"]) == {"commit", "dirty"}
  # Run from a git checkout of haviv_tf (as the tests are), it is that checkout's commit.
  here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(artifacts.__file__))))
  head = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True)
  if shutil.which("git") is None or head.returncode != 0:
    pytest.skip("haviv_tf is not imported from a git checkout")
  assert env["code_revision"]["commit"] == head.stdout.strip()


def _save_png(path, fail):
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import figure
  from haviv_tf.analysis import plotting
  fig = figure.Figure(figsize=(1, 1))
  fig.add_subplot().plot([0, 1], [1, 0])
  if fail:
    fig.savefig = _raise  # png_bytes fails mid-write
  plotting.save_png(fig, path)


def _raise(*args, **kwargs):
  raise RuntimeError("disk full")


class _Unserialisable:
  pass


class _FailingArray:
  """Fails when np.savez converts it, after the first array has been written."""

  def __array__(self, dtype=None, copy=None):
    raise RuntimeError("disk full")


_WRITERS = {
    "write_json": lambda path, fail: artifacts.write_json(
        path, dict(a=[1, 2], b=_Unserialisable()) if fail else dict(a=[1, 2])),
    "save_npz": lambda path, fail: artifacts.save_npz(
        path, a=np.arange(3), b=_FailingArray() if fail else np.ones(2)),
    "save_png": _save_png,
}


@pytest.mark.parametrize("writer", sorted(_WRITERS))
def test_a_failing_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, writer):
  path = str(tmp_path / f"out_{writer}")
  _WRITERS[writer](path, fail=False)
  with open(path, "rb") as f:
    before = f.read()
  assert before and os.listdir(tmp_path) == [os.path.basename(path)]
  with pytest.raises((TypeError, ValueError, RuntimeError)):
    _WRITERS[writer](path, fail=True)
  with open(path, "rb") as f:
    assert f.read() == before
  assert os.listdir(tmp_path) == [os.path.basename(path)]


def test_atomic_path_fsyncs_the_file_and_then_the_directory(tmp_path, monkeypatch):
  synced = []
  real_fsync = os.fsync
  monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}"))
                      or real_fsync(fd))
  path = str(tmp_path / "x.npz")
  artifacts.save_npz(path, a=np.zeros(2))
  assert len(synced) == 2 and synced[0].endswith(".tmp") and synced[1] == str(tmp_path), synced


def test_a_lock_that_fails_before_anything_is_written_leaves_no_folder_it_made(tmp_path):
  (tmp_path / "kept").mkdir()
  for workdir, gone, stays in ((tmp_path / "a" / "b" / "c", tmp_path / "a", tmp_path),
                               (tmp_path / "kept" / "x" / "y", tmp_path / "kept" / "x",
                                tmp_path / "kept")):
    with pytest.raises(RuntimeError):
      with artifacts.workdir_lock(str(workdir)):
        assert os.path.isdir(workdir)
        raise RuntimeError("bad input found after taking the lock")
    assert not gone.exists() and stays.is_dir()
  # A folder that was there, or one that something was written into, stays.
  (tmp_path / "there").mkdir()
  with pytest.raises(RuntimeError):
    with artifacts.workdir_lock(str(tmp_path / "there")):
      raise RuntimeError("x")
  assert (tmp_path / "there").is_dir()
  with pytest.raises(RuntimeError):
    with artifacts.workdir_lock(str(tmp_path / "new" / "run")):
      (tmp_path / "new" / "run" / "config.json").write_text("{}")
      raise RuntimeError("x")
  assert (tmp_path / "new" / "run" / "config.json").exists()
