"""Where a forgotten memory goes: the class each shown class is reported as, at long delays.

  python3 experiments/confusion.py RUN [--delays=19,500,2000] [--trials=1000] [--out=FILE.md]
      [--json=FILE.json]

A finished run is restored and evaluated on its own test trials (the evaluation seed of its
config, the trials `--mode=evaluate` draws) with the report confusion of
haviv_tf.probes.evaluation.Evaluator: per delay a 10 x 10 table of trial counts, row the class
shown, column the class reported at t_a. A class the network keeps sits on the diagonal; a
class it loses shows which class it falls into. Each row's leading column is named
("drains into"), with its share of the row's trials.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from haviv_tf.base import artifacts  # pylint: disable=g-import-not-at-top,wrong-import-position
from haviv_tf.base import config as config_lib  # pylint: disable=g-import-not-at-top,wrong-import-position


def markdown(name, confusion) -> str:
  """A table per delay and a line per class: where its trials were reported."""
  out = [f"# Report confusion of {name}", ""]
  for delay, counts in sorted(confusion.items(), key=lambda kv: int(kv[0])):
    out += [f"## Delay {delay}", "",
            "| shown \\ reported | " + " | ".join(str(c) for c in range(len(counts)))
            + " | kept | drains into |",
            "|---" * (len(counts) + 3) + "|"]
    for shown, row in enumerate(counts):
      total = sum(row) or 1
      top = max(range(len(row)), key=lambda c: row[c])
      drains = "–" if top == shown else f"{top} ({row[top] / total:.2f})"
      out.append(f"| {shown} | " + " | ".join(str(v) for v in row)
                 + f" | {row[shown] / total:.2f} | {drains} |")
    out.append("")
  return "\n".join(out)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("run", help="a finished haviv_tf workdir")
  p.add_argument("--delays", default="19,500,2000")
  p.add_argument("--trials", type=int, default=1000)
  p.add_argument("--out", default=None, help="write the Markdown tables here")
  p.add_argument("--json", default=None, help="write the counts here")
  args = p.parse_args(argv)
  try:
    delays = sorted({int(d) for d in args.delays.split(",") if d.strip()})
  except ValueError:
    raise SystemExit(f"error: --delays must be integers, got {args.delays!r}") from None
  if not delays or min(delays) < 1 or args.trials < 10:
    raise SystemExit("error: --delays must be positive and --trials at least 10")
  from haviv_tf.analysis import pipeline  # pylint: disable=g-import-not-at-top
  from haviv_tf.probes import evaluation  # pylint: disable=g-import-not-at-top
  try:
    cfg, source, run = pipeline.restore(args.run)
  except (artifacts.RunError, config_lib.InputError) as e:
    raise SystemExit(f"error: {e}") from None
  ev = evaluation.for_config(run.model, source, cfg)
  res = ev.evaluate(delays, args.trials, cfg.seed, confusion=True)
  name = os.path.basename(os.path.normpath(args.run))
  text = markdown(name, res["report_confusion_by_delay"])
  print(text, end="")
  if args.out:
    artifacts.write_text(args.out, text)
  if args.json:
    artifacts.write_json(args.json, dict(run=name, trials=args.trials, seed=cfg.seed,
                                         accuracy_by_delay=res["accuracy_by_delay"],
                                         report_confusion_by_delay=res[
                                             "report_confusion_by_delay"],
                                         environment=artifacts.environment()))
  return 0


if __name__ == "__main__":
  sys.exit(main())
