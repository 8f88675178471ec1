"""`bn_placement`: batch norm before vs after the activation (Dense -> BN ->
ReLU, the original paper's placement, vs Dense -> ReLU -> BN), several seeds;
final accuracy, accuracy-vs-step curves, steps to a target accuracy, and
training speed (steps/s of the fit, and a pure-training throughput measured
after compilation). An optional `none` cell is the no-norm baseline.
"""

import os

import numpy as np
from absl import logging

from jaxunknowns import experiments, report, validation
from jaxunknowns.batchnorm import bn_grid
from jaxunknowns.batchnorm import bn_grid_report
from jaxunknowns.metrics import curves, read_metrics, stats, write_json
from jaxunknowns.models.layers import NORM_POSITIONS, check_choice
from jaxunknowns.workdir import SUMMARY_FILE

GRID_NORMS = ("batch", "group", "layer")


def axes(config):
  g = config.grid
  return [bn_grid.Axis("norm", "model.norm", tuple(g.norms), "grid.norms"),
          bn_grid.Axis("position", "model.norm_position", tuple(g.positions),
                       "grid.positions")]


def extra_cells(config):
  return [{"norm": "none", "position": "before"}] if config.grid.baseline else []


def validate(config):
  validation.validate_base(config)
  bn_grid.check_axes(axes(config))
  g, check = config.grid, validation.check
  for norm in g.norms:
    check_choice("grid.norms", norm, GRID_NORMS)
  for position in g.positions:
    check_choice("grid.positions", position, NORM_POSITIONS)
  check(0.0 < g.target_accuracy <= 1.0, "grid.target_accuracy",
        g.target_accuracy, "in (0, 1]")
  check(isinstance(g.evals_per_cell, int) and g.evals_per_cell >= 1,
        "grid.evals_per_cell", g.evals_per_cell,
        "an integer >= 1 (the accuracy-vs-step curves)")
  check(isinstance(g.speed_steps, int) and g.speed_steps >= 0,
        "grid.speed_steps", g.speed_steps, "an integer >= 0 (0 = no timing)")
  for norm in g.norms:
    model = config.model.copy_and_resolve_references()
    model.norm = norm
    validation.check_batch_norm_batch_size(
        model, config.train.batch_size, where=f"grid cell norm={norm}: ")


def derive(c, cell, num_train):
  del cell, num_train
  bn_grid.set_budget(c, c.train.steps, c.grid.evals_per_cell)


def steps_to_target(rows, cell, target):
  """Per seed: the first evaluated step with test accuracy >= target (None if
  never reached)."""
  per_seed = curves(rows, "test", "accuracy", **cell["cell"])
  out = []
  for seed in sorted(per_seed):
    hit = [t for t, a in sorted(per_seed[seed].items()) if a >= target]
    out.append(hit[0] if hit else None)
  return out


def run(config, workdir):
  g = config.grid
  summary = bn_grid.run_grid(config, workdir, axes(config),
                             derive=derive, extra_cells=extra_cells(config),
                             speed_steps=g.speed_steps)
  rows = read_metrics(workdir.path)
  for q in summary["cells"]:
    hits = steps_to_target(rows, q, g.target_accuracy)
    q["steps_to_target"] = hits
    ok = [h for h in hits if h is not None]
    q["steps_to_target_mean"] = float(np.mean(ok)) if len(ok) == len(hits) else None
  summary.update(experiment="bn_placement",
                 target_accuracy=g.target_accuracy,
                 readings=readings(summary["cells"], list(g.norms)))
  # summary.json first: the report is rebuilt from it.
  write_json(workdir.file(SUMMARY_FILE), summary)
  write_report(workdir.path, config, summary)
  logging.info("readings: %s", summary["readings"])
  return summary


def readings(cells, norms):
  """after - before, per norm: test accuracy (per-seed differences: both
  positions train from the same seeds and see the same batches) and speed."""
  out = {}
  for norm in norms:
    before = bn_grid.find(cells, norm=norm, position="before")
    after = bn_grid.find(cells, norm=norm, position="after")
    if not (before and after):
      continue
    b, a = before[0], after[0]
    out[norm] = {
        "after_minus_before_test_accuracy": stats(
            bn_grid.per_seed(a, "test_accuracy")
            - bn_grid.per_seed(b, "test_accuracy")),
        "train_steps_per_second_ratio_after_over_before": (
            a["train_speed"]["median"] / b["train_speed"]["median"]
            if a.get("train_speed") and b.get("train_speed") else None),
    }
  return out


# The paper's claim, quoted in report.md (a config's reference.claim,
# where set, replaces it).
CLAIM = (
    "Ioffe & Szegedy 2015 (Sec. 3.2) put BN immediately before the "
    "nonlinearity, normalizing Wu + b, which they expect to be closer to "
    "Gaussian than the layer's input; they compare no other placement. "
    "Applied to Inception on ImageNet, BN reached the original model's "
    "accuracy in 14 times fewer training steps (with a raised learning rate "
    "and other changes, Sec. 4.2) and then beat it.")
PAPER_SPEEDUP = 14  # Fewer steps to the same accuracy with BN (Inception).


def _cell(cells, norm, position=None):
  hit = bn_grid.find(cells, norm=norm, **({"position": position}
                                          if position else {}))
  return hit[0] if hit else None


def speedup(slow, fast):
  """Per seed, steps to target of `slow` over those of `fast`; None unless
  every seed of both reached the target."""
  a, b = slow["steps_to_target"], fast["steps_to_target"]
  if None in a or None in b:
    return None
  return stats(np.divide(a, b, dtype=np.float64))


def versus_rows(summary):
  cells, rows = summary["cells"], []
  target = f"{100 * summary['target_accuracy']:g}%"
  for norm, r in summary["readings"].items():
    rows.append([f"{norm} norm after minus before the ReLU, test accuracy "
                 f"(points)", "– (the paper places BN before the "
                 "nonlinearity and compares no other placement)",
                 bn_grid_report.points(r["after_minus_before_test_accuracy"])])
  before, none = _cell(cells, "batch", "before"), _cell(cells, "none")
  if before and none:
    s = speedup(none, before)
    rows.append([f"steps to {target} test: no norm over BN before the ReLU",
                 f"{PAPER_SPEEDUP}× fewer steps with BN (Inception, ImageNet,"
                 f" raised learning rate)",
                 report.fmt(s, scale=1.0) if s else
                 "– (not every seed reached the target)"])
    rows.append(["BN before the ReLU minus no norm, final test accuracy "
                 "(points)", "above: BN-Inception beat Inception",
                 bn_grid_report.points(bn_grid_report.paired(before, none))])
  if not rows:
    rows.append(["–", "–", "– (no cell pair to compare)"])
  return rows


def differences(config, summary) -> str:
  cells, out = summary["cells"], []
  for norm, r in summary["readings"].items():
    d = r["after_minus_before_test_accuracy"]
    same = report.within_seed_spread(d)
    out.append(f"{norm} norm after the ReLU ends "
               f"{100 * d['mean']:+.2f} ± {100 * d['std']:.2f} points from "
               f"before it"
               + (" (the same within the seed spread; the paper has no "
                  "comparison)" if same else
                  f" ({'better' if d['mean'] > 0 else 'worse'} than the "
                  f"paper's placement)"))
  before, none = _cell(cells, "batch", "before"), _cell(cells, "none")
  if before and none:
    s = speedup(none, before)
    target = f"{100 * summary['target_accuracy']:g}%"
    reached = set(before["steps_to_target"]) | set(none["steps_to_target"])
    if s and len(reached) == 1:
      out.append(f"BN before the ReLU and no norm reach {target} test at the "
                 f"same evaluation (step {reached.pop()} on every seed), so "
                 f"this run does not measure the paper's {PAPER_SPEEDUP}× "
                 f"speed-up")
    elif s:
      ratios = ", ".join(f"{x:.2f}" for x in s["per_seed"])
      out.append(
          (f"BN before the ReLU reaches {target} test in {s['mean']:.2f}× "
           f"fewer steps than no norm" if s["mean"] > 1 else
           f"BN before the ReLU takes no fewer steps than no norm to reach "
           f"{target} test (no norm's steps over BN's: {s['mean']:.2f}×)")
          + f" (per-seed ratios {ratios}), against the paper's "
          f"{PAPER_SPEEDUP}× fewer")
    else:
      out.append(f"not every seed reached {target} test, so the paper's "
                 f"{PAPER_SPEEDUP}× speed-up is not measured")
    d = bn_grid_report.paired(before, none)
    same = report.within_seed_spread(d)
    out.append(f"BN before the ReLU's final test accuracy is "
               f"{100 * d['mean']:+.2f} ± "
               f"{100 * d['std']:.2f} points from no norm's"
               + (" (the same within the seed spread, where the paper's BN "
                  "model ends above)" if same else
                  ", above it as in the paper" if d["mean"] > 0 else
                  ", below it, unlike the paper"))
  text = "; ".join(out) if out else "Nothing to compare with the paper"
  return (text[0].upper() + text[1:] + f". Likely reasons: every cell trains "
          f"at one learning rate ({config.optim.lr:g}, stable without a norm "
          f"too), while the paper's speed-up came from the higher rates BN "
          f"allows and other changes; and the {config.model.name} with widths "
          f"{tuple(config.model.widths)} on {summary['train_examples']} "
          f"{config.data.name} examples trains well without a norm, unlike "
          f"Inception on ImageNet.")


def write_report(path, config, summary):
  """report.md and curves.png from summary.json and metrics.jsonl."""
  cells, g = summary["cells"], config.grid
  title = f"{config.model.name} on {config.data.name}"
  bn_grid_report.plot_curves(read_metrics(path), cells, ["norm", "position"],
                             os.path.join(path, "curves.png"),
                             title=f"{title}: norm before vs after ReLU")
  header = ["norm", "position", "test acc (%)", "train acc (%)",
            "train loss (eval mode)",
            f"steps to {100 * g.target_accuracy:g}% test (per seed)",
            "fit steps/s", "train steps/s: median (best)", "load avg",
            "wall (s)"]
  table = []
  for q in cells:
    sp = q.get("train_speed")
    table.append([q["cell"]["norm"],
                  q["cell"]["position"] if q["cell"]["norm"] != "none" else "–",
                  bn_grid_report.pm(q["test_accuracy"]),
                  bn_grid_report.pm(q["train_accuracy"]),
                  bn_grid_report.pm(q["train_loss"], scale=1.0, digits=4),
                  ", ".join("–" if h is None else str(h)
                            for h in q["steps_to_target"]),
                  f"{q['steps_per_second']:.0f}",
                  f"{sp['median']:.0f} ({sp['best']:.0f})" if sp else "–",
                  f"{sp['load_average_1m']:.1f} / {sp['cpu_count']} cores"
                  if sp else "–", f"{q['wall_time_s']:.1f}"])
  lines = []
  for norm, r in summary["readings"].items():
    d = r["after_minus_before_test_accuracy"]
    ratio = r["train_steps_per_second_ratio_after_over_before"]
    lines.append(
        f"* {norm} norm, after − before: test accuracy "
        f"{100 * d['mean']:+.2f} ± {100 * d['std']:.2f} points (per-seed "
        f"differences); pure training throughput after/before "
        + (f"{ratio:.2f}× (both placements do the same arithmetic: a ratio "
           f"far from 1 is the machine's load, see the load average)."
           if ratio else "not measured."))
  report.write_page(path, report.Page(
      title=f"bn_placement: {config.data.name}",
      claim=bn_grid_report.claim_of(config, CLAIM),
      config=(
          f"`{config.model.name}` (widths {tuple(config.model.widths)}) on "
          f"`{config.data.name}` ({summary['train_examples']} training "
          f"examples), normalization before the ReLU (Dense → norm → ReLU) "
          f"or after it (Dense → ReLU → norm); {config.optim.name} lr "
          f"{config.optim.lr:g}, batch {config.train.batch_size}, "
          f"{cells[0]['steps']} steps, {len(summary['seeds'])} seeds per "
          f"cell (the same seeds and batches in every cell)."),
      figures=[("Test accuracy and training loss vs step per cell, mean ± "
                "std over seeds", "curves.png")],
      versus=(["quantity", "paper (Inception, ImageNet)",
               "ours (mean ± std over seeds)"], versus_rows(summary)),
      differences=differences(config, summary),
      details=[
          "### What the data show\n\n" + "\n".join(lines),
          "### Final accuracy and speed (mean ± std over seeds)\n\n"
          + report.markdown_table(header, table)
          + "\n\n*fit steps/s*: the training run's rate including its "
          "periodic evaluations and its final checkpoint (compilation "
          "excluded by a warm-up); *train steps/s*: "
          f"{g.speed_steps} steps of pure training timed chunk by chunk on a "
          "throwaway state after compilation, all seeds at once: the median "
          "chunk's rate and the best; *load avg*: the machine's 1-minute "
          "load average while timing."],
      run=report.run_line(summary, bn_grid_report.run_extra(summary))))


experiments.register("bn_placement", validate=validate,
                     report=write_report)(run)
