"""The library floor imports alone: `import haviv_tf.dynamics` (or `haviv_tf`) loads no other
haviv_tf module, no tensorflow-datasets and, beyond what Keras itself loads, no matplotlib."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LIBRARY = "haviv_tf.dynamics"


def _loaded_after(statements, block_matplotlib=False):
  """(modules loaded by tensorflow + keras, [modules each statement added]) in one fresh process.

  After each statement the haviv_tf modules it loaded are dropped from sys.modules, so the next
  one imports them afresh; other modules it loaded stay (a statement that loads
  tensorflow-datasets or matplotlib fails the test on its own, before the next one runs).
  """
  code = textwrap.dedent(f"""
      import json, sys
      if {block_matplotlib!r}:
        sys.modules["matplotlib"] = None  # unimportable: Keras then goes without it
      import numpy, absl.logging, tensorflow, keras
      before = set(sys.modules)
      added = []
      for statement in {list(statements)!r}:
        start = set(sys.modules)
        exec(statement)
        added.append(sorted(set(sys.modules) - start))
        for name in [m for m in sys.modules if m == "haviv_tf" or m.startswith("haviv_tf.")]:
          del sys.modules[name]
      print(json.dumps([sorted(before), added]))
  """)
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
             CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300, cwd=REPO)
  assert out.returncode == 0, out.stderr[-3000:]
  before, added = json.loads(out.stdout.strip().splitlines()[-1])
  return before, added


def _foreign(modules):
  return sorted(m for m in modules
                if (m == "haviv_tf" or m.startswith("haviv_tf.")) and m != "haviv_tf"
                and not (m == _LIBRARY or m.startswith(_LIBRARY + ".")))


# One process for all (each would otherwise import TensorFlow again, ~7 s).
STATEMENTS = ("import haviv_tf.dynamics", "import haviv_tf; haviv_tf.SlowPoints",
              "from haviv_tf import find_slow_points",
              "from haviv_tf import follow_back, SnapshotCallback",
              "from haviv_tf.dynamics import tracking")


def test_the_library_loads_no_application_module():
  before, added_by = _loaded_after(STATEMENTS)
  assert len(added_by) == len(STATEMENTS)
  for statement, added in zip(STATEMENTS, added_by):
    assert _foreign(added) == [], statement
    assert any(m.startswith(_LIBRARY + ".") for m in added), statement
    for m in ("tensorflow_datasets", "matplotlib"):
      assert not any(a == m or a.startswith(m + ".") for a in added), (statement, m)
  assert "tensorflow_datasets" not in before


def test_the_library_works_without_matplotlib():
  statement = textwrap.dedent("""
      import numpy as np
      import haviv_tf
      cell = keras.layers.GRUCell(3)
      cell.build((None, 2))
      unique, _ = haviv_tf.find_slow_points(
          cell, np.zeros([4, 3], np.float32), np.zeros(2, np.float32),
          haviv_tf.SlowPointConfig(max_iters=20, chunk=10, jit_compile=False))
      assert len(unique) >= 1
  """)
  _, (added,) = _loaded_after([statement], block_matplotlib=True)
  assert _foreign(added) == []
  assert not any(m == "matplotlib" or m.startswith("matplotlib.") for m in added)


def test_the_package_exports_the_library_names():
  _, (added,) = _loaded_after(["import haviv_tf; assert set(haviv_tf.__all__) >= {"
                               "'find_slow_points', 'SlowPointConfig', 'SlowPointFinder', "
                               "'SlowPoints', 'Dynamics', 'as_dynamics'}"])
  assert _foreign(added) == []


def test_the_command_line_loads_no_tensorflow_at_import():
  """haviv_tf's top level is lazy: `haviv_tf.main` checks flags before TensorFlow loads."""
  code = ("import sys, haviv_tf.main; "
          "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300, cwd=REPO)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.strip().splitlines()[-1] == "[]"
