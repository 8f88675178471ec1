r"""Rebuilds report.md and the figures of finished runs, training nothing.

  python -m jaxunknowns.report_cli --workdir=/tmp/imp [--workdir=/tmp/b]

A run's report is rebuilt by its experiment's registered `report`; a sweep
root (sweep.json) gets sweep.md/.json/.png (`sweep.rebuild`). Every workdir
is checked before any is touched: an unfinished or damaged run or an unknown
experiment is one line, exit 2, and no workdir changed. A summary that
parses but lacks what its report reads (hand-edited, or from another
version) is found only while writing: the files the rebuilds wrote are put
back as they were, then the same one line and exit 2.
"""

import os
import sys
from typing import Callable, List

from absl import logging

from jaxunknowns import errors, paths
from jaxunknowns.errors import UserError


def _plan(path: str) -> Callable[[], str]:
  """Reads and checks one workdir; returns the rebuild to run later."""
  # pylint: disable=g-import-not-at-top
  from jaxunknowns import sweep
  from jaxunknowns.experiments import EXPERIMENTS
  from jaxunknowns.workdir import load_finished, require_path
  path = paths.absolute(require_path(path))
  if paths.isfile(os.path.join(path, sweep.SWEEP_JSON)):
    write, written = sweep.rebuild(path), sweep.SWEEP_MD
  else:
    config, summary = load_finished(path)
    report = EXPERIMENTS.get(config.experiment).report
    if report is None:
      raise UserError(f"experiment {config.experiment!r} has no report to "
                      f"rebuild")
    write, written = lambda: report(path, config, summary), "report.md"

  def rebuild():
    wrote = write()  # The article returns its page (ARTICLE.md).
    return wrote if isinstance(wrote, str) else os.path.join(path, written)
  return rebuild


def rebuild_run(path: str) -> str:
  return rebuild_all([path])[0]


def inner_first(workdirs: List[str]) -> List[str]:
  """The workdirs, absolute, each after every given workdir inside it."""
  from jaxunknowns.workdir import require_path  # pylint: disable=g-import-not-at-top
  found = [paths.absolute(require_path(p)).rstrip("/")  # gs://b/A/ is A
           for p in workdirs]
  inside = lambda p: sum(p.startswith(q + "/") for q in set(found))
  return sorted(found, key=lambda p: -inside(p))


def rebuild_all(workdirs: List[str]) -> List[str]:
  """Rebuilds every workdir (run or sweep root); returns the reports' paths.
  All or none: a rebuild that fails puts every workdir back. A workdir
  inside another given one is rebuilt first: an article's page reads its
  stages' page.json, so `--workdir=A --workdir=A/stages/S` would otherwise
  show S's old comparisons."""
  plans = [(path, _plan(path)) for path in inner_first(workdirs)]
  written, done = [], []
  for path, rebuild in plans:
    # What a failed rebuild may have half-replaced: the files directly in
    # the workdir (report.md, page.json, figures, sweep.*, ARTICLE.md).
    before = paths.snapshot_files(path)
    done.append((path, before))
    try:
      written.append(rebuild())
    except (KeyError, IndexError, TypeError, AttributeError, ValueError,
            OSError) as e:  # OSError: a file a report reads is a folder
      for p, b in reversed(done):  # a path given twice: its first snapshot
        try:
          paths.restore_files(p, b)
        except OSError as undo:  # the error below says what went wrong
          logging.warning("could not put %s back as it was: %s", p, undo)
      cause = errors.write_error(e, path)
      if cause is not None:  # a full disk or a folder it may not write
        raise UserError(
            f"{path}: could not write the report: "
            f"{errors.WRITE_ERRNOS[cause.errno]} ({cause.strerror}); make "
            "room or fix the permissions, then rerun the same command") from e
      what = ("a file it reads cannot be read" if isinstance(e, OSError) else
              "summary.json or sweep.json is damaged or from another version "
              "of jaxunknowns")
      raise UserError(
          f"{path}: the report could not be rebuilt from its files "
          f"({type(e).__name__}: {errors.first_line(e)}): "
          f"{what}; rerun the run's command in a "
          "fresh workdir") from e
  return written


def _cli():
  """Flags defined here, not on import (main owns a --workdir flag too)."""
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  workdirs = flags.DEFINE_multi_string(
      "workdir", None, "A finished run's workdir, or a sweep root; repeatable.")
  flags.mark_flags_as_required(["workdir"])

  def main(argv):
    errors.refuse_arguments(argv)
    try:
      for written in rebuild_all(workdirs.value):
        print(f"rebuilt {written}")
    except (UserError, ImportError) as e:
      error = errors.user_error(e, "")  # a gs:// workdir without gcsfs
      if error is None:
        raise
      print(f"error: {error}", file=sys.stderr)
      sys.exit(2)

  app.run(main, flags_parser=errors.parse_flags)


if __name__ == "__main__":
  _cli()
