"""Figures and report.md of a `double_descent` run, from its workdir's files
(config.json, summary.json): `write` is the experiment's registered report."""

import os
from typing import Any, List, Mapping, Optional

from jaxunknowns import report
from jaxunknowns.overparam import width_sweep_report as wsr
from jaxunknowns.overparam.double_descent import PEAK_MIN_GAP

# The MNIST-1D authors' double-descent notebook (MLP 40-h-h-10, SGD 0.01,
# momentum 0.9, batch 100, 500 epochs, 15% label noise), as quoted in the
# project brief.
PAPER = {"best_small": 0.49, "best_small_widths": "h ≈ 9–16",
         "peak": 0.54, "peak_width": 47, "interpolation_width": 61,
         "large": 0.455, "large_width": 300}


NOTEBOOK_EPOCHS = 500


def _pct(stat: Optional[Mapping[str, Any]]) -> str:
  return wsr.ms(stat, 100, 2) if stat else "–"


def _at(curve, lo, hi):
  """The lowest mean test error among widths in [lo, hi], with its width."""
  pts = [q for q in curve["points"] if lo <= q["width"] <= hi]
  if not pts:
    return None
  q = min(pts, key=lambda q: q["test_error"]["mean"])
  return q


def _largest(curve):
  return curve["points"][-1]


def comparison(summary) -> str:
  curves = {c["label_noise"]: c for c in summary["curves"]}
  header = ["", "MNIST-1D notebook (15% noise, 500 epochs)"] + [
      (f"ours, {100 * p:g}% noise" if p else "ours, clean labels")
      for p in curves]
  rows = []

  def cells(fn):
    return [fn(c) for c in curves.values()]

  def small(c):
    q = _at(c, 8, 16)
    return f"{_pct(q['test_error'])} (h={q['width']})" if q else "–"

  def peak(c):
    pk = c.get("peak")
    if not pk:
      return "no interior local maximum"
    return f"{_pct(pk['test_error'])} at h={pk['width']}"

  def gaps(c):
    pk = c.get("peak")
    if not pk:
      return "–"
    return (f"+{100 * pk['gap_to_best_smaller']:.2f} (vs h="
            f"{pk['best_smaller']['width']}) / "
            f"+{100 * pk['gap_to_best_larger']:.2f} (vs h="
            f"{pk['best_larger']['width']})")

  def threshold(c):
    h = c.get("interpolation_width")
    return f"h = {h}" if h is not None else "not reached"

  def large(c):
    q = _largest(c)
    return f"{_pct(q['test_error'])} (h={q['width']})"

  rows.append(["best test error, h ≈ 8–16",
               f"≈{100 * PAPER['best_small']:.0f}% ({PAPER['best_small_widths']})"]
              + cells(small))
  rows.append(["test-error peak", f"≈{100 * PAPER['peak']:.0f}% at h ≈ "
               f"{PAPER['peak_width']}"] + cells(peak))
  rows.append(["peak above best smaller / larger width (points)",
               "≈ +5 / +8.5"] + cells(gaps))
  rows.append(["interpolation threshold (train error ≤ "
               f"{100 * summary['interpolation_error']:g}%)",
               f"train error 0 at h ≈ {PAPER['interpolation_width']}"]
              + cells(threshold))
  rows.append(["test error at the largest width",
               f"{100 * PAPER['large']:.1f}% (h={PAPER['large_width']})"]
              + cells(large))
  return report.markdown_table(header, rows)


def _notebook_model(config) -> bool:
  """Whether this run sweeps the notebook's MLP 40-h-h-10, so that its
  widths h are the notebook's."""
  return config.model.name == "mlp" and config.sweep.depth == 2


def _short_budget(curve, same_model: bool = True) -> str:
  """What a budget shorter than the notebook's does to a noisy curve, each
  effect stated only where our numbers show it; the small networks are
  compared at the notebook's widths only when `same_model`."""
  h, pk = curve.get("interpolation_width"), curve.get("peak")
  largest = _largest(curve)["width"]
  # Not reached on a grid that ends before the notebook's threshold says
  # nothing about where ours is.
  right = (h > PAPER["interpolation_width"] if h is not None else
           largest >= PAPER["interpolation_width"])
  lower = pk is not None and pk["test_error"]["mean"] < PAPER["peak"]
  right_text = ("Shorter training fits the noisy labels only at larger "
                "widths, so the threshold moves right")
  lower_text = ("memorized less of the noise, so the peak is lower and "
                "flatter: the peak's height grows with training time "
                "(epoch-wise double descent, Nakkiran et al. 2019).")
  if right and lower:
    text = f"{right_text}, and the networks just below it have {lower_text}"
  elif right:
    text = f"{right_text}."
  elif lower:
    text = ("With shorter training the networks near the threshold have "
            + lower_text)
  elif h is None and largest < PAPER["interpolation_width"]:
    text = (f"Our grid ends at h = {largest}, below the notebook's threshold "
            f"(h ≈ {PAPER['interpolation_width']}), so this run does not "
            "show where the shorter training puts ours"
            + ("; nor is our peak lower." if pk else "."))
  else:
    text = ("Despite the shorter training, neither is our threshold to the "
            "right of the notebook's nor our peak lower.")
  small = _at(curve, 8, 16) if same_model else None
  if small:
    err = 100 * small["test_error"]["mean"]
    text += (f" Our small networks, less overtrained, test better than the "
             f"notebook's ({err:.1f}% at h = {small['width']} against ≈49% at "
             "h ≈ 9–16)." if err < 100 * PAPER["best_small"] else
             f" Our small networks test at {err:.1f}% (h = {small['width']}) "
             "against the notebook's ≈49% at h ≈ 9–16.")
  return text


def _differences(config, summary) -> str:
  """Where our curves sit against the notebook's numbers, and why."""
  epochs = config.train.steps * config.train.batch_size / summary[
      "train_examples"]
  noisy = [c for c in summary["curves"] if c["label_noise"] > 0]
  clean = [c for c in summary["curves"] if c["label_noise"] == 0]
  parts = []
  if not _notebook_model(config):
    parts.append(f"The notebook's numbers are for the MLP 40-h-h-10; this run "
                 f"sweeps `{config.model.name}`, so only the shape of the "
                 "curves is comparable.")
  parts.append(f"We train {config.train.steps} steps ({epochs:.0f} epochs) per "
               "width against the notebook's 500 epochs.")
  if noisy:
    c = noisy[0]
    pk, h = c.get("peak"), c.get("interpolation_width")
    noise = f"{100 * c['label_noise']:g}%"
    if pk:
      parts.append(
          f"With {noise} noise our peak is at h = {pk['width']} "
          f"({100 * pk['test_error']['mean']:.1f}%; notebook ≈ 54% at "
          f"h ≈ 47), {100 * pk['gap_to_best_smaller']:+.1f} / "
          f"{100 * pk['gap_to_best_larger']:+.1f} points against the best "
          f"smaller / larger width"
          + (" (a peak by the 3-point criterion)." if pk["shows_peak"] else
             " (not a clear peak by the 3-point criterion).")
          + " Our interpolation threshold is at "
          + (f"h = {h}" if h else "no width of the grid")
          + " (notebook ≈ 61).")
    else:
      parts.append(f"With {noise} noise the test error has no interior local "
                   "maximum.")
    if epochs < 0.9 * NOTEBOOK_EPOCHS:
      parts.append(_short_budget(c, _notebook_model(config)))
    elif epochs <= 1.1 * NOTEBOOK_EPOCHS:
      parts.append(
          "At the notebook's own budget the remaining differences come from "
          "what we do not copy: the initialization (Flax's truncated LeCun "
          "normal, the notebook PyTorch's uniform default), the draw of the "
          "noisy labels and the data order.")
  if clean:
    pk = clean[0].get("peak")
    gap = (min(pk["gap_to_best_smaller"], pk["gap_to_best_larger"])
           if pk else 0.0)
    parts.append(
        f"Without noise the largest bump is {100 * max(gap, 0):.2f} points"
        + (" (no clear peak, as in the notebook)." if gap < PEAK_MIN_GAP
           else "."))
  return " ".join(parts)


def _versus(summary) -> List[List[str]]:
  """One row per quantity the notebook states, ours beside it: its numbers
  are for 15% noise, read on our first noisy curve; its only statement
  without noise, no clear peak, on our clean curve."""
  noisy = [c for c in summary["curves"] if c["label_noise"] > 0]
  clean = [c for c in summary["curves"] if c["label_noise"] == 0]
  rows = []
  if noisy:
    c = noisy[0]
    tag = f"{100 * c['label_noise']:g}% noise"
    small = _at(c, 8, 16)
    pk = c.get("peak")
    h = c.get("interpolation_width")
    largest = _largest(c)
    rows += [
        [f"{tag}: best test error, h ≈ 8–16 (%)",
         f"≈{100 * PAPER['best_small']:.0f} ({PAPER['best_small_widths']})",
         f"{_pct(small['test_error'])} (h={small['width']})"
         if small else "–"],
        [f"{tag}: test-error peak (%)",
         f"≈{100 * PAPER['peak']:.0f} at h ≈ {PAPER['peak_width']}",
         f"{_pct(pk['test_error'])} at h={pk['width']}" if pk else
         "no interior local maximum"],
        [f"{tag}: peak above the best smaller / larger width (points)",
         "≈ +5 / +8.5",
         f"+{100 * pk['gap_to_best_smaller']:.2f} (vs h="
         f"{pk['best_smaller']['width']}) / "
         f"+{100 * pk['gap_to_best_larger']:.2f} (vs h="
         f"{pk['best_larger']['width']})" if pk else "–"],
        [f"{tag}: interpolation threshold (train error ≤ "
         f"{100 * summary['interpolation_error']:g}%)",
         f"train error 0 at h ≈ {PAPER['interpolation_width']}",
         f"h = {h}" if h is not None else "not reached"],
        [f"{tag}: test error at the largest width (%)",
         f"{100 * PAPER['large']:.1f} (h={PAPER['large_width']})",
         f"{_pct(largest['test_error'])} (h={largest['width']})"],
    ]
  if clean:
    pk = clean[0].get("peak")
    if pk:
      gap = min(pk["gap_to_best_smaller"], pk["gap_to_best_larger"])
      ours = (f"largest bump {100 * gap:+.2f} points at h={pk['width']} "
              f"(the lesser of its heights above the best smaller and larger "
              f"width): "
              + ("a peak by the 3-point criterion" if gap >= PEAK_MIN_GAP
                 else "no clear peak"))
    else:
      ours = "no interior local maximum: no peak"
    rows.append(["clean labels: test-error peak", "no clear peak", ours])
  return rows


def _config_text(config, summary) -> str:
  # The noise levels are read from the summary's curves: a command-line
  # override may have left config.sweep.label_noise a bare number.
  noise = ", ".join(f"{100 * c['label_noise']:g}%" for c in summary["curves"])
  return (
      f"`{config.model.name}` ({summary['width_means']}) on "
      f"`{config.data.name}` ({summary['train_examples']:,} training "
      f"examples), widths {', '.join(map(str, summary['widths']))}; label "
      f"noise {noise} (each training label replaced with probability p by a "
      "uniformly random class, so a fraction 0.9 p is wrong); "
      f"{config.optim.name} lr {config.optim.lr}"
      + (f" momentum {config.optim.momentum}"
         if config.optim.name in ("momentum", "nesterov") else "")
      + f", batch {config.train.batch_size}, {config.train.steps} steps per "
      f"width; {len(summary['seeds'])} seeds per width, trained at once.")


def write(path, config, summary):
  """report.md and double_descent.png from the workdir's config.json and
  summary.json (the experiment's registered report)."""
  title = (f"{config.model.name} on {config.data.name}: model-wise double "
           "descent")
  wsr.plot_errors(summary, os.path.join(path, "double_descent.png"),
                  title=title)
  details = ["### Every curve, read as the notebook's numbers are (test "
             "error, mean ± std over seeds, %)\n\n" + comparison(summary)]
  for curve in summary["curves"]:
    p = curve["label_noise"]
    tag = f"{100 * p:g}% label noise" if p else "clean labels"
    details.append(f"### Every width, {tag} (mean ± std over seeds)\n\n"
                   + wsr.sweep_table(curve["points"], with_capacity=False))
  report.write_page(path, report.Page(
      title=f"double_descent: {config.model.name} on {config.data.name}",
      claim=(
          "Nakkiran et al. 2019; MNIST-1D notebook. With label noise, test "
          "error vs model width rises to a peak near the interpolation "
          "threshold (the smallest width that fits the noisy training set) "
          "and falls again beyond it; without noise there is no clear peak. "
          "MNIST-1D MLP 40-h-h-10, SGD 0.01, momentum 0.9, batch 100, 500 "
          "epochs, 15% noise: test error ≈ 49% at h ≈ 9–16, peak ≈ 54% at "
          "h ≈ 47, train error 0 from h ≈ 61, 45.5% at h = 300."),
      config=_config_text(config, summary),
      figures=[("Test error (solid) and training error on the (noisy) labels "
                "the network was fitted to (dashed) vs width, mean ± std "
                "over seeds; dotted: the interpolation threshold of each "
                "curve", "double_descent.png")],
      versus=(["quantity", "MNIST-1D notebook (500 epochs)",
               "ours (mean ± std over seeds)"], _versus(summary)),
      differences=_differences(config, summary),
      details=details,
      run=wsr.stages_run_line(summary)))
