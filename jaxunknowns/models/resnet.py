"""CIFAR ResNet-(6n+2) (He et al. 2016, Sec. 4.2; OpenLTH's cifar_resnet_D_W).

A 3x3 conv stem with `width` channels, three stages of n basic blocks with
widths w, 2w, 4w (stride 2 at the first block of stages 2 and 3), global
average pooling and Dense `output`. Where a block changes shape, the shortcut
is a 1x1 conv projection with stride 2 followed by the norm (He et al.'s
option B, as OpenLTH; the paper's CIFAR nets used zero-padding, option A).
ResNet-20 at width 16 with batch norm has 272,474 parameters.

Names: `Conv_0` / `<norm>_0` (stem), blocks `BasicBlock_0`, ... each holding
`Conv_0`, `Conv_1` (the 3x3 convs), `Conv_2` (the projection, where there is
one) and their norms; the classifier `output`.
"""

from typing import Tuple

import flax.linen as nn
import jax.numpy as jnp

from jaxunknowns.errors import UserError
from jaxunknowns.models import layers


class BasicBlock(nn.Module):
  """conv3x3 -> norm/ReLU -> [dropout] -> conv3x3 -> norm, + shortcut, ReLU.

  norm_position="after" moves each norm behind its ReLU:
  conv -> ReLU -> norm -> conv, + shortcut, -> ReLU -> norm
  (the projection then has no norm of its own: the sum is normalized).
  Dropout sits between the two convs (as in wide ResNets).
  """
  features: int
  strides: int = 1
  shortcut: bool = True
  opts: layers.Options = layers.Options()

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    opts, nd = self.opts, x.ndim - 2
    before = opts.norm_position == "before"
    # A conv bias is redundant when a norm directly follows the conv.
    use_bias = opts.norm == "none" or not before
    conv = lambda k, s, p: nn.Conv(
        self.features, kernel_size=(k,) * nd, strides=(s,) * nd,
        padding=layers.pad(p, nd), use_bias=use_bias,
        kernel_init=opts.kernel_init_fn())

    y = conv(3, self.strides, 1)(x)
    y = layers.dropout(layers.act_norm(y, opts, train), opts, train)
    y = conv(3, 1, 1)(y)
    if before:
      y = layers.normalize(y, opts, train)
    if self.shortcut:
      residual = x
      if self.strides != 1 or x.shape[-1] != self.features:
        residual = conv(1, self.strides, 0)(x)
        if before:
          residual = layers.normalize(residual, opts, train)
      y = y + residual
    y = nn.relu(y)
    if not before:
      y = layers.normalize(y, opts, train)
    return y


class ResNet(nn.Module):
  """CIFAR ResNet with `blocks_per_stage` = n = (depth - 2) / 6."""
  blocks_per_stage: int = 3
  width: int = 16
  shortcut: bool = True
  num_classes: int = 10
  opts: layers.Options = layers.Options()

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    opts = self.opts
    x, nd = layers.channels_last(layers.as_float(x))
    x = nn.Conv(self.width, kernel_size=(3,) * nd, padding=layers.pad(1, nd),
                use_bias=opts.norm == "none" or opts.norm_position == "after",
                kernel_init=opts.kernel_init_fn())(x)
    x = layers.act_norm(x, opts, train)
    for stage, features in enumerate(stage_widths(self.width)):
      for block in range(self.blocks_per_stage):
        strides = 2 if stage > 0 and block == 0 else 1
        x = BasicBlock(features, strides=strides, shortcut=self.shortcut,
                       opts=opts)(x, train)
    x = layers.global_avg_pool(x)
    return layers.output_dense(x, self.num_classes, opts)


def stage_widths(width: int) -> Tuple[int, int, int]:
  return (width, 2 * width, 4 * width)


def build_resnet(cfg, num_classes: int) -> nn.Module:
  """`resnet`: depth `model.depth` = 6n+2, first-stage width `model.width`,
  `model.shortcut` (False: a plain net of the same depth). Defaults: batch
  norm; Kaiming normal, fan_in (OpenLTH; Frankle et al.'s BN-only protocol)."""
  depth = int(cfg.get("depth", 20))
  if depth < 8 or (depth - 2) % 6:
    raise UserError(
        f"model.depth={depth} is not a CIFAR ResNet depth 6n+2 "
        f"(8, 14, 20, 32, 44, 56, 110, ...)")
  width = int(cfg.get("width", 16))
  if width < 1:
    raise UserError(f"model.width must be >= 1, got {width}")
  opts = layers.read_options(cfg, default_norm="batch",
                             default_init="kaiming_normal",
                             channels=stage_widths(width))
  return ResNet(blocks_per_stage=(depth - 2) // 6, width=width,
                shortcut=bool(cfg.get("shortcut", True)),
                num_classes=num_classes, opts=opts)
