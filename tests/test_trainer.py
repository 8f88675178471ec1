"""Properties of the trainer: seed batching, compile-once, sharding, freezing,
schedules, divergence, data order, snapshots."""

import functools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunknowns import batching, config_defaults, optim
from jaxunknowns.data import Dataset, Split
from jaxunknowns.errors import UserError
from jaxunknowns.metrics import MetricWriter, read_metrics
from jaxunknowns.models import create_model
from jaxunknowns.trainer import (Callback, Trainer, TrainingDiverged,
                                 log_spaced_steps)
from run_helpers import users_xla_flags

ROOT = Path(__file__).resolve().parents[1]


def tiny_dataset(n_train=256, n_test=64, dim=12, classes=3, seed=0):
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(classes, dim)) * 2

  def split(n):
    y = rng.integers(0, classes, n).astype(np.int32)
    x = (centers[y] + rng.normal(size=(n, dim))).astype(np.float32)
    return Split(x=x, y=y)

  return Dataset(name="tiny", train=split(n_train), test=split(n_test),
                 validation=None, num_classes=classes, input_shape=(dim,),
                 augment="none")


def tiny_config(**overrides):
  c = config_defaults.base_config()
  c.model.name = "mlp"
  c.model.widths = (16,)
  c.model.norm = "batch"     # Exercises the batch_stats collection.
  c.optim.name = "momentum"
  c.optim.lr = 0.05
  c.optim.weight_decay = 1e-3
  c.train.steps = 30
  c.train.batch_size = 32
  c.train.log_every = 10
  c.train.eval_every = 10
  c.train.checkpoint_every = 0
  c.train.eval_batch_size = 64
  for k, v in overrides.items():
    node = c
    *path, leaf = k.split(".")
    for p in path:
      node = node[p]
    node[leaf] = v
  return c


def make_trainer(config, dataset=None, **kw):
  dataset = dataset or tiny_dataset()
  return Trainer(config, dataset, create_model(config.model,
                                               dataset.num_classes), **kw)


def fit(trainer, seeds, tmp_path, name="run", **kw):
  writer = MetricWriter(str(tmp_path / name), tensorboard=False)
  os.makedirs(tmp_path / name, exist_ok=True)
  return trainer.fit(trainer.init_state(seeds), steps=trainer.config.train.steps,
                     data_seeds=seeds, writer=writer,
                     run_labels=[{"seed": s} for s in seeds], **kw)


def test_seed_batched_equals_one_by_one(tmp_path):
  config = tiny_config()
  trainer = make_trainer(config)
  batched = fit(trainer, [0, 1, 2], tmp_path, "batched")
  for r, seed in enumerate([0, 1, 2]):
    alone = fit(make_trainer(config), [seed], tmp_path, f"seed{seed}")
    for a, b in zip(jax.tree.leaves(alone.state["params"]),
                    jax.tree.leaves(batched.state["params"])):
      np.testing.assert_allclose(a[0], b[r], rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(alone.evals["test"]["accuracy"][0],
                               batched.evals["test"]["accuracy"][r])
  # Different seeds really are different runs.
  p = jax.tree.leaves(batched.state["params"])[0]
  assert not np.allclose(p[0], p[1])


def test_train_step_compiles_once_and_learns(tmp_path):
  config = tiny_config(**{"train.steps": 60})
  trainer = make_trainer(config)
  result = fit(trainer, [0, 1], tmp_path)
  assert trainer.trace_count == 1  # 6 chunks, 6 evaluations, one trace.
  assert np.all(result.evals["test"]["accuracy"] > 0.8)
  rows = read_metrics(str(tmp_path / "run"))
  train_rows = [r for r in rows if r["split"] == "minibatch"]
  assert sorted({r["step"] for r in train_rows}) == [10, 20, 30, 40, 50, 60]
  for key in ("loss", "accuracy", "l2_grads", "l2_params", "l2_updates",
              "learning_rate"):
    assert all(np.isfinite(r[key]) for r in train_rows), key
  assert {r["split"] for r in rows} == {"minibatch", "train", "test"}


def test_public_train_step_is_the_step_fit_runs():
  """`train_step` (what analyses call) on the batches of the data order
  gives fit's loop's state bit for bit; `eval_step` summed is `evaluate`."""
  trainer = make_trainer(tiny_config(**{"train.steps": 10,
                                        "optim.name": "adamw"}))
  seeds = [0, 1]
  looped, _ = trainer.train_steps(trainer.init_state(seeds), seeds, 10)
  state = jax.device_get(trainer.init_state(seeds))
  idx = batching.batch_indices(seeds, 0, 10, 256, trainer.batch_size)
  x, y = trainer.dataset.train.x, trainer.dataset.train.y
  step = jax.jit(jax.vmap(trainer.train_step))
  for t in range(10):
    state, _ = step(state, x[idx[t]], y[idx[t]])
  for a, b in zip(jax.tree.leaves(jax.device_get(looped)),
                  jax.tree.leaves(jax.device_get(state))):
    np.testing.assert_array_equal(a, b)
  test = trainer.dataset.test
  per_example = jax.vmap(trainer.eval_step, in_axes=(0, None, None))(
      state, test.x, test.y)
  got = trainer.evaluate(state, "test")
  np.testing.assert_allclose(got["loss"], per_example["loss"].mean(1),
                             rtol=1e-6)
  np.testing.assert_allclose(got["accuracy"], per_example["correct"].mean(1))



def test_each_step_draws_fresh_dropout():
  """The step's randomness is fold_in(run rng, step): the same params and
  batch at steps 0 and 1 see different dropout masks (one mask reused at
  every step would be a fixed subnetwork, not dropout), and a step
  repeated sees the same one (resuming reproduces the run)."""
  trainer = make_trainer(tiny_config(**{"model.dropout": 0.5,
                                        "model.norm": "none"}))
  state = jax.tree.map(lambda a: a[0], jax.device_get(trainer.init_state([0])))
  x, y = trainer.dataset.train.x[:32], trainer.dataset.train.y[:32]
  step = jax.jit(trainer.train_step)

  def loss_at(t):
    at_t = dict(state, step=jnp.asarray(t, state["step"].dtype))
    return float(step(at_t, x, y)[1]["loss"])

  assert loss_at(0) == loss_at(0)
  assert loss_at(0) != loss_at(1)

def test_frozen_parameters_are_bit_identical(tmp_path):
  config = tiny_config(**{"optim.freeze": "Dense_0"})
  trainer = make_trainer(config)
  state0 = jax.device_get(trainer.init_state([0]))
  result = fit(trainer, [0], tmp_path)
  before, after = state0["params"], jax.device_get(result.state["params"])
  np.testing.assert_array_equal(before["Dense_0"]["kernel"],
                                after["Dense_0"]["kernel"])
  np.testing.assert_array_equal(before["Dense_0"]["bias"],
                                after["Dense_0"]["bias"])
  assert not np.array_equal(before["output"]["kernel"],
                            after["output"]["kernel"])
  trainable, total = optim.count_trainable(config.optim, trainer.params_template)
  dense0 = before["Dense_0"]["kernel"][0].size + before["Dense_0"]["bias"][0].size
  assert total - trainable == dense0


def test_train_only_trains_exactly_the_matching_parameters():
  """optim.train_only: only the parameters whose path matches train (with
  optim.freeze on top: a match of freeze stays frozen); one step moves
  exactly those and leaves every other leaf bit-identical."""
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  config = tiny_config(**{"optim.train_only": "BatchNorm",
                          "optim.weight_decay": 0.0})
  trainer = make_trainer(config)
  template = trainer.params_template
  paths = ["/".join(k) for k in traverse_util.flatten_dict(template)]
  labels = {"/".join(k): v for k, v in traverse_util.flatten_dict(
      optim.trainable_labels(config.optim, template)).items()}
  assert labels == {p: "train" if p.startswith("BatchNorm") else "frozen"
                    for p in paths}
  bn_size = sum(np.size(v) for v in jax.tree.leaves(template["BatchNorm_0"]))
  assert optim.count_trainable(config.optim, template) == (
      bn_size, sum(np.size(v) for v in jax.tree.leaves(template)))
  config.optim.freeze = "scale"
  labels = {"/".join(k): v for k, v in traverse_util.flatten_dict(
      optim.trainable_labels(config.optim, template)).items()}
  assert [p for p, v in labels.items() if v == "train"] == [
      "BatchNorm_0/bias"]

  state = jax.tree.map(lambda a: a[0], jax.device_get(trainer.init_state([0])))
  new, _ = jax.jit(trainer.train_step)(state, trainer.dataset.train.x[:32],
                                       trainer.dataset.train.y[:32])
  before = traverse_util.flatten_dict(state["params"])
  after = traverse_util.flatten_dict(jax.device_get(new["params"]))
  for k in before:
    moved = not np.array_equal(before[k], after[k])
    assert moved == (k[0] == "BatchNorm_0"), k


def test_freeze_pattern_matching_nothing_names_parameters():
  config = tiny_config(**{"optim.train_only": "nothing_like_this"})
  with pytest.raises(UserError, match="matches no parameter.*output/kernel"):
    make_trainer(config)


def test_schedules_follow_their_written_formula():
  """config_defaults.py's formula, by hand: lr·t/W for t < W; then the step
  schedule multiplies by decay_factor at each boundary <= t (absolute
  steps, not shifted by the warmup), and cosine decays from lr at W to 0 at
  train.steps: lr·(1 + cos(π·(t − W)/(T − W)))/2."""
  T, W = 30, 5
  c = tiny_config(**{"optim.schedule": "step", "optim.boundaries": (10, 20),
                     "optim.decay_factor": 0.1, "optim.lr": 2.0})
  t = np.arange(T)
  for warmup in (0, W):
    c.optim.warmup_steps = warmup
    sched = optim.learning_rate_schedule(c.optim, T)
    want = 2.0 * 0.1 ** ((t >= 10).astype(int) + (t >= 20))
    if warmup:
      want = np.where(t < W, 2.0 * t / W, want)
    np.testing.assert_allclose([float(sched(s)) for s in t], want, rtol=1e-6,
                               atol=1e-7)
  c.optim.schedule = "cosine"
  sched = optim.learning_rate_schedule(c.optim, T)
  want = np.where(t < W, 2.0 * t / W,
                  (1 + np.cos(np.pi * (t - W) / (T - W))))
  np.testing.assert_allclose([float(sched(s)) for s in t], want, rtol=1e-5,
                             atol=1e-6)


def test_step_t_moves_by_the_schedules_lr_at_t():
  """train_step at step t steps by lr(t), not lr(t + 1): under a linear
  warmup lr(t) = lr·t/W, so step 0 moves nothing and, from the same
  params and batch, step 2 moves exactly twice as far as step 1 (SGD)."""
  trainer = make_trainer(tiny_config(**{
      "optim.name": "sgd", "optim.weight_decay": 0.0, "optim.lr": 0.4,
      "optim.warmup_steps": 4, "model.norm": "none"}))
  state = jax.tree.map(lambda a: a[0], jax.device_get(trainer.init_state([0])))
  x, y = trainer.dataset.train.x[:32], trainer.dataset.train.y[:32]
  step = jax.jit(trainer.train_step)

  def moved(t):
    new, metrics = step(dict(state, step=jnp.asarray(t, state["step"].dtype)),
                        x, y)
    delta = [np.asarray(a, np.float64) - np.asarray(b, np.float64) for a, b in
             zip(jax.tree.leaves(new["params"]),
                 jax.tree.leaves(state["params"]))]
    return delta, float(metrics["learning_rate"])

  (d0, lr0), (d1, lr1), (d2, lr2) = moved(0), moved(1), moved(2)
  np.testing.assert_allclose([lr0, lr1, lr2], [0.0, 0.1, 0.2], rtol=1e-6)
  assert all(not a.any() for a in d0)
  for a, b in zip(d1, d2):
    np.testing.assert_allclose(b, 2 * a, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("loss,lr,value", [("cross_entropy", 1e30, "nan"),
                                           ("mse", 1e10, "inf")])
def test_divergence_names_step_and_seed(tmp_path, loss, lr, value):
  """Step 1's loss is at the initial weights; its update makes step 2's
  loss NaN, or with MSE an overflowed but NaN-free inf, which is divergence
  too. Both runs diverge there: the first is named, at step 2."""
  config = tiny_config(**{"optim.name": "sgd", "optim.lr": lr,
                          "model.norm": "none", "train.loss": loss})
  with pytest.raises(TrainingDiverged,
                     match=rf"became {value} at step 2 of the run with seed 0;"
                     r".* or with --overwrite"):
    fit(make_trainer(config), [0, 1], tmp_path)


def test_divergence_of_a_per_run_lr_names_the_runs_lr_not_optim_lr(
    tmp_path):
  """With lr a run axis (hparams), optim.lr is not what ran (experiments
  with an lr grid refuse it): the advice names the run's own lr."""
  config = tiny_config(**{"optim.name": "sgd", "model.norm": "none"})
  trainer = make_trainer(config, hparams=("lr",))
  writer = MetricWriter(str(tmp_path / "run"), tensorboard=False)
  with pytest.raises(TrainingDiverged) as e:
    trainer.fit(trainer.init_state([0, 1], hparams={"lr": [0.01, 1e30]}),
                steps=config.train.steps, data_seeds=[0, 1], writer=writer,
                run_labels=[{"seed": 0, "lr": 0.01}, {"seed": 1, "lr": 1e30}])
  message = str(e.value)
  assert "run with seed 1, lr 1e+30;" in message and "lower this run's lr" in message
  assert "optim.lr (now" not in message


def _rows_by_run(path):
  """{(split, step, lr): row} of a metrics file (one seed per lr here)."""
  return {(r["split"], r["step"], r["lr"]): r for r in read_metrics(path)}


def test_recorded_divergence_keeps_the_other_runs_as_if_alone(tmp_path):
  """on_divergence="record": the diverging run gets one "diverged" row at
  the first step whose loss is not finite (found here by stepping it alone)
  and no row after; the run beside it logs what it logs when trained
  alone; and a resume past the divergence adds no second row."""
  config = tiny_config(**{"optim.name": "sgd", "model.norm": "none",
                          "train.checkpoint_every": 10})
  trainer = make_trainer(config, hparams=("lr",))
  steps, lrs = config.train.steps, [0.05, 1e30]

  def run(name, lrs, stops, checkpoints=True):
    writer = MetricWriter(str(tmp_path / name), tensorboard=False)
    for stop in stops:  # each fit resumes from the last one's checkpoint
      result = trainer.fit(
          trainer.init_state([0] * len(lrs), hparams={"lr": lrs}),
          steps=stop, data_seeds=[0] * len(lrs), writer=writer,
          run_labels=[{"seed": 0, "lr": lr} for lr in lrs],
          on_divergence="record", checkpoint_dir=str(
              tmp_path / name / "ck") if checkpoints else None)
    return result, _rows_by_run(tmp_path / name)

  result, together = run("together", lrs, [steps])
  _, alone = run("alone", lrs[:1], [steps])
  _, resumed = run("resumed", lrs, [20, steps])
  state = trainer.init_state([0], hparams={"lr": lrs[1:]})
  _, m = trainer.train_steps(state, [0], steps)
  first_bad = int(np.flatnonzero(~np.isfinite(m["loss"][:, 0]))[0]) + 1
  assert first_bad < 10  # diverged before the resume's checkpoint
  diverged = [k for k in together if k[0] == "diverged"]
  assert diverged == [("diverged", first_bad, 1e30)]
  assert [k for k in together if k[2] == 1e30] == diverged
  assert {k for k in together if k[2] == lrs[0]} == set(alone)
  for k, row in alone.items():
    for name, v in row.items():
      if isinstance(v, float):
        assert together[k][name] == pytest.approx(v, rel=1e-5), (k, name)
  assert set(resumed) == set(together)
  assert trainer.finite_runs(result.state).tolist() == [True, False]


def test_batch_larger_than_dataset_is_refused():
  with pytest.raises(UserError, match="train.batch_size=512 is larger"):
    make_trainer(tiny_config(**{"train.batch_size": 512}))


def test_data_order_is_a_function_of_seed_and_step():
  a = batching.batch_indices([3, 4], 0, 20, 100, 10)
  b = batching.batch_indices([3, 4], 7, 13, 100, 10)
  np.testing.assert_array_equal(a[7:], b)  # Resuming at step 7 continues.
  # Each epoch (10 steps) is a permutation of all examples.
  np.testing.assert_array_equal(np.sort(a[:10, 0].ravel()), np.arange(100))
  np.testing.assert_array_equal(np.sort(a[10:, 0].ravel()), np.arange(100))
  assert not np.array_equal(a[:10, 0], a[10:, 0])  # New order each epoch.
  assert not np.array_equal(a[:, 0], a[:, 1])      # Per-seed order.


def test_snapshots_restore_exact_weights(tmp_path):
  config = tiny_config()
  trainer = make_trainer(config)
  state0 = jax.device_get(trainer.init_state([5]))
  result = fit(trainer, [5], tmp_path, snapshot_dir=str(tmp_path / "snap"),
               snapshot_steps=(0, 10))
  restored = trainer.restore_snapshot(str(tmp_path / "snap"), 0, result.state)
  for a, b in zip(jax.tree.leaves(state0), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(a, b)
  at10 = trainer.restore_snapshot(str(tmp_path / "snap"), 10, result.state)
  assert int(at10["step"][0]) == 10


def hand_running_stats(trainer, params, seed, steps, shards=1):
  """Flax BatchNorm's running (mean, var) of the BN after Dense_0 of a tiny
  MLP whose weights stay fixed (lr 0), by numpy: each step's batch (the data
  order of `batching`), h = x W + b, and ra = 0.9·ra + 0.1·stat from (0, 1),
  with the biased batch variance. `shards` > 1: what per-device BN would
  keep instead (each shard's statistics, averaged)."""
  data = trainer.dataset.train
  idx = batching.batch_indices([seed], 0, steps, len(data.y),
                               trainer.batch_size)[:, 0]
  w = np.asarray(params["Dense_0"]["kernel"][0], np.float64)
  b = np.asarray(params["Dense_0"]["bias"][0], np.float64)
  mean, var = np.zeros(w.shape[1]), np.ones(w.shape[1])
  for t in range(steps):
    h = (data.x[idx[t]].astype(np.float64) @ w + b).reshape(shards, -1, len(b))
    mean = 0.9 * mean + 0.1 * h.mean(1).mean(0)
    var = 0.9 * var + 0.1 * h.var(1).mean(0)
  return mean, var


def frozen_bn_config(steps):
  """The tiny BN MLP with lr 0: weights fixed, so the running statistics
  have a closed form (hand_running_stats)."""
  return tiny_config(**{"optim.name": "sgd", "optim.lr": 0.0,
                        "optim.weight_decay": 0.0, "train.steps": steps})


def test_fit_updates_batch_stats_and_evaluate_uses_them(tmp_path):
  trainer = make_trainer(frozen_bn_config(20))
  result = fit(trainer, [0], tmp_path)
  state = jax.device_get(result.state)
  mean, var = hand_running_stats(trainer, state["params"], 0, 20)
  bn = state["batch_stats"]["BatchNorm_0"]
  np.testing.assert_allclose(bn["mean"][0], mean, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(bn["var"][0], var, rtol=1e-4, atol=1e-5)

  # Eval mode: the running statistics normalize, by numpy.
  p = jax.tree.map(lambda a: np.asarray(a[0], np.float64), state["params"])
  test = trainer.dataset.test
  h = test.x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
  h = (h - mean) / np.sqrt(var + 1e-5) * p["BatchNorm_0"]["scale"] + (
      p["BatchNorm_0"]["bias"])
  logits = np.maximum(h, 0) @ p["output"]["kernel"] + p["output"]["bias"]
  logp = logits - logits.max(1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(1, keepdims=True))
  # Eval batches of 24 leave a last one of 16 examples and 8 of padding,
  # which count in neither mean: the same numbers as one batch of 64.
  uneven = frozen_bn_config(20)
  uneven.train.eval_batch_size = 24
  for t in (trainer, make_trainer(uneven, trainer.dataset)):
    got = t.evaluate(result.state, "test")
    np.testing.assert_allclose(got["loss"][0],
                               -logp[np.arange(len(test.y)), test.y].mean(),
                               rtol=1e-4)
    np.testing.assert_allclose(got["accuracy"][0],
                               np.mean(logits.argmax(1) == test.y))
  # Padding has label 0: with class 0 predicted everywhere, padded examples
  # would be correct if they counted.
  biased = jax.tree.map(np.array, state)
  biased["params"]["output"]["bias"][0, 0] += 1e3
  got = make_trainer(uneven, trainer.dataset).evaluate(biased, "test")
  np.testing.assert_allclose(got["accuracy"][0], np.mean(test.y == 0))
  # ... and are left as they were.
  for a, b in zip(jax.tree.leaves(state["batch_stats"]),
                  jax.tree.leaves(jax.device_get(result.state["batch_stats"]))):
    np.testing.assert_array_equal(a, b)


SHARDING_SCRIPT = textwrap.dedent("""
    import jax, numpy as np, sys
    sys.path.insert(0, {tests!r})
    from test_trainer import (frozen_bn_config, hand_running_stats,
                              make_trainer, tiny_config)
    from jaxunknowns.metrics import MetricWriter
    from jaxunknowns.trainer import make_mesh
    assert jax.device_count() == 8, jax.devices()
    out = {{}}
    for n in (1, 8):
      config = tiny_config(**{{"train.steps": 20}})
      trainer = make_trainer(config, mesh=make_mesh(jax.devices()[:n]))
      state = trainer.init_state([0, 1])
      res = trainer.fit(state, steps=20, data_seeds=[0, 1],
                        writer=MetricWriter({tmp!r} + str(n), tensorboard=False),
                        run_labels=[{{"seed": 0}}, {{"seed": 1}}])
      out[n] = jax.device_get((res.state["params"], res.state["batch_stats"]))
      if n == 8:
        print("specs", trainer._x_train.sharding.spec,
              res.state["step"].sharding.spec)
    for a, b in zip(jax.tree.leaves(out[1]), jax.tree.leaves(out[8])):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # BN statistics on 8 devices are those of the global batch of 32, by
    # numpy, and not what per-device BN (8 shards of 4) would keep.
    trainer = make_trainer(frozen_bn_config(5), mesh=make_mesh(jax.devices()))
    res = trainer.fit(trainer.init_state([0]), steps=5, data_seeds=[0],
                      writer=MetricWriter({tmp!r} + "bn", tensorboard=False),
                      run_labels=[{{"seed": 0}}])
    state = jax.device_get(res.state)
    var = state["batch_stats"]["BatchNorm_0"]["var"][0]
    _, want = hand_running_stats(trainer, state["params"], 0, 5)
    _, per_shard = hand_running_stats(trainer, state["params"], 0, 5, shards=8)
    np.testing.assert_allclose(var, want, rtol=1e-4, atol=1e-5)
    assert not np.allclose(var, per_shard, rtol=1e-2), (var, per_shard)
    print("SHARDING-OK")
""")


def test_eight_devices_match_one_device_and_bn_is_global(tmp_path):
  """8 fake CPU devices give the params and BN statistics of 1 device, and
  BN's running variance is the global batch's by numpy, which per-device BN
  (per-shard variances) would miss: the comparison can fail."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=os.environ.get(
      "XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8")
  script = SHARDING_SCRIPT.format(tests=str(ROOT / "tests"),
                                  tmp=str(tmp_path / "w"))
  proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT,
                        capture_output=True, text=True, timeout=600)
  assert "SHARDING-OK" in proc.stdout, proc.stderr[-3000:]


def test_refit_after_interruption_keeps_existing_snapshots(tmp_path):
  """A run killed after saving a snapshot but before its next checkpoint
  passes that snapshot step again on resume: it must not fail or overwrite.
  The second fit carries different values (another seed), so an overwrite
  would show."""
  trainer = make_trainer(tiny_config(**{"train.steps": 20}))
  snap = str(tmp_path / "snap")
  first = fit(trainer, [1], tmp_path, "a", snapshot_dir=snap,
              snapshot_steps=(0, 10))
  kept = [jax.device_get(trainer.restore_snapshot(snap, k, first.state))
          for k in (0, 10)]
  other = fit(trainer, [2], tmp_path, "b", snapshot_dir=snap,
              snapshot_steps=(0, 10))
  fit(trainer, [2], tmp_path, "c", snapshot_dir=str(tmp_path / "snap2"),
      snapshot_steps=(0, 10))
  for k, want in zip((0, 10), kept):
    got = jax.device_get(trainer.restore_snapshot(snap, k, other.state))
    theirs = jax.device_get(trainer.restore_snapshot(str(tmp_path / "snap2"),
                                                     k, other.state))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(got["params"]), jax.tree.leaves(theirs["params"])))


def numpy_directions(name, params, grads, wd, mu=0.9, b1=0.9, b2=0.999,
                     eps=1e-8, lr=0.1):
  """The update formulas, in float64 (PyTorch's conventions): the direction
  d_t, of which the trainer steps -lr·d_t. L2 (g + wd·p) for every optimizer
  but AdamW, whose decay is decoupled (d = adam(g) + wd·p)."""
  p = np.asarray(params, np.float64)
  buf, m, v, out = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p), []
  for t, g in enumerate(grads, start=1):
    g = np.asarray(g, np.float64) + (wd * p if name != "adamw" else 0.0)
    if name == "sgd":
      d = g
    elif name in ("momentum", "nesterov"):
      buf = mu * buf + g
      d = g + mu * buf if name == "nesterov" else buf
    else:
      m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
      d = (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
      d = d + wd * p if name == "adamw" else d
    out.append(d)
    p = p - lr * d
  return out


def optimizer_directions(config, p, grads):
  """The directions config.optim's optimizer gives for `grads` in turn,
  stepping the params by lr 0.1 (as numpy_directions does)."""
  tx = optim.create_optimizer(config.optim, {"w": jnp.asarray(p)})
  state, params, got = tx.init({"w": jnp.asarray(p)}), {"w": jnp.asarray(p)}, []
  for g in grads:
    d, state = tx.update({"w": jnp.asarray(g)}, state, params)
    got.append(np.asarray(d["w"]))
    params = {"w": params["w"] - 0.1 * d["w"]}
  return got


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam", "adamw"])
def test_optimizers_follow_their_update_formulas(name):
  wd = 0.05
  config = tiny_config(**{"optim.name": name, "optim.weight_decay": wd})
  rng = np.random.default_rng(0)
  p = rng.normal(size=(4,)).astype(np.float32)
  grads = rng.normal(size=(5, 4)).astype(np.float32)
  got = optimizer_directions(config, p, grads)
  np.testing.assert_allclose(got, numpy_directions(name, p, grads, wd),
                             rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_grad_clip_clips_the_raw_gradient_before_the_optimizer(name):
  """optim.grad_clip is PyTorch's clip_grad_norm_ before optimizer.step:
  the gradient is clipped to norm c, then decay and momentum / Adam's
  moments see it (clipping their output instead is another optimizer)."""
  wd, c = 0.05, 0.5
  config = tiny_config(**{"optim.name": name, "optim.weight_decay": wd,
                          "optim.grad_clip": c})
  rng = np.random.default_rng(1)
  p = rng.normal(size=(4,)).astype(np.float32)
  grads = (3 * rng.normal(size=(5, 4))).astype(np.float32)  # norms > c
  got = optimizer_directions(config, p, grads)
  norms = np.linalg.norm(grads.astype(np.float64), axis=1, keepdims=True)
  clipped = grads * np.minimum(1.0, c / norms)
  np.testing.assert_allclose(got, numpy_directions(name, p, clipped, wd),
                             rtol=2e-5, atol=1e-6)


def test_sam_does_not_perturb_frozen_parameters():
  """optim.freeze with SAM: eps = rho g/|g| over the trained leaves only, the
  frozen leaf neither perturbed nor in |g|, by numpy for the loss
  f(a, b) = (c.a + d.b)^2 + sum(a^4)/4 with b frozen."""
  config = tiny_config(**{"optim.name": "sgd", "optim.weight_decay": 0.0,
                          "optim.freeze": "^b$", "optim.sam_rho": 0.3})
  rng = np.random.default_rng(2)
  c, d, a, b = (rng.normal(size=3) for _ in range(4))
  f = lambda q: (jnp.dot(jnp.asarray(c, jnp.float32), q["a"]) + jnp.dot(
      jnp.asarray(d, jnp.float32), q["b"])) ** 2 + jnp.sum(q["a"] ** 4) / 4
  params = {"a": jnp.asarray(a, jnp.float32), "b": jnp.asarray(b, jnp.float32)}
  tx = optim.create_optimizer(config.optim, params)
  direction, _ = tx.update(jax.grad(f)(params), tx.init(params), params,
                           grad_fn=jax.grad(f))
  grad_a = lambda a: 2 * (c @ a + d @ b) * c + a ** 3
  g = grad_a(a)
  np.testing.assert_allclose(direction["a"],
                             grad_a(a + 0.3 * g / np.linalg.norm(g)),
                             rtol=1e-5)
  np.testing.assert_array_equal(direction["b"], np.zeros(3))

# -----------------------------------------------------------------------------
# Hyperparameters as a run axis
# -----------------------------------------------------------------------------
@pytest.mark.parametrize("name,schedule,values", [
    # lr, weight decay (one run at 0: the per-run chain always decays) and
    # momentum per run, under a step schedule.
    ("momentum", "step", {"lr": [0.05, 0.02, 0.1],
                          "weight_decay": [1e-3, 0.0, 5e-3],
                          "momentum": [0.9, 0.5, 0.0]}),
    # Adam's betas and eps per run, under cosine with warmup. Without
    # BatchNorm: the bias before a BN layer has a zero gradient in exact
    # arithmetic, which Adam divides by its own rounding noise (+-lr per
    # step, whatever the batching: seeds vmapped differ from one alone too).
    ("adam", "cosine", {"lr": [1e-2, 3e-3, 1e-2], "b1": [0.9, 0.8, 0.5],
                        "b2": [0.999, 0.99, 0.9], "eps": [1e-8, 1e-3, 1e-6]}),
])
def test_per_run_hyperparameters_equal_separate_programs(name, schedule,
                                                         values):
  """R runs with per-run optimizer values in one program end where R
  programs of their own, each built from a config holding its values, end."""
  overrides = {"optim.name": name, "optim.schedule": schedule,
               "model.norm": "batch" if name == "momentum" else "none",
               "optim.boundaries": (8,), "optim.warmup_steps": 4,
               "train.steps": 20}
  seeds = [0, 0, 1]
  together = make_trainer(tiny_config(**overrides), hparams=tuple(values))
  state, metrics = together.train_steps(
      together.init_state(seeds, hparams=values), seeds, 20)
  assert together.trace_count == 1
  for r, seed in enumerate(seeds):
    own = {f"optim.{h}": v[r] for h, v in values.items()}
    alone = make_trainer(tiny_config(**overrides, **own))
    state_r, metrics_r = alone.train_steps(alone.init_state([seed]), [seed], 20)
    for a, b in zip(jax.tree.leaves(state_r["params"]),
                    jax.tree.leaves(state["params"])):
      np.testing.assert_allclose(a[0], b[r], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics_r["learning_rate"][:, 0],
                               metrics["learning_rate"][:, r],
                               rtol=1e-6)
  # The values matter: runs 0 and 1 share a seed but not their end.
  p = jax.tree.leaves(state["params"])[0]
  assert not np.allclose(p[0], p[1])


def test_per_run_hyperparameters_only_from_the_allowed_fields():
  with pytest.raises(UserError, match=r"optim.freeze cannot differ"):
    make_trainer(tiny_config(), hparams=("freeze",))
  trainer = make_trainer(tiny_config(), hparams=("lr",))
  with pytest.raises(ValueError, match="needs values of exactly"):
    trainer.init_state([0])


def image_dataset(shape=(8, 8, 3), n=64, classes=3):
  rng = np.random.default_rng(0)
  split = lambda: Split(x=rng.normal(size=(n,) + shape).astype(np.float32),
                        y=rng.integers(0, classes, n).astype(np.int32))
  return Dataset(name="tiny_images", train=split(), test=split(),
                 validation=None, num_classes=classes, input_shape=shape,
                 augment="none")


def check_init_is_model_init_per_seed():
  """Trainer.init_variables (all seeds in one program) against the reference
  written out here: per seed, split(PRNGKey(seed)) into params / dropout /
  run keys and `jit(model.init)`, compared bit for bit. A changed key
  (split order, a fold-in) or initializer moves every draw: this fails.
  Run in process and, below, in a subprocess at XLA's default level."""
  models = {
      "mlp_bn": (tiny_config(), tiny_dataset()),
      "conv2": (tiny_config(**{"model.name": "conv2", "model.norm": "none"}),
                image_dataset()),
      "resnet8_bn": (tiny_config(**{"model.name": "resnet",
                                    "model.norm": "batch", "model.depth": 8,
                                    "model.width": 16,
                                    "model.bn_scale_init": "uniform"}),
                     image_dataset()),
  }
  seeds = (0, 1, 7)
  for name, (config, dataset) in models.items():
    trainer = make_trainer(config, dataset)
    got = jax.device_get(trainer.init_variables(seeds))
    model = trainer.model
    dummy = jnp.zeros((1,) + dataset.input_shape, jnp.float32)

    @jax.jit
    def reference(seed_key):
      k_params, k_dropout, k_run = jax.random.split(seed_key, 3)
      v = model.init({"params": k_params, "dropout": k_dropout}, dummy,
                     train=False)  # pylint: disable=cell-var-from-loop
      return {"params": v["params"], "batch_stats": v.get("batch_stats", {}),
              "rng": k_run}

    for r, seed in enumerate(seeds):
      want = jax.device_get(reference(jax.random.PRNGKey(seed)))
      assert (jax.tree.structure(want) ==
              jax.tree.structure(jax.tree.map(lambda a: a[r], got)))
      for (path, w), g in zip(jax.tree_util.tree_flatten_with_path(want)[0],
                              jax.tree.leaves(got)):
        # Bit for bit: the same floats, not merely close ones.
        np.testing.assert_array_equal(
            np.asarray(g[r]).view(np.uint32), np.asarray(w).view(np.uint32),
            err_msg=f"{name} seed {seed} {jax.tree_util.keystr(path)}")
    if name == "resnet8_bn":
      assert jax.tree.leaves(got["batch_stats"])


def test_init_is_model_init_per_seed_bit_for_bit():
  """At the suite's XLA level (conftest: 0, init compiled as the rest)."""
  check_init_is_model_init_per_seed()


def test_init_at_default_xla_level_is_model_init_bit_for_bit():
  """At XLA's default level, as users run: the trainer compiles init at
  -O1 (trainer.init_compiler_options), the reference at the default -O3;
  the variables must still be the same bits. A subprocess, since the
  suite's XLA_FLAGS pin level 0 for the whole process."""
  flags = users_xla_flags()
  script = textwrap.dedent(f"""
      import sys
      sys.path.insert(0, {str(ROOT / 'tests')!r})
      import test_trainer
      from jaxunknowns.trainer import init_compiler_options
      t = test_trainer.make_trainer(test_trainer.tiny_config())
      assert init_compiler_options(t.mesh) == {{
          "xla_backend_optimization_level": 1}}, init_compiler_options(t.mesh)
      test_trainer.check_init_is_model_init_per_seed()
      print("INIT-OK")
  """)
  proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT,
                        env=dict(os.environ, XLA_FLAGS=flags),
                        capture_output=True, text=True, timeout=600)
  assert "INIT-OK" in proc.stdout, proc.stderr[-3000:]


def test_log_spaced_steps_round_to_the_nearest_power_of_two():
  """Below `chunk` a log-spaced point s becomes 2^round(log2 s): 46.4 of
  geomspace(1, 1000, 10) is 64 (log2 = 5.54), not 32."""
  assert log_spaced_steps(1000, 10, 100) == [1, 2, 4, 8, 16, 64, 100, 200,
                                              500, 1000]


def test_callbacks_also_run_at_the_last_step(tmp_path):
  """An analysis every 20 of 30 steps also runs at the end: the Hessian or
  spectrum "at the end" is the trained network's."""
  trainer = make_trainer(tiny_config())  # 30 steps
  seen = []
  fit(trainer, [0], tmp_path, callbacks=[
      Callback("c", 20, lambda _, s, t: seen.append(t) or {})])
  assert seen == [20, 30]


def test_a_snapshot_off_the_chunk_grid_is_taken_at_its_step(tmp_path):
  """IMP's rewind point need not be a multiple of log_every: step 7 is made
  a chunk boundary, and the snapshot holds the state after step 7."""
  trainer = make_trainer(tiny_config())
  snap = str(tmp_path / "snap")
  result = fit(trainer, [0], tmp_path, snapshot_dir=snap,
               snapshot_steps=(0, 7))
  s7 = trainer.restore_snapshot(snap, 7, result.state)
  assert int(np.asarray(s7["step"]).reshape(-1)[0]) == 7


def test_a_boundary_at_the_end_of_warmup_applies_at_that_step():
  """Warm-up is lr·t/W for t < W only; a step boundary at W applies at W."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  cfg = ml_collections.ConfigDict(dict(
      lr=1.0, schedule="step", boundaries=(10,), decay_factor=0.1,
      warmup_steps=10))
  f = optim.learning_rate_schedule(cfg, 100)
  np.testing.assert_allclose([f(5), f(9), f(10), f(11)], [0.5, 0.9, 0.1, 0.1],
                             rtol=1e-6)


@pytest.mark.parametrize("shift, classes, why", [
    (1, 3, "train labels run 1..3, outside [0, 3)"),
    (0, 2, "train labels run 0..2, outside [0, 2)"),
    (-1, 3, "train labels run -1..1, outside [0, 3)")])
def test_labels_outside_the_classes_are_refused(shift, classes, why):
  """Labels 1..K of one's own dataset (or num_classes one short) trained to
  a NaN loss at step 1, reported as divergence with advice to lower the
  learning rate."""
  data = tiny_dataset()
  data = data.replace(num_classes=classes,
                      train=Split(data.train.x, data.train.y + shift))
  with pytest.raises(UserError) as info:
    make_trainer(tiny_config(), data)
  assert why in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_label_smoothing_cross_entropy_matches_numpy(eps):
  """cross_entropy with label smoothing ε: per example
  −Σ_c ((1 − ε)·onehot_c + ε/C)·log_softmax(z)_c, against numpy; ε = 0 is
  the plain integer-label cross entropy −log_softmax(z)_y."""
  from jaxunknowns import losses  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  n, c = 6, 5
  z = rng.normal(size=(n, c)) * 2.0
  y = rng.integers(0, c, n)
  logp = z - z.max(-1, keepdims=True)
  logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
  onehot = np.eye(c)[y]
  want = -(((1 - eps) * onehot + eps / c) * logp).sum(-1)
  got = losses.cross_entropy(jnp.asarray(z, jnp.float32), jnp.asarray(y),
                             label_smoothing=eps)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
  plain = losses.cross_entropy(jnp.asarray(z, jnp.float32), jnp.asarray(y))
  np.testing.assert_allclose(np.asarray(plain), -logp[np.arange(n), y],
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
      np.asarray(losses.cross_entropy(jnp.asarray(z, jnp.float32),
                                      jnp.asarray(y), label_smoothing=0.0)),
      -logp[np.arange(n), y], rtol=1e-5, atol=1e-5)


def test_train_step_is_sgd_on_the_batch_mean_loss_with_its_logged_norms():
  """One plain-SGD train_step is θ − η ∇θ of the batch's MEAN cross-entropy,
  its logged loss that mean, and its logged l2 norms those of the gradient
  and the update, by numpy (a summed loss moved θ batch-size times as far;
  a norm without its square root was logged as a squared norm)."""
  lr = 0.1
  trainer = make_trainer(tiny_config(**{
      "model.norm": "none", "optim.name": "sgd", "optim.lr": lr,
      "optim.weight_decay": 0.0}))
  state = jax.tree.map(lambda a: a[0], jax.device_get(trainer.init_state([0])))
  x, y = trainer.dataset.train.x[:32], trainer.dataset.train.y[:32]

  def mean_loss(params):  # the model's logits; the loss and mean written here
    logits = trainer.model.apply({"params": params}, x, train=True)
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(logp[jnp.arange(len(y)), y])
  want_loss, grads = jax.value_and_grad(mean_loss)(state["params"])
  new, metrics = jax.jit(functools.partial(trainer.train_step,
                                           with_norms=True))(state, x, y)
  np.testing.assert_allclose(metrics["loss"], want_loss, rtol=1e-5)
  flat = lambda tree: np.concatenate(
      [np.ravel(np.asarray(a, np.float64)) for a in jax.tree.leaves(tree)])
  g = flat(grads)
  np.testing.assert_allclose(flat(new["params"]),
                             flat(state["params"]) - lr * g, rtol=1e-4,
                             atol=1e-6)
  np.testing.assert_allclose(metrics["l2_grads"], np.linalg.norm(g),
                             rtol=1e-4)
  np.testing.assert_allclose(metrics["l2_updates"], lr * np.linalg.norm(g),
                             rtol=1e-4)
