"""`randomization`: the randomization tests of Zhang, Bengio, Hardt, Recht &
Vinyals 2017 ("Understanding deep learning requires rethinking
generalization").

What runs. The same model with the same hyper-parameters on a series of
datasets, one *stage* each (a stage is one Trainer, all seeds at once):

  variants     true labels; random labels; shuffled pixels (one fixed
               permutation for every example, train and test); random pixels
               (a permutation per example); Gaussian inputs with the training
               inputs' mean and variance (`randomization.variants`; the
               corruptions are the dataset transforms `data.randomization`).
  corruption   labels replaced with probability p by a uniformly random class,
               over the grid `randomization.corruptions` (p = 0 is the true
               labels stage and p = 1 the random labels stage: the data
               pipeline draws them from the same stream, so they are the same
               datasets and are trained once).
  ablation     Zhang et al.'s Table 1 in shape: weight decay, dropout and
               augmentation switched on, alone or together, on the true
               labels (`ablation.true_labels`) and on random labels
               (`ablation.random_labels`); the cell without regularization is
               the variant's own stage.

Every stage trains until every seed classifies its whole (corrupted) training
set correctly in eval mode (`randomization.fit_accuracy`), checked every
`randomization.check_every` steps, or for `train.steps` steps. The number of
steps to fit is read from the training-set evaluations every
`train.eval_every` steps (metrics.jsonl, split "train"), so its resolution is
eval_every. Stages are resumable: stages/<kind>/<name>/ holds each one's
checkpoints and, once finished, result.json.

Augmentation in the ablation: images (H, W, C) get the trainer's random crop
+ flip (`data.augment = "crop_flip"`); sequences (L, C) such as MNIST-1D get
a random translation by up to `ablation.max_shift` positions with zero
padding (the inputs are standardized, so zero is the mean), done by
`data.augment.random_shift`, passed to the trainer as its augmentation.
"""

import collections
import functools
import dataclasses
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from absl import logging

from jaxunknowns import experiments, validation
from jaxunknowns.config_loading import name_list
from jaxunknowns.data import load_dataset
from jaxunknowns.data import pipeline
from jaxunknowns.data.augment import random_shift
from jaxunknowns.errors import UserError
from jaxunknowns import runs
from jaxunknowns.stages import train_stage
from jaxunknowns.metrics import MetricWriter, read_metrics, stats
from jaxunknowns.models import create_model
from jaxunknowns.trainer import Trainer

# Zhang et al.'s variants: the name used here -> data.randomization.
VARIANTS = collections.OrderedDict([
    ("true_labels", "none"),
    ("random_labels", "random_labels"),
    ("shuffled_pixels", "shuffled_pixels"),
    ("random_pixels", "random_pixels"),
    ("gaussian", "gaussian"),
])
REGULARIZERS = ("weight_decay", "dropout", "augment")
# The labels the ablation runs on: the config field of each is its cells.
ABLATION_LABELS = ("true_labels", "random_labels")


# -----------------------------------------------------------------------------
# Config
# -----------------------------------------------------------------------------
def cell_regularizers(cell: str) -> List[str]:
  return [] if cell in ("", "none") else cell.split("+")


def validate(config):
  validation.validate_base(config)
  check = validation.check
  r, a = config.randomization, config.ablation
  variants = name_list(r.variants)
  for v in variants:
    if v not in VARIANTS:
      raise UserError(f"unknown randomization {v!r} in randomization.variants; "
                      f"valid names: {', '.join(VARIANTS)}")
  check(len(set(variants)) == len(variants), "randomization.variants",
        tuple(variants), "distinct names")
  ps = list(r.corruptions)
  cells = {labels: name_list(a[labels]) for labels in ABLATION_LABELS}
  check(bool(variants or ps or any(cells.values())), "randomization.variants",
        tuple(variants), "non-empty (or a corruption grid or ablation cells)")
  validation.check_corruption_grid("randomization.corruptions", ps)
  check(0.0 < r.fit_accuracy <= 1.0, "randomization.fit_accuracy",
        r.fit_accuracy, "in (0, 1]")
  validation.check_int(r.check_every, "randomization.check_every", 1)
  for labels, label_cells in cells.items():
    for cell in label_cells:
      regs = cell_regularizers(cell)
      if any(x not in REGULARIZERS for x in regs) or len(set(regs)) != len(regs):
        raise UserError(
            f"unknown regularization cell {cell!r} in ablation.{labels}; a "
            f"cell is 'none' or '+'-joined names from {', '.join(REGULARIZERS)}")
    # One cell written twice (in another order) trained twice, and the
    # report showed its rows and verdicts twice.
    sets = [frozenset(cell_regularizers(cell)) for cell in label_cells]
    check(len(set(sets)) == len(sets), f"ablation.{labels}",
          tuple(label_cells), "distinct cells ('dropout+weight_decay' and "
          "'weight_decay+dropout' are one)")
  check(a.weight_decay > 0, "ablation.weight_decay", a.weight_decay, "> 0")
  check(0.0 < a.dropout < 1.0, "ablation.dropout", a.dropout, "in (0, 1)")
  validation.check_int(a.max_shift, "ablation.max_shift", 1)
  # A regularizer's setting with no ablation cell using it was recorded in
  # config.json and never read.
  used = {x for label_cells in cells.values() for cell in label_cells
          for x in cell_regularizers(cell)}
  for field, reg in (("weight_decay", "weight_decay"), ("dropout", "dropout"),
                     ("max_shift", "augment")):
    validation.check_applies(
        config, f"ablation.{field}", reg in used,
        f"to ablation cells with {reg!r} only (ablation.true_labels="
        f"{tuple(cells['true_labels'])}, ablation.random_labels="
        f"{tuple(cells['random_labels'])})")
  # Only those cells decay (optim.weight_decay is 0 here).
  validation.check_applies(
      config, "optim.decay_on", "weight_decay" in used,
      "only where weight decay is used (an ablation cell with "
      "'weight_decay')")
  d = config.data
  check(d.randomization in ("", "none"), "data.randomization", d.randomization,
        "'none' here: the experiment sets each stage's randomization "
        "(use randomization.variants)")
  check(d.label_noise == 0.0, "data.label_noise", d.label_noise,
        "0 here: use randomization.corruptions")
  check(config.train.eval_train and not config.train.max_train_eval,
        "train.eval_train / max_train_eval",
        (config.train.eval_train, config.train.max_train_eval),
        "(True, 0): fitting is judged on the whole training set")
  check(config.optim.weight_decay == 0 and config.model.dropout == 0,
        "optim.weight_decay / model.dropout",
        (config.optim.weight_decay, config.model.dropout),
        "0: the stages have no explicit regularization except in the "
        "ablation (ablation.weight_decay, ablation.dropout)")


# -----------------------------------------------------------------------------
# Stages
# -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Stage:
  key: str                   # Unique: the `variant` label of its metric rows.
  kind: str                  # "variant", "corruption" or "ablation".
  randomization: str = "none"  # data.randomization
  label_noise: float = 0.0   # data.label_noise (p of the corruption grid)
  regularizers: tuple = ()   # Subset of REGULARIZERS (ablation cells).

  @property
  def folder(self) -> str:
    return f"{self.kind}/{self.key}"


def variant_stage(name: str) -> Stage:
  return Stage(key=name, kind="variant", randomization=VARIANTS[name])


def corruption_stage(p: float) -> Stage:
  if p == 0.0:
    return variant_stage("true_labels")
  if p == 1.0:
    return variant_stage("random_labels")
  return Stage(key=f"corrupt_{p:g}", kind="corruption", label_noise=float(p))


def ablation_stage(labels: str, cell: str) -> Stage:
  regs = tuple(cell_regularizers(cell))
  if not regs:
    return variant_stage(labels)
  # '-' in the key, not '+': TensorBoard tags allow [A-Za-z0-9_.-/] only.
  return Stage(key=f"{labels}-{'-'.join(regs)}", kind="ablation",
               randomization=VARIANTS[labels], regularizers=regs)


def plan(config) -> Dict[str, Any]:
  """Every stage once, in training order, and where each part finds them."""
  stages = collections.OrderedDict()

  def add(stage):
    stages.setdefault(stage.key, stage)
    return stage.key

  variants = [add(variant_stage(v))
              for v in name_list(config.randomization.variants)]
  corruption = [(float(p), add(corruption_stage(float(p))))
                for p in config.randomization.corruptions]
  ablation = []
  for labels in ABLATION_LABELS:
    cells = [c for c in name_list(config.ablation[labels])
             if cell_regularizers(c)]
    if cells:
      for cell in ["none"] + cells:
        ablation.append((labels, cell, add(ablation_stage(labels, cell))))
  return {"stages": list(stages.values()), "variants": variants,
          "corruption": corruption, "ablation": ablation}


def augmentation_for(input_shape, fields=("ablation.true_labels",
                                          "ablation.random_labels")) -> str:
  """The ablation's augmentation for inputs of this shape (see docstring);
  `fields`: the lists that ask for it (named by the error)."""
  if len(input_shape) == 3:
    return "crop_flip"
  if len(input_shape) == 2:
    return "random_shift"
  raise UserError(
      f"an ablation cell asks for 'augment', but inputs of shape "
      f"{tuple(input_shape)} have no augmentation here (images get crop+flip, "
      f"sequences a random shift); drop 'augment' from {' and '.join(fields)}")


def stage_config(config, stage: Stage, augment: str):
  c = config.copy_and_resolve_references()
  c.data.randomization = stage.randomization
  c.data.label_noise = stage.label_noise
  if "weight_decay" in stage.regularizers:
    c.optim.weight_decay = config.ablation.weight_decay
  if "dropout" in stage.regularizers:
    c.model.dropout = config.ablation.dropout
  if "augment" in stage.regularizers and augment == "crop_flip":
    c.data.augment = "crop_flip"
  return c


def build_stage_trainer(config, stage: Stage, augment: str,
                        dataset=None) -> Trainer:
  c = stage_config(config, stage, augment)
  shift = None
  if "augment" in stage.regularizers and augment == "random_shift":
    shift = functools.partial(random_shift,
                              max_shift=config.ablation.max_shift)
  return runs.build_trainer(c, dataset=dataset, augment=shift)


# -----------------------------------------------------------------------------
# The run
# -----------------------------------------------------------------------------
def run(config, workdir):
  p = plan(config)
  stages = p["stages"]
  # Bad input fails here, before workdir.open(): every stage's data settings,
  # the real dataset, the augmentation, the models, and the first trainer.
  for stage in stages:
    pipeline.check_config(stage_config(config, stage, "none").data)
  first_stage = stages[0]
  first_data = load_dataset(stage_config(config, first_stage, "none").data)
  augment = "none"
  if any("augment" in s.regularizers for s in stages):
    augment = augmentation_for(first_data.input_shape, [
        f"ablation.{k}" for k in ABLATION_LABELS
        if any("augment" in cell_regularizers(c)
               for c in name_list(config.ablation[k]))])
  # Images are cropped and flipped: a shift they never get, recorded in
  # config.json, would read as part of the run.
  validation.check_applies(config, "ablation.max_shift",
                           augment == "random_shift",
                           "to sequence inputs only (images get crop+flip)")
  for stage in stages:
    try:
      create_model(stage_config(config, stage, augment).model,
                   first_data.num_classes)
    except UserError as e:  # the stage, not the user, set its regularizer
      raise UserError(f"stage {stage.key}: {e}") from e
  # The first stage never has a regularizer (the plan puts every "none"
  # cell first), so the dataset just loaded is its own.
  first = build_stage_trainer(config, first_stage, augment, dataset=first_data)
  workdir.open()
  writer = MetricWriter(workdir.path)
  seeds = runs.seeds_of(config)
  r = config.randomization
  t_start = time.time()
  results = {}
  for stage in stages:
    trainer = first if first is not None else build_stage_trainer(
        config, stage, augment)
    first = None
    results[stage.key] = train_stage(
        trainer, workdir=workdir, name=stage.folder,
        labels={"variant": stage.key}, seeds=seeds, writer=writer,
        steps=config.train.steps, check_every=r.check_every,
        stop=fitted(r.fit_accuracy))
    results[stage.key]["num_classes"] = trainer.dataset.num_classes
    del trainer
    logging.info("[%s] %d steps: train accuracy %s, test accuracy %s",
                 stage.key, results[stage.key]["steps"],
                 results[stage.key]["evals"]["train"]["accuracy"],
                 results[stage.key]["evals"]["test"]["accuracy"])
  writer.close()
  rows = read_metrics(workdir.path)
  summary = {
      "experiment": "randomization", "dataset": config.data.name,
      "model": config.model.name, "seeds": seeds,
      "num_classes": first_data.num_classes,
      "train_examples": len(first_data.train.y),
      "fit_accuracy": r.fit_accuracy,
      "augmentation": augment,
      "stages": {s.key: stage_summary(s, results[s.key], rows, r.fit_accuracy)
                 for s in stages},
      "variants": p["variants"],
      "corruption": [{"p": q, "stage": key} for q, key in p["corruption"]],
      "ablation": [{"labels": labels, "cell": cell, "stage": key}
                   for labels, cell, key in p["ablation"]],
      "wall_time_s": time.time() - t_start,
      # Each stage's own time, kept in its result.json: the whole run's
      # training time even when this invocation only resumed it.
      "stages_wall_time_s": sum(r["wall_time_s"] for r in results.values()),
      "machine": runs.machine_info(),
  }
  add_slowdowns(summary)
  experiments.finish("randomization", workdir, config, summary)
  return summary


def fitted(accuracy: float):
  """Stop once every run classifies at least `accuracy` of its training set."""
  def stop(evals):
    return bool(np.all(np.asarray(evals["train"]["accuracy"]) >= accuracy - 1e-9))
  return stop


def steps_to_fit(rows, key: str, seeds: Sequence[int],
                 accuracy: float) -> List[Optional[int]]:
  """Per seed: the first evaluated step with train accuracy >= `accuracy`."""
  first = {}
  for row in rows:
    if row.get("variant") != key or row.get("split") != "train":
      continue
    if row["accuracy"] >= accuracy - 1e-9:
      s = row["seed"]
      first[s] = min(first.get(s, row["step"]), row["step"])
  return [first.get(s) for s in seeds]


def _stats_or_none(values):
  return stats(values) if values and all(v is not None for v in values) else None


def stage_summary(stage: Stage, result, rows, accuracy) -> Dict[str, Any]:
  ev = result["evals"]
  fit_steps = steps_to_fit(rows, stage.key, result["seeds"], accuracy)
  return {
      "kind": stage.kind, "randomization": stage.randomization,
      "label_corruption": (1.0 if stage.randomization == "random_labels"
                           else stage.label_noise),
      "regularizers": list(stage.regularizers),
      "steps": result["steps"],
      "train_accuracy": stats(ev["train"]["accuracy"]),
      "test_accuracy": stats(ev["test"]["accuracy"]),
      "test_error": stats([1 - a for a in ev["test"]["accuracy"]]),
      "train_loss": stats(ev["train"]["loss"]),
      "steps_to_fit_per_seed": fit_steps,
      "steps_to_fit": _stats_or_none(fit_steps),
      "seeds_fitted": sum(s is not None for s in fit_steps),
      "wall_time_s": result["wall_time_s"],
      "steps_per_second": result["steps_per_second"],
  }


def add_slowdowns(summary):
  """steps to fit / steps to fit the true labels, seed by seed."""
  base = summary["stages"].get("true_labels", {}).get("steps_to_fit_per_seed")
  for entry in summary["stages"].values():
    mine = entry["steps_to_fit_per_seed"]
    if base and all(b for b in base) and all(m is not None for m in mine):
      entry["slowdown"] = stats([m / b for m, b in zip(mine, base)])
    else:
      entry["slowdown"] = None


experiments.register(
    "randomization", validate=validate, own_fields=("data.shuffle_seed",),
    report="jaxunknowns.overparam.randomization_report:write",
    multi_process=True)(run)
