"""report.md and figures of a `prune_init` run, from its summary.json."""

import os

from jaxunknowns import report
from jaxunknowns.lottery import papers
from jaxunknowns.metrics import stats
from jaxunknowns.report import compare

REFERENCES = (papers.SNIP_LENET, papers.TANAKA_COLLAPSE, papers.FRANKLE21_INIT,
              papers.FRANKLE21_TICKET, papers.ZHOU_SIGNS)
FIGURES = ("accuracy_vs_density.png", "sanity_deltas.png", "layer_density.png")
SANITY = 0.05  # The density of the sanity-check comparisons (95% sparsity).


def rows(s, **where):
  return [r for r in s["results"] if all(r[k] == v for k, v in where.items())]


def acc(s, **where):
  found = rows(s, **where)
  return found[0]["test_accuracy"] if found else None


def delta(a, b):
  return stats([x - y for x, y in zip(a["per_seed"], b["per_seed"])])


def plot(path, s):
  b, methods = s["budgets"][0], s["methods"]
  with report.figure(os.path.join(path, FIGURES[0]), len(s["budgets"])) as axes:
    for ax, budget in zip(axes, s["budgets"]):
      for m in methods:
        r = rows(s, method=m, budget=budget, variant="found")
        report.errorbars(ax, [100 * x["density"] for x in r],
                         [x["test_accuracy"] for x in r], 100, label=m, marker="o")
      ax.axhline(100 * acc(s, method="dense")["mean"], color="k", ls=":", label="dense")
      ax.set(xscale="log", xlabel="weights remaining (%)", ylabel="test accuracy (%)",
             title=f"{budget} budget, masks as found")
      ax.invert_xaxis()
  with report.figure(os.path.join(path, FIGURES[1]), len(methods), cols=3) as axes:
    for ax, m in zip(axes, methods):
      for v in s["variants"][1:]:
        pairs = [(r, acc(s, method=m, budget=b, variant="found", density=r["density"]))
                 for r in rows(s, method=m, budget=b, variant=v)]
        if pairs:
          report.errorbars(ax, [100 * r["density"] for r, _ in pairs],
                           [delta(r["test_accuracy"], f) for r, f in pairs], 100,
                           label=v, marker="o")
      ax.axhline(0, color="k", lw=0.5)
      ax.set(xscale="log", title=m, xlabel="weights remaining (%)",
             ylabel="variant − found (points)")
      ax.invert_xaxis()
  with report.figure(os.path.join(path, FIGURES[2]), len(methods), cols=3) as axes:
    for ax, m in zip(axes, methods):
      for r in rows(s, method=m, budget=b, variant="found"):
        names = list(r["layer_density"])
        ax.plot(range(len(names)), [max(x, 1e-5) for x in r["layer_density"].values()],
                marker="o", label=f"{100 * r['density']:g}%")
        ax.set_xticks(range(len(names)), names, rotation=30, fontsize=7)
      ax.set(yscale="log", title=m, ylabel="layer density (kept fraction)")
  return FIGURES


def comparisons(s):
  b, out = s["budgets"][0], []
  ours = {"model": s["model"], "data": s["dataset"]}
  snip = acc(s, method="snip", budget=b, variant="found", density=0.02)
  out.append((f"SNIP test error at 98% sparsity ({b} budget)", papers.SNIP_LENET,
              "2.4% error", snip and {**snip, "per_seed": [1 - x for x in snip["per_seed"]],
                                      "mean": 1 - snip["mean"]},
              compare.at_most(snip and stats([1 - x for x in snip["per_seed"]]), 0.024)))
  mc, top = s["max_compression"][b], 1 / min(s["densities"])
  if "synflow" in mc:
    out.append(("SynFlow's compression before collapse", papers.TANAKA_COLLAPSE,
                f"the maximal ({top:g}×)", mc["synflow"],
                compare.at_least(mc["synflow"], top, scale=1, unit="×")))
    out += [(f"compression before collapse: SynFlow vs {m}", papers.TANAKA_COLLAPSE,
             "SynFlow further", None, compare.greater(mc["synflow"], mc[m], a_name="SynFlow",
                                                      b_name=m, scale=1))
            for m in ("snip", "grasp") if m in mc]
  at = min(s["densities"], key=lambda d: abs(d - SANITY))
  get = lambda m, v: acc(s, method=m, budget=b, variant=v, density=at)
  for m in ("snip", "grasp", "synflow"):
    out += [(f"{m} at {100 * at:g}%: {v} vs found", papers.FRANKLE21_INIT, "about equal",
             None, compare.within(get(m, v), get(m, "found"), a_name=v, b_name="found",
                                  tolerance=0.01)) for v in ("shuffled", "reinit")]
  out += [(f"IMP ticket at {100 * at:g}%: found vs {v}", ref, "found higher", None,
           compare.paired_greater(get("imp", "found"), get("imp", v), a_name="found",
                                  b_name=v)) for v, ref in (
      ("shuffled", papers.FRANKLE21_TICKET), ("reinit", papers.FRANKLE21_TICKET),
      ("sign_flip", papers.ZHOU_SIGNS))]
  return [compare.comparison(q, ref, report.fmt(stat) if stat else "see rule", *verdict,
                             paper=paper, our_protocol=ours)
          for q, ref, paper, stat, verdict in out]


def table(s):
  body = [[r["method"], r["budget"], f"{100 * r['density']:g}", r["variant"],
           report.fmt(r["test_accuracy"]), "yes" if r["collapsed"] else "",
           ", ".join(r["empty_layers"])] for r in s["results"]]
  comp = [[b, m, report.fmt(x, 1, 0)] for b, d in s["max_compression"].items()
          for m, x in d.items()]
  capped = [f"{k}: {', '.join(v['erk_capped'])}" for k, v in s["stages"].items()
            if v["erk_capped"]]
  return ["### Every run\n\n" + report.markdown_table(
              ["method", "budget", "density (%)", "variant", "test accuracy (%)",
               "collapsed", "empty layers"], body),
          "### Largest compression before collapse (×)\n\n" + report.markdown_table(
              ["budget", "method", "compression"], comp),
          "ERK layers capped at density 1: " + ("; ".join(capped) or "none") + "."]


def write(path, config, summary):
  p, s = config.prune_init, summary
  report.write_page(path, report.experiment_page(
      config, s, references=REFERENCES,
      setup=(f"{config.train.steps} steps a run; methods {', '.join(s['methods'])}; "
             f"budgets {', '.join(s['budgets'])}; SynFlow {p.rounds} rounds; SNIP/GraSP "
             f"on {p.score_batch} examples (GraSP T = {p.grasp_temperature:g}); IMP "
             f"ticket: {p.imp or 'none'}; variants {', '.join(s['variants'])}"),
      figures=list(zip(("Test accuracy vs density, masks as found",
                        "Sanity checks: each variant minus the mask as found "
                        f"({s['budgets'][0]} budget)", "Per-layer density "
                        "of the masks as found"), plot(path, s))),
      comparisons=comparisons(s), details=table(s)))
