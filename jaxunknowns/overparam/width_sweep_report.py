"""report.md and figures of a `width_sweep` run; `write_sweep` also writes
`double_descent`'s; `randomization` shares `ms`, `plot_panels`, `write_page`."""

import os

from jaxunknowns import report
from jaxunknowns.overparam import papers
from jaxunknowns.report import compare
from jaxunknowns.report import text

ONE_HIDDEN = (("u_dist_fro", "‖U−U₀‖_F"), ("u_fro", "‖U‖_F"), ("margin", "γ"),
              ("v_fro", "‖V‖_F"), ("u_spectral", "‖U‖₂"),
              ("v_spectral", "‖V‖₂"), ("bound_neyshabur2018", "their bound"),
              ("bound_spectral", "spectral bound"))
NETWORK = (("dist_fro", "‖θ−θ₀‖_F"), ("spectral_product", "∏‖W‖₂"),
           ("margin", "γ"), ("bound_vc", "√(#params / m)"))
LABELS = dict(ONE_HIDDEN + NETWORK + (("num_params", "#params"),))
# The paper's trends: measure -> grows with width.
TRENDS = {"test_error": False, "u_dist_fro": False, "u_fro": True,
          "bound_neyshabur2018": False, "bound_spectral": True,
          "bound_vc": True}


def ms(stat, scale=1.0, digits=3, sig=True) -> str:  # The tables state n.
  return text.fmt(stat, scale, digits, sig=sig, n=False)


def value(point, name):  # A capacity measure, or a stat of the point.
  return point.get("capacity", {}).get(name, point.get(name))


def series(points, name, scale=1.0):
  """(widths, means, sample stds) where the quantity is a defined stat."""
  rows = [(q["width"], scale * s["mean"], scale * text.std_of(s)) for q in points
          for s in [value(q, name)] if isinstance(s, dict)
          and s.get("mean") is not None]
  return tuple(list(c) for c in zip(*rows)) if rows else ([], [], [])


def plot_panels(panels, path, title, xlabel="width h", log2=True):
  """One axis per panel (name, log_y, lines, marks): each line (xs, means,
  stds, label, fmt, color) with error bars over seeds; each mark (x, color)
  a dotted vertical line (an interpolation width)."""
  with report.figure(path, len(panels), (7.2, 4.4) if len(panels) == 1 else
                     (3.3, 2.7), title, min(len(panels), 4), 100) as axes:
    for ax, (name, log_y, lines, marks) in zip(axes, panels):
      for xs, mean, std, label, fmt, color in lines:
        ax.errorbar(xs, mean, yerr=std, fmt=fmt, color=color, markersize=3,
                    capsize=2, label=label)
      for x, color in marks:
        ax.axvline(x, color=color, linestyle=":")
      if log2:
        ax.set_xscale("log", base=2)
      ax.set(yscale="log" if log_y else "linear", title=name, xlabel=xlabel)


def _ends(points, name, *spec) -> str:
  """Ours at the first and the last width where defined."""
  q = [q for q in points if (value(q, name) or {}).get("mean") is not None]
  return (f"{ms(value(q[0], name), *spec)} → "
          f"{ms(value(q[-1], name), *spec)} (h = {q[0]['width']} → "
          f"{q[-1]['width']}, n={len(value(q[0], name)['per_seed'])})"
          if q else "–")


def comparisons(config, summary):
  stop, level = config.sweep.stop_train_loss, config.sweep.interpolation_error
  ours = papers.our_protocol(config, summary["train_examples"], stop=(
      f"train loss {stop:g}" if stop > 0 else "fixed budget"))
  out = []
  for c in summary["curves"]:
    p, h, points = c["label_noise"], c.get("interpolation_width"), c["points"]
    tag = f"{100 * p:g}% label noise: " if p else ""
    past = [q for q in points if h is not None and q["width"] >= h]
    out.append(compare.comparison(
        f"{tag}train error ≤ {100 * level:g}% (interpolation width h*)",
        papers.NEYSHABUR_ERRORS, f"h* = {h}" if h else "not reached",
        h is not None, f"mean train error ≤ {100 * level:g}% from h = {h} on"
        if h else "above it at every width", paper="from small widths",
        our_protocol=ours))
    for name, grows in TRENDS.items():
      test = name == "test_error"  # Past h* only: the paper's nets all fit.
      scope, where = ((past, "from h* on") if len(past) > 1 or test else
                      (points, "all widths"))
      reference = (papers.NEYSHABUR_MEASURES if not test else
                   papers.NEYSHABUR_NOISE if p else papers.NEYSHABUR_ERRORS)
      out.append(compare.comparison(
          f"{tag}{LABELS.get(name, 'test error (%)')} ({where})", reference,
          _ends(scope, name, *((100, 2, False) if test else ())),
          # Every width trains the same seeds: each change is judged by
          # its per-seed changes' spread, not by a fixed allowance.
          *compare.trend([value(q, name) for q in scope], increasing=grows,
                         what=LABELS.get(name, "test error (%)"),
                         **({"scale": 100, "digits": 2} if test else
                            {"digits": 3, "sig": True}), paired=True),
          paper="grows" if grows else "falls", our_protocol=ours,
          why_not_testable="fewer than two widths fit" if test else
          _unmeasured(points, name)))
  return out


# The bounds capacity.two_layer leaves undefined where the margin γ ≤ 0.
MARGIN_BOUNDS = ("bound_neyshabur2018", "bound_spectral")


def _unmeasured(points, name) -> str:
  """Why a capacity measure has fewer than two widths to judge a trend by."""
  if not any("capacity" in q for q in points):
    return "capacity measures off (sweep.capacity = False)"
  if all(value(q, name) is None for q in points):
    return "not defined here: the measure is of a one-hidden-layer network"
  # A stat whose mean is None: a margin bound where γ ≤ 0 (the protocol's
  # differences from the paper's do not say why a row is undecided).
  if name in MARGIN_BOUNDS:
    return ("defined at fewer than two widths: a margin bound is undefined "
            "where the margin γ ≤ 0 (over 5% of the training set "
            "misclassified)")
  return "fewer than two widths measured"


def write_page(path, config, summary, references, trained, **page):
  """report.md: the experiment page around what was `trained`, with the
  stages' summed training time."""
  report.write(path, config, summary, references=references,
               setup=f"batch {config.train.batch_size}; {trained}",
               run=f"{summary['stages_wall_time_s']:.0f} s of training, the "
               "stages' own times summed.", **page)


def write_sweep(path, config, summary, figure, references, comparisons):
  """The page of a width sweep (`width_sweep`, `double_descent`): errors vs
  width, capacity measures where measured, every width of every curve."""
  title, stop = (f"{config.model.name} on {config.data.name}",
                 config.sweep.stop_train_loss)
  lines, marks, tables = [], [], []
  figures = [("Train (dashed), test (solid) error; dotted: h", figure)]
  for i, c in enumerate(summary["curves"]):
    p, h, points = c["label_noise"], c.get("interpolation_width"), c["points"]
    tag = f"{100 * p:g}% label noise"
    lines += [(*series(points, name, 100), f"{name[:-6]}, {tag}", fmt, f"C{i}")
              for name, fmt in (("test_error", "-o"), ("train_error", "--."))]
    marks += [(h, f"C{i}")] if h else []
    panels = [(label, name != "margin", [(*series(points, name), "", "-o",
                                          "C0")], [(h, "gray")] if h else [])
              for name, label in LABELS.items() if series(points, name)[0]]
    if panels:
      name = "capacity_vs_width" + (f"_noise_{p:g}" if i else "") + ".png"
      plot_panels(panels, os.path.join(path, name), f"capacity, {tag}")
      figures.append((f"Capacity measures, {tag}; dotted: h", name))
    names = [(n, l) for n, l in (ONE_HIDDEN if any(
        value(q, "u_dist_fro") for q in points) else NETWORK)
             if any(value(q, n) for q in points)]
    tables.append(f"### Every width, {tag}: h* = {h or 'not reached'} (mean ± "
                  f"std over {report.count(len(summary['seeds']), 'seed')})\n\n"
                  + report.markdown_table(
                      ["width", "params", "steps", "train error (%)",
                       "test error (%)"] + [l for _, l in names],
                      [[q["width"], f"{q['num_params']:,}",
                        f"{q['steps']['mean']:.0f}",
                        ms(q["train_error"], 100, 2, False),
                        ms(q["test_error"], 100, 2, False)]
                       + [ms(value(q, n)) for n, _ in names] for q in points]))
  plot_panels([("error (%)", False, lines, marks)], os.path.join(path, figure),
              title, xlabel=f"width h: {summary['width_means']}")
  write_page(path, config, summary, references, (
      f"{summary['width_means']}: {', '.join(map(str, summary['widths']))}; "
      "label noise " + ", ".join(f"{100 * c['label_noise']:g}%"
                                 for c in summary["curves"])
      + f"; {config.train.steps} steps per width" + (
          f", or until every seed's training loss is ≤ {stop} (checked every "
          f"{config.sweep.check_every})" if stop else "")),
      figures=figures, comparisons=comparisons, details=tables)


def write(path, config, summary):
  write_sweep(path, config, summary, "errors_vs_width.png",
              (papers.NEYSHABUR_ERRORS, papers.NEYSHABUR_MEASURES),
              comparisons(config, summary))
