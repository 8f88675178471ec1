"""Paths between networks: the straight line, and curves through bends.

The straight line serves the linear-mode-connectivity analysis (Frankle et
al. 2020, see stability.py), but works for any two run-batched train states
of one trainer: two seeds, a ticket and its dense parent, a network before
and after fine-tuning. The curves serve mode connectivity (Garipov et al.
2018): a path phi(t), t in [0, 1], through K control points theta_0 = a,
theta_1 ... theta_{K-2} (the bends), theta_{K-1} = b, each point of the path
a weighted sum sum_k w_k(t) theta_k (`curve_coefficients`, `combine`):

  "line"       (1 - t) a + t b (the bends unused);
  "bezier"     Bernstein weights C(K-1, k) t^k (1 - t)^(K-1-k): for K = 3
               (1 - t)^2 a + 2 t (1 - t) theta + t^2 b;
  "polychain"  the polygonal chain through the K points at t = k / (K - 1)
               (hat-function weights).

`plane_basis` gives the plane through three points (Garipov et al.'s Fig. 1
planes), `plane_networks` networks at coordinates of it, and
`barrier_height` the barrier of a path as max over t minus the larger end.

Layout. Every tree here has a leading *run* axis R (the trainer's convention).
`interpolate(a, b, alphas)` returns a tree with a leading axis of P*R networks,
**alpha-major**: network `p * R + r` is run r at alphas[p]. A flat leading axis
is what the trainer's vmapped eval takes; reshape a result to [P, R] (or an
eval output to [P, R] and transpose to [R, P]) to split the two.

BatchNorm. `batch_stats` (running means and variances) are interpolated
linearly, exactly like `params`. This is a choice: the alternative is to
recompute the running statistics of every interpolated network on training
data (a "BN reset" / REPAIR-style fix), which removes part of the barrier that
comes from mismatched statistics rather than from the weights. We take the
linear interpolation of the whole eval-mode state (cheap, no training data
pass, and the same network the two endpoints define); a barrier measured on a
BatchNorm network therefore includes the statistics' contribution.
"""

import math
import weakref
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxunknowns import distributed

Tree = Any


def _check_float(x):
  if not jnp.issubdtype(x.dtype, jnp.inexact):
    raise TypeError(f"can only interpolate floating-point leaves, got {x.dtype}"
                    f" of shape {x.shape}")


def nonnegative_variances(batch_stats: Tree) -> Tree:
  """BatchNorm's running variances ('var' leaves) clipped at 0. Inside [0, 1]
  the line mixes two variances and never needs it; extrapolated (the
  landscape's t = -0.5 or 1.5) a variance can fall below 0, and the eval's
  rsqrt(var + eps) then made the loss NaN (a report's 'rise past A: nan')."""
  def clip(path, v):
    last = path[-1] if path else None
    return jnp.maximum(v, 0) if getattr(last, "key", None) == "var" else v
  return jax.tree_util.tree_map_with_path(clip, batch_stats)


def interpolate(tree_a: Tree, tree_b: Tree, alphas) -> Tree:
  """(1 - alpha) * a + alpha * b for every alpha, as a [P*R, ...] tree.

  `tree_a`, `tree_b`: trees of the same structure whose leaves have a leading
  run axis R (params, batch_stats, or a dict of both). `alphas`: shape [P].
  Returns leaves of shape [P*R, ...], alpha-major (index p * R + r). With this
  form alpha = 0 returns a and alpha = 1 returns b *bit for bit* (1*a + 0*b),
  which `a + alpha * (b - a)` would not. Alphas outside [0, 1] extrapolate.
  Works inside and outside `jit`.
  """
  alphas = jnp.asarray(alphas)
  if alphas.ndim != 1:
    raise ValueError(f"alphas must have shape [P], got {alphas.shape}")
  if jax.tree.structure(tree_a) != jax.tree.structure(tree_b):
    raise ValueError("the two trees have different structures: "
                     f"{jax.tree.structure(tree_a)} vs "
                     f"{jax.tree.structure(tree_b)}")

  def one(a, b):
    a, b = jnp.asarray(a), jnp.asarray(b)
    _check_float(a)
    _check_float(b)
    if a.shape != b.shape:
      raise ValueError(f"leaf shapes differ: {a.shape} vs {b.shape}")
    al = alphas.astype(a.dtype).reshape((-1,) + (1,) * a.ndim)  # [P, 1, ...]
    out = (1 - al) * a[None] + al * b[None]                      # [P, R, ...]
    return out.reshape((-1,) + a.shape[1:])                      # [P*R, ...]

  return jax.tree.map(one, tree_a, tree_b)


# -----------------------------------------------------------------------------
# Evaluating a path with one compiled program per trainer (and eval shape)
# -----------------------------------------------------------------------------
class PathEvaluator:
  """The jitted "gather a chunk of runs, interpolate, evaluate" program.

  One per trainer (see `path_evaluator`). It reuses the trainer's own
  `evaluate_batches` (BN in eval mode, padded eval batches, vmapped over
  networks) and adds the interpolation inside the same `jit`, so the P*chunk
  interpolated networks exist only on the device, for one chunk at a time.
  `trace_count` counts traces (tests: one trace for any number of chunks).
  """

  def __init__(self, trainer):
    self._trainer = weakref.ref(trainer)  # The cache must not keep it alive.
    self.trace_count = 0
    self._replicated = NamedSharding(trainer.mesh, P())
    self._fn = jax.jit(self._eval_chunk, out_shardings=self._replicated)

  def _eval_chunk(self, idx, alphas, params_a, params_b, stats_a, stats_b,
                  xs, ys, ws):
    """idx [C] run indices (the padding repeats a run); returns [P, C]."""
    self.trace_count += 1
    take = lambda tree: jax.tree.map(lambda x: jnp.take(x, idx, axis=0), tree)
    params = interpolate(take(params_a), take(params_b), alphas)
    stats = nonnegative_variances(
        interpolate(take(stats_a), take(stats_b), alphas))
    out = self._trainer().evaluate_batches(params, stats, xs, ys, ws)  # [P*C]
    return {k: v.reshape(alphas.shape[0], idx.shape[0]) for k, v in out.items()}

  def __call__(self, idx, alphas, state_a, state_b, eval_data):
    idx = jax.device_put(np.asarray(idx, np.int32), self._replicated)
    alphas = jax.device_put(np.asarray(alphas, np.float32), self._replicated)
    # Committed and replicated like the trainer's states (a no-op for them),
    # so host (numpy) states hit the same compiled program.
    trees = jax.device_put((state_a["params"], state_b["params"],
                            state_a["batch_stats"], state_b["batch_stats"]),
                           self._replicated)
    return self._fn(idx, alphas, *trees, *eval_data)


_EVALUATORS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def path_evaluator(trainer) -> PathEvaluator:
  """The trainer's cached PathEvaluator (created on first use)."""
  ev = _EVALUATORS.get(trainer)
  if ev is None:
    ev = _EVALUATORS[trainer] = PathEvaluator(trainer)
  return ev


def default_chunk(num_runs: int, num_points: int,
                  max_networks: int = 64) -> int:
  """Runs per chunk so that at most ~max_networks networks (runs x alphas)
  are evaluated at once (at least one run)."""
  return max(1, min(num_runs, max_networks // max(num_points, 1)))


def _num_runs(state) -> int:
  leaves = jax.tree.leaves(state["params"])
  if not leaves:
    raise ValueError("state has no parameters")
  return int(leaves[0].shape[0])


def evaluate_path(trainer, state_a, state_b, num_points: int = 30,
                  split: str = "test", chunk: Optional[int] = None,
                  alphas=None) -> Dict[str, np.ndarray]:
  """Error and loss of (1 - alpha) * a + alpha * b for each run.

  `state_a`, `state_b`: run-batched trees (train states, or any dict with
  `params` and `batch_stats`) with the same R runs; run r of a is paired with
  run r of b. `alphas` defaults to `linspace(0, 1, num_points)`.
  `chunk`: runs evaluated per call (memory grows as chunk * P networks);
  default `default_chunk(R, P)`. All chunks have the same shape (the last one
  is padded by repeating run R-1, its padded results dropped), so the eval is
  compiled once per (trainer, split, chunk, P).

  Returns numpy {"alphas": [P], "error": [R, P], "loss": [R, P]} with
  error = 1 - accuracy on `split` (BatchNorm in eval mode, running statistics
  interpolated linearly; see the module docstring).
  """
  eval_splits = trainer.eval_data
  if split not in eval_splits:
    raise ValueError(f"no {split!r} split to evaluate "
                     f"(have {sorted(eval_splits)})")
  if alphas is None:
    if num_points < 2:
      raise ValueError(f"num_points must be >= 2, got {num_points}")
    alphas = np.linspace(0.0, 1.0, num_points)
  alphas = np.asarray(alphas, np.float32)
  if alphas.ndim != 1:
    raise ValueError(f"alphas must have shape [P], got {alphas.shape}")
  num_runs = _num_runs(state_a)
  if _num_runs(state_b) != num_runs:
    raise ValueError(f"state_a has {num_runs} runs, state_b "
                     f"{_num_runs(state_b)}")
  chunk = default_chunk(num_runs, len(alphas)) if chunk is None else int(chunk)
  if chunk < 1:
    raise ValueError(f"chunk must be >= 1, got {chunk}")
  chunk = min(chunk, num_runs)  # Never pad beyond one chunk of real runs.
  ev = path_evaluator(trainer)
  eval_data = eval_splits[split]
  outs = []
  for start in range(0, num_runs, chunk):
    idx = np.minimum(np.arange(start, start + chunk), num_runs - 1)
    outs.append((start, ev(idx, alphas, state_a, state_b, eval_data)))
  # Dispatch every chunk before fetching any (asynchronous dispatch).
  loss = np.empty((num_runs, len(alphas)), np.float64)
  acc = np.empty((num_runs, len(alphas)), np.float64)
  for start, out in outs:
    out = distributed.device_get(out)
    n = min(chunk, num_runs - start)
    loss[start:start + n] = np.asarray(out["loss"]).T[:n]
    acc[start:start + n] = np.asarray(out["accuracy"]).T[:n]
  return {"alphas": alphas.astype(np.float64), "error": 1.0 - acc,
          "loss": loss}


def instability(error) -> np.ndarray:
  """Error barrier height (Frankle et al. 2020): max over alpha of the error
  minus the mean of the two endpoint errors.

  `error`: [..., P] with alpha on the last axis, its first and last entries the
  endpoints (alpha = 0 and 1), e.g. `evaluate_path(...)["error"]` of shape
  [R, P] -> [R]. Same units as `error` (fractions; x100 for points). Never
  negative when the endpoints are on the path (max >= each endpoint).
  """
  error = np.asarray(error, np.float64)
  if error.ndim < 1 or error.shape[-1] < 2:
    raise ValueError(f"error needs >= 2 points on its last axis, got "
                     f"shape {error.shape}")
  return error.max(-1) - 0.5 * (error[..., 0] + error[..., -1])


# -----------------------------------------------------------------------------
# Curves through bends (Garipov et al. 2018)
# -----------------------------------------------------------------------------
CURVES = ("line", "bezier", "polychain")


def curve_coefficients(kind: str, num_points: int, ts):
  """[T, K] weights w_k(t) of the K = `num_points` control points (the two
  ends included) at each t of `ts` [T]; rows sum to 1. numpy in, numpy out;
  jax arrays (inside jit) in, jax out. At t = 0 and t = 1 the row is exactly
  one-hot on an end, so `combine` returns the end bit for bit."""
  if kind not in CURVES:
    raise ValueError(f"unknown curve {kind!r}; valid: {', '.join(CURVES)}")
  if num_points < 2 or (kind != "line" and num_points < 3):
    raise ValueError(f"a {kind} needs >= {2 if kind == 'line' else 3} "
                     f"points (the two ends and a bend), got {num_points}")
  xp = np if isinstance(ts, (np.ndarray, list, tuple, float)) else jnp
  t = xp.asarray(ts, np.float32 if xp is np else jnp.float32)[..., None]
  k = np.arange(num_points, dtype=np.float32)
  n = num_points - 1
  if kind == "line":
    w = [1 - t] + [0 * t] * (n - 1) + [t]
    return xp.concatenate(w, axis=-1)
  if kind == "bezier":
    binom = np.array([math.comb(n, int(i)) for i in k], np.float32)
    return binom * t ** k * (1 - t) ** (n - k)
  return xp.maximum(0.0, 1.0 - xp.abs(t * n - k))


def combine(points: Tree, weights) -> Tree:
  """sum_k weights[p, k] * points[k] for each row p: `points` leaves
  [K, R, ...] (the control points stacked), `weights` [P, K]; returns leaves
  [P*R, ...], row-major like `interpolate` (network p * R + r)."""
  weights = jnp.asarray(weights)

  def one(x):
    x = jnp.asarray(x)
    _check_float(x)
    if x.shape[0] != weights.shape[-1]:
      raise ValueError(f"{weights.shape[-1]} weights per row for "
                       f"{x.shape[0]} control points")
    out = jnp.tensordot(weights.astype(x.dtype), x, axes=(1, 0))  # [P, R, ...]
    return out.reshape((-1,) + x.shape[2:])

  return jax.tree.map(one, points)


def stack_points(end_a: Tree, bends: Tree, end_b: Tree) -> Tree:
  """The control points [K, R, ...]: a, the bends (leaves [K-2, R, ...]),
  b."""
  return jax.tree.map(lambda a, m, b: jnp.concatenate(
      [jnp.asarray(a)[None], jnp.asarray(m), jnp.asarray(b)[None]]),
                      end_a, bends, end_b)


def curve_points(kind: str, end_a: Tree, bends: Tree, end_b: Tree,
                 ts) -> Tree:
  """The networks phi(t) of the curve at each t of `ts`: [T*R, ...]."""
  num = jax.tree.leaves(bends)[0].shape[0] + 2
  return combine(stack_points(end_a, bends, end_b),
                 curve_coefficients(kind, num, ts))


def flatten_runs(tree: Tree) -> jax.Array:
  """[R, D]: each run's leaves raveled and concatenated (tree order)."""
  leaves = jax.tree.leaves(tree)
  return jnp.concatenate([jnp.reshape(x, (x.shape[0], -1)) for x in leaves],
                         axis=1)


def unflatten_runs(flat, template: Tree) -> Tree:
  """Inverse of `flatten_runs`: [N, D] -> leaves [N, ...], each shaped like
  one run of `template` (a tree whose leaves have a leading run axis)."""
  leaves, treedef = jax.tree.flatten(template)
  out, start = [], 0
  for x in leaves:
    size = int(np.prod(x.shape[1:]))
    out.append(flat[:, start:start + size].reshape(
        (flat.shape[0],) + tuple(x.shape[1:])))
    start += size
  return jax.tree.unflatten(treedef, out)


def plane_basis(a: Tree, theta: Tree, b: Tree
                ) -> Tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """The plane through a, theta and b, per run (Garipov et al.'s planes):
  origin a [R, D], orthonormal u = (b - a) / |b - a| and v (theta - a with
  its u part removed, normalized) [R, D], and the three points' coordinates
  [R, 3, 2] (a at (0, 0), b at (|b - a|, 0), theta above the u axis)."""
  fa, ft, fb = (flatten_runs(t) for t in (a, theta, b))
  du, dt = fb - fa, ft - fa
  u = du / jnp.linalg.norm(du, axis=1, keepdims=True)
  w = dt - jnp.sum(dt * u, axis=1, keepdims=True) * u
  v = w / jnp.linalg.norm(w, axis=1, keepdims=True)
  coord = lambda d: jnp.stack([jnp.sum(d * u, 1), jnp.sum(d * v, 1)], -1)
  coords = jnp.stack([coord(fa - fa), coord(dt), coord(du)], axis=1)
  return fa, u, v, coords


def plane_networks(origin, u, v, coords, template: Tree) -> Tree:
  """Networks origin + x u + y v of one run (origin, u, v: [D]) at each of
  `coords` [N, 2]: a tree of leaves [N, ...] shaped like `template`'s runs."""
  coords = jnp.asarray(coords, origin.dtype)
  flat = origin[None] + coords[:, :1] * u[None] + coords[:, 1:] * v[None]
  return unflatten_runs(flat, template)


def barrier_height(values) -> np.ndarray:
  """Barrier of a path, our definition: the maximum over t of `values`
  [..., T] minus the larger of its two ends (the first and last entries),
  i.e. how far the path rises above the worse end. Garipov et al. and
  Draxler et al. show the loss along a path beside its ends without one
  formula; Frankle et al.'s `instability` subtracts the mean of the ends,
  and Entezari et al. the straight line between them. >= 0; 0 when no
  point rises above both ends."""
  values = np.asarray(values, np.float64)
  if values.ndim < 1 or values.shape[-1] < 2:
    raise ValueError(f"values need >= 2 points on their last axis, got "
                     f"shape {values.shape}")
  return values.max(-1) - np.maximum(values[..., 0], values[..., -1])
