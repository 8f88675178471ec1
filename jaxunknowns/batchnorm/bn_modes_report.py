"""report.md and figure of `bn_modes` from summary.json."""

import os

from jaxunknowns import report
from jaxunknowns.batchnorm import bn_grid_report, papers
from jaxunknowns.report import compare


def comparisons(modes, sizes):
  small = f"batch_{sizes[0]}"
  holds, rule = compare.monotone([modes[f"batch_{b}"]["mean"] for b in sizes],
                                 increasing=True, what="accuracy")
  return bn_grid_report.compared([
      (f"test accuracy (%): running vs batch statistics at eval batch "
       f"{sizes[0]}", papers.INFERENCE_MODE, "batch statistics below", None,
       (modes["running"], "running"), (modes[small], small)),
      ("test accuracy (%) after fine-tuning: updated vs stale running "
       "statistics", papers.INFERENCE_MODE, "stale below", None,
       (modes["fresh_finetune"], "updated"), (modes["stale_finetune"], "stale")),
      ("test accuracy (%) on shifted inputs: statistics re-estimated on them "
       "vs the training ones", papers.ADABN, "re-estimated above", None,
       (modes["shift_recalibrated"], "re-estimated"),
       (modes["shift_stale"], "training"))]) + [compare.comparison(
           f"batch statistics: accuracy vs eval batch {sizes}",
           papers.INFERENCE_MODE, " → ".join(
               f"{100 * modes[f'batch_{b}']['mean']:.2f}" for b in sizes),
           holds, rule, paper="rises towards running statistics")]


def write(path, config, summary):
  """report.md and batch_size_eval.png."""
  modes, m = summary["modes"], config.bn_modes
  sizes = sorted(int(k[6:]) for k in modes if k.startswith("batch_"))
  bn_grid_report.accuracy_figure(
      [{"cell": {"statistics": s, "eval_batch": b},
        "test_accuracy": modes[f"batch_{b}" if s == "batch" else s]}
       for s in ("batch", "running") for b in sizes], "eval_batch",
      os.path.join(path, "batch_size_eval.png"))
  bn_grid_report.page(
      path, config, summary,
      [("Test accuracy vs eval batch size, batch and running statistics",
        "batch_size_eval.png")], lambda ours: comparisons(modes, sizes),
      ["### Test accuracy (%) by inference mode\n\n" + report.markdown_table(
          ["mode", "accuracy", "the bug it corresponds to"],
          [[k, report.fmt(v), summary["bugs"][k]] for k, v in modes.items()])],
      steps=summary["steps"],
      setup=(f"{summary['model']}-{summary['depth']} of width "
             f"{summary['width']} at input {tuple(summary['input_shape'])}, "
             f"batch {config.train.batch_size}, {summary['steps']} steps, "
             f"then {summary['finetune_steps']} more; shifted inputs "
             f"{m.shift_scale:g}·x + {m.shift:g}, statistics re-estimated on "
             f"{m.recalibrate_batches} batches of them"),
      run=f"Training {summary['train_wall_time_s']:.0f} s.")
