"""`ntk`: the empirical NTK and the lazy regime over a width sweep (Jacot et
al. 2018; Lee et al. 2019; Fort et al. 2020).

What runs. For each hidden width h of `ntk.widths` (strictly increasing),
one resumable stage (`stages.train_stage`, stages/width_HHHHH) trains the
model with `ntk.depth` hidden layers of h units (`model.name` "ntk_mlp":
NTK parameterization, models/mlp.py; or "mlp": the standard one) on the
training set, all `seeds` at once. The default trains with the squared loss
and full-batch gradient descent, the setting of Lee et al.'s linearization
theorem. The initial weights w_0 are re-created from the seeds (init is a
pure function of the seed), so a resumed stage measures against the same
w_0 and K_0.

What is recorded (analysis/ntk.py, every seed in one compiled call). The
probe batch is the first `ntk.probe_size` training examples; its empirical
NTK K (trace over the outputs, [n, n]) at init, K_0, and at
`ntk.record_points` log-spaced steps (and train.steps // 10, the end of the
"early" phase), where a trainer callback keeps, in the stage's
records/STEP.npz, per seed:

  weight_change   ||w_t - w_0|| / ||w_0|| over all parameters;
  kernel_change   ||K_t - K_0||_F / ||K_0||_F;
  kernel          K_t itself (the kernel's speeds between records are
                  computed from it: ||K_t2 - K_t1||_F / ||K_0||_F / (t2 - t1),
                  and the angle between K_t1 and K_t2 per step, whose
                  cosine is Fort et al.'s kernel distance);
  linearization   ||f(w_t) - f_lin(w_t)|| / ||f(w_t) - f(w_0)|| on the probe,
                  f_lin the first-order Taylor expansion around w_0.

At the end of a stage (its `measure`), the linearized model's test accuracy:
kernel regression with the full per-logit kernel at init, Θ_0 (every C x C
block of logits: an [n C, n C] system), on the whole training set (the
linearized network trained to convergence on the squared loss, Lee et al.
eq. 9; a ridge of `ntk.ridge` x Θ_0's mean diagonal; solved in float64),
on the first `ntk.test_size` test examples, beside the trained network's
accuracy on the same examples, and the fraction of examples on which the two
predict the same class. (The tracked kernel K above is the trace over the
outputs; the trace would stand for Θ_0 only in the infinite-width limit,
Θ = K/C ⊗ I, and its regression predicts other classes at these widths.)

summary.json: per width, the curves over the recorded steps and the final
values ({mean, std, per_seed}); across widths, the log-log slopes of the
final weight change, kernel change and linearization error against width,
fitted per seed, over all widths and over the wider half (widths[W // 2:]).
"""

import os
import time
from typing import Any, Dict, List, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxunknowns import distributed, experiments, paths, runs, validation
from jaxunknowns.analysis import ntk
from jaxunknowns.data import load_dataset
from jaxunknowns.metrics import MetricWriter, stats
from jaxunknowns.stages import saved_file, stage_dir, train_stage
from jaxunknowns.trainer import Callback

MODELS = ("ntk_mlp", "mlp")  # Dense nets whose hidden widths the sweep sets.
SPLIT = "ntk"  # The callback's rows in metrics.jsonl.
RECORDED = ("weight_change", "kernel_change", "linearization")
REGRESSION_KERNEL = "full"  # summary.json: Θ_0 with every logit block


# -----------------------------------------------------------------------------
# Config
# -----------------------------------------------------------------------------
def validate(config):
  validation.validate_base(config)
  check, s = validation.check, config.ntk
  widths = list(s.widths)
  check(bool(widths) and all(validation.is_int(w) and w >= 1 for w in widths),
        "ntk.widths", tuple(widths), "a non-empty tuple of integers >= 1")
  check(all(a < b for a, b in zip(widths, widths[1:])), "ntk.widths",
        tuple(widths), "strictly increasing")
  check(config.model.name in MODELS, "model.name", config.model.name,
        f"one of {', '.join(MODELS)} (dense nets whose width ntk.widths sets)")
  for field in ("depth", "probe_size", "test_size", "chunk_size"):
    validation.check_int(s[field], f"ntk.{field}", 1)
  validation.check_int(s.record_points, "ntk.record_points", 2)
  check(s.ridge >= 0, "ntk.ridge", s.ridge, ">= 0")
  check(config.train.steps >= 10, "train.steps", config.train.steps,
        ">= 10 (the early phase is the first tenth)")
  check(config.model.dropout == 0, "model.dropout", config.model.dropout,
        "0 (the kernel of a random network is not defined)")
  # width_summary reads the final training loss and accuracy (the report's
  # fit column): without them the run ended in a KeyError after training.
  check(config.train.eval_train, "train.eval_train", config.train.eval_train,
        "True (the report shows each width's training loss)")
  # stage_config writes every stage's widths: a value here is recorded only.
  validation.check_applies(
      config, "model.widths", False, "to no stage: each stage sets it from "
      "ntk.widths and ntk.depth")


def stage_config(config, width: int):
  c = config.copy_and_resolve_references()
  c.model.widths = (int(width),) * config.ntk.depth
  return c


def record_steps(steps: int, points: int) -> List[int]:
  """About `points` log-spaced steps in [1, steps], with steps // 10."""
  out = {int(round(s)) for s in np.geomspace(1, steps, points)}
  return sorted(out | {steps // 10, steps})


def block_size(chunk: int, sizes: Dict[str, int]) -> int:
  """The Jacobian block: `ntk.chunk_size` or the smallest set if smaller;
  every set must split into whole blocks."""
  block = min(chunk, *sizes.values())
  for what, n in sizes.items():
    validation.check(n % block == 0, "ntk.chunk_size", chunk,
                     f"a divisor of the {n} {what} examples (blocks of "
                     f"{block})")
  return block


# -----------------------------------------------------------------------------
# Measurements (one compiled program per width for all seeds)
# -----------------------------------------------------------------------------
class Meter:
  """The kernel, weight and linearization measures of one width."""

  def __init__(self, trainer, probe, chunk):
    model = trainer.model
    f = lambda p, x: model.apply({"params": p}, x, train=False)
    self.f = f

    def probe_measures(p, p0, k0):
      k = ntk.empirical_ntk(f, p, probe, chunk=chunk)
      out, lin, out0 = f(p, probe), ntk.linearize(f, p0)(p, probe), f(p0, probe)
      return {"kernel": k,
              "weight_change": ntk.relative_change(p, p0),
              "kernel_change": ntk.relative_change(k, k0),
              "linearization": ntk.tree_norm(out - lin) /
                               ntk.tree_norm(out - out0)}
    self._kernel = jax.jit(jax.vmap(
        lambda p: ntk.empirical_ntk(f, p, probe, chunk=chunk)))
    self._measures = jax.jit(jax.vmap(probe_measures))

  def kernel(self, params):
    return self._kernel(params)

  def measures(self, params, params0, k0) -> Dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in distributed.device_get(
        self._measures(params, params0, k0)).items()}


def regression_fn(f, x_train, y_train, x_test, num_classes, chunk, ridge):
  """(params_0, params_T) of every run [R, ...] -> (the linearized network's
  test classes [R, m], the trained network's [R, m]). The linearized
  network trained to convergence on the squared loss (Lee et al. 2019,
  eq. 9): kernel regression with each run's full per-logit kernel Θ_0 at
  w_0 (the [n C, n C] system: `ntk.kernel_regression`, on the host), a
  ridge of `ridge` x its mean diagonal.

  Θ_0 and f(w_0) are computed in float64 (w_0 and the inputs cast up). A
  net with fewer parameters than the n C outputs (widths 16 and 32 of the
  default) has a singular Θ_0, whose solve rests on the ridge, 1e-5 of the
  mean diagonal: float32 sums over the parameters err by a fifth of that
  (width 16: a float32 Θ_0 has eigenvalues down to -4e-6, the ridge is
  2e-5), enough to move the predictions by 0.1 and their classes on 3-8%
  of the test examples (a float32 solve on top: on a quarter)."""
  y = np.eye(num_classes)[np.asarray(y_train)]
  up = lambda tree: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)

  def one(p0, p):
    p0, xs, xt = up(p0), up(x_train), up(x_test)
    k_xx = ntk.empirical_ntk(f, p0, xs, trace=False, chunk=chunk)
    k_tx = ntk.empirical_ntk(f, p0, xt, xs, trace=False, chunk=chunk)
    # The trained network as it runs (its own precision).
    return k_xx, k_tx, f(p0, xs), f(p0, xt), f(p, jnp.asarray(x_test))
  # One run at a time: the Jacobian blocks of a wide net are large.
  kernels = jax.jit(lambda p0, p: jax.lax.map(lambda a: one(*a), (p0, p)))

  def regress(p0, p):
    with jax.enable_x64(True):
      k_xx, k_tx, f0, f0_test, out = (np.asarray(a) for a in
                                      distributed.device_get(kernels(p0, p)))
    pred = [ntk.kernel_regression(k_xx[r], k_tx[r], y, f0[r], f0_test[r],
                                  ridge=ridge * ntk.mean_diagonal(k_xx[r]))
            for r in range(len(k_xx))]
    return np.argmax(np.stack(pred), -1), np.argmax(out, -1)
  return regress


def record_file(folder: str, step: int) -> str:
  return os.path.join(folder, "records", f"{step:08d}.npz")


def recorder(meter, params0, k0, folder, steps):
  def fn(_, state, step):
    out = meter.measures(state["params"], params0, k0)
    paths.makedirs(os.path.dirname(record_file(folder, step)))
    paths.save_npz(record_file(folder, step), **out)
    return {k: out[k] for k in RECORDED}
  return Callback(SPLIT, every=0, fn=fn, steps=tuple(steps))


# -----------------------------------------------------------------------------
# The run
# -----------------------------------------------------------------------------
def run(config, workdir):
  s = config.ntk
  widths = [int(w) for w in s.widths]
  ds = load_dataset(config.data)
  # Bad model or trainer settings (a batch larger than the training set)
  # fail before the workdir exists.
  trainers = {w: runs.build_trainer(stage_config(config, w), dataset=ds)
              for w in widths}
  # More than the data holds was cut to it, and config.json said otherwise.
  for field, split, name in (("probe_size", ds.train, "training"),
                             ("test_size", ds.test, "test")):
    validation.check(s[field] <= len(split.y), f"ntk.{field}", s[field],
                     f"<= the {len(split.y):,} {name} examples of "
                     f"{config.data.name}")
  probe = ds.train.x[:s.probe_size]
  x_test = ds.test.x[:s.test_size]
  chunk = block_size(s.chunk_size, {"probe": len(probe), "test": len(x_test),
                                    "training": len(ds.train.x)})
  y_test = np.asarray(ds.test.y[:len(x_test)])
  workdir.open()
  writer = MetricWriter(workdir.path)
  seeds = runs.seeds_of(config)
  steps = record_steps(config.train.steps, s.record_points)
  t_start, results = time.time(), {}
  for w in widths:
    name = f"width_{w:05d}"
    folder = stage_dir(workdir, name)
    trainer = trainers[w]
    meter = Meter(trainer, probe, chunk)
    params0 = trainer.init_variables(seeds)["params"]
    k0 = meter.kernel(params0)
    paths.makedirs(folder)
    paths.save_npz(os.path.join(folder, "kernel0.npz"),
                   kernel=np.asarray(distributed.device_get(k0)))
    regress = regression_fn(meter.f, ds.train.x, ds.train.y, x_test,
                            ds.num_classes, chunk, s.ridge)

    def measure(_, state, init_params, regress=regress):
      kr, net = regress(init_params, state["params"])
      return {"kernel_regression_accuracy": (kr == y_test).mean(1),
              "network_accuracy": (net == y_test).mean(1),
              "agreement": (kr == net).mean(1)}

    result = train_stage(
        trainer, workdir=workdir, name=name, labels={"width": w},
        seeds=seeds, writer=writer, steps=config.train.steps, measure=measure,
        callbacks=[recorder(meter, params0, k0, folder, steps)])
    results[str(w)] = width_summary(w, result, folder, steps)
  writer.close()
  final = lambda key: [results[str(w)]["final"][key]["per_seed"]
                       for w in widths]
  summary = {
      "experiment": "ntk", "dataset": config.data.name,
      "model": config.model.name, "depth": s.depth, "widths": widths,
      "seeds": seeds, "train_examples": len(ds.train.y),
      "test_examples": len(y_test), "probe_size": len(probe),
      # Which kernel the linearized model solved with (runs before this
      # field solved with the trace K_0 standing for Θ_0).
      "regression_kernel": REGRESSION_KERNEL,
      "record_steps": steps, "early_step": config.train.steps // 10,
      "stages": results,
      "slopes": {key: slopes(widths, final(key)) for key in RECORDED},
      # The claim is asymptotic: the fit over the wider half of the widths.
      "slopes_wide": {key: slopes(widths[len(widths) // 2:],
                                  final(key)[len(widths) // 2:])
                      for key in RECORDED},
      "wall_time_s": time.time() - t_start,
      "stages_wall_time_s": sum(r["wall_time_s"] for r in results.values()),
      "machine": runs.machine_info(),
  }
  experiments.finish("ntk", workdir, config, summary)
  return summary


# -----------------------------------------------------------------------------
# Summaries
# -----------------------------------------------------------------------------
def slopes(widths: Sequence[int], per_width: Sequence[Sequence[float]]):
  """Log-log slope against width, fitted per seed: {mean, std, per_seed}."""
  per_seed = np.asarray(per_width, float).T  # [R, W]
  fits = [ntk.loglog_slope(widths, row) for row in per_seed]
  return stats(fits) if None not in fits else None


def curve_stats(curve: np.ndarray) -> Dict[str, Any]:
  """{mean, std [T], per_seed [R][T]} of a curve [T, R]."""
  at = [stats(row) for row in curve]
  return {"mean": [a["mean"] for a in at], "std": [a["std"] for a in at],
          "per_seed": curve.T.tolist()}


def kernel_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """The angle between kernels [R, n, n], per seed, whose cosine is
  <a, b>_F / (||a||_F ||b||_F): Fort et al.'s kernel distance is 1 − that
  cosine, and for a small step 1 − cos θ ≈ θ²/2 (at a fixed dt the two rank
  speeds alike). Taken as 2 arcsin(||â − b̂|| / 2) of the unit kernels,
  exact where arccos of a cosine near 1 loses angles below ~1e-8 rad; NaN
  for a zero kernel (it has no direction). The angle is a metric, so the
  path length over records never exceeds the angle travelled: coarse
  records (ours are log-spaced, denser early) undercount, the late phase's
  more."""
  def unit(k):
    k = k.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
      return k / np.sqrt((k * k).sum((1, 2), keepdims=True))
  chord = np.sqrt(((unit(a) - unit(b)) ** 2).sum((1, 2)))
  return 2.0 * np.arcsin(np.minimum(chord / 2.0, 1.0))


def kernel_speed(folder, steps, early: int) -> Dict[str, Any]:
  """Two speeds of the kernel between records [T, R], each with its mean
  (the path length over the steps) before and after `early`:
  `speed`, ||K_t2 - K_t1||_F / ||K_0||_F / (t2 - t1), which counts a change
  of the kernel's scale; `angular_speed`, the angle between K_t1 and K_t2
  per step (`kernel_angle`), which leaves the scale out as Fort et al.'s
  kernel velocity does."""
  k0 = paths.load_npz(os.path.join(folder, "kernel0.npz"))["kernel"]
  ks = [k0] + [paths.load_npz(saved_file(record_file(folder, t)))["kernel"]
               for t in steps]
  ts = [0] + list(steps)
  norm0 = np.sqrt((k0.astype(float) ** 2).sum((1, 2)))
  moved = np.stack([np.sqrt(((b.astype(float) - a) ** 2).sum((1, 2))) / norm0
                    for a, b in zip(ks, ks[1:])])  # [T, R]
  turned = np.stack([kernel_angle(a, b) for a, b in zip(ks, ks[1:])])
  i, dt = ts.index(early), np.diff(ts)[:, None]
  out = {}
  for name, path in (("speed", moved), ("angular_speed", turned)):
    out.update({name: curve_stats(path / dt),
                f"early_{name}": stats(path[:i].sum(0) / early),
                f"late_{name}": stats(path[i:].sum(0) / (ts[-1] - early))})
  return out


def width_summary(width, result, folder, steps) -> Dict[str, Any]:
  # saved_file: a non-main process's records from an earlier, killed run
  # are in the shared workdir only.
  files = [paths.load_npz(saved_file(record_file(folder, t))) for t in steps]
  curves = {k: np.stack([f[k] for f in files]) for k in RECORDED}  # [T, R]
  m = result["measures"]
  return {
      "width": width, "num_params": result["num_params"],
      "steps": result["steps"],
      "curves": {k: curve_stats(v) for k, v in curves.items()},
      "final": {k: stats(v[-1]) for k, v in curves.items()},
      **kernel_speed(folder, steps, result["steps"] // 10),
      "kernel_regression_accuracy": stats(m["kernel_regression_accuracy"]),
      "network_accuracy": stats(m["network_accuracy"]),
      "agreement": stats(m["agreement"]),
      "test_accuracy": stats(result["evals"]["test"]["accuracy"]),
      "train_loss": stats(result["evals"]["train"]["loss"]),
      "train_accuracy": stats(result["evals"]["train"]["accuracy"]),
      "wall_time_s": result["wall_time_s"],
      "steps_per_second": result["steps_per_second"],
  }


experiments.register(
    "ntk", validate=validate,
    report="jaxunknowns.overparam.ntk_report:write",
    multi_process=True)(run)
