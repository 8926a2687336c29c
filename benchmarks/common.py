"""What every benchmark shares: the MNIST source it measures on, the machine context line, and
the slow-point comparisons' measures (q, the reachable box)."""

import os
import platform

import keras
import numpy as np
import tensorflow as tf

from haviv_tf import dynamics
from haviv_tf.task import datasets

DEFAULT_DATA_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def load_mnist(data_dir: str) -> datasets.Source:
  """The full MNIST under data_dir/mnist, else the shipped sample (saying so)."""
  try:
    return datasets.load("mnist", os.path.join(data_dir, "mnist"))
  except datasets.DataError as e:
    print(f"(full MNIST not found: {e}; using the shipped sample)")
    return datasets.load("mnist_sample")


def load_source(dataset: str, data_dir: str) -> datasets.Source:
  """MNIST (see load_mnist) or the full CIFAR-10 under data_dir/cifar10 (no fallback)."""
  if dataset == "mnist":
    return load_mnist(data_dir)
  return datasets.load(dataset, os.path.join(data_dir, dataset))


def load_average() -> tuple:
  return tuple(round(v, 2) for v in os.getloadavg())


def machine_context() -> str:
  return (f"machine: {platform.machine()}, {os.cpu_count()} cpus, "
          f"{platform.processor() or '?'}; {platform.platform()}; python "
          f"{platform.python_version()}, tensorflow {tf.__version__}, keras {keras.__version__}; "
          f"load average before: {load_average()}")


def box_stats(states):
  """Points outside the box |h| <= 1 of [N, n] states, their max |h| and mean distance to it."""
  h = np.asarray(states, np.float64)
  out = np.any(np.abs(h) > 1.0, axis=1)
  dist = np.linalg.norm(h - np.clip(h, -1, 1), axis=1)
  return dict(outside=int(out.sum()), max_abs_h=float(np.abs(h).max()),
              mean_dist=float(dist.mean()))


def q_of(model, states, x_bar):
  """q = 1/2 ||F(h) - h||^2 per state, by haviv_tf's own speed (the common scale of the tools)."""
  return 0.5 * np.square(dynamics.speeds(model, np.asarray(states, np.float32), x_bar))
