"""The trainer every experiment calls.

Anatomy (one banner per part): Input, Model & state, Update, Evals, Loop.

* The state is a plain dict {step, params, batch_stats, opt_state, rng} whose
  every leaf has a leading *run* axis R: R independent runs (seeds, or an
  experiment's variants × seeds) train in one compiled program via `jax.vmap`
  (one run trains unbatched, its run axis dropped outside the loop: see
  `_step_fn`).
* Datasets live in device memory; a compiled call runs `train.log_every`
  steps with `lax.scan`, gathering each batch by index (`batching.py`) inside
  the loop. The only host->device traffic is the int32 index array. `fit`
  compiles one scan per distinct chunk length or, when that needs fewer
  programs (a run stopping at many steps, e.g. a log-spaced callback grid),
  cuts its short chunks into scans of a few fixed lengths (`plan_scans`,
  `scan_lengths`: powers of two, then one step): at most
  2 + ceil(log2(train.log_every)) train programs, whatever the grid.
  `train.unroll` steps run per loop iteration (fewer loop iterations: 8 gave
  1.13-1.15x faster steps to IMP's LeNet program on an H200, see
  benchmarks/RESULTS.md; on CPU it was not measured to help).
* One `Mesh` over all devices (of all processes) with two axes, ('seed',
  'data'). The batch indices (and so the gathered batch) are sharded over
  'data'; under `jit` the compiler inserts the gradient all-reduce, and
  BatchNorm computes global-batch statistics. The run axis of the state is
  sharded over 'seed' (runs spread over devices: an 8-seed sweep on 8 chips
  needs no all-reduce at all); with a 'seed' axis of 1 the state is
  replicated and the mesh is plain data parallelism. The datasets are
  replicated. Multi-process runs use the same code (see distributed.py).
* The step's rng is `fold_in(run_rng, step)`, so a step is a function of
  (state, batch) alone and a resumed run is bit-identical on CPU.
* The learning rate is `schedule(state.step)` (see optim.py for why).
* SAM (optim.sam_rho > 0, sam.py): `train_step` gives the optimizer
  `grad_fn`, the same minibatch loss's gradient at any parameters; the
  BatchNorm statistics, loss and accuracy come from the first pass only.
* Hyperparameters as a run axis: with `hparams=("lr", ...)` (fields of
  optim.RUN_HPARAMS) the state carries {name: value} per run in
  state["hparams"], and each run's step builds its optimizer and schedule
  from its own values, so 8 learning rates x 4 seeds are 32 runs of one
  compiled program. Without it the state has no "hparams" and the step is
  the plain one (the same compiled program as before).
* Mixed precision (`train.precision="bfloat16"`): the forward and backward
  passes compute in bfloat16 on a bfloat16 copy of the params, while the
  params themselves (master weights), the optimizer state, the gradients they
  receive, the loss and BatchNorm's statistics stay float32. No loss scaling:
  bfloat16 has float32's 8 exponent bits (range ~1e-38..3e38), so gradients
  that fit float32 do not underflow it (loss scaling is for float16's 5 bits).
"""

import dataclasses
import functools
import os
import signal
import time
from typing import (Any, Callable, Dict, List, Mapping, Optional, Sequence,
                    Tuple)

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxunknowns import (batching, distributed, optim, preemption, prng,
                         validation)
from jaxunknowns.checkpoints import Checkpoints
from jaxunknowns.errors import UserError
from jaxunknowns.losses import LOSSES
from jaxunknowns.metrics import MetricWriter, format_stats
from jaxunknowns.models import scale_kernels

State = Dict[str, Any]

PRECISIONS = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Training examples the probe of optim.decay_on='normalized' runs on: enough
# for batch statistics to be well defined, the same at every batch size.
PROBE_EXAMPLES = 256


class TrainingDiverged(UserError):
  """A NaN or Inf loss: the message names the step and the run; `what`, the
  same without a single run's way out (a new --workdir or --overwrite),
  which a sweep replaces with its own."""

  def __init__(self, message: str, what: str = ""):
    super().__init__(message)
    self.what = what or message


def make_mesh(devices=None, seed_devices: int = 1) -> jax.sharding.Mesh:
  """A ('seed', 'data') mesh: runs spread over `seed_devices` devices, each
  run's batch over the remaining factor."""
  devices = devices if devices is not None else jax.devices()
  n = len(devices)
  if seed_devices < 1 or n % seed_devices:
    raise UserError(f"train.seed_devices={seed_devices} must divide the "
                    f"{n} devices")
  return jax.make_mesh((seed_devices, n // seed_devices), ("seed", "data"),
                       devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,) * 2)


def seed_devices_for(config, num_devices: int) -> int:
  """train.seed_devices, with 0 (auto) = spread the seeds over the devices
  when there are at least as many seeds as devices (gcd, so it divides),
  else split each run's batch over them; then, if the batch does not divide
  over the rest, the fewest more seed devices that let it (the papers'
  batch 100 or 60 on 8 devices: 2 x 4, the runs replicated over the pair)."""
  requested = int(config.train.get("seed_devices", 0))
  if requested < 0:
    raise UserError(f"train.seed_devices={requested} must be >= 0 (0 = auto)")
  if requested:
    return requested
  seeds, batch = int(config.get("seeds", 1)), int(config.train.batch_size)
  wanted = int(np.gcd(seeds, num_devices)) if seeds >= num_devices else 1
  return next(s for s in range(wanted, num_devices + 1)
              if num_devices % s == 0 and batch % (num_devices // s) == 0)


def dataset_augmentation(name: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """The augmentation a dataset asks for, as `augment(rng, x) -> x`."""
  if name == "crop_flip":
    from jaxunknowns.data.augment import random_crop_flip  # pylint: disable=g-import-not-at-top
    return random_crop_flip
  return lambda rng, x: x


@dataclasses.dataclass
class Callback:
  """A periodic analysis (init2winit style): `fn(trainer, state, step)`
  returns {name: per-run values}, written as split `name` every `every` steps
  (0: never), at each of `steps` (e.g. log-spaced) and at the end."""
  name: str
  every: int
  fn: Callable[["Trainer", State, int], Mapping[str, Any]]
  steps: Sequence[int] = ()


def scan_lengths(num_steps: int, chunk: int) -> List[Tuple[int, bool]]:
  """`num_steps` steps cut into compiled calls of a few fixed lengths:
  (length, with_norms) of each `lax.scan`, in order; `with_norms`: its last
  step also returns the l2 norms `fit` logs for a chunk.

  Whole chunks (train.log_every steps) are one call each. The rest, K
  steps, runs its first K - 1 steps as scans whose lengths are the binary
  digits of K - 1, largest first, then one step with the norms: log_every
  100, K 48 -> 32, 8, 4, 2, 1, then 1 with norms. Every length is the
  chunk, a power of two, or the 1-step norm call, so chunks of any lengths
  (a log-spaced grid of callback steps stops at 1, 2, 3, 5, 8, 13, ...)
  need at most 2 + ceil(log2(log_every)) programs between them.

  The steps are the same steps in the same order as one scan of K (bit for
  bit on CPU at XLA's default options: tests/test_trainer_chunks.py; its
  legacy emitters round them 1 ulp apart), and nothing is skipped inside
  a scan, so a step costs what it cost (a padded scan with a per-step
  `lax.cond` cost ~10% of every step on CPU; a `while_loop` with a run-time
  trip count syncs a GPU with its host at every iteration: XLA's
  WhileThunk).
  """
  if num_steps < 0 or chunk < 1:
    raise ValueError(f"scan_lengths({num_steps}, {chunk})")
  out = [(chunk, True)] * (num_steps // chunk)
  rest = num_steps % chunk
  if rest:
    rest -= 1
    while rest:
      out.append((1 << (rest.bit_length() - 1), False))
      rest -= out[-1][0]
    out.append((1, True))
  return out


def plan_scans(chunks: Sequence[int], chunk: int
               ) -> Dict[int, List[Tuple[int, bool]]]:
  """{K: its compiled calls} for a run whose chunks have the lengths
  `chunks`: each chunk one scan of its own length (one program per distinct
  length), or, when that needs fewer programs, cut by `scan_lengths`.

  Cutting pays when a run stops at many steps (ntk's log grid of 1000
  steps: 10 lengths -> 8 programs); a run whose only short chunk is the
  last (1000 steps of 390: 390, 390, 220) keeps 2 programs, not 8."""
  whole = {k: [(k, True)] for k in set(chunks)}
  cut = {k: scan_lengths(k, chunk) for k in set(chunks)}
  programs = lambda plan: len({c for calls in plan.values() for c in calls})
  return cut if programs(cut) < programs(whole) else whole


def log_spaced_steps(steps: int, points: int, chunk: int) -> List[int]:
  """About `points` log-spaced steps in [1, steps] for `Callback(steps=...)`,
  rounded to powers of two below `chunk` (train.log_every) and to multiples
  of it above, and `steps`: each chunk is one scan of a length among 1, 2,
  4, ..., `chunk` (~8 programs). (`fit` now also bounds the programs of a
  raw log grid, `plan_scans`, to 2 + ceil(log2(chunk)), but cuts its short
  chunks into several calls.)"""
  out = {steps}
  for s in np.geomspace(1, steps, points):
    if s < chunk:
      out.add(min(2 ** int(round(np.log2(s))), chunk))
    else:
      out.add(min(int(round(s / chunk)) * chunk, steps))
  return sorted(out)


@dataclasses.dataclass
class FitResult:
  state: State
  evals: Dict[str, Dict[str, np.ndarray]]  # split -> metric -> [R]
  steps_per_second: Optional[float]  # None: no timed step behind it
  # Seconds of training behind the returned state: this call's, plus those
  # of earlier attempts up to the checkpoint it resumed from.
  wall_time: float
  resumed_from: Optional[int]


def init_compiler_options(mesh) -> Optional[Dict[str, Any]]:
  """XLA options of the init program: LLVM at -O1 on CPU.

  Init is one threefry draw per parameter, run once (milliseconds), but
  XLA:CPU's default -O3 compiled a ResNet-8's in 10-19 s, slower the
  narrower the layers, and ~2 s at -O1 (benchmarks/init_compile.py); most
  of it is LLVM unrolling the draws' small fused loops (-O3 with
  -unroll-threshold=0: 15 -> 5 s, width 4). Levels 1 to 3 give bit-identical
  variables (level 0 rounds some kernels 1 ulp differently), tested against a
  per-seed `jit(model.init)` at the default level
  (tests/test_trainer.py). A level set in XLA_FLAGS (the test suite's 0)
  is left to apply, so init there stays as the rest of the program."""
  if (mesh.devices.flat[0].platform != "cpu" or
      "xla_backend_optimization_level" in os.environ.get("XLA_FLAGS", "")):
    return None
  return {"xla_backend_optimization_level": 1}


def _check_labels(dataset):
  """Integer labels in [0, num_classes): one out of range is a NaN loss (a
  one-hot row of zeros, a gather out of bounds) that read as divergence,
  with advice to lower the learning rate. A dataset of one's own is where
  it happens (labels 1..K, or num_classes one short)."""
  for name in ("train", "validation", "test"):
    split = getattr(dataset, name)
    if split is None or len(split.y) == 0:
      continue
    y = np.asarray(split.y)
    if not np.issubdtype(y.dtype, np.integer):
      raise UserError(f"dataset {dataset.name!r}: {name} labels are "
                      f"{y.dtype}, not integer class indices in [0, "
                      f"{dataset.num_classes})")
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= dataset.num_classes:
      raise UserError(
          f"dataset {dataset.name!r}: {name} labels run {low}..{high}, "
          f"outside [0, {dataset.num_classes}) for its num_classes="
          f"{dataset.num_classes}: number the classes from 0, or give the "
          f"dataset num_classes={high + 1}")


class Trainer:
  """Trains R runs of one model on one dataset; see the module docstring."""

  def __init__(self, config, dataset, model, *, mesh=None,
               tx_wrapper: Optional[Callable[[optax.GradientTransformation],
                                             optax.GradientTransformation]] = None,
               augment: Optional[Callable[[jax.Array, jax.Array],
                                          jax.Array]] = None,
               hparams: Sequence[str] = ()):
    """`augment(rng, x) -> x`: a batch augmentation inside the train step
    (default: the dataset's own, e.g. crop+flip for CIFAR). `hparams`:
    config.optim fields (of optim.RUN_HPARAMS) whose values differ per run,
    given to `init_state`."""
    self.config = config
    self.dataset = dataset
    self.model = model
    self.augment = augment if augment is not None else dataset_augmentation(
        dataset.augment)
    if mesh is None:
      mesh = make_mesh(seed_devices=seed_devices_for(config, jax.device_count()))
    self.mesh = mesh
    # Devices one run's batch is split over (the batch must divide by it).
    self.num_devices = self.mesh.shape["data"]
    self.seed_devices = self.mesh.shape["seed"]
    tc = config.train
    self.batch_size = tc.batch_size
    self.chunk = tc.log_every
    # Here too, not only in validate_base: a run whose steps come from an
    # epoch budget is checked once the data size has set them.
    validation.check_schedule_fits(config.optim, tc.steps)
    self.schedule = optim.learning_rate_schedule(config.optim, tc.steps)
    self.loss_fn = functools.partial(LOSSES.get(tc.loss),
                                     label_smoothing=tc.label_smoothing)
    precision = tc.get("precision", "float32")
    if precision not in PRECISIONS:
      raise UserError(f"train.precision={precision!r}: must be one of "
                      f"{', '.join(PRECISIONS)}")
    self.compute_dtype = PRECISIONS[precision]
    unknown = [h for h in hparams if h not in optim.RUN_HPARAMS]
    if unknown:
      raise UserError(f"optim.{unknown[0]} cannot differ between the runs of "
                      f"one program; per-run fields: "
                      f"{', '.join(optim.RUN_HPARAMS)}")
    self.hparams = tuple(hparams)
    self.tx_wrapper = tx_wrapper
    # SAM (optim.sam_rho, sam.py): a second gradient per step, through
    # grad_fn; with per-run rho it is on for every run of the program.
    self.sam = "sam_rho" in self.hparams or optim.uses_sam(config.optim)
    self.sam_sub_batches = (optim.sam_sub_batches(
        optim.with_values(config.optim, {"sam_rho": jnp.float32(0)})
        if "sam_rho" in self.hparams else config.optim, self.batch_size))
    if self.sam_sub_batches and self.batch_size % config.optim.sam_m:
      raise UserError(f"optim.sam_m={config.optim.sam_m} must divide "
                      f"train.batch_size={self.batch_size}")
    if self.batch_size % self.num_devices:
      raise UserError(
          f"train.batch_size={self.batch_size} must be divisible by the "
          f"{self.num_devices} devices each run's batch is split over (the "
          f"mesh's data axis): change it, or set train.seed_devices so "
          f"that {self.mesh.size} / seed_devices divides it")
    if self.batch_size > len(dataset.train.y):
      raise UserError(
          f"train.batch_size={self.batch_size} is larger than the training "
          f"set ({len(dataset.train.y)} examples): lower it to at most "
          f"{len(dataset.train.y)}, or give the data more examples")
    _check_labels(dataset)
    self.replicated = NamedSharding(self.mesh, P())
    self.template = jax.eval_shape(self.init_one, jax.random.PRNGKey(0))
    self.has_batch_stats = bool(jax.tree.leaves(self.template["batch_stats"]))
    self.params_template = self.template["params"]  # shapes of one run
    self.normalized_kernels = self._normalized_kernels()
    # With per-run hparams, placeholders: the state's structure is all that
    # init reads (a per-run weight decay is always in the chain).
    self.tx, _ = self._optimizer(
        {h: jnp.float32(config.optim[h]) for h in self.hparams})
    trainable, total = optim.count_trainable(config.optim, self.params_template)
    self.param_counts = {"trainable": trainable, "total": total}
    self._put_data()
    self.loop = self._choose_loop(tc.get("loop", "auto"))
    # Steps per iteration of the compiled loop (lax.scan's unroll): fewer
    # iterations, each with its loop condition (benchmarks/accelerator.py).
    self.unroll = tc.get("unroll", 1)
    if self.unroll != 1 and self.loop != "scan":
      raise UserError(f"train.unroll={self.unroll} applies to the scan loop "
                      f"only; this run steps from Python (train.loop="
                      f"{tc.get('loop', 'auto')!r}): set train.unroll=1 or "
                      "train.loop='scan'")
    # Compiled functions, built once per run-axis sharding (see _jit): a new
    # jit per call would recompile init at every IMP level.
    self._jits = {}
    self._eval_fn = jax.jit(self.evaluate_batches,
                            out_shardings=self.replicated)
    self.trace_count = 0  # times the train chunk was traced (tests: == 1)

  def _optimizer(self, values):
    """(direction transform, lr schedule) of one run whose RUN_HPARAMS
    fields take `values` (else the config's)."""
    cfg = optim.with_values(self.config.optim, values) if values else (
        self.config.optim)
    tx = optim.create_optimizer(cfg, self.template["params"],
                                self.normalized_kernels)
    if self.tx_wrapper is not None:  # e.g. optim.with_update_mask
      tx = self.tx_wrapper(tx)
    return tx, optim.learning_rate_schedule(cfg, self.config.train.steps)

  def _normalized_kernels(self) -> Optional[list]:
    """The kernels optim.decay_on='normalized' decays (None under another
    setting): `optim.normalized_kernels` probed in float32 on the first
    PROBE_EXAMPLES training examples in train mode (not the training batch:
    the answer must not depend on train.batch_size), at seed 0's init. One
    model, one answer for every run of the program. None found is a
    UserError: the run would decay nothing while recording a decay."""
    if self.config.optim.get("decay_on", "all") != "normalized":
      return None
    init = self.init_one(jax.random.PRNGKey(0))
    x = jnp.asarray(self.dataset.train.x[:PROBE_EXAMPLES])
    found = optim.normalized_kernels(
        lambda p: self._forward(p, init["batch_stats"], x, True,
                                init["rng"])[0],
        init["params"], init["rng"])
    if not found:
      raise UserError(
          "optim.decay_on='normalized': no kernel of this model is followed "
          "by a normalization that undoes its scale (doubling any kernel "
          "changes the outputs); use optim.decay_on='kernels' or 'all', or "
          "batch norm right after the kernels (model.norm='batch', "
          "model.norm_position='before')")
    logging.info("weight decay on the normalized kernels: %s",
                 ", ".join(found))
    return found

  def _run_axis(self, num_runs: int) -> Optional[str]:
    """The mesh axis of a run axis of `num_runs`: 'seed' when it divides,
    else None, replicated (e.g. 3 arms x 5 seeds on 2 seed devices)."""
    return "seed" if num_runs % self.seed_devices == 0 else None

  def run_sharding(self, num_runs: int) -> NamedSharding:
    """Where a tree with a leading run axis of `num_runs` lives."""
    axis = self._run_axis(num_runs)
    return NamedSharding(self.mesh, P(axis)) if axis else self.replicated

  def _jit(self, kind: str, num_runs: int):
    sharding = self.run_sharding(num_runs)
    key = (kind, sharding.spec)
    if key not in self._jits:
      if kind == "chunk":
        fn = jax.jit(self._train_chunk, donate_argnums=(0,),
                     out_shardings=(sharding, self.replicated),
                     static_argnames=("with_norms",))
      elif kind == "step":
        fn = jax.jit(self._train_one_step, donate_argnums=(0,),
                     out_shardings=(sharding, self.replicated),
                     static_argnames=("with_norms",))
      elif kind == "init":
        fn = jax.jit(jax.vmap(self.init_one), out_shardings=sharding,
                     compiler_options=init_compiler_options(self.mesh))
      elif kind == "scale":
        fn = jax.jit(jax.vmap(scale_kernels), out_shardings=sharding)
      elif kind == "opt_init":
        fn = jax.jit(jax.vmap(self.tx.init), out_shardings=sharding)
      else:  # "place": any run-batched tree onto the run sharding
        fn = jax.jit(lambda tree: tree, out_shardings=sharding)
      self._jits[key] = fn
    return self._jits[key]

  def place(self, tree):
    """A run-batched tree (state, masks, variables) committed to the mesh the
    way the train step expects it, so that no second compile happens."""
    num_runs = jax.tree.leaves(tree)[0].shape[0]
    return self._jit("place", num_runs)(tree)

  # ---------------------------------------------------------------------------
  # Input
  # ---------------------------------------------------------------------------
  def _put_data(self):
    ds = self.dataset
    self._x_train = distributed.to_global(ds.train.x, self.replicated)
    self._y_train = distributed.to_global(ds.train.y, self.replicated)
    self.eval_data = {}
    splits = {"test": ds.test, "validation": ds.validation}
    if self.config.train.eval_train:
      splits["train"] = ds.train
    for name, split in splits.items():
      if split is None or len(split.y) == 0:
        continue
      x, y = split.x, split.y
      if name == "train" and self.config.train.max_train_eval:
        x, y = x[:self.config.train.max_train_eval], y[:self.config.train.max_train_eval]
      self.eval_data[name] = self._padded_batches(x, y)

  def _padded_batches(self, x, y):
    """[num_batches, eval_batch, ...] arrays plus 0/1 weights for padding."""
    n = len(y)
    eb = min(self.config.train.eval_batch_size, n)
    eb = -(-eb // self.num_devices) * self.num_devices
    nb = -(-n // eb)
    pad = nb * eb - n
    xp = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
    yp = np.concatenate([y, np.zeros((pad,), y.dtype)])
    w = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    sharding = NamedSharding(self.mesh, P(None, "data"))
    return tuple(distributed.to_global(a.reshape((nb, eb) + a.shape[1:]), sharding)
                 for a in (xp, yp, w))

  def use_run_labels(self, labels):
    """Per-run training labels [R, N] (e.g. each run's own label noise, as
    `sweep --vmap` over data.label_noise gives): the train step and the
    train-split evaluation of run r read row r. Inputs stay shared."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[1] != len(self.dataset.train.y):
      raise ValueError(f"per-run labels must be [runs, {len(self.dataset.train.y)}]"
                       f", got {labels.shape}")
    self._y_train = distributed.to_global(labels, self.run_sharding(len(labels)))
    if "train" in self.eval_data:  # padded as _padded_batches pads
      xs, _, ws = self.eval_data["train"]
      nb, eb = xs.shape[:2]
      n = min(self.config.train.max_train_eval or labels.shape[1],
              labels.shape[1])
      ys = np.zeros((len(labels), nb * eb), labels.dtype)
      ys[:, :n] = labels[:, :n]
      self.eval_data["train"] = (xs, distributed.to_global(
          ys.reshape(len(labels), nb, eb), self.run_sharding(len(labels))), ws)

  # ---------------------------------------------------------------------------
  # Model & state
  # ---------------------------------------------------------------------------
  def init_one(self, key):
    k_params, k_dropout, k_run = jax.random.split(key, 3)
    dummy = jnp.zeros((1,) + tuple(self.dataset.input_shape), jnp.float32)
    variables = self.model.init({"params": k_params, "dropout": k_dropout},
                                dummy, train=False)
    return {"params": variables["params"],
            "batch_stats": variables.get("batch_stats", {}),
            "rng": k_run}

  def init_variables(self, seeds: Sequence[int],
                     init_scale: Optional[Sequence[float]] = None) -> State:
    """{params, batch_stats, rng} for each seed, stacked on the run axis.
    `init_scale` (one number per seed) multiplies each run's kernels
    (`models.scale_kernels`): runs of one program may start at different
    weight scales."""
    keys = np.stack([np.asarray(jax.random.key_data(prng.key(s)))
                     for s in seeds])
    keys = distributed.to_global(keys, self.run_sharding(len(seeds)))
    variables = self._jit("init", len(seeds))(keys)
    if init_scale is None:
      return variables
    scale = np.asarray(init_scale, np.float32).reshape(len(seeds))
    scale = distributed.to_global(scale, self.run_sharding(len(seeds)))
    return {**variables, "params": self._jit("scale", len(seeds))(
        variables["params"], scale)}

  def init_state(self, seeds: Sequence[int],
                 variables: Optional[State] = None, step: int = 0,
                 hparams: Optional[Mapping[str, Sequence[float]]] = None
                 ) -> State:
    """A fresh train state; `variables` (e.g. rewound weights) override init;
    `hparams`: {field: one value per run} of the trainer's `hparams`."""
    R = len(seeds)
    if set(hparams or {}) != set(self.hparams):
      raise ValueError(f"init_state needs values of exactly {self.hparams}, "
                       f"got {sorted(hparams or {})}")
    v = variables if variables is not None else self.init_variables(seeds)
    v = self.place({k: v[k] for k in ("params", "batch_stats", "rng")})
    opt_state = self._jit("opt_init", R)(v["params"])
    steps = distributed.to_global(np.full((R,), step, np.int32),
                                  self.run_sharding(R))
    state = {"step": steps, "params": v["params"],
             "batch_stats": v["batch_stats"], "opt_state": opt_state,
             "rng": v["rng"]}
    if self.hparams:
      state["hparams"] = distributed.to_global(
          {h: np.asarray(hparams[h], np.float32).reshape(R)
           for h in self.hparams}, self.run_sharding(R))
    return state

  def apply(self, params, batch_stats, x, train, rng=None):
    """(logits, batch_stats) of ONE run, as the train and eval steps compute
    them (an analysis that trains through its own loss calls it too, so
    train.precision holds there); in `compute_dtype` on a cast copy of the
    params (gradients flow back through the cast to the float32 params). Flax
    layers compute in their inputs' dtype, BatchNorm computes its statistics
    in float32 and keeps its running averages float32, and the logits leave
    as float32, so the loss is float32."""
    if self.compute_dtype == jnp.float32:
      return self._forward(params, batch_stats, x, train, rng)
    low = lambda a: a.astype(self.compute_dtype) if jnp.issubdtype(
        a.dtype, jnp.floating) else a
    logits, batch_stats = self._forward(jax.tree.map(low, params), batch_stats,
                                        low(x), train, rng)
    return logits.astype(jnp.float32), batch_stats

  def _forward(self, params, batch_stats, x, train, rng=None):
    variables = {"params": params}
    if self.has_batch_stats:
      variables["batch_stats"] = batch_stats
    rngs = {"dropout": rng} if rng is not None else {}
    if train and self.has_batch_stats:
      logits, new = self.model.apply(variables, x, train=True, rngs=rngs,
                                     mutable=["batch_stats"])
      return logits, new["batch_stats"]
    return self.model.apply(variables, x, train=train, rngs=rngs), batch_stats

  # ---------------------------------------------------------------------------
  # Update
  # ---------------------------------------------------------------------------
  def train_step(self, state: State, x, y, with_norms: bool = False):
    """One optimizer step of ONE run on the batch (x, y): pure, returns
    (new_state, metrics). It is the step the trainer compiles (its loop
    vmaps it over runs and gathers each batch by index first, see
    `_indexed_step`); analyses call it directly, under their own jit/vmap.

    `with_norms` adds the l2 norms of grads and updates: only on the last
    step of a chunk, where they are logged (every step, they cost ~40% of a
    LeNet step on CPU).
    """
    rng = jax.random.fold_in(state["rng"], state["step"])
    aug_rng, dropout_rng = jax.random.split(rng)
    x = self.augment(aug_rng, x)

    def loss_fn(params, x, y, rng):
      logits, batch_stats = self.apply(params, state["batch_stats"], x,
                                       train=True, rng=rng)
      return jnp.mean(self.loss_fn(logits, y)), (logits, batch_stats)

    grad_of = jax.value_and_grad(loss_fn, has_aux=True)
    sam_fn = {}  # SAM's second gradient: the loss alone, statistics dropped
    if self.sam_sub_batches:  # m-sharpness: k sub-batches, each its own ascent
      k = self.sam_sub_batches
      xs, ys = (a.reshape((k, -1) + a.shape[1:]) for a in (x, y))
      rngs = jax.random.split(dropout_rng, k)
      (losses, (logits, stats)), grads = jax.vmap(
          grad_of, in_axes=(None, 0, 0, 0))(state["params"], xs, ys, rngs)
      loss, logits = jnp.mean(losses), logits.reshape((-1,) + logits.shape[2:])
      # Each sub-batch normalized by its own statistics (as on Foret et
      # al.'s accelerators); the running averages move by their mean.
      batch_stats = jax.tree.map(lambda s: jnp.mean(s, axis=0), stats)
      sam_fn["grad_fn"] = lambda p: jax.vmap(jax.grad(
          lambda q, *b: loss_fn(q, *b)[0]))(p, xs, ys, rngs)
    else:
      (loss, (logits, batch_stats)), grads = grad_of(state["params"], x, y,
                                                     dropout_rng)
      if self.sam:
        sam_fn["grad_fn"] = jax.grad(
            lambda q: loss_fn(q, x, y, dropout_rng)[0])
    tx, schedule = (self._optimizer(state["hparams"]) if "hparams" in state
                    else (self.tx, self.schedule))
    direction, opt_state = tx.update(grads, state["opt_state"],
                                     state["params"], **sam_fn)
    if self.sam_sub_batches:  # the logged norm: the whole batch's gradient
      grads = jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)
    lr = schedule(state["step"])
    updates = jax.tree.map(lambda d: (-lr * d).astype(d.dtype), direction)
    params = optax.apply_updates(state["params"], updates)
    new_state = {"step": state["step"] + 1, "params": params,
                 "batch_stats": batch_stats, "opt_state": opt_state,
                 "rng": state["rng"]}
    if "hparams" in state:
      new_state["hparams"] = state["hparams"]
    metrics = {"loss": loss,
               "accuracy": jnp.mean(jnp.argmax(logits, -1) == y),
               # Not "lr": runs may be labelled by their optim.lr (a label
               # wins over a value of its name in metrics.jsonl).
               "learning_rate": jnp.asarray(lr, jnp.float32)}
    if with_norms:
      metrics["l2_grads"] = optim.global_norm(grads)
      metrics["l2_updates"] = optim.global_norm(updates)
    return new_state, metrics

  def _indexed_step(self, state, idx, x_all, y_all, with_norms=False):
    """`train_step` on the batch gathered by index from the device-resident
    dataset, inside the compiled loop."""
    return self.train_step(state, x_all[idx], y_all[idx], with_norms)

  def _train_chunk(self, state, idx, x_all, y_all, with_norms=True):
    """`lax.scan` of the step of every run over the rows of idx [K, R, B];
    with `with_norms`, the last step outside the scan, adding the l2 norms.
    One compile per (K, with_norms) of `scan_lengths`."""
    self.trace_count += 1
    batched = idx.shape[1] > 1
    if not batched:  # one run: no run axis inside the loop (see _step_fn)
      state, idx = _without_run_axis(state), idx[:, 0]
    step_all = self._step_fn(x_all, y_all, batched)
    scan = functools.partial(jax.lax.scan, step_all,
                             unroll=min(self.unroll, max(idx.shape[0], 1)))
    if not with_norms:
      state, metrics = scan(state, idx)
    else:
      last_step = self._step_fn(x_all, y_all, batched, with_norms=True)
      if idx.shape[0] > 1:
        state, metrics = scan(state, idx[:-1])
      state, last = last_step(state, idx[-1])
      norms = {k: last.pop(k) for k in ("l2_grads", "l2_updates")}
      if idx.shape[0] > 1:
        metrics = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]),
                               metrics, last)
      else:
        metrics = jax.tree.map(lambda b: b[None], last)
      norms["l2_params"] = (jax.vmap(optim.global_norm) if batched else
                            optim.global_norm)(state["params"])
      metrics = {**metrics, **norms}
    return (state, metrics) if batched else _with_run_axis(state, metrics)

  def _train_one_step(self, state, idx, x_all, y_all, with_norms=False):
    self.trace_count += 1
    if idx.shape[0] > 1:
      return self._step_fn(x_all, y_all, True, with_norms)(state, idx)
    return _with_run_axis(*self._step_fn(x_all, y_all, False, with_norms)(
        _without_run_axis(state), idx[0]))

  def _step_fn(self, x_all, y_all, batched, with_norms=False):
    """(state, idx) -> one optimizer step: of every run, vmapped over the
    run axis (`batched`), or of ONE run whose state and idx come without
    it. Labels shared [N] or per run [R, N] (use_run_labels), inputs shared.

    One run steps unbatched because vmapped over a run axis of size 1,
    XLA:CPU computes each kernel gradient transposed and every optimizer
    update reads it strided (LeNet-300-100: a vmapped step of one run at
    0.86-0.94x the unbatched one); with 2, 3, 4 or 8 runs it computes them
    [R, in, out] directly (jax 0.10.2's optimized HLO). The run axis is dropped outside the loop: inside, each reshape of
    the carry would copy the whole state every step."""
    per_run = y_all.ndim == 2
    one_run = lambda s, i, y: self._indexed_step(s, i, x_all, y, with_norms)
    if not batched:
      y = y_all[0] if per_run else y_all
      return lambda state, idx: one_run(state, idx, y)
    step = jax.vmap(one_run, in_axes=(0, 0, 0 if per_run else None))
    return lambda state, idx: step(state, idx, y_all)

  def _choose_loop(self, loop: str) -> str:
    """"scan" (many steps per compiled call) or "python" (one per call).

    XLA:CPU runs convolutions inside a while loop (lax.scan) several times
    slower than the same convolutions at top level (measured: MNIST-1D CNN
    12 ms/step in a scan vs 1.3-2.6 ms/step from Python), so "auto" steps
    conv models from Python on CPU and scans everywhere else (dense models on
    CPU: the scan is ~2x faster; GPU/TPU: the scan removes dispatch gaps).
    """
    if loop not in ("auto", "scan", "python"):
      raise UserError(f"train.loop={loop!r}: must be auto, scan or python")
    if loop != "auto":
      return loop
    has_conv = any(len(x.shape) > 2 and name.endswith("kernel")
                   for name, x in zip(optim.param_paths(self.params_template),
                                      jax.tree.leaves(self.params_template)))
    on_cpu = self.mesh.devices.flat[0].platform == "cpu"
    return "python" if (has_conv and on_cpu) else "scan"

  def train_steps(self, state: State, data_seeds: Sequence[int],
                  num_steps: int,
                  scans: Optional[Sequence[Tuple[int, bool]]] = None):
    """Runs `num_steps` steps; returns (state, metrics) with metrics[name]
    of shape [num_steps, R], and the l2 norms at the last step, [R].

    `scans`: the compiled calls, (length, with_norms) summing to num_steps,
    the last with norms (e.g. `scan_lengths(num_steps, trainer.chunk)`, so
    that many different step counts share a few programs); default: one
    scan of num_steps. The python loop ignores it (one step per call).

    `state` is donated to the compiled step (its buffers become the new
    state's: no second copy of it in memory): it is deleted, and reading
    it raises "Array has been deleted". Keep a copy first
    (`jax.tree.map(jnp.copy, state)`) to use the state you passed in."""
    state, parts = self._dispatch(state, data_seeds, num_steps, scans)
    return state, join_metrics(parts)

  def _dispatch(self, state: State, data_seeds: Sequence[int], num_steps: int,
                scans: Optional[Sequence[Tuple[int, bool]]] = None):
    """`train_steps`, its metrics left as the list of the compiled calls'
    (dispatched, not waited for; `fit` joins them on the host)."""
    scans = [(num_steps, True)] if scans is None else list(scans)
    if sum(k for k, _ in scans) != num_steps or not scans[-1][1]:
      raise ValueError(f"scans {scans} must sum to {num_steps} steps and end "
                       "with the norms")
    start = int(distributed.first_value(state["step"]))
    R = len(data_seeds)
    idx = batching.batch_indices(data_seeds, start, num_steps,
                                 len(self.dataset.train.y), self.batch_size)
    run_axis = self._run_axis(R)
    if self.loop == "scan":
      sharding = NamedSharding(self.mesh, P(None, run_axis, "data"))
      chunk_fn, parts, t = self._jit("chunk", R), [], 0
      for length, with_norms in scans:
        state, metrics = chunk_fn(
            state, distributed.to_global(idx[t:t + length], sharding),
            self._x_train, self._y_train, with_norms=with_norms)
        parts.append(metrics)
        t += length
      return state, parts
    row_sharding = NamedSharding(self.mesh, P(run_axis, "data"))
    step_fn = self._jit("step", R)
    per_step = []
    for t in range(num_steps):
      state, m = step_fn(state, distributed.to_global(idx[t], row_sharding),
                         self._x_train, self._y_train,
                         with_norms=t == num_steps - 1)
      per_step.append(m)
    norms = {k: per_step[-1].pop(k) for k in ("l2_grads", "l2_updates")}
    metrics = jax.tree.map(lambda *xs: jnp.stack(xs), *per_step)
    norms["l2_params"] = _params_norms(state["params"])
    return state, [{**metrics, **norms}]

  # ---------------------------------------------------------------------------
  # Evals
  # ---------------------------------------------------------------------------
  def logits(self, state: State, x):
    """ONE run's float32 logits on a batch, as evaluation computes them
    (BatchNorm with running statistics, in `train.precision`): pure; `state`
    needs only params and batch_stats."""
    return self.apply(state["params"], state["batch_stats"], x,
                      train=False)[0]

  def eval_step(self, state: State, x, y):
    """Per-example loss and 0/1 correctness of ONE run on a batch, BatchNorm
    in eval mode (running statistics): pure; `state` needs only params and
    batch_stats. `evaluate` sums it over a split."""
    logits = self.logits(state, x)
    return {"loss": self.loss_fn(logits, y),
            "correct": (jnp.argmax(logits, -1) == y).astype(jnp.float32)}

  def evaluate_batches(self, params, batch_stats, xs, ys, ws):
    """{loss, accuracy} per run (leading run axis of params/batch_stats) over
    padded batches xs [N, B, ...] with 0/1 weights ws: pure, for jit."""
    def one_run(params, batch_stats, ys):
      def body(totals, batch):
        x, y, w = batch
        out = self.eval_step({"params": params, "batch_stats": batch_stats},
                             x, y)
        return (totals[0] + jnp.sum(out["loss"] * w),
                totals[1] + jnp.sum(out["correct"] * w),
                totals[2] + jnp.sum(w)), None
      zero = jnp.zeros((), jnp.float32)
      (loss, correct, count), _ = jax.lax.scan(body, (zero, zero, zero),
                                               (xs, ys, ws))
      return {"loss": loss / count, "accuracy": correct / count}
    per_run = ys.ndim == ws.ndim + 1  # use_run_labels: [R, N, B]
    return jax.vmap(one_run, in_axes=(0, 0, 0 if per_run else None))(
        params, batch_stats, ys)

  def evaluate(self, state: State, split: str = "test") -> Dict[str, np.ndarray]:
    """{loss, accuracy} per run on a split, BatchNorm in eval mode."""
    if split not in self.eval_data:
      raise ValueError(f"no {split!r} split to evaluate "
                       f"(have {sorted(self.eval_data)})")
    out = self._eval_fn(state["params"], state["batch_stats"],
                        *self.eval_data[split])
    return {k: np.asarray(v) for k, v in distributed.fetch(out).items()}

  def evaluate_all(self, state: State) -> Dict[str, Dict[str, np.ndarray]]:
    return {split: self.evaluate(state, split) for split in self.eval_data}

  # ---------------------------------------------------------------------------
  # Loop
  # ---------------------------------------------------------------------------
  @preemption.listening()  # a SIGTERM meanwhile: stop at a chunk's end
  def fit(self, state: State, *, steps: int, data_seeds: Sequence[int],
          writer: MetricWriter, run_labels: Sequence[Mapping[str, Any]],
          checkpoint_dir: Optional[str] = None,
          snapshot_dir: Optional[str] = None,
          snapshot_steps: Sequence[int] = (),
          callbacks: Sequence[Callback] = (),
          description: str = "",
          on_divergence: str = "raise") -> FitResult:
    """Trains every run from its current step up to `steps`. `state` is
    donated, as by `train_steps`: use the returned one.

    With `checkpoint_dir`, resumes from the newest checkpoint there and saves
    every `train.checkpoint_every` steps and at the end (a finished stage is
    not retrained). States at `snapshot_steps` are kept in `snapshot_dir` for
    good (lottery-ticket rewinding needs them).

    A NaN or Inf training loss raises TrainingDiverged; with `on_divergence`
    "record" the run instead gets one row of split "diverged" (at the step
    whose loss it was, with that loss) and no row of any split after it,
    while the program's other runs train on: under vmap they are
    independent, and where divergence is a result (a step-size grid) one
    diverging run must not end the others. A run resumed with non-finite
    parameters diverged before the checkpoint, whose rows hold its row.
    """
    assert on_divergence in ("raise", "record"), on_divergence
    tc = self.config.train
    assert len(data_seeds) == len(run_labels) == state["step"].shape[0]
    checkpoints = Checkpoints(checkpoint_dir) if checkpoint_dir else None
    snapshots = (Checkpoints(snapshot_dir, max_to_keep=None)
                 if snapshot_dir and snapshot_steps else None)
    resumed_from = None
    if checkpoints is not None:
      restored = checkpoints.restore_latest(state)
      if restored is not None:
        resumed_from, state = restored
        logging.info("%sresuming from the checkpoint at step %d",
                     _prefix(description), resumed_from)
    step = int(distributed.first_value(state["step"]))
    timed_steps, timed_seconds = (checkpoints.timing(resumed_from)
                                  if checkpoints is not None else (0, 0.0))
    if checkpoints is not None:
      # Rows in (start, steps] are this fit's to write: drop those of an
      # interrupted attempt, also one killed before its first checkpoint.
      writer.rewind(_common_labels(run_labels), step, until=steps)

    def save_snapshot(step, state):
      # Durable before any later checkpoint lands: a run resumed from a
      # checkpoint past `step` never passes `step` again to save it.
      snapshots.save(step, state)
      snapshots.wait()

    if snapshots is not None and step == 0 and 0 in snapshot_steps:
      save_snapshot(0, state)
    alive = self.finite_runs(state) if on_divergence == "record" else None

    def boundaries(step):
      """The next step at which something must happen outside the scan."""
      events = [steps, step + self.chunk]
      for every in (tc.eval_every, tc.checkpoint_every,
                    *[c.every for c in callbacks]):
        if every > 0:
          events.append((step // every + 1) * every)
      events += [s for s in snapshot_steps if s > step]
      events += [s for c in callbacks for s in c.steps if s > step]
      return min(e for e in events if e > step)

    def chunks(start):
      out = []
      while start < steps:
        out.append(boundaries(start) - start)
        start += out[-1]
      return out

    # The run's chunks from step 0 (a resumed run plans as the whole one
    # did, so it runs the same programs) and from here (a start off those).
    plan = plan_scans(chunks(0) + chunks(step), self.chunk)
    t0 = time.time()
    start_step, last_log, evals = step, t0, {}
    pending = None  # metrics of the last dispatched chunk, fetched lazily
    while step < steps:
      n = boundaries(step) - step
      state, metrics = self._dispatch(state, data_seeds, n, plan[n])
      if pending is not None:
        self._log_train(writer, run_labels, *pending, alive)
      pending = (step, n, metrics)
      step += n
      at = lambda every: every > 0 and step % every == 0
      due = [at(c.every) or step in c.steps for c in callbacks]
      if at(tc.eval_every) or step == steps or at(tc.checkpoint_every) or (
          step in snapshot_steps) or any(due):
        self._log_train(writer, run_labels, *pending, alive)
        pending = None
      if at(tc.eval_every) or step == steps:
        evals = self.evaluate_all(state)
        for split, values in evals.items():
          writer.write(step, split, *_living(run_labels, values, alive))
      for c, c_due in zip(callbacks, due):
        if c_due or step == steps:
          writer.write(step, c.name, *_living(
              run_labels, c.fn(self, state, step), alive))
      if snapshots is not None and step in snapshot_steps:
        save_snapshot(step, state)
      exit_if_asked("logged", step)
      if checkpoints is not None and (at(tc.checkpoint_every) or step == steps):
        checkpoints.save(step, state)
        checkpoints.keep_timing(step, timed_steps + step - start_step,
                                timed_seconds + time.time() - t0)
        exit_if_asked("checkpointed", step, checkpoints)
      if preemption.requested():  # SIGTERM (preemption.py): save, stop
        if pending is not None:
          self._log_train(writer, run_labels, *pending, alive)
        if checkpoints is not None and not (at(tc.checkpoint_every)
                                            or step == steps):
          checkpoints.save(step, state)
          checkpoints.keep_timing(step, timed_steps + step - start_step,
                                  timed_seconds + time.time() - t0)
        self._close(writer, checkpoints, snapshots)
        raise preemption.Preempted(step, saved=checkpoints is not None)
      now = time.time()
      if now - last_log > 10 or step == steps or (evals and at(tc.eval_every)):
        rate = (step - start_step) / max(now - t0, 1e-9)
        logging.info("%s", _progress(description, step, steps, rate, evals))
        last_log = now
    if pending is not None:
      self._log_train(writer, run_labels, *pending, alive)
    wall = time.time() - t0
    if not evals:  # already finished (resumed at the end): measure again
      evals = self.evaluate_all(state)
    self._close(writer, checkpoints, snapshots)
    timed_steps += step - start_step
    timed_seconds += wall
    # None, never 0: no step of this fit is timed (resumed at its end from
    # a checkpoint with no timing behind it, e.g. a vmapped group's
    # hand-out), so its pace was not measured.
    rate = timed_steps / timed_seconds if timed_steps and timed_seconds else None
    return FitResult(state, evals, rate, timed_seconds, resumed_from)

  @staticmethod
  def _close(writer, *checkpoints):
    """The end of a fit, also one stopped for SIGTERM: the saves landed
    (close waits for them), the rows written."""
    for ck in checkpoints:
      if ck is not None:
        ck.close()
    writer.flush()

  def finite_runs(self, state: State) -> np.ndarray:
    """[R] bool: the runs whose parameters are all finite."""
    return np.array(distributed.fetch(_finite_runs(state["params"])), bool)

  def _log_train(self, writer, run_labels, start, n, parts, alive=None):
    metrics = join_metrics(distributed.fetch(parts), np)
    losses = np.asarray(metrics["loss"][:n])
    bad = ~np.isfinite(losses)
    if alive is not None:  # on_divergence="record": a row, not an error
      for r in np.flatnonzero(bad.any(0) & alive):
        t = int(np.flatnonzero(bad[:, r])[0])
        writer.write(start + t + 1, "diverged", [run_labels[r]],
                     {"loss": [losses[t, r]]})
        alive[r] = False
      bad[:] = False
    if bad.any():
      t, r = map(int, np.argwhere(bad)[0])
      # A per-run lr (hparams) is a grid value, not optim.lr, which such
      # experiments refuse (edge_of_stability refuses grad_clip too, the
      # step being plain GD): name the run's own lr, and only that.
      what = diverged_text(
          losses[t, r], start + t + 1, run_labels[r],
          "lower this run's lr (its grid value, not optim.lr)"
          if "lr" in self.hparams else lower_lr(self.config))
      raise TrainingDiverged(
          f"{what}, and rerun in a new --workdir or with --overwrite (this "
          "one holds the diverged run)", what)
    # Loss, accuracy, learning rate: means over the chunk; l2 norms: at its last step.
    values = {k: np.asarray(v[:n]).mean(0) if not k.startswith("l2_")
              else np.asarray(v) for k, v in metrics.items()}
    writer.write(start + n, "minibatch", *_living(run_labels, values, alive))

  def restore_snapshot(self, snapshot_dir: str, step: int, target: State) -> State:
    # Only a read: a missing snapshot is restore_kept's one line, and the
    # folder is not created for it (the workdir stays as it was).
    ck = Checkpoints(snapshot_dir, max_to_keep=None, create=False)
    try:
      return ck.restore_kept(step, target)
    finally:
      ck.close()


def lower_lr(config) -> str:
  return (f"lower optim.lr (now {config.optim.lr}) or add optim.grad_clip")


def diverged_text(loss, step: int, labels: Mapping[str, Any],
                  lower: str) -> str:
  """What a diverged run's error says: the loss, the step, the run by its
  labels in words ('width 16, seed 0', not a dict), and `lower`, the way
  out."""
  which = ", ".join(f"{k} {v}" for k, v in dict(labels).items())
  return f"loss became {loss} at step {step} of the run with {which}; {lower}"


# Compiled, not eager: eagerly each of its ops on the sharded parameters is
# a program of its own with its own collectives (where a bn_only run on 8
# fake CPU devices of a loaded 2-core machine once waited past XLA:CPU's
# fixed 40 s rendezvous timeout and aborted); compiled, one program.
_params_norms = jax.jit(jax.vmap(optim.global_norm))


@jax.jit
def _finite_runs(params):
  leaves = [jnp.isfinite(l).reshape(l.shape[0], -1).all(1)
            for l in jax.tree.leaves(params)]
  return functools.reduce(jnp.logical_and, leaves)


def _living(run_labels, values, alive):
  """(labels, values) of the runs not diverged (all where `alive` is None)."""
  if alive is None:
    return run_labels, values
  keep = np.flatnonzero(alive)
  return ([run_labels[r] for r in keep],
          {k: np.asarray(v)[keep] for k, v in values.items()})


def _without_run_axis(state):
  """ONE run's state from a run-batched one of a single run."""
  return jax.tree.map(lambda a: a[0], state)


def _with_run_axis(state, metrics):
  """A single run's (state, metrics) with the run axis back: state leaves
  [1, ...], metrics [..., 1] (per step) or [1] (at the end)."""
  return (jax.tree.map(lambda a: a[None], state),
          jax.tree.map(lambda v: jnp.expand_dims(v, -1), metrics))


def join_metrics(parts, xp=jnp):
  """The metrics of consecutive calls as one: per-step values [steps, R]
  concatenated, the l2 norms (of the last step) from the last call."""
  if len(parts) == 1:
    return parts[0]
  return {k: v if k.startswith("l2_") else
          xp.concatenate([p[k] for p in parts])
          for k, v in parts[-1].items()}


def exit_if_asked(point: str, step: int, checkpoints=None):
  """Kill-point tests (tests/test_resume.py): with JAXUNKNOWNS_EXIT_AT set to
  POINT:STEP, the process ends here at once, with no cleanup, as kill -9
  would end it (after the checkpoint being saved, if any, has landed);
  set to sigterm@POINT:STEP, the process sends itself SIGTERM there, as a
  preempted machine's notice (preemption.py)."""
  asked = os.environ.get("JAXUNKNOWNS_EXIT_AT")
  if asked == f"{point}:{step}":
    if checkpoints is not None:
      checkpoints.wait()
    os._exit(137)  # pylint: disable=protected-access
  if asked == f"sigterm@{point}:{step}":  # a preemption notice, right here
    os.kill(os.getpid(), signal.SIGTERM)


def _common_labels(run_labels) -> Dict[str, Any]:
  common = dict(run_labels[0])
  for labels in run_labels[1:]:
    common = {k: v for k, v in common.items() if labels.get(k) == v}
  common.pop("seed", None)
  return common


def _prefix(description):
  return f"[{description}] " if description else ""


def _progress(description, step, steps, rate, evals) -> str:
  eta = (steps - step) / rate if rate > 0 else float("nan")
  parts = [f"{_prefix(description)}step {step}/{steps}",
           f"{rate:.0f} steps/s", f"ETA {eta:.0f}s"]
  for split in ("train", "validation", "test"):
    if split in evals:
      parts.append(f"{split} acc {format_stats(evals[split]['accuracy'], 100)}%")
  return " | ".join(parts)
