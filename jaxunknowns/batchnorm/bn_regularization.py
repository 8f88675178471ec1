"""`bn_regularization`: batch norm on/off x dropout rate x weight decay.

Per cell: test accuracy and the train - test gap (both in eval mode), as
heatmaps (rows dropout, columns weight decay, one panel per norm). The
question (Ioffe & Szegedy 2015; Li et al. 2019 on BN and dropout's "variance
shift"; van Laarhoven 2017 on L2 with BN): does BN regularize on its own,
and do dropout and weight decay add to it or fight it?
"""

from jaxunknowns import experiments, validation
from jaxunknowns.batchnorm import bn_grid
from jaxunknowns.models import layers

GRID_NORMS = ("batch", "group", "layer", "none")


def axes(config):
  g = config.grid
  return [bn_grid.norm_axis(config),
          bn_grid.Axis("dropout", "model.dropout", tuple(g.dropouts),
                       "grid.dropouts"),
          bn_grid.Axis("weight_decay", "optim.weight_decay",
                       tuple(g.weight_decays), "grid.weight_decays")]


def validate(config):
  g, check = config.grid, validation.check
  check(all(0.0 <= p < 1.0 for p in g.dropouts), "grid.dropouts",
        tuple(g.dropouts), "rates in [0, 1)")
  check(all(w >= 0.0 for w in g.weight_decays), "grid.weight_decays",
        tuple(g.weight_decays), "values >= 0")
  bn_grid.validate_grid(config, axes(config), GRID_NORMS)
  bn_grid.refuse_budget_fields(config)


def derive(c, cell, num_train):
  del cell, num_train
  bn_grid.set_budget(c, c.train.steps, c.grid.evals_per_cell)


def run(config, workdir):
  summary = bn_grid.run_grid(config, workdir, axes(config),
                             derive=derive)
  summary["experiment"] = "bn_regularization"
  experiments.finish("bn_regularization", workdir, config, summary)
  return summary


experiments.register(
    "bn_regularization", validate=validate, own_fields=layers.NORM_FIELD_PATHS,
    report="jaxunknowns.batchnorm.bn_report:write_grid",
    multi_process=True)(run)
