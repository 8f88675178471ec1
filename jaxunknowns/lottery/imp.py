"""`imp`: iterative magnitude pruning with rewinding (Frankle & Carbin 2019),
its controls, early stopping, and optionally the instability analysis
(Frankle et al. 2020).

The loop, level by level:
  level 0   train the dense network (S seeds at once); keep its weights at
            the rewind step k (k = 0: the initialization).
  level L   prune `prune.fraction` of the remaining weights of the level
            L-1 *ticket* by magnitude (layer-wise or global), then train, all
            in one program (3S runs, same data order per seed):
              ticket         surviving weights rewound to their step-k values;
              random_reinit  the same mask on a fresh random initialization;
              random_prune   a random mask with the ticket's per-layer
                             sparsity, on the step-k weights.

Retraining after each pruning (`prune.retrain`; Renda, Frankle & Carbin 2020):
  rewind_weights  survivors back to their step-k values, the lr schedule
                  replayed from step k (the loop above);
  rewind_lr       the trained weights of the previous level kept, the lr
                  schedule replayed from step k (train.steps - k steps);
  finetune        the trained weights kept, train.steps - k steps at the
                  schedule's final lr (a second trainer with that constant lr).
`prune.compare_retrain` adds the other modes as arms: each its own IMP
lineage (its own masks, pruned at the same rates), trained level by level
after the main runs, in levels/level_LL/MODE/.

Optimizer state at a rewind: every level starts from a fresh optimizer
(zero moments, Adam's count at 0), as OpenLTH re-creates its optimizer each
level; the learning-rate schedule is a function of the run's step counter
(optim.py), and every retrained level starts that counter at k, so both
rewinding modes replay the schedule from step k with no offset to carry.

Each level is a resumable stage: its checkpoints live in
workdir/levels/level_LL/, and a rerun of a killed job skips finished levels
and resumes the interrupted one at its last checkpoint.
"""

import fractions
import functools
import math
import time
from typing import Any, Dict, List, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxunknowns import (experiments, optim, paths, prng, pruning, runs,
                         validation)
from jaxunknowns.config_loading import name_list
from jaxunknowns.errors import UserError
from jaxunknowns.metrics import MetricWriter, read_metrics, stats

VARIANTS = ("ticket", "random_reinit", "random_prune")
CONTROLS = VARIANTS[1:]
RETRAIN = ("rewind_weights", "rewind_lr", "finetune")
# Fresh initializations of the random_reinit control use seed + this offset
# (times the level), so they never coincide with any ticket's initialization.
REINIT_SEED_OFFSET = 100_003


def validate(config):
  validation.validate_base(config)
  p = config.prune
  check = validation.check
  validation.check_int(p.levels, "prune.levels", 1)
  check(0.0 < p.fraction < 1.0, "prune.fraction", p.fraction, "in (0, 1)")
  for field in ("conv_fraction", "output_fraction"):
    v = p[field]
    check(v == -1 or 0.0 <= v < 1.0, f"prune.{field}", v,
          "in [0, 1), or -1 for prune.fraction")
  for name, v in parse_layer_rates(p.layer_rates).items():
    check(0.0 <= v < 1.0, f"prune.layer_rates[{name}]", v, "in [0, 1)")
  check(0.0 <= p.one_shot_remaining < 1.0, "prune.one_shot_remaining",
        p.one_shot_remaining, "in [0, 1) (0 = iterative pruning)")
  # One-shot pruning goes straight to its density: no per-level fraction.
  validation.check_applies(
      config, "prune.fraction", not p.one_shot_remaining,
      "to iterative pruning only (prune.one_shot_remaining=0)")
  check(not p.one_shot_remaining or p.levels == 1, "prune.levels", p.levels,
        "1 with prune.one_shot_remaining (one-shot pruning is one level)")
  check(p.method in ("layerwise", "global"), "prune.method", p.method,
        "'layerwise' or 'global'")
  refuse_unused_fields(p)
  refuse_overridden_rates(config)
  check_retrain(config)
  check(0 <= p.rewind_step < config.train.steps, "prune.rewind_step",
        p.rewind_step, f"in [0, train.steps={config.train.steps})")
  controls = controls_of(config)
  for c in controls:
    check(c in CONTROLS, "prune.controls", tuple(p.controls),
          f"a subset of {CONTROLS}")
  check(len(set(controls)) == len(controls), "prune.controls",
        tuple(p.controls), "distinct names (each control trains once)")
  s = config.stability
  for k in s.rewind_steps:
    check(0 <= k < config.train.steps, "stability.rewind_steps", tuple(
        s.rewind_steps), f"steps in [0, train.steps={config.train.steps})")
  for level in s.levels:
    check(1 <= level <= p.levels, "stability.levels", tuple(s.levels),
          f"levels in [1, prune.levels={p.levels}]")
  check(s.points >= 3, "stability.points", s.points, ">= 3")
  # The stability variant's own levels and steps are the file's: turning
  # the study off must not ask the user to reset fields they never gave.
  for field in ("levels", "rewind_steps", "points"):
    validation.check_applies(config, f"stability.{field}", s.enabled,
                             "with stability.enabled=True only (it is False)")


def refuse_unused_fields(p):
  """A field this pruning would not use is an error, never silently kept:
  per-layer rates belong to iterative layer-wise pruning, exclude_output to
  global pruning."""
  why = ("prune.method='global' (one threshold over all layers)"
         if p.method == "global" else
         "one-shot pruning (prune.one_shot_remaining)" if p.one_shot_remaining
         else "")
  if why:
    for field in ("output_fraction", "conv_fraction"):
      if p[field] != -1:
        raise UserError(f"prune.{field}={p[field]!r} is a layer-wise rate, "
                        f"unused by {why}: set it to -1")
    if name_list(p.layer_rates):
      raise UserError(f"prune.layer_rates={tuple(p.layer_rates)!r} are "
                      f"layer-wise rates, unused by {why}: set it to ()")
  if p.exclude_output and p.method != "global":
    raise UserError("prune.exclude_output=True applies to prune.method="
                    "'global' only; layer-wise pruning keeps the output layer "
                    "dense with prune.output_fraction=0")


def refuse_overridden_rates(config, conv_layers=None):
  """A layer rate (prune.layer_rates) replaces the output_fraction or
  conv_fraction of its layer: one of those the user also set for that
  layer would be silently unused. The output layer is known by name; the
  conv layers (`conv_layers`) once the model is built (`layer_rates`)."""
  p = config.prune
  for name in parse_layer_rates(p.layer_rates):
    for field, applies in (
        ("output_fraction", pruning.is_output_layer(name)),
        ("conv_fraction", conv_layers is not None and name in conv_layers)):
      if applies and p[field] != -1 and validation.set_by_user(
          config, f"prune.{field}"):
        raise UserError(
            f"prune.layer_rates={tuple(p.layer_rates)!r} sets layer {name}'s "
            f"rate, which replaces prune.{field}={p[field]!r} there: give "
            f"one of the two (prune.{field}=-1 for prune.fraction)")


def check_retrain(config):
  """`prune.retrain` and its arms; a setting no chosen mode would use is an
  error: a rewind step with fine-tuning only, lr rewinding of a schedule that
  never changes (it would be fine-tuning), the instability of tickets that
  were not weight-rewound."""
  p, o = config.prune, config.optim
  modes = retrain_modes(config)
  validation.check(p.retrain in RETRAIN, "prune.retrain", p.retrain,
                   f"one of {RETRAIN}")
  validation.check(
      all(m in RETRAIN for m in modes) and len(set(modes)) == len(modes),
      "prune.compare_retrain", tuple(modes[1:]),
      f"modes of {RETRAIN} other than prune.retrain={p.retrain!r}")
  if p.rewind_step and modes == ["finetune"]:
    raise UserError(f"prune.rewind_step={p.rewind_step} rewinds weights or "
                    "the lr schedule; prune.retrain='finetune' rewinds "
                    "nothing: set it to 0")
  if "rewind_lr" in modes and o.schedule == "constant" and not o.warmup_steps:
    raise UserError("prune.retrain/compare_retrain 'rewind_lr' replays the lr "
                    "schedule, and optim.schedule='constant' has nothing to "
                    "replay (it would be 'finetune'): set optim.schedule")
  if config.stability.levels and p.retrain != "rewind_weights":
    raise UserError(f"stability.levels={tuple(config.stability.levels)} "
                    "analyses weight-rewound tickets; prune.retrain="
                    f"{p.retrain!r}: set stability.levels=()")


def retrain_modes(config) -> List[str]:
  """The main retraining mode, then the compared arms."""
  return [config.prune.retrain] + name_list(config.prune.compare_retrain)


def controls_of(config) -> List[str]:
  return name_list(config.prune.controls)


# ---------------------------------------------------------------------------
# Run-axis helpers: masks and params carry a leading run axis in the trainer,
# while the pruning functions work on one run.
# ---------------------------------------------------------------------------
def run_slice(tree, r):
  return jax.tree.map(lambda x: x[r], tree)


def stack_runs(trees: Sequence[Any]):
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def concat_runs(trees: Sequence[Any]):
  return jax.tree.map(lambda *xs: jnp.concatenate(xs), *trees)


def parse_layer_rates(values) -> Dict[str, float]:
  """('Dense_0=0.1', 'output=0.05') -> {'Dense_0': 0.1, 'output': 0.05}."""
  rates = {}
  for item in name_list(values):
    name, _, rate = item.partition("=")
    try:
      rate = float(rate)
    except ValueError:
      raise UserError(f"prune.layer_rates={tuple(values)!r}: write LAYER=RATE "
                      f"items, e.g. ('Dense_0=0.1', 'output=0.05')") from None
    if name.strip() in rates:  # which one was meant?
      raise UserError(f"prune.layer_rates={tuple(values)!r} gives layer "
                      f"{name.strip()} two rates: give each layer one")
    rates[name.strip()] = rate
  return rates


def layer_rates(config, params_template) -> Dict[str, float]:
  """Per-layer layer-wise rates: conv, output and explicit overrides."""
  p = config.prune
  names = pruning.layer_names(pruning.ones_mask(params_template))
  overrides = parse_layer_rates(p.layer_rates)
  unknown = sorted(set(overrides) - set(names))
  if unknown:
    raise UserError(f"prune.layer_rates names layers that do not exist "
                    f"({', '.join(unknown)}); the prunable layers are: "
                    f"{', '.join(names)}")
  kernels = {optim.leaf_path(path[:-1]): leaf
             for path, leaf in jax.tree_util.tree_leaves_with_path(
                 params_template)}
  if p.conv_fraction != -1 and not any(
      len(kernels[name].shape) > 2 for name in names):
    raise UserError(f"prune.conv_fraction={p.conv_fraction!r} applies to conv "
                    f"layers, and model.name={config.model.name!r} has none: "
                    "set it to -1 (prune.fraction)")
  refuse_overridden_rates(config, [n for n in names
                                   if len(kernels[n].shape) > 2])
  rates = {}
  for name in names:
    if pruning.is_output_layer(name) and p.output_fraction != -1:
      rates[name] = p.output_fraction
    elif len(kernels[name].shape) > 2 and p.conv_fraction != -1:
      rates[name] = p.conv_fraction
  rates.update(overrides)
  return rates


class Pruner:
  """Computes the next level's ticket mask of each run."""

  def __init__(self, config, params_template):
    p = config.prune
    self.method = p.method
    self.fraction = p.fraction
    self.one_shot = p.one_shot_remaining
    self.rates = layer_rates(config, params_template)  # {} unless layer-wise
    names = pruning.layer_names(pruning.ones_mask(params_template))
    self.exclude = tuple(n for n in names if pruning.is_output_layer(n)) if (
        p.exclude_output) else ()  # Global pruning only (validate).

  def __call__(self, params, mask):
    if self.one_shot:  # Straight to the target density (of all prunable
      # weights), chosen among the survivors of `mask` (prune.initial_mask).
      return pruning.prune_to_sparsity(params, self.one_shot,
                                       method=self.method, exclude=self.exclude,
                                       mask=mask)
    if self.method == "global":
      return pruning.prune_global(params, mask, self.fraction,
                                  exclude=self.exclude)
    return pruning.prune_layerwise(params, mask, self.rates, self.fraction)

  def check_start(self, mask):
    """One-shot pruning only removes weights: a target at or above the
    density of the mask it starts from (prune.initial_mask), over the
    pruned scope (global) or in any layer (layer-wise), would prune none."""
    if not self.one_shot or mask is None:
      return
    report = pruning.sparsity_report(mask)["layers"]
    scopes = ({"the pruned layers": [n for n in report
                                     if n not in self.exclude]}
              if self.method == "global" else {n: [n] for n in report})
    target = fractions.Fraction(self.one_shot).limit_denominator(10_000)
    for what, names in scopes.items():
      total = sum(report[n]["total"] for n in names)
      kept = sum(report[n]["remaining"] for n in names)
      if kept <= math.floor(target * total):  # prune_to_sparsity's count
        raise UserError(
            f"prune.one_shot_remaining={self.one_shot!r} is at or above the "
            f"density of prune.initial_mask ({what}: {kept / total:.4g}); "
            "one-shot pruning only removes weights: give a target below it")

  def used(self) -> Dict[str, Any]:
    """The pruning as summary.json records it: only the fields it used."""
    out = {"method": self.method}
    out.update({"one_shot_remaining": self.one_shot} if self.one_shot
               else {"fraction": self.fraction})
    out.update({"exclude": list(self.exclude)} if self.method == "global"
               else {"layer_rates": self.rates})
    return out


# ---------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------
def build_trainer(config):
  """The trainer of every IMP run: its optimizer holds the pruning mask."""
  return runs.build_trainer(
      config, tx_wrapper=functools.partial(optim.with_update_mask,
                                          initial_mask=pruning.ones_mask))


def run(config, workdir):
  trainer = build_trainer(config)
  pruner = Pruner(config, trainer.params_template)  # Bad layer names fail here.
  # Here, not in validate: papers.py loads the report package.
  from jaxunknowns.lottery import papers  # pylint: disable=g-import-not-at-top
  validation.check(config.reference in ("", *papers.TICKETS), "reference",
                   config.reference, f"a key of lottery/papers.py's TICKETS "
                   f"({', '.join(papers.TICKETS)}), or ''")
  initial_mask = load_initial_mask(config, trainer.params_template)
  pruner.check_start(initial_mask)
  workdir.open()
  writer = MetricWriter(workdir.path)
  seeds = runs.seeds_of(config)
  S, T, k = len(seeds), config.train.steps, config.prune.rewind_step
  variants = ["ticket"] + controls_of(config)
  stability_ks = sorted(set(config.stability.rewind_steps)) if (
      config.stability.enabled) else []
  t_start = time.time()
  level_dir = lambda level, *f: workdir.file("levels", f"level_{level:02d}", *f)

  # Level 0: the dense network, with its weights kept at the rewind step(s).
  state = trainer.init_state(seeds)
  if initial_mask is not None:
    state = with_masks(trainer, state, stack_runs([initial_mask] * S))
  dense = trainer.fit(
      state, steps=T, data_seeds=seeds, writer=writer,
      run_labels=[{"level": 0, "variant": "ticket", "seed": s} for s in seeds],
      checkpoint_dir=level_dir(0, "checkpoints"),
      snapshot_dir=level_dir(0, "snapshots"),
      snapshot_steps=tuple(sorted({k, *stability_ks})),
      description="level 0 (dense)")
  rewind = trainer.restore_snapshot(level_dir(0, "snapshots"), k, dense.state)
  levels = [level_entry(0, optim.get_update_mask(dense.state["opt_state"]),
                        dense, ["ticket"], seeds)]
  save_masks(workdir, 0, optim.get_update_mask(dense.state["opt_state"]))

  modes = retrain_modes(config)
  trainers = {m: finetune_trainer(config, trainer) if m == "finetune"
              else trainer for m in modes}
  # Each mode's lineage: the last level's ticket state (S runs first) and masks.
  lineage = {m: (dense.state, optim.get_update_mask(dense.state["opt_state"]))
             for m in modes}
  masks_by_level = {0: lineage[modes[0]][1]}
  for level in range(1, config.prune.levels + 1):
    entry = None
    for mode in modes:
      last, last_masks = lineage[mode]
      ticket_masks = stack_runs([
          pruner(run_slice(run_params(last, 0, S), r), run_slice(last_masks, r))
          for r in range(S)])
      arms = variants if mode == modes[0] else [mode]
      start = rewind if mode == "rewind_weights" else last
      state = level_start_state(trainers[mode], config, start, ticket_masks,
                                seeds, level, arms)
      result = trainers[mode].fit(
          state, steps=T, data_seeds=seeds * len(arms), writer=writer,
          run_labels=[{"level": level, "variant": v, "seed": s}
                      for v in arms for s in seeds],
          checkpoint_dir=level_dir(level, *[mode] * (mode != modes[0]),
                                   "checkpoints"),
          description=f"level {level}" + f" ({mode})" * (mode != modes[0]))
      lineage[mode] = (result.state, ticket_masks)
      if entry is None:  # The main mode: tickets and controls.
        entry = level_entry(level, ticket_masks, result, arms, seeds)
        save_masks(workdir, level, ticket_masks)
        masks_by_level[level] = ticket_masks
      else:
        entry[mode] = level_entry(level, ticket_masks, result, ["ticket"],
                                  seeds)
        for key in ("level", "layers_remaining"):
          entry[mode].pop(key)
    levels.append(entry)
    logging.info("level %d: %.2f%% of weights remain; test accuracy %s",
                 level, 100 * entry["weights_remaining"], " | ".join(
                     f"{v} {100 * block['test_accuracy']['mean']:.2f}"
                     for v, block in [("ticket", entry)] + [
                         (v, entry[v]) for v in variants[1:] + modes[1:]]))

  add_early_stopping(levels, read_metrics(workdir.path), variants + modes[1:])
  summary = {
      "experiment": "imp", "dataset": config.data.name,
      "model": config.model.name, "seeds": seeds,
      "pruning": {**pruner.used(), "levels": config.prune.levels,
                  **retrain_used(config, modes)},
      "levels": levels,
      "parameters": trainer.param_counts,
      "wall_time_s": time.time() - t_start,
      "machine": runs.machine_info(),
  }
  if config.stability.enabled:
    from jaxunknowns.lottery import stability as imp_stability  # pylint: disable=g-import-not-at-top
    summary["instability"] = imp_stability.analyse(
        trainer, config, workdir, writer, dense.state, rewind, masks_by_level,
        start_state_fn=lambda level, masks: level_start_state(
            trainer, config, rewind, masks, seeds, level, ["ticket"]))
  writer.close()
  experiments.finish("imp", workdir, config, summary)
  return summary


def retrain_used(config, modes) -> Dict[str, Any]:
  """The retraining as summary.json records it: the rewind step only where
  a mode rewinds, the fine-tuning lr only where a mode fine-tunes."""
  out = {"retrain": modes[0]}
  out.update({"compare_retrain": modes[1:]} if modes[1:] else {})
  if set(modes) - {"finetune"}:
    out["rewind_step"] = config.prune.rewind_step
  if "finetune" in modes:
    out["finetune_lr"] = final_lr(config)
  return out


def final_lr(config) -> float:
  """The lr of the dense run's last step: what fine-tuning continues at."""
  T = config.train.steps
  return float(optim.learning_rate_schedule(config.optim, T)(T - 1))


def finetune_trainer(config, trainer):
  """A trainer like `trainer` whose schedule is the constant final lr."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.optim.update(schedule="constant", lr=final_lr(config),
                        warmup_steps=0, boundaries=())
  return runs.build_trainer(
      config, dataset=trainer.dataset,
      tx_wrapper=functools.partial(optim.with_update_mask,
                                   initial_mask=pruning.ones_mask))


def run_params(state, start, count):
  return jax.tree.map(lambda x: x[start:start + count], state["params"])


def with_masks(trainer, state, masks):
  """`state` with these per-run masks in its optimizer and on its weights."""
  state = dict(state)
  state["params"] = jax.vmap(optim.apply_mask)(state["params"], masks)
  state["opt_state"] = optim.set_update_mask(state["opt_state"], masks)
  return trainer.place(state)


def level_start_state(trainer, config, start, ticket_masks, seeds, level,
                      variants):
  """The runs of a level at step k: ticket, then the controls. The ticket
  and random_prune start from `start`'s first S runs: the step-k weights
  (weight rewinding) or the last level's trained ticket (the other modes);
  random_reinit from fresh weights. Fine-tuning also starts its counter at k:
  the same train.steps - k steps on the same batches as the other modes."""
  S = len(seeds)
  k = config.prune.rewind_step
  rewound = {"params": run_params(start, 0, S),
             "batch_stats": jax.tree.map(lambda x: x[:S], start["batch_stats"]),
             "rng": start["rng"][:S]}
  parts, masks = [], []
  for variant in variants:
    if variant not in CONTROLS:  # The ticket, or a retrain arm's ticket.
      parts.append(rewound)
      masks.append(ticket_masks)
    elif variant == "random_reinit":
      parts.append(trainer.init_variables(
          [s + REINIT_SEED_OFFSET * level for s in seeds]))
      masks.append(ticket_masks)
    elif variant == "random_prune":
      parts.append(rewound)
      masks.append(stack_runs([
          pruning.random_mask_like(run_slice(ticket_masks, r),
                                   prng.key(seeds[r] * 1000 + level))
          for r in range(S)]))
  variables = concat_runs(parts)
  state = trainer.init_state([s for _ in variants for s in seeds],
                             variables=variables, step=k)
  return with_masks(trainer, state, concat_runs(masks))


def level_entry(level, ticket_masks, result, variants, seeds):
  """summary.json's entry of one level (early stopping is added later)."""
  S = len(seeds)
  report = pruning.sparsity_report(run_slice(ticket_masks, 0))
  entry = {"level": level,
           "weights_remaining": report["fraction_remaining"],
           "layers_remaining": {n: l["fraction_remaining"]
                                for n, l in report["layers"].items()},
           "steps_per_second": result.steps_per_second,
           "wall_time_s": result.wall_time}
  for i, variant in enumerate(variants):
    idx = list(range(i * S, (i + 1) * S))
    block = {f"{split}_accuracy": stats(result.evals[split]["accuracy"][idx])
             for split in ("test", "train", "validation")
             if split in result.evals}
    if variant == "ticket":
      entry.update(block)
    else:
      entry[variant] = block
  return entry


def add_early_stopping(levels: List[Dict[str, Any]], rows, variants):
  """Early-stopping step (minimum validation loss) and the test accuracy
  there, per run, as in Frankle & Carbin's figures. Needs a validation split
  (`data.validation_size` > 0) evaluated before the last step
  (`train.eval_every` > 0); without them the fields are left out."""
  for entry in levels:
    for variant in variants:
      block = entry if variant == "ticket" else entry.get(variant)
      if block is None:
        continue
      per_seed = _early_stop_per_seed(rows, entry["level"], variant)
      if not per_seed:
        continue
      seeds = sorted(per_seed)
      steps = [per_seed[s][0] for s in seeds]
      accs = [per_seed[s][1] for s in seeds]
      block["early_stop_step"] = stats(steps)
      block["early_stop_accuracy"] = stats(accs)


def _early_stop_per_seed(rows, level, variant):
  val, test = {}, {}
  for row in rows:
    if row.get("level") != level or row.get("variant") != variant:
      continue
    if row["split"] == "validation":
      val.setdefault(row["seed"], []).append((row["loss"], row["step"]))
    elif row["split"] == "test":
      test.setdefault(row["seed"], {})[row["step"]] = row["accuracy"]
  out = {}
  for seed, points in val.items():
    if len(points) < 2:  # one evaluation (train.eval_every=0): no choice
      continue           # of a step, only the last one
    loss, step = min(points)  # Earliest step among equal minima.
    if step in test.get(seed, {}):
      out[seed] = (step, test[seed][step])
  return out


def save_masks(workdir, level, masks):
  """The level's ticket masks (one per seed) as masks/level_LL.npz."""
  paths.makedirs(workdir.file("masks"))
  flat = {optim.leaf_path(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(masks)}
  path = workdir.file("masks", f"level_{level:02d}.npz")
  if paths.exists(path):  # a resume recomputes a finished level's masks
    saved = paths.load_npz(path)
    if set(saved) == set(flat) and all(
        np.array_equal(saved[k], v) for k, v in flat.items()):
      return  # the same: leave the file (and its time) alone
  paths.save_npz(path, **flat)


def load_initial_mask(config, params_template):
  """`prune.initial_mask`: a masks/level_LL.npz to start from (seed 0's)."""
  path = config.prune.initial_mask
  if not path:
    return None
  if not paths.exists(path):
    raise UserError(f"prune.initial_mask={path!r} does not exist")
  template = pruning.ones_mask(params_template)
  try:
    saved = paths.load_npz(path)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f"prune.initial_mask={path!r} is not a mask file "
                    f"({type(e).__name__})") from e
  leaves = []
  for kpath, leaf in jax.tree_util.tree_leaves_with_path(template):
    name = optim.leaf_path(kpath)
    if name not in saved or saved[name].shape[1:] != leaf.shape:
      raise UserError(
          f"prune.initial_mask={path!r} is from another architecture: "
          f"{name} {'is missing' if name not in saved else 'has shape ' + str(saved[name].shape[1:])}"
          f", model {config.model.name} needs {tuple(leaf.shape)}")
    if not saved[name].shape[0]:  # no seed 0 to read (an IndexError)
      raise UserError(
          f"prune.initial_mask={path!r} holds no seed's mask ({name} has "
          f"shape {saved[name].shape}); give a masks/level_LL.npz an imp "
          "run wrote")
    leaves.append(jnp.asarray(saved[name][0], bool))
  mask = jax.tree.unflatten(jax.tree.structure(template), leaves)
  # Nothing kept: every level would train a network with no weights.
  if not pruning.sparsity_report(mask)["fraction_remaining"] > 0:
    raise UserError(
        f"prune.initial_mask={path!r}: seed 0's mask keeps no prunable "
        "weight (density 0); give the masks of a level that keeps some")
  return mask


experiments.register("imp", validate=validate,
                     report="jaxunknowns.lottery.imp_report:write",
                     multi_process=True)(run)
