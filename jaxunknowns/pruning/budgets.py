"""Layer budgets of one-shot pruning: how many weights each layer keeps, and
the masks that keep the best-scored weights within them.

A budget turns a density d (fraction of the prunable weights kept) into
per-layer counts:

* "global": one threshold over all layers (a single top-k of the scores
  across the network); the per-layer counts follow from the scores.
* "uniform": every layer keeps the same fraction d.
* "erk": Erdős–Rényi-Kernel (Evci et al. 2020, RigL's
  `get_sparsities_erdos_renyi`): layer l keeps a fraction
  d_l = ε · Σ(shape_l) / Π(shape_l) (Dense: (n_in + n_out)/(n_in·n_out);
  Conv: (k_h + k_w + c_in + c_out)/(k_h·k_w·c_in·c_out)), with ε solved so
  the total is d·N. A layer whose d_l would exceed 1 is made dense and ε
  re-solved over the others, until none does (`erk_densities` says which
  layers were capped).

Counts are integers that add up to round(d·N) exactly (at least one weight):
the real per-layer counts d_l·n_l are rounded by largest remainder.

Selection keeps, in each layer (or over all layers for "global"), the
weights of HIGHEST keep-score among those still alive; ties go to the lower
index (layers in mask order, then row-major). Scores are traced and counts
may be traced too, so one compiled program serves every density and every
round of an iterative method.
"""

import fractions
from typing import Dict, List, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxunknowns.errors import UserError

BUDGETS = ("global", "uniform", "erk")


def check_density(density) -> float:
  try:
    d = float(density)
  except (TypeError, ValueError):
    raise UserError(f"density {density!r} must be a number in (0, 1]")
  if not 0 < d <= 1:
    raise UserError(f"density {d} must be in (0, 1] (the fraction of the "
                    "prunable weights kept)")
  return d


def check_budget(budget: str) -> str:
  if budget not in BUDGETS:
    raise UserError(f"unknown layer budget {budget!r}; valid: "
                    f"{', '.join(BUDGETS)}")
  return budget


def total_count(sizes: Sequence[int], density: float) -> int:
  """round(d·N) weights kept in all (at least 1), in exact arithmetic."""
  n = int(sum(sizes))
  d = fractions.Fraction(check_density(density)).limit_denominator(10**9)
  return max(1, min(n, round(d * n)))


def erk_densities(shapes: Sequence[Tuple[int, ...]], density: float
                  ) -> Tuple[List[float], List[int]]:
  """ERK per-layer densities for a total density, and the indices of the
  layers that were capped at 1 (made dense)."""
  density = check_density(density)
  sizes = np.array([float(np.prod(s)) for s in shapes])
  raw = np.array([float(np.sum(s)) / float(np.prod(s)) for s in shapes])
  dense: List[int] = []
  while True:
    free = [i for i in range(len(shapes)) if i not in dense]
    budget = density * sizes.sum() - sizes[dense].sum()
    eps = budget / float(np.sum(raw[free] * sizes[free]))
    over = [i for i in free if eps * raw[i] > 1]
    if not over:
      break
    # RigL caps the largest raw density first, then re-solves ε.
    dense.append(max(over, key=lambda i: raw[i]))
  out = [1.0 if i in dense else float(eps * raw[i])
         for i in range(len(shapes))]
  return out, sorted(dense)


def apportion(real_counts: Sequence[float], sizes: Sequence[int],
              total: int) -> List[int]:
  """Integer counts (each in [0, size]) summing to `total`, closest to the
  real counts: floors, then the remainder by largest fractional part."""
  real = np.minimum(np.asarray(real_counts, np.float64), sizes)
  counts = np.floor(real).astype(np.int64)
  left = total - int(counts.sum())
  order = np.argsort(-(real - counts), kind="stable")
  i = 0
  while left > 0:
    j = order[i % len(order)]
    if counts[j] < sizes[j]:
      counts[j] += 1
      left -= 1
    i += 1
  return [int(c) for c in counts]


def layer_counts(shapes: Sequence[Tuple[int, ...]], density: float,
                 budget: str) -> Dict[str, object]:
  """{'counts': per-layer ints (None for "global"), 'total', 'capped'}."""
  check_budget(budget)
  sizes = [int(np.prod(s)) for s in shapes]
  total = total_count(sizes, density)
  if budget == "global":
    return {"counts": None, "total": total, "capped": []}
  if budget == "uniform":
    dens, capped = [density] * len(shapes), []
  else:
    dens, capped = erk_densities(shapes, density)
  counts = apportion([d * n for d, n in zip(dens, sizes)], sizes, total)
  return {"counts": counts, "total": total, "capped": capped}


def _key_name(key) -> str:
  return str(getattr(key, "key", getattr(key, "name", key)))


def mask_layers(mask) -> List[Tuple[str, object]]:
  """[(layer name, mask leaf)] in mask order (None leaves skipped)."""
  return [("/".join(_key_name(k) for k in path[:-1]), leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(mask)[0]]


def rank_within_layers(key, layer, offsets):
  """Ascending rank of each entry of `key` within its layer (ties by index)."""
  by_key = jnp.argsort(key, stable=True)
  order = by_key[jnp.argsort(layer[by_key], stable=True)]
  return jnp.argsort(order, stable=True) - offsets[layer]


@jax.jit
def _select(scores, alive, counts, total):
  sizes = [a.size for a in alive]
  starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
  offsets = jnp.asarray(starts)
  layer = jnp.asarray(np.repeat(np.arange(len(sizes)), sizes), jnp.int32)
  flat_alive = jnp.concatenate([jnp.asarray(a, bool).reshape(-1)
                                for a in alive])
  s = jnp.concatenate([jnp.asarray(x, jnp.float32).reshape(-1)
                       for x in scores])
  # Highest first; NaN and dead entries last.
  key = jnp.where(flat_alive & ~jnp.isnan(s), -s, jnp.inf)
  if counts is None:
    keep = jnp.argsort(jnp.argsort(key, stable=True), stable=True) < total
  else:
    keep = rank_within_layers(key, layer, offsets) < jnp.asarray(
        counts, jnp.int32)[layer]
  keep &= flat_alive
  return [keep[starts[i]:starts[i + 1]].reshape(np.shape(a))
          for i, a in enumerate(alive)]


def keep_top(scores, alive, counts, total):
  """A mask (the structure of `alive`) keeping the highest `scores` among
  the alive entries: `total` over all layers when `counts` is None
  ("global"), else counts[l] in layer l. `scores` has `alive`'s structure."""
  leaves = [m for _, m in mask_layers(alive)]
  s_leaves = [s for _, s in mask_layers(scores)]
  kept = _select(s_leaves, leaves, counts if counts is None else
                 np.asarray(counts, np.int32), np.int32(total))
  return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(alive),
                                      kept)


def select(scores, alive, density: float, budget: str, highest: bool = True):
  """Keep a fraction `density` of all prunable weights under `budget`,
  the highest-scored (or, `highest=False`, the lowest-scored) first."""
  shapes = [np.shape(m) for _, m in mask_layers(alive)]
  c = layer_counts(shapes, density, budget)
  if not highest:
    scores = jax.tree.map(jnp.negative, scores)
  return keep_top(scores, alive, c["counts"], c["total"])
