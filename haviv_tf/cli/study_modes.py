"""The modes across networks: correlate (speed vs. memory of given runs) and sweep (a grid of
networks, run or resumed, then its report)."""

import os
import time

from haviv_tf.base import artifacts
from haviv_tf.cli import common


def correlate(args):
  if not args.workdirs or not args.out:
    raise common.UsageError("--mode=correlate needs --workdirs=DIR,DIR,... and --out=DIR")
  if args.dry_run:
    for w in args.workdirs:
      common.dry_trained(args, "correlate", w, "--workdirs entry")
    common.dry_run(args, "correlate", workdirs=args.workdirs, out=args.out)
  from haviv_tf.study import correlations  # pylint: disable=g-import-not-at-top
  common.watch(args.out)
  result = correlations.analyze(args.workdirs, args.out, overwrite=args.overwrite)
  for d, c in result["correlations"]["per_class"].items():
    print(f"delay {d}: Spearman {c['spearman']} (n={c['n']}) of log speed vs. accuracy")
  for d, best in result["predictors"]["best"].items():
    print(f"delay {d}: best predictor of per-class accuracy: {best}")


def sweep(args):
  if not args.workdir:
    raise common.UsageError("--mode=sweep needs --workdir=DIR, the sweep's root")
  from haviv_tf.study import runner  # pylint: disable=g-import-not-at-top
  from haviv_tf.study import sweep as sweep_lib  # pylint: disable=g-import-not-at-top
  root = args.workdir
  if os.path.exists(os.path.join(root, sweep_lib.GRID_FILE)):
    name, specs = sweep_lib.load_grid(root)
    if args.grid and args.grid != name:
      raise common.UsageError(f"{root} holds the {name!r} grid; use another --workdir for "
                              f"{args.grid!r}")
  else:
    name = args.grid or "small"
    specs = sweep_lib.expand(sweep_lib.get_grid(name))
    check_report_out(args, root, name)
    if not args.dry_run:
      sweep_lib.write_grid(specs, root, name)
  check_report_out(args, root, name)
  common.dry_run(args, "sweep", workdir=root, grid=name, networks=len(specs), workers=args.workers,
           threads=args.threads, out=args.out)
  common.watch(root, tensorboard=True)
  common.watch(args.out)
  t0 = time.time()
  results = runner.run_local(specs, root, args.workers, args.threads,
                            args.overrides["data_dir"] or "")
  wall = time.time() - t0
  failed = [r for r in results if r["status"] not in ("done", "skipped")]
  common.import_quietly(args)
  from haviv_tf.study import report  # pylint: disable=g-import-not-at-top
  ran = sum(r["status"] == "done" for r in results)
  # The launcher's own wall time covers the grid only if it ran every run from the start.
  whole = ran == len(results) and not any(r.get("resumed") for r in results)
  summary = report.build(root, args.out, wall_seconds=wall if whole else None)
  held = ", ".join(f"({k}) {'yes' if v['held'] else ('n/a' if v['held'] is None else 'no')}"
                   for k, v in summary["claims"].items())
  print(f"{os.path.join(args.out or root, report.REPORT_MD)}: {summary['analysed']} of "
        f"{summary['runs']} networks; claims held: {held}")
  if failed:
    raise artifacts.RunError(f"{len(failed)} run(s) failed: " + "; ".join(
        f"{r['name']} at {r.get('failed_step', r['status'])}" for r in failed))


def check_report_out(args, root, grid_name):
  """--out of --mode=sweep holding another grid's report is not written over without
  --overwrite (the report of this grid is rebuilt from its runs, as in its root)."""
  if not args.out or args.overwrite:
    return
  path = os.path.join(args.out, "report.json")
  if not os.path.exists(path):
    return
  stored = artifacts.read_json(path)
  here = os.path.basename(os.path.abspath(root))
  if (stored.get("grid"), stored.get("root")) != (grid_name, here):
    raise common.UsageError(
        f"{args.out} holds the report of grid {stored.get('grid')!r} in "
        f"{stored.get('root')!r}, not of {grid_name!r} in {here!r}; --overwrite replaces it, "
        "or use another --out")
