"""Weight snapshots of a Keras model during a user's own `fit`, for `tracking.follow_back`.

  snapshots = dynamics.SnapshotCallback(every=50)             # in memory
  model.fit(x, y, epochs=20, callbacks=[snapshots])
  track = dynamics.follow_back(model.get_layer("gru"), snapshots.snapshots, final_points,
                               x_bar, model=model)

With `directory=...` every snapshot is a `snapshot-{step:09d}.weights.h5` file there, written
atomically (temporary name, fsync, rename, fsync of the folder); `load_snapshots(directory)`
lists them again later. Steps count optimizer updates (training batches) across epochs and
across several `fit` calls with the same callback.
"""

import dataclasses
import os
import re
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

SNAPSHOT_PATTERN = re.compile(r"^snapshot-(\d+)\.weights\.h5$")


@dataclasses.dataclass(frozen=True, eq=False)
class Snapshot:
  """The weights of a model after `step` training steps: in memory or in a file.

  Attributes:
    step: optimizer updates applied before the snapshot was taken (0: the initial weights).
    weights: model.get_weights() (a tuple of arrays), or None.
    path: a `.weights.h5` / `.keras` file (model.load_weights) or a TensorFlow checkpoint
      prefix (tf.train.Checkpoint(model=model)), or None.
  """
  step: int
  weights: Optional[tuple] = None
  path: Optional[str] = None

  def __post_init__(self):
    if (self.weights is None) == (self.path is None):
      raise ValueError("a Snapshot holds exactly one of `weights` and `path`")
    if isinstance(self.step, bool) or not isinstance(self.step, (int, np.integer)) or (
        self.step < 0):
      raise ValueError(f"`step` must be a non-negative integer, got {self.step!r}")


def as_snapshot(item, step=None) -> Snapshot:
  """A Snapshot from a Snapshot, a path or a list of weight arrays (then `step` is needed)."""
  if isinstance(item, Snapshot):
    return item
  if step is None:
    raise ValueError("pass `steps` for snapshots that are not Snapshot objects")
  if isinstance(item, (str, os.PathLike)):
    return Snapshot(int(step), path=os.fspath(item))
  if isinstance(item, (list, tuple)):
    return Snapshot(int(step), weights=tuple(np.asarray(w) for w in item))
  raise TypeError(f"a snapshot must be a Snapshot, a path or a list of weight arrays, got "
                  f"{type(item).__name__}")


def restore(model, snapshot: Snapshot) -> None:
  """Loads `snapshot` into `model` (in place: a compiled search over its variables sees it).

  Raises:
    ValueError: the snapshot does not fit the model, or its file is unreadable.
  """
  if model is None:
    raise ValueError("pass `model` (the Keras object the snapshots hold the weights of) or "
                     "`restore`")
  try:
    if snapshot.weights is not None:
      model.set_weights(list(snapshot.weights))
    elif snapshot.path.endswith((".h5", ".keras")):
      model.load_weights(snapshot.path)
    else:
      tf.train.Checkpoint(model=model).read(snapshot.path).expect_partial(
      ).assert_existing_objects_matched()
  except (tf.errors.OpError, AssertionError, OSError, IndexError, KeyError, ValueError) as e:
    raise ValueError(f"snapshot of step {snapshot.step} does not restore into "
                     f"{type(model).__name__}: {e}") from None


def _fsync_directory(directory):
  fd = os.open(directory, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def save_weights(model, path: str) -> None:
  """model.save_weights(path) atomically: a temporary `.weights.h5` beside it, fsync, rename,
  fsync of the folder (a crash leaves the old file or the new one, never half of one)."""
  if not path.endswith(".weights.h5"):
    raise ValueError(f"`path` must end in .weights.h5, got {path!r}")
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  tmp = os.path.join(directory, f".tmp-{os.getpid()}-{os.path.basename(path)}")
  try:
    model.save_weights(tmp)
    with open(tmp, "rb+") as f:
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  _fsync_directory(directory)


def load_snapshots(directory: str) -> list:
  """The snapshots a SnapshotCallback wrote to `directory`, by increasing step."""
  if not os.path.isdir(directory):
    raise ValueError(f"{directory} is not a folder of snapshots")
  found = [(int(m.group(1)), name) for name in os.listdir(directory)
           for m in [SNAPSHOT_PATTERN.match(name)] if m]
  return [Snapshot(step, path=os.path.join(directory, name)) for step, name in sorted(found)]


class SnapshotCallback(keras.callbacks.Callback):
  """Keeps the model's weights every `every` training steps of `fit`, for back-tracking.

  A step is one optimizer update (one training batch); the count runs on across epochs and
  across `fit` calls with the same callback. The snapshot of step k holds the weights after k
  updates. With compile(steps_per_execution=n > 1) Keras calls back once per n batches, so a
  "step" is then n updates.

  Args:
    every: a snapshot after every `every`-th step.
    directory: None keeps the weights in memory (Snapshot.weights); a folder receives
      `snapshot-{step:09d}.weights.h5` files, each written atomically (Snapshot.path).
    at_start: also the weights before the first update (step 0).
    at_end: also the weights after the last update of each `fit` (unless that step has one).

  Attributes:
    snapshots: the Snapshots taken, by increasing step.
    step: training steps seen so far.

  Raises:
    ValueError: `every` not a positive integer.
  """

  def __init__(self, every: int = 100, directory: Optional[str] = None, at_start: bool = True,
               at_end: bool = True):
    super().__init__()
    if isinstance(every, bool) or not isinstance(every, int) or every <= 0:
      raise ValueError(f"`every` must be a positive integer, got {every!r}")
    self.every, self.directory = every, directory
    self.at_start, self.at_end = at_start, at_end
    self.snapshots = []
    self.step = 0

  def _take(self):
    if self.snapshots and self.snapshots[-1].step == self.step:
      return
    if self.directory is None:
      snap = Snapshot(self.step, weights=tuple(np.array(w) for w in self.model.get_weights()))
    else:
      path = os.path.join(self.directory, f"snapshot-{self.step:09d}.weights.h5")
      save_weights(self.model, path)
      snap = Snapshot(self.step, path=path)
    self.snapshots.append(snap)

  def on_train_begin(self, logs=None):
    if self.at_start and self.step == 0:
      self._take()

  def on_train_batch_end(self, batch, logs=None):
    self.step += 1
    if self.step % self.every == 0:
      self._take()

  def on_train_end(self, logs=None):
    if self.at_end:
      self._take()
