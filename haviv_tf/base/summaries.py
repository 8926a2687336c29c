"""What every TensorBoard tag haviv_tf writes means: the description shown beside its chart.

`describe(tag)` is the description of one tag (train/*, curriculum/*, eval/*, slow_points/*,
hparams/*, warnings/*), passed as `description=` to every tf.summary call of the package, so
that TensorBoard explains each chart. An unknown tag raises KeyError: a new summary needs its
description here first. No TensorFlow import.
"""

import re

# (tag pattern, description); {0}, {1} ... are the pattern's groups.
_DESCRIPTIONS = (
    (r"train/loss", "Training loss per step (mean over the log_every steps since the last "
     "point): weighted cross-entropy of every step of the batch's trials (report step weight "
     "report_weight, null steps 1, normalised by loss_norm), plus the speed penalty mu x speed "
     "when one is on."),
    (r"train/report_acc", "Training report accuracy: fraction of the batch's report steps "
     "(the step that must name the stimulus class) answered with the right class, over the "
     "classes the curriculum shows now; mean since the last point."),
    (r"train/null_acc", "Training null accuracy: fraction of the batch's non-report steps "
     "answered with the null output; mean since the last point."),
    (r"train/class_(\d+)_acc", "Training report accuracy on trials of stimulus class {0} only "
     "(0 until the curriculum shows that class); mean since the last point."),
    (r"train/speed_sq", "Mean squared speed ||F(s, x) - s||^2 of the recurrent map at the "
     "speed-penalty targets (class centres or slow points), each with a fresh noise frame; "
     "logged at mu = 0 too (the control fine-tuning)."),
    (r"train/trivial_loss", "The loss of the trivial solution (a constant output: null "
     "everywhere) under the current curriculum stage: train/loss near it means the network has "
     "not started to learn."),
    (r"curriculum/stage", "Curriculum stage of the step (0-based): each stage adds classes "
     "(vocu), lengthens the delays (decu), or both; boundaries scale with train_steps."),
    (r"curriculum/num_classes", "Number of stimulus classes the curriculum shows at this step."),
    (r"curriculum/t_max", "Longest trial of the curriculum at this step (frames): delays run up "
     "to t_max - 1."),
    (r"curriculum/null_weight", "Loss weight of the null steps at this step (recu raises it "
     "from 0 to 1 over its stages)."),
    (r"learning_rate", "Adam learning rate of the step (lr_schedule: step or cosine)."),
    (r"warnings/null_everywhere", "Warning: the network output null everywhere for a long "
     "stretch (report accuracy 0, loss at the trivial solution's)."),
    (r"eval/report_accuracy_delay_(\d+)", "Report accuracy on test trials at delay {0} "
     "(frames between stimulus and report cue): fraction answered with the stimulus class at "
     "the report step; eval_trials trials, fixed by the run's seed (results.json: "
     "trials_per_delay)."),
    (r"eval/full_trial_accuracy_delay_(\d+)", "Full-trial accuracy on test trials at delay "
     "{0}: fraction of trials right at every step (null before the report, the class at it)."),
    (r"eval/memory_half_life", "Memory half-life (frames): the delay at which report accuracy "
     "falls halfway from its value within a training trial to chance (log-interpolated; a "
     "lower bound when it never falls that far: results.json memory_half_life.censored)."),
    (r"eval/accuracy_vs_delay", "Report and full-trial accuracy against delay (log axis) on "
     "test trials, with the memory half-life when there is one: accuracy_vs_delay.png."),
    (r"slow_points/speed_class_(\d+)", "Speed q of the slow point the search reached from "
     "class {0}'s centre (trigger off; lower is slower; results.json slow_point_speed)."),
    (r"slow_points/num_unique", "Number of distinct slow points found (points within the "
     "recipe's dedup tolerance of each other count once)."),
    (r"slow_points/trajectories_pca", "Test-trial state trajectories after the stimulus in "
     "their first two principal components, with the class centres and the slow points found "
     "from them: trajectories_pca.png."),
    (r"hparams/accuracy_delay_(\d+)", "HParams metric: the run's final report accuracy on "
     "test trials at delay {0}."),
    (r"hparams/median_slow_point_speed", "HParams metric: the median over classes of the "
     "run's slow-point speed q."),
)
_COMPILED = tuple((re.compile(p + r"\Z"), d) for p, d in _DESCRIPTIONS)


def describe(tag: str) -> str:
  """The description of TensorBoard tag `tag` (KeyError if the tag is not documented)."""
  for pattern, description in _COMPILED:
    m = pattern.match(tag)
    if m:
      return description.format(*m.groups())
  raise KeyError(f"TensorBoard tag {tag!r} has no description in haviv_tf/base/summaries.py")
