"""`bn_only`: training only BatchNorm's gamma and beta on frozen random
features (Frankle, Schwab & Morcos 2020), with controls.

What runs. For each ResNet-(6n+2) depth (and width) of the config, one
*stage*: a single Trainer whose R = arms x seeds runs train in one compiled
program. Every arm is an update mask (optim.with_update_mask) held per run
in the optimizer state, so all arms share the program and each seed starts
every arm from the same random weights and sees the same batches:

  bn        gamma and beta of every BatchNorm (weights frozen at init);
  bn_output the same plus the output layer;
  random2   two random weights per output channel of every conv kernel (the
            same count as `bn` when every conv has its BN: a count-matched
            control that trains weights instead of gamma, beta);
  output    the output layer only (a linear probe of random features);
  full      everything.

Frozen entries get an update of exactly zero, so they stay bit-identical
(weight decay included); every stage checks this and records the largest
change of a frozen entry per run. BatchNorm's running statistics are not
parameters and are updated in every arm, as in the paper.

Stages are resumable: stages/depth_D_width_W holds checkpoints and, once
finished, result.json (a rerun skips finished stages).
"""

import json
import os
import re
import time
from typing import Any, Dict

import jax
import numpy as np
from absl import logging

from jaxunknowns import distributed
from jaxunknowns import (experiments, optim, paths, prng, runs, stages,
                         validation)
from jaxunknowns.data import load_dataset
from jaxunknowns.data.core import Split
from jaxunknowns.errors import UserError
from jaxunknowns.metrics import MetricWriter, stats
from jaxunknowns.models import create_model

ARMS = ("bn", "bn_output", "random2", "output", "full")
# The bn_only fields that only some arms read (arm_mask).
READ_BY = {"bn_only.bn_pattern": ("bn", "bn_output"),
           "bn_only.output_pattern": ("output", "bn_output"),
           "bn_only.kernel_pattern": ("random2",),
           "bn_only.per_channel": ("random2",)}
# The bn_only fields that are regexes over parameter paths.
PATTERNS = ("bn_pattern", "scale_pattern", "output_pattern", "kernel_pattern")


# The widest first stage bn_only.widths may ask for (validate).
MAX_WIDTH = 1024


# -----------------------------------------------------------------------------
# Config and data
# -----------------------------------------------------------------------------
def validate(config):
  validation.validate_base(config)
  check = validation.check
  b = config.bn_only
  depths, widths, arms = list(b.depths), list(b.widths), list(b.arms)
  check(len(depths) >= 1 and all(isinstance(d, int) and d >= 8 and
                                 (d - 2) % 6 == 0 for d in depths),
        "bn_only.depths", tuple(depths), "ResNet depths 6n+2 >= 8")
  check(len(set(depths)) == len(depths), "bn_only.depths", tuple(depths),
        "distinct depths (each trains once)")
  check(len(widths) >= 1 and all(isinstance(w, int) and w >= 1
                                 for w in widths),
        "bn_only.widths", tuple(widths), "positive integers")
  # The stages widen to 4w channels, and validate builds every arm's mask
  # (the full arm's is as large as the weights): 1e9 ran out of memory
  # here, blamed on the seeds or the batch size. The paper's widest: 64.
  check(max(widths) <= MAX_WIDTH, "bn_only.widths", tuple(widths),
        f"at most {MAX_WIDTH} (the first stage's channels; the last has 4x)")
  check(len(set(widths)) == len(widths), "bn_only.widths", tuple(widths),
        "distinct widths (each trains once)")
  check(len(arms) >= 1 and all(a in ARMS for a in arms) and
        len(set(arms)) == len(arms), "bn_only.arms", tuple(arms),
        f"distinct names of {', '.join(ARMS)}")
  validation.check_int(b.per_channel, "bn_only.per_channel", 1)
  validation.check_read_by(config, READ_BY, arms, "bn_only.arms")
  check(b.gamma_threshold > 0, "bn_only.gamma_threshold", b.gamma_threshold,
        "> 0")
  validation.check_int(b.downsample, "bn_only.downsample", 1, "1 = none")
  check(b.test_size >= 0, "bn_only.test_size", b.test_size, ">= 0 (0 = all)")
  check(config.model.name == "resnet", "model.name", config.model.name,
        "'resnet' (the experiment sweeps ResNet-(6n+2) depths)")
  # Every stage sets the ResNet's depth and width (stage_config):
  # model.depth / model.width were recorded in config.json, never built.
  for field, grid in (("depth", "depths"), ("width", "widths")):
    validation.check_applies(
        config, f"model.{field}", False, f"to no stage: each stage sets it "
        f"from bn_only.{grid} (give the values there)")
  for field in ("freeze", "train_only"):
    if config.optim[field]:
      raise UserError(f"optim.{field}={config.optim[field]!r}: bn_only sets "
                      "what trains per arm (bn_only.arms); leave it empty")
  if config.model.norm not in ("default", "batch"):
    raise UserError(f"bn_only trains BatchNorm's gamma and beta, but "
                    f"model.norm={config.model.norm!r} has no BatchNorm; use "
                    f"model.norm=batch")
  # The patterns must compile and match the real parameter names (a typo
  # would train nothing, or crash gammas() once a stage had trained).
  for field in PATTERNS:
    compiled(b[field], f"bn_only.{field}")
  # Checked on every depth's parameter shapes: the names differ between
  # depths (ResNet-8 has BasicBlock_1/BatchNorm_2, ResNet-14 has not), and
  # a stage matching nothing stopped the run after the stages before it.
  # The width changes no name, and the narrowest has the fewest weights per
  # output channel (random2's per_channel).
  ds = dataset_for(config)
  for depth in depths:
    template = param_template(config, ds, depth, min(widths))
    try:
      for arm in arms:
        arm_mask(config, arm, template, seed=0)
      # Every arm's γ (gammas) is read through scale_pattern.
      optim.regex_mask(template, b.scale_pattern, "bn_only.scale_pattern")
    except UserError as e:
      raise UserError(f"ResNet-{depth} of bn_only.depths: {e}") from None


def compiled(pattern, field: str):
  """`pattern` compiled; one that is no regex is a UserError naming `field`
  (re.error was a traceback)."""
  try:
    return re.compile(pattern)
  except re.error as e:
    raise UserError(f"{field}={pattern!r} is not a regular expression "
                    f"({e}); give one over parameter paths such as "
                    r"'BatchNorm_\d+/scale$'") from None


_DATASETS: Dict[str, Any] = {}


def dataset_for(config):
  """The dataset, downsampled and with its test subset; loaded once per
  process (validate and run both need it)."""
  b = config.bn_only
  key = json.dumps([config.data.to_dict(), b.downsample, b.test_size],
                   sort_keys=True, default=str)
  if key not in _DATASETS:
    ds = load_dataset(config.data)
    if b.downsample > 1:
      ds = downsample(ds, b.downsample)
    if b.test_size:
      if b.test_size > len(ds.test.y):
        raise UserError(f"bn_only.test_size={b.test_size} is larger than the "
                        f"test set ({len(ds.test.y)} examples)")
      ds = ds.replace(test=ds.test.take(np.arange(b.test_size)))
    _DATASETS.clear()
    _DATASETS[key] = ds
  return _DATASETS[key]


def downsample(ds, k: int, field: str = "bn_only.downsample"):
  """Average-pool images by k x k (CPU budget: a quarter of the conv cost
  at k = 2; Fashion-MNIST stays recognisable at 14 x 14). `field` is the
  config field that asked for it (bn_modes has its own), for the errors."""
  if len(ds.input_shape) != 3:
    raise UserError(f"{field}={k} needs images [H, W, C]; {ds.name} has "
                    f"input shape {ds.input_shape}: set {field}=1")
  h, w, c = ds.input_shape
  if h % k or w % k:
    raise UserError(f"{field}={k} does not divide the {h}x{w} images of "
                    f"{ds.name}: set a divisor of {h} and {w}, or 1")

  def pool(split):
    if split is None:
      return None
    x = split.x.reshape(-1, h // k, k, w // k, k, c).mean((2, 4))
    return Split(x.astype(np.float32), split.y)
  return ds.replace(train=pool(ds.train), test=pool(ds.test),
                    validation=pool(ds.validation),
                    input_shape=(h // k, w // k, c))


def stage_config(config, depth: int, width: int):
  c = config.copy_and_resolve_references()
  c.model.depth = int(depth)
  c.model.width = int(width)
  return c


def param_template(config, ds, depth, width):
  """One run's parameter shapes (nothing is computed)."""
  model = create_model(stage_config(config, depth, width).model,
                       ds.num_classes)
  x = jax.ShapeDtypeStruct((1,) + tuple(ds.input_shape), np.float32)
  return jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x),
                        x)["params"]


# -----------------------------------------------------------------------------
# Arms as masks
# -----------------------------------------------------------------------------
def arm_mask(config, arm: str, params, seed: int):
  """The update mask of one run of `arm` (True = trains)."""
  b = config.bn_only
  if arm == "full":
    return jax.tree.map(lambda p: np.ones(np.shape(p), bool), params)
  if arm == "bn":
    return optim.regex_mask(params, b.bn_pattern, "bn_only.bn_pattern")
  if arm == "output":
    return optim.regex_mask(params, b.output_pattern, "bn_only.output_pattern")
  if arm == "bn_output":
    return jax.tree.map(
        np.logical_or,
        optim.regex_mask(params, b.bn_pattern, "bn_only.bn_pattern"),
        optim.regex_mask(params, b.output_pattern, "bn_only.output_pattern"))
  if arm == "random2":
    # Its own stream per seed: the draw does not depend on the other arms.
    rng = np.random.default_rng([int(seed), 2020])
    return optim.random_per_channel_mask(
        params, b.kernel_pattern, b.per_channel, rng,
        ("bn_only.kernel_pattern", "bn_only.per_channel"))
  raise UserError(f"unknown bn_only arm {arm!r}; valid: {', '.join(ARMS)}")


def gammas(params, pattern: str) -> np.ndarray:
  """Every gamma of each run, [R, num_gamma] (params with a run axis)."""
  regex = re.compile(pattern)
  leaves = [np.asarray(v).reshape(np.shape(v)[0], -1)
            for k, v in zip(optim.param_paths(params), jax.tree.leaves(params))
            if regex.search(k)]
  return np.concatenate(leaves, axis=1)


def frozen_max_change(before, after, masks) -> np.ndarray:
  """Per run, the largest |after - before| over the entries a mask froze."""
  out = 0.0
  for b, a, m in zip(jax.tree.leaves(before), jax.tree.leaves(after),
                     jax.tree.leaves(masks)):
    diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    diff = np.where(np.asarray(m), 0.0, diff).reshape(diff.shape[0], -1)
    out = np.maximum(out, diff.max(1))
  return np.asarray(out)


# -----------------------------------------------------------------------------
# One stage: every arm and seed of one (depth, width)
# -----------------------------------------------------------------------------
def stage_name(depth: int, width: int) -> str:
  return f"depth_{depth:04d}_width_{width:03d}"


def train_stage(config, workdir, writer, ds, depth, width, trainer=None):
  """Every arm and seed of one (depth, width), as a stage (stages.run_stage):
  trained once, then read from stages/NAME/result.json."""
  name = stage_name(depth, width)
  folder = workdir.file("stages", name)

  def compute():
    t0 = time.time()
    seeds, arms = runs.seeds_of(config), list(config.bn_only.arms)
    arm_runs = [(a, s) for a in arms for s in seeds]
    tr = trainer or build_stage_trainer(config, ds, depth, width)
    state = tr.init_state([s for _, s in arm_runs],
                          variables=init_variables(tr, seeds, len(arms)))
    one = jax.tree.map(lambda p: p[0], distributed.device_get(state["params"]))
    masks = [arm_mask(config, a, one, s) for a, s in arm_runs]
    counts = [optim.mask_count(m) for m in masks]
    for (a, s), n in zip(arm_runs, counts):
      logging.info("[%s] arm %s seed %d: %d of %d parameters trainable", name,
                   a, s, n, tr.param_counts["total"])
    stacked = jax.tree.map(lambda *m: np.stack(m), *masks)
    state["opt_state"] = optim.set_update_mask(state["opt_state"], stacked)
    # The step donates the state's buffers: keep the init on the host.
    init_params = distributed.device_get(state["params"])
    result = tr.fit(
        state, steps=config.train.steps, data_seeds=[s for _, s in arm_runs],
        writer=writer,
        run_labels=[{"depth": depth, "width": width, "arm": a, "seed": s}
                    for a, s in arm_runs],
        checkpoint_dir=os.path.join(folder, "checkpoints"), description=name)
    final = distributed.device_get(result.state["params"])
    b = config.bn_only
    g0, g1 = gammas(init_params, b.scale_pattern), gammas(final, b.scale_pattern)
    thr = b.gamma_threshold
    frozen = frozen_max_change(init_params, final, stacked)
    if np.any(frozen != 0):
      raise AssertionError(f"frozen parameters moved: {frozen.tolist()}")
    paths.makedirs(folder)
    paths.save_npz(os.path.join(folder, "gammas.npz"), init=g0, final=g1,
                   arms=np.array([a for a, _ in arm_runs]),
                   seeds=np.array([s for _, s in arm_runs]))
    ev = result.evals
    return {"depth": depth, "width": width,
            "total_params": tr.param_counts["total"],
            "num_gamma": int(g0.shape[1]),
            "runs": [{"arm": a, "seed": s, "trainable": counts[r],
                      "test_accuracy": float(ev["test"]["accuracy"][r]),
                      "test_loss": float(ev["test"]["loss"][r]),
                      "train_accuracy": (float(ev["train"]["accuracy"][r])
                                         if "train" in ev else None),
                      "gamma_near_zero": float(np.mean(np.abs(g1[r]) < thr)),
                      "gamma_near_zero_init": float(np.mean(np.abs(g0[r])
                                                            < thr)),
                      "frozen_max_change": float(frozen[r])}
                     for r, (a, s) in enumerate(arm_runs)],
            "steps": config.train.steps,
            "steps_per_second": result.steps_per_second,
            "train_wall_time_s": result.wall_time,
            "wall_time_s": time.time() - t0}

  return stages.run_stage(folder, compute, name=name)


def init_variables(trainer, seeds, repeats: int):
  """`trainer.init_variables(seeds * repeats)`'s draws, one seed at a time
  through `trainer.init_one` (same keys, same initializers), run op by op.
  The vmapped init once took ~100 s to compile for a ResNet-14 here; it now
  takes ~1.3 s (`trainer.init_compiler_options`, benchmarks/RESULTS.md), but
  op-by-op rounding differs from the compiled init's in the last 1-2 ulp of
  some kernel entries, so switching would move every committed bn_only run
  (docs/results/bn_only) by those bits: kept as it is."""
  one = trainer.init_one
  per_seed = [distributed.device_get(one(prng.key(s))) for s in seeds]
  runs = [v for _ in range(repeats) for v in per_seed]
  return jax.tree.map(lambda *xs: np.stack(xs), *runs)


def build_stage_trainer(config, ds, depth, width):
  return runs.build_trainer(stage_config(config, depth, width),
                              tx_wrapper=optim.with_update_mask, dataset=ds)


# -----------------------------------------------------------------------------
# The experiment
# -----------------------------------------------------------------------------
def arm_summary(stage, arm) -> Dict[str, Any]:
  rs = [r for r in stage["runs"] if r["arm"] == arm]
  out = {"trainable": rs[0]["trainable"],
         "test_accuracy": stats([r["test_accuracy"] for r in rs]),
         "gamma_near_zero": stats([r["gamma_near_zero"] for r in rs]),
         "gamma_near_zero_init": stats([r["gamma_near_zero_init"] for r in rs]),
         "frozen_max_change": max(r["frozen_max_change"] for r in rs)}
  if rs[0]["train_accuracy"] is not None:
    out["train_accuracy"] = stats([r["train_accuracy"] for r in rs])
  return out


def run(config, workdir):
  ds = dataset_for(config)
  b = config.bn_only
  stages = [(d, w) for w in b.widths for d in b.depths]
  first = build_stage_trainer(config, ds, *stages[0])  # fails before open()
  workdir.open()
  writer = MetricWriter(workdir.path)
  t0 = time.time()
  points = []
  for depth, width in stages:
    stage = train_stage(config, workdir, writer, ds, depth, width,
                        trainer=first)
    first = None
    point = {"depth": depth, "width": width,
             "total_params": stage["total_params"],
             "num_gamma": stage["num_gamma"],
             "steps_per_second": stage["steps_per_second"],
             "wall_time_s": stage["wall_time_s"],
             "arms": {a: arm_summary(stage, a) for a in b.arms}}
    points.append(point)
    logging.info("[%s] %s", stage_name(depth, width), "; ".join(
        f"{a} {100 * s['test_accuracy']['mean']:.2f}±"
        f"{100 * s['test_accuracy']['std']:.2f}% ({s['trainable']} params)"
        for a, s in point["arms"].items()))
  writer.close()
  summary = {
      "experiment": "bn_only", "dataset": config.data.name,
      "input_shape": list(ds.input_shape),
      "train_examples": len(ds.train.y), "test_examples": len(ds.test.y),
      "depths": list(b.depths), "widths": list(b.widths),
      "arms": list(b.arms), "seeds": runs.seeds_of(config),
      "steps": config.train.steps,
      "gamma_threshold": b.gamma_threshold,
      "points": points,
      "wall_time_s": time.time() - t0,
      "stages_wall_time_s": sum(p["wall_time_s"] for p in points),
      "machine": runs.machine_info(),
  }
  experiments.finish("bn_only", workdir, config, summary)
  return summary


experiments.register("bn_only", validate=validate,
                     report="jaxunknowns.batchnorm.bn_report:write_only",
                     multi_process=True)(run)
