"""The modes on one trained network: evaluate, memory, slow_points, export, backtrack."""

import os

from haviv_tf.base import artifacts
from haviv_tf.cli import common


def eval_delays_flag(args):
  """--eval_delays as sorted distinct ints within the evaluable range, or None."""
  from haviv_tf.probes import memory  # pylint: disable=g-import-not-at-top
  delays = args.overrides["eval_delays"]
  if not delays:
    return None
  try:
    delays = tuple(int(d) for d in delays)
  except ValueError:
    raise common.UsageError(f"--eval_delays must be integers, got {','.join(delays)}") from None
  try:
    return memory.check_delays(delays, min_delay=1, max_delay=memory.MAX_DELAY)
  except ValueError as e:
    raise common.UsageError(f"--eval_delays: {e}") from None


def check_min_delay(delays, cfg):
  if delays and delays[0] < cfg.min_delay:
    raise common.UsageError(f"--eval_delays: delay {delays[0]} is below the run's minimum delay "
                            f"{cfg.min_delay}")


def evaluate(args):
  delays = eval_delays_flag(args)
  common.need_workdir(args, "evaluate")
  if args.dry_run:
    cfg = common.dry_trained(args, "evaluate", args.workdir)
    if cfg is not None:
      check_min_delay(delays, cfg)
    common.dry_run(args, "evaluate", cfg, workdir=args.workdir, eval_delays=delays,
             eval_trials=args.overrides["eval_trials"], overwrite=args.overwrite)
  pipeline, cfg, source, run = common.trained_run(args, "evaluate")
  check_min_delay(delays, cfg)
  results = pipeline.evaluate(cfg, run, source, args.workdir, delays,
                              args.overrides["eval_trials"], overwrite=args.overwrite)
  print(f"{args.workdir}: report accuracy by delay {results['accuracy_by_delay']}")


def memory(args):
  from haviv_tf.probes import memory  # pylint: disable=g-import-not-at-top
  delays = eval_delays_flag(args)
  if not 1 <= args.max_delay <= memory.MAX_DELAY:
    raise common.UsageError(f"--max_delay must be in [1, {memory.MAX_DELAY}], got {args.max_delay}")
  if delays and ("max_delay" in args.present):
    raise common.UsageError("give --eval_delays or --max_delay, not both")
  common.need_workdir(args, "memory")
  if args.dry_run:
    cfg = common.dry_trained(args, "memory", args.workdir)
    if cfg is not None:
      check_min_delay(delays, cfg)
      if delays is None and args.max_delay < min(cfg.eval_delays):
        raise common.UsageError(f"--max_delay ({args.max_delay}) is below the run's shortest "
                                f"evaluation delay {min(cfg.eval_delays)}")
    common.dry_run(args, "memory", cfg, workdir=args.workdir, eval_delays=delays,
             max_delay=args.max_delay, eval_trials=args.overrides["eval_trials"],
             overwrite=args.overwrite)
  pipeline, cfg, source, run = common.trained_run(args, "memory")
  check_min_delay(delays, cfg)
  if delays is not None:
    check_half_life_possible(args, delays, cfg, run.step)
  if delays is None:
    start = min(cfg.eval_delays)
    if args.max_delay < start:
      raise common.UsageError(f"--max_delay ({args.max_delay}) is below the run's shortest "
                              f"evaluation delay {start}")
    delays = tuple(sorted(set(cfg.eval_delays) | set(memory.geometric_delays(
        start, args.max_delay))))
    delays = tuple(d for d in delays if d <= args.max_delay)
  results = pipeline.evaluate(cfg, run, source, args.workdir, delays,
                              args.overrides["eval_trials"], overwrite=args.overwrite,
                              until_chance=True)
  half = results.get("memory_half_life")
  if not half:
    raise common.UsageError(f"{args.workdir}: a half-life needs accuracies at two or more delays, "
                            "one of them within a training trial; the evaluated delays are kept in "
                            "results.json")
  print(f"{args.workdir}: memory half-life {half_text(half['overall'])}; per class "
        + ", ".join(f"{c}: {half_text(h)}" for c, h in half["per_class"].items()))
  for line in sink_lines(half):
    print(line)


def sink_lines(half) -> list:
  """A line per class memory.sinks finds: its accuracy is not memory of it."""
  from haviv_tf.probes import memory  # pylint: disable=g-import-not-at-top
  return [f"  class {c}: accuracy half-life {half_text(half['per_class'][c])}, informedness "
          f"half-life {half_text(half['per_class_informedness'][c])}: other classes' trials "
          f"are reported as {c}" for c in memory.sinks(half)]


def check_half_life_possible(args, delays, cfg, step):
  """Before evaluating: a half-life needs two delays (given or stored for this network), one of
  them within a training trial."""
  path = os.path.join(args.workdir, artifacts.RESULTS_FILE)
  stored = artifacts.read_json(path) if os.path.exists(path) else {}
  known = set(delays)
  if stored.get("step") == step:
    known |= {int(d) for d in stored.get("accuracy_by_delay") or {}}
  if len(known) < 2 or min(known) > cfg.seq_len - 1:
    raise common.UsageError(
        f"{args.workdir}: a half-life needs accuracies at two or more delays, one of them "
        f"within a training trial (<= {cfg.seq_len - 1}); give more --eval_delays, or "
        "--max_delay alone")


def half_text(h):
  if not h or h.get("half_life") is None:
    return "none (at chance)" if h else "n/a"
  back = f" (back above halfway by {h['recovers_at']})" if h.get("recovers_at") else ""
  return f"{'>= ' if h['censored'] else ''}{h['half_life']:.0f}{back}"


def slow_points(args):
  sp_dir = args.sp_dir
  if sp_dir and (sp_dir != os.path.basename(sp_dir) or sp_dir in (os.curdir, os.pardir)):
    raise common.UsageError(
        f"--sp_dir must name a subdirectory of --workdir (one name), got {sp_dir!r}")
  common.need_workdir(args, "slow_points")
  if args.dry_run:
    cfg = common.dry_trained(args, "slow_points", args.workdir)
    common.dry_run(args, "slow_points", cfg, workdir=args.workdir, sp_dir=sp_dir,
                   **common.sp_settings(args))
  pipeline, cfg, source, run = common.trained_run(args, "slow_points")
  from haviv_tf.probes import slow_points  # pylint: disable=g-import-not-at-top
  sp_config = common.sp_config(args, slow_points, cfg)
  where = os.path.join(args.workdir, sp_dir)
  stored_path = os.path.join(where, artifacts.RESULTS_FILE)
  stored = artifacts.read_json(stored_path) if os.path.exists(stored_path) else {}
  # Points of an older file format are redone (nothing reads them); today's are kept.
  if (stored.get("slow_points_step") == run.step and not args.overwrite
      and stored.get("slow_points_format") == slow_points.FORMAT_VERSION):
    from haviv_tf.probes import rollouts  # pylint: disable=g-import-not-at-top
    bank = rollouts.noise_bank_for(cfg, run.model)
    if pipeline.slow_points_current(stored, run.step, sp_config, args.sp_recipe, bank):
      print(f"{where}: slow points of step {run.step} already found with the "
            f"{args.sp_recipe} recipe and these settings; nothing to do")
      return
    old_bank = pipeline.stored_cloud_bank(stored)
    if pipeline.slow_points_current(stored, run.step, sp_config, args.sp_recipe, old_bank):
      # Kept (a sweep resumes past them): only the trajectory cloud is older.
      print(f"{where}: slow points of step {run.step} already found with the "
            f"{args.sp_recipe} recipe and these search settings, their trajectory cloud "
            f"drawn with noise bank {old_bank} (today's: {bank}); kept them; --overwrite "
            "searches again with today's cloud")
      return
    raise common.UsageError(
        f"{where} holds slow points of step {run.step} found with the "
        f"{stored.get('slow_points_recipe')} recipe or other search or cloud settings; "
        "--overwrite replaces them (or --sp_dir=NAME writes these beside them)")
  summary = pipeline.find_slow_points(cfg, run, source, args.workdir, sp_config,
                                      recipe=args.sp_recipe, out_dir=sp_dir or None)
  s = summary["slow_point_summary"]
  print(f"{os.path.join(args.workdir, sp_dir)}: {summary['num_unique_slow_points']} unique "
        "slow points "
        f"({args.sp_recipe} recipe; {s['in_box']} of {s['points']} in the reachable box; "
        f"stop reasons {s['stop_reasons']}); speed per class {summary['slow_point_speed']}")


def export(args):
  common.need_workdir(args, "export")
  if args.dry_run:
    common.dry_run(args, "export", common.dry_trained(args, "export", args.workdir),
                   workdir=args.workdir)
  pipeline, cfg, source, run = common.trained_run(args, "export")
  if pipeline.exported(args.workdir, run.step) and not args.overwrite:
    print(f"{args.workdir}: already exported at step {run.step} "
          f"({os.path.join(args.workdir, pipeline.SAVED_MODEL_DIR)}); nothing to do "
          "(--overwrite exports again)")
    return
  print(pipeline.export_model(cfg, run, source, args.workdir))


def backtrack(args):
  common.need_workdir(args, "backtrack")
  if args.dry_run:
    common.dry_run(args, "backtrack", common.dry_trained(args, "backtrack", args.workdir),
                   workdir=args.workdir,
             merge_frac=args.merge_frac, **common.sp_settings(args))
  # The run is restored (and so checked) before back-tracking reads its history.
  _, cfg, source, run = common.trained_run(args, "backtrack")
  del source, run
  from haviv_tf.analysis import backtrack  # pylint: disable=g-import-not-at-top
  from haviv_tf.probes import slow_points  # pylint: disable=g-import-not-at-top
  out = backtrack.backtrack(args.workdir, common.sp_config(args, slow_points, cfg), args.merge_frac,
                            overwrite=args.overwrite)
  if out.get("unchanged"):
    print(f"{args.workdir}: back-tracking of step {out['final_step']} with these settings is "
          f"already in {os.path.join(args.workdir, backtrack.BACKTRACK_JSON)}; nothing to do")
    return
  merges = "; ".join(f"classes {m['classes'][0]} and {m['classes'][1]} at step {m['step']}"
                     for m in out["merges"]) or "none"
  print(f"{args.workdir}: {len(out['classes'])} slow points followed back through "
        f"{len(out['steps']) - 1} snapshots; merges: {merges}")
