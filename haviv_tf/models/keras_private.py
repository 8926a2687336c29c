"""The private Keras and tf.distribute APIs haviv_tf relies on, in one place.

Tested with Keras 3.15 on the TensorFlow backend (setup.py pins the range): a Keras release that
renames one of these breaks here first.
"""

import tensorflow as tf


def maybe_symbolic_build(model, parent_build, iterator=None, data_batch=None):
  """Keras 3 (TensorFlow backend) hook run by fit() before training; skipped under a strategy.

  Under a tf.distribute strategy Keras would reduce the first (nested) batch across replicas to
  build the model symbolically, which MultiWorkerMirroredStrategy cannot do for a nested batch
  and no strategy can for bool tensors. Nothing needs it here: every weight exists from
  __init__ and train_step uses no compiled loss or metrics. `parent_build` is Keras' own
  `Model._maybe_symbolic_build`, run when there is no strategy.
  """
  strategy = getattr(model, "_distribute_strategy", None)  # set by Keras under a strategy
  if strategy is None:
    return parent_build(iterator=iterator, data_batch=data_batch)
  if model.optimizer is not None and not model.optimizer.built:
    with strategy.scope():
      model.optimizer.build(model.trainable_variables)
  return None


def in_multi_worker_mode(strategy) -> bool:
  """Whether `strategy` is a MultiWorkerMirroredStrategy joined to more than one worker."""
  return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
          and strategy.extended._in_multi_worker_mode())  # pylint: disable=protected-access


def multi_worker_logs(logs: dict) -> dict:
  """Logs of a replica's train step, shaped for fit() under the current strategy.

  Keras 3's fit() reduces each log across workers with strategy.reduce(MEAN, v, axis=0), which
  fails on scalars (tensorflow/tensorflow#72388); the logs are equal on every replica, so with a
  length-1 axis that reduce gives back the same scalar.
  """
  if in_multi_worker_mode(tf.distribute.get_strategy()):
    return {k: v[None] for k, v in logs.items()}
  return logs
