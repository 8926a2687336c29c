"""haviv_tf: slow points of any Keras RNN (the library, `haviv_tf.dynamics`), and the reproduction
of Haviv, Rivkind & Barak (ICML 2019) built on it (the application's subpackages).

The library's names below are loaded on first use (PEP 562), so that importing an application
module, e.g. the command line's `haviv_tf.main`, does not load TensorFlow before it needs it
(a bad flag fails in a fraction of a second).
"""

import importlib

__all__ = [
    "as_dynamics", "Dynamics", "find_slow_points", "follow_back", "from_cell", "from_layer",
    "from_saved_model", "jacobians", "load_snapshots", "reached_bounds", "sample_states",
    "save_step", "Snapshot", "SnapshotCallback", "SlowPointConfig", "SlowPointFinder",
    "SlowPoints", "spectra", "speeds", "Track", "trajectories",
]


def __getattr__(name):
  if name in __all__:
    return getattr(importlib.import_module("haviv_tf.dynamics"), name)
  raise AttributeError(f"module 'haviv_tf' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + __all__)
