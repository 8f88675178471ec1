"""The experiment registry: `config.experiment` names one of these.

An experiment is a `run(config, workdir)` function, an optional
`validate(config)` of its own fields, and a `report(path, config, summary)`
that writes report.md and the figures from the files of a finished workdir
(`run` calls it last; `python -m jaxunknowns.report_cli` calls it on an
existing workdir). `run` builds its dataset and model first (bad input fails
there), then calls `workdir.open()` and trains through the one `Trainer`.

Each experiment lives in its phenomenon's package and registers itself when
its module is imported. `MODULES` says which module that is, so the CLI
imports only the experiment it runs (and that experiment imports its report
code only when it writes a report): a bad config fails in well under a second.
Adding an experiment is one module and one line here; ARCHITECTURE.md
lists the rest (its config, report, papers entry and tests).
"""

import dataclasses
import importlib
import importlib.util
import json
from typing import Callable, Optional, Tuple, Union

from jaxunknowns.errors import UserError
from jaxunknowns.registry import Registry

# Experiment name -> the module that registers it.
MODULES = {
    "train": "jaxunknowns.train",
    # Lottery tickets.
    "imp": "jaxunknowns.lottery.imp",
    "prune_init": "jaxunknowns.lottery.prune_init",
    # BatchNorm.
    "bn_only": "jaxunknowns.batchnorm.bn_only",
    "bn_modes": "jaxunknowns.batchnorm.bn_modes",
    "bn_batch_size": "jaxunknowns.batchnorm.bn_batch_size",
    "bn_placement": "jaxunknowns.batchnorm.bn_placement",
    "bn_regularization": "jaxunknowns.batchnorm.bn_regularization",
    "bn_smoothness": "jaxunknowns.batchnorm.bn_smoothness",
    "bn_stability": "jaxunknowns.batchnorm.bn_stability",
    # Over-parameterization.
    "randomization": "jaxunknowns.overparam.randomization",
    "width_sweep": "jaxunknowns.overparam.width_sweep",
    "double_descent": "jaxunknowns.overparam.double_descent",
    "memorization": "jaxunknowns.overparam.memorization",
    "mode_connectivity": "jaxunknowns.overparam.mode_connectivity",
    "ntk": "jaxunknowns.overparam.ntk",
    # Implicit regularization.
    "max_margin": "jaxunknowns.implicit.max_margin",
    "sharpness": "jaxunknowns.implicit.sharpness",
    "landscape": "jaxunknowns.implicit.landscape",
    "hessian_spectrum": "jaxunknowns.implicit.hessian_spectrum",
    "edge_of_stability": "jaxunknowns.implicit.edge_of_stability",
    "sam": "jaxunknowns.implicit.sam",
    # Every phenomenon's headline experiment, one page.
    "article": "jaxunknowns.article.experiment",
}


def _resolve(target: Union[str, Callable, None]) -> Optional[Callable]:
  """A callable, or 'package.module:function' imported on first use."""
  if target is None or callable(target):
    return target
  module, _, name = target.partition(":")
  return getattr(importlib.import_module(module), name)


@dataclasses.dataclass(frozen=True)
class Experiment:
  run: Callable  # (config, workdir: Workdir) -> summary dict
  validate: Callable = lambda config: None
  # (path, config, summary) -> None: report.md and figures from the workdir's
  # files; a 'module:function' string is imported only when a report is written.
  report_fn: Union[str, Callable, None] = None
  # Shared fields whose use the experiment judges itself, not by the shared
  # choices (max_margin's optimizers read optim.momentum whatever optim.name
  # says): validation.check_choices leaves them to its `validate`.
  own_fields: Tuple[str, ...] = ()
  # Computes in float64 (jax.enable_x64): its floats need not fit float32
  # (max_margin's Adam eps -> 0), so validation.check_float32 is skipped.
  float64: bool = False
  # Runs across several processes (jax.distributed: a TPU pod slice, several
  # GPU hosts), checked there against one process (tests/test_scaleout.py).
  # The others stop before touching the workdir: their host-side analyses
  # and stage folders are written for one process (a traceback or a hang).
  multi_process: bool = False
  # Fields (dotted; each with every field under it) that only choose which
  # parts of a run run and how, each part checking its own config when it
  # runs (the article's stages, each in a workdir of its own): a rerun may
  # change them. Workdir.check leaves them out of its comparison, and
  # Workdir.open rewrites config.json with the rerun's values.
  resume_may_change: Tuple[str, ...] = ()

  @property
  def report(self) -> Optional[Callable]:
    return _resolve(self.report_fn)


class _Experiments(Registry):
  """The registry; imports an experiment's module when first asked for it."""

  def get(self, name: str) -> Experiment:
    if name in MODULES and name not in self:
      importlib.import_module(MODULES[name])
    if name not in self:
      raise UserError(f"unknown experiment {name!r} in experiment; valid "
                      f"names: {', '.join(self.names())} (an experiment of "
                      "your own also needs its module in experiments.MODULES)")
    return super().get(name)

  def names(self):
    return sorted(set(MODULES) | set(super().names()))


EXPERIMENTS = _Experiments("experiment", "experiment")


def register(name: str, validate: Callable = lambda config: None,
             report: Union[str, Callable, None] = None,
             own_fields: Tuple[str, ...] = (), float64: bool = False,
             multi_process: bool = False,
             resume_may_change: Tuple[str, ...] = ()):
  if isinstance(report, str):
    # Imported only once a run has trained: a misspelt module would
    # surface then, after hours. Found now, without importing it (the
    # function itself is looked up on import: tests/test_cli.py resolves
    # every registered one).
    module, _, function = report.partition(":")
    try:  # find_spec imports the parents: a misspelt package raises
      spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
      spec = None
    if not function or spec is None:
      raise ValueError(f"experiment {name!r}: report={report!r} is not "
                       "'package.module:function' of a module that exists")

  def decorator(run):
    EXPERIMENTS.register(name)(
        Experiment(run=run, validate=validate, report_fn=report,
                   own_fields=tuple(own_fields), float64=float64,
                   multi_process=multi_process,
                   resume_may_change=tuple(resume_may_change)))
    return run
  return decorator


def write_report(name: str, path: str, config, summary):
  """Writes report.md and the figures of a finished `name` run in `path`."""
  report = EXPERIMENTS.get(name).report
  if report is not None:
    report(path, config, summary)


def finish(name: str, workdir, config, summary):
  """How every run ends: the report, then summary.json, which marks the run
  finished, so a run killed mid-report is redone by its rerun (from its
  finished stages) rather than left without report.md. The report reads the
  summary through a JSON round trip, as `report_cli` does. A report that
  raises (a bug) still writes summary.json: the run keeps its results, and
  `report_cli` writes the report once the bug is fixed."""
  # pylint: disable=g-import-not-at-top
  from jaxunknowns.metrics import METRICS_FILE, drop_rows, write_json
  from jaxunknowns.workdir import SUMMARY_FILE
  drop_rows(workdir.file(METRICS_FILE))  # a finished file of whole rows
  try:
    write_report(name, workdir.path, config, json.loads(json.dumps(summary)))
  except Exception:  # not a kill (KeyboardInterrupt): that stays unfinished
    write_json(workdir.file(SUMMARY_FILE), summary)
    raise
  write_json(workdir.file(SUMMARY_FILE), summary)
  return summary
