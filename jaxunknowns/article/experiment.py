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
"""

import os
import sys
import time
from typing import Any, Dict, List

import jax

from jaxunknowns import config_loading, distributed, executors, experiments
from jaxunknowns.article import outline
from jaxunknowns.errors import UserError
from jaxunknowns.metrics import read_json, write_json
from jaxunknowns.report.text import duration
from jaxunknowns.validation import check, check_int

PROGRESS_FILE = "stages.json"  # Every stage's status, also while running.
# The repository root: stage specs name configs/*.py relative to it.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


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
        stage_workdir.check()
      finally:  # a non-main process's scratch folder, made for nothing
        stage_workdir.close()
    except (UserError, ValueError, OSError) as e:
      raise UserError(f"{where}: {str(e).splitlines()[0]}") from e
    runs.append(sweep.Run(stage, overrides, stage_config, folder, references))
  return runs


def _stage_result(run, error, seconds) -> Dict[str, Any]:
  summary = read_json(os.path.join(run.workdir, "summary.json")) or {}
  return {"status": "failed" if error else "finished", "error": error or "",
          "seconds": round(seconds if seconds is not None else
                           summary.get("wall_time_s", 0.0), 1),
          "seeds": len(summary.get("seeds", ())),
          "overrides": dict(run.overrides)}  # on the page's command


def run_here(runs, progress: Dict[str, Any], save, out) -> None:
  """Runs the stages one after another, printing a line as each starts and
  ends with the time left: the mean time of the stages run so far times the
  stages still to run."""
  ran: List[float] = []

  def time_left(stages: int) -> str:
    if not ran:
      return "time left known after the first stage"
    return f"about {duration(sum(ran) / len(ran) * stages)} left"

  for i, run in enumerate(runs, 1):
    head = f"article [{i}/{len(runs)}] {run.name}"
    if run.finished:
      progress[run.name] = _stage_result(run, None, None)
      print(f"{head}: finished before, skipped", file=out, flush=True)
      continue
    print(f"{head}: started ({time_left(len(runs) - i + 1)})", file=out,
          flush=True)
    t0 = time.time()
    error = executors.run_one(run.config, run.workdir, False, run.references)
    seconds = time.time() - t0
    ran.append(seconds)
    progress[run.name] = _stage_result(run, error, seconds)
    save()
    eta = f"; {time_left(len(runs) - i)}" if i < len(runs) else ""
    verb = f"FAILED after {duration(seconds)}: {error}" if error else (
        f"finished in {duration(seconds)}")
    print(f"{head}: {verb}{eta}", file=out, flush=True)


@experiments.register("article", validate=validate,
                      report="jaxunknowns.article.page:write",
                      multi_process=True)
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
    outcomes = executors.run_ray(runs, False, out)
    for r in runs:
      progress[r.name] = _stage_result(r, outcomes.get(r.name), None)
  else:
    run_here(runs, progress, save, out)
  save()
  summary = {"scale": config.article.scale, "stages": progress,
             "wall_time_s": time.time() - t0, "machine": machine_info()}
  failed = [name for name, p in progress.items() if p["status"] == "failed"]
  if not failed:
    return experiments.finish("article", workdir, config, summary)
  experiments.write_report("article", workdir.path, config, summary)
  page = os.path.join(workdir.shared_path, "ARTICLE.md")  # on every process
  raise UserError(
      f"{len(failed)} of {len(runs)} stages of the article failed "
      f"({', '.join(failed)}); {page} shows them with their errors; fix "
      "them and rerun the same command (finished stages are kept)")

