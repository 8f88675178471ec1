"""report.md, density.png and density_layers.png of `hessian_spectrum`, from
summary.json alone."""

import os

import numpy as np

from jaxunknowns import report
from jaxunknowns.implicit import papers
from jaxunknowns.report import compare

FIGURE, LAYERS = "density.png", "density_layers.png"
MODE = {"eval": "population stats", "batch": "batch stats"}
REFERENCES = (papers.GHORBANI_OUTLIERS, papers.GHORBANI_BN,
              papers.GHORBANI_POPULATION, papers.YAO_TRACE)


def spectra(summary, point):
  """[(label, measurement)] of every spectrum at `point`."""
  return [(n if a["norm"] == "none" else f"{n}, BN {MODE[m]}", s)
          for n, a in summary["arms"].items()
          for m, s in a["points"][point].items()]


def _curve(ax, s, label):
  g = s["density"]
  d = np.maximum(np.asarray(g["density"]), 1e-30)
  ax.semilogy(np.linspace(g["start"], g["stop"], g["num"]), d, label=label)
  ax.set_ylim(bottom=max(ax.get_ylim()[0], d.max() * 1e-7))


def plot(path, summary):
  with report.figure(os.path.join(path, FIGURE), 2) as axes:
    for ax, point in zip(axes, ("init", "end")):
      for label, s in spectra(summary, point):
        _curve(ax, s["whole"], label)
      ax.set(title=f"whole model, {point}", xlabel="eigenvalue",
             ylabel="density (log scale)")
  blocks = sorted({b for _, s in spectra(summary, "end") for b in s["layers"]})
  if not blocks:
    return [FIGURE]
  with report.figure(os.path.join(path, LAYERS), len(blocks), (4, 3.2),
                     cols=3) as axes:
    for ax, b in zip(axes, blocks):
      for label, s in spectra(summary, "end"):
        if b in s["layers"]:
          _curve(ax, s["layers"][b], label)
      ax.set(title=f"{b}, end", xlabel="eigenvalue")
  return [FIGURE, LAYERS]


def comparisons(summary, config):
  """At the end of training: the arm without BN against the arm with it."""
  arms = summary["arms"]
  plain = next((n for n, a in arms.items() if a["norm"] == "none"), None)
  bn = next((n for n, a in arms.items() if a["norm"] == "batch"), None)
  if plain is None or bn is None:
    return []
  end = lambda n, m, q: arms[n]["points"]["end"].get(m, {}).get(
      "whole", {}).get(q)
  out = report.Rows({"data": summary["dataset"], "model": summary["model"],
                     "optimizer": config.optim.name,
                     "hessian batch norm": "eval"})
  outliers, ratio = end(plain, "eval", "outliers"), "λ_max / bulk edge"
  out.check("outliers without BN", papers.GHORBANI_OUTLIERS,
            report.fmt(outliers, 1.0, 2),
            compare.at_least(outliers, 1, scale=1.0), "≥ 1 apart from the bulk")
  # (quantity, reference, paper, a, b, rule, names)
  rows = [
      (f"{ratio}: without BN vs with BN (batch stats)", papers.GHORBANI_BN,
       "larger without BN", end(plain, "eval", "max_over_edge"),
       end(bn, "batch", "max_over_edge"), compare.greater, ("no BN", "BN")),
      ("outliers: without BN vs with BN (batch stats)", papers.GHORBANI_BN,
       "more without BN", end(plain, "eval", "outliers"),
       end(bn, "batch", "outliers"), compare.greater, ("no BN", "BN")),
      (f"{ratio} with BN: population vs batch stats",
       papers.GHORBANI_POPULATION, "larger with population stats",
       end(bn, "eval", "max_over_edge"), end(bn, "batch", "max_over_edge"),
       compare.paired_greater, ("population", "batch")),
      ("trace: without BN vs with BN (population stats)", papers.YAO_TRACE,
       "larger without BN", end(plain, "eval", "trace"),
       end(bn, "eval", "trace"), compare.greater, ("no BN", "BN"))]
  for q, ref, paper, a, b, rule, names in rows:
    out.versus(q, ref, a, b, names, rule=rule, scale=1.0, paper=paper)
  return out


def table(summary, level):
  rows = []
  for point in ("init", "end"):
    for label, s in spectra(summary, point):
      parts = ([("whole", s["whole"])] if level == "whole" else
               sorted(s["layers"].items()))
      rows += [[label, point, b] + [report.fmt(x[q], 1.0, 3, sig=True) for q in
                                    ("trace", "lambda_max", "bulk_edge")]
               + [report.fmt(x[q], 1.0, 1) for q in ("outliers", "max_over_edge")]
               for b, x in parts]
  return report.markdown_table(
      ["arm, BN mode", "point", "block", "trace (Hutchinson)", "λ_max",
       "bulk edge", "outliers", "λ_max / edge"], rows)


def write(path, config, summary):
  s = config.spectrum
  caption = {FIGURE: "Hessian eigenvalue density (SLQ, log scale, mean over "
                     "seeds) at initialization and at the end",
             LAYERS: "Each block's own Hessian H_bb at the end"}
  report.write(
      path, config, summary, references=REFERENCES,
      setup=(f"without and with BatchNorm, batch {config.train.batch_size}, "
             f"{config.epochs:g} epochs. The loss of {summary['subset_size']} "
             f"fixed training examples; trace by Hutchinson ({s.trace_probes} "
             f"Rademacher probes); density by SLQ, k = {s.num_probes} probes × "
             f"m = {s.num_steps} Lanczos steps, Gaussian std {s.sigma:g} × "
             "the nodes' range; BN with " + " and with ".join(
                 MODE[m] for m in s.bn_modes) + (
                 f" (BN batches of {s.chunk_size or summary['subset_size']} "
                 "examples)" if "batch" in s.bn_modes else "") + ". Bulk edge: the largest quadrature node standing for "
             f"≥ {s.bulk_count:g} eigenvalues (n·w ≥ {s.bulk_count:g}), median "
             "over probes; outliers: the quadrature's count of eigenvalues "
             f"above the edge by more than {s.outlier_gap:g} × the bulk's "
             "width (edge − smallest node); λ_max: the largest Ritz value"),
      figures=[(caption[f], f) for f in plot(path, summary)],
      comparisons=comparisons(summary, config),
      details=["### Whole model\n\n" + table(summary, "whole"),
               "### Per block\n\n" + table(summary, "layers")],
      run=f"Hessian-vector products: {summary['hvps_per_second']:.0f} per "
          "second (all runs, compilation excluded).")
