r"""Implicit bias of GD on separable data: `--config=configs/max_margin.py[:VARIANT[,runlocal]]`.

Soudry, Hoffer, Nacson, Gunasekar & Srebro (2018): on linearly separable data,
GD from w = 0 on the logistic (or exponential) loss has ||w(t)|| ~ log t, loss
~ 1/t, and its direction converges to the L2 max-margin (hard-margin SVM)
direction, ||w/||w|| - w_hat/||w_hat|||| = O(1/log t). Momentum and SGD share
the bias; Adam does not in general.

Variants (default soudry2d):
  soudry2d      Their Fig. 1: the 2-D set (SVs (0.5, 1.5), (1.5, 0.5) and
                negatives, 12 random points), logistic loss, eta = 1/sigma_max(X),
                GD / momentum / SGD / Adam from 0 for 10^6 steps, 3 data seeds.
  soudry2d_exp  The same with the exponential loss exp(-y w.x).
  soudry2d_long soudry2d for 10^7 steps (about 10x the time).
  clouds        Separable Gaussian clouds in 10-D (100 train points, the test
                draw 1000), Adam with eps -> 0: there the L2 and l_inf
                max-margin directions differ, and so do GD's and Adam's.
  clouds3       Three clouds (multiclass extension): GD against the
                multiclass hard-margin SVM on pairwise margins.
`runlocal` shrinks any variant to 10^4 steps and 2 seeds (tests, smoke runs).
Fields not set here keep the defaults and comments of
jaxunknowns/config_defaults.py; `optim.lr` and `optim.name` are not used
(each optimizer of `max_margin.optimizers` has its own step, below).
"""

import ml_collections

from jaxunknowns.config_defaults import make_config


def max_margin_fields(c):
  c.experiment = "max_margin"
  c.seeds = 3                     # Data seeds: seed s uses data.shuffle_seed + s (random points).
  c.data.name = "soudry2d"
  c.data.normalize = False        # The coordinates define the max-margin solution: keep them.
  c.model.name = "linear"         # The analysis is for linear models (logits linear in w).
  c.model.use_bias = False        # Soudry et al.'s analysis has no bias (a bias would be one
                                  # more coordinate, penalised like the others by the SVM).
  c.model.kernel_init = "zeros"   # GD "from w = 0".
  c.optim.name = "sgd"            # Unused: see max_margin.optimizers.
  c.optim.momentum = 0.9          # Heavy-ball momentum of the `momentum` optimizer.
  c.train.loss = "cross_entropy"  # "cross_entropy" (two classes: the logistic loss) or "exponential".
  c.train.steps = 1_000_000       # Optimizer steps (every optimizer, every seed).
  c.train.batch_size = 1          # Minibatch of the `sgd` optimizer (sampled with replacement).
  c.max_margin = ml_collections.ConfigDict()
  c.max_margin.optimizers = ("gd", "momentum", "sgd", "adam")  # A subset of gd, momentum,
                                  # sgd (minibatches), adam; all full batch but sgd.
  c.max_margin.lr = 0.0           # Step of gd/momentum/sgd; 0 = Soudry's 1/sigma_max(X) per seed.
  c.max_margin.momentum_same_clock = True  # momentum's step = (1 - optim.momentum) x GD's,
                                  # i.e. GD's effective step lr / (1 - beta). False: GD's step
                                  # itself (10x ahead: it overshoots early, and its direction
                                  # then stays ~1 degree off w_hat for ~e^||w|| steps).
  c.max_margin.adam_lr = 1e-3     # Adam's step (optim.b1, optim.b2, optim.eps apply).
  c.max_margin.reduction = "sum"  # "sum": L(w) = sum_n l(y_n w.x_n) as in the paper; or "mean".
  c.max_margin.records_per_decade = 10  # Log-spaced steps at which metrics are recorded.
  c.max_margin.fit_decades = 3.0  # Rates are fitted on the last this-many decades of steps.


def soudry2d(c):
  del c  # The defaults of max_margin_fields.


def soudry2d_exp(c):
  c.train.loss = "exponential"    # exp(-y w.x): the loss of the paper's theorems.


def soudry2d_long(c):
  c.train.steps = 10_000_000      # One more decade of the slow 1/log t convergence.


def clouds(c):
  c.data.name = "synthetic"       # Separable Gaussian clouds through the origin.
  c.data.synthetic.num_train = 100
  c.data.synthetic.num_test = 1000
  c.data.synthetic.dim = 10
  c.data.synthetic.num_classes = 2
  c.data.synthetic.separation = 2.0  # Means at +-2 std: many points near the margin.
  c.max_margin.optimizers = ("gd", "momentum", "adam")
  c.optim.eps = 1e-30             # Adam with eps -> 0 (the theory's Adam): with 1e-8 it turns
                                  # into heavy-ball GD of step lr/eps once the gradients fall
                                  # below eps, and then drifts to the L2 direction like GD.


def clouds3(c):
  clouds(c)
  c.data.synthetic.num_classes = 3
  c.data.synthetic.separation = 4.0
  c.max_margin.optimizers = ("gd", "adam")


VARIANTS = {f.__name__: f for f in (soudry2d, soudry2d_exp, soudry2d_long,
                                    clouds, clouds3)}


def runlocal(c):
  """10^4 steps, 2 seeds, coarse records: for tests and smoke runs."""
  c.seeds = 2
  c.train.steps = 10_000
  c.max_margin.records_per_decade = 5
  c.max_margin.fit_decades = 2.0
  c.data.synthetic.num_test = min(c.data.synthetic.num_test, 200)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return make_config(arg, variants=VARIANTS, default="soudry2d",
                     config_file="configs/max_margin.py", fields=max_margin_fields,
                     runlocal=runlocal)
