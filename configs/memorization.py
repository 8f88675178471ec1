r"""Arpit et al.'s memorization study: `--config=configs/memorization.py[:VARIANT[,runlocal]]`.

Labels corrupted with probability p over a grid, each p trained without
regularization and with dropout or weight decay; at log-spaced steps the
whole training set is classified, so clean and corrupted examples are
followed apart (and each example's first-fit step is known per seed).
How the stages are organised: jaxunknowns/overparam/memorization.py.

Variants (default mnist1d):
  mnist1d       MLP 1x512 on MNIST-1D (offline): minutes on a CPU.
  fashion_mlp   The same MLP on Fashion-MNIST (offline, Debian's IDX files).
  cifar10_mlp   The same MLP on TFDS CIFAR-10 (needs a network).
`runlocal` shrinks any variant to a few steps (tests, smoke runs).
Fields not set here keep the defaults and comments of
jaxunknowns/config_defaults.py.
"""

import ml_collections

from jaxunknowns.config_defaults import make_config, shrink_for_local


def memorization_fields(c):
  c.experiment = "memorization"
  c.seeds = 3                    # Seeds per stage, trained at once.
  c.memorization = ml_collections.ConfigDict()
  # Label corruption p (increasing): 0 = real labels, 1 = random labels (the
  # learning-order control).
  c.memorization.corruptions = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
  c.memorization.arms = ("none", "dropout", "weight_decay")  # Regularizers, one stage each per p.
  c.memorization.dropout = 0.5        # Dropout rate after every hidden layer (arm "dropout").
  c.memorization.weight_decay = 1e-3  # L2 coefficient (arm "weight_decay").
  c.memorization.record_points = 80   # Log-spaced steps in [1, train.steps] where the sets are classified.
  c.memorization.fit_level = 0.9      # Accuracy that counts as "fitted" for the steps-to-level numbers.
  c.train.eval_every = 0         # The trainer's own evals only at the end: the recording does the rest.


def mnist1d(c):
  c.data.name = "mnist1d"
  c.data.validation_size = 500   # Clean held-out labels: the early-stopping choice.
  c.model.name = "mlp"
  c.model.widths = (512,)        # Zhang et al.'s MLP 1x512, as `randomization`.
  c.optim.name = "adam"
  c.optim.lr = 2e-3              # As `randomization`: fits random labels in ~8K steps.
  c.train.batch_size = 100
  c.train.steps = 8000           # ~230 epochs of 3500 examples.
  c.train.log_every = 100
  c.train.checkpoint_every = 2000


def fashion_mlp(c):
  mnist1d(c)
  c.data.name = "fashion_mnist"  # Debian's dataset-fashion-mnist IDX files.
  c.data.validation_size = 5000
  c.train.batch_size = 128
  c.train.steps = 60000
  c.train.checkpoint_every = 5000


def cifar10_mlp(c):
  fashion_mlp(c)
  c.data.name = "cifar10"        # TFDS catalogue (network and [tfds] extra).
  c.data.augment = "none"        # Augmentation would hide memorization.
  c.train.steps = 100000


VARIANTS = {f.__name__: f for f in (mnist1d, fashion_mlp, cifar10_mlp)}


def runlocal(c):
  """Every part, tiny: for tests and smoke runs."""
  shrink_for_local(c, steps=40, checkpoint_every=20)
  c.seeds = 3
  c.train.eval_every = 0
  c.train.loop = "python"        # One compiled step, whatever the chunk lengths.
  c.data.train_size = min(c.data.train_size or 500, 500)
  c.memorization.corruptions = (0.0, 0.5, 1.0)
  c.memorization.arms = ("none", "dropout")
  c.memorization.record_points = 8


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return make_config(arg, variants=VARIANTS, default="mnist1d",
                     config_file="configs/memorization.py",
                     fields=memorization_fields, runlocal=runlocal)
