"""Generated data for the implicit-bias experiments: separable Gaussian clouds
and Soudry et al. (2018)'s 2-D set. Pure numpy, seeded, instant to generate
(so, unlike the other offline datasets, not cached on disk).
"""

from typing import Tuple

import numpy as np

from jaxunknowns.errors import UserError

# A sample is kept only if it lies at least this far (in standard deviations)
# on its own side of every bisecting hyperplane between class means: the
# clouds are then linearly separable, by hyperplanes through the origin.
CLOUD_MARGIN = 0.1


def cloud_means(num_classes: int, dim: int, separation: float) -> np.ndarray:
  """Class means, all at distance `separation` from the origin.

  2 classes: +-separation along the first axis; up to `dim` classes: scaled
  unit vectors; more: evenly spaced on a circle in the first two axes.
  """
  means = np.zeros((num_classes, dim))
  if num_classes == 2:
    means[0, 0], means[1, 0] = -separation, separation
  elif num_classes <= dim:
    means[np.arange(num_classes), np.arange(num_classes)] = separation
  elif dim >= 2:
    angles = 2 * np.pi * np.arange(num_classes) / num_classes
    means[:, 0], means[:, 1] = separation * np.cos(angles), separation * np.sin(angles)
  else:
    raise UserError(f"data.synthetic: {num_classes} classes need "
                    f"data.synthetic.dim >= 2, got dim={dim}")
  return means


def _margins(x: np.ndarray, c: int, means: np.ndarray) -> np.ndarray:
  """Signed distance of each x to the nearest bisector between mean c and another."""
  others = np.delete(means, c, axis=0)
  normals = means[c] - others                       # [C-1, D]
  normals /= np.linalg.norm(normals, axis=1, keepdims=True)
  return (x @ normals.T).min(axis=1)               # Equal-norm means: bisectors pass through 0.


def gaussian_clouds(num_examples: int, num_classes: int, dim: int,
                    separation: float, rng: np.random.Generator
                    ) -> Tuple[np.ndarray, np.ndarray]:
  """Linearly separable unit-variance Gaussian clouds, balanced, shuffled.

  Samples falling within CLOUD_MARGIN of a bisector between class means (or
  beyond it) are redrawn, so `argmax_k means[k] . x` classifies all correctly.
  """
  if not separation > 0:  # equal means: no bisector to be separated by
    raise UserError(f"data.synthetic.separation={separation} must be > 0 "
                    "(each class mean's distance from the origin), e.g. 3")
  means = cloud_means(num_classes, dim, separation)
  counts = np.full(num_classes, num_examples // num_classes)
  counts[:num_examples % num_classes] += 1
  xs, ys = [], []
  for c in range(num_classes):
    kept, need, tries = [], int(counts[c]), 0
    while need > 0:
      tries += 1
      if tries > 1000:
        raise UserError(
            f"data.synthetic.separation={separation} is too small to draw "
            f"separable clouds for {num_classes} classes in dim={dim}; use "
            f"a larger one (e.g. {max(2 * separation, 3):g})")
      batch = means[c] + rng.standard_normal((max(2 * need, 64), dim))
      batch = batch[_margins(batch, c, means) >= CLOUD_MARGIN][:need]
      kept.append(batch)
      need -= len(batch)
    xs.append(np.concatenate(kept))
    ys.append(np.full(counts[c], c))
  x, y = np.concatenate(xs), np.concatenate(ys)
  order = rng.permutation(num_examples)
  return x[order].astype(np.float32), y[order].astype(np.int32)


# Soudry et al. 2018, Fig. 1: the support vectors and the max-margin direction.
SOUDRY_SUPPORT_VECTORS = np.array([[0.5, 1.5], [1.5, 0.5]])
SOUDRY_MAX_MARGIN = np.array([0.5, 0.5])  # w with y w.x >= 1, equality at the SVs.
SOUDRY_CENTER = np.array([1.5, 1.5])      # Mean of the random points' cloud (label 1).
SOUDRY_GAP = 1.0                           # Random training points lie this far beyond the margin.


def _soudry_cloud(n: int, rng: np.random.Generator, beyond_margin: bool):
  """n points per class from N(+-center, I); optionally only those with
  y (x1 + x2) >= 2 + gap, i.e. strictly beyond the max-margin hyperplanes."""
  xs, ys = [], []
  for label, sign in ((1, 1.0), (0, -1.0)):
    kept, need = [], n
    while need > 0:
      batch = sign * SOUDRY_CENTER + rng.standard_normal((max(4 * need, 16), 2))
      if beyond_margin:
        batch = batch[sign * batch.sum(axis=1) >= 2.0 + SOUDRY_GAP]
      batch = batch[:need]
      kept.append(batch)
      need -= len(batch)
    xs.append(np.concatenate(kept))
    ys.append(np.full(n, label))
  return np.concatenate(xs), np.concatenate(ys)


def soudry2d(rng_train: np.random.Generator, rng_test: np.random.Generator,
             num_test: int):
  """Soudry et al. (2018)'s separable 2-D set, labels {0, 1} (paper's -1 -> 0).

  Train (16 points): the support vectors (0.5, 1.5), (1.5, 0.5) (label 1) and
  their negatives (label 0) as rows 0-3, then 6 random points per class drawn
  from N(+-(1.5, 1.5), I) kept only beyond the margin (y (x1 + x2) >= 2.25),
  so the L2 max-margin separator through the origin stays w = (0.5, 0.5).
  Test: a fresh draw of num_test points from the same two clouds *without*
  the margin condition, so some test points fall inside the margin (or on the
  wrong side): the test loss of GD can rise while its test error falls.
  """
  sv = np.concatenate([SOUDRY_SUPPORT_VECTORS, -SOUDRY_SUPPORT_VECTORS])
  sv_y = np.array([1, 1, 0, 0])
  rx, ry = _soudry_cloud(6, rng_train, beyond_margin=True)
  order = rng_train.permutation(12)
  x_train = np.concatenate([sv, rx[order]])
  y_train = np.concatenate([sv_y, ry[order]])
  tx, ty = _soudry_cloud((num_test + 1) // 2, rng_test, beyond_margin=False)
  order = rng_test.permutation(len(ty))[:num_test]
  return ((x_train.astype(np.float32), y_train.astype(np.int32)),
          (tx[order].astype(np.float32), ty[order].astype(np.int32)))
