"""The fields every experiment config shares, with their defaults.

Each `configs/*.py` starts from `base_config()` and overrides a few fields, so
users and scripts can rely on the same names everywhere (`experiment`, `seed`,
`seeds`, `data.name`, `data.data_dir`, `model.name`, `optim.name`, `optim.lr`,
`train.steps`, `train.batch_size`).
"""

import ml_collections

# experiment -> its config before any variant: the value a field had in runs
# written before the field existed (workdir.check resumes them).
FIELD_DEFAULTS = {}
# Fields whose default is not what runs written before them did: the value
# those runs used (a resume must match it; a report of such a run says it).
BEFORE_FIELD = {"measure.sharpness_step": 0.25}
# experiment -> (fields, variants, runlocal) of its config file as last
# loaded: what `file_values` rebuilds the file's every config from (once,
# on first use: _FILE_CONFIGS).
_FILE_RECIPES = {}
_FILE_CONFIGS = {}

# Where Debian's `dataset-fashion-mnist` package puts the IDX files.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.experiment = "train"  # Which experiment of the registry runs this config.
  c.seed = 0              # First seed; seeds are seed, seed+1, ..., seed+seeds-1.
  c.seeds = 1             # How many seeds train at once (jax.vmap) in one program (1 to 1024).

  # ---- Data -------------------------------------------------------------------
  c.data = ml_collections.ConfigDict()
  c.data.name = "mnist1d"        # Dataset registry name (see jaxunknowns/data).
  c.data.data_dir = ""           # TFDS data_dir ("" = TFDS default, ~/tensorflow_datasets).
  c.data.source_dir = FASHION_MNIST_DIR  # Folder of MNIST-format IDX files (idx datasets).
  c.data.validation_size = 0     # Examples held out of train as a validation split.
  c.data.train_size = 0          # Use only the first N training examples (0 = all).
  c.data.normalize = True        # Standardize inputs with the training set's statistics.
  c.data.augment = "auto"        # "auto" (crop+flip for CIFAR-like), "none", "crop_flip".
  c.data.label_noise = 0.0       # Fraction p of training labels replaced by uniform random ones.
  c.data.randomization = "none"  # Zhang et al. input/label randomization (see data.transforms).
  c.data.shuffle_seed = 0        # Seed of the fixed corruptions and the validation split.
  # Synthetic data (data.name = "synthetic"): Gaussian clouds.
  c.data.synthetic = ml_collections.ConfigDict()
  c.data.synthetic.num_train = 1000   # Training examples.
  c.data.synthetic.num_test = 1000    # Test examples.
  c.data.synthetic.dim = 2            # Input dimension.
  c.data.synthetic.num_classes = 2    # Number of Gaussian clouds (classes).
  c.data.synthetic.separation = 4.0   # Distance of cloud means from the origin, in stds.

  # ---- Model ------------------------------------------------------------------
  c.model = ml_collections.ConfigDict()
  c.model.name = "mlp"             # Model registry name (see jaxunknowns/models).
  c.model.widths = (100, 100)      # Hidden widths of an MLP.
  c.model.depth = 20               # ResNet depth 6n+2 / VGG depth.
  c.model.width = 16               # Channels of the first ResNet stage.
  c.model.width_multiplier = 1.0   # Scales every width of conv2/4/6 and VGG.
  c.model.use_bias = True          # Bias of the `linear` model.
  c.model.norm = "default"         # "default" (the model's own), "batch", "group", "layer", "none".
  c.model.norm_position = "before"  # Normalization "before" or "after" the activation.
  c.model.num_groups = 8           # Groups for group norm.
  c.model.shortcut = True          # ResNet skip connections on/off.
  c.model.dropout = 0.0            # Dropout rate after hidden layers.
  c.model.kernel_init = "default"  # "default", "kaiming_normal", "glorot_normal", "lecun_normal".
  c.model.bn_scale_init = "ones"   # BatchNorm gamma init: "ones" or "uniform" (U[0,1]).

  # ---- Optimizer --------------------------------------------------------------
  c.optim = ml_collections.ConfigDict()
  c.optim.name = "adam"            # "sgd", "momentum", "nesterov", "adam", "adamw".
  c.optim.lr = 1e-3                # Peak learning rate.
  c.optim.momentum = 0.9           # Momentum of momentum/nesterov.
  c.optim.b1 = 0.9                 # Adam beta1.
  c.optim.b2 = 0.999               # Adam beta2.
  c.optim.eps = 1e-8               # Adam epsilon.
  c.optim.weight_decay = 0.0       # L2 (sgd/momentum/adam) or decoupled (adamw) decay.
  c.optim.decay_on = "all"         # What the decay touches: "all" parameters, "kernels" (dense and
                                   # conv weights: no bias, no norm γ/β), "normalized" (the kernels
                                   # a norm makes scale-invariant, found by a probe: optim.py).
  c.optim.schedule = "constant"    # "constant", "step", "cosine".
  c.optim.warmup_steps = 0         # W: lr·t/W for steps t < W, then the schedule at step t:
                                   # "step" boundaries stay where written (not shifted by W),
                                   # "cosine" decays from lr at W to 0 at train.steps.
  c.optim.boundaries = ()          # Absolute steps where the "step" schedule multiplies lr by decay_factor
                                   # (each below the run's steps, as warmup_steps: one never reached is refused;
                                   # runlocal moves both to the same fractions of its shorter run).
  c.optim.decay_factor = 0.1       # Factor of the "step" schedule.
  c.optim.freeze = ""              # Regex over param paths ("a/b/kernel") kept frozen.
  c.optim.train_only = ""          # Regex: if set, only matching params train.
  c.optim.grad_clip = 0.0          # Global-norm gradient clipping (0 = off).
  c.optim.sam_rho = 0.0            # SAM's radius rho (Foret et al. 2021; 0 = off): the gradient
                                   # at w + rho g/||g|| applied at w, two gradients a step (sam.py).
  c.optim.sam_adaptive = False     # ASAM (Kwon et al. 2021): the ascent scaled by T = |w| + sam_eta.
  c.optim.sam_eta = 0.01           # ASAM's eta (T = 1 on biases).
  c.optim.sam_m = 0                # m-sharpness: one ascent per sub-batch of m examples, their
                                   # gradients averaged (0 = the whole batch; must divide it).

  # ---- Training loop ----------------------------------------------------------
  c.train = ml_collections.ConfigDict()
  c.train.steps = 1000             # Optimizer steps per run.
  c.train.batch_size = 100         # Global batch size (split over devices).
  c.train.log_every = 100          # Steps per compiled call; train metrics logged each call.
  c.train.eval_every = 500         # Steps between evaluations (multiple of log_every).
  c.train.checkpoint_every = 1000  # Steps between checkpoints (multiple of log_every).
  c.train.eval_batch_size = 1000   # Batch size of evaluation.
  c.train.label_smoothing = 0.0    # Cross-entropy label smoothing.
  c.train.loop = "auto"            # "scan", "python" or "auto" (see Trainer._choose_loop).
  c.train.unroll = 1               # Steps per iteration of the compiled scan (lax.scan's
                                   # unroll; the scan loop only). 8: 1.13-1.15x faster small
                                   # LeNet steps on an H200 (benchmarks/RESULTS.md).
  c.train.seed_devices = 0         # Devices the runs are spread over (mesh axis 'seed'); 0 = auto:
                                   # gcd(seeds, devices) when seeds >= devices, else 1 (data parallel),
                                   # raised until the batch divides over the rest (trainer.py).
  c.train.loss = "cross_entropy"   # "cross_entropy", "exponential" or "mse" (½‖f − onehot‖²; losses.py).
  c.train.precision = "float32"    # Compute dtype: "float32" or "bfloat16" (float32 master
                                   # weights, optimizer state and BatchNorm statistics;
                                   # no loss scaling: bf16 has float32's exponent range).
  c.train.eval_train = True        # Also evaluate (eval mode) on the training split.
  c.train.max_train_eval = 0       # Evaluate train metrics on the first N examples (0 = all).
  return c


def resnet20(c):
  """OpenLTH's CIFAR ResNet-20: widths 16/32/64, Kaiming-normal weights."""
  c.model.name = "resnet"
  c.model.depth = 20               # ResNet-20: 3 stages x 3 basic blocks.
  c.model.width = 16
  c.model.kernel_init = "kaiming_normal"


def resnet20_cifar10(c):
  """`resnet20` on TFDS CIFAR-10 with pad-4 crop + flip, SGD momentum 0.9 at
  lr 0.1 and batch 128: OpenLTH's model, data and optimizer, without its
  schedule."""
  c.data.name = "cifar10"          # TFDS catalogue: needs a network and [tfds].
  c.data.augment = "crop_flip"     # Pad-4 random crop + horizontal flip.
  resnet20(c)
  c.optim.name = "momentum"
  c.optim.lr = 0.1
  c.optim.momentum = 0.9
  c.train.batch_size = 128
  c.train.log_every = 500


def training_protocol(c) -> dict:
  """The training settings a reference's number is compared under: a
  variant records its own as the reference's, and the report compares them
  with the run's (a material difference is a reason)."""
  return {"optimizer": c.optim.name, "lr": c.optim.lr,
          "batch": c.train.batch_size, "steps": c.train.steps,
          "schedule": c.optim.schedule}


def openlth_resnet20_cifar10(c):
  """OpenLTH's CIFAR-10 ResNet-20 protocol (cifar_resnet_20, Frankle et al.
  2020): `resnet20_cifar10`, weight decay 1e-4, lr x0.1 at steps 32K and 48K
  of 63K."""
  resnet20_cifar10(c)
  c.optim.weight_decay = 1e-4
  c.optim.schedule = "step"
  c.optim.boundaries = (32000, 48000)
  c.train.steps = 63000


def shrink_for_local(c, steps: int, checkpoint_every: int,
                     widths: tuple = (), width_multiplier: float = 0.0,
                     sweeps_width: bool = False):
  """The shared part of every config's `runlocal`: a few steps of a small
  model on at most 2000 training examples (tests and smoke runs); MLPs with
  hidden `widths` if given, conv nets and VGGs at most `width_multiplier`
  wide if given (each only where the model reads the field). `sweeps_width`:
  the experiment sets the width itself (a width sweep): only depth shrinks."""
  c.train.steps = steps
  c.train.log_every = 10
  c.train.eval_every = 20
  c.train.checkpoint_every = checkpoint_every
  c.train.eval_batch_size = 500
  c.data.train_size = min(c.data.train_size or 2000, 2000)
  c.data.validation_size = min(c.data.validation_size, 200)
  # Only what the model reads: a field it does not read, moved, would be a
  # setting recorded but unused (validation.check_choices refuses those).
  from jaxunknowns import validation  # pylint: disable=g-import-not-at-top
  read = validation.model_fields_read(c.model) or set(c.model)
  if sweeps_width:
    read -= {"widths", "width", "width_multiplier"}
  if "widths" in read:
    c.model.widths = tuple(widths) or tuple(min(w, 32) for w in c.model.widths)
  if "depth" in read and c.model.name == "resnet":
    c.model.depth = 8
  if "width" in read:
    c.model.width = min(c.model.width, 8)
  if width_multiplier and "width_multiplier" in read:
    c.model.width_multiplier = min(c.model.width_multiplier, width_multiplier)


def parse_config_arg(arg: str, variants, default: str, config_file: str):
  """'variant[,runlocal]' -> (variant function, runlocal?) for get_config.

  Every configs/*.py takes the same argument: a named variant (or none for
  `default`), optionally followed by ',runlocal' for a tiny smoke-test size.
  """
  names = [a for a in (arg or "").split(",") if a]
  unknown_flags = [n for n in names[1:] if n != "runlocal"]
  variant = next((n for n in names if n != "runlocal"), default)
  if variant not in variants or unknown_flags:
    raise ValueError(
        f"unknown variant {(unknown_flags or [variant])[0]!r} of "
        f"{config_file}; valid: {', '.join(variants)} (optionally ',runlocal')")
  return variants[variant], "runlocal" in names


def make_config(arg: str, *, variants, default: str, config_file: str,
                fields, runlocal) -> ml_collections.ConfigDict:
  """What every configs/*.py `get_config(arg)` does: the base config, the
  experiment's own fields (`fields(c)`), the chosen variant, then `runlocal`
  if ',runlocal' was asked for (see `parse_config_arg`)."""
  variant, small = parse_config_arg(arg, variants, default, config_file)
  c = base_config()
  fields(c)
  FIELD_DEFAULTS[c.experiment] = c.copy_and_resolve_references()
  _FILE_RECIPES[c.experiment] = (fields, tuple(variants.values()), runlocal)
  _FILE_CONFIGS.pop(c.experiment, None)
  variant(c)
  if small:
    run_small(runlocal, c)
  return c


def run_small(runlocal, c):
  """`runlocal(c)`, with the lr schedule shrunk with the run: step
  boundaries and the warm-up at the same fractions of train.steps (imp's
  runlocal of 40 steps decays at 50% and 75% of them, not at steps 750 and
  1125, which it never reaches and validation refuses)."""
  steps = c.train.steps
  runlocal(c)
  if c.train.steps < steps:
    f = c.train.steps / steps
    c.optim.boundaries = tuple(sorted({max(1, int(b * f))
                                       for b in c.optim.boundaries}))
    c.optim.warmup_steps = int(c.optim.warmup_steps * f)


def _file_configs(experiment: str):
  if experiment not in _FILE_CONFIGS:
    fields, variants, runlocal = _FILE_RECIPES[experiment]
    out = []
    for variant in variants:
      for small in (False, True):
        c = base_config()
        fields(c)
        if variant is not None:
          variant(c)
        if small:
          run_small(runlocal, c)
        out.append(c)
    _FILE_CONFIGS[experiment] = out
  return _FILE_CONFIGS[experiment]


class _FileValues:
  """The values of one field in a config file's every config, built on the
  first membership test (check_applies asks only for a moved value)."""

  def __init__(self, experiment: str, dotted: str):
    self.experiment, self.dotted = experiment, dotted

  def _values(self) -> list:
    if self.experiment not in _FILE_RECIPES:
      return []
    values = []
    for c in _file_configs(self.experiment):
      for key in self.dotted.split("."):
        c = c.get(key) if hasattr(c, "get") else None
      values.append(c)
    return values

  def __contains__(self, value) -> bool:
    return value in self._values()

  def __iter__(self):
    return iter(self._values())


def file_values(experiment: str, dotted: str) -> _FileValues:
  """The values `dotted` takes in the config file of `experiment` (every
  variant, with and without runlocal): values the file itself gives, not
  the user (validation.check_applies leaves them alone); none for an
  experiment whose config was not made by `make_config`."""
  return _FileValues(experiment, dotted)
