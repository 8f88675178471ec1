"""The registered datasets: each loader maps `config.data` to a raw `Dataset`
(inputs float32 on their natural scale, no transforms); `load_dataset`
applies the transforms.

| name          | source                                       | train/test  | input      |
|---------------|----------------------------------------------|-------------|------------|
| mnist1d       | mnist1d generator, default args (TFDS build) | 4000/1000   | (40, 1)    |
| fashion_mnist | IDX files in data.source_dir (TFDS build)    | 60000/10000 | (28, 28, 1)|
| idx           | any folder of MNIST-format IDX files         | as stored   | (H, W, 1)  |
| digits        | scikit-learn's digits (TFDS build)           | 1437/360    | (8, 8, 1)  |
| synthetic     | separable Gaussian clouds (data.synthetic.*) | configured  | (dim,)     |
| soudry2d      | Soudry et al. 2018's 2-D set                 | 16/num_test | (2,)       |
| mnist, cifar10, cifar100, svhn_cropped, tfds:NAME | TFDS catalogue | catalogue | catalogue |

Pixels are scaled to [0, 1] (digits: /16); MNIST-1D keeps the generator's
scale (already standardized over the whole set).
"""

import contextlib
import importlib.util
import shutil
import tempfile
from typing import Callable

import numpy as np

from jaxunknowns.data import synthetic as synthetic_lib
from jaxunknowns.data.core import (DATASETS, STREAM_SYNTHETIC_TEST,
                                   STREAM_SYNTHETIC_TRAIN, Dataset, Split,
                                   seeded_rng)
from jaxunknowns.errors import UserError

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
TFDS_PREFIX = "tfds:"
# Catalogue datasets registered under their own names (others: "tfds:NAME").
CATALOGUE_ALIASES = ("mnist", "cifar10", "cifar100", "svhn_cropped")


def keeps_coordinates(loader: Callable) -> Callable:
  """Marks a dataset whose geometry is the point (data.normalize is ignored)."""
  loader.keeps_coordinates = True
  return loader


def _dataset(name, arrays, num_classes, scale=1.0, class_names=()) -> Dataset:
  splits = {}
  for split, (x, y) in arrays.items():
    # One pass from the stored dtype (uint8 pixels) to a fresh float32 array
    # that the caller owns (the builders' cached arrays are read-only).
    x_float = np.empty(np.shape(x), np.float32)
    np.divide(x, np.float32(scale), out=x_float, dtype=np.float32, casting="unsafe")
    splits[split] = Split(x_float, np.asarray(y, np.int32).copy())
  return Dataset(name=name, num_classes=int(num_classes),
                 input_shape=tuple(splits["train"].x.shape[1:]),
                 train=splits["train"], test=splits["test"],
                 validation=splits.get("validation"),
                 class_names=tuple(class_names))


def _num_classes(builder) -> int:
  return int(builder.info.features["label"].num_classes)


@DATASETS.register("mnist1d")
def mnist1d(cfg) -> Dataset:
  from jaxunknowns.data import builders  # pylint: disable=g-import-not-at-top
  builder, arrays = builders.load_prepared(builders.Mnist1d, cfg.get("data_dir", ""))
  return _dataset("mnist1d", arrays, _num_classes(builder))


def _idx_dataset(name, cfg, dataset_title, class_names=()) -> Dataset:
  from jaxunknowns.data import builders  # pylint: disable=g-import-not-at-top
  from jaxunknowns.config_defaults import FASHION_MNIST_DIR  # pylint: disable=g-import-not-at-top
  source_dir = cfg.get("source_dir", "") or FASHION_MNIST_DIR
  builder, arrays = builders.load_prepared(
      builders.IdxImages, cfg.get("data_dir", ""), source_dir=source_dir,
      dataset=dataset_title)
  return _dataset(name, arrays, _num_classes(builder), scale=255.0,
                  class_names=class_names)


@DATASETS.register("fashion_mnist")
def fashion_mnist(cfg) -> Dataset:
  return _idx_dataset("fashion_mnist", cfg, "Fashion-MNIST", FASHION_MNIST_CLASSES)


@DATASETS.register("idx")
def idx_folder(cfg) -> Dataset:
  return _idx_dataset("idx", cfg, "MNIST-format")


@DATASETS.register("digits")
def digits(cfg) -> Dataset:
  from jaxunknowns.data import builders  # pylint: disable=g-import-not-at-top
  builder, arrays = builders.load_prepared(builders.SklearnDigits, cfg.get("data_dir", ""))
  return _dataset("digits", arrays, _num_classes(builder), scale=16.0)


# The data.synthetic.* fields each generated dataset reads; any other
# dataset reads none (validation.check_choices refuses them moved).
SYNTHETIC_FIELDS = {"synthetic": ("num_train", "num_test", "dim",
                                  "num_classes", "separation"),
                    "soudry2d": ("num_test",)}


# The datasets read from data.source_dir's IDX files.
SOURCE_DIR_DATASETS = ("fashion_mnist", "idx")
# The datasets generated in memory: they read and write nothing in
# data.data_dir (TFDS's folder, where the others are prepared or cached).
GENERATED_DATASETS = ("synthetic", "soudry2d")
# The datasets drawn from data.shuffle_seed (the others' examples are fixed).
SEEDED_DATASETS = ("synthetic", "soudry2d")


def _synthetic_field(cfg, field, default, minimum, kind=int):
  sub = cfg.get("synthetic", None)
  value = sub.get(field, default) if sub is not None else default
  if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
    raise UserError(f"data.synthetic.{field} must be a {kind.__name__}, got {value!r}")
  if value < minimum:
    raise UserError(f"data.synthetic.{field} must be >= {minimum}, got {value}")
  return value


@DATASETS.register("synthetic")
def synthetic(cfg) -> Dataset:
  num_train = _synthetic_field(cfg, "num_train", 1000, 1)
  num_test = _synthetic_field(cfg, "num_test", 1000, 1)
  dim = _synthetic_field(cfg, "dim", 2, 1)
  num_classes = _synthetic_field(cfg, "num_classes", 2, 2)
  separation = float(_synthetic_field(cfg, "separation", 4.0, 0.0, kind=float))
  seed = cfg.get("shuffle_seed", 0)
  train = synthetic_lib.gaussian_clouds(num_train, num_classes, dim, separation,
                                        seeded_rng(seed, STREAM_SYNTHETIC_TRAIN))
  test = synthetic_lib.gaussian_clouds(num_test, num_classes, dim, separation,
                                       seeded_rng(seed, STREAM_SYNTHETIC_TEST))
  return _dataset("synthetic", {"train": train, "test": test}, num_classes)


@DATASETS.register("soudry2d")
@keeps_coordinates
def soudry2d(cfg) -> Dataset:
  num_test = _synthetic_field(cfg, "num_test", 1000, 1)
  seed = cfg.get("shuffle_seed", 0)
  train, test = synthetic_lib.soudry2d(seeded_rng(seed, STREAM_SYNTHETIC_TRAIN),
                                       seeded_rng(seed, STREAM_SYNTHETIC_TEST),
                                       num_test)
  return _dataset("soudry2d", {"train": train, "test": test}, 2)


# ---- TFDS catalogue ----------------------------------------------------------------

def _has_tensorflow() -> bool:
  return importlib.util.find_spec("tensorflow") is not None


def _one_line(e: Exception) -> str:
  text = str(e).strip().splitlines()
  return f"{type(e).__name__}: {text[0] if text else ''}"


def _supervised_keys(info):
  keys = getattr(info, "supervised_keys", None)
  if (isinstance(keys, (tuple, list)) and len(keys) == 2
      and all(isinstance(k, str) for k in keys)):
    return tuple(keys)
  return ("image", "label")


def _from_data_sources(tfds, tfds_name: str, data_dir):
  """train/test arrays via `tfds.data_source` (array_record; no TensorFlow
  needed to read, PIL decodes the images)."""
  from jaxunknowns.data import builders  # pylint: disable=g-import-not-at-top
  out, info = {}, None
  for split, candidates in (("train", ("train",)), ("test", ("test", "validation"))):
    error = None
    for tfds_split in candidates:
      try:
        source = tfds.data_source(tfds_name, split=tfds_split, data_dir=data_dir)
        break
      except ValueError as e:  # Unknown split: try the next candidate.
        error = e
    else:
      raise error
    info = source.dataset_info
    input_key, label_key = _supervised_keys(info)
    out[split] = builders.read_split(source, input_key, label_key)
  return out, int(info.features[_supervised_keys(info)[1]].num_classes)


def _from_tfds_load(tfds, tfds_name: str, data_dir):
  """train/test arrays via `tfds.load(batch_size=-1)` (needs TensorFlow; reads
  datasets prepared in the default tfrecord format too)."""
  builder = tfds.builder(tfds_name, data_dir=data_dir)
  splits = builder.info.splits
  test_split = "test" if (not splits or "test" in splits) else "validation"
  out = {}
  for split, tfds_split in (("train", "train"), ("test", test_split)):
    x, y = tfds.as_numpy(tfds.load(tfds_name, split=tfds_split, data_dir=data_dir,
                                   batch_size=-1, as_supervised=True))
    out[split] = (np.asarray(x), np.asarray(y, np.int32))
  _, label_key = _supervised_keys(builder.info)
  return out, int(builder.info.features[label_key].num_classes)


@contextlib.contextmanager
def _own_temp_folder():
  """TFDS copies a dataset's published metadata into a folder it makes with
  tempfile.mkdtemp (DatasetInfo.initialize_from_bucket) and never removes;
  offline it stays empty: one more folder in the machine's temp dir per
  load. While a catalogue dataset loads, Python's temp dir is a folder of
  ours, removed afterwards with what TFDS left in it. (The main thread
  loads data before any fit; no thread of ours makes temp files then.)"""
  folder = tempfile.mkdtemp(prefix="jaxunknowns_tfds_")
  before, tempfile.tempdir = tempfile.tempdir, folder
  try:
    yield
  finally:
    tempfile.tempdir = before
    shutil.rmtree(folder, ignore_errors=True)


def load_catalogue(tfds_name: str, cfg, name: str = "") -> Dataset:
  """A TFDS catalogue dataset (train and test, else validation, split)."""
  with _own_temp_folder():
    return _load_catalogue(tfds_name, cfg, name)


def _load_catalogue(tfds_name: str, cfg, name: str) -> Dataset:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  data_dir = cfg.get("data_dir", "") or None
  try:
    arrays, num_classes = _from_data_sources(tfds, tfds_name, data_dir)
  except Exception as e:  # pylint: disable=broad-except
    where = f"{tfds_name!r} (data_dir={data_dir or 'TFDS default'})"
    if not _has_tensorflow():
      raise UserError(
          f"could not load TFDS catalogue dataset {where}: {_one_line(e)}; "
          f"downloading and preparing catalogue datasets needs network access "
          f"and TensorFlow, which is not installed: pip install -e .[tfds]") from e
    try:
      arrays, num_classes = _from_tfds_load(tfds, tfds_name, data_dir)
    except Exception as e2:  # pylint: disable=broad-except
      raise UserError(f"could not load TFDS catalogue dataset {where}: "
                      f"{_one_line(e2)} (needs network access on first use)") from e2
  scale = 255.0 if arrays["train"][0].dtype == np.uint8 else 1.0
  return _dataset(name or tfds_name, arrays, num_classes, scale=scale)


def _register_alias(alias: str):
  @DATASETS.register(alias)
  def loader(cfg) -> Dataset:
    return load_catalogue(alias, cfg)
  loader.__name__ = alias
  loader.__doc__ = f"TFDS catalogue dataset {alias!r}."


for _alias in CATALOGUE_ALIASES:
  _register_alias(_alias)


def get_loader(name: str) -> Callable:
  """The loader of `data.name`: a registered name or "tfds:NAME"."""
  if name.startswith(TFDS_PREFIX) and len(name) > len(TFDS_PREFIX):
    tfds_name = name[len(TFDS_PREFIX):]
    return lambda cfg: load_catalogue(tfds_name, cfg, name)
  try:
    return DATASETS.get(name)
  except UserError as e:
    raise UserError(f"{e}, or {TFDS_PREFIX}<any TFDS catalogue name>") from None
