"""The `article` experiment: every claim of the article, one stage each.

A stage is an ordinary run of one experiment in WORKDIR/stages/NAME, so a
finished stage is skipped on a rerun, an unfinished one resumes from its
checkpoints, and `report_cli` rebuilds it alone. The stages run one after
another here (one progress line as each starts and ends, with the time left
estimated from the stages run so far) or fan out as Ray tasks
(`article.executor=ray`). A stage that fails is kept on the page as failed,
with its error; the others still run, the page is still written, and the
run then ends with one line naming the failures (summary.json is written
only when every stage finished, so a rerun retries the failed ones).

A rerun may change which stages run and how (article.stages, article.skip,
article.executor: `resume_may_change` below): the article's workdir does
not compare them, and each stage's folder is checked against the stage's
own config by `plan`, so the finished stages are kept.
"""

import os
import sys
import time
import traceback
from typing import Any, Dict, List, Optional

from absl import logging
import jax

from jaxunknowns import (config_loading, distributed, executors, experiments,
                         paths)
from jaxunknowns.article import outline
from jaxunknowns.errors import UserError
from jaxunknowns.metrics import read_json, read_json_object, write_json
from jaxunknowns.report.page import PAGE_JSON
from jaxunknowns.report.text import duration
from jaxunknowns.validation import check, check_int

# Every stage's status, written again as each stage ends (here and on Ray).
PROGRESS_FILE = "stages.json"
# The repository root: stage specs name configs/*.py relative to it.
ROOT = os.path.dirname(config_loading.CONFIGS_DIR)


# A diverged stage's way out, in place of a single run's (a new --workdir
# or --overwrite: the article's --overwrite deletes every stage).
STAGE_DIVERGED = ("as it is, a rerun diverges again: remove this stage's "
                  "folder before giving it another config "
                  "(article.stages.NAME), or leave it out (article.skip)")


def _skipped(config) -> set:
  return {s.strip() for s in config.article.skip.split(",") if s.strip()}


def chosen(config) -> List[str]:
  """The stages the page shows, in the article's order."""
  return [stage for stage in outline.STAGES if stage not in _skipped(config)]


def stage_folder(root: str, stage: str) -> str:
  return os.path.join(root, "stages", stage)


def validate(config):
  a = config.article
  check(a.scale in outline.SCALES, "article.scale", a.scale,
        f"one of {', '.join(outline.SCALES)}")
  check(a.executor in executors.EXECUTORS, "article.executor", a.executor,
        f"one of {', '.join(executors.EXECUTORS)}")
  given, known = set(a.stages.keys()), set(outline.STAGES)
  check(given == known, "article.stages", sorted(given ^ known),
        f"exactly the stages {', '.join(outline.STAGES)} (leave one out "
        f"with article.skip)")
  check(_skipped(config) <= known, "article.skip", a.skip,
        f"comma-separated names among {', '.join(outline.STAGES)}")
  check(bool(chosen(config)), "article.skip", a.skip, "to leave a stage to run")
  if a.executor == "ray" and distributed.several_processes():
    raise UserError(
        "article.executor='ray' runs each stage as a Ray task of its own, "
        f"not across the {jax.process_count()} processes here; run the "
        "article with the local executor (the default) to spread every "
        "stage over them, or start it in one process for Ray")
  if a.executor == "ray":
    # Before the workdir is written: a missing Ray or a RAY_ADDRESS nothing
    # answers at was found only once config.json was (the latter as an
    # endless, silent wait in ray.init).
    try:
      executors.check_ray_options()
    except UserError:  # its words name the sweep's --executor flag
      raise UserError("article.executor='ray' needs Ray: pip install -e "
                      "'.[ray]', or leave article.executor at 'local'"
                      ) from None
    executors.check_ray_address(flag="RAY_ADDRESS")
  check_int(a.min_seeds, "article.min_seeds", 0, "0: each stage's own")
  check_int(a.seed_offset, "article.seed_offset", 0,
            "0: each stage's own seeds")
  for stage in chosen(config):
    check(isinstance(a.stages[stage], str) and ".py" in a.stages[stage],
          f"article.stages.{stage}", a.stages[stage], "'configs/FILE.py[:ARG]'")
  # The page names its scale beside every verdict: stages all at their
  # runlocal size are no 'paper' page (the variant sets both together).
  tiny = all("runlocal" in a.stages[stage] for stage in chosen(config))
  check(a.scale == "runlocal" or not tiny,
        "article.scale", a.scale,
        "'runlocal': every stage runs its runlocal size (choose the scale "
        "with --config=configs/article.py:SCALE, which sets the stages too)")
  _check_scale_names_what_runs(config)


def scale_config(scale: str):
  """The article's config that configs/article.py gives `scale`; None
  without the repository's configs/ (a wheel)."""
  try:
    return config_loading.load_config(
        os.path.join(ROOT, "configs", f"article.py:{scale}"))
  except (OSError, ValueError, ImportError, UserError):
    return None


def scale_stages(scale: str) -> Optional[Dict[str, str]]:
  """{stage: spec} that configs/article.py gives `scale` (`scale_config`)."""
  config = scale_config(scale)
  return config and dict(config.article.stages.to_dict())


def _same_file(spec: str) -> str:
  """A spec as the file it names (found as `plan` finds it) and its
  argument, so that ./configs/x.py:a is configs/x.py:a."""
  path, _, arg = _resolve(spec).partition(":")
  return f"{os.path.abspath(path)}:{arg}"


def _check_scale_names_what_runs(config):
  """article.scale is recorded on the page beside every verdict, and the
  page's command is configs/article.py at that scale plus every stage
  changed from it. The scale is chosen with the variant, which sets the
  stages with it; set alone (--config.article.scale=paper on the laptop
  variant) it labelled the laptop stages 'paper'. So a stage that runs
  another scale's own config of it is refused: the label would not be what
  ran. A stage given a config of no scale's (the documented change of one
  stage, article.stages.NAME=...) is the user's own, named by the page's
  command and its section, and keeps the label, as a researcher who swaps
  one stage's variant still reports the page at its scale. Where the
  scales cannot be read (no configs/), nothing is refused."""
  a = config.article
  own = {scale: scale_stages(scale) for scale in outline.SCALES}
  if not all(own.values()):
    return
  # A skipped stage runs nothing: a config given to it would be recorded
  # in config.json (and the page's command) as if it had run.
  for stage in sorted(_skipped(config)):
    if _same_file(a.stages[stage]) != _same_file(own[a.scale][stage]):
      raise UserError(
          f"article.stages.{stage}={a.stages[stage]!r} is unused here: the "
          f"stage is in article.skip; drop that setting, or take {stage} "
          "out of article.skip to run it")
  for stage in chosen(config):
    spec = _same_file(a.stages[stage])
    if spec == _same_file(own[a.scale][stage]):
      continue
    other = [s for s in outline.SCALES if _same_file(own[s][stage]) == spec]
    if other:
      raise UserError(
          f"article.scale={a.scale!r} is not the size that runs: "
          f"article.stages.{stage}={a.stages[stage]!r} is the {other[0]} "
          "scale's config of that stage, and the page names one scale "
          "beside every verdict; choose the scale with "
          f"--config=configs/article.py:{other[0]} (it sets every stage "
          f"to it), or give the stage the {a.scale} scale's config, "
          f"{own[a.scale][stage]!r}")


def _resolve(spec: str) -> str:
  """The spec with its file found here, or else in the repository."""
  path, sep, arg = spec.partition(":")
  if not os.path.exists(path) and os.path.exists(os.path.join(ROOT, path)):
    path = os.path.join(ROOT, path)
  return path + sep + arg


def plan(config, root: str, overwrite: bool = False) -> list:
  """Every chosen stage's config and workdir, built and checked (read-only):
  a bad stage spec fails here, before anything is written. `overwrite`:
  the article's --overwrite, which deletes every stage's folder first (a
  stage folder holding another config's run is then no refusal)."""
  # pylint: disable=g-import-not-at-top
  from jaxunknowns import sweep, validation
  from jaxunknowns.workdir import Workdir
  runs = []
  for stage in chosen(config):
    spec = config.article.stages[stage]
    where = f"article.stages.{stage}={spec!r}"
    try:
      resolved = _resolve(spec)
      stage_config = config_loading.load_config(resolved)
      # The page shows the stage's results under its claim: a config of
      # another experiment would answer that claim with other numbers.
      if stage_config.experiment != stage:
        raise UserError(
            f"runs experiment {stage_config.experiment!r}, not {stage!r}; "
            f"name a config file of experiment {stage!r} (e.g. "
            f"configs/{stage}.py:VARIANT)")
      # More seeds than the variant's own, or other seeds (a re-run of the
      # page on seeds not run before): the overrides its command shows.
      overrides = ({"seeds": config.article.min_seeds} if
                   stage_config.seeds < config.article.min_seeds else {})
      if config.article.seed_offset:
        overrides["seed"] = stage_config.seed + config.article.seed_offset
      for field, value in overrides.items():
        stage_config[field] = value
      references = validation.references_of(resolved)
      validation.check_config(stage_config, references)
      folder = stage_folder(root, stage)
      stage_workdir = Workdir(folder, stage_config, overwrite=overwrite)
      try:
        if not overwrite:
          _check_stage_folder(stage_workdir)
        stage_workdir.check()
        if not overwrite and stage_workdir.finished:
          # Read for the page once every stage has run: a damaged one is
          # refused now, as a damaged summary.json is, not a traceback
          # after the stages ran. The rerun writes a missing one again.
          read_json_object(os.path.join(folder, PAGE_JSON),
                           "delete it and rerun the same command: the "
                           "article writes the stage's report again")
      finally:  # a non-main process's scratch folder, made for nothing
        stage_workdir.close()
    except (UserError, ValueError, OSError) as e:
      raise UserError(f"{where}: {str(e).splitlines()[0]}") from e
    runs.append(sweep.Run(stage, overrides, stage_config, folder, references))
  return runs


def _check_stage_folder(stage_workdir) -> None:
  """A stage folder holding another config's run (the stage's spec changed
  since it ran, or its config file did) is refused with the way out that
  keeps every other stage: that folder removed. Workdir.check's own advice
  there, --overwrite, is the article's, which deletes every stage."""
  # pylint: disable=g-import-not-at-top
  from jaxunknowns.workdir import CONFIG_FILE, first
  folder = stage_workdir.shared_path
  fix = (f"remove that stage's folder {folder} to rerun the stage under "
         "this config (the other stages are kept; the article's --overwrite "
         "deletes every stage)")
  try:
    saved = stage_workdir.saved_config
  except UserError:
    raise UserError(f"{os.path.join(folder, CONFIG_FILE)} is damaged (not "
                    f"a JSON object of a config): {fix}") from None
  differ = stage_workdir.differences(saved)[0] if saved is not None else []
  if differ:
    raise UserError(f"{folder} holds a run with a different config (fields "
                    f"differ: {first(differ, 8)}): {fix}")


def _stage_result(run, error, seconds) -> Dict[str, Any]:
  summary = read_json(os.path.join(run.workdir, "summary.json")) or {}
  return {"status": "failed" if error else "finished", "error": error or "",
          "seconds": round(seconds if seconds is not None else
                           summary.get("wall_time_s", 0.0), 1),
          # The stage's seeds as configured: its summary's list names every
          # network trained (mode_connectivity's two per seed).
          "seeds": run.config.seeds,
          "overrides": dict(run.overrides)}  # on the page's command


def _write_missing_report(run) -> Optional[str]:
  """Writes the report of a stage an earlier run finished without one (its
  report raised after experiments.finish wrote summary.json): the page
  reads its page.json. None, or why it failed again, which is the stage's
  failure, as it was when the stage ran. Process 0 alone writes it, into
  the stage's shared folder."""
  if not distributed.is_main():
    return None
  try:
    experiments.write_report(
        run.config.experiment, run.workdir, run.config,
        read_json(os.path.join(run.workdir, "summary.json")))
    return None
  except Exception as e:  # pylint: disable=broad-except
    logging.exception("the report of stage %s failed", run.name)
    last = traceback.format_exception_only(type(e), e)[-1].strip()
    return (f"its report could not be written ({last}); python -m "
            f"jaxunknowns.report_cli --workdir={run.workdir} writes it once "
            "that is fixed, as does a rerun of the article")


def _finished_before(run) -> Dict[str, Any]:
  """The result of a stage an earlier run finished, its report written
  first where it is missing."""
  error = None
  if not paths.exists(os.path.join(run.workdir, PAGE_JSON)):
    error = _write_missing_report(run)
  # Its time is not in this run's wall time (the page says so).
  return {**_stage_result(run, error, None), "finished_before": True}


def run_here(runs, progress: Dict[str, Any], save, out) -> None:
  """Runs the stages one after another, printing a line as each starts and
  ends with the time left: the mean time of the stages run so far times the
  stages still to run (not those finished before, which are skipped)."""
  ran: List[float] = []
  to_run = [run.name for run in runs if not run.finished]

  def time_left(stages: int) -> str:
    if not ran:
      return "time left known after the first stage"
    return f"about {duration(sum(ran) / len(ran) * stages)} left"

  for i, run in enumerate(runs, 1):
    head = f"article [{i}/{len(runs)}] {run.name}"
    if run.name not in to_run:
      progress[run.name] = _finished_before(run)
      error = progress[run.name]["error"]
      print(f"{head}: finished before, skipped" + (
          f"; writing its missing report FAILED: {error}" if error else ""),
            file=out, flush=True)
      continue
    left = len(to_run) - to_run.index(run.name)  # this stage and later ones
    print(f"{head}: started ({time_left(left)})", file=out, flush=True)
    t0 = time.time()
    error = executors.run_one(run.config, run.workdir, False, run.references,
                              diverged_advice=STAGE_DIVERGED)
    seconds = time.time() - t0
    ran.append(seconds)
    progress[run.name] = _stage_result(run, error, seconds)
    save()
    eta = f"; {time_left(left - 1)}" if left > 1 else ""
    verb = f"FAILED after {duration(seconds)}: {error}" if error else (
        f"finished in {duration(seconds)}")
    print(f"{head}: {verb}{eta}", file=out, flush=True)


def run_on_ray(runs, progress: Dict[str, Any], save, out) -> None:
  """Every stage still to run as a Ray task; stages.json written again as
  each ends."""
  by_name = {run.name: run for run in runs}
  to_run = []
  for run in runs:
    if run.finished:
      progress[run.name] = _finished_before(run)
    else:
      to_run.append(run)
  save()

  def done(name, error, seconds):
    progress[name] = _stage_result(by_name[name], error, seconds)
    save()
  if to_run:
    executors.run_ray(to_run, False, out, diverged_advice=STAGE_DIVERGED,
                      on_done=done)


@experiments.register("article", validate=validate,
                      report="jaxunknowns.article.page:write",
                      multi_process=True,
                      # Which stages run and how: each stage's folder is
                      # checked against its own config by plan().
                      resume_may_change=("article.stages", "article.skip",
                                         "article.executor"))
def run(config, workdir):
  # pylint: disable=g-import-not-at-top
  from jaxunknowns.runs import machine_info
  # Every process runs each stage in step with the others, into the stage's
  # one shared folder (main.run gives a non-main process a scratch folder
  # of its own for the stage). A stage file one host lacks stops them all.
  runs, error = [], None
  try:
    runs = plan(config, workdir.shared_path, workdir.overwrite)
  except UserError as e:
    error = e
  distributed.raise_on_every_process(error)
  workdir.open()
  t0, out = time.time(), sys.stdout
  progress_path = workdir.file(PROGRESS_FILE)
  progress = {}
  save = lambda: write_json(progress_path, progress)
  if config.article.executor == "ray":
    run_on_ray(runs, progress, save, out)
  else:
    run_here(runs, progress, save, out)
  progress = {r.name: progress[r.name] for r in runs}  # the article's order
  save()
  summary = {"scale": config.article.scale, "stages": progress,
             "wall_time_s": time.time() - t0, "machine": machine_info()}
  failed = [name for name, p in progress.items() if p["status"] == "failed"]
  error = None
  if failed:
    experiments.write_report("article", workdir.path, config, summary)
    page = os.path.join(workdir.shared_path, "ARTICLE.md")  # on every process
    stages = os.path.join(workdir.shared_path, "stages")
    error = UserError(
        f"{len(failed)} of {len(runs)} stages of the article failed "
        f"({', '.join(failed)}); {page} shows them with their errors. Rerun "
        "once they are fixed (finished stages are kept): a failed stage "
        f"keeps its run in {stages}/NAME, so remove that folder before "
        "giving the stage another config (article.stages.NAME), or leave "
        "the stage out (article.skip)")
  # Every process stops together: process 0 raising at once left process 1
  # writing its scratch copy of the page, which JAX's shutdown then aborted
  # ('JAX distributed service detected fatal errors'), its scratch folders
  # left behind. And a stage whose missing report process 0 alone wrote
  # again and saw fail stops every process, not process 0 alone.
  distributed.raise_on_every_process(error)
  return experiments.finish("article", workdir, config, summary)

