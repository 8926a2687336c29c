"""The one rollout runner: the network on trials "image at t_s, then noise frames", and the one
definition of a class centre.

Every analysis that runs trials after training goes through `loop` (traced inside the caller's
tf.function): the evaluation (probes.evaluation), the class centres and sampled starting states
of the slow-point search (probes.slow_points, both recipes), the trajectory cloud of the
predictors (probes.predictors), the figures' and back-tracking's trajectories
(analysis.pipeline.post_stimulus_trajectories). Each caller keeps its own seed stream (a
`Stream` of [2] stateless seeds it derives from its own seed), so its trials, and its numbers,
are those it has always drawn (tests/rollouts_test.py checks them bit for bit).

Frame t of a trial is its image where t == t_s (`at_stimulus`), otherwise noise; the trigger is
on at t == trigger_at only; the state after frame t is "t steps after the stimulus" when t_s = 0.
"""

import dataclasses
import typing
import weakref

import numpy as np
import tensorflow as tf

from haviv_tf.base import config as config_lib

# The time of the class centres of the default recipe and of back-tracking: the state 15 steps
# after the stimulus (the authors' centres take the state after frame 14, PAPER_CENTRE_FRAMES).
STEPS_AFTER_STIMULUS = 15
# Noise images per run of trials of a CNN model trained with a noise bank (Config.noise_bank):
# each is encoded once, and every (trial, t) picks one uniformly (Evaluator, Rollout).
EVAL_NOISE_BANK = 4096
_ENCODE_CHUNK = 512   # frames per CNN call (bounds the convolutions' activations)
PAPER_CENTRE_FRAMES = 15  # the authors' centre trials: image + 14 noise frames (BBM L50-51)


@dataclasses.dataclass(frozen=True)
class Stream:
  """A rollout's random draws, each a [2] int64 stateless seed.

  Attributes:
    stimulus: the images (generator.stimuli).
    noise: the noise frames: frame t is generator.noise(noise, t).
    times: the stimulus / report times (generator.stimulus_times), when drawn.
    readout: the read-out step's noise frame (None: `noise`).
    readout_shift: the read-out frame of the state at t is frame t + readout_shift of `readout`.
  """
  stimulus: typing.Any
  noise: typing.Any
  times: typing.Any = None
  readout: typing.Any = None
  readout_shift: int = 0

  @classmethod
  def split(cls, seed, names, readout_shift: int = 0) -> "Stream":
    """The stream whose seeds are tf.random.experimental.stateless_split(seed, len(names)) in
    the order of `names` (fields of Stream), as each caller has always split its seed."""
    parts = tf.unstack(tf.random.experimental.stateless_split(seed, len(names)))
    return cls(readout_shift=readout_shift, **dict(zip(names, parts)))

  @property
  def readout_seed(self):
    return self.noise if self.readout is None else self.readout


def at_stimulus(t, t_s, stimulus, noise):
  """Where the stimulus is shown: `stimulus` where t == t_s, else `noise` ([..., F] each; t and
  t_s broadcast to the leading axes, e.g. t scalar and t_s [n], or t [1, T] and t_s [n, 1])."""
  return tf.where(tf.equal(t, t_s)[..., None], stimulus, noise)


def loop(model, frame_fn, state, t0, t1, t_s, stimulus, trigger_at=None, on_step=None,
         carry=(), encoded=False):
  """Runs frames t0 .. t1 - 1 (traced: call it inside a tf.function).

  Args:
    model: the network (encode, transition, logits).
    frame_fn: t -> noise frame [n, F] at step t (raw frames; encoded features if `encoded`).
    state: [n, state_size] before frame t0.
    t0, t1: scalar int32.
    t_s: [n] int32 stimulus time of each trial.
    stimulus: [n, F] what trial i shows at t_s[i].
    trigger_at: [n] int32 step with the trigger on (None: never).
    on_step: fn(t, state, logits, carry) -> carry, after every step.
    carry: on_step's loop variables.
    encoded: frames are cell features (the trigger joins after them), not raw frames.

  Returns:
    (state after frame t1 - 1, carry).
  """
  n = tf.shape(state)[0]

  def body(t, state, carry):
    if trigger_at is None:
      trigger = tf.zeros([n, 1])
    else:
      trigger = tf.cast(tf.equal(t, trigger_at), tf.float32)[:, None]
    inputs = tf.concat([at_stimulus(t, t_s, stimulus, frame_fn(t)), trigger], axis=-1)
    state = model.transition(state, inputs if encoded else model.encode(inputs))
    if on_step is not None:
      carry = on_step(t, state, model.logits(state), carry)
    return t + 1, state, carry

  _, state, carry = tf.while_loop(lambda t, *_: t < t1, body, (t0, state, carry))
  return state, carry


def noise_bank_for(cfg, model=None) -> int:
  """The encoded noise bank a run's analysis trials use: EVAL_NOISE_BANK for a CNN model
  trained with a bank (its frames otherwise cost a CNN pass each), else 0 (frame by frame).
  Without `model`, from the config alone (the CNN front end is CIFAR-10's: network.from_config)."""
  cnn = model.encoder is not None if model is not None else cfg.dataset == "cifar10"
  return EVAL_NOISE_BANK if cfg.noise_bank and cnn else 0


def encode_frames(model, frames):
  """CNN features [n, feature_size - 1] of raw frames [n, frame_size], _ENCODE_CHUNK at a time
  (traced: call it inside a tf.function)."""
  n = tf.shape(frames)[0]
  chunks = (n + _ENCODE_CHUNK - 1) // _ENCODE_CHUNK
  padded = tf.pad(frames, [[0, chunks * _ENCODE_CHUNK - n], [0, 0]])
  feats = tf.map_fn(model.encoder, tf.reshape(padded, [chunks, _ENCODE_CHUNK, -1]),
                    fn_output_signature=tf.float32)
  return tf.reshape(feats, [-1, model.encoder.output_size])[:n]


def bank_frames(generator, seed, n: int, bank, size: int):
  """frame_fn of trials whose noise comes from an encoded bank [size, features] (`loop` with
  encoded=True): trial i at step t sees bank[generator.noise_bank_index(seed, t)[i]], the
  frame a generator with a bank of `size` gives it."""
  return lambda t: tf.gather(bank, generator.noise_bank_index(seed, t, n, size))


def readout(model, generator, seed, t, state):
  """Class (0..9, argmax of the 10 class logits) read out by one step from `state` [n, S] with
  the noise frame generator.noise(seed, t) and the trigger on: [n] int32."""
  n = tf.shape(state)[0]
  inputs = tf.concat([generator.noise(seed, t, n), tf.ones([n, 1])], -1)
  logits = model.logits(model.transition(state, model.encode(inputs)))
  return tf.argmax(logits[:, 1:], axis=-1, output_type=tf.int32)


class Rollout:
  """Trials of one model and generator, image at t = 0 then noise, trigger off; compiled once.

  `states_at` keeps the states at requested times (and the reached range), `trajectories` every
  state up to a time. With `noise_bank` K > 0 (a CNN model) `states_at`'s noise frames come from
  K images encoded once per call (bank_frames: what a generator with a bank of K gives), not a
  CNN pass per trial and step; the one read-out step keeps a fresh frame.
  """

  def __init__(self, model, generator, noise_bank: int = 0):
    if noise_bank and model.encoder is None:
      raise ValueError("a noise bank saves CNN passes: the model has no CNN")
    self.model, self.generator, self.noise_bank = model, generator, int(noise_bank)
    self._bank = tf.function(
        lambda seed: encode_frames(model, generator.noise_bank_frames(seed, self.noise_bank)))
    self._encode = tf.function(lambda frames: encode_frames(model, frames),
                               reduce_retracing=True)
    self._advance = tf.function(self._advance_py, reduce_retracing=True)
    self._trajectory = tf.function(self._trajectory_py, reduce_retracing=True)
    # Traced: grappler's rewrite of the division by 255 is part of the images' rounding.
    self._stimuli = tf.function(
        lambda seed, classes: generator.stimuli(seed, tf.shape(classes)[0], classes=classes)[0],
        reduce_retracing=True)
    self._readout = tf.function(
        lambda seed, t, state: readout(model, generator, seed, t, state), reduce_retracing=True)

  def _noise_fn(self, seed, n):
    return lambda t: self.generator.noise(seed, t, n)

  def _advance_py(self, noise_seed, images, state, lo, hi, t0, t1, bank=None):
    n = tf.shape(state)[0]
    frames = (self._noise_fn(noise_seed, n) if bank is None else
              bank_frames(self.generator, noise_seed, n, bank, self.noise_bank))

    def track(t, state, logits, carry):
      del t, logits
      return tf.minimum(carry[0], tf.reduce_min(state, 0)), tf.maximum(
          carry[1], tf.reduce_max(state, 0))

    state, (lo, hi) = loop(self.model, frames, state, t0, t1, tf.zeros([n], tf.int32), images,
                           on_step=track, carry=(lo, hi), encoded=bank is not None)
    return state, lo, hi

  def _trajectory_py(self, stimulus_seed, noise_seed, classes, length):
    n = tf.shape(classes)[0]
    images, _ = self.generator.stimuli(stimulus_seed, n, classes=classes)
    record = lambda t, state, logits, out: out.write(t, state)
    state, out = loop(self.model, self._noise_fn(noise_seed, n), self.model.initial_state(n),
                      tf.constant(0), length, tf.zeros([n], tf.int32), images, on_step=record,
                      carry=tf.TensorArray(tf.float32, size=length))
    return tf.transpose(out.stack(), [1, 0, 2]), state

  def trajectories(self, stream: Stream, classes, length: int, read_out: bool = False):
    """States [n, length, S] after frames 0 .. length - 1 of trials showing `classes` [n], and
    with `read_out` the class [n] read out from the last (`readout`, frame length - 1 +
    stream.readout_shift of stream.readout_seed)."""
    states, last = self._trajectory(stream.stimulus, stream.noise, tf.constant(classes, tf.int32),
                                    tf.constant(length))
    if not read_out:
      return states.numpy()
    t = tf.constant(length - 1 + stream.readout_shift)
    return states.numpy(), self._readout(stream.readout_seed, t, last).numpy()

  def states_at(self, stream: Stream, classes, times):
    """States at sorted distinct `times` (int, >= 0) of trials showing `classes` [n].

    Returns:
      states [T, n, S], read-out class [T, n] (frame t + readout_shift of the readout seed),
      lo [S], hi [S] (the range over every step up to times[-1]).
    """
    n = len(classes)
    images = self._stimuli(stream.stimulus, tf.constant(classes, tf.int32))
    bank = None
    if self.noise_bank:  # features, as `loop` takes them with encoded=True
      bank, images = self._bank(stream.noise), self._encode(images)
    state = self.model.initial_state(n)
    s = self.model.state_size
    lo, hi = tf.fill([s], np.inf), tf.fill([s], -np.inf)
    states = np.zeros([len(times), n, s], np.float32)
    read = np.zeros([len(times), n], np.int32)
    t = -1
    for i, target in enumerate(times):
      if target > t:
        state, lo, hi = self._advance(stream.noise, images, state, lo, hi, tf.constant(t + 1),
                                      tf.constant(int(target) + 1), bank)
        t = int(target)
      states[i] = state.numpy()
      read[i] = self._readout(stream.readout_seed, tf.constant(t + stream.readout_shift),
                              state).numpy()
    return states, read, lo.numpy(), hi.numpy()


def trial_inputs(generator, stream: Stream, classes, length: int):
  """Raw inputs [n, length, frame_size + 1] of trials showing `classes` [n] at t = 0 (images
  from stream.stimulus), noise frames generator.noise(stream.noise, t) after it, trigger off."""
  n = len(classes)
  images, _ = generator.stimuli(stream.stimulus, n, classes=tf.constant(classes, tf.int32))
  frames = at_stimulus(tf.range(length)[None, :], tf.zeros([n, 1], tf.int32),
                       images[:, None, :], generator.noise_sequence(stream.noise, length, n))
  return tf.concat([frames, tf.zeros([n, length, 1])], axis=-1)


def run_sequences(model, inputs, max_frames: int = 2048) -> np.ndarray:
  """States [n, T, S] of whole input sequences [n, T, frame_size + 1] (model.run, eager),
  `max_frames // T` trials at a time (trials are independent: the states do not depend on it).

  The step-wise runner (`loop`) and this one differ in rounding (the last bit): each caller
  keeps the one its recorded numbers come from."""
  length = int(inputs.shape[1])
  rows = max(1, int(max_frames) // length)
  return np.concatenate([model.run(tf.convert_to_tensor(inputs[lo:lo + rows])).numpy()
                         for lo in range(0, int(inputs.shape[0]), rows)])


_ROLLOUTS = weakref.WeakKeyDictionary()  # model -> {(id(generator), bank): (generator, Rollout)}


def rollout(model, generator, noise_bank: int = 0) -> Rollout:
  """The Rollout of (model, generator, noise_bank), traced once and reused."""
  runs = _ROLLOUTS.setdefault(model, {})
  key = (id(generator), int(noise_bank))
  entry = runs.get(key)
  if entry is None or entry[0] is not generator:
    entry = runs[key] = (generator, Rollout(model, generator, noise_bank))
  return entry[1]


def class_centres(states, classes, counted=None):
  """THE class centre: per class, the mean of the states of its trials that count.

  Args:
    states: [N, S] (the mean keeps their dtype).
    classes: [N] int class of each trial.
    counted: [N] bool, the trials that count (None: all). The default recipe counts a trial
      whose read-out (noise frame, trigger on, 10 class logits) is its class; the authors' whose
      read-out from the mean input with the trigger on, over all 11 outputs, is.

  Returns:
    centres [10, S] (NaN rows: no trial counted), counts [10] int64.
  """
  states = np.asarray(states)
  classes = np.asarray(classes)
  ok = np.ones(len(classes), bool) if counted is None else np.asarray(counted, bool)
  centres = np.full([config_lib.NUM_CLASSES, states.shape[-1]], np.nan, states.dtype)
  counts = np.zeros([config_lib.NUM_CLASSES], np.int64)
  for c in range(config_lib.NUM_CLASSES):
    sel = ok & (classes == c)
    counts[c] = int(sel.sum())
    if counts[c]:
      centres[c] = states[sel].mean(axis=0)
  return centres, counts
