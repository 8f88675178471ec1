r"""Per-block Hessian spectra: one HVP per block vs one shared (not a test).

  nice python benchmarks/spectrum_blocks.py
  python benchmarks/spectrum_blocks.py \
      --config=configs/hessian_spectrum.py:fashion_lenet --repeats=1

For each arm and BatchNorm mode of `--config` (by default the MLP runlocal,
which keeps per-block spectra), one measurement of `hessian_spectrum`
(`spectrum.measure`, the config's runs vmapped, at their initial weights:
the cost does not depend on them) built two ways, both timed in this one
run of this script, alternating:

* old: each block's SLQ on its own operator, the jvp of the gradient with
  respect to that block's parameters only (spectrum.measure's default):
  the compiled program holds one copy of the network's HVP per block, plus
  the whole model's SLQ and Hutchinson's;
* new: spectrum.measure(shared_hvp=True): the whole model's and the
  blocks' SLQs in one lax.map through the whole Hessian's HVP
  (`spectrum.spectra`), each block step a whole-model HVP.

Printed per measurement: the HVP copies by construction, trace + lowering,
XLA compile and one call's run time (each the best of `--repeats`, caches
cleared between), the ratios old / new, and the largest differences of the
two results: nodes (relative to the largest |node|), each probe's moments
0..3 (relative), block traces (Hutchinson's, shared by both).
"""

import ast
import functools
import time

import jax
import numpy as np
from absl import app, flags

from jaxunknowns import config_loading, runs
from jaxunknowns.analysis import hessian, spectrum
from jaxunknowns.implicit import landscape_arms

_CONFIG = flags.DEFINE_string("config", "configs/hessian_spectrum.py:runlocal",
                              "The hessian_spectrum config (path:variant).")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Compiles and calls of each.")
_SET = flags.DEFINE_list("set", [], "Config overrides, field=value (Python "
                         "literals), e.g. spectrum.layers=True.")


def timed(shared_hvp, loss, s, args):
  """(trace + lower s, compile s, run s, result) of jit(vmap(measure))."""
  jax.clear_caches()
  fn = jax.jit(jax.vmap(functools.partial(
      spectrum.measure, loss, num_probes=s.num_probes, num_steps=s.num_steps,
      trace_probes=s.trace_probes, layers=s.layers, shared_hvp=shared_hvp)))
  t0 = time.perf_counter()
  lowered = fn.trace(*args).lower()
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  out = jax.block_until_ready(compiled(*args))
  t3 = time.perf_counter()
  return t1 - t0, t2 - t1, t3 - t2, jax.device_get(out)


def differences(old, new):
  """{what: largest difference} of two measure results, relative."""
  parts = lambda r: {"whole": r, **r["blocks"]}
  o, n = parts(old), parts(new)
  node, moment, trace = 0.0, 0.0, 0.0
  for b in o:
    no, nn = np.asarray(o[b]["nodes"], np.float64), np.asarray(
        n[b]["nodes"], np.float64)
    node = max(node, np.abs(no - nn).max() / np.abs(no).max())
    for p in range(4):
      mo = spectrum.moments(no, o[b]["weights"], p)
      mn = spectrum.moments(nn, n[b]["weights"], p)
      moment = max(moment, np.abs(mo - mn).max() / np.abs(mo).max())
    to, tn = np.asarray(o[b]["trace"]), np.asarray(n[b]["trace"])
    trace = max(trace, np.abs(to - tn).max() / np.abs(to).max())
  return {"nodes": node, "moments": moment, "traces": trace}


def main(_):
  overrides = {}
  for item in _SET.value:
    field, _, value = item.partition("=")
    overrides[field] = ast.literal_eval(value)
  config = config_loading.load_config(_CONFIG.value, overrides)
  s = config.spectrum
  print(f"jax {jax.__version__}, {jax.devices()[0].platform}; {_CONFIG.value}"
        f": {config.seeds} seeds, subset {s.subset_size}, k={s.num_probes}, "
        f"m={s.num_steps}, T={s.trace_probes}, layers={s.layers}; best of "
        f"{_REPEATS.value}; {', '.join(_SET.value) or 'no overrides'}")
  print(f"{'arm/mode':>16} {'params':>7} | HVP copies old new | old: "
        "trace+lower compile  run | new: trace+lower compile  run | compile "
        "old/new  run old/new | max diff: nodes moments traces")
  for name, c, ds in landscape_arms.arms_with_data(config):
    trainer = runs.build_trainer(c, dataset=ds)
    seeds = runs.seeds_of(config)
    v = trainer.init_variables(seeds)
    keys = jax.random.split(jax.random.PRNGKey(s.seed), len(seeds))
    x, y = hessian.subset(ds.train, s.subset_size, s.seed)
    template = trainer.params_template
    sizes = [int(sum(np.prod(a.shape) for a in jax.tree.leaves(template[b])))
             for b in spectrum.blocks_of(template)]
    # Hutchinson's + the whole model's + one per block, against
    # Hutchinson's + one per Lanczos length m_s (the whole model's included).
    copies = (2 + (len(sizes) if s.layers else 0), 1 + len(
        {min(s.num_steps, d) for d in sizes + [sum(sizes)]} if s.layers
        else {0}))
    modes = tuple(s.bn_modes) if trainer.has_batch_stats else ("eval",)
    for mode in modes:
      loss = hessian.network_loss(trainer.model, trainer.loss_fn, x, y,
                                  has_batch_stats=trainer.has_batch_stats,
                                  chunk_size=s.chunk_size, bn_mode=mode)
      args = (v["params"], v["batch_stats"], keys)
      best = {"old": [np.inf] * 3, "new": [np.inf] * 3}
      outs = {}
      for _ in range(_REPEATS.value):
        for side, shared_hvp in (("old", False), ("new", True)):
          *times, outs[side] = timed(shared_hvp, loss, s, args)
          best[side] = [min(b, t) for b, t in zip(best[side], times)]
      old, new = best["old"], best["new"]
      diff = differences(outs["old"], outs["new"])
      print(f"{name + '/' + mode:>16} {sum(sizes):>7,} | {copies[0]:>14} "
            f"{copies[1]:>3} | {old[0]:>11.2f} s {old[1]:>5.2f} s "
            f"{old[2]:>5.2f} s | {new[0]:>11.2f} s {new[1]:>5.2f} s "
            f"{new[2]:>5.2f} s | {old[1] / new[1]:>14.2f}x "
            f"{old[2] / new[2]:>11.2f}x | {diff['nodes']:.1e} "
            f"{diff['moments']:.1e} {diff['traces']:.1e}", flush=True)


if __name__ == "__main__":
  app.run(main)
