"""`hessian_spectrum`: the Hessian's trace and eigenvalue density with and
without BatchNorm (Ghorbani, Krishnan & Xiao 2019; Yao et al. 2020).

What runs. Each arm of `compare` (by default the same network without and
with BN, landscape_arms.py) is a stage (arms/NAME, resumable): its `seeds`
networks are measured at initialization, trained at once, and measured
again at the end. A measurement (analysis/spectrum.py, every run of the run
axis in one compiled program) takes the mean loss of a fixed training subset
of `spectrum.subset_size` examples and gives, for the whole model and (with
`spectrum.layers`) each block's own Hessian H_bb:

* Hutchinson's trace over `trace_probes` Rademacher probes (per block from
  the same probes);
* stochastic Lanczos quadrature with k = `num_probes` probes of m =
  `num_steps` steps: the density, Gaussian-smoothed (std `sigma` x the
  nodes' range) on a grid of `grid_size` points (the mean over seeds); the
  top `num_eigenvalues` eigenvalues (the first probe's largest Ritz
  values); the bulk edge and the number of outliers (spectrum.py's rule,
  `bulk_count` and `outlier_gap`).

Each is done for every BatchNorm mode of `spectrum.bn_modes`: "eval"
(population statistics, as PyHessian and analysis/hessian.py do) and "batch"
(each chunk of `chunk_size` examples normalized by its own statistics, the
loss training sees). A network without BN has one loss; it is measured once,
as "eval". Each stage keeps its raw measurements (nodes, weights, probe
values) in arms/NAME/spectra.npz; summary.json holds, per arm, point
("init", "end") and mode, the whole model's and each block's statistics
over seeds computed from them, wall times and the measured Hessian-vector
products per second (end points: compilation excluded).
"""

import time
from typing import Any, Dict

import jax
import numpy as np
from absl import logging

from jaxunknowns import distributed
from jaxunknowns import experiments, paths, prng, runs, stages, validation
from jaxunknowns.analysis import hessian, spectrum
from jaxunknowns.implicit import landscape_arms
from jaxunknowns.metrics import MetricWriter, stats
from jaxunknowns.models import layers

POINTS = ("init", "end")
SPECTRA = "spectra.npz"  # a stage's raw quadrature: nodes, weights, probes


def validate(config):
  validation.validate_base(config)
  landscape_arms.validate_arms(config)
  check, s = validation.check, config.spectrum
  for field in ("num_probes", "num_steps", "trace_probes", "num_eigenvalues",
                "subset_size"):
    validation.check_int(s[field], f"spectrum.{field}", 1)
  check(s.num_eigenvalues <= s.num_steps, "spectrum.num_eigenvalues",
        s.num_eigenvalues, f"<= spectrum.num_steps={s.num_steps} (m Lanczos "
        "steps give at most m eigenvalues)")
  modes = tuple(s.bn_modes)
  check(len(modes) >= 1 and len(set(modes)) == len(modes) and
        all(m in hessian.BN_MODES for m in modes), "spectrum.bn_modes", modes,
        f"a non-empty tuple of distinct modes of {hessian.BN_MODES}")
  check(isinstance(s.layers, bool), "spectrum.layers", s.layers,
        "True or False")
  validation.check_int(s.chunk_size, "spectrum.chunk_size", 0,
                       "0 = the whole subset at once")
  validation.check_int(s.grid_size, "spectrum.grid_size", 2)
  check(s.sigma > 0, "spectrum.sigma", s.sigma, "> 0")
  check(s.bulk_count > 0, "spectrum.bulk_count", s.bulk_count, "> 0")
  check(s.outlier_gap >= 0, "spectrum.outlier_gap", s.outlier_gap, ">= 0")
  validation.check_int(s.seed, "spectrum.seed", 0)
  # build_arms measures an arm without BatchNorm in eval mode only.
  with_bn = any(
      validation.uses_batch_norm(landscape_arms.arm_config(config, n).model)
      for n in landscape_arms.arm_names(config))
  validation.check_applies(config, "spectrum.bn_modes", with_bn,
                           "only to an arm with BatchNorm")
  # A chunk is a BN batch: one example's statistics zero every activation
  # BN normalizes (validation.check_batch_norm_batch_size's reason), and
  # the report read 'BN –' and blocks of 0 ± 0.
  check(s.chunk_size != 1 or "batch" not in modes or not with_bn,
        "spectrum.chunk_size", s.chunk_size, ">= 2 (or 0, the whole subset) "
        "with 'batch' in spectrum.bn_modes: one example's batch statistics "
        "zero every BN activation")
  for name in landscape_arms.arm_names(config):
    dropout = landscape_arms.arm_config(config, name).model.dropout
    check(dropout == 0, f"arms.{name}: model.dropout", dropout,
          "0 (dropout would make the loss of the Hessian random)")


def build_arms(config) -> Dict[str, Any]:
  """{arm: (trainer, {mode: measure fn}, block sizes, subset size)}; all that can
  fail on bad input (data, model, more eigenvalues than parameters, a chunk
  that does not divide the subset) fails here, before the workdir exists."""
  s, out = config.spectrum, {}
  for name, c, ds in landscape_arms.arms_with_data(config):
    trainer = runs.build_trainer(c, dataset=ds)
    template = trainer.params_template
    sizes = {b: int(sum(np.prod(x.shape) for x in jax.tree.leaves(template[b])))
             for b in spectrum.blocks_of(template)}
    spectrum.check_counts(s.num_probes, s.num_steps, s.trace_probes,
                          s.num_eigenvalues, sum(sizes.values()),
                          prefix="spectrum.")
    x, y = hessian.subset(ds.train, s.subset_size, s.seed)
    if s.chunk_size and len(y) % s.chunk_size:
      validation.check(False, "spectrum.chunk_size", s.chunk_size,
                       f"a divisor of the subset's {len(y)} examples")
    modes = tuple(s.bn_modes) if trainer.has_batch_stats else ("eval",)
    fns = {mode: spectrum.measure_fn(
        hessian.network_loss(trainer.model, trainer.loss_fn, x, y,
                             has_batch_stats=trainer.has_batch_stats,
                             chunk_size=s.chunk_size, bn_mode=mode),
        num_probes=s.num_probes, num_steps=s.num_steps,
        trace_probes=s.trace_probes, layers=s.layers) for mode in modes}
    out[name] = (trainer, fns, sizes, len(y))
  return out


def summarize(raw, num_params: int, s) -> Dict[str, Any]:
  """Statistics over seeds of one spectrum (whole model or a block): raw
  arrays [R, ...] of `spectrum.measure`."""
  nodes = np.asarray(raw["nodes"], np.float64)     # [R, k, m]
  weights = np.asarray(raw["weights"], np.float64)
  trace = np.asarray(raw["trace"], np.float64)     # [R, T]
  tops = -np.sort(-nodes[:, 0, :], axis=1)[:, :s.num_eigenvalues]
  edge_count = [spectrum.bulk_and_outliers(n, w, num_params, s.bulk_count,
                                           s.outlier_gap)
                for n, w in zip(nodes, weights)]
  edges = np.array([e for e, _ in edge_count])
  lo, hi = nodes.min(), nodes.max()
  sigma = s.sigma * max(hi - lo, 1e-12)
  grid = np.linspace(lo - 3 * sigma, hi + 3 * sigma, s.grid_size)
  dens = np.mean([spectrum.density(n, w, grid, sigma)
                  for n, w in zip(nodes, weights)], axis=0)
  # lambda_max / bulk edge: how far the largest eigenvalue stands apart.
  ratio = [float(t / e) if e > 0 else None for t, e in zip(tops[:, 0], edges)]
  return {
      "num_params": num_params,
      "trace": stats(trace.mean(axis=1)),
      "trace_sem": stats(trace.std(axis=1, ddof=1) / np.sqrt(trace.shape[1])
                         if trace.shape[1] > 1 else np.zeros(len(trace))),
      "slq_trace": stats(num_params * spectrum.moments(nodes, weights, 1)
                         .mean(axis=1)),
      "lambda_max": stats(tops[:, 0]),
      "top_eigenvalues": [stats(tops[:, i]) for i in range(tops.shape[1])],
      "bulk_edge": stats(edges),
      "outliers": stats([c for _, c in edge_count]),
      "max_over_edge": stats(ratio) if None not in ratio else None,
      # The grid is np.linspace(start, stop, num); 3 significant digits
      # keep summary.json small (a log-scale plot needs no more).
      "density": {"sigma": sigma, "start": float(grid[0]),
                  "stop": float(grid[-1]), "num": len(grid),
                  "density": [float(f"{d:.3g}") for d in dens]},
  }


def measure_point(fns, state, key) -> Dict[str, Any]:
  """{mode: (raw arrays [R, ...] of spectrum.measure, seconds)}."""
  keys = jax.random.split(key, int(np.shape(state["step"])[0]))
  out = {}
  for mode, fn in fns.items():
    t0 = time.time()
    raw = distributed.device_get(fn(state["params"], state["batch_stats"], keys))
    out[mode] = (raw, time.time() - t0)
  return out


def _flat(point, mode, raw):
  """npz entries POINT/MODE/BLOCK/{trace,nodes,weights} (BLOCK "whole")."""
  parts = {"whole": raw, **raw["blocks"]}
  return {f"{point}/{mode}/{b}/{k}": np.asarray(r[k]) for b, r in parts.items()
          for k in ("trace", "nodes", "weights")}


def summarize_arm(arrays, sizes, s, num_runs) -> Dict[str, Any]:
  """{point: {mode: {"whole", "layers": {block}, "hvps"}}} from the
  stage's spectra.npz."""
  out = {}
  for key in sorted({k.rsplit("/", 2)[0] for k in arrays}):
    point, mode = key.split("/")
    raw = lambda b: {k: arrays[f"{key}/{b}/{k}"]
                     for k in ("trace", "nodes", "weights")}
    blocks = [b for b in sizes if f"{key}/{b}/nodes" in arrays]
    dims = {"whole": sum(sizes.values()), **{b: sizes[b] for b in blocks}}
    out.setdefault(point, {})[mode] = {
        "whole": summarize(raw("whole"), dims["whole"], s),
        "layers": {b: summarize(raw(b), sizes[b], s) for b in blocks},
        "hvps": spectrum.hvps_per_call(
            num_runs, dims, num_probes=s.num_probes, num_steps=s.num_steps,
            trace_probes=s.trace_probes)}
  return out


def run_arm(config, workdir, writer, name, trainer, fns):
  """One arm as a stage (arms/NAME): measured at init, trained (resuming
  from its checkpoints), measured at the end; the quadrature's nodes,
  weights and probe values kept in arms/NAME/spectra.npz."""
  seeds = runs.seeds_of(config)
  key = prng.key(config.spectrum.seed)  # the same probes twice
  folder = workdir.file("arms", name)

  def compute():
    state = trainer.init_state(seeds)
    measured = {"init": measure_point(fns, state, key)}
    result = trainer.fit(
        state, steps=trainer.config.train.steps, data_seeds=seeds,
        writer=writer, run_labels=[{"arm": name, "seed": sd} for sd in seeds],
        checkpoint_dir=workdir.file("arms", name, "checkpoints"),
        description=name)
    measured["end"] = measure_point(fns, result.state, key)
    arrays = {k: v for p, m in measured.items() for mode, (raw, _) in m.items()
              for k, v in _flat(p, mode, raw).items()}
    paths.makedirs(folder)
    paths.save_npz(workdir.file("arms", name, SPECTRA), **arrays)
    return {"overrides": config.arms[name].to_dict(),
            "norm": trainer.config.model.norm,
            "steps": trainer.config.train.steps,
            "final": runs.eval_stats(result.evals),
            "train_seconds": result.wall_time,
            "seconds": {p: {mode: t for mode, (_, t) in m.items()}
                        for p, m in measured.items()}}

  return stages.run_stage(folder, compute, name=name)


def run(config, workdir):
  arms = build_arms(config)
  workdir.open()
  writer = MetricWriter(workdir.path)
  t_start = time.time()
  results = {}
  for name, (trainer, fns, sizes, _) in arms.items():
    r = run_arm(config, workdir, writer, name, trainer, fns)
    r["points"] = summarize_arm(
        paths.load_npz(stages.saved_file(workdir.file("arms", name, SPECTRA))),
        sizes, config.spectrum, config.seeds)
    results[name] = r
    for point in POINTS:
      for mode, m in r["points"][point].items():
        logging.info("[%s] %s, BN %s: trace %.2f, lambda_max %.3f, %.1f "
                     "outliers", name, point, mode, m["whole"]["trace"]["mean"],
                     m["whole"]["lambda_max"]["mean"],
                     m["whole"]["outliers"]["mean"])
  writer.close()
  # The end points only: the init points include compilation.
  hvps = sum(m["hvps"] for r in results.values()
             for m in r["points"]["end"].values())
  seconds = sum(sum(r["seconds"]["end"].values()) for r in results.values())
  summary = {
      "experiment": "hessian_spectrum", "dataset": config.data.name,
      "model": config.model.name, "compare": list(arms),
      "seeds": runs.seeds_of(config), "epochs": config.epochs,
      "subset_size": arms[next(iter(arms))][3], "arms": results,
      "hvps_per_second": hvps / seconds,
      "wall_time_s": time.time() - t_start, "machine": runs.machine_info(),
  }
  experiments.finish("hessian_spectrum", workdir, config, summary)
  return summary


experiments.register(
    "hessian_spectrum", validate=validate, own_fields=layers.NORM_FIELD_PATHS,
    report="jaxunknowns.implicit.hessian_spectrum_report:write",
    multi_process=True)(run)
