r"""BN x dropout x weight decay: `--config=configs/bn_regularization.py[:VARIANT[,runlocal]]`.

A grid of batch norm on/off x dropout rate x weight decay on a training set
small enough to overfit; test accuracy and the train - test gap per cell,
as heatmaps.

Variants (default fashion_mlp):
  fashion_mlp     MLP 784-256-256-10 on 2000 Fashion-MNIST examples
                  (offline), 2 x 3 x 3 cells, SGD momentum, 40 epochs.
  mnist1d_mlp     The same grid on MNIST-1D (offline, 4000 examples).
  cifar10_resnet  ResNet-20 on TFDS CIFAR-10 without augmentation (paper scale).
`runlocal` shrinks any variant to a few steps (tests, smoke runs).
Fields not set here keep the defaults of jaxunknowns/config_defaults.py.
"""

import ml_collections

from jaxunknowns.batchnorm import bn_config
from jaxunknowns.config_defaults import make_config, resnet20_cifar10


def grid_fields(c):
  bn_config.grid_fields(c, "bn_regularization")
  c.grid.norms = ("batch", "none")  # model.norm: BN on / off.
  c.grid.dropouts = (0.0, 0.25, 0.5)  # model.dropout after each hidden layer.
  c.grid.weight_decays = (0.0, 5e-4, 5e-3)  # optim.weight_decay (L2 on what optim.decay_on says).
  c.grid.evals_per_cell = 0        # Evaluations during a cell (0 = at the end only).


def fashion_mlp(c):
  c.data.name = "fashion_mnist"    # IDX files of Debian's dataset-fashion-mnist.
  c.data.train_size = 2000         # Small on purpose: the network can memorize it.
  c.model.name = "mlp"
  c.model.widths = (256, 256)
  c.optim.name = "momentum"
  c.optim.lr = 0.02
  c.train.batch_size = 64
  c.train.steps = 1250             # 40 epochs of 2000 examples.
  c.train.log_every = 250
  c.train.eval_batch_size = 2000


def mnist1d_mlp(c):
  fashion_mlp(c)
  c.data.name = "mnist1d"          # Procedural MNIST-1D: 4000 train / 1000 test.
  c.data.train_size = 0
  c.train.steps = 2500             # 40 epochs of 4000 examples.


def cifar10_resnet(c):
  resnet20_cifar10(c)
  c.data.augment = "none"          # No augmentation: regularization from the grid only.
  c.optim.schedule = "cosine"
  c.grid.weight_decays = (0.0, 1e-4, 5e-4)
  c.train.steps = 39000            # 100 epochs.
  c.train.eval_batch_size = 1000
  c.train.max_train_eval = 10000
  c.grid.evals_per_cell = 10


VARIANTS = {f.__name__: f for f in (fashion_mlp, mnist1d_mlp, cifar10_resnet)}


def runlocal(c):
  """A 2 x 2 x 1 grid of a few steps: tests and smoke runs."""
  bn_config.shrink_grid_for_local(c)
  c.grid.dropouts = (0.0, 0.5)
  c.grid.weight_decays = (0.0,)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return make_config(arg, variants=VARIANTS, default="fashion_mlp",
                     config_file="configs/bn_regularization.py", fields=grid_fields,
                     runlocal=runlocal)
