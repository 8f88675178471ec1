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


# -----------------------------------------------------------------------------
# GD's direction
# -----------------------------------------------------------------------------
def test_gd_direction_converges_to_the_svm_direction():
  from jaxunknowns.implicit import max_margin  # pylint: disable=g-import-not-at-top
  config = mm_config.get_config("soudry2d,runlocal")
  config.seeds = 1
  config.max_margin.optimizers = "gd"
  with jax.enable_x64(True):
    problems, model, _ = max_margin.build_problems(config)
    runner = max_margin.Runner(config, model, problems, "gd")
    state = runner.init_state([0])
    distances, norms, losses, done = [], [], [], 0
    for t in (100, 1000, 10_000, 100_000):
      state = runner.advance(state, t - done)
      done = t
      m = runner.measure(state)
      distances.append(float(m["distance"][0]))
      norms.append(float(m["norm"][0]))
      losses.append(float(m["loss"][0]))
  assert int(state["step"][0]) == 100_000
  assert distances[-1] < 0.01
  assert distances[-1] < distances[1]        # converging (seed 0: after t ~ 200)
  # ||w|| grows like ||w_hat|| log t, the loss falls like 1/t.
  slope = (norms[-1] - norms[-2]) / np.log(10)
  assert slope == pytest.approx(np.sqrt(0.5), rel=0.1)
  assert np.log10(losses[-2] / losses[-1]) == pytest.approx(1.0, abs=0.1)


def test_record_steps_are_log_spaced_and_end_at_the_total():
  from jaxunknowns.implicit import max_margin  # pylint: disable=g-import-not-at-top
  steps = max_margin.record_steps(1_000_000, 10)
  assert steps[0] == 1 and steps[-1] == 1_000_000
  assert np.all(np.diff(steps) > 0) and 55 <= len(steps) <= 61
  assert max_margin.record_steps(12_345, 5)[-1] == 12_345


# -----------------------------------------------------------------------------
# End to end and bad input
# -----------------------------------------------------------------------------
def test_runlocal_end_to_end(tmp_path):
  from jaxunknowns import main  # pylint: disable=g-import-not-at-top
  from jaxunknowns.implicit import max_margin  # pylint: disable=g-import-not-at-top
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
  assert saved["claims"] and summary["steps"] == 10_000
  rows = [json.loads(l) for l in (wd / "metrics.jsonl").read_text().splitlines()]
  last = [r for r in rows if r["step"] == 10_000 and r["optimizer"] == "gd"]
  assert {r["seed"] for r in last} == {0, 1} and all(
      r["split"] == "max_margin" for r in rows)
  report = (wd / "report.md").read_text()
  assert "max_margin.png" in report and "| claim (fits on steps" in report
  # The claims are judged again from summary.json's numbers: the same verdicts.
  assert [c["holds"] for c in saved["claims"]] == [
      c["holds"] for c in max_margin.claims(saved)]
  # A second run of the same config is already finished.
  assert main.run(config, str(wd)) is None
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
  for field, value in [("max_margin.optimizers", "gd,rmsprop"),
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


def test_degenerate_claims_are_judged_by_theory():
  """On Soudry's symmetric 2-D set ||P_perp w~|| = 0 and the l_inf and L2
  directions coincide: the rate claim must then ask for an angle falling at
  least as fast as 1/log t, and the Adam claim must say it cannot be tested."""
  import json  # pylint: disable=g-import-not-at-top
  from jaxunknowns.implicit import max_margin  # pylint: disable=g-import-not-at-top
  stat = lambda v: {"mean": v, "std": 0.0, "per_seed": [v]}
  final = {"angle": stat(1e-3), "angle_linf": stat(1e-3), "distance": stat(1e-3)}
  def summary(angle_exponent, limit, l2_vs_linf):
    fits = {"norm_slope": stat(0.7), "loss_exponent": stat(-1.0),
            "angle_monotone": [True], "window_start_step": 1000,
            "angle_falls_from_step": [1], "angle_slope": stat(0.08),
            "angle_intercept": stat(0.0), "angle_exponent": stat(angle_exponent),
            "test_loss_change": stat(0.01), "test_error_change": stat(0.0)}
    return json.loads(json.dumps({
        "steps": 10 ** 6,
        "svm": {"norm": stat(0.7071), "angle_log_t_limit": [limit],
                "angle_l2_vs_linf_deg": [l2_vs_linf]},
        "optimizers": {"gd": {"final": final, "fits": fits},
                       "adam": {"final": final, "fits": fits}}}))
  def find(cs, text):
    return next(c for c in cs if text in c["claim"])
  fast = max_margin.claims(summary(-3.0, 0.0, 0.0))
  assert find(fast, "at least as fast")["holds"] is True
  assert find(fast, "Adam")["holds"] is None
  slow = max_margin.claims(summary(-0.5, 0.0, 0.0))
  assert find(slow, "at least as fast")["holds"] is False
  generic = max_margin.claims(summary(-1.0, 0.01, 5.0))
  assert find(generic, "leading-order prediction")["holds"] is False  # 0.08 vs 0.01
  assert find(generic, "Adam")["holds"] is False  # Adam no further than GD


def test_differences_state_what_the_numbers_show():
  """The reasons given for a failed claim are read from this run's numbers:
  the Adam claim names the half that fails, a non-monotone angle with no
  peak after step 1 is not explained by a rise to a peak, and the longer
  run suggested is one on this run's data and loss."""
  import json  # pylint: disable=g-import-not-at-top
  from jaxunknowns.implicit import max_margin  # pylint: disable=g-import-not-at-top
  from jaxunknowns.implicit import max_margin_report  # pylint: disable=g-import-not-at-top
  stat = lambda *v: {"mean": float(np.mean(v)), "std": float(np.std(v)),
                     "per_seed": list(v)}
  deg = np.radians

  def summary(dataset, loss, adam_angle, adam_linf, peaks):
    fits = {"norm_slope": stat(0.5, 0.5), "loss_exponent": stat(-0.7, -0.7),
            "angle_monotone": [True, False], "window_start_step": 100,
            "angle_peak_step": peaks, "angle_falls_from_step": [1, 398],
            "angle_slope": stat(0.08, 0.08), "angle_intercept": stat(0, 0),
            "angle_exponent": stat(-1.0, -1.0),
            "test_loss_change": stat(0.01, 0.01),
            "test_error_change": stat(0.0, 0.0)}
    final = lambda a, a_inf: {"angle": stat(deg(a), deg(a)),
                              "angle_linf": stat(deg(a_inf), deg(a_inf)),
                              "distance": stat(0.2, 0.2)}
    return json.loads(json.dumps({
        "steps": 10_000, "seeds": [0, 1], "dataset": dataset, "loss": loss,
        "num_train": 100, "num_classes": 2, "use_bias": False,
        "num_params": 10,
        "svm": {"norm": stat(0.7071, 0.7071), "angle_log_t_limit": [0.01, 0.01],
                "angle_l2_vs_linf_deg": [5.0, 5.0]},
        "optimizers": {"gd": {"final": final(12.0, 17.7), "fits": fits},
                       "adam": {"final": final(adam_angle, adam_linf),
                                "fits": fits}}}))

  # Adam closer to w_hat than GD, and closer to w_hat than to l_inf: both
  # halves fail and both are named, with the angles.
  s = summary("synthetic", "cross_entropy", 8.0, 11.5, [1, 1])
  text = max_margin_report.differences(max_margin.claims(s), s)
  assert "Adam ends no further from w_hat than GD (8° against GD's 12°)" in text
  assert "no closer to the l_inf direction than to w_hat (11.5° against 8°)" in text
  # Only the second half fails: the first is not claimed.
  s = summary("synthetic", "cross_entropy", 24.3, 36.8, [1, 1])
  text = max_margin_report.differences(max_margin.claims(s), s)
  assert "no further from w_hat than GD" not in text
  assert "no closer to the l_inf direction than to w_hat (36.8° against 24.3°)" in text
  # Not soudry2d: no soudry2d_long to suggest.
  assert "soudry2d_long" not in text and "a larger train.steps" in text
  # The angle peaks at step 1 on both seeds: no "rises to a peak".
  assert "seed 1: peak at step 1, monotone from step 398" in text
  assert "push w off w_hat first" not in text
  assert "rises to a peak" not in max_margin_report._before_asymptote(
      s["optimizers"])
  # A peak after step 1 is a rise away from w_hat, explained as such.
  s = summary("soudry2d", "cross_entropy", 24.3, 36.8, [1, 251])
  text = max_margin_report.differences(max_margin.claims(s), s)
  assert "push w off w_hat first" in text and "peak at step 251" in text
  assert "variant soudry2d_long" in text
  assert "rises to a peak (per seed at step [1, 251])" in (
      max_margin_report._before_asymptote(s["optimizers"]))
  s = summary("soudry2d", "exponential", 24.3, 36.8, [1, 1])
  text = max_margin_report.differences(max_margin.claims(s), s)
  assert "soudry2d_long" not in text
