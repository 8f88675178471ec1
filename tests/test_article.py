"""Tests of the article (`configs/article.py`, jaxunknowns/article/).

The runlocal article runs once per module through the real command, on one
stage per question (`ONE_PER_QUESTION`; all 21 take ~7 min of CI and each
experiment's own tests run it end to end); every one of the 21 stages is
planned and checked without training. The page is checked against the
stages' own files (every question appears,
every verdict is the count of its stage's comparisons, which a rebuild of
the stage's report gives back; the HTML embeds every figure and needs
nothing from outside). A killed article resumes at the stage it stopped in;
a stage that fails is shown as failed beside the others. The article's own
bookkeeping (a rerun that leaves a stage out or gives it another config,
a report written again, the time left, Ray's records) runs with its stages
faked (`fake_stages`, `_fake_ray`): seconds each.
"""

import base64
import collections
import functools
import importlib.machinery
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import types
from unittest import mock
from pathlib import Path

import ml_collections
import pytest

from jaxunknowns import config_loading, executors, report_cli
from jaxunknowns.article import experiment, outline, page
from jaxunknowns.errors import UserError
import forkserver  # pylint: disable=g-bad-import-order
from run_helpers import run_in_process, snapshot

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
RUNLOCAL = "--config=configs/article.py:runlocal"
# Three quick stages, one per kind of run, for the resume and failure tests.
FEW = ["mode_connectivity", "max_margin", "imp"]  # in the outline's order
# The module's article: the quickest stage with figures of each question.
ONE_PER_QUESTION = ["bn_stability", "mode_connectivity", "max_margin", "imp"]


def article_cli(workdir, *extra):
  return forkserver.popen(
      [sys.executable, "-m", "jaxunknowns.main", RUNLOCAL,
       f"--workdir={workdir}", *extra], cwd=ROOT, env=ENV, text=True,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def skip_all_but(stages):
  return ",".join(s for s in outline.STAGES if s not in stages)


@pytest.fixture(scope="module")
def article(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("article") / "run"
  proc = article_cli(workdir, "--config.article.skip="
                     + skip_all_but(ONE_PER_QUESTION))
  out, err = proc.communicate(timeout=1500)
  assert proc.returncode == 0, err[-3000:]
  return workdir, out


def test_every_question_and_chosen_stage_appears(article):
  workdir, out = article
  text = (workdir / page.MARKDOWN).read_text()
  for question in outline.QUESTIONS:
    assert f". {question.title}\n" in text
  n = len(ONE_PER_QUESTION)
  for number, stage in enumerate(ONE_PER_QUESTION, 1):
    assert f"stage `{stage}`" in text
    assert (workdir / "stages" / stage / "summary.json").exists()
    # One line as each stage starts and one as it ends.
    assert f"article [{number}/{n}] {stage}: started" in out
    assert re.search(rf"article \[{number}/{n}\] {stage}: finished in ", out)
  for stage in set(outline.STAGES) - set(ONE_PER_QUESTION):
    assert f"stage `{stage}`" not in text  # left out, not shown as missing
    assert not (workdir / "stages" / stage).exists()
  assert "left" in out.splitlines()[1]  # the time left, once one stage ran
  assert "finished in an earlier run" not in text  # every stage ran here


def test_every_runlocal_stage_is_planned_and_checked(tmp_path):
  """All 21 stages: config built from the laptop variant plus runlocal,
  checked against its experiment's fields and its workdir, nothing written."""
  from jaxunknowns.article import experiment  # pylint: disable=g-import-not-at-top
  config = config_loading.load_config(f"{ROOT}/configs/article.py:runlocal")
  runs = experiment.plan(config, str(tmp_path / "run"))
  assert [r.name for r in runs] == list(outline.STAGES)
  for r in runs:
    assert config.article.stages[r.name].endswith(",runlocal")
    assert r.config.experiment and not r.overrides
  assert not (tmp_path / "run").exists()


def test_every_verdict_is_its_stages_comparisons_counted(article, tmp_path):
  workdir, _ = article
  summary = json.loads((workdir / "summary.json").read_text())
  text = (workdir / page.MARKDOWN).read_text()
  for stage in ONE_PER_QUESTION:
    folder = workdir / "stages" / stage
    data = json.loads((folder / "page.json").read_text())
    # page.json is what the stage's own report writes: a rebuild of that
    # report from the stage's summary gives the same comparisons back.
    copy = tmp_path / stage
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns(
        "checkpoints", "tensorboard", "snapshots"))
    (copy / "page.json").unlink()
    report_cli.rebuild_run(str(copy))
    assert json.loads((copy / "page.json").read_text()) == data
    counts = collections.Counter(c["verdict"] for c in data["comparisons"])
    assert summary["stages"][stage]["status"] == "finished"
    if len(counts) == 1:
      (verdict, n), = counts.items()
      expected = f"{verdict} ({n} of {n})"
    else:
      expected = "mixed: " + ", ".join(
          f"{counts[v]} {'agree' if v == 'agrees' else 'differ' if v == 'differs' else v}"
          for v in ("agrees", "differs", "not testable here") if counts[v])
    assert f"| {stage} | {expected} |" in text, (stage, expected)
    for c in data["comparisons"]:  # every row, with its verdict and rule
      assert c["verdict"] in text and c["ours"].replace("|", "\\|") in text


def test_the_html_embeds_every_figure_and_needs_nothing_else(article):
  workdir, _ = article
  html = (workdir / page.HTML).read_text()
  sources = re.findall(r'<img [^>]*src="([^"]+)"', html)
  figures = [json.loads((workdir / "stages" / s / "page.json").read_text())
             ["figures"] for s in ONE_PER_QUESTION]
  assert len(sources) == sum(1 for f in figures if f) == len(ONE_PER_QUESTION)
  for src in sources:
    assert src.startswith("data:image/png;base64,")
    assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
  assert not re.search(r'(src|href)="(https?:)?//', html)
  assert "<link" not in html and "<script" not in html
  assert "Figure missing" not in html


def test_the_article_rebuilds_byte_for_byte(article):
  workdir, _ = article
  before = [(workdir / f).read_bytes() for f in (page.MARKDOWN, page.HTML)]
  for f in (page.MARKDOWN, page.HTML):
    (workdir / f).unlink()
  assert report_cli.rebuild_run(str(workdir)) == str(workdir / page.MARKDOWN)
  assert [(workdir / f).read_bytes()
          for f in (page.MARKDOWN, page.HTML)] == before


def test_a_stage_given_with_its_article_is_rebuilt_before_the_page(
    article, tmp_path):
  """report_cli --workdir=ARTICLE --workdir=ARTICLE/stages/imp: the page
  reads the stage's page.json, so the stage goes first whatever the order
  given (root first, the page said 'page.json is missing')."""
  workdir = tmp_path / "run"
  shutil.copytree(article[0], workdir, ignore=shutil.ignore_patterns(
      "checkpoints", "tensorboard", "snapshots"))
  before = (workdir / page.MARKDOWN).read_text()
  stage = workdir / "stages" / "imp"
  (stage / "page.json").unlink()
  written = report_cli.rebuild_all([str(workdir), str(stage)])
  assert written == [str(stage / "report.md"), str(workdir / page.MARKDOWN)]
  assert (workdir / page.MARKDOWN).read_text() == before


def test_a_killed_article_resumes_at_the_stage_it_stopped_in(tmp_path):
  workdir = tmp_path / "run"
  skip = f"--config.article.skip={skip_all_but(FEW)}"
  proc = article_cli(workdir, skip)
  first = workdir / "stages" / FEW[0] / "summary.json"
  deadline = time.time() + 600
  while not first.exists() and proc.poll() is None and time.time() < deadline:
    time.sleep(0.2)
  assert first.exists(), proc.communicate()[1][-3000:]
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (workdir / "summary.json").exists()
  stamp = first.stat().st_mtime_ns
  proc = article_cli(workdir, skip)
  out, err = proc.communicate(timeout=900)
  assert proc.returncode == 0, err[-3000:]
  assert f"article [1/3] {FEW[0]}: finished before, skipped" in out
  assert f"article [2/3] {FEW[1]}: started" in out  # resumed, not skipped
  assert f"article [3/3] {FEW[2]}: finished in" in out
  assert first.stat().st_mtime_ns == stamp  # not redone
  summary = json.loads((workdir / "summary.json").read_text())
  assert list(summary["stages"]) == FEW
  assert all(s["status"] == "finished" for s in summary["stages"].values())
  # The wall time is the resumed run's alone, and the page says so: it left
  # out the first stage's time, which the stage time still counts.
  assert [bool(s.get("finished_before")) for s in summary["stages"].values()
          ] == [True, False, False]
  text = (workdir / page.MARKDOWN).read_text()
  assert ("Of these, 1 finished in an earlier run, whose time the wall time "
          "leaves out") in text


def test_a_failed_stage_is_shown_and_the_others_still_appear(
    tmp_path, monkeypatch):
  real = executors.run_one

  def mode_connectivity_fails(config, workdir, *args, **kwargs):
    if config.experiment == "mode_connectivity":
      return "crashed: RuntimeError: made to fail by the test"
    return real(config, workdir, *args, **kwargs)
  monkeypatch.setattr(executors, "run_one", mode_connectivity_fails)
  config = config_loading.load_config(
      f"{ROOT}/configs/article.py:runlocal",
      {"article.skip": skip_all_but(FEW)})
  with pytest.raises(UserError, match=r"1 of 3 stages .*\(mode_connectivity\)"):
    run_in_process(config, tmp_path / "run")
  text = (tmp_path / "run" / page.MARKDOWN).read_text()
  assert "| mode_connectivity | failed |" in text
  assert "**The stage failed.** crashed: RuntimeError: made to fail" in text
  for stage in ("max_margin", "imp"):
    assert f"stage `{stage}`" in text and f"| {stage} | failed |" not in text
  assert "1.1 BatchNorm" not in text  # left out, not shown as missing
  assert not (tmp_path / "run" / "summary.json").exists()  # a rerun retries


def test_a_stage_crash_on_one_of_several_processes_is_raised(
    tmp_path, monkeypatch):
  """One process's crash in a stage (a peer lost, its own full disk) was
  recorded as a failed stage, and that process went on to the next stage
  while the others still waited in the crashed stage's collectives. With
  several processes `executors.run_one` raises it (main's CLI then stops
  every process in one line); in one process it is the stage's failure."""
  from jaxunknowns import distributed, main  # pylint: disable=g-import-not-at-top

  def crash(*args, **kwargs):
    raise RuntimeError("made to crash by the test")
  monkeypatch.setattr(main, "run", crash)
  config = config_loading.load_config(f"{ROOT}/configs/ntk.py:runlocal")
  assert executors.run_one(config, str(tmp_path / "one"), False) == (
      "crashed: RuntimeError: made to crash by the test")
  monkeypatch.setattr(distributed, "several_processes", lambda: True)
  with pytest.raises(RuntimeError, match="made to crash by the test"):
    executors.run_one(config, str(tmp_path / "several"), False)


def test_a_stage_s_own_error_on_one_of_several_processes_is_raised(
    tmp_path, monkeypatch):
  """A UserError of one process's own in a stage (its host lacks the
  dataset) was the stage's failure there, while the other processes went
  on in the stage's collectives: with several processes it is raised, as
  a crash is; a divergence, which every process meets at the same step,
  stays the stage's failure."""
  from jaxunknowns import distributed, main, trainer  # pylint: disable=g-import-not-at-top
  config = config_loading.load_config(f"{ROOT}/configs/ntk.py:runlocal")
  monkeypatch.setattr(distributed, "several_processes", lambda: True)

  def no_data(*args, **kwargs):
    raise UserError("could not build dataset 'fashion_mnist'")
  monkeypatch.setattr(main, "run", no_data)
  with pytest.raises(UserError, match="could not build dataset"):
    executors.run_one(config, str(tmp_path / "a"), False)

  def diverged(*args, **kwargs):
    raise trainer.TrainingDiverged("loss became nan at step 7 (seed 0); "
                                   "lower optim.lr")
  monkeypatch.setattr(main, "run", diverged)
  assert executors.run_one(config, str(tmp_path / "b"), False) == (
      "loss became nan at step 7 (seed 0); lower optim.lr")


def test_the_article_s_overwrite_is_no_refusal_of_its_stage_folders(
    tmp_path):
  """A stage folder holding another config's run (a page made at another
  scale) refused the article's --overwrite with '… pass --overwrite',
  though the overwrite empties every stage folder first."""
  from jaxunknowns.article import experiment  # pylint: disable=g-import-not-at-top
  config = config_loading.load_config(
      f"{ROOT}/configs/article.py:runlocal",
      {"article.skip": skip_all_but(["max_margin"])})
  folder = experiment.stage_folder(str(tmp_path / "run"), "max_margin")
  os.makedirs(folder)
  Path(folder, "config.json").write_text(json.dumps(
      {"experiment": "max_margin", "seeds": 99}))
  with pytest.raises(UserError, match="holds a run with a different config"):
    experiment.plan(config, str(tmp_path / "run"))
  runs = experiment.plan(config, str(tmp_path / "run"), overwrite=True)
  assert [r.name for r in runs] == ["max_margin"]


def test_a_stage_config_file_that_does_not_run_is_one_line(tmp_path):
  """A stage's config file with a SyntaxError (or a NameError in its
  get_config) was a traceback, and on one of several processes a stop that
  the others saw only as a lost peer."""
  from jaxunknowns.article import experiment  # pylint: disable=g-import-not-at-top
  broken = tmp_path / "broken.py"
  broken.write_text("def get_config(arg):\n  return undefined_name\n")
  config = config_loading.load_config(
      f"{ROOT}/configs/article.py:runlocal",
      {"article.skip": skip_all_but(["ntk"]),
       "article.stages.ntk": f"{broken}:runlocal"})
  with pytest.raises(UserError) as info:
    experiment.plan(config, str(tmp_path / "run"))
  message = str(info.value)
  assert "\n" not in message and message.startswith(
      f"article.stages.ntk='{broken}:runlocal': could not load "), message
  assert "NameError: name 'undefined_name' is not defined" in message


@pytest.mark.parametrize("field, value, needle", [
    ("article.scale", "huge", "article.scale"),
    # A page of runlocal stages labelled 'paper' beside every verdict.
    ("article.scale", "paper", "article.scale='paper' is out of range: must "
     "be 'runlocal': every stage runs its runlocal size"),
    ("article.executor", "slurm", "article.executor"),
    ("article.min_seeds", -1, "article.min_seeds"),
    ("article.seed_offset", -5, "article.seed_offset"),
    ("article.skip", "bn_only,nonsense", "article.skip"),
    ("article.stages.bn_only", "configs/bn_only.py:nonsense",
     "article.stages.bn_only"),
    # Ran the train run and showed its comparisons as the ntk claim's
    # verdict; configs/article.py (no seeds field) was an AttributeError.
    ("article.stages.ntk", "configs/train.py:mnist1d_mlp,runlocal",
     "article.stages.ntk='configs/train.py:mnist1d_mlp,runlocal': runs "
     "experiment 'train', not 'ntk'"),
    ("article.stages.ntk", "configs/article.py:runlocal",
     "runs experiment 'article', not 'ntk'"),
])
def test_a_bad_article_config_is_one_line_and_writes_nothing(
    tmp_path, field, value, needle):
  config = config_loading.load_config(f"{ROOT}/configs/article.py:runlocal",
                                      {field: value})
  with pytest.raises(UserError, match=re.escape(needle)):
    run_in_process(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_min_seeds_raises_a_stage_and_its_command_says_so(tmp_path):
  """laptop: every stage >= 3 seeds; a stage whose variant has fewer (the
  landscape's 2) runs 3 and carries the override its command prints."""
  from jaxunknowns.article import experiment  # pylint: disable=g-import-not-at-top
  config = config_loading.load_config(f"{ROOT}/configs/article.py:laptop")
  runs = experiment.plan(config, str(tmp_path / "run"))
  assert len(runs) == 21 and all(r.config.seeds >= 3 for r in runs)
  raised = {r.name: r.overrides for r in runs if r.overrides}
  own = {r.name: config_loading.load_config(
      f"{ROOT}/{config.article.stages[r.name]}").seeds for r in runs}
  assert raised == {n: {"seeds": 3} for n, s in own.items() if s < 3}
  status = {"status": "finished", "seconds": 1.0, "seeds": 3,
            "overrides": {"seeds": 3}}
  section = next(s for s in outline.SECTIONS if s.stage == "landscape")
  commands = [b.text for b in page._section("3.3", section, config, status,
                                            None, [], "agrees")
              if b.kind == "command"]
  assert commands == ["python -m jaxunknowns.main --config=configs/"
                      "landscape.py:batch_size --workdir=DIR/stages/landscape"
                      " --config.seeds=3"]
  assert not (tmp_path / "run").exists()


def test_seed_offset_moves_every_stage_to_other_seeds_and_says_so(tmp_path):
  """The page re-run on seeds it has not seen: every stage's first seed is
  its own plus the offset, and each stage's command carries it."""
  from jaxunknowns.article import experiment  # pylint: disable=g-import-not-at-top
  config = config_loading.load_config(f"{ROOT}/configs/article.py:laptop",
                                      {"article.seed_offset": 1000})
  runs = experiment.plan(config, str(tmp_path / "run"))
  own = {r.name: config_loading.load_config(
      f"{ROOT}/{config.article.stages[r.name]}").seed for r in runs}
  assert {r.name: r.config.seed for r in runs} == {
      n: s + 1000 for n, s in own.items()}
  assert all(r.overrides["seed"] == r.config.seed for r in runs)
  # The page's own command says so too (it read as a rerun of seeds 0-2).
  commands = [b.text for b in page.blocks(str(tmp_path), config, {
      "stages": {}, "scale": "laptop"}) if b.kind == "command"]
  assert commands == ["python -m jaxunknowns.main --config=configs/"
                      "article.py:laptop --workdir=DIR "
                      "--config.article.seed_offset=1000"]
  # Without it, no stage carries a seed override.
  default = config_loading.load_config(f"{ROOT}/configs/article.py:laptop")
  assert not any("seed" in r.overrides
                 for r in experiment.plan(default, str(tmp_path / "run")))
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text", ['{"final": {"te', "[1]"])
def test_a_damaged_stage_summary_is_one_line_before_any_stage_runs(
    article, tmp_path, text):
  """A finished stage's summary.json damaged afterwards: the rerun skipped
  that stage, then reading it for the page was a JSONDecodeError /
  AttributeError traceback."""
  workdir = tmp_path / "run"
  shutil.copytree(article[0], workdir)
  (workdir / "summary.json").unlink()
  summary = workdir / "stages" / "max_margin" / "summary.json"
  summary.write_text(text)
  before = snapshot(workdir)
  config = config_loading.load_config(
      f"{ROOT}/configs/article.py:runlocal",
      {"article.skip": skip_all_but(ONE_PER_QUESTION)})
  with pytest.raises(UserError) as info:
    run_in_process(config, workdir)
  message = str(info.value)
  for needle in ("article.stages.max_margin", str(summary), "damaged",
                 "delete it and rerun"):
    assert needle in message, (needle, message)
  assert snapshot(workdir) == before


def test_the_pages_command_names_every_field_that_changes_it():
  """The page's headline command kept only skip and seed_offset: a page
  made with another stage config or min_seeds did not come back from it.
  Every article field that differs from the scale's own is named; the
  executor (where the stages run, not what they measure) is not."""
  config = config_loading.load_config(
      "configs/article.py:runlocal", {
          "article.stages.bn_modes": "configs/bn_modes.py:digits,runlocal",
          "article.min_seeds": 1, "article.executor": "ray",
          "article.skip": "ntk"}, root=str(ROOT))
  assert page.command(config, "runlocal") == (
      "python -m jaxunknowns.main --config=configs/article.py:runlocal "
      "--workdir=DIR --config.article.min_seeds=1 --config.article.skip=ntk "
      "--config.article.stages.bn_modes=configs/bn_modes.py:digits,runlocal")
  plain = config_loading.load_config("configs/article.py:laptop", root=str(ROOT))
  assert page.command(plain, "laptop") == (
      "python -m jaxunknowns.main --config=configs/article.py:laptop "
      "--workdir=DIR")
  # A wheel has no configs/: the fields it can tell without them (a missing
  # config file is a UserError since load_config says it in one line).
  from jaxunknowns.article import experiment  # pylint: disable=g-import-not-at-top
  with mock.patch.object(experiment, "ROOT", "/nonexistent/site-packages"):
    assert page.command(config, "runlocal").endswith(
        "--workdir=DIR --config.article.skip=ntk")


# -----------------------------------------------------------------------------
# The article's own bookkeeping, its stages faked (no training: seconds).
# -----------------------------------------------------------------------------
DIVERGED = "loss became nan at step 2 of the run, seed 0; lower optim.lr"


def few(**overrides):
  """The runlocal article of the FEW stages, with `overrides`."""
  return config_loading.load_config(
      f"{ROOT}/configs/article.py:runlocal",
      {"article.skip": skip_all_but(FEW), **overrides})


def _write_page_json(folder, verdict=None):
  """A stage's page.json as report.page.write_page writes it."""
  comparisons = [] if verdict is None else [{
      "quantity": "q", "paper": "1", "source": "s", "ours": "1",
      "verdict": verdict, "rule": "r", "reasons": []}]
  Path(folder, "page.json").write_text(json.dumps({
      "title": "t", "claim": "The papers' claim.", "figures": [],
      "comparisons": comparisons}))


@pytest.fixture
def fake_stages(monkeypatch):
  """executors.run_one without training. A stage opens its folder as a run
  does (config.json), then returns the text in `.fail` for its experiment
  (a divergence), or writes summary.json (listing two networks per seed, as
  mode_connectivity's does) and, unless its experiment is in `.no_report`,
  page.json; `.no_report`: the report raised after summary.json, as
  experiments.finish leaves it. `.ran`: the stages it ran, in order."""
  from jaxunknowns.workdir import Workdir  # pylint: disable=g-import-not-at-top
  state = types.SimpleNamespace(fail={}, no_report=set(), ran=[])

  def run_one(config, workdir, *args, **kwargs):
    state.ran.append(config.experiment)
    folder = Workdir(workdir, config)
    folder.check()
    folder.open()
    if config.experiment in state.fail:
      return state.fail[config.experiment]
    Path(workdir, "summary.json").write_text(json.dumps(
        {"seeds": list(range(2 * config.seeds)), "wall_time_s": 2.0}))
    if config.experiment in state.no_report:
      return "crashed: RuntimeError: the report's bug"
    _write_page_json(workdir)
    return None
  monkeypatch.setattr(executors, "run_one", run_one)
  return state


def test_a_failed_stage_is_left_out_or_given_another_config_keeping_the_others(
    tmp_path, fake_stages):
  """A failed stage could be neither fixed nor dropped: article.skip or
  article.stages.NAME changed was 'fields differ' on the article's workdir,
  and the stage folder's refusal said '--overwrite', which deletes every
  stage. Those fields (and article.executor) only choose which stages run
  and how: the article's workdir leaves them to each stage folder's own
  check, and config.json records the run going on. The final line's advice
  is what this test does."""
  workdir, other = tmp_path / "run", "configs/mode_connectivity.py:" \
      "mnist1d_mlp_bn,runlocal"
  saved = lambda: json.loads((workdir / "config.json").read_text())["article"]
  fake_stages.fail = {"mode_connectivity": DIVERGED}
  with pytest.raises(UserError) as info:
    run_in_process(few(), workdir)
  folder = workdir / "stages" / "mode_connectivity"
  failure = str(info.value)  # its advice: checked once followed, below
  assert fake_stages.ran == FEW and folder.is_dir()

  # Left out: the finished stages are kept, not rerun.
  fake_stages.ran.clear()
  skip = skip_all_but(FEW[1:])
  summary = run_in_process(few(**{"article.skip": skip}), workdir)
  assert fake_stages.ran == [] and list(summary["stages"]) == FEW[1:]
  assert saved()["skip"] == skip  # not the failed run's skip
  assert "stage `mode_connectivity`" not in (
      workdir / page.MARKDOWN).read_text()

  # Back in under another config: the stage folder holds the failed run of
  # the old one, and the refusal names it and writes nothing.
  before = snapshot(workdir)
  with pytest.raises(UserError) as info:
    run_in_process(few(**{"article.stages.mode_connectivity": other}), workdir)
  message = str(info.value)
  assert "\n" not in message and message.startswith(
      f"article.stages.mode_connectivity={other!r}: {folder} holds a run "
      "with a different config"), message
  assert f"remove that stage's folder {folder} to rerun the stage" in message
  assert snapshot(workdir) == before
  shutil.rmtree(folder)  # as the line says
  fake_stages.fail = {}
  summary = run_in_process(
      few(**{"article.stages.mode_connectivity": other}), workdir)
  assert fake_stages.ran == ["mode_connectivity"]
  assert list(summary["stages"]) == FEW
  assert all(s["status"] == "finished" for s in summary["stages"].values())
  # Only the stage given another config ran; the page says the wall time
  # left out the two kept from earlier runs.
  assert [bool(s.get("finished_before")) for s in summary["stages"].values()
          ] == [False, True, True]
  assert ("Of these, 2 finished in an earlier run, whose time the wall time "
          "leaves out") in (workdir / page.MARKDOWN).read_text()
  assert saved()["stages"]["mode_connectivity"] == other
  assert saved()["skip"] == skip_all_but(FEW)
  assert json.loads((folder / "config.json").read_text())["model"][
      "norm"] == "batch"  # the new config ran there
  assert f"keeps its run in {workdir / 'stages'}/NAME, so remove that folder " \
      "before giving the stage another config (article.stages.NAME), or " \
      "leave the stage out (article.skip)" in failure, failure

  # A finished article rerun with a stage left out is made again from its
  # finished stages, not 'already finished' with the old page and summary.
  skip = skip_all_but(FEW[:2])
  summary = run_in_process(few(**{"article.stages.mode_connectivity": other,
                                  "article.skip": skip}), workdir)
  assert list(summary["stages"]) == FEW[:2] and saved()["skip"] == skip
  assert fake_stages.ran == ["mode_connectivity"]  # nothing trained again
  assert "stage `imp`" not in (workdir / page.MARKDOWN).read_text()


def test_a_stage_whose_report_crashed_gets_its_report_on_the_rerun(
    tmp_path, fake_stages, monkeypatch):
  """experiments.finish writes summary.json even when the report raises:
  the rerun took the stage as finished, with no page.json, and the page
  said 'no comparison with a paper'. The rerun writes its report before
  the page (one that fails again is the stage's failure), and a stage
  without page.json reads 'no report'."""
  from jaxunknowns.implicit import max_margin_report  # pylint: disable=g-import-not-at-top
  workdir = tmp_path / "run"
  fake_stages.no_report = {"max_margin"}
  with pytest.raises(UserError, match=r"1 of 3 stages .*\(max_margin\)"):
    run_in_process(few(), workdir)
  stage = workdir / "stages" / "max_margin"
  assert (stage / "summary.json").exists()
  assert not (stage / "page.json").exists()
  summary = {"scale": "runlocal", "stages": {"max_margin": {
      "status": "finished", "error": "", "seconds": 2.0, "seeds": 2}}}
  text = page.markdown(page.blocks(str(workdir), few(), summary))
  assert "| max_margin | no report |" in text, text
  assert "no comparison with a paper" not in text

  def still_broken(path, config, summary):
    raise RuntimeError("the report's bug, not fixed yet")
  monkeypatch.setattr(max_margin_report, "write", still_broken)
  fake_stages.ran.clear()
  with pytest.raises(UserError, match=r"1 of 3 stages .*\(max_margin\)"):
    run_in_process(few(), workdir)
  assert fake_stages.ran == []  # the stage is not trained again
  text = (workdir / page.MARKDOWN).read_text()
  assert "| max_margin | failed |" in text
  assert ("**The stage failed.** its report could not be written "
          "(RuntimeError: the report's bug, not fixed yet)") in text

  written = []

  def fixed(path, config, summary):
    written.append((path, summary["wall_time_s"]))
    _write_page_json(path, "agrees")
  monkeypatch.setattr(max_margin_report, "write", fixed)
  summary = run_in_process(few(), workdir)
  assert fake_stages.ran == [] and written == [(str(stage), 2.0)]
  assert summary["stages"]["max_margin"]["status"] == "finished"
  assert "| max_margin | agrees (1 of 1) |" in (
      workdir / page.MARKDOWN).read_text()


@pytest.mark.parametrize("text", ['{"claim": "The pap', "[1]"])
def test_a_damaged_stage_page_json_is_one_line_before_any_stage_runs(
    tmp_path, fake_stages, text):
  """A finished stage's page.json damaged afterwards: the rerun ran every
  stage, then composing the page was a JSONDecodeError / AttributeError
  traceback (exit 1). It is refused up front, as a damaged summary.json is,
  and report_cli's page says it in one line too."""
  workdir = tmp_path / "run"
  run_in_process(few(), workdir)
  (workdir / "summary.json").unlink()  # a rerun that still has work
  damaged = workdir / "stages" / "max_margin" / "page.json"
  damaged.write_text(text)
  before = snapshot(workdir)
  with pytest.raises(UserError) as info:
    run_in_process(few(), workdir)
  message = str(info.value)
  assert "\n" not in message, message
  for needle in ("article.stages.max_margin", str(damaged), "damaged",
                 "delete it and rerun"):
    assert needle in message, (needle, message)
  assert snapshot(workdir) == before
  stages = json.loads((workdir / "stages.json").read_text())
  with pytest.raises(UserError, match=re.escape(f"{damaged} is damaged")):
    page.blocks(str(workdir), few(), {"scale": "runlocal", "stages": stages})


def test_an_article_written_before_seed_offset_resumes(tmp_path):
  """The committed docs/article was written before article.seed_offset
  existed: resuming it was 'fields differ: article.seed_offset', though the
  new field is at its default. configs/article.py now records its defaults
  as make_config does for every other experiment."""
  from jaxunknowns.workdir import Workdir  # pylint: disable=g-import-not-at-top
  committed = json.loads((ROOT / "docs" / "article" / "config.json")
                         .read_text())
  assert "seed_offset" not in committed["article"]
  (tmp_path / "config.json").write_text(json.dumps(committed))
  Workdir(str(tmp_path), config_loading.load_config(
      f"{ROOT}/configs/article.py:laptop")).check()
  moved = config_loading.load_config(f"{ROOT}/configs/article.py:laptop",
                                     {"article.seed_offset": 1000})
  with pytest.raises(UserError, match="fields differ: article.seed_offset"):
    Workdir(str(tmp_path), moved).check()


def _fake_ray(monkeypatch, init=None):
  """A Ray that runs each task here once its result is asked for (ray.get),
  so tasks end one after another, as on a cluster."""
  ray = types.ModuleType("ray")
  ray.__spec__ = importlib.machinery.ModuleSpec("ray", None)
  ray.exceptions = types.SimpleNamespace(RayError=type("RayError",
                                                       (Exception,), {}))
  ray.is_initialized = lambda: init is None
  ray.init = init
  ray.cluster_resources = lambda: {"CPU": 2.0}

  class Task:

    def __init__(self, fn):
      self.fn = fn

    def options(self, **unused):
      return self

    def remote(self, *args, **kwargs):
      return functools.partial(self.fn, *args, **kwargs)
  ray.remote = Task
  ray.wait = lambda refs, num_returns=1: (refs[:num_returns],
                                          refs[num_returns:])
  ray.get = lambda ref: ref()
  monkeypatch.setitem(sys.modules, "ray", ray)


def test_the_ray_executor_is_checked_before_the_workdir_is_written(
    tmp_path, monkeypatch):
  """Without Ray, article.executor=ray wrote config.json, then stopped
  naming the sweep's --executor; a RAY_ADDRESS nothing answers at waited
  in ray.init, silently, after writing it."""
  workdir = tmp_path / "run"
  monkeypatch.setitem(sys.modules, "ray", None)  # not installed
  with pytest.raises(UserError) as info:
    run_in_process(few(**{"article.executor": "ray"}), workdir)
  assert str(info.value).startswith(
      "article.executor='ray' needs Ray: pip install"), str(info.value)
  assert not workdir.exists()
  with socket.socket() as s:  # a port nothing listens on
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")

  def init(**unused):
    raise AssertionError("ray.init reached: it waits for minutes there")
  _fake_ray(monkeypatch, init=init)
  with pytest.raises(UserError, match=f"no Ray cluster answers at 127.0.0.1:"
                     f"{port} .*; check RAY_ADDRESS, or drop it"):
    run_in_process(few(**{"article.executor": "ray"}), workdir)
  assert not workdir.exists()


def test_a_diverged_stage_gives_the_articles_way_out(tmp_path, monkeypatch):
  """A diverged stage's error said "rerun in a new --workdir or with
  --overwrite": the article's --overwrite deletes every finished stage."""
  # pylint: disable=g-import-not-at-top
  from jaxunknowns import main, trainer
  workdir, real = tmp_path / "run", main.run

  def stage(config, path, *args, **kwargs):
    if config.experiment == "article":
      return real(config, path, *args, **kwargs)
    raise trainer.TrainingDiverged(
        f"{DIVERGED}, and rerun in a new --workdir or with --overwrite",
        what=DIVERGED)
  monkeypatch.setattr(main, "run", stage)
  with pytest.raises(UserError, match=r"1 of 1 stages"):
    run_in_process(few(**{"article.skip": skip_all_but(["imp"])}), workdir)
  error = json.loads((workdir / "stages.json").read_text())["imp"]["error"]
  assert error == f"{DIVERGED}; {experiment.STAGE_DIVERGED}", error


def test_the_ray_executor_records_each_stage_as_it_ends(tmp_path,
                                                        monkeypatch):
  """On Ray a diverged stage's error gave a sweep's way out (run_ray passed
  in_sweep=True), its time was recorded as 0 s, and stages.json was
  written only once every task had ended. Nor a single run's way out: the
  article's --overwrite deletes every stage."""
  # pylint: disable=g-import-not-at-top
  from jaxunknowns import main, trainer
  from jaxunknowns.workdir import Workdir
  _fake_ray(monkeypatch)
  workdir, real, seen = tmp_path / "run", main.run, {}
  advice = "rerun in a new --workdir or with --overwrite"

  def stage(config, path, *args, **kwargs):
    if config.experiment == "article":
      return real(config, path, *args, **kwargs)
    progress = workdir / "stages.json"
    seen[config.experiment] = (json.loads(progress.read_text())
                               if progress.exists() else None)
    time.sleep(0.5)
    if config.experiment == "max_margin":
      raise trainer.TrainingDiverged(f"{DIVERGED}, and {advice}",
                                     what=DIVERGED)
    Workdir(path, config).open()
    Path(path, "summary.json").write_text('{"wall_time_s": 0.5}')
    _write_page_json(path)
  monkeypatch.setattr(main, "run", stage)
  config = few(**{"article.executor": "ray",
                  "article.skip": skip_all_but(["max_margin", "imp"])})
  with pytest.raises(UserError, match=r"1 of 2 stages .*\(max_margin\)"):
    run_in_process(config, workdir)
  progress = json.loads((workdir / "stages.json").read_text())
  failed = progress["max_margin"]
  assert list(progress) == ["max_margin", "imp"]
  assert (failed["status"], failed["error"]) == (
      "failed", f"{DIVERGED}; {experiment.STAGE_DIVERGED}")
  assert failed["seconds"] >= 0.5, failed
  # The second task saw the first's end recorded.
  assert seen["imp"] == {"max_margin": failed}, seen


def test_a_scale_set_apart_from_its_stages_is_refused():
  """--config.article.scale=paper on the laptop variant ran the laptop
  stages under a page that said 'at scale `paper`'. A stage running another
  scale's own config is refused; one given a config of no scale's (the
  documented change of one stage) keeps its scale."""
  from jaxunknowns import validation  # pylint: disable=g-import-not-at-top
  laptop = f"{ROOT}/configs/article.py:laptop"
  with pytest.raises(UserError) as info:
    validation.check_config(config_loading.load_config(
        laptop, {"article.scale": "paper"}))
  message = str(info.value)
  assert "\n" not in message and message.startswith(
      "article.scale='paper' is not the size that runs: "
      "article.stages.bn_stability='configs/bn_stability.py:fashion_mlp' is "
      "the laptop scale's config of that stage"), message
  assert "--config=configs/article.py:laptop" in message
  with pytest.raises(UserError, match=r"article.stages.bn_only="
                     r"'configs/bn_only.py:cifar10' is the paper scale's"):
    validation.check_config(config_loading.load_config(
        laptop, {"article.stages.bn_only": "configs/bn_only.py:cifar10"}))
  own = {"article.stages.bn_only": "configs/bn_only.py:digits"}
  for overrides in ({}, own):
    validation.check_config(config_loading.load_config(laptop, overrides))


def test_the_time_left_counts_only_the_stages_still_to_run(tmp_path,
                                                          monkeypatch):
  """Stages finished before are skipped in no time: counted as still to
  run, they made the estimate say 'about 30 s left' with one stage of 10 s
  to go, and '10 s left' when nothing was."""
  from jaxunknowns import sweep  # pylint: disable=g-import-not-at-top
  from jaxunknowns.article import experiment  # pylint: disable=g-import-not-at-top
  clock = [0.0]

  def ten_seconds(*args, **kwargs):
    clock[0] += 10
  monkeypatch.setattr(executors, "run_one", ten_seconds)
  monkeypatch.setattr(experiment, "time",
                      types.SimpleNamespace(time=lambda: clock[0]))

  def stage(name, finished):
    folder = tmp_path / name
    folder.mkdir()
    if finished:
      (folder / "summary.json").write_text('{"wall_time_s": 5.0}')
      _write_page_json(folder)
    return sweep.Run(name, {}, ml_collections.ConfigDict(
        {"experiment": name, "seeds": 1}), str(folder))
  runs = [stage("a", False), stage("b", True), stage("c", False),
          stage("d", True)]
  out = io.StringIO()
  experiment.run_here(runs, {}, lambda: None, out)
  assert out.getvalue().splitlines() == [
      "article [1/4] a: started (time left known after the first stage)",
      "article [1/4] a: finished in 10 s; about 10 s left",
      "article [2/4] b: finished before, skipped",
      "article [3/4] c: started (about 10 s left)",
      "article [3/4] c: finished in 10 s",
      "article [4/4] d: finished before, skipped"]


def test_the_seeds_column_counts_seeds_not_networks(tmp_path, fake_stages):
  """mode_connectivity's summary lists every network it trained, two per
  seed: the page said '6 seeds' of the committed article's 3. The page
  shows each stage's configured seeds, and the article records them."""
  workdir = tmp_path / "article"
  shutil.copytree(ROOT / "docs" / "article", workdir)
  stage = workdir / "stages" / "mode_connectivity"
  seeds = json.loads((stage / "config.json").read_text())["seeds"]
  networks = json.loads((stage / "summary.json").read_text())["seeds"]
  assert (seeds, len(networks)) == (3, 6)
  report_cli.rebuild_run(str(workdir))
  text = (workdir / page.MARKDOWN).read_text()
  assert re.search(r"\| mode_connectivity \| [^|]+ \| 3 \| ", text), text
  assert "stage `mode_connectivity`, 3 seeds" in text
  # What the article records, from a stage listing twice its seeds.
  summary = run_in_process(few(), tmp_path / "run")
  assert {s: summary["stages"][s]["seeds"] for s in FEW} == {
      s: config_loading.load_config(f"{ROOT}/configs/{s}.py:{v},runlocal")
      .seeds for s, v in (("mode_connectivity", "mnist1d_mlp"),
                          ("max_margin", "soudry2d"), ("imp", "stability"))}


# Both processes of an article whose one stage fails at once (as a
# divergence does, on every process), process 1 still writing its scratch
# copy of the page when process 0 has its failure line.
TWO_PROCESS_FAILURE = """
import sys, time
from absl import app
import jax
from jaxunknowns import executors, main
from jaxunknowns.article import page
executors.run_one = lambda *args, **kwargs: {diverged!r}
write = page.write
def slow(root, config, summary):
  if jax.process_index() == 1:
    time.sleep(5)
  return write(root, config, summary)
page.write = slow
app.run(main.main, flags_parser=main.parse_flags)
"""


def test_a_failed_stage_in_two_processes_stops_both_in_one_line(tmp_path):
  """Process 0 raised the article's failure line and exited while process
  1 still wrote its scratch copy of the page: process 1 aborted ('JAX
  distributed service detected fatal errors') and left its jaxunknowns_p1_
  folders. The failure now waits for every process: both exit 2 with the
  same line, and nothing is left behind."""
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  scratch = tmp_path / "tmp"
  scratch.mkdir()
  env = dict(ENV, TMPDIR=str(scratch), XLA_FLAGS=os.environ.get(
      "XLA_FLAGS", "") + " --xla_force_host_platform_device_count=1")
  script = TWO_PROCESS_FAILURE.format(diverged=DIVERGED)
  procs = [subprocess.Popen(
      [sys.executable, "-c", script, RUNLOCAL,
       "--config.article.skip=" + skip_all_but(["max_margin"]),
       f"--workdir={tmp_path / 'run'}", f"--coordinator_address=localhost:"
       f"{port}", "--num_processes=2", f"--process_id={pid}"],
      cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE) for pid in range(2)]
  try:
    outs = [(p.communicate(timeout=300), p.returncode) for p in procs]
  finally:
    for p in procs:
      p.kill()
  lines = []
  for (_, err), rc in outs:
    assert rc == 2, err[-3000:]
    lines.append(err.strip().splitlines()[-1])
  assert lines[0] == lines[1] and lines[0].startswith(
      "error: 1 of 1 stages of the article failed (max_margin)"), lines
  assert not [p for p in os.listdir(scratch) if p.startswith("jaxunknowns_p")]
  assert "| max_margin | failed |" in (tmp_path / "run" / page.MARKDOWN
                                      ).read_text()


def test_a_skipped_stage_given_a_config_is_refused():
  """A stage in article.skip runs nothing: its config, changed, was recorded
  in config.json and named by the page's command as if it had run. Its own
  scale's config (the variant's) is no change and passes."""
  from jaxunknowns import validation  # pylint: disable=g-import-not-at-top
  paper = f"{ROOT}/configs/article.py:paper"
  other = "configs/bn_only.py:digits"
  with pytest.raises(UserError) as info:
    validation.check_config(config_loading.load_config(paper, {
        "article.skip": "bn_only", "article.stages.bn_only": other}))
  message = str(info.value)
  assert "\n" not in message and message.startswith(
      f"article.stages.bn_only={other!r} is unused here: the stage is in "
      "article.skip"), message
  validation.check_config(config_loading.load_config(
      paper, {"article.skip": "bn_only"}))
  validation.check_config(config_loading.load_config(
      paper, {"article.stages.bn_only": other}))
