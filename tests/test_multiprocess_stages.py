"""What the experiments that train per-run hyperparameters (bn_stability,
edge_of_stability, sam: `Trainer(hparams=...)`) need across processes.

Every process of a multi-process run builds its part of each global array
with `distributed.to_global`. In one process that path is never taken
(jax.device_put serves), so the tests take it here by saying that this is
one process of two, on 8 fake CPU devices: each addressable device is then
asked for its own slice, as on a pod. A real two-process run of each
experiment takes a minute or more on 2 cores (tests/test_scaleout.py runs
one, of width_sweep).
"""

import os
import subprocess
import sys
import textwrap

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import jax, numpy as np, sys
    sys.path.insert(0, {tests!r})
    from test_trainer import make_trainer, tiny_config
    from jaxunknowns import distributed
    from jaxunknowns.trainer import make_mesh
    from jax.sharding import PartitionSpec as P
    assert jax.device_count() == 8, jax.devices()
    seeds, lrs, moms = [0, 1, 2, 3], [0.01, 0.1, 1.0, 3.0], [0.0, 0.9, 0.5, 0.0]
    config = tiny_config(**{{"optim.name": "momentum"}})
    trainer = make_trainer(config, hparams=("lr", "momentum"),
                           mesh=make_mesh(jax.devices(), seed_devices=4))
    def init():
      return jax.device_get(trainer.init_state(
          seeds, hparams={{"lr": lrs, "momentum": moms}}))
    one = init()
    # From here on, to_global builds arrays as one process of two does.
    jax.process_count = lambda: 2
    tree = {{"lr": np.asarray(lrs, np.float32),
             "momentum": np.asarray(moms, np.float32)}}
    got = distributed.to_global(tree, trainer.run_sharding(4))
    for name, leaf in got.items():
      assert leaf.sharding.spec == P("seed"), leaf.sharding
      assert leaf.addressable_shards[0].data.shape == (1,), leaf
      np.testing.assert_array_equal(np.asarray(leaf), tree[name])
    two = init()
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(two)):
      np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(two["hparams"]["lr"],
                                  np.asarray(lrs, np.float32))
    print("TO-GLOBAL-OK")
""")


def test_per_run_hparams_become_global_arrays_leaf_by_leaf():
  """Trainer.init_state's per-run hparams (a dict of [runs] arrays) went to
  to_global whole: np.asarray of the dict is one 0-d object array, and the
  run sharding of that shape ended in an IndexError inside JAX, so
  bn_stability, edge_of_stability and sam failed in two processes. Now each
  leaf is its own global array, sharded over the runs, with the values (and
  the whole train state) of the single-process path."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=os.environ.get(
      "XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8")
  env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
  script = SCRIPT.format(tests=str(ROOT / "tests"))
  proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
  assert "TO-GLOBAL-OK" in proc.stdout, proc.stderr[-3000:]


def test_a_non_main_process_finds_stages_an_earlier_run_finished(tmp_path):
  """bn_grid asked stages.read_result whether a cell was done in the
  folder of the process: a non-main process's scratch folder (new each
  run) holds none, so resuming a finished grid, process 1 alone warmed up
  and timed the first cell, in collectives process 0 never joined (a
  hang). A result is now read in the shared workdir on every process; and
  rewriting one (a cell timed again) makes its folder in the scratch."""
  from jaxunknowns import paths, stages  # pylint: disable=g-import-not-at-top
  from jaxunknowns.metrics import write_json  # pylint: disable=g-import-not-at-top
  shared, scratch = tmp_path / "w", str(tmp_path / "scratch")
  name = os.path.join("stages", "cell")
  (shared / name).mkdir(parents=True)
  write_json(str(shared / name / stages.RESULT_FILE), {"steps": 3})
  paths.register_scratch(scratch, str(shared))
  try:
    folder = os.path.join(scratch, name)
    assert stages.read_result(os.path.join(folder, stages.RESULT_FILE)) == {
        "steps": 3}
    stages.rewrite_result(folder, {"steps": 3, "train_speed": 1.0})
    assert stages.read_result(os.path.join(folder, stages.RESULT_FILE)) == {
        "steps": 3}  # process 0's, not this scratch copy
  finally:
    paths.unregister_scratch(scratch)


def test_a_non_main_process_reads_the_rows_of_an_earlier_run(tmp_path):
  """A non-main process logs rows into its scratch metrics.jsonl, new each
  run: resuming past finished stages, it read back none of their rows
  (double_descent's epoch mode builds curves from them: an IndexError on
  process 1, then JAX's abort on both). Its file now starts as the shared
  one (not after --overwrite, which empties the workdir)."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from jaxunknowns import paths  # pylint: disable=g-import-not-at-top
  from jaxunknowns.metrics import MetricWriter, read_metrics  # pylint: disable=g-import-not-at-top
  from jaxunknowns.workdir import Workdir  # pylint: disable=g-import-not-at-top
  shared = str(tmp_path / "w")
  MetricWriter(shared, tensorboard=False).write(
      10, "test", [{"seed": 0}], {"loss": [0.5]})
  for overwrite, rows in ((False, 1), (True, 0)):
    workdir = Workdir(shared, ml_collections.ConfigDict(), overwrite=overwrite)
    workdir.is_main, workdir.path = False, str(tmp_path / f"p1_{overwrite}")
    os.makedirs(workdir.path)
    paths.register_scratch(workdir.path, shared)
    try:
      workdir.open()  # one process: no barrier
      assert len(read_metrics(workdir.path)) == rows
    finally:
      workdir.close()
  assert len(read_metrics(shared)) == 1  # process 1 wrote nothing there
