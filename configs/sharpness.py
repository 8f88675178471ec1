r"""Flat vs sharp minima: `--config=configs/sharpness.py[:VARIANT[,runlocal]]`.

Keskar, Mudigere, Nocedal, Smelyanskiy & Tang (2017): with the same epochs,
large batches (10% of the data) converge to sharper minima -- larger
eps-sharpness and top Hessian eigenvalue -- that generalize worse.

Variants (default fashion_lenet):
  fashion_lenet  LeNet-300-100 on Fashion-MNIST (offline), Adam 1e-3, batch 64
                 vs 6000 (10% of the 60K training set), the same 5 epochs,
                 3 seeds per arm; about 10 minutes on a 2-core CPU.
  fashion_sgd    The same with plain SGD, lr 0.05 for both arms (the eigenvalue
                 of GD is capped near 2/lr: the edge-of-stability bonus).
`runlocal` shrinks any variant to seconds (tests, smoke runs).
Fields not set here keep the defaults and comments of
jaxunknowns/config_defaults.py and analysis/hessian.default_config().
"""

import ml_collections

from jaxunknowns.analysis import hessian
from jaxunknowns.config_defaults import make_config, shrink_for_local


def arm(**sections) -> ml_collections.ConfigDict:
  """Overrides of one arm: arm(train={"batch_size": 64})."""
  return ml_collections.ConfigDict(sections)


def sharpness_fields(c):
  c.experiment = "sharpness"
  c.seeds = 3                     # Seeds per arm, trained at once.
  c.epochs = 5.0                  # Budget per arm in epochs (train.steps = epochs x N / batch); 0 = train.steps.
  c.arms = ml_collections.ConfigDict()
  c.arms.small_batch = arm(train={"batch_size": 64})    # Keskar's SB (they use 256).
  c.arms.large_batch = arm(train={"batch_size": 6000})  # LB: 10% of the training set.
  c.compare = ("small_batch", "large_batch")  # Arms to run, in order (the last is compared to the first).
  c.train.eval_every = 0          # Evaluate at the end only.
  c.train.checkpoint_every = 0    # Checkpoint at the end of each arm (reruns skip it).
  c.hessian = hessian.default_config()
  c.hessian.enabled = True        # Also the top eigenvalue along training (the end is always computed).
  c.hessian.k = 1                 # Top eigenvalue only.
  c.hessian.num_steps = 20        # Lanczos steps (the top eigenvalue converges in far fewer).
  c.hessian.subset_size = 1000    # Fixed training subset of the Hessian.
  c.sharpness = ml_collections.ConfigDict()
  c.sharpness.epsilons = (1e-3, 5e-4)  # Keskar's eps values.
  c.sharpness.maximiser = "sign_ascent"  # "sign_ascent" or "lbfgsb" (scipy's L-BFGS-B, Keskar et al.'s).
  c.sharpness.iterations = 10     # Steps of the maximiser (Keskar: 10 L-BFGS-B iterations).
  c.sharpness.step = 1.0          # sign_ascent: step as a fraction of the box half-width eps(|x|+1) (1: centre to face in one step).
  c.sharpness.subset_size = 5000  # Fixed random training subset of the sharpness loss (0 = all).
  c.sharpness.chunk_size = 1000   # Examples per forward pass (divides subset_size; 0 = all at once).
  c.sharpness.seed = 0            # Seed of the subset.
  c.sharpness.hessian_points = 5  # Eigenvalue computations along training per arm (0 = end only).


def fashion_lenet(c):
  c.data.name = "fashion_mnist"   # IDX files of Debian's dataset-fashion-mnist.
  c.model.name = "lenet_300_100"
  c.optim.name = "adam"           # Keskar et al.: Adam with its default step,
  c.optim.lr = 1e-3               # the same for both batch sizes.
  c.train.batch_size = 64
  c.train.log_every = 100


def fashion_sgd(c):
  fashion_lenet(c)
  c.optim.name = "sgd"
  c.optim.lr = 0.05


VARIANTS = {f.__name__: f for f in (fashion_lenet, fashion_sgd)}


def runlocal(c):
  """Tiny: 2000 examples, 2 seeds, a few steps; for tests and smoke runs."""
  shrink_for_local(c, steps=20, checkpoint_every=0)
  c.train.eval_every = 0
  c.seeds = 2
  c.epochs = 0.5
  c.arms.small_batch.train.batch_size = 32
  c.arms.large_batch.train.batch_size = 200  # 10% of the 2000 examples.
  c.hessian.subset_size = 200
  c.hessian.num_steps = 8
  c.sharpness.subset_size = 400
  c.sharpness.chunk_size = 200
  c.sharpness.iterations = 3
  c.sharpness.hessian_points = 2


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return make_config(arg, variants=VARIANTS, default="fashion_lenet",
                     config_file="configs/sharpness.py", fields=sharpness_fields,
                     runlocal=runlocal)
