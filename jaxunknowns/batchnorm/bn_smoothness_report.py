"""report.md and figures (as Santurkar et al.'s Figs. 2-4) of `bn_smoothness`
from summary.json (and metrics.jsonl, where the workdir has it)."""

import os

import numpy as np

from jaxunknowns import report
from jaxunknowns.batchnorm import bn_grid_report, papers
from jaxunknowns.metrics import curves, read_metrics, stats
from jaxunknowns.report import compare

LABELS = {"none": "no BN", "batch": "BN", "noisy_batch": "noisy BN"}
MEASURES = {"loss_range": "loss variation", "beta": "β-smoothness",
            "gpred_max": "gradient predictiveness (largest change)"}


def ratio(bn, plain):
  """Per seed, the median over measured steps > 0 of BN / no BN ({step:
  stats} of each arm, seeds paired: both see the same probe batch); with
  the number of steps where BN's mean is lower, and of steps."""
  later = [t for t in bn if t in plain and int(t) > 0]
  per_step = [np.divide(bn[t]["per_seed"], np.maximum(plain[t]["per_seed"],
                                                      1e-30)) for t in later]
  lower = sum(bn[t]["mean"] < plain[t]["mean"] for t in later)
  return stats(np.median(per_step, axis=0)), f"BN lower at {lower} of " \
      f"{len(later)} steps"


def comparisons(summary, ours):
  arms, out = summary["arms"], []
  if "batch" not in arms or "none" not in arms:
    return out
  bn, plain = arms["batch"], arms["none"]
  rows = [(f"{MEASURES[name]}: BN / no BN, median over steps", ref,
           bn["smoothness"][name], plain["smoothness"][name], compare.at_most,
           "below 1") for name, ref in papers.SMOOTHER.items()]
  rows += [(f"ICS ‖G − G′‖ of {layer}: BN / no BN, median over steps",
            papers.ICS, bn["ics"][f"l2_{layer}"], plain["ics"][f"l2_{layer}"],
            compare.at_least, "not below 1") for layer in bn["layers"]
           if any(s["mean"] for s in bn["ics"][f"l2_{layer}"].values())]
  for quantity, ref, a, b, rule, paper in rows:
    r, lower = ratio(a, b)
    holds, text = rule(r, 1.0, scale=1.0)
    out.append(compare.comparison(
        quantity, ref, f"{report.fmt(r, scale=1.0, digits=3)}; {lower}",
        holds, text, paper=paper, our_protocol=ours))
  final = {a: (arms[a]["final"]["test"]["accuracy"], LABELS.get(a, a))
           for a in arms}
  rows = [("final test accuracy (%), BN vs no BN", papers.BN_TRAINS_BETTER,
           "BN above", None, final["batch"], final["none"])]
  if "noisy_batch" in final:
    rows.append(("final test accuracy (%), noisy BN vs BN", papers.NOISY_BN,
                 "almost as well", 0.01, final["noisy_batch"], final["batch"]))
  return out + bn_grid_report.compared(rows, ours)


def _band(ax, by_step, label, low=None):
  """The band between the means of `low` and `by_step` ({step: stats}), or
  (no `low`) mean ± std over seeds."""
  steps = sorted(by_step, key=int)
  mean = [by_step[t]["mean"] for t in steps]
  std = [0 if low else report.text.std_of(by_step[t]) for t in steps]
  bottom = [low[t]["mean"] for t in steps] if low else [
      m - s for m, s in zip(mean, std)]
  ax.fill_between([int(t) for t in steps], bottom,
                  [m + s for m, s in zip(mean, std)], alpha=0.3, label=label)


def figures(path, arms):
  """landscape.png (Fig. 4), ics.png (Fig. 3), accuracy.png (Fig. 2)."""
  layers = next(iter(arms.values()))["layers"]
  panels = {"landscape": [("L(θ − ηg), band over η", "loss_max", "loss_min"),
                          ("‖∇L(θ) − ∇L(θ − ηg)‖, band over η", "gpred_max",
                           "gpred_min"), ("effective β-smoothness", "beta",
                                          None)],
            "ics": [(f"{layer}: {what}", f"{kind}_{layer}", None)
                    for kind, what in (("l2", "‖G − G′‖"), ("cos", "cos(G, G′)"))
                    for layer in layers]}
  for name, spec in panels.items():
    group = "smoothness" if name == "landscape" else "ics"
    fig, axes = report.plt.subplots(1, len(spec), squeeze=False,
                                    figsize=(3.6 * len(spec), 3.6))
    for ax, (title, key, low) in zip(axes[0], spec):
      for arm, a in arms.items():
        _band(ax, a[group][key], LABELS.get(arm, arm),
              low=a[group][low] if low else None)
      ax.set(title=title, xlabel="step",
             yscale="log" if name == "landscape" else "linear")
    axes[0, 0].legend(fontsize=8)
    report.save_figure(fig, os.path.join(path, f"{name}.png"))
  rows = read_metrics(path)
  if rows:
    fig, ax = report.plt.subplots(figsize=(6, 4))
    for arm in arms:
      report.plot_band(ax, curves(rows, "test", "accuracy", arm=arm),
                       LABELS.get(arm, arm), scale=100)
    ax.set(xlabel="step", ylabel="test accuracy (%)")
    ax.legend(fontsize=8)
    report.save_figure(fig, os.path.join(path, "accuracy.png"))


def write_report(path: str, config, summary):
  """report.md, landscape.png, ics.png and accuracy.png."""
  arms = summary["arms"]
  figures(path, arms)
  bn_grid_report.page(
      path, [*papers.SMOOTHER.values(), papers.ICS, papers.BN_TRAINS_BETTER,
             papers.NOISY_BN],
      [("Test accuracy per arm (Fig. 2)", "accuracy.png"),
       ("Loss and gradient bands over η, β-smoothness (Fig. 4)",
        "landscape.png"), ("ICS per layer (Fig. 3)", "ics.png")],
      title=f"bn_smoothness: {config.model.name} on {config.data.name}",
      config=(f"`{config.model.name}` on `{config.data.name}`, "
              f"{config.optim.name} lr {config.optim.lr}, batch "
              f"{config.train.batch_size}, {config.train.steps} steps, arms "
              f"{', '.join(arms)}, {len(summary['seeds'])} seeds each. "
              f"Measured every {config.smoothness.every} steps on a fixed "
              f"probe batch of {summary['probe_size']} examples in train "
              f"mode, η ∈ {tuple(summary['step_sizes'])}; noisy BN: scale "
              f"exp(N(0, {config.model.noise_scale_std}²)), shift N(0, "
              f"{config.model.noise_mean_std}²) per activation and step."),
      comparisons=comparisons(summary, {
          "model": config.model.name, "data": config.data.name,
          "steps": config.train.steps, "optimizer": config.optim.name}),
      details=["### Final accuracy (%)\n\n" + report.markdown_table(
          ["arm", "test", "train"],
          [[LABELS.get(a, a), report.fmt(v["final"]["test"]["accuracy"]),
            report.fmt(v["final"].get("train", {}).get("accuracy"))]
           for a, v in arms.items()])],
      run=report.run_line(summary, "Per arm: " + ", ".join(
          f"{LABELS.get(a, a)} {v['wall_time_s']:.0f} s"
          for a, v in arms.items()) + "."))
