"""Mixed precision (train.precision): bfloat16 compute, float32 state."""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunknowns import config_loading, runs
from jaxunknowns.errors import UserError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_trainer import make_trainer, tiny_config  # pylint: disable=g-import-not-at-top,wrong-import-position

ROOT = Path(__file__).resolve().parents[1]


def test_bfloat16_computes_in_bfloat16_and_keeps_float32_state():
  seeds = [0, 1]
  out = {}
  for precision in ("float32", "bfloat16"):
    trainer = make_trainer(tiny_config(**{"train.precision": precision}))
    out[precision] = trainer.train_steps(trainer.init_state(seeds), seeds, 10)
  state, metrics = out["bfloat16"]
  # Master weights, optimizer state and BatchNorm statistics stay float32.
  for part in ("params", "opt_state", "batch_stats"):
    dtypes = {leaf.dtype for leaf in jax.tree.leaves(state[part])}
    assert dtypes == {jnp.dtype(jnp.float32)}, (part, dtypes)
  assert jax.tree.leaves(state["batch_stats"])
  # The loss of the very first step (same weights, same batch) differs by
  # bfloat16 rounding only: the compute really ran in bfloat16.
  first = metrics["loss"][0]
  reference = out["float32"][1]["loss"][0]
  assert not np.array_equal(first, reference)
  np.testing.assert_allclose(first, reference, rtol=2e-2)


def test_unknown_precision_is_refused():
  with pytest.raises(UserError, match=r"train.precision='float16'"):
    make_trainer(tiny_config(**{"train.precision": "float16"}))


def _mnist1d_cnn_accuracy(precision):
  """Test accuracy of 3 seeds of configs/train.py:mnist1d_cnn (the MNIST-1D
  paper's protocol: Adam 1e-2, batch 100, 6000 steps)."""
  config = config_loading.load_config(f"{ROOT}/configs/train.py:mnist1d_cnn")
  config.train.precision = precision
  config.seeds = 3
  config.train.eval_every = config.train.steps
  config.train.eval_train = False
  trainer = runs.build_trainer(config)
  seeds = runs.seeds_of(config)
  state, _ = trainer.train_steps(trainer.init_state(seeds), seeds,
                                 config.train.steps)
  return trainer.evaluate(state, "test")["accuracy"]


def test_bfloat16_reaches_float32_accuracy_of_the_mnist1d_cnn():
  """The full 6000 steps (~2 min on 2 CPU cores): at 2000 steps float32 is
  at 93.9% but bfloat16 still climbs (91.1%), so a shorter budget would
  compare unfinished runs. Measured: float32 94.2%, bfloat16 93.4%."""
  f32 = _mnist1d_cnn_accuracy("float32")
  bf16 = _mnist1d_cnn_accuracy("bfloat16")
  assert f32.mean() > 0.92  # the float32 run itself reproduces the paper
  assert bf16.mean() >= f32.mean() - 0.01, (bf16, f32)
