"""`bn_stability`: BatchNorm's speed and stability claims on a grid of
learning rate x init scale x normalization (the article: BN accelerates
training and needs less careful initialization; Bjorck et al. 2018: BN's
benefit is the larger learning rates it permits, and at a small learning
rate it mostly disappears).

Per normalization, every (lr, init scale, seed) is one run of ONE compiled
program: the learning rate is a per-run hyperparameter (hparams.py) and the
init scale multiplies each run's kernels at init
(`Trainer.init_variables(init_scale=...)`). Runs of the same seed share
their initial weights (before scaling) and data order in every cell, so
cells compare seed by seed. A program is one resumable stage: a finished
normalization is never retrained.

A run whose training loss becomes NaN or Inf is recorded as diverged (at
that step) and the others go on: vmapped runs share no numbers, so a NaN
stays in its own run (`Trainer.fit(on_divergence="record")`). Steps to
target: the end of the first chunk (`train.log_every` steps) whose mean
minibatch training accuracy reaches `grid.target_accuracy` (None = never),
read from the chunk's row in metrics.jsonl. Each normalization's best learning
rate is picked on the validation split at init scale 1, never on test.
"""

import time

import numpy as np
from absl import logging

from jaxunknowns import experiments, runs, stages, validation
from jaxunknowns.batchnorm import bn_grid
from jaxunknowns.data import load_dataset
from jaxunknowns.errors import UserError
from jaxunknowns.metrics import MetricWriter, read_metrics, stats
from jaxunknowns.models import create_model, layers

GRID_NORMS = ("none", "batch", "group", "layer")


def axes(config):
  g = config.grid
  return [bn_grid.norm_axis(config),
          bn_grid.Axis("lr", "optim.lr", tuple(g.lrs), "grid.lrs"),
          bn_grid.Axis("init_scale", "", tuple(g.init_scales),
                       "grid.init_scales")]


def validate(config):
  g, check = config.grid, validation.check
  for name in ("lrs", "init_scales"):
    check(all(isinstance(v, (int, float)) and not isinstance(v, bool)
              and 0 < v < float("inf") for v in g[name]), f"grid.{name}",
          tuple(g[name]), "positive finite numbers")
  check(1.0 in tuple(g.init_scales) or not g.init_scales, "grid.init_scales",
        tuple(g.init_scales), "a list holding 1.0 (the unscaled init, where "
        "each norm's best lr is picked)")
  check(0.0 < g.target_accuracy <= 1.0, "grid.target_accuracy",
        g.target_accuracy, "in (0, 1]")
  check(0.0 <= g.region_tolerance < 1.0, "grid.region_tolerance",
        g.region_tolerance, "in [0, 1)")
  check(config.data.validation_size > 0, "data.validation_size",
        config.data.validation_size, "> 0 (the split that picks the best lr)")
  for field in ("eval_every", "checkpoint_every"):
    check(config.train[field] == 0, f"train.{field}", config.train[field],
          "0: a program evaluates once, at its end, and keeps no checkpoints")
  check(config.optim.schedule == "constant", "optim.schedule",
        config.optim.schedule, "'constant' (the grid's lr is the step size)")
  bn_grid.validate_grid(config, axes(config), GRID_NORMS)


def program_config(config, norm):
  c = config.copy_and_resolve_references()
  c.model.norm = norm
  return c


def run_axis(config):
  """(lr, init scale, seed) of every run of a program, lr slowest."""
  return [(lr, s, seed) for lr in config.grid.lrs
          for s in config.grid.init_scales for seed in runs.seeds_of(config)]


def train_program(trainer, config, norm, writer):
  """Trains every run of one normalization; returns its stage result."""
  t0 = time.time()
  lrs, scales, seeds = (list(v) for v in zip(*run_axis(config)))
  labels = [{"norm": norm, "lr": lr, "init_scale": s, "seed": seed}
            for lr, s, seed in zip(lrs, scales, seeds)]
  writer.rewind({"norm": norm}, 0)  # Rows of an interrupted attempt.
  state = trainer.init_state(
      seeds, variables=trainer.init_variables(seeds, init_scale=scales),
      hparams={"lr": lrs})
  result = trainer.fit(state, steps=config.train.steps, data_seeds=seeds,
                       writer=writer, run_labels=labels,
                       description=f"norm {norm}", on_divergence="record")
  # Divergence and steps to target, from the rows fit wrote: a run's
  # "diverged" row, and its first chunk (minibatch row) at the target.
  first = {}
  for row in read_metrics(writer.workdir):
    key = row["split"], row.get("lr"), row.get("init_scale"), row.get("seed")
    if row.get("norm") == norm and (
        row["split"] == "diverged" or row["split"] == "minibatch" and
        row["accuracy"] >= config.grid.target_accuracy):
      first[key] = min(first.get(key, row["step"]), row["step"])
  at = lambda split: [first.get((split, l["lr"], l["init_scale"], l["seed"]))
                      for l in labels]
  diverged_at = at("diverged")
  logging.info("[norm %s] %d runs, %d diverged, %.0f s", norm, len(seeds),
               sum(d is not None for d in diverged_at), time.time() - t0)
  return {"norm": norm, "lr": lrs, "init_scale": scales, "seed": seeds,
          "diverged_at": diverged_at, "steps_to_target": at("minibatch"),
          "steps": config.train.steps,
          "evals": {split: {k: [stages.finite_or_none(x) for x in v]
                            for k, v in vals.items()}
                    for split, vals in result.evals.items()},
          "wall_time_s": time.time() - t0}


def cells_of(result):
  """The program's runs grouped by (lr, init scale): one cell each, its
  seeds in order."""
  groups = {}
  for r, key in enumerate(zip(result["lr"], result["init_scale"])):
    groups.setdefault(key, []).append(r)
  cells = []
  for (lr, scale), members in groups.items():
    ev = {f"{split}_{k}": [ev[k][r] for r in members]
          for split, ev in result["evals"].items() for k in ev}
    hits = [result["steps_to_target"][r] for r in members]
    cells.append({
        "cell": {"norm": result["norm"], "lr": lr, "init_scale": scale},
        **{k: stages.finite_stats(v) for k, v in ev.items()},
        "diverged_at": [result["diverged_at"][r] for r in members],
        "steps_to_target": {**(stats(hits) if None not in hits else
                               {"mean": None, "std": None}),
                            "per_seed": hits}})
  return cells


def accuracy_grid(cells, lrs, scales, metric="test_accuracy"):
  """[seed, lr, scale] of `metric`, -inf where a seed diverged; and the
  cells by (lr, init scale)."""
  by = {(q["cell"]["lr"], q["cell"]["init_scale"]): q for q in cells}
  out = np.array([[[-np.inf if d is not None or v is None else v
                    for v, d in zip(by[lr, s][metric]["per_seed"],
                                    by[lr, s]["diverged_at"])]
                   for s in scales] for lr in lrs])
  return out.transpose(2, 0, 1), by


def trainable(acc, tolerance: float) -> np.ndarray:
  """[seed, lr, scale] bools from `accuracy_grid`: the cells within
  `tolerance` of that seed's best, never diverged. A seed whose every run
  diverged has best -inf, and -inf >= -inf - tol: without isfinite its
  diverged runs all counted as trainable."""
  return np.isfinite(acc) & (
      acc >= acc.max(axis=(1, 2), keepdims=True) - tolerance)


def max_trainable_lr(cells, lrs, scales, tolerance: float):
  """Per seed, the largest lr of a trainable cell at init scale 1 (0 if
  none). A run whose loss blew up and then settled at chance never turned
  NaN: 'never diverged' alone counted it stable (BN at lr 3 ending at 16%
  test accuracy), so the trainable region decides instead."""
  acc, _ = accuracy_grid(cells, lrs, scales)
  at_one = trainable(acc, tolerance)[:, :, list(scales).index(1.0)]
  return stats([max([lr for lr, ok in zip(lrs, row) if ok], default=0.0)
                for row in at_one])


def readings(cells, config, steps):
  """Per norm, per seed: the trainable region (cells within
  `region_tolerance` of that seed's best test accuracy; diverged runs are
  never trainable) and its extent along each axis; at init scale 1, the
  largest lr that did not diverge, the best lr (validation accuracy) and
  the steps to target there."""
  g = config.grid
  lrs, scales = list(g.lrs), list(g.init_scales)
  out = {}
  for norm in g.norms:
    own = bn_grid.find(cells, norm=norm)
    acc, by = accuracy_grid(own, lrs, scales)
    region = trainable(acc, g.region_tolerance)
    val = {lr: by[lr, 1.0]["validation_accuracy"]["mean"] or 0.0 for lr in lrs}
    best = max(lrs, key=lambda lr: val[lr])
    hits = by[best, 1.0]["steps_to_target"]["per_seed"]
    stable = [max([lr for lr in lrs if by[lr, 1.0]["diverged_at"][k] is None],
                  default=0.0) for k in range(acc.shape[0])]
    out[norm] = {
        "region_cells": stats(region.sum(axis=(1, 2))),
        "region_lrs": stats(region.any(axis=2).sum(axis=1)),
        "region_init_scales": stats(region.any(axis=1).sum(axis=1)),
        "best_lr": best, "max_stable_lr": stats(stable),
        "max_trainable_lr": max_trainable_lr(own, lrs, scales,
                                             g.region_tolerance),
        "steps_to_target_at_best_lr": {
            "per_seed": hits, **(stats(hits) if None not in hits else {
                "mean": None, "std": None})},
        "never_reached_within": steps}
  return out


def gaps(cells, config, best):
  """BN − no norm test accuracy per seed at init scale 1: at the smallest
  lr, and with each at its own best lr (Bjorck et al.'s comparison)."""
  if not {"batch", "none"} <= set(config.grid.norms):
    return None
  def acc(norm, lr):
    return bn_grid.per_seed(bn_grid.find(cells, norm=norm, lr=lr,
                                         init_scale=1.0)[0], "test_accuracy")
  small = min(config.grid.lrs)
  return {"smallest_lr": small,
          "at_smallest_lr": stats(acc("batch", small) - acc("none", small)),
          "at_best_lrs": stats(acc("batch", best["batch"])
                               - acc("none", best["none"]))}


def run(config, workdir):
  dataset = load_dataset(config.data)
  validation.check_above_chance("grid.target_accuracy",
                                config.grid.target_accuracy,
                                dataset.num_classes)
  configs = {norm: program_config(config, norm) for norm in config.grid.norms}
  for norm, c in configs.items():
    try:
      create_model(c.model, dataset.num_classes)
    except UserError as e:
      raise UserError(f"grid norm={norm}: {e}") from e
  # The first norm's trainer before the workdir opens: a batch the data
  # cannot hold (every norm trains the same batch) is refused with the
  # workdir as it was.
  built = {next(iter(configs)): runs.build_trainer(
      next(iter(configs.values())), dataset=dataset, hparams=("lr",))}
  workdir.open()
  writer = MetricWriter(workdir.path)
  t0, results = time.time(), []
  for norm, c in configs.items():
    # Popped here, not in compute: a resumed run whose stage is done drops it.
    def compute(c=c, norm=norm, trainer=built.pop(norm, None)):
      trainer = trainer or runs.build_trainer(c, dataset=dataset,
                                              hparams=("lr",))
      return train_program(trainer, c, norm, writer)
    results.append(stages.run_stage(stages.stage_dir(workdir, f"norm_{norm}"),
                                    compute, name=f"norm {norm}"))
  writer.close()
  cells = [q for r in results for q in cells_of(r)]
  read = readings(cells, config, config.train.steps)
  summary = {
      "experiment": "bn_stability", "dataset": config.data.name,
      "model": config.model.name, "train_examples": len(dataset.train.y),
      "test_examples": len(dataset.test.y), "seeds": runs.seeds_of(config),
      "steps": config.train.steps, "target_accuracy":
          config.grid.target_accuracy,
      "region_tolerance": config.grid.region_tolerance,
      "lrs": list(config.grid.lrs),
      "init_scales": list(config.grid.init_scales), "cells": cells,
      "readings": read,
      "gaps": gaps(cells, config, {n: r["best_lr"] for n, r in read.items()}),
      "programs": {r["norm"]: {"runs": len(r["seed"]),
                               "wall_time_s": r["wall_time_s"]}
                   for r in results},
      "wall_time_s": time.time() - t0, "machine": runs.machine_info()}
  experiments.finish("bn_stability", workdir, config, summary)
  return summary


experiments.register(
    "bn_stability", validate=validate, own_fields=layers.NORM_FIELD_PATHS,
    report="jaxunknowns.batchnorm.bn_report:write_stability",
    multi_process=True)(run)
