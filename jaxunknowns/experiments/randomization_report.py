"""Figures and report.md of a `randomization` run."""

import os
from typing import Any, Mapping, Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np

from jaxunknowns import metrics as metrics_lib
from jaxunknowns import report

LABELS = {"true_labels": "true labels", "random_labels": "random labels",
          "shuffled_pixels": "shuffled pixels", "random_pixels": "random pixels",
          "gaussian": "Gaussian"}
REGULARIZER_NAMES = {"weight_decay": "weight decay", "dropout": "dropout",
                     "augment": "augmentation"}

# Zhang et al. 2017 on CIFAR-10 (Table 1: train / test accuracy, %).
PAPER_VARIANTS = {
    "true_labels": "MLP 1×512: 100.0 / 50.51; Inception: 100.0 / 85.75",
    "random_labels": "MLP 1×512: 99.34 / 10.61; Inception: 100.0 / 9.78",
    "shuffled_pixels": "fits (Fig. 1a), test accuracy not tabulated",
    "random_pixels": "fits (Fig. 1a), chance expected",
    "gaussian": "fits (Fig. 1a), chance expected",
}
# Table 1 rows by (labels, regularizers); Inception's "random crop" is our
# augmentation; the paper has no dropout column.
PAPER_ABLATION = {
    ("true_labels", ()): "MLP 1×512 100.0 / 50.51; Inception 100.0 / 85.75",
    ("true_labels", ("weight_decay",)):
        "MLP 1×512 99.80 / 50.39; Inception 100.0 / 86.03",
    ("true_labels", ("augment",)): "Inception 100.0 / 89.31",
    ("true_labels", ("augment", "weight_decay")): "Inception 100.0 / 89.05",
    ("random_labels", ()): "MLP 1×512 99.34 / 10.61; Inception 100.0 / 9.78",
}


def _name(key: str) -> str:
  if key.startswith("corrupt_"):
    return f"labels corrupted, p = {key[len('corrupt_'):]}"
  if "-" in key:  # An ablation stage: labels-reg1-reg2...
    labels, *regs = key.split("-")
    return f"{LABELS.get(labels, labels)} + " + " + ".join(
        REGULARIZER_NAMES.get(r, r) for r in regs)
  return LABELS.get(key, key)


def _pct(stat: Optional[Mapping[str, Any]]) -> str:
  return report.fmt(stat).replace(f" (n={len(stat['per_seed'])})", "") if stat else "–"


def _steps(entry) -> str:
  s = entry.get("steps_to_fit")
  if s:
    return f"{s['mean']:.0f} ± {s['std']:.0f}"
  n = entry["seeds_fitted"]
  total = len(entry["steps_to_fit_per_seed"])
  return f"{n}/{total} seeds fitted in {entry['steps']} steps"


def _slowdown(entry) -> str:
  s = entry.get("slowdown")
  return f"{s['mean']:.2f}× ± {s['std']:.2f}" if s else "–"


# -----------------------------------------------------------------------------
# Figures
# -----------------------------------------------------------------------------
def plot_learning_curves(rows, keys: Sequence[str], path: str, title=""):
  """Zhang et al.'s Fig. 1a: training loss vs step per variant, and the
  training-set accuracy (eval mode) beside it."""
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
  styles = ("-", "--", "-.", ":")  # Curves that coincide stay visible.
  for i, key in enumerate(keys):
    style = dict(color=f"C{i}", linestyle=styles[i % len(styles)],
                 linewidth=2.2 if i == 0 else 1.5)
    loss = metrics_lib.curves(rows, "minibatch", "loss", variant=key)
    acc = metrics_lib.curves(rows, "train", "accuracy", variant=key)
    report.plot_band(ax_loss, loss, _name(key), **style)
    report.plot_band(ax_acc, acc, _name(key), scale=100, **style)
  ax_loss.set_ylabel("training loss (minibatch average)")
  ax_acc.set_ylabel("training accuracy (%, eval mode, whole set)")
  for ax in (ax_loss, ax_acc):
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  ax_loss.set_ylim(bottom=0)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_corruption(summary, path, title=""):
  """Zhang et al.'s Fig. 1b (steps to fit vs p) and 1c (test error vs p)."""
  st = summary["stages"]
  ps = [c["p"] for c in summary["corruption"]]
  entries = [st[c["stage"]] for c in summary["corruption"]]
  fig, (ax_t, ax_e) = plt.subplots(1, 2, figsize=(10, 3.8))
  xs = [p for p, e in zip(ps, entries) if e.get("steps_to_fit")]
  ys = [e["steps_to_fit"]["mean"] for e in entries if e.get("steps_to_fit")]
  es = [e["steps_to_fit"]["std"] for e in entries if e.get("steps_to_fit")]
  ax_t.errorbar(xs, ys, yerr=es, marker="o", capsize=3)
  if not xs:
    ax_t.text(0.5, 0.5, "no corruption level fitted\nwithin the budget",
              transform=ax_t.transAxes, ha="center", va="center")
  ax_t.set_ylabel("steps to 100% training accuracy")
  for name, style, label in (("test_error", "-o", "test error"),
                             ("train_accuracy", "--s", "train error")):
    vals = [e[name] for e in entries]
    mean = np.array([v["mean"] for v in vals])
    std = np.array([v["std"] for v in vals])
    if name == "train_accuracy":
      mean = 1 - mean
    ax_e.errorbar(ps, 100 * mean, yerr=100 * std, fmt=style, capsize=3,
                  label=label)
  ax_e.axhline(100 * (1 - 1 / summary["num_classes"]), color="gray",
               linestyle=":", label="chance")
  ax_e.set_ylabel("error (%)")
  ax_e.legend(fontsize=8)
  for ax in (ax_t, ax_e):
    ax.set_xlabel("label corruption p")
    ax.grid(alpha=0.3)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


# -----------------------------------------------------------------------------
# report.md
# -----------------------------------------------------------------------------
def _variants_table(summary) -> str:
  st = summary["stages"]
  rows = []
  for key in summary["variants"]:
    e = st[key]
    rows.append([_name(key), _pct(e["train_accuracy"]), _pct(e["test_accuracy"]),
                 _steps(e), _slowdown(e), PAPER_VARIANTS.get(key, "–")])
  return report.markdown_table(
      ["variant", "train acc (%)", "test acc (%)", "steps to fit",
       "slowdown vs true labels", "Zhang et al. (CIFAR-10, train / test %)"],
      rows)


def _corruption_table(summary) -> str:
  st = summary["stages"]
  rows = []
  for c in summary["corruption"]:
    e = st[c["stage"]]
    rows.append([f"{c['p']:g}", _pct(e["test_error"]), _pct(e["train_accuracy"]),
                 _steps(e), _slowdown(e)])
  return report.markdown_table(
      ["p", "test error (%)", "train acc (%)", "steps to fit",
       "slowdown vs p = 0"], rows)


def _ablation_table(summary, config) -> str:
  st = summary["stages"]
  rows = []
  for a in summary["ablation"]:
    e = st[a["stage"]]
    regs = tuple(sorted(e["regularizers"]))
    on = lambda r: "yes" if r in regs else "no"
    rows.append([LABELS[a["labels"]], on("augment"), on("weight_decay"),
                 on("dropout"), _pct(e["train_accuracy"]),
                 _pct(e["test_accuracy"]), _steps(e),
                 PAPER_ABLATION.get((a["labels"], regs), "–")])
  aug = {"random_shift": f"random shift by up to {config.ablation.max_shift} "
                         "positions",
         "crop_flip": "random crop (pad 4) + horizontal flip"}.get(
             summary["augmentation"], summary["augmentation"])
  return (f"Weight decay {config.ablation.weight_decay} (L2 added to the "
          f"gradient), dropout {config.ablation.dropout} after every hidden "
          f"layer, augmentation: {aug}.\n\n" + report.markdown_table(
              ["labels", "augmentation", "weight decay", "dropout",
               "train acc (%)", "test acc (%)", "steps to fit",
               "Zhang et al. Table 1 (train / test %)"], rows))


def _checks_text(summary) -> str:
  c = summary["checks"]
  st = summary["stages"]
  parts = []
  fitted = c["seeds_fitted"]
  S = len(summary["seeds"])
  if c["every_variant_fits"]:
    parts.append(f"Every variant reaches {100 * summary['fit_accuracy']:g}% "
                 f"training accuracy on all {S} seeds.")
  else:
    missing = [f"{_name(k)} ({n}/{S})" for k, n in fitted.items() if n < S]
    parts.append("Not every variant fits within the budget: "
                 + ", ".join(missing) + ".")
  if "random_labels_test_accuracy" in c:
    parts.append(
        f"Random labels: test accuracy "
        f"{100 * c['random_labels_test_accuracy']:.2f}% against chance "
        f"{100 * c['chance']:.0f}% "
        f"({'within' if c['random_labels_at_chance'] else 'outside'} ±2 "
        f"points)" + (f", fitted {c['random_labels_slowdown']:.2f}× slower "
                      f"than the true labels (mean over seeds)"
                      if "random_labels_slowdown" in c else "") + ".")
  ablation = _ablation_text(summary)
  if ablation:
    parts.append(ablation)
  if "test_error_vs_p" in c:
    parts.append(
        "Test error vs p: " + ", ".join(
            f"{100 * e:.1f}% (p={p:g})" for p, e in c["test_error_vs_p"])
        + (": it rises with p." if c["test_error_rises_with_p"] else
           ": it does not rise monotonically with p."))
  del st
  return " ".join(parts)


def _ablation_text(summary) -> str:
  """Each regularized cell against its labels' unregularized stage."""
  st = summary["stages"]
  lines = []
  for a in summary["ablation"]:
    e = st[a["stage"]]
    if not e["regularizers"]:
      continue
    base = st[a["labels"]]
    delta = 100 * (e["test_accuracy"]["mean"] - base["test_accuracy"]["mean"])
    fit = (f"fits in {e['steps_to_fit']['mean']:.0f} steps"
           if e.get("steps_to_fit") else
           f"reaches {100 * e['train_accuracy']['mean']:.2f}% training "
           f"accuracy in {e['steps']} steps")
    lines.append(f"{_name(a['stage'])}: test accuracy {delta:+.1f} points, "
                 f"{fit}")
  return ("Regularization, against the same labels without it: "
          + "; ".join(lines) + ".") if lines else ""


def _differences(summary, config) -> str:
  st = summary["stages"]
  true = st.get("true_labels")
  parts = []
  if true:
    parts.append(
        f"Our true-label test accuracy ({100 * true['test_accuracy']['mean']:.1f}%)"
        f" is a property of `{config.data.name}` and `{config.model.name}`, "
        "not comparable in level with the paper's CIFAR-10 numbers (an MLP "
        "gets ≈50% on CIFAR-10; on MNIST-1D the authors' MLP gets ≈65%)")
  slow = st.get("random_labels", {}).get("slowdown")
  if slow:
    parts.append(
        f"random labels take {slow['mean']:.1f}× the steps of the true "
        "labels (Zhang et al. report a small constant factor, ≈4× in a "
        f"reproduction); with {summary['train_examples']:,} training "
        "examples instead of 50,000 everything fits in far fewer steps")
  if config.model.name in ("mlp", "lenet_300_100") and (
      "shuffled_pixels" in st and "true_labels" in st):
    parts.append(
        "for an MLP, shuffled pixels are the true-label problem with its "
        "input features renamed (a dense layer is permutation-invariant), so "
        "their curves coincide; Zhang et al.'s convolutional nets see the "
        "lost locality")
  if summary["augmentation"] == "random_shift":
    parts.append(
        "MNIST-1D's generator itself shifts its templates, so shift "
        "augmentation helps far more here than random crops on CIFAR-10 (and "
        "makes the training set too hard to fit exactly in the budget)")
  parts.append(
      "our stages stop as soon as every seed fits (Zhang et al. train a "
      "fixed number of epochs), so test accuracy is measured at the moment "
      "of fitting")
  return "; ".join(parts) + "."


def write(path, config, summary, rows):
  title = f"{config.model.name} on {config.data.name}"
  sections = [
      "**Claim** (Zhang et al. 2017). Deep networks fit random labels, "
      "shuffled pixels, random pixels and Gaussian noise inputs to 100% "
      "training accuracy with unchanged hyper-parameters; random labels take "
      "only a constant factor longer to fit; test error rises smoothly with "
      "the fraction of corrupted labels, up to chance; explicit "
      "regularization changes test accuracy by a few points and does not "
      "prevent fitting random labels. (CIFAR-10 MLP 1×512: 100 / 50.5 train / "
      "test accuracy with true labels, 99.3 / 10.6 with random labels.)",
      f"**Config.** `{config.model.name}` "
      + (f"(hidden widths {tuple(config.model.widths)}) "
         if config.model.name == "mlp" else "")
      + f"on `{config.data.name}` ({summary['train_examples']:,} training "
      f"examples); {config.optim.name} lr {config.optim.lr}"
      + (f" momentum {config.optim.momentum}"
         if config.optim.name in ("momentum", "nesterov") else "")
      + f", batch {config.train.batch_size}, no explicit regularization "
      "outside the ablation, the same for every stage. Each stage trains until"
      f" every seed reaches {100 * summary['fit_accuracy']:g}% training "
      f"accuracy (checked every {config.randomization.check_every} steps) or "
      f"{config.train.steps} steps; steps to fit are read at every "
      f"{config.train.eval_every}-step evaluation. {len(summary['seeds'])} "
      "seeds per stage, trained at once.",
  ]
  if summary["variants"]:
    plot_learning_curves(rows, summary["variants"],
                         os.path.join(path, "learning_curves.png"),
                         title=f"{title}: learning curves (Zhang et al. Fig. 1a)")
    sections.append(
        "## Randomization tests (mean ± std over seeds)\n\n"
        + _variants_table(summary)
        + "\n\n![learning curves](learning_curves.png)")
  if summary["corruption"]:
    plot_corruption(summary, os.path.join(path, "corruption.png"),
                    title=f"{title}: label corruption (Zhang et al. Fig. 1b, 1c)")
    sections.append("## Label corruption\n\n" + _corruption_table(summary)
                    + "\n\n![label corruption](corruption.png)")
  if summary["ablation"]:
    sections.append("## Explicit regularization (Zhang et al. Table 1 in "
                    "shape)\n\n" + _ablation_table(summary, config))
  sections.append("## What this run shows\n\n" + _checks_text(summary))
  sections.append("**Where and why we differ.** "
                  + _differences(summary, config))
  sections.append(f"Wall time: {summary['stages_wall_time_s']:.0f} s of "
                  f"training and measuring over all stages (this invocation: "
                  f"{summary['wall_time_s']:.0f} s) on "
                  f"{summary['machine']['num_devices']} × "
                  f"{summary['machine']['device_kind']}.")
  report.write_report(os.path.join(path, "report.md"),
                      f"randomization: {title}", sections)
