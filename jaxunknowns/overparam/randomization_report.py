"""Figures and report.md of a `randomization` run, from its workdir's files
(summary.json, metrics.jsonl): `write` is the experiment's registered report."""

import os
from typing import Any, List, Mapping, Optional, Sequence

from jaxunknowns.report.plots import plt  # pylint: disable=g-import-not-at-top
import numpy as np

from jaxunknowns import metrics as metrics_lib
from jaxunknowns import report
from jaxunknowns.metrics import read_metrics

LABELS = {"true_labels": "true labels", "random_labels": "random labels",
          "shuffled_pixels": "shuffled pixels", "random_pixels": "random pixels",
          "gaussian": "Gaussian"}
REGULARIZER_NAMES = {"weight_decay": "weight decay", "dropout": "dropout",
                     "augment": "augmentation"}
# Table 1's regularizers change test accuracy by "a few points" (up to +3.56,
# Inception's random crops): a larger change (points) is worth a sentence.
FEW_POINTS = 5.0

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


def _fit_phrase(entry) -> str:
  """'2933 ± 125 steps to fit', or '0/2 seeds fitted in 40 steps'."""
  return _steps(entry) + (" steps to fit" if entry.get("steps_to_fit")
                          else "")


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
  report.save_figure(fig, path)


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
  report.save_figure(fig, path)


# -----------------------------------------------------------------------------
# report.md
# -----------------------------------------------------------------------------
CLAIM = (
    "Zhang et al. 2017. Deep networks fit random labels, shuffled pixels, "
    "random pixels and Gaussian noise inputs to 100% training accuracy with "
    "unchanged hyper-parameters; random labels take only a constant factor "
    "longer to fit; test error rises smoothly with the fraction of corrupted "
    "labels, up to chance; explicit regularization changes test accuracy by "
    "a few points and does not prevent fitting random labels. (CIFAR-10 MLP "
    "1×512: 100 / 50.5 train / test accuracy with true labels, 99.3 / 10.6 "
    "with random labels.)")
# Zhang et al. Table 1 (CIFAR-10, %): (train, test) of the MLP 1×512, then
# Inception's, for the two variants the table has.
PAPER_TABLE1 = {
    "true_labels": (("100.0", "50.51"), ("100.0", "85.75")),
    "random_labels": (("99.34", "10.61"), ("100.0", "9.78")),
}
PIXEL_VARIANTS = ("shuffled_pixels", "random_pixels", "gaussian")


def _versus(summary) -> List[List[str]]:
  """One row per quantity Zhang et al. state, with our mean ± std beside it;
  rows whose stages this run did not train are left out."""
  st = summary["stages"]
  rows = []
  for key, ((mlp_train, mlp_test), (inc_train, inc_test)) in (
      PAPER_TABLE1.items()):
    if key not in st:
      continue
    e = st[key]
    rows.append([f"{_name(key)}: train accuracy (%)",
                 f"{mlp_train} (MLP 1×512; Inception {inc_train})",
                 _pct(e["train_accuracy"])])
    rows.append([f"{_name(key)}: test accuracy (%)",
                 f"{mlp_test} (MLP 1×512; Inception {inc_test})",
                 _pct(e["test_accuracy"])])
  if "random_labels" in st and "true_labels" in st:
    rows.append(["random labels: steps to fit ÷ true labels' steps",
                 "a small constant factor (≈4× in a reproduction)",
                 _slowdown(st["random_labels"])
                 if st["random_labels"].get("slowdown") else
                 f"– (random labels: {_steps(st['random_labels'])}; true "
                 f"labels: {_steps(st['true_labels'])})"])
  for key in PIXEL_VARIANTS:
    if key in summary["variants"]:
      rows.append([f"{_name(key)}: train accuracy (%)", "fits (Fig. 1a)",
                   _pct(st[key]["train_accuracy"])])
  corruption = summary["corruption"]
  if len(corruption) >= 2:
    first, last = (st[corruption[i]["stage"]] for i in (0, -1))
    ends = (f"{_pct(first['test_error'])} (p = {corruption[0]['p']:g}) → "
            f"{_pct(last['test_error'])} (p = {corruption[-1]['p']:g})")
    rises = summary["checks"].get("test_error_rises_with_p")
    rows.append(["test error vs label corruption p (%)",
                 "rises smoothly with p, up to chance (Fig. 1c)",
                 f"{ends}: " + ("rises with p" if rises else
                                "does not rise monotonically with p")
                 + f"; chance {100 * (1 - 1 / summary['num_classes']):g}"])
    fitted = [(c["p"], st[c["stage"]]) for c in corruption
              if st[c["stage"]].get("steps_to_fit")]
    if len(fitted) >= 2:
      steps = [e["steps_to_fit"]["mean"] for _, e in fitted]
      word = ("grows at every step of the grid"
              if all(b > a for a, b in zip(steps, steps[1:])) else
              "grows overall" if steps[-1] > steps[0] else "does not grow")
      rows.append(["steps to fit vs label corruption p",
                   "grows with p (Fig. 1b)",
                   f"{_steps(fitted[0][1])} (p = {fitted[0][0]:g}) → "
                   f"{_steps(fitted[-1][1])} (p = {fitted[-1][0]:g}): {word}"
                   + ("" if len(fitted) == len(corruption) else
                      f" ({len(corruption) - len(fitted)} of "
                      f"{len(corruption)} levels not fitted)")])
  regularized = [a for a in summary["ablation"]
                 if st[a["stage"]]["regularizers"]]
  for a in regularized:
    e = st[a["stage"]]
    paper = PAPER_ABLATION.get((a["labels"], tuple(sorted(e["regularizers"]))))
    if paper:
      rows.append([f"{_name(a['stage'])}: train / test accuracy (%)",
                   paper, f"{_pct(e['train_accuracy'])} / "
                   f"{_pct(e['test_accuracy'])}"])
  if regularized:
    rows.append(["explicit regularization: test accuracy against the same "
                 "labels without it (points)", "changes it by a few points "
                 "(Table 1)", "; ".join(
                     f"{_name(a['stage'])} {_delta(summary, a):+.1f}"
                     for a in regularized)])
  random_cells = [a for a in regularized if a["labels"] == "random_labels"]
  if random_cells:
    rows.append(["random labels with explicit regularization: train accuracy "
                 "(%)", "still fitted: regularization does not prevent it",
                 "; ".join(f"{_name(a['stage'])} "
                           f"{_pct(st[a['stage']]['train_accuracy'])} "
                           f"({_steps(st[a['stage']])})"
                           for a in random_cells)])
  return rows


def _delta(summary, ablation_entry) -> float:
  """Test accuracy (points) of an ablation cell minus that of its labels'
  unregularized stage, seed means."""
  st = summary["stages"]
  mine = st[ablation_entry["stage"]]["test_accuracy"]["mean"]
  return 100 * (mine - st[ablation_entry["labels"]]["test_accuracy"]["mean"])


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
    on = lambda r, regs=regs: "yes" if r in regs else "no"
    rows.append([LABELS[a["labels"]], on("augment"), on("weight_decay"),
                 on("dropout"), _pct(e["train_accuracy"]),
                 _pct(e["test_accuracy"]), _steps(e),
                 PAPER_ABLATION.get((a["labels"], regs), "–")])
  return (f"Weight decay {config.ablation.weight_decay} (L2 added to the "
          f"gradient), dropout {config.ablation.dropout} after every hidden "
          f"layer, augmentation: {_augmentation(summary, config)}.\n\n"
          + report.markdown_table(
              ["labels", "augmentation", "weight decay", "dropout",
               "train acc (%)", "test acc (%)", "steps to fit",
               "Zhang et al. Table 1 (train / test %)"], rows))


def _augmentation(summary, config) -> str:
  return {"random_shift": f"random shift by up to {config.ablation.max_shift} "
                          "positions",
          "crop_flip": "random crop (pad 4) + horizontal flip"}.get(
              summary["augmentation"], summary["augmentation"])


def _checks_text(summary) -> str:
  c = summary["checks"]
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
  return " ".join(parts)


def _ablation_text(summary) -> str:
  """Each regularized cell against its labels' unregularized stage."""
  st = summary["stages"]
  lines = []
  for a in summary["ablation"]:
    e = st[a["stage"]]
    if not e["regularizers"]:
      continue
    fit = (f"fits in {e['steps_to_fit']['mean']:.0f} steps"
           if e.get("steps_to_fit") else
           f"reaches {100 * e['train_accuracy']['mean']:.2f}% training "
           f"accuracy in {e['steps']} steps")
    lines.append(f"{_name(a['stage'])}: test accuracy "
                 f"{_delta(summary, a):+.1f} points, {fit}")
  return ("Regularization, against the same labels without it: "
          + "; ".join(lines) + ".") if lines else ""


def _differences(summary, config) -> str:
  """Where this run's numbers stand against Zhang et al.'s, each statement
  read from the numbers."""
  st = summary["stages"]
  c = summary["checks"]
  true = st.get("true_labels")
  parts = []
  if true:
    parts.append(
        f"Our true-label test accuracy ({100 * true['test_accuracy']['mean']:.1f}%)"
        f" is a property of `{config.data.name}` and `{config.model.name}`, "
        "not comparable in level with the paper's CIFAR-10 numbers (an MLP "
        "gets ≈50% on CIFAR-10"
        + ("; on MNIST-1D the authors' MLP gets ≈65%"
           if config.data.name == "mnist1d" else "") + ")")
  if not c["every_variant_fits"]:
    S = len(summary["seeds"])
    parts.append("not every variant fits within the budget, unlike the "
                 "paper's: " + ", ".join(
                     f"{_name(k)} {n}/{S} seeds"
                     for k, n in c["seeds_fitted"].items() if n < S))
  if "random_labels_at_chance" in c and not c["random_labels_at_chance"]:
    parts.append(
        f"random labels test at {100 * c['random_labels_test_accuracy']:.1f}%,"
        f" more than 2 points from chance ({100 * c['chance']:.0f}%)")
  slow = st.get("random_labels", {}).get("slowdown")
  if slow:
    parts.append(
        f"random labels take {slow['mean']:.1f}× the steps of the true "
        "labels (Zhang et al. report a small constant factor, ≈4× in a "
        f"reproduction); with {summary['train_examples']:,} training "
        "examples instead of 50,000 everything fits in far fewer steps")
  shuffled = st.get("shuffled_pixels")
  if config.model.name in ("mlp", "lenet_300_100") and shuffled and true:
    parts.append(
        "for an MLP, shuffled pixels are the true-label problem with its "
        "input features renamed (a dense layer is permutation-invariant): "
        f"{_fit_phrase(shuffled)} and "
        f"{100 * shuffled['test_accuracy']['mean']:.1f}% test accuracy "
        f"against {_fit_phrase(true)} and "
        f"{100 * true['test_accuracy']['mean']:.1f}%"
        " for the true labels; Zhang et al.'s convolutional nets see the "
        "lost locality")
  for a in summary["ablation"]:
    e = st[a["stage"]]
    if not e["regularizers"]:
      continue
    delta = _delta(summary, a)
    if abs(delta) <= FEW_POINTS:
      continue  # A few points, as in Table 1.
    if (delta > 0 and "augment" in e["regularizers"]
        and summary["augmentation"] == "random_shift"):
      # Table 1's random crops alone: 89.31 - 85.75 on Inception.
      crops = (" (Inception's random crops on CIFAR-10: +3.56, Table 1)"
               if e["regularizers"] == ["augment"] else "")
      parts.append(
          f"{_name(a['stage'])} changes test accuracy by "
          f"{delta:+.1f} points{crops}: MNIST-1D's generator "
          "itself shifts its templates, so shifted training examples are "
          "more draws of the data"
          + ("" if e.get("steps_to_fit") else
             f", and with it the training set reaches "
             f"{100 * e['train_accuracy']['mean']:.2f}% training accuracy, "
             f"not {100 * summary['fit_accuracy']:g}%, in {e['steps']} steps"))
      continue
    base = st[a["labels"]]
    text = (f"{_name(a['stage'])} changes test accuracy by {delta:+.1f} "
            f"points, more than the few points of Table 1")
    if (delta < 0 and not e.get("steps_to_fit") and
        e["train_accuracy"]["mean"] < base["train_accuracy"]["mean"]):
      text += (f": in {e['steps']} steps it reaches "
               f"{100 * e['train_accuracy']['mean']:.2f}% training accuracy "
               f"against {100 * base['train_accuracy']['mean']:.2f}% without "
               "it, so it is measured less trained")
    parts.append(text)
  unfitted = [a for a in summary["ablation"]
              if a["labels"] == "random_labels"
              and st[a["stage"]]["regularizers"]
              and not st[a["stage"]].get("steps_to_fit")]
  if unfitted:
    parts.append(
        "with explicit regularization random labels are not fitted exactly "
        "within the budget (" + ", ".join(
            f"{_name(a['stage'])}: "
            f"{100 * st[a['stage']]['train_accuracy']['mean']:.2f}% in "
            f"{st[a['stage']]['steps']} steps" for a in unfitted)
        + "): on this budget we see regularization leave random labels "
        + ("nearly fitted" if all(
            st[a["stage"]]["train_accuracy"]["mean"]
            >= summary["fit_accuracy"] - 0.05 for a in unfitted)
           else "unfitted") + ", not fitted as the paper has it")
  if "test_error_rises_with_p" in c and not c["test_error_rises_with_p"]:
    parts.append("our test error does not rise monotonically with p (more "
                 "than a 1-point step down, or no rise from p = 0 to the "
                 "largest p)")
  unfitted_stages = [k for k, e in st.items() if not e.get("steps_to_fit")]
  if not unfitted_stages:
    when = "so test accuracy is measured at the moment of fitting"
  elif len(unfitted_stages) == len(st):
    when = ("but no stage fits within this budget, so test accuracy is "
            "measured at its end")
  else:
    when = (f"so test accuracy is measured at the moment of fitting, or at "
            f"the end of the budget for the {len(unfitted_stages)} of "
            f"{len(st)} stages that do not fit")
  parts.append(
      "our stages stop as soon as every seed fits (Zhang et al. train a "
      f"fixed number of epochs), {when}")
  return " ".join(f"{p[0].upper()}{p[1:]}." for p in parts)


def _config_text(config, summary) -> str:
  return (
      f"`{config.model.name}` "
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
      "seeds per stage, trained at once.")


def write(path, config, summary):
  """report.md, learning_curves.png and corruption.png from the workdir's
  summary.json and metrics.jsonl (the experiment's registered report)."""
  title = f"{config.model.name} on {config.data.name}"
  figures, details = [], []
  if summary["variants"]:
    plot_learning_curves(read_metrics(path), summary["variants"],
                         os.path.join(path, "learning_curves.png"),
                         title=f"{title}: learning curves (Zhang et al. Fig. 1a)")
    figures.append(("Training loss and training-set accuracy vs step of each "
                    "variant, mean ± std over seeds (Zhang et al. Fig. 1a)",
                    "learning_curves.png"))
    details.append("### Randomization tests (mean ± std over seeds)\n\n"
                   + _variants_table(summary))
  if summary["corruption"]:
    plot_corruption(summary, os.path.join(path, "corruption.png"),
                    title=f"{title}: label corruption (Zhang et al. Fig. 1b, 1c)")
    figures.append(("Steps to fit, and test and train error, vs label "
                    "corruption p (Zhang et al. Fig. 1b, 1c)",
                    "corruption.png"))
    details.append("### Label corruption\n\n" + _corruption_table(summary))
  if summary["ablation"]:
    details.append("### Explicit regularization (Zhang et al. Table 1 in "
                   "shape)\n\n" + _ablation_table(summary, config))
  details.append("### What this run shows\n\n" + _checks_text(summary))
  report.write_page(path, report.Page(
      title=f"randomization: {title}",
      claim=CLAIM,
      config=_config_text(config, summary),
      figures=figures,
      versus=(["quantity", "Zhang et al. 2017 (CIFAR-10)",
               "ours (mean ± std over seeds)"], _versus(summary)),
      differences=_differences(summary, config),
      details=details,
      run=report.run_line(
          summary, f"{summary['stages_wall_time_s']:.0f} s of training and "
          "measuring over all stages (each stage's own time, summed: the "
          "whole run's even where this invocation resumed it).")))
