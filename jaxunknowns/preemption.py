"""SIGTERM, the notice of a preempted machine, saves a checkpoint and stops.

Cloud TPU VMs, spot GPU instances, Kubernetes and SLURM (`--signal`) send
SIGTERM some seconds before they take a machine away. Before this module a
run ended at once and lost the steps since its last periodic checkpoint,
and a multi-process run did not end at all: JAX's preemption service (on
with jax.distributed) takes SIGTERM and waits to be asked about it, and
nothing asked, so the run trained on until the machine was taken.

Now `Trainer.fit` asks at the end of every chunk of steps (`requested`).
Once told, it saves a checkpoint at the step it reached and raises
`Preempted`, which the CLI turns into one line and exit status 143 (128 +
SIGTERM). The same command resumes from that step and ends with the numbers
of a run never stopped (tests/test_resume.py). A SIGTERM outside a fit
(loading data, an analysis between fits) ends the run at once, as before:
there is nothing newer to save.

One process: the CLI installs the handler (`install`). Python runs signal
handlers only in the main thread between bytecodes, and the main thread may
sit in one XLA compile for minutes, so a thread woken through
`signal.set_wakeup_fd` (written by the C-level handler at once) decides:
a second SIGTERM, or one outside a fit, ends the run at once even then.

Several processes: every process must save the same step, so JAX's service
decides: `multihost_utils.reached_preemption_sync_point`, asked with the
number of chunk boundaries passed, which every process counts alike, and
asked by nothing else. When the signal comes, the service sets the stop
point to the largest number any process last asked with, plus one; orbax's
CheckpointManager asks too, with training steps, so a signal after its
question stopped nothing (checkpoints.py keeps orbax from asking).
"""

import contextlib
import os
import signal
import socket
import sys
import threading

EXIT_STATUS = 128 + signal.SIGTERM

_requested = threading.Event()
_listening = 0  # fits running now that stop at their next chunk boundary
_installed = None  # the wakeup socket pair, once installed
_boundaries = 0  # chunk boundaries passed, the same count on every process


class Preempted(BaseException):
  """A fit stopped for SIGTERM at `step`, its checkpoint `saved`. A
  BaseException, as KeyboardInterrupt: a handler that records a failed run
  and goes on (a sweep's) must let it through."""

  def __init__(self, step: int, saved: bool):
    super().__init__(step, saved)
    self.step, self.saved = step, saved

  def __str__(self):
    if self.saved:
      return (f"stopped by SIGTERM at step {self.step}, saved in a "
              "checkpoint: rerun the same command to resume from it")
    return (f"stopped by SIGTERM at step {self.step} of a stage that keeps "
            "no checkpoint: rerun the same command to resume from the "
            "stage's start")


def install():
  """The CLI's SIGTERM handling in one process (in several, JAX's service
  has the signal). From the main thread; a library user's process is left
  as it is."""
  global _installed
  import jax  # pylint: disable=g-import-not-at-top
  # jax.distributed first: process_count() alone starts the backends, whose
  # probe logs would come before a bad config's one line.
  if _installed or (jax.distributed.is_initialized()
                    and jax.process_count() > 1):
    return
  # Kept for the process's life: a socket garbage-collected closes its fd.
  _installed = read, write = socket.socketpair()
  write.setblocking(False)
  signal.set_wakeup_fd(write.fileno(), warn_on_full_buffer=False)
  # Replaces the default action (end at once). In the main thread, soon
  # after the signal unless it sits in C: the watcher has it meanwhile.
  signal.signal(signal.SIGTERM, lambda *_: _listening and _requested.set())
  threading.Thread(target=_watch, args=(read,), name="sigterm-watcher",
                   daemon=True).start()


def _watch(sock):
  seen = 0  # its own count: the main thread's handler may set the flag first
  while True:
    try:
      numbers = sock.recv(64)
    except OSError:  # the socket is gone: the process is ending
      return
    for number in numbers:
      if number != signal.SIGTERM:
        continue  # SIGINT's byte: KeyboardInterrupt handles it
      seen += 1
      if seen > 1 or not _listening:
        stop_now()
      _requested.set()
      _say("SIGTERM: stopping at the end of the steps in flight (a second "
           "SIGTERM stops at once)")


def stop_now():
  """As a kill, which the same command resumes from the last checkpoint;
  os._exit: a save in flight is not waited for (orbax's are atomic)."""
  try:
    _say("terminated by SIGTERM: rerun the same command to resume from the "
         "last checkpoint")
  finally:
    os._exit(EXIT_STATUS)  # pylint: disable=protected-access


def _say(line: str):
  """To stderr, if there is one: a closed stderr (2>&-, a log pipe whose
  reader died) must not kill the watcher, which would leave SIGTERM
  doing nothing."""
  stream = sys.stderr  # None when started without one (2>&-)
  try:
    os.write(stream.fileno(), (line + "\n").encode())
  except (AttributeError, OSError, ValueError):
    pass


@contextlib.contextmanager
def listening():
  """Around a fit (`Trainer.fit` is decorated with it): a SIGTERM now
  waits for the chunk in flight (and `Preempted` ends the fit) instead of
  ending the process."""
  global _listening
  _listening += 1
  try:
    yield
  finally:
    _listening -= 1
  # A SIGTERM after the fit's last question (one process; with several,
  # JAX's service is asked again at the next fit's first boundary): the fit
  # ended, its checkpoint saved; as one outside a fit, the run ends now.
  if _requested.is_set() and not _listening:
    stop_now()


def requested() -> bool:
  """At a chunk boundary of a fit, the same on every process: stop here?"""
  global _boundaries
  _boundaries += 1
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_count() > 1:
    if not jax.config.jax_enable_preemption_service:
      return False  # switched off: asking would raise RuntimeError
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return multihost_utils.reached_preemption_sync_point(_boundaries)
  return _requested.is_set()
