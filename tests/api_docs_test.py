"""The API reference builds from the docstrings (pdoc) and documents every public name."""

import importlib
import importlib.util
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("docs_build_api",
                                               os.path.join(REPO, "docs", "build_api.py"))
build_api = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_api)

pytest.importorskip("pdoc")


@pytest.fixture(scope="module")
def api(tmp_path_factory):
  out = tmp_path_factory.mktemp("api")
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
             CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
  run = subprocess.run([sys.executable, os.path.join(REPO, "docs", "build_api.py"),
                        f"--out={out}"], env=env, capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  assert f"into {out}" in run.stdout
  return out


@pytest.mark.parametrize("module", build_api.MODULES)
def test_every_public_name_is_documented(api, module):
  html_path = os.path.join(api, *module.split(".")) + ".html"
  assert os.path.exists(html_path), f"no page for {module}"
  with open(html_path, encoding="utf-8") as f:
    html = f.read()
  names = build_api.public_names(importlib.import_module(module))
  assert names, module
  ids = set(re.findall(r'id="([A-Za-z_][A-Za-z0-9_.]*)"', html))
  missing = [n for n in names if n not in ids]
  assert not missing, f"{module}: not in the API reference: {missing}"


@pytest.mark.parametrize("module", build_api.MODULES)
def test_every_public_name_has_a_docstring(module):
  mod = importlib.import_module(module)
  assert mod.__doc__, module
  bare = [n for n in build_api.public_names(mod) if not (getattr(mod, n).__doc__ or "").strip()]
  assert not bare, f"{module}: public names without a docstring: {bare}"


def test_readme_snippet_names_are_in_the_reference():
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    code = re.search(r"```python\n(.*?)```", f.read(), flags=re.S).group(1)
  used = set(re.findall(r"\bdynamics\.([A-Za-z_]+)", code))
  assert {"find_slow_points", "SlowPointConfig"} <= used
  for name in used:
    assert name in build_api.public_names(importlib.import_module("haviv_tf.dynamics")), name


def test_html_is_not_committed():
  out = subprocess.run(["git", "ls-files", "*.html"], cwd=REPO, capture_output=True, text=True)
  if out.returncode != 0:
    pytest.skip("not a git checkout")
  assert out.stdout.strip() == ""
