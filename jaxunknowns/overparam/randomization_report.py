"""report.md and figures of a `randomization` run from its workdir's files."""

import os

from jaxunknowns import metrics, paths, report
from jaxunknowns.overparam import papers
from jaxunknowns.overparam import width_sweep_report as wsr
from jaxunknowns.report import compare, fmt

# "At chance": within 2 points (the brief). "A few points" (Table 1's largest
# change is Inception's random crops, papers.ZHANG_REGULARIZATION): within 5.
CHANCE_TOLERANCE, FEW_POINTS = 0.02, 0.05


def _name(key):  # 'random_labels-weight_decay': 'random labels + weight decay'
  return key.replace("_", " ").replace("-", " + ").replace(
      "corrupt ", "labels corrupted, p = ")


def _steps(e):
  return (fmt(e["steps_to_fit"], 1, 0, n=False) if e.get("steps_to_fit") else
          f"{e['seeds_fitted']}/{len(e['steps_to_fit_per_seed'])} seeds "
          f"fitted in {e['steps']}")


def comparisons(config, summary):
  st, fitted = summary["stages"], papers.ZHANG_FITTED
  out = report.Rows(papers.our_protocol(config, summary["train_examples"]),
                    why="a stage did not fit")
  row = out.check
  for k in summary["variants"]:
    row(f"{_name(k)}: train accuracy (%)", papers.ZHANG_FIT,
        report.fmt(st[k]["train_accuracy"]),
        compare.at_least(st[k]["train_accuracy"], fitted),
        paper=f"fitted (≥ {100 * fitted:.2f}%)")
  if "random_labels" in st:
    e = st["random_labels"]
    row("random labels: test accuracy (%)", papers.ZHANG_CHANCE,
        report.fmt(e["test_accuracy"]), compare.within(
            e["test_accuracy"], {"mean": 1 / summary["num_classes"]},
            a_name="ours", b_name="chance", tolerance=CHANCE_TOLERANCE))
    row("random labels: steps to fit ÷ true labels'", papers.ZHANG_SLOWDOWN,
        report.fmt(e.get("slowdown"), 1), compare.greater(
            e.get("steps_to_fit"), st.get("true_labels", {}).get(
                "steps_to_fit"), a_name="random", b_name="true", scale=1),
        paper="slower")
  stages = [st[c["stage"]] for c in summary["corruption"]]
  if len(stages) > 1:
    row("test error vs label corruption p (%)", papers.ZHANG_CORRUPTION,
        " → ".join(fmt(e["test_error"], 100, 1, n=False) for e in stages),
        compare.trend([e["test_error"] for e in stages], increasing=True,
                      what="test error (%)", scale=100, digits=1,
                      paired=True), paper="rises to chance")
    # By the seeds' spread: neighbouring p differ by about one eval interval
    # near p = 1, less than the seeds' ±300 steps (compare.trend), paired:
    # every p trains the same seeds.
    row("steps to fit vs label corruption p", papers.ZHANG_CORRUPTION,
        " → ".join(_steps(e) for e in stages), compare.trend(
            [e.get("steps_to_fit") for e in stages], increasing=True,
            what="steps to fit", paired=True), paper="grow with p")
  for a in [a for a in summary["ablation"] if st[a["stage"]]["regularizers"]]:
    e, base, name = st[a["stage"]], st[a["labels"]], _name(a["stage"])
    if a["labels"] == "random_labels":
      row(f"{name}: train accuracy (%)", papers.ZHANG_REGULARIZATION,
          report.fmt(e["train_accuracy"]), compare.at_least(
              e["train_accuracy"], fitted),
          paper=f"still fitted (≥ {100 * fitted:.2f}%)")
    else:
      row(f"{name}: test accuracy (%)", papers.ZHANG_REGULARIZATION,
          f"{report.fmt(e['test_accuracy'])}; without: "
          f"{fmt(base['test_accuracy'], n=False)}", compare.within(
              e["test_accuracy"], base["test_accuracy"], a_name="with",
              b_name="without", tolerance=FEW_POINTS), paper="a few points")
  return out


def plot_learning_curves(rows, keys, path, title):
  """Zhang et al.'s Fig. 1a: training loss vs step, mean ± std over seeds."""
  with report.figure(path, size=(7.2, 4.4)) as (ax,):
    for i, key in enumerate(keys):
      report.plot_band(ax, metrics.curves(rows, "minibatch", "loss",
                                          variant=key),
                       _name(key), color=f"C{i}", linestyle="-:--"[i % 3])
    ax.set(xlabel="step", ylabel="training loss (minibatch)", title=title)


def plot_corruption(summary, path, title):
  """Zhang et al.'s Fig. 1b (steps to fit) and 1c (test error) vs p."""
  points = [{**summary["stages"][c["stage"]], "width": c["p"]}  # x: p
            for c in summary["corruption"]]
  ps, chance = [q["width"] for q in points], 100 - 100 / summary["num_classes"]
  wsr.plot_panels(
      [("steps to fit", False,
        [(*wsr.series(points, "steps_to_fit"), "", "-o", "C0")], []),
       ("test error (%)", False, [
           (*wsr.series(points, "test_error", 100), "test", "-o", "C0"),
           (ps, [chance] * len(ps), None, "chance", ":", "gray")], [])],
      path, title, xlabel="label corruption p", log2=False)


def write(path, config, summary):
  title, figures = f"{config.model.name} on {config.data.name}", []
  rows = metrics.read_metrics(path)
  if summary["variants"] and rows:  # Else (no metrics.jsonl) keep the run's.
    plot_learning_curves(rows, summary["variants"], os.path.join(
        path, "learning_curves.png"), f"{title} (Zhang et al. Fig. 1a)")
  if summary["variants"] and paths.exists(f"{path}/learning_curves.png"):
    figures.append(("Training loss vs step (Zhang et al. Fig. 1a)",
                    "learning_curves.png"))
  if summary["corruption"]:
    plot_corruption(summary, os.path.join(path, "corruption.png"),
                    f"{title}: label corruption (Zhang et al. Fig. 1b, 1c)")
    figures.append(("Steps to fit and test error vs p", "corruption.png"))
  a, n, fit = config.ablation, len(summary["seeds"]), summary["fit_accuracy"]
  table = report.markdown_table(
      ["stage", "train accuracy (%)", "test accuracy (%)", "steps to fit",
       "÷ true labels' steps"],
      [[_name(k), fmt(e["train_accuracy"], n=False),
        fmt(e["test_accuracy"], n=False), _steps(e),
        fmt(e.get("slowdown"), 1, n=False)]
       for k, e in summary["stages"].items()])
  wsr.write_page(
      path, config, summary, (papers.ZHANG_FIT, papers.ZHANG_CHANCE,
                              papers.ZHANG_SLOWDOWN, papers.ZHANG_CORRUPTION,
                              papers.ZHANG_REGULARIZATION),
      f"each stage until every seed fits ({100 * fit:g}% train accuracy, "
      f"checked every {config.randomization.check_every} steps) or "
      f"{config.train.steps} steps; ablation: weight decay {a.weight_decay}, "
      f"dropout {a.dropout}, {summary['augmentation']}", figures=figures,
      comparisons=comparisons(config, summary),
      details=[f"### Every stage (mean ± std over "
               f"{report.count(n, 'seed')})\n\n{table}"])
