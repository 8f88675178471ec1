"""TFDS builders of the offline datasets: MNIST-1D, IDX folders, sklearn digits.

Each is a `tfds.core.GeneratorBasedBuilder` whose features are plain tensors
(`tfds.features.Tensor` input, `tfds.features.ClassLabel` label), written in
the `array_record` file format: tensorflow-datasets builds and reads those
without TensorFlow. So users get TFDS's on-disk cache, `data_dir`, versioning
and random-access `as_data_source()` for free, and the prepared folders can be
read back without this package:

    tfds.builder_from_directory("<data_dir>/mnist1d/1.0.0").as_data_source()

Layout under data_dir (TFDS's default, ~/tensorflow_datasets, when empty):

    mnist1d/1.0.0/                        4000 train / 1000 test, input (40, 1) float32
    idx_images/<folder>_<hash>/1.0.0/     one config per IDX folder *content*
    sklearn_digits/1.0.0/                 1437 train / 360 test, input (8, 8, 1) uint8

Features: {"input": Tensor, "label": ClassLabel}; supervised_keys
("input", "label"); shuffling is disabled so records keep the source order
(MNIST-1D's and the IDX files' own order). Inputs are stored as the source
has them (uint8 pixels, float32 signals); scaling to float happens on load.

The builders are not entered in TFDS's global registry (`skip_registration`),
so they can never clash with catalogue names such as `fashion_mnist`.
"""

import contextlib
import fcntl
import os
import random
import re
import threading
from typing import Dict, Tuple

import numpy as np
import tensorflow_datasets as tfds
from absl import logging as absl_logging

from jaxunknowns.data import idx
from jaxunknowns.errors import UserError

FILE_FORMAT = "array_record"

Arrays = Dict[str, Tuple[np.ndarray, np.ndarray]]


class ArrayBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A builder whose splits come from numpy arrays computed by `_load_arrays`."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  DESCRIPTION = ""
  HOMEPAGE = ""
  CITATION = ""

  def __init__(self, **kwargs):
    kwargs.setdefault("file_format", FILE_FORMAT)
    super().__init__(**kwargs)

  # TFDS looks for a checksums file beside a builder's source through
  # `code_path`, which for a class inside a package imports
  # `importlib_resources` (an optional etils extra, absent here). These
  # builders download nothing, so they have no source-side files at all.
  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    return None

  # Subclasses define these.
  def _input_spec(self) -> Tuple[Tuple[int, ...], np.dtype]:
    raise NotImplementedError

  def _label_feature(self) -> tfds.features.ClassLabel:
    raise NotImplementedError

  def _load_arrays(self) -> Arrays:
    raise NotImplementedError

  def _metadata(self) -> dict:
    return {}

  def _info(self) -> tfds.core.DatasetInfo:
    shape, dtype = self._input_spec()
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.DESCRIPTION,
        features=tfds.features.FeaturesDict({
            # Raw bytes (one tobytes() string per example) rather than one
            # protobuf number per pixel: 5x faster to write and read.
            "input": tfds.features.Tensor(shape=shape, dtype=dtype,
                                          encoding=tfds.features.Encoding.BYTES),
            "label": self._label_feature(),
        }),
        supervised_keys=("input", "label"),
        homepage=self.HOMEPAGE,
        citation=self.CITATION,
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(self._metadata()),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {split: self._generate_examples(x, y)
            for split, (x, y) in self._load_arrays().items()}

  def _generate_examples(self, x, y):
    for i in range(len(y)):
      yield i, {"input": x[i], "label": int(y[i])}


# ---- MNIST-1D -----------------------------------------------------------------

@contextlib.contextmanager
def _preserved_global_rng():
  """mnist1d seeds numpy's and Python's global generators; undo that."""
  np_state, py_state = np.random.get_state(), random.getstate()
  try:
    yield
  finally:
    np.random.set_state(np_state)
    random.setstate(py_state)


def generate_mnist1d() -> Arrays:
  """MNIST-1D from the `mnist1d` package's generator at its default args
  (5000 samples, 80/20 split, length 40, seed 42); never downloads."""
  from mnist1d.data import get_dataset_args, make_dataset  # pylint: disable=g-import-not-at-top
  with _preserved_global_rng():
    data = make_dataset(get_dataset_args())
  to_x = lambda a: np.asarray(a, np.float32)[..., None]  # [N, 40] -> [N, 40, 1]
  return {"train": (to_x(data["x"]), np.asarray(data["y"], np.int32)),
          "test": (to_x(data["x_test"]), np.asarray(data["y_test"], np.int32))}


def mnist1d_args() -> dict:
  from mnist1d.data import get_dataset_args  # pylint: disable=g-import-not-at-top
  args = get_dataset_args(as_dict=True)
  args.pop("url", None)
  return args


class Mnist1d(ArrayBuilder):
  """MNIST-1D (Greydanus & Kobak), generated procedurally with default args."""

  DESCRIPTION = ("MNIST-1D: 1-D signals of length 40 made from 10 digit "
                 "templates by padding, shear, translation and noise; "
                 "generated by the mnist1d package at its default arguments.")
  HOMEPAGE = "https://github.com/greydanus/mnist1d"
  CITATION = ("@inproceedings{greydanus2024scaling, title={Scaling Down Deep "
              "Learning with {MNIST-1D}}, author={Greydanus, Sam and Kobak, "
              "Dmitry}, booktitle={ICML}, year={2024}}")

  def _input_spec(self):
    return (40, 1), np.float32

  def _label_feature(self):
    return tfds.features.ClassLabel(num_classes=10)

  def _metadata(self):
    # A prepared folder's metadata.json is read back by TFDS, so the args are
    # only needed to build: importing the generator costs every run 1.2 s
    # (it imports scipy.interpolate and matplotlib.pyplot).
    if self.is_prepared():
      return {}
    return {"mnist1d_args": {k: (list(v) if isinstance(v, (list, tuple)) else v)
                             for k, v in mnist1d_args().items()}}

  def _load_arrays(self):
    return generate_mnist1d()


# ---- IDX folders (Fashion-MNIST, MNIST, ...) ------------------------------------

class IdxImages(ArrayBuilder):
  """The four MNIST-format IDX files of a folder, one config per content hash.

  Construct with `IdxImages(source_dir=..., data_dir=...)`; the config name is
  `<folder name>_<hash of the files>`, so a changed folder is rebuilt.
  """

  DESCRIPTION = "Images and labels read from a folder of MNIST-format IDX files."
  HOMEPAGE = "http://yann.lecun.com/exdb/mnist/"

  def __init__(self, *, source_dir: str, dataset: str = "MNIST-format", **kwargs):
    self.source_dir = os.path.abspath(source_dir)
    self._files = idx.find_idx_files(self.source_dir, dataset)
    if "config" not in kwargs:
      slug = re.sub(r"[^A-Za-z0-9]+", "_", os.path.basename(self.source_dir)).strip("_")
      digest = idx.files_digest(self._files.values())[:16]
      kwargs["config"] = tfds.core.BuilderConfig(
          name=f"{slug or 'idx'}_{digest}",
          description=f"IDX files of {self.source_dir}")
    shape = idx.read_idx_header(self._files["train_images"])
    self._image_shape = tuple(shape[1:]) + ((1,) if len(shape) == 3 else ())
    # Labels are small (60 KB for MNIST): read them to size the ClassLabel.
    labels = [idx.read_idx(self._files[f"{s}_labels"]) for s in ("train", "test")]
    self._num_classes = int(max(l.max() for l in labels)) + 1
    super().__init__(**kwargs)

  def _input_spec(self):
    return self._image_shape, np.uint8

  def _label_feature(self):
    return tfds.features.ClassLabel(num_classes=self._num_classes)

  def _metadata(self):
    return {"source_dir": self.source_dir,
            "files": {k: os.path.basename(v) for k, v in self._files.items()}}

  def _load_arrays(self):
    arrays = idx.read_idx_folder(self.source_dir, files=self._files)
    for split, (x, _) in arrays.items():
      if x.dtype != np.uint8:
        raise UserError(f"{self.source_dir}: {split} images are {x.dtype}, "
                        f"expected uint8 pixels")
    return arrays


# ---- sklearn digits -------------------------------------------------------------

DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0


def load_sklearn_digits() -> Arrays:
  """sklearn's 1797 8x8 digits (pixels 0..16 as uint8), split 1437/360 by a
  fixed numpy permutation (seed 0)."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  digits = load_digits()
  x = digits.images.astype(np.uint8)[..., None]
  y = digits.target.astype(np.int32)
  perm = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(y))
  train, test = perm[:-DIGITS_TEST_SIZE], perm[-DIGITS_TEST_SIZE:]
  return {"train": (x[train], y[train]), "test": (x[test], y[test])}


class SklearnDigits(ArrayBuilder):
  """scikit-learn's bundled 8x8 handwritten digits (UCI optdigits test set)."""

  DESCRIPTION = ("scikit-learn's 8x8 digits, pixel values 0..16, split "
                 "1437 train / 360 test by a fixed permutation (seed 0).")
  HOMEPAGE = "https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset"

  def _input_spec(self):
    return (8, 8, 1), np.uint8

  def _label_feature(self):
    return tfds.features.ClassLabel(num_classes=10)

  def _load_arrays(self):
    return load_sklearn_digits()


# ---- Build and read ---------------------------------------------------------------

@contextlib.contextmanager
def _quiet_absl():
  """Hides TFDS's warnings about custom configs and not-yet-built folders."""
  level = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)
  try:
    yield
  finally:
    absl_logging.set_verbosity(level)


def make_builder(builder_cls, data_dir: str = "", **kwargs) -> ArrayBuilder:
  with _quiet_absl():
    return builder_cls(data_dir=data_dir or None, **kwargs)


@contextlib.contextmanager
def _build_lock(builder: ArrayBuilder):
  """An exclusive file lock per dataset folder: two processes starting on a
  fresh data_dir at once (pytest -n 2, a sweep) would otherwise race to
  rename their half-built folders into the same place."""
  root = os.path.dirname(os.path.normpath(builder.data_dir))
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, ".jaxunknowns-build.lock"), "w") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def prepare(builder: ArrayBuilder) -> ArrayBuilder:
  """Builds the dataset into its data_dir unless it is already there."""
  if builder.is_prepared():
    return builder
  logging_name = builder.name
  if builder.builder_config:
    logging_name += f"/{builder.builder_config.name}"
  try:
    with _build_lock(builder):
      if builder.is_prepared():  # Built by another process while we waited.
        return builder
      absl_logging.info("Building %s into %s (first use).", logging_name,
                        builder.data_dir)
      with _quiet_absl():
        builder.download_and_prepare()
  except OSError as e:
    raise UserError(f"could not build dataset {logging_name} into "
                    f"{builder.data_dir}: {e}; set --config.data.data_dir to "
                    f"a writable folder") from e
  return builder


def _all_records(source):
  n = len(source)
  try:
    return source.__getitems__(list(range(n)))  # Batched read of array_record.
  except TypeError:  # Some data sources (e.g. tfds.testing mocks) lack it.
    return [source[i] for i in range(n)]


def read_split(source, input_key, label_key):
  """(x, y) of a TFDS data source through TFDS's own decoder (about 100 us
  per example)."""
  records = _all_records(source)
  x = np.stack([np.asarray(r[input_key]) for r in records])
  y = np.asarray([r[label_key] for r in records], dtype=np.int32)
  return x, y


def _fast_read(source, features, input_key, label_key):
  """A split of an ArrayBuilder, parsing its records directly.

  The layout is fixed by `ArrayBuilder._info` (BYTES-encoded input tensor,
  int64 label), so each record needs one protobuf parse and no per-feature
  Python: about 5x faster than `read_split`, which tests compare it with.
  """
  from tensorflow_datasets.proto import tf_example_pb2  # pylint: disable=g-import-not-at-top
  spec = features[input_key]
  shape, dtype = tuple(spec.shape), np.dtype(spec.np_dtype)
  raw = source.data_source.__getitems__(list(range(len(source))))
  parse = tf_example_pb2.Example.FromString
  chunks, labels = [], np.empty(len(raw), np.int64)
  for i, record in enumerate(raw):
    feature = parse(record).features.feature
    chunks.append(feature[input_key].bytes_list.value[0])
    labels[i] = feature[label_key].int64_list.value[0]
  blob = b"".join(chunks)
  if len(blob) != len(raw) * int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
    raise ValueError("records do not match the input feature's shape")
  x = np.frombuffer(blob, dtype=dtype).reshape((len(raw),) + shape)
  return x, labels.astype(np.int32)


def read_arrays(builder, input_key: str = "input", label_key: str = "label",
                fast: bool = True) -> Arrays:
  """Every split of a prepared builder as numpy arrays, via `as_data_source()`."""
  out = {}
  features = builder.info.features
  for split, source in builder.as_data_source().items():
    result = None
    if fast and isinstance(builder, ArrayBuilder):
      try:
        result = _fast_read(source, features, input_key, label_key)
      except Exception as e:  # pylint: disable=broad-except
        absl_logging.warning("Fast read of %s failed (%s); using TFDS's decoder.",
                             builder.name, e)
    out[str(split)] = result or read_split(source, input_key, label_key)
  return out


# A few decoded datasets kept per process: loading one again (a sweep in one
# process, tests) then costs nothing. Arrays are read-only; transforms copy.
_CACHE: Dict[tuple, Tuple[ArrayBuilder, Arrays]] = {}
_CACHE_SIZE = 4
_CACHE_LOCK = threading.Lock()


def load_prepared(builder_cls, data_dir: str = "", **kwargs) -> Tuple[ArrayBuilder, Arrays]:
  """Builds (first use) and reads one of the builders above: (builder, arrays)."""
  builder = make_builder(builder_cls, data_dir, **kwargs)
  key = (builder_cls.__name__,
         builder.builder_config.name if builder.builder_config else "",
         os.path.abspath(str(builder.data_dir)))
  with _CACHE_LOCK:
    if key in _CACHE and builder.is_prepared():
      return _CACHE[key]
  arrays = read_arrays(prepare(builder))
  for x, y in arrays.values():
    x.flags.writeable = False
    y.flags.writeable = False
  with _CACHE_LOCK:
    _CACHE[key] = (builder, arrays)
    while len(_CACHE) > _CACHE_SIZE:
      _CACHE.pop(next(iter(_CACHE)))
  return builder, arrays


def clear_cache():
  with _CACHE_LOCK:
    _CACHE.clear()
