"""Orbax checkpoints of a (run-batched) train state, with corruption fallback.

A checkpoint directory holds the last `max_to_keep` states. Restoring tries the
newest first; if it cannot be read (a run killed mid-write on a filesystem
without atomic renames, a file damaged later), it says so and falls back to
the one before. If none can be read, the error says which folder to delete.
With several processes each reads its own shards, so a step may be readable
on one and not on another: they agree on the newest step every one of them
can read.
"""

import asyncio
import contextlib
import json
import os
import weakref
from typing import Any, Optional, Tuple

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from jaxunknowns import distributed, metrics, paths
from jaxunknowns.errors import UserError

try:  # where orbax runs its coroutines (see `_ending_orbax_tasks`)
  from orbax.checkpoint._src import asyncio_utils as orbax_asyncio  # pylint: disable=g-import-not-at-top
except ImportError:  # another orbax: restores as they are
  orbax_asyncio = None


# The one item of a step's folder: what the manager names an item saved
# with `args=` alone (the folder STEP/default).
_ITEM = ocp.checkpoint_manager.DEFAULT_ITEM_NAME

# The Checkpoints not yet garbage-collected (see `wait_for_saves`).
_ALL = weakref.WeakSet()


def wait_for_saves():
  """Lets every save still in flight land: `main` calls it when a run stops
  on an error (a full disk, say), so the rerun resumes from the checkpoints
  written before the error."""
  for checkpoints in list(_ALL):
    try:
      checkpoints.wait()
    except Exception as e:  # pylint: disable=broad-except
      # The failed save leaves a tmp folder, deleted at the next start.
      logging.info("a checkpoint save in %s failed: %s", checkpoints.directory,
                   str(e).splitlines()[0][:200] if str(e) else type(e))


def open_now() -> set:
  return set(_ALL)


def close_opened_since(before) -> None:
  """Closes every Checkpoints made since `before` (`open_now()`) and still
  open: a run that stops on an error or Ctrl-C leaves its managers open,
  and in a notebook their threads outlive it. `close` lets their saves
  land first; a failing one is the error already on its way."""
  for checkpoints in [c for c in list(_ALL) if c not in before]:
    try:
      checkpoints.close()
    except Exception as e:  # pylint: disable=broad-except
      logging.info("closing %s: %s", checkpoints.directory, e)


def abstract(tree: Any) -> Any:
  """Shapes, dtypes and shardings of `tree`'s arrays, all a restore needs
  of its target: a caller that builds a state only as a target keeps
  these and lets the arrays go."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


async def _with_its_tasks_ended(coro):
  """`coro`, then the tasks it started and left running awaited to their
  ends (cancelled after 30 s), in its own event loop: see
  `_ending_orbax_tasks`."""
  try:
    return await coro
  finally:
    rest = asyncio.all_tasks() - {asyncio.current_task()}
    if rest:
      # Let the sibling reads finish rather than cancel them: a cancelled
      # task leaves its tensorstore read running, whose completion then
      # calls into the closed loop ("Event loop is closed": seen in a CI
      # run of test_checkpoint_faults under load). Bounded: what is still running after 30 s is
      # cancelled, and one that ignores that is left as before.
      _, pending = await asyncio.wait(rest, timeout=30)
      for task in pending:
        task.cancel()
      if pending:
        await asyncio.wait(pending, timeout=5)
      for task in rest:
        if task.done() and not task.cancelled():
          task.exception()  # retrieved: not logged at its collection
    # Done-callbacks still queued (a failed task's parent gather's, which
    # retrieves its error) run now: the closing loop would drop them.
    await asyncio.sleep(0)


@contextlib.contextmanager
def _ending_orbax_tasks():
  """Within: every orbax call ends the tasks it started before it returns.

  Orbax runs each call in a fresh event loop (asyncio_utils.run_sync) and
  closes that loop as soon as the call's coroutine ends. When a read fails
  (a damaged checkpoint), `asyncio.gather` raises at the first failing
  array while its siblings still read, and the closed loop abandons them:
  at their garbage collection Python printed "Exception ignored in:
  <coroutine object _read_array_index_and_device_put>" (orbax turns the
  GeneratorExit of closing into an Exception), tensorstore's callbacks
  into the closed loop "RuntimeError: Event loop is closed", and asyncio
  "Task exception was never retrieved": dozens of tracebacks on stderr in
  about one fallback to an older step in three. Awaited to their ends
  before the loop closes, each ends with its error retrieved. Only around restores, where damage is met and read past; a
  no-op where orbax has no `run_sync`."""
  run_sync = getattr(orbax_asyncio, "run_sync", None)
  if run_sync is None:
    yield
    return
  orbax_asyncio.run_sync = lambda coro: run_sync(_with_its_tasks_ended(coro))
  try:
    yield
  finally:
    orbax_asyncio.run_sync = run_sync


class _Manager(ocp.CheckpointManager):
  """orbax's manager, which never asks JAX's preemption service.

  Its save (and the finalize after it) asks
  `multihost_utils.reached_preemption_sync_point(step)` with the training
  step, and the service keeps only the last number it was asked with: a
  SIGTERM that came after orbax asked with 40 set the stop point to 41,
  which preemption.requested's count of chunk boundaries (1, 2, 3, ...)
  never meets, so no process stopped (3 runs in 8). preemption.py alone
  asks, and every save here is forced, so orbax's answer decided nothing.
  """

  def reached_preemption(self, step: int) -> bool:
    del step
    return False


class Checkpoints:
  """A folder of step-numbered states, saved asynchronously by orbax."""

  def __init__(self, directory: str, max_to_keep: Optional[int] = 2,
               create: bool = True):
    """`create=False`: only to read (`restore_kept`); a missing folder stays
    missing and holds no steps, so a failed read leaves no empty one."""
    # Orbax saves collectively: every process names the same folder (one
    # under a non-main process's scratch is the shared workdir's).
    self.directory = paths.shared(paths.absolute(directory))
    self._options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=create,
        cleanup_tmp_directories=True)
    self._manager = self._new_manager()
    _ALL.add(self)

  def _new_manager(self) -> ocp.CheckpointManager:
    # orbax reads and writes local folders and gs:// alike through epath.
    return _Manager(epath.Path(self.directory), options=self._options)

  def steps(self):
    return sorted(self._manager.all_steps())

  def latest_step(self) -> Optional[int]:
    steps = self.steps()
    return steps[-1] if steps else None

  def save(self, step: int, state: Any):
    """Saves unless this step is already saved (a resumed run passing a
    snapshot step it had reached before the interruption)."""
    if step in self._manager.all_steps():
      return
    self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

  def restore(self, step: int, target: Any) -> Any:
    """The state at `step`, shaped, typed and placed as `target` (arrays,
    or their `abstract` form)."""
    with _ending_orbax_tasks():
      return self._manager.restore(
          step, args=ocp.args.StandardRestore(abstract(target)))

  def restore_kept(self, step: int, target: Any) -> Any:
    """The state saved at `step`, which a later part of the run starts from
    (a rewind snapshot): there is no older one to fall back to, so a
    missing or unreadable one is a UserError saying how to retrain it (on
    every process, where only some cannot read it)."""
    fix = "rerun with --overwrite to retrain the run, or use another --workdir"
    if step not in self.steps():
      raise UserError(f"the state saved at step {step} in {self.directory} "
                      f"is missing; {fix}")
    state, e = self._try_restore(step, target)
    error = None
    if e is not None:
      detail = str(e).splitlines()[0][:120] if str(e) else ""
      error = UserError(
          f"the state saved at step {step} in {self.directory} is "
          f"unreadable ({type(e).__name__}: {detail}); {fix}")
      error.__cause__ = e
    distributed.raise_on_every_process(error)
    return state

  def _try_restore(self, step: int, target: Any):
    """(state, None), or (None, the error) where this process cannot read
    `step`. In one process through the manager. With several, through a
    checkpointer that meets no other process: the manager's restore ends in
    a barrier that a process whose read failed never reaches, so the
    others waited there while it went on to an older step (a collective
    mismatch, then JAX's abort, on every rerun); the caller agrees with the
    other processes instead."""
    if not distributed.several_processes():
      try:
        return self.restore(step, target), None
      except Exception as e:  # pylint: disable=broad-except
        # A failed restore leaves orbax's manager unable to read any other
        # step ('Must provide `args` of type `Composite`'), so a readable
        # older checkpoint was called corrupt too: a fresh one reads it.
        self._manager.close()
        self._manager = self._new_manager()
        return None, e
    alone = ocp.options.MultiprocessingOptions(
        primary_host=jax.process_index(),
        active_processes={jax.process_index()})
    checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler(),
                                    multiprocessing_options=alone)
    try:
      # The step's folder and item as the manager names them (standard
      # step names, its one default item); the restore checks that the
      # folder exists and was finalized.
      folder = ocp.step.build_step_path(
          self.directory, ocp.step.standard_name_format(), step)
      with _ending_orbax_tasks():
        restored = checkpointer.restore(folder, args=ocp.args.Composite(**{
            _ITEM: ocp.args.StandardRestore(abstract(target))}))
      return restored[_ITEM], None
    except Exception as e:  # pylint: disable=broad-except
      return None, e
    finally:
      checkpointer.close()

  def restore_latest(self, target: Any) -> Optional[Tuple[int, Any]]:
    """(step, state) of the newest checkpoint readable on every process, or
    None if there is none. Where a step cannot be read it says so and falls
    back to the previous one; with several processes they fall back
    together (each reads its own shards, so one may fail alone), and none
    readable on all is the same UserError on every process."""
    steps = self.steps()
    unreadable = []  # (step, the processes that cannot read it)
    for step in reversed(steps):
      state, e = self._try_restore(step, target)
      failed = distributed.processes_where(e is not None)
      if e is not None:
        logging.warning("checkpoint %s/%d is unreadable (%s: %s); "
                        "falling back to the previous one",
                        self.directory, step, type(e).__name__,
                        str(e).splitlines()[0][:200] if str(e) else "")
      elif failed:
        logging.warning("checkpoint %s/%d is unreadable on process(es) %s; "
                        "every process falls back to the previous one",
                        self.directory, step, failed)
      if failed:
        unreadable.append((step, failed))
        continue
      # Training will reach the unreadable steps again and save them anew.
      for bad, _ in unreadable:
        self._manager.delete(bad)
      self._check_metrics(step)
      return step, state
    if steps:
      where = ""
      if distributed.several_processes():
        where = "; unreadable on " + ", ".join(
            f"step {s}: process{'es' * (len(p) > 1)} "
            f"{', '.join(map(str, p))}" for s, p in unreadable)
      raise UserError(
          f"no readable checkpoint in {self.directory} (steps {steps} are "
          f"corrupt{where}); delete that folder to retrain from scratch, or "
          f"rerun with --overwrite")
    return None

  # Beside the step folders: the steps behind the newest checkpoint and the
  # seconds they took to train, so a fit resumed from it (a killed job's
  # rerun, or one resumed at its very end to measure) reports the pace of
  # the whole fit, not of its last attempt alone (0 steps/s when that
  # attempt trained none).
  TIMING_FILE = "timing.json"

  def keep_timing(self, step: int, steps: int, seconds: float):
    """Records that the `steps` steps behind the checkpoint at `step` took
    `seconds` to train, and how many rows the run's metrics.jsonl holds now
    (metrics.ROWS_FIELD, per run for a vmapped group's checkpoints;
    `restore_latest` compares): every row of the fit up to `step` is
    written before its checkpoint."""
    if jax.process_index() == 0:  # the folder is shared by every process
      timing = {"step": step, "steps": steps, "seconds": seconds}
      rows = metrics.rows_to_record(self.directory)
      if rows is not None:
        timing[metrics.ROWS_FIELD] = rows
      paths.write_atomic(os.path.join(self.directory, self.TIMING_FILE),
                         json.dumps(timing))

  def _check_metrics(self, step: int):
    """A fit resumed from the checkpoint at `step` keeps the run's rows up
    to it and skips the training behind it (all of it, at the fit's end), so
    metrics.jsonl must still hold the rows it held when that checkpoint was
    kept; else (cut or deleted since) a UserError before the fit writes
    anything, not a summary read back wrong. Only for the step timing.json
    speaks of: a record of a later step that never landed, or was unreadable
    and deleted, counts rows that the fit rewinds. Not in a multi-process
    run: process 0 may be rewriting the shared file (a stage's own step-0
    rows, dropped and logged again before its fit) while another process
    reads it, and one process alone would stop; Workdir.check's look at
    finished stages, before anything is written, is made on every process
    alike."""
    if jax.process_count() > 1:
      return
    path = os.path.join(self.directory, self.TIMING_FILE)
    try:
      t = json.loads(paths.read_text(path))
    except (OSError, ValueError):
      return  # timing is a nicety (see `timing`): nothing recorded to check
    if isinstance(t, dict) and t.get("step") == step:
      metrics.check_recorded_rows(self.directory, t.get(metrics.ROWS_FIELD),
                                  path)

  def timing(self, step: Optional[int]) -> Tuple[int, float]:
    """(steps, seconds) behind the checkpoint at `step`; (0, 0.0) when none
    was kept, or the file speaks of another step (a kill between the
    checkpoint and the file): timing is a report's nicety, never a reason
    to stop."""
    if step is not None:
      try:
        t = json.loads(paths.read_text(
            os.path.join(self.directory, self.TIMING_FILE)))
        if t["step"] == step:
          return int(t["steps"]), float(t["seconds"])
      except (OSError, ValueError, KeyError, TypeError):
        pass
    return 0, 0.0

  def wait(self):
    self._manager.wait_until_finished()

  def close(self):
    _ALL.discard(self)
    try:
      self._manager.wait_until_finished()
    finally:  # a failed save still lets the manager's threads go
      self._manager.close()
