"""Slow points followed back through training: births and merges, for any Keras model.

`follow_back` starts from the slow points of the final network and re-runs the search on each
earlier weight snapshot in turn (latest first), initialised at the points found on the snapshot
after it (a warm start: the search follows each point as the weights change). Each point keeps
an identity, its class c (default: its index); per snapshot the Track records the points, their
speed and q, and any per-point arrays a caller measures (e.g. the class each point reads out).

Bookkeeping, going back in time (Haviv et al.'s analysis; haviv_tf's --mode=backtrack):
  merge   two points come within `merge_frac` x (median distance between the final points) of
          each other at a snapshot, having been farther apart at the later one: before that
          step one slow point served both (`find_merges`). Distances are between the states, or
          in speed coordinates where the search's SlowPointConfig.dedup_space is "speed"
          (`Track.coordinates`; an LSTM's points apart only in saturated c are then one).
  birth   per labelling ([T, P] labels, e.g. the class a point reads out): the earliest
          snapshot from which on (to the end of training) the point carries its own class c;
          at the snapshot before it, it carried another class's label (`find_births`).
  centre  a label without a read-out: the class whose reference state (e.g. the mean state of
          that class's trials) is nearest in speed coordinates, kept only where it is nearer
          than `centre_margin` x the next nearest one (`nearest_centres`, `centre_labels`).
"""

import dataclasses
import functools
import time
import zipfile

from absl import logging
import keras
import numpy as np

from haviv_tf.dynamics import core
from haviv_tf.dynamics import finder as finder_lib
from haviv_tf.dynamics import linearize
from haviv_tf.dynamics import points as points_lib
from haviv_tf.dynamics import snapshots as snapshots_lib

MERGE_FRAC = 0.05     # two points closer than this x the final points' median distance are one
CENTRE_MARGIN = 0.9   # nearest centre / next nearest below this: the point is that class's
TRACK_FORMAT = 2       # 2: with `coordinates` (written only then); 1: without


def speed_coordinates(rnn, states) -> np.ndarray:
  """States [N, S] in the speed coordinates of `rnn` (see core.as_dynamics): [N, C] float64."""
  dyn = core.as_dynamics(rnn)
  return np.asarray(dyn.speed_coordinates(linearize.check_states(dyn, states)), np.float64)


def nearest_centres(rnn, points, centres):
  """The nearest class centre of each point, in speed coordinates.

  Args:
    rnn: the network (see core.as_dynamics).
    points: [P, S] states.
    centres: [K, C] one reference per class, in speed coordinates (NaN rows: absent classes).

  Returns:
    (nearest [P] int32 class of the nearest centre, ratio [P] float64 distance to it / to the
    next nearest centre; 0 where there is no other centre).
  """
  coords = speed_coordinates(rnn, points)
  d = np.linalg.norm(coords[:, None] - np.asarray(centres)[None], axis=-1)
  d = np.where(np.isnan(d), np.inf, d)
  nearest = np.argmin(d, axis=1)
  second = np.sort(d, axis=1)[:, 1] if d.shape[1] > 1 else np.full(len(points), np.inf)
  return nearest.astype(np.int32), d[np.arange(len(points)), nearest] / second


def centre_labels(nearest, ratio, margin: float = CENTRE_MARGIN) -> np.ndarray:
  """The class of each point by its nearest centre, -1 where that centre is not nearer than
  `margin` x the next nearest one. Any shape ([P] or [T, P]); int32."""
  return np.where(np.asarray(ratio) < margin, np.asarray(nearest), -1).astype(np.int32)


def merge_tolerance(final_states, merge_frac: float = MERGE_FRAC) -> float:
  """`merge_frac` x the median distance between the final points [P, S] (x 1 for one point)."""
  finals = np.asarray(final_states)
  pair = np.linalg.norm(finals[:, None] - finals[None], axis=-1)
  scale = float(np.median(pair[np.triu_indices(len(finals), 1)])) if len(finals) > 1 else 1.0
  return merge_frac * scale


def find_merges(steps, points, classes, tol):
  """Where two tracked points meet going back.

  Args:
    steps: [T] snapshot steps, latest first.
    points: [T, P, S] tracked points.
    classes: [P] class of each point.
    tol: distance below which two points count as one.

  Returns:
    [(step, class_a, class_b, distance)]: the first (latest) snapshot at which a pair is within
    `tol` after being farther apart at the snapshot before it in the list.
  """
  points = np.asarray(points, np.float64)
  out, merged = [], set()
  for t in range(1, len(steps)):
    d = np.linalg.norm(points[t][:, None] - points[t][None], axis=-1)
    d_later = np.linalg.norm(points[t - 1][:, None] - points[t - 1][None], axis=-1)
    for a in range(len(classes)):
      for b in range(a + 1, len(classes)):
        key = (int(classes[a]), int(classes[b]))
        if key not in merged and d[a, b] < tol and d_later[a, b] >= tol:
          merged.add(key)
          out.append((int(steps[t]), key[0], key[1], float(d[a, b])))
  return out


def find_births(steps, labels, classes, introduced=None):
  """Where each tracked point stops carrying its own class, going back.

  Args:
    steps: [T] snapshot steps, latest first.
    labels: [T, P] label of each point at each snapshot (e.g. the class it reads out; -1: none).
    classes: [P] class of each point.
    introduced: indexable by class (a sequence or dict): the step at which class c enters
      training (a snapshot at that step holds the network before its first update on it);
      default 0 for every class.

  Returns:
    [{"class", "birth_step", "before_step", "from_class", "introduced_at", "at_introduction"}]:
    birth_step is the earliest snapshot (walking back without a gap) at which the point carries
    its own class; before_step the snapshot before it, where it carries from_class (both None
    if it carries its own class all the way back; birth_step None if not even the final
    network's point does). at_introduction: before_step <= introduced_at < birth_step and
    from_class is a class (not -1), i.e. the point turned from another class's into its own as
    training on that class began.
  """
  labels = np.asarray(labels)
  out = []
  for p, c in enumerate(classes):
    t = next((t for t in range(len(steps)) if labels[t, p] != c), None)
    birth = before = source = None
    if t is None:
      birth = int(steps[-1])
    elif t > 0:
      birth, before, source = int(steps[t - 1]), int(steps[t]), int(labels[t, p])
    intro = 0 if introduced is None else int(introduced[int(c)])
    out.append({"class": int(c), "birth_step": birth, "before_step": before,
                "from_class": source, "introduced_at": intro,
                "at_introduction": bool(before is not None and source >= 0 and intro > 0
                                        and before <= intro < birth)})
  return out


def _stack_dict(rows):
  return {k: np.stack([r[k] for r in rows]) for k in rows[0]} if rows else {}


@dataclasses.dataclass(frozen=True, eq=False)
class Track:
  """Slow points followed back through snapshots (T snapshots, latest first; P points).

  Attributes:
    steps: [T] int64 training step of each snapshot; steps[0] is the final network's.
    points: [T, P, S] float32 the points found at each snapshot (row 0: the final points).
    speed: [T, P] float32 ||F(s, x) - s|| there (speed coordinates).
    q: [T, P] float32 ½ speed².
    classes: [P] int32 each point's identity (its class).
    introduced: [P] int64 step at which each point's class enters training (0: from the start).
    merge_frac: the merge tolerance as a fraction of the final points' median distance.
    merge_tol: the merge tolerance itself (a distance in the merges' coordinates).
    labels: name -> [T, P] int32 labellings; each gets its births (`births`).
    extras: name -> [T, P, ...] a caller's other per-snapshot, per-point arrays.
    coordinates: [T, P, C] float64 the points in the coordinates merges are measured in (the
      speed coordinates, where the search deduplicated there), or None: the states `points`.
  """
  steps: np.ndarray
  points: np.ndarray
  speed: np.ndarray
  q: np.ndarray
  classes: np.ndarray
  introduced: np.ndarray
  merge_frac: float
  merge_tol: float
  labels: dict = dataclasses.field(default_factory=dict)
  extras: dict = dataclasses.field(default_factory=dict)
  coordinates: np.ndarray = None

  def __post_init__(self):
    t, p = np.shape(self.speed)
    checks = dict(steps=(t,), points=(t, p), q=(t, p), classes=(p,), introduced=(p,))
    if self.coordinates is not None:
      checks["coordinates"] = (t, p)
    for name, shape in checks.items():
      if np.shape(getattr(self, name))[:len(shape)] != shape:
        raise ValueError(f"`{name}` must start with shape {shape}, got "
                         f"{np.shape(getattr(self, name))}")
    for kind in ("labels", "extras"):
      for name, value in getattr(self, kind).items():
        if np.shape(value)[:2] != (t, p):
          raise ValueError(f"{kind}[{name!r}] must be [{t}, {p}, ...], got {np.shape(value)}")
    if set(self.labels) & set(self.extras):
      raise ValueError("names in both labels and extras: "
                       f"{sorted(set(self.labels) & set(self.extras))}")

  def __len__(self):
    return len(self.steps)

  @functools.cached_property
  def merges(self) -> list:
    """[{"step", "classes": [a, b], "distance"}] (see find_merges), latest first."""
    return [dict(step=s, classes=[a, b], distance=d)
            for s, a, b, d in find_merges(
                self.steps, self.points if self.coordinates is None else self.coordinates,
                self.classes, self.merge_tol)]

  @functools.cached_property
  def births(self) -> dict:
    """{label name: [birth dict per point]} (see find_births)."""
    intro = dict(zip(self.classes.tolist(), self.introduced.tolist()))
    return {name: find_births(self.steps, labels, self.classes, intro)
            for name, labels in self.labels.items()}

  def with_labels(self, **labels) -> "Track":
    """A copy with these [T, P] labellings added or replaced (e.g. `centre_labels`)."""
    labels = {k: np.asarray(v, np.int32) for k, v in labels.items()}
    return dataclasses.replace(self, labels=dict(self.labels, **labels))

  def summary(self) -> dict:
    """A JSON-ready dict: steps, the final and earliest speeds, merges (and the space they are
    measured in) and births."""
    return dict(steps=self.steps.tolist(), classes=self.classes.tolist(),
                final_speed=self.speed[0].tolist(), first_speed=self.speed[-1].tolist(),
                merge_space=self.merge_space, merge_tol=float(self.merge_tol),
                merges=self.merges, births=self.births)

  @property
  def merge_space(self) -> str:
    """Where merges are measured: "speed" (`coordinates`) or "state" (`points`)."""
    return "state" if self.coordinates is None else "speed"

  def save(self, path: str) -> None:
    """Writes an npz (atomic: temporary name, fsync, rename, fsync of the folder; no pickle)."""
    arrays = {f"label_{k}": v for k, v in self.labels.items()}
    arrays.update({f"extra_{k}": v for k, v in self.extras.items()})
    clash = sorted(k for k in arrays if k in ("label_names", "extra_names"))
    if clash:
      raise ValueError(f"a label or extra may not be called 'names' (it would write {clash}, "
                       "the file's own lists of names)")
    if self.coordinates is not None:
      arrays["coordinates"] = self.coordinates
    points_lib.save_npz(
        path, track_format=np.int32(1 if self.coordinates is None else TRACK_FORMAT),
        steps=self.steps, points=self.points,
        speed=self.speed, q=self.q, classes=self.classes, introduced=self.introduced,
        merge_frac=np.float64(self.merge_frac), merge_tol=np.float64(self.merge_tol),
        label_names=np.asarray(list(self.labels), str),
        extra_names=np.asarray(list(self.extras), str), **arrays)

  @classmethod
  def load(cls, path: str) -> "Track":
    """Reads a file written by `save`.

    Raises:
      ValueError: not a readable Track file.
    """
    try:
      with np.load(path, allow_pickle=False) as f:
        a = {k: f[k] for k in f.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
      raise ValueError(f"{path} is not a readable Track file ({e})") from None
    if int(a.get("track_format", -1)) not in range(1, TRACK_FORMAT + 1):
      raise ValueError(f"{path} is not a Track file of format 1 to {TRACK_FORMAT}")
    return cls(steps=a["steps"], points=a["points"], speed=a["speed"], q=a["q"],
               classes=a["classes"], introduced=a["introduced"],
               merge_frac=float(a["merge_frac"]), merge_tol=float(a["merge_tol"]),
               labels={str(k): a[f"label_{k}"] for k in a["label_names"]},
               extras={str(k): a[f"extra_{k}"] for k in a["extra_names"]},
               coordinates=a.get("coordinates"))   # (files before it: merges in the states)


def _as_source(rnn):
  """What SlowPointFinder takes: `rnn` itself, or the Dynamics a zero-argument callable makes."""
  if isinstance(rnn, (core.Dynamics, keras.layers.Layer, str)) or any(
      hasattr(rnn, a) for a in ("to_dynamics", "signatures", "state_size")):
    return rnn
  if callable(rnn):
    dyn = rnn()
    if not isinstance(dyn, core.Dynamics):
      raise TypeError(f"`rnn()` must return a Dynamics, got {type(dyn).__name__}")
    return dyn
  return rnn  # as_dynamics names what it accepts


def _ordered(snapshots, steps, final_step):
  """(final_step, [Snapshot] before it, latest first)."""
  snapshots = list(snapshots)
  if steps is not None and len(steps) != len(snapshots):
    raise ValueError(f"`steps` must have one entry per snapshot ({len(snapshots)}), got "
                     f"{len(steps)}")
  snaps = [snapshots_lib.as_snapshot(s, None if steps is None else steps[i])
           for i, s in enumerate(snapshots)]
  if final_step is None:
    if not snaps:
      raise ValueError("`snapshots` is empty")
    final_step = max(int(s.step) for s in snaps)
  earlier = sorted((s for s in snaps if s.step < final_step), key=lambda s: -int(s.step))
  if not earlier:
    raise ValueError(f"no snapshot before the final step {final_step}")
  return int(final_step), earlier


def _inputs_at(inputs, step):
  return np.asarray(inputs(step) if callable(inputs) else inputs, np.float32)


def _measured(measure, step, states, x):
  out = {} if measure is None else dict(measure(step, states, x))
  return {k: np.asarray(v) for k, v in out.items()}


def _final_row(finder, final, inputs, final_step, measure, final_measures):
  """(states, speed, measures) of the final points: a SlowPoints' own speed, else measured
  with the weights the model holds now."""
  x = None
  if isinstance(final, points_lib.SlowPoints):
    states, speed = final.states, final.speed
  else:
    states = np.asarray(linearize.check_states(finder.dynamics, final))
    x = _inputs_at(inputs, final_step)
    speed = linearize.speeds(finder.dynamics, states, x)
  if final_measures is None and measure is not None:
    x = _inputs_at(inputs, final_step) if x is None else x
    final_measures = measure(final_step, states, x)
  return states, speed, {k: np.asarray(v) for k, v in (final_measures or {}).items()}


def _merge_coordinates(finder, states):
  """The points [P, C] in the speed coordinates of the weights loaded now where the search
  deduplicates there (SlowPointConfig.dedup_space "speed"), else None (merges in the states)."""
  if finder.config.dedup_space != "speed":
    return None
  return speed_coordinates(finder.dynamics, states)


def _search_back(finder, snaps, rows, inputs, load, measure, bounds, progress):
  """Appends (step, points, speed, measures, merge coordinates) of each snapshot to `rows`,
  warm-started from the points of the row before."""
  started = time.monotonic()
  level = logging.INFO if progress else logging.DEBUG
  for k, snap in enumerate(snaps, 1):
    load(snap)
    x = _inputs_at(inputs, snap.step)
    found, _, _ = finder.minimize(rows[-1][1], x, bounds=bounds, progress=False)
    speed = linearize.speeds(finder.dynamics, found, x)
    rows.append((int(snap.step), found, speed, _measured(measure, snap.step, found, x),
                 _merge_coordinates(finder, found)))
    elapsed = time.monotonic() - started
    logging.log(level, "back-tracking: snapshot %d of %d (step %d) done; %.0f s so far, about "
                "%.0f s left", k, len(snaps), int(snap.step), elapsed,
                elapsed / k * (len(snaps) - k))


def follow_back(rnn, snapshots, final, inputs, config=None, *, steps=None, final_step=None,
                classes=None, model=None, restore=None, measure=None, final_measures=None,
                label_keys=(), introduced=None, merge_frac: float = MERGE_FRAC, bounds=None,
                progress: bool = True) -> Track:
  """Follows slow points back through earlier weight snapshots of their network.

  Args:
    rnn: the network whose weights the snapshots hold: anything core.as_dynamics takes (a
      Keras cell, an RNN layer, an object with `to_dynamics()`, a Dynamics reading the model's
      variables) or a zero-argument callable returning such a Dynamics. Built once; every
      snapshot is loaded into the same variables (the compiled search is reused).
    snapshots: Snapshots (SnapshotCallback.snapshots, load_snapshots(folder)), or paths /
      weight lists with `steps`. Those at or after `final_step` are skipped.
    final: the final network's points, SlowPoints (their speed is kept) or [P, S] states.
    inputs: the constant input [I] or [P, I], or fn(step) -> it (called after the snapshot of
      `step` is loaded, e.g. when the input passes through trained layers).
    config: SlowPointConfig of the search at every snapshot (default SlowPointConfig()).
    steps: [len(snapshots)] steps of snapshots that are not Snapshot objects.
    final_step: the final network's step (default: the latest snapshot's).
    classes: [P] identity of each point (default 0..P-1); merges and births name them.
    model: the Keras object the snapshots restore into (default `rnn` when it is a Keras layer
      or model); its weights are put back afterwards.
    restore: fn(snapshot) loading it (default snapshots.restore(model, snapshot)).
    measure: fn(step, states [P, S], x) -> {name: [P, ...]}, recorded per snapshot (after the
      search, weights of `step` loaded); `label_keys` name the entries that are labels.
    final_measures: measure's dict for the final points (default: measure at the final step).
    label_keys: names of measured entries that are [P] int labels (Track.labels, births).
    introduced: indexable by class: the step each class enters training (default 0).
    merge_frac: merge tolerance as a fraction of the final points' median distance.
    bounds: search box (see SlowPointFinder.minimize).
    progress: log one INFO line per snapshot (else DEBUG).

  Returns:
    Track, latest first (row 0: the final points).

  Raises:
    ValueError: no snapshot before the final step, mismatched shapes, a snapshot that does not
      fit the model. TypeError: `rnn()` not a Dynamics.
  """
  if not merge_frac > 0:
    raise ValueError(f"`merge_frac` must be positive, got {merge_frac!r}")
  finder = finder_lib.SlowPointFinder(_as_source(rnn), config or finder_lib.SlowPointConfig())
  final_step, snaps = _ordered(snapshots, steps, final_step)
  if model is None and isinstance(rnn, keras.layers.Layer):
    model = rnn
  states, speed, row0 = _final_row(finder, final, inputs, final_step, measure, final_measures)
  classes = np.arange(len(states)) if classes is None else np.asarray(classes)
  if classes.shape != (len(states),):
    raise ValueError(f"`classes` must be [{len(states)}], got shape {classes.shape}")
  load = restore if restore is not None else functools.partial(snapshots_lib.restore, model)
  saved = model.get_weights() if model is not None else None
  rows = [(final_step, states, speed, row0, _merge_coordinates(finder, states))]
  try:
    _search_back(finder, snaps, rows, inputs, load, measure, bounds, progress)
  finally:
    if saved is not None:
      model.set_weights(saved)
  return _track_of(rows, classes, label_keys, introduced, merge_frac)


def _track_of(rows, classes, label_keys, introduced, merge_frac) -> Track:
  """The Track of rows (step, points [P, S], speed [P], measures, merge coordinates [P, C] or
  None), latest first."""
  measured = _stack_dict([r[3] for r in rows])
  if set(label_keys) - set(measured):
    raise ValueError(f"`label_keys` {sorted(set(label_keys) - set(measured))} are not measured")
  speed = np.stack([r[2] for r in rows])
  coords = None if rows[0][4] is None else np.stack([r[4] for r in rows])
  return Track(
      steps=np.asarray([r[0] for r in rows], np.int64), points=np.stack([r[1] for r in rows]),
      speed=speed, q=0.5 * np.square(speed), classes=classes.astype(np.int32),
      introduced=np.asarray([0 if introduced is None else int(introduced[int(c)])
                             for c in classes], np.int64),
      merge_frac=merge_frac,
      merge_tol=merge_tolerance(rows[0][1] if coords is None else coords[0], merge_frac),
      labels={k: measured.pop(k).astype(np.int32) for k in label_keys}, extras=measured,
      coordinates=coords)
