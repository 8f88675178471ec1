"""Optimizers, learning-rate schedules and parameter freezing, from config.optim.

Design: the optax transformation built here yields a *direction* (no learning
rate, no sign); the train step multiplies it by `-schedule(state.step)`. The
schedule is therefore a function of the run's own step counter, not of a count
hidden in the optimizer state. That is what lets lottery-ticket rewinding reset
the optimizer's moments while the schedule carries on from the rewind step,
and it keeps every optimizer in one shape (PyTorch's convention: momentum
buffers accumulate gradients, the learning rate multiplies afterwards).

Weight decay: for sgd/momentum/nesterov/adam it is an L2 term added to the
gradient (PyTorch and OpenLTH); for adamw it is decoupled (Loshchilov & Hutter).
Frozen parameters go through `optax.set_to_zero`, so no decay touches them.
`optim.decay_on` chooses the leaves it touches (`DECAY_ON`): every one (the
default), every kernel, or only the kernels a norm makes scale-invariant
(`normalized_kernels`, van Laarhoven 2017), through optax's own mask.

Sharpness-aware minimization (sam.py): with optim.sam_rho > 0 (or ρ per run)
the whole direction transform is wrapped by `sam.sam`, whose update needs
`grad_fn` (the trainer's train_step passes it); frozen leaves are not
perturbed, and `with_update_mask` masks grad_fn's gradients as it masks the
first one (a pruned weight is neither perturbed nor seen by the moments).

Per-run hyperparameters (`RUN_HPARAMS`, see hparams.py): the transform and
the schedule are built from `with_values(cfg, values)`, where `values` may be
traced scalars (one per run under vmap); only their values change, never the
state's shapes, so R runs with R learning rates share one compiled program.
"""

import re
from typing import Any, Callable, Mapping, NamedTuple, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from jaxunknowns import sam as sam_lib
from jaxunknowns.errors import UserError
from jaxunknowns.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer", "optim.name")
SCHEDULES: Registry = Registry("schedule", "optim.schedule")

# config.optim fields that may differ between the runs of one compiled
# program: they are numbers inside the update, not shapes or structure.
RUN_HPARAMS = ("lr", "weight_decay", "momentum", "b1", "b2", "eps",
               "sam_rho")


# The config.optim fields that only some optimizers or schedules read: moved
# from its default while the chosen one does not read it, a field is refused
# (validation.check_choices), not recorded unused. tests/test_unused_fields.py
# checks these tables against what each builder reads.
ADAM_FIELDS = ("b1", "b2", "eps")
OPTIMIZER_FIELDS = {"sgd": (), "momentum": ("momentum",),
                    "nesterov": ("momentum",), "adam": ADAM_FIELDS,
                    "adamw": ADAM_FIELDS}
SCHEDULE_FIELDS = {"constant": (), "step": ("boundaries", "decay_factor"),
                   "cosine": ()}


class ConfigWithValues:
  """config.optim read through, some fields replaced (see `with_values`)."""

  def __init__(self, cfg, values: Mapping[str, Any]):
    self._cfg, self._values = cfg, dict(values)

  def __getattr__(self, name):
    if name in self._values:
      return self._values[name]
    return getattr(self._cfg, name)

  def get(self, name, default=None):
    return self._values.get(name, self._cfg.get(name, default))


def with_values(cfg, values: Mapping[str, Any]) -> ConfigWithValues:
  """`cfg` (config.optim) with `values` ({field of RUN_HPARAMS: a number or
  a traced scalar}) in place of its own: what `create_optimizer` and
  `learning_rate_schedule` read to build one run's update inside vmap."""
  unknown = set(values) - set(RUN_HPARAMS)
  if unknown:
    raise ValueError(f"not per-run optimizer fields: {sorted(unknown)}")
  return ConfigWithValues(cfg, values)


# optim.decay_on -> the leaves weight decay touches, in the words of a
# report's protocol key "decay on" (batchnorm/papers.py DECAY_WITH_BN).
DECAY_ON = {"all": "every parameter", "kernels": "every kernel",
            "normalized": "the kernels a norm follows"}


def decay_on_words(cfg) -> str:
  """What a run decayed, for its report; a config written before
  optim.decay_on existed decayed every parameter."""
  return DECAY_ON[cfg.get("decay_on", "all")]


def leaf_path(key_path) -> str:
  """'module/submodule/kernel' of a jax key path, as `param_paths` names a
  leaf (mask files and layer names use it too)."""
  return "/".join(str(getattr(k, "key", k)) for k in key_path)


def _is_kernel(path: str) -> bool:
  # Flax names the weights of nn.Dense and nn.Conv `kernel` in every model.
  return path.rsplit("/", 1)[-1] == "kernel"


def decay_mask(cfg, normalized=None):
  """optim.decay_on as optax's mask: None (every leaf, the transform as it
  always was) or a function params -> bools by leaf path. A function, not a
  tree: inside `optax.partition` (optim.freeze) it sees the trained leaves
  only, frozen ones being empty MaskedNodes. `normalized`: the paths
  `normalized_kernels` found, which "normalized" needs."""
  on = cfg.get("decay_on", "all")
  if on == "all":
    return None
  if on == "normalized" and normalized is None:  # an optimizer built apart
    raise UserError("optim.decay_on='normalized': this experiment builds an "
                    "optimizer without the trainer's probe of the normalized "
                    "kernels; use optim.decay_on='kernels' or 'all'")
  chosen = _is_kernel if on == "kernels" else frozenset(normalized).__contains__
  return lambda params: jax.tree_util.tree_map_with_path(
      lambda key_path, _: chosen(leaf_path(key_path)), params)


def _decay(cfg, mask):
  """Weight decay, or nothing: a zero decay still costs a pass over the
  params every step (17% of a LeNet step on CPU). A per-run decay (an
  array) is always applied: some runs may have it nonzero. `mask`:
  `decay_mask`'s (None: every leaf)."""
  wd = cfg.weight_decay
  return ([optax.add_decayed_weights(wd, mask)]
          if isinstance(wd, jax.Array) or wd else [])


@OPTIMIZERS.register("sgd")
def _sgd(cfg, mask=None):
  decay = _decay(cfg, mask)
  return optax.chain(*decay) if decay else optax.identity()


@OPTIMIZERS.register("momentum")
def _momentum(cfg, mask=None):
  return optax.chain(*_decay(cfg, mask),
                     optax.trace(decay=cfg.momentum, nesterov=False))


@OPTIMIZERS.register("nesterov")
def _nesterov(cfg, mask=None):
  return optax.chain(*_decay(cfg, mask),
                     optax.trace(decay=cfg.momentum, nesterov=True))


@OPTIMIZERS.register("adam")
def _adam(cfg, mask=None):
  return optax.chain(*_decay(cfg, mask),
                     optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps))


@OPTIMIZERS.register("adamw")
def _adamw(cfg, mask=None):
  return optax.chain(optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps),
                     *_decay(cfg, mask))


@SCHEDULES.register("constant")
def _constant(cfg, total_steps):
  del total_steps
  return optax.constant_schedule(cfg.lr)


@SCHEDULES.register("step")
def _step(cfg, total_steps):
  del total_steps
  return optax.piecewise_constant_schedule(
      cfg.lr, {int(b): cfg.decay_factor for b in cfg.boundaries})


@SCHEDULES.register("cosine")
def _cosine(cfg, total_steps):
  decay = optax.cosine_decay_schedule(
      cfg.lr, max(1, total_steps - cfg.warmup_steps))
  return lambda step: decay(jnp.maximum(step - cfg.warmup_steps, 0))


def learning_rate_schedule(cfg, total_steps: int) -> Callable[[Any], Any]:
  """`step -> lr`, the formula of config_defaults.py: lr·t/W for the first
  W = warmup_steps steps, then the named schedule at the *absolute* step t
  (step boundaries are the steps written, not shifted by W; cosine decays
  from lr at W to 0 at total_steps)."""
  schedule = SCHEDULES.get(cfg.schedule)(cfg, total_steps)
  if cfg.warmup_steps <= 0:
    return schedule
  warmup = optax.linear_schedule(0.0, cfg.lr, cfg.warmup_steps)
  return lambda step: jnp.where(step < cfg.warmup_steps, warmup(step),
                                schedule(step))


def param_paths(params) -> list:
  """'module/submodule/kernel' path of every leaf, in tree order."""
  return ["/".join(k) for k in traverse_util.flatten_dict(params)]


def compiled_pattern(field: str, regex: str):
  """The config field `field`'s regex, compiled; one that is no regex is a
  UserError naming the field (re.error was a traceback). Validation calls
  it before the model exists (validation._validate_base)."""
  try:
    return re.compile(regex)
  except re.error as e:
    raise UserError(f"{field}={regex!r} is not a regular expression ({e}); "
                    "give one over parameter paths such as "
                    "'Dense_0/kernel' or 'BatchNorm'") from None


def _path_pattern(field: str, regex: str, paths):
  """The config field `field`'s regex over parameter paths, compiled; one
  that matches no path is a UserError naming the paths that exist."""
  pattern = compiled_pattern(field, regex)
  if not any(pattern.search(p) for p in paths):
    raise UserError(f"{field}={regex!r} matches no parameter; parameters "
                    f"are: {', '.join(paths)}")
  return pattern


def trainable_labels(cfg, params):
  """A tree of 'train'/'frozen' labels from optim.freeze / optim.train_only."""
  paths = param_paths(params)
  frozen = {p: False for p in paths}
  if cfg.train_only:
    pattern = _path_pattern("optim.train_only", cfg.train_only, paths)
    frozen = {p: not pattern.search(p) for p in paths}
  if cfg.freeze:
    pattern = _path_pattern("optim.freeze", cfg.freeze, paths)
    frozen = {p: frozen[p] or bool(pattern.search(p)) for p in paths}
  if paths and all(frozen.values()):
    # Every update would be zero: the run trained nothing, exit 0 (found
    # here, as the trainer is built, before the workdir is touched).
    fields = " with ".join(f"optim.{f}={cfg[f]!r}"
                           for f in ("train_only", "freeze") if cfg[f])
    raise UserError(f"{fields} freezes every parameter, leaving nothing to "
                    f"train: match fewer (parameters are: {', '.join(paths)})")
  flat = {tuple(p.split("/")): ("frozen" if frozen[p] else "train")
          for p in paths}
  return traverse_util.unflatten_dict(flat)


def count_trainable(cfg, params) -> Tuple[int, int]:
  """(trainable, total) parameter counts of one run's params."""
  labels = traverse_util.flatten_dict(trainable_labels(cfg, params))
  sizes = {k: v.size for k, v in traverse_util.flatten_dict(params).items()}
  trainable = sum(sizes[k] for k, label in labels.items() if label == "train")
  return int(trainable), int(sum(sizes.values()))


def uses_sam(cfg) -> bool:
  """SAM is on when optim.sam_rho > 0 or is a per-run value (an array; a
  run at ρ = 0 then steps exactly as without SAM). Configs written before
  SAM existed have no sam_rho: off."""
  rho = cfg.get("sam_rho", 0.0)
  return isinstance(rho, jax.Array) or rho > 0


def sam_sub_batches(cfg, batch_size: int) -> int:
  """k, the m-sharpness sub-batches of a step (optim.sam_m = m examples
  each); 0 when SAM takes the whole batch at once (sam_m = 0)."""
  m = int(cfg.get("sam_m", 0) or 0)
  return batch_size // m if uses_sam(cfg) and m > 0 else 0


def normalized_kernels(forward, params, key, rtol: float = 1e-3) -> list:
  """Paths of the kernels a normalization makes scale-invariant: doubling
  one alone leaves `forward(params)` (train-mode outputs on a batch, batch
  statistics and dropout fixed by the caller) unchanged to `rtol`.

  A probe of the function, not a structural rule: whether a norm undoes a
  kernel's scale depends on each model's wiring (BN before or after the
  ReLU, a bias in between, LayerNorm over features, residual branches), and
  invariance is van Laarhoven's (2017) own condition. Every leaf is first
  moved by a random amount: at init biases are 0 and γ is 1, where a
  kernel can be invariant by accident (ReLU(2z) = 2·ReLU(z) before a later
  norm) that training then breaks, and a zero-initialized kernel is
  unchanged by doubling. Doubling is exact in floating point; BN's ε moves
  the output by ~ε/σ² (≪ rtol)."""
  forward = jax.jit(forward)
  flat = traverse_util.flatten_dict(params)
  keys = jax.random.split(key, len(flat))
  moved = {k: v + jax.random.normal(r, jnp.shape(v), jnp.result_type(v))
              * (jnp.std(v) + 0.1 if _is_kernel("/".join(k)) else 1.0)
           for r, (k, v) in zip(keys, flat.items())}
  out = forward(traverse_util.unflatten_dict(moved))
  if not jnp.any(out):  # nothing to compare a doubled kernel's output with
    return []
  found = []
  for k in moved:
    if not _is_kernel("/".join(k)):
      continue
    scaled = forward(traverse_util.unflatten_dict({**moved, k: 2 * moved[k]}))
    if jnp.linalg.norm(scaled - out) <= rtol * jnp.linalg.norm(out):
      found.append("/".join(k))
  return found


def create_optimizer(cfg, params, normalized=None
                     ) -> optax.GradientTransformation:
  """The lr-free direction transform for `params` (one run's tree);
  `normalized`: the kernel paths optim.decay_on='normalized' decays."""
  direction = OPTIMIZERS.get(cfg.name)(cfg, mask=decay_mask(cfg, normalized))
  if cfg.grad_clip > 0:
    direction = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), direction)
  labels = None
  if cfg.freeze or cfg.train_only:
    labels = trainable_labels(cfg, params)
    direction = optax.partition(
        {"train": direction, "frozen": optax.set_to_zero()}, labels)
  if uses_sam(cfg):
    direction = sam_lib.sam(
        direction, cfg.sam_rho, adaptive=bool(cfg.get("sam_adaptive", False)),
        eta=float(cfg.get("sam_eta", 0.01)),
        sub_batches=bool(cfg.get("sam_m", 0)),
        perturb=None if labels is None else jax.tree.map(
            lambda label: label == "train", labels))
  return direction


def global_norm(tree) -> jax.Array:
  """optax.tree.norm summed in float32: the trainer's logged norms of
  bfloat16 parameters, gradients and updates (a bfloat16 sum of squares
  keeps 8 bits)."""
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32)))
                      for x in jax.tree.leaves(tree)))


# -----------------------------------------------------------------------------
# The masked-update transform (IMP's pruning masks, BN-only's frozen weights)
# -----------------------------------------------------------------------------
# `freeze` / `train_only` above choose whole leaves, the same for every run.
# Pruning and BN-only's controls need per-entry, per-run choices (a different
# ticket or random draw per seed) while every run trains in one compiled
# program. So the mask is *data*: a params-shaped tree held in the optimizer
# state, bool arrays (True = the entry trains) with None at leaves that are
# never masked. Being data, it is vmapped with the state (one mask per run),
# checkpointed with it (a resumed run keeps its mask), and swapped by
# `set_update_mask` without retracing the jitted step.
#
# Why mask both before and after the inner optimizer: *after* is what keeps
# masked entries fixed -- given a zero gradient, momentum residue, Adam's
# leftover moments or weight decay would still move them; masking the final
# update makes `param - lr * 0` the only possible step (a pruned weight stays
# exactly 0, a frozen one bit for bit unchanged). *Before* makes the inner
# optimizer see only the trained entries: their moments stay zero and
# coordinate-coupled statistics (global-norm clipping, trust ratios) are those
# of the smaller network. Neither alone is enough.
#
# Masking is a `jnp.where`, not a product: it keeps the dtype (a float mask
# would promote bf16) and a NaN/inf at a masked entry cannot leak as NaN * 0.
# At an IMP rewind the trainer builds a fresh optimizer state (zero moments,
# as OpenLTH re-creates its optimizer every level) and sets the mask into it.


class UpdateMaskState(NamedTuple):
  """State of `with_update_mask`: the mask and the wrapped optimizer's state."""
  mask: Any
  inner_state: optax.OptState


def _is_none(x) -> bool:
  return x is None


@jax.jit
def apply_mask(tree, mask):
  """`tree` (params, grads, updates) with the entries where mask is False set
  to zero; leaves where the mask is None pass through. With or without a
  leading run axis (mask and tree must agree on it)."""
  def mask_leaf(m, x):
    if m is None or x is None:
      return x
    return jnp.where(m, x, jnp.zeros((), jnp.asarray(x).dtype))
  return jax.tree.map(mask_leaf, mask, tree, is_leaf=_is_none)


def _as_bool(mask):
  return jax.tree.map(lambda m: jnp.asarray(m).astype(bool), mask)


def with_update_mask(inner: optax.GradientTransformation, initial_mask=None
                     ) -> optax.GradientTransformationExtraArgs:
  """`inner` restricted to the entries where the mask (in its state) is True.

  `initial_mask`: a mask, or a function params -> mask (IMP passes
  `pruning.ones_mask`: every prunable kernel kept, None elsewhere); None
  means every entry of every leaf trains. `set_update_mask` replaces it.
  """
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    if initial_mask is None:
      mask = jax.tree.map(lambda p: jnp.ones(jnp.shape(p), bool), params)
    else:
      mask = _as_bool(initial_mask(params) if callable(initial_mask)
                      else initial_mask)
    _check_matches(mask, params)
    return UpdateMaskState(mask=mask, inner_state=inner.init(params))

  def update_fn(updates, state, params=None, **extra_args):
    m = state.mask
    updates = apply_mask(updates, m)
    # `params` go to the inner optimizer as they are, not masked: they are
    # the weights the model runs with (a frozen entry is not 0), and SAM
    # evaluates its second gradient at params + eps. A pruned weight is 0
    # already; per-entry terms of a masked entry (decay) are masked after.
    if extra_args.get("grad_fn") is not None:  # SAM's second gradient
      grad_fn = extra_args["grad_fn"]
      extra_args["grad_fn"] = lambda p: apply_mask(grad_fn(p), m)
    updates, inner_state = inner.update(updates, state.inner_state, params,
                                        **extra_args)
    return apply_mask(updates, m), UpdateMaskState(m, inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _check_matches(mask, reference):
  """The mask must have the reference's tree structure (None leaves aside)
  and its leaves their shapes."""
  def check(path, m, r):
    if m is not None and np.shape(m) != np.shape(r):
      raise ValueError(f"update mask at {jax.tree_util.keystr(path)} has "
                       f"shape {np.shape(m)}, expected {np.shape(r)}")
  try:
    jax.tree_util.tree_map_with_path(check, mask, reference, is_leaf=_is_none)
  except ValueError as e:
    if "update mask at" in str(e):
      raise
    raise ValueError(f"the update mask does not have the expected tree "
                     f"structure: {e}") from e


def _is_mask_state(x) -> bool:
  return isinstance(x, UpdateMaskState)


def get_update_mask(opt_state):
  """The mask of the (single) `with_update_mask` anywhere in `opt_state`."""
  found = [s for s in jax.tree.leaves(opt_state, is_leaf=_is_mask_state)
           if _is_mask_state(s)]
  if len(found) != 1:
    raise ValueError(f"expected one UpdateMaskState, found {len(found)}; "
                     "build the optimizer with with_update_mask(...)")
  return found[0].mask


def _place_like(old, new):
  """`new` on `old`'s devices, committed iff `old` is: jit keys its compiled
  programs on placement too, so anything else would recompile the step."""
  if isinstance(old, jax.core.Tracer) or isinstance(new, jax.core.Tracer):
    return new
  if old.committed:
    return new if new.committed and new.sharding == old.sharding else (
        jax.device_put(new, old.sharding))
  if new.committed:  # Back to an uncommitted, default-placed array.
    return jnp.asarray(np.asarray(new))
  return new


def set_update_mask(opt_state, mask):
  """`opt_state` with its update mask replaced. The new mask must have the
  old one's structure (None leaves included) and shapes (else ValueError);
  values are cast to bool (nonzero = trains) and placed like the old mask,
  so a jitted step neither retraces nor recompiles. Only the mask changes."""
  old = get_update_mask(opt_state)
  if jax.tree.structure(old) != jax.tree.structure(mask):
    raise ValueError(
        "the new update mask has a different tree structure from the current "
        f"one:\n  current: {jax.tree.structure(old)}\n"
        f"  new:     {jax.tree.structure(mask)}")
  _check_matches(mask, old)
  new = jax.tree.map(_place_like, old, _as_bool(mask))
  return jax.tree.map(lambda s: s._replace(mask=new) if _is_mask_state(s)
                      else s, opt_state, is_leaf=_is_mask_state)


def regex_mask(params, pattern: str, field: str):
  """True on every entry of the leaves whose path matches `pattern`; a
  pattern that matches nothing is a UserError naming the paths that exist."""
  regex = _path_pattern(field, pattern, param_paths(params))
  flat = traverse_util.flatten_dict(params)
  return traverse_util.unflatten_dict({
      k: np.full(np.shape(v), bool(regex.search("/".join(k))))
      for k, v in flat.items()})


def random_per_channel_mask(params, pattern: str, per_channel: int,
                            rng: np.random.Generator, fields: Tuple[str, str]):
  """`per_channel` distinct random entries of every output channel (last
  axis) of each leaf matching `pattern`; False everywhere else. `fields`:
  the config's names of the pattern and the count, for a refusal."""
  base = regex_mask(params, pattern, fields[0])
  flat = traverse_util.flatten_dict(base)
  fan_ins = {k: int(np.prod(m.shape[:-1])) for k, m in flat.items() if m.any()}
  if fan_ins and min(fan_ins.values()) < per_channel:
    k = min(fan_ins, key=fan_ins.get)
    raise UserError(
        f"{fields[1]}={per_channel}: {'/'.join(k)} (matched by {fields[0]}) "
        f"has only {fan_ins[k]} weights per output channel; use "
        f"{fields[1]} <= {fan_ins[k]}, or a {fields[0]} that leaves it out")
  out = {}
  for k, m in flat.items():
    if not m.any():
      out[k] = m
      continue
    shape = m.shape
    fan_in = fan_ins[k]
    # The first `per_channel` rows of a random ranking of each column.
    rank = np.argsort(rng.random((fan_in, shape[-1])), axis=0)[:per_channel]
    chosen = np.zeros((fan_in, shape[-1]), bool)
    np.put_along_axis(chosen, rank, True, axis=0)
    out[k] = chosen.reshape(shape)
  return traverse_util.unflatten_dict(out)


def mask_count(mask) -> int:
  """Entries a mask trains (one run's mask)."""
  return int(sum(np.sum(np.asarray(m)) for m in jax.tree.leaves(mask)))
