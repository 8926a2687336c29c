"""Training throughput: the full trainer vs. the bare train step, and trial synthesis rate.

  python3 benchmarks/train_throughput.py [--data_dir ../shared/data] [--steps 200]
      [--repeats 3] [--trial_backend numpy|tf] [--sampler_nice 10]
      [--dataset mnist|cifar10] [--precision float32|mixed_bfloat16] [--jit_compile 0|1]
      [--noise_bank K]   (unset: the preset's)

For GRU and LSTM at paper size (MNIST: 200 units, batch 128; CIFAR-10: the CNN front end on
every frame, 512 units, batch 64; 20 frames) it measures, in one run:
  full     steps/s of train.train(): tf.data trial synthesis + fit() + train_step + TensorBoard
           scalars + checkpoint, timed over the second of two fit() epochs (the first traces);
  compute  steps/s of the same train_step fed one pre-built batch (no input pipeline), in
           tf.function with XLA as fit() runs it (--jit_compile);
  fit only steps/s of train.train() with the trial pipeline swapped for one pre-built batch
           repeated: fit() + callbacks + checkpoint without synthesis, which splits the gap
           between full and compute into synthesis and the rest;
  trials   batches/s of the trial pipeline alone (tf.data, parallel map, prefetch), for the
           trial backend the trainer used and, for comparison, for the other one;
and the achieved GFLOP/s from an analytic count of the step's matmul and convolution FLOPs
(forward + backward; the CNN's counted from its layers' shapes, `encoder_flops`).
full, fit only and compute are measured in alternation, --repeats rounds; the table gives their
medians and the median (range) of the per-round ratios. Prints a Markdown table with the machine
context.
"""

import argparse
import contextlib
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

import common  # pylint: disable=g-bad-import-order  (benchmarks/common.py)
from haviv_tf.base import config as config_lib
from haviv_tf.task import curricula
from haviv_tf.training import checkpoints
from haviv_tf.training import train
from haviv_tf.task import trials


class _EpochTimer(keras.callbacks.Callback):

  def __init__(self):
    super().__init__()
    self.times = []

  def on_epoch_begin(self, epoch, logs=None):
    self._t = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    self.times.append(time.perf_counter() - self._t)


def encoder_flops(encoder):
  """(forward FLOPs per frame of the CNN front end, those of its first layer): 2 x multiply-adds
  of every convolution (at its output's size) and dense layer; pooling and activations not
  counted."""
  if encoder is None:
    return 0, 0
  total, first = 0, None
  shape = (1,) + tuple(encoder.frame_shape)
  for layer in encoder.blocks + [encoder.flatten]:
    out = layer.compute_output_shape(shape)
    kernel = getattr(layer, "kernel", None)
    if kernel is not None:  # a convolution: kh x kw x c_in x c_out per output position
      kh, kw, cin, cout = kernel.shape
      f = 2 * out[1] * out[2] * kh * kw * cin * cout
      total += f
      first = f if first is None else first
    shape = out
  for layer in encoder.dense_layers:
    total += 2 * int(layer.kernel.shape[0]) * int(layer.kernel.shape[1])
  return total, first or 0


def step_flops(cfg, input_size, encoder=None):
  """Matmul and convolution FLOPs of one training step (forward + backward; no gradient with
  respect to the frames themselves). `input_size` is what the recurrent cell reads per step.
  With a noise bank the CNN's FLOPs are those of the distinct frames it encodes."""
  b, t, u = cfg.batch_size, cfg.seq_len, cfg.units
  g = (3 if cfg.arch == "gru" else 4) * u
  cnn, first = encoder_flops(encoder)
  # The cell's input projection: the pixels (no input gradient) or CNN features (input gradient
  # flows back into the CNN).
  proj = 2 * b * t * input_size * g        # W x for all frames
  rec = 2 * b * t * u * g                  # U h per step
  head = 2 * b * t * u * 11
  frames = b * t
  if cfg.noise_bank and encoder is not None:
    # The CNN encodes each distinct frame once: the b stimuli and the expected number of
    # distinct bank images among b (t - 1) uniform picks from K.
    k = cfg.noise_bank
    frames = b + k * (1.0 - (1.0 - 1.0 / k) ** (b * (t - 1)))
  cnn_step = frames * (3 * cnn - first)    # fwd + weight grad + input grad (none into frames)
  return (3 if encoder is not None else 2) * proj + 3 * rec + 3 * head + cnn_step


@contextlib.contextmanager
def _prebuilt_trials(batch):
  """Makes TrialGenerator.training_dataset repeat `batch` (same element structure)."""
  original = trials.TrialGenerator.training_dataset

  def repeat(self, *args, **kwargs):
    del self, args, kwargs
    targets = {k: batch[k] for k in ("labels", "weights", "class_mask")}
    return tf.data.Dataset.from_tensors((batch["inputs"], targets)).repeat()
  trials.TrialGenerator.training_dataset = repeat
  try:
    yield
  finally:
    trials.TrialGenerator.training_dataset = original


def _fit_rate(cfg, source, steps):
  """steps/s of train.train() over the second of two epochs of `steps` steps."""
  with tempfile.TemporaryDirectory() as workdir:
    full_cfg = config_lib.Config.from_dict(dict(
        cfg.to_dict(), train_steps=2 * steps, checkpoint_every=steps, log_every=100))
    timer = _EpochTimer()
    train.train(full_cfg, workdir, source, verbose=0, extra_callbacks=[timer])
    return steps / timer.times[1]


def bench(cfg, source, steps, repeats):
  """Every figure is the median of `repeats` measurements; full, fit only and bare alternate, so
  that a slow spell of the machine hits all three alike. The ratios are medians of the
  per-round ratios, with their range."""
  keras.utils.set_random_seed(0)
  with tempfile.TemporaryDirectory() as workdir:
    run = checkpoints.Run(cfg, workdir, source.frame_shape)
  gen = trials.generator_for(source, "train", cfg)
  batch = gen.sample(tf.constant([0, 1], tf.int64), cfg.batch_size, cfg.seq_len)
  data = (batch["inputs"], {k: batch[k] for k in ("labels", "weights", "class_mask")})
  # The trainer's own step: XLA-compiled as fit() compiles it (cfg.jit_compile).
  step = tf.function(lambda: run.model.train_step(data), jit_compile=cfg.jit_compile)
  step()
  for _ in range(5):
    step()

  def bare_rate():
    t0 = time.perf_counter()
    for _ in range(steps):
      logs = step()
    float(logs["loss"])
    return steps / (time.perf_counter() - t0)

  rounds = []
  for _ in range(repeats):
    r = {"full": _fit_rate(cfg, source, steps)}
    with _prebuilt_trials(batch):
      r["fit_only"] = _fit_rate(cfg, source, steps)
    r["compute"] = bare_rate()
    rounds.append(r)
  out = {k: float(np.median([r[k] for r in rounds])) for k in rounds[0]}
  for name, num in (("full_ratio", "full"), ("fit_only_ratio", "fit_only")):
    ratios = [r[num] / r["compute"] for r in rounds]
    out[name] = (float(np.median(ratios)), min(ratios), max(ratios))

  for backend in config_lib.TRIAL_BACKENDS:
    if backend == "numpy" and gen.noise_bank:  # the numpy sampler has no noise bank
      out["trials_" + backend] = float("nan")
      continue
    ds = gen.training_dataset(0, cfg.batch_size, cfg.seq_len, curricula.for_config(cfg),
                              backend=backend)
    it = iter(ds)
    for _ in range(20):
      next(it)
    n = 5 * steps
    t0 = time.perf_counter()
    for _ in range(n):
      next(it)
    out["trials_" + backend] = n / (time.perf_counter() - t0)
  out["trials"] = out["trials_" + cfg.trial_backend]
  encoder = getattr(run.model, "encoder", None)
  cell_input = run.model.feature_size
  flops = step_flops(cfg, cell_input, encoder)
  out["tflop_per_step"] = flops / 1e12
  out["gflops"] = flops * out["compute"] / 1e9
  out["gflops_full"] = flops * out["full"] / 1e9
  return out


def _ratio(r):
  median, lo, hi = r
  return f"{median:.2f} ({lo:.2f}-{hi:.2f})"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", default=common.DEFAULT_DATA_DIR)
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--archs", default="gru,lstm")
  parser.add_argument("--repeats", type=int, default=3,
                      help="rounds of (full, fit only, bare); figures are their medians")
  parser.add_argument("--trial_backend", default=None,
                      choices=config_lib.TRIAL_BACKENDS, help="the full trainer's trial sampler (default: the preset's)")
  parser.add_argument("--jit_compile", type=int, default=None, choices=(0, 1),
                      help="XLA-compile the step (main's --jit_compile); 0: without XLA "
                      "(default: the preset's)")
  parser.add_argument("--noise_bank", type=int, default=None,
                      help="noise images per batch (main's --noise_bank; 0: every frame its "
                      "own; default: the preset's)")
  parser.add_argument("--preset", default="paper", choices=config_lib.PRESET_NAMES)
  parser.add_argument("--dataset", default="mnist", choices=("mnist", "cifar10"))
  parser.add_argument("--precision", default=None, choices=config_lib.PRECISIONS,
                      help="default: the preset's")
  parser.add_argument("--sampler_nice", type=int, default=config_lib.SAMPLER_NICE,
                      help="niceness the numpy sampler's threads add (main's --sampler_nice)")
  args = parser.parse_args()
  try:
    trials.set_sampler_nice(args.sampler_nice)
  except ValueError as e:
    parser.error(str(e))
  try:
    source = common.load_source(args.dataset, args.data_dir)
  except ValueError as e:  # datasets.DataError: no such data under --data_dir
    parser.exit(1, f"error: {e}\n")
  print(common.machine_context())
  overrides = dict(trial_backend=args.trial_backend, precision=args.precision,
                   noise_bank=args.noise_bank,
                   jit_compile=None if args.jit_compile is None else bool(args.jit_compile))
  try:
    base = config_lib.resolve(args.preset, args.dataset, dict(protocol="nacu", **overrides))
  except config_lib.InputError as e:
    parser.exit(1, f"error: {e}\n")
  print(f"data: {source.origin}; {args.steps} timed steps per figure, median of {args.repeats} "
        f"rounds; trial backend of the full trainer: {base.trial_backend}, sampler_nice "
        f"{args.sampler_nice}; preset {args.preset}, dataset {args.dataset}, precision "
        f"{base.precision}, jit_compile {base.jit_compile}, noise_bank {base.noise_bank}\n")
  other = [b for b in config_lib.TRIAL_BACKENDS if b != base.trial_backend][0]
  print(f"| arch | full trainer steps/s | bare train_step steps/s | full / bare | "
        f"fit only steps/s | fit only / bare | "
        f"trial batches/s ({base.trial_backend}) | trials / full | trial batches/s ({other}) | "
        f"GFLOP/s (bare) | GFLOP/s (full) | TFLOP per step |")
  print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
  for arch in args.archs.split(","):
    cfg = config_lib.resolve(args.preset, args.dataset, dict(
        arch=arch, protocol="nacu", seed=0, **overrides))
    r = bench(cfg, source, args.steps, args.repeats)
    print(f"| {arch} | {r['full']:.2f} | {r['compute']:.2f} | {_ratio(r['full_ratio'])} | "
          f"{r['fit_only']:.2f} | {_ratio(r['fit_only_ratio'])} | {r['trials']:.1f} | {r['trials'] / r['full']:.1f} | {r['trials_' + other]:.1f} | "
          f"{r['gflops']:.1f} | {r['gflops_full']:.1f} | {r['tflop_per_step']:.3f} |", flush=True)
  print(f"\nload average after: {common.load_average()}")


if __name__ == "__main__":
  main()
