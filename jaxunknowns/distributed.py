"""Multi-process (multi-host) runs: JAX's own multi-controller runtime.

Every process runs the same program over one global `Mesh`; `jax.jit`
compiles it once for all devices and inserts the collectives. What this
module adds is the little that a single-process program never needs:

* `initialize`: `jax.distributed.initialize` when a flag or the environment
  asks for it (on a Cloud TPU VM, JAX finds its peers by itself).
* `to_global`: a host array (or a tree of them) -> a global `jax.Array`,
  each process building only the shards its own devices hold (so with the
  batch sharded over the 'data' axis, a process materializes only its part
  of every batch).
* `fetch`: a global array -> numpy on every process (replicated values are
  read from a local shard; sharded ones are all-gathered).
* `check_same_config`: all processes must run the same config (and the same
  --overwrite); if not, every process stops with the same one-line error.
* `check_shared_workdir`: all processes must see one workdir (a gs:// path
  or a shared filesystem); if not, every process stops with one line.
* `workdir_lock`: one run at a time in a workdir, also across machines
  (`leases`), every process refused together.
* `is_main`: only process 0 writes metrics, reports and figures.
"""

import contextlib
import hashlib
import json
import math
import os
import re
import sys
import threading
import time
from typing import Any, List, Optional

import jax
import numpy as np

from jaxunknowns import errors, paths
from jaxunknowns.errors import UserError

# Environment variables that say "this is one process of several".
_ENV_VARS = ("JAX_COORDINATOR_ADDRESS", "JAXUNKNOWNS_DISTRIBUTED")


def initialize(coordinator_address: str = "", num_processes: int = 0,
               process_id: int = -1, enabled: Optional[bool] = None) -> bool:
  """Starts the multi-controller runtime if asked; returns whether it did.

  Asked = `enabled` (--distributed=on: under SLURM or Open MPI, whose
  cluster `jax.distributed.initialize()` then reads), or an explicit
  coordinator address, or one of _ENV_VARS set, or a multi-host Cloud TPU
  slice. The flags' environment form, JAX_COORDINATOR_ADDRESS with
  JAX_NUM_PROCESSES and JAX_PROCESS_ID, is read here: JAX itself reads only
  the address.
  """
  env = os.environ
  named = ("--coordinator_address" if coordinator_address
           else "JAX_COORDINATOR_ADDRESS")
  if (enabled is not False and not coordinator_address
      and env.get("JAX_COORDINATOR_ADDRESS")
      and (env.get("JAX_NUM_PROCESSES") or env.get("JAX_PROCESS_ID"))):
    # The environment fills what the flags leave unset.
    coordinator_address = env["JAX_COORDINATOR_ADDRESS"]
    try:
      num_processes = num_processes or int(env.get("JAX_NUM_PROCESSES", 0))
      if process_id == -1:
        process_id = int(env.get("JAX_PROCESS_ID", -1))
    except ValueError as e:
      raise UserError(f"JAX_NUM_PROCESSES / JAX_PROCESS_ID must be integers "
                      f"({e})") from e
  if not coordinator_address and (num_processes or process_id != -1):
    # Without an address they reach no runtime: each host would run the
    # whole experiment alone, all writing the one shared workdir.
    raise UserError(
        f"--num_processes={num_processes} / --process_id={process_id} apply "
        f"only with --coordinator_address=HOST:PORT; pass it, or drop them "
        f"(a cluster's environment gives both by itself)")
  if enabled is False and coordinator_address:
    # Each host would run the whole experiment alone, the address unused.
    raise UserError(
        f"--coordinator_address={coordinator_address} applies only to a "
        f"multi-process run, and --distributed=off asks for none; drop one")
  auto = cluster_in_environment() if enabled is None else ""
  if enabled is None:
    enabled = bool(coordinator_address or auto)
  if not enabled:
    return False
  # The flag's, else the environment's (JAX reads it where no flag gives
  # one), named as the user gave it.
  _check_address(named, coordinator_address
                 or env.get("JAX_COORDINATOR_ADDRESS", ""))
  kwargs = {}
  if coordinator_address:
    if num_processes < 1 or not 0 <= process_id < num_processes:
      raise UserError(
          f"--coordinator_address needs --num_processes >= 1 and 0 <= "
          f"--process_id < num_processes (got {num_processes}, {process_id})")
    kwargs = dict(coordinator_address=coordinator_address,
                  num_processes=num_processes, process_id=process_id)
  seconds = join_seconds()
  try:
    with _joined_within(seconds, num_processes):
      jax.distributed.initialize(
          **kwargs, initialization_timeout=int(seconds) + 60)
  except ValueError as e:  # nothing names a cluster (or only its address)
    raise UserError(
        f"{auto or '--distributed=on'}, but no cluster to join was found "
        f"({e}); pass --coordinator_address=HOST:PORT --num_processes=N "
        f"--process_id=I (or JAX_NUM_PROCESSES and JAX_PROCESS_ID beside "
        f"JAX_COORDINATOR_ADDRESS), or run under SLURM, Open MPI or a Cloud "
        f"TPU VM") from e
  return True


def _check_address(name: str, address: Optional[str]):
  """A coordinator address not of the shape HOST:PORT (port 1..65535; an
  IPv6 host in brackets, [::1]:1234) is a UserError, before JAX is asked:
  it raised an IndexError on 'nohost' and 'Failed to start RPC server' on
  'host:notaport' (tracebacks), and on ':1234' or 'host:99999' waited the
  whole join timeout (300 s) for a coordinator it could never reach, then
  blamed the other processes."""
  if not address:  # none given: a cluster's environment names it
    return
  host, _, port = address.rpartition(":")
  bracketed = host.startswith("[") and host.endswith("]") and len(host) > 2
  if not (re.fullmatch(r"[^\s:\[\]]+", host) or bracketed) or not (
      re.fullmatch(r"[0-9]{1,5}", port) and 1 <= int(port) <= 65535):
    raise UserError(
        f"{name}={address!r} is not HOST:PORT (process 0's host name or IP "
        f"address, an IPv6 one in brackets, and a port in 1..65535 free "
        f"there), e.g. 10.0.0.1:1234")


def join_seconds() -> float:
  """How long a process waits for all the others to join
  (JAXUNKNOWNS_JOIN_SECONDS, default 300). JAX's own timeout ends in a C++
  abort and its stack, saying "another task died" of a process that never
  started; the watchdog below ends first, in one line."""
  text = os.environ.get("JAXUNKNOWNS_JOIN_SECONDS", "300")
  try:
    seconds = float(text)
  except ValueError:
    seconds = math.nan
  if not 0 < seconds < 1e6:
    raise UserError(f"JAXUNKNOWNS_JOIN_SECONDS={text!r}: must be seconds in "
                    f"(0, 1e6); unset it for the default, 300")
  return seconds


@contextlib.contextmanager
def _joined_within(seconds: float, num_processes: int):
  """Ends the process with one line on stderr and exit status 2 unless the
  block (jax.distributed.initialize, which waits with the GIL released)
  returns within `seconds`."""
  def give_up():
    every = f"all {num_processes}" if num_processes else "all the"
    sys.stderr.write(
        f"error: {every} processes did not join within {seconds:g} s (a "
        f"process not started, started twice with one --process_id, or "
        f"unable to reach the coordinator); start each process once, the "
        f"same command with its own process id, within "
        f"JAXUNKNOWNS_JOIN_SECONDS={seconds:g} s of the first\n")
    sys.stderr.flush()
    os._exit(2)  # pylint: disable=protected-access
  timer = threading.Timer(seconds, give_up)
  timer.daemon = True
  timer.start()
  try:
    yield
  finally:
    timer.cancel()


def cluster_in_environment() -> str:
  """What in the environment says this is one process of several: one of
  _ENV_VARS, or a multi-host Cloud TPU slice (it lists its workers); ''."""
  for name in _ENV_VARS:
    if os.environ.get(name):
      return f"{name} is set"
  if "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""):
    return "this TPU VM is one host of a multi-host slice"
  # SLURM and Open MPI are not guessed (a batch script's own process sees
  # its allocation's task count too): --distributed=on asks for them.
  return ""


# What a collective says when a peer process died (gloo on CPU: 'Connection
# reset by peer'; the coordination service: a missed heartbeat).
_PEER_LOST = ("by peer", "heartbeat", "UNAVAILABLE", "Gloo")


def lost_a_process(e: BaseException) -> bool:
  """A collective of a multi-process run failed because another process
  stopped (killed, preempted, ended by a bug): its error is no bug of this
  one. A JaxRuntimeError, or a ValueError where the collective was jit's
  inside sync_global_devices (orbax's barriers: 'UNKNOWN: Gloo AllGather
  failed ... Connection closed by peer'), which was taken for a bug of
  this process (a traceback, exit 1)."""
  return (type(e).__name__ in ("JaxRuntimeError", "ValueError")
          and several_processes() and any(s in str(e) for s in _PEER_LOST))


def is_main() -> bool:
  return jax.process_index() == 0


def several_processes() -> bool:
  """Whether this is one of several processes of a run. Not
  jax.process_count() alone: in one process that starts the backends,
  whose probe logs would come before a bad config's one line."""
  return jax.distributed.is_initialized() and jax.process_count() > 1


class RaisedOnEveryProcess(UserError):
  """The UserError `raise_on_every_process` raises on every process at
  once: no process waits for another to hear of it."""


def raise_on_every_process(error: Optional[Exception],
                           own_where_all_failed: bool = False):
  """After a check each process made alone (a file it read): where it
  failed on some process, the same UserError on every one, naming the
  first process it failed on, so none goes on to write while another
  stops. `error`: this process's, or None. In one process its own error is
  raised as it is; with `own_where_all_failed`, also where every process
  failed (the same config read alike: its line as one process gives
  it)."""
  if not several_processes():
    if error is not None:
      raise error
    return
  failed = processes_where(error is not None)
  if own_where_all_failed and len(failed) == jax.process_count():
    raise error
  if failed:
    text = _broadcast_text(str(error) if error is not None else "",
                           source=failed[0])
    raise RaisedOnEveryProcess(f"{text} (on process {failed[0]})")


def processes_where(flag: bool) -> List[int]:
  """The indices of the processes whose `flag` is true, the same list on
  every process (an all-gather every process must make); in one process
  [0] or []."""
  if not several_processes():
    return [0] if flag else []
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  flags = np.asarray(multihost_utils.process_allgather(
      np.asarray([flag], np.int32))).reshape(-1)
  return [int(i) for i in np.flatnonzero(flags)]


def to_global(x: Any, sharding) -> Any:
  """`x` (the same on every process: an array, or a tree of them) as global
  arrays, each leaf with `sharding`.

  Single-process this is `jax.device_put`. Multi-process, each process is
  asked only for the slices its addressable devices hold, leaf by leaf as
  device_put does: np.asarray of a whole tree (the trainer's per-run
  hparams, a dict) is one 0-d object array, which no run sharding fits.
  """
  if jax.process_count() == 1:
    return jax.device_put(x, sharding)
  def leaf(a):
    a = np.asarray(a)
    return jax.make_array_from_callback(a.shape, sharding,
                                        lambda index: a[index])
  return jax.tree.map(leaf, x)


def _fetch_leaf(a):
  if not isinstance(a, jax.Array) or a.is_fully_addressable:
    return np.asarray(jax.device_get(a))
  if a.is_fully_replicated:
    return np.asarray(a.addressable_data(0))
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return np.asarray(multihost_utils.process_allgather(a, tiled=True))


def fetch(tree: Any) -> Any:
  """numpy values of a tree of (possibly global) arrays, on every process."""
  return jax.tree.map(_fetch_leaf, tree)


def _get_leaf(a):
  if isinstance(a, jax.Array) and not a.is_fully_addressable:
    return _fetch_leaf(a)
  return a


def device_get(tree: Any) -> Any:
  """`jax.device_get(tree)` that also reads global arrays spanning other
  processes' devices (gathered, as `fetch`). In one process, or for arrays
  this process holds whole, it is jax.device_get itself: the same values
  and types (a Python number stays one)."""
  return jax.device_get(jax.tree.map(_get_leaf, tree))


def host_local(tree: Any) -> Any:
  """`tree` with every global array that spans other processes' devices
  replaced by its value (numpy, gathered); the rest unchanged. Host code
  that mixes such arrays with its own (jnp.asarray of host data) computes
  on this process's devices alone; in one process nothing changes."""
  return jax.tree.map(_get_leaf, tree)


def first_value(a: jax.Array):
  """a.flat[0] without gathering: read from this process's first shard.
  (The trainer's run steps are all equal, so any shard answers.)"""
  if not isinstance(a, jax.Array):
    return np.asarray(a).reshape(-1)[0]
  return np.asarray(a.addressable_data(0)).reshape(-1)[0]


def check_made_for_processes(experiment: str):
  """Across several processes, an experiment not made for them (Experiment.
  multi_process) stops at once, on every process, in the same one line.
  Cheap and right after the processes last met (check_same_config): a
  process that exits while another still works takes JAX's coordination
  service (process 0's) away from it, which crashed the other (SIGSEGV)."""
  # Not jax.process_count() first: it starts the backends, whose probe
  # logs ('Unable to initialize backend') would come before a bad config's
  # one line.
  if not jax.distributed.is_initialized() or jax.process_count() == 1:
    return
  from jaxunknowns.experiments import EXPERIMENTS  # pylint: disable=g-import-not-at-top
  if not EXPERIMENTS.get(experiment).multi_process:
    raise UserError(
        f"experiment {experiment!r} runs in one process only, not across the "
        f"{jax.process_count()} here (it is not registered with "
        "multi_process=True: ARCHITECTURE.md says what that takes); run it "
        "on one machine, where its seeds and batches still spread over all "
        "that machine's devices")


def check_same_config(config_dict: Any, overwrite: bool = False):
  """Raises the same UserError on every process if their configs, or their
  --overwrite, differ (process 0 alone would delete the old run, and the
  others stop). One process (no runtime started) returns without starting
  JAX's backends: a bad config's refusal stays the only line on stderr, not
  after backend-probe logs ("Unable to initialize backend 'tpu'")."""
  if not jax.distributed.is_initialized() or jax.process_count() == 1:
    return
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  text = json.dumps(config_dict, sort_keys=True, default=str)
  digest = np.frombuffer(hashlib.sha256(text.encode()).digest()[:8], np.uint32)
  mine = np.concatenate([digest, np.asarray([overwrite], np.uint32)])
  everyone = np.asarray(multihost_utils.process_allgather(mine))
  for what, column, flags in (
      ("configs", everyone[:, :2], "--config and --config.* flags"),
      ("--overwrite", everyone[:, 2:], "--overwrite (on all or none)")):
    differing = [i for i, row in enumerate(column)
                 if not np.array_equal(row, column[0])]
    if differing:
      raise UserError(
          f"the {jax.process_count()} processes were given different {what} "
          f"(processes {differing} differ from process 0); launch every "
          f"process with the same {flags}")


def check_workdir_path(path: str):
  """Raises the same UserError on every process, before any touches the
  workdir, unless `path` is a folder a run can hold: not a bucket's root
  (gs://bucket) nor the filesystem's, which have nothing beside them for
  the run's lease (`leases.lease_file` says what to do)."""
  from jaxunknowns import leases  # pylint: disable=g-import-not-at-top
  error = None
  try:
    leases.lease_file(path)
  except UserError as e:
    error = e
  raise_on_every_process(error, own_where_all_failed=True)


# The file process 0 writes into the workdir for `check_shared_workdir`.
TOKEN_FILE = ".jaxunknowns_shared_check"
# How long a process waits for that file: a network filesystem may show
# another host's new file only once its attribute cache expires (NFS caches
# a directory for up to 60 s by default). Tests shorten it.
SHARED_CHECK_SECONDS = float(
    os.environ.get("JAXUNKNOWNS_SHARED_CHECK_SECONDS", "60"))


def check_shared_workdir(path: str):
  """Raises the same UserError on every process unless all see one workdir.

  Process 0 writes a random token (new for every run) into the workdir;
  every process reads it back, waiting at most SHARED_CHECK_SECONDS; an
  all-gather of the answers then decides for all, so no process is left
  waiting in a later collective while another stops. Process 0 removes the
  token (and the folder, if it created it): the check leaves nothing behind.
  """
  if jax.process_count() == 1:
    return
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  token_file = os.path.join(path, TOKEN_FILE)
  token = np.frombuffer(os.urandom(16), np.int32).copy()
  created, write_error = False, None
  if is_main():
    try:
      created = not paths.exists(path)
      paths.makedirs(path)
      paths.write_atomic(token_file, token.tobytes().hex())
    except OSError as e:
      write_error = e
      token[:] = 0  # tells the others that there is nothing to read
  token = np.asarray(multihost_utils.broadcast_one_to_all(token))
  seen = not token.any() or _read_back(token_file, token.tobytes().hex())
  everyone = np.asarray(multihost_utils.process_allgather(
      np.asarray([seen], np.int32)))
  if is_main():
    if token.any():
      paths.remove(token_file)
    # The folder it made, if still empty: a run started at the same moment
    # (refused later by the lease) may be writing into it already.
    if created and paths.isdir(path) and not paths.listdir(path):
      paths.rmtree(path)
  if write_error is not None:
    raise UserError(f"workdir {path} cannot be written: "
                    f"{write_error.strerror or write_error}; choose another "
                    f"--workdir") from write_error
  if not token.any():
    raise UserError(f"process 0 could not write the workdir {path}; see its "
                    f"error")
  if not everyone.all():
    # Also what processes given different --workdir paths see: a process
    # cannot tell that from a disk that is not shared.
    raise UserError(f"{errors.WORKDIR_NOT_SHARED} (or the processes were "
                    f"given different --workdir paths)")


@contextlib.contextmanager
def workdir_lock(path: str):
  """Holds the workdir `path` for this run, or raises a UserError on every
  process. One process on a local disk: an flock (`paths.machine_lock`),
  after checking that no multi-process run renews a lease on it. On gs://
  (no kernel to hold an flock) or with several processes: a lease that
  every machine sees (`leases`), held by process 0, also under the flock
  of its own machine; its answer goes to every process, so none is left
  waiting in a collective while process 0 stops."""
  from jaxunknowns import leases  # pylint: disable=g-import-not-at-top
  if jax.process_count() == 1 and paths.is_local(path):
    with paths.machine_lock(path, "workdir"):
      file = leases.lease_file(path)
      holder = leases.live_holder(file, remove_stale=True)
      if holder:
        raise leases.in_use(path, file, holder)
      yield
    return
  refusal = ""
  with contextlib.ExitStack() as held:
    if is_main():
      try:
        held.enter_context(paths.machine_lock(path, "workdir"))
        lease = leases.Lease(path)
        lease.acquire()
        held.callback(lease.release)
      except UserError as e:
        refusal = str(e)
    if jax.process_count() > 1:
      refusal = _broadcast_text(refusal)
    if refusal:
      raise UserError(refusal)
    yield


def _broadcast_text(text: str, size: int = 4096, source: int = 0) -> str:
  """Process `source`'s `text` (its first `size` bytes) on every process."""
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  data = np.zeros(size, np.int32)
  raw = np.frombuffer(text.encode()[:size], np.uint8)
  data[:len(raw)] = raw
  data = np.asarray(multihost_utils.broadcast_one_to_all(
      data, is_source=jax.process_index() == source))
  return bytes(data.astype(np.uint8)).rstrip(b"\0").decode(errors="replace")


def _read_back(token_file: str, expected: str) -> bool:
  deadline = time.monotonic() + SHARED_CHECK_SECONDS
  while True:
    try:
      if paths.read_text(token_file) == expected:
        return True
    except Exception:  # pylint: disable=broad-except
      pass  # not there (yet), or not readable: both mean "not seen"
    if time.monotonic() > deadline:
      return False
    time.sleep(0.5)
