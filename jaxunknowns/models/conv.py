"""Plain convolutional models: Conv-2/4/6, the MNIST-1D CNN, CIFAR VGG.

Every conv is N-d over the axes between batch and channels: Conv1d on
MNIST-1D's [B, 40, 1] (a [B, L] input gets a channel axis), Conv2d on images
[B, H, W, C]. Paddings are explicit and symmetric, as in the PyTorch/TF
originals. Convs are auto-named `Conv_0`, `Conv_1`, ..., hidden dense layers
`Dense_0`, ..., the classifier `output`.
"""

from typing import Tuple, Union

import flax.linen as nn
import jax.numpy as jnp

from jaxunknowns.errors import UserError
from jaxunknowns.models import layers

POOL = "M"  # A 2x max pool in a layer plan.



def conv_stack(x, plan, opts: layers.Options, train: bool):
  """The plan's 3x3 convs (pad 1) -> [norm] -> ReLU -> [dropout], and 2x max
  pools at POOL: the body ConvNet and VGG share. Called inside a compact
  module, so the convs are that module's (Conv_0, Conv_1, ...)."""
  x, nd = layers.channels_last(layers.as_float(x))
  for entry in plan:
    if entry == POOL:
      x = layers.max_pool2(x)
      continue
    x = nn.Conv(entry, kernel_size=(3,) * nd, padding=layers.pad(1, nd),
                kernel_init=opts.kernel_init_fn())(x)
    x = layers.dropout(layers.act_norm(x, opts, train), opts, train)
  return x

class ConvNet(nn.Module):
  """Frankle & Carbin (2019)'s Conv-2/4/6 for CIFAR-10.

  Plan entries: an int is conv 3x3 (stride 1, pad 1) -> [norm] -> ReLU ->
  [dropout]; "M" is a 2x max pool. Then flatten, hidden dense layers
  `fc_widths` (ReLU, [norm], [dropout]) and Dense `output`.
  """
  plan: Tuple[Union[int, str], ...] = (64, 64, POOL)
  fc_widths: Tuple[int, ...] = (256, 256)
  num_classes: int = 10
  opts: layers.Options = layers.Options()

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = conv_stack(x, self.plan, self.opts, train)
    x = layers.flatten(x)
    for width in self.fc_widths:
      x = layers.hidden_dense(x, width, self.opts, train)
    return layers.output_dense(x, self.num_classes, self.opts)


class MNIST1DCNN(nn.Module):
  """The MNIST-1D authors' `ConvBase` (Greydanus & Kobak; ~92% test accuracy).

  Three convs with 25 channels, kernel sizes 5, 3, 3, stride 2, padding 1,
  ReLU after each; on length 40 the lengths go 40 -> 19 -> 10 -> 5, so the
  flattened features are 5 * 25 = 125; then Dense `output` (5,210 params).
  """
  channels: int = 25
  kernel_sizes: Tuple[int, ...] = (5, 3, 3)
  num_classes: int = 10
  opts: layers.Options = layers.Options()

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x, nd = layers.channels_last(layers.as_float(x))
    for k in self.kernel_sizes:
      x = nn.Conv(self.channels, kernel_size=(k,) * nd, strides=(2,) * nd,
                  padding=layers.pad(1, nd),
                  kernel_init=self.opts.kernel_init_fn())(x)
      x = layers.dropout(layers.act_norm(x, self.opts, train), self.opts, train)
    return layers.output_dense(layers.flatten(x), self.num_classes, self.opts)


# OpenLTH's cifar_vgg plans (no pool after the last stage).
VGG_PLANS = {
    11: (64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512),
    13: (64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL,
         512, 512),
    16: (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512,
         POOL, 512, 512, 512),
    19: (64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL,
         512, 512, 512, 512, POOL, 512, 512, 512, 512),
}


class VGG(nn.Module):
  """CIFAR VGG (OpenLTH's cifar_vgg_D): conv 3x3 (pad 1, with bias) -> [norm]
  -> ReLU -> [dropout] per plan entry, 2x max pools, then a global average
  pool (OpenLTH's final AvgPool2d(2) on the 2x2 map of a 32x32 input) and one
  Dense `output`."""
  plan: Tuple[Union[int, str], ...] = VGG_PLANS[11]
  num_classes: int = 10
  opts: layers.Options = layers.Options()

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = conv_stack(x, self.plan, self.opts, train)
    x = layers.global_avg_pool(x)
    return layers.output_dense(x, self.num_classes, self.opts)


def _scale_plan(plan, multiplier: float):
  return tuple(e if e == POOL else layers.scaled(e, multiplier) for e in plan)


def _conv_net(num_stages: int):
  """The builder of Conv-2 (1 stage), Conv-4 (2) or Conv-6 (3)."""

  def build(cfg, num_classes: int) -> nn.Module:
    m = float(cfg.get("width_multiplier", 1.0))
    plan = _scale_plan((64, 64, POOL, 128, 128, POOL, 256, 256, POOL)
                       [:3 * num_stages], m)
    fc_widths = (layers.scaled(256, m),) * 2
    channels = [e for e in plan if e != POOL] + list(fc_widths)
    # Default init: Gaussian Glorot (Frankle & Carbin 2019, Figure 2).
    opts = layers.read_options(cfg, default_init="glorot_normal",
                               channels=channels)
    return ConvNet(plan=plan, fc_widths=fc_widths, num_classes=num_classes,
                   opts=opts)

  build.__doc__ = (f"`conv{2 * num_stages}`: Frankle & Carbin's "
                   f"Conv-{2 * num_stages}; `model.width_multiplier` scales "
                   f"every width (default 1).")
  return build


build_conv2 = _conv_net(1)
build_conv4 = _conv_net(2)
build_conv6 = _conv_net(3)


def build_mnist1d_cnn(cfg, num_classes: int) -> nn.Module:
  """`mnist1d_cnn`: the MNIST-1D ConvBase. Default init: Flax's (lecun normal);
  the authors used PyTorch's default (uniform, variance 1 / (3 fan_in))."""
  opts = layers.read_options(cfg, channels=(25,))
  return MNIST1DCNN(num_classes=num_classes, opts=opts)


def _vgg(fixed_depth=None):
  """The builder of `vgg` (depth from `model.depth`) or of `vgg{fixed_depth}`."""

  def build(cfg, num_classes: int) -> nn.Module:
    depth = fixed_depth or int(cfg.get("depth", 11))
    if depth not in VGG_PLANS:
      raise UserError(
          f"model.depth={depth} is not a VGG depth; valid depths: "
          f"{', '.join(str(d) for d in VGG_PLANS)}")
    plan = _scale_plan(VGG_PLANS[depth], float(cfg.get("width_multiplier", 1.0)))
    # Defaults: batch norm; Kaiming normal (fan_in) as OpenLTH's cifar_vgg.
    opts = layers.read_options(cfg, default_norm="batch",
                               default_init="kaiming_normal",
                               channels=[e for e in plan if e != POOL])
    return VGG(plan=plan, num_classes=num_classes, opts=opts)

  build.__doc__ = (f"`vgg{fixed_depth or ''}`: CIFAR VGG-"
                   f"{fixed_depth or '{11,13,16,19} by model.depth'}; "
                   f"`model.width_multiplier` scales every width (default 1).")
  return build


build_vgg = _vgg()
build_vgg11 = _vgg(11)
build_vgg13 = _vgg(13)
build_vgg16 = _vgg(16)
build_vgg19 = _vgg(19)
