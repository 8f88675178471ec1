r"""Filter-normalized loss landscapes: `--config=configs/landscape.py[:VARIANT[,runlocal]]`.

Li, Xu, Taylor, Studer & Goldstein (2018): plots along filter-normalized
random directions make the flatness of different networks comparable; skip
connections and BatchNorm keep deep nets' landscapes convex-looking, and
small-batch minima look wider than large-batch ones.

Variants (default batch_size), each a comparison of two arms (`compare`):
  batch_size    LeNet-300-100 on Fashion-MNIST (offline), Adam, batch 64 vs
                6000 (10% of the data), the same 5 epochs; interpolation from
                the small-batch to the large-batch solution (Keskar et al. Fig. 3).
  bn            LeNet-300-100 with vs without BatchNorm; interpolation
                between two seeds of each arm.
  trajectory    batch_size's two arms, 3 seeds, each landscape on the top-2
                PCA directions of its own optimization path, the path drawn
                on it (Li et al. Fig. 9); minutes on a 2-core CPU.
  skip          ResNet-20 (width 16, BN) on Fashion-MNIST with vs without skip
                connections (model.shortcut); conv nets are slow on CPU: a
                GPU-sized run.
  skip_cifar10  Li et al.'s setting: ResNet-56 vs its no-skip version on TFDS
                CIFAR-10 (network, [tfds], a GPU).
`runlocal` shrinks any variant to seconds (tests, smoke runs).
Fields not set here keep the defaults and comments of
jaxunknowns/config_defaults.py; `arms.NAME` holds overrides of those fields.
"""

import ml_collections

from jaxunknowns.config_defaults import make_config, shrink_for_local


def arm(**sections) -> ml_collections.ConfigDict:
  """Overrides of one arm: arm(train={"batch_size": 64})."""
  return ml_collections.ConfigDict(sections)


def landscape_fields(c):
  c.experiment = "landscape"
  c.seeds = 3                     # Seeds per arm (interpolation "seeds" needs 2; on 2 a paired row's 2 × std is a t of 2.8 on one degree of freedom).
  c.epochs = 5.0                  # Budget per arm in epochs (train.steps = epochs x N / batch); 0 = train.steps.
  c.arms = ml_collections.ConfigDict()  # Named overrides, set by the variants.
  c.compare = ()                  # Arms to run, in order (a tuple of names of `arms`).
  c.train.eval_every = 0          # Evaluate at the end only (the landscape is the analysis).
  c.train.checkpoint_every = 0    # Checkpoint at the end of each arm (reruns skip it).
  c.landscape = ml_collections.ConfigDict()
  c.landscape.seed = 0            # Directions' seed (run r: it folded with r).
  c.landscape.points_1d = 51      # Points of the 1-D slice.
  c.landscape.range_1d = (-1.0, 1.0)  # Slice range (Li et al.: [-1, 1]).
  c.landscape.points_2d = 51      # Points per axis of the 2-D surface (51 x 51).
  c.landscape.range_2d = (-1.0, 1.0)  # Surface range on both axes.
  c.landscape.points_interp = 41  # Points of the linear interpolation.
  c.landscape.range_interp = (-0.5, 1.5)  # Interpolation range of t in (1-t)A + tB.
  c.landscape.interpolation = "seeds"  # "seeds" (seed 0 -> 1 per arm), "arms" (arm 1 -> 2), "none".
  c.landscape.num_examples = 10000  # Fixed training subset: the first N examples (0 = all).
  c.landscape.examples_per_chunk = 2000  # Examples per data chunk of the scan.
  c.landscape.points_per_chunk = 51  # Grid points vmapped together (memory ~ this x chunk).
  c.landscape.fast_dense = True   # First-layer algebra for dense-first nets (same numbers).
  c.landscape.directions = "random"  # "random" (filter-normalized) or "pca" (the path's top two).
  c.landscape.path_points = 0     # Iterates kept along training for "pca" (0 … the end, evenly).


def lenet_fashion(c):
  c.data.name = "fashion_mnist"   # IDX files of Debian's dataset-fashion-mnist.
  c.model.name = "lenet_300_100"
  c.optim.name = "adam"           # Keskar et al. train with Adam ...
  c.optim.lr = 1e-3               # ... at its default step, for both batch sizes.
  c.train.batch_size = 64


def batch_size(c):
  lenet_fashion(c)
  c.arms.small_batch = arm(train={"batch_size": 64})
  c.arms.large_batch = arm(train={"batch_size": 6000})  # 10% of the 60K training set.
  c.compare = ("small_batch", "large_batch")
  c.landscape.interpolation = "arms"


def bn(c):
  lenet_fashion(c)
  c.arms.with_bn = arm(model={"norm": "batch"})
  c.arms.without_bn = arm(model={"norm": "none"})
  c.compare = ("with_bn", "without_bn")


def trajectory(c):
  """Li et al. Fig. 9: the small- and large-batch arms, each drawn on the
  plane of its own optimization path."""
  batch_size(c)                   # 3 seeds: explained variance over 3 paths per arm.
  c.landscape.interpolation = "none"
  c.landscape.directions = "pca"
  c.landscape.path_points = 41    # Every 1/40 of training, both ends included.


def skip(c):
  c.data.name = "fashion_mnist"
  c.model.name = "resnet"
  c.model.depth = 20
  c.model.width = 16
  c.optim.name = "momentum"       # Li et al.: SGD, momentum 0.9 (Nesterov in their code), lr 0.1, wd 5e-4.
  c.optim.lr = 0.1
  c.optim.weight_decay = 5e-4
  c.train.batch_size = 128
  c.epochs = 10.0
  c.arms.skip = arm(model={"shortcut": True})
  c.arms.noskip = arm(model={"shortcut": False})
  c.compare = ("skip", "noskip")
  c.landscape.num_examples = 5000
  c.landscape.examples_per_chunk = 500
  c.landscape.points_per_chunk = 8


def skip_cifar10(c):
  skip(c)
  c.data.name = "cifar10"         # TFDS catalogue (network and [tfds] extra).
  c.data.augment = "crop_flip"
  c.model.depth = 56              # Li et al.'s ResNet-56 vs ResNet-56-noshort.
  c.epochs = 300.0                # Their 300 epochs (lr /10 at 150, 225, 275 in their code: not set here).
  c.landscape.num_examples = 0    # The whole training set, as they do.


VARIANTS = {f.__name__: f for f in (batch_size, bn, trajectory, skip,
                                    skip_cifar10)}


def runlocal(c):
  """Tiny nets, tiny grids, 2000 examples: for tests and smoke runs."""
  shrink_for_local(c, steps=20, checkpoint_every=0)
  c.train.eval_every = 0
  c.epochs = 0.5
  for name in c.arms:
    if "train" in c.arms[name] and "batch_size" in c.arms[name].train:
      c.arms[name].train.batch_size = min(c.arms[name].train.batch_size, 200)
  c.train.batch_size = min(c.train.batch_size, 32)
  c.landscape.points_1d = 5
  c.landscape.points_2d = 5
  c.landscape.points_interp = 5
  c.landscape.num_examples = 256
  c.landscape.examples_per_chunk = 128
  c.landscape.points_per_chunk = 8
  if c.landscape.path_points:
    c.landscape.path_points = 5


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return make_config(arg, variants=VARIANTS, default="batch_size",
                     config_file="configs/landscape.py", fields=landscape_fields,
                     runlocal=runlocal)
