"""report.md, density.png and density_layers.png of `hessian_spectrum`, from
summary.json alone."""

import os

import numpy as np

from jaxunknowns import report
from jaxunknowns.implicit import papers
from jaxunknowns.report import compare

FIGURE, LAYERS = "density.png", "density_layers.png"
MODE = {"eval": "population stats", "batch": "batch stats"}


def spectra(summary, point):
  """[(label, arm, mode, measurement)] of every spectrum at `point`."""
  return [(n if a["norm"] == "none" else f"{n}, BN {MODE[m]}", n, m, s)
          for n, a in summary["arms"].items()
          for m, s in a["points"][point].items()]


def _curve(ax, s, label):
  d = np.maximum(np.asarray(s["density"]["density"]), 1e-30)
  ax.semilogy(s["density"]["grid"], d, label=label)
  ax.set_ylim(bottom=max(d.max() * 1e-7, 1e-30))


def plot(path, summary):
  fig, axes = report.plt.subplots(1, 2, figsize=(11, 4))
  for ax, point in zip(axes, ("init", "end")):
    for label, _, _, s in spectra(summary, point):
      _curve(ax, s["whole"], label)
    ax.set(title=f"whole model, {point}", xlabel="eigenvalue",
           ylabel="density (log)")
    ax.legend(fontsize=8)
  report.save_figure(fig, os.path.join(path, FIGURE))
  blocks = sorted({b for _, _, _, s in spectra(summary, "end")
                   for b in s["layers"]})
  if not blocks:
    return [FIGURE]
  cols = min(3, len(blocks))
  rows = -(-len(blocks) // cols)
  fig, axes = report.plt.subplots(rows, cols, figsize=(4 * cols, 3.3 * rows),
                                  squeeze=False)
  for ax, b in zip(axes.flat, blocks):
    for label, _, _, s in spectra(summary, "end"):
      if b in s["layers"]:
        _curve(ax, s["layers"][b], label)
    ax.set(title=f"{b}, end", xlabel="eigenvalue")
    ax.legend(fontsize=6)
  for ax in list(axes.flat)[len(blocks):]:
    ax.axis("off")
  fig.tight_layout()
  report.save_figure(fig, os.path.join(path, LAYERS))
  return [FIGURE, LAYERS]


def comparisons(summary, config):
  """At the end of training: the arm without BN against the arm with it."""
  arms = summary["arms"]
  plain = next((n for n, a in arms.items() if a["norm"] == "none"), None)
  bn = next((n for n, a in arms.items() if a["norm"] == "batch"), None)
  if plain is None or bn is None:
    return []
  end = lambda n, m: arms[n]["points"]["end"].get(m, {}).get("whole", {})
  a, b_batch, b_eval = end(plain, "eval"), end(bn, "batch"), end(bn, "eval")
  ours = {"data": summary["dataset"], "model": summary["model"],
          "optimizer": config.optim.name, "hessian batch norm": "eval"}
  fmt = lambda s: report.fmt(s, 1.0, 2)
  ratio = "λ_max / bulk edge"
  rows = [
      ("outliers without BN", papers.GHORBANI_OUTLIERS, fmt(a.get("outliers")),
       compare.at_least(a.get("outliers"), 1, scale=1.0), "a few (≥ 1)"),
      (f"{ratio}: without BN vs with BN (batch stats)", papers.GHORBANI_BN,
       f"{fmt(a.get('max_over_edge'))} vs {fmt(b_batch.get('max_over_edge'))}",
       compare.greater(a.get("max_over_edge"), b_batch.get("max_over_edge"),
                       a_name="without BN", b_name="BN", scale=1.0), "larger"),
      ("outliers: without BN vs with BN (batch stats)", papers.GHORBANI_BN,
       f"{fmt(a.get('outliers'))} vs {fmt(b_batch.get('outliers'))}",
       compare.greater(a.get("outliers"), b_batch.get("outliers"),
                       a_name="without BN", b_name="BN", scale=1.0), "more"),
      (f"{ratio} with BN: population vs batch stats",
       papers.GHORBANI_POPULATION, f"{fmt(b_eval.get('max_over_edge'))} vs "
       f"{fmt(b_batch.get('max_over_edge'))}", compare.paired_greater(
           b_eval.get("max_over_edge"), b_batch.get("max_over_edge"),
           a_name="population", b_name="batch", scale=1.0), "larger"),
      ("trace: without BN vs with BN (population stats)", papers.YAO_TRACE,
       f"{fmt(a.get('trace'))} vs {fmt(b_eval.get('trace'))}",
       compare.greater(a.get("trace"), b_eval.get("trace"),
                       a_name="without BN", b_name="BN", scale=1.0), "larger")]
  return [compare.comparison(q, ref, ours_text, *verdict, paper=paper,
                             our_protocol=ours,
                             why_not_testable="a BN mode not measured")
          for q, ref, ours_text, verdict, paper in rows]


def table(summary, level):
  head = ["arm, BN mode", "point", "block", "trace (Hutchinson)", "λ_max",
          "bulk edge", "outliers", "λ_max / edge"]
  rows = []
  for point in ("init", "end"):
    for label, _, _, s in spectra(summary, point):
      parts = [("whole", s["whole"])] if level == "whole" else sorted(
          s["layers"].items())
      rows += [[label, point, b, report.fmt(x["trace"], 1.0, 3, sig=True),
                report.fmt(x["lambda_max"], 1.0, 3, sig=True),
                report.fmt(x["bulk_edge"], 1.0, 3, sig=True),
                report.fmt(x["outliers"], 1.0, 1),
                report.fmt(x["max_over_edge"], 1.0, 1)] for b, x in parts]
  return report.markdown_table(head, rows)


def write(path, config, summary):
  s = config.spectrum
  figures = plot(path, summary)
  caption = {FIGURE: "Hessian eigenvalue density (SLQ, log scale, mean over "
                     "seeds) at initialization and at the end",
             LAYERS: "Each block's own Hessian H_bb at the end"}
  report.write_page(path, report.Page(
      title=f"hessian_spectrum: {config.model.name} on {config.data.name}",
      claim=" ".join(f"{r.statement} ({r.source})." for r in (
          papers.GHORBANI_OUTLIERS, papers.GHORBANI_BN,
          papers.GHORBANI_POPULATION, papers.YAO_TRACE)),
      config=(f"`{config.model.name}` on `{config.data.name}`, without and "
              f"with BatchNorm, {config.optim.name} lr {config.optim.lr}, "
              f"batch {config.train.batch_size}, {config.epochs:g} epochs, "
              f"{len(summary['seeds'])} seeds per arm. The loss of "
              f"{summary['subset_size']} fixed training examples; trace by "
              f"Hutchinson ({s.trace_probes} Rademacher probes); density by "
              f"SLQ, k = {s.num_probes} probes × m = {s.num_steps} Lanczos "
              f"steps, Gaussian std {s.sigma:g} × range. BN with population "
              f"statistics or batch statistics (BN batches of "
              f"{s.chunk_size or summary['subset_size']} examples). "
              "Outlier rule: the bulk edge is the largest quadrature node "
              f"standing for ≥ {s.bulk_count:g} eigenvalues (n·w ≥ "
              f"{s.bulk_count:g}); outliers are nodes above the edge by more "
              f"than {s.outlier_gap:g} × the bulk's width (edge − smallest "
              "node); medians over probes. λ_max: the largest Ritz value."),
      figures=[(caption[f], f) for f in figures],
      comparisons=comparisons(summary, config),
      details=["### Whole model\n\n" + table(summary, "whole"),
               "### Per block\n\n" + table(summary, "layers")],
      run=report.run_line(summary, f"Hessian-vector products: "
                          f"{summary['hvps_per_second']:.0f} per second.")))
