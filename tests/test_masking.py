"""The one masked-update transform (`optim.with_update_mask`): pruned weights
stay exactly zero, frozen ones bit for bit unchanged, the inner optimizer sees
only the trained entries, and the mask is data (swap without retrace, vmap,
orbax)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxunknowns.optim import (UpdateMaskState, apply_mask, get_update_mask,
                               set_update_mask, with_update_mask)
from jaxunknowns.pruning import ones_mask, prune_global


def make_params(seed=0):
  """Conv, BN, a dense layer and an output layer, Linen-style names."""
  r = np.random.RandomState(seed)
  f = lambda *shape: jnp.asarray(r.normal(size=shape).astype(np.float32))
  return {"Conv_0": {"kernel": f(3, 3, 2, 4), "bias": f(4)},
          "BatchNorm_0": {"scale": f(4), "bias": f(4)},
          "Dense_0": {"kernel": f(36, 16), "bias": f(16)},
          "output": {"kernel": f(16, 10), "bias": f(10)}}


def grad_sequence(params, steps, seed):
  r = np.random.RandomState(seed)
  return jax.tree.map(
      lambda x: r.normal(size=(steps,) + x.shape).astype(np.float32), params)


def make_train(tx):
  """A jitted `run(params, opt_state, grads)` scanning over the grads."""
  @jax.jit
  def run(params, opt_state, grads):
    def body(carry, g):
      p, s = carry
      updates, s = tx.update(g, s, p)
      return (optax.apply_updates(p, updates), s), None
    return jax.lax.scan(body, (params, opt_state), grads)[0]
  return run


def kernels(tree):
  return {name: np.asarray(tree[name]["kernel"])
          for name in ("Conv_0", "Dense_0", "output")}


OPTIMIZERS = {
    "adam": lambda: optax.adam(1e-2),
    "adamw": lambda: optax.adamw(1e-2, weight_decay=0.1),
    "decay+momentum": lambda: optax.chain(
        optax.add_decayed_weights(1e-2), optax.sgd(1e-2, momentum=0.9)),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("switch_in_mid_training", [False, True])
def test_pruned_weights_stay_exactly_zero(name, switch_in_mid_training):
  params = make_params()
  mask = prune_global(params, ones_mask(params), 0.5)
  tx = with_update_mask(OPTIMIZERS[name](), initial_mask=ones_mask)
  run = make_train(tx)
  opt_state = tx.init(params)
  if switch_in_mid_training:  # moments of every weight nonzero at the switch
    params, opt_state = run(params, opt_state, grad_sequence(params, 50, 1))
  opt_state = set_update_mask(opt_state, mask)
  params = apply_mask(params, mask)
  before = params
  params, opt_state = run(params, opt_state, grad_sequence(params, 50, 2))
  for layer, m in kernels(mask).items():
    w, w0 = kernels(params)[layer], kernels(before)[layer]
    assert np.all(w[~m] == 0.0), f"pruned weights of {layer} moved"
    assert np.mean(w[m] != w0[m]) > 0.99, f"kept weights of {layer} frozen"
  # None leaves (biases, BN) are never masked.
  assert np.all(np.asarray(params["Conv_0"]["bias"]) !=
                np.asarray(before["Conv_0"]["bias"]))
  assert np.all(np.asarray(params["BatchNorm_0"]["scale"]) !=
                np.asarray(before["BatchNorm_0"]["scale"]))


def test_masking_gradients_alone_would_revive_pruned_weights():
  """The control: without the mask after the optimizer, Adam's leftover
  moments move pruned weights -- so the test above can fail."""
  params = make_params()
  mask = prune_global(params, ones_mask(params), 0.5)
  adam = optax.adam(1e-2)
  params, state = make_train(adam)(params, adam.init(params),
                                   grad_sequence(params, 50, 1))
  grads_only = optax.GradientTransformation(
      adam.init, lambda u, s, p=None: adam.update(apply_mask(u, mask), s, p))
  params, _ = make_train(grads_only)(apply_mask(params, mask), state,
                                     grad_sequence(params, 20, 2))
  w = np.asarray(params["Dense_0"]["kernel"])
  assert np.any(w[~np.asarray(mask["Dense_0"]["kernel"])] != 0.0)


def test_frozen_entries_are_bit_identical_and_clipping_sees_only_trained():
  """BN-only's use (every leaf masked, default all True, then a mask with
  frozen entries), checked against numpy: the update of trained entries is
  the gradient clipped by the global norm over the trained entries only."""
  rng = np.random.default_rng(0)
  params = {"a": jnp.asarray(rng.normal(size=(4, 5)), jnp.float32),
            "b": jnp.asarray(rng.normal(size=(5,)), jnp.float32)}
  mask = {"a": rng.random((4, 5)) < 0.4, "b": np.zeros(5, bool)}
  tx = with_update_mask(optax.clip_by_global_norm(1.0))
  state = tx.init(params)
  assert all(np.all(m) for m in jax.tree.leaves(get_update_mask(state)))
  state = set_update_mask(state, mask)
  grads = {"a": jnp.asarray(10 * rng.normal(size=(4, 5)), jnp.float32),
           "b": jnp.asarray(100 * rng.normal(size=(5,)), jnp.float32)}
  updates, _ = tx.update(grads, state, params)
  g = np.asarray(grads["a"], np.float64)
  norm = np.sqrt(np.sum(g[mask["a"]] ** 2))  # b is frozen: not in the norm
  np.testing.assert_allclose(np.asarray(updates["a"])[mask["a"]],
                             g[mask["a"]] / max(norm, 1.0), rtol=1e-5)
  new = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(np.asarray(new["a"])[~mask["a"]],
                                np.asarray(params["a"])[~mask["a"]])
  np.testing.assert_array_equal(np.asarray(new["b"]), np.asarray(params["b"]))


def test_mask_swap_does_not_retrace_the_jitted_step():
  traces = []
  tx = with_update_mask(optax.adamw(1e-2, weight_decay=1e-2),
                        initial_mask=ones_mask)

  @jax.jit
  def step(params, opt_state, grads):
    traces.append(1)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  params = make_params()
  grads = jax.tree.map(lambda g: g[0], grad_sequence(params, 1, 0))
  opt_state = tx.init(params)
  params, opt_state = step(params, opt_state, grads)
  mask = ones_mask(params)
  for _ in range(3):
    mask = prune_global(params, mask, 0.2)
    params = apply_mask(params, mask)
    opt_state = set_update_mask(opt_state, mask)
    params, opt_state = step(params, opt_state, grads)
  # A float mask (e.g. loaded from disk) is cast, not retraced either.
  float_mask = jax.tree.map(lambda m: np.asarray(m, np.float32), mask)
  opt_state = set_update_mask(opt_state, float_mask)
  params, opt_state = step(params, opt_state, grads)
  assert len(traces) == 1
  if hasattr(step, "_cache_size"):  # nor recompiled (placement unchanged)
    assert step._cache_size() == 1
  for layer, m in kernels(mask).items():
    np.testing.assert_array_equal(kernels(get_update_mask(opt_state))[layer], m)


def test_set_mask_finds_the_mask_in_a_chain_and_rejects_bad_shapes():
  params = make_params()
  tx = optax.chain(optax.clip_by_global_norm(1.0),
                   with_update_mask(optax.sgd(0.1), initial_mask=ones_mask))
  state = tx.init(params)
  assert isinstance(state[1], UpdateMaskState)
  mask = prune_global(params, get_update_mask(state), 0.3)
  state = set_update_mask(state, mask)
  np.testing.assert_array_equal(get_update_mask(state)["output"]["kernel"],
                                mask["output"]["kernel"])
  bad = dict(mask, output={"kernel": jnp.ones((10, 16), bool), "bias": None})
  with pytest.raises(ValueError, match="shape"):
    set_update_mask(state, bad)
  with pytest.raises(ValueError, match="structure"):
    set_update_mask(state, ones_mask(params, exclude_output=True))
  with pytest.raises(ValueError, match="UpdateMaskState"):
    get_update_mask(optax.adam(1e-3).init(params))


def test_each_run_keeps_its_own_mask_under_vmap():
  runs = 3
  params = jax.tree.map(lambda *xs: jnp.stack(xs),
                        *[make_params(seed) for seed in range(runs)])
  tx = with_update_mask(optax.adamw(1e-2, weight_decay=0.1),
                        initial_mask=ones_mask)
  masks = jax.vmap(lambda p: prune_global(p, ones_mask(p), 0.6))(params)
  traces = []

  @jax.jit
  @jax.vmap
  def step(params, opt_state, grads):  # grads: (steps, ...) per run
    traces.append(1)
    def body(carry, g):
      p, s = carry
      updates, s = tx.update(g, s, p)
      return (optax.apply_updates(p, updates), s), None
    return jax.lax.scan(body, (params, opt_state), grads)[0]

  def grads_for_runs(steps, seed):
    return jax.tree.map(lambda g: np.moveaxis(g, 0, 1),
                        grad_sequence(params, steps, seed))

  opt_state = jax.vmap(tx.init)(params)
  assert opt_state.mask["Dense_0"]["kernel"].shape == (runs, 36, 16)
  params, opt_state = step(params, opt_state, grads_for_runs(20, 0))
  opt_state = set_update_mask(opt_state, masks)
  params = apply_mask(params, masks)
  start = params
  params, opt_state = step(params, opt_state, grads_for_runs(20, 1))
  assert len(traces) == 1
  for i in range(runs):
    one = lambda tree: jax.tree.map(lambda x: x[i], tree)
    for layer, m in kernels(one(masks)).items():
      w, w0 = kernels(one(params))[layer], kernels(one(start))[layer]
      assert np.all(w[~m] == 0.0)
      assert np.mean(w[m] != w0[m]) > 0.99
  assert not np.array_equal(masks["Dense_0"]["kernel"][0],
                            masks["Dense_0"]["kernel"][1])


def test_orbax_round_trip_of_the_masked_state(tmp_path):
  ocp = pytest.importorskip("orbax.checkpoint")
  params = make_params()
  tx = with_update_mask(optax.adam(1e-3), initial_mask=ones_mask)
  state = set_update_mask(tx.init(params),
                          prune_global(params, ones_mask(params), 0.5))
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "ckpt", state)
  checkpointer.wait_until_finished()
  restored = checkpointer.restore(tmp_path / "ckpt",
                                  jax.eval_shape(tx.init, params))
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)



def test_sam_second_gradient_is_taken_at_the_unmasked_weights():
  """BN-only with SAM: frozen weights are not 0, so the ascent point is
  w + eps with w as the model runs it (eps 0 on frozen entries), by numpy
  for f(w) = (c.w)^2 + sum(w^4)/4. Masking w before SAM took the second
  gradient on a network whose frozen weights were all zeroed. That
  gradient is masked before the inner optimizer too: its global-norm
  clipping sees the trained entries only."""
  from jaxunknowns import sam  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  c, w = rng.normal(size=6), rng.normal(size=6)
  mask = np.array([1, 1, 0, 1, 0, 0], bool)
  grad = lambda v: 2 * (c @ v) * c + v ** 3
  grad_fn = jax.grad(lambda p: jnp.sum(jnp.asarray(c, jnp.float32) * p["w"])
                     ** 2 + jnp.sum(p["w"] ** 4) / 4)
  params = {"w": jnp.asarray(w, jnp.float32)}
  tx = with_update_mask(sam.sam(optax.clip_by_global_norm(1.0), 0.3),
                        initial_mask={"w": mask})
  updates, _ = tx.update(grad_fn(params), tx.init(params), params,
                         grad_fn=grad_fn)
  g = grad(w) * mask
  want = grad(w + 0.3 * g / np.linalg.norm(g)) * mask
  want /= max(1.0, np.linalg.norm(want))  # clipped (|want| is about 4.8)
  np.testing.assert_allclose(np.asarray(updates["w"]), want, rtol=1e-5)
