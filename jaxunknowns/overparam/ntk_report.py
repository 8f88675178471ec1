"""report.md, ntk_width.png and ntk_steps.png of an `ntk` run, from
summary.json."""

import os

from jaxunknowns import report
from jaxunknowns.overparam import papers
from jaxunknowns.report import compare

WIDTH, STEPS = "ntk_width.png", "ntk_steps.png"
REFERENCES = (papers.LEE_WEIGHTS, papers.LEE_KERNEL, papers.LEE_LINEAR,
              papers.FORT_EARLY)


def kernel_of(s) -> str:
  """The kernel the run's linearized model solved with: the full per-logit
  Θ_0 (summary's regression_kernel), or, in runs before, the trace K_0."""
  return "Θ_0" if s.get("regression_kernel") == "full" else "K_0"


def regression_setup(s, ridge) -> str:
  if kernel_of(s) == "K_0":
    return (f"kernel regression with K_0 (ridge {ridge:g} × mean diagonal)")
  return (f"kernel regression with Θ_0, the full per-logit NTK at init (an "
          f"[n C, n C] system, float64; ridge {ridge:g} × its mean diagonal)")


def _stat(x, key):  # a final value of the curves, or a stage's own
  return x["final"].get(key) or x[key]


def _mean(x, key):
  return _stat(x, key)["mean"]


def plot(path, s):
  ws, st = s["widths"], [s["stages"][str(w)] for w in s["widths"]]
  with report.figure(os.path.join(path, WIDTH), 3, (4.4, 3.6)) as axes:
    for ax, key in zip(axes, ("weight_change", "kernel_change")):
      report.errorbars(ax, ws, [x["final"][key] for x in st], label="ours")
      ax.loglog(ws, [_mean(st[-1], key) * (w / ws[-1]) ** -0.5 for w in ws],
                "k--", label="∝ width^-1/2")
      ax.set(xlabel="width", title=f"relative {key.split('_')[0]} change, end")
    for key in ("network_accuracy", "kernel_regression_accuracy"):
      report.errorbars(axes[2], ws, [x[key] for x in st], 100, label=key[:-9])
    axes[2].set(xscale="log", xlabel="width", ylabel="test accuracy (%)")
  panels = [(lambda x: x["curves"]["kernel_change"],
             "||K_t − K_0||_F / ||K_0||_F"),
            (lambda x: x["speed"], "kernel speed per step")]
  if "angular_speed" in st[0]:  # a run before it recorded no angle
    panels.append((lambda x: x["angular_speed"], "kernel angle per step (rad)"))
  with report.figure(os.path.join(path, STEPS), len(panels),
                     (4.8, 3.6)) as axes:
    for ax, (curve, title) in zip(axes, panels):
      for w, x in zip(ws, st):
        ax.loglog(s["record_steps"], curve(x)["mean"], label=f"width {w}")
      ax.set(xlabel="step", title=title)
      ax.axvline(s["early_step"], color="gray", ls=":")


def comparisons(s, config):
  ws, st = s["widths"], [s["stages"][str(w)] for w in s["widths"]]
  # Fort et al.'s rows take the angle between kernels where the run
  # recorded it (scale-free, as their distance); a run before, ‖ΔK‖_F.
  angle = "angular_speed" in st[0]
  speed = "angular_speed" if angle else "speed"
  out = report.Rows({"model": s["model"], "data": s["dataset"],
                     "loss": config.train.loss,  # ntk.kernel_speed's
                     "kernel distance": papers.KERNEL_ANGLE if angle
                     else "‖ΔK‖_F / ‖K_0‖_F"})
  trend = lambda q, ref, key, up=False, k=1: out.check(
      f"{q} {'rises' if up else 'falls'} with width", ref,
      ", ".join(f"{k * _mean(x, key):.3g}" for x in st), compare.trend(
          [_stat(x, key) for x in st], increasing=up, what=q, scale=k,
          digits=1 if up else 3, paired=True), "yes")
  slope, half = s["slopes"]["kernel_change"], f"widths ≥ {ws[len(ws) // 2]}"
  for over, key in (("all widths", "slopes"), (half, "slopes_wide")):
    out.versus(f"log-log slope of weight change vs width, {over}",
               papers.LEE_WEIGHTS, s[key]["weight_change"], {"mean": -0.5},
               ("ours", "paper"), paper="−0.5", rule=compare.within,
               tolerance=0.1, scale=1.0)
  trend("weight change", papers.LEE_WEIGHTS, "weight_change")
  out.check("log-log slope of kernel change vs width, all widths",
            papers.LEE_KERNEL, report.fmt(slope, 1.0), compare.at_most(
                slope, -0.5, scale=1.0, slack=0.1), "≤ −0.5 (an O(1/√n) bound)")
  trend("kernel change", papers.LEE_KERNEL, "kernel_change")
  trend("linearization error on the probe", papers.LEE_LINEAR, "linearization")
  trend("network / kernel-regression agreement (%)", papers.LEE_LINEAR,
        "agreement", True, 100)
  out.versus(f"width {ws[-1]}: test accuracy, network vs kernel regression "
             "(%)", papers.LEE_LINEAR, st[-1]["network_accuracy"],
             st[-1]["kernel_regression_accuracy"], ("network", kernel_of(s)),
             paper="equal", rule=compare.within, tolerance=0.02)
  for x in (st[0], st[-1]):
    out.versus(f"width {x['width']}: kernel "
               f"{'angle (10⁻³ rad' if angle else 'speed (10⁻³'} / step) "
               f"before vs after step {s['early_step']}",
               papers.FORT_EARLY, x[f"early_{speed}"], x[f"late_{speed}"],
               ("early", "late"),
               paper="early > late", scale=1e3, digits=3, sig=True)
  return out


def table(s):
  keys = ("weight_change", "kernel_change", "linearization", "train_loss")
  accs = ("network_accuracy", "kernel_regression_accuracy", "agreement")
  return report.markdown_table(
      ["width", "params", *(k.replace("_", " ") for k in keys),
       *(f"test {k.replace('_', ' ')} (%)" for k in accs)],
      [[w, x["num_params"]] + [report.fmt(x["final"].get(k) or x[k], 1.0, 3,
                                          sig=True, n=False) for k in keys]
       + [report.fmt(x[k], n=False) for k in accs]
       for w, x in ((w, s["stages"][str(w)]) for w in s["widths"])])


def write(path, config, summary):
  n, t = config.ntk, config.train
  plot(path, summary)
  report.write(
      path, config, summary, references=REFERENCES,
      setup=(f"{t.loss} loss, batch {t.batch_size}, {t.steps} steps; "
             f"{n.depth} hidden layer(s) of width "
             f"{', '.join(map(str, summary['widths']))} (a stage each). K: the"
             f" empirical NTK traced over the outputs, on the first "
             f"{summary['probe_size']} training examples; "
             f"{regression_setup(summary, n.ridge)} on the whole "
             f"training set, tested on the first {summary['test_examples']} "
             "test examples"),
      figures=[("Relative change of weights and kernel at the end, and test "
                "accuracy, vs width (mean ± std over seeds)", WIDTH),
               ("Kernel change and speed (and, where recorded, angle) per "
                "step over training (dotted: the end of the early phase)",
                STEPS)],
      comparisons=comparisons(summary, config), details=[table(summary)])
