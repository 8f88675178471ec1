"""The Hessian's trace and eigenvalue density, by Hessian-vector products.

For a loss of n parameters with Hessian H (never formed; HVPs from
analysis/hessian.py, forward-over-reverse):

* Hutchinson's trace: tr(H) = E[v^T H v] over Rademacher probes v (entries
  +-1). `hutchinson` returns the per-probe values, so the estimate's
  standard error is known. Per block b (a top-level module of the params:
  `Dense_0`, `BatchNorm_1`, `output`, a ResNet stage's block, ...), the same
  probes give tr(H_bb) = E[v_b^T (H v)_b]: the off-block terms have mean
  zero, so per-layer traces cost no extra HVP (they are noisier).
* Stochastic Lanczos quadrature (SLQ; Golub & Meurant, Ghorbani, Krishnan
  & Xiao 2019, Yao et al. 2020): for each of k Rademacher probes, m
  Lanczos steps from v / ||v|| with full reorthogonalisation
  (`hessian.lanczos_tridiagonal`); the eigenvalues theta_j of the m x m
  tridiagonal matrix are the quadrature *nodes*, the squared first
  components of its eigenvectors the *weights* w_j (sum 1). The spectral
  measure (1/n) sum_i delta(lambda - lambda_i) is estimated by the mean over
  probes of sum_j w_j delta(lambda - theta_j): its moments sum_j w_j
  theta_j^p equal v^T H^p v / ||v||^2 exactly for p < 2m, so their mean
  over probes estimates tr(H^p) / n. The largest node of each probe is a
  Lanczos Ritz value: it converges to lambda_max from below.
* `density`: the measure smoothed by a Gaussian of std `sigma` on a grid,
  so it integrates to 1 and can be drawn on a log axis like the papers'
  figures. hessian_spectrum passes a std of `spectrum.sigma` (0.01) times
  the spectrum's range; PyHessian's `density_generate` uses a *variance* of
  1e-5 x max(1, range), so its curves are far narrower (about 40x at a
  range of 150). Only the drawn density depends on it: the bulk edge and
  the outlier counts below are read from the nodes and weights.
* The bulk edge and the outliers (the rule every report states): in each
  probe, a node stands for n w_j eigenvalues (an isolated eigenvalue's node
  for about one: n (v . u)^2 / ||v||^2 has mean 1, while a bulk node stands
  for many). The bulk edge is the largest node standing for at least
  `bulk_count` eigenvalues (median over probes); the outliers are the
  eigenvalues above the edge by more than `outlier_gap` times the bulk's
  width (edge - smallest node, medians over probes), counted by the
  quadrature: n x (the measure's mass above that threshold), the mean over
  probes -- an estimate of how many eigenvalues lie there, not a count of
  nodes. The gap keeps the bulk's own upper edge (a square-root edge gives
  its nodes small weights too) out of the count.

Networks: `measure_fn(loss, ...)` is jit(vmap) over the run axis of a
trainer state (params [R, ...], batch_stats [R, ...], keys [R, 2]): the
whole model and, with `layers`, every block, each with its own SLQ on the
block's Hessian H_bb. `loss(params, batch_stats)` comes from
`hessian.network_loss` (a fixed subset; BatchNorm with population ("eval")
or batch statistics). `spectrum_callback(trainer, every=...)` wraps the
whole model's trace and lambda_max as a `trainer.Callback` (along training,
written as split "spectrum").
"""

import functools
from typing import Any, Callable, Dict, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxunknowns import distributed, prng
from jaxunknowns.analysis import hessian
from jaxunknowns.errors import UserError


def check_counts(num_probes: int, num_steps: int, trace_probes: int,
                 num_eigenvalues: int, num_params: int, prefix: str = "",
                 steps_field: str = "num_steps"):
  """UserError (one line) for k, m or probe counts < 1, or more eigenvalues
  than Lanczos steps, or eigenvalues or Lanczos steps than the model has
  parameters."""
  for field, value in (("num_probes", num_probes), (steps_field, num_steps),
                       ("trace_probes", trace_probes)):
    if not isinstance(value, (int, np.integer)) or isinstance(
        value, bool) or value < 1:
      raise UserError(f"{prefix}{field}={value!r} is out of range: must be "
                      "an integer >= 1")
  hessian.check_num_eigenvalues(num_eigenvalues, num_params,
                                field=f"{prefix}num_eigenvalues")
  # Per block, m is min(num_steps, the block's size) by design (`slq`).
  hessian.check_lanczos_steps(num_steps, num_params,
                              f"{prefix}{steps_field}")
  if num_eigenvalues > num_steps:
    raise UserError(f"{prefix}num_eigenvalues={num_eigenvalues} > "
                    f"{prefix}{steps_field}={num_steps}: m Lanczos steps give "
                    "at most m eigenvalues")


def rademacher(key, shape, dtype):
  return jax.random.rademacher(key, shape, dtype=dtype)


# ---------------------------------------------------------------------------
# Hutchinson's trace
# ---------------------------------------------------------------------------
def hutchinson(loss: Callable, params, key, num_probes: int):
  """(whole [num_probes], {block: [num_probes]}): v^T H v and v_b^T (Hv)_b
  for Rademacher probes v over every parameter of `params`."""
  flat, unravel = ravel_pytree(params)

  def one(k):
    v = unravel(rademacher(k, flat.shape, flat.dtype))
    hv = hessian.hvp(loss, params, v)
    per_block = {b: sum(jnp.vdot(a, c) for a, c in zip(
        jax.tree.leaves(v[b]), jax.tree.leaves(hv[b]))) for b in v}
    return sum(per_block.values()), per_block

  return jax.lax.map(one, jax.random.split(key, num_probes))


# ---------------------------------------------------------------------------
# Stochastic Lanczos quadrature
# ---------------------------------------------------------------------------
def quadrature(matvec: Callable, v0, num_steps: int, key):
  """(nodes [m], weights [m]) of m Lanczos steps from v0 (m <= dim)."""
  _, alphas, betas = hessian.lanczos_tridiagonal(matvec, v0, num_steps, key)
  nodes, vectors = jnp.linalg.eigh(hessian.tridiagonal(alphas, betas))
  return nodes, vectors[0] ** 2


def slq(matvec: Callable, dim: int, key, *, num_probes: int, num_steps: int,
        dtype=jnp.float32):
  """(nodes [k, m], weights [k, m]) for k Rademacher probes; m is clipped to
  the dimension (m = dim gives the exact spectral measure of each probe)."""
  m = min(int(num_steps), dim)

  def one(k):
    k_probe, k_restart = jax.random.split(k)
    return quadrature(matvec, rademacher(k_probe, (dim,), dtype), m,
                      k_restart)

  return jax.lax.map(one, jax.random.split(key, num_probes))


def moments(nodes, weights, power: int):
  """Per probe: sum_j w_j theta_j^p, an estimate of tr(H^p) / n."""
  return np.sum(np.asarray(weights) * np.asarray(nodes) ** power, axis=-1)


def density(nodes, weights, grid, sigma: float) -> np.ndarray:
  """The mean over probes (every leading axis) of sum_j w_j N(grid; theta_j,
  sigma^2): a probability density on `grid` (float64). nodes, weights:
  [..., m], each row's weights summing to 1."""
  weights = np.asarray(weights, np.float64)
  rows = weights.size // weights.shape[-1]
  z = ((np.asarray(grid, np.float64)[:, None] -
        np.asarray(nodes, np.float64).reshape(1, -1)) / sigma)
  return (np.exp(-0.5 * z ** 2) @ (weights.reshape(-1) / rows)
          / (sigma * np.sqrt(2 * np.pi)))


def bulk_and_outliers(nodes, weights, num_params: int, bulk_count: float,
                      outlier_gap: float):
  """(bulk edge, outlier count) of one run's SLQ (nodes, weights [k, m]),
  by the rule in the module docstring."""
  nodes, weights = np.asarray(nodes), np.asarray(weights)
  edges, lows = [], []
  for theta, w in zip(nodes, weights):
    bulk = theta[num_params * w >= bulk_count]
    edges.append(float(bulk.max()) if bulk.size else float(theta.max()))
    lows.append(float(theta.min()))
  edge = float(np.median(edges))
  threshold = edge + outlier_gap * (edge - float(np.median(lows)))
  count = num_params * np.mean(np.sum(weights * (nodes > threshold), axis=-1))
  return edge, float(count)


# ---------------------------------------------------------------------------
# Networks: the whole model and its blocks, every run at once
# ---------------------------------------------------------------------------
def blocks_of(params) -> Sequence[str]:
  """The blocks of the per-layer spectra: the params' top-level modules."""
  return sorted(params)


def measure(loss: Callable, params, batch_stats, key, *, num_probes: int,
            num_steps: int, trace_probes: int, layers: bool
            ) -> Dict[str, Any]:
  """One run: {"trace": [T], "nodes": [k, m], "weights": [k, m],
  "blocks": {b: {"trace": [T], "nodes": [k, m_b], "weights": [k, m_b]}}}."""
  full = lambda p: loss(p, batch_stats)
  k_trace, k_slq, k_blocks = jax.random.split(key, 3)
  trace, block_trace = hutchinson(full, params, k_trace, trace_probes)
  matvec, dim, dtype = hessian.flat_operator(full, params)
  nodes, weights = slq(matvec, dim, k_slq, num_probes=num_probes,
                       num_steps=num_steps, dtype=dtype)
  out = {"trace": trace, "nodes": nodes, "weights": weights, "blocks": {}}
  for i, b in enumerate(blocks_of(params) if layers else ()):
    sub = lambda q, b=b: full({**params, b: q})
    mv, d, dt = hessian.flat_operator(sub, params[b])
    n_b, w_b = slq(mv, d, jax.random.fold_in(k_blocks, i),
                   num_probes=num_probes, num_steps=num_steps, dtype=dt)
    out["blocks"][b] = {"trace": block_trace[b], "nodes": n_b, "weights": w_b}
  return out


def measure_fn(loss: Callable, *, num_probes: int, num_steps: int,
               trace_probes: int, layers: bool = True) -> Callable:
  """jit(vmap(measure)) over the run axis:
  fn(params [R, ...], batch_stats [R, ...], keys [R, 2]) -> arrays [R, ...]."""
  one = functools.partial(measure, loss, num_probes=num_probes,
                          num_steps=num_steps, trace_probes=trace_probes,
                          layers=layers)
  return jax.jit(jax.vmap(one))


def hvps_per_call(num_runs: int, dims: Dict[str, int], *, num_probes: int,
                  num_steps: int, trace_probes: int) -> int:
  """HVPs one `measure_fn` call makes: Hutchinson's probes plus k x m for the
  whole model (`dims["whole"]`) and each block, per run."""
  return num_runs * (trace_probes + sum(
      num_probes * min(num_steps, d) for d in dims.values()))


def spectrum_callback(trainer, *, every: int, num_probes: int = 4,
                      num_steps: int = 64, trace_probes: int = 64,
                      subset_size: int = 1000, chunk_size: int = 0,
                      bn_mode: str = "eval", seed: int = 0,
                      name: str = "spectrum"):
  """A `trainer.Callback` writing, per run, Hutchinson's `trace` and its
  standard error `trace_sem` and SLQ's `lambda_max` (the largest node) of
  the whole model, on a fixed subset (the same probes at every step).
  Validates everything here, before anything runs or is written."""
  from jaxunknowns.trainer import Callback  # pylint: disable=g-import-not-at-top
  num_params = int(sum(np.prod(x.shape) for x in
                       jax.tree.leaves(trainer.params_template)))
  check_counts(num_probes, num_steps, trace_probes, 1, num_params)
  if every < 1:
    raise UserError(f"every={every} is out of range: must be >= 1")
  x, y = hessian.subset(trainer.dataset.train, subset_size, seed)
  loss = hessian.network_loss(trainer.model, trainer.loss_fn,
                              jax.device_put(x, trainer.replicated),
                              jax.device_put(y, trainer.replicated),
                              has_batch_stats=trainer.has_batch_stats,
                              chunk_size=chunk_size, bn_mode=bn_mode)
  fn = measure_fn(loss, num_probes=num_probes, num_steps=num_steps,
                  trace_probes=trace_probes, layers=False)

  def run(trainer_, state, step):
    del trainer_, step
    keys = jax.random.split(prng.key(seed),
                            int(np.shape(state["step"])[0]))
    out = distributed.device_get(fn(state["params"], state["batch_stats"], keys))
    trace = np.asarray(out["trace"], np.float64)
    return {"trace": trace.mean(axis=1),
            "trace_sem": trace.std(axis=1, ddof=1) / np.sqrt(trace.shape[1])
                         if trace_probes > 1 else np.zeros(len(trace)),
            "lambda_max": np.asarray(out["nodes"]).max(axis=(1, 2))}

  return Callback(name=name, every=int(every), fn=run)
