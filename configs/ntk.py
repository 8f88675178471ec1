r"""The empirical NTK and the lazy regime: `--config=configs/ntk.py[:VARIANT[,runlocal]]`.

Lee et al. (2019): as width grows, the weights move less relative to their
size (like 1/sqrt(width) in NTK parameterization), the empirical NTK stays
closer to its value at init, and the network's predictions approach those
of its linearization (kernel regression with the full per-logit kernel at
init, Lee et al.'s eq. 9). Fort et al. (2020): the kernel moves fastest
early in training. Each width of `ntk.widths` is a stage training all seeds
at once; how the measures are taken: jaxunknowns/overparam/ntk.py.

Variants (default mnist1d):
  mnist1d           One hidden layer in NTK parameterization (model ntk_mlp),
                    widths 16..1024, on 256 MNIST-1D training examples with
                    the squared loss and full-batch gradient descent (lr 1),
                    1000 steps, 3 seeds; a few minutes on an idle 2-core CPU
                    (see docs/results/ntk/README.md for the measured time).
  mnist1d_standard  The same net in standard parameterization (model mlp,
                    LeCun-normal init) with lr 0.1, the parameterization
                    Lee et al.'s 1/sqrt(width) scaling is NOT stated for
                    (not run here; about as long as mnist1d).
`runlocal` shrinks any variant to seconds (tests, smoke runs).
Fields not set here keep the defaults and comments of
jaxunknowns/config_defaults.py.
"""

import ml_collections

from jaxunknowns.config_defaults import make_config, shrink_for_local


def ntk_fields(c):
  c.experiment = "ntk"
  c.seeds = 3                    # Seeds per width, trained and measured at once.
  c.ntk = ml_collections.ConfigDict()
  c.ntk.widths = (16, 32, 64, 128, 256, 512, 1024)  # Hidden widths, strictly increasing: one stage each.
  c.ntk.depth = 1                # Hidden layers, all of the stage's width.
  c.ntk.probe_size = 32          # First training examples whose kernel is tracked over training.
  c.ntk.record_points = 8        # Log-spaced steps in [1, train.steps] where it is measured.
  c.ntk.test_size = 256          # First test examples of the kernel-regression comparison.
  c.ntk.chunk_size = 64          # Examples per Jacobian block (memory: 2 x chunk x outputs x params).
  c.ntk.ridge = 1e-5             # Kernel regression's ridge, times the mean diagonal of Θ_0
                                 # (the full per-logit kernel at init: [n C, n C], float64).
  c.train.eval_every = 0         # Evaluate at the end only (the callback records the rest).
  c.train.checkpoint_every = 500  # Steps between checkpoints (multiple of log_every).


def mnist1d(c):
  c.data.name = "mnist1d"
  c.data.train_size = 256        # Full batch; the kernel regression solves on all of it.
  c.model.name = "ntk_mlp"       # NTK parameterization (models/mlp.py, NTKDense).
  c.train.loss = "mse"           # The squared loss of Lee et al.'s linearization theorem.
  c.train.batch_size = 256       # Full-batch gradient descent.
  c.optim.name = "sgd"
  c.optim.lr = 1.0               # NTK parameterization: an O(1) learning rate at every width.
  c.train.steps = 1000
  c.train.log_every = 100
  c.train.loop = "python"        # One compiled step, whatever the log-spaced record steps.


def mnist1d_standard(c):
  mnist1d(c)
  c.model.name = "mlp"           # Standard parameterization.
  c.model.kernel_init = "lecun_normal"  # The same forward pass at init (up to the gains).
  c.optim.lr = 0.1


VARIANTS = {f.__name__: f for f in (mnist1d, mnist1d_standard)}


def runlocal(c):
  """Tiny: three widths, 64 examples, 2 seeds; for tests and smoke runs."""
  shrink_for_local(c, steps=20, checkpoint_every=0)
  c.train.eval_every = 0
  c.data.train_size = 64
  c.train.batch_size = 64
  c.seeds = 2
  c.ntk.widths = (16, 32, 64)
  c.ntk.probe_size = 16
  c.ntk.test_size = 32
  c.ntk.chunk_size = 16
  c.ntk.record_points = 5


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return make_config(arg, variants=VARIANTS, default="mnist1d",
                     config_file="configs/ntk.py",
                     fields=ntk_fields, runlocal=runlocal)
