"""Magnitude pruning of Flax param trees: which weights survive each level.

Masks
-----
A *mask* is a pytree with exactly the structure of the params: a `bool` array
of the kernel's shape at every prunable leaf (True = the weight survives) and
`None` at every other leaf. `None` is a pytree node with no children, so a mask
has leaves only where it matters, stays a valid pytree under `jax.vmap`, `jit`
and orbax, and `jax.tree.map` over a mask visits only the prunable kernels.
Functions here accept float masks too (nonzero = kept) and always return bool.

Prunable = a leaf named `kernel` with ndim >= 2 (Dense and Conv kernels).
Biases, BatchNorm/LayerNorm params and embeddings are never pruned. A *layer*
is named by the path of the module that owns the kernel, joined by '/':
'Dense_0', 'output', 'BasicBlock_0/Conv_1'. The final classifier is the layer
whose last path component is 'output' (the project's naming convention).

Two ways to keep a layer dense, with different bookkeeping:
  * `ones_mask(params, exclude_output=True)` leaves the output kernel out of
    the mask altogether (`None`): it is then not prunable at all and not
    counted in `sparsity_report`.
  * `prune_*(..., exclude=('output',))` / a rate of 0 keeps it in the mask,
    all ones, and counted in the report -- OpenLTH's
    `--pruning_layers_to_ignore`, and how the papers report sparsity.

Counting and rounding
---------------------
Each pruning step removes exactly `ceil(fraction * remaining)` weights, where
`remaining` is the number of surviving (mask == True) weights in scope: per
layer for `prune_layerwise`, over all non-excluded layers for `prune_global`.
`ceil` is OpenLTH's rule (`pruning/sparse_global.py`) and never stalls: any
positive rate prunes at least one weight while some remain. The count is
exact integer arithmetic: a fraction is read as the nearest rational with
denominator <= 10_000 (0.2 is exactly 1/5), so no float error turns 20% of
100 into 21 weights. The smallest |w| go first; ties are broken by position
(layers in `layer_names` order, then the kernel's row-major index), so
counts never depend on ties. The reference codes cut at a threshold instead
and prune one more weight than their count plus any ties: Frankle & Carbin's
`prune_by_percent_once` drops |w| <= sorted[round(p * n)], OpenLTH drops
|w| <= sorted[ceil(p * n)] -- at most a weight or two per layer per level
apart from the counts here. OpenLTH also counts `remaining` over the
ignored layers, so it prunes slightly more than the fraction from the others;
here `remaining` counts only what may be pruned.

Everything here works per run (no leading batch axis). The pruning functions
are jit/vmap-able: layer names, rates and fractions are static Python values
(validated on the host), everything else is traced, so the trainer can
`jax.vmap(functools.partial(prune_global, fraction=0.2))(params, mask)` over
its run axis. `sparsity_report` returns Python numbers and is per run.
"""

import fractions
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxunknowns import distributed
from jaxunknowns.errors import UserError

OUTPUT_LAYER = "output"
# Fractions are read as p/q with q <= this, which keeps p * (n % q) < 2**31.
_MAX_DENOMINATOR = 10_000

Mask = Any  # params-shaped pytree: bool arrays at prunable leaves, else None.


# ---------------------------------------------------------------- Tree names


def _key_name(key) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def _layer_name(path) -> str:
  """'BasicBlock_0/Conv_1' for the path .../BasicBlock_0/Conv_1/kernel."""
  return "/".join(_key_name(k) for k in path[:-1])


def is_prunable(path, leaf) -> bool:
  """A Dense/Conv kernel: named 'kernel' and at least 2-D (per run)."""
  return (bool(path) and _key_name(path[-1]) == "kernel"
          and np.ndim(leaf) >= 2)


def is_output_layer(name: str) -> bool:
  return name.split("/")[-1] == OUTPUT_LAYER


def layer_names(tree) -> List[str]:
  """Names of the prunable layers of a params tree or of a mask, in tree order.

  For params: every prunable kernel. For a mask: the layers it covers (its
  non-None leaves), which is what the pruning functions accept as names.
  """
  names = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if is_prunable(path, leaf):
      names.append(_layer_name(path))
  return names


def _mask_layers(mask) -> List[Tuple[str, Any]]:
  return [(_layer_name(path), leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(mask)[0]]


def _params_for_mask(params, mask) -> List[Any]:
  """The kernels of `params` at the mask's leaves, in mask order."""
  by_path = dict(jax.tree_util.tree_flatten_with_path(params)[0])
  kernels = []
  for path, m in jax.tree_util.tree_flatten_with_path(mask)[0]:
    if path not in by_path:
      raise ValueError(f"mask has layer {_layer_name(path)!r} that the params "
                       f"lack; params layers: {layer_names(params)}")
    w = by_path[path]
    if np.shape(w) != np.shape(m):
      raise ValueError(f"mask for {_layer_name(path)!r} has shape "
                       f"{np.shape(m)} but the kernel has {np.shape(w)}")
    kernels.append(w)
  return kernels


def _rebuild(mask, new_leaves: Sequence[Any]):
  treedef = jax.tree_util.tree_structure(mask)
  return jax.tree_util.tree_unflatten(treedef, list(new_leaves))


# ---------------------------------------------------------------- Masks


def ones_mask(params, exclude_output: bool = False) -> Mask:
  """The level-0 mask: all True on every prunable kernel, None elsewhere.

  With `exclude_output`, the 'output' layer gets None too: it can never be
  pruned and is not counted as prunable (see the module docstring for the
  alternative that keeps it in the mask). Call it per run (inside `vmap`
  when params carry a run axis), so that ndim tests see per-run shapes.
  """
  def leaf_mask(path, leaf):
    if not is_prunable(path, leaf):
      return None
    if exclude_output and is_output_layer(_layer_name(path)):
      return None
    # From numpy: a host-to-device copy, not a compiled broadcast per shape.
    return jnp.asarray(np.ones(np.shape(leaf), dtype=bool))
  return jax.tree_util.tree_map_with_path(leaf_mask, params)


def _check_fraction(value, what: str, allow_zero: bool = True) -> float:
  try:
    value = float(value)
  except (TypeError, ValueError, jax.errors.ConcretizationTypeError):
    raise UserError(f"{what} must be a number in [0, 1), got {value!r}")
  low_ok = value >= 0 if allow_zero else value > 0
  if not (low_ok and value < 1):
    raise UserError(
        f"{what} is {value}; it is the fraction of the remaining weights to "
        f"prune and must be in {'[0' if allow_zero else '(0'}, 1)")
  return value


def _check_names(names: Iterable[str], known: Sequence[str], what: str):
  unknown = sorted(set(names) - set(known))
  if unknown:
    raise UserError(
        f"unknown layer name(s) {', '.join(map(repr, unknown))} in {what}; "
        f"prunable layers are: {', '.join(known)}")


def _ratio(fraction: float) -> Tuple[int, int]:
  r = fractions.Fraction(fraction).limit_denominator(_MAX_DENOMINATOR)
  return r.numerator, r.denominator


def _num_to_prune(remaining, p, q):
  """ceil(p / q * remaining), exactly, in int32 (all three may be traced)."""
  return p * (remaining // q) + (p * (remaining % q) + q - 1) // q


def _rank(key):
  """Position of each entry in a stable ascending sort of `key` (NaN last)."""
  # argsort of an argsort: compiles several times faster on CPU than a
  # scatter or a two-key lexsort.
  return jnp.argsort(jnp.argsort(key, stable=True), stable=True)


def _prune_smallest(scores, alive, k):
  """`alive` minus its k entries of smallest score (ties: lowest index)."""
  # Dead entries get NaN, which sorts after everything (a diverged weight's
  # NaN counts as +inf), so they rank >= remaining >= k and stay dead.
  scores = jnp.where(jnp.isnan(scores), jnp.inf, scores)
  return alive & (_rank(jnp.where(alive, scores, jnp.nan)) >= k)


def _alive(m):
  """A mask leaf as a (strongly typed) bool array: nonzero = kept."""
  m = jnp.asarray(m)
  return jax.lax.convert_element_type(m if m.dtype == bool else m != 0, bool)


# The work is done by a few jitted functions: one compiled program per tree
# of kernel shapes, reused at every level and for every rate (rates are
# traced, as p / q), where eager dispatch would compile dozens of primitives
# per shape. They inline when the caller is itself under jit or vmap.


@jax.jit
def bool_mask(mask: Mask) -> Mask:
  """`mask` with every leaf a strongly typed bool array (nonzero = kept)."""
  return jax.tree.map(_alive, mask)


def _flatten_layers(masks):
  """Masks -> (one flat bool vector, its layer index per entry, offsets)."""
  alive = [_alive(m).reshape(-1) for m in masks]
  sizes = [a.size for a in alive]
  offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
  layer = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)
  return jnp.concatenate(alive), alive, layer, offsets


def _rank_within_layers(scores, layer, offsets):
  """Per-layer ascending rank of `scores` (NaN last; ties by index)."""
  # Sort all layers at once -- by score, then stably by layer -- instead of
  # one sort per layer: the compile time stays flat in the number of layers.
  layer = jnp.asarray(layer)
  by_score = jnp.argsort(scores, stable=True)
  order = by_score[jnp.argsort(layer[by_score], stable=True)]
  return jnp.argsort(order, stable=True) - jnp.asarray(offsets)[layer]


def _unflatten_layers(flat, masks, offsets):
  return [flat[offsets[i]:offsets[i + 1]].reshape(np.shape(m))
          for i, m in enumerate(masks)]


@jax.jit
def _prune_each(kernels, masks, p, q):
  flat, alive, layer, offsets = _flatten_layers(masks)
  remaining = jnp.stack([jnp.sum(a, dtype=jnp.int32) for a in alive])
  k = _num_to_prune(remaining, p, q)
  scores = jnp.concatenate(
      [jnp.abs(w).reshape(-1).astype(jnp.float32) for w in kernels])
  scores = jnp.where(jnp.isnan(scores), jnp.inf, scores)
  rank = _rank_within_layers(jnp.where(flat, scores, jnp.nan), layer, offsets)
  return _unflatten_layers(flat & (rank >= k[layer]), masks, offsets)


@jax.jit
def _prune_jointly(kernels, masks, in_scope, p, q):
  flat, _, layer, offsets = _flatten_layers(masks)
  scope = jnp.asarray(in_scope)[layer]
  scores = jnp.concatenate(
      [jnp.abs(w).reshape(-1).astype(jnp.float32) for w in kernels])
  candidates = flat & scope
  k = _num_to_prune(jnp.sum(candidates, dtype=jnp.int32), p, q)
  kept = jnp.where(scope, _prune_smallest(scores, candidates, k), flat)
  return _unflatten_layers(kept, masks, offsets)


@jax.jit
def _shuffle_each(masks, rng):
  # In each layer the survivors go to the positions of its `count` largest
  # uniforms: a uniformly random subset of that size.
  flat, alive, layer, offsets = _flatten_layers(masks)
  count = jnp.stack([jnp.sum(a, dtype=jnp.int32) for a in alive])
  u = jax.random.uniform(rng, flat.shape)
  rank = _rank_within_layers(-u, layer, offsets)
  return _unflatten_layers(rank < count[layer], masks, offsets)


def _ratios(fractions_):
  pq = [_ratio(f) for f in fractions_]
  return (np.array([p for p, _ in pq], np.int32),
          np.array([q for _, q in pq], np.int32))


# ---------------------------------------------------------------- Pruning


def prune_layerwise(params, mask: Mask, rates: Optional[Mapping[str, float]],
                    default_rate: float) -> Mask:
  """Prune, in each layer, a fraction of its remaining weights by |w|.

  Args:
    params: the trained params (per run).
    mask: the current mask (from `ones_mask` or the previous level).
    rates: per-layer overrides by layer name, e.g. {'output': 0.1}; 0 keeps a
      layer as it is. Unknown names are a UserError listing the real ones.
    default_rate: the fraction for every layer not in `rates`.

  Returns:
    A new bool mask: in each layer `ceil(rate * remaining)` more weights
    pruned, those of smallest |w| among the survivors.
  """
  rates = dict(rates or {})
  layers = _mask_layers(mask)
  names = [name for name, _ in layers]
  _check_names(rates, names, "the per-layer pruning rates")
  default_rate = _check_fraction(default_rate, "the default pruning rate")
  rates = {n: _check_fraction(r, f"the pruning rate for layer {n!r}")
           for n, r in rates.items()}
  kernels = _params_for_mask(params, mask)
  if not layers:
    return mask
  p, q = _ratios([rates.get(name, default_rate) for name in names])
  new_leaves = _prune_each(kernels, [m for _, m in layers], p, q)
  return _rebuild(mask, new_leaves)


def prune_global(params, mask: Mask, fraction: float,
                 exclude: Sequence[str] = ()) -> Mask:
  """Prune a fraction of the remaining weights with one global |w| threshold.

  One ranking across all prunable kernels except the `exclude`d layers, with
  raw magnitudes (no per-layer normalisation, OpenLTH's `sparse_global`):
  exactly `ceil(fraction * remaining)` weights go, where `remaining` counts
  the survivors in the non-excluded layers. Excluded layers stay as they are
  but remain in the mask (and in `sparsity_report`).
  """
  layers = _mask_layers(mask)
  names = [name for name, _ in layers]
  exclude = tuple(exclude or ())
  _check_names(exclude, names, "the layers excluded from pruning")
  fraction = _check_fraction(fraction, "the global pruning fraction")
  kernels = _params_for_mask(params, mask)
  if not layers:
    return mask
  in_scope = [name not in exclude for name in names]
  if fraction > 0 and not any(in_scope):
    raise UserError(f"every prunable layer is excluded ({', '.join(names)}); "
                    "nothing can be pruned")
  p, q = _ratio(fraction)
  new_leaves = _prune_jointly(kernels, [m for _, m in layers],
                              np.array(in_scope), np.int32(p), np.int32(q))
  return _rebuild(mask, new_leaves)


def prune_to_sparsity(params, target_remaining: float, method: str = "global",
                      exclude: Sequence[str] = (),
                      exclude_output: bool = False,
                      mask: Optional[Mask] = None) -> Mask:
  """One-shot magnitude pruning of dense params to a target density.

  Starts from `mask` (default `ones_mask(params, exclude_output)`) and keeps
  `total - ceil((1 - target_remaining) * total)` weights of the pruned scope:
  all non-excluded kernels together (`method='global'`) or each of them
  separately (`method='layerwise'`), `total` counting all their weights,
  pruned or not. The kept ones are the largest |w| among the mask's
  survivors (a pruned weight never comes back); where the survivors are
  already that few, nothing more is pruned. `exclude`d layers stay as the
  mask has them.
  """
  if method not in ("global", "layerwise"):
    raise UserError(f"unknown pruning method {method!r}; valid: global, "
                    "layerwise")
  try:
    target = float(target_remaining)
  except (TypeError, ValueError, jax.errors.ConcretizationTypeError):
    raise UserError(f"target fraction remaining must be a number in (0, 1], "
                    f"got {target_remaining!r}")
  if not 0 < target <= 1:
    raise UserError(f"target fraction remaining is {target}; it must be in "
                    "(0, 1]")
  # Exact: 1 - 0.7 is 0.30000000000000004 in floats but 3/10 as a ratio.
  fraction = float(1 - fractions.Fraction(target).limit_denominator(
      _MAX_DENOMINATOR))
  if mask is not None:
    if exclude_output:
      raise ValueError("exclude_output shapes a fresh mask; with `mask`, "
                       "leave the output layer out of it or `exclude` it")
    return _prune_mask_to_sparsity(params, mask, fraction, method, exclude)
  mask = ones_mask(params, exclude_output=exclude_output)
  if method == "global":
    return prune_global(params, mask, fraction, exclude=exclude)
  _check_names(exclude, layer_names(mask), "the layers excluded from pruning")
  return prune_layerwise(params, mask, {name: 0.0 for name in exclude},
                         fraction)


def _prune_mask_to_sparsity(params, mask, fraction, method, exclude):
  """`prune_to_sparsity` from `mask`: in each scope (all non-excluded
  layers, or each layer) k = survivors - (total - ceil(fraction * total))
  of the survivors go (none if k <= 0), as the pruning of a fraction k / r
  of the r survivors (ceil(k / r * r) = k exactly)."""
  layers = _mask_layers(mask)
  names = [name for name, _ in layers]
  _check_names(exclude, names, "the layers excluded from pruning")
  kernels = _params_for_mask(params, mask)
  if not layers:
    return mask
  p, q = _ratio(fraction)
  sizes = [int(np.size(m)) for _, m in layers]
  survivors = jnp.stack([jnp.sum(_alive(m), dtype=jnp.int32)
                         for _, m in layers])
  in_scope = np.array([name not in exclude for name in names])
  if method == "global":
    total = sum(n for n, s in zip(sizes, in_scope) if s)
    keep = total - int(_num_to_prune(total, p, q))
    r = jnp.sum(jnp.where(jnp.asarray(in_scope), survivors, 0))
    new_leaves = _prune_jointly(kernels, [m for _, m in layers], in_scope,
                                jnp.maximum(r - keep, 0), jnp.maximum(r, 1))
  else:
    keep = np.array([n - int(_num_to_prune(n, p, q)) if s else n
                     for n, s in zip(sizes, in_scope)], np.int32)
    new_leaves = _prune_each(kernels, [m for _, m in layers],
                             jnp.maximum(survivors - keep, 0),
                             jnp.maximum(survivors, 1))
  return _rebuild(mask, new_leaves)


def random_mask_like(mask: Mask, rng) -> Mask:
  """A random mask with exactly the survivor count of `mask` in every layer.

  The randomly-pruned control of Frankle & Carbin (OpenLTH's `randomly_prune`
  branch, layer-wise): each layer's mask entries are shuffled uniformly, so
  the per-layer density is kept and which weights survive is random. Layers
  that are all ones (excluded, or dense) stay all ones.
  """
  layers = _mask_layers(mask)
  if not layers:
    return mask
  new_leaves = _shuffle_each([m for _, m in layers], rng)
  return _rebuild(mask, new_leaves)


def sparsity_report(mask: Mask) -> Dict[str, Any]:
  """Per-layer and overall survivors of a (per-run) mask, as Python numbers.

  Returns {'remaining': int, 'total': int, 'fraction_remaining': float,
  'layers': {name: {'remaining', 'total', 'fraction_remaining'}}}, where
  totals count the prunable weights the mask covers (biases and BN excluded,
  as in the papers' "percent of weights remaining").
  """
  layers = {}
  remaining = total = 0
  for name, m in _mask_layers(mask):
    m = np.asarray(distributed.device_get(m))
    kept, size = int(np.count_nonzero(m)), int(m.size)
    layers[name] = {"remaining": kept, "total": size,
                    "fraction_remaining": kept / size if size else 1.0}
    remaining += kept
    total += size
  return {"remaining": remaining, "total": total,
          "fraction_remaining": remaining / total if total else 1.0,
          "layers": layers}
