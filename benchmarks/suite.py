r"""The benchmark table (issue 7): every row a ratio measured in this one run.

  python benchmarks/suite.py [--steps=3000] [--repeats=3]
      [--skip=torch,seeds,imp,pipeline,sweep] [--out=FILE.json]
      [--torch_compile_mode=MODE] [--torch_mkl_avx512]

Rows:
  1. LeNet-300-100, Adam 1.2e-3, batch 60 (Frankle & Carbin's setting), steps/s
     of our trainer vs a bare jit(lax.scan) loop with no framework (our
     overhead) and vs three PyTorch loops of the same model, optimizer, batch
     and data (skipped with a message if torch is not installed): the eager
     loop OpenLTH runs, the fastest eager loop (fused Adam, indices drawn per
     chunk), and torch.compile of the whole step (see `torch_loops`). The
     trainer, the bare loop and each PyTorch loop alternate `--repeats`
     times; each ratio's median and spread over the repeats is printed. Also
     the trainer with an IMP pruning mask in the optimizer (its cost).
  2. Seed batching: S = 1, 4, 8, 32 MNIST-1D MLP seeds in one vmapped program
     vs S sequential runs (seed-steps/s ratio).
  3. The default `configs/imp.py` end to end (wall time, compile included),
     and one IMP level of LeNet-300-100 on Fashion-MNIST (15 runs: 5 seeds x
     ticket + 2 controls) with the projected time of the whole Frankle &
     Carbin study (20 levels, 50K iterations) on this machine.
  4. The input pipeline (batch indices for a chunk, built on the host and
     sent to the device) vs the training it feeds, in examples/s.
  5. A sweep of 8 learning rates of the MNIST-1D MLP as one vmapped program
     (per-run lr, `sweep --vmap`) vs 8 sequential runs: run-steps/s
     (compile excluded) and the wall time of the whole sweep (build and
     compile included).
Compile time is excluded from every throughput (each path is warmed up
first). Accelerator rows (ResNet-20 images/s, the whole study on one GPU)
are benchmarks/accelerator.py's; their results are in benchmarks/RESULTS.md.
"""

import functools
import json
import os
import platform
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from jaxunknowns import batching, config_defaults, optim, pruning
from jaxunknowns.data import Dataset, Split, load_dataset
from jaxunknowns.models import create_model
from jaxunknowns.trainer import Trainer

import timing  # benchmarks/timing.py

_STEPS = flags.DEFINE_integer("steps", 3000, "Timed steps per throughput figure.")
_SEEDS = flags.DEFINE_list("seeds", ["1", "4", "8", "32"], "Seed counts of row 2.")
_SKIP = flags.DEFINE_list("skip", [], "Rows to skip: torch (row 1's PyTorch "
                          "loops), seeds (row 2), imp, pipeline, sweep.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Alternating repetitions of "
                                "row 1 (trainer, bare scan, PyTorch loops).")
_OUT = flags.DEFINE_string("out", "", "Also write the figures to this JSON file.")
_TORCH_COMPILE_MODE = flags.DEFINE_string(
    "torch_compile_mode", "", "torch.compile mode of the compiled PyTorch row "
    "('' = default; max-autotune-no-cudagraphs measured no faster here).")
_TORCH_MKL_AVX512 = flags.DEFINE_bool(
    "torch_mkl_avx512", False, "Run under an LD_PRELOAD shim that makes MKL "
    "take its AVX-512 code path on AMD CPUs (MKL picks AVX2 there: half "
    "the float32 matmul rate of XLA on an AVX-512 EPYC). Needs a C compiler; "
    "JAX does not use MKL.")
_SHIM_ENV = "JAXUNKNOWNS_MKL_SHIM"


# ---------------------------------------------------------------------------
# Timing helpers
# ---------------------------------------------------------------------------
time_trainer = timing.trainer_steps_per_second


def lenet_config():
  c = config_defaults.base_config()
  c.model.name = "lenet_300_100"
  c.optim.name, c.optim.lr = "adam", 1.2e-3
  c.train.batch_size = 60
  c.train.log_every = 1000
  c.seeds = 1
  return c


def random_mnist_shaped(n_train=60000):
  """Random 28x28 data: throughput does not depend on the pixel values."""
  rng = np.random.default_rng(0)
  split = lambda n: Split(rng.normal(size=(n, 28, 28, 1)).astype(np.float32),
                          rng.integers(0, 10, n).astype(np.int32))
  return Dataset(name="random28", num_classes=10, input_shape=(28, 28, 1),
                 train=split(n_train), test=split(1000))


# ---------------------------------------------------------------------------
# Row 1: LeNet against a bare scan and against PyTorch
# ---------------------------------------------------------------------------
def bare_scan_steps_per_s(dataset, config, steps):
  """The same model, optimizer and batch in a plain jit(lax.scan) loop."""
  model = create_model(config.model, dataset.num_classes)
  x_all, y_all = jnp.asarray(dataset.train.x), jnp.asarray(dataset.train.y)
  params = model.init(jax.random.PRNGKey(0), x_all[:1], train=False)["params"]
  tx = optax.adam(config.optim.lr)

  @jax.jit
  def run(params, opt_state, idx):
    def body(carry, i):
      params, opt_state = carry
      def loss_fn(p):
        logits = model.apply({"params": p}, x_all[i], train=True)
        return optax.softmax_cross_entropy_with_integer_labels(
            logits, y_all[i]).mean()
      grads = jax.grad(loss_fn)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None
    return jax.lax.scan(body, (params, opt_state), idx)[0]

  chunk = config.train.log_every
  rng = np.random.default_rng(0)
  idx = lambda: jnp.asarray(rng.integers(0, len(dataset.train.y),
                                         (chunk, config.train.batch_size)))
  carry = run(params, tx.init(params), idx())
  jax.block_until_ready(carry)
  t0 = time.perf_counter()
  done = 0
  while done < steps:
    carry = run(*carry, idx())
    done += chunk
  jax.block_until_ready(carry)
  return done / (time.perf_counter() - t0)


def matmul_gflops(product, n=1024, reps=20):
  """float32 rate of `product()`, an n^3 matrix product (the ceiling each
  framework's matrix products reach on this machine)."""
  jax.block_until_ready(product())
  t0 = time.perf_counter()
  for _ in range(reps):
    out = product()
  jax.block_until_ready(out)
  return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def torch_loops(dataset, config):
  """The PyTorch baselines of row 1, built and warmed up (compile and warm-up
  excluded from what they time). Same model (LeNet-300-100, nn.Linear's
  init), optimizer (Adam, the config's lr and torch's defaults otherwise),
  batch and data as the trainer. Returns [(key, label, steps_per_s(steps))]:

    openlth  the eager loop as OpenLTH writes it: a random batch drawn each
             step, `opt.zero_grad()`, forward, `loss.backward()`, `opt.step()`
             with torch.optim.Adam's default (for-loop) implementation.
    eager    the fastest eager loop measured here: batch indices drawn per
             chunk of `log_every` steps (as the trainer and bare scan do),
             `Adam(fused=True)` (one kernel for all parameters; foreach where
             fused is not supported), `zero_grad(set_to_none=True)`,
             `F.cross_entropy`, no `.item()`.
    compile  `torch.compile` of the whole step as one graph: batch gather,
             forward, loss, backward (`torch.func.grad` of a
             `functional_call`) and Adam's update (torch.optim.Adam's
             arithmetic, written out: lerp, addcmul, bias corrections,
             addcdiv) in one compiled function, mode `--torch_compile_mode`.
  """
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  n = len(dataset.train.y)
  x = torch.from_numpy(dataset.train.x.reshape(n, -1))
  y = torch.from_numpy(dataset.train.y.astype(np.int64))
  lr, batch, chunk = config.optim.lr, config.train.batch_size, config.train.log_every

  def lenet():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(784, 300), torch.nn.ReLU(),
        torch.nn.Linear(300, 100), torch.nn.ReLU(), torch.nn.Linear(100, 10))

  def per_chunk(run_chunk):
    """steps/s of `run_chunk(idx)` over chunks of `chunk` steps; the indices
    are drawn inside the timed loop, as the bare scan's are."""
    def steps_per_s(steps):
      t0 = time.perf_counter()
      done = 0
      while done < steps:
        run_chunk(torch.randint(0, n, (chunk, batch)))
        done += chunk
      return done / (time.perf_counter() - t0)
    return steps_per_s

  # openlth: the loop of the earlier tables, unchanged.
  model_a = lenet()
  opt_a = torch.optim.Adam(model_a.parameters(), lr=lr)
  loss_a = torch.nn.CrossEntropyLoss()

  def openlth_step():
    i = torch.randint(0, n, (batch,))
    opt_a.zero_grad()
    loss = loss_a(model_a(x[i]), y[i])
    loss.backward()
    opt_a.step()

  def openlth(steps):
    t0 = time.perf_counter()
    for _ in range(steps):
      openlth_step()
    return steps / (time.perf_counter() - t0)

  # eager: the fastest eager loop.
  model_b = lenet()
  try:
    opt_b, adam_b = torch.optim.Adam(model_b.parameters(), lr=lr, fused=True), "fused"
  except (RuntimeError, ValueError):  # Fused Adam needs torch >= 2.4 on CPU.
    opt_b, adam_b = torch.optim.Adam(model_b.parameters(), lr=lr, foreach=True), "foreach"

  def eager_chunk(idx):
    for i in idx:
      opt_b.zero_grad(set_to_none=True)
      F.cross_entropy(model_b(x[i]), y[i]).backward()
      opt_b.step()

  # compile: the whole step in one compiled function.
  model_c = lenet()
  names = [k for k, _ in model_c.named_parameters()]
  params = [p.detach().clone() for p in model_c.parameters()]
  moments = ([torch.zeros_like(p) for p in params],
             [torch.zeros_like(p) for p in params])
  count = torch.zeros(())
  beta1, beta2, eps = 0.9, 0.999, 1e-8  # torch.optim.Adam's defaults.

  def loss_c(ps, i):
    logits = torch.func.functional_call(model_c, dict(zip(names, ps)), (x[i],))
    return F.cross_entropy(logits, y[i])

  mode = _TORCH_COMPILE_MODE.value or None

  @torch.compile(mode=mode)
  def compiled_step(ps, m1, m2, count, i):
    grads = torch.func.grad(loss_c)(ps, i)
    count.add_(1)
    step_size = lr / (1 - beta1 ** count)
    bias2_sqrt = (1 - beta2 ** count).sqrt()
    for p, m, v, g in zip(ps, m1, m2, grads):
      m.lerp_(g, 1 - beta1)
      v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
      p.sub_(step_size * m / (v.sqrt() / bias2_sqrt + eps))

  def compile_chunk(idx):
    for i in idx:
      compiled_step(params, *moments, count, i)

  draw = lambda k: torch.randint(0, n, (k, batch))
  loops = [("openlth", "eager, OpenLTH's loop", openlth,
            lambda: openlth(200)),
           ("eager", f"eager, Adam {adam_b}, best", per_chunk(eager_chunk),
            lambda: eager_chunk(draw(200))),
           ("compile", f"torch.compile({mode or 'default'}) step",
            per_chunk(compile_chunk), lambda: compile_chunk(draw(200)))]
  warmup = {}
  for key, _, _, warm in loops:  # Compile and warm up: 200 steps each.
    t0 = time.perf_counter()
    warm()
    warmup[key] = time.perf_counter() - t0
  loops = [loop[:3] for loop in loops]
  a = torch.randn(1024, 1024)
  return loops, warmup, {"version": torch.__version__,
                         "threads": torch.get_num_threads(),
                         "cpu_capability": getattr(
                             torch.backends.cpu, "get_cpu_capability",
                             lambda: "?")(),
                         "matmul_1024_gflops": matmul_gflops(lambda: a @ a),
                         "adam_eager": adam_b, "compile_mode": mode or "default",
                         "mkl_avx512_shim": bool(os.environ.get(_SHIM_ENV))}


def row_lenet(results, steps):
  data = random_mnist_shaped()
  c = lenet_config()
  model = create_model(c.model, 10)
  trainer = Trainer(c, data, model)
  loops, torch_info = [], None
  if "torch" in _SKIP.value:
    skipped = "skipped (--skip=torch)"
  else:
    try:
      loops, warmup, torch_info = torch_loops(data, c)
      skipped = ""
    except ImportError:
      skipped = "skipped: torch is not installed (pip install torch)"
  # Alternating, so that every side sees the same load (the machine is
  # shared): trainer, bare scan, then each PyTorch loop, `--repeats` times.
  reps = []
  for _ in range(_REPEATS.value):
    rep = {"trainer": time_trainer(trainer, [0], steps),
           "bare": bare_scan_steps_per_s(data, c, steps)}
    for key, _, rate in loops:
      rep[key] = rate(steps)
    reps.append(rep)
  med = lambda k: float(np.median([r[k] for r in reps]))
  ratios = lambda k: [r["trainer"] / r[k] for r in reps]
  ours, bare = med("trainer"), med("bare")
  masked = time_trainer(Trainer(c, data, model, tx_wrapper=functools.partial(
      optim.with_update_mask, initial_mask=pruning.ones_mask)), [0], steps)
  row = {"trainer": ours, "bare_scan": bare, "trainer_with_mask": masked,
         "trainer_over_bare_per_repeat": ratios("bare"),
         "per_repeat": reps}
  fmt = lambda rs: ", ".join(f"{r:.2f}" for r in rs)
  a, mm = jnp.ones((1024, 1024), jnp.float32), jax.jit(jnp.matmul)
  row["jax_matmul_1024_gflops"] = matmul_gflops(lambda: mm(a, a))
  print("\n1. LeNet-300-100, Adam, batch 60 (steps/s; medians of "
        f"{len(reps)} alternating repeats; ratio: median (min..max; repeats))")
  print(f"   {'jaxunknowns trainer':38s} {ours:8.0f}")
  rs = ratios("bare")
  print(f"   {'bare jit(lax.scan) loop':38s} {bare:8.0f}   trainer/bare = "
        f"{np.median(rs):.2f} ({min(rs):.2f}..{max(rs):.2f}; {fmt(rs)})")
  print(f"   {'trainer + IMP pruning mask':38s} {masked:8.0f}   mask cost = "
        f"{100 * (1 - masked / ours):+.1f}%")
  if skipped:
    print(f"   {'PyTorch loops':38s} {skipped}")
  else:
    print(f"   PyTorch {torch_info['version']}, {torch_info['threads']} threads, "
          f"CPU capability {torch_info['cpu_capability']}, MKL AVX-512 shim "
          f"{'on' if torch_info['mkl_avx512_shim'] else 'off'}; warm-up/compile "
          + ", ".join(f"{k} {v:.1f} s" for k, v in warmup.items()))
    print(f"   1024^3 float32 matmul: JAX {row['jax_matmul_1024_gflops']:.0f}, "
          f"PyTorch {torch_info['matmul_1024_gflops']:.0f} GFLOP/s")
    row["torch_info"], row["torch_warmup_s"] = torch_info, warmup
    for key, label, _ in loops:
      rate, rs = med(key), ratios(key)
      row[f"torch_{key}"] = rate
      row[f"trainer_over_torch_{key}_per_repeat"] = rs
      print(f"   {'PyTorch ' + label:38s} {rate:8.0f}   trainer/PyTorch = "
            f"{np.median(rs):.2f} ({min(rs):.2f}..{max(rs):.2f}; {fmt(rs)})")
  results["lenet"] = row


# ---------------------------------------------------------------------------
# Row 2: seed batching
# ---------------------------------------------------------------------------
def row_seed_batching(results, steps):
  c = config_defaults.base_config()  # MNIST-1D MLP 40-100-100-10, Adam, batch 100.
  c.train.log_every = 500
  data = load_dataset(c.data)
  model = create_model(c.model, data.num_classes)
  single = time_trainer(Trainer(c, data, model), [0], steps)
  rows = {}
  print("\n2. MNIST-1D MLP 40-100-100-10, Adam, batch 100: S seeds in one "
        "program vs S sequential runs (seed-steps/s)")
  for S in map(int, _SEEDS.value):
    c.seeds = S
    batched = S * time_trainer(Trainer(c, data, model), list(range(S)),
                               max(steps // S, c.train.log_every))
    rows[S] = {"batched_seed_steps_per_s": batched, "sequential": single,
               "ratio": batched / single}
    print(f"   S = {S:3d}: one program {batched:9.0f}   sequential {single:8.0f}"
          f"   ratio = {batched / single:.2f}x")
  results["seed_batching"] = rows


# ---------------------------------------------------------------------------
# Row 3: IMP
# ---------------------------------------------------------------------------
def row_imp(results, steps):
  from jaxunknowns.config_loading import load_config  # pylint: disable=g-import-not-at-top
  from jaxunknowns.main import run  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    t0 = time.time()
    summary = run(load_config("configs/imp.py"), os.path.join(tmp, "imp"))
    default_wall = time.time() - t0
  last = summary["levels"][-1]
  print("\n3. Lottery tickets")
  print(f"   configs/imp.py end to end ({summary['pruning']['levels'] + 1} "
        f"levels, compile included): {default_wall:.0f} s; last level "
        f"{100 * last['weights_remaining']:.1f}% weights, ticket "
        f"{100 * last['test_accuracy']['mean']:.1f}%")
  # One level of the LeNet study: 15 masked runs in one program.
  config = load_config("configs/imp.py:lenet_fashion")
  try:
    data = load_dataset(config.data)
  except Exception as e:  # pylint: disable=broad-except
    print(f"   LeNet IMP level skipped: {e}")
    results["imp"] = {"default_wall_s": default_wall}
    return
  model = create_model(config.model, data.num_classes)
  trainer = Trainer(config, data, model, tx_wrapper=functools.partial(
      optim.with_update_mask, initial_mask=pruning.ones_mask))
  level_rate = time_trainer(trainer, list(range(15)), steps)
  dense_rate = time_trainer(trainer, list(range(5)), steps)
  per_level = 50000 / level_rate
  study = 50000 / dense_rate + 20 * per_level
  print(f"   LeNet-300-100 IMP level on Fashion-MNIST, 15 runs in one program: "
        f"{level_rate:.0f} steps/s = {15 * level_rate:.0f} run-steps/s")
  print(f"   projected Frankle & Carbin study here (20 levels x 5 seeds x 3 "
        f"arms, 50K it): {study / 3600:.1f} h ({per_level / 60:.1f} min per "
        f"level, evals excluded)")
  results["imp"] = {"default_wall_s": default_wall,
                    "lenet_level_steps_per_s": level_rate,
                    "lenet_dense_steps_per_s": dense_rate,
                    "projected_study_s": study}


# ---------------------------------------------------------------------------
# Row 4: input pipeline
# ---------------------------------------------------------------------------
def row_pipeline(results, steps):
  """What the host does per chunk (index generation + transfer) vs the
  examples/s the training consumes."""
  c = lenet_config()
  data = random_mnist_shaped()
  trainer = Trainer(c, data, create_model(c.model, 10))
  seeds = list(range(8))
  chunk = c.train.log_every
  batching.batch_indices(seeds, 0, chunk, len(data.train.y), c.train.batch_size)
  t0 = time.perf_counter()
  n = 0
  start = 0
  while n < max(steps, 4 * chunk):
    idx = batching.batch_indices(seeds, start, chunk, len(data.train.y),
                                 c.train.batch_size)
    jax.block_until_ready(jax.device_put(idx))
    n += chunk
    start += chunk
  input_rate = n * len(seeds) * c.train.batch_size / (time.perf_counter() - t0)
  train_rate = time_trainer(trainer, seeds, steps) * len(seeds) * c.train.batch_size
  print("\n4. Input pipeline vs training (LeNet, 8 runs, batch 60; examples/s)")
  print(f"   batch indices built + sent   {input_rate:12.0f}")
  print(f"   training consumes            {train_rate:12.0f}   "
        f"input/training = {input_rate / train_rate:.0f}x")
  results["pipeline"] = {"input_examples_per_s": input_rate,
                         "train_examples_per_s": train_rate}


# ---------------------------------------------------------------------------
# Row 5: hyperparameters as a run axis
# ---------------------------------------------------------------------------
def row_lr_sweep(results, steps, num_lrs=8):
  c = config_defaults.base_config()  # MNIST-1D MLP 40-100-100-10, Adam, batch 100.
  c.train.log_every = 500
  data = load_dataset(c.data)
  model = create_model(c.model, data.num_classes)
  lrs = [float(lr) for lr in np.geomspace(1e-3, 3e-2, num_lrs)]
  steps = max(steps // c.train.log_every, 1) * c.train.log_every

  def sweep_wall(together: bool):
    """Wall time of the whole sweep: build, compile, `steps` steps."""
    t0 = time.perf_counter()
    if together:
      trainer = Trainer(c, data, model, hparams=("lr",))
      state = trainer.init_state([0] * num_lrs, hparams={"lr": lrs})
      state, _ = trainer.train_steps(state, [0] * num_lrs, steps)
      jax.block_until_ready(state)
    else:
      for lr in lrs:
        c.optim.lr = lr
        trainer = Trainer(c, data, model)
        state, _ = trainer.train_steps(trainer.init_state([0]), [0], steps)
        jax.block_until_ready(state)
    return time.perf_counter() - t0

  together_rate = num_lrs * time_trainer(
      Trainer(c, data, model, hparams=("lr",)), [0] * num_lrs, steps,
      hparams={"lr": lrs})
  c.optim.lr = lrs[0]
  single_rate = time_trainer(Trainer(c, data, model), [0], steps)
  wall_together, wall_apart = sweep_wall(True), sweep_wall(False)
  print(f"\n5. MNIST-1D MLP, Adam, batch 100: {num_lrs} learning rates "
        f"({lrs[0]:g}..{lrs[-1]:g}) as one vmapped program vs {num_lrs} "
        f"sequential runs")
  print(f"   run-steps/s: one program {together_rate:8.0f}   sequential "
        f"{single_rate:8.0f}   ratio = {together_rate / single_rate:.2f}x")
  print(f"   whole sweep of {steps} steps, compile included: one program "
        f"{wall_together:.1f} s   sequential {wall_apart:.1f} s   ratio = "
        f"{wall_apart / wall_together:.2f}x")
  results["lr_sweep"] = {"lrs": lrs, "steps": steps,
                         "vmapped_run_steps_per_s": together_rate,
                         "sequential_run_steps_per_s": single_rate,
                         "vmapped_wall_s": wall_together,
                         "sequential_wall_s": wall_apart}


def reexec_with_mkl_shim():
  """Restarts this process with LD_PRELOAD of a two-line shim that answers
  MKL's "is this an Intel CPU?" with yes, so that MKL dispatches its AVX-512
  kernels on AMD CPUs (a known workaround; it changes only which of MKL's
  kernels run). The shim must be loaded before MKL, hence the restart."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  folder = tempfile.mkdtemp(prefix="mkl_shim_")
  src, lib = os.path.join(folder, "shim.c"), os.path.join(folder, "shim.so")
  with open(src, "w") as f:
    f.write("int mkl_serv_intel_cpu_true(void) { return 1; }\n")
  try:
    subprocess.run(["cc", "-shared", "-fPIC", "-o", lib, src], check=True)
  except (OSError, subprocess.CalledProcessError) as e:
    print(f"--torch_mkl_avx512: could not build the shim ({e}); running "
          "without it")
    return
  env = dict(os.environ, **{_SHIM_ENV: lib})
  env["LD_PRELOAD"] = ":".join(filter(None, [lib, env.get("LD_PRELOAD")]))
  os.execve(sys.executable, [sys.executable] + sys.argv, env)


def main(argv):
  if _TORCH_MKL_AVX512.value and not os.environ.get(_SHIM_ENV):
    reexec_with_mkl_shim()
  del argv
  steps = _STEPS.value
  dev = jax.devices()[0]
  results = {"device": f"{dev.platform} {dev.device_kind}",
             "devices": jax.device_count(), "cpu_count": os.cpu_count(),
             "jax": jax.__version__, "python": platform.python_version(),
             "date": time.strftime("%Y-%m-%d %H:%M"), "steps": steps,
             "load_average": os.getloadavg()}
  print(f"jaxunknowns benchmark suite: {results['device']} x {jax.device_count()}, "
        f"{os.cpu_count()} CPUs, jax {jax.__version__}, {results['date']}, "
        f"load average {results['load_average'][0]:.1f}")
  row_lenet(results, steps)
  if "seeds" not in _SKIP.value:
    row_seed_batching(results, steps)
  if "imp" not in _SKIP.value:
    row_imp(results, steps)
  if "pipeline" not in _SKIP.value:
    row_pipeline(results, steps)
  if "sweep" not in _SKIP.value:
    row_lr_sweep(results, steps)
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  app.run(main)
