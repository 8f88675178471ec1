"""Tests of the sweep runner (`python -m jaxunknowns.sweep`).

Expansion and naming are checked directly; one real 2-run sweep of
`configs/train.py:mnist1d_mlp,runlocal` (10 steps, 2 seeds each) runs once
per module and the end-to-end, resume and --aggregate_only tests read it.
Bad input is checked both in-process and through the real command (exit 2,
one line on stderr, nothing written).
"""

import io
import json
import re
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jaxunknowns import main as main_lib
from jaxunknowns import sweep
from jaxunknowns.errors import UserError
import forkserver  # pylint: disable=g-bad-import-order
from run_helpers import read_json, snapshot

ROOT = Path(__file__).resolve().parents[1]
TRAIN = f"{ROOT}/configs/train.py:mnist1d_mlp,runlocal"
# Even smaller than runlocal: compile time dominates anyway.
TINY = {"seeds": 2, "train.steps": 10, "train.eval_every": 10,
        "train.checkpoint_every": 10, "data.train_size": 500}
ENV = dict(os.environ, JAX_PLATFORMS="cpu")


def write_config(tmp_path, sweeps_source: str) -> str:
  """A config file that is configs/train.py with the given get_sweep body."""
  path = tmp_path / "cfg.py"
  path.write_text(textwrap.dedent(f"""
      import importlib.util
      from jaxunknowns.sweep import grid, zipped

      _spec = importlib.util.spec_from_file_location(
          "_train_cfg", {str(ROOT / "configs" / "train.py")!r})
      _train = importlib.util.module_from_spec(_spec)
      _spec.loader.exec_module(_train)

      def get_config(arg=""):
        return _train.get_config(arg)

      def get_sweep(arg=""):
        return {sweeps_source}
      """))
  return f"{path}:mnist1d_mlp,runlocal"


def sweep_cli(*args):
  return subprocess.run([sys.executable, "-m", "jaxunknowns.sweep", *args],
                        cwd=ROOT, env=ENV, capture_output=True, text=True,
                        timeout=300)


# -----------------------------------------------------------------------------
# Declaring and naming runs
# -----------------------------------------------------------------------------
def test_grid_is_the_product_with_the_last_field_fastest():
  runs = sweep.grid(**{"optim.lr": [1e-3, 3e-3], "seed": [0, 1, 2]})
  assert runs == [{"optim.lr": 1e-3, "seed": 0}, {"optim.lr": 1e-3, "seed": 1},
                  {"optim.lr": 1e-3, "seed": 2}, {"optim.lr": 3e-3, "seed": 0},
                  {"optim.lr": 3e-3, "seed": 1}, {"optim.lr": 3e-3, "seed": 2}]


def test_zipped_pairs_values_and_needs_equal_lengths():
  runs = sweep.zipped(**{"train.batch_size": [50, 100], "optim.lr": [5e-3, 1e-2]})
  assert runs == [{"train.batch_size": 50, "optim.lr": 5e-3},
                  {"train.batch_size": 100, "optim.lr": 1e-2}]
  with pytest.raises(ValueError, match="as many values"):
    sweep.zipped(**{"a": [1, 2], "b": [1]})
  with pytest.raises(ValueError, match="non-empty list"):
    sweep.grid(**{"a": []})
  with pytest.raises(ValueError, match="non-empty list"):
    sweep.grid(**{"a": 0.1})  # A value, not a list of values.


def test_run_names_are_short_unique_and_shell_safe():
  fields = ["optim.lr", "model.widths", "data.name"]
  assert sweep.run_name({"optim.lr": 0.003, "model.widths": (64, 32),
                         "data.name": "mnist1d"}, fields) == (
                             "lr=0.003,widths=64-32,name=mnist1d")
  # Two fields named "name": both spelt in full.
  assert sweep.run_name({"model.name": "mlp", "optim.name": "sgd"},
                        ["model.name", "optim.name"]) == (
                            "model.name=mlp,optim.name=sgd")
  assert sweep.run_name({"optim.freeze": "a/b c"}, ["optim.freeze"]) == (
      "freeze=a_b_c")
  assert sweep.run_name({}, ["optim.lr"]) == "base"
  long = sweep.run_name({"optim.freeze": "x" * 300}, ["optim.freeze"])
  assert len(long) <= 101


def test_train_config_declares_sweeps_that_all_check(tmp_path):
  """Every sweep of configs/train.py builds and checks for each variant."""
  from jaxunknowns import config_loading  # pylint: disable=g-import-not-at-top
  for variant in ("mnist1d_mlp", "mnist1d_cnn", "fashion_lenet"):
    spec = f"{ROOT}/configs/train.py:{variant}"
    sweeps = sweep.load_sweeps(spec)
    assert {"lr", "batch_lr"} <= set(sweeps)
    assert ("lr_model" in sweeps) == variant.startswith("mnist1d")
    base = config_loading.load_config(spec)
    base.lock()
    for name, runs in sweeps.items():
      assert len(runs) >= 4
      planned = sweep.plan(base, runs, name, str(tmp_path / name))
      assert len({r.workdir for r in planned}) == len(runs)
  assert not any(tmp_path.iterdir())  # Planning writes nothing.
  # runlocal keeps two runs of each sweep.
  assert {k: len(v) for k, v in sweep.load_sweeps(TRAIN).items()} == {
      "lr": 2, "batch_lr": 2, "lr_model": 2}


# -----------------------------------------------------------------------------
# Bad input: one line, nothing written
# -----------------------------------------------------------------------------
def test_unknown_field_fails_before_any_run(tmp_path, monkeypatch):
  # The misspelt field is in the last run: the first must not start either.
  spec = write_config(tmp_path, '{"lrs": grid(**{"optim.lr": [1e-3, 3e-3]})'
                      ' + [{"optim.lrr": 0.1}]}')
  monkeypatch.setattr(main_lib, "run", _must_not_run)
  root = tmp_path / "root"
  with pytest.raises(UserError, match=r"sweep 'lrs'.*'optim.lrr'"):
    sweep.run_sweep(spec, str(root), "lrs")
  assert not root.exists()


def test_bad_values_fail_before_any_run(tmp_path, monkeypatch):
  monkeypatch.setattr(main_lib, "run", _must_not_run)
  root = tmp_path / "root"
  cases = {
      '{"s": [{"seed": 0}, {"model.name": "nope"}]}': r"unknown model 'nope'",
      '{"s": [{"seed": 0}, {"optim.lr": -1.0}]}': r"optim.lr=-1.0: expects a finite number >= 0",
      '{"s": [{"seed": 0}, {"optim.lr": "fast"}]}': r"optim.lr='fast' does not",
      '{"s": [{"seed": 0}, {"optim": 1}]}': r"'optim' is a group of fields",
      '{"s": [{"seed": 0}, {"seed": 0}]}': r"the same overrides twice",
      # Values that print alike in a run's name were called the same twice.
      '{"s": [{"optim.lr": 0.1}, {"optim.lr": 0.1000001}]}':
          r"differ only beyond the 6 significant digits",
      '{"s": grid(**{"a": [1], "b": [1, 2]})[:0]}': r"has no runs",
      '[{"seed": 0}]': r"must return a non-empty",
      # A field that is no string was an AttributeError traceback.
      '{"s": [{"seed": 0}, {1: 0.1}]}': r"must return a non-empty",
      # So was any failure but a ValueError (ZeroDivisionError here).
      '{"s": [{"seed": 1 // 0}]}':
          r"get_sweep\('mnist1d_mlp,runlocal'\) failed: ZeroDivisionError",
  }
  for source, message in cases.items():
    spec = write_config(tmp_path, source)
    with pytest.raises(UserError, match=message):
      sweep.run_sweep(spec, str(root), "s")
    assert not root.exists()
  with pytest.raises(UserError, match=r"command line: no such config field"):
    sweep.run_sweep(TRAIN, str(root), "lr", {"train.stepz": 3})
  spec = write_config(tmp_path, '{"s": zipped(**{"a": [1, 2], "b": [1]})}')
  with pytest.raises(UserError, match=r"get_sweep.*as many values"):
    sweep.run_sweep(spec, str(root), "s")
  assert not root.exists()


def test_a_swept_field_set_on_the_command_line_too_is_refused(
    tmp_path, monkeypatch):
  """--config.optim.lr=0.5 over the lr sweep: every run trained with its own
  lr, and sweep.json/sweep.md recorded the unused 0.5 as an override."""
  monkeypatch.setattr(main_lib, "run", _must_not_run)
  root = tmp_path / "root"
  with pytest.raises(UserError) as info:
    sweep.run_sweep(TRAIN, str(root), "lr", {"optim.lr": 0.5})
  message = str(info.value)
  assert "\n" not in message, message
  for needle in ("--config.optim.lr=0.5", "sweep 'lr' sets optim.lr",
                 "unused"):
    assert needle in message, (needle, message)
  assert not root.exists()


def test_every_run_refused_on_its_data_is_one_line_and_writes_nothing(
    tmp_path):
  """A batch larger than the training set is found only when a run loads
  its data: every run failed, nothing was written, and aggregating into the
  absent sweep root raised FileNotFoundError (a traceback, exit 1)."""
  root = tmp_path / "root"
  with pytest.raises(UserError) as info:
    sweep.run_sweep(TRAIN, str(root), "lr", {"train.batch_size": 100000})
  message = str(info.value)
  assert "\n" not in message, message
  assert "failed before writing anything" in message, message
  assert "train.batch_size=100000 is larger than the training set" in message
  assert not root.exists()


def test_unknown_sweep_and_config_without_sweeps(tmp_path):
  root = tmp_path / "root"
  with pytest.raises(UserError, match=r"unknown sweep 'nope'.*valid: lr, "
                     r"batch_lr, lr_model"):
    sweep.run_sweep(TRAIN, str(root), "nope")
  with pytest.raises(UserError, match="several sweeps"):
    sweep.run_sweep(TRAIN, str(root))
  with pytest.raises(UserError, match="declares no sweeps"):
    sweep.run_sweep(f"{ROOT}/configs/width_sweep.py:mnist1d,runlocal",
                    str(root))
  with pytest.raises(UserError, match="exclude each other"):
    sweep.run_sweep(TRAIN, str(root), "lr", dry_run=True,
                    aggregate_only=True)
  with pytest.raises(UserError, match="no finished run"):
    sweep.run_sweep(TRAIN, str(root), "lr", aggregate_only=True)
  assert not root.exists()


def test_cli_bad_input_is_one_line_exit_2(tmp_path):
  spec = write_config(tmp_path, '{"lrs": [{"optim.lr": 1e-3}, '
                      '{"optim.lrr": 0.1}]}')
  root = tmp_path / "root"
  proc = sweep_cli(f"--config={spec}", f"--workdir={root}")
  assert proc.returncode == 2, proc.stderr
  assert proc.stderr.strip().splitlines() == [
      "error: sweep 'lrs', run lrr=0.1: no such config field 'optim.lrr' "
      "(see the config file and jaxunknowns/config_defaults.py)"]
  proc = sweep_cli("--config=configs/train.py:mnist1d_mlp", f"--workdir={root}",
                   "--sweep=nope")
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      "error: unknown sweep 'nope' of configs/train.py; valid: lr, batch_lr, "
      "lr_model"]
  assert not root.exists()


def test_a_sweep_on_one_host_of_several_is_refused(tmp_path, monkeypatch):
  """launch/tpu_vm.py ran the sweep command on every worker of a multi-host
  slice: each ran the whole sweep into the one root."""
  monkeypatch.setattr(sys.modules[__name__], "ENV", dict(
      ENV, TPU_WORKER_HOSTNAMES="10.0.0.2,10.0.0.3"))
  root = tmp_path / "root"
  proc = sweep_cli(f"--config={TRAIN}", f"--workdir={root}", "--sweep=lr")
  assert proc.returncode == 2, proc.stderr
  assert proc.stderr.strip().splitlines() == [
      "error: this TPU VM is one host of a multi-host slice: a sweep here "
      f"would run once per host, every copy writing the same runs; "
      f"{sweep.SEVERAL_HOSTS}"]
  assert not root.exists()


@pytest.mark.parametrize("flags,needle", [
    (["--ray_cpus=2"], "--ray_cpus apply to --executor=ray only"),
    (["--executor=ray", "--ray_cpus=-1"], "must be >= 0"),
    (["--executor=ray", "--ray_resources==4"], "'=4' is not NAME=AMOUNT"),
    (["--executor=ray", "--ray_resources=TPU=-4"], "'TPU=-4' is not NAME"),
    # main's multi-process flags: the sweep ignored them, exit 0.
    (["--coordinator_address=h:1", "--num_processes=2"],
     "--coordinator_address, --num_processes apply to python -m "
     "jaxunknowns.main only"),
], ids=["local", "cpus", "nameless", "negative", "multi_process"])
def test_cli_ray_options_are_checked_before_anything(tmp_path, flags,
                                                     needle):
  """--ray_* with the local executor were ignored, exit 0; a negative
  --ray_cpus passed --dry_run and a nameless or negative resource reached
  Ray only once the runs were submitted."""
  root = tmp_path / "root"
  proc = sweep_cli("--config=configs/train.py:mnist1d_mlp,runlocal",
                   f"--workdir={root}", "--sweep=lr", "--dry_run", *flags)
  assert proc.returncode == 2, proc.stderr[-2000:]
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1 and needle in errors[0], proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr and not root.exists()


def test_cli_dry_run_prints_the_runs_and_writes_nothing(tmp_path):
  root = tmp_path / "root"
  proc = sweep_cli("--config=configs/train.py:mnist1d_mlp", f"--workdir={root}",
                   "--sweep=lr_model", "--dry_run", "--config.seeds=2")
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.strip().splitlines()
  assert lines[0] == (f"sweep 'lr_model' of configs/train.py:mnist1d_mlp: "
                      f"8 runs under {root}")
  assert lines[1] == (
      "[new] python -m jaxunknowns.main --config=configs/train.py:mnist1d_mlp "
      f"--workdir={root}/lr=0.001,name=mlp --config.seeds=2 "
      "--config.optim.lr=0.001 --config.model.name=mlp")
  assert len(lines) == 9
  assert not root.exists()


# -----------------------------------------------------------------------------
# A real 2-run sweep
# -----------------------------------------------------------------------------
def _must_not_run(*args, **kwargs):
  raise AssertionError(f"main.run called: {args[1:]}")


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
  root = tmp_path_factory.mktemp("sweep") / "root"
  result = sweep.run_sweep(TRAIN, str(root), "lr", TINY)
  return root, result


def test_sweep_runs_each_in_its_own_workdir_and_aggregates(finished_sweep):
  root, result = finished_sweep
  names = ["lr=0.001", "lr=0.003"]
  assert sorted(p.name for p in root.iterdir()) == sorted(
      names + ["sweep.json", "sweep.md", "sweep.png"])
  saved = read_json(root / "sweep.json")
  assert saved == json.loads(json.dumps(result))
  assert saved["fields"] == ["optim.lr"] and saved["headline"] == "test.accuracy"
  assert [r["name"] for r in saved["runs"]] == names
  for row, lr in zip(saved["runs"], (1e-3, 3e-3)):
    run_dir = root / row["name"]
    config = read_json(run_dir / "config.json")
    assert config["optim"]["lr"] == lr and config["seeds"] == 2
    assert config["train"]["steps"] == 10
    summary = read_json(run_dir / "summary.json")
    assert row["status"] == "finished"
    assert row["metrics"]["test.accuracy"] == summary["final"]["test"]["accuracy"]
    assert row["metrics"]["train.loss"] == summary["final"]["train"]["loss"]
    assert len(row["metrics"]["test.accuracy"]["per_seed"]) == 2
  md = (root / "sweep.md").read_text()
  acc = saved["runs"][1]["metrics"]["test.accuracy"]
  assert (f"| 0.003 | {acc['mean'] * 100:.2f} ± {acc['std'] * 100:.2f} (n=2) |"
          in md)
  assert "![test.accuracy](sweep.png)" in md
  assert (root / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_root_holding_another_sweep_is_refused(finished_sweep, monkeypatch,
                                                capsys):
  """Sweep batch_lr into the root of sweep lr ran its runs beside lr's and
  replaced lr's sweep.json/.md/.png with its own, exit 0."""
  root, _ = finished_sweep
  monkeypatch.setattr(main_lib, "run", _must_not_run)
  before = snapshot(root)
  with pytest.raises(UserError) as info:
    sweep.run_sweep(TRAIN, str(root), "batch_lr", TINY)
  message = str(info.value)
  for needle in (f"{root} holds another sweep", "sweep 'lr'",
                 "use another --workdir"):
    assert needle in message, (needle, message)
  assert snapshot(root) == before
  # The same sweep, its config file named another way, is that sweep.
  relative = os.path.relpath(TRAIN.partition(":")[0])
  sweep.run_sweep(f"{relative}:mnist1d_mlp,runlocal", str(root), "lr", TINY,
                  dry_run=True)
  assert "[finished]" in capsys.readouterr().out
  # With --overwrite the dry run says the finished runs would be retrained,
  # and each command it prints does so (it ignored --overwrite).
  sweep.run_sweep(TRAIN, str(root), "lr", TINY, dry_run=True, overwrite=True)
  lines = capsys.readouterr().out.splitlines()[1:]
  assert len(lines) == 2 and all(
      line.startswith("[finished, --overwrite retrains it] python -m "
                      "jaxunknowns.main") and " --overwrite " in line
      for line in lines), lines
  assert snapshot(root) == before


def test_an_override_equal_to_the_files_value_is_the_same_sweep(
    finished_sweep, monkeypatch, capsys):
  """The sweep's command again with an override of the value the config
  file already has (Adam b2 0.999): it was refused as another sweep, the
  overrides compared as text. Then the first command again, against the
  aggregate the second wrote."""
  root, _ = finished_sweep
  runs = ("lr=0.001", "lr=0.003")
  before = {n: snapshot(root / n) for n in runs}
  monkeypatch.setattr(main_lib, "run", _must_not_run)
  sweep.run_sweep(TRAIN, str(root), "lr", {**TINY, "optim.b2": 0.999})
  assert "lr=0.003: finished, skipped" in capsys.readouterr().out
  sweep.run_sweep(TRAIN, str(root), "lr", TINY)
  assert read_json(root / "sweep.json")["base_overrides"] == TINY
  assert {n: snapshot(root / n) for n in runs} == before
  # A value that differs is still refused (by its runs' configs first).
  with pytest.raises(UserError, match="fields differ: optim.b2"):
    sweep.run_sweep(TRAIN, str(root), "lr", {**TINY, "optim.b2": 0.99})


def test_rerun_skips_finished_runs_and_resumes_partial_ones(
    finished_sweep, monkeypatch, capsys):
  root, _ = finished_sweep
  before = {n: snapshot(root / n) for n in ("lr=0.001", "lr=0.003")}
  monkeypatch.setattr(main_lib, "run", _must_not_run)
  sweep.run_sweep(TRAIN, str(root), "lr", TINY)
  assert {n: snapshot(root / n) for n in before} == before
  assert "lr=0.003: finished, skipped" in capsys.readouterr().out

  # A sweep killed after run 2's last checkpoint, before its summary.
  summary = read_json(root / "lr=0.003" / "summary.json")
  os.remove(root / "lr=0.003" / "summary.json")
  calls = []
  monkeypatch.undo()
  real_run = main_lib.run

  def spy(config, workdir, *args):
    calls.append(os.path.basename(workdir))
    return real_run(config, workdir, *args)
  monkeypatch.setattr(main_lib, "run", spy)
  result = sweep.run_sweep(TRAIN, str(root), "lr", TINY)
  assert calls == ["lr=0.003"]
  assert snapshot(root / "lr=0.001") == before["lr=0.001"]
  resumed = read_json(root / "lr=0.003" / "summary.json")
  assert resumed["resumed_from_step"] == 10
  assert resumed["final"] == summary["final"]
  assert result["runs"][1]["metrics"]["test.accuracy"] == (
      summary["final"]["test"]["accuracy"])


def test_aggregate_only_rebuilds_the_table(finished_sweep, monkeypatch):
  root, _ = finished_sweep
  saved = read_json(root / "sweep.json")
  md = (root / "sweep.md").read_text()
  for name in ("sweep.json", "sweep.md", "sweep.png"):
    os.remove(root / name)
  monkeypatch.setattr(main_lib, "run", _must_not_run)
  sweep.run_sweep(TRAIN, str(root), "lr", TINY, aggregate_only=True)
  assert read_json(root / "sweep.json") == saved
  assert (root / "sweep.md").read_text() == md
  assert (root / "sweep.png").exists()


def test_overwrite_refused_on_every_run_leaves_the_root_as_it_was(
    finished_sweep, tmp_path):
  """--overwrite with a base override every run refuses on its data: the
  runs' folders were put back, but sweep.json and sweep.md were rewritten
  with the new override over the old runs' numbers, as finished. Now one
  line and the root as it was; and --aggregate_only, which reruns nothing,
  refuses --overwrite (it recorded the command's overrides over runs made
  with others)."""
  copy = tmp_path / "root"
  shutil.copytree(finished_sweep[0], copy)
  before = snapshot(copy)
  with pytest.raises(UserError, match="failed before writing anything"):
    sweep.run_sweep(TRAIN, str(copy), "lr", {**TINY,
                                              "train.batch_size": 100000},
                    overwrite=True)
  assert snapshot(copy) == before
  with pytest.raises(UserError, match="--aggregate_only retrains nothing"):
    sweep.run_sweep(TRAIN, str(copy), "lr", {**TINY, "train.steps": 30},
                    aggregate_only=True, overwrite=True)
  assert snapshot(copy) == before


def test_aggregate_of_two_fields_and_a_missing_run(tmp_path):
  """lr x model: one line per model in the figure; a run not yet finished is
  listed as such and left out of the figure."""
  runs = sweep.grid(**{"optim.lr": [1e-3, 1e-2], "model.name": ["mlp", "cnn"]})
  planned = []
  for i, overrides in enumerate(runs):
    name = sweep.run_name(overrides, ["optim.lr", "model.name"])
    run = sweep.Run(name, overrides, None, str(tmp_path / name))
    planned.append(run)
    if i == 3:
      continue
    os.makedirs(run.workdir)
    acc = {"mean": 0.5 + 0.1 * i, "std": 0.01, "per_seed": [0.49, 0.51]}
    with open(Path(run.workdir) / "summary.json", "w") as f:
      json.dump({"final": {"test": {"accuracy": acc, "loss": acc}}}, f)
  result = sweep.aggregate(planned, str(tmp_path), {
      "config": "cfg.py", "sweep": "lr_model", "base_overrides": {}})
  assert result["metrics"] == ["test.accuracy", "test.loss"]
  assert [r["status"] for r in result["runs"]] == ["finished"] * 3 + ["missing"]
  md = (tmp_path / "sweep.md").read_text()
  assert "| 0.01 | cnn | not run | not run | `lr=0.01,name=cnn` |" in md
  # ± is the sample std of per_seed (ddof = 1), not the stored "std".
  assert "| 0.001 | cnn | 60.00 ± 1.41 (n=2) | 0.6000 ± 0.0141 (n=2) |" in md
  assert "3 of 4 runs finished" in md
  assert (tmp_path / "sweep.png").exists()


def test_a_mixed_sweep_shows_the_base_value_a_run_keeps(tmp_path,
                                                       monkeypatch):
  """Runs that set different fields: a run keeps the base value of a field
  it does not set, and the table and figure showed '–' and 'None' for it.
  The value comes from the planned config, else the run's config.json (a
  rebuild from sweep.json alone)."""
  from jaxunknowns.report import plots  # pylint: disable=g-import-not-at-top
  base = {"optim": {"lr": 0.003}, "model": {"name": "mlp"}}
  runs = [{"optim.lr": 0.001}, {"optim.lr": 0.03}, {"model.name": "cnn"}]
  fields = sweep.swept_fields(runs)
  planned = []
  for i, overrides in enumerate(runs):
    name = sweep.run_name(overrides, fields)
    # The last run is read back from its config.json.
    planned.append(sweep.Run(name, overrides, base if i < 2 else None,
                             str(tmp_path / name)))
    os.makedirs(planned[-1].workdir)
    acc = {"mean": 0.5 + 0.1 * i, "std": 0.01, "per_seed": [0.49, 0.51]}
    with open(Path(planned[-1].workdir) / "summary.json", "w") as f:
      json.dump({"final": {"test": {"accuracy": acc}}}, f)
  with open(Path(planned[-1].workdir) / "config.json", "w") as f:
    json.dump(base, f)
  made, subplots = [], plots.subplots
  monkeypatch.setattr(plots, "subplots",
                      lambda *a, **k: made.append(subplots(*a, **k)) or made[-1])
  result = sweep.aggregate(planned, str(tmp_path), {
      "config": "cfg.py", "sweep": "mixed", "base_overrides": {}})
  assert [r["values"] for r in result["runs"]] == [
      {"optim.lr": 0.001, "model.name": "mlp"},
      {"optim.lr": 0.03, "model.name": "mlp"},
      {"optim.lr": 0.003, "model.name": "cnn"}]
  md = (tmp_path / "sweep.md").read_text()
  assert "| 0.003 | cnn | 70.00 ± 1.41 (n=2) |" in md, md
  assert "None" not in md and "| – |" not in md
  (_, ax), = made
  assert [t.get_text() for t in ax.get_legend().get_texts()] == [
      "model.name=mlp", "model.name=cnn"]
  assert ax.get_xscale() == "log"  # every x numeric: 0.001, 0.03, 0.003
  assert [list(c.lines[0].get_xdata()) for c in ax.containers] == [
      [0.001, 0.03], [0.003]]


def test_report_command_rebuilds_a_sweep_root(finished_sweep, monkeypatch):
  """`python -m jaxunknowns.report_cli --workdir=ROOT` on a sweep root
  rebuilds sweep.json/.md/.png from sweep.json alone (no config file)."""
  from jaxunknowns import report_cli  # pylint: disable=g-import-not-at-top
  root, _ = finished_sweep
  saved = read_json(root / "sweep.json")
  md = (root / "sweep.md").read_text()
  for name in ("sweep.md", "sweep.png"):
    os.remove(root / name)
  monkeypatch.setattr(main_lib, "run", _must_not_run)
  assert report_cli.rebuild_all([str(root)]) == [str(root / "sweep.md")]
  assert read_json(root / "sweep.json") == saved
  assert (root / "sweep.md").read_text() == md
  assert (root / "sweep.png").exists()


def test_report_of_a_copied_root_reads_its_own_runs(finished_sweep, tmp_path):
  """sweep.json holds each run's absolute workdir: rebuilding a root copied
  or moved elsewhere read the runs at the old place (or, gone, listed them
  all as missing), exit 0. A run's folder is ROOT/NAME, as plan made it."""
  from jaxunknowns import report_cli  # pylint: disable=g-import-not-at-top
  copy = tmp_path / "copy"
  shutil.copytree(finished_sweep[0], copy)
  (copy / "lr=0.003" / "summary.json").unlink()
  report_cli.rebuild_all([str(copy)])
  saved = read_json(copy / "sweep.json")
  assert [r["workdir"] for r in saved["runs"]] == [
      str(copy / "lr=0.001"), str(copy / "lr=0.003")]
  # Its folder is there without summary.json: begun, not finished.
  assert [r["status"] for r in saved["runs"]] == ["finished", "unfinished"]
  assert "| unfinished |" in (copy / "sweep.md").read_text()


@pytest.mark.parametrize("damage,needle", [
    (lambda s: s.update(base_overrides=[1]), "'base_overrides' that is not"),
    (lambda s: s.update(sweep=5), "'sweep' that is not a string"),
    (lambda s: s.update(runs=[]), "lists no runs"),
    (lambda s: s["runs"][0].update(name="../elsewhere"), "folder name"),
    (lambda s: s["runs"][1].update(name=s["runs"][0]["name"]), "distinct"),
    (lambda s: s["runs"][0].update(overrides={"optim.lr": {"a": 1}}),
     "without overrides"),
    (lambda s: s.update(runs=[1, 2]), "run 0"),
], ids=["base_overrides", "sweep", "no_runs", "name_outside", "name_twice",
        "overrides", "runs"])
def test_report_of_a_damaged_sweep_json_is_one_line(finished_sweep, tmp_path,
                                                     damage, needle):
  """Each was rebuilt into a table anyway (exit 0), or ended in a message
  quoting a Python TypeError ('sweep.json lacks string indices must be
  integers'), or in a TypeError from the figure."""
  from jaxunknowns import report_cli  # pylint: disable=g-import-not-at-top
  copy = tmp_path / "copy"
  shutil.copytree(finished_sweep[0], copy)
  saved = read_json(copy / "sweep.json")
  damage(saved)
  (copy / "sweep.json").write_text(json.dumps(saved))
  before = snapshot(tmp_path)
  with pytest.raises(UserError) as info:
    report_cli.rebuild_all([str(copy)])
  message = str(info.value)
  assert "\n" not in message, message
  for want in (str(copy / "sweep.json"), needle, "--aggregate_only"):
    assert want in message, (want, message)
  assert snapshot(tmp_path) == before


@pytest.mark.parametrize("text", ['{"final": {"te', "[1]"])
def test_damaged_run_summary_stops_the_sweep_before_it_runs(
    finished_sweep, tmp_path, monkeypatch, text):
  """A finished run's summary.json damaged afterwards: rerunning the sweep
  (or --aggregate_only) skipped that run, then aggregating ended in a
  JSONDecodeError / AttributeError traceback."""
  copy = tmp_path / "copy"
  shutil.copytree(finished_sweep[0], copy)
  summary = copy / "lr=0.001" / "summary.json"
  summary.write_text(text)
  monkeypatch.setattr(main_lib, "run", _must_not_run)
  before = snapshot(copy)
  for aggregate_only in (False, True):
    with pytest.raises(UserError) as info:
      sweep.run_sweep(TRAIN, str(copy), "lr", TINY,
                      aggregate_only=aggregate_only)
    message = str(info.value)
    for needle in (str(summary), "damaged", "delete it and rerun"):
      assert needle in message, (needle, message)
  assert snapshot(copy) == before


def test_a_sweep_over_the_norm_judges_each_norms_fields_per_run(
    tmp_path, monkeypatch):
  """model.num_groups is read under group norm only: swept beside the norm
  (zipped, the batch-norm run at its default) every run plans; set for the
  whole sweep, the batch-norm run would record a num_groups it never read,
  so the sweep is refused in one line naming that run, before any run."""
  monkeypatch.setattr(main_lib, "run", _must_not_run)
  root = tmp_path / "root"
  spec = write_config(tmp_path, '{"s": zipped(**{"model.norm": ["batch", '
                      '"group"], "model.num_groups": [8, 2]})}')
  from jaxunknowns import config_loading, validation  # pylint: disable=g-import-not-at-top
  base = config_loading.load_config(spec)
  base.lock()
  planned = sweep.plan(base, sweep.load_sweeps(spec)["s"], "s", str(root),
                       references=validation.references_of(spec))
  assert [(r.config.model.norm, r.config.model.num_groups) for r in planned
          ] == [("batch", 8), ("group", 2)]
  spec = write_config(tmp_path, '{"s": grid(**{"model.norm": ["batch", '
                      '"group"]})}')
  with pytest.raises(UserError) as info:
    sweep.run_sweep(spec, str(root), "s", {"model.num_groups": 2})
  message = str(info.value)
  assert "\n" not in message and "norm=batch" in message, message
  assert "model.num_groups" in message, message
  assert not root.exists()


def test_a_root_in_use_by_another_sweep_is_refused(tmp_path, monkeypatch):
  """Two sweeps started at once into one root interleaved their checkpoints
  (one crashed, the root unreadable after) and wrote every metrics row
  twice: the second is refused in one line, the root as it was; the lock
  goes with the process that held it."""
  monkeypatch.setattr(main_lib, "run", _must_not_run)
  from jaxunknowns import paths  # pylint: disable=g-import-not-at-top
  root = tmp_path / "root"
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from jaxunknowns import paths\n"
       f"with paths.machine_lock({str(root)!r}, 'sweep workdir'):\n"
       "  print('held', flush=True); time.sleep(600)"],
      cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(UserError) as info:
      sweep.run_sweep(TRAIN, str(root), "lr", TINY)
    message = str(info.value)
    assert "\n" not in message and "in use by another process" in message
    assert f"pid {holder.pid}" in message, message
    assert not root.exists()
    # A dry run writes nothing and takes no lock.
    sweep.run_sweep(TRAIN, str(root), "lr", TINY, dry_run=True,
                    out=io.StringIO())
  finally:
    holder.kill()
    holder.wait()
  with paths.machine_lock(str(root), "sweep workdir"):  # released by the kill
    pass


def test_a_released_lock_leaves_no_file_and_no_second_holder(tmp_path,
                                                             monkeypatch):
  """Every workdir and sweep root left a lock file behind in
  /tmp/jaxunknowns-locks-UID. The holder now removes it; a process that had
  opened the old file meanwhile gets a lock on an unlinked file, which must
  not count: it opens the path anew, so a third process is still refused."""
  from jaxunknowns import paths  # pylint: disable=g-import-not-at-top
  root = str(tmp_path / "root")
  stale_name, stale_fd = paths._lock_file(root)  # opened before the release
  with paths.machine_lock(root, "sweep workdir"):
    assert os.path.exists(stale_name)
  assert not os.path.exists(stale_name)
  opened = [(stale_name, stale_fd)]
  real = paths._lock_file
  monkeypatch.setattr(paths, "_lock_file",
                      lambda p: opened.pop() if opened else real(p))
  with paths.machine_lock(root, "sweep workdir"):
    assert os.path.exists(stale_name)  # the path's own file, held
    probe = subprocess.run(
        [sys.executable, "-c", "from jaxunknowns import paths\n"
         f"with paths.machine_lock({root!r}, 'sweep workdir'): pass"],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert probe.returncode != 0 and "in use by another process" in (
        probe.stderr), probe.stderr[-500:]
  assert not os.path.exists(stale_name)


def test_a_sweep_killed_in_its_first_run_still_names_its_root(tmp_path,
                                                              monkeypatch):
  """sweep.json was written only at the end: a sweep killed during its
  first run left run folders and no name, and another sweep then trained
  into the same root, mixing the two."""
  spec = write_config(tmp_path, '{"a": [{"optim.lr": 1e-3}, '
                      '{"optim.lr": 3e-3}], "b": [{"seed": 0}, {"seed": 1}]}')
  root = tmp_path / "root"

  def killed(config, workdir, *args, **kwargs):
    os.makedirs(workdir)  # a run that had begun to write
    raise KeyboardInterrupt

  monkeypatch.setattr(main_lib, "run", killed)
  with pytest.raises(KeyboardInterrupt):
    sweep.run_sweep(spec, str(root), "a", TINY, vmap=False)
  assert read_json(root / "sweep.json")["sweep"] == "a"
  monkeypatch.setattr(main_lib, "run", _must_not_run)
  with pytest.raises(UserError, match=r"holds another sweep"):
    sweep.run_sweep(spec, str(root), "b", TINY)


def test_ctrl_c_in_a_sweep_is_one_line_and_the_rerun_resumes(tmp_path):
  """Ctrl-C in a sweep's run printed a traceback (orbax's threads, or Ray's
  wait) where `main` prints one line: now the same line and exit 130, and
  the same command finishes the sweep."""
  import signal  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  command = [sys.executable, "-m", "jaxunknowns.sweep", f"--config={TRAIN}",
             f"--workdir={tmp_path / 'root'}", "--sweep=lr", "--novmap",
             "--config.train.steps=600"]
  proc = forkserver.popen(command, cwd=ROOT, env=ENV, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  for line in proc.stdout:  # the first run has started: Ctrl-C in it
    if ": running" in line:
      time.sleep(3)
      break
  # Once: one that lands in a gc callback is delivered again by the CLI
  # (main.quiet_unraisables; the sweep went on to exit 0 once in a few).
  proc.send_signal(signal.SIGINT)
  err = proc.stderr.read()
  assert proc.wait(timeout=300) == 130, err[-3000:]
  assert "Traceback" not in err, err[-3000:]
  assert err.strip().splitlines()[-1] == (
      "interrupted: rerun the same command to resume from the last checkpoint")
  again = subprocess.run(command, cwd=ROOT, env=ENV, text=True,
                         capture_output=True, timeout=600)
  assert again.returncode == 0, again.stderr[-3000:]
  saved = read_json(tmp_path / "root" / "sweep.json")
  assert {r["status"] for r in saved["runs"]} == {"finished"}


def test_sigterm_in_a_sweep_saves_its_run_and_the_rerun_resumes(tmp_path):
  """SIGTERM (a preempted machine's notice) in a sweep's run: the run
  saves the step it reached, the sweep stops in main's one line with exit
  143, and the same command resumes that run from its step and finishes
  the sweep. The signal is real, sent by the run to itself at step 100."""
  command = [sys.executable, "-m", "jaxunknowns.sweep", f"--config={TRAIN}",
             f"--workdir={tmp_path / 'root'}", "--sweep=lr", "--novmap",
             "--config.train.steps=300", "--config.train.checkpoint_every=200"]
  first = subprocess.run(command, cwd=ROOT, text=True, capture_output=True,
                         env=dict(ENV, JAXUNKNOWNS_EXIT_AT="sigterm@logged:100"),
                         timeout=600)
  assert first.returncode == 143, first.stderr[-3000:]
  assert first.stderr.strip().splitlines()[-1] == (
      "stopped by SIGTERM at step 100, saved in a checkpoint: rerun the same "
      "command to resume from it")
  saved = [p.parent.parent for p in (tmp_path / "root").glob("*/checkpoints/100")]
  assert len(saved) == 1, list((tmp_path / "root").iterdir())
  again = subprocess.run(command, cwd=ROOT, env=ENV, text=True,
                         capture_output=True, timeout=600)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "resuming from the checkpoint at step 100" in again.stderr
  assert {r["status"] for r in read_json(tmp_path / "root" / "sweep.json")[
      "runs"]} == {"finished"}


def test_a_run_stopped_by_its_data_names_the_cause_in_the_last_line(
    tmp_path):
  """A run whose batch is larger than its training set (a check that needs
  the data, made when the run starts) failed after the other trained; the
  sweep's one line said only to retry, which fails the same way every
  time, and the cause was on stdout alone."""
  spec = write_config(tmp_path, "{'s': zipped(**{'train.batch_size': "
                      "[20, 50]})}")
  with pytest.raises(UserError) as raised:
    sweep.run_sweep(spec, str(tmp_path / "root"), "s",
                    {**TINY, "data.train_size": 40}, vmap=False)
  assert re.fullmatch(
      r"1 of 2 runs of sweep 's' failed \(batch_size=50: .*larger than "
      r"the training set \(40 examples\).*\); the others are aggregated in "
      r".*sweep\.md; rerun the command to retry them once what stopped "
      r"them is fixed", str(raised.value)), str(raised.value)


def test_headline_numbers_of_an_experiment_without_a_final_section():
  """A sweep of sam found none of its numbers (five dicts deep), and its
  sweep.md said the summaries held none."""
  stat = {"mean": 0.9, "std": 0.01, "per_seed": [0.89, 0.91]}
  summary = {"experiment": "sam", "arms": {"sam": {"by_rho": {"0.05": {
      "test_accuracy": stat}}}}, "levels": [{"test_accuracy": stat}]}
  assert sweep.headline_numbers(summary) == {
      "arms.sam.by_rho.0.05.test_accuracy": stat}


def test_a_run_with_its_own_checkpoints_resumes_apart_not_in_a_group(
    finished_sweep, tmp_path, capsys):
  """Killed while trained apart (--novmap), a run has checkpoints of its
  own: the next sweep (vmapped by default) trained it again from step 0 in
  a group. Now it resumes from them alone; a run with none trains afresh."""
  copy = tmp_path / "root"
  shutil.copytree(finished_sweep[0], copy)
  for name in ("lr=0.001", "lr=0.003"):
    os.remove(copy / name / "summary.json")
  shutil.rmtree(copy / "lr=0.001" / "checkpoints")
  result = sweep.run_sweep(TRAIN, str(copy), "lr", TINY)
  assert "lr=0.003 resume from their own checkpoints" in capsys.readouterr().out
  assert [r["status"] for r in result["runs"]] == ["finished", "finished"]
  resumed = read_json(copy / "lr=0.003" / "summary.json")
  assert resumed["resumed_from_step"] == TINY["train.steps"]
  assert read_json(copy / "lr=0.001" / "summary.json")[
      "resumed_from_step"] is None


# -----------------------------------------------------------------------------
# Bad grids and damaged aggregates, named
# -----------------------------------------------------------------------------
@pytest.mark.parametrize("points,needles", [
    ([{"data.name": "a/b"}, {"data.name": "a_b"}],
     ["data.name='a/b'", "data.name='a_b'", "'name=a_b'", "folder name writes"
      " their data.name alike", "make the values differ"]),
    ([{"optim.lr": 0.1, "model.widths": (1, 2)},
      {"optim.lr": 0.1, "model.widths": "1-2"}],
     ["model.widths=(1, 2)", "model.widths='1-2'", "joins a list's items"]),
    ([{"optim.lr": 0.1}, {"optim.lr": 0.1000001}],
     ["optim.lr=0.1000001", "beyond the 6 significant digits"]),
    ([{"seed": 0}, {"seed": 1}, {"seed": 1}],
     ["points 1 (seed=1) and 2 (seed=1)", "the same overrides twice"]),
], ids=["characters", "list", "digits", "twice"])
def test_points_that_share_a_run_folder_are_named_with_the_cause(
    tmp_path, points, needles):
  """Values that differ only in what a folder name drops ('a/b', 'a_b')
  were refused for 6 significant digits they do not have, or for the first
  one's value (an unknown dataset 'a/b'), which was not the problem."""
  from jaxunknowns import config_loading  # pylint: disable=g-import-not-at-top
  base = config_loading.load_config(TRAIN)
  base.lock()
  with pytest.raises(UserError) as info:
    sweep.plan(base, points, "s", str(tmp_path / "root"))
  message = str(info.value)
  assert "\n" not in message, message
  for needle in ["sweep 's': points", "would share the run folder", *needles]:
    assert needle in message, (needle, message)
  if "digits" not in needles[-1]:
    assert "significant digits" not in message, message
  assert not (tmp_path / "root").exists()


@pytest.mark.parametrize("bad,needle", [
    ('[{"optim.lr": 0.1}, {1: 2}]', "sweep 'bad', point 1 (1=2) has field 1"),
    ('{"optim.lr": 0.1}', "sweep 'bad' is {'optim.lr': 0.1}, not a list"),
    ('[{"optim.lr": 0.1}, "optim.lr=0.2"]',
     "sweep 'bad', point 1 is 'optim.lr=0.2', not a dict"),
], ids=["field", "entry", "point"])
def test_a_bad_get_sweep_entry_is_named(tmp_path, bad, needle):
  """One malformed entry of get_sweep refused every sweep of the file (the
  good one too) with the same line, naming neither the entry nor the
  point."""
  spec = write_config(tmp_path, '{"good": grid(**{"optim.lr": [0.1, 0.2]}), '
                      f'"bad": {bad}}}')
  with pytest.raises(UserError) as info:
    sweep.load_sweeps(spec)
  message = str(info.value)
  assert "\n" not in message, message
  assert "must return a non-empty" in message and needle in message, message


def test_a_bad_value_the_run_name_cannot_show_names_its_point(tmp_path):
  """A value a folder name garbles (an object, a dict) was named only by
  that folder ('lr=__a___1_')."""
  from jaxunknowns import config_loading  # pylint: disable=g-import-not-at-top
  base = config_loading.load_config(TRAIN)
  base.lock()
  with pytest.raises(UserError) as info:
    sweep.plan(base, [{"optim.lr": 0.1}, {"optim.lr": {"a": 1}}], "s",
               str(tmp_path / "root"))
  assert "sweep 's', run lr=__a___1_ (optim.lr={'a': 1}): " in str(
      info.value), info.value


@pytest.mark.parametrize("text,needle", [
    ('{"config": "x", "swe', "is not readable JSON (JSONDecodeError)"),
    ("[1, 2]", "is a JSON list, not an object"),
    ('{"config": "c.py", "sweep": "lr", "base_overrides": {}, "runs": 5}',
     "has a 'runs' that is not a list"),
], ids=["torn", "list", "runs"])
def test_a_damaged_sweep_json_is_rebuilt_not_a_traceback(tmp_path, text,
                                                          needle):
  """sweep.json is the sweep's aggregate, made again from its runs'
  summaries: a torn or edited one ended the sweep's command (its
  --aggregate_only too) in a JSONDecodeError, AttributeError or TypeError
  traceback once aggregating. The command now says it is damaged and
  rebuilds it; report_cli, which knows the runs only from it, refuses it
  in one line saying to run that command."""
  from jaxunknowns import report_cli  # pylint: disable=g-import-not-at-top
  root = tmp_path / "root"
  root.mkdir()
  (root / "sweep.json").write_text(text)
  meta = {"config": TRAIN, "sweep": "lr", "base_overrides": {}}
  out = io.StringIO()
  assert sweep.run_sweep(TRAIN, str(root), "lr", dry_run=True, out=out) is None
  assert f"{root / 'sweep.json'} {needle}: damaged; the sweep rebuilds it" in (
      out.getvalue()), out.getvalue()
  with pytest.raises(UserError) as info:
    report_cli.rebuild_all([str(root)])
  message = str(info.value)
  assert "\n" not in message, message
  for want in (str(root / "sweep.json"), needle, "--aggregate_only"):
    assert want in message, (want, message)
  assert (root / "sweep.json").read_text() == text  # as it was, till now
  runs = [sweep.Run("lr=0.1", {"optim.lr": 0.1}, None, str(root / "lr=0.1"))]
  result = sweep.aggregate(runs, str(root), meta)
  assert read_json(root / "sweep.json") == result
  assert [r["status"] for r in result["runs"]] == ["missing"]
