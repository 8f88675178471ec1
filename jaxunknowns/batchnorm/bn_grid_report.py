"""Figures and tables of the BatchNorm grid experiments (read from the
summary's cells and metrics.jsonl, so a report can be rebuilt from a workdir)."""

from typing import Any, Mapping, Optional, Sequence

from jaxunknowns.report.plots import plt  # pylint: disable=g-import-not-at-top
import numpy as np

from jaxunknowns import metrics as metrics_lib
from jaxunknowns import report
from jaxunknowns.batchnorm.bn_grid import find


def pm(stat: Optional[Mapping[str, Any]], scale: float = 100.0,
       digits: int = 2) -> str:
  """'88.41 ± 0.12' (mean ± std over seeds)."""
  if not stat:
    return "–"
  return f"{stat['mean'] * scale:.{digits}f} ± {stat['std'] * scale:.{digits}f}"


def claim_of(config, fallback: str) -> str:
  """config.reference.claim where a config sets one, else the module's."""
  ref = config.get("reference")
  return (ref.get("claim") if ref else None) or fallback


def paired(a: Mapping[str, Any], b: Mapping[str, Any],
           metric: str = "test_accuracy") -> dict:
  """a - b per seed, {mean, std, per_seed}: every cell trains the same seeds
  (same initial weights where the shapes agree, same data order)."""
  return metrics_lib.stats(np.subtract(a[metric]["per_seed"],
                                       b[metric]["per_seed"]))


def points(stat: Optional[Mapping[str, Any]], digits: int = 2) -> str:
  """A difference in points, signed: '+1.23 ± 0.45 (n=3)'."""
  if not stat:
    return "–"
  text = report.fmt(stat, digits=digits)
  return text if text.startswith("-") else "+" + text


def run_extra(summary) -> str:
  """The grid's own timing, after `report.run_line`'s machine and wall time."""
  return (f"{len(summary['cells'])} cells × {len(summary['seeds'])} seeds "
          f"(seeds trained at once); cells {summary['cells_wall_time_s']:.0f}"
          f" s, compile included.")


def values_of(cells, label):
  """The distinct values of one label, in grid order."""
  seen = []
  for q in cells:
    v = q["cell"].get(label)
    if v is not None and v not in seen:
      seen.append(v)
  return seen


def cell_table(cells: Sequence[Mapping[str, Any]], labels: Sequence[str],
               speed: bool = False) -> str:
  header = list(labels) + ["test acc (%)", "train acc (%)", "gap (points)",
                           "lr", "steps", "wall (s)"]
  if speed:
    header += ["fit steps/s", "train steps/s"]
  rows = []
  for q in cells:
    row = [q["cell"].get(k, "–") for k in labels] + [
        pm(q["test_accuracy"]), pm(q["train_accuracy"]), pm(q["gap"]),
        f"{q['lr']:.3g}", q["steps"], f"{q['wall_time_s']:.1f}"]
    if speed:
      sp = q.get("train_speed")
      row += [f"{q['steps_per_second']:.0f}",
              f"{sp['median']:.0f}" if sp else "–"]
    rows.append(row)
  return report.markdown_table(header, rows)


def plot_vs(cells, x_label: str, series_label: str, path: str, *,
            title: str = "", log2_x: bool = True, xlabel: str = "") -> str:
  """Test (solid) and train (dashed) accuracy vs `x_label`, one colour per
  value of `series_label`; error bars are std over seeds."""
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  for i, s in enumerate(values_of(cells, series_label)):
    pts = find(cells, **{series_label: s})
    xs = np.array([q["cell"][x_label] for q in pts], float)
    color = f"C{i}"
    for metric, style, suffix in (("test_accuracy", "-", "test"),
                                  ("train_accuracy", "--", "train")):
      mean = np.array([q[metric]["mean"] for q in pts]) * 100
      std = np.array([q[metric]["std"] for q in pts]) * 100
      ax.errorbar(xs, mean, yerr=std, color=color, linestyle=style,
                  marker="o" if suffix == "test" else None, markersize=4,
                  capsize=2, label=f"{s} ({suffix})",
                  alpha=1.0 if suffix == "test" else 0.6)
  if log2_x:
    ax.set_xscale("log", base=2)
    xs = sorted(values_of(cells, x_label))
    ax.set_xticks(xs)
    ax.set_xticklabels([str(x) for x in xs])
  ax.set_xlabel(xlabel or x_label)
  ax.set_ylabel("accuracy (%)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, ncol=2)
  if title:
    ax.set_title(title, fontsize=10)
  fig.tight_layout()
  return report.save_figure(fig, path)


def plot_heatmaps(cells, row_label: str, col_label: str, panel_label: str,
                  path: str, title: str = "") -> str:
  """Test accuracy and train - test gap as heatmaps: rows x columns, one
  pair of panels per value of `panel_label`; each square reads mean ± std."""
  panels = values_of(cells, panel_label)
  rows, cols = values_of(cells, row_label), values_of(cells, col_label)
  metrics = (("test_accuracy", "test accuracy (%)", "viridis"),
             ("gap", "train − test gap (points)", "magma_r"))
  fig, axes = plt.subplots(len(metrics), len(panels), squeeze=False,
                           figsize=(1.2 + 1.3 * len(cols) * len(panels),
                                    1.5 + 1.5 * len(rows) * len(metrics)),
                           gridspec_kw={"hspace": 0.35})
  for m, (metric, name, cmap) in enumerate(metrics):
    grids = {}
    for p in panels:
      grid = np.full((len(rows), len(cols)), np.nan)
      text = [["" for _ in cols] for _ in rows]
      for i, r in enumerate(rows):
        for j, c in enumerate(cols):
          hit = find(cells, **{panel_label: p, row_label: r, col_label: c})
          if hit:
            grid[i, j] = hit[0][metric]["mean"] * 100
            text[i][j] = f"{grid[i, j]:.1f}\n±{hit[0][metric]['std'] * 100:.1f}"
      grids[p] = (grid, text)
    lo = np.nanmin([g for g, _ in grids.values()])
    hi = np.nanmax([g for g, _ in grids.values()])
    for k, p in enumerate(panels):
      ax = axes[m][k]
      grid, text = grids[p]
      im = ax.imshow(grid, cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
      for i in range(len(rows)):
        for j in range(len(cols)):
          # Light text on dark squares, whatever the colormap's direction.
          r, g, b, _ = im.cmap(im.norm(grid[i, j]))
          dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
          ax.text(j, i, text[i][j], ha="center", va="center", fontsize=7,
                  color="white" if dark else "black")
      ax.set_xticks(range(len(cols)))
      ax.set_xticklabels([f"{c:g}" for c in cols])
      ax.set_yticks(range(len(rows)))
      ax.set_yticklabels([f"{r:g}" for r in rows])
      ax.set_xlabel(col_label)
      ax.set_ylabel(row_label)
      ax.set_title(f"{panel_label}={p}: {name}", fontsize=8)
    fig.colorbar(im, ax=list(axes[m]), shrink=0.8)
  if title:
    fig.suptitle(title, fontsize=10)
  # bbox_inches="tight": the colorbars sit outside the grid of panels.
  return report.save_figure(fig, path, bbox_inches="tight")


def plot_curves(rows, cells, labels: Sequence[str], path: str,
                title: str = "") -> str:
  """Test accuracy and training loss vs step per cell (mean ± std band)."""
  fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.8))
  for q in cells:
    where = {k: q["cell"][k] for k in labels}
    name = ", ".join(f"{k}={v}" for k, v in where.items())
    report.plot_band(ax_acc, metrics_lib.curves(rows, "test", "accuracy",
                                                **where), name, scale=100)
    report.plot_band(ax_loss, metrics_lib.curves(rows, "minibatch", "loss",
                                                 **where), name)
  ax_acc.set_ylabel("test accuracy (%)")
  ax_loss.set_ylabel("training loss (minibatch)")
  ax_loss.set_yscale("log")
  for ax in (ax_acc, ax_loss):
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return report.save_figure(fig, path)

