"""report.md and three figures of a `memorization` run, from summary.json."""

import functools
import os

from jaxunknowns import report
from jaxunknowns.overparam import papers
from jaxunknowns.report import compare

FIT, TRUE, TEST = ("memorization_fit.png", "memorization_true_label.png",
                   "memorization_test.png")


def _stage(summary, p, arm="none"):
  return summary["stages"].get(f"p{p:g}-{arm}")


def _noisy(summary):
  """The p with both clean and corrupted examples, trained unregularized."""
  return [p for p in summary["corruptions"] if 0 < p < 1 and _stage(summary, p)]


def comparisons(summary):
  lvl = f"{100 * summary['fit_level']:g}%"
  out = report.Rows({"data": summary["dataset"]})
  row = functools.partial(out.versus, paper="yes")
  for p in _noisy(summary):
    st = _stage(summary, p)
    to, pt, es = (st["steps_to_level"], st["peak_true_label"],
                  st.get("early_stopping", {}))
    # A seed that never reached the level has no step to pair: the row
    # said 'not measured' though every step was measured.
    n = len(summary["seeds"])
    short = (f"{lvl} not reached by every seed in {st['steps']:,} steps: " +
             ", ".join(f"{k} {v['reached']}/{n}" for k, v in to.items())
             if any(v["reached"] < n for v in to.values()) else "")
    fit = f"p = {p:g}: corrupted fit after clean (steps to {lvl})"
    if short and (to["clean"]["reached"], to["corrupted"]["reached"]) == (
        n, 0):
      # Censored: no corrupted seed reached the level by the last step, so
      # each fits (if ever) past it, after every clean seed: the gap is at
      # least the budget minus clean's step, judged as `beyond` judges it.
      last = f"{st['steps']:,}"
      holds, text = compare.beyond(to["clean"], st["steps"], below=True,
                                   scale=1.0)
      out.check(fit, papers.ARPIT_CLEAN_FIRST, f"corrupted after step {last} "
                f"(0/{n} seeds reached it), clean "
                f"{report.fmt(to['clean'], 1.0, 0)}", (holds, (
                    f"corrupted past step {last} on every seed; clean: "
                    f"{text}")), paper="yes")
    else:
      row(fit, papers.ARPIT_CLEAN_FIRST, to["corrupted"], to["clean"],
          ("corrupted", "clean"), scale=1.0, digits=0, why=short,
          **({"rule": compare.undecided(short)} if short else {}))
    row(f"p = {p:g}: corrupted predicted as true > as given label (%, step "
        f"{pt['step']['mean']:.0f})", papers.ARPIT_TRUE_LABEL,
        pt["fraction"], pt["corrupted_accuracy"], ("true", "given"))
    row(f"p = {p:g}: test accuracy early-stopped > final (%)",
        papers.ARPIT_EARLY_STOP, es.get("test_accuracy"),
        st["final"]["test_accuracy"], ("stopped", "final"),
        why="no validation split (data.validation_size = 0)")
    for arm in [a for a in summary["arms"] if a != "none"]:
      drop = _stage(summary, p, arm)["accuracy_drop"]
      row(f"p = {p:g}, {arm}: costs corrupted > clean (points)",
          papers.ARPIT_REGULARIZATION, drop.get("corrupted"),
          drop.get("clean"), ("corrupted", "clean"))
  # Its other half: on real data (p = 0) a regularizer costs test accuracy
  # at most a point (ours), seed by seed against no regularization.
  for arm in [a for a in summary["arms"] if a != "none"]:
    a, b = (s and s["final"]["test_accuracy"] for s in
            (_stage(summary, 0, arm), _stage(summary, 0)))
    out.check(f"p = 0, {arm} − none: test accuracy per seed (points)",
              papers.ARPIT_REGULARIZATION, f"{arm} {report.fmt(a, n=False)}, "
              f"none {report.fmt(b)}", compare.paired_bound(
                  a, b, 0.0, upper=False, slack=0.01),
              paper="barely lower (ours: by ≤ 1 point)",
              why="needs p = 0 in the grid")
  orders = [s and s["learning_order"]["all"] for s in
            (_stage(summary, 0.0), _stage(summary, 1.0))]
  row("learning order over seed pairs (ρ; n: pairs): real > random labels",
      papers.ARPIT_ORDER, *[o and {"mean": o["mean"], "per_seed": o["pairs"]}
                            for o in orders], ("real", "random"), scale=1.0,
      rule=compare.greater, paper="real > random",
      why="needs p = 0 and p = 1 in the grid")
  return out


def _band(ax, summary, stage, key, label, **kw):
  curve, steps = stage and stage["curves"].get(key), summary["record_steps"]
  if curve:
    report.plot_band(ax, curve["per_seed"], label, 100, steps, **kw)
    return max(zip(curve["mean"], steps))


def plot(path, summary):
  ps, arms, viridis = (summary["corruptions"], summary["arms"],
                       report.colormap("viridis"))
  color = {p: viridis(i / max(len(ps) - 1, 1)) for i, p in enumerate(ps)}
  fig, axes = report.subplots(1, len(arms), figsize=(4.5 * len(arms), 3.8),
                              squeeze=False, sharey=True)
  for ax, arm in zip(axes[0], arms):
    for p in ps:
      for key, style in (("clean", "-"), ("corrupted", "--")):
        _band(ax, summary, _stage(summary, p, arm), f"{key}_accuracy",
              f"p={p:g} {key}", color=color[p], linestyle=style)
    ax.set(xscale="log", xlabel="step", title=arm)
  axes[0][0].set_ylabel("train accuracy vs given labels (%)")
  axes[0][0].legend(fontsize=6, ncol=2, loc="upper left")
  fig.tight_layout()
  report.save_figure(fig, os.path.join(path, FIT), dpi=80)
  for name, key in ((TRUE, "true_label_fraction"), (TEST, "test_accuracy")):
    with report.figure(os.path.join(path, name), 1, (6, 4), dpi=90) as (ax,):
      for p in ps:
        top = _band(ax, summary, _stage(summary, p), key, f"p={p:g}",
                    color=color[p])
        if top and key == "test_accuracy":  # the peak of the mean curve
          ax.plot(top[1], 100 * top[0], "*", color=color[p], markersize=12,
                  markeredgecolor="k")
      ax.set(xscale="log", xlabel="step (no regularization)",
             ylabel=("corrupted predicted as their TRUE label (%)"
                     if name == TRUE else "test accuracy (%)"))


def answer(summary, rows):
  """The article's question, from the verdicts and a middle noisy p."""
  noisy = _noisy(summary)
  if not noisy:
    return "**Memorize or learn patterns?** Needs a p strictly inside (0, 1)."
  st = _stage(summary, noisy[(len(noisy) - 1) // 2])
  pt, es, f = st["peak_true_label"], st.get("early_stopping", {}), st["final"]
  pct = lambda s: f"{100 * s['mean']:.0f}%" if s else "–"
  first = [f"{p:g}" for p in noisy if all(
      r.verdict == compare.AGREES for r in rows[:-1] if r.quantity.startswith(
          f"p = {p:g}:") and ("after" in r.quantity or "true >" in r.quantity))]
  return (
      f"**Memorize or learn patterns?** At p = {st['p']:g} and step "
      f"{pt['step']['mean']:.0f}, {pct(pt['fraction'])} of the corrupted "
      f"examples are classified as their true class and "
      f"{pct(pt['corrupted_accuracy'])} as their given label; test accuracy "
      f"peaks at {pct(st['peak_test']['accuracy'])} (early-stopped on clean "
      f"validation labels {pct(es.get('test_accuracy'))}) and ends at "
      f"{pct(f['test_accuracy'])} with {pct(f['corrupted_accuracy'])} of the "
      "corrupted labels memorized. Both, in that order, where the clean "
      "examples fit first and the corrupted ones lean to their true class "
      f"(p = {', '.join(first) or 'none'} of {', '.join(f'{p:g}' for p in noisy)})"
      ": first the pattern the clean examples share, then the exceptions, "
      "memorized at a cost in test accuracy.")


def write(path, config, summary):
  plot(path, summary)
  rows, m = comparisons(summary), config.memorization
  # The rates of the arms run only (an arm left out reads none).
  rates = [f"{name} {rate:g}" for name, rate, arm in (
      ("dropout", m.dropout, "dropout"),
      ("weight decay", m.weight_decay, "weight_decay"))
           if arm in summary["arms"]]
  report.write_page(path, report.Page(
      title=f"memorization: {summary['model']} on {summary['dataset']}",
      claim=" ".join(r.statement for r in (
          papers.ARPIT_CLEAN_FIRST, papers.ARPIT_TRUE_LABEL,
          papers.ARPIT_EARLY_STOP, papers.ARPIT_REGULARIZATION,
          papers.ARPIT_ORDER)) + " (Arpit et al. 2017.)",
      config=(
          f"`{summary['model']}` with hidden widths "
          f"{', '.join(map(str, config.model.widths))}, "
          f"{summary['train_examples']} training and "
          f"{summary['validation_examples']} clean validation examples, "
          f"{config.optim.name} {config.optim.lr:g}, batch "
          f"{config.train.batch_size}, {config.train.steps} steps, "
          f"{report.count(len(summary['seeds']), 'seed')}; labels replaced by "
          f"a random class with probability p = "
          f"{', '.join(f'{p:g}' for p in summary['corruptions'])} (corrupted:"
          f" the label changed); arms {', '.join(summary['arms'])}"
          + (f" ({', '.join(rates)})" if rates else "") + "; every split "
          f"classified at {len(summary['record_steps'])} log-spaced steps. "
          "A regularizer's cost: the training accuracy it loses on a subset "
          "against no regularization, in points, averaged over those steps; "
          "learning order: mean Spearman ρ over seed pairs of the step from "
          "which each example stays fitted."),
      figures=[("Clean (solid) and corrupted (dashed) training accuracy "
                "against the given labels, per arm", FIT),
               ("Corrupted examples predicted as their true label", TRUE),
               ("Test accuracy, its peak starred", TEST)],
      comparisons=rows, details=[answer(summary, rows)],
      run=report.run_line(summary, f"Training {summary['stages_wall_time_s']:.0f}"
                          f" s over {len(summary['stages'])} stages.")), config)
