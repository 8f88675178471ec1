"""Tests of the BatchNorm grid experiments (`bn_batch_size`, `bn_placement`,
`bn_regularization`) and their shared runner, jaxunknowns/batchnorm/bn_grid.py.

* The grid: expansion order, cell configs, the learning-rate scaling rules,
  the epoch budget and its chunking; a requested train.steps runs exactly.
* Each experiment end to end on sklearn digits with a tiny MLP and a 2-4
  cell grid (in-process): summary.json, report.md and the figure; the
  summary's numbers are the ones metrics.jsonl logged; a rerun reuses the
  finished cells; the report rebuilds byte for byte from the workdir.
* Bad input (batch norm at batch 1, in any experiment; an unknown norm; an
  empty grid; a value repeated, 0 and 0.0 included): one-line UserError, exit 2 on the command line, nothing
  written.

Compile time dominates, so the module turns on JAX's persistent compilation
cache (as test_overparam does) and restores the process's JAX config after.
"""

import importlib
import math
import os
import subprocess
import sys
from pathlib import Path

import jax
import ml_collections
import pytest
from jax.experimental.compilation_cache import compilation_cache

from jaxunknowns.errors import UserError
from jaxunknowns.batchnorm import bn_grid, bn_report
from run_helpers import (assert_report_rebuilds, read_json, run_in_process,
                         snapshot)

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
_CACHE_OPTIONS = ("jax_compilation_cache_dir",
                  "jax_persistent_cache_min_compile_time_secs",
                  "jax_persistent_cache_min_entry_size_bytes")
# A tiny, fast setup shared by the end-to-end runs.
DIGITS = {"data.name": "digits", "data.train_size": 400, "seeds": 2,
          "model.widths": (16, 16)}


@pytest.fixture(scope="module", autouse=True)
def _compilation_cache(tmp_path_factory):
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent
  cache = base / "bn_grid_xla"
  cache.mkdir(exist_ok=True)
  ENV.update(JAX_COMPILATION_CACHE_DIR=str(cache),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  before = {name: getattr(jax.config, name) for name in _CACHE_OPTIONS}
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  compilation_cache.set_cache_dir(str(cache))
  compilation_cache.reset_cache()
  yield
  for name, value in before.items():
    jax.config.update(name, value)
  compilation_cache.reset_cache()


def load_config(name, variant="runlocal", overrides=None):
  from jaxunknowns.config_loading import load_config as load  # pylint: disable=g-import-not-at-top
  return load(f"configs/{name}.py:{variant}", overrides, root=str(ROOT))


def read_rows(workdir):
  import json  # pylint: disable=g-import-not-at-top
  with open(Path(workdir) / "metrics.jsonl") as f:
    return [json.loads(line) for line in f if line.strip()]


# -----------------------------------------------------------------------------
# 1. The grid
# -----------------------------------------------------------------------------
def test_expand_is_the_product_first_axis_slowest():
  axes = [bn_grid.Axis("norm", "model.norm", ("batch", "none")),
          bn_grid.Axis("batch_size", "train.batch_size", (2, 8, 32))]
  cells = bn_grid.expand(axes)
  assert cells == [{"norm": n, "batch_size": b}
                   for n in ("batch", "none") for b in (2, 8, 32)]
  assert bn_grid.cell_name(cells[1]) == "norm_batch/batch_size_8"
  assert bn_grid.cell_name({"dropout": 0.5, "weight_decay": 5e-4}) == (
      "dropout_0.5/weight_decay_0.0005")


@pytest.mark.parametrize("values,needle", [
    ((), "non-empty"), ((2, 2), "distinct"),
    # Distinct by repr, one value: both cells were 'batch_size_2', and the
    # second read the first's result.json.
    ((2, 2.0), "distinct values (2 and 2.0 are equal)"),
    # Distinct values, one stage name (`cell_name` writes floats with :g).
    ((1e-06, 1.0000001e-06),
     "(1e-06 and 1.0000001e-06 are both the cell 'batch_size_1e-06')")])
def test_empty_or_repeated_axis_is_refused(values, needle):
  axes = [bn_grid.Axis("batch_size", "train.batch_size", values,
                       "grid.batch_sizes")]
  with pytest.raises(UserError) as info:
    bn_grid.expand(axes)
  assert needle in str(info.value)
  assert "grid.batch_sizes" in str(info.value)
  assert "\n" not in str(info.value)


def test_apply_cell_sets_fields_on_a_copy():
  base = load_config("bn_regularization")
  axes = [bn_grid.Axis("dropout", "model.dropout", (0.5,)),
          bn_grid.Axis("weight_decay", "optim.weight_decay", (1e-3,))]
  c = bn_grid.apply_cell(base, axes, {"dropout": 0.5, "weight_decay": 1e-3})
  assert (c.model.dropout, c.optim.weight_decay) == (0.5, 1e-3)
  assert (base.model.dropout, base.optim.weight_decay) == (0.0, 0.0)


def test_lr_scaling_rules():
  assert bn_grid.scaled_lr(0.1, 32, 128, "linear") == pytest.approx(0.025)
  assert bn_grid.scaled_lr(0.1, 256, 128, "linear") == pytest.approx(0.2)
  assert bn_grid.scaled_lr(0.1, 32, 128, "sqrt") == pytest.approx(0.05)
  assert bn_grid.scaled_lr(0.1, 2, 128, "none") == pytest.approx(0.1)
  with pytest.raises(UserError, match="grid.lr_rule 'cubic'"):
    bn_grid.scaled_lr(0.1, 2, 128, "cubic")


@pytest.mark.parametrize("steps,log_every", [(7500, 200), (117, 100),
                                             (58, 200), (1, 10), (1000, 100)])
def test_budget_chunks_evenly_and_overshoots_by_less_than_a_chunk_count(
    steps, log_every):
  total, per_chunk = bn_grid.chunked_budget(steps, log_every)
  assert total % per_chunk == 0 and per_chunk <= log_every
  chunks = total // per_chunk
  assert steps <= total < steps + chunks
  assert bn_grid.epochs_to_steps(3, 5000, 2) == 7500
  assert bn_grid.epochs_to_steps(3, 5000, 256) == math.ceil(15000 / 256)


@pytest.mark.parametrize("name,overrides", [
    ("bn_placement", {}), ("bn_regularization", {}),
    ("bn_batch_size", {"grid.epochs": 0.0})])
def test_requested_steps_are_the_steps_of_every_cell(name, overrides):
  """A train.steps that is not a whole number of chunks (25 of log_every 10)
  was rounded up to 27 in every cell while config.json recorded 25: each
  cell now runs 25, the last chunk shorter, at the log_every recorded."""
  module = importlib.import_module(f"jaxunknowns.batchnorm.{name}")
  config = load_config(name, "runlocal", {**overrides, "train.steps": 25,
                                          "train.log_every": 10})
  axes = module.axes(config)
  cells = bn_grid.expand(axes)
  for c in bn_grid.cell_configs(config, axes, cells, module.derive, 400):
    assert (c.train.steps, c.train.log_every) == (25, 10)
    assert c.train.eval_every % 10 == 0  # evaluations at chunk boundaries


def test_batch_size_cells_scale_lr_and_see_the_same_examples():
  from jaxunknowns.batchnorm import bn_batch_size  # pylint: disable=g-import-not-at-top
  config = load_config("bn_batch_size", "fashion_mlp")
  axes = bn_batch_size.axes(config)
  cells = bn_grid.expand(axes)
  configs = bn_grid.cell_configs(config, axes, cells, bn_batch_size.derive,
                                 5000)
  for cell, c in zip(cells, configs):
    b = cell["batch_size"]
    assert c.optim.lr == pytest.approx(0.05 * b / 128)
    examples = c.train.steps * b
    assert 15000 <= examples < 15000 + b * (c.train.steps // c.train.log_every)
    assert c.train.steps % c.train.log_every == 0
    assert c.model.norm == cell["norm"]


def test_batch_size_readings_select_nothing_on_test():
  """Issue 14.5: the drop at the smallest batch is measured from a batch
  fixed before the run (the largest of the grid at most the paper's 32), not
  from the batch with the best *test* accuracy (here 64)."""
  from jaxunknowns.batchnorm import bn_batch_size  # pylint: disable=g-import-not-at-top
  acc = {2: (0.50, 0.54), 16: (0.80, 0.78), 64: (0.90, 0.92)}
  cells = [{"cell": {"norm": "batch", "batch_size": b},
            "test_accuracy": {"mean": sum(v) / 2, "per_seed": list(v)}}
           for b, v in acc.items()]
  r = bn_batch_size.readings(cells, ["batch"])["batch"]
  assert (r["smallest_batch"], r["typical_batch"]) == (2, 16)
  assert r["drop_at_smallest"]["per_seed"] == pytest.approx([0.30, 0.24])
  assert "best_batch" not in r


# -----------------------------------------------------------------------------
# 2. Batch norm at batch size 1 (validation.py: every experiment)
# -----------------------------------------------------------------------------
def test_batch_norm_at_batch_one_is_refused_everywhere():
  from jaxunknowns import validation  # pylint: disable=g-import-not-at-top
  config = load_config("train", "mnist1d_mlp,runlocal",
                       {"model.norm": "batch", "train.batch_size": 1})
  with pytest.raises(UserError, match="degenerate") as info:
    validation.validate_base(config)
  assert "train.batch_size=1" in str(info.value)
  # "default" resolves to the model's own norm: batch for a ResNet.
  resnet = ml_collections.ConfigDict({"name": "resnet", "norm": "default",
                                      "depth": 8, "width": 8})
  with pytest.raises(UserError, match="degenerate"):
    validation.check_batch_norm_batch_size(resnet, 1)
  for norm in ("group", "layer", "none"):
    validation.check_batch_norm_batch_size(
        ml_collections.ConfigDict({"name": "mlp", "norm": norm}), 1)
  validation.check_batch_norm_batch_size(
      ml_collections.ConfigDict({"name": "mlp", "norm": "batch"}), 2)


# -----------------------------------------------------------------------------
# 3. End to end
# -----------------------------------------------------------------------------
def _check_cells_match_metrics(workdir, summary):
  """Each cell's per-seed final accuracies are the rows metrics.jsonl holds."""
  rows = read_rows(workdir)
  for q in summary["cells"]:
    for split, key in (("test", "test_accuracy"), ("train", "train_accuracy")):
      mine = [r for r in rows if r["split"] == split and
              all(r.get(k) == v for k, v in q["cell"].items())]
      last = max(r["step"] for r in mine)
      assert last == q["steps"]
      logged = [r["accuracy"] for r in sorted(mine, key=lambda r: r["seed"])
                if r["step"] == last]
      assert logged == pytest.approx(q[key]["per_seed"], abs=1e-6)
    gap = [a - b for a, b in zip(q["train_accuracy"]["per_seed"],
                                 q["test_accuracy"]["per_seed"])]
    assert q["gap"]["per_seed"] == pytest.approx(gap)
    assert q["wall_time_s"] > 0 and q["steps_per_second"] > 0


def test_bn_batch_size_end_to_end(tmp_path):
  config = load_config("bn_batch_size", "runlocal", {
      **DIGITS, "grid.batch_sizes": (2, 8), "grid.epochs": 0.1,
      "grid.reference_batch_size": 8})
  workdir = tmp_path / "bs"
  summary = run_in_process(config, workdir)
  assert [q["cell"] for q in summary["cells"]] == [
      {"norm": n, "batch_size": b} for n in ("batch", "group") for b in (2, 8)]
  lrs = {q["cell"]["batch_size"]: q["lr"] for q in summary["cells"]}
  assert lrs[2] == pytest.approx(config.optim.lr / 4)
  assert lrs[8] == pytest.approx(config.optim.lr)
  steps = {q["cell"]["batch_size"]: q["steps"] for q in summary["cells"]}
  assert steps == {2: 20, 8: 5}  # 0.1 epochs of 400 examples
  for name in ("summary.json", "report.md", "accuracy_vs_batch_size.png",
               "config.json"):
    assert (workdir / name).is_file(), name
  assert not (workdir / "xla_cache").exists()
  assert read_json(workdir / "summary.json")["readings"] == summary["readings"]
  _check_cells_match_metrics(workdir, summary)
  text = (workdir / "report.md").read_text()
  assert "linear scaling" in text and "same number of examples" in text
  assert summary["readings"]["batch"]["smallest_batch"] == 2

  # A rerun after losing summary.json retrains nothing: same numbers.
  before = snapshot(workdir / "stages")
  os.remove(workdir / "summary.json")
  again = run_in_process(config, workdir)
  assert snapshot(workdir / "stages") == before
  assert [q["test_accuracy"] for q in again["cells"]] == [
      q["test_accuracy"] for q in summary["cells"]]
  assert "Wu & He" in (workdir / "report.md").read_text()
  assert_report_rebuilds(workdir)


def test_bn_placement_end_to_end(tmp_path):
  config = load_config("bn_placement", "runlocal",
                       {**DIGITS, "grid.baseline": False})
  workdir = tmp_path / "placement"
  summary = run_in_process(config, workdir)
  assert [q["cell"]["position"] for q in summary["cells"]] == ["before",
                                                               "after"]
  for q in summary["cells"]:
    assert q["train_speed"]["best"] >= q["train_speed"]["median"] > 0
    assert len(q["steps_to_target"]) == 2
  # Per-seed steps as text, ∞ for a seed that never reached the target.
  table = bn_report.table([{"cell": {"norm": "none"},
                            "steps_to_target": [None, 120]}],
                          ["steps_to_target"])
  assert table.splitlines()[-1] == "| none | ∞, 120 |"
  assert "None" not in (workdir / "report.md").read_text()
  d = summary["readings"]["batch"]["after_minus_before_test_accuracy"]
  a, b = summary["cells"][1], summary["cells"][0]
  assert d["per_seed"] == pytest.approx(
      [x - y for x, y in zip(a["test_accuracy"]["per_seed"],
                             b["test_accuracy"]["per_seed"])])
  # The positions really differ: the models are not the same network.
  assert a["test_accuracy"]["per_seed"] != b["test_accuracy"]["per_seed"]
  for name in ("summary.json", "report.md", "accuracy_vs_position.png"):
    assert (workdir / name).is_file(), name
  _check_cells_match_metrics(workdir, summary)
  rows = read_rows(workdir)
  evals = {r["step"] for r in rows if r["split"] == "test"}
  assert len(evals) >= 2  # accuracy-vs-step curves have several points
  assert_report_rebuilds(workdir)


class _Killed(BaseException):
  """Ends a run where a kill would (no `except Exception` catches it)."""


def test_cell_killed_before_its_timing_landed_is_timed_again(tmp_path,
                                                             monkeypatch):
  """A cell's result.json is written by its stage, then rewritten with its
  train speed: a run killed between the two had, after the rerun, no
  train_speed for that cell (nor its after/before speed ratio)."""
  from jaxunknowns import stages  # pylint: disable=g-import-not-at-top
  config = load_config("bn_placement", "runlocal",
                       {**DIGITS, "grid.baseline": False})

  def killed(folder, result):
    del folder, result
    raise _Killed()

  with monkeypatch.context() as patch:
    patch.setattr(stages, "rewrite_result", killed)
    with pytest.raises(_Killed):
      run_in_process(config, tmp_path)
  summary = run_in_process(config, tmp_path)
  assert all(q["train_speed"] and q["train_speed"]["median"] > 0
             for q in summary["cells"])
  assert all(r["train_steps_per_second_ratio_after_over_before"]
             for r in summary["readings"].values())


def test_bn_placement_speedup_verdict_reads_the_steps():
  """Both arms reaching the target at the same evaluation on every seed is
  a tie the evaluation interval cannot break (not testable, neither a
  speed-up nor its absence); BN's steps clearly fewer than no norm's
  agrees; a seed that never reached the target makes it not testable."""
  config = load_config("bn_placement", "fashion_mlp,runlocal")
  acc = lambda *v: {"mean": sum(v) / len(v), "per_seed": list(v)}
  def cell(norm, position, steps):
    return {"cell": {"norm": norm, "position": position},
            "steps_to_target": steps, "test_accuracy": acc(0.7, 0.72)}
  summary = {"cells": [cell("batch", "before", [10, 10]),
                       cell("batch", "after", [10, 10]),
                       cell("none", "before", [10, 10])],
             "target_accuracy": 0.3, "readings": {}}
  def speedup():
    rows = bn_report.placement(summary, config, {})
    return next(c for c in rows if c.quantity.startswith("steps to 30% test"))
  assert speedup().verdict == "not testable here"
  assert "no norm − BN per seed = 0 on every seed" in speedup().rule
  summary["cells"][0]["steps_to_target"] = [4, 5]
  summary["cells"][2]["steps_to_target"] = [20, 21]
  assert speedup().verdict == "agrees"
  assert speedup().ours == "no norm 20 ± 1, BN 4 ± 1 (n=2)"  # steps, unscaled
  summary["cells"][2]["steps_to_target"] = [20, None]
  assert speedup().verdict == "not testable here"


def test_steps_to_target_is_the_first_evaluation_at_the_target():
  """Hand-made test-accuracy rows of one cell: seed 0 reaches 80% at step
  20, falls back and reaches it again at step 40 (first: 20); seed 1 is
  there from step 10 on (10); seed 2 never (None). Rows of the other
  position, of the train split and out of step order must not count."""
  from jaxunknowns.batchnorm import bn_placement  # pylint: disable=g-import-not-at-top
  curves = {0: {10: 0.5, 20: 0.85, 30: 0.7, 40: 0.9},
            1: {10: 0.9, 20: 0.95, 30: 0.97},
            2: {10: 0.3, 20: 0.6, 30: 0.79}}
  rows = [{"split": "test", "norm": "batch", "position": "before",
           "seed": seed, "step": t, "accuracy": a}
          for seed, c in curves.items() for t, a in reversed(c.items())]
  rows += [{"split": "test", "norm": "batch", "position": "after",
            "seed": 2, "step": 5, "accuracy": 0.99},
           {"split": "train", "norm": "batch", "position": "before",
            "seed": 2, "step": 5, "accuracy": 0.99}]
  cell = {"cell": {"norm": "batch", "position": "before"}}
  assert bn_placement.steps_to_target(rows, cell, 0.8) == [20, 10, None]


def test_bn_regularization_end_to_end(tmp_path):
  config = load_config("bn_regularization", "runlocal", {
      **DIGITS, "grid.dropouts": (0.3,), "grid.weight_decays": (1e-3,)})
  workdir = tmp_path / "reg"
  summary = run_in_process(config, workdir)
  assert [q["cell"] for q in summary["cells"]] == [
      {"norm": n, "dropout": 0.3, "weight_decay": 1e-3}
      for n in ("batch", "none")]
  for name in ("summary.json", "report.md", "accuracy_vs_dropout.png"):
    assert (workdir / name).is_file(), name
  text = (workdir / "report.md").read_text()
  assert "accuracy_vs_dropout.png" in text
  # The grid's values as prose: one value each wrote "(0.3,)", and a
  # string axis "('batch', 'none')" (tuple reprs).
  assert ("norm (batch, none) × dropout (0.3) × weight_decay (0.001)"
          in text), text
  _check_cells_match_metrics(workdir, summary)
  saved = read_json(workdir / "config.json")
  assert saved["grid"]["dropouts"] == [0.3]
  assert_report_rebuilds(workdir)


def test_normalized_decay_leaves_the_cells_without_a_norm_undecayed():
  """optim.decay_on='normalized': a cell without a norm has no kernel a
  norm follows, so it trains without decay; the BN cells keep theirs."""
  from jaxunknowns.batchnorm import bn_regularization  # pylint: disable=g-import-not-at-top
  config = load_config("bn_regularization", "runlocal", {
      **DIGITS, "grid.weight_decays": (0.0, 1e-3),
      "optim.decay_on": "normalized"})
  axes = bn_regularization.axes(config)
  cells = bn_grid.expand(axes)
  configs = bn_grid.cell_configs(config, axes, cells,
                                 bn_regularization.derive, 400)
  assert [(q["norm"], c.optim.weight_decay, c.optim.decay_on)
          for q, c in zip(cells, configs)] == [
              (norm, wd if norm == "batch" else 0.0,
               "normalized" if norm == "batch" else "all")
              for norm in ("batch", "none") for _ in (0.0, 0.5)
              for wd in (0.0, 1e-3)]


def test_requested_steps_run_exactly_and_the_warm_up_compiles_the_tail(
    tmp_path, monkeypatch):
  """train.steps=25 at log_every 10 trains 25 steps (10, 10, then 5), as
  config.json says; the warm-up compiles the short last chunk too, so the
  fit traces nothing (its steps/s exclude compilation)."""
  config = load_config("bn_regularization", "runlocal", {
      **DIGITS, "grid.norms": ("none",), "grid.dropouts": (0.0,),
      "grid.weight_decays": (0.0,), "train.steps": 25,
      "train.log_every": 10})
  warmed = []
  warm_up = bn_grid.warm_up_and_time
  def recording(trainer, seeds, speed_steps):
    out = warm_up(trainer, seeds, speed_steps)
    warmed.append((trainer, trainer.trace_count))
    return out
  monkeypatch.setattr(bn_grid, "warm_up_and_time", recording)
  workdir = tmp_path / "steps"
  summary = run_in_process(config, workdir)
  assert [q["steps"] for q in summary["cells"]] == [25]
  assert read_json(workdir / "config.json")["train"]["steps"] == 25
  assert "25 steps" in (workdir / "report.md").read_text()
  assert sorted({r["step"] for r in read_rows(workdir)
                 if r["split"] == "minibatch"}) == [10, 20, 25]
  _check_cells_match_metrics(workdir, summary)
  assert [t.trace_count for t, _ in warmed] == [n for _, n in warmed]


# -----------------------------------------------------------------------------
# 4. Bad input: one line, exit 2, nothing written
# -----------------------------------------------------------------------------
BAD = [
    ("bn_batch_size", {"grid.batch_sizes": (1, 2)},
     ["grid cell norm=batch, batch_size=1", "train.batch_size=1",
      "degenerate"]),
    ("bn_batch_size", {"grid.norms": ("batch", "bogus")},
     ["unknown grid.norms 'bogus'", "batch, group, layer, none"]),
    ("bn_batch_size", {"grid.batch_sizes": ()}, ["grid.batch_sizes",
                                                 "non-empty"]),
    ("bn_batch_size", {"grid.lr_rule": "cubic"}, ["grid.lr_rule", "'cubic'"]),
    ("bn_batch_size", {"grid.batch_sizes": (2, 5000)},
     ["batch_size=5000", "larger than the training set"]),
    ("bn_placement", {"train.batch_size": 1}, ["train.batch_size=1",
                                               "degenerate"]),
    ("bn_placement", {"grid.positions": ("before", "inside")},
     ["unknown grid.positions 'inside'", "before, after"]),
    ("bn_regularization", {"grid.weight_decays": ()},
     ["grid.weight_decays", "non-empty"]),
    ("bn_regularization", {"grid.dropouts": (0.0, 1.0)},
     ["grid.dropouts", "[0, 1)"]),
    # 0 and 0.0: distinct by repr, one cell name ('dropout_0'): the second
    # cell read the first's result.json and the run exited 0.
    ("bn_regularization", {"grid.dropouts": (0, 0.0)},
     ["grid.dropouts=(0, 0.0)", "distinct values (0 and 0.0 are equal)"]),
    ("bn_regularization", {"grid.weight_decays": (1e-4, 1.00000001e-4)},
     ["grid.weight_decays=", "are both the cell 'weight_decay_0.0001'"]),
    ("bn_regularization", {"grid.norms": ("batch", "instance")},
     ["unknown grid.norms 'instance'"]),
    ("train", {"model.norm": "batch", "train.batch_size": 1},
     ["train.batch_size=1", "degenerate"]),
    # A field a grid axis writes in every cell: recorded, never trained.
    ("bn_batch_size", {"train.batch_size": 7},
     ["train.batch_size=7 is unused here", "grid.batch_sizes"]),
    ("bn_placement", {"model.norm": "layer"},
     ["model.norm='layer' is unused here", "grid.norms"]),
    ("bn_regularization", {"model.dropout": 0.3},
     ["model.dropout=0.3 is unused here", "grid.dropouts"]),
    ("bn_regularization", {"optim.weight_decay": 0.1},
     ["optim.weight_decay=0.1 is unused here", "grid.weight_decays"]),
    # Fields set_budget writes in every cell, and train.steps under an
    # epoch budget: recorded, never used.
    ("bn_placement", {"train.eval_every": 50},
     ["train.eval_every=50 is unused here", "grid.evals_per_cell"]),
    ("bn_regularization", {"train.checkpoint_every": 50},
     ["train.checkpoint_every=50 is unused here", "grid.evals_per_cell"]),
    ("bn_batch_size", {"train.steps": 13},
     ["train.steps=13 is unused here", "grid.epochs"]),
    # Recorded in config.json, never read: the lr is not scaled under 'none',
    # and no cell builds a group norm without 'group' in grid.norms.
    ("bn_batch_size", {"grid.lr_rule": "none", "grid.reference_batch_size": 64},
     ["grid.reference_batch_size=64 is unused here", "'none'"]),
    ("bn_batch_size", {"grid.norms": ("batch", "layer"),
                       "model.num_groups": 4},
     ["model.num_groups=4 is unused here", "'group' norms, not grid.norms"]),
    # optim.decay_on: refused where no cell decays, or where no cell has a
    # norm for 'normalized' to find kernels behind.
    ("bn_regularization", {"optim.decay_on": "kernels"},
     ["optim.decay_on='kernels' is unused here", "weight decay is used"]),
    ("bn_regularization", {"optim.decay_on": "normalized",
                           "grid.norms": ("none",),
                           "grid.weight_decays": (0.0, 1e-3)},
     ["optim.decay_on='normalized' is out of range", "grid.norms=('none',)"]),
    # A norm's own field with no norm in the grid that reads it.
    ("bn_regularization", {"grid.norms": ("none",),
                           "model.bn_scale_init": "uniform"},
     ["model.bn_scale_init='uniform' is unused here", "grid.norms=('none',)"]),
    # A training set smaller than a cell's batch (soudry2d's 16 points): the
    # error names the field that sets the batch, not train.batch_size, which
    # the batch-size grid refuses as unused.
    ("bn_batch_size", {"data.name": "soudry2d", "data.train_size": 0},
     ["batch_size=32 is larger than the training set (16 examples)",
      "lower grid.batch_sizes to at most 16"]),
    ("bn_placement", {"data.name": "soudry2d", "data.train_size": 0,
                      "grid.target_accuracy": 0.6},  # above 2 classes' chance
     ["train.batch_size=64 is larger than the training set (16 examples)",
      "lower train.batch_size to at most 16"]),
]


@pytest.mark.parametrize("name,overrides,needles", BAD,
                         ids=[f"{n}:{','.join(o)}" for n, o, _ in BAD])
def test_bad_input_is_one_line_before_the_workdir(tmp_path, name, overrides,
                                                  needles):
  variant = "mnist1d_mlp,runlocal" if name == "train" else "runlocal"
  config = load_config(name, variant, {**DIGITS, **overrides})
  workdir = tmp_path / "new"
  with pytest.raises(UserError) as info:
    run_in_process(config, workdir)
  message = str(info.value)
  assert "\n" not in message
  for needle in needles:
    assert needle in message, (needle, message)
  assert not workdir.exists()
  existing = tmp_path / "existing"
  existing.mkdir()
  (existing / "notes.txt").write_text("keep me")
  before = snapshot(existing)
  with pytest.raises(UserError):
    run_in_process(config, existing)
  assert snapshot(existing) == before


@pytest.mark.parametrize("flags,needles", [
    (["--config.grid.batch_sizes=(1,2)"], ["batch_size=1", "degenerate"]),
    (["--config.grid.norms=('batch','bogus')"], ["unknown grid.norms 'bogus'"]),
    (["--config.grid.batch_sizes=()"], ["grid.batch_sizes", "non-empty"]),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, flags, needles):
  workdir = tmp_path / "run"
  proc = subprocess.run(
      [sys.executable, "-m", "jaxunknowns.main",
       "--config=configs/bn_batch_size.py:runlocal", f"--workdir={workdir}",
       "--config.data.name=digits", *flags],
      cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
  assert "Traceback" not in proc.stderr
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1, proc.stderr[-3000:]
  for needle in needles:
    assert needle in errors[0], (needle, errors[0])
  assert not workdir.exists()


def test_the_typical_batch_is_the_largest_at_most_32():
  """Wu & He's per-GPU batch is 32: a grid holding 32 measures the drop from
  32 itself (not from 16), and a grid with nothing at or below 32 from its
  smallest batch."""
  from jaxunknowns.batchnorm import bn_batch_size  # pylint: disable=g-import-not-at-top
  assert bn_batch_size.typical_batch((2, 4, 16, 32, 128)) == 32
  assert bn_batch_size.typical_batch((2, 8, 48)) == 8
  assert bn_batch_size.typical_batch((64, 256)) == 64


def _seeds3(m):
  """Three seeds at m − 0.01, m, m + 0.01 (sample std 0.01)."""
  v = [m - 0.01, m, m + 0.01]
  return {"mean": m, "std": 0.01, "per_seed": v}


def test_batch_size_rows_compare_the_cells_each_claim_names():
  """Wu & He on a hand-made grid (batch 2, 16, 32; typical 32): BN falls
  from 32 to 2 (91 → 51%: agrees); GN at 2 is 4 points below GN at 32,
  beyond 1 point + 2 × std (3 points): differs from 'stable'; GN above BN
  at batch 2 (87 vs 51%: agrees); GN like BN at 32 (both 91%: agrees).
  Worked out by hand from each rule's text; a grid whose typical batch is
  its smallest has no 'typical vs smallest' row (a cell against itself)."""
  acc = {("batch", 2): 0.51, ("batch", 16): 0.80, ("batch", 32): 0.91,
         ("group", 2): 0.87, ("group", 16): 0.89, ("group", 32): 0.91}
  cells = [{"cell": {"norm": n, "batch_size": b}, "test_accuracy": _seeds3(a)}
           for (n, b), a in acc.items()]
  config = load_config("bn_batch_size", overrides={
      "grid.batch_sizes": (2, 16, 32), "grid.norms": ("batch", "group")})
  got = {c.quantity: c.verdict
         for c in bn_report.batch_size({"cells": cells}, config, {})}
  assert got == {"batch norm test accuracy (%), batch 32 vs 2": "agrees",
                 "group norm test accuracy (%), batch 32 vs 2": "differs",
                 "GN vs BN test accuracy (%) at batch 2": "agrees",
                 "GN vs BN test accuracy (%) at batch 32": "agrees"}, got
  config = load_config("bn_batch_size", overrides={
      "grid.batch_sizes": (64, 128), "grid.norms": ("batch", "group")})
  cells = [{"cell": {"norm": n, "batch_size": b}, "test_accuracy": _seeds3(
      0.9)} for n in ("batch", "group") for b in (64, 128)]
  got = [c.quantity for c in bn_report.batch_size({"cells": cells}, config,
                                                  {})]
  assert not any("vs 64" in q for q in got), got


def test_regularization_and_modes_rows_read_their_own_cells():
  """Hand-made cells, each row's verdict by hand from its paired rule:
  the gap no norm 20 points vs BN 5: smaller with BN (agrees); BN at
  dropout 0 (91%) above dropout 0.5 (81%): agrees; BN's gap unchanged by
  weight decay (5 vs 5.5 points, within 1 point): agrees. Inference modes:
  running (90%) above batch statistics at the smallest eval batch 2 (60%;
  batch 64: 89%), updated (88%) above stale (70%), re-estimated (85%)
  above the training statistics (40%): each agrees."""
  config = load_config("bn_regularization", overrides={
      "grid.dropouts": (0.0, 0.5), "grid.weight_decays": (0.0, 1e-3)})
  def cell(norm, d, w, gap, acc):
    return {"cell": {"norm": norm, "dropout": d, "weight_decay": w},
            "gap": _seeds3(gap), "test_accuracy": _seeds3(acc)}
  cells = [cell("none", 0.0, 0.0, 0.20, 0.70),
           cell("batch", 0.0, 0.0, 0.05, 0.91),
           cell("batch", 0.5, 0.0, 0.02, 0.81),
           cell("batch", 0.0, 1e-3, 0.055, 0.90),
           cell("batch", 0.5, 1e-3, 0.30, 0.50)]
  rows = bn_report.regularization({"cells": cells}, config, {})
  assert [(c.verdict, c.ours.split(",")[0]) for c in rows] == [
      ("agrees", "no norm 20.00 ± 1.00"), ("agrees", "dropout 0 91.00 ± 1.00"),
      ("agrees", "wd 0.001 5.50 ± 1.00")], rows
  modes = {"running": 0.90, "batch_2": 0.60, "batch_64": 0.89,
           "fresh_finetune": 0.88, "stale_finetune": 0.70,
           "shift_recalibrated": 0.85, "shift_stale": 0.40}
  rows = bn_report.bn_modes({"modes": {k: _seeds3(v)
                                       for k, v in modes.items()}}, None, {})
  assert [(c.verdict, c.ours.split(" (")[0]) for c in rows[:3]] == [
      ("agrees", "running 90.00 ± 1.00, batch 60.00 ± 1.00"),
      ("agrees", "updated 88.00 ± 1.00, stale 70.00 ± 1.00"),
      ("agrees", "re-estimated 85.00 ± 1.00, training 40.00 ± 1.00")], rows


def _bn_grid_stat(*values):
  return {"mean": sum(values) / len(values), "per_seed": list(values)}


def test_bn_falls_at_small_batch_reads_the_typical_batch_first():
  """Wu & He: BN's accuracy falls at a small batch. Batch 32 (the typical)
  above batch 2 by 20 points on both seeds agrees; batch 2 above batch 32
  by as much differs. The quantity names the typical batch first."""
  config = load_config("bn_batch_size")
  def verdict(at_32, at_2):
    cells = [{"cell": {"norm": "batch", "batch_size": b},
              "test_accuracy": _bn_grid_stat(*a)}
             for b, a in ((32, at_32), (2, at_2))]
    rows = bn_report.batch_size({"cells": cells}, config, {})
    return next(c for c in rows if c.quantity ==
                "batch norm test accuracy (%), batch 32 vs 2").verdict
  assert verdict((0.80, 0.70), (0.60, 0.50)) == "agrees"
  assert verdict((0.60, 0.50), (0.80, 0.70)) == "differs"


def test_regularization_rows_read_their_own_cells_in_the_claims_order():
  """Hand-made cells (dropout 0 or 0.5 × wd 0 or 5e-4, 2 seeds): no norm's
  train − test gap (10, 12 points) above BN's (2, 3) agrees with 'smaller
  with BN'; BN without dropout (80, 78%) above BN with dropout 0.5 at wd 0
  (70, 69%) agrees with 'lower with dropout'. The wd 5e-4 cell with
  dropout (85, 83%) is another row's and must not be read here."""
  config = load_config("bn_regularization",
                       overrides={"grid.weight_decays": (0.0, 5e-4)})
  def cell(norm, dropout, wd, gap, acc):
    return {"cell": {"norm": norm, "dropout": dropout, "weight_decay": wd},
            "gap": _bn_grid_stat(*gap), "test_accuracy": _bn_grid_stat(*acc)}
  cells = [cell("none", 0.0, 0.0, (0.10, 0.12), (0.6, 0.6)),
           cell("batch", 0.0, 0.0, (0.02, 0.03), (0.80, 0.78)),
           cell("batch", 0.5, 0.0, (0.01, 0.01), (0.70, 0.69)),
           cell("batch", 0.0, 5e-4, (0.02, 0.03), (0.8, 0.8)),
           cell("batch", 0.5, 5e-4, (0.01, 0.01), (0.85, 0.83))]
  rows = {c.quantity: c for c in bn_report.regularization(
      {"cells": cells}, config, {})}
  gap = rows["train − test gap (points), no norm vs BN (dropout 0, wd 0)"]
  assert gap.verdict == "agrees", gap
  assert gap.ours.startswith("no norm 11.00"), gap
  drop = rows["BN test accuracy (%) without vs with dropout 0.5 (wd 0)"]
  assert drop.verdict == "agrees", drop
