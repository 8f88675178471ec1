r"""SAM vs its inner optimizer: `--config=configs/sam.py[:VARIANT[,runlocal]]`.

Foret, Kleiner, Mobahi & Neyshabur (2021): sharpness-aware minimization --
the gradient taken at w + ρ g/‖g‖ and applied at w -- reaches flatter minima
(lower λ_max) and tests better than the same optimizer at the same epochs;
ASAM (Kwon et al. 2021) scales the ascent by |w|. Arms (`compare`, all on
the same seeds): `sgd` (the optimizer below alone), `sam` (each ρ of
`sam.rhos` a run of one program), `asam` (each ρ of `sam.asam_rhos`), and
`sgd_2x` (the optimizer alone for twice the epochs: as many gradient
evaluations as SAM). At the end: test accuracy, λ_max and the Hessian trace
(analysis/spectrum.py), ε-sharpness (analysis/sharpness.py). SAM itself is
optim.sam_rho / sam_adaptive / sam_m of any config (jaxunknowns/sam.py).

Variants (default fashion_lenet):
  fashion_lenet   LeNet-300-100 on Fashion-MNIST (offline), SGD momentum 0.9,
                  lr 0.05, batch 128, 3 epochs, 3 seeds, ρ in {0.05, 0.2},
                  arms sgd, sam, sgd_2x; about 10 minutes on the shared
                  2-core CPU.
  fashion_resnet  A small ResNet (depth 8, width 8, BatchNorm) on
                  Fashion-MNIST, 3 epochs, with ASAM (ρ = 0.5): the BN case
                  (statistics from SAM's first pass only). Slow on a CPU
                  (vmapped convolutions, two gradients a step): an
                  accelerator's variant.
  cifar_resnet    ResNet-20 on TFDS CIFAR-10 (needs a network), crop+flip,
                  SGD momentum lr 0.1, wd 5e-4, cosine, 50 epochs, ρ = 0.05,
                  ASAM ρ = 0.5: toward the WRN-16-8 reference (200 epochs).
`runlocal` shrinks any variant to seconds (tests, smoke runs).
Fields not set here keep the defaults and comments of
jaxunknowns/config_defaults.py.
"""

import ml_collections

from jaxunknowns.config_defaults import make_config, resnet20, shrink_for_local


def sam_fields(c):
  c.experiment = "sam"
  c.seeds = 3                     # Seeds per arm and ρ, trained at once.
  c.epochs = 3.0                  # Budget of sgd/sam/asam in epochs (sgd_2x: twice it).
  c.compare = ("sgd", "sam", "sgd_2x")  # Arms of sgd, sam, asam, sgd_2x, in order.
  c.train.eval_every = 0          # Evaluate at the end only.
  c.train.checkpoint_every = 0    # Checkpoint at the end of each arm (reruns skip it).
  c.sam = ml_collections.ConfigDict()
  c.sam.rhos = (0.05, 0.2)        # ρ of the sam arm: a run axis with the seeds.
  c.sam.asam_rhos = (0.5,)        # ρ of the asam arm (Kwon et al.'s code's default; eta = optim.sam_eta).
  c.measure = ml_collections.ConfigDict()
  c.measure.subset_size = 1000    # Fixed random training subset of the Hessian and sharpness loss.
  c.measure.chunk_size = 0        # Examples per forward pass over it (0 = all at once).
  c.measure.trace_probes = 32     # Rademacher probes of Hutchinson's trace.
  c.measure.lanczos_steps = 20    # Lanczos steps of λ_max (the largest Ritz value).
  c.measure.epsilon = 1e-3        # Keskar's ε of the ε-sharpness.
  c.measure.sharpness_iterations = 10  # Projected sign-gradient ascent steps.
  c.measure.sharpness_step = 1.0  # Sign step as a fraction of the box half-width (1: centre to face in one step).
  c.measure.seed = 0              # Seed of the subset and the probes.


def fashion_lenet(c):
  c.data.name = "fashion_mnist"   # IDX files of Debian's dataset-fashion-mnist.
  c.model.name = "lenet_300_100"
  c.optim.name = "momentum"       # Foret et al.'s inner optimizer: SGD with momentum.
  c.optim.lr = 0.05
  c.train.batch_size = 128
  c.train.log_every = 100


def fashion_resnet(c):
  fashion_lenet(c)
  c.model.name = "resnet"
  c.model.depth = 8
  c.model.width = 8
  c.epochs = 3.0
  c.compare = ("sgd", "sam", "asam", "sgd_2x")
  c.sam.rhos = (0.05,)
  c.measure.subset_size = 500


def cifar_resnet(c):
  fashion_lenet(c)
  c.data.name = "cifar10"         # TFDS catalogue: needs a network and [tfds].
  c.data.augment = "crop_flip"
  resnet20(c)                     # OpenLTH's ResNet-20 (Kaiming-normal weights).
  c.optim.lr = 0.1
  c.optim.weight_decay = 5e-4
  c.optim.schedule = "cosine"
  c.epochs = 50.0
  c.compare = ("sgd", "sam", "asam", "sgd_2x")
  c.sam.rhos = (0.05,)
  c.measure.chunk_size = 250
  c.train.log_every = 390


VARIANTS = {f.__name__: f for f in (fashion_lenet, fashion_resnet,
                                    cifar_resnet)}


def runlocal(c):
  """Tiny: a small MLP, 1000 examples, 2 seeds, all four arms."""
  c.model.name = "mlp" if c.model.name == "lenet_300_100" else c.model.name
  shrink_for_local(c, steps=20, checkpoint_every=0, widths=(16,))
  c.train.eval_every = 0
  c.data.train_size = 1000
  c.seeds = 2
  c.epochs = 0.5
  c.compare = ("sgd", "sam", "asam", "sgd_2x")
  c.measure.subset_size = 100
  c.measure.chunk_size = 0  # The subset is small: one pass (cifar_resnet chunks).
  c.measure.trace_probes = 4
  c.measure.lanczos_steps = 6
  c.measure.sharpness_iterations = 3


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return make_config(arg, variants=VARIANTS, default="fashion_lenet",
                     config_file="configs/sam.py", fields=sam_fields,
                     runlocal=runlocal)
