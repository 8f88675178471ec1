"""`train`: plain supervised training of `config.seeds` seeds at once.

The first user of the trainer: every other experiment is this loop plus
something done between or around training stages.
"""

import os
import time

from absl import logging

from jaxunknowns import experiments, paths, validation
from jaxunknowns import runs
from jaxunknowns.config_defaults import training_protocol
from jaxunknowns.metrics import MetricWriter, format_stats, read_metrics


def run(config, workdir):
  trainer = runs.build_trainer(config)
  workdir.open()
  seeds = runs.seeds_of(config)
  writer = MetricWriter(workdir.path)
  t0 = time.time()
  result = trainer.fit(
      trainer.init_state(seeds), steps=config.train.steps, data_seeds=seeds,
      writer=writer, run_labels=[{"seed": s} for s in seeds],
      checkpoint_dir=workdir.file("checkpoints"),
      # The initial weights are kept: rewinding and |W - W0| analyses need them.
      snapshot_dir=workdir.file("snapshots"), snapshot_steps=(0,),
      description="train")
  writer.close()
  return finish(config, workdir, trainer, result, seeds, time.time() - t0)


def finish(config, workdir, trainer, result, seeds, wall_time,
           trained_together=None):
  """summary.json and the report of a finished fit of `seeds` (also called
  by hparams.train_together for each run of a vmapped sweep, whose wall
  time and steps/s are the group's: `trained_together` {configs, runs}
  says so in the summary and the report)."""
  summary = {
      "experiment": "train",
      "dataset": config.data.name, "model": config.model.name,
      "steps": config.train.steps, "seeds": seeds,
      "final": runs.eval_stats(result.evals),
      "parameters": trainer.param_counts,
      "steps_per_second": result.steps_per_second,
      "wall_time_s": wall_time,
      "resumed_from_step": result.resumed_from,
      "machine": runs.machine_info(),
  }
  if trained_together:
    summary["trained_together"] = dict(trained_together)
  reference = config.get("reference")
  if reference is not None:
    summary["reference"] = reference.to_dict()
  experiments.finish("train", workdir, config, summary)
  logging.info("test accuracy %s%%; summary in %s", format_stats(
      summary["final"]["test"]["accuracy"]["per_seed"], 100),
               workdir.summary_path)
  return summary


def write_train_report(path, config, summary):
  """report.md and learning_curves.png from the workdir's files."""
  from jaxunknowns import report  # pylint: disable=g-import-not-at-top
  from jaxunknowns.report import compare, plots  # pylint: disable=g-import-not-at-top
  rows, figure = read_metrics(path), os.path.join(path, "learning_curves.png")
  corrupted = compare.corruption(config.data)
  if rows:  # else (metrics.jsonl gone or unreadable) the run's PNG stays
    plots.learning_curves(rows, figure,
                          title=f"{config.model.name} on {config.data.name}")
  final = summary["final"]
  ours = final["test"]["accuracy"]
  ref = summary.get("reference") or {}
  comparisons = []
  if ref.get("source"):
    paper = report.Reference(
        statement=f"{ref['test_accuracy'] * 100:.1f}% test accuracy",
        source=ref["source"], value=ref["test_accuracy"] * 100, unit="%",
        protocol=ref.get("protocol") or {})
    # A reproduction: within one point of the reference, or above it.
    holds, rule = compare.at_least(ours, ref["test_accuracy"], slack=0.01)
    # The number is for the variant's data and model: a run on another
    # (--config.data.name=digits, a sweep over model.name) is not judged by it.
    theirs = (ref.get("model") or summary["model"],
              ref.get("data") or summary["dataset"])
    why = ""
    if theirs != (summary["model"], summary["dataset"]):
      holds, rule = None, ""
      why = (f"the reference is for {theirs[0]} on {theirs[1]}; this run "
             f"trains {summary['model']} on {summary['dataset']}")
    comparisons.append(compare.comparison(
        "test accuracy (%)", paper, report.fmt(ours), holds, rule,
        our_protocol=training_protocol(config),
        declared=ref.get("protocol_differences", ()), why_not_testable=why))
  if not ref.get("source"):
    claim = ("None: plain supervised training, the baseline the other "
             "experiments build on (this variant names no reference number).")
  else:
    claim = (f"{ref['source']}: {ref['test_accuracy'] * 100:.1f}% test "
             "accuracy for " + (f"{theirs[0]} on {theirs[1]}." if ref.get("data")
                                else "this model and data."))
  # A run of a vmapped sweep: its time is the group's program's.
  group = summary.get("trained_together")
  together = (f", both of the one vmapped program that trained "
              f"{report.count(group['configs'], 'config')} of the sweep "
              f"together ({report.count(group['runs'], 'run')} of config × "
              f"seed)" if group else "")
  rate = summary["steps_per_second"]
  # No rate: resumed at its last step from a checkpoint with no timing
  # kept beside it (a vmapped group's hand-out), so no step was timed.
  speed = (f"{rate:.0f} steps/s" if rate else "Steps/s not measured (no "
           "step of this run was timed: it resumed at its last step)")
  details = ["### Final metrics\n\n" + report.markdown_table(
      ["split", "accuracy (%)", "loss"],
      [[split, report.fmt(final[split]["accuracy"]),
        report.fmt(final[split]["loss"], scale=1.0, digits=4)]
       for split in ("train", "validation", "test") if split in final])]
  report.write_page(path, report.Page(
      title=f"train: {config.model.name} on {config.data.name}",
      claim=claim,
      config=(f"Supervised training of `{config.model.name}` "
              f"({summary['parameters']['trainable']:,} trainable parameters) "
              f"on `{config.data.name}`" + f" with {corrupted}" * bool(
                  corrupted) + f": {config.optim.name} lr "
              f"{config.optim.lr}, batch {config.train.batch_size}, "
              f"{config.train.steps} steps, "
              f"{report.count(len(summary['seeds']), 'seed')} trained at "
              "once."),
      figures=[("Loss and accuracy vs step, mean ± std over seeds",
                "learning_curves.png")] * paths.exists(figure),
      comparisons=comparisons, details=details,
      run=report.run_line(summary, speed + together + ".")), config)


experiments.register("train", validate=validation.validate_base,
                     report=write_train_report, multi_process=True)(run)
