r"""BatchNorm train vs inference mode: `--config=configs/bn_modes.py[:VARIANT[,runlocal]]`.

Trains a BN ResNet, then evaluates it with running statistics, with batch
statistics at eval batch sizes down to 1, with stale running statistics
(after more training with the statistics frozen, and after an input shift),
and with statistics re-estimated on the shifted inputs; report.md names the
bug each mode corresponds to.

Variants (default fashion):
  fashion  Offline Fashion-MNIST pooled to 14x14, ResNet-8 of width 8.
  digits   sklearn digits (8x8): a seconds-long run for tests.
  cifar10  ResNet-20 on TFDS CIFAR-10 (network and [tfds] extra).
`runlocal` shrinks any variant to a few steps.
Fields not set here keep the defaults and comments of
jaxunknowns/config_defaults.py.
"""

import ml_collections

from jaxunknowns.batchnorm import bn_config
from jaxunknowns.config_defaults import make_config


def bn_modes_fields(c):
  c.experiment = "bn_modes"
  c.seeds = 3                       # Seeds trained at once.
  c.model.name = "resnet"
  c.model.depth = 8                 # ResNet-8 ...
  c.model.width = 8                 # ... of width 8 (CPU budget).
  c.model.norm = "batch"
  c.optim.name = "momentum"
  c.optim.lr = 0.05                 # Constant lr: fine-tuning still moves the weights.
  c.optim.weight_decay = 1e-4
  c.bn_modes = ml_collections.ConfigDict()
  c.bn_modes.eval_batch_sizes = (1, 2, 8, 32, 128)  # Batch-statistics eval sizes.
  c.bn_modes.finetune_steps = 200   # Further training whose statistics go stale.
  c.bn_modes.shift_scale = 1.5      # Shifted inputs: shift_scale * x + shift ...
  c.bn_modes.shift = 0.5            # ... (inputs are standardized).
  c.bn_modes.recalibrate_batches = 50  # Train-mode batches to re-estimate stats.
  c.bn_modes.downsample = 1         # Average-pool images k x k (1 = full size).
  c.bn_modes.test_size = 0          # First N test examples (0 = all).
  c.train.max_train_eval = 1000     # Train accuracy on a 1000-example subset.


def fashion(c):
  c.data.name = "fashion_mnist"     # IDX files of Debian's dataset-fashion-mnist.
  c.data.train_size = 20000         # First 20K training images.
  c.bn_modes.downsample = 2         # 14x14: a quarter of the conv cost.
  c.bn_modes.test_size = 1024       # Divisible by every eval batch size.
  c.train.batch_size = 64
  c.train.steps = 600
  c.train.log_every = 100
  c.train.eval_every = 0            # End of each stage only.
  c.train.checkpoint_every = 200


def digits(c):
  bn_config.digits(c, batch_size=32)
  c.model.width = 4
  c.bn_modes.test_size = 256
  c.bn_modes.finetune_steps = 20
  c.bn_modes.recalibrate_batches = 10
  c.bn_modes.eval_batch_sizes = (1, 4, 32)


def cifar10(c):
  c.data.name = "cifar10"           # TFDS catalogue (network and [tfds] extra).
  c.data.augment = "crop_flip"
  c.model.depth = 20
  c.model.width = 16
  c.optim.lr = 0.1
  c.train.batch_size = 128
  c.train.steps = 20000
  c.bn_modes.finetune_steps = 2000
  c.bn_modes.eval_batch_sizes = (1, 2, 8, 32, 128, 1000)
  c.train.log_every = 500
  c.train.eval_every = 5000
  c.train.checkpoint_every = 5000


VARIANTS = {f.__name__: f for f in (fashion, digits, cifar10)}


def runlocal(c):
  """A few steps of a small net: tests and smoke runs."""
  bn_config.shrink_resnet_for_local(c)
  c.bn_modes.finetune_steps = 10
  c.bn_modes.recalibrate_batches = 5
  c.bn_modes.test_size = min(c.bn_modes.test_size or 256, 256)
  c.bn_modes.eval_batch_sizes = tuple(b for b in c.bn_modes.eval_batch_sizes
                                      if b <= 32)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return make_config(arg, variants=VARIANTS, default="fashion",
                     config_file="configs/bn_modes.py", fields=bn_modes_fields,
                     runlocal=runlocal)
