r"""The benchmark table (issue 7): every row a ratio measured in this one run.

  python benchmarks/suite.py [--steps=3000] [--repeats=3]
      [--skip=torch,imp,pipeline,sweep] [--out=FILE.json]

Rows:
  1. LeNet-300-100, Adam 1.2e-3, batch 60 (Frankle & Carbin's setting), steps/s
     of our trainer vs a plain eager PyTorch loop of the same model, optimizer
     and batch (the loop OpenLTH runs; skipped with a message if torch is not
     installed), vs a bare jit(lax.scan) loop with no framework (our
     overhead: trainer and bare loop alternate `--repeats` times, the
     spread of the ratio is printed), and with an IMP pruning mask in the
     optimizer (its cost).
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
_SKIP = flags.DEFINE_list("skip", [], "Rows to skip: torch, imp, pipeline, "
                          "sweep.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Alternating repetitions of "
                                "the trainer vs bare-scan comparison.")
_OUT = flags.DEFINE_string("out", "", "Also write the figures to this JSON file.")


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


def torch_steps_per_s(dataset, config, steps):
  """An eager PyTorch loop of LeNet-300-100 as OpenLTH writes it: tensors in
  memory, a random batch each step, forward, backward, Adam step."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  x = torch.from_numpy(dataset.train.x.reshape(len(dataset.train.y), -1))
  y = torch.from_numpy(dataset.train.y.astype(np.int64))
  model = torch.nn.Sequential(
      torch.nn.Linear(784, 300), torch.nn.ReLU(),
      torch.nn.Linear(300, 100), torch.nn.ReLU(), torch.nn.Linear(100, 10))
  opt = torch.optim.Adam(model.parameters(), lr=config.optim.lr)
  loss_fn = torch.nn.CrossEntropyLoss()
  batch = config.train.batch_size

  def step():
    i = torch.randint(0, len(y), (batch,))
    opt.zero_grad()
    loss = loss_fn(model(x[i]), y[i])
    loss.backward()
    opt.step()

  for _ in range(200):  # warm-up
    step()
  t0 = time.perf_counter()
  for _ in range(steps):
    step()
  return steps / (time.perf_counter() - t0), torch.__version__, torch.get_num_threads()


def row_lenet(results, steps):
  data = random_mnist_shaped()
  c = lenet_config()
  model = create_model(c.model, 10)
  trainer = Trainer(c, data, model)
  # Alternating, so that both sides see the same load (the machine is shared).
  pairs = [(time_trainer(trainer, [0], steps),
            bare_scan_steps_per_s(data, c, steps))
           for _ in range(_REPEATS.value)]
  ratios = [a / b for a, b in pairs]
  ours = float(np.median([a for a, _ in pairs]))
  bare = float(np.median([b for _, b in pairs]))
  masked = time_trainer(Trainer(c, data, model, tx_wrapper=functools.partial(
      optim.with_update_mask, initial_mask=pruning.ones_mask)), [0], steps)
  row = {"trainer": ours, "bare_scan": bare, "trainer_with_mask": masked,
         "trainer_over_bare_per_repeat": ratios}
  print("\n1. LeNet-300-100, Adam, batch 60 (steps/s; medians of "
        f"{len(pairs)} alternating repeats)")
  print(f"   jaxunknowns trainer           {ours:8.0f}")
  print(f"   bare jit(lax.scan) loop       {bare:8.0f}   trainer/bare = "
        f"{np.median(ratios):.2f} (repeats: "
        f"{', '.join(f'{r:.2f}' for r in ratios)})")
  print(f"   trainer + IMP pruning mask    {masked:8.0f}   mask cost = "
        f"{100 * (1 - masked / ours):+.1f}%")
  if "torch" in _SKIP.value:
    print("   PyTorch eager loop            skipped (--skip=torch)")
  else:
    try:
      torch_rate, version, threads = torch_steps_per_s(data, c, steps)
      row.update(torch=torch_rate, torch_version=version, torch_threads=threads)
      print(f"   PyTorch {version} eager loop  {torch_rate:8.0f}   "
            f"trainer/PyTorch = {ours / torch_rate:.2f}  ({threads} threads)")
    except ImportError:
      print("   PyTorch eager loop            skipped: torch is not installed "
            "(pip install torch)")
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


def main(argv):
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
