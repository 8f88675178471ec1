"""Property tests of the pruning library: exact counts, zeros that stay zero."""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxunknowns.errors import UserError
from jaxunknowns.pruning import (
    PruningMaskState, apply_mask, get_mask, layer_names, ones_mask,
    prune_global, prune_layerwise, prune_to_sparsity, random_mask_like,
    reset_inner_state, set_mask, sparsity_report, with_pruning_mask)

# ---------------------------------------------------------------- Fixtures


def make_params(seed=0):
  """A hand-built Linen-style tree: conv, BN, a nested block, dense, output."""
  r = np.random.RandomState(seed)
  f = lambda *shape: jnp.asarray(r.normal(size=shape).astype(np.float32))
  return {
      "Conv_0": {"kernel": f(3, 3, 2, 4), "bias": f(4)},
      "BatchNorm_0": {"scale": f(4), "bias": f(4)},
      "BasicBlock_0": {"Conv_0": {"kernel": f(3, 3, 4, 4)},
                       "BatchNorm_0": {"scale": f(4), "bias": f(4)}},
      "Dense_0": {"kernel": f(36, 16), "bias": f(16)},
      "output": {"kernel": f(16, 10), "bias": f(10)},
  }


LAYERS = ["BasicBlock_0/Conv_0", "Conv_0", "Dense_0", "output"]


def kernels_by_name(params):
  return {"/".join(str(k.key) for k in path[:-1]): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
          if path[-1].key == "kernel"}


def masks_by_name(mask):
  return {"/".join(str(k.key) for k in path[:-1]): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(mask)[0]}


def numpy_prune(weights, alive, count):
  """Reference: drop the `count` alive entries of smallest |w|, lowest index
  first among ties. Flat 1-D numpy arrays in and out."""
  alive = alive.copy()
  idx = np.flatnonzero(alive)
  order = idx[np.argsort(np.abs(weights[idx]), kind="stable")]
  alive[order[:count]] = False
  return alive


def grad_sequence(params, steps, seed):
  """`steps` random nonzero gradients per leaf, stacked on a leading axis.

  Drawn with numpy: generating them with jax.random inside the scanned step
  would dominate the compile time of every test.
  """
  r = np.random.RandomState(seed)
  return jax.tree.map(
      lambda x: r.normal(size=(steps,) + x.shape).astype(np.float32), params)


def make_train(tx):
  """A jitted `run(params, opt_state, grads)` that scans over the grads."""
  @jax.jit
  def run(params, opt_state, grads):
    def body(carry, g):
      p, s = carry
      updates, s = tx.update(g, s, p)
      return (optax.apply_updates(p, updates), s), None
    (params, opt_state), _ = jax.lax.scan(body, (params, opt_state), grads)
    return params, opt_state
  return run


@functools.lru_cache(maxsize=None)
def masked_trainer(name):
  """(tx, run) per optimizer, so each is compiled once for the whole file."""
  tx = with_pruning_mask(OPTIMIZERS[name]())
  return tx, make_train(tx)


OPTIMIZERS = {
    "adam": lambda: optax.adam(1e-2),
    "adamw": lambda: optax.adamw(1e-2, weight_decay=0.1),
    "decay+momentum": lambda: optax.chain(
        optax.add_decayed_weights(1e-2), optax.sgd(1e-2, momentum=0.9)),
}

# ---------------------------------------------------------------- Names, masks


def test_layer_names_and_ones_mask_on_a_hand_built_tree():
  params = make_params()
  assert layer_names(params) == LAYERS
  mask = ones_mask(params)
  assert layer_names(mask) == LAYERS
  assert mask["Conv_0"]["bias"] is None
  assert mask["BatchNorm_0"] == {"scale": None, "bias": None}
  assert mask["BasicBlock_0"]["BatchNorm_0"]["scale"] is None
  assert mask["Dense_0"]["kernel"].dtype == jnp.bool_
  assert mask["Dense_0"]["kernel"].shape == (36, 16)
  assert bool(jnp.all(mask["BasicBlock_0"]["Conv_0"]["kernel"]))
  no_out = ones_mask(params, exclude_output=True)
  assert no_out["output"]["kernel"] is None
  assert layer_names(no_out) == LAYERS[:3]
  report = sparsity_report(no_out)
  assert "output" not in report["layers"]
  assert report["total"] == 72 + 144 + 576


def test_layer_names_on_real_flax_modules():
  class Block(nn.Module):
    @nn.compact
    def __call__(self, x):
      y = nn.Conv(4, (3, 3))(x)
      y = nn.BatchNorm(use_running_average=True)(y)
      return x + nn.Conv(4, (3, 3))(y)

  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.Conv(4, (3, 3))(x)
      x = Block()(x)
      x = nn.Dense(8)(x.reshape(x.shape[0], -1))
      return nn.Dense(3, name="output")(x)

  variables = jax.eval_shape(Net().init, jax.random.PRNGKey(0),
                             jnp.zeros((1, 4, 4, 1)))
  params = variables["params"]  # shapes only: names need nothing more
  assert layer_names(params) == [
      "Block_0/Conv_0", "Block_0/Conv_1", "Conv_0", "Dense_0", "output"]
  mask = ones_mask(params)
  assert mask["Block_0"]["BatchNorm_0"] == {"scale": None, "bias": None}
  assert mask["output"]["bias"] is None


# ---------------------------------------------------------------- Optimizer


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("switch_in_mid_training", [False, True])
def test_masked_weights_stay_exactly_zero(name, switch_in_mid_training):
  params = make_params()
  mask = prune_global(params, ones_mask(params), 0.5)
  tx, run = masked_trainer(name)
  if switch_in_mid_training:
    # Train dense first, so momentum / Adam moments of every weight are
    # nonzero when the mask arrives.
    opt_state = tx.init(params)
    params, opt_state = run(params, opt_state, grad_sequence(params, 200, 1))
    inner = jax.tree.leaves(opt_state.inner_state)
    assert any(float(jnp.abs(x).max()) > 0 for x in inner if x.ndim == 2)
    opt_state = set_mask(opt_state, mask)
  else:
    opt_state = tx.init(params)
    opt_state = set_mask(opt_state, mask)
  params = apply_mask(params, mask)
  before = params
  params, opt_state = run(params, opt_state, grad_sequence(params, 200, 2))

  for name_, m in masks_by_name(mask).items():
    w = kernels_by_name(params)[name_]
    w0 = kernels_by_name(before)[name_]
    assert np.all(w[~m] == 0.0), f"pruned weights of {name_} moved"
    assert np.mean(w[m] != w0[m]) > 0.99, f"kept weights of {name_} frozen"
  # Biases and normalisation params are not masked.
  assert np.all(np.asarray(params["Conv_0"]["bias"]) !=
                np.asarray(before["Conv_0"]["bias"]))
  assert np.all(np.asarray(params["BatchNorm_0"]["scale"]) !=
                np.asarray(before["BatchNorm_0"]["scale"]))
  # Moments of pruned weights are zero only if they were zero at the switch.
  if not switch_in_mid_training and name != "decay+momentum":
    mu = opt_state.inner_state[0].mu["Dense_0"]["kernel"]
    assert np.all(np.asarray(mu)[~masks_by_name(mask)["Dense_0"]] == 0.0)


def test_masking_gradients_alone_would_revive_pruned_weights():
  """The control: without the mask after the optimizer, Adam's leftover
  moments move pruned weights -- so the test above can fail."""
  params = make_params()
  mask = prune_global(params, ones_mask(params), 0.5)
  tx, run = masked_trainer("adam")
  state = tx.init(params)  # all-ones mask: plain Adam
  params, state = run(params, state, grad_sequence(params, 200, 1))
  adam = optax.adam(1e-2)
  grads_only = optax.GradientTransformation(
      adam.init, lambda u, s, p=None: adam.update(apply_mask(u, mask), s, p))
  params = apply_mask(params, mask)
  params, _ = make_train(grads_only)(params, state.inner_state,
                                      grad_sequence(params, 20, 2))
  w = np.asarray(params["Dense_0"]["kernel"])
  assert np.any(w[~np.asarray(mask["Dense_0"]["kernel"])] != 0.0)


def test_mask_swap_does_not_retrace_the_jitted_step():
  traces = []
  tx = with_pruning_mask(optax.adamw(1e-2, weight_decay=1e-2))

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
  for level in range(3):
    mask = prune_layerwise(params, mask, {"output": 0.1}, 0.2)
    params = apply_mask(params, mask)
    opt_state = set_mask(opt_state, mask)
    params, opt_state = step(params, opt_state, grads)
  # A float mask (e.g. loaded from disk) is cast, not retraced either.
  float_mask = jax.tree.map(lambda m: np.asarray(m, np.float32), mask)
  opt_state = set_mask(opt_state, float_mask)
  params, opt_state = step(params, opt_state, grads)
  opt_state = reset_inner_state(tx, opt_state, params)
  params, opt_state = step(params, opt_state, grads)
  assert len(traces) == 1
  if hasattr(step, "_cache_size"):  # nor recompiled (placement unchanged)
    assert step._cache_size() == 1
  got = masks_by_name(get_mask(opt_state))
  for name, m in masks_by_name(mask).items():
    np.testing.assert_array_equal(got[name], m)
  assert sparsity_report(get_mask(opt_state))["remaining"] < sum(
      v.size for v in kernels_by_name(params).values())


def test_set_mask_finds_the_mask_in_a_chain_and_rejects_bad_shapes():
  params = make_params()
  tx = optax.chain(optax.clip_by_global_norm(1.0),
                   with_pruning_mask(optax.sgd(0.1)))
  state = tx.init(params)
  assert isinstance(state[1], PruningMaskState)
  mask = prune_global(params, get_mask(state), 0.3)
  state = set_mask(state, mask)
  np.testing.assert_array_equal(get_mask(state)["output"]["kernel"],
                                mask["output"]["kernel"])
  bad = dict(mask, output={"kernel": jnp.ones((10, 16), bool), "bias": None})
  with pytest.raises(ValueError, match="shape"):
    set_mask(state, bad)
  with pytest.raises(ValueError, match="structure"):
    set_mask(state, ones_mask(params, exclude_output=True))
  with pytest.raises(ValueError, match="PruningMaskState"):
    get_mask(optax.adam(1e-3).init(params))


def test_reset_inner_state_restarts_moments_and_keeps_the_mask():
  params = make_params()
  tx, run = masked_trainer("adam")
  state = tx.init(params)
  params, state = run(params, state, grad_sequence(params, 200, 0))
  mask = prune_global(params, get_mask(state), 0.2)
  state = set_mask(state, mask)
  fresh = reset_inner_state(tx, state, params)
  adam_state = fresh.inner_state[0]
  assert int(adam_state.count) == 0
  assert all(float(jnp.abs(x).max()) == 0 for x in
             jax.tree.leaves((adam_state.mu, adam_state.nu)))
  for name, m in masks_by_name(mask).items():
    np.testing.assert_array_equal(masks_by_name(get_mask(fresh))[name], m)


def test_reset_inner_state_fast_forwards_the_schedule_to_the_rewind_step():
  params = make_params()
  schedule = optax.piecewise_constant_schedule(1.0, {5: 0.0})  # lr 0 from 5
  grads = jax.tree.map(jnp.ones_like, params)
  for tx in (with_pruning_mask(optax.sgd(schedule, momentum=0.9)),
             optax.inject_hyperparams(
                 lambda learning_rate: with_pruning_mask(
                     optax.adam(learning_rate)))(learning_rate=schedule)):
    state = tx.init(params)
    at_0 = reset_inner_state(tx, state, params)
    at_10 = reset_inner_state(tx, state, params, schedule_step=10)
    update = jax.jit(tx.update)
    u0, _ = update(grads, at_0, params)
    u10, _ = update(grads, at_10, params)
    assert float(jnp.abs(u0["Dense_0"]["kernel"]).min()) > 0
    assert float(jnp.abs(u10["Dense_0"]["kernel"]).max()) == 0


def test_orbax_round_trip_of_the_masked_state(tmp_path):
  ocp = pytest.importorskip("orbax.checkpoint")
  params = make_params()
  tx = with_pruning_mask(optax.adam(1e-3))
  state = set_mask(tx.init(params), prune_global(params, ones_mask(params),
                                                 0.5))
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "ckpt", state)
  checkpointer.wait_until_finished()
  restored = checkpointer.restore(tmp_path / "ckpt",
                                  jax.eval_shape(tx.init, params))
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- Counts


def test_layerwise_on_a_tiny_tree_by_hand():
  params = {"Dense_0": {"kernel": jnp.array([[0.5, -0.1], [0.3, -0.9]]),
                        "bias": jnp.zeros(2)},
            "output": {"kernel": jnp.array([[0.2, -0.4, 0.05, 0.7]]).T,
                       "bias": jnp.zeros(1)}}
  mask = prune_layerwise(params, ones_mask(params), {"output": 0.5}, 0.2)
  # Dense_0: ceil(0.2 * 4) = 1 pruned (-0.1); output: ceil(0.5 * 4) = 2
  # pruned (0.05 and 0.2).
  np.testing.assert_array_equal(mask["Dense_0"]["kernel"],
                                [[True, False], [True, True]])
  np.testing.assert_array_equal(mask["output"]["kernel"][:, 0],
                                [False, True, False, True])
  assert mask["Dense_0"]["bias"] is None
  # Next level: remaining 3 -> ceil(0.6) = 1 more (0.3); output 2 -> 1 (0.4).
  mask = prune_layerwise(params, mask, {"output": 0.5}, 0.2)
  np.testing.assert_array_equal(mask["Dense_0"]["kernel"],
                                [[True, False], [False, True]])
  np.testing.assert_array_equal(mask["output"]["kernel"][:, 0],
                                [False, False, False, True])


def test_layerwise_matches_a_numpy_sort_with_overrides():
  params = make_params()
  rates = {"output": 0.1, "Conv_0": 0.0}
  mask = ones_mask(params)
  weights = kernels_by_name(params)
  expected = {n: np.ones(w.size, bool) for n, w in weights.items()}
  for _ in range(3):
    mask = prune_layerwise(params, mask, rates, 0.2)
    for name, w in weights.items():
      rate = rates.get(name, 0.2)
      count = math.ceil(round(rate * expected[name].sum(), 9))
      expected[name] = numpy_prune(w.reshape(-1), expected[name], count)
    got = masks_by_name(mask)
    for name in weights:
      np.testing.assert_array_equal(got[name].reshape(-1), expected[name])
  report = sparsity_report(mask)
  assert report["layers"]["Conv_0"]["remaining"] == 72
  # 160 -> 144 -> 129 -> 116 by ceil(10%); 576 -> 460 -> 368 -> 294.
  assert report["layers"]["output"]["remaining"] == 116
  assert report["layers"]["Dense_0"]["remaining"] == 294
  assert report["remaining"] == sum(
      v["remaining"] for v in report["layers"].values())
  assert report["fraction_remaining"] == pytest.approx(
      report["remaining"] / (72 + 144 + 576 + 160))


@pytest.mark.parametrize("method", ["layerwise", "global"])
def test_iterating_20_percent_leaves_0_8_to_the_n(method):
  r = np.random.RandomState(3)
  params = {"Dense_0": {"kernel": jnp.asarray(r.normal(size=(100, 30)))},
            "Dense_1": {"kernel": jnp.asarray(r.normal(size=(30, 20)))},
            "output": {"kernel": jnp.asarray(r.normal(size=(20, 10)))}}
  prune = (functools.partial(prune_layerwise, rates={}, default_rate=0.2)
           if method == "layerwise" else
           functools.partial(prune_global, fraction=0.2))
  prune = jax.jit(prune)
  mask = ones_mask(params)
  for level in range(1, 13):
    mask = prune(params, mask)
    report = sparsity_report(mask)
    sizes = ([(v["total"], v["remaining"]) for v in report["layers"].values()]
             if method == "layerwise" else
             [(report["total"], report["remaining"])])
    for total, remaining in sizes:
      # remaining_{n+1} = remaining_n - ceil(0.2 remaining_n)
      #                 = floor(0.8 remaining_n): below 0.8^n, by < 5.
      ideal = total * 0.8 ** level
      assert 0 <= ideal - remaining < 5, (level, total, remaining)
  assert report["fraction_remaining"] == pytest.approx(0.8 ** 12, abs=2e-3)


def test_global_threshold_matches_a_numpy_sort():
  params = make_params()
  weights = kernels_by_name(params)
  names = LAYERS
  flat = np.concatenate([weights[n].reshape(-1) for n in names])
  alive = np.ones(flat.size, bool)
  mask = ones_mask(params)
  for _ in range(3):
    mask = prune_global(params, mask, 0.2)
    alive = numpy_prune(flat, alive, math.ceil(round(0.2 * alive.sum(), 9)))
    got = np.concatenate([masks_by_name(mask)[n].reshape(-1) for n in names])
    np.testing.assert_array_equal(got, alive)
  # One threshold: every pruned weight is smaller than every survivor.
  assert np.abs(flat[~alive]).max() < np.abs(flat[alive]).min()
  assert sparsity_report(mask)["remaining"] == alive.sum() == 486


def test_global_prunes_the_small_layers_before_the_large_one():
  params = make_params()
  k = params["Dense_0"]["kernel"]
  params["Dense_0"]["kernel"] = jnp.sign(k) * (100.0 + jnp.abs(k))
  total = 72 + 144 + 576 + 160
  mask = prune_global(params, ones_mask(params), 0.3)
  report = sparsity_report(mask)
  assert report["layers"]["Dense_0"]["remaining"] == 576
  assert report["remaining"] == total - math.ceil(0.3 * total)
  # Prune all 376 non-Dense weights and only then touch Dense_0.
  mask = prune_global(params, mask, 0.6)
  report = sparsity_report(mask)
  for name in ("Conv_0", "BasicBlock_0/Conv_0", "output"):
    assert report["layers"][name]["remaining"] == 0
  assert report["layers"]["Dense_0"]["remaining"] == 576 - (
      math.ceil(0.6 * (total - math.ceil(0.3 * total))) - (
          total - math.ceil(0.3 * total) - 576))


def test_global_exclude_keeps_the_output_layer_full():
  params = make_params()
  mask = prune_global(params, ones_mask(params), 0.5, exclude=("output",))
  report = sparsity_report(mask)
  assert report["layers"]["output"]["remaining"] == 160
  in_scope = 72 + 144 + 576
  assert report["remaining"] == 160 + in_scope - math.ceil(0.5 * in_scope)


def test_global_ties_are_broken_by_layer_order_then_index():
  params = {"a": {"kernel": jnp.ones((2, 3))},
            "b": {"kernel": -jnp.ones((2, 2))}}
  mask = prune_global(params, ones_mask(params), 0.5)  # ceil(0.5 * 10) = 5
  np.testing.assert_array_equal(mask["a"]["kernel"].reshape(-1),
                                [False] * 5 + [True])
  np.testing.assert_array_equal(mask["b"]["kernel"].reshape(-1),
                                [True] * 4)
  mask = prune_global(params, mask, 0.5)  # ceil(0.5 * 4) = 2
  np.testing.assert_array_equal(mask["b"]["kernel"].reshape(-1),
                                [False, False, True, True])


def test_prune_to_sparsity_one_shot():
  params = make_params()
  total = 72 + 144 + 576 + 160
  report = sparsity_report(prune_to_sparsity(params, 0.1))
  assert report["remaining"] == total - math.ceil(0.9 * total)
  report = sparsity_report(prune_to_sparsity(params, 0.3, method="layerwise",
                                             exclude=("output",)))
  assert report["layers"]["output"]["remaining"] == 160
  for name, size in (("Conv_0", 72), ("Dense_0", 576)):
    assert report["layers"][name]["remaining"] == size - math.ceil(0.7 * size)
  report = sparsity_report(prune_to_sparsity(params, 0.5, exclude_output=True))
  assert "output" not in report["layers"]
  assert report["remaining"] == (72 + 144 + 576) // 2
  with pytest.raises(UserError, match="target"):
    prune_to_sparsity(params, 0.0)
  with pytest.raises(UserError, match="method"):
    prune_to_sparsity(params, 0.5, method="random")


def test_random_mask_keeps_every_layer_count():
  params = make_params()
  mask = prune_layerwise(params, ones_mask(params), {"output": 0.1}, 0.6)
  shuffled = random_mask_like(mask, jax.random.PRNGKey(0))
  other = random_mask_like(mask, jax.random.PRNGKey(1))
  want = sparsity_report(mask)["layers"]
  assert sparsity_report(shuffled)["layers"] == want
  assert sparsity_report(other)["layers"] == want
  assert shuffled["Conv_0"]["bias"] is None
  for name, m in masks_by_name(mask).items():
    r = masks_by_name(shuffled)[name]
    assert r.dtype == bool and r.shape == m.shape
    assert not np.array_equal(r, m)
    assert not np.array_equal(r, masks_by_name(other)[name])


# ---------------------------------------------------------------- Errors


def test_unknown_layer_names_are_user_errors_listing_the_layers():
  params = make_params()
  mask = ones_mask(params)
  with pytest.raises(UserError) as err:
    prune_layerwise(params, mask, {"Dense_7": 0.1}, 0.2)
  msg = str(err.value)
  assert "'Dense_7'" in msg and "\n" not in msg
  for name in LAYERS:
    assert name in msg
  with pytest.raises(UserError, match="BasicBlock_0/Conv_0"):
    prune_global(params, mask, 0.2, exclude=("fc",))
  with pytest.raises(UserError, match="'output'"):
    prune_layerwise(params, ones_mask(params, exclude_output=True),
                    {"output": 0.1}, 0.2)


@pytest.mark.parametrize("rate", [1.0, 1.5, -0.1, float("nan"), "high"])
def test_rates_outside_0_1_are_user_errors(rate):
  params = make_params()
  mask = ones_mask(params)
  with pytest.raises(UserError, match="output"):
    prune_layerwise(params, mask, {"output": rate}, 0.2)
  with pytest.raises(UserError):
    prune_layerwise(params, mask, {}, rate)
  with pytest.raises(UserError):
    prune_global(params, mask, rate)


def test_rate_zero_leaves_a_layer_untouched():
  params = make_params()
  mask = prune_layerwise(params, ones_mask(params), {"Conv_0": 0}, 0.5)
  report = sparsity_report(mask)
  assert report["layers"]["Conv_0"]["remaining"] == 72
  assert report["layers"]["Dense_0"]["remaining"] == 288
  unchanged = prune_global(params, mask, 0.0)
  assert sparsity_report(unchanged) == report


# ---------------------------------------------------------------- vmap


def stack(trees):
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree, i):
  return jax.tree.map(lambda x: x[i], tree)


def test_everything_works_under_vmap_with_a_run_axis():
  runs = 3
  per_run = [make_params(seed) for seed in range(runs)]
  params = stack(per_run)
  tx = with_pruning_mask(optax.adamw(1e-2, weight_decay=0.1))

  # Pruning: vmapped == run by run.
  masks = jax.vmap(ones_mask)(params)
  masks = jax.vmap(functools.partial(prune_global, fraction=0.6,
                                     exclude=("output",)))(params, masks)
  for i in range(runs):
    alone = prune_global(per_run[i], ones_mask(per_run[i]), 0.6,
                         exclude=("output",))
    for name, m in masks_by_name(alone).items():
      np.testing.assert_array_equal(masks_by_name(unstack(masks, i))[name], m)
  assert not np.array_equal(masks["Dense_0"]["kernel"][0],
                            masks["Dense_0"]["kernel"][1])

  # Training: each run keeps its own mask exactly, without retracing.
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
  # Dense training first, so that moments are nonzero.
  params, opt_state = step(params, opt_state, grads_for_runs(200, 0))
  opt_state = set_mask(opt_state, masks)
  params = apply_mask(params, masks)
  start = params
  params, opt_state = step(params, opt_state, grads_for_runs(200, 1))
  assert len(traces) == 1
  for i in range(runs):
    for name, m in masks_by_name(unstack(masks, i)).items():
      w = kernels_by_name(unstack(params, i))[name]
      w0 = kernels_by_name(unstack(start, i))[name]
      assert np.all(w[~m] == 0.0)
      assert np.mean(w[m] != w0[m]) > 0.99

  # Rewind: fresh moments per run, masks kept.
  fresh = jax.vmap(lambda s, p: reset_inner_state(tx, s, p))(opt_state, params)
  assert fresh.inner_state[0].count.shape == (runs,)
  assert not np.any(np.asarray(fresh.inner_state[0].count))
  assert all(float(jnp.abs(x).max()) == 0
             for x in jax.tree.leaves(fresh.inner_state[0].mu))
  np.testing.assert_array_equal(fresh.mask["Dense_0"]["kernel"],
                                masks["Dense_0"]["kernel"])
  params, fresh = step(params, fresh, grads_for_runs(200, 2))
  assert len(traces) == 1

  # Random control, per run.
  shuffled = jax.vmap(random_mask_like)(masks, jax.random.split(
      jax.random.PRNGKey(0), runs))
  for i in range(runs):
    assert (sparsity_report(unstack(shuffled, i))["layers"] ==
            sparsity_report(unstack(masks, i))["layers"])
