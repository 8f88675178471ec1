"""End-to-end tests of the CLI: `python -m jaxunknowns.main --config=... --workdir=...`.

A few tests run the real command in a subprocess (its exit status, stdout and
stderr are part of the contract); the rest call `jaxunknowns.main.run`, the
same entry `main()` wraps, in-process to keep the suite fast. Every run uses
`configs/train.py:<variant>,runlocal` (a few steps of a small model on offline
data) and a workdir under pytest's tmp_path.
"""

import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxunknowns import config_loading
import forkserver  # pylint: disable=g-bad-import-order
from run_helpers import (assert_one_line_error, read_json, run_in_process,
                         snapshot)

ROOT = Path(__file__).resolve().parents[1]
TRAIN_CONFIG = ROOT / "configs" / "train.py"
MNIST1D = "mnist1d_mlp,runlocal"
FASHION = "fashion_lenet,runlocal"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
EVAL_SPLITS = {"train", "validation", "test"}
# The subprocess CLI runs on the CPU: resumed runs are bit-identical there.
# The subprocesses share the session's persistent XLA cache (its variables
# are in os.environ: tests/conftest.py); a cached executable is the very code
# a fresh compile gives, so exact comparisons between runs are unaffected.
ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")


# -----------------------------------------------------------------------------
# Helpers
# -----------------------------------------------------------------------------
def cli(workdir, *flags, variant=MNIST1D, timeout=600):
  """Runs the CLI to completion from the repository root."""
  return subprocess.run(
      [sys.executable, "-m", "jaxunknowns.main",
       f"--config=configs/train.py:{variant}", f"--workdir={workdir}", *flags],
      cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


def cli_popen(workdir, log_path, *flags, variant=MNIST1D):
  """Starts the CLI in the background, its output going to `log_path`."""
  log = open(log_path, "w")  # pylint: disable=consider-using-with
  proc = forkserver.popen(
      [sys.executable, "-m", "jaxunknowns.main",
       f"--config=configs/train.py:{variant}", f"--workdir={workdir}", *flags],
      cwd=ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT)
  proc.log = log
  return proc


def load_config(variant=MNIST1D, overrides=None):
  """configs/train.py's get_config(variant) with `overrides` applied, as
  --config=... --config.FIELD=VALUE builds it."""
  return config_loading.load_config(f"{TRAIN_CONFIG}:{variant}", overrides)



def read_rows(workdir):
  with open(Path(workdir) / "metrics.jsonl") as f:
    lines = f.read().splitlines()
  rows = [json.loads(line) for line in lines]
  assert all(isinstance(r, dict) for r in rows)
  return rows


def row_key(row):
  return (row["step"], row["split"], row["seed"])


def assert_unique_rows(rows):
  keys = [row_key(r) for r in rows]
  dupes = sorted({k for k in keys if keys.count(k) > 1})
  assert not dupes, f"duplicate (step, split, seed) rows: {dupes}"



def checkpoint_steps(workdir):
  try:
    names = os.listdir(Path(workdir) / "checkpoints")
  except FileNotFoundError:
    return []
  return sorted(int(n) for n in names if n.isdigit())


def user_error(config, workdir, overwrite=False):
  """Runs in-process, expecting a UserError; returns its one-line message."""
  from jaxunknowns.errors import UserError  # pylint: disable=g-import-not-at-top
  with pytest.raises(UserError) as info:
    run_in_process(config, workdir, overwrite)
  message = str(info.value)
  assert message and "\n" not in message, repr(message)
  return message


def corrupt(folder):
  """Overwrites every file under `folder` with garbage of another size."""
  files = [p for p in Path(folder).rglob("*") if p.is_file()]
  assert files, f"nothing to corrupt in {folder}"
  for p in files:
    p.write_bytes(b"\x00garbage\xff" * 7)


# -----------------------------------------------------------------------------
# 1. The train experiment end to end (one CLI run, shared by several tests)
# -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A finished CLI run of mnist1d_mlp,runlocal with 2 seeds. Read-only:
  tests that modify a finished run work on a copy (`finished_copy`)."""
  workdir = tmp_path_factory.mktemp("cli") / "run"
  proc = cli(workdir, "--config.seeds=2")
  assert proc.returncode == 0, proc.stderr[-6000:]
  return workdir, proc


@pytest.fixture
def finished_copy(finished, tmp_path):
  copy = tmp_path / "copy"
  shutil.copytree(finished[0], copy)
  return copy


def test_train_end_to_end_writes_every_artifact(finished):
  workdir, proc = finished
  assert "Traceback" not in proc.stderr
  files = {p.relative_to(workdir).as_posix() for p in workdir.rglob("*")
           if p.is_file()}
  for name in ("config.json", "metrics.jsonl", "summary.json", "report.md",
               "learning_curves.png"):
    assert name in files, sorted(files)

  # config.json: the config given on the command line, written before
  # anything else of the run.
  from jaxunknowns.workdir import config_to_dict  # pylint: disable=g-import-not-at-top
  config = read_json(workdir / "config.json")
  assert config == config_to_dict(load_config(MNIST1D, {"seeds": 2}))
  assert config["seeds"] == 2 and config["train"]["steps"] == 20
  first = (workdir / "config.json").stat().st_mtime_ns
  later = {f: (workdir / f).stat().st_mtime_ns for f in files
           if f != "config.json"}
  assert all(t >= first for t in later.values()), (first, later)

  # metrics.jsonl: one JSON object per line, one row per (step, split, seed).
  rows = read_rows(workdir)
  assert_unique_rows(rows)
  for r in rows:
    assert {"step", "split", "seed", "loss", "accuracy"} <= set(r), r
    assert r["seed"] in (0, 1) and 0.0 <= r["accuracy"] <= 1.0, r
    assert math.isfinite(r["loss"]) and r["loss"] > 0, r
  step_rows = [r for r in rows if "l2_grads" in r]  # training-step metrics
  assert {(r["step"], r["seed"]) for r in step_rows} == {
      (10, 0), (10, 1), (20, 0), (20, 1)}
  for r in step_rows:
    assert r["split"] not in EVAL_SPLITS, r  # told apart from evaluations
    for key in ("l2_grads", "l2_params", "l2_updates"):
      assert math.isfinite(r[key]) and r[key] > 0, (key, r)
  test_rows = {r["seed"]: r for r in rows if r["split"] == "test"}
  assert {r["step"] for r in test_rows.values()} == {20}  # eval_every=20
  assert sorted(test_rows) == [0, 1]

  # summary.json: final accuracies over the 2 seeds, matching metrics.jsonl.
  summary = read_json(workdir / "summary.json")
  assert summary["seeds"] == [0, 1] and summary["steps"] == 20
  assert summary["dataset"] == "mnist1d" and summary["model"] == "mlp"
  assert summary["resumed_from_step"] is None
  for split in ("test", "train"):
    acc = summary["final"][split]["accuracy"]
    assert set(acc) == {"mean", "std", "per_seed"}
    assert len(acc["per_seed"]) == 2
    assert acc["mean"] == pytest.approx(np.mean(acc["per_seed"]), abs=1e-12)
    assert acc["std"] == pytest.approx(np.std(acc["per_seed"], ddof=1), abs=1e-12)
    assert all(0.15 < a <= 1.0 for a in acc["per_seed"]), acc  # chance: 0.10
  test_acc = summary["final"]["test"]["accuracy"]
  assert test_acc["per_seed"] == [test_rows[0]["accuracy"],
                                  test_rows[1]["accuracy"]]
  assert test_acc["per_seed"][0] != test_acc["per_seed"][1]  # two real seeds

  # report.md shows the final accuracy and the learning curves it links.
  report = (workdir / "report.md").read_text()
  assert "learning_curves.png" in report
  mean, std = test_acc["mean"] * 100, test_acc["std"] * 100
  assert f"{mean:.2f} ± {std:.2f} (n=2)" in report
  png = (workdir / "learning_curves.png").read_bytes()
  assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000

  # TensorBoard: the mean test accuracy over seeds, as a float32 scalar.
  events = list((workdir / "tensorboard").glob("events.out.tfevents.*"))
  assert len(events) == 1
  data = events[0].read_bytes()
  assert b"test/accuracy" in data and b"l2_grads" in data
  assert b"\x15" + struct.pack("<f", test_acc["mean"]) in data


# -----------------------------------------------------------------------------
# 2. Kill and resume
# -----------------------------------------------------------------------------
def test_killed_run_resumes_to_identical_metrics(tmp_path):
  steps = 300  # ~30 checkpoints: the kill lands long before the end.
  flags = ("--config.seeds=2", f"--config.train.steps={steps}",
           "--config.train.checkpoint_every=10", "--config.train.log_every=10")
  killed, straight = tmp_path / "killed", tmp_path / "straight"
  # Two runs start together: build MNIST-1D first, or both would build it
  # into the same data_dir and the slower one fail at TFDS's final rename.
  from jaxunknowns.data import load_dataset  # pylint: disable=g-import-not-at-top
  load_dataset(load_config().data)
  reference = cli_popen(straight, tmp_path / "straight.log", *flags)
  proc = cli_popen(killed, tmp_path / "killed.log", *flags)
  try:
    deadline = time.monotonic() + 400
    while not any(s > 10 for s in checkpoint_steps(killed)):
      assert proc.poll() is None, (
          f"run exited ({proc.returncode}) before a checkpoint beyond step "
          f"10 appeared: {(tmp_path / 'killed.log').read_text()[-4000:]}")
      assert time.monotonic() < deadline, "no checkpoint beyond step 10"
      time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
  finally:
    proc.kill()
    proc.log.close()
  at_kill = checkpoint_steps(killed)
  assert not (killed / "summary.json").exists()  # really interrupted
  assert 10 < max(at_kill) < steps, at_kill

  resumed = cli(killed, *flags)
  assert resumed.returncode == 0, resumed.stderr[-6000:]
  assert "resuming from the checkpoint at step" in resumed.stderr
  try:
    assert reference.wait(timeout=400) == 0, (
        (tmp_path / "straight.log").read_text()[-6000:])
  finally:
    reference.kill()
    reference.log.close()

  got, want = (read_json(w / "summary.json") for w in (killed, straight))
  assert want["resumed_from_step"] is None
  assert got["resumed_from_step"] in at_kill and got["resumed_from_step"] > 10
  assert got["final"] == want["final"]  # exactly equal floats on CPU
  rows, want_rows = read_rows(killed), read_rows(straight)
  assert_unique_rows(rows)
  assert max(r["step"] for r in rows) == steps
  assert sorted(rows, key=row_key) == sorted(want_rows, key=row_key)
  # Orbax's half-written folder of the killed save was cleaned up (beside
  # the steps' folders: the pace of the steps behind the newest one).
  assert all(n.isdigit() or n == "timing.json"
             for n in os.listdir(killed / "checkpoints"))
  assert checkpoint_steps(killed) == [steps - 10, steps]


# -----------------------------------------------------------------------------
# 3. Rerunning a finished run
# -----------------------------------------------------------------------------
def test_rerun_of_finished_run_is_a_noop(finished):
  workdir, _ = finished
  before = snapshot(workdir)
  proc = cli(workdir, "--config.seeds=2")
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert "already finished" in proc.stdout
  assert str(workdir / "summary.json") in proc.stdout
  assert "Traceback" not in proc.stderr
  assert snapshot(workdir) == before


# -----------------------------------------------------------------------------
# 4. Bad input: exit 2, one line naming what is wrong, workdir as it was
#    (the config fields and workdirs: test_bad_input.py)
# -----------------------------------------------------------------------------
def test_cli_missing_fashion_mnist_files(tmp_path):
  workdir = tmp_path / "existing"
  workdir.mkdir()
  (workdir / "notes.txt").write_text("keep me")
  before = snapshot(workdir)
  proc = cli(workdir, "--config.data.source_dir=/nonexistent", variant=FASHION)
  assert_one_line_error(proc, "/nonexistent", "dataset-fashion-mnist",
                   "data.source_dir")
  assert snapshot(workdir) == before


def test_cli_refuses_workdir_of_a_different_config(finished):
  workdir, _ = finished
  before = snapshot(workdir)
  proc = cli(workdir, "--config.optim.lr=0.02")  # and seeds 1, not 2
  line = assert_one_line_error(proc, str(workdir), "optim.lr", "seeds",
                          "--overwrite")
  assert "train.steps" not in line  # only the fields that differ
  assert snapshot(workdir) == before


def test_overwrite_replaces_a_run_of_another_config(finished_copy):
  workdir = finished_copy
  config = load_config(MNIST1D, {"train.steps": 10, "train.eval_every": 10})
  before = snapshot(workdir)
  message = user_error(config, workdir)
  assert "seeds" in message and "train.steps" in message
  assert "train.eval_every" in message and "optim.lr" not in message
  assert snapshot(workdir) == before

  summary = run_in_process(config, workdir, overwrite=True)
  from jaxunknowns.workdir import config_to_dict  # pylint: disable=g-import-not-at-top
  assert read_json(workdir / "config.json") == config_to_dict(config)
  assert read_json(workdir / "summary.json") == json.loads(json.dumps(summary))
  assert summary["seeds"] == [0] and summary["steps"] == 10
  rows = read_rows(workdir)  # nothing left of the 2-seed, 20-step run
  assert {r["seed"] for r in rows} == {0}
  assert max(r["step"] for r in rows) == 10
  assert checkpoint_steps(workdir) == [10]
  assert len(list((workdir / "tensorboard").iterdir())) == 1


def without_its_state(folder):
  """The checkpoint's state folder gone, its metadata left (a copy cut
  short): orbax's failed restore then left its manager unable to read the
  older, whole checkpoint, and the run said every step was corrupt."""
  shutil.rmtree(Path(folder) / "default")


@pytest.mark.parametrize("damage", [corrupt, without_its_state])
def test_corrupt_latest_checkpoint_falls_back_to_the_previous(
    finished, finished_copy, damage):
  workdir = finished_copy
  assert checkpoint_steps(workdir) == [10, 20]
  (workdir / "summary.json").unlink()
  damage(workdir / "checkpoints" / "20")
  proc = cli(workdir, "--config.seeds=2")
  assert proc.returncode == 0, proc.stderr[-6000:]
  assert f"checkpoint {workdir / 'checkpoints'}/20 is unreadable" in proc.stderr
  assert "resuming from the checkpoint at step 10" in proc.stderr
  summary = read_json(workdir / "summary.json")
  assert summary["resumed_from_step"] == 10
  # Retraining steps 11-20 from checkpoint 10 reproduces the original run.
  original = finished[0]
  assert summary["final"] == read_json(original / "summary.json")["final"]
  rows = read_rows(workdir)
  assert_unique_rows(rows)
  assert sorted(rows, key=row_key) == sorted(read_rows(original), key=row_key)
  assert checkpoint_steps(workdir) == [10, 20]


def test_all_checkpoints_corrupt_is_one_line_error(finished_copy):
  workdir = finished_copy
  (workdir / "summary.json").unlink()
  for step in checkpoint_steps(workdir):
    corrupt(workdir / "checkpoints" / str(step))
  before = snapshot(workdir)
  proc = cli(workdir, "--config.seeds=2")
  assert_one_line_error(proc, f"{workdir / 'checkpoints'} ", "corrupt",
                   "--overwrite")
  assert not (workdir / "summary.json").exists()
  # The run's files are as they were (TensorBoard files aside, see report).
  strip = lambda snap: {k: v for k, v in snap.items()
                        if not k.startswith("tensorboard")}
  assert strip(snapshot(workdir)) == strip(before)


# -----------------------------------------------------------------------------
# 5. The real Fashion-MNIST files
# -----------------------------------------------------------------------------
def test_fashion_mnist_lenet_trains(tmp_path):
  if not FASHION_DIR.is_dir():
    if os.environ.get("CI") == "true":
      pytest.fail(f"CI must install Debian's dataset-fashion-mnist: "
                  f"{FASHION_DIR} is missing")
    pytest.skip(f"{FASHION_DIR} not found (apt-get install "
                f"dataset-fashion-mnist)")
  workdir = tmp_path / "fashion"
  summary = run_in_process(load_config(FASHION), workdir)
  assert summary["dataset"] == "fashion_mnist"
  assert summary["model"] == "lenet_300_100"
  # LeNet-300-100 on 28x28x1: 784*300+300 + 300*100+100 + 100*10+10.
  assert summary["parameters"]["total"] == 266_610
  test_acc = summary["final"]["test"]["accuracy"]["per_seed"]
  assert len(test_acc) == 1 and 0.5 < test_acc[0] <= 1.0  # chance: 0.10
  rows = read_rows(workdir)
  test_rows = [r for r in rows if r["split"] == "test"]
  assert [(r["step"], r["accuracy"]) for r in test_rows] == [(20, test_acc[0])]
  assert read_json(workdir / "summary.json")["final"] == summary["final"]
  assert (workdir / "report.md").exists()


def test_one_seed_on_digits_report_reads_one_seed(tmp_path):
  """A researcher's first edit, another dataset: train's runlocal (1 seed) on
  scikit-learn's digits with a training set they hold. The report names the
  data and counts the seed in the singular ('1 seeds' was written)."""
  workdir = tmp_path / "digits"
  summary = run_in_process(load_config(MNIST1D, {
      "data.name": "digits", "data.train_size": 500}), workdir)
  assert summary["dataset"] == "digits" and len(summary["seeds"]) == 1
  # MLP 64-32-32-10 (runlocal widths) on the flattened 8x8 images.
  assert summary["parameters"]["total"] == 64 * 32 + 32 + 32 * 32 + 32 + 330
  text = (workdir / "report.md").read_text()
  assert "on `digits`" in text and "1 seed trained at once" in text
  assert "1 seeds" not in text


def test_a_workdir_in_use_by_another_run_is_refused(finished_copy):
  """Two runs at once in one workdir (a second terminal, a relaunch while
  the first still trains) both wrote its checkpoints and metrics: the
  second stops in one line and leaves the workdir as it was."""
  from jaxunknowns import paths  # pylint: disable=g-import-not-at-top
  before = snapshot(finished_copy)
  with paths.machine_lock(str(finished_copy), "workdir"):
    proc = cli(finished_copy, "--config.optim.lr=0.05", "--overwrite")
  assert_one_line_error(proc, "in use by another process",
                        f"pid {os.getpid()}")
  assert snapshot(finished_copy) == before


def test_a_wheel_holds_every_module():
  """`pip install .` (not -e) ships only what setup.py's find_packages finds:
  a folder without __init__.py is left out, and every experiment in it fails
  with ModuleNotFoundError outside the checkout. Every folder of .py files is
  a package it finds."""
  import setuptools  # pylint: disable=g-import-not-at-top
  found = set(setuptools.find_packages(
      str(ROOT), include=["jaxunknowns", "jaxunknowns.*"]))
  folders = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "jaxunknowns").rglob("*.py")}
  assert folders <= found, sorted(folders - found)
  from jaxunknowns import experiments  # pylint: disable=g-import-not-at-top
  assert {m.rpartition(".")[0] for m in experiments.MODULES.values()} <= found


def test_a_misspelt_report_module_is_found_at_registration():
  """A report is imported only once its run has trained: register() checks
  that the module exists, so a typo fails at import, not hours in."""
  from jaxunknowns import experiments  # pylint: disable=g-import-not-at-top
  run = lambda config, workdir: {}
  for report in ("jaxunknowns.implicit.sam_reprot:write",
                 "jaxunknowns.implicitt.sam_report:write",
                 "jaxunknowns.implicit.sam_report"):  # no function named
    with pytest.raises(ValueError, match="is not 'package.module:function'"):
      experiments.register("typo_probe", report=report)(run)
  assert "typo_probe" not in experiments.EXPERIMENTS.names()
  # register() cannot see a misspelt function without importing the module:
  # here every registered experiment's report function is looked up.
  for name in experiments.MODULES:
    assert callable(experiments.EXPERIMENTS.get(name).report), name
