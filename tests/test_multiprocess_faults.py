"""Faults of multi-process runs: a preemption notice after a checkpoint,
a bug or bad input on one process only, a checkpoint one process cannot
read.

The two-process tests start their processes as test_scaleout.py does
(localhost, CPU, gloo) and keep them tiny: each costs a process pair.
"""

import json
import sys
import textwrap
import time

import numpy as np

import test_scaleout
# _scratch_folder: the processes' TMPDIR, as in test_scaleout (autouse).
from test_scaleout import (TINY, _both, _env, _free_port, _main,  # pylint: disable=unused-import
                           _scratch_folder)


class _PreemptionService:
  """JAX's preemption sync service as its documentation states it
  (multihost_utils.reached_preemption_sync_point): when a notice comes,
  "the synchronization protocol calculates the maximum step ids from all
  hosts, and uses the next step id (i.e., max + 1) as the safe step"; a
  host's step id is the number it last asked with (TSL's
  PreemptionSyncManagerImpl keeps `call_counter_ = step_counter`). One
  host's view: its own last question is the maximum."""

  def __init__(self):
    self.last, self.sync_point = None, None

  def reached_sync_point(self, step_id):
    self.last = step_id
    return step_id == self.sync_point

  def notice(self):  # SIGTERM arrives
    self.sync_point = self.last + 1


def test_a_sigterm_after_a_checkpoint_still_stops_at_the_next_boundary(
    tmp_path, monkeypatch):
  """orbax's CheckpointManager.save asked JAX's preemption service too, with
  the training step (20, 40, ...), between the fit's questions numbered by
  chunk boundaries (1, 2, 3, ...): a SIGTERM after orbax's question set the
  stop point to step + 1, which no boundary met, and a multi-process run
  ignored the signal (3 runs in 8). Only the fit's questions count now."""
  import jax  # pylint: disable=g-import-not-at-top
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  from jaxunknowns import preemption  # pylint: disable=g-import-not-at-top
  from jaxunknowns.checkpoints import Checkpoints  # pylint: disable=g-import-not-at-top
  service = _PreemptionService()
  # Every question, the fit's and orbax's, goes to the modelled service.
  monkeypatch.setattr(multihost_utils, "reached_preemption_sync_point",
                      service.reached_sync_point)

  def boundary():
    """preemption.requested at a chunk boundary, as in one of several
    processes (where JAX's service decides)."""
    with monkeypatch.context() as m:
      m.setattr(jax, "process_count", lambda: 2)
      return preemption.requested()

  checkpoints = Checkpoints(str(tmp_path / "checkpoints"))
  assert not boundary()
  checkpoints.save(20, {"w": np.arange(4.0, dtype=np.float32)})
  checkpoints.wait()
  service.notice()  # the SIGTERM lands after the checkpoint at step 20
  assert boundary()  # every process stops at its next boundary
  checkpoints.close()


def _processes(workdir, *flags, env_for=None, timeout=300, config=TINY,
               program=test_scaleout.MAIN):
  """main's CLI (or `program`) in two processes into `workdir`; `env_for`:
  {process id: variables of that process's own}."""
  port = _free_port()
  return _both([
      _main(workdir, *flags, f"--coordinator_address=localhost:{port}",
            "--num_processes=2", f"--process_id={pid}", config=config,
            program=program) for pid in range(2)],
               [{**_env(1), **(env_for or {}).get(pid, {})}
                for pid in range(2)], timeout)


def test_bad_input_on_one_process_stops_every_process_with_its_line(
    tmp_path):
  """The dataset missing on one host only (each process reads its own data
  files): that process stopped alone, while process 0 wrote config.json
  into a new workdir and then said only that "another process of this run
  stopped (... Gloo AllGather failed ...)". Every process now stops with
  the failing one's line, naming it, before the workdir is written."""
  outs = _processes(tmp_path / "w", env_for={1: {"HOME": "/dev/null/h"}})
  lines = [err.strip().splitlines()[-1] for _, _, err in outs]
  for rc, _, err in outs:
    assert rc == 2, err[-2000:]
  assert lines[0] == lines[1], lines
  assert lines[0].startswith("error: could not build dataset mnist1d into "
                             "/dev/null/h/"), lines[0]
  assert lines[0].endswith(" (on process 1)"), lines[0]
  assert not (tmp_path / "w").exists()


# main's CLI with one experiment more, made for several processes, in
# which process 1 meets a bug while process 0 waits for it in a collective.
BUG_ON_ONE_PROCESS = textwrap.dedent("""
    import jax
    from absl import app
    from jax.experimental import multihost_utils
    from jaxunknowns import experiments, main

    @experiments.register("bug_on_process_1", multi_process=True)
    def run(config, workdir):
      workdir.open()
      if jax.process_index() == 1:
        raise FileNotFoundError("a bug of process 1")
      multihost_utils.sync_global_devices("process 1 never comes")

    app.run(main.main, flags_parser=main.parse_flags)
""")


def test_a_bug_on_one_process_ends_it_and_the_others_stop_in_one_line(
    tmp_path):
  """A bug (an exception no user can fix) on one process raised on: its
  traceback, then JAX's shutdown waited for the others, which waited for
  it in their next collective, ~300 s, then all aborted (exit 134). Now it
  ends at once after its traceback (exit 1), and the others stop on the
  lost peer in one line."""
  start = time.monotonic()
  outs = _processes(tmp_path / "w", "--config.experiment=bug_on_process_1",
                    program=("-c", BUG_ON_ONE_PROCESS), timeout=150)
  (rc0, _, err0), (rc1, _, err1) = outs
  assert rc1 == 1, err1[-2000:]
  assert "Traceback" in err1 and (
      "FileNotFoundError: a bug of process 1") in err1, err1[-2000:]
  assert rc0 == 2, err0[-2000:]
  assert err0.strip().splitlines()[-1].startswith(
      "error: another process of this run stopped ("), err0[-2000:]
  assert "Traceback" not in err0
  assert time.monotonic() - start < 100


# Two processes save a state sharded between them (each writes its own
# shards, under ocdbt.process_I), then process 1's files of a step are
# damaged: only process 1 cannot read that step.
ONE_PROCESS_CANNOT_READ = textwrap.dedent("""
    import glob, json, os, sys
    import jax, numpy as np
    from jax.experimental import multihost_utils
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from jaxunknowns import distributed
    distributed.initialize({address!r}, 2, int(sys.argv[1]))
    from jaxunknowns.checkpoints import Checkpoints
    from jaxunknowns.errors import UserError
    folder = {folder!r}
    sharding = NamedSharding(Mesh(np.array(jax.devices()), ("seed",)),
                             P("seed"))
    # Random values, so that the arrays lie in the data files, not
    # compressed into ocdbt's b-tree nodes.
    values = lambda step: np.random.RandomState(step).rand(2, 4096).astype(
        np.float32)
    state = lambda step: {{"w": distributed.to_global(values(step),
                                                      sharding)}}
    saved = Checkpoints(folder, max_to_keep=None)
    for step in (10, 20):
      saved.save(step, state(step))
    saved.close()

    def damage(step):
      multihost_utils.sync_global_devices(f"saved {{step}}")
      if jax.process_index() == 1:
        for f in glob.glob(f"{{folder}}/{{step}}/default/ocdbt.process_1/d/*"):
          with open(f, "r+b") as out:
            out.write(os.urandom(os.path.getsize(f)))
      multihost_utils.sync_global_devices(f"damaged {{step}}")

    out = {{}}
    damage(20)
    step, restored = Checkpoints(folder).restore_latest(state(0))
    out["restored"] = [step, bool(np.array_equal(
        distributed.fetch(restored)["w"], values(step)))]
    out["steps"] = Checkpoints(folder).steps()
    damage(10)
    try:
      Checkpoints(folder).restore_latest(state(0))
    except UserError as e:
      out["error"] = str(e)
    print(json.dumps(out))
""")


def test_a_checkpoint_one_process_cannot_read_is_passed_over_by_all(
    tmp_path):
  """A checkpoint only process 1 could not read (its own files damaged):
  process 1 fell back to the step before, process 0 restored the newest,
  and orbax's barriers no longer matched: a hang, then JAX's abort, on
  every rerun. The processes now restore the newest step every one of them
  reads (the newer is deleted, to be trained again), and where none is,
  stop with the same UserError."""
  folder = str(tmp_path / "checkpoints")
  script = ONE_PROCESS_CANNOT_READ.format(address=f"localhost:{_free_port()}",
                                          folder=folder)
  outs = _both([[sys.executable, "-c", script, str(pid)] for pid in range(2)],
               _env(1), timeout=150)
  for rc, _, err in outs:
    assert rc == 0, err[-3000:]
  got = [json.loads(out.strip().splitlines()[-1]) for _, out, _ in outs]
  assert got[0] == got[1], got
  assert got[0]["restored"] == [10, True]
  assert got[0]["steps"] == [10]
  assert got[0]["error"] == (
      f"no readable checkpoint in {folder} (steps [10] are corrupt; "
      f"unreadable on step 10: process 1); delete that folder to retrain "
      f"from scratch, or rerun with --overwrite")
