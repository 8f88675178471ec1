"""Figures and report.md, built from a workdir's metrics.jsonl and summary.json.

Everything here reads files the run wrote, so a report can be rebuilt from
an existing workdir (`python -m jaxunknowns.main --report_only ...`).
"""

import os
from typing import Any, List, Mapping, Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # Headless: CI, TPU VMs, Colab all write PNGs.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from jaxunknowns import metrics as metrics_lib


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
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def fmt(stat: Optional[Mapping[str, Any]], scale: float = 100.0,
        digits: int = 2) -> str:
  """'88.41 ± 0.12 (n=4)' from a {mean, std, per_seed} dict."""
  if not stat:
    return "–"
  n = len(stat.get("per_seed", []))
  s = f"{stat['mean'] * scale:.{digits}f}"
  if n > 1:
    s += f" ± {stat['std'] * scale:.{digits}f}"
  return s + f" (n={n})"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def write_report(path: str, title: str, sections: List[str]):
  text = f"# {title}\n\n" + "\n\n".join(s.strip() for s in sections) + "\n"
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)
