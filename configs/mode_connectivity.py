r"""Mode connectivity: `--config=configs/mode_connectivity.py[:VARIANT[,runlocal]]`.

Garipov et al. (2018) and Draxler et al. (2018): two minima of independently
trained networks are joined by a straight line that climbs a loss barrier,
but also by a simple curve (a quadratic Bézier curve, or a polygonal chain
with one bend) along which train loss and test error stay almost constant,
once the curve's middle point is trained on the expected loss along it.
Each variant trains 2 x `seeds` networks (`seeds` pairs of minima), then a
Bézier curve and a polychain between every pair, and measures both, and the
straight line, at `curve.points` values of t, and the loss on the plane
through the Bézier curve's three points.

Variants (default mnist1d_mlp):
  mnist1d_mlp     MLP 40-100-100-10 on MNIST-1D (offline), Adam 1e-3,
                  batch 100, 200 epochs per minimum, 600 per curve (cosine),
                  Garipov et al.'s epoch counts; 3 pairs. About 2.5 minutes
                  on a loaded 2-core CPU.
  mnist1d_mlp_bn  The same MLP with BatchNorm after each hidden layer: the
                  statistics of every evaluated network re-estimated on the
                  training set (the step the reference code takes at each
                  of its points). 2 minutes on a loaded 2-core CPU.
  fashion_lenet   LeNet-300-100 on Fashion-MNIST (offline), 4 epochs per
                  minimum, 8 per curve; not timed here (the path and plane
                  measurements pass over all 60k training images).
  cifar_vgg16     VGG-16 with BatchNorm on TFDS CIFAR-10 (needs a network):
                  Garipov et al.'s SGD momentum, lr 0.05 / 0.015, weight decay
                  5e-4, 200 epochs per minimum, 600 per curve, 61 points.
                  Unlike their code: BatchNorm (their VGG16 has none), a
                  cosine schedule (theirs: constant for half, then linear
                  to 1%), the bends' own decay (theirs: an L2 term on the
                  point on the curve). For an accelerator; validated only here.
`runlocal` shrinks any variant to seconds (tests, smoke runs).
Fields not set here keep the defaults and comments of
jaxunknowns/config_defaults.py.
"""

import ml_collections

from jaxunknowns.config_defaults import make_config, shrink_for_local


def mode_connectivity_fields(c):
  c.experiment = "mode_connectivity"
  c.seeds = 3                     # Pairs of minima: 2 x seeds networks train at once; ± is over pairs.
  c.train.steps = 8000            # Steps of each minimum (MNIST-1D: 200 epochs, Garipov et al.'s count).
  c.train.eval_every = 0          # Evaluate at the end only.
  c.train.checkpoint_every = 0    # Checkpoint at the end of the endpoints' training.
  c.curve = ml_collections.ConfigDict()
  c.curve.kinds = ("bezier", "polychain")  # Curves trained between each pair; the first one's plane is drawn.
  c.curve.num_bends = 3           # The curve's points, both minima included (3: one trainable bend).
  c.curve.steps = 24000           # Steps of a curve's bends, t ~ U[0, 1] each (600 epochs, as Garipov et al.).
  c.curve.lr = 1e-3               # Peak learning rate of the bends (config.optim's optimizer).
  c.curve.weight_decay = 0.0      # Weight decay of the bends.
  c.curve.schedule = "cosine"     # "constant" or "cosine" (to 0 at curve.steps).
  c.curve.points = 21             # Evenly spaced t in [0, 1] at which every path is measured.
  c.curve.plane_points = 21       # Grid points per side of the plane through the curve's three points.
  c.curve.plane_margin = 0.25     # The plane grid reaches this fraction of the points' range beyond them.
  c.curve.bn_batches = 0          # Full training batches re-estimating BN at each point (0 = all).
  c.curve.seed = 0                # Seed of the curves' t draws and batch order.


def mnist1d_mlp(c):
  c.data.name = "mnist1d"         # Procedural, offline: 4000 train / 1000 test.
  c.model.name = "mlp"
  c.model.widths = (100, 100)     # The MNIST-1D benchmark MLP.
  c.model.norm = "none"
  c.optim.name = "adam"
  c.optim.lr = 1e-3
  c.train.batch_size = 100
  c.train.log_every = 500


def mnist1d_mlp_bn(c):
  mnist1d_mlp(c)
  c.model.norm = "batch"          # BN after each hidden Dense: statistics re-estimated at each point.


def fashion_lenet(c):
  c.data.name = "fashion_mnist"   # IDX files of Debian's dataset-fashion-mnist.
  c.model.name = "lenet_300_100"
  c.model.norm = "none"
  c.optim.name = "adam"
  c.optim.lr = 1e-3
  c.train.batch_size = 128
  c.train.steps = 1875            # 4 epochs of 60k.
  c.train.log_every = 375
  c.curve.steps = 3750            # 8 epochs.


def cifar_vgg16(c):
  c.data.name = "cifar10"         # TFDS catalogue: needs a network and [tfds].
  c.data.augment = "crop_flip"
  c.model.name = "vgg16"          # With BatchNorm (the model's default).
  c.optim.name = "momentum"
  c.optim.lr = 0.05               # Garipov et al.: lr 0.05 for the minima,
  c.optim.weight_decay = 5e-4
  c.optim.schedule = "cosine"
  c.train.batch_size = 128
  c.train.steps = 78200           # 200 epochs of 50k.
  c.train.log_every = 391
  c.curve.lr = 0.015              # 0.015 for the curve, 600 epochs,
  c.curve.weight_decay = 5e-4
  c.curve.schedule = "cosine"
  c.curve.steps = 234600
  c.curve.points = 61             # and 61 points along it.


VARIANTS = {f.__name__: f for f in (mnist1d_mlp, mnist1d_mlp_bn,
                                    fashion_lenet, cifar_vgg16)}


def runlocal(c):
  """Tiny: a small MLP, 1000 examples, 2 pairs; for tests and smoke runs."""
  shrink_for_local(c, steps=40, checkpoint_every=0)
  c.train.eval_every = 0
  c.data.train_size = 1000
  c.model.name = "mlp"
  c.model.widths = (16,)
  c.seeds = 2
  c.curve.steps = 20
  c.curve.points = 5
  c.curve.plane_points = 4


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return make_config(arg, variants=VARIANTS, default="mnist1d_mlp",
                     config_file="configs/mode_connectivity.py",
                     fields=mode_connectivity_fields, runlocal=runlocal)
