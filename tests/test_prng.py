"""prng: PRNGKey's key and RandomState's stream below 2**32, distinct ones
above it."""

import jax
import numpy as np
import pytest

from jaxunknowns import prng
from tests.test_trainer import make_trainer, tiny_config


def data(key):
  return np.asarray(jax.random.key_data(key)).tolist()


def test_a_seed_below_2_32_keeps_prngkeys_key():
  # Every recorded run drew these keys: they must not move.
  for seed in (0, 1, 2, 1000, 100_003, 4_294_967_295):
    assert data(prng.key(seed)) == data(jax.random.PRNGKey(seed))


def test_larger_seeds_do_not_alias_their_low_32_bits():
  """Without jax_enable_x64, PRNGKey(2**32) is PRNGKey(0)'s key: seed 2**32
  drew seed 0's initialization (and imp's seed * 1000 + level wraps past
  seed 4,294,967)."""
  seeds = [0, 5, 2 ** 32, 2 ** 32 + 5, 2 ** 33, 2 ** 64, 2 ** 64 + 2 ** 32,
           5_000_000 * 1000 + 1]
  keys = [tuple(data(prng.key(s))) for s in seeds]
  assert len(set(keys)) == len(seeds)
  assert keys == [tuple(data(prng.key(s))) for s in seeds]  # deterministic


def test_a_run_on_seed_2_32_starts_from_its_own_weights():
  trainer = make_trainer(tiny_config())
  a, b = (jax.tree_util.tree_leaves(trainer.init_variables([s])["params"])
          for s in (0, 2 ** 32))
  assert not all(np.array_equal(x, y) for x, y in zip(a, b))


def test_random_state_keeps_numpys_stream_and_takes_any_seed():
  """prune_init's score batch: RandomState(seed) refused seeds >= 2**32."""
  draw = lambda rs: rs.choice(1000, 5, replace=False).tolist()
  for seed in (0, 7, 4_294_967_295):
    assert draw(prng.random_state(seed)) == draw(np.random.RandomState(seed))
  big = [draw(prng.random_state(s)) for s in (2 ** 32, 2 ** 32 + 7, 2 ** 64)]
  assert len({tuple(b) for b in big + [draw(prng.random_state(0))]}) == 4


def test_a_seed_that_is_not_an_integer_is_refused():
  for bad in (1.5, "3", -1):
    with pytest.raises((TypeError, ValueError)):
      prng.key(bad)
