"""The model zoo: Flax Linen modules built by name from `config.model`.

    module = create_model(config.model, num_classes)
    variables = module.init({'params': k, 'dropout': k2}, x, train=False)
    logits, state = module.apply(variables, x, train=True,
                                 rngs={'dropout': k3}, mutable=['batch_stats'])
    logits = module.apply(variables, x, train=False)

`x` is [B, *input_shape]: images NHWC [B, H, W, C], MNIST-1D [B, 40, 1]
(channels last), tabular [B, D]. Dense models flatten everything after the
batch axis; conv models use Conv1d on [B, L, C] and Conv2d on [B, H, W, C].
`train` is an explicit call argument: BatchNorm normalizes with the batch's
statistics and updates the `batch_stats` collection when True, uses the
running averages when False; dropout (rng stream 'dropout') is on only when
True.

Parameter naming convention (pruning and freezing rely on it):
  * the final classifier is always a Dense layer named `output`
    (params['output']['kernel'], params['output']['bias']);
  * hidden layers keep Flax's auto-names: `Dense_0`, `Conv_3`,
    `BasicBlock_2/Conv_1`, ...; weights are always `kernel`, biases `bias`;
  * normalization layers are `BatchNorm_i` / `GroupNorm_i` / `LayerNorm_i`
    with params `scale` (gamma) and `bias` (beta); BatchNorm's running
    averages are `mean` and `var` in the `batch_stats` collection.
So "every `kernel` leaf" is exactly the set of conv and dense weights that
magnitude pruning considers, and a norm's `bias` is told apart from a layer's
by its module name.

Shared options (`model.*`, see layers.py): norm ("default" = the model's
own: batch for resnet/vgg, none otherwise), norm_position, num_groups,
dropout, kernel_init ("default" = the model's paper default, noted at each
builder), bn_scale_init.
"""

import flax.linen as nn
import jax

from jaxunknowns.models import conv, linear, mlp, resnet
from jaxunknowns.registry import Registry

MODELS = Registry("model", "model.name")

for _name, _build in [
    ("linear", linear.build_linear),
    ("mlp", mlp.build_mlp),
    ("lenet_300_100", mlp.build_lenet_300_100),
    ("fc_tanh", mlp.build_fc_tanh),
    ("residual_mlp", mlp.build_residual_mlp),
    ("ntk_mlp", mlp.build_ntk_mlp),
    ("conv2", conv.build_conv2),
    ("conv4", conv.build_conv4),
    ("conv6", conv.build_conv6),
    ("mnist1d_cnn", conv.build_mnist1d_cnn),
    ("vgg", conv.build_vgg),
    ("vgg11", conv.build_vgg11),
    ("vgg13", conv.build_vgg13),
    ("vgg16", conv.build_vgg16),
    ("vgg19", conv.build_vgg19),
    ("resnet", resnet.build_resnet),
]:
  MODELS.register(_name)(_build)


def create_model(model_config, num_classes: int) -> nn.Module:
  """The module named by `model_config.name`, configured by `model_config`.

  Raises `UserError` (one line, listing the valid values) for an unknown name
  or option, before anything is traced.
  """
  return MODELS.get(model_config.get("name", "mlp"))(model_config,
                                                     int(num_classes))


def scale_kernels(params, scale):
  """`params` with every `kernel` leaf (the conv and dense weights, see the
  naming convention above) multiplied by `scale`; biases and the norms'
  scale and bias unchanged. Every initializer here is zero-mean, so a fresh
  init scaled by s has exactly s times its std: the init-scale axis of
  initialization-sensitivity studies."""
  return jax.tree_util.tree_map_with_path(
      lambda path, leaf: leaf * scale if getattr(path[-1], "key", None) == (
          "kernel") else leaf, params)


__all__ = ["MODELS", "create_model", "scale_kernels"]
