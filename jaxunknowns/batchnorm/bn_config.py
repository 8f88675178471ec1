"""What the BatchNorm configs (configs/bn_*.py) share: the grids' first
fields and `runlocal`, the digits smoke scale and `runlocal` of the ResNet
configs. Apart from the experiments so that loading a config imports no
JAX."""

import ml_collections

from jaxunknowns import config_defaults


def grid_fields(c, experiment: str):
  """The experiment, its seeds and the `grid` its config fills in."""
  c.experiment = experiment
  c.seeds = 3                      # Seeds per cell, trained at once.
  c.grid = ml_collections.ConfigDict()


def shrink_grid_for_local(c):
  """A grid's `runlocal`: a few steps of a small MLP on 400 examples, 2
  seeds (tests and smoke runs)."""
  config_defaults.shrink_for_local(c, steps=20, checkpoint_every=0,
                                   widths=(16, 16))
  c.seeds = 2
  c.data.train_size = min(c.data.train_size or 400, 400)


def digits(c, batch_size: int):
  """sklearn digits (8x8), 40 steps at `batch_size`: tests and smoke runs."""
  c.data.train_size = 1400         # Of 1437 (runlocal's cap of 2000 must fit).
  c.data.name = "digits"
  c.train.batch_size = batch_size
  c.train.steps = 40
  c.train.log_every = 10
  c.train.eval_every = 0
  c.train.checkpoint_every = 20


def shrink_resnet_for_local(c):
  """`runlocal` of the ResNet configs (bn_only, bn_modes): 20 steps, 2
  seeds, evaluated at the end on at most 300 training examples."""
  config_defaults.shrink_for_local(c, steps=20, checkpoint_every=10)
  c.seeds = 2
  c.train.eval_every = 0
  c.train.max_train_eval = 300
