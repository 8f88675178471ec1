"""Fully connected models: MLP, LeNet-300-100, Cohen et al.'s fc-tanh, and
the MNIST-1D residual MLP.

All flatten every axis after the batch axis, so they take images, MNIST-1D
sequences and tabular rows alike.
"""

from typing import Tuple

import flax.linen as nn
import jax.numpy as jnp

from jaxunknowns.errors import UserError
from jaxunknowns.models import layers


class MLP(nn.Module):
  """Dense(w) -> [norm] -> activation -> [dropout] for each w, then Dense
  `output`; the activation is ReLU unless `activation` names another of
  layers.ACTIVATIONS.

  Hidden layers are auto-named `Dense_0`, `Dense_1`, ...; norm layers
  `BatchNorm_i` / `GroupNorm_i` / `LayerNorm_i`.
  """
  widths: Tuple[int, ...] = (100, 100)
  num_classes: int = 10
  opts: layers.Options = layers.Options()
  activation: str = "relu"

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    act = layers.ACTIVATIONS[self.activation]
    x = layers.flatten(layers.as_float(x))
    for width in self.widths:
      x = layers.hidden_dense(x, width, self.opts, train, act)
    return layers.output_dense(x, self.num_classes, self.opts)


class ResidualMLP(nn.Module):
  """The MNIST-1D authors' MLP (their `MLPBase` and lottery-ticket notebook).

      h = relu(Dense_0(x));  h = h + relu(Dense_i(h)) for each further layer;
      logits = output(h)

  With widths (100, 100) this is their 40-100-100-10 benchmark MLP; the
  lottery-ticket notebook uses widths (500, 500). Norm and dropout, when set,
  act on each branch before it is added.
  """
  width: int = 100
  num_blocks: int = 1
  num_classes: int = 10
  opts: layers.Options = layers.Options()

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = layers.flatten(layers.as_float(x))
    h = layers.hidden_dense(x, self.width, self.opts, train)
    for _ in range(self.num_blocks):
      h = h + layers.hidden_dense(h, self.width, self.opts, train)
    return layers.output_dense(h, self.num_classes, self.opts)


def _widths(cfg) -> Tuple[int, ...]:
  widths = tuple(int(w) for w in cfg.get("widths", (100, 100)))
  if any(w < 1 for w in widths):
    raise UserError(f"model.widths must be positive integers, got {widths}")
  return widths


def _hidden_options(cfg, widths, **kw) -> layers.Options:
  """The options of an MLP's hidden layers. Without one (widths (): a
  linear model) a norm or dropout would be recorded but act on nothing, and
  a BatchNorm grid's arms would train the same network."""
  opts = layers.read_options(cfg, channels=widths, **kw)
  if not widths and (opts.norm != "none" or opts.dropout):
    field, value = (("model.norm", opts.norm) if opts.norm != "none" else
                    ("model.dropout", opts.dropout))
    raise UserError(f"{field}={value!r} acts on hidden layers and "
                    "model.widths=() has none: give the MLP a hidden layer, "
                    f"or run without {field}")
  return opts


def build_mlp(cfg, num_classes: int) -> nn.Module:
  """`mlp`: hidden layers `model.widths` (any number, may be empty)."""
  widths = _widths(cfg)
  return MLP(widths=widths, num_classes=num_classes,
             opts=_hidden_options(cfg, widths))


def build_lenet_300_100(cfg, num_classes: int) -> nn.Module:
  """`lenet_300_100`: Frankle & Carbin's MLP 300-100 (266,610 params on MNIST).

  Default init: Gaussian Glorot, as in Frankle & Carbin (2019), Figure 2.
  """
  widths = (300, 100)
  return MLP(widths=widths, num_classes=num_classes,
             opts=layers.read_options(cfg, default_init="glorot_normal",
                                      channels=widths))


def build_fc_tanh(cfg, num_classes: int) -> nn.Module:
  """`fc_tanh`: Cohen, Kaur, Li, Kolter & Talwalkar (2021)'s fully connected
  tanh network, hidden layers `model.widths` (Dense -> tanh), then Dense
  `output`, with PyTorch's nn.Linear default init as their code uses: kernel
  and bias U(±1/sqrt(fan_in)) (`model.kernel_init` other than "default"
  takes the kernel's instead, with zero biases)."""
  widths = _widths(cfg)
  return MLP(widths=widths, num_classes=num_classes, activation="tanh",
             opts=_hidden_options(cfg, widths,
                                  default_init=layers.PYTORCH_UNIFORM))


def build_residual_mlp(cfg, num_classes: int) -> nn.Module:
  """`residual_mlp`: width `model.widths[0]`, one residual block per further
  entry of `model.widths` (all entries must be equal)."""
  widths = _widths(cfg)
  if not widths or len(set(widths)) != 1:
    raise UserError(
        f"residual_mlp needs equal model.widths (e.g. (500, 500)), got {widths}")
  return ResidualMLP(width=widths[0], num_blocks=len(widths) - 1,
                     num_classes=num_classes,
                     opts=layers.read_options(cfg, channels=widths))


# ---- NTK parameterization ---------------------------------------------------
# Jacot et al. (2018); Lee et al. (2019, eq. 1), neural-tangents' Dense with
# parameterization="ntk": every weight and bias is N(0, 1) and the layer
# scales its output, z = (w_std / sqrt(fan_in)) x W + b_std b. The forward
# pass at init equals the standard parameterization's with W ~ N(0,
# w_std^2 / fan_in), but the gradient of each weight is 1/sqrt(fan_in)
# smaller, so with a width-independent learning rate the weights move by
# O(1/sqrt(width)) relative to their size: the parameterization in which Lee
# et al. state the lazy-regime scaling.
NTK_W_STD = 2.0 ** 0.5  # He's gain for ReLU hidden layers (output layer: 1).
NTK_B_STD = 0.1         # Bias scale (neural-tangents' examples use 0.05-0.1).


class NTKDense(nn.Module):
  """Dense layer in NTK parameterization; params `kernel` and `bias`."""
  features: int
  w_std: float = 1.0
  b_std: float = NTK_B_STD

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    normal = nn.initializers.normal(stddev=1.0)
    kernel = self.param("kernel", normal, (x.shape[-1], self.features))
    bias = self.param("bias", normal, (self.features,))
    return (self.w_std / x.shape[-1] ** 0.5) * (x @ kernel) + self.b_std * bias


class NTKMLP(nn.Module):
  """NTKDense(w) -> ReLU for each w, then NTKDense `output` (w_std 1)."""
  widths: Tuple[int, ...] = (512,)
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train  # no norm or dropout: the NTK limit's plain network
    x = layers.flatten(layers.as_float(x))
    for width in self.widths:
      x = nn.relu(NTKDense(width, w_std=NTK_W_STD)(x))
    return NTKDense(self.num_classes, name="output")(x)


def build_ntk_mlp(cfg, num_classes: int) -> nn.Module:
  """`ntk_mlp`: hidden layers `model.widths` in NTK parameterization (see
  NTKDense); no norm, dropout or kernel_init options (they would leave the
  parameterization)."""
  widths = _widths(cfg)
  for field, plain in (("norm", ("none", "default")), ("dropout", (0, 0.0)),
                       ("kernel_init", ("default",))):
    if cfg.get(field, plain[0]) not in plain:
      raise UserError(f"model.{field}={cfg.get(field)!r} does not apply to "
                      f"ntk_mlp (NTK parameterization: N(0, 1) weights, no "
                      f"norm or dropout)")
  return NTKMLP(widths=widths, num_classes=num_classes)
