"""report.md and the figure of a `double_descent` run, by its mode: error
vs width (double_descent.png), over training (over_training.png) or vs the
training-set size (over_samples.png)."""

import math
import os

from jaxunknowns import report
from jaxunknowns.overparam import papers
from jaxunknowns.overparam import width_sweep_report as wsr
from jaxunknowns.overparam.double_descent import (PEAK_MIN_GAP, PEAK_WINDOW,
                                                  read_curves)
from jaxunknowns.report import compare

# The notebook's "≈" values: ours agrees within 3 points (plus 2 seed std).
LEVEL_TOLERANCE = 0.03


def recorded_steps(summary) -> int:
  """How many steps mode 'epoch' recorded the errors at (every point of
  every curve records the same steps)."""
  return len(summary["curves"][0]["points"][0]["over_training"]["steps"])


def our_protocol(config, summary, levels=None):
  """papers.our_protocol with the sweep's label noise: its levels (`levels`:
  those the rows read, else every level of the sweep) and how a noisy label
  is drawn (data.transforms.label_noise: any class)."""
  return papers.our_protocol(
      config, summary["train_examples"], **{
          "label noise": ", ".join(f"{100 * p:g}%" for p in (
              config.sweep.label_noise if levels is None else levels)),
          "noisy labels": papers.ANY_CLASS})


def _level(quantity, reference, point, ours):
  """Our test error at `point` beside the reference's value."""
  return compare.comparison(
      quantity, reference, f"{report.fmt(point['test_error'])} at h = "
      f"{point['width']}" if point else "–", *compare.within(
          point and point["test_error"], {"mean": reference.value / 100},
          a_name="ours", b_name="notebook", tolerance=LEVEL_TOLERANCE),
      our_protocol=ours, why_not_testable="no width of this grid", level=True)


def _peak(quantity, reference, curve, expected, paper, ours):
  """Whether the curve shows a peak (double_descent.find_peak) as expected:
  not testable on fewer than 3 widths (no interior point), nor a peak
  expected near h* on a grid that never interpolates."""
  peak, h = curve.get("peak"), curve.get("interpolation_width")
  if len(curve["points"]) < 3 or (expected and not h):
    return compare.comparison(
        quantity, reference, f"h = {peak['width']}" if peak else "none",
        None, "", paper=paper, our_protocol=ours, why_not_testable=(
            "fewer than 3 widths: no interior point" if len(curve["points"])
            < 3 else "no width of this grid interpolates (no h*)"))
  rule = "no interior local maximum" if not peak else (
      f"+{100 * peak['gap_to_best_smaller']:.2f} / "
      f"+{100 * peak['gap_to_best_larger']:.2f} points above h = "
      f"{peak['best_smaller']['width']} / {peak['best_larger']['width']}, "
      + (f"{peak['octaves_from_interpolation']:+.1f} octaves from h* = {h}"
         if h else "no h*") + f" (a peak: both ≥ {100 * PEAK_MIN_GAP:g}, "
      f"within {math.log2(PEAK_WINDOW):g} octaves)")
  return compare.comparison(
      quantity, reference, f"h = {peak['width']}" if peak else "none",
      bool(peak and peak["shows_peak"]) == expected, rule, paper=paper,
      our_protocol=ours)


def comparisons(config, summary):
  ours = our_protocol(config, summary)
  out = []
  for c in [c for c in summary["curves"] if c["label_noise"] > 0][:1]:
    tag, points = f"{100 * c['label_noise']:g}% noise: ", c["points"]
    small = [q for q in points if 8 <= q["width"] <= 16]
    out += [_level(tag + "best test error at h = 8–16 (%)",
                   papers.NOTEBOOK_SMALL, small and min(
                       small, key=lambda q: q["test_error"]["mean"]), ours),
            _level(tag + "highest test error (%)", papers.NOTEBOOK_PEAK,
                   c.get("peak"), ours),
            _peak(tag + "a peak near h*", papers.NOTEBOOK_PEAK, c, True,
                  "a peak near h* (h = 47 and 61, h* = 61)", ours),
            # The notebook's is h = 300: ours within an octave of it (a
            # grid ending at h = 16 has no width to compare).
            _level(tag + "test error at the largest width (%)",
                   papers.NOTEBOOK_LARGE, points[-1] if 150 <=
                   points[-1]["width"] <= 600 else None, ours)]
  return out + [_peak("clean labels: a peak near h*", papers.NOTEBOOK_CLEAN, c,
                      False, "no clear peak", ours)
                for c in summary["curves"] if c["label_noise"] == 0][:1]


def epoch_comparisons(config, summary):
  """The smallest width, the interpolating one (h*, else the widest) and the
  widest: no rise; early stopping wins; a second descent (module doc). Read
  from the seeds' curves (double_descent.read_curves), not from readings a
  summary may hold (older runs stored those of an earlier reader)."""
  c, gap = summary["curves"][0], PEAK_MIN_GAP
  points, h = c["points"], c.get("interpolation_width")
  at = {q["width"]: read_curves(q["over_training"]) for q in points}
  ours = our_protocol(config, summary, [c["label_noise"]])  # the curve read
  rows = [(points[0]["width"], "rise", compare.at_most,
           papers.NAKKIRAN_EPOCH_SMALL, "no rise"),
          (h or points[-1]["width"], "early_stopping_gain", compare.at_least,
           papers.NAKKIRAN_EPOCH_MEDIUM, "final above best"),
          (points[-1]["width"], "second_descent", compare.at_least,
           papers.NAKKIRAN_EPOCH_LARGE, "rise and fall")]
  label = {"rise": "largest rise above an earlier minimum after the first "
                   "descent",
           "early_stopping_gain": "final − best test error",
           "second_descent": "second descent: a rise and the fall after it, "
                             "the smaller of the two"}
  return [compare.comparison(
      f"h = {w}{' (h*)' * (w == h)}: {label[key]} (points)", ref,
      report.fmt(at[w][key]), *rule(at[w][key], gap), paper=paper,
      our_protocol=ours) for w, key, rule, ref, paper in rows]


def size_peak(curve):
  """The n of the highest interior local maximum of mean test error vs n."""
  e = [q["test_error"]["mean"] for q in curve["points"]]
  inner = [i for i in range(1, len(e) - 1) if e[i - 1] <= e[i] >= e[i + 1]]
  return (curve["points"][max(inner, key=e.__getitem__)]["train_size"]
          if inner else None)


def sample_comparisons(config, summary):
  """The largest rise of test error between consecutive sizes (paired over
  seeds), and where each width's test error peaks."""
  ours = our_protocol(config, summary)
  err = lambda q: q["test_error"]
  rises = [(err(b)["mean"] - err(a)["mean"], c["width"], a, b)
           for c in summary["curves"]
           for a, b in zip(c["points"], c["points"][1:])]
  _, w, a, b = max(rises, key=lambda r: r[0])
  peaks = [n for n in map(size_peak, summary["curves"]) if n is not None]
  return [compare.versus(
      f"h = {w}: test error (%) at n = {b['train_size']} vs n = "
      f"{a['train_size']} (the largest rise)", papers.NAKKIRAN_SAMPLE,
      err(b), err(a), (f"n={b['train_size']}", f"n={a['train_size']}"),
      paper="more data hurts", our_protocol=ours),
          compare.comparison(
              "n of the test-error peak vs width", papers.NAKKIRAN_SAMPLE_SHIFT,
              ", ".join(f"h = {c['width']}: {size_peak(c) or 'no peak'}"
                        for c in summary["curves"]), *compare.monotone(
                  peaks, increasing=True, what="the peak's n"),
              paper="grows with width", our_protocol=ours,
              why_not_testable="fewer than two widths peak inside the sizes")]


def plot_modes(path, summary, x):
  """Test (solid) and train (dashed) error per width against the step
  ("epoch") or the training-set size ("sample"), mean ± std over seeds."""
  if x == "step":  # (width, xs, {key: [R][len(xs)]})
    series = [(q["width"], q["over_training"]["steps"], {
        k: q["over_training"][k]["per_seed"] for k in ("test_error",
                                                       "train_error")})
              for q in summary["curves"][0]["points"]]
  else:
    series = [(c["width"], [q["train_size"] for q in c["points"]], {
        k: list(zip(*[q[k]["per_seed"] for q in c["points"]]))
        for k in ("test_error", "train_error")}) for c in summary["curves"]]
  figure = {"step": "over_training.png", "n": "over_samples.png"}[x]
  with report.figure(os.path.join(path, figure), size=(7, 4.4)) as (ax,):
    for i, (w, xs, per_seed) in enumerate(series):
      for key, style in (("test_error", "-"), ("train_error", "--")):
        report.plot_band(ax, per_seed[key], f"h = {w}" if style == "-"
                         else None, 100, xs, color=f"C{i}", linestyle=style)
    ax.set(xscale="log", xlabel={"step": "step", "n": "training examples n"}[x],
           ylabel="error (%): test solid, train dashed")
  return figure


READING = (
    "\n\nEach seed's test-error curve is read after its first descent ended "
    "(the first recorded step at least half way down from the first recorded "
    "error to the curve's lowest; before it, a rise is a wobble near the "
    "initial error and the fall after it the first descent): the largest "
    "rise is its error's largest rise above an earlier minimum; its second "
    "descent the largest s such that the error rises by s above an earlier "
    "minimum and then falls by s; early stopping's gain final minus best.")


def write_mode(path, config, summary, mode):
  epoch, d = mode == "epoch", config.double_descent
  ms = lambda s: wsr.ms(s, 100, 2, False)
  if epoch:
    refs = (papers.NAKKIRAN_EPOCH_SMALL, papers.NAKKIRAN_EPOCH_MEDIUM,
            papers.NAKKIRAN_EPOCH_LARGE)
    table = report.markdown_table(
        ["width", "final train error (%)", "final test error (%)",
         "largest rise (points)", "second descent (points)",
         "early stopping gain (points)"],
        [[q["width"], ms(q["train_error"]), ms(q["test_error"])] + [
            ms(read_curves(q["over_training"])[k]) for k in (
                "rise", "second_descent", "early_stopping_gain")]
         for q in summary["curves"][0]["points"]])
  else:
    refs = (papers.NAKKIRAN_SAMPLE, papers.NAKKIRAN_SAMPLE_SHIFT)
    table = report.markdown_table(
        ["width", *(f"n = {n}" for n in summary["train_sizes"])],
        [[c["width"], *(f"{ms(q['test_error'])} ({ms(q['train_error'])})"
                        for q in c["points"])] for c in summary["curves"]])
  wsr.write_page(path, config, summary, refs, (
      f"{summary['width_means']}: {', '.join(map(str, summary['widths']))}; "
      "label noise " + ", ".join(f"{100 * p:g}%"
                                 for p in config.sweep.label_noise)
      + f"; {config.train.steps} steps per stage; " + (
          # The steps recorded, not record_points: log_spaced_steps keeps
          # chunk boundaries, so 40 asked over 10000 steps give 25.
          f"train and test error at {recorded_steps(summary)} log-spaced steps"
          if epoch else "training sets: the first n of one noisy set, n ∈ "
          f"{report.listing(d.train_sizes)}")), figures=[(
              "Error against the "
              f"{'step' if epoch else 'training-set size'}, per width",
              plot_modes(path, summary, "step" if epoch else "n"))],
      comparisons=(epoch_comparisons if epoch else sample_comparisons)(
          config, summary),
      details=[f"### Every width (test error{'' if epoch else ' (train error)'}"
               f", %: mean ± std over "
               f"{report.count(len(summary['seeds']), 'seed')})\n\n" + table
               + (READING if epoch else "")])


def write(path, config, summary):
  mode = summary.get("mode", "model")
  if mode != "model":
    return write_mode(path, config, summary, mode)
  wsr.write_sweep(path, config, summary, "double_descent.png", (
      papers.NOTEBOOK_SMALL, papers.NOTEBOOK_PEAK, papers.NOTEBOOK_LARGE,
      papers.NOTEBOOK_CLEAN), comparisons(config, summary))
