"""Figures and report.md of `bn_only`, from summary.json and the stages'
gammas.npz (so a report can be rebuilt from a finished workdir)."""

import os
from typing import Any, Dict, List

import numpy as np

from jaxunknowns import report
from jaxunknowns.metrics import stats
from jaxunknowns.report.plots import plt

ARM_LABELS = {"bn": "BN only (γ, β)", "bn_output": "BN + output layer",
              "random2": "2 random weights / channel",
              "output": "output layer only", "full": "full training"}
CONTROLS = ("random2", "output")

# The paper's claim, quoted in report.md (a config's reference.claim,
# where set, replaces it).
CLAIM = (
    "Frankle, Schwab & Morcos 2020 (ICLR 2021), CIFAR-10 ResNet-(6n+2) of "
    "stage widths 16/32/64, SGD momentum 0.9, 160 epochs: with every weight "
    "frozen at its random (Kaiming-normal) init and only BatchNorm's γ and β "
    "trained, test accuracy grows with depth: ResNet-14 ≈ 48%, ResNet-110 ≈ "
    "69.5%, ResNet-866 ≈ 82% (full training ≈ 91–93%). The same number of "
    "randomly chosen weights trained instead (2 per channel), and the output "
    "layer alone, stay far below. About a quarter to a third of the γ end "
    "near zero: BN switches features off.")
# BN-only test accuracy (%) the paper states, by depth (CIFAR-10, width 16).
PAPER_BN_ONLY = {14: 48.0, 110: 69.5, 866: 82.0}  # Approximate (read off).
PAPER_FULL = "≈ 91–93"
PAPER_GAMMA_OFF = "about a quarter to a third"


def claim_of(config) -> str:
  ref = config.get("reference")
  return (ref.get("claim") if ref else None) or CLAIM


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
  report.save_figure(fig, path)


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
  report.save_figure(fig, path)


def _stage(p):
  return f"depth_{p['depth']:04d}_width_{p['width']:03d}"


def _acc(p, arm):
  return np.asarray(p["arms"][arm]["test_accuracy"]["per_seed"], np.float64)


def margins(summary) -> List[Dict[str, Any]]:
  """Per point: BN-only minus its strongest control (per-seed differences:
  every arm of a seed starts from the same weights and sees the same
  batches)."""
  controls = [a for a in CONTROLS if a in summary["arms"]]
  if "bn" not in summary["arms"] or not controls:
    return []
  out = []
  for p in summary["points"]:
    best = max(controls, key=lambda a: p["arms"][a]["test_accuracy"]["mean"])
    out.append({"depth": p["depth"], "width": p["width"], "control": best,
                "margin": stats(_acc(p, "bn") - _acc(p, best))})
  return out


def _by_width(summary, width):
  return sorted((p for p in summary["points"] if p["width"] == width),
                key=lambda p: p["depth"])


def versus_rows(summary) -> List[List[str]]:
  arms, rows = summary["arms"], []
  if "bn" in arms:
    for p in summary["points"]:
      rows.append([f"BN-only test accuracy (%), ResNet-{p['depth']} width "
                   f"{p['width']}",
                   (f"≈ {PAPER_BN_ONLY[p['depth']]:g} (width 16)"
                    if p["depth"] in PAPER_BN_ONLY else "–"),
                   report.fmt(p["arms"]["bn"]["test_accuracy"])])
    for width in summary["widths"]:
      pts = _by_width(summary, width)
      if len(pts) < 2:
        continue
      means = [100 * p["arms"]["bn"]["test_accuracy"]["mean"] for p in pts]
      rising = all(x < y for x, y in zip(means, means[1:]))
      rows.append([f"BN-only rises with depth (width {width})",
                   "yes: ≈ " + " → ".join(f"{v:g}" for v in
                                          PAPER_BN_ONLY.values())
                   + " (ResNet-" + " → ".join(map(str, PAPER_BN_ONLY))
                   + ")",
                   f"{'yes' if rising else 'no'}: "
                   + " → ".join(f"{m:.2f}" for m in means) + " (ResNet-"
                   + "/".join(str(p["depth"]) for p in pts) + ", means)"])
  closest = sorted(margins(summary), key=lambda m: m["margin"]["mean"])
  if closest:
    m = closest[0]
    rows.append(["BN-only minus the strongest control (points), smallest "
                 "over depths",
                 "far above both controls (2 random weights per channel; "
                 "output layer only)",
                 f"{report.fmt(m['margin'])} at ResNet-{m['depth']} width "
                 f"{m['width']} (vs {ARM_LABELS[m['control']]})"])
  deepest = max(summary["points"], key=lambda p: (p["depth"], p["width"]))
  if "full" in arms:
    rows.append([f"full training test accuracy (%), ResNet-{deepest['depth']}"
                 f" width {deepest['width']}", f"{PAPER_FULL} (CIFAR-10)",
                 report.fmt(deepest["arms"]["full"]["test_accuracy"])])
  if "bn" in arms:
    g = deepest["arms"]["bn"]
    rows.append([f"γ near zero after BN-only training (%), ResNet-"
                 f"{deepest['depth']} width {deepest['width']}",
                 PAPER_GAMMA_OFF,
                 # No '|' in a table cell: it would split the cell.
                 f"{report.fmt(g['gamma_near_zero'])} below "
                 f"{summary['gamma_threshold']:g} in magnitude (at init "
                 f"{report.fmt(g['gamma_near_zero_init'])})"])
  return rows


def _above_controls(summary, finding) -> str:
  """BN-only against its controls at one width: above at every depth (on
  the means) is the paper's direction, but the paper has it *far* above, so
  a smallest margin within the seed spread (no more than twice its std over
  seeds) is said to be no clear gap."""
  if not finding["bn_above_controls_every_depth"]:
    return "*not* above the controls at every depth, unlike the paper"
  at_width = [m for m in margins(summary) if m["width"] == finding["width"]]
  if not at_width:
    return "above both controls at every depth, as in the paper"
  m = min(at_width, key=lambda m: m["margin"]["mean"])
  gap = m["margin"]
  if gap["mean"] > 2 * gap["std"]:
    return (f"above both controls at every depth, as in the paper (by at "
            f"least {100 * gap['mean']:.2f} ± {100 * gap['std']:.2f} points, "
            f"at ResNet-{m['depth']})")
  return (f"above both controls at every depth on the means, but at "
          f"ResNet-{m['depth']} by only {100 * gap['mean']:.2f} ± "
          f"{100 * gap['std']:.2f} points over "
          f"{ARM_LABELS[m['control']].lower()}, within the seed spread: not "
          f"the paper's clear gap")


def differences(summary, epochs: float) -> str:
  """Where ours agree with the paper and where not, from the numbers."""
  arms, out = summary["arms"], []
  if "bn" not in arms:
    return ("No BN-only arm ran, so the paper's claim is not tested; only "
            "the other arms' numbers are reported.")
  for f in summary["findings"]:
    if len(_by_width(summary, f["width"])) >= 2:
      out.append(f"at width {f['width']} BN-only accuracy "
                 + ("rises with depth, as in the paper"
                    if f["bn_rising_with_depth"] else
                    "does *not* rise with every added depth, unlike the paper"))
    if any(a in arms for a in CONTROLS):
      out.append(f"at width {f['width']} BN-only is "
                 + _above_controls(summary, f))
  shared = [p for p in summary["points"] if p["depth"] in PAPER_BN_ONLY]
  for p in shared:
    ours = 100 * p["arms"]["bn"]["test_accuracy"]["mean"]
    paper = PAPER_BN_ONLY[p["depth"]]
    out.append(f"at ResNet-{p['depth']} (width {p['width']}) BN-only reaches "
               f"{ours:.2f}%, {abs(ours - paper):.1f} points "
               f"{'above' if ours > paper else 'below'} the paper's ≈ "
               f"{paper:g}% (width 16)")
  if not shared:
    out.append("the paper states no number at our depths (its shallowest is "
               "ResNet-14), so only the directions compare")
  g = [100 * p["arms"]["bn"]["gamma_near_zero"]["mean"]
       for p in summary["points"]]
  where = ("within" if 25.0 <= min(g) and max(g) <= 100 / 3 else
           "below" if max(g) < 25.0 else "above" if min(g) > 100 / 3 else
           "partly outside")
  out.append(f"{min(g):.1f}–{max(g):.1f}% of the γ end with |γ| < "
             f"{summary['gamma_threshold']:g} after BN-only training, "
             f"{where} the paper's quarter to a third")
  text = "; ".join(out)
  full = [100 * p["arms"]["full"]["test_accuracy"]["mean"]
          for p in summary["points"]] if "full" in arms else []
  data = (f"{summary['dataset']} at input {tuple(summary['input_shape'])} "
          f"is not CIFAR-10")
  if full:
    data += (f" (full training reaches {min(full):.1f}–{max(full):.1f}% here "
             f"against the paper's {PAPER_FULL}%, so absolute accuracies do "
             f"not compare)")
  reasons = [
      data,
      f"the budget is {summary['steps']} steps ({epochs:.2g} epochs of "
      f"{summary['train_examples']} examples) against the paper's 160 epochs,"
      f" little time to drive γ to zero",
      f"ResNet-{'/'.join(str(d) for d in summary['depths'])} are far "
      f"shallower than the paper's deepest (ResNet-866), where its BN-only "
      f"accuracy is highest"]
  return (text[0].upper() + text[1:] + ". Likely reasons for the "
          "differences: " + "; ".join(reasons) + ".")


def write(workdir, config, summary):
  """report.md, accuracy_vs_depth.png and gamma_histogram.png from
  summary.json and stages/*/gammas.npz."""
  accuracy_vs_depth(os.path.join(workdir, "accuracy_vs_depth.png"), summary)
  arms = summary["arms"]
  thr = summary["gamma_threshold"]
  g_arms = [a for a in ("bn", "bn_output", "full") if a in arms]
  figures = [("Test accuracy vs ResNet depth per arm, mean ± std over seeds",
              "accuracy_vs_depth.png")]
  if g_arms:
    gamma_histograms(os.path.join(workdir, "gamma_histogram.png"), workdir,
                     summary)
    figures.append((f"γ after training (per run; gray: init), |γ| < {thr:g} "
                    f"shaded", "gamma_histogram.png"))
  rows = []
  for p in summary["points"]:
    rows.append([f"ResNet-{p['depth']}", p["width"]] + [
        f"{report.fmt(p['arms'][a]['test_accuracy'])} "
        f"[{p['arms'][a]['trainable']:,}]" for a in arms])
  g_rows = [[f"ResNet-{p['depth']}", p["width"], p["num_gamma"],
             report.fmt(p["arms"][g_arms[0]]["gamma_near_zero_init"])] +
            [report.fmt(p["arms"][a]["gamma_near_zero"]) for a in g_arms]
            for p in summary["points"]] if g_arms else []
  f_rows = [[f["width"], f["bn_above_controls_every_depth"],
             f["bn_rising_with_depth"],
             f"{100 * f['bn_min_over_chance']:.1f}"]
            for f in summary["findings"]]
  o = config.optim
  epochs = (summary["steps"] * config.train.batch_size
            / summary["train_examples"])
  details = [
      "### Test accuracy (%), mean ± std over seeds [trainable parameters]\n\n"
      + report.markdown_table(["model", "width"] + [ARM_LABELS[a] for a in arms],
                              rows),
      "### Findings\n\n" + report.markdown_table(
          ["width", "BN-only above both controls at every depth",
           "BN-only rising with depth", "lowest BN-only minus chance (points)"],
          f_rows),
  ]
  m_rows = [[f"ResNet-{m['depth']}", m["width"], ARM_LABELS[m["control"]],
             report.fmt(m["margin"])] for m in margins(summary)]
  if m_rows:
    details.append(
        "### BN-only minus the strongest control (points, per-seed "
        "differences)\n\n" + report.markdown_table(
            ["model", "width", "strongest control", "BN-only minus it"],
            m_rows))
  if g_rows:
    details.append(
        f"### γ switched off: fraction of γ with |γ| < {thr:g}\n\n"
        "At initialization (U[0, 1]) and after training, mean ± std over "
        "seeds (fractions in %).\n\n" + report.markdown_table(
            ["model", "width", "γ per run", "at init"] +
            [ARM_LABELS[a] for a in g_arms], g_rows))
  frozen = max(p["arms"][a]["frozen_max_change"] for p in summary["points"]
               for a in arms)
  details.append(
      "### Frozen entries\n\n"
      + ("Frozen entries never moved" if frozen == 0 else
         "Frozen entries MOVED")
      + f": the largest change of a frozen parameter, over all runs, is "
      f"{frozen}.")
  report.write_page(workdir, report.Page(
      title=f"bn_only: {config.data.name}",
      claim=claim_of(config),
      config=(
          f"Only BatchNorm's γ and β trained on frozen random weights, against "
          f"count-matched controls. `{config.data.name}` at input "
          f"{tuple(summary['input_shape'])}, {summary['train_examples']} "
          f"training / {summary['test_examples']} test examples; ResNet-"
          f"{'/'.join(str(d) for d in summary['depths'])} of width "
          f"{'/'.join(str(w) for w in summary['widths'])}; {o.name} lr "
          f"{o.lr} ({o.schedule}), weight decay {o.weight_decay}, batch "
          f"{config.train.batch_size}, {summary['steps']} steps ({epochs:.2g} "
          f"epochs); Kaiming-normal weights, γ ~ "
          f"{config.model.bn_scale_init}, β = 0; {len(summary['seeds'])} "
          f"seeds. Every arm and seed of a depth trains in one compiled "
          f"program, each seed from the same initial weights and data order "
          f"in every arm."),
      figures=figures,
      versus=(["quantity", "paper (CIFAR-10)", "ours (mean ± std over seeds)"],
              versus_rows(summary)),
      differences=differences(summary, epochs),
      details=details,
      run=report.run_line(summary, f"Stages "
                          f"{summary['stages_wall_time_s']:.0f} s.")))

