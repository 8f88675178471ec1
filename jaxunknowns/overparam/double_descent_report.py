"""report.md and double_descent.png of a `double_descent` run."""

import math

from jaxunknowns import report
from jaxunknowns.overparam import papers
from jaxunknowns.overparam import width_sweep_report as wsr
from jaxunknowns.overparam.double_descent import PEAK_MIN_GAP, PEAK_WINDOW
from jaxunknowns.report import compare

# The notebook's "≈" values: ours agrees within 3 points (plus 2 seed std).
LEVEL_TOLERANCE = 0.03


def _level(quantity, reference, point, ours):
  """Our test error at `point` beside the reference's value."""
  return compare.comparison(
      quantity, reference, f"{report.fmt(point['test_error'])} at h = "
      f"{point['width']}" if point else "–", *compare.within(
          point and point["test_error"], {"mean": reference.value / 100},
          a_name="ours", b_name="notebook", tolerance=LEVEL_TOLERANCE),
      our_protocol=ours, why_not_testable="no width of this grid")


def _peak(quantity, reference, curve, expected, paper, ours):
  """Whether the curve shows a peak (double_descent.find_peak) as expected."""
  peak, h = curve.get("peak"), curve.get("interpolation_width")
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
  ours = papers.our_protocol(config, summary["train_examples"])
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
                  "a peak just below h*", ours),
            _level(tag + "test error at the largest width (%)",
                   papers.NOTEBOOK_LARGE, points[-1], ours)]
  return out + [_peak("clean labels: a peak near h*", papers.NOTEBOOK_CLEAN, c,
                      False, "no clear peak", ours)
                for c in summary["curves"] if c["label_noise"] == 0][:1]


def write(path, config, summary):
  wsr.write_sweep(path, config, summary, "double_descent.png", (
      papers.NOTEBOOK_SMALL, papers.NOTEBOOK_PEAK, papers.NOTEBOOK_LARGE,
      papers.NOTEBOOK_CLEAN), comparisons(config, summary))
