"""What every mode of the command line shares: the parsed flags (`Args`), usage errors, the
resolved config, --dry_run, workdir locks, the `wrote:` lines, quiet TensorFlow import.

Flags are defined in haviv_tf/main.py only; the modes read them through an `Args`.
"""

import contextlib
import json
import os
import sys
import types

from absl import logging

from haviv_tf.base import artifacts
from haviv_tf.base import config as config_lib

EXPLICIT = ("protocol", "dataset", "arch", "preset")  # flags of their own, not overrides
MAX_WORKERS = 256   # --workers
MAX_THREADS = 1024  # --threads, --cpu_devices

# Output directories of the running mode: (path, its files before). At the end the mode names
# what it wrote ("wrote: ..." lines) and, after training, the TensorBoard command.
_WATCHED = []
_TENSORBOARD = []
LOCKS = contextlib.ExitStack()  # workdir locks held until main() returns


def make_args(values: dict, overrides: dict, present) -> types.SimpleNamespace:
  """The parsed flags as attributes (`args.workdir`, ...); `overrides`: {Config field: value or
  None} of the flags named after Config fields; `present`: the flags given on the command line."""
  return types.SimpleNamespace(**values, overrides=dict(overrides), present=frozenset(present))


class UsageError(config_lib.InputError):
  """Bad flags; the message is one line."""


def config_from_args(args) -> config_lib.Config:
  """The resolved Config of the parsed flags (InputError on bad values)."""
  overrides = {}
  for name, value in args.overrides.items():
    if value is not None and name == "eval_delays":
      try:
        value = tuple(int(v) for v in value)
      except ValueError:
        raise UsageError(f"`eval_delays` must be integers, got {','.join(value)}") from None
    overrides[name] = value
  if args.steps is not None:
    if overrides.get("train_steps") is not None and overrides["train_steps"] != args.steps:
      raise UsageError("--steps and --train_steps disagree")
    overrides["train_steps"] = args.steps
  overrides.update(protocol=args.protocol, arch=args.arch)
  return config_lib.resolve(args.preset, args.dataset, overrides)


def default_workdir(cfg: config_lib.Config) -> str:
  return os.path.join("runs", f"{cfg.protocol}_{cfg.arch}_{cfg.dataset}_{cfg.preset}_s{cfg.seed}")


def check_sp_flags(args):
  """Slow-point flags, checked before any work."""
  if args.sp_recipe not in config_lib.SP_RECIPES:
    raise UsageError(f"unknown --sp_recipe {args.sp_recipe!r}; valid: "
                     f"{', '.join(config_lib.SP_RECIPES)}")
  for name in ("sp_max_iters", "sp_q_tol", "sp_window", "sp_rel_tol"):
    value = getattr(args, name)
    if value is not None and not 0 < value < float("inf"):
      raise UsageError(f"--{name} must be positive, got {value}")


def sp_settings(args):
  """The slow-point flags as given (for --dry_run)."""
  return dict(sp_recipe=args.sp_recipe, sp_max_iters=args.sp_max_iters,
              sp_q_tol=args.sp_q_tol, sp_window=args.sp_window, sp_rel_tol=args.sp_rel_tol)


def sp_config(args, slow_points, cfg=None):
  """The SlowPointConfig of --sp_recipe for a run trained with `cfg`, with the --sp_* flags."""
  overrides = {k: v for k, v in (("max_iters", args.sp_max_iters), ("q_tol", args.sp_q_tol),
                                 ("window", args.sp_window), ("rel_tol", args.sp_rel_tol))
               if v is not None}
  return slow_points.recipe_config(args.sp_recipe, cfg, **overrides)


def files(root):
  """{relative path: (mtime_ns, size)} of the files under `root` (hidden names skipped: the
  lock and temporary files)."""
  out = {}
  for here, dirs, names in os.walk(root):
    dirs[:] = [d for d in dirs if not d.startswith(".")]
    for name in names:
      if name.startswith("."):
        continue
      path = os.path.join(here, name)
      try:
        st = os.stat(path)
      except OSError:
        continue
      out[os.path.relpath(path, root)] = (st.st_mtime_ns, st.st_size)
  return out


def watch(path, tensorboard=False):
  """Names the files the mode writes under `path` when it ends (and, with `tensorboard`, the
  command that shows its logs)."""
  if path and all(p != path for p, _ in _WATCHED):
    _WATCHED.append((path, files(path) if os.path.isdir(path) else {}))
  if tensorboard and path not in _TENSORBOARD:
    _TENSORBOARD.append(path)


def say_written():
  """One `wrote: PATH` line per file written at the top of a watched directory, one
  `wrote: DIR/ (n files)` per subdirectory, then the TensorBoard command of training modes."""
  for root, before in _WATCHED:
    after = files(root) if os.path.isdir(root) else {}
    changed = sorted(p for p, state in after.items() if before.get(p) != state)
    groups = {}
    for p in changed:
      top = p.split(os.sep, 1)
      groups.setdefault(top[0] + (os.sep if len(top) > 1 else ""), []).append(p)
    for name, paths in sorted(groups.items()):
      if name.endswith(os.sep):
        print(f"wrote: {os.path.join(root, name)} ({len(paths)} file{'s' * (len(paths) > 1)})")
      else:
        print(f"wrote: {os.path.join(root, name)}")
    if not changed:
      print(f"wrote: nothing new in {root}")
  for logdir in _TENSORBOARD:
    print(f"TensorBoard: tensorboard --logdir {logdir}")


def check_numeric_flags(args):
  """Bounds of the numeric flags that are not checked as a Config (every mode)."""
  trials = args.overrides["eval_trials"]
  if trials is not None and not 1 <= trials <= config_lib.MAX_EVAL_TRIALS:
    raise UsageError(f"--eval_trials must be in [1, {config_lib.MAX_EVAL_TRIALS:,}], got {trials}")
  if not 0 < args.merge_frac <= 1:
    raise UsageError(f"--merge_frac must be in (0, 1], got {args.merge_frac}")
  if not 1 <= args.workers <= MAX_WORKERS:
    raise UsageError(f"--workers must be in [1, {MAX_WORKERS}], got {args.workers}")
  for name in ("threads", "cpu_devices"):
    value = getattr(args, name)
    if not 0 <= value <= MAX_THREADS:
      raise UsageError(f"--{name} must be >= 0 and <= {MAX_THREADS}, got {value}")


class DryRunDone(Exception):
  """--dry_run: the mode's checks passed and its settings are printed; nothing is done."""


def dry_run(args, mode, cfg=None, **settings):
  """With --dry_run: prints {"mode", settings..., "config"} as JSON and ends the mode."""
  if not args.dry_run:
    return
  out = {"mode": mode, "dry_run": True, **settings,
         "config": cfg.to_dict() if cfg is not None else None}
  print(json.dumps(out, indent=2, sort_keys=True, default=str))
  raise DryRunDone()


def dry_trained(args, mode, workdir, flag="--workdir"):
  """--dry_run of a mode on a trained run: its recorded config if `workdir` holds one (checked
  as the real run checks it: config.json and a checkpoint), else None and a note on stderr."""
  if not os.path.exists(workdir):
    print(f"note: {flag}={workdir} does not exist yet; --mode={mode} will need a trained run "
          "there (checked: the flags)", file=sys.stderr)
    return None
  return import_quietly(args).trained_config(workdir)


def need_workdir(args, mode):
  if not args.workdir:
    raise UsageError(f"--mode={mode} needs --workdir of a trained run")


def lock(workdir):
  """Holds the exclusive lock on `workdir` until the command ends (RunError if another process
  holds it)."""
  LOCKS.enter_context(artifacts.workdir_lock(workdir))


def import_quietly(args):
  """Imports the TensorFlow side with fd 2 muted: TF 2.21 writes start-up notes (oneDNN, CUDA
  probing) to stderr before its log level applies, burying our one-line messages."""
  saved = os.dup(2)
  try:
    with open(os.devnull, "w") as null:
      os.dup2(null.fileno(), 2)
      from haviv_tf.analysis import pipeline  # pylint: disable=g-import-not-at-top
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      tf.config.list_physical_devices()  # the CUDA probe happens here
  finally:
    os.dup2(saved, 2)
    os.close(saved)
  from haviv_tf.task import trials  # pylint: disable=g-import-not-at-top
  trials.set_sampler_nice(args.sampler_nice)
  return pipeline


def exit_now(status):
  """Ends the process with `status`, skipping interpreter finalization.

  When training stops mid-epoch (a non-finite loss), tf.data's trial-sampler threads
  (tf.numpy_function) are still live, and TensorFlow's clean-up at interpreter shutdown can
  deadlock on them (seen: the process hangs in garbage collection after printing its error).
  By now every file the command wrote is closed and its workdir lock released.
  """
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(status)  # pylint: disable=protected-access


class OwnInfoOnly:
  """absl handler filter: INFO lines of haviv_tf itself (progress), warnings of everything."""

  def __init__(self):
    self.package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

  def filter(self, record):
    return (record.levelno >= logging.converter.STANDARD_WARNING
            or os.path.abspath(record.pathname).startswith(self.package))


def trained_run(args, mode):
  """(pipeline module, cfg, source, run) of the trained run in --workdir."""
  need_workdir(args, mode)
  pipeline = import_quietly(args)
  if os.path.isdir(args.workdir):
    lock(args.workdir)  # every such mode writes into the workdir
    watch(args.workdir)
  return (pipeline,) + tuple(pipeline.restore(args.workdir))
