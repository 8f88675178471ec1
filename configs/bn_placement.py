r"""BN before vs after the activation: `--config=configs/bn_placement.py[:VARIANT[,runlocal]]`.

Ioffe & Szegedy (2015) put BN between the linear layer and the
nonlinearity; many practitioners put it after the ReLU. Compared here on the
same seeds and batches: final accuracy, accuracy-vs-step curves, steps to a
target accuracy, and throughput. A no-norm cell is the baseline.

Variants (default fashion_mlp):
  fashion_mlp     MLP 784-256-256-256-10 on a 10000-example Fashion-MNIST
                  subset (offline), SGD momentum, batch 64, 3000 steps.
  mnist1d_mlp     The same on MNIST-1D (offline).
  cifar10_resnet  ResNet-20 on TFDS CIFAR-10, OpenLTH's protocol (paper scale).
`runlocal` shrinks any variant to a few steps (tests, smoke runs).
Fields not set here keep the defaults of jaxunknowns/config_defaults.py.
"""

import ml_collections

from jaxunknowns.batchnorm import bn_config
from jaxunknowns.config_defaults import make_config, openlth_resnet20_cifar10


def grid_fields(c):
  bn_config.grid_fields(c, "bn_placement")
  c.grid.norms = ("batch",)        # Norms compared (each before and after).
  c.grid.positions = ("before", "after")  # model.norm_position of each cell.
  c.grid.baseline = True           # Add one cell without normalization.
  c.grid.evals_per_cell = 30       # Test evaluations per cell (the accuracy-vs-step curves).
  c.grid.target_accuracy = 0.85    # "Steps to target": first evaluation at or above this test accuracy.
  c.grid.speed_steps = 400         # Steps of pure training timed per cell after compiling (0 = none).


def fashion_mlp(c):
  c.data.name = "fashion_mnist"    # IDX files of Debian's dataset-fashion-mnist.
  c.data.train_size = 10000        # A subset: three cells x 3 seeds in a few minutes.
  c.model.name = "mlp"
  c.model.widths = (256, 256, 256)  # Three normalized hidden layers.
  c.optim.name = "momentum"
  c.optim.lr = 0.02                # Stable without a norm too (the baseline cell).
  c.train.batch_size = 64
  c.train.steps = 3000             # About 19 epochs of the subset.
  c.train.log_every = 100          # Evaluations fall on chunk ends: every 100 steps.
  c.train.eval_batch_size = 2000
  c.train.max_train_eval = 5000    # Train accuracy on 5000 of the training examples.


def mnist1d_mlp(c):
  fashion_mlp(c)
  c.data.name = "mnist1d"          # Procedural MNIST-1D: 4000 train / 1000 test.
  c.data.train_size = 0
  c.grid.target_accuracy = 0.5


def cifar10_resnet(c):
  openlth_resnet20_cifar10(c)
  c.train.eval_batch_size = 1000
  c.train.max_train_eval = 10000
  c.grid.evals_per_cell = 63
  c.grid.target_accuracy = 0.9
  c.grid.speed_steps = 1000


VARIANTS = {f.__name__: f for f in (fashion_mlp, mnist1d_mlp, cifar10_resnet)}


def runlocal(c):
  """A few steps of a small MLP: tests and smoke runs."""
  bn_config.shrink_grid_for_local(c)
  c.grid.evals_per_cell = 2
  c.grid.target_accuracy = 0.3
  c.grid.speed_steps = 10


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return make_config(arg, variants=VARIANTS, default="fashion_mlp",
                     config_file="configs/bn_placement.py", fields=grid_fields,
                     runlocal=runlocal)
