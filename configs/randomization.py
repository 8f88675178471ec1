r"""Zhang et al.'s randomization tests: `--config=configs/randomization.py[:VARIANT[,runlocal]]`.

True labels, random labels, shuffled pixels, random pixels and Gaussian
inputs; labels corrupted with probability p over a grid; and a
weight-decay / dropout / augmentation ablation on true and random labels --
all with the same hyper-parameters, each a resumable stage of its own.
How the stages are organised: jaxunknowns/overparam/randomization.py.

Variants (default mnist1d):
  mnist1d       MLP 1x512 (Zhang et al.'s MLP 1x512) on MNIST-1D: minutes on a CPU.
  fashion_mlp   MLP 1x512 on Fashion-MNIST (offline).
  cifar10_mlp   MLP 1x512 on TFDS CIFAR-10, Zhang et al.'s protocol (SGD
                0.01, momentum 0.9; needs a network).
`runlocal` shrinks any variant to a few steps (tests, smoke runs).
Fields not set here keep the defaults and comments of
jaxunknowns/config_defaults.py.
"""

import ml_collections

from jaxunknowns.config_defaults import make_config, shrink_for_local


def randomization_fields(c):
  c.experiment = "randomization"
  c.seeds = 3                    # Seeds per stage, trained at once.
  c.randomization = ml_collections.ConfigDict()
  c.randomization.variants = ("true_labels", "random_labels", "shuffled_pixels",
                              "random_pixels", "gaussian")  # Zhang et al.'s tests.
  c.randomization.corruptions = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # Label corruption grid p (increasing).
  c.randomization.fit_accuracy = 1.0  # Training accuracy that counts as "fitted".
  c.randomization.check_every = 1000  # Steps between checks; a stage stops once all seeds fit.
  c.ablation = ml_collections.ConfigDict()
  # Regularizer cells ('+'-joined names of weight_decay, dropout, augment) on
  # each kind of labels; () = none. The cell without regularization is the
  # variant's own stage. (Augmentation keeps even the true labels from
  # fitting within 20K steps here, so random labels skip it by default.)
  c.ablation.true_labels = ("weight_decay", "dropout", "augment")  # Cells on the true labels.
  c.ablation.random_labels = ("weight_decay", "dropout")  # Cells on random labels.
  c.ablation.weight_decay = 5e-4  # L2 coefficient of the weight-decay cells.
  c.ablation.dropout = 0.2        # Dropout rate after every hidden layer.
  c.ablation.max_shift = 4        # Sequences: random shift by up to this many positions.


def mnist1d(c):
  c.data.name = "mnist1d"
  c.model.name = "mlp"
  c.model.widths = (512,)        # Zhang et al.'s MLP 1x512.
  c.optim.name = "adam"          # Adam 2e-3 fits 4000 random labels in ~9K
  c.optim.lr = 2e-3              # steps (1e-3: ~12K; 3e-3 oscillates near 100%).
  c.train.batch_size = 100
  c.train.steps = 20000          # The most any stage trains (500 epochs).
  c.train.log_every = 100
  c.train.eval_every = 100       # Resolution of "steps to fit".
  c.train.checkpoint_every = 1000


def fashion_mlp(c):
  mnist1d(c)
  c.data.name = "fashion_mnist"  # Debian's dataset-fashion-mnist IDX files.
  c.train.batch_size = 128
  c.train.steps = 100000
  c.train.eval_every = 500
  c.train.checkpoint_every = 5000
  c.randomization.check_every = 2500


def cifar10_mlp(c):
  fashion_mlp(c)
  c.data.name = "cifar10"        # TFDS catalogue (network and [tfds] extra).
  c.data.augment = "none"        # Augmentation only in the ablation's cells.
  c.optim.name = "momentum"      # Zhang et al.: SGD, momentum 0.9, lr 0.01
  c.optim.lr = 0.01              # (they also decay it by 0.95 per epoch).
  c.optim.momentum = 0.9
  c.train.steps = 200000


VARIANTS = {f.__name__: f for f in (mnist1d, fashion_mlp, cifar10_mlp)}


def runlocal(c):
  """Every part, tiny: for tests and smoke runs."""
  shrink_for_local(c, steps=40, checkpoint_every=20)
  c.seeds = 2
  c.data.train_size = min(c.data.train_size, 500)
  c.randomization.corruptions = (0.0, 0.5, 1.0)
  c.randomization.check_every = 20
  c.ablation.true_labels = ("weight_decay+dropout+augment",)
  c.ablation.random_labels = ()


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return make_config(arg, variants=VARIANTS, default="mnist1d",
                     config_file="configs/randomization.py", fields=randomization_fields,
                     runlocal=runlocal)
