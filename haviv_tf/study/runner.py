"""Running a sweep's runs here: each run's steps as `haviv_tf.main` subprocesses, N workers.

Every step of a run is a `python -m haviv_tf.main` subprocess, so a run interrupted anywhere
resumes from its last checkpoint when the sweep is started again, and finished runs (marked by
<root>/<name>/sweep_done.json) are skipped. A worker holds an exclusive lock
(<root>/locks/<name>.lock, fcntl.flock: released by the kernel if the worker dies) for as long
as it works on a run, so two launchers on one grid never run the same run twice.
"""

import concurrent.futures
import fcntl
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from typing import Callable, Optional

from haviv_tf.base import artifacts
from haviv_tf.base import config as config_lib
from haviv_tf.study import sweep


def commands(spec: sweep.RunSpec, root: str, data_dir: str = "", python: str = sys.executable):
  """The `haviv_tf.main` command lines of one run, in order (each resumes or skips itself)."""
  workdir = os.path.join(root, spec.name)
  main = [python, "-m", "haviv_tf.main"]
  sp = [f"--sp_max_iters={spec.sp_max_iters}"] if spec.sp_max_iters else []
  if spec.sp_recipes:
    sp.append(f"--sp_recipe={spec.sp_recipes[0]}")
  train = main + [f"--protocol={spec.protocol}", f"--dataset={spec.dataset}",
                  f"--arch={spec.arch}", f"--preset={spec.preset}", f"--seed={spec.seed}",
                  f"--workdir={workdir}"] + sp
  for k, v in spec.overrides:
    v = ",".join(str(x) for x in v) if isinstance(v, (list, tuple)) else v
    train.append(f"--{k}={v}")
  if data_dir:
    train.append(f"--data_dir={data_dir}")
  out = [("train", train)]
  for recipe in spec.sp_recipes[1:]:
    out.append((f"slow_points_{recipe}", main + [
        "--mode=slow_points", f"--workdir={workdir}", f"--sp_recipe={recipe}",
        f"--sp_dir={sweep.SLOW_POINTS_DIR_PREFIX}{recipe}"]
                + [a for a in sp if not a.startswith("--sp_recipe=")]))
  if spec.memory_max_delay:
    out.append(("memory", main + ["--mode=memory", f"--workdir={workdir}",
                                  f"--max_delay={spec.memory_max_delay}"]))
  steps = [f"--steps={spec.finetune_steps}"] if spec.finetune_steps else []
  if spec.finetune_speed_weight is not None:
    steps.append(f"--speed_weight={spec.finetune_speed_weight:g}")
  for mode in spec.finetunes:
    out.append((f"finetune_{mode}", main + ["--mode=finetune", f"--parent={workdir}",
                                            f"--finetune={mode}"] + steps + sp))
  if spec.finetunes:
    out.append(("compare", main + ["--mode=compare", f"--parent={workdir}"] + steps + sp))
  if spec.backtrack:
    out.append(("backtrack", main + ["--mode=backtrack", f"--workdir={workdir}"] + sp))
  return out




class Claim:
  """An exclusive, non-blocking claim on a run (fcntl lock on <root>/locks/<name>.lock)."""

  def __init__(self, root: str, name: str):
    os.makedirs(os.path.join(root, sweep.LOCK_DIR), exist_ok=True)
    self.path = os.path.join(root, sweep.LOCK_DIR, f"{name}.lock")
    self.fd = None

  def acquire(self, blocking: bool = False) -> bool:
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
      os.close(fd)
      return False
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.uname().nodename} pid {os.getpid()}\n".encode())
    self.fd = fd
    return True

  def release(self):
    if self.fd is not None:
      fcntl.flock(self.fd, fcntl.LOCK_UN)
      os.close(self.fd)
      self.fd = None


def thread_env(threads: int) -> dict:
  """Environment limiting a subprocess's TensorFlow (and OpenMP) to `threads` threads."""
  env = dict(os.environ)
  env.update(TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS=str(min(2, threads)),
             OMP_NUM_THREADS=str(threads))
  return env


def run_one(spec: sweep.RunSpec, root: str, data_dir: str = "", threads: int = 0,
            runner: Optional[Callable] = None) -> dict:
  """Runs (or resumes) every step of one run, under its claim.

  Returns {"name", "status": done | skipped | busy | failed, "seconds", "failed_step"?,
  "resumed"?} (resumed: steps of this run were attempted by an earlier invocation). The done
  file's seconds_per_step sums every timed attempt of a step, over all invocations.
  `runner(step, argv, env, log_path)` -> exit code replaces the subprocess call (tests).
  """
  t0 = time.time()
  if sweep.is_done(spec, root):
    return dict(name=spec.name, status="skipped", seconds=0.0)
  claim = Claim(root, spec.name)
  if not claim.acquire():
    return dict(name=spec.name, status="busy", seconds=0.0)
  try:
    if sweep.is_done(spec, root):  # finished by another launcher while we waited for the lock
      return dict(name=spec.name, status="skipped", seconds=0.0)
    env = thread_env(threads) if threads else dict(os.environ)
    log_dir = os.path.join(root, sweep.LOG_DIR)
    os.makedirs(log_dir, exist_ok=True)
    attempts_path = os.path.join(root, spec.name, sweep.ATTEMPTS_FILE)
    attempts = read_attempts(attempts_path)
    resumed = bool(attempts)
    for step, argv in commands(spec, root, data_dir):
      log = os.path.join(log_dir, f"{spec.name}.{step}.log")
      # Recorded before the step starts: a process killed mid-step leaves an attempt without an
      # end (counted as interrupted, its time unknown).
      attempt = dict(step=step, start=round(time.time(), 1), end=None, code=None,
                     threads=threads)
      attempts.append(attempt)
      _write_attempts(attempts_path, attempts)
      code = (runner or _subprocess)(step, argv, env, log)
      attempt.update(end=round(time.time(), 1), code=code)
      _write_attempts(attempts_path, attempts)
      if code != 0:
        return dict(name=spec.name, status="failed", failed_step=step, log=log,
                    seconds=time.time() - t0, resumed=resumed)
    timed = [a for a in attempts if a["end"] is not None]
    steps = {}
    for a in timed:
      steps[a["step"]] = round(steps.get(a["step"], 0.0) + a["end"] - a["start"], 1)
    artifacts.write_json(os.path.join(root, spec.name, sweep.DONE_FILE), dict(
        spec=spec.to_dict(), seconds_per_step=steps, threads=threads,
        intervals=[[a["start"], a["end"]] for a in timed],
        interrupted=len(attempts) - len(timed),
        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z")))
    return dict(name=spec.name, status="done", seconds=time.time() - t0, resumed=resumed)
  finally:
    claim.release()


def describe(spec: sweep.RunSpec, root: str) -> str:
  """Where one run of a sweep stands, for --list: "done", "to do", or its last step attempt
  (step k of n, when it started; training: the last checkpoint of how many steps) and whether
  it is running (its claim's process is alive on this host), stopped (killed or paused with
  the step unfinished), failed, or between steps (another invocation resumes it)."""
  if sweep.is_done(spec, root):
    return "done"
  attempts = read_attempts(os.path.join(root, spec.name, sweep.ATTEMPTS_FILE))
  if not attempts:
    return "to do"
  steps = [step for step, _ in commands(spec, root)]
  last = attempts[-1]
  k = steps.index(last["step"]) + 1 if last["step"] in steps else "?"
  if last["end"] is None:
    state = "running" if _claim_alive(root, spec.name) else "stopped"
  else:
    state = "failed" if last["code"] else "between steps"
  when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(last["start"]))
  text = f"{state}: step {last['step']} ({k} of {len(steps)}), started {when}"
  if last["step"] == "train":
    text += _checkpoint_progress(os.path.join(root, spec.name))
  return text


def _claim_alive(root: str, name: str) -> bool:
  """Whether the process named in the run's claim file lives on this host (the file outlives
  its process; the lock itself is not touched, so a worker is never kept from a run)."""
  try:
    with open(os.path.join(root, sweep.LOCK_DIR, f"{name}.lock")) as f:
      host, _, pid = f.read().split()[:3]
    if host != os.uname().nodename:
      return False
    os.kill(int(pid), 0)
  except (OSError, ValueError):
    return False
  return True


def _checkpoint_progress(workdir: str) -> str:
  """", checkpoint S of N steps" from the run's checkpoint index and config ("" if unknown)."""
  try:
    with open(os.path.join(workdir, "checkpoints", "checkpoint")) as f:
      steps = re.findall(r'^model_checkpoint_path: ".*?ckpt-(\d+)"', f.read(), re.M)
    total = artifacts.read_json(os.path.join(workdir, artifacts.CONFIG_FILE))["config"][
        "train_steps"]
  except (OSError, ValueError, KeyError, TypeError):
    return ""
  return f", checkpoint {steps[0]} of {total} steps" if steps else ""


def read_attempts(path: str) -> list:
  """The step attempts recorded for a run so far (each sweep invocation adds its own)."""
  if not os.path.exists(path):
    return []
  try:
    return list(artifacts.read_json(path)["attempts"])
  except (ValueError, KeyError, TypeError):
    return []  # unreadable: timing restarts; the run's results are not affected


def _write_attempts(path: str, attempts: list):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  artifacts.write_json(path, dict(attempts=attempts))


def _subprocess(step, argv, env, log_path):
  del step
  with open(log_path, "a") as log:
    log.write(f"$ {shlex.join(argv)}\n")
    log.flush()
    return subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                          check=False).returncode


# -- many runs -----------------------------------------------------------------------------------


def run_local(specs, root: str, workers: int = 1, threads: int = 0, data_dir: str = "",
              wait: bool = True, runner=None, progress=print) -> list:
  """Runs the grid with `workers` parallel workers (each run's steps are subprocesses).

  threads: TensorFlow threads per worker (0: max(1, cores // workers)). Runs claimed by another
  launcher are skipped at first; with `wait`, they are waited for at the end and run here if
  that launcher died without finishing them.

  Returns one status dict per run (see run_one), in grid order.
  """
  if workers < 1:
    raise config_lib.InputError(f"`workers` must be positive, got {workers!r}")
  threads = threads or max(1, (os.cpu_count() or 1) // workers)
  os.makedirs(root, exist_ok=True)
  lock = threading.Lock()
  results = {}
  started = time.monotonic()
  begun = [0]

  def job(spec):
    if progress and not sweep.is_done(spec, root):
      with lock:
        begun[0] += 1
        progress(f"network {begun[0]} to run of the {len(specs)}: {spec.name} "
                 f"(logs: {os.path.join(root, sweep.LOG_DIR, spec.name + '.<step>.log')})")
    r = run_one(spec, root, data_dir, threads, runner)
    with lock:
      results[spec.name] = r
      if progress:
        progress(_progress_line(spec, r, results, len(specs), time.monotonic() - started))
    return r

  with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
    list(pool.map(job, specs))
  if wait:
    for spec in specs:
      if results[spec.name]["status"] == "busy":
        claim = Claim(root, spec.name)
        claim.acquire(blocking=True)
        claim.release()
        job(spec)
  return [results[s.name] for s in specs]


def _progress_line(spec, r, results, total, elapsed) -> str:
  """"[k/n] name: status in N s; T so far, about L left (from the M networks run here)"."""
  done = sum(1 for v in results.values() if v["status"] in ("done", "skipped"))
  line = (f"[{done}/{total}] {spec.name}: {r['status']}"
          + (f" in {r['seconds']:.0f} s" if r["status"] == "done" else "")
          + (f" (step {r['failed_step']}, see {r['log']})" if r["status"] == "failed" else ""))
  ran = sum(1 for v in results.values() if v["status"] == "done")
  left = total - len(results)
  line += f"; {artifacts.duration(elapsed)} so far"
  if ran and left:
    # Networks finished here per second of this launcher's time (the workers in parallel).
    line += (f", about {artifacts.duration(elapsed / ran * left)} left for {left} more "
             f"(from the {ran} network{'s' if ran > 1 else ''} run here)")
  elif left:
    line += f"; {left} more"
  return line
