"""`bn_smoothness`: why BatchNorm helps (Santurkar et al. 2018).

What runs. One *arm* per entry of `smoothness.arms` (a `model.norm`: "none",
"batch", "noisy_batch", ...): the config's network with that norm, all
`seeds` trained at once by the one Trainer, on the same data, optimizer and
schedule. Two trainer callbacks (analysis/smoothness.py) measure every
`smoothness.every` steps, at step 0 and at the end, on one fixed probe batch
in train mode: the landscape along the gradient (split "smoothness") and the
ICS of every layer (split "ics"). Rows carry an `arm` label.

Arms are resumable: each has a folder arms/ARM with its checkpoints and, once
finished, result.json; a rerun skips finished arms and resumes the
interrupted one.
"""

import os
import time

from typing import Any, Dict, Mapping

from absl import logging

from jaxunknowns import experiments, paths, runs, stages, validation
from jaxunknowns.analysis import smoothness
from jaxunknowns.data import load_dataset
from jaxunknowns.metrics import MetricWriter, curves, read_metrics, stats
from jaxunknowns.models import layers

ARM_NORMS = tuple(n for n in layers.NORMS if n != "default")
# The landscape measures the smoothness callback logs (split "smoothness").
LANDSCAPE = ("loss", "loss_min", "loss_max", "loss_range", "gpred_min",
             "gpred_max", "beta", "grad_norm")


def validate(config):
  validation.validate_base(config)
  check = validation.check
  s = config.smoothness
  arms = tuple(s.arms)
  check(len(arms) >= 1 and len(set(arms)) == len(arms), "smoothness.arms",
        arms, "a non-empty tuple of distinct norms")
  for arm in arms:
    layers.check_choice("smoothness.arms entry", arm, ARM_NORMS)
  smoothness.check_settings(every=s.every, step_sizes=s.step_sizes,
                            probe_size=s.probe_size)
  # arm_config writes each arm's norm: a model.norm given here is unused.
  validation.check_applies(
      config, "model.norm", False, "to no arm: each arm sets it from "
      "smoothness.arms")
  # validation.uses_batch_norm knows "batch" only; noisy BN is BN too.
  bn_arms = [a for a in arms if a in ("batch", "noisy_batch")]
  for field, size in (("train.batch_size", config.train.batch_size),
                      ("smoothness.probe_size", s.probe_size)):
    check(not (bn_arms and size == 1), field, size,
          f">= 2 with batch-norm arms ({', '.join(bn_arms)}): the statistics "
          f"of one example are degenerate")
  for field in ("noise_mean_std", "noise_scale_std"):
    value = config.model.get(field, 0.0)
    check(value >= 0, f"model.{field}", value, ">= 0")
  # Each arm sets model.norm: a norm's own field is used if an arm reads it.
  validation.check_norm_fields(config, arms, f"smoothness.arms={arms}")


def arm_config(config, arm: str):
  c = config.copy_and_resolve_references()
  c.model.norm = arm
  return c


def build_arms(config):
  """{arm: (trainer, callbacks)}: every model and callback is built (and any
  bad input raised) before the workdir is touched."""
  dataset = load_dataset(config.data)
  s = config.smoothness
  arms = {}
  for arm in s.arms:
    trainer = runs.build_trainer(arm_config(config, arm), dataset=dataset)
    callbacks = [smoothness.smoothness_callback(
        trainer, every=s.every, step_sizes=s.step_sizes,
        probe_size=s.probe_size, seed=s.seed)]
    if s.ics:
      callbacks.append(smoothness.ics_callback(
          trainer, every=s.every, probe_size=s.probe_size, seed=s.seed))
    arms[arm] = (trainer, callbacks)
  return arms


def run_arm(workdir, arm, trainer, callbacks, seeds, writer, steps):
  """One arm as a stage (stages.run_stage): arms/ARM/result.json once done."""
  folder = workdir.file("arms", arm)

  def compute():
    labels = [{"arm": arm, "seed": s} for s in seeds]
    state = trainer.init_state(seeds)
    checkpoint_dir = os.path.join(folder, "checkpoints")
    # Fresh: measure the initial weights. Every process asks the shared
    # workdir (a non-main process's folder is this run's scratch): one that
    # alone measured would wait forever in the measurement's collectives.
    if not paths.exists(paths.shared(checkpoint_dir)):
      for c in callbacks:
        # rewrite: an attempt killed between two callbacks (the next one
        # compiling) left the first one's rows, and fit makes the folder.
        writer.rewrite(0, c.name, labels, c.fn(trainer, state, 0))
    t0 = time.time()
    result = trainer.fit(state, steps=steps, data_seeds=seeds, writer=writer,
                         run_labels=labels, checkpoint_dir=checkpoint_dir,
                         callbacks=callbacks, description=f"norm={arm}")
    return {"arm": arm, "final": runs.eval_stats(result.evals),
            "parameters": trainer.param_counts,
            "steps_per_second": result.steps_per_second,
            "wall_time_s": time.time() - t0,
            "resumed_from_step": result.resumed_from,
            "layers": next((getattr(c, "layers") for c in callbacks
                            if hasattr(c, "layers")), [])}

  return stages.run_stage(folder, compute, name=f"norm={arm}")


def per_step(rows, split, name, arm) -> Dict[str, Dict[str, Any]]:
  """{step: {mean, std, per_seed}} of one measure, at the steps every seed
  has (seeds in order)."""
  per_seed = curves(rows, split, name, arm=arm)
  if not per_seed:
    return {}
  steps = sorted(set.intersection(*[set(c) for c in per_seed.values()]))
  return {str(t): stats([per_seed[s][t] for s in sorted(per_seed)])
          for t in steps}


def summarize(path: str, config, results: Mapping[str, Mapping]) -> Dict:
  """summary.json: per arm its final accuracies and, per measured step, every
  landscape measure and every layer's ICS over seeds (from metrics.jsonl)."""
  rows = read_metrics(path)
  out = {"experiment": "bn_smoothness", "dataset": config.data.name,
         "model": config.model.name, "optimizer": config.optim.name,
         "lr": config.optim.lr, "steps": config.train.steps,
         "step_sizes": list(config.smoothness.step_sizes),
         "probe_size": config.smoothness.probe_size or config.train.batch_size,
         "arms": {}}
  for arm, res in results.items():
    out["arms"][arm] = {
        "final": res["final"], "parameters": res["parameters"],
        "wall_time_s": res["wall_time_s"],
        "steps_per_second": res["steps_per_second"], "layers": res["layers"],
        "smoothness": {name: per_step(rows, "smoothness", name, arm)
                       for name in LANDSCAPE},
        "ics": {f"{kind}_{layer}": per_step(rows, "ics", f"{kind}_{layer}", arm)
                for layer in res["layers"] for kind in ("l2", "cos", "gnorm")}}
  return out


def run(config, workdir):
  arms = build_arms(config)
  workdir.open()
  seeds = runs.seeds_of(config)
  writer = MetricWriter(workdir.path)
  t0 = time.time()
  results = {}
  for arm, (trainer, callbacks) in arms.items():
    results[arm] = run_arm(workdir, arm, trainer, callbacks, seeds, writer,
                           config.train.steps)
  writer.close()
  summary = summarize(workdir.path, config, results)
  summary.update({"seeds": seeds, "wall_time_s": time.time() - t0,
                  "machine": runs.machine_info()})
  experiments.finish("bn_smoothness", workdir, config, summary)
  logging.info("summary in %s", workdir.summary_path)
  return summary


experiments.register(
    "bn_smoothness", validate=validate, own_fields=layers.NORM_FIELD_PATHS,
    report="jaxunknowns.batchnorm.bn_report:write_smoothness",
    multi_process=True)(run)
