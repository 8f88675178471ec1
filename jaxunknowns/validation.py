"""Range checks of the shared config fields, run before anything compiles.

Each failure is a `UserError` naming the field, its value and the valid range.
Experiments add their own checks (`Experiment.validate`).
"""

from typing import Any

from jaxunknowns.errors import UserError


def check(cond: bool, field: str, value: Any, valid: str):
  if not cond:
    raise UserError(f"{field}={value!r} is out of range: must be {valid}")


def _is_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def validate_base(config):
  """Checks the fields of config_defaults.base_config()."""
  check(_is_int(config.seeds) and config.seeds >= 1, "seeds", config.seeds,
        "an integer >= 1")
  check(_is_int(config.seed) and config.seed >= 0, "seed", config.seed,
        "an integer >= 0")

  d = config.data
  check(0.0 <= d.label_noise <= 1.0, "data.label_noise", d.label_noise,
        "in [0, 1]")
  check(d.validation_size >= 0, "data.validation_size", d.validation_size,
        ">= 0")
  check(d.train_size >= 0, "data.train_size", d.train_size, ">= 0 (0 = all)")

  m = config.model
  check(0.0 <= m.dropout < 1.0, "model.dropout", m.dropout, "in [0, 1)")

  o = config.optim
  check(o.lr > 0, "optim.lr", o.lr, "> 0")
  check(0.0 <= o.momentum < 1.0, "optim.momentum", o.momentum, "in [0, 1)")
  check(0.0 <= o.b1 < 1.0, "optim.b1", o.b1, "in [0, 1)")
  check(0.0 <= o.b2 < 1.0, "optim.b2", o.b2, "in [0, 1)")
  check(o.eps > 0, "optim.eps", o.eps, "> 0")
  check(o.weight_decay >= 0, "optim.weight_decay", o.weight_decay, ">= 0")
  check(o.warmup_steps >= 0, "optim.warmup_steps", o.warmup_steps, ">= 0")
  check(o.decay_factor > 0, "optim.decay_factor", o.decay_factor, "> 0")
  check(o.grad_clip >= 0, "optim.grad_clip", o.grad_clip, ">= 0 (0 = off)")
  bounds = list(o.boundaries)
  check(all(b > 0 for b in bounds) and bounds == sorted(set(bounds)),
        "optim.boundaries", tuple(bounds), "increasing positive steps")

  t = config.train
  check(_is_int(t.steps) and t.steps >= 1, "train.steps", t.steps,
        "an integer >= 1")
  check(_is_int(t.batch_size) and t.batch_size >= 1, "train.batch_size",
        t.batch_size, "an integer >= 1")
  check(t.log_every >= 1, "train.log_every", t.log_every, ">= 1")
  check(t.eval_every >= 0, "train.eval_every", t.eval_every, ">= 0 (0 = end only)")
  check(t.checkpoint_every >= 0, "train.checkpoint_every", t.checkpoint_every,
        ">= 0 (0 = end only)")
  check(t.eval_batch_size >= 1, "train.eval_batch_size", t.eval_batch_size,
        ">= 1")
  check(0.0 <= t.label_smoothing < 1.0, "train.label_smoothing",
        t.label_smoothing, "in [0, 1)")
  check(t.max_train_eval >= 0, "train.max_train_eval", t.max_train_eval,
        ">= 0 (0 = all)")
  check_batch_norm_batch_size(m, t.batch_size)

  # Unknown names fail here too, with the list of valid ones.
  from jaxunknowns import losses, optim  # pylint: disable=g-import-not-at-top
  optim.OPTIMIZERS.get(o.name)
  optim.SCHEDULES.get(o.schedule)
  losses.LOSSES.get(t.loss)


def uses_batch_norm(model_config) -> bool:
  """Whether the model normalizes with BatchNorm ("default" resolved by the
  model's builder: batch for resnet/vgg, none for the rest)."""
  norm = model_config.get("norm", "none")
  batch_norms = ("batch", "noisy_batch")  # noisy BN is BN plus noise
  if norm in batch_norms + ("none", "group", "layer"):
    return norm in batch_norms
  # "default" (or a bad name, which create_model reports in its own words):
  # ask the builder which norm it picks; building a Flax module is cheap.
  from jaxunknowns.models import create_model  # pylint: disable=g-import-not-at-top
  opts = getattr(create_model(model_config, 2), "opts", None)
  return opts is not None and opts.norm in batch_norms


def check_batch_norm_batch_size(model_config, batch_size, where: str = ""):
  """Batch norm cannot train on batches of one example.

  With one example the batch mean is the example itself and the batch
  variance is 0, so every normalized activation of a dense layer is 0 (the
  layer outputs beta alone and passes no gradient back), and the running
  averages only ever see single examples. `where` prefixes the message (a
  grid cell, for instance).
  """
  if batch_size != 1 or not uses_batch_norm(model_config):
    return
  raise UserError(
      f"{where}train.batch_size=1 with batch norm: the batch statistics of "
      f"one example are degenerate (mean = the example, variance = 0, so "
      f"every normalized activation is 0); use a batch of >= 2 or "
      f"model.norm=group, layer or none")
