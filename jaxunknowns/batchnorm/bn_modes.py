"""`bn_modes`: what BatchNorm's train/inference mode does at test time.

Trains a BN network (all seeds at once, through the Trainer), then evaluates
every run in the modes of analysis/bn_eval.py:

  running            running averages: the correct inference mode;
  batch b            batch statistics at eval batch size b (b down to 1):
                     the "forgot model.eval()" / `train=True` bug;
  stale, fine-tuned  the weights after `finetune_steps` more training steps
                     with the running averages of *before* them: statistics
                     frozen (not tracked, or the mutated `batch_stats` never
                     written back) while the weights moved. In train mode the
                     forward pass uses batch statistics, so training with
                     frozen running averages gives exactly these weights;
                     the same weights with their own updated averages are the
                     reference;
  shifted inputs     test inputs x -> scale * x + shift (a changed input
                     pipeline): with the clean running averages (stale), with
                     averages re-estimated on shifted training inputs (the
                     AdaBN fix), and with batch statistics.
"""

import time
from typing import Any, Dict, Mapping

import jax
import numpy as np
from absl import logging

from jaxunknowns import distributed, experiments, runs, validation
from jaxunknowns.analysis import bn_eval
from jaxunknowns.data import load_dataset
from jaxunknowns.errors import UserError
from jaxunknowns.batchnorm.bn_only import downsample
from jaxunknowns.metrics import MetricWriter, stats

BUGS = {
    "running": "none: the correct inference mode (`train=False`, "
               "PyTorch `model.eval()`)",
    "batch": "BN left in training mode at test time (Flax `train=True`, "
             "PyTorch no `model.eval()`): each batch normalized by its own "
             "statistics, so a prediction depends on its batch-mates",
    "stale_finetune": "running statistics frozen during further training "
                      "(BN buffers not tracked, or the mutated `batch_stats` "
                      "collection dropped by a custom train step)",
    "fresh_finetune": "none: the fine-tuned weights with their own updated "
                      "running statistics (reference for the row above)",
    "shift_stale": "deployment inputs no longer match the training pipeline "
                   "(another normalization, sensor or domain) while BN keeps "
                   "the training statistics",
    "shift_recalibrated": "fix: running statistics re-estimated on shifted "
                          "inputs (AdaBN), weights unchanged",
    "shift_batch": "batch statistics on shifted inputs: adapts to the shift "
                   "but has the batch-mode bug above",
}


# The model.* fields that size a network: summary.json and report.md name
# those the chosen model's builder reads (resnet: depth and width; mlp:
# widths; vgg11: width_multiplier), never one it ignores.
SIZE_FIELDS = ("depth", "width", "widths", "width_multiplier")


def model_size(model_config) -> Dict[str, Any]:
  """{field: value} of the SIZE_FIELDS the model's builder reads (widths
  as a list, as summary.json holds it)."""
  read = validation.model_fields_read(model_config) or set()
  return {f: list(v) if isinstance(v, (tuple, list)) else v
          for f, v in ((f, model_config.get(f)) for f in SIZE_FIELDS)
          if f in read}


def describe_model(name: str, size: Mapping[str, Any]) -> str:
  """'resnet-8 of width 8', 'mlp with hidden widths 16, 16', 'vgg11 at
  width multiplier 0.5', or the name alone (`size`: `model_size`)."""
  words = f"{name}-{size['depth']}" if "depth" in size else name
  if "width" in size:
    words += f" of width {size['width']}"
  if "widths" in size:
    words += f" with hidden widths {', '.join(map(str, size['widths']))}"
  if "width_multiplier" in size:
    words += f" at width multiplier {size['width_multiplier']:g}"
  return words


def validate(config):
  validation.validate_base(config)
  check = validation.check
  m = config.bn_modes
  sizes = list(m.eval_batch_sizes)
  check(len(sizes) >= 1 and all(isinstance(b, int) and b >= 1 for b in sizes),
        "bn_modes.eval_batch_sizes", tuple(sizes), "positive integers")
  check(len(set(sizes)) == len(sizes), "bn_modes.eval_batch_sizes",
        tuple(sizes), "distinct batch sizes (each is one result)")
  validation.check_int(m.finetune_steps, "bn_modes.finetune_steps", 1)
  # Fine-tuning goes on from train.steps, where a cosine schedule has
  # reached lr 0: the weights would not move, and "updated vs stale
  # statistics" would compare two copies of the same network.
  check(config.optim.schedule != "cosine", "optim.schedule",
        config.optim.schedule, "'constant' or 'step': bn_modes fine-tunes "
        "after train.steps, where the cosine schedule's lr is 0")
  validation.check_int(m.recalibrate_batches, "bn_modes.recalibrate_batches", 1)
  check(m.test_size >= 0, "bn_modes.test_size", m.test_size, ">= 0 (0 = all)")
  validation.check_int(m.downsample, "bn_modes.downsample", 1)
  if config.model.norm not in ("default", "batch"):
    raise UserError(f"bn_modes studies BatchNorm's modes, but model.norm="
                    f"{config.model.norm!r} has no BatchNorm; use "
                    f"model.norm=batch")
  if config.model.name not in ("resnet", "vgg", "vgg11", "vgg13", "vgg16",
                               "vgg19") and config.model.norm != "batch":
    raise UserError(f"model.name={config.model.name!r} has no BatchNorm by "
                    f"default; set model.norm=batch")
  # The batch-statistics evaluations run the network in training mode
  # (analysis/bn_eval), where dropout would drop units at random: the
  # accuracies would be of random subnetworks (and it needs an rng there).
  check(config.model.dropout == 0, "model.dropout", config.model.dropout,
        "0 (bn_modes evaluates in training mode, where dropout is random)")


def load(config):
  ds = load_dataset(config.data)
  m = config.bn_modes
  if m.downsample > 1:
    ds = downsample(ds, m.downsample, "bn_modes.downsample")
  if m.test_size:
    # Refused, not clipped: config.json records the value asked for.
    n = len(ds.test.y)
    if m.test_size > n:
      raise UserError(f"bn_modes.test_size={m.test_size} is larger than the "
                      f"test set ({n} examples): use at most {n}, or 0 for "
                      "all")
    ds = ds.replace(test=ds.test.take(np.arange(m.test_size)))
  if max(m.eval_batch_sizes) > len(ds.test.y):
    raise UserError(f"bn_modes.eval_batch_sizes has {max(m.eval_batch_sizes)}"
                    f" > the {len(ds.test.y)} test examples")
  return ds


def run_one(config, model, params, stats_, ft_params, ft_stats, ds, seed):
  """Accuracy of every mode for one run."""
  m = config.bn_modes
  x, y = ds.test.x, ds.test.y
  acc = {"running": bn_eval.accuracy(
      bn_eval.running_logits(model, params, stats_, x), y)}
  for b in m.eval_batch_sizes:
    logits, _ = bn_eval.batch_stat_logits(model, params, stats_, x, b)
    acc[f"batch_{b}"] = bn_eval.accuracy(logits, y)
  acc["stale_finetune"] = bn_eval.accuracy(
      bn_eval.running_logits(model, ft_params, stats_, x), y)
  acc["fresh_finetune"] = bn_eval.accuracy(
      bn_eval.running_logits(model, ft_params, ft_stats, x), y)
  xs = m.shift_scale * x + m.shift
  acc["shift_stale"] = bn_eval.accuracy(
      bn_eval.running_logits(model, params, stats_, xs), y)
  recal = bn_eval.recalibrate(model, params, stats_,
                              m.shift_scale * ds.train.x + m.shift,
                              config.train.batch_size, m.recalibrate_batches,
                              seed=seed)
  acc["shift_recalibrated"] = bn_eval.accuracy(
      bn_eval.running_logits(model, params, recal, xs), y)
  b = max(m.eval_batch_sizes)
  acc["shift_batch"] = bn_eval.accuracy(
      bn_eval.batch_stat_logits(model, params, stats_, xs, b)[0], y)
  return acc


def run(config, workdir):
  ds = load(config)
  trainer = runs.build_trainer(config, dataset=ds)
  workdir.open()
  seeds = runs.seeds_of(config)
  writer = MetricWriter(workdir.path)
  t0 = time.time()
  labels = [{"seed": s} for s in seeds]
  steps, ft = config.train.steps, config.bn_modes.finetune_steps
  result = trainer.fit(trainer.init_state(seeds), steps=steps,
                       data_seeds=seeds, writer=writer, run_labels=labels,
                       checkpoint_dir=workdir.file("checkpoints"),
                       description="train")
  trained = distributed.device_get({k: result.state[k]
                            for k in ("params", "batch_stats")})
  # Its own checkpoints: a resumed first stage must not restore a state
  # from the middle of fine-tuning.
  result = trainer.fit(result.state, steps=steps + ft, data_seeds=seeds,
                       writer=writer, run_labels=labels,
                       checkpoint_dir=workdir.file("checkpoints_finetune"),
                       description="fine-tune")
  tuned = distributed.device_get({k: result.state[k]
                          for k in ("params", "batch_stats")})
  writer.close()
  train_wall = time.time() - t0
  per_run = []
  for r, seed in enumerate(seeds):
    pick = lambda tree: jax.tree.map(lambda a: a[r], tree)  # pylint: disable=cell-var-from-loop
    per_run.append(run_one(config, trainer.model, pick(trained["params"]),
                           pick(trained["batch_stats"]),
                           pick(tuned["params"]), pick(tuned["batch_stats"]),
                           ds, seed))
    logging.info("seed %d: %s", seed, per_run[-1])
  modes = {k: stats([a[k] for a in per_run]) for k in per_run[0]}
  summary = {
      "experiment": "bn_modes", "dataset": config.data.name,
      "model": config.model.name, **model_size(config.model),
      "input_shape": list(ds.input_shape),
      "train_examples": len(ds.train.y), "test_examples": len(ds.test.y),
      "seeds": seeds, "steps": steps, "finetune_steps": ft,
      "parameters": trainer.param_counts, "modes": modes,
      "bugs": {k: BUGS["batch" if k.startswith("batch_") else k]
               for k in modes},
      "train_wall_time_s": train_wall, "wall_time_s": time.time() - t0,
      "machine": runs.machine_info(),
  }
  experiments.finish("bn_modes", workdir, config, summary)
  return summary


experiments.register(
    "bn_modes", validate=validate,
    report="jaxunknowns.batchnorm.bn_report:write_modes",
    multi_process=True)(run)
