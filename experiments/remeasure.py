"""The committed quick grids followed to delay 10,000, checked network by network.

The small and medium grids were evaluated to delays 1000 and 2000, where most of their memories
had not faded. The grids `small_10k` and `medium_10k` (haviv_tf.study.sweep.remeasure) train the
same networks again from their seeds, with every step of their grids, and follow each until
its memory fades (delay 10,000 at most). This script
sets each re-trained network beside the committed one: at every committed delay the two must
agree exactly (the same seed gives the same network, and the evaluation's trials are fixed by
the seed and the delay). Only then does `merge` add the new delays and the memory half-lives to
the committed results.json, keeping every committed value; if any network differs, nothing is
written and the differences are listed.

  python3 -m haviv_tf.main --mode=sweep --grid=medium_10k --workdir=runs/medium_10k \
      --data_dir=DATA
  python3 experiments/remeasure.py check --root=runs/medium_10k \
      --dest=experiments/study_medium/runs
  python3 experiments/remeasure.py merge --root=runs/medium_10k \
      --dest=experiments/study_medium/runs
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from haviv_tf.analysis.pipeline import EVAL_TABLES  # pylint: disable=g-import-not-at-top
from haviv_tf.base import artifacts
from haviv_tf.probes import memory
from haviv_tf.study import sweep

RESULTS = "results.json"


def compare(new: dict, old: dict) -> dict:
  """The re-measured results against the committed ones at the committed delays.

  Returns {"delays": compared delays, "added": delays only in `new`, "differences": [(table,
  delay, old value, new value), ...] (empty when the two agree exactly)}.
  """
  old_trials, new_trials = old.get("trials_per_delay") or {}, new.get("trials_per_delay") or {}
  diffs, compared = [], []
  for key in sorted(old_trials, key=int):
    if key not in new_trials:
      diffs.append(("trials_per_delay", key, old_trials[key], None))
      continue
    compared.append(int(key))
    for table in EVAL_TABLES:
      a, b = (old.get(table) or {}).get(key), (new.get(table) or {}).get(key)
      if a is not None and a != b:
        diffs.append((table, key, a, b))
  added = sorted(int(k) for k in new_trials if k not in old_trials)
  return dict(delays=compared, added=added, differences=diffs)


def merged(new: dict, old: dict, training_max_delay: int, record: dict) -> dict:
  """`old` with `new`'s tables at the delays `old` lacks, its half-lives recomputed from the
  whole curve, and `record` under "remeasured"."""
  out = dict(old)
  for table in EVAL_TABLES:
    both = dict(new.get(table) or {})
    both.update(old.get(table) or {})
    out[table] = {k: both[k] for k in sorted(both, key=int)}
  out["memory_half_life"] = memory.half_lives(out, training_max_delay)
  out["remeasured"] = record
  return out


def pairs(root: str, dest: str):
  """(name, re-measured workdir, committed workdir) for each finished network of the root."""
  _, specs = sweep.load_grid(root)
  for spec in specs:
    if sweep.is_done(spec, root):
      yield spec.name, os.path.join(root, spec.name), os.path.join(dest, spec.name)


def check(root: str, dest: str, log=print) -> list:
  """Compares every finished network of `root` with its committed twin; returns the rows."""
  rows = []
  for name, new_dir, old_dir in pairs(root, dest):
    old_path = os.path.join(old_dir, RESULTS)
    if not os.path.exists(old_path):
      raise artifacts.RunError(f"{old_dir} holds no committed results.json for {name}")
    c = compare(artifacts.read_json(os.path.join(new_dir, RESULTS)), artifacts.read_json(old_path))
    rows.append(dict(c, name=name, new=new_dir, old=old_dir))
    state = ("identical" if not c["differences"]
             else f"DIFFERS ({len(c['differences'])} values, e.g. {c['differences'][0]})")
    log(f"{name}: {state} at delays {c['delays']}; new delays {c['added']}")
  return rows


def merge(root: str, dest: str, log=print) -> int:
  """Adds the re-measured delays and half-lives to the committed results (all or nothing)."""
  rows = check(root, dest, log)
  bad = [r["name"] for r in rows if r["differences"]]
  if bad:
    raise artifacts.RunError(f"{len(bad)} re-trained network(s) differ from the committed ones "
                             f"({', '.join(bad)}): nothing merged")
  grid_name, _ = sweep.load_grid(root)
  for r in rows:
    if not r["added"]:
      log(f"{r['name']}: nothing to add (merged before, or no longer curve)")
      continue
    new = artifacts.read_json(os.path.join(r["new"], RESULTS))
    old = artifacts.read_json(os.path.join(r["old"], RESULTS))
    cfg = artifacts.recorded_config(r["new"])
    env = artifacts.read_json(os.path.join(r["new"], "config.json")).get("environment", {})
    record = dict(grid=grid_name, compared_delays=r["delays"], added_delays=r["added"],
                  code_revision=env.get("code_revision"), identical=True)
    artifacts.write_json(os.path.join(r["old"], RESULTS),
                         merged(new, old, cfg.seq_len - 1, record))
    log(f"merged: {r['old']}/{RESULTS} (+{len(r['added'])} delays)")
  return len(rows)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("cmd", choices=("check", "merge"))
  p.add_argument("--root", required=True, help="the re-measuring sweep's root")
  p.add_argument("--dest", required=True, help="the committed runs (experiments/<study>/runs)")
  args = p.parse_args(argv)
  try:
    if args.cmd == "check":
      rows = check(args.root, args.dest)
      bad = sum(bool(r["differences"]) for r in rows)
      print(f"check: {len(rows)} finished networks, {bad} differ from the committed ones")
      return 1 if bad else 0
    print(f"merge: {merge(args.root, args.dest)} networks")
    return 0
  except (artifacts.RunError, ValueError) as e:  # ValueError: an unreadable JSON file
    print(f"error: {e}", file=sys.stderr)
    return 1


if __name__ == "__main__":
  sys.exit(main())
