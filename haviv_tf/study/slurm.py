"""A sweep as one Slurm job array: array task i runs (or resumes, or skips) run i of grid.json."""

import os
import shlex
from typing import Optional, Sequence

from haviv_tf.study import sweep


SCRIPT_ROOT_MARK = "# haviv_tf sweep root: "


def script_root(path: str) -> Optional[str]:
  """The sweep root a job script written by slurm_script was written for (None: not ours)."""
  try:
    with open(path, errors="replace") as f:
      for line in f.read(8192).splitlines():
        if line.startswith(SCRIPT_ROOT_MARK):
          return line[len(SCRIPT_ROOT_MARK):].strip()
  except OSError:
    return None
  return None


def slurm_script(specs, root: str, launcher: str, data_dir: str = "", cpus: int = 2,
                 hours: int = 24, mem_gb: int = 16, python: str = "python3",
                 grid_name: str = "sweep", extra_sbatch: Sequence[str] = (), gpus: int = 0,
                 throttle: int = 0, requeue: bool = False, log_dir: str = "",
                 digest: str = "") -> str:
  """A Slurm job-array script: array task i runs (or resumes, or skips) run i of grid.json.

  `launcher` is the path of launch/sweep.py on the cluster's file system. Each task runs with
  as many TensorFlow threads as it has CPUs (SLURM_CPUS_PER_TASK, so `sbatch -c N` overrides
  `cpus`), `gpus` GPUs (--gres=gpu:N), writes one log file <log_dir>/slurm-<job>_<task>.out,
  at most `throttle` tasks run at once (0: no limit), and with `requeue` a preempted task is
  requeued and resumes from its checkpoints (its log is appended to). `digest` (grid_digest)
  lets a task refuse a root whose grid.json is not the one the script was written for.
  """
  root_abs = os.path.abspath(root)
  log_abs = os.path.abspath(log_dir or os.path.join(root_abs, sweep.LOG_DIR))
  names = " ".join(shlex.quote(s.name) for s in specs)
  array = f"0-{len(specs) - 1}" + (f"%{throttle}" if throttle else "")
  lines = [
      "#!/bin/bash",
      f"#SBATCH --job-name=haviv_tf-{grid_name}",
      f"#SBATCH --array={array}",
      f"#SBATCH --cpus-per-task={cpus}",
      f"#SBATCH --mem={mem_gb}G",
      f"#SBATCH --time={hours}:00:00",
      f"#SBATCH --output={log_abs}/slurm-%A_%a.out",
      *([f"#SBATCH --gres=gpu:{gpus}"] if gpus else []),
      *(["#SBATCH --requeue", "#SBATCH --open-mode=append"] if requeue else []),
      *[f"#SBATCH {s}" for s in extra_sbatch],
      f"{SCRIPT_ROOT_MARK}{root_abs}",
      "# Resubmit the same script to resume: finished runs are skipped, interrupted ones resume",
      "# from their last checkpoint, and a run already held by another task is not run twice.",
      "set -euo pipefail",
      f"RUNS=({names})",
      'if [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then echo "run with sbatch" >&2; exit 2; fi',
      'NAME="${RUNS[$SLURM_ARRAY_TASK_ID]}"',
      f'THREADS="${{SLURM_CPUS_PER_TASK:-{cpus}}}"',
      'echo "haviv_tf: task ${SLURM_ARRAY_JOB_ID:-?}_$SLURM_ARRAY_TASK_ID = $NAME on '
      '$(hostname), $THREADS threads, restart ${SLURM_RESTART_COUNT:-0}, $(date -u +%FT%TZ)"',
      f"exec {shlex.quote(python)} {shlex.quote(launcher)} --root={shlex.quote(root_abs)} "
      f"--only=\"$NAME\" --threads=\"$THREADS\""
      + (f" --grid_digest={digest}" if digest else "")
      + (f" --data_dir={shlex.quote(os.path.abspath(data_dir))}" if data_dir else ""),
  ]
  return "\n".join(lines) + "\n"
