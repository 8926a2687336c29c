"""haviv_tf: slow points of any Keras RNN (the library, `haviv_tf.dynamics`), and the reproduction
of Haviv, Rivkind & Barak (ICML 2019) built on it (the application's subpackages, imported only
when used)."""

from haviv_tf.dynamics import as_dynamics
from haviv_tf.dynamics import Dynamics
from haviv_tf.dynamics import find_slow_points
from haviv_tf.dynamics import from_cell
from haviv_tf.dynamics import from_layer
from haviv_tf.dynamics import from_saved_model
from haviv_tf.dynamics import jacobians
from haviv_tf.dynamics import reached_bounds
from haviv_tf.dynamics import sample_states
from haviv_tf.dynamics import save_step
from haviv_tf.dynamics import SlowPointConfig
from haviv_tf.dynamics import SlowPointFinder
from haviv_tf.dynamics import SlowPoints
from haviv_tf.dynamics import spectra
from haviv_tf.dynamics import speeds
from haviv_tf.dynamics import trajectories

__all__ = [
    "as_dynamics", "Dynamics", "find_slow_points", "from_cell", "from_layer", "from_saved_model",
    "jacobians", "reached_bounds", "sample_states", "save_step", "SlowPointConfig",
    "SlowPointFinder", "SlowPoints", "spectra", "speeds", "trajectories",
]
