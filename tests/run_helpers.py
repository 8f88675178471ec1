"""Helpers shared by the end-to-end tests (test_cli.py, test_imp.py)."""

import contextlib
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

# XLA options of the test suite alone (conftest.py appends them, and says
# why): users' runs compile with XLA's defaults.
SUITE_XLA_FLAGS = ("--xla_backend_optimization_level=0",
                   "--xla_cpu_use_fusion_emitters=false")


def _option(flag: str) -> str:
  return flag.split("=")[0] + "="


def _known_to_xla(flags) -> bool:
  """Whether this jaxlib's XLA takes `flags`: XLA ends a process at an
  option it does not know (a probe in a subprocess, ~2 s)."""
  probe = subprocess.run(
      [sys.executable, "-c", "import jax; jax.devices('cpu')"],
      env=dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=" ".join(flags)),
      capture_output=True, check=False)
  return probe.returncode == 0


def with_suite_xla_flags(flags: str) -> str:
  """`flags` (XLA_FLAGS) plus each suite option it does not name already
  and this XLA takes: one a newer jaxlib dropped is left out rather than
  ending every test's process."""
  missing = [f for f in SUITE_XLA_FLAGS if _option(f) not in flags]
  if missing and not _known_to_xla(missing):
    missing = [f for f in missing if _known_to_xla([f])]
  return " ".join(filter(None, (flags, *missing)))


def users_xla_flags() -> str:
  """XLA_FLAGS without the suite's options: XLA's defaults, as users run,
  for a test about what users get (a subprocess, since XLA reads its flags
  once per process)."""
  names = tuple(_option(f) for f in SUITE_XLA_FLAGS)
  return " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                  if not f.startswith(names))


def run_in_process(config, workdir, overwrite=False):
  from jaxunknowns import main  # pylint: disable=g-import-not-at-top
  return main.run(config, str(workdir), overwrite)


def read_json(path):
  with open(path) as f:
    return json.load(f)


def snapshot(path):
  """Every entry under `path` with its mtime and (files) content digest."""
  path = Path(path)
  if not path.exists():
    return None
  out = {}
  for p in sorted(path.rglob("*")):
    st = p.stat()
    digest = (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file()
              else "dir")
    out[str(p.relative_to(path))] = (st.st_mtime_ns, digest)
  return out


ROOT = Path(__file__).resolve().parents[1]


def assert_user_error_before_writing(config, workdir, needles=()):
  """Running `config` raises a one-line UserError naming `needles`, and
  nothing is written to `workdir`."""
  import pytest  # pylint: disable=g-import-not-at-top
  from jaxunknowns.errors import UserError  # pylint: disable=g-import-not-at-top
  with pytest.raises(UserError) as info:
    run_in_process(config, workdir)
  message = str(info.value)
  assert message and "\n" not in message, message
  for needle in needles:
    assert needle in message, (needle, message)
  assert not Path(workdir).exists()


def assert_cli_one_line_error(args, workdir, needle, env=None):
  """`python -m jaxunknowns.main ARGS --workdir=W` exits 2 with exactly one
  `error:` line naming `needle`, no traceback, and writes nothing."""
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  env = env or dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
  proc = subprocess.run(
      [sys.executable, "-m", "jaxunknowns.main", *args, f"--workdir={workdir}"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert_one_line_error(proc, needle)
  assert not Path(workdir).exists()


def assert_one_line_error(proc, *needles):
  """A finished process exited 2 with exactly one `error: ...` line naming
  every needle, and no traceback; returns that line."""
  assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1, proc.stderr[-3000:]
  for needle in needles:
    assert needle in errors[0], (needle, errors[0])
  assert "already finished" not in (proc.stdout or "")
  return errors[0]


def assert_report_rebuilds(workdir):
  """report.md has the shape of every report (report.PAGE_HEADINGS, in
  order), every figure it shows exists, and deleting report.md and the
  figures then running the report command gives back the same report.md,
  byte for byte, with the same figures."""
  import re  # pylint: disable=g-import-not-at-top
  from jaxunknowns import report, report_cli  # pylint: disable=g-import-not-at-top
  workdir = Path(workdir)
  text = (workdir / "report.md").read_text()
  positions = [text.find("\n" + h) for h in report.PAGE_HEADINGS]
  assert all(p >= 0 for p in positions), (
      [h for h, p in zip(report.PAGE_HEADINGS, positions) if p < 0], text[:2000])
  assert positions == sorted(positions), text[:2000]
  figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
  assert figures, "a report shows at least one figure"
  for name in figures:
    assert (workdir / name).is_file(), name
  for name in figures:
    (workdir / name).unlink()
  (workdir / "report.md").unlink()
  report_cli.rebuild_run(str(workdir))
  assert (workdir / "report.md").read_text() == text
  for name in figures:
    assert (workdir / name).is_file(), name


@contextlib.contextmanager
def lease_held_elsewhere(workdir, lease_seconds: float):
  """A process of its own, as on another host (no flock shared with this
  one), holding the lease of `workdir` (leases.py), renewed every
  `lease_seconds`; yields its Popen once it holds it, kills it after."""
  script = ("import time\n"
            "from jaxunknowns import leases\n"
            f"leases.LEASE_SECONDS = {lease_seconds}\n"
            f"leases.Lease({str(workdir)!r}).acquire()\n"
            "print('held', flush=True); time.sleep(300)\n")
  holder = subprocess.Popen(
      [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
      text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  try:
    assert holder.stdout.readline().strip() == "held"
    yield holder
  finally:
    holder.kill()
    holder.wait()
