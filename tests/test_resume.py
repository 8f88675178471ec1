"""Kill points of `Trainer.fit`: a run ended abruptly (os._exit, as kill -9)
at a chosen point, then rerun, ends identical to a run never interrupted.

The kill point is made deterministic by JAXUNKNOWNS_EXIT_AT=POINT:STEP (see
trainer.exit_if_asked): the process exits with no cleanup right there.
"""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import forkserver  # pylint: disable=g-bad-import-order
from run_helpers import read_json, run_in_process

ROOT = Path(__file__).resolve().parents[1]
# The subprocesses share the session's persistent XLA cache (its variables
# are in os.environ: tests/conftest.py): same executables, less compile time.
ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")


def cli(config, workdir, *flags, exit_at=None):
  env = dict(ENV, JAXUNKNOWNS_EXIT_AT=exit_at) if exit_at else ENV
  return subprocess.run(
      [sys.executable, "-m", "jaxunknowns.main", f"--config={config}",
       f"--workdir={workdir}", *flags],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def rows_of(workdir):
  with open(Path(workdir) / "metrics.jsonl") as f:
    return [json.loads(line) for line in f]


def row_key(row):
  """(step, split, labels): what identifies a row."""
  return tuple(sorted((k, v) for k, v in row.items()
                      if k in ("step", "split") or not isinstance(v, float)))


def measured(obj):
  """A summary without its timings (wall time, steps per second)."""
  if isinstance(obj, dict):
    return {k: measured(v) for k, v in obj.items()
            if k not in ("wall_time_s", "steps_per_second")}
  if isinstance(obj, list):
    return [measured(v) for v in obj]
  return obj


def killed_then_rerun(tmp_path, config, flags, exit_at):
  killed, straight = tmp_path / "killed", tmp_path / "straight"
  first = cli(config, killed, *flags, exit_at=exit_at)
  assert first.returncode == 137, first.stderr[-4000:]  # really cut short
  assert not (killed / "summary.json").exists()
  rerun = cli(config, killed, *flags)
  assert rerun.returncode == 0, rerun.stderr[-6000:]
  reference = cli(config, straight, *flags)
  assert reference.returncode == 0, reference.stderr[-6000:]
  return killed, straight, rerun.stderr


def assert_rows_once(workdir):
  keys = [row_key(r) for r in rows_of(workdir)]
  duplicated = sorted({k for k in keys if keys.count(k) > 1})
  assert not duplicated, duplicated[:5]


def assert_same_rows(killed, straight):
  assert_rows_once(killed)
  rows, want = rows_of(killed), rows_of(straight)
  assert sorted(rows, key=row_key) == sorted(want, key=row_key)


def test_killed_before_the_first_checkpoint_writes_no_duplicate_rows(tmp_path):
  """Rows logged before the kill (steps 10 and 20, no checkpoint yet) are
  written again by the rerun, which starts from step 0: not twice."""
  killed, straight, _ = killed_then_rerun(
      tmp_path, "configs/train.py:mnist1d_mlp,runlocal",
      ("--config.seeds=2", "--config.train.steps=40",
       "--config.train.checkpoint_every=20"),
      exit_at="logged:20")
  assert_same_rows(killed, straight)
  got, want = (read_json(w / "summary.json") for w in (killed, straight))
  assert got["final"] == want["final"]  # exactly equal floats on CPU


def test_killed_between_checkpoint_and_snapshot_at_the_rewind_step(tmp_path):
  """The checkpoint at the rewind step k landed, the process died: the rerun
  resumes after k and must still find the snapshot at k to rewind to."""
  killed, straight, log = killed_then_rerun(
      tmp_path, "configs/imp.py:mnist1d,runlocal",
      ("--config.seeds=2", "--config.prune.levels=1",
       "--config.prune.rewind_step=20", "--config.train.checkpoint_every=20"),
      exit_at="checkpointed:20")
  assert "resuming from the checkpoint at step 20" in log
  got, want = (read_json(w / "summary.json") for w in (killed, straight))
  # Exactly equal floats on CPU.
  assert measured(got["levels"]) == measured(want["levels"])
  assert_same_rows(killed, straight)


def test_rewind_drops_only_the_rows_a_fit_is_about_to_write(tmp_path):
  """A fit over (10, 20] drops its own leftover rows, and keeps those of
  other runs and of a later fit with the same labels (fine-tuning to 30)."""
  from jaxunknowns.metrics import MetricWriter  # pylint: disable=g-import-not-at-top
  writer = MetricWriter(str(tmp_path), tensorboard=False)
  runs = [{"arm": "a", "seed": 0}, {"arm": "b", "seed": 0}]
  for step in (10, 20, 30):
    writer.write(step, "test", runs, {"loss": [step, -step]})
  writer.rewind({"arm": "a"}, 10, until=20)
  assert [(r["step"], r["arm"]) for r in rows_of(tmp_path)] == [
      (10, "a"), (10, "b"), (20, "b"), (30, "a"), (30, "b")]


def test_rewind_drops_damaged_lines_instead_of_a_traceback(tmp_path):
  """A resume whose metrics.jsonl holds a line that is no row ({}, a bare
  number, bytes that are not UTF-8) ended in KeyError / TypeError /
  UnicodeDecodeError tracebacks in the rewind; such a line is now skipped,
  as a torn one always was, and the rewind leaves only the rows."""
  from jaxunknowns.metrics import MetricWriter, read_metrics  # pylint: disable=g-import-not-at-top
  writer = MetricWriter(str(tmp_path), tensorboard=False)
  writer.write(10, "test", [{"seed": 0}], {"loss": [1.0]})
  with open(tmp_path / "metrics.jsonl", "ab") as f:
    f.write(b'{}\n7\n{"step": "x"}\n\xff\xfe garbage\n{"step": 2')
  writer.write(20, "test", [{"seed": 0}], {"loss": [2.0]})
  assert [r["step"] for r in read_metrics(str(tmp_path))] == [10]
  writer.rewind({"seed": 0}, 10)
  assert [r["step"] for r in rows_of(tmp_path)] == [10]


class _Killed(BaseException):
  """Ends a run where a kill would (no `except Exception` catches it)."""


def test_killed_while_writing_the_report_is_not_finished(tmp_path,
                                                          monkeypatch):
  """A run killed while its report was drawn (figures take seconds) had
  written summary.json, which marks a run finished: its rerun printed
  'already finished' and report.md was never written. summary.json is now
  written after the report, and the rerun writes both."""
  from jaxunknowns import config_loading, experiments  # pylint: disable=g-import-not-at-top
  config = config_loading.load_config(
      str(ROOT / "configs/train.py:mnist1d_mlp,runlocal"),
      {"train.steps": 20, "train.eval_every": 10})

  def killed(*args):
    del args
    raise _Killed()

  with monkeypatch.context() as patch:
    patch.setattr(experiments, "write_report", killed)
    try:
      run_in_process(config, tmp_path)
    except _Killed:
      pass
  assert not (tmp_path / "summary.json").exists()
  assert run_in_process(config, tmp_path) is not None  # not 'already finished'
  assert (tmp_path / "report.md").is_file()
  assert (tmp_path / "summary.json").is_file()


def killed_at_result(monkeypatch, folder):
  """Makes the first write of FOLDER/result.json raise _Killed: the stage
  did its work (rows included), and died before its result landed."""
  from jaxunknowns import stages  # pylint: disable=g-import-not-at-top
  write, seen = stages.write_json, []

  def write_json(path, obj):
    if path.endswith(f"{folder}/result.json") and not seen:
      seen.append(path)
      raise _Killed()
    write(path, obj)

  monkeypatch.setattr(stages, "write_json", write_json)
  return seen


# (config, overrides, the stage folder whose result.json the kill precedes):
# stages that write rows after their fit (sam, as sharpness and imp's linear
# mode connectivity do: measures of the final state) or train without
# checkpoints (mode_connectivity's curves).
ROWS_THEN_RESULT = {
    "sam": ("configs/sam.py:fashion_lenet,runlocal", {"compare": ("sgd",)},
            "arms/sgd"),
    "mode_connectivity": ("configs/mode_connectivity.py:mnist1d_mlp,runlocal",
                          {"curve.kinds": ("bezier",)}, "curves/bezier"),
}


@pytest.mark.parametrize("name", sorted(ROWS_THEN_RESULT))
def test_stage_killed_before_its_result_writes_its_rows_once(
    tmp_path, monkeypatch, name):
  """A stage killed after writing its rows, before its result.json landed,
  is redone by the rerun, which wrote those rows a second time (sam's 'end'
  rows: its fit, resumed at the end step, rewinds nothing;
  mode_connectivity's curve rows: the curve trains again from step 0). Now
  each row is there once."""
  from jaxunknowns import config_loading  # pylint: disable=g-import-not-at-top
  spec, overrides, folder = ROWS_THEN_RESULT[name]
  config = config_loading.load_config(str(ROOT / spec), overrides)
  with monkeypatch.context() as patch:
    seen = killed_at_result(patch, folder)
    with pytest.raises(_Killed):
      run_in_process(config, tmp_path)
  assert seen
  run_in_process(config, tmp_path)
  assert_rows_once(tmp_path)


def test_rewind_finds_rows_of_runs_labelled_by_their_lr(tmp_path):
  """Runs labelled by their learning rate (edge_of_stability's stages) also
  log the trainer's per-step "lr", which overwrote the label in their
  minibatch rows (0.05 became float32's 0.05000000074505806): a fit resumed
  after a kill before its first checkpoint missed those rows in its rewind
  and wrote them a second time."""
  from jaxunknowns import config_loading, runs  # pylint: disable=g-import-not-at-top
  from jaxunknowns.metrics import MetricWriter  # pylint: disable=g-import-not-at-top
  from jaxunknowns.trainer import Callback  # pylint: disable=g-import-not-at-top
  config = config_loading.load_config(
      str(ROOT / "configs/train.py:mnist1d_mlp,runlocal"),
      {"optim.lr": 0.05, "train.checkpoint_every": 0})
  trainer = runs.build_trainer(config)
  writer = MetricWriter(str(tmp_path), tensorboard=False)
  labels, attempts = [{"lr": 0.05, "seed": 0}], []

  def killed_at_10(trainer_, state, step):
    del trainer_, state
    if step == 10 and not attempts:  # after the rows of step 10
      attempts.append(step)
      raise _Killed()
    return {"x": [0.0]}

  for _ in range(2):
    try:
      trainer.fit(trainer.init_state([0]), steps=20, data_seeds=[0],
                  writer=writer, run_labels=labels,
                  checkpoint_dir=str(tmp_path / "checkpoints"),
                  callbacks=[Callback("probe", 10, killed_at_10)])
    except _Killed:
      pass
  rows = rows_of(tmp_path)
  minibatch = [r["step"] for r in rows if r["split"] == "minibatch"]
  assert minibatch == [10, 20], minibatch
  assert all(r["lr"] == 0.05 for r in rows)


def test_a_run_labelled_by_its_lr_keeps_its_scheduled_rate(tmp_path):
  """The label wins over a value of its name (above), so the trainer logs
  its per-step rate under a name of its own: a run labelled lr = 0.05 under
  a step schedule (x0.1 at step 10) keeps both, the rate as a mean over each
  chunk of 5 steps."""
  from jaxunknowns import config_loading, runs  # pylint: disable=g-import-not-at-top
  from jaxunknowns.metrics import MetricWriter  # pylint: disable=g-import-not-at-top
  config = config_loading.load_config(
      str(ROOT / "configs/train.py:mnist1d_mlp,runlocal"),
      {"optim.lr": 0.05, "optim.schedule": "step", "optim.boundaries": [10],
       "optim.decay_factor": 0.1, "train.checkpoint_every": 0,
       "train.log_every": 5, "train.eval_every": 20})
  trainer = runs.build_trainer(config)
  writer = MetricWriter(str(tmp_path), tensorboard=False)
  trainer.fit(trainer.init_state([0]), steps=20, data_seeds=[0],
              writer=writer, run_labels=[{"lr": 0.05, "seed": 0}])
  rows = [r for r in rows_of(tmp_path) if r["split"] == "minibatch"]
  assert [r["lr"] for r in rows] == [0.05] * 4
  np.testing.assert_allclose([r["learning_rate"] for r in rows],
                             [0.05, 0.05, 0.005, 0.005], rtol=1e-6)


def test_bn_smoothness_killed_between_its_step0_measures(tmp_path,
                                                         monkeypatch):
  """bn_smoothness measures the initial weights (step 0) once per callback
  before its fit makes the checkpoint folder; an attempt killed while the
  second callback ran (compiling) had written the first one's rows, and the
  rerun, finding no folder, wrote them again."""
  from jaxunknowns import config_loading  # pylint: disable=g-import-not-at-top
  from jaxunknowns.analysis import smoothness  # pylint: disable=g-import-not-at-top
  config = config_loading.load_config(
      str(ROOT / "configs/bn_smoothness.py:mnist1d_mlp,runlocal"),
      {"smoothness.arms": ("batch",)})
  ics_callback = smoothness.ics_callback

  def killed_at_its_first_call(*args, **kwargs):
    callback = ics_callback(*args, **kwargs)

    def fn(*args_):
      del args_
      raise _Killed()

    callback.fn = fn
    return callback

  with monkeypatch.context() as patch:
    patch.setattr(smoothness, "ics_callback", killed_at_its_first_call)
    with pytest.raises(_Killed):
      run_in_process(config, tmp_path)
  assert any(r["split"] == "smoothness" for r in rows_of(tmp_path))
  run_in_process(config, tmp_path)
  assert_rows_once(tmp_path)


def test_a_report_that_raises_keeps_the_summary(tmp_path, monkeypatch):
  """A bug in a report's code must not cost the run its results: the summary
  is written all the same (report_cli writes the report once it is fixed),
  unlike a kill mid-report, which leaves the run to be finished by a rerun."""
  from jaxunknowns import config_loading, experiments  # pylint: disable=g-import-not-at-top
  from run_helpers import run_in_process  # pylint: disable=g-import-not-at-top
  config = config_loading.load_config(
      str(ROOT / "configs/train.py:mnist1d_mlp,runlocal"),
      {"train.steps": 20, "train.eval_every": 10})

  def buggy(*args):
    del args
    raise KeyError("a field the report reads")

  with monkeypatch.context() as patch:
    patch.setattr(experiments, "write_report", buggy)
    with pytest.raises(KeyError):
      run_in_process(config, tmp_path)
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["experiment"] == "train" and not (tmp_path / "report.md").exists()


def test_rewrite_replaces_only_its_own_step_split_and_runs(tmp_path):
  """MetricWriter.rewrite drops the given runs' rows of that step AND
  split before writing them again: the same step's rows of other splits
  (fit's eval rows at the stage's end step) and of other runs stay."""
  from jaxunknowns.metrics import MetricWriter, read_metrics  # pylint: disable=g-import-not-at-top
  writer = MetricWriter(str(tmp_path), tensorboard=False)
  runs = [{"seed": 0}, {"seed": 1}]
  writer.write(10, "test", runs, {"loss": [1.0, 2.0]})
  writer.write(10, "sharpness", runs, {"s": [5.0, 6.0]})
  writer.write(20, "sharpness", runs, {"s": [7.0, 8.0]})
  writer.rewrite(10, "sharpness", [{"seed": 0}], {"s": [9.0]})
  writer.rewrite(10, "sharpness", [{"seed": 0}], {"s": [9.5]})
  rows = sorted((r["step"], r["split"], r["seed"], r.get("loss", r.get("s")))
                for r in read_metrics(str(tmp_path)))
  assert rows == [(10, "sharpness", 0, 9.5), (10, "sharpness", 1, 6.0),
                  (10, "test", 0, 1.0), (10, "test", 1, 2.0),
                  (20, "sharpness", 0, 7.0), (20, "sharpness", 1, 8.0)]


def test_a_fit_resumed_at_its_end_keeps_its_pace(tmp_path):
  """A stage killed after its training, before its result.json (in its
  measures), resumes its fit at the last step and trains nothing: its pace
  was 0 steps/s. The steps and seconds behind each checkpoint are kept
  beside it, so the rerun reports the pace its steps were trained at; a
  fit that resumes halfway adds its own steps and seconds to them."""
  from jaxunknowns import config_loading, runs, stages  # pylint: disable=g-import-not-at-top
  from jaxunknowns.metrics import MetricWriter  # pylint: disable=g-import-not-at-top
  config = config_loading.load_config(
      str(ROOT / "configs/train.py:mnist1d_mlp,runlocal"),
      {"train.checkpoint_every": 20, "train.log_every": 10,
       "train.eval_every": 20})
  trainer = runs.build_trainer(config)
  writer = MetricWriter(str(tmp_path), tensorboard=False)
  fit = lambda steps: trainer.fit(
      trainer.init_state([0]), steps=steps, data_seeds=[0], writer=writer,
      run_labels=[{"seed": 0}], checkpoint_dir=str(tmp_path / "checkpoints"))
  first = fit(20)
  timing = read_json(tmp_path / "checkpoints" / "timing.json")
  assert timing["step"] == timing["steps"] == 20 and timing["seconds"] > 0
  again = fit(20)  # resumed at its end
  assert again.resumed_from == 20
  # (plus its own few microseconds of wall time, training nothing)
  assert again.steps_per_second == pytest.approx(20 / timing["seconds"],
                                                 rel=0.05)
  assert again.steps_per_second == pytest.approx(first.steps_per_second,
                                                 rel=0.5)
  longer = fit(40)  # 20 more steps, timed on top of the first 20
  timing2 = read_json(tmp_path / "checkpoints" / "timing.json")
  assert timing2["steps"] == 40 and timing2["seconds"] > timing["seconds"]
  assert longer.wall_time > timing["seconds"]  # the first 20 steps' too
  assert longer.steps_per_second == pytest.approx(40 / longer.wall_time)
  assert again.wall_time == pytest.approx(timing["seconds"], rel=0.05)

  calls = []

  def measure(*args):  # killed the first time, after the training
    del args
    calls.append(1)
    if len(calls) == 1:
      raise _Killed()
    return {"x": [1.0]}

  stage = lambda: stages.train_stage(
      trainer, workdir=None, name="s", labels={}, seeds=[0], writer=writer,
      steps=20, measure=measure, folder=str(tmp_path / "stage"))
  with pytest.raises(_Killed):
    stage()
  assert stage()["steps_per_second"] > 0


def test_ctrl_c_is_one_line_and_the_rerun_resumes(tmp_path):
  """Ctrl-C (SIGINT) printed some 80 lines of KeyboardInterrupt traceback
  from wherever Python was; now one line, exit 130 (128 + SIGINT), and the
  same command finishes the run as after a kill."""
  import signal  # pylint: disable=g-import-not-at-top
  workdir = tmp_path / "run"
  config = f"{ROOT}/configs/train.py:mnist1d_mlp,runlocal"
  proc = forkserver.popen(
      [sys.executable, "-m", "jaxunknowns.main", f"--config={config}",
       f"--workdir={workdir}"], cwd=ROOT, env=ENV, text=True,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  lines = []
  for line in proc.stderr:  # until the run starts, then Ctrl-C
    lines.append(line)
    if "devices:" in line:
      proc.send_signal(signal.SIGINT)
      break
  err = "".join(lines) + proc.stderr.read()
  assert proc.wait(timeout=300) == 130, err[-3000:]
  assert "Traceback" not in err, err[-3000:]
  assert err.strip().splitlines()[-1] == (
      "interrupted: rerun the same command to resume from the last checkpoint")
  again = cli(config, workdir)
  assert again.returncode == 0, again.stderr[-3000:]
  assert (workdir / "summary.json").exists()


LOST_CTRL_C = """
import gc, os, signal, sys, threading, time
from jaxunknowns import main
sys.unraisablehook = main.quiet_unraisables
fired = []
def callback(phase, info):  # as JAX's own gc callback
  if phase == "start" and not fired:
    fired.append(1)
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(10000):
      pass  # the handler runs here: Python ignores what it raises
gc.callbacks.append(callback)
gc.collect()
start = time.monotonic()
try:  # blocked in a wait, as in a save: a real signal wakes it
  threading.Event().wait(10)
  print("lost")
except KeyboardInterrupt:
  print(f"interrupted after {time.monotonic() - start:.1f} s")
try:  # and once only: a cleanup after it is not cut short
  time.sleep(3)
  print("once")
except KeyboardInterrupt:
  print("again")
"""


def test_a_ctrl_c_that_lands_in_a_gc_callback_is_not_lost():
  """Once in a few Ctrl-C's the run went on to exit 0: the KeyboardInterrupt
  was raised inside JAX's gc callback, where Python prints 'Exception
  ignored' and goes on. The CLI's unraisable hook delivers it again, once,
  silently."""
  proc = subprocess.run([sys.executable, "-c", LOST_CTRL_C], cwd=ROOT,
                        env=ENV, capture_output=True, text=True, timeout=120)
  lines = proc.stdout.split("\n")
  assert lines[0].startswith("interrupted after"), (proc.stdout,
                                                     proc.stderr[-2000:])
  assert float(lines[0].split()[2]) < 1
  assert lines[1] == "once", proc.stdout
  assert "Traceback" not in proc.stderr and "ignored" not in proc.stderr


def test_a_finished_run_leaves_no_torn_metrics_line(tmp_path):
  """A line torn by a kill (or damaged later) that no resumed fit rewound
  stayed in the finished metrics.jsonl, failing any strict JSON-lines
  reader; finishing the run now drops it, and leaves a clean file as it
  was. (randomization: its finished stages are read back, no fit rewinds
  the file.)"""
  workdir = tmp_path / "run"
  config = f"{ROOT}/configs/randomization.py:runlocal"
  assert cli(config, workdir).returncode == 0
  metrics = workdir / "metrics.jsonl"
  clean = metrics.read_text()
  (workdir / "summary.json").unlink()
  with open(metrics, "a") as f:
    f.write('{"step": 3, "spl')
  again = cli(config, workdir)
  assert again.returncode == 0, again.stderr[-3000:]
  assert metrics.read_text() == clean
  for line in clean.splitlines():
    json.loads(line)


def test_sigterm_saves_the_step_reached_and_the_rerun_ends_as_a_straight_run(
    tmp_path):
  """SIGTERM, a preempted machine's notice, ended a run at once: the steps
  since its last periodic checkpoint (here 40 steps apart) were lost. Now
  the fit saves the step it reached (30), says so in one line, exits 143,
  and the same command resumes from there to the numbers of a run never
  stopped. The signal is real, sent by the process to itself at step 30."""
  config = "configs/train.py:mnist1d_mlp,runlocal"
  flags = ("--config.seeds=2", "--config.train.steps=60",
           "--config.train.checkpoint_every=40")
  stopped, straight = tmp_path / "stopped", tmp_path / "straight"
  first = cli(config, stopped, *flags, exit_at="sigterm@logged:30")
  assert first.returncode == 143, first.stderr[-3000:]
  assert "Traceback" not in first.stderr
  assert first.stderr.strip().splitlines()[-1] == (
      "stopped by SIGTERM at step 30, saved in a checkpoint: rerun the same "
      "command to resume from it")
  assert sorted(os.listdir(stopped / "checkpoints")) == ["30", "timing.json"]
  assert not (stopped / "summary.json").exists()
  rerun = cli(config, stopped, *flags)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert "resuming from the checkpoint at step 30" in rerun.stderr
  assert cli(config, straight, *flags).returncode == 0
  assert_same_rows(stopped, straight)
  got, want = (read_json(w / "summary.json") for w in (stopped, straight))
  assert got["final"] == want["final"]  # exactly equal floats on CPU


SIGTERMS_IN_A_COMPILE = """
import os, signal, sys, threading, time
import jax, jax.numpy as jnp
from jaxunknowns import preemption
preemption.install()
def long_to_compile(x):  # some seconds of XLA compile, in C++
  for i in range(3000):
    x = jnp.sin(x) * (i + 1.0) + jnp.cos(x[::-1])
  return x
lowered = jax.jit(long_to_compile).lower(jnp.ones(64))
def notices():
  for _ in range(2):
    time.sleep(0.3)
    os.kill(os.getpid(), signal.SIGTERM)
with preemption.listening():
  threading.Thread(target=notices, daemon=True).start()
  lowered.compile()
  print("compiled")
"""


def test_a_second_sigterm_stops_at_once_even_inside_a_compile():
  """Python runs a signal handler only when the main thread is back in
  Python, which an XLA compile may not be for minutes: the second SIGTERM
  (the first only asks the fit to stop at its next boundary) ends the
  process from the watcher thread mid-compile, not after it."""
  proc = subprocess.run([sys.executable, "-c", SIGTERMS_IN_A_COMPILE],
                        cwd=ROOT, env=ENV, capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode == 143, proc.stderr[-2000:]
  assert "compiled" not in proc.stdout
  assert proc.stderr.strip().splitlines()[-2:] == [
      "SIGTERM: stopping at the end of the steps in flight (a second "
      "SIGTERM stops at once)",
      "terminated by SIGTERM: rerun the same command to resume from the "
      "last checkpoint"]


def test_a_stage_stopped_by_sigterm_between_checks_stops_where_a_straight_run_does(
    tmp_path):
  """width_sweep's stages stop early by a rule judged every check_every
  steps. A SIGTERM at step 30, between checks at 20 and 40, left a
  checkpoint there; the rerun judged the rule at step 30 and stopped the
  width-4 stage 10 steps early, which a run never stopped does not."""
  config = "configs/width_sweep.py:runlocal"
  # The two widths read below (runlocal's third, 16, adds a stage to each
  # of the three runs and nothing to the case).
  flags = ("--config.sweep.stop_train_loss=1.9", "--config.sweep.widths=4,8")
  stopped, straight = tmp_path / "stopped", tmp_path / "straight"
  first = cli(config, stopped, *flags, exit_at="sigterm@logged:30")
  assert first.returncode == 143, first.stderr[-3000:]
  assert cli(config, stopped, *flags).returncode == 0
  assert cli(config, straight, *flags).returncode == 0
  for width in ("00004", "00008"):
    got, want = (read_json(w / "stages" / "noise_0" / f"width_{width}" /
                           "result.json") for w in (stopped, straight))
    assert (got["steps"], got["stopped_early"]) == (
        want["steps"], want["stopped_early"])
  assert read_json(straight / "stages" / "noise_0" / "width_00004" /
                   "result.json")["steps"] == 40  # the case tested
  assert_same_rows(stopped, straight)
  got, want = (read_json(w / "summary.json") for w in (stopped, straight))
  assert measured(got["curves"]) == measured(want["curves"])


SIGTERM_WITHOUT_STDERR = """
import os, signal, time
from jaxunknowns import preemption
preemption.install()
os.kill(os.getpid(), signal.SIGTERM)  # outside a fit: ends the run at once
time.sleep(10)
print("still alive")
"""


def test_sigterm_still_ends_a_run_that_has_no_stderr():
  """The watcher wrote its line before exiting; with no stderr that write
  raised, the watcher thread died, and SIGTERM did nothing at all."""
  proc = subprocess.run(  # started with stderr closed (2>&-)
      ["bash", "-c", f"{shlex.quote(sys.executable)} -c "
       f"{shlex.quote(SIGTERM_WITHOUT_STDERR)} 2>&-"], cwd=ROOT, env=ENV,
      capture_output=True, text=True, timeout=120)
  assert proc.returncode == 143 and "still alive" not in proc.stdout


def test_no_preemption_service_is_no_preemption(monkeypatch):
  """Several processes with JAX's preemption service switched off
  (jax_enable_preemption_service=False): asking it raised RuntimeError at
  the first chunk boundary; now nothing asks."""
  import jax  # pylint: disable=g-import-not-at-top
  from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top
  from jaxunknowns import preemption  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  monkeypatch.setattr(jax_distributed.global_state, "client", object())
  monkeypatch.setattr(jax_distributed.global_state,
                      "preemption_sync_manager", None)
  jax.config.update("jax_enable_preemption_service", False)
  try:
    assert preemption.requested() is False
  finally:
    jax.config.update("jax_enable_preemption_service", True)
