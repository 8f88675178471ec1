"""Pure numpy transforms of datasets: Zhang et al.'s randomization tests,
label noise, validation hold-out and standardization.

Every function takes arrays and a seed (an int or a `np.random.Generator`) and
returns new arrays; none touches global random state, so they can be reused
on their own (e.g. to corrupt a batch in an analysis).

Axis convention, shared by `input_moments` (normalization and the Gaussian
randomization) and the pixel permutations: an example of shape (..., C) with
rank >= 2 (images HWC, MNIST-1D's (40, 1)) has *positions* (all axes but the
last) and *channels* (the last axis); statistics are per channel and
permutations move whole positions (a pixel keeps its RGB triple). A flat
example (D,) has D features; statistics are per feature and permutations move
single features.
"""

from typing import Sequence, Tuple, Union

import numpy as np

Seed = Union[int, np.random.Generator, np.random.SeedSequence]

RANDOMIZATIONS = ("none", "random_labels", "shuffled_pixels", "random_pixels",
                  "gaussian")


def _rng(seed: Seed) -> np.random.Generator:
  if isinstance(seed, np.random.Generator):
    return seed
  return np.random.default_rng(seed)


# ---- Labels ------------------------------------------------------------------

def label_noise(y: np.ndarray, p: float, num_classes: int, seed: Seed) -> np.ndarray:
  """Replaces each label with probability p by a uniformly random class.

  The replacement may equal the original label, so the expected fraction of
  labels that change is p * (1 - 1/num_classes) (Zhang et al.'s definition of
  "label corruption p").
  """
  if not 0.0 <= p <= 1.0:
    raise ValueError(f"label noise probability must be in [0, 1], got {p}")
  rng = _rng(seed)
  y = np.asarray(y)
  replace = rng.random(y.shape[0]) < p
  random = rng.integers(0, num_classes, size=y.shape[0])
  return np.where(replace, random, y).astype(np.int32)


def random_labels(y: np.ndarray, num_classes: int, seed: Seed) -> np.ndarray:
  """Every label replaced by a uniformly random class (label_noise with p=1)."""
  return label_noise(y, 1.0, num_classes, seed)


# ---- Inputs ------------------------------------------------------------------

def _positions(example_shape: Sequence[int]) -> Tuple[int, int]:
  """(positions, channels) of one example, per the module's axis convention."""
  example_shape = tuple(example_shape)
  if len(example_shape) <= 1:
    return int(np.prod(example_shape, dtype=np.int64)), 1
  return int(np.prod(example_shape[:-1], dtype=np.int64)), example_shape[-1]


def pixel_permutation(example_shape: Sequence[int], seed: Seed) -> np.ndarray:
  """One random permutation of an example's positions (see module docstring)."""
  positions, _ = _positions(example_shape)
  return _rng(seed).permutation(positions)


def shuffled_pixels(x: np.ndarray, permutation: np.ndarray) -> np.ndarray:
  """Applies one fixed position permutation to every example of x.

  Use the same permutation (from `pixel_permutation`) for train and test, as
  Zhang et al.'s "shuffled pixels" does.
  """
  positions, channels = _positions(x.shape[1:])
  if np.asarray(permutation).shape != (positions,):
    raise ValueError(f"permutation of shape {np.shape(permutation)} does not fit "
                     f"examples of shape {x.shape[1:]} ({positions} positions)")
  flat = x.reshape(x.shape[0], positions, channels)
  return flat[:, permutation, :].reshape(x.shape)


def random_pixels(x: np.ndarray, seed: Seed, chunk: int = 4096) -> np.ndarray:
  """Applies an independent random position permutation to each example."""
  rng = _rng(seed)
  positions, channels = _positions(x.shape[1:])
  flat = x.reshape(x.shape[0], positions, channels)
  out = np.empty_like(flat)
  base = np.arange(positions, dtype=np.int32)
  for start in range(0, x.shape[0], chunk):   # Bounds the index array's memory.
    block = flat[start:start + chunk]
    perms = rng.permuted(np.broadcast_to(base, (block.shape[0], positions)), axis=1)
    out[start:start + chunk] = np.take_along_axis(block, perms[:, :, None], axis=1)
  return out.reshape(x.shape)


def input_moments(x: np.ndarray, chunk: int = 8192) -> Tuple[np.ndarray, np.ndarray]:
  """Mean and standard deviation per channel (rank >= 2 examples) or per
  feature (flat examples), shaped to broadcast against one example.

  Two passes over chunks of examples, accumulated in float64: exact enough
  for any data and without a float64 copy of the whole set.
  """
  axes = (0,) if x.ndim <= 2 else tuple(range(x.ndim - 1))
  n = x.shape[0]
  count = x.size // int(np.prod([x.shape[a] for a in range(x.ndim) if a not in axes]))
  total = sum(x[i:i + chunk].sum(axis=axes, dtype=np.float64, keepdims=True)
              for i in range(0, n, chunk))
  mean = total / count
  squares = sum(np.square(x[i:i + chunk] - mean).sum(axis=axes, keepdims=True)
                for i in range(0, n, chunk))
  std = np.sqrt(squares / count)
  return mean[0].astype(np.float32), std[0].astype(np.float32)


def gaussian_inputs(shape: Sequence[int], mean: np.ndarray, std: np.ndarray,
                    seed: Seed) -> np.ndarray:
  """Gaussian noise of the given shape with the given (broadcast) moments."""
  noise = _rng(seed).standard_normal(tuple(shape), dtype=np.float32)
  return (noise * std + mean).astype(np.float32)


def standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  """(x - mean) / std, leaving constant features/channels at zero."""
  scale = np.where(std > 0, 1.0 / np.where(std > 0, std, 1.0), 1.0).astype(np.float32)
  out = np.subtract(x, np.asarray(mean, np.float32), dtype=np.float32)
  out *= scale  # In place: one pass and one array for 60k images.
  return out


# ---- Splits ------------------------------------------------------------------

def holdout_indices(n: int, n_holdout: int, seed: Seed) -> Tuple[np.ndarray, np.ndarray]:
  """(keep, holdout) index arrays: a seeded random subset of n_holdout of
  range(n) and the rest, both in increasing order (so the kept examples stay
  in their original order)."""
  if not 0 <= n_holdout <= n:
    raise ValueError(f"cannot hold out {n_holdout} of {n} examples")
  perm = _rng(seed).permutation(n)
  return np.sort(perm[n_holdout:]), np.sort(perm[:n_holdout])


def corrupted_fraction(y_true: np.ndarray, y: np.ndarray) -> float:
  """Fraction of labels that differ (a check for `label_noise`)."""
  return float(np.mean(np.asarray(y_true) != np.asarray(y)))
