"""A grid of trainings: the shared runner of the BatchNorm grid experiments
(`bn_batch_size`, `bn_placement`, `bn_regularization`).

A grid is a list of `Axis` (a label, the dotted config field it sets, its
values); `expand` gives the cells (the Cartesian product, first axis
slowest). Each cell is the base config with the cell's fields set, then
passed through the experiment's `derive(config, cell)` (e.g. the learning
rate scaled with the batch size, the step budget of a fixed number of
epochs). Every cell trains all its seeds at once (one compiled program per
cell) through `stages.train_stage`, so each cell is resumable and a
finished cell is never retrained.

Per cell the summary holds test and train accuracy (eval mode), the
train - test gap, test loss (mean ± std over seeds), the steps and examples
seen, the learning rate, and three timings: the fit's steps/s (periodic
evals and the final checkpoint included, compilation excluded by a warm-up),
a pure training throughput measured chunk by chunk on a throwaway state
(`speed_steps`; median and best chunk, with the machine's load average),
and the cell's wall time (compilation included).
"""

import contextlib
import dataclasses
import math
import os
import shutil
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import jax
import numpy as np
from absl import logging

from jax.experimental.compilation_cache import compilation_cache

from jaxunknowns import config_loading, runs, stages, sweep, validation
from jaxunknowns.data import load_dataset
from jaxunknowns.errors import UserError
from jaxunknowns.metrics import MetricWriter, stats
from jaxunknowns.models import create_model
from jaxunknowns.models.layers import check_choice

Cell = Dict[str, Any]  # axis label -> value, in axis order
LR_RULES = ("linear", "sqrt", "none")


@dataclasses.dataclass(frozen=True)
class Axis:
  label: str              # Name in metrics rows, stage names and figures.
  field: str              # Dotted config field the value is written to.
  values: Sequence[Any]   # The grid's values along this axis.
  config_name: str = ""   # The config field that lists the values (messages).


def norm_axis(config) -> Axis:
  """The axis every BN grid has first: `grid.norms`, set as `model.norm`."""
  return Axis("norm", "model.norm", tuple(config.grid.norms), "grid.norms")


# -----------------------------------------------------------------------------
# Grid expansion and cell configs
# -----------------------------------------------------------------------------
def check_axes(axes: Sequence[Axis]):
  """An empty axis, or a repeated value, is a one-line UserError. Values
  that are equal (0 and 0.0: distinct by repr) or share a stage name
  (`cell_name`: 1e-06 and 1.0000001e-06 are both 'x_1e-06') are repeated:
  their cells train in one stage folder, and the second read the first's
  result.json (or merged with it where cells are told apart by value)."""
  for axis in axes:
    name = axis.config_name or axis.field
    values = list(axis.values)
    validation.check(len(values) >= 1, name, tuple(values),
                     "a non-empty list (an empty grid trains nothing)")
    for j, b in enumerate(values):
      for a in values[:j]:
        names = [cell_name({axis.label: v}) for v in (a, b)]
        validation.check(a != b and names[0] != names[1], name, tuple(values),
                         f"distinct values ({a!r} and {b!r} are "
                         + ("equal" if a == b else
                            f"both the cell {names[0]!r}") + ")")


def validate_grid(config, axes: Sequence[Axis], norms: Sequence[str],
                  batch_sizes: Sequence[int] = ()):
  """The base config, the axes, every grid.norms entry one of `norms`, and no
  batch norm at batch 1 in any cell (at `batch_sizes`, else the config's)."""
  validation.validate_base(config)
  check_axes(axes)
  # Every cell's summary has its train accuracy and train − test gap.
  validation.check(config.train.eval_train, "train.eval_train",
                   config.train.eval_train,
                   "True (every cell reports its train accuracy and gap)")
  # Every cell writes its axis value over the field: a value given to the
  # field itself would be recorded in config.json but train nothing.
  for axis in axes:
    if axis.field:
      validation.check_applies(
          config, axis.field, False, "to no cell: each cell sets it from "
          f"{axis.config_name or 'the grid'} (give the values there)")
  # The cells set model.norm: a norm's own field (num_groups, ...) is used
  # only if a norm of the grid reads it (experiments with a grid register
  # own_fields=layers.NORM_FIELD_PATHS).
  validation.check_norm_fields(config, tuple(config.grid.norms),
                               f"grid.norms={tuple(config.grid.norms)}")
  validation.check(
      config.optim.get("decay_on", "all") != "normalized"
      or set(config.grid.norms) != {"none"}, "optim.decay_on", "normalized",
      f"'kernels' or 'all' with grid.norms={tuple(config.grid.norms)}: "
      "without a norm no kernel is one a norm follows")
  for norm in config.grid.norms:
    check_choice("grid.norms", norm, norms)
    model = config.model.copy_and_resolve_references()
    model.norm = norm
    for b in batch_sizes or (config.train.batch_size,):
      validation.check_batch_norm_batch_size(model, b, where=(
          f"grid cell norm={norm}"
          + (f", batch_size={b}: " if batch_sizes else ": ")))


def expand(axes: Sequence[Axis]) -> List[Cell]:
  """All cells of the grid: the product of the axes (sweep.grid), the first
  axis slowest."""
  check_axes(axes)
  return sweep.grid(**{a.label: list(a.values) for a in axes})


def apply_cell(config, axes: Sequence[Axis], cell: Cell):
  """A copy of `config` with the cell's values written to their fields."""
  c = config.copy_and_resolve_references()
  by_label = {a.label: a for a in axes}
  for label, value in cell.items():
    config_loading.set_field(c, by_label[label].field, value,
                             where=f"grid cell {describe(cell)}")
  return c


def cell_name(cell: Cell) -> str:
  """'norm_batch/batch_size_2': the cell's stage folder and log prefix."""
  return "/".join(f"{k}_{v:g}" if isinstance(v, float) else f"{k}_{v}"
                  for k, v in cell.items())


def describe(cell: Cell) -> str:
  return ", ".join(f"{k}={v}" for k, v in cell.items())


# -----------------------------------------------------------------------------
# Rules an experiment's `derive` uses
# -----------------------------------------------------------------------------
def scaled_lr(base_lr: float, batch_size: int, reference_batch_size: int,
              rule: str) -> float:
  """The learning rate at `batch_size` given `base_lr` at the reference batch.

  "linear": lr * B / B_ref (Goyal et al. 2017, SGD: the same expected
  update per example); "sqrt": lr * sqrt(B / B_ref) (keeps the gradient
  noise scale, Adam); "none": the same lr at every batch size.
  """
  if rule not in LR_RULES:
    raise UserError(f"unknown grid.lr_rule {rule!r}; valid values: "
                    f"{', '.join(LR_RULES)}")
  ratio = batch_size / reference_batch_size
  return base_lr * {"linear": ratio, "sqrt": math.sqrt(ratio),
                    "none": 1.0}[rule]


def chunked_budget(steps: int, log_every: int):
  """(steps, log_every) with steps a multiple of log_every: every compiled
  call then has the same length (one compile per cell). Overshoots by < one
  step per chunk: only for a budget that is itself a rounding (an epoch
  budget, `set_budget(..., round_up=True)`), never for a requested
  train.steps."""
  steps = max(1, int(steps))
  chunks = -(-steps // max(1, int(log_every)))
  per_chunk = -(-steps // chunks)
  return chunks * per_chunk, per_chunk


def refuse_budget_fields(config):
  """The fields `set_budget` writes in every cell (train.eval_every,
  train.checkpoint_every): a value given to them is recorded, never used."""
  for field in ("train.eval_every", "train.checkpoint_every"):
    validation.check_applies(
        config, field, False, "to no cell: each cell evaluates "
        "grid.evals_per_cell times and checkpoints at its end")


def set_budget(c, steps: int, evals: int, round_up: bool = False):
  """train.steps/log_every/eval_every of a cell: `evals` evaluations spread
  over the run (0: at the end only), each at a chunk boundary.

  A requested train.steps runs exactly: whole chunks of train.log_every,
  then a shorter last chunk where steps is not a multiple of it (its own
  program, compiled by the warm-up too). Rounding it up to whole chunks ran
  steps that config.json did not record (25 requested, 27 run).
  `round_up`: a budget that is already a rounding (steps of an epoch
  budget, ceil(epochs x N / B)) is rounded up to equal chunks
  (`chunked_budget`), as the committed bn_batch_size runs were; each cell's
  steps as run are in report.md, with its epochs in summary.json."""
  log_every = max(1, min(int(c.train.log_every), int(steps)))
  if round_up:
    steps, log_every = chunked_budget(steps, log_every)
  c.train.steps = steps
  c.train.log_every = log_every
  chunks = -(-steps // log_every)  # the last one maybe shorter
  c.train.eval_every = (log_every * max(1, chunks // evals)) if evals else 0
  c.train.checkpoint_every = 0  # End of the cell only: cells are short.


def epochs_to_steps(epochs: float, num_train: int, batch_size: int) -> int:
  """Steps that show each run `epochs` x the training set (same examples seen
  at every batch size)."""
  return max(1, int(math.ceil(epochs * num_train / batch_size)))


# -----------------------------------------------------------------------------
# Running the grid
# -----------------------------------------------------------------------------
def batch_size_source(axes: Sequence[Axis]) -> str:
  """The field a user sets to change the cells' batch size: the grid's own
  list where an axis sets it (a cell overwrites train.batch_size)."""
  return next((a.config_name or a.field for a in axes
               if a.field == "train.batch_size"), "train.batch_size")


def cell_configs(config, axes: Sequence[Axis], cells: Sequence[Cell],
                 derive: Callable, num_train: int) -> List[Any]:
  """Every cell's config, validated; bad input raises before any training."""
  out = []
  for cell in cells:
    c = apply_cell(config, axes, cell)
    derive(c, cell, num_train)
    where = f"grid cell {describe(cell)}: "
    if c.optim.get("decay_on", "all") == "normalized":
      norm = validation.norm_of(c.model)
      if norm == "none":
        # No norm, so no kernel a norm follows: this cell decays nothing
        # (the trainer refuses 'normalized' on a model without such a kernel).
        c.optim.weight_decay, c.optim.decay_on = 0.0, "all"
      elif (norm not in ("batch", "noisy_batch")
            or c.model.get("norm_position", "before") != "before"):
        # Checked here, before the workdir opens: the trainer's probe runs as
        # each cell starts. A bias between kernel and norm (BN after the ReLU;
        # group or layer norm, which keep a per-unit bias's effect) leaves no
        # kernel scale-invariant.
        raise UserError(
            f"{where}optim.decay_on='normalized' decays the kernels a norm "
            f"makes scale-invariant, and {norm} norm "
            f"{c.model.get('norm_position', 'before')} the activation leaves "
            "none; use optim.decay_on='kernels' or 'all', or a grid of batch "
            "norm before the activation (and no norm)")
    validation.validate_base(c, where)
    if c.train.batch_size > num_train:
      raise UserError(f"{where}train.batch_size={c.train.batch_size} is larger "
                      f"than the training set ({num_train} examples): lower "
                      f"{batch_size_source(axes)} to at most {num_train}")
    out.append(c)
  return out


def warm_up_and_time(trainer, seeds: Sequence[int], speed_steps: int):
  """Compiles the cell's train chunk and evaluation on a throwaway state, then
  times `speed_steps` steps (whole chunks) of pure training.

  Returns {median, best} steps/s over the timed chunks (no compilation,
  evaluation or logging), and the 1-minute load average of the machine while
  timing; None when speed_steps = 0. On a shared CPU other processes slow
  some chunks down: the median is the typical rate, the best the least
  disturbed one.
  """
  chunk = trainer.chunk
  state = trainer.init_state(seeds)
  state, _ = trainer.train_steps(state, seeds, chunk)
  tail = trainer.config.train.steps % chunk
  if tail:  # The fit's shorter last chunk (set_budget): a program of its own.
    state, _ = trainer.train_steps(state, seeds, tail)
  trainer.evaluate_all(state)
  jax.block_until_ready(state)
  if speed_steps <= 0:
    return None
  rates = []
  for _ in range(max(2, -(-speed_steps // chunk))):
    t0 = time.perf_counter()
    state, _ = trainer.train_steps(state, seeds, chunk)
    jax.block_until_ready(state)
    rates.append(chunk / (time.perf_counter() - t0))
  return {"median": float(np.median(rates)), "best": float(max(rates)),
          "chunks": len(rates), "steps_per_chunk": chunk,
          "load_average_1m": os.getloadavg()[0],
          "cpu_count": os.cpu_count()}


def cell_summary(cell: Cell, c, result: Mapping[str, Any],
                 speed: Optional[Mapping[str, Any]],
                 num_train: int) -> Dict[str, Any]:
  ev = result["evals"]
  test, train = ev["test"]["accuracy"], ev["train"]["accuracy"]
  return {
      "cell": dict(cell), "name": cell_name(cell),
      "test_accuracy": stats(test), "train_accuracy": stats(train),
      "gap": stats([a - b for a, b in zip(train, test)]),
      "test_loss": stats(ev["test"]["loss"]),
      "train_loss": stats(ev["train"]["loss"]),
      "steps": result["steps"], "batch_size": c.train.batch_size,
      "epochs": result["steps"] * c.train.batch_size / num_train,
      "lr": c.optim.lr,
      "steps_per_second": result["steps_per_second"],
      "train_speed": result.get("train_speed", speed),
      "warmup_s": result.get("warmup_s"),
      "wall_time_s": result["wall_time_s"],
  }


def run_grid(config, workdir, axes: Sequence[Axis], *,
             derive: Callable = lambda c, cell, n: None,
             extra_cells: Sequence[Cell] = (),
             speed_steps: int = 0,
             check_data: Callable = lambda dataset: None) -> Dict[str, Any]:
  """Trains every cell (plus `extra_cells`, e.g. a baseline) and returns
  {cells: [...], ...} for the experiment's summary.json. `derive` should end
  with `set_budget`, so that the warm-up compiles the program the fit runs.
  `check_data(dataset)`: the experiment's own checks of the loaded data,
  before the workdir opens.

  Bad input (an empty axis, an unknown norm, batch norm at batch 1, a batch
  larger than the data) fails before `workdir.open()`.
  """
  cells = expand(axes) + [dict(c) for c in extra_cells]
  dataset = load_dataset(config.data)
  check_data(dataset)
  num_train = len(dataset.train.y)
  configs = cell_configs(config, axes, cells, derive, num_train)
  for cell, c in zip(cells, configs):
    try:
      create_model(c.model, dataset.num_classes)
      # A cell's steps may come from an epoch budget; the other cells'
      # trainers are built after the workdir opens.
      validation.check_schedule_fits(c.optim, c.train.steps)
    except UserError as e:
      raise UserError(f"grid cell {describe(cell)}: {e}") from e
  first = runs.build_trainer(configs[0], dataset=dataset)
  workdir.open()
  with compile_cache(workdir.file("xla_cache")):
    return _train_cells(config, workdir, axes, cells, configs, first,
                        dataset, speed_steps)


@contextlib.contextmanager
def compile_cache(path: str):
  """JAX's persistent compilation cache in `path` while the grid trains,
  unless the user set one. Cells of one model share their init, optimizer
  init and evaluation programs (only the train chunk depends on the batch
  size): under a loaded 2-core CPU that halves a cell's compile time. The
  folder is removed after a finished grid; the process's settings are
  restored."""
  names = ("jax_compilation_cache_dir",
           "jax_persistent_cache_min_compile_time_secs",
           "jax_persistent_cache_min_entry_size_bytes")
  if jax.config.jax_compilation_cache_dir:
    yield
    return
  before = {n: getattr(jax.config, n) for n in names}
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  compilation_cache.set_cache_dir(path)
  compilation_cache.reset_cache()
  try:
    yield
    shutil.rmtree(path, ignore_errors=True)
  finally:
    for n, v in before.items():
      jax.config.update(n, v)
    compilation_cache.reset_cache()


def _train_cells(config, workdir, axes, cells, configs, first, dataset,
                 speed_steps):
  num_train = len(dataset.train.y)
  writer = MetricWriter(workdir.path)
  seeds = runs.seeds_of(config)
  t_start = time.time()
  out = []
  for i, (cell, c) in enumerate(zip(cells, configs)):
    name = cell_name(cell)
    folder = stages.stage_dir(workdir, name)
    # Done once its result holds its timing too: a run killed between the
    # stage's result.json and the rewrite below had lost the cell's
    # train_speed for good (the rerun skipped the timing). Such a cell is
    # timed again; its training, finished, is not redone.
    saved = stages.read_result(os.path.join(folder, stages.RESULT_FILE))
    done = saved is not None and "train_speed" in saved
    trainer = first if i == 0 else (
        None if done else runs.build_trainer(c, dataset=dataset))
    speed = None
    if not done:
      t0 = time.time()
      speed = warm_up_and_time(trainer, seeds, speed_steps)
      warm = time.time() - t0
      logging.info("[%s] compile + warm-up %.1fs%s", name, warm,
                   f", {speed['median']:.0f} train steps/s (median)"
                   if speed else "")
    result = stages.train_stage(trainer, workdir=workdir, name=name,
                                labels=cell, seeds=seeds, writer=writer,
                                steps=c.train.steps)
    if not done:
      # The cell's wall time includes its compile and warm-up.
      result.update(train_speed=speed, warmup_s=warm,
                    wall_time_s=result["wall_time_s"] + warm)
      stages.rewrite_result(folder, result)
    del trainer
    first = None
    out.append(cell_summary(cell, c, result, speed, num_train))
    logging.info("[%s] test acc %.2f ± %.2f%%, train acc %.2f%%, %d steps, "
                 "%.1fs", name, 100 * out[-1]["test_accuracy"]["mean"],
                 100 * out[-1]["test_accuracy"]["std"],
                 100 * out[-1]["train_accuracy"]["mean"], result["steps"],
                 result["wall_time_s"])
  writer.close()
  return {
      "dataset": config.data.name, "model": config.model.name,
      "train_examples": num_train, "test_examples": len(dataset.test.y),
      "seeds": seeds, "axes": [{"label": a.label, "field": a.field,
                                "values": list(a.values)} for a in axes],
      "cells": out,
      "wall_time_s": time.time() - t_start,
      "cells_wall_time_s": sum(q["wall_time_s"] for q in out),
      "machine": runs.machine_info(),
  }


# -----------------------------------------------------------------------------
# Reading the cells
# -----------------------------------------------------------------------------
def find(cells: Sequence[Mapping[str, Any]], **where) -> List[Mapping[str, Any]]:
  """The cells whose labels match `where`, in grid order."""
  return [q for q in cells
          if all(q["cell"].get(k) == v for k, v in where.items())]


def stat(cells: Sequence[Mapping[str, Any]], metric: str, **where):
  """`metric` of the first cell matching `where`; None if none does."""
  hit = find(cells, **where)
  return hit[0][metric] if hit else None


def per_seed(cell: Mapping[str, Any], metric: str) -> np.ndarray:
  return np.asarray(cell[metric]["per_seed"], np.float64)
