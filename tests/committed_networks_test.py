"""The trained networks committed under experiments/ restore and reproduce their recorded check.

`experiments/grid_files.py save --weights` records, for each finished MNIST network, its report
accuracy on fixed trials of the shipped MNIST sample (weights/check.json). Restoring the
committed weights (weights/final) and evaluating the same trials must give the same accuracy,
overall and per class: the committed files are the network the results were measured on.
"""

import glob
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "experiments"))

import grid_files  # pylint: disable=g-import-not-at-top,wrong-import-position

from haviv_tf.base import artifacts  # pylint: disable=g-import-not-at-top,wrong-import-position

CHECKS = sorted(glob.glob(os.path.join(REPO, "experiments", "**", grid_files.CHECK),
                          recursive=True))


@pytest.mark.skipif(not CHECKS, reason="no trained network is committed in this tree yet")
def test_one_committed_network_reproduces_its_recorded_accuracy():
  # One network (the first by path) keeps the test fast; each takes a few seconds.
  path = CHECKS[0]
  workdir = os.path.dirname(os.path.dirname(path))
  want = artifacts.read_json(path)
  got = grid_files.check_accuracy(workdir)
  assert got["step"] == want["step"] and got["trials"] == want["trials"]
  assert got["accuracy"] == want["accuracy"], workdir
  assert got["per_class_accuracy"] == want["per_class_accuracy"], workdir


@pytest.mark.skipif(not CHECKS, reason="no trained network is committed in this tree yet")
def test_every_committed_network_has_its_weights_and_saved_model():
  for path in CHECKS:
    workdir = os.path.dirname(os.path.dirname(path))
    assert os.path.exists(os.path.join(workdir, grid_files.WEIGHTS + ".index")), workdir
    assert os.path.exists(os.path.join(workdir, grid_files.SAVED_MODEL,
                                       "saved_model.pb")), workdir
    assert os.path.exists(os.path.join(workdir, artifacts.RESULTS_FILE)), workdir


@pytest.mark.skipif(not CHECKS, reason="no trained network is committed in this tree yet")
def test_an_analysis_of_a_committed_network_says_how_to_restore_it():
  from haviv_tf.analysis import pipeline  # pylint: disable=g-import-not-at-top
  workdir = os.path.dirname(os.path.dirname(CHECKS[0]))
  with pytest.raises(artifacts.RunError, match=r"committed network \(weights/final\), not a "
                     r"checkpoint; restore it .*grid_files.py restore --weights --dest="):
    pipeline.trained_config(workdir)
