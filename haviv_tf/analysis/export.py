"""SavedModel export whose signatures load with TensorFlow alone (no haviv_tf import).

Signatures (batch and time dynamic; float32; S = state_size, I = input_size = frame_size + 1):
  serving_default(inputs [B, T, I]) -> {"logits" [B, T, 11], "states" [B, T, S]}, from the
    zero state; the state after frame t is read out at t.
  run_from_state(inputs [B, T, I], initial_state [B, S]) -> the same, from a given state.
  step(inputs [B, I], state [B, S]) -> {"state" [B, S], "logits" [B, 11]}.
  speed(state [B, S], inputs [B, I]) -> {"speed" [B], "q" [B]}: ||F(state, inputs) - state|| in
    speed coordinates (GRU: h; LSTM: (h, tanh c)) and q = ½ speed² (smooth at 0, for descent).
  metadata() -> constants: noise_mean, noise_std [frame_size], frame_shape [3], num_outputs,
    state_size, units, input_size, feature_size, trigger_index (= I - 1), arch, readout,
    encoder, state_layout ("h" or "h,c": the state is h, or h and c concatenated),
    speed_coordinates ("h" or "h,tanh(c)"), metadata_json (the caller's metadata as JSON).
The same constants are tf.Variable attributes of the loaded object (e.g. `loaded.state_size`), and
the functions are attributes too. Call them by keyword (`loaded.step(state=s, inputs=x)`;
signatures take keywords only): `step`'s positional order is (inputs, state), fixed by the
SavedModels written since the first export, while every other step in haviv_tf takes the state
first.
"""

import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from haviv_tf.base import artifacts
from haviv_tf.task import losses
from haviv_tf.models import network

SIGNATURES = ("serving_default", "run_from_state", "step", "speed", "metadata")


class _Exported(tf.Module):
  """The variables, constants and functions saved for one DelayedClassifier."""

  def __init__(self, model: network.DelayedClassifier, constants: dict):
    super().__init__(name="haviv_delayed_classifier")
    # Keras variables wrap tf.Variables; tracking the latter keeps Keras out of the SavedModel.
    self.model_variables = [getattr(v, "value", v) for v in model.weights]
    names = sorted(constants)
    for name, value in constants.items():
      setattr(self, name, tf.Variable(value, trainable=False, name=name))
    s, i = model.state_size, model.input_size
    cell = model.cell

    def run(inputs, initial_state):
      xp = cell.project(model.encode(inputs))
      states = tf.scan(cell.step, tf.transpose(xp, [1, 0, 2]),
                       initializer=initial_state)
      states = tf.transpose(states, [1, 0, 2])
      return {"logits": model.logits(states), "states": states}

    @tf.function(input_signature=[tf.TensorSpec([None, None, i], tf.float32, name="inputs")])
    def serve(inputs):
      return run(inputs, tf.zeros([tf.shape(inputs)[0], s]))

    @tf.function(input_signature=[tf.TensorSpec([None, None, i], tf.float32, name="inputs"),
                                  tf.TensorSpec([None, s], tf.float32, name="initial_state")])
    def run_from_state(inputs, initial_state):
      return run(inputs, initial_state)

    @tf.function(input_signature=[tf.TensorSpec([None, i], tf.float32, name="inputs"),
                                  tf.TensorSpec([None, s], tf.float32, name="state")])
    def step(inputs, state):
      new_state, logits = model.step(state, inputs)
      return {"state": new_state, "logits": logits}

    @tf.function(input_signature=[tf.TensorSpec([None, s], tf.float32, name="state"),
                                  tf.TensorSpec([None, i], tf.float32, name="inputs")])
    def speed(state, inputs):
      new_state = model.transition(state, model.encode(inputs))
      sq = losses.speed_squared(cell, state, new_state)
      return {"speed": tf.sqrt(sq), "q": 0.5 * sq}

    @tf.function(input_signature=[])
    def metadata():
      return {name: tf.identity(getattr(self, name)) for name in names}

    self.serve, self.run_from_state, self.step, self.speed, self.metadata = (
        serve, run_from_state, step, speed, metadata)

  def signatures(self):
    return {"serving_default": self.serve, "run_from_state": self.run_from_state,
            "step": self.step, "speed": self.speed, "metadata": self.metadata}


def _per_pixel(name, value, model):
  """Per-channel [C] or per-pixel [frame_size] statistics -> [frame_size] float32."""
  value = np.asarray(value, np.float32).reshape(-1)
  channels = model.frame_shape[-1]
  if value.size == channels:
    value = np.tile(value, model.frame_size // channels)
  if value.size != model.frame_size:
    raise ValueError(f"metadata[{name!r}] must have {channels} (channels) or {model.frame_size} "
                     f"(frame_size) entries, got {value.size}")
  return value


def constants_for(model: network.DelayedClassifier, metadata: dict) -> dict:
  """The metadata signature's values for `model`; `metadata` must hold noise_mean and noise_std."""
  missing = [k for k in ("noise_mean", "noise_std") if k not in metadata]
  if missing:
    raise ValueError(f"metadata lacks {missing} (the trial noise statistics, per channel or "
                     "per pixel)")
  extra = {k: v for k, v in metadata.items() if k not in ("noise_mean", "noise_std")}
  try:
    extra_json = json.dumps(extra, sort_keys=True, default=artifacts.jsonable)
  except TypeError as e:
    raise ValueError(f"metadata values must be JSON-serialisable: {e}") from None
  lstm = model.arch == "lstm"
  return dict(
      noise_mean=_per_pixel("noise_mean", metadata["noise_mean"], model),
      noise_std=_per_pixel("noise_std", metadata["noise_std"], model),
      frame_shape=np.asarray(model.frame_shape, np.int32),
      num_outputs=np.int32(network.NUM_OUTPUTS),
      state_size=np.int32(model.state_size),
      units=np.int32(model.units),
      input_size=np.int32(model.input_size),
      feature_size=np.int32(model.feature_size),
      trigger_index=np.int32(model.input_size - 1),
      arch=model.arch,
      readout=model.readout,
      encoder=model.encoder_kind,
      state_layout="h,c" if lstm else "h",
      speed_coordinates="h,tanh(c)" if lstm else "h",
      metadata_json=extra_json,
  )


def export_saved_model(model: network.DelayedClassifier, path: str, metadata: dict,
                       overwrite: bool = True) -> str:
  """Writes `model` as a SavedModel at `path` (see the module docstring for its signatures).

  The SavedModel is written to a temporary directory beside `path` and renamed into place, so
  `path` never holds a partial export.

  Args:
    model: the network.
    path: output directory.
    metadata: JSON-serialisable dict; must hold "noise_mean" and "noise_std" (per channel [C] or
      per pixel [frame_size], on [0, 1] pixels); everything else is stored as metadata_json
      (e.g. the run's config and dataset).
    overwrite: replace an existing `path` (else FileExistsError).

  Returns:
    `path`.
  """
  if not isinstance(metadata, dict):
    raise ValueError(f"`metadata` must be a dict, got {type(metadata).__name__}")
  path = os.path.abspath(path)
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
  module = _Exported(model, constants_for(model, metadata))
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=parent)
  old = None
  try:
    tf.saved_model.save(module, tmp, signatures=module.signatures())
    if os.path.exists(path):
      old = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".", suffix=".old",
                             dir=parent)
      previous = os.path.join(old, "previous")
      os.rename(path, previous)
      try:
        os.rename(tmp, path)
      except OSError:
        os.rename(previous, path)
        raise
    else:
      os.rename(tmp, path)
    artifacts.fsync_directory(parent)  # as artifacts.atomic_path does for files
  finally:
    if os.path.exists(tmp):
      shutil.rmtree(tmp)
    if old is not None:
      shutil.rmtree(old, ignore_errors=True)
  return path


def load_metadata(path: str) -> dict:
  """The metadata signature's values as numpy/str, with metadata_json parsed into "metadata"."""
  out = {}
  for name, value in tf.saved_model.load(path).signatures["metadata"]().items():
    value = value.numpy()
    out[name] = value.decode() if isinstance(value, bytes) else value
  out["metadata"] = json.loads(out.pop("metadata_json"))
  return out
