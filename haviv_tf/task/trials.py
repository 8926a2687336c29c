"""Delayed-classification trials (numpy or stateless TF ops) and the tf.data pipeline.

A trial has `length` frames. Frame t_s shows one image, every other frame is per-pixel Gaussian
noise with the data set's pixel mean/std; a separate trigger channel is 1 at t_a only. Inputs are
[batch, time, frame_size + 1] float32: the flattened frame (pixels on [0, 1], channels last)
followed by the trigger. Targets are class 0 (null) at every step except t_a, where they are the
image class + 1. Every random draw is a pure function of the seed, so a trial batch is identified
by (seed, step) alone: that is the pipeline's whole state.

Training batches come from one of two interchangeable samplers (Config.trial_backend; the numpy
one's draws are in numpy_sampler.py):
  "numpy": `sample_numpy`, run by tf.data through tf.numpy_function. Its Gaussian noise is a
    vectorised Box-Muller transform of SFC64 uniforms written straight into the input tensor;
    numpy releases the GIL in these loops, so tf.data's parallel calls use every core. On a
    2-core CPU it makes about 2.6 times as many batches per second as the TF ops
    (benchmarks/RESULTS.md).
  "tf": `sample`, stateless TF ops (Philox). It needs no Python in the input pipeline, which a
    TPU whose input pipeline runs on a remote host requires.
The two draw different (identically distributed) trials from the same seed. Evaluation trials,
the slow-point analysis and the speed penalty's noise frames always use the TF ops.

The numpy sampler runs in a thread pool of its own, whose threads (on Linux) lower their
scheduling priority by `sampler_nice()` (default config.SAMPLER_NICE = 10). When the train step
and the sampler share the cores, the sampler then runs in the train step's gaps instead of
pre-empting one of its threads, which stalls the whole step (full trainer 0.88 -> 0.93 x the
bare step on 2 cores, benchmarks/RESULTS.md). It changes only speed, never which trials are
drawn.
"""

import os
import sys
import threading

import numpy as np
import tensorflow as tf

from haviv_tf.base import config as config_lib
from haviv_tf.task import curricula
from haviv_tf.task import datasets
from haviv_tf.task import numpy_sampler

NUM_OUTPUTS = config_lib.NUM_OUTPUTS
_BANK_STREAM = 0x7BA4C0DE  # folded into a seed for its noise bank's images (no time step is this)
_SPEED_STREAM = 0x5BEED  # folded into a step's seed for the speed penalty's noise frames
_sampler_nice = config_lib.SAMPLER_NICE


def sampler_nice() -> int:
  """How much the numpy sampler's threads lower their priority (Linux niceness; 0 = not)."""
  return _sampler_nice


def set_sampler_nice(nice: int) -> None:
  """Sets sampler_nice() for the training datasets made from now on (process-wide, like TF's
  own threading settings). Raises ValueError outside [0, config.MAX_NICE]."""
  global _sampler_nice
  if isinstance(nice, bool) or not isinstance(nice, (int, np.integer)) or not (
      0 <= nice <= config_lib.MAX_NICE):
    raise config_lib.InputError(f"sampler_nice must be an integer in [0, {config_lib.MAX_NICE}], got "
                     f"{nice!r}")
  _sampler_nice = int(nice)


def _lower_thread_priority(nice: int) -> None:
  """Sets the calling thread's niceness to the process's (its main thread's) plus `nice`
  (Linux; a no-op elsewhere, where setpriority would address a process). Idempotent: tf.data
  calls it on every batch, and Python keeps no per-thread state for TF's threads between calls.
  The thread must belong to the sampler's own pool: it cannot take its priority back."""
  if not nice or not sys.platform.startswith("linux"):
    return
  tid = threading.get_native_id()
  try:
    target = min(config_lib.MAX_NICE, os.getpriority(os.PRIO_PROCESS, os.getpid()) + nice)
    if os.getpriority(os.PRIO_PROCESS, tid) < target:
      os.setpriority(os.PRIO_PROCESS, tid, target)
  except OSError:
    pass  # a sandbox may forbid it; only speed is at stake


class TrialOps:
  """Stateless TF ops drawing trials from images grouped by class (the "tf" backend, evaluation
  trials, the slow-point analysis and the speed penalty's noise frames)."""

  def __init__(self, images, counts, offsets, mean, std, min_delay: int, report_weight: float,
               noise_bank: int):
    """Args:
      images: [N, frame_size] uint8, grouped by class.
      counts, offsets: [10] int, each class's number of images and first row in `images`.
      mean, std: [frame_size] float32 per-pixel statistics on [0, 1] pixels (channels tiled).
      min_delay, report_weight, noise_bank: as TrialGenerator's.
    """
    self.noise_bank = int(noise_bank)
    self._noise_sequence_graph = None   # noise_sequence's graph, built on its first eager call
    self.frame_size = int(images.shape[1])
    self.min_delay = int(min_delay)
    self.report_weight = float(report_weight)
    self._images = tf.constant(images)
    self._counts = tf.constant(counts, tf.int32)
    self._offsets = tf.constant(offsets, tf.int32)
    self.mean, self.std = mean, std
    self._mean = tf.constant(self.mean)
    self._std = tf.constant(self.std)

  # -- pieces shared by training batches and the streaming evaluator --------------------------

  def stimuli(self, seed, batch_size: int, num_classes=config_lib.NUM_CLASSES, classes=None):
    """Draws class-balanced stimuli.

    Args:
      seed: [2] int stateless seed.
      batch_size: trials.
      num_classes: classes 0 .. num_classes-1 are drawn uniformly (ignored if `classes` given).
      classes: optional [batch] int32 classes to draw images of.

    Returns:
      images [batch, frame_size] float32 on [0, 1], classes [batch] int32.
    """
    s_cls, s_idx = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if classes is None:
      u = tf.random.stateless_uniform([batch_size], s_cls)
      classes = tf.cast(tf.floor(u * tf.cast(num_classes, tf.float32)), tf.int32)
      classes = tf.minimum(classes, tf.cast(num_classes, tf.int32) - 1)
    classes = tf.convert_to_tensor(classes, tf.int32)
    counts = tf.gather(self._counts, classes)
    u = tf.random.stateless_uniform([batch_size], s_idx)
    within = tf.minimum(tf.cast(tf.floor(u * tf.cast(counts, tf.float32)), tf.int32), counts - 1)
    idx = tf.gather(self._offsets, classes) + within
    images = tf.cast(tf.gather(self._images, idx), tf.float32) / 255.0
    return images, classes

  def noise(self, seed, t, batch_size: int):
    """Noise frames [batch, frame_size] for time step `t` (same seed and t -> same noise).

    With a noise bank of K, frame i is `noise_bank_frames(seed)[noise_bank_index(seed, t)[i]]`.
    """
    if self.noise_bank:
      return tf.gather(self.noise_bank_frames(seed),
                       self.noise_bank_index(seed, t, batch_size))
    return self._fresh_noise(seed, t, batch_size)

  def _fresh_noise(self, seed, t, batch_size: int):
    """[batch, frame_size] noise images of their own (no bank)."""
    z = tf.random.stateless_normal([batch_size, self.frame_size],
                                   tf.random.experimental.stateless_fold_in(seed, t))
    return z * self._std + self._mean

  def noise_bank_frames(self, seed, size=None):
    """The bank's noise images [size (default noise_bank), frame_size] for `seed` (any t)."""
    size = self.noise_bank if size is None else int(size)
    z = tf.random.stateless_normal(
        [size, self.frame_size], tf.random.experimental.stateless_fold_in(seed, _BANK_STREAM))
    return z * self._std + self._mean

  def noise_bank_index(self, seed, t, batch_size: int, size=None):
    """Which bank image [batch] int32 each trial sees at time `t` (uniform, with replacement)."""
    size = self.noise_bank if size is None else int(size)
    return _uniform_int(tf.random.experimental.stateless_fold_in(seed, t), batch_size,
                        tf.fill([batch_size], size))

  def noise_sequence(self, seed, length: int, batch_size: int):
    """Noise frames [batch, length, frame_size]; frame t equals `noise(seed, t, batch)`.

    Called eagerly (the analyses' trials), it runs as one graph: an eager tf.map_fn over time
    costs about 30 ms a frame here. The values are the same (stateless random ops,
    tests/trials_test.py compares each frame with an eager `noise`).
    """
    if tf.executing_eagerly():
      if self._noise_sequence_graph is None:
        self._noise_sequence_graph = tf.function(self._noise_sequence)
      return self._noise_sequence_graph(tf.convert_to_tensor(seed),
                                        tf.constant(length, tf.int32),
                                        tf.constant(batch_size, tf.int32))
    return self._noise_sequence(seed, length, batch_size)

  def _noise_sequence(self, seed, length, batch_size):
    if self.noise_bank:  # the bank once, then every (trial, t)'s pick
      idx = tf.map_fn(lambda t: self.noise_bank_index(seed, t, batch_size), tf.range(length),
                      fn_output_signature=tf.int32)
      return tf.gather(self.noise_bank_frames(seed), tf.transpose(idx))
    z = tf.map_fn(lambda t: self.noise(seed, t, batch_size), tf.range(length),
                  fn_output_signature=tf.float32)
    return tf.transpose(z, [1, 0, 2])

  def stimulus_times(self, seed, batch_size: int, t_max, delay=None):
    """t_s [batch] and t_a [batch] int32.

    Training (delay None): t_s ~ U[0, t_max - min_delay - 1], t_a ~ U[t_s + min_delay, t_max - 1].
    Fixed delay d: t_a = t_s + d, with t_s ~ U[0, max(0, min(t_max - min_delay, t_max - d) - 1)],
    i.e. as in training when the delay fits in a training trial and t_s = 0 beyond that.
    """
    s_ts, s_ta = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    t_max = tf.cast(t_max, tf.int32)
    if delay is None:
      span = t_max - self.min_delay
    else:
      span = tf.maximum(1, tf.minimum(t_max - self.min_delay, t_max - tf.cast(delay, tf.int32)))
    t_s = _uniform_int(s_ts, batch_size, tf.fill([batch_size], span))
    if delay is None:
      t_a = t_s + self.min_delay + _uniform_int(s_ta, batch_size, t_max - t_s - self.min_delay)
    else:
      t_a = t_s + tf.cast(delay, tf.int32)
    return t_s, t_a

  # -- whole batches --------------------------------------------------------------------------

  def sample(self, seed, batch_size: int, length: int, t_max=None,
             num_classes=config_lib.NUM_CLASSES, delay=None, classes=None):
    """A batch of trials.

    Args:
      seed: [2] int stateless seed.
      batch_size: trials.
      length: frames per trial (static).
      t_max: maximum trial length of the curriculum stage (default `length`); steps >= t_max
        get loss weight 0. With `delay`, it only sets where t_s may fall.
      num_classes: classes shown; the others are masked out of the softmax.
      delay: optional fixed delay t_a - t_s (evaluation); needs length > max t_s + delay.
      classes: optional [batch] classes to show.

    Returns:
      dict of
        inputs: [batch, length, frame_size + 1] float32 (trigger last),
        labels: [batch, length] int32 (0 = null, c + 1 at t_a),
        weights: [batch, length] float32 (report_weight at t_a, 1 at other steps < t_max, else 0),
        class_mask: [batch, 11] bool (null and the classes shown),
        classes: [batch] int32, t_s: [batch] int32, t_a: [batch] int32.
    """
    t_max = length if t_max is None else t_max
    s_stim, s_time, s_noise = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    images, classes = self.stimuli(s_stim, batch_size, num_classes, classes)
    t_s, t_a = self.stimulus_times(s_time, batch_size, t_max, delay)
    frames = self.noise_sequence(s_noise, length, batch_size)
    steps = tf.range(length)[None, :]
    at_stim = tf.equal(steps, t_s[:, None])
    at_report = tf.equal(steps, t_a[:, None])
    frames = tf.where(at_stim[..., None], images[:, None, :], frames)
    trigger = tf.cast(at_report, tf.float32)[..., None]
    inputs = tf.concat([frames, trigger], axis=-1)
    labels, weights, class_mask = self._targets(classes, t_a, length, t_max, num_classes)
    return dict(inputs=inputs, labels=labels, weights=weights, class_mask=class_mask,
                classes=classes, t_s=t_s, t_a=t_a)

  def _targets(self, classes, t_a, length: int, t_max, num_classes, null_weight=1.0):
    """labels [batch, length] int32, weights [batch, length] float32 and class_mask [batch, 11]
    bool of trials showing `classes` [batch] int32 with report steps `t_a` [batch] int32.
    Null steps before t_max weigh `null_weight` (alpha, ReCu's ramp; else 1), the report step
    report_weight - 1 + alpha (the authors' (t_max - 1) Z Y + alpha Y, TMC L298)."""
    steps = tf.range(length)[None, :]
    at_report = tf.equal(steps, t_a[:, None])
    labels = tf.where(at_report, classes[:, None] + 1, 0)
    null_weight = tf.cast(null_weight, tf.float32)
    weights = tf.where(at_report, self.report_weight - 1.0 + null_weight, null_weight)
    weights = tf.where(steps < tf.cast(t_max, tf.int32), weights, 0.0)
    class_mask = tf.range(NUM_OUTPUTS)[None, :] <= tf.cast(num_classes, tf.int32)
    batch = classes.shape[0] if classes.shape[0] is not None else tf.shape(classes)[0]
    class_mask = tf.tile(class_mask, [batch, 1])
    return labels, weights, class_mask


class TrialGenerator(TrialOps):
  """Makes trial batches from one split of an image source: the TF ops (TrialOps), the numpy
  sampler (numpy_sampler) and the training pipeline."""

  def __init__(self, split: datasets.Split, mean, std, min_delay: int = 4,
               report_weight: float = 20.0, noise_bank: int = 0):
    """Args:
      split: images [N, H, W, C] uint8 and labels [N] int.
      mean, std: [C] per-channel pixel statistics on [0, 1] pixels.
      min_delay: t_a >= t_s + min_delay.
      report_weight: loss weight of the report step (null steps weigh 1).
      noise_bank: 0: every noise frame is an image of its own. K > 0: the noise frames drawn
        with one seed (a batch's, whatever t) are K images drawn once, picked uniformly with
        replacement for every (trial, t) (see `noise`).
    """
    if int(noise_bank) < 0:
      raise ValueError(f"noise_bank must be >= 0, got {noise_bank}")
    images = np.asarray(split.images)
    self.frame_shape = tuple(images.shape[1:])
    frame_size = int(np.prod(self.frame_shape))
    self.input_size = frame_size + 1
    labels = np.asarray(split.labels).astype(np.int64)
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=config_lib.NUM_CLASSES)
    # Images grouped by class, and where each class's images start: numpy for sample_numpy,
    # TF constants for the TF ops.
    self._images_np = images.reshape(len(images), -1)[order]
    self._counts_np = counts.astype(np.int64)
    self._offsets_np = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    channels = self.frame_shape[-1]
    reps = frame_size // channels
    super().__init__(self._images_np, self._counts_np, self._offsets_np,
                     np.tile(np.asarray(mean, np.float32).reshape(channels), reps),
                     np.tile(np.asarray(std, np.float32).reshape(channels), reps),
                     min_delay, report_weight, noise_bank)
    self._numpy = numpy_sampler.NumpySampler(self._images_np, self._counts_np, self._offsets_np,
                                             self.mean, self.std, self.min_delay)
    self._free_scratch = self._numpy.free_scratch  # the same list (tests count its buffers)

  def sample_numpy(self, seed: int, step: int, batch_size: int, length: int, t_max=None,
                   num_classes=config_lib.NUM_CLASSES):
    """A training batch drawn with numpy: `sample`'s layout, distributions and keys.

    Every draw comes from one SFC64 generator keyed by (seed, step): the same arguments give the
    same batch, on any machine. Noise: Box-Muller from float32 uniforms u1, u2 (the same
    transform TF's normal sampler applies to Philox uniforms), z = sqrt(-2 log(1 - u1)) cos or
    sin(2 pi u2), written into the input tensor in place.

    Args:
      seed, step: non-negative ints identifying the batch.
      batch_size, length: trials and frames per trial.
      t_max: maximum trial length of the curriculum stage (default `length`).
      num_classes: classes 0 .. num_classes - 1 are drawn uniformly; the others are masked.

    Returns:
      dict of numpy arrays as `sample` returns (the targets come from the same code as there).
    """
    t_max = length if t_max is None else t_max
    inputs, classes, t_s, t_a = self._numpy_draw(seed, step, batch_size, length, t_max,
                                                 num_classes)
    labels, weights, class_mask = (v.numpy() for v in self._targets(
        tf.constant(classes), tf.constant(t_a), length, t_max, num_classes))
    return dict(inputs=inputs, labels=labels, weights=weights, class_mask=class_mask,
                classes=classes, t_s=t_s, t_a=t_a)

  def _numpy_draw(self, seed, step, batch_size, length, t_max, num_classes):
    """sample_numpy's draws (numpy_sampler.NumpySampler.draw)."""
    return self._numpy.draw(seed, step, batch_size, length, t_max, num_classes)

  def training_dataset(self, seed: int, batch_size: int, length: int,
                       curriculum: curricula.Curriculum, start_step: int = 0,
                       num_steps=None, speed_noise: int = 0,
                       data_offset: int = 0, backend: str = "tf") -> tf.data.Dataset:
    """Batch k is the batch of training step start_step + k, seeded by (seed, step).

    Elements are (inputs, {"labels", "weights", "class_mask"}) as in `sample`. With
    `speed_noise` = K > 0 the targets also hold "speed_noise": K noise frames [K, frame_size]
    for the speed penalty, from a stream of their own (the trials do not change).
    `data_offset` shifts the trial stream (not the curriculum): step s draws the trials of
    step data_offset + s, so a fine-tuning run continues its parent's stream.
    `backend` picks the sampler: "tf" (`sample`) or "numpy" (`sample_numpy`); see the module
    docstring.
    """
    backends = config_lib.TRIAL_BACKENDS
    if backend not in backends:
      raise ValueError(f"unknown trial backend {backend!r}; valid: {', '.join(backends)}")
    if backend == "numpy" and self.noise_bank:
      raise ValueError("the numpy trial backend draws every noise frame fresh: a noise bank "
                       "needs backend tf")
    stop = np.iinfo(np.int64).max if num_steps is None else start_step + num_steps
    nice = sampler_nice()
    make = _batch_fn(self, seed, batch_size, length, curriculum, speed_noise, data_offset,
                     backend, nice)
    ds = tf.data.Dataset.range(start_step, stop)
    ds = ds.map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    if backend == "numpy" and nice:
      # The sampler's threads lower their priority for good, so they must be this pipeline's
      # own, not TF's shared pool that also runs the train step's ops.
      options = tf.data.Options()
      options.threading.private_threadpool_size = os.cpu_count() or 1
      ds = ds.with_options(options)
    return ds


def _batch_fn(gen: TrialGenerator, seed, batch_size, length, curriculum, speed_noise,
              data_offset, backend, nice):
  """TrialGenerator.training_dataset's map function: step -> (inputs, targets)."""
  offset = tf.constant(int(data_offset), tf.int64)

  def draw_numpy(step, t_max, num_classes):
    _lower_thread_priority(nice)
    inputs, classes, _, t_a = gen._numpy_draw(seed, step, batch_size, length, t_max,
                                               num_classes)
    return inputs, classes, t_a

  def make(step):
    _, num_classes, t_max = curriculum.at_tf(step)
    null_weight = curriculum.null_weight_tf(step)
    seed_t = tf.stack([tf.cast(seed, tf.int64), step + offset])
    if backend == "numpy":
      inputs, classes, t_a = tf.numpy_function(
          draw_numpy, [step + offset, t_max, num_classes], [tf.float32, tf.int32, tf.int32],
          stateful=False)
      inputs.set_shape([batch_size, length, gen.input_size])
      classes.set_shape([batch_size])
      t_a.set_shape([batch_size])
      labels, weights, class_mask = gen._targets(classes, t_a, length, t_max, num_classes,
                                                  null_weight)
      b = dict(inputs=inputs, labels=labels, weights=weights, class_mask=class_mask)
    else:
      b = gen.sample(seed_t, batch_size, length, t_max=t_max, num_classes=num_classes)
      b["weights"] = gen._targets(b["classes"], b["t_a"], length, t_max, num_classes,
                                   null_weight)[1]
    targets = {k: b[k] for k in ("labels", "weights", "class_mask")}
    if speed_noise:
      targets["speed_noise"] = gen._fresh_noise(
          tf.random.experimental.stateless_fold_in(seed_t, _SPEED_STREAM), 0, speed_noise)
    return b["inputs"], targets
  return make


def _uniform_int(seed, n, upper):
  """[n] int32 uniform on [0, upper) per element (upper >= 1)."""
  u = tf.random.stateless_uniform([n], seed)
  upper = tf.cast(upper, tf.int32)
  return tf.minimum(tf.cast(tf.floor(u * tf.cast(upper, tf.float32)), tf.int32), upper - 1)


def generator_for(source: datasets.Source, split: str, cfg: config_lib.Config) -> TrialGenerator:
  source = datasets.apply_recipe(source, cfg.data_recipe)
  return TrialGenerator(getattr(source, split), source.mean, source.std, cfg.min_delay,
                        cfg.report_weight, noise_bank=cfg.noise_bank if split == "train" else 0)
