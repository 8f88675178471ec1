"""Figure and report.md of a `max_margin` run, from its workdir: config.json,
metrics.jsonl and summary.json (the data panel's points are the first data
seed's training set, drawn again from the config: the generators are
deterministic).

`max_margin.png` follows Soudry et al.'s Fig. 1 (log-x panels, one colour
per optimizer: the mean over data seeds, geometric on log axes, and each
seed as a thin line): the data with the SVM separator and margins (2-D data
only), ||w(t)|| normalised to 1 at the last step, the training loss, the
angle to the SVM direction, the margin gap, the test loss and test error,
and the angle against 1/log t with GD's least-squares line.
"""

import os
from typing import Any, Dict, List, Mapping

import matplotlib

matplotlib.use("Agg")
from jaxunknowns.report.plots import plt  # pylint: disable=g-import-not-at-top
import ml_collections
import numpy as np

from jaxunknowns import metrics as metrics_lib
from jaxunknowns import report
from jaxunknowns.data import load_dataset

FIGURE = "max_margin.png"
SPLIT = "max_margin"
COLORS = {"gd": "C0", "momentum": "C1", "sgd": "C2", "adam": "C3"}
LABELS = {"gd": "GD", "momentum": "GD + momentum", "sgd": "SGD", "adam": "Adam"}



def _curve(rows, name, optimizer, scale=1.0):
  per_seed = metrics_lib.curves(rows, SPLIT, name, optimizer=optimizer)
  if not per_seed:
    return np.array([]), np.array([]), np.array([])
  common = sorted(set.intersection(*[set(c) for c in per_seed.values()]))
  vals = np.array([[float(per_seed[s][t]) for t in common] for s in per_seed])
  return np.array(common), vals.mean(0) * scale, vals.std(0) * scale


def _band(ax, rows, name, optimizer, scale=1.0, normalize=False, logy=False):
  """The mean over seeds (geometric on log axes) and each seed, thin."""
  per_seed = metrics_lib.curves(rows, SPLIT, name, optimizer=optimizer)
  if not per_seed:
    return
  common = sorted(set.intersection(*[set(c) for c in per_seed.values()]))
  steps = np.array(common)
  vals = np.array([[float(per_seed[s][t]) for t in common]
                   for s in sorted(per_seed)]) * scale
  if normalize:  # Soudry et al. normalise ||w|| to 1 at the last step.
    vals = vals / vals[:, -1:]
  if logy:
    with np.errstate(divide="ignore"):
      mean = np.exp(np.mean(np.log(np.where(vals > 0, vals, np.nan)), axis=0))
  else:
    mean = vals.mean(0)
  color = COLORS.get(optimizer)
  ax.plot(steps, mean, color=color, lw=1.8,
          label=LABELS.get(optimizer, optimizer))
  if len(vals) > 1:
    for v in vals:
      ax.plot(steps, v, color=color, lw=0.6, alpha=0.35)


def data_dim(summary) -> int:
  """The inputs' dimension, from the parameter count: d (+1 with a bias)
  per output, one output for two classes."""
  outputs = 1 if summary["num_classes"] == 2 else summary["num_classes"]
  return summary["num_params"] // outputs - int(summary["use_bias"])


def first_training_set(config, summary):
  """(x, y) of the first data seed, as the run drew it; None unless the data
  are 2-D with two classes and no bias (the only case with a data panel)."""
  if (summary["num_classes"] != 2 or summary["use_bias"]
      or data_dim(summary) != 2):
    return None
  data_config = ml_collections.ConfigDict(config.data.to_dict())
  data_config.shuffle_seed = int(summary["data_seeds"][0])
  ds = load_dataset(data_config)
  return ds.train.x.astype(np.float64), np.asarray(ds.train.y)


def _data_panel(ax, data, summary):
  if data is None:
    ax.axis("off")
    ax.text(0.5, 0.5, f"{data_dim(summary)}-D data: no data panel",
            ha="center", va="center", transform=ax.transAxes)
    return
  x, y = data
  w_hat = np.asarray(summary["svm"]["w_hat"][0], np.float64)
  margin = summary["svm"]["margin"]["per_seed"][0]
  ax.scatter(*x[y == 1].T, marker="+", color="k", label="y = +1")
  ax.scatter(*x[y == 0].T, marker="o", facecolors="none", edgecolors="k",
             label="y = -1")
  lim = 1.1 * np.max(np.abs(x))
  line = np.linspace(-lim, lim, 2)

  def separator(w, **kw):
    if abs(w[1]) > abs(w[0]):
      ax.plot(line, -w[0] / w[1] * line, **kw)
    else:
      ax.plot(-w[1] / w[0] * line, line, **kw)

  separator(w_hat, color="k", lw=1.5, label="max margin")
  for sign in (1, -1):  # the margin lines w_hat . x = +-1
    w = w_hat
    pts = np.linspace(-lim, lim, 2)
    if abs(w[1]) > abs(w[0]):
      ax.plot(pts, (sign - w[0] * pts) / w[1], color="k", lw=0.6, ls=":")
    else:
      ax.plot((sign - w[1] * pts) / w[0], pts, color="k", lw=0.6, ls=":")
  ax.set_xlim(-lim, lim)
  ax.set_ylim(-lim, lim)
  ax.set_aspect("equal")
  ax.set_title(f"(A) data (seed {summary['seeds'][0]}), SVM margin "
               f"{margin:.4g}", fontsize=9)
  ax.legend(fontsize=7, loc="lower right")


def plot(path: str, rows, summary, data=None):
  optimizers = list(summary["optimizers"])
  fig, axes = plt.subplots(2, 4, figsize=(17, 7.6))
  ax = axes.ravel()
  _data_panel(ax[0], data, summary)
  panels = [
      (ax[1], "norm", "(B) ||w(t)|| / ||w(T)||", dict(normalize=True), False),
      (ax[2], "loss", "(C) training loss (mean per example)", {}, True),
      (ax[3], "angle", "(D) angle to w_hat (degrees)",
       dict(scale=180 / np.pi), True),
      (ax[4], "margin_gap", "(E) margin gap", {}, True),
      (ax[5], "test_loss", "(F) test loss", {}, False),
      (ax[6], "test_error", "(G) test error (%)", dict(scale=100.0), False),
  ]
  for a, name, title, kw, logy in panels:
    for o in optimizers:
      _band(a, rows, name, o, logy=logy, **kw)
    a.set_xscale("log")
    if logy:
      a.set_yscale("log")
    a.set_title(title, fontsize=9)
    a.set_xlabel("step t")
    a.grid(alpha=0.3, which="both")
  ax[1].legend(fontsize=8)
  # (H) angle vs 1/log t on the fit window, with GD's least-squares line.
  a = ax[7]
  start = None
  for o in optimizers:
    steps, mean, _ = _curve(rows, "angle", o, scale=180 / np.pi)
    fits = summary["optimizers"][o]["fits"]
    start = fits["window_start_step"]
    keep = steps >= start
    if not keep.any():
      continue
    inv = 1.0 / np.log(steps[keep])
    a.plot(inv, mean[keep], "o", ms=3, color=COLORS.get(o),
           label=LABELS.get(o, o))
    if o == "gd" and fits.get("angle_slope"):
      s, b = fits["angle_slope"]["mean"], fits["angle_intercept"]["mean"]
      xs = np.linspace(0, inv.max(), 50)
      a.plot(xs, np.degrees(s * xs + b), color=COLORS["gd"], lw=1,
             label=f"GD fit: {np.degrees(s):.3g}°/log t {np.degrees(b):+.2g}°")
  a.set_xlim(left=0)
  a.set_title(f"(H) angle vs 1/log t (t >= {start})", fontsize=9)
  a.set_xlabel("1 / log t")
  a.set_ylabel("degrees")
  a.grid(alpha=0.3)
  a.legend(fontsize=7)
  fig.suptitle(f"Implicit bias on {summary['dataset']} ({summary['loss']} "
               f"loss, {summary['num_train']} points, "
               f"{len(summary['seeds'])} data seeds)", fontsize=11)
  fig.tight_layout()
  return report.save_figure(fig, path, dpi=100)


def _fmt(stat, scale=1.0, digits=4, degrees=False):
  if stat is None:
    return "–"
  if degrees:
    scale = 180.0 / np.pi
  mean, std = stat["mean"] * scale, stat["std"] * scale
  n = len(stat.get("per_seed", []))
  return f"{mean:.{digits}g}" + (f" ± {std:.2g}" if n > 1 else "")




def _short(claim: str) -> str:
  """A claim's statement without its threshold: 'GD: training loss ~ 1/t'."""
  return claim.split("; ")[0].split(" (")[0]


def _longer_run(summary) -> str:
  """How to run longer on this run's data and loss."""
  if (summary["dataset"] == "soudry2d" and summary["loss"] == "cross_entropy"
      and summary["steps"] < 10_000_000):
    return "a longer run (variant soudry2d_long: 10^7 steps)"
  return "a longer run (a larger train.steps)"


def _angle_not_monotone(fits, summary) -> str:
  """The seeds whose angle is not monotone on the fit window: where it peaks
  and from which step it falls for good, and what that says."""
  window = fits.get("window_start_step")
  bad = [(seed, peak, falls) for seed, mono, peak, falls in zip(
      summary["seeds"], fits.get("angle_monotone", []),
      fits.get("angle_peak_step", []), fits.get("angle_falls_from_step", []))
         if not mono]
  where = ", ".join(f"seed {seed}: peak at step {peak:,}, monotone from step "
                    f"{falls:,}" for seed, peak, falls in bad)
  if any(peak > 1 for _, peak, _ in bad):
    # Recorded steps start at 1: a later peak is a rise away from w_hat.
    return (f"non-support points push w off w_hat first, so the angle rises "
            f"to a peak and falls monotonically only later, after the fit "
            f"window's start (step {window:,}): {where}")
  return (f"the angle is largest at step 1 and falls overall, but rises "
          f"again for a while inside the fit window (from step {window:,}): "
          f"{where}")


def _adam_why_not(summary) -> str:
  """Which half of the Adam claim fails, from the final angles."""
  opt = summary["optimizers"]
  adam = opt["adam"]["final"]
  a = np.degrees(adam["angle"]["mean"])
  a_inf = np.degrees(adam["angle_linf"]["mean"])
  reasons = []
  if "gd" not in opt:
    reasons.append("no GD run to compare Adam's angle with")
  else:
    ref = np.degrees(opt["gd"]["final"]["angle"]["mean"])
    if a <= ref:
      reasons.append(f"Adam ends no further from w_hat than GD ({a:.3g}° "
                     f"against GD's {ref:.3g}°)")
  if a_inf >= a:
    reasons.append(f"Adam is no closer to the l_inf direction than to w_hat "
                   f"({a_inf:.3g}° against {a:.3g}°)")
  return ("; ".join(reasons) + f" after {summary['steps']:,} steps, on this "
          f"data")


def _why_not(c: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
  """Why a claim that does not hold here fails, from this run's numbers."""
  steps = summary["steps"]
  name = c["claim"].split(":")[0].lower()
  fits = summary["optimizers"].get(name, summary["optimizers"].get("gd", {}))
  fits = fits.get("fits", {}) if fits else {}
  window = fits.get("window_start_step")
  if c["kind"] in ("norm", "loss", "rate"):
    return (f"the fit window (steps {window:,} to {steps:,}) is still before "
            f"the asymptotic regime; the rates are limits as t grows, so "
            f"{_longer_run(summary)} moves the fit towards them")
  if c["kind"] == "monotone":
    return _angle_not_monotone(fits, summary)
  if c["kind"] == "distance":
    return (f"the distance falls only like 1/log t, so after {steps:,} steps "
            f"it is still {c['ours']}: a budget limit (the 0.05 is our "
            f"threshold; the paper states the limit 0)")
  if c["kind"] == "adam":
    return _adam_why_not(summary)
  if c["kind"] == "test":
    return (f"on this draw the test error does not fall ({c['ours']}): the "
            f"max-margin direction of {summary['num_train']} training points "
            f"need not test better than the iterates before it")
  return "see Details"


def differences(claims: List[Dict[str, Any]], summary) -> str:
  held = [c for c in claims if c["holds"] is True]
  failed = [c for c in claims if c["holds"] is False]
  untested = [c for c in claims if c["holds"] is None]
  parts = []
  if held:
    parts.append(f"As in the paper ({len(held)} of {len(held) + len(failed)} "
                 f"testable claims): " + "; ".join(_short(c["claim"])
                                                   for c in held) + ".")
  if failed:
    parts.append("Unlike the paper: " + "; ".join(
        f"{_short(c['claim'])}: {_why_not(c, summary)}" for c in failed)
                 + ".")
  if untested:
    parts.append("Not tested: " + "; ".join(_short(c["claim"])
                                            for c in untested) + ".")
  if summary["dataset"] == "soudry2d":
    parts.append("The data are the paper's own 2-D set (Fig. 1), so no "
                 "difference of data.")
  else:
    parts.append(f"The data (`{summary['dataset']}`, {summary['num_train']} "
                 f"points in {data_dim(summary)}-D) are not the paper's 2-D "
                 f"set: the rates are the same theorems', the constants are "
                 f"this data's.")
  return " ".join(parts)


def _before_asymptote(opt) -> str:
  """What GD's angle does before the asymptotic regime, per seed, read from
  where it peaks and from which step it falls monotonically."""
  if "gd" not in opt:
    return ("they can push w off w_hat for a while (no GD run here to show "
            "it).")
  fits = opt["gd"]["fits"]
  peaks, falls = fits["angle_peak_step"], fits["angle_falls_from_step"]
  window = fits["window_start_step"]
  if any(p > 1 for p in peaks):  # Recorded steps start at 1.
    return (f"they push w off w_hat, the angle rises to a peak (per seed at "
            f"step {peaks}) and only then falls monotonically (per seed from "
            f"step {falls}), so a fit window that starts before that shows "
            f"neither monotone decay nor the asymptotic rate.")
  return (f"they can push w off w_hat for a while; here the angle is largest "
          f"at step 1 on every seed and falls monotonically from step "
          f"{falls} per seed (any rise after step 1 ends there), "
          + ("all at or before the fit window's start (step "
             f"{window:,}), so it is monotone on the window." if
             max(falls) <= window else
             f"some after the fit window's start (step {window:,}), so on "
             f"the window it is not monotone for every seed."))


def write(path: str, config, summary: Mapping[str, Any],
          claims: List[Dict[str, Any]]):
  """report.md and max_margin.png from the workdir's files; `claims` are
  max_margin.claims(summary)."""
  rows = metrics_lib.read_metrics(path)
  data = first_training_set(config, summary)
  plot(os.path.join(path, FIGURE), rows, summary, data)
  panel_a = ("(A) the data and the SVM separator" if data is not None else
             f"(A) none ({data_dim(summary)}-D data)")
  s = summary["svm"]
  opt = summary["optimizers"]
  lrs = ", ".join(
      f"{LABELS.get(o, o)} {np.mean(v['lr']):.4g}" for o, v in opt.items())
  intro = (
      f"Implicit bias of {', '.join(LABELS.get(o, o) for o in opt)} on "
      f"`{summary['dataset']}` ({summary['num_train']} training points, "
      f"{summary['num_test']} test points, {summary['num_classes']} classes), "
      f"`linear` model with {summary['num_params']} parameters "
      f"({'with' if summary['use_bias'] else 'no'} bias), "
      f"{summary['loss']} loss ({summary['reduction']} over examples), from "
      f"w = 0, {summary['steps']:,} steps, {len(summary['seeds'])} data seeds "
      f"(data.shuffle_seed {summary['data_seeds']}), float64. Steps: {lrs} "
      f"(mean over seeds; GD's is 1/sigma_max(X) unless max_margin.lr is set).")
  reference = config.get("reference")
  claim = reference.get("claim", "") if reference is not None else ""
  svm_text = (
      f"Hard-margin SVM (exact, KKT residual {s['kkt_residual']:.1e}): margin "
      f"{_fmt(s['margin'], digits=6)}, ||w_hat|| {_fmt(s['norm'], digits=6)}, "
      f"{s['num_support_vectors']} support vectors per seed; w_hat of the "
      f"first seed = {np.round(s['w_hat'][0], 6).tolist()}. Angle between "
      f"the L2 and the l_inf max-margin directions: "
      f"{[None if a is None else round(a, 4) for a in s['angle_l2_vs_linf_deg']]}°.")
  window = next(iter(opt.values()))["fits"]["window_start_step"]
  versus = [[c["claim"], c["paper"], c["ours"],
             "n/a" if c["holds"] is None else "yes" if c["holds"] else
             "**no**"] for c in claims]
  final_rows = []
  for o, v in opt.items():
    f = v["final"]
    final_rows.append([
        LABELS.get(o, o), _fmt(f["angle"], degrees=True),
        _fmt(f["distance"]), _fmt(f["margin_gap"]), _fmt(f["norm"]),
        _fmt(f["loss"]), _fmt(f["test_loss"]),
        _fmt(f["test_error"], scale=100, digits=3),
        _fmt(f["angle_linf"], degrees=True)])
  final_table = report.markdown_table(
      ["optimizer", "angle (°)", "distance", "margin gap", "||w||", "loss",
       "test loss", "test error (%)", "angle to l_inf dir. (°)"], final_rows)
  limits = s["angle_log_t_limit"]
  limit_text = ("–" if any(l is None for l in limits)
                else ", ".join(f"{np.degrees(l):.3g}°" for l in limits))
  fit_rows = []
  for o, v in opt.items():
    f = v["fits"]
    fit_rows.append([
        LABELS.get(o, o), _fmt(f["norm_slope"]), _fmt(f["loss_exponent"], digits=3),
        _fmt(f["angle_exponent"], digits=3),
        _fmt(f["angle_slope"], degrees=True, digits=3),
        _fmt(f["angle_intercept"], degrees=True, digits=2),
        _fmt(f["margin_gap_exponent"], digits=3)])
  fits_table = report.markdown_table(
      ["optimizer", "d||w||/d log t", "loss exponent", "angle exponent in log t",
       "angle vs 1/log t: slope (°)", "intercept (°)", "margin-gap exponent in log t"],
      [["prediction", f"{s['norm']['mean']:.4f} (= ||w_hat||)", "-1",
        "≤ -1", limit_text, "0", "≤ -1"]] + fit_rows)
  notes = []
  if all(l is not None and l < 1e-6 for l in limits):
    ratios = s.get("nonsupport_margin_ratio") or []
    slowest = min((r for r in ratios if r is not None), default=None)
    fade = (f" (the closest non-support margin is {slowest:.3g} x the "
            f"SVM's, so its pull fades only like t^-{slowest - 1:.2g})"
            if slowest else "")
    notes.append(
        "The support vectors span the parameter space and pin Soudry et "
        "al.'s offset w~ (w(t) = w_hat log t + w~ + o(1)) *along* w_hat "
        "(the two support directions carry equal dual weight), so the "
        "leading 1/log t term of the angle vanishes and the predicted slope "
        "against 1/log t is 0: asymptotically the angle falls faster than "
        "1/log t. What it does before that is set by the non-support "
        f"points{fade}: " + _before_asymptote(opt))
  linf = s["angle_l2_vs_linf_deg"]
  if "adam" in opt and all(a is not None and a < 1e-3 for a in linf):
    notes.append(
        "On this data the L2 and l_inf max-margin directions coincide, so "
        "the sign-descent-like bias of Adam points to the same direction as "
        "GD's: Adam's angle to w_hat is small here, and the difference "
        "between the two biases shows only on data where the two directions "
        "differ (variant `clouds`).")
  details = [
      "### The yardstick\n\n" + svm_text,
      f"### At step {summary['steps']:,} (mean ± std over seeds)\n\n"
      + final_table,
      f"### Fitted rates (least squares on steps {window} to "
      f"{summary['steps']:,})\n\n" + fits_table + "\n\n"
      "The angle's predicted slope against 1/log t is ||P_perp w~|| / "
      "||w_hat||, computable from the SVM's duals when the support vectors "
      "span the parameter space (– otherwise: then it depends on the "
      "trajectory).",
  ]
  if notes:
    details.append("### Notes\n\n" + "\n\n".join(notes))
  secs = ", ".join(f"{LABELS.get(o, o)} {v['seconds']:.1f} s"
                   for o, v in opt.items())
  report.write_page(path, report.Page(
      title=f"max_margin: implicit bias on {summary['dataset']}",
      claim=claim or "None: this config quotes no paper.",
      config=intro,
      figures=[(f"After Soudry et al.'s Fig. 1: {panel_a}, (B) ||w(t)|| "
                "normalised at the last step, (C) training loss, (D) angle to "
                "w_hat, (E) margin gap, (F) test loss, (G) test error, (H) "
                "angle vs 1/log t with GD's fit; one colour per optimizer, "
                "mean over data seeds (thick) and each seed (thin)", FIGURE)],
      versus=(["claim (fits on steps "
               f"{window:,} to {summary['steps']:,})", "paper",
               "ours (mean ± std over seeds)", "holds"], versus),
      differences=differences(claims, summary),
      details=details,
      run=report.run_line(summary, f"Per optimizer: {secs}; "
                          f"{summary['steps_per_second']:,.0f} steps/s for "
                          f"all seeds at once.")))
