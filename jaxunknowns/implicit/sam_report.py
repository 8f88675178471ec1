"""report.md and sam.png of `sam`, from summary.json alone."""

import os

from jaxunknowns import report
from jaxunknowns.implicit import papers
from jaxunknowns.report import compare

FIGURE = "sam.png"
PAPER_ERROR = {"sam": "SGD 3.20 %, SAM 2.86 %", "asam": "SGD 3.20 %, ASAM 2.55 %"}
PANELS = (("test_accuracy", "test accuracy (%)", 100.0),
          ("lambda_max", "λ_max (train subset)", 1.0),
          ("trace", "Hessian trace (Hutchinson)", 1.0))


def groups(summary):
  """[(label, arm, ρ, stats)] in the arms' order, one per (arm, ρ)."""
  return [(name if name.startswith("sgd") else f"{name} ρ={rho}", name, rho, s)
          for name, arm in summary["arms"].items()
          for rho, s in arm["by_rho"].items()]


def error(stat):
  return {"mean": 1 - stat["mean"], "per_seed": [1 - v for v in stat["per_seed"]]}


def comparisons(summary, config):
  base = {n: g[3] for g in groups(summary) for n in (g[1],) if n.startswith("sgd")}
  if "sgd" not in base:
    return []
  sgd, out = base["sgd"], []
  for label, arm, rho, s in groups(summary):
    if arm.startswith("sgd"):
      continue
    ours = {"data": summary["dataset"], "model": summary["model"],
            "optimizer": config.optim.name, "rho": float(rho),
            "epochs": summary["epochs"]}
    # (quantity, reference, paper, a, b, names, scale, digits)
    rows = [(f"test error (%): sgd vs {label}", papers.DAVDA_WRN,
             PAPER_ERROR[arm], error(sgd["test_accuracy"]),
             error(s["test_accuracy"]), ("sgd", label), 100.0, 2)]
    rows += [(f"{q}: sgd vs {label}", papers.FORET_FLAT, "smaller with SAM",
              sgd[key], s[key], ("sgd", label), 1.0, 3)
             for q, key in (("λ_max", "lambda_max"), ("Hessian trace", "trace"),
                            ("ε-sharpness", "sharpness"))]
    if "sgd_2x" in base:
      rows.append((f"test accuracy (%): {label} vs sgd_2x (equal gradients)",
                   papers.FORET_COMPUTE, "higher with SAM", s["test_accuracy"],
                   base["sgd_2x"]["test_accuracy"], (label, "sgd_2x"), 100.0, 2))
    out += [compare.versus(q, ref, a, b, names, scale=scale, digits=digits,
                           sig=scale == 1.0, paper=paper, our_protocol=ours)
            for q, ref, paper, a, b, names, scale, digits in rows]
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
  m, o = config.measure, config.optim
  plot(path, summary)
  rows = [[label, summary["arms"][arm]["steps"],
           summary["arms"][arm]["steps"] * summary["arms"][arm]["gradients_per_step"]]
          + [report.fmt(s[q], 100.0 if "acc" in q else 1.0, 2 if "acc" in q else 3,
                        sig="acc" not in q, n=False) for q in
             ("test_accuracy", "train_accuracy", "train_loss", "lambda_max",
              "trace", "sharpness")] for label, arm, _, s in groups(summary)]
  report.write_page(path, report.experiment_page(
      config, summary, references=(papers.FORET_FLAT, papers.FORET_COMPUTE,
                                   papers.DAVDA_WRN),
      setup=f"batch {config.train.batch_size}, {summary['epochs']:g} epochs "
      "(sgd_2x: twice), every arm on the same seeds; SAM ascent "
      f"w + ρ g/‖g‖ (ASAM: T = |w| + {o.sam_eta:g}), "
      + (f"m-sharpness m = {o.sam_m}" if o.sam_m else "one ascent per batch")
      + f", BN statistics from the first pass. At the end, on {summary['subset_size']} "
      f"fixed training examples (BN in eval mode): Hutchinson trace "
      f"({m.trace_probes} Rademacher probes), λ_max (largest Ritz value of "
      f"{m.lanczos_steps} Lanczos steps), ε-sharpness (ε = {m.epsilon:g}, "
      f"{m.sharpness_iterations} projected sign-gradient steps)",
      figures=[("Test accuracy, λ_max and Hessian trace per arm and ρ, mean ± "
                "std over seeds", FIGURE)],
      comparisons=comparisons(summary, config),
      details=["### Arms\n\n" + report.markdown_table(
          ["arm", "steps", "gradient evaluations", "test acc (%)",
           "train acc (%)", "train loss", "λ_max", "trace", "ε-sharpness"],
          rows)]))
