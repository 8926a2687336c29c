"""What follows training in a workdir: long-delay evaluation, slow points, export, figures."""

import dataclasses
import json
import os

from absl import logging
import numpy as np
import tensorflow as tf

from haviv_tf.base import artifacts
from haviv_tf.base import config as config_lib
from haviv_tf.task import datasets
from haviv_tf.training import distribute
from haviv_tf.probes import evaluation
from haviv_tf.analysis import export
from haviv_tf.probes import memory
from haviv_tf.analysis import plotting
from haviv_tf.probes import predictors
from haviv_tf.probes import rollouts
from haviv_tf.probes import slow_points as slow_points_lib
from haviv_tf.base import summaries
from haviv_tf.training import checkpoints
from haviv_tf.training import train
from haviv_tf.task import trials

SLOW_POINTS_FILE = "slow_points.npz"           # every point searched; rows 0..9 from class centres
UNIQUE_SLOW_POINTS_FILE = "slow_points_unique.npz"
SAVED_MODEL_DIR = "saved_model"
ACCURACY_PNG = "accuracy_vs_delay.png"
TRAJECTORIES_PNG = "trajectories_pca.png"
ANALYSIS_TB = os.path.join(train.TENSORBOARD_DIR, "analysis")


def trained_config(workdir: str) -> config_lib.Config:
  """The config of the trained run in `workdir`, without loading model or data.

  Raises:
    artifacts.RunError: no run, or no checkpoint, in `workdir`.
  """
  cfg = artifacts.recorded_config(workdir)
  if cfg is None:
    raise artifacts.RunError(f"{workdir} holds no haviv_tf run (no {artifacts.CONFIG_FILE}); "
                             "train one first with --mode=train")
  if not checkpoints.checkpoint_paths(workdir):
    if os.path.exists(os.path.join(workdir, "weights", "final.index")):  # a committed run
      raise artifacts.RunError(
          f"{workdir} holds a committed network (weights/final), not a checkpoint; restore it "
          "into a workdir first: python3 experiments/grid_files.py restore --weights "
          f"--dest={os.path.dirname(os.path.normpath(workdir))} --root=DIR")
    raise artifacts.RunError(f"{workdir} has no trained model (no checkpoint); train it first "
                             "with --mode=train")
  return cfg


def restore(workdir: str):
  """(config, source, run) of the trained model in `workdir`.

  Raises:
    artifacts.RunError: no run, or no checkpoint, in `workdir`.
    datasets.DataError: the run's data set cannot be loaded.
  """
  cfg = trained_config(workdir)
  source = datasets.apply_recipe(datasets.load(cfg.dataset, cfg.data_dir), cfg.data_recipe)
  run = checkpoints.Run(cfg, workdir, source.frame_shape)
  run.restore()
  return cfg, source, run


def _tb_writer(workdir):
  return tf.summary.create_file_writer(os.path.join(workdir, ANALYSIS_TB))


def _tb_image(writer, name, fig, step):
  png = plotting.png_bytes(fig)
  with writer.as_default(step=step):
    tf.summary.image(name, tf.image.decode_png(png)[None], step=step,
                     description=summaries.describe(name))


def _tb_scalar(tag, value):
  tf.summary.scalar(tag, value, description=summaries.describe(tag))


EVAL_TABLES = ("accuracy_by_delay", "full_trial_accuracy_by_delay", "per_class_accuracy_by_delay",
               "per_class_full_trial_accuracy_by_delay", "trials_per_delay",
               "report_confusion_by_delay")   # shown x reported counts (where a memory goes)


def evaluate(cfg, run, source, workdir, delays=None, num_trials=None, overwrite=False,
             until_chance=False, log=print) -> dict:
  """Accuracy vs. delay on test trials -> results.json, accuracy_vs_delay.png, TensorBoard.

  A delay already in results.json for this network (same step) is not measured again with as
  many trials (the trials are the same: they are fixed by the run's seed and the delay), and is
  kept, saying so, when this call has fewer trials, unless `overwrite`; more trials replace it.
  Delays measured now are added beside the stored ones. With `until_chance` the delays are
  taken in order and the evaluation stops after the first beyond a training trial at which
  report accuracy is within noise of chance (memory.at_chance). The memory half-life (memory.half_lives) of the whole
  stored curve is recomputed into results.json["memory_half_life"] when it has two delays.
  """
  delays = tuple(delays or cfg.eval_delays)
  num_trials = int(num_trials or cfg.eval_trials)
  path = os.path.join(workdir, artifacts.RESULTS_FILE)
  previous = artifacts.read_json(path) if os.path.exists(path) else {}
  same = previous.get("step") == run.step  # the same network: its tables are kept
  stored = {k: dict(previous.get(k) or {}) if same else {} for k in EVAL_TABLES}
  evaluator = evaluation.for_config(run.model, source, cfg)
  for i, delay in enumerate(delays):
    key, old = str(int(delay)), stored["trials_per_delay"].get(str(int(delay)))
    if old is not None and (old == num_trials or (old > num_trials and not overwrite)):
      if old > num_trials:
        log(f"delay {key}: kept the stored {old}-trial accuracy (this evaluation has "
            f"{num_trials} trials; --overwrite replaces it)")
    else:
      measured = evaluator.evaluate((delay,), num_trials, cfg.seed, confusion=True)
      for k in EVAL_TABLES:
        stored[k][key] = measured[k][key]
      if old is not None:
        log(f"delay {key}: replaced the stored {old}-trial accuracy with {num_trials} trials")
    n, acc = stored["trials_per_delay"][key], stored["accuracy_by_delay"][key]
    logging.info("evaluated delay %s (%d of %d): report accuracy %.3f (%d trials)", key, i + 1,
                 len(delays), acc, n)
    if until_chance and int(delay) >= cfg.seq_len and memory.at_chance(acc, n):
      log(f"delay {key}: report accuracy {acc:.3f} is within noise of chance; longer delays "
          "not evaluated")
      break
  results = dict(stored, step=run.step)
  try:
    results["memory_half_life"] = memory.half_lives(results, cfg.seq_len - 1)
  except ValueError:  # one delay only, or none within a training trial: no half-life yet
    results["memory_half_life"] = None
  artifacts.update_json(path, results)
  _accuracy_figures(cfg, run, workdir, results)
  return results


def _accuracy_figures(cfg, run, workdir, results):
  """accuracy_vs_delay.png and the evaluation's TensorBoard scalars and image."""
  keys = sorted(results["accuracy_by_delay"], key=int)
  half = (results.get("memory_half_life") or {}).get("overall")
  fig = plotting.accuracy_vs_delay({
      "report step": ([int(k) for k in keys], [results["accuracy_by_delay"][k] for k in keys]),
      "full trial": ([int(k) for k in keys],
                     [results["full_trial_accuracy_by_delay"][k] for k in keys]),
  }, title=f"{cfg.protocol} {cfg.arch} {cfg.dataset} (seed {cfg.seed}), step {run.step}",
      half_life=half)
  plotting.save_png(fig, os.path.join(workdir, ACCURACY_PNG))
  writer = _tb_writer(workdir)
  with writer.as_default(step=run.step):
    for k in keys:
      _tb_scalar(f"eval/report_accuracy_delay_{k}", results["accuracy_by_delay"][k])
      _tb_scalar(f"eval/full_trial_accuracy_delay_{k}",
                 results["full_trial_accuracy_by_delay"][k])
    if half and half.get("half_life") is not None:
      _tb_scalar("eval/memory_half_life", half["half_life"])
  _tb_image(writer, "eval/accuracy_vs_delay", fig, run.step)
  writer.flush()


def find_slow_points(cfg, run, source, workdir, sp_config=None, num_sampled=40,
                     trials_per_class=100, recipe="default", diag_config=None,
                     out_dir=None) -> dict:
  """Slow points from the class centres (and sampled states) -> npz files, results, figures.

  recipe "default": the search starts from each class's centre of mass 15 steps after its
  stimulus (test trials, fresh noise, read out by a noise frame plus trigger over the 10 class
  logits) and from `num_sampled` states sampled from noise trajectories; LSTM c is kept within
  the range the trajectories reach (SlowPointConfig.lstm_c). recipe "paper": the authors'
  centres (slow_points.paper_class_centres) and search (slow_points.recipe_config), from the
  centres only (BlackBoxMNIST.py L245-256: the variable h holds the 10 centres).
  slow_points.npz keeps every point in search order (rows 0..9: from the centres of classes
  0..9, where that class had a correct trial) with per-point diagnostics;
  slow_points_unique.npz the de-duplicated set. Both recipes write the same files and keys.
  `out_dir` (a subdirectory name of `workdir`; None: the workdir) takes the files, the figure,
  the TensorBoard summaries and a results.json of the summary alone, leaving the workdir's
  results.json as it is: a second recipe's points beside the first's.

  Returns:
    the summary written to results.json: slow_point_speed / slow_point_readout per class (from
    its centre), num_unique_slow_points, centre_counts, slow_point_diagnostics (per class),
    memory_predictors (per predictor, per class), slow_points_recipe, slow_points_format.
  """
  if recipe not in slow_points_lib.RECIPES:
    raise ValueError(f"unknown slow-point recipe {recipe!r}; valid: "
                     f"{', '.join(slow_points_lib.RECIPES)}")
  sp_config = sp_config or slow_points_lib.recipe_config(recipe, cfg)
  # The trajectory cloud scales with the run's evaluation size (50 trials per class at the
  # presets' 1000 evaluation trials; at least 5).
  diag = diag_config or predictors.DiagnosticsConfig(
      trials_per_class=min(50, max(5, cfg.eval_trials // 20)),
      noise_bank=rollouts.noise_bank_for(cfg, run.model))
  gen = trials.generator_for(source, "test", cfg)
  found = _search_from_centres(cfg, run.model, gen, source, sp_config, diag, recipe,
                               num_sampled, trials_per_class)
  extra = dict(dist_traj_times=np.asarray(found.times, np.int32))
  target = os.path.join(workdir, out_dir) if out_dir else workdir
  os.makedirs(target, exist_ok=True)
  found.everything.save(os.path.join(target, SLOW_POINTS_FILE), **extra)
  found.unique.save(os.path.join(target, UNIQUE_SLOW_POINTS_FILE), **extra)
  per_class = _per_class_results(cfg, run.model, gen, diag, found)
  summary = _slow_point_summary(run, sp_config, diag, recipe, found, per_class)
  artifacts.update_json(os.path.join(target, artifacts.RESULTS_FILE), summary)
  _slow_point_figures(cfg, run, gen, recipe, found, summary["slow_point_speed"], target)
  return summary


@dataclasses.dataclass
class _Found:
  """What find_slow_points' search produced, for its files, summary and figure."""
  centres: np.ndarray      # [10, state] class centres (rows without trials: unused)
  counts: np.ndarray       # [10] trials behind each centre
  t_com: int               # the centres' time after the stimulus
  times: tuple             # t_com and the diagnostics' long times
  bounds: object           # LSTM c bounds of the search, or None
  have: np.ndarray         # classes with a centre, in the order of the first rows
  everything: object       # SlowPoints, every point searched
  unique: object           # SlowPoints, de-duplicated
  dist_centre: np.ndarray  # [points]
  dist_traj: np.ndarray    # [points, len(times)]
  cloud: object            # predictors.trajectory_cloud


def _search_from_centres(cfg, model, gen, source, sp_config, diag, recipe, num_sampled,
                         trials_per_class) -> _Found:
  """Class centres (and sampled states) -> slow points with their distances (find_slow_points)."""
  x_bar = slow_points_lib.mean_input_features(model, gen, seed=cfg.seed)
  centres, counts, t_com = slow_points_lib.centres_of_recipe(
      model, gen, cfg.seed, recipe, source, cfg, x_bar, trials_per_class)
  if recipe == "paper":
    num_sampled = 0  # the authors search from the centres only
  times = (t_com,) + tuple(diag.long_times)
  cloud = predictors.trajectory_cloud(model, gen, times + (diag.drift_time,),
                                      diag.trials_per_class, cfg.seed, diag.batch_size,
                                      diag.noise_bank)
  bounds = None
  if model.arch == "lstm" and sp_config.lstm_c == "reached":
    u = model.units
    bounds = slow_points_lib.hidden_box(model, (cloud.lo[u:], cloud.hi[u:]))
  have = np.flatnonzero(counts > 0)
  inits, init_class = [centres[have]], [have.astype(np.int32)]
  if num_sampled:
    sampled, classes, _ = slow_points_lib.states_of_new_trials(model, gen, num_sampled,
                                                               seed=cfg.seed)
    inits.append(sampled)
    init_class.append(np.asarray(classes, np.int32))
  inits, init_class = np.concatenate(inits), np.concatenate(init_class)
  finder = slow_points_lib.ClassPointFinder(model, sp_config, include_null=recipe == "paper")
  _, everything = finder.find(inits, x_bar, bounds=bounds, last_step_speed=recipe == "paper",
                              extras=dict(init_class=init_class))
  dist_centre, dist_traj = predictors.point_distances(everything, centres, cloud, times)
  everything = everything.with_extras(dist_centre=dist_centre, dist_traj=dist_traj)
  return _Found(centres, counts, t_com, times, bounds, have, everything,
                finder.unique(everything), dist_centre, dist_traj, cloud)


def _per_class_results(cfg, model, gen, diag, found: _Found) -> dict:
  """Per class: the slow point from its centre, its diagnostics and the memory predictors."""
  everything, times, have = found.everything, found.times, found.have
  classes = [str(c) for c in range(config_lib.NUM_CLASSES)]
  speed, readout = dict.fromkeys(classes), dict.fromkeys(classes)
  diagnostics = {c: None for c in classes}
  preds = {name: dict.fromkeys(classes) for name in predictors.PREDICTORS}
  preds["expected_speed_se"] = dict.fromkeys(classes)
  preds["expected_speed_frames"] = dict.fromkeys(classes)
  centre_points = everything[np.arange(len(have))]
  flow, flow_se, flow_k = predictors.expected_flow_speed(
      model, gen, centre_points.states, cfg.seed, diag.rel_se, diag.min_frames, diag.max_frames)
  tau = predictors.time_constants(centre_points.max_abs_eig)
  drift, spread, decay = predictors.cloud_rates(found.cloud, found.t_com, diag.drift_time)
  reasons = slow_points_lib.STOP_REASONS
  for row, c in enumerate(have):
    k = str(c)
    speed[k] = float(everything.speed[row])
    readout[k] = int(everything.extras["readout"][row])
    diagnostics[k] = dict(
        in_box=bool(everything.in_box[row]), dist_centre=float(found.dist_centre[row]),
        **{f"dist_traj_{t}": float(found.dist_traj[row, j]) for j, t in enumerate(times)},
        stop_reason=reasons[int(everything.stop_reason[row])], iters=int(everything.iters[row]),
        max_abs_h=float(np.max(np.abs(everything.states[row, :model.units]))))
    preds["speed"][k] = speed[k]
    preds["expected_speed"][k] = float(flow[row])
    preds["expected_speed_se"][k] = float(flow_se[row])
    preds["expected_speed_frames"][k] = int(flow_k[row])
    preds["time_constant"][k] = float(tau[row]) if np.isfinite(tau[row]) else None
  for c in range(config_lib.NUM_CLASSES):
    for name, values in (("com_drift", drift), ("spread_rate", spread),
                         ("accuracy_decay", decay)):
      preds[name][str(c)] = None if np.isnan(values[c]) else float(values[c])
  return dict(speed=speed, readout=readout, diagnostics=diagnostics, preds=preds)


def _slow_point_summary(run, sp_config, diag, recipe, found: _Found, per_class: dict) -> dict:
  """The results.json summary of find_slow_points."""
  everything, times = found.everything, found.times
  dist_traj, n = found.dist_traj, len(found.everything)
  return dict(slow_point_speed=per_class["speed"], slow_point_readout=per_class["readout"],
              num_unique_slow_points=len(found.unique), centre_counts=found.counts.tolist(),
              slow_points_step=run.step,
              slow_point_max_q=float(everything.q.max()) if n else None,
              slow_points_format=slow_points_lib.FORMAT_VERSION, slow_points_recipe=recipe,
              slow_point_config=sp_config_record(sp_config),
              slow_point_diagnostics=per_class["diagnostics"],
              slow_point_summary=dict(
                  points=n, in_box=int(everything.in_box.sum()),
                  stop_reasons=slow_points_lib.stop_reason_counts(everything.stop_reason),
                  dist_traj_times=list(times),
                  median_dist_centre=_nanmedian(found.dist_centre),
                  median_dist_traj={str(t): _nanmedian(dist_traj[:, j])
                                    for j, t in enumerate(times)}),
              memory_predictors=per_class["preds"],
              memory_predictor_settings=dict(
                  drift_span=[found.t_com, diag.drift_time],
                  cloud_trials_per_class=diag.trials_per_class,
                  expected_speed_rel_se=diag.rel_se, lstm_c_bounds=found.bounds is not None,
                  **({"cloud_noise_bank": diag.noise_bank} if diag.noise_bank else {})))


def _slow_point_figures(cfg, run, gen, recipe, found: _Found, speed, target):
  """Trajectories after the stimulus, with the centres and the slow points reached from them."""
  everything, m = found.everything, len(found.have)
  traj, traj_classes = post_stimulus_trajectories(run.model, gen, cfg.seed)
  fig = plotting.trajectories_pca(
      traj, traj_classes, centres=found.centres[found.have],
      slow_points=everything.states[:m], slow_point_classes=everything.extras["readout"][:m],
      title=f"{cfg.protocol} {cfg.arch}: 20 steps after the stimulus ({recipe} recipe)",
      note=(f"slow point to nearest class state at t={found.t_com}: median "
            f"{_fmt(_nanmedian(found.dist_traj[:m, 0]))}; to its centre: median "
            f"{_fmt(_nanmedian(found.dist_centre[:m]))}\n"
            f"{int(everything.in_box[:m].sum())} of {m} in the box"))
  plotting.save_png(fig, os.path.join(target, TRAJECTORIES_PNG))
  writer = _tb_writer(target)
  with writer.as_default(step=run.step):
    for c, v in speed.items():
      if v is not None:
        _tb_scalar(f"slow_points/speed_class_{c}", v)
    _tb_scalar("slow_points/num_unique", len(found.unique))
  _tb_image(writer, "slow_points/trajectories_pca", fig, run.step)
  writer.flush()


def _fmt(v):
  return "n/a" if v is None else f"{v:.3g}"


def _nanmedian(x):
  x = np.asarray(x, np.float64)
  x = x[np.isfinite(x)]
  return float(np.median(x)) if len(x) else None


TRAJECTORY_FRAMES = 2048  # frames per network call (a CNN's activations: ~1 GB at 32x32x128)
_TRAJECTORY_STREAM = 31_337  # the figures' and back-tracking's trials


def analysed(cfg, workdir, step, sp_config=None, recipe="default") -> bool:
  """Whether `workdir` holds after_training's whole output for the network at `step`: every
  evaluation delay of `cfg` at its trial count, slow points of this recipe, search settings and
  file format, and a SavedModel exported from this step."""
  path = os.path.join(workdir, artifacts.RESULTS_FILE)
  model_dir = os.path.join(workdir, SAVED_MODEL_DIR)
  if not (os.path.exists(path) and os.path.isdir(model_dir)):
    return False
  try:
    r = artifacts.read_json(path)
  except (OSError, ValueError):
    return False
  sp_config = sp_config or slow_points_lib.recipe_config(recipe, cfg)
  trials_by_delay = r.get("trials_per_delay") or {}
  if not (r.get("step") == step
          and slow_points_current(r, step, sp_config, recipe, rollouts.noise_bank_for(cfg))
          and all(trials_by_delay.get(str(int(d))) == cfg.eval_trials
                  for d in cfg.eval_delays)):
    return False
  return exported(workdir, step)


def exported(workdir, step) -> bool:
  """Whether workdir/saved_model is a readable export of the network at `step`."""
  model_dir = os.path.join(workdir, SAVED_MODEL_DIR)
  if not os.path.isdir(model_dir):
    return False
  try:
    return export.load_metadata(model_dir)["metadata"].get("step") == step
  except Exception:  # pylint: disable=broad-except
    return False     # an unreadable export is redone


def stored_cloud_bank(results: dict) -> int:
  """The noise bank of the trajectory cloud a results.json's slow points were analysed with
  (0: frame by frame, also for runs searched before the CIFAR-10 cloud had a bank)."""
  return (results.get("memory_predictor_settings") or {}).get("cloud_noise_bank", 0)


def slow_points_current(results: dict, step: int, sp_config, recipe: str,
                        noise_bank: int = 0) -> bool:
  """Whether `results` (a results.json) holds slow points of the network at `step` found with
  this recipe, these search settings, today's file format and a trajectory cloud of this noise
  bank (rollouts.noise_bank_for; the cloud bounds an LSTM's search and gives the memory
  predictors; stored_cloud_bank)."""
  return (results.get("slow_points_step") == step and stored_cloud_bank(results) == noise_bank
          and results.get("slow_points_format") == slow_points_lib.FORMAT_VERSION
          and results.get("slow_points_recipe") == recipe
          and same_sp_config(results.get("slow_point_config"), sp_config))


def sp_config_record(sp_config) -> dict:
  """A SlowPointConfig as results.json and backtrack.json record it."""
  return json.loads(json.dumps(dataclasses.asdict(sp_config), default=artifacts.jsonable))


def same_sp_config(stored, sp_config) -> bool:
  """Whether a recorded search config is `sp_config`. A field the record lacks (added to
  SlowPointConfig after it was written, e.g. dedup_space) counts as its default, which keeps
  the behaviour the record was made with."""
  if not isinstance(stored, dict):
    return False
  defaults = sp_config_record(type(sp_config)())
  return dict(defaults, **stored) == sp_config_record(sp_config)


def post_stimulus_trajectories(model, generator, seed, num=100,
                               steps=rollouts.STEPS_AFTER_STIMULUS + 5,
                               max_frames=TRAJECTORY_FRAMES):
  """States for `steps` steps from the stimulus on (image at t = 0, then noise, trigger off) of
  `num` test trials, classes balanced: ([num, steps, S], classes [num]). The same trials for
  every network of one seed, so figures of different networks compare (rollouts.run_sequences,
  `max_frames` frames per call). Their seed stream is [seed, 31_337] split into (stimulus, times, noise) (the times unused:
  these trials show the stimulus at t = 0)."""
  classes = np.arange(num, dtype=np.int32) % config_lib.NUM_CLASSES
  stream = rollouts.Stream.split(tf.constant([seed, _TRAJECTORY_STREAM], tf.int64),
                                 ("stimulus", "times", "noise"))
  inputs = rollouts.trial_inputs(generator, stream, classes, steps)
  return rollouts.run_sequences(model, inputs, max_frames), classes


def export_model(cfg, run, source, workdir) -> str:
  """SavedModel with serving_default / step / speed / metadata signatures in workdir.

  The recorded config's data_dir is emptied: it names a folder of this machine, and the
  SavedModel is made to be read elsewhere (the workdir's config.json keeps it)."""
  return export.export_saved_model(
      run.model, os.path.join(workdir, SAVED_MODEL_DIR),
      dict(noise_mean=source.mean, noise_std=source.std, config=dict(cfg.to_dict(), data_dir=""),
           step=run.step,
           dataset=cfg.dataset, min_delay=cfg.min_delay, seq_len=cfg.seq_len))


def train_and_analyze(cfg: config_lib.Config, workdir: str, overwrite: bool = False,
                      verbose=None, sp_config=None, strategy=None, recipe="default") -> dict:
  """The whole run: train (or resume) in `workdir`, then evaluate, find slow points, export.

  `strategy` (tf.distribute, see haviv_tf.training.distribute; None: the current one) distributes the
  training. The analysis runs on the chief only, on a single-device copy of the trained model
  restored from its final checkpoint; a non-chief multi-worker task returns {} after training.

  Returns results.json's content ({} on a non-chief task).

  Raises:
    artifacts.RunError, datasets.DataError: with a one-line message.
  """
  source = train.prepare_workdir(cfg, workdir, overwrite, strategy=strategy)
  run = train.train(cfg, workdir, source, verbose, strategy=strategy)
  if not distribute.is_chief(strategy):
    return {}
  return after_training(cfg, run.single_device(), source, workdir, sp_config, recipe,
                        overwrite=overwrite)


def after_training(cfg, run, source, workdir, sp_config=None, recipe="default",
                   overwrite=False, log=print) -> dict:
  """Evaluation, slow points and export, in that order; returns results.json's content.

  Skipped when `workdir` already holds all three for this network (`analysed`): re-running a
  finished run (a grid resuming) costs a restore, not a second analysis (a CIFAR-10 network's
  takes about 16 minutes). --mode=evaluate / slow_points / export redo one part on request.
  Slow points of this network found with another recipe or other search settings are kept,
  saying so, unless `overwrite` (stored accuracies are kept by `evaluate`'s rule).
  """
  path = os.path.join(workdir, artifacts.RESULTS_FILE)
  if analysed(cfg, workdir, run.step, sp_config, recipe):
    print(f"{workdir}: already evaluated, searched for slow points and exported at step "
          f"{run.step}; nothing to do")
    return artifacts.read_json(path)
  evaluate(cfg, run, source, workdir, overwrite=overwrite, log=log)
  stored = artifacts.read_json(path) if os.path.exists(path) else {}
  sp_config = sp_config or slow_points_lib.recipe_config(recipe, cfg)
  bank = rollouts.noise_bank_for(cfg, run.model)
  if (not overwrite and stored.get("slow_points_step") == run.step
      and stored.get("slow_points_format") == slow_points_lib.FORMAT_VERSION
      and not slow_points_current(stored, run.step, sp_config, recipe, bank)):
    log(f"{workdir}: kept the stored slow points of step {run.step} (found with the "
        f"{stored.get('slow_points_recipe')} recipe or other search or cloud settings than "
        "these); --overwrite replaces them, --mode=slow_points --sp_dir=NAME finds these "
        "beside them")
  elif not slow_points_current(stored, run.step, sp_config, recipe, bank):
    find_slow_points(cfg, run, source, workdir, sp_config, recipe=recipe)
  if not exported(workdir, run.step):
    export_model(cfg, run, source, workdir)
  return artifacts.read_json(os.path.join(workdir, artifacts.RESULTS_FILE))
