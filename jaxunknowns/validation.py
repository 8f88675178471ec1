"""Checks of a config, run before any data is loaded or anything compiles.

`check_config` is the one entry `main` uses: first every field against the
values its config file gives it (`check_fields`: kind, finiteness, sign,
emptiness), then the range checks of the shared fields (`validate_base`) and
of the experiment's own (`Experiment.validate`). Each failure is a
`UserError` naming the field, its value and what it expects.
"""

import contextlib
import contextvars
import dataclasses
import math
import os
from typing import (Any, Dict, Iterator, List, Mapping, Optional, Sequence,
                    Tuple)

import ml_collections
import numpy as np

from jaxunknowns import config_defaults, config_loading
from jaxunknowns.errors import UserError
from jaxunknowns.experiments import EXPERIMENTS, MODULES, Experiment

# Seeds train at once, in one program (their parameters, optimizer states
# and batches side by side): 1e9 of them passed every check, then ran out of
# memory. Far above any config's (3 to 8).
MAX_SEEDS = 1024


def check(cond: bool, field: str, value: Any, valid: str):
  if not cond:
    raise UserError(f"{field}={value!r} is out of range: must be {valid}")


def is_int(v) -> bool:
  """An integer (Python or numpy), not a bool: the check every `validate`
  makes of a count."""
  return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def check_int(value, field: str, minimum: int, note: str = ""):
  """`value` is an integer (not a bool) >= minimum, else the UserError of
  `check`: "must be an integer >= minimum (note)"."""
  check(is_int(value) and value >= minimum, field, value,
        f"an integer >= {minimum}" + (f" ({note})" if note else ""))


# While `check_config` runs, and the run it checked (`files_of`): the config
# the file gives the chosen variant before any override (its
# references[0]), whose values are the file's own.
_FILE_OWN = contextvars.ContextVar("file_own_config", default=None)


@contextlib.contextmanager
def files_of(references):
  """Within it, `files_own_values` are the chosen variant's (references[0];
  None: any of the file's configs): the checks an experiment can make only
  once its data or model is built judge a value as `check_config` does."""
  token = _FILE_OWN.set(references[0] if references else None)
  try:
    yield
  finally:
    _FILE_OWN.reset(token)


def files_own_values(config, field: str) -> Sequence[Any]:
  """The values the config file itself gives `field`, which the user never
  set: the chosen variant's own while `check_config` runs (its first
  reference), else, for a config built in code, those of any of the
  file's configs (`config_defaults.file_values`)."""
  own = _FILE_OWN.get()
  if own is not None:
    return [value_at(own, field)]
  return config_defaults.file_values(config.get("experiment"), field)


def _default_of(config, field: str):
  """(True, the experiment's default of `field`), or (False, None) where it
  has none to compare with."""
  defaults = config_defaults.FIELD_DEFAULTS.get(config.get("experiment"))
  *parents, leaf = field.split(".")
  for key in parents:
    defaults = (defaults or {}).get(key, {})
  if not defaults or leaf not in defaults:
    return False, None
  return True, defaults[leaf]


def set_by_user(config, field: str,
                file_values: Optional[Sequence[Any]] = None) -> bool:
  """`field` (dotted) moved from its experiment's default to a value the
  config file itself does not give it (`file_values`, by default
  `files_own_values`): the user's. False where there is no default."""
  known, default = _default_of(config, field)
  if not known:
    return False
  value = value_at(config, field)
  if file_values is None:
    file_values = files_own_values(config, field)
  return value != default and value not in file_values


def check_applies(config, field: str, applies: bool, when: str,
                  file_values: Optional[Sequence[Any]] = None):
  """A field moved from its experiment's default while it `applies` to
  nothing chosen is an error, never a silently unused setting; `when`
  says what would use it. Left at the default it may stay unused; so may
  a value the config file itself gives it (the chosen variant's own, which
  the user never set): `file_values`, by default `files_own_values`
  (`set_by_user`). Another variant's value is the user's: `imp.py:mnist1d
  --config.stability.levels=4,8` (the stability variant's levels) with the
  study off would train none."""
  if not applies and set_by_user(config, field, file_values):
    raise UserError(f"{field}={value_at(config, field)!r} is unused here: it "
                    f"applies {when}; leave it at "
                    f"{_default_of(config, field)[1]!r}")


def check_read_by(config, readers_of: Mapping[str, Sequence[str]],
                  chosen: Sequence[str], selector: str):
  """An experiment's fields that only some of its chosen items read (its
  optimizers, its arms): each is refused by `check_applies` when moved
  while none of `chosen` (the items `selector` names) reads it."""
  for field, readers in readers_of.items():
    check_applies(config, field, any(r in chosen for r in readers),
                  f"to {' or '.join(map(repr, readers))} of {selector}")


def shuffle_seed_readers(noise: str = "data.label_noise") -> str:
  """What reads data.shuffle_seed, for `check_applies`; `noise`: the field
  that sets label noise (a width sweep's sweep.label_noise)."""
  return (f"to a validation split (data.validation_size), label noise "
          f"({noise}), data.randomization or data drawn from it (synthetic, "
          "soudry2d)")


def shuffle_seed_read(data_config, corrupts: bool = False) -> bool:
  """Whether data.shuffle_seed seeds anything (data/pipeline.py): the
  validation split, label noise, randomized inputs, a generated dataset's
  draw. `corrupts`: the experiment sets the noise of its stages itself."""
  from jaxunknowns.data import datasets  # pylint: disable=g-import-not-at-top
  d = data_config
  return bool(corrupts or d.get("validation_size", 0)
              or d.get("label_noise", 0.0)
              or d.get("randomization", "none") not in ("", "none")
              or d.get("name") in datasets.SEEDED_DATASETS)


def check_above_chance(field: str, accuracy: float, num_classes: int):
  """A target accuracy above chance, 1/num_classes: one at or below it is
  met by an untrained network in the first chunk, so the steps to reach
  it measure nothing (runlocal's 0.3 on two-class data)."""
  chance = 1.0 / num_classes
  check(accuracy > chance, field, accuracy,
        f"above chance (1/{num_classes} = {chance:.3g} on these "
        f"{num_classes} classes), which an untrained network reaches")


def check_schedule_fits(optim_config, steps: int):
  """A step schedule without a boundary, or a warm-up or a step boundary
  that a run of `steps` steps never reaches, is refused: config.json would
  record an lr change that never happened.
  (Step t = 0 .. steps − 1 trains at schedule(t); a boundary b lowers the
  lr from step b on.)"""
  o = optim_config
  # Without a boundary the step schedule is the constant one: config.json
  # would record a schedule (and a decay_factor) that never acted.
  check(o.schedule != "step" or len(o.boundaries) > 0, "optim.boundaries",
        tuple(o.boundaries), "at least one step where the lr falls, for "
        "optim.schedule='step' (or use optim.schedule='constant')")
  late = [b for b in o.boundaries if b >= steps] if o.schedule == "step" else []
  check(not late, "optim.boundaries", tuple(o.boundaries),
        f"steps below the run's {steps}: it never reaches step "
        f"{late[0] if late else ''}, where the lr would fall (drop it, or "
        "train longer)")
  check(o.warmup_steps < steps, "optim.warmup_steps", o.warmup_steps,
        f"below the run's {steps} steps, else the lr never reaches "
        f"optim.lr={o.lr:g}")


def is_number(v) -> bool:
  """A real number (Python or numpy), not a bool."""
  return isinstance(v, (int, float, np.integer, np.floating)) and not (
      isinstance(v, bool))


def check_corruption_grid(field: str, ps):
  """A grid of label-corruption probabilities: each p in [0, 1], strictly
  increasing (an empty grid passes: the caller says if it may be empty)."""
  ps = tuple(ps)
  check(all(is_number(p) and 0.0 <= p <= 1.0 for p in ps), field, ps,
        "label corruption probabilities p in [0, 1]")
  check(all(a < b for a, b in zip(ps, ps[1:])), field, ps,
        "strictly increasing")


def _kind(value) -> Optional[str]:
  """The kind of a field's value: bool, int, float, str or tuple."""
  for kind in (bool, int, float, str, tuple):
    if isinstance(value, kind):
      return kind.__name__
  return None


def leaves(config, prefix: str = "") -> Iterator[Tuple[str, Any]]:
  """(dotted name, value) of every field of `config`, groups recursed."""
  for key in config.keys():
    value = config[key]
    if hasattr(value, "keys"):
      yield from leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


_ITEMS = {"int": "integers", "float": "finite numbers", "str": "strings"}
# A float field reaches the device as float32 (but in a float64 experiment,
# Experiment.float64): outside its range a value becomes inf (lr 1e300: a
# diverged run) or 0 (Adam eps 1e-300: a division by zero), so it is
# refused, not trained with.
FLOAT32_MAX, FLOAT32_TINY = 3.4028234e38, 1.1754944e-38


def _float32_holds(value) -> bool:
  return value == 0 or FLOAT32_TINY <= abs(value) <= FLOAT32_MAX


@dataclasses.dataclass
class FieldRule:
  """What a field accepts: what the values its config file gives it (in
  every variant) have in common. A field refuses a negative number only if
  no variant gives it one. Any tuple field takes an empty tuple here: its
  experiment's validate says where an empty grid trains nothing (every
  variant may list arms a researcher drops, e.g. ablation.true_labels=())."""
  kind: str
  items: set  # kinds of a tuple's elements (empty: no variant shows one)
  negative_ok: bool
  example: Any

  def _scalar_ok(self, kind: str, value) -> bool:
    if kind == "float":
      number = _kind(value) in ("int", "float")
      return number and math.isfinite(value) and (
          self.negative_ok or value >= 0)
    if kind == "int":
      return is_int(value) and (self.negative_ok or value >= 0)
    return _kind(value) == kind

  def _item_kind(self) -> Optional[str]:
    if self.items <= {"int"}:
      return "int" if self.items else None
    return "float" if self.items <= {"int", "float"} else (
        "str" if self.items == {"str"} else None)

  def accepts(self, value) -> bool:
    if self.kind != "tuple":
      return self._scalar_ok(self.kind, value)
    if _kind(value) != "tuple":
      return False
    item = self._item_kind()
    if item is None:  # no variant says: any plain number or string
      return all(_kind(v) in ("int", "float", "str") for v in value)
    return all(self._scalar_ok(item, v) for v in value)

  def expects(self) -> str:
    sign = "" if self.negative_ok else " >= 0"
    if self.kind == "tuple":
      item = self._item_kind()
      items = _ITEMS[item] if item else "numbers or strings"
      return f"a tuple of {items}{sign if item in ('int', 'float') else ''}"
    return {"bool": "True or False", "str": "a string",
            "int": f"an integer{sign}",
            "float": f"a finite number{sign}"}[self.kind]


def field_rules(references: Sequence[ml_collections.ConfigDict]
                ) -> Dict[str, FieldRule]:
  """The rule of every field of the `references` (the config file's own
  values: the chosen variant first, then every variant)."""
  rules: Dict[str, FieldRule] = {}
  for reference in references:
    for name, value in leaves(reference):
      kind = _kind(value)
      if kind is None:
        continue
      rule = rules.setdefault(name, FieldRule(kind, set(), False, value))
      if rule.example == ():  # an example with elements says more
        rule.example = value
      if {rule.kind, kind} == {"int", "float"}:
        rule.kind = "float"
      values = value if kind == "tuple" else (value,)
      rule.items |= {_kind(v) for v in values} if kind == "tuple" else set()
      rule.negative_ok |= any(_kind(v) in ("int", "float") and v < 0
                              for v in values)
  return rules


def check_fields(config, rules: Dict[str, FieldRule]):
  """Every field of `config` has a value its rule accepts (`field_rules`)."""
  for name, value in leaves(config):
    rule = rules.get(name)
    if rule is not None and not rule.accepts(value):
      raise UserError(f"{name}={value!r}: expects {rule.expects()} "
                      f"(like {rule.example!r})")


def check_float32(config):
  """Every float field of an experiment that computes in float32 (or less)
  is a value float32 holds (FLOAT32_MAX, FLOAT32_TINY)."""
  for name, value in leaves(config):
    lost = [v for v in (value if isinstance(value, tuple) else (value,))
            if isinstance(v, (float, np.floating)) and math.isfinite(v)
            and not _float32_holds(v)]
    if lost:
      raise UserError(f"{name}={value!r}: float32 cannot hold {lost[0]!r} "
                      f"(it would become {'-' * (lost[0] < 0)}"
                      f"{'inf' if abs(lost[0]) > 1 else 0}); use 0 or a "
                      "magnitude from 1.2e-38 to 3.4e38")


def references_of(spec: str) -> List[ml_collections.ConfigDict]:
  """What `check_fields` compares a config built from `spec`
  ('configs/x.py:variant') with: the config without overrides, then every
  variant of its file."""
  path = spec.partition(":")[0]
  variants = getattr(config_loading.config_module(path), "VARIANTS", {})
  return [config_loading.load_config(spec)] + [
      config_loading.load_config(f"{path}:{v}") for v in variants]


def check_config(config, references: Optional[Sequence] = None, *,
                 rules: Optional[Dict[str, FieldRule]] = None) -> Experiment:
  """All checks of `config` (no side effects); returns its experiment.
  Without `references` (a config built in code, not from a file), the
  shared fields are compared with config_defaults.base_config(). `rules`:
  `field_rules(references)` made once by a caller that checks many configs
  of one file (the bad-input walk: 28K configs; 1.6 ms of rules each for
  imp.py and its 10 variants)."""
  check_fields(config, rules or field_rules(
      references or [config_defaults.base_config()]))
  experiment = EXPERIMENTS.get(config.experiment)
  check_experiment_fields(config, references)
  if not experiment.float64:
    check_float32(config)
  with files_of(references):
    experiment.validate(config)
    # Last: an experiment's own message (a model it cannot use) says more.
    check_choices(config, experiment.own_fields)
  return experiment


# experiment -> (its FIELD_DEFAULTS entry, the fields every config of its
# file has): made once per load of that file, not per check.
_REQUIRED_FIELDS: Dict[str, Tuple[Any, frozenset]] = {}


def own_config_file(experiment: str) -> Optional[str]:
  """configs/EXPERIMENT.py of a shipped experiment, where the checkout has
  it; None for one registered in code (or an installed package)."""
  path = os.path.join(config_loading.CONFIGS_DIR, f"{experiment}.py")
  return path if experiment in MODULES and os.path.isfile(path) else None


def _required_fields(experiment: str) -> Optional[frozenset]:
  """The fields every config of `experiment`'s own file has (each variant,
  with and without runlocal: a variant may drop one, as train.py's
  cifar10_resnet20 drops reference.protocol_differences); None where no
  config of its own is known."""
  defaults = config_defaults.FIELD_DEFAULTS.get(experiment)
  if defaults is None and own_config_file(experiment):
    # Loading the file records its defaults (config_defaults.make_config).
    config_loading.load_config(own_config_file(experiment))
    defaults = config_defaults.FIELD_DEFAULTS.get(experiment)
  if defaults is None:
    return None
  cached = _REQUIRED_FIELDS.get(experiment)
  if cached is None or cached[0] is not defaults:
    # file_values: None where a config of the file lacks the field (none
    # at all for the article, whose defaults are its one shape).
    cached = (defaults, frozenset(
        name for name, _ in leaves(defaults)
        if None not in config_defaults.file_values(experiment, name)))
    _REQUIRED_FIELDS[experiment] = cached
  return cached[1]


def check_experiment_fields(config, references: Optional[Sequence] = None):
  """`config` has the fields of its experiment, and no section of another
  one: `--config.experiment=imp` on train.py's config (no prune.*) ended in
  an AttributeError inside imp's checks; imp.py's config run as 'train'
  trained in full, then crashed without its summary. Compared with the
  experiment's own config file (every variant); an experiment with none
  (one registered in code) runs on any config."""
  name = config.experiment
  required = _required_fields(name)
  if required is None:
    # A shipped experiment whose file this install lacks: a config file of
    # another experiment is still not its config.
    file_experiment = references[0].get("experiment") if references else None
    if name in MODULES and file_experiment not in (None, name):
      raise UserError(
          f"experiment={name!r}: this is a config of experiment "
          f"{file_experiment!r}, without {name}'s fields; run {name} with "
          f"its own config file, configs/{name}.py, instead of setting "
          "experiment")
    return
  defaults = config_defaults.FIELD_DEFAULTS[name]
  sections = lambda fields: ", ".join(sorted({f.split(".")[0] for f in fields}))
  missing = required - {field for field, _ in leaves(config)}
  # A section of the config no config of the experiment's file has (a
  # variant may add one: landscape's arms).
  extra = [key for key in config if key not in defaults and all(
      v is None for v in config_defaults.file_values(name, key))]
  if not missing and not extra:
    return
  what = [f"it lacks {name}'s fields {sections(missing)}"] * bool(missing) + [
      f"its fields {sections(extra)} are not {name}'s"] * bool(extra)
  raise UserError(
      f"experiment={name!r} does not fit this config: {' and '.join(what)} "
      f"(it is another experiment's config); run {name} with its own config "
      f"file, configs/{name}.py, instead of setting experiment")


def validate_base(config, where: str = ""):
  """Checks the fields of config_defaults.base_config(). `where` leads the
  error of an arm's or a grid cell's config ("arm 'with_bn'
  (arms.with_bn): "): its field alone (model.norm) names one the user may
  never have set."""
  try:
    _validate_base(config)
  except UserError as e:
    if not where:
      raise
    raise UserError(f"{where}{e}") from None


def _validate_base(config):
  check(is_int(config.seeds) and 1 <= config.seeds <= MAX_SEEDS, "seeds",
        config.seeds, f"an integer >= 1 and <= {MAX_SEEDS} (every seed "
        "trains at once, in one program)")
  check(is_int(config.seed) and config.seed >= 0, "seed", config.seed,
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
  check_decay_on(config)
  check(o.warmup_steps >= 0, "optim.warmup_steps", o.warmup_steps, ">= 0")
  check(o.decay_factor > 0, "optim.decay_factor", o.decay_factor, "> 0")
  check(o.grad_clip >= 0, "optim.grad_clip", o.grad_clip, ">= 0 (0 = off)")
  check_sam(o, config.train.batch_size)
  bounds = list(o.boundaries)
  check(all(is_int(b) and b > 0 for b in bounds) and
        bounds == sorted(set(bounds)),
        "optim.boundaries", tuple(bounds), "increasing positive steps")

  # The paper's number a run is compared with (train's reference), shown
  # as a percentage: 2.0 was reported as "200%".
  reference = config.get("reference")
  if hasattr(reference, "get") and "test_accuracy" in reference:
    check(0.0 <= reference.test_accuracy <= 1.0, "reference.test_accuracy",
          reference.test_accuracy, "in [0, 1] (a fraction: 0.923, not 92.3)")

  t = config.train
  check(is_int(t.steps) and t.steps >= 1, "train.steps", t.steps,
        "an integer >= 1")
  check(is_int(t.batch_size) and t.batch_size >= 1, "train.batch_size",
        t.batch_size, "an integer >= 1")
  # An epoch budget sets each run's steps once the data is loaded; its
  # trainers check the schedule then (Trainer), still before the workdir.
  if not (config.get("epochs", 0) or config.get("grid", {}).get("epochs", 0)):
    check_schedule_fits(o, t.steps)
  check(t.log_every >= 1, "train.log_every", t.log_every, ">= 1")
  check_int(t.get("unroll", 1), "train.unroll", 1)
  check(t.eval_every >= 0, "train.eval_every", t.eval_every, ">= 0 (0 = end only)")
  check(t.checkpoint_every >= 0, "train.checkpoint_every", t.checkpoint_every,
        ">= 0 (0 = end only)")
  check(t.eval_batch_size >= 1, "train.eval_batch_size", t.eval_batch_size,
        ">= 1")
  check(0.0 <= t.label_smoothing < 1.0, "train.label_smoothing",
        t.label_smoothing, "in [0, 1)")
  check(t.max_train_eval >= 0, "train.max_train_eval", t.max_train_eval,
        ">= 0 (0 = all)")
  # The cap is on the training split's evaluation: none, nothing to cap.
  check_applies(config, "train.max_train_eval", t.eval_train,
                "only with train.eval_train=True (the training split's "
                "evaluation it caps)")
  check_batch_norm_batch_size(m, t.batch_size)

  # Unknown names fail here too, with the list of valid ones: also the
  # model's and the dataset's, which otherwise failed only once the run had
  # started (its log lines before the error).
  from jaxunknowns import losses, optim  # pylint: disable=g-import-not-at-top
  from jaxunknowns.data import datasets, pipeline  # pylint: disable=g-import-not-at-top
  from jaxunknowns.models import create_model  # pylint: disable=g-import-not-at-top
  optim.OPTIMIZERS.get(o.name)
  optim.SCHEDULES.get(o.schedule)
  # Regexes over parameter paths: one that does not compile was re.error's
  # traceback once the model was built (whether one leaves anything to
  # train is known only then: optim.trainable_labels, still before the
  # workdir).
  for field in ("freeze", "train_only"):
    if o.get(field, ""):
      optim.compiled_pattern(f"optim.{field}", o[field])
  losses.LOSSES.get(t.loss)
  create_model(m, 2)
  datasets.get_loader(pipeline.check_config(d)["name"])


class ReadRecorder:
  """A config section read through, remembering which fields were read
  (`read`): what a builder such as create_model uses of it."""

  def __init__(self, section):
    self._section, self.read = section, set()

  def get(self, key, default=None):
    self.read.add(key)
    return self._section.get(key, default)

  def __getattr__(self, key):
    self.read.add(key)
    return getattr(self._section, key)

  def __getitem__(self, key):
    self.read.add(key)
    return self._section[key]

  def __contains__(self, key):
    return key in self._section


def value_at(config, dotted: str) -> Any:
  """The value of a dotted field, or None where `config` lacks it."""
  for key in dotted.split("."):
    if not hasattr(config, "get"):
      return None
    config = config.get(key)
  return config


def model_fields_read(model_config) -> Optional[set]:
  """The model.* fields the chosen model's builder reads; None when it
  refuses the config (its own error comes where the model is built)."""
  from jaxunknowns.models import create_model  # pylint: disable=g-import-not-at-top
  recorder = ReadRecorder(model_config)
  try:
    create_model(recorder, 2)
  except UserError:
    return None
  return recorder.read


def check_choices(config, own_fields: Sequence[str] = (),
                  references: Optional[Sequence] = None):
  """A field that only some choices read (an optimizer's momentum or betas,
  the step schedule's boundaries, a model's widths or depth, the synthetic
  data's shape), moved from its default while the chosen one does not read
  it: one line, instead of a run that silently ignores it. `own_fields`:
  those the experiment judges itself (`Experiment.own_fields`). A value
  the chosen variant's own config gives (`references`' first, else
  `check_config`'s: its MLP widths once the command line asks for a
  ResNet) is the file's, not the user's: left alone, like a default.
  `check_config` runs it after the experiment's own checks, on the config
  as given (not on arms or cells derived from it). A config without the
  shared sections (the article's: its stages have their own) has none."""
  if not {"optim", "data", "model"} <= set(config):
    return
  # pylint: disable=g-import-not-at-top
  from jaxunknowns import optim
  from jaxunknowns.data import datasets
  o, d = config.optim, config.data

  own = references[0] if references else _FILE_OWN.get()

  def applies(field, ok, when):
    if field not in own_fields:
      check_applies(config, field, ok, when,
                    [] if own is None else [value_at(own, field)])

  def read_by(field, readers, selector, chosen):
    applies(field, chosen in readers, f"to {selector} "
            f"{' or '.join(map(repr, readers))}, not {chosen!r}")

  for choices, selector, chosen in ((optim.OPTIMIZER_FIELDS, "name", o.name),
                                    (optim.SCHEDULE_FIELDS, "schedule",
                                     o.schedule)):
    for f in sorted({f for fs in choices.values() for f in fs}):
      read_by(f"optim.{f}", [n for n, fs in choices.items() if f in fs],
              f"optim.{selector}", chosen)
  read_by("optim.sam_eta", [True], "ASAM: optim.sam_adaptive",
          o.get("sam_adaptive", False))
  for f in d.get("synthetic", {}):
    read_by(f"data.synthetic.{f}", [n for n, fs in datasets.SYNTHETIC_FIELDS
                                    .items() if f in fs], "data.name", d.name)
  read_by("data.source_dir", datasets.SOURCE_DIR_DATASETS, "data.name",
          d.name)
  applies("data.data_dir", d.name not in datasets.GENERATED_DATASETS,
          f"to datasets kept in TFDS's folder, not the generated {d.name!r}")
  applies("data.shuffle_seed", shuffle_seed_read(d), shuffle_seed_readers())
  # A dataset whose coordinates are the point (soudry2d) is never
  # standardized (data/pipeline.py): a data.normalize the user moved was
  # recorded in config.json, never applied.
  applies("data.normalize", not getattr(
      datasets.get_loader(d.name), "keeps_coordinates", False),
          f"to datasets whose inputs are standardized, not {d.name!r} (its "
          "coordinates are the point)")
  read = model_fields_read(config.model)
  from jaxunknowns.models import layers  # pylint: disable=g-import-not-at-top
  for f in config.model if read is not None else ():
    readers = layers.NORM_FIELDS.get(f)  # a norm's own field: say which
    when = (f"to {' or '.join(map(repr, readers))} norms, not model.norm "
            f"{norm_of(config.model)!r}" if readers else "to models that "
            f"read it, not model.name {config.model.name!r}")
    applies(f"model.{f}", f in read or f == "name", when)
  # losses.py's mse and exponential losses drop label smoothing: only the
  # cross-entropy reads it (an experiment whose stages set the loss, such as
  # edge_of_stability's eos.losses, judges the field itself).
  if "train" in config:
    read_by("train.label_smoothing", ["cross_entropy"], "train.loss",
            config.train.get("loss", "cross_entropy"))


def norm_of(model_config) -> str:
  """model.norm, with "default" resolved by the model's builder (batch for
  resnet/vgg, none for the rest and for a model without norm layers)."""
  norm = model_config.get("norm", "none")
  if norm != "default":
    return norm
  from jaxunknowns.models import create_model  # pylint: disable=g-import-not-at-top
  opts = getattr(create_model(model_config, 2), "opts", None)
  return opts.norm if opts is not None else "none"


def check_norm_fields(config, norms: Sequence[str], where: str):
  """For an experiment whose arms or cells set model.norm (registered with
  own_fields=layers.NORM_FIELD_PATHS): each norm's own field (num_groups,
  norm_position, ...) moved from its default only if one of the `norms`
  it trains reads it; `where` names them ("grid.norms=(...)")."""
  from jaxunknowns.models import layers  # pylint: disable=g-import-not-at-top
  for field, readers in layers.NORM_FIELDS.items():
    check_applies(config, f"model.{field}", any(n in readers for n in norms),
                  f"to {' or '.join(map(repr, readers))} norms, not {where}")


def uses_weight_decay(config) -> bool:
  """Whether any field of the run sets a nonzero weight decay: optim's own,
  or a grid's or an arm's (grid.weight_decays, memorization.weight_decay,
  ablation.weight_decay, curve.weight_decay): every one is so named."""
  return any(name.rsplit(".", 1)[-1] in ("weight_decay", "weight_decays")
             and any(v for v in (value if isinstance(value, tuple)
                                 else (value,)))
             for name, value in leaves(config))


def check_decay_on(config):
  """optim.decay_on is one of optim.DECAY_ON, and moved from "all" only
  where some weight decay is used (else it is recorded, never applied)."""
  from jaxunknowns import optim  # pylint: disable=g-import-not-at-top
  on = config.optim.get("decay_on", "all")
  check(on in optim.DECAY_ON, "optim.decay_on", on,
        f"one of {', '.join(map(repr, optim.DECAY_ON))}")
  check_applies(config, "optim.decay_on", uses_weight_decay(config),
                "only where weight decay is used (optim.weight_decay > 0, "
                "or a grid's or arm's nonzero weight decay)")


def check_sam(o, batch_size):
  """optim.sam_*: rho >= 0; eta > 0; m >= 0 dividing the batch; ASAM and m
  only with rho > 0 (a setting that is not used is refused, not recorded).
  Configs from before SAM lack the fields: off."""
  rho, m = o.get("sam_rho", 0.0), o.get("sam_m", 0)
  adaptive = o.get("sam_adaptive", False)
  check(isinstance(rho, (int, float)) and not isinstance(rho, bool) and
        math.isfinite(rho) and rho >= 0, "optim.sam_rho", rho,
        ">= 0 (0 = SAM off)")
  check(o.get("sam_eta", 0.01) > 0, "optim.sam_eta", o.get("sam_eta"), "> 0")
  check(isinstance(adaptive, bool), "optim.sam_adaptive", adaptive,
        "True or False")
  check(is_int(m) and m >= 0, "optim.sam_m", m,
        "an integer >= 0 (0 = the whole batch)")
  if rho == 0:
    check(not adaptive, "optim.sam_adaptive", adaptive,
          "False while optim.sam_rho = 0 (SAM is off)")
    check(m == 0, "optim.sam_m", m, "0 while optim.sam_rho = 0 (SAM is off)")
  check(m == 0 or (is_int(batch_size) and batch_size % m == 0),
        "optim.sam_m", m, f"a divisor of train.batch_size={batch_size}")


def uses_batch_norm(model_config) -> bool:
  """Whether the model normalizes with BatchNorm ("default" resolved by the
  model's builder: batch for resnet/vgg, none for the rest)."""
  norm = model_config.get("norm", "none")
  batch_norms = ("batch", "noisy_batch")  # noisy BN is BN plus noise
  if norm in batch_norms:
    # A model without a norm layer (linear) does not read model.norm at all:
    # check_choices then refuses the field itself, in its own words.
    read = model_fields_read(model_config)
    return read is None or "norm" in read
  if norm in ("none", "group", "layer"):
    return False
  # "default" (or a bad name, which create_model reports in its own words):
  # the builder's choice; building a Flax module is cheap.
  return norm_of(model_config) in batch_norms


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
