"""`max_margin`: the implicit bias of gradient descent on separable data
(Soudry, Hoffer, Nacson, Gunasekar & Srebro 2018).

What runs. For each data seed s (dataset drawn with data.shuffle_seed + s),
the hard-margin SVM w_hat of the training set is solved exactly
(analysis/svm.py); data that are not linearly separable end here, before the
workdir is touched, with a one-line UserError giving the best margin found.
Then each optimizer of `max_margin.optimizers` (gd, momentum, sgd, adam)
trains the registry's `linear` model from w = 0 for `train.steps` steps,
every seed at once (jax.vmap), and at log-spaced steps t = 1, 2, 3, ..., T
records ||w||, the training loss and error, the angle and the normalised
distance ||w/||w|| - w_hat/||w_hat|||| to the SVM direction, the margin gap
gamma_hat - min_n margin_n(w)/||w||, ||P_perp w|| (the part of w orthogonal
to w_hat), the angle to the l_inf max-margin direction (the limit of sign
descent, a yardstick for Adam), and loss and error on the test draw. The
predicted rates are fitted on the last `max_margin.fit_decades` decades.

Model and loss. Two classes use a one-output linear model, logit z = w.x,
and logits [0, z]: losses.py's cross_entropy and exponential on them are
exactly the paper's l(y w.x) with y = +-1, log(1 + exp(-y z)) and
exp(-y z). K > 2 classes use the K-output model and the multiclass SVM on
the pairwise margins z_y - z_k >= 1 (the extension of Soudry et al. Sec.
4.3). `margin_loss` computes those same functions from the margins, so their
gradients keep full precision at large margins (see there). The loss is
summed over examples by default (the paper's L(w) = sum_n l, for which its
Fig. 1 uses eta = 1/sigma_max(X)); SGD uses (N/B) x the minibatch sum, an
unbiased estimate of it. That step is the figure's, not the theorem's: its
Theorem 3 asks eta < 2 beta^-1 sigma_max^-2(X) (8/sigma_max^2 for the
logistic loss), which 1/sigma_max(X) exceeds wherever sigma_max(X) > 8 (the
2-D set's is about 10). The runs converge all the same: the loss exponent
near -1 and the direction to the SVM's are the reports' rows, and a
diverging run would fail them. With `reduction="mean"` the same eta
moves N times slower (the loss is N times smaller).

Why not `Trainer`: three things this experiment needs that the trainer is
not for.
  1. float64. Late in training the per-step change of w is ~1e-7 of ||w||
     and the gradients are 1e-6..1e-12: in float32 the updates round away
     and the cross-entropy gradient (1 - p) cancels, so GD stalls far from
     the max-margin direction. The experiment runs under `jax.enable_x64`.
  2. Log-spaced recording of 10^6..10^7 full-batch steps: one compiled
     while loop (`lax.fori_loop` with a traced trip count) advances all
     seeds to the next record step; there is no minibatch gather and no
     per-step metric, and one compile serves every segment length.
  3. The paper's summed loss (the trainer minimises the mean).
What is shared: the state is the trainer's dict {step, params, batch_stats,
opt_state, rng} with a leading run axis, the optimizers come from optim.py
(an lr-free direction times -lr, as in the trainer's step), the data and
the model from their registries, rows go through the MetricWriter (split
"max_margin", labels `seed` and `optimizer`).
"""

import dataclasses
import functools
import math
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.flatten_util import ravel_pytree

from jaxunknowns import distributed, experiments, optim, prng, validation
from jaxunknowns.analysis import svm as svm_lib
from jaxunknowns.data import load_dataset
from jaxunknowns.errors import UserError
from jaxunknowns import runs
from jaxunknowns.metrics import MetricWriter, stats
from jaxunknowns.models import create_model

OPTIMIZERS = ("gd", "momentum", "sgd", "adam")
SPLIT = "max_margin"
# Metrics recorded at every record step (per seed and optimizer).
METRICS = ("norm", "loss", "error", "angle", "distance", "margin_gap",
           "perp_norm", "angle_linf", "test_loss", "test_error")


def optimizer_names(config) -> List[str]:
  return list(config.max_margin.optimizers)


# The optim.* fields its own optimizers read, and which one reads each.
OWN_FIELDS = {"optim.momentum": ("momentum",), "optim.b1": ("adam",),
              "optim.b2": ("adam",), "optim.eps": ("adam",)}
# Its other fields that only some optimizers read (optimizer_setup, Runner).
READ_BY = {**OWN_FIELDS, "max_margin.lr": ("gd", "momentum", "sgd"),
           "max_margin.adam_lr": ("adam",),
           "max_margin.momentum_same_clock": ("momentum",),
           "train.batch_size": ("sgd",)}
# Shared fields of the shared trainer's loop, which this experiment does not
# use (its own float64 loop, records at log-spaced steps, no checkpoints):
# moved, they would be recorded but never read.
UNUSED_FIELDS = (
    "optim.name", "optim.lr", "optim.schedule", "optim.warmup_steps",
    # Its loop neither augments (data.augment was recorded, unused, on an
    # image dataset) nor takes SAM's ascent (optim.sam_rho crashed it after
    # config.json was written: "sam's update needs params and grad_fn").
    "data.augment", "optim.sam_rho",
    "optim.sam_m", "train.checkpoint_every", "train.eval_every",
    "train.eval_batch_size", "train.eval_train", "train.log_every",
    "train.loop", "train.max_train_eval", "train.precision",
    "train.seed_devices", "train.unroll")


def validate(config):
  validation.validate_base(config)
  check = validation.check
  mm = config.max_margin
  names = optimizer_names(config)
  check(bool(names) and all(n in OPTIMIZERS for n in names)
        and len(set(names)) == len(names), "max_margin.optimizers",
        mm.optimizers, f"a tuple, a subset of {OPTIMIZERS}")
  # Its own optimizers, not optim.name's, read optim.momentum and the betas.
  validation.check_read_by(config, READ_BY, names, "max_margin.optimizers")
  for field in UNUSED_FIELDS:
    validation.check_applies(config, field, False, "to the shared trainer's "
                             "loop; max_margin runs its own (max_margin.*)")
  check(mm.lr >= 0, "max_margin.lr", mm.lr, ">= 0 (0 = 1/sigma_max(X))")
  check(mm.adam_lr > 0, "max_margin.adam_lr", mm.adam_lr, "> 0")
  check(mm.reduction in ("sum", "mean"), "max_margin.reduction", mm.reduction,
        "'sum' or 'mean'")
  validation.check_int(mm.records_per_decade,
                       "max_margin.records_per_decade", 1)
  steps = config.train.steps
  check(steps >= 10, "train.steps", steps, ">= 10")
  check(0 < mm.fit_decades <= math.log10(steps / 2.0), "max_margin.fit_decades",
        mm.fit_decades, f"in (0, log10(train.steps / 2) = "
        f"{math.log10(steps / 2.0):.2f}]")
  check(config.train.loss in ("cross_entropy", "exponential"), "train.loss",
        config.train.loss, "'cross_entropy' (logistic) or 'exponential'")
  check(config.train.label_smoothing == 0, "train.label_smoothing",
        config.train.label_smoothing,
        "0 (smoothed labels have a finite minimiser: no max-margin limit)")
  check(config.model.name == "linear", "model.name", config.model.name,
        "'linear' (the max-margin analysis is for linear models)")
  check(config.optim.get("decay_on", "all") != "normalized",
        "optim.decay_on", "normalized", "'kernels' or 'all' (no norm follows "
        "a linear model's kernel)")


# ---------------------------------------------------------------------------
# Input: one separable problem per data seed
# ---------------------------------------------------------------------------
class LinearModel:
  """The registry's `linear` model over a flat float64 parameter vector.

  Binary: one output z and logits [0, z] (so every loss of losses.py is the
  paper's l(y z)); K > 2: K outputs.
  """

  def __init__(self, model_config, num_classes: int, input_shape):
    self.num_classes = num_classes
    self.binary = num_classes == 2
    self.module = create_model(model_config, 1 if self.binary else num_classes)
    self.input_shape = tuple(input_shape)
    template = self.init(0)
    _, self.unravel = ravel_pytree(template)
    self.num_params = int(sum(x.size for x in jax.tree.leaves(template)))

  def init(self, seed: int):
    dummy = jnp.zeros((1,) + self.input_shape, jnp.float64)
    params = self.module.init(prng.key(seed), dummy)["params"]
    return jax.tree.map(lambda p: p.astype(jnp.float64), params)

  def logits(self, params, x):
    z = self.module.apply({"params": params}, x)
    if self.binary:
      return jnp.concatenate([jnp.zeros_like(z), z], axis=-1)
    return z

  def margins(self, params, x, y):
    """The margin constraints: y z (binary) or z_y - z_k for k != y, flat.

    `y` must be concrete (numpy): it selects which differences are kept.
    """
    y = np.asarray(y)
    logits = self.logits(params, x)
    true = jnp.take_along_axis(logits, jnp.asarray(y)[:, None], axis=-1)
    diffs = true - logits                 # [N, K], zero at k = y
    if self.binary:
      return jnp.sum(diffs, axis=-1)      # = y z with y = +-1
    return diffs[np.arange(self.num_classes)[None, :] != y[:, None]]

  def constraint_matrix(self, x, y) -> np.ndarray:
    """Z with margins(w) = Z w (exact: the model is linear in w)."""
    x = jnp.asarray(x, jnp.float64)
    return svm_lib.margin_matrix(
        lambda w: self.margins(self.unravel(w), x, y), self.num_params)


@dataclasses.dataclass
class Problem:
  """One data seed: its dataset, margin constraints and exact SVM."""
  seed: int
  data_seed: int
  x: np.ndarray
  y: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  z: np.ndarray             # [M, P] margins(w) = z w on the training set
  svm: svm_lib.MaxMargin
  linf: np.ndarray          # unit l_inf max-margin direction
  sigma_max: float          # largest singular value of z (= of X for two classes)
  angle_log_t_limit: Optional[float]  # lim angle(t) log t by the SVs (None: trajectory-dependent)


# The most entries (margin constraints x parameters) of the dense float64
# margin matrix Z whose exact SVM is solved: 2e7 is 160 MB, and sklearn
# digits (1437 x 9 margins x 640 parameters = 8.3e6) runs in 96 s at
# runlocal on a 2-core CPU. Fashion-MNIST's 60,000 x 9 x 7850 would need
# 34 GB (XLA aborts the process while building it).
MAX_MARGIN_ENTRIES = 20_000_000
# The most margin constraints: check_separable's l_inf linear program took
# 3-9 s at 9000 (MNIST-1D's first 1000 examples) and ran past 190 s at
# 36,000 (all 4000); digits' 12,933 run in the 96 s above.
MAX_MARGIN_CONSTRAINTS = 15_000


def check_problem_size(ds, model: LinearModel) -> None:
  """Refuses, before Z is built, a training set too large for the exact SVM."""
  per_example = 1 if model.binary else model.num_classes - 1
  rows = ds.train.num_examples * per_example
  if (rows * model.num_params <= MAX_MARGIN_ENTRIES
      and rows <= MAX_MARGIN_CONSTRAINTS):
    return
  most = max(1, min(MAX_MARGIN_ENTRIES // (per_example * model.num_params),
                    MAX_MARGIN_CONSTRAINTS // per_example))
  raise UserError(
      f"data.train_size: max_margin solves the SVM exactly (linear programs "
      f"on a dense margin matrix), and {ds.name}'s {ds.train.num_examples} "
      f"training examples give {rows} margin constraints x {model.num_params} "
      f"parameters ({rows * model.num_params * 8 / 1e9:.2f} GB), more than "
      f"{MAX_MARGIN_CONSTRAINTS} constraints or {MAX_MARGIN_ENTRIES:.0e} "
      f"entries; set --config.data.train_size to at most {most}")


def build_problems(config) -> Tuple[List[Problem], LinearModel, Any]:
  """Loads every seed's data, then solves each SVM: every UserError about
  the data comes before the first (slow) solve."""
  loaded, model, first = [], None, None
  for seed in runs.seeds_of(config):
    data_config = ml_collections.ConfigDict(config.data.to_dict())
    data_config.shuffle_seed = int(config.data.shuffle_seed) + seed
    ds = load_dataset(data_config)
    if first is None:
      first = ds
      model = LinearModel(config.model, ds.num_classes, ds.input_shape)
    elif (ds.train.x.shape != first.train.x.shape
          or ds.test.x.shape != first.test.x.shape):
      raise UserError(f"data seeds give different shapes ({ds.train.x.shape} "
                      f"vs {first.train.x.shape}): they cannot train together")
    elif (np.array_equal(ds.train.x, first.train.x)
          and np.array_equal(ds.train.y, first.train.y)):
      # A fixed dataset (digits, mnist1d, ...): every seed would be the same
      # problem, and GD's runs copies of one run reported as n seeds.
      raise UserError(
          f"seeds={config.seeds}: max_margin's seeds are data seeds "
          f"(data.shuffle_seed + s), and {ds.name} gives each the same "
          "training set; set --config.seeds=1, or draw a different training "
          "set per seed with data.validation_size > 0")
    check_problem_size(ds, model)
    loaded.append((seed, int(data_config.shuffle_seed), ds))
  return [solve(model, *one) for one in loaded], model, first


def solve(model: LinearModel, seed: int, data_seed: int, ds) -> Problem:
  """One seed's Problem: its margin matrix, SVM and yardsticks."""
  x = ds.train.x.astype(np.float64)
  x_test = ds.test.x.astype(np.float64)
  z = model.constraint_matrix(x, ds.train.y)
  svm_lib.check_separable(
      z, what=f"the training data of {ds.name} (data.shuffle_seed="
      f"{data_seed})")
  result = svm_lib.hard_margin_svm(z, check=False)
  offset = svm_lib.asymptotic_offset(result, z, lr=1.0)
  limit = None
  if offset is not None:
    u = result.direction
    limit = float(np.linalg.norm(offset - (offset @ u) * u) / result.norm)
    limit = 0.0 if limit < 1e-9 else limit  # rounding of an exact zero
  return Problem(
      seed=seed, data_seed=data_seed, x=x, y=ds.train.y, x_test=x_test,
      y_test=ds.test.y, z=z, svm=result, linf=svm_lib.linf_max_margin(z),
      sigma_max=float(np.linalg.norm(z, ord=2)), angle_log_t_limit=limit)


def margin_loss(name: str, logits, y):
  """losses.py's `cross_entropy` / `exponential`, per example, written on the
  margins m_k = z_y - z_k so that they keep their relative precision when
  the margins are large.

  The functions are the same; the arithmetic is not: optax's cross-entropy
  gradient with respect to z_y is p_y - 1, which cancels to exactly 0 once
  every margin exceeds ~37 (float64), so GD with momentum and Adam, whose
  margins reach 30-100 here, would stop on a rounding artefact. Here the
  gradient of log(1 + sum_k exp(-m_k)) is sum_k exp(-m_k) / (1 + ...),
  accurate down to exp(-745).
  """
  if name not in ("cross_entropy", "exponential"):
    raise UserError(f"train.loss={name!r}: max_margin supports "
                    "cross_entropy and exponential")
  own = jnp.arange(logits.shape[-1])[None, :] == y[:, None]
  true = jnp.take_along_axis(logits, y[:, None], axis=-1)
  a = logits - true                       # -m_k; 0 at k = y
  if logits.shape[-1] == 2:               # one margin m: softplus(-m), exp(-m)
    minus_m = jnp.sum(a, axis=-1)
    if name == "exponential":
      return jnp.exp(minus_m)
    return jax.nn.softplus(minus_m)
  if name == "exponential":
    return jnp.sum(jnp.where(own, 0.0, jnp.exp(a)), axis=-1)
  # A constant shift (>= 0: the own class is 0); no gradient through it, or
  # ties (all logits equal, as at w = 0) would split the max's gradient.
  top = jax.lax.stop_gradient(jnp.max(a, axis=-1, keepdims=True))
  rest = jnp.sum(jnp.where(own, 0.0, jnp.exp(a - top)), axis=-1)
  top = top[:, 0]
  # top = 0 (all margins positive): log1p keeps the tiny value exact.
  return jnp.where(top > 0, top + jnp.log(jnp.exp(-top) + rest),
                   jnp.log1p(rest))


# ---------------------------------------------------------------------------
# Update: one compiled "advance n steps" per optimizer, vmapped over seeds
# ---------------------------------------------------------------------------
def optimizer_setup(config, name: str, problems: Sequence[Problem]):
  """(lr-free optax direction, per-seed step sizes, stochastic?) of `name`."""
  cfg = ml_collections.ConfigDict(config.optim.to_dict())
  mm = config.max_margin
  if name == "adam":
    cfg.name = "adam"
    lrs = [mm.adam_lr] * len(problems)
  else:
    cfg.name = "momentum" if name == "momentum" else "sgd"
    lrs = [mm.lr if mm.lr > 0 else 1.0 / p.sigma_max for p in problems]
    if name == "momentum" and mm.momentum_same_clock:
      # Heavy ball's effective step is lr / (1 - beta): scaling by (1 - beta)
      # gives it GD's, so the two run on the same clock.
      lrs = [lr * (1.0 - config.optim.momentum) for lr in lrs]
  return cfg, np.asarray(lrs, np.float64), name == "sgd"


class Runner:
  """Trains every seed with one optimizer; records at chosen steps."""

  def __init__(self, config, model: LinearModel, problems: Sequence[Problem],
               name: str):
    self.name = name
    self.model = model
    opt_cfg, self.lrs, self.stochastic = optimizer_setup(config, name, problems)
    self.params0 = [model.init(p.seed) for p in problems]
    self.tx = optim.create_optimizer(opt_cfg, self.params0[0])
    self.loss_fn = functools.partial(margin_loss, config.train.loss)
    self.sum_loss = config.max_margin.reduction == "sum"
    self.batch_size = int(config.train.batch_size)
    self.num_train = len(problems[0].y)
    if self.stochastic and not 1 <= self.batch_size <= self.num_train:
      raise UserError(f"train.batch_size={self.batch_size} (the sgd minibatch) "
                      f"must be in [1, {self.num_train}] (the training set)")
    self.data = {
        "x": jnp.asarray(np.stack([p.x for p in problems])),
        "y": jnp.asarray(np.stack([p.y for p in problems]), jnp.int32),
        "lr": jnp.asarray(self.lrs)}
    self.eval_data = {
        "x": self.data["x"], "y": self.data["y"],
        "x_test": jnp.asarray(np.stack([p.x_test for p in problems])),
        "y_test": jnp.asarray(np.stack([p.y_test for p in problems]), jnp.int32),
        "z": jnp.asarray(np.stack([p.z for p in problems])),
        "u_hat": jnp.asarray(np.stack([p.svm.direction for p in problems])),
        "gamma_hat": jnp.asarray([p.svm.margin for p in problems]),
        "u_linf": jnp.asarray(np.stack([p.linf for p in problems]))}
    self._advance = jax.jit(jax.vmap(self._advance_one, in_axes=(0, None, 0)),
                            donate_argnums=(0,))
    self._measure = jax.jit(jax.vmap(self._measure_one))

  def init_state(self, seeds: Sequence[int]):
    params = jax.tree.map(lambda *p: jnp.stack(p), *self.params0)
    return {"step": jnp.zeros((len(seeds),), jnp.int32),
            "params": params, "batch_stats": {},
            "opt_state": jax.vmap(self.tx.init)(params),
            "rng": jnp.stack([prng.key(s) for s in seeds])}

  def _objective(self, params, x, y):
    per_example = self.loss_fn(self.model.logits(params, x), y)
    if self.sum_loss:  # (N / B) x the minibatch sum: unbiased for the sum.
      return jnp.sum(per_example) * (self.num_train / x.shape[0])
    return jnp.mean(per_example)

  def _step(self, state, data):
    x, y = data["x"], data["y"]
    if self.stochastic:
      key = jax.random.fold_in(state["rng"], state["step"])
      idx = jax.random.randint(key, (self.batch_size,), 0, self.num_train)
      x, y = x[idx], y[idx]
    grads = jax.grad(self._objective)(state["params"], x, y)
    direction, opt_state = self.tx.update(grads, state["opt_state"],
                                          state["params"])
    params = jax.tree.map(lambda p, d: p - data["lr"] * d, state["params"],
                          direction)
    return {**state, "step": state["step"] + 1, "params": params,
            "opt_state": opt_state}

  def _advance_one(self, state, num_steps, data):
    return jax.lax.fori_loop(0, num_steps, lambda _, s: self._step(s, data),
                             state)

  def advance(self, state, num_steps: int):
    return self._advance(state, jnp.asarray(num_steps, jnp.int32), self.data)

  def _measure_one(self, params, d):
    w, _ = ravel_pytree(params)
    norm = jnp.linalg.norm(w)
    u = w / jnp.maximum(norm, 1e-300)
    u_hat = d["u_hat"]

    def angle(a, b):  # accurate for tiny angles, unlike arccos
      return 2.0 * jnp.arctan2(jnp.linalg.norm(a - b), jnp.linalg.norm(a + b))

    def loss_error(x, y):
      logits = self.model.logits(params, x)
      return (jnp.mean(self.loss_fn(logits, y)),
              jnp.mean((jnp.argmax(logits, -1) != y).astype(jnp.float64)))

    loss, error = loss_error(d["x"], d["y"])
    test_loss, test_error = loss_error(d["x_test"], d["y_test"])
    return {"norm": norm, "loss": loss, "error": error,
            "angle": angle(u, u_hat), "distance": jnp.linalg.norm(u - u_hat),
            "margin_gap": d["gamma_hat"] - jnp.min(d["z"] @ w) / norm,
            "perp_norm": jnp.linalg.norm(w - (w @ u_hat) * u_hat),
            "angle_linf": angle(u, d["u_linf"]),
            "test_loss": test_loss, "test_error": test_error}

  def measure(self, state) -> Dict[str, np.ndarray]:
    out = distributed.device_get(self._measure(state["params"], self.eval_data))
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def record_steps(total: int, per_decade: int) -> np.ndarray:
  """1, ..., total: about `per_decade` log-spaced integers per decade."""
  decades = math.log10(total)
  grid = np.round(10 ** (np.arange(0, int(decades * per_decade) + 1)
                         / per_decade)).astype(np.int64)
  return np.unique(np.concatenate([grid[grid <= total], [total]]))


# ---------------------------------------------------------------------------
# Rates: least-squares fits over the last decades
# ---------------------------------------------------------------------------
def _fit(xs, ys):
  ok = np.isfinite(xs) & np.isfinite(ys)
  if ok.sum() < 3:
    return None
  slope, intercept = np.polyfit(xs[ok], ys[ok], 1)
  return float(slope), float(intercept)


def _log_positive(v):
  v = np.asarray(v, np.float64)
  return np.where(v > 0, np.log(np.maximum(v, 1e-300)), np.nan)


def rate_fits(steps: np.ndarray, curves: Dict[str, np.ndarray],
              fit_decades: float) -> Dict[str, Any]:
  """Per-run fits of the predicted rates on steps >= T / 10^fit_decades.

  norm_slope       d||w|| / d log t            (predicted ||w_hat|| = 1/gamma_hat)
  loss_exponent    d log L / d log t           (predicted -1)
  angle_exponent   d log angle / d log log t   (O(1/log t): -1, or below -1
                                                when the SVs pin w~ along w_hat)
  angle_vs_inv_log_t  angle = a / log t + b    (predicted b = 0 and, when the
                                                SVs span, a = ||P_perp w~|| / ||w_hat||)
  margin_gap_exponent  d log gap / d log log t (O(1/log t))
  """
  total = steps[-1]
  window = steps >= max(2, total / 10 ** fit_decades)
  t = steps[window].astype(np.float64)
  log_t = np.log(t)
  out: Dict[str, List[Any]] = {k: [] for k in (
      "norm_slope", "loss_exponent", "angle_exponent", "angle_slope",
      "angle_intercept", "margin_gap_exponent", "angle_monotone",
      "angle_peak_step", "angle_falls_from_step", "test_loss_change",
      "test_error_change")}
  num_runs = curves["norm"].shape[1]
  for r in range(num_runs):
    c = {k: v[:, r] for k, v in curves.items()}
    cw = {k: v[window] for k, v in c.items()}
    norm = _fit(log_t, cw["norm"])
    loss = _fit(log_t, _log_positive(cw["loss"]))
    ang = _fit(np.log(log_t), _log_positive(cw["angle"]))
    lin = _fit(1.0 / log_t, cw["angle"])
    gap = _fit(np.log(log_t), _log_positive(cw["margin_gap"]))
    out["norm_slope"].append(norm[0] if norm else None)
    out["loss_exponent"].append(loss[0] if loss else None)
    out["angle_exponent"].append(ang[0] if ang else None)
    out["angle_slope"].append(lin[0] if lin else None)
    out["angle_intercept"].append(lin[1] if lin else None)
    out["margin_gap_exponent"].append(gap[0] if gap else None)
    out["angle_monotone"].append(bool(np.all(np.diff(cw["angle"]) <= 0)))
    out["angle_peak_step"].append(int(steps[int(np.argmax(c["angle"]))]))
    rises = np.flatnonzero(np.diff(c["angle"]) > 0)  # the last rise ends here:
    out["angle_falls_from_step"].append(int(steps[rises[-1] + 1]) if len(rises)
                                        else int(steps[0]))
    out["test_loss_change"].append(float(cw["test_loss"][-1] - cw["test_loss"][0]))
    out["test_error_change"].append(float(cw["test_error"][-1] - cw["test_error"][0]))
  summary = {}
  for k, vals in out.items():
    if all(isinstance(v, bool) for v in vals):
      summary[k] = vals
    elif any(v is None for v in vals):
      summary[k] = None
    elif k in ("angle_peak_step", "angle_falls_from_step"):
      summary[k] = vals
    else:
      summary[k] = stats(vals)
  summary["window_start_step"] = int(t[0])
  return summary


# ---------------------------------------------------------------------------
# Loop
# ---------------------------------------------------------------------------
def _nonsupport_ratio(p: Problem) -> Optional[float]:
  margins = p.z @ p.svm.w
  rest = np.delete(margins, p.svm.support)
  return float(np.min(rest)) if len(rest) else None


def run(config, workdir):
  with jax.enable_x64(True):
    return _run(config, workdir)


def _run(config, workdir):
  t_start = time.time()
  problems, model, dataset = build_problems(config)
  seeds = [p.seed for p in problems]
  runners = [Runner(config, model, problems, name)
             for name in optimizer_names(config)]
  steps = record_steps(config.train.steps, config.max_margin.records_per_decade)
  workdir.open()
  writer = MetricWriter(workdir.path)
  # No checkpoints (a run takes seconds to minutes): a killed run starts
  # again from step 0, so the rows of the interrupted attempt are dropped.
  writer.rewind({}, 0)
  logging.info("%s: %d train / %d test points, %d parameters; SVM margin %s",
               dataset.name, len(problems[0].y), len(problems[0].y_test),
               model.num_params,
               ", ".join(f"{p.svm.margin:.6g}" for p in problems))
  results, timings = {}, {}
  for runner in runners:
    t0 = time.time()
    state = runner.init_state(seeds)
    curves = {k: [] for k in METRICS}
    done = 0
    for t in steps:
      state = runner.advance(state, int(t - done))
      done = int(t)
      values = runner.measure(state)
      for k in METRICS:
        curves[k].append(values[k])
      writer.write(done, SPLIT, [{"seed": s, "optimizer": runner.name}
                                 for s in seeds], values)
    curves = {k: np.stack(v) for k, v in curves.items()}   # [T, R]
    bad = ~np.isfinite(curves["norm"])
    if bad.any():
      i, r = map(int, np.argwhere(bad)[0])
      raise UserError(f"{runner.name} diverged (non-finite w) at step "
                      f"{int(steps[i])} of seed {seeds[r]}: lower its step "
                      f"(max_margin.lr / max_margin.adam_lr)")
    timings[runner.name] = time.time() - t0
    logging.info("[%s] %d steps x %d seeds in %.1fs: angle to SVM %s deg",
                 runner.name, done, len(seeds), timings[runner.name],
                 ", ".join(f"{np.degrees(a):.4g}" for a in curves["angle"][-1]))
    results[runner.name] = {
        "lr": [float(v) for v in runner.lrs],
        "final": {k: stats(curves[k][-1]) for k in METRICS},
        "fits": rate_fits(steps, curves, config.max_margin.fit_decades),
        "seconds": timings[runner.name]}
  writer.close()
  wall = time.time() - t_start
  summary = {
      "experiment": "max_margin",
      "dataset": config.data.name, "loss": config.train.loss,
      "reduction": config.max_margin.reduction,
      "steps": int(config.train.steps), "seeds": seeds,
      "data_seeds": [p.data_seed for p in problems],
      "num_train": len(problems[0].y), "num_test": len(problems[0].y_test),
      "num_classes": dataset.num_classes, "num_params": model.num_params,
      "use_bias": bool(config.model.use_bias),
      "record_steps": [int(s) for s in steps],
      "svm": {
          "margin": stats([p.svm.margin for p in problems]),
          "norm": stats([p.svm.norm for p in problems]),
          "w_hat": [p.svm.w.tolist() for p in problems],
          "num_support_vectors": [int(len(p.svm.support)) for p in problems],
          "kkt_residual": max(p.svm.kkt_residual for p in problems),
          "angle_log_t_limit": [p.angle_log_t_limit for p in problems],
          # min over non-support constraints of margin / SVM margin: their
          # pull on GD fades like t^-(ratio - 1).
          "nonsupport_margin_ratio": [_nonsupport_ratio(p) for p in problems],
          "angle_l2_vs_linf_deg": [float(np.degrees(svm_lib.angle(
              p.svm.w, p.linf))) if np.any(p.linf) else None
                                   for p in problems],
          "sigma_max": [p.sigma_max for p in problems]},
      "optimizers": results,
      "wall_time_s": wall,
      "steps_per_second": float(config.train.steps * len(runners) / max(
          sum(timings.values()), 1e-9)),
      "machine": runs.machine_info(),
  }
  experiments.finish("max_margin", workdir, config, summary)
  gd = results.get("gd")
  if gd:
    logging.info("GD at step %d: angle %.4g deg, distance %.4g; summary in %s",
                 config.train.steps,
                 np.degrees(gd["final"]["angle"]["mean"]),
                 gd["final"]["distance"]["mean"], workdir.summary_path)
  return summary


experiments.register("max_margin", validate=validate,
                     report="jaxunknowns.implicit.max_margin_report:write",
                     # Every data seed draws with data.shuffle_seed + s.
                     own_fields=tuple(OWN_FIELDS) + ("data.shuffle_seed",),
                     float64=True,
                     multi_process=True)(run)
