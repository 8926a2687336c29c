"""Run configuration: frozen dataclass, presets as deltas, validation, JSON round trip."""

import dataclasses
import json
from typing import Any, Mapping

PROTOCOLS = ("vocu", "decu", "nacu", "recu")
DATASETS = ("mnist", "mnist_sample", "cifar10")
ARCHS = ("gru", "lstm")
FINETUNE_MODES = ("control", "slow_points", "center_mass")
SPEED_TARGETS = ("none", "slow_points", "center_mass")
READOUTS = ("sigmoid", "linear")
LR_SCHEDULES = ("step", "cosine")
TRIAL_BACKENDS = ("numpy", "tf")
INITS = ("authors", "tf1")          # Config.init
CNNS = ("authors", "keras")         # Config.cnn
LOSS_NORMS = ("authors", "weights")  # Config.loss_norm
MASKS = ("authors", "hard")         # Config.mask
DATA_RECIPES = ("authors", "all")   # Config.data_recipe
PRESET_NAMES = ("paper", "quick")
PRECISIONS = ("float32", "mixed_bfloat16")
SP_RECIPES = ("default", "paper")  # slow-point recipes (haviv_tf.probes.slow_points, --sp_recipe)
# tf.distribute strategies for training (haviv_tf.training.distribute). Not a Config field: the strategy
# does not change what a run computes.
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
# Niceness the numpy trial sampler's threads add to their own (haviv_tf.task.trials; Linux). Not a
# Config field either: it changes speed only.
SAMPLER_NICE = 10
MAX_NICE = 19
MAX_EVAL_TRIALS = 1_000_000  # Config.eval_trials' (and --eval_trials') upper bound
NUM_CLASSES = 10          # image classes; the network has NUM_CLASSES + 1 outputs (null first)
NUM_OUTPUTS = NUM_CLASSES + 1  # the read-out: null, then the 10 classes
# results.json's slow_points_format: the version of the search and its per-point diagnostics
# (haviv_tf.probes.slow_points writes it, study.correlations reads it; TF-free here).
SLOW_POINTS_FORMAT = 2
# Memory predictors (haviv_tf.probes.predictors): name -> +1 if a larger value should mean longer
# memory, -1 if shorter (study.correlations orients by it; TF-free here).
PREDICTORS = {"speed": -1, "expected_speed": -1, "time_constant": +1, "com_drift": -1,
              "spread_rate": -1, "accuracy_decay": -1}


class InputError(ValueError):
  """Bad input: flags, config, data or workdir. The message is one line meant for the user.

  Everything the command line reports as `error: ...` is an InputError (datasets.DataError,
  artifacts.RunError and main.UsageError derive from it); any other exception is a bug.
  """


def _field(default, doc):
  """A Config field with its documentation: the one source of its --help text."""
  return dataclasses.field(default=default, metadata={"help": doc})


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything that determines a training run (and so its results).

  Each field's metadata["help"] documents it (unit, range); main.py makes it the --help of the
  field's flag, with the presets' defaults (preset_defaults) appended.
  """
  protocol: str = _field("vocu", "curriculum: vocu | decu | nacu | recu")
  dataset: str = _field("mnist", "data set: mnist | mnist_sample | cifar10")
  arch: str = _field("gru", "recurrent cell: gru | lstm")
  preset: str = _field("paper", "the preset this config was resolved from: paper | quick")
  units: int = _field(200, "recurrent units (positive integer)")
  readout: str = _field(
      "sigmoid", 'read-out: "sigmoid" = softmax(sigmoid(W h + b)) as the authors\' code, or '
      '"linear" = softmax(W h + b)')
  learning_rate: float = _field(1e-5, "Adam learning rate (positive, finite)")
  lr_schedule: str = _field(
      "step", '"step" (the paper\'s: one drop by lr_decay_factor) or "cosine" (linear '
      'warm-up, then a half cosine)')
  lr_decay_step: int = _field(
      119_998, "(step schedule) updates after lr_decay_step + 1 use learning_rate x "
      "lr_decay_factor (updates; positive integer; rescaled with --train_steps unless given)")
  lr_decay_factor: float = _field(
      0.1, "(step) the factor of the drop; (cosine) the final rate / learning_rate (positive)")
  warmup_steps: int = _field(
      0, "(cosine) linear warm-up from 0 to learning_rate (updates; 0 <= n < train_steps)")
  batch_size: int = _field(128, "trials per training step (positive integer)")
  train_steps: int = _field(
      140_000, "training steps (updates; positive integer; curriculum stage boundaries scale "
      "with it; alias --steps)")
  seq_len: int = _field(
      20, "frames per training trial, T_max at the end of every curriculum (frames; > "
      "min_delay; decu: >= 6)")
  min_delay: int = _field(4, "shortest delay: t_a >= t_s + min_delay (frames; positive integer)")
  report_weight: float = _field(
      20.0, "loss weight of the report step; null steps weigh 1 (positive; recu: > 1)")
  seed: int = _field(0, "initialisation and trial seed (integer in [0, 2**31))")
  trial_backend: str = _field(
      "numpy", 'training-trial sampler: "numpy" (fast on CPU) or "tf" (no Python)')
  data_dir: str = _field(
      "", 'tensorflow-datasets cache, or folder with the canonical files; "" = the tfds default')
  eval_delays: tuple = _field(
      (5, 10, 19, 50, 100, 200, 500, 1000),
      "delays evaluated after training (frames, comma-separated; each >= min_delay)")
  eval_trials: int = _field(
      1000, "test trials per evaluated delay (positive integer, at most 1,000,000)")
  checkpoint_every: int = _field(1000, "steps between checkpoints, the resume points (positive)")
  keep_checkpoints: int = _field(3, "most recent resume points kept (positive integer)")
  log_every: int = _field(100, "steps between TensorBoard training scalars (positive integer)")
  speed_weight: float = _field(
      0.0, "mu of the speed penalty mu * sum_k ||F(s_k, x_k) - s_k||^2 over speed_copies copies "
      "of each class's target s_k, each with a fresh noise frame x_k (trigger off) every step "
      "(non-negative, finite; 0 = off; the control fine-tuning logs the speed at mu = 0). "
      "Fine-tuning (--mode=finetune / compare) sets it unless given: paper preset 1e-3 "
      "(MNIST) or 1e-2 (CIFAR-10), quick preset 1e-2")
  speed_targets: str = _field(
      "none", 'targets s_k of the speed penalty: "none" | "center_mass" | "slow_points" '
      "(slow_points: fine-tuning only)")
  speed_copies: int = _field(10, "copies of each class's speed target per step (positive)")
  speed_refresh_every: int = _field(
      0, "training from scratch with a speed penalty: re-estimate the class centres every N "
      "steps (non-negative; 0 when fine-tuning)")
  finetune: str = _field(
      "", '"" (trained from scratch) or the fine-tuning: control | slow_points | center_mass '
      "(with --mode=finetune)")
  data_offset: int = _field(
      0, "the trial stream starts at this step (non-negative; fine-tuning continues the "
      "parent's)")
  precision: str = _field(
      "float32", '"float32" or "mixed_bfloat16" (bfloat16 input projection / CNN in training)')
  jit_compile: bool = _field(
      True, "XLA-compile the train and test steps and the slow-point search (speed only; "
      "evaluation's loop over time is never compiled; true | false)")
  noise_bank: int = _field(
      0, "0: every noise frame its own image (the paper's); K > 0: a training batch draws its "
      "noise frames from K images and the CNN encodes each distinct frame once (images; "
      "non-negative; needs trial_backend tf)")
  history_every: int = _field(
      5_000, "back-tracking snapshots every N steps, plus every stage change (steps; "
      "non-negative; 0 = none)")
  keep_history: int = _field(
      32, "back-tracking snapshot cap: beyond it the cadence doubles and old ones thin out "
      "(positive integer)")
  # Fidelity to the authors' TF1 code (docs/fidelity.md); `paper` takes the authors' choice.
  init: str = _field(
      "authors", '"authors": randn/sqrt(fan_in) weights, 0.01 randn biases; "tf1": TF1\'s '
      "GRUCell/LSTMCell (one glorot-uniform draw over [x, h])")
  cnn: str = _field(
      "authors", 'CIFAR-10 CNN: "authors" (3 dense layers, scaled conv variables) | "keras"')
  loss_norm: str = _field(
      "authors", '"authors": sum w CE / (batch x 11 x seq_len); "weights": sum w CE / sum w')
  log_eps: float = _field(
      1e-4, "CE = -log(p + log_eps), the authors' 1e-4; 0: exact log-softmax (in [0, 1))")
  mask: str = _field(
      "authors", 'classes not shown: "authors" logits x -1000 (sigmoid read-out only); '
      '"hard" logit -1e9')
  data_recipe: str = _field(
      "authors", '"authors": TF1\'s 55k MNIST train split, first n-1 images per class (n: '
      'smallest class), CIFAR-10 scalar noise; "all": the data set as '
      "loaded, unchanged")

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["eval_delays"] = list(self.eval_delays)
    return d

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "Config":
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
      raise InputError(f"unknown config fields {unknown}; allowed: {sorted(names)}")
    d = dict(d)
    if "eval_delays" in d:
      d["eval_delays"] = tuple(int(v) for v in d["eval_delays"])
    return cls(**d)

  @classmethod
  def from_record(cls, d: Mapping[str, Any]) -> "Config":
    """A run's recorded config (config.json). Fields added after the run was made take the
    value that reproduces what it did, not today's default (see _RECORD_DEFAULTS)."""
    return cls.from_dict({**_RECORD_DEFAULTS, **d})


# Fields whose default changed after runs were recorded without them: a config.json that lacks
# one was made with this value.
_RECORD_DEFAULTS = {"trial_backend": "tf", "init": "tf1", "cnn": "keras", "loss_norm": "weights",
                    "log_eps": 0.0, "mask": "hard", "data_recipe": "all", "jit_compile": False}


# The authors' learning-rate drop: updates 1 .. 119,999 at the full rate, from update 120,000 on
# (TriggerMNISTCloud.py L327-328) at a tenth. lr_schedule keeps the full rate for updates
# 1 .. lr_decay_step + 1, so the paper's lr_decay_step is 119,998 (CIFAR-10: 279,998).
PAPER = Config()
# The quick preset compresses every curriculum in proportion (curricula.py scales boundaries with
# train_steps) and trains MNIST networks at lr 3e-3 (CIFAR-10: 3e-4, below); the rates tried are
# in benchmarks/RESULTS.md. The linear readout is used because the authors' sigmoid readout caps
# every logit in (0, 1), which slows learning so much that 3k steps do not suffice.
QUICK = dataclasses.replace(
    PAPER, preset="quick", readout="linear", learning_rate=3e-3, train_steps=3_000,
    lr_decay_step=2_600, checkpoint_every=500, log_every=50, history_every=250,
    init="tf1", cnn="keras", loss_norm="weights", log_eps=0.0, mask="hard", data_recipe="all")

# Dataset deltas (paper): CIFAR-10 networks are larger and train longer.
_CIFAR_PAPER = dict(units=512, learning_rate=1e-4, batch_size=64, train_steps=300_000,
                    lr_decay_step=279_998)
# Quick CIFAR-10 networks draw a batch's noise frames from 256 images (the CNN, most of a step's
# FLOPs, then encodes at most 64 + 256 frames instead of 64 x 20) and run the step without XLA,
# with the CNN in bfloat16: on the 2-core development machine XLA halved the CNN step's rate,
# bfloat16 raised it 1.6-1.7x and the bank 2.7x (benchmarks/RESULTS.md, "CIFAR-10").
# Rate and length from a measured learning curve (experiments/cifar10_quick.md): at 1e-3 the
# DeCu GRU collapsed to the all-null output after step 2500; at 3e-4 it learned steadily to
# step 4000.
_CIFAR_QUICK = dict(units=512, learning_rate=3e-4, batch_size=64, train_steps=4_000,
                    lr_decay_step=3_467, noise_bank=256, jit_compile=False, trial_backend="tf",
                    precision="mixed_bfloat16")

# Fine-tuning (control of memory): the paper's mu and length. Quick networks fine-tune for a
# tenth of their training (MNIST: 300 of 3000 steps) at mu 1e-2: the setting the MNIST
# dose-response over {107, 300, 1000, 3000} steps x mu {1e-4 .. 1e-1} showed the penalty's
# effect most clearly at (experiments/dose_response.md); quick CIFAR-10 networks take the same
# rule (not measured on CIFAR-10; the paper's 5000 of 300k steps scaled down would be a few dozen
# steps, the least consistent length on MNIST). Every preset fine-tunes at its own training
# learning rate.
FINETUNE_SPEED_WEIGHT = {"mnist": 1e-3, "mnist_sample": 1e-3, "cifar10": 1e-2}
FINETUNE_PAPER_STEPS = 5_000
QUICK_FINETUNE = {"mnist": (0.1, 1e-2), "mnist_sample": (0.1, 1e-2),  # (fraction, mu)
                  "cifar10": (0.1, 1e-2)}

PRESETS = {"paper": PAPER, "quick": QUICK}


def preset(name: str, dataset: str = "mnist") -> Config:
  """The named preset for `dataset`, before flag overrides."""
  if name not in PRESETS:
    raise InputError(f"unknown preset {name!r}; valid: {', '.join(PRESET_NAMES)}")
  if dataset not in DATASETS:
    raise InputError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}")
  cfg = dataclasses.replace(PRESETS[name], dataset=dataset)
  if dataset == "cifar10":
    cfg = dataclasses.replace(cfg, **(_CIFAR_PAPER if name == "paper" else _CIFAR_QUICK))
  return cfg


def _show(value) -> str:
  if isinstance(value, bool):
    return str(value).lower()
  if isinstance(value, float) and 0 < abs(value) < 0.01:
    mantissa, exponent = f"{value:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
  if isinstance(value, float):
    return f"{value:g}"
  if isinstance(value, tuple):
    return ",".join(str(v) for v in value)
  if value == "":
    return '""'
  return str(value)


def preset_defaults(name: str) -> str:
  """Field `name`'s value in each preset, e.g. "quick: 0.003 (cifar10: 0.0003); paper: 1e-05
  (cifar10: 0.0001)": the MNIST value, and the CIFAR-10 one where it differs."""
  parts = []
  for p in sorted(PRESETS):
    mnist, cifar = getattr(preset(p, "mnist"), name), getattr(preset(p, "cifar10"), name)
    parts.append(f"{p}: {_show(mnist)}" + (f" (cifar10: {_show(cifar)})" if cifar != mnist
                                           else ""))
  return "; ".join(parts)


def field_help(name: str) -> str:
  """The documentation of Config field `name` (its metadata) and its presets' defaults: the
  --help of the field's flag."""
  field = {f.name: f for f in dataclasses.fields(Config)}[name]
  return f"{field.metadata['help']}. Default by preset: {preset_defaults(name)}."


def resolve(preset_name: str, dataset: str, overrides: Mapping[str, Any]) -> Config:
  """Preset + explicit overrides, validated.

  When `train_steps` is overridden but `lr_decay_step` is not, the decay step keeps its place
  as a fraction of the run, as the curriculum boundaries do.
  """
  cfg = preset(preset_name, dataset)
  overrides = {k: v for k, v in overrides.items() if v is not None}
  if "train_steps" in overrides and "lr_decay_step" not in overrides:
    steps = int(overrides["train_steps"])
    if steps > 0:
      overrides["lr_decay_step"] = max(1, round(cfg.lr_decay_step * steps / cfg.train_steps))
  cfg = dataclasses.replace(cfg, **overrides)
  validate(cfg)
  return cfg


def validate(cfg: Config) -> None:
  """Raises InputError naming the field, its value and what is allowed."""
  _check_choices(cfg)
  _check_numbers(cfg)
  _check_speed_penalty(cfg)
  _check_schedule_and_trials(cfg)


# Fields taking one of a few names, in the order they are checked.
_CHOICES = (("protocol", PROTOCOLS), ("dataset", DATASETS), ("arch", ARCHS),
            ("readout", READOUTS), ("lr_schedule", LR_SCHEDULES),
            ("trial_backend", TRIAL_BACKENDS), ("preset", PRESET_NAMES),
            ("speed_targets", SPEED_TARGETS), ("init", INITS), ("cnn", CNNS),
            ("loss_norm", LOSS_NORMS), ("mask", MASKS), ("data_recipe", DATA_RECIPES))
_POSITIVE_INTS = ("units", "batch_size", "train_steps", "seq_len", "min_delay", "eval_trials",
                  "checkpoint_every", "keep_checkpoints", "log_every", "lr_decay_step",
                  "speed_copies", "keep_history")
_POSITIVE_FINITE = ("learning_rate", "lr_decay_factor", "report_weight")
_NON_NEGATIVE_INTS = ("speed_refresh_every", "data_offset", "history_every", "warmup_steps",
                      "noise_bank")


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _choice(cfg, name, allowed):
  value = getattr(cfg, name)
  if value not in allowed:
    raise InputError(f"unknown {name} {value!r}; valid: {', '.join(allowed)}")


def _check_choices(cfg: Config) -> None:
  """The named choices, and the flags that only combine in some ways."""
  for name, allowed in _CHOICES:
    _choice(cfg, name, allowed)
  if cfg.mask == "authors" and cfg.readout != "sigmoid":
    raise InputError("`mask` authors multiplies the logits by -1000, which masks only the "
                     "sigmoid read-out's positive logits; use --mask=hard with --readout=linear")
  eps = cfg.log_eps
  if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps < 1:
    raise InputError(f"`log_eps` must be a number in [0, 1), got {eps!r}")
  _choice(cfg, "precision", PRECISIONS)
  if not isinstance(cfg.jit_compile, bool):
    raise InputError(f"`jit_compile` must be true or false, got {cfg.jit_compile!r}")
  if cfg.finetune:
    _choice(cfg, "finetune", FINETUNE_MODES)


def _check_numbers(cfg: Config) -> None:
  """The table of range checks, and the noise bank's needs."""
  if isinstance(cfg.eval_trials, int) and cfg.eval_trials > MAX_EVAL_TRIALS:
    raise InputError(f"`eval_trials` must be at most {MAX_EVAL_TRIALS:,}, got {cfg.eval_trials}")
  for name in _POSITIVE_INTS:
    value = getattr(cfg, name)
    if not _is_int(value) or value <= 0:
      raise InputError(f"`{name}` must be a positive integer, got {value!r}")
  for name in _POSITIVE_FINITE:
    value = getattr(cfg, name)
    if (not isinstance(value, (int, float)) or not value > 0 or value != value
        or value == float("inf")):
      raise InputError(f"`{name}` must be a positive finite number, got {value!r}")
  for name in _NON_NEGATIVE_INTS:
    value = getattr(cfg, name)
    if not _is_int(value) or value < 0:
      raise InputError(f"`{name}` must be a non-negative integer, got {value!r}")
  if cfg.noise_bank and cfg.trial_backend != "tf":
    raise InputError(f"`noise_bank` ({cfg.noise_bank}) needs trial_backend tf, got "
                     f"{cfg.trial_backend!r}")
  if cfg.noise_bank and cfg.jit_compile and cfg.dataset == "cifar10":
    raise InputError(f"`noise_bank` ({cfg.noise_bank}) encodes each distinct frame once "
                     f"(tf.unique), which XLA cannot compile: use --nojit_compile")


def _check_speed_penalty(cfg: Config) -> None:
  """`speed_weight`, `speed_targets` and `speed_refresh_every`, with and without fine-tuning."""
  mu = cfg.speed_weight
  if isinstance(mu, bool) or not isinstance(mu, (int, float)) or not 0 <= mu < float("inf"):
    raise InputError(f"`speed_weight` must be a non-negative finite number, got {mu!r}")
  if cfg.finetune:
    want = "center_mass" if cfg.finetune == "control" else cfg.finetune
    if cfg.speed_targets != want:
      raise InputError(f"fine-tuning {cfg.finetune} takes `speed_targets` {want!r}, got "
                       f"{cfg.speed_targets!r}")
    if cfg.finetune == "control" and mu != 0:
      raise InputError(f"the control fine-tuning has `speed_weight` 0, got {mu!r}")
    if cfg.speed_refresh_every:
      raise InputError("fine-tuning keeps its targets fixed: `speed_refresh_every` must be 0")
  elif mu > 0 or cfg.speed_targets != "none":
    if cfg.speed_targets != "center_mass" or mu <= 0 or cfg.speed_refresh_every <= 0:
      raise InputError("a speed penalty while training from scratch needs `speed_weight` > 0, "
                       "`speed_targets` center_mass and `speed_refresh_every` > 0 (steps between "
                       "re-estimates of the class centres)")


def _check_schedule_and_trials(cfg: Config) -> None:
  """Warm-up, report weight, trial lengths, seed and evaluation delays."""
  if cfg.lr_schedule == "cosine" and cfg.warmup_steps >= cfg.train_steps:
    raise InputError(f"`warmup_steps` ({cfg.warmup_steps}) must be below `train_steps` "
                     f"({cfg.train_steps})")
  if cfg.protocol == "recu" and cfg.report_weight <= 1:
    raise InputError(f"recu starts with null weight 0, so the report step weighs report_weight "
                     f"- 1: `report_weight` must exceed 1, got {cfg.report_weight!r}")
  if cfg.seq_len < cfg.min_delay + 1:
    raise InputError(f"`seq_len` ({cfg.seq_len}) must exceed `min_delay` ({cfg.min_delay})")
  if cfg.protocol == "decu" and cfg.seq_len < 6:
    raise InputError(f"`seq_len` must be at least 6 for decu (its first stage has T_max 6), "
                     f"got {cfg.seq_len}")
  if not _is_int(cfg.seed) or not 0 <= cfg.seed < 2**31:
    raise InputError(f"`seed` must be an integer in [0, 2**31), got {cfg.seed!r}")
  if not cfg.eval_delays:
    raise InputError("`eval_delays` must name at least one delay")
  for d in cfg.eval_delays:
    if not _is_int(d) or d < cfg.min_delay:
      raise InputError(f"`eval_delays` entries must be integers >= min_delay ({cfg.min_delay}), "
                       f"got {d!r}")
