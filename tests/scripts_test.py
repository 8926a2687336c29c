"""Every script of experiments/, benchmarks/, launch/ and examples/ still imports, its `--help`
works, and every haviv_tf name it uses exists.

The scripts are not part of the package, so a renamed or moved haviv_tf name breaks them only
when someone runs them. Here each is imported in-process (its folder on sys.path, as when it
runs), its `main` is called with `--help` (argparse prints the help and exits 0), and an AST walk
checks every `alias.name` it reads from an imported haviv_tf module, inside functions too.
"""

import ast
import contextlib
import importlib
import importlib.util
import inspect
import io
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDERS = ("experiments", "benchmarks", "launch", "examples")
SCRIPTS = sorted(os.path.join(folder, name) for folder in FOLDERS
                 for name in os.listdir(os.path.join(ROOT, folder)) if name.endswith(".py"))


def _haviv_aliases(tree):
  """{local name: haviv_tf module name} of the script's `import` / `from ... import` lines."""
  aliases = {}
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for a in node.names:
        if a.name.startswith("haviv_tf") and a.asname:
          aliases[a.asname] = a.name
    elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("haviv_tf"):
      for a in node.names:
        full = f"{node.module}.{a.name}"
        if _is_module(full):   # `from haviv_tf.x import module`, not a name in it
          aliases[a.asname or a.name] = full
  return aliases


def _is_module(name):
  try:
    return importlib.util.find_spec(name) is not None
  except ModuleNotFoundError:
    return False


def _missing_names(path):
  """`alias.attr` reads of haviv_tf modules whose attribute does not exist."""
  tree = ast.parse(open(path, encoding="utf-8").read(), path)
  aliases = _haviv_aliases(tree)
  missing = []
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and node.value.id in aliases):
      module = importlib.import_module(aliases[node.value.id])
      if not hasattr(module, node.attr):
        missing.append(f"line {node.lineno}: {aliases[node.value.id]}.{node.attr}")
  return missing


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_imports_its_help_works_and_its_haviv_names_exist(script, monkeypatch):
  path = os.path.join(ROOT, script)
  assert not _missing_names(path), f"{script} uses names haviv_tf no longer has"
  monkeypatch.syspath_prepend(os.path.dirname(path))
  for key, mod in list(sys.modules.items()):   # e.g. experiments' and benchmarks' `common`
    if os.path.dirname(getattr(mod, "__file__", None) or "") in (
        os.path.join(ROOT, folder) for folder in FOLDERS):
      monkeypatch.delitem(sys.modules, key)
  name = "script_" + script.replace("/", "_")[:-3]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  main = getattr(module, "main", None)
  if main is None:   # a helper module the scripts import (common.py, relative_paths' helpers)
    return
  monkeypatch.setattr(sys, "argv", [script, "--help"])
  out = io.StringIO()
  with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
    main(["--help"]) if inspect.signature(main).parameters else main()
  assert exit_info.value.code in (0, None)
  assert "usage:" in out.getvalue()


def test_the_name_check_finds_a_moved_name(tmp_path):
  """The AST check can fail: a script reading a name its haviv_tf module lacks is reported."""
  script = tmp_path / "old.py"
  script.write_text("from haviv_tf.task import losses\n"
                    "def f():\n  return losses.masked_null_label, losses.no_such_name\n")
  assert _missing_names(str(script)) == ["line 3: haviv_tf.task.losses.no_such_name"]
