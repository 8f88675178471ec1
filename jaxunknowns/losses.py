"""Per-example losses of logits and integer labels, by config.train.loss."""

import jax.numpy as jnp
import optax

from jaxunknowns.registry import Registry

LOSSES: Registry = Registry("loss", "train.loss")


@LOSSES.register("cross_entropy")
def cross_entropy(logits, labels, label_smoothing: float = 0.0):
  num_classes = logits.shape[-1]
  if label_smoothing > 0:
    targets = optax.smooth_labels(
        jax_one_hot(labels, num_classes), label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


@LOSSES.register("exponential")
def exponential(logits, labels, label_smoothing: float = 0.0):
  """Multiclass exponential loss sum_{j != y} exp(-(z_y - z_j)).

  With two classes this is exp(-margin), the loss of Soudry et al.'s analysis.
  """
  del label_smoothing
  true = jnp.take_along_axis(logits, labels[..., None], axis=-1)
  others = jnp.exp(-(true - logits))
  return jnp.sum(others, axis=-1) - 1.0  # drop the j = y term, exp(0) = 1


@LOSSES.register("mse")
def mse(logits, labels, label_smoothing: float = 0.0):
  """Squared loss on one-hot targets, 1/2 ||f(x) - onehot(y)||^2 per example:
  the loss of Cohen et al. 2021's reference code (`SquaredLoss`, whose sum
  over a dataset they divide by its size, as the trainer's mean does)."""
  del label_smoothing
  return 0.5 * jnp.sum(jnp.square(logits - jax_one_hot(labels, logits.shape[-1])),
                       axis=-1)


def jax_one_hot(labels, num_classes):
  return (labels[..., None] == jnp.arange(num_classes)).astype(jnp.float32)
