"""Linear classifiers: logistic (2 classes) / multinomial regression."""

import flax.linen as nn
import jax.numpy as jnp

from jaxunknowns.models import layers


class Linear(nn.Module):
  """A single Dense layer named `output` on the flattened input (no hidden
  layer: no norm, no dropout; its builder reads only `model.kernel_init`
  and `model.use_bias`, so validation.check_choices refuses the others)."""
  num_classes: int = 10
  use_bias: bool = True
  opts: layers.Options = layers.Options()

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train  # Same in both modes.
    x = layers.flatten(layers.as_float(x))
    return layers.output_dense(x, self.num_classes, self.opts,
                               use_bias=self.use_bias)


def build_linear(cfg, num_classes: int) -> nn.Module:
  """`linear`. Default init: zeros, the classical start of logistic regression
  and the "GD from 0" of Soudry et al.'s implicit-bias experiments (a convex
  problem needs no symmetry breaking). `model.use_bias` (default True)."""
  return Linear(num_classes=num_classes,
                use_bias=bool(cfg.get("use_bias", True)),
                opts=layers.Options(kernel_init=layers.check_choice(
                    "model.kernel_init", cfg.get("kernel_init", "default"),
                    layers.KERNEL_INITS), default_init="zeros"))
