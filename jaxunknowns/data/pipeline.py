"""`load_dataset(config.data)`: load a registered dataset and apply the
config's transforms, in this order:

1. `validation_size` n: a random subset of n training examples (seeded by
   `shuffle_seed`) becomes `ds.validation`; the rest stays in its order.
2. `train_size` n: keep the first n remaining training examples (0 = all).
3. Labels (train only; validation and test keep their true labels):
   `label_noise` p, or p = 1 for `randomization="random_labels"`.
4. Inputs (train, validation and test alike): `shuffled_pixels` (one fixed
   permutation), `random_pixels` (a permutation per example) or `gaussian`
   (every input replaced by noise with the training inputs' mean and std per
   channel, per feature for flat inputs).
5. `normalize`: standardize every split with the final training split's mean
   and std per channel (images, and MNIST-1D whose single channel makes this
   one global mean/std, as the published MNIST-1D baselines use) or per
   feature (flat inputs). `soudry2d` ignores it: its coordinates define the
   max-margin solution.
6. `augment`: "auto" becomes "crop_flip" for 32x32x3 inputs (CIFAR, SVHN),
   else "none".

Every seed derives from `data.shuffle_seed`, one stream per use.
"""

from typing import Any, Mapping

from absl import logging
import ml_collections
import numpy as np

from jaxunknowns.data import core
from jaxunknowns.data import datasets as datasets_lib
from jaxunknowns.data import transforms
from jaxunknowns.data.core import Dataset, Split, seeded_rng
from jaxunknowns.errors import UserError

AUGMENTS = ("auto", "none", "crop_flip")


def _as_config(data_config) -> ml_collections.ConfigDict:
  if isinstance(data_config, (ml_collections.ConfigDict, ml_collections.FrozenConfigDict)):
    return data_config
  if isinstance(data_config, Mapping):
    return ml_collections.ConfigDict(dict(data_config))
  raise TypeError(f"load_dataset expects config.data (a ConfigDict), got {type(data_config)}")


def _int_field(cfg, field: str, default: int) -> int:
  value = cfg.get(field, default)
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
    raise UserError(f"data.{field} must be a non-negative integer, got {value!r}")
  return int(value)


def check_config(cfg) -> dict:
  """Validates the fields that need no data; returns them resolved."""
  randomization = cfg.get("randomization", "none") or "none"
  if randomization not in transforms.RANDOMIZATIONS:
    raise UserError(f"unknown data.randomization {randomization!r}; valid names: "
                    f"{', '.join(transforms.RANDOMIZATIONS)}")
  label_noise = cfg.get("label_noise", 0.0)
  if (isinstance(label_noise, bool) or not isinstance(label_noise, (int, float))
      or not 0.0 <= label_noise <= 1.0):
    raise UserError(f"data.label_noise must be a number in [0, 1], got {label_noise!r}")
  if randomization == "random_labels" and label_noise:
    # Every label is replaced already (step 3): the noise would be recorded,
    # and reported, never applied.
    raise UserError(f"data.label_noise={label_noise!r} is unused with "
                    "data.randomization='random_labels' (every label is "
                    "random already); leave it at 0")
  augment = cfg.get("augment", "auto") or "auto"
  if augment not in AUGMENTS:
    raise UserError(f"unknown data.augment {augment!r}; valid names: {', '.join(AUGMENTS)}")
  normalize = cfg.get("normalize", True)
  if not isinstance(normalize, (bool, np.bool_)):
    raise UserError(f"data.normalize must be True or False, got {normalize!r}")
  name = cfg.get("name", "")
  if not isinstance(name, str) or not name:
    raise UserError("data.name must name a dataset")
  return dict(
      name=name, randomization=randomization, label_noise=float(label_noise),
      augment=augment, normalize=bool(normalize),
      validation_size=_int_field(cfg, "validation_size", 0),
      train_size=_int_field(cfg, "train_size", 0),
      shuffle_seed=_int_field(cfg, "shuffle_seed", 0))


def resolve_augment(augment: str, input_shape) -> str:
  if augment == "auto":
    return "crop_flip" if tuple(input_shape) == (32, 32, 3) else "none"
  return augment


def _map_inputs(ds: Dataset, fn) -> Dataset:
  """Applies fn(split_name, x) to the inputs of every split."""
  def apply(name, split):
    return None if split is None else Split(fn(name, split.x), split.y)
  return ds.replace(train=apply("train", ds.train),
                    validation=apply("validation", ds.validation),
                    test=apply("test", ds.test))


def transform(ds: Dataset, settings: dict, keeps_coordinates: bool = False) -> Dataset:
  """Applies steps 1-6 of the module docstring to a raw dataset."""
  seed = settings["shuffle_seed"]
  name = ds.name

  # 1. Validation hold-out.
  n_train = ds.train.num_examples
  n_val = settings["validation_size"]
  if n_val:
    if ds.validation is not None:
      raise UserError(f"data.validation_size must be 0 for {name}, which has its "
                      f"own validation split, got {n_val}")
    if n_val > n_train - 1:
      raise UserError(f"data.validation_size must be in [0, {n_train - 1}] for "
                      f"{name} ({n_train} training examples), got {n_val}")
    keep, held = transforms.holdout_indices(
        n_train, n_val, seeded_rng(seed, core.STREAM_VALIDATION))
    ds = ds.replace(train=ds.train.take(keep), validation=ds.train.take(held))

  # 2. Training subset.
  n_keep = settings["train_size"]
  if n_keep:
    available = ds.train.num_examples
    if n_keep > available:
      # A variant may have set it (runlocal's 2000, for MNIST-1D's 4000).
      raise UserError(f"data.train_size must be in [0, {available}] (0 = all) for "
                      f"{name} after validation_size={n_val}, got {n_keep} (set "
                      f"by the command line or the config's variant): pass "
                      f"--config.data.train_size=0 or a size up to {available}")
    ds = ds.replace(train=ds.train.take(slice(0, n_keep)))

  # 3. Labels.
  randomization = settings["randomization"]
  p = 1.0 if randomization == "random_labels" else settings["label_noise"]
  if p > 0:
    y = transforms.label_noise(ds.train.y, p, ds.num_classes,
                               seeded_rng(seed, core.STREAM_LABEL_NOISE))
    ds = ds.replace(train=Split(ds.train.x, y))

  # 4. Inputs.
  if randomization == "shuffled_pixels":
    perm = transforms.pixel_permutation(ds.input_shape,
                                        seeded_rng(seed, core.STREAM_PIXEL_PERMUTATION))
    ds = _map_inputs(ds, lambda _, x: transforms.shuffled_pixels(x, perm))
  elif randomization == "random_pixels":
    ds = _map_inputs(ds, lambda split, x: transforms.random_pixels(
        x, seeded_rng(seed, core.STREAM_RANDOM_PIXELS + core.SPLIT_OFFSET[split])))
  elif randomization == "gaussian":
    mean, std = transforms.input_moments(ds.train.x)
    ds = _map_inputs(ds, lambda split, x: transforms.gaussian_inputs(
        x.shape, mean, std,
        seeded_rng(seed, core.STREAM_GAUSSIAN + core.SPLIT_OFFSET[split])))

  # 5. Normalization.
  if settings["normalize"] and keeps_coordinates:
    logging.info("%s: data.normalize ignored (its coordinates are the point).", name)
  elif settings["normalize"]:
    mean, std = transforms.input_moments(ds.train.x)
    ds = _map_inputs(ds, lambda _, x: transforms.standardize(x, mean, std))
    ds = ds.replace(mean=mean, std=std)

  # 6. Augmentation.
  augment = resolve_augment(settings["augment"], ds.input_shape)
  if augment == "crop_flip" and len(ds.input_shape) != 3:
    raise UserError(f"data.augment='crop_flip' needs image inputs (H, W, C); "
                    f"{name} has inputs of shape {ds.input_shape}: use 'none'")
  return ds.replace(augment=augment)


def load_dataset(data_config: Any) -> Dataset:
  """Loads `data_config.name` (see jaxunknowns.data.datasets for the names)
  and applies the transforms of the module docstring.

  Offline datasets are built into `data.data_dir` (TFDS's default when
  empty) on first use and read back from there afterwards.
  """
  cfg = _as_config(data_config)
  settings = check_config(cfg)  # Fail on bad values before any loading.
  loader = datasets_lib.get_loader(settings["name"])
  raw = loader(cfg)
  return transform(raw, settings,
                   keeps_coordinates=getattr(loader, "keeps_coordinates", False))
