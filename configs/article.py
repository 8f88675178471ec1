r"""The article in one command: `--config=configs/article.py[:SCALE]`.

Runs the headline experiment of every claim of "What we still don't
understand about machine learning" (BatchNorm, over-parameterization,
implicit regularization, lottery tickets) as resumable stages, each an
ordinary run in WORKDIR/stages/NAME, then writes WORKDIR/ARTICLE.md and a
self-contained WORKDIR/article.html (figures embedded). The page's outline
(questions, claims, papers) is jaxunknowns/article/outline.py; this file says
which config each stage runs at each scale.

Scales (default laptop):
  runlocal  Every stage's `runlocal` size: seconds each (tests, smoke runs).
  laptop    Every stage's default variant: offline data (MNIST-1D, Fashion-
            MNIST, synthetic), at least 3 seeds (article.min_seeds), on a
            2-core CPU (see README for the measured time).
  gpu       The offline variants closest to the papers' protocols (longer
            runs, bigger models, all training examples): for an accelerator.
  paper     The papers' datasets from the TFDS catalogue (CIFAR-10, MNIST):
            network, the [tfds] extra and accelerators.

Change one stage: `--config.article.stages.bn_only=configs/bn_only.py:digits`;
leave stages out: `--config.article.skip=ntk,sam`; re-run every stage on
other seeds: `--config.article.seed_offset=1000`; fan the stages out over a
Ray cluster: `--config.article.executor=ray` (RAY_ADDRESS, or a local one).
A rerun into the same --workdir may change the stages, skip and executor,
keeping every finished stage; a stage whose folder holds a run of another
config is refused until that folder (WORKDIR/stages/NAME) is removed.
"""

import ml_collections

from jaxunknowns import config_defaults
from jaxunknowns.article.outline import SCALES

# Stage -> its config file and the variant at scales laptop, gpu, paper
# (runlocal: the laptop variant with ',runlocal').
STAGES = {
    # 1. BatchNorm.
    "bn_stability": ("bn_stability", "fashion_mlp", "fashion_resnet", "cifar10_resnet"),
    "bn_only": ("bn_only", "fashion", "fashion", "cifar10"),
    "bn_smoothness": ("bn_smoothness", "fashion_mlp", "fashion_mlp", "cifar10_vgg"),
    "bn_modes": ("bn_modes", "fashion", "fashion", "cifar10"),
    "bn_batch_size": ("bn_batch_size", "fashion_mlp", "fashion_mlp", "cifar10_resnet"),
    "bn_placement": ("bn_placement", "fashion_mlp", "fashion_mlp", "cifar10_resnet"),
    "bn_regularization": ("bn_regularization", "fashion_mlp", "fashion_mlp", "cifar10_resnet"),
    # 2. Over-parameterization and generalization.
    "randomization": ("randomization", "mnist1d", "fashion_mlp", "cifar10_mlp"),
    "memorization": ("memorization", "mnist1d", "fashion_mlp", "cifar10_mlp"),
    "width_sweep": ("width_sweep", "fashion", "fashion_full", "cifar10"),
    "double_descent": ("double_descent", "mnist1d", "mnist1d_paper", "cifar10_resnet"),
    "mode_connectivity": ("mode_connectivity", "mnist1d_mlp", "fashion_lenet", "cifar_vgg16"),
    "ntk": ("ntk", "mnist1d", "mnist1d", "mnist1d"),
    # 3. Implicit regularization.
    "max_margin": ("max_margin", "soudry2d", "soudry2d_long", "soudry2d_long"),
    "sharpness": ("sharpness", "fashion_lenet", "fashion_lenet", "fashion_lenet"),
    "landscape": ("landscape", "batch_size", "trajectory", "skip_cifar10"),
    "hessian_spectrum": ("hessian_spectrum", "fashion_lenet", "fashion_resnet", "cifar_resnet"),
    "edge_of_stability": ("edge_of_stability", "mnist1d", "fashion", "cifar10"),
    "sam": ("sam", "fashion_lenet", "fashion_resnet", "cifar_resnet"),
    # 4. Lottery tickets.
    "imp": ("imp", "stability", "lenet_fashion", "lenet_mnist"),
    "prune_init": ("prune_init", "mnist1d", "lenet_fashion", "resnet20_cifar10"),
}


def stage_spec(stage: str, scale: str) -> str:
  """'configs/FILE.py:VARIANT' that `stage` runs at `scale`."""
  config_file, *variants = STAGES[stage]
  variant = (variants[0] + ",runlocal" if scale == "runlocal" else
             variants[SCALES.index(scale) - 1])
  return f"configs/{config_file}.py:{variant}"


def get_config(arg=""):
  scale = arg or "laptop"
  if scale not in SCALES:
    raise ValueError(f"unknown scale {scale!r} of configs/article.py; valid: "
                     f"{', '.join(SCALES)}")
  # What make_config records for every other experiment: its config before
  # any variant, the value a field added later had in the runs written
  # before it (workdir.check resumes them; article.seed_offset came after
  # the committed docs/article). The scale is the article's variant, and
  # there is no article config before one: the default scale's stands in,
  # the same whichever scale is loaded.
  config_defaults.FIELD_DEFAULTS["article"] = _config("laptop")
  return _config(scale)


def _config(scale):
  c = ml_collections.ConfigDict()
  c.experiment = "article"
  c.article = ml_collections.ConfigDict()
  c.article.scale = scale          # Recorded on the page beside every verdict.
  c.article.stages = ml_collections.ConfigDict(
      {stage: stage_spec(stage, scale) for stage in STAGES})
  c.article.skip = ""              # Comma-separated stages left out of the page.
  c.article.executor = "local"     # "local": one after another here; "ray".
  # Stages with fewer seeds run this many (0: each stage's own).
  c.article.min_seeds = 3 if scale in ("laptop", "gpu") else 0
  # Added to every stage's first training seed (0: the stages' own, seeds
  # 0, 1, ...): the whole page re-run from other initializations and batch
  # orders; the data and each measurement's own seed stay as they are.
  c.article.seed_offset = 0
  return c


VARIANTS = {scale: None for scale in SCALES}
