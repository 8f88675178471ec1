"""Tests of the article (`configs/article.py`, jaxunknowns/article/).

The runlocal article runs once per module through the real command, on one
stage per question (`ONE_PER_QUESTION`; all 21 take ~7 min of CI and each
experiment's own tests run it end to end); every one of the 21 stages is
planned and checked without training. The page is checked against the
stages' own files (every question appears,
every verdict is the count of its stage's comparisons, which a rebuild of
the stage's report gives back; the HTML embeds every figure and needs
nothing from outside). A killed article resumes at the stage it stopped in;
a stage that fails is shown as failed beside the others.
"""

import base64
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from unittest import mock
from pathlib import Path

import pytest

from jaxunknowns import config_loading, executors, report_cli
from jaxunknowns.article import outline, page
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


def test_a_failed_stage_is_shown_and_the_others_still_appear(
    tmp_path, monkeypatch):
  real = executors.run_one

  def mode_connectivity_fails(config, workdir, *args):
    if config.experiment == "mode_connectivity":
      return "crashed: RuntimeError: made to fail by the test"
    return real(config, workdir, *args)
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
