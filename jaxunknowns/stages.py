"""Resumable stages: the one idiom every multi-part experiment is built from.

A *stage* is a unit of work with its own folder (WORKDIR/stages/NAME/, or a
folder the experiment names): a training run of all seeds at once, an
analysis, a grid cell. Its result is a JSON dict kept in the folder's
result.json, written atomically when the stage finishes. So:

* a finished stage is never redone: `run_stage` returns its result.json;
* an unfinished one redoes its work, and a training stage resumes from the
  checkpoints in its folder (Trainer.fit), so a killed job loses at most
  `train.checkpoint_every` steps of the stage it was in;
* result.json also records how many rows metrics.jsonl held when the stage
  finished (dropped on reading it back), so a rerun that would skip the
  stage refuses a file cut or deleted since (`check_finished`).

OpenLTH's runner has the same shape ("if its output exists, return").
"""

import math
import os
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import jax
import numpy as np
from absl import logging

from jaxunknowns import distributed, paths, validation
from jaxunknowns.errors import UserError
from jaxunknowns.metrics import (ROWS_FIELD, MetricWriter, check_rows,
                                 read_json_object, rows_to_record,
                                 run_folder, stats, write_json)

RESULT_FILE = "result.json"


def stage_dir(workdir, name: str) -> str:
  """WORKDIR/stages/NAME (NAME may hold '/': nested folders)."""
  return workdir.file("stages", *name.split("/"))


def _redo(path: str) -> str:
  return (f"delete the folder {os.path.dirname(path)} to redo that stage, "
          "or pass --overwrite to rerun the whole experiment")


class MissingField(UserError, KeyError):
  """A field a finished stage's result.json lacks: the file was edited or
  cut after the stage wrote it whole. Still a KeyError for code that asks
  `except KeyError`; main reports it in one line as the user's to fix."""

  def __str__(self):  # KeyError would quote the message.
    return str(self.args[0])


class StageResult(dict):
  """A result read back from result.json: a missing field (at any depth)
  raises MissingField naming the file, not a bare KeyError from deep in an
  experiment. Stage results are data the experiment wrote; there is no
  schema to check them against, so the first read of a missing field is
  where the damage shows."""

  def __init__(self, value, path: str):
    super().__init__({k: _wrap(v, path) for k, v in value.items()})
    self.path = path

  def __missing__(self, key):
    raise MissingField(f"{self.path} is damaged (it has no field {key!r}): "
                       + _redo(self.path))

  def __reduce__(self):  # pickles (Ray) and copies as a plain dict
    return dict, (dict(self),)


def _wrap(value, path):
  if isinstance(value, dict):
    return StageResult(value, path)
  if isinstance(value, list):
    return [_wrap(v, path) for v in value]
  return value


def _read_saved(path: str) -> Optional[Dict[str, Any]]:
  """result.json as written, with its count of metrics rows (ROWS_FIELD)."""
  value = read_json_object(path, _redo(path))
  if value == {}:  # every stage writes some fields: checked before any run
    raise UserError(f"{path} is damaged (an empty object): {_redo(path)}")
  return value


def read_result(path: str, seeds: Optional[Sequence[int]] = None
                ) -> Optional[Dict[str, Any]]:
  """A finished stage's result.json (a StageResult), or None if the stage
  has not finished. It is written atomically, so a damaged one was damaged
  afterwards (a partial copy, an edit): a UserError naming the folder to
  delete: at once if it is no JSON object or an empty one, or a
  train_stage result not shaped as train_stage writes it (`check_trained`;
  `seeds`: the stage's own, where the caller declares them), else on the
  first use of a field it lacks. Without the count of metrics rows that
  run_stage adds: the experiment gets what its stage computed, as on the
  run that computed it (summaries of resumed runs stay the same).

  Read in the shared workdir (paths.shared) on every process: whether a
  stage is done decides whether it runs, so every process must decide
  alike, and a non-main process's scratch folder (new each run) holds no
  stage an earlier run finished; a process that trains while another skips
  joins collectives the other never does (a hang)."""
  value = _read_saved(paths.shared(path))
  if value is None:
    return None
  value.pop(ROWS_FIELD, None)
  if seeds is not None or _is_trained(value):
    check_trained(value, path, seeds)
  return StageResult(value, path)


def check_finished(path: str, counted: Dict[str, int]):
  """Workdir.check's look at a finished stage's result.json before a rerun
  writes anything: readable (read_result), and the run's metrics.jsonl
  still holds the rows it held when the stage finished: the rerun skips the
  stage, and an experiment that reads rows back after its stages (imp's
  early stopping, curves) would build a wrong summary from a cut file.
  `counted`: rows counted so far, by run (one read per run). A result
  without the count (an older run's, a run with no rows then) checks only
  that it is readable."""
  value = _read_saved(path)
  if value is not None and _is_trained(value):
    check_trained(value, path)
  if value is None or ROWS_FIELD not in value:
    return
  run = run_folder(os.path.dirname(path))
  if run is not None and not _finished(run):
    check_rows(run, value[ROWS_FIELD], path, counted)


# Fields only a train_stage result holds, all three (since train_stage was
# written): how Workdir.check, which knows no stage's seeds, tells its
# results from other stages' (bn_stability's "evals" are per run, and it
# has no "seeds").
TRAINED_FIELDS = ("seeds", "evals", "stopped_early")


def _is_trained(value: Mapping[str, Any]) -> bool:
  return all(k in value for k in TRAINED_FIELDS)


def check_trained(value: Mapping[str, Any], path: str,
                  seeds: Optional[Sequence[int]] = None):
  """A UserError naming `path` unless `value` is shaped as train_stage
  writes it: seeds a list of integers (as many as the stage's `seeds`,
  where known), evals {split: {metric: one number per seed}}, measures
  {name: one number or null per seed}, and numbers where it keeps numbers.
  Experiments build their summaries from these lists: a string there (an
  edit) was a TypeError deep in one, and a value too many or too few a
  summary of the wrong seeds, written without a word. Other fields (a
  stage's own additions, bn_grid's timing) are not checked."""

  def damaged(what: str) -> UserError:
    return UserError(f"{path} is damaged ({what}): {_redo(path)}")

  for key in ("seeds", "evals"):
    if key not in value:
      raise damaged(f"it has no field {key!r}")
  saved = value["seeds"]
  if not isinstance(saved, list) or not all(
      validation.is_int(s) for s in saved):
    raise damaged("'seeds' is not a list of integers")
  n = len(saved) if seeds is None else len(seeds)
  if len(saved) != n:
    raise damaged(f"'seeds' lists {len(saved)} seeds, the run has {n}")

  def number(v, none_ok: bool) -> bool:
    return (v is None and none_ok) or validation.is_number(v)

  def per_seed(name: str, values, none_ok: bool):
    if not isinstance(values, list) or len(values) != n or not all(
        number(v, none_ok) for v in values):
      raise damaged(f"{name!r} is not a list of {n} numbers, one per seed")

  evals = value["evals"]
  if not isinstance(evals, dict) or not all(
      isinstance(v, dict) for v in evals.values()):
    raise damaged("'evals' is not {split: {metric: per-seed list}}")
  for split, metrics in evals.items():
    for metric, v in metrics.items():
      per_seed(f"evals.{split}.{metric}", v, none_ok=False)
  measures = value.get("measures", {})
  if not isinstance(measures, dict):
    raise damaged("'measures' is not {name: per-seed list}")
  for measure, v in measures.items():  # null: a bound undefined for a seed
    per_seed(f"measures.{measure}", v, none_ok=True)
  # Summaries add and divide these (steps_per_second is null where no step
  # of the stage was timed).
  for key, none_ok in (("steps", False), ("num_params", False),
                       ("wall_time_s", False), ("steps_per_second", True)):
    if key in value and not number(value[key], none_ok):
      raise damaged(f"{key!r} is not a number")


def in_finished_run(path: str) -> bool:
  """Whether `path` is in a run that has its summary.json: a finished run's
  own files (a finished stage of the article) are not resumed from, and are
  read as they are."""
  run = run_folder(os.path.dirname(path))
  return run is not None and _finished(run)


def _finished(run: str) -> bool:
  from jaxunknowns.workdir import SUMMARY_FILE  # pylint: disable=g-import-not-at-top
  return paths.exists(os.path.join(run, SUMMARY_FILE))


def saved_file(path: str) -> str:
  """`path`, a file a stage's `compute` wrote into its folder, where this
  process reads it back after `run_stage`: its own copy where it computed
  the stage in this run, else the shared workdir's. A non-main process
  writes into a scratch folder of this run only, so a stage that finished
  in an earlier run left its files (as its result.json, which run_stage
  reads there) in the shared workdir alone."""
  return path if paths.exists(path) else paths.shared(path)


def run_stage(folder: str, compute: Callable[[], Dict[str, Any]], *,
              name: str = "",
              seeds: Optional[Sequence[int]] = None) -> Dict[str, Any]:
  """The stage's result: read from folder/result.json if it finished before,
  else `compute()`d (it may resume from checkpoints in `folder`) and kept,
  with the number of rows the run's metrics.jsonl holds now (see
  metrics.ROWS_FIELD; `check_finished` compares). `seeds`: train_stage's,
  which a result read back must have one value each of (`check_trained`)."""
  path = os.path.join(folder, RESULT_FILE)
  # The shared one: every process decides alike.
  done = read_result(path, seeds)
  if done is not None:
    logging.info("[%s] finished before; result in %s", name or folder,
                 paths.shared(path))
    return done
  result = compute()
  paths.makedirs(folder)
  write_json(path, _with_rows(folder, result, rows_to_record(folder)))
  return result


def _with_rows(folder: str, result: Mapping[str, Any],
               rows: Optional[int]) -> Dict[str, Any]:
  if ROWS_FIELD in result:  # read_result would drop the stage's own field
    raise ValueError(f"{folder}: a stage result may not have a field "
                     f"{ROWS_FIELD!r} (the count of metrics rows is kept there)")
  return dict(result) if rows is None else {**result, ROWS_FIELD: rows}


def rewrite_result(folder: str, result: Mapping[str, Any]):
  """Replaces a finished stage's result (a field added after it finished),
  keeping the count of metrics rows it recorded when it finished (rows
  logged since, by later stages, are not the stage's)."""
  path = os.path.join(folder, RESULT_FILE)
  # A non-main process that skipped the stage (finished in an earlier run)
  # has neither its result.json nor its folder in its scratch.
  saved = _read_saved(saved_file(path)) or {}
  paths.makedirs(folder)
  write_json(path, _with_rows(folder, result, saved.get(ROWS_FIELD)))


def train_stage(trainer, *, workdir, name: str,
                labels: Mapping[str, Any], seeds: Sequence[int],
                writer: MetricWriter, steps: int, check_every: int = 0,
                stop: Optional[Callable[[Mapping], bool]] = None,
                measure: Optional[Callable] = None,
                folder: Optional[str] = None,
                callbacks: Sequence = ()) -> Dict[str, Any]:
  """Trains one stage (all seeds at once) and returns its result.

  The stage trains to `steps`, or, when `stop(evals)` says so at one of the
  checks every `check_every` steps, earlier. `measure(trainer, state,
  init_params)` adds analyses of the final state ({name: [R]});
  `callbacks` (trainer.Callback) run during training. The result
  ({steps, evals, measures, wall time}) is the stage's result.json.
  """
  folder = folder or stage_dir(workdir, name)

  def compute():
    t0 = time.time()
    state = trainer.init_state(seeds)
    # The train step donates the state's buffers: copy the init to the host.
    init_params = distributed.fetch(state["params"]) if measure else None
    run_labels = [{**labels, "seed": s} for s in seeds]
    every = check_every if (stop is not None and check_every > 0) else steps
    step, result = 0, None
    while True:
      target = min(steps, (step // every + 1) * every)
      result = trainer.fit(state, steps=target, data_seeds=seeds,
                           writer=writer, run_labels=run_labels,
                           checkpoint_dir=os.path.join(folder, "checkpoints"),
                           callbacks=callbacks, description=name)
      state = result.state
      step = int(distributed.first_value(state["step"]))
      # Judged only at a check: a fit that resumed past `target` (from a
      # checkpoint a SIGTERM saved between checks) goes on to the next one,
      # where an uninterrupted run judges.
      if step >= steps or (step == target and stop is not None
                           and stop(result.evals)):
        break
    out = {"name": name, "labels": dict(labels), "seeds": list(seeds),
           "steps": step, "stopped_early": step < steps,
           "evals": {split: {k: np.asarray(v).tolist() for k, v in vals.items()}
                     for split, vals in result.evals.items()},
           "num_params": trainer.param_counts["total"],
           # Each fit resumes from the last one's checkpoint, so the last
           # fit's pace covers the whole stage (and earlier attempts).
           "steps_per_second": result.steps_per_second}
    if measure is not None:
      measures = measure(trainer, state, init_params)
      out["measures"] = {k: [finite_or_none(x) for x in np.asarray(v).tolist()]
                         for k, v in measures.items()}
    out["wall_time_s"] = time.time() - t0
    return out

  return run_stage(folder, compute, name=name, seeds=seeds)


def finite_or_none(x) -> Optional[float]:
  x = float(x)
  return x if math.isfinite(x) else None


def finite_stats(values: Sequence[Optional[float]]) -> Dict[str, Any]:
  """{mean, std, per_seed} over the finite values (None where a bound is
  undefined); mean and std are None when no value is finite."""
  per_seed = [None if v is None or not math.isfinite(v) else float(v)
              for v in values]
  ok = [v for v in per_seed if v is not None]
  if not ok:
    return {"mean": None, "std": None, "per_seed": per_seed}
  s = stats(ok)
  s["per_seed"] = per_seed
  return s


def all_below(split: str, metric: str, threshold: float):
  """A `stop` predicate: every run's `metric` on `split` <= threshold."""
  def stop(evals):
    return bool(np.all(np.asarray(evals[split][metric]) <= threshold))
  return stop
