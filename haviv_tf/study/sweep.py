"""Sweeps: the grids of networks, their runs, and a sweep root's layout on disk.

A grid is protocol x arch x dataset x seed (one *run* each: train + evaluate + slow points +
export), times the fine-tuning modes applied to every run (control / slow_points / center_mass,
see control.py) and optional back-tracking. A run is addressed by a stable name built from its
config (`mnist-decu-gru-quick-s0`, plus a hash of any extra overrides) and lives in
<root>/<name>; its fine-tunings in <root>/<name>_finetune/<mode>. <root>/grid.json lists the
runs; <root>/<name>/sweep_done.json marks a finished one (is_done). runner.py runs a grid here
with N workers; slurm.py writes it as a Slurm job array.
"""

import dataclasses
import hashlib
import json
import os
from typing import Optional, Sequence

from haviv_tf.base import artifacts
from haviv_tf.base import config as config_lib

DONE_FILE = "sweep_done.json"
ATTEMPTS_FILE = "sweep_attempts.json"  # every step attempt's start and end, over invocations
LOCK_DIR = "locks"
LOG_DIR = "logs"
GRID_FILE = "grid.json"
SLOW_POINTS_DIR_PREFIX = "slow_points_"  # a run's further slow-point recipes: <workdir>/slow_points_<recipe>
MEMORY_MAX_DELAY = 100_000                # memory.MAX_DELAY (memory imports numpy only, but not here)
FINETUNE_MODES = config_lib.FINETUNE_MODES


@dataclasses.dataclass(frozen=True)
class Grid:
  """The axes of a sweep. `overrides` are extra Config fields applied to every run."""
  name: str
  datasets: tuple = ("mnist",)
  protocols: tuple = ("vocu", "decu")
  archs: tuple = ("gru", "lstm")
  seeds: tuple = (0, 1)
  preset: str = "quick"
  finetunes: tuple = FINETUNE_MODES
  backtrack: bool = True
  finetune_steps: Optional[int] = None       # None: the preset's (control.finetune_config)
  overrides: tuple = ()                     # ((field, value), ...)
  sp_max_iters: Optional[int] = None        # slow-point search cap (None: the default)
  finetune_speed_weight: Optional[float] = None  # mu of the fine-tunings (None: the default)
  # Slow-point recipes: the first is the run's own (results.json, the fine-tunings' targets,
  # back-tracking); each further one is written beside it into slow_points_<recipe>/.
  # () : the default recipe alone.
  sp_recipes: tuple = ()
  memory_max_delay: Optional[int] = None   # evaluate until memory fades, to this delay

  def to_dict(self):
    d = dataclasses.asdict(self)
    d["overrides"] = [list(kv) for kv in self.overrides]
    return d


# What sets memory length (experiments/memory_length.md): the quick recipe with one of the
# paper's ingredients switched in at a time (each switch's fields, nothing else; the paper
# preset's values, haviv_tf/base/config.py). "lr_tenth_x10" is the paper's direction for the rate:
# a tenth of quick's rate for ten times the steps (the curricula and the rate drop scale with
# train_steps); it costs ten quick trainings per network, so it is a grid of its own.
ABLATION_SWITCHES = {
    "quick": (),
    "readout_sigmoid": (("readout", "sigmoid"),),   # softmax(sigmoid(W h + b))
    "loss_norm_authors": (("loss_norm", "authors"),),
    "log_eps_authors": (("log_eps", 1e-4),),
    "init_authors": (("init", "authors"),),
    # The authors' mask (logits x -1000) masks only a sigmoid read-out's logits (config.validate
    # refuses it with the linear one): it is switched in on top of readout_sigmoid, against which
    # it is compared.
    "readout_sigmoid_mask_authors": (("readout", "sigmoid"), ("mask", "authors")),
    "data_recipe_authors": (("data_recipe", "authors"),),
}
ABLATION_LR = (("learning_rate", 3e-4), ("train_steps", 30_000))
# The paper preset with its schedule compressed tenfold: lr 1e-4 for 14,000 steps (curriculum
# boundaries scale with train_steps; the rate drops at update 12,000 as the paper's at 120,000,
# config.PAPER's note on lr_decay_step; back-tracking snapshots every 500 steps keep the
# paper's 28 per run).
PAPER_COMPRESSED = (("learning_rate", 1e-4), ("train_steps", 14_000), ("lr_decay_step", 11_998),
                    ("history_every", 500))
# The reverse: the paper preset (every ingredient above) trained on quick's schedule (its rate,
# steps and rate drop; snapshots every 250 steps as quick's). Against `quick` it switches in all
# the ingredients at once; against the full-length `paper` networks, the schedule alone.
_QUICK = config_lib.preset("quick", "mnist")
PAPER_QUICK_SCHEDULE = tuple((k, getattr(_QUICK, k)) for k in
                             ("learning_rate", "train_steps", "lr_decay_step", "history_every"))
_ABLATION = dict(archs=("gru",), seeds=(0, 1, 2), finetunes=(), backtrack=False,
                 memory_max_delay=10_000)

# About 40 minutes on 2 CPU cores (experiments/README.md): 8 quick MNIST networks, each
# fine-tuned three ways.
_SMALL = Grid("small", seeds=(0, 1))
# About 3 hours on 2 CPU cores: 12 MNIST networks trained 3x longer than quick (9000 steps at the
# quick rate, x0.1 for the last 13%), evaluated also at delay 2000, fine-tuned 300 steps at mu
# 1e-2 (experiments/dose_response.md), on seeds the dose-response never used.
_MEDIUM = Grid("medium", seeds=(10, 11, 12), finetune_steps=300, finetune_speed_weight=1e-2,
               overrides=(("train_steps", 9000),
                          ("eval_delays", (5, 10, 19, 50, 100, 200, 500, 1000, 2000))))


def remeasure(grid: Grid) -> Grid:
  """The same networks (names) trained again from their seeds, with every step of the grid,
  and followed to delay 10,000. experiments/remeasure.py compares each with the committed one:
  the first small-grid network checked is not reproduced by today's code, nor by the code of
  the commit that added it (experiments/memory_length.md), so a re-run is a grid of its own."""
  return dataclasses.replace(grid, name=grid.name + "_10k", memory_max_delay=10_000)


GRIDS = {
    "small": _SMALL,
    "medium": _MEDIUM,
    "small_10k": remeasure(_SMALL),
    "medium_10k": remeasure(_MEDIUM),
    # The CIFAR-10 networks of the quick preset (seed 0), about 30 minutes each on 2 CPU cores:
    # their report reads beside the MNIST grids' (experiments/cifar10_quick.md). Memory is
    # followed until it fades (at chance from delay 200 here, so it stops early).
    "cifar_quick": Grid("cifar_quick", datasets=("cifar10",), seeds=(0,),
                        memory_max_delay=10_000),
    # The paper's grid: MNIST 10 seeds and CIFAR-10 5 seeds x {VoCu, DeCu} x {GRU, LSTM}.
    "paper": (Grid("paper", datasets=("mnist",), seeds=tuple(range(10)), preset="paper"),
              Grid("paper", datasets=("cifar10",), seeds=tuple(range(5)), preset="paper")),
    # Its first 8 MNIST networks, seed 0's four before seed 1's (about 22 hours on 2 CPU cores,
    # two at a time): the networks of experiments/study_paper. Run names are the paper grid's.
    # Slow points by the authors' recipe (also the fine-tunings' targets, as the authors'
    # TriggerSpeedCont.py L112-121 reads them from BlackBoxMNIST.py's output) and by the
    # default one; memory followed to delay 10,000.
    "paper_mnist": tuple(Grid("paper_mnist", seeds=(s,), preset="paper",
                              sp_recipes=("paper", "default"), memory_max_delay=10_000)
                         for s in (0, 1)),
    # One ingredient at a time (ABLATION_SWITCHES): 7 variants x VoCu, DeCu GRU x seeds 0-2,
    # every variant's seed 0 before any seed 1 (a partial sweep compares all the variants).
    "memory_ablation": tuple(Grid("memory_ablation", overrides=ov, **dict(_ABLATION, seeds=(s,)))
                             for s in _ABLATION["seeds"] for ov in ABLATION_SWITCHES.values()),
    "memory_ablation_lr": tuple(Grid("memory_ablation_lr", overrides=ABLATION_LR,
                                     **dict(_ABLATION, seeds=(s,)))
                                for s in _ABLATION["seeds"]),
    "memory_reverse": tuple(Grid("memory_reverse", preset="paper",
                                 overrides=PAPER_QUICK_SCHEDULE, **dict(_ABLATION, seeds=(s,)))
                            for s in _ABLATION["seeds"]),
    # The paper preset compressed tenfold, on the paper_mnist grid's seeds and cells. The
    # question is whether it trains the same networks (accuracy by delay, slow-point speeds,
    # half-lives; experiments/memory_length.md), so no fine-tuning or back-tracking.
    "paper_compressed": tuple(Grid("paper_compressed", seeds=(s,), preset="paper",
                                   overrides=PAPER_COMPRESSED, sp_recipes=("paper", "default"),
                                   memory_max_delay=10_000, finetunes=(), backtrack=False)
                              for s in (0, 1)),
}


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One network of a grid, with the fine-tunings and analyses that follow its training."""
  dataset: str
  protocol: str
  arch: str
  seed: int
  preset: str
  finetunes: tuple
  backtrack: bool
  finetune_steps: Optional[int]
  overrides: tuple
  sp_max_iters: Optional[int]
  finetune_speed_weight: Optional[float] = None
  # Analysis settings: they do not change the trained network, so not its name either.
  sp_recipes: tuple = ()
  memory_max_delay: Optional[int] = None

  @property
  def name(self) -> str:
    base = f"{self.dataset}-{self.protocol}-{self.arch}-{self.preset}-s{self.seed}"
    extra = dict(overrides=sorted(self.overrides), finetune_steps=self.finetune_steps,
                 sp_max_iters=self.sp_max_iters)
    if self.finetune_speed_weight is not None:  # only when set: older names stay as they were
      extra["finetune_speed_weight"] = float(self.finetune_speed_weight)
    if (self.overrides or self.finetune_steps or self.sp_max_iters
        or self.finetune_speed_weight is not None):
      digest = hashlib.sha256(json.dumps(extra, sort_keys=True).encode()).hexdigest()[:8]
      base += f"-{digest}"
    return base

  def config(self) -> config_lib.Config:
    return config_lib.resolve(self.preset, self.dataset, dict(
        protocol=self.protocol, arch=self.arch, seed=self.seed, **dict(self.overrides)))

  def to_dict(self):
    d = dataclasses.asdict(self)
    d["overrides"] = [list(kv) for kv in self.overrides]
    d["name"] = self.name
    # Only when set: the specs (and done files) of grids without them stay as they were.
    if not self.sp_recipes:
      del d["sp_recipes"]
    else:
      d["sp_recipes"] = list(self.sp_recipes)
    if self.memory_max_delay is None:
      del d["memory_max_delay"]
    return d


def grid_from_dict(d: dict) -> Grid:
  """A Grid from a JSON object of its fields (a grid file); unknown fields are refused."""
  if not isinstance(d, dict):
    raise config_lib.InputError("a grid file holds one JSON object of Grid fields")
  fields = {f.name for f in dataclasses.fields(Grid)}
  unknown = sorted(set(d) - fields)
  if unknown:
    raise config_lib.InputError(f"unknown grid field(s) {', '.join(unknown)}; valid: "
                     f"{', '.join(sorted(fields))}")
  if not isinstance(d.get("name"), str) or not d["name"] or d["name"] in GRIDS:
    raise config_lib.InputError("a grid file needs a \"name\" of its own (not one of "
                     f"{', '.join(GRIDS)})")
  kw = dict(d)
  for k in ("datasets", "protocols", "archs", "seeds", "finetunes"):
    if k in kw:
      if not isinstance(kw[k], list):
        raise config_lib.InputError(f"grid field {k!r} must be a list")
      kw[k] = tuple(kw[k])
  if "overrides" in kw:
    ov = kw["overrides"]
    ov = sorted(ov.items()) if isinstance(ov, dict) else ov
    kw["overrides"] = tuple((str(k), tuple(v) if isinstance(v, list) else v) for k, v in ov)
  return Grid(**kw)


def load_grid_file(path: str) -> Grid:
  """The Grid in a JSON grid file (see grid_from_dict)."""
  try:
    d = artifacts.read_json(path)
  except OSError as e:
    raise config_lib.InputError(f"cannot read grid file {path}: {e.strerror or e}") from None
  return grid_from_dict(d)


def get_grid(name: str) -> Sequence[Grid]:
  if name not in GRIDS:
    raise config_lib.InputError(f"unknown grid {name!r}; valid: {', '.join(GRIDS)}")
  grid = GRIDS[name]
  return grid if isinstance(grid, tuple) else (grid,)


def expand(grids) -> list:
  """The runs of one or more grids, in a stable order (dataset, protocol, arch, seed).

  Raises ValueError for an invalid axis value (via the config) or duplicate names.
  """
  if isinstance(grids, Grid):
    grids = (grids,)
  specs = []
  for g in grids:
    for mode in g.finetunes:
      if mode not in FINETUNE_MODES:
        raise config_lib.InputError(f"unknown fine-tuning {mode!r}; valid: {', '.join(FINETUNE_MODES)}")
    for recipe in g.sp_recipes:
      if recipe not in config_lib.SP_RECIPES:
        raise config_lib.InputError(f"unknown slow-point recipe {recipe!r}; valid: "
                                    f"{', '.join(config_lib.SP_RECIPES)}")
    if len(set(g.sp_recipes)) != len(g.sp_recipes):
      raise config_lib.InputError(f"sp_recipes names a recipe twice: {list(g.sp_recipes)}")
    top = g.memory_max_delay
    if top is not None and (isinstance(top, bool) or not isinstance(top, int)
                            or not 1 <= top <= MEMORY_MAX_DELAY):
      raise config_lib.InputError(f"memory_max_delay must be an integer in [1, "
                                  f"{MEMORY_MAX_DELAY}], got {top!r}")
    mu = g.finetune_speed_weight
    if mu is not None and (isinstance(mu, bool) or not isinstance(mu, (int, float))
                           or not 0 <= mu < float("inf")):
      raise config_lib.InputError(
          f"finetune_speed_weight must be a non-negative number, got {mu!r}")
    for dataset in g.datasets:
      for protocol in g.protocols:
        for arch in g.archs:
          for seed in g.seeds:
            spec = RunSpec(dataset, protocol, arch, int(seed), g.preset, tuple(g.finetunes),
                           bool(g.backtrack), g.finetune_steps, tuple(g.overrides),
                           g.sp_max_iters, g.finetune_speed_weight, tuple(g.sp_recipes),
                           g.memory_max_delay)
            spec.config()  # validates every axis value now
            specs.append(spec)
  names = [s.name for s in specs]
  if len(set(names)) != len(names):
    raise config_lib.InputError("the grid names the same run twice")
  return specs


def is_done(spec: RunSpec, root: str) -> bool:
  path = os.path.join(root, spec.name, DONE_FILE)
  if not os.path.exists(path):
    return False
  try:
    return artifacts.read_json(path).get("spec") == json.loads(json.dumps(spec.to_dict()))
  except ValueError:
    return False
def write_grid(specs, root: str, grid_name: str) -> str:
  """<root>/grid.json: the runs of the sweep (the report and the Slurm tasks read it)."""
  os.makedirs(root, exist_ok=True)
  path = os.path.join(root, GRID_FILE)
  artifacts.write_json(path, dict(grid=grid_name, runs=[s.to_dict() for s in specs]))
  return path


def refresh_grid(root: str, name: str, stored, current, log=print) -> list:
  """The runs of <root>/grid.json brought up to the named grid as the code defines it today.

  The same networks (names) whose analysis settings changed (slow-point recipes, memory
  delays: RunSpec fields outside the name) are rewritten into grid.json, saying so; their
  trained networks and finished steps stay, and the new steps run on the next pass. Anything
  else that differs is refused: another grid needs another root.
  """
  if [s.name for s in stored] != [s.name for s in current]:
    raise config_lib.InputError(
        f"{root} holds an older {name!r} grid with other networks; use another root (or "
        "--grid_file with the runs it holds)")
  if [s.to_dict() for s in stored] == [s.to_dict() for s in current]:
    return list(stored)
  write_grid(current, root, name)
  log(f"{root}/{GRID_FILE}: the {name!r} grid's analysis settings changed in the code; "
      "updated (trained networks kept; new steps run next)")
  return list(current)


def grid_digest(root: str) -> str:
  """A short hash of <root>/grid.json's runs: a job script records it to check its root."""
  _, specs = load_grid(root)
  blob = json.dumps([sp.to_dict() for sp in specs], sort_keys=True).encode()
  return hashlib.sha256(blob).hexdigest()[:16]


def load_grid(root: str):
  """(grid name, [RunSpec]) from <root>/grid.json."""
  path = os.path.join(root, GRID_FILE)
  if not os.path.exists(path):
    raise artifacts.RunError(f"{root} holds no sweep ({GRID_FILE} missing)")
  d = artifacts.read_json(path)
  specs = []
  for r in d["runs"]:
    r = dict(r)
    r.pop("name")
    r["finetunes"] = tuple(r["finetunes"])
    r["overrides"] = tuple(tuple(kv) for kv in r["overrides"])
    r["sp_recipes"] = tuple(r.get("sp_recipes", ()))
    specs.append(RunSpec(**r))
  return d["grid"], specs
