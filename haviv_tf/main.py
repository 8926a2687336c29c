"""Command line: flags -> Config -> one library call per --mode.

  python -m haviv_tf.main --protocol=vocu --dataset=mnist --arch=gru --preset=paper \
      --workdir=runs/vocu_gru --seed=0

Every Config field is also a flag (e.g. --learning_rate, --batch_size, --eval_delays=5,10,19)
whose --help is the field's documentation in config.py with the presets' defaults; --steps is
--train_steps. --dry_run validates the flags and config as the mode would, prints the resolved
config as JSON and writes nothing. Bad input (config_lib.InputError) ends with one `error: ...` line on
stderr and exit status 1; anything else is a bug and ends with its traceback, BUG_MESSAGE and
exit status BUG_EXIT_STATUS.
"""

import contextlib
import dataclasses
import json
import os
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ start-up chatter off stderr

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

from haviv_tf.base import artifacts
from haviv_tf.base import config as config_lib

_TRAINING_MODES = ("train", "finetune", "compare")  # the modes that train in this process
BUG_MESSAGE = ("internal error: the traceback above is a bug in haviv_tf or a library it uses, "
               "not a problem with the input; please report it with the command that ran")
BUG_EXIT_STATUS = 2
MAX_WORKERS = 256   # --workers
MAX_THREADS = 1024  # --threads, --cpu_devices

_MODE = flags.DEFINE_string(
    "mode", "train",
    "train: train (or resume), then evaluate, find slow points and export; evaluate / "
    "slow_points / export: that step alone on the trained run in --workdir; memory: evaluate "
    "--workdir at growing delays until its memory fades (--max_delay) and store its memory "
    "half-lives; analyze: speed vs. "
    "memory across the runs in --workdirs, written to --out; finetune: fine-tune the run in "
    "--parent (--finetune=control|slow_points|center_mass) into --workdir; compare: all three "
    "fine-tunings of --parent and their comparison in --out; backtrack: follow the final slow "
    "points of --workdir back through its training snapshots; study: run (or resume) the "
    "--grid of networks in --workdir with --workers, then write its REPORT.md.")
_PROTOCOL = flags.DEFINE_string("protocol", "vocu", "Curriculum: vocu, decu, nacu or recu.")
_DATASET = flags.DEFINE_string(
    "dataset", "mnist_sample",
    "mnist, cifar10 (tensorflow-datasets, or canonical files in --data_dir) or mnist_sample "
    "(a small real MNIST subset shipped with the package; works offline).")
_ARCH = flags.DEFINE_string("arch", "gru", "Recurrent cell: gru or lstm.")
_PRESET = flags.DEFINE_string("preset", "quick",
                              "Hyper-parameters: paper (the paper's) or quick (minutes on a CPU).")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run directory (default runs/<protocol>_<arch>_<dataset>_<preset>_s<seed>).")
_STEPS = flags.DEFINE_integer("steps", None, "Training steps (alias of --train_steps).")
_WORKDIRS = flags.DEFINE_list("workdirs", None, "Runs to compare (--mode=analyze).")
_OUT = flags.DEFINE_string("out", None, "Output directory of --mode=analyze.")
_SP_MAX_ITERS = flags.DEFINE_integer(
    "sp_max_iters", None, "Slow-point search: iteration cap (positive integer; default: the "
    "--sp_recipe's).")
_SP_Q_TOL = flags.DEFINE_float("sp_q_tol", None, "Slow-point search: q (speed) tolerance "
                               "(positive; default: the --sp_recipe's).")
_SP_RECIPE = flags.DEFINE_string(
    "sp_recipe", "default",
    "Slow points: default (this package's: class centres of test trials plus 40 sampled "
    "starts, search kept in the reachable box, stopped by q tolerance, stall or cap) or paper "
    "(the authors' BlackBoxMNIST.py / BlackBoxCIFAR.py procedure; the quick preset scales its "
    "100,000 steps as its training). Both write the same files.")
_SP_WINDOW = flags.DEFINE_integer(
    "sp_window", None, "Slow-point search: a point stops once its best speed improved by less "
    "than --sp_rel_tol (relative) over this many of its updates (positive integer).")
_SP_REL_TOL = flags.DEFINE_float("sp_rel_tol", None,
                                 "Slow-point search: see --sp_window (positive).")
_MAX_DELAY = flags.DEFINE_integer(
    "max_delay", 10_000, "--mode=memory: the longest delay evaluated (delays grow 5, 10, 20, "
    "50, ... up to it, and stop early once report accuracy is within noise of chance); at most "
    "100,000.")
_SP_DIR = flags.DEFINE_string(
    "sp_dir", "", "--mode=slow_points: write the slow points, their results.json summary and "
    "figure into this subdirectory of --workdir (e.g. a second recipe beside the first; "
    "default: the workdir itself).")
_PARENT = flags.DEFINE_string("parent", None,
                              "Trained run to fine-tune (--mode=finetune / --mode=compare).")
_MERGE_FRAC = flags.DEFINE_float(
    "merge_frac", 0.05, "Back-tracking: two points merge within this fraction of the median "
    "distance between the final slow points (0 < f <= 1).")
_GRID = flags.DEFINE_string("grid", None, "--mode=study: the sweep grid, small, medium, "
                            "cifar_quick or paper (default: the grid already in --workdir, "
                            "else small).")
_WORKERS = flags.DEFINE_integer("workers", 1, "--mode=study: parallel worker processes "
                                f"(1 to {MAX_WORKERS}).")
_THREADS = flags.DEFINE_integer("threads", 0, "--mode=study: TensorFlow threads per worker "
                                f"(0 to {MAX_THREADS}; 0: cores // workers).")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Replace a run with a different config in --workdir; with "
    "--mode=evaluate / memory, replace stored accuracies measured with more trials.")
_STRATEGY = flags.DEFINE_string(
    "strategy", "default",
    "--mode=train: tf.distribute strategy for training: default (one device), mirrored (the "
    "GPUs, or the logical CPU devices without GPU; see --cpu_devices), multi_worker "
    "(MultiWorkerMirroredStrategy from the TF_CONFIG environment variable; run the same "
    "command on every worker) or tpu (TPUStrategy; untested). Results match the default "
    "strategy's up to float rounding; the strategy is recorded in config.json, not compared "
    "on resume.")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", 0, "--strategy=mirrored on a machine without GPU: split the CPU into this "
    f"many logical devices, one replica each (0 to {MAX_THREADS}; 0: leave the CPU as it is, "
    "one device).")
_SAMPLER_NICE = flags.DEFINE_integer(
    "sampler_nice", config_lib.SAMPLER_NICE,
    "--mode=train/finetune/compare, Linux: niceness the numpy trial sampler's threads add to "
    "their own, so that the sampler fills the train step's gaps instead of pre-empting it "
    f"(0 to {config_lib.MAX_NICE}; 0: same priority as the train step). Speed only: the trials "
    "and results do not change. Lower it if other jobs keep every core busy.")
_DRY_RUN = flags.DEFINE_bool(
    "dry_run", False,
    "Check the flags and config exactly as the --mode would (same one-line errors), print the "
    "resolved config and the mode's settings as JSON on stdout, write nothing and exit 0. A "
    "--workdir / --parent / --workdirs run that exists is read (its config.json, checkpoint "
    "and, for --mode=train, whether the flags match it); one that does not exist yet is "
    "reported on stderr and not required: the command is checked as it would be once the run "
    "is there.")
_TPU = flags.DEFINE_string("tpu", "", "--strategy=tpu: the TPU name or grpc:// address for "
                           "TPUClusterResolver (default: the local / Cloud TPU VM one).")

_EXPLICIT = ("protocol", "dataset", "arch", "preset")
_OVERRIDES = {}
for _field in dataclasses.fields(config_lib.Config):
  if _field.name in _EXPLICIT:
    continue
  _help = config_lib.field_help(_field.name)  # the field's own documentation (config.py)
  if _field.type in (int, "int"):
    _OVERRIDES[_field.name] = flags.DEFINE_integer(_field.name, None, _help)
  elif _field.type in (float, "float"):
    _OVERRIDES[_field.name] = flags.DEFINE_float(_field.name, None, _help)
  elif _field.type in (bool, "bool"):
    _OVERRIDES[_field.name] = flags.DEFINE_bool(_field.name, None, _help)
  elif _field.type in (tuple, "tuple"):
    _OVERRIDES[_field.name] = flags.DEFINE_list(_field.name, None, _help)
  else:
    _OVERRIDES[_field.name] = flags.DEFINE_string(_field.name, None, _help)


class UsageError(config_lib.InputError):
  """Bad flags; the message is one line."""


def config_from_flags() -> config_lib.Config:
  """The resolved Config of the parsed flags (InputError on bad values)."""
  overrides = {}
  for name, holder in _OVERRIDES.items():
    value = holder.value
    if value is not None and name == "eval_delays":
      try:
        value = tuple(int(v) for v in value)
      except ValueError:
        raise UsageError(f"`eval_delays` must be integers, got {','.join(value)}") from None
    overrides[name] = value
  if _STEPS.value is not None:
    if overrides.get("train_steps") is not None and overrides["train_steps"] != _STEPS.value:
      raise UsageError("--steps and --train_steps disagree")
    overrides["train_steps"] = _STEPS.value
  overrides.update(protocol=_PROTOCOL.value, arch=_ARCH.value)
  return config_lib.resolve(_PRESET.value, _DATASET.value, overrides)


def default_workdir(cfg: config_lib.Config) -> str:
  return os.path.join("runs", f"{cfg.protocol}_{cfg.arch}_{cfg.dataset}_{cfg.preset}_s{cfg.seed}")


def _check_sp_flags():
  """Slow-point flags, checked before any work."""
  if _SP_RECIPE.value not in config_lib.SP_RECIPES:
    raise UsageError(f"unknown --sp_recipe {_SP_RECIPE.value!r}; valid: "
                     f"{', '.join(config_lib.SP_RECIPES)}")
  for name, holder in (("sp_max_iters", _SP_MAX_ITERS), ("sp_q_tol", _SP_Q_TOL),
                       ("sp_window", _SP_WINDOW), ("sp_rel_tol", _SP_REL_TOL)):
    if holder.value is not None and not 0 < holder.value < float("inf"):
      raise UsageError(f"--{name} must be positive, got {holder.value}")


def _sp_settings():
  """The slow-point flags as given (for --dry_run)."""
  return dict(sp_recipe=_SP_RECIPE.value, sp_max_iters=_SP_MAX_ITERS.value,
              sp_q_tol=_SP_Q_TOL.value, sp_window=_SP_WINDOW.value, sp_rel_tol=_SP_REL_TOL.value)


def _sp_config(slow_points, cfg=None):
  """The SlowPointConfig of --sp_recipe for a run trained with `cfg`, with the --sp_* flags."""
  overrides = {k: v for k, v in (("max_iters", _SP_MAX_ITERS.value), ("q_tol", _SP_Q_TOL.value),
                                 ("window", _SP_WINDOW.value), ("rel_tol", _SP_REL_TOL.value))
               if v is not None}
  return slow_points.recipe_config(_SP_RECIPE.value, cfg, **overrides)


def _run(argv):
  if len(argv) > 1:
    raise UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  mode = _MODE.value
  if mode not in _HANDLERS:
    raise UsageError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
  if mode != "train" and any(flags.FLAGS[n].present for n in ("strategy", "cpu_devices", "tpu")):
    raise UsageError("--strategy, --cpu_devices and --tpu go with --mode=train")
  if mode not in _TRAINING_MODES and flags.FLAGS["sampler_nice"].present:
    raise UsageError(f"--sampler_nice goes with --mode={', --mode='.join(_TRAINING_MODES)}")
  if not 0 <= _SAMPLER_NICE.value <= config_lib.MAX_NICE:
    raise UsageError(f"--sampler_nice must be in [0, {config_lib.MAX_NICE}], got "
                     f"{_SAMPLER_NICE.value}")
  _check_sp_flags()
  _check_numeric_flags()
  try:
    _HANDLERS[mode]()
  except _DryRunDone:
    return
  _say_written()


# Output directories of the running mode: (path, its files before). At the end the mode names
# what it wrote ("wrote: ..." lines) and, after training, the TensorBoard command.
_WATCHED = []
_TENSORBOARD = []


def _files(root):
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


def _watch(path, tensorboard=False):
  """Names the files the mode writes under `path` when it ends (and, with `tensorboard`, the
  command that shows its logs)."""
  if path and all(p != path for p, _ in _WATCHED):
    _WATCHED.append((path, _files(path) if os.path.isdir(path) else {}))
  if tensorboard and path not in _TENSORBOARD:
    _TENSORBOARD.append(path)


def _say_written():
  """One `wrote: PATH` line per file written at the top of a watched directory, one
  `wrote: DIR/ (n files)` per subdirectory, then the TensorBoard command of training modes."""
  for root, before in _WATCHED:
    after = _files(root) if os.path.isdir(root) else {}
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


def _check_numeric_flags():
  """Bounds of the numeric flags that are not checked as a Config (every mode)."""
  trials = _OVERRIDES["eval_trials"].value
  if trials is not None and not 1 <= trials <= config_lib.MAX_EVAL_TRIALS:
    raise UsageError(f"--eval_trials must be in [1, {config_lib.MAX_EVAL_TRIALS:,}], got {trials}")
  if not 0 < _MERGE_FRAC.value <= 1:
    raise UsageError(f"--merge_frac must be in (0, 1], got {_MERGE_FRAC.value}")
  if not 1 <= _WORKERS.value <= MAX_WORKERS:
    raise UsageError(f"--workers must be in [1, {MAX_WORKERS}], got {_WORKERS.value}")
  for name, holder in (("threads", _THREADS), ("cpu_devices", _CPU_DEVICES)):
    if not 0 <= holder.value <= MAX_THREADS:
      raise UsageError(f"--{name} must be >= 0 and <= {MAX_THREADS}, got {holder.value}")


class _DryRunDone(Exception):
  """--dry_run: the mode's checks passed and its settings are printed; nothing is done."""


def _dry_run(mode, cfg=None, **settings):
  """With --dry_run: prints {"mode", settings..., "config"} as JSON and ends the mode."""
  if not _DRY_RUN.value:
    return
  out = {"mode": mode, "dry_run": True, **settings,
         "config": cfg.to_dict() if cfg is not None else None}
  print(json.dumps(out, indent=2, sort_keys=True, default=str))
  raise _DryRunDone()


def _dry_trained(mode, workdir, flag="--workdir"):
  """--dry_run of a mode on a trained run: its recorded config if `workdir` holds one (checked
  as the real run checks it: config.json and a checkpoint), else None and a note on stderr."""
  if not os.path.exists(workdir):
    print(f"note: {flag}={workdir} does not exist yet; --mode={mode} will need a trained run "
          "there (checked: the flags)", file=sys.stderr)
    return None
  return _import_quietly().trained_config(workdir)


# One handler per mode. Each checks its own flags before TensorFlow loads (bad flags fail fast),
# then makes one library call and prints its one-line summary.

def _train():
  if _OVERRIDES["finetune"].value:
    raise UsageError("--finetune goes with --mode=finetune --parent=DIR (a trained run)")
  cfg = config_from_flags()
  if _STRATEGY.value not in config_lib.STRATEGIES:
    raise UsageError(f"unknown strategy {_STRATEGY.value!r}; valid: "
                     f"{', '.join(config_lib.STRATEGIES)}")
  if _CPU_DEVICES.value < 0:
    raise UsageError(f"--cpu_devices must be >= 0, got {_CPU_DEVICES.value}")
  workdir = _WORKDIR.value or default_workdir(cfg)
  if _DRY_RUN.value:
    if _STRATEGY.value != "default" or _CPU_DEVICES.value or _TPU.value:
      _dry_strategy(cfg)
    if os.path.exists(workdir):  # as the real run: a different run there needs --overwrite
      _import_quietly()
      from haviv_tf.training import train  # pylint: disable=g-import-not-at-top
      train.check_workdir(cfg, workdir, _OVERWRITE.value)
    _dry_run("train", cfg, workdir=workdir, strategy=_STRATEGY.value, sp_recipe=_SP_RECIPE.value)
  pipeline = _import_quietly()
  from haviv_tf.training import distribute  # pylint: disable=g-import-not-at-top
  from haviv_tf.probes import slow_points  # pylint: disable=g-import-not-at-top
  strategy = distribute.make_strategy(_STRATEGY.value, _CPU_DEVICES.value, _TPU.value)
  if distribute.is_chief(strategy):  # other multi-worker tasks only read the workdir
    _lock(workdir)
    _watch(workdir, tensorboard=True)
  results = pipeline.train_and_analyze(cfg, workdir, overwrite=_OVERWRITE.value,
                                       sp_config=_sp_config(slow_points, cfg),
                                       strategy=strategy, recipe=_SP_RECIPE.value)
  if not distribute.is_chief(strategy):
    kind, index = distribute.task_of(strategy)
    print(f"{workdir}: {kind} {index} finished training; the chief writes the results")
    return
  accs = ", ".join(f"{d}: {a:.3f}" for d, a in
                   sorted(results["accuracy_by_delay"].items(), key=lambda kv: int(kv[0])))
  print(f"{workdir}: step {results['step']}, report accuracy by delay {{{accs}}}")


def _need_workdir(mode):
  if not _WORKDIR.value:
    raise UsageError(f"--mode={mode} needs --workdir of a trained run")


def _dry_strategy(cfg):
  """--dry_run's checks of --strategy, --cpu_devices and --tpu: the real run's, short of
  joining a multi-worker cluster (TF_CONFIG is parsed and checked) or connecting to a TPU."""
  _import_quietly()
  from haviv_tf.training import distribute  # pylint: disable=g-import-not-at-top
  from haviv_tf.training import train  # pylint: disable=g-import-not-at-top
  name = _STRATEGY.value
  if name in ("default", "mirrored"):
    strategy = distribute.make_strategy(name, _CPU_DEVICES.value, _TPU.value)
    distribute.check_divisible(strategy, cfg.batch_size, train.speed_noise_frames(cfg))
    return
  distribute.check_name(name)
  if _CPU_DEVICES.value:
    raise UsageError("--cpu_devices goes with --strategy=mirrored")
  if _TPU.value and name != "tpu":
    raise UsageError("--tpu goes with --strategy=tpu")
  if name == "multi_worker":
    distribute.tf_config()


def _trained_run(mode):
  """(pipeline module, cfg, source, run) of the trained run in --workdir."""
  _need_workdir(mode)
  pipeline = _import_quietly()
  if os.path.isdir(_WORKDIR.value):
    _lock(_WORKDIR.value)  # every such mode writes into the workdir
    _watch(_WORKDIR.value)
  return (pipeline,) + tuple(pipeline.restore(_WORKDIR.value))


def _eval_delays_flag():
  """--eval_delays as sorted distinct ints within the evaluable range, or None."""
  from haviv_tf.probes import memory  # pylint: disable=g-import-not-at-top
  delays = _OVERRIDES["eval_delays"].value
  if not delays:
    return None
  try:
    delays = tuple(int(d) for d in delays)
  except ValueError:
    raise UsageError(f"--eval_delays must be integers, got {','.join(delays)}") from None
  try:
    return memory.check_delays(delays, min_delay=1, max_delay=memory.MAX_DELAY)
  except ValueError as e:
    raise UsageError(f"--eval_delays: {e}") from None


def _check_min_delay(delays, cfg):
  if delays and delays[0] < cfg.min_delay:
    raise UsageError(f"--eval_delays: delay {delays[0]} is below the run's minimum delay "
                     f"{cfg.min_delay}")


def _evaluate():
  delays = _eval_delays_flag()
  _need_workdir("evaluate")
  if _DRY_RUN.value:
    cfg = _dry_trained("evaluate", _WORKDIR.value)
    if cfg is not None:
      _check_min_delay(delays, cfg)
    _dry_run("evaluate", cfg, workdir=_WORKDIR.value, eval_delays=delays,
             eval_trials=_OVERRIDES["eval_trials"].value, overwrite=_OVERWRITE.value)
  pipeline, cfg, source, run = _trained_run("evaluate")
  _check_min_delay(delays, cfg)
  results = pipeline.evaluate(cfg, run, source, _WORKDIR.value, delays,
                              _OVERRIDES["eval_trials"].value, overwrite=_OVERWRITE.value)
  print(f"{_WORKDIR.value}: report accuracy by delay {results['accuracy_by_delay']}")


def _memory():
  from haviv_tf.probes import memory  # pylint: disable=g-import-not-at-top
  delays = _eval_delays_flag()
  if not 1 <= _MAX_DELAY.value <= memory.MAX_DELAY:
    raise UsageError(f"--max_delay must be in [1, {memory.MAX_DELAY}], got {_MAX_DELAY.value}")
  if delays and flags.FLAGS["max_delay"].present:
    raise UsageError("give --eval_delays or --max_delay, not both")
  _need_workdir("memory")
  if _DRY_RUN.value:
    cfg = _dry_trained("memory", _WORKDIR.value)
    if cfg is not None:
      _check_min_delay(delays, cfg)
      if delays is None and _MAX_DELAY.value < min(cfg.eval_delays):
        raise UsageError(f"--max_delay ({_MAX_DELAY.value}) is below the run's shortest "
                         f"evaluation delay {min(cfg.eval_delays)}")
    _dry_run("memory", cfg, workdir=_WORKDIR.value, eval_delays=delays,
             max_delay=_MAX_DELAY.value, eval_trials=_OVERRIDES["eval_trials"].value,
             overwrite=_OVERWRITE.value)
  pipeline, cfg, source, run = _trained_run("memory")
  _check_min_delay(delays, cfg)
  if delays is not None:
    _check_half_life_possible(delays, cfg, run.step)
  if delays is None:
    start = min(cfg.eval_delays)
    if _MAX_DELAY.value < start:
      raise UsageError(f"--max_delay ({_MAX_DELAY.value}) is below the run's shortest "
                       f"evaluation delay {start}")
    delays = tuple(sorted(set(cfg.eval_delays) | set(memory.geometric_delays(
        start, _MAX_DELAY.value))))
    delays = tuple(d for d in delays if d <= _MAX_DELAY.value)
  results = pipeline.evaluate(cfg, run, source, _WORKDIR.value, delays,
                              _OVERRIDES["eval_trials"].value, overwrite=_OVERWRITE.value,
                              until_chance=True)
  half = results.get("memory_half_life")
  if not half:
    raise UsageError(f"{_WORKDIR.value}: a half-life needs accuracies at two or more delays, "
                     "one of them within a training trial; the evaluated delays are kept in "
                     "results.json")
  print(f"{_WORKDIR.value}: memory half-life {_half_text(half['overall'])}; per class "
        + ", ".join(f"{c}: {_half_text(h)}" for c, h in half["per_class"].items()))


def _check_half_life_possible(delays, cfg, step):
  """Before evaluating: a half-life needs two delays (given or stored for this network), one of
  them within a training trial."""
  path = os.path.join(_WORKDIR.value, artifacts.RESULTS_FILE)
  stored = artifacts.read_json(path) if os.path.exists(path) else {}
  known = set(delays)
  if stored.get("step") == step:
    known |= {int(d) for d in stored.get("accuracy_by_delay") or {}}
  if len(known) < 2 or min(known) > cfg.seq_len - 1:
    raise UsageError(f"{_WORKDIR.value}: a half-life needs accuracies at two or more delays, "
                     f"one of them within a training trial (<= {cfg.seq_len - 1}); give more "
                     "--eval_delays, or --max_delay alone")


def _half_text(h):
  if not h or h.get("half_life") is None:
    return "none (at chance)" if h else "n/a"
  return f"{'>= ' if h['censored'] else ''}{h['half_life']:.0f}"


def _slow_points():
  sp_dir = _SP_DIR.value
  if sp_dir and (sp_dir != os.path.basename(sp_dir) or sp_dir in (os.curdir, os.pardir)):
    raise UsageError(f"--sp_dir must name a subdirectory of --workdir (one name), got {sp_dir!r}")
  _need_workdir("slow_points")
  if _DRY_RUN.value:
    cfg = _dry_trained("slow_points", _WORKDIR.value)
    _dry_run("slow_points", cfg, workdir=_WORKDIR.value, sp_dir=sp_dir, **_sp_settings())
  pipeline, cfg, source, run = _trained_run("slow_points")
  from haviv_tf.probes import slow_points  # pylint: disable=g-import-not-at-top
  sp_config = _sp_config(slow_points, cfg)
  where = os.path.join(_WORKDIR.value, sp_dir)
  stored_path = os.path.join(where, artifacts.RESULTS_FILE)
  stored = artifacts.read_json(stored_path) if os.path.exists(stored_path) else {}
  # Points of an older file format are redone (nothing reads them); today's are kept.
  if (stored.get("slow_points_step") == run.step and not _OVERWRITE.value
      and stored.get("slow_points_format") == slow_points.FORMAT_VERSION):
    if pipeline.slow_points_current(stored, run.step, sp_config, _SP_RECIPE.value):
      print(f"{where}: slow points of step {run.step} already found with the "
            f"{_SP_RECIPE.value} recipe and these settings; nothing to do")
      return
    raise UsageError(
        f"{where} holds slow points of step {run.step} found with the "
        f"{stored.get('slow_points_recipe')} recipe or other search settings; --overwrite "
        "replaces them (or --sp_dir=NAME writes these beside them)")
  summary = pipeline.find_slow_points(cfg, run, source, _WORKDIR.value, sp_config,
                                      recipe=_SP_RECIPE.value, out_dir=sp_dir or None)
  s = summary["slow_point_summary"]
  print(f"{os.path.join(_WORKDIR.value, sp_dir)}: {summary['num_unique_slow_points']} unique slow points "
        f"({_SP_RECIPE.value} recipe; {s['in_box']} of {s['points']} in the reachable box; "
        f"stop reasons {s['stop_reasons']}); speed per class {summary['slow_point_speed']}")


def _export():
  _need_workdir("export")
  if _DRY_RUN.value:
    _dry_run("export", _dry_trained("export", _WORKDIR.value), workdir=_WORKDIR.value)
  pipeline, cfg, source, run = _trained_run("export")
  if pipeline.exported(_WORKDIR.value, run.step) and not _OVERWRITE.value:
    print(f"{_WORKDIR.value}: already exported at step {run.step} "
          f"({os.path.join(_WORKDIR.value, pipeline.SAVED_MODEL_DIR)}); nothing to do "
          "(--overwrite exports again)")
    return
  print(pipeline.export_model(cfg, run, source, _WORKDIR.value))


def _backtrack():
  _need_workdir("backtrack")
  if _DRY_RUN.value:
    _dry_run("backtrack", _dry_trained("backtrack", _WORKDIR.value), workdir=_WORKDIR.value,
             merge_frac=_MERGE_FRAC.value, **_sp_settings())
  # The run is restored (and so checked) before back-tracking reads its history.
  _, cfg, source, run = _trained_run("backtrack")
  del source, run
  from haviv_tf.analysis import backtrack  # pylint: disable=g-import-not-at-top
  from haviv_tf.probes import slow_points  # pylint: disable=g-import-not-at-top
  out = backtrack.backtrack(_WORKDIR.value, _sp_config(slow_points, cfg), _MERGE_FRAC.value,
                            overwrite=_OVERWRITE.value)
  if out.get("unchanged"):
    print(f"{_WORKDIR.value}: back-tracking of step {out['final_step']} with these settings is "
          f"already in {os.path.join(_WORKDIR.value, backtrack.BACKTRACK_JSON)}; nothing to do")
    return
  merges = "; ".join(f"classes {m['classes'][0]} and {m['classes'][1]} at step {m['step']}"
                     for m in out["merges"]) or "none"
  print(f"{_WORKDIR.value}: {len(out['classes'])} slow points followed back through "
        f"{len(out['steps']) - 1} snapshots; merges: {merges}")


def _analyze():
  if not _WORKDIRS.value or not _OUT.value:
    raise UsageError("--mode=analyze needs --workdirs=DIR,DIR,... and --out=DIR")
  if _DRY_RUN.value:
    for w in _WORKDIRS.value:
      _dry_trained("analyze", w, "--workdirs entry")
    _dry_run("analyze", workdirs=_WORKDIRS.value, out=_OUT.value)
  from haviv_tf.study import correlations  # pylint: disable=g-import-not-at-top
  _watch(_OUT.value)
  result = correlations.analyze(_WORKDIRS.value, _OUT.value, overwrite=_OVERWRITE.value)
  for d, c in result["correlations"]["per_class"].items():
    print(f"delay {d}: Spearman {c['spearman']} (n={c['n']}) of log speed vs. accuracy")
  for d, best in result["predictors"]["best"].items():
    print(f"delay {d}: best predictor of per-class accuracy: {best}")


def _finetune_flags(mode):
  """(steps, speed weight) of --mode=finetune / compare, whose config comes from --parent."""
  if not _PARENT.value:
    raise UsageError(f"--mode={mode} needs --parent=DIR, a trained run")
  ignored = [n for n, h in _OVERRIDES.items()
             if h.value is not None and n not in ("finetune", "speed_weight", "train_steps")]
  ignored += [n for n in _EXPLICIT if flags.FLAGS[n].present]
  if ignored:
    raise UsageError(f"--mode={mode} takes its config from --parent; drop --{', --'.join(ignored)}")
  steps = _STEPS.value if _STEPS.value is not None else _OVERRIDES["train_steps"].value
  if steps is not None and steps <= 0:
    raise UsageError(f"--steps must be a positive integer, got {steps}")
  mu = _OVERRIDES["speed_weight"].value
  if mu is not None and not 0 <= mu < float("inf"):
    raise UsageError(f"--speed_weight must be a non-negative finite number, got {mu}")
  return steps, mu


def _finetune():
  steps, mu = _finetune_flags("finetune")
  which = _OVERRIDES["finetune"].value
  if which not in config_lib.FINETUNE_MODES:
    raise UsageError(f"--mode=finetune needs --finetune, one of "
                     f"{', '.join(config_lib.FINETUNE_MODES)}")
  if _DRY_RUN.value:
    _dry_run("finetune", _dry_trained("finetune", _PARENT.value, "--parent"),
             parent=_PARENT.value, finetune=which, workdir=_WORKDIR.value, steps=steps,
             speed_weight=mu, **_sp_settings())
  pipeline = _import_quietly()
  from haviv_tf.analysis import control  # pylint: disable=g-import-not-at-top
  from haviv_tf.probes import slow_points  # pylint: disable=g-import-not-at-top
  # The recipe's step counts scale with the parent's training (paper recipe, quick preset).
  sp_config = _sp_config(slow_points, pipeline.trained_config(_PARENT.value))
  workdir = _WORKDIR.value or os.path.join(control.default_out(_PARENT.value), which)
  _lock(workdir)
  _watch(workdir, tensorboard=True)
  results = control.finetune(_PARENT.value, which, workdir, steps, mu, _OVERWRITE.value,
                             sp_config=sp_config, recipe=_SP_RECIPE.value)
  accs = ", ".join(f"{d}: {a:.3f}" for d, a in
                   sorted(results["accuracy_by_delay"].items(), key=lambda kv: int(kv[0])))
  print(f"{workdir}: fine-tuned ({which}), report accuracy by delay {{{accs}}}")


def _compare():
  steps, mu = _finetune_flags("compare")
  if _DRY_RUN.value:
    _dry_run("compare", _dry_trained("compare", _PARENT.value, "--parent"),
             parent=_PARENT.value, out=_OUT.value, steps=steps, speed_weight=mu,
             **_sp_settings())
  pipeline = _import_quietly()
  from haviv_tf.analysis import control  # pylint: disable=g-import-not-at-top
  from haviv_tf.probes import slow_points  # pylint: disable=g-import-not-at-top
  sp_config = _sp_config(slow_points, pipeline.trained_config(_PARENT.value))
  out = _OUT.value or control.default_out(_PARENT.value)
  _lock(out)
  _watch(out, tensorboard=True)
  control.compare(_PARENT.value, out, steps, mu, sp_config=sp_config, recipe=_SP_RECIPE.value,
                  overwrite=_OVERWRITE.value)
  print(open(os.path.join(out, control.COMPARE_MD)).read().rstrip())


def _study():
  import time  # pylint: disable=g-import-not-at-top
  if not _WORKDIR.value:
    raise UsageError("--mode=study needs --workdir=DIR, the sweep's root")
  from haviv_tf.study import runner  # pylint: disable=g-import-not-at-top
  from haviv_tf.study import sweep  # pylint: disable=g-import-not-at-top
  root = _WORKDIR.value
  if os.path.exists(os.path.join(root, sweep.GRID_FILE)):
    name, specs = sweep.load_grid(root)
    if _GRID.value and _GRID.value != name:
      raise UsageError(f"{root} holds the {name!r} grid; use another --workdir for "
                       f"{_GRID.value!r}")
  else:
    name = _GRID.value or "small"
    specs = sweep.expand(sweep.get_grid(name))
    _check_report_out(root, name)
    if not _DRY_RUN.value:
      sweep.write_grid(specs, root, name)
  _check_report_out(root, name)
  _dry_run("study", workdir=root, grid=name, networks=len(specs), workers=_WORKERS.value,
           threads=_THREADS.value, out=_OUT.value)
  _watch(root, tensorboard=True)
  _watch(_OUT.value)
  t0 = time.time()
  results = runner.run_local(specs, root, _WORKERS.value, _THREADS.value,
                            _OVERRIDES["data_dir"].value or "")
  wall = time.time() - t0
  failed = [r for r in results if r["status"] not in ("done", "skipped")]
  _import_quietly()
  from haviv_tf.study import report  # pylint: disable=g-import-not-at-top
  ran = sum(r["status"] == "done" for r in results)
  # The launcher's own wall time covers the grid only if it ran every run from the start.
  whole = ran == len(results) and not any(r.get("resumed") for r in results)
  summary = report.build(root, _OUT.value, wall_seconds=wall if whole else None)
  held = ", ".join(f"({k}) {'yes' if v['held'] else ('n/a' if v['held'] is None else 'no')}"
                   for k, v in summary["claims"].items())
  print(f"{os.path.join(_OUT.value or root, report.REPORT_MD)}: {summary['analysed']} of "
        f"{summary['runs']} networks; claims held: {held}")
  if failed:
    raise artifacts.RunError(f"{len(failed)} run(s) failed: " + "; ".join(
        f"{r['name']} at {r.get('failed_step', r['status'])}" for r in failed))


def _check_report_out(root, grid_name):
  """--out of --mode=study holding another grid's report is not written over without
  --overwrite (the report of this grid is rebuilt from its runs, as in its root)."""
  if not _OUT.value or _OVERWRITE.value:
    return
  path = os.path.join(_OUT.value, "report.json")
  if not os.path.exists(path):
    return
  stored = artifacts.read_json(path)
  here = os.path.basename(os.path.abspath(root))
  if (stored.get("grid"), stored.get("root")) != (grid_name, here):
    raise UsageError(f"{_OUT.value} holds the report of grid {stored.get('grid')!r} in "
                     f"{stored.get('root')!r}, not of {grid_name!r} in {here!r}; --overwrite "
                     "replaces it, or use another --out")


_HANDLERS = {"train": _train, "evaluate": _evaluate, "memory": _memory,
             "slow_points": _slow_points,
             "export": _export, "analyze": _analyze, "finetune": _finetune, "compare": _compare,
             "backtrack": _backtrack, "study": _study}
MODES = tuple(_HANDLERS)


_LOCKS = contextlib.ExitStack()  # workdir locks held until main() returns


def _lock(workdir):
  """Holds the exclusive lock on `workdir` until the command ends (RunError if another process
  holds it)."""
  _LOCKS.enter_context(artifacts.workdir_lock(workdir))


def _import_quietly():
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
  trials.set_sampler_nice(_SAMPLER_NICE.value)
  return pipeline


def _exit_now(status):
  """Ends the process with `status`, skipping interpreter finalization.

  When training stops mid-epoch (a non-finite loss), tf.data's trial-sampler threads
  (tf.numpy_function) are still live, and TensorFlow's clean-up at interpreter shutdown can
  deadlock on them (seen: the process hangs in garbage collection after printing its error).
  By now every file the command wrote is closed and its workdir lock released.
  """
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(status)  # pylint: disable=protected-access


class _OwnInfoOnly:
  """absl handler filter: INFO lines of haviv_tf itself (progress), warnings of everything."""

  def __init__(self):
    self.package = os.path.dirname(os.path.abspath(__file__)) + os.sep

  def filter(self, record):
    return (record.levelno >= logging.converter.STANDARD_WARNING
            or os.path.abspath(record.pathname).startswith(self.package))


def main(argv):
  if not flags.FLAGS["verbosity"].present:
    # Progress lines are haviv_tf's INFO lines; TF's own (checkpoint sharding, ...) would drown
    # them, so they are filtered out. -v 0 shows everything.
    logging.set_verbosity(logging.INFO)
    logging.get_absl_handler().addFilter(_OwnInfoOnly())
  try:
    with _LOCKS:
      _run(argv)
  except config_lib.InputError as e:  # bad flags, config, data or workdir
    print(f"error: {e}", file=sys.stderr)
    _exit_now(1)
  except KeyboardInterrupt:
    print("interrupted; rerun the same command to resume from the last checkpoint",
          file=sys.stderr)
    sys.exit(130)
  except Exception:  # pylint: disable=broad-except
    traceback.print_exc()
    print(BUG_MESSAGE, file=sys.stderr)
    sys.exit(BUG_EXIT_STATUS)


def _parse(argv):
  """absl's parser, but a bad flag is one line on stderr (no usage dump)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  except SystemExit as e:  # absl's --help flags print the help, then exit 1: asked for, it is 0
    if e.code == 1 and _HELP_FLAGS & set(argv[1:]):
      sys.exit(0)
    raise


_HELP_FLAGS = {"-h", "-?", "--help", "--helpshort", "--helpfull", "--helpxml"}


def run():
  app.run(main, flags_parser=_parse)


if __name__ == "__main__":
  run()
