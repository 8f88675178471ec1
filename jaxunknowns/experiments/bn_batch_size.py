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
from jaxunknowns.experiments import bn_grid, bn_grid_report
from jaxunknowns.metrics import write_json
from jaxunknowns.models.layers import check_choice
from jaxunknowns.workdir import SUMMARY_FILE

GRID_NORMS = ("batch", "group", "layer", "none")


def axes(config):
  g = config.grid
  return [bn_grid.Axis("norm", "model.norm", tuple(g.norms), "grid.norms"),
          bn_grid.Axis("batch_size", "train.batch_size", tuple(g.batch_sizes),
                       "grid.batch_sizes")]


def validate(config):
  validation.validate_base(config)
  bn_grid.check_axes(axes(config))
  g, check = config.grid, validation.check
  for norm in g.norms:
    check_choice("grid.norms", norm, GRID_NORMS)
  check(all(isinstance(b, int) and not isinstance(b, bool) and b >= 1
            for b in g.batch_sizes), "grid.batch_sizes", tuple(g.batch_sizes),
        "positive integers")
  check_choice("grid.lr_rule", g.lr_rule, bn_grid.LR_RULES)
  check(isinstance(g.reference_batch_size, int) and g.reference_batch_size >= 1,
        "grid.reference_batch_size", g.reference_batch_size, "an integer >= 1")
  check(g.epochs >= 0, "grid.epochs", g.epochs,
        ">= 0 (0 = train.steps steps in every cell)")
  check(isinstance(g.evals_per_cell, int) and g.evals_per_cell >= 0,
        "grid.evals_per_cell", g.evals_per_cell, "an integer >= 0")
  for norm in g.norms:
    model = config.model.copy_and_resolve_references()
    model.norm = norm
    for b in g.batch_sizes:
      validation.check_batch_norm_batch_size(
          model, b, where=f"grid cell norm={norm}, batch_size={b}: ")


def derive(c, cell, num_train):
  """The cell's learning rate (scaled) and step budget."""
  g, b = c.grid, cell["batch_size"]
  c.optim.lr = bn_grid.scaled_lr(c.optim.lr, b, g.reference_batch_size,
                                 g.lr_rule)
  steps = (bn_grid.epochs_to_steps(g.epochs, num_train, b) if g.epochs > 0
           else c.train.steps)
  bn_grid.set_budget(c, steps, g.evals_per_cell)


def readings(cells, norms):
  """Per norm: accuracy at the smallest batch, the best over batch sizes and
  the drop between them; BN vs GN at the smallest batch."""
  out = {}
  for norm in norms:
    pts = bn_grid.find(cells, norm=norm)
    smallest = min(pts, key=lambda q: q["cell"]["batch_size"])
    best = max(pts, key=lambda q: q["test_accuracy"]["mean"])
    out[norm] = {
        "smallest_batch": smallest["cell"]["batch_size"],
        "test_accuracy_at_smallest": smallest["test_accuracy"]["mean"],
        "best_batch": best["cell"]["batch_size"],
        "best_test_accuracy": best["test_accuracy"]["mean"],
        "drop_at_smallest": (best["test_accuracy"]["mean"]
                             - smallest["test_accuracy"]["mean"]),
    }
  if "batch" in out and "group" in out:
    out["bn_drop_minus_gn_drop"] = (out["batch"]["drop_at_smallest"]
                                    - out["group"]["drop_at_smallest"])
    out["bn_degrades_more_than_group"] = out["bn_drop_minus_gn_drop"] > 0
  return out


def run(config, workdir):
  g = config.grid
  summary = bn_grid.run_grid(config, workdir, axes(config), derive=derive)
  summary.update(
      experiment="bn_batch_size", lr_rule=g.lr_rule,
      reference_batch_size=g.reference_batch_size,
      reference_lr=config.optim.lr, epochs=g.epochs,
      readings=readings(summary["cells"], list(g.norms)))
  write_report(workdir.path, config, summary)
  write_json(workdir.file(SUMMARY_FILE), summary)
  logging.info("readings: %s", summary["readings"])
  return summary


def budget_text(config, summary) -> str:
  g = config.grid
  rule = {"linear": f"lr = {config.optim.lr:g} × B / {g.reference_batch_size}"
                    " (linear scaling, Goyal et al. 2017)",
          "sqrt": f"lr = {config.optim.lr:g} × √(B / {g.reference_batch_size})",
          "none": f"lr = {config.optim.lr:g} at every batch size"}[g.lr_rule]
  budget = (f"the same number of examples seen in every cell: {g.epochs:g} "
            f"epochs of the {summary['train_examples']} training examples "
            f"(steps = ⌈epochs × n / B⌉, rounded up to whole chunks)"
            if g.epochs > 0 else
            f"the same number of steps ({config.train.steps}) in every cell")
  return f"Learning rate: {rule}. Budget: {budget}."


def write_report(path, config, summary):
  import os  # pylint: disable=g-import-not-at-top
  cells, g = summary["cells"], config.grid
  bn_grid_report.plot_vs(
      cells, "batch_size", "norm", os.path.join(path, "accuracy_vs_batch.png"),
      xlabel="per-step batch size B",
      title=f"{config.model.name} on {config.data.name}: accuracy vs batch size")
  r = summary["readings"]
  lines = []
  for norm in g.norms:
    q = r[norm]
    lines.append(
        f"* {norm}: {100 * q['test_accuracy_at_smallest']:.2f}% at batch "
        f"{q['smallest_batch']}, best {100 * q['best_test_accuracy']:.2f}% "
        f"at batch {q['best_batch']} (drop {100 * q['drop_at_smallest']:.2f} "
        f"points)")
  if "bn_degrades_more_than_group" in r:
    lines.append(
        f"* Batch norm loses {100 * r['bn_drop_minus_gn_drop']:+.2f} points "
        f"more than group norm at the smallest batch: "
        + ("BN degrades more than GN, as Wu & He report."
           if r["bn_degrades_more_than_group"] else
           "in this run BN does *not* degrade more than GN."))
  sections = [
      f"`{config.model.name}` (widths {tuple(config.model.widths)}) on "
      f"`{config.data.name}` ({summary['train_examples']} training examples, "
      f"{summary['test_examples']} test) with each normalization of "
      f"{tuple(g.norms)} at per-step batch sizes {tuple(g.batch_sizes)}; "
      f"{config.optim.name}, {len(summary['seeds'])} seeds per cell. "
      + budget_text(config, summary),
      "## What the data show\n\n" + "\n".join(lines),
      "## Accuracy vs batch size\n\n![accuracy vs batch size]"
      "(accuracy_vs_batch.png)\n\nSolid: test; dashed: train (eval mode); "
      "error bars: std over seeds.",
      "## Every cell (mean ± std over seeds)\n\n"
      + bn_grid_report.cell_table(cells, ["norm", "batch_size"]),
      bn_grid_report.timing_line(summary),
  ]
  from jaxunknowns import report  # pylint: disable=g-import-not-at-top
  report.write_report(os.path.join(path, "report.md"),
                      f"bn_batch_size: {config.data.name}", sections)


experiments.register("bn_batch_size", validate=validate)(run)
