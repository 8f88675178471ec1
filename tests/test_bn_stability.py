"""Tests of `bn_stability` (jaxunknowns/batchnorm/bn_stability.py) and the
per-run init scale it relies on (`Trainer.init_variables(init_scale=...)`).

* The init scale multiplies every kernel of a run's init exactly (its std
  by exactly the scale), and nothing else, against the unscaled init.
* End to end on sklearn digits with a tiny MLP and a 2 x 2 grid of two
  norms: a learning rate that diverges is recorded as diverged (with its
  step) while the other runs of the same program complete; a rerun after
  losing summary.json and one norm's stage retrains only that norm; the
  report rebuilds byte for byte.
* The readings by hand: the trainable region per seed (a diverged run never
  in it), the best lr picked on validation, the largest stable lr.
* The verdicts: a norm that never reaches the target counts as budget + 1.
* Bad input (an empty grid, a non-positive lr or scale, an unknown norm):
  one-line UserError, exit 2 on the command line, nothing written.
"""

import json
import os
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxunknowns import runs
from run_helpers import (assert_cli_one_line_error, assert_report_rebuilds,
                         assert_user_error_before_writing, run_in_process,
                         snapshot)

ROOT = Path(__file__).resolve().parents[1]
DIGITS = {"data.name": "digits", "data.train_size": 400,
          "data.validation_size": 100}


def load_config(overrides=None, variant="runlocal"):
  from jaxunknowns.config_loading import load_config as load  # pylint: disable=g-import-not-at-top
  return load(f"configs/bn_stability.py:{variant}",
              {**DIGITS, **(overrides or {})}, root=str(ROOT))


def test_init_scale_multiplies_every_kernel_exactly():
  config = load_config({"model.norm": "batch"})
  trainer = runs.build_trainer(config)
  plain = jax.device_get(trainer.init_variables([0, 1]))
  scales = [3.0, 0.25]
  scaled = jax.device_get(trainer.init_variables([0, 1], init_scale=scales))
  flat = jax.tree_util.tree_flatten_with_path
  kernels = 0
  for (path, a), (_, b) in zip(flat(plain["params"])[0],
                               flat(scaled["params"])[0]):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if path[-1].key != "kernel":  # Biases, BN's scale and bias: untouched.
      np.testing.assert_array_equal(a, b)
      continue
    kernels += 1
    for r, s in enumerate(scales):
      np.testing.assert_allclose(b[r], s * a[r], rtol=1e-6)
      assert np.std(b[r]) / np.std(a[r]) == pytest.approx(s, rel=1e-6)
  assert kernels == 3  # Dense_0, Dense_1 and output.
  np.testing.assert_array_equal(jax.device_get(
      trainer.init_variables([0, 1], init_scale=[1.0, 1.0]))["params"][
          "output"]["kernel"], plain["params"]["output"]["kernel"])


def _rows(workdir):
  with open(Path(workdir) / "metrics.jsonl") as f:
    return [json.loads(line) for line in f if line.strip()]


def test_diverging_cell_recorded_others_complete_and_resume(tmp_path):
  config = load_config({"grid.lrs": (0.1, 1000.0)})
  workdir = tmp_path / "stability"
  summary = run_in_process(config, workdir)
  cells = {(q["cell"]["norm"], q["cell"]["lr"], q["cell"]["init_scale"]): q
           for q in summary["cells"]}
  assert len(cells) == 8
  for (norm, lr, scale), q in cells.items():
    if lr == 1000.0 and norm == "batch":  # NaN in every seed, in the budget.
      assert all(d is not None and 1 <= d <= 20 for d in q["diverged_at"])
      assert q["steps_to_target"]["per_seed"] == [None, None]
      assert q["test_loss"]["per_seed"] == [None, None]
    elif lr == 0.1:  # Same program, trained to the end with finite numbers.
      assert q["diverged_at"] == [None, None], (norm, lr, scale)
      assert all(np.isfinite(q["test_loss"]["per_seed"]))
  # The log holds no row of a run after it diverged.
  rows = [r for r in _rows(workdir) if r["split"] == "minibatch"]
  for r in rows:
    q = cells[r["norm"], r["lr"], r["init_scale"]]
    d = q["diverged_at"][summary["seeds"].index(r["seed"])]
    assert d is None or r["step"] < d
  read = summary["readings"]
  assert read["batch"]["max_stable_lr"]["per_seed"] == [0.1, 0.1]
  assert read["batch"]["region_lrs"]["per_seed"] == [1.0, 1.0]  # lr 0.1 only
  for name in ("summary.json", "report.md", "heatmaps.png", "region.png",
               "config.json"):
    assert (workdir / name).is_file(), name
  report = (workdir / "report.md").read_text()
  assert "Bjorck et al. 2018" in report
  # Per-seed lists as text: '–' never diverged, not Python's [None, None].
  assert "None" not in report and "| –, – |" in report
  # The grid as prose, not tuple reprs ("norms ('none', 'batch')").
  assert "lrs (0.1, 1000.0) × init scales" in report
  assert "norms (none, batch)" in report, report
  # The max stable lr in 3 significant digits (an lr of 0.003 is no "0.00").
  assert "| 0.1 ± 0 (n=2) |" in report

  # A rerun after losing summary.json and the batch norm program retrains
  # that program only (the other's stage untouched), to the same numbers,
  # and its log rows are not duplicated.
  stages = workdir / "stages"
  before = snapshot(stages / "norm_none")
  os.remove(workdir / "summary.json")
  shutil.rmtree(stages / "norm_batch")
  again = run_in_process(config, workdir)
  assert snapshot(stages / "norm_none") == before
  assert (stages / "norm_batch" / "result.json").is_file()
  for a, b in zip(summary["cells"], again["cells"]):
    assert a["test_accuracy"]["per_seed"] == pytest.approx(
        b["test_accuracy"]["per_seed"], abs=1e-6)
    assert a["diverged_at"] == b["diverged_at"]
  assert len([r for r in _rows(workdir) if r["split"] == "minibatch"]) == len(
      rows)
  assert_report_rebuilds(workdir)


def test_region_readings_by_hand():
  """2 lrs x 2 scales, 2 seeds: the region is each seed's cells within the
  tolerance of that seed's best, a diverged run never in it."""
  from jaxunknowns.batchnorm import bn_stability  # pylint: disable=g-import-not-at-top
  config = load_config({"grid.norms": ("batch",), "grid.lrs": (0.1, 1.0),
                        "grid.init_scales": (1.0, 3.0),
                        "grid.region_tolerance": 0.02})
  acc = {(0.1, 1.0): [0.805, 0.70], (0.1, 3.0): [0.79, 0.60],
         (1.0, 1.0): [0.81, 0.69], (1.0, 3.0): [0.90, 0.10]}
  diverged = {(1.0, 3.0): [5, None]}  # Seed 0's best cell diverged.
  steps = {(0.1, 1.0): [40, None], (1.0, 1.0): [20, 30]}
  cells = [{"cell": {"norm": "batch", "lr": lr, "init_scale": s},
            "test_accuracy": {"per_seed": a},
            "validation_accuracy": {"mean": 0.7 + 0.01 * lr},
            "diverged_at": diverged.get((lr, s), [None, None]),
            "steps_to_target": {"per_seed": steps.get((lr, s), [None] * 2)}}
           for (lr, s), a in acc.items()]
  r = bn_stability.readings(cells, config, 20)["batch"]
  # Seed 0: best 0.81 (the 0.90 diverged) -> 0.805, 0.79, 0.81 trainable;
  # seed 1: best 0.70 -> 0.70 and 0.69.
  assert r["region_cells"]["per_seed"] == [3, 2]
  assert r["region_lrs"]["per_seed"] == [2, 2]
  assert r["region_init_scales"]["per_seed"] == [2, 1]
  assert r["best_lr"] == 1.0  # On validation (test would pick lr 0.1).
  assert r["steps_to_target_at_best_lr"]["per_seed"] == [20, 30]
  assert r["max_stable_lr"]["per_seed"] == [1.0, 1.0]


def test_a_run_that_blew_up_and_settled_at_chance_is_not_trainable():
  """BN at lr 3 never turned NaN but ended at chance (its loss blew up and
  settled): 'never diverged' counted it stable, so the largest stable lr
  was the grid's largest. The largest trainable lr is the last lr whose
  run is within the tolerance of the seed's best."""
  from jaxunknowns.batchnorm import bn_stability  # pylint: disable=g-import-not-at-top
  config = load_config({"grid.norms": ("batch",),
                        "grid.lrs": (0.1, 1.0, 3.0), "grid.init_scales": (1.0,),
                        "grid.region_tolerance": 0.02})
  acc = {0.1: [0.80, 0.79], 1.0: [0.81, 0.70], 3.0: [0.12, 0.11]}
  cells = [{"cell": {"norm": "batch", "lr": lr, "init_scale": 1.0},
            "test_accuracy": {"per_seed": a},
            "validation_accuracy": {"mean": 0.5},
            "diverged_at": [None, None],
            "steps_to_target": {"per_seed": [None, None]}}
           for lr, a in acc.items()]
  r = bn_stability.readings(cells, config, 20)["batch"]
  assert r["max_stable_lr"]["per_seed"] == [3.0, 3.0]
  # Seed 0: best 0.81 at lr 1; seed 1: best 0.79 at lr 0.1 (0.70 is not
  # within 2 points of it).
  assert r["max_trainable_lr"]["per_seed"] == [1.0, 0.1]
  # A summary written before the reading: the report takes it from the
  # summary's cells.
  from jaxunknowns.batchnorm import bn_report  # pylint: disable=g-import-not-at-top
  old = {"cells": cells, "lrs": [0.1, 1.0, 3.0], "init_scales": [1.0],
         "region_tolerance": 0.02, "readings": {"batch": {
             k: v for k, v in r.items() if k != "max_trainable_lr"}}}
  got = bn_report.with_trainable_lr(old)["readings"]["batch"]
  assert got["max_trainable_lr"]["per_seed"] == [1.0, 0.1]


def test_a_seed_whose_every_run_diverged_has_no_trainable_cell():
  """At lrs 100 and 1000 every run of a seed diverged: its best was -inf and
  all its (diverged) cells counted as the trainable region, so a grid where
  nothing trained reported 2 of 2 trainable lrs for BN and no norm alike."""
  from jaxunknowns.batchnorm import bn_stability  # pylint: disable=g-import-not-at-top
  config = load_config({"grid.norms": ("batch",), "grid.lrs": (100.0, 1000.0),
                        "grid.init_scales": (1.0, 3.0)})
  cells = [{"cell": {"norm": "batch", "lr": lr, "init_scale": s},
            "test_accuracy": {"per_seed": [0.1, 0.1]},
            "validation_accuracy": {"mean": 0.1},
            # Seed 1 never diverged at lr 100, init scale 3.
            "diverged_at": [6, None if (lr, s) == (100.0, 3.0) else 7],
            "steps_to_target": {"per_seed": [None, None]}}
           for lr in (100.0, 1000.0) for s in (1.0, 3.0)]
  r = bn_stability.readings(cells, config, 20)["batch"]
  assert r["region_cells"]["per_seed"] == [0, 1]
  assert r["region_lrs"]["per_seed"] == [0, 1]
  assert r["region_init_scales"]["per_seed"] == [0, 1]


def test_gap_at_best_lrs_reads_each_norm_at_its_own_best_lr():
  """Bjorck et al.'s comparison: BN at its best lr (1.0) against no norm at
  ITS best lr (0.1), seed by seed; and both at the smallest lr. The
  differences are worked out by hand from made-up accuracies, where no
  norm at BN's best lr (0.30, 0.20) would give another answer."""
  from jaxunknowns.batchnorm import bn_stability  # pylint: disable=g-import-not-at-top
  config = load_config({"grid.norms": ("none", "batch"),
                        "grid.lrs": (0.1, 1.0), "grid.init_scales": (1.0,)})
  acc = {("none", 0.1): [0.60, 0.62], ("none", 1.0): [0.30, 0.20],
         ("batch", 0.1): [0.65, 0.66], ("batch", 1.0): [0.80, 0.84]}
  cells = [{"cell": {"norm": norm, "lr": lr, "init_scale": 1.0},
            "test_accuracy": {"per_seed": a}}
           for (norm, lr), a in acc.items()]
  got = bn_stability.gaps(cells, config, {"batch": 1.0, "none": 0.1})
  assert got["smallest_lr"] == 0.1
  assert got["at_smallest_lr"]["per_seed"] == pytest.approx([0.05, 0.04])
  assert got["at_best_lrs"]["per_seed"] == pytest.approx([0.20, 0.22])


def test_steps_verdict_counts_never_as_budget_plus_one():
  from jaxunknowns.batchnorm import bn_report  # pylint: disable=g-import-not-at-top
  def stat(*v):
    return {"mean": float(np.mean(v)), "per_seed": list(v)}
  def norm(steps):
    return {k: stat(1.0, 1.0) for k in (
        "region_cells", "region_lrs", "region_init_scales", "max_stable_lr",
        "max_trainable_lr")
            } | {"steps_to_target_at_best_lr": {"per_seed": steps}}
  summary = {"steps": 100, "target_accuracy": 0.8, "lrs": [0.1],
             "init_scales": [1.0],
             "readings": {"none": norm([None, None]), "batch": norm([20, 40])}}
  def steps_row():
    return next(c for c in bn_report.stability(summary, {})
                if c.quantity.startswith("steps to"))
  assert steps_row().verdict == "agrees"
  assert "no norm − BN per seed = +71.00" in steps_row().rule
  summary["readings"]["batch"] = norm([None, None])
  # Both never (both at the cap): a tie the budget cannot break.
  assert steps_row().verdict == "not testable here"
  assert steps_row().reasons == ("a tie the measurement cannot break",)


@pytest.mark.parametrize("overrides,needle", [
    ({"grid.lrs": ()}, "grid.lrs"),
    ({"grid.init_scales": ()}, "grid.init_scales"),
    ({"grid.norms": ()}, "grid.norms"),
    ({"grid.lrs": (0.1, 0.0)}, "grid.lrs"),
    ({"grid.lrs": (-0.1,)}, "grid.lrs"),
    ({"grid.init_scales": (1.0, -2.0)}, "grid.init_scales"),
    ({"grid.init_scales": (0.0, 1.0)}, "grid.init_scales"),
    ({"grid.init_scales": (0.5, 2.0)}, "1.0"),
    # Equal values, distinct by repr: cells_of grouped the runs of lr 1 and
    # lr 1.0 into one cell of twice the seeds.
    ({"grid.lrs": (1, 1.0)}, "grid.lrs=(1, 1.0) is out of range: must be "
     "distinct values (1 and 1.0 are equal)"),
    ({"grid.init_scales": (1.0, 1)}, "1.0 and 1 are equal"),
    ({"grid.norms": ("batch", "weight")}, "weight"),
    # Each run takes its lr from grid.lrs: optim.lr would be recorded only.
    ({"optim.lr": 0.5}, "optim.lr=0.5 is unused here"),
    # A batch the data cannot hold: the trainers were built after the
    # workdir opened, so its config.json then refused the corrected rerun.
    ({"data.name": "digits", "data.train_size": 20},
     "train.batch_size=32 is larger than the training set (20 examples): "
     "lower it to at most 20"),
])
def test_bad_grid_is_one_line_and_writes_nothing(tmp_path, overrides, needle):
  assert_user_error_before_writing(load_config(overrides), tmp_path / "w",
                                   [needle])


def test_unknown_norm_on_the_command_line(tmp_path):
  assert_cli_one_line_error(
      ["--config=configs/bn_stability.py:fashion_mlp,runlocal",
       "--config.grid.norms=('batch','weight')"], tmp_path / "w", "weight")


def test_stability_rows_read_each_reading_and_the_gaps_order():
  """Hand-made readings (2 seeds): BN trainable at 3 init scales on each
  seed, no norm at 1 (both at 1 lr): 'more init scales with BN' agrees
  (+2 on each seed), read from the init-scale counts, not the lr counts
  (a tie). Bjorck et al.'s gap at the best lrs (20, 22 points) above the
  gap at the smallest lr (5, 4) agrees with 'smaller at a small lr'; the
  reverse differs."""
  from jaxunknowns.batchnorm import bn_report  # pylint: disable=g-import-not-at-top
  def stat(*v):
    return {"mean": float(np.mean(v)), "per_seed": list(v)}
  def reading(init_scales):
    return {"region_init_scales": stat(*init_scales),
            "region_lrs": stat(1.0, 1.0), "max_trainable_lr": stat(0.1, 0.1),
            "steps_to_target_at_best_lr": {"per_seed": [20, 20]}}
  def rows(best, smallest):
    summary = {"steps": 100, "target_accuracy": 0.8, "lrs": [0.1, 1.0],
               "init_scales": [1.0, 2.0, 3.0],
               "readings": {"batch": reading((3, 3)),
                            "none": reading((1, 1))},
               "gaps": {"smallest_lr": 0.1, "at_best_lrs": stat(*best),
                        "at_smallest_lr": stat(*smallest)}}
    return {c.quantity: c for c in bn_report.stability(summary, {})}
  got = rows((0.20, 0.22), (0.05, 0.04))
  scales = got["init scales with a trainable cell (of 3)"]
  assert scales.verdict == "agrees", scales
  assert scales.rule.startswith("BN − no norm per seed = +2"), scales.rule
  gap = ("BN − no norm test accuracy (points): each at its best lr vs both "
         "at lr 0.1")
  assert got[gap].verdict == "agrees", got[gap]
  assert rows((0.05, 0.04), (0.20, 0.22))[gap].verdict == "differs"
