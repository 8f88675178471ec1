r"""Rebuilds report.md and the figures of finished runs, training nothing.

  python -m jaxunknowns.report_cli --workdir=/tmp/imp
  python -m jaxunknowns.report_cli --workdir=/tmp/a --workdir=/tmp/b
  python -m jaxunknowns.report_cli --workdir=/tmp/sweeps/lr   # a sweep root

Each run's report is rebuilt by its experiment's registered `report` from
the workdir's files; a sweep root (holding sweep.json) gets sweep.md/.json/.png
rebuilt from its runs' summaries. Only reports and PNGs are rewritten, each
atomically. An unfinished run, a damaged summary.json or config.json, or an
unknown experiment: one line, exit 2, and no workdir changed.
"""

import json
import os
import sys
from typing import Any, Callable, List

from jaxunknowns import paths
from jaxunknowns.errors import UserError

SWEEP_JSON = "sweep.json"


def _read(path: str, what: str, fix: str) -> Any:
  if not paths.isfile(path):
    raise UserError(f"{path} is missing: {fix}")
  try:
    return json.loads(paths.read_text(path))
  except (OSError, ValueError) as e:
    raise UserError(f"{path} is not readable JSON ({type(e).__name__}): the "
                    f"{what} is damaged; rerun the experiment into a new "
                    f"--workdir") from e


def _tuples(value):
  """config.json turned the config's tuples into lists; configs use tuples."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def load_run(path: str):
  """(config, summary) of the finished run in `path`; UserError otherwise."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from jaxunknowns.workdir import CONFIG_FILE, SUMMARY_FILE  # pylint: disable=g-import-not-at-top
  if not paths.isdir(path):
    raise UserError(f"workdir {path} does not exist (pass the --workdir of a "
                    f"finished run, or a sweep root)")
  config = _read(os.path.join(path, CONFIG_FILE), "run's config",
                 "this is not a run's workdir (pass the --workdir the run "
                 "was started with)")
  summary = _read(os.path.join(path, SUMMARY_FILE), "run's summary",
                  "the run has not finished; rerun its command to resume it, "
                  "and the report is written at the end")
  if not isinstance(config, dict) or "experiment" not in config:
    raise UserError(f"{os.path.join(path, CONFIG_FILE)} names no experiment: "
                    f"this is not a jaxunknowns run's config")
  return ml_collections.ConfigDict(_tuples(config)), summary


def _report_of(config):
  from jaxunknowns.experiments import EXPERIMENTS  # pylint: disable=g-import-not-at-top
  experiment = EXPERIMENTS.get(config.experiment)
  if experiment.report is None:
    raise UserError(f"experiment {config.experiment!r} has no report to "
                    f"rebuild")
  return experiment.report


# Each _plan_* reads and checks one workdir and returns the rebuild to run
# later, so that rebuild_all finds a bad workdir before touching any.
def _plan_run(path: str) -> Callable[[], str]:
  path = paths.absolute(path)
  config, summary = load_run(path)
  report = _report_of(config)

  def rebuild():
    report(path, config, summary)
    return os.path.join(path, "report.md")
  return rebuild


def _plan_sweep(root: str) -> Callable[[], str]:
  from jaxunknowns import sweep  # pylint: disable=g-import-not-at-top
  root = paths.absolute(root)
  saved = _read(os.path.join(root, SWEEP_JSON), "sweep's aggregate", "")
  try:
    runs = [sweep.Run(r["name"], r["overrides"], None, r["workdir"])
            for r in saved["runs"]]
    meta = {k: saved[k] for k in ("config", "sweep", "base_overrides")}
  except (KeyError, TypeError) as e:
    raise UserError(f"{os.path.join(root, SWEEP_JSON)} lacks {e}: it was not "
                    f"written by jaxunknowns.sweep; rerun the sweep with "
                    f"--aggregate_only") from e

  def rebuild():
    sweep.aggregate(runs, root, meta)
    return os.path.join(root, sweep.SWEEP_MD)
  return rebuild


def _plan(path: str) -> Callable[[], str]:
  if paths.isfile(os.path.join(path, SWEEP_JSON)):
    return _plan_sweep(path)
  return _plan_run(path)


def rebuild_run(path: str) -> str:
  return _plan_run(path)()


def rebuild_all(paths: List[str]) -> List[str]:
  """Rebuilds every workdir (run or sweep root) and returns the reports'
  paths; every workdir is read and checked first, so a bad one among many
  changes nothing."""
  plans = [_plan(path) for path in paths]
  return [rebuild() for rebuild in plans]


def _cli():
  """Flags are defined here, not on import: tests import this module beside
  jaxunknowns.main, which owns a --workdir flag of its own."""
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  workdirs = flags.DEFINE_multi_string(
      "workdir", None, "A finished run's workdir, or a sweep root; repeatable.")
  flags.mark_flags_as_required(["workdir"])

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
      for written in rebuild_all(workdirs.value):
        print(f"rebuilt {written}")
    except UserError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)

  app.run(main)


if __name__ == "__main__":
  _cli()
