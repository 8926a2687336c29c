"""Tests for haviv_tf.task.datasets: the shipped sample, canonical files, tensorflow-datasets, errors.

Nothing here reads ../shared/data or the network: canonical files are tiny ones written by the
tests, and the tensorflow-datasets path runs under `tfds.testing.mock_data` with sockets blocked.
"""

import gzip
import os
import shutil
import socket
import tempfile
from unittest import mock

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from haviv_tf.task import datasets

_N_TRAIN, _N_TEST = 20, 10


def _images(rng, n, shape):
  return rng.integers(0, 256, size=(n,) + shape, dtype=np.uint8)


def _labels(rng, n):
  """Every class 0..9 at least once, in a shuffled order."""
  return rng.permutation(np.arange(n) % 10).astype(np.uint8)


def _write_gz(path, data: bytes):
  with gzip.open(path, "wb") as f:
    f.write(data)


def _idx_images(x, magic=0x803, count=None):
  n, r, c = x.shape
  header = np.array([magic, n if count is None else count, r, c], ">u4").tobytes()
  return header + x.tobytes()


def _idx_labels(y, magic=0x801, count=None):
  header = np.array([magic, len(y) if count is None else count], ">u4").tobytes()
  return header + np.asarray(y, np.uint8).tobytes()


def _write_mnist(directory, arrays):
  os.makedirs(directory, exist_ok=True)
  for split, (img, lbl) in datasets._MNIST_FILES.items():  # pylint: disable=protected-access
    _write_gz(os.path.join(directory, img), _idx_images(arrays[f"x_{split}"]))
    _write_gz(os.path.join(directory, lbl), _idx_labels(arrays[f"y_{split}"]))


def _cifar_record_bytes(x, y):
  """Canonical binary records: 1 label byte, then the R, G and B planes (32x32 each)."""
  planes = np.asarray(x, np.uint8).transpose(0, 3, 1, 2).reshape(len(x), 3072)
  return np.concatenate([np.asarray(y, np.uint8)[:, None], planes], axis=1).tobytes()


def _write_cifar_bin(directory, arrays):
  os.makedirs(directory, exist_ok=True)
  x, y = arrays["x_train"], arrays["y_train"]
  for k, idx in enumerate(np.array_split(np.arange(len(x)), 5), start=1):
    with open(os.path.join(directory, f"data_batch_{k}.bin"), "wb") as f:
      f.write(_cifar_record_bytes(x[idx], y[idx]))
  with open(os.path.join(directory, "test_batch.bin"), "wb") as f:
    f.write(_cifar_record_bytes(arrays["x_test"], arrays["y_test"]))


def _mnist_arrays(seed=0):
  rng = np.random.default_rng(seed)
  return dict(x_train=_images(rng, _N_TRAIN, (28, 28)), y_train=_labels(rng, _N_TRAIN),
              x_test=_images(rng, _N_TEST, (28, 28)), y_test=_labels(rng, _N_TEST))


def _cifar_arrays(seed=0):
  rng = np.random.default_rng(seed)
  return dict(x_train=_images(rng, _N_TRAIN, (32, 32, 3)), y_train=_labels(rng, _N_TRAIN),
              x_test=_images(rng, _N_TEST, (32, 32, 3)), y_test=_labels(rng, _N_TEST))


class _TestCase(tf.test.TestCase, parameterized.TestCase):

  def make_tmpdir(self) -> str:
    """A fresh directory removed after the test (absl's create_tempdir needs parsed flags)."""
    path = tempfile.mkdtemp(prefix="haviv_tf_test_")
    self.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


class _NoTfdsTestCase(_TestCase):
  """Fails loudly if a test would fall through to tensorflow-datasets (and so the network)."""

  def setUp(self):
    super().setUp()
    self.enter_context(mock.patch.object(
        datasets, "_from_tfds", side_effect=AssertionError("test fell through to tfds")))

  def assertDataError(self, regex, name, data_dir=""):
    with self.assertRaisesRegex(datasets.DataError, regex) as cm:
      datasets.load(name, data_dir)
    message = str(cm.exception)
    self.assertNotIn("\n", message)
    self.assertNotEmpty(message)
    return message


class MnistSampleTest(_NoTfdsTestCase):

  def test_sample_loads_with_mnist_shapes_and_statistics(self):
    src = datasets.load("mnist_sample")
    self.assertEqual(src.name, "mnist_sample")
    self.assertEqual(src.frame_shape, (28, 28, 1))
    for split, n in (("train", 8000), ("test", 2000)):
      s = getattr(src, split)
      self.assertEqual(s.images.shape, (n, 28, 28, 1))
      self.assertEqual(s.images.dtype, np.uint8)
      self.assertEqual(s.labels.shape, (n,))
      self.assertEqual(s.labels.dtype, np.int32)
      self.assertAllEqual(np.bincount(s.labels, minlength=10), [n // 10] * 10)
    self.assertEqual(src.mean.dtype, np.float32)
    self.assertAllClose(src.mean, [0.1307])
    self.assertAllClose(src.std, [0.30816])
    self.assertIn("mnist_sample.npz", src.origin)

  def test_sample_pixels_look_like_mnist(self):
    x = datasets.load("mnist_sample").train.images / 255.0
    self.assertAllClose(x.mean(), datasets.MNIST_MEAN, atol=0.01)
    self.assertAllClose(x.std(), datasets.MNIST_STD, atol=0.01)

  def test_sample_ignores_data_dir(self):
    src = datasets.load("mnist_sample", "/definitely/not/here")
    self.assertEqual(src.train.images.shape, (8000, 28, 28, 1))

  def test_unknown_name_is_a_data_error(self):
    self.assertDataError(r"unknown dataset 'svhn'", "svhn")

  def test_data_dir_that_is_not_a_directory_is_a_data_error(self):
    path = os.path.join(self.make_tmpdir(), "file.txt")
    with open(path, "w") as f:
      f.write("not a directory")
    self.assertDataError(r"is not a directory", "mnist", path)


class MnistIdxTest(_NoTfdsTestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.make_tmpdir()
    self.arrays = _mnist_arrays()

  def _path(self, split, which):
    img, lbl = datasets._MNIST_FILES[split]  # pylint: disable=protected-access
    return os.path.join(self.dir, img if which == "images" else lbl)

  @parameterized.parameters("", "mnist")
  def test_idx_files_load_as_the_arrays_written(self, sub):
    _write_mnist(os.path.join(self.dir, sub), self.arrays)
    src = datasets.load("mnist", self.dir)
    for split in ("train", "test"):
      s = getattr(src, split)
      self.assertEqual(s.images.dtype, np.uint8)
      self.assertAllEqual(s.images, self.arrays[f"x_{split}"][..., None])
      self.assertEqual(s.labels.dtype, np.int32)
      self.assertAllEqual(s.labels, self.arrays[f"y_{split}"])
    self.assertEqual(src.frame_shape, (28, 28, 1))
    self.assertAllClose(src.mean, [datasets.MNIST_MEAN])
    self.assertAllClose(src.std, [datasets.MNIST_STD])
    self.assertTrue(src.origin.startswith("files "), src.origin)

  def test_corrupt_gzip_is_a_data_error(self):
    _write_mnist(self.dir, self.arrays)
    with open(self._path("train", "images"), "wb") as f:
      f.write(b"this is not gzip data at all")
    message = self.assertDataError(r"not a readable gzip file", "mnist", self.dir)
    self.assertIn("train-images-idx3-ubyte.gz", message)

  def test_truncated_gzip_is_a_data_error(self):
    _write_mnist(self.dir, self.arrays)
    path = self._path("test", "labels")
    with open(path, "rb") as f:
      data = f.read()
    with open(path, "wb") as f:
      f.write(data[:len(data) // 2])
    self.assertDataError(r"t10k-labels-idx1-ubyte.gz is not a readable gzip file", "mnist",
                         self.dir)

  def test_bad_image_magic_is_a_data_error(self):
    _write_mnist(self.dir, self.arrays)
    _write_gz(self._path("train", "images"), _idx_images(self.arrays["x_train"], magic=0x801))
    self.assertDataError(r"train-images-idx3-ubyte.gz is not an IDX image file", "mnist",
                         self.dir)

  def test_bad_label_magic_is_a_data_error(self):
    _write_mnist(self.dir, self.arrays)
    _write_gz(self._path("test", "labels"), _idx_labels(self.arrays["y_test"], magic=0x803))
    self.assertDataError(r"t10k-labels-idx1-ubyte.gz is not an IDX label file", "mnist",
                         self.dir)

  def test_header_count_disagreeing_with_the_data_is_a_data_error(self):
    _write_mnist(self.dir, self.arrays)
    _write_gz(self._path("train", "images"),
              _idx_images(self.arrays["x_train"], count=_N_TRAIN + 1))
    self.assertDataError(r"not an IDX image file \(bad magic number or size\)", "mnist",
                         self.dir)

  def test_short_file_is_a_data_error(self):
    _write_mnist(self.dir, self.arrays)
    _write_gz(self._path("train", "labels"), b"\x00\x00")
    self.assertDataError(r"not an IDX label file", "mnist", self.dir)

  def test_label_count_mismatch_is_a_data_error(self):
    arrays = dict(self.arrays, y_test=np.arange(_N_TEST - 1) % 10)
    _write_mnist(self.dir, arrays)
    self.assertDataError(r"test has 10 images but 9 labels", "mnist", self.dir)

  def test_missing_class_is_a_data_error(self):
    arrays = dict(self.arrays, y_train=np.where(self.arrays["y_train"] == 7, 3,
                                                self.arrays["y_train"]))
    _write_mnist(self.dir, arrays)
    self.assertDataError(r"train has no images of classes \[7\]", "mnist", self.dir)

  def test_out_of_range_label_is_a_data_error(self):
    arrays = dict(self.arrays, y_train=self.arrays["y_train"].copy())
    arrays["y_train"][0] = 10
    _write_mnist(self.dir, arrays)
    self.assertDataError(r"train labels must be integers 0..9", "mnist", self.dir)


class CifarFilesTest(_NoTfdsTestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.make_tmpdir()
    self.arrays = _cifar_arrays()

  def _check(self, src):
    for split in ("train", "test"):
      s = getattr(src, split)
      self.assertEqual(s.images.dtype, np.uint8)
      self.assertEqual(s.images.shape[1:], (32, 32, 3))
      self.assertAllEqual(s.images, self.arrays[f"x_{split}"])
      self.assertEqual(s.labels.dtype, np.int32)
      self.assertAllEqual(s.labels, self.arrays[f"y_{split}"])
    x = self.arrays["x_train"].astype(np.float64) / 255.0
    self.assertEqual(src.mean.shape, (3,))
    self.assertAllClose(src.mean, x.mean(axis=(0, 1, 2)), atol=1e-6)
    self.assertAllClose(src.std, x.std(axis=(0, 1, 2)), atol=1e-6)
    self.assertEqual(src.frame_shape, (32, 32, 3))

  @parameterized.parameters(("", "cifar10.npz"), ("", "cifar-10.npz"), ("cifar10", "cifar10.npz"))
  def test_npz_loads_with_per_channel_statistics_from_train(self, sub, filename):
    os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
    np.savez(os.path.join(self.dir, sub, filename), **self.arrays)
    src = datasets.load("cifar10", self.dir)
    self._check(src)
    self.assertIn(filename, src.origin)

  @parameterized.parameters("", "cifar-10-batches-bin", "cifar10/cifar-10-batches-bin")
  def test_binary_batches_load_as_the_arrays_written(self, sub):
    _write_cifar_bin(os.path.join(self.dir, sub), self.arrays)
    self._check(datasets.load("cifar10", self.dir))

  def test_binary_batches_and_npz_give_identical_sources(self):
    bin_dir, npz_dir = (self.make_tmpdir() for _ in range(2))
    _write_cifar_bin(bin_dir, self.arrays)
    np.savez(os.path.join(npz_dir, "cifar10.npz"), **self.arrays)
    a, b = datasets.load("cifar10", bin_dir), datasets.load("cifar10", npz_dir)
    for split in ("train", "test"):
      self.assertAllEqual(getattr(a, split).images, getattr(b, split).images)
      self.assertAllEqual(getattr(a, split).labels, getattr(b, split).labels)
    self.assertAllEqual(a.mean, b.mean)
    self.assertAllEqual(a.std, b.std)

  def test_binary_planes_are_read_as_r_g_b(self):
    arrays = dict(self.arrays, x_train=np.zeros_like(self.arrays["x_train"]))
    arrays["x_train"][..., 0], arrays["x_train"][..., 1], arrays["x_train"][..., 2] = 10, 20, 30
    self.arrays = arrays
    _write_cifar_bin(self.dir, arrays)
    src = datasets.load("cifar10", self.dir)
    self.assertAllEqual(src.train.images[3, 5, 7], [10, 20, 30])
    self.assertAllClose(src.mean, np.float32([10, 20, 30]) / 255.0)
    self.assertAllClose(src.std, [0.0, 0.0, 0.0])

  def test_npz_missing_arrays_is_a_data_error(self):
    arrays = {k: v for k, v in self.arrays.items() if k != "x_test"}
    np.savez(os.path.join(self.dir, "cifar10.npz"), **arrays)
    message = self.assertDataError(r"lacks array 'x_test'", "cifar10", self.dir)
    self.assertIn("expected x_train, y_train, x_test, y_test", message)

  @parameterized.named_parameters(
      ("not_a_zip", lambda data: b"definitely not an npz"),
      ("zip_magic_but_garbage", lambda data: b"PK\x03\x04" + b"\x00" * 64),
      ("truncated_download", lambda data: data[:len(data) // 2]),
      ("empty", lambda data: b""))
  def test_unreadable_npz_is_a_data_error(self, corrupt):
    path = os.path.join(self.dir, "cifar10.npz")
    np.savez(path, **self.arrays)
    with open(path, "rb") as f:
      data = f.read()
    with open(path, "wb") as f:
      f.write(corrupt(data))
    self.assertDataError(r"cifar10.npz is not a readable npz \(", "cifar10", self.dir)

  def test_npz_of_wrong_image_shape_is_a_data_error(self):
    arrays = dict(self.arrays, x_test=self.arrays["x_test"][:, :28, :28])
    np.savez(os.path.join(self.dir, "cifar10.npz"), **arrays)
    self.assertDataError(r"test images have shape \(10, 28, 28, 3\) uint8, expected "
                         r"\[N, 32, 32, 3\] uint8", "cifar10", self.dir)

  def test_npz_of_float_images_is_a_data_error(self):
    arrays = dict(self.arrays, x_train=self.arrays["x_train"].astype(np.float32))
    np.savez(os.path.join(self.dir, "cifar10.npz"), **arrays)
    self.assertDataError(r"train images have shape .* float32", "cifar10", self.dir)

  @parameterized.parameters("", "cifar10")
  def test_pickled_python_batches_are_a_data_error(self, sub):
    os.makedirs(os.path.join(self.dir, sub, "cifar-10-batches-py"))
    with open(os.path.join(self.dir, sub, "cifar-10-batches-py", "data_batch_1"), "wb") as f:
      f.write(b"\x80\x04pickled")
    message = self.assertDataError(r"cifar-10-batches-py holds pickled batches", "cifar10",
                                   self.dir)
    self.assertIn("cifar-10-batches-bin", message)

  def test_binary_batch_of_wrong_size_is_a_data_error(self):
    _write_cifar_bin(self.dir, self.arrays)
    with open(os.path.join(self.dir, "data_batch_3.bin"), "ab") as f:
      f.write(b"\x01\x02")
    self.assertDataError(r"data_batch_3.bin is not a CIFAR-10 binary batch \(size 12294 ",
                         "cifar10", self.dir)


def _no_network(*args, **kwargs):
  raise AssertionError(f"test tried to open a network connection {args[1:]}")


class TfdsTest(_TestCase):
  """The tensorflow-datasets path, offline under tfds.testing.mock_data."""

  def setUp(self):
    super().setUp()
    self.enter_context(mock.patch.object(socket.socket, "connect", _no_network))
    self.enter_context(mock.patch.object(socket, "create_connection", _no_network))

  def _mock_tfds(self, name, num_examples):
    """Writes dataset_info.json with split sizes into a tmp data_dir and mocks tfds on it.

    `tfds.load(batch_size=-1)` batches by `info.splits.total_num_examples`; the metadata-free
    mock (MockPolicy.USE_CODE) has no split sizes and then batches by sys.maxsize, which aborts
    the process. Real split metadata avoids that.
    """
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    data_dir = self.make_tmpdir()
    builder = tfds.builder(name, data_dir=data_dir)
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=s, shard_lengths=[num_examples], num_bytes=0,
                            filename_template=None) for s in ("train", "test")]))
    os.makedirs(builder.data_dir, exist_ok=True)
    builder.info.write_to_directory(builder.data_dir)
    self.enter_context(tfds.testing.mock_data(num_examples=num_examples, data_dir=data_dir))
    return data_dir

  def _expected(self, name, data_dir, split):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    ds = tfds.load(name, split=split, data_dir=data_dir, as_supervised=True)
    pairs = list(tfds.as_numpy(ds))
    return np.stack([x for x, _ in pairs]), np.array([y for _, y in pairs])

  @parameterized.parameters(("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3)))
  def test_tfds_path_loads_offline_under_mock_data(self, name, frame_shape):
    data_dir = self._mock_tfds(name, 100)
    src = datasets.load(name, data_dir)
    self.assertStartsWith(src.origin, "tensorflow-datasets")
    self.assertEqual(src.frame_shape, frame_shape)
    for split in ("train", "test"):
      s = getattr(src, split)
      x, y = self._expected(name, data_dir, split)
      self.assertEqual(s.images.shape, (100,) + frame_shape)
      self.assertEqual(s.images.dtype, np.uint8)
      self.assertAllEqual(s.images, x)
      self.assertEqual(s.labels.dtype, np.int32)
      self.assertAllEqual(s.labels, y)
    if name == "mnist":
      self.assertAllClose(src.mean, [datasets.MNIST_MEAN])
    else:
      x = src.train.images.astype(np.float64) / 255.0
      self.assertAllClose(src.mean, x.mean(axis=(0, 1, 2)), atol=1e-6)
      self.assertAllClose(src.std, x.std(axis=(0, 1, 2)), atol=1e-6)

  @parameterized.parameters("mnist", "cifar10")
  def test_tfds_failure_is_a_one_line_data_error_with_advice(self, name):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    data_dir = self.make_tmpdir()
    load = self.enter_context(mock.patch.object(
        tfds, "load", side_effect=ConnectionError("no route to host\nsecond line")))
    with self.assertRaises(datasets.DataError) as cm:
      datasets.load(name, data_dir)
    message = str(cm.exception)
    self.assertNotIn("\n", message)
    self.assertIn(f"could not load {name}", message)
    self.assertIn(f"--data_dir={data_dir}", message)
    self.assertIn("ConnectionError: no route to host", message)
    self.assertNotIn("second line", message)
    self.assertIn("--dataset=mnist_sample", message)
    self.assertIn("IDX" if name == "mnist" else "cifar-10-batches-bin", message)
    load.assert_called_once()
    self.assertEqual(load.call_args.kwargs["data_dir"], data_dir)
    self.assertEqual(load.call_args.kwargs["batch_size"], -1)

  def test_tfds_failure_without_data_dir_names_the_default_cache(self):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    self.enter_context(mock.patch.object(tfds, "load", side_effect=RuntimeError()))
    with self.assertRaisesRegex(datasets.DataError,
                                r"the default tfds cache and tensorflow-datasets failed "
                                r"\(RuntimeError: RuntimeError\)"):
      datasets.load("mnist")


if __name__ == "__main__":
  tf.test.main()
