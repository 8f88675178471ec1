r"""Why BatchNorm helps (Santurkar et al. 2018):
`--config=configs/bn_smoothness.py[:VARIANT[,runlocal]]`.

The same network trained without BN, with BN and with "noisy" BN (each BN
output shifted and scaled by noise re-drawn every step), seeds batched; every
`smoothness.every` steps callbacks measure, on a fixed probe batch in train
mode, the loss variation and gradient predictiveness along the gradient over
the step sizes `smoothness.step_sizes`, the effective beta-smoothness, and the
ICS (||G - G'||, cos(G, G')) of every layer.

Variants (default fashion_mlp):
  fashion_mlp    MLP 784-256x4-10 on Fashion-MNIST (offline), plain SGD 0.1.
  mnist1d_mlp    MLP 40-128x4-10 on MNIST-1D (offline, generated), plain SGD 0.1.
  cifar10_vgg    VGG-11 on TFDS CIFAR-10, the paper's scale (needs a network,
                 the [tfds] extra and an accelerator).
`runlocal` shrinks any variant to a few steps (tests, smoke runs).
Fields not set here keep the defaults and comments of
jaxunknowns/config_defaults.py.
"""

import ml_collections

from jaxunknowns.config_defaults import make_config, shrink_for_local


def smoothness_fields(c):
  c.experiment = "bn_smoothness"
  c.seeds = 3                    # Seeds per arm, trained at once.
  c.model.noise_mean_std = 0.5   # noisy_batch: per-step shift m_j ~ N(0, 0.5^2) per activation.
  c.model.noise_scale_std = 0.5  # noisy_batch: per-step scale exp(N(0, 0.5^2)) per activation.
  c.model.noise_per = "batch"    # noisy_batch: one draw shared by the "batch", or one per "example" (Santurkar et al.).
  c.smoothness = ml_collections.ConfigDict()
  c.smoothness.arms = ("none", "batch", "noisy_batch")  # model.norm of each arm.
  c.smoothness.every = 100       # Steps between measurements (also at step 0 and the end).
  # Step sizes eta of the moves theta - eta g (the trainer's own step is lr g):
  c.smoothness.step_sizes = (0.05, 0.1, 0.2, 0.4, 0.8)
  c.smoothness.probe_size = 0    # Probe batch size (0 = train.batch_size, BN's batch).
  c.smoothness.seed = 0          # Seed of the probe batch and of the measurement's noise draw.
  c.smoothness.ics = True        # Measure the ICS of every layer.


def fashion_mlp(c):
  c.data.name = "fashion_mnist"  # IDX files of Debian's dataset-fashion-mnist.
  c.model.name = "mlp"
  c.model.widths = (256, 256, 256, 256)  # Deep enough for BN to matter.
  c.optim.name = "sgd"           # Plain SGD: the ICS update is exactly -lr g.
  c.optim.lr = 0.1               # One learning rate for every arm.
  c.train.batch_size = 128
  c.train.steps = 3000           # 6.4 epochs.
  c.train.log_every = 100
  c.train.eval_every = 500
  c.train.checkpoint_every = 1000
  c.train.max_train_eval = 10000  # Train accuracy on a 10K subset.


def mnist1d_mlp(c):
  fashion_mlp(c)
  c.data.name = "mnist1d"
  c.model.widths = (128, 128, 128, 128)
  c.train.steps = 4000           # 100 epochs of MNIST-1D's 4000 examples.
  c.train.max_train_eval = 0


def cifar10_vgg(c):
  c.data.name = "cifar10"        # TFDS catalogue: needs a network and [tfds].
  c.data.augment = "crop_flip"
  c.model.name = "vgg11"         # The paper's VGG on CIFAR-10.
  c.model.kernel_init = "kaiming_normal"
  c.optim.name = "sgd"           # Paper: SGD; one lr for both arms here.
  c.optim.lr = 0.1
  c.train.batch_size = 128
  c.train.steps = 15000          # ~38 epochs; the paper's Fig. 4 spans 15K steps.
  c.train.log_every = 100
  c.train.eval_every = 1000
  c.train.checkpoint_every = 1000
  c.train.max_train_eval = 10000
  c.smoothness.every = 500


VARIANTS = {f.__name__: f for f in (fashion_mlp, mnist1d_mlp, cifar10_vgg)}


def runlocal(c):
  """A few steps of a small model: for tests and smoke runs."""
  shrink_for_local(c, steps=20, checkpoint_every=10, width_multiplier=1 / 16)
  c.seeds = 2
  c.train.batch_size = 32
  c.train.max_train_eval = 500
  c.smoothness.every = 10
  c.smoothness.step_sizes = (0.1, 0.4)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return make_config(arg, variants=VARIANTS, default="fashion_mlp",
                     config_file="configs/bn_smoothness.py", fields=smoothness_fields,
                     runlocal=runlocal)
