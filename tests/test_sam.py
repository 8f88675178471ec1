"""SAM / ASAM (jaxunknowns/sam.py), its trainer wiring (second gradient,
BatchNorm statistics, m-sharpness, ρ as a run axis) and the `sam`
experiment end to end, each checked against an independent computation."""

import functools
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxunknowns import config_defaults, config_loading, optim, sam, validation
from jaxunknowns.data import load_dataset
from jaxunknowns.errors import UserError
from jaxunknowns.models import create_model
from jaxunknowns.trainer import Trainer
from run_helpers import (ROOT, assert_one_line_error, assert_report_rebuilds,
                         assert_user_error_before_writing, read_json,
                         run_in_process)

RNG = np.random.default_rng(0)


def tree(*shapes):
  return {"a": {"kernel": jnp.asarray(RNG.normal(size=shapes[0]), jnp.float32),
                "bias": jnp.asarray(RNG.normal(size=shapes[1]), jnp.float32)}}


def softmax_loss_np(w, b, x, y):
  """(loss, dW, db) of softmax regression, by hand in float64."""
  z = x @ w + b
  p = np.exp(z - z.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  onehot = np.eye(w.shape[1])[y]
  n = len(y)
  return (-np.mean(np.log(p[np.arange(n), y])), x.T @ (p - onehot) / n,
          (p - onehot).mean(0))


X = RNG.normal(size=(32, 5))
Y = RNG.integers(0, 3, 32)


def jax_loss(params):
  z = jnp.asarray(X, jnp.float32) @ params["a"]["kernel"] + params["a"]["bias"]
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(z, Y))


def test_rho_zero_equals_inner_bit_for_bit():
  params = tree((5, 3), (3,))
  inner = optax.chain(optax.add_decayed_weights(1e-3), optax.trace(0.9))
  tx = sam.sam(inner, 0.0)
  p1, s1, p2, s2 = params, tx.init(params), params, inner.init(params)
  for _ in range(5):
    d1, s1 = tx.update(jax.grad(jax_loss)(p1), s1, p1, grad_fn=jax.grad(jax_loss))
    d2, s2 = inner.update(jax.grad(jax_loss)(p2), s2, p2)
    p1 = jax.tree.map(lambda p, d: p - 0.1 * d, p1, d1)
    p2 = jax.tree.map(lambda p, d: p - 0.1 * d, p2, d2)
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.array_equal(np.asarray(p1["a"]["kernel"]),
                            np.asarray(params["a"]["kernel"]))


def test_perturbation_norm_and_asam_closed_form():
  params, grads = tree((4, 6), (6,)), tree((4, 6), (6,))
  eps = sam.perturbation(grads, params, 0.3)
  flat = np.concatenate([np.ravel(e) for e in jax.tree.leaves(eps)])
  np.testing.assert_allclose(np.linalg.norm(flat), 0.3, rtol=1e-5)
  eta = 0.01
  eps = sam.perturbation(grads, params, 0.3, adaptive=True, eta=eta)
  w, g = np.asarray(params["a"]["kernel"], np.float64), np.asarray(
      grads["a"]["kernel"], np.float64)
  gb = np.asarray(grads["a"]["bias"], np.float64)
  t = np.abs(w) + eta  # T = 1 on the bias
  norm = np.sqrt(np.sum((t * g) ** 2) + np.sum(gb ** 2))
  np.testing.assert_allclose(eps["a"]["kernel"], 0.3 * t * t * g / norm,
                             rtol=1e-5)
  np.testing.assert_allclose(eps["a"]["bias"], 0.3 * gb / norm, rtol=1e-5)
  scaled = np.concatenate([(np.asarray(eps["a"]["kernel"]) / t).ravel(),
                           np.asarray(eps["a"]["bias"]).ravel()])
  np.testing.assert_allclose(np.linalg.norm(scaled), 0.3, rtol=1e-5)
  zero = sam.perturbation(jax.tree.map(jnp.zeros_like, grads), params, 0.3)
  assert all(np.all(np.asarray(e) == 0) for e in jax.tree.leaves(zero))


def test_update_is_the_gradient_at_the_ascent_point_by_hand():
  params, rho = tree((5, 3), (3,)), 0.2
  w, b = (np.asarray(params["a"][k], np.float64) for k in ("kernel", "bias"))
  _, gw, gb = softmax_loss_np(w, b, X, Y)
  norm = np.sqrt(np.sum(gw ** 2) + np.sum(gb ** 2))
  _, hw, hb = softmax_loss_np(w + rho * gw / norm, b + rho * gb / norm, X, Y)
  tx = sam.sam(optax.identity(), rho)
  d, _ = tx.update(jax.grad(jax_loss)(params), tx.init(params), params,
                   grad_fn=jax.grad(jax_loss))
  np.testing.assert_allclose(d["a"]["kernel"], hw, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(d["a"]["bias"], hb, rtol=1e-4, atol=1e-6)
  assert not np.allclose(hw, gw, rtol=1e-3)  # the ascent point matters


# ---------------------------------------------------------------------------
# The trainer: SAM from config.optim
# ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def mnist1d(train_size):
  c = config_defaults.base_config()
  c.data.name, c.data.train_size = "mnist1d", train_size
  return load_dataset(c.data)


@functools.lru_cache(maxsize=None)  # a trainer (and its compiled step) once
def make_trainer(norm="none", hparams=(), dropout=0.0, **optim_fields):
  c = config_defaults.base_config()
  c.data.name, c.data.train_size = "mnist1d", 256
  c.model.widths, c.model.norm, c.model.dropout = (16,), norm, dropout
  c.optim.name, c.optim.lr = "sgd", 0.1
  c.train.batch_size, c.train.steps, c.train.eval_train = 32, 4, False
  for k, v in optim_fields.items():
    c.optim[k] = v
  ds = mnist1d(c.data.train_size)
  return Trainer(c, ds, create_model(c.model, ds.num_classes), hparams=hparams)


def one_step(trainer, x, y):
  """(state after one train_step, the state before) of one run, seed 0."""
  v = jax.jit(trainer.init_one)(jax.random.PRNGKey(0))
  state = {"step": jnp.int32(0), **v, "opt_state": trainer.tx.init(v["params"])}
  if not hasattr(trainer, "jitted_step"):
    trainer.jitted_step = jax.jit(trainer.train_step)
  return trainer.jitted_step(state, x, y)[0], state


def batch(trainer):
  return (jnp.asarray(trainer.dataset.train.x[:32]),
          jnp.asarray(trainer.dataset.train.y[:32]))


def forward_loss(trainer, x, y):
  def loss(p, stats, xb, yb, mutable):
    out = trainer.model.apply({"params": p, "batch_stats": stats} if stats
                              else {"params": p}, xb, train=True,
                              mutable=["batch_stats"] if mutable else False)
    logits, new = out if mutable else (out, {})
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        logits, yb)), new
  return loss


def test_trainer_step_matches_hand_sam_and_bn_statistics_once():
  trainer = make_trainer(norm="batch", sam_rho=0.1)
  x, y = batch(trainer)
  new, old = one_step(trainer, x, y)
  loss = forward_loss(trainer, x, y)
  w, stats = old["params"], old["batch_stats"]
  grad = jax.jit(jax.grad(lambda p: loss(p, stats, x, y, True)[0]))
  g = grad(w)
  eps = jax.tree.map(lambda a: 0.1 * a / optax.tree.norm(g), g)
  ascent = jax.tree.map(jnp.add, w, eps)
  h = grad(ascent)
  for a, b in zip(jax.tree.leaves(new["params"]),
                  jax.tree.leaves(jax.tree.map(lambda p, d: p - 0.1 * d, w, h))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  stats_at = jax.jit(lambda p, s: loss(p, s, x, y, True)[1]["batch_stats"])
  first = stats_at(w, stats)
  second = stats_at(ascent, first)
  for a, b, c in zip(jax.tree.leaves(new["batch_stats"]),
                     jax.tree.leaves(first), jax.tree.leaves(second)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not np.allclose(a, c, rtol=1e-6, atol=1e-7)  # not updated twice


def test_second_gradient_sees_the_first_passs_dropout_mask():
  """With dropout, h = grad L(w + eps) is taken with the same dropout mask
  as g = grad L(w) (the step's dropout key, fold_in(run rng, step) split
  after the augmentation key): a mask drawn afresh would make the second
  gradient that of another subnetwork."""
  trainer = make_trainer(dropout=0.5, sam_rho=0.1)
  x, y = batch(trainer)
  new, old = one_step(trainer, x, y)

  def hand_step(key):
    def loss(p):
      logits = trainer.model.apply({"params": p}, x, train=True,
                                   rngs={"dropout": key})
      return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
          logits, y))
    grad = jax.jit(jax.grad(loss))
    w = old["params"]
    g = grad(w)
    h = grad(jax.tree.map(lambda a, b: a + 0.1 * b / optax.tree.norm(g), w,
                          g))
    return jax.tree.map(lambda a, b: a - 0.1 * b, w, h)

  aug_key, dropout_key = jax.random.split(
      jax.random.fold_in(old["rng"], old["step"]))
  for got, want in zip(jax.tree.leaves(new["params"]),
                       jax.tree.leaves(hand_step(dropout_key))):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert not all(np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(
      jax.tree.leaves(new["params"]), jax.tree.leaves(hand_step(aug_key))))


def test_m_sharpness():
  plain, full = make_trainer(sam_rho=0.1), make_trainer(sam_rho=0.1, sam_m=32)
  x, y = batch(plain)
  a, _ = one_step(plain, x, y)
  b, _ = one_step(full, x, y)
  for u, v in zip(jax.tree.leaves(a["params"]), jax.tree.leaves(b["params"])):
    np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)
  half = make_trainer(sam_rho=0.1, sam_m=16)
  new, old = one_step(half, x, y)
  loss = forward_loss(half, x, y)
  grad = jax.jit(jax.grad(lambda q, xb, yb: loss(q, {}, xb, yb, False)[0]))
  hs = []
  for xb, yb in ((x[:16], y[:16]), (x[16:], y[16:])):
    g = grad(old["params"], xb, yb)
    hs.append(grad(jax.tree.map(lambda w, d: w + 0.1 * d / optax.tree.norm(g),
                                old["params"], g), xb, yb))
  want = jax.tree.map(lambda w, h1, h2: w - 0.1 * (h1 + h2) / 2,
                      old["params"], *hs)
  for u, v in zip(jax.tree.leaves(new["params"]), jax.tree.leaves(want)):
    np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


def test_m_sharpness_bn_statistics_are_the_mean_over_sub_batches():
  """With sam_m and BatchNorm, each sub-batch is normalized by its own
  statistics and the running averages move by their mean over the
  sub-batches (not by the first sub-batch's, nor the whole batch's)."""
  trainer = make_trainer(norm="batch", sam_rho=0.1, sam_m=16)
  x, y = batch(trainer)
  new, old = one_step(trainer, x, y)
  loss = forward_loss(trainer, x, y)
  stats_at = jax.jit(lambda p, s, xb, yb: loss(p, s, xb, yb, True)[1][
      "batch_stats"])
  subs = [stats_at(old["params"], old["batch_stats"], x[i:i + 16],
                   y[i:i + 16]) for i in (0, 16)]
  want = jax.tree.map(lambda a, b: (a + b) / 2, *subs)
  for got, w, first in zip(jax.tree.leaves(new["batch_stats"]),
                           jax.tree.leaves(want), jax.tree.leaves(subs[0])):
    np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, first, rtol=1e-5, atol=1e-6)


def test_rho_as_a_run_axis_and_old_configs():
  together = make_trainer(hparams=("sam_rho",))
  x, y = batch(together)
  _, one = one_step(together, x, y)
  state = jax.tree.map(lambda a: jnp.stack([a, a]), one)
  state["hparams"] = {"sam_rho": jnp.asarray([0.0, 0.1], jnp.float32)}
  state["opt_state"] = jax.vmap(together.tx.init)(state["params"])
  out = jax.jit(jax.vmap(together.train_step, in_axes=(0, None, None)))(
      state, x, y)[0]
  for r, rho in enumerate((0.0, 0.1)):
    alone, _ = one_step(make_trainer(sam_rho=rho), x, y)
    for u, v in zip(jax.tree.leaves(out["params"]),
                    jax.tree.leaves(alone["params"])):
      np.testing.assert_allclose(u[r], v, rtol=1e-6, atol=1e-7)
  old = ml_collections.ConfigDict({"name": "sgd", "lr": 0.1})  # pre-SAM
  assert not optim.uses_sam(old) and optim.sam_sub_batches(old, 32) == 0
  validation.check_sam(old, 32)


# ---------------------------------------------------------------------------
# The experiment, and bad input
# ---------------------------------------------------------------------------
def small_config(**overrides):
  c = config_loading.load_config(str(ROOT / "configs/sam.py") +
                                 ":fashion_lenet,runlocal", overrides)
  return c


def test_runlocal_end_to_end(tmp_path):
  config = small_config(**{"compare": ("sgd", "sam"), "sam.rhos": (0.05,)})
  summary = run_in_process(config, tmp_path / "w")
  arms = summary["arms"]
  assert list(arms["sam"]["by_rho"]) == ["0.05"]
  assert arms["sam"]["gradients_per_step"] == 2
  assert arms["sgd"]["gradients_per_step"] == 1
  for arm in arms.values():
    for s in arm["by_rho"].values():
      assert len(s["lambda_max"]["per_seed"]) == config.seeds
      assert s["trace"]["mean"] > 0 and s["lambda_max"]["mean"] > 0
  saved = read_json(tmp_path / "w" / "summary.json")
  # Equal epochs: both arms take ceil(epochs × N / batch) steps.
  want = math.ceil(config.epochs * saved["train_examples"] /
                   config.train.batch_size)
  assert saved["arms"]["sgd"]["steps"] == saved["arms"]["sam"]["steps"] == want
  assert_report_rebuilds(tmp_path / "w")


def test_sgd_2x_trains_twice_the_epochs_of_the_other_arms():
  """`sgd_2x` is SGD given SAM's gradient budget: twice the epochs of `sgd`,
  `sam` and `asam`, which train the same epochs. The step counts against
  ceil(epochs × N / batch) by hand for a training set of 1,000 and 3,000."""
  from jaxunknowns.implicit import sam as sam_exp  # pylint: disable=g-import-not-at-top
  config = small_config()
  for n in (1000, 3000):
    steps = {name: sam_exp.arm_config(config, name, n).train.steps
             for name in sam_exp.ARMS}
    epoch = n / config.train.batch_size
    assert steps == {"sgd": math.ceil(config.epochs * epoch),
                     "sam": math.ceil(config.epochs * epoch),
                     "asam": math.ceil(config.epochs * epoch),
                     "sgd_2x": math.ceil(2 * config.epochs * epoch)}, steps
    assert steps["sgd_2x"] >= 2 * steps["sgd"] - 1


def test_summary_by_rho_takes_each_rhos_own_seeds():
  """A stage's runs are ρ-major (ρ_0's seeds, then ρ_1's, ...). Hand-made
  runs whose value is 10 × (ρ index) + seed: each ρ's stats must hold
  exactly its own seeds, and their mean by numpy."""
  from jaxunknowns.implicit import sam as sam_exp  # pylint: disable=g-import-not-at-top
  rhos, seeds = [0.05, 0.2, 0.5], 3
  values = [10.0 * i + s for i in range(len(rhos)) for s in range(seeds)]
  r = {"rhos": rhos, "runs": {q: [v + k / 100 for v in values]
                              for k, q in enumerate(sam_exp.QUANTITIES)}}
  by_rho = sam_exp.summarize(r, seeds)
  assert list(by_rho) == ["0.05", "0.2", "0.5"]
  for i, rho in enumerate(by_rho):
    for k, q in enumerate(sam_exp.QUANTITIES):
      want = [10.0 * i + s + k / 100 for s in range(seeds)]
      np.testing.assert_allclose(by_rho[rho][q]["per_seed"], want)
      assert by_rho[rho][q]["mean"] == pytest.approx(np.mean(want))


@pytest.mark.parametrize("overrides,needle", [
    ({"sam.rhos": (0.05, -0.1)}, "sam.rhos"),
    ({"optim.sam_m": 7, "compare": ("sam",)}, "optim.sam_m"),
    # m-sharpness is a SAM arm's: with none it was recorded, never used.
    ({"optim.sam_m": 2, "compare": ("sgd",)}, "optim.sam_m=2 is unused here"),
    ({"optim.sam_rho": 0.1}, "optim.sam_rho"),
    ({"compare": ("sgd", "nope")}, "compare"),
    ({"measure.lanczos_steps": 0}, "measure.lanczos_steps"),
    ({"measure.lanczos_steps": 10**7}, "measure.lanczos_steps"),
    # A ρ of an arm that does not run would be recorded, never used.
    ({"compare": ("sgd", "asam"), "sam.rhos": (0.1,)}, "sam.rhos"),
    ({"compare": ("sgd", "sam"), "sam.asam_rhos": (0.1,)}, "sam.asam_rhos"),
    # Every arm's steps come from epochs: train.steps would be recorded only.
    ({"train.steps": 3}, "train.steps=3 is unused here")])
def test_bad_input_in_process(tmp_path, overrides, needle):
  assert_user_error_before_writing(small_config(**overrides), tmp_path / "w",
                                   (needle,))


def test_a_variants_own_rho_of_an_arm_left_out_passes():
  """fashion_resnet sets sam.rhos=(0.05,): compare=('sgd','asam') was refused
  as 'sam.rhos=(0.05,) is unused here ... leave it at (0.05, 0.2)', a value
  the user never gave."""
  validation.check_config(config_loading.load_config(
      f"{ROOT}/configs/sam.py:fashion_resnet,runlocal",
      {"compare": ("sgd", "asam")}))


def test_bad_input_cli(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
  proc = subprocess.run(
      [sys.executable, "-m", "jaxunknowns.main",
       "--config=configs/train.py:mnist1d_mlp,runlocal",
       "--config.optim.sam_rho=-0.1", f"--workdir={tmp_path / 'w'}"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert_one_line_error(proc, "optim.sam_rho")
  assert not (tmp_path / "w").exists()
  with pytest.raises(UserError, match="optim.sam_adaptive"):
    validation.check_sam(ml_collections.ConfigDict(
        {"sam_rho": 0.0, "sam_adaptive": True, "sam_m": 0}), 32)


def test_the_inner_optimizer_sees_the_weights_not_the_ascent_point():
  """SAM takes its gradient at w + ε but applies the update at w: weight
  decay is λ·w, not λ·(w + ε) (only ρ = 0 was tested, where they agree)."""
  params = {"w": jnp.array([1.0, -2.0, 3.0])}
  grads = {"w": jnp.array([0.5, 0.5, -1.0])}
  tx = sam.sam(optax.add_decayed_weights(0.1), 0.3)
  update, _ = tx.update(grads, tx.init(params), params,
                        grad_fn=lambda p: jax.tree.map(jnp.zeros_like, p))
  np.testing.assert_allclose(update["w"], 0.1 * params["w"], rtol=1e-6)


def test_m_sharpness_logs_the_whole_batch_gradient_norm():
  """With m-sharpness the logged gradient norm is of the mean of the
  sub-batches' gradients (= the whole batch's, without BN), not their sum."""
  trainer = make_trainer(sam_rho=0.1, sam_m=16)
  x, y = batch(trainer)
  v = jax.jit(trainer.init_one)(jax.random.PRNGKey(0))
  state = {"step": jnp.int32(0), **v, "opt_state": trainer.tx.init(v["params"])}
  _, metrics = jax.jit(
      lambda s: trainer.train_step(s, x, y, with_norms=True))(state)
  g = jax.grad(lambda p: forward_loss(trainer, x, y)(p, None, x, y, False)[0])(
      v["params"])
  want = np.sqrt(sum(np.sum(np.square(np.asarray(a)))
                     for a in jax.tree.leaves(g)))
  np.testing.assert_allclose(metrics["l2_grads"], want, rtol=1e-5)


def test_a_run_before_sharpness_step_resumes_only_at_its_quarter_steps():
  """A sam run written before measure.sharpness_step took quarter steps,
  while the field's default is 1: resuming it at the default would measure
  its other arms differently, so the configs differ; at 0.25 they match."""
  from jaxunknowns.workdir import config_differences  # pylint: disable=g-import-not-at-top
  saved = {"measure": {"epsilon": 1e-3}}
  new = lambda step: {"measure": {"epsilon": 1e-3, "sharpness_step": step}}
  assert config_differences(saved, new(1.0), new(1.0)) == [
      "measure.sharpness_step"]
  assert config_differences(saved, new(0.25), new(1.0)) == []


def test_report_rows_compare_each_arm_with_the_right_baseline():
  """Foret et al.: SAM's test error below SGD's; its λ_max, trace and
  ε-sharpness smaller; its accuracy above SGD given SAM's two gradients per
  step (sgd_2x). Hand-made per-seed numbers where every claim holds, so
  each row agrees by its paired rule; which arm is which is readable in
  the numbers (SGD sharp, sgd_2x between SGD and SAM in accuracy)."""
  from jaxunknowns.implicit import sam_report  # pylint: disable=g-import-not-at-top
  stat = lambda *v: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)),
                     "per_seed": list(v)}
  def arm(acc, sharp):
    return {"by_rho": {"0.05": {
        "test_accuracy": stat(acc, acc + 0.01, acc + 0.02),
        **{k: stat(sharp, sharp + 0.5, sharp + 1.0)
           for k in ("lambda_max", "trace", "sharpness")}}}}
  summary = {"dataset": "fashion_mnist", "model": "lenet5", "epochs": 1.0,
             "arms": {"sgd": arm(0.70, 50.0), "sam": arm(0.90, 5.0),
                      "sgd_2x": arm(0.80, 30.0)}}
  rows = sam_report.comparisons(summary, small_config())
  assert len(rows) == 5, [c.quantity for c in rows]
  assert all(c.verdict == "agrees" for c in rows), [
      (c.quantity, c.verdict, c.rule) for c in rows]
  versus_2x, = [c for c in rows if "sgd_2x" in c.quantity]
  assert versus_2x.ours.startswith("sam ρ=0.05 91.00 ± 1.00, sgd_2x 81.00")
