"""`landscape`: filter-normalized loss landscapes of trained networks
(Li, Xu, Taylor, Studer & Goldstein 2018), for each arm of a comparison.

What runs. For each arm of `compare` (see landscape_arms.py: small vs large
batch, with vs without BN, with vs without skip connections), `seeds`
networks train at once, resumably (arms/NAME/checkpoints). Then, for the
first seed's network theta of each arm, with two filter-normalized random
directions d1, d2 (analysis/landscape.py; zero on biases and BN parameters):

* a 1-D slice: theta + a d1 for a on `landscape.range_1d`;
* a 2-D surface: theta + a d1 + b d2 on `landscape.range_2d`^2
  (`points_2d` x `points_2d`, 51 x 51 by default), every point in one
  compiled program (analysis/landscape.surface_fn, with the fast first-layer
  path for dense-first networks);
* linear interpolation (1 - t) A + t B on `landscape.range_interp`, reusing
  analysis/interpolation.evaluate_path: between the first two seeds of each
  arm (`interpolation = "seeds"`), or between the two arms' networks seed by
  seed (`"arms"`, Keskar et al.'s small-to-large-batch plot).

Loss and accuracy are in eval mode (BatchNorm running statistics, which the
directions do not move; interpolation moves them linearly) on the first
`landscape.num_examples` training examples (0 = all). The grids are kept in
arms/NAME/landscape.npz; summary.json, report.md and PNGs (contours,
slices, interpolation) are written at the end.
"""

import time
from typing import Any, Dict

import jax
import numpy as np
from absl import logging

from jaxunknowns import experiments, paths, validation
from jaxunknowns.analysis import interpolation
from jaxunknowns.analysis import landscape as landscape_lib
from jaxunknowns.errors import UserError
from jaxunknowns import runs
from jaxunknowns.implicit import landscape_arms
from jaxunknowns.metrics import MetricWriter, stats

INTERPOLATIONS = ("seeds", "arms", "none")


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


def validate(config):
  validation.validate_base(config)
  landscape_arms.validate_arms(config)
  check = validation.check
  l = config.landscape
  for field in ("range_1d", "range_2d", "range_interp"):
    check(len(tuple(l[field])) == 2, f"landscape.{field}", tuple(l[field]),
          "a pair (lo, hi)")
  axes(config)
  check(l.interpolation in INTERPOLATIONS, "landscape.interpolation",
        l.interpolation, " or ".join(INTERPOLATIONS))
  if l.interpolation == "seeds":
    check(config.seeds >= 2, "seeds", config.seeds,
          ">= 2 for landscape.interpolation='seeds' (two solutions)")
  if l.interpolation == "arms":
    n = len(landscape_arms.arm_names(config))
    check(n == 2, "compare", config.compare,
          "exactly two arms for landscape.interpolation='arms'")
  check(isinstance(l.points_per_chunk, int) and l.points_per_chunk >= 1,
        "landscape.points_per_chunk", l.points_per_chunk, "an integer >= 1")
  check(isinstance(l.num_examples, int) and l.num_examples >= 0,
        "landscape.num_examples", l.num_examples, "an integer >= 0 (0 = all)")
  check(isinstance(l.examples_per_chunk, int) and l.examples_per_chunk >= 1,
        "landscape.examples_per_chunk", l.examples_per_chunk, "an integer >= 1")


def build_arms(config) -> Dict[str, Any]:
  """{arm: trainer}; every dataset and model is built here (bad input fails
  before the workdir is touched)."""
  trainers = {}
  for name, c, ds in landscape_arms.arms_with_data(config):
    c.train.eval_train = True
    c.train.max_train_eval = config.landscape.num_examples
    c.train.eval_batch_size = config.landscape.examples_per_chunk
    trainers[name] = runs.build_trainer(c, dataset=ds)
  if config.landscape.interpolation == "arms":
    a, b = (jax.tree.map(np.shape, t.params_template)
            for t in trainers.values())
    if a != b:
      raise UserError("landscape.interpolation='arms' needs the two arms to "
                      "have the same parameters (same architecture); use "
                      "'seeds' or 'none'")
  return trainers


def train_arm(trainer, name, seeds, writer, workdir):
  result = trainer.fit(
      trainer.init_state(seeds), steps=trainer.config.train.steps,
      data_seeds=seeds, writer=writer,
      run_labels=[{"arm": name, "seed": s} for s in seeds],
      checkpoint_dir=workdir.file("arms", name, "checkpoints"),
      description=name)
  return result


def surfaces(trainer, state, config, grid) -> Dict[str, np.ndarray]:
  """Slice and 2-D surface of run 0 of `state` (see the module docstring)."""
  l = config.landscape
  params = landscape_lib.take_run(state["params"], 0)
  stats_ = landscape_lib.take_run(state["batch_stats"], 0)
  dirs = landscape_lib.filter_normalized_directions(
      jax.random.PRNGKey(l.seed), params, 2)
  dense = (landscape_lib.first_dense_path(
      trainer.model, params, trainer.dataset.input_shape, stats_)
           if l.fast_dense else None)
  fn = landscape_lib.surface_fn(trainer.model, trainer.loss_fn,
                                has_batch_stats=trainer.has_batch_stats,
                                points_per_chunk=l.points_per_chunk,
                                dense_path=dense)
  data = trainer.eval_data["train"]
  t0 = time.time()
  one = jax.tree.map(lambda d: d[:1], dirs)
  s = landscape_lib.surface(fn, params, stats_, one,
                            grid["slice"][:, None], data)
  coords = landscape_lib.grid_points(grid["surface"], grid["surface"])
  t1 = time.time()
  g = landscape_lib.surface(fn, params, stats_, dirs, coords, data)
  n = len(grid["surface"])
  return {"slice_loss": s["loss"], "slice_accuracy": s["accuracy"],
          "surface_loss": g["loss"].reshape(n, n),
          "surface_accuracy": g["accuracy"].reshape(n, n),
          "surface_seconds": time.time() - t1, "slice_seconds": t1 - t0,
          "fast_dense": dense is not None,
          "num_examples": int(np.asarray(data[2]).sum())}


def flatness(grid, out) -> Dict[str, float]:
  """Numbers for the table: the loss at the centre and how fast it rises."""
  centre = float(out["surface_loss"][len(grid["surface"]) // 2,
                                      len(grid["surface"]) // 2])
  a = grid["slice"]
  half = np.abs(a) <= 0.5 + 1e-9
  return {"loss_at_centre": centre,
          "surface_min": float(out["surface_loss"].min()),
          "surface_max": float(out["surface_loss"].max()),
          "surface_mean_rise": float(out["surface_loss"].mean() - centre),
          "slice_mean_rise_half": float(out["slice_loss"][half].mean() -
                                        float(out["slice_loss"][np.argmin(
                                            np.abs(a))])),
          "accuracy_at_centre": float(out["surface_accuracy"][
              len(grid["surface"]) // 2, len(grid["surface"]) // 2])}


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
    result = train_arm(trainer, name, seeds, writer, workdir)
    states[name] = result.state
    out = surfaces(trainer, result.state, config, grid)
    paths.makedirs(workdir.file("arms", name))
    paths.save_npz(workdir.file("arms", name, "landscape.npz"), compressed=False,
                   slice_axis=grid["slice"], surface_axis=grid["surface"],
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
        **flatness(grid, out),
        "slice_loss": out["slice_loss"].tolist(),
    }
    logging.info("[%s] surface %dx%d in %.1f s: loss at centre %.4f, max %.4f",
                 name, len(grid["surface"]), len(grid["surface"]),
                 out["surface_seconds"], arms[name]["loss_at_centre"],
                 arms[name]["surface_max"])
  interp = interpolate(config, trainers, states, grid["interpolation"])
  writer.close()
  summary = {
      "experiment": "landscape", "dataset": config.data.name,
      "compare": names, "seeds": seeds,
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
                     report="jaxunknowns.implicit.landscape_report:write")(run)
