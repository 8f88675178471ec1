"""The lease a multi-process run holds on its workdir (leases.py): live while
its job renews it, taken over once it stops changing, and respected by a
single-process run."""

import json
import os
import time
from pathlib import Path

import pytest

from jaxunknowns import config_loading, leases, main as main_lib
from jaxunknowns.errors import UserError
from run_helpers import lease_held_elsewhere

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def fast_leases(monkeypatch):
  monkeypatch.setattr(leases, "LEASE_SECONDS", 0.2)
  monkeypatch.setattr(leases, "SETTLE_SECONDS", 0.05)


def test_the_lease_lies_beside_the_workdir(tmp_path):
  assert leases.lease_file(str(tmp_path / "w")) == str(
      tmp_path / ".w.jaxunknowns-lease")
  assert leases.lease_file(str(tmp_path / "w") + "/") == str(
      tmp_path / ".w.jaxunknowns-lease")


def test_a_renewed_lease_refuses_a_second_job(tmp_path):
  first = leases.Lease(str(tmp_path / "w"))
  first.acquire()
  try:
    start = time.monotonic()
    with pytest.raises(UserError) as info:
      leases.Lease(str(tmp_path / "w")).acquire()
    message = str(info.value)
    assert "\n" not in message and "in use by another run" in message
    assert f"pid {os.getpid()} on " in message
    # Decided at the first renewal seen, not after the whole watch.
    assert time.monotonic() - start < leases.STALE_AFTER * 0.2
    assert json.loads(Path(first.file).read_text())["owner"] == first.owner
  finally:
    first.release()
  assert not Path(first.file).exists()
  assert not (tmp_path / "w").exists()  # a lease never creates the workdir


def test_a_lease_its_job_stopped_renewing_is_taken_over(tmp_path):
  """A job killed outright leaves its lease: unchanged for 2.5 renewals, it
  is stale, and the next job takes it (and removes it when done)."""
  file = Path(leases.lease_file(str(tmp_path / "w")))
  file.write_text(json.dumps({"owner": "dead", "pid": 1, "host": "gone",
                              "beat": 7}))
  start = time.monotonic()
  lease = leases.Lease(str(tmp_path / "w"))
  lease.acquire()
  assert time.monotonic() - start >= leases.STALE_AFTER * 0.2
  time.sleep(0.5)  # renewed meanwhile
  saved = json.loads(file.read_text())
  assert saved["owner"] == lease.owner and saved["beat"] >= 1
  lease.release()
  assert not file.exists()


def test_release_leaves_a_lease_taken_over_by_another(tmp_path):
  lease = leases.Lease(str(tmp_path / "w"))
  lease.acquire()
  lease._stop.set()  # its renewals stop, as when its host stalls
  lease._thread.join()
  other = leases.Lease(str(tmp_path / "w"))
  other.acquire()
  lease.release()
  assert json.loads(Path(other.file).read_text())["owner"] == other.owner
  other.release()


def test_a_single_process_run_respects_a_live_lease(tmp_path):
  """A one-process run (an flock, which other hosts cannot see) into the
  workdir of a multi-process run still training: refused in one line,
  nothing written; once that lease is stale, it runs and removes it."""
  workdir = tmp_path / "w"
  config = config_loading.load_config(
      f"{ROOT}/configs/train.py:mnist1d_mlp,runlocal",
      {"train.steps": 2, "train.eval_every": 2, "data.train_size": 200})
  holder = leases.Lease(str(workdir))
  holder.acquire()
  try:
    with pytest.raises(UserError, match="in use by another run"):
      main_lib.run(config, str(workdir))
    assert not workdir.exists()
  finally:
    holder._stop.set()  # killed: the file stays, unrenewed
    holder._thread.join()
  assert Path(holder.file).exists()
  main_lib.run(config, str(workdir))
  assert (workdir / "summary.json").exists()
  assert not Path(holder.file).exists()


def test_a_lease_renewed_by_another_process_is_live(tmp_path):
  """The renewals of another process (as another host's would be) are seen
  through the file alone."""
  workdir = str(tmp_path / "w")
  with lease_held_elsewhere(workdir, 0.2) as holder:
    with pytest.raises(UserError, match=f"pid {holder.pid} on "):
      leases.Lease(workdir).acquire()
  # Killed: its lease is stale after 2.5 renewals.
  assert leases.live_holder(leases.lease_file(workdir)) is None


def test_a_run_on_gs_is_refused_while_another_renews_its_lease(
    tmp_path, monkeypatch):
  """gs:// has no flock: two runs into one bucket folder both wrote it.
  Each now holds a lease beside the folder (in the bucket)."""
  import fake_gcs  # pylint: disable=g-import-not-at-top
  fake_gcs.install(str(tmp_path), patch=monkeypatch.setattr)
  config = config_loading.load_config(
      f"{ROOT}/configs/train.py:mnist1d_mlp,runlocal",
      {"train.steps": 2, "train.eval_every": 2, "data.train_size": 200})
  holder = leases.Lease("gs://b/w")
  holder.acquire()
  try:
    assert (tmp_path / "b" / ".w.jaxunknowns-lease").exists()
    with pytest.raises(UserError, match="in use by another run"):
      main_lib.run(config, "gs://b/w")
    assert not (tmp_path / "b" / "w").exists()
  finally:
    holder.release()
  main_lib.run(config, "gs://b/w")
  assert (tmp_path / "b" / "w" / "summary.json").exists()
  assert not (tmp_path / "b" / ".w.jaxunknowns-lease").exists()


def _holder_changing_its_lease(workdir, then, lease_text):
  """A process holding the lease of `workdir` (renewed every 0.2 s), whose
  file is replaced by `lease_text` once it holds it; then runs `then`.
  Returns (returncode, stdout, stderr)."""
  import subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  script = ("import time\n"
            "from jaxunknowns import leases\n"
            "leases.LEASE_SECONDS = 0.2\n"
            f"lease = leases.Lease({workdir!r}); lease.acquire()\n"
            f"print('held', flush=True); {then}\n")
  holder = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    Path(leases.lease_file(workdir)).write_text(lease_text)
    out, err = holder.communicate(timeout=30)
  finally:
    holder.kill()
  return holder.returncode, out, err


def test_a_holder_whose_lease_was_taken_over_stops(tmp_path):
  """A run whose renewals stalled (a paused machine) long enough for another
  to take its lease over went on renewing it, overwriting the other's:
  both trained into the workdir. It now stops at its next renewal."""
  workdir = str(tmp_path / "w")
  rc, out, err = _holder_changing_its_lease(
      workdir, "time.sleep(60); print('went on')", json.dumps(
          {"owner": "other", "pid": 7, "host": "elsewhere", "beat": 0}))
  assert rc == 2 and "went on" not in out
  assert err.strip().splitlines()[-1] == (
      f"error: workdir {workdir} was taken over by another run (pid 7 on "
      f"elsewhere) while this run's lease went unrenewed; this run stops, "
      f"and its last checkpoint stays: rerun once the other run ends")
  # The other run's lease is left as it is.
  assert json.loads(Path(leases.lease_file(workdir)).read_text())[
      "owner"] == "other"


def test_a_lease_that_cannot_be_written_leaves_the_run_unheld(
    tmp_path, monkeypatch):
  """A parent folder the run may not write (a bucket role limited to the
  workdir's prefix): the run goes on, unheld, as before leases. A write
  that failed this time (an I/O error) is refused instead: a run going on
  unheld could be joined by another."""
  import errno  # pylint: disable=g-import-not-at-top
  for code in (errno.EACCES, errno.EIO):
    def fail(path, data, writer="", code=code):
      raise OSError(code, os.strerror(code), path)
    monkeypatch.setattr(leases.paths, "write_atomic", fail)
    lease = leases.Lease(str(tmp_path / "w"))
    if code == errno.EIO:
      with pytest.raises(UserError, match="rerun the same command"):
        lease.acquire()
    else:
      lease.acquire()
      lease.release()
    assert not Path(lease.file).exists()


def test_an_unreadable_lease_is_renewed_not_taken_for_another_run(tmp_path):
  """A lease file torn or edited (not JSON) names no owner: its holder
  rewrites it rather than stopping as if another run had taken it."""
  workdir = str(tmp_path / "w")
  rc, out, err = _holder_changing_its_lease(
      workdir, "time.sleep(1.5); lease.release(); print('released')", "{torn")
  assert rc == 0 and out.strip() == "released", err[-2000:]
  assert not Path(leases.lease_file(workdir)).exists()
