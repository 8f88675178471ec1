"""report.md and eigenvalue_along_training.png of `sharpness`, from
summary.json and metrics.jsonl (the run's PNG where that is absent)."""

import os

from jaxunknowns import metrics as metrics_lib
from jaxunknowns import paths
from jaxunknowns import report
from jaxunknowns.implicit import papers

FIGURE = "eigenvalue_along_training.png"


def plot(path, summary) -> bool:
  rows, drawn = metrics_lib.read_metrics(path), False
  if not rows:  # metrics.jsonl gone or unreadable: the run's PNG stays
    return paths.exists(os.path.join(path, FIGURE))
  with report.figure(os.path.join(path, FIGURE), size=(6, 4)) as (ax,):
    for name, arm in summary["arms"].items():
      curves = metrics_lib.curves(rows, "hessian", "eig_0", arm=name)
      report.plot_band(ax, {s: {t / arm["steps_per_epoch"]: v for t, v in
                                c.items()} for s, c in curves.items()}, name)
      drawn |= bool(curves)
    ax.set(xlabel="epoch", ylabel="top Hessian eigenvalue (train subset)")
  return drawn


def lbfgsb(config) -> bool:
  return config.sharpness.get("maximiser", "sign_ascent") == "lbfgsb"


def maximiser(config) -> str:
  """In the words of papers.KESKAR_SETTING's "sharpness maximiser"."""
  return "L-BFGS-B" if lbfgsb(config) else "projected sign-gradient ascent"


def comparisons(summary, config):
  """Keskar et al.'s directions: the last arm (large batch) against the
  first."""
  a, b = summary["compare"][0], summary["compare"][-1]
  small, large = summary["arms"][a], summary["arms"][b]
  out = report.Rows({
      "optimizer": config.optim.name, "small batch": small["batch_size"],
      "large batch": f"{100 / large['steps_per_epoch']:.0f}% of the training "
                     "set", "sharpness maximiser": maximiser(config)})
  # (quantity, reference, the arm's stat, scale, digits)
  rows = [("test accuracy (%)", papers.KESKAR_WORSE,
           lambda arm: arm["final"]["test"]["accuracy"], 100.0, 2),
          ("top Hessian eigenvalue", papers.YAO_EIGENVALUE,
           lambda arm: arm["top_eigenvalue"], 1.0, 3)]
  rows += [(f"ε-sharpness, ε = {e}", papers.KESKAR_SHARP,
            lambda arm, e=e: arm["sharpness"][e], 1.0, 4)
           for e in small["sharpness"]]
  for quantity, ref, get, scale, digits in rows if a != b else []:
    worse = ref is papers.KESKAR_WORSE  # the small batch above, not below
    hi, lo = ((small, a), (large, b)) if worse else ((large, b), (small, a))
    # Paired (versus's default): every arm trains the same seeds (the same
    # init key and data seed per seed), per_seed in seed order.
    out.versus(quantity, ref, get(hi[0]), get(lo[0]), (hi[1], lo[1]),
               scale=scale, digits=digits,
               paper=f"{'lower' if worse else 'larger'} with the large batch")
  return out


def write(path, config, summary):
  eps = [f"{e:g}" for e in summary["epsilons"]]
  rows = [[n, a["batch_size"], a["steps"],
           report.fmt(a["final"]["test"]["accuracy"]),
           report.fmt(a["final"]["train"]["accuracy"]),
           report.fmt(a["top_eigenvalue"], 1.0, 3)]
          + [report.fmt(a["sharpness"][e], 1.0, 4) for e in eps]
          for n, a in summary["arms"].items()]
  report.write(
      path, config, summary, references=(
          papers.KESKAR_SHARP, papers.KESKAR_WORSE, papers.YAO_EIGENVALUE),
      setup=f"{summary['epochs']:g} epochs per arm; top Hessian eigenvalue by "
      f"Lanczos on {summary['hessian_subset']} training examples; ε-sharpness "
      "100 (max L − L)/(1 + L) over |δ_i| ≤ ε(|x_i| + 1) by "
      f"{config.sharpness.iterations} {maximiser(config)} "
      + ("iterations" if lbfgsb(config) else
         f"steps of {config.sharpness.step:g} × the box half-width")
      + f" on {summary['sharpness_subset']} examples",
      figures=[("Top Hessian eigenvalue along training, mean ± std over seeds",
                FIGURE)] if plot(path, summary) else [],
      comparisons=comparisons(summary, config),
      details=["### Arms\n\n" + report.markdown_table(
          ["arm", "batch", "steps", "test acc (%)", "train acc (%)",
           "top eigenvalue"] + [f"ε-sharpness {e}" for e in eps], rows)])
