"""Figures written atomically, mean ± std bands and error bars over seeds,
learning curves: the only module that imports matplotlib. Without pyplot:
each figure is a `Figure` of its own, drawn by Agg when saved, so the
user's backend and open figures stay as they were (pyplot's global backend
switch turned a notebook's inline plots off for the rest of its session)."""

import contextlib
import io
import os
from typing import Mapping, Sequence, Tuple

import matplotlib
from matplotlib.figure import Figure
import numpy as np

from jaxunknowns import metrics as metrics_lib
from jaxunknowns import paths
from jaxunknowns.report.text import std_of


def subplots(rows: int = 1, cols: int = 1, *, figsize=None, layout=None,
             **kw):
  """(figure, axes) as pyplot.subplots gives them, outside pyplot."""
  fig = Figure(figsize=figsize, layout=layout)
  return fig, fig.subplots(rows, cols, **kw)


def colormap(name: str):
  return matplotlib.colormaps[name]


@contextlib.contextmanager
def figure(path: str, panels: int = 1, size: Tuple[float, float] = (6.4, 4.2),
           title: str = "", cols: int = 0, dpi: int = 110):
  """Yields the panels' axes (a flat list); then gives each panel a light
  grid and a legend where its labelled lines differ from an earlier panel's,
  hides unused panels and writes the PNG atomically. `size`: one panel's."""
  cols = cols or panels
  rows = -(-panels // cols)
  fig, axes = subplots(rows, cols, squeeze=False,
                       figsize=(size[0] * cols, size[1] * rows))
  axes = list(axes.ravel())
  yield axes[:panels]
  shown = set()
  for ax in axes[:panels]:
    ax.grid(alpha=0.3)
    labels = tuple(ax.get_legend_handles_labels()[1])
    if labels and labels not in shown:
      ax.legend(fontsize=7)
    shown.add(labels)
  for ax in axes[panels:]:
    ax.axis("off")
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  save_figure(fig, path, dpi=dpi)


def errorbars(ax, xs, stats, scale: float = 1.0, **kw):
  """Means ± sample std over seeds of {mean, std, per_seed} dicts at `xs`."""
  ax.errorbar(xs, [scale * s["mean"] for s in stats],
              yerr=[scale * std_of(s) for s in stats], capsize=2, **kw)


def _mean_std_curve(per_seed: Mapping[int, Mapping[int, float]]):
  """Steps present for every seed, with mean and sample std (ddof = 1, as
  every ± of the reports; 0 for one seed) across seeds."""
  if not per_seed:
    return np.array([]), np.array([]), np.array([])
  common = sorted(set.intersection(*[set(c) for c in per_seed.values()]))
  vals = np.array([[float(per_seed[s][t]) for t in common] for s in per_seed])
  std = vals.std(0, ddof=1) if len(vals) > 1 else np.zeros(len(common))
  return np.array(common), vals.mean(0), std


def plot_band(ax, per_seed, label, scale=1.0, xs=None, **kw):
  """Mean ± std over seeds of {seed: {x: value}}, or of rows over `xs`."""
  if xs is not None:
    per_seed = {r: dict(zip(xs, row)) for r, row in enumerate(per_seed)}
  steps, mean, std = _mean_std_curve(per_seed)
  if len(steps) == 0:
    return
  line, = ax.plot(steps, mean * scale, label=label, **kw)
  if len(per_seed) > 1:
    ax.fill_between(steps, (mean - std) * scale, (mean + std) * scale,
                    color=line.get_color(), alpha=0.2)


def learning_curves(rows: Sequence[Mapping], path: str, title: str = "",
                    **labels) -> str:
  """Train loss and train/test accuracy vs step (mean ± std over seeds)."""
  with figure(path, 2, (5, 3.8), title) as (ax_loss, ax_acc):
    for split, style in (("minibatch", "-"), ("train", "-."),
                         ("validation", ":"), ("test", "--")):
      for ax, key, scale in ((ax_loss, "loss", 1), (ax_acc, "accuracy", 100)):
        plot_band(ax, metrics_lib.curves(rows, split, key, **labels), split,
                  scale=scale, linestyle=style)
    ax_loss.set(yscale="log", xlabel="step", ylabel="loss")
    ax_acc.set(xlabel="step", ylabel="accuracy (%)")
  return path


def save_figure(fig, path: str, dpi: int = 110) -> str:
  """fig.savefig, atomically (a killed rebuild leaves the old PNG); drawn
  in memory, so the path may be on an object store."""
  buffer = io.BytesIO()
  fig.savefig(buffer, dpi=dpi,
              format=os.path.splitext(path)[1].lstrip(".") or "png")
  paths.write_atomic(path, buffer.getvalue())
  return path
