"""Data augmentation in pure JAX, run inside the trainer's compiled step.

`random_crop_flip` is the CIFAR standard (He et al. 2016): pad 4 pixels with
zeros, crop back to the original size at a random offset, flip horizontally
with probability 1/2, independently per example. The inputs are already
standardized, so the zero padding is the training mean, not black.
Everything is shape-static: safe under `jax.jit` and `jax.vmap` (e.g. over
batched seeds).
"""

import jax
import jax.numpy as jnp

AUGMENTATIONS = ("none", "crop_flip")


def crop_flip(images: jax.Array, offsets: jax.Array, flips: jax.Array,
              pad: int = 4) -> jax.Array:
  """Deterministic crop and flip of a batch NHWC.

  offsets: int [N, 2], the (row, column) of each crop's top-left corner in
  the zero-padded image, in [0, 2 * pad]; (pad, pad) is the identity crop.
  flips: bool [N], flip that example left-right (after cropping).
  """
  n, h, w, c = images.shape
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))

  def one(image, offset, flip):
    crop = jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))
    return jnp.where(flip, crop[:, ::-1, :], crop)

  del n
  return jax.vmap(one)(padded, offsets.astype(jnp.int32), flips)


def random_crop_flip(rng: jax.Array, images: jax.Array, pad: int = 4, *,
                     crop: bool = True, flip: bool = True) -> jax.Array:
  """Per-example random crop (zero padding `pad`) and horizontal flip of NHWC.

  `crop=False` / `flip=False` switch either part off (static arguments).
  """
  n = images.shape[0]
  crop_key, flip_key = jax.random.split(rng)
  if crop and pad > 0:
    offsets = jax.random.randint(crop_key, (n, 2), 0, 2 * pad + 1)
  else:
    offsets = jnp.full((n, 2), pad, jnp.int32)
  if flip:
    flips = jax.random.bernoulli(flip_key, 0.5, (n,))
  else:
    flips = jnp.zeros((n,), bool)
  return crop_flip(images, offsets, flips, pad)


def apply(name: str, rng: jax.Array, images: jax.Array) -> jax.Array:
  """The augmentation `ds.augment` names ("none" or "crop_flip")."""
  if name == "none":
    return images
  if name == "crop_flip":
    return random_crop_flip(rng, images)
  raise ValueError(f"unknown augmentation {name!r}; valid: {', '.join(AUGMENTATIONS)}")


def random_shift(rng: jax.Array, x: jax.Array, max_shift: int) -> jax.Array:
  """Translates each sequence of x [B, L, ...] by a random offset in
  [-max_shift, max_shift] along L, filling with zeros."""
  length = x.shape[1]
  pad = [(0, 0), (max_shift, max_shift)] + [(0, 0)] * (x.ndim - 2)
  padded = jnp.pad(x, pad)
  offsets = jax.random.randint(rng, (x.shape[0],), 0, 2 * max_shift + 1)
  return jax.vmap(lambda xi, o: jax.lax.dynamic_slice_in_dim(
      xi, o, length, axis=0))(padded, offsets)
