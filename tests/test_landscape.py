"""Loss landscapes: filter normalization, the surface at the centre against
the trainer's own eval, the fast first-layer path against the plain one, a
tiny end-to-end run, and bad input (one line, exit 2, nothing written)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunknowns import config_defaults, config_loading, report, report_cli
from jaxunknowns.analysis import landscape
from jaxunknowns.data import Dataset, Split
from jaxunknowns.errors import UserError
from jaxunknowns.losses import LOSSES
from jaxunknowns.report import compare
from jaxunknowns.models import create_model
from jaxunknowns.trainer import Trainer
from run_helpers import assert_report_rebuilds, read_json, run_in_process

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, JAX_PLATFORMS="cpu")


def tiny_dataset(n=96, shape=(6, 6, 1), classes=3, seed=0):
  rng = np.random.default_rng(seed)
  def split(n):
    y = rng.integers(0, classes, n).astype(np.int32)
    x = rng.normal(size=(n,) + shape).astype(np.float32) + y[:, None, None, None]
    return Split(x, y)
  return Dataset(name="tiny", num_classes=classes, input_shape=shape,
                 train=split(n), test=split(32))


class ConvBnDense(nn.Module):
  """Conv -> BatchNorm -> ReLU -> Dense: every kind of leaf, compiled fast."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(5, (3, 3))(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
    return nn.Dense(3)(x.reshape(x.shape[0], -1))


def test_filter_normalization_matches_each_filter_and_zeroes_bias_and_bn():
  params = jax.jit(ConvBnDense().init, static_argnames="train")(
      jax.random.PRNGKey(0), jnp.zeros((1, 6, 6, 2)), train=False)["params"]
  # Non-trivial BN parameters: a zero direction must not come from zeros.
  params = jax.tree.map(lambda p: p + 0.5, params)
  d = landscape.filter_normalized_direction(jax.random.PRNGKey(1), params)
  raw = jax.tree.leaves(landscape.random_direction(jax.random.PRNGKey(1),
                                                   params))
  kinds = set()
  for (path, p), (_, q), g in zip(
      jax.tree_util.tree_flatten_with_path(params)[0],
      jax.tree_util.tree_flatten_with_path(d)[0], raw):
    names = [getattr(k, "key", str(k)) for k in path]
    p, q = np.asarray(p), np.asarray(q)
    if names[-1] == "kernel":
      kinds.add(p.ndim)
      axes = tuple(range(p.ndim - 1))
      np.testing.assert_allclose(np.sqrt((q ** 2).sum(axes)),
                                 np.sqrt((p ** 2).sum(axes)), rtol=1e-5)
      assert not np.allclose(q, p)  # A random direction, not the weights.
      # One scale per filter: q[..., j] = c_j g[..., j] for the raw draw g
      # (finer scaling, e.g. per input channel, would also match the norms).
      ratio = (q / np.asarray(g)).reshape(-1, p.shape[-1])
      np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:1], ratio.shape),
                                 rtol=1e-4)
    else:  # biases, BatchNorm scale and bias
      assert np.all(q == 0), names
  assert kinds == {2, 4}  # Both dense and conv kernels were checked.
  assert any("BatchNorm" in str(path) for path, _ in
             jax.tree_util.tree_flatten_with_path(params)[0])


def test_empty_grid_is_a_user_error():
  with pytest.raises(UserError, match="no points"):
    landscape.axis(-1.0, 1.0, 0, "landscape.points_2d")
  with pytest.raises(UserError, match="empty"):
    landscape.axis(1.0, 1.0, 5, "landscape.points_2d")


def _trainer(model_cfg, steps=20):
  c = config_defaults.base_config()
  c.model.update(model_cfg)
  c.train.steps, c.train.batch_size, c.train.eval_batch_size = steps, 16, 32
  ds = tiny_dataset()
  trainer = Trainer(c, ds, create_model(c.model, ds.num_classes))
  state, _ = trainer.train_steps(trainer.init_state([0, 1]), [0, 1], steps)
  return trainer, state


def test_centre_is_the_trainers_eval_loss_and_fast_path_is_the_plain_one():
  trainer, state = _trainer({"name": "mlp", "widths": (12, 8),
                             "norm": "batch"})  # BN stats moved by training
  params = landscape.take_run(state["params"], 1)
  stats = landscape.take_run(state["batch_stats"], 1)
  dirs = landscape.filter_normalized_directions(jax.random.PRNGKey(3),
                                                params, 2)
  path = landscape.first_dense_path(trainer.model, params,
                                    trainer.dataset.input_shape, stats)
  assert path == ("Dense_0",)
  data = trainer.eval_data["train"]  # 96 examples in 3 padded chunks of 32
  ax = landscape.axis(-1.0, 1.0, 5, "a")
  coords = landscape.grid_points(ax, ax)
  plain = landscape.surface(landscape.surface_fn(
      trainer.model, trainer.loss_fn, has_batch_stats=True,
      points_per_chunk=7), params, stats, dirs, coords, data)
  fast = landscape.surface(landscape.surface_fn(
      trainer.model, trainer.loss_fn, has_batch_stats=True,
      points_per_chunk=4, dense_path=path), params, stats, dirs, coords, data)
  expected = trainer.evaluate(state, "train")
  centre = 12  # (0, 0) of the 5 x 5 grid
  np.testing.assert_allclose(plain["loss"][centre], expected["loss"][1],
                             rtol=1e-5)
  np.testing.assert_allclose(plain["accuracy"][centre],
                             expected["accuracy"][1], rtol=1e-6)
  np.testing.assert_allclose(fast["loss"], plain["loss"], rtol=2e-5)
  np.testing.assert_allclose(fast["accuracy"], plain["accuracy"], atol=1e-6)
  assert plain["loss"].max() > 2 * plain["loss"][centre]  # not flat
  # Brute force at a corner: the moved network through the plain model.
  moved = jax.tree.map(lambda p, d: p - d[0] + d[1], params, dirs)
  logits = jax.jit(trainer.model.apply, static_argnames="train")(
      {"params": moved, "batch_stats": stats}, trainer.dataset.train.x,
      train=False)
  brute = float(jnp.mean(LOSSES.get("cross_entropy")(
      logits, trainer.dataset.train.y)))
  np.testing.assert_allclose(fast["loss"][4], brute, rtol=1e-5)  # (-1, +1)


def test_conv_first_layer_has_no_fast_path():
  model = ConvBnDense()
  v = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                        jnp.zeros((1, 6, 6, 2))))
  assert landscape.first_dense_path(model, v["params"], (6, 6, 2),
                                    v["batch_stats"]) is None


def tiny_config(variant="batch_size"):
  return config_loading.load_config(
      f"configs/landscape.py:{variant},runlocal",
      {"model.name": "mlp", "model.widths": (16,), "data.train_size": 400,
       "landscape.num_examples": 128, "landscape.points_2d": 3,
       # 5 points on [-0.5, 1.5]: t = 0 and t = 1, the solutions, on it.
       # The slice: the centre and, within |a| <= 0.5, its neighbours.
       "landscape.points_1d": 5, "landscape.points_interp": 5,
       "epochs": 0.25, "seeds": 2}, root=str(ROOT))


def test_end_to_end_tiny_run(tmp_path):
  summary = run_in_process(tiny_config(), tmp_path / "run")
  for f in ("contours.png", "slices.png",
            "interpolation.png", "report.md", "summary.json"):
    assert (tmp_path / "run" / f).exists(), f
  saved = read_json(tmp_path / "run" / "summary.json")
  assert saved["compare"] == ["small_batch", "large_batch"]
  seeds = saved["seeds"]
  assert len(seeds) == 2
  for name, arm in saved["arms"].items():
    # Every seed's surface is centred on its own network: its train-subset
    # loss is what the trainer's final eval reported for that seed.
    assert arm["landscape_seeds"] == seeds
    assert len(arm["loss_at_centre"]["per_seed"]) == len(seeds)
    np.testing.assert_allclose(
        arm["loss_at_centre"]["per_seed"],
        arm["final"]["train"]["loss"]["per_seed"], rtol=1e-5, err_msg=name)
    assert arm["num_examples"] == 128 and arm["fast_dense"]
    with np.load(tmp_path / "run" / "arms" / name / "landscape.npz") as d:
      assert d["slice_loss"].shape == (2, 5)
      rise = d["slice_loss"][:, 1:4].mean(1) - d["slice_loss"][:, 2]
    np.testing.assert_allclose(arm["slice_mean_rise_half"]["per_seed"], rise,
                               rtol=1e-12)
    with np.load(tmp_path / "run" / "arms" / name / "landscape.npz") as d:
      assert d["surface_loss"].shape == (2, 3, 3)
      assert list(d["seeds"]) == seeds
      rise = d["surface_loss"].mean((1, 2)) - d["surface_loss"][:, 1, 1]
    np.testing.assert_allclose(arm["surface_mean_rise"]["per_seed"], rise,
                               rtol=1e-12)
  path = saved["interpolation"]["paths"][0]
  loss = np.asarray(path["loss"])
  assert loss.shape == (2, 5)  # 2 seed pairs x 5 points
  assert summary["axes"]["interpolation"] == [-0.5, 1.5, 5]
  # The barrier is measured from the solutions, t = 0 and 1 (points 1, 3).
  np.testing.assert_allclose(
      path["loss_barrier"]["per_seed"],
      loss[:, 1:4].max(1) - np.maximum(loss[:, 1], loss[:, 3]), rtol=1e-6)
  page = (tmp_path / "run" / "report.md").read_text()
  arms = saved["arms"]
  row = next(l for l in page.splitlines()
             if l.startswith("| 2-D surface: mean rise"))
  large, small = (report.fmt(arms[n]["surface_mean_rise"], 1.0, 4, n=False)
                  for n in ("large_batch", "small_batch"))
  assert (f"| large_batch {large}, small_batch {small} (n=2) |") in row
  # Two seeds: decided by the paired rule, never "one seed: not testable".
  assert ("| agrees | large_batch − small_batch per seed" in row
          or "| differs | large_batch − small_batch per seed" in row), row
  assert "every seed's network" in page
  # The page shape, and report_cli rebuilds it from summary.json and the
  # arms' landscape.npz.
  assert_report_rebuilds(tmp_path / "run")
  # A workdir written before every seed was measured: the first seed's
  # numbers as plain floats, landscape.npz without a seed axis. report_cli
  # still rebuilds it, as one seed (not testable), as it was measured.
  old = tmp_path / "old"
  shutil.copytree(tmp_path / "run", old)
  for name, arm in saved["arms"].items():
    for k, v in arm.items():
      if isinstance(v, dict) and "per_seed" in v and k != "final":
        arm[k] = v["per_seed"][0]
    del arm["landscape_seeds"]
    npz = old / "arms" / name / "landscape.npz"
    with np.load(npz) as d:
      arrays = {k: d[k][0] if k in ("slice_loss", "slice_accuracy",
                                    "surface_loss", "surface_accuracy")
                else d[k] for k in d.files if k != "seeds"}
    np.savez(npz, **arrays)
  (old / "summary.json").write_text(json.dumps(saved))
  report_cli.rebuild_run(str(old))
  text = (old / "report.md").read_text()
  row = next(l for l in text.splitlines()
             if l.startswith("| 2-D surface: mean rise"))
  assert (f"large_batch {arms['large_batch']['surface_mean_rise']:.4f}, "
          f"small_batch {arms['small_batch']['surface_mean_rise']:.4f} (n=1)"
          f" | not testable here | {compare.ONE_SEED} |") in row
  assert "first seed's network" in text and "one draw of two" in text
  # Surfaces a large lr leaves (a loss of 3e8, where float32's min + 10 is
  # min) or a diverged point (NaN) made matplotlib's contour raise after
  # training: drawn without contour lines where none can be drawn.
  for name, fill in zip(saved["arms"], (3.4e8, np.nan)):
    npz = old / "arms" / name / "landscape.npz"
    with np.load(npz) as d:
      arrays = dict(d)
    arrays["surface_loss"] = np.full_like(arrays["surface_loss"], fill)
    arrays["surface_loss"][1, 1] = 3.4e8 + 16  # float32's next value
    np.savez(npz, **arrays)
  report_cli.rebuild_run(str(old))


def test_every_seeds_surface_is_its_own_networks():
  """Run r's slice and surface (`surfaces`, fast path, one program reused
  over runs) against a direct plain-path surface of take_run(params, r)
  along directions drawn from landscape.seed folded with r; and the
  flatness numbers against numpy on those direct surfaces."""
  from jaxunknowns.implicit import landscape as experiment  # pylint: disable=g-import-not-at-top
  trainer, state = _trainer({"name": "mlp", "widths": (12, 8),
                             "norm": "batch"})
  config = tiny_config()
  config.landscape.seed = 7
  ax = landscape.axis(-1.0, 1.0, 3, "a")
  grid = {"slice": landscape.axis(-1.0, 1.0, 5, "a"), "surface": ax}
  out = experiment.surfaces(trainer, state, config, grid)
  assert out["runs"] == [0, 1] and out["fast_dense"]
  assert out["slice_loss"].shape == (2, 5)
  assert out["surface_loss"].shape == (2, 3, 3)
  plain = landscape.surface_fn(trainer.model, trainer.loss_fn,
                               has_batch_stats=True, points_per_chunk=5)
  data = trainer.eval_data["train"]
  rises = []
  for r in (0, 1):
    params = landscape.take_run(state["params"], r)
    stats = landscape.take_run(state["batch_stats"], r)
    dirs = landscape.filter_normalized_directions(
        jax.random.fold_in(jax.random.PRNGKey(7), r), params, 2)
    s = landscape.surface(plain, params, stats,
                          jax.tree.map(lambda d: d[:1], dirs),
                          grid["slice"][:, None], data)
    g = landscape.surface(plain, params, stats, dirs,
                          landscape.grid_points(ax, ax), data)
    np.testing.assert_allclose(out["slice_loss"][r], s["loss"], rtol=2e-5)
    np.testing.assert_allclose(out["surface_loss"][r].ravel(), g["loss"],
                               rtol=2e-5)
    rises.append(g["loss"].mean() - g["loss"][4])
  # Different networks along different directions: different slices.
  assert not np.allclose(out["slice_loss"][0], out["slice_loss"][1])
  flat = experiment.flatness(grid, out)
  np.testing.assert_allclose(flat["surface_mean_rise"]["per_seed"], rises,
                             rtol=1e-4)
  assert flat["surface_mean_rise"]["std"] > 0


def test_flatness_centre_is_where_the_axes_are_zero():
  """The trained network sits at a = b = 0, which is not the middle index
  of an even number of points or an asymmetric range: on the bowl a² + b²
  its loss at the centre is 0 and every rise is the bowl's mean."""
  from jaxunknowns.implicit import landscape as experiment  # pylint: disable=g-import-not-at-top
  a = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 1.5])  # 0 at index 2 of 6
  b = np.array([-0.5, 0.0, 0.5, 1.0])             # 0 at index 1 of 4
  bowl = a[:, None] ** 2 + b[None, :] ** 2
  out = {"slice_loss": [a ** 2], "surface_loss": [bowl],
         "surface_accuracy": [1.0 - bowl]}
  flat = experiment.flatness({"slice": a, "surface": a, "surface_b": b}, out)
  assert flat["loss_at_centre"]["mean"] == 0.0
  assert flat["accuracy_at_centre"]["mean"] == 1.0
  np.testing.assert_allclose(flat["surface_mean_rise"]["mean"], bowl.mean())


def test_path_pca_matches_numpy_svd():
  """Li et al.'s PCA of a path (rows θ_i − θ_n, centred), from the Gram
  matrix, against numpy's SVD of the n × P matrix; the coordinates are the
  uncentred rows projected; `captured_variance` of any plane against an
  explicit least-squares projection."""
  rng = np.random.default_rng(3)
  steps = rng.normal(size=(9, 300)) * np.linspace(2.0, 0.05, 300)
  path = np.cumsum(steps, 0)
  out = landscape.path_pca(path)
  m = path[:-1] - path[-1]
  _, s, vt = np.linalg.svd(m - m.mean(0), full_matrices=False)
  np.testing.assert_allclose(out["explained"], s**2 / np.sum(s**2), atol=1e-12)
  signs = np.sign(np.sum(out["directions"] * vt[:2], axis=1))
  np.testing.assert_allclose(out["directions"] * signs[:, None], vt[:2],
                             atol=1e-9)
  np.testing.assert_allclose(out["coords"] * signs, (path - path[-1]) @ vt[:2].T,
                             atol=1e-9)
  assert np.allclose(out["coords"][-1], 0)
  np.testing.assert_allclose(
      landscape.captured_variance(path, out["directions"]),
      out["explained"][:2].sum(), rtol=1e-10)
  plane = rng.normal(size=(2, 300))
  centred = m - m.mean(0)
  fit = plane.T @ np.linalg.lstsq(plane.T, centred.T, rcond=None)[0]
  np.testing.assert_allclose(landscape.captured_variance(path, plane),
                             np.sum(fit**2) / np.sum(centred**2), rtol=1e-8)


def test_trajectory_variant_end_to_end(tmp_path):
  config = tiny_config("trajectory")
  config.landscape.path_points, config.epochs = 4, 2.0
  run_in_process(config, tmp_path / "run")
  saved = read_json(tmp_path / "run" / "summary.json")
  assert saved["directions"] == "pca"
  for name, arm in saved["arms"].items():
    p = arm["path"]
    steps = arm["steps"]
    assert p["steps"] == sorted({round(t) for t in np.linspace(0, steps, 4)})
    assert np.asarray(p["coords"]).shape == (len(p["steps"]), 2)
    assert np.allclose(p["coords"][-1], 0)  # the trained network: the origin
    assert len(p["explained_top2"]["per_seed"]) == config.seeds
    assert 0 < p["random_captured"]["mean"] < p["explained_top2"]["mean"] <= 1
    # The surface spans the path: its largest first coordinate, +10%.
    hi = 1.1 * np.abs(np.asarray(p["coords"])[:, 0]).max()
    np.testing.assert_allclose(p["axes"]["surface"][:2], [-hi, hi], rtol=1e-6)
    # The surface is the first seed's only, on its own path's plane: n = 1.
    assert arm["landscape_seeds"] == saved["seeds"][:1]
    assert len(arm["surface_mean_rise"]["per_seed"]) == 1
  report = (tmp_path / "run" / "report.md").read_text()
  assert "path variance on the top two PCA directions" in report
  assert "landscapes of the first seed's network" in report
  assert_report_rebuilds(tmp_path / "run")


def _cli(tmp_path, config, *flags):
  workdir = tmp_path / "w"
  proc = subprocess.run(
      [sys.executable, "-m", "jaxunknowns.main", f"--config={config}",
       f"--workdir={workdir}", *flags], cwd=ROOT, env=ENV,
      capture_output=True, text=True, timeout=300)
  return proc, workdir


@pytest.mark.parametrize("flags, message", [
    (("--config.landscape.points_2d=0",), "no points"),
    (("--config.landscape.points_2d=1",), "landscape.points_2d=1"),
    # The slice's rise is read over |a| <= 0.5 beside the centre: one point
    # read 0 for every seed (and a false reason in the report), three on
    # [-1, 1] leave the centre alone in that window.
    (("--config.landscape.points_1d=1",), "landscape.points_1d=1"),
    (("--config.landscape.points_1d=3",), "landscape.points_1d=3"),
    # Each arm evaluates the training set as landscape.num_examples and
    # examples_per_chunk say: these were recorded, never used.
    (("--config.train.max_train_eval=50",), "train.max_train_eval=50 is unused"),
    (("--config.train.eval_train=False",), "train.eval_train=False is unused"),
    (("--config.compare=('small_batch','huge_batch')",),
     "unknown arm 'huge_batch'"),
    (("--config.landscape.path_points=5",), "only for landscape.directions"),
    (("--config.landscape.directions=pcb",), "random or pca"),
    (("--config.landscape.directions=pca", "--config.landscape.path_points=50"),
     "too few for landscape.path_points=50"),
    # The barrier reads the solutions at t = 0 and 1: 2 points on [-0.5, 1.5]
    # crashed (none inside [0, 1]), 4 took t = 1/6 and 5/6 as the solutions.
    (("--config.landscape.points_interp=2",), "holds t = 0 and t = 1"),
    (("--config.landscape.points_interp=4",), "holds t = 0 and t = 1"),
    # soudry2d's 16 points: the trainer's 'train.batch_size=64 is larger'
    # sent the user to train.batch_size, refused as unused (each arm sets
    # its own); the error names the arm's field.
    (("--config.data.name=soudry2d", "--config.data.train_size=0"),
     "arm small_batch: train.batch_size=64 is larger than the training set "
     "(16 examples): lower arms.small_batch.train.batch_size to at most 16"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, flags, message):
  proc, workdir = _cli(tmp_path, "configs/landscape.py:batch_size,runlocal",
                       *flags)
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(lines) == 1 and message in lines[0], proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  assert not workdir.exists()


def test_unknown_variant_is_one_line(tmp_path):
  proc, workdir = _cli(tmp_path, "configs/landscape.py:no_such_variant")
  assert proc.returncode == 2
  assert "unknown variant 'no_such_variant'" in proc.stderr
  assert "Traceback" not in proc.stderr and not workdir.exists()


def test_a_rise_at_or_below_zero_is_not_compared():
  """An arm whose loss falls away from its trained point (mean rise <= 0: no
  minimum along the directions) has no flatness to compare: that row is
  'not testable here', never a ratio of a negative rise (a skip,runlocal run
  once gave 'the 1-D slice's mean rise is 4e29x as large'). A summary
  from before every seed was measured (one network per arm, plain floats)
  leaves positive rises not testable either: one value has no seed spread
  to judge a difference by (they were 'agrees' by '> 2 × seed std (0.00)').
  Measured on two seeds, they are decided per seed (paired_greater)."""
  from jaxunknowns.implicit import landscape_report  # pylint: disable=g-import-not-at-top
  from jaxunknowns.report import NOT_TESTABLE, compare  # pylint: disable=g-import-not-at-top
  config = config_loading.load_config(
      "configs/landscape.py:skip,runlocal", root=str(ROOT))
  arm = lambda slice_rise, surface_rise: {
      "slice_mean_rise_half": slice_rise, "surface_mean_rise": surface_rise}
  summary = {"compare": ["skip", "noskip"], "seeds": [0, 1],
             "arms": {"skip": arm(-0.57, 20.2), "noskip": arm(0.43, 21.8)},
             "interpolation": {"mode": "seeds", "paths": []}}
  rows = landscape_report.comparisons(summary, config)
  assert [c.verdict for c in rows] == [NOT_TESTABLE, NOT_TESTABLE]
  assert rows[0].reasons == ("the rise is ≤ 0 for skip: no minimum along "
                             "these directions",)
  assert rows[1].reasons == (compare.ONE_SEED,)
  assert "noskip 21.8000, skip 20.2000 (n=1)" == rows[1].ours
  two = lambda *v: {"mean": float(np.mean(v)), "per_seed": list(v)}
  summary["arms"] = {"skip": arm(two(0.1, 0.3), two(1.0, 3.0)),
                     "noskip": arm(two(0.4, 0.5), two(1.5, 2.0))}
  rows = landscape_report.comparisons(summary, config)
  # Slice: noskip − skip per seed +0.3, +0.2 (2 × std 0.14): agrees, where
  # unpaired means (gap 0.25 ≤ 2 × skip's std 0.28) would not. Surface:
  # +0.5, −1.0 (mean −0.25, 2 × std 2.12): the seeds cannot tell.
  assert [c.verdict for c in rows] == ["agrees", NOT_TESTABLE], rows
  assert rows[1].reasons == (compare.SPREAD,)
  # Surface −1.0, −1.1 per seed (2 × std 0.14): noskip flatter, differs.
  summary["arms"]["noskip"] = arm(two(0.4, 0.5), two(0.0, 1.9))
  rows = landscape_report.comparisons(summary, config)
  assert [c.verdict for c in rows] == ["agrees", "differs"], rows
  assert rows[0].rule == "noskip − skip per seed = +0.25, > 2 × its std (0.14)"
  assert rows[0].ours == "noskip 0.4500 ± 0.0707, skip 0.2000 ± 0.1414 (n=2)"
  # A mean rise of exactly 0 is no minimum either (≤ 0, not < 0).
  summary["arms"]["skip"] = arm(two(-0.5, 0.5), two(1.0, 3.0))
  rows = landscape_report.comparisons(summary, config)
  assert rows[0].verdict == NOT_TESTABLE and rows[0].reasons == (
      "the rise is ≤ 0 for skip: no minimum along these directions",), rows
  # A pair of arms no paper speaks of: no comparison.
  summary["compare"] = ["noskip", "skip"]
  assert landscape_report.comparisons(summary, config) == []


def test_interpolation_row_reads_each_arms_own_end():
  """Keskar et al.'s Fig. 3: on the line from the small-batch minimum (t =
  0) to the large-batch one (t = 1), the loss rises more steeply past the
  large-batch end (t > 1) than past the small-batch end (t < 0). Hand-made
  rises, per seed: past t = 1: 1.0, 1.2; past t = 0: 0.1, 0.2, so large −
  small = +0.9, +1.0 (2 × std 0.14): agrees."""
  from jaxunknowns.implicit import landscape_report  # pylint: disable=g-import-not-at-top
  config = config_loading.load_config(
      "configs/landscape.py:batch_size,runlocal", root=str(ROOT))
  two = lambda *v: {"mean": float(np.mean(v)), "per_seed": list(v)}
  arm = lambda r: {"slice_mean_rise_half": r, "surface_mean_rise": r}
  summary = {"compare": ["small_batch", "large_batch"], "seeds": [0, 1],
             "arms": {"small_batch": arm(two(0.1, 0.2)),
                      "large_batch": arm(two(1.0, 1.2))},
             "interpolation": {"mode": "arms", "alphas": [-0.5, 1.5],
                               "paths": [{"rise_beyond_a": two(0.1, 0.2),
                                          "rise_beyond_b": two(1.0, 1.2)}]}}
  rows = landscape_report.comparisons(summary, config)
  row, = [c for c in rows if c.quantity.startswith("interpolation")]
  assert row.verdict == "agrees", row
  assert row.ours == ("large_batch 1.1000 ± 0.1414, small_batch 0.1500 ± "
                      "0.0707 (n=2)"), row.ours


def test_a_path_of_three_iterates_decides_nothing():
  """n iterates span at most n − 1 directions: on 3, the top two PCA
  directions hold 100% of the path's variance whatever training did, which
  read 'agrees' with Li et al.'s 40–90%."""
  from jaxunknowns.implicit import landscape_report as lr  # pylint: disable=g-import-not-at-top
  stat = lambda v: {"mean": v, "per_seed": [v, v]}
  arm = lambda steps: {"path": {"steps": list(range(steps)),
                                "explained_top2": stat(1.0),
                                "random_captured": stat(0.01)}}
  config = tiny_config("trajectory")
  rows = {steps: lr.trajectory({"a": arm(steps)}, config)[0]
          for steps in (3, 4)}
  assert rows[3].verdict == "not testable here"
  assert rows[3].reasons == ("3 iterates: two directions hold all of their "
                             "variance",)
  assert rows[4].verdict == "agrees"
