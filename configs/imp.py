r"""Lottery tickets by iterative magnitude pruning: `--config=configs/imp.py[:VARIANT[,runlocal]]`.

Variants (default mnist1d):
  mnist1d           The MNIST-1D authors' residual MLP (width 100) on offline
                    MNIST-1D, Adam 2e-2, 11 levels, 3 seeds vmapped with both
                    controls: about 1.5 min on a shared 2-core CPU.
  mnist1d_notebook  Their lottery-ticket notebook's protocol: residual MLP
                    width 500, Adam 2e-2, batch 100, 1501 steps a level, all
                    4000 training examples, every layer pruned 20% a level
                    (theirs: ~1% of the weights a round, 91 rounds, too slow
                    here) to 8.6%, random-mask control: about 10 min.
  retrain           Weight rewinding vs lr rewinding vs fine-tuning (Renda et
                    al. 2020) on mnist1d with a step lr schedule: ~3 min.
  lenet_fashion     LeNet-300-100 on Fashion-MNIST (offline), Adam 1.2e-3,
                    batch 60, layer-wise 20%/20%/10% (Frankle & Carbin).
  lenet_mnist       The same on TFDS MNIST, the paper's 50K iterations.
  conv2_cifar10     Conv-2/4/6 on TFDS CIFAR-10, the paper's protocols
  conv4_cifar10     (conv 10%/10%/15%, dense 20%, output 10% per level).
  conv6_cifar10
  resnet20_cifar10  ResNet-20, global pruning 20%, rewinding to step 2000
                    (OpenLTH / Frankle et al. 2020).
  stability         mnist1d plus the instability analysis of the dense
                    network over rewind steps k and of IMP tickets.
`runlocal` shrinks any variant to a few steps (tests, smoke runs).
Global or one-shot pruning of a layer-wise variant: add
`--config.prune.output_fraction=-1` (layer-wise rates are refused there).
Fields not set here keep the defaults and comments of
jaxunknowns/config_defaults.py.
"""

import ml_collections

from jaxunknowns.config_defaults import (make_config, openlth_resnet20_cifar10,
                                         shrink_for_local)


def imp_fields(c):
  c.experiment = "imp"
  c.prune = ml_collections.ConfigDict()
  c.prune.levels = 10            # Pruning levels after the dense level 0.
  c.prune.method = "layerwise"   # "layerwise" (a rate per layer) or "global".
  c.prune.fraction = 0.2         # Fraction of the remaining weights pruned per level.
  c.prune.conv_fraction = -1.0   # Layer-wise rate of conv kernels (-1: prune.fraction).
  c.prune.output_fraction = 0.1  # Layer-wise rate of the output layer (-1: prune.fraction).
  c.prune.layer_rates = ()       # Layer-wise overrides: ("Dense_0=0.1", "output=0.05");
                                 # on the command line "'Dense_0=0.1','output=0.05'".
  c.prune.exclude_output = False  # Global pruning: keep the output layer dense.
  c.prune.rewind_step = 0        # k: survivors rewound to their step-k values.
  c.prune.retrain = "rewind_weights"  # After each pruning: "rewind_weights" (to
                                 # step k), "rewind_lr" (trained weights, the lr
                                 # schedule replayed from k) or "finetune"
                                 # (trained weights, the final lr); Renda et al. 2020.
  c.prune.compare_retrain = ()   # Other retrain modes trained as arms, each its
                                 # own IMP lineage at the same pruning rates.
  c.prune.controls = ("random_reinit", "random_prune")  # Trained each level.
  c.prune.initial_mask = ""      # Optional masks/level_LL.npz to start from.
  c.prune.one_shot_remaining = 0.0  # >0: one level pruned straight to this density
                                 # (of all prunable weights; from prune.initial_mask's
                                 # survivors if given, which must be denser).
  # Layer-wise rates (conv, output, layer_rates) apply to iterative layer-wise
  # pruning only; global and one-shot pruning refuse them (set -1 / ()).
  c.stability = ml_collections.ConfigDict()
  c.stability.enabled = False    # Run the linear-mode-connectivity analysis.
  c.stability.rewind_steps = (0,)  # Dense network: instability from each step k.
  c.stability.levels = ()        # IMP levels whose tickets are analysed too.
  c.stability.points = 30        # Points on the line between the two copies.
  c.reference = ""               # The findings compared with: a key of lottery/papers.py's TICKETS.


def mnist1d(c):
  c.seeds = 3                    # Vmapped: every ± in the report is over seeds.
  c.data.name = "mnist1d"
  c.data.validation_size = 500   # Held out of the 4000 for early stopping.
  c.model.name = "residual_mlp"  # The MNIST-1D authors' MLPBase (their benchmark
  c.model.widths = (100, 100)    # MLP, 40-100-100-10 with one residual block).
  c.optim.name = "adam"
  c.optim.lr = 2e-2              # Their lottery-ticket notebook's Adam lr.
  c.train.batch_size = 100
  c.train.steps = 1500           # Per level (their ticket notebook: 1501).
  c.train.log_every = 100
  c.train.eval_every = 100       # Early-stopping resolution.
  c.train.checkpoint_every = 500
  c.prune.levels = 11            # About 90% sparsity at the last level.
  c.reference = "mnist1d_notebook"


def mnist1d_notebook(c):
  """The MNIST-1D authors' lottery-ticket notebook (lottery-tickets.ipynb)."""
  mnist1d(c)
  c.data.validation_size = 0     # They train on all 4000 and test on the 1000.
  c.model.name = "residual_mlp"  # h = relu(W0 x); h = h + relu(W1 h); W_out h.
  c.model.widths = (500, 500)
  c.optim.lr = 2e-2
  c.train.steps = 1501
  c.train.checkpoint_every = 1501
  c.prune.output_fraction = -1.0  # Every layer at one rate, as theirs.
  c.prune.controls = ("random_prune",)  # Their control: random masks, same init.


def retrain(c):
  """Renda et al.'s comparison on the default: weight rewinding (the tickets,
  to step 0) vs lr rewinding vs fine-tuning, each its own IMP lineage."""
  mnist1d(c)
  c.optim.schedule = "step"      # A schedule to replay: lr x0.1 at 50% and 75%
  c.optim.boundaries = (750, 1125)  # of training (their ResNets' shape).
  c.prune.compare_retrain = ("rewind_lr", "finetune")
  c.prune.controls = ()          # The arms are the comparison here.
  c.reference = ""               # Judged on Renda et al.'s claims only.


def lenet_fashion(c):
  c.data.name = "fashion_mnist"  # Debian's dataset-fashion-mnist IDX files.
  c.data.validation_size = 5000  # Frankle & Carbin hold out 5K for early stopping.
  c.model.name = "lenet_300_100"
  c.optim.name = "adam"
  c.optim.lr = 1.2e-3            # Frankle & Carbin's LeNet protocol ...
  c.train.batch_size = 60        # ... batch 60.
  c.train.steps = 10000          # Per level (the paper: 50K on MNIST).
  c.train.log_every = 500
  c.train.eval_every = 500
  c.train.checkpoint_every = 2500
  c.train.max_train_eval = 10000  # Train accuracy on a 10K subset: cheaper.
  c.prune.levels = 14            # 0.8^14 of hidden weights: 4.4% remaining.
  c.prune.output_fraction = 0.1  # 20% per level for hidden layers, 10% output.
  c.reference = "frankle_carbin_lenet"


def lenet_mnist(c):
  lenet_fashion(c)
  c.data.name = "mnist"          # TFDS catalogue (network and [tfds] extra).
  c.train.steps = 50000          # The paper's 50K iterations per level.
  c.train.eval_every = 1000
  c.train.checkpoint_every = 5000
  c.prune.levels = 20


def _conv(c, name, lr, steps, conv_fraction):
  c.data.name = "cifar10"        # TFDS catalogue (network and [tfds] extra).
  c.data.validation_size = 5000
  c.data.augment = "none"        # The paper trains Conv-2/4/6 without augmentation.
  c.model.name = name
  c.model.kernel_init = "glorot_normal"  # The paper's Gaussian Glorot init.
  c.optim.name = "adam"
  c.optim.lr = lr
  c.train.batch_size = 60
  c.train.steps = steps
  c.train.log_every = 500
  c.train.eval_every = 1000
  c.train.checkpoint_every = 5000
  c.train.max_train_eval = 10000
  c.prune.levels = 20
  c.prune.conv_fraction = conv_fraction
  c.prune.output_fraction = 0.1
  c.reference = "frankle_carbin_conv"


def conv2_cifar10(c):
  _conv(c, "conv2", 2e-4, 20000, 0.1)


def conv4_cifar10(c):
  _conv(c, "conv4", 3e-4, 25000, 0.1)


def conv6_cifar10(c):
  _conv(c, "conv6", 3e-4, 30000, 0.15)


def resnet20_cifar10(c):
  openlth_resnet20_cifar10(c)
  c.data.validation_size = 5000
  c.model.norm = "batch"
  c.train.eval_every = 2000
  c.train.checkpoint_every = 2000
  c.train.max_train_eval = 10000
  c.prune.method = "global"      # One magnitude threshold over all kernels.
  c.prune.fraction = 0.2
  c.prune.output_fraction = -1.0
  c.prune.levels = 16
  c.prune.rewind_step = 2000     # Late rewinding: stable from ≈2000 iterations.
  c.reference = "frankle2020_resnet20"


def stability(c):
  mnist1d(c)
  c.stability.enabled = True
  c.stability.rewind_steps = (0, 25, 100, 250, 500)
  c.stability.levels = (4, 8)
  c.prune.levels = 8


VARIANTS = {f.__name__: f for f in (
    mnist1d, mnist1d_notebook, retrain, lenet_fashion, lenet_mnist, conv2_cifar10, conv4_cifar10,
    conv6_cifar10, resnet20_cifar10, stability)}


def runlocal(c):
  """Three tiny levels of a few steps: for tests and smoke runs."""
  # Conv-2/4/6 at 1/16 width: full width (3.3M weights) ran at 0.15 steps/s.
  shrink_for_local(c, steps=40, checkpoint_every=20, width_multiplier=1 / 16)
  c.train.max_train_eval = 500
  c.prune.levels = 2
  c.prune.rewind_step = min(c.prune.rewind_step, 10)
  c.stability.rewind_steps = tuple(k for k in c.stability.rewind_steps if k < 20)
  c.stability.levels = tuple(l for l in c.stability.levels if l <= 2) or (
      (1,) if c.stability.enabled else ())
  if c.stability.enabled:  # Off, the points would be recorded, never used.
    c.stability.points = 5


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return make_config(arg, variants=VARIANTS, default="mnist1d",
                     config_file="configs/imp.py", fields=imp_fields,
                     runlocal=runlocal)
