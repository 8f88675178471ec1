"""Damaged or missing checkpoints (checkpoints.py): what a failed read
leaves behind, on stderr and on disk. In-process and small: a few arrays
saved with orbax, then damaged by hand."""

import asyncio
import gc
import logging
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxunknowns.checkpoints import Checkpoints
from jaxunknowns.errors import UserError


def state(step):
  """Eight arrays of random values (incompressible, so they lie in orbax's
  data files, a few arrays to a file), as placed jax Arrays: the restore
  reads them concurrently, one task per array."""
  r = np.random.RandomState(step)
  return {f"w{i}": jax.device_put(r.rand(64, 64).astype(np.float32))
          for i in range(8)}


def saved(folder, steps=(10, 20)):
  ck = Checkpoints(str(folder))
  for step in steps:
    ck.save(step, state(step))
  ck.close()
  return folder


def slow_good_reads(monkeypatch):
  """Every array read that succeeds takes a moment longer; one that fails
  fails at once. So when the damaged array's read fails, its siblings are
  still reading, every time: what happened in about one fallback in three
  (a run's larger arrays, read while the damaged one failed)."""
  from orbax.checkpoint._src.serialization import serialization  # pylint: disable=g-import-not-at-top
  read = serialization._read_shard  # pylint: disable=protected-access

  async def slow(*args, **kwargs):
    shard = await read(*args, **kwargs)
    await asyncio.sleep(0.5)
    return shard
  monkeypatch.setattr(serialization, "_read_shard", slow)


def test_a_fallback_restore_prints_no_abandoned_reads(tmp_path, monkeypatch,
                                                      caplog, capfd):
  """Orbax closed its event loop with the damaged step's other reads still
  running: at their garbage collection Python printed "Exception ignored
  in: <coroutine object _read_array_index_and_device_put>", tensorstore
  "RuntimeError: Event loop is closed" and asyncio "Task exception was
  never retrieved", dozens of tracebacks beside the one warning of the
  fallback. Now the restore ends them before the loop closes."""
  folder = saved(tmp_path / "checkpoints")
  data = folder / "20" / "default" / "ocdbt.process_0" / "d"
  largest = max(data.iterdir(), key=lambda p: p.stat().st_size)
  largest.write_bytes(largest.read_bytes()[:largest.stat().st_size // 2])
  slow_good_reads(monkeypatch)
  unraisable = []
  # pytest's own hook would turn them into warnings, off stderr.
  monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
  caplog.set_level(logging.ERROR, logger="asyncio")
  for _ in range(2):  # the newest unreadable, then its step already gone
    ck = Checkpoints(str(folder))
    step, restored = ck.restore_latest(state(0))
    ck.close()
    assert step == 10
    np.testing.assert_array_equal(restored["w3"], state(10)["w3"])
    gc.collect()  # the abandoned reads were finalized here
  assert not unraisable, [repr(u.exc_value)[:200] for u in unraisable]
  assert not [r.getMessage() for r in caplog.records
              if r.name == "asyncio"]
  err = capfd.readouterr().err
  assert "Exception ignored" not in err and "Event loop is closed" not in err


def test_a_missing_snapshot_creates_no_folder(tmp_path):
  """Trainer.restore_snapshot of a snapshot folder that is not there (a
  deleted rewind snapshot) made an empty one on its way to the error: a
  failed read wrote the workdir."""
  from jaxunknowns.trainer import Trainer  # pylint: disable=g-import-not-at-top
  folder = tmp_path / "levels" / "level_00" / "snapshots"
  with pytest.raises(UserError) as info:
    # Not a method of the trainer's own state: any Trainer reads it alike.
    Trainer.restore_snapshot(None, str(folder), 0, state(0))
  assert "is missing" in str(info.value) and "\n" not in str(info.value)
  assert not (tmp_path / "levels").exists()
  # And one whose folder is there but not the step: the folder as it was.
  saved(folder, steps=(5,))
  with pytest.raises(UserError, match="step 0 .* is missing"):
    Trainer.restore_snapshot(None, str(folder), 0, state(0))
  assert sorted(p.name for p in Path(folder).iterdir()) == ["5"]
