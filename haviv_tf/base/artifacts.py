"""Workdir files: a lock, the one atomic-write path (atomic_path), JSON, npz without pickle,
package versions."""

import contextlib
import fcntl
import json
import os
import platform
import subprocess
import tempfile
from typing import Any, Iterator

import numpy as np

from haviv_tf.base import config as config_lib

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
LOCK_FILE = ".lock"


class RunError(config_lib.InputError):
  """An expected failure (bad workdir, corrupt checkpoint, NaN loss); the message is one line."""


@contextlib.contextmanager
def workdir_lock(workdir: str) -> Iterator[None]:
  """Holds an exclusive lock on `workdir` (created if missing) for the block.

  fcntl.flock on workdir/.lock, which holds the holder's PID. The kernel releases the lock when
  its process ends, however it ends, so a lock left by a killed process never blocks.

  Raises:
    RunError: another process holds the lock (naming its PID), or `workdir` is not a directory.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise RunError(f"--workdir {workdir} exists and is not a directory")
  created = _outermost_missing(workdir)   # the folders made here: created and those inside it
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
      raise RunError(f"{workdir} is in use by process {holder} (it holds {path}); wait for it "
                     "to finish or stop it, or use another --workdir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    try:
      yield
    except BaseException:
      if created and os.listdir(workdir) == [LOCK_FILE]:  # failed before writing anything
        os.remove(path)
        _remove_empty(workdir, created)
      raise
  finally:
    os.close(fd)  # releases the lock


def _outermost_missing(path: str):
  """The outermost folder of `path` that does not exist yet (None if `path` exists)."""
  path = os.path.abspath(path)
  if os.path.exists(path):
    return None
  while not os.path.exists(os.path.dirname(path)):
    path = os.path.dirname(path)
  return path


def _remove_empty(path: str, outermost: str) -> None:
  """Removes `path` and its parents up to `outermost` (included) while they are empty."""
  path, outermost = os.path.abspath(path), os.path.abspath(outermost)
  while True:
    if os.listdir(path):
      return
    os.rmdir(path)
    if path == outermost:
      return
    path = os.path.dirname(path)


def fsync_directory(directory: str) -> None:
  """Flushes `directory`'s entries (a rename in it) to disk; a no-op where directories cannot
  be opened (Windows)."""
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass  # some filesystems refuse fsync on a directory; the rename still happened
  finally:
    os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
  """Yields a temporary path beside `path`; moves it over `path` only if the block succeeds.

  The one atomic-write path of the application: the block writes the temporary file by any
  means (open, np.savez, savefig); afterwards its contents are fsynced, it is renamed over
  `path` (os.replace) and the directory is fsynced, so a crash leaves the old file or the new
  one, never a partial one. On any error the temporary file is removed and `path` is untouched.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                             dir=directory)
  os.close(fd)
  try:
    yield tmp
    fd = os.open(tmp, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)
    os.replace(tmp, path)
    fsync_directory(directory)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_text(path: str, text: str) -> None:
  with atomic_path(path) as tmp:
    with open(tmp, "w") as f:
      f.write(text)


def write_bytes(path: str, data: bytes) -> None:
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      f.write(data)


def write_json(path: str, obj: Any) -> None:
  write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=jsonable) + "\n")


def read_json(path: str) -> Any:
  """Reads JSON; raises InputError (a ValueError) with the path if it is not valid JSON."""
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise config_lib.InputError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None


def recorded_config(workdir: str):
  """The Config a run recorded in workdir/config.json, or None if there is no such file.

  Runs recorded before a field existed get that field's value from before
  (Config.from_record).

  Raises:
    RunError: the file is unreadable or not a haviv_tf config (one line, with the path).
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  try:
    record = read_json(path)
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
      raise ValueError("no \"config\" object")
    cfg = config_lib.Config.from_record(record["config"])
    config_lib.validate(cfg)
    return cfg
  except (OSError, ValueError, TypeError) as e:
    raise RunError(f"{path} is not a haviv_tf config ({e})") from None


def update_json(path: str, updates: dict) -> dict:
  """Merges `updates` into the JSON object at `path` (created if missing), atomically."""
  current = read_json(path) if os.path.exists(path) else {}
  current.update(updates)
  write_json(path, current)
  return current


def save_npz(path: str, **arrays: np.ndarray) -> None:
  """An npz of numbers and strings, atomically; an object array is refused (np.savez would
  pickle it, and load_npz never unpickles).

  The slow-point library has its own writer (dynamics.points.save_npz): the library must not
  import the application, and importing it here would load TensorFlow into every tool that
  only reads and writes run files."""
  for name, value in arrays.items():
    if np.asanyarray(value).dtype.hasobject:
      raise ValueError(f"array {name!r} holds Python objects; not written (no pickle)")
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      np.savez(f, **arrays)


def load_npz(path: str) -> dict[str, np.ndarray]:
  with np.load(path, allow_pickle=False) as f:
    return {k: f[k] for k in f.files}


def jsonable(obj):
  """json.dumps `default=`: numpy scalars and arrays as Python values."""
  if isinstance(obj, np.generic):
    return obj.item()
  if isinstance(obj, np.ndarray):
    return obj.tolist()
  raise TypeError(f"cannot write {type(obj).__name__} to JSON")


UNKNOWN_REVISION = "unknown"
# A file only a haviv_tf checkout holds (this module), relative to the checkout's top.
PACKAGE_MARKER = ("haviv_tf", "base", "artifacts.py")


def code_revision(directory: str = None) -> dict:
  """The git revision of the haviv_tf code: {"commit": sha, "dirty": bool} (dirty: tracked
  files differ from the commit), or {"commit": "unknown", "dirty": "unknown"} outside a git
  checkout (an installed wheel, no git program). Never raises."""
  directory = directory or os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))  # the checkout holding haviv_tf/base/
  unknown = {"commit": UNKNOWN_REVISION, "dirty": UNKNOWN_REVISION}

  def git(*args):
    return subprocess.run(["git", "-C", directory, *args], capture_output=True, text=True,
                          timeout=30, check=True, stdin=subprocess.DEVNULL).stdout.strip()
  try:
    top = git("rev-parse", "--show-toplevel")
    if not os.path.exists(os.path.join(top, *PACKAGE_MARKER)):
      return unknown  # some other repository around an installed copy
    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
  except (OSError, subprocess.SubprocessError, ValueError):
    return unknown
  return {"commit": commit, "dirty": dirty}


def environment() -> dict:
  """Versions of the packages and machine a run used, and the code revision (code_revision),
  for its config.json and reports."""
  from importlib import metadata
  versions = {}
  for pkg in ("tensorflow", "keras", "tensorflow-datasets", "numpy", "scipy", "absl-py",
              "matplotlib", "haviv_tf"):
    try:
      versions[pkg] = metadata.version(pkg)
    except metadata.PackageNotFoundError:
      versions[pkg] = "not installed"
  versions["python"] = platform.python_version()
  versions["machine"] = f"{platform.system()} {platform.machine()}, {os.cpu_count()} cpus"
  versions["code_revision"] = code_revision()
  return versions


def revision_text(revision) -> str:
  """A code_revision() record as one short phrase: "abc1234" / "abc1234 (dirty)" / "unknown"."""
  if not isinstance(revision, dict) or revision.get("commit") in (None, UNKNOWN_REVISION):
    return UNKNOWN_REVISION
  return revision["commit"][:12] + (" (dirty)" if revision.get("dirty") is True else "")


def duration(seconds: float) -> str:
  """A duration for progress lines: "42 s", "3.5 min", "2.1 h"."""
  if seconds < 90:
    return f"{seconds:.0f} s"
  if seconds < 5400:
    return f"{seconds / 60:.1f} min"
  return f"{seconds / 3600:.1f} h"
