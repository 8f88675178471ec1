"""Shared plots: figures written atomically, mean ± std bands and error bars
over seeds, learning curves.

The only report module that imports matplotlib (headless, Agg), so nothing
imports it until a figure is drawn.
"""

import contextlib
import io
import os
from typing import Mapping, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")  # Headless: CI, TPU VMs, Colab all write PNGs.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from jaxunknowns import metrics as metrics_lib
from jaxunknowns import paths
from jaxunknowns.report.text import std_of


@contextlib.contextmanager
def figure(path: str, panels: int = 1, size: Tuple[float, float] = (6.4, 4.2),
           title: str = "", cols: int = 0, dpi: int = 110):
  """Yields the panels' axes (a flat list); then gives each panel a light
  grid and a legend where its labelled lines differ from an earlier panel's,
  hides unused panels and writes the PNG atomically. `size`: one panel's."""
  cols = cols or panels
  rows = -(-panels // cols)
  fig, axes = plt.subplots(rows, cols, squeeze=False,
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
  """Steps present for every seed, with mean and std across seeds."""
  if not per_seed:
    return np.array([]), np.array([]), np.array([])
  common = sorted(set.intersection(*[set(c) for c in per_seed.values()]))
  vals = np.array([[float(per_seed[s][t]) for t in common] for s in per_seed])
  return np.array(common), vals.mean(0), vals.std(0)


def plot_band(ax, per_seed, label, scale=1.0, **kw):
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
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
  for split, style in (("minibatch", "-"), ("train", "-."),
                       ("validation", ":"), ("test", "--")):
    loss = metrics_lib.curves(rows, split, "loss", **labels)
    acc = metrics_lib.curves(rows, split, "accuracy", **labels)
    plot_band(ax_loss, loss, split, linestyle=style)
    plot_band(ax_acc, acc, split, scale=100, linestyle=style)
  ax_loss.set_yscale("log")
  ax_loss.set_xlabel("step")
  ax_loss.set_ylabel("loss")
  ax_acc.set_xlabel("step")
  ax_acc.set_ylabel("accuracy (%)")
  for ax in (ax_loss, ax_acc):
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  return save_figure(fig, path)


def save_figure(fig, path: str, dpi: int = 110, **savefig_kwargs) -> str:
  """fig.savefig, atomically (a killed rebuild leaves the old PNG), then
  closed; drawn in memory, so the path may be on an object store."""
  buffer = io.BytesIO()
  fig.savefig(buffer, dpi=dpi,
              format=os.path.splitext(path)[1].lstrip(".") or "png",
              **savefig_kwargs)
  plt.close(fig)
  paths.write_atomic(path, buffer.getvalue())
  return path
