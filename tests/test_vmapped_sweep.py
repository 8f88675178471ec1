"""`sweep --vmap`: the runs of a sweep over per-run fields train as one
compiled program and leave what separate runs leave (hparams.py)."""

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from jaxunknowns import hparams, sweep, validation
from jaxunknowns import trainer as trainer_lib
from jaxunknowns.checkpoints import Checkpoints
from jaxunknowns.errors import UserError
from run_helpers import assert_report_rebuilds, read_json
from test_sweep import TINY, TRAIN, write_config

RUNS = ('[{"optim.lr": 0.03, "optim.weight_decay": 0.0, "optim.momentum": 0.9},'
        ' {"optim.lr": 0.1, "optim.weight_decay": 1e-3, "optim.momentum": 0.5},'
        ' {"optim.lr": 0.03, "optim.weight_decay": 1e-3, "seed": 5}]')
# Momentum SGD: Adam divides by sqrt(v), which turns float32 rounding
# (vmapped vs single matmuls) into 1e-4 differences within 10 steps; Adam's
# per-run values are checked in test_trainer without that noise.
MOMENTUM = {**TINY, "optim.name": "momentum"}


def _files(folder: Path):
  """What a run leaves: its files, and the steps of its checkpoints and
  snapshots (orbax names its files by content; TensorBoard by time)."""
  return sorted({"/".join(p.relative_to(folder).parts[
      :1 if p.relative_to(folder).parts[0] == "tensorboard" else 2])
                 for p in folder.rglob("*") if p.is_file()})


def _rows(workdir: Path):
  return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]


def _assert_same_numbers(run_a: Path, run_b: Path):
  """Two runs' final accuracies and losses and their metric rows agree to
  float rounding (vmapped vs single matmuls)."""
  sa, sb = read_json(run_a / "summary.json"), read_json(run_b / "summary.json")
  for split in ("train", "test"):
    for metric in ("accuracy", "loss"):
      np.testing.assert_allclose(sa["final"][split][metric]["per_seed"],
                                 sb["final"][split][metric]["per_seed"],
                                 rtol=1e-5)
  rows_a, rows_b = _rows(run_a), _rows(run_b)
  assert [(r["step"], r["split"], r["seed"]) for r in rows_a] == [
      (r["step"], r["split"], r["seed"]) for r in rows_b]
  for ra, rb in zip(rows_a, rows_b):
    assert ra.keys() == rb.keys()
    np.testing.assert_allclose([ra[k] for k in sorted(ra) if k != "split"],
                               [rb[k] for k in sorted(rb) if k != "split"],
                               rtol=1e-4, atol=1e-6)


def kill_a_group_after_its_first_checkpoint(monkeypatch, spec, root,
                                            settings, at=10):
  """Runs the sweep's runs as one vmapped group, stopped (as by Ctrl-C)
  once its checkpoint at step `at` has landed: its scratch folder is left."""
  def killed_after_the_first_checkpoint(point, step, checkpoints=None):
    if (point, step) == ("checkpointed", at):
      checkpoints.wait()
      raise KeyboardInterrupt

  with monkeypatch.context() as m:
    m.setattr(trainer_lib, "exit_if_asked", killed_after_the_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
      sweep.run_sweep(spec, str(root), "s", settings, vmap=True)
  assert [p for p in os.listdir(root) if p.startswith(".vmapped-")]


def a_killed_group_of_two(tmp_path, monkeypatch):
  """(spec, settings, root) of a sweep of two momentum runs of 20 steps whose
  vmapped group was killed after its checkpoint at step 10."""
  spec = write_config(tmp_path, '{"s": [{"optim.lr": 0.03}, '
                      '{"optim.lr": 0.1}]}')
  settings = {**MOMENTUM, "train.steps": 20}
  root = tmp_path / "root"
  kill_a_group_after_its_first_checkpoint(monkeypatch, spec, root, settings)
  return spec, settings, root


def test_vmapped_sweep_leaves_what_separate_runs_leave(tmp_path, capsys):
  spec = write_config(tmp_path, '{"s": ' + RUNS + '}')
  together = sweep.run_sweep(spec, str(tmp_path / "vmapped"), "s", MOMENTUM,
                             vmap=True)
  assert "3 runs as one vmapped program" in capsys.readouterr().out
  apart = sweep.run_sweep(spec, str(tmp_path / "apart"), "s", MOMENTUM,
                          vmap=False)
  assert "vmapped" not in capsys.readouterr().out
  assert sorted(os.listdir(tmp_path / "vmapped")) == sorted(
      os.listdir(tmp_path / "apart"))  # the group's scratch folder is gone
  for a, b in zip(together["runs"], apart["runs"]):
    assert (a["name"], a["overrides"], a["status"]) == (
        b["name"], b["overrides"], "finished")
    run_a, run_b = Path(a["workdir"]), Path(b["workdir"])
    assert _files(run_a) == _files(run_b)
    assert read_json(run_a / "config.json") == read_json(run_b / "config.json")
    sa, sb = read_json(run_a / "summary.json"), read_json(run_b / "summary.json")
    assert sa["seeds"] == sb["seeds"]
    # The wall time and steps/s are the group's program's, and say so: 3
    # configs of 2 seeds.
    assert sa["trained_together"] == {"configs": 3, "runs": 6}
    assert "trained_together" not in sb
    assert ("steps/s, both of the one vmapped program that trained 3 "
            "configs of the sweep together (6 runs of config × seed)."
            in (run_a / "report.md").read_text())
    _assert_same_numbers(run_a, run_b)
  # Different values really train differently.
  finals = [r["metrics"]["train.loss"]["mean"] for r in together["runs"]]
  assert len(set(finals)) == 3
  assert_report_rebuilds(Path(together["runs"][1]["workdir"]))

  # A rerun trains nothing: every run is finished.
  def must_not_train(*args, **kwargs):
    raise AssertionError("trained again")
  hparams_train = hparams.train_together
  try:
    hparams.train_together = must_not_train
    sweep.run_sweep(spec, str(tmp_path / "vmapped"), "s", MOMENTUM, vmap=True)
  finally:
    hparams.train_together = hparams_train
  assert capsys.readouterr().out.count("finished, skipped") == 3


def test_fields_that_change_the_program_fall_back_naming_them(tmp_path):
  spec = write_config(tmp_path, '{"s": grid(**{"optim.lr": [1e-3, 1e-2], '
                      '"model.name": ["mlp", "mnist1d_cnn"], '
                      '"train.batch_size": [50]})}')
  base = sweep.apply_overrides(
      __import__("jaxunknowns.config_loading").config_loading.load_config(spec),
      TINY, "test")
  # As run_sweep does: the file's own values (runlocal's MLP widths, which
  # the CNN does not read) are left alone.
  runs = sweep.plan(base, sweep.load_sweeps(spec)["s"], "s",
                    str(tmp_path / "root"),
                    references=validation.references_of(spec))
  out = io.StringIO()
  assert sweep.run_vmapped(runs, str(tmp_path / "root"), False, out,
                           asked=True) == ({}, runs)
  assert ("vmap: swept fields model.name, train.batch_size change the "
          "compiled program; the runs train as separate programs") in (
              out.getvalue())
  assert not (tmp_path / "root").exists()
  with pytest.raises(UserError, match="does not combine with --executor=ray"):
    sweep.run_sweep(TRAIN, str(tmp_path / "ray"), "lr", TINY, vmap=True,
                    executor="ray")
  assert not (tmp_path / "ray").exists()  # refused before naming a root
  assert hparams.program_fields(["seed", "optim.lr", "data.label_noise",
                                 "data.train_size"]) == ["data.train_size"]


def test_label_noise_is_a_run_axis_with_each_runs_own_labels(tmp_path, capsys):
  """Runs that differ in data.label_noise share one program, each with the
  noisy labels a run of its own draws: the same numbers as separate runs,
  the train split measured against each run's own labels."""
  spec = write_config(tmp_path, '{"s": [{"data.label_noise": 0.0}, '
                      '{"data.label_noise": 0.5}, '
                      '{"data.label_noise": 0.5, "optim.lr": 0.1}]}')
  together = sweep.run_sweep(spec, str(tmp_path / "vmapped"), "s", MOMENTUM,
                             vmap=True)
  assert "3 runs as one vmapped program" in capsys.readouterr().out
  apart = sweep.run_sweep(spec, str(tmp_path / "apart"), "s", MOMENTUM,
                          vmap=False)
  finals = []
  for a, b in zip(together["runs"], apart["runs"]):
    sa = read_json(Path(a["workdir"]) / "summary.json")
    sb = read_json(Path(b["workdir"]) / "summary.json")
    for split in ("train", "test"):
      for metric in ("accuracy", "loss"):
        np.testing.assert_allclose(sa["final"][split][metric]["per_seed"],
                                   sb["final"][split][metric]["per_seed"],
                                   rtol=1e-5, err_msg=(a["name"], split))
    finals.append(sa["final"]["train"]["loss"]["mean"])
  assert finals[0] != finals[1]  # the noisy labels reached the noisy run


def test_one_diverging_run_does_not_fail_the_others(tmp_path, capsys):
  """The diverging run fails alone and the other finishes in the same
  program (no fallback to separate programs), each as it would apart: the
  same error text, the same final numbers."""
  runs = '{"s": [{"optim.lr": 1e-3}, {"optim.lr": 1e30}]}'
  spec = write_config(tmp_path, runs)
  outcome = {}
  for mode, vmap in (("together", True), ("apart", False)):
    root = tmp_path / mode
    with pytest.raises(UserError, match=r"1 of 2 runs of sweep 's' failed.*"
                       r"retry them once each diverged run's value is "
                       r"changed or dropped"):
      sweep.run_sweep(spec, str(root), "s", TINY, vmap=vmap)
    outcome[mode] = (capsys.readouterr().out, read_json(root / "sweep.json"))
  out, saved = outcome["together"]
  assert "2 runs as one vmapped program" in out
  assert "separate programs" not in out
  assert [r["status"] for r in saved["runs"]] == ["finished", "failed"]
  error = saved["runs"][1]["error"]
  assert error == outcome["apart"][1]["runs"][1]["error"]
  assert "loss became" in error
  # A single run's advice (--overwrite) would retrain every run of a sweep.
  assert "--overwrite" not in error and "change or drop its value" in error
  assert "lower optim.lr (now 1e+30)" in error, error
  root = tmp_path / "together"
  assert not [p for p in os.listdir(root) if p.startswith(".vmapped")]
  # Aggregating again reruns nothing and keeps why the run failed.
  sweep.run_sweep(spec, str(root), "s", TINY, aggregate_only=True)
  assert read_json(root / "sweep.json")["runs"] == saved["runs"]
  a, b = (read_json(Path(outcome[m][1]["runs"][0]["workdir"]) / "summary.json")
          for m in ("together", "apart"))
  np.testing.assert_allclose(a["final"]["test"]["accuracy"]["per_seed"],
                             b["final"]["test"]["accuracy"]["per_seed"],
                             rtol=1e-5)


def test_a_killed_group_rerun_with_novmap_resumes_each_run_apart(
    tmp_path, monkeypatch, capsys):
  """A vmapped group killed mid-training keeps its checkpoints in a scratch
  folder. Rerun with --novmap, its runs trained again from step 0 (the
  group's progress dropped) beside that folder. Now each run resumes apart
  from its slice of the group's newest checkpoint, the folder goes, and
  every run ends as in a sweep trained apart from the start: the same
  files, rows and numbers (to float rounding, vmapped vs single matmuls).
  Two runs get nothing and train from step 0: one that diverged in the
  group (handed its NaN weights, it said it diverged at the step after the
  checkpoint, not at its own), and one whose folder the user deleted to
  retrain it (handed out, it held checkpoints without config.json, which
  every later run refused)."""
  spec = write_config(tmp_path, '{"s": [{"optim.lr": 0.03}, '
                      '{"optim.lr": 0.1}, {"optim.lr": 1e30}]}')
  settings = {**MOMENTUM, "train.steps": 20}
  root = tmp_path / "root"
  failed = r"1 of 3 runs of sweep 's' failed"
  kill_a_group_after_its_first_checkpoint(monkeypatch, spec, root, settings)
  shutil.rmtree(read_json(root / "sweep.json")["runs"][1]["workdir"])
  capsys.readouterr()

  resumed_at = {}
  restore_latest = Checkpoints.restore_latest

  def spy(self, target):
    out = restore_latest(self, target)
    resumed_at[self.directory] = out and out[0]
    return out

  with monkeypatch.context() as m:
    m.setattr(Checkpoints, "restore_latest", spy)
    with pytest.raises(UserError, match=failed):
      sweep.run_sweep(spec, str(root), "s", settings, vmap=False)
  out = capsys.readouterr().out
  assert not [p for p in os.listdir(root) if p.startswith(".vmapped-")]
  with pytest.raises(UserError, match=failed):
    sweep.run_sweep(spec, str(tmp_path / "straight"), "s", settings,
                    vmap=False)
  resumed, straight = (read_json(r / "sweep.json")["runs"]
                       for r in (root, tmp_path / "straight"))
  names = [r["name"] for r in resumed]
  assert (f"--novmap: {names[0]} resume apart from the vmapped program's "
          "checkpoint at step 10") in out
  assert f"--novmap: {names[1]} trains from step 0 (its workdir holds no run)" in out
  assert f"--novmap: {names[2]} trains from step 0 (a run of it diverged)" in out
  for i, (a, b) in enumerate(zip(resumed, straight)):
    run_a, run_b = Path(a["workdir"]), Path(b["workdir"])
    assert resumed_at[str(run_a / "checkpoints")] == (10 if i == 0 else None)
    if i < 2:
      assert a["status"] == b["status"] == "finished"
      assert _files(run_a) == _files(run_b)
      _assert_same_numbers(run_a, run_b)
    else:  # (its folder keeps the group's rows before the divergence)
      assert a["status"] == b["status"] == "failed"
      assert a["error"] == b["error"] and "loss became" in a["error"]


def test_a_killed_group_survives_a_failed_or_stopped_hand_out(
    tmp_path, monkeypatch, capsys):
  """A hand-out whose group trainer could not be built (its data missing
  for a moment) deleted the group's checkpoints: after the fix every run
  trained from step 0. Now that error stops the sweep in its line and the
  checkpoints stay. A hand-out stopped partway (Ctrl-C between two runs'
  saves) left the next rerun looking for another group (the runs handed
  out hold checkpoints, so they were no longer in it), and the others
  trained from step 0: now they get their slices, and every run resumes
  at the group's step."""
  spec = write_config(tmp_path, '{"s": [{"optim.lr": 0.03}, '
                      '{"optim.lr": 0.1}, {"optim.lr": 0.05}]}')
  settings = {**MOMENTUM, "train.steps": 20}
  root = tmp_path / "root"
  group = lambda: [p for p in os.listdir(root) if p.startswith(".vmapped-")]

  def no_data(configs):
    raise UserError("could not build dataset 'mnist1d': made to fail")

  kill_a_group_after_its_first_checkpoint(monkeypatch, spec, root, settings)
  kept = group()
  with monkeypatch.context() as m:
    m.setattr(hparams, "_group", no_data)
    with pytest.raises(UserError, match="made to fail"):
      sweep.run_sweep(spec, str(root), "s", settings, vmap=False)
  assert group() == kept
  saves, save = [], Checkpoints.save

  def stopped_after_the_first_run(self, *args, **kwargs):
    saves.append(self.directory)
    if len(saves) == 3:  # the first run's snapshot and checkpoint landed
      raise KeyboardInterrupt
    return save(self, *args, **kwargs)

  with monkeypatch.context() as m:
    m.setattr(Checkpoints, "save", stopped_after_the_first_run)
    with pytest.raises(KeyboardInterrupt):
      sweep.run_sweep(spec, str(root), "s", settings, vmap=False)
  assert group() == kept
  capsys.readouterr()
  result = sweep.run_sweep(spec, str(root), "s", settings, vmap=False)
  names = [r["name"] for r in result["runs"]]
  assert (f"--novmap: {names[1]}, {names[2]} resume apart from the vmapped "
          "program's checkpoint at step 10") in capsys.readouterr().out
  assert not group()
  for r in result["runs"]:
    summary = read_json(Path(r["workdir"]) / "summary.json")
    assert r["status"] == "finished" and summary["resumed_from_step"] == 10


def test_a_killed_group_whose_sweep_changed_hands_its_runs_their_progress(
    tmp_path, monkeypatch, capsys):
  """A run added to the grid of a killed vmapped group makes another group
  (another scratch folder): the killed group's runs trained again from
  step 0, without a word, beside its checkpoints. Now they resume apart
  from their slices, at the group's step, ending as in a sweep trained
  apart from the start, and the new run trains from step 0. A group with
  a run dropped from the grid cannot be rebuilt: it says so."""
  spec = write_config(tmp_path, '{"s": [{"optim.lr": 0.03}, '
                      '{"optim.lr": 0.1}]}')
  settings = {**MOMENTUM, "train.steps": 20}
  root = tmp_path / "root"
  kill_a_group_after_its_first_checkpoint(monkeypatch, spec, root, settings)
  dropped = tmp_path / "dropped"
  shutil.copytree(root, dropped)
  grown = write_config(tmp_path, '{"s": [{"optim.lr": 0.03}, '
                       '{"optim.lr": 0.1}, {"optim.lr": 0.05}]}')
  capsys.readouterr()
  result = sweep.run_sweep(grown, str(root), "s", settings, vmap=True)
  out = capsys.readouterr().out
  names = [r["name"] for r in result["runs"]]
  assert (f"vmap: {names[0]}, {names[1]} resume apart from the vmapped "
          "program's checkpoint at step 10") in out
  assert not [p for p in os.listdir(root) if p.startswith(".vmapped-")]
  straight = sweep.run_sweep(grown, str(tmp_path / "straight"), "s", settings,
                             vmap=False)
  for i, (a, b) in enumerate(zip(result["runs"], straight["runs"])):
    run_a, run_b = Path(a["workdir"]), Path(b["workdir"])
    assert read_json(run_a / "summary.json")["resumed_from_step"] == (
        10 if i < 2 else None)
    assert _files(run_a) == _files(run_b)
    _assert_same_numbers(run_a, run_b)
  # The same killed group, its second run dropped from the grid.
  one = write_config(tmp_path, '{"s": [{"optim.lr": 0.03}]}')
  sweep.run_sweep(one, str(dropped), "s", settings, vmap=False)
  out = capsys.readouterr().out
  assert "the checkpoints of a killed vmapped group (.vmapped-" in out
  assert f"not resumed: its runs {names[1]} are no longer in the sweep" in out


def test_a_run_handed_out_at_its_last_step_reports_no_pace(tmp_path,
                                                          monkeypatch):
  """A group killed after its last checkpoint hands its runs their final
  state: resumed there, a run trains no step of its own, and its summary
  said 0 steps/s, a pace nobody measured. Now it records none (null) and
  its report says the steps/s were not measured."""
  spec = write_config(tmp_path, '{"s": [{"optim.lr": 0.03}, '
                      '{"optim.lr": 0.1}]}')
  settings = {**MOMENTUM, "train.steps": 20}
  root = tmp_path / "root"
  kill_a_group_after_its_first_checkpoint(monkeypatch, spec, root, settings,
                                          at=20)
  result = sweep.run_sweep(spec, str(root), "s", settings, vmap=False)
  for r in result["runs"]:
    workdir = Path(r["workdir"])
    summary = read_json(workdir / "summary.json")
    assert summary["resumed_from_step"] == 20
    assert summary["steps_per_second"] is None
    report = (workdir / "report.md").read_text()
    assert "Steps/s not measured" in report and "0 steps/s" not in report


def test_a_run_s_rows_cut_after_its_hand_out_are_refused(tmp_path,
                                                        monkeypatch):
  """A handed-out checkpoint recorded no row count, so a metrics.jsonl cut
  between the hand-out and the resume went unnoticed (its curves then
  lacked the group's rows); as after any checkpoint, the resume refuses."""
  from jaxunknowns import executors  # pylint: disable=g-import-not-at-top
  spec = write_config(tmp_path, '{"s": [{"optim.lr": 0.03}, '
                      '{"optim.lr": 0.1}]}')
  settings = {**MOMENTUM, "train.steps": 20}
  root = tmp_path / "root"
  kill_a_group_after_its_first_checkpoint(monkeypatch, spec, root, settings)

  def stopped(*args, **kwargs):
    raise KeyboardInterrupt
  with monkeypatch.context() as m:  # handed out, then stopped
    m.setattr(executors, "run_local", stopped)
    with pytest.raises(KeyboardInterrupt):
      sweep.run_sweep(spec, str(root), "s", settings, vmap=False)
  metrics = Path(read_json(root / "sweep.json")["runs"][0]["workdir"],
                 "metrics.jsonl")
  lines = metrics.read_text().splitlines(keepends=True)
  metrics.write_text("".join(lines[:len(lines) // 2]))
  with pytest.raises(UserError, match="was cut or deleted since"):
    sweep.run_sweep(spec, str(root), "s", settings, vmap=False)


@pytest.mark.parametrize("vmap", [True, False])
def test_a_killed_group_s_run_whose_rows_were_cut_is_refused(
    tmp_path, monkeypatch, vmap):
  """A group's checkpoints recorded no row counts (their folder is no run's),
  so a member's metrics.jsonl cut after the kill went unnoticed: the group
  resumed (or handed out, --novmap) and the run's curves lacked the rows
  before the checkpoint. Now each member's count is recorded, and a resume
  refuses a cut one as a run trained alone does."""
  spec, settings, root = a_killed_group_of_two(tmp_path, monkeypatch)
  metrics = Path(read_json(root / "sweep.json")["runs"][1]["workdir"],
                 "metrics.jsonl")
  assert metrics.read_text()
  metrics.write_text("")
  with pytest.raises(UserError, match="was cut or deleted since") as e:
    sweep.run_sweep(spec, str(root), "s", settings, vmap=vmap)
  assert "metrics.jsonl holds 0 metric rows" in str(e.value)


def test_a_run_deleted_from_a_killed_group_trains_from_step_0(
    tmp_path, monkeypatch, capsys):
  """A killed group resumed as one whatever its runs' folders held: a run
  deleted to train it again got the group's progress back, its curves cut
  at the checkpoint (README: a deleted run trains from step 0). Now the
  other runs resume apart from their slices and the deleted one trains from
  step 0; the numbers are a sweep's trained apart from the start."""
  spec, settings, root = a_killed_group_of_two(tmp_path, monkeypatch)
  shutil.rmtree(read_json(root / "sweep.json")["runs"][1]["workdir"])
  capsys.readouterr()
  result = sweep.run_sweep(spec, str(root), "s", settings, vmap=True)
  out = capsys.readouterr().out
  names = [r["name"] for r in result["runs"]]
  assert (f"vmap: {names[0]} resume apart from the vmapped program's "
          "checkpoint at step 10") in out
  assert f"vmap: {names[1]} trains from step 0 (its workdir holds no run)" in out
  straight = sweep.run_sweep(spec, str(tmp_path / "straight"), "s", settings,
                             vmap=False)
  for i, (a, b) in enumerate(zip(result["runs"], straight["runs"])):
    run_a, run_b = Path(a["workdir"]), Path(b["workdir"])
    assert read_json(run_a / "summary.json")["resumed_from_step"] == (
        10 if i == 0 else None)
    _assert_same_numbers(run_a, run_b)


def test_a_wiped_root_s_hidden_group_is_not_resumed_by_another_config(
    tmp_path, monkeypatch):
  """`rm -rf ROOT/*` leaves a killed group's hidden scratch folder, named by
  its runs' names alone: a rerun with another seed resumed the old seed's
  weights at step 10 and reported them as the new seed's."""
  spec, settings, root = a_killed_group_of_two(tmp_path, monkeypatch)
  for entry in os.listdir(root):
    if not entry.startswith("."):
      path = root / entry
      shutil.rmtree(path) if path.is_dir() else path.unlink()
  result = sweep.run_sweep(spec, str(root), "s", {**settings, "seed": 3},
                           vmap=True)
  for r in result["runs"]:
    summary = read_json(Path(r["workdir"]) / "summary.json")
    assert summary["seeds"] == [3, 4] and summary["resumed_from_step"] is None


def test_overwrite_deletes_a_killed_group_s_checkpoints(tmp_path, monkeypatch):
  """--novmap --overwrite left a killed group's checkpoints, so a later
  rerun of the same group resumed from the progress overwritten: now they
  go, and every run trains from step 0."""
  spec = write_config(tmp_path, '{"s": [{"optim.lr": 0.03}, '
                      '{"optim.lr": 0.1}]}')
  settings = {**MOMENTUM, "train.steps": 20}
  root = tmp_path / "root"
  kill_a_group_after_its_first_checkpoint(monkeypatch, spec, root, settings)
  result = sweep.run_sweep(spec, str(root), "s", settings, vmap=False,
                           overwrite=True)
  assert not [p for p in os.listdir(root) if p.startswith(".vmapped-")]
  for r in result["runs"]:
    summary = read_json(Path(r["workdir"]) / "summary.json")
    assert r["status"] == "finished" and not summary["resumed_from_step"]


def test_out_of_memory_at_once_trains_the_runs_one_by_one(tmp_path, capsys,
                                                          monkeypatch):
  """N runs in one program need N times the memory: an out-of-memory there
  ended the sweep (and each run's written config.json then refused the
  smaller config the message advised)."""
  import jax  # pylint: disable=g-import-not-at-top
  spec = write_config(tmp_path, '{"s": [{"optim.lr": 1e-3}, '
                      '{"optim.lr": 3e-3}]}')

  def too_large(configs, workdirs, scratch, names):
    del configs, scratch, names
    for w in workdirs:
      w.open()
    raise jax.errors.JaxRuntimeError(
        "RESOURCE_EXHAUSTED: Out of memory allocating 1 bytes.")
  monkeypatch.setattr(hparams, "train_together", too_large)
  root = tmp_path / "root"
  sweep.run_sweep(spec, str(root), "s", TINY, vmap=True)
  assert "out of memory for 2 runs at once" in capsys.readouterr().out
  saved = read_json(root / "sweep.json")
  assert [r["status"] for r in saved["runs"]] == ["finished", "finished"]
  assert not [p for p in os.listdir(root) if p.startswith(".vmapped")]
  # A killed group's rerun out of memory: each run resumes from its slice
  # of the group's checkpoint (deleted, every run trained from step 0).
  root = tmp_path / "killed"
  monkeypatch.undo()
  settings = {**MOMENTUM, "train.steps": 20}
  kill_a_group_after_its_first_checkpoint(monkeypatch, spec, root, settings)
  monkeypatch.setattr(hparams, "train_together", too_large)
  capsys.readouterr()
  result = sweep.run_sweep(spec, str(root), "s", settings, vmap=True)
  names = [r["name"] for r in result["runs"]]
  assert (f"vmap: {', '.join(names)} resume apart from the vmapped program's "
          "checkpoint at step 10") in capsys.readouterr().out
  for r in result["runs"]:
    summary = read_json(Path(r["workdir"]) / "summary.json")
    assert r["status"] == "finished" and summary["resumed_from_step"] == 10
