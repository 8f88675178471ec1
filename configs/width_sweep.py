r"""Error and capacity vs width: `--config=configs/width_sweep.py[:VARIANT[,runlocal]]`.

Neyshabur et al. 2015 / 2018: one-hidden-layer networks over widths 2^2 ... 2^k
trained by SGD without explicit regularization; train error reaches zero
early and test error keeps falling with width; ||U - U_0||_F falls with width
and their bound is the only capacity measure that falls too.

Variants (default fashion):
  fashion        One hidden layer on the first 10,000 Fashion-MNIST training
                 images (offline, Debian's dataset-fashion-mnist), widths
                 2^4 ... 2^12: the paper's protocol on MNIST-like images at a
                 size a CPU trains to loss 0.01 (17 min on 2 cores).
  fashion_full   The same on all 60,000 images (hours on a CPU).
  mnist1d        One hidden layer, widths 2^2 ... 2^12, clean MNIST-1D (4,000
                 examples): the capacity trends hold, test error stays flat
                 at 42-44% (docs/results/width_sweep/mnist1d).
  mnist1d_noise  The same with 5% label noise (Neyshabur et al. 2015, Fig. 1).
  mnist1d_deep   Two hidden layers of width h (layer-wise measures only).
  mnist1d_conv   Conv-2 on MNIST-1D, h channels in the first layer.
  cifar10        One hidden layer on TFDS CIFAR-10, widths 2^6 ... 2^15, the
                 paper's scale (needs a network and a big machine).
`runlocal` shrinks any variant to a few steps and widths (tests, smoke runs).
Fields not set here keep the defaults and comments of
jaxunknowns/config_defaults.py.
"""

import ml_collections

from jaxunknowns.config_defaults import make_config, shrink_for_local


def sweep_fields(c):
  c.experiment = "width_sweep"
  c.seeds = 3                    # Seeds per width, trained at once.
  c.sweep = ml_collections.ConfigDict()
  c.sweep.widths = tuple(2 ** k for k in range(2, 13))  # Strictly increasing grid, 4 ... 4096.
  c.sweep.depth = 1              # Hidden layers of the MLP (1 = the papers' nets).
  c.sweep.label_noise = (0.0,)   # Noise levels p; each is a full sweep.
  c.sweep.stop_train_loss = 0.01  # Stop a width once every seed's train loss <= this (0: fixed budget).
  c.sweep.check_every = 500      # Steps between checks of the stopping rule.
  c.sweep.capacity = True        # Compute the capacity measures (analysis/capacity.py).
  c.sweep.interpolation_error = 0.0  # Mean train error at or below which a width interpolates.


def mnist1d(c):
  c.data.name = "mnist1d"
  c.model.name = "mlp"
  c.optim.name = "momentum"      # SGD with momentum 0.9, no weight decay,
  c.optim.lr = 0.01              # a constant learning rate 0.01 (Neyshabur et
  c.optim.momentum = 0.9         # al.'s code: 0.001 at batch 64). At 0.05 (5x fewer steps) width
                                 # 4096 spikes in its first 100 steps (mean
                                 # minibatch loss 4.1 vs 1.7 at width 1024) and
                                 # ends farther from U_0 than width 2048.
  c.train.batch_size = 100       # Batch 100 (40 steps an epoch).
  c.train.steps = 40000          # At most 1000 epochs per width: widths 4-128
                                 # train all of them (128: zero train error,
                                 # loss 0.0097-0.0104), widths 256-4096 stop at train
                                 # loss 0.01 after 28500-13500 steps. ~16 min
                                 # on 2 CPU cores, 3 seeds.
  c.train.log_every = 100
  c.train.eval_every = 500
  c.train.checkpoint_every = 1000


def _lr_005(c):
  """mnist1d_noise, mnist1d_deep and mnist1d_conv were set up at lr 0.05 and
  8000 steps (200 epochs), mnist1d's settings before it moved to 0.01; they
  keep them."""
  c.optim.lr = 0.05
  c.train.steps = 8000


def mnist1d_noise(c):
  mnist1d(c)
  _lr_005(c)
  c.sweep.label_noise = (0.05,)  # Neyshabur et al. 2015: 5% noise, test error still falls.
  c.sweep.stop_train_loss = 0.0  # Noisy labels take long to fit: a fixed budget.


def mnist1d_deep(c):
  mnist1d(c)
  _lr_005(c)
  c.sweep.depth = 2              # 40-h-h-10: layer-wise measures, no 2-layer bound.
  c.sweep.widths = tuple(2 ** k for k in range(2, 11))


def mnist1d_conv(c):
  mnist1d(c)
  _lr_005(c)
  c.model.name = "conv2"         # Conv(h)-Conv(h)-pool-FC(4h)-FC(4h)-output.
  c.sweep.widths = (2, 4, 8, 16, 32, 64)
  c.train.steps = 4000


def fashion(c):
  mnist1d(c)                     # SGD lr 0.01, momentum 0.9, no regularization.
  c.data.name = "fashion_mnist"  # IDX files of Debian's dataset-fashion-mnist.
  c.data.train_size = 10000      # The first 10K of the 60K training images:
                                 # every width from 128 on reaches loss 0.01
                                 # within 9000 steps (57 epochs).
  c.sweep.widths = tuple(2 ** k for k in range(4, 13))  # 16 ... 4096.
  c.sweep.interpolation_error = 1e-4  # Zero training error up to one image in
                                 # 10,000: at loss 0.01 one or two images of a
                                 # seed often stay misclassified (0.003-0.007%
                                 # mean from width 128 on), which a threshold
                                 # of exactly 0 would count as not fitting.
  c.train.batch_size = 64        # Neyshabur et al.: mini-batches of 64.
  c.train.steps = 40000          # 256 epochs at most (only width 16 needs them).
  c.train.eval_every = 1000
  c.train.checkpoint_every = 2000


def fashion_full(c):
  fashion(c)
  c.data.train_size = 0          # All 60K images (938 steps an epoch).
  c.train.steps = 200000         # 213 epochs at most.
  c.train.max_train_eval = 10000  # Train error and margins on a 10K subset.
  c.train.checkpoint_every = 5000
  c.sweep.check_every = 2000


def cifar10(c):
  fashion_full(c)
  c.data.name = "cifar10"        # TFDS catalogue (network and [tfds] extra).
  c.data.augment = "none"        # No explicit regularization of any kind.
  c.sweep.widths = tuple(2 ** k for k in range(6, 16))
  c.train.steps = 780000         # 1000 epochs of 50K at batch 64, the paper's cap.
  c.train.log_every = 500
  c.train.eval_every = 5000
  c.train.checkpoint_every = 5000
  c.sweep.check_every = 5000


VARIANTS = {f.__name__: f for f in (fashion, fashion_full, mnist1d,
                                    mnist1d_noise, mnist1d_deep, mnist1d_conv,
                                    cifar10)}


def runlocal(c):
  """Three small widths of a few steps: for tests and smoke runs."""
  shrink_for_local(c, steps=40, checkpoint_every=20, sweeps_width=True)
  c.seeds = 2
  c.data.train_size = min(c.data.train_size, 1000)
  c.train.max_train_eval = 500
  small = tuple(w for w in c.sweep.widths if w <= 16)[:3]
  c.sweep.widths = small if len(small) >= 2 else (4, 8, 16)
  if c.sweep.stop_train_loss > 0:  # Checks of the stopping rule only.
    c.sweep.check_every = 20


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return make_config(arg, variants=VARIANTS, default="fashion",
                     config_file="configs/width_sweep.py", fields=sweep_fields,
                     runlocal=runlocal)
