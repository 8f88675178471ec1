"""Arms: the named variations of one config that `landscape` and `sharpness`
compare (small vs large batch, with vs without BN or skip connections).

A config holds `arms`, a ConfigDict of named override sections with the
config's own structure (`arms.large_batch.train.batch_size = 6000`), and
`compare`, the tuple of arm names to run, in order. `epochs` > 0 sets
each arm's `train.steps` to the same budget in epochs (so a large-batch arm
takes fewer steps); 0 keeps `train.steps`.
"""

import math
from typing import Iterator, List, Tuple

from jaxunknowns import validation
from jaxunknowns.errors import UserError


def arm_names(config) -> List[str]:
  """The arms named by `compare`, validated against `arms` (UserError)."""
  names, defined = list(config.compare), list(config.arms.keys())
  unknown = [n for n in names if n not in defined]
  if not names or unknown or len(set(names)) != len(names):
    problem = (f"unknown arm {unknown[0]!r}" if unknown else "no arm" if not
               names else "an arm twice")
    raise UserError(f"compare={tuple(names)} names {problem}; valid: "
                    f"{', '.join(defined)} (a tuple on the command line: "
                    f"--config.compare=\"('a','b')\")")
  return names


def _apply(target, overrides, prefix=""):
  for key, value in overrides.items():
    if key not in target:
      raise UserError(f"arms.{prefix}{key}: no such config field to override")
    if hasattr(value, "items"):
      _apply(target[key], value, f"{prefix}{key}.")
    else:
      target[key] = value


def arm_config(config, name: str, num_train: int = 0):
  """A copy of `config` with arm `name`'s overrides applied and, when
  `epochs` > 0 and `num_train` is known, its step budget in epochs."""
  c = config.copy_and_resolve_references()
  c.unlock()
  _apply(c, config.arms[name], prefix=f"{name}.")
  if config.epochs > 0 and num_train > 0:
    steps_per_epoch = num_train / c.train.batch_size
    c.train.steps = max(1, int(math.ceil(config.epochs * steps_per_epoch)))
    c.train.log_every = max(1, min(c.train.log_every, c.train.steps))
  return c


def validate_arms(config):
  """Base checks of every arm's config, and `epochs`."""
  validation.check(config.epochs >= 0, "epochs", config.epochs,
                   ">= 0 (0 = use train.steps)")
  names = arm_names(config)
  for name in names:
    validation.validate_base(arm_config(config, name),
                             f"arm {name!r} (arms.{name}): ")
  # A shared field every compared arm overrides, or train.steps under an
  # epoch budget, is written to config.json but trains nothing.
  for field in sorted(set.intersection(*(set(_fields(config.arms[n]))
                                         for n in names))):
    validation.check_applies(
        config, field, False, f"to no arm: every arm of compare sets its own "
        f"(arms.NAME.{field})")
  # An arm left out of compare trains nothing: a setting moved in it would
  # be recorded in config.json unused.
  for name in (n for n in config.arms.keys() if n not in names):
    for field in _fields(config.arms[name]):
      validation.check_applies(
          config, f"arms.{name}.{field}", False,
          f"only with {name!r} in compare (now {tuple(names)})")
  # Arms may set model.norm: a norm's own field is used if an arm's norm
  # reads it (the experiments register own_fields=layers.NORM_FIELD_PATHS).
  norms = tuple(dict.fromkeys(  # each norm once, in the arms' order
      validation.norm_of(arm_config(config, n).model) for n in names))
  validation.check_norm_fields(config, norms, f"the arms' norms {norms}")
  validation.check_applies(
      config, "train.steps", config.epochs == 0, "only with epochs=0: each "
      f"arm trains epochs={config.epochs:g} of its training set")


def _fields(overrides, prefix=""):
  """The dotted fields an arm's overrides set."""
  for key, value in overrides.items():
    if hasattr(value, "items"):
      yield from _fields(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}"


def arms_with_data(config) -> Iterator[Tuple[str, object, object]]:
  """(arm name, its config, its dataset) for each arm; arms on the same data
  share one loaded dataset. Loading is where bad data settings fail."""
  from jaxunknowns.data import load_dataset  # pylint: disable=g-import-not-at-top
  datasets = {}
  for name in arm_names(config):
    key = arm_config(config, name).data.to_json_best_effort(sort_keys=True)
    if key not in datasets:
      datasets[key] = load_dataset(arm_config(config, name).data)
    ds = datasets[key]
    c = arm_config(config, name, len(ds.train.y))
    _check_batch(config, name, c.train.batch_size, len(ds.train.y))
    yield name, c, ds


def _check_batch(config, name: str, batch_size: int, num_train: int):
  """The trainer's own check, naming the field to lower: an arm's batch
  (arms.NAME.train.batch_size) is not the shared train.batch_size, which
  validate_arms refuses as unused when every arm sets its own."""
  if batch_size > num_train:
    own = "train.batch_size" in set(_fields(config.arms[name]))
    field = f"arms.{name}.train.batch_size" if own else "train.batch_size"
    raise UserError(f"arm {name}: train.batch_size={batch_size} is larger "
                    f"than the training set ({num_train} examples): lower "
                    f"{field} to at most {num_train}")
