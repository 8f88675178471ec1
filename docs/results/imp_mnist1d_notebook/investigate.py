"""Why do our random masks at 91% sparsity beat the MNIST-1D notebook's?

The notebook's random control (lottery-tickets.ipynb, `criteria_fn` =
torch.rand) gets about 61% at 91% sparsity; our `random_prune` gets about 70%.
A random mask does not depend on the pruning schedule (a fresh mask at the
target density, on the same initialization), so the schedule cannot explain
it. What can: the notebook's PyTorch defaults and its masking. This script
trains the residual MLP 40-500-500-10 (Adam 2e-2, batch 100, 1501 steps, all
4000 training examples, the final test accuracy on the 1000 test examples)
dense and with a random 90.9% sparse mask per layer, 3 seeds each, under
four protocols that add the notebook's choices one at a time:

  ours         Flax init (truncated LeCun-normal kernels, zero biases),
               biases never pruned, a fresh shuffle of the data each epoch;
  torch_init   PyTorch's nn.Linear init: kernels and biases U(±1/√fan_in);
  prune_bias   + biases pruned with the kernels (the notebook scores each
               layer's weight and bias as one vector);
  sequential   + the notebook's batches: the 40 slices of the training set in
               the same order every epoch; here also IMP tickets (magnitude
               pruning of each layer's vector, rewound to the
               initialization, 11 rounds to the same sparsity).

    python docs/results/imp_mnist1d_notebook/investigate.py OUT.json

Pure JAX (its own few lines of model and Adam), independent of the trainer.
"""

import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxunknowns.data.builders import generate_mnist1d

WIDTH, STEPS, BATCH, LR, SPARSITY, SEEDS = 500, 1501, 100, 2e-2, 90 / 99, 3
SIZES = ((40, WIDTH), (WIDTH, WIDTH), (WIDTH, 10))


def init(key, torch_init):
  params = []
  for (fan_in, fan_out), k in zip(SIZES, jax.random.split(key, len(SIZES))):
    kw, kb = jax.random.split(k)
    if torch_init:
      bound = 1 / np.sqrt(fan_in)
      w = jax.random.uniform(kw, (fan_in, fan_out), minval=-bound, maxval=bound)
      b = jax.random.uniform(kb, (fan_out,), minval=-bound, maxval=bound)
    else:
      w = jax.nn.initializers.lecun_normal()(kw, (fan_in, fan_out))
      b = jnp.zeros((fan_out,))
    params.append((w, b))
  return params


def random_mask(key, params, prune_bias):
  """Per layer, int(SPARSITY * n) entries of the layer's (kernel[, bias])
  vector dropped at random, as the notebook's get_mask with random scores."""
  masks = []
  for (w, b), k in zip(params, jax.random.split(key, len(params))):
    n = w.size + (b.size if prune_bias else 0)
    keep = jnp.ones(n).at[jax.random.permutation(k, n)[:int(SPARSITY * n)]].set(0)
    mw = keep[:w.size].reshape(w.shape)
    mb = keep[w.size:] if prune_bias else jnp.ones_like(b)
    masks.append((mw, mb))
  return masks


def forward(params, masks, x):
  (w0, b0), (w1, b1), (w2, b2) = jax.tree.map(jnp.multiply, params, masks)
  h = jax.nn.relu(x @ w0 + b0)
  h = h + jax.nn.relu(h @ w1 + b1)
  return h @ w2 + b2


def train(params, masks, order, data):
  x, y, xt, yt = data
  opt = optax.adam(LR)

  def step(carry, idx):
    p, s = carry
    loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(
        forward(p, masks, x[idx]), y[idx]).mean()
    updates, s = opt.update(jax.grad(loss)(p), s)
    return (optax.apply_updates(p, updates), s), None

  (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), order)
  return jnp.mean(jnp.argmax(forward(params, masks, xt), -1) == yt), params


def magnitude_mask(trained, masks, sparsity, prune_bias):
  """Per layer, the int(sparsity * n) smallest |weights| of the masked
  trained (kernel[, bias]) vector dropped (pruned ones are 0: dropped again)."""
  out = []
  for (w, b), (mw, mb) in zip(trained, masks):
    parts = [jnp.abs(w * mw).ravel()] + [jnp.abs(b * mb)] * prune_bias
    scores = jnp.concatenate(parts)
    keep = jnp.ones(scores.size).at[jnp.argsort(scores)[
        :int(sparsity * scores.size)]].set(0)
    out.append((keep[:w.size].reshape(w.shape),
                keep[w.size:] if prune_bias else mb))
  return out


def main(out_path):
  (x, y), (xt, yt) = generate_mnist1d()["train"], generate_mnist1d()["test"]
  data = tuple(jnp.asarray(np.asarray(a).reshape(len(a), -1) if a.ndim > 1
                           else a) for a in (x, y, xt, yt))
  n = len(data[1])
  sequential = (np.arange(STEPS)[:, None] * BATCH + np.arange(BATCH)) % n
  protocols = {"ours": (False, False, False),
               "torch_init": (True, False, False),
               "prune_bias": (True, True, False),
               "sequential": (True, True, True)}
  results, train_jit = {}, jax.jit(train)
  # Tickets: magnitude pruning to 1 - 0.8^L of each layer (L = 1..10), then
  # SPARSITY, rewound to the initialization each round (11 rounds).
  for name, (torch_init, prune_bias, seq) in protocols.items():
    t0 = time.time()
    accs = {"dense": [], "random_mask": []}
    for seed in range(SEEDS):
      key = jax.random.PRNGKey(seed)
      params = init(key, torch_init)
      if seq:
        order = sequential
      else:  # A fresh permutation each epoch, batches of 100.
        rng = np.random.default_rng(seed)
        perm = np.concatenate([rng.permutation(n) for _ in range(
            STEPS * BATCH // n + 1)])
        order = perm[:STEPS * BATCH].reshape(STEPS, BATCH)
      ones = jax.tree.map(jnp.ones_like, params)
      sparse = random_mask(jax.random.fold_in(key, 1), params, prune_bias)
      for arm, masks in (("dense", ones), ("random_mask", sparse)):
        if arm == "dense" and name == "prune_bias":
          continue  # Dense is torch_init's: no mask, no pruned bias.
        accs[arm].append(float(train_jit(params, masks, order, data)[0]))
      if name == "sequential":  # IMP tickets under every notebook choice.
        masks = ones
        for sparsity in [1 - 0.8 ** l for l in range(1, 11)] + [SPARSITY]:
          _, trained = train_jit(params, masks, order, data)
          masks = magnitude_mask(trained, masks, sparsity, prune_bias)
        accs.setdefault("ticket", []).append(
            float(train_jit(params, masks, order, data)[0]))
    results[name] = {arm: {"mean": float(np.mean(v)),
                           "std": float(np.std(v, ddof=1)), "per_seed": v}
                     for arm, v in accs.items() if v}
    print(name, {a: f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f}"
                 for a, r in results[name].items()},
          f"{time.time() - t0:.0f} s", flush=True)
  with open(out_path, "w") as f:
    json.dump({"sparsity": SPARSITY, "steps": STEPS, "seeds": SEEDS,
               "protocols": results}, f, indent=1)


if __name__ == "__main__":
  main(sys.argv[1])
