"""The one rollout runner and class centre: every site's numbers are those recorded before they
were shared (tests/fixtures/rollout_sites.npz, written by tests/rollout_sites.py at 34455f6)."""

import json

import numpy as np
import pytest
import tensorflow as tf

from haviv_tf.probes import rollouts
import rollout_sites


@pytest.fixture(scope="module")
def restored():
  return rollout_sites.restore_fixture()


def _same(got, want):
  return (got.shape == want.shape and got.dtype == want.dtype
          and np.array_equal(got, want, equal_nan=got.dtype.kind == "f"))


def test_every_site_bit_identical_to_the_record(restored):
  got = rollout_sites.site_outputs(*restored)
  with np.load(rollout_sites.RECORD) as want:
    differ = [k for k in got if not _same(np.asarray(got[k]), want[k])]
  assert not differ


# Search settings added to SlowPointConfig after the record, at the defaults that keep the
# recorded search (the summaries' slow_point_config gained them; every number is unchanged).
_ADDED_SETTINGS = {"dedup_space": "state"}


def _summary(text, added=None):
  out = json.loads(str(text))
  if added:
    out["slow_point_config"] = dict(out["slow_point_config"], **added)
  return out


def test_find_slow_points_bit_identical_to_the_record(restored):
  got = rollout_sites.pipeline_outputs(*restored)
  with np.load(rollout_sites.RECORD) as want:
    differ = [k for k in got if not k.endswith("_summary")
              and not _same(np.asarray(got[k]), want[k])]
    differ += [k for k in got if k.endswith("_summary")
               and _summary(got[k]) != _summary(want[k], _ADDED_SETTINGS)]
  assert not differ


def test_class_centres_are_means_of_counted_trials():
  states = np.arange(12, dtype=np.float32).reshape(6, 2)
  classes = np.array([0, 0, 1, 1, 3, 0])
  centres, counts = rollouts.class_centres(states, classes, [True, False, True, True, False, True])
  np.testing.assert_array_equal(counts, [2, 2, 0, 0, 0, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(centres[0], [5.0, 6.0])   # rows 0 and 5
  np.testing.assert_array_equal(centres[1], [5.0, 6.0])   # rows 2 and 3
  assert np.isnan(centres[2:]).all() and centres.dtype == np.float32
  all_centres, all_counts = rollouts.class_centres(states.astype(np.float64), classes)
  np.testing.assert_array_equal(all_counts[:4], [3, 2, 0, 1])
  np.testing.assert_array_equal(all_centres[3], [8.0, 9.0])


def test_at_stimulus_shows_the_image_at_t_s_only():
  image, noise = tf.ones([3, 2]), tf.zeros([3, 2])
  got = rollouts.at_stimulus(tf.constant(2), tf.constant([0, 2, 5]), image, noise).numpy()
  np.testing.assert_array_equal(got[:, 0], [0.0, 1.0, 0.0])


def test_stream_split_names_the_seeds_in_order():
  seed = tf.constant([1, 2], tf.int64)
  parts = tf.random.experimental.stateless_split(seed, 3).numpy()
  stream = rollouts.Stream.split(seed, ("stimulus", "times", "noise"))
  np.testing.assert_array_equal(stream.noise.numpy(), parts[2])
  np.testing.assert_array_equal(stream.readout_seed.numpy(), parts[2])
