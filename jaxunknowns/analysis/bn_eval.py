"""BatchNorm's inference modes, right and wrong, for one trained run.

  * `running`: the running averages (Flax `train=False`) -- the correct
    inference mode;
  * `batch_stats(b)`: each eval batch of size b normalized with its own
    statistics (Flax `train=True` at test time, PyTorch forgetting
    `model.eval()`): predictions depend on the batch, and at b = 1 each
    example is normalized by itself;
  * `recalibrate`: running averages re-estimated from batches of some
    inputs (e.g. shifted ones: AdaBN) -- the fix for stale statistics.

All functions take one run's `params` and `batch_stats` (no run axis): the
trainer's vmap over runs turns convolutions into grouped ones, which XLA:CPU
runs several times slower, and evaluation has no reason to batch runs.
"""

import functools
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxunknowns import distributed


def _variables(params, batch_stats):
  return {"params": params, "batch_stats": batch_stats}


@functools.partial(jax.jit, static_argnums=(0,))
def _running_logits(model, params, batch_stats, x):
  return model.apply(_variables(params, batch_stats), x, train=False)


def running_logits(model, params, batch_stats, x, chunk: int = 1000):
  """Logits with the running averages (chunked: results do not depend on
  the chunk size in this mode)."""
  return np.concatenate([
      np.asarray(_running_logits(model, params, batch_stats, x[i:i + chunk]))
      for i in range(0, len(x), chunk)])


@functools.partial(jax.jit, static_argnums=(0,))
def _batch_logits(model, params, batch_stats, xb):
  """xb: [num_batches, b, ...]; every batch normalized by its own stats."""
  def one(x):
    logits, _ = model.apply(_variables(params, batch_stats), x, train=True,
                            mutable=["batch_stats"])
    return logits
  return jax.lax.map(one, xb)


def batch_stat_logits(model, params, batch_stats, x, batch_size: int
                      ) -> Tuple[np.ndarray, int]:
  """Logits of the first n - n % batch_size examples (whole batches only, so
  every example sees a batch of exactly `batch_size`), and that count."""
  n = len(x) - len(x) % batch_size
  if n == 0:
    raise ValueError(f"batch size {batch_size} > {len(x)} examples")
  xb = x[:n].reshape((n // batch_size, batch_size) + x.shape[1:])
  out = _batch_logits(model, params, batch_stats, jnp.asarray(xb))
  return np.asarray(out).reshape((n,) + out.shape[2:]), n


@functools.partial(jax.jit, static_argnums=(0,))
def _recalibrate(model, params, batch_stats, xb):
  def step(stats, x):
    _, new = model.apply(_variables(params, stats), x, train=True,
                         mutable=["batch_stats"])
    return new["batch_stats"], None
  stats, _ = jax.lax.scan(step, batch_stats, xb)
  return stats


def recalibrate(model, params, batch_stats, x, batch_size: int,
                num_batches: int, seed: int = 0):
  """Running averages after `num_batches` train-mode passes over random
  batches of `x` (weights untouched). With Flax's momentum 0.9 the old
  statistics keep a weight of 0.9**num_batches (0.5% at 50). AdaBN (Li et
  al.) computes the target domain's population statistics outright; this
  moving average approaches them, weighting later batches more."""
  rng = np.random.default_rng(seed)
  idx = rng.integers(0, len(x), size=(num_batches, batch_size))
  return distributed.device_get(_recalibrate(model, params, batch_stats,
                                     jnp.asarray(x[idx])))


def accuracy(logits, y) -> float:
  return float(np.mean(np.argmax(logits, -1) == np.asarray(y)[:len(logits)]))
