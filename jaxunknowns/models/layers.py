"""What every model shares: config validation, initializers, normalization.

The model files build their layers from these helpers so that `model.norm`,
`model.norm_position`, `model.kernel_init`, `model.bn_scale_init` and
`model.dropout` (and `model.noise_mean_std` / `model.noise_scale_std` /
`model.noise_per` of norm="noisy_batch") mean the same thing in every
architecture, and every bad value fails the same way (a one-line `UserError` naming the field and the valid
values) when the model is *created*, before anything is traced or written.
"""

import dataclasses
from typing import Any, Callable, Iterable, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxunknowns.errors import UserError

NORMS = ("default", "batch", "noisy_batch", "group", "layer", "none")
# The model.* fields only some norms read: {field: the norms that read it}.
_NORMALIZING = ("batch", "noisy_batch", "group", "layer")
NORM_FIELDS = {"norm_position": _NORMALIZING, "bn_scale_init": _NORMALIZING,
               "num_groups": ("group",), "noise_mean_std": ("noisy_batch",),
               "noise_scale_std": ("noisy_batch",),
               "noise_per": ("noisy_batch",)}
# What an experiment whose arms or cells set model.norm registers as its
# own_fields, judging them by its norms (validation.check_norm_fields).
NORM_FIELD_PATHS = tuple(f"model.{f}" for f in NORM_FIELDS)
NORM_POSITIONS = ("before", "after")
KERNEL_INITS = ("default", "kaiming_normal", "glorot_normal", "lecun_normal",
                "zeros")
BN_SCALE_INITS = ("ones", "uniform")
# What one draw of noisy BN's noise covers (DistributionNoise): the whole
# batch, or each example (Santurkar et al.'s i.i.d. noise).
NOISE_PER = ("batch", "example")
# Hidden activations a model may take (the MLP's `activation`).
ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh}

# BatchNorm as PyTorch sets it up (OpenLTH, the papers' code): PyTorch's
# momentum 0.1 is Flax's momentum 0.9 (Flax: ra = 0.9 * ra + 0.1 * batch) and
# epsilon 1e-5. One difference remains: PyTorch keeps the *unbiased* batch
# variance in its running average, Flax the biased one (a factor n/(n-1)).
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
# Group and layer norm use the same epsilon as BN (PyTorch's default too).
NORM_EPSILON = 1e-5


def check_choice(field: str, value: Any, valid: Sequence[str]) -> str:
  """Returns `value` if it is one of `valid`, else raises a one-line UserError."""
  if value not in valid:
    raise UserError(
        f"unknown {field} {value!r}; valid values: {', '.join(valid)}")
  return value


# ---- Initializers ------------------------------------------------------------
# "normal" means an untruncated Gaussian, as in PyTorch's kaiming_normal_ /
# xavier_normal_ and in the papers' text ("Gaussian Glorot", "Kaiming normal").
# Flax's own named initializers are truncated normals; only the Flax default
# (what an MLP gets with kernel_init="default") keeps that.
_INITIALIZERS = {
    # std = sqrt(2 / fan_in); fan_in = in_features (Dense) or
    # kernel_h * kernel_w * in_channels (Conv): PyTorch's kaiming_normal_
    # default mode, used by OpenLTH's ResNet and VGG.
    "kaiming_normal": nn.initializers.variance_scaling(2.0, "fan_in", "normal"),
    # std = sqrt(2 / (fan_in + fan_out)).
    "glorot_normal": nn.initializers.variance_scaling(1.0, "fan_avg", "normal"),
    # std = sqrt(1 / fan_in).
    "lecun_normal": nn.initializers.variance_scaling(1.0, "fan_in", "normal"),
    # All zeros: gradient descent "from 0" (Soudry et al.'s linear models).
    "zeros": nn.initializers.zeros,
    # Flax's Dense/Conv default: lecun normal, truncated at 2 std (rescaled
    # so the variance stays 1 / fan_in). Only reachable through "default".
    "flax_default": nn.linear.default_kernel_init,
}


# PyTorch nn.Linear's default init, of weight AND bias: U(±1/sqrt(fan_in)).
# It needs the layer's fan_in for the bias too, so it is no entry of the table
# above: only a dense model's `default_init` names it (`dense` builds it).
PYTORCH_UNIFORM = "pytorch_uniform"


def pytorch_uniform(fan_in: int) -> Callable:
  """PyTorch nn.Linear's default init of weight and bias: U(±1/sqrt(fan_in))."""
  bound = 1.0 / np.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
      key, shape, dtype, -bound, bound)


def kernel_initializer(name: str, model_default: str) -> Callable:
  """The kernel initializer for `model.kernel_init`; "default" -> the model's."""
  check_choice("model.kernel_init", name, KERNEL_INITS)
  return _INITIALIZERS[model_default if name == "default" else name]


def scale_initializer(name: str) -> Callable:
  """Normalization gamma: ones, or U[0, 1) (Frankle et al. 2020, BN-only)."""
  check_choice("model.bn_scale_init", name, BN_SCALE_INITS)
  if name == "uniform":
    return nn.initializers.uniform(scale=1.0)
  return nn.initializers.ones


# ---- The options a model reads from its config -----------------------------


@dataclasses.dataclass(frozen=True)
class Options:
  """The validated options shared by all models (plain, hashable values)."""
  norm: str = "none"              # "batch", "group", "layer" or "none".
  norm_position: str = "before"   # Norm "before" or "after" the activation.
  num_groups: int = 8             # Group norm groups (clipped to the channels).
  bn_scale_init: str = "ones"     # Gamma of every norm layer: "ones", "uniform".
  dropout: float = 0.0            # Dropout rate after hidden activations.
  kernel_init: str = "default"    # A name of KERNEL_INITS.
  default_init: str = "flax_default"  # What "default" means for this model.
  noise_mean_std: float = 0.0     # noisy_batch: std of the per-step shift.
  noise_scale_std: float = 0.0    # noisy_batch: std of the per-step log scale.
  noise_per: str = "batch"        # noisy_batch: a draw per "batch" or "example".

  def kernel_init_fn(self) -> Callable:
    return kernel_initializer(self.kernel_init, self.default_init)


def read_options(cfg, *, default_norm: str = "none",
                 default_init: str = "flax_default",
                 channels: Iterable[int] = ()) -> Options:
  """Reads and validates the shared `model.*` fields of `cfg`.

  `default_norm` replaces `model.norm = "default"`; `channels` are the widths
  the model normalizes, checked against `model.num_groups` for group norm.
  """
  norm = check_choice("model.norm", cfg.get("norm", "none"), NORMS)
  if norm == "default":
    norm = default_norm
  # A norm's own fields (NORM_FIELDS) are read only under that norm: a field
  # the builder reads passes validation.check_choices, so one read but unused
  # (num_groups without group norm) would be recorded for a run that
  # ignored it.
  def own(field, default):
    return cfg.get(field, default) if norm in NORM_FIELDS[field] else default
  opts = Options(
      norm=norm,
      norm_position=check_choice("model.norm_position",
                                 own("norm_position", "before"),
                                 NORM_POSITIONS),
      num_groups=int(own("num_groups", 8)),
      bn_scale_init=check_choice("model.bn_scale_init",
                                 own("bn_scale_init", "ones"), BN_SCALE_INITS),
      dropout=float(cfg.get("dropout", 0.0)),
      kernel_init=check_choice("model.kernel_init",
                               cfg.get("kernel_init", "default"),
                               KERNEL_INITS),
      default_init=default_init,
      noise_mean_std=float(own("noise_mean_std", 0.0)),
      noise_scale_std=float(own("noise_scale_std", 0.0)),
      noise_per=check_choice("model.noise_per", own("noise_per", "batch"),
                             NOISE_PER),
  )
  for field in ("noise_mean_std", "noise_scale_std"):
    if not getattr(opts, field) >= 0.0:  # also rejects NaN
      raise UserError(f"model.{field} must be >= 0, got {getattr(opts, field)}")
  if not 0.0 <= opts.dropout < 1.0:
    raise UserError(f"model.dropout must be in [0, 1), got {opts.dropout}")
  if opts.norm == "group":
    if opts.num_groups < 1:
      raise UserError(f"model.num_groups must be >= 1, got {opts.num_groups}")
    for c in channels:
      group_count(opts.num_groups, c)
  return opts


def group_count(num_groups: int, channels: int) -> int:
  """Groups for `channels`: num_groups clipped to channels; must divide them."""
  groups = min(num_groups, channels)
  if channels % groups:
    raise UserError(
        f"model.num_groups={num_groups} does not divide a layer's {channels} "
        f"channels; choose a divisor of every width")
  return groups


# ---- Layers (call these inside a module's @nn.compact __call__) -------------


def normalize(x: jnp.ndarray, opts: Options, train: bool) -> jnp.ndarray:
  """The normalization `opts.norm` over the last (channel/feature) axis."""
  scale_init = scale_initializer(opts.bn_scale_init)
  if opts.norm == "none":
    return x
  if opts.norm == "noisy_batch":
    x = normalize(x, dataclasses.replace(opts, norm="batch"), train)
    if not train:
      return x
    return DistributionNoise(opts.noise_mean_std, opts.noise_scale_std,
                             per_example=opts.noise_per == "example")(x)
  if opts.norm == "batch":
    # train=True: batch statistics, and `batch_stats` is updated (the caller
    # passes mutable=['batch_stats']); train=False: the running averages.
    # No axis_name: under jit with a sharded batch the statistics are global.
    return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM,
                        epsilon=BN_EPSILON, scale_init=scale_init)(x)
  if opts.norm == "group":
    return nn.GroupNorm(num_groups=group_count(opts.num_groups, x.shape[-1]),
                        epsilon=NORM_EPSILON, scale_init=scale_init)(x)
  if opts.norm == "layer":
    # Statistics over every non-batch axis (C, and H, W for images), as in
    # Wu & He's GroupNorm comparison (LN = GN with one group); gamma and beta
    # are per channel.
    return nn.LayerNorm(epsilon=NORM_EPSILON,
                        reduction_axes=tuple(range(1, x.ndim)),
                        feature_axes=-1, scale_init=scale_init)(x)
  raise UserError(f"unknown model.norm {opts.norm!r}; valid values: "
                  f"{', '.join(NORMS)}")


class DistributionNoise(nn.Module):
  """Santurkar et al. (2018, Sec. 2.2)'s "noisy BatchNorm": a BN output whose
  distribution is moved at every training step.

  Per activation j (every non-batch axis: each unit, and each spatial
  position of a conv map) and per call, draws a shift m_j ~ N(0, mean_std^2)
  and a scale s_j = exp(N(0, scale_std^2)), and returns s_j * x + m_j. After
  BN each activation has batch mean 0 and variance 1; afterwards it has mean
  m_j != 0 and variance s_j^2 != 1, re-drawn each step because the trainer
  gives every step a fresh 'dropout' key (fold_in(run rng, step)). Using the
  'dropout' stream means no trainer change: `Trainer.apply` passes it in
  train mode. The caller applies this only in train mode (eval: plain BN).

  By default one draw per activation is shared by the batch, so the
  perturbation is an exact affine map of each activation (the batch's
  distribution moves; no example gets noise of its own). `per_example`
  (model.noise_per="example") draws for each example too, as Santurkar et
  al. perturb "each activation for each sample in the batch" with i.i.d.
  noise. The report's noisy-BN row names the setting a run used.
  """
  mean_std: float
  scale_std: float
  per_example: bool = False

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    k_shift, k_scale = jax.random.split(self.make_rng("dropout"))
    shape = x.shape if self.per_example else x.shape[1:]
    shift = self.mean_std * jax.random.normal(k_shift, shape, x.dtype)
    scale = jnp.exp(self.scale_std * jax.random.normal(k_scale, shape, x.dtype))
    return x * scale + shift


def dropout(x: jnp.ndarray, opts: Options, train: bool) -> jnp.ndarray:
  """Dropout at rate `opts.dropout` when training (rng stream 'dropout')."""
  if opts.dropout <= 0.0:
    return x
  return nn.Dropout(rate=opts.dropout, deterministic=not train)(x)


def act_norm(x: jnp.ndarray, opts: Options, train: bool,
             act: Callable = nn.relu) -> jnp.ndarray:
  """Activation with the norm before (norm -> act) or after (act -> norm) it."""
  if opts.norm_position == "before":
    return act(normalize(x, opts, train))
  return normalize(act(x), opts, train)


def dense(x: jnp.ndarray, features: int, opts: Options, *,
          use_bias: bool = True, name: Optional[str] = None) -> jnp.ndarray:
  """A Dense layer with the model's initializers: the kernel's from
  `opts` (`model.kernel_init`), a zero bias; for a model whose default is
  PYTORCH_UNIFORM (and kernel_init "default"), kernel and bias both
  U(±1/sqrt(fan_in))."""
  if opts.kernel_init == "default" and opts.default_init == PYTORCH_UNIFORM:
    init = pytorch_uniform(x.shape[-1])
    return nn.Dense(features, use_bias=use_bias, kernel_init=init,
                    bias_init=init, name=name)(x)
  return nn.Dense(features, use_bias=use_bias,
                  kernel_init=opts.kernel_init_fn(), name=name)(x)


def hidden_dense(x: jnp.ndarray, features: int, opts: Options, train: bool,
                 act: Callable = nn.relu) -> jnp.ndarray:
  """Dense -> norm/activation (ReLU unless `act`) -> dropout: one hidden
  layer of an MLP."""
  x = dense(x, features, opts)
  return dropout(act_norm(x, opts, train, act), opts, train)


def output_dense(x: jnp.ndarray, num_classes: int, opts: Options,
                 use_bias: bool = True) -> jnp.ndarray:
  """The classifier: a Dense layer named `output` (pruning relies on it)."""
  return dense(x, num_classes, opts, use_bias=use_bias, name="output")


# ---- Input shapes -------------------------------------------------------------


def as_float(x: jnp.ndarray) -> jnp.ndarray:
  """Integer inputs (raw uint8 pixels) become float32; floats stay as they are."""
  return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def require_features(x: jnp.ndarray) -> jnp.ndarray:
  """x itself, unless the convolutions and poolings before have shrunk a
  spatial axis to nothing (inputs too small for the model): a UserError then,
  not a ZeroDivisionError in the next layer's init or a NaN mean."""
  if any(d == 0 for d in x.shape[1:]):
    raise UserError(
        f"model.name: its convolutions and poolings leave no features of "
        f"these inputs (shape {tuple(x.shape[1:])} after them): the inputs "
        f"are too small for this model; use an MLP (--config.model.name=mlp) "
        f"or a dataset with larger inputs")
  return x


def flatten(x: jnp.ndarray) -> jnp.ndarray:
  """[B, ...] -> [B, prod(...)]."""
  return require_features(x).reshape((x.shape[0], -1))


def channels_last(x: jnp.ndarray) -> Tuple[jnp.ndarray, int]:
  """[B, L] -> [B, L, 1]; returns x and its number of spatial dims (1 or 2...).

  Convolutional models convolve over every axis between batch and channels:
  Conv1d for [B, L, C] (MNIST-1D), Conv2d for [B, H, W, C] (images).
  """
  if x.ndim == 2:
    x = x[..., None]
  if x.ndim < 3:
    raise UserError(
        f"a convolutional model needs inputs [B, L, C] or [B, H, W, C]; "
        f"got shape {tuple(x.shape)}")
  return x, x.ndim - 2


def global_avg_pool(x: jnp.ndarray) -> jnp.ndarray:
  """Mean over the spatial axes: [B, *spatial, C] -> [B, C]."""
  return jnp.mean(require_features(x), axis=tuple(range(1, x.ndim - 1)))


def max_pool2(x: jnp.ndarray) -> jnp.ndarray:
  """2x max pooling with stride 2 over every spatial axis (PyTorch MaxPool(2))."""
  nd = x.ndim - 2
  return nn.max_pool(x, window_shape=(2,) * nd, strides=(2,) * nd,
                     padding="VALID")


def pad(p: int, nd: int):
  """Symmetric explicit padding, PyTorch-style (Flax 'SAME' pads stride-2
  convs asymmetrically, which shifts the sampling grid)."""
  return ((p, p),) * nd


def scaled(width: int, multiplier: float) -> int:
  """A layer width times `model.width_multiplier`, at least 1."""
  return max(1, int(round(width * multiplier)))
