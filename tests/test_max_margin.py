"""The max-margin experiment: the exact SVM, GD's direction, bad input, and a
run end to end (`configs/max_margin.py:soudry2d,runlocal`)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxunknowns import config_loading, validation
from jaxunknowns.analysis import svm
from jaxunknowns.data import synthetic
from jaxunknowns.errors import UserError
from run_helpers import assert_report_rebuilds

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "_test_max_margin_config", ROOT / "configs" / "max_margin.py")
mm_config = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mm_config)

ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")


def soudry_set(seed):
  (x, y), _ = synthetic.soudry2d(np.random.default_rng([seed, 12]),
                                 np.random.default_rng([seed, 13]), 10)
  return x, y


# -----------------------------------------------------------------------------
# The SVM solver
# -----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_svm_soudry_set_known_solution(seed):
  """w_hat = (0.5, 0.5): margin sqrt(2), the four given support vectors."""
  x, y = soudry_set(seed)
  z = svm.binary_constraints(x, y)
  result = svm.hard_margin_svm(z)
  np.testing.assert_allclose(result.w, [0.5, 0.5], atol=1e-12)
  assert result.margin == pytest.approx(np.sqrt(2), abs=1e-12)
  np.testing.assert_array_equal(result.support, [0, 1, 2, 3])
  # Duplicated support directions (x and -x with opposite labels) share
  # the dual weight equally; w = Z' alpha.
  np.testing.assert_allclose(result.alpha[:4], 0.125, atol=1e-12)
  np.testing.assert_allclose(z.T @ result.alpha, result.w, atol=1e-14)
  assert result.kkt_residual < 1e-12
  # Here the l_inf max-margin direction coincides with the L2 one.
  np.testing.assert_allclose(svm.linf_max_margin(z), [2 ** -0.5] * 2, atol=1e-9)


def test_svm_matches_a_generic_qp_solver():
  from scipy.optimize import minimize  # pylint: disable=g-import-not-at-top
  x, y = synthetic.gaussian_clouds(80, 2, 6, 2.0, np.random.default_rng(3))
  z = svm.binary_constraints(x, y, fit_intercept=True)
  result = svm.hard_margin_svm(z)
  assert np.min(z @ result.w) >= 1 - 1e-10
  ref = minimize(lambda w: w @ w, np.ones(z.shape[1]), jac=lambda w: 2 * w,
                 constraints=[{"type": "ineq", "fun": lambda w: z @ w - 1,
                               "jac": lambda w: z}],
                 method="SLSQP", options={"ftol": 1e-15, "maxiter": 2000})
  np.testing.assert_allclose(result.w, ref.x, atol=1e-6)
  assert result.norm <= np.linalg.norm(ref.x) + 1e-12  # ours is the exact optimum


@pytest.mark.parametrize("degrees", [30.0, 90.0, 150.0, 1e-6])
def test_angle_is_the_arccos_of_the_normalised_dot_product(degrees):
  """svm.angle in radians against numpy's arccos(a·b / |a||b|), for
  vectors of different lengths at a known angle (a tiny one too, where
  arccos loses digits: there against the angle built in)."""
  theta = np.radians(degrees)
  a = 3.0 * np.array([1.0, 0.0, 0.0])
  b = 0.5 * np.array([np.cos(theta), np.sin(theta), 0.0])
  by_numpy = np.arccos(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
  if degrees >= 1:
    assert by_numpy == pytest.approx(theta, rel=1e-12)
  assert svm.angle(a, b) == pytest.approx(theta, rel=1e-9)
  assert svm.angle(b, a) == pytest.approx(theta, rel=1e-9)
  assert svm.angle((1.0, 0.0), (1.0, 1.0)) == pytest.approx(np.pi / 4,
                                                            rel=1e-12)


@pytest.mark.parametrize("labels", [(0, 1), (-1, 1)])
def test_binary_constraints_sign_the_intercept_column_by_the_label(labels):
  """Z = s[:, None] * [x, 1] with s = +1 for label 1 (or +1), -1 for label 0
  (or -1), built here in numpy: the intercept column is the signed label,
  not a column of ones."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(6, 3))
  y = np.array([labels[i] for i in (0, 1, 1, 0, 1, 0)])
  s = np.where(y == labels[1], 1.0, -1.0)
  want = s[:, None] * np.c_[x, np.ones(len(x))]
  np.testing.assert_array_equal(svm.binary_constraints(x, y, True), want)
  np.testing.assert_array_equal(svm.binary_constraints(x, y, True)[:, -1], s)
  np.testing.assert_array_equal(svm.binary_constraints(x, y), s[:, None] * x)


def test_multiclass_margins_are_linear_in_the_parameters():
  import ml_collections  # pylint: disable=g-import-not-at-top
  from jaxunknowns.implicit import max_margin  # pylint: disable=g-import-not-at-top
  with jax.enable_x64(True):
    cfg = ml_collections.ConfigDict({"name": "linear", "use_bias": True,
                                     "kernel_init": "zeros"})
    model = max_margin.LinearModel(cfg, 3, (4,))
    x, y = synthetic.gaussian_clouds(12, 3, 4, 4.0, np.random.default_rng(0))
    z = model.constraint_matrix(x, y)
    assert z.shape == (12 * 2, 4 * 3 + 3)
    w = np.random.default_rng(1).normal(size=z.shape[1])
    direct = model.margins(model.unravel(w), np.asarray(x, np.float64), y)
    np.testing.assert_allclose(z @ w, np.asarray(direct), atol=1e-12)


@pytest.mark.parametrize("dim, n", [(3, 40), (300, 5)])
def test_margin_matrix_is_the_closed_form_either_way_round(dim, n):
  """Z of the binary linear model is s_n x_n (binary_constraints), whether
  built forward (fewer parameters than margins) or in reverse (more: a
  CIFAR-10 image has 3,072 inputs, and forward mode's P x P basis took
  7.5 GB for its 10 classes); reverse mode never forms the P x P basis."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from jaxunknowns.implicit import max_margin  # pylint: disable=g-import-not-at-top
  with jax.enable_x64(True):
    cfg = ml_collections.ConfigDict({"name": "linear", "use_bias": False,
                                     "kernel_init": "zeros"})
    model = max_margin.LinearModel(cfg, 2, (dim,))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(n, dim)), rng.integers(0, 2, size=n)
    z = model.constraint_matrix(x, y)
    np.testing.assert_array_equal(z, svm.binary_constraints(x, y))
    calls = []
    real = jax.jacrev
    with pytest.MonkeyPatch.context() as mp:
      mp.setattr(jax, "jacrev", lambda f: calls.append(f) or real(f))
      model.constraint_matrix(x, y)
    assert bool(calls) == (dim > n)


def test_wide_linf_max_margin_reaches_the_simplex_optimum():
  """More weights than margins (images) solve by interior point: its
  direction attains the l_inf max margin the simplex finds."""
  from scipy.optimize import linprog  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  z = rng.normal(size=(30, 400)) + 0.3
  u = svm.linf_max_margin(z)
  m, p = z.shape
  ref = linprog(np.r_[np.zeros(p), -1.0], A_ub=np.c_[-z, np.ones(m)],
                b_ub=np.zeros(m), bounds=[(-1, 1)] * p + [(None, None)],
                method="highs-ds")
  u_box = u / np.max(np.abs(u))  # the same direction inside |u|_inf <= 1
  assert np.min(z @ u_box) == pytest.approx(-ref.fun, rel=1e-6)


def test_not_separable_is_detected_with_the_best_margin():
  x, y = soudry_set(0)
  y = y.copy()
  y[4] = 1 - y[4]  # a point beyond the margin, relabelled: not separable.
  with pytest.raises(svm.NotSeparable) as e:
    svm.hard_margin_svm(svm.binary_constraints(x, y))
  assert isinstance(e.value, UserError)
  msg = str(e.value)
  assert "not linearly separable" in msg and "normalised margin -" in msg
  assert "\n" not in msg


@pytest.mark.parametrize("loss", ["cross_entropy", "exponential"])
def test_margin_loss_is_the_framework_loss_with_precise_gradients(loss):
  from jaxunknowns.implicit import max_margin  # pylint: disable=g-import-not-at-top
  from jaxunknowns.losses import LOSSES  # pylint: disable=g-import-not-at-top
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    for classes in (2, 3):
      logits = jax.numpy.asarray(rng.normal(size=(20, classes)) * 3)
      y = jax.numpy.asarray(rng.integers(0, classes, 20))
      np.testing.assert_allclose(max_margin.margin_loss(loss, logits, y),
                                 LOSSES.get(loss)(logits, y), rtol=1e-12)
      # Same gradients, also at ties (w = 0: all logits equal).
      ours_fn = jax.jit(jax.grad(
          lambda l, y: max_margin.margin_loss(loss, l, y).sum()))
      ref_fn = jax.jit(jax.grad(lambda l, y: LOSSES.get(loss)(l, y).sum()))
      for lg in (logits, jax.numpy.zeros_like(logits)):
        ours, ref = ours_fn(lg, y), ref_fn(lg, y)
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-15)
    # Binary logits [0, z] at margin 50: loss and gradient exp(-50), where
    # the softmax form's gradient has cancelled to 0.
    grad = jax.grad(lambda z: max_margin.margin_loss(
        loss, jax.numpy.stack([0.0, z])[None], jax.numpy.asarray([1]))[0])(50.0)
    assert float(grad) == pytest.approx(-np.exp(-50.0), rel=1e-12)


def test_asymptotic_offset_is_where_gradient_descent_goes():
  # Soudry et al. (2018, Thm. 3): GD with step lr on sum_m exp(-z_m . w)
  # follows w(t) = w_hat log t + w~ + o(1). The reference is GD itself,
  # run in numpy; two support vectors span R^2, so w~ is determined.
  z = np.array([[1.0, 0.3], [0.2, 1.5], [2.0, 2.5], [3.0, 1.0]])
  result = svm.hard_margin_svm(z)
  np.testing.assert_array_equal(result.support, [0, 1])
  lr, steps = 0.5, 20_000
  offset = svm.asymptotic_offset(result, z, lr)
  # Its defining equation on the support: lr exp(-z_m . w~) = alpha_m.
  np.testing.assert_allclose(lr * np.exp(-z[:2] @ offset), result.alpha[:2],
                             rtol=1e-10)
  w = np.zeros(2)
  for _ in range(steps):
    w = w + lr * (np.exp(-z @ w) @ z)
  # The o(1) term is ~0.04 after 2e4 steps; w~ is ~(-0.66, 0.66).
  np.testing.assert_allclose(w - result.w * np.log(steps), offset, atol=0.06)
  assert np.linalg.norm(offset) > 0.5


# -----------------------------------------------------------------------------
# GD's direction
# -----------------------------------------------------------------------------
def test_gd_direction_is_the_svm_direction_by_scipy_and_closed_form():
  """GD's iterates against references computed here, not by analysis/svm.py:
  the max-margin direction of Soudry's 2-D set in closed form, (1, 1)/sqrt(2)
  (the brief: w_hat ∝ (1, 1)), and by scipy's SLSQP on the same points; the
  norm grows by ||w_hat|| per unit of log t and the logistic loss, summed by
  hand, falls like 1/t."""
  from scipy.optimize import minimize  # pylint: disable=g-import-not-at-top
  from jax.flatten_util import ravel_pytree  # pylint: disable=g-import-not-at-top
  from jaxunknowns.implicit import max_margin  # pylint: disable=g-import-not-at-top
  config = mm_config.get_config("soudry2d,runlocal")
  config.seeds = 1
  config.max_margin.optimizers = ("gd",)
  with jax.enable_x64(True):
    problems, model, _ = max_margin.build_problems(config)
    runner = max_margin.Runner(config, model, problems, "gd")
    state, done, ws = runner.init_state([0]), 0, []
    for t in (1000, 10_000, 100_000):
      state = runner.advance(state, t - done)
      done = t
      ws.append(np.asarray(ravel_pytree(jax.tree.map(
          lambda p: p[0], state["params"]))[0]))
  x, y = problems[0].x, 2.0 * problems[0].y - 1.0
  svm_scipy = minimize(lambda w: w @ w, np.ones(2), jac=lambda w: 2 * w,
                       constraints=[{"type": "ineq",
                                     "fun": lambda w: y * (x @ w) - 1}],
                       method="SLSQP", options={"ftol": 1e-15}).x
  closed_form = np.array([1.0, 1.0]) / np.sqrt(2.0)
  np.testing.assert_allclose(svm_scipy / np.linalg.norm(svm_scipy),
                             closed_form, atol=1e-6)
  distance = [np.linalg.norm(w / np.linalg.norm(w) - closed_form) for w in ws]
  assert distance[-1] < 0.01 and distance[-1] < distance[0]
  slope = (np.linalg.norm(ws[2]) - np.linalg.norm(ws[1])) / np.log(10)
  assert slope == pytest.approx(np.linalg.norm(svm_scipy), rel=0.1)
  loss = [np.sum(np.log1p(np.exp(-y * (x @ w)))) for w in ws]
  assert np.log10(loss[1] / loss[2]) == pytest.approx(1.0, abs=0.1)


def test_runner_angle_is_the_arccos_of_w_and_the_max_margin_direction():
  """The Runner's logged angle to ŵ (and to the l_inf direction, the same
  (1, 1)/sqrt(2) on Soudry's set) against numpy's arccos from GD's weights
  after a few steps, and from weights set by hand at 30°, 90° and 150°;
  its margin gap against numpy's normalized margin of weights set by
  hand."""
  from jax.flatten_util import ravel_pytree  # pylint: disable=g-import-not-at-top
  from jaxunknowns.implicit import max_margin  # pylint: disable=g-import-not-at-top
  config = mm_config.get_config("soudry2d,runlocal")
  config.seeds = 1
  config.max_margin.optimizers = ("gd",)
  w_hat = np.array([1.0, 1.0]) / np.sqrt(2.0)  # closed form
  by_numpy = lambda w: np.arccos(np.clip(
      w @ w_hat / np.linalg.norm(w), -1.0, 1.0))
  with jax.enable_x64(True):
    problems, model, _ = max_margin.build_problems(config)
    np.testing.assert_allclose(problems[0].svm.direction, w_hat, atol=1e-12)
    runner = max_margin.Runner(config, model, problems, "gd")
    state = runner.advance(runner.init_state([0]), 10)
    flat, unravel = ravel_pytree(jax.tree.map(lambda p: p[0],
                                              state["params"]))
    w = np.asarray(flat)
    got = runner.measure(state)
    assert by_numpy(w) > 0.01  # far enough from ŵ for arccos's digits
    np.testing.assert_allclose(got["angle"], [by_numpy(w)], rtol=1e-7)
    np.testing.assert_allclose(got["angle_linf"], [by_numpy(w)], rtol=1e-7)
    for degrees in (30.0, 90.0, 150.0):
      phi = np.pi / 4 + np.radians(degrees)  # ŵ is at 45°
      w = 2.0 * np.array([np.cos(phi), np.sin(phi)])
      params = jax.tree.map(lambda p: p[None], unravel(w))
      got = runner.measure({**state, "params": params})
      np.testing.assert_allclose(got["angle"], [np.radians(degrees)],
                                 rtol=1e-9)
      np.testing.assert_allclose(got["angle"], [by_numpy(w)], rtol=1e-9)
    # The margin gap is of the normalized margin: γ̂ = sqrt(2) (closed form)
    # minus min_n s_n x_n·w / ||w|| by numpy from the training points, the
    # same for w and 7w; zero along ŵ at any length.
    x, y = problems[0].x, problems[0].y
    z = np.where(y > 0, 1.0, -1.0)[:, None] * np.asarray(x, np.float64)
    for w in (np.array([0.3, -2.0]), 2.0 * w_hat):
      for scale in (1.0, 7.0):
        params = jax.tree.map(lambda p: p[None], unravel(scale * w))
        got = runner.measure({**state, "params": params})
        np.testing.assert_allclose(
            got["margin_gap"], [np.sqrt(2) - np.min(z @ w) / np.linalg.norm(w)],
            rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got["margin_gap"], [0.0], atol=1e-12)


def test_record_steps_are_log_spaced_and_end_at_the_total():
  from jaxunknowns.implicit import max_margin  # pylint: disable=g-import-not-at-top
  steps = max_margin.record_steps(1_000_000, 10)
  assert steps[0] == 1 and steps[-1] == 1_000_000
  assert np.all(np.diff(steps) > 0) and 55 <= len(steps) <= 61
  assert max_margin.record_steps(12_345, 5)[-1] == 12_345


# -----------------------------------------------------------------------------
# End to end and bad input
# -----------------------------------------------------------------------------
def test_large_non_separable_data_skip_the_hinge_program(monkeypatch):
  """Past HINGE_LP_MAX_CONSTRAINTS the message comes from the l_inf program
  alone: the hinge LP has a slack per constraint (MNIST-1D's 36,000 margins
  ran past 300 s)."""
  def never(z):
    raise AssertionError(f"best_separator called on {len(z)} constraints")
  monkeypatch.setattr(svm, "best_separator", never)
  rng = np.random.default_rng(0)
  m = svm.HINGE_LP_MAX_CONSTRAINTS + 1
  x = rng.normal(size=(m, 2))
  y = rng.integers(0, 2, size=m)  # random labels: not separable
  with pytest.raises(svm.NotSeparable) as e:
    svm.check_separable(svm.binary_constraints(x, y))
  msg = str(e.value)
  assert "not linearly separable" in msg and "data.train_size" in msg
  assert "\n" not in msg


def test_a_training_set_too_large_for_the_exact_svm_is_refused_first(
    tmp_path, monkeypatch):
  """The dense margin matrix is never built past MAX_MARGIN_ENTRIES (on
  Fashion-MNIST it would be 34 GB: XLA aborted the process); the error names
  data.train_size and the most examples that fit, and nothing is written."""
  from jaxunknowns import main  # pylint: disable=g-import-not-at-top
  from jaxunknowns.implicit import max_margin  # pylint: disable=g-import-not-at-top
  def never(*args):
    raise AssertionError("margin matrix built")
  monkeypatch.setattr(max_margin.svm_lib, "margin_matrix", never)
  config = config_loading.load_config(
      "configs/max_margin.py:clouds,runlocal",
      {"data.synthetic.dim": 2000, "data.synthetic.num_train": 10_001},
      root=str(ROOT))
  with pytest.raises(UserError) as e:
    main.run(config, str(tmp_path / "mm"))
  msg = str(e.value)
  assert msg.startswith("data.train_size") and "at most 10000" in msg, msg
  assert not (tmp_path / "mm").exists()
  # Few parameters, too many constraints for the linear programs (MNIST-1D:
  # 4000 examples x 9 margins ran past 300 s): the constraint count decides.
  config = config_loading.load_config(
      "configs/max_margin.py:clouds3,runlocal",
      {"data.synthetic.num_train": max_margin.MAX_MARGIN_CONSTRAINTS},
      root=str(ROOT))
  with pytest.raises(UserError) as e:
    main.run(config, str(tmp_path / "mm"))
  assert f"at most {max_margin.MAX_MARGIN_CONSTRAINTS // 2}" in str(e.value)
  assert not (tmp_path / "mm").exists()


def test_seeds_of_a_fixed_dataset_are_refused(monkeypatch):
  """Data seeds of a fixed dataset (digits) draw the same training set:
  GD's runs would be copies reported as n = 2. Refused before any SVM is
  solved; one seed runs, and a validation hold-out gives each seed its own
  set. Under float64, as max_margin.run builds its problems."""
  with jax.enable_x64(True):
    check_fixed_dataset_seeds(monkeypatch)


def check_fixed_dataset_seeds(monkeypatch):
  from jaxunknowns.implicit import max_margin  # pylint: disable=g-import-not-at-top
  digits = {"data.name": "digits", "data.train_size": 60}
  config = config_loading.load_config(
      "configs/max_margin.py:runlocal", digits, root=str(ROOT))
  with monkeypatch.context() as patch:
    def never(*args, **kwargs):
      raise AssertionError("an SVM solved before the refusal")
    patch.setattr(max_margin.svm_lib, "hard_margin_svm", never)
    with pytest.raises(UserError, match=r"^seeds=2: .* --config.seeds=1"):
      max_margin.build_problems(config)
  config = config_loading.load_config(
      "configs/max_margin.py:runlocal", {**digits, "seeds": 1},
      root=str(ROOT))
  assert len(max_margin.build_problems(config)[0]) == 1
  config = config_loading.load_config(
      "configs/max_margin.py:runlocal",
      {**digits, "data.validation_size": 100}, root=str(ROOT))
  problems = max_margin.build_problems(config)[0]
  assert not np.array_equal(problems[0].x, problems[1].x)


def test_runlocal_end_to_end(tmp_path):
  from jaxunknowns import main  # pylint: disable=g-import-not-at-top
  config = mm_config.get_config("soudry2d,runlocal")
  summary = main.run(config, str(tmp_path / "mm"))
  wd = tmp_path / "mm"
  for name in ("config.json", "summary.json", "report.md", "max_margin.png",
               "metrics.jsonl"):
    assert (wd / name).exists(), name
  saved = json.loads((wd / "summary.json").read_text())
  assert set(saved["optimizers"]) == {"gd", "momentum", "sgd", "adam"}
  assert saved["svm"]["margin"]["mean"] == pytest.approx(np.sqrt(2))
  gd = saved["optimizers"]["gd"]
  assert gd["final"]["distance"]["mean"] < 0.05
  assert len(gd["final"]["angle"]["per_seed"]) == 2
  assert gd["fits"]["loss_exponent"]["mean"] == pytest.approx(-1, abs=0.2)
  assert "claims" not in saved and summary["steps"] == 10_000
  rows = [json.loads(l) for l in (wd / "metrics.jsonl").read_text().splitlines()]
  last = [r for r in rows if r["step"] == 10_000 and r["optimizer"] == "gd"]
  assert {r["seed"] for r in last} == {0, 1} and all(
      r["split"] == "max_margin" for r in rows)
  report = (wd / "report.md").read_text()
  assert "max_margin.png" in report
  assert "| GD: slope of \\|\\|w\\|\\| against log t | 0.7071 (Soudry" in report
  # Per-seed values as text, not Python's lists ('data seeds [0, 1]').
  assert "data seeds 0, 1;" in report and "support vectors per seed 4, 4," in (
      report) and "ŵ (0.5, 0.5)" in report and "[" not in report.replace(
          "](max_margin.png)", "").replace("![", ""), report
  # A second run of the same config is already finished: its summary is
  # read back, not rerun.
  assert main.run(config, str(wd)) == json.loads(
      (wd / "summary.json").read_text())
  # The page shape, and report_cli rebuilds it (and the data panel) from the
  # workdir's files alone.
  assert_report_rebuilds(wd)


def test_non_separable_data_fails_before_writing(tmp_path):
  """CLI: one line on stderr, exit status 2, no workdir."""
  wd = tmp_path / "bad"
  proc = subprocess.run(
      [sys.executable, "-m", "jaxunknowns.main",
       "--config=configs/max_margin.py:soudry2d,runlocal",
       "--config.data.label_noise=0.5", f"--workdir={wd}"],
      cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1
  assert "not linearly separable" in errors[0] and "best separator" in errors[0]
  assert not wd.exists()


def test_bad_config_values_are_user_errors():
  from jaxunknowns.implicit import max_margin  # pylint: disable=g-import-not-at-top
  for field, value in [("max_margin.optimizers", ("gd", "rmsprop")),
                       ("max_margin.fit_decades", 9.0),
                       ("model.name", "mlp"),
                       ("train.loss", "hinge")]:
    config = mm_config.get_config("soudry2d,runlocal")
    node = config
    *path, leaf = field.split(".")
    for p in path:
      node = node[p]
    node[leaf] = value
    with pytest.raises(UserError, match=field.split(".")[-1]):
      max_margin.validate(config)


@pytest.mark.parametrize("field, value", [("model.dropout", 0.3),
                                          ("model.norm", "layer"),
                                          # Not "train.batch_size=1 with
                                          # batch norm": there is none.
                                          ("model.norm", "batch")])
def test_model_options_the_linear_model_ignores_are_refused(field, value):
  """The linear model has no hidden layer: a dropout rate or a norm would
  be recorded in config.json and never applied."""
  spec = "configs/max_margin.py:soudry2d,runlocal"
  config = config_loading.load_config(spec, {field: value}, root=str(ROOT))
  with pytest.raises(UserError, match=f"{field}=.* is unused here"):
    validation.check_config(config, validation.references_of(
        str(ROOT / spec)))


def _stat(*values):
  return {"mean": float(np.mean(values)), "per_seed": list(values),
          "std": float(np.std(values, ddof=1))}


def hand_summary(dataset="soudry2d", loss="cross_entropy", norm_slope=(0.70, 0.71),
                 loss_exponent=(-0.99, -1.01), angle_exponent=(-3.0, -2.8),
                 monotone=(True, True), distance=(1e-3, 2e-3),
                 test_loss=(0.01, 0.02), test_error=(-0.001, 0.0),
                 adam=(12.0, 3.0), l2_vs_linf=5.0):
  """A summary.json of two seeds with the numbers given (angles in degrees);
  GD's angle to w_hat is 8°."""
  final = lambda angle, linf: {"angle": _stat(*[np.radians(angle)] * 2),
                               "angle_linf": _stat(*[np.radians(linf)] * 2),
                               "distance": _stat(*distance)}
  fits = {"norm_slope": _stat(*norm_slope), "window_start_step": 1000,
          "loss_exponent": _stat(*loss_exponent), "angle_falls_from_step": [1, 1],
          "angle_exponent": _stat(*angle_exponent), "angle_monotone": list(monotone),
          "test_loss_change": _stat(*test_loss),
          "test_error_change": _stat(*test_error)}
  return {"dataset": dataset, "loss": loss, "use_bias": False, "steps": 10 ** 6,
          "svm": {"norm": _stat(2 ** -0.5, 2 ** -0.5),
                  "angle_l2_vs_linf_deg": [l2_vs_linf] * 2},
          "optimizers": {"gd": {"final": final(8.0, 9.0), "fits": fits},
                         "adam": {"final": final(*adam), "fits": fits}}}


def verdicts(summary):
  """{first word(s) of the quantity: Comparison}."""
  from jaxunknowns.implicit import max_margin_report  # pylint: disable=g-import-not-at-top
  return {c.quantity.split(" at step")[0].split(" on steps")[0].split(" on the")[0]: c
          for c in max_margin_report.comparisons(summary)}


@pytest.mark.parametrize("field, value, quantity", [
    ("norm_slope", (0.5, 0.52), "GD: slope of ||w|| against log t"),
    ("loss_exponent", (-0.7, -0.72), "GD: log-log slope of the training loss"),
    ("angle_exponent", (-0.5, -0.6), "GD: exponent of the angle against log t"),
    ("monotone", (True, False), "GD: angle to ŵ monotone"),
    ("distance", (0.06, 0.07), "gd: distance to the SVM direction"),
    ("test_error", (0.001, 0.002), "gd: change of test loss; of test error (points)"),
    ("adam", (6.0, 3.0), "Adam: angle to ŵ ≥ GD's; to the l_inf max-margin direction ≤ to ŵ"),
    ("adam", (12.0, 13.0), "Adam: angle to ŵ ≥ GD's; to the l_inf max-margin direction ≤ to ŵ"),
])
def test_comparisons_judge_hand_made_numbers(field, value, quantity):
  """Numbers that satisfy Soudry et al.'s statements agree; changing one
  number past its threshold makes exactly its row differ. ||w_hat|| = 0.7071:
  a slope of 0.51 is further than 15% + 2 seed std; a loss exponent of -0.71
  further than 0.15 from -1; an angle exponent above -0.9 is slower than
  1/log t; a distance of 0.065 is above 0.05; Adam at 6° is nearer ŵ than GD
  (8°), at 12° with 13° to l_inf no nearer the l_inf direction."""
  from jaxunknowns.report import AGREES, DIFFERS  # pylint: disable=g-import-not-at-top
  good = verdicts(hand_summary())
  assert len(good) == 7 and {c.verdict for c in good.values()} == {AGREES}
  bad = verdicts(hand_summary(**{field: value}))
  assert bad[quantity].verdict == DIFFERS
  assert [q for q, c in bad.items() if c.verdict != AGREES] == [quantity]
  # The paper's own 2-D set and loss: no declared protocol difference,
  # except for the test loss's rise, which Soudry et al. show on a convnet
  # on CIFAR-10 (their Fig. 2), not on the 2-D set.
  if field == "test_error":
    assert bad[quantity].reasons == (
        "data: cifar10 in the paper, soudry2d here",
        "model: convnet in the paper, linear, no bias here",
        "loss: cross-entropy in the paper, logistic here")
  else:
    assert bad[quantity].reasons == ()


def test_adam_against_gd_is_judged_by_the_seeds_spread():
  """Adam's angle against GD's was a bound at GD's mean: decided on one
  seed (max_margin:runlocal --config.data.name=digits --config.seeds=1
  agreed, 42° ≥ 16°) and on more whatever GD's spread. It is now the
  per-seed gaps of arms on the same data seeds."""
  from jaxunknowns.report import compare  # pylint: disable=g-import-not-at-top
  quantity = ("Adam: angle to ŵ ≥ GD's; to the l_inf max-margin direction "
              "≤ to ŵ")
  rad = lambda *deg: _stat(*np.radians(deg))
  one = hand_summary()
  for arm, angle, linf in (("gd", 8.0, 9.0), ("adam", 12.0, 3.0)):
    one["optimizers"][arm]["final"].update({  # one seed: no spread
        k: {"mean": np.radians(v), "std": 0.0, "per_seed": [np.radians(v)]}
        for k, v in (("angle", angle), ("angle_linf", linf))})
  row = verdicts(one)[quantity]
  assert row.verdict == compare.NOT_TESTABLE, row
  assert row.reasons == (compare.ONE_SEED,)
  # Adam above GD's mean on average, below it on one seed of two: open.
  spread = hand_summary()
  spread["optimizers"]["gd"]["final"]["angle"] = rad(4.0, 14.0)
  spread["optimizers"]["adam"]["final"]["angle"] = rad(12.0, 12.0)
  row = verdicts(spread)[quantity]
  assert row.verdict == compare.NOT_TESTABLE, row
  assert row.reasons == (compare.SPREAD,)


def test_test_error_zero_throughout_is_not_testable():
  """On clouds separated far wider than Soudry's set (runlocal on
  data.name=synthetic) no test point is ever misclassified: 'test loss up,
  test error down' read 'agrees' on a loss change of 1e-10 and 0 <= 0."""
  from jaxunknowns.report import AGREES, NOT_TESTABLE  # pylint: disable=g-import-not-at-top
  quantity = "gd: change of test loss; of test error (points)"
  summary = hand_summary("synthetic", test_loss=(1e-10, 2e-10),
                         test_error=(0.0, 0.0))
  summary["optimizers"]["gd"]["final"]["test_error"] = _stat(0.0, 0.0)
  row = verdicts(summary)[quantity]
  assert row.verdict == NOT_TESTABLE and "test error 0" in row.reasons[0], row
  # One seed misclassifies a test point at the end: judged again.
  summary["optimizers"]["gd"]["final"]["test_error"] = _stat(0.0, 0.005)
  assert verdicts(summary)[quantity].verdict == AGREES


def test_test_changes_inside_the_seeds_spread_are_open():
  """'Test loss up, test error down' is judged on per-seed changes: an
  error rise of +0.5 ± 1.4 points (clouds' momentum: +0.77 ± 0.49) is
  within the seeds' spread, not a rise; a clear loss fall still differs,
  whatever the error row says."""
  from jaxunknowns.report import DIFFERS, NOT_TESTABLE, compare  # pylint: disable=g-import-not-at-top
  quantity = "gd: change of test loss; of test error (points)"
  row = verdicts(hand_summary(test_error=(-0.005, 0.015)))[quantity]
  assert row.verdict == NOT_TESTABLE and row.reasons == (compare.SPREAD,), row
  row = verdicts(hand_summary(test_loss=(-0.02, -0.021),
                              test_error=(-0.005, 0.015)))[quantity]
  assert row.verdict == DIFFERS, row


def test_comparison_reasons_are_declared_protocol_differences():
  from jaxunknowns.report import DIFFERS, NOT_TESTABLE  # pylint: disable=g-import-not-at-top
  c = verdicts(hand_summary("synthetic", "exponential", distance=(0.2, 0.3)))
  row = c["gd: distance to the SVM direction"]
  assert row.verdict == DIFFERS and row.reasons == (
      "data: soudry2d in the paper, synthetic here",
      "loss: logistic in the paper, exponential here")
  # L2 and l_inf directions that coincide cannot tell Adam's bias from GD's.
  adam = verdicts(hand_summary(l2_vs_linf=1e-14, adam=(0.03, 0.03)))
  assert adam["Adam: angle to ŵ ≥ GD's; to the l_inf max-margin direction ≤ "
              "to ŵ"].verdict == NOT_TESTABLE


def test_no_direction_separates_points_at_zero_margin():
  """Signed examples z = y·x of (1, 0) and (−1, 0) admit no u with both
  z·u > 0: the ℓ∞ max-margin LP's optimum is 0, and the direction returned
  is zero (not separable), not a vertex that separates nothing."""
  assert not np.any(svm.linf_max_margin(np.array([[1.0, 0.0], [-1.0, 0.0]])))
