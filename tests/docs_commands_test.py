"""Every `python3 -m haviv_tf.main ...` command shown in README.md and docs/**/*.md passes flag
and config validation: each runs with --dry_run appended and must exit 0.

What --dry_run checks (main.py): the flags and the resolved config exactly as the mode checks
them before it works, with the same one-line errors. A --workdir / --parent / --workdirs run
that does not exist yet is not required (stderr says so): the documented commands name runs the
reader makes first. Placeholders are filled in before running: `{a,b,c}` alternatives are
expanded (the k-th variant takes each group's k-th alternative, so every alternative runs
once), `[--flag=X]` optional parts are kept without the brackets, upper-case values (`DIR`,
`N`) and `<...>` values become a number or a path by the flag's type, every path flag points
into the test's temporary directory, which is also the working directory, and a
--strategy=multi_worker command gets a one-worker TF_CONFIG (the documents set it per host).
"""

import glob
import json
import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import pytest
import main_runner  # pylint: disable=g-bad-import-order

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMAND = re.compile(r"python3? -m haviv_tf\.main\b")
PATH_FLAGS = ("workdir", "parent", "out", "data_dir", "flagfile")
PLACEHOLDER = re.compile(r"^(?:[A-Z][A-Z0-9_]*|<[^>]*>)$")
HELP_FLAGS = {"-h", "-?", "--help", "--helpshort", "--helpfull", "--helpxml"}


def _env():
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  env.pop("TF_CONFIG", None)
  return env


def _flag_types():
  """{flag name: absl type ("int", "float", "string", ...)} of haviv_tf.main (--helpxml)."""
  proc = subprocess.run([sys.executable, "-m", "haviv_tf.main", "--helpxml"],
                        capture_output=True, text=True, timeout=300, env=_env())
  assert proc.returncode == 0, proc.stderr
  return {f.findtext("name"): f.findtext("type") for f in
          ElementTree.fromstring(proc.stdout).iter("flag")}


FLAG_TYPES = _flag_types()


def _documents():
  return sorted([os.path.join(ROOT, "README.md")]
                + glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))


def _shell_lines(text):
  """(line number, command text) of every haviv_tf.main command: fenced code blocks' lines
  (joined across `\\` continuations) and inline `code` spans."""
  found, fenced, pending, start = [], False, "", 0
  for number, line in enumerate(text.splitlines(), 1):
    if line.lstrip().startswith("```"):
      fenced, pending = not fenced, ""
      continue
    if fenced:
      if not pending:
        start = number
      if line.rstrip().endswith("\\"):
        pending += line.rstrip()[:-1] + " "
        continue
      found.append((start, pending + line))
      pending = ""
    else:
      found.extend((number, span) for span in re.findall(r"`([^`]+)`", line))
  return [(n, t) for n, t in found if COMMAND.search(t)]


def _command(text):
  """The haviv_tf.main arguments in `text`: from the module name to a comment or shell
  operator."""
  text = text[COMMAND.search(text).end():]
  text = re.split(r"\s#|&&|\|\||[|;>]", text)[0]
  return " ".join(text.split())


def _expand(args_text):
  """The variants of one command's argument text: brace groups taken position-wise."""
  groups = re.findall(r"\{([^{}]*,[^{}]*)\}", args_text)
  variants = max((len(g.split(",")) for g in groups), default=1)
  out = []
  for k in range(variants):
    def pick(m, k=k):
      options = m.group(1).split(",")
      return options[k % len(options)]
    out.append(re.sub(r"\{([^{}]*,[^{}]*)\}", pick, args_text))
  return out


def _fill(arg, tmp):
  """One argument with its placeholders filled in and its paths inside `tmp`."""
  arg = arg.strip("[]")
  match = re.fullmatch(r"--([a-z_0-9]+)=(.*)", arg)
  if not match:
    return arg
  name, value = match.groups()
  if name == "flagfile" and not os.path.isabs(value):  # the repository's launch/*.flags
    return f"--flagfile={os.path.join(ROOT, value)}"
  kind = FLAG_TYPES.get(name)
  if kind is not None and PLACEHOLDER.match(value):
    if kind == "int":
      value = "1"
    elif kind == "float":
      value = "0.5"
    elif name == "workdirs":
      value = "runs/a,runs/b"
  if name in PATH_FLAGS or name == "workdirs":
    value = ",".join(os.path.join(tmp, "docs", v.lstrip("/")) if os.path.isabs(v) else v
                     for v in value.split(","))
  return f"--{name}={value}"


def _documented_commands():
  cases = []
  for path in _documents():
    if not os.path.exists(path):
      continue
    with open(path) as f:
      text = f.read()
    for number, line in _shell_lines(text):
      for k, variant in enumerate(_expand(_command(line))):
        cases.append(pytest.param(variant, id=f"{os.path.relpath(path, ROOT)}:{number}:{k}"))
  return cases


CASES = _documented_commands()


def test_the_documents_show_commands():
  assert len(CASES) >= 5, [c.id for c in CASES]


def test_extraction_joins_continuations_expands_choices_and_drops_comments():
  text = ("```\n# a comment\npython3 -m haviv_tf.main --protocol={vocu,decu} \\\n"
          "    --workdir=DIR [--steps=N]   # trailing\n```\n"
          "Or `python3 -m haviv_tf.main --mode=export --workdir=runs/x` inline.\n")
  lines = _shell_lines(text)
  assert [n for n, _ in lines] == [3, 6]
  variants = _expand(_command(lines[0][1]))
  assert variants == ["--protocol=vocu --workdir=DIR [--steps=N]",
                      "--protocol=decu --workdir=DIR [--steps=N]"]
  assert [_fill(a, "/t") for a in shlex.split(variants[0])] == [
      "--protocol=vocu", "--workdir=DIR", "--steps=1"]
  assert _fill("--workdir=/shared/runs/mw", "/t") == "--workdir=/t/docs/shared/runs/mw"


@pytest.mark.parametrize("args_text", CASES)
def test_documented_command_validates(args_text, tmp_path):
  args = [_fill(a, str(tmp_path)) for a in shlex.split(args_text)]
  env = _env()
  if "--strategy=multi_worker" in args:  # the documents set TF_CONFIG per host; one host here
    env["TF_CONFIG"] = json.dumps({"cluster": {"worker": ["localhost:12345"]},
                                   "task": {"type": "worker", "index": 0}})
  if any(a.startswith("--strategy=") for a in args):
    # A strategy's dry run builds it, importing TensorFlow (8 s in a fresh process): forked
    # from a process that has imported it (tests/main_runner.py). The others stay fresh
    # processes (0.5 s; a fork of the TensorFlow process costs more).
    proc = main_runner.run([*args, "--dry_run"], timeout=300, cwd=str(tmp_path), env=env)
  else:
    proc = subprocess.run([sys.executable, "-m", "haviv_tf.main", *args, "--dry_run"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
  assert proc.returncode == 0, (args, proc.stderr[-2000:])
  if not HELP_FLAGS & set(args):
    assert '"dry_run": true' in proc.stdout, proc.stdout[:500]
  assert not [p for p in os.listdir(tmp_path)], "a dry run wrote files"
