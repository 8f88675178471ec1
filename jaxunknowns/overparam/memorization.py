"""`memorization`: Arpit et al. 2017, "A closer look at memorization in deep
networks" -- do networks fit the pattern first and the noise later?

What runs. For each label-corruption probability p of
`memorization.corruptions` (each training label replaced with probability p
by a uniformly random class: the data pipeline's `data.label_noise`) and each
arm of `memorization.arms` ("none", "dropout" at `memorization.dropout`,
"weight_decay" at `memorization.weight_decay`), one resumable stage trains
every seed at once (`stages.train_stage`). The same labels for every seed and
arm of a p: the corruption is seeded by `data.shuffle_seed`.

What is recorded. At `memorization.record_points` log-spaced steps in [1,
train.steps] a trainer callback classifies the whole training set, the test
set and the validation set (if any), and keeps every prediction per seed in
the stage's predictions/STEP.npz. An example is *corrupted* when its given
label differs from its true one (a replacement may draw the true class, and
then nothing was corrupted); stages/p{p}/labels.npz keeps the true and given
labels and that mask. From the predictions:

  clean / corrupted accuracy   against the given labels, on each subset;
  true-label fraction          corrupted examples predicted as their TRUE label;
  steps to `fit_level`         the first recorded step at which clean
                               (corrupted) accuracy reaches it, None if never;
  peak test accuracy           its step per seed, beside the final one; and
                               early stopping: the step of the best clean
                               validation accuracy (validation labels are
                               never corrupted), with the test accuracy there;
  first-fit step               per example and seed, the first recorded step
                               from which the example stays classified as its
                               given label to the end (never: after the last);
  learning order               mean pairwise Spearman rank correlation across
                               seeds of the first-fit steps (all, clean and
                               corrupted examples), Arpit et al.'s "easy
                               examples" test: high for real labels (p = 0),
                               low for random ones (p = 1).
"""

import itertools
import os
import time
import warnings
from typing import Any, Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats as scipy_stats

from jaxunknowns import distributed, experiments, paths, runs, validation
from jaxunknowns.config_loading import name_list
from jaxunknowns.data import load_dataset, pipeline
from jaxunknowns.errors import UserError
from jaxunknowns.metrics import MetricWriter, stats
from jaxunknowns.models import create_model
from jaxunknowns.stages import saved_file, stage_dir, train_stage
from jaxunknowns.trainer import Callback, log_spaced_steps

ARMS = ("none", "dropout", "weight_decay")
SPLIT = "memorization"  # The callback's rows in metrics.jsonl.


# -----------------------------------------------------------------------------
# Config
# -----------------------------------------------------------------------------
def validate(config):
  validation.validate_base(config)
  check = validation.check
  m = config.memorization
  ps = list(m.corruptions)
  check(bool(ps), "memorization.corruptions", tuple(ps), "a non-empty grid")
  validation.check_corruption_grid("memorization.corruptions", ps)
  arms = name_list(m.arms)
  check(bool(arms), "memorization.arms", tuple(arms), "non-empty")
  for arm in arms:
    if arm not in ARMS:
      raise UserError(f"unknown regularizer {arm!r} in memorization.arms; "
                      f"valid names: {', '.join(ARMS)}")
  check(len(set(arms)) == len(arms), "memorization.arms", tuple(arms),
        "distinct names")
  check(0.0 < m.dropout < 1.0, "memorization.dropout", m.dropout, "in (0, 1)")
  check(m.weight_decay > 0, "memorization.weight_decay", m.weight_decay, "> 0")
  # Each rate belongs to its arm: without the arm it was recorded, unused.
  for field in ("dropout", "weight_decay"):
    validation.check_applies(
        config, f"memorization.{field}", field in arms,
        f"to the arm {field!r} only (memorization.arms={tuple(arms)})")
  # Only that arm decays (optim.weight_decay is 0 here).
  validation.check_applies(
      config, "optim.decay_on", "weight_decay" in arms,
      "only where weight decay is used (the arm 'weight_decay')")
  validation.check_int(m.record_points, "memorization.record_points", 2)
  check(0.0 < m.fit_level <= 1.0, "memorization.fit_level", m.fit_level,
        "in (0, 1]")
  d = config.data
  check(d.randomization in ("", "none"), "data.randomization", d.randomization,
        "'none' here: labels are corrupted by memorization.corruptions")
  check(d.label_noise == 0.0, "data.label_noise", d.label_noise,
        "0 here: use memorization.corruptions")
  check(config.optim.weight_decay == 0 and config.model.dropout == 0,
        "optim.weight_decay / model.dropout",
        (config.optim.weight_decay, config.model.dropout),
        "0: regularization comes only from the arms (memorization.arms)")


# -----------------------------------------------------------------------------
# Stages
# -----------------------------------------------------------------------------
def stage_key(p: float, arm: str) -> str:
  return f"p{p:g}-{arm}"


def stage_config(config, p: float, arm: str):
  c = config.copy_and_resolve_references()
  c.data.label_noise = float(p)
  if arm == "dropout":
    c.model.dropout = config.memorization.dropout
  if arm == "weight_decay":
    c.optim.weight_decay = config.memorization.weight_decay
  return c


def _padded(x: np.ndarray, batch: int) -> np.ndarray:
  """[num_batches, batch, ...]: x padded with zeros to whole batches."""
  nb = -(-len(x) // batch)
  pad = np.zeros((nb * batch - len(x),) + x.shape[1:], x.dtype)
  return np.concatenate([x, pad]).reshape((nb, batch) + x.shape[1:])


def predictor(trainer):
  """predict(state, xs) -> [R, num_batches * batch] classes, as the
  trainer's evaluation computes them (`Trainer.logits`)."""
  def one_run(params, batch_stats, xs):
    state = {"params": params, "batch_stats": batch_stats}
    batch = lambda x: jnp.argmax(trainer.logits(state, x), -1)
    return jax.lax.map(batch, xs).reshape(-1)
  fn = jax.jit(jax.vmap(one_run, in_axes=(0, 0, None)))
  return lambda state, xs: np.asarray(distributed.device_get(
      fn(state["params"], state["batch_stats"], xs)))


def subset_metrics(pred: np.ndarray, labels: Dict[str, np.ndarray]
                   ) -> Dict[str, np.ndarray]:
  """Per run, from training-set predictions [R, N]: accuracy on the clean and
  the corrupted examples against their given labels, and the fraction of the
  corrupted ones predicted as their true label (an empty subset: absent)."""
  fit = pred == labels["y_given"]
  bad = labels["corrupted"]
  out = {"train_accuracy": fit.mean(1)}
  if (~bad).any():
    out["clean_accuracy"] = fit[:, ~bad].mean(1)
  if bad.any():
    out["corrupted_accuracy"] = fit[:, bad].mean(1)
    out["true_label_fraction"] = (pred == labels["y_true"])[:, bad].mean(1)
  return out


def recorder(trainer, folder: str, labels, ds, steps: Sequence[int]):
  """The callback: predictions of every split at `steps`, kept in
  folder/predictions/STEP.npz; the subset metrics go to metrics.jsonl."""
  predict = predictor(trainer)
  # Every split in one array: one compiled prediction per stage.
  splits = [(name, len(s.y)) for name, s in (("train", ds.train),
            ("validation", ds.validation), ("test", ds.test))
            if s is not None and len(s.y)]
  # On the device once, not sent again at every recorded step.
  xs = distributed.to_global(_padded(
      np.concatenate([getattr(ds, name).x for name, _ in splits]),
      trainer.config.train.eval_batch_size), trainer.replicated)
  ends = np.cumsum([n for _, n in splits])

  def fn(_, state, step):
    pred = predict(state, xs).astype(np.int16)
    preds = {name: pred[:, end - n:end]
             for (name, n), end in zip(splits, ends)}
    save(prediction_file(folder, step), **preds)
    out = subset_metrics(preds["train"], labels)
    for name in ("validation", "test"):
      if name in preds:
        out[f"{name}_accuracy"] = (preds[name] == labels[f"y_{name}"]).mean(1)
    return out

  return Callback(SPLIT, every=0, fn=fn, steps=tuple(steps))


def save(path: str, **arrays):
  paths.makedirs(os.path.dirname(path))
  paths.save_npz(path, **arrays)


def prediction_file(folder: str, step: int) -> str:
  return f"{folder}/predictions/{step:08d}.npz"


def corruption_labels(clean, noisy) -> Dict[str, np.ndarray]:
  """The training labels before and after the corruption, which examples it
  changed, and the (never corrupted) validation and test labels."""
  y_true, y_given = np.asarray(clean.train.y), np.asarray(noisy.train.y)
  out = {"y_true": y_true, "y_given": y_given, "corrupted": y_true != y_given,
         "y_test": np.asarray(noisy.test.y)}
  if noisy.validation is not None:
    out["y_validation"] = np.asarray(noisy.validation.y)
  return out


# -----------------------------------------------------------------------------
# The run
# -----------------------------------------------------------------------------
def run(config, workdir):
  m = config.memorization
  ps, arms = [float(p) for p in m.corruptions], name_list(m.arms)
  # Bad input fails here, before workdir.open(): data settings, the data
  # itself and every arm's model.
  for p, arm in itertools.product(ps, arms):
    c = stage_config(config, p, arm)
    pipeline.check_config(c.data)
  clean = load_dataset(stage_config(config, 0.0, "none").data)
  for arm in arms:
    create_model(stage_config(config, 0.0, arm).model, clean.num_classes)
  data = {p: load_dataset(stage_config(config, p, "none").data) if p else clean
          for p in ps}
  trainers = {(ps[0], arms[0]): runs.build_trainer(
      stage_config(config, ps[0], arms[0]), dataset=data[ps[0]])}
  workdir.open()
  writer = MetricWriter(workdir.path)
  seeds = runs.seeds_of(config)
  steps = log_spaced_steps(config.train.steps, m.record_points,
                       config.train.log_every)
  t_start, results = time.time(), {}
  for p in ps:
    labels = corruption_labels(clean, data[p])
    save(f"{stage_dir(workdir, f'p{p:g}')}/labels.npz", **labels)
    for arm in arms:
      key, folder = stage_key(p, arm), stage_dir(workdir, f"p{p:g}/{arm}")
      trainer = trainers.pop((p, arm), None) or runs.build_trainer(
          stage_config(config, p, arm), dataset=data[p])
      result = train_stage(
          trainer, workdir=workdir, name=f"p{p:g}/{arm}",
          labels={"p": p, "arm": arm}, seeds=seeds, writer=writer,
          steps=config.train.steps,
          callbacks=[recorder(trainer, folder, labels, data[p], steps)])
      results[key] = stage_summary(p, arm, result, folder, labels, steps,
                                   m.fit_level)
  writer.close()
  add_regularization_effects(results, ps, arms)
  summary = {
      "experiment": "memorization", "dataset": config.data.name,
      "model": config.model.name, "seeds": seeds,
      "num_classes": clean.num_classes, "train_examples": len(clean.train.y),
      "validation_examples": (len(clean.validation.y)
                              if clean.validation is not None else 0),
      "test_examples": len(clean.test.y), "corruptions": ps, "arms": arms,
      "record_steps": steps, "fit_level": m.fit_level, "stages": results,
      "wall_time_s": time.time() - t_start,
      "stages_wall_time_s": sum(r["wall_time_s"] for r in results.values()),
      "machine": runs.machine_info(),
  }
  experiments.finish("memorization", workdir, config, summary)
  return summary


# -----------------------------------------------------------------------------
# Reading a stage's predictions
# -----------------------------------------------------------------------------
def load_predictions(folder: str, steps: Sequence[int]) -> Dict[str, np.ndarray]:
  """{split: [T, R, N]} over the recorded steps."""
  # saved_file: a non-main process's steps from an earlier, killed run are
  # in the shared workdir only.
  files = [paths.load_npz(saved_file(prediction_file(folder, s)))
           for s in steps]
  return {name: np.stack([f[name] for f in files]) for name in files[0]}


def first_fit(fit: np.ndarray, steps: Sequence[int]) -> np.ndarray:
  """[R, N] from fit [T, R, N] (bool): the first recorded step from which the
  example stays fitted to the last one; never fitted at the end: inf."""
  # Fitted at t and at every later step: a reversed cumulative AND.
  stays = np.flip(np.logical_and.accumulate(np.flip(fit, 0), 0), 0)
  t = np.argmax(stays, 0)
  return np.where(stays[-1], np.asarray(steps, float)[t], np.inf)


def rank_consistency(first: np.ndarray) -> Optional[Dict[str, Any]]:
  """Mean pairwise Spearman rank correlation of first-fit steps [R, N] across
  seeds (never fitted ranks last, ties by average rank); None if fewer than
  two seeds or examples, or no pair has any variation."""
  if first.shape[0] < 2 or first.shape[1] < 2:
    return None
  ranks = np.where(np.isinf(first), np.nanmax(np.where(
      np.isinf(first), np.nan, first), initial=0.0) + 1.0, first)
  # A seed whose examples all fit at once (an easy dataset) has no ranking:
  # its pairs are NaN and left out below, so scipy's warning is noise.
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", scipy_stats.ConstantInputWarning)
    rhos = [scipy_stats.spearmanr(ranks[a], ranks[b]).statistic
            for a, b in itertools.combinations(range(len(ranks)), 2)]
  rhos = [float(r) for r in rhos if np.isfinite(r)]
  if not rhos:
    return None
  out = stats(rhos)
  out["pairs"] = out.pop("per_seed")
  return out


def _steps_to(curve: np.ndarray, steps: Sequence[int], level: float):
  """Per run: the first recorded step with curve [T, R] >= level, or None."""
  out = []
  for r in range(curve.shape[1]):
    hit = np.flatnonzero(curve[:, r] >= level - 1e-9)
    out.append(int(steps[hit[0]]) if len(hit) else None)
  reached = [s for s in out if s is not None]
  if len(reached) == len(out):
    return {**stats(reached), "reached": len(out)}
  return {"mean": None, "std": None, "per_seed": out, "reached": len(reached)}


def curve_stats(curve: np.ndarray) -> Dict[str, Any]:
  """{mean, std, per_seed} of a curve [T, R] over the recorded steps: mean
  and std [T], per_seed [R][T] (a dict a step would repeat T times)."""
  at = [stats(row) for row in curve]
  return {"mean": [s["mean"] for s in at], "std": [s["std"] for s in at],
          "per_seed": curve.T.tolist()}


def _at(curve: np.ndarray, index: np.ndarray) -> Dict[str, Any]:
  """stats of curve [T, R] at one step index per run."""
  return stats([curve[i, r] for r, i in enumerate(index)])


def stage_summary(p, arm, result, folder, labels, steps, level):
  preds = load_predictions(folder, steps)
  train = preds["train"]
  per_step = [subset_metrics(train[t], labels) for t in range(len(steps))]
  curves = {k: np.stack([s[k] for s in per_step]) for k in per_step[0]}
  for name in ("validation", "test"):
    if name in preds:
      curves[f"{name}_accuracy"] = (preds[name] == labels[f"y_{name}"]).mean(-1)
  test, steps_arr = curves["test_accuracy"], np.asarray(steps)
  peak = np.argmax(test, 0)
  chooser = curves.get("validation_accuracy")
  stop = np.argmax(chooser, 0) if chooser is not None else None
  bad = labels["corrupted"]
  first = first_fit(train == labels["y_given"], steps)
  out = {
      "p": p, "arm": arm, "steps": result["steps"],
      "corrupted_examples": int(bad.sum()),
      "corrupted_fraction": float(bad.mean()),
      "curves": {k: curve_stats(v) for k, v in curves.items()
                 if k != "train_accuracy"},
      "steps_to_level": {
          subset: _steps_to(curves[f"{subset}_accuracy"], steps, level)
          for subset in ("clean", "corrupted")
          if f"{subset}_accuracy" in curves},
      "peak_test": {"accuracy": _at(test, peak),
                    "step": stats(steps_arr[peak].tolist())},
      "final": {k: stats(v[-1]) for k, v in curves.items()},
      "learning_order": {
          "all": rank_consistency(first),
          "clean": rank_consistency(first[:, ~bad]),
          "corrupted": rank_consistency(first[:, bad])},
      "never_fitted": stats(np.isinf(first).mean(1)),
      "wall_time_s": result["wall_time_s"],
      "steps_per_second": result["steps_per_second"],
  }
  if "true_label_fraction" in curves:
    best = np.argmax(curves["true_label_fraction"], 0)
    out["peak_true_label"] = {
        "fraction": _at(curves["true_label_fraction"], best),
        "corrupted_accuracy": _at(curves["corrupted_accuracy"], best),
        "step": stats(steps_arr[best].tolist())}
  if stop is not None:
    out["early_stopping"] = {
        "step": stats(steps_arr[stop].tolist()),
        **{k: _at(v, stop) for k, v in curves.items()}}
  return out


def add_regularization_effects(results, ps, arms):
  """Per regularized stage and subset: how far its training accuracy stays
  below the unregularized stage's of the same p, averaged over the recorded
  (log-spaced) steps, seed by seed (the same seeds: the same init and data
  order). Averaging over log time counts both slower and never-finished
  fitting."""
  for p, arm in itertools.product(ps, arms):
    if arm == "none" or "none" not in arms:
      continue
    mine, base = results[stage_key(p, arm)], results[stage_key(p, "none")]
    mean = lambda st, key: np.mean(st["curves"][key]["per_seed"], axis=1)
    mine["accuracy_drop"] = {
        subset: stats(mean(base, key) - mean(mine, key))
        for subset, key in (("clean", "clean_accuracy"),
                            ("corrupted", "corrupted_accuracy"))
        if key in mine["curves"]}


experiments.register(
    "memorization", validate=validate, own_fields=("data.shuffle_seed",),
    report="jaxunknowns.overparam.memorization_report:write",
    multi_process=True)(run)
