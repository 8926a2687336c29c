"""Where the speed penalty acts: the class states whose speed ||F(s, x) - s|| it penalises.

Two kinds of target, both estimated on training images from the network as it is:
  centre of mass  each class's mean state 15 steps after its stimulus, over correctly read-out
                  trials (slow_points.class_centres);
  slow point      the slow point the search finds from that centre.
`targets_from` repeats each class's target `speed_copies` times (each copy gets its own noise
frame in the penalty) and zero-weights classes without one. Used by training from scratch with
the penalty (train.py re-estimates the centres every `speed_refresh_every` steps) and by
fine-tuning (control.py fixes them before it starts).
"""

import numpy as np

from haviv_tf.probes import slow_points as slow_points_lib

CENTRE_TRIALS = 100         # per class


def targets_from(per_class, copies):
  """[10, S] (NaN rows: no target) -> targets [10 * copies, S], weights [10 * copies]."""
  per_class = np.asarray(per_class, np.float32)
  ok = np.all(np.isfinite(per_class), axis=1)
  states = np.repeat(np.nan_to_num(per_class), copies, axis=0)
  weights = np.repeat(ok.astype(np.float32), copies)
  return states, weights


def centre_targets(model, generator, seed, recipe="default", source=None, cfg=None):
  """Class centres of mass [10, S] and counts: recipe "default" over correct trials 15 steps
  after the stimulus (slow_points.class_centres); "paper" the authors' centres
  (slow_points.paper_class_centres on `source`'s train split), which their CenterMass
  fine-tuning reads (TriggerSpeedCont.py L117-121, L165-179: 'Hid20' of BlackBoxMNIST.py)."""
  centres, counts, _ = slow_points_lib.centres_of_recipe(
      model, generator, seed, recipe, source, cfg, trials_per_class=CENTRE_TRIALS)
  return centres, counts


def set_centre_targets(model, generator, cfg, seed):
  """Sets model's speed targets to its current class centres (used during training, too)."""
  run_seed, step = (int(v) for v in seed)
  seed = (run_seed * 1_000_003 + step) % (2**31 - 1)
  centres, counts = centre_targets(model, generator, seed)
  states, weights = targets_from(centres, cfg.speed_copies)
  model.set_speed_targets(states, weights)
  return centres, counts


def slow_point_targets(model, generator, seed, sp_config=None, recipe="default", source=None,
                       cfg=None):
  """The slow points found from the class centres: ([10, S] with NaN rows, SlowPoints, counts).

  recipe "paper" takes the authors' centres (slow_points.paper_class_centres, from `source`'s
  train split) and search; "default" this module's centres and the constrained search.
  """
  x_bar = slow_points_lib.mean_input_features(model, generator, seed=seed)
  centres, counts, _ = slow_points_lib.centres_of_recipe(
      model, generator, seed, recipe, source, cfg, x_bar, trials_per_class=CENTRE_TRIALS)
  have = np.flatnonzero(counts > 0)
  finder = slow_points_lib.ClassPointFinder(
      model, sp_config or slow_points_lib.recipe_config(recipe, cfg),
      include_null=recipe == "paper")
  _, found = finder.find(centres[have], x_bar, last_step_speed=recipe == "paper",
                         extras=dict(init_class=have.astype(np.int32)))
  per_class = np.full_like(centres, np.nan)
  per_class[have] = found.states
  return per_class, found, counts
