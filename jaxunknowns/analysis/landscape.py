"""Filter-normalized loss landscapes (Li, Xu, Taylor, Studer & Goldstein 2018).

Directions. `filter_normalized_direction(key, params)` draws a Gaussian
direction d with the shapes of `params` and rescales it *per filter*: for a
conv kernel [..., in, out] a filter is one output channel, for a dense
kernel [in, out] one output unit; in both cases the slice d[..., j] along
the last axis, and d[..., j] <- d[..., j] * ||theta[..., j]|| / ||d[..., j]||.
Every leaf that is not a kernel (biases, BatchNorm scale and bias) gets a
zero direction, as in Li et al.'s `ignore='biasbn'`. Without this scaling a
network's scale invariance (BN, ReLU) makes sharpness plots of different
networks incomparable.

Surfaces. `surface_fn(...)` returns one jitted program that evaluates loss
and accuracy of theta + sum_i c_i d_i for N points c (any number of
directions k; k = 1 is a slice, k = 2 a contour) on a fixed set of examples,
BatchNorm in eval mode with the network's own running statistics (they are
not moved: they are buffers, not parameters). The program scans over data
chunks (the trainer's padded eval batches) and, for each chunk, maps over
chunks of points and vmaps inside a point chunk, so all N points share one
pass over the data and one compile.

Fast dense path. When the network's first layer is a Dense on the flattened
input (MLPs, LeNet), its output at every point is affine in the coordinates:
  (W + sum_i c_i D_i) x + b(c) = W x + sum_i c_i (D_i x) + b(c),
so per data chunk one matmul x @ [W | D_1 | ... | D_k] gives the first
layer for *every* point; each point then only runs the later (small) layers.
For LeNet-300-100 that removes ~88% of the forward FLOPs. The substitution
is done with a Flax method interceptor on the first Dense call, so the model
code is untouched; `first_dense_path` finds that layer (or None).
"""

import functools
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxunknowns import distributed
from jaxunknowns.errors import UserError

Tree = Any


# ---------------------------------------------------------------------------
# Directions
# ---------------------------------------------------------------------------
def _is_filter_leaf(path, leaf) -> bool:
  """Conv and dense kernels (ndim >= 2, named `kernel`): the leaves with filters."""
  name = getattr(path[-1], "key", str(path[-1]))
  return name == "kernel" and leaf.ndim >= 2


@jax.jit  # One program, not one eager dispatch per leaf and op.
def filter_normalize(direction: Tree, params: Tree) -> Tree:
  """Each filter of `direction` scaled to the norm of the matching filter of
  `params`; zero for biases and normalization parameters."""
  def one(path, d, p):
    if not _is_filter_leaf(path, p):
      return jnp.zeros_like(d)
    axes = tuple(range(p.ndim - 1))  # Everything but the output axis.
    p_norm = jnp.sqrt(jnp.sum(jnp.square(p), axis=axes, keepdims=True))
    d_norm = jnp.sqrt(jnp.sum(jnp.square(d), axis=axes, keepdims=True))
    # A zero filter of d (probability 0 for a Gaussian) stays zero.
    return d * (p_norm / jnp.where(d_norm > 0, d_norm, 1.0))
  return jax.tree_util.tree_map_with_path(one, direction, params)


@jax.jit
def random_direction(key, params: Tree) -> Tree:
  """Gaussian N(0, 1) leaves shaped like `params`, from one draw (one
  random-bits program to compile, not one per leaf)."""
  leaves, treedef = jax.tree.flatten(params)
  sizes = [int(np.prod(p.shape)) for p in leaves]
  flat = jax.random.normal(key, (sum(sizes),), jnp.float32)
  out, start = [], 0
  for p, n in zip(leaves, sizes):
    out.append(flat[start:start + n].reshape(p.shape).astype(p.dtype))
    start += n
  return jax.tree.unflatten(treedef, out)


def filter_normalized_direction(key, params: Tree) -> Tree:
  return filter_normalize(random_direction(key, params), params)


@functools.partial(jax.jit, static_argnums=2)
def filter_normalized_directions(key, params: Tree, k: int) -> Tree:
  """k independent directions stacked on a leading axis (leaves [k, ...])."""
  dirs = [filter_normalized_direction(kk, params)
          for kk in jax.random.split(key, k)]
  return jax.tree.map(lambda *xs: jnp.stack(xs), *dirs)


# ---------------------------------------------------------------------------
# The optimization path's own plane (Li et al. 2018, Sec. 7)
# ---------------------------------------------------------------------------
def path_pca(path: np.ndarray, k: int = 2) -> Dict[str, np.ndarray]:
  """PCA of an optimization path: `path` [n, P] holds the flattened iterates
  in order, the trained network last. As Li et al.'s Sec. 7 does, the rows
  M = θ_i − θ_n (i < n) (their code adds θ_n's zero row too) are centred
  for the PCA and left uncentred for the coordinates. Returns `directions` [k, P] (orthonormal), `explained`
  (every component's share of M's centred variance, largest first) and
  `coords` [n, k]: each iterate's projection relative to θ_n (the last is 0).

  n ≪ P, so the principal directions come from the n × n Gram matrix of the
  centred rows in float64 rather than from an SVD of the n × P matrix."""
  path = np.asarray(path, np.float64)
  m = path[:-1] - path[-1]
  centred = m - m.mean(0)
  eigvals, eigvecs = np.linalg.eigh(centred @ centred.T)
  order = np.argsort(eigvals)[::-1]
  eigvals, eigvecs = np.maximum(eigvals[order], 0.0), eigvecs[:, order]
  dirs = (centred.T @ eigvecs[:, :k]) / np.sqrt(eigvals[:k])
  return {"directions": dirs.T, "explained": eigvals / eigvals.sum(),
          "coords": (path - path[-1]) @ dirs}


def captured_variance(path: np.ndarray, directions: np.ndarray) -> float:
  """The share of the path's centred variance (as `path_pca` measures it)
  that lies in the span of `directions` [k, P] (any basis, e.g. random
  filter-normalized directions): Li et al.'s reason random planes miss the
  path."""
  path = np.asarray(path, np.float64)
  m = path[:-1] - path[-1]
  centred = m - m.mean(0)
  basis, _ = np.linalg.qr(np.asarray(directions, np.float64).T)
  return float(np.sum((centred @ basis) ** 2) / np.sum(centred ** 2))


# ---------------------------------------------------------------------------
# Grids
# ---------------------------------------------------------------------------
def axis(lo: float, hi: float, num: int, field: str) -> np.ndarray:
  """`num` evenly spaced coordinates on [lo, hi]; UserError on an empty grid."""
  if not isinstance(num, (int, np.integer)) or isinstance(num, bool) or num < 1:
    raise UserError(f"{field}={num!r}: the direction grid has no points; "
                    f"must be an integer >= 1")
  if not (np.isfinite(lo) and np.isfinite(hi)) or (num > 1 and not lo < hi):
    raise UserError(f"{field}: the range [{lo}, {hi}] is empty; need lo < hi")
  return np.linspace(lo, hi, num) if num > 1 else np.array([0.5 * (lo + hi)])


def grid_points(*axes_: np.ndarray) -> np.ndarray:
  """[N, k] coordinates of the product grid, the first axis slowest."""
  mesh = np.meshgrid(*axes_, indexing="ij")
  return np.stack([m.ravel() for m in mesh], -1).astype(np.float32)


# ---------------------------------------------------------------------------
# The first Dense layer (fast path)
# ---------------------------------------------------------------------------
def first_dense_path(model, params: Tree, input_shape,
                     batch_stats: Optional[Tree] = None
                     ) -> Optional[Tuple[str, ...]]:
  """Param path of the model's first Dense if it is the first parameterized
  module called and takes the flattened input [B, prod(input_shape)]."""
  calls = []

  def record(next_fun, args, kwargs, context):
    if context.method_name == "__call__" and context.module.scope is not None \
        and context.module.scope.path:
      calls.append((context.module, args[0].shape if args else None))
    return next_fun(*args, **kwargs)

  x = jnp.zeros((2,) + tuple(input_shape), jnp.float32)
  variables = {"params": params}
  if batch_stats:
    variables["batch_stats"] = batch_stats
  with nn.intercept_methods(record):
    jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
  if not calls:
    return None
  module, shape = calls[0]
  if not isinstance(module, nn.Dense):
    return None
  if shape != (2, int(np.prod(input_shape))):
    return None
  return tuple(module.scope.path)


def _get(tree, path):
  for k in path:
    tree = tree[k]
  return tree


# ---------------------------------------------------------------------------
# Surfaces
# ---------------------------------------------------------------------------
def surface_fn(model, loss_fn: Callable, *, has_batch_stats: bool,
               points_per_chunk: int = 64,
               dense_path: Optional[Tuple[str, ...]] = None) -> Callable:
  """jit(fn(params, batch_stats, dirs, coords, xs, ys, ws)) -> {loss, accuracy}.

  `dirs`: directions stacked on a leading axis k (leaves [k, ...]);
  `coords`: [N, k]; `xs, ys, ws`: [C, B, ...] padded data chunks with 0/1
  weights (the trainer's eval batches). Returns per-point mean loss and
  accuracy, [N]. `dense_path`: the first Dense layer's path
  (`first_dense_path`) to take the fast path, or None for the plain one.
  """
  p_chunk = int(points_per_chunk)
  if p_chunk < 1:
    raise UserError(f"points_per_chunk={p_chunk}: must be >= 1")

  def apply(params, batch_stats, x, first_out=None):
    variables = {"params": params}
    if has_batch_stats:
      variables["batch_stats"] = batch_stats
    if first_out is None:
      return model.apply(variables, x, train=False)
    done = []

    def substitute(next_fun, args, kwargs, context):
      if (not done and context.method_name == "__call__"
          and isinstance(context.module, nn.Dense)):
        done.append(True)
        if tuple(context.module.scope.path) != dense_path:
          raise ValueError(f"first Dense is {context.module.scope.path}, "
                           f"expected {dense_path}")
        return first_out
      return next_fun(*args, **kwargs)

    with nn.intercept_methods(substitute):
      return model.apply(variables, x, train=False)

  def fn(params, batch_stats, dirs, coords, xs, ys, ws):
    n, k = coords.shape
    pad = (-n) % p_chunk
    c = jnp.concatenate([coords, jnp.zeros((pad, k), coords.dtype)])
    c = c.reshape(-1, p_chunk, k)

    def moved(point):
      return jax.tree.map(
          lambda p, d: p + jnp.tensordot(point.astype(p.dtype), d, axes=1),
          params, dirs)

    def data_step(totals, batch):
      x, y, w = batch
      if dense_path is not None:
        # One matmul for every point: x @ [W | D_1 | ... | D_k].
        kernel = _get(params, dense_path)["kernel"]
        kdirs = _get(dirs, dense_path)["kernel"]          # [k, in, out]
        stacked = jnp.concatenate([kernel[None], kdirs])  # [k+1, in, out]
        flat = x.reshape(x.shape[0], -1).astype(kernel.dtype)
        big = flat @ jnp.moveaxis(stacked, 0, 1).reshape(kernel.shape[0], -1)
        parts = big.reshape(x.shape[0], k + 1, kernel.shape[1])

      def point_sums(point):
        p = moved(point)
        first = None
        if dense_path is not None:
          first = parts[:, 0] + jnp.einsum("k,bkh->bh", point.astype(
              parts.dtype), parts[:, 1:])
          bias = _get(p, dense_path).get("bias")
          if bias is not None:
            first = first + bias
        logits = apply(p, batch_stats, x, first)
        loss = loss_fn(logits, y)
        correct = (jnp.argmax(logits, -1) == y).astype(jnp.float32)
        return jnp.sum(loss * w), jnp.sum(correct * w)

      sums = jax.lax.map(jax.vmap(point_sums), c)  # ([NC, P], [NC, P])
      return (totals[0] + sums[0], totals[1] + sums[1]), None

    zeros = jnp.zeros(c.shape[:2], jnp.float32)
    (loss, correct), _ = jax.lax.scan(data_step, (zeros, zeros), (xs, ys, ws))
    count = jnp.sum(ws)
    return {"loss": (loss / count).reshape(-1)[:n],
            "accuracy": (correct / count).reshape(-1)[:n]}

  return jax.jit(fn)


def forward_flops_per_example(params: Tree, input_shape,
                              dense_only: bool = True) -> int:
  """2 x (multiply-adds) of a forward pass of a dense network (kernels only)."""
  del input_shape
  total = 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    if _is_filter_leaf(path, leaf):
      if dense_only and leaf.ndim != 2:
        raise ValueError("forward_flops_per_example counts dense layers only")
      total += 2 * int(np.prod(leaf.shape))
  return total


def surface(fn: Callable, params, batch_stats, dirs, coords,
            data: Sequence) -> Dict[str, np.ndarray]:
  """Runs a `surface_fn` program and fetches {loss, accuracy} as numpy [N]."""
  out = distributed.device_get(fn(params, batch_stats, dirs,
                          jnp.asarray(coords, jnp.float32), *data))
  return {k: np.asarray(v, np.float64) for k, v in out.items()}


def take_run(tree: Tree, r: int) -> Tree:
  """Run r of a run-batched tree."""
  return jax.tree.map(lambda x: x[r], tree)


__all__ = ["path_pca", "captured_variance", "filter_normalize", "filter_normalized_direction",
           "filter_normalized_directions", "random_direction", "axis",
           "grid_points", "first_dense_path", "surface_fn", "surface",
           "forward_flops_per_example", "take_run"]
