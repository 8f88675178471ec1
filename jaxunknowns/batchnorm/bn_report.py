"""report.md and figures of every BatchNorm experiment, from summary.json."""

import os

import numpy as np

from jaxunknowns import optim, report
from jaxunknowns.batchnorm import bn_batch_size, bn_grid, bn_stability, papers
from jaxunknowns.batchnorm.bn_modes import describe_model, model_size
from jaxunknowns.metrics import stats
from jaxunknowns.report import compare, fmt
from jaxunknowns.report.text import std_of


def page(path, config, summary, comparisons, figures, details, *, setup,
         run="", steps=None):
  """report.md; the claim: papers.py's findings that the comparisons cite."""
  comparisons = comparisons(summary, config, {
      "model": config.model.name, "data": config.data.name,
      "optimizer": config.optim.name,
      "steps": steps or summary.get("steps") or config.train.steps})
  refs = [r for v in vars(papers).values() for r in (
      v.values() if isinstance(v, dict) else [v]) if isinstance(
          r, report.Reference) and r.source in {c.source for c in comparisons}]
  report.write(path, config, summary, references=refs, setup="the same "
               f"initial weights and batches in every arm or cell; {setup}",
               figures=figures, comparisons=comparisons, details=details,
               run=run)


def versus(rows, ours):
  """Rows (quantity, ref, paper, (a, name), (b, name)[, tolerance[, scale]])
  of arms trained on the same seeds: a above b beyond the per-seed
  differences' spread, or within `tolerance` of b (a paper's {mean})."""
  def one(quantity, ref, paper, a, b, tolerance=None, scale=100.0):
    within = {"rule": compare.within, "tolerance": tolerance} if tolerance else {}
    return compare.versus(quantity, ref, a[0], b[0], (a[1], b[1]),
                          scale=scale, digits=2 if scale > 1 else 0,
                          paper=paper, our_protocol=ours, **within)
  return [one(*row) for row in rows
          if row[3][0] and row[4][0] and row[3][0] is not row[4][0]]


def trend(quantity, ref, paper, stats_, ours):
  """A rise over a grid of arms on the same seeds, judged by the spread of
  the per-seed changes (`compare.trend`, paired), not by its means' every
  step."""
  return compare.comparison(
      quantity, ref, " → ".join(f"{100 * s['mean']:.2f}" for s in stats_),
      *compare.trend(stats_, increasing=True, what="accuracy", scale=100,
                     digits=2, paired=True), paper=paper, our_protocol=ours)


def accuracy_figure(cells, x, path):
  """Test (solid) and train (dashed) accuracy vs `x`, mean ± std."""
  series = {}
  for q in cells:
    key = ", ".join(f"{k}={v}" for k, v in q["cell"].items() if k != x)
    series.setdefault(key, []).append(q)
  with report.figure(path) as (ax,):
    for i, (key, pts) in enumerate(series.items()):
      for metric, style in (("test_accuracy", "-"), ("train_accuracy", "--")):
        if pts[0].get(metric):
          report.errorbars(ax, [q["cell"][x] for q in pts],
                           [q[metric] for q in pts], 100, color=f"C{i}",
                           linestyle=style, marker="o",
                           label=f"{key} ({metric[:-9]})")
    ax.set(xlabel=x, ylabel="accuracy (%)",
           **({"xscale": "log"} if "batch" in x else {}))


def per_seed(values, missing: str) -> str:
  """A per-seed list as text, `missing` where a seed has no value (never
  reached the target: ∞; never diverged: –)."""
  return ", ".join(missing if v is None else f"{v:g}" for v in values)


def table(cells, keys) -> str:
  """Each cell's labels, then its `keys` (statistics in %, mean ± std;
  per-seed steps to the target with ∞ for a seed that never reached it)."""
  def cell(value):
    if isinstance(value, dict):
      return fmt(value)
    return per_seed(value, "∞") if isinstance(value, list) else value
  return report.markdown_table(list(cells[0]["cell"]) + list(keys), [
      list(q["cell"].values()) + [cell(q.get(k, "–")) for k in keys]
      for q in cells])


# ---- The grids: the cells of a grid train the same seeds. ----
def batch_size(summary, config, ours):
  sizes = config.grid.batch_sizes
  s, t = min(sizes), bn_batch_size.typical_batch(sizes)
  def at(norm, b, name):
    return bn_grid.stat(summary["cells"], "test_accuracy", norm=norm,
                        batch_size=b), name
  return versus([
      (f"{n} norm test accuracy (%), batch {t} vs {s}", papers.BN_SMALL_BATCH,
       paper, at(n, t, f"batch {t}"), at(n, s, f"batch {s}"), tolerance)
      for n, paper, tolerance in (("batch", "BN falls", None),
                                  ("group", "GN stable", 0.01))] + [
          (f"GN vs BN test accuracy (%) at batch {b}", ref, paper,
           at("group", b, "GN"), at("batch", b, "BN"), tolerance)
          for b, ref, paper, tolerance in (
              (s, papers.GN_MINUS_BN_AT_2, "GN above BN", None),
              (t, papers.GN_LIKE_BN, "comparable", 0.02))], ours)


def placement(summary, config, ours):
  def at(norm, name, metric="test_accuracy"):
    return bn_grid.stat(summary["cells"], metric, norm=norm,
                        position="before"), name
  def steps(norm, name):  # No mean unless every seed reached the target.
    q = at(norm, name, "steps_to_target")[0]
    return q and (stats(q) if None not in q else {"per_seed": q}), name
  return [compare.comparison(
      f"{norm} norm after minus before the ReLU, test accuracy (points)",
      papers.PLACEMENT, fmt(r["after_minus_before_test_accuracy"]), None,
      "–", paper="before", why_not_testable="no other placement in the "
      "paper") for norm, r in summary["readings"].items()] + versus([
          (f"steps to {100 * summary['target_accuracy']:g}% test (all "
           "seeds), no norm vs BN before the ReLU", papers.SPEEDUP,
           "more without BN", steps("none", "no norm"),
           steps("batch", "BN"), None, 1.0),
          ("final test accuracy (%), BN before the ReLU vs no norm",
           papers.SPEEDUP, "BN above", at("batch", "BN"),
           at("none", "no norm"))], ours)


def regularization(summary, config, ours):
  g = config.grid
  (d0, d1), (w0, w1) = ((min(v), max(v)) for v in (g.dropouts, g.weight_decays))
  def at(metric, name, norm, d, w):  # named by what its row varies
    return (bn_grid.stat(summary["cells"], metric, norm=norm, dropout=d,
                         weight_decay=w), name)
  bare, drop, decay = f"{d0:g}, wd {w0:g}", f"dropout {d1:g}", f"wd {w1:g}"
  return versus([
      (f"train − test gap (points), no norm vs BN (dropout {bare})",
       papers.REGULARIZES, "smaller with BN",
       at("gap", "no norm", "none", d0, w0), at("gap", "BN", "batch", d0, w0)),
      (f"BN test accuracy (%) without vs with {drop} (wd {w0:g})",
       papers.VARIANCE_SHIFT, "lower with dropout",
       at("test_accuracy", f"dropout {d0:g}", "batch", d0, w0),
       at("test_accuracy", drop, "batch", d1, w0)),
      (f"BN train − test gap (points) with vs without {decay} (dropout "
       f"{d0:g})", papers.DECAY_WITH_BN, "unchanged by decay",
       at("gap", decay, "batch", d0, w1),
       at("gap", f"wd {w0:g}", "batch", d0, w0), 0.01)],
                # What the run decayed (optim.decay_on): by default every
                # parameter (the output layer, γ and β too), not only the
                # kernels BN follows, which van Laarhoven's claim is about.
                {**ours, "decay on": optim.decay_on_words(config.optim)})


def write_grid(path, config, summary):
  """accuracy_vs_X.png and report.md; X, the grid's second axis, names it."""
  cells, g, x = summary["cells"], config.grid, summary["axes"][1]["label"]
  accuracy_figure(cells, x, os.path.join(path, f"accuracy_vs_{x}.png"))
  budget = (f"lr at batch {g.reference_batch_size}, {g.lr_rule} scaling "
            "(Goyal et al. 2017); the same number of "
            f"{'examples' if g.epochs > 0 else 'steps'} in every cell"
            if "lr_rule" in g else
            f"batch {config.train.batch_size}, {cells[0]['steps']} steps")
  axes = " × ".join(f"{a['label']} {report.listing(a['values'])}"
                    for a in summary["axes"])
  keys = [k for k in ("test_accuracy", "train_accuracy", "gap", "steps", "lr",
                      "steps_to_target") if k in cells[0]]
  on = config.optim.get("decay_on", "all")
  if on != "all":  # said only where set (validation refuses it unused)
    budget += (f"; weight decay on {optim.decay_on_words(config.optim)}"
               + " (none in a cell without a norm)" * (
                   on == "normalized"))
  page(path, config, summary, {"batch_size": batch_size, "position": placement,
                               "dropout": regularization}[x],
       [("Accuracy per cell", f"accuracy_vs_{x}.png")],
       ["### Every cell" + (" (steps to target: per seed; ∞: never reached)"
                            if "steps_to_target" in keys else "") + "\n\n"
        + table(cells, keys)], steps=cells[0]["steps"],
       setup=f"cells {axes}; {budget}; accuracies in eval mode")


# ---- bn_only: the arms of a depth train the same seeds. ----
def bn_only(summary, config, ours):
  points, at = summary["points"], papers.BN_ONLY_AT_DEPTH
  if "bn" not in summary["arms"]:
    return []
  def acc(p, arm="bn"):
    return p["arms"][arm]["test_accuracy"]
  out = [compare.versus(
      f"BN-only test accuracy (%), ResNet-{p['depth']} width {p['width']}",
      at[p["depth"]], acc(p), {"mean": at[p["depth"]].value / 100},
      ("ours", "paper"), rule=compare.within, tolerance=0.02,
      our_protocol=ours, level=True) for p in points if p["depth"] in at]
  for width in summary["widths"]:
    pts = sorted((p for p in points if p["width"] == width),
                 key=lambda p: p["depth"])
    out.append(trend(f"BN-only vs depth (width {width})", papers.BN_ONLY_DEPTH,
                     "rises", [acc(p) for p in pts], ours))
    pairs = [(p, a) for p in pts for a in ("random2", "output")
             if a in summary["arms"]]
    if pairs:  # The closest control over depths decides.
      p, a = min(pairs, key=lambda t: acc(t[0])["mean"] - acc(*t)["mean"])
      out += versus([(f"BN-only vs the closest control, {a} at ResNet-"
                      f"{p['depth']} (width {width})", papers.BN_ONLY_CONTROLS,
                      "far above", (acc(p), "BN-only"), (acc(p, a), a))], {
                          **ours, "random weights per channel":
                          config.bn_only.per_channel})
  deepest = max(points, key=lambda p: (p["depth"], p["width"]))
  g = deepest["arms"]["bn"]["gamma_near_zero"]
  (low, low_rule), (high, high_rule) = (compare.at_least(g, 0.25),
                                        compare.at_most(g, 1 / 3))
  return out + [compare.comparison(
      f"γ below {summary['gamma_threshold']:g} in magnitude (%), "
      f"ResNet-{deepest['depth']}", papers.GAMMA_OFF, fmt(g), low and high,
      f"{low_rule}; {high_rule}", paper="25–33", our_protocol=ours,
      level=True)]  # a level of the paper's data and training, as accuracy


def write_only(path, config, summary):
  s = summary
  cells = [{"cell": {"arm": a, "width": p["width"], "depth": p["depth"]},
            **p["arms"][a]} for a in s["arms"] for p in s["points"]]
  accuracy_figure(cells, "depth", os.path.join(path, "accuracy_vs_depth.png"))
  page(path, config, s, bn_only,
       [("Test and train accuracy vs ResNet depth per arm",
         "accuracy_vs_depth.png")],
       [f"### Every arm (γ near zero: below {s['gamma_threshold']:g} in "
        "magnitude)\n\n" + table(cells, (
            "trainable", "test_accuracy", "train_accuracy", "gamma_near_zero",
            "gamma_near_zero_init", "frozen_max_change"))],
       setup=(f"input {tuple(s['input_shape'])}, {s['test_examples']} test "
              f"examples, batch {config.train.batch_size}, {s['steps']} steps"))


# ---- bn_modes: every mode evaluates each seed's trained weights. ----
def bn_modes(summary, config, ours):
  m = summary["modes"]
  sizes = sorted(int(k[6:]) for k in m if k.startswith("batch_"))
  return versus([
      (f"test accuracy (%): running vs batch statistics at eval batch "
       f"{sizes[0]}", papers.INFERENCE_MODE, "batch statistics below",
       (m["running"], "running"), (m[f"batch_{sizes[0]}"], "batch")),
      ("test accuracy (%) after fine-tuning: updated vs stale running "
       "statistics", papers.INFERENCE_MODE, "stale below",
       (m["fresh_finetune"], "updated"), (m["stale_finetune"], "stale")),
      ("test accuracy (%) on shifted inputs: statistics re-estimated on them "
       "vs the training ones", papers.ADABN, "re-estimated above",
       (m["shift_recalibrated"], "re-estimated"),
       (m["shift_stale"], "training"))], ours) + [trend(
           # The sizes as text, not Python's list ('[1, 2, 8]').
           f"batch statistics: accuracy vs eval batch "
           f"{', '.join(map(str, sizes))}",
           papers.INFERENCE_MODE, "rises towards running statistics",
           [m[f"batch_{b}"] for b in sizes], ours)]


def write_modes(path, config, summary):
  s, m, modes = summary, config.bn_modes, summary["modes"]
  # Batch statistics use whole batches only (bn_eval.batch_stat_logits): a
  # size that does not divide the test set leaves its last examples out.
  n = s["test_examples"]
  whole = {b: n - n % b for b in m.eval_batch_sizes if n % b}
  accuracy_figure([{"cell": {"statistics": k, "eval_batch": int(b[6:])},
                    "test_accuracy": modes[b if k == "batch" else k]}
                   for k in ("batch", "running") for b in modes
                   if b.startswith("batch_")], "eval_batch",
                  os.path.join(path, "batch_size_eval.png"))
  # The network as built (config.json): its depth and width only where
  # its builder reads them ('mlp-8 of width 4' named an MLP of widths 16).
  net = describe_model(s["model"], model_size(config.model))
  page(path, config, s, bn_modes,
       [("Test accuracy vs eval batch size", "batch_size_eval.png")],
       ["### Test accuracy (%) by inference mode\n\n" + report.markdown_table(
           ["mode", "accuracy", "the bug it corresponds to"],
           [[k, fmt(v), s["bugs"][k]] for k, v in modes.items()])],
       setup=(f"{net} at input "
              f"{tuple(s['input_shape'])}, batch {config.train.batch_size}, "
              f"{s['steps']} steps, then {s['finetune_steps']} more; shifted "
              f"inputs {m.shift_scale:g}·x + {m.shift:g}, statistics "
              f"re-estimated on {m.recalibrate_batches} batches of them; "
              f"{n} test examples" + "".join(
                  f", batch {b} on the first {k} (whole batches)"
                  for b, k in whole.items())))


# ---- bn_smoothness: arms train the same seeds, probed on one batch. ----
MEASURES = {"loss_range": "loss variation", "beta": "β-smoothness",
            "gpred_max": "gradient predictiveness (largest change)"}


def smoothness(summary, config, ours):
  """Per seed, the median over steps > 0 of BN / no BN of each measure."""
  arms = summary["arms"]
  if "batch" not in arms or "none" not in arms:
    return []
  def ratio(quantity, ref, group, key, rule, paper):
    a, b = arms["batch"][group][key], arms["none"][group][key]
    later = [t for t in a if t in b and int(t) > 0]
    r = stats(np.median([np.divide(a[t]["per_seed"], b[t]["per_seed"])
                         for t in later], axis=0))
    lower = sum(a[t]["mean"] < b[t]["mean"] for t in later)
    return compare.comparison(
        f"{quantity}: BN / no BN, median over steps", ref,
        f"{fmt(r, 1.0, 3)}; BN lower at {lower} of {len(later)}",
        *rule(r), paper=paper, our_protocol=ours)
  # Smoother with BN: a direction, below 1 by more than the seeds' spread.
  # ICS no lower with BN: at least 1, below it by at most the spread open.
  smoother = lambda r: compare.beyond(r, 1.0, below=True, scale=1.0)
  no_lower = lambda r: compare.at_least(r, 1.0, scale=1.0, spread=2 * std_of(r))
  final = {a: (v["final"]["test"]["accuracy"], a) for a, v in arms.items()}
  return [ratio(MEASURES[k], ref, "smoothness", k, smoother, "below 1")
          for k, ref in papers.SMOOTHER.items()] + [
              ratio(f"ICS ‖G − G′‖ of {layer}", papers.ICS, "ics",
                    f"l2_{layer}", no_lower, "not below 1")
              for layer in arms["batch"]["layers"][1:]] + versus([
                  ("final test accuracy (%), BN vs no BN",
                   papers.BN_TRAINS_BETTER, "BN above", final["batch"],
                   final["none"]),
                  ("final test accuracy (%), noisy BN vs BN", papers.NOISY_BN,
                   "almost as well", final.get("noisy_batch", (None, "")),
                   final["batch"], 0.01)], {**ours, "noise": NOISE_PER[
                       config.model.get("noise_per", "batch")]})


# What our noisy BN's draws (layers.DistributionNoise) cover, by
# model.noise_per: the "example" words are Santurkar et al.'s protocol's.
NOISE_PER = {"batch": "one draw per activation and step, shared by the batch",
             "example": "i.i.d. per example and activation"}


def smoothness_figures(path, arms):
  """landscape.png (Fig. 4) and ics.png (Fig. 3): mean ± std over seeds;
  returns the (caption, file) of each figure drawn (no ics.png without ICS:
  smoothness.ics=False measures no layer)."""
  layers = next(iter(arms.values()))["layers"]
  drawn = []
  for name, group, panels, caption in (
      ("landscape", "smoothness", {"loss": "probe loss L(θ)", **MEASURES},
       "Loss landscape along the gradient (Fig. 4)"),
      ("ics", "ics", {f"{kind}_{layer}": f"{layer}: {kind}"
                      for kind in ("l2", "cos") for layer in layers},
       "ICS per layer: ‖G − G′‖ (l2), cos(G, G′) (Fig. 3)")):
    if not panels:  # A figure of no panels crashed report.figure.
      continue
    drawn.append((caption, f"{name}.png"))
    with report.figure(os.path.join(path, f"{name}.png"), len(panels),
                       (3.6, 3.6)) as axes:
      for ax, (key, title) in zip(axes, panels.items()):
        for arm, a in arms.items():
          by_step = a[group][key]
          seeds = len(next(iter(by_step.values()))["per_seed"])
          report.plot_band(ax, {i: {int(t): v["per_seed"][i] for t, v in
                                    by_step.items()} for i in range(seeds)},
                           arm)
        ax.set(title=title, xlabel="step",
               yscale="log" if name == "landscape" else "linear")
  return drawn


def write_smoothness(path, config, summary):
  arms, t, m = summary["arms"], config.train, config.model
  noise = (f"; noisy BN: shift N(0, {m.noise_mean_std:g}²), log scale N(0, "
           f"{m.noise_scale_std:g}²), {NOISE_PER[m.get('noise_per', 'batch')]}"
           if "noisy_batch" in arms else "")
  page(path, config, summary, smoothness, smoothness_figures(path, arms), [],
       setup=(f"batch {t.batch_size}, {t.steps} steps; every "
              f"{config.smoothness.every} steps on a fixed probe batch of "
              f"{summary['probe_size']} examples in train mode, η ∈ "
              f"{report.listing(summary['step_sizes'])}{noise}"),
       run="Per arm: " + ", ".join(f"{a} {v['wall_time_s']:.0f} s"
                                   for a, v in arms.items()) + ".")


# ---- bn_stability: lr × init scale cells per norm, on the same seeds. ----
def stability(summary, ours):
  """Rows (quantity, reference, paper, a, b, digits, scale): a above b per
  seed beyond the differences' spread (paired_greater)."""
  r, gap, budget = summary["readings"], summary.get("gaps"), summary["steps"] + 1
  if not {"batch", "none"} <= set(r):
    return []
  def at(norm, key):  # A seed that never reached the target counts budget + 1.
    s = r[norm][key]
    return (stats([budget if v is None else v for v in s["per_seed"]])
            if key.startswith("steps") else s), {"batch": "BN",
                                                 "none": "no norm"}[norm]
  def paired(quantity, ref, paper, a, b, digits=1, scale=1.0):
    return compare.versus(quantity, ref, a[0], b[0], (a[1], b[1]),
                          scale=scale, digits=digits, paper=paper,
                          our_protocol=ours)
  n, steps = len(summary["init_scales"]), "steps_to_target_at_best_lr"
  rows = [(f"init scales with a trainable cell (of {n})",
           papers.LESS_CAREFUL_INIT, "more with BN",
           at("batch", "region_init_scales"), at("none", "region_init_scales")),
          (f"learning rates with a trainable cell (of {len(summary['lrs'])})",
           papers.LARGER_LR, "more with BN", at("batch", "region_lrs"),
           at("none", "region_lrs")),
          ("largest trainable lr at init scale 1", papers.HIGHER_LR,
           "higher with BN", at("batch", "max_trainable_lr"),
           at("none", "max_trainable_lr"), 3),
          (f"steps to {100 * summary['target_accuracy']:g}% training accuracy,"
           f" each at its best lr (never: {budget})", papers.ACCELERATES,
           "fewer with BN", at("none", steps), at("batch", steps), 0)]
  if gap:
    small = f"lr {gap['smallest_lr']:g}"
    rows.append((f"BN − no norm test accuracy (points): each at its best lr "
                 f"vs both at {small}", papers.SMALL_LR_GAP, "smaller at a "
                 "small lr", (gap["at_best_lrs"], "best lrs"),
                 (gap["at_smallest_lr"], small), 2, 100.0))
  return [paired(*row) for row in rows]


def stability_figures(path, summary):
  """heatmaps.png: mean test accuracy and steps to target per (lr, init scale),
  a column per norm, one colour scale per row; ×k: k seeds diverged, ∞: a seed
  never reached the target. region.png: the trainable region's size per norm."""
  lrs, scales, r = summary["lrs"], summary["init_scales"], summary["readings"]
  fig, axes = report.subplots(2, len(r), squeeze=False, layout=(
      "constrained"), figsize=(2.6 * len(r) + 1, 6))
  for row, (key, scale, vmax, label) in enumerate((
      ("test_accuracy", 100, 100, "test accuracy (%)"),
      ("steps_to_target", 1, summary["steps"],
       f"steps to {summary['target_accuracy']:g}"))):
    for ax, norm in zip(axes[row], r):
      by = {(q["cell"]["lr"], q["cell"]["init_scale"]): q
            for q in bn_grid.find(summary["cells"], norm=norm)}
      grid = np.array([[np.nan if by[lr, s][key]["mean"] is None else scale
                        * by[lr, s][key]["mean"] for s in scales] for lr in lrs])
      im = ax.imshow(grid, origin="lower", aspect="auto", vmin=0, vmax=vmax)
      for (i, lr), (j, s) in ((a, b) for a in enumerate(lrs)
                              for b in enumerate(scales)):
        d = sum(v is not None for v in by[lr, s]["diverged_at"])
        ax.text(j, i, f"×{d}" if d else "∞" if np.isnan(grid[i, j]) else
                f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=6,
                color="red" if d else "k", bbox={"fc": "w", "alpha": 0.6,
                                                 "lw": 0, "pad": 1})
      ax.set(xticks=range(len(scales)), xticklabels=[f"{s:g}" for s in scales],
             yticks=range(len(lrs)), yticklabels=[f"{v:g}" for v in lrs],
             xlabel="init scale", title=norm)
    axes[row, 0].set_ylabel("learning rate")
    fig.colorbar(im, ax=list(axes[row]), label=label)
  report.save_figure(fig, os.path.join(path, "heatmaps.png"))
  with report.figure(os.path.join(path, "region.png")) as (ax,):
    for k, key in enumerate(("region_cells", "region_lrs",
                             "region_init_scales")):
      report.errorbars(ax, [i + 0.2 * (k - 1) for i in range(len(r))],
                       [v[key] for v in r.values()], fmt="o",
                       label=key.replace("_", " "))
    ax.set(xticks=range(len(r)), xticklabels=list(r), ylabel="trainable "
           f"(within {100 * summary['region_tolerance']:g} points of best)")


def with_trainable_lr(summary):
  """The summary, its readings holding max_trainable_lr: one written before
  that reading gets it from its own cells (committed runs rebuild, not
  rerun)."""
  def reading(norm, r):
    if "max_trainable_lr" in r:
      return r
    return {**r, "max_trainable_lr": bn_stability.max_trainable_lr(
        bn_grid.find(summary["cells"], norm=norm), summary["lrs"],
        summary["init_scales"], summary["region_tolerance"])}
  return {**summary, "readings": {n: reading(n, r) for n, r in
                                  summary["readings"].items()}}


def write_stability(path, config, summary):
  keys = ("region_cells", "region_lrs", "region_init_scales", "max_stable_lr",
          "max_trainable_lr", "steps_to_target_at_best_lr")
  s = with_trainable_lr(summary)
  stability_figures(path, s)
  refs = [papers.LESS_CAREFUL_INIT, papers.ACCELERATES, papers.HIGHER_LR,
          papers.LARGER_LR, papers.SMALL_LR_GAP]
  cells = [[*q["cell"].values(), fmt(q["test_accuracy"]),
            fmt(q["validation_accuracy"]), per_seed(q["diverged_at"], "–"),
            per_seed(q["steps_to_target"]["per_seed"], "∞")]
           for q in s["cells"]]
  report.write_page(path, report.Page(
      title=f"bn_stability: {s['model']} on {s['dataset']}",
      claim=report.claim(refs), comparisons=stability(s, {
          "model": s["model"], "data": s["dataset"], "steps": s["steps"],
          "optimizer": config.optim.name}),
      config=(f"`{s['model']}` on `{s['dataset']}` ({s['train_examples']:,} "
              f"examples), {config.optim.name} {config.optim.momentum:g}, "
              f"batch {config.train.batch_size}, {s['steps']} steps, "
              f"{report.count(len(s['seeds']), 'seed')}; lrs "
              f"{report.listing(s['lrs'])} × init scales "
              f"{report.listing(s['init_scales'])} (of every kernel) × norms "
              f"{report.listing(s['readings'])}, a program per norm. "
              "Trainable: never diverged (NaN/Inf loss), test accuracy within "
              f"{100 * s['region_tolerance']:g} points of the seed's best for "
              "the norm. Max stable lr: the largest never diverging at init "
              "scale 1, where a loss that blew up and settled at chance "
              "counts as stable; max trainable lr: the largest trainable. "
              "Best lr: by validation accuracy at init scale 1. "
              f"Steps to target: the first {config.train.log_every}-step "
              "chunk whose mean minibatch accuracy reaches it."),
      figures=[("Mean test accuracy and steps to target per (lr, init "
                "scale); ×k: k seeds diverged, ∞: a seed never reached the "
                "target", "heatmaps.png"),
               ("Trainable region per norm", "region.png")],
      details=["### Per norm" + (" (max stable lr 0: every lr of the grid "
                                 "diverged)") * any(
          0.0 in v["max_stable_lr"]["per_seed"] for v in s["readings"].values())
               + "\n\n" + report.markdown_table(
          ["norm", "best lr", *(k.replace("_", " ") for k in keys)],
          # An lr keeps 3 significant digits (0.003 is not "0.00").
          [[n, v["best_lr"], *(fmt(v[k], 1, 3, sig=True) if k.startswith(
              "max_") else fmt(v[k], 1, 2) for k in keys)]
           for n, v in s["readings"].items()]),
               "### Every cell (diverged at, steps to target: per seed; –: "
               "never diverged, ∞: never reached)\n\n" + report.markdown_table(
                   ["norm", "lr", "init scale", "test acc (%)",
                    "validation acc (%)", "diverged at", "steps to target"],
                   cells)],
      run=report.run_line(s, "Per norm: " + ", ".join(
          f"{n} {p['wall_time_s']:.0f} s ({p['runs']} runs)"
          for n, p in s["programs"].items()) + ".")), config)
