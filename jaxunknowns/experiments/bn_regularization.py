"""`bn_regularization`: batch norm on/off x dropout rate x weight decay.

Per cell: test accuracy and the train - test gap (both in eval mode), as
heatmaps (rows dropout, columns weight decay, one panel per norm). The
question (Ioffe & Szegedy 2015; Li et al. 2019 on BN and dropout's "variance
shift"; van Laarhoven 2017 on L2 with BN): does BN regularize on its own,
and do dropout and weight decay add to it or fight it?
"""

import os

from absl import logging

from jaxunknowns import experiments, report, validation
from jaxunknowns.experiments import bn_grid, bn_grid_report
from jaxunknowns.metrics import write_json
from jaxunknowns.models.layers import check_choice
from jaxunknowns.workdir import SUMMARY_FILE

GRID_NORMS = ("batch", "group", "layer", "none")


def axes(config):
  g = config.grid
  return [bn_grid.Axis("norm", "model.norm", tuple(g.norms), "grid.norms"),
          bn_grid.Axis("dropout", "model.dropout", tuple(g.dropouts),
                       "grid.dropouts"),
          bn_grid.Axis("weight_decay", "optim.weight_decay",
                       tuple(g.weight_decays), "grid.weight_decays")]


def validate(config):
  validation.validate_base(config)
  bn_grid.check_axes(axes(config))
  g, check = config.grid, validation.check
  for norm in g.norms:
    check_choice("grid.norms", norm, GRID_NORMS)
  check(all(0.0 <= p < 1.0 for p in g.dropouts), "grid.dropouts",
        tuple(g.dropouts), "rates in [0, 1)")
  check(all(w >= 0.0 for w in g.weight_decays), "grid.weight_decays",
        tuple(g.weight_decays), "values >= 0")
  for norm in g.norms:
    model = config.model.copy_and_resolve_references()
    model.norm = norm
    validation.check_batch_norm_batch_size(
        model, config.train.batch_size, where=f"grid cell norm={norm}: ")


def derive(c, cell, num_train):
  del cell, num_train
  bn_grid.set_budget(c, c.train.steps, c.grid.evals_per_cell)


def readings(cells, norms):
  """Per norm: the unregularized cell, the best cell by test accuracy, and
  the smallest gap; BN's own effect without dropout and weight decay."""
  out = {}
  for norm in norms:
    pts = bn_grid.find(cells, norm=norm)
    plain = bn_grid.find(pts, dropout=min(q["cell"]["dropout"] for q in pts),
                         weight_decay=min(q["cell"]["weight_decay"]
                                          for q in pts))[0]
    best = max(pts, key=lambda q: q["test_accuracy"]["mean"])
    tight = min(pts, key=lambda q: q["gap"]["mean"])
    out[norm] = {
        "least_regularized": {**plain["cell"],
                              "test_accuracy": plain["test_accuracy"]["mean"],
                              "gap": plain["gap"]["mean"]},
        "best": {**best["cell"], "test_accuracy": best["test_accuracy"]["mean"],
                 "gap": best["gap"]["mean"]},
        "smallest_gap": {**tight["cell"],
                         "test_accuracy": tight["test_accuracy"]["mean"],
                         "gap": tight["gap"]["mean"]},
    }
  return out


def run(config, workdir):
  summary = bn_grid.run_grid(config, workdir, axes(config),
                             derive=derive)
  summary.update(experiment="bn_regularization",
                 readings=readings(summary["cells"], list(config.grid.norms)))
  write_report(workdir.path, config, summary)
  write_json(workdir.file(SUMMARY_FILE), summary)
  logging.info("readings: %s", summary["readings"])
  return summary


def write_report(path, config, summary):
  cells = summary["cells"]
  bn_grid_report.plot_heatmaps(
      cells, "dropout", "weight_decay", "norm",
      os.path.join(path, "heatmap.png"),
      title=f"{config.model.name} on {config.data.name} "
            f"({summary['train_examples']} training examples)")
  lines = []
  for norm, r in summary["readings"].items():
    p, b, t = r["least_regularized"], r["best"], r["smallest_gap"]
    lines.append(
        f"* {norm}: without dropout or decay {100 * p['test_accuracy']:.2f}% "
        f"test, gap {100 * p['gap']:.2f} points; best {100 * b['test_accuracy']:.2f}% "
        f"at dropout {b['dropout']:g}, wd {b['weight_decay']:g}; smallest gap "
        f"{100 * t['gap']:.2f} points at dropout {t['dropout']:g}, "
        f"wd {t['weight_decay']:g}.")
  sections = [
      f"`{config.model.name}` (widths {tuple(config.model.widths)}) on "
      f"`{config.data.name}`, a {summary['train_examples']}-example training "
      f"set (small, so that the network overfits); {config.optim.name} lr "
      f"{config.optim.lr:g}, batch {config.train.batch_size}, "
      f"{cells[0]['steps']} steps ({cells[0]['epochs']:.0f} epochs), L2 "
      f"weight decay on every parameter; {len(summary['seeds'])} seeds per "
      f"cell. Accuracies in eval mode (running BN statistics, no dropout).",
      "## What the data show\n\n" + "\n".join(lines),
      "## Heatmaps (mean ± std over seeds)\n\n![heatmap](heatmap.png)",
      "## Every cell\n\n" + bn_grid_report.cell_table(
          cells, ["norm", "dropout", "weight_decay"]),
      bn_grid_report.timing_line(summary),
  ]
  report.write_report(os.path.join(path, "report.md"),
                      f"bn_regularization: {config.data.name}", sections)


experiments.register("bn_regularization", validate=validate)(run)
