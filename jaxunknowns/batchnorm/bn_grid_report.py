"""report.md and figure of the BatchNorm grids (`bn_batch_size`,
`bn_placement`, `bn_regularization`), and what every BatchNorm report shares."""

import os

from jaxunknowns import report
from jaxunknowns.batchnorm import bn_grid, papers
from jaxunknowns.metrics import curves, read_metrics, stats
from jaxunknowns.report import compare


def page(path, refs, figures, **fields):
  """report.md: the papers' findings as the claim; the figures present."""
  report.write_page(path, report.Page(
      claim=" ".join(f"{r.statement[:-1]} ({r.source})." for r in refs),
      figures=[(caption, name) for caption, name in figures
               if os.path.exists(os.path.join(path, name))], **fields))


def compared(rows, ours=None):
  """One comparison per (quantity, reference, paper, tolerance, (a, name),
  (b, name)) of two {mean, std, per_seed}: a above b beyond the seed spread
  (tolerance None: compare.greater) or a and b within tolerance."""
  out = []
  for quantity, ref, paper, tolerance, (a, a_name), (b, b_name) in rows:
    holds, rule = (compare.greater(a, b, a_name=a_name, b_name=b_name)
                   if tolerance is None else
                   compare.within(a, b, a_name=a_name, b_name=b_name,
                                  tolerance=tolerance))
    out.append(compare.comparison(
        quantity, ref, f"{report.fmt(a)} vs {report.fmt(b)}", holds, rule,
        paper=paper, our_protocol=ours))
  return out


def _at(cells, metric="test_accuracy", **where):
  hit = bn_grid.find(cells, **where)
  return hit[0][metric] if hit else None


def batch_size(summary, config, ours):
  from jaxunknowns.batchnorm.bn_batch_size import readings  # pylint: disable=g-import-not-at-top
  cells, rows = summary["cells"], []
  r = readings(cells, list(config.grid.norms))
  for norm, tolerance, paper in (("batch", None, "BN falls"),
                                 ("group", 0.01, "GN stable")):
    if norm in r:
      s, t = r[norm]["smallest_batch"], r[norm]["typical_batch"]
      rows.append((f"{norm} norm test accuracy (%), batch {t} vs {s}",
                   papers.BN_SMALL_BATCH, paper, tolerance,
                   (_at(cells, norm=norm, batch_size=t), f"batch {t}"),
                   (_at(cells, norm=norm, batch_size=s), f"batch {s}")))
  if "batch" in r and "group" in r:
    for b, ref, tolerance in ((r["batch"]["smallest_batch"],
                               papers.GN_MINUS_BN_AT_2, None),
                              (r["batch"]["typical_batch"], papers.GN_LIKE_BN,
                               0.02)):
      rows.append((f"GN vs BN test accuracy (%) at batch {b}", ref,
                   "comparable" if tolerance else None, tolerance,
                   (_at(cells, norm="group", batch_size=b), "GN"),
                   (_at(cells, norm="batch", batch_size=b), "BN")))
  return compared(rows, ours)


def placement(summary, config, ours):
  cells, out = summary["cells"], []
  for norm in config.grid.norms:
    before, after = (bn_grid.find(cells, norm=norm, position=p)
                     for p in ("before", "after"))
    if before and after:
      out.append(compare.comparison(
          f"{norm} norm after minus before the ReLU, test accuracy (points)",
          papers.PLACEMENT, report.fmt(stats(
              bn_grid.per_seed(after[0], "test_accuracy")
              - bn_grid.per_seed(before[0], "test_accuracy"))), None, "–",
          paper="before", why_not_testable="no other placement in the paper"))
  bn, none = (bn_grid.find(cells, norm=n, position="before")
              for n in ("batch", "none"))
  if not (bn and none):
    return out
  target = f"{100 * summary['target_accuracy']:g}% test"
  hits = [bn[0]["steps_to_target"], none[0]["steps_to_target"]]
  steps = None if None in hits[0] + hits[1] else [stats(h) for h in hits]
  holds, rule = (compare.greater(steps[1], steps[0], a_name="no norm",
                                 b_name="BN", scale=1.0) if steps else
                 (None, "–"))
  out.append(compare.comparison(
      f"steps to {target}, BN before the ReLU vs no norm", papers.SPEEDUP,
      " vs ".join(report.fmt(s, scale=1.0, digits=0) for s in steps or ()),
      holds, rule, paper="14× fewer with BN", our_protocol=ours,
      why_not_testable=f"not every seed reached {target}"))
  return out + compared([(
      "final test accuracy (%), BN before the ReLU vs no norm", papers.SPEEDUP,
      "BN above", None, (bn[0]["test_accuracy"], "BN"),
      (none[0]["test_accuracy"], "no norm"))], ours)


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
  return compared([r for r in rows if r[4][0] and r[5][0] and r[4][0] is not r[5][0]],
                  ours)


# experiment -> (comparisons, x axis of the accuracy figure, papers).
EXPERIMENTS = {
    "bn_batch_size": (batch_size, "batch_size", (
        papers.BN_SMALL_BATCH, papers.GN_MINUS_BN_AT_2, papers.GN_LIKE_BN)),
    "bn_placement": (placement, None, (papers.PLACEMENT, papers.SPEEDUP)),
    "bn_regularization": (regularization, "dropout", (
        papers.REGULARIZES, papers.VARIANCE_SHIFT, papers.DECAY_WITH_BN))}


def accuracy_figure(cells, x, path):
  """Test (solid) and train (dashed) accuracy vs `x`, one colour per value of
  the other labels; error bars: std over seeds."""
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
  ax.set(xlabel=x, ylabel="accuracy (%)", xscale="log" if "batch" in x else
         "linear")
  ax.legend(fontsize=7, ncol=2)
  report.save_figure(fig, path)


def write(path, config, summary):
  """report.md and accuracy_vs_X.png (or, from metrics.jsonl, curves.png)."""
  cells, g = summary["cells"], config.grid
  comparisons_of, x, refs = EXPERIMENTS[config.experiment]
  name, rows = f"accuracy_vs_{x}.png" if x else "curves.png", read_metrics(path)
  if x:
    accuracy_figure(cells, x, os.path.join(path, name))
  elif rows:  # A copy of a workdir without metrics.jsonl keeps its PNG.
    fig, ax = report.plt.subplots(figsize=(6.4, 4.2))
    for q in cells:
      report.plot_band(ax, curves(rows, "test", "accuracy", **q["cell"]),
                       q["name"], scale=100)
    ax.set(xlabel="step", ylabel="test accuracy (%)")
    ax.legend(fontsize=8)
    report.save_figure(fig, os.path.join(path, name))
  labels = list(cells[0]["cell"])
  extra = ("steps_to_target" in cells[0]) * [
      f"steps to {100 * summary.get('target_accuracy', 0):g}% test",
      "train steps/s (median)"]
  table = [[q["cell"].get(k, "–") for k in labels] + [
      report.fmt(q[k]) for k in ("test_accuracy", "train_accuracy", "gap")] + [
          f"{q['lr']:.3g}", q["steps"], f"{q['wall_time_s']:.1f}"] + (
              [", ".join(map(str, q["steps_to_target"])),
               f"{(q['train_speed'] or {}).get('median', 0):.0f}"]
              if extra else [])
           for q in cells]
  budget = (f"lr {config.optim.lr:g} at batch {g.reference_batch_size}, "
            f"{g.lr_rule} scaling (linear scaling: Goyal et al. 2017), "
            + (f"the same number of examples seen in every cell ({g.epochs:g}"
               " epochs)" if g.epochs > 0 else "the same steps in every cell")
            if config.experiment == "bn_batch_size" else
            f"lr {config.optim.lr:g}, batch {config.train.batch_size}")
  page(path, refs, [("Accuracy per cell", name)],
       title=f"{config.experiment}: {config.data.name}",
       config=(f"`{config.model.name}` on `{config.data.name}` "
               f"({summary['train_examples']} training examples); cells "
               + " × ".join(f"{a['label']} {tuple(a['values'])}"
                            for a in summary["axes"])
               + f"; {config.optim.name}, {budget}; {len(summary['seeds'])} "
               f"seeds per cell (the same in every cell); eval mode."),
       comparisons=comparisons_of(summary, config, {
           "model": config.model.name, "data": config.data.name,
           "steps": cells[0]["steps"], "optimizer": config.optim.name}),
       details=["### Every cell\n\n" + report.markdown_table(labels + [
           "test acc (%)", "train acc (%)", "gap (points)", "lr", "steps",
           "wall (s)"] + extra, table)],
       run=report.run_line(summary, f"{len(cells)} cells × "
                           f"{len(summary['seeds'])} seeds; cells "
                           f"{summary['cells_wall_time_s']:.0f} s."))
