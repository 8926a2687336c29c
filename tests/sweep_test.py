"""The sweep launcher: grid expansion, skip/resume, exclusive claims, the Slurm script."""

import dataclasses
import json
import re
import os
import subprocess
import sys
import textwrap

import pytest

from haviv_tf.study import runner
from haviv_tf.study import slurm
from haviv_tf.study import sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHER = os.path.join(REPO, "launch", "sweep.py")


def _tiny_grid(**kw):
  base = dict(datasets=("mnist_sample",), protocols=("vocu", "decu"), archs=("gru",),
              seeds=(0, 1), finetune_steps=2,
              overrides=(("units", 8), ("train_steps", 20), ("batch_size", 16)))
  base.update(kw)
  return sweep.Grid("tiny", **base)


def test_small_and_paper_grids_expand_to_stable_unique_names():
  small = sweep.expand(sweep.get_grid("small"))
  assert len(small) == 8
  assert [s.name for s in small[:3]] == ["mnist-vocu-gru-quick-s0", "mnist-vocu-gru-quick-s1",
                                         "mnist-vocu-lstm-quick-s0"]
  assert all(s.finetunes == ("control", "slow_points", "center_mass") for s in small)
  medium = sweep.expand(sweep.get_grid("medium"))
  assert len(medium) == 12 and {s.seed for s in medium} == {10, 11, 12}
  cfg = medium[0].config()
  assert cfg.train_steps == 9000 and cfg.lr_decay_step == 7800 and 2000 in cfg.eval_delays
  assert medium[0].finetune_steps == 300 and medium[0].finetune_speed_weight == 1e-2
  assert re.fullmatch(r"mnist-vocu-gru-quick-s10-[0-9a-f]{8}", medium[0].name)
  paper = sweep.expand(sweep.get_grid("paper"))
  assert len(paper) == 10 * 2 * 2 + 5 * 2 * 2
  assert sum(s.dataset == "cifar10" for s in paper) == 20
  assert paper[0].config().train_steps == 140_000
  assert len({s.name for s in paper}) == len(paper)
  # The paper grid's first 8 MNIST networks, seed 0's four first, named as in the paper grid.
  first = sweep.expand(sweep.get_grid("paper_mnist"))
  assert [s.name for s in first[:5]] == [
      "mnist-vocu-gru-paper-s0", "mnist-vocu-lstm-paper-s0", "mnist-decu-gru-paper-s0",
      "mnist-decu-lstm-paper-s0", "mnist-vocu-gru-paper-s1"]
  assert len(first) == 8 and {s.name for s in first} <= {s.name for s in paper}
  assert first[0].config() == paper[0].config()
  # Names are a function of the config: overrides add a stable hash.
  a = sweep.expand(_tiny_grid())
  b = sweep.expand(_tiny_grid())
  assert [s.name for s in a] == [s.name for s in b]
  assert re.fullmatch(r"mnist_sample-vocu-gru-quick-s0-[0-9a-f]{8}", a[0].name)
  c = sweep.expand(_tiny_grid(overrides=(("units", 9),)))
  assert c[0].name != a[0].name
  assert a[0].config().units == 8


@pytest.mark.parametrize("kw, message", [
    (dict(protocols=("vocu", "spiral")), "unknown protocol 'spiral'"),
    (dict(archs=("rnn",)), "unknown arch 'rnn'"),
    (dict(finetunes=("louder",)), "unknown fine-tuning 'louder'"),
    (dict(seeds=(0, 0)), "same run twice"),
    (dict(finetune_speed_weight=-1e-3), "finetune_speed_weight must be a non-negative"),
    (dict(finetune_speed_weight="much"), "finetune_speed_weight must be a non-negative"),
])
def test_bad_grids_are_refused(kw, message):
  with pytest.raises(ValueError, match=message):
    sweep.expand(_tiny_grid(**kw))
  with pytest.raises(ValueError, match="unknown grid 'huge'"):
    sweep.get_grid("huge")


def test_commands_cover_train_finetunes_compare_and_backtrack():
  spec = sweep.expand(_tiny_grid())[0]
  cmds = dict(runner.commands(spec, "/r", data_dir="/d", python="py"))
  assert list(cmds) == ["train", "finetune_control", "finetune_slow_points",
                        "finetune_center_mass", "compare", "backtrack"]
  train = cmds["train"]
  assert train[:3] == ["py", "-m", "haviv_tf.main"]
  for flag in ("--protocol=vocu", "--dataset=mnist_sample", "--arch=gru", "--seed=0",
               f"--workdir=/r/{spec.name}", "--units=8", "--train_steps=20", "--data_dir=/d"):
    assert flag in train
  assert f"--parent=/r/{spec.name}" in cmds["compare"] and "--steps=2" in cmds["compare"]
  assert not any(a.startswith("--speed_weight") for _, argv in cmds.items() for a in argv)


def test_finetune_speed_weight_reaches_every_finetuning_and_names_the_run(tmp_path):
  plain = sweep.expand(_tiny_grid())
  mu = sweep.expand(_tiny_grid(finetune_speed_weight=1e-2))
  mu2 = sweep.expand(_tiny_grid(finetune_speed_weight=1e-3))
  assert len({plain[0].name, mu[0].name, mu2[0].name}) == 3
  cmds = dict(runner.commands(mu[0], "/r", python="py"))
  for step in ("finetune_control", "finetune_slow_points", "finetune_center_mass", "compare"):
    assert "--speed_weight=0.01" in cmds[step] and "--steps=2" in cmds[step], step
  assert not any(a.startswith("--speed_weight") for a in cmds["train"] + cmds["backtrack"])
  # The weight survives the sweep's grid.json (a resumed sweep runs the same fine-tunings).
  sweep.write_grid(mu, str(tmp_path), "tiny")
  name, loaded = sweep.load_grid(str(tmp_path))
  assert name == "tiny" and [s.name for s in loaded] == [s.name for s in mu]
  assert loaded[0].finetune_speed_weight == 1e-2
  # A grid file written before the field existed still loads, with the default weight.
  d = json.load(open(os.path.join(tmp_path, sweep.GRID_FILE)))
  for r in d["runs"]:
    r.pop("finetune_speed_weight")
  json.dump(d, open(os.path.join(tmp_path, sweep.GRID_FILE), "w"))
  assert sweep.load_grid(str(tmp_path))[1][0].finetune_speed_weight is None


def _recording_runner(log, fail=None):
  def runner(step, argv, env, log_path):
    del argv, env, log_path
    log.append(step)
    return 1 if step == fail else 0
  return runner


def test_finished_runs_are_skipped_and_failed_ones_rerun(tmp_path):
  specs = sweep.expand(_tiny_grid())
  root = str(tmp_path)
  calls = []
  first = runner.run_local(specs[:2], root, runner=_recording_runner(calls, fail="compare"),
                          progress=None)
  assert [r["status"] for r in first] == ["failed", "failed"]
  assert all(r["failed_step"] == "compare" for r in first)
  assert not any(sweep.is_done(s, root) for s in specs)
  calls.clear()
  second = runner.run_local(specs, root, workers=2, runner=_recording_runner(calls),
                           progress=None)
  assert [r["status"] for r in second] == ["done"] * 4
  assert len(calls) == 4 * 6  # every step is started again; each resumes itself
  calls.clear()
  third = runner.run_local(specs, root, runner=_recording_runner(calls), progress=None)
  assert [r["status"] for r in third] == ["skipped"] * 4 and not calls
  with open(os.path.join(root, specs[0].name, sweep.DONE_FILE)) as f:
    done = json.load(f)
  assert done["spec"]["name"] == specs[0].name
  # Its time covers both invocations: every attempt of the first (up to the failed compare)
  # and all six of the second, each step's seconds summed over its attempts.
  first_steps = [step for step, _ in runner.commands(specs[0], root, "")]
  n_first = first_steps.index("compare") + 1
  assert len(done["intervals"]) == n_first + 6 and done["interrupted"] == 0
  assert set(done["seconds_per_step"]) == set(first_steps)
  assert all(end >= start for start, end in done["intervals"])
  assert [r.get("resumed") for r in second] == [True, True, False, False]


def test_interrupted_step_attempts_are_counted_not_timed(tmp_path):
  spec = sweep.expand(_tiny_grid())[0]
  root = str(tmp_path)
  path = os.path.join(root, spec.name, sweep.ATTEMPTS_FILE)
  os.makedirs(os.path.dirname(path))
  # A launcher killed during training left an attempt without an end.
  with open(path, "w") as f:
    json.dump(dict(attempts=[dict(step="train", start=100.0, end=None, code=None)]), f)
  (res,) = runner.run_local([spec], root, runner=_recording_runner([]), progress=None)
  assert res["status"] == "done" and res["resumed"]
  with open(os.path.join(root, spec.name, sweep.DONE_FILE)) as f:
    done = json.load(f)
  assert done["interrupted"] == 1 and len(done["intervals"]) == 6
  assert len(runner.read_attempts(path)) == 7
  with open(path, "w") as f:
    f.write("{not json")
  assert runner.read_attempts(path) == []


def test_two_launchers_never_run_the_same_job_twice(tmp_path):
  """Two launcher processes, 2 workers each, on one grid of 4 runs: each step runs once."""
  root = str(tmp_path / "root")
  log = str(tmp_path / "calls.log")
  script = textwrap.dedent(f"""
      import os, sys, time
      from haviv_tf.study import runner as sweep_runner
      from haviv_tf.study import sweep
      specs = sweep.expand(sweep.Grid("tiny", datasets=("mnist_sample",), archs=("gru",),
                                      protocols=("vocu", "decu"), seeds=(0, 1)))
      def runner(step, argv, env, log_path):
        fd = os.open({log!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{{os.getpid()}} {{argv[-1] if step == 'train' else argv[4]}} {{step}}\\n".encode())
        os.close(fd)
        time.sleep(0.05)
        return 0
      res = sweep_runner.run_local(specs, {root!r}, workers=2, runner=runner, progress=None)
      print(sorted(r["status"] for r in res))
  """)
  procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
           for _ in range(2)]
  outs = [p.communicate(timeout=120)[0] for p in procs]
  assert all(p.returncode == 0 for p in procs), outs
  with open(log) as f:
    lines = [l.split() for l in f.read().splitlines()]
  keys = [(l[1], l[2]) for l in lines]
  assert len(keys) == len(set(keys)) == 4 * 6, keys
  for s in sweep.expand(sweep.Grid("tiny", datasets=("mnist_sample",), archs=("gru",),
                                   protocols=("vocu", "decu"), seeds=(0, 1))):
    assert sweep.is_done(s, root)


def test_slurm_script_is_valid_bash_and_maps_each_index_to_one_run(tmp_path):
  specs = sweep.expand(_tiny_grid())
  script = slurm.slurm_script(specs, str(tmp_path), "/x/launch/sweep.py", "/data", cpus=4,
                              python="echo", grid_name="tiny")
  path = tmp_path / "job.sbatch"
  path.write_text(script)
  assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
  assert f"#SBATCH --array=0-{len(specs) - 1}" in script
  seen = []
  for i, spec in enumerate(specs):
    out = subprocess.run(["bash", str(path)], env=dict(os.environ, SLURM_ARRAY_TASK_ID=str(i)),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"--only={spec.name}" in out.stdout and "--threads=4" in out.stdout
    seen.append(spec.name)
  assert len(set(seen)) == len(specs)
  no_id = subprocess.run(["bash", str(path)], env={"PATH": os.environ["PATH"]},
                         capture_output=True, text=True)
  assert no_id.returncode == 2


def test_describe_says_where_each_run_stands(tmp_path):
  root = str(tmp_path)
  a, b = sweep.expand(_tiny_grid())[:2]
  steps = [step for step, _ in runner.commands(a, root)]
  assert runner.describe(a, root) == "to do"
  work = os.path.join(root, a.name)
  os.makedirs(os.path.join(work, "checkpoints"))
  start = 1796650000.0      # 2026-12-07 13:26:40 UTC
  attempts = [dict(step="train", start=start, end=None, code=None, threads=1)]
  write = runner._write_attempts  # pylint: disable=protected-access
  write(os.path.join(work, sweep.ATTEMPTS_FILE), attempts)
  with open(os.path.join(work, "checkpoints", "checkpoint"), "w") as f:
    f.write('model_checkpoint_path: "x/checkpoints/ckpt-12"\n'
            'all_model_checkpoint_paths: "x/checkpoints/ckpt-8"\n')
  with open(os.path.join(work, "config.json"), "w") as f:
    json.dump(dict(config=dict(train_steps=20)), f)
  # No live claim: an unfinished step is stopped (killed or paused), not running.
  assert runner.describe(a, root) == (f"stopped: step train (1 of {len(steps)}), started "
                                      "2026-12-07 13:26 UTC, checkpoint 12 of 20 steps")
  claim = runner.Claim(root, a.name)
  assert claim.acquire()
  try:
    assert runner.describe(a, root).startswith("running: step train (1 of ")
  finally:
    claim.release()
  attempts[0].update(end=start + 5, code=0)
  attempts.append(dict(step=steps[1], start=start + 6, end=start + 9, code=3, threads=1))
  write(os.path.join(work, sweep.ATTEMPTS_FILE), attempts)
  assert runner.describe(a, root).startswith(f"failed: step {steps[1]} (2 of {len(steps)})")
  assert runner.describe(b, root) == "to do"


def test_launcher_cli_lists_writes_slurm_and_refuses_bad_input(tmp_path):
  root = str(tmp_path / "root")
  out = subprocess.run([sys.executable, LAUNCHER, "--grid=small", f"--root={root}", "--list"],
                       capture_output=True, text=True)
  assert out.returncode == 0, out.stderr
  assert out.stdout.count("to do") == 8
  out = subprocess.run([sys.executable, LAUNCHER, f"--root={root}",
                        f"--slurm={tmp_path}/s.sbatch"], capture_output=True, text=True)
  assert out.returncode == 0 and "8 array tasks" in out.stdout
  for args, message in [(["--grid=paper"], "holds the 'small' grid"),
                        (["--only=nope"], "no run named 'nope'"),
                        (["--workers=0"], "--workers must be >= 1"),
                        (["--workers=two"], "invalid int value: 'two'")]:
    out = subprocess.run([sys.executable, LAUNCHER, f"--root={root}", *args],
                         capture_output=True, text=True)
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.returncode == 1 and out.stderr.strip() == f"error: {out.stderr.strip()[7:]}"
    assert message in out.stderr and "Traceback" not in out.stderr


def test_a_grid_whose_analysis_settings_changed_is_refreshed_and_other_networks_refused(
    tmp_path):
  root = str(tmp_path)
  new = sweep.expand(sweep.get_grid("paper_mnist"))
  old = [dataclasses.replace(s, sp_recipes=(), memory_max_delay=None) for s in new]
  assert [s.name for s in old] == [s.name for s in new]   # analysis settings: not in the name
  sweep.write_grid(old, root, "paper_mnist")
  lines = []
  got = sweep.refresh_grid(root, "paper_mnist", sweep.load_grid(root)[1], new, log=lines.append)
  assert [s.to_dict() for s in got] == [s.to_dict() for s in new] and "updated" in lines[0]
  assert sweep.load_grid(root)[1][0].sp_recipes == ("paper", "default")
  cmds = dict(runner.commands(got[0], root))
  assert "--sp_recipe=paper" in cmds["train"] and "--sp_recipe=paper" in cmds["finetune_control"]
  assert "--sp_dir=slow_points_default" in cmds["slow_points_default"]
  assert "--max_delay=10000" in cmds["memory"]
  assert sweep.refresh_grid(root, "paper_mnist", got, new, log=lines.append) == got
  assert len(lines) == 1                                  # unchanged: nothing written or said
  with pytest.raises(ValueError, match="other networks"):
    sweep.refresh_grid(root, "paper_mnist", got, new[:4])
  # Grids without the fields keep their specs (and so their done files) as they were.
  assert "sp_recipes" not in sweep.expand(sweep.get_grid("small"))[0].to_dict()


def test_progress_names_each_network_and_the_time_so_far_and_left(tmp_path):
  specs = sweep.expand(_tiny_grid())
  root = str(tmp_path)
  runner.run_local(specs[:1], root, runner=_recording_runner([]), progress=None)
  lines = []
  runner.run_local(specs, root, runner=_recording_runner([]), progress=lines.append)
  started = [l for l in lines if l.startswith("network ")]
  finished = [l for l in lines if l.startswith("[")]
  assert len(started) == len(specs) - 1  # the finished first network is not started again
  assert started[0].startswith(f"network 1 to run of the {len(specs)}: {specs[1].name}")
  assert f"{specs[1].name}.<step>.log" in started[0]
  assert finished[0].startswith(f"[1/{len(specs)}] {specs[0].name}: skipped; ")
  assert "so far; 3 more" in finished[0]  # nothing run here yet: no estimate
  assert re.search(r"\[2/4\] .*: done in \d+ s; \d+ s so far, about \d+ s left for 2 more "
                   r"\(from the 1 network run here\)", finished[1]), finished[1]
  assert re.search(r"\[4/4\] .*; \d+ s so far$", finished[-1]), finished[-1]
