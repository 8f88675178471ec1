"""`sam`: sharpness-aware minimization against its inner optimizer
(Foret, Kleiner, Mobahi & Neyshabur 2021; ASAM: Kwon et al. 2021).

What runs. Each arm of `compare` is a stage (arms/NAME, resumable) that
trains `seeds` networks -- times the arm's ρ values, as one compiled program
with ρ as a per-run value (optim.sam_rho through trainer hparams) -- on the
same seeds (same initialization and data order in every arm, so the arms'
differences are paired per seed):

* `sgd`     the config's optimizer alone, `epochs` epochs;
* `sam`     SAM (sam.py) at each ρ of `sam.rhos`, `epochs` epochs: two
            gradients a step (the paper's comparison: equal epochs);
* `asam`    ASAM (optim.sam_adaptive) at each ρ of `sam.asam_rhos`;
* `sgd_2x`  the optimizer alone for 2 x `epochs`: as many gradient
            evaluations as SAM.

optim.sam_m (m-sharpness) applies to the SAM arms. At the end, per run:
test and train accuracy and train loss (eval mode, whole sets); on a fixed
training subset of `measure.subset_size` examples (BatchNorm in eval mode,
analysis/hessian.network_loss): Hutchinson's trace (`trace_probes`
Rademacher probes) and λ_max (the largest Ritz value of `lanczos_steps`
Lanczos steps), both analysis/spectrum.py, and Keskar's ε-sharpness
(analysis/sharpness.py, ε = `measure.epsilon`). result.json keeps the
per-run values; summary.json their {mean, std, per_seed} per arm and ρ.
"""

import math
import time
from typing import Any, Dict, List

import jax
import numpy as np
from absl import logging

from jaxunknowns import distributed, experiments, prng, runs, stages, validation
from jaxunknowns.analysis import hessian, sharpness, spectrum
from jaxunknowns.metrics import MetricWriter, stats

ARMS = ("sgd", "sam", "asam", "sgd_2x")
QUANTITIES = ("test_accuracy", "train_accuracy", "train_loss", "trace",
              "lambda_max", "sharpness")


def rhos_of(config, name: str) -> List[float]:
  return {"sam": [float(r) for r in config.sam.rhos],
          "asam": [float(r) for r in config.sam.asam_rhos]}.get(name, [0.0])


def arm_config(config, name: str, num_train: int = 0):
  """The arm's config: its ρ (the first of its run axis), ASAM, and with
  `num_train` known its step budget (`sgd_2x`: twice the epochs)."""
  c = config.copy_and_resolve_references()
  if name in ("sam", "asam"):
    c.optim.sam_rho = rhos_of(config, name)[0]
    c.optim.sam_adaptive = name == "asam"
  else:  # m-sharpness does not apply without SAM
    c.optim.sam_m = 0
  if num_train:
    epochs = config.epochs * (2 if name == "sgd_2x" else 1)
    c.train.steps = max(1, math.ceil(epochs * num_train / c.train.batch_size))
    c.train.log_every = max(1, min(c.train.log_every, c.train.steps))
  return c


def validate(config):
  check, s, m = validation.check, config.sam, config.measure
  names = tuple(config.compare)
  check(len(names) >= 1 and len(set(names)) == len(names) and
        all(n in ARMS for n in names), "compare", names,
        f"a non-empty tuple of distinct arms of {ARMS}")
  check(config.epochs > 0, "epochs", config.epochs, "> 0")
  # Every arm's steps come from epochs (arm_config): train.steps is unused.
  validation.check_applies(
      config, "train.steps", False, "to no arm: each trains epochs="
      f"{config.epochs:g} of its training set (sgd_2x twice); set epochs")
  check(config.optim.sam_rho == 0, "optim.sam_rho", config.optim.sam_rho,
        "0: the arms set ρ (sam.rhos, sam.asam_rhos)")
  check(not config.optim.sam_adaptive, "optim.sam_adaptive",
        config.optim.sam_adaptive, "False: ASAM is the arm 'asam'")
  for field in ("rhos", "asam_rhos"):
    rhos = tuple(s[field])
    check(len(rhos) >= 1 and len(set(rhos)) == len(rhos) and
          all(isinstance(r, (int, float)) and not isinstance(r, bool) and
              math.isfinite(r) and r > 0 for r in rhos), f"sam.{field}", rhos,
          "a non-empty tuple of distinct numbers > 0")
  # optim.sam_m (m-sharpness) is each SAM arm's; arm_config zeroes it in
  # the SGD arms, so without a SAM arm it would be recorded only.
  validation.check_applies(config, "optim.sam_m",
                           bool({"sam", "asam"} & set(names)),
                           f"to the arms 'sam' and 'asam' only "
                           f"(compare={names})")
  for field, arm in (("sam.rhos", "sam"), ("sam.asam_rhos", "asam"),
                     ("optim.sam_eta", "asam")):
    # A variant's own ρ (fashion_resnet's sam.rhos=(0.05,)) is the file's:
    # compare=('sgd','asam') must not ask the user to reset it.
    validation.check_applies(config, field, arm in names,
                             f"to the arm {arm!r} only (compare={names})")
  for field in ("subset_size", "trace_probes", "lanczos_steps",
                "sharpness_iterations"):
    validation.check_int(m[field], f"measure.{field}", 1)
  check(validation.is_int(m.chunk_size) and m.chunk_size >= 0 and (
      m.chunk_size == 0 or m.subset_size % m.chunk_size == 0),
        "measure.chunk_size", m.chunk_size,
        f"0 or a divisor of measure.subset_size={m.subset_size}")
  check(m.epsilon > 0, "measure.epsilon", m.epsilon, "> 0")
  check(0 < m.sharpness_step <= 1, "measure.sharpness_step",
        m.sharpness_step, "in (0, 1]")
  validation.check_int(m.seed, "measure.seed", 0)
  check(config.train.eval_train, "train.eval_train", config.train.eval_train,
        "True (train accuracy and loss are results)")
  for name in names:
    validation.validate_base(arm_config(config, name),
                             f"arm {name!r} (arms.{name}): ")


def build_arms(config) -> Dict[str, Any]:
  """{arm: (trainer, measure fns)}: data, models and every count are
  checked here, before the workdir exists."""
  from jaxunknowns.data import load_dataset  # pylint: disable=g-import-not-at-top
  ds, m, out, fns = load_dataset(config.data), config.measure, {}, None
  x, y = hessian.subset(ds.train, m.subset_size, m.seed)
  for name in config.compare:
    c = arm_config(config, name, len(ds.train.y))
    trainer = runs.build_trainer(
        c, dataset=ds, hparams=("sam_rho",) if name in ("sam", "asam") else ())
    if fns is None:  # every arm has the same model: one set of compiled fns
      spectrum.check_counts(1, m.lanczos_steps, m.trace_probes, 1,
                            trainer.param_counts["total"], prefix="measure.",
                            steps_field="lanczos_steps")
      loss = hessian.network_loss(trainer.model, trainer.loss_fn, x, y,
                                  has_batch_stats=trainer.has_batch_stats,
                                  chunk_size=m.chunk_size,
                                  chunk_field="measure.chunk_size")
      fns = {"spectrum": spectrum.measure_fn(
          loss, num_probes=1, num_steps=m.lanczos_steps,
          trace_probes=m.trace_probes, layers=False),
             "sharpness": sharpness.network_sharpness_fn(
                 loss, float(m.epsilon), iterations=m.sharpness_iterations,
                 step=m.sharpness_step)}
    out[name] = (trainer, fns)
  return out


def measure(config, fns, state, evals) -> Dict[str, list]:
  """Per-run values of QUANTITIES at the end of training. The curvature is
  measured `seeds` runs at a time (one ρ's runs), so every arm calls the
  same compiled functions, with the same probes for every ρ and arm."""
  num_runs, n = int(np.shape(state["step"])[0]), config.seeds
  keys = jax.random.split(prng.key(config.measure.seed), n)
  trace, lam, sharp = [], [], []
  for i in range(0, num_runs, n):
    p, b = (jax.tree.map(lambda a: a[i:i + n], state[k])
            for k in ("params", "batch_stats"))
    spec = distributed.device_get(fns["spectrum"](p, b, keys))
    trace += list(np.asarray(spec["trace"], np.float64).mean(axis=1))
    lam += list(np.asarray(spec["nodes"]).max(axis=(1, 2)))
    sharp += list(distributed.device_get(fns["sharpness"](p, b))["sharpness"])
  values = {"test_accuracy": evals["test"]["accuracy"],
            "train_accuracy": evals["train"]["accuracy"],
            "train_loss": evals["train"]["loss"],
            "trace": trace, "lambda_max": lam, "sharpness": sharp}
  return {k: [float(v) for v in np.asarray(values[k])] for k in QUANTITIES}


def run_arm(config, workdir, writer, name, trainer, fns):
  """One arm as a stage: its rhos x seeds trained at once, then measured."""
  seeds, rhos = runs.seeds_of(config), rhos_of(config, name)
  run_seeds = [s for _ in rhos for s in seeds]
  labels = [{"arm": name, "rho": r, "seed": s} for r in rhos for s in seeds]

  def compute():
    per_run = {"sam_rho": [r for r in rhos for _ in seeds]}
    state = trainer.init_state(run_seeds, hparams=per_run if trainer.hparams
                               else None)
    result = trainer.fit(
        state, steps=trainer.config.train.steps, data_seeds=run_seeds,
        writer=writer, run_labels=labels,
        checkpoint_dir=workdir.file("arms", name, "checkpoints"),
        description=name)
    t0 = time.time()
    values = measure(config, fns, result.state, result.evals)
    writer.rewrite(trainer.config.train.steps, "end", labels, values)
    return {"rhos": rhos, "steps": trainer.config.train.steps,
            "gradients_per_step": 2 if trainer.sam else 1,
            "sam_m": int(trainer.config.optim.sam_m), "runs": values,
            "train_seconds": result.wall_time,
            "measure_seconds": time.time() - t0}

  return stages.run_stage(workdir.file("arms", name), compute, name=name)


def summarize(r, num_seeds: int) -> Dict[str, Any]:
  """{ρ: {quantity: stats over seeds}} from a stage's per-run values."""
  return {f"{rho:g}": {q: stats(r["runs"][q][i * num_seeds:(i + 1) * num_seeds])
                       for q in QUANTITIES} for i, rho in enumerate(r["rhos"])}


def run(config, workdir):
  arms = build_arms(config)
  workdir.open()
  writer = MetricWriter(workdir.path)
  t_start, results = time.time(), {}
  for name, (trainer, fns) in arms.items():
    r = run_arm(config, workdir, writer, name, trainer, fns)
    results[name] = {k: r[k] for k in ("rhos", "steps", "gradients_per_step",
                                       "sam_m", "train_seconds",
                                       "measure_seconds")}
    results[name]["by_rho"] = summarize(r, config.seeds)
    for rho, s in results[name]["by_rho"].items():
      logging.info("[%s ρ=%s] test acc %.2f%%, λ_max %.3f, trace %.1f, "
                   "ε-sharpness %.4f", name, rho,
                   100 * s["test_accuracy"]["mean"], s["lambda_max"]["mean"],
                   s["trace"]["mean"], s["sharpness"]["mean"])
  writer.close()
  trainer = next(iter(arms.values()))[0]
  summary = {
      "experiment": "sam", "dataset": config.data.name,
      "model": config.model.name, "compare": list(arms),
      "seeds": runs.seeds_of(config), "epochs": config.epochs,
      "train_examples": len(trainer.dataset.train.y),
      "subset_size": min(config.measure.subset_size,
                         len(trainer.dataset.train.y)),
      "arms": results, "wall_time_s": time.time() - t_start,
      "machine": runs.machine_info()}
  experiments.finish("sam", workdir, config, summary)
  return summary


experiments.register("sam", validate=validate,
                     report="jaxunknowns.implicit.sam_report:write",
                     own_fields=("optim.sam_eta",), multi_process=True)(run)
