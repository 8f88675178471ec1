r"""BN-only training: `--config=configs/bn_only.py[:VARIANT[,runlocal]]`.

Frankle, Schwab & Morcos 2020: freeze a ResNet's weights at their random
init and train only BatchNorm's gamma and beta; accuracy grows with depth and
stays far above controls that train the same number of other parameters.

Variants (default fashion):
  fashion   Offline Fashion-MNIST, pooled to 14x14, ResNet-8/14/20 of width 8,
            400 steps of batch 32: 3 seeds x 3 depths x 4 arms took 17.5 min
            on a 2-core CPU shared with other jobs (load 5-11). Measured
            test accuracy: BN-only 60.0 / 65.0 / 67.8%, output-only 49.1 /
            43.2 / 38.9%, 2-per-channel 26.6 / 32.5 / 25.8%, full 81.5 /
            82.2 / 80.7% (means of 3 seeds).
  digits    sklearn digits (8x8): a seconds-long run for tests.
  cifar10   The paper protocol on TFDS CIFAR-10 (network, [tfds] extra, and
            an accelerator): SGD momentum 0.9, lr 0.1 x0.1 at epochs 80 and
            120, 160 epochs, batch 128, wd 1e-4, depths 14 ... 866.
`runlocal` shrinks any variant to a few steps and two small depths.
Fields not set here keep the defaults and comments of
jaxunknowns/config_defaults.py.
"""

import ml_collections

from jaxunknowns.batchnorm import bn_config
from jaxunknowns.config_defaults import make_config


def bn_only_fields(c):
  c.experiment = "bn_only"
  c.seeds = 3                      # Seeds per arm, all trained at once.
  c.model.name = "resnet"          # CIFAR ResNet-(6n+2).
  c.model.norm = "batch"
  c.model.kernel_init = "kaiming_normal"  # Frankle et al.: Kaiming-normal weights,
  c.model.bn_scale_init = "uniform"       # gamma ~ U[0, 1], beta = 0.
  c.bn_only = ml_collections.ConfigDict()
  c.bn_only.depths = (8, 14, 20)   # ResNet depths 6n+2, one stage each.
  c.bn_only.widths = (8,)          # First-stage widths (stages w, 2w, 4w).
  c.bn_only.arms = ("bn", "random2", "output", "full")  # What trains (+ "bn_output").
  c.bn_only.bn_pattern = r"BatchNorm_\d+/(scale|bias)$"  # gamma, beta paths.
  c.bn_only.scale_pattern = r"BatchNorm_\d+/scale$"      # gamma paths (histogram).
  c.bn_only.output_pattern = r"^output/"                  # The classifier.
  c.bn_only.kernel_pattern = r"Conv_\d+/kernel$"          # Where random2 picks weights.
  c.bn_only.per_channel = 2        # random2: weights trained per output channel.
  c.bn_only.gamma_threshold = 0.05  # |gamma| below this counts as switched off.
  c.bn_only.downsample = 1         # Average-pool images k x k (1 = full size).
  c.bn_only.test_size = 0          # Evaluate on the first N test examples (0 = all).
  c.optim.name = "momentum"        # The paper: SGD with momentum 0.9 ...
  c.optim.momentum = 0.9
  c.optim.lr = 0.1                 # ... lr 0.1 ...
  c.optim.weight_decay = 1e-4      # ... and wd 1e-4 (never applied to frozen entries).
  c.train.max_train_eval = 1000    # Train accuracy on a 1000-example subset.


def fashion(c):
  c.data.name = "fashion_mnist"    # IDX files of Debian's dataset-fashion-mnist.
  c.bn_only.downsample = 2         # 14x14: a quarter of the conv cost on a CPU.
  c.data.train_size = 20000        # First 20K training images (0.64 epochs).
  c.bn_only.test_size = 2000       # First 2K test images (std error ~1 point).
  c.optim.schedule = "cosine"      # lr 0.1 annealed to 0 over the short budget.
  c.train.batch_size = 32
  c.train.steps = 400              # Chosen for the CPU budget (see the module doc).
  c.train.log_every = 50
  c.train.eval_every = 0           # Evaluate at the end only (CPU budget).
  c.train.checkpoint_every = 200


def digits(c):
  bn_config.digits(c, batch_size=64)
  c.bn_only.depths = (8, 14)
  c.bn_only.widths = (4,)
  c.optim.schedule = "cosine"


def cifar10(c):
  c.data.name = "cifar10"          # TFDS catalogue (network and [tfds] extra).
  c.data.augment = "crop_flip"     # Pad-4 random crop + flip, as the paper.
  c.bn_only.depths = (14, 32, 56, 110, 218, 434, 866)  # The paper's depths.
  c.bn_only.widths = (16,)         # Also 32, 64 in the paper (--config.bn_only.widths).
  c.optim.schedule = "step"
  c.optim.boundaries = (31200, 46800)  # x0.1 at epochs 80, 120 (390 steps/epoch).
  c.train.batch_size = 128
  c.train.steps = 62400            # 160 epochs of 50K at batch 128.
  c.train.max_train_eval = 10000
  c.train.log_every = 390
  c.train.eval_every = 3900
  c.train.checkpoint_every = 3900


VARIANTS = {f.__name__: f for f in (fashion, digits, cifar10)}


def runlocal(c):
  """Two small depths, a few steps: for tests and smoke runs."""
  bn_config.shrink_resnet_for_local(c)
  c.bn_only.depths = (8, 14)
  c.bn_only.widths = (min(c.bn_only.widths[0], 4),)
  c.bn_only.test_size = min(c.bn_only.test_size or 300, 300)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return make_config(arg, variants=VARIANTS, default="fashion",
                     config_file="configs/bn_only.py", fields=bn_only_fields,
                     runlocal=runlocal)
