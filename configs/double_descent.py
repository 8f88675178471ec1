r"""Double descent: `--config=configs/double_descent.py[:VARIANT[,runlocal]]`.

Nakkiran et al. 2020 and the MNIST-1D authors' notebook: with label noise,
test error vs width peaks near the interpolation threshold and falls again
beyond it; without noise there is no clear peak. Nakkiran et al.'s other
two forms: over training (epoch-wise) and over the training-set size
(sample-wise), `double_descent.mode`.

Variants (default mnist1d):
  mnist1d          MLP 40-h-h-10 on MNIST-1D, SGD 0.01, momentum 0.9, batch
                   100, 15% label noise and clean, a CPU budget (minutes).
  mnist1d_paper    The same at the notebook's 500 epochs and widths to 300
                   (~11 min on 2 CPU cores: peak at h = 47, threshold 56;
                   docs/results/double_descent/mnist1d_paper).
  mnist1d_epochwise  Epoch-wise: test error over training (40 log-spaced
                   steps of the 500 epochs) at widths 8 … 512, 15% noise.
  mnist1d_samplewise Sample-wise: test error vs training-set size (250 …
                   4000, nested) at widths 8 … 64, 15% noise, 10000 steps.
  mnist1d_cnn      Conv-2 on MNIST-1D, h channels in the first conv layer.
  cifar10_resnet   Nakkiran et al.'s setting on TFDS CIFAR-10: ResNet widths
                   1 ... 64, Adam 1e-4, 15% noise, 4K epochs (paper scale).
`runlocal` shrinks any variant to a few steps and widths (tests, smoke runs).
Fields not set here keep the defaults and comments of
jaxunknowns/config_defaults.py.
"""

import ml_collections

from jaxunknowns.config_defaults import make_config, shrink_for_local


def sweep_fields(c):
  c.experiment = "double_descent"
  c.seeds = 3                    # Seeds per width, trained at once.
  c.sweep = ml_collections.ConfigDict()
  c.sweep.widths = (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256,
                    384)         # Strictly increasing grid of widths h.
  c.sweep.depth = 2              # Hidden layers: MLP 40-h-h-10.
  c.sweep.label_noise = (0.15, 0.0)  # Noise levels p: the noisy and the clean curve.
  # The next four are read by modes "model" and "epoch" only ("sample" refuses them).
  c.sweep.stop_train_loss = 0.0  # 0: every width trains train.steps (no early stop).
  c.sweep.check_every = 1000     # (Only used with stop_train_loss > 0.)
  c.sweep.capacity = False       # Capacity measures (width_sweep's analysis) off.
  c.sweep.interpolation_error = 0.01  # Mean train error at or below which a width interpolates.
  c.double_descent = ml_collections.ConfigDict()
  c.double_descent.mode = "model"  # "model" (error vs width), "epoch" (vs step), "sample" (vs n).
  c.double_descent.record_points = 0  # mode "epoch": ~log-spaced steps recording the errors
                                     # (snapped to powers of 2 / multiples of train.log_every).
  c.double_descent.train_sizes = ()  # mode "sample": nested training-set sizes, increasing.


def mnist1d(c):
  c.data.name = "mnist1d"
  c.model.name = "mlp"
  c.optim.name = "momentum"      # The notebook: SGD 0.01, momentum 0.9 ...
  c.optim.lr = 0.01
  c.optim.momentum = 0.9
  c.train.batch_size = 100       # ... batch 100 (40 steps an epoch).
  c.train.steps = 4000           # 100 epochs (the notebook: 500): a CPU budget;
                                 # it moves the threshold to h ~ 128, hence widths to 384.
  c.train.log_every = 200
  c.train.eval_every = 1000
  c.train.checkpoint_every = 2000


def mnist1d_paper(c):
  mnist1d(c)
  c.sweep.widths = (4, 8, 12, 16, 20, 24, 32, 40, 47, 56, 64, 80, 96, 128,
                    192, 256, 300)
  c.train.steps = 20000          # 500 epochs, as the notebook.
  c.train.eval_every = 2000
  c.train.checkpoint_every = 4000


def mnist1d_epochwise(c):
  """Epoch-wise: test error over 500 epochs for widths below, at and far
  above the interpolation threshold (h* ≈ 56 at this budget), 15% noise."""
  mnist1d_paper(c)
  c.double_descent.mode = "epoch"
  c.double_descent.record_points = 40
  c.sweep.widths = (8, 16, 32, 56, 128, 512)
  c.sweep.label_noise = (0.15,)


def mnist1d_samplewise(c):
  """Sample-wise: test error vs training-set size (nested subsets of the
  4000 examples, 15% noise, the same 10000 steps for every size) at widths
  around the threshold."""
  mnist1d(c)
  c.double_descent.mode = "sample"
  c.double_descent.train_sizes = (250, 500, 1000, 1500, 2000, 3000, 4000)
  c.sweep.widths = (8, 16, 32, 64)
  c.sweep.label_noise = (0.15,)
  c.train.steps = 10000
  c.train.eval_every = 0         # Evaluate at the end of each stage only.
  c.train.checkpoint_every = 5000


def mnist1d_cnn(c):
  mnist1d(c)
  c.model.name = "conv2"         # Conv(h)-Conv(h)-pool-FC(4h)-FC(4h)-output.
  c.sweep.widths = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)


def cifar10_resnet(c):
  c.data.name = "cifar10"        # TFDS catalogue (network and [tfds] extra).
  c.data.augment = "crop_flip"   # Nakkiran et al. train with augmentation.
  c.model.name = "resnet"        # CIFAR ResNet (widths h, 2h, 4h); theirs:
  c.model.depth = 20             # a pre-activation ResNet18 (h, 2h, 4h, 8h).
  c.sweep.widths = (1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 20, 24, 32, 40, 48,
                    64)
  c.optim.name = "adam"
  c.optim.lr = 1e-4              # Nakkiran et al.: Adam 1e-4 ...
  c.train.batch_size = 128       # ... batch 128 ...
  c.train.steps = 1560000        # ... 4K epochs.
  c.train.log_every = 1000
  # sweep.label_noise = 0.15 replaces a label by a uniformly random class,
  # which may be the true one (Zhang et al.'s convention, and the MNIST-1D
  # notebook's): 13.5% of the labels end wrong. Nakkiran et al.'s 15% are
  # all wrong (a random *incorrect* label): 0.15 x 10/9 = 0.1667 matches it.
  c.train.eval_every = 20000
  c.train.checkpoint_every = 20000
  c.train.max_train_eval = 10000


VARIANTS = {f.__name__: f for f in (mnist1d, mnist1d_paper, mnist1d_epochwise,
                                    mnist1d_samplewise, mnist1d_cnn,
                                    cifar10_resnet)}


def runlocal(c):
  """Three small widths of a few steps: for tests and smoke runs."""
  shrink_for_local(c, steps=40, checkpoint_every=20, sweeps_width=True)
  c.seeds = 2
  c.data.train_size = min(c.data.train_size, 1000)
  c.train.max_train_eval = 500
  c.sweep.widths = tuple(c.sweep.widths[:3])
  if c.double_descent.mode == "epoch":
    c.double_descent.record_points = 6
  if c.double_descent.mode == "sample":
    c.double_descent.train_sizes = (100, 200, 400)
    c.data.train_size = 0


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return make_config(arg, variants=VARIANTS, default="mnist1d",
                     config_file="configs/double_descent.py", fields=sweep_fields,
                     runlocal=runlocal)
