"""Reproducible records: constraints.txt pins what the committed experiments ran with and every
dependency of the package; reports name the code revisions of the networks they read."""

import ast
import glob
import json
import os
import re

from haviv_tf.base import artifacts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def canonicalize_name(name):
  return re.sub(r"[-_.]+", "-", name).lower()


def _version(text):
  return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def _satisfies(version, spec):
  """`version` within a setup.py specifier of >=, <, == clauses ("" = any)."""
  ops = {">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "==": lambda a, b: a == b,
         "<=": lambda a, b: a <= b, ">": lambda a, b: a > b}
  for clause in filter(None, spec.split(",")):
    op, bound = re.fullmatch(r"\s*(>=|<=|==|<|>)\s*([\w.]+)\s*", clause).groups()
    width = len(_version(bound))
    if not ops[op](_version(version)[:width], _version(bound)):
      return False
  return True


def _pins():
  pins = {}
  with open(os.path.join(ROOT, "constraints.txt")) as f:
    for line in f:
      line = line.split("#")[0].strip()
      if line:
        name, version = line.split("==")
        pins[canonicalize_name(name)] = version
  return pins


def _setup_requirements():
  tree = ast.parse(open(os.path.join(ROOT, "setup.py")).read())
  call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
              and getattr(n.func, "attr", "") == "setup")
  kw = {k.arg: ast.literal_eval(k.value) for k in call.keywords
        if k.arg in ("install_requires", "extras_require")}
  return [re.fullmatch(r"([A-Za-z0-9_.-]+)(.*)", r).groups()
          for r in kw["install_requires"] + kw["extras_require"]["test"]]


def test_constraints_pin_every_requirement_within_setup_py_bounds():
  pins = _pins()
  requirements = _setup_requirements()
  assert len(requirements) >= 8
  for package, spec in requirements:
    name = canonicalize_name(package)
    assert name in pins, f"constraints.txt does not pin {package}"
    assert _satisfies(pins[name], spec), (package, spec, pins[name])
  assert not _satisfies("2.22.0", ">=2.21,<2.22") and _satisfies("2.21.0", ">=2.21,<2.22")


def test_constraints_hold_the_versions_the_committed_experiments_recorded():
  pins = _pins()
  records = glob.glob(os.path.join(ROOT, "experiments", "**", "config.json"), recursive=True)
  assert records
  checked = 0
  for path in records:
    env = json.load(open(path)).get("environment") or {}
    for package, version in env.items():
      name = canonicalize_name(package)
      if name in pins:  # python, machine, haviv_tf and the code revision are not packages
        assert pins[name] == version, (path, package, version, pins[name])
        checked += 1
  assert checked >= 7 * len(records) // 2


def test_report_counts_the_code_revisions_the_networks_recorded(tmp_path):
  from haviv_tf.study import report  # pylint: disable=g-import-not-at-top
  recs = []
  for i, revision in enumerate([{"commit": "a" * 40, "dirty": False},
                                {"commit": "a" * 40, "dirty": False},
                                {"commit": "b" * 40, "dirty": True}, None]):
    workdir = tmp_path / f"r{i}"
    env = {"numpy": "2"} if revision is None else {"numpy": "2", "code_revision": revision}
    artifacts.write_json(str(workdir / artifacts.CONFIG_FILE), {"environment": env})
    recs.append({"workdir": str(workdir)})
  recs.append({"workdir": str(tmp_path / "never_ran")})
  assert report._trained_revisions(recs) == {  # pylint: disable=protected-access
      "a" * 12: 2, "b" * 12 + " (dirty)": 1, "unknown": 1}  # never_ran: missing, not unknown
