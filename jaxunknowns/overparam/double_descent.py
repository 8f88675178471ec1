"""`double_descent`: model-wise double descent (Nakkiran et al. 2019; the
MNIST-1D authors' notebook).

What runs: the width sweep of `width_sweep` (same stages, same resumable
folders stages/noise_P/width_HHHHH), by default an MLP 40-h-h-10 on MNIST-1D
trained for a fixed budget (`sweep.stop_train_loss` = 0: every width gets the
same number of steps, as in the paper), once with 15% label noise and once
without. What it adds is the reading of the curves:

* the interpolation threshold of each curve: the smallest width from which
  the mean training error (on the noisy labels the network is fitted to) is
  at most `sweep.interpolation_error`;
* the test-error peak: the highest interior local maximum of the mean test
  error within two octaves of the threshold (else the highest interior local
  maximum anywhere), and how far it stands above the best smaller width and
  the best larger width.
"""

import math
from typing import Any, Dict, Mapping, Optional

from jaxunknowns import experiments
from jaxunknowns.overparam import width_sweep

# How far (a factor in width) from the interpolation threshold a test-error
# peak may lie and still count as "near" it.
PEAK_WINDOW = 4.0
# A peak "shows" when it stands this far above the best smaller and the best
# larger width (the brief's done-when criterion: 3 points).
PEAK_MIN_GAP = 0.03


def find_peak(curve: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
  """The test-error peak of one curve (see the module docstring), or None
  when the curve has no interior local maximum."""
  points = curve["points"]
  widths = [q["width"] for q in points]
  errs = [q["test_error"]["mean"] for q in points]
  maxima = [i for i in range(1, len(points) - 1)
            if errs[i] >= errs[i - 1] and errs[i] >= errs[i + 1]]
  if not maxima:
    return None
  h_star = curve.get("interpolation_width")
  near = [i for i in maxima if h_star is not None and
          h_star / PEAK_WINDOW <= widths[i] <= h_star * PEAK_WINDOW]
  i = max(near or maxima, key=lambda j: errs[j])
  smaller = min(range(i), key=lambda j: errs[j])
  larger = min(range(i + 1, len(points)), key=lambda j: errs[j])
  gap_smaller, gap_larger = errs[i] - errs[smaller], errs[i] - errs[larger]
  return {
      "width": widths[i], "test_error": points[i]["test_error"],
      "train_error": points[i]["train_error"],
      "near_interpolation": bool(near),
      "octaves_from_interpolation": (math.log2(widths[i] / h_star)
                                     if h_star else None),
      "best_smaller": {"width": widths[smaller],
                       "test_error": points[smaller]["test_error"]},
      "best_larger": {"width": widths[larger],
                      "test_error": points[larger]["test_error"]},
      "gap_to_best_smaller": gap_smaller, "gap_to_best_larger": gap_larger,
      "shows_peak": bool(near) and min(gap_smaller, gap_larger) >= PEAK_MIN_GAP,
  }


def run(config, workdir):
  summary = width_sweep.run_sweep(config, workdir, "double_descent")
  summary["interpolation_error"] = config.sweep.interpolation_error
  for curve in summary["curves"]:
    curve["peak"] = find_peak(curve)
  experiments.finish("double_descent", workdir, config, summary)
  return summary


experiments.register(
    "double_descent", validate=width_sweep.validate,
    report="jaxunknowns.overparam.double_descent_report:write")(run)
