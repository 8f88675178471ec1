"""Pruning masks inside an optax transform, and what rewinding does to it.

`with_pruning_mask(inner)` wraps any optax optimizer so that pruned weights
(mask == False) get exactly zero updates, forever. The mask lives in the
optimizer state (`PruningMaskState.mask`), as a params-shaped pytree of bool
arrays with `None` at unprunable leaves (see `magnitude.py`), so:

  * it is data, not code: `set_mask` swaps it between IMP levels and the
    jit-compiled train step is reused without retracing (same shapes, dtypes
    and tree structure -- `set_mask` enforces that);
  * it is vmapped with everything else: with a leading run axis each seed
    carries its own mask, and it is checkpointed by orbax with the rest of
    the optimizer state, so a resumed level keeps its mask.

Why mask both before and after the inner optimizer
--------------------------------------------------
*After* is what keeps pruned weights at zero. Given a zero gradient, the
inner update of a pruned weight is still nonzero whenever the inner state
remembers it: momentum residue, Adam's m / (sqrt(v) + eps) with moments left
from before the mask was switched in (they decay over hundreds of steps), or
weight decay of a weight that is not exactly zero. Multiplying the final
update by the mask makes `param + 0` the only possible step.

*Before* makes the inner optimizer see the pruned network and nothing else:
the gradients (and the params it is handed) are masked, so Adam moments and
momentum of pruned weights stay zero instead of accumulating, and transforms
that couple coordinates -- `clip_by_global_norm`, LAMB/LARS trust ratios,
any gradient-norm statistic -- are computed over surviving weights only, as
they would be for a genuinely smaller network. Neither alone is enough.

Masking is a `jnp.where`, not a product: it keeps the update's dtype (a
float mask would promote bf16 updates) and a NaN/inf in a pruned position
cannot leak through as NaN * 0 = NaN.

The optimizer keeps weights at zero once they are zero; the weights are made
zero by `apply_mask(params, mask)` at the start of every level (after rewinding
and before the first step), once.

Optimizer state at a rewind (the policy)
----------------------------------------
IMP starts each level from a fresh optimizer: zero momentum and Adam moments
and Adam's bias-correction count back at 0, with only the mask carried over
(`reset_inner_state`). That is what OpenLTH does: `training/train.py`
creates a new optimizer for every level and loads only the rewound weights;
for late rewinding to step k it fast-forwards the learning-rate schedule to
k, which `reset_inner_state(..., schedule_step=k)` reproduces by setting
optax's schedule counters. Keeping the optimizer state of the rewind point
instead is also possible (checkpoint it at step k, restore it, `set_mask`),
and safe: the post-mask stops stale moments from moving pruned weights.
"""

from typing import List, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxunknowns.pruning.magnitude import Mask, bool_mask, ones_mask

try:  # The per-schedule state of `optax.inject_hyperparams` (not exported).
  from optax.schedules._inject import WrappedScheduleState
  _SCHEDULE_STATES = (optax.ScaleByScheduleState, WrappedScheduleState,
                      optax.InjectHyperparamsState,
                      optax.InjectStatefulHyperparamsState)
except ImportError:  # pragma: no cover - depends on the optax version
  _SCHEDULE_STATES = (optax.ScaleByScheduleState, optax.InjectHyperparamsState,
                      optax.InjectStatefulHyperparamsState)


class PruningMaskState(NamedTuple):
  """State of `with_pruning_mask`: the mask and the wrapped optimizer's state.

  mask: params-shaped pytree, bool arrays at prunable kernels (True = kept),
    None at every other leaf (never masked).
  inner_state: the state of the wrapped optimizer.
  """
  mask: Mask
  inner_state: optax.OptState


def _is_none(x) -> bool:
  return x is None


@jax.jit
def apply_mask(tree, mask: Mask):
  """Zero the entries of `tree` (params, grads, updates) where mask is False.

  `tree` has the params' structure; leaves where the mask is None pass
  through untouched. Works with or without a leading run axis (mask and tree
  must agree on it).
  """
  def mask_leaf(m, x):
    if m is None or x is None:
      return x
    return jnp.where(m, x, jnp.zeros((), jnp.asarray(x).dtype))
  return jax.tree.map(mask_leaf, mask, tree, is_leaf=_is_none)


def _check_matches(mask: Mask, params) -> None:
  """The mask must have the params' structure and its leaves their shapes."""
  def check(path, m, p):
    if m is not None and np.shape(m) != np.shape(p):
      raise ValueError(f"pruning mask at {jax.tree_util.keystr(path)} has "
                       f"shape {np.shape(m)}, the params have {np.shape(p)}")
  try:
    jax.tree_util.tree_map_with_path(check, mask, params, is_leaf=_is_none)
  except ValueError as e:
    if "pruning mask at" in str(e):
      raise
    raise ValueError(
        f"pruning mask does not have the params' tree structure: {e}") from e


def with_pruning_mask(inner: optax.GradientTransformation,
                      mask: Mask = None
                      ) -> optax.GradientTransformationExtraArgs:
  """Wrap `inner` so that weights where the mask is False never move.

  Args:
    inner: any optax transformation (adam, adamw, a chain with weight decay
      and momentum, ...).
    mask: the initial mask; None means `ones_mask(params)` (every prunable
      kernel kept), the usual start of IMP's level 0. Float masks are
      stored as bool (nonzero = kept).

  Returns:
    A transformation whose state is `PruningMaskState(mask, inner_state)`
    and whose update masks the gradients and params going into `inner` and
    the updates coming out (see the module docstring for why both).
  """
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    m = ones_mask(params) if mask is None else bool_mask(mask)
    _check_matches(m, params)
    return PruningMaskState(mask=m, inner_state=inner.init(params))

  def update_fn(updates, state, params=None, **extra_args):
    m = state.mask
    updates = apply_mask(updates, m)
    if params is not None:
      params = apply_mask(params, m)
    updates, inner_state = inner.update(updates, state.inner_state, params,
                                        **extra_args)
    updates = apply_mask(updates, m)
    return updates, PruningMaskState(mask=m, inner_state=inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _is_mask_state(x) -> bool:
  return isinstance(x, PruningMaskState)


def _mask_states(opt_state) -> List[PruningMaskState]:
  found = [s for s in jax.tree.leaves(opt_state, is_leaf=_is_mask_state)
           if _is_mask_state(s)]
  if len(found) != 1:
    raise ValueError(
        f"expected exactly one PruningMaskState in the optimizer state, found "
        f"{len(found)}; build the optimizer with with_pruning_mask(...)")
  return found


def get_mask(opt_state) -> Mask:
  """The mask held by the (single) `with_pruning_mask` in `opt_state`."""
  return _mask_states(opt_state)[0].mask


def _place_like(old, new):
  """`new` on `old`'s devices, committed iff `old` is.

  jit keys its compiled programs on input placement as well as types: a
  committed mask where an uncommitted one was (or another sharding) would
  recompile the train step although it is not retraced.
  """
  if isinstance(old, jax.core.Tracer) or isinstance(new, jax.core.Tracer):
    return new
  if old.committed:
    return new if new.committed and new.sharding == old.sharding else (
        jax.device_put(new, old.sharding))
  if new.committed:  # Back to an uncommitted, default-placed array.
    return jnp.asarray(np.asarray(new))
  return new


def set_mask(opt_state, new_mask: Mask):
  """`opt_state` with its pruning mask replaced by `new_mask`.

  Finds the `PruningMaskState` anywhere in a chained / wrapped state. The new
  mask must have the old one's tree structure and shapes (a mismatch is a
  ValueError); values are cast to bool (nonzero = kept) and placed like the
  old mask, so a jitted train step sees identical input types and placement
  and neither retraces nor recompiles. Only the mask changes: moments are
  untouched (use `reset_inner_state` to restart them).
  """
  old_mask = get_mask(opt_state)
  if jax.tree.structure(old_mask) != jax.tree.structure(new_mask):
    raise ValueError(
        "new pruning mask has a different tree structure from the current "
        f"one:\n  current: {jax.tree.structure(old_mask)}\n"
        f"  new:     {jax.tree.structure(new_mask)}")

  def check(path, old, new):
    if np.shape(old) != np.shape(new):
      raise ValueError(f"new pruning mask at {jax.tree_util.keystr(path)} has "
                       f"shape {np.shape(new)}, expected {np.shape(old)}")
  jax.tree_util.tree_map_with_path(check, old_mask, new_mask)
  new_mask = jax.tree.map(_place_like, old_mask, bool_mask(new_mask))
  return jax.tree.map(
      lambda s: s._replace(mask=new_mask) if _is_mask_state(s) else s,
      opt_state, is_leaf=_is_mask_state)


def reset_inner_state(tx: optax.GradientTransformation, opt_state, params,
                      schedule_step: int = 0):
  """A fresh optimizer state for a new IMP level, keeping the current mask.

  Equivalent to re-creating the optimizer, as OpenLTH does at every level:
  momentum, Adam moments and Adam's step count restart from `tx.init`.
  `schedule_step` sets optax's learning-rate schedule counters
  (`scale_by_schedule`, `inject_hyperparams`) to the rewind step, as
  OpenLTH fast-forwards its schedule when rewinding to step k > 0.

  `tx` must be the transformation that made `opt_state` (the state alone
  cannot be reset: zeroing it would break e.g. `inject_hyperparams`, whose
  state holds the hyper-parameters). Per run: with a leading run axis, call
  it inside `jax.vmap(lambda s, p: reset_inner_state(tx, s, p))`.

  Typical level start:
    mask = prune_global(trained_params, get_mask(opt_state), 0.2)
    params = apply_mask(rewind_params, mask)
    opt_state = set_mask(reset_inner_state(tx, opt_state, params), mask)
  """
  fresh = set_mask(tx.init(params), get_mask(opt_state))
  if not schedule_step:
    return fresh

  def is_schedule(s):
    return isinstance(s, _SCHEDULE_STATES)

  def fast_forward(s):
    if not is_schedule(s):
      return s
    # inject_hyperparams nests per-schedule counters inside its own state.
    fields = {name: jax.tree.map(fast_forward, value, is_leaf=is_schedule)
              for name, value in s._asdict().items() if name != "count"}
    return type(s)(count=jnp.full_like(s.count, schedule_step), **fields)
  return jax.tree.map(fast_forward, fresh, is_leaf=is_schedule)
