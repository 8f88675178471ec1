"""report.md and three figures of a `memorization` run, from summary.json."""

import os

from jaxunknowns import report
from jaxunknowns.overparam import papers
from jaxunknowns.report import compare

FIT, TRUE, TEST = ("memorization_fit.png", "memorization_true_label.png",
                   "memorization_test.png")


def _stage(summary, p, arm="none"):
  return summary["stages"].get(f"p{p:g}-{arm}")


def _per_seed(stat, budget=None):
  """{mean, per_seed} of steps to the fit level; a seed that never got
  there counts as the budget (a lower bound) when one is given, else None."""
  if not stat or (budget is None and None in stat["per_seed"]):
    return None
  per = [budget if s is None else s for s in stat["per_seed"]]
  return {"mean": sum(per) / len(per), "per_seed": per}


def _ratio(a, b):
  return a and b and {"mean": sum(x / y for x, y in zip(
      a["per_seed"], b["per_seed"])) / len(a["per_seed"]),
                      "per_seed": [x / y for x, y in zip(a["per_seed"],
                                                         b["per_seed"])]}


def comparisons(config, summary):
  budget, lvl = config.train.steps, f"{100 * summary['fit_level']:g}%"
  ours = {"data": summary["dataset"]}
  cmp = lambda q, ref, text, rule, **kw: compare.comparison(
      q, ref, text, *rule, paper=kw.pop("paper", "yes"), our_protocol=ours,
      **kw)
  steps = lambda s: report.fmt(s, 1.0, 0)
  out = []
  for p in [p for p in summary["corruptions"] if 0 < p < 1]:
    st = _stage(summary, p)
    if st is None:
      continue
    clean = _per_seed(st["steps_to_level"]["clean"])
    noisy = _per_seed(st["steps_to_level"]["corrupted"], budget)
    out.append(cmp(f"p = {p:g}: steps to {lvl}, corrupted after clean",
                   papers.ARPIT_CLEAN_FIRST,
                   f"clean {steps(clean)}, corrupted {steps(noisy)}",
                   compare.paired_greater(noisy, clean, a_name="corrupted",
                                          b_name="clean", scale=1.0)))
    peak = st["peak_true_label"]
    out.append(cmp(
        f"p = {p:g}: corrupted predicted as true > as given label",
        papers.ARPIT_TRUE_LABEL, f"{report.fmt(peak['fraction'])}% true vs "
        f"{report.fmt(peak['corrupted_accuracy'])}% given, at step "
        f"{steps(peak['step'])}", compare.paired_greater(
            peak["fraction"], peak["corrupted_accuracy"], a_name="true",
            b_name="given")))
    es = st.get("early_stopping", {})
    out.append(cmp(
        f"p = {p:g}: test accuracy, early-stopped > final",
        papers.ARPIT_EARLY_STOP, f"{report.fmt(es.get('test_accuracy'))} at "
        f"step {steps(es.get('step'))} vs {report.fmt(st['final']['test_accuracy'])}",
        compare.paired_greater(es.get("test_accuracy"),
                               st["final"]["test_accuracy"], a_name="stopped",
                               b_name="final"),
        why_not_testable="no validation split (data.validation_size = 0)"))
    for arm in [a for a in summary["arms"] if a != "none"]:
      reg = _stage(summary, p, arm)
      slow = {k: _ratio(_per_seed(reg["steps_to_level"][k], budget if
                                  k == "corrupted" else None),
                        _per_seed(st["steps_to_level"][k]))
              for k in ("clean", "corrupted")}
      out.append(cmp(
          f"p = {p:g}, {arm}: slows noise more than clean (steps to {lvl}, "
          "× no regularization)", papers.ARPIT_REGULARIZATION,
          f"corrupted ×{report.fmt(slow['corrupted'], 1.0)}, clean "
          f"×{report.fmt(slow['clean'], 1.0)}", compare.paired_greater(
              slow["corrupted"], slow["clean"], a_name="corrupted",
              b_name="clean", scale=1.0),
          why_not_testable=f"a seed never reached {lvl} on the clean subset"))
  real, rand = _stage(summary, 0.0), _stage(summary, 1.0)
  orders = [s and s["learning_order"]["all"] for s in (real, rand)]
  orders = [o and {"mean": o["mean"], "per_seed": o["pairs"]} for o in orders]
  out.append(cmp(
      "learning order: Spearman ρ of first-fit steps across seeds, real > "
      "random labels", papers.ARPIT_ORDER,
      f"real {report.fmt(orders[0], 1.0, n=False)}, random "
      f"{report.fmt(orders[1], 1.0, n=False)} (seed pairs)", compare.greater(
          *orders, a_name="real", b_name="random", scale=1.0),
      paper="real > random",
      why_not_testable="needs p = 0 and p = 1 in memorization.corruptions"))
  return out


def _bands(ax, summary, stage, key, label, **kw):
  curve = stage["curves"].get(key)
  if curve:
    report.plot_band(ax, {r: dict(zip(summary["record_steps"], [
        c["per_seed"][r] for c in curve])) for r in range(len(curve[0][
            "per_seed"]))}, label, scale=100, **kw)


def plot(path, summary):
  plt, ps = report.plt, summary["corruptions"]
  colors = {p: plt.cm.viridis(i / max(len(ps) - 1, 1)) for i, p in enumerate(ps)}
  arms = summary["arms"]
  fig, axes = plt.subplots(1, len(arms), figsize=(4.5 * len(arms), 3.8),
                           squeeze=False, sharey=True)
  for ax, arm in zip(axes[0], arms):
    for p in ps:
      st = _stage(summary, p, arm)
      _bands(ax, summary, st, "clean_accuracy", f"p={p:g} clean", color=colors[p])
      _bands(ax, summary, st, "corrupted_accuracy", f"p={p:g} corrupted",
             color=colors[p], linestyle="--")
    ax.set(xscale="log", xlabel="step", title=arm)
  axes[0][0].set_ylabel("train accuracy vs given labels (%)")
  axes[0][-1].legend(fontsize=6, ncol=2)
  report.save_figure(fig, os.path.join(path, FIT))
  for name, key, ylabel in ((TRUE, "true_label_fraction",
                             "corrupted predicted as TRUE label (%)"),
                            (TEST, "test_accuracy", "test accuracy (%)")):
    fig, ax = plt.subplots(figsize=(6, 4))
    for p in ps:
      st = _stage(summary, p)
      _bands(ax, summary, st, key, f"p={p:g}", color=colors[p])
      if key == "test_accuracy" and st:
        i = max(range(len(st["curves"][key])),
                key=lambda t: st["curves"][key][t]["mean"])
        ax.plot(summary["record_steps"][i], 100 * st["curves"][key][i]["mean"],
                "*", color=colors[p], markersize=12, markeredgecolor="k")
    ax.set(xscale="log", xlabel="step (no regularization)", ylabel=ylabel)
    ax.legend(fontsize=8)
    report.save_figure(fig, os.path.join(path, name))


def answer(summary, rows):
  """The article's question, answered from the verdicts and one p's numbers."""
  held = lambda word: [r.verdict for r in rows if word in r.quantity]
  first, true = held("after clean"), held("as true")
  p = next((q for q in summary["corruptions"] if 0 < q < 1), None)
  if p is None:
    return "No corruption strictly between 0 and 1 was run."
  st = _stage(summary, p)
  pt, es = st["peak_true_label"], st.get("early_stopping", {})
  both = first and true and all(v == compare.AGREES for v in first + true)
  return (
      f"**Memorize or learn patterns?** At p = {p:g}, by step "
      f"{pt['step']['mean']:.0f} the network classifies "
      f"{100 * pt['fraction']['mean']:.0f}% of the corrupted training examples "
      f"as their true class and only {100 * pt['corrupted_accuracy']['mean']:.0f}%"
      f" as their given label; the test accuracy peaks at "
      f"{report.fmt(st['peak_test']['accuracy'])} and ends at "
      f"{report.fmt(st['final']['test_accuracy'])} once "
      f"{report.fmt(st['final']['corrupted_accuracy'])} of the corrupted labels "
      f"are memorized (validation early stopping: "
      f"{report.fmt(es.get('test_accuracy'))}). " + (
          "Both, in that order: the network first learns the pattern shared "
          "by the clean examples (and applies it to the corrupted ones), then "
          "memorizes the exceptions, and the memorizing is what costs test "
          "accuracy." if both else "These numbers do not show the pattern "
          "being learned before the noise at every p (see the table)."))


def write(path, config, summary):
  plot(path, summary)
  rows = comparisons(config, summary)
  table = [[f"{s['p']:g}", s["arm"], report.fmt(s["steps_to_level"].get(
      "clean"), 1.0, 0, n=False), report.fmt(s["steps_to_level"].get(
          "corrupted"), 1.0, 0, n=False)] + [report.fmt(x, n=False) for x in (
              s["peak_test"]["accuracy"], s.get("early_stopping", {}).get(
                  "test_accuracy"), s["final"]["test_accuracy"],
              s["final"].get("corrupted_accuracy"))]
           for s in summary["stages"].values()]
  report.write_page(path, report.Page(
      title=f"memorization: {summary['model']} on {summary['dataset']}",
      claim=" ".join(r.statement for r in (
          papers.ARPIT_CLEAN_FIRST, papers.ARPIT_TRUE_LABEL,
          papers.ARPIT_EARLY_STOP, papers.ARPIT_REGULARIZATION,
          papers.ARPIT_ORDER)) + " (Arpit et al. 2017.)",
      config=(f"`{summary['model']}` {tuple(config.model.widths)} on "
              f"`{summary['dataset']}` ({summary['train_examples']} training, "
              f"{summary['validation_examples']} clean validation examples), "
              f"{config.optim.name} {config.optim.lr:g}, batch "
              f"{config.train.batch_size}, {config.train.steps} steps, "
              f"{len(summary['seeds'])} seeds per stage; labels corrupted with "
              f"probability p ∈ {summary['corruptions']}; arms "
              f"{', '.join(summary['arms'])} (dropout "
              f"{config.memorization.dropout:g}, weight decay "
              f"{config.memorization.weight_decay:g}); the whole training set "
              f"classified at {len(summary['record_steps'])} log-spaced steps. "
              "A corrupted example's given label differs from its true one."),
      figures=[("Clean (solid) and corrupted (dashed) training accuracy "
                "against the given labels, per arm", FIT),
               ("Corrupted examples predicted as their true label", TRUE),
               ("Test accuracy, peak starred", TEST)],
      comparisons=rows,
      details=[answer(summary, rows), "### Every stage (mean over seeds; "
               f"steps to {100 * summary['fit_level']:g}%, '–' where a seed "
               "never got there)\n\n" + report.markdown_table(
                   ["p", "arm", "clean steps", "corrupted steps",
                    "peak test (%)", "early-stopped test (%)",
                    "final test (%)", "final corrupted acc (%)"], table)],
      run=report.run_line(summary, f"Training {summary['stages_wall_time_s']:.0f} s "
                          f"over {len(summary['stages'])} stages.")))
