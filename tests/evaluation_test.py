"""The streaming evaluator against the same trials materialised and run through the model."""

from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from haviv_tf.base import config as config_lib
from haviv_tf.task import datasets
from haviv_tf.probes import evaluation
from haviv_tf.models import network
from haviv_tf.task import trials


class EvaluatorTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.source = datasets.load("mnist_sample")

  def _model(self, arch):
    keras.utils.set_random_seed(1)
    cfg = config_lib.resolve("quick", "mnist_sample", dict(arch=arch, units=12))
    model = network.build(cfg, self.source.frame_shape)
    # Scale the read-out so that predictions vary across steps and trials.
    model.head.kernel.assign(model.head.kernel * 20.0)
    return cfg, model

  @parameterized.parameters(("gru", 5), ("gru", 19), ("lstm", 10), ("lstm", 60))
  def test_streaming_matches_materialised_trials(self, arch, delay):
    cfg, model = self._model(arch)
    gen = trials.generator_for(self.source, "test", cfg)
    n, seed = 40, 3
    result = evaluation.Evaluator(model, gen, cfg.seq_len).evaluate([delay], n, seed,
                                                                    confusion=True)

    s = tf.constant([seed, evaluation._EVAL_STREAM + delay], tf.int64)  # pylint: disable=protected-access
    classes = tf.range(n) % 10
    probe = gen.sample(s, n, 200, t_max=cfg.seq_len, delay=delay, classes=classes)
    length = int(tf.reduce_max(probe["t_a"])) + 1
    batch = gen.sample(s, n, length, t_max=cfg.seq_len, delay=delay, classes=classes)
    logits, _ = model(batch["inputs"])
    logits = logits.numpy()
    t_a = batch["t_a"].numpy()
    np.testing.assert_array_equal(t_a - batch["t_s"].numpy(), delay)
    report = logits[np.arange(n), t_a]
    want_report = np.argmax(report[:, 1:], -1) == classes.numpy()
    pred11 = np.argmax(logits, -1)
    steps = np.arange(length)[None, :]
    null_ok = np.all((pred11 == 0) | (steps >= t_a[:, None]), axis=1)
    want_full = null_ok & (np.argmax(report, -1) == classes.numpy() + 1)

    key = str(delay)
    self.assertAlmostEqual(result["accuracy_by_delay"][key], want_report.mean(), places=6)
    self.assertAlmostEqual(result["full_trial_accuracy_by_delay"][key], want_full.mean(),
                           places=6)
    per_class = [want_report[classes.numpy() == c].mean() for c in range(10)]
    np.testing.assert_allclose(result["per_class_accuracy_by_delay"][key], per_class, atol=1e-6)
    self.assertEqual(result["trials_per_delay"], {key: n})
    # The confusion counts each trial once, at (class shown, class reported).
    want_confusion = np.zeros([10, 10], np.int64)
    np.add.at(want_confusion, (classes.numpy(), np.argmax(report[:, 1:], -1)), 1)
    np.testing.assert_array_equal(result["report_confusion_by_delay"][key], want_confusion)

  def test_same_seed_same_result_and_classes_balanced(self):
    cfg, model = self._model("gru")
    ev = evaluation.Evaluator(model, trials.generator_for(self.source, "test", cfg), cfg.seq_len)
    a = ev.evaluate([7, 30], 30, seed=5)
    b = ev.evaluate([7, 30], 30, seed=5)
    self.assertNotIn("report_confusion_by_delay", a)   # only when asked for
    self.assertEqual(a, b)
    self.assertEqual(set(a["accuracy_by_delay"]), {"7", "30"})

  def test_long_delay_runs_without_materialising_the_trial(self):
    cfg, model = self._model("gru")
    ev = evaluation.Evaluator(model, trials.generator_for(self.source, "test", cfg), cfg.seq_len)
    result = ev.evaluate([1000], 20, seed=0)
    # The same 20 trials materialised (t_s = 0, t_a = 1000) and run whole by the model.
    gen = trials.generator_for(self.source, "test", cfg)
    seed = tf.constant([0, evaluation._EVAL_STREAM + 1000], tf.int64)  # pylint: disable=W0212
    batch = gen.sample(seed, 20, 1001,
                       t_max=cfg.seq_len, delay=1000, classes=tf.range(20) % 10)
    logits = model(batch["inputs"])[0].numpy()
    t_a, classes = batch["t_a"].numpy(), batch["classes"].numpy()
    np.testing.assert_array_equal(t_a, 1000)
    at_report = logits[np.arange(20), t_a]
    report_ok = np.argmax(at_report[:, 1:], -1) == classes
    full_ok = (np.argmax(at_report, -1) == classes + 1) & np.all(
        np.argmax(logits[:, :1000], -1) == 0, axis=1)
    self.assertAlmostEqual(result["accuracy_by_delay"]["1000"], report_ok.mean(), places=6)
    self.assertAlmostEqual(result["full_trial_accuracy_by_delay"]["1000"], full_ok.mean(),
                           places=6)


_PEAK_SCRIPT = """
import resource, sys
import keras
from haviv_tf.base import config as config_lib
from haviv_tf.task import datasets
from haviv_tf.probes import evaluation
from haviv_tf.models import network
from haviv_tf.task import trials
source = datasets.load("mnist_sample")
keras.utils.set_random_seed(0)
cfg = config_lib.resolve("quick", "mnist_sample", dict(units=256))
model = network.build(cfg, source.frame_shape)
ev = evaluation.Evaluator(model, trials.generator_for(source, "test", cfg), cfg.seq_len)
for delay in (50, int(sys.argv[1])):
  ev.evaluate([delay], 32, 0)
  print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
"""


def test_evaluation_memory_does_not_grow_with_the_delay():
  # Measured, in a process of its own: the peak resident set after delay 50 and after delay
  # 4000. Keeping the states [32 x 4000 x 256] would add 131 MB, the inputs [32 x 4000 x 785]
  # 400 MB; streamed, neither exists.
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, "4000"], capture_output=True,
                       text=True, timeout=300, check=True).stdout.split()
  short_kb, long_kb = int(out[-2]), int(out[-1])
  assert long_kb - short_kb < 60 * 1024, (short_kb, long_kb)
