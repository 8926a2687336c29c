"""Checks that a Bazel target lists in its deps every module its sources import.

Run by the `<target>_deps` tests and before every test file (bazel/defs.bzl):

  check_deps.py --target=NAME --deps=LABEL,... --pip=TARGET:IMPORT|IMPORT,... SRC...

Every haviv_tf module a source imports (at any depth, lazily inside a function too) must be a
direct dep, the target named after the module (`haviv_tf.task.trials` -> `:trials`; the library
`haviv_tf.dynamics` and its modules -> `:dynamics`); every import of an installed pip package (bazel/pip_packages.bzl) must list
`@pypi//:<pkg>` (or its alias `:expect_<pkg>_installed`); a module outside the package must be
the standard library or a dep named after it (the tests' helpers, `:shared_run`). At run time
the other half holds: a test's runfiles hold only what its deps declare (and
bazel/sitecustomize.py hides an editable install of haviv_tf), so a module missing from
the transitive deps fails to import (tests/bazel_test.py shows both with a mutation).

`check_deps.py --suggest SRC...` prints the deps the sources need, for a new target.
"""

import argparse
import ast
import os
import sys

PACKAGE = "haviv_tf"
LIBRARY = "haviv_tf.dynamics"  # one target for the whole library package


def _imports(path):
  """(line, dotted module) of every import in the file, relative ones resolved."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  rel = os.path.splitext(os.path.normpath(path))[0].split(os.sep)
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out += [(node.lineno, a.name) for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        base = ".".join(rel[:len(rel) - node.level] + ([base] if base else []))
      if base == PACKAGE or (base.startswith(PACKAGE + ".") and base.count(".") == 1
                             and base != LIBRARY):
        # from haviv_tf import a / from haviv_tf.task import trials: the modules a, trials
        out += [(node.lineno, f"{base}.{a.name}") for a in node.names]
      else:
        out.append((node.lineno, base))
  return out


def target_of(module):
  """The py_library a haviv_tf module belongs to: haviv_tf.task.trials -> trials; the library
  haviv_tf.dynamics (any of its modules) -> dynamics; haviv_tf.main -> main."""
  parts = module.split(".")
  if len(parts) < 2:
    return None
  if ".".join(parts[:2]) == LIBRARY or len(parts) == 2:
    return parts[1]
  return parts[2]


def problems(target, srcs, deps, pip):
  """The missing-dep messages for `srcs` of `target`."""
  local, pip_deps = set(), set()
  for label in deps:
    name = label.rsplit(":", 1)[-1] if ":" in label else label.rsplit("/", 1)[-1]
    if label.startswith("@pypi//"):
      pip_deps.add(name)
    elif name.startswith("expect_") and name.endswith("_installed"):
      pip_deps.add(name[len("expect_"):-len("_installed")])
    else:
      local.add(name)
  own = {os.path.splitext(os.path.normpath(s))[0].replace(os.sep, ".") for s in srcs}
  own_top = {m.rsplit(".", 1)[-1] for m in own}  # a script's directory is on its path
  own_targets = {target_of(m) for m in own if m.startswith(PACKAGE + ".")}
  by_import = {imp: tgt for tgt, imps in pip.items() for imp in imps}
  out = []
  for src in srcs:
    for line, mod in _imports(src):
      parts = mod.split(".")
      if parts[0] == PACKAGE:
        dep = target_of(mod)
        if dep and dep not in local and dep not in own_targets:
          out.append(f"{src}:{line}: imports {mod} but {target} does not list "
                     f"':{dep}' in its deps")
      elif parts[0] in by_import:
        if by_import[parts[0]] not in pip_deps:
          out.append(f"{src}:{line}: imports {parts[0]} but {target} does not list "
                     f"'@pypi//:{by_import[parts[0]]}' in its deps")
      elif (parts[0] not in sys.stdlib_module_names and parts[0] not in own_top
            and parts[0] not in local):   # a helper py_library named after its module
        out.append(f"{src}:{line}: imports {parts[0]}, which is neither the standard library "
                   "nor a package of bazel/pip_packages.bzl")
  return out


def parse(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--target", required=True)
  p.add_argument("--deps", default="")
  p.add_argument("--pip", default="")
  p.add_argument("srcs", nargs="+")
  a = p.parse_args(argv)
  a.deps = [d for d in a.deps.split(",") if d]
  a.pip = {t: imps.split("|") for t, imps in (kv.split(":") for kv in a.pip.split(",") if kv)}
  return a


def check(argv):
  """Exit status: 0 if every import is declared, else 1."""
  a = parse(argv)
  found = problems(a.target, a.srcs, a.deps, a.pip)
  for msg in found:
    print(f"error: {msg}", file=sys.stderr)
  if found:
    return 1
  print(f"{a.target}: every import of {', '.join(a.srcs)} is in its deps")
  return 0


def suggest(srcs):
  """The deps labels `srcs` need (pip packages as @pypi//:<pkg>), one per line."""
  here = os.path.dirname(os.path.abspath(__file__))
  with open(os.path.join(here, "pip_packages.bzl")) as f:
    scope = {}
    exec(f.read(), scope)  # pylint: disable=exec-used  (a dict literal of Starlark = Python)
  pip = {t: imps for t, (_, imps) in scope["PIP_PACKAGES"].items()}
  found = problems("the new target", srcs, [], pip)
  labels = set()
  for msg in found:
    labels.update(part for part in msg.split("'")[1::2] if part.startswith((":", "@")))
  for label in sorted(labels):
    print(f'"{label}",')
  return 0


if __name__ == "__main__":
  if sys.argv[1:2] == ["--suggest"]:
    sys.exit(suggest(sys.argv[2:]))
  sys.exit(check(sys.argv[1:]))
