r"""Accuracy vs batch size per normalization: `--config=configs/bn_batch_size.py[:VARIANT[,runlocal]]`.

Wu & He (2018, GroupNorm, Fig. 1): as the per-device batch shrinks, batch
norm's error grows (its batch statistics get noisy) while group and layer
norm, which normalize each example on its own, do not care.

Variants (default fashion_mlp):
  fashion_mlp     MLP 784-128-128-10 on a 5000-example Fashion-MNIST subset
                  (offline), batch/group/layer/none x batch 2, 4, 8, 16, 64, 256, SGD
                  momentum with linear lr scaling, 3 epochs in every cell.
  mnist1d_mlp     The same grid on MNIST-1D (offline, 4000 examples).
  cifar10_resnet  ResNet-20 on TFDS CIFAR-10 (paper scale: network, [tfds]).
`runlocal` shrinks any variant to a few steps (tests, smoke runs).
Fields not set here keep the defaults of jaxunknowns/config_defaults.py.
"""

import ml_collections

from jaxunknowns.batchnorm import bn_config
from jaxunknowns.config_defaults import make_config, resnet20_cifar10


def grid_fields(c):
  bn_config.grid_fields(c, "bn_batch_size")
  c.grid.norms = ("batch", "group", "layer", "none")  # model.norm of each row of the grid.
  c.grid.batch_sizes = (2, 4, 8, 16, 64, 256)  # Per-step batch sizes (train.batch_size), 2 ... 256.
  c.grid.lr_rule = "linear"        # lr(B) = optim.lr x B/B_ref ("linear"), x sqrt(B/B_ref) ("sqrt"), or "none".
  c.grid.reference_batch_size = 128  # B_ref: the batch size at which optim.lr applies.
  c.grid.epochs = 3.0              # Same examples seen per cell (0 = train.steps steps per cell).
  c.grid.evals_per_cell = 0        # Test/train evaluations during a cell (0 = at the end only).
  c.model.norm = "batch"           # Replaced per cell by grid.norms.
  c.model.num_groups = 8           # Group norm: 8 groups (16 units each at width 128).


def fashion_mlp(c):
  c.data.name = "fashion_mnist"    # IDX files of Debian's dataset-fashion-mnist.
  c.data.train_size = 5000         # A subset: batch 2 x 3 epochs is 7500 steps on 2 CPU cores.
  c.model.name = "mlp"
  c.model.widths = (128, 128)      # Two hidden layers, each normalized.
  c.optim.name = "momentum"        # SGD with momentum 0.9: the rule of linear scaling.
  c.optim.lr = 0.05                # At batch 128; 0.1 at 256, 0.00078 at 2.
  c.train.batch_size = 128         # Replaced per cell by grid.batch_sizes.
  c.train.log_every = 200          # Steps per compiled call (at most).
  c.train.eval_batch_size = 2000


def mnist1d_mlp(c):
  fashion_mlp(c)
  c.data.name = "mnist1d"          # Procedural MNIST-1D: 4000 train / 1000 test.
  c.data.train_size = 0
  c.grid.epochs = 10.0             # MNIST-1D is 40-dimensional: steps are cheap.


def cifar10_resnet(c):
  resnet20_cifar10(c)              # OpenLTH's ResNet-20, lr 0.1 at batch 128.
  c.model.num_groups = 8           # 2 channels per group in the first stage.
  c.optim.weight_decay = 1e-4
  c.optim.schedule = "cosine"      # A step schedule's boundaries would not scale with the budget.
  c.train.eval_batch_size = 1000
  c.grid.batch_sizes = tuple(2 ** k for k in range(1, 9))  # Every power of 2, 2 ... 256.
  c.grid.epochs = 30.0             # 30 epochs per cell (the paper's 160 x 32 cells is days).
  c.grid.evals_per_cell = 5


VARIANTS = {f.__name__: f for f in (fashion_mlp, mnist1d_mlp, cifar10_resnet)}


def runlocal(c):
  """Two norms x three small batch sizes, a few steps: tests, smoke runs."""
  bn_config.shrink_grid_for_local(c)
  c.grid.norms = ("batch", "group")
  c.grid.batch_sizes = (2, 8, 32)
  c.grid.reference_batch_size = 8
  c.grid.epochs = 0.2              # 40 steps at batch 2, 10 at 8, 3 at 32.


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return make_config(arg, variants=VARIANTS, default="fashion_mlp",
                     config_file="configs/bn_batch_size.py", fields=grid_fields,
                     runlocal=runlocal)
