"""What launch/tpu_vm.py and launch/gpu.py share: arguments, the remote
commands (install with uv, run, paths) and the step runner.

Standard library only, so the scripts run on a laptop without JAX installed.
Every step is a command line, printed before it runs (and only printed with
--dry_run), so a user can always see, copy and rerun exactly what happened.
"""

import argparse
import dataclasses
import os
import shlex
import subprocess
import sys
import tarfile
from typing import Callable, List, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# python_requires is >= 3.11 while TPU VM images ship 3.10: uv fetches one.
UV_URL = "https://astral.sh/uv/install.sh"


# The words of jaxunknowns/errors.py's WORKDIR_NOT_SHARED (this module imports
# nothing of the project; tests/test_launch.py checks they stay equal).
WORKDIR_NOT_SHARED = ("the workdir is not shared between hosts: use a gs:// "
                      "path or a shared filesystem")


class LaunchError(Exception):
  """A mistake the user can fix, or a failed step: one line, exit non-zero."""


class Parser(argparse.ArgumentParser):
  """argparse whose errors are one line (no usage block), exit status 2."""

  def error(self, message):
    raise LaunchError(message)


@dataclasses.dataclass
class Step:
  name: str
  argv: List[str]                            # What runs (or is printed).
  action: Optional[Callable[[], None]] = None  # In-process instead of argv.

  def __str__(self):
    return ("# " if self.action else "") + shlex.join(self.argv)


def add_run_arguments(p: Parser):
  p.add_argument("--config", help="Config spec, e.g. configs/train.py:mnist1d_cnn")
  p.add_argument("--workdir", help="Run folder: gs://BUCKET/PATH (nothing to "
                 "fetch), or a folder on the remote machine, relative to "
                 "--remote_dir unless absolute, fetched back")
  p.add_argument("--sweep", help="Run this sweep of the config through "
                 "jaxunknowns.sweep instead of a single run")
  p.add_argument("--remote_dir", default="jaxunknowns",
                 help="Project folder on the remote machine, relative to its "
                 "home unless absolute (default: jaxunknowns)")
  p.add_argument("--fetch_to", default="workdirs",
                 help="Local folder the workdir is fetched into")
  p.add_argument("--python", default="3.11",
                 help="Python version of the remote virtualenv (uv)")
  p.add_argument("--with_ray", action="store_true",
                 help="Install the [ray] extra too (Ray sweeps across "
                 "machines, launch/README.md)")
  p.add_argument("--dry_run", action="store_true",
                 help="Print the command lines; run nothing")


def parse(p: Parser, argv: Sequence[str]):
  """Known flags, plus every `--config.FIELD=VALUE`, forwarded to the run."""
  args, rest = p.parse_known_args(argv)
  bad = [a for a in rest if not (a.startswith("--config.") and "=" in a)]
  if bad:
    raise LaunchError(f"unrecognized arguments: {' '.join(bad)} (config "
                      f"overrides are --config.FIELD=VALUE)")
  args.overrides = list(rest)
  args.remote_dir = home_relative(args.remote_dir)
  return args


def parse_steps(text: str, valid: Sequence[str]) -> List[str]:
  steps = [s for s in text.split(",") if s]
  unknown = [s for s in steps if s not in valid]
  if unknown or not steps:
    raise LaunchError(f"unknown step {(unknown or [text])[0]!r} in --steps; "
                      f"valid: {','.join(valid)}")
  return [s for s in valid if s in steps]  # Always in the order that works.


def require(args, needed: Sequence[str]):
  """One error naming every missing argument the chosen steps need."""
  missing = [f"--{n}" for n in dict.fromkeys(needed) if not getattr(args, n)]
  if missing:
    raise LaunchError(f"missing {', '.join(missing)} (needed by --steps="
                      f"{','.join(args.steps)}; see launch/README.md)")


def home_relative(path: str) -> str:
  """'~/x' -> 'x': ssh, scp and rsync resolve relative paths from the remote
  home, and a quoted '~' would not expand."""
  if path in ("~", "~/"):
    return "."
  return path[2:] if path.startswith("~/") else path


def on_object_store(workdir: str) -> bool:
  """gs://... (or s3://...): every worker writes to it, nothing to fetch."""
  return "://" in workdir


def check_workdir(args):
  """The run cds into --remote_dir, so '~' would mean two different things."""
  if args.workdir and on_object_store(args.workdir):
    return
  if args.workdir and args.workdir.startswith("~"):
    raise LaunchError(f"--workdir={args.workdir}: give a path relative to "
                      f"--remote_dir ({args.remote_dir}) or an absolute one")


def in_workdirs(workdir: str) -> bool:
  """A relative workdir under workdirs/, the folder .gitignore keeps out of
  the project's files (so a sync never sends or deletes it)."""
  parts = os.path.normpath(workdir).split(os.sep)
  return len(parts) > 1 and parts[0] == "workdirs"


def fetch_steps(args, copy: Sequence[str]) -> List[Step]:
  """mkdir FETCH_TO, then `copy`; for a gs:// workdir only a line saying
  where the results are."""
  if on_object_store(args.workdir):
    return [Step("fetch", f"nothing to fetch: the results are in "
                          f"{args.workdir}".split(), action=lambda: None)]
  return [Step("fetch", ["mkdir", "-p", args.fetch_to]),
          Step("fetch", list(copy))]


def remote_workdir(args) -> str:
  """The workdir as seen from the remote home (scp, rsync)."""
  w = args.workdir.rstrip("/")
  return w if w.startswith("/") else f"{args.remote_dir}/{w}"


def install_command(args, extra: str) -> str:
  """Shell command that installs the project with `.[extra]` (and `ray`
  with --with_ray) in REMOTE_DIR/.venv (uv installs itself and the Python
  version if needed)."""
  d = shlex.quote(args.remote_dir)
  extra += ",ray" * bool(getattr(args, "with_ray", False))
  return (f"cd {d} && export PATH=\"$HOME/.local/bin:$PATH\" && "
          f"(command -v uv >/dev/null || curl -LsSf {UV_URL} | sh) && "
          f"uv venv --allow-existing --python {shlex.quote(args.python)} .venv && "
          f"uv pip install --python .venv/bin/python -e {shlex.quote(f'.[{extra}]')}")


def run_command(args) -> str:
  """Shell command that runs the config (or its sweep) in REMOTE_DIR."""
  module = "jaxunknowns.sweep" if args.sweep else "jaxunknowns.main"
  argv = [".venv/bin/python", "-m", module, f"--config={args.config}",
          f"--workdir={args.workdir}"]
  if args.sweep:
    argv.append(f"--sweep={args.sweep}")
  argv += args.overrides
  return f"cd {shlex.quote(args.remote_dir)} && {shlex.join(argv)}"


def git_files(repo: str) -> List[str]:
  """Tracked and untracked-but-not-ignored files (what a commit would hold
  plus new files; no workdirs, venvs or caches)."""
  out = subprocess.run(
      ["git", "-C", repo, "ls-files", "-z", "--cached", "--others",
       "--exclude-standard"], check=True, capture_output=True).stdout
  names = [n for n in out.decode().split("\0") if n]
  return [n for n in names if os.path.isfile(os.path.join(repo, n))]


def pack(repo: str, tarball: str):
  """The project as a .tar.gz (in-process: portable, unlike GNU tar flags)."""
  try:
    files = git_files(repo)
  except (OSError, subprocess.CalledProcessError) as e:
    raise LaunchError(f"could not list the files of {repo} with git: {e}") from e
  tmp = tarball + ".tmp"
  with tarfile.open(tmp, "w:gz") as tar:
    for name in files:
      tar.add(os.path.join(repo, name), arcname=name)
  os.replace(tmp, tarball)


def execute(steps: Sequence[Step], dry_run: bool, on_failure=lambda s: ""):
  """Prints each step, then runs it; stops at the first failure."""
  for step in steps:
    print(step if dry_run else f"+ {step}", flush=True)
    if dry_run:
      continue
    if step.action:
      step.action()
      continue
    try:
      rc = subprocess.run(step.argv, check=False).returncode
    except FileNotFoundError as e:
      raise LaunchError(f"step {step.name}: {step.argv[0]} not found "
                        f"(is it installed and on PATH?)") from e
    if rc != 0:
      hint = on_failure(step)
      raise LaunchError(f"step {step.name} failed (exit {rc})"
                        + (f"; {hint}" if hint else ""))


def main_wrapper(main: Callable[[Sequence[str]], None]):
  try:
    main(sys.argv[1:])
  except LaunchError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except KeyboardInterrupt:
    print("error: interrupted", file=sys.stderr)
    sys.exit(130)
