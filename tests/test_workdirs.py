"""Workdirs on an object store: every workdir file goes through `paths`
(etils.epath), so a gs:// workdir behaves as a local one.

No bucket is reachable offline: tests/fake_gcs.py serves gs://BUCKET/PATH
from a local folder behind epath's gs:// backend (and orbax's TensorStore
kvstore), so the code under test takes its object-store branches and orbax
its GCS path. The multi-host check (processes that do not share a workdir)
is in test_scaleout.py.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fake_gcs
from run_helpers import read_json

ROOT = Path(__file__).resolve().parents[1]
# A killed run's lease (on gs://, leases.py) is stale after 2.5 renewals.
ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
           JAXUNKNOWNS_LEASE_SECONDS="0.5")
CONFIG = ["--config=" + str(ROOT / "configs/train.py") + ":mnist1d_mlp,runlocal",
          "--config.seeds=2", "--config.train.steps=40",
          "--config.train.checkpoint_every=20"]


def command(module, bucket_root, *flags, cwd, exit_at=None):
  """`python -m MODULE FLAGS` with gs:// served from `bucket_root` (None: no
  fake), run from `cwd`."""
  fake = [str(ROOT / "tests" / "fake_gcs.py"), str(bucket_root), "-m"]
  argv = [sys.executable] + (fake if bucket_root else ["-m"]) + [module]
  env = dict(ENV, PYTHONPATH=str(ROOT))
  if exit_at:
    env["JAXUNKNOWNS_EXIT_AT"] = exit_at
  return subprocess.run(argv + list(flags), cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=600)


def measured(obj):
  """A summary without its timings and machine."""
  if isinstance(obj, dict):
    return {k: measured(v) for k, v in obj.items()
            if k not in ("wall_time_s", "steps_per_second", "machine",
                         "resumed_from_step")}
  if isinstance(obj, list):
    return [measured(v) for v in obj]
  return obj


def test_killed_run_on_gs_resumes_and_reports_as_a_local_run(tmp_path):
  bucket_root, cwd = tmp_path / "buckets", tmp_path / "cwd"
  cwd.mkdir()
  run = bucket_root / "bucket" / "run"   # what gs://bucket/run is
  # Killed right after the checkpoint at step 20 landed.
  first = command("jaxunknowns.main", bucket_root, *CONFIG,
                  "--workdir=gs://bucket/run", cwd=cwd,
                  exit_at="checkpointed:20")
  assert first.returncode == 137, first.stderr[-4000:]
  assert (run / "checkpoints" / "20").is_dir(), first.stderr[-4000:]
  assert not (run / "summary.json").exists()
  # orbax took its GCS path (a commit file instead of a rename).
  assert (run / "checkpoints" / "20" / "commit_success.txt").exists()
  # No flock holds an object store: the run held a lease beside its
  # workdir, left behind by the kill.
  lease = bucket_root / "bucket" / ".run.jaxunknowns-lease"
  assert json.loads(lease.read_text())["pid"] > 0
  rerun = command("jaxunknowns.main", bucket_root, *CONFIG,
                  "--workdir=gs://bucket/run", cwd=cwd)
  assert rerun.returncode == 0, rerun.stderr[-4000:]
  assert "resuming from the checkpoint at step 20" in rerun.stderr
  assert "was not renewed for 1 s" in rerun.stderr  # taken over
  assert not lease.exists()  # and released
  local = tmp_path / "local"
  straight = command("jaxunknowns.main", None, *CONFIG, f"--workdir={local}",
                     cwd=ROOT)
  assert straight.returncode == 0, straight.stderr[-4000:]

  # Exactly the local run's numbers (CPU floats are deterministic) and rows.
  assert read_json(run / "summary.json")["resumed_from_step"] == 20
  assert measured(read_json(run / "summary.json")) == measured(
      read_json(local / "summary.json"))
  rows = lambda w: sorted(json.dumps(json.loads(l), sort_keys=True) for l in
                          (w / "metrics.jsonl").read_text().splitlines())
  assert rows(run) == rows(local)
  assert {"config.json", "report.md", "learning_curves.png", "tensorboard",
          "snapshots"} <= set(os.listdir(run))
  assert list((run / "tensorboard").iterdir())  # copied from a local folder
  assert not list(cwd.iterdir())  # nothing written under a mangled "gs:/..."

  # The report rebuilds from the bucket, byte for byte.
  report = (run / "report.md").read_text()
  (run / "report.md").unlink()
  (run / "learning_curves.png").unlink()
  rebuilt = command("jaxunknowns.report_cli", bucket_root,
                    "--workdir=gs://bucket/run", cwd=cwd)
  assert rebuilt.returncode == 0, rebuilt.stderr[-4000:]
  assert (run / "report.md").read_text() == report
  assert (run / "learning_curves.png").exists()
  # A finished run on gs:// is recognized as finished.
  again = command("jaxunknowns.main", bucket_root, *CONFIG,
                  "--workdir=gs://bucket/run", cwd=cwd)
  assert again.returncode == 0 and "already finished" in again.stdout


@pytest.fixture
def bucket(tmp_path, monkeypatch):
  """gs://b/... served from tmp_path/b/... in this process."""
  return fake_gcs.install(str(tmp_path), patch=monkeypatch.setattr)


def test_paths_on_gs_write_whole_objects(bucket, tmp_path):
  from jaxunknowns import paths  # pylint: disable=g-import-not-at-top
  assert not paths.is_local("gs://b/x") and paths.is_local("/x")
  assert paths.absolute("gs://b/x") == "gs://b/x"
  assert paths.absolute("x") == os.path.join(os.getcwd(), "x")
  paths.write_atomic("gs://b/run/a.json", "{}")
  # The fake cannot append, as a bucket cannot: appending rewrites.
  paths.append_text("gs://b/run/m.jsonl", "1\n")
  paths.append_text("gs://b/run/m.jsonl", "2\n")
  assert (tmp_path / "b/run/m.jsonl").read_text() == "1\n2\n"
  arrays = {"w": np.arange(6.0).reshape(2, 3), "m": np.array([True, False])}
  paths.save_npz("gs://b/run/masks/x.npz", **arrays)
  got = paths.load_npz("gs://b/run/masks/x.npz")
  assert got.keys() == arrays.keys()
  for k, v in arrays.items():
    np.testing.assert_array_equal(got[k], v)
  # No temporary names left behind on the bucket.
  assert sorted(p.name for p in (tmp_path / "b/run").rglob("*")) == [
      "a.json", "m.jsonl", "masks", "x.npz"]
  assert paths.isdir("gs://b/run/masks") and paths.isfile("gs://b/run/a.json")
  paths.rmtree("gs://b/run")
  assert not paths.exists("gs://b/run") and bucket.calls > 0


def test_a_workdir_under_the_home_folder_written_with_a_tilde(
    tmp_path, monkeypatch):
  """--workdir=~/runs/a (the shell does not expand ~ after '='): the run
  went to a folder named '~' under the current one, exit 0."""
  from jaxunknowns import config_loading, paths  # pylint: disable=g-import-not-at-top
  from jaxunknowns.workdir import Workdir  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  monkeypatch.chdir(tmp_path)
  assert paths.absolute("~/runs/a") == str(tmp_path / "home" / "runs" / "a")
  assert paths.absolute("gs://b/~/a") == "gs://b/~/a"
  config = config_loading.load_config(
      f"{Path(__file__).resolve().parents[1]}/configs/train.py:mnist1d_mlp")
  assert Workdir("~/runs/a", config).path == str(
      tmp_path / "home" / "runs" / "a")


def test_local_writes_are_atomic_renames(tmp_path, monkeypatch):
  """Locally a file is written under a temporary name and renamed: a kill
  mid-write leaves the old file whole."""
  from jaxunknowns import paths  # pylint: disable=g-import-not-at-top
  target = tmp_path / "summary.json"
  target.write_text("old")
  renames = []
  real_replace = os.replace
  monkeypatch.setattr(os, "replace", lambda a, b: (
      renames.append((a, b)), real_replace(a, b)))
  paths.write_atomic(str(target), "new")
  assert target.read_text() == "new"
  assert renames == [(str(tmp_path / "summary.json.tmp"), str(target))]


def test_what_a_kill_mid_write_leaves_is_no_damage_to_a_rerun(
    tmp_path, monkeypatch):
  """A kill inside paths.write_atomic left NAME.tmp.npz, torn; the rerun's
  Workdir.check reads every .npz of an unfinished run and refused the
  workdir as damaged ("pass --overwrite"). The temporary name now ends
  past the extension: no reader that picks a workdir's files by their
  extension (the check's *.npz, a notebook's *.png) takes it for the
  run's."""
  from jaxunknowns import config_loading, metrics, paths  # pylint: disable=g-import-not-at-top
  from jaxunknowns.workdir import Workdir  # pylint: disable=g-import-not-at-top
  config = config_loading.load_config(f"{ROOT}/configs/train.py:runlocal")
  run = tmp_path / "run"
  Workdir(str(run), config).open()  # config.json: an unfinished run
  (run / "masks").mkdir()
  left = []
  with monkeypatch.context() as m:  # killed before each rename
    m.setattr(os, "replace", lambda src, dst: left.append(src))
    paths.save_npz(str(run / "masks" / "level_02.npz"), w=np.zeros(3))
    metrics.write_json(str(run / "result.json"), {"a": 1})
    paths.write_atomic(str(run / "curves.png"), b"png")
  assert len(left) == 3
  for name in left:  # and mid-write: torn
    Path(name).write_bytes(Path(name).read_bytes()[:2])
  Workdir(str(run), config).check()  # no damage: the run resumes
  for name in left:
    assert os.path.splitext(name)[1] not in (".npz", ".json", ".png"), name


def test_a_bucket_as_the_workdir_is_refused_before_anything_is_written(
    bucket, tmp_path, monkeypatch):
  """--workdir=gs://bkt, a bucket's root: the lease beside it was
  'gs:/.bkt.jaxunknowns-lease', a relative local path no write reached,
  and every run stopped with "could not write ...; rerun the same
  command". Refused now in one line that says what to give instead."""
  from jaxunknowns import config_loading, errors, main  # pylint: disable=g-import-not-at-top
  monkeypatch.chdir(tmp_path)
  (tmp_path / "bkt").mkdir()
  config = config_loading.load_config(f"{ROOT}/configs/train.py:runlocal")
  with pytest.raises(errors.UserError) as refused:
    main.run(config, "gs://bkt")
  assert str(refused.value) == (
      "workdir gs://bkt is a bucket, not a folder in one: a run needs a "
      "folder of its own (its lease lies beside it, and --overwrite empties "
      "it); choose one under it, e.g. --workdir=gs://bkt/run")
  assert sorted(os.listdir(tmp_path)) == ["bkt"]
  assert not os.listdir(tmp_path / "bkt")


def test_metric_writer_on_gs(bucket, tmp_path):
  """metrics.jsonl appended and rewound on gs://, TensorBoard files written
  locally and copied into the workdir at flush and close."""
  from jaxunknowns.metrics import MetricWriter, read_metrics  # pylint: disable=g-import-not-at-top
  writer = MetricWriter("gs://b/run")
  runs = [{"seed": 0}, {"seed": 1}]
  for step in (10, 20, 30):
    writer.write(step, "test", runs, {"loss": [step, -step]})
  writer.rewind({"seed": 0}, 10, until=20)
  assert [(r["step"], r["seed"]) for r in read_metrics("gs://b/run")] == [
      (10, 0), (10, 1), (20, 1), (30, 0), (30, 1)]
  writer.flush()
  assert list((tmp_path / "b/run/tensorboard").iterdir())
  writer.close()


def test_a_run_written_before_a_field_existed_still_resumes(tmp_path):
  """A config.json without a field the code added later (optim.sam_rho was
  added after many runs were made) is the same run when the new config
  leaves that field at its default, and a different run when it does not."""
  from jaxunknowns import config_loading, errors, main  # pylint: disable=g-import-not-at-top
  root = Path(__file__).resolve().parents[1]
  load = lambda **o: config_loading.load_config(
      "configs/train.py:runlocal", o, root=str(root))
  workdir = tmp_path / "run"
  main.run(load(), str(workdir), False)
  saved = read_json(workdir / "config.json")
  for field in ("sam_rho", "sam_adaptive", "sam_eta", "sam_m"):
    del saved["optim"][field]
  (workdir / "config.json").write_text(json.dumps(saved))
  main.run(load(), str(workdir), False)  # finished: no error, nothing redone
  with pytest.raises(errors.UserError, match="optim.sam_rho"):
    main.run(load(**{"optim.sam_rho": 0.1}), str(workdir), False)
  # A reference's description added later (reference.protocol: the training
  # its number came from) trains nothing: the run is still the same.
  assert load().reference.protocol.steps == 6000
  del saved["reference"]["protocol"]
  (workdir / "config.json").write_text(json.dumps(saved))
  main.run(load(), str(workdir), False)
  # And its report names that protocol where the run differs from it.
  text = (workdir / "report.md").read_text()
  assert ("(where our protocol differs: steps: 6,000 in the paper, 20 here; "
          "model: the authors' MLP adds its second hidden layer residually"
          in text), text[-1500:]


def _events(path):
  """(tag, step, value) of every scalar in a TensorBoard event file, read
  record by record (length, its crc, data, its crc) without TensorFlow."""
  import struct  # pylint: disable=g-import-not-at-top
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  data, out, i = Path(path).read_bytes(), [], 0
  while i < len(data):
    length, = struct.unpack("<Q", data[i:i + 8])
    event = event_pb2.Event.FromString(data[i + 12:i + 12 + length])
    i += 12 + length + 4
    out += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
  return out


def test_two_writers_in_one_second_keep_both_event_files(tmp_path):
  """An event file is named by the second it opens and the host: a run
  resumed within the same second (a notebook's quick retry) truncated the
  first attempt's file. Each writer now has a file of its own."""
  from jaxunknowns.metrics import MetricWriter  # pylint: disable=g-import-not-at-top
  for step in (1, 2):
    writer = MetricWriter(str(tmp_path))
    writer.write(step, "test", [{"seed": 0}], {"accuracy": [0.25 * step]})
    writer.close()
  files = sorted((tmp_path / "tensorboard").iterdir())
  assert len(files) == 2
  assert sorted(e for f in files for e in _events(f)) == [
      ("test/accuracy", 1, 0.25), ("test/accuracy", 2, 0.5)]


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_with_another_programs_config_json_is_no_run(tmp_path,
                                                              overwrite):
  """A config.json naming no experiment was taken for a run of another
  config, and the advice given, --overwrite, deleted the folder's files."""
  from jaxunknowns import config_loading  # pylint: disable=g-import-not-at-top
  from jaxunknowns.errors import UserError  # pylint: disable=g-import-not-at-top
  from jaxunknowns.workdir import Workdir  # pylint: disable=g-import-not-at-top
  folder = tmp_path / "notes"
  folder.mkdir()
  (folder / "config.json").write_text('{"name": "x"}')
  (folder / "notes.txt").write_text("hi")
  config = config_loading.load_config(
      f"{ROOT}/configs/train.py:mnist1d_mlp,runlocal")
  with pytest.raises(UserError, match="names no experiment") as e:
    Workdir(str(folder), config, overwrite=overwrite).check()
  assert "--overwrite" not in str(e.value)
  assert sorted(p.name for p in folder.iterdir()) == ["config.json",
                                                      "notes.txt"]


def test_an_older_versions_temporary_npz_is_passed_by(tmp_path):
  """An older version's paths.write_atomic named its temporary file
  NAME.tmp.npz; one a kill left torn in a workdir made every rerun refuse
  it as damaged ("pass --overwrite", which deletes the run). Workdir.check
  passes it by, read-only (the workdir stays as it was); a run's own
  damaged .npz is refused as before."""
  from jaxunknowns import config_loading  # pylint: disable=g-import-not-at-top
  from jaxunknowns.errors import UserError  # pylint: disable=g-import-not-at-top
  from jaxunknowns.workdir import Workdir  # pylint: disable=g-import-not-at-top
  config = config_loading.load_config(f"{ROOT}/configs/train.py:runlocal")
  run = tmp_path / "run"
  Workdir(str(run), config).open()  # config.json: an unfinished run
  (run / "masks").mkdir()
  (run / "masks" / "level_02.tmp.npz").write_bytes(b"PK\x03")  # torn
  Workdir(str(run), config).check()
  assert (run / "masks" / "level_02.tmp.npz").read_bytes() == b"PK\x03"
  (run / "masks" / "level_02.npz").write_bytes(b"PK\x03")
  with pytest.raises(UserError, match="level_02.npz is damaged"):
    Workdir(str(run), config).check()
