"""A lease on a workdir that hosts sharing only a disk can see.

A single-process run holds its workdir by an flock (`paths.machine_lock`),
which the kernel releases when the process dies. A multi-process run spans
machines that share a disk (NFS, gs://) but no kernel, so two jobs launched
into one workdir (a job resubmitted while the first still runs) would both
write it; and an object store (gs://) has no flock for any run. Process 0
of such a run holds a lease instead: a small file beside the workdir that
it rewrites every LEASE_SECONDS while the run lasts, and removes at the
end.

A lease is judged live by watching it change, not by its time: hosts'
clocks differ, and an object store's times are its own. Whoever finds a
lease reads it again for up to STALE_AFTER renewals; if it changed, its job
is alive and the workdir is refused; if not, its job died without removing
it (a kill, a host lost) and the lease is taken over. So a job killed
outright costs the next run a wait of about 2.5 renewals (25 s), once.

Not a lock: two jobs that find no lease within the same second may both
write theirs; each reads back its own after SETTLE_SECONDS, and the one
that finds the other's stops, which covers all but writes that far apart.
A holder whose renewals stalled long enough for another job to take over
finds that at its next renewal and stops at once. Where the lease cannot
be written (a parent folder this run may not write), the run goes on
unheld, with a warning, as it did before leases.
"""

import errno
import json
import os
import socket
import sys
import threading
import time
import uuid
from typing import Optional

from absl import logging

from jaxunknowns import paths
from jaxunknowns.errors import UserError

# How often the holder rewrites its lease; tests shorten it.
LEASE_SECONDS = float(os.environ.get("JAXUNKNOWNS_LEASE_SECONDS", "10"))
# Renewals a lease may miss before its job counts as gone.
STALE_AFTER = 2.5
SETTLE_SECONDS = 1.0


def lease_file(workdir: str) -> str:
  """Beside the workdir, not in it: a refused run leaves the workdir as it
  was, and --overwrite (which empties it) never deletes a live lease. A
  workdir with nothing beside it (a bucket's root, gs://bucket, or /) is a
  UserError: its lease was 'gs:/.bucket.jaxunknowns-lease', a relative
  local path no write reached, and every run stopped on it."""
  workdir = paths.absolute(workdir)
  if paths.is_root(workdir):
    scheme, _, bucket = workdir.rpartition("://")
    what, under = ("the filesystem's root", "/run") if paths.is_local(
        workdir) else ("a bucket, not a folder in one",
                       f"{scheme}://{bucket.strip('/') or 'BUCKET'}/run")
    raise UserError(
        f"workdir {workdir} is {what}: a run needs a folder of its own (its "
        f"lease lies beside it, and --overwrite empties it); choose one "
        f"under it, e.g. --workdir={under}")
  workdir = workdir.rstrip("/")
  return os.path.join(os.path.dirname(workdir),
                      f".{os.path.basename(workdir)}.jaxunknowns-lease")


def _read(file: str) -> Optional[str]:
  try:
    return paths.read_text(file) if paths.exists(file) else None
  except (OSError, UnicodeDecodeError):
    return None  # removed between the two calls, or unreadable: no lease


def _holder(text: Optional[str]) -> str:
  """'pid 123 on host-a' from a lease's text ('unknown' if not ours)."""
  try:
    lease = json.loads(text or "")
    return f"pid {lease['pid']} on {lease['host']}"
  except (ValueError, TypeError, KeyError):
    return "unknown"


def _owner(text: Optional[str]) -> Optional[str]:
  try:
    return json.loads(text or "").get("owner")
  except (ValueError, AttributeError):
    return None


def live_holder(file: str, remove_stale: bool = False) -> Optional[str]:
  """Who holds the lease `file` while its job renews it; None where there is
  no lease, or one whose job is gone (unchanged for STALE_AFTER renewals;
  removed with `remove_stale`, so the next run does not wait again)."""
  first = _read(file)
  if first is None:
    return None
  logging.info("%s exists: watching it up to %.0f s for its job's renewals",
               file, STALE_AFTER * LEASE_SECONDS)
  deadline = time.monotonic() + STALE_AFTER * LEASE_SECONDS
  while time.monotonic() < deadline:
    time.sleep(min(0.5, LEASE_SECONDS / 4))
    now = _read(file)
    if now is None:
      return None  # released: its job ended
    if now != first:
      return _holder(now)
  logging.warning("%s was not renewed for %.0f s: the job that held it (%s) "
                  "is gone; taking over its workdir", file,
                  STALE_AFTER * LEASE_SECONDS, _holder(first))
  if remove_stale and _read(file) == first:
    paths.remove(file)
  return None


def _refused(e: Exception) -> bool:
  """A write refused for good (permissions, a read-only disk; an object
  store's 403), not one that failed this time."""
  if isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM,
                                             errno.EROFS):
    return True
  return any(word in type(e).__name__ for word in ("Forbidden",
                                                   "PermissionDenied"))


def in_use(workdir: str, file: str, holder: str) -> UserError:
  return UserError(
      f"workdir {paths.absolute(workdir)} is in use by another run "
      f"({holder}; it renews {file}); wait for it to end or stop it, or "
      f"choose another --workdir")


class Lease:
  """The lease of one multi-process run on `workdir` (held by process 0)."""

  def __init__(self, workdir: str):
    self.workdir, self.file = workdir, lease_file(workdir)
    self.owner = uuid.uuid4().hex
    self._stop = threading.Event()
    self._thread = None

  def acquire(self):
    """Takes the lease, or raises a UserError naming its live holder."""
    holder = live_holder(self.file)
    if holder:
      raise in_use(self.workdir, self.file, holder)
    try:
      self._write(0)
    except Exception as e:  # pylint: disable=broad-except
      if not _refused(e):  # a transient failure: no run without a lease
        raise UserError(f"could not write {self.file}, the lease that holds "
                        f"the workdir: {e}; rerun the same command") from e
      # The workdir's parent may be read-only to this run (a bucket role
      # limited to the workdir's prefix): as before leases, unheld.
      logging.warning("could not write %s (%s): the workdir is not held "
                      "against another run", self.file, e)
      return
    time.sleep(SETTLE_SECONDS)  # a job that wrote at the same moment shows
    now = _read(self.file)
    if _owner(now) != self.owner:
      raise in_use(self.workdir, self.file, _holder(now))
    self._thread = threading.Thread(target=self._renew, daemon=True,
                                    name="jaxunknowns-lease")
    self._thread.start()

  def release(self):
    """Stops renewing and removes the lease, if it is still this run's."""
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
    if _owner(_read(self.file)) == self.owner:
      paths.remove(self.file)

  def _write(self, beat: int):
    # Its own temporary name: two runs may write the lease at once.
    paths.write_atomic(self.file, json.dumps({
        "owner": self.owner, "pid": os.getpid(),
        "host": socket.gethostname(), "beat": beat}),
                       writer=f"-{self.owner[:12]}")

  def _renew(self):
    beat = 0
    while not self._stop.wait(LEASE_SECONDS):
      beat += 1
      try:
        now = _read(self.file)
        if _owner(now) not in (None, self.owner):  # unreadable: not taken
          self._taken_over(now)
        self._write(beat)
      except Exception as e:  # pylint: disable=broad-except
        # A slow or failing disk: the run goes on; a lease left unrenewed
        # for STALE_AFTER renewals may be taken over, which the next
        # renewal finds.
        logging.warning("could not renew %s: %s", self.file, e)

  def _taken_over(self, now: str):
    """Another run took the lease while this one's renewals stalled (a
    paused machine, a store that failed for STALE_AFTER renewals): both
    would write the workdir. This one stops at once, as a kill would stop
    it; its last checkpoint stays for a rerun."""
    sys.stderr.write(
        f"error: workdir {paths.absolute(self.workdir)} was taken over by "
        f"another run ({_holder(now)}) while this run's lease went "
        f"unrenewed; this run stops, and its last checkpoint stays: rerun "
        f"once the other run ends\n")
    sys.stderr.flush()
    os._exit(2)  # pylint: disable=protected-access
