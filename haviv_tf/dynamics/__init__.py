"""Slow points of any recurrent network in TensorFlow: the library floor of haviv_tf.

It imports no other haviv_tf module (nor tensorflow-datasets or matplotlib at import): a step
s <- F(s, x) from a Keras 3 cell, an RNN layer, a SavedModel step signature, a plain function or
an object with a `to_dynamics()` method (`core`).
"""

from haviv_tf.dynamics.core import as_dynamics
from haviv_tf.dynamics.core import check_bounds
from haviv_tf.dynamics.core import Dynamics
from haviv_tf.dynamics.core import from_cell
from haviv_tf.dynamics.core import from_layer
from haviv_tf.dynamics.core import from_saved_model
from haviv_tf.dynamics.core import reached_bounds
from haviv_tf.dynamics.core import sample_states
from haviv_tf.dynamics.core import save_step
from haviv_tf.dynamics.core import trajectories
