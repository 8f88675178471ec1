"""report.md and sam.png of `sam`, from summary.json alone."""

import os

from jaxunknowns import report
from jaxunknowns.config_defaults import BEFORE_FIELD
from jaxunknowns.implicit import papers

FIGURE = "sam.png"
PANELS = (("test_accuracy", "test accuracy (%)", 100.0),
          ("lambda_max", "λ_max (train subset)", 1.0),
          ("trace", "Hessian trace (Hutchinson)", 1.0))
COLUMNS = ("test_accuracy", "train_accuracy", "train_loss", "lambda_max",
           "trace", "sharpness")


def groups(summary):
  """[(label, arm, ρ, stats)] in the arms' order, one per (arm, ρ)."""
  return [(name if name.startswith("sgd") else f"{name} ρ={rho}", name, rho, s)
          for name, arm in summary["arms"].items()
          for rho, s in arm["by_rho"].items()]


def comparisons(summary, config):
  base = {g[1]: g[3] for g in groups(summary) if g[1].startswith("sgd")}
  error = lambda s: {"mean": 1 - s["mean"],
                     "per_seed": [1 - v for v in s["per_seed"]]}
  out, sgd = report.Rows(), base.get("sgd")
  for label, arm, rho, s in groups(summary) if sgd else ():
    if arm.startswith("sgd"):
      continue
    out.ours = {"data": summary["dataset"], "model": summary["model"],
                "optimizer": config.optim.name, "rho": float(rho),
                "epochs": summary["epochs"]}
    out.versus(f"test error (%): sgd vs {label}", papers.DAVDA_WRN,
               error(sgd["test_accuracy"]), error(s["test_accuracy"]),
               ("sgd", label), paper="lower with SAM")
    for q, key in (("λ_max", "lambda_max"), ("Hessian trace", "trace"),
                   ("ε-sharpness", "sharpness")):
      out.versus(f"{q}: sgd vs {label}", papers.FORET_FLAT, sgd[key], s[key],
                 ("sgd", label), scale=1.0, digits=3, sig=True,
                 paper="smaller with SAM")
    if "sgd_2x" in base:
      out.versus(f"test accuracy (%): {label} vs sgd_2x (equal gradients)",
                 papers.FORET_COMPUTE, s["test_accuracy"],
                 base["sgd_2x"]["test_accuracy"], (label, "sgd_2x"),
                 paper="higher with SAM")
  return out


def plot(path, summary):
  gs = groups(summary)
  with report.figure(os.path.join(path, FIGURE), len(PANELS), (4, 3.4)) as axes:
    for ax, (key, label, scale) in zip(axes, PANELS):
      report.errorbars(ax, range(len(gs)), [g[3][key] for g in gs], scale,
                       fmt="o", linestyle="none")
      ax.set_xticks(range(len(gs)), [g[0] for g in gs], rotation=30, fontsize=8)
      ax.set(ylabel=label)


def write(path, config, summary):
  m, o, arms = config.measure, config.optim, summary["arms"]
  step = m.get("sharpness_step", BEFORE_FIELD["measure.sharpness_step"])
  plot(path, summary)
  rows = [[label, arms[arm]["steps"], arms[arm]["steps"] * arms[arm][
      "gradients_per_step"]] + [report.fmt(
          s[q], 100.0, 2, n=False) if "acc" in q else report.fmt(
              s[q], 1.0, 3, sig=True, n=False) for q in COLUMNS]
          for label, arm, _, s in groups(summary)]
  report.write(
      path, config, summary, references=(papers.FORET_FLAT,
                                         papers.FORET_COMPUTE,
                                         papers.DAVDA_WRN),
      setup=f"batch {config.train.batch_size}, {summary['epochs']:g} epochs "
      + ("(sgd_2x: twice), " if "sgd_2x" in summary["arms"] else "")
      + "every arm on the same seeds; SAM ascent w + ρ g/‖g‖"
      + (f" (ASAM: T = |w| + {o.sam_eta:g})" if "asam" in summary["arms"]
         else "") + ", "
      + (f"m-sharpness m = {o.sam_m}" if o.sam_m else "one ascent per batch")
      + ", BN statistics from the first pass. At the end, on "
      f"{summary['subset_size']} fixed training examples (BN in eval mode): "
      f"Hutchinson trace ({m.trace_probes} Rademacher probes), λ_max "
      f"(largest Ritz value of {m.lanczos_steps} Lanczos steps), ε-sharpness "
      f"(ε = {m.epsilon:g}, {m.sharpness_iterations} projected sign-gradient "
      f"steps of {step:g} × the box half-width)",
      figures=[("Test accuracy, λ_max and Hessian trace per arm and ρ, mean "
                "± std over seeds", FIGURE)],
      comparisons=comparisons(summary, config),
      details=["### Arms\n\n" + report.markdown_table(
          ["arm", "steps", "gradient evaluations", "test acc (%)",
           "train acc (%)", "train loss", "λ_max", "trace", "ε-sharpness"],
          rows)])
