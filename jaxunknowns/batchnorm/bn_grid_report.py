"""report.md and figure of the BatchNorm grids (`bn_batch_size`,
`bn_placement`, `bn_regularization`), and what every BatchNorm report shares."""

import os

from jaxunknowns import report
from jaxunknowns.batchnorm import bn_grid, papers
from jaxunknowns.metrics import stats
from jaxunknowns.report import compare


def page(path, config, summary, figures, comparisons, details, *, steps,
         setup, run=""):
  """report.md; the claim: papers.py's findings from the compared sources;
  the figures: (caption, PNG) drawn into `path`."""
  o = config.optim
  comparisons = comparisons({"model": config.model.name, "steps": steps,
                             "data": config.data.name, "optimizer": o.name})
  refs = [r for v in vars(papers).values() for r in (
      v.values() if isinstance(v, dict) else [v]) if isinstance(
          r, report.Reference) and r.source in {c.source for c in comparisons}]
  report.write_page(path, report.Page(
      title=f"{config.experiment}: {config.data.name}",
      claim=" ".join(f"{r.statement[:-1]} ({r.source})." for r in refs),
      config=(f"`{config.model.name}` on `{config.data.name}`, {o.name} lr "
              f"{o.lr:g}, {len(summary['seeds'])} seeds (the same initial "
              f"weights and batches in every arm or cell); {setup}."),
      figures=figures, comparisons=comparisons, details=details,
      run=report.run_line(summary, run)))


def compared(rows, ours=None, scale=100.0):
  """a above b beyond the seed spread (tolerance None), or within it."""
  out = []
  for quantity, ref, paper, tolerance, (a, a_name), (b, b_name) in rows:
    names = {"a_name": a_name, "b_name": b_name, "scale": scale}
    holds, rule = (compare.greater(a, b, **names) if tolerance is None else
                   compare.within(a, b, tolerance=tolerance, **names))
    out.append(compare.comparison(
        quantity, ref, " vs ".join(report.fmt(x, scale, 2 if scale > 1 else 0)
                                   for x in (a, b) if not x or "per_seed" in x),
        holds, rule, paper=paper,
        our_protocol=ours))
  return out


def _at(cells, metric="test_accuracy", **where):
  hit = bn_grid.find(cells, **where)
  return hit[0][metric] if hit else None


def batch_size(summary, config, ours):
  from jaxunknowns.batchnorm.bn_batch_size import readings  # pylint: disable=g-import-not-at-top
  cells, rows = summary["cells"], []
  r = readings(cells, list(config.grid.norms))
  at = lambda n, b, name: (_at(cells, norm=n, batch_size=b), name)  # pylint: disable=unnecessary-lambda-assignment
  for n, tolerance, paper in (("batch", None, "BN falls"),
                              ("group", 0.01, "GN stable")):
    if n in r:
      s, t = r[n]["smallest_batch"], r[n]["typical_batch"]
      rows.append((f"{n} norm test accuracy (%), batch {t} vs {s}",
                   papers.BN_SMALL_BATCH, paper, tolerance,
                   at(n, t, f"batch {t}"), at(n, s, f"batch {s}")))
  for key, ref, tolerance, paper in (
      ("smallest_batch", papers.GN_MINUS_BN_AT_2, None, None),
      ("typical_batch", papers.GN_LIKE_BN, 0.02, "comparable")):
    if "batch" in r and "group" in r:
      b = r["batch"][key]
      rows.append((f"GN vs BN test accuracy (%) at batch {b}", ref, paper,
                   tolerance, at("group", b, "GN"), at("batch", b, "BN")))
  return compared(rows, ours)


def placement(summary, config, ours):
  cells, out = summary["cells"], [compare.comparison(
      f"{norm} norm after minus before the ReLU, test accuracy (points)",
      papers.PLACEMENT, report.fmt(r["after_minus_before_test_accuracy"]),
      None, "–", paper="before", why_not_testable="no other placement in the "
      "paper") for norm, r in summary["readings"].items()]
  bn, none = (bn_grid.find(cells, norm=n, position="before")
              for n in ("batch", "none"))
  if not (bn and none):
    return out
  steps = [None if None in q[0]["steps_to_target"] else
           stats(q[0]["steps_to_target"]) for q in (none, bn)]
  return out + compared([(
      f"steps to {100 * summary['target_accuracy']:g}% test (all seeds), no "
      f"norm vs BN before the ReLU", papers.SPEEDUP, "14× more without BN",
      None, (steps[0], "no norm"), (steps[1], "BN"))], ours, scale=1.0) + (
          compared([("final test accuracy (%), BN before the ReLU vs no norm",
                     papers.SPEEDUP, "BN above", None,
                     (bn[0]["test_accuracy"], "BN"),
                     (none[0]["test_accuracy"], "no norm"))], ours))


def regularization(summary, config, ours):
  g = config.grid
  d0, d1, w0, w1 = (f(v) for v in (g.dropouts, g.weight_decays)
                    for f in (min, max))
  at = lambda m, n, d, w: (_at(summary["cells"], m, norm=n, dropout=d,  # pylint: disable=unnecessary-lambda-assignment
                               weight_decay=w), f"{n}, dropout {d:g}, wd {w:g}")
  rows = [("train − test gap (points), no norm vs BN", papers.REGULARIZES,
           "smaller with BN", None, at("gap", "none", d0, w0),
           at("gap", "batch", d0, w0)),
          ("BN test accuracy (%) without vs with dropout",
           papers.VARIANCE_SHIFT, "lower with dropout", None,
           at("test_accuracy", "batch", d0, w0),
           at("test_accuracy", "batch", d1, w0)),
          ("BN train − test gap (points) with vs without decay",
           papers.DECAY_WITH_BN, "unchanged by decay", 0.01,
           at("gap", "batch", d0, w1), at("gap", "batch", d0, w0))]
  return compared([r for r in rows if r[4][0] and r[5][0] and
                   r[4][0] is not r[5][0]], ours)


# experiment -> (comparisons, x axis of the accuracy figure).
EXPERIMENTS = {"bn_batch_size": (batch_size, "batch_size"),
               "bn_placement": (placement, "position"),
               "bn_regularization": (regularization, "dropout")}


def accuracy_figure(cells, x, path):
  """Test (solid) and train (dashed) accuracy vs `x`, mean ± std."""
  fig, ax = report.plt.subplots(figsize=(6.4, 4.2))
  series = {}
  for q in cells:
    series.setdefault(", ".join(f"{k}={v}" for k, v in q["cell"].items()
                                if k != x), []).append(q)
  for i, (key, pts) in enumerate(series.items()):
    for metric in [m for m in ("test_accuracy", "train_accuracy")
                   if pts[0].get(m)]:
      ax.errorbar([q["cell"][x] for q in pts],
                  [100 * q[metric]["mean"] for q in pts],
                  yerr=[100 * report.text.std_of(q[metric]) for q in pts],
                  color=f"C{i}", linestyle="-" if "test" in metric else "--",
                  marker="o", capsize=2, label=f"{key} ({metric[:-9]})")
  ax.set(xlabel=x, ylabel="accuracy (%)", **(
      {"xscale": "log"} if "batch" in x else {}))
  ax.legend(fontsize=7, ncol=2)
  report.save_figure(fig, path)


def table(cells, keys) -> str:
  """Each cell's labels, then its `keys` (statistics in %, mean ± std)."""
  return report.markdown_table(list(cells[0]["cell"]) + list(keys), [
      list(q["cell"].values()) + [report.fmt(q[k]) if isinstance(
          q.get(k), dict) else q.get(k, "–") for k in keys] for q in cells])


def write(path, config, summary):
  """report.md and accuracy_vs_X.png from summary.json."""
  cells, g = summary["cells"], config.grid
  comparisons_of, x = EXPERIMENTS[config.experiment]
  accuracy_figure(cells, x, os.path.join(path, f"accuracy_vs_{x}.png"))
  budget = (f"lr at batch {g.reference_batch_size}, {g.lr_rule} scaling "
            "(linear scaling: Goyal et al. 2017); the same " + (
                "number of examples" if g.epochs > 0 else "steps") +
            " in every cell" if "lr_rule" in g else
            f"batch {config.train.batch_size}, {cells[0]['steps']} steps")
  page(path, config, summary, [("Accuracy per cell", f"accuracy_vs_{x}.png")],
       lambda ours: comparisons_of(summary, config, ours),
       ["### Every cell\n\n" + table(cells, [k for k in (
           "test_accuracy", "train_accuracy", "gap", "steps", "lr",
           "steps_to_target") if k in cells[0]])], steps=cells[0]["steps"],
       setup=(f"{summary['train_examples']} training examples; cells "
              + " × ".join(f"{a['label']} {tuple(a['values'])}"
                           for a in summary["axes"]) + f"; {budget}; "
              "accuracies in eval mode"),
       run=f"{len(cells)} cells × {len(summary['seeds'])} seeds; cells "
       f"{summary['cells_wall_time_s']:.0f} s.")
