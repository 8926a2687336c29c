"""The README's results table: each of the paper's claims (a)-(e) × each committed grid.

Reads only committed files: each study grid's `report.json` (written by
`haviv_tf.study.report.build`). The paper grid's column heading says how many of its networks
are in; a claim that needs two networks or more ((b): how widely networks differ) is "n/a"
while it holds one. Prints the markdown table; `tests/readme_test.py` checks that README.md
holds exactly this output.

  python3 experiments/results_table.py            # print the table
  python3 experiments/results_table.py --check    # exit 1 if README.md's table differs
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BEGIN = "<!-- results table: python3 experiments/results_table.py -->"
END = "<!-- end of results table -->"

# (column heading, folder under experiments/, the write-up it links); "{n}" in a heading is
# the number of networks the grid's report holds so far.
GRIDS = (("MNIST small (8 nets, 3k steps)", "study_small", "experiments/study_small/REPORT.md"),
         ("MNIST medium (12 nets, 9k steps)", "study_medium",
          "experiments/study_medium/REPORT.md"),
         ("CIFAR-10 quick (4 nets)", "cifar10_quick", "experiments/cifar10_quick/REPORT.md"),
         ("MNIST paper_mnist ({n} of 8 nets, 140k steps)", "study_paper",
          "experiments/study_paper/REPORT.md"))
CLAIMS = (("a", "every network solves the task at the training delays"),
          ("b", "networks differ widely at long delays"),
          ("c", "slow-point speed predicts long-delay accuracy"),
          ("d", "speed regularisation beats control at long delays"),
          ("e", "VoCu's later classes are born from existing slow points"))


def _read(path):
  with open(os.path.join(REPO, path)) as f:
    return json.load(f)


def _rho(x):
  """A correlation as the write-ups give it: two decimals, three when it rounds to zero."""
  return f"{x:+.3f}" if abs(x) < 0.005 else f"{x:+.2f}"


# A (c) or (d) verdict of a report made before those claims were tested across networks (the
# 95% interval from resampling networks; a one-sided test; "not testable" below
# evidence.MIN_NETWORKS networks): marked, with a note under the table.
OLD = " †"
OLD_NOTE = ("† from a report made before (c) and (d) were tested across networks (an interval "
            "from resampling whole networks, a one-sided test, not testable below 5 networks); "
            "the grid's re-run will replace it.")


def _word(held):
  return "not testable" if held is None else ("**held**" if held else "not held")


def _grid_cells(report):
  """claim -> cell text, from a study grid's report.json (as read)."""
  a, b, c, d, e = (report["claims"][k] for k in "abcde")
  cells = {}
  cells["a"] = f"{_word(a['held'])}: worst {min(a['min_accuracy'].values()):.3f} " \
               f"(≥ {a['threshold']:.3g})"
  # The report's own widest delay (older reports: the widest span, the first delay of a tie).
  widest = b.get("widest_delay")
  span = ((str(widest), b["spans"][str(widest)]) if widest is not None else
          max(b["spans"].items(), key=lambda kv: (kv[1], -int(kv[0]))))
  cells["b"] = (f"{_word(b['held'])}: widest span {span[1]:.2f} (delay {span[0]})"
                if report["analysed"] > 1 else "n/a (one network)")
  cc = c["correlations"][c["key"]]
  cells["c"] = (f"{_word(c['held'])}: ρ {_rho(cc['spearman'])} (delay {c['key']})"
                + ("" if "network_interval" in c else OLD))
  sp = d["table"][str(d["delay"])]["diffs"]["slow_points"]
  cells["d"] = (f"{_word(d['held'])}: slow points − control {sp['mean']:+.3f} "
                f"(delay {d['delay']})" + ("" if "p_greater" in sp else OLD))
  cells["e"] = (f"{_word(e['held'])}: {e['born_at_introduction']} of {e['later_classes']} "
                "born at introduction")
  return cells


def table() -> str:
  reports = [(h, link, _read(f"experiments/{f}/report.json")) for h, f, link in GRIDS]
  cols = [(h.format(n=r["analysed"]), link, _grid_cells(r)) for h, link, r in reports]
  lines = ["| claim | " + " | ".join(f"[{h}]({link})" for h, link, _ in cols) + " |",
           "|---" * (1 + len(cols)) + "|"]
  for k, text in CLAIMS:
    lines.append(f"| ({k}) {text} | " + " | ".join(cells[k] for _, _, cells in cols) + " |")
  if any(OLD in cell for _, _, cells in cols for cell in cells.values()):
    lines += ["", OLD_NOTE]
  return "\n".join(lines)


def readme_table(readme: str) -> str:
  """The table between the BEGIN and END markers of README.md's text."""
  start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
  return readme[start:end].strip()


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--check", action="store_true", help="compare with README.md's table")
  args = p.parse_args(argv)
  t = table()
  if args.check:
    with open(os.path.join(REPO, "README.md")) as f:
      if readme_table(f.read()) != t:
        print("README.md's results table differs from python3 experiments/results_table.py",
              file=sys.stderr)
        return 1
    return 0
  print(t)
  return 0


if __name__ == "__main__":
  sys.exit(main())
