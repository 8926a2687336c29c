"""--help explains every flag (the Config fields' own documentation and their presets'
defaults); --dry_run checks flags as a real run does and writes nothing; numeric flags are
bounded with one-line errors."""

import dataclasses
import json
import os
import subprocess
import sys

import xml.etree.ElementTree as ElementTree

import pytest

from haviv_tf.base import config as config_lib

PLACEHOLDER = "(default: from the preset)"
EXPLICIT = ("protocol", "dataset", "arch", "preset")  # flags of their own, not overrides


def _cli(args, cwd=None):
  return subprocess.run([sys.executable, "-m", "haviv_tf.main", *args], capture_output=True,
                        text=True, timeout=300, cwd=cwd)


def _one_error_line(proc):
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
  assert "Traceback" not in proc.stderr
  return lines[0]


@pytest.fixture(scope="module")
def helps():
  """{flag name: help} of haviv_tf.main's own flags, from --helpxml (absl's unwrapped help)."""
  proc = _cli(["--helpxml"])
  assert proc.returncode == 0, proc.stderr
  root = ElementTree.fromstring(proc.stdout)
  out = {f.findtext("name"): f.findtext("meaning") or "" for f in root.iter("flag")
         if f.findtext("file", "").endswith(os.path.join("haviv_tf", "main.py"))}
  assert {"mode", "units", "dry_run"} <= set(out)
  return out


def test_no_flag_help_is_a_placeholder(helps):
  for name, text in helps.items():
    assert text.strip() and PLACEHOLDER not in text, name
    assert not text.startswith("Override Config."), name


def test_every_config_flag_carries_its_field_doc_and_preset_defaults(helps):
  fields = [f for f in dataclasses.fields(config_lib.Config) if f.name not in EXPLICIT]
  assert len(fields) > 30
  for field in fields:
    doc = field.metadata["help"]
    assert len(doc) > 10, field.name
    assert helps[field.name].startswith(doc), field.name
    assert config_lib.preset_defaults(field.name) in helps[field.name], field.name


@pytest.mark.parametrize("name,fragments", [
    ("learning_rate", ("Adam learning rate", "positive", "paper: 1e-5 (cifar10: 1e-4)",
                       "quick: 3e-3 (cifar10: 3e-4)")),
    ("eval_trials", ("test trials per evaluated delay", "at most 1,000,000", "paper: 1000",
                     "quick: 1000")),
    ("train_steps", ("training steps", "paper: 140000 (cifar10: 300000)",
                     "quick: 3000 (cifar10: 4000)")),
    ("jit_compile", ("XLA", "paper: true", "quick: true (cifar10: false)")),
    ("seq_len", ("frames", "> min_delay", "paper: 20")),
])
def test_named_flags_explain_unit_range_and_preset_defaults(helps, name, fragments):
  for fragment in fragments:
    assert fragment in helps[name], (name, fragment, helps[name])


def test_defaults_named_in_flag_help_are_the_code_defaults(helps):
  from haviv_tf.dynamics import finder  # pylint: disable=g-import-not-at-top
  from haviv_tf.study import sweep  # pylint: disable=g-import-not-at-top
  default = finder.SlowPointConfig()
  assert f"default {default.window} with --sp_recipe=default" in helps["sp_window"]
  assert f"default {_sci(default.rel_tol)} with --sp_recipe=default" in helps["sp_rel_tol"]
  assert ", ".join(sweep.GRIDS) in helps["grid"]
  mu = config_lib.FINETUNE_SPEED_WEIGHT
  quick_mu = {m for _, m in config_lib.QUICK_FINETUNE.values()}
  assert quick_mu == {1e-2}, quick_mu
  assert (f"paper preset {_sci(mu['mnist'])} (MNIST) or {_sci(mu['cifar10'])} (CIFAR-10), "
          f"quick preset {_sci(quick_mu.pop())}") in helps["speed_weight"]


def _sci(x):
  return f"{x:.0e}".replace("e-0", "e-")  # 0.001 -> 1e-3, as the help writes it


def test_help_output_shows_the_field_docs():
  proc = _cli(["--help"])
  assert proc.returncode == 0, proc.stderr
  text = " ".join((proc.stdout + proc.stderr).split())  # absl wraps the help lines
  assert "Adam learning rate (positive, finite). Default by preset: paper: 1e-5" in text
  assert "Override Config" not in text and PLACEHOLDER not in text


def test_dry_run_prints_the_resolved_config_and_writes_nothing(tmp_path):
  proc = _cli(["--dry_run", "--workdir=runs/x", "--units=16", "--learning_rate=0.01"],
              cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  out = json.loads(proc.stdout)
  assert out["mode"] == "train" and out["workdir"] == "runs/x"
  cfg = config_lib.Config.from_dict(out["config"])
  assert cfg == config_lib.resolve("quick", "mnist_sample",
                                   {"units": 16, "learning_rate": 0.01})
  assert os.listdir(tmp_path) == []


def test_dry_run_on_a_missing_workdir_checks_the_flags_and_says_so(tmp_path):
  proc = _cli(["--dry_run", "--mode=evaluate", "--workdir=nothing", "--eval_delays=5,7",
               "--eval_trials=7"], cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert "does not exist yet" in proc.stderr
  out = json.loads(proc.stdout)
  assert out["eval_delays"] == [5, 7] and out["eval_trials"] == 7 and out["config"] is None
  assert os.listdir(tmp_path) == []


def test_dry_run_of_a_study_writes_no_grid(tmp_path):
  proc = _cli(["--dry_run", "--mode=study", "--grid=small", "--workdir=study"], cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert json.loads(proc.stdout)["networks"] > 0
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("args,message", [
    (["--units=-3"], "`units` must be a positive integer, got -3"),
    (["--bogus_flag=1"], "Unknown command line flag 'bogus_flag'"),
    (["--mode=nope"], "unknown mode 'nope'"),
    (["--protocol=xyz"], "unknown protocol 'xyz'"),
    (["--mode=evaluate"], "--mode=evaluate needs --workdir"),
    (["--mode=evaluate", "--workdir=w", "--eval_trials=0"], "--eval_trials must be in [1, "),
    (["--eval_trials=2000000"], "--eval_trials must be in [1, 1,000,000], got 2000000"),
    (["--mode=memory", "--workdir=w", "--max_delay=0"], "--max_delay must be in [1, "),
    (["--mode=backtrack", "--workdir=w", "--merge_frac=0"], "--merge_frac must be in (0, 1]"),
    (["--mode=backtrack", "--workdir=w", "--merge_frac=1.5"], "--merge_frac must be in (0, 1]"),
    (["--mode=study", "--workdir=w", "--workers=0"], "--workers must be in [1, 256]"),
    (["--mode=study", "--workdir=w", "--threads=-1"], "--threads must be >= 0 and <= 1024"),
    (["--cpu_devices=-2"], "--cpu_devices must be >= 0 and <= 1024"),
    (["--mode=slow_points", "--workdir=w", "--sp_max_iters=0"], "--sp_max_iters must be"),
    (["--mode=compare", "--parent=p", "--units=3"], "drop --units"),
    (["--strategy=foo"], "unknown strategy 'foo'"),
    (["--strategy=default", "--cpu_devices=2"], "--cpu_devices goes with --strategy=mirrored"),
    (["--strategy=mirrored", "--cpu_devices=2", "--batch_size=15", "--workdir=w"],
     "`batch_size` 15 does not split evenly over the 2 replicas"),
])
@pytest.mark.parametrize("dry", [True, False])
def test_bad_flags_give_one_line_with_or_without_dry_run(tmp_path, args, message, dry):
  proc = _cli((["--dry_run"] if dry else []) + args, cwd=tmp_path)
  assert proc.returncode == 1, proc.stderr
  assert message in _one_error_line(proc)
  assert os.listdir(tmp_path) == []
