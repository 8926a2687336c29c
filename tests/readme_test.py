"""The README stays short, its results table is the generated one, and its snippet runs."""

import importlib.util
import os
import re
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")


def _load(path, name):
  """A script of the repository as a module (by path: experiments/ is not a package)."""
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


index = _load("experiments/index.py", "experiments_index")
results_table = _load("experiments/results_table.py", "experiments_results_table")


def _readme():
  with open(README, encoding="utf-8") as f:
    return f.read()


def test_readme_fits_in_10000_characters():
  assert len(_readme()) <= 10_000, len(_readme())


def test_results_table_is_the_generated_one():
  assert results_table.readme_table(_readme()) == results_table.table(), (
      "README.md's results table is stale: paste the output of "
      "python3 experiments/results_table.py between its markers")


def test_results_table_covers_every_claim_and_grid():
  t = results_table.table()
  for key, _ in results_table.CLAIMS:
    assert f"| ({key}) " in t
  for _, folder, link in results_table.GRIDS:
    assert f"({link})" in t and os.path.exists(os.path.join(REPO, link))


def test_readme_commands_match_ci():
  text = _readme()
  block = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1).splitlines()
  assert block[0] == ('python3 -m pip install -e ".[test]" && '
                      "python3 -m haviv_tf.main --workdir=runs/first")
  test_cmd = block[1]
  with open(os.path.join(REPO, ".ci", "run")) as f:
    ci = [line.strip() for line in f]
  assert test_cmd in ci, f"{test_cmd!r} is not what .ci/run runs"


def test_readme_links_resolve():
  for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", _readme()):
    if target.startswith("http"):
      continue
    assert os.path.exists(os.path.join(REPO, target)), target


def test_docs_links_resolve():
  docs = os.path.join(REPO, "docs")
  for name in sorted(os.listdir(docs)):
    if not name.endswith(".md"):
      continue
    with open(os.path.join(docs, name), encoding="utf-8") as f:
      text = re.sub(r"```.*?```", "", f.read(), flags=re.S)  # links, not code
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
      if not target.startswith("http"):
        assert os.path.exists(os.path.join(docs, target)), f"docs/{name}: {target}"


def test_readme_snippet_runs(tmp_path):
  code = re.search(r"```python\n(.*?)```", _readme(), flags=re.S).group(1)
  assert "max_iters=20_000" in code
  code = code.replace("max_iters=20_000", "max_iters=300")  # the same calls, a shorter search
  code += "\nassert len(unique.q) >= 1 and len(stable.q) <= len(unique.q)\n"
  script = tmp_path / "snippet.py"
  script.write_text(code, encoding="utf-8")
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
             CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
  out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]


def test_savedmodel_snippet_of_the_analysis_page_runs_without_haviv_tf(tmp_path):
  with open(os.path.join(REPO, "docs", "analysis.md"), encoding="utf-8") as f:
    blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
  code = textwrap.dedent(next(b for b in blocks if "tf.saved_model.load" in b))
  assert "haviv_tf" not in code
  # The snippet's committed SavedModel, loaded from the repository with no haviv_tf to import.
  code = code.replace('"experiments/', '"' + REPO + os.sep + 'experiments/')
  code += ("\nassert out['logits'].shape == (2, 30, 11) and nxt['state'].shape == (2, 200)"
           "\nimport sys; assert 'haviv_tf' not in sys.modules\n")
  script = tmp_path / "savedmodel_snippet.py"
  script.write_text(code, encoding="utf-8")
  env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
  env.pop("PYTHONPATH", None)
  out = subprocess.run([sys.executable, "-I", str(script)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]


def test_experiments_index_lists_every_writeup():
  listed = [w[0] for w in index.WRITEUPS]
  assert len(listed) == len(set(listed))
  assert sorted(listed) == index.listed_files(), (
      "experiments/index.py's WRITEUPS and the *.md files under experiments/ differ: "
      f"unlisted {sorted(set(index.listed_files()) - set(listed))}, "
      f"gone {sorted(set(listed) - set(index.listed_files()))}")
  for rel, status, *_ in index.WRITEUPS:
    if status != index.CURRENT:
      assert status.startswith("superseded by "), (rel, status)
      assert os.path.exists(os.path.join(REPO, "experiments", status.split()[2].rstrip(","))), rel


def test_experiments_index_is_the_generated_one():
  if subprocess.run(["git", "rev-parse"], cwd=REPO, capture_output=True).returncode != 0:
    pytest.skip("not a git checkout: the revisions come from git log")
  with open(os.path.join(REPO, "experiments", "README.md"), encoding="utf-8") as f:
    assert index.readme_table(f.read()) == index.table(), (
        "experiments/README.md's index is stale: paste python3 experiments/index.py's output")
