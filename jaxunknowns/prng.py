"""PRNG keys from integer seeds of any size.

`jax.random.PRNGKey` keeps only a seed's low 32 bits unless jax_enable_x64
is on, so seed 2**32 drew seed 0's initialization and a derived seed (imp's
`seed * 1000 + level`) wrapped silently. `key` gives every seed below 2**32
the same key as PRNGKey (every recorded run reproduces) and folds a larger
seed's high bits in, so distinct seeds get distinct keys.
"""

import jax

_LOW = 2 ** 32


def key(seed: int) -> jax.Array:
  """The PRNG key of a nonnegative integer seed (see the module doc)."""
  seed = int(seed)
  if seed < 0:
    raise ValueError(f"a seed is a nonnegative integer, got {seed}")
  out, high = jax.random.PRNGKey(seed % _LOW), seed // _LOW
  while high:  # 32 bits at a time: fold_in takes a 32-bit value
    out, high = jax.random.fold_in(out, high % _LOW), high // _LOW
  return out
