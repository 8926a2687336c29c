"""Tests for haviv_tf.artifacts: reading a run's recorded config."""

import json

import pytest

from haviv_tf import artifacts
from haviv_tf import config as config_lib


def _write(workdir, text):
  workdir.mkdir(exist_ok=True)
  (workdir / artifacts.CONFIG_FILE).write_text(text)


def test_recorded_config_round_trips_and_is_none_without_a_file(tmp_path):
  assert artifacts.recorded_config(str(tmp_path / "empty")) is None
  cfg = config_lib.resolve("quick", "mnist_sample", dict(seed=5, protocol="decu"))
  artifacts.write_json(str(tmp_path / "run" / artifacts.CONFIG_FILE),
                       dict(config=cfg.to_dict(), seed=5))
  assert artifacts.recorded_config(str(tmp_path / "run")) == cfg


def test_a_record_without_newer_fields_gets_their_earlier_values(tmp_path):
  d = config_lib.preset("quick", "mnist").to_dict()
  del d["trial_backend"]
  _write(tmp_path / "old", json.dumps(dict(config=d)))
  assert artifacts.recorded_config(str(tmp_path / "old")).trial_backend == "tf"


@pytest.mark.parametrize("text, why", [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", 'no "config" object'),
    ('{"seed": 1}', 'no "config" object'),
    ('{"config": {"protocol": "vocu", "colour": 3}}', "unknown config fields ['colour']"),
    ('{"config": {"units": "many"}}', "units"),
])
def test_an_unreadable_record_is_one_run_error_naming_the_file(tmp_path, text, why):
  _write(tmp_path / "bad", text)
  with pytest.raises(artifacts.RunError) as e:
    artifacts.recorded_config(str(tmp_path / "bad"))
  msg = str(e.value)
  assert str(tmp_path / "bad" / artifacts.CONFIG_FILE) in msg and why in msg, msg
  assert "\n" not in msg
