"""report.md and figures of a `randomization` run from its workdir's files
(summary.json; metrics.jsonl for the learning curves)."""

import os

from jaxunknowns import metrics, report
from jaxunknowns.overparam import papers
from jaxunknowns.overparam import width_sweep_report as wsr
from jaxunknowns.overparam.width_sweep_report import ms
from jaxunknowns.report import compare
from jaxunknowns.report.text import std_of

NAMES = {"true_labels": "true labels", "random_labels": "random labels",
         "shuffled_pixels": "shuffled pixels", "random_pixels": "random pixels",
         "gaussian": "Gaussian inputs", "weight_decay": "weight decay",
         "augment": "augmentation", "corrupt_": "labels corrupted, p = "}
# "At chance": within 2 points (the brief). "A few points": Table 1's
# regularizers move test accuracy by at most +3.56, so within 5.
CHANCE_TOLERANCE, FEW_POINTS = 0.02, 0.05


def _name(key):
  return " + ".join(NAMES.get(k, k) for k in key.replace(
      "corrupt_", "corrupt_-").split("-")).replace("= + ", "= ")


def _steps(e):
  return (ms(e["steps_to_fit"], spec=".0f") if e.get("steps_to_fit") else
          f"{e['seeds_fitted']}/{len(e['steps_to_fit_per_seed'])} seeds "
          f"fitted in {e['steps']}")


def comparisons(config, summary):
  st, fit = summary["stages"], summary["fit_accuracy"]
  ours = papers.our_protocol(config, summary["train_examples"])

  def row(quantity, reference, ours_text, rule, paper=None):
    return compare.comparison(quantity, reference, ours_text, *rule,
                              paper=paper, our_protocol=ours,
                              why_not_testable="a stage did not fit")

  out = [row(f"{_name(k)}: train accuracy (%)", papers.ZHANG_FIT,
             report.fmt(st[k]["train_accuracy"]),
             compare.at_least(st[k]["train_accuracy"], fit))
         for k in summary["variants"]]
  if "random_labels" in st:
    e = st["random_labels"]
    out += [row("random labels: test accuracy (%)", papers.ZHANG_CHANCE,
                report.fmt(e["test_accuracy"]), compare.within(
                    e["test_accuracy"], {"mean": 1 / summary["num_classes"]},
                    a_name="ours", b_name="chance",
                    tolerance=CHANCE_TOLERANCE)),
            row("random labels: steps to fit ÷ true labels'",
                papers.ZHANG_SLOWDOWN, report.fmt(e.get("slowdown"), 1),
                compare.greater(e.get("steps_to_fit"), st.get(
                    "true_labels", {}).get("steps_to_fit"), a_name="random",
                                b_name="true", scale=1), paper="≈4×")]
  stages = [st[c["stage"]] for c in summary["corruption"]]
  if len(stages) > 1:
    ps = " → ".join(f"{c['p']:g}" for c in summary["corruption"])
    out += [row("test error vs label corruption p (%)",
                papers.ZHANG_CORRUPTION, " → ".join(
                    ms(e["test_error"], 100, ".1f") for e in stages)
                + f" (p = {ps})", compare.monotone(
                    [e["test_error"]["mean"] for e in stages], increasing=True,
                    what="test error (up to 1 point)",
                    tolerance=wsr.RISE_TOLERANCE), paper="rises to chance"),
            row("steps to fit vs label corruption p", papers.ZHANG_CORRUPTION,
                " → ".join(_steps(e) for e in stages), compare.monotone(
                    [(e.get("steps_to_fit") or {}).get("mean") for e in stages],
                    increasing=True, what="steps to fit"), paper="grow with p")]
  for a in [a for a in summary["ablation"] if st[a["stage"]]["regularizers"]]:
    e, base, name = st[a["stage"]], st[a["labels"]], _name(a["stage"])
    out.append(row(f"{name}: train accuracy (%)", papers.ZHANG_REGULARIZATION,
                   report.fmt(e["train_accuracy"]), compare.at_least(
                       e["train_accuracy"], fit), paper="still fitted")
               if a["labels"] == "random_labels" else row(
                   f"{name}: test accuracy (%)", papers.ZHANG_REGULARIZATION,
                   f"{report.fmt(e['test_accuracy'])}; without: "
                   f"{ms(base['test_accuracy'], 100, '.2f')}", compare.within(
                       e["test_accuracy"], base["test_accuracy"],
                       a_name="with", b_name="without", tolerance=FEW_POINTS),
                   paper="± a few points"))
  return out


def plot_learning_curves(rows, keys, path, title):
  """Zhang et al.'s Fig. 1a: training loss and training-set accuracy (eval
  mode) vs step, one line per variant, mean ± std over seeds."""
  fig, axes = report.plt.subplots(1, 2, figsize=(11, 4))
  for i, key in enumerate(keys):
    for ax, split, metric, scale in ((axes[0], "minibatch", "loss", 1),
                                     (axes[1], "train", "accuracy", 100)):
      report.plot_band(ax, metrics.curves(rows, split, metric, variant=key),
                       _name(key), scale=scale, color=f"C{i}",
                       linestyle=("-", "--", "-.", ":")[i % 4])
  for ax, label in zip(axes, ("training loss", "training accuracy (%)")):
    ax.set(xlabel="step", ylabel=label)
    ax.legend(fontsize=8)
  fig.suptitle(title, fontsize=10)
  report.save_figure(fig, path)


def plot_corruption(summary, path, title):
  """Zhang et al.'s Fig. 1b (steps to fit) and 1c (test error) vs p."""
  entries = [(c["p"], summary["stages"][c["stage"]])
             for c in summary["corruption"]]

  def line(name, scale, label, fmt):
    stats = [(p, e[name]) for p, e in entries if e.get(name)]
    return ([p for p, _ in stats], [scale * s["mean"] for _, s in stats],
            [scale * std_of(s) for _, s in stats], label, fmt, "C0")

  ps, chance = [p for p, _ in entries], 100 - 100 / summary["num_classes"]
  wsr.plot_panels(
      [("steps to fit", False, [line("steps_to_fit", 1, "", "-o")], []),
       ("test error (%)", False, [line("test_error", 100, "test", "-o"), (
           ps, [chance] * len(ps), None, "chance", ":", "gray")], [])],
      path, title, xlabel="label corruption p", log2=False)


def write(path, config, summary):
  """report.md, learning_curves.png and corruption.png."""
  title, figures = f"{config.model.name} on {config.data.name}", []
  rows = metrics.read_metrics(path)
  if summary["variants"] and rows:  # Else (no metrics.jsonl) keep the run's.
    plot_learning_curves(rows, summary["variants"], os.path.join(
        path, "learning_curves.png"), f"{title} (Zhang et al. Fig. 1a)")
  if summary["variants"] and os.path.exists(f"{path}/learning_curves.png"):
    figures.append(("Training loss and training-set accuracy vs step, mean ± "
                    "std over seeds (Zhang et al. Fig. 1a)",
                    "learning_curves.png"))
  if summary["corruption"]:
    plot_corruption(summary, os.path.join(path, "corruption.png"),
                    f"{title}: label corruption (Zhang et al. Fig. 1b, 1c)")
    figures.append(("Steps to fit and error vs label corruption p, mean ± std "
                    "over seeds", "corruption.png"))
  a, n, fit = config.ablation, len(summary["seeds"]), summary["fit_accuracy"]
  table = report.markdown_table(
      ["stage", "train accuracy (%)", "test accuracy (%)", "steps to fit",
       "÷ true labels' steps"],
      [[_name(k), ms(e["train_accuracy"], 100, ".2f"),
        ms(e["test_accuracy"], 100, ".2f"), _steps(e),
        ms(e.get("slowdown"), spec=".2f")]
       for k, e in summary["stages"].items()])
  report.write_page(path, report.Page(
      title=f"randomization: {title}", claim=papers.claim(
          papers.ZHANG_FIT, papers.ZHANG_CHANCE, papers.ZHANG_SLOWDOWN,
          papers.ZHANG_CORRUPTION, papers.ZHANG_REGULARIZATION),
      config=wsr.config_text(config, summary, (
          f"each stage until every seed reaches {100 * fit:g}% training "
          f"accuracy (checked every {config.randomization.check_every} steps, "
          f"read every {config.train.eval_every}) or {config.train.steps} "
          f"steps; ablation: weight decay {a.weight_decay}, dropout "
          f"{a.dropout}, {summary['augmentation']} augmentation")),
      figures=figures, comparisons=comparisons(config, summary),
      details=[f"### Every stage (mean ± std over {n} seeds)\n\n{table}"],
      run=wsr.run_line(summary)))
