"""`train`: plain supervised training of `config.seeds` seeds at once.

The first user of the trainer: every other experiment is this loop plus
something done between or around training stages.
"""

import time

from absl import logging

from jaxunknowns import experiments, report, validation
from jaxunknowns.experiments import common
from jaxunknowns.metrics import MetricWriter, read_metrics, write_json
from jaxunknowns.workdir import SUMMARY_FILE


def run(config, workdir):
  trainer = common.build_trainer(config)
  workdir.open()
  seeds = common.seeds_of(config)
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
  summary = {
      "experiment": "train",
      "dataset": config.data.name, "model": config.model.name,
      "steps": config.train.steps, "seeds": seeds,
      "final": common.eval_stats(result.evals),
      "parameters": trainer.param_counts,
      "steps_per_second": result.steps_per_second,
      "wall_time_s": time.time() - t0,
      "resumed_from_step": result.resumed_from,
      "machine": common.machine_info(),
  }
  reference = config.get("reference")
  if reference is not None:
    summary["reference"] = reference.to_dict()
  write_json(workdir.file(SUMMARY_FILE), summary)
  write_train_report(workdir.path, config, summary)
  logging.info("test accuracy %s; summary in %s", report.fmt(
      summary["final"]["test"]["accuracy"]), workdir.file(SUMMARY_FILE))
  return summary


def write_train_report(path, config, summary):
  import os  # pylint: disable=g-import-not-at-top
  rows = read_metrics(path)
  report.learning_curves(rows, os.path.join(path, "learning_curves.png"),
                         title=f"{config.model.name} on {config.data.name}")
  final = summary["final"]
  table = [[split, report.fmt(final[split]["accuracy"]),
            report.fmt(final[split]["loss"], scale=1.0, digits=4)]
           for split in ("train", "validation", "test") if split in final]
  sections = [
      f"Supervised training of `{config.model.name}` on `{config.data.name}`: "
      f"{config.optim.name} lr {config.optim.lr}, batch "
      f"{config.train.batch_size}, {config.train.steps} steps, "
      f"{len(summary['seeds'])} seeds trained at once.",
      "## Final metrics (mean ± std over seeds)\n\n" + report.markdown_table(
          ["split", "accuracy (%)", "loss"], table),
  ]
  ref = summary.get("reference")
  if ref:
    ours = final["test"]["accuracy"]["mean"] * 100
    sections.append(
        f"## Reference\n\n{ref['source']}: {ref['test_accuracy'] * 100:.1f}% "
        f"test accuracy; ours {ours:.2f}% "
        f"({ours - ref['test_accuracy'] * 100:+.2f} points).")
  sections.append("## Learning curves\n\n![learning curves](learning_curves.png)")
  sections.append(
      f"{summary['parameters']['trainable']:,} trainable parameters; "
      f"{summary['steps_per_second']:.0f} steps/s on "
      f"{summary['machine']['num_devices']} × "
      f"{summary['machine']['device_kind']}; wall time "
      f"{summary['wall_time_s']:.0f} s.")
  report.write_report(os.path.join(path, "report.md"),
                      f"train: {config.model.name} on {config.data.name}",
                      sections)


experiments.register("train", validate=validation.validate_base)(run)
