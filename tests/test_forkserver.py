"""The tests' fork server (forkserver.py) against a fresh interpreter: a
forked CLI run must end, print and be killed as `python -m` does, or the
CLI tests routed through it would test something else."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import forkserver

ROOT = Path(__file__).resolve().parents[1]
# A key of this module's own, so its zygotes are its own.
ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
           FORKSERVER_TEST="1")

pytestmark = pytest.mark.skipif(not forkserver.enabled(),
                                reason="the fork server is off")


def main(*flags):
  return [sys.executable, "-m", "jaxunknowns.main", *flags]


@pytest.fixture(scope="module")
def routed():
  """Calls with ENV are forked from here on (a first call runs fresh)."""
  assert forkserver.routed(main(), {"env": ENV}) is None  # seen once
  yield lambda args: forkserver.routed(args, {"env": ENV})


def test_a_forked_run_ends_and_prints_as_a_fresh_one(routed, tmp_path):
  for flags in (["--config=configs/train.py:mnist1d_bogus"],
                ["--config=configs/train.py:mnist1d_mlp,runlocal",
                 "--config.seeds=abc"],
                ["--config=configs/train.py:mnist1d_mlp,runlocal",
                 "--config.train.steps=0"]):
    command = main(*flags, f"--workdir={tmp_path / 'w'}")
    fresh = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True,
                           text=True, timeout=300)
    launcher = routed(command)
    assert launcher is not None and launcher[3] == "launch"
    forked = subprocess.run(launcher, cwd=ROOT, env=ENV, capture_output=True,
                            text=True, timeout=300)
    assert fresh.returncode == 2, fresh.stderr[-2000:]
    # The same lines (log lines carry their time: compared from the last).
    lines = [p.stderr.strip().splitlines() for p in (forked, fresh)]
    assert (forked.returncode, forked.stdout, len(lines[0]), lines[0][-1]) == (
        fresh.returncode, fresh.stdout, len(lines[1]), lines[1][-1])
    assert not (tmp_path / "w").exists()


def test_one_environment_takes_two_zygotes_in_turn(routed):
  """Two zygotes per environment: consecutive runs (a run and its rerun,
  two processes of one run) get different string hash seeds."""
  sockets = [routed(main())[4] for _ in range(4)]
  assert sockets[0] != sockets[1] and sockets[:2] == sockets[2:]


def test_a_killed_forked_run_is_dead_when_wait_returns(routed, tmp_path):
  del routed  # (the fixture makes ENV's runs forks)
  long = main("--config=configs/train.py:mnist1d_mlp,runlocal",
              "--config.train.steps=100000", f"--workdir={tmp_path / 'w'}")
  proc = forkserver.popen(long, cwd=ROOT, env=ENV, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  assert isinstance(proc, forkserver.ForkedPopen)
  for line in proc.stderr:  # until it trains
    if "steps/s" in line:
      break
  run = proc.run_pid()
  assert run is not None and run != proc.pid
  proc.kill()
  assert proc.wait(timeout=60) == -signal.SIGKILL
  assert not os.path.exists(f"/proc/{run}")  # gone, not a zombie either
  proc.stderr.close()
  proc.stdout.close()


def test_a_launcher_killed_outright_takes_its_run_with_it(routed, tmp_path):
  """A subprocess.run timeout kills the launcher; its run must not train
  on into the workdir the test reuses."""
  launcher = routed(main("--config=configs/train.py:mnist1d_mlp,runlocal",
                         "--config.train.steps=100000",
                         f"--workdir={tmp_path / 'w'}"))
  with pytest.raises(subprocess.TimeoutExpired):
    subprocess.run(launcher, cwd=ROOT, env=ENV, capture_output=True,
                   timeout=5)
  pids = [int(Path(f).read_text()) for f in Path(launcher[4]).parent.glob(
      f"{launcher[5]}.pid")]
  assert len(pids) == 1  # left behind by the killed launcher
  deadline = time.monotonic() + 10
  while os.path.exists(f"/proc/{pids[0]}") and time.monotonic() < deadline:
    time.sleep(0.05)
  assert not os.path.exists(f"/proc/{pids[0]}")
