"""`bn_placement`: batch norm before vs after the activation (Dense -> BN ->
ReLU, the original paper's placement, vs Dense -> ReLU -> BN), several seeds;
final accuracy, accuracy-vs-step curves, steps to a target accuracy, and
training speed (steps/s of the fit, and a pure-training throughput measured
after compilation). An optional `none` cell is the no-norm baseline.
"""

import numpy as np
from absl import logging

from jaxunknowns import experiments, validation
from jaxunknowns.batchnorm import bn_grid
from jaxunknowns.metrics import curves, read_metrics, stats
from jaxunknowns.models import layers
from jaxunknowns.models.layers import NORM_POSITIONS, check_choice

GRID_NORMS = ("batch", "group", "layer")


def axes(config):
  return [bn_grid.norm_axis(config),
          bn_grid.Axis("position", "model.norm_position",
                       tuple(config.grid.positions), "grid.positions")]


def extra_cells(config):
  return [{"norm": "none", "position": "before"}] if config.grid.baseline else []


def validate(config):
  g, check = config.grid, validation.check
  for position in g.positions:
    check_choice("grid.positions", position, NORM_POSITIONS)
  check(0.0 < g.target_accuracy <= 1.0, "grid.target_accuracy",
        g.target_accuracy, "in (0, 1]")
  validation.check_int(g.evals_per_cell, "grid.evals_per_cell", 1,
                       "the accuracy-vs-step curves")
  validation.check_int(g.speed_steps, "grid.speed_steps", 0, "0 = no timing")
  bn_grid.validate_grid(config, axes(config), GRID_NORMS)
  bn_grid.refuse_budget_fields(config)


def derive(c, cell, num_train):
  del cell, num_train
  bn_grid.set_budget(c, c.train.steps, c.grid.evals_per_cell)


def steps_to_target(rows, cell, target):
  """Per seed: the first evaluated step with test accuracy >= target (None if
  never reached)."""
  per_seed = curves(rows, "test", "accuracy", **cell["cell"])
  out = []
  for seed in sorted(per_seed):
    hit = [t for t, a in sorted(per_seed[seed].items()) if a >= target]
    out.append(hit[0] if hit else None)
  return out


def run(config, workdir):
  g = config.grid
  summary = bn_grid.run_grid(
      config, workdir, axes(config), derive=derive,
      extra_cells=extra_cells(config), speed_steps=g.speed_steps,
      check_data=lambda ds: validation.check_above_chance(
          "grid.target_accuracy", g.target_accuracy, ds.num_classes))
  rows = read_metrics(workdir.path)
  for q in summary["cells"]:
    hits = steps_to_target(rows, q, g.target_accuracy)
    q["steps_to_target"] = hits
    ok = [h for h in hits if h is not None]
    q["steps_to_target_mean"] = float(np.mean(ok)) if len(ok) == len(hits) else None
  summary.update(experiment="bn_placement",
                 target_accuracy=g.target_accuracy,
                 readings=readings(summary["cells"], list(g.norms)))
  experiments.finish("bn_placement", workdir, config, summary)
  logging.info("readings: %s", summary["readings"])
  return summary


def readings(cells, norms):
  """after - before, per norm: test accuracy (per-seed differences: both
  positions train from the same seeds and see the same batches) and speed."""
  out = {}
  for norm in norms:
    before = bn_grid.find(cells, norm=norm, position="before")
    after = bn_grid.find(cells, norm=norm, position="after")
    if not (before and after):
      continue
    b, a = before[0], after[0]
    out[norm] = {
        "after_minus_before_test_accuracy": stats(
            bn_grid.per_seed(a, "test_accuracy")
            - bn_grid.per_seed(b, "test_accuracy")),
        "train_steps_per_second_ratio_after_over_before": (
            a["train_speed"]["median"] / b["train_speed"]["median"]
            if a.get("train_speed") and b.get("train_speed") else None),
    }
  return out


experiments.register(
    "bn_placement", validate=validate, own_fields=layers.NORM_FIELD_PATHS,
    report="jaxunknowns.batchnorm.bn_report:write_grid",
    multi_process=True)(run)
