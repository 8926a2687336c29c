"""No committed file names a path of the machine that made it.

Scripts take their folders as arguments, write-ups name folders relative to the repository or
to a run root, and committed run records (config.json, compare.json, analysis.json, ...) hold
no absolute workdir or data location: `experiments/relative_paths.py` rewrites a record's
paths before it is committed. A recorded config's `data_dir` is empty ("" = the data location
is given by the --data_dir flag of whichever mode needs the data; it is a run-control field,
not compared on resume); should one ever have to stay, only a relative path is accepted, since a
relative path names a layout of folders, not one machine's.
"""

import json
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# An absolute path into a machine's own folders (the development machine's work tree, temp
# files, home directories, cluster scratch space), not preceded by anything that would make it
# part of a relative path, a URL or a variable.
MACHINE_PATH = re.compile(r"(?<![\w.~$}\-/:])/(?:work|tmp|root|home|scratch|Users|mnt)/")
# Written on purpose: a temporary directory chosen by the environment, with the usual default.
ALLOWED = ("${TMPDIR:-/tmp}",)
BINARY = (".png", ".npz", ".gz", ".pb", ".index", ".jpg", ".pdf")


def _tracked():
  out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True)
  if out.returncode != 0:
    pytest.skip("not a git checkout")
  return [f for f in out.stdout.split("\0") if f and os.path.isfile(os.path.join(REPO, f))]


def machine_paths(text):
  """(line number, line) of every line of `text` that names a machine path."""
  hits = []
  for i, line in enumerate(text.splitlines(), 1):
    clean = line
    for a in ALLOWED:
      clean = clean.replace(a, "")
    if MACHINE_PATH.search(clean):
      hits.append((i, line.strip()))
  return hits


def test_the_pattern():
  s = "/"  # written apart, so that this file does not match its own pattern
  assert machine_paths(f'"workdir": "{s}work/runs/s6/x"') and machine_paths(f"cd {s}tmp/x")
  assert machine_paths(f"E={s}home/me/exp") and machine_paths(f"--root={s}scratch/haviv")
  for fine in ("../shared/data", "runs/first", "haviv_tf/data/x", "https://a.org/home/x",
               'STATE="${2:-${TMPDIR:-/tmp}/haviv-slurm}"', "$OUT/paper/x", "/etc/slurm"):
    assert not machine_paths(fine), fine


def test_no_machine_paths_in_tracked_files():
  bad = []
  for f in _tracked():
    with open(os.path.join(REPO, f), "rb") as fh:
      data = fh.read()
    try:
      text = data.decode("utf-8") if not f.endswith(BINARY) else None
    except UnicodeDecodeError:
      text = None
    if text is None:  # weights, SavedModels, arrays: the strings stored in them, byte by byte
      bad += [f"{f} (binary): {m.group(0)!r}"
              for m in MACHINE_PATH.finditer(data.decode("latin-1"))]
      continue
    bad += [f"{f}:{i}: {line[:120]}" for i, line in machine_paths(text)]
  assert not bad, "machine-specific paths in committed files:\n" + "\n".join(bad)


def _data_dirs(obj, where=""):
  if isinstance(obj, dict):
    for k, v in obj.items():
      if k == "data_dir" and isinstance(v, str):
        yield where + "/" + k, v
      else:
        yield from _data_dirs(v, where + "/" + k)
  elif isinstance(obj, list):
    for i, v in enumerate(obj):
      yield from _data_dirs(v, f"{where}/{i}")


def test_recorded_data_dirs_are_empty_or_relative():
  bad = []
  for f in _tracked():
    if not f.endswith(".json"):
      continue
    with open(os.path.join(REPO, f), encoding="utf-8") as fh:
      data = json.load(fh)
    bad += [f"{f}: {k} = {v!r}" for k, v in _data_dirs(data)
            if os.path.isabs(v) or v.startswith("~")]
  assert not bad, "absolute data_dir in committed records:\n" + "\n".join(bad)


def _load(path, name):
  import importlib.util  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.dirname(os.path.join(REPO, path)))
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


MEDIUM_RUNS = os.path.join(REPO, "experiments", "study_medium", "runs")


@pytest.mark.skipif(not os.path.exists(os.path.join(MEDIUM_RUNS, "grid.json")),
                    reason="the committed medium grid is not in this tree")
def test_grid_files_save_takes_the_machine_paths_out(tmp_path):
  grid_files = _load("experiments/grid_files.py", "experiments_grid_files")
  root, dest, data = str(tmp_path / "root"), str(tmp_path / "dest"), str(tmp_path / "data")
  grid_files.transfer(MEDIUM_RUNS, root, overwrite=False)  # restore, then record as a run would
  name = "mnist-decu-gru-quick-s10-e21caba7"
  ft = os.path.join(root, name + "_finetune", "control", "config.json")
  for path in (os.path.join(root, name, "config.json"), ft):
    with open(path) as f:
      rec = json.load(f)
    rec["config"]["data_dir"] = data
    rec["data_origin"] = f"files {data}/mnist"
    if "parent" in rec:
      rec["parent"]["workdir"] = os.path.join(os.path.abspath(root), name)
      rec["parent"]["config"]["data_dir"] = data
    with open(path, "w") as f:
      json.dump(rec, f, indent=2, sort_keys=True)
  runs, _, files = grid_files.transfer(root, dest, overwrite=True)  # save
  assert runs == 12 and files > 0
  for d, _, names in os.walk(dest):
    for n in names:
      if n.endswith(".json"):
        with open(os.path.join(d, n)) as f:
          text = f.read()
        assert str(tmp_path) not in text, os.path.join(d, n)
  with open(os.path.join(dest, name + "_finetune", "control", "config.json")) as f:
    rec = json.load(f)
  assert rec["config"]["data_dir"] == "" and rec["parent"]["workdir"] == name
  assert rec["data_origin"] == "files <data_dir>/mnist"
  with open(os.path.join(dest, name, "config.json")) as f:
    saved = json.load(f)
  with open(os.path.join(MEDIUM_RUNS, name, "config.json")) as f:
    assert saved == json.load(f)  # the committed record is what save writes
