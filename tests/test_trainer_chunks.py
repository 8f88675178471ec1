"""The trainer's chunking (`trainer.scan_lengths`): a run that stops at
arbitrary steps (a log-spaced callback grid: 1, 2, 3, 5, 8, 13, ...) trains
as scans of a few fixed lengths.

* The lengths: they sum to the steps, each is the chunk (with the l2 norms
  at its end), a power of two below it (no norms) or the final one step
  with the norms; at most 2 + ceil(log2(chunk)) distinct calls.
* `fit` with a raw log grid of callback steps equals the same steps run one
  at a time (`jax.jit(jax.vmap(trainer.train_step))` on the batches of the
  data order, no scan at all): the states at every recorded step bit for
  bit, and the logged minibatch rows (chunk means, l2 norms at the chunk's
  last step).
* `train_steps` of a number of steps that is no single scan, as one scan or
  cut by `scan_lengths`: per-step metrics of every step, in order, and the
  final state, as one at a time.
  (Both bit for bit at XLA's default options, as users compile: in a
  subprocess, since the suite's own options round them apart.)
* `fit` cuts only when it saves programs (`plan_scans`): a run whose only
  short chunk is its last keeps its two programs.
* On a ('seed', 'data') mesh of 8 fake CPU devices the cut chunks train as
  on one device (a subprocess: the device count is fixed per process).
* A long log grid (40 points over 3000 steps) compiles at most
  2 + ceil(log2(train.log_every)) train programs, where one program per
  distinct chunk length would have been many more.
"""

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxunknowns import batching
from jaxunknowns.metrics import MetricWriter, read_metrics
from jaxunknowns.trainer import Callback, plan_scans, scan_lengths
from run_helpers import users_xla_flags
from test_trainer import fit, make_trainer, tiny_config

P, N = False, True  # with_norms of a scan: plain, or the l2 norms at its end


def bound(chunk):
  return 2 + math.ceil(math.log2(chunk))


@pytest.mark.parametrize("num_steps,chunk,want", [
    (237, 100, [(100, N), (100, N), (32, P), (4, P), (1, N)]),
    (100, 100, [(100, N)]),
    (48, 100, [(32, P), (8, P), (4, P), (2, P), (1, P), (1, N)]),
    (99, 100, [(64, P), (32, P), (2, P), (1, N)]),
    (1, 100, [(1, N)]),
    (2, 12, [(1, P), (1, N)]),
    (12, 12, [(12, N)]),
    (0, 10, []),
])
def test_scan_lengths_examples(num_steps, chunk, want):
  assert scan_lengths(num_steps, chunk) == want


def test_scan_lengths_cover_every_count_with_few_programs():
  for chunk in (1, 2, 7, 10, 12, 64, 100):
    allowed = {(chunk, N), (1, N)} | {(2 ** j, P) for j in range(
        chunk.bit_length()) if 2 ** j < chunk}
    assert len(allowed) <= bound(chunk)
    for n in range(0, 3 * chunk + 2):
      pieces = scan_lengths(n, chunk)
      assert sum(k for k, _ in pieces) == n
      assert set(pieces) <= allowed, (n, chunk, pieces)
      assert not pieces or pieces[-1][1] == N  # the norms of the last step
      plain = [k for k, norms in pieces if not norms]
      assert plain == sorted(plain, reverse=True)


def raw_log_grid(steps, points):
  """The grid ntk.record_steps gives: rounded geomspace, no snapping."""
  return sorted({int(round(s)) for s in np.geomspace(1, steps, points)}
                | {steps})


def chunk_lengths(steps, chunk, at):
  """The chunks `fit` runs when it must stop at `at` (no evals/checkpoints)."""
  out, step = [], 0
  while step < steps:
    n = min([steps, step + chunk] + [s for s in at if s > step]) - step
    out.append(n)
    step += n
  return out


def one_at_a_time(trainer, seeds, steps):
  """States after each step and per-step metrics (with the l2 norms), each
  step its own jitted call on the batch of the data order. The states come
  from the plain step (the one the trainer scans), the norms from the same
  step asked for them on the same state."""
  state = jax.device_get(trainer.init_state(seeds))
  idx = batching.batch_indices(seeds, 0, steps, len(trainer.dataset.train.y),
                               trainer.batch_size)
  x, y = trainer.dataset.train.x, trainer.dataset.train.y
  step = jax.jit(jax.vmap(trainer.train_step))
  with_norms = jax.jit(jax.vmap(lambda s, xb, yb: trainer.train_step(
      s, xb, yb, with_norms=True)))
  states, metrics = {}, []
  for t in range(steps):
    _, m = with_norms(state, x[idx[t]], y[idx[t]])
    state, _ = step(state, x[idx[t]], y[idx[t]])
    state = jax.device_get(state)
    metrics.append(jax.device_get(m))
    states[t + 1] = state
  return states, metrics


def assert_trees_equal(a, b, what):
  for (path, u), v in zip(jax.tree_util.tree_leaves_with_path(a),
                          jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(u), np.asarray(v),
                                  err_msg=f"{what} {path}")


def check_log_grid_fit_equals_steps_one_at_a_time(tmp_path):
  steps, chunk, seeds = 60, 12, [0, 1]
  trainer = make_trainer(tiny_config(**{
      "train.steps": steps, "train.log_every": chunk, "train.eval_every": 0,
      "train.loop": "scan"}))
  grid = raw_log_grid(steps, 12)  # 1, 2, 3, 4, 5, 8, 11, 15, 21, 30, 43, 60
  kept = {}

  def keep(_, state, step):
    kept[step] = jax.device_get({k: state[k] for k in
                                 ("params", "batch_stats", "opt_state")})
    return {"kept": np.full(len(seeds), step, np.float32)}

  writer = MetricWriter(str(tmp_path), tensorboard=False)
  result = trainer.fit(trainer.init_state(seeds), steps=steps,
                       data_seeds=seeds, writer=writer,
                       run_labels=[{"seed": s} for s in seeds],
                       callbacks=[Callback("grid", 0, keep, steps=grid)])
  writer.close()
  lengths = chunk_lengths(steps, chunk, grid)
  # The grid needs more chunk lengths than the trainer compiled programs.
  assert len(set(lengths)) > bound(chunk)
  assert trainer.trace_count == len({p for n in lengths
                                     for p in scan_lengths(n, chunk)})
  assert trainer.trace_count <= bound(chunk)

  states, metrics = one_at_a_time(trainer, seeds, steps)
  assert sorted(kept) == grid
  for t in grid:
    assert_trees_equal(kept[t], {k: states[t][k] for k in
                                 ("params", "batch_stats", "opt_state")},
                       f"step {t}")
  assert_trees_equal(jax.device_get(result.state["params"]),
                     states[steps]["params"], "final")

  rows = [r for r in read_metrics(str(tmp_path)) if r["split"] == "minibatch"]
  ends = np.cumsum(lengths).tolist()
  assert sorted({r["step"] for r in rows}) == ends
  for start, end in zip([0] + ends[:-1], ends):
    for r, seed in enumerate(seeds):
      row, = [q for q in rows if q["step"] == end and q["seed"] == seed]
      loss = np.mean([metrics[t]["loss"][r] for t in range(start, end)])
      acc = np.mean([metrics[t]["accuracy"][r] for t in range(start, end)])
      assert row["loss"] == pytest.approx(loss, rel=1e-5), (end, seed)
      assert row["accuracy"] == pytest.approx(acc, rel=1e-6), (end, seed)
      for key in ("l2_grads", "l2_updates"):
        assert row[key] == pytest.approx(metrics[end - 1][key][r],
                                         rel=1e-5), (key, end, seed)


def check_train_steps_cut_or_whole_equals_one_at_a_time(scans):
  steps, seeds = 37, [0, 1, 2]  # cut: 10, 10, 10, then 4, 2, 1 steps
  trainer = make_trainer(tiny_config(**{"train.loop": "scan",
                                        "optim.name": "adamw"}))
  state, metrics = trainer.train_steps(trainer.init_state(seeds), seeds, steps,
                                       scans=scans)
  # (37, N) alone, or (10, N), (4, P), (2, P), (1, N).
  assert trainer.trace_count == (1 if scans is None else 4)
  states, want = one_at_a_time(trainer, seeds, steps)
  assert_trees_equal(jax.device_get(state), states[steps], "state")
  for key in ("loss", "accuracy", "learning_rate"):
    assert metrics[key].shape == (steps, len(seeds)), key
    np.testing.assert_allclose(metrics[key], np.stack([m[key] for m in want]),
                               rtol=1e-5, atol=1e-7, err_msg=key)
  for key in ("l2_grads", "l2_updates"):
    np.testing.assert_allclose(metrics[key], want[-1][key], rtol=1e-5)


BIT_FOR_BIT_SCRIPT = textwrap.dedent("""
    import pathlib, sys
    sys.path.insert(0, {tests!r})
    import test_trainer_chunks as t
    t.check_log_grid_fit_equals_steps_one_at_a_time(pathlib.Path({tmp!r}))
    for scans in (None, t.scan_lengths(37, 10)):
      t.check_train_steps_cut_or_whole_equals_one_at_a_time(scans)
    print("BIT-FOR-BIT-OK")
""")


def test_cut_scans_equal_steps_one_at_a_time_bit_for_bit(tmp_path):
  """`fit` on a raw log grid, and `train_steps` as one scan or cut, equal
  the steps run one at a time, bit for bit, as users compile (XLA's
  default options; trainer.scan_lengths promises it on CPU). A subprocess:
  the suite's XLA options (conftest.py) fuse a scan's body and the lone
  step differently, 1 ulp apart in BatchNorm's optimizer state."""
  tests = Path(__file__).resolve().parent
  proc = subprocess.run(
      [sys.executable, "-c", BIT_FOR_BIT_SCRIPT.format(
          tests=str(tests), tmp=str(tmp_path))], cwd=tests.parent,
      env=dict(os.environ, XLA_FLAGS=users_xla_flags()),
      capture_output=True, text=True, timeout=900)
  assert "BIT-FOR-BIT-OK" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.parametrize("loop", ["scan", "python"])
def test_one_run_trains_unbatched_and_equals_its_steps(loop):
  """One run steps without the run axis (no vmap): the scan and the python
  loop equal `train_step` jitted and applied one step at a time (to float32
  rounding: the programs fuse differently), and the outputs keep the run axis ([1, ...] state, [steps, 1] metrics,
  [1] norms)."""
  steps, seeds = 23, [5]  # cut: 10, 10, 2, 1
  trainer = make_trainer(tiny_config(**{"train.loop": loop}))
  state, metrics = trainer.train_steps(trainer.init_state(seeds), seeds, steps,
                                       scans=scan_lengths(steps, 10))
  one = jax.device_get(jax.tree.map(lambda a: a[0], trainer.init_state(seeds)))
  idx = batching.batch_indices(seeds, 0, steps, len(trainer.dataset.train.y),
                               trainer.batch_size)[:, 0]
  x, y = trainer.dataset.train.x, trainer.dataset.train.y
  step = jax.jit(trainer.train_step)
  losses = []
  for t in range(steps):
    one, m = step(one, x[idx[t]], y[idx[t]])
    losses.append(float(m["loss"]))
  assert jax.tree.structure(state) == jax.tree.structure(one)
  for (path, u), v in zip(jax.tree_util.tree_leaves_with_path(state),
                          jax.tree.leaves(one)):
    assert u.shape == (1,) + np.shape(v), path
    np.testing.assert_allclose(np.asarray(u)[0], np.asarray(v), rtol=1e-5,
                               atol=1e-6, err_msg=str(path))
  assert metrics["loss"].shape == (steps, 1)
  np.testing.assert_allclose(np.asarray(metrics["loss"])[:, 0],
                             np.float32(losses), rtol=1e-5)
  assert metrics["l2_params"].shape == (1,)


@pytest.mark.parametrize("unroll", [3, 64])
def test_unrolled_scan_equals_one_at_a_time(unroll):
  # 37 steps cut into 10, 10, 10, 4, 2, 1: unroll 3 leaves remainders in
  # every piece; 64 is longer than any piece.
  steps, seeds = 37, [0, 1]
  trainer = make_trainer(tiny_config(**{"train.loop": "scan",
                                        "train.unroll": unroll}))
  state, metrics = trainer.train_steps(trainer.init_state(seeds), seeds, steps,
                                       scans=scan_lengths(steps, 10))
  states, want = one_at_a_time(trainer, seeds, steps)
  # Unrolled steps may fuse differently: equal to float32 rounding.
  for (path, u), v in zip(
      jax.tree_util.tree_leaves_with_path(jax.device_get(state)),
      jax.tree.leaves(states[steps])):
    np.testing.assert_allclose(u, v, rtol=2e-5, atol=1e-6, err_msg=str(path))
  np.testing.assert_allclose(metrics["loss"], np.stack([m["loss"] for m in want]),
                             rtol=2e-5)


def test_unroll_applies_to_the_scan_loop_only():
  from jaxunknowns.errors import UserError
  with pytest.raises(UserError, match="train.unroll=4 applies to the scan"):
    make_trainer(tiny_config(**{"train.loop": "python", "train.unroll": 4}))
  make_trainer(tiny_config(**{"train.loop": "python", "train.unroll": 1}))


def test_train_steps_refuses_scans_that_do_not_add_up():
  trainer = make_trainer(tiny_config(**{"train.loop": "scan"}))
  state = trainer.init_state([0])
  for scans in ([(4, True)], [(4, True), (1, False)]):
    with pytest.raises(ValueError, match="must sum to 5 steps"):
      trainer.train_steps(state, [0], 5, scans=scans)


def test_plan_cuts_only_when_it_saves_programs():
  # ntk's default (1000 steps, log_every 100, 8 log-spaced record steps):
  # 10 chunk lengths as 10 programs, or 8 when cut.
  ntk = [1, 2, 4, 12, 33, 48, 39, 100, 34, 27]
  plan = plan_scans(ntk, 100)
  assert plan == {k: scan_lengths(k, 100) for k in ntk}
  assert len({c for calls in plan.values() for c in calls}) == 8
  # A last short chunk alone stays one scan (2 programs, not 8).
  assert plan_scans([390, 390, 220], 390) == {390: [(390, N)],
                                              220: [(220, N)]}
  # A tie keeps the fewer calls: 1, 2, 5, 10 -> (1, N), (1, P), (4, P), (10, N).
  assert plan_scans([1, 1, 2, 5, 1, 10], 10) == {
      k: [(k, N)] for k in (1, 2, 5, 10)}


def test_fit_whose_last_chunk_is_short_compiles_two_programs(tmp_path):
  trainer = make_trainer(tiny_config(**{
      "train.steps": 47, "train.log_every": 20, "train.eval_every": 0,
      "train.loop": "scan"}))
  result = fit(trainer, [0, 1], tmp_path)  # chunks 20, 20, 7
  assert trainer.trace_count == 2
  assert int(result.state["step"][0]) == 47


def test_long_log_grid_compiles_few_programs(tmp_path):
  steps, chunk, seeds = 3000, 100, [0]
  trainer = make_trainer(tiny_config(**{
      "train.steps": steps, "train.log_every": chunk, "train.eval_every": 0,
      "train.batch_size": 16, "model.norm": "none", "train.loop": "scan"}))
  grid = raw_log_grid(steps, 40)
  lengths = chunk_lengths(steps, chunk, grid)
  assert len(set(lengths)) >= 20  # one program per length: >= 20 compiles
  os.makedirs(tmp_path / "run")
  writer = MetricWriter(str(tmp_path / "run"), tensorboard=False)
  seen = []
  trainer.fit(trainer.init_state(seeds), steps=steps, data_seeds=seeds,
              writer=writer, run_labels=[{"seed": 0}],
              callbacks=[Callback("grid", 0, lambda _, s, t: seen.append(t)
                                  or {}, steps=grid)])
  writer.close()
  assert seen == grid
  assert trainer.trace_count <= bound(chunk)  # 9


MESH_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import jax, numpy as np
    from test_trainer import make_trainer, tiny_config
    from test_trainer_chunks import raw_log_grid
    from jaxunknowns.metrics import MetricWriter
    from jaxunknowns.trainer import Callback, make_mesh
    assert jax.device_count() == 8, jax.devices()
    seeds, out = list(range(8)), {{}}
    for name, devices, seed_devices in (("one", 1, 1), ("seed4x2", 8, 4)):
      trainer = make_trainer(
          tiny_config(**{{"train.steps": 40, "train.log_every": 12,
                          "train.eval_every": 0, "train.loop": "scan"}}),
          mesh=make_mesh(jax.devices()[:devices], seed_devices=seed_devices))
      res = trainer.fit(
          trainer.init_state(seeds), steps=40, data_seeds=seeds,
          writer=MetricWriter({tmp!r} + name, tensorboard=False),
          run_labels=[{{"seed": s}} for s in seeds],
          callbacks=[Callback("grid", 0, lambda *a: {{}},
                              steps=raw_log_grid(40, 10))])
      out[name] = (trainer.trace_count, jax.device_get(res.state["params"]))
    assert out["one"][0] == out["seed4x2"][0] > 4, out["one"][0]
    for a, b in zip(jax.tree.leaves(out["one"][1]),
                    jax.tree.leaves(out["seed4x2"][1])):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    print("MESH-OK")
""")


def test_cut_chunks_on_a_mesh_equal_one_device(tmp_path):
  tests = Path(__file__).resolve().parent
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=os.environ.get("XLA_FLAGS", "")
             + " --xla_force_host_platform_device_count=8")
  env["PYTHONPATH"] = os.pathsep.join([str(tests.parent),
                                       env.get("PYTHONPATH", "")])
  proc = subprocess.run(
      [sys.executable, "-c", MESH_SCRIPT.format(tests=str(tests),
                                                tmp=str(tmp_path / "w"))],
      env=env, cwd=tests.parent, capture_output=True, text=True, timeout=900)
  assert "MESH-OK" in proc.stdout, proc.stderr[-3000:]
