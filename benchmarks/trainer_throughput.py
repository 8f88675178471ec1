r"""Trainer throughput, measured side by side in one process (not a test).

  python benchmarks/trainer_throughput.py [--steps=2000] [--seeds=8]

Prints:
  1. LeNet-300-100 (Adam, batch 60, 784 inputs) steps/s through the real
     trainer, and through a bare `lax.scan` loop with no framework (our
     overhead), and with an IMP pruning mask in the optimizer (the mask's cost).
  2. Seed batching: S MNIST-1D MLP seeds in one vmapped program vs S
     sequential runs, and the ratio.
Compile time is excluded: every path is warmed up with one call first.
"""

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from jaxunknowns import config_defaults, pruning
from jaxunknowns.data import Dataset, Split, load_dataset
from jaxunknowns.models import create_model
from jaxunknowns.trainer import Trainer

_STEPS = flags.DEFINE_integer("steps", 2000, "Timed steps per measurement.")
_SEEDS = flags.DEFINE_integer("seeds", 8, "Seeds for the batching figure.")


def lenet_config():
  c = config_defaults.base_config()
  c.model.name = "lenet_300_100"
  c.optim.name, c.optim.lr = "adam", 1.2e-3
  c.train.batch_size = 60
  c.train.log_every = 1000
  return c


def fake_mnist_shaped(n_train=60000):
  """Random 28x28 data: throughput does not depend on the pixel values."""
  rng = np.random.default_rng(0)
  split = lambda n: Split(rng.normal(size=(n, 28, 28, 1)).astype(np.float32),
                          rng.integers(0, 10, n).astype(np.int32))
  return Dataset(name="random28", num_classes=10, input_shape=(28, 28, 1),
                 train=split(n_train), test=split(1000))


def time_trainer(trainer, seeds, steps):
  state = trainer.init_state(seeds)
  chunk = trainer.chunk
  state, _ = trainer.train_steps(state, seeds, chunk)  # Compile.
  jax.block_until_ready(state)
  t0 = time.perf_counter()
  done = 0
  while done < steps:
    state, _ = trainer.train_steps(state, seeds, chunk)
    done += chunk
  jax.block_until_ready(state)
  return done / (time.perf_counter() - t0)


def time_bare_scan(dataset, config, steps):
  """The same model, optimizer and batch in a plain jit(lax.scan) loop."""
  model = create_model(config.model, dataset.num_classes)
  x_all, y_all = jnp.asarray(dataset.train.x), jnp.asarray(dataset.train.y)
  params = model.init(jax.random.PRNGKey(0), x_all[:1], train=False)["params"]
  tx = optax.adam(config.optim.lr)
  opt_state = tx.init(params)

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
  carry = run(params, opt_state, idx())
  jax.block_until_ready(carry)
  t0 = time.perf_counter()
  done = 0
  while done < steps:
    carry = run(*carry, idx())
    done += chunk
  jax.block_until_ready(carry)
  return done / (time.perf_counter() - t0)


def main(argv):
  del argv
  steps, S = _STEPS.value, _SEEDS.value
  print(f"devices: {jax.devices()}  jax {jax.__version__}")
  data = fake_mnist_shaped()
  c = lenet_config()
  model = create_model(c.model, 10)
  ours = time_trainer(Trainer(c, data, model), [0], steps)
  bare = time_bare_scan(data, c, steps)
  masked = time_trainer(Trainer(c, data, model, tx_wrapper=functools.partial(
      pruning.with_pruning_mask, mask=None)), [0], steps)
  print("\n1. LeNet-300-100, Adam, batch 60 (steps/s, compile excluded)")
  print(f"   jaxunknowns trainer          {ours:8.0f}")
  print(f"   bare jit(lax.scan) loop      {bare:8.0f}   trainer/bare = {ours / bare:.2f}")
  print(f"   trainer + pruning mask       {masked:8.0f}   mask cost = {100 * (1 - masked / ours):+.1f}%")

  c = config_defaults.base_config()  # MNIST-1D MLP 40-100-100-10, Adam, batch 100.
  c.train.log_every = 500
  mnist1d = load_dataset(c.data)
  model = create_model(c.model, mnist1d.num_classes)
  batched = time_trainer(Trainer(c, mnist1d, model), list(range(S)), steps)
  single = time_trainer(Trainer(c, mnist1d, model), [0], steps)
  print(f"\n2. MNIST-1D MLP, {S} seeds (seed-steps/s, compile excluded)")
  print(f"   {S} seeds in one vmapped program {batched * S:8.0f}")
  print(f"   {S} sequential runs             {single:8.0f}   ratio = {batched * S / single:.2f}x")


if __name__ == "__main__":
  app.run(main)
