"""Figures from arrays (matplotlib's object API, no pyplot state); PNG writing is atomic."""

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np

from haviv_tf.base import artifacts

_CLASS_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                  "#7f7f7f", "#bcbd22", "#17becf"]


def accuracy_vs_delay(curves, title="Report accuracy vs. delay", chance=0.1,
                      half_life=None) -> Figure:
  """Accuracy curves on a log delay axis.

  Args:
    curves: {label: (delays [n], accuracy [n])}; an accuracy of None is skipped.
    title: axes title.
    chance: dashed horizontal line (None for none).
    half_life: memory.half_life's dict of the first curve (None: not drawn): a dotted vertical
      line at the half-life ("≥" when censored) and the halfway accuracy.
  """
  fig = Figure(figsize=(6, 4), dpi=100)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  for label, (delays, acc) in curves.items():
    pts = [(float(d), float(a)) for d, a in zip(delays, acc) if a is not None]
    if pts:
      d, a = zip(*sorted(pts))
      ax.plot(d, a, marker="o", label=str(label))
  if chance is not None:
    ax.axhline(chance, color="gray", linestyle="--", linewidth=1, label="chance")
  if half_life and half_life.get("half_life") is not None:
    sign = "\u2265 " if half_life.get("censored") else ""
    ax.axvline(half_life["half_life"], color="black", linestyle=":", linewidth=1,
               label=f"half-life {sign}{half_life['half_life']:.0f}")
    ax.axhline(half_life["target"], color="black", linestyle=":", linewidth=0.5)
  ax.set_xscale("log")
  ax.set_ylim(-0.02, 1.02)
  ax.set_xlabel("delay (steps)")
  ax.set_ylabel("accuracy")
  ax.set_title(title)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  return fig


def pca_basis(points: np.ndarray, k: int = 2, return_variance: bool = False):
  """(mean [S], components [k, S]) of points [n, S] by SVD (and, with return_variance, the
  fraction [k] of the total variance each component holds)."""
  points = np.asarray(points, np.float64)
  mean = points.mean(0)
  _, sv, vt = np.linalg.svd(points - mean, full_matrices=False)
  if return_variance:
    var = np.square(sv)
    return mean, vt[:k], var[:k] / max(float(var.sum()), 1e-300)
  return mean, vt[:k]


def trajectories_pca(trajectories, classes, centres=None, slow_points=None,
                     slow_point_classes=None, title="Hidden trajectories (PCA)",
                     note=None) -> Figure:
  """Trajectories in the plane of their first two principal components.

  Args:
    trajectories: [n, time, S] hidden states (e.g. from the stimulus on).
    classes: [n] int class of each trajectory (colour).
    centres: optional [10, S] class centres of mass (crosses).
    slow_points: optional [P, S] slow points (stars).
    slow_point_classes: optional [P] read-out class of each slow point (colour; -1: black).
    note: optional line printed under the title (e.g. the distances the projection hides).

  The axis labels say how much of the trajectories' variance each axis holds: distances off
  the plane do not show.
  """
  trajectories = np.asarray(trajectories)
  n, t, s = trajectories.shape
  mean, comps, frac = pca_basis(trajectories.reshape(n * t, s), return_variance=True)
  proj = lambda x: (np.asarray(x, np.float64) - mean) @ comps.T
  fig = Figure(figsize=(6, 5), dpi=100)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  for i in range(n):
    p = proj(trajectories[i])
    ax.plot(p[:, 0], p[:, 1], color=_CLASS_COLOURS[int(classes[i]) % 10], alpha=0.3,
            linewidth=0.7)
  if centres is not None:
    p = proj(centres)
    for c in range(len(p)):
      ax.scatter(p[c, 0], p[c, 1], marker="X", s=80, color=_CLASS_COLOURS[c % 10],
                 edgecolor="black", zorder=3)
  if slow_points is not None and len(slow_points):
    p = proj(slow_points)
    cols = ["black" if slow_point_classes is None or int(c) < 0 else _CLASS_COLOURS[int(c) % 10]
            for c in (slow_point_classes if slow_point_classes is not None else range(len(p)))]
    ax.scatter(p[:, 0], p[:, 1], marker="*", s=140, c=cols, edgecolor="black", zorder=4)
  ax.set_xlabel(f"PC 1 ({100 * frac[0]:.1f}% of the variance)")
  ax.set_ylabel(f"PC 2 ({100 * frac[1]:.1f}% of the variance)" if len(frac) > 1 else "PC 2")
  ax.set_title(title + "  (X: class centres, *: slow points)\n"
               f"the plane holds {100 * float(np.sum(frac)):.1f}% of the trajectories' variance"
               + (f"\n{note}" if note else ""), fontsize=8)
  fig.tight_layout()
  return fig


def speed_vs_accuracy(speed, accuracy, groups=None, title="Slow-point speed vs. memory") -> Figure:
  """Scatter of accuracy at a long delay against slow-point speed (log axis).

  Args:
    speed: [n] positive speeds.
    accuracy: [n] accuracies.
    groups: optional [n] labels (one colour and legend entry each).
  """
  speed, accuracy = np.asarray(speed, np.float64), np.asarray(accuracy, np.float64)
  groups = np.asarray(["all"] * len(speed) if groups is None else groups)
  fig = Figure(figsize=(6, 4), dpi=100)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  for i, g in enumerate(sorted(set(groups.tolist()))):
    m = groups == g
    ax.scatter(np.maximum(speed[m], 1e-12), accuracy[m], s=18, alpha=0.7,
               color=_CLASS_COLOURS[i % 10], label=str(g))
  ax.set_xscale("log")
  ax.set_xlabel("slow-point speed ||F(s, x) - s||")
  ax.set_ylabel("accuracy")
  ax.set_ylim(-0.02, 1.02)
  ax.set_title(title)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  return fig


def speed_before_after(before, after, title="Slow-point speed per class") -> Figure:
  """Per-class slow-point speed (log) of a trained network and of its fine-tunings.

  Args:
    before: {class (str): speed or None} of the trained network.
    after: {label: {class (str): speed or None}} per fine-tuning.
  """
  fig = Figure(figsize=(7, 4), dpi=100)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  classes = list(range(10))
  series = [("trained", before)] + list(after.items())
  width = 0.8 / max(1, len(series))
  for i, (label, speeds) in enumerate(series):
    xs = [c + (i - (len(series) - 1) / 2) * width for c in classes
          if (speeds or {}).get(str(c)) is not None]
    ys = [speeds[str(c)] for c in classes if (speeds or {}).get(str(c)) is not None]
    ax.bar(xs, ys, width=width, label=str(label))
  ax.set_yscale("log")
  ax.set_xticks(classes)
  ax.set_xlabel("class (slow point from its centre of mass)")
  ax.set_ylabel("speed ||F(s, x̄) - s||")
  ax.set_title(title)
  ax.legend(fontsize=8)
  fig.tight_layout()
  return fig


def backtrack_paths(steps, coords, speeds, classes, merges=(), title="Back-tracking") -> Figure:
  """Slow points followed back through training.

  Args:
    steps: [T] checkpoint steps, latest first.
    coords: [T, P, 2] positions in the final network's first two principal components.
    speeds: [T, P] speed of each point at each checkpoint.
    classes: [P] class of each point (its final read-out class).
    merges: [(step, class_a, class_b)] where two points meet going back.
  """
  fig = Figure(figsize=(11, 4.5), dpi=100)
  FigureCanvasAgg(fig)
  ax, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
  coords, speeds, steps = np.asarray(coords), np.asarray(speeds), np.asarray(steps)
  for p, c in enumerate(classes):
    colour = _CLASS_COLOURS[int(c) % 10]
    ax.plot(coords[:, p, 0], coords[:, p, 1], "-", color=colour, alpha=0.7)
    ax.scatter(coords[0, p, 0], coords[0, p, 1], color=colour, marker="o", s=40,
               label=f"class {c}")
    ax.scatter(coords[-1, p, 0], coords[-1, p, 1], color=colour, marker="x", s=30)
    ax2.plot(steps, speeds[:, p], "-o", color=colour, markersize=3)
  for step, a, b in merges:
    t = int(np.flatnonzero(steps == step)[0])
    pa = list(classes).index(a)
    ax.scatter(coords[t, pa, 0], coords[t, pa, 1], facecolors="none", edgecolors="k", s=120)
    ax2.axvline(step, color="k", alpha=0.3, linestyle=":")
  ax.set_xlabel("PC 1 (final network)")
  ax.set_ylabel("PC 2")
  ax.set_title(f"{title}: o final, x earliest, circle = merge")
  ax.legend(fontsize=7)
  ax2.set_yscale("log")
  ax2.set_xlabel("training step")
  ax2.set_ylabel("speed")
  ax2.set_title("speed of each tracked point")
  fig.tight_layout()
  return fig


def png_bytes(fig: Figure) -> bytes:
  buf = io.BytesIO()
  fig.savefig(buf, format="png")
  return buf.getvalue()


def save_png(fig: Figure, path: str) -> None:
  """Writes `fig` to `path` atomically."""
  artifacts.write_bytes(path, png_bytes(fig))
