"""report.md and figures of `bn_only` from summary.json (and the stages'
gammas.npz, where the workdir has them)."""

import os

import numpy as np

from jaxunknowns import report
from jaxunknowns.batchnorm import bn_grid_report, papers
from jaxunknowns.report import compare


def comparisons(summary, ours):
  arms, out = summary["arms"], []
  if "bn" not in arms:
    return out
  bn = lambda p: p["arms"]["bn"]["test_accuracy"]  # pylint: disable=unnecessary-lambda-assignment
  for p in summary["points"]:
    ref = papers.BN_ONLY_AT_DEPTH.get(p["depth"])
    differ = ref and compare.protocol_differences(ref.protocol, ours)
    if ref:  # Absolute accuracies compare only under the paper's protocol.
      holds, rule = compare.within(bn(p), {"mean": ref.value / 100}, tolerance=
                                   0.02, a_name="ours", b_name="paper")
      out.append(compare.comparison(
          f"BN-only test accuracy (%), ResNet-{p['depth']} width {p['width']}",
          ref, report.fmt(bn(p)), None if differ else holds, rule,
          why_not_testable="; ".join(differ)))
  for width in summary["widths"]:
    pts = sorted((p for p in summary["points"] if p["width"] == width),
                 key=lambda p: p["depth"])
    holds, rule = compare.monotone([bn(p)["mean"] for p in pts],
                                   increasing=True, what="BN-only mean")
    out.append(compare.comparison(
        f"BN-only vs depth (width {width})", papers.BN_ONLY_DEPTH,
        " → ".join(f"{100 * bn(p)['mean']:.2f}" for p in pts), holds, rule,
        paper="rises", our_protocol=ours))
    pairs = [(p, a) for p in pts for a in ("random2", "output") if a in arms]
    if pairs:  # The closest control over depths decides.
      p, a = min(pairs, key=lambda t: bn(t[0])["mean"]
                 - t[0]["arms"][t[1]]["test_accuracy"]["mean"])
      out += bn_grid_report.compared([(
          f"BN-only vs the closest control, {a} at ResNet-{p['depth']} "
          f"(width {width})", papers.BN_ONLY_CONTROLS, "far above", None,
          (bn(p), "BN-only"), (p["arms"][a]["test_accuracy"], a))], ours)
  deepest = max(summary["points"], key=lambda p: (p["depth"], p["width"]))
  g = deepest["arms"]["bn"]["gamma_near_zero"]
  (low, low_rule), (high, high_rule) = (compare.at_least(g, 0.25),
                                        compare.at_most(g, 1 / 3))
  return out + [compare.comparison(
      f"γ below {summary['gamma_threshold']:g} in magnitude (%), "
      f"ResNet-{deepest['depth']}", papers.GAMMA_OFF, report.fmt(g),
      low and high, f"{low_rule}; {high_rule}", paper="25–33",
      our_protocol=ours)]


def write(path, config, summary):
  """report.md, accuracy_vs_depth.png and (from the stages' gammas.npz)
  gamma_histogram.png: final γ of every BN-only run, one panel a stage."""
  cells = [{"cell": {"arm": a, "width": p["width"], "depth": p["depth"]},
            **p["arms"][a]} for a in summary["arms"] for p in summary["points"]]
  bn_grid_report.accuracy_figure(cells, "depth",
                                 os.path.join(path, "accuracy_vs_depth.png"))
  if "bn" in summary["arms"] and os.path.isdir(os.path.join(path, "stages")):
    pts = summary["points"]
    fig, axes = report.plt.subplots(1, len(pts), squeeze=False,
                                    figsize=(4 * len(pts), 3.5))
    for ax, p in zip(axes[0], pts):
      g = np.load(os.path.join(path, "stages", f"depth_{p['depth']:04d}_width_"
                               f"{p['width']:03d}", "gammas.npz"))
      ax.hist(g["final"][g["arms"] == "bn"].ravel(), bins=60, range=(-1, 2))
      ax.set(title=f"ResNet-{p['depth']} width {p['width']}", xlabel="γ")
    report.save_figure(fig, os.path.join(path, "gamma_histogram.png"))
  o = config.optim
  bn_grid_report.page(
      path, [*papers.BN_ONLY_AT_DEPTH.values(), papers.BN_ONLY_DEPTH,
             papers.BN_ONLY_CONTROLS, papers.GAMMA_OFF],
      [("Test and train accuracy vs ResNet depth per arm",
        "accuracy_vs_depth.png"), ("γ after training", "gamma_histogram.png")],
      title=f"bn_only: {config.data.name}",
      config=(f"`{config.data.name}` at input {tuple(summary['input_shape'])}"
              f", {summary['train_examples']} training / "
              f"{summary['test_examples']} test examples; ResNet-"
              f"{'/'.join(map(str, summary['depths']))} of width "
              f"{'/'.join(map(str, summary['widths']))}; {o.name} lr {o.lr} "
              f"({o.schedule}), wd {o.weight_decay}, batch "
              f"{config.train.batch_size}, {summary['steps']} steps; "
              f"{len(summary['seeds'])} seeds, each from the same weights and "
              f"batches in every arm."),
      comparisons=comparisons(summary, {
          "model": config.model.name, "data": config.data.name,
          "steps": summary["steps"], "optimizer": o.name}),
      details=["### Every arm\n\n" + report.markdown_table(
          ["arm", "model", "trainable", "test acc (%)", "train acc (%)",
           f"γ below {summary['gamma_threshold']:g} (%)", "at init (%)"],
          [[q["cell"]["arm"], f"ResNet-{q['cell']['depth']} width "
            f"{q['cell']['width']}", f"{q['trainable']:,}"] + [
                report.fmt(q.get(k)) for k in (
                    "test_accuracy", "train_accuracy", "gamma_near_zero",
                    "gamma_near_zero_init")] for q in cells]),
               "Largest change of a frozen entry over all runs: "
               f"{max(q['frozen_max_change'] for q in cells)}."],
      run=report.run_line(summary, f"Stages "
                          f"{summary['stages_wall_time_s']:.0f} s."))
