"""`bn_batch_size`: accuracy vs per-step batch size for batch, group, layer
and no normalization (Wu & He 2018, Fig. 1: BN's error grows as the batch
shrinks, GN's does not).

The grid is `grid.norms` x `grid.batch_sizes`. The learning rate at batch B
is `optim.lr` (the rate at `grid.reference_batch_size`) scaled by
`grid.lr_rule`; with `grid.epochs` > 0 every cell sees the same number of
examples (steps = epochs x train size / B), else every cell trains
`train.steps` steps. Both rules are written into report.md.
"""

import os

from absl import logging

from jaxunknowns import experiments, report, validation
from jaxunknowns.batchnorm import bn_grid
from jaxunknowns.batchnorm import bn_grid_report
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
  # summary.json first: the report is rebuilt from it.
  write_json(workdir.file(SUMMARY_FILE), summary)
  write_report(workdir.path, config, summary)
  logging.info("readings: %s", summary["readings"])
  return summary


# The paper's claim, quoted in report.md (a config's reference.claim,
# where set, replaces it).
CLAIM = (
    "Wu & He 2018 (Group Normalization, Fig. 1: ResNet-50 on ImageNet, "
    "per-GPU batch 32 down to 2): batch norm's error increases rapidly as "
    "the batch shrinks, because its batch statistics get noisy, while group "
    "norm, which normalizes each example on its own, is stable across batch "
    "sizes; at batch 2 GN's error is 10.6 points lower than BN's. At typical "
    "batch sizes GN is comparable to BN.")
PAPER_GN_MINUS_BN = 10.6  # Points of accuracy (error) at batch 2.


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


def _extremes(cells, norm):
  """(smallest-batch cell, best cell by mean test accuracy) of one norm."""
  pts = bn_grid.find(cells, norm=norm)
  return (min(pts, key=lambda q: q["cell"]["batch_size"]),
          max(pts, key=lambda q: q["test_accuracy"]["mean"]))


def norm_label(norm):
  return "no norm" if norm == "none" else f"{norm} norm"


def versus_rows(cells, norms):
  rows = []
  paper = {"batch": "rises rapidly as the batch shrinks",
           "group": "stable across batch sizes"}
  for norm in norms:
    small, best = _extremes(cells, norm)
    b = small["cell"]["batch_size"]
    rows.append([f"{norm_label(norm)}: test accuracy lost from its best batch "
                 f"to batch {b} (points)",
                 f"error {paper[norm]}" if norm in paper else
                 "– (not in the paper's batch-size study)",
                 f"0: batch {b} is its best" if small is best else
                 f"{report.fmt(bn_grid_report.paired(best, small))} (best: "
                 f"batch {best['cell']['batch_size']})"])
  if "batch" in norms and "group" in norms:
    bn_small, bn_best = _extremes(cells, "batch")
    b = bn_small["cell"]["batch_size"]
    gn = bn_grid.find(cells, norm="group", batch_size=b)[0]
    rows.append([f"group minus batch norm test accuracy at batch {b} "
                 f"(points)", f"+{PAPER_GN_MINUS_BN:g} (batch 2: GN's error "
                 f"{PAPER_GN_MINUS_BN:g} points lower)",
                 bn_grid_report.points(bn_grid_report.paired(gn, bn_small))])
    b = bn_best["cell"]["batch_size"]
    gn = bn_grid.find(cells, norm="group", batch_size=b)[0]
    rows.append([f"group minus batch norm test accuracy at BN's best batch "
                 f"({b}) (points)", "comparable at typical batch sizes",
                 bn_grid_report.points(bn_grid_report.paired(gn, bn_best))])
  return rows


def _within_spread(lost) -> bool:
  # A loss under a point counts as none, even where seeds agree closely.
  return report.within_seed_spread(lost, floor=0.01)


def differences(config, summary) -> str:
  cells, norms = summary["cells"], list(config.grid.norms)
  out = []
  lost = {n: bn_grid_report.paired(*reversed(_extremes(cells, n)))
          for n in norms}
  if "batch" in lost:
    d, b = lost["batch"], _extremes(cells, "batch")[0]["cell"]["batch_size"]
    out.append(f"batch norm loses {100 * d['mean']:.2f} ± "
               f"{100 * d['std']:.2f} points from its best batch to batch "
               f"{b}" + (", within the seed spread, unlike the paper's BN"
                         if _within_spread(d) else ", as the paper's BN does"))
  flat = [n for n in norms if n != "batch" and _within_spread(lost[n])]
  if flat:
    out.append(f"{', '.join(map(norm_label, flat))} "
               f"{'stays' if len(flat) == 1 else 'stay'} within the seed "
               f"spread of {'its' if len(flat) == 1 else 'their'} best at the "
               f"smallest batch"
               + (", as GN does in the paper" if "group" in flat else ""))
  for n in norms:
    if n != "batch" and n not in flat:
      out.append(f"{norm_label(n)} loses {100 * lost[n]['mean']:.2f} ± "
                 f"{100 * lost[n]['std']:.2f} points at the smallest batch"
                 + (", unlike the paper's GN" if n == "group" else ""))
  if "batch" in norms and "group" in norms:
    small = _extremes(cells, "batch")[0]
    gn = bn_grid.find(cells, norm="group",
                      batch_size=small["cell"]["batch_size"])[0]
    gap = 100 * bn_grid_report.paired(gn, small)["mean"]
    out.append(f"at batch {small['cell']['batch_size']} GN is "
               f"{abs(gap):.1f} points {'above' if gap > 0 else 'below'} BN, "
               f"against the paper's {PAPER_GN_MINUS_BN:g} points above")
    best = _extremes(cells, "batch")[1]
    gn = bn_grid.find(cells, norm="group",
                      batch_size=best["cell"]["batch_size"])[0]
    d = bn_grid_report.paired(gn, best)
    out.append(f"at BN's best batch ({best['cell']['batch_size']}) GN is "
               f"{100 * d['mean']:+.2f} ± {100 * d['std']:.2f} points from BN"
               + (", comparable (within 2 points) as in the paper"
                  if abs(d["mean"]) < 0.02 else
                  ", not comparable, unlike the paper"))
  largest = max(q["cell"]["batch_size"] for q in cells)
  at_largest = [q for q in cells if q["cell"]["batch_size"] == largest]
  below = [100 * (_extremes(cells, q["cell"]["norm"])[1]["test_accuracy"]
                  ["mean"] - q["test_accuracy"]["mean"]) for q in at_largest]
  if config.grid.epochs > 0 and min(below) > 0:
    out.append(f"at batch {largest} every norm is {min(below):.1f}–"
               f"{max(below):.1f} points below its best: the equal-epochs "
               f"budget leaves {at_largest[0]['steps']} steps there")
  text = "; ".join(out) if out else "Nothing to compare with the paper"
  model = ("an MLP's BN normalizes each unit over the B examples of a batch "
           "alone (a convolutional BN, as in the paper's ResNet-50, also "
           "averages over the image's positions), so its statistics at B = 2 "
           "are far noisier than the paper's" if config.model.name == "mlp"
           else f"{config.model.name} is not the paper's ResNet-50")
  budget = (f"{config.grid.epochs:g} epochs" if config.grid.epochs > 0 else
            f"{config.train.steps} steps per cell")
  return (text[0].upper() + text[1:] + f". Likely reasons for the sizes: "
          f"{model}; and {config.data.name} ({summary['train_examples']} "
          f"training examples, {budget}) is a far shorter and easier task "
          f"than ImageNet.")


def write_report(path, config, summary):
  """report.md and accuracy_vs_batch.png from summary.json."""
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
  report.write_page(path, report.Page(
      title=f"bn_batch_size: {config.data.name}",
      claim=bn_grid_report.claim_of(config, CLAIM),
      config=(
          f"`{config.model.name}` (widths {tuple(config.model.widths)}) on "
          f"`{config.data.name}` ({summary['train_examples']} training "
          f"examples, {summary['test_examples']} test) with each "
          f"normalization of {tuple(g.norms)} at per-step batch sizes "
          f"{tuple(g.batch_sizes)}; {config.optim.name}, "
          f"{len(summary['seeds'])} seeds per cell. "
          + budget_text(config, summary)),
      figures=[("Accuracy vs batch size per normalization. Solid: test; "
                "dashed: train (eval mode); error bars: std over seeds",
                "accuracy_vs_batch.png")],
      versus=(["quantity", "paper (ImageNet ResNet-50)",
               "ours (mean ± std over seeds)"],
              versus_rows(cells, list(g.norms))),
      differences=differences(config, summary),
      details=[
          "### What the data show\n\n" + "\n".join(lines),
          "### Every cell (mean ± std over seeds)\n\n"
          + bn_grid_report.cell_table(cells, ["norm", "batch_size"])],
      run=report.run_line(summary, bn_grid_report.run_extra(summary))))


experiments.register("bn_batch_size", validate=validate,
                     report=write_report)(run)
