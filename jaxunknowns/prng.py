"""Random streams from integer seeds of any size.

`jax.random.PRNGKey` keeps only a seed's low 32 bits unless jax_enable_x64
is on, so seed 2**32 drew seed 0's initialization and a derived seed (imp's
`seed * 1000 + level`) wrapped silently; numpy's legacy `RandomState`
refuses seeds of 2**32 and above. Below 2**32 both functions here give
exactly what those gave (every recorded run reproduces); above, they use
the seed's every 32-bit word, so distinct seeds get distinct streams.
"""

import operator
from typing import List

import jax
import numpy as np

_LOW = 2 ** 32


def _words(seed) -> List[int]:
  """The seed's 32-bit words, low first; a nonnegative integer only (a
  float or string seed is a bug upstream, as it was for PRNGKey)."""
  seed = operator.index(seed)
  if seed < 0:
    raise ValueError(f"a seed is a nonnegative integer, got {seed}")
  words = [seed % _LOW]
  while seed >= _LOW:
    seed //= _LOW
    words.append(seed % _LOW)
  return words


def key(seed) -> jax.Array:
  """The PRNG key of a seed: PRNGKey's below 2**32, the higher words folded
  in above."""
  low, *high = _words(seed)
  out = jax.random.PRNGKey(low)
  for word in high:  # fold_in takes a 32-bit value
    out = jax.random.fold_in(out, word)
  return out


def random_state(seed) -> np.random.RandomState:
  """numpy's legacy RandomState of a seed: RandomState(seed) below 2**32,
  seeded by the seed's 32-bit words above."""
  words = _words(seed)
  return np.random.RandomState(words[0] if len(words) == 1 else words)
