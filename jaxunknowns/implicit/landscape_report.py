"""report.md and figures of `landscape`, from summary.json (contours and
slices from the arms' landscape.npz; the run's PNGs where those are absent).

A summary written before the slice and surface were measured on every seed
holds the first seed's flatness numbers as plain floats (and landscape.npz
arrays without a seed axis): they are read as one seed (n = 1, not
testable), as they were measured."""

import os

import numpy as np

from jaxunknowns import paths, report
from jaxunknowns.implicit import papers
from jaxunknowns.report import compare


def measured(arm, key):
  """{mean, std, per_seed} of one flatness number of an arm; an old summary's
  float is one seed's."""
  v = arm[key]
  return v if isinstance(v, dict) else {"mean": v, "std": 0.0, "per_seed": [v]}


def seeds_measured(summary) -> int:
  """How many seeds' networks the slices and surfaces were drawn for."""
  arm = summary["arms"][summary["compare"][0]]
  return len(measured(arm, "loss_at_centre")["per_seed"])


RISES = {"slice_mean_rise_half": "1-D slice: mean rise of the loss for "
         "|a| ≤ 0.5", "surface_mean_rise": "2-D surface: mean rise of the "
         "loss over the grid"}


def figures(path, summary):
  names, interp = summary["compare"], summary["interpolation"]
  pca = summary.get("directions") == "pca"
  plane = ("the top two PCA directions of its path (dots: the path, o its "
           "start)" if pca else "two filter-normalized directions")
  many = seeds_measured(summary) > 1
  shown = [(f"Training loss of the first seed's network on {plane}, per arm "
            "(+: the trained network)", "contours.png"),
           ("1-D slices along the first direction" + (
               ", every seed's network along its own (thick: the first "
               "seed's)" if many else " (the first seed's network)"),
            "slices.png")] + [
               (f"Training loss along (1 − t) A + t B ({interp['mode']})",
                "interpolation.png")] * bool(interp["paths"])
  npz = [os.path.join(path, "arms", n, "landscape.npz") for n in names]
  if not all(map(paths.exists, npz)):
    return [f for f in shown if paths.exists(os.path.join(path, f[1]))]
  files = [os.path.join(path, file) for _, file in shown]
  with report.figure(files[0], len(names), (4.6, 4.2)) as axes, \
      report.figure(files[1], size=(5, 3.8)) as (ax_s,):
    for ax, name, file in zip(axes, names, npz):
      d = paths.load_npz(file)
      a = d["surface_axis"]
      b = d["surface_axis_b"] if "surface_axis_b" in d else a
      # [seeds, ...]; an old file's arrays have no seed axis.
      loss = d["surface_loss"].reshape(-1, len(a), len(b))[0]
      slices = d["slice_loss"].reshape(-1, len(d["slice_axis"]))
      line, = ax_s.plot(d["slice_axis"], slices[0], label=name)
      for other in slices[1:]:
        ax_s.plot(d["slice_axis"], other, color=line.get_color(),
                  linewidth=0.7, alpha=0.6)
      if "path_coords" in d:  # The path, start marked, on its PCA plane.
        ax.plot(*d["path_coords"].T, "k.-", markersize=3, linewidth=0.8)
        ax.plot(*d["path_coords"][0], "ko", fillstyle="none")
      # Levels over the finite losses, in float64: at a loss of 3e8 (a
      # large lr) float32's min + 10 is min, and 30 equal levels, or NaN
      # ones from a diverged point, made matplotlib raise.
      finite = loss[np.isfinite(loss)].astype(np.float64)
      levels = []
      if finite.size:
        low = finite.min()
        levels = np.unique(np.linspace(low, min(finite.max(), low + 10), 30))
      if len(levels) > 1:
        cs = ax.contour(a, b, loss.T, levels=levels)
        ax.clabel(cs, cs.levels[::5], fontsize=7, fmt="%.2f")
      else:
        ax.text(0.5, 0.5, "no contours: the surface is flat or not finite",
                transform=ax.transAxes, ha="center", fontsize=7)
      ax.plot([0], [0], "r+")
      pc = summary["arms"][name].get("path", {}).get("explained")
      ax.set(title=name, aspect="equal" if pc is None else "auto",
             **({"xlabel": "d1", "ylabel": "d2"} if pc is None else {
                 f"{x}label": f"PC{i + 1}: {100 * pc[i]['mean']:.1f}%"
                 for i, x in enumerate("xy")}))
    ax_s.set(xlabel="a (θ + a d1)", ylabel="training loss", yscale="log")
  if interp["paths"]:
    with report.figure(files[2], size=(5, 3.8)) as (ax_i,):
      for p in interp["paths"]:
        for r, loss in enumerate(p["loss"]):
          ax_i.plot(interp["alphas"], loss, label=f"{p['label']} (pair {r})")
      ax_i.set(xlabel="t", ylabel="training loss", yscale="log")
  return shown


def comparisons(summary, config):
  """The flatter arm's rises below the other's, for the pairs of arms the
  papers speak of; a rise ≤ 0 (no minimum there) is not compared."""
  names, arms, interp = (summary[k] for k in ("compare", "arms",
                                              "interpolation"))
  if summary.get("directions") == "pca":
    return trajectory(arms, config)
  flat, ref = papers.LI_FLATTER.get((names[0], names[-1]), (None, None))
  if ref is None:
    return []
  sharp = names[-1] if flat == names[0] else names[0]
  rows = [(what, ref, {n: measured(arms[n], key) for n in (sharp, flat)})
          for key, what in RISES.items()]
  if interp["mode"] == "arms" and interp["paths"] and flat == "small_batch":
    p = interp["paths"][0]
    rows.append((f"interpolation: rise of the loss past each end (t = "
                 f"{interp['alphas'][0]:g}, {interp['alphas'][-1]:g})",
                 papers.KESKAR_INTERPOLATION,
                 {sharp: p["rise_beyond_b"], flat: p["rise_beyond_a"]}))
  out = []
  for what, reference, rise in rows:
    lows = [n for n, v in rise.items() if v["mean"] <= 0]
    out.append(compare.versus(
        what, reference, rise[sharp], rise[flat], (sharp, flat),
        # Both arms train (and draw directions, and pair interpolation
        # ends) on the same seeds: seed r's difference is one measurement.
        rule=compare.undecided() if lows else compare.paired_greater,
        scale=1.0, digits=4, paper=f"larger for {sharp}",
        why_not_testable=f"the rise is ≤ 0 for {' and '.join(lows)}: no "
        "minimum along these directions", our_protocol={
            "data": config.data.name, "model": config.model.name,
            "epochs": config.epochs}))
  return out


def trajectory(arms, config):
  """Per arm: the path's variance on its top two PCA directions, and beside
  it on two random filter-normalized ones."""
  ours = {"data": config.data.name, "model": config.model.name}
  # n iterates span at most n − 1 directions: on 3 or fewer, the top two
  # hold all of the path's variance by construction.
  few = lambda a: len(a["path"]["steps"]) <= 3
  return [row for n, a in arms.items() for row in (
      compare.comparison(
          f"{n}: path variance on the top two PCA directions (%)",
          papers.LI_PATH_LOW_DIM, report.fmt(a["path"]["explained_top2"]),
          *(compare.at_least(a["path"]["explained_top2"], 0.4) if not few(a)
            else (None, "")), paper="≥ 40; 40–90 in theirs",
          our_protocol=ours,
          why_not_testable=f"{len(a['path']['steps'])} iterates: two "
          "directions hold all of their variance"),
      compare.versus(
          f"{n}: path variance on PCA vs random directions (%)",
          papers.LI_RANDOM_MISSES, a["path"]["explained_top2"],
          a["path"]["random_captured"], ("PCA", "random"), digits=3, sig=True,
          paper="random ≈ 0", our_protocol=ours))]


def write(path, config, summary):
  names, ax, interp = (summary[k] for k in ("compare", "axes", "interpolation"))
  keys = ("loss_at_centre", *RISES, "surface_max")
  many = seeds_measured(summary) > 1
  details = [("### Arms (landscapes of every seed's network, each along its "
              "own directions)" if many else "### Arms (landscapes of the "
              "first seed's network)") + "\n\n" + report.markdown_table(
                  ["arm", "batch", "steps", "test acc (%)", "loss at centre",
                   "slice: mean rise |a| ≤ 0.5", "surface: mean rise",
                   "surface max"], [[n, a["batch_size"], a["steps"], report.fmt(
                       a["final"]["test"]["accuracy"])] + [report.fmt(
                           measured(a, k), 1.0, 4) for k in keys]
                                    for n, a in summary["arms"].items()])]
  if interp["paths"]:
    details.append(
        "### Linear interpolation (barrier: the loss's max over t in [0, 1] "
        "minus the larger end's; rise past A or B: the loss at the range's "
        "end minus that end's)\n\n" + report.markdown_table(
            ["path", "loss barrier", "rise past A", "rise past B"],
            [[p["label"]] + [report.fmt(p[k], 1.0, 4) for k in (
                "loss_barrier", "rise_beyond_a", "rise_beyond_b")]
             for p in interp["paths"]]))
  pca = summary.get("directions") == "pca"
  if pca:
    details.append("### Paths (explained variance over seeds; the plane and "
                   "figures are the first seed's)\n\n" + report.markdown_table(
                       ["arm", "PC1 (%)", "PC2 (%)", "random plane (%)",
                        "iterates at steps"], [[n, *(report.fmt(s) for s in (
                            *a["path"]["explained"], a["path"]["random_captured"])),
                            f"0, {a['path']['steps'][1]}, …, {a['path']['steps'][-1]}"]
                                               for n, a in summary["arms"].items()]))
  report.write(
      path, config, summary, references=[papers.LI_PATH_LOW_DIM,
                                   papers.LI_RANDOM_MISSES] if pca else [
                                       r for _, r in papers.LI_FLATTER.values()],
      setup=f"arms {', '.join(names)}; eval-mode loss on "
      f"{summary['arms'][names[0]]['num_examples']} training examples along "
      + ("the top two PCA directions of each arm's path (its parameters at "
         f"{config.landscape.path_points} evenly spaced steps), ranges in units"
         " of the path's largest coordinate on each" if pca else
         ("two random directions drawn per seed" if many else
          "one draw of two random directions")) + "; grid and slice (lo, hi, "
      f"points): {config.landscape.range_2d if pca else ax['surface']}, "
      f"{config.landscape.range_1d if pca else ax['slice']}",
      figures=figures(path, summary),
      comparisons=comparisons(summary, config), details=details)
