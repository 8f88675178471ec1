"""report.md, ntk_width.png and ntk_steps.png of an `ntk` run, from
summary.json."""

import os

import numpy as np

from jaxunknowns import report
from jaxunknowns.overparam import papers
from jaxunknowns.report import compare

WIDTH, STEPS = "ntk_width.png", "ntk_steps.png"
REFERENCES = (papers.LEE_WEIGHTS, papers.LEE_KERNEL, papers.LEE_LINEAR,
              papers.FORT_EARLY)


def plot(path, s):
  ws, st = s["widths"], [s["stages"][str(w)] for w in s["widths"]]
  with report.figure(os.path.join(path, WIDTH), 3, (4.4, 3.6)) as axes:
    for ax, key in zip(axes, ("weight_change", "kernel_change")):
      report.errorbars(ax, ws, [x["final"][key] for x in st], label="ours")
      y0 = st[0]["final"][key]["mean"]
      ax.loglog(ws, [y0 * (w / ws[0]) ** -0.5 for w in ws], "k--",
                label="∝ width^-1/2")
      ax.set(xlabel="width", title=f"relative {key.split('_')[0]} change, end")
    for key, label in (("network_accuracy", "network"),
                       ("kernel_regression_accuracy", "kernel regression K_0")):
      report.errorbars(axes[2], ws, [x[key] for x in st], 100, label=label)
    axes[2].set(xscale="log", xlabel="width", ylabel="test accuracy (%)")
  with report.figure(os.path.join(path, STEPS), 2, (4.8, 3.6)) as axes:
    steps = np.asarray(s["record_steps"])
    for w, x in zip(ws, st):
      axes[0].semilogx(steps, x["curves"]["kernel_change"]["mean"],
                       label=f"width {w}")
      axes[1].loglog(steps, x["speed"]["mean"], label=f"width {w}")
    axes[0].set(xlabel="step", title="||K_t − K_0||_F / ||K_0||_F")
    axes[1].set(xlabel="step", title="kernel speed per step")
    for ax in axes:
      ax.axvline(s["early_step"], color="gray", ls=":")
  return [WIDTH, STEPS]


def comparisons(s):
  ws, st = s["widths"], [s["stages"][str(w)] for w in s["widths"]]
  ours = {"model": s["model"], "data": s["dataset"], "loss": "mse"}
  means = lambda key: [x["final"][key]["mean"] for x in st]
  trend = lambda q, ref, vals, up, what: compare.comparison(
      q, ref, ", ".join(f"{v:.3g}" for v in vals),
      *compare.monotone(vals, increasing=up, what=what), paper="yes",
      our_protocol=ours)
  slope = lambda q, ref, key: compare.versus(
      q, ref, s["slopes"][key], {"mean": -0.5}, ("ours", "paper"),
      rule=compare.within, tolerance=0.1, scale=1.0, paper="−0.5",
      our_protocol=ours)
  wide, narrow = st[-1], st[0]
  rows = [slope("log-log slope of weight change vs width", papers.LEE_WEIGHTS,
                "weight_change"),
          trend("weight change falls with width", papers.LEE_WEIGHTS,
                means("weight_change"), False, "weight change"),
          slope("log-log slope of kernel change vs width", papers.LEE_KERNEL,
                "kernel_change"),
          trend("kernel change falls with width", papers.LEE_KERNEL,
                means("kernel_change"), False, "kernel change"),
          trend("linearization error on the probe falls with width",
                papers.LEE_LINEAR, means("linearization"), False,
                "linearization error"),
          trend("network / kernel-regression agreement rises with width",
                papers.LEE_LINEAR, [100 * x["agreement"]["mean"] for x in st],
                True, "agreement (%)"),
          compare.versus(f"width {ws[-1]}: test accuracy, network vs "
                         "kernel regression (%)", papers.LEE_LINEAR,
                         wide["network_accuracy"],
                         wide["kernel_regression_accuracy"],
                         ("network", "K_0"), rule=compare.within,
                         tolerance=0.02, paper="equal", our_protocol=ours)]
  return rows + [compare.versus(
      f"width {x['width']}: kernel speed before vs after step "
      f"{s['early_step']}", papers.FORT_EARLY, x["early_speed"],
      x["late_speed"], ("early", "late"), scale=1.0, digits=3, sig=True,
      paper="early > late", our_protocol=ours) for x in (narrow, wide)]


def table(s):
  cols = ("weight_change", "kernel_change", "linearization")
  return report.markdown_table(
      ["width", "params", "weight change", "kernel change",
       "linearization error", "train loss", "test acc. network (%)",
       "test acc. kernel regression (%)", "agreement (%)"],
      [[w, x["num_params"]] + [report.fmt(x["final"][k], 1.0, 3, sig=True,
                                           n=False) for k in cols]
       + [report.fmt(x["train_loss"], 1.0, 3, sig=True, n=False)]
       + [report.fmt(x[k], n=False) for k in (
           "network_accuracy", "kernel_regression_accuracy", "agreement")]
       for w, x in ((w, s["stages"][str(w)]) for w in s["widths"])])


def write(path, config, summary):
  n = config.ntk
  plot(path, summary)
  report.write_page(path, report.experiment_page(
      config, summary, references=REFERENCES,
      setup=(f"{config.train.loss} loss, batch {config.train.batch_size}, "
             f"{config.train.steps} steps; {n.depth} hidden layer(s) of width "
             f"{', '.join(map(str, summary['widths']))}. Kernel: the empirical "
             f"NTK traced over the outputs on the first {summary['probe_size']}"
             " training examples; kernel regression with K_0 (the linearized "
             "network trained to convergence, ridge "
             f"{n.ridge:g} × mean diagonal) on the whole training set, tested "
             f"on the first {summary['test_examples']} test examples"),
      figures=[("Relative change of weights and kernel at the end, and test "
                "accuracy, vs width (mean ± std over seeds)", WIDTH),
               ("Kernel change and speed over training (dotted: the end of "
                "the early phase)", STEPS)],
      comparisons=comparisons(summary), details=[table(summary)]))
