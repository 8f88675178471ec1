"""Keskar et al.'s epsilon-sharpness (ICLR 2017, "On large-batch training").

For a loss f and parameters x, the box
    C_eps = {delta : |delta_i| <= eps (|x_i| + 1)}
and the sharpness
    phi(x, f, eps) = 100 * (max_{delta in C_eps} f(x + delta) - f(x)) / (1 + f(x)).
(Keskar et al. define it with a general A; here A = I, the full space of
their Table 3; their Table 4 takes a random 100-dimensional subspace.) The
maximum is taken by projected *sign* gradient ascent:
    delta <- clip(delta + step * r * sign(grad f(x + delta)), -r, r)
with r = eps (|x| + 1). Sign steps are the steepest ascent for a box (an l_inf
geometry after scaling by r), and clipping is the exact projection. The
largest f seen at any iterate is returned, so more iterations never lower
the estimate; it is a lower bound of the true maximum (Keskar et al. use 10
iterations of L-BFGS-B, also a lower bound: `lbfgsb_sharpness_fn`).

The default step is the whole half-width: the first step lands on the
corner that maximizes the loss's linearization, and a later step moves a
coordinate whose gradient changed sign to the centre (each coordinate
visits -r, 0 and r only: an interior maximum is missed, where smaller
steps would find it). Quarter steps need four to reach a face and fell well
short of scipy's converged L-BFGS-B maximum on a trained MLP at ε = 5e-3;
whole steps find at least 90% of it, and more than 10 L-BFGS-B iterations
(tests/test_sharpness.py).

For a convex separable f (e.g. a diagonal quadratic) the first sign step from
delta = 0 already points every coordinate at the box end farther from its
minimiser, which is the exact maximiser: tests check that case and a brute
force over the vertices of a dense quadratic.

`network_sharpness_fn` vmaps this over a trainer's run axis (seeds batched),
on the loss of a fixed training subset with BatchNorm in eval mode
(hessian.network_loss). Every parameter is perturbed, biases and norm
parameters included, as in the paper.
"""

from typing import Callable, Dict

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxunknowns.errors import UserError


def box_radius(params, epsilon: float):
  """eps (|x| + 1) for every parameter."""
  return jax.tree.map(lambda p: epsilon * (jnp.abs(p) + 1.0), params)


def epsilon_sharpness(loss: Callable, params, epsilon: float, *,
                      iterations: int = 20, step: float = 1.0
                      ) -> Dict[str, jnp.ndarray]:
  """{sharpness, loss, max_loss, delta} of scalar `loss(params)`.

  `step` is the sign step as a fraction of the box half-width. `delta` is the
  perturbation of the largest loss found (inside the box by construction).
  Works under jit and vmap.
  """
  if iterations < 1:
    raise UserError(f"sharpness iterations={iterations}: must be >= 1")
  radius = box_radius(params, epsilon)
  value_and_grad = jax.value_and_grad(loss)
  base, _ = value_and_grad(params)
  moved = lambda d: jax.tree.map(jnp.add, params, d)

  def body(_, carry):
    delta, best, best_delta = carry
    value, grad = value_and_grad(moved(delta))
    better = value > best
    best_delta = jax.tree.map(lambda b, d: jnp.where(better, d, b),
                              best_delta, delta)
    best = jnp.maximum(best, value)
    delta = jax.tree.map(
        lambda d, g, r: jnp.clip(d + step * r * jnp.sign(g), -r, r),
        delta, grad, radius)
    return delta, best, best_delta

  zero = jax.tree.map(jnp.zeros_like, params)
  delta, best, best_delta = jax.lax.fori_loop(0, iterations, body,
                                              (zero, base, zero))
  last = loss(moved(delta))  # The final iterate is evaluated too.
  best_delta = jax.tree.map(lambda b, d: jnp.where(last > best, d, b),
                            best_delta, delta)
  best = jnp.maximum(best, last)
  return {"sharpness": 100.0 * (best - base) / (1.0 + base),
          "loss": base, "max_loss": best, "delta": best_delta}


def network_sharpness_fn(loss: Callable, epsilon: float, *,
                         iterations: int = 20, step: float = 1.0) -> Callable:
  """jit(vmap) over runs: fn(params [R, ...], batch_stats [R, ...]) ->
  {sharpness, loss, max_loss}: [R]. `loss(params, batch_stats)` as built by
  hessian.network_loss."""
  def one(params, batch_stats):
    out = epsilon_sharpness(lambda p: loss(p, batch_stats), params, epsilon,
                            iterations=iterations, step=step)
    out.pop("delta")
    return out
  return jax.jit(jax.vmap(one))


def lbfgsb_sharpness_fn(loss: Callable, epsilon: float, *,
                        iterations: int = 10) -> Callable:
  """Keskar et al.'s own maximiser: scipy's L-BFGS-B on −loss over the box,
  `iterations` iterations (theirs: 10), from δ = 0, run after run on the
  host (scipy has no batched form) with one compiled value and gradient.
  fn(params [R, ...], batch_stats [R, ...]) -> {sharpness, loss, max_loss}:
  [R], as `network_sharpness_fn`. The largest loss any evaluation saw is
  kept (L-BFGS-B returns its last iterate, which a line search may leave
  below an earlier one)."""
  from scipy.optimize import fmin_l_bfgs_b  # pylint: disable=g-import-not-at-top

  def fn(params, batch_stats):
    runs = jax.tree.leaves(params)[0].shape[0]
    one = lambda tree, r: jax.tree.map(lambda a: a[r], tree)
    _, unravel = ravel_pytree(one(params, 0))
    negative = jax.jit(jax.value_and_grad(
        lambda v, stats: -loss(unravel(v), stats)))
    out = {"sharpness": [], "loss": [], "max_loss": []}
    for r in range(runs):
      flat, _ = ravel_pytree(one(params, r))
      x0, stats = np.asarray(flat, np.float64), one(batch_stats, r)
      radius = epsilon * (np.abs(x0) + 1.0)
      seen = []
      def objective(delta):
        value, grad = negative(jnp.asarray(x0 + delta, flat.dtype), stats)
        seen.append(-float(value))
        return float(value), np.asarray(grad, np.float64)
      fmin_l_bfgs_b(objective, np.zeros_like(x0), maxiter=iterations,
                    bounds=list(zip(-radius, radius)))
      base, best = seen[0], max(seen)  # the first evaluation is at δ = 0
      out["sharpness"].append(100.0 * (best - base) / (1.0 + base))
      out["loss"].append(base)
      out["max_loss"].append(best)
    return {k: np.asarray(v) for k, v in out.items()}
  return fn
