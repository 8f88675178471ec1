"""Where a sweep's runs execute: here, one after another, or on a Ray cluster.

Both executors take the planned runs (each a config and a workdir) and return
{run name: None if it finished, else why it failed}. A run's workdir is its
state: a run that stops for any reason resumes from its checkpoints the next
time it is executed, and a finished one (summary.json present) is skipped.
So retrying a task is simply running it again, and one run's failure never
costs another's results: the sweep aggregates what finished and lists the rest.

Ray (`--executor=ray`, `pip install -e '.[ray]'`): every run is one task on the
cluster named by `--ray_address` or RAY_ADDRESS (else a local cluster is
started), reserving `--ray_cpus`/`--ray_gpus` (or a TPU resource,
`--ray_resources=TPU=4`) for its lifetime. A task whose worker dies (a
preempted node, an out-of-memory kill) is retried up to `--max_retries` times
and resumes from its checkpoint; an exception raised by the run itself (bad
input, a diverged loss) is deterministic and is not retried. Every node must
reach the sweep root at the same path (a shared filesystem): launch/README.md
says how to start such a cluster.
"""

import importlib.util
import os
import socket
import sys
import time
import traceback
import uuid
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

from absl import logging

from jaxunknowns import errors, paths
from jaxunknowns.errors import UserError

EXECUTORS = ("local", "ray")
Outcomes = Dict[str, Optional[str]]


def _main_module():
  """jaxunknowns.main, also while it runs as `python -m jaxunknowns.main`
  (the article's stages): importing it anew would define its flags twice."""
  running = sys.modules.get("__main__")
  if getattr(getattr(running, "__spec__", None), "name", "") == (
      "jaxunknowns.main"):
    return running
  from jaxunknowns import main  # pylint: disable=g-import-not-at-top
  return main


# What a sweep's diverged run needs before a rerun can retry it (a single
# run's advice, --overwrite, would retrain every run of the sweep).
IN_A_SWEEP = ("as it is, a rerun diverges again: change or drop its value in "
              "the sweep, or rerun the sweep so changed into a new --workdir")


def run_one(config, workdir: str, overwrite: bool, references=None,
            diverged_advice: str = "", stop_on_write_errors: bool = True,
            overwritten_marker: str = "") -> Optional[str]:
  """Runs one run in this process; the failure text, or None.
  `diverged_advice`: a diverged run's way out in place of a single run's
  (a new --workdir or --overwrite), which would be wrong advice inside a
  sweep (IN_A_SWEEP) or an article (whose --overwrite deletes every stage).
  `overwritten_marker`: a file written once --overwrite has emptied the
  workdir; a run that finds it is a retry of that attempt (a Ray task
  whose worker died) and resumes what it trained, not empties it again.
  `stop_on_write_errors`: a full or unwritable disk is raised (a UserError),
  not returned: every later run here would fail on it the same way (a Ray
  task, on a machine of its own, returns it). In a run of several
  processes (the article's stages) every failure but a divergence, which
  every process meets at the same step, is raised: the others may still
  be in a collective of this run."""
  from jaxunknowns import distributed  # pylint: disable=g-import-not-at-top
  from jaxunknowns import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  main = _main_module()
  marked = None
  if overwrite and overwritten_marker:
    overwrite = not paths.exists(overwritten_marker)
    marked = workdir_lib.ON_OVERWRITE.set(
        lambda _: paths.write_atomic(overwritten_marker, ""))
  try:
    main.run(config, workdir, overwrite, references)
    return None
  except UserError as e:
    what = getattr(e, "what", None)  # a TrainingDiverged's, without advice
    if distributed.several_processes() and not what:
      # One process's own (a dataset missing on its host): its peers may
      # wait in this run's collectives. main's CLI stops them all.
      raise
    return f"{what}; {diverged_advice}" if diverged_advice and what else str(e)
  except Exception as e:  # pylint: disable=broad-except
    if distributed.several_processes():
      # One process's crash (a peer lost, its own full disk, out of memory)
      # leaves the others in a collective of this run: going on to the
      # next run would pair their collectives wrongly. main's CLI stops
      # them all in a line.
      raise
    error = errors.user_error(e, workdir)  # a full disk, out of memory
    if error is not None:
      cause = errors.write_error(e, workdir)
      # Only a file of the run's own that could not be written: an OSError
      # naming no file (a full /dev/shm, a refused socket) is this run's.
      if stop_on_write_errors and cause is not None and cause.filename:
        raise error from e
      return str(error)
    # A crash inside one run must not lose the others: the traceback goes to
    # the log, its last line to the sweep's table of failures.
    logging.exception("run in %s crashed", workdir)
    last = traceback.format_exception_only(type(e), e)[-1].strip()
    return f"crashed: {last}"
  finally:
    if marked is not None:
      workdir_lib.ON_OVERWRITE.reset(marked)


def run_local(runs: Sequence[Any], overwrite: bool, out) -> Outcomes:
  outcomes = {}
  for i, run in enumerate(runs, 1):
    if run.finished and not overwrite:
      print(f"[{i}/{len(runs)}] {run.name}: finished, skipped", file=out)
      outcomes[run.name] = None
      continue
    print(f"[{i}/{len(runs)}] {run.name}: running", file=out)
    out.flush()
    outcomes[run.name] = run_one(run.config, run.workdir, overwrite,
                                  run.references, diverged_advice=IN_A_SWEEP)
  return outcomes


def parse_resources(text: str) -> Dict[str, float]:
  """'TPU=4,accel=1' -> {'TPU': 4.0, 'accel': 1.0} (Ray custom resources)."""
  resources = {}
  for item in filter(None, (t.strip() for t in text.split(","))):
    name, _, amount = item.partition("=")
    try:
      value = float(amount)
    except ValueError:
      value = None
    # A nameless or negative resource: Ray would refuse the task only once
    # the runs were submitted.
    if not name.strip() or value is None or not value >= 0:
      raise UserError(f"--ray_resources: {item!r} is not NAME=AMOUNT (an "
                      f"amount >= 0)")
    resources[name.strip()] = value
  return resources


RAY_MISSING = "--executor=ray needs Ray: pip install -e '.[ray]'"


def check_ray_options(num_cpus: float = 1, num_gpus: float = 0,
                      max_retries: int = 2, **unused) -> None:
  """The --ray_* and --max_retries values, and Ray itself, before anything
  runs (a refusal after the sweep's root was named left it named)."""
  del unused  # address, resources: checked where they are read
  if max_retries < 0 or not num_cpus >= 0 or not num_gpus >= 0:
    raise UserError("--max_retries, --ray_cpus and --ray_gpus must be >= 0")
  if importlib.util.find_spec("ray") is None:
    raise UserError(RAY_MISSING)


def check_ray_address(address: str = "", seconds: float = 10.0,
                      flag: str = "--ray_address (or RAY_ADDRESS)",
                      **unused) -> None:
  """One line, not an endless wait, where a Ray cluster's address (HOST:PORT
  or ray://HOST:PORT, else RAY_ADDRESS) takes no connection: ray.init
  retried an unreachable one for minutes, saying nothing. `flag`: what the
  user set it with (the article has RAY_ADDRESS only)."""
  del unused
  address = address or os.environ.get("RAY_ADDRESS", "")
  host, _, port = address.split("://")[-1].rpartition(":")
  if not host or not port.isdigit():
    return  # "auto", or empty: a local cluster, started by ray.init
  try:
    socket.create_connection((host, int(port)), timeout=seconds).close()
  except OSError as e:
    raise UserError(
        f"no Ray cluster answers at {address} ({e.strerror or e}); check "
        f"{flag}, or drop it for a local cluster"
    ) from None


def _timed_run_one(*args, **kwargs):
  """`run_one` as a Ray task: (its outcome, the seconds it took there)."""
  t0 = time.time()
  return run_one(*args, **kwargs), time.time() - t0


def run_ray(runs: Sequence[Any], overwrite: bool, out, *,
            address: str = "", num_cpus: float = 1, num_gpus: float = 0,
            resources: Optional[Mapping[str, float]] = None,
            max_retries: int = 2,
            init: Optional[Callable[..., Any]] = None,
            diverged_advice: str = IN_A_SWEEP,
            on_done: Optional[Callable[[str, Optional[str], float], Any]]
            = None) -> Outcomes:
  """Every unfinished run as one Ray task; waits for all of them.
  `diverged_advice`: as run_one's.
  `on_done(name, outcome, seconds)`: called as each task ends (the
  article's stages.json), with the seconds it ran (where its worker died,
  those since it was submitted, queueing included)."""
  try:
    import ray  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError(RAY_MISSING) from None
  check_ray_options(num_cpus, num_gpus, max_retries)
  address = address or os.environ.get("RAY_ADDRESS", "")
  if not ray.is_initialized():
    (init or ray.init)(address=address or None, log_to_driver=False)
  if not address:  # a local cluster: what it has is all there will be
    have = ray.cluster_resources()
    want = {"CPU": num_cpus, "GPU": num_gpus, **dict(resources or {})}
    short = [f"{k}={v:g} (it has {have.get(k, 0):g})"
             for k, v in want.items() if v > have.get(k, 0)]
    if short:  # else every task waits for them, forever and silently
      raise UserError(
          f"each run asks the local Ray cluster for {', '.join(short)}: "
          "lower --ray_cpus, --ray_gpus or --ray_resources, or pass "
          "--ray_address of a cluster that has them")

  # Named as the function it times: what `ray list tasks`, the dashboard
  # and a worker's process title (ray::run_one) showed before.
  task = ray.remote(_timed_run_one).options(
      name="run_one",
      num_cpus=num_cpus, num_gpus=num_gpus, resources=dict(resources or {}),
      max_retries=max_retries, retry_exceptions=False)
  outcomes, pending, submitted = {}, {}, {}
  # --overwrite empties a run's folder once: a task retried after its worker
  # died finds the marker its first attempt left and resumes (without it,
  # each retry emptied the folder again and trained from step 0).
  markers = (os.path.join(os.path.dirname(runs[0].workdir),
                          f".overwritten-{uuid.uuid4().hex}")
             if overwrite and runs else "")
  try:
    if markers:
      paths.makedirs(markers)
    for run in runs:
      if run.finished and not overwrite:
        print(f"{run.name}: finished, skipped", file=out)
        outcomes[run.name] = None
        continue
      marker = (os.path.join(markers, os.path.basename(run.workdir))
                if markers else "")
      submitted[run.name] = time.time()
      pending[task.remote(run.config, run.workdir, overwrite, run.references,
                          diverged_advice=diverged_advice,
                          stop_on_write_errors=False,
                          overwritten_marker=marker)] = run.name
    print(f"{len(pending)} runs submitted to Ray "
          f"({address or 'a local cluster'})", file=out)
    out.flush()
    while pending:
      done, _ = ray.wait(list(pending), num_returns=1)
      name = pending.pop(done[0])
      try:
        outcomes[name], seconds = ray.get(done[0])
      except ray.exceptions.RayError as e:  # the worker died, or Ray itself
        seconds = time.time() - submitted[name]
        # Ray retries a dead worker up to max_retries times, but not every
        # failure (a raylet or runtime-env agent gone fails at once).
        outcomes[name] = (f"Ray task failed (retried up to {max_retries} "
                          f"times if its worker died): " + (
                              str(e).strip().splitlines()
                              or [type(e).__name__])[0])
      print(f"{name}: {'finished' if outcomes[name] is None else 'FAILED'} "
            f"({len(pending)} left)", file=out)
      out.flush()
      if on_done is not None:
        on_done(name, outcomes[name], seconds)
  finally:
    if markers:
      paths.rmtree(markers)
  return outcomes
