"""Claim (e) of the study report: how VoCu and DeCu form their slow points, from back-tracking.

Each network's final class slow points are followed back through its training snapshots
(backtrack.json); a class's birth is found by the read-out and, independently, by the nearest
class centre. The claim: VoCu's later classes are born from existing slow points when they enter
training.
"""

import numpy as np

from haviv_tf.analysis import backtrack as backtrack_lib
from haviv_tf.study import evidence as evd
from haviv_tf.study import significance as sig

# (e) holds if at least this fraction of the later VoCu classes is born at its introduction.
BORN_AT_INTRODUCTION = 0.75


def find_births(b, cfg, by):
  """find_births by the read-out ("readout") or by the nearest class centre ("nearest_centre");
  None when the back-tracking predates the centre criterion."""
  if by not in b:
    return None
  labels = b[by]
  if by == "nearest_centre":
    labels = backtrack_lib.centre_labels(labels, b["centre_ratio"],
                                         b.get("centre_margin", backtrack_lib.CENTRE_MARGIN))
  return backtrack_lib.find_births(b["steps"], labels, b["classes"],
                                   backtrack_lib.introduction_steps(cfg))


def _network_births(r) -> dict:
  """One back-tracked network's births (by read-out and by nearest centre) and merges."""
  b = r["backtrack"]
  stage = {s for s, c in zip(b["steps"], b["stage_change"]) if c}
  births = find_births(b, r["config"], "readout")
  centre = find_births(b, r["config"], "nearest_centre")
  late = [x for x in births if x["introduced_at"] > 0]
  total = r["config"].train_steps
  return dict(
      name=r["name"], merges=len(b["merges"]),
      merges_at_stage_change=sum(m["step"] in stage for m in b["merges"]),
      snapshots=len(b["steps"]) - 1, births=births, births_by_centre=centre,
      late_classes=len(late), born_at_introduction=sum(x["at_introduction"] for x in late),
      born_at_introduction_by_centre=(None if centre is None else sum(
          x["at_introduction"] for x in centre if x["introduced_at"] > 0)),
      same_birth=(None if centre is None else sum(
          (x["birth_step"], x["from_class"]) == (y["birth_step"], y["from_class"])
          for x, y in zip(births, centre))),
      birth_fraction=[x["birth_step"] / total for x in births
                      if x["birth_step"] is not None and x["from_class"] is not None])


def _intro_lines(merge_frac) -> list:
  """(e)'s test, stated: births, merges and the two criteria."""
  return ["Each network's final class slow points are followed back through its training "
          "snapshots. A point's *birth* is the earliest snapshot from which on it reads out "
          "its own class; just before, it reads out another class (the class it was born "
          "from). A *merge* is where two classes' points come within "
          f"{merge_frac} × the median distance between the final "
          "points. The claim (a class that VoCu introduces later is born from the slow point "
          "of a class already trained, when it enters training) holds if at least 75% of "
          "the VoCu classes introduced after the start are born exactly at their "
          "introduction step.", "",
          "A second criterion does not use the read-out: at each snapshot a point belongs to "
          "the class whose centre (that snapshot's mean state 15 steps after the stimulus, "
          "all test trials, in speed coordinates) is nearest, if it is nearer than "
          f"{backtrack_lib.CENTRE_MARGIN} × the next nearest centre (else to no class, "
          "written −1); births by it are found the same way. *Same birth* counts the points "
          "whose birth step and source class agree under both criteria.", ""]


def _count(rs, key, of) -> str:
  vals = [x[key] for x in rs]
  if any(v is None for v in vals):
    return "–"
  return f"{sum(vals)} of {of}" if of else "–"


def _group_table(by_proto) -> list:
  """One row per protocol and architecture: births at introduction, merges."""
  lines = ["| protocol, arch | networks | later-introduced classes born at their introduction "
           "(read-out) | same, by nearest class centre | same birth under both criteria | "
           "births (fraction of training, median) | points reading out their own class at "
           "every snapshot | merges per network |",
           "|---|---|---|---|---|---|---|---|"]
  for p, rs in sorted(by_proto.items()):
    fr = [f for x in rs for f in x["birth_fraction"]]
    late = sum(x["late_classes"] for x in rs)
    born = f"{sum(x['born_at_introduction'] for x in rs)} of {late}" if late else "–"
    median = f"{np.median(fr):.2f} ({len(fr)} births)" if fr else "– (0 births)"
    always = sum(b["from_class"] is None and b["birth_step"] is not None
                 for x in rs for b in x["births"])
    points = sum(len(x["births"]) for x in rs)
    lines.append(f"| {p} | {len(rs)} | {born} | "
                 f"{_count(rs, 'born_at_introduction_by_centre', late)} | "
                 f"{_count(rs, 'same_birth', points)} | {median} | {always} | "
                 f"{sig.mean_sd([x['merges'] for x in rs])} |")
  return lines


def _birth_lists(by_proto) -> list:
  """Every network's births, by each criterion that all networks have."""
  lines = []
  for key, what in (("births", "read-out"), ("births_by_centre", "nearest class centre")):
    if any(x[key] is None for rs in by_proto.values() for x in rs):
      continue
    lines += ["", f"Births per network by the {what} (class: step ← class it was born from):",
              ""]
    for _, rs in sorted(by_proto.items()):
      for x in rs:
        born = [f"{b['class']}: {b['birth_step']} ← {b['from_class']}" for b in x[key]
                if b["from_class"] is not None]
        lines.append(f"- {x['name']}: " + (", ".join(born) or "none (every point is its own "
                                                               "class's at every snapshot)"))
  return lines


def claim_e(ev: evd.Evidence, bt):
  """(e) back-tracking: VoCu's later classes are born from existing slow points."""
  del ev  # (e) reads the back-tracking records alone
  by_proto = {}
  for r in bt:
    by_proto.setdefault(f"{r['protocol']} {r['arch']}", []).append(_network_births(r))
  lines = (_intro_lines(bt[0]["backtrack"]["merge_frac"]) + _group_table(by_proto)
           + _birth_lists(by_proto))
  vocu = [x for k, rs in by_proto.items() if k.startswith("vocu ") for x in rs]
  late = sum(x["late_classes"] for x in vocu)
  at = sum(x["born_at_introduction"] for x in vocu)
  held = bool(late) and at / late >= BORN_AT_INTRODUCTION
  at_c = (None if any(x["born_at_introduction_by_centre"] is None for x in vocu)
          else sum(x["born_at_introduction_by_centre"] for x in vocu))
  numbers = dict(held=held if late else None, born_at_introduction=at, later_classes=late,
                 born_at_introduction_by_centre=at_c, by_protocol=by_proto)
  text = (f"**{evd.verdict(held)}**: {at} of {late} later VoCu classes are born at their "
          "introduction") if late else "**n/a**: no VoCu network was back-tracked"
  if late and at_c is not None:
    text += (f" by the read-out; by the nearest class centre, {at_c} of {late} "
             f"({'at least' if at_c / late >= BORN_AT_INTRODUCTION else 'under'} 75%)")
  lines += ["", text + ".", ""]
  if late and not held:
    lines += _why_not_e(by_proto, numbers)
  return numbers, lines


def _why_not_e(by_proto, numbers) -> list:
  """Where (e) did not hold: whether the births are from another class's point at all, and
  whether the points are one region in the young network (all pairs merged)."""
  births = [b for rs in by_proto.values() for x in rs for b in (x["births_by_centre"] or [])
            if b["from_class"] is not None]
  from_none = sum(b["from_class"] == -1 for b in births)
  nets = [x for rs in by_proto.values() for x in rs]
  all_merged = sum(x["merges"] == len(x["births"]) * (len(x["births"]) - 1) // 2 for x in nets
                   if len(x["births"]) > 1)
  numbers["why"] = dict(births_by_centre=len(births), from_no_class=from_none,
                        networks_all_points_merged=all_merged, networks=len(nets))
  parts = []
  if births:
    parts.append(f"by the nearest class centre, {from_none} of {len(births)} births come from a "
                 "region near no class's trials (−1), not from another class's point")
  parts.append(f"in {all_merged} of {len(nets)} networks every pair of class points merges "
               "going back (the points start in one region of the young network)")
  text = "Why: " + "; ".join(parts) + "."
  if births and from_none > len(births) / 2:
    text += (" A read-out birth \"from class k\" is then mostly the class the read-out gives "
             "in a region no class occupies yet, not a class's slow point splitting.")
  return [text, ""]

