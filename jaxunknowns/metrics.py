"""The one metric writer: `metrics.jsonl`, TensorBoard event files, statistics.

`metrics.jsonl` holds one JSON object per line:
    {"step": 500, "split": "test", "seed": 3, "loss": 0.41, "accuracy": 0.88}
Splits: "minibatch" (training-step metrics averaged since the previous row,
plus l2 norms of grads, params and updates), and the evaluated splits
"train", "validation", "test" (eval mode, whole split).
plus whatever labels the experiment attaches to a run (an IMP run adds
"level" and "variant"). TensorBoard gets the mean over seeds of each group of
runs (tensorboardX writes event files without TensorFlow).
Only process 0 writes (multi-host runs share one workdir). Every file goes
through `paths`, so the workdir may be on an object store (gs://).
"""

import json
import math
import os
import shutil
import tempfile
import time
import uuid
import weakref
from typing import (Any, Callable, Dict, Iterable, List, Mapping, Optional,
                    Sequence, Union)

import numpy as np
from absl import logging

from jaxunknowns import paths
from jaxunknowns.errors import UserError

METRICS_FILE = "metrics.jsonl"


def sample_std(values) -> float:
  """The sample standard deviation (ddof = 1) over seeds; 0 for one seed,
  and for equal values (numpy's mean of 0.1, 0.1, 0.1 is not 0.1, and the
  std read 1.7e-17). Every ± in this project is this (the population std
  is 18% low at n = 3)."""
  arr = np.asarray(values, np.float64)
  if arr.size < 2 or np.all(arr == arr.flat[0]):
    return 0.0
  return float(arr.std(ddof=1))


def stats(values: Sequence[float]) -> Dict[str, Any]:
  """{mean, std, per_seed} of one metric over seeds (sample std, ddof = 1)."""
  values = [float(v) for v in values]
  arr = np.asarray(values, np.float64)
  return {"mean": float(arr.mean()), "std": sample_std(arr),
          "per_seed": values}


def format_stats(values: Sequence[float], scale: float = 1.0,
                 digits: int = 2) -> str:
  arr = np.asarray(values, np.float64) * scale
  if len(arr) == 1:
    return f"{arr[0]:.{digits}f}"
  return f"{arr.mean():.{digits}f}±{sample_std(arr):.{digits}f}"


def _jsonable(v):
  v = float(v)
  return v if math.isfinite(v) else str(v)


# Writers with an open TensorBoard file: its writer's threads and files.
_OPEN = weakref.WeakSet()


def open_now() -> set:
  return set(_OPEN)


def close_opened_since(before) -> None:
  """Closes every MetricWriter opened since `before` (`open_now()`): a run
  that stops on an error or Ctrl-C leaves its TensorBoard writer open (2
  threads and 3 files each, for the rest of a notebook's session)."""
  for writer in [w for w in list(_OPEN) if w not in before]:
    try:
      writer.close()
    except OSError as e:  # a full disk: the run's own error says so
      logging.info("closing the TensorBoard file of %s: %s", writer.workdir, e)


class _EventFile:
  """A TensorBoard event file written in the calling thread. tensorboardX's
  SummaryWriter writes from a thread of its own: when a full disk killed
  that thread, the next events filled its queue and the run hung forever
  (with the thread's traceback on stderr). Here a failed write raises where
  the row was written, and `main` says it in one line."""

  def __init__(self, folder: str):
    # pylint: disable=g-import-not-at-top
    from tensorboardX.event_file_writer import EventsWriter
    from tensorboardX.proto import event_pb2
    from tensorboardX.summary import scalar
    os.makedirs(folder, exist_ok=True)
    # The file is named by the second it opens and the host: a resume in
    # the same second would truncate the earlier attempt's file.
    self._writer = EventsWriter(os.path.join(folder, "events"),
                                filename_suffix=f".{uuid.uuid4().hex[:8]}")
    self._event, self._scalar = event_pb2.Event, scalar
    self._flushed = time.monotonic()

  def add_scalar(self, tag: str, value: float, step: int):
    self._writer.write_event(self._event(
        summary=self._scalar(tag, value), step=int(step),
        wall_time=time.time()))

  def flush_every(self, seconds: float):
    """Flushes when `seconds` have passed since the last flush: a running
    job's curves show in TensorBoard without a flush per row."""
    if time.monotonic() - self._flushed >= seconds:
      self.flush()

  def flush(self):
    self._writer.flush()
    self._flushed = time.monotonic()

  def close(self):
    self._writer.close()


class MetricWriter:
  """Appends per-run metric rows to metrics.jsonl and TensorBoard."""

  def __init__(self, workdir: str, tensorboard: bool = True):
    self.workdir = workdir
    self.path = os.path.join(workdir, METRICS_FILE)
    # Every process writes: in a multi-process run the workdir of processes
    # other than 0 is a private scratch folder (see workdir.Workdir).
    self._tb = None
    self._tb_local = None  # where tensorboardX writes, if not the workdir
    self._want_tb = tensorboard
    paths.makedirs(workdir)

  def _tensorboard(self):
    """Created on the first row, so a run that fails before training leaves
    no event file behind."""
    if self._tb is None and self._want_tb:
      self._want_tb = False
      try:
        folder = os.path.join(self.workdir, "tensorboard")
        if not paths.is_local(folder):
          # tensorboardX writes local files only (its own GCS writer needs
          # another client library and credentials of its own): it writes
          # into a local folder that flush() and close() copy to the workdir.
          self._tb_local = tempfile.mkdtemp(prefix="jaxunknowns_tb_")
        self._tb = _EventFile(self._tb_local or folder)
        _OPEN.add(self)
      except ImportError:  # TensorBoard files are a nicety, not a requirement.
        self._tb = None
    return self._tb

  def write(self, step: int, split: str, run_labels: Sequence[Mapping],
            values: Mapping[str, Sequence[float]]):
    """One row per run: values[name][r] is run r's value of `name`.

    A value named like one of the run's labels is left out: the label names
    the run, and `rewind` and every reader find the run's rows by it. (A
    value "lr" in a run labelled by its learning rate, as in
    edge_of_stability, replaced the label 0.05 by float32's 0.0500000007:
    the rewind of a resumed fit missed those rows, and they were doubled.
    The trainer therefore logs its per-step rate as "learning_rate".)"""
    names = sorted(values)
    lines = []
    for r, labels in enumerate(run_labels):
      row = {"step": int(step), "split": split, **labels}
      row.update({n: _jsonable(values[n][r]) for n in names
                  if n not in labels})
      lines.append(json.dumps(row) + "\n")
    paths.append_text(self.path, "".join(lines))
    if self._tensorboard() is not None:
      for group, members in _groups(run_labels).items():
        prefix = f"{group}/" if group else ""
        for n in names:
          vals = np.asarray([values[n][r] for r in members], np.float64)
          if np.isfinite(vals).all():  # a diverged run's loss is in the rows
            self._tb.add_scalar(f"{prefix}{split}/{n}", float(vals.mean()),
                                step)
      self._tb.flush_every(30.0)

  def rewind(self, labels: Mapping[str, Any], step: int,
             until: Optional[int] = None):
    """Drops rows of the runs matching `labels` logged after `step` (and at
    or before `until`, if given).

    `Trainer.fit` calls it at the start of every resumable fit with its
    start and end steps: the rows it is about to write, left by an attempt
    that was interrupted (before or after a checkpoint), are not duplicated,
    and rows of a later fit with the same labels (e.g. fine-tuning past the
    end) are kept.
    """
    last = float("inf") if until is None else until
    self._drop(lambda row: step < row["step"] <= last and _matches(row, labels))

  def rewrite(self, step: int, split: str, run_labels: Sequence[Mapping],
              values: Mapping[str, Sequence[float]]):
    """`write`, for rows a stage writes outside `Trainer.fit` (a measure of
    its final state) that a rerun writes again: a stage killed after them,
    before its result.json landed, is redone, and fit's rewind, resumed at
    the end step, drops nothing. The runs' rows of this step and split from
    the interrupted attempt are dropped first."""
    self._drop(lambda row: row["step"] == step and row.get("split") == split
               and any(_matches(row, labels) for labels in run_labels))
    self.write(step, split, run_labels, values)

  def _drop(self, dropped: Callable[[Mapping[str, Any]], bool]):
    drop_rows(self.path, dropped)

  def flush(self):
    if self._tb is not None:
      self._tb.flush()
      self._copy_tensorboard()

  def close(self):
    _OPEN.discard(self)
    tb, self._tb = self._tb, None  # closed once, even if closing fails
    if tb is not None:
      try:
        tb.close()
        self._copy_tensorboard()
      finally:
        if self._tb_local:
          shutil.rmtree(self._tb_local, ignore_errors=True)

  def _copy_tensorboard(self):
    if self._tb_local:
      paths.copy_tree(self._tb_local, os.path.join(self.workdir, "tensorboard"))


def _matches(row: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
  return all(row.get(k) == v for k, v in labels.items())


def _groups(run_labels: Sequence[Mapping]) -> Dict[str, List[int]]:
  """Runs grouped by every label except the seed ('' when only seeds)."""
  groups: Dict[str, List[int]] = {}
  for r, labels in enumerate(run_labels):
    key = "/".join(f"{k}_{v}" for k, v in sorted(labels.items())
                   if k != "seed")
    groups.setdefault(key, []).append(r)
  return groups


def drop_rows(path: str, dropped: Callable[[Mapping[str, Any]], bool] = (
    lambda row: False)):
  """Rewrites metrics.jsonl at `path` without the rows `dropped` says, and
  without torn or damaged lines (alone, as a finished run does: a line torn
  by a kill that no later fit rewound stayed in the file for good)."""
  if not paths.exists(path):
    return
  with paths.open_file(path, "rb") as f:
    text = f.read()  # once: every fit starts here, on a file that grows
  kept = "".join(json.dumps(row) + "\n" for row in _rows(text, path)
                 if not dropped(row))
  # Rows round-trip through JSON: with nothing to drop (no row, no torn
  # line) the text is the same, and the file stays as it is, time and all
  # (a resume that then fails leaves the workdir as it was).
  if text != kept.encode():
    paths.write_atomic(path, kept)


# A finished stage's result.json and a checkpoint's timing.json record how
# many rows the run's metrics.jsonl held when they were written (torn lines
# not counted). No flow of a run takes the file below such a count: a
# resumed fit rewinds only rows past its checkpoint, written after it; a
# stage rewinds or rewrites only its own rows, written after the stages
# before it finished, and rows it drops and logs again before its fit
# (edge_of_stability's step 0) are back before that fit resumes; a finished
# file loses only torn lines. So fewer rows than a record says is damage
# from outside (a partial copy, a deleted file), and a rerun that skips the
# work behind the record would read wrong rows back, and exit 0.
ROWS_FIELD = "metrics_jsonl_rows"


def run_folder(folder: str) -> Optional[str]:
  """The workdir of the run `folder` is in: the nearest folder, `folder` or
  up from it, that holds the config.json every run writes first (a stage of
  the article is a run of its own). None outside a run: a sweep's scratch
  folder, the scratch workdir of a process other than 0."""
  from jaxunknowns.workdir import CONFIG_FILE  # pylint: disable=g-import-not-at-top
  folder = paths.absolute(folder)
  while True:
    if paths.exists(os.path.join(folder, CONFIG_FILE)):
      return folder
    parent = os.path.dirname(folder)
    if parent == folder or not paths.is_local(folder) and "/" not in (
        parent.split("://", 1)[-1]):  # past / or a bucket's top folder
      return None
    folder = parent


def count_rows(workdir: str) -> int:
  """How many rows metrics.jsonl holds (torn or damaged lines not counted);
  0 without the file."""
  path = os.path.join(workdir, METRICS_FILE)
  if not paths.exists(path):
    return 0
  with paths.open_file(path, "rb") as f:
    return len(_rows(f.read(), path, quiet=True))


# In a vmapped group's scratch folder (hparams.py): the names of its runs,
# whose workdirs are the scratch folder's siblings and hold the group's rows.
GROUP_RUNS_FILE = "runs.json"


def group_runs(scratch: str) -> Optional[List[str]]:
  """The run names a vmapped group's scratch folder records
  (GROUP_RUNS_FILE); None where it records none (a folder of an earlier
  version) or the file is unreadable."""
  try:
    names = json.loads(paths.read_text(os.path.join(scratch, GROUP_RUNS_FILE)))
  except (OSError, ValueError):
    return None
  ok = isinstance(names, list) and all(isinstance(n, str) for n in names)
  return names if ok else None


def group_members(folder: str) -> Dict[str, str]:
  """{run name: workdir} of the vmapped group whose scratch folder holds
  `folder` (its checkpoints/); {} elsewhere."""
  scratch = os.path.dirname(paths.absolute(folder))
  return {n: os.path.join(os.path.dirname(scratch), n)
          for n in group_runs(scratch) or ()}


def rows_to_record(folder: str) -> Optional[Union[int, Dict[str, int]]]:
  """The ROWS_FIELD value for a record written in `folder` now: the run's
  row count, or for a vmapped group's checkpoints each member's; None where
  there is nothing to record (outside a run, or no row yet): the record is
  then written as before."""
  run = run_folder(folder)
  if run is not None:
    return count_rows(run) or None
  counts = {n: count_rows(w) for n, w in group_members(folder).items()}
  return counts if any(counts.values()) else None


def check_recorded_rows(folder: str, recorded: Any, record: str):
  """`check_rows` of what `rows_to_record(folder)` returned when `record`
  was written: a group's members one by one. A member whose workdir holds
  no run (deleted, to train it again) is not checked: it gets none of the
  group's progress (hparams.hand_out)."""
  from jaxunknowns.workdir import CONFIG_FILE  # pylint: disable=g-import-not-at-top
  if not isinstance(recorded, dict):
    check_rows(run_folder(folder), recorded, record)
    return
  members = group_members(folder)
  for name, rows in recorded.items():
    workdir = members.get(name)
    if workdir and paths.exists(os.path.join(workdir, CONFIG_FILE)):
      check_rows(workdir, rows, record)


class RowsCut(UserError):
  """A run's metrics.jsonl holds fewer rows than a record says it held."""


def check_rows(run: Optional[str], recorded: Any, record: str,
               counted: Optional[Dict[str, int]] = None):
  """A UserError if the metrics.jsonl of the run in folder `run` (None:
  none) holds fewer rows than `record` (a file) says it held (`recorded`).
  A record that is no count (from an edit) checks nothing. `counted`:
  counts already made, by run."""
  if run is None or not isinstance(recorded, int) or isinstance(
      recorded, bool):
    return
  if counted is None or run not in counted:
    rows = count_rows(run)
    if counted is not None:
      counted[run] = rows
  else:
    rows = counted[run]
  if rows < recorded:
    path = os.path.join(run, METRICS_FILE)
    held = f"holds {rows} metric rows" if paths.exists(path) else "is missing"
    raise RowsCut(
        f"{path} {held}, but it held {recorded} when {record} was written: it "
        f"was cut or deleted since, and the run would read wrong results "
        f"back from it; pass --overwrite to rerun the experiment from "
        f"scratch, or rerun it into a new --workdir")


def read_metrics(workdir: str) -> List[Dict[str, Any]]:
  """The rows of metrics.jsonl. A line that is no row (torn by a kill
  mid-append, or damaged later: bytes that are not UTF-8, JSON that is not
  an object with an integer step) is skipped, and the resumed run's rewind
  drops it; every reader (rewind, reports) may index row["step"]."""
  path = os.path.join(workdir, METRICS_FILE)
  if not paths.exists(path):
    return []
  with paths.open_file(path, "rb") as f:
    return _rows(f.read(), path)


def _rows(data: bytes, path: str,
          quiet: bool = False) -> List[Dict[str, Any]]:
  rows, skipped = [], 0
  for line in data.decode("utf-8", errors="replace").splitlines():
    try:
      row = json.loads(line)
    except json.JSONDecodeError:
      row = None
    if (isinstance(row, dict) and isinstance(row.get("step"), int) and
        not isinstance(row["step"], bool)):
      rows.append(row)
    else:
      skipped += 1
  if skipped and not quiet:
    logging.warning("%s: skipped %d line(s) that are not metric rows (torn "
                    "or damaged)", path, skipped)
  return rows


def select(rows: Iterable[Mapping], **labels) -> List[Mapping]:
  return [r for r in rows if all(r.get(k) == v for k, v in labels.items())]


def curves(rows: Iterable[Mapping], split: str, name: str,
           **labels) -> Dict[int, Dict[int, float]]:
  """{seed: {step: value}} of one metric, for plotting."""
  out: Dict[int, Dict[int, float]] = {}
  for row in select(rows, split=split, **labels):
    if name in row:
      out.setdefault(row.get("seed", 0), {})[row["step"]] = row[name]
  return out


def write_json(path: str, obj: Any):
  """Writes atomically (paths.write_atomic), so a killed run never leaves half
  a file. (In a multi-process run, processes other than 0 write into their
  scratch workdir: see workdir.Workdir.)"""
  paths.write_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str) -> Optional[Any]:
  if not paths.exists(path):
    return None
  return json.loads(paths.read_text(path))


def read_json_object(path: str, fix: str,
                     what: str = "a JSON object") -> Optional[Dict[str, Any]]:
  """The JSON object a run wrote at `path`, or None if there is none. Runs
  write atomically, so a torn or wrong-kind one was damaged afterwards (an
  edit, a partial copy): a UserError naming it and saying what to do (`fix`)."""
  if not paths.exists(path):
    return None
  try:
    value = json.loads(paths.read_text(path))
  except (OSError, ValueError):
    value = None
  if not isinstance(value, dict):
    raise UserError(f"{path} is damaged (not {what}): {fix}")
  return value
