"""Hessian spectra by Hessian-vector products: the sharpness of a network.

The top eigenvalues of the Hessian of the training loss, without forming it:

* `hvp(loss, params, v)`: forward-over-reverse, jvp(grad(loss)); one HVP
  costs about two gradients and never materialises the [P, P] Hessian.
* `power_iteration(matvec, dim, k, key)`: the k eigenvalues of largest
  magnitude by subspace (block power) iteration with a Rayleigh-Ritz step
  each iteration, stopped when every Ritz pair's residual
  ||H u - lambda u|| / |lambda_1| is below `tol`.
* `lanczos(matvec, dim, k, key)`: `num_steps` Lanczos steps with full
  reorthogonalisation (classical Gram-Schmidt, twice), then the Ritz values
  of the tridiagonal matrix: the k of largest magnitude ("LM"), largest
  ("LA") or smallest ("SA"). A breakdown (an invariant Krylov subspace)
  restarts from a fresh random vector orthogonal to the basis, so
  `num_steps = dim` returns the whole spectrum. `lanczos_tridiagonal` is its
  core from a given start vector (analysis/spectrum.py's quadrature uses it).

Networks. `network_loss(model, loss_fn, x, y)` is the mean loss of a fixed
subset (x, y) of the training data with BatchNorm in *eval* mode (running
statistics from `batch_stats`, no dropout; `bn_mode="batch"`: each chunk's
own statistics, as training sees them), so the loss is a deterministic
function of the parameters; any model of the registry works.
`spectrum_fn(...)` vmaps the whole computation over the run axis of a
trainer state (seeds batched in one compiled program), and
`hessian_callback(trainer, ...)` wraps it as a `trainer.Callback`: the top
eigenvalues of every run along training, written as split "hessian" with
fields eig_0, eig_1, ... (largest magnitude first) and `residual`.

Eigenvalues are those of the Hessian with respect to every parameter (frozen
ones included), in the parameters' dtype (float32 unless x64 is enabled).
Asking for more eigenvalues than there are parameters is a `UserError`,
raised when the callback is built, before anything runs or is written.
"""

import functools
from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxunknowns import distributed, prng
from jaxunknowns.errors import UserError

METHODS = ("lanczos", "power")
WHICH = ("LM", "LA", "SA")
BN_MODES = ("eval", "batch")  # BatchNorm: population or batch statistics.


def default_config() -> ml_collections.ConfigDict:
  """The `hessian` section a config can carry (`c.hessian = default_config()`)."""
  c = ml_collections.ConfigDict()
  c.enabled = False          # Compute the top Hessian eigenvalues along training.
  c.every = 1000             # Steps between computations (and at the end).
  c.k = 1                    # How many eigenvalues (largest magnitude first).
  c.method = "lanczos"       # "lanczos" (full reorthogonalisation) or "power" (subspace iteration).
  c.num_steps = 40           # Lanczos steps / maximum power iterations.
  c.tol = 1e-4               # Power iteration: stop when residuals / |lambda_1| < tol.
  c.subset_size = 1000       # Fixed random subset of the training set the loss is taken on.
  c.chunk_size = 0           # Examples per forward pass over the subset (0 = all at once).
  c.seed = 0                 # Seed of the subset and of the start vectors.
  return c


# ---------------------------------------------------------------------------
# Hessian-vector products
# ---------------------------------------------------------------------------
def hvp(loss: Callable, params, v):
  """H(params) v for a scalar `loss(params)`: forward-over-reverse."""
  return jax.jvp(jax.grad(loss), (params,), (v,))[1]


def flat_operator(loss: Callable, params) -> Tuple[Callable, int, Any]:
  """(matvec on flat vectors, dimension, dtype) of the Hessian at `params`."""
  flat, unravel = ravel_pytree(params)
  grad = jax.grad(loss)

  def matvec(v):
    out = jax.jvp(grad, (params,), (unravel(v.astype(flat.dtype)),))[1]
    return ravel_pytree(out)[0]

  return matvec, int(flat.size), flat.dtype


def check_num_eigenvalues(k: int, num_params: int, field: str = "hessian.k"):
  if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
    raise UserError(f"{field}={k!r} is out of range: must be an integer >= 1")
  if k > num_params:
    raise UserError(f"{field}={k} eigenvalues requested, but the model has only "
                    f"{num_params} parameters (the Hessian is {num_params}x"
                    f"{num_params}): ask for at most {num_params}")


def check_lanczos_steps(num_steps: int, num_params: int, field: str):
  """UserError (one line) for more Lanczos steps than the model has
  parameters: the Krylov space is exhausted after num_params steps, so the
  rest would not run (or would run on noise) while the config recorded them."""
  if num_steps > num_params:
    raise UserError(f"{field}={num_steps} Lanczos steps, but the model has only "
                    f"{num_params} parameters: use at most {num_params}")


def _order(values, which: str):
  if which == "LM":
    return jnp.argsort(-jnp.abs(values))
  if which == "LA":
    return jnp.argsort(-values)
  return jnp.argsort(values)


# ---------------------------------------------------------------------------
# Subspace (block power) iteration
# ---------------------------------------------------------------------------
def power_iteration(matvec: Callable, dim: int, k: int, key, *,
                    num_iters: int = 200, tol: float = 1e-6,
                    oversample: int = 2, dtype=jnp.float32):
  """The k largest-magnitude eigenpairs of a symmetric operator.

  Subspace iteration on a block of b = min(dim, k + oversample) vectors with
  a Rayleigh-Ritz projection every iteration (so deflation is implicit and
  nearly equal |eigenvalues| of opposite sign do not stall it). Stops after
  `num_iters` iterations or when max_i ||H u_i - lambda_i u_i|| / |lambda_1|
  < tol. Returns (eigenvalues [k], eigenvectors [dim, k], iterations,
  residual). Works under jit and vmap.
  """
  check_num_eigenvalues(k, dim, field="k")
  b = min(dim, k + oversample)
  block = jax.vmap(matvec, in_axes=1, out_axes=1)
  v0, _ = jnp.linalg.qr(jax.random.normal(key, (dim, b), dtype))

  def rayleigh_ritz(v):
    w = block(v)
    t = v.T @ w
    evals, s = jnp.linalg.eigh((t + t.T) / 2)
    order = _order(evals, "LM")
    evals, s = evals[order], s[:, order]
    u, hu = v @ s, w @ s
    scale = jnp.maximum(jnp.abs(evals[0]), jnp.finfo(dtype).tiny)
    res = jnp.linalg.norm(hu[:, :k] - u[:, :k] * evals[:k], axis=0) / scale
    return evals, u, hu, jnp.max(res)

  def cond(carry):
    i, _, _, _, err = carry
    return (i < num_iters) & (err > tol)

  def body(carry):
    i, v, _, _, _ = carry
    evals, u, hu, err = rayleigh_ritz(v)
    v_next, _ = jnp.linalg.qr(hu)
    return i + 1, v_next, evals, u, err

  init = (jnp.zeros((), jnp.int32), v0, jnp.zeros((b,), dtype),
          jnp.zeros((dim, b), dtype), jnp.asarray(jnp.inf, dtype))
  iters, _, evals, u, err = jax.lax.while_loop(cond, body, init)
  return evals[:k], u[:, :k], iters, err


# ---------------------------------------------------------------------------
# Lanczos with full reorthogonalisation
# ---------------------------------------------------------------------------
def lanczos_tridiagonal(matvec: Callable, v0, num_steps: int, key):
  """`num_steps` Lanczos steps from v0 with full reorthogonalisation.

  Returns (basis [m + 1, dim] (orthonormal rows, v0 / ||v0|| first), alphas
  [m], betas [m]): T = tridiag(betas[:-1], alphas, betas[:-1]) is the
  projection of the operator on the first m rows. A breakdown (an invariant
  Krylov subspace) continues from a fresh random vector orthogonal to the
  basis (`key`) with beta = 0, so T stays exact (block diagonal) and the
  first component of T's eigenvectors (quadrature weights) is unchanged.
  """
  dim, dtype, m = v0.shape[0], v0.dtype, int(num_steps)
  eps = jnp.finfo(dtype).eps

  def orthogonalize(basis, w):
    for _ in range(2):  # "twice is enough" (Kahan, Parlett)
      w = w - basis.T @ (basis @ w)
    return w

  basis = jnp.zeros((m + 1, dim), dtype).at[0].set(v0 / jnp.linalg.norm(v0))

  def body(j, carry):
    basis, alphas, betas, scale = carry
    v = basis[j]
    w = matvec(v)
    alpha = jnp.dot(w, v)
    # Rows > j of the basis are still zero: this projects on v_0..v_j only.
    w = orthogonalize(basis, w)
    beta = jnp.linalg.norm(w)
    scale = jnp.maximum(scale, jnp.maximum(jnp.abs(alpha), beta))
    breakdown = beta <= eps ** 0.75 * scale
    # Invariant subspace found: continue from a fresh orthogonal direction
    # (beta = 0 makes T block diagonal; its eigenvalues stay exact).
    r = orthogonalize(basis, jax.random.normal(
        jax.random.fold_in(key, j), (dim,), dtype))
    v_next = jnp.where(breakdown, r / jnp.maximum(jnp.linalg.norm(r), eps),
                       w / jnp.where(breakdown, 1.0, beta))
    beta = jnp.where(breakdown, 0.0, beta)
    basis = basis.at[j + 1].set(v_next)
    return basis, alphas.at[j].set(alpha), betas.at[j].set(beta), scale

  basis, alphas, betas, _ = jax.lax.fori_loop(
      0, m, body, (basis, jnp.zeros((m,), dtype), jnp.zeros((m,), dtype),
                   jnp.zeros((), dtype)))
  return basis, alphas, betas


def tridiagonal(alphas, betas):
  """The [m, m] Lanczos matrix of `lanczos_tridiagonal`'s coefficients."""
  return jnp.diag(alphas) + jnp.diag(betas[:-1], 1) + jnp.diag(betas[:-1], -1)


def lanczos(matvec: Callable, dim: int, k: int, key, *, num_steps: int = 40,
            which: str = "LM", dtype=jnp.float32):
  """k extreme eigenpairs from `num_steps` Lanczos steps (clipped to dim).

  Returns (eigenvalues [k] ordered by `which`, Ritz vectors [dim, k],
  residual estimates [k] = |beta_m s_{m,i}|). Works under jit and vmap.
  """
  check_num_eigenvalues(k, dim, field="k")
  if which not in WHICH:
    raise UserError(f"which={which!r}: must be one of {', '.join(WHICH)}")
  m = max(k, min(int(num_steps), dim))
  key_start, key_restart = jax.random.split(key)
  basis, alphas, betas = lanczos_tridiagonal(
      matvec, jax.random.normal(key_start, (dim,), dtype), m, key_restart)
  evals, s = jnp.linalg.eigh(tridiagonal(alphas, betas))
  order = _order(evals, which)[:k]
  vectors = basis[:m].T @ s[:, order]
  residuals = jnp.abs(betas[-1] * s[-1, order])
  return evals[order], vectors, residuals


# ---------------------------------------------------------------------------
# Networks: a fixed data subset, BatchNorm in eval mode, runs vmapped
# ---------------------------------------------------------------------------
def network_loss(model, loss_fn: Callable, x, y, *, has_batch_stats: bool,
                 chunk_size: int = 0, bn_mode: str = "eval",
                 chunk_field: str = "hessian.chunk_size") -> Callable:
  """`loss(params, batch_stats)`: mean loss on (x, y), no dropout.

  BatchNorm: `bn_mode` "eval" normalizes with the running (population)
  statistics `batch_stats`; "batch" with each chunk's own statistics, as in
  a training step (Flax train=True, the statistics' update discarded), so
  a chunk is one BN batch and `batch_stats` is not read. Either way the loss
  is a deterministic function of the parameters. With 0 < chunk_size <
  len(y), the subset goes through the model in chunks (a lax.map; len(y)
  must be a multiple of chunk_size); in eval mode the mean is the same
  function, with less memory per forward pass. `chunk_field` is the config
  field that set chunk_size, for the error when it does not divide len(y).
  """
  if bn_mode not in BN_MODES:
    raise UserError(f"unknown BatchNorm mode {bn_mode!r}; valid: "
                    f"{', '.join(BN_MODES)}")
  n = int(y.shape[0])

  def chunk_loss(params, batch_stats, xb, yb):
    variables = {"params": params}
    if has_batch_stats:
      variables["batch_stats"] = batch_stats
    if has_batch_stats and bn_mode == "batch":
      logits, _ = model.apply(variables, xb, train=True,
                              mutable=["batch_stats"])
    else:
      logits = model.apply(variables, xb, train=False)
    return jnp.sum(loss_fn(logits, yb))

  if chunk_size and chunk_size < n:
    if n % chunk_size:
      raise UserError(f"{chunk_field}={chunk_size} must divide the "
                      f"subset size {n}")
    xs = x.reshape((n // chunk_size, chunk_size) + x.shape[1:])
    ys = y.reshape((n // chunk_size, chunk_size) + y.shape[1:])

    def loss(params, batch_stats):
      sums = jax.lax.map(lambda b: chunk_loss(params, batch_stats, *b), (xs, ys))
      return jnp.sum(sums) / n
    return loss

  return lambda params, batch_stats: chunk_loss(params, batch_stats, x, y) / n


def top_eigenvalues(loss: Callable, params, batch_stats, key, *, k: int = 1,
                    method: str = "lanczos", num_steps: int = 40,
                    tol: float = 1e-4) -> Dict[str, jnp.ndarray]:
  """One run: {"eigenvalues": [k] (largest magnitude first), "residual": []}.

  `loss(params, batch_stats)`; the Hessian is taken over `params`.
  """
  matvec, dim, dtype = flat_operator(lambda p: loss(p, batch_stats), params)
  if method == "lanczos":
    evals, _, res = lanczos(matvec, dim, k, key, num_steps=num_steps,
                            dtype=dtype)
    scale = jnp.maximum(jnp.abs(evals[0]), jnp.finfo(dtype).tiny)
    return {"eigenvalues": evals, "residual": jnp.max(res) / scale}
  if method == "power":
    evals, _, _, err = power_iteration(matvec, dim, k, key,
                                       num_iters=num_steps, tol=tol,
                                       dtype=dtype)
    return {"eigenvalues": evals, "residual": err}
  raise UserError(f"unknown hessian.method {method!r}; valid: "
                  f"{', '.join(METHODS)}")


def spectrum_fn(loss: Callable, *, k: int = 1, method: str = "lanczos",
                num_steps: int = 40, tol: float = 1e-4) -> Callable:
  """jit(vmap(top_eigenvalues)) over the run axis:
  fn(params [R, ...], batch_stats [R, ...], keys [R, 2]) -> {[R, k], [R]}."""
  one = functools.partial(top_eigenvalues, loss, k=k, method=method,
                          num_steps=num_steps, tol=tol)
  return jax.jit(jax.vmap(one))


def subset(split, size: int, seed: int):
  """A fixed random subset of `size` examples of a `Split` (all if size >= N)."""
  n = split.num_examples
  if size <= 0 or size >= n:
    return split.x, split.y
  idx = np.sort(np.random.default_rng([int(seed), 77]).choice(n, size, replace=False))
  return split.x[idx], split.y[idx]


def hessian_callback(trainer, *, every: int, k: int = 1,
                     method: str = "lanczos", num_steps: int = 40,
                     tol: float = 1e-4, subset_size: int = 1000,
                     chunk_size: int = 0, seed: int = 0,
                     name: str = "hessian"):
  """A `trainer.Callback` writing the top-k Hessian eigenvalues of every run.

  Validates everything here (raise before `workdir.open()`): the count
  against the parameter count, the method, the subset. Values per run:
  eig_0 .. eig_{k-1} (largest magnitude first) and `residual` (relative).
  """
  from jaxunknowns.trainer import Callback  # pylint: disable=g-import-not-at-top
  num_params = int(sum(np.prod(x.shape) for x in
                       jax.tree.leaves(trainer.params_template)))
  check_num_eigenvalues(k, num_params)
  if method not in METHODS:
    raise UserError(f"unknown hessian.method {method!r}; valid: "
                    f"{', '.join(METHODS)}")
  if num_steps < 1:
    raise UserError(f"hessian.num_steps={num_steps} is out of range: must be >= 1")
  if method == "lanczos":
    check_lanczos_steps(num_steps, num_params, "hessian.num_steps")
    if num_steps < k:
      raise UserError(f"hessian.num_steps={num_steps} Lanczos steps cannot "
                      f"give k={k} eigenvalues: use num_steps >= k")
  if every < 1:
    raise UserError(f"hessian.every={every} is out of range: must be >= 1")
  x, y = subset(trainer.dataset.train, subset_size, seed)
  x = jax.device_put(x, trainer.replicated)
  y = jax.device_put(y, trainer.replicated)
  loss = network_loss(trainer.model, trainer.loss_fn, x, y,
                      has_batch_stats=trainer.has_batch_stats,
                      chunk_size=chunk_size)
  fn = spectrum_fn(loss, k=k, method=method, num_steps=num_steps, tol=tol)
  base_key = prng.key(seed)

  def run(trainer_, state, step):
    del trainer_
    num_runs = int(np.shape(state["step"])[0])
    # The same start vectors at every step: the curve changes with the
    # weights only.
    keys = jax.random.split(base_key, num_runs)
    out = distributed.device_get(fn(state["params"], state["batch_stats"], keys))
    del step
    values = {f"eig_{i}": np.asarray(out["eigenvalues"][:, i])
              for i in range(k)}
    values["residual"] = np.asarray(out["residual"])
    return values

  return Callback(name=name, every=int(every), fn=run)


def callback_from_config(trainer, hessian_config) -> Optional[Any]:
  """`hessian_callback` from a `hessian` config section (None if disabled)."""
  if hessian_config is None or not hessian_config.get("enabled", False):
    return None
  c = hessian_config
  return hessian_callback(trainer, every=c.every, k=c.k, method=c.method,
                          num_steps=c.num_steps, tol=c.tol,
                          subset_size=c.subset_size, chunk_size=c.chunk_size,
                          seed=c.seed)
