"""What the BatchNorm grid configs share (configs/bn_batch_size.py,
bn_placement.py, bn_regularization.py): their first fields and their
`runlocal`. Apart from bn_grid.py so that loading a config imports no JAX."""

import ml_collections

from jaxunknowns import config_defaults


def fields(c, experiment: str):
  """The experiment, its seeds and the `grid` its config fills in."""
  c.experiment = experiment
  c.seeds = 3                      # Seeds per cell, trained at once.
  c.grid = ml_collections.ConfigDict()


def shrink_for_local(c):
  """A grid's `runlocal`: a few steps of a small MLP on 400 examples, 2
  seeds (tests and smoke runs)."""
  config_defaults.shrink_for_local(c, steps=20, checkpoint_every=0)
  c.seeds = 2
  c.data.train_size = min(c.data.train_size or 400, 400)
  c.model.widths = (16, 16)
