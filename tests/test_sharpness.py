"""Keskar's eps-sharpness: the box, an analytic and a brute-force quadratic,
runs batched over seeds, a tiny end-to-end run with the Hessian callback, and
bad input (one line, exit 2, nothing written)."""

import itertools
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunknowns import config_loading
from jaxunknowns.analysis import sharpness
from jaxunknowns.metrics import read_metrics
from jaxunknowns.report import fmt
from run_helpers import assert_report_rebuilds, read_json, run_in_process

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, JAX_PLATFORMS="cpu")


def _in_box(delta, params, eps):
  r = eps * (np.abs(params) + 1.0)
  return np.all(np.abs(delta) <= r * (1 + 1e-6))


def test_diagonal_quadratic_matches_the_analytic_maximum():
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    a, m = rng.uniform(0.5, 3.0, 10), rng.normal(size=10)
    x = rng.normal(size=10)
    loss = lambda p: 0.5 * jnp.sum(a * (p["w"] - m) ** 2)
    eps = 1e-2
    out = jax.jit(lambda p: sharpness.epsilon_sharpness(
        loss, p, eps, iterations=5))({"w": jnp.asarray(x)})
    # Convex and separable: each coordinate goes to the box end farther
    # from its minimiser.
    r = eps * (np.abs(x) + 1)
    best = 0.5 * np.sum(a * (x + r * np.sign(x - m) - m) ** 2)
    f0 = 0.5 * np.sum(a * (x - m) ** 2)
    np.testing.assert_allclose(float(out["max_loss"]), best, rtol=1e-12)
    np.testing.assert_allclose(float(out["sharpness"]),
                               100 * (best - f0) / (1 + f0), rtol=1e-10)
    assert _in_box(np.asarray(out["delta"]["w"]), x, eps)


def test_dense_quadratic_matches_brute_force_over_the_vertices():
  with jax.enable_x64(True):
    rng = np.random.default_rng(1)
    n = 8
    q = rng.normal(size=(n, n))
    h = q @ q.T / n + 2.0 * np.eye(n)  # convex: the max is at a vertex
    b, x, eps = rng.normal(size=n), rng.normal(size=n), 0.05
    f = lambda w: 0.5 * w @ h @ w + b @ w
    loss = lambda p: f(p["w"])
    out = jax.jit(lambda p: sharpness.epsilon_sharpness(
        loss, p, eps, iterations=30, step=0.5))({"w": jnp.asarray(x)})
    r = eps * (np.abs(x) + 1)
    brute = max(f(x + r * np.array(s))
                for s in itertools.product((-1.0, 1.0), repeat=n))
    np.testing.assert_allclose(float(out["max_loss"]), brute, rtol=1e-10)
    assert _in_box(np.asarray(out["delta"]["w"]), x, eps)
    assert float(out["loss"]) == pytest.approx(f(x), rel=1e-12)


def test_sign_steps_are_a_fraction_of_each_coordinates_box():
  # A loss whose maximum is inside the box, at c * r with c a multiple of
  # the step (0.25): steps of 0.25 r reach it exactly and then stay (the
  # gradient is zero there). Steps that ignored r would bang against the
  # box's faces and never see the interior maximum.
  with jax.enable_x64(True):
    x = np.array([-2.0, 0.5, 3.0])
    eps = 1e-2
    r = eps * (np.abs(x) + 1)
    c = np.array([0.5, -0.25, 0.75])
    loss = lambda p: -jnp.sum((p["w"] - (x + c * r)) ** 2)
    out = jax.jit(lambda p: sharpness.epsilon_sharpness(
        loss, p, eps, iterations=5, step=0.25))({"w": jnp.asarray(x)})
    np.testing.assert_allclose(np.asarray(out["delta"]["w"]), c * r,
                               rtol=1e-12)
    assert abs(float(out["max_loss"])) < 1e-20
    base = -np.sum((c * r) ** 2)
    np.testing.assert_allclose(float(out["sharpness"]),
                               100 * (0 - base) / (1 + base), rtol=1e-10)


def test_box_holds_for_a_nonconvex_loss_and_estimate_never_falls():
  x = jnp.linspace(-2.0, 2.0, 20)
  loss = lambda p: jnp.sum(jnp.sin(3 * p["w"]) * p["w"] ** 2)
  vals = []
  for it in (1, 3, 10):
    out = sharpness.epsilon_sharpness(loss, {"w": x}, 0.1, iterations=it)
    assert _in_box(np.asarray(out["delta"]["w"]), np.asarray(x), 0.1)
    np.testing.assert_allclose(float(loss({"w": x + out["delta"]["w"]})),
                               float(out["max_loss"]), rtol=1e-5)
    vals.append(float(out["sharpness"]))
  assert vals[0] > 0 and vals == sorted(vals)


def test_default_ascent_nears_scipy_lbfgsb_on_a_trained_network():
  """On a trained MLP (not a quadratic), the default 10 sign steps find at
  least 90% of the maximum scipy's L-BFGS-B (Keskar et al.'s optimizer) finds
  when run to convergence in the same box, and no less than its first 10
  iterations, Keskar's budget."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from jax.flatten_util import ravel_pytree  # pylint: disable=g-import-not-at-top
  from scipy.optimize import fmin_l_bfgs_b  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  x = rng.normal(size=(256, 20)).astype(np.float32)
  y = rng.integers(0, 5, 256)
  model = nn.Sequential([nn.Dense(32), nn.relu, nn.Dense(5)])
  params = model.init(jax.random.PRNGKey(0), x)
  loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(
      model.apply(p, x), y).mean()
  step = jax.jit(lambda p: jax.tree.map(lambda w, g: w - 0.5 * g, p,
                                        jax.grad(loss)(p)))
  for _ in range(300):
    params = step(params)
  eps = 5e-3
  ours = float(sharpness.epsilon_sharpness(loss, params, eps,
                                           iterations=10)["sharpness"])
  flat, unravel = ravel_pytree(params)
  x0 = np.asarray(flat, np.float64)
  r = eps * (np.abs(x0) + 1.0)
  negative = jax.jit(jax.value_and_grad(lambda v: -loss(unravel(v))))
  def objective(delta):
    value, grad = negative(jnp.asarray(x0 + delta, jnp.float32))
    return float(value), np.asarray(grad, np.float64)
  base = float(loss(params))
  found = {n: 100 * (-fmin_l_bfgs_b(objective, np.zeros_like(x0),
                                    bounds=list(zip(-r, r)), maxiter=n)[1]
                     - base) / (1 + base) for n in (10, 1000)}
  assert ours >= 0.9 * found[1000], (ours, found)
  assert ours >= found[10], (ours, found)


def test_lbfgsb_finds_the_analytic_maximum_run_by_run():
  """Keskar's maximiser on a convex separable loss, two runs at once with
  their own parameters and statistics: each coordinate at the box end
  farther from its minimiser, inside the box; the value at δ = 0 is the
  run's loss."""
  rng = np.random.default_rng(4)
  a, m = rng.uniform(0.5, 3.0, (2, 6)), rng.normal(size=(2, 6))
  x = rng.normal(size=(2, 6)).astype(np.float32)
  loss = lambda p, s: 0.5 * jnp.sum(s["a"] * (p["w"] - s["m"]) ** 2)
  eps = 1e-2
  out = sharpness.lbfgsb_sharpness_fn(loss, eps, iterations=30)(
      {"w": jnp.asarray(x)}, {"a": jnp.asarray(a, jnp.float32),
                              "m": jnp.asarray(m, jnp.float32)})
  r = eps * (np.abs(x) + 1)
  best = 0.5 * np.sum(a * (x + r * np.sign(x - m) - m) ** 2, 1)
  f0 = 0.5 * np.sum(a * (x - m) ** 2, 1)
  np.testing.assert_allclose(out["loss"], f0, rtol=1e-5)
  np.testing.assert_allclose(out["max_loss"], best, rtol=1e-5)
  np.testing.assert_allclose(out["sharpness"], 100 * (best - f0) / (1 + f0),
                             rtol=1e-4)


def test_end_to_end_with_lbfgsb_says_so(tmp_path, monkeypatch):
  """The run measures with L-BFGS-B (a spy counts its builds: one per arm
  and ε), and its report says so."""
  built = []
  real = sharpness.lbfgsb_sharpness_fn
  monkeypatch.setattr(sharpness, "lbfgsb_sharpness_fn",
                      lambda *a, **k: built.append(a) or real(*a, **k))
  config = tiny_config()
  config.sharpness.maximiser = "lbfgsb"
  summary = run_in_process(config, tmp_path / "run")
  assert len(built) == 2 * len(config.sharpness.epsilons)
  for arm in summary["arms"].values():
    assert all(v > 0 for v in arm["sharpness"]["0.001"]["per_seed"])
  text = (tmp_path / "run" / "report.md").read_text()
  assert "by 3 L-BFGS-B iterations on 100 examples" in text


def test_runs_are_batched_and_independent():
  params = {"w": jnp.asarray([[0.5, -1.0, 2.0], [1.0, 1.0, -0.5]])}  # 2 runs
  loss = lambda p, stats: jnp.sum(jnp.cos(p["w"]) * stats["s"])
  stats = {"s": jnp.asarray([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]])}
  batched = sharpness.network_sharpness_fn(loss, 1e-2, iterations=4)(
      params, stats)
  for r in range(2):
    one = sharpness.epsilon_sharpness(
        lambda p: loss(p, {"s": stats["s"][r]}), {"w": params["w"][r]}, 1e-2,
        iterations=4)
    np.testing.assert_allclose(batched["sharpness"][r], one["sharpness"],
                               rtol=1e-5)


def tiny_config():
  return config_loading.load_config(
      "configs/sharpness.py:runlocal",
      {"model.name": "mlp", "model.widths": (16,), "data.train_size": 400,
       "arms.large_batch.train.batch_size": 40, "hessian.subset_size": 100,
       "sharpness.subset_size": 100, "sharpness.chunk_size": 50},
      root=str(ROOT))


def test_end_to_end_tiny_run(tmp_path, monkeypatch):
  """Keskar's sharpness and the Hessian are of the training loss: every
  example of the subsets they are measured on (x and its label) is a row
  of the training split, loaded here on its own, and none a test row."""
  from jaxunknowns.analysis import hessian  # pylint: disable=g-import-not-at-top
  from jaxunknowns.data import load_dataset  # pylint: disable=g-import-not-at-top
  drawn, real = [], hessian.subset
  monkeypatch.setattr(hessian, "subset",
                      lambda *a: drawn.append(real(*a)) or drawn[-1])
  config = tiny_config()
  summary = run_in_process(config, tmp_path / "run")
  ds = load_dataset(config.data)
  examples = lambda x, y: {(a.tobytes(), int(b))
                           for a, b in zip(np.asarray(x, np.float32), y)}
  train = examples(ds.train.x, ds.train.y)
  test = examples(ds.test.x, ds.test.y)
  sizes = [len(y) for _, y in drawn]
  assert sizes.count(config.sharpness.subset_size) >= 2, sizes  # per arm
  for x, y in drawn:
    outside = examples(x, y) - train
    assert not outside, f"{len(outside)}/{len(y)} rows not training rows"
    assert not examples(x, y) & test
  saved = read_json(tmp_path / "run" / "summary.json")
  assert saved["compare"] == ["small_batch", "large_batch"]
  rows = read_metrics(str(tmp_path / "run"))
  for name, arm in summary["arms"].items():
    assert arm["batch_size"] == {"small_batch": 32, "large_batch": 40}[name]
    # The same epochs: steps x batch = 0.5 epoch of 400 examples, rounded up.
    assert arm["steps"] == -(-200 // arm["batch_size"])
    for eps in ("0.001", "0.0005"):
      assert all(v >= 0 for v in arm["sharpness"][eps]["per_seed"])
    # A larger box cannot find a smaller maximum (same start, same steps).
    assert arm["sharpness"]["0.001"]["mean"] > arm["sharpness"]["0.0005"]["mean"]
    # The final eigenvalue is the callback's last value along training.
    along = [r for r in rows if r["split"] == "hessian" and r["arm"] == name]
    assert len({r["step"] for r in along}) >= 2
    last = max(r["step"] for r in along)
    np.testing.assert_allclose(
        sorted(r["eig_0"] for r in along if r["step"] == last),
        sorted(arm["top_eigenvalue"]["per_seed"]), rtol=1e-6)
    assert arm["top_eigenvalue"]["mean"] > 0
  assert (tmp_path / "run" / "eigenvalue_along_training.png").exists()
  report = (tmp_path / "run" / "report.md").read_text()
  first, last = summary["arms"]["small_batch"], summary["arms"]["large_batch"]
  n = len(last["top_eigenvalue"]["per_seed"])
  assert (f"| top Hessian eigenvalue | larger with the large batch (Yao "
          f"et al. 2018) | large_batch "
          f"{fmt(last['top_eigenvalue'], 1.0, 3, n=False)}, small_batch "
          f"{fmt(first['top_eigenvalue'], 1.0, 3, n=False)} (n={n}) |") in report
  # Each arm is a finished stage; summary.json holds measurements only.
  assert all((tmp_path / "run" / "arms" / n / "result.json").exists()
             for n in summary["arms"])
  assert "checks" not in saved
  # The page shape, and report_cli rebuilds it from the workdir's files.
  assert_report_rebuilds(tmp_path / "run")


def test_small_vs_large_batch_is_decided_per_seed():
  """Both arms train the same seeds (the same init key and data seed per
  seed), so each row is the paired rule on per-seed differences. The seeds
  spread every quantity far more than the arms differ, and the arms differ
  the same way on every seed: the unpaired rule (gap ≤ 2 × the larger seed
  std) called all three rows 'differs'."""
  from jaxunknowns.implicit import sharpness_report  # pylint: disable=g-import-not-at-top
  stat = lambda *v: {"mean": float(np.mean(v)),
                     "std": float(np.std(v, ddof=1)), "per_seed": list(v)}
  arm = lambda batch, acc, eig, sharp: {
      "batch_size": batch, "steps_per_epoch": 400 / batch,
      "final": {"test": {"accuracy": stat(*acc)}},
      "top_eigenvalue": stat(*eig), "sharpness": {"0.001": stat(*sharp)}}
  summary = {"compare": ["small_batch", "large_batch"], "seeds": [0, 1, 2],
             "arms": {"small_batch": arm(32, (0.700, 0.800, 0.900),
                                         (10.0, 20.0, 30.0), (1.0, 2.0, 3.0)),
                      "large_batch": arm(40, (0.690, 0.788, 0.891),
                                         (11.0, 21.2, 30.9),
                                         (1.10, 2.12, 3.09))}}
  rows = sharpness_report.comparisons(summary, tiny_config())
  assert [c.verdict for c in rows] == ["agrees"] * 3, rows
  assert [c.rule for c in rows] == [
      "small_batch − large_batch per seed = +1.03, > 2 × its std (0.31)",
      "large_batch − small_batch per seed = +1.03, > 2 × its std (0.31)",
      "large_batch − small_batch per seed = +0.10, > 2 × its std (0.03)"]


def _cli(tmp_path, *flags):
  workdir = tmp_path / "w"
  proc = subprocess.run(
      [sys.executable, "-m", "jaxunknowns.main",
       "--config=configs/sharpness.py:runlocal", f"--workdir={workdir}",
       *flags], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
  return proc, workdir


@pytest.mark.parametrize("overrides, message", [
    # Every arm sets its own batch size: the shared one is recorded only.
    ({"train.batch_size": 7}, "train.batch_size=7 is unused here"),
    # Under an epoch budget each arm's steps come from epochs.
    ({"train.steps": 7}, "train.steps=7 is unused here"),
])
def test_a_shared_field_no_arm_reads_is_refused(overrides, message):
  from jaxunknowns import validation  # pylint: disable=g-import-not-at-top
  from jaxunknowns.errors import UserError  # pylint: disable=g-import-not-at-top
  spec = str(ROOT / "configs/sharpness.py") + ":runlocal"
  with pytest.raises(UserError, match=message):
    validation.check_config(config_loading.load_config(spec, overrides),
                            validation.references_of(spec))
  # With epochs=0 train.steps is every arm's budget: accepted.
  validation.check_config(config_loading.load_config(
      spec, {"train.steps": 7, "epochs": 0.0}), validation.references_of(spec))


def test_hessian_points_without_the_hessian_along_training_is_refused():
  """hessian.enabled=False runs no Hessian along training (only the final
  one): sharpness.hessian_points was recorded, never used. The file's own
  points stay without a word."""
  from jaxunknowns import validation  # pylint: disable=g-import-not-at-top
  from jaxunknowns.errors import UserError  # pylint: disable=g-import-not-at-top
  spec = str(ROOT / "configs/sharpness.py") + ":runlocal"
  off = {"hessian.enabled": False}
  with pytest.raises(UserError, match="sharpness.hessian_points=9 is unused"):
    validation.check_config(config_loading.load_config(
        spec, {**off, "sharpness.hessian_points": 9}),
                            validation.references_of(spec))
  validation.check_config(config_loading.load_config(spec, off),
                          validation.references_of(spec))


def test_a_repeated_epsilon_is_refused():
  """sharpness.epsilons=(1e-3, 1e-3) measured one value, keyed twice, and the
  report's table had two identical 'ε-sharpness 0.001' columns (exit 0)."""
  from jaxunknowns import validation  # pylint: disable=g-import-not-at-top
  from jaxunknowns.errors import UserError  # pylint: disable=g-import-not-at-top
  spec = str(ROOT / "configs/sharpness.py") + ":runlocal"
  with pytest.raises(UserError, match=r"sharpness.epsilons=\(0.001, 0.001\)"
                     ".*distinct"):
    validation.check_config(config_loading.load_config(
        spec, {"sharpness.epsilons": (1e-3, 1e-3)}))


@pytest.mark.parametrize("flags, message", [
    (("--config.hessian.k=10000000",), "only 266610 parameters"),
    (("--config.compare=('small_batch','medium_batch')",),
     "unknown arm 'medium_batch'"),
    # The error names the field that was set, not hessian.chunk_size.
    (("--config.sharpness.chunk_size=7",),
     "sharpness.chunk_size=7 must divide the subset size 400"),
    (("--config.sharpness.maximiser=adam",), "sharpness.maximiser='adam'"),
    # A sign step means nothing to L-BFGS-B: set, it would be recorded unused.
    (("--config.sharpness.maximiser=lbfgsb", "--config.sharpness.step=0.5"),
     "sharpness.step=0.5 is unused here"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, flags, message):
  proc, workdir = _cli(tmp_path, *flags)
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(lines) == 1 and message in lines[0], proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  assert not workdir.exists()
