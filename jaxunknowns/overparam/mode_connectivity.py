"""`mode_connectivity`: curves of low loss between two minima (Garipov,
Izmailov, Podoprikhin, Vetrov & Wilson 2018; Draxler, Veschgini, Salmhofer &
Hamprecht 2018).

What runs. Stage `endpoints` trains 2 x `seeds` networks at once (seeds
seed, ..., seed + 2 seeds - 1); pair p joins the minima of seeds seed + 2p
and seed + 2p + 1, so every number is a mean ± std over `seeds` pairs. For
each curve kind of `curve.kinds` ("bezier": a Bézier curve of
`curve.num_bends` control points, "polychain": the polygonal chain through
them; analysis/interpolation.py) a stage curves/KIND trains the curve's
bends, the K - 2 control points between the fixed ends, on the expected
loss along the curve: each step draws t ~ U[0, 1] per pair and takes a step
of the minibatch loss of phi(t) with respect to the bends (BatchNorm, if
any, in train mode), from bends on the straight line (Garipov et al.'s
init), with config.optim's optimizer at `curve.lr` for `curve.steps` steps
(SAM, `optim.sam_rho` > 0, trains the minima only: `curve_optimizer`).
The bends are kept in the stage's bends.npz (they are not checkpointed:
a run killed during a curve redoes that curve).

What is measured. At `curve.points` evenly spaced t (ends included) of the
straight line and of each curve: train loss and error (whole training set)
and test loss and error, per pair. With BatchNorm, the statistics of every
evaluated network are re-estimated first (reset, then the cumulative
average of the batch statistics over `curve.bn_batches` full training
batches: the reference code's update_bn; never interpolated). The barrier of
a path is max over t minus the larger of its two ends (interpolation.
barrier_height). For the first curve kind's plane through its three points
(a, the first bend, b; `plane_basis`), train loss and test error on a
`curve.plane_points` x `curve.plane_points` grid spanning the three points
plus `curve.plane_margin` of their range on each side.
"""

import functools
import os
import time
from typing import Any, Dict

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxunknowns import distributed
from jaxunknowns import (batching, experiments, optim, paths, prng, runs,
                         validation)
from jaxunknowns.config_loading import name_list
from jaxunknowns.analysis import interpolation
from jaxunknowns.errors import UserError
from jaxunknowns.metrics import MetricWriter, stats
from jaxunknowns.models.layers import BN_MOMENTUM
from jaxunknowns.stages import run_stage, saved_file, stage_dir

KINDS = ("bezier", "polychain")   # trained curves; the line is always measured
METRICS = ("train_loss", "train_error", "test_loss", "test_error")
BENDS, MINIMA = "bends.npz", "minima.npz"


def kinds_of(config):
  """curve.kinds as names (`name_list`: "a,b" entries split)."""
  return tuple(name_list(config.curve.kinds))


def validate(config):
  validation.validate_base(config)
  check, m = validation.check, config.curve
  kinds = kinds_of(config)
  for kind in kinds:
    if kind not in KINDS:
      raise UserError(f"unknown curve {kind!r} in curve.kinds; valid names: "
                      f"{', '.join(KINDS)}")
  check(len(kinds) >= 1 and len(set(kinds)) == len(kinds), "curve.kinds",
        kinds, "a non-empty tuple of distinct curve names")
  validation.check_int(m.num_bends, "curve.num_bends", 3,
                       "the curve's points: the two minima and at least one "
                       "bend")
  validation.check_int(m.steps, "curve.steps", 1)
  check(m.lr > 0, "curve.lr", m.lr, "> 0")
  check(m.weight_decay >= 0, "curve.weight_decay", m.weight_decay, ">= 0")
  check(m.schedule in ("constant", "cosine"), "curve.schedule", m.schedule,
        "'constant' or 'cosine'")
  validation.check_int(m.points, "curve.points", 3,
                       "the two ends and the middle")
  validation.check_int(m.plane_points, "curve.plane_points", 2)
  check(m.plane_margin >= 0, "curve.plane_margin", m.plane_margin, ">= 0")
  validation.check_int(m.bn_batches, "curve.bn_batches", 0,
                       "0 = every full training batch")
  validation.check_applies(
      config, "curve.bn_batches", validation.uses_batch_norm(config.model),
      f"to BatchNorm statistics, which model.norm={config.model.norm!r} has "
      "none of")
  validation.check_int(m.seed, "curve.seed", 0)
  check(config.model.dropout == 0, "model.dropout", config.model.dropout,
        "0 (a random network at each t would make the path's loss random)")
  check(config.model.norm != "noisy_batch", "model.norm", config.model.norm,
        "not 'noisy_batch' (its statistics cannot be re-estimated)")
  check(bool(config.train.eval_train) and not config.train.max_train_eval,
        "train.eval_train / train.max_train_eval",
        (config.train.eval_train, config.train.max_train_eval),
        "True / 0: the path's train loss is over the whole training set")


# -----------------------------------------------------------------------------
# Saving trees
# -----------------------------------------------------------------------------
def save_tree(path: str, tree):
  # Its stage's folder may not exist yet: a non-main process's is in its
  # scratch folder, where nothing else of the stage is written (orbax
  # writes the checkpoints into the shared workdir).
  paths.makedirs(os.path.dirname(path))
  flat = traverse_util.flatten_dict(distributed.device_get(tree), sep="/")
  paths.save_npz(path, **{k: np.asarray(v) for k, v in flat.items()})


def load_tree(path: str, keys=("params", "batch_stats")):
  """The tree `save_tree` wrote in a stage (`stages.saved_file`)."""
  tree = traverse_util.unflatten_dict(
      paths.load_npz(saved_file(path)), sep="/")
  return {**{k: {} for k in keys}, **tree}


def take(tree, idx):
  return jax.tree.map(lambda x: jnp.asarray(x)[np.asarray(idx)], tree)


# -----------------------------------------------------------------------------
# Stages
# -----------------------------------------------------------------------------
def train_endpoints(config, workdir, writer, trainer):
  """The 2 x seeds minima: {params, batch_stats}, runs in seed order."""
  seeds = [config.seed + i for i in range(2 * config.seeds)]
  folder = stage_dir(workdir, "endpoints")

  def compute():
    result = trainer.fit(
        trainer.init_state(seeds), steps=config.train.steps, data_seeds=seeds,
        writer=writer, run_labels=[{"stage": "endpoints", "seed": s}
                                   for s in seeds],
        checkpoint_dir=os.path.join(folder, "checkpoints"),
        description="endpoints")
    save_tree(os.path.join(folder, MINIMA),
              {k: result.state[k] for k in ("params", "batch_stats")})
    return {"seeds": seeds, "steps": config.train.steps,
            "final": runs.eval_stats(result.evals),
            "wall_time_s": result.wall_time}

  return run_stage(folder, compute, name="endpoints"), load_tree(
      os.path.join(folder, MINIMA))


def curve_optimizer(config, template, normalized=None):
  """(direction transform, lr schedule) of the bends: config.optim's
  optimizer at curve.lr, curve.weight_decay and curve.schedule, decaying
  what optim.decay_on says (`normalized`: the trainer's probe's kernels),
  without SAM: optim.sam_* shape the minima (the endpoints' Trainer passes
  SAM its second gradient), not the curve, which Garipov et al. train with
  the plain optimizer (SAM came later) and whose step computes no second
  gradient at the same t and batch."""
  m = config.curve
  cfg = config.optim.copy_and_resolve_references()
  cfg.lr, cfg.weight_decay, cfg.schedule = m.lr, m.weight_decay, m.schedule
  cfg.warmup_steps, cfg.boundaries = 0, ()
  cfg.sam_rho = 0.0  # optim.uses_sam: off (the other sam_* are read only then)
  return (optim.create_optimizer(cfg, template, normalized),
          optim.learning_rate_schedule(cfg, m.steps))


def curve_loss(trainer, kind, bends, end_a, end_b, stats_, x, y, t):
  """Minibatch loss of phi(t) of ONE pair (no run axis): bends [K-2, ...]."""
  points = jax.tree.map(lambda a, m, b: jnp.concatenate(
      [a[None], m, b[None]])[:, None], end_a, bends, end_b)  # [K, 1, ...]
  w = interpolation.curve_coefficients(kind, jax.tree.leaves(points)[0]
                                       .shape[0], t[None])
  params = jax.tree.map(lambda p: p[0], interpolation.combine(points, w))
  # Batch statistics, as in training; in train.precision, as the endpoints.
  logits, _ = trainer.apply(params, stats_, x, train=True)
  return jnp.mean(trainer.loss_fn(logits, y))


def curve_chunk_fn(trainer, kind, tx, schedule):
  """jit: n steps (lax.scan) of every pair (vmap) from idx [n, R, B]."""
  def one(bends, opt_state, end_a, end_b, stats_, x, y, t, step):
    loss, grads = jax.value_and_grad(lambda q: curve_loss(
        trainer, kind, q, end_a, end_b, stats_, x, y, t))(bends)
    direction, opt_state = tx.update(grads, opt_state, bends)
    lr = schedule(step)
    bends = jax.tree.map(lambda p, d: p - lr * d, bends, direction)
    return bends, opt_state, loss

  def chunk(bends, opt_state, ends, key, start, idx, x_all, y_all):
    def body(carry, inp):
      bends, opt_state = carry
      step, rows = inp
      k = jax.random.fold_in(key, step)
      t = jax.random.uniform(k, (rows.shape[0],))
      x = jax.vmap(trainer.augment)(jax.random.split(jax.random.fold_in(
          k, 1), rows.shape[0]), x_all[rows])
      bends, opt_state, loss = jax.vmap(one, in_axes=(0, 0, 0, 0, 0, 0, 0, 0,
                                                      None))(
          bends, opt_state, ends["a"], ends["b"], ends["stats"], x,
          y_all[rows], t, step)
      return (bends, opt_state), loss
    steps = start + jnp.arange(idx.shape[0])
    (bends, opt_state), losses = jax.lax.scan(body, (bends, opt_state),
                                              (steps, idx))
    return bends, opt_state, losses
  return jax.jit(chunk)


def train_curve(config, workdir, writer, trainer, kind, end_a, end_b, stats_):
  """The bends [R, K-2, ...] of one curve kind, trained (stage curves/KIND)."""
  m, num = config.curve, config.seeds
  folder = stage_dir(workdir, f"curves/{kind}")

  def compute():
    t0 = time.time()
    inner = np.arange(1, m.num_bends - 1) / (m.num_bends - 1)
    init = interpolation.interpolate(end_a, end_b, inner)  # [(K-2)*R, ...]
    bends = jax.tree.map(lambda x: jnp.swapaxes(x.reshape(
        (len(inner), num) + x.shape[1:]), 0, 1), init)     # [R, K-2, ...]
    tx, schedule = curve_optimizer(config, take(bends, 0),
                                   trainer.normalized_kernels)
    opt_state = jax.vmap(tx.init)(bends)
    fn = curve_chunk_fn(trainer, kind, tx, schedule)
    ends = {"a": end_a, "b": end_b, "stats": stats_}
    x_all, y_all = (jnp.asarray(a) for a in (trainer.dataset.train.x,
                                             trainer.dataset.train.y))
    data_seeds = [m.seed + 1000 * (1 + KINDS.index(kind)) + p
                  for p in range(num)]
    key = prng.key(m.seed + KINDS.index(kind))
    labels = [{"stage": f"curve_{kind}", "pair": p} for p in range(num)]
    # The curve keeps no checkpoints: a killed attempt trains it again from
    # step 0, and the rows it had written would be there twice.
    writer.rewind({"stage": f"curve_{kind}"}, 0)
    chunk, last = config.train.log_every, None
    for start in range(0, m.steps, chunk):
      n = min(chunk, m.steps - start)
      idx = batching.batch_indices(data_seeds, start, n, len(trainer.dataset
                                   .train.y), config.train.batch_size)
      bends, opt_state, losses = fn(bends, opt_state, ends, key, start,
                                    jnp.asarray(idx), x_all, y_all)
      last = np.asarray(losses).mean(0)
      writer.write(start + n, f"curve_{kind}", labels, {"loss": last})
    save_tree(os.path.join(folder, BENDS), {"params": bends})
    return {"kind": kind, "steps": m.steps, "num_bends": m.num_bends,
            "last_chunk_loss": stats(last), "wall_time_s": time.time() - t0}

  result = run_stage(folder, compute, name=f"curves/{kind}")
  return result, load_tree(os.path.join(folder, BENDS))["params"]


# -----------------------------------------------------------------------------
# Measuring networks on the path and on the plane
# -----------------------------------------------------------------------------
class Measurer:
  """Train/test loss and error of a batch of networks [N, ...], BatchNorm
  statistics re-estimated first (reset + cumulative average over full
  training batches, Garipov et al.'s update_bn). One compile per N."""

  def __init__(self, trainer, bn_batches: int):
    self.trainer = trainer
    ds, bs = trainer.dataset.train, trainer.config.train.batch_size
    nb = len(ds.y) // bs if not bn_batches else min(bn_batches,
                                                     len(ds.y) // bs)
    self.bn_x = jnp.asarray(ds.x[:nb * bs].reshape((nb, bs) + ds.x.shape[1:]))
    self.stats_one = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                                  trainer.template["batch_stats"])
    self._fn = jax.jit(self._measure)

  def reestimate(self, params):
    """BatchNorm running statistics of ONE network: the mean over batches
    of each batch's statistics (Flax keeps momentum * old + (1 - momentum)
    * batch; from old = 0 the batch's own is that over 1 - momentum)."""
    model, zeros = self.trainer.model, self.stats_one

    def body(total, x):
      _, new = model.apply({"params": params, "batch_stats": zeros}, x,
                           train=True, mutable=["batch_stats"])
      return jax.tree.map(lambda s, n: s + n / (1 - BN_MOMENTUM), total,
                          new["batch_stats"]), None
    total, _ = jax.lax.scan(body, zeros, self.bn_x)
    return jax.tree.map(lambda s: s / self.bn_x.shape[0], total)

  def _measure(self, params):
    t = self.trainer
    stats_ = (jax.vmap(self.reestimate)(params) if t.has_batch_stats else
              jax.tree.map(lambda s: jnp.zeros(
                  (jax.tree.leaves(params)[0].shape[0],) + s.shape, s.dtype),
                  self.stats_one))
    out = {}
    for split in ("train", "test"):
      r = t.evaluate_batches(params, stats_, *t.eval_data[split])
      out[f"{split}_loss"], out[f"{split}_error"] = r["loss"], 1 - r["accuracy"]
    return out

  def __call__(self, params) -> Dict[str, np.ndarray]:
    return {k: np.asarray(v, np.float64)
            for k, v in distributed.device_get(self._fn(params)).items()}


def path_metrics(measure, kind, end_a, end_b, bends, ts):
  """{metric: [R, T]} along a path (`bends` [R, K-2, ...], None for the
  line), one t per call (R networks)."""
  if kind != "line":
    bends = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), bends)
  points = jax.jit(functools.partial(
      interpolation.curve_points, kind) if kind != "line" else
      (lambda a, _, b, t: interpolation.interpolate(a, b, t)))
  cols = [measure(points(end_a, bends, end_b, jnp.asarray([t], jnp.float32)))
          for t in ts]
  return {k: np.stack([c[k] for c in cols], 1) for k in METRICS}


def plane_metrics(measure, end_a, end_b, bends, num, margin):
  """Per pair: the plane through a, the first bend and b; train loss and
  test error on its num x num grid."""
  origin, u, v, coords = distributed.device_get(interpolation.plane_basis(
      end_a, jax.tree.map(lambda x: x[:, 0], bends), end_b))
  out = []
  one = lambda tree: jax.tree.map(lambda x: x[:1], tree)
  for r in range(origin.shape[0]):
    lo, hi = coords[r].min(0), coords[r].max(0)
    pad = margin * (hi - lo)
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], num)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], num)
    grid = np.stack(np.meshgrid(xs, ys, indexing="ij"), -1).reshape(-1, 2)
    rows = []
    for s in range(0, len(grid), num):  # one row of the grid per call
      nets = interpolation.plane_networks(
          jnp.asarray(origin[r]), jnp.asarray(u[r]), jnp.asarray(v[r]),
          grid[s:s + num], one(end_a))
      rows.append(measure(nets))
    sig = lambda k: [[float(f"{x:.4g}") for x in row[k]] for row in rows]
    out.append({"x": xs.tolist(), "y": ys.tolist(),
                "points": coords[r].tolist(), "train_loss": sig("train_loss"),
                "test_error": sig("test_error")})
  return out


def path_summary(values: Dict[str, np.ndarray]) -> Dict[str, Any]:
  """Per metric: {mean, std, per_seed} at each t ([T], [T], [R][T]) and the
  barrier over pairs."""
  out = {}
  for k, v in values.items():
    at = [stats(col) for col in v.T]
    out[k] = {"mean": [s["mean"] for s in at], "std": [s["std"] for s in at],
              "per_seed": v.tolist(),
              "barrier": stats(interpolation.barrier_height(v)),
              "max": stats(v.max(1)),
              "ends": stats(np.maximum(v[:, 0], v[:, -1]))}
  return out


# -----------------------------------------------------------------------------
# The run
# -----------------------------------------------------------------------------
def run(config, workdir):
  m = config.curve
  trainer = runs.build_trainer(config)
  workdir.open()
  writer = MetricWriter(workdir.path)
  t_start = time.time()
  endpoints, minima = train_endpoints(config, workdir, writer, trainer)
  evens, odds = np.arange(config.seeds) * 2, np.arange(config.seeds) * 2 + 1
  end_a, end_b = take(minima["params"], evens), take(minima["params"], odds)
  stats_a = take(minima["batch_stats"], evens)
  measure = Measurer(trainer, m.bn_batches)
  ts = np.linspace(0.0, 1.0, m.points)
  t0 = time.time()
  paths_out = {"line": path_summary(path_metrics(measure, "line", end_a,
                                                 end_b, None, ts))}
  path_seconds, curves, bends = time.time() - t0, {}, {}
  for kind in kinds_of(config):
    curves[kind], bends[kind] = train_curve(config, workdir, writer, trainer,
                                            kind, end_a, end_b, stats_a)
    t0 = time.time()
    paths_out[kind] = path_summary(path_metrics(measure, kind, end_a, end_b,
                                                bends[kind], ts))
    path_seconds += time.time() - t0
  t0 = time.time()
  plane = plane_metrics(measure, end_a, end_b, next(iter(bends.values())),
                        m.plane_points, m.plane_margin)
  writer.close()
  summary = {
      "experiment": "mode_connectivity", "dataset": config.data.name,
      "model": config.model.name, "norm": config.model.norm,
      "has_batch_norm": trainer.has_batch_stats, "pairs": config.seeds,
      "seeds": endpoints["seeds"], "num_bends": m.num_bends,
      "num_params": trainer.param_counts["total"],
      "train_examples": len(trainer.dataset.train.y),
      "test_examples": len(trainer.dataset.test.y),
      "endpoints": endpoints, "curves": curves, "ts": ts.tolist(),
      "paths": paths_out,
      "plane": {"kind": next(iter(bends)), "pairs": plane},
      "seconds": {"paths": path_seconds, "plane": time.time() - t0},
      "wall_time_s": time.time() - t_start, "machine": runs.machine_info(),
  }
  experiments.finish("mode_connectivity", workdir, config, summary)
  return summary


experiments.register(
    "mode_connectivity", validate=validate,
    report="jaxunknowns.overparam.mode_connectivity_report:write",
    multi_process=True)(run)
