"""Figures and report.md of a `width_sweep` run, from its workdir's files
(config.json, summary.json): `write` is the experiment's registered report.
The error-vs-width figure and number formatting are shared with
`double_descent`."""

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import matplotlib
import matplotlib.ticker  # pylint: disable=unused-import
from jaxunknowns.report.plots import plt  # pylint: disable=g-import-not-at-top
import numpy as np

from jaxunknowns import report

# Measures of one hidden layer (analysis/capacity.py), with their labels.
NORMS_U = (("u_dist_fro", r"$\|U-U_0\|_F$"), ("u_fro", r"$\|U\|_F$"),
           ("u0_fro", r"$\|U_0\|_F$"))
NORMS_V = (("v_fro", r"$\|V\|_F$"), ("v_dist_fro", r"$\|V-V_0\|_F$"))
SPECTRAL = (("u_spectral", r"$\|U\|_2$"), ("u0_spectral", r"$\|U_0\|_2$"),
            ("v_spectral", r"$\|V\|_2$"))
BOUNDS = (("bound_neyshabur2018", "Neyshabur et al. 2018"),
          ("bound_spectral", "spectral (Bartlett et al. 2017)"),
          ("bound_vc", "VC: √(#params / m)"))
# The paper's trend of each quantity with width (Neyshabur et al. 2018).
PAPER_TRENDS = (
    ("test_error", "test error", "falls"),
    ("u_dist_fro", "‖U − U₀‖_F", "falls"),
    ("u_fro", "‖U‖_F", "grows"),
    ("v_fro", "‖V‖_F", "–"),
    ("margin", "margin γ (5th percentile)", "–"),
    ("bound_neyshabur2018", "their bound", "falls"),
    ("bound_spectral", "spectral bound", "grows"),
    ("bound_vc", "parameter count (VC)", "grows"),
)


# -----------------------------------------------------------------------------
# Formatting
# -----------------------------------------------------------------------------
def ms(stat: Optional[Mapping[str, Any]], scale: float = 1.0,
       digits: Optional[int] = None) -> str:
  """'mean ± std' (3 significant digits unless `digits` is given); '–' if
  undefined."""
  if not stat or stat.get("mean") is None:
    return "–"
  m, s = stat["mean"] * scale, (stat.get("std") or 0.0) * scale
  if digits is None:
    return f"{m:.3g} ± {s:.2g}"
  return f"{m:.{digits}f} ± {s:.{digits}f}"


def measure(point: Mapping[str, Any], name: str) -> Optional[Mapping[str, Any]]:
  if name in ("train_error", "test_error", "train_loss", "test_loss"):
    return point.get(name)
  return point.get("capacity", {}).get(name)


def series(points: Sequence[Mapping[str, Any]], name: str):
  """(widths, means, stds) of one quantity, skipping undefined points."""
  xs, ms_, ss = [], [], []
  for q in points:
    s = measure(q, name)
    if s and s.get("mean") is not None:
      xs.append(q["width"])
      ms_.append(s["mean"])
      ss.append(s.get("std") or 0.0)
  return np.array(xs), np.array(ms_), np.array(ss)


def trend(points, name) -> Dict[str, Any]:
  """First and last defined values and a word for the direction."""
  xs, mean, _ = series(points, name)
  if len(xs) < 2:
    return {}
  ratio = mean[-1] / mean[0] if mean[0] else float("inf")
  diffs = np.diff(mean)
  if np.all(diffs <= 0):
    word = "falls (monotone)"
  elif np.all(diffs >= 0):
    word = "grows (monotone)"
  elif mean[-1] < mean[0]:
    word = "falls overall"
  else:
    word = "grows overall"
  return {"first_width": int(xs[0]), "last_width": int(xs[-1]),
          "first": float(mean[0]), "last": float(mean[-1]),
          "ratio": float(ratio), "word": word}


def _log2_axis(ax, widths):
  ax.set_xscale("log", base=2)
  ax.set_xticks(list(widths))
  ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
      lambda v, _: f"{int(v)}" if v >= 1 else f"{v:g}"))
  ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  ax.tick_params(axis="x", labelsize=7)
  ax.grid(alpha=0.3, which="both")


# -----------------------------------------------------------------------------
# Figures
# -----------------------------------------------------------------------------
def plot_errors(summary, path, title="", mark_interpolation=True):
  """Train (dashed) and test (solid) error vs width, one color per noise
  level, the interpolation width of each marked by a dotted line."""
  fig, ax = plt.subplots(figsize=(7.2, 4.4))
  for i, curve in enumerate(summary["curves"]):
    color = f"C{i}"
    p = curve["label_noise"]
    label = f"{100 * p:g}% label noise" if p else "clean labels"
    for name, style, what in (("test_error", "-", "test"),
                              ("train_error", "--", "train")):
      xs, mean, std = series(curve["points"], name)
      ax.errorbar(xs, 100 * mean, yerr=100 * std, color=color, linestyle=style,
                  marker="o" if what == "test" else ".", markersize=4,
                  capsize=2, label=f"{what}, {label}")
    h = curve.get("interpolation_width")
    if mark_interpolation and h is not None:
      ax.axvline(h, color=color, linestyle=":", alpha=0.8,
                 label=f"interpolation threshold, {label} (h={h})")
  _log2_axis(ax, summary["widths"])
  ax.set_xlabel(f"width h: {summary['width_means']}", fontsize=8)
  ax.set_ylabel("error (%)")
  ax.legend(fontsize=7)
  if title:
    ax.set_title(title, fontsize=10)
  fig.tight_layout()
  report.save_figure(fig, path)


def plot_capacity(points, widths, path, title="", h_star=None):
  """The measures vs width on log axes: one hidden layer (the paper's
  measures and bounds) or layer-wise (deeper / conv nets); the dotted line
  is the interpolation width h*."""
  one_hidden = any("u_dist_fro" in q.get("capacity", {}) for q in points)
  if one_hidden:
    panels = [("norms of U", NORMS_U), ("norms of V", NORMS_V),
              ("spectral norms", SPECTRAL),
              ("margin (5th percentile)", (("margin", r"$\gamma$"),)),
              ("bounds (up to constants)", BOUNDS),
              ("parameters", (("num_params", "#params"),))]
  else:
    layers = sorted({k.split("/")[0] for q in points
                     for k in q.get("capacity", {}) if k.endswith("/dist_fro")})
    panels = [("distance from init per layer",
               tuple((f"{l}/dist_fro", l) for l in layers)),
              ("Frobenius norm per layer",
               tuple((f"{l}/fro", l) for l in layers)),
              ("network", (("dist_fro", r"$\|\theta-\theta_0\|_F$"),
                           ("spectral_product", r"$\prod\|W_i\|_2$"))),
              ("margin (5th percentile)", (("margin", r"$\gamma$"),)),
              ("VC", (("bound_vc", "√(#params / m)"),))]
  cols = 3
  rows = -(-len(panels) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 3.2 * rows))
  axes = np.atleast_1d(axes).ravel()
  for ax, (panel, entries) in zip(axes, panels):
    for i, (name, label) in enumerate(entries):
      xs, mean, std = series(points, name)
      if len(xs) == 0:
        continue
      ax.errorbar(xs, mean, yerr=std, marker="o", markersize=3, capsize=2,
                  color=f"C{i}", label=label)
    _log2_axis(ax, widths)
    if h_star is not None:
      ax.axvline(h_star, color="gray", linestyle=":", alpha=0.8)
    if name != "margin":
      ax.set_yscale("log")
    ax.set_title(panel, fontsize=9)
    ax.set_xlabel("width h", fontsize=8)
    ax.legend(fontsize=7)
  for ax in axes[len(panels):]:
    ax.axis("off")
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  report.save_figure(fig, path, dpi=100)


# -----------------------------------------------------------------------------
# Tables
# -----------------------------------------------------------------------------
def sweep_table(points: Sequence[Mapping[str, Any]],
                with_capacity: bool = True) -> str:
  one_hidden = any("u_dist_fro" in q.get("capacity", {}) for q in points)
  header = ["width", "params", "steps", "train error (%)", "test error (%)"]
  names: List[str] = []
  if with_capacity and one_hidden:
    names = ["u_dist_fro", "u_fro", "v_fro", "u_spectral", "v_spectral",
             "margin", "bound_neyshabur2018", "bound_spectral"]
    header += ["‖U−U₀‖_F", "‖U‖_F", "‖V‖_F", "‖U‖₂", "‖V‖₂", "γ",
               "bound (ours)", "spectral bound"]
  elif with_capacity and any("capacity" in q for q in points):
    names = ["dist_fro", "spectral_product", "margin"]
    header += ["‖θ−θ₀‖_F", "∏‖W‖₂", "γ"]
  rows = []
  for q in points:
    row = [q["width"], f"{q['num_params']:,}", f"{q['steps']['mean']:.0f}",
           ms(q["train_error"], 100, 2), ms(q["test_error"], 100, 2)]
    row += [ms(measure(q, n)) for n in names]
    rows.append(row)
  return report.markdown_table(header, rows)


def _trend_cell(points, name) -> Optional[Dict[str, Any]]:
  """Our value of `name` at the first and the last width where it is
  defined (mean ± std over seeds), with trend()'s word for the direction."""
  t = trend(points, name)
  if not t:
    return None
  scale, digits = (100, 2) if name.endswith("error") else (1, None)
  by_width = {q["width"]: measure(q, name) for q in points}
  text = (f"{ms(by_width[t['first_width']], scale, digits)} "
          f"(h={t['first_width']}) → "
          f"{ms(by_width[t['last_width']], scale, digits)} "
          f"(h={t['last_width']}): {t['word']}")
  return {"text": text, "word": t["word"]}


def _past(curve):
  """The points from the interpolation width h* on ([] without an h*)."""
  h_star = curve.get("interpolation_width")
  return [q for q in curve["points"]
          if h_star is not None and q["width"] >= h_star]


def trend_rows(curve, with_paper: bool) -> List[List[str]]:
  """[label, paper's trend, ours over all widths, ours from h* on] of each
  quantity of PAPER_TRENDS whose paper trend is stated (with_paper) or not."""
  rows = []
  for name, label, paper in PAPER_TRENDS:
    if (paper != "–") != with_paper:
      continue
    every, past = _trend_cell(curve["points"], name), _trend_cell(
        _past(curve), name)
    if every is None:
      continue
    rows.append([label, paper, every["text"], past["text"] if past else "–"])
  return rows


def directions(curve) -> Tuple[List[str], List[str]]:
  """The quantities whose trend (from h* on where defined) has the paper's
  direction, and those whose trend does not."""
  agree, differ = [], []
  for name, label, paper in PAPER_TRENDS:
    if paper not in ("falls", "grows"):
      continue
    cell = _trend_cell(_past(curve), name) or _trend_cell(curve["points"], name)
    if cell:
      (agree if cell["word"].startswith(paper) else differ).append(label)
  return agree, differ


def _versus(config, summary) -> Tuple[List[str], List[List[str]]]:
  curves = summary["curves"]
  rows = []
  for curve in curves:
    tag = ("" if len(curves) == 1 else
           f"{100 * curve['label_noise']:g}% label noise: ")
    h = curve.get("interpolation_width")
    level = (f"≤ {100 * config.sweep.interpolation_error:g}%"
             if config.sweep.interpolation_error > 0 else "zero")
    every = _trend_cell(curve["points"], "train_error")
    rows.append([f"{tag}train error", "zero from small widths on",
                 (every["text"] if every else "–") + "; " +
                 (f"mean {level} from h* = {h} on" if h is not None else
                  f"mean not {level} at any width within the budget"),
                 f"mean {level} at every width" if h is not None else "–"])
    for label, paper, all_text, past_text in trend_rows(curve, True):
      if label == "test error":
        checks = summary.get("checks", {}).get(
            f"noise_{curve['label_noise']:g}", {})
        if "max_rise_past_interpolation" in checks:
          past_text += (
              f"; largest step up between neighbouring widths "
              f"{100 * checks['max_rise_past_interpolation']:+.2f} points ("
              + ("within" if checks["test_error_does_not_rise"] else "beyond")
              + " the 1-point tolerance for seed noise)")
      rows.append([tag + label, paper, all_text, past_text])
  h_stars = {c.get("interpolation_width") for c in curves}
  past_header = (f"ours, from h* = {h_stars.pop()} on" if len(h_stars) == 1
                 and None not in h_stars else "ours, from h* on")
  return (["quantity", "Neyshabur et al. 2018: with width",
           "ours, all widths (mean ± std over seeds)", past_header], rows)


def _checks_text(checks: Mapping[str, Any]) -> str:
  h = checks.get("interpolation_width")
  if h is None:
    lines = ["No width reached zero mean training error within the budget, "
             "so there is no interpolation width h* to measure from."]
  else:
    lines = [f"Mean training error is zero from width h* = {h} on."]
  if "max_rise_past_interpolation" in checks:
    lines.append(
        f"Past h*, test error goes from "
        f"{100 * checks['test_error_at_interpolation']:.2f}% to "
        f"{100 * checks['test_error_at_largest']:.2f}% at the largest width; "
        f"its largest rise between neighbouring widths is "
        f"{100 * checks['max_rise_past_interpolation']:+.2f} points "
        f"({'within' if checks['test_error_does_not_rise'] else 'beyond'} "
        f"the 1-point tolerance for seed noise).")
  for name, label in (("u_dist_fro", "‖U − U₀‖_F"),
                      ("bound_neyshabur2018", "Their bound")):
    for scope, where in (("all_widths", "over all widths"),
                         ("past_interpolation", "from h* on")):
      t = checks.get(name, {}).get(scope)
      if t:
        lines.append(
            f"{label} {where}: {t['first']:.3g} (h={t['widths'][0]}) → "
            f"{t['last']:.3g} (h={t['widths'][-1]}), ×{t['ratio'] or 0:.2g}"
            + (", falling monotonically" if t["monotone_decreasing"] else
               ", rising monotonically" if t["monotone_increasing"] else
               ", not monotone") + ".")
  return " ".join(lines)


def _test_error_verdict(curve, checks: Mapping[str, Any]) -> str:
  """Whether the paper's test error, falling with width, holds past h*:
  read from the experiment's check (no step up beyond the tolerance) and
  the trend from h* to the largest width."""
  tag = (f" with {100 * curve['label_noise']:g}% label noise"
         if curve["label_noise"] else "")
  if curve.get("interpolation_width") is None:
    return (f"Unlike the paper's networks, which fit their training sets from "
            f"small widths on, no width{tag} reaches zero mean training "
            f"error within the budget, so there is no "
            f"h*: the directions above are read over all widths, and test "
            f"error past h* is not measured.")
  if "max_rise_past_interpolation" not in checks:
    return (f"Test error past h*{tag} is not measured: fewer than two widths "
            "interpolate.")
  start = 100 * checks["test_error_at_interpolation"]
  end = 100 * checks["test_error_at_largest"]
  rise = 100 * checks["max_rise_past_interpolation"]
  numbers = (f"from {start:.2f}% at h* = {checks['interpolation_width']} to "
             f"{end:.2f}% at the largest width, largest step up {rise:+.2f} "
             "points")
  if not checks["test_error_does_not_rise"]:
    return (f"The paper's test error keeps falling with width; ours{tag} "
            f"rises past h* beyond the 1-point tolerance for seed noise "
            f"({numbers}): on this data the claim fails.")
  if end < start:
    return (f"Past h* our test error{tag} does not rise and ends lower "
            f"({numbers}), as in the paper.")
  return (f"Past h* our test error{tag} does not rise beyond the 1-point "
          f"tolerance for seed noise, but does not keep falling either "
          f"({numbers}).")


def _budget_note(config, summary) -> str:
  """How the stopping rule played out: steps at h* and at the largest width,
  and where the paper's monotone trends break in our run."""
  curve = summary["curves"][0]
  h = curve.get("interpolation_width")
  pts = {q["width"]: q for q in curve["points"]}
  notes = []
  if h is not None and config.sweep.stop_train_loss > 0:
    last = curve["points"][-1]
    # A width that trained the whole budget did not stop early: read as "not
    # met" (it could have met the rule exactly at the last step).
    capped = lambda q: q["steps"]["mean"] >= config.train.steps
    at_h = (f"is not met in {config.train.steps} steps at h* = {h} (zero "
            "training error, loss above the threshold)" if capped(pts[h])
            else f"is met after {pts[h]['steps']['mean']:.0f} steps at "
                 f"h* = {h}")
    at_last = (f"not met in {config.train.steps} at h = {last['width']}"
               if capped(last) else
               f"met after {last['steps']['mean']:.0f} at h = {last['width']}")
    notes.append(
        f"With SGD lr {config.optim.lr} the stopping rule (training loss ≤ "
        f"{config.sweep.stop_train_loss}) {at_h} and {at_last}; widths below "
        f"h* train the full {config.train.steps} steps without meeting it.")
  checks = summary.get("checks", {}).get(f"noise_{curve['label_noise']:g}", {})
  t = checks.get("u_dist_fro", {}).get("past_interpolation")
  if t and not t["monotone_decreasing"]:
    ys = [(w, measure(pts[w], "u_dist_fro")["mean"]) for w in t["widths"]]
    low = min(ys, key=lambda wy: wy[1])
    notes.append(
        f"‖U − U₀‖_F falls from h* to its minimum {low[1]:.3g} at h = "
        f"{low[0]} and rises after it (to {ys[-1][1]:.3g} at h = "
        f"{ys[-1][0]}), where the stopping rule ends training in the fewest "
        "steps; the paper's curve falls over all its widths.")
  return " ".join(notes)


def _differences(config, summary) -> str:
  parts = []
  for curve in summary["curves"]:
    tag = ("" if len(summary["curves"]) == 1 else
           f" ({100 * curve['label_noise']:g}% label noise)")
    agree, differ = directions(curve)
    if agree or differ:
      parts.append(
          f"Same direction as the paper{tag} (from h* on where defined): "
          + (", ".join(agree) or "none") + ". Different: "
          + (", ".join(differ) or "none") + ".")
    checks = summary.get("checks", {}).get(
        f"noise_{curve['label_noise']:g}", {})
    parts.append(_test_error_verdict(curve, checks))
  budget = _budget_note(config, summary)
  if budget:
    parts.append(budget)
  points = [q for c in summary["curves"] for q in c["points"]]
  if (any("capacity" in q for q in points) and
      not any("u_dist_fro" in q["capacity"] for q in points
              if "capacity" in q)):
    parts.append(
        "The paper's norms and bounds are those of one hidden layer "
        f"(f(x) = V[Ux]_+); this run's `{config.model.name}`"
        + (f" with {summary['depth']} hidden layers"
           if config.model.name == "mlp" else "")
        + " has no such U and V, so of the paper's trends only test error "
        "and the parameter count are compared, and its own measures (per "
        "layer and of the whole network) are in the capacity figure and "
        "Details.")
  parts.append(
      "The paper's numbers are for CIFAR-10, SVHN and MNIST (50–70K "
      "examples, widths up to 2^15), ours for "
      f"`{config.data.name}` with {summary['train_examples']:,} "
      "training examples: the width where training error reaches zero and "
      "the absolute values of every norm and bound depend on the data and "
      "the initialization (Flax's LeCun-normal, std 1/√fan_in, so "
      "‖U₀‖_F grows like √h), and the bounds are stated up to constants and "
      "log factors, so only their trends with width are comparable. Our "
      "networks have biases (left out of the norms); the paper's analysed "
      "f(x) = V[Ux]_+ has none.")
  return " ".join(parts)


BOUND_NOTE = (
    "### Bound used\n\nanalysis/capacity.py: √c ‖V‖_F (‖U − U₀‖_F + ‖U₀‖₂) "
    "‖X‖_F / (γ m) + √(h/m), Theorem 1 of Neyshabur et al. 2018 with "
    "‖U₀X‖_F ≤ ‖U₀‖₂‖X‖_F, constants and logs dropped; γ is the 5th "
    "percentile of the training margins; undefined (–) where γ ≤ 0.")


def _config_text(config, summary) -> str:
  # The noise levels are read from the summary's curves (as double_descent
  # does): a command-line override may leave the config's a bare number.
  noisy = [c["label_noise"] for c in summary["curves"]]
  noise = ("" if not any(noisy) else
           "label noise " + ", ".join(f"{100 * p:g}%" for p in noisy)
           + " (each training label replaced with probability p by a "
           "uniformly random class); ")
  return (
      f"`{config.model.name}` ({summary['width_means']}) on "
      f"`{config.data.name}`, widths {', '.join(map(str, summary['widths']))}; "
      + noise +
      f"{config.optim.name} lr {config.optim.lr}"
      + (f" momentum {config.optim.momentum}"
         if config.optim.name in ("momentum", "nesterov") else "")
      + f", batch {config.train.batch_size}, no weight decay, no dropout; "
      + (f"each width trains until every seed's training loss is ≤ "
         f"{config.sweep.stop_train_loss} (checked every "
         f"{config.sweep.check_every} steps) or {config.train.steps} steps"
         if config.sweep.stop_train_loss > 0 else
         f"{config.train.steps} steps per width")
      + f"; {len(summary['seeds'])} seeds per width, trained at once.")


def stages_run_line(summary) -> str:
  """report.run_line with the summed time of the stages (kept in each
  stage's result.json: the whole run's, even when an invocation resumed it)."""
  return report.run_line(
      summary, f"{summary['stages_wall_time_s']:.0f} s of training and "
      "measuring over all stages (each stage's own time, summed: the whole "
      "run's even where this invocation resumed it).")


def write(path, config, summary):
  """report.md, errors_vs_width.png and the capacity figures from the
  workdir's config.json and summary.json (the registered report)."""
  title = (f"{config.model.name} on {config.data.name}: error and capacity "
           f"vs width")
  plot_errors(summary, os.path.join(path, "errors_vs_width.png"), title=title)
  # No '*' in captions (as in h*): the page sets them in *italics*.
  figures = [("Train (dashed) and test (solid) error vs width, mean ± std "
              "over seeds; dotted: the interpolation width (the smallest "
              "width with zero training error)", "errors_vs_width.png")]
  details = []
  for curve in summary["curves"]:
    p = curve["label_noise"]
    tag = "" if len(summary["curves"]) == 1 else f" ({100 * p:g}% label noise)"
    suffix = "" if curve is summary["curves"][0] else f"_noise_{p:g}"
    if any("capacity" in q for q in curve["points"]):
      fig = f"capacity_vs_width{suffix}.png"
      plot_capacity(curve["points"], summary["widths"], os.path.join(path, fig),
                    title=f"capacity measures{tag} (dotted: h*, the smallest "
                    "width with zero training error)",
                    h_star=curve.get("interpolation_width"))
      figures.append((f"Capacity measures vs width{tag}, mean ± std over "
                      "seeds, log axes; dotted: the interpolation width", fig))
    details.append(f"### Numbers{tag} (mean ± std over seeds)\n\n"
                   + sweep_table(curve["points"]))
    others = trend_rows(curve, False)
    if others:
      details.append(
          f"### Measures the paper gives no trend for{tag}\n\n"
          + report.markdown_table(
              ["quantity", "Neyshabur et al. 2018: with width",
               "ours, all widths", "ours, from h* on"], others))
    checks = summary.get("checks", {}).get(f"noise_{p:g}")
    if checks:
      details.append(f"### What this run shows{tag}\n\n"
                     + _checks_text(checks))
  details.append(BOUND_NOTE)
  reference = config.get("reference")
  report.write_page(path, report.Page(
      title=f"width_sweep: {config.model.name} on {config.data.name}",
      claim=(reference.claim if reference is not None else
             "Neyshabur et al. 2015, 2018: test error keeps falling with "
             "width past the width that fits the training set."),
      config=_config_text(config, summary),
      figures=figures,
      versus=_versus(config, summary),
      differences=_differences(config, summary),
      details=details,
      run=stages_run_line(summary)))
