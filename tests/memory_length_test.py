"""experiments/memory_length.py: variants against a reference, network by network."""

import dataclasses
import math
import os
import sys

import pytest

from haviv_tf.base import artifacts
from haviv_tf.base import config as config_lib
from haviv_tf.probes import memory
from haviv_tf.study import correlations
from haviv_tf.study import sweep
from haviv_tf.training import schedules

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "experiments"))
import memory_length  # pylint: disable=g-import-not-at-top,wrong-import-position

DELAYS = (5, 10, 19, 100, 1000, 10_000)


def _results(level, fall, speed):
  """Accuracy `level` at the training delays, then halving towards chance every `fall` steps."""
  chance = memory.CHANCE
  accs = {d: (level if d <= 19 else chance + (level - chance) * 0.5 ** (d / fall))
          for d in DELAYS}
  return dict(accuracy_by_delay={str(d): a for d, a in accs.items()},
              trials_per_delay={str(d): 1000 for d in DELAYS},
              per_class_accuracy_by_delay={str(d): [a] * 10 for d, a in accs.items()},
              slow_point_speed={str(c): speed * (1 + c / 10) for c in range(10)},
              slow_points_format=correlations.FORMAT_VERSION, slow_points_recipe="paper")


def _write(root, grid, finished):
  """A sweep root of `grid` whose networks named in `finished` {(protocol, arch, seed): results}
  have their files; the others are unfinished."""
  specs = sweep.expand(sweep.get_grid(grid))
  sweep.write_grid(specs, root, grid)
  for spec in specs:
    res = finished.get((spec.protocol, spec.arch, spec.seed))
    if res is not None:
      workdir = os.path.join(root, spec.name)
      os.makedirs(workdir)
      artifacts.write_json(os.path.join(workdir, "config.json"),
                           dict(config=dataclasses.asdict(spec.config())))
      artifacts.write_json(os.path.join(workdir, "results.json"), res)


def test_variant_names_follow_the_grids():
  names = {memory_length.variant_name(s) for g in ("paper_mnist", "paper_compressed",
                                                   "memory_ablation", "memory_reverse", "medium")
           for s in sweep.expand(sweep.get_grid(g))}
  assert {"paper", "paper:compressed", "paper:quick_schedule", "quick", "quick:readout_sigmoid",
          "quick:readout_sigmoid_mask_authors", "quick:train_steps=9000"} <= names
  assert len(names) == 3 + len(sweep.ABLATION_SWITCHES) + 1


def test_pairs_by_seed_and_measures_each_difference(tmp_path):
  full, short = str(tmp_path / "full"), str(tmp_path / "short")
  # Full: seeds 0 and 1 of the VoCu GRU; compressed: the same seeds, faster decay, faster points.
  ref = {0: _results(0.95, 200, 1e-4), 1: _results(0.93, 300, 2e-4)}
  var = {0: _results(0.97, 2000, 1e-6), 1: _results(0.96, 1500, 4e-6)}
  _write(full, "paper_mnist", {("vocu", "gru", s): r for s, r in ref.items()})
  _write(short, "paper_compressed", {("vocu", "gru", s): r for s, r in var.items()})
  out, js, png = str(tmp_path / "m.md"), str(tmp_path / "m.json"), str(tmp_path / "m.png")
  memory_length.main([full, short, "--reference=paper", f"--out={out}", f"--json={js}",
                      f"--png={png}", f"--lr_png={png}.lr.png"])
  for path in (png, png + ".lr.png"):
    with open(path, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  data = artifacts.read_json(js)
  assert len(data["networks"]) == 4   # the 12 unfinished networks are left out
  (row,) = data["comparison"]
  assert row["variant"] == "paper:compressed" and row["seeds"] == [0, 1]
  assert (row["protocol"], row["arch"]) == ("vocu", "gru") and row["same_recipe"]

  def half(res):
    return memory.half_lives(res, config_lib.preset("paper", "mnist").seq_len - 1)["overall"]

  hl = [math.log2(half(var[s])["half_life"] / half(ref[s])["half_life"]) for s in (0, 1)]
  assert row["half_life"]["mean"] == pytest.approx(sum(hl) / 2)
  assert row["half_life"]["min"] == pytest.approx(min(hl)) and row["half_life"]["n"] == 2
  assert row["half_life"]["pairs"] == pytest.approx(hl)
  acc = [(0.97 - 0.95), (0.96 - 0.93)]
  assert row["train_accuracy"]["mean"] == pytest.approx(sum(acc) / 2)
  # The 95% t-interval over 2 seed pairs: mean +- t(0.975, 1) sd / sqrt(2), t = 12.706.
  half_width = 12.706 * abs(acc[0] - acc[1]) / math.sqrt(2) / math.sqrt(2)
  assert row["train_accuracy"]["ci"] == pytest.approx(
      [sum(acc) / 2 - half_width, sum(acc) / 2 + half_width], rel=1e-4)
  assert row["train_accuracy"]["reference_spread"] == pytest.approx(0.02)
  assert row["train_accuracy"]["within_spread"] is False      # +0.025 beyond 0.02
  # Median speed over the classes (the 10 speeds are s * (1 + c / 10)): ratio 1e-6/1e-4 etc.
  assert row["speed"]["mean"] == pytest.approx((math.log10(1e-2) + math.log10(2e-2)) / 2)
  ref_spread = math.log2(half(ref[1])["half_life"] / half(ref[0])["half_life"])
  assert row["half_life"]["reference_spread"] == pytest.approx(ref_spread)
  assert row["half_life"]["within_spread"] is False
  with open(out) as f:
    md = f.read()
  assert "## Against paper" in md and "| paper:compressed | mnist vocu gru (speeds: paper recipe) | 0, 1 |" in md
  assert "; CI +" in md or "; CI -" in md
  assert "## Memory against the summed learning rate" in md
  # The compressed schedule keeps the sum (up to rounding): no rank correlation over one sum.
  assert data["lr"]["networks"] == 4 and "rho" not in data["lr"]
  assert "No rank correlation" in md


def _write_ablation(root, finished):
  """A memory_ablation sweep root whose networks named in `finished` {(variant, seed): results}
  (VoCu GRU) have their files."""
  specs = sweep.expand(sweep.get_grid("memory_ablation"))
  sweep.write_grid(specs, root, "memory_ablation")
  for spec in specs:
    res = finished.get((memory_length.variant_name(spec), spec.seed))
    if res is not None and (spec.protocol, spec.arch) == ("vocu", "gru"):
      workdir = os.path.join(root, spec.name)
      os.makedirs(workdir)
      artifacts.write_json(os.path.join(workdir, "config.json"),
                           dict(config=dataclasses.asdict(spec.config())))
      artifacts.write_json(os.path.join(workdir, "results.json"), res)


def test_a_variant_can_have_its_own_reference(tmp_path):
  root = str(tmp_path / "ablation")
  sigmoid, mask = "quick:readout_sigmoid", "quick:readout_sigmoid_mask_authors"
  falls = {"quick": 1000, sigmoid: 3000, mask: 1500}
  _write_ablation(root, {(v, s): _results(0.97, f * (1 + s), 1e-3)
                         for v, f in falls.items() for s in (0, 1)})
  out, js = str(tmp_path / "a.md"), str(tmp_path / "a.json")
  memory_length.main([root, "--reference=quick", f"--reference_of={mask}={sigmoid}",
                      f"--out={out}", f"--json={js}"])
  data = artifacts.read_json(js)
  assert data["reference_of"] == {mask: sigmoid}
  rows = {r["variant"]: r for r in data["comparison"]}
  assert set(rows) == {sigmoid, mask}
  assert rows[sigmoid]["reference"] == "quick" and rows[mask]["reference"] == sigmoid
  nets = {(n["variant"], n["seed"]): n for n in data["networks"]}
  expected = [math.log2(nets[(mask, s)]["half_life"] / nets[(sigmoid, s)]["half_life"])
              for s in (0, 1)]
  assert rows[mask]["half_life"]["pairs"] == pytest.approx(expected)
  assert rows[mask]["half_life"]["mean"] < 0 < rows[sigmoid]["half_life"]["mean"]
  # The reference's own spread is the sigmoid read-out's over its seeds, not quick's.
  spread = math.log2(nets[(sigmoid, 1)]["half_life"] / nets[(sigmoid, 0)]["half_life"])
  assert rows[mask]["half_life"]["reference_spread"] == pytest.approx(spread)
  with open(out) as f:
    md = f.read()
  against_quick, against_sigmoid = md.split("## Against quick\n")[1].split(f"## Against {sigmoid}\n")
  against_sigmoid = against_sigmoid.split("## Memory against")[0]
  assert f"| {sigmoid} |" in against_quick and f"| {mask} |" not in against_quick
  assert f"| {mask} |" in against_sigmoid and f"| {sigmoid} |" not in against_sigmoid
  # A name with '=' of its own is split where both sides are variants; anything else: one error.
  for bad in (f"{mask}", f"{mask}=paper", f"{mask}={mask}"):
    with pytest.raises(SystemExit, match=r"error: --reference_of=.*expected VARIANT=REFERENCE"):
      memory_length.main([root, "--reference=quick", f"--reference_of={bad}"])
  for args, message in (
      ([f"--reference_of=quick={sigmoid}"], "is --reference itself"),
      ([f"--reference_of={mask}={sigmoid}", f"--reference_of={mask}=quick"], "twice")):
    with pytest.raises(SystemExit, match=message):
      memory_length.main([root, "--reference=quick", *args])
  # A variant whose own reference has no network of its cell and seed is named, not dropped.
  only_mask = str(tmp_path / "only_mask")
  _write_ablation(only_mask, {(v, 0): _results(0.97, 1000, 1e-3) for v in ("quick", mask)})
  _write_ablation(str(tmp_path / "sig1"), {(sigmoid, 1): _results(0.97, 1000, 1e-3)})
  memory_length.main([only_mask, str(tmp_path / "sig1"), "--reference=quick",
                      f"--reference_of={mask}={sigmoid}", f"--out={out}"])
  with open(out) as f:
    # (the read-out's seed 1 has no quick seed 1 either)
    assert ("Not compared (no network of the same cell and seed in its reference): "
            f"{sigmoid}, {mask}.") in f.read()
  with pytest.raises(SystemExit, match="is ambiguous"):
    memory_length.parse_reference_of(["a=b=c"], [dict(variant=v) for v in ("a", "a=b", "b=c", "c")])
  assert memory_length.parse_reference_of(
      ["quick:train_steps=9000=quick"],
      [dict(variant="quick:train_steps=9000"), dict(variant="quick")]) == {
          "quick:train_steps=9000": "quick"}


def test_a_missing_reference_is_one_error(tmp_path):
  root = str(tmp_path / "short")
  _write(root, "paper_compressed", {("vocu", "gru", 0): _results(0.9, 100, 1e-4)})
  with pytest.raises(SystemExit, match="error: no finished network of the reference variant "
                     "'paper'; variants found: paper:compressed"):
    memory_length.main([root, "--reference=paper"])
  with pytest.raises(SystemExit, match="has no grid.json"):
    memory_length.main([str(tmp_path), "--reference=paper"])


def test_summed_learning_rate_follows_the_schedule():
  paper = config_lib.preset("paper", "mnist")
  # The step schedule: the rate for updates 0 .. lr_decay_step, then x lr_decay_factor.
  k = min(paper.lr_decay_step + 1, paper.train_steps)
  expected = paper.learning_rate * (k + paper.lr_decay_factor * (paper.train_steps - k))
  assert schedules.summed_rate(paper) == pytest.approx(expected, rel=1e-5)
  compressed = dataclasses.replace(paper, **dict(sweep.PAPER_COMPRESSED))
  # Compressed tenfold: a tenth of the steps at ten times the rate, the same sum.
  assert schedules.summed_rate(compressed) == pytest.approx(expected, rel=1e-3)
  cosine = dataclasses.replace(paper, lr_schedule="cosine", warmup_steps=0, train_steps=1000,
                               lr_decay_factor=0.0)
  # A half cosine from the rate to 0 sums to half the flat rate's sum.
  assert schedules.summed_rate(cosine) == pytest.approx(
      0.5 * paper.learning_rate * 1000, rel=1e-2)


def test_half_lives_against_the_summed_rate_leave_the_censored_out():
  def net(variant, seed, lr_sum, half_life, censored=False):
    return dict(variant=variant, dataset="mnist", protocol="vocu", arch="gru", seed=seed,
                lr_sum=lr_sum, half_life=half_life, half_life_censored=censored)
  nets = [net("a", 0, 1.0, 50), net("a", 1, 1.0, 80), net("b", 0, 8.0, 400),
          net("b", 1, 8.0, 300), net("c", 0, 24.0, 2000, censored=True)]
  numbers, lines = memory_length.lr_section(nets, resamples=200)
  assert numbers["networks"] == 4 and numbers["censored"] == 1
  # Measured half-lives rise with the sum: ranks (1.5, 1.5, 3.5, 3.5) against (1, 2, 4, 3).
  assert numbers["rho"] == pytest.approx(0.894, abs=1e-3)
  assert numbers["ci95"][0] <= numbers["rho"] <= numbers["ci95"][1]
  text = "\n".join(lines)
  assert "| c | mnist vocu gru | 1 | 24 | ≥ 2000 |" in text and "the 1 censored" in text
  assert "no interval with fewer than 5 networks" in text          # 4 networks: not printed
  numbers, lines = memory_length.lr_section(nets + [net("b", 2, 8.0, 350)], resamples=200)
  assert f"[{numbers['ci95'][0]:+.2f}, {numbers['ci95'][1]:+.2f}], 200 resamples" in "".join(lines)
  # Only censored ones beyond two networks: no rho, and it says why.
  numbers, lines = memory_length.lr_section(nets[:2] + nets[4:], resamples=10)
  assert "rho" not in numbers and "No rank correlation" in "\n".join(lines)
  # Sums equal but for rounding (a compressed schedule): one sum, no rho from the rounding.
  tied = [net("a", 0, 1.22, 64), net("b", 0, 1.2199, 107), net("b", 1, 1.2199, 233)]
  numbers, lines = memory_length.lr_section(tied, resamples=10)
  assert "rho" not in numbers and "No rank correlation" in "\n".join(lines)


def test_speeds_are_compared_in_a_recipe_both_networks_have(tmp_path):
  quick, paper = str(tmp_path / "quick"), str(tmp_path / "paper")
  ref = dict(_results(0.98, 2000, 1e-3), slow_points_recipe="default")
  _write(quick, "small", {("vocu", "gru", 0): ref})
  var = _results(0.9, 100, 1e-2)    # its own recipe: the authors'
  _write(paper, "paper_compressed", {("vocu", "gru", 0): var})
  run = [os.path.join(paper, d) for d in os.listdir(paper) if d.startswith("mnist-vocu-gru")][0]
  # ... and searched again with the default recipe: 4e-3 (median of 4e-3 * (1 + c / 10)).
  artifacts.write_json(os.path.join(run, sweep.SLOW_POINTS_DIR_PREFIX + "default",
                                    "results.json"),
                       dict(slow_point_speed={str(c): 4e-3 * (1 + c / 10) for c in range(10)}))
  rows = memory_length.compare(memory_length.collect([quick, paper]), "quick")
  (row,) = rows
  assert row["same_recipe"] and row["speed_recipes"] == ["default"]
  assert row["speed"]["pairs"] == pytest.approx([math.log10(4e-3 / 1e-3)])
  # Without the second search the recipes differ and it says so.
  os.remove(os.path.join(run, sweep.SLOW_POINTS_DIR_PREFIX + "default", "results.json"))
  (row,) = memory_length.compare(memory_length.collect([quick, paper]), "quick")
  assert not row["same_recipe"]
  assert "(slow-point recipes differ)" in memory_length.markdown([], [row], "quick")
