"""The report command: `python -m jaxunknowns.report_cli --workdir=DIR`.

One tiny `train` run is made per module; each test works on a copy. Every
experiment's own test checks its report with
`run_helpers.assert_report_rebuilds`; here is the command itself: its
output, its exit status, and that bad input changes no file.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from jaxunknowns import config_loading, report_cli
from jaxunknowns.errors import UserError
from run_helpers import (ROOT, assert_one_line_error, assert_report_rebuilds,
                         run_in_process, snapshot)

ENV = dict(os.environ, JAX_PLATFORMS="cpu")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  config = config_loading.load_config(
      f"{ROOT}/configs/train.py:mnist1d_mlp,runlocal",
      {"seeds": 2, "train.steps": 10, "train.eval_every": 10,
       "train.checkpoint_every": 10, "data.train_size": 500})
  workdir = tmp_path_factory.mktemp("report") / "run"
  run_in_process(config, workdir)
  return workdir


@pytest.fixture
def run_copy(finished, tmp_path):
  copy = tmp_path / "run"
  shutil.copytree(finished, copy)
  return copy


def report_cli_proc(*workdirs):
  return subprocess.run(
      [sys.executable, "-m", "jaxunknowns.report_cli",
       *[f"--workdir={w}" for w in workdirs]],
      cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)


def test_train_report_has_the_page_shape_and_rebuilds(run_copy):
  assert_report_rebuilds(run_copy)


def test_train_reference_judges_only_its_own_data_and_model(run_copy):
  """configs/train.py's number is for the variant's data and model: the
  MNIST-1D MLP run is judged by it; the same run on digits (summary's
  dataset) is not testable, naming both (it said 'agrees' with 65.1%)."""
  text = (run_copy / "report.md").read_text()
  assert "65.1% test accuracy for mlp on mnist1d." in text
  assert "| test accuracy (%) | 65.1%" in text and "not testable" not in text
  summary = json.loads((run_copy / "summary.json").read_text())
  summary["dataset"] = "digits"
  (run_copy / "summary.json").write_text(json.dumps(summary))
  report_cli.rebuild_run(str(run_copy))
  text = (run_copy / "report.md").read_text()
  assert "| not testable here |" in text
  assert ("the reference is for mlp on mnist1d; this run trains mlp on "
          "digits") in text


def test_command_rebuilds_reports_of_several_runs(run_copy, tmp_path):
  second = tmp_path / "second"
  shutil.copytree(run_copy, second)
  text = (run_copy / "report.md").read_text()
  for w in (run_copy, second):
    (w / "report.md").write_text("stale")
    os.remove(w / "learning_curves.png")
  metrics = snapshot(run_copy / "checkpoints")
  proc = report_cli_proc(run_copy, second)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.split() == ["rebuilt", str(run_copy / "report.md"),
                                 "rebuilt", str(second / "report.md")]
  for w in (run_copy, second):
    assert (w / "report.md").read_text() == text
    assert (w / "learning_curves.png").is_file()
  assert snapshot(run_copy / "checkpoints") == metrics  # nothing else touched


def _corrupt_summary(w):
  (w / "summary.json").write_text('{"experiment": "tr')


def _no_summary(w):
  os.remove(w / "summary.json")


def _unknown_experiment(w):
  config = json.loads((w / "config.json").read_text())
  config["experiment"] = "no_such_experiment"
  (w / "config.json").write_text(json.dumps(config))


def _not_a_run(w):
  os.remove(w / "config.json")


@pytest.mark.parametrize("damage, needle", [
    (_corrupt_summary, "summary.json is not readable JSON"),
    (_no_summary, "the run has not finished"),
    (_unknown_experiment, "no_such_experiment"),
    (_not_a_run, "not a run's workdir"),
])
def test_bad_workdir_is_one_line_and_changes_nothing(run_copy, tmp_path,
                                                     damage, needle):
  good = tmp_path / "good"
  shutil.copytree(run_copy, good)
  damage(run_copy)
  before = snapshot(tmp_path)
  with pytest.raises(UserError, match=needle):
    report_cli.rebuild_all([str(good), str(run_copy)])
  assert snapshot(tmp_path) == before  # not even the good one was rebuilt
  proc = report_cli_proc(good, run_copy)
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1 and needle in errors[0], proc.stderr[-3000:]
  assert snapshot(tmp_path) == before


def test_missing_workdir_is_one_line(tmp_path):
  proc = report_cli_proc(tmp_path / "nowhere")
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert proc.stderr.strip().startswith("error: workdir ")
  assert "does not exist" in proc.stderr
  assert not (tmp_path / "nowhere").exists()


def test_bad_sweep_root_among_runs_changes_nothing(run_copy, tmp_path):
  sweep_root = tmp_path / "sweep"
  sweep_root.mkdir()
  (sweep_root / "sweep.json").write_text('{"runs": []}')  # no config/sweep
  before = snapshot(tmp_path)
  with pytest.raises(UserError, match="lacks"):
    report_cli.rebuild_all([str(run_copy), str(sweep_root)])
  assert snapshot(tmp_path) == before


@pytest.mark.parametrize("summary", ["{}", "[1, 2]", '{"seeds": "x"}'])
def test_summary_the_report_cannot_read_puts_every_workdir_back(
    run_copy, tmp_path, summary):
  """Found only while writing: the good run rebuilt before it (its stale
  report.md replaced, its figure rewritten) is put back too."""
  good = tmp_path / "good"
  shutil.copytree(run_copy, good)
  (good / "report.md").write_text("stale")
  os.remove(good / "learning_curves.png")
  (run_copy / "summary.json").write_text(summary)
  before = snapshot(tmp_path)
  with pytest.raises(UserError, match="could not be rebuilt"):
    report_cli.rebuild_all([str(good), str(run_copy)])
  assert snapshot(tmp_path) == before
  proc = report_cli_proc(good, run_copy)
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1 and "damaged" in errors[0], proc.stderr[-3000:]
  assert snapshot(tmp_path) == before


def test_positional_argument_and_empty_workdir_are_one_line(run_copy):
  """A stray argument was absl's UsageError (exit 1, no `error:` line); an
  empty --workdir= resolved to the current folder (here the repository)."""
  for args, needle in ((["--workdir=" + str(run_copy), "extra"],
                        "unexpected arguments: extra"),
                       (["--workdir="], "--workdir is empty"),
                       # absl's FATAL line, usage hint and exit 1:
                       ([], "Flag --workdir must have a value"),
                       (["--workdir=" + str(run_copy), "--bogus=1"],
                        "Unknown command line flag 'bogus'"),
                       (["--workdir=" + str(run_copy / "report.md")],
                        "is a file, not a folder")):
    before = snapshot(run_copy)
    proc = subprocess.run(
        [sys.executable, "-m", "jaxunknowns.report_cli", *args], cwd=ROOT,
        env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr[-3000:]
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("name, words", [("nesterov", "momentum 0.5"),
                                         ("adam", "")])
def test_config_line_of_one_seed_and_nesterov(name, words):
  """The config line every report shares said '1 seeds trained at once'
  and left out Nesterov's β (which it reads, as momentum does)."""
  from jaxunknowns.report import page  # pylint: disable=g-import-not-at-top
  overrides = {"optim.name": name, "optim.lr": 0.1, "seeds": 1}
  if name == "nesterov":
    overrides["optim.momentum"] = 0.5
  config = config_loading.load_config(
      f"{ROOT}/configs/train.py:mnist1d_mlp,runlocal", overrides)
  line = page.experiment_page(config, {"seeds": [0]}, setup="x",
                              figures=[]).config
  assert f"{name} lr 0.1{' ' * bool(words)}{words}, 1 seed trained" in line


def test_inner_workdirs_come_first_whatever_the_spelling():
  """An article's stages before its page: on an object store a trailing
  slash (gs://b/A/) counted the root as inside itself and kept it first."""
  from jaxunknowns.report_cli import inner_first  # pylint: disable=g-import-not-at-top
  assert inner_first(["gs://b/A/", "gs://b/A/stages/S", "gs://b/AB"]) == [
      "gs://b/A/stages/S", "gs://b/A", "gs://b/AB"]
  order = inner_first(["/w/x", "/w/x/y/z", "/w/x/y"])
  assert order.index("/w/x/y/z") < order.index("/w/x/y") < order.index("/w/x")


def test_metrics_gone_keeps_the_run_s_figure(run_copy):
  """Without metrics.jsonl (or with only unreadable lines) the rebuild
  replaced learning_curves.png with empty axes, exit 0."""
  figure = (run_copy / "learning_curves.png").read_bytes()
  for damage in ("garbage{\n", None):
    if damage is None:
      os.remove(run_copy / "metrics.jsonl")
    else:
      (run_copy / "metrics.jsonl").write_text(damage)
    report_cli.rebuild_run(str(run_copy))
    assert (run_copy / "learning_curves.png").read_bytes() == figure
    assert "(learning_curves.png)" in (run_copy / "report.md").read_text()


def test_a_file_a_report_reads_that_is_a_folder_is_one_line(run_copy):
  """metrics.jsonl a folder: an IsADirectoryError traceback, exit 1."""
  os.remove(run_copy / "metrics.jsonl")
  (run_copy / "metrics.jsonl").mkdir()
  before = snapshot(run_copy)
  proc = report_cli_proc(run_copy)
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1, proc.stderr[-3000:]
  assert "a file it reads cannot be read" in errors[0]
  assert "metrics.jsonl" in errors[0]
  assert snapshot(run_copy) == before


def test_a_run_on_random_labels_is_judged_by_no_paper(run_copy):
  """A run on random labels (or label noise) was judged against the
  clean-label number, 'differs' with no protocol difference named, and its
  report never said the labels were random."""
  config = json.loads((run_copy / "config.json").read_text())
  config["data"]["randomization"] = "random_labels"
  (run_copy / "config.json").write_text(json.dumps(config))
  report_cli.rebuild_run(str(run_copy))
  text = (run_copy / "report.md").read_text()
  assert "on `mnist1d` with random labels:" in text
  assert "| agrees |" not in text and "| differs |" not in text
  assert ("this run trains on random labels" in text)


def test_a_full_disk_while_rebuilding_says_make_room(run_copy, monkeypatch):
  """Every OSError read 'a file it reads cannot be read; rerun the run's
  command in a fresh workdir': retraining, for a full disk."""
  import errno  # pylint: disable=g-import-not-at-top
  from jaxunknowns import paths  # pylint: disable=g-import-not-at-top

  def full(path, data):
    del data
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
  before = snapshot(run_copy)
  monkeypatch.setattr(paths, "write_atomic", full)
  with pytest.raises(UserError) as info:
    report_cli.rebuild_all([str(run_copy)])
  message = str(info.value)
  assert "could not write the report: the disk is full" in message
  assert "make room" in message and "fresh workdir" not in message
  assert snapshot(run_copy) == before


def test_writing_figures_leaves_the_users_matplotlib_as_it_was(tmp_path):
  """In a notebook, any run switched matplotlib to Agg for good (pyplot's
  backend is process-wide): the user's inline plots were gone for the rest
  of the session. Figures are now drawn without pyplot."""
  script = (
      "import sys, matplotlib\n"
      "matplotlib.use('svg')  # the user's backend, as a notebook's inline\n"
      "from jaxunknowns.report import plots\n"
      "rows = [{'step': s, 'split': sp, 'seed': 0, 'loss': 1.0 / (s + 1),\n"
      "         'accuracy': 0.5} for s in range(3) for sp in ('train', 'test')]\n"
      f"plots.learning_curves(rows, {str(tmp_path / 'c.png')!r})\n"
      "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)\n")
  proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
  assert proc.stdout.split() == ["svg", "False"], proc.stderr[-2000:]
  assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_report_on_a_read_only_disk_is_one_line(tmp_path, finished):
  """The first write failed with EROFS as it should, then putting the folder
  back called utime on it (nothing had changed) and that second EROFS
  ended report_cli in a traceback."""
  mnt = tmp_path / "ro"
  mnt.mkdir()
  script = f"""
    mount -t tmpfs -o size=20m tmpfs {mnt}
    cp -a {finished} {mnt}/run
    mount -o remount,ro {mnt}
    {sys.executable} -m jaxunknowns.report_cli --workdir={mnt}/run || echo "rc=$?"
  """
  probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                         capture_output=True)
  if probe.returncode != 0:
    pytest.skip("no private mount namespaces here")
  proc = subprocess.run(
      ["unshare", "-m", "--propagation", "private", "bash", "-euc", script],
      cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
  assert "rc=2" in proc.stdout, (proc.stdout, proc.stderr[-3000:])
  assert_one_line_error(subprocess.CompletedProcess([], 2, "", proc.stderr),
                        "could not write the report", "read-only")


def test_a_curve_band_is_the_sample_std_of_the_tables():
  """The bands of mean ± std curves were the population std (ddof 0) while
  every table's ± is the sample std: 29% narrower at 2 seeds."""
  from jaxunknowns.report import plots  # pylint: disable=g-import-not-at-top
  fig, ax = plots.subplots(1, 1)
  per_seed = {0: {10: 1.0, 20: 4.0}, 1: {10: 3.0, 20: 4.0, 30: 9.0}}
  plots.plot_band(ax, per_seed, "loss")
  band = ax.collections[0].get_paths()[0].vertices
  # Steps 10 and 20 (30 is not every seed's): mean 2, 4; sample std √2, 0.
  want_low, want_high = [2 - 2 ** 0.5, 4.0], [2 + 2 ** 0.5, 4.0]
  ys = {(round(x), round(y, 6)) for x, y in band}
  for x, low, high in zip((10, 20), want_low, want_high):
    assert (x, round(low, 6)) in ys and (x, round(high, 6)) in ys, ys
