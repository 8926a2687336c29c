"""Accuracy vs. delay on test trials, streamed step by step (no [trials x time x units] tensor)."""

import numpy as np
import tensorflow as tf

from haviv_tf.base import config as config_lib
from haviv_tf.models import network
from haviv_tf.probes import rollouts
from haviv_tf.task import trials

_EVAL_STREAM = 7_919  # separates evaluation seeds from the training stream (seed, step >= 0)
EVAL_NOISE_BANK = rollouts.EVAL_NOISE_BANK   # per evaluated delay (see Evaluator)


def for_config(model: network.DelayedClassifier, source, cfg: config_lib.Config) -> "Evaluator":
  """The evaluator of `cfg`'s runs on `source`'s test split: a CNN model trained with a noise
  bank is evaluated with a bank of EVAL_NOISE_BANK encoded noise images per delay, any other
  frame by frame."""
  return Evaluator(model, trials.generator_for(source, "test", cfg), cfg.seq_len,
                   noise_bank=rollouts.noise_bank_for(cfg, model))


class Evaluator:
  """Runs fixed-delay trials through a model with a compiled loop over time.

  Every non-stimulus frame is fresh noise, the trigger is on at t_a = t_s + delay only; t_s is
  placed as in training when the delay fits in a training trial and at 0 beyond that (see
  trials.TrialGenerator.stimulus_times). Classes are balanced: trial i shows class i mod 10.
  """

  def __init__(self, model: network.DelayedClassifier, generator: trials.TrialGenerator,
               t_max: int, jit_compile: bool = False, noise_bank: int = 0):
    """`jit_compile`: XLA-compile the loop over time (one compilation per trial count; the
    delay stays a tensor). The trials are the same either way.

    `noise_bank` K > 0 (a model with a CNN): the noise frames of one delay's trials are K
    images (`generator.noise_bank_frames`), each encoded by the CNN once, and trial i at time t
    sees image `generator.noise_bank_index(seed, t)[i]`: the trials a generator with a bank of
    K makes, at the cost of K + trials CNN passes per delay instead of trials x length.
    """
    if noise_bank and model.encoder is None:
      raise ValueError("a noise bank saves CNN passes: the model has no CNN")
    self.noise_bank = int(noise_bank)
    self.model, self.generator, self.t_max = model, generator, int(t_max)
    self.jit_compile = bool(jit_compile)
    self._run = tf.function(self._run_py, reduce_retracing=not jit_compile,
                            jit_compile=self.jit_compile)

  def _run_py(self, seed, delay, num_trials):
    gen, model = self.generator, self.model
    n = num_trials if isinstance(num_trials, int) else tf.cast(num_trials, tf.int32)
    stream = rollouts.Stream.split(seed, ("stimulus", "times", "noise"))
    classes = tf.math.floormod(tf.range(n), config_lib.NUM_CLASSES)
    images, classes = gen.stimuli(stream.stimulus, n, classes=classes)
    t_s, t_a = gen.stimulus_times(stream.times, n, self.t_max, delay)
    if self.noise_bank:  # features, then the trigger (as model.encode places it)
      bank = rollouts.encode_frames(model, gen.noise_bank_frames(stream.noise, self.noise_bank))
      stimuli = rollouts.encode_frames(model, images)
      frame_fn = rollouts.bank_frames(gen, stream.noise, n, bank, self.noise_bank)
    else:
      stimuli, frame_fn = images, lambda t: gen.noise(stream.noise, t, n)

    def on_step(t, state, logits, carry):
      del state
      report_pred, report_full, null_ok = carry
      at_report = tf.equal(t, t_a)
      pred11 = tf.argmax(logits, axis=-1, output_type=tf.int32)
      pred10 = tf.argmax(logits[:, 1:], axis=-1, output_type=tf.int32)
      report_pred = tf.where(at_report, pred10, report_pred)
      report_full = tf.where(at_report, tf.equal(pred11, classes + 1), report_full)
      null_ok = tf.logical_and(null_ok, tf.logical_or(t >= t_a, tf.equal(pred11, 0)))
      return report_pred, report_full, null_ok

    carry = (tf.zeros([n], tf.int32),  # argmax over the 10 classes at t_a
             tf.zeros([n], tf.bool),   # argmax over all 11 outputs is the class at t_a
             tf.ones([n], tf.bool))    # argmax is null at every step before t_a
    _, (report_pred, report_full, null_ok) = rollouts.loop(
        model, frame_fn, model.initial_state(n), tf.constant(0), tf.reduce_max(t_a) + 1, t_s,
        stimuli, trigger_at=t_a, on_step=on_step, carry=carry, encoded=bool(self.noise_bank))
    return (classes, tf.equal(report_pred, classes), tf.logical_and(report_full, null_ok),
            report_pred)

  def evaluate(self, delays, num_trials: int, seed: int, confusion: bool = False) -> dict:
    """Report-step and full-trial accuracy per delay, overall and per class.

    Args:
      delays: iterable of int delays (t_a - t_s).
      num_trials: trials per delay.
      seed: evaluation seed; the same seed gives the same trials.
      confusion: also return "report_confusion_by_delay": {delay: [10][10] trial counts, row
        the class shown, column the class reported at t_a (argmax over the 10 classes)}: where
        a forgotten class goes.

    Returns:
      {"accuracy_by_delay": {delay: acc}, "full_trial_accuracy_by_delay": {...},
       "per_class_accuracy_by_delay": {delay: [10 accs]},
       "per_class_full_trial_accuracy_by_delay": {...}, "trials_per_delay": {delay: n}}
      with delays as string keys (JSON).
    """
    out = {k: {} for k in ("accuracy_by_delay", "full_trial_accuracy_by_delay",
                           "per_class_accuracy_by_delay",
                           "per_class_full_trial_accuracy_by_delay", "trials_per_delay")}
    for delay in delays:
      s = tf.constant([seed, _EVAL_STREAM + int(delay)], tf.int64)
      # XLA needs the trial count (the batch) as a compile-time constant.
      n = int(num_trials) if self.jit_compile else tf.constant(int(num_trials))
      classes, report_ok, full_ok, report_pred = (v.numpy() for v in self._run(
          s, tf.constant(int(delay)), n))
      key = str(int(delay))
      if confusion:
        counts = np.zeros([config_lib.NUM_CLASSES] * 2, np.int64)
        np.add.at(counts, (classes, report_pred), 1)
        out.setdefault("report_confusion_by_delay", {})[key] = counts.tolist()
      out["accuracy_by_delay"][key] = float(report_ok.mean())
      out["full_trial_accuracy_by_delay"][key] = float(full_ok.mean())
      out["per_class_accuracy_by_delay"][key] = _per_class(classes, report_ok)
      out["per_class_full_trial_accuracy_by_delay"][key] = _per_class(classes, full_ok)
      out["trials_per_delay"][key] = int(num_trials)
    return out


def _per_class(classes, ok):
  return [float(ok[classes == c].mean()) if np.any(classes == c) else None
          for c in range(config_lib.NUM_CLASSES)]
