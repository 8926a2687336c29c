"""The numpy trial sampler (Config.trial_backend "numpy"): TrialGenerator.sample_numpy's draws."""

import contextlib

import numpy as np

_NUMPY_STREAM = 0x7E1A1  # keys sample_numpy's SeedSequence (seed, step, stream)


class NumpySampler:
  """Draws training trials with numpy from one split's images, grouped by class."""

  def __init__(self, images, counts, offsets, mean, std, min_delay: int):
    """Args:
      images: [N, frame_size] uint8, grouped by class.
      counts, offsets: [10] int64, each class's number of images and first row.
      mean, std: [frame_size] float32 per-pixel noise statistics (channels tiled).
      min_delay: t_a >= t_s + min_delay.
    """
    self.images, self.counts, self.offsets = images, counts, offsets
    self.frame_size = int(images.shape[1])
    self.mean, self.std = mean, std
    self.min_delay = int(min_delay)
    self.free_scratch = []  # idle work buffers (one set per concurrent call)

  def draw(self, seed, step, batch_size, length, t_max, num_classes):
    """TrialGenerator.sample_numpy's draws, keyed by (seed, step).

    Returns:
      inputs [batch, length, frame_size + 1] float32 (trigger set), classes, t_s, t_a [batch]
      int32.
    """
    b, n, f = int(batch_size), int(length), self.frame_size
    t_max, num_classes = int(t_max), int(num_classes)
    if not self.min_delay < t_max <= n:
      raise ValueError(f"t_max must be in ({self.min_delay}, {n}], got {t_max}")
    rng = np.random.Generator(np.random.SFC64(
        np.random.SeedSequence([int(seed), int(step), _NUMPY_STREAM])))
    classes = rng.integers(0, num_classes, b)
    idx = self.offsets[classes] + rng.integers(0, self.counts[classes])
    t_s = rng.integers(0, t_max - self.min_delay, b)
    t_a = t_s + self.min_delay + rng.integers(0, t_max - t_s - self.min_delay)

    inputs = np.empty([b, n, f + 1], np.float32)
    frames = inputs.reshape(b * n, f + 1)[:, :f]           # a view: written in place
    rows, half = b * n, (b * n + 1) // 2
    with self._scratch(half, f) as (u, sine):
      rng.random((2, half, f), dtype=np.float32, out=u)
      radius, angle = u[0], u[1]
      np.subtract(np.float32(1.0), radius, out=radius)      # (0, 1]
      np.log(radius, out=radius)
      np.multiply(radius, np.float32(-2.0), out=radius)
      np.sqrt(radius, out=radius)
      np.multiply(radius, self.std, out=radius)             # per-pixel std (channels tiled)
      np.multiply(angle, np.float32(2.0 * np.pi), out=angle)
      sine = np.sin(angle[:rows - half], out=sine[:rows - half])
      np.cos(angle, out=angle)
      np.multiply(angle, radius, out=frames[:half])
      np.multiply(sine, radius[:rows - half], out=frames[half:])
      np.add(frames, self.mean, out=frames)

    trials_ = np.arange(b)
    inputs[trials_, t_s, :f] = self.images[idx] / np.float32(255.0)
    inputs[:, :, f] = 0.0
    inputs[trials_, t_a, f] = 1.0
    return inputs, classes.astype(np.int32), t_s.astype(np.int32), t_a.astype(np.int32)

  @contextlib.contextmanager
  def _scratch(self, rows: int, cols: int):
    """Work buffers for one sample_numpy call: uniforms [2, rows, cols] and a sine buffer
    [rows, cols], lent from a free list and returned after the call. Fresh multi-megabyte
    arrays would cost page faults on every batch (about a third of the sampler's time). tf.data
    calls the sampler from several threads at once, so there is one set per concurrent call
    (list append/pop are atomic). Every element read is first written in the same call."""
    try:
      uniforms, sine = self.free_scratch.pop()
    except IndexError:
      uniforms = sine = None
    if sine is None or sine.shape != (rows, cols):
      uniforms = np.empty((2, rows, cols), np.float32)
      sine = np.empty((rows, cols), np.float32)
    try:
      yield uniforms, sine
    finally:
      self.free_scratch.append((uniforms, sine))
