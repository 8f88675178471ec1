"""`sharpness`: small-batch vs large-batch minima (Keskar et al. 2017).

What runs. Each arm of `compare` (by default batch 64 vs 6000 = 10% of the
data, the same budget in epochs; see landscape_arms.py) trains `seeds`
networks at once, resumably (arms/NAME/checkpoints), with the Hessian
callback of analysis/hessian.py (`hessian` section, `callback_from_config`)
computing the top eigenvalue along training at `sharpness.hessian_points`
evenly spaced steps and at the end. At the end, per seed:

* test and train accuracy (train: eval mode, whole training set);
* the top Hessian eigenvalue of the training loss on the `hessian` subset
  (Lanczos; BatchNorm in eval mode) -- the callback's last value;
* Keskar's epsilon-sharpness for each eps of `sharpness.epsilons`
  (analysis/sharpness.py: box |delta_i| <= eps (|x_i| + 1), 100 (max L - L)
  / (1 + L)) on the training loss of a fixed subset of
  `sharpness.subset_size` examples, the max by `sharpness.maximiser`:
  "sign_ascent" (projected sign-gradient ascent, all seeds in one compiled
  call) or "lbfgsb" (scipy's L-BFGS-B, Keskar et al.'s, seed by seed).

Each arm is a stage (stages.run_stage in arms/NAME): a finished arm is not
redone. summary.json holds per-arm mean ± std over seeds; report.md compares
the last arm (large batch) with the first, as Keskar et al. do.
"""

import math
import time
from typing import Any, Dict

import jax
import numpy as np
from absl import logging

from jaxunknowns import distributed, experiments, stages, validation
from jaxunknowns.analysis import hessian
from jaxunknowns.analysis import sharpness as sharpness_lib
from jaxunknowns import runs
from jaxunknowns.implicit import landscape_arms
from jaxunknowns.metrics import MetricWriter, stats
from jaxunknowns.models import layers

MAXIMISERS = ("sign_ascent", "lbfgsb")  # sharpness.maximiser

def validate(config):
  validation.validate_base(config)
  landscape_arms.validate_arms(config)
  check = validation.check
  s = config.sharpness
  eps = tuple(s.epsilons)
  check(len(eps) >= 1 and all(validation.is_number(e) and e > 0 for e in eps),
        "sharpness.epsilons", eps, "a non-empty tuple of positive numbers")
  # A repeat keyed the same measurement twice: one value, two table columns.
  check(len(set(eps)) == len(eps), "sharpness.epsilons", eps,
        "distinct values of ε")
  validation.check_int(s.iterations, "sharpness.iterations", 1)
  check(0 < s.step <= 1, "sharpness.step", s.step,
        "in (0, 1] (a fraction of the box half-width)")
  check(s.maximiser in MAXIMISERS, "sharpness.maximiser", s.maximiser,
        f"one of {', '.join(map(repr, MAXIMISERS))}")
  validation.check_applies(config, "sharpness.step",
                           s.maximiser == "sign_ascent",
                           "to sharpness.maximiser='sign_ascent' only")
  validation.check_int(s.subset_size, "sharpness.subset_size", 0, "0 = all")
  validation.check_int(s.chunk_size, "sharpness.chunk_size", 0,
                       "0 = all at once")
  validation.check_int(s.hessian_points, "sharpness.hessian_points", 0,
                       "0 = at the end only")
  # Off, no Hessian runs along training (`run`): only the final one.
  validation.check_applies(config, "sharpness.hessian_points",
                           config.hessian.enabled,
                           "only with hessian.enabled=True (the Hessian "
                           "along training)")
  validation.check_applies(  # hessian_section sets it for each arm
      config, "hessian.every", False, "nowhere here: sharpness.hessian_points "
      "spreads the Hessian's points over each arm's steps")
  validation.check_applies(  # Lanczos runs hessian.num_steps steps
      config, "hessian.tol", config.hessian.method == "power",
      "to hessian.method='power' only")
  check(config.train.eval_train, "train.eval_train", config.train.eval_train,
        "True (the report compares training accuracy)")


def hessian_section(config, steps: int):
  """The `hessian` section for one arm: always on (the final eigenvalue is a
  result), `every` spreading `sharpness.hessian_points` over the arm's steps."""
  h = config.hessian.copy_and_resolve_references()
  h.enabled = True
  points = config.sharpness.hessian_points
  h.every = max(1, math.ceil(steps / points)) if points > 0 else steps
  return h


def build_arms(config) -> Dict[str, Any]:
  """{arm: (trainer, hessian callback, sharpness fns, subset)}; everything
  that can fail on bad input (datasets, models, eigenvalue count > parameter
  count, subset sizes) fails here, before the workdir is touched."""
  out = {}
  s = config.sharpness
  for name, c, ds in landscape_arms.arms_with_data(config):
    trainer = runs.build_trainer(c, dataset=ds)
    callback = hessian.callback_from_config(
        trainer, hessian_section(config, c.train.steps))
    x, y = hessian.subset(ds.train, s.subset_size, s.seed)
    loss = hessian.network_loss(trainer.model, trainer.loss_fn, x, y,
                                has_batch_stats=trainer.has_batch_stats,
                                chunk_size=s.chunk_size,
                                chunk_field="sharpness.chunk_size")
    fns = {float(e): sharpness_lib.lbfgsb_sharpness_fn(
        loss, float(e), iterations=s.iterations)
           if s.maximiser == "lbfgsb" else sharpness_lib.network_sharpness_fn(
               loss, float(e), iterations=s.iterations, step=s.step)
           for e in s.epsilons}
    out[name] = (trainer, callback, fns, len(y))
  return out


class _Last:
  """Wraps a Callback's fn to keep its last values (the final eigenvalue is
  then not computed twice)."""

  def __init__(self, callback):
    self.callback = callback
    self.values = None
    inner = callback.fn

    def fn(trainer, state, step):
      self.values = inner(trainer, state, step)
      return self.values
    callback.fn = fn


def run_arm(config, workdir, writer, name, trainer, callback, fns):
  """One arm as a stage (arms/NAME): trained (resuming from its
  checkpoints), then measured; a finished arm is read from its result.json."""
  seeds = runs.seeds_of(config)
  labels = [{"arm": name, "seed": s} for s in seeds]

  def compute():
    last = _Last(callback)
    along = [callback] if config.hessian.enabled else []
    result = trainer.fit(
        trainer.init_state(seeds), steps=trainer.config.train.steps,
        data_seeds=seeds, writer=writer, run_labels=labels,
        checkpoint_dir=workdir.file("arms", name, "checkpoints"),
        callbacks=along, description=name)
    state = result.state
    steps = trainer.config.train.steps
    t0 = time.time()
    if last.values is None:  # Along-training off, or resumed at the end.
      callback.fn(trainer, state, steps)
    eig = {k: np.asarray(v) for k, v in last.values.items()}
    t_hessian = time.time() - t0
    t0 = time.time()
    sharp = {}
    for eps, fn in fns.items():
      out = distributed.device_get(fn(state["params"], state["batch_stats"]))
      sharp[eps] = {k: np.asarray(v) for k, v in out.items()}
    t_sharp = time.time() - t0
    writer.rewrite(steps, "sharpness", labels, {
        **{f"eps_{eps:g}": v["sharpness"] for eps, v in sharp.items()},
        **{f"max_loss_eps_{eps:g}": v["max_loss"] for eps, v in sharp.items()},
        "subset_loss": next(iter(sharp.values()))["loss"], **eig})
    return {
        "overrides": config.arms[name].to_dict(),
        "batch_size": trainer.config.train.batch_size, "steps": steps,
        "steps_per_epoch": len(trainer.dataset.train.y) /
                           trainer.config.train.batch_size,
        "final": runs.eval_stats(result.evals),
        "top_eigenvalue": stats(eig["eig_0"]),
        "eigenvalues": {k: stats(v) for k, v in eig.items()
                        if k.startswith("eig_")},
        "lanczos_residual": stats(eig["residual"]),
        "sharpness": {f"{eps:g}": stats(v["sharpness"])
                      for eps, v in sharp.items()},
        "subset_loss": stats(next(iter(sharp.values()))["loss"]),
        "train_seconds": result.wall_time, "hessian_final_seconds": t_hessian,
        "sharpness_seconds": t_sharp,
    }

  return stages.run_stage(workdir.file("arms", name), compute, name=name)


def run(config, workdir):
  arms = build_arms(config)
  workdir.open()
  writer = MetricWriter(workdir.path)
  t_start = time.time()
  results = {}
  for name, (trainer, callback, fns, _) in arms.items():
    results[name] = run_arm(config, workdir, writer, name, trainer, callback,
                            fns)
    r = results[name]
    logging.info("[%s] test acc %.2f%%, top eigenvalue %.3f, eps-sharpness %s",
                 name, 100 * r["final"]["test"]["accuracy"]["mean"],
                 r["top_eigenvalue"]["mean"],
                 {e: round(v["mean"], 4) for e, v in r["sharpness"].items()})
  writer.close()
  names = list(arms)
  summary = {
      "experiment": "sharpness", "dataset": config.data.name,
      "model": config.model.name, "compare": names,
      "seeds": runs.seeds_of(config), "epochs": config.epochs,
      "epsilons": [float(e) for e in config.sharpness.epsilons],
      "sharpness_subset": arms[names[0]][3],
      "hessian_subset": config.hessian.subset_size, "arms": results,
      "wall_time_s": time.time() - t_start,
      "machine": runs.machine_info(),
  }
  experiments.finish("sharpness", workdir, config, summary)
  return summary


experiments.register("sharpness", validate=validate,
                     own_fields=layers.NORM_FIELD_PATHS,
                     report="jaxunknowns.implicit.sharpness_report:write",
                     multi_process=True)(run)
