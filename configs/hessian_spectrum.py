r"""Hessian trace and eigenvalue density: `--config=configs/hessian_spectrum.py[:VARIANT[,runlocal]]`.

Ghorbani, Krishnan & Xiao (2019): without BatchNorm a few large outlier
eigenvalues stand apart from the bulk of the Hessian's spectrum; with
BatchNorm (the Hessian taken with batch statistics, as training sees the
loss) they shrink or vanish, and they come back when BN uses its population
statistics. Yao et al. (2020, PyHessian): removing BN makes the trace and
top eigenvalue larger. Each variant trains the same network without and
with BN (`compare`) and measures the trace (Hutchinson) and the density
(stochastic Lanczos quadrature) at initialization and at the end, for the
whole model and each layer (analysis/spectrum.py).

Variants (default fashion_lenet):
  fashion_lenet   LeNet-300-100 on Fashion-MNIST (offline), SGD momentum 0.9,
                  lr 0.02, batch 128, 3 epochs, 3 seeds per arm; minutes on a
                  2-core CPU.
  fashion_resnet  A small ResNet (depth 8, width 8) on Fashion-MNIST, the
                  same protocol, 2 epochs, a 500-example subset; BN vs no
                  normalization. Slow on a 2-core CPU (vmapped convolutions'
                  HVPs; far over an hour): for an accelerator. Its runlocal
                  smoke run (width 4, no per-block spectra) took 3 minutes
                  on a 2-core CPU at load 5, mostly compilation.
  cifar_resnet    ResNet-20 on TFDS CIFAR-10 (needs a network), 20 epochs:
                  the papers' data, closer to their ResNet-32 protocol.
`runlocal` shrinks any variant to seconds (tests, smoke runs; the ResNets to
2-3 minutes on a 2-core CPU, mostly compilation).
Fields not set here keep the defaults and comments of
jaxunknowns/config_defaults.py.
"""

import ml_collections

from jaxunknowns.config_defaults import make_config, resnet20, shrink_for_local


def arm(**sections) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(sections)


def hessian_spectrum_fields(c):
  c.experiment = "hessian_spectrum"
  c.seeds = 3                     # Seeds per arm, trained and measured at once.
  c.epochs = 3.0                  # Budget per arm in epochs (0 = train.steps).
  c.arms = ml_collections.ConfigDict()
  c.arms.without_bn = arm(model={"norm": "none"})
  c.arms.with_bn = arm(model={"norm": "batch"})
  c.compare = ("without_bn", "with_bn")  # Arms to run, in order.
  c.train.eval_every = 0          # Evaluate at the end only.
  c.train.checkpoint_every = 0    # Checkpoint at the end of each arm.
  c.spectrum = ml_collections.ConfigDict()
  c.spectrum.num_probes = 4       # k: Rademacher probes of the Lanczos quadrature (SLQ).
  c.spectrum.num_steps = 64       # m: Lanczos steps per probe (full reorthogonalisation).
  c.spectrum.trace_probes = 64    # Rademacher probes of Hutchinson's trace.
  c.spectrum.num_eigenvalues = 10  # Top eigenvalues listed (the first probe's largest nodes; <= m).
  c.spectrum.layers = True        # Also every block (top-level module) on its own.
  c.spectrum.bn_modes = ("eval", "batch")  # BN with population ("eval") / batch statistics.
  c.spectrum.subset_size = 1000   # Fixed random training subset of the loss.
  c.spectrum.chunk_size = 250     # Examples per forward pass; in "batch" mode, one BN batch.
  c.spectrum.grid_size = 200      # Points of the density's grid.
  c.spectrum.sigma = 0.01         # Gaussian smoothing std, as a fraction of the nodes' range.
  c.spectrum.bulk_count = 10.0    # Bulk: nodes standing for >= this many eigenvalues (n w >= it).
  c.spectrum.outlier_gap = 0.25   # Outliers: nodes above the bulk edge by > gap x bulk width.
  c.spectrum.seed = 0             # Seed of the subset and the probes.


def fashion_lenet(c):
  c.data.name = "fashion_mnist"   # IDX files of Debian's dataset-fashion-mnist.
  c.model.name = "lenet_300_100"
  c.optim.name = "momentum"       # Ghorbani et al. train with SGD and momentum.
  c.optim.lr = 0.02
  c.train.batch_size = 128
  c.train.log_every = 100


def fashion_resnet(c):
  fashion_lenet(c)
  c.model.name = "resnet"
  c.model.depth = 8
  c.model.width = 8
  c.epochs = 2.0
  c.spectrum.subset_size = 500


def cifar_resnet(c):
  fashion_lenet(c)
  c.data.name = "cifar10"         # TFDS catalogue: needs a network and [tfds].
  resnet20(c)                     # OpenLTH's ResNet-20 (Kaiming-normal weights).
  c.optim.lr = 0.05
  c.epochs = 20.0
  c.spectrum.num_steps = 90       # Ghorbani et al.'s m.
  c.spectrum.num_probes = 10
  c.train.log_every = 390


VARIANTS = {f.__name__: f for f in (fashion_lenet, fashion_resnet,
                                    cifar_resnet)}


def runlocal(c):
  """Tiny: a small MLP, 1000 examples, 2 seeds; for tests and smoke runs."""
  c.model.name = "mlp" if c.model.name == "lenet_300_100" else c.model.name
  shrink_for_local(c, steps=20, checkpoint_every=0, widths=(16,))
  c.train.eval_every = 0
  c.data.train_size = 1000
  c.seeds = 2
  c.epochs = 0.5
  c.spectrum.num_probes = 2
  c.spectrum.num_steps = 8
  c.spectrum.trace_probes = 4
  c.spectrum.num_eigenvalues = 3
  c.spectrum.subset_size = 100
  c.spectrum.chunk_size = 0
  c.spectrum.grid_size = 64
  if c.model.name == "resnet":
    # fashion_resnet, cifar_resnet. A vmapped ResNet's Hessian-vector
    # product costs seconds on a CPU and a measurement made ~100 of them per
    # run (whole model and every block): each of cifar_resnet's 6
    # measurements took 3 minutes at width 8 on 100 examples. Each block is
    # one more copy of the network's HVP in the compiled program (~3 s of
    # compilation each, twice with BN's two modes): the per-block spectra
    # are left to the MLP's runlocal (the tests).
    c.model.width = 4
    c.spectrum.subset_size = 20
    c.spectrum.num_steps = 4
    c.spectrum.layers = False


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return make_config(arg, variants=VARIANTS, default="fashion_lenet",
                     config_file="configs/hessian_spectrum.py",
                     fields=hessian_spectrum_fields, runlocal=runlocal)
