"""Timing shared by the benchmark scripts (no flags: each script has its own)."""

import time

import jax


def trainer_steps_per_second(trainer, seeds, steps, hparams=None):
  """Steps/s of `trainer.train_steps`, compile excluded: one chunk is run
  first, then whole chunks until `steps` (all runs advance together).
  `hparams`: per-run values, for a trainer built with some."""
  state = trainer.init_state(seeds, hparams=hparams)
  state, _ = trainer.train_steps(state, seeds, trainer.chunk)  # Compile.
  jax.block_until_ready(state)
  t0 = time.perf_counter()
  done = 0
  while done < steps:
    state, _ = trainer.train_steps(state, seeds, trainer.chunk)
    done += trainer.chunk
  jax.block_until_ready(state)
  return done / (time.perf_counter() - t0)
