"""A sweep's finished runs as small files in the repository, and back into a sweep root.

  # copy the result files of every finished run (and the grid) from a sweep root
  python3 experiments/grid_files.py save --root=runs/medium --dest=experiments/study_medium/runs
  # on another machine: put them into a new sweep root, so that the sweep skips those runs
  # and its report covers them
  python3 experiments/grid_files.py restore --dest=experiments/study_medium/runs --root=runs/medium
  # with the trained networks too (--weights on save and restore): a restored run is
  # re-evaluated, re-searched and fine-tuned from the repository alone
  python3 experiments/grid_files.py save --weights --root=runs/paper_mnist \
      --dest=experiments/study_paper/runs
  python3 experiments/grid_files.py restore --weights --dest=experiments/study_paper/runs \
      --root=runs/paper_mnist --data_dir=DATA
  python3 -m haviv_tf.main --mode=evaluate --workdir=runs/paper_mnist/<run> --data_dir=DATA

A run counts as finished when its sweep_done.json exists (every step of the run succeeded).
Saved per run: config.json, results.json, backtrack.json and sweep_done.json, the slow points
(slow_points*.npz and each further recipe's slow_points_<recipe>/), and of each fine-tuning
<name>_finetune/<mode>/{config,results}.json and compare.json: everything the report reads.
With --weights, also the final network: weights/final (its layers and step, no optimizer
state; the history-snapshot format), weights/check.json (its report accuracy on fixed trials of
the shipped MNIST sample, which tests/committed_networks_test.py recomputes) and its exported
SavedModel (saved_model/). `restore
--weights` turns weights/final into the run's training checkpoint (a fresh optimizer at the
final step), so evaluation, the slow-point search, export and fine-tuning (which starts a
fresh Adam, as the authors' does) read the network exactly; training further would not
continue the original optimizer. Other checkpoints, history snapshots and logs are not saved.
Files are copied atomically; `restore` never overwrites a file that exists in the root.
`save` takes the machine's paths out of the JSON records it copies (experiments/relative_paths.py:
the recorded data_dir becomes "", workdirs under the root become relative to it), so that the
saved files can be committed; pass --data_dir to the modes that need the data.
"""

import argparse
import glob
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from haviv_tf.study import sweep  # pylint: disable=g-import-not-at-top

sys.path.insert(0, HERE)
import relative_paths  # pylint: disable=g-import-not-at-top,wrong-import-position

RUN_FILES = ("config.json", "results.json", "backtrack.json", sweep.DONE_FILE)
RUN_PATTERNS = ("slow_points*.npz", sweep.SLOW_POINTS_DIR_PREFIX + "*/*.npz",
                sweep.SLOW_POINTS_DIR_PREFIX + "*/*.json")
FINETUNE_FILES = ("compare.json", "*/config.json", "*/results.json")
WEIGHTS = os.path.join("weights", "final")
SAVED_MODEL = "saved_model"
# A re-check that needs no data set beyond the package: the saved network's report accuracy on
# trials made from the shipped MNIST sample's test images (and its noise statistics), with a
# fixed seed, recorded at save time and recomputed by tests/committed_networks_test.py.
CHECK = os.path.join("weights", "check.json")
CHECK_DATASET = "mnist_sample"
CHECK_DELAY = 10
CHECK_TRIALS = 500
CHECK_SEED = 20_190_101


def _copy(src, dst, overwrite, portable_root=None):
  """Copies src to dst atomically (not over an existing dst unless `overwrite`); with
  `portable_root`, a JSON file is written with the machine's paths taken out."""
  if os.path.exists(dst) and not overwrite:
    return False
  os.makedirs(os.path.dirname(dst), exist_ok=True)
  tmp = dst + ".tmp"
  if portable_root is not None and src.endswith(".json"):
    with open(src, encoding="utf-8") as f:
      obj = relative_paths.portable(json.load(f), portable_root)
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")
  else:
    shutil.copyfile(src, tmp)
  os.replace(tmp, dst)
  return True


def _files(base, name, weights=False):
  out = [os.path.join(name, f) for f in RUN_FILES if os.path.exists(os.path.join(base, name, f))]
  patterns = RUN_PATTERNS + ((WEIGHTS + ".*", CHECK, SAVED_MODEL + "/**") if weights else ())
  for pattern in patterns:
    for path in sorted(glob.glob(os.path.join(base, name, pattern), recursive=True)):
      if os.path.isfile(path):
        out.append(os.path.relpath(path, base))
  for pattern in FINETUNE_FILES:
    for path in sorted(glob.glob(os.path.join(base, name + "_finetune", pattern))):
      out.append(os.path.relpath(path, base))
  return out


def write_final_weights(workdir, data_dir=""):
  """Writes workdir/weights/final from its newest checkpoint (unless it exists); returns it."""
  from haviv_tf.analysis import pipeline  # pylint: disable=g-import-not-at-top
  from haviv_tf.training import checkpoints
  prefix = os.path.join(workdir, WEIGHTS)
  if not os.path.exists(prefix + ".index"):
    cfg = pipeline.trained_config(workdir)
    run = checkpoints.Run(cfg, workdir, _source(cfg, data_dir).frame_shape)
    run.restore()
    checkpoints.write_weights(run.model, run.step, prefix)
  return prefix


def check_accuracy(workdir) -> dict:
  """The network in workdir/weights/final evaluated on the shipped sample (see CHECK)."""
  from haviv_tf.base import artifacts  # pylint: disable=g-import-not-at-top,g-multiple-import
  from haviv_tf.task import datasets
  from haviv_tf.probes import evaluation
  from haviv_tf.models import network
  from haviv_tf.training import checkpoints
  from haviv_tf.task import trials
  cfg = artifacts.recorded_config(workdir)
  if cfg is None:
    raise artifacts.RunError(f"{workdir} holds no haviv_tf run (no config.json)")
  if cfg.dataset not in ("mnist", "mnist_sample"):
    raise artifacts.RunError(f"{workdir}: the re-check uses the shipped MNIST sample; a "
                             f"{cfg.dataset} network has none")
  source = datasets.load(CHECK_DATASET)
  model = network.build(cfg, source.frame_shape)
  step = checkpoints.read_snapshot(model, os.path.join(workdir, WEIGHTS))
  ev = evaluation.Evaluator(model, trials.generator_for(source, "test", cfg), cfg.seq_len)
  res = ev.evaluate([CHECK_DELAY], CHECK_TRIALS, CHECK_SEED)
  return dict(dataset=CHECK_DATASET, delay=CHECK_DELAY, trials=CHECK_TRIALS, seed=CHECK_SEED,
              step=step, accuracy=res["accuracy_by_delay"][str(CHECK_DELAY)],
              per_class_accuracy=res["per_class_accuracy_by_delay"][str(CHECK_DELAY)])


def write_check(workdir) -> dict:
  """Writes workdir/weights/check.json (check_accuracy) unless it exists; returns it."""
  from haviv_tf.base import artifacts  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, CHECK)
  if os.path.exists(path):
    return artifacts.read_json(path)
  out = check_accuracy(workdir)
  artifacts.write_json(path, out)
  return out


def _source(cfg, data_dir):
  from haviv_tf.task import datasets  # pylint: disable=g-import-not-at-top
  return datasets.apply_recipe(datasets.load(cfg.dataset, data_dir or cfg.data_dir),
                               cfg.data_recipe)


def weights_to_checkpoint(workdir, data_dir=""):
  """Makes workdir/weights/final the run's checkpoint (if it has none); returns the step or None."""
  from haviv_tf.base import artifacts  # pylint: disable=g-import-not-at-top
  from haviv_tf.training import checkpoints
  prefix = os.path.join(workdir, WEIGHTS)
  if checkpoints.checkpoint_paths(workdir) or not os.path.exists(prefix + ".index"):
    return None
  cfg = artifacts.recorded_config(workdir)
  return checkpoints.checkpoint_from_weights(cfg, workdir, prefix,
                                             _source(cfg, data_dir).frame_shape)


def transfer(src_root, dst_root, overwrite, weights=False, data_dir=""):
  """Copies the files of src_root's finished runs to dst_root; returns (runs, total, files)."""
  grid = os.path.join(src_root, sweep.GRID_FILE)
  if not os.path.exists(grid):
    raise SystemExit(f"error: {src_root} holds no sweep ({sweep.GRID_FILE} missing)")
  _, specs = sweep.load_grid(src_root)
  runs = files = 0
  for spec in specs:
    if not sweep.is_done(spec, src_root):
      continue
    runs += 1
    if weights and overwrite:  # save: the final weights are written from the checkpoint
      write_final_weights(os.path.join(src_root, spec.name), data_dir)
      if spec.dataset in ("mnist", "mnist_sample"):
        write_check(os.path.join(src_root, spec.name))
    for rel in _files(src_root, spec.name, weights):
      files += _copy(os.path.join(src_root, rel), os.path.join(dst_root, rel), overwrite,
                     src_root if overwrite else None)
  _copy(grid, os.path.join(dst_root, sweep.GRID_FILE), overwrite, src_root if overwrite else None)
  if weights and not overwrite:  # restore: the final weights become the training checkpoint
    for spec in specs:
      if sweep.is_done(spec, src_root):
        weights_to_checkpoint(os.path.join(dst_root, spec.name), data_dir)
  return runs, len(specs), files


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("cmd", choices=("save", "restore"))
  p.add_argument("--root", required=True, help="the sweep root (--workdir of --mode=sweep)")
  p.add_argument("--dest", required=True, help="the folder in the repository")
  p.add_argument("--weights", action="store_true", help="also the final network: its weights "
                 "(no optimizer state) and SavedModel; restore makes them the run's checkpoint")
  p.add_argument("--data_dir", default="", help="with --weights: where the runs' data set is "
                 "(default: the data_dir each run recorded)")
  args = p.parse_args(argv)
  from haviv_tf.base import artifacts  # pylint: disable=g-import-not-at-top
  from haviv_tf.task import datasets
  try:
    if args.cmd == "save":
      runs, total, files = transfer(args.root, args.dest, True, args.weights, args.data_dir)
    else:
      runs, total, files = transfer(args.dest, args.root, False, args.weights, args.data_dir)
  except (artifacts.RunError, datasets.DataError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"{args.cmd}: {runs} of {total} runs finished; {files} files copied")
  return 0


if __name__ == "__main__":
  sys.exit(main())
