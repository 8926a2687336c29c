"""Bazel really checks the dependency graph: a deliberate mutation of a small copy of the workspace.

A copy with three of the package's modules and one test passes `bazel test`; dropping one dep
makes both checks fail: the library's `_deps` test (its source imports a module it does not
list) and the test that uses it (the module is absent from its runfiles, although haviv_tf is
installed editable on this machine).
"""

import os
import shutil
import subprocess
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = textwrap.dedent("""\
    load("//bazel:defs.bzl", "py_library", "py_test")

    py_library(name = "config", srcs = ["haviv_tf/base/config.py"])

    py_library(
        name = "artifacts",
        srcs = ["haviv_tf/base/artifacts.py"],
        deps = [":config", "@pypi//:numpy"],
    )

    py_library(name = "sweep", srcs = ["haviv_tf/study/sweep.py"], deps = [{sweep_deps}])

    py_test(name = "uses_sweep_test", srcs = ["tests/uses_sweep_test.py"], deps = [":sweep"])
""")
TEST = textwrap.dedent("""\
    from haviv_tf.study import sweep


    def test_small_grid():
      assert len(sweep.expand(sweep.get_grid("small"))) == 8
""")


def _bazel(ws, base, *args):
  return subprocess.run(["bazel", f"--output_base={base}", *args], cwd=ws, capture_output=True,
                        text=True, timeout=600)


def _log(base, ws, target):
  out = _bazel(ws, base, "info", "bazel-testlogs")
  with open(os.path.join(out.stdout.strip(), target, "test.log"), errors="replace") as f:
    return f.read()


@pytest.mark.skipif(shutil.which("bazel") is None,
                    reason="bazel not installed (Debian: apt-get install bazel-bootstrap)")
def test_bazel_fails_a_target_that_imports_an_undeclared_module(tmp_path):
  ws, base = tmp_path / "ws", str(tmp_path / "output_base")
  for rel in ("WORKSPACE", ".bazelrc", "haviv_tf/__init__.py", "haviv_tf/base/config.py",
              "haviv_tf/base/artifacts.py", "haviv_tf/study/sweep.py"):
    os.makedirs(ws / os.path.dirname(rel), exist_ok=True)
    shutil.copy(os.path.join(REPO, rel), ws / rel)
  shutil.copytree(os.path.join(REPO, "bazel"), ws / "bazel")
  os.makedirs(ws / "tests")
  (ws / "tests" / "uses_sweep_test.py").write_text(TEST)
  try:
    (ws / "BUILD").write_text(BUILD.format(sweep_deps='":artifacts", ":config"'))
    good = _bazel(ws, base, "test", "//...")
    assert good.returncode == 0, good.stderr[-3000:]
    assert "//:sweep_deps  " in good.stdout and "//:uses_sweep_test  " in good.stdout, good.stdout

    (ws / "BUILD").write_text(BUILD.format(sweep_deps='":config"'))  # the mutation
    bad = _bazel(ws, base, "test", "--keep_going", "//...")
    assert bad.returncode != 0, bad.stderr[-3000:]
    assert ("imports haviv_tf.base.artifacts but //:sweep does not list ':artifacts' in its deps"
            in _log(base, ws, "sweep_deps"))
    log = _log(base, ws, "uses_sweep_test")
    line = [l for l in log.splitlines() if l.startswith(("E   ImportError", "E   ModuleNotFound"))]
    assert line and "cannot import name 'artifacts' from 'haviv_tf.base'" in line[0], log[-3000:]
    assert "uses_sweep_test.runfiles" in line[0]  # not the editable install's source tree
  finally:
    _bazel(ws, base, "shutdown")
