"""Slow points of any recurrent network in TensorFlow: the library floor of haviv_tf.

It imports no other haviv_tf module (nor tensorflow-datasets or matplotlib): a step s <- F(s, x)
from a Keras 3 cell, an RNN layer, a SavedModel step signature, a plain function or an object
with a `to_dynamics()` method, trajectories and sampled starting states (`core`); the compiled
search (`finder`); the record of its points with save and load (`points`); Jacobians, spectra
and stability (`linearize`); points followed back through training snapshots, with births
and merges (`tracking`), and the Keras callback that takes the snapshots (`snapshots`).
"""

from haviv_tf.dynamics.core import as_dynamics
from haviv_tf.dynamics.core import check_bounds
from haviv_tf.dynamics.core import forget
from haviv_tf.dynamics.core import Dynamics
from haviv_tf.dynamics.core import from_cell
from haviv_tf.dynamics.core import from_layer
from haviv_tf.dynamics.core import from_saved_model
from haviv_tf.dynamics.core import reached_bounds
from haviv_tf.dynamics.core import sample_states
from haviv_tf.dynamics.core import save_step
from haviv_tf.dynamics.core import trajectories
from haviv_tf.dynamics.finder import find_slow_points
from haviv_tf.dynamics.finder import SlowPointConfig
from haviv_tf.dynamics.finder import SlowPointFinder
from haviv_tf.dynamics.linearize import in_box
from haviv_tf.dynamics.linearize import jacobians
from haviv_tf.dynamics.linearize import spectra
from haviv_tf.dynamics.linearize import speeds
from haviv_tf.dynamics.linearize import stable
from haviv_tf.dynamics.points import FormatVersionError
from haviv_tf.dynamics.points import SlowPoints
from haviv_tf.dynamics.points import STOP_REASONS
from haviv_tf.dynamics.snapshots import load_snapshots
from haviv_tf.dynamics.snapshots import Snapshot
from haviv_tf.dynamics.snapshots import SnapshotCallback
from haviv_tf.dynamics.tracking import centre_labels
from haviv_tf.dynamics.tracking import find_births
from haviv_tf.dynamics.tracking import find_merges
from haviv_tf.dynamics.tracking import follow_back
from haviv_tf.dynamics.tracking import nearest_centres
from haviv_tf.dynamics.tracking import Track

__all__ = [
    "as_dynamics", "centre_labels", "check_bounds", "Dynamics", "find_births", "find_merges",
    "find_slow_points", "follow_back", "forget", "FormatVersionError", "from_cell", "from_layer",
    "from_saved_model", "in_box", "jacobians", "load_snapshots", "nearest_centres",
    "reached_bounds", "sample_states", "save_step", "Snapshot", "SnapshotCallback",
    "SlowPointConfig", "SlowPointFinder", "SlowPoints", "spectra", "speeds", "stable",
    "STOP_REASONS", "Track", "trajectories",
]
