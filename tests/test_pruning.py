"""Property tests of the pruning library: exact counts, zeros that stay zero."""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunknowns.errors import UserError
from jaxunknowns.pruning import (
    layer_names, ones_mask, prune_global, prune_layerwise, prune_to_sparsity,
    random_mask_like, sparsity_report)

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



def test_global_exclude_leaves_an_already_pruned_layer_as_it_was():
  """An excluded layer pruned before (here by a layerwise level) keeps its
  holes: exclude means "as it is", not "dense again"; the other layers
  follow the numpy reference over their own survivors."""
  params = make_params()
  mask = prune_layerwise(params, ones_mask(params), None, 0.3)
  before = masks_by_name(mask)
  mask = prune_global(params, mask, 0.5, exclude=("output",))
  after = masks_by_name(mask)
  np.testing.assert_array_equal(after["output"], before["output"])
  assert not before["output"].all()
  names = [n for n in LAYERS if n != "output"]
  weights = kernels_by_name(params)
  flat = np.concatenate([weights[n].reshape(-1) for n in names])
  alive = np.concatenate([before[n].reshape(-1) for n in names])
  want = numpy_prune(flat, alive, math.ceil(0.5 * alive.sum()))
  np.testing.assert_array_equal(
      np.concatenate([after[n].reshape(-1) for n in names]), want)

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


@pytest.mark.parametrize("method", ["global", "layerwise"])
def test_prune_to_sparsity_from_a_mask_keeps_pruned_weights_pruned(method):
  """From a mask, one-shot pruning keeps `total - ceil((1 - t) * total)`
  of all the scope's weights (pruned or not), the largest |w| among the
  mask's survivors: none of its pruned weights comes back."""
  params, r = make_params(), np.random.RandomState(1)
  mask = jax.tree.map(lambda m: jnp.asarray(r.rand(*m.shape) < 0.6),
                      ones_mask(params))
  got = prune_to_sparsity(params, 0.3, method=method, mask=mask)
  names = layer_names(params)
  flat = lambda tree, n: np.asarray(functools.reduce(
      lambda t, k: t[k], n.split("/") + ["kernel"], tree)).ravel()
  scopes = [names] if method == "global" else [[n] for n in names]
  for scope in scopes:
    alive = np.concatenate([flat(mask, n) for n in scope])
    w = np.concatenate([np.abs(flat(params, n)) for n in scope])
    keep = len(w) - math.ceil(0.7 * len(w))
    want = np.zeros(len(w), bool)
    want[np.argsort(-np.where(alive, w, -np.inf), kind="stable")[:keep]] = True
    np.testing.assert_array_equal(
        np.concatenate([flat(got, n) for n in scope]), want, err_msg=scope)
  # From all ones: the same as without a mask.
  for a, b in zip(jax.tree.leaves(prune_to_sparsity(params, 0.3, method=method,
                                                    mask=ones_mask(params))),
                  jax.tree.leaves(prune_to_sparsity(params, 0.3,
                                                    method=method))):
    np.testing.assert_array_equal(a, b)


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

  # Random control, per run.
  shuffled = jax.vmap(random_mask_like)(masks, jax.random.split(
      jax.random.PRNGKey(0), runs))
  for i in range(runs):
    assert (sparsity_report(unstack(shuffled, i))["layers"] ==
            sparsity_report(unstack(masks, i))["layers"])
