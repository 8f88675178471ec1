"""report.md and figure of `bn_only` from summary.json."""

import os

from jaxunknowns import report
from jaxunknowns.batchnorm import bn_grid_report, papers
from jaxunknowns.report import compare


def comparisons(summary, ours):
  arms, at = summary["arms"], papers.BN_ONLY_AT_DEPTH
  if "bn" not in arms:
    return []
  bn = lambda p: p["arms"]["bn"]["test_accuracy"]  # pylint: disable=unnecessary-lambda-assignment
  out = bn_grid_report.compared([(
      f"BN-only test accuracy (%), ResNet-{p['depth']} width {p['width']}",
      at[p["depth"]], None, 0.02, (bn(p), "ours"), (
          {"mean": at[p["depth"]].value / 100}, "paper"))
                                 for p in summary["points"] if p["depth"] in at],
                                ours)
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
  """report.md and accuracy_vs_depth.png from summary.json."""
  cells = [{"cell": {"arm": a, "width": p["width"], "depth": p["depth"]},
            **p["arms"][a]} for a in summary["arms"] for p in summary["points"]]
  bn_grid_report.accuracy_figure(cells, "depth",
                                 os.path.join(path, "accuracy_vs_depth.png"))
  bn_grid_report.page(
      path, config, summary,
      [("Test and train accuracy vs ResNet depth per arm",
        "accuracy_vs_depth.png")],
      lambda ours: comparisons(summary, ours),
      ["### Every arm (γ near zero: below "
       f"{summary['gamma_threshold']:g} in magnitude)\n\n" + bn_grid_report.table(
           cells, ("trainable", "test_accuracy", "train_accuracy",
                   "gamma_near_zero", "gamma_near_zero_init",
                   "frozen_max_change"))],
      steps=summary["steps"],
      setup=(f"input {tuple(summary['input_shape'])}, "
             f"{summary['train_examples']} training / "
             f"{summary['test_examples']} test examples; ResNet-"
             f"{'/'.join(map(str, summary['depths']))} of width "
             f"{'/'.join(map(str, summary['widths']))}, {config.optim.schedule}"
             f" schedule, wd {config.optim.weight_decay}, batch "
             f"{config.train.batch_size}, {summary['steps']} steps"),
      run=f"Stages {summary['stages_wall_time_s']:.0f} s.")
