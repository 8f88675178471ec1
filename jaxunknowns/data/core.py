"""The containers every dataset is returned in, and the dataset registry.

A `Dataset` holds whole splits as numpy arrays in host memory: every dataset
of the project (up to CIFAR's 50k 32x32x3 images, 600 MB as float32) fits, and
the trainer samples batches by index inside its compiled loop.
"""

import dataclasses
from typing import NamedTuple, Optional, Tuple

import numpy as np

from jaxunknowns.registry import Registry

# name -> loader(data_config) -> Dataset (raw: before transforms/normalization).
DATASETS = Registry("dataset", "data.name")


class Split(NamedTuple):
  """One split: inputs float32 [N, *input_shape] and labels int32 [N].

  A NamedTuple, so `x, y = ds.train` works and JAX treats it as a pytree;
  its size is `num_examples` (`len()` of the tuple is 2).
  """
  x: np.ndarray
  y: np.ndarray

  @property
  def num_examples(self) -> int:
    return int(self.y.shape[0])

  def take(self, indices) -> "Split":
    return Split(self.x[indices], self.y[indices])


@dataclasses.dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous.
class Dataset:
  """A loaded dataset; see `load_dataset` for the transforms already applied."""
  name: str
  num_classes: int
  input_shape: Tuple[int, ...]
  train: Split
  test: Split
  validation: Optional[Split] = None
  augment: str = "none"  # Resolved: "none" or "crop_flip".
  class_names: Tuple[str, ...] = ()
  # Statistics `normalize` used (None when not normalized), shaped to
  # broadcast against one example, e.g. (1, 1, C) for images, (D,) for vectors.
  mean: Optional[np.ndarray] = None
  std: Optional[np.ndarray] = None

  def replace(self, **changes) -> "Dataset":
    return dataclasses.replace(self, **changes)

  def __repr__(self):
    def shapes(split):
      return None if split is None else f"{split.num_examples}"
    return (f"Dataset({self.name!r}, classes={self.num_classes}, "
            f"input_shape={self.input_shape}, train={shapes(self.train)}, "
            f"validation={shapes(self.validation)}, test={shapes(self.test)}, "
            f"augment={self.augment!r}, normalized={self.mean is not None})")


def seeded_rng(seed: int, stream: int) -> np.random.Generator:
  """An independent numpy generator per (seed, purpose), so that e.g. the
  validation split does not change when label noise is switched on."""
  return np.random.default_rng([int(seed), int(stream)])


# Streams of `data.shuffle_seed`, one per use.
STREAM_VALIDATION = 1
STREAM_LABEL_NOISE = 2
STREAM_PIXEL_PERMUTATION = 3
STREAM_RANDOM_PIXELS = 4     # + split offset
STREAM_GAUSSIAN = 8          # + split offset
STREAM_SYNTHETIC_TRAIN = 12
STREAM_SYNTHETIC_TEST = 13
SPLIT_OFFSET = {"train": 0, "validation": 1, "test": 2}
