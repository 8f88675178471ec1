"""Linear mode connectivity / instability analysis (Frankle et al. 2020).

From a network at step k, train two copies to the end with different SGD
noise, then walk the straight line between the two endpoints: the
*instability* is the error barrier max_alpha err((1-alpha) theta_a +
alpha theta_b) - mean(err(theta_a), err(theta_b)). A network is *stable* at
step k when the barrier is ~0 (Frankle et al.: within 2 percentage points);
IMP tickets rewound to k work when the dense network is stable at k.

How the copies differ. Copy A of run r trains with data seed `seeds[r]`,
copy B with `seeds[r] + data_seed_offset` (default 1_000_003, a prime far
above any seed an experiment uses): the data order is a pure function of the
data seed (batching.py), so B sees a different permutation of the training
set in every epoch. Frankle et al.'s "SGD noise" is data order *and* data
augmentation; in this trainer augmentation and dropout draw from the run's
rng (`fold_in(run_rng, step)`), so by default (`vary_rng=True`) copy B also
gets its own rng stream, `fold_in(run_rng, data_seed_offset)`. With
`vary_rng=False` only the data order differs.

All 2R copies (A copies first, then B copies, in run order) train in ONE
`trainer.fit` call, i.e. one compiled program, with the run labels extended
by `copy: "a"` / `copy: "b"`.
"""

from typing import Any, Dict, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxunknowns import distributed
from jaxunknowns.analysis.interpolation import evaluate_path, instability

DEFAULT_DATA_SEED_OFFSET = 1_000_003


def _num_runs(state) -> int:
  return int(np.shape(state["step"])[0])


def _two_copies(trainer, state, data_seed_offset: int, vary_rng: bool):
  """[R, ...] -> [2R, ...]: A copies, then B copies (a fresh buffer, so the
  caller's state survives the trainer's buffer donation)."""
  doubled = jax.tree.map(lambda x: jnp.concatenate([x, x]), state)
  if vary_rng:
    rng_b = jax.vmap(lambda k: jax.random.fold_in(k, data_seed_offset))(
        state["rng"])
    doubled["rng"] = jnp.concatenate([state["rng"], rng_b])
  # Committed to the mesh like init_state's output: no second trace of fit.
  return trainer.place(doubled)


def _split_copies(state, num_runs: int):
  a = jax.tree.map(lambda x: x[:num_runs], state)
  b = jax.tree.map(lambda x: x[num_runs:], state)
  return a, b


def linear_mode_connectivity(
    trainer, state_k, *, seeds: Sequence[int], steps: int, writer,
    run_labels: Sequence[Mapping[str, Any]],
    workdir_for_checkpoints: Optional[str] = None, num_points: int = 30,
    data_seed_offset: int = DEFAULT_DATA_SEED_OFFSET, vary_rng: bool = True,
    split: str = "test", chunk: Optional[int] = None,
    description: str = "") -> Dict[str, Any]:
  """Instability of each of the R runs of `state_k` (a train state at step k).

  Trains copy A (data seeds `seeds`) and copy B (data seeds
  `seeds + data_seed_offset`, and a different rng stream unless
  `vary_rng=False`) of every run from step k up to `steps` in one
  `trainer.fit` call, then evaluates `num_points` networks on the straight
  line between the A and B endpoints on `split` (see
  interpolation.evaluate_path; BatchNorm statistics interpolated linearly).
  `workdir_for_checkpoints` is passed to fit as its checkpoint_dir (resume
  with the same arguments after an interruption). `state_k` is not consumed.

  Writes to `writer`, at step `steps`, split "lmc" (one row per run, its
  labels: instability, error_a, error_b, max_error) and split
  "interpolation" (one row per run and alpha, labels + "alpha": error, loss),
  so error-vs-alpha can be plotted from metrics.jsonl.

  Returns numpy arrays and metadata:
    alphas [P]; error, loss [R, P] (error = 1 - accuracy along the path);
    instability [R] (fraction, x100 for points); error_a, error_b [R] (the
    endpoints); loss_barrier [R] (same formula on the loss);
    step_k, steps, split, seeds_a, seeds_b, run_labels (the given ones),
    copy_labels (the 2R labels used for training), data_seed_offset,
    vary_rng; and state_a, state_b (the trained endpoints, on device) and fit
    (trainer.fit's FitResult for the 2R copies).
  """
  num_runs = _num_runs(state_k)
  seeds = [int(s) for s in seeds]
  if len(seeds) != num_runs or len(run_labels) != num_runs:
    raise ValueError(f"state_k has {num_runs} runs but {len(seeds)} seeds and "
                     f"{len(run_labels)} run labels")
  seeds_b = [s + int(data_seed_offset) for s in seeds]
  if set(seeds) & set(seeds_b):
    raise ValueError(f"data_seed_offset={data_seed_offset} maps a seed of copy "
                     f"A onto another run's seed: {seeds} vs {seeds_b}")
  step_k = int(np.asarray(distributed.device_get(state_k["step"]))[0])
  if steps < step_k:
    raise ValueError(f"steps={steps} is before the state's step {step_k}")

  copy_labels = ([{**labels, "copy": "a"} for labels in run_labels] +
                 [{**labels, "copy": "b"} for labels in run_labels])
  fit = trainer.fit(_two_copies(trainer, state_k, data_seed_offset, vary_rng),
                    steps=steps, data_seeds=seeds + seeds_b, writer=writer,
                    run_labels=copy_labels,
                    checkpoint_dir=workdir_for_checkpoints,
                    description=description)
  state_a, state_b = _split_copies(fit.state, num_runs)
  path = evaluate_path(trainer, state_a, state_b, num_points=num_points,
                       split=split, chunk=chunk)
  error, loss = path["error"], path["loss"]
  inst = instability(error)
  result = {
      "alphas": path["alphas"], "error": error, "loss": loss,
      "instability": inst, "error_a": error[:, 0], "error_b": error[:, -1],
      "loss_barrier": instability(loss),
      "step_k": step_k, "steps": int(steps), "split": split,
      "seeds_a": np.asarray(seeds), "seeds_b": np.asarray(seeds_b),
      "run_labels": [dict(l) for l in run_labels], "copy_labels": copy_labels,
      "data_seed_offset": int(data_seed_offset), "vary_rng": bool(vary_rng),
      "state_a": state_a, "state_b": state_b, "fit": fit,
  }
  # rewrite: a rerun of a stage killed after these rows, before its result
  # landed, writes them again (its fit resumes at `steps`, rewinding none).
  writer.rewrite(steps, "lmc", run_labels,
                 {"instability": inst, "error_a": error[:, 0],
                  "error_b": error[:, -1], "max_error": error.max(-1),
                  "loss_barrier": result["loss_barrier"]})
  # One row per (alpha, run), alpha slowest: error[:, p] of every p in turn.
  writer.rewrite(steps, "interpolation",
                 [{**labels, "alpha": round(float(alpha), 6)}
                  for alpha in path["alphas"] for labels in run_labels],
                 {"error": np.asarray(error).T.reshape(-1),
                  "loss": np.asarray(loss).T.reshape(-1)})
  writer.flush()
  return result
