"""SlowPoints: the record of a slow-point search, a caller's per-point extras, npz save and load.

File formats (`format_version` in the npz): 3 writes the generic fields, the extras under their
own names and `extra_fields` (their names); 2 (haviv_tf before the library split) stored the
generic fields without init_states, inputs and stable, and the application's per-point arrays
LEGACY_EXTRAS beside them: they load into `extras`. Older formats are refused (their points were
searched without the reachable-box constraint).
"""

import dataclasses
import os
import tempfile
from typing import Mapping, Sequence
import zipfile

import numpy as np

from haviv_tf.dynamics import linearize

FORMAT_VERSION = 3
OLDEST_FORMAT = 2
LEGACY_EXTRAS = ("readout", "init_class", "dist_centre", "dist_traj")  # format 2's extras
# SlowPoints.stop_reason indexes this (nonfinite: q or its gradient was NaN or inf there)
STOP_REASONS = ("q_tol", "stalled", "max_iters", "nonfinite")
_DTYPES = dict(states=np.float32, speed=np.float32, q=np.float32, eigenvalues=np.complex128,
               max_abs_eig=np.float64, num_unstable=np.int32, iters=np.int32,
               init_states=np.float32, inputs=np.float32, stable=bool, stop_reason=np.int32,
               in_box=bool)
FIELDS = tuple(_DTYPES)  # the generic per-point arrays, in file order
_RANK2 = ("states", "eigenvalues", "init_states", "inputs")
_RESERVED = ("format_version", "extra_fields")


class FormatVersionError(ValueError):
  """A file of a format older than OLDEST_FORMAT; `version` is its format."""

  def __init__(self, message, version):
    super().__init__(message)
    self.version = version


@dataclasses.dataclass(frozen=True, eq=False)
class SlowPoints:
  """Slow points; axis 0 of every array (and of every extra) indexes the points.

  The search (finder.SlowPointFinder) stops each point at the first of q < q_tol ("q_tol"), no
  relative improvement of its best speed by rel_tol over `window` updates ("stalled"), or
  max_iters iterations ("max_iters"); with early_stop False only the last applies. A point
  where q or its gradient is not finite stops there ("nonfinite").

  Attributes:
    states: [P, S] float32 states where the search ended (an LSTM's are [h, c]).
    speed: [P] float32 ||F(s, x) - s|| in the dynamics' speed coordinates.
    q: [P] float32 ½ speed².
    eigenvalues: [P, K] complex128 leading eigenvalues of dF/ds by magnitude (NaN padded when
      concatenated with a larger K).
    max_abs_eig: [P] float64 largest |eigenvalue|.
    num_unstable: [P] int32 eigenvalues with |λ| > 1 (whole spectrum).
    iters: [P] int32 optimiser updates applied to the point.
    init_states: [P, S] float32 where the search started (NaN: not recorded, format 2).
    inputs: [P, I] float32 the constant input of the search ([P, 0]: not recorded).
    stable: [P] bool max |λ| < 1 (default: from max_abs_eig).
    stop_reason: [P] int32 index into STOP_REASONS (default: max_iters).
    in_box: [P] bool within the dynamics' reachable box (default: True, no box given).
    extras: a caller's own per-point arrays by name, each with P rows (e.g. haviv_tf's
      application keeps readout, init_class, dist_centre and dist_traj here).
  """
  states: np.ndarray
  speed: np.ndarray
  q: np.ndarray
  eigenvalues: np.ndarray
  max_abs_eig: np.ndarray
  num_unstable: np.ndarray
  iters: np.ndarray
  init_states: np.ndarray = None
  inputs: np.ndarray = None
  stable: np.ndarray = None
  stop_reason: np.ndarray = None
  in_box: np.ndarray = None
  extras: Mapping[str, np.ndarray] = None

  def __post_init__(self):
    n = len(np.asarray(self.states))
    s = np.shape(self.states)[-1] if np.ndim(self.states) == 2 else 0
    defaults = dict(init_states=lambda: np.full([n, s], np.nan, np.float32),
                    inputs=lambda: np.zeros([n, 0], np.float32),
                    stable=lambda: linearize.stable(self.max_abs_eig),
                    stop_reason=lambda: np.full([n], STOP_REASONS.index("max_iters"), np.int32),
                    in_box=lambda: np.ones([n], bool))
    for name, make in defaults.items():
      if getattr(self, name) is None:
        object.__setattr__(self, name, make())
    for name in FIELDS:
      value = np.asarray(getattr(self, name), _DTYPES[name])
      rank = 2 if name in _RANK2 else 1
      if value.ndim != rank:
        raise ValueError(f"`{name}` must have rank {rank}, got shape {value.shape}")
      object.__setattr__(self, name, value)
    extras = dict(self.extras or {})
    clash = sorted(set(extras) & set(FIELDS + _RESERVED))
    if clash:
      raise ValueError(f"`extras` may not use the names {clash} (SlowPoints fields)")
    extras = {k: np.asarray(v) for k, v in extras.items()}
    object.__setattr__(self, "extras", extras)
    n = len(self.states)
    bad = [f"{k} {v.shape}" for k, v in self._arrays().items() if v.ndim == 0 or len(v) != n]
    if bad:
      raise ValueError(f"every field needs {n} points (states has {n}); got {', '.join(bad)}")

  def _arrays(self) -> dict:
    return dict({k: getattr(self, k) for k in FIELDS}, **self.extras)

  def __len__(self) -> int:
    return len(self.states)

  def __getitem__(self, index) -> "SlowPoints":
    """Points by int, slice, index array or boolean mask (always a SlowPoints)."""
    if isinstance(index, (int, np.integer)):
      index = [int(index)]
    return SlowPoints(**{k: getattr(self, k)[index] for k in FIELDS},
                      extras={k: v[index] for k, v in self.extras.items()})

  def unique(self, tol: float, coordinates=None) -> "SlowPoints":
    """Greedy de-duplication: visiting points by increasing q, a point is kept unless a kept one
    lies within `tol` (Euclidean distance of states, or of `coordinates` [N, C] when given,
    e.g. an LSTM's speed coordinates (h, tanh c): Dynamics.speed_coordinates). Kept points
    stay in their original order.
    """
    if not tol >= 0:
      raise ValueError(f"`tol` must be >= 0, got {tol!r}")
    where = self.states if coordinates is None else np.asarray(coordinates, np.float32)
    if where.ndim != 2 or len(where) != len(self):
      raise ValueError(f"`coordinates` must be [{len(self)}, C], got shape {where.shape}")
    order = np.argsort(self.q, kind="stable")
    kept = np.zeros_like(where)
    keep_idx = []
    for i in order:
      if keep_idx and np.min(np.linalg.norm(kept[:len(keep_idx)] - where[i], axis=1)) <= tol:
        continue
      kept[len(keep_idx)] = where[i]
      keep_idx.append(i)
    return self[np.sort(np.asarray(keep_idx, np.int64))]

  @staticmethod
  def concatenate(parts: Sequence["SlowPoints"]) -> "SlowPoints":
    """Stacks points; eigenvalue and input columns are NaN-padded to the widest part.

    Raises:
      ValueError: no parts, or parts with different extras.
    """
    parts = list(parts)
    if not parts:
      raise ValueError("`parts` must hold at least one SlowPoints")
    names = set(parts[0].extras)
    if any(set(p.extras) != names for p in parts):
      raise ValueError("`parts` must have the same extras, got "
                       f"{[sorted(p.extras) for p in parts]}")
    fields = {}
    for name in FIELDS:
      arrays = [getattr(p, name) for p in parts]
      if name in ("eigenvalues", "inputs"):
        width = max(a.shape[1] for a in arrays)
        arrays = [np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=np.nan)
                  for a in arrays]
      fields[name] = np.concatenate(arrays, axis=0)
    extras = {k: np.concatenate([p.extras[k] for p in parts], axis=0) for k in parts[0].extras}
    return SlowPoints(**fields, extras=extras)

  def replace(self, **fields) -> "SlowPoints":
    """A copy with some generic fields replaced (dataclasses.replace)."""
    return dataclasses.replace(self, **fields)

  def with_extras(self, **extras) -> "SlowPoints":
    """A copy with these extras added or replaced (each [P, ...])."""
    return dataclasses.replace(self, extras=dict(self.extras, **extras))

  def summary(self) -> dict:
    """Counts and medians of the points: a JSON-ready dict."""
    n = len(self)
    return dict(points=n, stable=int(self.stable.sum()), in_box=int(self.in_box.sum()),
                stop_reasons=stop_reason_counts(self.stop_reason),
                median_q=float(np.median(self.q)) if n else None,
                max_q=float(np.max(self.q)) if n else None,
                num_unstable=np.bincount(self.num_unstable[self.num_unstable >= 0]).tolist()
                if n else [])

  def save(self, path: str, **metadata) -> None:
    """Writes an npz: atomic (temp name, fsync, rename, fsync of the directory), no pickle.

    `metadata` arrays (not per point, e.g. the times of a caller's extras) ride along under
    their own names; `load` ignores them.
    """
    arrays = self._arrays()
    clash = sorted(set(metadata) & set(arrays) | set(metadata) & set(_RESERVED))
    if clash:
      raise ValueError(f"`metadata` may not use the names {clash}")
    save_npz(path, format_version=np.int32(FORMAT_VERSION),
             extra_fields=np.asarray(list(self.extras), str), **arrays, **metadata)

  @classmethod
  def load(cls, path: str) -> "SlowPoints":
    """Reads a file written by `save` (format 3) or by haviv_tf's format 2.

    Raises:
      FormatVersionError: the file is of a format older than OLDEST_FORMAT.
      ValueError: not a readable SlowPoints file.
    """
    try:
      with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
      raise ValueError(f"{path} is not a readable SlowPoints file ({e})") from None
    if "format_version" not in arrays and not {"states", "speed"} <= set(arrays):
      raise ValueError(f"{path} is not a SlowPoints file (no format_version, no states)")
    version = int(arrays.get("format_version", 0))
    if version > FORMAT_VERSION:
      raise ValueError(f"{path} is of slow-point format {version}, newer than this haviv_tf "
                       f"reads ({FORMAT_VERSION}): update haviv_tf")
    if version < OLDEST_FORMAT:
      raise FormatVersionError(
          f"{path} was written by an older slow-point format ({version}, now "
          f"{FORMAT_VERSION}: its points were searched without the reachable-set constraint)",
          version)
    if version == 2:
      required, names = FIELDS[:7] + ("stop_reason", "in_box"), LEGACY_EXTRAS
    else:
      required, names = FIELDS, tuple(str(k) for k in arrays.get("extra_fields", []))
    missing = [k for k in required + names if k not in arrays]
    if missing:
      raise ValueError(f"{path} is not a SlowPoints file: missing fields {missing}")
    return cls(**{k: arrays[k] for k in required}, extras={k: arrays[k] for k in names})


def stop_reason_counts(stop_reason) -> dict:
  """{reason: points} over STOP_REASONS; "nonfinite" only where it happened (the summaries of
  searches without it read as they did before it existed)."""
  counts = {r: int(np.sum(np.asarray(stop_reason) == i)) for i, r in enumerate(STOP_REASONS)}
  if not counts["nonfinite"]:
    del counts["nonfinite"]
  return counts


def save_npz(path: str, **arrays) -> None:
  """An npz (np.load reads it) written to a temporary name beside `path`, fsync, rename over
  `path`, fsync of the folder. Written member by member with allow_pickle=False, so an object
  array is refused (ValueError) instead of pickled, and any array name is allowed (np.savez's
  own keywords, `file` and `allow_pickle`, would clash)."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                             dir=directory)
  try:
    with os.fdopen(fd, "wb") as f:
      _write_npz(f, arrays)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  dir_fd = os.open(directory, os.O_RDONLY)
  try:
    os.fsync(dir_fd)  # the rename itself survives a crash
  finally:
    os.close(dir_fd)


def _write_npz(f, arrays: dict) -> None:
  """The members of np.savez's format (one .npy each, stored uncompressed), no pickle."""
  for name, value in arrays.items():
    if np.asanyarray(value).dtype.hasobject:
      raise ValueError(f"array {name!r} holds Python objects; an npz here holds numbers and "
                       "strings only (no pickle)")
  with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
    for name, value in arrays.items():
      with z.open(f"{name}.npy", mode="w", force_zip64=True) as member:
        np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
