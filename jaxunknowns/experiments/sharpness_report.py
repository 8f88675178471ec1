"""report.md and figures of `sharpness`: the per-arm table and the top
Hessian eigenvalue along training (epochs on the x axis)."""

import os

from jaxunknowns import report
from jaxunknowns.metrics import read_metrics
from jaxunknowns.report import plt


def eigenvalue_curves(path, summary) -> bool:
  rows = read_metrics(path)
  fig, ax = plt.subplots(figsize=(6, 4))
  drawn = False
  for name in summary["compare"]:
    per_epoch = summary["arms"][name]["steps_per_epoch"]
    per_seed = {}
    for row in rows:
      if row.get("split") == "hessian" and row.get("arm") == name:
        per_seed.setdefault(row["seed"], {})[row["step"] / per_epoch] = \
            row["eig_0"]
    if per_seed:
      report.plot_band(ax, per_seed, name, marker="o")
      drawn = True
  ax.set_xlabel("epoch")
  ax.set_ylabel("top Hessian eigenvalue (train subset)")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(path, "eigenvalue_along_training.png"), dpi=110)
  plt.close(fig)
  return drawn


def write(path, config, summary):
  eps = [f"{e:g}" for e in summary["epsilons"]]
  rows = []
  for name in summary["compare"]:
    a = summary["arms"][name]
    rows.append([name, a["batch_size"], a["steps"],
                 report.fmt(a["final"]["test"]["accuracy"]),
                 report.fmt(a["final"]["train"]["accuracy"]),
                 report.fmt(a["top_eigenvalue"], scale=1.0, digits=3)] +
                [report.fmt(a["sharpness"][e], scale=1.0, digits=4)
                 for e in eps])
  sections = [
      f"Keskar et al. (2017): small vs large batch, `{config.model.name}` on "
      f"`{config.data.name}`, {config.optim.name} lr {config.optim.lr}, the "
      f"same {summary['epochs']:g} epochs per arm, "
      f"{len(summary['seeds'])} seeds per arm trained at once. Top Hessian "
      f"eigenvalue: Lanczos on {summary['hessian_subset']} training "
      f"examples; eps-sharpness 100 (max L - L)/(1 + L) over the box "
      f"|delta_i| <= eps(|x_i| + 1), {config.sharpness.iterations} projected "
      f"sign-gradient ascent steps, on {summary['sharpness_subset']} "
      f"training examples; BatchNorm (if any) in eval mode.",
      "## Results (mean ± std over seeds)\n\n" + report.markdown_table(
          ["arm", "batch", "steps", "test acc (%)", "train acc (%)",
           "top eigenvalue"] + [f"eps-sharpness {e}" for e in eps], rows),
  ]
  c = summary["checks"]
  if c:
    sections.append(
        f"## Keskar's claim, {c['last']} vs {c['first']}\n\n" +
        "\n".join(f"- {k}: {v}" for k, v in c.items()
                  if k not in ("first", "last")))
  if eigenvalue_curves(path, summary):
    sections.append("## Top eigenvalue along training\n\n"
                    "![eigenvalue](eigenvalue_along_training.png)")
  sections.append(f"Wall time {summary['wall_time_s']:.0f} s on "
                  f"{summary['machine']['num_devices']} x "
                  f"{summary['machine']['device_kind']}.")
  report.write_report(os.path.join(path, "report.md"),
                      f"sharpness: {config.model.name} on {config.data.name}",
                      sections)
