"""Optimizers, learning-rate schedules and parameter freezing, from config.optim.

Design: the optax transformation built here yields a *direction* (no learning
rate, no sign); the train step multiplies it by `-schedule(state.step)`. The
schedule is therefore a function of the run's own step counter, not of a count
hidden in the optimizer state. That is what lets lottery-ticket rewinding reset
the optimizer's moments while the schedule carries on from the rewind step,
and it keeps every optimizer in one shape (PyTorch's convention: momentum
buffers accumulate gradients, the learning rate multiplies afterwards).

Weight decay: for sgd/momentum/nesterov/adam it is an L2 term added to the
gradient (PyTorch and OpenLTH); for adamw it is decoupled (Loshchilov & Hutter).
Frozen parameters go through `optax.set_to_zero`, so no decay touches them.
"""

import re
from typing import Any, Callable, Tuple

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from jaxunknowns.errors import UserError
from jaxunknowns.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer", "optim.name")
SCHEDULES: Registry = Registry("schedule", "optim.schedule")


def _decay(cfg):
  """Weight decay, or nothing: a zero decay still costs a pass over the
  params every step (17% of a LeNet step on CPU)."""
  return [optax.add_decayed_weights(cfg.weight_decay)] if cfg.weight_decay else []


@OPTIMIZERS.register("sgd")
def _sgd(cfg):
  return optax.chain(*_decay(cfg)) if cfg.weight_decay else optax.identity()


@OPTIMIZERS.register("momentum")
def _momentum(cfg):
  return optax.chain(*_decay(cfg),
                     optax.trace(decay=cfg.momentum, nesterov=False))


@OPTIMIZERS.register("nesterov")
def _nesterov(cfg):
  return optax.chain(*_decay(cfg),
                     optax.trace(decay=cfg.momentum, nesterov=True))


@OPTIMIZERS.register("adam")
def _adam(cfg):
  return optax.chain(*_decay(cfg),
                     optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps))


@OPTIMIZERS.register("adamw")
def _adamw(cfg):
  return optax.chain(optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps),
                     *_decay(cfg))


@SCHEDULES.register("constant")
def _constant(cfg, total_steps):
  del total_steps
  return optax.constant_schedule(cfg.lr)


@SCHEDULES.register("step")
def _step(cfg, total_steps):
  del total_steps
  return optax.piecewise_constant_schedule(
      cfg.lr, {int(b): cfg.decay_factor for b in cfg.boundaries})


@SCHEDULES.register("cosine")
def _cosine(cfg, total_steps):
  return optax.cosine_decay_schedule(
      cfg.lr, max(1, total_steps - cfg.warmup_steps))


def learning_rate_schedule(cfg, total_steps: int) -> Callable[[Any], Any]:
  """`step -> lr`: the named schedule after an optional linear warmup."""
  schedule = SCHEDULES.get(cfg.schedule)(cfg, total_steps)
  if cfg.warmup_steps > 0:
    warmup = optax.linear_schedule(0.0, cfg.lr, cfg.warmup_steps)
    schedule = optax.join_schedules([warmup, schedule], [cfg.warmup_steps])
  return schedule


def param_paths(params) -> list:
  """'module/submodule/kernel' path of every leaf, in tree order."""
  return ["/".join(k) for k in traverse_util.flatten_dict(params)]


def trainable_labels(cfg, params):
  """A tree of 'train'/'frozen' labels from optim.freeze / optim.train_only."""
  paths = param_paths(params)
  frozen = {p: False for p in paths}
  if cfg.train_only:
    pattern = re.compile(cfg.train_only)
    matched = [p for p in paths if pattern.search(p)]
    if not matched:
      raise UserError(
          f"optim.train_only={cfg.train_only!r} matches no parameter; "
          f"parameters are: {', '.join(paths)}")
    frozen = {p: not pattern.search(p) for p in paths}
  if cfg.freeze:
    pattern = re.compile(cfg.freeze)
    matched = [p for p in paths if pattern.search(p)]
    if not matched:
      raise UserError(
          f"optim.freeze={cfg.freeze!r} matches no parameter; "
          f"parameters are: {', '.join(paths)}")
    frozen = {p: frozen[p] or bool(pattern.search(p)) for p in paths}
  flat = {tuple(p.split("/")): ("frozen" if frozen[p] else "train")
          for p in paths}
  return traverse_util.unflatten_dict(flat)


def count_trainable(cfg, params) -> Tuple[int, int]:
  """(trainable, total) parameter counts of one run's params."""
  labels = traverse_util.flatten_dict(trainable_labels(cfg, params))
  sizes = {k: v.size for k, v in traverse_util.flatten_dict(params).items()}
  trainable = sum(sizes[k] for k, label in labels.items() if label == "train")
  return int(trainable), int(sum(sizes.values()))


def create_optimizer(cfg, params) -> optax.GradientTransformation:
  """The lr-free direction transform for `params` (one run's tree)."""
  direction = OPTIMIZERS.get(cfg.name)(cfg)
  if cfg.grad_clip > 0:
    direction = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), direction)
  if cfg.freeze or cfg.train_only:
    direction = optax.partition(
        {"train": direction, "frozen": optax.set_to_zero()},
        trainable_labels(cfg, params))
  return direction


def global_norm(tree) -> jax.Array:
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32)))
                      for x in jax.tree.leaves(tree)))
