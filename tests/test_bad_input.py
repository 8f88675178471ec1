"""Bad input ends in one line on stderr and exit status 2, the workdir as it
was: every field of every config file and variant given values of the wrong
kind, and workdirs that cannot be created, are files, are read-only or fill up.

The field walk runs in-process through `validation.check_config`, the check
`main.run` makes before it touches the workdir or loads data; one CLI call
per config file checks the real command line path.
"""

import copy
import json
import math
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jaxunknowns import config_defaults, config_loading, validation
from jaxunknowns.data import datasets
from jaxunknowns.errors import UserError
from run_helpers import (assert_one_line_error,
                         assert_user_error_before_writing, snapshot)

ROOT = Path(__file__).resolve().parents[1]
CONFIG_FILES = sorted(p.name for p in (ROOT / "configs").glob("*.py"))
ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
MNIST1D = "mnist1d_mlp,runlocal"
RUNLOCAL = f"--config=configs/train.py:{MNIST1D}"
TRIED = []  # (config file, field, bad value) of every bad input tried
BASE_FIELDS = {name for name, _ in validation.leaves(
    config_defaults.base_config())}


def cli(*args, workdir, command=("-m", "jaxunknowns.main"), env=None):
  return subprocess.run([sys.executable, *command, *args,
                         f"--workdir={workdir}"], cwd=ROOT, env=env or ENV,
                        capture_output=True, text=True, timeout=600)


def variants_of(config_file):
  return list(config_loading.config_module(
      str(ROOT / "configs" / config_file)).VARIANTS)


def field_values(configs):
  """{field: [its value in each config]}."""
  values = {}
  for config in configs:
    for name, value in validation.leaves(config):
      values.setdefault(name, []).append(value)
  return values


def is_number(v):
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def bad_values(values):
  """Values of the wrong kind for a field that the config file's variants
  set to `values` (the first is the variant under test): a word for a
  number, a number for a tuple or a word, a fraction for an integer, NaN,
  a negative number where no variant has one, a tuple of the wrong
  elements; and an empty tuple, which only the experiment may refuse (where
  its grid would train nothing) but nothing may crash on."""
  value = values[0]
  flat = [x for v in values for x in (v if isinstance(v, tuple) else (v,))]
  no_negative = not any(is_number(x) and x < 0 for x in flat)
  if isinstance(value, bool):
    return ["abc", 2, ()]
  if isinstance(value, int):
    return ["abc", 1.5, True, ()] + [-1] * no_negative
  if isinstance(value, float):
    return ["abc", math.nan, math.inf, ()] + [-1.0] * no_negative
  if isinstance(value, str):
    return [3, (), None]
  assert isinstance(value, tuple), (type(value), value)
  bad = ["abc", 3, ((1, 2),), ()]
  items = {type(x) for x in flat}
  if items and items <= {int, float}:
    bad += [("abc",), (math.nan,)] + [(-1,)] * no_negative
    bad += [(1.5,)] * (items == {int})
  if items == {str}:
    bad.append((3,))
  return bad


def walk(config_file, variant):
  """Tries every bad value of every field of one variant; returns the
  failures (field, value, what happened instead of a one-line UserError)."""
  spec = f"{ROOT / 'configs' / config_file}:{variant}"
  references = validation.references_of(spec)
  rules = validation.field_rules(references)  # what check_config would make
  values = field_values(references)
  config = copy.deepcopy(references[0])  # the references stay as they are
  failures = []
  for name, good in list(validation.leaves(config)):
    *parents, leaf = name.split(".")
    node = config
    for key in parents:
      node = node[key]
    for bad in bad_values(values[name]):
      TRIED.append((config_file, name, bad))
      # The leaf's own ConfigDict takes the value (config.ignore_type()
      # would walk the whole config twice per value: ~40% of the walk).
      with node.ignore_type():
        node[leaf] = bad
      try:
        validation.check_config(config, rules=rules)
        if bad != ():  # an empty tuple may be a valid choice (see bad_values)
          failures.append((name, bad, "accepted"))
      except UserError as e:
        message = str(e)
        # An empty tuple may pass the field's own checks and meet another
        # one (a dataset that needs a network): one line is all it owes.
        if "\n" in message or (f"{name}=" not in message and bad != ()):
          failures.append((name, bad, message))
      except Exception as e:  # pylint: disable=broad-except
        failures.append((name, bad, f"{type(e).__name__}: {e}"))
      finally:
        with node.ignore_type():
          node[leaf] = good
  return failures


def needs_network(config) -> bool:
  """A TFDS catalogue dataset: its checks would download it."""
  name = config.get("data", {}).get("name", "")
  return name in datasets.CATALOGUE_ALIASES or name.startswith(
      datasets.TFDS_PREFIX)


@pytest.mark.parametrize("config_file", [f for f in CONFIG_FILES
                                         if f != "article.py"])
def test_every_variant_and_its_runlocal_pass_the_checks(config_file):
  """What a user runs first: each variant, and its `,runlocal` smoke size,
  passes check_config as the file gives it (runlocal once set a field that
  its variant left unused, and a chunk size that no longer divided the
  shrunk subset). The article's variants are scales, checked in
  test_article."""
  refused = []
  for variant in variants_of(config_file):
    for spec in (variant, f"{variant},runlocal"):
      path = f"{ROOT / 'configs' / config_file}:{spec}"
      config = config_loading.load_config(path)
      if needs_network(config):
        continue
      try:
        experiment = validation.check_config(
            config, validation.references_of(path))
        # Without references: the file's own values must be read too (a
        # variant may not set what its model or optimizer never reads).
        validation.check_choices(config, experiment.own_fields)
      except UserError as e:
        refused.append(f"{config_file}:{spec}: {e}")
  assert not refused, "\n".join(refused)


# Right kind, out of range: validation.validate_base's checks, which each
# experiment's validate must call (on its config or on each arm's).
BASE_OUT_OF_RANGE = (("seeds", 0), ("seed", -1), ("optim.lr", 0.0),
                     ("train.batch_size", 0), ("model.dropout", 1.0),
                     ("data.label_noise", 2.0))


@pytest.mark.parametrize("config_file", [f for f in CONFIG_FILES
                                         if f != "article.py"])
def test_every_experiment_applies_the_shared_checks(config_file):
  """An experiment whose validate forgot validate_base trained at lr 0 (the
  walk above tries values of the wrong kind only, which check_fields
  refuses for every experiment)."""
  accepted = []
  for variant in variants_of(config_file):
    path = f"{ROOT / 'configs' / config_file}:{variant}"
    references = validation.references_of(path)
    for name, bad in BASE_OUT_OF_RANGE:
      config = copy.deepcopy(references[0])
      *parents, leaf = name.split(".")
      node = config
      for key in parents:
        node = node[key]
      node[leaf] = bad
      try:
        validation.check_config(config, references)
        accepted.append(f"{variant}: {name}={bad}")
      except UserError as e:
        if f"{name}=" not in str(e):  # refused, but for another reason
          accepted.append(f"{variant}: {name}={bad}: {e}")
  assert not accepted, accepted


@pytest.fixture(scope="module", autouse=True)
def _print_count(request):
  """Prints how many bad inputs the walk tried (the README quotes it)."""
  yield
  capture = request.config.pluginmanager.get_plugin("capturemanager")
  with capture.global_and_fixture_disabled():
    if TRIED:
      print(f"\ntest_bad_input: {len(TRIED)} bad config values tried "
            f"({len({(f, n) for f, n, _ in TRIED})} fields of "
            f"{len({f for f, _, _ in TRIED})} config files, every variant)")


@pytest.mark.parametrize("config_file", CONFIG_FILES)
def test_every_field_refuses_values_of_the_wrong_kind(config_file, tmp_path):
  failures = []
  for variant in variants_of(config_file):
    failures += [(variant, *f) for f in walk(config_file, variant)]
  assert not failures, "\n".join(map(repr, failures[:30]))
  assert not any(tmp_path.iterdir())


def cli_bad_input(config_file):
  """One (field, command-line value) that the file's first variant refuses:
  an own field's numeric tuple given a word, else an own count given -1."""
  spec = f"{ROOT / 'configs' / config_file}:{variants_of(config_file)[0]}"
  values = field_values(validation.references_of(spec))
  own = [n for n in values if n not in BASE_FIELDS]
  for name in own:
    v = values[name][0]
    if isinstance(v, tuple) and v and all(is_number(x) for x in v):
      return name, "abc"
  for name in own:
    if "-1" in map(repr, bad_values(values[name])):
      return name, "-1"
  if "model.widths" in values:
    return "model.widths", "abc"
  # A config of names only (the article): a name that is not one.
  return next(n for n in own if isinstance(values[n][0], str)), "nonsense"


@pytest.mark.parametrize("config_file", CONFIG_FILES)
def test_cli_refuses_a_bad_field_in_one_line(config_file, tmp_path):
  name, value = cli_bad_input(config_file)
  workdir = tmp_path / "new"
  proc = cli(f"--config=configs/{config_file}", f"--config.{name}={value}",
             workdir=workdir)
  line = assert_one_line_error(proc, name)
  assert "expects" in line or "must be" in line, line
  assert not workdir.exists()


def user_error_of_run(workdir, config=None):
  """main.run refuses `config` (default mnist1d_mlp,runlocal) or `workdir`
  with a one-line UserError; returns it."""
  from jaxunknowns import main  # pylint: disable=g-import-not-at-top
  config = config or config_loading.load_config(
      f"{ROOT}/configs/train.py:{MNIST1D}")
  with pytest.raises(UserError) as info:
    main.run(config, str(workdir))
  assert "\n" not in str(info.value)
  return str(info.value)


# Mistakes of the shared fields and of the command line, with what the
# message must name.
BAD_INPUTS = [
    ({"model.name": "nope"},
     ["'nope'", "model.name", "mlp", "lenet_300_100", "resnet"]),
    ({"data.name": "nope"},
     ["'nope'", "data.name", "mnist1d", "fashion_mnist", "synthetic"]),
    ({"optim.name": "nope"},
     ["'nope'", "optim.name", "adam", "sgd", "momentum"]),
    ({"optim.schedule": "nope"},
     ["'nope'", "optim.schedule", "constant", "cosine", "step"]),
    ({"optim.lr": 0.0}, ["optim.lr", "0.0", "> 0"]),
    # Every label is random already: the noise was recorded, and reported
    # ("random labels and 30% label noise"), never applied.
    ({"data.randomization": "random_labels", "data.label_noise": 0.3},
     ["data.label_noise=0.3 is unused", "random_labels"]),
    ({"optim.lr": -0.1}, ["optim.lr", "-0.1", ">= 0"]),
    ({"seeds": 0}, ["seeds", ">= 1"]),
    ({"train.batch_size": 5000}, ["train.batch_size", "5000", "2000"]),
    ({"data.label_noise": 1.5}, ["data.label_noise", "1.5", "[0, 1]"]),
    ({"data.label_noise": -0.1}, ["data.label_noise", "-0.1", ">= 0"]),
    ({"model.dropout": 1.5}, ["model.dropout", "1.5", "[0, 1)"]),
    ({"experiment": "nope"}, ["'nope'", "experiment", "train"]),
    ({"train.unroll": 0}, ["train.unroll", "0", ">= 1"]),
    ({"train.loop": "python", "train.unroll": 4},
     ["train.unroll=4", "scan loop only", "train.loop='scan'"]),
]


@pytest.mark.parametrize("overrides,needles", BAD_INPUTS,
                         ids=[",".join(f"{k}={v}" for k, v in o.items())
                              for o, _ in BAD_INPUTS])
def test_bad_input_is_refused_before_touching_the_workdir(
    tmp_path, overrides, needles):
  """In-process (main.run), into a new workdir and into an existing one."""
  config = config_loading.load_config(f"{ROOT}/configs/train.py:{MNIST1D}",
                                      overrides)
  assert_user_error_before_writing(config, tmp_path / "new", needles)
  existing = tmp_path / "existing"
  existing.mkdir()
  (existing / "notes.txt").write_text("keep me")
  before = snapshot(existing)
  message = user_error_of_run(existing, config)
  assert all(needle in message for needle in needles), message
  assert snapshot(existing) == before


@pytest.mark.parametrize("variant,flags,needles", [
    ("mnist1d_bogus", (), ["unknown variant 'mnist1d_bogus'", "mnist1d_mlp"]),
    (MNIST1D, ("--config.train.nope=3",),
     ["--config.train.nope=3", "no such config field 'nope'"]),
    # A near miss: ml_collections' suggestion, not its escaped KeyError text.
    (MNIST1D, ("--config.train.step=3",),
     ["--config.train.step=3: no such config field 'step' (did you mean "
      "'steps'?"]),
    # The flag named is the misspelt one, not a sibling that holds its name.
    (MNIST1D, ("--config.train.steps=5", "--config.train.step=3"),
     ["--config.train.step=3: no such config field 'step'"]),
    (MNIST1D, ("--config.train.steps.x=3",),
     ["--config.train.steps.x=3: train.steps is a value, not a group"]),
    (MNIST1D, ("--config.seeds=abc",), ["--config.seeds=abc", "int"]),
    (MNIST1D, ("--config.experiment=nope",), ["'nope'", "experiment"]),
    # Ignored without an address: each host ran the whole run alone into
    # the shared workdir, exit 0.
    (MNIST1D, ("--num_processes=2", "--process_id=1"),
     ["--num_processes=2 / --process_id=1", "--coordinator_address"]),
    # jax's ValueError traceback, exit 1.
    (MNIST1D, ("--distributed=on",), ["--distributed=on, but no cluster to join"]),
    # A single-process run, the address silently unused, exit 0.
    (MNIST1D, ("--distributed=off", "--coordinator_address=localhost:1234"),
     ["--coordinator_address=localhost:1234", "--distributed=off"]),
])
def test_cli_command_line_mistakes_are_one_line(tmp_path, variant, flags,
                                                needles):
  proc = cli(f"--config=configs/train.py:{variant}", *flags,
             workdir=tmp_path / "new")
  assert_one_line_error(proc, *needles)
  assert not (tmp_path / "new").exists()


def test_a_gs_workdir_without_its_client_library_is_one_line(tmp_path):
  """Without gcsfs (the [tpu] and [cuda] extras install it), a gs:// workdir
  ended in fsspec's ImportError traceback at the first file touched; in
  main, the sweep, report_cli and verdicts it is one line naming the
  package to install. (report_cli and verdicts share errors.user_error.)"""
  import importlib.util  # pylint: disable=g-import-not-at-top
  from jaxunknowns import errors  # pylint: disable=g-import-not-at-top
  if importlib.util.find_spec("gcsfs") is not None:
    pytest.skip("gcsfs is installed here")
  proc = cli(RUNLOCAL, workdir="gs://no-bucket/run")
  assert_one_line_error(proc, "install gcsfs to access Google Storage",
                        "pip install gcsfs", "[tpu] or [cuda] extra")
  assert errors.user_error(ImportError("Install s3fs to access S3"), "") is not None
  assert errors.user_error(ImportError("No module named 'jaxunknowns.x'"),
                           "gs://b/run") is None  # a bug stays a traceback


def test_an_address_in_the_environment_without_a_cluster_is_one_line(
    tmp_path, monkeypatch):
  """It said '--distributed=on found no cluster', a flag never given."""
  monkeypatch.setattr(sys.modules[__name__], "ENV", dict(
      ENV, JAX_COORDINATOR_ADDRESS="localhost:1234"))
  proc = cli(RUNLOCAL, workdir=tmp_path / "new")
  assert_one_line_error(proc, "JAX_COORDINATOR_ADDRESS is set, but no "
                        "cluster to join", "JAX_NUM_PROCESSES")
  assert not (tmp_path / "new").exists()


def test_a_bad_join_timeout_is_one_line(tmp_path, monkeypatch):
  monkeypatch.setattr(sys.modules[__name__], "ENV", dict(
      ENV, JAXUNKNOWNS_JOIN_SECONDS="abc"))
  proc = cli(RUNLOCAL, "--coordinator_address=localhost:1",
             "--num_processes=2", "--process_id=0", workdir=tmp_path / "new")
  assert_one_line_error(proc, "JAXUNKNOWNS_JOIN_SECONDS='abc'")
  assert not (tmp_path / "new").exists()


def test_the_environment_fills_only_what_the_flags_leave(monkeypatch):
  """JAX_NUM_PROCESSES / JAX_PROCESS_ID beside JAX_COORDINATOR_ADDRESS: a
  flag given wins, and --distributed=off reads none of them."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxunknowns import distributed  # pylint: disable=g-import-not-at-top
  joined = []
  monkeypatch.setattr(jax.distributed, "initialize",
                      lambda **kw: joined.append(kw))
  for name, value in (("JAX_COORDINATOR_ADDRESS", "localhost:1"),
                      ("JAX_NUM_PROCESSES", "2"), ("JAX_PROCESS_ID", "0")):
    monkeypatch.setenv(name, value)
  assert distributed.initialize(enabled=False) is False and not joined
  assert distributed.initialize(process_id=1) is True
  assert joined[-1]["coordinator_address"] == "localhost:1"
  assert (joined[-1]["num_processes"], joined[-1]["process_id"]) == (2, 1)


def test_cli_missing_config_file_is_one_line(tmp_path):
  proc = cli("--config=configs/nope.py", workdir=tmp_path / "new")
  assert_one_line_error(proc, "could not load the config file",
                        "configs/nope.py")
  assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("source,needle", [
    ("x = 1\n", "defines no get_config(arg) function"),
    # A script that is no config (setup.py) ran its own code: setuptools
    # printed its own error and exited 1. It is read now, never run.
    ("import sys\nopen(__file__ + '.ran', 'w').close()\nsys.exit('boom')\n",
     "defines no get_config(arg) function"),
    ("def get_config(arg=''):\n  return {'seeds': 1}\n",
     "get_config() returned a dict, not an ml_collections.ConfigDict"),
    ("import ml_collections\ndef get_config(arg=''):\n"
     "  return ml_collections.ConfigDict({'seeds': 1})\n",
     "without an 'experiment' field"),
], ids=["no_get_config", "a_script", "a_dict", "no_experiment"])
def test_a_file_that_is_no_config_is_one_line(tmp_path, source, needle):
  """A file without get_config named a 'no such config field' that the
  user never set; get_config returning a dict, or a config without its
  experiment, ended in AttributeError tracebacks (main and sweep alike,
  and article.stages.NAME through load_config)."""
  path = tmp_path / "cfg.py"
  path.write_text(source)
  for module in ("jaxunknowns.main", "jaxunknowns.sweep"):
    proc = cli(f"--config={path}", workdir=tmp_path / "new",
               command=("-m", module))
    assert_one_line_error(proc, str(path), needle)
    assert not (tmp_path / "new").exists()
  with pytest.raises(UserError, match=re.escape(needle)):
    config_loading.load_config(str(path))
  assert not (tmp_path / "cfg.py.ran").exists()


def test_the_issue_example_is_one_line(tmp_path):
  """Issue 17: `--config.model.widths=abc` used to end in a traceback."""
  proc = cli("--config=configs/train.py:mnist1d_mlp", "--config.model.widths=abc",
             workdir=tmp_path / "w")
  assert_one_line_error(proc, "model.widths=('abc',)", "tuple of integers")
  assert not (tmp_path / "w").exists()


def test_a_refused_config_is_the_only_line_on_stderr(tmp_path):
  """A config refused by its checks prints nothing but the error: the
  one-process run no longer starts JAX's backends to compare configs
  across processes, whose probe logged "Unable to initialize backend
  'tpu'" at INFO before the error line. Without JAX_PLATFORMS, as a user
  runs it: JAX_PLATFORMS=cpu skips that probe, which hid the CLI's SIGTERM
  handler starting the backends (jax.process_count()) too."""
  env = {k: v for k, v in ENV.items() if k != "JAX_PLATFORMS"}
  proc = cli("--config=configs/max_margin.py:runlocal",
             "--config.train.precision=bfloat16", workdir=tmp_path / "w",
             env=env)
  line = assert_one_line_error(proc, "train.precision='bfloat16'")
  assert proc.stderr.strip().splitlines() == [line], proc.stderr
  assert not (tmp_path / "w").exists()


# -----------------------------------------------------------------------------
# Workdirs
# -----------------------------------------------------------------------------
def test_workdir_that_cannot_be_created():
  proc = cli(RUNLOCAL, workdir="/proc/nope")
  assert_one_line_error(proc, "/proc/nope", "cannot be created",
                        "choose another --workdir")
  assert not os.path.exists("/proc/nope")


def test_workdir_that_is_a_file(tmp_path):
  path = tmp_path / "file"
  path.write_text("keep me")
  message = user_error_of_run(path)
  assert str(path) in message and "not a folder" in message
  message = user_error_of_run(path / "run")  # under a file
  assert str(path) in message and "not a folder" in message
  assert path.read_text() == "keep me"
  assert_one_line_error(cli(RUNLOCAL, workdir=path), str(path), "not a folder")


def test_empty_workdir_writes_nothing_into_the_current_folder(
    tmp_path, monkeypatch):
  """An empty --workdir resolved to the current folder: the run wrote its
  files there (and --overwrite would have deleted it first)."""
  from jaxunknowns import sweep  # pylint: disable=g-import-not-at-top
  monkeypatch.chdir(tmp_path)
  assert "--workdir is empty" in user_error_of_run("")
  with pytest.raises(UserError, match="--workdir is empty"):
    sweep.run_sweep(f"{ROOT}/configs/train.py:{MNIST1D}", "", dry_run=True)
  assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("text", ['{"experiment": "tr', "[]", "\x00\xff"])
def test_damaged_config_json_is_one_line_and_kept(tmp_path, text):
  """A workdir whose config.json is torn or not an object: which run it
  holds is unknown (it was a JSONDecodeError or AttributeError traceback)."""
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text(text)
  before = snapshot(workdir)
  message = user_error_of_run(workdir)
  assert str(workdir / "config.json") in message and "--overwrite" in message
  assert snapshot(workdir) == before


@pytest.mark.parametrize("text", ['{"evals": {"te', "[1, 2]", "{}"])
def test_damaged_stage_result_stops_the_resume_before_writing(tmp_path, text):
  """A finished stage's result.json damaged after the fact (a partial copy)
  was a JSONDecodeError traceback once the experiment reached that stage,
  after the earlier stages had written; now the resume stops before any."""
  from jaxunknowns import stages  # pylint: disable=g-import-not-at-top
  from jaxunknowns.workdir import config_to_dict  # pylint: disable=g-import-not-at-top
  config = config_loading.load_config(f"{ROOT}/configs/train.py:{MNIST1D}")
  workdir = tmp_path / "run"
  stage = workdir / "arms" / "small_batch"
  stage.mkdir(parents=True)
  (workdir / "config.json").write_text(json.dumps(config_to_dict(config)))
  (stage / "result.json").write_text(text)
  before = snapshot(workdir)
  message = user_error_of_run(workdir, config)
  assert str(stage / "result.json") in message, message
  assert f"delete the folder {stage}" in message, message
  assert snapshot(workdir) == before
  with pytest.raises(UserError, match="is damaged"):  # reached mid-run
    stages.run_stage(str(stage), lambda: pytest.fail("recomputed"))


def test_stage_result_missing_a_field_is_one_line_at_its_first_use(tmp_path):
  """A finished stage's result.json that parses but lost a field (an edit)
  was a KeyError traceback deep in the experiment that read it: now the
  read names the file and the folder to delete, at any depth, and is still
  a KeyError for code that tests for one."""
  from jaxunknowns import errors, stages  # pylint: disable=g-import-not-at-top
  stage = tmp_path / "run" / "arms" / "a"
  stage.mkdir(parents=True)
  (stage / "result.json").write_text(json.dumps(
      {"steps": 3, "final": {"test": {}}, "runs": [{"seed": 0}]}))
  result = stages.run_stage(str(stage), lambda: pytest.fail("recomputed"))
  assert result["steps"] == 3 and result.get("evals") is None
  for read in (lambda r: r["evals"], lambda r: r["final"]["test"]["loss"],
               lambda r: r["runs"][0]["accuracy"]):
    with pytest.raises(KeyError) as caught:
      read(result)
    error = errors.user_error(caught.value, str(tmp_path / "run"))
    assert isinstance(error, UserError), caught.value
    message = str(error)
    assert "\n" not in message and str(stage / "result.json") in message
    assert f"delete the folder {stage}" in message, message
  # Copies (Ray's pickles, deepcopy) are the plain data.
  for twin in (pickle.loads(pickle.dumps(result)), copy.deepcopy(result)):
    assert twin == json.loads((stage / "result.json").read_text())
    assert type(twin) is dict and type(twin["final"]) is dict


def test_overwrite_never_deletes_a_folder_that_holds_no_run(tmp_path):
  """--overwrite deleted any existing --workdir, a folder of the user's own
  files included (a typo for the run's path), then ran there, exit 0."""
  from jaxunknowns import main  # pylint: disable=g-import-not-at-top
  workdir = tmp_path / "thesis"
  (workdir / "chapters").mkdir(parents=True)
  (workdir / "chapters" / "one.tex").write_text("keep me")
  before = snapshot(workdir)
  config = config_loading.load_config(f"{ROOT}/configs/train.py:{MNIST1D}")
  with pytest.raises(UserError) as info:
    main.run(config, str(workdir), overwrite=True)
  message = str(info.value)
  for needle in (str(workdir), "no run", "config.json", "chapters",
                 "choose another --workdir"):
    assert needle in message, (needle, message)
  assert snapshot(workdir) == before


@pytest.mark.parametrize("entry,kind", [("checkpoints", "file"),
                                        ("metrics.jsonl", "folder")])
def test_a_file_where_a_run_keeps_a_folder_is_one_line(tmp_path, entry, kind):
  """checkpoints/ replaced by a file: the resume trained from scratch,
  rewrote metrics.jsonl, then failed saving (NotADirectoryError traceback);
  metrics.jsonl a folder: an IsADirectoryError traceback."""
  from jaxunknowns.workdir import config_to_dict  # pylint: disable=g-import-not-at-top
  config = config_loading.load_config(f"{ROOT}/configs/train.py:{MNIST1D}")
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text(json.dumps(config_to_dict(config)))
  (workdir / "metrics.jsonl").write_text('{"step": 10, "split": "test"}\n')
  if kind == "file":
    (workdir / entry).write_text("x")
  else:
    (workdir / entry).unlink()
    (workdir / entry).mkdir()
  before = snapshot(workdir)
  message = user_error_of_run(workdir, config)
  for needle in (str(workdir / entry), f"is a {kind} where a run keeps",
                 "--overwrite"):
    assert needle in message, (needle, message)
  assert snapshot(workdir) == before


@pytest.mark.parametrize("text", ['{"final": {"te', "[1]"])
def test_damaged_summary_of_a_finished_run_is_one_line(tmp_path, text):
  """A finished run's summary.json damaged afterwards: the rerun said
  'already finished' about it, and a sweep or the article reading it back
  ended in a JSONDecodeError / AttributeError traceback."""
  from jaxunknowns.workdir import config_to_dict  # pylint: disable=g-import-not-at-top
  config = config_loading.load_config(f"{ROOT}/configs/train.py:{MNIST1D}")
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text(json.dumps(config_to_dict(config)))
  (workdir / "summary.json").write_text(text)
  before = snapshot(workdir)
  message = user_error_of_run(workdir, config)
  for needle in (str(workdir / "summary.json"), "damaged",
                 "delete it and rerun the same command"):
    assert needle in message, (needle, message)
  assert snapshot(workdir) == before


@pytest.mark.parametrize("module", ["jaxunknowns.main", "jaxunknowns.sweep"])
def test_cli_positional_arguments_are_one_line(tmp_path, module):
  """They were absl's UsageError: exit 1 and no `error:` line."""
  proc = cli(RUNLOCAL, "seeds=2", workdir=tmp_path / "new",
             command=("-m", module))
  assert_one_line_error(proc, "unexpected arguments: seeds=2")
  assert not (tmp_path / "new").exists()


def in_mount_namespace(script, tmp_path):
  """Runs the bash `script` as root in a private mount namespace (mounts
  made there vanish with it); skips where that is not allowed."""
  probe = subprocess.run(
      ["unshare", "-m", "--propagation", "private", "sh", "-c",
       f"mount -t tmpfs -o size=1m tmpfs {tmp_path}"], capture_output=True)
  if probe.returncode != 0:
    pytest.skip(f"no private tmpfs mounts here: {probe.stderr[-300:]!r}")
  return subprocess.run(
      ["unshare", "-m", "--propagation", "private", "bash", "-euc", script],
      cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)


def test_read_only_workdir(tmp_path):
  """A read-only filesystem refuses root too (os.access says so), so the
  tests, which run as root, mount one rather than switch users."""
  mnt = tmp_path / "ro"
  mnt.mkdir()
  script = f"""
    mount -t tmpfs -o ro,size=1m tmpfs {mnt}
    {sys.executable} -m jaxunknowns.main {RUNLOCAL} --workdir={mnt}/run || echo "rc=$?"
    test ! -e {mnt}/run && echo "no workdir"
  """
  proc = in_mount_namespace(script, tmp_path)
  assert "rc=2" in proc.stdout and "no workdir" in proc.stdout, proc.stdout
  error = assert_one_line_error(
      subprocess.CompletedProcess([], 2, "", proc.stderr),
      f"{mnt}/run", "not writable", "read-only")
  assert "choose another --workdir" in error


# The CLI with a disk that fills up at step 20 of mnist1d_mlp,runlocal (20
# steps, checkpoints at 10 and 20): after the checkpoint at step 10, the
# metrics rows of step 20 get half written (torn line), then ENOSPC.
METRICS_FULL_AT_20 = """
import errno, sys
from absl import app
from jaxunknowns import main, metrics
write = metrics.MetricWriter.write
def write_until_full(self, step, *args, **kwargs):
  if step == 20:
    with open(self.path, "a") as f:
      f.write('{"step": 20, "spl')
    raise OSError(errno.ENOSPC, "No space left on device", self.path)
  return write(self, step, *args, **kwargs)
metrics.MetricWriter.write = write_until_full
app.run(main.main, flags_parser=main.parse_flags)
"""

# The same run on a real tmpfs that a filler file fills up just before the
# checkpoint of step 20 (orbax, writing through tensorstore, hits ENOSPC).
CHECKPOINT_FULL_AT_20 = """
import os, sys
from absl import app
from jaxunknowns import checkpoints, main
save = checkpoints.Checkpoints.save
def save_on_full_disk(self, step, state):
  if step == 20 and "/checkpoints" in self.directory:
    # Step 10's save (asynchronous) lands first: else filling the disk
    # raced it, and a fast machine left 10 half-written (seen once in CI).
    checkpoints.wait_for_saves()
    with open(os.environ["FILLER"], "wb") as f:
      try:
        while True:
          f.write(b"x" * 65536)
      except OSError:
        pass
  return save(self, step, state)
checkpoints.Checkpoints.save = save_on_full_disk
app.run(main.main, flags_parser=main.parse_flags)
"""


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """metrics.jsonl rows and summary of mnist1d_mlp,runlocal run in one go."""
  workdir = tmp_path_factory.mktemp("whole") / "run"
  proc = cli(RUNLOCAL, workdir=workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return rows_of(workdir), json.loads((workdir / "summary.json").read_text())


def rows_of(workdir):
  with open(Path(workdir) / "metrics.jsonl") as f:
    return [json.loads(line) for line in f
            if line.endswith("\n") and line.startswith("{")
            and line.rstrip().endswith("}")]


def assert_resumed_without_loss(before_rows, workdir, uninterrupted):
  """The rerun resumed from checkpoint 10, kept every row written before
  the disk filled, and ends with the rows of an uninterrupted run."""
  whole_rows, whole_summary = uninterrupted
  rows = rows_of(workdir)
  key = lambda r: (r["step"], r["split"], r["seed"])
  assert len({key(r) for r in rows}) == len(rows), "duplicate rows"
  assert all(r in rows for r in before_rows)
  assert sorted(rows, key=key) == sorted(whole_rows, key=key)
  summary = json.loads((Path(workdir) / "summary.json").read_text())
  assert summary["resumed_from_step"] == 10
  assert summary["final"] == whole_summary["final"]


def test_disk_full_writing_metrics_then_rerun_resumes(tmp_path, uninterrupted):
  workdir = tmp_path / "run"
  script = tmp_path / "metrics_full_at_20.py"
  script.write_text(METRICS_FULL_AT_20)
  proc = cli(RUNLOCAL, workdir=workdir, command=(str(script),))
  assert_one_line_error(proc, str(workdir / "metrics.jsonl"), "disk is full",
                        "rerun the same command")
  before = rows_of(workdir)
  assert {r["step"] for r in before} == {10}  # step 10's rows, then the tear
  proc = cli(RUNLOCAL, workdir=workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert_resumed_without_loss(before, workdir, uninterrupted)


def test_disk_full_writing_a_checkpoint_then_rerun_resumes(
    tmp_path, uninterrupted):
  mnt, saved = tmp_path / "disk", tmp_path / "saved"
  mnt.mkdir()
  wrapper = tmp_path / "checkpoint_full_at_20.py"
  wrapper.write_text(CHECKPOINT_FULL_AT_20)
  run = f"{sys.executable} {wrapper} {RUNLOCAL} --workdir={mnt}/run"
  script = f"""
    mount -t tmpfs -o size=20m tmpfs {mnt}
    export FILLER={mnt}/filler
    {run} || echo "first rc=$?"
    cp -a {mnt}/run {saved}
    rm {mnt}/filler
    {sys.executable} -m jaxunknowns.main {RUNLOCAL} --workdir={mnt}/run 2>/dev/null && echo "second rc=0"
    cp -a {mnt}/run {tmp_path}/final
  """
  proc = in_mount_namespace(script, tmp_path)
  assert "first rc=2" in proc.stdout and "second rc=0" in proc.stdout, (
      proc.stdout, proc.stderr[-3000:])
  assert_one_line_error(subprocess.CompletedProcess([], 2, "", proc.stderr),
                        f"{mnt}/run", "disk is full", "rerun the same command")
  assert "10" in os.listdir(saved / "checkpoints")
  assert_resumed_without_loss(rows_of(saved), tmp_path / "final",
                              uninterrupted)


def test_a_closed_event_loop_after_a_failed_save_prints_nothing():
  """The race behind a full disk's stray traceback, made deterministic: an
  object that posts to a closed asyncio loop while being collected (as a
  tensorstore callback does after orbax closed its loop) raises in no one's
  frame. main's hook keeps that quiet but still prints any other such error."""
  program = """
import asyncio, sys
from jaxunknowns import main
sys.unraisablehook = main.quiet_unraisables
loop = asyncio.new_event_loop()
loop.close()
class PostsToTheClosedLoop:
  def __del__(self):
    loop.call_soon_threadsafe(print)
class FailsOtherwise:
  def __del__(self):
    raise ValueError("a real bug")
PostsToTheClosedLoop()
FailsOtherwise()
"""
  proc = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=ENV,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert "Event loop is closed" not in proc.stderr, proc.stderr
  assert "ValueError: a real bug" in proc.stderr, proc.stderr


def test_a_stage_regularizer_on_a_linear_model_names_the_stage(tmp_path):
  """randomization's ablation sets dropout per stage: on an MLP without
  hidden layers the refusal names that stage (the user set no dropout), and
  the workdir is never made."""
  config = config_loading.load_config(
      f"{ROOT}/configs/randomization.py:runlocal", {"model.widths": ()})
  message = user_error_of_run(tmp_path / "new", config)
  assert message.startswith("stage true_labels-") and (
      "model.dropout=0.2 acts on hidden layers" in message), message
  assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("config_file", ["bn_stability.py", "bn_placement.py"])
def test_a_target_accuracy_at_chance_is_refused(config_file, tmp_path):
  """runlocal's target 0.3 on two-class data (synthetic): every network
  'reached' it in its first chunk, so the steps to target compared nothing.
  Refused at chance, 1/classes, before the workdir exists; just above
  chance passes (validation.check_above_chance by hand)."""
  config = config_loading.load_config(
      f"{ROOT}/configs/{config_file}:runlocal",
      {"data.name": "synthetic", "data.train_size": 500})
  message = user_error_of_run(tmp_path / "new", config)
  assert message.startswith("grid.target_accuracy=0.3") and (
      "above chance (1/2 = 0.5" in message), message
  assert not (tmp_path / "new").exists()
  for target, classes in ((0.5, 2), (0.1, 10)):
    with pytest.raises(UserError, match="above chance"):
      validation.check_above_chance("grid.target_accuracy", target, classes)
    validation.check_above_chance("grid.target_accuracy", target + 1e-3,
                                  classes)


def test_a_schedule_change_is_refused_exactly_when_no_step_sees_it():
  """Brute force over the lr of every step 0 .. T−1 (optim's own schedule):
  a step boundary b, or a warm-up of W steps, is accepted exactly when some
  step trains at an lr it set (b: lr·decay at some step; W: lr reached);
  a step schedule of no boundary sets none."""
  from jaxunknowns import optim  # pylint: disable=g-import-not-at-top
  base = config_loading.load_config(f"{ROOT}/configs/train.py:{MNIST1D}")
  T = 6
  for field, values in (("boundaries", [()] + [(b,) for b in range(1, T + 3)]),
                        ("warmup_steps", range(1, T + 3))):
    for value in values:
      o = base.optim.copy_and_resolve_references()
      o.lr, o[field] = 1.0, value
      o.schedule = "step" if field == "boundaries" else "constant"
      lrs = [float(optim.learning_rate_schedule(o, T)(t)) for t in range(T)]
      seen = (any(lr < 1.0 - 1e-6 for lr in lrs) if field == "boundaries"
              else max(lrs) == 1.0)
      if seen:
        validation.check_schedule_fits(o, T)
      else:
        with pytest.raises(UserError, match=f"optim.{field}="):
          validation.check_schedule_fits(o, T)


@pytest.mark.parametrize("spec,overrides,needles", [
    # imp's mnist1d step schedule (lr x0.1 at 750, 1125) on a shorter run.
    ("imp.py:retrain", {"train.steps": 700},
     ["optim.boundaries=(750, 1125)", "below the run's 700",
      "never reaches step 750, where the lr would fall"]),
    (f"train.py:{MNIST1D}", {"optim.warmup_steps": 20},
     ["optim.warmup_steps=20", "below the run's 20 steps"]),
    # A step schedule without a boundary trained at a constant lr, its
    # decay_factor recorded, never used.
    (f"train.py:{MNIST1D}", {"optim.schedule": "step",
                             "optim.decay_factor": 0.5},
     ["optim.boundaries=()", "optim.schedule='step'"]),
    # Epoch budgets: the arm's and the cell's steps are known once the data
    # is loaded; still refused before the workdir exists.
    ("landscape.py:runlocal", {"optim.schedule": "step",
                               "optim.boundaries": (100000,)},
     ["optim.boundaries=(100000,)", "below the run's"]),
    ("bn_batch_size.py:runlocal", {"optim.schedule": "step",
                                   "optim.boundaries": (30,)},
     ["grid cell", "optim.boundaries=(30,)", "below the run's"]),
    # Fine-tuning goes on past train.steps, where cosine's lr is 0.
    ("bn_modes.py:runlocal", {"optim.schedule": "cosine"},
     ["optim.schedule='cosine'", "fine-tunes after train.steps"]),
])
def test_an_lr_change_the_run_never_reaches_is_refused(tmp_path, spec,
                                                       overrides, needles):
  config = config_loading.load_config(f"{ROOT}/configs/{spec}", overrides)
  message = user_error_of_run(tmp_path / "new", config)
  assert all(n in message for n in needles), message
  assert not (tmp_path / "new").exists()


def test_runlocal_keeps_the_schedule_at_the_same_fractions_of_the_run():
  """imp's retrain decays at 50% and 75% of 1500 steps; its runlocal of 40
  steps at steps 20 and 30 (not 750 and 1125, which it never reaches)."""
  full = config_loading.load_config(f"{ROOT}/configs/imp.py:retrain")
  small = config_loading.load_config(f"{ROOT}/configs/imp.py:retrain,runlocal")
  assert (full.train.steps, tuple(full.optim.boundaries)) == (1500, (750, 1125))
  assert (small.train.steps, tuple(small.optim.boundaries)) == (40, (20, 30))


@pytest.mark.parametrize("present", [("summary.json",), ("checkpoints",),
                                     ("metrics.jsonl", "snapshots")])
def test_a_run_s_files_without_its_config_are_one_line(tmp_path, present):
  """config.json deleted from a run: a finished one said 'already
  finished' to any config; an unfinished one took the new config, wrote
  its config.json, and called the other run's checkpoints corrupt."""
  workdir = tmp_path / "run"
  workdir.mkdir()
  for name in present:
    if "." in name:
      (workdir / name).write_text("{}")
    else:
      (workdir / name).mkdir()
  before = snapshot(workdir)
  message = user_error_of_run(workdir)
  for needle in (str(workdir), present[0], "but no config.json",
                 "which config made them is unknown"):
    assert needle in message, (needle, message)
  assert snapshot(workdir) == before


def test_a_sweep_root_is_not_a_run_s_workdir(tmp_path):
  """main wrote a run's files beside sweep.json and the sweep's runs."""
  root = tmp_path / "sweep"
  (root / "lr=0.001").mkdir(parents=True)
  (root / "sweep.json").write_text("{}")
  before = snapshot(root)
  message = user_error_of_run(root)
  assert "is a sweep's root" in message and "own --workdir" in message
  assert snapshot(root) == before


def test_a_run_s_workdir_is_not_a_sweep_root(tmp_path):
  """The sweep put its runs' folders and sweep.* among a run's files."""
  from jaxunknowns.workdir import config_to_dict  # pylint: disable=g-import-not-at-top
  config = config_loading.load_config(f"{ROOT}/configs/train.py:{MNIST1D}")
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text(json.dumps(config_to_dict(config)))
  before = snapshot(workdir)
  proc = cli(RUNLOCAL, "--sweep=lr", workdir=workdir,
             command=("-m", "jaxunknowns.sweep"))
  assert_one_line_error(proc, str(workdir), "is a run's workdir",
                        "config.json")
  assert snapshot(workdir) == before


@pytest.mark.parametrize("overrides, needle", [
    ({"optim.lr": 1e300}, "optim.lr=1e+300: float32 cannot hold 1e+300 "
     "(it would become inf)"),
    ({"optim.name": "adam", "optim.eps": 1e-300},
     "optim.eps=1e-300: float32 cannot hold 1e-300 (it would become 0)"),
    ({"optim.grad_clip": 1e39}, "float32 cannot hold 1e+39")])
def test_a_float_that_float32_cannot_hold_is_refused(overrides, needle):
  """lr 1e300 trained until the loss was NaN (the workdir written, the
  advice to lower lr); eps 1e-300 divided by zero; a clip of 1e300 was no
  clip, exit 0. The device computes in float32 (or less)."""
  config = config_loading.load_config(f"{ROOT}/configs/train.py:{MNIST1D}",
                                      overrides)
  with pytest.raises(UserError) as info:
    validation.check_config(config)
  assert needle in str(info.value), str(info.value)
  config = config_loading.load_config(f"{ROOT}/configs/train.py:{MNIST1D}",
                                      {k: (v if isinstance(v, str) else 1e-3)
                                       for k, v in overrides.items()})
  validation.check_config(config)  # the same fields in range pass


def test_a_float64_experiment_takes_floats_float32_cannot_hold():
  """max_margin computes in float64, studying Adam as eps -> 0."""
  spec = f"{ROOT}/configs/max_margin.py"
  config = config_loading.load_config(spec, {"optim.eps": 1e-50})
  validation.check_config(config, validation.references_of(spec))


@pytest.mark.parametrize("progress", [False, True])
@pytest.mark.parametrize("before", ["absent", "empty", "overwritten"])
def test_out_of_memory_is_one_line_and_leaves_no_workdir_it_made(
    tmp_path, monkeypatch, progress, before):
  """model.widths=(10**9,): XLA's RESOURCE_EXHAUSTED was a traceback, exit
  1, and the new workdir's config.json then refused the smaller config. A
  workdir with a checkpoint stays: it resumes. A folder made beforehand
  (mkdir, mktemp -d), or emptied by --overwrite, is left empty."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxunknowns import errors, experiments, main  # pylint: disable=g-import-not-at-top

  def run(config, workdir):
    del config
    workdir.open()
    if progress:
      os.makedirs(workdir.file("checkpoints", "10"))
    raise jax.errors.JaxRuntimeError(
        "RESOURCE_EXHAUSTED: Out of memory allocating 160000000000 bytes.")
  monkeypatch.setattr(validation, "check_config",
                      lambda *_: experiments.Experiment(run=run))
  config = config_loading.load_config(f"{ROOT}/configs/train.py:{MNIST1D}")
  workdir = tmp_path / "run"
  if before != "absent":
    workdir.mkdir()
  if before == "overwritten":
    (workdir / "config.json").write_text('{"experiment": "train"}')  # an old run
  with pytest.raises(jax.errors.JaxRuntimeError) as info:
    main.run(config, str(workdir), overwrite=before == "overwritten")
  message = str(errors.user_error(info.value, str(workdir)))
  assert message.startswith("out of memory (RESOURCE_EXHAUSTED: Out of memory")
  assert "\n" not in message and "lower config.seeds" in message
  if progress:
    assert (workdir / "config.json").exists()
  elif before == "absent":
    assert not workdir.exists()
  else:
    assert workdir.is_dir() and not list(workdir.iterdir())
  assert "out of memory" in str(errors.user_error(MemoryError(), "w"))
  assert errors.user_error(RuntimeError("INTERNAL: x"), "w") is None  # a bug


def test_vmap_asked_for_where_it_cannot_apply_is_one_line(tmp_path):
  """--vmap on a sweep of model.name trained separate programs, exit 0,
  with only a stdout line (none at all with --dry_run)."""
  proc = cli(RUNLOCAL, "--sweep=lr_model", "--vmap", "--dry_run",
             workdir=tmp_path / "sweep", command=("-m", "jaxunknowns.sweep"))
  assert_one_line_error(proc, "--vmap: swept fields model.name change the "
                        "compiled program", "drop --vmap")
  assert not (tmp_path / "sweep").exists()


def test_a_failed_run_leaves_no_writer_or_manager_open(tmp_path):
  """From Python (a notebook), each run that stopped on an error left its
  TensorBoard writer (2 threads, 3 files) and checkpoint managers open for
  the session. Here: a run that diverges after its first rows and its first
  checkpoint, then a second one; the process is back where it was."""
  import threading  # pylint: disable=g-import-not-at-top
  from jaxunknowns import main as main_lib  # pylint: disable=g-import-not-at-top

  def config(lr):
    return config_loading.load_config(
        f"{ROOT}/configs/train.py:{MNIST1D}", {
            "optim.name": "sgd", "optim.lr": lr, "train.loss": "mse",
            "train.steps": 400, "train.log_every": 5,
            "train.checkpoint_every": 5, "data.train_size": 500})

  with pytest.raises(UserError, match="loss became"):  # warm: imports, jit
    main_lib.run(config(50.0), str(tmp_path / "warm"))
  threads, files = threading.active_count(), len(os.listdir("/proc/self/fd"))
  for i, lr in enumerate((50.0, 200.0)):
    with pytest.raises(UserError, match="loss became"):
      main_lib.run(config(lr), str(tmp_path / f"w{i}"))
    assert (tmp_path / f"w{i}" / "tensorboard").is_dir()
  assert threading.active_count() == threads, threading.enumerate()
  assert len(os.listdir("/proc/self/fd")) == files


def test_a_file_size_limit_reached_by_tensorboard_is_one_line(tmp_path):
  """TensorBoard events were written by tensorboardX's own thread: a full
  disk (or, here, the shell's file-size limit, `ulimit -f 150`) killed that
  thread with a traceback, and the run then hung forever on its queue. The
  events are now written where the rows are: one line, exit 2."""
  # The shell sets the limit (a preexec_fn would fork this JAX process).
  proc = subprocess.run(
      ["bash", "-c", 'ulimit -f 150 && exec "$@"', "bash", sys.executable,
       "-m", "jaxunknowns.main", RUNLOCAL, f"--workdir={tmp_path / 'run'}",
       "--config.train.steps=20000", "--config.train.log_every=10",
       "--config.train.eval_every=50", "--config.train.checkpoint_every=500"],
      cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
  assert_one_line_error(proc, "file too large", "rerun the same command")


@pytest.mark.parametrize("size", ["300k", "700k"])
def test_a_sweep_on_a_full_disk_is_one_line(tmp_path, size):
  """A sweep whose disk fills: the full disk was logged as each run's crash
  (tracebacks), the sweep went on to the next run on the same disk, and
  its aggregate's OSError ended it with rc 1. Now one line, exit 2: a file
  of the run's own that could not be written stops the sweep; a full disk
  seen only through orbax (no file named) fails that run, in one line of
  the sweep's failures, and the sweep goes on."""
  mnt = tmp_path / "disk"
  mnt.mkdir()
  script = f"""
    mount -t tmpfs -o size={size} tmpfs {mnt}
    {sys.executable} -m jaxunknowns.sweep {RUNLOCAL} --sweep=lr --novmap --workdir={mnt}/root || echo "rc=$?"
  """
  proc = in_mount_namespace(script, tmp_path)
  assert "rc=2" in proc.stdout, (proc.stdout, proc.stderr[-3000:])
  error = assert_one_line_error(
      subprocess.CompletedProcess([], 2, "", proc.stderr))
  assert "disk is full" in error or (
      "runs of sweep 'lr' failed" in error and "disk is full" in proc.stdout
  ), (error, proc.stdout)


def test_a_disk_full_before_the_first_write_leaves_no_workdir(tmp_path):
  """A disk already full: the run stopped in one line but left its new
  workdir holding a 0-byte config.tmp.json."""
  mnt = tmp_path / "disk"
  mnt.mkdir()
  script = f"""
    mount -t tmpfs -o size=64k tmpfs {mnt}
    dd if=/dev/zero of={mnt}/filler bs=4k 2>/dev/null || true
    {sys.executable} -m jaxunknowns.main {RUNLOCAL} --workdir={mnt}/run || echo "rc=$?"
    ls -A {mnt}
  """
  proc = in_mount_namespace(script, tmp_path)
  assert proc.stdout.split() == ["rc=2", "filler"], (proc.stdout,
                                                     proc.stderr[-3000:])
  assert_one_line_error(subprocess.CompletedProcess([], 2, "", proc.stderr),
                        "disk is full")


def test_a_workdir_path_too_long_for_a_runs_files_is_refused(tmp_path):
  """A 4,003-character path passed every check, then failed mid-run with
  ENAMETOOLONG (orbax's folders lie deeper), leaving files a rerun failed
  on too. Refused first now, nothing made."""
  workdir = tmp_path.joinpath(*["c" * 200] * 19, "d" * 100)
  assert len(str(workdir)) > 3900
  proc = cli(RUNLOCAL, workdir=workdir)
  assert_one_line_error(proc, "bytes long", "choose a shorter --workdir")
  assert not (tmp_path / ("c" * 200)).exists()


@pytest.mark.parametrize("spec, overrides, needle", [
    ("train.py:runlocal", {"model.norm": "foo"}, "unknown model.norm 'foo'"),
    ("train.py:runlocal", {"model.name": "foo"}, "unknown model 'foo'"),
    ("train.py:runlocal", {"data.name": "foo"}, "unknown dataset 'foo'"),
    ("train.py:runlocal", {"data.augment": "foo"}, "unknown data.augment"),
    ("landscape.py:bn,runlocal", {"arms.with_bn.model.norm": "foo"},
     "arm 'with_bn' (arms.with_bn): unknown model.norm 'foo'"),
    ("sharpness.py:runlocal", {"arms.large_batch.train.batch_size": 0},
     "arm 'large_batch' (arms.large_batch): train.batch_size=0")])
def test_a_bad_model_or_arm_setting_is_refused_before_the_run(
    spec, overrides, needle):
  """An unknown model or dataset name (or norm, or augmentation) passed
  every check and failed only as the model was built or the data loaded,
  inside the run (its log lines before the error);
  an arm's bad value named the field alone (model.norm), not the arm the
  user set it in."""
  config = config_loading.load_config(f"{ROOT}/configs/{spec}", overrides)
  with pytest.raises(UserError) as info:
    validation.check_config(config)
  assert str(info.value).startswith(needle), str(info.value)


# -----------------------------------------------------------------------------
# Values out of range, and configs that are not their experiment's
# -----------------------------------------------------------------------------
@pytest.mark.parametrize("spec, experiment, needles", [
    # An AttributeError inside imp's checks (no prune.*).
    (f"train.py:{MNIST1D}", "imp", ["lacks imp's fields prune", "stability"]),
    # Trained in full, then crashed without its summary.json.
    ("imp.py:mnist1d,runlocal", "train",
     ["its fields prune, stability are not train's"]),
    # One section, grid, with each experiment's own fields in it.
    ("bn_batch_size.py:runlocal", "bn_placement",
     ["lacks bn_placement's fields grid"]),
    ("width_sweep.py:mnist1d,runlocal", "double_descent",
     ["lacks double_descent's fields double_descent"]),
    ("article.py:runlocal", "train", ["lacks train's fields data"]),
])
def test_an_experiment_set_on_another_experiments_config_is_refused(
    tmp_path, spec, experiment, needles):
  config = config_loading.load_config(f"{ROOT}/configs/{spec}",
                                      {"experiment": experiment})
  for references in (None, validation.references_of(f"{ROOT}/configs/{spec}")):
    with pytest.raises(UserError) as info:
      validation.check_config(config, references)
    message = str(info.value)
    for needle in [f"experiment={experiment!r} does not fit this config",
                   f"configs/{experiment}.py", *needles]:
      assert needle in message, (needle, message)
  assert_user_error_before_writing(config, tmp_path / "new", needles)


def test_an_experiment_of_ones_own_runs_on_any_config():
  """One registered in code has no config file to compare with (the
  multi-process tests run theirs on train.py's config)."""
  from jaxunknowns import experiments  # pylint: disable=g-import-not-at-top
  if "own_test_experiment" not in experiments.EXPERIMENTS:
    experiments.register("own_test_experiment")(lambda config, workdir: None)
  spec = f"{ROOT}/configs/train.py:{MNIST1D}"
  validation.check_config(config_loading.load_config(
      spec, {"experiment": "own_test_experiment"}),
                          validation.references_of(spec))


def test_cli_experiment_of_another_config_file_is_one_line(tmp_path):
  """On the command line only train.py is loaded: imp's own file is read
  to compare with."""
  proc = cli(RUNLOCAL, "--config.experiment=imp", workdir=tmp_path / "new")
  assert_one_line_error(proc, "experiment='imp' does not fit this config",
                        "configs/imp.py")
  assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("overrides, needle", [
    ({"optim.freeze": "["}, "optim.freeze='[' is not a regular expression"),
    ({"optim.train_only": "("},
     "optim.train_only='(' is not a regular expression")])
def test_a_parameter_pattern_that_is_no_regex_is_refused(overrides, needle):
  """re.error's traceback, once the model was built."""
  config = config_loading.load_config(f"{ROOT}/configs/train.py:{MNIST1D}",
                                      overrides)
  with pytest.raises(UserError) as info:
    validation.check_config(config)
  assert str(info.value).startswith(needle), str(info.value)
  assert "\n" not in str(info.value)


@pytest.mark.parametrize("overrides, needle", [
    ({"optim.freeze": ".*"}, "optim.freeze='.*' freezes every parameter"),
    ({"optim.train_only": "Dense_0", "optim.freeze": "Dense"},
     "optim.train_only='Dense_0' with optim.freeze='Dense' freezes every")])
def test_freezing_every_parameter_is_refused_before_the_workdir(
    tmp_path, overrides, needle):
  """freeze='.*' trained nothing, exit 0. Known once the model's
  parameters are (as the trainer is built), still before the workdir."""
  config = config_loading.load_config(f"{ROOT}/configs/train.py:{MNIST1D}",
                                      overrides)
  assert_user_error_before_writing(config, tmp_path / "new",
                                   [needle, "Dense_0/kernel"])


@pytest.mark.parametrize("spec, overrides, needle", [
    # Shown on the report page as "200%".
    (f"train.py:{MNIST1D}", {"reference.test_accuracy": 2.0},
     "reference.test_accuracy=2.0 is out of range: must be in [0, 1]"),
    (f"train.py:{MNIST1D}", {"reference.test_accuracy": -0.1},
     "reference.test_accuracy=-0.1"),
    # Passed, then ran out of memory.
    (f"train.py:{MNIST1D}", {"seeds": 10**9},
     "seeds=1000000000 is out of range: must be an integer >= 1 and <= 1024"),
    # Ran out of memory in validate, blamed on seeds or the batch size.
    ("landscape.py:runlocal", {"landscape.points_1d": 20001},
     "landscape.points_1d=20001 is out of range: must be at most 10001"),
    ("landscape.py:runlocal", {"landscape.points_2d": 2001},
     "landscape.points_2d=2001 is out of range: must be at most 1001"),
    ("landscape.py:runlocal", {"landscape.points_interp": 20001},
     "landscape.points_interp=20001 is out of range: must be at most 10001"),
    ("bn_only.py:runlocal", {"bn_only.widths": (2048,)},
     "bn_only.widths=(2048,) is out of range: must be at most 1024"),
    # soudry2d's coordinates are never standardized: recorded, not applied.
    (f"train.py:{MNIST1D}", {"data.name": "soudry2d", "data.normalize": False},
     "data.normalize=False is unused here"),
    ("max_margin.py:soudry2d", {"data.normalize": True},
     "data.normalize=True is unused here"),
    # Trained the first cell, then a KeyError reading its train accuracy
    # (and the rerun called the stage's result damaged).
    ("bn_regularization.py:runlocal", {"train.eval_train": False},
     "train.eval_train=False is out of range: must be True"),
    ("bn_batch_size.py:runlocal", {"train.eval_train": False},
     "train.eval_train=False"),
    ("bn_placement.py:runlocal", {"train.eval_train": False},
     "train.eval_train=False"),
    # Trained both phases, then flax's InvalidRngError in the
    # batch-statistics evaluation (training mode).
    ("bn_modes.py:digits,runlocal", {"model.name": "mlp", "model.norm":
                                     "batch", "model.dropout": 0.2},
     "model.dropout=0.2 is out of range: must be 0"),
])
def test_a_value_out_of_range_is_refused(monkeypatch, spec, overrides, needle):
  from jaxunknowns.batchnorm import bn_only  # pylint: disable=g-import-not-at-top

  def builds_the_data(config):
    raise AssertionError("validate went on to build the data and masks")
  monkeypatch.setattr(bn_only, "dataset_for", builds_the_data)
  path = f"{ROOT}/configs/{spec}"
  config = config_loading.load_config(path, overrides)
  with pytest.raises(UserError) as info:
    validation.check_config(config, validation.references_of(path))
  assert str(info.value).startswith(needle), str(info.value)
  assert "\n" not in str(info.value)


@pytest.mark.parametrize("spec, overrides", [
    (f"train.py:{MNIST1D}", {"reference.test_accuracy": 1.0, "seeds": 1024}),
    ("landscape.py:runlocal", {"landscape.points_1d": 10001,
                              "landscape.points_2d": 1001,
                              "landscape.points_interp": 10001}),
    ("max_margin.py:clouds", {"data.normalize": True}),  # read there
    (f"train.py:{MNIST1D}", {"data.name": "soudry2d"})])
def test_a_value_at_its_bound_passes(spec, overrides):
  path = f"{ROOT}/configs/{spec}"
  validation.check_config(config_loading.load_config(path, overrides),
                          validation.references_of(path))


def test_a_get_config_that_returns_none_is_one_line(tmp_path):
  """absl took None for a missing --config: ml_collections' warning, then
  'flag --config=None: Flag --config must have a value other than None'."""
  path = tmp_path / "cfg.py"
  path.write_text("def get_config(arg=''):\n  config = {}\n")
  needle = f"{path}: get_config() returned None"
  proc = cli(f"--config={path}", "--config.seeds=2", workdir=tmp_path / "new")
  line = assert_one_line_error(proc, needle, "return config")
  assert proc.stderr.strip().splitlines() == [line], proc.stderr
  assert not (tmp_path / "new").exists()
  with pytest.raises(UserError, match=re.escape(needle)):
    config_loading.load_config(str(path))
