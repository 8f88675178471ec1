"""report.md and eigenvalue_along_training.png of `sharpness`, from
summary.json (the figure from metrics.jsonl's Hessian rows)."""

import os

from jaxunknowns import metrics as metrics_lib
from jaxunknowns import report
from jaxunknowns.implicit import papers
from jaxunknowns.report import compare

FIGURE = "eigenvalue_along_training.png"


def plot(path, summary) -> bool:
  """The top eigenvalue along training per arm, epochs on x; without
  metrics.jsonl (docs/results), the run's figure where the workdir has it."""
  if not os.path.exists(os.path.join(path, metrics_lib.METRICS_FILE)):
    return os.path.exists(os.path.join(path, FIGURE))
  rows, drawn = metrics_lib.read_metrics(path), False
  fig, ax = report.plt.subplots(figsize=(6, 4))
  for name in summary["compare"]:
    per_epoch = summary["arms"][name]["steps_per_epoch"]
    curves = metrics_lib.curves(rows, "hessian", "eig_0", arm=name)
    report.plot_band(ax, {s: {t / per_epoch: v for t, v in c.items()}
                          for s, c in curves.items()}, name, marker="o")
    drawn |= bool(curves)
  ax.set(xlabel="epoch", ylabel="top Hessian eigenvalue (train subset)")
  ax.grid(alpha=0.3)
  ax.legend()
  report.save_figure(fig, os.path.join(path, FIGURE))
  return drawn


def comparisons(summary, config):
  """Keskar et al.'s directions, the last arm (large batch) against the first."""
  names = summary["compare"]
  if len(names) < 2:
    return []
  a, b, arms = names[0], names[-1], summary["arms"]
  small, large = arms[a], arms[b]
  ours = {"optimizer": config.optim.name, "small batch": small["batch_size"],
          "large batch": f"{100 / large['steps_per_epoch']:.0f}% of the "
                         "training set",
          "sharpness maximiser": "projected sign-gradient ascent"}
  rows = [("test accuracy (%)", papers.KESKAR_WORSE, small["final"]["test"][
      "accuracy"], large["final"]["test"]["accuracy"], 100.0, 2, True),
          ("top Hessian eigenvalue", papers.KESKAR_SHARP,
           small["top_eigenvalue"], large["top_eigenvalue"], 1.0, 3, False)]
  rows += [(f"ε-sharpness, ε = {eps}", papers.KESKAR_SHARP, small["sharpness"][
      eps], large["sharpness"][eps], 1.0, 4, False) for eps in small["sharpness"]]
  out = []
  for quantity, ref, s, l, scale, digits, small_higher in rows:
    hi, lo = ((s, a), (l, b)) if small_higher else ((l, b), (s, a))
    out.append(compare.comparison(
        quantity, ref, f"{a} {report.fmt(s, scale, digits)}, {b} "
        f"{report.fmt(l, scale, digits)}",
        *compare.greater(hi[0], lo[0], a_name=hi[1], b_name=lo[1], scale=scale),
        paper=f"{'lower' if small_higher else 'larger'} with the large batch",
        our_protocol=ours))
  return out


def write(path, config, summary):
  """report.md and the figure from the workdir's files."""
  eps = [f"{e:g}" for e in summary["epsilons"]]
  rows = [[n, a["batch_size"], a["steps"],
           report.fmt(a["final"]["test"]["accuracy"]),
           report.fmt(a["final"]["train"]["accuracy"]),
           report.fmt(a["top_eigenvalue"], 1.0, 3)]
          + [report.fmt(a["sharpness"][e], 1.0, 4) for e in eps]
          for n, a in summary["arms"].items()]
  report.write_page(path, report.Page(
      title=f"sharpness: {config.model.name} on {config.data.name}",
      claim=f"{papers.KESKAR_SHARP.statement}; {papers.KESKAR_WORSE.statement}"
            f" ({papers.KESKAR_SHARP.source}).",
      config=(f"`{config.model.name}` on `{config.data.name}`, "
              f"{config.optim.name} lr {config.optim.lr}, the same "
              f"{summary['epochs']:g} epochs per arm, {len(summary['seeds'])} "
              f"seeds per arm trained at once. Top Hessian eigenvalue: "
              f"Lanczos on {summary['hessian_subset']} training examples; "
              f"ε-sharpness 100 (max L − L)/(1 + L) over the box |δ_i| ≤ "
              f"ε(|x_i| + 1), {config.sharpness.iterations} projected "
              f"sign-gradient ascent steps on {summary['sharpness_subset']} "
              f"training examples; BatchNorm (if any) in eval mode."),
      figures=[("Top Hessian eigenvalue of the training loss (fixed subset) "
                "along training per arm, mean ± std over seeds", FIGURE)]
      if plot(path, summary) else [],
      comparisons=comparisons(summary, config),
      details=["### Arms\n\n" + report.markdown_table(
          ["arm", "batch", "steps", "test acc (%)", "train acc (%)",
           "top eigenvalue"] + [f"ε-sharpness {e}" for e in eps], rows)],
      run=report.run_line(summary)))
