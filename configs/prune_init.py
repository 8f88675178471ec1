r"""Pruning at initialization and its sanity checks: `--config=configs/prune_init.py[:VARIANT[,runlocal]]`.

SNIP, GraSP, SynFlow, magnitude and random masks found at initialization,
beside the IMP ticket (one-shot magnitude after training, rewound to the
init), over a density grid down to 0.1% of the weights; layer collapse per
method (Tanaka et al. 2020); and Frankle et al. (2021)'s sanity checks: each
mask trained as found, shuffled within each layer, on reinitialized weights,
and inverted; the ticket also with its signs flipped (Zhou et al. 2019).
Every variant of a density, with the seeds, is one vmapped program.

Variants (default mnist1d):
  mnist1d          MLP 40-100-100-10 on offline MNIST-1D, Adam 1e-2, batch
                   100, 1000 steps, 3 seeds, global budget: 2.5 minutes on a
                   2-core CPU at load 3, 6.5 at load 18.
  mnist1d_budgets  The same with the layer-wise uniform and ERK budgets too:
                   6.5 minutes at load 3-8.
  lenet_fashion    LeNet-300-100 on Fashion-MNIST (offline), Adam 1.2e-3,
                   batch 100, 1000 steps; SNIP, GraSP, SynFlow, random and the
                   IMP ticket at 2%, 0.5% and 0.1%, variants found, shuffled,
                   reinit (and sign_flip): 26 minutes on a 2-core CPU at load
                   16-20.
  vgg16_cifar10    VGG-16 (BN) on TFDS CIFAR-10, Tanaka et al.'s protocol
  resnet20_cifar10 ResNet-20 on TFDS CIFAR-10; both need a network and an
                   accelerator (160 epochs per stage).
`runlocal` shrinks any variant to seconds (tests, smoke runs; the CIFAR conv
nets, under tfds.testing.mock_data, to under 2 minutes on a 2-core CPU).
Fields not set here keep the defaults and comments of
jaxunknowns/config_defaults.py.
"""

import ml_collections

from jaxunknowns.config_defaults import make_config, shrink_for_local
from jaxunknowns.config_defaults import resnet20_cifar10 as openlth_resnet20


def prune_init_fields(c):
  c.experiment = "prune_init"
  c.seeds = 3
  c.prune_init = ml_collections.ConfigDict()
  c.prune_init.methods = ("snip", "grasp", "grasp_magnitude", "synflow",
                           "magnitude", "random")  # Scores (pruning/init_scores.py);
                                       # grasp_magnitude: |w ⊙ Hg|, lowest pruned.
  c.prune_init.budgets = ("global",)   # Layer budgets: "global", "uniform", "erk".
  c.prune_init.densities = (0.2, 0.05, 0.02, 0.01, 0.003, 0.001)  # Fractions of the
                                       # prunable weights kept (the dense net is the 100% row).
  c.prune_init.variants = ("found", "shuffled", "reinit", "inverted",
                           "sign_flip")  # Sanity checks; sign_flip: the IMP ticket only.
  c.prune_init.rounds = 100            # SynFlow's iterations (exponential density schedule).
  c.prune_init.score_batch = 100       # Examples SNIP/GraSP score on: a random batch of that
                                       # many training examples, not class-balanced (GraSP's
                                       # reference code takes 10 per class).
  c.prune_init.grasp_temperature = 200.0  # GraSP's logit temperature T (reference code).
  c.prune_init.score_statistics = "running"  # BatchNorm while SNIP/GraSP score: "running"
                                       # (eval mode, Synaptic-Flow's code) or "batch" (the
                                       # scoring batch's own statistics, train mode, as GraSP's code).
  c.prune_init.imp = "oneshot"         # IMP ticket: "oneshot" (computed here), an imp workdir's
                                       # masks/level_LL.npz, or "" for none.
  c.train.eval_every = 0               # Evaluate at the end of each stage.
  c.train.checkpoint_every = 0


def mnist1d(c):
  c.data.name = "mnist1d"
  c.model.name = "mlp"
  c.model.widths = (100, 100)          # The MNIST-1D paper's MLP.
  c.optim.name = "adam"
  c.optim.lr = 1e-2                    # The MNIST-1D authors' Adam setting.
  c.train.batch_size = 100
  c.train.steps = 1000
  c.train.log_every = 100


def mnist1d_budgets(c):
  mnist1d(c)
  c.prune_init.budgets = ("global", "uniform", "erk")


def lenet_fashion(c):
  c.data.name = "fashion_mnist"        # Debian's dataset-fashion-mnist IDX files.
  c.model.name = "lenet_300_100"
  c.optim.name = "adam"                # Frankle & Carbin's LeNet protocol
  c.optim.lr = 1.2e-3                  # (Adam 1.2e-3; SNIP used SGD momentum 0.1).
  c.train.batch_size = 100
  c.train.steps = 1000                 # 1.7 epochs: what a 2-core CPU affords.
  c.train.log_every = 100
  c.train.max_train_eval = 10000
  c.prune_init.methods = ("snip", "grasp", "synflow", "random")
  c.prune_init.densities = (0.02, 0.005, 0.001)
  c.prune_init.variants = ("found", "shuffled", "reinit", "sign_flip")


def vgg16_cifar10(c):
  c.data.name = "cifar10"              # TFDS catalogue: needs a network and [tfds].
  c.data.augment = "crop_flip"
  c.model.name = "vgg16"               # With BatchNorm (Tanaka et al.'s VGG-16).
  c.optim.name = "momentum"            # Tanaka et al.: SGD momentum, lr 0.1,
  c.optim.lr = 0.1                     # x0.1 at epochs 60 and 120 of 160,
  c.optim.weight_decay = 1e-4          # batch 128, wd 1e-4.
  c.optim.schedule = "step"
  c.optim.boundaries = (23460, 46920)
  c.train.batch_size = 128
  c.train.steps = 62560
  c.train.log_every = 391
  c.train.max_train_eval = 10000
  c.prune_init.score_batch = 100       # As many as GraSP's 10 per class (a random batch).
  c.prune_init.densities = (0.1, 0.03, 0.01, 0.003, 0.001)


def resnet20_cifar10(c):
  vgg16_cifar10(c)
  openlth_resnet20(c)                  # ResNet-20 widths 16/32/64, Kaiming init,
  c.optim.weight_decay = 1e-4          # the same 160-epoch schedule as VGG-16.
  c.optim.schedule = "step"
  c.optim.boundaries = (23460, 46920)
  c.train.steps = 62560
  c.train.log_every = 391


VARIANTS = {f.__name__: f for f in (mnist1d, mnist1d_budgets, lenet_fashion,
                                    vgg16_cifar10, resnet20_cifar10)}


def runlocal(c):
  """A few steps, 2 seeds, 3 densities, 5 SynFlow rounds: tests, smoke runs."""
  c.model.name = "mlp" if c.model.name == "lenet_300_100" else c.model.name
  # An MLP 16-16, VGG-16 with 4..32 channels.
  shrink_for_local(c, steps=20, checkpoint_every=0, widths=(16, 16),
                   width_multiplier=1 / 16)
  c.train.eval_every = 0
  c.train.max_train_eval = 500
  c.seeds = 2
  c.train.batch_size = min(c.train.batch_size, 32)
  c.prune_init.densities = (0.1, 0.01)
  c.prune_init.rounds = 5
  c.prune_init.score_batch = 20
  if c.model.name != "mlp":
    # The CIFAR conv nets (vgg16_cifar10, resnet20_cifar10): a stage trains
    # every method x variant x seed in one program (58 runs) and evaluates
    # each on the whole test split, seconds a run on a CPU (8.5 minutes a
    # stage at ResNet width 8, 3 at VGG-16's 1/16). Here one density, 18
    # runs: a data-based score, GraSP's Hessian, SynFlow's rounds and the
    # IMP ticket on the BN conv net, the variants that read scores or
    # signs, narrower nets, 10 steps; the MLPs' runlocal keeps every method
    # and variant (the tests).
    c.prune_init.densities = (0.1,)
    c.prune_init.methods = ("snip", "grasp", "synflow")
    c.prune_init.variants = ("found", "inverted", "sign_flip")
    c.train.max_train_eval = 100
    c.train.steps = 10
    if c.model.name == "resnet":
      c.model.width = 4
    else:
      c.model.width_multiplier = min(c.model.width_multiplier, 1 / 32)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return make_config(arg, variants=VARIANTS, default="mnist1d",
                     config_file="configs/prune_init.py",
                     fields=prune_init_fields, runlocal=runlocal)
