"""report.md and figures (as Santurkar et al.'s Figs. 3-4) of `bn_smoothness`
from summary.json."""

import os

import numpy as np

from jaxunknowns import report
from jaxunknowns.batchnorm import bn_grid_report, papers
from jaxunknowns.metrics import stats
from jaxunknowns.report import compare

MEASURES = {"loss_range": "loss variation", "beta": "β-smoothness",
            "gpred_max": "gradient predictiveness (largest change)"}


def comparisons(summary, ours):
  """BN / no BN per seed (both arms see the same probe batch), the median
  over measured steps > 0, for each landscape measure and layer's ICS."""
  arms, out = summary["arms"], []
  if "batch" not in arms or "none" not in arms:
    return out
  bn, plain = arms["batch"], arms["none"]
  rows = [(MEASURES[k], ref, "smoothness", k, compare.at_most, "below 1")
          for k, ref in papers.SMOOTHER.items()] + [
              (f"ICS ‖G − G′‖ of {layer}", papers.ICS, "ics", f"l2_{layer}",
               compare.at_least, "not below 1") for layer in bn["layers"][1:]]
  for quantity, ref, group, key, rule, paper in rows:
    a, b = bn[group][key], plain[group][key]
    later = [t for t in a if t in b and int(t) > 0]
    ratio = stats(np.median([np.divide(a[t]["per_seed"], b[t]["per_seed"])
                             for t in later], axis=0))
    out.append(compare.comparison(
        f"{quantity}: BN / no BN, median over steps", ref,
        f"{report.fmt(ratio, 1.0, 3)}; BN lower at "
        f"{sum(a[t]['mean'] < b[t]['mean'] for t in later)} of {len(later)}",
        *rule(ratio, 1.0, scale=1.0), paper=paper, our_protocol=ours))
  final = {a: (v["final"]["test"]["accuracy"], a) for a, v in arms.items()}
  rows = [("final test accuracy (%), BN vs no BN", papers.BN_TRAINS_BETTER,
           "BN above", None, final["batch"], final["none"])]
  if "noisy_batch" in final:
    rows.append(("final test accuracy (%), noisy BN vs BN", papers.NOISY_BN,
                 "almost as well", 0.01, final["noisy_batch"], final["batch"]))
  return out + bn_grid_report.compared(rows, ours)


def figures(path, arms):
  """landscape.png (Fig. 4) and ics.png (Fig. 3): mean ± std over seeds."""
  layers = next(iter(arms.values()))["layers"]
  for name, panels in (
      ("landscape", [("smoothness", k, v) for k, v in
                     {"loss": "probe loss L(θ)", **MEASURES}.items()]),
      ("ics", [("ics", f"{kind}_{layer}", f"{layer}: {kind}")
               for kind in ("l2", "cos") for layer in layers])):
    fig, axes = report.plt.subplots(1, len(panels), squeeze=False,
                                    figsize=(3.6 * len(panels), 3.6))
    for ax, (group, key, title) in zip(axes[0], panels):
      for arm, a in arms.items():
        by_step = a[group][key]
        report.plot_band(ax, {i: {int(t): v["per_seed"][i] for t, v in
                                  by_step.items()} for i in range(len(
                                      next(iter(by_step.values()))["per_seed"]))},
                         arm)
      ax.set(title=title, xlabel="step",
             yscale="log" if name == "landscape" else "linear")
    axes[0, 0].legend(fontsize=8)
    report.save_figure(fig, os.path.join(path, f"{name}.png"))


def write_report(path: str, config, summary):
  """report.md, landscape.png and ics.png from summary.json."""
  arms = summary["arms"]
  figures(path, arms)
  bn_grid_report.page(
      path, config, summary,
      [("Probe loss and the landscape along the gradient (Fig. 4)",
        "landscape.png"), ("ICS per layer: ‖G − G′‖ (l2), cos(G, G′) (Fig. 3)",
                           "ics.png")],
      lambda ours: comparisons(summary, ours),
      ["### Final accuracy (%)\n\n" + bn_grid_report.table([
          {"cell": {"arm": a}, **{k: v["final"].get(k, {}).get("accuracy", {})
                                  for k in ("test", "train")}}
          for a, v in arms.items()], ("test", "train"))],
      steps=config.train.steps,
      setup=(f"batch {config.train.batch_size}, {config.train.steps} steps; "
             f"every {config.smoothness.every} steps on a fixed probe batch of "
             f"{summary['probe_size']} examples in train mode, η ∈ "
             f"{tuple(summary['step_sizes'])}"),
      run="Per arm: " + ", ".join(f"{a} {v['wall_time_s']:.0f} s"
                                  for a, v in arms.items()) + ".")
