"""Figures and report.md of `bn_only`, from summary.json and the stages'
gammas.npz (so a report can be rebuilt from a finished workdir)."""

import os

import numpy as np

from jaxunknowns import report
from jaxunknowns.report import plt

ARM_LABELS = {"bn": "BN only (γ, β)", "bn_output": "BN + output layer",
              "random2": "2 random weights / channel",
              "output": "output layer only", "full": "full training"}


def accuracy_vs_depth(path, summary):
  widths = summary["widths"]
  fig, axes = plt.subplots(1, len(widths), figsize=(5.5 * len(widths), 4),
                           squeeze=False)
  for ax, width in zip(axes[0], widths):
    pts = sorted((p for p in summary["points"] if p["width"] == width),
                 key=lambda p: p["depth"])
    depths = [p["depth"] for p in pts]
    for arm in summary["arms"]:
      acc = [p["arms"][arm]["test_accuracy"] for p in pts]
      ax.errorbar(depths, [100 * a["mean"] for a in acc],
                  yerr=[100 * a["std"] for a in acc], marker="o", capsize=3,
                  label=ARM_LABELS[arm])
    ax.axhline(100.0 / 10, color="gray", linestyle=":", label="chance")
    ax.set_xlabel("ResNet depth")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(depths)
    ax.set_title(f"width {width} (mean ± std over "
                 f"{len(summary['seeds'])} seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def gamma_histograms(path, workdir, summary):
  pts = summary["points"]
  arms = [a for a in ("bn", "bn_output", "full") if a in summary["arms"]]
  fig, axes = plt.subplots(1, len(pts), figsize=(4.2 * len(pts), 3.6),
                           squeeze=False)
  thr = summary["gamma_threshold"]
  for ax, p in zip(axes[0], pts):
    data = np.load(os.path.join(workdir, "stages", _stage(p), "gammas.npz"))
    bins = np.linspace(-1.0, 2.0, 61)
    ax.hist(data["init"][0], bins=bins, histtype="step", color="gray",
            label="init U[0,1]")
    for arm in arms:
      sel = data["arms"] == arm
      ax.hist(data["final"][sel].ravel(), bins=bins, histtype="step",
              label=ARM_LABELS[arm], density=False,
              weights=np.full(data["final"][sel].size, 1.0 / sel.sum()))
    ax.axvspan(-thr, thr, color="red", alpha=0.15, label=f"|γ| < {thr:g}")
    ax.set_title(f"ResNet-{p['depth']} width {p['width']}")
    ax.set_xlabel("γ")
    ax.set_ylabel("count per run")
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _stage(p):
  return f"depth_{p['depth']:04d}_width_{p['width']:03d}"


def write(workdir, config, summary):
  accuracy_vs_depth(os.path.join(workdir, "accuracy_vs_depth.png"), summary)
  gamma_histograms(os.path.join(workdir, "gamma_histogram.png"), workdir,
                   summary)
  arms = summary["arms"]
  rows = []
  for p in summary["points"]:
    rows.append([f"ResNet-{p['depth']}", p["width"]] + [
        f"{report.fmt(p['arms'][a]['test_accuracy'])} "
        f"[{p['arms'][a]['trainable']:,}]" for a in arms])
  thr = summary["gamma_threshold"]
  g_arms = [a for a in ("bn", "bn_output", "full") if a in arms]
  g_rows = [[f"ResNet-{p['depth']}", p["width"], p["num_gamma"],
             report.fmt(p["arms"][g_arms[0]]["gamma_near_zero_init"])] +
            [report.fmt(p["arms"][a]["gamma_near_zero"]) for a in g_arms]
            for p in summary["points"]] if g_arms else []
  f_rows = [[f["width"], f["bn_above_controls_every_depth"],
             f["bn_rising_with_depth"],
             f"{100 * f['bn_min_over_chance']:.1f}"]
            for f in summary["findings"]]
  o = config.optim
  sections = [
      f"Only BatchNorm's γ and β trained on frozen random weights "
      f"(Frankle, Schwab & Morcos 2020), against count-matched controls. "
      f"`{config.data.name}` at input {tuple(summary['input_shape'])}, "
      f"{summary['train_examples']} training / {summary['test_examples']} "
      f"test examples; {o.name} lr {o.lr} ({o.schedule}), weight decay "
      f"{o.weight_decay}, batch {config.train.batch_size}, "
      f"{summary['steps']} steps; Kaiming-normal weights, γ ~ "
      f"{config.model.bn_scale_init}, β = 0. Every arm and seed of a depth "
      f"trains in one compiled program, each seed from the same initial "
      f"weights and data order in every arm.",
      "## Test accuracy (%), mean ± std over seeds [trainable parameters]\n\n"
      + report.markdown_table(["model", "width"] + [ARM_LABELS[a] for a in arms],
                              rows),
      "![accuracy vs depth](accuracy_vs_depth.png)",
      "## Findings\n\n" + report.markdown_table(
          ["width", "BN-only above both controls at every depth",
           "BN-only rising with depth", "lowest BN-only minus chance (points)"],
          f_rows),
  ]
  if g_rows:
    sections.append(
        f"## γ switched off: fraction of γ with |γ| < {thr:g}\n\n"
        "At initialization (U[0, 1]) and after training, mean ± std over "
        "seeds (fractions in %).\n\n" + report.markdown_table(
            ["model", "width", "γ per run", "at init"] +
            [ARM_LABELS[a] for a in g_arms], g_rows) +
        "\n\n![gamma histogram](gamma_histogram.png)")
  sections.append(
      "Frozen entries never moved: the largest change of a frozen parameter, "
      "over all runs, is "
      f"{max(p['arms'][a]['frozen_max_change'] for p in summary['points'] for a in arms)}"
      f". Wall time {summary['wall_time_s']:.0f} s (stages "
      f"{summary['stages_wall_time_s']:.0f} s) on "
      f"{summary['machine']['num_devices']} × "
      f"{summary['machine']['device_kind']}.")
  report.write_report(os.path.join(workdir, "report.md"),
                      f"bn_only: {config.data.name}", sections)
