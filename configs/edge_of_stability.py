r"""The edge of stability: `--config=configs/edge_of_stability.py[:VARIANT[,runlocal]]`.

Cohen, Kaur, Li, Kolter & Talwalkar (2021): under full-batch gradient
descent with step size η the sharpness λ_max (the top Hessian eigenvalue of
the training loss) rises ("progressive sharpening") until it reaches 2/η,
then hovers there while the loss keeps falling, non-monotonically, over long
times; gradient flow, which has no threshold, keeps sharpening. With Polyak
momentum β the threshold is (2 + 2β)/η, with Nesterov (2 + 2β)/((1 + 2β)η).
Each loss of `eos.losses` trains its step-size grid (plain GD, and Polyak
momentum) as one vmapped program, all seeds at once; a gradient-flow
reference (tiny Euler steps) runs beside it (jaxunknowns/implicit/
edge_of_stability.py).

Variants (default mnist1d):
  mnist1d   Cohen et al.'s fc-tanh (2 x 200, PyTorch's init) on the 4000
            MNIST-1D training examples (offline), MSE and cross-entropy,
            3 seeds: MSE GD η in {0.2, 0.15} (2/η = 10, 13.3) and Polyak
            β = 0.5 at η = 0.2 (threshold 15; β = 0.9 at η = 0.19 diverged),
            cross-entropy GD η = 0.4 (2/η = 5); 1000 steps; the flow at
            η = 0.04 to time 80. 8 minutes on the shared 2-core CPU at
            load 5-7, 24 at load 16-21 (docs/results/edge_of_stability).
  fashion   The same on 5000 Fashion-MNIST images (offline; 784 inputs, so
            4x the parameters): MSE only; λ_max at init is 36-39 here (2
            seeds, measured once), so 2/η = 60, 80, 120; 2000 steps. Not
            run here beyond its runlocal smoke run.
  cifar10   Cohen et al.'s own setting: fc-tanh on the first 5000 CIFAR-10
            training images (TFDS: needs a network), MSE, η in {0.01, 0.02,
            0.04} (their README's example is η = 0.01), 20000 steps: for an
            accelerator.
`runlocal` shrinks any variant to seconds (tests, smoke runs).
Fields not set here keep the defaults and comments of
jaxunknowns/config_defaults.py.
"""

import ml_collections

from jaxunknowns.config_defaults import make_config


def per_loss(**lrs) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
      {"mse": (), "cross_entropy": (), **lrs})


def edge_of_stability_fields(c):
  c.experiment = "edge_of_stability"
  c.seeds = 3                     # Seeds; every step size trains each of them (same inits).
  c.data.train_size = 4000        # The fixed training subset (its first N examples).
  c.model.name = "fc_tanh"        # Cohen et al.'s fc-tanh (tanh MLP, PyTorch's init), or another registry model.
  c.model.widths = (200, 200)     # Hidden widths.
  c.optim.name = "momentum"       # Heavy ball with per-run lr and β (β = 0: plain GD).
  c.optim.lr = 0.1                # Not used: every run takes its η from eos.*lrs.
  c.optim.momentum = 0.5          # β of the Polyak (and Nesterov) runs.
  c.train.batch_size = 4000       # = data.train_size: full-batch GD.
  c.train.steps = 1000            # GD steps of every run.
  c.train.log_every = 10          # Steps per compiled call (= eos.loss_every).
  c.train.eval_every = 0          # Test and train evaluation at the end only.
  c.train.checkpoint_every = 500  # Stages resume from here.
  c.train.eval_batch_size = 1000
  c.eos = ml_collections.ConfigDict()
  c.eos.losses = ("mse", "cross_entropy")  # One stage (program) per loss; the flow uses the first.
  c.eos.lrs = per_loss()          # Plain-GD step sizes η, per loss.
  c.eos.momentum_lrs = per_loss()  # Polyak-momentum step sizes (β = optim.momentum), per loss.
  c.eos.nesterov_lrs = per_loss()  # Nesterov step sizes, per loss (a stage of their own).
  c.eos.every = 50                # Steps between sharpness measurements (and step 0).
  c.eos.loss_every = 10           # Steps between full-batch loss/accuracy records.
  c.eos.lanczos_steps = 20        # m: Lanczos steps (full reorthogonalisation) per measurement.
  c.eos.near = 0.9                # "Reaches the threshold": lambda_max >= near x threshold.
  c.eos.tolerance = 0.1           # "Hovers at it": |mean lambda_max/threshold - 1| <= this (+ 2 seed std).
  c.eos.flow_lr = 0.04            # Gradient flow: Euler steps of this size (2/eta far above lambda_max).
  c.eos.flow_steps = 2000         # Flow steps: it runs to time flow_lr x flow_steps.
  c.eos.flow_every = 200          # Flow steps between sharpness measurements.
  c.eos.seed = 0                  # Seed of the Lanczos start vectors.


def mnist1d(c):
  c.data.name = "mnist1d"         # Generated offline: 4000 train / 1000 test, 40 features.
  c.eos.lrs = per_loss(mse=(0.2, 0.15), cross_entropy=(0.4,))
  c.eos.momentum_lrs = per_loss(mse=(0.2,))


def fashion(c):
  c.data.name = "fashion_mnist"   # IDX files of Debian's dataset-fashion-mnist.
  c.data.train_size = 5000
  c.train.batch_size = 5000
  c.eos.losses = ("mse",)
  c.train.steps = 2000
  c.eos.lrs = per_loss(mse=(2 / 60, 0.025, 2 / 120))
  c.eos.flow_lr = 0.005
  c.eos.flow_steps = 20000
  c.eos.flow_every = 1000


def cifar10(c):
  c.data.name = "cifar10"         # TFDS catalogue: needs a network and [tfds].
  c.data.augment = "none"         # Cohen et al. train on the images as they are.
  c.data.train_size = 5000
  c.train.batch_size = 5000
  c.train.steps = 20000
  c.train.log_every = 50
  c.train.checkpoint_every = 2000
  c.eos.losses = ("mse",)
  c.eos.lrs = per_loss(mse=(0.04, 0.02, 0.01))
  c.eos.every = 100
  c.eos.loss_every = 50
  c.eos.flow_lr = 0.002
  c.eos.flow_steps = 100000
  c.eos.flow_every = 2000


VARIANTS = {f.__name__: f for f in (mnist1d, fashion, cifar10)}


def runlocal(c):
  """Tiny: 256 examples, a 16 x 16 net, 2 seeds, 40 steps; for tests."""
  c.data.train_size = 256
  c.train.batch_size = 256
  c.model.widths = (16, 16)
  c.seeds = 2
  c.train.steps = 40
  c.train.log_every = 5
  c.train.checkpoint_every = 0
  c.train.eval_batch_size = 500
  c.eos.every = 10
  c.eos.loss_every = 5
  c.eos.lanczos_steps = 8
  c.eos.flow_lr = 0.05
  c.eos.flow_steps = 40
  c.eos.flow_every = 20


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return make_config(arg, variants=VARIANTS, default="mnist1d",
                     config_file="configs/edge_of_stability.py",
                     fields=edge_of_stability_fields, runlocal=runlocal)
