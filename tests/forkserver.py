"""A fork server for the tests' command-line runs (test code, not library).

Many tests run the CLI in a subprocess (`python -m jaxunknowns.main ...`),
and each run paid ~3.5 s (more on 2 busy cores) importing JAX, Flax, optax,
orbax, TFDS and matplotlib before its first line of our code ran. Here one
server process per distinct environment (a "zygote") imports them once,
and each run is a fork of it that then runs the module as `python -m`
does (`runpy`), in the caller's working directory, environment and
stdin/stdout/stderr, and exits with the run's own status.

What the test sees is unchanged: `subprocess.run` (patched by conftest.py)
and `popen` below, given `[sys.executable, "-m", "jaxunknowns.…", …]`,
start a small launcher in place of the interpreter; the launcher hands its
three file descriptors, environment and directory to the zygote, forwards
the signals it gets (SIGINT, SIGTERM, …) to the forked run, and exits as
the run did (its exit code, or killed by the same signal). `popen`'s
`send_signal`/`kill` signal the run itself, so a SIGKILL kills the run and
`wait()` returns after its death. A launcher killed outright (a timeout)
makes the run killed too. Any other command, and `subprocess.Popen` itself
(a test that reads the run's pid, or watches what a fresh interpreter
imports), runs as given.

Faithful where it matters: nothing of ours is imported by the zygote (only
third-party libraries, before any JAX backend exists: XLA_FLAGS is read by
the fork), the zygote is keyed by the whole environment (JAX reads its
JAX_* settings at import) but the variables that change per call and are
read late (`VOLATILE`), each key has two zygotes taken in turn (different
string hash seeds, see `_Zygotes`), the fork prints what the imports
printed, and it gets a fresh `__main__`, reseeds numpy's global
generator, forgets tempfile's cached folder, restores default signal
handling, waits for its threads and runs atexit as an exiting interpreter
does. JAXUNKNOWNS_TEST_FORKS=0 turns it off.
"""
import array
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

# Read by the fork, not at import: they may differ between calls to one
# zygote. Variables named JAXUNKNOWNS_* are ours, and nothing of ours is
# imported before the fork.
VOLATILE = ("PYTEST_CURRENT_TEST", "TMPDIR")
OURS = "JAXUNKNOWNS_"
PRELOAD = ("numpy", "jax", "jax.numpy", "flax.linen", "optax", "orbax.checkpoint",
           "tensorflow_datasets", "matplotlib.figure",
           "matplotlib.backends.backend_agg", "ml_collections.config_flags",
           "absl.app", "absl.logging", "tensorboardX", "PIL.Image")
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2)
_MAX_ZYGOTES = 6


def _send(conn, message, fds=()):
  data = json.dumps(message).encode()
  ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                array.array("i", fds))] if fds else []
  conn.sendmsg([len(data).to_bytes(4, "big") + data], ancillary)


def _receive(conn, with_fds=False):
  """(message, fds); (None, []) at end of stream."""
  fds = array.array("i")
  head, ancillary, _, _ = conn.recvmsg(4, socket.CMSG_SPACE(3 * fds.itemsize))
  for level, kind, data in ancillary:
    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
      fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
  while 0 < len(head) < 4:
    chunk = conn.recv(4 - len(head))
    if not chunk:
      break
    head += chunk
  if len(head) < 4:
    return None, list(fds)
  size, body = int.from_bytes(head, "big"), b""
  while len(body) < size:
    chunk = conn.recv(size - len(body))
    if not chunk:
      return None, list(fds)
    body += chunk
  assert with_fds or not fds
  return json.loads(body), list(fds)


# ---- the test side (conftest.py) ------------------------------------------

class _Zygotes:
  """This process's zygotes, started on demand: two per environment key,
  taken in turn, so that a run and its rerun, or the two processes of a
  two-process run, get different string hash seeds (random per process:
  every fork of one zygote shares its own), as fresh interpreters do."""

  def __init__(self):
    self.folder = None
    self.started = 0
    self.seen = set()
    self.running = {}  # (key, 0 or 1) -> (Popen, socket path); LRU order
    self.turn = {}  # key -> the slot to use next

  def socket_for(self, env):
    key = tuple(sorted((k, v) for k, v in env.items()
                       if k not in VOLATILE and not k.startswith(OURS)))
    if key not in self.seen:  # a one-off environment (a port, a process
      self.seen.add(key)      # id) would only cost a zygote's start
      return None
    slot = self.turn.get(key, 0)
    self.turn[key] = 1 - slot
    zygote = self.running.pop((key, slot), None)
    if zygote and zygote[0].poll() is not None:
      zygote = None
    if zygote is None:
      while len(self.running) >= _MAX_ZYGOTES:
        self.stop(next(iter(self.running)))  # the least recently used
      zygote = self._start(key)
    self.running[(key, slot)] = zygote  # now the most recently used
    return zygote[1]

  def _start(self, key):
    if self.folder is None:
      import tempfile  # pylint: disable=g-import-not-at-top
      self.folder = tempfile.mkdtemp(prefix="jaxunknowns_forks_", dir="/tmp")
    self.started += 1
    path = os.path.join(self.folder, f"z{self.started}.sock")
    with open(path + ".log", "wb") as log:  # what its imports print
      proc = subprocess.Popen(
          [sys.executable, os.path.abspath(__file__), "serve", path,
           str(os.getpid())], env=dict(key), stdin=subprocess.DEVNULL,
          stdout=subprocess.PIPE, stderr=log, cwd="/")
    for line in proc.stdout:  # after its imports
      if line == b"ready\n":
        break
    proc.stdout.close()
    if proc.poll() is not None:
      with open(path + ".log", encoding="utf-8", errors="replace") as log:
        raise RuntimeError(f"forkserver did not start: {log.read()[-3000:]}")
    return proc, path

  def stop(self, slot_key):
    proc, _ = self.running.pop(slot_key)
    proc.kill()
    proc.wait()

  def stop_all(self):
    for slot_key in list(self.running):
      self.stop(slot_key)
    if self.folder:
      import shutil  # pylint: disable=g-import-not-at-top
      shutil.rmtree(self.folder, ignore_errors=True)


ZYGOTES = _Zygotes()


def enabled() -> bool:
  return (sys.platform == "linux" and hasattr(os, "pidfd_open")
          and os.environ.get("JAXUNKNOWNS_TEST_FORKS", "1") != "0")


def _zygote_for(args, kwargs):
  """The socket of the zygote to fork a `python -m jaxunknowns.…` run
  from, or None: any other command, or one the fork cannot honour (an
  option of Popen's it would ignore), runs as given."""
  if (not isinstance(args, (list, tuple)) or len(args) < 3
      or args[0] != sys.executable or args[1] != "-m"
      or not str(args[2]).startswith("jaxunknowns.")
      or any(kwargs.get(name) for name in (
          "shell", "preexec_fn", "start_new_session", "executable",
          "pass_fds", "user", "group", "extra_groups"))
      or kwargs.get("umask", -1) != -1
      or kwargs.get("process_group", -1) != -1
      or not kwargs.get("close_fds", True)
      or not kwargs.get("restore_signals", True)
      or not enabled()):
    return None
  env = kwargs.get("env")
  return ZYGOTES.socket_for(os.environ if env is None else env)


def _launcher(path, token, args):
  return [sys.executable, "-S", os.path.abspath(__file__), "launch", path,
          token, *map(str, args[1:])]


def routed(args, kwargs):
  """The launcher's command line for a `python -m jaxunknowns.…` run, or
  None (run as given)."""
  path = _zygote_for(args, kwargs)
  return None if path is None else _launcher(path, uuid.uuid4().hex, args)


def pid_file(socket_path, token):
  """Where the launcher of one call writes the pid of its run."""
  return os.path.join(os.path.dirname(socket_path), f"{token}.pid")


class ForkedPopen(subprocess.Popen):
  """A Popen of the launcher whose signals reach the run itself: a SIGKILL
  kills the run, and wait() returns once the launcher has reported its
  death (a killed launcher would leave its run to die a moment later)."""

  def __init__(self, args, pid_path, **kwargs):
    self.pid_path = pid_path
    super().__init__(args, **kwargs)

  def run_pid(self, timeout=30.0):
    deadline = time.monotonic() + timeout
    while self.poll() is None and time.monotonic() < deadline:
      try:
        with open(self.pid_path) as f:
          return int(f.read())
      except (FileNotFoundError, ValueError):
        time.sleep(0.005)
    return None

  def send_signal(self, sig):
    pid = self.run_pid()
    if pid is None:
      super().send_signal(sig)
      return
    try:
      os.kill(pid, sig)
    except ProcessLookupError:
      pass


def popen(args, **kwargs):
  """subprocess.Popen, a fork for `python -m jaxunknowns.…` (see above).
  The Popen's pid is the launcher's: a test that reads the run's own pid
  (a lease's holder) starts a fresh interpreter with subprocess.Popen."""
  path = _zygote_for(args, kwargs)
  if path is None:
    return subprocess.Popen(args, **kwargs)
  token = uuid.uuid4().hex
  return ForkedPopen(_launcher(path, token, args), pid_file(path, token),
                     **kwargs)


# ---- the launcher -----------------------------------------------------------

def launch(path, token, argv):
  def crashed(what):  # the zygote is gone (stopped, evicted): a crash
    print(f"forkserver: {what}", file=sys.stderr, flush=True)
    os._exit(70)  # pylint: disable=protected-access

  conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
  try:
    conn.connect(path)
    _send(conn, {"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()},
          fds=(0, 1, 2))
    message, _ = _receive(conn)
  except OSError as e:
    crashed(f"no zygote at {path}: {e}")
  if message is None:
    crashed("the zygote closed the connection before the run started")
  pid = message["pid"]

  def forward(number, _):
    try:
      os.kill(pid, number)
    except ProcessLookupError:  # the run has just ended
      pass

  for number in FORWARDED:
    signal.signal(number, forward)
  path = pid_file(path, token)
  with open(path + ".tmp", "w") as f:
    f.write(str(pid))
  os.replace(path + ".tmp", path)
  try:
    message, _ = _receive(conn)
  except OSError:
    message = None
  os.remove(path)
  if message is None:
    crashed("the run's manager died before the run ended")
  status = message["status"]
  if os.WIFSIGNALED(status):
    import resource  # pylint: disable=g-import-not-at-top
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the run dumped its own
    number = os.WTERMSIG(status)
    if number not in (signal.SIGKILL, signal.SIGSTOP):  # (those cannot be caught)
      signal.signal(number, signal.SIG_DFL)
    os.kill(os.getpid(), number)
  os._exit(os.waitstatus_to_exitcode(status))  # pylint: disable=protected-access


# ---- the zygote ---------------------------------------------------------------

def serve(path, parent):
  import importlib  # pylint: disable=g-import-not-at-top
  import threading  # pylint: disable=g-import-not-at-top
  parent = int(parent)
  # A Ctrl-C at a terminal reaches the whole process group: it is the
  # runs' to handle (they restore Python's handler), not the zygote's.
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  del sys.path[0]  # this folder; the fork sets its own
  for name in PRELOAD:
    importlib.import_module(name)
  assert threading.active_count() == 1, threading.enumerate()
  sys.stderr.flush()
  with open(path + ".log", "rb") as log:
    printed = log.read()  # each run prints it, as a fresh import would
  server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
  server.bind(path)
  server.listen(64)
  server.settimeout(2.0)
  signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # managers reap themselves
  print("ready", flush=True)
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 1)  # nobody reads the pipe from here on
  os.close(devnull)
  while os.getppid() == parent:  # ends with the test process
    try:
      conn, _ = server.accept()
    except socket.timeout:
      continue
    conn.settimeout(None)
    if os.fork() == 0:
      server.close()
      _manage(conn, printed)
    conn.close()


def _manage(conn, printed):
  """The forked manager: forks the run, tells the launcher its pid, kills
  the run if the launcher dies, and reports its exit status."""
  import select  # pylint: disable=g-import-not-at-top
  signal.signal(signal.SIGCHLD, signal.SIG_DFL)
  pid = None
  try:
    request, fds = _receive(conn, with_fds=True)
    if request is None or len(fds) != 3:
      return
    pid = os.fork()
    if pid == 0:
      conn.close()
      _run(request, fds, printed)
    for fd in fds:
      os.close(fd)
    _send(conn, {"pid": pid})
    pidfd = os.pidfd_open(pid)
    readable, _, _ = select.select([conn, pidfd], [], [])
    if pidfd not in readable:  # the launcher is gone
      os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    pid = None
    try:
      _send(conn, {"status": status})
    except OSError:
      pass
  except BaseException:  # pylint: disable=broad-except
    if pid:  # no launcher to report to: the run must not outlive it
      os.kill(pid, signal.SIGKILL)
  finally:
    os._exit(0)  # pylint: disable=protected-access


def _run(request, fds, printed):
  """The fork: becomes `python -m module args…` in the caller's place."""
  import atexit  # pylint: disable=g-import-not-at-top
  import builtins  # pylint: disable=g-import-not-at-top
  import ctypes  # pylint: disable=g-import-not-at-top
  import runpy  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  import threading  # pylint: disable=g-import-not-at-top
  import traceback  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  for number in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP,
                 signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
    signal.signal(number, signal.SIG_DFL)
  signal.signal(signal.SIGINT, signal.default_int_handler)
  signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as Python's startup
  for target, fd in enumerate(fds):
    os.dup2(fd, target)
    os.close(fd)
  if printed:
    os.write(2, printed)
  os.chdir(request["cwd"])
  os.environ.clear()
  os.environ.update(request["env"])
  tempfile.tempdir = None
  np.random.seed()
  flag, module, *args = request["argv"]
  assert flag == "-m", request["argv"]
  sys.argv = ["-m", *args]
  sys.path.insert(0, request["cwd"])
  # A fresh __main__ (runpy runs the module in __main__'s namespace, which
  # is this file's: its names would hide a missing import).
  main = types.ModuleType("__main__")
  main.__builtins__ = builtins
  sys.modules["__main__"] = main
  code, interrupted = 0, False
  try:
    runpy._run_module_as_main(module, True)  # pylint: disable=protected-access
  except SystemExit as e:
    if e.code is None:
      code = 0
    elif isinstance(e.code, int):
      code = e.code
    else:
      print(e.code, file=sys.stderr)
      code = 1
  except KeyboardInterrupt:
    traceback.print_exc()
    interrupted = True
  except BaseException:  # pylint: disable=broad-except
    sys.excepthook(*sys.exc_info())
    code = 1
  # As an exiting interpreter: wait for threads, run atexit, flush; a step
  # that raises is reported and the next one still runs.
  for step in (threading._shutdown, atexit._run_exitfuncs,  # pylint: disable=protected-access
               sys.stdout.flush, sys.stderr.flush,
               lambda: ctypes.CDLL(None).fflush(None)):
    try:
      step()
    except BaseException:  # pylint: disable=broad-except
      try:
        traceback.print_exc()
        sys.stderr.flush()
      except BaseException:  # pylint: disable=broad-except
        pass
      code = code or 120
  if interrupted:  # as Python: killed by the SIGINT it did not handle
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
  os._exit(code & 0xFF)  # pylint: disable=protected-access


if __name__ == "__main__":
  if sys.argv[1] == "serve":
    serve(sys.argv[2], sys.argv[3])
  else:
    launch(sys.argv[2], sys.argv[3], sys.argv[4:])
