"""The index of experiments/README.md: every write-up, its status, command and code revision.

  python3 experiments/index.py            # print the table
  python3 experiments/index.py --check    # exit 1 if experiments/README.md's table differs

WRITEUPS below holds each write-up's status and the command that made it (the write-up has
the full set of commands where there are several). The revision is the write-up's own record
of the code it ran with where it gives one ("the package code of commit ..."), else the last
commit that changed it up to BASE (git log --format=%h -1 BASE -- FILE; BASE is the main
commit before the write-ups' paths were made machine-independent, so that edit does not count
as making them), else the last commit that changed it. `tests/readme_test.py` checks that
every *.md under experiments/ is listed and that the README holds this table.
"""

import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BASE = "5afdddb"
BEGIN = "<!-- write-up index: python3 experiments/index.py -->"
END = "<!-- end of write-up index -->"
CURRENT = "current"

_SMALL = ("python3 -m haviv_tf.main --mode=sweep --grid=small --workdir=runs/small --workers=2 "
          "--data_dir=../shared/data; the report rebuilt from the committed runs: python3 -c "
          "\"from haviv_tf.study import report; report.build('experiments/study_small/runs', "
          "out='experiments/study_small')\"")
_MEDIUM = ("python3 -m haviv_tf.main --mode=sweep --grid=medium --workdir=runs/medium "
           "--workers=2 --data_dir=../shared/data; the report rebuilt from the committed runs: "
           "python3 -c \"from haviv_tf.study import report; "
           "report.build('experiments/study_medium/runs', out='experiments/study_medium')\"")
_CIFAR = ("python3 -m haviv_tf.main --mode=sweep --grid=cifar_quick --workdir=runs/cifar_quick "
          "--workers=2 --threads=1 --data_dir=../shared/data")
_SP = "bash experiments/slow_points_reachable/grid.sh runs/small runs/sp"
_SP_REPORT = ("python3 -c \"from haviv_tf.study import report; "
              "report.build('runs/sp/paper', out='runs/sp/report_paper')\"")
_SP_FIRST = "the first round's commands in slow_points_reachable.md"
_C = "claim (c)'s --mode=correlate, written by the report"
_PAPER = ("python3 launch/sweep.py --grid=paper_mnist --root=runs/paper_mnist --workers=2 "
          "--threads=1 --data_dir=../shared/data; python3 experiments/grid_files.py save "
          "--weights --root=runs/paper_mnist --dest=experiments/study_paper/runs; python3 -c "
          "\"from haviv_tf.study import report; report.build('experiments/study_paper/runs', "
          "out='experiments/study_paper')\"")
_PARTIAL = "partial: the networks finished so far (its header lists the missing ones)"

# (write-up under experiments/, status, command or None (the commands are in the write-up),
#  optional note)
WRITEUPS = (
    ("study_small/REPORT.md", CURRENT, _SMALL),
    ("study_small/study/analysis.md", CURRENT, _SMALL, _C),
    ("study_medium/REPORT.md", CURRENT, _MEDIUM),
    ("study_medium/study/analysis.md", CURRENT, _MEDIUM, _C),
    ("study_paper/REPORT.md", CURRENT, _PAPER, _PARTIAL),
    ("study_paper/study/analysis.md", CURRENT, _PAPER, _C),
    ("study_paper/COMPARISON.md", CURRENT,
     "python3 experiments/compare_grids.py paper=experiments/study_paper "
     "medium=experiments/study_medium --out experiments/study_paper/COMPARISON.md", _PARTIAL),
    ("study_medium/COMPARISON.md", CURRENT,
     "python3 experiments/compare_grids.py small=experiments/study_small "
     "medium=experiments/study_medium --out experiments/study_medium/COMPARISON.md"),
    ("study_medium/ceiling.md", CURRENT,
     "python3 experiments/mlp_ceiling.py --epochs 19 --seeds 0,1,2 --json ...", "see below"),
    ("study_medium/centre_targets.md", CURRENT,
     "python3 experiments/centre_targets.py run --root=runs/medium; "
     "python3 experiments/centre_targets.py report"),
    ("study_medium/learning_curve/tables.md", CURRENT,
     "python3 experiments/learning_curve.py run --runs=...; python3 experiments/learning_curve.py report"),
    ("cifar10_quick.md", CURRENT, None),
    ("cifar10_quick/REPORT.md", CURRENT, _CIFAR,
     "of the first run, whose per-run files were never committed; the grid is being re-run "
     "from its seeds, and runs/ holds the re-run's finished networks (cifar10_quick.md says "
     "which); this report is rebuilt from them when all four are in"),
    ("cifar10_quick/study/analysis.md", CURRENT, _CIFAR, _C),
    ("cifar10_quick/COMPARISON.md", CURRENT,
     "python3 experiments/compare_grids.py mnist_small=experiments/study_small "
     "mnist_medium=experiments/study_medium cifar10_quick=experiments/cifar10_quick "
     "--out experiments/cifar10_quick/COMPARISON.md"),
    ("cifar10_quick/ceiling.md", CURRENT, None),
    ("cifar10_quick/learning_curve/tables.md", CURRENT,
     "python3 experiments/learning_curve.py report --out=experiments/cifar10_quick/learning_curve"),
    ("paper_preset.md", CURRENT, None, "experiments/paper_preset.py"),
    ("memory_length.md", CURRENT, None,
     "experiments/memory_length.py and experiments/learning_curve.py, as in the write-up "
     "(interim: the ablation's seed-0 round, two compressed/full-length paper-preset pairs "
     "and the rate switch; the ablation's seeds 1-2 and its rate grid are queued)"),
    ("memory_length/ablation.md", CURRENT,
     "python3 experiments/memory_length.py experiments/memory_ablation experiments/memory_reverse "
     "--reference=quick "
     "--reference_of=quick:readout_sigmoid_mask_authors=quick:readout_sigmoid "
     "--out experiments/memory_length/ablation.md "
     "--json experiments/memory_length/ablation.json "
     "--png experiments/memory_length/ablation.png",
     "one ingredient of the paper's recipe at a time in the quick recipe (and all of them, on "
     "quick's schedule: memory_reverse), seed by seed, as the "
     "memory_ablation grid fills in"),
    ("memory_length/tables.md", CURRENT,
     "python3 experiments/memory_length.py experiments/study_small experiments/study_medium "
     "experiments/paper_compressed --reference=quick --out experiments/memory_length/tables.md "
     "--json experiments/memory_length/memory_length.json "
     "--png experiments/memory_length/against_quick.png "
     "--lr_png experiments/memory_length/summed_lr.png"),
    ("memory_length/against_paper.md", CURRENT,
     "python3 experiments/memory_length.py experiments/study_paper experiments/paper_compressed "
     "experiments/memory_reverse --reference=paper --out experiments/memory_length/against_paper.md "
     "--json experiments/memory_length/against_paper.json "
     "--png experiments/memory_length/against_paper.png",
     "the compressed schedule and the paper preset on quick's schedule against the full-length "
     "paper networks, seed by seed, as the paper grid fills in"),
    ("rate_switch.md", CURRENT, None,
     "experiments/rate_switch.py run, then report, as in the write-up"),
    ("rate_switch/tables.md", CURRENT,
     "python3 experiments/rate_switch.py report --parents=experiments/paper_compressed/runs/"
     "mnist-vocu-gru-paper-s0-60cc580e,experiments/paper_compressed/runs/"
     "mnist-vocu-lstm-paper-s0-60cc580e,experiments/study_paper/runs/mnist-vocu-gru-paper-s0,"
     "experiments/study_paper/runs/mnist-vocu-lstm-paper-s0 --runs=1e-5:1000,1e-4:1000,1e-3:1000,3e-3:300,3e-3:1000,3e-3:3000 "
     "--out=experiments/rate_switch"),
    ("rate_switch/back/tables.md", CURRENT,
     "python3 experiments/rate_switch.py report --parents=experiments/rate_switch/"
     "mnist-vocu-gru-paper-s0-60cc580e/lr0.003_n3000 --runs=1e-4:1000,1e-4:3000 "
     "--out=experiments/rate_switch/back"),
    ("paper_compressed/confusion/vocu_lstm_s0.md", CURRENT,
     "python3 experiments/confusion.py runs/paper_compressed/mnist-vocu-lstm-paper-s0-60cc580e "
     "--delays=19,500,2000 --trials=1000 "
     "--out=experiments/paper_compressed/confusion/vocu_lstm_s0.md "
     "--json=experiments/paper_compressed/confusion/vocu_lstm_s0.json"),
    ("paper_compressed/confusion/vocu_gru_s0.md", CURRENT,
     "python3 experiments/confusion.py runs/paper_compressed/mnist-vocu-gru-paper-s0-60cc580e "
     "--delays=19,500,2000 --trials=1000 "
     "--out=experiments/paper_compressed/confusion/vocu_gru_s0.md "
     "--json=experiments/paper_compressed/confusion/vocu_gru_s0.json"),
    ("paper_compressed/learning_curve/tables.md", CURRENT,
     "python3 experiments/learning_curve.py run "
     "--runs=runs/paper_compressed/mnist-vocu-gru-paper-s0-60cc580e,"
     "runs/paper_compressed/mnist-vocu-lstm-paper-s0-60cc580e "
     "--delays=19,50,100,200,500 --trials=300 --out=experiments/paper_compressed/learning_curve; "
     "python3 experiments/learning_curve.py report [--x=lr_sum] "
     "--out=experiments/paper_compressed/learning_curve"),
    ("slow_points_reachable.md", CURRENT, _SP, "and the commands in the file"),
    ("slow_points_reachable/grid/report_paper/REPORT.md", CURRENT, _SP_REPORT),
    ("slow_points_reachable/grid/report_paper/study/analysis.md", CURRENT, _SP_REPORT, _C),
    ("slow_points_reachable/grid/analyze_default/analysis.md", CURRENT, _SP),
    ("slow_points_reachable/grid/analyze_paper/analysis.md", CURRENT, _SP),
    ("slow_points_reachable/analysis_default.md",
     "superseded by slow_points_reachable/grid/analyze_default/analysis.md (4 networks of the "
     "first round, then all 8)", None, _SP_FIRST),
    ("slow_points_reachable/analysis_paper.md",
     "superseded by slow_points_reachable/grid/analyze_paper/analysis.md (4 networks of the "
     "first round, then all 8)", None, _SP_FIRST),
    ("slow_points_reachable/compare_decu_gru_s0.md",
     "superseded by study_small/REPORT.md, (d) (first round, one network)", None, _SP_FIRST),
    ("slow_points_reachable/compare_vocu_gru_s0.md",
     "superseded by study_small/REPORT.md, (d) (first round, one network)", None, _SP_FIRST),
    ("dose_response.md", CURRENT, None, "experiments/dose_response.py run, then report"),
    ("dose_response/tables.md", CURRENT, "python3 experiments/dose_response.py report"),
    ("bf16_learning.md", CURRENT,
     "python3 experiments/bf16_learning.py run --root=runs/bf16 --data_dir=../shared/data; "
     "python3 experiments/bf16_learning.py report --root=runs/bf16 --out=experiments/bf16_learning.json"),
    ("mlp_ceiling.md", CURRENT, "python3 experiments/mlp_ceiling.py --out experiments/mlp_ceiling.md"),
    ("finetune_mnist_decu_gru.md",
     "superseded by dose_response.md (the lr 1e-3 quick preset, 107 fine-tuning steps)",
     "python3 experiments/summarize_finetune.py --out experiments/finetune_mnist_decu_gru.md "
     "runs/exp4/decu_gru_s0 runs/exp4/decu_gru_s1 runs/exp4/decu_gru_s2",
     "after training and --mode=compare of each network (below)"),
)

_RECORDED = re.compile(r"package code of commit ([0-9a-f]{7,40})")


def listed_files():
  """Every write-up (*.md under experiments/, except this README), relative to experiments/."""
  out = []
  for d, _, names in os.walk(HERE):
    for n in names:
      if n.endswith(".md"):
        rel = os.path.relpath(os.path.join(d, n), HERE)
        if rel != "README.md":
          out.append(rel.replace(os.sep, "/"))
  return sorted(out)


def _git_rev(*args):
  try:
    out = subprocess.run(["git", "log", "--format=%h", "-1", *args], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def revision(rel):
  with open(os.path.join(HERE, rel), encoding="utf-8") as f:
    m = _RECORDED.search(f.read())
  if m:
    return m.group(1)[:7] + " (recorded)"
  path = os.path.join("experiments", rel)
  return _git_rev(BASE, "--", path) or _git_rev("--", path) or "–"


def table() -> str:
  lines = ["| write-up | status | made by | code revision |", "|---|---|---|---|"]
  for rel, status, command, *note in WRITEUPS:
    made = f"`{command}`" if command else "the commands in the write-up"
    if note:
      made += f"; {note[0]}"
    lines.append(f"| [{rel}]({rel}) | {status} | {made} | {revision(rel)} |")
  return "\n".join(lines)


def readme_table(text):
  return text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip()


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--check", action="store_true")
  a = p.parse_args(argv)
  t = table()
  if a.check:
    with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
      return 0 if readme_table(f.read()) == t else 1
  print(t)
  return 0


if __name__ == "__main__":
  sys.exit(main())
