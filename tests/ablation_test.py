"""The memory-length ablation grids switch in exactly the ingredients they name.

Each variant of sweep.ABLATION_SWITCHES is the quick recipe with some of the paper preset's
fields; its networks' configs are compared field by field with the quick networks' of the same
protocol and seed.
"""

import dataclasses

import pytest

from haviv_tf.base import config as config_lib
from haviv_tf.study import sweep

SETTINGS = {"seed", "protocol", "arch"}  # the run's own axes, equal in both configs compared


def _diff(a: config_lib.Config, b: config_lib.Config) -> dict:
  return {f.name: (getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
          if getattr(a, f.name) != getattr(b, f.name)}


def _by_key(specs):
  return {(s.protocol, s.arch, s.seed): s for s in specs}


def test_every_switch_changes_exactly_the_fields_it_names_to_the_paper_presets_values():
  paper = config_lib.preset("paper", "mnist")
  base = _by_key(sweep.expand(sweep.Grid("base", archs=("gru",), seeds=(0, 1, 2))))
  for name, switch in sweep.ABLATION_SWITCHES.items():
    variant = _by_key(sweep.expand(sweep.Grid(name, archs=("gru",), seeds=(0, 1, 2),
                                              overrides=switch)))
    assert variant.keys() == base.keys(), name
    for key, spec in variant.items():
      diff = _diff(base[key].config(), spec.config())
      assert set(diff) == {k for k, _ in switch}, (name, diff)
      for field, (_, new) in diff.items():
        assert new == getattr(paper, field), (name, field)  # the paper's own value


def _variant(spec):
  return tuple(sorted(spec.overrides))


def test_the_ablation_grid_is_those_variants_on_vocu_and_decu_gru_three_seeds():
  specs = sweep.expand(sweep.get_grid("memory_ablation"))
  assert len(specs) == len(sweep.ABLATION_SWITCHES) * 2 * 3
  assert {(s.protocol, s.arch) for s in specs} == {("vocu", "gru"), ("decu", "gru")}
  assert {s.seed for s in specs} == {0, 1, 2}
  # Every variant's seed 0 comes before any seed 1, and seed 1's before seed 2.
  assert [s.seed for s in specs] == sorted(s.seed for s in specs)
  n = len(sweep.ABLATION_SWITCHES) * 2
  assert len({_variant(s) for s in specs[:n]}) == len(sweep.ABLATION_SWITCHES)
  assert {tuple(s.overrides) for s in specs} == set(sweep.ABLATION_SWITCHES.values())
  assert all(s.memory_max_delay == 10_000 and not s.finetunes and not s.backtrack for s in specs)
  assert len({s.name for s in specs}) == len(specs)


def test_the_rate_switch_is_a_tenth_of_quicks_rate_for_ten_times_its_steps():
  quick = config_lib.preset("quick", "mnist")
  for spec in sweep.expand(sweep.get_grid("memory_ablation_lr")):
    cfg = spec.config()
    diff = _diff(dataclasses.replace(quick, protocol=cfg.protocol, arch=cfg.arch,
                                     seed=cfg.seed), cfg)
    # lr_decay_step follows train_steps (config.resolve keeps the drop's place in the run).
    assert set(diff) == {"learning_rate", "train_steps", "lr_decay_step"}
    assert cfg.learning_rate == pytest.approx(quick.learning_rate / 10)
    assert cfg.train_steps == 10 * quick.train_steps
    assert cfg.lr_decay_step == 10 * quick.lr_decay_step


def test_the_compressed_paper_preset_is_the_paper_schedule_ten_times_shorter():
  paper = config_lib.preset("paper", "mnist")
  specs = sweep.expand(sweep.get_grid("paper_compressed"))
  full = _by_key(sweep.expand(sweep.get_grid("paper_mnist")))
  assert _by_key(specs).keys() == full.keys()  # the same seeds and cells as the full grid
  for spec in specs:
    cfg = spec.config()
    diff = _diff(dataclasses.replace(paper, protocol=cfg.protocol, arch=cfg.arch,
                                     seed=cfg.seed), cfg)
    assert set(diff) == {"learning_rate", "train_steps", "lr_decay_step", "history_every"}
    assert cfg.learning_rate == pytest.approx(10 * paper.learning_rate)
    assert cfg.train_steps * 10 == paper.train_steps
    # The drop at update 12,000 of 14,000 as the paper's at 120,000 of 140,000.
    assert (cfg.lr_decay_step + 2) * 10 == paper.lr_decay_step + 2
    assert paper.train_steps // paper.history_every == cfg.train_steps // cfg.history_every
    assert spec.sp_recipes == ("paper", "default") and spec.memory_max_delay == 10_000
    assert spec.finetunes == () and not spec.backtrack


def test_the_reverse_is_the_paper_preset_on_quicks_schedule():
  paper, quick = config_lib.preset("paper", "mnist"), config_lib.preset("quick", "mnist")
  specs = sweep.expand(sweep.get_grid("memory_reverse"))
  assert {(s.protocol, s.arch) for s in specs} == {("vocu", "gru"), ("decu", "gru")}
  assert [s.seed for s in specs] == [0, 0, 1, 1, 2, 2]
  schedule = {"learning_rate", "train_steps", "lr_decay_step", "history_every"}
  ingredients = {f for switch in sweep.ABLATION_SWITCHES.values() for f, _ in switch}
  for spec in specs:
    cfg = spec.config()
    axes = dict(protocol=cfg.protocol, arch=cfg.arch, seed=cfg.seed)
    # Against the paper preset: the schedule alone, quick's values.
    diff = _diff(dataclasses.replace(paper, **axes), cfg)
    assert set(diff) == schedule
    assert all(new == getattr(quick, f) for f, (_, new) in diff.items())
    # Against quick: every ingredient of the ablation at once, plus the name of the preset, the
    # CIFAR-10 front end (no encoder on MNIST: network.py) and two bookkeeping intervals
    # (checkpoints, logged scalars) that do not touch training.
    diff = _diff(dataclasses.replace(quick, **axes), cfg)
    assert set(diff) == ingredients | {"preset", "cnn", "checkpoint_every", "log_every"}
    assert all(new == getattr(paper, f) for f, (_, new) in diff.items())
    assert spec.memory_max_delay == 10_000 and not spec.finetunes and not spec.backtrack
