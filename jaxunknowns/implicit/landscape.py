"""`landscape`: filter-normalized loss landscapes of trained networks
(Li, Xu, Taylor, Studer & Goldstein 2018), for each arm of a comparison.

What runs. For each arm of `compare` (see landscape_arms.py: small vs large
batch, with vs without BN, with vs without skip connections), `seeds`
networks train at once, resumably (arms/NAME/checkpoints). Then, for every
seed's network theta of each arm, with two filter-normalized random
directions d1, d2 of its own (analysis/landscape.py; zero on biases and BN
parameters; drawn from `direction_key`, so seed i of both arms starts from
the same Gaussian draw):

* a 1-D slice: theta + a d1 for a on `landscape.range_1d`;
* a 2-D surface: theta + a d1 + b d2 on `landscape.range_2d`^2
  (`points_2d` x `points_2d`, 51 x 51 by default), every point in one
  compiled program (analysis/landscape.surface_fn, with the fast first-layer
  path for dense-first networks);
* linear interpolation (1 - t) A + t B on `landscape.range_interp`, reusing
  analysis/interpolation.evaluate_path: between the first two seeds of each
  arm (`interpolation = "seeds"`), or between the two arms' networks seed by
  seed (`"arms"`, Keskar et al.'s small-to-large-batch plot).

With `landscape.directions = "pca"` (Li et al. 2018, Sec. 7, Fig. 9: a
trajectory landscape) the plane is instead the top two principal directions
of each run's optimization path: its parameters at `landscape.path_points`
evenly spaced steps are kept (arms/NAME/path, resumable snapshots), PCA'd
(analysis/landscape.path_pca), and the slice and surface are drawn on that
plane around the trained network, the axes `range_1d`/`range_2d` in units of
the path's largest coordinate on each direction, with the path projected on
it. Every run's explained variance is kept, and beside it the share two
filter-normalized random directions capture (why random planes miss paths).
The slice and surface are drawn for the first seed only: each seed's plane
is its own path's, its axes in its own path's units, so the flatness
numbers on it are neither comparable across seeds nor across arms (the
report compares none of them; `flatness` then has n = 1).

Loss and accuracy are in eval mode (BatchNorm running statistics, which the
directions do not move; interpolation moves them linearly) on the first
`landscape.num_examples` training examples (0 = all). The grids are kept in
arms/NAME/landscape.npz (slice and surface arrays with a leading axis over
the measured seeds, `seeds`); summary.json (the flatness numbers as {mean,
std, per_seed} over those seeds), report.md and PNGs (contours, slices,
interpolation) are written at the end.
"""

import time
from typing import Any, Dict

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from absl import logging

from jaxunknowns import distributed, experiments, paths, prng, validation
from jaxunknowns.analysis import interpolation
from jaxunknowns.analysis import landscape as landscape_lib
from jaxunknowns.errors import UserError
from jaxunknowns import runs
from jaxunknowns.implicit import landscape_arms
from jaxunknowns.metrics import MetricWriter, stats
from jaxunknowns.models import layers

INTERPOLATIONS = ("seeds", "arms", "none")
DIRECTIONS = ("random", "pca")
PATH_MARGIN = 1.1  # A "pca" surface spans the path's largest coordinate +10%.


def axes(config) -> Dict[str, np.ndarray]:
  """The three coordinate axes; UserError on an empty grid."""
  l = config.landscape
  return {
      "slice": landscape_lib.axis(*l.range_1d, l.points_1d,
                                  "landscape.points_1d"),
      "surface": landscape_lib.axis(*l.range_2d, l.points_2d,
                                    "landscape.points_2d"),
      "interpolation": landscape_lib.axis(*l.range_interp, l.points_interp,
                                          "landscape.points_interp"),
  }


# The most points of a grid: each axis is built here, and each point is a
# loss over landscape.num_examples (the surface: points_2d squared). 1e9
# ran out of memory as validate built the axis, blamed on the seeds or the
# batch size. Far above the configs' (51 x 51, 41).
MAX_POINTS = {"points_1d": 10001, "points_2d": 1001, "points_interp": 10001}


def validate(config):
  validation.validate_base(config)
  landscape_arms.validate_arms(config)
  check = validation.check
  l = config.landscape
  for field in ("range_1d", "range_2d", "range_interp"):
    check(len(tuple(l[field])) == 2, f"landscape.{field}", tuple(l[field]),
          "a pair (lo, hi)")
  for field, most in MAX_POINTS.items():  # before `axes` builds them
    check(not validation.is_int(l[field]) or l[field] <= most,
          f"landscape.{field}", l[field], f"at most {most} points")
  grid = axes(config)
  validation.check_int(l.points_2d, "landscape.points_2d", 2,
                       "a surface of one point has no contours to draw")
  # The slice's rise is its mean over |a| <= 0.5 (in the axes' units) less
  # its value at the trained network (`flatness`): with no other point
  # there it read 0 (one point) or NaN (none in the window).
  a = grid["slice"]
  check(np.sum(np.abs(a) <= 0.5 + 1e-9) >= 2 and
        np.abs(a[np.argmin(np.abs(a))]) <= 0.5 + 1e-9, "landscape.points_1d",
        l.points_1d, f"a slice grid on range_1d={tuple(l.range_1d)} with a "
        "point beside the centre within |a| <= 0.5, where the rise is read")
  # Every arm evaluates the training set as the landscape fields say
  # (build_arms): these fields would be recorded, never used.
  for field, by in (
      ("eval_train", "each evaluates its training set, on "
       "landscape.num_examples examples"),
      ("max_train_eval", "landscape.num_examples sets it"),
      ("eval_batch_size", "landscape.examples_per_chunk sets it")):
    validation.check_applies(config, f"train.{field}", False, f"to no arm: {by}")
  check(l.interpolation in INTERPOLATIONS, "landscape.interpolation",
        l.interpolation, " or ".join(INTERPOLATIONS))
  if l.interpolation == "seeds":
    check(config.seeds >= 2, "seeds", config.seeds,
          ">= 2 for landscape.interpolation='seeds' (two solutions)")
  if l.interpolation == "arms":
    n = len(landscape_arms.arm_names(config))
    check(n == 2, "compare", config.compare,
          "exactly two arms for landscape.interpolation='arms'")
  for field in ("points_interp", "range_interp"):
    validation.check_applies(config, f"landscape.{field}",
                             l.interpolation != "none",
                             "only with landscape.interpolation 'seeds' or "
                             "'arms'")
  if l.interpolation != "none":
    # path_numbers reads the two solutions at the grid's t = 0 and t = 1:
    # off the grid it took the nearest points (points_interp=2: t = -0.5
    # and 1.5) as the endpoints, and crashed with none inside [0, 1].
    t = axes(config)["interpolation"]
    check(all(np.isclose(t, end, atol=1e-6).any() for end in (0.0, 1.0)),
          "landscape.points_interp", l.points_interp,
          f"a grid on landscape.range_interp={tuple(l.range_interp)} that "
          "holds t = 0 and t = 1 (the two solutions)")
  check(l.directions in DIRECTIONS, "landscape.directions", l.directions,
        " or ".join(DIRECTIONS))
  if l.directions == "pca":
    validation.check_int(l.path_points, "landscape.path_points", 4,
                         "iterates of the path for landscape.directions="
                         "'pca'; two components of the centred differences "
                         "need four")
  else:
    check(l.path_points == 0, "landscape.path_points", l.path_points,
          "0: the path is kept only for landscape.directions='pca'")
  validation.check_int(l.points_per_chunk, "landscape.points_per_chunk", 1)
  validation.check_int(l.num_examples, "landscape.num_examples", 0, "0 = all")
  validation.check_int(l.examples_per_chunk, "landscape.examples_per_chunk", 1)


def build_arms(config) -> Dict[str, Any]:
  """{arm: trainer}; every dataset and model is built here (bad input fails
  before the workdir is touched)."""
  trainers = {}
  for name, c, ds in landscape_arms.arms_with_data(config):
    c.train.eval_train = True
    c.train.max_train_eval = config.landscape.num_examples
    c.train.eval_batch_size = config.landscape.examples_per_chunk
    trainers[name] = runs.build_trainer(c, dataset=ds)
    if len(path_steps(config, c.train.steps)) not in (0, config.landscape.path_points):
      raise UserError(
          f"arm {name} trains {c.train.steps} steps, too few for "
          f"landscape.path_points={config.landscape.path_points} distinct "
          "iterates; train longer (epochs) or lower path_points")
  if config.landscape.interpolation == "arms":
    a, b = (jax.tree.map(np.shape, t.params_template)
            for t in trainers.values())
    if a != b:
      raise UserError("landscape.interpolation='arms' needs the two arms to "
                      "have the same parameters (same architecture); use "
                      "'seeds' or 'none'")
  return trainers


def path_steps(config, steps: int):
  """The steps whose iterates make the path ('pca'): 0 … the end, evenly."""
  n = config.landscape.path_points
  return sorted({int(round(t)) for t in np.linspace(0, steps, n)}) if n else []


def train_arm(trainer, name, seeds, writer, workdir, config):
  steps = trainer.config.train.steps
  return trainer.fit(
      trainer.init_state(seeds), steps=steps, data_seeds=seeds, writer=writer,
      run_labels=[{"arm": name, "seed": s} for s in seeds],
      checkpoint_dir=workdir.file("arms", name, "checkpoints"),
      snapshot_dir=workdir.file("arms", name, "path"),
      snapshot_steps=path_steps(config, steps), description=name)


def flat_runs(params) -> np.ndarray:
  """[R, P]: each run's parameters as one vector (ravel_pytree's order)."""
  return np.stack([np.asarray(ravel_pytree(landscape_lib.take_run(params, r))[0])
                   for r in range(jax.tree.leaves(params)[0].shape[0])])


def path_plane(trainer, state, config, directory):
  """Per run: PCA of its path (explained variance, coordinates) and the
  variance two random filter-normalized directions capture (drawn per run
  as for the random-direction landscapes: `direction_key`); the plane of
  run 0 as direction trees [2, ...] and its two axes."""
  l, steps = config.landscape, trainer.config.train.steps
  path = np.stack([flat_runs(trainer.restore_snapshot(directory, t, state)[
      "params"]) for t in path_steps(config, steps)], 1)  # [R, n, P]
  pcas, random = [], []
  for r, runs_path in enumerate(path):
    params = landscape_lib.take_run(state["params"], r)
    pcas.append(landscape_lib.path_pca(runs_path))
    rand = landscape_lib.filter_normalized_directions(
        direction_key(config, r), params, 2)
    random.append(landscape_lib.captured_variance(runs_path, flat_runs(rand)))
  unravel = ravel_pytree(landscape_lib.take_run(state["params"], 0))[1]
  dirs = jax.tree.map(lambda *d: jnp.stack(d), *[
      unravel(jnp.asarray(d, jnp.float32)) for d in pcas[0]["directions"]])
  reach = PATH_MARGIN * np.abs(pcas[0]["coords"]).max(0)
  axes_ = [landscape_lib.axis(*(reach[i] * np.asarray(rng)), num, field)
           for i, (rng, num, field) in enumerate((
               (l.range_2d, l.points_2d, "landscape.points_2d"),) * 2)]
  slice_axis = landscape_lib.axis(*(reach[0] * np.asarray(l.range_1d)),
                                  l.points_1d, "landscape.points_1d")
  summary = {
      "steps": path_steps(config, steps),
      "explained": [stats([p["explained"][i] for p in pcas]) for i in (0, 1)],
      "explained_top2": stats([p["explained"][:2].sum() for p in pcas]),
      "random_captured": stats(random), "unit": float(reach[0]),
      "coords": pcas[0]["coords"].tolist()}
  return dirs, {"slice": slice_axis, "surface": axes_[0],
                "surface_b": axes_[1]}, summary


def direction_key(config, r: int):
  """The key of run r's two random directions: landscape.seed folded with
  the run's index. Each network needs directions of its own anyway (filter
  normalization scales them to its own filters); drawing them per seed puts
  the draw's chance into the seed spread the comparison judges by, and run
  r of every arm starts from the same Gaussian draw (same parameter shapes),
  so the arms' paired difference at seed r is not one of draws."""
  return jax.random.fold_in(prng.key(config.landscape.seed), r)


def surfaces(trainer, state, config, grid, dirs=None) -> Dict[str, Any]:
  """Slice and 2-D surface of every run of `state`, each along two
  filter-normalized random directions of its own (`direction_key`), or of
  run 0 only along `dirs` (its "pca" plane: see the module docstring). The
  arrays have a leading axis over the measured `runs`; the seconds are
  their sums."""
  l = config.landscape
  count = jax.tree.leaves(state["params"])[0].shape[0]
  runs_ = [0] if dirs is not None else list(range(count))
  take = lambda r: tuple(landscape_lib.take_run(state[k], r)
                         for k in ("params", "batch_stats"))
  params, stats_ = take(0)
  # The fast path's layer is structural, the same for every run.
  dense = (landscape_lib.first_dense_path(
      trainer.model, params, trainer.dataset.input_shape, stats_)
           if l.fast_dense else None)
  # One program for every run (same shapes, one compile each for the slice
  # and the surface); runs go one after another rather than vmapped, which
  # would hold every run's points x examples activations at once.
  fn = landscape_lib.surface_fn(trainer.model, trainer.loss_fn,
                                has_batch_stats=trainer.has_batch_stats,
                                points_per_chunk=l.points_per_chunk,
                                dense_path=dense)
  data = trainer.eval_data["train"]
  b = grid.get("surface_b", grid["surface"])
  coords = landscape_lib.grid_points(grid["surface"], b)
  shape = (len(grid["surface"]), len(b))
  out = {"runs": runs_, "slice_seconds": 0.0, "surface_seconds": 0.0}
  for r in runs_:
    params, stats_ = take(r)
    d = dirs if dirs is not None else (
        landscape_lib.filter_normalized_directions(direction_key(config, r),
                                                   params, 2))
    t0 = time.time()
    s = landscape_lib.surface(fn, params, stats_,
                              jax.tree.map(lambda x: x[:1], d),
                              grid["slice"][:, None], data)
    t1 = time.time()
    g = landscape_lib.surface(fn, params, stats_, d, coords, data)
    out["slice_seconds"] += t1 - t0
    out["surface_seconds"] += time.time() - t1
    for key, v in (("slice_loss", s["loss"]), ("slice_accuracy", s["accuracy"]),
                   ("surface_loss", g["loss"].reshape(shape)),
                   ("surface_accuracy", g["accuracy"].reshape(shape))):
      out.setdefault(key, []).append(v)
  return {**out, **{k: np.stack(v) for k, v in out.items()
                    if isinstance(v, list) and k != "runs"},
          "fast_dense": dense is not None,
          "num_examples": int(distributed.device_get(data[2]).sum())}


def flatness(grid, out, unit: float = 1.0) -> Dict[str, Dict[str, Any]]:
  """Numbers for the table, each {mean, std, per_seed} over the measured
  runs: the loss at the centre and how fast it rises (on a "pca" plane in
  the path's units, so not comparable across arms)."""
  a = grid["slice"]
  half = np.abs(a) <= (0.5 + 1e-9) * unit  # unit: the axes' scale ("pca")
  per_run = []
  for sl, loss, acc in zip(out["slice_loss"], out["surface_loss"],
                           out["surface_accuracy"]):
    # The trained network sits where both axes are 0 (the grid point
    # nearest it where 0 is not on the grid): the middle index only for an
    # odd number of points on a symmetric range.
    mid = tuple(int(np.argmin(np.abs(x))) for x in (
        grid["surface"], grid.get("surface_b", grid["surface"])))
    centre = float(loss[mid])
    per_run.append({
        "loss_at_centre": centre, "surface_min": float(loss.min()),
        "surface_max": float(loss.max()),
        "surface_mean_rise": float(loss.mean() - centre),
        "slice_mean_rise_half": float(sl[half].mean() -
                                      sl[np.argmin(np.abs(a))]),
        "accuracy_at_centre": float(acc[mid])})
  return {k: stats([p[k] for p in per_run]) for k in per_run[0]}


def _runs(state, idx):
  return {k: jax.tree.map(lambda x: x[np.asarray(idx)], state[k])
          for k in ("params", "batch_stats")}


def run(config, workdir):
  grid = axes(config)
  trainers = build_arms(config)
  names = list(trainers)
  workdir.open()
  writer = MetricWriter(workdir.path)
  seeds = runs.seeds_of(config)
  t_start = time.time()
  states, arms = {}, {}
  for name in names:
    trainer = trainers[name]
    result = train_arm(trainer, name, seeds, writer, workdir, config)
    states[name] = result.state
    plane, axes_, path = grid, {}, None
    if config.landscape.directions == "pca":
      dirs, axes_, path = path_plane(trainer, result.state, config,
                                     workdir.file("arms", name, "path"))
      plane = {**grid, **axes_}
    out = surfaces(trainer, result.state, config, plane,
                   dirs if path else None)
    paths.makedirs(workdir.file("arms", name))
    paths.save_npz(workdir.file("arms", name, "landscape.npz"), compressed=False,
                   slice_axis=plane["slice"], surface_axis=plane["surface"],
                   **({"surface_axis_b": plane["surface_b"],
                       "path_coords": np.asarray(path["coords"])} if path else {}),
                   seeds=np.asarray([seeds[r] for r in out["runs"]]),
                   **{k: v for k, v in out.items() if isinstance(v, np.ndarray)})
    arms[name] = {
        "overrides": config.arms[name].to_dict(),
        "steps": trainer.config.train.steps,
        "batch_size": trainer.config.train.batch_size,
        "final": runs.eval_stats(result.evals),
        "train_seconds": result.wall_time,
        "fast_dense": out["fast_dense"],
        "num_examples": out["num_examples"],
        "surface_seconds": out["surface_seconds"],
        "slice_seconds": out["slice_seconds"],
        "landscape_seeds": [seeds[r] for r in out["runs"]],
        **flatness(plane, out, path["unit"] if path else 1.0),
        "slice_loss": out["slice_loss"].tolist(),
        **({"path": {**path, "axes": {k: [float(v[0]), float(v[-1]), len(v)]
                                      for k, v in axes_.items()}}}
           if path else {}),
    }
    logging.info("[%s] surfaces %dx%d in %.1f s: loss at centre %.4f, max "
                 "%.4f (means over seeds)",
                 name, len(grid["surface"]), len(grid["surface"]),
                 out["surface_seconds"], arms[name]["loss_at_centre"]["mean"],
                 arms[name]["surface_max"]["mean"])
  interp = interpolate(config, trainers, states, grid["interpolation"])
  writer.close()
  summary = {
      "experiment": "landscape", "dataset": config.data.name,
      "compare": names, "seeds": seeds,
      "directions": config.landscape.directions,
      "axes": {k: [float(v[0]), float(v[-1]), len(v)] for k, v in grid.items()},
      "slice_axis": grid["slice"].tolist(),
      "arms": arms, "interpolation": interp,
      "wall_time_s": time.time() - t_start,
      "machine": runs.machine_info(),
  }
  experiments.finish("landscape", workdir, config, summary)
  return summary


def interpolate(config, trainers, states, alphas) -> Dict[str, Any]:
  """Loss and error along (1 - t) A + t B on the landscape's training subset."""
  mode = config.landscape.interpolation
  pairs = []
  if mode == "seeds":
    for name in trainers:
      pairs.append((name, f"{name}: seed {config.seed} -> seed {config.seed + 1}",
                    _runs(states[name], [0]), _runs(states[name], [1])))
  elif mode == "arms":
    a, b = list(trainers)
    pairs.append((a, f"{a} -> {b}", _runs(states[a], range(config.seeds)),
                  _runs(states[b], range(config.seeds))))
  out = {"mode": mode, "alphas": alphas.tolist(), "paths": []}
  for trainer_name, label, sa, sb in pairs:
    try:
      path = interpolation.evaluate_path(trainers[trainer_name], sa, sb,
                                         split="train", alphas=alphas)
    except ValueError as e:  # e.g. two arms with different architectures
      raise UserError(f"landscape.interpolation={mode!r}: {e}") from e
    out["paths"].append({"label": label, "loss": path["loss"].tolist(),
                         "error": path["error"].tolist(),
                         **path_numbers(alphas, path["loss"])})
  return out


def path_numbers(alphas, loss) -> Dict[str, Any]:
  """Per pair: the barrier, max over t in [0, 1] of the loss minus the larger
  endpoint loss (only the segment between the solutions: outside it the
  loss grows anyway); and how far the loss rises past each end (t = lo
  beyond A, t = hi beyond B): Keskar et al.'s flat vs sharp side."""
  alphas = np.asarray(alphas)
  i0, i1 = _index(alphas, 0.0), _index(alphas, 1.0)
  inside = (alphas >= -1e-9) & (alphas <= 1 + 1e-9)
  ends = np.maximum(loss[:, i0], loss[:, i1])
  return {"loss_barrier": stats(loss[:, inside].max(-1) - ends),
          "rise_beyond_a": stats(loss[:, 0] - loss[:, i0]),
          "rise_beyond_b": stats(loss[:, -1] - loss[:, i1])}


def _index(alphas, value):
  return int(np.argmin(np.abs(np.asarray(alphas) - value)))


experiments.register("landscape", validate=validate,
                     own_fields=layers.NORM_FIELD_PATHS,
                     report="jaxunknowns.implicit.landscape_report:write",
                     multi_process=True)(run)
