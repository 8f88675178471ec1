"""Tests of the `imp` experiment: iterative magnitude pruning with rewinding,
its random-reinit and random-prune controls, and the instability analysis.

Every run uses `configs/imp.py:<variant>,runlocal` (an MLP 40-32-32-10 on
MNIST-1D, 2 levels of 40 steps) with 2 seeds. Most tests share a few runs made
in-process through `jaxunknowns.main.run` while recording every
`Trainer.fit` call (the state each level starts from and the state it ends
at), so the tests can check the weights themselves, not only what the run
reports. The kill-and-resume test and two bad-input tests run the real CLI in
a subprocess.

Compile time dominates these tiny runs: this process and its subprocesses
use the session's persistent XLA compilation cache (tests/conftest.py). A
cached executable is the very code a fresh compile gives, so exact
comparisons are unaffected.
"""

import contextlib
import dataclasses
import importlib.util
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Dict, List

import jax
import numpy as np
import optax
import pytest

from jaxunknowns import config_loading, optim, validation
from jaxunknowns.errors import UserError
from jaxunknowns.lottery import imp
from jaxunknowns.trainer import Trainer
import forkserver  # pylint: disable=g-bad-import-order
from run_helpers import (assert_one_line_error, assert_report_rebuilds,
                         read_json, run_in_process, snapshot)

ROOT = Path(__file__).resolve().parents[1]
IMP_CONFIG = ROOT / "configs" / "imp.py"
MNIST1D = "mnist1d,runlocal"
STABILITY = "stability,runlocal"
SEEDS = [0, 1]
S = len(SEEDS)
VARIANTS = ("ticket", "random_reinit", "random_prune")
# The runlocal MLP: MNIST-1D inputs of 40, hidden widths (32, 32), 10 classes.
LAYERS = ("Dense_0", "Dense_1", "output")
SIZES = {"Dense_0": 40 * 32, "Dense_1": 32 * 32, "output": 32 * 10}
# Layer-wise rates of configs/imp.py: 20% per level, the output layer 10%.
RATES = {"Dense_0": Fraction(1, 5), "Dense_1": Fraction(1, 5),
         "output": Fraction(1, 10)}
STEPS = 40       # runlocal's train.steps
EVAL_EVERY = 20  # runlocal's train.eval_every
ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")


# -----------------------------------------------------------------------------
# Helpers
# -----------------------------------------------------------------------------
def load_config(variant=MNIST1D, overrides=None):
  """configs/imp.py's get_config(variant) with `overrides` applied (and
  seeds=S), as --config=... --config.FIELD=VALUE builds it."""
  return config_loading.load_config(f"{IMP_CONFIG}:{variant}",
                                    {"seeds": S, **(overrides or {})})


def read_rows(workdir):
  with open(Path(workdir) / "metrics.jsonl") as f:
    return [json.loads(line) for line in f if line.strip()]


def host_copy(tree):
  """A numpy copy of a (possibly donated-later) device pytree."""
  return jax.tree.map(lambda x: np.array(x, copy=True), tree)


@dataclasses.dataclass
class FitCall:
  description: str
  run_labels: List[Dict[str, Any]]
  data_seeds: List[int]
  start: Any  # the state handed to fit (numpy)
  end: Any    # the state fit returned (numpy)


@contextlib.contextmanager
def recording_fits():
  """Records every Trainer.fit call made inside the block."""
  calls = []
  original = Trainer.fit

  def fit(self, state, **kwargs):
    start = host_copy(state)  # before fit donates its buffers
    result = original(self, state, **kwargs)
    calls.append(FitCall(kwargs.get("description", ""),
                         [dict(l) for l in kwargs["run_labels"]],
                         list(kwargs["data_seeds"]), start,
                         host_copy(result.state)))
    return result

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(Trainer, "fit", fit)
    yield calls


@dataclasses.dataclass
class Run:
  workdir: Path
  config: Any
  summary: Dict[str, Any]
  calls: List[FitCall]

  def level_call(self, level) -> FitCall:
    """The fit of IMP level `level` (ticket and controls)."""
    want = "level 0 (dense)" if level == 0 else f"level {level}"
    found = [c for c in self.calls if c.description == want]
    assert len(found) == 1, [c.description for c in self.calls]
    return found[0]


def imp_run(workdir, variant=MNIST1D, overrides=None):
  config = load_config(variant, overrides)
  with recording_fits() as calls:
    summary = run_in_process(config, workdir)
  assert summary is not None
  return Run(Path(workdir), config, summary, calls)


def kernels(state):
  return {n: np.asarray(state["params"][n]["kernel"]) for n in LAYERS}


def biases(state):
  return {n: np.asarray(state["params"][n]["bias"]) for n in LAYERS}


def opt_masks(state):
  mask = optim.get_update_mask(state["opt_state"])
  return {n: np.asarray(mask[n]["kernel"]) for n in LAYERS}


def saved_masks(workdir, level):
  with np.load(Path(workdir) / "masks" / f"level_{level:02d}.npz") as z:
    assert sorted(z.files) == sorted(f"{n}/kernel" for n in LAYERS), z.files
    return {n: z[f"{n}/kernel"] for n in LAYERS}


def inner_state(opt_state, kind=optax.ScaleByAdamState):
  """The one optax state of this kind (Adam's moments, momentum's trace)."""
  found = [s for s in jax.tree.leaves(
      opt_state, is_leaf=lambda x: isinstance(x, kind)) if isinstance(s, kind)]
  assert len(found) == 1, opt_state
  return found[0]


def runs_of(call, variant):
  """Indices of the runs of `variant` in a level's fit, in seed order."""
  idx = [r for r, l in enumerate(call.run_labels) if l["variant"] == variant]
  assert [call.run_labels[r]["seed"] for r in idx] == SEEDS, call.run_labels
  return idx


def expected_counts(level):
  """Surviving weights per layer after `level` levels of ceil-rate pruning."""
  counts = dict(SIZES)
  for _ in range(level):
    counts = {n: c - math.ceil(RATES[n] * c) for n, c in counts.items()}
  return counts


def restore_checkpoint(folder, step, like):
  from jaxunknowns.checkpoints import Checkpoints  # pylint: disable=g-import-not-at-top
  ck = Checkpoints(str(folder), max_to_keep=None)
  try:
    assert step in ck.steps(), (folder, ck.steps())
    return host_copy(ck.restore(step, jax.device_put(like)))
  finally:
    ck.close()


def assert_png(path):
  data = Path(path).read_bytes()
  assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000, path


def fmt(stat):
  return (f"{100 * stat['mean']:.2f} ± {100 * stat['std']:.2f} "
          f"(n={len(stat['per_seed'])})")


# -----------------------------------------------------------------------------
# Shared runs
# -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rewind0(tmp_path_factory):
  """mnist1d,runlocal, 2 seeds, rewinding to step 0 (the default)."""
  return imp_run(tmp_path_factory.mktemp("imp") / "rewind0")


@pytest.fixture(scope="module")
def rewind10(tmp_path_factory):
  """The same with late rewinding to step 10."""
  return imp_run(tmp_path_factory.mktemp("imp") / "rewind10",
                 overrides={"prune.rewind_step": 10})


@pytest.fixture(scope="module")
def stability(tmp_path_factory):
  """stability,runlocal with a second dense rewind step k=10."""
  return imp_run(tmp_path_factory.mktemp("imp") / "stability", STABILITY,
                 overrides={"stability.rewind_steps": (0, 10)})


# -----------------------------------------------------------------------------
# 1. End to end: summary.json, figures, report.md
# -----------------------------------------------------------------------------
def test_end_to_end_summary_figures_and_report(rewind0):
  workdir, summary = rewind0.workdir, rewind0.summary
  assert read_json(workdir / "summary.json") == json.loads(json.dumps(summary))
  assert summary["experiment"] == "imp" and summary["seeds"] == SEEDS
  assert summary["pruning"] == {  # Only what the pruning used.
      "method": "layerwise", "fraction": 0.2, "layer_rates": {"output": 0.1},
      "rewind_step": 0, "levels": 2,
      "retrain": "rewind_weights"}
  levels = summary["levels"]
  assert [e["level"] for e in levels] == [0, 1, 2]

  rows = read_rows(workdir)
  keys = [(r["step"], r["split"], r.get("level"), r.get("variant"), r["seed"])
          for r in rows]
  assert len(keys) == len(set(keys)), "duplicate metric rows"

  for entry in levels:
    level = entry["level"]
    # Sparsity: each layer loses ceil(rate * remaining) weights per level.
    counts = expected_counts(level)
    assert entry["layers_remaining"] == {n: counts[n] / SIZES[n]
                                         for n in LAYERS}
    assert entry["weights_remaining"] == (sum(counts.values())
                                          / sum(SIZES.values()))
    for n in LAYERS:  # 0.8^L (output 0.9^L), up to a weight per level
      want = float((1 - RATES[n]) ** level)
      assert abs(entry["layers_remaining"][n] - want) <= level / SIZES[n], n
    fractions_ = entry["layers_remaining"].values()
    assert min(fractions_) <= entry["weights_remaining"] <= max(fractions_)
    if level:
      assert min(fractions_) < entry["weights_remaining"] < max(fractions_)
    masks = saved_masks(workdir, level)
    for n in LAYERS:
      assert masks[n].shape == (S,) + masks[n].shape[1:]
      assert [int(m.sum()) for m in masks[n]] == [counts[n]] * S, n

    variants = VARIANTS if level else ("ticket",)
    assert ("random_reinit" in entry) == ("random_prune" in entry) == (
        level >= 1)
    for variant in variants:
      block = entry if variant == "ticket" else entry[variant]
      want_rows = {r["seed"]: r for r in rows
                   if r.get("level") == level and r.get("variant") == variant}
      assert sorted(want_rows) == SEEDS, (level, variant)
      # Final test accuracy per seed: the metrics.jsonl rows at the end.
      acc = block["test_accuracy"]
      assert set(acc) == {"mean", "std", "per_seed"}
      final = {r["seed"]: r["accuracy"] for r in rows
               if (r.get("level"), r.get("variant"), r["split"], r["step"])
               == (level, variant, "test", STEPS)}
      assert acc["per_seed"] == [final[s] for s in SEEDS], (level, variant)
      assert acc["mean"] == pytest.approx(np.mean(acc["per_seed"]), abs=1e-12)
      assert acc["std"] == pytest.approx(np.std(acc["per_seed"], ddof=1), abs=1e-12)
      assert all(0.15 < a <= 1.0 for a in acc["per_seed"]), acc  # chance 0.10
      # Early stopping: the step of minimum validation loss (earliest of
      # equal minima) and the test accuracy there.
      es_steps, es_accs = [], []
      for seed in SEEDS:
        val = sorted((r["loss"], r["step"]) for r in rows
                     if (r.get("level"), r.get("variant"), r["split"],
                         r["seed"]) == (level, variant, "validation", seed))
        assert [s for _, s in sorted(val, key=lambda x: x[1])] == list(
            range(EVAL_EVERY, STEPS + 1, EVAL_EVERY))
        step = val[0][1]
        test = {r["step"]: r["accuracy"] for r in rows
                if (r.get("level"), r.get("variant"), r["split"], r["seed"])
                == (level, variant, "test", seed)}
        es_steps.append(float(step))
        es_accs.append(test[step])
      assert block["early_stop_step"]["per_seed"] == es_steps, (level, variant)
      assert block["early_stop_step"]["mean"] == np.mean(es_steps)
      assert block["early_stop_accuracy"]["per_seed"] == es_accs
  # The three variants of a level are different networks.
  for entry in levels[1:]:
    accs = [tuple(entry["test_accuracy"]["per_seed"])] + [
        tuple(entry[v]["test_accuracy"]["per_seed"]) for v in VARIANTS[1:]]
    assert len(set(accs)) > 1, accs

  for name in ("accuracy_vs_sparsity.png", "early_stop_vs_sparsity.png",
               "early_stop_accuracy_vs_sparsity.png"):
    assert_png(workdir / name)
  report = (workdir / "report.md").read_text()
  assert "| level | weights remaining | ticket | random_reinit | random_prune |" \
      in report
  for entry in levels:
    line = (f"| {entry['level']} | {100 * entry['weights_remaining']:.2f}% "
            f"| {fmt(entry['test_accuracy'])} | ")
    if entry["level"]:
      line += (f"{fmt(entry['random_reinit']['test_accuracy'])} | "
               f"{fmt(entry['random_prune']['test_accuracy'])} |")
    assert line in report, (line, report)
  for name in ("accuracy_vs_sparsity.png", "early_stop_vs_sparsity.png"):
    assert f"({name})" in report
  assert "MNIST-1D lottery-ticket notebook" in report
  # The paper's numbers beside ours: the notebook's dense accuracy and ours.
  assert (f"| dense test accuracy (%) | 61–66 (MNIST-1D lottery-ticket "
          f"notebook) | {fmt(levels[0]['test_accuracy'])} | differs |"
          ) in report
  # The page shape, and report_cli rebuilds it from the files (on a copy:
  # the other tests read this workdir).
  copy = workdir.parent / "rewind0_report"
  shutil.copytree(workdir, copy)
  assert_report_rebuilds(copy)


def test_report_of_levels_with_no_measured_speed_says_no_nan(rewind0,
                                                            tmp_path):
  """A level whose training ended in an attempt killed before its result
  landed records 0 steps/s (its rerun trained no step): with every level
  so, the run line read '3 levels at nan steps/s on average'."""
  from jaxunknowns import experiments  # pylint: disable=g-import-not-at-top
  copy = tmp_path / "resumed"
  shutil.copytree(rewind0.workdir, copy)
  summary = json.loads((copy / "summary.json").read_text())
  for entry in summary["levels"]:
    entry["steps_per_second"] = 0.0
  experiments.write_report("imp", str(copy), rewind0.config, summary)
  text = (copy / "report.md").read_text()
  assert "nan" not in text
  assert f"{len(summary['levels'])} levels." in text


def test_every_variant_names_findings_whose_numbers_it_states():
  """A variant's `reference` is a key of papers.TICKETS; each finding's
  value is in its statement; no immaterial protocol difference (the MNIST-1D
  notebook's 1,501 steps against our 1,500) is given as a reason."""
  from jaxunknowns.lottery import imp_report, papers  # pylint: disable=g-import-not-at-top
  from jaxunknowns.report import compare  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location("_imp_config", IMP_CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  for variant in module.VARIANTS:
    config = module.get_config(variant)
    if not config.reference:  # Judged on Renda et al.'s claims only.
      assert variant == "retrain", variant
      continue
    tickets = papers.TICKETS[config.reference]
    for field in dataclasses.fields(tickets):
      found = getattr(tickets, field.name)
      if isinstance(found, compare.Reference) and found.value:
        assert f"{found.value:g}%" in found.statement, (variant, found)
      elif isinstance(found, tuple):
        ref, (lo, hi) = found
        assert f"{lo:g}" in ref.statement and f"{hi:g}" in ref.statement
  for variant, want in (("mnist1d", ["model"]), ("mnist1d_notebook", [])):
    reasons = compare.protocol_differences(papers.MNIST1D_DENSE.protocol,
                                           imp_report.our_protocol(
                                               module.get_config(variant)))
    assert [r.split(":")[0] for r in reasons] == want, (variant, reasons)


# -----------------------------------------------------------------------------
# 2. Pruned weights stay exactly zero
# -----------------------------------------------------------------------------
@pytest.mark.parametrize("level", [1, 2])
def test_masked_weights_are_exactly_zero_after_training(rewind0, level):
  call = rewind0.level_call(level)
  ticket, reinit, rprune = (runs_of(call, v) for v in VARIANTS)
  saved = saved_masks(rewind0.workdir, level)
  masks, start_masks = opt_masks(call.end), opt_masks(call.start)
  for n in LAYERS:
    np.testing.assert_array_equal(masks[n], start_masks[n])  # never changes
    np.testing.assert_array_equal(masks[n][ticket], saved[n])
    np.testing.assert_array_equal(masks[n][reinit], saved[n])
    assert not np.array_equal(masks[n][rprune], saved[n])

  # The level's final checkpoint on disk is the state fit returned.
  on_disk = restore_checkpoint(
      rewind0.workdir / "levels" / f"level_{level:02d}" / "checkpoints",
      STEPS, call.end)
  for a, b in zip(jax.tree.leaves(on_disk), jax.tree.leaves(call.end)):
    np.testing.assert_array_equal(a, b)

  adam = inner_state(call.end["opt_state"])
  before, after = kernels(call.start), kernels(call.end)
  for n in LAYERS:
    for r in range(3 * S):
      m = masks[n][r]
      assert 0 < m.sum() < m.size
      pruned = after[n][r][~m]
      assert np.all(pruned == 0.0), (n, call.run_labels[r],
                                     np.count_nonzero(pruned))
      # Neither Adam moment of a pruned weight ever moved off zero.
      assert np.all(np.asarray(adam.mu[n]["kernel"])[r][~m] == 0.0)
      assert np.all(np.asarray(adam.nu[n]["kernel"])[r][~m] == 0.0)
      # ... while the survivors trained, and are not zero.
      alive_before, alive_after = before[n][r][m], after[n][r][m]
      assert np.mean(alive_after != alive_before) > 0.95, (n, r)
      assert np.mean(alive_after != 0.0) > 0.99, (n, r)
      # (Some survivors feed dead ReLUs and get no gradient at all.)
      assert np.mean(np.asarray(adam.nu[n]["kernel"])[r][m] > 0.0) > 0.9


# -----------------------------------------------------------------------------
# 3. Rewinding restores exactly the saved weights
# -----------------------------------------------------------------------------
def assert_fresh_start(call, step):
  """Every run starts the level at `step`, with a fresh optimizer."""
  np.testing.assert_array_equal(call.start["step"], [step] * 3 * S)
  adam = inner_state(call.start["opt_state"])
  np.testing.assert_array_equal(adam.count, [0] * 3 * S)
  for leaf in jax.tree.leaves((adam.mu, adam.nu)):
    assert not np.any(leaf)


def assert_rewound_to(call, rewind_state, variant):
  """The runs of `variant` start from `rewind_state`'s weights x their mask."""
  runs = runs_of(call, variant)
  masks, start = opt_masks(call.start), kernels(call.start)
  want = kernels(rewind_state)
  for n in LAYERS:
    expected = np.where(masks[n][runs], want[n][:S], np.float32(0))
    np.testing.assert_array_equal(start[n][runs], expected, err_msg=n)
    np.testing.assert_array_equal(biases(call.start)[n][runs],
                                  biases(rewind_state)[n][:S], err_msg=n)
  np.testing.assert_array_equal(call.start["rng"][runs],
                                np.asarray(rewind_state["rng"])[:S])


def test_rewinding_to_step_0_restores_the_initialization(rewind0):
  dense = rewind0.level_call(0)
  np.testing.assert_array_equal(dense.start["step"], [0] * S)
  snapshots = rewind0.workdir / "levels" / "level_00" / "snapshots"
  assert sorted(os.listdir(snapshots)) == ["0"]
  saved = restore_checkpoint(snapshots, 0, dense.start)
  for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(dense.start)):
    np.testing.assert_array_equal(a, b)
  for level in (1, 2):
    call = rewind0.level_call(level)
    assert_fresh_start(call, 0)
    # Bit for bit: the dense run's initial weights, masked.
    assert_rewound_to(call, dense.start, "ticket")
    assert_rewound_to(call, dense.start, "random_prune")
    np.testing.assert_array_equal(opt_masks(call.start)["Dense_0"][:S],
                                  saved_masks(rewind0.workdir,
                                              level)["Dense_0"])


def test_late_rewinding_restores_the_step_k_weights(rewind10):
  assert rewind10.summary["pruning"]["rewind_step"] == 10
  dense = rewind10.level_call(0)
  snapshots = rewind10.workdir / "levels" / "level_00" / "snapshots"
  assert sorted(os.listdir(snapshots)) == ["10"]
  at10 = restore_checkpoint(snapshots, 10, dense.start)
  np.testing.assert_array_equal(at10["step"], [10] * S)

  # Independently: the dense initialization trained for 10 steps.
  trainer = imp.build_trainer(rewind10.config)
  state = trainer.init_state(SEEDS)
  for a, b in zip(jax.tree.leaves(host_copy(state)),
                  jax.tree.leaves(dense.start)):
    np.testing.assert_array_equal(a, b)
  state, _ = trainer.train_steps(state, SEEDS, 10)
  for a, b in zip(jax.tree.leaves(host_copy(state["params"])),
                  jax.tree.leaves(at10["params"])):
    np.testing.assert_array_equal(a, b)
  init, k10 = kernels(dense.start), kernels(at10)
  for n in LAYERS:  # really another point than the initialization
    assert np.mean(init[n] != k10[n]) > 0.95, n

  for level in (1, 2):
    call = rewind10.level_call(level)
    assert_fresh_start(call, 10)  # the schedule continues from step k
    assert_rewound_to(call, at10, "ticket")
    assert_rewound_to(call, at10, "random_prune")
  # Rewinding elsewhere gives other tickets.
  assert not np.array_equal(saved_masks(rewind10.workdir, 2)["Dense_0"],
                            saved_masks(rewind10.workdir, 1)["Dense_0"])


# -----------------------------------------------------------------------------
# 4. The ticket's mask, and the controls' claimed sparsity
# -----------------------------------------------------------------------------
@pytest.mark.parametrize("level", [1, 2])
def test_ticket_is_the_magnitude_mask_of_the_previous_ticket(rewind0, level):
  previous = rewind0.level_call(level - 1)
  trained = kernels(previous.end)
  old, new = saved_masks(rewind0.workdir, level - 1), saved_masks(
      rewind0.workdir, level)
  counts, before = expected_counts(level), expected_counts(level - 1)
  for n in LAYERS:
    for r in range(S):  # the ticket runs come first
      assert previous.run_labels[r] == {"level": level - 1,
                                        "variant": "ticket", "seed": SEEDS[r]}
      assert not np.any(new[n][r] & ~old[n][r]), n  # nested masks
      magnitude = np.abs(trained[n][r])
      dropped, kept = magnitude[old[n][r] & ~new[n][r]], magnitude[new[n][r]]
      assert dropped.size == before[n] - counts[n]
      assert dropped.max() <= kept.min(), n  # the smallest went


@pytest.mark.parametrize("level", [1, 2])
def test_controls_have_the_tickets_sparsity(rewind0, level):
  call = rewind0.level_call(level)
  dense = rewind0.level_call(0)
  assert call.data_seeds == SEEDS * 3  # same data order for every variant
  ticket, reinit, rprune = (runs_of(call, v) for v in VARIANTS)
  masks, start = opt_masks(call.start), kernels(call.start)
  init = kernels(dense.start)
  previous = saved_masks(rewind0.workdir, level - 1)
  for n in LAYERS:
    t, p = masks[n][ticket], masks[n][rprune]
    # random_prune: exactly the ticket's survivors per layer and seed, at
    # other, random places (the overlap of a random subset is ~ its density).
    assert [int(m.sum()) for m in p] == [int(m.sum()) for m in t]
    density = t[0].mean()
    for r in range(S):
      assert not np.array_equal(p[r], t[r])
      overlap = (p[r] & t[r]).sum() / t[r].sum()
      assert overlap < density + 0.1, (n, overlap, density)
    assert not np.array_equal(p[0], p[1])  # a mask per seed
    if level >= 2:  # drawn over the whole layer, not inside the old ticket
      assert np.any(p & ~previous[n])
    # random_reinit: the ticket's very mask, on other initial weights.
    np.testing.assert_array_equal(masks[n][reinit], t)
    w, w0 = start[n][reinit], np.where(t, init[n][:S], np.float32(0))
    assert np.all(w[~t] == 0.0)
    assert np.mean(w[t] != w0[t]) > 0.99, n
    assert np.std(w[t]) == pytest.approx(np.std(w0[t]), rel=0.25)  # an init
    assert not np.array_equal(w[0], w[1])
  # A fresh initialization at every level.
  other = rewind0.level_call(3 - level)
  reinit_other = kernels(other.start)["Dense_0"][runs_of(other, "random_reinit")]
  assert np.mean(start["Dense_0"][reinit] != reinit_other) > 0.5
  for v in ("random_reinit", "random_prune"):
    assert call.run_labels[runs_of(call, v)[0]]["level"] == level


# -----------------------------------------------------------------------------
# 5. A killed IMP run resumes to the same results
# -----------------------------------------------------------------------------
KILL_FLAGS = ("--config.seeds=2", "--config.train.steps=200",
              "--config.prune.rewind_step=10")
KILL_STEPS = 200


def cli(workdir, *flags, variant=MNIST1D, timeout=600):
  return subprocess.run(
      [sys.executable, "-m", "jaxunknowns.main",
       f"--config=configs/imp.py:{variant}", f"--workdir={workdir}", *flags],
      cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


def step_folders(folder):
  try:
    return sorted(int(n) for n in os.listdir(folder) if n.isdigit())
  except FileNotFoundError:
    return []


def comparable(summary):
  """summary.json's levels without timings."""
  return [{k: v for k, v in e.items()
           if k not in ("steps_per_second", "wall_time_s")}
          for e in summary["levels"]]


def test_killed_imp_run_resumes_to_the_same_summary(tmp_path):
  killed, straight = tmp_path / "killed", tmp_path / "straight"
  level1 = killed / "levels" / "level_01" / "checkpoints"
  log_path = tmp_path / "killed.log"
  with open(log_path, "w") as log:
    proc = forkserver.popen(
        [sys.executable, "-m", "jaxunknowns.main",
         f"--config=configs/imp.py:{MNIST1D}", f"--workdir={killed}",
         *KILL_FLAGS], cwd=ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT)
    try:
      deadline = time.monotonic() + 400
      while not step_folders(level1):
        assert proc.poll() is None, (
            f"run exited ({proc.returncode}) before level 1 checkpointed: "
            f"{log_path.read_text()[-4000:]}")
        assert time.monotonic() < deadline, "no level 1 checkpoint"
        time.sleep(0.005)
      proc.send_signal(signal.SIGKILL)
      assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
      proc.kill()
      proc.wait()
  at_kill = step_folders(level1)
  assert at_kill and max(at_kill) < KILL_STEPS, at_kill  # mid-level 1
  assert not (killed / "summary.json").exists()
  assert not (killed / "masks" / "level_01.npz").exists()
  assert (killed / "masks" / "level_00.npz").exists()

  reference = cli(straight, *KILL_FLAGS)
  assert reference.returncode == 0, reference.stderr[-6000:]
  resumed = cli(killed, *KILL_FLAGS)
  assert resumed.returncode == 0, resumed.stderr[-6000:]
  assert (f"[level 0 (dense)] resuming from the checkpoint at step "
          f"{KILL_STEPS}") in resumed.stderr
  resumed_at = [int(line.rsplit(" ", 1)[1]) for line in
                resumed.stderr.splitlines()
                if "[level 1] resuming from the checkpoint at step" in line]
  assert len(resumed_at) == 1 and resumed_at[0] in at_kill, (
      resumed_at, at_kill)

  got, want = (read_json(w / "summary.json") for w in (killed, straight))
  assert comparable(got) == comparable(want)  # exactly equal floats on CPU
  assert got["pruning"] == want["pruning"]
  for level in range(3):
    for n, m in saved_masks(killed, level).items():
      np.testing.assert_array_equal(m, saved_masks(straight, level)[n])
  key = lambda r: (r["step"], r["split"], r.get("level"), r.get("variant"),
                   r["seed"])
  rows, want_rows = read_rows(killed), read_rows(straight)
  assert len({key(r) for r in rows}) == len(rows), "duplicate metric rows"
  assert sorted(rows, key=key) == sorted(want_rows, key=key)


# -----------------------------------------------------------------------------
# 6. Bad input: UserError / exit 2, one line, no workdir
# -----------------------------------------------------------------------------
def user_error(config, workdir):
  with pytest.raises(UserError) as info:
    run_in_process(config, workdir)
  message = str(info.value)
  assert message and "\n" not in message, repr(message)
  assert not Path(workdir).exists()
  return message


BAD_INPUTS = [
    ({"prune.fraction": 0.0}, ["prune.fraction=0.0", "(0, 1)"]),
    ({"prune.fraction": 1.2}, ["prune.fraction=1.2", "(0, 1)"]),
    ({"prune.rewind_step": 40}, ["prune.rewind_step=40", "train.steps=40"]),
    ({"prune.rewind_step": 100}, ["prune.rewind_step=100", "train.steps=40"]),
    ({"prune.levels": 0}, ["prune.levels=0", ">= 1"]),
    ({"prune.layer_rates": ("Dense_9=0.1",)},
     ["prune.layer_rates", "Dense_9", "Dense_0", "Dense_1", "output"]),
    ({"prune.layer_rates": ("Dense_0:0.1",)},
     ["prune.layer_rates=('Dense_0:0.1',)", "LAYER=RATE"]),
    ({"prune.layer_rates": ("Dense_0=1.5",)},
     ["prune.layer_rates[Dense_0]=1.5", "[0, 1)"]),
    ({"prune.controls": ("random_reinit", "bogus")},
     ["prune.controls=('random_reinit', 'bogus')", "random_prune"]),
    ({"prune.controls": ("random_reinit", "random_reinit")},
     ["prune.controls=('random_reinit', 'random_reinit')", "distinct"]),
    ({"reference": "frankle_carbin"},
     ["reference='frankle_carbin'", "frankle_carbin_lenet"]),
    ({"prune.initial_mask": "/nonexistent/level_01.npz"},
     ["prune.initial_mask", "/nonexistent/level_01.npz", "does not exist"]),
    # Set but unused: an MLP has no conv layer; the study is off.
    ({"prune.conv_fraction": 0.3},
     ["prune.conv_fraction=0.3", "has none", "set it to -1"]),
    ({"stability.points": 9}, ["stability.points=9", "stability.enabled"]),
    # Which of two rates for one layer? The last one was kept silently.
    ({"prune.layer_rates": ("Dense_0=0.1", "output=0.05", "Dense_0=0.3")},
     ["prune.layer_rates=", "layer Dense_0 two rates"]),
    # A layer rate replaces the output_fraction the user also set there.
    ({"prune.output_fraction": 0.2, "prune.layer_rates": ("output=0.05",)},
     ["prune.layer_rates=('output=0.05',)", "prune.output_fraction=0.2",
      "give one of the two"]),
    # ... or the conv_fraction of a conv layer (known once the model is).
    ({"model.name": "mnist1d_cnn", "model.widths": (100, 100),
      "prune.conv_fraction": 0.3, "prune.layer_rates": ("Conv_1=0.05",)},
     ["layer Conv_1's rate", "prune.conv_fraction=0.3"]),
]


@pytest.mark.parametrize("overrides,needles", BAD_INPUTS,
                         ids=[",".join(f"{k}={v}" for k, v in o.items())
                              for o, _ in BAD_INPUTS])
def test_bad_input_is_refused_before_touching_the_workdir(
    tmp_path, overrides, needles):
  message = user_error(load_config(MNIST1D, overrides), tmp_path / "new")
  for needle in needles:
    assert needle in message, (needle, message)


def test_a_value_of_another_variant_is_the_users_also_once_the_model_is_built(
    tmp_path):
  """The conv layers are known once the model is built, inside the run: a
  conv_fraction there counted as the file's own when any variant gives it
  (conv2_cifar10's 0.1), so a layer rate replaced the user's 0.1 without a
  word. The run judges it as check_config does: the chosen variant's own."""
  from run_helpers import assert_cli_one_line_error  # pylint: disable=g-import-not-at-top
  assert_cli_one_line_error(
      ["--config=configs/imp.py:mnist1d,runlocal",
       "--config.model.name=mnist1d_cnn", "--config.model.widths=(100,100)",
       "--config.prune.conv_fraction=0.1",
       "--config.prune.layer_rates=('Conv_1=0.05',)"], tmp_path / "new",
      "replaces prune.conv_fraction=0.1")


def test_initial_mask_of_another_architecture_is_refused(rewind0, tmp_path):
  masks = rewind0.workdir / "masks" / "level_01.npz"
  config = load_config(MNIST1D, {"prune.initial_mask": str(masks),
                                 "model.widths": (16, 16)})
  message = user_error(config, tmp_path / "new")
  for needle in (str(masks), "another architecture", "Dense_0", "(40, 32)",
                 "(40, 16)"):
    assert needle in message, (needle, message)
  # Not a mask file at all.
  bogus = tmp_path / "bogus.npz"
  bogus.write_bytes(b"not a zip file")
  config = load_config(MNIST1D, {"prune.initial_mask": str(bogus)})
  assert "is not a mask file" in user_error(config, tmp_path / "new2")


@pytest.mark.parametrize("damage", ["garbage", "missing"])
def test_damaged_rewind_snapshot_is_one_line(rewind0, tmp_path, damage):
  """A resumed run whose rewind snapshot (levels/level_00/snapshots/0) was
  damaged or deleted ended in a JSONDecodeError / orbax ValueError
  traceback; there is no older state to fall back to, so it is one line
  saying to retrain."""
  workdir = tmp_path / "run"
  shutil.copytree(rewind0.workdir, workdir)
  (workdir / "summary.json").unlink()
  snapshot0 = workdir / "levels" / "level_00" / "snapshots" / "0"
  if damage == "missing":
    shutil.rmtree(snapshot0)
  else:
    for p in snapshot0.rglob("*"):
      if p.is_file():
        p.write_bytes(b"garbage")
  before = files_of(workdir)
  with pytest.raises(UserError) as info:
    run_in_process(load_config(MNIST1D), workdir)
  message = str(info.value)
  assert "\n" not in message, message
  for needle in (str(snapshot0.parent), "step 0", damage if damage ==
                 "missing" else "unreadable", "--overwrite"):
    assert needle in message, (needle, message)
  # The workdir as it was: the finished dense run's resume rewrote
  # metrics.jsonl and masks/level_00.npz (the same rows, new times).
  assert files_of(workdir) == before


def files_of(workdir):
  return {p: (p.read_bytes(), p.stat().st_mtime_ns)
          for p in workdir.rglob("*") if p.is_file()}


def test_unreadable_checkpoints_of_a_later_level_leave_the_workdir(
    rewind0, tmp_path):
  """Every checkpoint of level 1 garbage: one line, and the resume, which
  had already passed the finished dense run, rewrote its masks file and
  metrics.jsonl before it reached level 1 (the same contents, new times)."""
  workdir = tmp_path / "run"
  shutil.copytree(rewind0.workdir, workdir)
  (workdir / "summary.json").unlink()
  level1 = workdir / "levels" / "level_01" / "checkpoints"
  for p in level1.rglob("*"):
    if p.is_file():
      p.write_bytes(b"garbage")
  before = files_of(workdir)
  with pytest.raises(UserError, match="no readable checkpoint in "
                     + re.escape(str(level1))):
    run_in_process(load_config(MNIST1D), workdir)
  assert files_of(workdir) == before


@pytest.mark.parametrize("damage", ["none", "cut", "deleted"])
def test_a_cut_metrics_file_stops_the_resume_of_finished_levels(
    rewind0, tmp_path, damage):
  """A run whose report never landed (no summary.json) resumes every level
  at its last checkpoint and reads the early-stopping step back from
  metrics.jsonl. Cut to half its lines (level 1's rows partly gone) or
  deleted, the rerun left early_stop_step out where 40 had been (or read
  20), and exit 0. Now level 1's checkpoint record (timing.json: the rows the
  file held then) stops it in one line, with the files as they were; with
  the file whole, the same summary."""
  workdir = tmp_path / "run"
  shutil.copytree(rewind0.workdir, workdir)
  (workdir / "summary.json").unlink()
  rows = workdir / "metrics.jsonl"
  level1 = workdir / "levels" / "level_01" / "checkpoints" / "timing.json"
  if damage == "none":  # the records are there, and hold
    timing = lambda level: read_json(
        workdir / "levels" / f"level_{level:02d}" / "checkpoints" /
        "timing.json")["metrics_jsonl_rows"]
    # The last level's record: every row; level 1's: more than half of them.
    total = len(rows.read_text().splitlines())
    assert timing(2) == total and total // 2 < timing(1) < total
    summary = run_in_process(load_config(MNIST1D), workdir)
    assert comparable(summary) == comparable(rewind0.summary)
    assert summary["levels"][2]["early_stop_step"]["per_seed"]
    return
  if damage == "cut":
    lines = rows.read_text().splitlines(keepends=True)
    rows.write_text("".join(lines[:len(lines) // 2]))
  else:
    rows.unlink()
  before = files_of(workdir)
  with pytest.raises(UserError) as info:
    run_in_process(load_config(MNIST1D), workdir)
  message = str(info.value)
  assert "\n" not in message, message
  for needle in (str(rows), "--overwrite", str(level1) if damage == "cut"
                 else "is missing"):
    assert needle in message, (needle, message)
  assert files_of(workdir) == before


def test_cli_bad_fraction_exits_2(tmp_path):
  proc = cli(tmp_path / "new", "--config.prune.fraction=1.2")
  assert_one_line_error(proc, "prune.fraction=1.2", "(0, 1)")
  assert not (tmp_path / "new").exists()


def test_cli_layer_rate_of_a_missing_layer_exits_2(tmp_path):
  proc = cli(tmp_path / "new",
             "--config.prune.layer_rates='Dense_1=0.1','Dense_9=0.1'")
  assert not (tmp_path / "new").exists()
  assert_one_line_error(proc, "Dense_9", "Dense_0", "Dense_1", "output")


# -----------------------------------------------------------------------------
# 7. The stability variant
# -----------------------------------------------------------------------------
def test_stability_variant_writes_instability(stability, capsys):
  workdir, summary = stability.workdir, stability.summary
  assert read_json(workdir / "summary.json") == json.loads(json.dumps(summary))
  inst = summary["instability"]
  assert [d["rewind_step"] for d in inst["dense"]] == [0, 10]
  assert [(t["level"], t["rewind_step"]) for t in inst["tickets"]] == [(1, 0)]
  assert inst["tickets"][0]["weights_remaining"] == (
      summary["levels"][1]["weights_remaining"])
  rows = read_rows(workdir)
  dense_acc = summary["levels"][0]["test_accuracy"]["per_seed"]
  ticket_acc = summary["levels"][1]["test_accuracy"]["per_seed"]
  for entry in inst["dense"] + inst["tickets"]:
    labels = ({"network": "dense", "rewind_step": entry["rewind_step"]}
              if "level" not in entry else
              {"network": "ticket", "level": entry["level"]})
    match = lambda r: (r.get("analysis") == "stability" and
                       all(r.get(k) == v for k, v in labels.items()))
    lmc = {r["seed"]: r for r in rows if r["split"] == "lmc" and match(r)}
    path = [r for r in rows if r["split"] == "interpolation" and match(r)]
    assert sorted(lmc) == SEEDS, labels
    stat = entry["instability"]
    assert set(stat) == {"mean", "std", "per_seed"}
    assert stat["per_seed"] == [lmc[s]["instability"] for s in SEEDS]
    assert stat["mean"] == pytest.approx(np.mean(stat["per_seed"]), abs=1e-12)
    assert stat["std"] == pytest.approx(np.std(stat["per_seed"], ddof=1), abs=1e-12)
    assert entry["alphas"] == [0.0, 0.25, 0.5, 0.75, 1.0]  # 5 points
    for s in SEEDS:  # max error on the path minus the mean of the two ends
      errors = {r["alpha"]: r["error"] for r in path if r["seed"] == s}
      assert sorted(errors) == entry["alphas"]
      barrier = max(errors.values()) - (errors[0.0] + errors[1.0]) / 2
      assert lmc[s]["instability"] == pytest.approx(barrier, abs=1e-6)
      assert lmc[s]["instability"] >= -1e-7
    # The endpoint error: the mean of the two copies' own errors (the
    # path's ends, alpha 0 and 1), not copy A's alone.
    ends = [sorted((r["alpha"], r["error"]) for r in path if r["seed"] == s)
            for s in SEEDS]
    ends = [(e[0][1], e[-1][1]) for e in ends]
    assert any(a != b for a, b in ends), ends  # the copies differ
    np.testing.assert_allclose(entry["endpoint_error"]["per_seed"],
                               [(a + b) / 2 for a, b in ends], atol=1e-6)
    # Copy A repeats the run it was branched from (same data order).
    want = dense_acc if labels["network"] == "dense" else ticket_acc
    for s, acc in zip(SEEDS, want):
      assert lmc[s]["error_a"] == pytest.approx(1 - acc, abs=2.01e-3), labels
  # The copies start at step k from the dense run's step-k weights.
  dense_start = stability.level_call(0).start
  at10 = restore_checkpoint(workdir / "levels" / "level_00" / "snapshots", 10,
                            dense_start)
  for k, want in ((0, dense_start), (10, at10)):
    call, = [c for c in stability.calls
             if c.description == f"stability dense k={k}"]
    np.testing.assert_array_equal(call.start["step"], [k] * 2 * S)
    for n in LAYERS:
      for half in (slice(0, S), slice(S, 2 * S)):
        np.testing.assert_array_equal(kernels(call.start)[n][half],
                                      kernels(want)[n])

  report = (workdir / "report.md").read_text()
  assert "### Instability" in report
  for d in inst["dense"]:
    assert f"| {d['rewind_step']} | {fmt(d['instability'])} |" in report
  # Frankle et al. 2020's finding beside ours: a verdict from every k.
  row, = [l for l in report.splitlines()
          if l.startswith("| dense instability (%) as the rewind step k")]
  assert " → ".join(f"k={d['rewind_step']}: {fmt(d['instability'])}"
                    for d in inst["dense"]) in row, row

  # A rerun of the finished run is a no-op that returns its summary.
  capsys.readouterr()
  before = snapshot(workdir)
  assert run_in_process(stability.config, workdir) == json.loads(
      (workdir / "summary.json").read_text())
  assert f"already finished: {workdir / 'summary.json'}" in (
      capsys.readouterr().out)
  assert snapshot(workdir) == before
  assert_report_rebuilds(workdir)


# -----------------------------------------------------------------------------
# 8. Nothing silently ignored: a field the pruning would not use is refused
# -----------------------------------------------------------------------------
UNUSED_FIELDS = [
    ({"prune.exclude_output": True}, ["prune.exclude_output=True", "global"]),
    ({"prune.method": "global"}, ["prune.output_fraction=0.1", "global"]),
    ({"prune.method": "global", "prune.output_fraction": -1.0,
      "prune.conv_fraction": 0.1}, ["prune.conv_fraction=0.1", "global"]),
    ({"prune.method": "global", "prune.output_fraction": -1.0,
      "prune.layer_rates": ("Dense_0=0.1",)},
     ["prune.layer_rates", "global"]),
    ({"prune.one_shot_remaining": 0.3, "prune.levels": 1},
     ["prune.output_fraction=0.1", "one_shot_remaining"]),
    ({"prune.one_shot_remaining": 0.3, "prune.levels": 1,
      "prune.output_fraction": -1.0, "prune.conv_fraction": 0.1},
     ["prune.conv_fraction=0.1", "one_shot_remaining"]),
    # One-shot pruning goes straight to its density: no fraction per level.
    ({"prune.one_shot_remaining": 0.3, "prune.levels": 1,
      "prune.output_fraction": -1.0, "prune.fraction": 0.5},
     ["prune.fraction=0.5 is unused", "prune.one_shot_remaining=0"]),
]


RETRAIN_BAD = [
    ({"prune.retrain": "rewind"}, ["prune.retrain='rewind'", "finetune"]),
    ({"prune.compare_retrain": ("rewind_weights",)},
     ["prune.compare_retrain=('rewind_weights',)", "other than"]),
    ({"prune.retrain": "finetune", "prune.rewind_step": 10},
     ["prune.rewind_step=10", "finetune", "set it to 0"]),
    ({"prune.retrain": "rewind_lr"},
     ["rewind_lr", "optim.schedule='constant'"]),
    ({"prune.retrain": "rewind_lr", "optim.schedule": "cosine",
      "stability.levels": (1,)}, ["stability.levels=(1,)", "rewind_lr"]),
    # (1,) is the stability variant's own runlocal value: left alone.
    ({"stability.levels": (2,)}, ["stability.levels=(2,)",
                                  "stability.enabled=True only"]),
    ({"stability.rewind_steps": (0, 5)}, ["stability.rewind_steps=(0, 5)",
                                          "stability.enabled=True only"]),
]


@pytest.mark.parametrize("overrides,needles", UNUSED_FIELDS + RETRAIN_BAD,
                         ids=[",".join(f"{k}={v}" for k, v in o.items())
                              for o, _ in UNUSED_FIELDS + RETRAIN_BAD])
def test_fields_the_pruning_would_ignore_are_refused(tmp_path, overrides,
                                                     needles):
  message = user_error(load_config(MNIST1D, overrides), tmp_path / "new")
  for needle in needles:
    assert needle in message, (needle, message)


def test_stability_variant_with_the_study_turned_off_passes():
  """--config.stability.enabled=False on the stability variant was refused
  as 'stability.levels=(1,) is unused here': the variant's own levels and
  rewind steps, not the user's."""
  validation.check_config(config_loading.load_config(
      f"{IMP_CONFIG}:stability,runlocal", {"stability.enabled": False}))


def test_cli_exclude_output_under_layerwise_pruning_exits_2(tmp_path):
  proc = cli(tmp_path / "new", "--config.prune.exclude_output=True")
  assert_one_line_error(proc, "prune.exclude_output=True", "global")
  assert not (tmp_path / "new").exists()


# -----------------------------------------------------------------------------
# 9. The report selects on validation, never on test
# -----------------------------------------------------------------------------
def test_best_ticket_level_is_chosen_on_validation_not_test(tmp_path):
  """The Conv papers' 'tickets beat dense' row: the level is the one whose
  tickets have the best validation accuracy (level 1 here), although another
  level (2) has the best test accuracy."""
  from jaxunknowns.lottery import imp_report  # pylint: disable=g-import-not-at-top
  acc = lambda *v: {"mean": float(np.mean(v)),
                    "std": float(np.std(v, ddof=1)), "per_seed": list(v)}
  #            weights, test accuracy per seed, validation accuracy per seed
  table = [(1.0, (0.80, 0.80), (0.80, 0.80)),
           (0.8, (0.82, 0.82), (0.86, 0.84)),
           (0.64, (0.87, 0.85), (0.81, 0.81)),
           (0.512, (0.81, 0.81), (0.79, 0.79))]
  levels = [{"level": i, "weights_remaining": w, "test_accuracy": acc(*t),
             "validation_accuracy": acc(*v),
             "layers_remaining": {}, "steps_per_second": 10.0,
             "wall_time_s": 1.0} for i, (w, t, v) in enumerate(table)]
  summary = {"experiment": "imp", "dataset": "cifar10", "model": "conv2",
             "seeds": [0, 1], "levels": levels,
             "pruning": {"method": "layerwise", "fraction": 0.2,
                         "layer_rates": {"output": 0.1}, "rewind_step": 0,
                         "levels": 3},
             "parameters": {"trainable": 1000, "total": 1000},
             "wall_time_s": 4.0, "machine": {}}
  config = config_loading.load_config(f"{IMP_CONFIG}:conv2_cifar10")
  imp_report.write(str(tmp_path), config, summary)
  report = (tmp_path / "report.md").read_text()
  row, = [l for l in report.splitlines() if l.startswith("| ticket minus dense")]
  assert "80.00%" in row and "64.00%" not in row, row
  assert "| 2.00 ± 0.00 (n=2) at 80.00%" in row, row  # level 1 minus dense


@pytest.mark.parametrize("pruning, words", [
    ({"method": "layerwise", "layer_rates": {"Dense_0": 0.5, "output": 0.05}},
     "layer rates Dense_0 50%, output 5%"),
    ({"method": "global", "exclude": ["output"]}, "kept dense: output")])
def test_config_line_names_layer_rates_in_words(tmp_path, pruning, words):
  """The report's Config line gave the summary's Python dict or list
  ("layer_rates {'output': 0.1}", "exclude ['output']"), and "1 levels"
  for a one-shot run."""
  from jaxunknowns.lottery import imp_report  # pylint: disable=g-import-not-at-top
  acc = {"mean": 0.5, "std": 0.0, "per_seed": [0.5, 0.5]}
  levels = [{"level": i, "weights_remaining": w, "test_accuracy": acc,
             "validation_accuracy": acc, "layers_remaining": {},
             "steps_per_second": 10.0, "wall_time_s": 1.0}
            for i, w in enumerate((1.0, 0.8))]
  summary = {"experiment": "imp", "dataset": "mnist1d", "model": "mlp",
             "seeds": [0, 1], "levels": levels,
             "pruning": {"fraction": 0.2, "rewind_step": 0, "levels": 1,
                         **pruning},
             "parameters": {"trainable": 1000, "total": 1000},
             "wall_time_s": 2.0, "machine": {}}
  config = config_loading.load_config(f"{IMP_CONFIG}:mnist1d,runlocal")
  imp_report.write(str(tmp_path), config, summary)
  line, = [l for l in (tmp_path / "report.md").read_text().splitlines()
           if l.startswith("**Config.**")]
  assert words in line and not any(c in line for c in "{}[]"), line
  assert "; 1 level of 40 steps" in line, line  # One-shot runs: one level.


def test_ticket_vs_controls_is_decided_per_seed():
  """A level's ticket and controls are runs of the same seeds (seed r's data
  order; ticket r's mask or step-k weights), so 'ticket above control' is
  the paired rule on per-seed differences. Here the seeds spread the
  accuracy by 10 points, which both arms share: the ticket is about 1 point
  above on every seed, which the unpaired rule (gap 1.03 ≤ 2 × seed std
  20.10) called 'differs'."""
  from jaxunknowns.lottery import imp_report  # pylint: disable=g-import-not-at-top
  acc = lambda *v: {"mean": float(np.mean(v)),
                    "std": float(np.std(v, ddof=1)), "per_seed": list(v)}
  dense = acc(0.75, 0.85, 0.95)
  ticket, control = acc(0.700, 0.800, 0.900), acc(0.690, 0.788, 0.891)
  levels = [{"level": 0, "weights_remaining": 1.0, "test_accuracy": dense},
            {"level": 1, "weights_remaining": 0.8, "test_accuracy": ticket,
             "random_reinit": {"test_accuracy": control},
             "random_prune": {"test_accuracy": control}}]
  summary = {"levels": levels, "seeds": [0, 1, 2],
             "pruning": {"method": "layerwise", "fraction": 0.2,
                         "rewind_step": 0, "levels": 1}}
  config = config_loading.load_config(f"{IMP_CONFIG}:mnist1d,runlocal")
  rows, _ = imp_report.comparisons(config, summary)
  for control_name in imp_report.CONTROLS:
    row, = [c for c in rows if c.quantity.startswith(
        f"ticket vs {control_name} ")]
    assert row.verdict == "agrees", row
    assert row.rule == (f"ticket − {control_name} per seed = +1.03, > 2 × its "
                        "std (0.31)"), row.rule


def test_headline_rows_hold_falls_and_sooner_levels_by_a_plain_loop():
  """Frankle & Carbin's LeNet rows on a hand-made summary, each level found
  here by a plain loop: tickets hold (within 0.3 points of dense) down to
  the sparsest level of an unbroken run from the first pruned level; random
  reinit falls from the densest level from which it stays below dense to
  the end (not the last level below it); tickets stop early sooner (strictly:
  a tie with dense is not sooner) down to the end of such a run."""
  from jaxunknowns.lottery import imp_report  # pylint: disable=g-import-not-at-top
  from jaxunknowns.report import AGREES, DIFFERS  # pylint: disable=g-import-not-at-top
  acc = lambda *v: {"mean": float(np.mean(v)),
                    "std": float(np.std(v, ddof=1)), "per_seed": list(v)}
  weights = [1.0, 0.2, 0.05, 0.03, 0.02, 0.01]
  ticket = [0.980, 0.981, 0.978, 0.975, 0.990, 0.970]  # [0]: dense
  reinit = [None, 0.979, 0.970, 0.979, 0.960, 0.950]
  stop = [100.0, 80.0, 100.0, 90.0, 120.0, 130.0]
  levels = [{"level": i, "weights_remaining": w,
             "test_accuracy": acc(t, t), "early_stop_step": acc(s, s)}
            for i, (w, t, s) in enumerate(zip(weights, ticket, stop))]
  for entry, r in zip(levels[1:], reinit[1:]):
    entry["random_reinit"] = {"test_accuracy": acc(r, r)}
  summary = {"levels": levels, "seeds": [0, 1],
             "pruning": {"method": "layerwise", "fraction": 0.2,
                         "rewind_step": 0, "levels": 5}}
  # The expected levels (% of weights), by plain loops over the pruned ones.
  edge = ticket[0] - 0.3 / 100
  holds_to = None
  for w, t in zip(weights[1:], ticket[1:]):
    if t < edge:
      break
    holds_to = 100 * w
  sooner_to = None
  for w, s in zip(weights[1:], stop[1:]):
    if not s < stop[0]:
      break
    sooner_to = 100 * w
  falls = None
  for w, r in zip(weights[1:], reinit[1:]):
    falls = None if r >= edge else (falls or 100 * w)
  assert (holds_to, sooner_to, falls) == (5.0, 20.0, 2.0)  # as built above
  config = config_loading.load_config(f"{IMP_CONFIG}:lenet_fashion")
  rows, _ = imp_report.comparisons(config, summary)
  row = lambda start: next(c for c in rows if c.quantity.startswith(start))
  held = row("tickets within 0.3 points of dense down to")
  assert held.ours == f"{holds_to:.2f}%", held
  assert held.verdict == AGREES, held  # 5% ≤ 3% + 3% (within a factor 2)
  sooner = row("tickets stop early sooner than dense down to")
  assert sooner.ours == f"{sooner_to:.2f}%", sooner
  assert sooner.verdict == AGREES, sooner  # 20% ≤ 20% + 20%
  fell = row("random reinit below dense (by > 0.3 points) from")
  assert fell.ours == f"{falls:.2f}%", fell
  assert fell.verdict == DIFFERS, fell  # 2% < 26% − 13%


def test_an_early_stop_of_one_evaluation_is_none_and_its_row_says_so():
  """With train.eval_every=0 each run is evaluated once, at its last step:
  'the minimum validation loss' chose that step, and the report showed a
  ticket early-stop step of 40 ± 0 and judged 'stops early sooner' by it.
  One evaluation is no early stop; the LeNet row says why it is missing."""
  from jaxunknowns.lottery import imp_report  # pylint: disable=g-import-not-at-top
  from jaxunknowns.report import NOT_TESTABLE  # pylint: disable=g-import-not-at-top
  row = lambda seed, split, step, loss: {
      "level": 0, "variant": "ticket", "seed": seed, "split": split,
      "step": step, "loss": loss, "accuracy": 0.9}
  once = [row(s, split, 40, 0.5) for s in (0, 1)
          for split in ("validation", "test")]
  def early_stop(rows):
    levels = [{"level": 0}]
    imp.add_early_stopping(levels, rows, ["ticket"])
    return levels[0].get("early_stop_step", {}).get("per_seed")
  assert early_stop(once) is None
  assert early_stop(once + [row(s, split, 20, 0.4) for s in (0, 1)
                            for split in ("validation", "test")]) == [20, 20]
  acc = {"mean": 0.98, "std": 0.0, "per_seed": [0.98, 0.98]}
  summary = {"levels": [{"level": i, "weights_remaining": w,
                         "test_accuracy": acc}
                        for i, w in enumerate([1.0, 0.2])], "seeds": [0, 1],
             "pruning": {"method": "layerwise", "fraction": 0.2,
                         "rewind_step": 0, "levels": 1}}
  config = config_loading.load_config(f"{IMP_CONFIG}:lenet_fashion")
  rows, _ = imp_report.comparisons(config, summary)
  sooner = next(c for c in rows if c.quantity.startswith(
      "tickets stop early sooner than dense down to"))
  assert sooner.verdict == NOT_TESTABLE, sooner
  assert "train.eval_every > 0" in " ".join(sooner.reasons), sooner


@pytest.mark.parametrize("dense_k0, dense_k10, verdict", [
    ((0.30, 0.34), (0.01, 0.02), "agrees"),
    ((0.01, 0.02), (0.30, 0.34), "differs")])
def test_dense_instability_row_agrees_only_when_it_falls_with_k(
    dense_k0, dense_k10, verdict):
  """Frankle et al. 2020: the dense network's instability falls as the
  rewind step k grows. Per seed it falls by 0.29 and 0.32 (far beyond twice
  the std of the per-seed changes, 0.04): agrees; the same numbers rising
  with k: differs."""
  from jaxunknowns.lottery import imp_report  # pylint: disable=g-import-not-at-top
  acc = lambda *v: {"mean": float(np.mean(v)),
                    "std": float(np.std(v, ddof=1)), "per_seed": list(v)}
  a = acc(0.980, 0.980)
  levels = [{"level": 0, "weights_remaining": 1.0, "test_accuracy": a},
            {"level": 1, "weights_remaining": 0.8, "test_accuracy": a}]
  summary = {"levels": levels, "seeds": [0, 1],
             "pruning": {"method": "layerwise", "fraction": 0.2,
                         "rewind_step": 0, "levels": 1},
             "instability": {"dense": [
                 {"rewind_step": 0, "instability": acc(*dense_k0)},
                 {"rewind_step": 10, "instability": acc(*dense_k10)}]}}
  config = config_loading.load_config(f"{IMP_CONFIG}:mnist1d,runlocal")
  rows, _ = imp_report.comparisons(config, summary)
  row, = [c for c in rows if c.quantity.startswith("dense instability (%)")]
  assert row.verdict == verdict, row


# -----------------------------------------------------------------------------
# 10. Global pruning, one-shot pruning, an initial mask, conv rates, and
#     momentum with weight decay: end to end
# -----------------------------------------------------------------------------
MOMENTUM = {"optim.name": "momentum", "optim.lr": 0.05, "optim.momentum": 0.9,
            "optim.weight_decay": 0.05}


@pytest.fixture(scope="module")
def global_momentum(tmp_path_factory):
  """Global pruning (the output layer kept dense), SGD with momentum and
  weight decay, the random_prune control only."""
  return imp_run(tmp_path_factory.mktemp("imp") / "global", overrides={
      "prune.method": "global", "prune.output_fraction": -1.0,
      "prune.exclude_output": True, "prune.controls": ("random_prune",),
      **MOMENTUM})


def test_global_pruning_one_threshold_over_the_hidden_layers(global_momentum):
  run = global_momentum
  assert run.summary["pruning"] == {  # no layer rates: global uses none
      "method": "global", "fraction": 0.2, "exclude": ["output"],
      "rewind_step": 0, "levels": 2,
      "retrain": "rewind_weights"}
  for level in (1, 2):
    trained = kernels(run.level_call(level - 1).end)
    old, new = (saved_masks(run.workdir, l) for l in (level - 1, level))
    for r in range(S):
      assert new["output"][r].all()  # excluded: never pruned
      alive = np.concatenate([old[n][r].ravel() for n in LAYERS[:2]])
      kept = np.concatenate([new[n][r].ravel() for n in LAYERS[:2]])
      size = np.concatenate([np.abs(trained[n][r]).ravel()
                             for n in LAYERS[:2]])
      # Exactly ceil(20%) of the survivors of both layers together, those
      # of smallest |w| over both (numpy's own sort as the reference).
      k = math.ceil(Fraction(1, 5) * int(alive.sum()))
      assert int(kept.sum()) == int(alive.sum()) - k
      threshold = np.sort(size[alive])[k - 1]
      np.testing.assert_array_equal(kept, alive & (size > threshold))
    density = {n: run.summary["levels"][level]["layers_remaining"][n]
               for n in LAYERS[:2]}
    assert density["Dense_0"] != density["Dense_1"]  # not a per-layer rate
  assert_report_rebuilds(run.workdir)


def test_momentum_and_weight_decay_never_move_a_pruned_weight(
    global_momentum):
  for level in (1, 2):
    call = global_momentum.level_call(level)
    masks, after = opt_masks(call.end), kernels(call.end)
    trace = inner_state(call.end["opt_state"], optax.TraceState).trace
    for n in LAYERS[:2]:
      m = masks[n]
      assert 0 < m.sum() < m.size
      assert np.all(after[n][~m] == 0.0), n
      assert np.all(np.asarray(trace[n]["kernel"])[~m] == 0.0), n
      assert np.mean(after[n][m] != kernels(call.start)[n][m]) > 0.95, n


def test_momentum_and_weight_decay_update_against_numpy(global_momentum):
  """Three updates of the IMP trainer's optimizer on a masked network, from
  given gradients: buffer = 0.9 buffer + mask (g + 0.05 w), w -= lr buffer;
  the pruned weights stay exactly 0."""
  trainer = imp.build_trainer(global_momentum.config)
  state = trainer.init_state(SEEDS[:1])
  rng = np.random.default_rng(0)
  masks = {n: rng.random((1,) + SIZES_SHAPE[n]) < 0.5 for n in LAYERS}
  tree_masks = jax.tree.map(lambda _: None, state["params"])
  for n in LAYERS:
    tree_masks[n]["kernel"] = masks[n]
  state = imp.with_masks(trainer, state, tree_masks)
  params, opt_state = host_copy(state["params"]), state["opt_state"]
  w = {n: np.asarray(params[n]["kernel"], np.float64) for n in LAYERS}
  buffer = {n: np.zeros_like(w[n]) for n in LAYERS}
  lr = MOMENTUM["optim.lr"]
  for _ in range(3):
    grads = jax.tree.map(
        lambda x: rng.normal(size=x.shape).astype(np.float32), params)
    direction, opt_state = jax.vmap(trainer.tx.update)(grads, opt_state,
                                                       params)
    params = jax.tree.map(lambda p, d: p - np.float32(lr) * np.asarray(d),
                          params, direction)
    for n in LAYERS:
      g = np.asarray(grads[n]["kernel"], np.float64)
      buffer[n] = 0.9 * buffer[n] + masks[n] * (g + 0.05 * w[n])
      w[n] = w[n] - lr * buffer[n]
  for n in LAYERS:
    got = np.asarray(params[n]["kernel"])
    np.testing.assert_allclose(got, w[n], rtol=1e-5, atol=1e-6, err_msg=n)
    assert np.all(got[~masks[n]] == 0.0), n


SIZES_SHAPE = {"Dense_0": (40, 32), "Dense_1": (32, 32), "output": (32, 10)}


def test_one_shot_layerwise_pruning_keeps_the_largest_dense_weights(tmp_path):
  run = imp_run(tmp_path / "one_shot", overrides={
      "prune.one_shot_remaining": 0.3, "prune.levels": 1,
      "prune.output_fraction": -1.0, "prune.controls": ()})
  assert run.summary["pruning"] == {
      "method": "layerwise", "one_shot_remaining": 0.3, "layer_rates": {},
      "rewind_step": 0, "levels": 1,
      "retrain": "rewind_weights"}
  dense = kernels(run.level_call(0).end)
  mask = saved_masks(run.workdir, 1)
  for n in LAYERS:
    for r in range(S):
      keep = SIZES[n] - math.ceil(Fraction(7, 10) * SIZES[n])
      order = np.argsort(-np.abs(dense[n][r]).ravel(), kind="stable")
      want = np.zeros(SIZES[n], bool)
      want[order[:keep]] = True
      np.testing.assert_array_equal(mask[n][r].ravel(), want, err_msg=n)
  assert run.summary["levels"][1]["weights_remaining"] == pytest.approx(
      sum(SIZES[n] - math.ceil(Fraction(7, 10) * SIZES[n]) for n in LAYERS)
      / sum(SIZES.values()), abs=1e-12)
  assert_report_rebuilds(run.workdir)


def half_masks(path, seed=0):
  """An initial mask file (imp's format, one seed) keeping exactly half of
  every layer at random; its {layer: bool mask}."""
  rng = np.random.RandomState(seed)
  masks = {}
  for n, shape in SIZES_SHAPE.items():
    m = np.zeros(SIZES[n], bool)
    m[rng.permutation(SIZES[n])[:SIZES[n] // 2]] = True
    masks[n] = m.reshape(shape)
  np.savez(path, **{f"{n}/kernel": m[None] for n, m in masks.items()})
  return masks


def test_one_shot_prunes_from_the_initial_mask(tmp_path):
  """prune.one_shot_remaining with prune.initial_mask pruned the dense
  weights from an all-ones mask: weights the initial mask had pruned came
  back (level 0 at 50%, level 1 at 30% of weights that level 0 never
  trained). The target is a fraction of all of a layer's weights, the
  kept ones the largest |w| among the initial mask's survivors."""
  initial = half_masks(tmp_path / "initial.npz")
  run = imp_run(tmp_path / "one_shot", overrides={
      "prune.one_shot_remaining": 0.3, "prune.levels": 1,
      "prune.output_fraction": -1.0, "prune.controls": (),
      "prune.initial_mask": str(tmp_path / "initial.npz")})
  dense = kernels(run.level_call(0).end)
  mask = saved_masks(run.workdir, 1)
  keep = {n: math.floor(Fraction(3, 10) * SIZES[n]) for n in LAYERS}
  for n in LAYERS:
    for r in range(S):
      score = np.where(initial[n], np.abs(dense[n][r]), -np.inf).ravel()
      want = np.zeros(SIZES[n], bool)
      want[np.argsort(-score, kind="stable")[:keep[n]]] = True
      np.testing.assert_array_equal(mask[n][r].ravel(), want, err_msg=n)
      assert not np.any(mask[n][r] & ~initial[n]), n
  levels = run.summary["levels"]
  assert levels[0]["weights_remaining"] == 0.5
  assert levels[1]["weights_remaining"] == sum(keep.values()) / sum(
      SIZES.values())


@pytest.mark.parametrize("target,needle", [
    (0.6, "layer-wise"), (0.5, "layer-wise"), (0.5, "global")])
def test_one_shot_target_at_or_above_the_initial_mask_is_refused(
    tmp_path, target, needle):
  """One-shot pruning only removes weights: a target at (0.5) or above
  the initial mask's 50% density would prune nothing (and before, from an
  all-ones mask, brought pruned weights back)."""
  half_masks(tmp_path / "initial.npz")
  overrides = {"prune.one_shot_remaining": target, "prune.levels": 1,
               "prune.output_fraction": -1.0, "prune.controls": (),
               "prune.initial_mask": str(tmp_path / "initial.npz")}
  if needle == "global":
    overrides["prune.method"] = "global"
  message = user_error(load_config(MNIST1D, overrides), tmp_path / "new")
  for want in (f"prune.one_shot_remaining={target}", "at or above",
               "prune.initial_mask", "0.5"):
    assert want in message, (want, message)
  assert ("the pruned layers" in message) == (needle == "global"), message


def test_initial_mask_is_the_dense_levels_mask(rewind0, tmp_path):
  initial = saved_masks(rewind0.workdir, 1)  # seed 0's is used for all
  run = imp_run(tmp_path / "initial", overrides={
      "prune.initial_mask": str(rewind0.workdir / "masks" / "level_01.npz"),
      "prune.levels": 1, "prune.controls": ()})
  dense, fresh = run.level_call(0), rewind0.level_call(0)
  masks, start, end = opt_masks(dense.start), kernels(dense.start), kernels(
      dense.end)
  for n in LAYERS:
    for r in range(S):
      m = initial[n][0]
      np.testing.assert_array_equal(masks[n][r], m)
      np.testing.assert_array_equal(  # the same init, masked
          start[n][r], np.where(m, kernels(fresh.start)[n][r], 0))
      assert np.all(end[n][r][~m] == 0.0)
      np.testing.assert_array_equal(saved_masks(run.workdir, 0)[n][r], m)
  counts = expected_counts(1)
  assert run.summary["levels"][0]["weights_remaining"] == (
      sum(counts.values()) / sum(SIZES.values()))
  assert run.summary["levels"][1]["weights_remaining"] == (
      sum(expected_counts(2).values()) / sum(SIZES.values()))
  assert_report_rebuilds(run.workdir)


def test_conv_fraction_is_the_rate_of_conv_kernels(tmp_path):
  run = imp_run(tmp_path / "conv", overrides={
      # runlocal's MLP widths back to the default: the CNN reads none.
      "model.name": "mnist1d_cnn", "model.widths": (100, 100),
      "prune.conv_fraction": 0.1,
      "prune.fraction": 0.3, "prune.output_fraction": 0.2, "prune.levels": 1,
      "prune.controls": ()})
  sizes = {"Conv_0": 5 * 1 * 25, "Conv_1": 3 * 25 * 25,
           "Conv_2": 3 * 25 * 25, "output": 125 * 10}
  rates = {"Conv_0": Fraction(1, 10), "Conv_1": Fraction(1, 10),
           "Conv_2": Fraction(1, 10), "output": Fraction(1, 5)}
  assert run.summary["pruning"]["layer_rates"] == {
      "Conv_0": 0.1, "Conv_1": 0.1, "Conv_2": 0.1, "output": 0.2}
  assert run.summary["levels"][1]["layers_remaining"] == {
      n: (sizes[n] - math.ceil(rates[n] * sizes[n])) / sizes[n]
      for n in sizes}
  assert_report_rebuilds(run.workdir)


def test_layer_rates_beside_the_config_files_own_fractions_pass():
  """The config file's own output_fraction (0.1) and conv_fraction are not
  the user's: a layer rate for those layers replaces them, as documented
  (configs/imp.py: ("Dense_0=0.1", "output=0.05"))."""
  config = load_config(MNIST1D, {"prune.layer_rates": ("output=0.05",)})
  validation.check_config(config)
  trainer = imp.build_trainer(config)
  assert imp.layer_rates(config, trainer.params_template) == {"output": 0.05}
  config = load_config(MNIST1D, {
      "model.name": "mnist1d_cnn", "model.widths": (100, 100),
      "prune.conv_fraction": 0.1, "prune.layer_rates": ("Conv_1=0.05",)})
  validation.check_config(config)  # 0.1: the Conv variants' own
  assert imp.layer_rates(config, imp.build_trainer(config).params_template
                         ) == {"Conv_0": 0.1, "Conv_1": 0.05, "Conv_2": 0.1,
                               "output": 0.1}


def test_tuple_fields_from_the_command_line():
  """ml_collections reads --config.prune.controls=a,b as ('a,b',),
  --config.prune.controls= as ('',), and 'a','b' as ('a', 'b')."""
  config = load_config()
  for given, want in ((("random_reinit,random_prune",),
                       ["random_reinit", "random_prune"]),
                      (("",), []), (("random_prune",), ["random_prune"])):
    config.prune.controls = given
    assert imp.controls_of(config) == want
  for given in (("Dense_0=0.1,output=0.05",), ("Dense_0=0.1", "output=0.05")):
    assert imp.parse_layer_rates(given) == {"Dense_0": 0.1, "output": 0.05}


# -----------------------------------------------------------------------------
# 10. Retraining: weight rewinding, lr rewinding, fine-tuning (Renda et al.)
# -----------------------------------------------------------------------------
LR, BOUNDARIES, K = 1e-2, (15, 25), 10  # A step schedule: 1e-2, 1e-3, 1e-4.


def step_lr(t):
  """The schedule by hand: LR times 0.1 for each boundary b <= t (the steps
  where optim.boundaries multiplies the lr, config_defaults.py)."""
  return LR * 0.1 ** sum(b <= t for b in BOUNDARIES)


@pytest.fixture(scope="module")
def retrain(tmp_path_factory):
  """lr rewinding to step 10 as the main mode, weight rewinding and
  fine-tuning as arms; lr logged at every step."""
  return imp_run(tmp_path_factory.mktemp("imp") / "retrain", overrides={
      "optim.lr": LR, "optim.schedule": "step", "optim.boundaries": BOUNDARIES,
      "prune.rewind_step": K, "prune.retrain": "rewind_lr",
      "prune.compare_retrain": ("rewind_weights", "finetune"),
      "train.log_every": 1})


def logged_lr(run, level, variant):
  """{step t: the lr of the step that ended at t}, one value over seeds."""
  out = {}
  for r in read_rows(run.workdir):
    if (r["split"], r.get("level"), r.get("variant")) == (
        "minibatch", level, variant):
      out.setdefault(r["step"], set()).add(r["learning_rate"])
  assert all(len(v) == 1 for v in out.values()), out
  return {t: v.pop() for t, v in sorted(out.items())}


def arm_call(run, level, mode):
  found = [c for c in run.calls if c.description == f"level {level} ({mode})"]
  assert len(found) == 1, [c.description for c in run.calls]
  return found[0]


def assert_kept_trained(call, previous_end, runs):
  """`runs` start from the previous level's trained ticket x their mask."""
  masks, start, want = opt_masks(call.start), kernels(call.start), kernels(
      previous_end)
  for n in LAYERS:
    np.testing.assert_array_equal(
        start[n][runs], np.where(masks[n][runs], want[n][:S], np.float32(0)))
    np.testing.assert_array_equal(biases(call.start)[n][runs],
                                  biases(previous_end)[n][:S])
  np.testing.assert_array_equal(call.start["step"][runs], [K] * S)


def test_lr_rewinding_replays_the_dense_schedule_from_step_k(retrain):
  dense = logged_lr(retrain, 0, "ticket")
  assert list(dense) == list(range(1, STEPS + 1))
  for t, lr in dense.items():  # The dense run: the schedule, by hand.
    assert lr == pytest.approx(step_lr(t - 1), rel=1e-6), t
  for level in (1, 2):
    replay = logged_lr(retrain, level, "ticket")
    assert list(replay) == list(range(K + 1, STEPS + 1))
    assert replay == {t: dense[t] for t in replay}  # exactly steps k.. of dense
    call = retrain.level_call(level)
    assert_kept_trained(call, retrain.level_call(level - 1).end,
                        runs_of(call, "ticket"))
  assert sorted(set(logged_lr(retrain, 1, "ticket").values())) == (
      pytest.approx([1e-4, 1e-3, 1e-2], rel=1e-6))  # k=10 is before both.


def test_finetuning_keeps_the_final_lr_from_the_trained_weights(retrain):
  final = step_lr(STEPS - 1)
  assert retrain.summary["pruning"]["finetune_lr"] == pytest.approx(final)
  previous = retrain.level_call(0)
  for level in (1, 2):
    lrs = logged_lr(retrain, level, "finetune")
    assert list(lrs) == list(range(K + 1, STEPS + 1))  # The same budget.
    assert list(lrs.values()) == pytest.approx([final] * len(lrs), rel=1e-6)
    call = arm_call(retrain, level, "finetune")
    assert_kept_trained(call, previous.end, list(range(S)))
    previous = call


@pytest.mark.parametrize("warmup", [0, 10])
def test_finetuning_lr_is_the_cosine_rate_of_the_last_trained_step(warmup):
  """The dense run's last step is T - 1 (steps 0..T-1): a cosine schedule
  (lr at W, 0 at T) gives lr (1 + cos(pi (T-1-W) / (T-W))) / 2 there, by
  hand, while its rate at T is 0, with which fine-tuning would not move.
  (The step schedule of `retrain` is flat at the end, blind to this.)"""
  config = load_config(MNIST1D, {
      "optim.lr": LR, "optim.schedule": "cosine",
      "optim.warmup_steps": warmup, "prune.retrain": "finetune"})
  want = LR * (1 + math.cos(math.pi * (STEPS - 1 - warmup)
                            / (STEPS - warmup))) / 2
  assert want > 1e-3 * LR  # a rate that still moves the weights
  # float32's cos near pi: 1e-3 of a rate 365-650 times below lr.
  assert imp.final_lr(config) == pytest.approx(want, rel=1e-3)


def test_weight_rewinding_arm_rewinds_to_step_k(retrain):
  at_k = restore_checkpoint(
      retrain.workdir / "levels" / "level_00" / "snapshots", K,
      retrain.level_call(0).start)
  np.testing.assert_array_equal(at_k["step"], [K] * S)
  for level in (1, 2):
    call = arm_call(retrain, level, "rewind_weights")
    assert_rewound_to(call, at_k, "rewind_weights")
    assert logged_lr(retrain, level, "rewind_weights") == logged_lr(
        retrain, level, "ticket")  # The same schedule as lr rewinding.
  # Each arm its own lineage at matched sparsity.
  entry = retrain.summary["levels"][2]
  for mode in ("rewind_weights", "finetune"):
    assert entry[mode]["weights_remaining"] == entry["weights_remaining"]
  assert retrain.summary["pruning"]["retrain"] == "rewind_lr"
  report = (retrain.workdir / "report.md").read_text()
  for needle in ("rewind_lr vs rewind_weights", "rewind_weights vs finetune",
                 "Renda, Frankle & Carbin 2020"):
    assert needle in report, needle
  assert_report_rebuilds(retrain.workdir)


def test_cli_finetune_with_a_rewind_step_exits_2(tmp_path):
  proc = cli(tmp_path / "new", "--config.prune.retrain=finetune",
             "--config.prune.rewind_step=5")
  assert_one_line_error(proc, "prune.rewind_step=5", "finetune")
  assert not (tmp_path / "new").exists()


def test_report_protocol_names_an_mlp_of_any_depth():
  """The report's protocol line for an MLP without hidden layers (a linear
  model, model.widths=()) raised IndexError after the whole run trained: it
  built the residual MLP's text (w[0]) for every model."""
  from jaxunknowns.lottery import imp_report  # pylint: disable=g-import-not-at-top
  config = config_loading.load_config("configs/imp.py:runlocal")
  for widths, text in (((), "mlp (linear)"), ((300, 100), "mlp 300-100")):
    config.model.name, config.model.widths = "mlp", widths
    assert imp_report.our_protocol(config)["model"] == text
  config.model.name, config.model.widths = "residual_mlp", (8, 8)
  assert imp_report.our_protocol(config)["model"] == "residual MLP, width 8"


def test_not_below_is_judged_as_every_not_below():
  """Renda et al.'s 'lr rewinding ≥ weight rewinding', as bn_smoothness'
  ICS 'not below 1' (compare.at_least with the seeds' spread): the
  per-seed differences lr − weights at least 0 on average agree; below 0
  by at most twice their std the seeds cannot tell (it agreed); by more,
  it differs."""
  from jaxunknowns.lottery import imp_report  # pylint: disable=g-import-not-at-top
  from jaxunknowns.report import compare  # pylint: disable=g-import-not-at-top
  acc = lambda *v: {"mean": float(np.mean(v)), "per_seed": list(v)}
  def holds(lr, weights):
    return imp_report.not_below(acc(*lr), acc(*weights), a_name="rewind_lr",
                                b_name="rewind_weights", scale=100.0)
  # Differences lr − weights: −0.01, +0.02, −0.02 (mean −0.33 points,
  # 2 × std 4.16, by hand): below 0 within the spread.
  ok, text = holds((0.80, 0.82, 0.78), (0.81, 0.80, 0.80))
  assert ok is None and text == (
      "rewind_lr − rewind_weights per seed: mean -0.33 < 0.00, by at most "
      "2 × their std (4.16): " + compare.SPREAD), text
  assert holds((0.81, 0.80, 0.80), (0.80, 0.82, 0.78))[0] is True
  assert holds((0.80, 0.82, 0.78), (0.70, 0.71, 0.69))[0] is True
  assert holds((0.70, 0.71, 0.69), (0.80, 0.82, 0.78))[0] is False
  assert holds((0.8,), (0.7,))[0] is None  # one seed decides nothing


def test_reinit_that_never_falls_is_open_until_half_the_papers_level():
  """Frankle & Carbin: random reinit falls below dense from ~26% of the
  weights, ours judged within a factor 2 (at least 13%). A run whose reinit
  never falls, down to 20% of the weights, may still fall at 13–20%: not
  testable. Never falling down to 10% (below 13%) differs. Worked out from
  the rule's text: the levels, 26 and 13 are given here, not computed."""
  from jaxunknowns.lottery import imp_report  # pylint: disable=g-import-not-at-top
  from jaxunknowns.report import DIFFERS, NOT_TESTABLE  # pylint: disable=g-import-not-at-top
  acc = lambda *v: {"mean": float(np.mean(v)), "per_seed": list(v)}
  config = config_loading.load_config(f"{IMP_CONFIG}:lenet_fashion")
  def reinit_row(weights):
    levels = [{"level": i, "weights_remaining": w,
               "test_accuracy": acc(0.98, 0.98),
               **({"random_reinit": {"test_accuracy": acc(0.98, 0.98)}}
                  if i else {})} for i, w in enumerate(weights)]
    summary = {"levels": levels, "seeds": [0, 1],
               "pruning": {"method": "layerwise", "fraction": 0.2,
                           "rewind_step": 0, "levels": len(weights) - 1}}
    rows, _ = imp_report.comparisons(config, summary)
    return next(c for c in rows if c.quantity.startswith(
        "random reinit below dense"))
  open_row = reinit_row([1.0, 0.5, 0.2])
  assert open_row.ours == "never, down to 20.00%", open_row
  assert open_row.verdict == NOT_TESTABLE, open_row
  assert reinit_row([1.0, 0.5, 0.2, 0.1]).verdict == DIFFERS


def test_dense_accuracy_range_allows_one_point_beyond_its_ends():
  """The MNIST-1D notebook's dense 61–66% is judged within half its width
  plus one point of its centre (63.5 ± 3.5, by hand): 66.9% agrees (3.4
  points off), 67.9% differs (4.4 > 3.5 + 2 × its 0.1-point seed std)."""
  from jaxunknowns.lottery import imp_report  # pylint: disable=g-import-not-at-top
  from jaxunknowns.report import AGREES, DIFFERS  # pylint: disable=g-import-not-at-top
  acc = lambda *v: {"mean": float(np.mean(v)), "per_seed": list(v)}
  config = config_loading.load_config(f"{IMP_CONFIG}:mnist1d")
  def dense_row(*dense):
    levels = [{"level": i, "weights_remaining": w,
               "test_accuracy": acc(*dense)} for i, w in enumerate((1, .8))]
    summary = {"levels": levels, "seeds": [0, 1, 2],
               "pruning": {"method": "layerwise", "fraction": 0.2,
                           "rewind_step": 0, "levels": 1}}
    rows, _ = imp_report.comparisons(config, summary)
    return next(c for c in rows if c.quantity == "dense test accuracy (%)")
  assert dense_row(0.668, 0.670, 0.669).verdict == AGREES
  assert dense_row(0.678, 0.680, 0.679).verdict == DIFFERS


def test_ticket_minus_dense_is_the_tickets_accuracy_less_the_dense_one():
  """Conv tickets beat dense (Frankle & Carbin): at the level of best
  validation accuracy (50%), the ticket is 1 point above the dense run on
  each seed: +1.00 points, agrees; a ticket 1 point below on each seed
  differs (−1 < 0 − 0.3). The level of worse validation (20%) is 10 points
  below and must not be read."""
  from jaxunknowns.lottery import imp_report  # pylint: disable=g-import-not-at-top
  from jaxunknowns.report import AGREES, DIFFERS  # pylint: disable=g-import-not-at-top
  acc = lambda *v: {"mean": float(np.mean(v)), "per_seed": list(v)}
  config = config_loading.load_config(f"{IMP_CONFIG}:conv2_cifar10")
  def beats_row(ticket):
    levels = [{"level": 0, "weights_remaining": 1.0,
               "test_accuracy": acc(0.80, 0.70),
               "validation_accuracy": acc(0.8, 0.8)},
              {"level": 1, "weights_remaining": 0.5,
               "test_accuracy": acc(*ticket),
               "validation_accuracy": acc(0.9, 0.9)},
              {"level": 2, "weights_remaining": 0.2,
               "test_accuracy": acc(0.70, 0.60),
               "validation_accuracy": acc(0.5, 0.5)}]
    summary = {"levels": levels, "seeds": [0, 1],
               "pruning": {"method": "layerwise", "fraction": 0.2,
                           "rewind_step": 0, "levels": 2}}
    rows, _ = imp_report.comparisons(config, summary)
    return next(c for c in rows if c.quantity.startswith(
        "ticket minus dense"))
  above = beats_row((0.81, 0.71))
  assert above.ours.startswith("1.00 ± 0.00 (n=2) at 50.00%"), above
  assert above.verdict == AGREES, above
  assert beats_row((0.79, 0.69)).verdict == DIFFERS


def test_weight_rewinding_above_finetuning_reads_each_arm():
  """Renda et al.: weight rewinding (the main mode, stored as the ticket)
  ends above fine-tuning. Per seed +5 and +4 points (2 × std 1.41, by
  hand): agrees; fine-tuning above by as much differs. The row is named
  'rewind_weights vs finetune', the paper's order."""
  from jaxunknowns.lottery import imp_report  # pylint: disable=g-import-not-at-top
  from jaxunknowns.report import AGREES, DIFFERS  # pylint: disable=g-import-not-at-top
  acc = lambda *v: {"mean": float(np.mean(v)), "per_seed": list(v)}
  config = config_loading.load_config(f"{IMP_CONFIG}:retrain")
  def finetune_row(weights, finetune):
    levels = [{"level": 0, "weights_remaining": 1.0,
               "test_accuracy": acc(0.85, 0.75)},
              {"level": 1, "weights_remaining": 0.8,
               "test_accuracy": acc(*weights),
               "rewind_lr": {"test_accuracy": acc(*weights)},
               "finetune": {"test_accuracy": acc(*finetune)}}]
    summary = {"levels": levels, "seeds": [0, 1],
               "pruning": {"method": "layerwise", "fraction": 0.2,
                           "rewind_step": 0, "levels": 1,
                           "retrain": "rewind_weights",
                           "compare_retrain": ["rewind_lr", "finetune"]}}
    rows, _ = imp_report.comparisons(config, summary)
    return next(c for c in rows if c.quantity.startswith(
        "rewind_weights vs finetune "))
  row = finetune_row((0.80, 0.70), (0.75, 0.66))
  assert row.verdict == AGREES, row
  assert row.rule.startswith("rewind_weights − finetune per seed = +4.50")
  assert finetune_row((0.75, 0.66), (0.80, 0.70)).verdict == DIFFERS
