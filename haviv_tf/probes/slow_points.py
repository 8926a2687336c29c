"""The application's slow points: the authors' recipe, class read-out, class centres, trial inputs.

The search itself is the library's (haviv_tf.dynamics: SlowPointConfig, SlowPointFinder,
SlowPoints, Jacobians); this module adds what belongs to this task. A slow point is searched under
the mean noise input x̄ (trigger off), in the cell's speed coordinates (GRU: h; LSTM: (h, tanh c),
as the paper). ClassPointFinder attaches this task's per-point arrays to every SlowPoints as
extras: readout, init_class, dist_centre, dist_traj (CLASS_EXTRAS).

Two recipes (RECIPES) make the class slow points: "default" (this package's: centres of test
trials, 40 extra sampled starts, a stopping rule) and "paper" (the authors' BlackBoxMNIST.py /
BlackBoxCIFAR.py, reproduced step by step in `paper_class_centres` and `recipe_config`).
"""

import numpy as np
import tensorflow as tf

from haviv_tf.base import artifacts
from haviv_tf.base import config as config_lib
from haviv_tf.dynamics import finder as finder_lib
from haviv_tf.dynamics import linearize
from haviv_tf.dynamics import points as points_lib
from haviv_tf.models import network
from haviv_tf.probes import rollouts
from haviv_tf.task import datasets
from haviv_tf.task import trials

# results.json records this as slow_points_format: the version of the search and its per-point
# diagnostics, unchanged since 2 (projected search, stop reasons, in_box, distances). A finished
# run whose results.json says 2 keeps its slow points. The npz layout has its own version
# (points_lib.FORMAT_VERSION, 3 since the library split); files of layout 2 still load.
FORMAT_VERSION = config_lib.SLOW_POINTS_FORMAT
_SAMPLE_STREAM = 104_729  # separates slow-point trial seeds from training/evaluation streams
RECIPES = config_lib.SP_RECIPES
STOP_REASONS = points_lib.STOP_REASONS
stop_reason_counts = points_lib.stop_reason_counts
SlowPointConfig = finder_lib.SlowPointConfig
SlowPoints = points_lib.SlowPoints
PAPER_SEARCH_STEPS = finder_lib.AUTHORS_MAX_ITERS
PAPER_TRIALS = {"mnist": 100, "mnist_sample": 100, "cifar10": 1000}  # BBM L53, BBC L88
PAPER_CENTRE_FRAMES = rollouts.PAPER_CENTRE_FRAMES  # image + 14 noise frames (BBM L217-219)
TF1_VALIDATION = datasets.MNIST_TF1_HOLDOUT  # TF1's read_data_sets holds out 5,000 train images
NUM_DIST_TRAJ = 3  # dist_traj columns: at the centre-of-mass time, after long noise (2 times)
CLASS_EXTRAS = ("readout", "init_class", "dist_centre", "dist_traj")  # SlowPoints.extras


class OldFormatError(config_lib.InputError):
  """A slow-point file written by an older haviv_tf; the message names the fix."""


def recipe_config(recipe: str, cfg=None, **overrides) -> SlowPointConfig:
  """The SlowPointConfig of a recipe (then `overrides`, e.g. max_iters from a flag).

  "paper" is the authors' search (SlowPointConfig.authors). For a run `cfg` trained with fewer
  steps than its data set's paper preset (the quick preset), both step counts shrink in the
  proportion its training did. A run `cfg` with jit_compile False gets an uncompiled search
  (either recipe), unless `overrides` say otherwise.

  Raises:
    config_lib.InputError: an unknown recipe or a bad field (the library's ValueError).
  """
  if recipe not in RECIPES:
    raise config_lib.InputError(f"unknown slow-point recipe {recipe!r}; valid: {', '.join(RECIPES)}")
  overrides = dict(overrides)
  if cfg is not None and not cfg.jit_compile:
    overrides.setdefault("jit_compile", False)  # a run without XLA searches without it too
  try:
    if recipe == "default":
      return SlowPointConfig(**overrides)
    steps = PAPER_SEARCH_STEPS
    if cfg is not None:
      paper_steps = config_lib.preset("paper", cfg.dataset).train_steps
      if cfg.train_steps < paper_steps:
        steps = max(10, round(PAPER_SEARCH_STEPS * cfg.train_steps / paper_steps))
    return SlowPointConfig.authors(**dict(dict(max_iters=steps), **overrides))
  except ValueError as e:
    raise config_lib.InputError(str(e)) from None


def load_points(path: str) -> SlowPoints:
  """SlowPoints.load with the command line's one-line errors.

  Raises:
    OldFormatError: the file was written by an older format (the message says to re-run
      --mode=slow_points).
    artifacts.RunError: not a readable SlowPoints file (one line).
  """
  try:
    return SlowPoints.load(path)
  except points_lib.FormatVersionError as e:
    raise OldFormatError(f"{e}; re-run --mode=slow_points on the run") from None
  except ValueError as e:
    raise artifacts.RunError(str(e)) from None


# -- the read-out and the finder of class slow points -------------------------------------------


def trigger_features(features):
  """The same features with the trigger (last entry) on: [..., F] -> [..., F]."""
  features = tf.convert_to_tensor(features, tf.float32)
  return tf.concat([features[..., :-1], tf.ones_like(features[..., -1:])], axis=-1)


def readout_classes(model: network.DelayedClassifier, states, features,
                    include_null: bool = False) -> np.ndarray:
  """Class read out by one trigger step F(s, x with trigger 1) from each state.

  Args:
    model: the network.
    states: [N, state_size].
    features: encoded input with the trigger off, [F] or [N, F]; the trigger is switched on here.
    include_null: False: argmax over the 10 class logits (0..9); True: argmax over all 11
      outputs minus 1, so -1 when null wins (the authors' test, BlackBoxMNIST.py L241, L303).

  Returns:
    [N] int32.
  """
  states = linearize.check_states(model.to_dynamics(), states)
  features = trigger_features(linearize.broadcast_inputs(features, tf.shape(states)[0]))
  linearize.check_inputs(model.to_dynamics(), features)
  logits = model.logits(model.transition(states, features))
  if include_null:
    return (tf.argmax(logits, axis=-1, output_type=tf.int32) - 1).numpy()
  return tf.argmax(logits[:, 1:], axis=-1, output_type=tf.int32).numpy()


class ClassPointFinder(finder_lib.SlowPointFinder):
  """The library's finder, whose points carry this task's extras (CLASS_EXTRAS).

  readout: [P] int32 class read out by one trigger step from the point (`readout_classes`):
    default recipe 0..9; with `include_null` (the paper recipe) -1..9; -1 for networks without
    this read-out (Keras cells, SavedModels). init_class: [P] int32 class of the trial the search
    started from (-1: unknown; pass it as find(..., extras=dict(init_class=...))).
  dist_centre: [P] float32 distance to the centre of mass of the point's init_class, and
  dist_traj: [P, 3] float32 to the nearest state of trials of that class at three times
    (predictors.point_distances; NaN until computed).
  """

  def __init__(self, model, config: SlowPointConfig = SlowPointConfig(),
               include_null: bool = False):
    super().__init__(model, config)
    self.model = model if isinstance(model, network.DelayedClassifier) else None
    self.include_null = include_null

  def point_extras(self, points, inputs) -> dict:
    n = len(points)
    if self.model is not None and n:
      readout = readout_classes(self.model, points.states, inputs, self.include_null)
    else:
      readout = np.full([n], -1, np.int32)
    given = points.extras
    init_class = np.asarray(given.get("init_class", np.full([n], -1)), np.int32)
    if init_class.shape != (n,):
      raise ValueError(f"`init_class` must be [{n}], got shape {init_class.shape}")
    return dict(readout=readout, init_class=init_class,
                dist_centre=given.get("dist_centre", np.full([n], np.nan, np.float32)),
                dist_traj=given.get("dist_traj", np.full([n, NUM_DIST_TRAJ], np.nan,
                                                         np.float32)))


def hidden_box(model: network.DelayedClassifier, c_bounds=None):
  """Bounds (lo, hi), each [state_size] float32, of the search box: h in [-1, 1]; an LSTM's c
  within `c_bounds` = (lo [units], hi [units]) or free (±inf) without it."""
  lo, hi = model.to_dynamics().bounds
  if model.state_size > model.units and c_bounds is not None:
    u = model.units
    lo[u:], hi[u:] = (np.broadcast_to(np.asarray(b, np.float32), [u]) for b in c_bounds)
  return lo, hi


# -- inputs and starting states -----------------------------------------------------------------


def _check_generator(model, generator):
  if generator.frame_size != model.frame_size:
    raise ValueError(f"generator frame_size {generator.frame_size} does not match the model's "
                     f"frame_size {model.frame_size}")


def mean_input_features(model: network.DelayedClassifier, generator: trials.TrialGenerator,
                        num: int = 1000, seed: int = 0, batch_size: int = 250) -> np.ndarray:
  """x̄: the mean noise frame's features with the trigger off.

  Without an encoder this is [noise mean per pixel, 0]; with the CNN it is the mean of
  model.encode over `num` noise frames (trigger 0).

  Returns:
    [feature_size] float32.
  """
  _check_generator(model, generator)
  if model.encoder is None:
    return np.concatenate([generator.mean, [0.0]]).astype(np.float32)
  if num <= 0:
    raise ValueError(f"`num` must be positive, got {num!r}")
  total = np.zeros([model.feature_size], np.float64)
  seed_t = tf.constant([seed, _SAMPLE_STREAM], tf.int64)
  for k, lo in enumerate(range(0, num, batch_size)):
    b = min(batch_size, num - lo)
    frames = generator.noise(seed_t, k, b)
    feats = model.encode(tf.concat([frames, tf.zeros([b, 1])], axis=-1))
    total += tf.reduce_sum(tf.cast(feats, tf.float64), axis=0).numpy()
  return (total / num).astype(np.float32)


def _batched_trials(model, generator, classes, length, seed, batch_size):
  """States [N, length, S] of trials showing `classes` (rollouts.Rollout.trajectories) and the
  class read out by one more step (noise frame `length` of the batch's noise seed, trigger on);
  batch k's seed is [seed, _SAMPLE_STREAM + 1 + k], split into (stimulus, noise)."""
  run = rollouts.rollout(model, generator)
  states, preds = [], []
  for k, lo in enumerate(range(0, len(classes), batch_size)):
    stream = rollouts.Stream.split(tf.constant([seed, _SAMPLE_STREAM + 1 + k], tf.int64),
                                   ("stimulus", "noise"), readout_shift=1)
    s, p = run.trajectories(stream, classes[lo:lo + batch_size], length, read_out=True)
    states.append(s)
    preds.append(p)
  return np.concatenate(states), np.concatenate(preds)


def class_centres(model: network.DelayedClassifier, generator: trials.TrialGenerator,
                  steps_after: int = rollouts.STEPS_AFTER_STIMULUS,
                  trials_per_class: int = 100, seed: int = 0,
                  batch_size: int = 250):
  """Centre of mass per class of the state `steps_after` steps after the stimulus.

  Trials show the image at t = 0 and noise at t = 1..steps_after (trigger off); a trial counts
  if one trigger step (noise frame, trigger on) from its state at t = steps_after reads out the
  shown class.

  Returns:
    centres [10, state_size] float32 (NaN rows for classes with no correct trial),
    counts [10] int64 correct trials per class.
  """
  _check_generator(model, generator)
  if steps_after < 0 or trials_per_class <= 0:
    raise ValueError(f"`steps_after` must be >= 0 and `trials_per_class` positive, got "
                     f"{steps_after!r} and {trials_per_class!r}")
  classes = np.arange(config_lib.NUM_CLASSES * trials_per_class) % config_lib.NUM_CLASSES
  states, preds = _batched_trials(model, generator, classes, steps_after + 1, seed, batch_size)
  return rollouts.class_centres(states[:, -1], classes, preds == classes)


def states_of_new_trials(model: network.DelayedClassifier, generator: trials.TrialGenerator,
                         num_states: int, length: int = 20, min_time: int = 1, seed: int = 0,
                         batch_size: int = 250):
  """Starting states for the search, one from each of `num_states` new trials it runs.

  Unlike the library's dynamics.sample_states (which draws (trial, time) pairs from
  trajectories the caller recorded), this runs the trials itself, one per state.

  Trial i shows class i mod 10 at t = 0, then noise; its state is taken at a time drawn
  uniformly from [min_time, length - 1].

  Returns:
    states [num_states, state_size] float32, classes [num_states] int32, times [num_states] int32.
  """
  _check_generator(model, generator)
  if num_states <= 0 or not 0 <= min_time < length:
    raise ValueError(f"`num_states` must be positive and 0 <= `min_time` < `length`, got "
                     f"{num_states!r}, {min_time!r}, {length!r}")
  classes = (np.arange(num_states) % config_lib.NUM_CLASSES).astype(np.int32)
  states, _ = _batched_trials(model, generator, classes, length, seed, batch_size)
  times = np.random.default_rng(seed).integers(min_time, length, num_states).astype(np.int32)
  return states[np.arange(num_states), times], classes, times


def _paper_trial_images(source, dataset: str, per_class: int, rng):
  """The authors' stimuli for the centre trials: [10 * per_class] train-split image indices,
  class-major (trial i shows class i // per_class).

  MNIST (BlackBoxMNIST.py L8-18, L38-44): TF1's train split (the 60,000 minus the first 5,000
  it holds out), the first MinSize images of each digit (MinSize: the smallest digit's count),
  index np.random.randint(0, MinSize - 1). CIFAR-10 (BlackBoxCIFAR.py L58-78): from
  j = randint(1, number of test images), the first train image at or after j showing the class.
  """
  labels = np.asarray(source.train.labels).astype(np.int64)
  start = TF1_VALIDATION if dataset == "mnist" and len(labels) == 60_000 else 0
  out = []
  if dataset == "cifar10":
    for c in range(config_lib.NUM_CLASSES):
      where = np.flatnonzero(labels == c)
      j = rng.integers(1, len(source.test.labels), per_class)
      pos = np.minimum(np.searchsorted(where, j), len(where) - 1)
      out.append(where[pos])
    return np.concatenate(out)
  per = [np.flatnonzero(labels[start:] == c) + start for c in range(config_lib.NUM_CLASSES)]
  min_size = min(len(p) for p in per)
  for c in range(config_lib.NUM_CLASSES):
    out.append(per[c][rng.integers(0, max(1, min_size - 1), per_class)])
  return np.concatenate(out)


def paper_centre_inputs(source, cfg, seed: int = 0, trials_per_class=None):
  """The raw inputs of the authors' centre trials (see `paper_class_centres`).

  Returns:
    inputs [10 * per_class, 15, frame_size + 1] float32 (frame 0 the image, frames 1..14 the
    shared noise sequence, trigger 0), classes [10 * per_class] int32 (class-major).
  """
  per_class = trials_per_class or PAPER_TRIALS[cfg.dataset]
  rng = np.random.default_rng([seed, _SAMPLE_STREAM + 2])
  idx = _paper_trial_images(source, cfg.dataset, per_class, rng)
  classes = np.repeat(np.arange(config_lib.NUM_CLASSES), per_class).astype(np.int32)
  frame_shape = source.train.images.shape[1:]
  frame_size = int(np.prod(frame_shape))
  channels = frame_shape[-1]
  mean = np.tile(np.asarray(source.mean, np.float64).reshape(channels), frame_size // channels)
  std = np.tile(np.asarray(source.std, np.float64).reshape(channels), frame_size // channels)
  noise_std = std / 3.0 if cfg.dataset in ("mnist", "mnist_sample") else std
  # NoiseImages = np.random.normal(NoiseMu, NoiseSig / 3, (1000, 784))[0:15] (BBM L227): one
  # sequence; FeedImages repeats it for every trial and generate_batch overwrites frame 0.
  noise = mean + noise_std * rng.standard_normal([PAPER_CENTRE_FRAMES, frame_size])
  inputs = np.zeros([len(idx), PAPER_CENTRE_FRAMES, frame_size + 1], np.float32)
  inputs[:, :, :frame_size] = noise[None].astype(np.float32)
  images = np.asarray(source.train.images).reshape(len(source.train.labels), -1)
  inputs[:, 0, :frame_size] = images[idx].astype(np.float32) / 255.0
  return inputs, classes


def paper_class_centres(model: network.DelayedClassifier, source, cfg, x_bar, seed: int = 0,
                        trials_per_class=None, batch_size: int = 250):
  """The authors' class centres of mass (items D13-D16 of the audit of their code).

  - Trials (BlackBoxMNIST.py L226-230, BlackBoxCIFAR.py L319-327): 100 per class (CIFAR-10:
    1,000) from the train split (see _paper_trial_images); frame 0 shows the image, frames
    1..14 are noise, trigger off.
  - Noise (BBM L227-228; BBC L319-320): ONE sequence of 15 frames, drawn once and shared by
    every trial of every class: N(mean, std / 3) for MNIST, N(mean, std) for CIFAR-10.
  - State: after frame 14, i.e. 14 steps after the stimulus (BBM L50-51, L217-219).
  - A trial counts when one step from its state with the constant mean input plus the trigger
    (x̄ with trigger 1) reads out its class by argmax over all 11 outputs, null included
    (BBM L96-97, L151-155, L241-255); the centre is the mean of the trials that count.

  Args:
    model: the network.
    source: the run's datasets.Source (train split in its original order).
    cfg: the run's Config (dataset).
    x_bar: encoded mean input [feature_size] (trigger off), as `mean_input_features`.
    seed: numpy seed of the image draws and the noise sequence.
    trials_per_class: default PAPER_TRIALS[dataset].

  Returns:
    centres [10, state_size] float32 (NaN rows: no trial counted), counts [10] int64,
    states [10 * per_class, state_size] of every trial, trial classes [10 * per_class].
  """
  inputs, classes = paper_centre_inputs(source, cfg, seed, trials_per_class)
  readout_x = trigger_features(tf.constant(x_bar[None], tf.float32))
  states, ok = [], []
  for lo in range(0, len(classes), batch_size):
    final = rollouts.run_sequences(model, inputs[lo:lo + batch_size],
                                   batch_size * PAPER_CENTRE_FRAMES)[:, -1]
    n = len(final)
    logits = model.logits(model.transition(tf.constant(final), tf.broadcast_to(
        readout_x, [n, readout_x.shape[-1]])))
    pred = tf.argmax(logits, axis=-1, output_type=tf.int32).numpy() - 1
    states.append(final)
    ok.append(pred == classes[lo:lo + batch_size])
  states, ok = np.concatenate(states), np.concatenate(ok)
  centres, counts = rollouts.class_centres(states, classes, ok)
  return centres, counts, states, classes


def centres_of_recipe(model: network.DelayedClassifier, generator: trials.TrialGenerator, seed,
                      recipe: str = "default", source=None, cfg=None, x_bar=None,
                      trials_per_class: int = 100):
  """The class centres of a recipe, the authors' variant a parameter.

  recipe "default": `class_centres` of test trials (`generator`) STEPS_AFTER_STIMULUS steps
  after the stimulus, `trials_per_class` per class; "paper": `paper_class_centres` (the run's
  `source` and `cfg`, `x_bar` the mean input; computed when None).

  Returns:
    centres [10, S] (NaN rows), counts [10] int64, the centres' time after the stimulus.
  """
  if recipe == "paper":
    if x_bar is None:
      x_bar = mean_input_features(model, generator, seed=seed)
    centres, counts, _, _ = paper_class_centres(model, source, cfg, x_bar, seed=seed)
    return centres, counts, PAPER_CENTRE_FRAMES - 1
  centres, counts = class_centres(model, generator, trials_per_class=trials_per_class,
                                  seed=seed)
  return centres, counts, rollouts.STEPS_AFTER_STIMULUS
