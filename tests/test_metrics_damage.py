"""metrics.jsonl cut or deleted from outside, in a workdir whose stages are
done: the rerun skips that work and reads rows back (imp's early stopping,
bn_placement's steps to target), so it used to build a wrong summary and
exit 0. A finished stage's result.json and a checkpoint's timing.json now
record how many rows the file held (metrics.ROWS_FIELD); fewer is one line
and exit 2, with the workdir as it was. The flows that drop rows themselves
(a resumed fit's rewind, a stage's rewrite, a torn line dropped) never go
below a record. imp's levels (fits resumed at their end, checked against
their checkpoint's record) are tried in test_imp.py.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from run_helpers import (ROOT, assert_one_line_error, read_json,
                         run_in_process, snapshot)

from jaxunknowns import metrics, stages
from jaxunknowns.checkpoints import Checkpoints
from jaxunknowns.errors import UserError
from jaxunknowns.metrics import MetricWriter

# metrics.ROWS_FIELD, spelt out: the tests run (and fail) on code without it.
ROWS_FIELD = "metrics_jsonl_rows"

ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")


def a_run(tmp_path):
  """A run's workdir as `Workdir.open` leaves it: its config.json first."""
  (tmp_path / "config.json").write_text('{"experiment": "train"}\n')
  return MetricWriter(str(tmp_path), tensorboard=False)


def write_rows(writer, stage, steps=(10, 20)):
  labels = [{"stage": stage, "seed": s} for s in (0, 1)]
  for step in steps:
    writer.write(step, "test", labels, {"accuracy": [0.5, 0.6]})


def cut(path, keep):
  lines = Path(path).read_text().splitlines(keepends=True)
  Path(path).write_text("".join(lines[:keep]))


def finished_stage(tmp_path, writer, name):
  folder = str(tmp_path / "stages" / name)
  write_rows(writer, name)
  return folder, stages.run_stage(folder, lambda: {"stage": name})


def test_a_stage_records_its_rows_and_its_rerun_checks_them(tmp_path):
  writer = a_run(tmp_path)
  folder, result = finished_stage(tmp_path, writer, "a")
  path = os.path.join(folder, "result.json")
  assert read_json(path) == {"stage": "a", ROWS_FIELD: 4}
  # The experiment sees what it computed, on the first run as on a rerun.
  assert result == stages.read_result(path) == {"stage": "a"}
  stages.check_finished(path, {})
  cut(tmp_path / "metrics.jsonl", 3)
  with pytest.raises(UserError) as info:
    stages.check_finished(path, {})
  message = str(info.value)
  assert "\n" not in message
  for needle in (str(tmp_path / "metrics.jsonl"), "holds 3 metric rows",
                 "held 4", path, "--overwrite"):
    assert needle in message, (needle, message)
  os.remove(tmp_path / "metrics.jsonl")
  with pytest.raises(UserError, match="metrics.jsonl is missing"):
    stages.check_finished(path, {})


def test_what_is_not_checked(tmp_path):
  """A stage of a run without rows writes its result.json as before; an
  older run's result.json (no count) resumes as before; a finished run (an
  article's stage) is not resumed, so its file is not checked."""
  a_run(tmp_path)
  folder = str(tmp_path / "stages" / "no_rows")
  stages.run_stage(folder, lambda: {"x": 1})
  assert read_json(os.path.join(folder, "result.json")) == {"x": 1}
  old = tmp_path / "stages" / "old" / "result.json"
  old.parent.mkdir(parents=True)
  old.write_text('{"x": 1}\n')
  stages.check_finished(str(old), {})
  recorded = tmp_path / "stages" / "recorded" / "result.json"
  recorded.parent.mkdir(parents=True)
  recorded.write_text(json.dumps({"x": 1, ROWS_FIELD: 5}))
  with pytest.raises(UserError):
    stages.check_finished(str(recorded), {})
  (tmp_path / "summary.json").write_text("{}\n")
  stages.check_finished(str(recorded), {})


def test_rows_the_run_drops_itself_are_no_damage(tmp_path):
  """After stage a finished: stage b's rows, its rewinds and rewrites of
  them (an interrupted attempt's), a torn last line and the finished run's
  drop_rows of it. The record of a (4 rows) holds at every point, and
  rewrite_result (bn_grid's timing, added later) keeps it."""
  writer = a_run(tmp_path)
  folder, _ = finished_stage(tmp_path, writer, "a")
  path = os.path.join(folder, "result.json")
  write_rows(writer, "b", steps=(10, 20, 30))
  writer.rewind({"stage": "b"}, 10)          # a fit resumed from step 10
  writer.rewind({"stage": "b"}, -1, until=0)  # edge_of_stability's step 0
  writer.rewrite(10, "test", [{"stage": "b", "seed": 0}], {"accuracy": [0.7]})
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 40, "split": "te')  # a kill mid-append
  stages.check_finished(path, {})
  metrics.drop_rows(str(tmp_path / "metrics.jsonl"))
  stages.check_finished(path, {})
  stages.rewrite_result(folder, {**stages.read_result(path), "more": 1})
  assert read_json(path) == {"stage": "a", "more": 1, ROWS_FIELD: 4}


def checkpointed(tmp_path, writer, step):
  """A fit's checkpoint at `step` after its rows up to it, as Trainer.fit
  keeps one (its timing.json too)."""
  ck = Checkpoints(str(tmp_path / "stages" / "fit" / "checkpoints"))
  write_rows(writer, "fit", steps=range(10, step + 1, 10))
  ck.save(step, {"w": np.full(3, float(step))})
  ck.wait()
  ck.keep_timing(step, step, 1.0)
  ck.close()


def restored(tmp_path):
  ck = Checkpoints(str(tmp_path / "stages" / "fit" / "checkpoints"))
  try:
    return ck.restore_latest({"w": np.zeros(3)})
  finally:
    ck.close()


def test_a_resumed_fit_checks_the_rows_behind_its_checkpoint(tmp_path):
  """imp's levels are fits, resumed at their end on a rerun: the rows up to
  the checkpoint it resumes from must still be there."""
  writer = a_run(tmp_path)
  checkpointed(tmp_path, writer, 20)
  timing = tmp_path / "stages" / "fit" / "checkpoints" / "timing.json"
  assert read_json(timing)[ROWS_FIELD] == 4
  write_rows(writer, "fit", steps=(30,))  # past the checkpoint: killed there
  step, _ = restored(tmp_path)
  assert step == 20
  writer.rewind({"stage": "fit"}, 20)  # the resumed fit's rewind
  assert restored(tmp_path)[0] == 20
  cut(tmp_path / "metrics.jsonl", 3)
  with pytest.raises(UserError) as info:
    restored(tmp_path)
  assert str(timing) in str(info.value) and "--overwrite" in str(info.value)
  # A record of a later checkpoint that never landed (the kill came before
  # orbax finished it) counts rows the resumed fit rewinds: not checked.
  record = read_json(timing)
  timing.write_text(json.dumps({**record, "step": 40, ROWS_FIELD: 99}))
  assert restored(tmp_path)[0] == 20


def cli(config, workdir, *flags):
  return subprocess.run(
      [sys.executable, "-m", "jaxunknowns.main", f"--config={config}",
       f"--workdir={workdir}", *flags],
      cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)


def test_a_cut_metrics_file_stops_the_rerun_of_a_finished_bn_placement(
    tmp_path):
  """bn_placement (the cheapest run that reads rows back after its stages:
  steps to target accuracy) whose report was never written (summary.json
  absent: a kill mid-report) and whose metrics.jsonl was then cut in half:
  the rerun read steps_to_target [] where [10, 10] had been, and exited 0."""
  from jaxunknowns import config_loading  # pylint: disable=g-import-not-at-top
  spec = "configs/bn_placement.py:runlocal"
  run_in_process(config_loading.load_config(str(ROOT / spec)), tmp_path)
  os.remove(tmp_path / "summary.json")
  rows = tmp_path / "metrics.jsonl"
  cut(rows, len(rows.read_text().splitlines()) // 2)
  before = snapshot(tmp_path)
  proc = cli(spec, tmp_path)
  assert_one_line_error(proc, str(rows), "result.json", "--overwrite")
  assert snapshot(tmp_path) == before  # the workdir as it was
