"""report.md, paths.png and plane.png of `mode_connectivity`, from
summary.json alone."""

import os

import numpy as np

from jaxunknowns import optim, report
from jaxunknowns.analysis import interpolation
from jaxunknowns.overparam import papers
from jaxunknowns.report import compare

PATHS, PLANE = "paths.png", "plane.png"
NAMES = {"line": "line", "bezier": "Bézier", "polychain": "polychain"}
REFERENCES = (papers.GARIPOV_LINE, papers.GARIPOV_CURVE, papers.GARIPOV_VGG)
METRICS = (("train_loss", "train loss", 1.0), ("test_error", "test error (%)",
                                                100.0))


def plot(path, summary):
  with report.figure(os.path.join(path, PATHS), 2) as axes:
    for ax, (key, label, scale) in zip(axes, METRICS):
      for kind, p in summary["paths"].items():
        report.plot_band(ax, p[key]["per_seed"], NAMES[kind], scale,
                         summary["ts"])
      ax.set(xlabel="t", ylabel=label, yscale="log" if scale == 1 else "linear")
  planes, k = summary["plane"]["pairs"], summary["num_bends"]
  w = interpolation.curve_coefficients(summary["plane"]["kind"], k,
                                       np.linspace(0, 1, 101))
  with report.figure(os.path.join(path, PLANE), 2 * len(planes), (4.2, 3.6),
                     cols=len(planes)) as axes:
    for ax, ((key, label, scale), (r, pl)) in zip(axes, [
        (m, p) for m in METRICS for p in enumerate(planes)]):
      z = np.asarray(pl[key]).T * scale
      log = "log10 " * (key == "train_loss")
      ax.figure.colorbar(ax.contourf(pl["x"], pl["y"], np.log10(np.maximum(
          z, 1e-12)) if log else z, levels=20, cmap="viridis"), ax=ax)
      pts = np.asarray(pl["points"])  # a, the first bend, b
      if k == 3:  # with more bends the curve leaves this plane
        ax.plot(*(w @ pts).T, "w-", lw=1.5)
      ax.plot(*pts[[0, 2]].T, "r*", ms=10)
      ax.plot(*pts[1], "wo", ms=5)
      ax.set(title=f"pair {r}: {log}{label}", xlabel="u", ylabel="v")


def comparisons(summary, config):
  p = summary["paths"]
  out = report.Rows({"model": summary["model"], "data": summary["dataset"],
                     "optimizer": f"{config.optim.name} {config.curve.lr:g}"})
  for key, label, scale in METRICS:
    out.versus(f"{label} along the line: max vs the larger end",
               papers.GARIPOV_LINE, p["line"][key]["max"],
               p["line"][key]["ends"], ("max", "end"), scale=scale, sig=True,
               paper="a high barrier")
  for kind, (key, label, scale) in [(k, m) for k in p if k != "line"
                                    for m in METRICS]:
    # Garipov's one-bend curves (Draxler et al.'s AutoNEB paths, with many
    # pivots, are another method).
    out.versus(f"{label} barrier: line vs {NAMES[kind]}", papers.GARIPOV_CURVE,
               p["line"][key]["barrier"], p[kind][key]["barrier"],
               ("line", NAMES[kind]), scale=scale, sig=True,
               paper="higher on the line")  # the rule: the sign, per seed
  ref, stat = papers.GARIPOV_VGG, p.get("bezier", {}).get(
      "test_error", {}).get("barrier")
  out.check("test error barrier of the Bézier curve (points)", ref,
            report.fmt(stat), compare.at_most(stat, ref.value / 100,
                                              unit=" points"),
            paper=f"{ref.value:g}{ref.unit}", level=True)
  return out


def write(path, config, summary):
  m, curves = config.curve, summary["curves"]
  seconds = sum(c["wall_time_s"] for c in curves.values())
  bn = ("BN statistics re-estimated at every network (reset, cumulative average"
        " over the training set)" if summary["has_batch_norm"] else "no BN")
  # mode_connectivity.curve_optimizer: SAM trains the minima, not the bends.
  sam = ("; without SAM, which trained the minima"
         if optim.uses_sam(config.optim) else "")
  plot(path, summary)
  report.write(
      path, config, summary, references=REFERENCES,
      setup=(f"{report.count(summary['pairs'], 'pair')} of minima "
             f"({config.train.steps} steps"
             f" each), joined by a {' and a '.join(curves)} of {m.num_bends} "
             f"points, bends trained {m.steps} steps at lr {m.lr:g} "
             f"({m.schedule}{sam}) on the loss at t ~ U[0, 1]; paths measured"
             f" at {m.points} t on the whole train and test sets, {bn}. "
             f"Barrier: max over t minus the larger end. Plane: {m.plane_points}² grid"),
      figures=[("Train loss and test error along each path (mean ± std over "
                "pairs)", PATHS), ("The plane through the minima (red), the "
                "bend (white dot) and the curve (white)", PLANE)],
      comparisons=comparisons(summary, config),
      run=f"Curves trained in {seconds:.0f} s; "
          f"paths measured in {summary['seconds']['paths']:.0f} s, plane in "
          f"{summary['seconds']['plane']:.0f} s.")
