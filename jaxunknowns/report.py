"""Figures and report.md, built from a workdir's metrics.jsonl and summary.json.

Every experiment's report.md has one shape (`Page`): the claim, the config,
the figures, our numbers beside the paper's, and where and why they differ,
then the experiment's own detail tables and the machine and time. A report
reads only files the run wrote (config.json, summary.json, metrics.jsonl,
saved arrays), so `python -m jaxunknowns.report_cli --workdir=DIR` rebuilds
it from an existing workdir.
"""

import dataclasses
import os
from typing import Any, List, Mapping, Optional, Sequence, Tuple

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
  return save_figure(fig, path)


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


def within_seed_spread(diff: Mapping[str, Any], floor: float = 0.005) -> bool:
  """A difference {mean, std} over seeds no larger than twice its std (or
  than `floor`, for seeds that happen to agree): the reports call it "the
  same within the seed spread"."""
  return abs(diff["mean"]) <= max(2 * diff["std"], floor)


def _cell(value: Any) -> str:
  # A '|' inside a cell (||w||, |γ|) would split it: escape it.
  return str(value).replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  lines = ["| " + " | ".join(_cell(h) for h in header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def _write_text(path: str, text: str):
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)  # Never a half-written report.md.


def write_report(path: str, title: str, sections: List[str]):
  """A markdown page of free-form sections (the sweep's aggregate)."""
  _write_text(path, f"# {title}\n\n"
              + "\n\n".join(s.strip() for s in sections) + "\n")


def save_figure(fig, path: str, dpi: int = 110, **savefig_kwargs) -> str:
  """fig.savefig, atomically (a killed rebuild leaves the old PNG), then closed."""
  root, ext = os.path.splitext(path)
  tmp = f"{root}.tmp{ext}"
  fig.savefig(tmp, dpi=dpi, **savefig_kwargs)
  plt.close(fig)
  os.replace(tmp, path)
  return path


# The headings of a report, in order; tests check every experiment's
# report.md against them.
CLAIM, CONFIG = "**Claim.**", "**Config.**"
FIGURES, VERSUS = "## Figures", "## Ours beside the paper"
DIFFER, DETAILS, RUN = "**Where and why we differ.**", "## Details", "**Run.**"
PAGE_HEADINGS = (CLAIM, CONFIG, FIGURES, VERSUS, DIFFER, DETAILS, RUN)


@dataclasses.dataclass
class Page:
  """One experiment's report.md.

  claim:       the paper's finding, with its source and numbers.
  config:      what ran: model, data, optimizer, budget, seeds.
  figures:     (caption, PNG file name in the workdir), in reading order.
  versus:      (header, rows): a table of the paper's numbers beside ours
               (mean ± std over seeds), one quantity a row.
  differences: where ours differ from the paper's and why (or that they don't).
  details:     the experiment's own sections (full tables, notes), each
               starting with a '### ' heading or plain text.
  run:         machine and time (`run_line`).
  """
  title: str
  claim: str
  config: str
  figures: Sequence[Tuple[str, str]]
  versus: Tuple[Sequence[str], Sequence[Sequence[Any]]]
  differences: str
  run: str
  details: Sequence[str] = ()

  def markdown(self) -> str:
    figures = "\n\n".join(f"![{caption}]({name})\n\n*{caption}*"
                           for caption, name in self.figures)
    header, rows = self.versus
    sections = [
        f"{CLAIM} {self.claim.strip()}",
        f"{CONFIG} {self.config.strip()}",
        f"{FIGURES}\n\n{figures or 'None.'}",
        f"{VERSUS}\n\n{markdown_table(header, rows)}",
        f"{DIFFER} {self.differences.strip()}",
        f"{DETAILS}\n\n" + ("\n\n".join(d.strip() for d in self.details)
                             or "None."),
        f"{RUN} {self.run.strip()}",
    ]
    return f"# {self.title}\n\n" + "\n\n".join(sections) + "\n"


def write_page(workdir: str, page: Page) -> str:
  """Writes WORKDIR/report.md atomically; returns its path."""
  path = os.path.join(workdir, "report.md")
  _write_text(path, page.markdown())
  return path


def run_line(summary: Mapping[str, Any], extra: str = "") -> str:
  """'Wall time 12 s on 1 × cpu, jax 0.10.2.' from a summary's machine and
  wall time, then any `extra` figures (steps/s, stage times)."""
  machine = summary.get("machine", {})
  wall = summary.get("wall_time_s")
  where = (f"{machine.get('num_devices', '?')} × "
           f"{machine.get('device_kind', '?')}")
  if machine.get("num_processes", 1) > 1:
    where += f" in {machine['num_processes']} processes"
  text = (f"Wall time {wall:.0f} s" if wall is not None else "Wall time –")
  text += f" on {where}, jax {machine.get('jax', '?')}."
  return text + (f" {extra.strip()}" if extra else "")
