"""`bn_batch_size`: accuracy vs per-step batch size for batch, group, layer
and no normalization (Wu & He 2018, Fig. 1: BN's error grows as the batch
shrinks, GN's does not).

The grid is `grid.norms` x `grid.batch_sizes`. The learning rate at batch B
is `optim.lr` (the rate at `grid.reference_batch_size`) scaled by
`grid.lr_rule`; with `grid.epochs` > 0 every cell sees the same number of
examples (steps = epochs x train size / B), else every cell trains
`train.steps` steps. Both rules are written into report.md.
"""

from absl import logging

from jaxunknowns import experiments, validation
from jaxunknowns.batchnorm import bn_grid
from jaxunknowns.metrics import stats
from jaxunknowns.models import layers
from jaxunknowns.models.layers import check_choice

GRID_NORMS = ("batch", "group", "layer", "none")


def axes(config):
  return [bn_grid.norm_axis(config),
          bn_grid.Axis("batch_size", "train.batch_size",
                       tuple(config.grid.batch_sizes), "grid.batch_sizes")]


def validate(config):
  g, check = config.grid, validation.check
  check(all(isinstance(b, int) and not isinstance(b, bool) and b >= 1
            for b in g.batch_sizes), "grid.batch_sizes", tuple(g.batch_sizes),
        "positive integers")
  check_choice("grid.lr_rule", g.lr_rule, bn_grid.LR_RULES)
  validation.check_int(g.reference_batch_size, "grid.reference_batch_size", 1)
  validation.check_applies(
      config, "grid.reference_batch_size", g.lr_rule != "none",
      "to grid.lr_rule 'linear' or 'sqrt' (the lr is not scaled with 'none')")
  check(g.epochs >= 0, "grid.epochs", g.epochs,
        ">= 0 (0 = train.steps steps in every cell)")
  validation.check_int(g.evals_per_cell, "grid.evals_per_cell", 0)
  bn_grid.validate_grid(config, axes(config), GRID_NORMS, g.batch_sizes)
  bn_grid.refuse_budget_fields(config)
  validation.check_applies(
      config, "train.steps", g.epochs == 0, "only with grid.epochs=0: each "
      f"cell trains grid.epochs={g.epochs:g} of the training set")


def derive(c, cell, num_train):
  """The cell's learning rate (scaled) and step budget."""
  g, b = c.grid, cell["batch_size"]
  c.optim.lr = bn_grid.scaled_lr(c.optim.lr, b, g.reference_batch_size,
                                 g.lr_rule)
  steps = (bn_grid.epochs_to_steps(g.epochs, num_train, b) if g.epochs > 0
           else c.train.steps)
  bn_grid.set_budget(c, steps, g.evals_per_cell, round_up=g.epochs > 0)


def typical_batch(batch_sizes) -> int:
  """The batch the drop at the smallest batch is measured from, fixed before
  the run (no selection on test): the grid's largest batch at most Wu & He's
  per-GPU 32, else its smallest."""
  from jaxunknowns.batchnorm import papers  # pylint: disable=g-import-not-at-top
  typical = [b for b in batch_sizes if b <= papers.TYPICAL_BATCH]
  return max(typical) if typical else min(batch_sizes)


def readings(cells, norms):
  """Per norm: test accuracy lost from the typical batch to the smallest,
  per seed (the cells of a norm train the same seeds)."""
  out = {}
  for norm in norms:
    pts = {q["cell"]["batch_size"]: q for q in bn_grid.find(cells, norm=norm)}
    small, typical = min(pts), typical_batch(pts)
    out[norm] = {"smallest_batch": small, "typical_batch": typical,
                 "drop_at_smallest": stats(
                     bn_grid.per_seed(pts[typical], "test_accuracy")
                     - bn_grid.per_seed(pts[small], "test_accuracy"))}
  return out


def run(config, workdir):
  g = config.grid
  summary = bn_grid.run_grid(config, workdir, axes(config), derive=derive)
  summary.update(
      experiment="bn_batch_size", lr_rule=g.lr_rule,
      reference_batch_size=g.reference_batch_size,
      reference_lr=config.optim.lr, epochs=g.epochs,
      readings=readings(summary["cells"], list(g.norms)))
  experiments.finish("bn_batch_size", workdir, config, summary)
  logging.info("readings: %s", summary["readings"])
  return summary


experiments.register(
    "bn_batch_size", validate=validate, own_fields=layers.NORM_FIELD_PATHS,
    report="jaxunknowns.batchnorm.bn_report:write_grid",
    multi_process=True)(run)
