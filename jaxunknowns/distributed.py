"""Multi-process (multi-host) runs: JAX's own multi-controller runtime.

Every process runs the same program over one global `Mesh`; `jax.jit`
compiles it once for all devices and inserts the collectives. What this
module adds is the little that a single-process program never needs:

* `initialize`: `jax.distributed.initialize` when a flag or the environment
  asks for it (on a Cloud TPU VM, JAX finds its peers by itself).
* `to_global`: a host array -> a global `jax.Array`, each process building
  only the shards its own devices hold (so with the batch sharded over the
  'data' axis, a process materializes only its part of every batch).
* `fetch`: a global array -> numpy on every process (replicated values are
  read from a local shard; sharded ones are all-gathered).
* `check_same_config`: all processes must run the same config (and the same
  --overwrite); if not, every process stops with the same one-line error.
* `check_shared_workdir`: all processes must see one workdir (a gs:// path
  or a shared filesystem); if not, every process stops with one line.
* `is_main`: only process 0 writes metrics, reports and figures.
"""

import hashlib
import json
import os
import time
from typing import Any, Optional

import jax
import numpy as np

from jaxunknowns import errors, paths
from jaxunknowns.errors import UserError

# Environment variables that say "this is one process of several".
_ENV_VARS = ("JAX_COORDINATOR_ADDRESS", "JAXUNKNOWNS_DISTRIBUTED")


def initialize(coordinator_address: str = "", num_processes: int = 0,
               process_id: int = -1, enabled: Optional[bool] = None) -> bool:
  """Starts the multi-controller runtime if asked; returns whether it did.

  Asked = `enabled`, or an explicit coordinator address, or one of _ENV_VARS
  set, or a multi-host TPU slice (`jax.distributed.initialize()` then reads
  the cluster from the environment: Cloud TPU, SLURM, Open MPI, or
  JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID).
  """
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
  if enabled is None:
    enabled = (bool(coordinator_address) or
               any(os.environ.get(v) for v in _ENV_VARS) or
               # A multi-host Cloud TPU slice lists its workers here.
               "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""))
  if not enabled:
    return False
  kwargs = {}
  if coordinator_address:
    if num_processes < 1 or not 0 <= process_id < num_processes:
      raise UserError(
          f"--coordinator_address needs --num_processes >= 1 and 0 <= "
          f"--process_id < num_processes (got {num_processes}, {process_id})")
    kwargs = dict(coordinator_address=coordinator_address,
                  num_processes=num_processes, process_id=process_id)
  try:
    jax.distributed.initialize(**kwargs)
  except ValueError as e:  # --distributed=on where nothing names a cluster
    raise UserError(
        f"--distributed=on found no cluster to join ({e}); pass "
        f"--coordinator_address=HOST:PORT --num_processes=N --process_id=I, "
        f"or run under SLURM, Open MPI or a Cloud TPU VM") from e
  return True


def is_main() -> bool:
  return jax.process_index() == 0


def to_global(x: np.ndarray, sharding) -> jax.Array:
  """`x` (the same on every process) as a global array with `sharding`.

  Single-process this is `jax.device_put`. Multi-process, each process is
  asked only for the slices its addressable devices hold.
  """
  if jax.process_count() == 1:
    return jax.device_put(x, sharding)
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


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


def first_value(a: jax.Array):
  """a.flat[0] without gathering: read from this process's first shard.
  (The trainer's run steps are all equal, so any shard answers.)"""
  if not isinstance(a, jax.Array):
    return np.asarray(a).reshape(-1)[0]
  return np.asarray(a.addressable_data(0)).reshape(-1)[0]


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
  for what, columns, flags in (("configs", slice(0, 2), "--config and "
                                "--config.* flags"),
                               ("--overwrite", slice(2, 3), "--overwrite "
                                "(on all or none)")):
    differing = [i for i in range(everyone.shape[0]) if not np.array_equal(
        everyone[i, columns], everyone[0, columns])]
    if differing:
      raise UserError(
          f"the {jax.process_count()} processes were given different {what} "
          f"(processes {differing} differ from process 0); launch every "
          f"process with the same {flags}")


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
  if is_main() and created:
    paths.rmtree(path)
  elif is_main():
    paths.remove(token_file)
  if write_error is not None:
    raise UserError(f"workdir {path} cannot be written: "
                    f"{write_error.strerror or write_error}; choose another "
                    f"--workdir") from write_error
  if not token.any():
    raise UserError(f"process 0 could not write the workdir {path}; see its "
                    f"error")
  if not everyone.all():
    raise UserError(errors.WORKDIR_NOT_SHARED)


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
