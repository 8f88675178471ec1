"""The one exception type for mistakes a user can fix, and the filesystem
errors that are such mistakes too.

Anything raised as `UserError` is printed by `main` as a single line (no
traceback) and exits with status 2. Raise it *before* anything is written to
the workdir, so that bad input never leaves a half-written run behind. A full
disk or a folder that cannot be written is found only while writing; `main`
turns that `OSError` into one line as well (`user_error`), and the files
written before it stay a run that the same command resumes.
"""

import errno
import os
import re
import sys
from typing import NoReturn, Optional, Sequence, Tuple

from absl import flags

from jaxunknowns import paths

# A multi-host run whose hosts see different workdirs (each its own local
# disk): orbax's collective checkpoints could never be finalized or resumed.
# launch/tpu_vm.py refuses such a workdir with the same words.
WORKDIR_NOT_SHARED = ("the workdir is not shared between hosts: use a gs:// "
                      "path or a shared filesystem")

# Writing the workdir failed for a reason outside the program.
WRITE_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "over quota",
                errno.EROFS: "read-only filesystem",
                errno.EACCES: "permission denied",
                errno.EPERM: "not permitted", errno.EFBIG: "file too large",
                errno.ENAMETOOLONG: "a path too long"}


class UserError(Exception):
  """A bad config value, unknown name or missing file, with what to do."""


def write_error(e: BaseException, workdir: str) -> Optional[OSError]:
  """The OSError of a full or unwritable workdir behind `e` (libraries such
  as orbax re-raise it wrapped), or None."""
  inside = lambda path: path is None or paths.absolute(path).startswith(
      paths.absolute(workdir))
  while e is not None:
    if isinstance(e, OSError) and e.errno in WRITE_ERRNOS and inside(
        e.filename):
      return e
    # Tensorstore (orbax's writer) raises a ValueError naming the errno.
    code = re.search(r"\[os_error_code='(\d+)'\]", str(e))
    if code and int(code.group(1)) in WRITE_ERRNOS:
      number = int(code.group(1))
      return OSError(number, os.strerror(number))
    e = e.__cause__ or e.__context__
  return None


def user_error(e: BaseException, workdir: str) -> Optional[UserError]:
  """`e` as the UserError main prints, or None if it is a bug (a traceback)."""
  if isinstance(e, UserError):
    return e
  store = missing_store_client(e)
  if store is not None:
    return store
  if out_of_memory(e):
    return UserError(
        f"out of memory ({first_line(e)}): lower config.seeds, "
        "train.batch_size or the model's size, or free the device, then "
        "rerun (a changed config where checkpoints were saved needs "
        "--overwrite or another --workdir)")
  cause = write_error(e, workdir)
  if cause is None:
    return None
  return UserError(
      f"could not write {cause.filename or workdir}: "
      f"{WRITE_ERRNOS[cause.errno]} ({cause.strerror}); make room or fix the "
      f"permissions, then rerun the same command: it resumes from the last "
      f"checkpoint in {workdir}")


# The client packages fsspec needs for a gs:// or s3:// workdir (etils.epath
# goes through it where TensorFlow is not installed): setup.py's [tpu] and
# [cuda] extras install gcsfs.
STORE_CLIENTS = ("gcsfs", "s3fs")


def missing_store_client(e: BaseException) -> Optional[UserError]:
  """fsspec's ImportError at the first file of a gs:// or s3:// path
  touched ('Please install gcsfs to access Google Storage'), as one line
  saying what to install; None for any other error."""
  package = next((p for p in STORE_CLIENTS if p in str(e)), None)
  if not isinstance(e, ImportError) or package is None:
    return None
  return UserError(f"{first_line(e)}: pip install {package}" + (
      " (or install jaxunknowns with its [tpu] or [cuda] extra)"
      if package == "gcsfs" else ""))


def out_of_memory(e: BaseException) -> bool:
  """XLA's RESOURCE_EXHAUSTED (a device or host allocation it could not
  make) or Python's MemoryError, anywhere in `e`'s chain."""
  while e is not None:
    if isinstance(e, MemoryError) or (
        type(e).__name__ in ("XlaRuntimeError", "JaxRuntimeError")
        and "RESOURCE_EXHAUSTED" in str(e)):
      return True
    e = e.__cause__ or e.__context__
  return False


def first_line(e: BaseException) -> str:
  lines = str(e).strip().splitlines()
  return (lines[0] if lines else type(e).__name__)[:200]


def command_line_error(e: Exception, argv: Sequence[str]) -> UserError:
  """What absl's parser raised (for a missing config file, an unknown
  variant, a misspelt field, a value the field's parser refuses) as one
  line naming the flag."""
  lines = [l.strip() for l in str(e).splitlines() if l.strip()]
  under_a_value = re.search(r"\.(\w+) does not exist.*Attempting to lookup: "
                            r"([\w.]+)", str(e))
  if under_a_value:  # --config.train.steps.x: a field under a number
    name, path = under_a_value.group(1), under_a_value.group(2).split(".")
    value = path[:path.index(name)] if name in path else path[:-1]
    flag = _config_flag(argv, lambda p: p == path) or ".".join(path)
    lines = [f"{flag}: {'.'.join(value)} is a value, not a group of fields "
             "(see the config file and jaxunknowns/config_defaults.py)"]
  elif isinstance(e, (KeyError, AttributeError)):
    key, close = _missing_field(e)
    # The flag naming the key as a whole field, not a sibling holding it.
    flag = _config_flag(argv, lambda p: key in p) or key
    lines = [f"{flag}: no such config field {key!r} ("
             + f"did you mean {close!r}? " * bool(close) + "the config is "
             "locked: see the config file and jaxunknowns/config_defaults.py)"]
  elif not isinstance(e, flags.Error):
    lines = [f"bad command line ({type(e).__name__})"] + lines
  last = lines[-1] if lines else str(e)
  for prefix in ("ValueError: ", "KeyError: ", "AttributeError: "):
    last = last[len(prefix):] if last.startswith(prefix) else last
  first = lines[0] if lines else ""
  detail = last if last != first else ""
  return UserError(first.rstrip(":") + (f": {detail}" if detail else ""))


def _config_flag(argv: Sequence[str], matches) -> Optional[str]:
  """The first --config.a.b=... of `argv` whose field path (['a', 'b'])
  `matches`."""
  for arg in argv:
    if arg.startswith("--config."):
      if matches(arg.split("=")[0][len("--config."):].split(".")):
        return arg
  return None


def _missing_field(e: BaseException) -> Tuple[str, str]:
  """The field a locked ConfigDict refused, and the one it suggests ('' if
  none). Its KeyError (inside an AttributeError for a nested field) holds
  the key quoted, then 'Did you mean "steps" ...' on a line of its own:
  str() of it showed the quotes and the newline escaped."""
  while e.args and isinstance(e.args[0], BaseException):
    e = e.args[0]
  text = str(e.args[0]) if e.args else str(e)
  first = text.splitlines()[0] if text.strip() else ""
  named = (re.search(r'Key "([^"]+)"', first)
           or re.search(r"^'([^']+)'$", first.strip()))
  close = re.search(r'Did you mean "([^"]+)"', text)
  return (named.group(1) if named else first.strip("\"' "),
          close.group(1) if close else "")


def parse_flags(argv: Sequence[str]):
  """absl's parser as an app's `flags_parser`: a missing required flag or an
  unknown one is one line and exit 2, not absl's FATAL line, usage hint and
  exit 1."""
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except
    exit_with(command_line_error(e, argv))


def refuse_arguments(argv: Sequence[str]):
  """A command's positional arguments (argv[1:]) are a mistake: every
  option is a --flag. absl's app.UsageError would exit 1 with no `error:`
  line; this is the user's to fix, so it ends as every bad input does."""
  if len(argv) > 1:
    exit_with(UserError(
        f"unexpected arguments: {' '.join(argv[1:])} (every option is "
        f"--name=value, e.g. --config.seeds=2; see --help)"))


def exit_with(error: UserError) -> NoReturn:
  """How `main` ends on a mistake the user can fix: one line, status 2.
  The exit handlers are skipped: after a failed write they would only fail
  again (TensorBoard's last flush to a full disk), with tracebacks."""
  print(f"error: {error}", file=sys.stderr, flush=True)
  os._exit(2)  # pylint: disable=protected-access
