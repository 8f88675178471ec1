"""The experiment registry: `config.experiment` names one of these.

An experiment is a `run(config, workdir)` function, an optional
`validate(config)` of its own fields, and a `report(path, config, summary)`
that writes report.md and the figures from the files of a finished workdir
(`run` calls it last; `python -m jaxunknowns.report_cli` calls it on an
existing workdir). `run` builds its dataset and model first (bad input fails
there), then calls `workdir.open()` and trains through the one `Trainer`.
"""

import dataclasses
from typing import Callable, Optional

from jaxunknowns.registry import Registry


@dataclasses.dataclass(frozen=True)
class Experiment:
  run: Callable  # (config, workdir: Workdir) -> summary dict
  validate: Callable = lambda config: None
  # (path, config, summary) -> None: report.md and figures from the workdir's files.
  report: Optional[Callable] = None


EXPERIMENTS: Registry = Registry("experiment", "experiment")


def register(name: str, validate: Callable = lambda config: None,
             report: Optional[Callable] = None):
  def decorator(run):
    EXPERIMENTS.register(name)(
        Experiment(run=run, validate=validate, report=report))
    return run
  return decorator


def _import_all():
  """Registration happens on import: every module of this package that
  calls `register` is imported here, so adding an experiment is adding a file."""
  import importlib  # pylint: disable=g-import-not-at-top
  import pkgutil  # pylint: disable=g-import-not-at-top
  for info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{info.name}")


_import_all()
