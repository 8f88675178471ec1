"""report.md and figures of an `imp` run, from its workdir's summary.json."""

import itertools
import os

import numpy as np

from jaxunknowns import report
from jaxunknowns.lottery import papers
from jaxunknowns.metrics import stats
from jaxunknowns.report import compare
from jaxunknowns.report.text import std_of

STYLE = {k: dict(color=c, marker=m, label=l) for k, c, m, l in (
    ("ticket", "C0", "o", "winning ticket"),
    ("random_reinit", "C3", "s", "random reinit (same mask)"),
    ("random_prune", "C2", "^", "random pruning (same sparsity)"),
    ("rewind_lr", "C1", "D", "lr rewinding"),
    ("finetune", "C4", "v", "fine-tuning"),
    ("rewind_weights", "C5", "P", "weight rewinding"))}
CONTROLS = ("random_reinit", "random_prune")
FIGURES = (
    ("test_accuracy", "test accuracy at the end (%)", 100, "accuracy"),
    ("early_stop_step", "early-stop iteration (minimum validation loss)", 1,
     "early_stop"), ("early_stop_accuracy", "test accuracy at early stop (%)",
                     100, "early_stop_accuracy"))
HOLD_POINTS = 0.3  # "Matches dense": at most this many points below (means).


def block(entry, variant):
  return entry if variant == "ticket" else entry.get(variant)


def plot_vs_sparsity(levels, field, ylabel, path, scale=100.0, title=""):
  with report.figure(path) as (ax,):
    for variant, style in STYLE.items():
      if rows := [(pct(e), block(e, variant)[field]) for e in levels
                  if field in (block(e, variant) or {})]:
        report.errorbars(ax, *zip(*rows), scale, **style)
    ax.set_xscale("log")
    ax.minorticks_off()  # Labelled major ticks only, at round percentages.
    lo, hi = sorted(ax.get_xlim())
    ticks = [t for t in (100, 70, 50, 30, 20, 10, 7, 5, 3, 2, 1, .5, .3, .2,
                         .1) if lo <= t <= hi]
    ax.set_xticks(ticks, labels=[f"{t:g}" for t in ticks])
    ax.invert_xaxis()  # Sparser to the right, as in the paper.
    ax.set(xlabel="weights remaining (%)", ylabel=ylabel, title=title)


def holds(levels, entry, variant="ticket") -> bool:  # Within HOLD_POINTS.
  return block(entry, variant)["test_accuracy"]["mean"] >= (
      levels[0]["test_accuracy"]["mean"] - HOLD_POINTS / 100)


def last_of(levels, good):
  """The sparsest level down to which every pruned level is `good` (None)."""
  return ([None] + list(itertools.takewhile(good, levels[1:])))[-1]


def falls_from(levels, variant):
  """The densest level from which `variant` stays below dense to the end."""
  first = None
  for entry in levels[1:]:
    first = None if holds(levels, entry, variant) else (first or entry)
  return first


def pct(entry) -> float:
  return 100 * entry["weights_remaining"] if entry else 100.0


def our_protocol(config):
  m, w, t = config.model, tuple(config.model.get("widths", ())), config.train
  # Each name's text is built only for its own model: an MLP without hidden
  # layers (widths ()) has no w[0].
  model = {"resnet": lambda: f"resnet{m.get('depth')}",
           "mlp": lambda: f"mlp {'-'.join(map(str, w)) or '(linear)'}",
           "residual_mlp": lambda: f"residual MLP, width {w[0]}"}.get(
               m.name, lambda: m.name)()
  return {"model": model, "data": config.data.name, "steps": t.steps,
          "optimizer": config.optim.name, "lr": config.optim.lr,
          "batch": t.batch_size}


def modes_of(p):  # The main retrain mode first.
  return [p.get("retrain", "rewind_weights"), *p.get("compare_retrain", [])]


def not_below(a, b, *, a_name, b_name, scale):
  """Renda et al.'s 'a ≥ b' on arms of the same seeds, as every 'not below'
  is judged (bn_smoothness' ICS ratio): the per-seed differences a − b at
  least 0 on average; below it by at most twice their std, the seeds
  cannot tell; by more, it differs."""
  diffs, why = compare.per_seed_differences(a, b)
  if diffs is None:
    return None, why
  holds, text = compare.at_least(diffs, 0.0, scale=scale,
                                 spread=2 * std_of(diffs),
                                 spread_name="2 × their std")
  return holds, f"{a_name} − {b_name} per seed: {text}"


def comparisons(config, summary):
  levels, out = summary["levels"], report.Rows(our_protocol(config))
  dense, last = levels[0], levels[-1]
  tickets = papers.TICKETS.get(config.get("reference"), papers.Tickets())
  at_last = f"at the sparsest level ({pct(last):.2f}%)"
  too_dense = f"the sparsest level run is {pct(last):.2f}% of weights"

  def sparsest(name, ref, entry):  # <= ref.value % within a factor 2
    rule = compare.at_most({"mean": pct(entry)}, ref.value, scale=1, unit="%",
                           slack=ref.value)
    out.check(name, ref, "none: not the first pruned level" if entry is None
              else f"{pct(entry):.2f}%" + " (every level run)" * (
                  entry is last), (None, rule[1]) if not rule[0] and
              entry is last else rule, why=too_dense)

  def in_range(name, ref_range, stat, why=""):
    ref, (lo, hi) = ref_range
    rule = compare.within(stat, {"mean": (lo + hi) / 200}, a_name="ours",
                          b_name="the paper's",
                          tolerance=((hi - lo) / 2 + 1) / 100)
    # With a `why`, that is the reason (the rule's text stays for reading).
    out.check(name, ref, report.fmt(stat), (None, rule[1].removesuffix(
        f": {compare.SPREAD}")) if why else rule,
              paper=f"{lo:g}–{hi:g}" if hi > lo else f"≈{lo:g}", why=why,
              level=True)

  if tickets.dense:
    in_range("dense test accuracy (%)", tickets.dense, dense["test_accuracy"])
  if tickets.holds_to:
    sparsest(f"tickets within {HOLD_POINTS} points of dense down to (% of "
             "weights)", tickets.holds_to,
             last_of(levels, lambda e: holds(levels, e)))
  sooner = "tickets stop early sooner than dense down to (% of weights)"
  if tickets.faster_to and "early_stop_step" in dense:
    sparsest(sooner, tickets.faster_to, last_of(levels, lambda e: e[
        "early_stop_step"]["mean"] < dense["early_stop_step"]["mean"]))
  elif tickets.faster_to:
    out.check(sooner, tickets.faster_to, "–", (None, "no early stop"),
              why="no early stop measured: it needs a validation split "
              "(data.validation_size > 0) evaluated before the last step "
              "(train.eval_every > 0)")
  if tickets.reinit_falls_from and "random_reinit" in last:
    x, falls = tickets.reinit_falls_from.value, falls_from(levels,
                                                           "random_reinit")
    rule = compare.at_least({"mean": pct(falls) if falls else 0.0}, x,
                            scale=1, unit="%", slack=x / 2)
    out.check(f"random reinit below dense (by > {HOLD_POINTS} points) from "
              "(% of weights)", tickets.reinit_falls_from, f"{pct(falls):.2f}%"
              if falls else f"never, down to {pct(last):.2f}%",
              (None, rule[1]) if falls is None and pct(last) >= x / 2 else
              rule, why=too_dense)
  if tickets.ticket_beats_dense:  # The level by validation, never test.
    best = max([e for e in levels[1:] if "validation_accuracy" in e],
               key=lambda e: e["validation_accuracy"]["mean"], default=None)
    gap = best and stats(np.subtract(best["test_accuracy"]["per_seed"],
                                     dense["test_accuracy"]["per_seed"]))
    out.check("ticket minus dense at the level of best validation accuracy "
              "(points)", tickets.ticket_beats_dense, f"{report.fmt(gap)} at "
              f"{pct(best):.2f}% of weights" if best else "–",
              compare.at_least(gap, 0.0, slack=HOLD_POINTS / 100),
              paper="≥ 0", why="no validation split (data.validation_size = 0)")
  for variant in ("ticket", "random_prune"):
    ref_range = getattr(tickets, f"{variant}_sparse")
    if ref_range and block(last, variant):
      in_range(f"{variant} test accuracy (%) {at_last}", ref_range,
               block(last, variant)["test_accuracy"],
               why="" if pct(last) <= tickets.sparse_at else
               f"the paper's {100 - tickets.sparse_at:g}% sparsity is beyond "
               "the sparsest level run")
  modes = modes_of(summary["pruning"])  # Controls, then Renda et al.'s order:
  # Paired (versus's default): a level's ticket and controls are runs of the
  # same seeds in seed order, each control's seed r on seed r's data order
  # and on ticket r's mask (random_reinit) or step-k weights (random_prune).
  pairs = [("ticket", v, "CONTROLS_FALL_OFF", None, "above")
           for v in CONTROLS if v in last] + [x for x in (
               ("rewind_lr", "rewind_weights", "RENDA_LR", not_below, "≥"),
               ("rewind_weights", "finetune", "RENDA_FT", None, ">"))
                                              if {x[0], x[1]} <= set(modes)]
  acc = lambda v: block(last, "ticket" if v == modes[0] else v)[
      "test_accuracy"]
  for a, b, ref, rule, sign in pairs:
    out.versus(f"{a} vs {b} {at_last}", getattr(papers, ref), acc(a),
               acc(b), (a, b), rule=rule, paper=f"{a} {sign} {b}")
  if dense_inst := summary.get("instability", {}).get("dense", []):
    out.check("dense instability (%) as the rewind step k grows",
              papers.DENSE_INSTABILITY_FALLS, " → ".join(
                  f"k={d['rewind_step']}: {report.fmt(d['instability'])}"
                  for d in dense_inst), compare.trend(
                      [d["instability"] for d in dense_inst],
                      increasing=False, what="instability", scale=100,
                      digits=2, paired=True),
              paper="falls", why="one rewind step k only")
  return out, tickets


def write(path, config, summary):
  levels, p, t = summary["levels"], summary["pruning"], config.train
  has_es, modes = "early_stop_step" in levels[0], modes_of(p)
  figures = []
  for field, what, scale, name in FIGURES[:1] + FIGURES[1:] * has_es:
    name = f"{name}_vs_sparsity.png"
    plot_vs_sparsity(levels, field, what, os.path.join(path, name), scale,
                     f"{config.model.name} on {config.data.name}")
    figures.append((f"{what} vs weights remaining", name))
  variants = ["ticket"] + [v for v in (*CONTROLS, *modes[1:])
                           if v in levels[-1]]
  rows = [[e["level"], f"{pct(e):.2f}%"] + [
      report.fmt(block(e, v)["test_accuracy"]) if block(e, v) else "–"
      for v in variants] + [report.fmt(e.get("early_stop_step"), 1, 0)] * has_es
          for e in levels]
  details = ["### Test accuracy (%)\n\n" + report.markdown_table(
      ["level", "weights remaining", *variants]
      + ["ticket early-stop step"] * has_es, rows)]
  if inst := summary.get("instability"):
    k = lambda d: f"{d['rewind_step']}" + (
        f" (ticket, {pct(d):.1f}%)" if "level" in d else "")
    runs = inst.get("dense", []) + inst.get("tickets", [])
    details.append("### Instability (linear mode connectivity)\n\n"
                   + report.table(runs, [
                       ("k", k), ("instability (%)", "instability"),
                       ("endpoint error (%)", "endpoint_error")]))
  found, tickets = comparisons(config, summary)
  how = (f"one-shot {p['method']} pruning to "
         f"{100 * p['one_shot_remaining']:.1f}% of the weights"
         if p.get("one_shot_remaining") else f"{p['method']} pruning of "
         f"{100 * p['fraction']:g}% of the remaining weights per level")
  # In words, not the summary's dict and list ({'output': 0.1}, ['output']).
  if p.get("layer_rates"):
    how += ", layer rates " + ", ".join(
        f"{name} {100 * rate:.3g}%" for name, rate in p["layer_rates"].items())
  if p.get("exclude"):
    how += ", kept dense: " + ", ".join(p["exclude"])
  how += "; retrain: " + " vs ".join(modes) + (
      f", rewind to step {p.get('rewind_step')}" * ("rewind_step" in p)
      + f", fine-tuning at lr {p.get('finetune_lr', 0):.3g}" * (
          "finetune_lr" in p))
  claims = [tickets.claim] * bool(config.get("reference")) + [
      f"{r.statement} ({r.source})." for r in (
          papers.RENDA_LR, papers.RENDA_FT)] * (len(modes) > 1)
  # 0: not measured (a level whose training ended in an attempt that was
  # killed before its result landed: the rerun trained no step of it).
  speeds = [e["steps_per_second"] for e in levels
            if e.get("steps_per_second")]
  speed = f" at {np.mean(speeds):.0f} steps/s on average" if speeds else ""
  report.write(
      path, config, summary, claim=" ".join(claims) or "None.",
      setup=f"{summary['parameters']['trainable']:,} trainable parameters; "
      f"{how}; {report.count(p['levels'], 'level')} of {t.steps} steps, batch "
      f"{t.batch_size}; a level's runs train in one program", figures=figures,
      comparisons=found, details=details, run=f"{len(levels)} levels{speed}.")
