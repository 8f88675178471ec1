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
from jaxunknowns.batchnorm import bn_grid
from jaxunknowns.batchnorm import bn_grid_report
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
  # summary.json first: the report is rebuilt from it.
  write_json(workdir.file(SUMMARY_FILE), summary)
  write_report(workdir.path, config, summary)
  logging.info("readings: %s", summary["readings"])
  return summary


# The papers' claims, quoted in report.md (a config's reference.claim,
# where set, replaces it).
CLAIM = (
    "Ioffe & Szegedy 2015 (Sec. 3.4, 4.2.1): BN regularizes, since a "
    "training example is seen together with its batch-mates and the network "
    "no longer produces deterministic values for it; in a batch-normalized "
    "Inception dropout could be removed and L2 weight decay reduced 5 times "
    "without hurting accuracy. Li et al. 2019: dropout before BN shifts the "
    "variance of activations between training and inference ('variance "
    "shift'), so the two combined often test worse. van Laarhoven 2017: "
    "with BN a layer's output does not depend on the scale of the weights "
    "before it, so L2 decay on them does not regularize but raises their "
    "effective learning rate. None of these gives a number for an MLP.")


def _at(cells, norm, dropout, weight_decay):
  hit = bn_grid.find(cells, norm=norm, dropout=dropout,
                     weight_decay=weight_decay)
  return hit[0] if hit else None


def _corners(cells):
  """(least, most) dropout and weight decay of the grid."""
  drops = sorted({q["cell"]["dropout"] for q in cells})
  decays = sorted({q["cell"]["weight_decay"] for q in cells})
  return drops[0], drops[-1], decays[0], decays[-1]


def _where(dropout, weight_decay):
  if dropout == 0 and weight_decay == 0:
    return "without dropout or decay"
  return f"at dropout {dropout:g}, wd {weight_decay:g}"


def versus_rows(cells):
  rows = []
  d0, d1, w0, w1 = _corners(cells)
  bn, none = _at(cells, "batch", d0, w0), _at(cells, "none", d0, w0)
  if bn and none:
    rows.append([f"train − test gap {_where(d0, w0)}: BN minus no norm "
                 f"(points)", "below 0: BN regularizes on its own",
                 bn_grid_report.points(bn_grid_report.paired(bn, none,
                                                             "gap"))])
  if bn and d1 > d0:
    more = _at(cells, "batch", d1, w0)
    rows.append([f"BN: test accuracy at dropout {d1:g} minus {d0:g} (wd "
                 f"{w0:g}) (points)", "often below 0 with dropout before BN"
                 " (variance shift, Li et al.); not needed (Ioffe & Szegedy)",
                 bn_grid_report.points(bn_grid_report.paired(more, bn))])
  if bn and w1 > w0:
    more = _at(cells, "batch", d0, w1)
    rows.append([f"BN: train − test gap at wd {w1:g} minus {w0:g} (dropout "
                 f"{d0:g}) (points)", "no regularizing effect on weights "
                 "followed by BN (van Laarhoven)",
                 bn_grid_report.points(bn_grid_report.paired(more, bn,
                                                             "gap"))])
  if not rows:
    rows.append(["–", "–", "– (the grid has no BN / no-norm pair)"])
  return rows


def differences(config, summary) -> str:
  cells, out = summary["cells"], []
  d0, d1, w0, w1 = _corners(cells)
  bn, none = _at(cells, "batch", d0, w0), _at(cells, "none", d0, w0)
  if not (bn and none):
    return ("The grid has no batch norm and no-norm cells side by side, so "
            "the papers' claims are not tested.")
  gap = bn_grid_report.paired(bn, none, "gap")
  out.append(f"{_where(d0, w0)} the train − test gap is "
             f"{100 * bn['gap']['mean']:.2f} points with BN and "
             f"{100 * none['gap']['mean']:.2f} without"
             + (": BN does not regularize this network on its own, unlike "
                "the paper's claim"
                if report.within_seed_spread(gap) or gap["mean"] > 0 else
                ": BN regularizes on its own, as the paper says"))
  if d1 > d0:
    shrink = {n: bn_grid_report.paired(_at(cells, n, d0, w0),
                                       _at(cells, n, d1, w0), "gap")
              for n in ("batch", "none")}
    out.append(f"dropout {d1:g} shrinks the gap by "
               f"{100 * shrink['batch']['mean']:.2f} points with BN and "
               f"{100 * shrink['none']['mean']:.2f} without")
    acc = bn_grid_report.paired(_at(cells, "batch", d1, w0), bn)
    out.append(f"with BN it changes test accuracy by {100 * acc['mean']:+.2f}"
               f" ± {100 * acc['std']:.2f} points"
               + ((" (no variance-shift loss, although in this MLP a "
                   "dropout feeds every BN but the first)"
                   if config.model.name == "mlp" else
                   " (no variance-shift loss)")
                  if acc["mean"] >= 0 or report.within_seed_spread(acc) else
                  ", the loss Li et al. describe"))
  if w1 > w0:
    acc = bn_grid_report.paired(_at(cells, "batch", d0, w1), bn)
    out.append(f"the strongest decay ({w1:g}) changes BN's test accuracy by "
               f"{100 * acc['mean']:+.2f} ± {100 * acc['std']:.2f} points at "
               f"dropout {d0:g}")
  accs = [100 * q["test_accuracy"]["mean"] for q in cells]
  out.append(f"test accuracy spans {min(accs):.1f}–{max(accs):.1f}% over "
             f"the whole grid")
  text = "; ".join(out)
  return (text[0].upper() + text[1:] + f". Likely reasons: the papers' "
          f"claims come from Inception on ImageNet and other large "
          f"convolutional networks, trained far longer; here the "
          f"{config.model.name} (widths {tuple(config.model.widths)}) "
          f"trains on {summary['train_examples']} {config.data.name} "
          f"examples for {cells[0]['epochs']:.0f} epochs at batch "
          f"{config.train.batch_size}, and the decay is applied to every "
          f"parameter, also the output layer and BN's γ, β, which no norm "
          f"makes scale-free, so it can act beyond van Laarhoven's "
          f"learning-rate effect.")


def write_report(path, config, summary):
  """report.md and heatmap.png from summary.json."""
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
  report.write_page(path, report.Page(
      title=f"bn_regularization: {config.data.name}",
      claim=bn_grid_report.claim_of(config, CLAIM),
      config=(
          f"`{config.model.name}` (widths {tuple(config.model.widths)}) on "
          f"`{config.data.name}`, a {summary['train_examples']}-example "
          f"training set (small, so that the network overfits); "
          f"{config.optim.name} lr {config.optim.lr:g}, batch "
          f"{config.train.batch_size}, {cells[0]['steps']} steps "
          f"({cells[0]['epochs']:.0f} epochs), L2 weight decay on every "
          f"parameter; {len(summary['seeds'])} seeds per cell. Accuracies in "
          f"eval mode (running BN statistics, no dropout)."),
      figures=[("Test accuracy and train − test gap per cell (rows dropout, "
                "columns weight decay, one panel per norm), mean ± std over "
                "seeds", "heatmap.png")],
      versus=(["quantity", "paper (direction only)",
               "ours (mean ± std over seeds)"], versus_rows(cells)),
      differences=differences(config, summary),
      details=[
          "### What the data show\n\n" + "\n".join(lines),
          "### Every cell\n\n" + bn_grid_report.cell_table(
              cells, ["norm", "dropout", "weight_decay"])],
      run=report.run_line(summary, bn_grid_report.run_extra(summary))))


experiments.register("bn_regularization", validate=validate,
                     report=write_report)(run)
