"""Figures and report.md of `landscape`, from summary.json and the arms'
landscape.npz files: contours, 3-D surfaces, 1-D slices, interpolation."""

import os

import numpy as np

from jaxunknowns import report
from jaxunknowns.report import plt


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
  fig.savefig(os.path.join(path, "contours.png"), dpi=110)
  plt.close(fig)


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
  fig.savefig(os.path.join(path, "surfaces_3d.png"), dpi=110)
  plt.close(fig)


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
  fig.savefig(os.path.join(path, "slices.png"), dpi=110)
  plt.close(fig)


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
  fig.savefig(os.path.join(path, "interpolation.png"), dpi=110)
  plt.close(fig)
  return True


def write(path, config, summary):
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
  sections = [
      f"Filter-normalized loss landscapes (Li et al. 2018) of "
      f"`{config.model.name}` on `{config.data.name}`; arms: "
      f"{', '.join(names)}; {len(summary['seeds'])} seeds trained per arm, "
      f"landscapes of seed {summary['seeds'][0]}. Loss in eval mode on "
      f"{summary['arms'][names[0]]['num_examples']} training examples; "
      f"2-D grid {ax['surface'][2]}x{ax['surface'][2]} on "
      f"[{ax['surface'][0]}, {ax['surface'][1]}]^2, slice of "
      f"{ax['slice'][2]} points on [{ax['slice'][0]}, {ax['slice'][1]}].",
      "## Arms\n\n" + report.markdown_table(
          ["arm", "batch", "steps", "test acc (%)", "loss at centre",
           "slice: mean rise |a|<=0.5", "surface: mean rise", "surface max",
           "surface time incl. compile (s)"], rows),
      "## Contours\n\n![contours](contours.png)",
      "## 3-D surfaces (log loss)\n\n![surfaces](surfaces_3d.png)",
      "## 1-D slices\n\n![slices](slices.png)",
  ]
  if has_interp:
    interp_rows = [[p["label"]] + [report.fmt(p[k], scale=1.0, digits=4)
                                   for k in ("loss_barrier", "rise_beyond_a",
                                             "rise_beyond_b")]
                   for p in summary["interpolation"]["paths"]]
    lo, hi = summary["interpolation"]["alphas"][0], \
        summary["interpolation"]["alphas"][-1]
    sections.append(
        f"## Linear interpolation ({summary['interpolation']['mode']})\n\n"
        "Loss barrier: max over t in [0, 1] of the loss minus the larger "
        f"endpoint loss; rise beyond A: L(t={lo:g}) - L(A); rise beyond B: "
        f"L(t={hi:g}) - L(B) (mean ± std over pairs).\n\n" +
        report.markdown_table(["path", "loss barrier", "rise beyond A",
                               "rise beyond B"], interp_rows) +
        "\n\n![interpolation](interpolation.png)")
  sections.append(f"Wall time {summary['wall_time_s']:.0f} s on "
                  f"{summary['machine']['num_devices']} x "
                  f"{summary['machine']['device_kind']}.")
  report.write_report(os.path.join(path, "report.md"),
                      f"landscape: {config.model.name} on {config.data.name}",
                      sections)
