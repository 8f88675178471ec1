"""Sharpness-aware minimization (Foret, Kleiner, Mobahi & Neyshabur 2021) and
its adaptive form ASAM (Kwon, Kim, Park & Choi 2021) as an optax
transformation.

One SAM step at the parameters w, with g = ∇L(w) on the minibatch:

    ε = ρ g / ‖g‖                      SAM (‖·‖: the global l2 norm)
    ε = ρ T² g / ‖T g‖,  T = |w| + η   ASAM (element-wise; T = 1 on biases,
                                       as in Kwon et al.'s code, which
                                       scales only "weight" tensors)
    h = ∇L(w + ε)                      a second gradient: same batch, same
                                       dropout mask
    the inner optimizer's update of h, applied at w (not at w + ε).

L is the data loss alone: weight decay (optim.weight_decay) is the inner
optimizer's, added to h at w, so it neither turns ε nor is taken at w + ε.
That is PyTorch SAM's and ASAM's code (decay in the base optimizer);
google-research/sam puts the L2 term in the loss, so its ε follows g + λw
and its second gradient holds λ(w + ε). The two ε's part most late in
training, where ‖g‖ shrinks towards ‖λw‖.

ε maximizes the first-order loss over the ball ‖ε‖ ≤ ρ (ASAM: over
‖T⁻¹ε‖ ≤ ρ), so ‖ε‖ = ρ (‖T⁻¹ε‖ = ρ) exactly; a zero gradient gives ε = 0.

`update(g, state, params, grad_fn=...)`: the caller passes the gradient at w
and `grad_fn(params) -> gradient` of the same minibatch loss (the trainer's
`train_step` builds it; BatchNorm's running statistics come from the first
forward pass only, so `grad_fn` returns gradients and nothing else -- the
pitfall of PyTorch SAM code that updates them in both passes).

m-sharpness (`sub_batches=True`): g and grad_fn's input and output carry a
leading axis of k sub-batches of m examples each; every sub-batch gets its
own ε_j from its own gradient and h = mean_j ∇L_j(w + ε_j) (Foret et al.,
Sec. 4.1: their per-accelerator SAM gradients, averaged).

Why not `optax.contrib.sam`: its opaque mode (a `grad_fn` through update's
extra arguments) is the same idea, but it computes one adversarial point and
hands that point's gradient straight to the outer optimizer, so m-sharpness
(k points, their gradients averaged *before* the optimizer) does not fit; its
ascent is a chain of transformations of the gradient alone, while ASAM's
scaling reads the parameters; and its `normalize()` divides by ‖g‖ with no
guard, so a zero gradient (a fully frozen or pruned block, a ρ = 0 run of a
per-run sweep at a stationary point) gives NaN where ε = 0 is the answer.
"""

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax


class SAMState(NamedTuple):
  """State of `sam`: the inner optimizer's state (SAM itself keeps none)."""
  inner_state: optax.OptState


def _is_bias(path) -> bool:
  last = path[-1] if path else None
  return getattr(last, "key", getattr(last, "name", None)) == "bias"


def asam_scale(params, eta: float):
  """T = |w| + η per entry; 1 on leaves named "bias"."""
  return jax.tree_util.tree_map_with_path(
      lambda path, w: jnp.ones_like(w) if _is_bias(path) else
      jnp.abs(w) + eta, params)


def perturbation(grads, params, rho, *, adaptive: bool = False,
                 eta: float = 0.01, perturb=None):
  """ε of one gradient (see the module docstring). `perturb`: an optional
  tree of Python bools, False where a leaf is not perturbed (frozen)."""
  if perturb is not None:
    grads = jax.tree.map(lambda g, keep: g if keep else jnp.zeros_like(g),
                         grads, perturb)
  if adaptive:
    scale = asam_scale(params, eta)
    grads = jax.tree.map(jnp.multiply, scale, grads)  # T g
  norm = optax.tree.norm(grads)
  factor = jnp.where(norm > 0, rho / jnp.where(norm > 0, norm, 1.0), 0.0)
  eps = jax.tree.map(lambda g: (factor * g).astype(g.dtype), grads)
  if adaptive:
    eps = jax.tree.map(jnp.multiply, scale, eps)  # ρ T (T g) / ‖T g‖
  return eps


def sam(inner: optax.GradientTransformation, rho, *, adaptive: bool = False,
        eta: float = 0.01, sub_batches: bool = False,
        perturb=None) -> optax.GradientTransformationExtraArgs:
  """`inner` applied to the gradient at the SAM (or ASAM) ascent point.

  `rho` may be a traced scalar (one per run under vmap: ρ as a run axis).
  update(g, state, params, *, grad_fn, **extra): `grad_fn(params)` is the
  minibatch gradient at any parameters; with `sub_batches`, g and grad_fn's
  argument and result have a leading sub-batch axis (m-sharpness). The
  remaining extra arguments go to `inner`.
  """
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    return SAMState(inner_state=inner.init(params))

  def update_fn(updates, state, params=None, *,
                grad_fn: Optional[Callable[[Any], Any]] = None, **extra):
    if params is None or grad_fn is None:
      raise ValueError("sam's update needs params and grad_fn(params) -> "
                       "the minibatch gradient")
    one = lambda g: perturbation(g, params, rho, adaptive=adaptive, eta=eta,
                                 perturb=perturb)
    if sub_batches:
      eps = jax.vmap(one)(updates)
      ascent = jax.tree.map(lambda w, e: w[None] + e, params, eps)
      grads = jax.tree.map(lambda h: jnp.mean(h, axis=0), grad_fn(ascent))
    else:
      ascent = jax.tree.map(jnp.add, params, one(updates))
      grads = grad_fn(ascent)
    direction, inner_state = inner.update(grads, state.inner_state, params,
                                          **extra)
    return direction, SAMState(inner_state=inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
