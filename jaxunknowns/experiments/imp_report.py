"""Figures and report.md of an `imp` run, from its summary."""

import os

import matplotlib
import matplotlib.ticker  # pylint: disable=unused-import
import matplotlib.pyplot as plt
import numpy as np

from jaxunknowns import report

STYLE = {"ticket": dict(color="C0", marker="o", label="winning ticket"),
         "random_reinit": dict(color="C3", marker="s",
                               label="random reinit (same mask)"),
         "random_prune": dict(color="C2", marker="^",
                              label="random pruning (same sparsity)")}


def _series(levels, variant, field):
  xs, means, stds = [], [], []
  for entry in levels:
    block = entry if variant == "ticket" else entry.get(variant)
    if not block or field not in block:
      continue
    xs.append(100 * entry["weights_remaining"])
    means.append(block[field]["mean"])
    stds.append(block[field]["std"])
  return np.array(xs), np.array(means), np.array(stds)


def _sparsity_axis(ax):
  ax.set_xscale("log")
  ticks = [100, 70, 50, 30, 20, 10, 7, 5, 3, 2, 1, 0.5, 0.3, 0.2, 0.1]
  lo, hi = ax.get_xlim()
  ax.set_xticks([t for t in ticks if min(lo, hi) <= t <= max(lo, hi)] or ticks)
  ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
  ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  ax.invert_xaxis()  # Sparser to the right, as in the paper.
  ax.set_xlabel("weights remaining (%)")
  ax.grid(alpha=0.3, which="both")


def plot_vs_sparsity(levels, field, ylabel, path, scale=100.0, title=""):
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  for variant, style in STYLE.items():
    xs, mean, std = _series(levels, variant, field)
    if len(xs):
      ax.errorbar(xs, mean * scale, yerr=std * scale, capsize=3, **style)
  _sparsity_axis(ax)
  ax.set_ylabel(ylabel)
  ax.legend(fontsize=8)
  if title:
    ax.set_title(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_instability(instability, path):
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  dense = instability.get("dense", [])
  if dense:
    ks = [d["rewind_step"] for d in dense]
    mean = [100 * d["instability"]["mean"] for d in dense]
    std = [100 * d["instability"]["std"] for d in dense]
    ax.errorbar([max(k, 1) for k in ks], mean, yerr=std, marker="o",
                capsize=3, label="dense network")
  for t in instability.get("tickets", []):
    ax.errorbar([max(t["rewind_step"], 1)], [100 * t["instability"]["mean"]],
                yerr=[100 * t["instability"]["std"]], marker="s", capsize=3,
                label=f"IMP ticket, {100 * t['weights_remaining']:.1f}% weights")
  ax.set_xscale("log")
  ax.set_xlabel("rewind step k (0 plotted at 1)")
  ax.set_ylabel("instability (error barrier, %)")
  ax.grid(alpha=0.3, which="both")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write(path, config, summary):
  levels = summary["levels"]
  title = f"{config.model.name} on {config.data.name}"
  plot_vs_sparsity(levels, "test_accuracy", "test accuracy at the end (%)",
                   os.path.join(path, "accuracy_vs_sparsity.png"), title=title)
  has_es = any("early_stop_step" in e for e in levels)
  if has_es:
    plot_vs_sparsity(levels, "early_stop_step", "early-stop iteration",
                     os.path.join(path, "early_stop_vs_sparsity.png"),
                     scale=1.0, title=title)
    plot_vs_sparsity(levels, "early_stop_accuracy",
                     "test accuracy at early stop (%)",
                     os.path.join(path, "early_stop_accuracy_vs_sparsity.png"),
                     title=title)
  variants = [v for v in ("random_reinit", "random_prune")
              if any(v in e for e in levels)]
  header = ["level", "weights remaining", "ticket"] + variants
  if has_es:
    header += ["ticket early-stop step"]
  rows = []
  for e in levels:
    row = [e["level"], f"{100 * e['weights_remaining']:.2f}%",
           report.fmt(e["test_accuracy"])]
    row += [report.fmt(e[v]["test_accuracy"]) if v in e else "–"
            for v in variants]
    if has_es:
      row.append(report.fmt(e.get("early_stop_step"), scale=1, digits=0))
    rows.append(row)
  p = summary["pruning"]
  sections = [
      f"Iterative magnitude pruning of `{config.model.name}` on "
      f"`{config.data.name}`: {p['method']} pruning of "
      f"{100 * p['fraction']:.0f}% of the remaining weights per level"
      + (f" (layer rates {p['layer_rates']})" if p["layer_rates"] else "")
      + f", rewinding to step {p['rewind_step']}, {p['levels']} levels, "
      f"{config.train.steps} steps per level, {config.optim.name} lr "
      f"{config.optim.lr}, batch {config.train.batch_size}; "
      f"{len(summary['seeds'])} seeds, each level's ticket and controls "
      "trained together in one program.",
      "## Test accuracy (%, mean ± std over seeds)\n\n"
      + report.markdown_table(header, rows),
      "## Figures\n\n![accuracy vs sparsity](accuracy_vs_sparsity.png)"
      + ("\n\n![early stop](early_stop_vs_sparsity.png)\n\n"
         "![early-stop accuracy](early_stop_accuracy_vs_sparsity.png)"
         if has_es else ""),
  ]
  reference = config.get("reference")
  if reference is not None and reference.get("claim"):
    sections.append("## The paper's numbers beside ours\n\n"
                    + reference.claim.strip() + "\n\n" + _ours(levels))
  if "instability" in summary:
    plot_instability(summary["instability"],
                     os.path.join(path, "instability_vs_k.png"))
    sections.append(_instability_section(summary["instability"]))
  sections.append(f"Wall time {summary['wall_time_s']:.0f} s on "
                  f"{summary['machine']['num_devices']} × "
                  f"{summary['machine']['device_kind']}.")
  report.write_report(os.path.join(path, "report.md"), f"imp: {title}",
                      sections)


def _ours(levels):
  """One line: where tickets stay within 0.3 points of dense / beat controls."""
  dense = levels[0]["test_accuracy"]["mean"]
  hold = [e for e in levels[1:] if e["test_accuracy"]["mean"] >= dense - 0.003]
  lines = [f"Ours: dense {100 * dense:.2f}%."]
  if hold:
    sparsest = min(hold, key=lambda e: e["weights_remaining"])
    lines.append(f"Tickets stay within 0.3 points of dense (or above) down to "
                 f"{100 * sparsest['weights_remaining']:.1f}% of weights "
                 f"({100 * sparsest['test_accuracy']['mean']:.2f}%).")
  last = levels[-1]
  for v in ("random_reinit", "random_prune"):
    if v in last:
      gap = last["test_accuracy"]["mean"] - last[v]["test_accuracy"]["mean"]
      lines.append(f"At {100 * last['weights_remaining']:.1f}% of weights the "
                   f"ticket is {100 * gap:+.2f} points vs {v}.")
  return " ".join(lines)


def _instability_section(inst):
  rows = [[d["rewind_step"], report.fmt(d["instability"]),
           report.fmt(d["endpoint_error"])] for d in inst.get("dense", [])]
  rows += [[f"{t['rewind_step']} (ticket, {100 * t['weights_remaining']:.1f}%)",
            report.fmt(t["instability"]), report.fmt(t["endpoint_error"])]
           for t in inst.get("tickets", [])]
  return ("## Instability (linear mode connectivity)\n\nTwo copies trained "
          "from the weights at step k with different data orders; "
          "instability = maximum test error on the line between them minus "
          "the mean error of the two ends.\n\n"
          + report.markdown_table(["k", "instability (%)", "endpoint error (%)"],
                                  rows)
          + "\n\n![instability](instability_vs_k.png)")
