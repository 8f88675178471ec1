"""Figures and report.md of `landscape`, from summary.json and the arms'
landscape.npz files: contours, 3-D surfaces, 1-D slices, interpolation."""

import os
from typing import Any, List, Mapping, Optional, Tuple

import numpy as np

from jaxunknowns import report
from jaxunknowns.report.plots import plt

CLAIM = ("Li, Xu, Taylor, Studer & Goldstein 2018: plots along "
         "filter-normalized random directions make the flatness of different "
         "networks comparable; skip connections and BatchNorm keep deep nets' "
         "landscapes convex-looking, and small-batch minima look wider than "
         "large-batch ones.")
# The arm pairs (first, last) of configs/landscape.py the claim is about:
# which arm the paper finds flatter, and in whose words.
FLATTER = {
    ("small_batch", "large_batch"): ("small_batch", "Li et al. 2018; Keskar "
                                     "et al. 2017"),
    ("skip", "noskip"): ("skip", "Li et al. 2018"),
    ("with_bn", "without_bn"): ("with_bn", "Li et al. 2018"),
}



def _load(path, name):
  with np.load(os.path.join(path, "arms", name, "landscape.npz")) as f:
    return {k: f[k] for k in f.files}


def contours(path, names):
  fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 4.2),
                           squeeze=False)
  for ax, name in zip(axes[0], names):
    d = _load(path, name)
    a = d["surface_axis"]
    loss = d["surface_loss"]
    levels = np.linspace(loss.min(), min(loss.max(), loss.min() + 10), 30)
    cs = ax.contour(a, a, loss.T, levels=levels, cmap="viridis")
    ax.clabel(cs, cs.levels[::5], fontsize=7, fmt="%.2f")
    ax.plot([0], [0], "r+")
    ax.set_title(name)
    ax.set_xlabel("d1")
    ax.set_ylabel("d2")
    ax.set_aspect("equal")
  fig.suptitle("training loss, filter-normalized directions")
  fig.tight_layout()
  report.save_figure(fig, os.path.join(path, "contours.png"))


def surfaces_3d(path, names):
  fig = plt.figure(figsize=(5 * len(names), 4.5))
  for i, name in enumerate(names):
    d = _load(path, name)
    a = d["surface_axis"]
    xx, yy = np.meshgrid(a, a, indexing="ij")
    ax = fig.add_subplot(1, len(names), i + 1, projection="3d")
    ax.plot_surface(xx, yy, np.log(d["surface_loss"]), cmap="viridis",
                    linewidth=0, antialiased=True)
    ax.set_title(name)
    ax.set_xlabel("d1")
    ax.set_ylabel("d2")
    ax.set_zlabel("log loss")
  fig.tight_layout()
  report.save_figure(fig, os.path.join(path, "surfaces_3d.png"))


def slices(path, names):
  fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(10, 3.8))
  for name in names:
    d = _load(path, name)
    ax_l.plot(d["slice_axis"], d["slice_loss"], label=name)
    ax_a.plot(d["slice_axis"], 100 * d["slice_accuracy"], label=name)
  ax_l.set_yscale("log")
  ax_l.set_ylabel("training loss")
  ax_a.set_ylabel("training accuracy (%)")
  for ax in (ax_l, ax_a):
    ax.set_xlabel("a (theta + a d1)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  report.save_figure(fig, os.path.join(path, "slices.png"))


def interpolation_plot(path, summary):
  interp = summary["interpolation"]
  if not interp["paths"]:
    return False
  alphas = np.asarray(interp["alphas"])
  fig, (ax_l, ax_e) = plt.subplots(1, 2, figsize=(10, 3.8))
  for p in interp["paths"]:
    loss, err = np.asarray(p["loss"]), np.asarray(p["error"])
    for r in range(loss.shape[0]):
      lab = p["label"] + (f" (pair {r})" if loss.shape[0] > 1 else "")
      ax_l.plot(alphas, loss[r], label=lab)
      ax_e.plot(alphas, 100 * err[r], label=lab)
  ax_l.set_yscale("log")
  ax_l.set_ylabel("training loss")
  ax_e.set_ylabel("training error (%)")
  for ax in (ax_l, ax_e):
    ax.set_xlabel("t in (1 - t) A + t B")
    ax.axvline(0, color="k", lw=0.5)
    ax.axvline(1, color="k", lw=0.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.tight_layout()
  report.save_figure(fig, os.path.join(path, "interpolation.png"))
  return True


def paper_of(names) -> Optional[Tuple[str, str]]:
  """(the flatter arm, source) when the first and last arms are a pair the
  claim is about; None otherwise."""
  return FLATTER.get((names[0], names[-1])) if len(names) >= 2 else None


def _no_minimum(rises: Mapping[str, float]) -> str:
  """'' when every arm's rise is positive; else the clause saying which
  arms' trained points the loss falls away from (then flatness, a rise
  around a minimum, is not compared)."""
  lows = [n for n, r in rises.items() if r <= 0]
  if not lows:
    return ""
  return (f"the rise is ≤ 0 for {' and '.join(lows)}: the loss falls away "
          f"from {'that' if len(lows) == 1 else 'those'} trained "
          f"point{'' if len(lows) == 1 else 's'} along these directions, "
          f"which {'is' if len(lows) == 1 else 'are'} no minimum there, so "
          "flatness is not compared")


def _verdict_cell(ok: Optional[bool]) -> str:
  return "n/a" if ok is None else "yes" if ok else "**no**"


def versus(summary) -> Tuple[List[List[Any]], List[Tuple[Optional[bool],
                                                         str]]]:
  """Rows of the table and (as in the paper?, sentence) per row: True,
  False, or None where a rise is not positive (no minimum to compare)."""
  names = summary["compare"]
  paper = paper_of(names)
  if paper is None:
    return [], []
  flat, source = paper
  first, last = names[0], names[-1]
  sharp = last if flat == first else first
  arms = summary["arms"]
  rows, verdicts = [], []
  for key, what in (("slice_mean_rise_half",
                     "1-D slice: mean rise of the loss for |a| <= 0.5"),
                    ("surface_mean_rise", "2-D surface: mean rise of the loss "
                     "over the grid")):
    where = what.split(":")[0]
    rises = {sharp: arms[sharp][key], flat: arms[flat][key]}
    untested = _no_minimum(rises)
    if untested:
      ok = None
      sentence = (f"the {where}'s mean rise is {rises[sharp]:.4f} for "
                  f"{sharp} and {rises[flat]:.4f} for {flat}; {untested}")
    else:
      ok = rises[sharp] > rises[flat]
      sentence = (f"the {where}'s mean rise is "
                  f"{rises[sharp] / rises[flat]:.2f}x as large for {sharp} "
                  f"as for {flat}")
    rows.append([what, f"larger for {sharp} ({source})",
                 f"{arms[first][key]:.4f}", f"{arms[last][key]:.4f}",
                 _verdict_cell(ok)])
    verdicts.append((ok, sentence))
  interp = summary["interpolation"]
  if (interp["mode"] == "arms" and interp["paths"] and
      (first, last) == ("small_batch", "large_batch")):
    p = interp["paths"][0]
    a, b = p["rise_beyond_a"], p["rise_beyond_b"]
    untested = _no_minimum({first: a["mean"], last: b["mean"]})
    ok = None if untested else b["mean"] > a["mean"]
    lo, hi = interp["alphas"][0], interp["alphas"][-1]
    rows.append([f"interpolation {first} -> {last}: rise of the loss past "
                 f"each end (t = {lo:g} and t = {hi:g})",
                 f"steeper past {last} (Keskar et al. 2017, Fig. 3)",
                 report.fmt(a, scale=1.0, digits=4),
                 report.fmt(b, scale=1.0, digits=4),
                 _verdict_cell(ok)])
    verdicts.append((ok, f"past the {last} end the interpolated loss rises "
                     f"{b['mean']:.4f} against {a['mean']:.4f} past the "
                     f"{first} end" + (f"; {untested}" if untested else "")))
  return rows, verdicts


def differences(config, summary, verdicts) -> str:
  names = summary["compare"]
  if not verdicts:
    return (f"No paper statement about the arms {', '.join(names)}: the "
            f"claim is about {'; '.join(' vs '.join(k) for k in FLATTER)} "
            f"(first and last arm), so only ours are shown.")
  held = [s for ok, s in verdicts if ok is True]
  failed = [s for ok, s in verdicts if ok is False]
  untested = [s for ok, s in verdicts if ok is None]
  parts = []
  if held:
    parts.append("As in the paper: " + "; ".join(held) + ".")
  if failed:
    parts.append("Unlike the paper: " + "; ".join(failed) + ".")
  if untested:
    parts.append("Not tested by this run: " + "; ".join(untested) + ".")
  why = [f"the surfaces are seed {summary['seeds'][0]}'s network along one "
         f"draw of two random directions (landscape.seed "
         f"{config.landscape.seed}), so the rises have no spread over seeds"]
  if config.data.name != "cifar10":
    why.append(f"`{config.model.name}` on `{config.data.name}`, not Li et "
               f"al.'s CIFAR-10 networks")
  parts.append(("Likely reasons: " if failed else "Caveats: ")
               + "; ".join(why) + ".")
  return " ".join(parts)


def write(path, config, summary: Mapping[str, Any]):
  """report.md and the PNGs from the workdir's summary.json and
  arms/NAME/landscape.npz (the run calls it last; `python -m
  jaxunknowns.report_cli` on a finished workdir)."""
  names = summary["compare"]
  contours(path, names)
  surfaces_3d(path, names)
  slices(path, names)
  has_interp = interpolation_plot(path, summary)
  ax = summary["axes"]
  rows = []
  for name in names:
    a = summary["arms"][name]
    rows.append([name, a["batch_size"], a["steps"],
                 report.fmt(a["final"]["test"]["accuracy"]),
                 f"{a['loss_at_centre']:.4f}",
                 f"{a['slice_mean_rise_half']:.4f}",
                 f"{a['surface_mean_rise']:.3f}",
                 f"{a['surface_max']:.2f}",
                 f"{a['surface_seconds']:.1f}" + (" (fast)" if a["fast_dense"]
                                                   else "")])
  details = [
      "### Arms\n\n" + report.markdown_table(
          ["arm", "batch", "steps", "test acc (%)", "loss at centre",
           "slice: mean rise |a|<=0.5", "surface: mean rise", "surface max",
           "surface time incl. compile (s)"], rows)]
  figures = [
      ("Contours of the training loss on the 2-D grid of two "
       "filter-normalized directions, one panel per arm (+: the trained "
       "network)", "contours.png"),
      ("The same surfaces in 3-D (log loss)", "surfaces_3d.png"),
      ("1-D slices along the first direction: training loss and accuracy",
       "slices.png")]
  if has_interp:
    interp_rows = [[p["label"]] + [report.fmt(p[k], scale=1.0, digits=4)
                                   for k in ("loss_barrier", "rise_beyond_a",
                                             "rise_beyond_b")]
                   for p in summary["interpolation"]["paths"]]
    lo, hi = summary["interpolation"]["alphas"][0], \
        summary["interpolation"]["alphas"][-1]
    details.append(
        f"### Linear interpolation ({summary['interpolation']['mode']})\n\n"
        "Loss barrier: max over t in [0, 1] of the loss minus the larger "
        f"endpoint loss; rise beyond A: L(t={lo:g}) - L(A); rise beyond B: "
        f"L(t={hi:g}) - L(B) (mean ± std over pairs).\n\n" +
        report.markdown_table(["path", "loss barrier", "rise beyond A",
                               "rise beyond B"], interp_rows))
    # No brackets in a caption: it is also the image's alt text.
    figures.append((f"Training loss and error along (1 - t) A + t B, "
                    f"t from {lo:g} to {hi:g} "
                    f"({summary['interpolation']['mode']})",
                    "interpolation.png"))
  table, verdicts = versus(summary)
  first, last = names[0], names[-1]
  reference = config.get("reference")
  claim = reference.get("claim", "") if reference is not None else ""
  seconds = ", ".join(f"{n} {a['train_seconds']:.0f} s training + "
                      f"{a['surface_seconds'] + a['slice_seconds']:.0f} s "
                      f"surface and slice" for n, a in summary["arms"].items())
  report.write_page(path, report.Page(
      title=f"landscape: {config.model.name} on {config.data.name}",
      claim=claim or CLAIM,
      config=(
          f"Filter-normalized loss landscapes (Li et al. 2018) of "
          f"`{config.model.name}` on `{config.data.name}`; arms: "
          f"{', '.join(names)}; {len(summary['seeds'])} seeds trained per "
          f"arm, landscapes of seed {summary['seeds'][0]}. Loss in eval mode "
          f"on {summary['arms'][names[0]]['num_examples']} training examples; "
          f"2-D grid {ax['surface'][2]}x{ax['surface'][2]} on "
          f"[{ax['surface'][0]}, {ax['surface'][1]}]^2, slice of "
          f"{ax['slice'][2]} points on [{ax['slice'][0]}, {ax['slice'][1]}]."),
      figures=figures,
      versus=(["quantity", "paper", f"ours: {first}", f"ours: {last}",
               "as in the paper"], table),
      differences=differences(config, summary, verdicts),
      details=details,
      run=report.run_line(summary, f"Per arm: {seconds}.")))
