"""Which training examples each run sees at each step: the data order.

The datasets live in device memory and the compiled loop gathers batches by
index, so the only input that crosses from host to device is this small int32
array of indices ([steps, runs, batch], a few MB per thousand steps).

The order is a pure function of (data_seed, step): epoch e of a run is the
permutation `default_rng([data_seed, e])` of the training set, consumed in
batches, with the last incomplete batch dropped. A resumed run therefore sees
exactly the batches an uninterrupted one would, and two runs that share a data
seed (a lottery ticket and its random-reinit control) see the same batches.
"""

import functools
from typing import Sequence

import numpy as np


@functools.lru_cache(maxsize=256)
def _epoch_permutation(data_seed: int, epoch: int, num_examples: int):
  return np.random.default_rng([data_seed, epoch]).permutation(num_examples)


def batch_indices(data_seeds: Sequence[int], start_step: int, num_steps: int,
                  num_examples: int, batch_size: int) -> np.ndarray:
  """Indices of shape [num_steps, len(data_seeds), batch_size]."""
  steps_per_epoch = num_examples // batch_size
  out = np.empty((num_steps, len(data_seeds), batch_size), np.int32)
  for r, seed in enumerate(data_seeds):
    step = start_step
    while step < start_step + num_steps:
      epoch, pos = divmod(step, steps_per_epoch)
      take = min(steps_per_epoch - pos, start_step + num_steps - step)
      perm = _epoch_permutation(int(seed), epoch, num_examples)
      block = perm[pos * batch_size:(pos + take) * batch_size]
      out[step - start_step:step - start_step + take, r] = block.reshape(
          take, batch_size)
      step += take
  return out
