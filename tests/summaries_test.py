"""Every TensorBoard summary haviv_tf writes carries a description (haviv_tf/base/summaries.py)."""

import glob
import os

import pytest
import tensorflow as tf

from haviv_tf.base import artifacts
from haviv_tf.study import hparams
from haviv_tf.base import summaries
import shared_run  # pylint: disable=g-bad-import-order
from shared_run import trained_run  # pylint: disable=unused-import,g-bad-import-order


def _descriptions(folder):
  """{tag: set of the descriptions its values carry} over every event file under `folder`."""
  tags = {}
  for path in glob.glob(os.path.join(folder, "**", "events.out.tfevents.*"), recursive=True):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == "hparams":
          continue  # the HParams dashboard's own records (session start/end), not charts
        tags.setdefault(value.tag, set()).add(value.metadata.summary_description)
  return tags


@pytest.fixture
def run(trained_run):  # pylint: disable=redefined-outer-name
  """The shared tiny run (tests/shared_run.py; logs every 5 steps), read only."""
  return trained_run.workdir


def test_every_tag_of_a_run_has_a_description(run):
  tags = _descriptions(run)
  expected = {"train/loss", "train/report_acc", "train/class_0_acc", "curriculum/stage",
              "learning_rate", "eval/report_accuracy_delay_5", "eval/full_trial_accuracy_delay_19",
              "eval/accuracy_vs_delay", "slow_points/num_unique", "slow_points/trajectories_pca"}
  assert expected <= set(tags), sorted(tags)
  for tag, descriptions in tags.items():
    described = {d for d in descriptions if d.strip()}
    assert described, f"{tag} has no description"
    assert described == {summaries.describe(tag)}, tag


def test_the_hparams_metrics_of_a_report_have_descriptions(trained_run, tmp_path):  # pylint: disable=redefined-outer-name
  run = shared_run.copy_run(trained_run, tmp_path)   # the report writes into the run
  results = artifacts.read_json(os.path.join(run, artifacts.RESULTS_FILE))
  root = os.path.dirname(run)
  hparams.write_hparams(root, [dict(workdir=run, results=results, compare=None)])
  tags = _descriptions(os.path.join(run, "tensorboard", "hparams"))
  assert "hparams/accuracy_delay_5" in tags
  for tag, descriptions in tags.items():
    assert {d for d in descriptions if d.strip()}, tag


@pytest.mark.parametrize("tag", ["eval/memory_half_life", "train/speed_sq",
                                 "curriculum/null_weight", "warnings/null_everywhere",
                                 "hparams/median_slow_point_speed", "slow_points/speed_class_3"])
def test_tags_a_tiny_run_does_not_write_are_described_too(tag):
  assert len(summaries.describe(tag)) > 30


def test_a_tag_without_a_description_is_an_error():
  with pytest.raises(KeyError, match="no description"):
    summaries.describe("train/new_metric")
  assert "delay 7" in summaries.describe("eval/report_accuracy_delay_7")
