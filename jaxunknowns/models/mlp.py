"""Fully connected models: MLP, LeNet-300-100, and the MNIST-1D residual MLP.

All flatten every axis after the batch axis, so they take images, MNIST-1D
sequences and tabular rows alike.
"""

from typing import Tuple

import flax.linen as nn
import jax.numpy as jnp

from jaxunknowns.errors import UserError
from jaxunknowns.models import layers


class MLP(nn.Module):
  """Dense(w) -> [norm] -> ReLU -> [dropout] for each w, then Dense `output`.

  Hidden layers are auto-named `Dense_0`, `Dense_1`, ...; norm layers
  `BatchNorm_i` / `GroupNorm_i` / `LayerNorm_i`.
  """
  widths: Tuple[int, ...] = (100, 100)
  num_classes: int = 10
  opts: layers.Options = layers.Options()

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = layers.flatten(layers.as_float(x))
    for width in self.widths:
      x = layers.hidden_dense(x, width, self.opts, train)
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


def build_mlp(cfg, num_classes: int) -> nn.Module:
  """`mlp`: hidden layers `model.widths` (any number, may be empty)."""
  widths = _widths(cfg)
  return MLP(widths=widths, num_classes=num_classes,
             opts=layers.read_options(cfg, channels=widths))


def build_lenet_300_100(cfg, num_classes: int) -> nn.Module:
  """`lenet_300_100`: Frankle & Carbin's MLP 300-100 (266,610 params on MNIST).

  Default init: Gaussian Glorot, as in Frankle & Carbin (2019), Figure 2.
  """
  widths = (300, 100)
  return MLP(widths=widths, num_classes=num_classes,
             opts=layers.read_options(cfg, default_init="glorot_normal",
                                      channels=widths))


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
