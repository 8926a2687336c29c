"""Takes a machine's own paths out of run records before they are committed.

Run records name absolute paths of the machine that made them: the data location
(`data_dir`, `data_origin`, a ceiling's `data`) and workdirs (a fine-tuning's `parent`, an
analysis's `workdir` rows). In a committed copy these say nothing about another machine, so
this rewrites, in every JSON file given (or under every folder given):

- `data_dir` values under a --data_dir prefix become "" (the run-control field every mode
  that needs the data takes as a flag; it is not compared on resume), and the same prefix in
  any other string (`data_origin`, `data`) becomes `<data_dir>`;
- a path under a --root OLD=NEW prefix becomes NEW + the rest: NEW relative to the repository
  (a committed copy of that root, e.g. experiments/study_small/runs) or "" for paths relative to
  the run root the record sits in (a fine-tuning's parent then reads `mnist-decu-gru-quick-s0`).

  python3 experiments/relative_paths.py --data_dir="$DATA" --root="$RUNS/small=" \\
      experiments/study_small/runs

Files are rewritten in place (2-space JSON, keys in their order); --check lists the files that
would change and exits 1 if any would.
"""

import argparse
import json
import os
import sys


def _rewrite_str(s, data_dir, roots):
  if data_dir and data_dir in s:
    s = s.replace(data_dir.rstrip("/"), "<data_dir>")
  for old, new in roots:
    old = old.rstrip("/")
    if s == old:
      return new or "."
    if s.startswith(old + "/"):
      rest = s[len(old) + 1:]
      return os.path.join(new, rest) if new else rest
  return s


def rewrite(obj, data_dir="", roots=()):
  """`obj` (parsed JSON) with the machine's paths taken out."""
  if isinstance(obj, dict):
    out = {}
    for k, v in obj.items():
      if k == "data_dir" and isinstance(v, str) and data_dir and (
          v.rstrip("/") == data_dir.rstrip("/") or v.startswith(data_dir.rstrip("/") + "/")):
        out[k] = ""
      else:
        out[k] = rewrite(v, data_dir, roots)
    return out
  if isinstance(obj, list):
    return [rewrite(v, data_dir, roots) for v in obj]
  if isinstance(obj, str):
    return _rewrite_str(obj, data_dir, roots)
  return obj


def recorded_data_dirs(obj) -> list:
  """Every absolute `data_dir` value in `obj` (parsed JSON): the data locations it records."""
  found = []
  if isinstance(obj, dict):
    for k, v in obj.items():
      if k == "data_dir" and isinstance(v, str) and os.path.isabs(v):
        found.append(v)
      else:
        found += recorded_data_dirs(v)
  elif isinstance(obj, list):
    for v in obj:
      found += recorded_data_dirs(v)
  return found


def portable(obj, root):
  """`obj` with the data locations it records and the run root `root` taken out (paths under
  `root` become relative to it): what experiments/grid_files.py save writes."""
  for d in sorted(set(recorded_data_dirs(obj)), key=len, reverse=True):
    obj = rewrite(obj, data_dir=d)
  return rewrite(obj, roots=[(os.path.abspath(root), "")])


def json_files(paths):
  for p in paths:
    if os.path.isdir(p):
      for d, _, names in sorted(os.walk(p)):
        yield from (os.path.join(d, n) for n in sorted(names) if n.endswith(".json"))
    else:
      yield p


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("paths", nargs="+", help="JSON files, or folders searched for *.json")
  p.add_argument("--data_dir", default="", help="the data location to take out")
  p.add_argument("--root", action="append", default=[],
                 help="OLD=NEW: a run root's absolute path and what replaces it")
  p.add_argument("--check", action="store_true", help="only list the files that would change")
  a = p.parse_args(argv)
  roots = []
  for r in a.root:
    if "=" not in r:
      p.error(f"--root takes OLD=NEW, got {r!r}")
    roots.append(tuple(r.split("=", 1)))
  changed = []
  for path in json_files(a.paths):
    with open(path, encoding="utf-8") as f:
      text = f.read()
    new = json.dumps(rewrite(json.loads(text), a.data_dir, roots), indent=2,
                     ) + "\n"
    if new != text and json.loads(new) != json.loads(text):
      changed.append(path)
      if not a.check:
        with open(path, "w", encoding="utf-8") as f:
          f.write(new)
  for c in changed:
    print(("would change " if a.check else "rewrote ") + c)
  return 1 if a.check and changed else 0


if __name__ == "__main__":
  sys.exit(main())
