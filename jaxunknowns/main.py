r"""Runs one experiment from an ml_collections config.

  python -m jaxunknowns.main --config=configs/imp.py --workdir=/tmp/imp
  python -m jaxunknowns.main --config=configs/train.py:mnist1d_cnn \
      --config.seeds=8 --workdir=/tmp/cnn

Multi-host: run the same command on every host. On a Cloud TPU VM the
processes find each other by themselves (under SLURM or Open MPI, with
--distributed=on); elsewhere pass
--coordinator_address=HOST:PORT --num_processes=N --process_id=I, or set
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID (see
jaxunknowns/distributed.py). Every
host must see the same workdir: a gs:// path (--workdir=gs://bucket/run) or a
shared filesystem; a run whose hosts do not stops at once, in one line.

Kept short on purpose (as in Flax's examples): flags, device info, then the
experiment named by `config.experiment`. Mistakes a user can fix end in one
line on stderr and exit status 2, with the workdir left as it was: a field's
value of the wrong kind or range (validation.check_config), a workdir that
cannot be written. A disk that fills up during the run ends the same way, and
the same command then resumes the run (see errors.py).
"""

import contextlib
import logging as logging_std
import os
import sys
import traceback

from absl import app, flags, logging
from ml_collections import config_flags

from jaxunknowns import config_loading, errors, preemption

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, e.g. configs/train.py:variant.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder of the run.")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Delete a workdir that holds a different run.")
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "auto", ["auto", "on", "off"],
    "Start jax.distributed: auto = when --coordinator_address or the "
    "environment says so.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", "", "HOST:PORT of process 0 (multi-process runs).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Processes in all.")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "This process's index.")
flags.mark_flags_as_required(["config", "workdir"])


def run(config, workdir_path: str, overwrite: bool = False,
        references=None):
  """Validates, checks the workdir, then runs; returns the run's summary (a
  finished workdir's is read back, not rerun); raises UserError on bad input.
  `references`: see validation.check_config; from Python, pass
  `validation.references_of(spec)` for the checks the command line makes
  against the config file's variants (`notebook.run` does)."""
  from jaxunknowns import distributed, paths, validation  # pylint: disable=g-import-not-at-top
  from jaxunknowns.workdir import config_to_dict  # pylint: disable=g-import-not-at-top

  # First, before any process can fail alone: every process must agree.
  distributed.check_same_config(config_to_dict(config), overwrite)
  distributed.check_made_for_processes(config.experiment)
  experiment = validation.check_config(config, references)
  # Then, before any process reads or writes the workdir: a folder a run
  # can hold, one workdir for all.
  distributed.check_workdir_path(workdir_path)
  distributed.check_shared_workdir(paths.absolute(workdir_path))
  # One run at a time in a workdir, also of a multi-process run whose
  # hosts share only the disk.
  with distributed.workdir_lock(workdir_path), _closing_what_it_opens(), (
      validation.files_of(references)):
    return _run_in(experiment, config, workdir_path, overwrite)


@contextlib.contextmanager
def _closing_what_it_opens():
  """Closes the TensorBoard writers and checkpoint managers the run opened,
  however it ends: in a notebook a failed run's threads and files stayed
  open for the session. The modules are looked up, not imported: a run
  that never loaded them pays nothing for this."""
  writers, checkpoints = (sys.modules.get(f"jaxunknowns.{name}")
                          for name in ("metrics", "checkpoints"))
  writers_before = writers.open_now() if writers else set()
  checkpoints_before = checkpoints.open_now() if checkpoints else set()
  try:
    yield
  finally:
    writers = sys.modules.get("jaxunknowns.metrics")
    if writers:
      writers.close_opened_since(writers_before)
    # Not with several processes: closing a checkpoint manager syncs them
    # all, and after a peer died that wait ended in JAX's abort (the CLI
    # exits at once instead, and a notebook runs one process).
    checkpoints = sys.modules.get("jaxunknowns.checkpoints")
    if checkpoints and sys.modules["jax"].process_count() == 1:
      checkpoints.close_opened_since(checkpoints_before)


def _run_in(experiment, config, workdir_path, overwrite):
  """`run` once the workdir is this process's."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxunknowns import distributed, paths  # pylint: disable=g-import-not-at-top
  from jaxunknowns.metrics import read_json  # pylint: disable=g-import-not-at-top
  from jaxunknowns.workdir import OpenedTogether  # pylint: disable=g-import-not-at-top
  workdir = OpenedTogether(workdir_path, config, overwrite=overwrite)
  # Whether an attempt too large for memory may undo itself (below): the
  # folder held no run (absent, empty, or emptied by --overwrite).
  existed = paths.exists(workdir.shared_path)
  held_no_run = overwrite or not existed or (
      paths.isdir(workdir.shared_path)
      and not paths.listdir(workdir.shared_path))
  try:  # close() deletes the scratch folder of processes other than 0
    workdir.check()
    if workdir.finished and not overwrite:
      logging.info("%s already holds a finished run of this config; nothing "
                   "to do (see summary.json, or pass --overwrite to rerun)",
                   workdir.shared_path)
      print(f"already finished: {workdir.summary_path}")
      return read_json(workdir.summary_path)
    logging.info("JAX %s, process %d/%d, devices: %s", jax.__version__,
                 jax.process_index(), jax.process_count(), jax.devices())
    try:
      return experiment.run(config, workdir)
    except Exception as e:  # pylint: disable=broad-except
      error = errors.user_error(e, workdir_path)
      if (error is not None and workdir.num_processes > 1 and not workdir.met
          and not isinstance(error, distributed.RaisedOnEveryProcess)):
        # Bad input this process may have found alone (a dataset one host
        # lacks): the others meet it where they would open the workdir,
        # and every process stops with its line, nothing written.
        workdir.agree(error)
      raise
  except Exception as e:
    # Too large to run (found only by running): unless a checkpoint or a
    # result landed, the workdir goes back to absent or empty, so a smaller
    # config can use it.
    if (held_no_run and errors.out_of_memory(e)
        and workdir.num_processes == 1 and not workdir.holds_progress()):
      paths.rmtree(workdir.shared_path)
      if existed:
        paths.makedirs(workdir.shared_path)
    raise
  finally:
    workdir.close()


class QuietLibraries(logging_std.Filter):
  """Orbax logs every step of every save at INFO; keep its warnings only,
  without the traceback of a failed background save (the main thread
  re-raises that error, and `main` reports it)."""

  def filter(self, record):
    if not any(f"/{lib}/" in record.pathname for lib in ("orbax", "etils", "asyncio", "concurrent")):
      return True
    record.exc_info, record.exc_text = None, None
    return record.levelno >= logging_std.WARNING


def quiet_unraisables(unraisable):
  """Two errors Python cannot raise, which would print a traceback to stderr
  beside the one line the CLI gives. After a failed background save (a full
  disk), tensorstore may finish a write once orbax has closed its asyncio
  loop, and posting the result there raises 'Event loop is closed' in a
  thread no one joins; the failed save itself reaches the main thread,
  which reports it. A Ctrl-C raised inside a gc callback (JAX registers
  one) or a __del__ is ignored by Python, so one Ctrl-C in a few was lost
  and the run went on to exit 0: it is delivered again, once, to wherever
  the main thread is next. Every other one is printed."""
  value = unraisable.exc_value
  if isinstance(value, RuntimeError) and str(value) == "Event loop is closed":
    logging.info("ignored after a failed save: %s", value)
    return
  if isinstance(value, KeyboardInterrupt):
    # From another thread, a moment later: raised here, inside the hook,
    # it would be ignored again. A real SIGINT, which also wakes a main
    # thread blocked in a wait (interrupt_main only sets a flag).
    import signal  # pylint: disable=g-import-not-at-top
    import threading  # pylint: disable=g-import-not-at-top
    again = threading.Timer(0.1, signal.pthread_kill, (
        threading.main_thread().ident, signal.SIGINT))
    again.daemon = True
    again.start()
    return
  sys.__unraisablehook__(unraisable)


def exit_interrupted():
  """Ctrl-C: as a kill, which resumes; one line, no traceback, exit 130
  (os._exit: an interrupted save's threads are not waited for)."""
  sys.stderr.write("interrupted: rerun the same command to resume from the "
                   "last checkpoint\n")
  sys.stderr.flush()
  os._exit(130)  # pylint: disable=protected-access


def exit_preempted(stopped):
  """SIGTERM, once a fit saved its step (preemption.py): one line, exit
  143 (128 + SIGTERM), as every process of the run says it. A normal exit:
  the saves have landed, and JAX's shutdown meets the other processes."""
  sys.stderr.write(f"{stopped}\n")
  sys.stderr.flush()
  sys.exit(preemption.EXIT_STATUS)


def main(argv):
  errors.refuse_arguments(argv)
  logging.get_absl_handler().addFilter(QuietLibraries())
  sys.unraisablehook = quiet_unraisables
  try:
    from jaxunknowns import distributed, validation  # pylint: disable=g-import-not-at-top
    distributed.initialize(
        _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
        enabled={"auto": None, "on": True, "off": False}[_DISTRIBUTED.value])
    preemption.install()
    config = config_loading.from_flag(_CONFIG)
    references = validation.references_of(
        config_flags.get_config_filename(flags.FLAGS["config"]))
    run(config, _WORKDIR.value, _OVERWRITE.value, references)
  except KeyboardInterrupt:
    exit_interrupted()
  except preemption.Preempted as stopped:
    exit_preempted(stopped)
  except Exception as e:  # pylint: disable=broad-except
    error = errors.user_error(e, _WORKDIR.value)
    distributed = sys.modules.get("jaxunknowns.distributed")
    if error is None and distributed and distributed.lost_a_process(e):
      # Not a bug here, and exiting normally would wait in JAX's shutdown
      # for the lost process (~75 s), then abort with a C++ stack.
      sys.stderr.write(
          f"error: another process of this run stopped ("
          f"{str(e).splitlines()[0][:200]}); rerun every process with the "
          f"same command: the run resumes from its last checkpoint\n")
      sys.stderr.flush()
      os._exit(2)  # pylint: disable=protected-access
    if error is None and distributed and distributed.several_processes():
      # A bug on one process of several: its traceback, then an end at
      # once. Raised on, it left the others waiting ~300 s in their next
      # collective, then JAX aborted them all (exit 134); now they see a
      # lost peer and stop in one line (above). Nothing is waited for:
      # a save in flight meets the other processes (orbax's are atomic).
      traceback.print_exc()
      sys.stderr.flush()
      os._exit(1)  # pylint: disable=protected-access
    if error is None:  # a bug: its traceback
      raise
    if "jaxunknowns.checkpoints" in sys.modules:  # else no save is in flight
      sys.modules["jaxunknowns.checkpoints"].wait_for_saves()
    errors.exit_with(error)


def parse_flags(argv):
  """absl's parser; what fails while reading the command line (a missing
  config file, an unknown variant, a misspelt --config.field, a value the
  field's parser refuses) is the user's to fix: one line, exit 2."""
  for arg in argv[1:]:  # before absl runs the file: is it a config at all?
    if arg.startswith("--config="):
      try:
        config_loading.check_returns_a_config(arg[len("--config="):])
      except errors.UserError as e:
        errors.exit_with(e)
  return errors.parse_flags(argv)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
