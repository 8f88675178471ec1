"""Linear interpolation between networks, and the error barrier along the path.

Used by the linear-mode-connectivity analysis (Frankle et al. 2020, see
stability.py), but works for any two run-batched train states of one trainer:
two seeds, a ticket and its dense parent, a network before and after
fine-tuning.

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

import weakref
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

Tree = Any


def _check_float(x):
  if not jnp.issubdtype(x.dtype, jnp.inexact):
    raise TypeError(f"can only interpolate floating-point leaves, got {x.dtype}"
                    f" of shape {x.shape}")


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
    stats = interpolate(take(stats_a), take(stats_b), alphas)
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
    out = jax.device_get(out)
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
