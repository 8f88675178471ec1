r"""BatchNorm's stability claims: `--config=configs/bn_stability.py[:VARIANT[,runlocal]]`.

The article credits BN with faster training and "less careful weight
initialization"; Bjorck et al. (2018) argue that BN's benefit is the larger
learning rates it permits, and that at a small learning rate it mostly
disappears. The grid: learning rate x init scale (every kernel's initial std
times the scale) x normalization, seeds as a run axis. The learning rates,
init scales and seeds of one normalization train as ONE compiled program.

Variants (default fashion_mlp):
  fashion_mlp     MLP 784-128-128-10 (He-normal init) on a 10,000-example
                  Fashion-MNIST subset (offline), SGD momentum 0.9, batch 128,
                  600 steps; lr 1e-3 ... 3 (8) x scale 0.1 ... 10 (5) x none,
                  batch, group, layer x 3 seeds = 480 runs in 4 programs.
  fashion_resnet  ResNet-8 of width 8 on the same data, a 3 x 3 grid, 2 seeds
                  (vmapped convs on a CPU are slow: measured 6.3 s per step
                  for 24 runs on the shared 2-core machine; for a GPU).
  cifar10_mlp     The MLP grid on TFDS CIFAR-10 (network, [tfds]).
  cifar10_resnet  ResNet-20 on TFDS CIFAR-10 (network, [tfds]).
`runlocal` shrinks any variant to a few steps (tests, smoke runs).
Fields not set here keep the defaults of jaxunknowns/config_defaults.py.
"""

import ml_collections

from jaxunknowns.batchnorm import bn_config
from jaxunknowns.config_defaults import make_config, resnet20_cifar10


def grid_fields(c):
  bn_config.grid_fields(c, "bn_stability")
  c.grid.norms = ("none", "batch", "group", "layer")  # model.norm of each program.
  c.grid.lrs = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0)  # Per-run learning rates.
  c.grid.init_scales = (0.1, 0.3, 1.0, 3.0, 10.0)  # Per-run multipliers of every kernel's init.
  c.grid.target_accuracy = 0.85    # Steps to reach this training accuracy (minibatch, chunk mean).
  c.grid.region_tolerance = 0.02   # Trainable cell: test accuracy within this of the norm's best.
  c.model.norm = "none"            # Replaced per program by grid.norms.
  c.model.kernel_init = "kaiming_normal"  # He et al.: the careful init of a ReLU net (scale 1).
  c.optim.name = "momentum"        # SGD with momentum 0.9.
  c.optim.lr = 0.1                 # Replaced per run by grid.lrs.
  c.data.validation_size = 1000    # Held out of train: picks each norm's best lr (not test).
  c.train.eval_every = 0           # Each program evaluates once, at its end.
  c.train.checkpoint_every = 0     # No checkpoints: a program is minutes; a finished one is kept.


def fashion(c):
  c.data.name = "fashion_mnist"    # IDX files of Debian's dataset-fashion-mnist.
  c.data.train_size = 10000        # A subset (after the validation split).
  c.model.num_groups = 8           # Group norm: 8 groups of 16 units.
  c.train.batch_size = 128
  c.train.steps = 600              # About 7.7 epochs of the subset.
  c.train.log_every = 20           # Steps per compiled call: the steps-to-target resolution.
  c.train.eval_batch_size = 2000
  c.train.max_train_eval = 2000    # Final train accuracy on the first 2000 examples.


def fashion_mlp(c):
  fashion(c)
  c.model.name = "mlp"
  c.model.widths = (128, 128)      # Two hidden layers, each normalized.


def fashion_resnet(c):
  fashion(c)
  c.model.name = "resnet"
  c.model.depth = 8                # One basic block per stage.
  c.model.width = 8                # Stage widths 8/16/32.
  c.model.num_groups = 4
  c.seeds = 2
  c.grid.lrs = (0.01, 0.1, 1.0)
  c.grid.init_scales = (0.1, 1.0, 10.0)
  c.train.batch_size = 64
  c.train.steps = 300


def cifar10_mlp(c):
  fashion_mlp(c)
  c.data.name = "cifar10"          # TFDS catalogue: needs a network and [tfds].
  c.data.augment = "none"
  c.data.train_size = 0
  c.model.widths = (512, 512)
  c.grid.target_accuracy = 0.5
  c.train.steps = 3000


def cifar10_resnet(c):
  resnet20_cifar10(c)              # OpenLTH's ResNet-20, SGD momentum 0.9, batch 128.
  c.model.num_groups = 8
  c.data.train_size = 0
  c.grid.target_accuracy = 0.8
  c.train.steps = 6000
  c.train.log_every = 100
  c.train.eval_batch_size = 1000
  c.train.max_train_eval = 5000


VARIANTS = {f.__name__: f for f in (fashion_mlp, fashion_resnet, cifar10_mlp,
                                    cifar10_resnet)}


def runlocal(c):
  """A 2 x 2 grid of two norms, a few steps of a small MLP: tests."""
  bn_config.shrink_grid_for_local(c)
  c.data.validation_size = 100
  c.train.eval_every = 0
  c.grid.norms = ("none", "batch")
  c.grid.lrs = (0.01, 0.1)
  c.grid.init_scales = (1.0, 3.0)
  c.grid.target_accuracy = 0.3
  c.train.batch_size = 32
  c.train.max_train_eval = 300


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return make_config(arg, variants=VARIANTS, default="fashion_mlp",
                     config_file="configs/bn_stability.py", fields=grid_fields,
                     runlocal=runlocal)
