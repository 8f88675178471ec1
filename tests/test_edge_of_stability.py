"""`edge_of_stability`: the sharpness against the dense Hessian of a tiny
tanh net (numpy eigvalsh of a loss written here by hand), the momentum
thresholds against the stability of the optimizers themselves on a
quadratic, the per-run step-size grid against separate single-η runs, the
per-run summary on curves built by hand, the `runlocal` run end to end with
its report rebuilding, and bad input."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from jaxunknowns import config_loading, models, optim, validation
from jaxunknowns.data.core import Dataset, Split
from jaxunknowns.errors import UserError
from jaxunknowns.implicit import edge_of_stability as eos
from jaxunknowns.implicit import edge_of_stability_report as eos_report
from jaxunknowns.losses import LOSSES
from jaxunknowns.metrics import read_metrics, select
from jaxunknowns.trainer import Trainer
from run_helpers import (ROOT, assert_cli_one_line_error,
                         assert_report_rebuilds, assert_user_error_before_writing,
                         read_json, run_in_process)

CONFIG = f"{ROOT}/configs/edge_of_stability.py"


def fc_tanh(widths, num_classes=3):
  return models.create_model(ml_collections.ConfigDict(
      {"name": "fc_tanh", "widths": widths}), num_classes)


def hand_mse(params, x, y, num_classes):
  """fc-tanh 4-5-3 by hand: mean over examples of 1/2 ||f(x) - onehot(y)||^2."""
  h = jnp.tanh(x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
  f = h @ params["output"]["kernel"] + params["output"]["bias"]
  return 0.5 * jnp.mean(jnp.sum((f - jnp.eye(num_classes)[y]) ** 2, axis=1))


def test_mse_is_half_the_squared_distance_to_the_one_hot_target():
  logits = np.array([[0.5, -1.0, 2.0], [0.0, 0.3, 0.1]], np.float32)
  labels = np.array([2, 0])
  want = [0.5 * (0.25 + 1 + 1), 0.5 * (1 + 0.09 + 0.01)]
  np.testing.assert_allclose(LOSSES.get("mse")(logits, labels), want,
                             rtol=1e-6)


def test_sharpness_is_the_top_eigenvalue_of_the_dense_hessian():
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((30, 4)))
    y = jnp.asarray(rng.integers(0, 3, 30), jnp.int32)
    model = fc_tanh((5,))
    runs = []
    init = jax.jit(model.init)  # compiled, not dispatched op by op
    for seed in range(2):  # two runs of the run axis, different weights
      p = init(jax.random.PRNGKey(seed), x)["params"]
      runs.append(jax.tree.map(lambda a: (a * 3).astype(jnp.float64), p))
    params = jax.tree.map(lambda *a: jnp.stack(a), *runs)
    assert ravel_pytree(runs[0])[0].size == 43
    fn = eos.sharpness_fn(model, LOSSES.get("mse"), x, y, num_steps=25)
    out = fn(params, {}, jax.random.split(jax.random.PRNGKey(1), 2))
    for r, p in enumerate(runs):
      flat, unravel = ravel_pytree(p)
      # jax.hessian of the hand-written loss, compiled whole (the same
      # derivatives; op by op, the first call costs seconds of dispatch).
      h = jax.jit(jax.hessian(lambda w: hand_mse(unravel(w), x, y, 3)))(flat)
      top = np.linalg.eigvalsh(np.asarray(h))[-1]
      np.testing.assert_allclose(out["lambda_max"][r], top, rtol=1e-7)


def hand_bn_mse(params, x, y, num_classes):
  """fc-tanh 4-5-3 with BatchNorm before tanh, by hand, as a full-batch
  training step sees it: the batch's own mean and (biased) variance."""
  h = x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"]
  bn = params["BatchNorm_0"]
  h = (h - h.mean(0)) / jnp.sqrt(h.var(0) + 1e-5) * bn["scale"] + bn["bias"]
  f = jnp.tanh(h) @ params["output"]["kernel"] + params["output"]["bias"]
  return 0.5 * jnp.mean(jnp.sum((f - jnp.eye(num_classes)[y]) ** 2, axis=1))


def test_sharpness_with_batchnorm_is_of_the_loss_the_step_descends():
  """With BN the step descends the loss normalized by the training set's own
  statistics; λ_max was of the running statistics' loss (2.6× lower at
  init on mnist1d). Running statistics far from the batch's must not
  matter."""
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((30, 4)))
    y = jnp.asarray(rng.integers(0, 3, 30), jnp.int32)
    model = models.create_model(ml_collections.ConfigDict(
        {"name": "fc_tanh", "widths": (5,), "norm": "batch"}), 3)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), x)
    p = jax.tree.map(lambda a: (a * 2).astype(jnp.float64),
                     variables["params"])
    stale = jax.tree.map(lambda a: a + 3.0, variables["batch_stats"])
    fn = eos.sharpness_fn(model, LOSSES.get("mse"), x, y, num_steps=30,
                          has_batch_stats=True)
    add_run_axis = lambda t: jax.tree.map(lambda a: a[None], t)
    out = fn(add_run_axis(p), add_run_axis(stale),
             jax.random.split(jax.random.PRNGKey(1), 1))
    flat, unravel = ravel_pytree(p)
    h = jax.jit(jax.hessian(lambda w: hand_bn_mse(unravel(w), x, y, 3)))(flat)
    np.testing.assert_allclose(out["lambda_max"][0],
                               np.linalg.eigvalsh(np.asarray(h))[-1],
                               rtol=1e-7)


def test_full_batch_loss_with_batchnorm_is_the_loss_the_step_descends():
  """The recorded full-batch loss is the training step's own (BN with the
  training set's statistics), not the running statistics' loss."""
  config = config_loading.load_config(f"{CONFIG}:mnist1d,runlocal",
                                      {"model.norm": "batch"})
  _, stages = eos.build(config)
  trainer = stages["mse"][0]
  state = trainer.init_state([0], hparams={"lr": [0.1], "momentum": [0.0]})
  x, y = trainer.dataset.train.x, trainer.dataset.train.y
  stale = jax.tree.map(lambda a: a + 3.0, state["batch_stats"])
  out = eos.full_batch_fn(trainer, x, y)(state["params"], stale)
  params = jax.tree.map(lambda a: np.asarray(a[0], np.float64),
                        state["params"])
  h = np.asarray(x, np.float64).reshape(len(y), -1)
  for i in range(len(config.model.widths)):
    h = h @ params[f"Dense_{i}"]["kernel"] + params[f"Dense_{i}"]["bias"]
    bn = params[f"BatchNorm_{i}"]
    h = np.tanh((h - h.mean(0)) / np.sqrt(h.var(0) + 1e-5) * bn["scale"]
                + bn["bias"])
  f = h @ params["output"]["kernel"] + params["output"]["bias"]
  want = 0.5 * np.mean(np.sum((f - np.eye(f.shape[1])[y]) ** 2, axis=1))
  np.testing.assert_allclose(out["loss"][0], want, rtol=1e-4)
  np.testing.assert_allclose(out["accuracy"][0], np.mean(f.argmax(1) == y))


@pytest.mark.parametrize("spec,overrides,needle", [
    ("mnist1d", {"model.norm": "noisy_batch"}, "model.norm"),
    ("fashion", {"data.augment": "crop_flip"}, "data.augment"),
])
def test_a_random_full_batch_loss_is_refused(tmp_path, spec, overrides,
                                              needle):
  """Noisy BN or augmentation would make each full-batch step descend
  another loss, while λ_max is of none of them."""
  config = config_loading.load_config(f"{CONFIG}:{spec},runlocal", overrides)
  assert_user_error_before_writing(config, tmp_path / "new", [needle])


def _stable(kind, lr, beta, curvature, steps=3000):
  """Whether optim's own momentum/nesterov transform (the step the trainer
  takes: params -= lr * direction) converges on f(w) = curvature w^2 / 2."""
  cfg = config_loading.load_config(f"{CONFIG}:mnist1d").optim
  cfg.name, cfg.momentum = kind, beta
  tx = optim.create_optimizer(cfg, jnp.zeros(2))
  def body(_, carry):
    w, state = carry
    d, state = tx.update(curvature * w, state, w)
    return optax.apply_updates(w, -lr * d), state

  w0 = jnp.array([1.0, -0.5])
  w, _ = jax.jit(lambda w: jax.lax.fori_loop(0, steps, body, (w, tx.init(w))))(
      w0)
  return bool(jnp.linalg.norm(w) < 1.0)


@pytest.mark.parametrize("kind,beta", [("momentum", 0.0), ("momentum", 0.9),
                                       ("momentum", 0.5), ("nesterov", 0.9),
                                       ("nesterov", 0.5)])
def test_thresholds_are_where_the_optimizer_turns_unstable(kind, beta):
  lr = 0.1
  thr = eos.threshold(lr, beta, "gd" if beta == 0 else kind)
  closed = {"momentum": (2 + 2 * beta) / lr,
            "nesterov": (2 + 2 * beta) / ((1 + 2 * beta) * lr)}[kind]
  assert thr == pytest.approx(closed)
  assert _stable(kind, lr, beta, 0.99 * thr)
  assert not _stable(kind, lr, beta, 1.01 * thr)


def tiny_dataset(n=64):
  rng = np.random.default_rng(0)
  centers = rng.normal(size=(3, 6)) * 2

  def split(n):
    y = rng.integers(0, 3, n).astype(np.int32)
    return Split((centers[y] + rng.normal(size=(n, 6))).astype(np.float32), y)
  return Dataset(name="tiny", num_classes=3, input_shape=(6,), train=split(n),
                 test=split(32))


def test_per_run_step_sizes_match_separate_single_eta_runs():
  ds = tiny_dataset()
  c = config_loading.load_config(f"{CONFIG}:mnist1d,runlocal")
  c.train.batch_size, c.train.loss = 64, "mse"
  model = fc_tanh((8,))
  grid = [("gd", 0.5, 0.0), ("momentum", 0.1, 0.9)]
  together = Trainer(c, ds, model, hparams=("lr", "momentum"))
  state = together.init_state([0, 1] * 2, hparams={
      "lr": [a[1] for a in grid for _ in (0, 1)],
      "momentum": [a[2] for a in grid for _ in (0, 1)]})
  state, _ = together.train_steps(state, [0, 1] * 2, 8)
  for i, (kind, lr, beta) in enumerate(grid):
    single = ml_collections.ConfigDict(c.to_dict())
    single.optim.name = "sgd" if kind == "gd" else "momentum"
    single.optim.lr, single.optim.momentum = lr, beta
    alone = Trainer(single, ds, model)
    s, _ = alone.train_steps(alone.init_state([0, 1]), [0, 1], 8)
    for a, b in zip(jax.tree.leaves(s["params"]),
                    jax.tree.leaves(state["params"])):
      np.testing.assert_allclose(np.asarray(b)[2 * i:2 * i + 2], a,
                                 rtol=2e-5, atol=2e-6)


def test_run_summary_on_curves_by_hand():
  r = eos.run_summary(10.0, [0, 10, 20, 30, 40],
                      [[5, 8, 9.5, 10.2, 9.8], [5, 7, 8, 8.5, 8.8]],
                      [0, 10, 20, 30, 40],
                      [[1.0, 0.8, 0.6, 0.7, 0.5], [1.0, 0.9, 0.8, 0.7, 0.6]],
                      0.9, 40)
  assert r["reach_step"]["per_seed"] == [20, None]
  assert r["reach_step"]["mean"] is None and r["reached"]["mean"] == 0.5
  # second half: steps 20, 30, 40
  np.testing.assert_allclose(r["ratio_last_half"]["per_seed"],
                             [(9.5 + 10.2 + 9.8) / 30, (8 + 8.5 + 8.8) / 30])
  assert r["loss_at_reach"]["per_seed"] == [0.6, 1.0]  # never reached: step 0
  assert r["loss_rises"]["per_seed"] == [1.0, 0.0]
  assert r["nonmonotone"] == [True, False] and r["loss_fell"] == [True, True]
  # A spike at the last recording: the end is the median over the last tenth
  # (steps 90..100 here: 0.3, 0.2, 1.5 → 0.3), below the loss on reaching.
  steps = list(range(0, 101, 5))
  spike = eos.run_summary(10.0, steps, [[10.0] * len(steps)], steps,
                          [[1.0] * 18 + [0.3, 0.2, 1.5]], 0.9, 100)
  assert spike["loss_at_reach"]["per_seed"] == [1.0]
  assert spike["loss_end"]["per_seed"] == [1.5] and spike["loss_fell"] == [True]


def test_loss_after_reaching_is_not_judged_when_a_seed_never_reached():
  """A seed that never reaches the edge has its whole run as its loss
  'after reaching', so 'the loss keeps falling at the edge' was judged on
  the loss from step 0 (the seeds above: 'agrees'); now not testable."""
  from jaxunknowns.implicit import edge_of_stability_report as eos_report  # pylint: disable=g-import-not-at-top
  from jaxunknowns.report import NOT_TESTABLE  # pylint: disable=g-import-not-at-top
  curves = ([0, 10, 20, 30, 40], [[5, 8, 9.5, 10.2, 9.8], [5, 9, 9.5, 9.9, 9]],
            [0, 10, 20, 30, 40],
            [[1.0, 0.8, 0.6, 0.7, 0.5], [1.0, 0.8, 0.7, 0.65, 0.6]])
  config = config_loading.load_config(f"{CONFIG}:mnist1d,runlocal")
  def rows(lam):
    r = eos.run_summary(10.0, curves[0], lam, *curves[2:], 0.9, 40)
    r.update(loss="mse", kind="gd", lr=0.2, momentum=0.0)
    summary = {"runs": [r], "flow_versus_gd": [], "dataset": "mnist1d",
               "model": "mlp", "train_examples": 100}
    return {c.quantity.split(": ", 1)[1]: c
            for c in eos_report.comparisons(summary, config)}
  both = rows(curves[1])  # both seeds reach 9 = 0.9 × 2/η
  assert both["loss on reaching vs at the end"].verdict != NOT_TESTABLE
  assert both["rises of the loss after reaching"].verdict != NOT_TESTABLE
  one = rows([curves[1][0], [5, 7, 8, 8.5, 8.8]])  # seed 2 never does
  for q in ("loss on reaching vs at the end",
            "rises of the loss after reaching"):
    assert one[q].verdict == NOT_TESTABLE, one[q]
    assert one[q].reasons == ("1/2 seeds never reach 0.9 × 2/η",), one[q]


def test_a_loss_that_falls_at_every_step_after_reaching_is_not_non_monotone():
  """Cohen et al.: at the edge the loss keeps falling over long spans but
  not monotonically. Both seeds reach 0.9 × 2/η by step 20; a loss that
  falls at every recording after it has 0 rises (differs from 'at least
  one'), one with a rise on each seed has 1 (agrees): counted by hand."""
  from jaxunknowns.implicit import edge_of_stability_report as eos_report  # pylint: disable=g-import-not-at-top
  from jaxunknowns.report import AGREES, DIFFERS  # pylint: disable=g-import-not-at-top
  config = config_loading.load_config(f"{CONFIG}:mnist1d,runlocal")
  steps = [0, 10, 20, 30, 40]
  lam = [[5, 8, 9.5, 10.2, 9.8], [5, 9, 9.5, 9.9, 9]]
  def verdict(loss):
    r = eos.run_summary(10.0, steps, lam, steps, [loss, loss], 0.9, 40)
    r.update(loss="mse", kind="gd", lr=0.2, momentum=0.0)
    summary = {"runs": [r], "flow_versus_gd": [], "dataset": "mnist1d",
               "model": "mlp", "train_examples": 100}
    return next(c for c in eos_report.comparisons(summary, config)
                if "rises of the loss" in c.quantity).verdict
  assert verdict([1.0, 0.8, 0.6, 0.5, 0.4]) == DIFFERS
  assert verdict([1.0, 0.8, 0.6, 0.7, 0.5]) == AGREES

def sharpening_row(lam, dataset, model):
  """(the run summary, its 'λ_max from λ_max(0)' comparison) of one GD run
  at 2/η = 10 whose per-seed λ_max at steps 0, 10, ..., 40 is `lam`."""
  config = config_loading.load_config(f"{CONFIG}:mnist1d,runlocal")
  steps, loss = [0, 10, 20, 30, 40], [[1.0, 0.8, 0.6, 0.7, 0.5]] * 2
  r = eos.run_summary(10.0, steps, lam, steps, loss, 0.9, 40)
  r.update(loss="mse", kind="gd", lr=0.2, momentum=0.0)
  summary = {"runs": [r], "flow_versus_gd": [], "dataset": dataset,
             "model": model, "train_examples": 256}
  return r, next(c for c in eos_report.comparisons(summary, config)
                 if "λ_max from λ_max(0)" in c.quantity)


def test_sharpening_is_not_judged_when_a_seed_starts_at_the_edge():
  """On a sharper dataset than the step sizes were chosen for (MNIST-1D's
  lrs on Fashion-MNIST: λ_max(0) ≈ 5 × 2/η) every seed 'reached' 0.9 × 2/η
  at step 0 and 'λ_max rises from below 2/η to it' read 'agrees'."""
  from jaxunknowns.report import AGREES, NOT_TESTABLE  # pylint: disable=g-import-not-at-top
  sharpening = lambda lam: sharpening_row(lam, "fashion_mnist", "fc_tanh")[1]
  rising = sharpening([[5, 8, 9.5, 10.2, 9.8], [4, 7, 9.2, 9.9, 10]])
  assert rising.verdict == AGREES, rising
  # Seed 2 starts at 50 = 5 × 2/η and falls to the edge: it never sharpened.
  started = sharpening([[5, 8, 9.5, 10.2, 9.8], [50, 30, 12, 10.5, 10]])
  assert started.verdict == NOT_TESTABLE, started
  assert started.reasons == ("1/2 seeds start at λ_max(0) ≥ 0.9 × 2/η",)


def test_a_seed_exactly_at_the_edge_at_step_0_starts_at_the_edge():
  """The rule reads 'λ_max(0) ≥ 0.9 × 2/η': a seed whose λ_max(0) is 9
  with 2/η = 10 (9/10 and 0.9 are the same double) starts at the edge,
  so the sharpening row is not testable, as for a seed above it; counted
  by hand from the rule's text, not from the code's comparison."""
  from jaxunknowns.report import NOT_TESTABLE  # pylint: disable=g-import-not-at-top
  assert 9 / 10 == 0.9
  _, row = sharpening_row([[5, 8, 9.5, 10.2, 9.8], [9, 9.5, 9.7, 10, 9.9]],
                          "mnist1d", "mlp")
  assert row.verdict == NOT_TESTABLE, row
  assert row.reasons == ("1/2 seeds start at λ_max(0) ≥ 0.9 × 2/η",), row

def test_sharpening_agrees_only_when_every_seed_reaches_the_edge():
  """'λ_max rises to 2/η' is a claim about every seed: with seed 2 never
  reaching 0.9 × 2/η (reached per seed [1, 0]) the row does not agree;
  with both reaching it ([1, 1]) it does."""
  from jaxunknowns.report import AGREES, DIFFERS  # pylint: disable=g-import-not-at-top
  sharpening = lambda lam: sharpening_row(lam, "mnist1d", "mlp")
  r, half = sharpening([[5, 8, 9.5, 10.2, 9.8], [5, 7, 8, 8.5, 8.8]])
  assert r["reached"]["per_seed"] == [1, 0], r["reached"]
  assert half.verdict != AGREES and half.verdict == DIFFERS, half
  assert "1/2 seeds reach it" in half.ours, half
  r, both = sharpening([[5, 8, 9.5, 10.2, 9.8], [5, 9, 9.5, 9.9, 9]])
  assert r["reached"]["per_seed"] == [1, 1], r["reached"]
  assert both.verdict == AGREES, both
  assert "2/2 seeds reach it" in both.ours, both


def test_flow_versus_gd_is_not_judged_before_gd_reaches_the_edge():
  """On a flatter dataset (soudry2d) GD's λ_max stays far below 2/η: flow
  3.92 vs GD 3.82 with 2/η = 10 read 'flow above 2/η, GD at it: agrees'."""
  from jaxunknowns.implicit import edge_of_stability_report as eos_report  # pylint: disable=g-import-not-at-top
  from jaxunknowns.report import AGREES, NOT_TESTABLE  # pylint: disable=g-import-not-at-top
  config = config_loading.load_config(f"{CONFIG}:mnist1d,runlocal")
  steps, loss = [0, 10, 20, 30, 40], [[1.0, 0.8, 0.6, 0.7, 0.5]] * 2
  def flow_row(lam, flow):
    r = eos.run_summary(10.0, steps, lam, steps, loss, 0.9, 40)
    r.update(loss="mse", kind="gd", lr=0.2, momentum=0.0)
    gd_at_20 = {"mean": float(np.mean([l[2] for l in lam])),
                "per_seed": [l[2] for l in lam], "std": 0.1}
    summary = {"runs": [r], "flow": {"loss": "mse"}, "dataset": "soudry2d",
               "model": "fc_tanh", "train_examples": 16, "flow_versus_gd": [
                   {"lr": 0.2, "threshold": 10.0, "time": 4.0, "gd_step": 20,
                    "gd": gd_at_20, "flow": {"mean": float(np.mean(flow)),
                                             "per_seed": flow, "std": 0.1}}]}
    return next(c for c in eos_report.comparisons(summary, config)
                if c.quantity.startswith("λ_max at t"))
  at_edge = flow_row([[5, 8, 9.5, 10.2, 9.8], [4, 9.1, 9.2, 9.9, 10]],
                     [30.0, 31.0])
  assert at_edge.verdict == AGREES, at_edge
  # Seed 2 reaches 9 only at step 30, after the step compared (20).
  late = flow_row([[5, 8, 9.5, 10.2, 9.8], [3, 3.5, 3.8, 9.9, 10]],
                  [30.0, 31.0])
  assert late.verdict == NOT_TESTABLE, late
  assert late.reasons == ("1/2 seeds of GD η=0.2 do not reach 0.9 × 2/η by "
                          "step 20",)
  # An MLP that starts above the edge 'reached' it at step 0, then fell to
  # 0.26 × 2/η: flow 3.75 vs GD 2.56 read 'flow above 2/η, GD at it'.
  fell = flow_row([[14, 9.5, 3, 2.6, 2.5], [13, 9.2, 2.6, 2.5, 2.4]],
                  [3.7, 3.8])
  assert fell.verdict == NOT_TESTABLE, fell
  assert fell.reasons == ("GD's λ_max at t is 2.8, below 0.9 × 2/η",)
  # Above the edge at step 0, down, then back at the edge by t: judged.
  back = flow_row([[14, 5, 9.8, 10.1, 9.9], [13, 4, 9.7, 10, 10]],
                  [30.0, 31.0])
  assert back.verdict == AGREES, back


def test_flow_and_gd_are_compared_at_the_same_continuous_time():
  """Gradient flow run with step η_f for n steps has reached time T = η_f n;
  GD with step η reaches the same time at step T/η. Curves by hand: the flow
  (η_f = 0.01, measured at steps 0..1000) ends at T = 10, so GD at η = 0.2
  is read at step 50, GD at η = 0.1 (measured every 30 steps) at step 90,
  the step nearest 100, and GD at η = 0.05, measured only to step 100 <
  200, is left out. Each seed's λ_max is distinguishable (step/10 + 100 ×
  seed), so the row holds the values at that step, seed by seed."""
  flow = {"lr": 0.01, "curves": {"sharp_steps": [0, 250, 500, 750, 1000],
                                 "lambda_max": [[1, 2, 3, 4, 30.0],
                                                [1, 2, 3, 4, 31.0]]}}
  def gd(lr, steps):
    return {"lr": lr, "threshold": 2 / lr, "curves": {
        "sharp_steps": steps,
        "lambda_max": [[t / 10 + 100 * seed for t in steps]
                       for seed in range(2)]}}
  rows = eos.flow_versus(flow, [gd(0.2, list(range(0, 101, 10))),
                                gd(0.05, list(range(0, 101, 10))),
                                gd(0.1, [0, 30, 60, 90, 120])])
  assert [r["lr"] for r in rows] == [0.2, 0.1], rows
  for r, step in zip(rows, (50, 90)):
    assert r["time"] == pytest.approx(10.0) and r["gd_step"] == step, r
    np.testing.assert_allclose(r["gd"]["per_seed"], [step / 10,
                                                     step / 10 + 100])
    np.testing.assert_allclose(r["flow"]["per_seed"], [30.0, 31.0])
    np.testing.assert_allclose(r["flow_over_threshold"]["per_seed"],
                               np.array([30.0, 31.0]) * r["lr"] / 2)


def test_loss_after_reaching_is_not_judged_when_a_seed_starts_at_the_edge():
  """A seed above the edge at step 0 'reaches' it there, so the loss 'on
  reaching' was the initial loss, and 'it falls by the end' agreed."""
  from jaxunknowns.implicit import edge_of_stability_report as eos_report  # pylint: disable=g-import-not-at-top
  from jaxunknowns.report import NOT_TESTABLE  # pylint: disable=g-import-not-at-top
  config = config_loading.load_config(f"{CONFIG}:mnist1d,runlocal")
  steps, loss = [0, 10, 20, 30, 40], [[2.0, 0.8, 0.6, 0.7, 0.5]] * 2
  r = eos.run_summary(10.0, steps, [[14, 9.5, 3, 2.6, 2.5],
                                    [5, 8, 9.5, 10.2, 9.8]], steps, loss, 0.9,
                      40)
  r.update(loss="mse", kind="gd", lr=0.2, momentum=0.0)
  summary = {"runs": [r], "flow_versus_gd": [], "dataset": "mnist1d",
             "model": "mlp", "train_examples": 100}
  rows = {c.quantity.split(": ", 1)[1]: c
          for c in eos_report.comparisons(summary, config)}
  for q in ("loss on reaching vs at the end",
            "rises of the loss after reaching"):
    assert rows[q].verdict == NOT_TESTABLE, rows[q]
    assert rows[q].reasons == ("1/2 seeds start at λ_max(0) ≥ 0.9 × 2/η",)


def test_loss_at_the_end_is_the_median_of_the_last_tenth():
  """The article's momentum run (seeds 0-2): seed 3's loss was 0.208 one
  recording before the last and 0.324 at it, a spike of the non-monotone
  descent the report counts; on that last value the row 'loss on reaching
  vs at the end' read 'differs' (+0.10 ≤ 2 × std 0.12), at seeds
  1000-1002 'agrees'. The median of the last tenth ignores one spike."""
  from jaxunknowns.implicit import edge_of_stability_report as eos_report  # pylint: disable=g-import-not-at-top
  from jaxunknowns.report import AGREES  # pylint: disable=g-import-not-at-top
  steps = list(range(0, 110, 10))  # last tenth: steps 90 and 100 (by hand)
  assert eos.end_loss(steps, [[9] * 9 + [3, 1], [9] * 9 + [1, 3],
                              [9] * 10 + [5]]) == [2.0, 2.0, 7.0]
  assert eos.end_loss([0, 50, 100], [[4, 2, 1]]) == [1.0]
  config = config_loading.load_config(f"{CONFIG}:mnist1d,runlocal")
  tail = [[0.223, 0.222, 0.225, 0.237, 0.228, 0.217, 0.216, 0.229, 0.225,
           0.214, 0.215], [0.225, 0.224, 0.222, 0.323, 0.229, 0.227, 0.219,
                           0.217, 0.216, 0.214, 0.214],
          [0.221, 0.22, 0.218, 0.216, 0.215, 0.214, 0.212, 0.211, 0.21,
           0.208, 0.324]]  # the article's seeds 0-2, steps 900..1000
  steps = list(range(0, 1010, 10))
  # Reached at step 10 (λ_max 9.5 ≥ 0.9 × 10) at loss 0.353 / 0.354 / 0.355.
  loss = [[1.0, 0.353 + 0.001 * i] + [0.3] * 88 + t
          for i, t in enumerate(tail)]
  # Medians of the 11 values by hand; the last values 0.215 / 0.214 / 0.324
  # give reach − end +0.103 ≤ 2 × std 0.126: 'differs', as published.
  np.testing.assert_allclose(eos.end_loss(steps, loss), [0.223, 0.222, 0.215])
  lam = [[5.0] + [9.5] * 100] * 3  # every seed at the edge from step 10
  r = eos.run_summary(10.0, steps, lam, steps, loss, 0.9, 1000)
  r.update(loss="mse", kind="momentum", lr=0.2, momentum=0.5)
  summary = {"runs": [r], "flow_versus_gd": [], "dataset": "mnist1d",
             "model": "fc_tanh", "train_examples": 4000}
  row = next(c for c in eos_report.comparisons(summary, config)
             if c.quantity.endswith("loss on reaching vs at the end"))
  assert row.verdict == AGREES, row
  assert row.rule.startswith("reach − end (median of the last 10%) per seed "
                             "= +0.13, > 2 × its std"), row


def test_runlocal_end_to_end_and_report_rebuilds(tmp_path):
  """η = 50 (2/η = 0.04, far below λ_max(0)) diverges: a result of the
  grid, recorded and reported, while the others run to the end."""
  config = config_loading.load_config(f"{CONFIG}:mnist1d,runlocal", {
      "eos.losses": ("mse",), "eos.lrs.cross_entropy": (),
      "eos.lrs.mse": (0.2, 50.0, 0.15),
      "train.steps": 20, "eos.flow_steps": 20, "eos.flow_every": 10})
  summary = run_in_process(config, tmp_path / "run")
  assert read_json(tmp_path / "run" / "summary.json") == summary
  (bad,) = summary["diverged"]
  assert (bad["kind"], bad["lr"], bad["threshold"]) == ("gd", 50.0, 0.04)
  assert all(1 <= t <= 20 for t in bad["diverged_at"])
  assert min(bad["init_ratio"]["per_seed"]) > 1
  rows = read_metrics(tmp_path / "run")
  for seed, t in zip(summary["seeds"], bad["diverged_at"]):
    assert [r["split"] for r in select(rows, lr=50.0, seed=seed)
            if r["step"] >= t] == ["diverged"]
  page = (tmp_path / "run" / "report.md").read_text()
  assert "### Diverged runs" in page
  # optim.lr is no run's step size: the config line does not state it.
  config_line = next(l for l in page.splitlines() if l.startswith("**Config"))
  assert f"lr {config.optim.lr:g}" not in config_line, config_line
  assert "GD and momentum (β = 0.5) at each run's η" in config_line, (
      config_line)
  # Without momentum runs no β is named (it would be a setting not used).
  assert eos_report.optimizer_words({"runs": [
      {"kind": "gd", "momentum": 0.0}]}) == "GD at each run's η below"
  runs = summary["runs"]
  assert [(r["kind"], r["lr"]) for r in runs] == [
      ("gd", 0.2), ("gd", 0.15), ("momentum", 0.2)]
  for r in runs:
    want = eos.threshold(r["lr"], r["momentum"], r["kind"])
    assert r["threshold"] == pytest.approx(want)
    c = r["curves"]
    assert c["sharp_steps"] == [0, 10, 20] and c["loss_steps"][-1] == 20
    assert len(c["lambda_max"]) == 2 and r["lanczos_residual_max"] < 0.5
    # All runs share the seeds' initial weights: the same loss at step 0.
    assert [l[0] for l in c["loss"]] == [l[0] for l in runs[0]["curves"][
        "loss"]]
  assert summary["flow"]["max_lr_lambda"] < 2
  assert_report_rebuilds(tmp_path / "run")


@pytest.mark.parametrize("overrides,needle", [
    ({"eos.lrs.mse": (0.2, 0.0)}, "eos.lrs.mse"),
    ({"eos.losses": ("mse", "hinge")}, "eos.losses"),
    ({"eos.lanczos_steps": 0}, "eos.lanczos_steps"),
    # More steps than parameters would be recorded, never run.
    ({"eos.lanczos_steps": 10**7}, "eos.lanczos_steps"),
    ({"eos.flow_lr": 0.0}, "eos.flow_lr"),
    ({"train.batch_size": 128}, "train.batch_size"),
    # The step is plain GD: each is named when it is the one given.
    ({"optim.grad_clip": 1.0}, "optim.grad_clip=1.0 is out of range"),
    ({"optim.weight_decay": 1e-4}, "optim.weight_decay=0.0001 is out"),
    # Every run takes its η from eos.*lrs: optim.lr would be recorded only;
    # so would β with no momentum or Nesterov run.
    ({"optim.lr": 0.5}, "optim.lr=0.5 is unused here"),
    ({"optim.momentum": 0.3, "eos.momentum_lrs.mse": ()},
     "optim.momentum=0.3 is unused here"),
    # Each stage sets train.loss from eos.losses: the field was recorded in
    # config.json, never read; label smoothing without a cross-entropy
    # stage likewise.
    ({"train.loss": "exponential"}, "train.loss='exponential' is unused"),
    ({"train.label_smoothing": 0.1, "eos.losses": ("mse",),
      "eos.lrs.cross_entropy": ()}, "train.label_smoothing=0.1 is unused"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, overrides, needle):
  config = config_loading.load_config(f"{CONFIG}:mnist1d,runlocal", overrides)
  assert_user_error_before_writing(config, tmp_path / "new", [needle])


def test_a_loss_left_out_keeps_the_files_grid():
  """eos.losses=('cross_entropy',) on mnist1d was refused ('eos.lrs.mse must
  be ()'), and --config.eos.lrs.mse='()' too (no variant leaves that grid
  empty): no command line could drop the mse stage. The file's own grid is
  now left alone; a grid the user gives a loss left out is still refused."""
  spec = f"{CONFIG}:mnist1d,runlocal"
  refs = validation.references_of(spec)
  validation.check_config(config_loading.load_config(
      spec, {"eos.losses": ("cross_entropy",)}), refs)
  with pytest.raises(UserError, match=r"eos.lrs.mse=\(0.3,\).*leaves 'mse'"):
    validation.check_config(config_loading.load_config(
        spec, {"eos.losses": ("cross_entropy",), "eos.lrs.mse": (0.3,)}), refs)


def test_label_smoothing_of_a_cross_entropy_stage_passes():
  validation.check_config(config_loading.load_config(
      f"{CONFIG}:mnist1d,runlocal", {"train.label_smoothing": 0.1}))


def test_cli_refuses_a_negative_step_size(tmp_path):
  assert_cli_one_line_error(
      ["--config=configs/edge_of_stability.py:mnist1d,runlocal",
       "--config.eos.momentum_lrs.mse=(-0.1,)"], tmp_path / "new",
      "eos.momentum_lrs.mse")


def test_cifar_variant_builds_and_measures_on_mock_data():
  """The CIFAR-10 variant (a network in real use) validates, builds its
  stages on mock CIFAR-10 and measures λ_max at init (no training)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = config_loading.load_config(f"{CONFIG}:cifar10,runlocal", {
      "data.train_size": 64, "train.batch_size": 64})
  eos.validate(config)
  with tfds.testing.mock_data(num_examples=64):
    ds, stages = eos.build(config)
  assert ds.input_shape == (32, 32, 3) and list(stages) == ["mse", "flow"]
  trainer, loss, arms = stages["mse"]
  assert loss == "mse" and [a[1] for a in arms] == [0.04, 0.02, 0.01]
  state = trainer.init_state([0], hparams={"lr": [0.04], "momentum": [0.0]})
  sharp = eos.callbacks(trainer, 10, 5, 8, 0)[0].fn(trainer, state, 0)
  assert np.isfinite(sharp["lambda_max"]).all() and sharp["lambda_max"][0] > 0
