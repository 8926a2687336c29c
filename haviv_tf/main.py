"""haviv_tf: train, evaluate and analyse the paper's RNNs; one --mode per task.

  python3 -m haviv_tf.main --workdir=runs/first      (offline: the quick preset on the MNIST
                                                     sample shipped with the package)
  python3 -m haviv_tf.main --protocol=vocu --dataset=mnist --arch=gru --preset=paper
      --seed=0 --workdir=runs/vocu_gru --data_dir=DIR   (the paper's network: 140,000 steps)

Every config field is also a flag (e.g. --learning_rate, --batch_size, --eval_delays=5,10,19);
its help says what it is, its unit and range, and each preset's default. --steps is
--train_steps. --dry_run checks a command and prints the resolved config without running it.
Bad input ends with one `error: ...` line and exit status 1; an internal error (a bug) prints
its traceback and ends with exit status 2. Every mode, what it needs and the page with its
flags and examples: docs/command_line.md, "Modes".
"""
# (For developers: the flags are defined here; each mode is a function of the parsed flags in
# haviv_tf/cli/: train_modes, analysis_modes, study_modes; cli/common.py what they share.)

import dataclasses
import os
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ start-up chatter off stderr

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

from haviv_tf.base import config as config_lib
from haviv_tf.cli import analysis_modes
from haviv_tf.cli import common
from haviv_tf.cli import study_modes
from haviv_tf.cli import train_modes
from haviv_tf.study import sweep

_TRAINING_MODES = ("train", "finetune", "compare")  # the modes that train in this process
BUG_MESSAGE = ("internal error: the traceback above is a bug in haviv_tf or a library it uses, "
               "not a problem with the input; please report it with the command that ran")
BUG_EXIT_STATUS = 2

_MODE = flags.DEFINE_string(
    "mode", "train",
    "train: train (or resume), then evaluate, find slow points and export; evaluate / "
    "slow_points / export: that step alone on the trained run in --workdir; memory: evaluate "
    "--workdir at growing delays until its memory fades (--max_delay) and store its memory "
    "half-lives; correlate (earlier: analyze): slow-point speed vs. "
    "memory across the runs in --workdirs, written to --out; finetune: fine-tune the run in "
    "--parent (--finetune=control|slow_points|center_mass) into --workdir (at the parent's "
    "learning rate unless --learning_rate is given); compare: all three "
    "fine-tunings of --parent and their comparison in --out; backtrack: follow the final slow "
    "points of --workdir back through its training snapshots; sweep (earlier: study): run (or "
    "resume) the "
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
_WORKDIRS = flags.DEFINE_list("workdirs", None, "Runs to compare (--mode=correlate).")
_OUT = flags.DEFINE_string("out", None, "Output directory of --mode=correlate and "
                            "--mode=compare.")
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
    "than --sp_rel_tol (relative) over this many of its updates (positive integer; default "
    "500 with --sp_recipe=default; the paper recipe runs its iterations without this stop).")
_SP_REL_TOL = flags.DEFINE_float("sp_rel_tol", None,
                                 "Slow-point search: see --sp_window (positive; default 1e-3 "
                                 "with --sp_recipe=default).")
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
_GRID = flags.DEFINE_string(
    "grid", None, f"--mode=sweep: the grid of networks, one of {', '.join(sweep.GRIDS)} "
    "(docs/study.md; default: the grid already in --workdir, else small).")
_WORKERS = flags.DEFINE_integer("workers", 1, "--mode=sweep: parallel worker processes "
                                f"(1 to {common.MAX_WORKERS}).")
_THREADS = flags.DEFINE_integer("threads", 0, "--mode=sweep: TensorFlow threads per worker "
                                f"(0 to {common.MAX_THREADS}; 0: cores // workers).")
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
    f"many logical devices, one replica each (0 to {common.MAX_THREADS}; 0: leave the CPU as "
    "it is, one device).")
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

# The flags defined above (not absl's own); every Config field is a flag of its own below.
_OWN_FLAGS = ("mode", "protocol", "dataset", "arch", "preset", "workdir", "steps", "workdirs",
              "out", "sp_max_iters", "sp_q_tol", "sp_recipe", "sp_window", "sp_rel_tol",
              "max_delay", "sp_dir", "parent", "merge_frac", "grid", "workers", "threads",
              "overwrite", "strategy", "cpu_devices", "sampler_nice", "dry_run", "tpu")
_OVERRIDES = {}
for _field in dataclasses.fields(config_lib.Config):
  if _field.name in common.EXPLICIT:
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


# One handler per mode (haviv_tf/cli/). Each checks its own flags before TensorFlow loads (bad
# flags fail fast), then makes one library call and prints its one-line summary.
_HANDLERS = {"train": train_modes.train, "evaluate": analysis_modes.evaluate,
             "memory": analysis_modes.memory, "slow_points": analysis_modes.slow_points,
             "export": analysis_modes.export, "backtrack": analysis_modes.backtrack,
             "finetune": train_modes.finetune, "compare": train_modes.compare,
             "correlate": study_modes.correlate, "sweep": study_modes.sweep}
MODES = tuple(_HANDLERS)
# Earlier names of modes, still accepted: analyze (a word for any analysis) is correlate, study
# (the package's cross-network floor) is sweep.
MODE_ALIASES = {"analyze": "correlate", "study": "sweep"}


def _args():
  """The parsed flags as a cli.common Args (the modes never read FLAGS)."""
  values = {name: flags.FLAGS[name].value for name in _OWN_FLAGS}
  values["mode"] = MODE_ALIASES.get(values["mode"], values["mode"])
  overrides = {name: holder.value for name, holder in _OVERRIDES.items()}
  present = [n for n in list(_OWN_FLAGS) + list(_OVERRIDES) if flags.FLAGS[n].present]
  return common.make_args(values, overrides, present)


def _run(argv):
  if len(argv) > 1:
    raise common.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  args = _args()
  mode = args.mode
  if mode not in _HANDLERS:
    raise common.UsageError(f"unknown mode {_MODE.value!r}; valid: {', '.join(MODES)} (or the "
                            f"earlier names {', '.join(MODE_ALIASES)})")
  if mode != "train" and any(n in args.present for n in ("strategy", "cpu_devices", "tpu")):
    raise common.UsageError("--strategy, --cpu_devices and --tpu go with --mode=train")
  if mode not in _TRAINING_MODES and "sampler_nice" in args.present:
    raise common.UsageError(
        f"--sampler_nice goes with --mode={', --mode='.join(_TRAINING_MODES)}")
  if not 0 <= args.sampler_nice <= config_lib.MAX_NICE:
    raise common.UsageError(f"--sampler_nice must be in [0, {config_lib.MAX_NICE}], got "
                            f"{args.sampler_nice}")
  common.check_sp_flags(args)
  common.check_numeric_flags(args)
  try:
    _HANDLERS[mode](args)
  except common.DryRunDone:
    return
  common.say_written()


def main(argv):
  if not flags.FLAGS["verbosity"].present:
    # Progress lines are haviv_tf's INFO lines; TF's own (checkpoint sharding, ...) would drown
    # them, so they are filtered out. -v 0 shows everything.
    logging.set_verbosity(logging.INFO)
    logging.get_absl_handler().addFilter(common.OwnInfoOnly())
  try:
    with common.LOCKS:
      _run(argv)
  except config_lib.InputError as e:  # bad flags, config, data or workdir
    print(f"error: {e}", file=sys.stderr)
    common.exit_now(1)
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
