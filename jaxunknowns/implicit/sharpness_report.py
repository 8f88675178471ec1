"""report.md and figures of `sharpness`, from the workdir (summary.json and
the Hessian rows of metrics.jsonl): the per-arm table and the top Hessian
eigenvalue along training (epochs on the x axis)."""

import os
from typing import Any, List, Mapping

from jaxunknowns import report
from jaxunknowns.metrics import read_metrics
from jaxunknowns.report.plots import plt

FIGURE = "eigenvalue_along_training.png"
# Keskar et al.'s finding, the directions this report checks (they state it
# for their networks and data; the numbers of ours are in the table).
CLAIM = ("Keskar, Mudigere, Nocedal, Smelyanskiy & Tang 2017: with the same "
         "epochs, large batches (10% of the data) converge to sharper minima "
         "than small batches, and those generalize worse (lower test "
         "accuracy). Sharpness is their eps-sharpness (eps = 1e-3) and, here "
         "also, the top Hessian eigenvalue.")


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
  report.save_figure(fig, os.path.join(path, FIGURE))
  return drawn


def versus_rows(summary) -> List[List[Any]]:
  """One row per quantity Keskar et al. state: the last arm (large batch)
  against the first (small batch), and whether ours go their way."""
  c = summary["checks"]
  if not c:
    return []
  a, b = (summary["arms"][c["first"]], summary["arms"][c["last"]])
  yes = lambda v: "yes" if v else "**no**"
  rows = [["test accuracy (%)", "lower with the large batch",
           report.fmt(a["final"]["test"]["accuracy"]),
           report.fmt(b["final"]["test"]["accuracy"]),
           yes(c["lower_test_accuracy"])],
          ["top Hessian eigenvalue", "larger with the large batch",
           report.fmt(a["top_eigenvalue"], scale=1.0, digits=3),
           report.fmt(b["top_eigenvalue"], scale=1.0, digits=3),
           yes(c["larger_top_eigenvalue"])]]
  for eps in summary["arms"][c["first"]]["sharpness"]:
    rows.append([f"eps-sharpness, eps = {eps}", "larger with the large batch",
                 report.fmt(a["sharpness"][eps], scale=1.0, digits=4),
                 report.fmt(b["sharpness"][eps], scale=1.0, digits=4),
                 yes(c[f"sharper_eps_{eps}"])])
  return rows


def differences(config, summary) -> str:
  c = summary["checks"]
  if not c:
    return ("One arm only: nothing to compare with Keskar et al.'s small vs "
            "large batch.")
  a, b = (summary["arms"][c["first"]], summary["arms"][c["last"]])
  first, last = c["first"], c["last"]
  held, failed = [], []
  acc = 100 * (b["final"]["test"]["accuracy"]["mean"] -
               a["final"]["test"]["accuracy"]["mean"])
  (held if c["lower_test_accuracy"] else failed).append(
      f"{last} tests {acc:+.2f} points against {first}")
  ratio = b["top_eigenvalue"]["mean"] / a["top_eigenvalue"]["mean"]
  (held if c["larger_top_eigenvalue"] else failed).append(
      f"its top Hessian eigenvalue is {ratio:.2f}x {first}'s")
  for eps in a["sharpness"]:
    r = b["sharpness"][eps]["mean"] / max(a["sharpness"][eps]["mean"], 1e-30)
    (held if c[f"sharper_eps_{eps}"] else failed).append(
        f"its eps-sharpness at eps = {eps} is {r:.2f}x {first}'s")
  parts = []
  if held:
    parts.append("As in the paper: " + "; ".join(held) + ".")
  if failed:
    parts.append("Unlike the paper: " + "; ".join(failed) + ".")
  parts.append(
      f"Ours compare directions, not Keskar et al.'s magnitudes: another "
      f"network and data (`{config.model.name}` on `{config.data.name}`), "
      f"batch {a['batch_size']} vs {b['batch_size']} for "
      f"{summary['epochs']:g} epochs, eps-sharpness maximised by "
      f"{config.sharpness.iterations} projected sign-gradient ascent steps "
      f"(theirs: L-BFGS-B) on {summary['sharpness_subset']} training "
      f"examples" + (f", and {len(summary['seeds'])} seeds per arm, so "
                     f"gaps within the std above are noise" if failed else "")
      + ".")
  return " ".join(parts)


def write(path, config, summary: Mapping[str, Any]):
  """report.md and eigenvalue_along_training.png from the workdir's files
  (the run calls it last; `python -m jaxunknowns.report_cli` on a finished
  workdir)."""
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
  details = [
      "### Results (mean ± std over seeds)\n\n" + report.markdown_table(
          ["arm", "batch", "steps", "test acc (%)", "train acc (%)",
           "top eigenvalue"] + [f"eps-sharpness {e}" for e in eps], rows)]
  c = summary["checks"]
  if c:
    details.append(
        f"### Keskar's claim, {c['last']} vs {c['first']}\n\n" +
        "\n".join(f"- {k}: {v}" for k, v in c.items()
                  if k not in ("first", "last")))
  figures = []
  if eigenvalue_curves(path, summary):
    figures.append(("Top Hessian eigenvalue of the training loss (on the "
                    "fixed Hessian subset) along training, per arm, mean ± "
                    "std over seeds; epochs on the x axis", FIGURE))
  reference = config.get("reference")
  claim = reference.get("claim", "") if reference is not None else ""
  first = summary["compare"][0]
  last = summary["compare"][-1]
  seconds = ", ".join(
      f"{n} {a['train_seconds']:.0f} s training + "
      f"{a['hessian_final_seconds'] + a['sharpness_seconds']:.0f} s final "
      f"Hessian and sharpness" for n, a in summary["arms"].items()
      if "train_seconds" in a)
  report.write_page(path, report.Page(
      title=f"sharpness: {config.model.name} on {config.data.name}",
      claim=claim or CLAIM,
      config=(
          f"Keskar et al. (2017): small vs large batch, `{config.model.name}` "
          f"on `{config.data.name}`, {config.optim.name} lr {config.optim.lr}, "
          f"the same {summary['epochs']:g} epochs per arm, "
          f"{len(summary['seeds'])} seeds per arm trained at once. Top "
          f"Hessian eigenvalue: Lanczos on {summary['hessian_subset']} "
          f"training examples; eps-sharpness 100 (max L - L)/(1 + L) over the "
          f"box |delta_i| <= eps(|x_i| + 1), {config.sharpness.iterations} "
          f"projected sign-gradient ascent steps, on "
          f"{summary['sharpness_subset']} training examples; BatchNorm (if "
          f"any) in eval mode."),
      figures=figures,
      versus=(["quantity", f"paper ({last} vs {first})",
               f"ours: {first}", f"ours: {last}", "as in the paper"],
              versus_rows(summary)),
      differences=differences(config, summary),
      details=details,
      run=report.run_line(summary, f"Per arm: {seconds}." if seconds
                          else "")))
