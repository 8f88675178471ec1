"""The instability analysis of an `imp` run (Frankle et al. 2020).

For the dense network at each rewind step k of `stability.rewind_steps`, and
for the IMP tickets of `stability.levels` (rewound to `prune.rewind_step`,
with their masks): two copies per seed trained to the end with different data
orders, then the test error along the line between them. Each analysis is a
resumable stage with its own folder under workdir/stability/; its result is
kept there as result.json, so a rerun reuses it instead of retraining.
"""

import os
from typing import Any, Dict

import jax
from absl import logging

from jaxunknowns import pruning, runs, stages
from jaxunknowns.analysis import linear_mode_connectivity
from jaxunknowns.metrics import stats


def analyse_one(trainer, config, stage_dir, state_k, labels, writer,
                description):
  """One resumable stage: two copies per seed from `state_k`, trained to the
  end, and the test error on the line between them."""
  def compute():
    out = linear_mode_connectivity(
        trainer, state_k, seeds=[l["seed"] for l in labels],
        steps=config.train.steps, writer=writer, run_labels=labels,
        workdir_for_checkpoints=os.path.join(stage_dir, "checkpoints"),
        num_points=config.stability.points, description=description)
    return {"instability": stats(out["instability"]),
            "endpoint_error": stats((out["error_a"] + out["error_b"]) / 2),
            "alphas": [float(a) for a in out["alphas"]],
            "error_mean": [float(e) for e in out["error"].mean(0)]}
  return stages.run_stage(stage_dir, compute, name=description)


def analyse(trainer, config, workdir, writer, dense_state, rewind,
            masks_by_level, start_state_fn) -> Dict[str, Any]:
  """{'dense': [...per k], 'tickets': [...per level]} for summary.json."""
  seeds = runs.seeds_of(config)
  out = {"dense": [], "tickets": []}
  snapshots = workdir.file("levels", "level_00", "snapshots")
  for k in sorted(set(config.stability.rewind_steps)):
    state_k = trainer.restore_snapshot(snapshots, k, dense_state)
    labels = [{"analysis": "stability", "network": "dense", "rewind_step": k,
               "seed": s} for s in seeds]
    result = analyse_one(trainer, config,
                          workdir.file("stability", f"dense_k{k:06d}"),
                          state_k, labels, writer, f"stability dense k={k}")
    out["dense"].append({"rewind_step": k, **result})
    logging.info("dense network, k=%d: instability %.2f points", k,
                 100 * result["instability"]["mean"])
  for level in sorted(set(config.stability.levels)):
    masks = masks_by_level[level]
    state = start_state_fn(level, masks)
    remaining = pruning.sparsity_report(
        jax.tree.map(lambda x: x[0], masks))["fraction_remaining"]
    labels = [{"analysis": "stability", "network": "ticket", "level": level,
               "seed": s} for s in seeds]
    result = analyse_one(trainer, config,
                          workdir.file("stability", f"ticket_level{level:02d}"),
                          state, labels, writer,
                          f"stability ticket level {level}")
    out["tickets"].append({"level": level, "weights_remaining": remaining,
                           "rewind_step": config.prune.rewind_step, **result})
    logging.info("ticket level %d (%.1f%% weights): instability %.2f points",
                 level, 100 * remaining, 100 * result["instability"]["mean"])
  return out
