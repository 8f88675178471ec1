"""Scale-out: runs spread over a ('seed', 'data') mesh, and multi-process runs.

Each case runs in a subprocess, because the device count (fake CPU devices)
and jax.distributed are fixed once per process.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from pathlib import Path

import forkserver  # pylint: disable=g-bad-import-order
from run_helpers import lease_held_elsewhere, read_json, snapshot

ROOT = Path(__file__).resolve().parents[1]

SEED_SHARDING_SCRIPT = textwrap.dedent("""
    import jax, numpy as np, sys
    sys.path.insert(0, {tests!r})
    from test_trainer import tiny_config, make_trainer
    from jaxunknowns.metrics import MetricWriter
    from jaxunknowns.trainer import make_mesh
    from jax.sharding import PartitionSpec as P
    assert jax.device_count() == 8, jax.devices()
    seeds = list(range(8))
    out = {{}}
    for name, devices, seed_devices in (("one", 1, 1), ("seed8", 8, 8),
                                        ("seed4x2", 8, 4)):
      config = tiny_config(**{{"train.steps": 20}})
      trainer = make_trainer(config, mesh=make_mesh(jax.devices()[:devices],
                                                    seed_devices=seed_devices))
      res = trainer.fit(trainer.init_state(seeds), steps=20, data_seeds=seeds,
                        writer=MetricWriter({tmp!r} + name, tensorboard=False),
                        run_labels=[{{"seed": s}} for s in seeds])
      if seed_devices > 1:
        leaf = jax.tree.leaves(res.state["params"])[0]
        assert leaf.sharding.spec == P("seed"), leaf.sharding
        # Each device holds 8 / seed_devices runs, not all 8.
        assert leaf.addressable_shards[0].data.shape[0] == 8 // seed_devices
      assert trainer.trace_count == 1, trainer.trace_count
      out[name] = (jax.device_get(res.state["params"]), res.evals["test"])
    for name in ("seed8", "seed4x2"):
      for a, b in zip(jax.tree.leaves(out["one"][0]), jax.tree.leaves(out[name][0])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
      np.testing.assert_allclose(out["one"][1]["accuracy"], out[name][1]["accuracy"])
    print("SEED-SHARDING-OK")
""")


# The temporary folder of every process these tests start: a process killed
# outright (SIGKILL, as some tests here do) leaves its scratch folder
# (workdir.Workdir), and it is left here, not in the machine's own /tmp.
_SCRATCH = {}


@pytest.fixture(autouse=True, scope="module")
def _scratch_folder(tmp_path_factory):
  _SCRATCH["path"] = str(tmp_path_factory.mktemp("process_tmp"))
  yield
  _SCRATCH.clear()


def _env(devices):
  env = dict(os.environ, JAX_PLATFORMS="cpu", TMPDIR=_SCRATCH["path"],
             XLA_FLAGS=os.environ.get("XLA_FLAGS", "")
             + f" --xla_force_host_platform_device_count={devices}")
  env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
  return env


def test_seed_sharded_runs_equal_unsharded(tmp_path):
  """8 seeds spread over 8 devices (and over 4 x 2-way data parallel) train
  exactly as the 8 seeds on one device, with one trace each."""
  script = SEED_SHARDING_SCRIPT.format(tests=str(ROOT / "tests"),
                                       tmp=str(tmp_path / "w"))
  proc = subprocess.run([sys.executable, "-c", script], env=_env(8), cwd=ROOT,
                        capture_output=True, text=True, timeout=900)
  assert "SEED-SHARDING-OK" in proc.stdout, proc.stderr[-3000:]


def test_auto_seed_devices():
  import ml_collections  # pylint: disable=g-import-not-at-top
  from jaxunknowns.errors import UserError  # pylint: disable=g-import-not-at-top
  from jaxunknowns.trainer import seed_devices_for  # pylint: disable=g-import-not-at-top
  c = lambda seeds, k=0, batch=64: ml_collections.ConfigDict(
      {"seeds": seeds, "train": {"seed_devices": k, "batch_size": batch}})
  assert seed_devices_for(c(8), 8) == 8
  assert seed_devices_for(c(12), 8) == 4
  assert seed_devices_for(c(4), 8) == 1   # fewer seeds than devices: data parallel
  assert seed_devices_for(c(5), 1) == 1
  assert seed_devices_for(c(1, 2), 8) == 2
  with pytest.raises(UserError):
    seed_devices_for(c(1, -1), 8)
  # The papers' batches on 8 devices: 100 and 60 split over 4 (2 seed
  # devices), 2 over 2, 7 over none; 12 seeds of 100 keep gcd 4 (100 / 2).
  for seeds, batch, want in ((3, 100, 2), (9, 100, 2), (3, 60, 2), (3, 2, 4),
                             (3, 7, 8), (12, 100, 4), (3, 64, 1)):
    assert seed_devices_for(c(seeds, batch=batch), 8) == want, (seeds, batch)
  # Brute force: the least seed split from the unforced one up that divides
  # the devices and leaves a data axis the batch divides by.
  for n in (1, 2, 4, 6, 8):
    for seeds in range(1, 13):
      for batch in range(1, 61):
        got = seed_devices_for(c(seeds, batch=batch), n)
        start = np.gcd(seeds, n) if seeds >= n else 1
        fits = [s for s in range(1, n + 1)
                if n % s == 0 and batch % (n // s) == 0 and s >= start]
        assert got == min(fits), (n, seeds, batch, got)


def test_default_batches_run_on_eight_devices_with_few_seeds(tmp_path):
  """configs/train.py's batch 100 with 3 seeds on 8 devices was refused
  ('must be divisible by the 8 devices'): 8 of 21 configs' default commands
  stopped so on an 8-chip host. Now 2 seed devices × 4: the same numbers as
  on one device, up to float32 rounding of the split batch."""
  cmd = lambda w: [sys.executable, "-m", "jaxunknowns.main",
                   "--config=configs/train.py:runlocal", "--config.seeds=3",
                   f"--workdir={w}"]
  runs = {}
  for devices in (1, 8):
    proc = subprocess.run(cmd(tmp_path / str(devices)), env=_env(devices),
                          cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs[devices] = read_json(tmp_path / str(devices) / "summary.json")
  assert runs[8]["machine"]["num_devices"] == 8
  for split in ("train", "test"):
    np.testing.assert_allclose(
        runs[8]["final"][split]["accuracy"]["per_seed"],
        runs[1]["final"][split]["accuracy"]["per_seed"], atol=0.02)


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


TINY = ["--config=configs/train.py:mnist1d_mlp,runlocal", "--config.seeds=2",
        "--config.train.seed_devices=1"]


MAIN = ("-m", "jaxunknowns.main")


def _main(workdir, *extra, config=TINY, program=MAIN):
  return [sys.executable, *program, *config, f"--workdir={workdir}", *extra]


def _two_processes(workdir, extra_for=None, env=None, timeout=900,
                   config=TINY, program=MAIN, cwds=(ROOT, ROOT)):
  """`workdir`: both processes' workdir, or a list of one per process;
  `config`: the config flags of both (by default the tiny train run);
  `program`: python's arguments before them (main's CLI); `cwds`: the
  folder each process starts in."""
  port = _free_port()
  workdirs = workdir if isinstance(workdir, list) else [workdir] * 2
  return _both([
      _main(workdirs[pid], f"--coordinator_address=localhost:{port}",
            "--num_processes=2", f"--process_id={pid}",
            *(extra_for or {}).get(pid, []), config=config, program=program)
      for pid in range(2)], {**_env(1), **(env or {})}, timeout, cwds)


def _both(commands, env, timeout, cwds=(ROOT, ROOT)):
  """Starts the two processes' commands at once; [(rc, stdout, stderr)].
  `env`: both processes' environment, or a list of one per process."""
  envs = env if isinstance(env, list) else [env] * len(commands)
  procs = [forkserver.popen(command, env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
           for command, env, cwd in zip(commands, envs, cwds)]
  outs = []
  for p in procs:
    try:
      out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      raise
    outs.append((p.returncode, out, err))
  return outs


def test_two_processes_give_the_summary_of_one(tmp_path):
  """Two processes on localhost (one CPU device each, gloo collectives),
  the batch split between them, produce one workdir whose summary.json
  equals that of one process driving two devices."""
  one = subprocess.run(_main(tmp_path / "one"), env=_env(2), cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
  assert one.returncode == 0, one.stderr[-3000:]
  outs = _two_processes(tmp_path / "two")
  for rc, _, err in outs:
    assert rc == 0, err[-3000:]
    # Each process names the shared summary, not process 1's scratch copy.
    assert f"summary in {tmp_path / 'two' / 'summary.json'}" in err, err[-3000:]
  a = read_json(tmp_path / "one" / "summary.json")
  b = read_json(tmp_path / "two" / "summary.json")
  assert b["machine"]["num_processes"] == 2 and a["machine"]["num_processes"] == 1
  for split in ("train", "test"):
    for metric in ("accuracy", "loss"):
      np.testing.assert_allclose(b["final"][split][metric]["per_seed"],
                                 a["final"][split][metric]["per_seed"],
                                 rtol=1e-5, atol=1e-6)
  # Only process 0 wrote the run's files; both wrote the checkpoints.
  names = set(os.listdir(tmp_path / "two"))
  assert {"summary.json", "config.json", "metrics.jsonl", "report.md",
          "checkpoints"} <= names
  rows = [json.loads(l) for l in open(tmp_path / "two" / "metrics.jsonl")]
  rows_one = [json.loads(l) for l in open(tmp_path / "one" / "metrics.jsonl")]
  assert len(rows) == len(rows_one)  # not written twice


def test_processes_with_different_configs_all_stop(tmp_path):
  outs = _two_processes(tmp_path / "w",
                        extra_for={1: ["--config.optim.lr=0.5"]})
  for rc, _, err in outs:
    assert rc == 2, err[-2000:]
    assert "different configs" in err.strip().splitlines()[-1]
  assert not (tmp_path / "w").exists()


def test_overwrite_on_one_process_only_deletes_nothing(tmp_path):
  """--overwrite given to process 0 alone once deleted the old run, then
  hung when process 1 refused the new config: the processes agree on it
  first, like the config, and the old run stays."""
  done = subprocess.run(_main(tmp_path / "w"), env=_env(2), cwd=ROOT,
                        capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  before = snapshot(tmp_path / "w")
  outs = _two_processes(tmp_path / "w", extra_for={
      0: ["--config.optim.lr=0.05", "--overwrite"],
      1: ["--config.optim.lr=0.05"]}, timeout=240)
  for rc, _, err in outs:
    assert rc == 2, err[-2000:]
    assert "different --overwrite" in err.strip().splitlines()[-1], err[-2000:]
  assert snapshot(tmp_path / "w") == before


def test_the_environment_form_of_the_flags_joins_the_processes(tmp_path):
  """JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID instead of
  the flags (JAX reads only the address: both processes once stopped with
  'found no cluster'). Joined, they compare configs, and stop together."""
  port = _free_port()
  procs = [forkserver.popen(
      _main(tmp_path / "w", *(["--config.optim.lr=0.5"] * pid)),
      env={**_env(1), "JAX_COORDINATOR_ADDRESS": f"localhost:{port}",
           "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(pid)},
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for pid in range(2)]
  for p in procs:
    _, err = p.communicate(timeout=240)
    assert p.returncode == 2, err[-2000:]
    assert "different configs" in err.strip().splitlines()[-1], err[-2000:]
  assert not (tmp_path / "w").exists()


def test_a_process_left_alone_stops_in_one_line(tmp_path):
  """Process 1 never started: process 0 waited 5 min in silence, then
  aborted with a C++ stack saying 'another task died'."""
  start = time.monotonic()
  proc = subprocess.run(
      _main(tmp_path / "w", f"--coordinator_address=localhost:{_free_port()}",
            "--num_processes=2", "--process_id=0"),
      env={**_env(1), "JAXUNKNOWNS_JOIN_SECONDS": "3"}, cwd=ROOT,
      capture_output=True, text=True, timeout=240)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines()[-1].startswith(
      "error: all 2 processes did not join within 3 s"), proc.stderr[-2000:]
  assert "Check failure" not in proc.stderr
  assert time.monotonic() - start < 60
  assert not (tmp_path / "w").exists()


BAD_ADDRESSES = ["nohost", "host:notaport", ":1234", "host:99999", "host:0",
                 "::1:1234"]


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_a_malformed_coordinator_address_is_refused_before_joining(
    monkeypatch, address):
  """JAX raised an IndexError on 'nohost' (a traceback); the others waited
  the join timeout for a coordinator that could not be. Refused in one
  line before JAX is asked, from the flag or the environment alike."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxunknowns import distributed  # pylint: disable=g-import-not-at-top
  from jaxunknowns.errors import UserError  # pylint: disable=g-import-not-at-top
  joined = []
  monkeypatch.setattr(jax.distributed, "initialize",
                      lambda **kw: joined.append(kw))
  with pytest.raises(UserError) as info:
    distributed.initialize(address, 2, 0)
  message = str(info.value)
  assert message.startswith(f"--coordinator_address={address!r} is not "
                            "HOST:PORT") and "\n" not in message, message
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", address)
  monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
  monkeypatch.setenv("JAX_PROCESS_ID", "0")
  with pytest.raises(UserError, match="^JAX_COORDINATOR_ADDRESS="):
    distributed.initialize()
  monkeypatch.delenv("JAX_NUM_PROCESSES")  # JAX would read the address
  monkeypatch.delenv("JAX_PROCESS_ID")
  with pytest.raises(UserError, match="^JAX_COORDINATOR_ADDRESS="):
    distributed.initialize()
  assert not joined
  # Well-formed ones, an IPv6 host in brackets too, go on to JAX.
  monkeypatch.delenv("JAX_COORDINATOR_ADDRESS")
  for good in ("localhost:1234", "10.0.0.1:65535", "[::1]:1234"):
    assert distributed.initialize(good, 2, 1) is True
  assert [kw["coordinator_address"] for kw in joined] == [
      "localhost:1234", "10.0.0.1:65535", "[::1]:1234"]


def test_a_malformed_coordinator_address_is_one_line_on_the_cli(tmp_path):
  """As main ends it: exit 2, one `error:` line, no workdir (an IndexError
  traceback and exit 1 before)."""
  proc = forkserver.popen(
      _main(tmp_path / "w", "--coordinator_address=nohost",
            "--num_processes=2", "--process_id=0"),
      env={**_env(1), "JAXUNKNOWNS_JOIN_SECONDS": "5"}, cwd=ROOT,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  _, err = proc.communicate(timeout=240)
  assert proc.returncode == 2, err[-2000:]
  assert err.strip().splitlines() == [
      "error: --coordinator_address='nohost' is not HOST:PORT (process 0's "
      "host name or IP address, an IPv6 one in brackets, and a port in "
      "1..65535 free there), e.g. 10.0.0.1:1234"], err[-2000:]
  assert not (tmp_path / "w").exists()


def test_a_process_whose_peer_dies_stops_in_one_line(tmp_path):
  """Process 1 killed mid-run: process 0's next collective fails. It
  printed a traceback, waited ~75 s in JAX's shutdown for the dead process,
  then aborted with a C++ stack; now it says what to do, at once. (A dead
  process 0 takes the coordination service with it: the others' abort
  comes from JAX's own thread, which no Python code sees.)"""
  port = _free_port()
  procs = [forkserver.popen(
      _main(tmp_path / "w", "--config.train.steps=100000",
            f"--coordinator_address=localhost:{port}", "--num_processes=2",
            f"--process_id={pid}"), env=_env(1), cwd=ROOT,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for pid in range(2)]
  try:
    for line in procs[0].stderr:  # until it trains
      if "steps/s" in line:
        break
    procs[1].kill()
    start = time.monotonic()
    _, err = procs[0].communicate(timeout=120)
  finally:
    for p in procs:
      p.kill()
  assert procs[0].returncode == 2, err[-2000:]
  assert err.strip().splitlines()[-1].startswith(
      "error: another process of this run stopped"), err[-2000:]
  assert "Traceback" not in err
  assert time.monotonic() - start < 30


def test_sigterm_to_one_process_stops_all_at_one_saved_step(tmp_path):
  """A multi-process run ignored SIGTERM (a preempted host's notice): JAX's
  preemption service takes the signal and waits to be asked, and nothing
  asked, so the run trained on until its machines were taken. Now every
  process saves the same step (agreed through that service), says so in
  one line and exits 143; the same command resumes from it, to the summary
  of one process driving two devices."""
  flags = ["--config.train.steps=600", "--config.train.checkpoint_every=500"]
  port = _free_port()
  procs = [forkserver.popen(
      _main(tmp_path / "two", *flags, f"--coordinator_address=localhost:{port}",
            "--num_processes=2", f"--process_id={pid}"), env=_env(1),
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for pid in range(2)]
  try:
    for line in procs[0].stderr:  # until it trains
      if "steps/s" in line:
        break
    procs[1].send_signal(signal.SIGTERM)
    errs = [line + p.communicate(timeout=120)[1] if i == 0 else
            p.communicate(timeout=120)[1] for i, p in enumerate(procs)]
  finally:
    for p in procs:
      p.kill()
  last = [err.strip().splitlines()[-1] for err in errs]
  for p, err in zip(procs, errs):
    assert p.returncode == 143, err[-2000:]
  assert last[0] == last[1] and last[0].startswith("stopped by SIGTERM at "
                                                   "step "), last
  step = int(last[0].split()[5].rstrip(","))
  assert 0 < step < 500  # not a periodic checkpoint: the one it saved
  assert str(step) in os.listdir(tmp_path / "two" / "checkpoints")
  for rc, _, err in _two_processes(tmp_path / "two",
                                   extra_for={0: flags, 1: flags}):
    assert rc == 0, err[-3000:]
  assert f"resuming from the checkpoint at step {step}" in err
  one = subprocess.run(_main(tmp_path / "one", *flags), env=_env(2), cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
  assert one.returncode == 0, one.stderr[-3000:]
  a, b = (read_json(tmp_path / w / "summary.json") for w in ("one", "two"))
  for split in ("train", "test"):
    np.testing.assert_allclose(b["final"][split]["accuracy"]["per_seed"],
                               a["final"][split]["accuracy"]["per_seed"],
                               rtol=1e-5, atol=1e-6)


# main's CLI with one experiment more, not (yet) made for several processes
# (every experiment shipped is): a new one a user registers.
ONE_PROCESS_EXPERIMENT = textwrap.dedent("""
    from absl import app
    from jaxunknowns import experiments, main
    experiments.register("one_process_only")(lambda config, workdir: None)
    app.run(main.main, flags_parser=main.parse_flags)
""")


def test_an_experiment_made_for_one_process_stops_on_several(tmp_path):
  """width_sweep in two processes ended in a traceback (its stages fetched
  whole arrays to the host) or hung (its stage checkpoints in each
  process's scratch folder). An experiment not made and checked for
  several processes (experiments.register's multi_process) stops on every
  process in one line, writing nothing, right after the processes last met
  (checking first imported every experiment module, and a process exiting
  while the other still did took the coordination service away from it:
  SIGSEGV)."""
  outs = _two_processes(tmp_path / "w", timeout=300, config=[
      *TINY, "--config.experiment=one_process_only"],
                        program=("-c", ONE_PROCESS_EXPERIMENT))
  for rc, _, err in outs:
    assert rc == 2, err[-2000:]
    assert err.strip().splitlines()[-1] == (
        "error: experiment 'one_process_only' runs in one process only, not "
        "across the 2 here (it is not registered with multi_process=True: "
        "ARCHITECTURE.md says what that takes); run it on one machine, where "
        "its seeds and batches still spread over all that machine's devices")
  assert not (tmp_path / "w").exists()


def test_the_article_s_ray_executor_on_several_processes_stops_in_one_line(
    tmp_path):
  """A Ray task runs a stage in one process: several processes each
  submitting every stage to Ray would run each stage twice."""
  outs = _two_processes(tmp_path / "w", timeout=300, config=[
      "--config=configs/article.py:runlocal",
      "--config.article.executor=ray"])
  for rc, _, err in outs:
    assert rc == 2, err[-2000:]
    assert err.strip().splitlines()[-1].startswith(
        "error: article.executor='ray' runs each stage as a Ray task of its "
        "own, not across the 2 processes here"), err[-2000:]
  assert not (tmp_path / "w").exists()


def test_an_article_stage_file_one_process_lacks_stops_both_in_one_line(
    tmp_path):
  """Each process reads the stage config files itself: a file one host
  lacks stopped that process alone, while process 0 went on to write the
  workdir and then stopped on the lost peer. Now both stop in the same one
  line, naming the process, and no workdir is written."""
  from jaxunknowns.article import outline  # pylint: disable=g-import-not-at-top
  here, there = tmp_path / "here", tmp_path / "there"
  here.mkdir()
  there.mkdir()
  shutil.copy(ROOT / "configs" / "ntk.py", here / "my_ntk.py")
  outs = _two_processes(tmp_path / "w", timeout=300, cwds=(here, there),
                        config=[
      f"--config={ROOT}/configs/article.py:runlocal",
      "--config.article.stages.ntk=my_ntk.py:runlocal",
      "--config.article.skip=" + ",".join(
          s for s in outline.STAGES if s != "ntk")])
  lines = [err.strip().splitlines()[-1] for _, _, err in outs]
  for rc, _, err in outs:
    assert rc == 2, err[-2000:]
  assert lines[0] == lines[1], lines
  assert lines[0].startswith(
      "error: article.stages.ntk='my_ntk.py:runlocal': ") and lines[0].endswith(
          " (on process 1)"), lines[0]
  assert not (tmp_path / "w").exists()


LANDSCAPE_SURFACES_SCRIPT = textwrap.dedent("""
    import json, sys
    from jaxunknowns import distributed
    distributed.initialize({address!r}, 2, int(sys.argv[1]))
    sys.path.insert(0, {tests!r})
    from test_landscape import _trainer, tiny_config
    from jaxunknowns.analysis import landscape
    from jaxunknowns.implicit import landscape as experiment
    trainer, state = _trainer({{"name": "mlp", "widths": (12,)}}, steps=2)
    ax = landscape.axis(-1.0, 1.0, 3, "a")
    out = experiment.surfaces(trainer, state, tiny_config(),
                              {{"slice": ax, "surface": ax}})
    print(json.dumps({{"num_examples": out["num_examples"],
                      "surface_loss": out["surface_loss"].tolist()}}))
""")


def test_landscape_surfaces_read_batches_split_between_processes():
  """landscape counted its examples by reading the eval batches' weights
  on the host: across processes they are split between them (the 'data'
  axis), and that read raised RuntimeError ('spans non-addressable
  devices'). Both processes now measure the same surfaces and count all
  96 examples."""
  script = LANDSCAPE_SURFACES_SCRIPT.format(
      address=f"localhost:{_free_port()}", tests=str(ROOT / "tests"))
  outs = _both([[sys.executable, "-c", script, str(pid)] for pid in range(2)],
               _env(1), timeout=300)
  for rc, _, err in outs:
    assert rc == 0, err[-3000:]
  got = [json.loads(out.strip().splitlines()[-1]) for _, out, _ in outs]
  assert got[0] == got[1] and got[0]["num_examples"] == 96


def test_a_non_main_process_reads_mode_connectivity_stage_trees(tmp_path):
  """mode_connectivity's process 1 saved a stage's npz into its scratch
  folder before anything made the stage's folder there (orbax writes the
  checkpoints into the shared workdir): FileNotFoundError. And a stage
  finished in an earlier run is skipped, its npz only in the shared
  workdir: a new scratch folder holds none of it. Now a process reads its
  own copy where it computed the stage (process 0's may not be written
  yet), else the shared one."""
  from jaxunknowns import paths  # pylint: disable=g-import-not-at-top
  from jaxunknowns.overparam import mode_connectivity  # pylint: disable=g-import-not-at-top
  shared, name = tmp_path / "w", os.path.join("stages", "endpoints",
                                              "minima.npz")
  tree = lambda v: {"params": {"w": np.full(3, v, np.float32)}}
  scratch = [str(tmp_path / f"scratch{i}") for i in range(2)]
  try:
    paths.register_scratch(scratch[0], str(shared))  # the stage computed
    mode_connectivity.save_tree(os.path.join(scratch[0], name), tree(1.0))
    got = mode_connectivity.load_tree(os.path.join(scratch[0], name))
    assert got["params"]["w"].tolist() == [1.0] * 3
    mode_connectivity.save_tree(str(shared / name), tree(2.0))  # process 0
    paths.register_scratch(scratch[1], str(shared))  # a rerun skips it
    got = mode_connectivity.load_tree(os.path.join(scratch[1], name))
    assert got["params"]["w"].tolist() == [2.0] * 3
  finally:
    for folder in scratch:
      paths.unregister_scratch(folder)


def _numbers(tree, prefix=""):
  """{path: number} of a summary, without its timing and machine fields."""
  if isinstance(tree, dict):
    return {k: v for key, value in tree.items()
            if key not in ("wall_time_s", "steps_per_second", "machine")
            and not key.endswith("_s") and "time" not in key
            and "second" not in key
            for k, v in _numbers(value, f"{prefix}.{key}").items()}
  if isinstance(tree, list):
    return {k: v for i, value in enumerate(tree)
            for k, v in _numbers(value, f"{prefix}[{i}]").items()}
  return {prefix: tree}


def test_the_article_and_its_stage_experiment_in_two_processes_give_the_summary_of_one(
    tmp_path):
  """Stage experiments in two processes ended in a traceback (width_sweep's
  stages fetched global arrays to the host) or hung (its stage checkpoints
  in process 1's scratch folder), and the article, which runs experiments
  as its stages, stopped in one line. Now the article with its ntk stage
  gives in two processes the stage summary of one process with two devices;
  a rerun finds it finished on both processes; and one resumed past ntk's
  finished stages (both summary.json removed) gives it again: process 1
  read their kernel records in its new scratch folder, which holds none
  (FileNotFoundError, then JAX's abort on both)."""
  from jaxunknowns.article import outline  # pylint: disable=g-import-not-at-top
  config = ["--config=configs/article.py:runlocal", "--config.article.skip="
            + ",".join(s for s in outline.STAGES if s != "ntk")]
  stage = lambda w: tmp_path / w / "stages" / "ntk" / "summary.json"
  one = subprocess.run(_main(tmp_path / "one", config=config), env=_env(2),
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert one.returncode == 0, one.stderr[-3000:]
  a = _numbers(read_json(stage("one")))
  scratch = tmp_path / "tmp"
  scratch.mkdir()
  for attempt in ("run", "rerun", "resume"):
    if attempt == "resume":
      os.remove(tmp_path / "two" / "summary.json")
      os.remove(stage("two"))
    outs = _two_processes(tmp_path / "two", timeout=600, config=config,
                          env={"TMPDIR": str(scratch)})
    for rc, _, err in outs:
      assert rc == 0, (attempt, err[-3000:])
    finished = ["already finished" in out for _, out, _ in outs]
    assert finished == [attempt == "rerun"] * 2, (attempt, outs[0][1])
    # Process 1's scratch folders (the article's, each stage's, and those
    # the plan's checks made) are all gone.
    left = [p for p in os.listdir(scratch) if p.startswith("jaxunknowns_p")]
    assert not left, (attempt, left)
    b = _numbers(read_json(stage("two")))
    assert set(a) == set(b)
    for key, value in a.items():
      if isinstance(value, float):
        np.testing.assert_allclose(b[key], value, rtol=1e-5, atol=1e-6,
                                   err_msg=f"{attempt}: {key}")
      else:
        assert b[key] == value, (attempt, key)
    article = read_json(tmp_path / "two" / "summary.json")
    assert article["stages"]["ntk"]["status"] == "finished", attempt
  assert "ntk" in (tmp_path / "two" / "ARTICLE.md").read_text()


def test_a_second_multi_process_run_into_a_running_workdir_stops(tmp_path):
  """A two-process run resubmitted while the first still trains: both jobs
  wrote the workdir. The second's processes now stop in the same one line
  and the first trains on. Here process 0's flock refuses it (one machine);
  hosts sharing only the disk see the lease the first renews beside the
  workdir, which refuses the same way (a lease held by a process on no
  flock, below), and goes stale once its job is killed."""
  from jaxunknowns import leases  # pylint: disable=g-import-not-at-top
  env = {"JAXUNKNOWNS_LEASE_SECONDS": "0.5"}
  steps = ["--config.train.steps=100000"]
  workdir, port = tmp_path / "w", _free_port()
  file = leases.lease_file(str(workdir))
  first = [subprocess.Popen(
      _main(workdir, *steps, f"--coordinator_address=localhost:{port}",
            "--num_processes=2", f"--process_id={pid}"),
      env={**_env(1), **env}, cwd=ROOT, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True) for pid in range(2)]
  try:
    for line in first[0].stderr:  # until it trains
      if "steps/s" in line:
        break
    assert json.loads(Path(file).read_text())["pid"] == first[0].pid
    outs = _two_processes(workdir, extra_for={0: steps, 1: steps}, env=env,
                          timeout=240)
    assert [rc for rc, _, _ in outs] == [2, 2], outs[0][2][-2000:]
    assert outs[0][2].strip().splitlines()[-1] == (
        outs[1][2].strip().splitlines()[-1]) == (
            f"error: workdir {workdir} is in use by another process (pid "
            f"{first[0].pid} on {socket.gethostname()}); wait for it to end "
            f"or stop it, or choose another --workdir")
    assert all(p.poll() is None for p in first)  # still training
  finally:
    for p in first:
      p.kill()
      p.communicate()
  # Killed outright: the lease stays, unrenewed; a process of another host
  # (no flock here) takes it over, and a second run is refused by it.
  with lease_held_elsewhere(workdir, 0.5) as holder:
    outs = _two_processes(workdir, extra_for={0: steps, 1: steps}, env=env,
                          timeout=240)
    for rc, _, err in outs:
      assert rc == 2, err[-2000:]
      assert err.strip().splitlines()[-1] == (
          f"error: workdir {workdir} is in use by another run (pid "
          f"{holder.pid} on {socket.gethostname()}; it renews {file}); wait "
          f"for it to end or stop it, or choose another --workdir")


def test_processes_that_see_different_workdirs_all_stop(tmp_path):
  """Two processes given different local workdir roots (two TPU hosts, each
  with its own disk) stop at once, before building anything: one line,
  exit 2, on both, and neither root holds a file."""
  roots = [tmp_path / "host0" / "w", tmp_path / "host1" / "w"]
  start = time.monotonic()
  outs = _two_processes(roots, env={"JAXUNKNOWNS_SHARED_CHECK_SECONDS": "2"},
                        timeout=240)
  for rc, _, err in outs:
    assert rc == 2, err[-2000:]
    assert err.strip().splitlines()[-1] == (
        "error: the workdir is not shared between hosts: use a gs:// path or "
        "a shared filesystem (or the processes were given different "
        "--workdir paths)"), err[-2000:]
  assert time.monotonic() - start < 120
  assert not any(r.exists() for r in roots)
