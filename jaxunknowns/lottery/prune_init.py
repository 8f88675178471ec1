"""`prune_init`: pruning at initialization (SNIP, GraSP, SynFlow, magnitude,
random) against the IMP ticket, over a density grid down to extreme
compression, with layer collapse and the sanity checks of Frankle, Dziugaite,
Roy & Carbin (2021).

What runs:
  dense       the S seeds trained unpruned (the 100% row; the IMP ticket's
              trained weights). A stage (resumes from its checkpoints).
  BUDGET/DENSITY   one stage per layer budget (pruning/budgets.py: global,
              uniform, ERK) and density: every method's mask of every seed
              is scored on that seed's initialization (pruning/init_scores.py)
              and every sanity-check variant is trained, all runs of the
              stage in ONE vmapped program (masks per run, same data order
              per seed):
                found      the mask as the method finds it, initial weights;
                shuffled   the mask shuffled within each layer;
                reinit     the mask on a fresh initialization;
                inverted   the lowest-scored weights kept, the found mask's
                           per-layer counts (SynFlow: the scores of the
                           unpruned network, its first round);
                sign_flip  (the IMP ticket only) the kept initial weights with
                           their signs flipped (Zhou et al. 2019).
The IMP ticket ("imp" method): `prune_init.imp = "oneshot"` prunes the
trained dense weights by magnitude under the same budget and rewinds the
survivors to their initial values (one-shot lottery-ticket rewinding to step
0, the "magnitude after training, rewound" of Frankle et al. 2021); or a path
to an `imp` workdir's masks/level_LL.npz (its per-seed tickets; the run's
seeds must be the imp run's and the model the same: `check_imp_run`), which
is trained and reported at its own density only (that density joins the
grid; the other densities have no "imp" rows). Its inversion uses
|trained w|, so a loaded ticket has no inverted run.

SNIP and GraSP score a BatchNorm net with its running statistics (eval
mode, as Synaptic-Flow's code scores every method) unless
`prune_init.score_statistics = "batch"` (the scoring batch's own, train mode,
as GraSP's code). At init the running statistics make BN the identity, so
the two rank the layers of a deep BN net differently; the choice is recorded
in summary.json and report.md.

Layer collapse: a mask collapses when a layer keeps no weight or no path
joins input to output (the mask, as 0/1 weights with zero biases and BN in
eval mode, gives R = 1ᵀ f(1) = 0): the net's output no longer depends on its
input. summary.json gives per method and budget the largest compression
(1/density) each seed reaches before its first collapse along the grid.
"""

import os
import time
from typing import Any, Dict

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxunknowns import distributed
from jaxunknowns import workdir as workdir_lib
from jaxunknowns import (experiments, optim, paths, prng, pruning, runs,
                         stages, validation)
from jaxunknowns.errors import UserError
from jaxunknowns.lottery import imp
from jaxunknowns.metrics import MetricWriter, read_json_object, stats
from jaxunknowns.pruning import budgets, init_scores

VARIANTS = ("found", "shuffled", "reinit", "inverted", "sign_flip")
SCORE_STATISTICS = ("running", "batch")  # BatchNorm's while SNIP/GraSP score
REINIT_SEED_OFFSET = 200_003   # Fresh inits never coincide with a seed's.
SHUFFLE_SEED_OFFSET = 300_007


def validate(config):
  validation.validate_base(config)
  p, check = config.prune_init, validation.check
  for m in p.methods:
    init_scores.check_method(m)
  check(len(p.methods) >= 1 and len(set(p.methods)) == len(p.methods),
        "prune_init.methods", tuple(p.methods), "distinct methods, at least one")
  for b in p.budgets:
    budgets.check_budget(b)
  check(len(p.budgets) >= 1 and len(set(p.budgets)) == len(p.budgets),
        "prune_init.budgets", tuple(p.budgets),
        f"distinct names, at least one of {budgets.BUDGETS}")
  for d in p.densities:
    check(isinstance(d, (int, float)) and 0 < d <= 1, "prune_init.densities",
          tuple(p.densities), "densities in (0, 1]")
  check(len(p.densities) >= 1 and len(set(p.densities)) == len(p.densities),
        "prune_init.densities", tuple(p.densities), "distinct, at least one")
  # Each density trains in the stage folder BUDGET/{density:g}: two that
  # print alike (0.5 and 0.5000001) would share one, and the second would
  # read back the first's result (the folder format stays: workdirs resume).
  names = {}
  for d in p.densities:
    other = names.setdefault(density_name(d), d)
    check(other == d, "prune_init.densities", tuple(p.densities),
          f"distinct to 6 significant digits ({other!r} and {d!r} are both "
          f"{density_name(d)}; their stages would share one folder)")
  for v in p.variants:
    check(v in VARIANTS, "prune_init.variants", tuple(p.variants),
          f"a subset of {VARIANTS}")
  check("found" in p.variants, "prune_init.variants", tuple(p.variants),
        "including 'found'")
  check(len(set(p.variants)) == len(p.variants), "prune_init.variants",
        tuple(p.variants), "distinct names (each variant trains once)")
  validation.check_int(p.rounds, "prune_init.rounds", 1, "SynFlow's iterations")
  validation.check_int(p.score_batch, "prune_init.score_batch", 1)
  check(p.grasp_temperature > 0, "prune_init.grasp_temperature",
        p.grasp_temperature, "> 0")
  check(p.score_statistics in SCORE_STATISTICS, "prune_init.score_statistics",
        p.score_statistics, f"one of {SCORE_STATISTICS}")
  # What used_settings reports: a setting of a method not run was recorded
  # in config.json and never read.
  for field, readers in (("rounds", {"synflow"}),
                         ("score_batch", set(init_scores.NEEDS_DATA)),
                         ("grasp_temperature", {"grasp", "grasp_magnitude"}),
                         ("score_statistics", set(init_scores.NEEDS_DATA))):
    validation.check_applies(
        config, f"prune_init.{field}", bool(readers & set(p.methods)),
        f"to prune_init.methods {', '.join(sorted(readers))} only")
  validation.check_applies(
      config, "prune_init.score_statistics",
      validation.uses_batch_norm(config.model),
      "to a model with BatchNorm only (model.norm)")
  # Train mode would also drop units, or add noisy BN's noise, while
  # scoring: the choice is of BN's statistics only.
  noisy = ([f"model.dropout={config.model.dropout:g}"] * bool(
      config.model.dropout) + ["model.norm='noisy_batch'"] * (
          config.model.norm == "noisy_batch"))
  # One example normalizes every BN activation to 0: no score reaches the
  # kernels BN follows (validation.check_batch_norm_batch_size's reason).
  check(p.score_statistics == "running" or p.score_batch >= 2,
        "prune_init.score_batch", p.score_batch, ">= 2 with "
        "prune_init.score_statistics='batch' (one example's batch statistics "
        "zero every BN activation)")
  check(p.score_statistics == "running" or not noisy,
        "prune_init.score_statistics", p.score_statistics,
        f"'running' with {' and '.join(noisy)} (train mode would also "
        "perturb the network while it is scored)")
  check(p.imp == "" or p.imp == "oneshot" or p.imp.endswith(".npz"),
        "prune_init.imp", p.imp, "'', 'oneshot' or an imp workdir's "
        "masks/level_LL.npz")
  if "sign_flip" in p.variants:
    check(bool(p.imp), "prune_init.variants", tuple(p.variants),
          "without 'sign_flip' when prune_init.imp='' (it applies to the IMP "
          "ticket only)")
  check(not p.imp.endswith(".npz") or "imp" not in p.methods,
        "prune_init.methods", tuple(p.methods), "without 'imp'")


def density_name(density) -> str:
  """A density as its stage folder names it (BUDGET/{density:g}): existing
  workdirs resume by these names."""
  return f"{density:g}"


def stage_name(budget, density) -> str:
  return f"{budget}/{density_name(density)}"


def check_imp_run(path, config):
  """A loaded ticket (`prune_init.imp`) is put on this run's initializations,
  so it must come from an imp run of the same seeds and model. When the
  imp run's config.json is beside its masks folder (masks/../config.json),
  its seeds (`seed`, `seeds`: this run's must be its first ones, as the
  tickets are taken in order) and the model.* fields the model's builder
  reads must be this run's. Without that config.json (a mask file copied
  elsewhere) only the masks' layer shapes and seed count are checked
  (`load_imp_masks`). Never checked: the data, optimizer and pruning the
  imp run used (the ticket is trained here from the initialization, with
  this run's training settings, whatever the imp run's rewind step)."""
  folder = os.path.dirname(path)
  if os.path.basename(folder) != "masks":
    return
  beside = os.path.join(os.path.dirname(folder), "config.json")
  theirs = read_json_object(beside, "restore the imp run's config.json")
  if theirs is None:
    return
  if theirs.get("experiment") != "imp":
    raise UserError(f"prune_init.imp={path!r}: {beside} is not an imp run's "
                    "config; give the masks of an imp workdir")
  ours = workdir_lib.config_to_dict(config)
  their_seeds = [theirs.get("seed", 0) + i for i in range(theirs.get(
      "seeds", 1))]
  seeds = runs.seeds_of(config)
  if seeds != their_seeds[:len(seeds)]:
    raise UserError(
        f"prune_init.imp={path!r} holds the tickets of seeds {their_seeds} "
        f"(its run's seed={theirs.get('seed')}, seeds={theirs.get('seeds')}); "
        f"this run's seeds are {seeds}: set seed={their_seeds[0]} and "
        f"seeds <= {len(their_seeds)}")
  fields = validation.model_fields_read(config.model) or set(ours["model"])
  differ = [f"model.{f}={ours['model'][f]!r} (the imp run's: "
            f"{theirs['model'][f]!r})" for f in sorted(fields | {"name"})
            if f in ours["model"] and f in theirs.get("model", {})
            and ours["model"][f] != theirs["model"][f]]
  if differ:
    raise UserError(f"prune_init.imp={path!r} is from an imp run of another "
                    f"model: {'; '.join(differ)}; use the imp run's model")


def load_imp_masks(path, params_template, num_seeds):
  """Per-seed ticket masks (run axis first) from an imp masks/level_LL.npz."""
  if not paths.exists(path):
    raise UserError(f"prune_init.imp={path!r} does not exist")
  try:
    saved = paths.load_npz(path)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f"prune_init.imp={path!r} is not a mask file "
                    f"({type(e).__name__})") from e
  template = pruning.ones_mask(params_template)
  leaves = []
  for kpath, leaf in jax.tree_util.tree_leaves_with_path(template):
    name = optim.leaf_path(kpath)  # as imp.save_masks
    got = saved.get(name)
    if got is None or got.shape[1:] != leaf.shape:
      raise UserError(
          f"prune_init.imp={path!r} is from another architecture: {name} "
          f"{'is missing' if got is None else 'has shape ' + str(got.shape[1:])}"
          f", the model needs {tuple(leaf.shape)}")
    if got.shape[0] < num_seeds:
      raise UserError(f"prune_init.imp={path!r} holds {got.shape[0]} seeds' "
                      f"tickets; the run has {num_seeds} seeds")
    leaves.append(jnp.asarray(got[:num_seeds], bool))
  masks = jax.tree.unflatten(jax.tree.structure(template), leaves)
  # A ticket's density joins the grid: one of 0 failed the grid's check
  # only after every other density had trained.
  for r in range(num_seeds):
    if not pruning.sparsity_report(imp.run_slice(masks, r))[
        "fraction_remaining"] > 0:
      raise UserError(f"prune_init.imp={path!r}: seed {r}'s ticket keeps no "
                      "prunable weight (density 0); give the masks of a "
                      "level that keeps some")
  return masks


# ---------------------------------------------------------------------------
# Scores and masks of one seed
# ---------------------------------------------------------------------------
class Scorer:
  """The compiled score functions of one model (per run)."""

  def __init__(self, trainer, config):
    self.trainer, self.p = trainer, config.prune_init
    model, bn = trainer.model, trainer.has_batch_stats
    loss_fn = trainer.loss_fn
    ones = jnp.ones((1,) + tuple(trainer.dataset.input_shape), jnp.float32)

    def apply(params, batch_stats, x, batch_statistics=False):
      v = {"params": params, **({"batch_stats": batch_stats} if bn else {})}
      if batch_statistics and bn:  # the batch's own; the update is dropped
        return model.apply(v, x, train=True, mutable=["batch_stats"])[0]
      return model.apply(v, x, train=False)

    # SNIP and GraSP see BatchNorm as `score_statistics` says: "running"
    # (eval mode: at init mean 0 and variance 1, so BN is the identity and
    # the scores are an unnormalized network's), as Synaptic-Flow's code
    # scores every method; "batch", as GraSP's own code (train mode), where
    # scaling a kernel that feeds BN leaves the scores unchanged.
    by_batch = self.p.score_statistics == "batch"

    def loss(params, bs, x, y, temperature=1.0):
      return jnp.mean(loss_fn(apply(params, bs, x, by_batch) / temperature, y))

    def output_sum(params, bs):  # R = 1ᵀ f(1), linearized statistics
      return jnp.sum(apply(params, jax.tree.map(jnp.abs, bs), ones))

    T = float(self.p.grasp_temperature)
    self.snip = jax.jit(lambda w, bs, m, x, y: init_scores.snip(
        lambda q: loss(q, bs, x, y), w, m))
    self.grasp = jax.jit(lambda w, bs, m, x, y, mag: init_scores.grasp(
        lambda q: loss(q, bs, x, y, T), w, m, magnitude=mag),
                         static_argnums=5)
    self.synflow = jax.jit(lambda w, bs, m: init_scores.synflow(
        lambda q: output_sum(q, bs), w, m))

    self._output_sum = jax.jit(output_sum)

  def batch(self, seed):
    train = self.trainer.dataset.train
    idx = prng.random_state(seed).choice(
        len(train.y), self.p.score_batch, replace=False)  # check_score_batch
    return jnp.asarray(train.x[idx]), jnp.asarray(train.y[idx])

  def keep(self, method, params, bs, mask, seed):
    """Keep-scores (higher kept) of one method on one seed's weights."""
    if method in init_scores.NEEDS_DATA:
      x, y = self.batch(seed)
      raw = (self.snip(params, bs, mask, x, y) if method == "snip" else
             self.grasp(params, bs, mask, x, y, method == "grasp_magnitude"))
    elif method == "synflow":
      raw = self.synflow(params, bs, mask)
    elif method in ("magnitude", "imp"):
      raw = init_scores.magnitude(params, mask)
    else:
      raw = init_scores.random(mask, prng.key(seed))
    return raw if method == "imp" else init_scores.keep_scores(method, raw)

  def found(self, method, params, bs, ones, density, budget, seed):
    if method == "synflow":
      return init_scores.iterative(
          lambda m: self.synflow(params, bs, m), ones, density, budget,
          self.p.rounds)
    return budgets.select(self.keep(method, params, bs, ones, seed), ones,
                          density, budget)

  def collapsed(self, params, bs, mask):
    """(empty layers, no input-output path) of a mask."""
    empty = [n for n, m in budgets.mask_layers(mask) if not bool(jnp.any(m))]
    lin = jax.tree_util.tree_map_with_path(
        lambda path, x: jnp.zeros_like(x) if str(getattr(
            path[-1], "key", "")) == "bias" else jnp.abs(x), params)
    lin = jax.tree.map(lambda m, x: x if m is None else m.astype(x.dtype),
                       mask, lin, is_leaf=lambda x: x is None)
    return empty, not float(self._output_sum(lin, bs)) > 0


# ---------------------------------------------------------------------------
# A stage: one budget and density, every method and variant in one program
# ---------------------------------------------------------------------------
def flip_variants(variants, method):
  """The variants a method is trained with (sign flipping: IMP only)."""
  return [v for v in variants if v != "sign_flip" or method == "imp"]


def stage_runs(scorer, config, init, reinit, trained, imp_masks, density,
               budget, seeds, imp_density=None):
  """[(method, variant, seed index, params, batch_stats, mask)] and the ERK
  layers capped at density 1. A loaded ticket (`imp_masks`) trains in the
  stage of its own density (`imp_density`) only: at any other it would be
  reported at a density it does not have."""
  p, out = config.prune_init, []
  methods = list(p.methods) + (["imp"] if p.imp and (
      imp_masks is None or density == imp_density) else [])
  for r, seed in enumerate(seeds):
    w0 = imp.run_slice(init["params"], r)
    bs = imp.run_slice(init["batch_stats"], r)
    ones = pruning.ones_mask(w0)
    for method in methods:
      if method == "imp" and imp_masks is not None:
        found, keep = imp.run_slice(imp_masks, r), None
      elif method == "imp":
        keep = init_scores.magnitude(imp.run_slice(trained, r), ones)
        found = budgets.select(keep, ones, density, budget)
      else:
        found = scorer.found(method, w0, bs, ones, density, budget, seed)
        keep = scorer.keep(method, w0, bs, ones, seed) if (
            "inverted" in p.variants) else None
      for variant in flip_variants(p.variants, method):
        w, m = w0, found
        if variant == "shuffled":
          m = pruning.random_mask_like(found, prng.key(
              SHUFFLE_SEED_OFFSET + seed))
        elif variant == "reinit":
          w = imp.run_slice(reinit["params"], r)
        elif variant == "inverted":
          if keep is None:
            continue  # a loaded ticket has no scores to invert
          m = init_scores.inverted(keep, found)
        elif variant == "sign_flip":
          w = init_scores.sign_flipped(w0, found)
        out.append((method, variant, r, w, bs, m))
  shapes = [np.shape(m) for _, m in budgets.mask_layers(pruning.ones_mask(
      imp.run_slice(init["params"], 0)))]
  capped = budgets.layer_counts(shapes, density, budget)["capped"]
  return out, capped


def run_stage(trainer, scorer, config, workdir, writer, init, reinit, trained,
              imp_masks, density, budget, seeds, imp_density=None):
  name = stage_name(budget, density)
  folder = stages.stage_dir(workdir, name)

  def compute():
    t0 = time.time()
    runs_, capped = stage_runs(scorer, config, init, reinit, trained,
                               imp_masks, density, budget, seeds, imp_density)
    collapse = [scorer.collapsed(w, bs, m) for _, _, _, w, bs, m in runs_]
    variables = {k: imp.stack_runs([x[i] for x in runs_])
                 for k, i in (("params", 3), ("batch_stats", 4))}
    variables["rng"] = np.stack([init["rng"][x[2]] for x in runs_])
    masks = imp.stack_runs([x[5] for x in runs_])
    run_seeds = [seeds[x[2]] for x in runs_]
    state = trainer.init_state(run_seeds, variables=variables)
    state = imp.with_masks(trainer, state, masks)
    t_score = time.time() - t0
    result = trainer.fit(
        state, steps=config.train.steps, data_seeds=run_seeds, writer=writer,
        run_labels=[{"budget": budget, "density": density, "method": m,
                     "variant": v, "seed": seeds[r]} for m, v, r, *_ in runs_],
        checkpoint_dir=f"{folder}/checkpoints", description=name)
    rows = {}
    for i, (method, variant, r, _, _, m) in enumerate(runs_):
      row = rows.setdefault((method, variant), {
          "method": method, "budget": budget, "variant": variant,
          "density": density, "per_seed": [], "layers": [], "empty": [],
          "cut": []})
      row["per_seed"].append(float(result.evals["test"]["accuracy"][i]))
      row["layers"].append(pruning.sparsity_report(m))
      row["empty"].append(collapse[i][0])
      row["cut"].append(collapse[i][1])
    out = []
    for row in rows.values():
      reports = row.pop("layers")
      empty, cut = row.pop("empty"), row.pop("cut")
      out.append({**{k: row[k] for k in ("method", "budget", "variant",
                                          "density")},
                  "test_accuracy": stats(row.pop("per_seed")),
                  "weights_remaining": float(np.mean(
                      [rep["fraction_remaining"] for rep in reports])),
                  "layer_density": {n: float(np.mean(
                      [rep["layers"][n]["fraction_remaining"]
                       for rep in reports])) for n in reports[0]["layers"]},
                  "collapsed": any(e or c for e, c in zip(empty, cut)),
                  "collapsed_seeds": [bool(e or c) for e, c in
                                      zip(empty, cut)],
                  "empty_layers": sorted({n for e in empty for n in e})})
    layer_names = list(rows and out[0]["layer_density"])
    return {"rows": out, "runs": len(runs_),
            "erk_capped": [layer_names[i] for i in capped],
            "score_seconds": t_score, "train_seconds": result.wall_time,
            "steps_per_second": result.steps_per_second}

  return stages.run_stage(folder, compute, name=name)


def check_score_batch(config, train_examples):
  """The scoring batch is drawn from the training set without replacement:
  a larger one than the set cannot be drawn (a clipped batch would be
  recorded as the size asked for)."""
  n = used_settings(config).get("score_batch")
  validation.check(n is None or n <= train_examples, "prune_init.score_batch",
                   n, f"at most the {train_examples} training examples "
                   "(the scoring batch is drawn from them)")


def used_settings(config) -> Dict[str, Any]:
  """The scoring settings the run's methods and model use (and only those)."""
  p, out = config.prune_init, {}
  if "synflow" in p.methods:
    out["rounds"] = p.rounds
  if set(p.methods) & set(init_scores.NEEDS_DATA):
    out["score_batch"] = p.score_batch
  if {"grasp", "grasp_magnitude"} & set(p.methods):
    out["grasp_temperature"] = p.grasp_temperature
  if (set(p.methods) & set(init_scores.NEEDS_DATA)
      and validation.uses_batch_norm(config.model)):
    out["score_statistics"] = p.score_statistics
  return out


def max_compression(rows, method, budget, num_seeds):
  """Per seed, the largest 1/density of the found masks before the first
  collapse along the grid (densest first); the whole grid if none."""
  found = sorted((r for r in rows if r["method"] == method and
                  r["budget"] == budget and r["variant"] == "found"),
                 key=lambda r: -r["density"])
  per_seed = []
  for s in range(num_seeds):
    best = 1.0
    for r in found:
      if r["collapsed_seeds"][s]:
        break
      best = 1.0 / r["density"]
    per_seed.append(best)
  return stats(per_seed)


def run(config, workdir):
  p = config.prune_init
  trainer = imp.build_trainer(config)
  seeds = runs.seeds_of(config)
  check_score_batch(config, len(trainer.dataset.train.y))
  imp_masks = imp_density = None
  if p.imp.endswith(".npz"):
    check_imp_run(p.imp, config)
    imp_masks = load_imp_masks(p.imp, trainer.params_template, len(seeds))
  densities = sorted(set(p.densities), reverse=True)
  if imp_masks is not None:  # the ticket's own density joins the grid
    # (seed 0's: an IMP level prunes the same count in every seed). A grid
    # density of the same stage folder is that stage: the ticket trains there.
    imp_density = pruning.sparsity_report(imp.run_slice(imp_masks, 0))[
        "fraction_remaining"]
    imp_density = next((d for d in densities if density_name(d) ==
                        density_name(imp_density)), imp_density)
    densities = sorted(set(densities) | {imp_density}, reverse=True)
  scorer = Scorer(trainer, config)
  workdir.open()
  writer = MetricWriter(workdir.path)
  t_start = time.time()
  # Host copies: the train step donates the device buffers it is given.
  init = distributed.device_get(trainer.init_variables(seeds))
  reinit = distributed.device_get(trainer.init_variables(
      [s + REINIT_SEED_OFFSET for s in seeds]))
  dense = trainer.fit(
      trainer.init_state(seeds, variables=init), steps=config.train.steps,
      data_seeds=seeds, writer=writer,
      run_labels=[{"method": "dense", "variant": "found", "seed": s}
                  for s in seeds],
      checkpoint_dir=workdir.file("stages", "dense", "checkpoints"),
      description="dense")
  trained = distributed.device_get(dense.state["params"])
  results = [{"method": "dense", "budget": "none", "variant": "found",
              "density": 1.0, "test_accuracy": stats(
                  dense.evals["test"]["accuracy"]), "weights_remaining": 1.0,
              "collapsed": False, "collapsed_seeds": [False] * len(seeds),
              "empty_layers": [], "layer_density": {
                  n: 1.0 for n in pruning.layer_names(
                      trainer.params_template)}}]
  stage_info = {}
  for budget in p.budgets:
    for density in densities:
      res = run_stage(trainer, scorer, config, workdir, writer, init, reinit,
                      trained, imp_masks, density, budget, seeds, imp_density)
      # A stage finished before loaded tickets kept to their own density
      # holds "imp" rows of the ticket at other densities: not reported.
      results += [r for r in res["rows"] if imp_masks is None or (
          r["method"] != "imp" or density == imp_density)]
      stage_info[stage_name(budget, density)] = {
          k: res[k] for k in ("runs", "erk_capped", "score_seconds",
                              "train_seconds", "steps_per_second")}
      logging.info("%s/%g: %s", budget, density, " | ".join(
          f"{r['method']} {r['variant']} "
          f"{100 * r['test_accuracy']['mean']:.1f}"
          + (" (collapsed)" if r["collapsed"] else "") for r in res["rows"]))
  methods = list(p.methods) + (["imp"] if p.imp else [])
  writer.close()
  summary = {
      "experiment": "prune_init", "dataset": config.data.name,
      "model": config.model.name, "seeds": seeds,
      "train_examples": int(len(trainer.dataset.train.y)),
      "methods": methods, "budgets": list(p.budgets),
      "densities": densities, "variants": list(p.variants),
      "imp_source": p.imp, **used_settings(config), "results": results,
      "max_compression": {b: {m: max_compression(results, m, b, len(seeds))
                              for m in methods} for b in p.budgets},
      "stages": stage_info, "parameters": trainer.param_counts,
      "wall_time_s": time.time() - t_start, "machine": runs.machine_info(),
  }
  experiments.finish("prune_init", workdir, config, summary)
  return summary


experiments.register("prune_init", validate=validate,
                     report="jaxunknowns.lottery.prune_init_report:write",
                     multi_process=True)(run)
