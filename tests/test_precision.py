"""Mixed precision (train.precision): bfloat16 compute, float32 state."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunknowns import config_loading, runs
from jaxunknowns.errors import UserError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_helpers import users_xla_flags  # pylint: disable=g-import-not-at-top,wrong-import-position
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


# Both precisions are on their plateau by then (test accuracy, mean of the
# 3 seeds, measured 2026-12-04; the config's full budget is 6000 steps):
#   steps      1000   2000   3000   4000   5000   6000
#   float32    91.8   93.9   94.3   94.4   94.3   94.2
#   bfloat16   92.1   91.1   93.6   93.6   93.5   93.4
# At 2000 steps bfloat16 is still climbing (a budget that short would compare
# unfinished runs); from 3000 on neither moves by more than 0.2 points, and
# the gap stays 0.6-0.8 points. 3000 steps halve the test's ~2 minutes.
CNN_STEPS = 3000


def _mnist1d_cnn_accuracy(precision):
  """Test accuracy of 3 seeds of configs/train.py:mnist1d_cnn (the MNIST-1D
  paper's protocol: Adam 1e-2, batch 100), trained for CNN_STEPS steps."""
  config = config_loading.load_config(f"{ROOT}/configs/train.py:mnist1d_cnn")
  config.train.precision = precision
  config.seeds = 3
  config.train.steps = CNN_STEPS
  config.train.eval_every = config.train.steps
  config.train.eval_train = False
  trainer = runs.build_trainer(config)
  seeds = runs.seeds_of(config)
  state, _ = trainer.train_steps(trainer.init_state(seeds), seeds,
                                 config.train.steps)
  return trainer.evaluate(state, "test")["accuracy"]


def test_bfloat16_mnist1d_cnn_is_above_92_percent_as_the_papers_float32():
  """Measured at 3000 steps: float32 94.3%, bfloat16 93.6% (chance: 10%).
  bfloat16's mean must be above 92%, the level of the MNIST-1D paper's
  float32 CNN (92.3%), an independent number: a float32 run beside it
  doubled the suite's slowest test (94 s on 2 busy cores).

  Trained in a subprocess at XLA's default options, as users' runs are:
  the suite's own (conftest.py) save compile time, but this test is all
  compute (3 runs × 3000 CNN steps), which level 0 made take twice as
  long."""
  flags = users_xla_flags()
  proc = subprocess.run([sys.executable, __file__], cwd=ROOT, env=dict(
      os.environ, XLA_FLAGS=flags), capture_output=True, text=True,
                        timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  bf16 = np.array(json.loads(proc.stdout.splitlines()[-1]))
  assert bf16.mean() > 0.92, bf16


if __name__ == "__main__":  # the accuracy test's subprocess
  print(json.dumps(_mnist1d_cnn_accuracy("bfloat16").tolist()))
