"""Image sources: canonical offline files, tensorflow-datasets, the shipped MNIST sample."""

import dataclasses
import gzip
import os
import zipfile
import zlib

import numpy as np

from haviv_tf.base import config as config_lib

SAMPLE_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                           "mnist_sample.npz")
# MNIST statistics on [0, 1] pixels, as in the authors' code (the sample uses them too).
MNIST_MEAN, MNIST_STD = 0.1307, 0.30816
# The authors' CIFAR-10 noise: one scalar mean and std for every channel (TriggerCIFARCloud.py
# L44-45, L234), used with data_recipe "authors".
CIFAR_AUTHORS_MEAN, CIFAR_AUTHORS_STD = 0.4734, 0.2517
# TF1's input_data.read_data_sets holds out the first 5,000 MNIST train images for validation;
# the authors trained on the other 55,000 (TriggerMNISTCloud.py L19).
MNIST_TF1_HOLDOUT = 5000

_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_CIFAR_BIN = {"train": [f"data_batch_{k}.bin" for k in range(1, 6)], "test": ["test_batch.bin"]}


class DataError(config_lib.InputError):
  """A data set that cannot be found or read; the message is one line for the user."""


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray  # [N, H, W, C] uint8
  labels: np.ndarray  # [N] int32 in 0..9


@dataclasses.dataclass(frozen=True)
class Source:
  """A data set's train and test splits and its pixel statistics on [0, 1] pixels."""
  name: str
  train: Split
  test: Split
  mean: np.ndarray   # [C] float32 per-channel pixel mean
  std: np.ndarray    # [C] float32 per-channel pixel std
  origin: str        # where the images came from, for config.json
  recipe: str = "all"  # "authors" once apply_recipe has cut the train split and set the noise

  @property
  def frame_shape(self) -> tuple[int, int, int]:
    return tuple(self.train.images.shape[1:])


def load(name: str, data_dir: str = "") -> Source:
  """Loads `name` ("mnist", "mnist_sample" or "cifar10").

  `data_dir` may hold the canonical files (MNIST's four IDX .gz files; CIFAR-10 as
  cifar10.npz with x_train/y_train/x_test/y_test, or the binary batches); otherwise it is the
  tensorflow-datasets cache, downloading when online.

  Raises:
    DataError: the data set is missing, unreadable or malformed.
  """
  if name == "mnist_sample":
    return _from_arrays(name, _read_npz(SAMPLE_PATH), "package sample " + SAMPLE_PATH)
  if name not in ("mnist", "cifar10"):
    raise DataError(f"unknown dataset {name!r}; valid: mnist, mnist_sample, cifar10")
  if data_dir and not os.path.isdir(data_dir):
    raise DataError(f"--data_dir {data_dir} is not a directory")
  files = _find_canonical(name, data_dir) if data_dir else None
  if files is not None:
    kind, path = files
    if kind == "mnist_idx":
      arrays = {f"{a}_{s}": v for s in ("train", "test")
                for a, v in zip(("x", "y"), _read_mnist_idx(path, s))}
    elif kind == "cifar_bin":
      arrays = {f"{a}_{s}": v for s in ("train", "test")
                for a, v in zip(("x", "y"), _read_cifar_bin(path, s))}
    else:
      arrays = _read_npz(path)
    return _from_arrays(name, arrays, "files " + os.path.abspath(path))
  return _from_tfds(name, data_dir)


def authors_train_indices(labels, holdout: int = 0) -> np.ndarray:
  """Indices into a train split of the images the authors' code draws from, in order.

  The authors drop the first `holdout` images (MNIST: TF1's validation split), keep the first n
  images of each class, n the smallest class's count (TriggerMNISTCloud.py L47-55;
  TriggerCIFARCloud.py L52-60), and draw np.random.randint(0, n - 1), which never reaches
  the n-th: so the first n - 1 images of each class.
  """
  labels = np.asarray(labels).reshape(-1)[holdout:]
  keep = int(np.bincount(labels, minlength=10).min()) - 1
  if keep < 1:
    raise DataError("the authors' image subset needs at least 2 images of every class")
  idx = [np.flatnonzero(labels == c)[:keep] for c in range(10)]
  return np.sort(np.concatenate(idx)) + holdout


def apply_recipe(source: Source, recipe: str) -> Source:
  """`source` as data_recipe `recipe` uses it ("all": unchanged; idempotent).

  "authors": the train split is cut to `authors_train_indices` (MNIST: after TF1's 5,000-image
  hold-out; the shipped sample has no hold-out, its images being a sample of the train split),
  and CIFAR-10's noise statistics become the authors' scalar ones on every channel. The test
  split is unchanged.
  """
  if recipe == "all" or source.recipe == recipe:
    return source
  if recipe != "authors":
    raise ValueError(f"unknown data_recipe {recipe!r}; valid: authors, all")
  holdout = MNIST_TF1_HOLDOUT if source.name == "mnist" else 0
  idx = authors_train_indices(source.train.labels, holdout)
  train = Split(source.train.images[idx], source.train.labels[idx])
  mean, std = source.mean, source.std
  if source.name == "cifar10":
    mean = np.full_like(source.mean, CIFAR_AUTHORS_MEAN)
    std = np.full_like(source.std, CIFAR_AUTHORS_STD)
  return dataclasses.replace(source, train=train, mean=mean, std=std, recipe=recipe)


def _from_arrays(name, arrays, origin) -> Source:
  try:
    splits = {}
    for s in ("train", "test"):
      x = np.asarray(arrays[f"x_{s}"])
      y = np.asarray(arrays[f"y_{s}"]).reshape(-1)
      splits[s] = _check_split(name, s, x, y, origin)
  except KeyError as e:
    raise DataError(f"{origin} lacks array {e}; expected x_train, y_train, x_test, y_test") from None
  if name in ("mnist", "mnist_sample"):
    mean, std = np.float32([MNIST_MEAN]), np.float32([MNIST_STD])
  else:
    x = splits["train"].images.reshape(-1, splits["train"].images.shape[-1])
    x = x.astype(np.float64) / 255.0
    mean, std = x.mean(0).astype(np.float32), x.std(0).astype(np.float32)
  return Source(name, splits["train"], splits["test"], mean, std, origin)


def _check_split(name, split, x, y, origin) -> Split:
  expect = (28, 28, 1) if name in ("mnist", "mnist_sample") else (32, 32, 3)
  if x.ndim == 3:
    x = x[..., None]
  if x.dtype != np.uint8 or tuple(x.shape[1:]) != expect:
    raise DataError(f"{origin}: {split} images have shape {x.shape} {x.dtype}, expected "
                    f"[N, {', '.join(map(str, expect))}] uint8")
  if len(y) != len(x) or len(x) == 0:
    raise DataError(f"{origin}: {split} has {len(x)} images but {len(y)} labels")
  if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() > 9:
    raise DataError(f"{origin}: {split} labels must be integers 0..9")
  missing = sorted(set(range(10)) - set(np.unique(y).tolist()))
  if missing:
    raise DataError(f"{origin}: {split} has no images of classes {missing}")
  return Split(np.ascontiguousarray(x), y.astype(np.int32))


def _find_canonical(name, data_dir):
  """(kind, path) of canonical files under data_dir, or None."""
  if name == "mnist":
    for d in (data_dir, os.path.join(data_dir, "mnist")):
      if all(os.path.exists(os.path.join(d, f)) for pair in _MNIST_FILES.values() for f in pair):
        return "mnist_idx", d
    return None
  for d in (data_dir, os.path.join(data_dir, "cifar10")):
    for f in ("cifar10.npz", "cifar-10.npz"):
      if os.path.isfile(os.path.join(d, f)):
        return "npz", os.path.join(d, f)
    for sub in ("", "cifar-10-batches-bin"):
      b = os.path.join(d, sub)
      if all(os.path.isfile(os.path.join(b, f)) for fs in _CIFAR_BIN.values() for f in fs):
        return "cifar_bin", b
    if os.path.isdir(os.path.join(d, "cifar-10-batches-py")):
      raise DataError(f"{d}/cifar-10-batches-py holds pickled batches, which haviv_tf does not "
                      "unpickle; use the binary batches (cifar-10-batches-bin) or cifar10.npz")
  return None


def _read_npz(path):
  try:
    with np.load(path, allow_pickle=False) as f:
      return {k: f[k] for k in f.files}
  except FileNotFoundError:
    raise DataError(f"{path} not found") from None
  except (ValueError, OSError, EOFError, zlib.error, KeyError, zipfile.BadZipFile) as e:
    raise DataError(f"{path} is not a readable npz ({type(e).__name__}: {e})") from None


def _read_gz(path):
  try:
    with gzip.open(path, "rb") as f:
      return f.read()
  except (OSError, EOFError, zlib.error) as e:
    raise DataError(f"{path} is not a readable gzip file ({e})") from None


def _read_mnist_idx(directory, split):
  img_path, lbl_path = (os.path.join(directory, f) for f in _MNIST_FILES[split])
  raw = _read_gz(img_path)
  header = np.frombuffer(raw[:16], ">u4") if len(raw) >= 16 else np.zeros(4, ">u4")
  if header[0] != 0x803 or len(raw) != 16 + int(header[1]) * int(header[2]) * int(header[3]):
    raise DataError(f"{img_path} is not an IDX image file (bad magic number or size)")
  x = np.frombuffer(raw, np.uint8, offset=16).reshape(int(header[1]), int(header[2]),
                                                      int(header[3]))
  raw = _read_gz(lbl_path)
  header = np.frombuffer(raw[:8], ">u4") if len(raw) >= 8 else np.zeros(2, ">u4")
  if header[0] != 0x801 or len(raw) != 8 + int(header[1]):
    raise DataError(f"{lbl_path} is not an IDX label file (bad magic number or size)")
  return x, np.frombuffer(raw, np.uint8, offset=8)


def _read_cifar_bin(directory, split):
  xs, ys = [], []
  for f in _CIFAR_BIN[split]:
    path = os.path.join(directory, f)
    with open(path, "rb") as fh:
      raw = np.frombuffer(fh.read(), np.uint8)
    if raw.size == 0 or raw.size % 3073:
      raise DataError(f"{path} is not a CIFAR-10 binary batch (size {raw.size} is not a "
                      "multiple of 3073)")
    raw = raw.reshape(-1, 3073)
    ys.append(raw[:, 0])
    xs.append(raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
  return np.concatenate(xs), np.concatenate(ys)


def _from_tfds(name, data_dir) -> Source:
  """Loads through tensorflow-datasets (downloads into data_dir when online)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    ds = tfds.load(name, split=["train", "test"], data_dir=data_dir or None, batch_size=-1,
                   as_supervised=True, download=True)
    arrays = {}
    for s, (x, y) in zip(("train", "test"), tfds.as_numpy(ds)):
      arrays[f"x_{s}"], arrays[f"y_{s}"] = x, y
  except Exception as e:  # pylint: disable=broad-except
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    where = f"--data_dir={data_dir}" if data_dir else "the default tfds cache"
    raise DataError(
        f"could not load {name}: no canonical files in {where} and tensorflow-datasets failed "
        f"({type(e).__name__}: {first[:200]}). Point --data_dir at a folder with "
        + ("MNIST's four IDX .gz files" if name == "mnist" else
           "cifar10.npz or cifar-10-batches-bin")
        + ", or use --dataset=mnist_sample (shipped, offline)") from None
  return _from_arrays(name, arrays, "tensorflow-datasets " + (data_dir or "default cache"))
