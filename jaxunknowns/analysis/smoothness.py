"""Santurkar et al. (2018), "How does batch normalization help optimization?":
the smoothness of the loss along the gradient, and internal covariate shift.

Everything is measured on one fixed *probe batch* drawn from the training
set, with the network in train mode (BatchNorm normalizes with the probe
batch's statistics, as in the paper; the running averages are not touched),
through the trainer's own forward (`Trainer.apply`, in train.precision).
`L` below is the mean loss of the probe batch.

* Landscape (their Fig. 4), at the current weights theta with g = grad L(theta)
  and a grid of step sizes eta:
    - loss variation: L(theta - eta g) for each eta, and its range over eta;
    - gradient predictiveness: ||grad L(theta) - grad L(theta - eta g)|| for
      each eta;
    - effective beta-smoothness: max over eta of
      ||grad L(theta) - grad L(theta - eta g)|| / ||eta g||.
  The eta grid is one `vmap` axis, so all step sizes are one compiled program.
* ICS (their Def. 2.1), per layer i with weights W_i: G = grad_{W_i} L at
  the current weights; G' = the same gradient after every earlier layer
  (1 .. i-1, in forward order) took its update; reported as ||G - G'|| and
  cos(G, G'). The update is the one the trainer would take from the probe
  gradient: `trainer.tx.update(grads, opt_state, params)` times
  -schedule(step), so plain SGD moves the earlier layers by -lr * g, momentum
  and Adam by their step from the run's current optimizer state (moments
  are not advanced: only the step is taken). A "layer" is a module with a
  `kernel` (Dense, Conv, the output); the parameters of the modules called
  after it and before the next kernel (its BatchNorm's gamma and beta) move
  with it. Layer 1 has no earlier layers: its ICS is 0 by definition, and
  the computation gives exactly 0.

Noise. With norm="noisy_batch" the loss needs a 'dropout' key; every
measurement at a step uses one key (fold_in(seed key, step)) for all step
sizes and both gradients, so each measure compares one deterministic
function of the weights.

Runs. `landscape_fn` and `ics_fn` are jit(vmap(...)) over the run axis of a
trainer state; `smoothness_callback` / `ics_callback` wrap them as
`trainer.Callback`s (splits "smoothness" and "ics").
"""

from typing import Any, Callable, Dict, List, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
import numpy as np

from jaxunknowns import distributed, prng
from jaxunknowns.errors import UserError


def default_config() -> ml_collections.ConfigDict:
  """The `smoothness` section a config can carry."""
  c = ml_collections.ConfigDict()
  c.every = 100            # Steps between measurements (and at step 0 and the end).
  c.step_sizes = (0.05, 0.1, 0.2, 0.4, 0.8)  # The eta grid (absolute step sizes along -g).
  c.probe_size = 0         # Examples in the fixed probe batch (0 = train.batch_size).
  c.seed = 0               # Seed of the probe batch and of noisy-BN draws.
  c.ics = True             # Also measure the ICS of every layer.
  return c


# -----------------------------------------------------------------------------
# The probe loss: train mode, fixed batch
# -----------------------------------------------------------------------------
def train_mode_loss(model, loss_fn: Callable, x, y, *,
                    has_batch_stats: bool) -> Callable:
  """`loss(params, batch_stats, rng)`: mean loss of (x, y), train mode, of a
  bare Flax `model` in float32 (the callbacks measure through the
  trainer's forward instead: `trainer_loss`).

  As `Trainer.apply(train=True)` in float32: batch statistics, the
  'dropout' stream from `rng`; the updated running averages are dropped.
  """

  def loss(params, batch_stats, rng):
    variables = {"params": params}
    if has_batch_stats:
      variables["batch_stats"] = batch_stats
      logits, _ = model.apply(variables, x, train=True, rngs={"dropout": rng},
                              mutable=["batch_stats"])
    else:
      logits = model.apply(variables, x, train=True, rngs={"dropout": rng})
    return jnp.mean(loss_fn(logits, y))

  return loss


# -----------------------------------------------------------------------------
# Landscape along the gradient
# -----------------------------------------------------------------------------
def landscape(loss: Callable, params, step_sizes) -> Dict[str, jnp.ndarray]:
  """One run; `loss(params)` scalar. Returns loss [], grad_norm [],
  losses [E] = L(theta - eta g), grad_diffs [E] = ||g - grad L(theta - eta g)||,
  beta [] = max_eta grad_diffs / (eta ||g||)."""
  etas = jnp.asarray(step_sizes, jnp.result_type(*jax.tree.leaves(params)))
  value, g = jax.value_and_grad(loss)(params)

  def at(eta):
    moved = jax.tree.map(lambda p, d: p - eta * d, params, g)
    l, g_eta = jax.value_and_grad(loss)(moved)
    return l, optax.tree.norm(jax.tree.map(jnp.subtract, g, g_eta))

  losses, diffs = jax.vmap(at)(etas)
  g_norm = optax.tree.norm(g)
  beta = jnp.max(diffs / (etas * jnp.maximum(g_norm, jnp.finfo(etas.dtype).tiny)))
  return {"loss": value, "grad_norm": g_norm, "losses": losses,
          "grad_diffs": diffs, "beta": beta}


def landscape_fn(loss: Callable, step_sizes) -> Callable:
  """jit(vmap): fn(params [R..], batch_stats [R..], rng [2]) -> {[R], [R, E]}
  (one rng shared by the runs)."""

  def one(params, batch_stats, rng):
    return landscape(lambda p: loss(p, batch_stats, rng), params, step_sizes)

  return jax.jit(jax.vmap(one, in_axes=(0, 0, None)))


def summarize_landscape(out: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """Per-run callback values from `landscape` outputs (leading run axis)."""
  losses, diffs = np.asarray(out["losses"]), np.asarray(out["grad_diffs"])
  values = {"loss": out["loss"], "grad_norm": out["grad_norm"],
            "beta": out["beta"],
            "loss_min": losses.min(1), "loss_max": losses.max(1),
            "loss_range": losses.max(1) - losses.min(1),
            "gpred_min": diffs.min(1), "gpred_max": diffs.max(1)}
  for i in range(losses.shape[1]):
    values[f"loss_eta{i}"] = losses[:, i]
    values[f"gpred_eta{i}"] = diffs[:, i]
  return {k: np.asarray(v) for k, v in values.items()}


# -----------------------------------------------------------------------------
# Layers in forward order, and ICS
# -----------------------------------------------------------------------------
Path = Tuple[str, ...]


def _owns_params(params, path: Path) -> bool:
  node = params
  for name in path:
    if not isinstance(node, dict) or name not in node:
      return False
    node = node[name]
  return isinstance(node, dict) and any(
      not isinstance(v, dict) for v in node.values())


def layer_groups(model, variables, x) -> List[Tuple[Path, List[Path]]]:
  """[(kernel module path, [paths of the modules that move with it])] in
  forward order, from the order in which modules are called.

  Traced abstractly (eval_shape) with train=False, so no rng is needed; the
  call order is the same in train mode.
  """
  params = variables["params"]
  order: List[Path] = []

  def record(next_fun, args, kwargs, context):
    if context.method_name == "__call__":
      path = tuple(context.module.path)
      if path and path not in order and _owns_params(params, path):
        order.append(path)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
  groups: List[Tuple[Path, List[Path]]] = []
  for path in order:
    is_layer = "kernel" in _subtree(params, path)
    if is_layer or not groups:
      groups.append((path, [path]))
    else:
      groups[-1][1].append(path)
  if not groups or "kernel" not in _subtree(params, groups[0][0]):
    raise UserError("the model has no layer with a `kernel` to measure ICS on")
  return groups


def _subtree(params, path: Path):
  for name in path:
    params = params[name]
  return params


def layer_name(path: Path) -> str:
  return "/".join(path)


def earlier_masks(params, groups) -> Any:
  """Pytree of [L + 1] 0/1 rows per leaf: row 0 all zeros (the current
  weights, giving G), row i + 1 ones on the modules of layers before i."""
  num_layers = len(groups)
  owner = {}
  for i, (_, members) in enumerate(groups):
    for m in members:
      owner[m] = i

  def leaf_mask(keypath, leaf):
    names = tuple(k.key for k in keypath)
    # The module that owns this leaf: the longest grouped prefix.
    layer = next((owner[names[:n]] for n in range(len(names) - 1, 0, -1)
                  if names[:n] in owner), None)
    rows = np.zeros(num_layers + 1, np.float32)
    if layer is not None:
      rows[layer + 2:] = 1.0  # row i + 1 for layer i > layer
    return jnp.asarray(rows, leaf.dtype)

  return jax.tree_util.tree_map_with_path(leaf_mask, params)


def ics(loss: Callable, params, update, groups) -> Dict[str, jnp.ndarray]:
  """One run. `update`: the step every parameter would take (a pytree like
  params). Returns l2 [L] = ||G - G'||, cos [L] = cos(G, G'), grad_norm [L]
  = ||G||, for the kernels of `groups` in forward order."""
  masks = earlier_masks(params, groups)

  def grad_after(mask):
    moved = jax.tree.map(lambda p, u, m: p + m * u, params, update, mask)
    return jax.grad(loss)(moved)

  rows = jax.vmap(grad_after)(masks)
  l2, cos, norms = [], [], []
  for i, (path, _) in enumerate(groups):
    kernel = _subtree(rows, path)["kernel"]
    g, g_after = kernel[0], kernel[i + 1]
    ng, na = jnp.linalg.norm(g.ravel()), jnp.linalg.norm(g_after.ravel())
    tiny = jnp.finfo(g.dtype).tiny
    l2.append(jnp.linalg.norm((g - g_after).ravel()))
    cos.append(jnp.vdot(g.ravel(), g_after.ravel()) /
               jnp.maximum(ng * na, tiny))
    norms.append(ng)
  return {"l2": jnp.stack(l2), "cos": jnp.stack(cos),
          "grad_norm": jnp.stack(norms)}


def optimizer_update(tx, schedule: Callable) -> Callable:
  """`update(grads, opt_state, params, step)`: the parameter change the
  trainer's step would apply for these grads (see `Trainer.train_step`)."""

  def update(grads, opt_state, params, step):
    direction, _ = tx.update(grads, opt_state, params)
    lr = schedule(step)
    return jax.tree.map(lambda d: (-lr * d).astype(d.dtype), direction)

  return update


def ics_fn(loss: Callable, groups, update: Callable) -> Callable:
  """jit(vmap): fn(params, batch_stats, opt_state, step [R], rng [2]) ->
  {l2, cos, grad_norm: [R, L]}."""

  def one(params, batch_stats, opt_state, step, rng):
    probe = lambda p: loss(p, batch_stats, rng)
    grads = jax.grad(probe)(params)
    return ics(probe, params, update(grads, opt_state, params, step), groups)

  return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, 0, None)))


# -----------------------------------------------------------------------------
# Trainer callbacks
# -----------------------------------------------------------------------------
def check_settings(*, every, step_sizes, probe_size,
                   field: str = "smoothness"):
  """One-line UserErrors for a bad `smoothness` section."""
  if not isinstance(every, (int, np.integer)) or isinstance(every, bool) or every < 1:
    raise UserError(f"{field}.every={every!r} is out of range: must be an "
                    f"integer >= 1")
  etas = tuple(step_sizes)
  if not etas:
    raise UserError(f"{field}.step_sizes=() is out of range: must be a "
                    f"non-empty grid of step sizes > 0")
  if not all(isinstance(e, (int, float)) and not isinstance(e, bool)
             and np.isfinite(e) and e > 0 for e in etas):
    raise UserError(f"{field}.step_sizes={etas!r} is out of range: every step "
                    f"size must be a finite number > 0")
  if len(set(etas)) != len(etas):  # A repeat is measured twice, listed twice.
    raise UserError(f"{field}.step_sizes={etas!r} is out of range: must be "
                    f"distinct step sizes")
  if not isinstance(probe_size, (int, np.integer)) or probe_size < 0:
    raise UserError(f"{field}.probe_size={probe_size!r} is out of range: must "
                    f"be an integer >= 0 (0 = train.batch_size)")


def probe_batch(trainer, probe_size: int, seed: int):
  """A fixed random batch of the training set (device arrays)."""
  n = len(trainer.dataset.train.y)
  size = probe_size or trainer.batch_size
  if size > n:
    raise UserError(f"smoothness.probe_size={size} is larger than the "
                    f"training set ({n} examples)")
  idx = np.sort(np.random.default_rng([int(seed), 4]).choice(n, size,
                                                            replace=False))
  put = lambda a: jax.device_put(a, trainer.replicated)
  return put(trainer.dataset.train.x[idx]), put(trainer.dataset.train.y[idx])


def trainer_loss(trainer, x, y) -> Callable:
  """`loss(params, batch_stats, rng)`: mean loss of (x, y) through the
  trainer's own train-mode forward, `Trainer.apply(train=True)`, so that the
  measured landscape is the one the runs train on: under train.precision=
  bfloat16 it casts weights and inputs as the train step does (a float32
  `model.apply` measured another network). In float32 `Trainer.apply` is
  the very `model.apply` call of `train_mode_loss`: the same program, so
  float32 measurements (the committed bn_smoothness runs) are unchanged,
  bit for bit."""

  def loss(params, batch_stats, rng):
    logits, _ = trainer.apply(params, batch_stats, x, train=True, rng=rng)
    return jnp.mean(trainer.loss_fn(logits, y))

  return loss


def _probe_loss(trainer, probe_size, seed):
  x, y = probe_batch(trainer, probe_size, seed)
  return trainer_loss(trainer, x, y), x


def _step_key(seed: int, step: int):
  return jax.random.fold_in(prng.key(int(seed) + 1), int(step))


def smoothness_callback(trainer, *, every: int, step_sizes: Sequence[float],
                        probe_size: int = 0, seed: int = 0,
                        name: str = "smoothness"):
  """A `trainer.Callback` writing the landscape measures of every run:
  loss, grad_norm, beta, loss_min/max/range, gpred_min/max and the per-eta
  values loss_eta{i}, gpred_eta{i} (i indexes `step_sizes`)."""
  from jaxunknowns.trainer import Callback  # pylint: disable=g-import-not-at-top
  check_settings(every=every, step_sizes=step_sizes, probe_size=probe_size)
  loss, _ = _probe_loss(trainer, probe_size, seed)
  fn = landscape_fn(loss, tuple(float(e) for e in step_sizes))

  def run(trainer_, state, step):
    del trainer_
    out = distributed.device_get(fn(state["params"], state["batch_stats"],
                            _step_key(seed, step)))
    return summarize_landscape(out)

  return Callback(name=name, every=int(every), fn=run)


def ics_callback(trainer, *, every: int, probe_size: int = 0, seed: int = 0,
                 name: str = "ics"):
  """A `trainer.Callback` writing l2_LAYER, cos_LAYER and gnorm_LAYER for
  every kernel layer (LAYER = its module path, e.g. Dense_0, output).
  `callback.layers` lists the layer names in forward order."""
  from jaxunknowns.trainer import Callback  # pylint: disable=g-import-not-at-top
  check_settings(every=every, step_sizes=(1.0,), probe_size=probe_size)
  loss, x = _probe_loss(trainer, probe_size, seed)
  one_params = trainer.params_template
  variables = {"params": one_params}
  if trainer.has_batch_stats:
    variables["batch_stats"] = trainer.template["batch_stats"]
  groups = layer_groups(trainer.model, variables, x)
  names = [layer_name(p) for p, _ in groups]
  fn = ics_fn(loss, groups, optimizer_update(trainer.tx, trainer.schedule))

  def run(trainer_, state, step):
    del trainer_
    out = distributed.device_get(fn(state["params"], state["batch_stats"],
                            state["opt_state"], state["step"],
                            _step_key(seed, step)))
    values = {}
    for i, n in enumerate(names):
      values[f"l2_{n}"] = np.asarray(out["l2"][:, i])
      values[f"cos_{n}"] = np.asarray(out["cos"][:, i])
      values[f"gnorm_{n}"] = np.asarray(out["grad_norm"][:, i])
    return values

  callback = Callback(name=name, every=int(every), fn=run)
  callback.layers = names
  return callback
