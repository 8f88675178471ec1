"""Saliency scores for pruning at initialization, each as its paper defines
it, on params-shaped pytrees (per run; the scores have the mask's structure:
an array at each prunable kernel, None elsewhere).

* SNIP (Lee, Ajanthan & Torr 2019): |∂L/∂w ⊙ w| on one batch; the lowest
  are pruned.
* GraSP (Wang, Zhang & Grosse 2020): −w ⊙ Hg, with g = ∂L/∂w and H the
  Hessian of the loss over the prunable kernels (the reference code's
  `weights`: biases and norms are neither in g nor differentiated), Hg by a
  forward-over-reverse Hessian-vector product; the loss on logits / T
  (T = 200 in the reference code). Scored on the network's own
  initialization: the reference code first redraws the Linear layers of its
  scoring copy (xavier_normal, `reinit=True`), which is not done here. The
  HIGHEST scores are pruned: the sign
  and the pruned end flip together (pruning the lowest −w ⊙ Hg is the known
  wrong variant). "grasp_magnitude": |w ⊙ Hg|, lowest pruned (Lubana & Dick
  2021's magnitude variant).
* SynFlow (Tanaka, Kunin, Yamins & Ganguli 2020): data-free. Linearize the
  network (|θ| for every parameter and BN statistic, BN in eval mode), feed
  an all-ones input, R = 1ᵀ f(1); score |∂R/∂w ⊙ w| on the masked |w|;
  iterated over `rounds` with the exponential schedule d^(k/rounds), the
  lowest pruned each round.
* "magnitude": |w| at initialization; "random": i.i.d. uniform scores.

`PRUNE_END[method]` says which end a method prunes; `keep_scores` returns
scores where higher means kept, so one selection serves every method
(budgets.keep_top), and inversion takes the other end of the same scores.
"""

from typing import Callable

import jax
import jax.numpy as jnp

from jaxunknowns.errors import UserError
from jaxunknowns.pruning import budgets

METHODS = ("snip", "grasp", "grasp_magnitude", "synflow", "magnitude",
           "random")
# Which end of the paper's score is pruned.
PRUNE_END = {"grasp": "highest", "snip": "lowest", "grasp_magnitude": "lowest",
             "synflow": "lowest", "magnitude": "lowest", "random": "lowest"}
NEEDS_DATA = ("snip", "grasp", "grasp_magnitude")


def check_method(method: str) -> str:
  if method not in METHODS:
    raise UserError(f"unknown pruning-at-init method {method!r}; valid: "
                    f"{', '.join(METHODS)}")
  return method


def _is_none(x) -> bool:
  return x is None


def on_mask(fn, mask, *trees):
  """fn(mask leaf, *leaves) at the mask's kernels, None elsewhere."""
  return jax.tree.map(lambda m, *xs: None if m is None else fn(m, *xs),
                      mask, *trees, is_leaf=_is_none)


def _masked(params, mask):
  """`params` with pruned kernel entries set to zero."""
  return jax.tree.map(
      lambda m, w: w if m is None else jnp.where(m, w, jnp.zeros_like(w)),
      mask, params, is_leaf=_is_none)


def _kernels_only(tree, mask):
  """`tree` with every leaf outside the mask's kernels set to zero."""
  return jax.tree.map(lambda m, x: jnp.zeros_like(x) if m is None else x,
                      mask, tree, is_leaf=_is_none)


def snip(loss: Callable, params, mask):
  """|∂L/∂w ⊙ w| at the kernels; `loss(params) -> scalar` on one batch."""
  params = _masked(params, mask)
  g = jax.grad(loss)(params)
  return on_mask(lambda m, gi, w: jnp.where(m, jnp.abs(gi * w), 0.0), mask,
                 g, params)


def hessian_gradient(loss: Callable, params, mask):
  """H g over the prunable kernels: g = ∂L/∂(kernels), H = ∂²L/∂(kernels)²
  (other parameters held fixed), as a pytree zero outside the kernels."""
  grad = jax.grad(loss)
  g = jax.lax.stop_gradient(_kernels_only(grad(params), mask))
  return _kernels_only(jax.jvp(grad, (params,), (g,))[1], mask)


def grasp(loss: Callable, params, mask, magnitude: bool = False):
  """The paper's score −w ⊙ Hg (prune the highest), or |w ⊙ Hg|."""
  params = _masked(params, mask)
  hg = hessian_gradient(loss, params, mask)
  fn = ((lambda m, h, w: jnp.where(m, jnp.abs(w * h), 0.0)) if magnitude
        else (lambda m, h, w: jnp.where(m, -w * h, 0.0)))
  return on_mask(fn, mask, hg, params)


def synflow(output_sum: Callable, params, mask):
  """|∂R/∂w ⊙ w| on the linearized, masked network; `output_sum(abs_params)`
  is R = 1ᵀ f(1) with |θ| params (and |BN statistics|, eval mode)."""
  lin = jax.tree.map(jnp.abs, _masked(params, mask))
  g = jax.grad(output_sum)(lin)
  return on_mask(lambda m, gi, w: jnp.where(m, jnp.abs(gi * w), 0.0), mask,
                 g, lin)


def magnitude(params, mask):
  return on_mask(lambda m, w: jnp.where(m, jnp.abs(w), 0.0), mask, params)


def random(mask, rng):
  leaves = [m for _, m in budgets.mask_layers(mask)]
  keys = jax.random.split(rng, max(len(leaves), 1))
  it = iter(range(len(leaves)))
  return on_mask(lambda m: jax.random.uniform(keys[next(it)], m.shape), mask)


def keep_scores(method: str, scores):
  """Scores where higher = kept: the paper's score, negated where the method
  prunes the highest (GraSP)."""
  if PRUNE_END[check_method(method)] == "highest":
    return jax.tree.map(jnp.negative, scores)
  return scores


def iterative(score_fn: Callable, mask, density: float, budget: str,
              rounds: int):
  """SynFlow's loop: `rounds` times, score the current mask and keep the
  exponential schedule's d^(k/rounds) (a weight pruned stays pruned)."""
  density = budgets.check_density(density)
  if not isinstance(rounds, int) or rounds < 1:
    raise UserError(f"rounds={rounds!r} must be an integer >= 1")
  for k in range(1, rounds + 1):
    mask = budgets.select(score_fn(mask), mask, density ** (k / rounds),
                          budget)
  return mask


# ---------------------------------------------------------------- Sanity checks
# (Frankle, Dziugaite, Roy & Carbin 2021; Zhou et al. 2019). Shuffling within
# each layer is `pruning.random_mask_like`; reinitialization is a fresh init
# under the same mask (the experiment draws it).


def layer_counts_of(mask):
  """The kept count of each layer of a mask (ints, mask order)."""
  return [int(jnp.sum(jnp.asarray(m, bool)))
          for _, m in budgets.mask_layers(mask)]


def inverted(keep, found):
  """Keep the LOWEST keep-scores of each layer, as many as `found` keeps
  there: the complementary end at the same per-layer density."""
  counts = layer_counts_of(found)
  ones = on_mask(lambda m: jnp.ones(jnp.shape(m), bool), found)
  return budgets.keep_top(jax.tree.map(jnp.negative, keep), ones, counts,
                          sum(counts))


def sign_flipped(params, mask):
  """`params` with every kept kernel weight's sign flipped (Zhou et al.)."""
  return jax.tree.map(
      lambda m, w: w if m is None else jnp.where(m, -w, w), mask, params,
      is_leaf=_is_none)
