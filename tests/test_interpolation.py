"""Linear interpolation, path evaluation, instability and linear mode
connectivity (Frankle et al. 2020)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunknowns.analysis import (evaluate_path, instability, interpolate,
                                  linear_mode_connectivity, path_evaluator)
from jaxunknowns.data import Dataset, Split
from jaxunknowns.metrics import MetricWriter, read_metrics
from test_trainer import make_trainer, tiny_config  # tests/ is on sys.path

SEEDS = [0, 1, 2]


def gaussian_clouds(n_train=256, n_test=1000, dim=12, classes=3, seed=0):
  """Overlapping clouds: a linear model gets ~4% test error, so the path's
  error is not trivially zero (1000 test points: 0.1 point each)."""
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(classes, dim))

  def split(n):
    y = rng.integers(0, classes, n).astype(np.int32)
    return Split(x=(centers[y] + rng.normal(size=(n, dim))).astype(np.float32),
                 y=y)

  return Dataset(name="clouds", train=split(n_train), test=split(n_test),
                 validation=None, num_classes=classes, input_shape=(dim,),
                 augment="none")


def xor_dataset(n_train=256, n_test=256, dim=4, seed=0):
  """Label = sign(x0) xor sign(x1): needs the hidden layer."""
  rng = np.random.default_rng(seed)

  def split(n):
    x = rng.uniform(-1, 1, size=(n, dim)).astype(np.float32)
    return Split(x=x, y=((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.int32))

  return Dataset(name="xor", train=split(n_train), test=split(n_test),
                 validation=None, num_classes=2, input_shape=(dim,),
                 augment="none")


# -----------------------------------------------------------------------------
# interpolate / instability: pure functions
# -----------------------------------------------------------------------------
def _random_tree(seed, runs=3):
  rng = np.random.default_rng(seed)
  return {"params": {"Dense_0": {"kernel": rng.normal(size=(runs, 4, 5)),
                                 "bias": rng.normal(size=(runs, 5))}},
          "batch_stats": {"BatchNorm_0": {
              "mean": rng.normal(size=(runs, 5)),
              "var": rng.uniform(0.1, 2.0, size=(runs, 5))}}}


def test_interpolate_endpoints_are_exact_and_midpoint_is_the_mean():
  a = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), _random_tree(0))
  b = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), _random_tree(1))
  out = interpolate(a, b, jnp.array([0.0, 0.5, 1.0]))
  runs = 3
  for la, lb, lo in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                        jax.tree.leaves(out)):
    assert lo.shape == (3 * runs,) + la.shape[1:]  # [P*R], alpha-major.
    np.testing.assert_array_equal(lo[:runs], la)            # alpha = 0: a.
    np.testing.assert_array_equal(lo[2 * runs:], lb)        # alpha = 1: b.
    np.testing.assert_allclose(lo[runs:2 * runs], (la + lb) / 2, rtol=1e-6,
                               atol=1e-6)
  # Also under jit, and a quarter of the way.
  out = jax.jit(interpolate)(a, b, jnp.array([0.25]))
  np.testing.assert_allclose(out["batch_stats"]["BatchNorm_0"]["var"],
                             0.75 * a["batch_stats"]["BatchNorm_0"]["var"] +
                             0.25 * b["batch_stats"]["BatchNorm_0"]["var"],
                             rtol=1e-6)
  with pytest.raises(TypeError, match="floating-point"):
    interpolate({"x": jnp.zeros((2, 3), jnp.int32)},
                {"x": jnp.ones((2, 3), jnp.int32)}, jnp.array([0.5]))


def test_instability_of_a_hand_made_curve():
  error = np.array([[0.10, 0.30, 0.25, 0.20],   # barrier 0.30 - 0.15
                    [0.20, 0.20, 0.20, 0.20],   # flat: 0
                    [0.05, 0.04, 0.03, 0.05]])  # dips below: 0.05 - 0.05
  np.testing.assert_allclose(instability(error), [0.15, 0.0, 0.0], atol=1e-12)
  np.testing.assert_allclose(instability(error[0]), 0.15)
  with pytest.raises(ValueError):
    instability(np.array([0.1]))


# -----------------------------------------------------------------------------
# evaluate_path on a BatchNorm MLP
# -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bn():
  """A BN MLP trainer and two 3-run states with different params and
  (hand-perturbed, so their interpolation matters) running statistics."""
  trainer = make_trainer(tiny_config(**{"train.steps": 60,
                                        "train.eval_every": 0}), xor_dataset())
  assert trainer.has_batch_stats
  state_a = trainer.init_state(SEEDS)
  state_b = trainer.init_state([10, 11, 12])
  rng = np.random.default_rng(0)
  stats = jax.device_get(state_b["batch_stats"])
  stats = jax.tree.map(
      lambda x: (rng.uniform(0.3, 3.0, x.shape) if (x > 0).all()
                 else rng.normal(size=x.shape)).astype(x.dtype), stats)
  state_b = dict(state_b, batch_stats=jax.device_put(stats,
                                                     trainer.replicated))
  return trainer, state_a, state_b


def test_path_endpoints_equal_trainer_evaluate_and_midpoint_is_interpolated(bn):
  trainer, state_a, state_b = bn
  # chunk=2 on 3 runs: the second chunk is padded.
  path = evaluate_path(trainer, state_a, state_b, num_points=3, chunk=2)
  assert path["error"].shape == path["loss"].shape == (3, 3)
  np.testing.assert_allclose(path["alphas"], [0.0, 0.5, 1.0])
  ev_a, ev_b = trainer.evaluate(state_a), trainer.evaluate(state_b)
  np.testing.assert_allclose(path["loss"][:, 0], ev_a["loss"], rtol=1e-5)
  np.testing.assert_allclose(path["loss"][:, -1], ev_b["loss"], rtol=1e-5)
  np.testing.assert_allclose(path["error"][:, 0], 1 - ev_a["accuracy"],
                             atol=1e-6)
  np.testing.assert_allclose(path["error"][:, -1], 1 - ev_b["accuracy"],
                             atol=1e-6)
  # The midpoint is the network whose params AND batch_stats are the means.
  mid = {k: jax.tree.map(lambda a, b: 0.5 * a + 0.5 * b, state_a[k],
                         state_b[k]) for k in ("params", "batch_stats")}
  ev_mid = trainer.evaluate(mid)
  np.testing.assert_allclose(path["loss"][:, 1], ev_mid["loss"], rtol=1e-5)
  # The perturbed statistics matter: params-only interpolation differs.
  mid_params_only = dict(mid, batch_stats=jax.tree.map(
      lambda a, b: 0.5 * a + 0.5 * b, state_a["batch_stats"],
      state_a["batch_stats"]))
  assert not np.allclose(trainer.evaluate(mid_params_only)["loss"],
                         ev_mid["loss"], rtol=1e-3)


def test_extrapolated_variances_are_clipped_not_nan(bn):
  """Past the ends (t = -2 or 3) a linearly extrapolated running variance
  falls below 0 (state_b's lie in [0.3, 3], state_a's are 1): the loss was
  NaN. The path's networks there are those with the variances clipped at 0."""
  trainer, state_a, state_b = bn
  path = evaluate_path(trainer, state_a, state_b, alphas=[-2.0, 3.0])
  assert np.isfinite(path["loss"]).all(), path["loss"]
  for p, t in enumerate((-2.0, 3.0)):
    net = {k: jax.tree.map(lambda a, b: (1 - t) * a + t * b, state_a[k],
                           state_b[k]) for k in ("params", "batch_stats")}
    assert any((np.asarray(v) < 0).any()
               for v in jax.tree.leaves(net["batch_stats"]))
    net["batch_stats"] = jax.tree.map(
        lambda x: np.maximum(x, 0), net["batch_stats"])
    net["batch_stats"] = {  # Only the variances: means may be negative.
        layer: {"mean": jax.tree.map(
            lambda a, b: (1 - t) * a + t * b, state_a["batch_stats"][layer],
            state_b["batch_stats"][layer])["mean"], "var": stats["var"]}
        for layer, stats in net["batch_stats"].items()}
    np.testing.assert_allclose(path["loss"][:, p],
                               trainer.evaluate(net)["loss"], rtol=1e-4)


def test_eval_program_traced_once_for_many_chunks(bn):
  trainer, state_a, state_b = bn
  ev = path_evaluator(trainer)
  assert path_evaluator(trainer) is ev
  before = ev.trace_count
  # 4 points are used by no other test: the first call must trace. 3 runs in
  # chunks of 2: the second chunk is padded to the same shape.
  padded = evaluate_path(trainer, state_a, state_b, num_points=4, chunk=2)
  assert ev.trace_count == before + 1      # 2 chunks, one trace.
  again = evaluate_path(trainer, state_a, state_b, num_points=4, chunk=2)
  assert ev.trace_count == before + 1      # cached
  np.testing.assert_array_equal(padded["loss"], again["loss"])
  # One run per chunk (3 chunks, one more trace) gives the same numbers.
  one = evaluate_path(trainer, state_a, state_b, num_points=4, chunk=1)
  assert ev.trace_count == before + 2
  np.testing.assert_allclose(padded["loss"], one["loss"], rtol=1e-5)
  np.testing.assert_allclose(padded["error"], one["error"], atol=1e-6)
  # Runs are not mixed up: the runs' endpoint losses differ.
  assert len(set(np.round(one["loss"][:, 0], 5))) == 3


def test_identical_states_have_zero_instability(bn):
  trainer, state_a, _ = bn
  path = evaluate_path(trainer, state_a, state_a, num_points=3, chunk=2)
  np.testing.assert_allclose(path["error"], path["error"][:, :1] *
                             np.ones((1, 3)), atol=1e-6)
  np.testing.assert_allclose(instability(path["error"]), 0.0, atol=1e-6)


def _permute_hidden_units(state, perm):
  """The same function with Dense_0's units (and their BN) permuted."""
  p = jax.tree.map(np.array, jax.device_get(state["params"]))
  b = jax.tree.map(np.array, jax.device_get(state["batch_stats"]))
  for tree in (p["Dense_0"], p["BatchNorm_0"], b["BatchNorm_0"]):
    for k in tree:
      tree[k] = tree[k][..., perm]
  p["output"]["kernel"] = p["output"]["kernel"][:, perm, :]
  return {"params": p, "batch_stats": b}


def test_a_network_and_its_permutation_have_a_barrier(bn, tmp_path):
  """Positive control: permuting hidden units keeps the function (equal
  endpoint errors) but the straight line between the two crosses a barrier."""
  trainer, _, _ = bn
  writer = MetricWriter(str(tmp_path), tensorboard=False)
  state = trainer.fit(trainer.init_state([0]), steps=60, data_seeds=[0],
                      writer=writer, run_labels=[{"seed": 0}]).state
  perm = np.roll(np.arange(16), 8)
  path = evaluate_path(trainer, state, _permute_hidden_units(state, perm),
                       num_points=3, chunk=1)
  err = path["error"][0]
  assert err[0] < 0.15                               # XOR learned.
  np.testing.assert_allclose(err[-1], err[0], atol=1e-6)
  assert instability(path["error"])[0] > 0.2, err    # ~0.4 at alpha=0.5.


# -----------------------------------------------------------------------------
# linear_mode_connectivity on a convex problem
# -----------------------------------------------------------------------------
def test_linear_model_is_linearly_connected(tmp_path):
  """Logistic regression from one start is convex: copies trained on
  different data orders end apart but with no error barrier between them,
  and the loss along the path lies below the chord."""
  config = tiny_config(**{"model.name": "linear", "model.norm": "none",
                          "train.steps": 40, "train.eval_every": 0})
  trainer = make_trainer(config, gaussian_clouds())
  seeds = [0, 1]
  labels = [{"seed": s, "variant": "dense"} for s in seeds]
  writer = MetricWriter(str(tmp_path), tensorboard=False)
  state_k = trainer.fit(trainer.init_state(seeds), steps=10, data_seeds=seeds,
                        writer=writer, run_labels=labels).state
  res = linear_mode_connectivity(trainer, state_k, seeds=seeds, steps=40,
                                 writer=writer, run_labels=labels,
                                 num_points=11)
  assert res["step_k"] == 10 and res["alphas"].shape == (11,)
  assert res["error"].shape == (2, 11) and res["instability"].shape == (2,)
  # Both copies learned, and there is no barrier (< 1 point of error).
  assert np.all(res["error_a"] < 0.1) and np.all(res["error_b"] < 0.1)
  assert np.all(res["instability"] < 0.01), res["instability"]
  np.testing.assert_allclose(res["instability"], instability(res["error"]))
  np.testing.assert_allclose(res["error_a"],
                             1 - res["fit"].evals["test"]["accuracy"][:2],
                             atol=1e-6)
  np.testing.assert_allclose(res["error_b"],
                             1 - res["fit"].evals["test"]["accuracy"][2:],
                             atol=1e-6)
  # Convexity of the loss in the weights: below the chord.
  a = res["alphas"]
  chord = (1 - a) * res["loss"][:, :1] + a * res["loss"][:, -1:]
  assert np.all(res["loss"] <= chord + 1e-5)
  # The two copies really saw different data: their weights differ.
  ka = np.asarray(res["state_a"]["params"]["output"]["kernel"])
  kb = np.asarray(res["state_b"]["params"]["output"]["kernel"])
  assert np.abs(ka - kb).max() > 1e-3
  assert res["seeds_b"].tolist() != res["seeds_a"].tolist()
  # Copy A is the plain continuation of state_k with the given seeds
  # (state_k was not consumed by the analysis).
  plain = trainer.fit(state_k, steps=40, data_seeds=seeds, writer=writer,
                      run_labels=labels).state
  np.testing.assert_allclose(plain["params"]["output"]["kernel"], ka,
                             rtol=2e-5, atol=2e-6)
  # Rows: training rows for both copies, the summary, and the path.
  rows = read_metrics(str(tmp_path))
  copies = {r.get("copy") for r in rows if r["split"] == "minibatch"}
  assert copies >= {"a", "b"}
  lmc = [r for r in rows if r["split"] == "lmc"]
  assert [r["seed"] for r in lmc] == seeds and all(r["step"] == 40 for r in lmc)
  path_rows = [r for r in rows if r["split"] == "interpolation"]
  assert len(path_rows) == 2 * 11
  assert {r["alpha"] for r in path_rows} >= {0.0, 1.0}
