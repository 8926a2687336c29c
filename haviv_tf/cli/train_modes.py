"""The modes that train: --mode=train (then the per-network analysis), finetune, compare."""

import os

from haviv_tf.base import config as config_lib
from haviv_tf.cli import common


def train(args):
  if args.overrides["finetune"]:
    raise common.UsageError("--finetune goes with --mode=finetune --parent=DIR (a trained run)")
  cfg = common.config_from_args(args)
  if args.strategy not in config_lib.STRATEGIES:
    raise common.UsageError(f"unknown strategy {args.strategy!r}; valid: "
                            f"{', '.join(config_lib.STRATEGIES)}")
  if args.cpu_devices < 0:
    raise common.UsageError(f"--cpu_devices must be >= 0, got {args.cpu_devices}")
  workdir = args.workdir or common.default_workdir(cfg)
  if args.dry_run:
    if args.strategy != "default" or args.cpu_devices or args.tpu:
      dry_strategy(args, cfg)
    if os.path.exists(workdir):  # as the real run: a different run there needs --overwrite
      common.import_quietly(args)
      from haviv_tf.training import train  # pylint: disable=g-import-not-at-top
      train.check_workdir(cfg, workdir, args.overwrite)
    common.dry_run(args, "train", cfg, workdir=workdir, strategy=args.strategy,
                   sp_recipe=args.sp_recipe)
  pipeline = common.import_quietly(args)
  from haviv_tf.training import distribute  # pylint: disable=g-import-not-at-top
  from haviv_tf.probes import slow_points  # pylint: disable=g-import-not-at-top
  strategy = distribute.make_strategy(args.strategy, args.cpu_devices, args.tpu)
  if distribute.is_chief(strategy):  # other multi-worker tasks only read the workdir
    common.lock(workdir)
    common.watch(workdir, tensorboard=True)
  results = pipeline.train_and_analyze(cfg, workdir, overwrite=args.overwrite,
                                       sp_config=common.sp_config(args, slow_points, cfg),
                                       strategy=strategy, recipe=args.sp_recipe)
  if not distribute.is_chief(strategy):
    kind, index = distribute.task_of(strategy)
    print(f"{workdir}: {kind} {index} finished training; the chief writes the results")
    return
  accs = ", ".join(f"{d}: {a:.3f}" for d, a in
                   sorted(results["accuracy_by_delay"].items(), key=lambda kv: int(kv[0])))
  print(f"{workdir}: step {results['step']}, report accuracy by delay {{{accs}}}")


def dry_strategy(args, cfg):
  """--dry_run's checks of --strategy, --cpu_devices and --tpu: the real run's, short of
  joining a multi-worker cluster (TF_CONFIG is parsed and checked) or connecting to a TPU."""
  common.import_quietly(args)
  from haviv_tf.training import distribute  # pylint: disable=g-import-not-at-top
  from haviv_tf.training import checkpoints  # pylint: disable=g-import-not-at-top
  name = args.strategy
  if name in ("default", "mirrored"):
    strategy = distribute.make_strategy(name, args.cpu_devices, args.tpu)
    distribute.check_divisible(strategy, cfg.batch_size, checkpoints.speed_noise_frames(cfg))
    return
  distribute.check_name(name)
  if args.cpu_devices:
    raise common.UsageError("--cpu_devices goes with --strategy=mirrored")
  if args.tpu and name != "tpu":
    raise common.UsageError("--tpu goes with --strategy=tpu")
  if name == "multi_worker":
    distribute.tf_config()


def finetune_flags(args, mode, takes=("finetune", "speed_weight", "train_steps")):
  """(steps, speed weight) of --mode=finetune / compare, whose config comes from --parent.

  `takes`: the config flags the mode accepts; any other is refused by name."""
  if not args.parent:
    raise common.UsageError(f"--mode={mode} needs --parent=DIR, a trained run")
  ignored = [n for n, v in args.overrides.items() if v is not None and n not in takes]
  ignored += [n for n in common.EXPLICIT if (n in args.present)]
  if ignored:
    raise common.UsageError(
        f"--mode={mode} takes its config from --parent; drop --{', --'.join(ignored)}")
  steps = args.steps if args.steps is not None else args.overrides["train_steps"]
  if steps is not None and steps <= 0:
    raise common.UsageError(f"--steps must be a positive integer, got {steps}")
  mu = args.overrides["speed_weight"]
  if mu is not None and not 0 <= mu < float("inf"):
    raise common.UsageError(f"--speed_weight must be a non-negative finite number, got {mu}")
  return steps, mu


def finetune(args):
  steps, mu = finetune_flags(args, "finetune",
                             ("finetune", "speed_weight", "train_steps", "learning_rate"))
  rate = args.overrides["learning_rate"]  # None: the parent's
  if rate is not None and not 0 < rate < float("inf"):
    raise common.UsageError(f"--learning_rate must be a positive finite number, got {rate}")
  which = args.overrides["finetune"]
  if which not in config_lib.FINETUNE_MODES:
    raise common.UsageError(f"--mode=finetune needs --finetune, one of "
                            f"{', '.join(config_lib.FINETUNE_MODES)}")
  if args.dry_run:
    common.dry_run(args, "finetune", common.dry_trained(args, "finetune", args.parent, "--parent"),
             parent=args.parent, finetune=which, workdir=args.workdir, steps=steps,
             speed_weight=mu, learning_rate=rate, **common.sp_settings(args))
  pipeline = common.import_quietly(args)
  from haviv_tf.analysis import control  # pylint: disable=g-import-not-at-top
  from haviv_tf.probes import slow_points  # pylint: disable=g-import-not-at-top
  # The recipe's step counts scale with the parent's training (paper recipe, quick preset).
  sp_config = common.sp_config(args, slow_points, pipeline.trained_config(args.parent))
  workdir = args.workdir or os.path.join(control.default_out(args.parent), which)
  common.lock(workdir)
  common.watch(workdir, tensorboard=True)
  results = control.finetune(args.parent, which, workdir, steps, mu, args.overwrite,
                             sp_config=sp_config, recipe=args.sp_recipe, learning_rate=rate)
  accs = ", ".join(f"{d}: {a:.3f}" for d, a in
                   sorted(results["accuracy_by_delay"].items(), key=lambda kv: int(kv[0])))
  print(f"{workdir}: fine-tuned ({which}), report accuracy by delay {{{accs}}}")


def compare(args):
  steps, mu = finetune_flags(args, "compare")
  if args.dry_run:
    common.dry_run(args, "compare", common.dry_trained(args, "compare", args.parent, "--parent"),
             parent=args.parent, out=args.out, steps=steps, speed_weight=mu,
             **common.sp_settings(args))
  pipeline = common.import_quietly(args)
  from haviv_tf.analysis import control  # pylint: disable=g-import-not-at-top
  from haviv_tf.probes import slow_points  # pylint: disable=g-import-not-at-top
  sp_config = common.sp_config(args, slow_points, pipeline.trained_config(args.parent))
  out = args.out or control.default_out(args.parent)
  common.lock(out)
  common.watch(out, tensorboard=True)
  control.compare(args.parent, out, steps, mu, sp_config=sp_config, recipe=args.sp_recipe,
                  overwrite=args.overwrite)
  print(open(os.path.join(out, control.COMPARE_MD)).read().rstrip())
