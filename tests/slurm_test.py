"""The sweep's Slurm job array on a real (one-node) Slurm cluster, and its bad-input checks.

The end-to-end test needs a cluster: it uses one that answers (`.ci/run` starts one with
tests/slurm_cluster.sh), else starts one itself when it can (root, apt-get or the packages),
else skips saying why. Jobs are waited for with `squeue -t all` (the test cluster keeps no
accounting database, so `sacct` has nothing to report there).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from haviv_tf.study import report
from haviv_tf.study import sweep
import file_tree  # pylint: disable=g-bad-import-order

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHER = os.path.join(REPO, "launch", "sweep.py")
CLUSTER = os.path.join(REPO, "tests", "slurm_cluster.sh")
TERMINAL = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
            "PREEMPTED", "BOOT_FAIL", "DEADLINE"}
# Two networks, long enough a training (600 steps, a checkpoint every 20) to be stopped in
# the middle; no fine-tunings or back-tracking, so each task is one `haviv_tf.main` train run.
# No XLA: compiling the tiny network's steps in each of the four trainings costs more than
# running them, and what is tested here is the job array, not the compiled steps.
GRID = dict(name="slurm_e2e", datasets=["mnist_sample"], protocols=["vocu", "decu"],
            archs=["gru"], seeds=[0], finetunes=[], backtrack=False, sp_max_iters=50,
            overrides=dict(units=8, train_steps=600, batch_size=16, eval_delays=[5, 30],
                           eval_trials=20, checkpoint_every=20, log_every=20, history_every=200,
                           jit_compile=False))


def _cluster_up():
  return (shutil.which("sinfo") is not None
          and subprocess.run(["bash", CLUSTER, "check"], capture_output=True).returncode == 0)


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
  """A Slurm cluster with an idle node: the running one, or one started (and stopped) here."""
  if _cluster_up():
    yield None
    return
  if os.geteuid() != 0:
    pytest.skip("no Slurm cluster answers, and starting one (tests/slurm_cluster.sh) needs root")
  if not shutil.which("apt-get") and not shutil.which("slurmctld"):
    pytest.skip("no Slurm cluster answers, and neither slurm-wlm nor a package manager "
                "(apt-get) to install it is here")
  state = str(tmp_path_factory.mktemp("slurm_state"))
  out = subprocess.run(["bash", CLUSTER, "start", state], capture_output=True, text=True)
  if out.returncode != 0:
    why = (out.stderr.strip().splitlines() or ["no reason given"])[-1]
    if os.environ.get("CI"):
      pytest.fail(f"could not start the test Slurm cluster: {why}")
    pytest.skip(f"could not start a Slurm cluster: {why}")
  try:
    yield state
  finally:
    subprocess.run(["bash", CLUSTER, "stop", state], capture_output=True)


def _launch(*args, env=None):
  return subprocess.run([sys.executable, LAUNCHER, *args], capture_output=True, text=True,
                        env=env)


def _tasks(job):
  """{task index: state} of an array job (squeue -t all keeps finished tasks a while)."""
  out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-j", str(job), "-o", "%i %T"],
                       capture_output=True, text=True, check=True).stdout
  states = {}
  for line in out.splitlines():
    jid, state = line.split()
    m = re.fullmatch(rf"{job}_(\d+)", jid)
    if m:
      states[int(m.group(1))] = state
  return states


def _wait(job, n, timeout, root):
  deadline = time.time() + timeout
  while time.time() < deadline:
    states = _tasks(job)
    if len(states) == n and set(states.values()) <= TERMINAL:
      return states
    time.sleep(1)
  subprocess.run(["scancel", str(job)], check=False)
  pytest.fail(f"job {job} not finished in {timeout} s: {_tasks(job)}\n" + _logs(root))


def _wait_until_pending(job, task, timeout):
  """Waits until array task `task` of `job` is PENDING (a requeued task between its runs)."""
  deadline = time.time() + timeout
  while _tasks(job).get(task) != "PENDING":
    if time.time() > deadline:
      pytest.fail(f"task {job}_{task} not pending {timeout} s after its requeue: {_tasks(job)}")
    time.sleep(0.2)


def _logs(root):
  logs = os.path.join(root, sweep.LOG_DIR)
  text = []
  for name in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
    with open(os.path.join(logs, name), errors="replace") as f:
      text.append(f"--- {name}\n{f.read()[-3000:]}")
  return "\n".join(text)


def _submit(script):
  out = subprocess.run(["sbatch", "--parsable", script], capture_output=True, text=True)
  assert out.returncode == 0, out.stderr
  return int(out.stdout.strip().split(";")[0])


def _wait_for_checkpoint(workdir, timeout):
  ckpt = os.path.join(workdir, "checkpoints", "checkpoint")
  deadline = time.time() + timeout
  while time.time() < deadline:
    if os.path.exists(ckpt):
      return
    time.sleep(0.2)
  pytest.fail(f"no checkpoint in {workdir} after {timeout} s")


def _runs(log_path):
  """The `haviv_tf.main` invocations in a step log: [(first epoch, last epoch, of N)]."""
  with open(log_path) as f:
    parts = f.read().split("\n$ ")
  out = []
  for part in parts:
    epochs = [(int(a), int(b)) for a, b in re.findall(r"^Epoch (\d+)/(\d+)", part, re.M)]
    if epochs:
      out.append((epochs[0][0], epochs[-1][0], epochs[0][1]))
  return out


def test_job_array_runs_resumes_after_cancel_and_requeue_and_skips_when_done(
    slurm_cluster, tmp_path):
  del slurm_cluster
  root = str(tmp_path / "root")
  grid_file = tmp_path / "grid.json"
  grid_file.write_text(json.dumps(GRID))
  script = str(tmp_path / "e2e.sbatch")
  out = _launch(f"--grid_file={grid_file}", f"--root={root}", f"--slurm={script}",
                "--slurm_cpus=1", "--slurm_mem_gb=1", "--slurm_hours=1", "--slurm_requeue",
                "--slurm_throttle=2", "--submit")
  assert out.returncode == 0, out.stderr
  job = int(re.search(r"submitted job (\d+)", out.stdout).group(1))
  _, specs = sweep.load_grid(root)
  assert len(specs) == 2
  work = [os.path.join(root, s.name) for s in specs]

  # Task 0 is requeued (what preemption does) and task 1 cancelled, both mid-training.
  _wait_for_checkpoint(work[0], 300)
  subprocess.run(["scontrol", "requeue", f"{job}_0"], check=True)
  # A requeued job waits ~2 min before it may start again; let it start now, but only once its
  # first run has ended and a second has passed: started within the second of the requeue,
  # slurmctld kills it ("Job credential revoked") and the task ends FAILED.
  _wait_until_pending(job, 0, 60)
  time.sleep(2)
  subprocess.run(["scontrol", "update", f"jobid={job}_0", "starttime=now"], check=True)
  _wait_for_checkpoint(work[1], 300)
  subprocess.run(["scancel", f"{job}_1"], check=True)
  states = _wait(job, 2, 600, root)
  assert states == {0: "COMPLETED", 1: "CANCELLED"}, (states, _logs(root))
  assert sweep.is_done(specs[0], root) and not sweep.is_done(specs[1], root)
  with open(os.path.join(root, sweep.LOG_DIR, f"slurm-{job}_0.out")) as f:
    task_log = f.read()  # one log per task; the requeued run appended to it
  assert "restart 0" in task_log and "restart 1" in task_log, task_log
  train0 = _runs(os.path.join(root, sweep.LOG_DIR, f"{specs[0].name}.train.log"))
  assert len(train0) == 2, train0
  assert train0[1][0] > 1, f"the requeued task trained from scratch: {train0}"
  assert train0[1][1] == train0[1][2]

  # Resubmitting: task 0 is skipped, task 1 resumes from its checkpoint.
  job2 = _submit(script)
  assert _wait(job2, 2, 600, root) == {0: "COMPLETED", 1: "COMPLETED"}, _logs(root)
  train1 = _runs(os.path.join(root, sweep.LOG_DIR, f"{specs[1].name}.train.log"))
  assert len(train1) == 2 and train1[1][0] > 1 and train1[1][1] == train1[1][2], train1
  assert train1[1][0] <= train1[0][1] + 1, f"resumed after where it stopped: {train1}"
  with open(os.path.join(root, sweep.LOG_DIR, f"slurm-{job2}_0.out")) as f:
    assert ": skipped" in f.read()
  for s in specs:
    assert sweep.is_done(s, root)
    done = json.load(open(os.path.join(root, s.name, sweep.DONE_FILE)))
    assert done["spec"]["name"] == s.name and set(done["seconds_per_step"]) == {"train"}
    assert done["threads"] == 1  # SLURM_CPUS_PER_TASK
    res = json.load(open(os.path.join(root, s.name, "results.json")))
    assert set(res["accuracy_by_delay"]) == {"5", "30"}
  summary = report.build(root)
  assert summary["analysed"] == 2 and not summary["missing"]
  assert os.path.exists(os.path.join(root, report.REPORT_MD))

  # Resubmitting a finished sweep finishes at once and runs nothing again.
  before = file_tree.tree(root, ignore_top=(sweep.LOG_DIR, sweep.LOCK_DIR))
  t0 = time.time()
  job3 = _submit(script)
  assert _wait(job3, 2, 120, root) == {0: "COMPLETED", 1: "COMPLETED"}, _logs(root)
  assert time.time() - t0 < 120
  for i in (0, 1):
    with open(os.path.join(root, sweep.LOG_DIR, f"slurm-{job3}_{i}.out")) as f:
      assert ": skipped" in f.read()
  assert file_tree.tree(root, ignore_top=(sweep.LOG_DIR, sweep.LOCK_DIR)) == before


def test_submit_without_sbatch_is_one_error_line(tmp_path):
  grid_file = tmp_path / "grid.json"
  grid_file.write_text(json.dumps(GRID))
  env = dict(os.environ, PATH=os.path.dirname(sys.executable))  # no sbatch on it
  out = _launch(f"--grid_file={grid_file}", f"--root={tmp_path}/root",
                f"--slurm={tmp_path}/s.sbatch", "--submit", env=env)
  assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
  assert out.stderr.startswith("error: sbatch not found on PATH")
  assert not os.path.exists(tmp_path / "s.sbatch")


def test_a_script_for_another_root_is_refused(tmp_path):
  grid_file = tmp_path / "grid.json"
  grid_file.write_text(json.dumps(GRID))
  script = str(tmp_path / "a.sbatch")
  out = _launch(f"--grid_file={grid_file}", f"--root={tmp_path}/a", f"--slurm={script}")
  assert out.returncode == 0, out.stderr
  # Writing root b's script over root a's.
  out = _launch(f"--grid_file={grid_file}", f"--root={tmp_path}/b", f"--slurm={script}")
  assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
  assert out.stderr.startswith(f"error: {script} is the job script of root {tmp_path}/a,")
  # A task of root a's script, once a's grid.json has been replaced by another grid.
  other = dict(GRID, name="other", seeds=[5])
  grid_file.write_text(json.dumps(other))
  os.remove(os.path.join(tmp_path, "a", sweep.GRID_FILE))
  assert _launch(f"--grid_file={grid_file}", f"--root={tmp_path}/a", "--list").returncode == 0
  task = subprocess.run(["bash", script], env=dict(os.environ, SLURM_ARRAY_TASK_ID="0"),
                        capture_output=True, text=True)
  assert task.returncode == 1, task.stderr
  assert task.stderr.count("\n") == 1 and task.stderr.startswith(
      f"error: {tmp_path}/a/grid.json is not the grid this job script was written for")
  # ... or once the root is gone.
  shutil.rmtree(os.path.join(tmp_path, "a"))
  task = subprocess.run(["bash", script], env=dict(os.environ, SLURM_ARRAY_TASK_ID="1"),
                        capture_output=True, text=True)
  assert task.returncode == 1 and task.stderr.count("\n") == 1, task.stderr
  assert "holds no sweep" in task.stderr and "Traceback" not in task.stderr
  assert not os.path.exists(os.path.join(tmp_path, "a", sweep.GRID_FILE))


def test_script_flags_for_real_clusters(tmp_path):
  grid_file = tmp_path / "grid.json"
  grid_file.write_text(json.dumps(GRID))
  script = tmp_path / "s.sbatch"
  out = _launch(f"--grid_file={grid_file}", f"--root={tmp_path}/r", f"--slurm={script}",
                "--slurm_cpus=6", "--slurm_gpus=2", "--slurm_throttle=3", "--slurm_requeue",
                f"--slurm_logs={tmp_path}/logs")
  assert out.returncode == 0, out.stderr
  text = script.read_text()
  for line in ("#SBATCH --array=0-1%3", "#SBATCH --cpus-per-task=6", "#SBATCH --gres=gpu:2",
               "#SBATCH --requeue", "#SBATCH --open-mode=append",
               f"#SBATCH --output={tmp_path}/logs/slurm-%A_%a.out"):
    assert line in text.splitlines(), (line, text)
  assert os.path.isdir(tmp_path / "logs")
  # TensorFlow threads follow the CPUs Slurm gives the task (sbatch -c overrides the script).
  fake = tmp_path / "fake.sbatch"
  fake.write_text(text.replace(f"exec {sys.executable}", "exec echo"))
  for env, threads in [({}, "6"), ({"SLURM_CPUS_PER_TASK": "3"}, "3")]:
    run = subprocess.run(["bash", str(fake)], capture_output=True, text=True,
                         env=dict(os.environ, SLURM_ARRAY_TASK_ID="1", **env))
    assert run.returncode == 0, run.stderr
    assert f"--threads={threads}" in run.stdout and "--grid_digest=" in run.stdout
  plain = tmp_path / "p.sbatch"
  assert _launch(f"--root={tmp_path}/r", f"--slurm={plain}").returncode == 0
  text = plain.read_text()
  assert "#SBATCH --array=0-1\n" in text
  assert "gres" not in text and "requeue" not in text
  for bad in ("--slurm_gpus=-1", "--slurm_throttle=-2"):
    out = _launch(f"--root={tmp_path}/r", f"--slurm={plain}", bad)
    assert out.returncode == 1 and out.stderr.startswith("error: ") and out.stderr.count("\n") == 1
