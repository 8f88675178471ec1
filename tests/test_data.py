"""Tests of the data layer: every dataset's pipeline, the TFDS builders'
round trip, IDX reading, the randomization transforms and augmentation."""

import os
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxunknowns.config_defaults import FASHION_MNIST_DIR, base_config
from jaxunknowns.data import DATASETS, Dataset, Split, load_dataset, transforms
from jaxunknowns.data import augment, builders, core, datasets, idx, synthetic
from jaxunknowns.errors import UserError

tfds.disable_progress_bar()


def data_config(name, data_dir, **overrides):
  cfg = base_config().data
  cfg.name = name
  cfg.data_dir = str(data_dir)
  for key, value in overrides.items():
    if key.startswith("synthetic."):
      cfg.synthetic[key.split(".", 1)[1]] = value
    else:
      cfg[key] = value
  return cfg


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """One TFDS data_dir for the module, so MNIST-1D is built only once."""
  return tmp_path_factory.mktemp("tfds")


def rows(x):
  """Each example as bytes, to compare sets of examples."""
  x = np.ascontiguousarray(x)
  return [r.tobytes() for r in x.reshape(len(x), -1)]


# ---- Registry and config checks ----------------------------------------------------

def test_registry_names():
  for name in ("mnist1d", "fashion_mnist", "idx", "digits", "synthetic", "soudry2d",
               "mnist", "cifar10", "cifar100", "svhn_cropped"):
    assert name in DATASETS


@pytest.mark.parametrize("field,value,words", [
    ("name", "imagenet21k", ["unknown dataset 'imagenet21k'", "mnist1d", "tfds:"]),
    ("randomization", "bogus", ["data.randomization", "random_pixels", "gaussian"]),
    ("label_noise", 1.5, ["data.label_noise", "[0, 1]"]),
    ("label_noise", -0.1, ["data.label_noise", "[0, 1]"]),
    ("augment", "mixup", ["data.augment", "crop_flip"]),
    ("shuffle_seed", -1, ["data.shuffle_seed"]),
    ("validation_size", -5, ["data.validation_size"]),
])
def test_bad_values_raise_user_error(tmp_path, field, value, words):
  cfg = data_config("mnist1d", tmp_path)
  cfg[field] = value
  with pytest.raises(UserError) as e:
    load_dataset(cfg)
  for word in words:
    assert word in str(e.value)
  assert not any(tmp_path.iterdir()), "bad config values must fail before building"


def test_range_errors_name_field_and_range(data_dir):
  with pytest.raises(UserError, match=r"data\.validation_size must be in \[0, 3999\]"):
    load_dataset(data_config("mnist1d", data_dir, validation_size=4000))
  with pytest.raises(UserError, match=r"data\.train_size must be in \[0, 3500\]"):
    load_dataset(data_config("mnist1d", data_dir, validation_size=500, train_size=3501))
  with pytest.raises(UserError, match="needs image inputs"):
    load_dataset(data_config("mnist1d", data_dir, augment="crop_flip"))
  with pytest.raises(UserError, match=r"data\.synthetic\.num_classes must be >= 2"):
    load_dataset(data_config("synthetic", data_dir, **{"synthetic.num_classes": 1}))
  with pytest.raises(UserError, match="dim >= 2"):
    load_dataset(data_config("synthetic", data_dir, **{"synthetic.num_classes": 3,
                                                       "synthetic.dim": 1}))


# ---- MNIST-1D ------------------------------------------------------------------------

def test_mnist1d_pipeline(data_dir):
  ds = load_dataset(data_config("mnist1d", data_dir))
  assert isinstance(ds, Dataset) and ds.name == "mnist1d"
  assert ds.num_classes == 10 and ds.input_shape == (40, 1)
  assert ds.train.x.shape == (4000, 40, 1) and ds.test.x.shape == (1000, 40, 1)
  assert ds.train.x.dtype == np.float32 and ds.train.y.dtype == np.int32
  assert ds.validation is None and ds.augment == "none"
  assert set(np.unique(ds.train.y)) == set(range(10))
  assert set(np.unique(ds.test.y)) <= set(range(10))
  # One global mean/std (the single channel), as the published baselines use.
  assert ds.mean.shape == (1, 1) and ds.std.shape == (1, 1)
  assert abs(ds.train.x.mean()) < 1e-5 and abs(ds.train.x.std() - 1) < 1e-4
  # Per-position statistics are *not* flattened (the signal has structure).
  assert ds.train.x.std(axis=0).min() < 0.8
  # The generator's own output: same labels as mnist1d.make_dataset at its
  # default args (first ten train labels) and already nearly standardized.
  np.testing.assert_array_equal(ds.train.y[:10], [2, 6, 4, 5, 6, 6, 6, 0, 3, 1])
  raw = load_dataset(data_config("mnist1d", data_dir, normalize=False))
  assert abs(raw.train.x.mean()) < 0.01 and abs(raw.train.x.std() - 1) < 0.01
  np.testing.assert_allclose(ds.train.x, (raw.train.x - ds.mean) / ds.std, atol=1e-5)
  np.testing.assert_allclose(ds.test.x, (raw.test.x - ds.mean) / ds.std, atol=1e-5)


def test_mnist1d_deterministic_across_calls_and_from_disk(data_dir):
  first = load_dataset(data_config("mnist1d", data_dir))
  builders.clear_cache()  # Read back from the TFDS files, not the process cache.
  second = load_dataset(data_config("mnist1d", data_dir))
  np.testing.assert_array_equal(first.train.x, second.train.x)
  np.testing.assert_array_equal(first.test.y, second.test.y)
  second.train.x[0] = 123.0  # Callers own their arrays: the cache is unaffected.
  third = load_dataset(data_config("mnist1d", data_dir))
  np.testing.assert_array_equal(first.train.x, third.train.x)


# ---- TFDS builders ---------------------------------------------------------------------

def test_builder_round_trip(tmp_path):
  """Build into a fresh data_dir, read back via as_data_source: same arrays."""
  expected = builders.load_sklearn_digits()
  builder = builders.make_builder(builders.SklearnDigits, str(tmp_path))
  assert not builder.is_prepared()
  builders.prepare(builder)
  version_dir = tmp_path / "sklearn_digits" / "1.0.0"
  files = sorted(p.name for p in version_dir.iterdir())
  assert "sklearn_digits-train.array_record-00000-of-00001" in files
  assert "sklearn_digits-test.array_record-00000-of-00001" in files
  assert "dataset_info.json" in files

  again = builders.make_builder(builders.SklearnDigits, str(tmp_path))
  assert again.is_prepared()
  assert again.info.splits["train"].num_examples == 1437
  assert again.info.splits["test"].num_examples == 360
  assert again.info.features["label"].num_classes == 10
  for fast in (True, False):  # Our record parser and TFDS's own decoder.
    arrays = builders.read_arrays(again, fast=fast)
    for split in ("train", "test"):
      np.testing.assert_array_equal(arrays[split][0], expected[split][0])
      np.testing.assert_array_equal(arrays[split][1], expected[split][1])
      assert arrays[split][0].dtype == np.uint8 and arrays[split][1].dtype == np.int32


def test_mnist1d_builder_matches_generator(data_dir):
  load_dataset(data_config("mnist1d", data_dir))  # Builds on first use.
  state = np.random.get_state()[1].copy()
  expected = builders.generate_mnist1d()
  np.testing.assert_array_equal(np.random.get_state()[1], state)  # Global RNG untouched.
  builder = builders.make_builder(builders.Mnist1d, str(data_dir))
  assert builder.is_prepared() and builder.info.splits["train"].num_examples == 4000
  # A prepared folder keeps the generator's args; reading it back in a fresh
  # process does not import the generator (scipy and matplotlib: 1.2 s).
  probe = ("import sys; from jaxunknowns.data import builders; "
           f"b = builders.make_builder(builders.Mnist1d, {str(data_dir)!r}); "
           "print(b.info.metadata['mnist1d_args']['num_samples'], "
           "'mnist1d' in sys.modules, 'matplotlib' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", probe], capture_output=True,
                       text=True, check=True).stdout.split()
  assert out == ["5000", "False", "False"], out
  for fast in (True, False):
    arrays = builders.read_arrays(builder, fast=fast)
    for split in ("train", "test"):
      np.testing.assert_array_equal(arrays[split][0], expected[split][0])
      np.testing.assert_array_equal(arrays[split][1], expected[split][1])
      assert arrays[split][0].dtype == np.float32
  # The prepared folder is plain TFDS: readable without this package's classes.
  version_dir = data_dir / "mnist1d" / "1.0.0"
  plain = tfds.builder_from_directory(str(version_dir)).as_data_source()
  record = plain["test"][7]
  np.testing.assert_array_equal(record["input"], expected["test"][0][7])
  assert record["label"] == expected["test"][1][7]


def test_digits_pipeline(data_dir):
  ds = load_dataset(data_config("digits", data_dir, normalize=False))
  assert ds.input_shape == (8, 8, 1) and ds.num_classes == 10
  assert ds.train.x.shape == (1437, 8, 8, 1) and ds.test.x.shape == (360, 8, 8, 1)
  assert ds.train.x.dtype == np.float32 and ds.test.y.dtype == np.int32
  assert ds.train.x.min() == 0.0 and ds.train.x.max() == 1.0  # Pixels 0..16 / 16.
  assert set(np.unique(ds.train.y)) == set(range(10))
  expected = builders.load_sklearn_digits()
  np.testing.assert_array_equal(ds.test.y, expected["test"][1])
  assert len(set(rows(ds.train.x)) & set(rows(ds.test.x))) < 10  # Few duplicate images.

  norm = load_dataset(data_config("digits", data_dir))
  assert norm.mean.shape == (1, 1, 1)  # Per channel (one channel).
  np.testing.assert_allclose(norm.mean.ravel(), [ds.train.x.mean()], rtol=1e-5)
  assert abs(norm.train.x.mean()) < 1e-5 and abs(norm.train.x.std() - 1) < 1e-4


# ---- IDX folders ------------------------------------------------------------------------

def write_idx_folder(folder, n_train=30, n_test=12, shape=(5, 4), classes=3, gz=True,
                     dotted=False, seed=0):
  rng = np.random.default_rng(seed)
  folder.mkdir(parents=True, exist_ok=True)
  data = {
      "train_images": rng.integers(0, 256, (n_train,) + shape, dtype=np.uint8),
      "train_labels": (np.arange(n_train) % classes).astype(np.uint8),
      "test_images": rng.integers(0, 256, (n_test,) + shape, dtype=np.uint8),
      "test_labels": (np.arange(n_test) % classes).astype(np.uint8),
  }
  for role, stem in idx.IDX_FILES.items():
    name = stem.replace("-idx", ".idx") if dotted else stem
    idx.write_idx(str(folder / (name + (".gz" if gz else ""))), data[role])
  return data


@pytest.mark.parametrize("gz,dotted", [(True, False), (False, False), (False, True)])
def test_idx_reader(tmp_path, gz, dotted):
  data = write_idx_folder(tmp_path / "src", gz=gz, dotted=dotted)
  arrays = idx.read_idx_folder(str(tmp_path / "src"))
  np.testing.assert_array_equal(arrays["train"][0], data["train_images"][..., None])
  np.testing.assert_array_equal(arrays["test"][1], data["test_labels"])
  assert arrays["train"][0].dtype == np.uint8 and arrays["train"][1].dtype == np.int32
  # Other IDX dtypes round-trip too (big-endian on disk).
  for array in (np.arange(6, dtype=np.int32).reshape(2, 3) - 3,
                np.linspace(-1, 1, 8).astype(np.float32), np.arange(4, dtype=np.float64)):
    path = str(tmp_path / "a.idx.gz")
    idx.write_idx(path, array)
    np.testing.assert_array_equal(idx.read_idx(path), array)


def test_idx_reader_rejects_bad_files(tmp_path):
  (tmp_path / "junk").write_bytes(b"\x01\x02\x03\x04hello")
  with pytest.raises(UserError, match="not an IDX file"):
    idx.read_idx(str(tmp_path / "junk"))
  idx.write_idx(str(tmp_path / "cut"), np.zeros((10, 4, 4), np.uint8))
  (tmp_path / "cut").write_bytes((tmp_path / "cut").read_bytes()[:-5])
  with pytest.raises(UserError, match="truncated"):
    idx.read_idx(str(tmp_path / "cut"))
  # A damaged gzip stream: cut short, or its bytes changed (zlib's
  # EOFError and zlib.error were tracebacks), and a header cut short.
  rng = np.random.default_rng(0)
  idx.write_idx(str(tmp_path / "a.gz"), rng.integers(0, 256, (500, 28, 28),
                                                     dtype=np.uint8))
  whole = (tmp_path / "a.gz").read_bytes()
  flipped = bytearray(whole)
  for i in range(100, len(whole) - 8, 997):
    flipped[i] ^= 0xFF
  for name, data in (("short.gz", whole[:len(whole) // 2]),
                     ("flipped.gz", bytes(flipped)),
                     ("head", bytes([0, 0, 8, 3, 0, 0]))):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(UserError, match="truncated or corrupt"):
      idx.read_idx(str(tmp_path / name))
  with pytest.raises(UserError, match="truncated or corrupt"):
    idx.read_idx_header(str(tmp_path / "head"))


def test_idx_dataset_pipeline_and_content_cache(tmp_path):
  src = tmp_path / "my_mnist"
  data = write_idx_folder(src)
  cfg = data_config("idx", tmp_path / "tfds", source_dir=str(src), normalize=False)
  ds = load_dataset(cfg)
  assert ds.name == "idx" and ds.num_classes == 3 and ds.input_shape == (5, 4, 1)
  assert ds.train.x.shape == (30, 5, 4, 1) and ds.test.x.shape == (12, 5, 4, 1)
  np.testing.assert_allclose(ds.train.x[..., 0], data["train_images"] / 255.0, atol=1e-7)
  np.testing.assert_array_equal(ds.train.y, data["train_labels"])
  configs = os.listdir(tmp_path / "tfds" / "idx_images")
  assert len(configs) == 1 and configs[0].startswith("my_mnist_")

  # New file contents -> a new build (config named by the content hash).
  data2 = write_idx_folder(src, seed=1)
  ds2 = load_dataset(cfg)
  np.testing.assert_allclose(ds2.train.x[..., 0], data2["train_images"] / 255.0, atol=1e-7)
  assert len(os.listdir(tmp_path / "tfds" / "idx_images")) == 2

  norm = load_dataset(data_config("idx", tmp_path / "tfds", source_dir=str(src)))
  assert abs(norm.train.x.mean()) < 1e-5 and abs(norm.train.x.std() - 1) < 1e-4


@pytest.mark.parametrize("name", ["fashion_mnist", "idx"])
def test_missing_idx_files_user_error(tmp_path, name):
  empty = tmp_path / "nothing_here"
  empty.mkdir()
  cfg = data_config(name, tmp_path / "tfds", source_dir=str(empty))
  with pytest.raises(UserError) as e:
    load_dataset(cfg)
  message = str(e.value)
  assert "\n" not in message
  for word in (str(empty), "dataset-fashion-mnist",
               "apt-get install -y dataset-fashion-mnist", "--config.data.source_dir",
               "train-images-idx3-ubyte"):
    assert word in message
  assert not (tmp_path / "tfds").exists()


def _real_fashion_mnist_or_skip():
  if not os.path.exists(os.path.join(FASHION_MNIST_DIR, "train-labels-idx1-ubyte.gz")):
    if os.environ.get("CI") == "true":
      pytest.fail(f"CI must have Debian's dataset-fashion-mnist in {FASHION_MNIST_DIR}")
    pytest.skip(f"{FASHION_MNIST_DIR} absent (apt-get install -y dataset-fashion-mnist)")


def test_real_fashion_mnist_files():
  _real_fashion_mnist_or_skip()
  arrays = idx.read_idx_folder(FASHION_MNIST_DIR)
  assert arrays["train"][0].shape == (60000, 28, 28, 1)
  assert arrays["test"][0].shape == (10000, 28, 28, 1)
  np.testing.assert_array_equal(np.bincount(arrays["train"][1]), [6000] * 10)
  np.testing.assert_array_equal(np.bincount(arrays["test"][1]), [1000] * 10)


def test_real_fashion_mnist_pipeline(data_dir):
  _real_fashion_mnist_or_skip()
  ds = load_dataset(data_config("fashion_mnist", data_dir, validation_size=5000))
  assert ds.input_shape == (28, 28, 1) and ds.num_classes == 10
  assert ds.train.x.shape == (55000, 28, 28, 1) and ds.validation.x.shape == (5000, 28, 28, 1)
  assert ds.test.x.shape == (10000, 28, 28, 1) and ds.train.x.dtype == np.float32
  assert ds.class_names[0] == "T-shirt/top" and ds.augment == "none"
  # Fashion-MNIST's well-known pixel statistics (on [0, 1] scale).
  assert abs(float(ds.mean.ravel()[0]) - 0.2860) < 2e-3
  assert abs(float(ds.std.ravel()[0]) - 0.3530) < 2e-3
  assert abs(ds.train.x.mean()) < 1e-4 and abs(ds.train.x.std() - 1) < 1e-3


# ---- Synthetic ---------------------------------------------------------------------------

def test_synthetic_clouds(data_dir):
  cfg = data_config("synthetic", data_dir, normalize=False, shuffle_seed=3,
                    **{"synthetic.num_train": 301, "synthetic.num_test": 150,
                       "synthetic.dim": 5, "synthetic.num_classes": 3,
                       "synthetic.separation": 3.0})
  ds = load_dataset(cfg)
  assert ds.input_shape == (5,) and ds.num_classes == 3
  assert ds.train.x.shape == (301, 5) and ds.test.x.shape == (150, 5)
  assert ds.train.x.dtype == np.float32 and ds.train.y.dtype == np.int32
  np.testing.assert_array_equal(np.bincount(ds.train.y), [101, 100, 100])
  means = synthetic.cloud_means(3, 5, 3.0)
  for split in (ds.train, ds.test):  # Linearly separable by the class means.
    np.testing.assert_array_equal(np.argmax(split.x @ means.T, axis=1), split.y)
  again = load_dataset(cfg)
  np.testing.assert_array_equal(again.train.x, ds.train.x)
  cfg.shuffle_seed = 4
  assert not np.array_equal(load_dataset(cfg).train.x, ds.train.x)
  # Many classes in 2-D (means on a circle) stay separable.
  x, y = synthetic.gaussian_clouds(500, 8, 2, 6.0, np.random.default_rng(0))
  np.testing.assert_array_equal(np.argmax(x @ synthetic.cloud_means(8, 2, 6.0).T, 1), y)
  norm = load_dataset(data_config("synthetic", data_dir, **{"synthetic.dim": 4}))
  assert norm.mean.shape == (4,)  # Per feature.
  np.testing.assert_allclose(norm.train.x.mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(norm.train.x.std(0), 1, atol=1e-4)


def test_soudry2d(data_dir):
  ds = load_dataset(data_config("soudry2d", data_dir, **{"synthetic.num_test": 400}))
  assert ds.input_shape == (2,) and ds.num_classes == 2 and ds.mean is None  # Not normalized.
  x, y = ds.train
  assert x.shape == (16, 2) and ds.test.x.shape == (400, 2)
  assert set(np.unique(y)) == {0, 1} and np.bincount(y).tolist() == [8, 8]
  np.testing.assert_array_equal(x[:4], [[0.5, 1.5], [1.5, 0.5], [-0.5, -1.5], [-1.5, -0.5]])
  np.testing.assert_array_equal(y[:4], [1, 1, 0, 0])
  # w = (0.5, 0.5) separates with functional margin >= 1, tight only at the
  # support vectors: it is the hard-margin SVM solution (through the origin).
  signed = (2 * y - 1) * (x @ synthetic.SOUDRY_MAX_MARGIN)
  np.testing.assert_allclose(signed[:4], 1.0)
  assert signed[4:].min() >= 1.0 + synthetic.SOUDRY_GAP / 2 - 1e-6
  test_signed = (2 * ds.test.y - 1) * (ds.test.x @ synthetic.SOUDRY_MAX_MARGIN)
  assert (test_signed < 1).any() and (test_signed > 1).mean() > 0.5  # Some inside the margin.
  other = load_dataset(data_config("soudry2d", data_dir, shuffle_seed=1))
  assert not np.array_equal(other.train.x[4:], x[4:])


# ---- TFDS catalogue --------------------------------------------------------------------

@pytest.mark.parametrize("name,shape,classes,augment_mode", [
    ("cifar10", (32, 32, 3), 10, "crop_flip"),
    ("mnist", (28, 28, 1), 10, "none"),
    ("cifar100", (32, 32, 3), 100, "crop_flip"),
    ("svhn_cropped", (32, 32, 3), 10, "crop_flip"),
    ("tfds:fashion_mnist", (28, 28, 1), 10, "none"),
])
def test_catalogue_with_mock_data(tmp_path, name, shape, classes, augment_mode,
                                  monkeypatch):
  temp = tmp_path / "temp"  # the process's temp dir (TMPDIR) for this test
  temp.mkdir()
  monkeypatch.setattr(tempfile, "tempdir", str(temp))
  with tfds.testing.mock_data(num_examples=20):
    ds = load_dataset(data_config(name, tmp_path, validation_size=4))
  # TFDS's metadata folder (tmp*tfds, empty offline) was left behind there
  # by every load; the load now removes it.
  assert not list(temp.iterdir())
  assert ds.name == name and ds.input_shape == shape and ds.num_classes == classes
  assert ds.augment == augment_mode
  assert ds.train.x.shape == (16,) + shape and ds.validation.x.shape == (4,) + shape
  assert ds.test.x.shape == (20,) + shape
  assert ds.train.x.dtype == np.float32 and ds.train.y.dtype == np.int32
  assert ds.train.y.min() >= 0 and ds.train.y.max() < classes
  channels = shape[-1]
  assert ds.mean.shape == (1, 1, channels)
  np.testing.assert_allclose(ds.train.x.mean(axis=(0, 1, 2)), 0, atol=1e-4)
  np.testing.assert_allclose(ds.train.x.std(axis=(0, 1, 2)), 1, atol=1e-3)
  raw = tfds.testing.mock_data(num_examples=20)
  with raw:
    plain = load_dataset(data_config(name, tmp_path, normalize=False))
  assert 0.0 <= plain.train.x.min() and plain.train.x.max() <= 1.0  # uint8 / 255.


def test_catalogue_failure_messages(tmp_path, monkeypatch):
  def no_data(*args, **kwargs):
    raise ConnectionError("no network\nsecond line")
  monkeypatch.setattr(tfds, "data_source", no_data)
  monkeypatch.setattr(datasets, "_has_tensorflow", lambda: False)
  with pytest.raises(UserError) as e:
    load_dataset(data_config("tfds:mnist", tmp_path))
  message = str(e.value)
  assert "\n" not in message and "'mnist'" in message
  assert "pip install -e .[tfds]" in message and "ConnectionError: no network" in message

  monkeypatch.setattr(datasets, "_has_tensorflow", lambda: True)
  monkeypatch.setattr(tfds, "builder", no_data)
  with pytest.raises(UserError, match="needs network access"):
    load_dataset(data_config("cifar10", tmp_path))


# ---- Transforms (pure numpy) -----------------------------------------------------------

def test_label_noise_fraction():
  y = np.random.default_rng(0).integers(0, 10, 100_000).astype(np.int32)
  for p in (0.0, 0.2, 0.5, 1.0):
    noisy = transforms.label_noise(y, p, 10, seed=1)
    assert noisy.dtype == np.int32 and noisy.min() >= 0 and noisy.max() <= 9
    assert abs(transforms.corrupted_fraction(y, noisy) - p * 0.9) < 0.01
  np.testing.assert_array_equal(transforms.label_noise(y, 0.3, 10, 5),
                                transforms.label_noise(y, 0.3, 10, 5))
  binary = transforms.random_labels(np.zeros(50_000, np.int32), 2, seed=0)
  assert abs(binary.mean() - 0.5) < 0.01
  with pytest.raises(ValueError):
    transforms.label_noise(y, 1.2, 10, 0)


def test_label_noise_pipeline(data_dir):
  clean = load_dataset(data_config("mnist1d", data_dir, validation_size=400))
  noisy = load_dataset(data_config("mnist1d", data_dir, validation_size=400,
                                   label_noise=0.3))
  assert abs(transforms.corrupted_fraction(clean.train.y, noisy.train.y) - 0.27) < 0.03
  np.testing.assert_array_equal(clean.train.x, noisy.train.x)
  np.testing.assert_array_equal(clean.test.y, noisy.test.y)              # Test stays clean,
  np.testing.assert_array_equal(clean.validation.y, noisy.validation.y)  # validation too.
  full = load_dataset(data_config("mnist1d", data_dir, randomization="random_labels"))
  assert abs(transforms.corrupted_fraction(load_dataset(
      data_config("mnist1d", data_dir)).train.y, full.train.y) - 0.9) < 0.03
  reseeded = load_dataset(data_config("mnist1d", data_dir, validation_size=400,
                                      label_noise=0.3, shuffle_seed=1))
  assert not np.array_equal(reseeded.train.y, noisy.train.y)


def _recover_permutations(original, shuffled):
  """Per example, the permutation p with shuffled = original[p] (unique values)."""
  perms = []
  for a, b in zip(original.reshape(len(original), -1), shuffled.reshape(len(shuffled), -1)):
    order = np.argsort(a)
    perms.append(order[np.searchsorted(a[order], b)])
  return np.stack(perms)


@pytest.mark.parametrize("kind", ["shuffled_pixels", "random_pixels"])
def test_pixel_permutations_pipeline(data_dir, kind):
  kwargs = dict(normalize=False, **{"synthetic.dim": 30, "synthetic.num_train": 200,
                                   "synthetic.num_test": 100})
  clean = load_dataset(data_config("synthetic", data_dir, validation_size=50, **kwargs))
  ds = load_dataset(data_config("synthetic", data_dir, validation_size=50,
                                randomization=kind, **kwargs))
  perms = []
  for name in ("train", "validation", "test"):
    before, after = getattr(clean, name), getattr(ds, name)
    np.testing.assert_array_equal(np.sort(before.x, axis=1), np.sort(after.x, axis=1))
    np.testing.assert_array_equal(before.y, after.y)
    p = _recover_permutations(before.x, after.x)
    np.testing.assert_array_equal(np.take_along_axis(before.x, p, 1), after.x)
    perms.append(p)
  perms = np.concatenate(perms)
  assert not (perms == np.arange(30)).all(axis=1).any()  # No example left in order.
  distinct = len({tuple(p) for p in perms})
  if kind == "shuffled_pixels":
    assert distinct == 1   # One fixed permutation for train, validation and test.
  else:
    assert distinct == len(perms)  # A different one per example.


def test_pixel_permutations_keep_channels_together():
  rng = np.random.default_rng(0)
  x = rng.random((6, 4, 5, 3)).astype(np.float32)
  perm = transforms.pixel_permutation(x.shape[1:], seed=0)
  assert sorted(perm) == list(range(20))
  for out in (transforms.shuffled_pixels(x, perm), transforms.random_pixels(x, seed=0)):
    assert out.shape == x.shape and out.dtype == x.dtype
    for a, b in zip(x, out):  # The same RGB triples, moved.
      assert sorted(map(tuple, a.reshape(-1, 3))) == sorted(map(tuple, b.reshape(-1, 3)))
  shuffled = transforms.shuffled_pixels(x, perm)
  np.testing.assert_array_equal(shuffled.reshape(6, 20, 3), x.reshape(6, 20, 3)[:, perm])
  with pytest.raises(ValueError):
    transforms.shuffled_pixels(x, np.arange(7))
  # Chunking does not change the result.
  big = rng.random((50, 10)).astype(np.float32)
  np.testing.assert_array_equal(transforms.random_pixels(big, 3, chunk=7),
                                transforms.random_pixels(big, 3, chunk=4096))


def test_gaussian_inputs_pipeline(data_dir):
  clean = load_dataset(data_config("digits", data_dir, normalize=False))
  ds = load_dataset(data_config("digits", data_dir, normalize=False, randomization="gaussian"))
  mean, std = transforms.input_moments(clean.train.x)
  assert mean.shape == (1, 1, 1)  # Per channel: one global mean for grayscale digits.
  got_mean, got_std = transforms.input_moments(ds.train.x)
  np.testing.assert_allclose(got_mean, mean, rtol=0.02)
  np.testing.assert_allclose(got_std, std, rtol=0.02)
  assert ds.train.x.shape == clean.train.x.shape and ds.train.x.dtype == np.float32
  np.testing.assert_array_equal(ds.train.y, clean.train.y)
  assert not np.allclose(ds.test.x, clean.test.x)  # Test inputs replaced too.
  np.testing.assert_allclose(ds.test.x.mean(), mean.ravel()[0], rtol=0.05)
  # Flat inputs: per-feature moments.
  cfg = dict(normalize=False, **{"synthetic.dim": 3, "synthetic.num_train": 20_000})
  flat = load_dataset(data_config("synthetic", data_dir, **cfg))
  noise = load_dataset(data_config("synthetic", data_dir, randomization="gaussian", **cfg))
  m0, s0 = transforms.input_moments(flat.train.x)
  m1, s1 = transforms.input_moments(noise.train.x)
  assert m0.shape == (3,)
  np.testing.assert_allclose(m1, m0, atol=0.05)
  np.testing.assert_allclose(s1, s0, rtol=0.03)


def test_gaussian_inputs_are_drawn_afresh_for_every_split(data_dir):
  # Each split has its own noise stream: with one stream for all, the test
  # (and validation) inputs would be copies of the first training inputs,
  # and a network that memorized them would "generalize" on noise.
  ds = load_dataset(data_config("digits", data_dir, normalize=False,
                                validation_size=100, randomization="gaussian"))
  train = set(rows(ds.train.x))
  for split in (ds.validation, ds.test):
    assert not train & set(rows(split.x))
  assert not set(rows(ds.validation.x)) & set(rows(ds.test.x))


def test_holdout_indices_partition_in_increasing_order():
  keep, held = transforms.holdout_indices(50, 12, seed=3)
  assert len(held) == 12 and len(keep) == 38
  np.testing.assert_array_equal(np.sort(np.concatenate([keep, held])),
                                np.arange(50))
  # Increasing: the kept examples stay in their original order, so
  # train_size's "first n" are the first n of the original set's order.
  assert (np.diff(keep) > 0).all() and (np.diff(held) > 0).all()
  other, _ = transforms.holdout_indices(50, 12, seed=4)
  assert not np.array_equal(keep, other)


def test_standardize_leaves_constant_features_at_zero():
  # A constant feature (a bias column, or a feature that a small training
  # subset never varies) has std 0: it must become 0, not NaN everywhere.
  rng = np.random.default_rng(0)
  x = np.concatenate([rng.normal(3.0, 2.0, (500, 2)),
                      np.full((500, 1), 7.0)], axis=1).astype(np.float32)
  mean, std = transforms.input_moments(x)
  np.testing.assert_allclose(mean, x.astype(np.float64).mean(0), rtol=1e-6)
  np.testing.assert_allclose(std, x.astype(np.float64).std(0), rtol=1e-5)
  out = transforms.standardize(x, mean, std)
  assert np.isfinite(out).all() and (out[:, 2] == 0).all()
  np.testing.assert_allclose(out[:, :2].mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(out[:, :2].std(0), 1, rtol=1e-5)


def test_validation_and_train_size(data_dir):
  full = load_dataset(data_config("mnist1d", data_dir, normalize=False))
  ds = load_dataset(data_config("mnist1d", data_dir, normalize=False, validation_size=500))
  assert ds.train.num_examples == 3500 and ds.validation.num_examples == 500
  assert ds.test.num_examples == 1000
  train_rows, val_rows = rows(ds.train.x), rows(ds.validation.x)
  assert not set(train_rows) & set(val_rows)
  assert sorted(train_rows + val_rows) == sorted(rows(full.train.x))
  # The kept training examples stay in their original order.
  keep, held = transforms.holdout_indices(4000, 500, core.seeded_rng(0, core.STREAM_VALIDATION))
  np.testing.assert_array_equal(ds.train.y, full.train.y[keep])
  np.testing.assert_array_equal(ds.validation.x, full.train.x[held])
  other = load_dataset(data_config("mnist1d", data_dir, normalize=False, validation_size=500,
                                   shuffle_seed=7))
  assert set(rows(other.validation.x)) != set(val_rows)
  # train_size keeps the first n of the remaining training examples.
  small = load_dataset(data_config("mnist1d", data_dir, normalize=False, validation_size=500,
                                   train_size=1000))
  np.testing.assert_array_equal(small.train.x, ds.train.x[:1000])
  np.testing.assert_array_equal(small.validation.x, ds.validation.x)
  first = load_dataset(data_config("mnist1d", data_dir, train_size=100, normalize=False))
  np.testing.assert_array_equal(first.train.y, full.train.y[:100])
  # Normalization uses the final training split's statistics.
  norm = load_dataset(data_config("mnist1d", data_dir, train_size=100))
  assert abs(norm.train.x.mean()) < 1e-5 and abs(norm.train.x.std() - 1) < 1e-4


def test_plain_dict_config(data_dir):
  cfg = data_config("digits", data_dir).to_dict()
  ds = load_dataset(cfg)
  assert ds.train.x.shape == (1437, 8, 8, 1)
  assert isinstance(ds.train, Split) and "digits" in repr(ds)


# ---- Augmentation (JAX) ------------------------------------------------------------------

def _images(n=8, h=6, w=5, c=2):
  return jnp.asarray(np.random.default_rng(0).random((n, h, w, c)).astype(np.float32) + 1)


def test_crop_flip_exact():
  x = _images()
  n, pad = x.shape[0], 2
  identity = augment.crop_flip(x, jnp.full((n, 2), pad), jnp.zeros(n, bool), pad)
  np.testing.assert_array_equal(identity, x)
  flipped = augment.crop_flip(x, jnp.full((n, 2), pad), jnp.ones(n, bool), pad)
  np.testing.assert_array_equal(flipped, x[:, :, ::-1])
  # Offset (0, 0): the image moves down-right by pad, zeros enter top-left.
  shifted = np.asarray(augment.crop_flip(x, jnp.zeros((n, 2), int), jnp.zeros(n, bool), pad))
  np.testing.assert_array_equal(shifted[:, pad:, pad:], x[:, :-pad, :-pad])
  assert (shifted[:, :pad] == 0).all() and (shifted[:, :, :pad] == 0).all()
  # Offset (2 pad, 1) then flip: up by pad, left-right centred, mirrored.
  out = np.asarray(augment.crop_flip(x, jnp.tile(jnp.array([[2 * pad, pad]]), (n, 1)),
                                     jnp.ones(n, bool), pad))
  np.testing.assert_array_equal(out[:, :-pad], np.asarray(x)[:, pad:, ::-1])
  assert (out[:, -pad:] == 0).all()


def test_random_crop_flip():
  x = _images(n=64)
  key = jax.random.key(0)
  rcf = jax.jit(augment.random_crop_flip, static_argnames=("pad", "crop", "flip"))
  out = rcf(key, x, pad=2)
  assert out.shape == x.shape and out.dtype == x.dtype
  np.testing.assert_array_equal(rcf(key, x, crop=False, flip=False), x)
  flip_only, x_np = np.asarray(rcf(key, x, crop=False)), np.asarray(x)
  is_flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(flip_only, x_np)]
  is_same = [np.array_equal(o, i) for o, i in zip(flip_only, x_np)]
  assert all(a or b for a, b in zip(is_flipped, is_same))
  assert 15 < sum(is_flipped) < 49  # About half.
  # Every output is one of the (2 pad + 1)^2 crops of the padded image, flipped or not.
  padded = np.pad(x_np, ((0, 0), (2, 2), (2, 2), (0, 0)))
  offsets = set()
  for i, o in enumerate(np.asarray(out)):
    matches = [(dy, dx) for dy in range(5) for dx in range(5)
               for crop in [padded[i, dy:dy + 6, dx:dx + 5]]
               if np.array_equal(o, crop) or np.array_equal(o, crop[:, ::-1])]
    assert matches, f"example {i} is no crop of its image"
    offsets.add(matches[0])
  assert len(offsets) > 10
  # vmap over batched seeds (as the trainer does): different seeds differ.
  keys = jax.random.split(key, 3)
  many = jax.jit(jax.vmap(augment.random_crop_flip, in_axes=(0, None)))(keys, x)
  assert many.shape == (3,) + x.shape and not np.array_equal(many[0], many[1])
  # apply("crop_flip") is random_crop_flip with its default pad of 4.
  np.testing.assert_array_equal(
      jax.jit(augment.apply, static_argnums=0)("crop_flip", keys[0], x), many[0])
  np.testing.assert_array_equal(augment.apply("none", key, x), x)
  with pytest.raises(ValueError):
    augment.apply("mixup", key, x)


def test_random_crop_reaches_every_offset_from_0_to_2_pad():
  """Offsets are uniform on {0, ..., 2 pad} per axis: all (2 pad + 1)^2
  crops occur (pad 1: 9 of them, over 400 examples)."""
  pad, n = 1, 400
  image = np.arange(1, 10, dtype=np.float32).reshape(3, 3, 1)
  x = jnp.asarray(np.broadcast_to(image, (n, 3, 3, 1)))
  out = np.asarray(augment.random_crop_flip(jax.random.key(0), x, pad,
                                            flip=False))
  padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
  crops = {(dy, dx): padded[dy:dy + 3, dx:dx + 3]
           for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)}
  seen = set()
  for o in out:
    match = [k for k, c in crops.items() if np.array_equal(o, c)]
    assert len(match) == 1
    seen.add(match[0])
  assert seen == set(crops)


@pytest.mark.parametrize("separation,words", [
    (0.0, ["data.synthetic.separation=0.0 must be > 0", "e.g. 3"]),
    (-1.0, ["data.synthetic.separation=-1.0 must be > 0"])])
def test_a_separation_without_separable_clouds_is_one_line(separation, words):
  """separation=0 put every class mean at the origin: numpy warned of a
  division by zero above the error, which said nothing of what to use."""
  import warnings  # pylint: disable=g-import-not-at-top
  from jaxunknowns.data import synthetic  # pylint: disable=g-import-not-at-top
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # a numpy warning fails the test
    with pytest.raises(UserError) as e:
      synthetic.gaussian_clouds(40, 2, 2, separation,
                                np.random.default_rng(0))
  for word in words:
    assert word in str(e.value), str(e.value)
