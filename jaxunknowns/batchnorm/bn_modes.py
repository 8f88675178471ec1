"""`bn_modes`: what BatchNorm's train/inference mode does at test time.

Trains a BN network (all seeds at once, through the Trainer), then evaluates
every run in the modes of analysis/bn_eval.py:

  running            running averages: the correct inference mode;
  batch b            batch statistics at eval batch size b (b down to 1):
                     the "forgot model.eval()" / `train=True` bug;
  stale, fine-tuned  the weights after `finetune_steps` more training steps
                     with the running averages of *before* them: statistics
                     frozen (not tracked, or the mutated `batch_stats` never
                     written back) while the weights moved. In train mode the
                     forward pass uses batch statistics, so training with
                     frozen running averages gives exactly these weights;
                     the same weights with their own updated averages are the
                     reference;
  shifted inputs     test inputs x -> scale * x + shift (a changed input
                     pipeline): with the clean running averages (stale), with
                     averages re-estimated on shifted training inputs (the
                     AdaBN fix), and with batch statistics.
"""

import os
import time

import jax
import numpy as np
from absl import logging

from jaxunknowns import experiments, report, validation
from jaxunknowns.analysis import bn_eval
from jaxunknowns.data import load_dataset
from jaxunknowns.errors import UserError
from jaxunknowns import runs
from jaxunknowns.batchnorm.bn_only import downsample
from jaxunknowns.metrics import MetricWriter, read_metrics, stats, write_json
from jaxunknowns.workdir import SUMMARY_FILE

BUGS = {
    "running": "none: the correct inference mode (`train=False`, "
               "PyTorch `model.eval()`)",
    "batch": "BN left in training mode at test time (Flax `train=True`, "
             "PyTorch no `model.eval()`): each batch normalized by its own "
             "statistics, so a prediction depends on its batch-mates",
    "stale_finetune": "running statistics frozen during further training "
                      "(BN buffers not tracked, or the mutated `batch_stats` "
                      "collection dropped by a custom train step)",
    "fresh_finetune": "none: the fine-tuned weights with their own updated "
                      "running statistics (reference for the row above)",
    "shift_stale": "deployment inputs no longer match the training pipeline "
                   "(another normalization, sensor or domain) while BN keeps "
                   "the training statistics",
    "shift_recalibrated": "fix: running statistics re-estimated on shifted "
                          "inputs (AdaBN), weights unchanged",
    "shift_batch": "batch statistics on shifted inputs: adapts to the shift "
                   "but has the batch-mode bug above",
}


def validate(config):
  validation.validate_base(config)
  check = validation.check
  m = config.bn_modes
  sizes = list(m.eval_batch_sizes)
  check(len(sizes) >= 1 and all(isinstance(b, int) and b >= 1 for b in sizes),
        "bn_modes.eval_batch_sizes", tuple(sizes), "positive integers")
  check(isinstance(m.finetune_steps, int) and m.finetune_steps >= 1,
        "bn_modes.finetune_steps", m.finetune_steps, "an integer >= 1")
  check(isinstance(m.recalibrate_batches, int) and m.recalibrate_batches >= 1,
        "bn_modes.recalibrate_batches", m.recalibrate_batches,
        "an integer >= 1")
  check(m.test_size >= 0, "bn_modes.test_size", m.test_size, ">= 0 (0 = all)")
  check(isinstance(m.downsample, int) and m.downsample >= 1,
        "bn_modes.downsample", m.downsample, "an integer >= 1")
  if config.model.norm not in ("default", "batch"):
    raise UserError(f"bn_modes studies BatchNorm's modes, but model.norm="
                    f"{config.model.norm!r} has no BatchNorm; use "
                    f"model.norm=batch")
  if config.model.name not in ("resnet", "vgg", "vgg11", "vgg13", "vgg16",
                               "vgg19") and config.model.norm != "batch":
    raise UserError(f"model.name={config.model.name!r} has no BatchNorm by "
                    f"default; set model.norm=batch")


def load(config):
  ds = load_dataset(config.data)
  m = config.bn_modes
  if m.downsample > 1:
    ds = downsample(ds, m.downsample)
  if m.test_size:
    ds = ds.replace(test=ds.test.take(np.arange(min(m.test_size,
                                                    len(ds.test.y)))))
  if max(m.eval_batch_sizes) > len(ds.test.y):
    raise UserError(f"bn_modes.eval_batch_sizes has {max(m.eval_batch_sizes)}"
                    f" > the {len(ds.test.y)} test examples")
  return ds


def run_one(config, model, params, stats_, ft_params, ft_stats, ds, seed):
  """Accuracy of every mode for one run."""
  m = config.bn_modes
  x, y = ds.test.x, ds.test.y
  acc = {"running": bn_eval.accuracy(
      bn_eval.running_logits(model, params, stats_, x), y)}
  for b in m.eval_batch_sizes:
    logits, _ = bn_eval.batch_stat_logits(model, params, stats_, x, b)
    acc[f"batch_{b}"] = bn_eval.accuracy(logits, y)
  acc["stale_finetune"] = bn_eval.accuracy(
      bn_eval.running_logits(model, ft_params, stats_, x), y)
  acc["fresh_finetune"] = bn_eval.accuracy(
      bn_eval.running_logits(model, ft_params, ft_stats, x), y)
  xs = m.shift_scale * x + m.shift
  acc["shift_stale"] = bn_eval.accuracy(
      bn_eval.running_logits(model, params, stats_, xs), y)
  recal = bn_eval.recalibrate(model, params, stats_,
                              m.shift_scale * ds.train.x + m.shift,
                              config.train.batch_size, m.recalibrate_batches,
                              seed=seed)
  acc["shift_recalibrated"] = bn_eval.accuracy(
      bn_eval.running_logits(model, params, recal, xs), y)
  b = max(m.eval_batch_sizes)
  acc["shift_batch"] = bn_eval.accuracy(
      bn_eval.batch_stat_logits(model, params, stats_, xs, b)[0], y)
  return acc


def run(config, workdir):
  ds = load(config)
  trainer = runs.build_trainer(config, dataset=ds)
  workdir.open()
  seeds = runs.seeds_of(config)
  writer = MetricWriter(workdir.path)
  t0 = time.time()
  labels = [{"seed": s} for s in seeds]
  steps, ft = config.train.steps, config.bn_modes.finetune_steps
  result = trainer.fit(trainer.init_state(seeds), steps=steps,
                       data_seeds=seeds, writer=writer, run_labels=labels,
                       checkpoint_dir=workdir.file("checkpoints"),
                       description="train")
  trained = jax.device_get({k: result.state[k]
                            for k in ("params", "batch_stats")})
  # Its own checkpoints: a resumed first stage must not restore a state
  # from the middle of fine-tuning.
  result = trainer.fit(result.state, steps=steps + ft, data_seeds=seeds,
                       writer=writer, run_labels=labels,
                       checkpoint_dir=workdir.file("checkpoints_finetune"),
                       description="fine-tune")
  tuned = jax.device_get({k: result.state[k]
                          for k in ("params", "batch_stats")})
  writer.close()
  train_wall = time.time() - t0
  per_run = []
  for r, seed in enumerate(seeds):
    pick = lambda tree: jax.tree.map(lambda a: a[r], tree)  # pylint: disable=cell-var-from-loop
    per_run.append(run_one(config, trainer.model, pick(trained["params"]),
                           pick(trained["batch_stats"]),
                           pick(tuned["params"]), pick(tuned["batch_stats"]),
                           ds, seed))
    logging.info("seed %d: %s", seed, per_run[-1])
  modes = {k: stats([a[k] for a in per_run]) for k in per_run[0]}
  summary = {
      "experiment": "bn_modes", "dataset": config.data.name,
      "model": config.model.name, "depth": config.model.depth,
      "width": config.model.width, "input_shape": list(ds.input_shape),
      "train_examples": len(ds.train.y), "test_examples": len(ds.test.y),
      "seeds": seeds, "steps": steps, "finetune_steps": ft,
      "parameters": trainer.param_counts, "modes": modes,
      "bugs": {k: BUGS["batch" if k.startswith("batch_") else k]
               for k in modes},
      "train_wall_time_s": train_wall, "wall_time_s": time.time() - t0,
      "machine": runs.machine_info(),
  }
  write_json(workdir.file(SUMMARY_FILE), summary)
  write_report(workdir.path, config, summary)
  return summary


def mode_label(name, config):
  m = config.bn_modes
  if name.startswith("batch_"):
    return f"batch statistics, eval batch {name[6:]}"
  return {"running": "running statistics",
          "stale_finetune": f"stale running statistics after "
                            f"{m.finetune_steps} more steps",
          "fresh_finetune": "updated running statistics after the same steps",
          "shift_stale": f"shifted inputs ({m.shift_scale:g}·x + {m.shift:g}),"
                         f" training statistics",
          "shift_recalibrated": "shifted inputs, statistics re-estimated "
                                f"({m.recalibrate_batches} batches)",
          "shift_batch": f"shifted inputs, batch statistics (batch "
                         f"{max(m.eval_batch_sizes)})"}[name]


# The papers' claim, quoted in report.md (a config's reference.claim,
# where set, replaces it).
CLAIM = (
    "Ioffe & Szegedy 2015 (Sec. 3.1): at inference BatchNorm normalizes with "
    "population statistics (running averages), so a prediction depends on "
    "its input only; in training mode each batch is normalized by its own "
    "statistics. Li et al. 2016 (AdaBN): when the test inputs come from "
    "another domain, re-estimating BN's statistics on them, weights "
    "unchanged, recovers accuracy. Neither paper gives a number for the "
    "mistakes measured here (batch statistics at small eval batches, "
    "statistics left stale after fine-tuning); the expected directions are "
    "below running statistics, the more so the smaller the batch, and below "
    "the same weights with updated statistics.")


def claim_of(config) -> str:
  ref = config.get("reference")
  return (ref.get("claim") if ref else None) or CLAIM


def _delta(modes, a, b):
  """a - b, per seed (every mode of a seed evaluates the same network)."""
  return stats(np.subtract(modes[a]["per_seed"], modes[b]["per_seed"]))


def versus_rows(modes, config):
  sizes = sorted(int(k[6:]) for k in modes if k.startswith("batch_"))
  rows = [["test accuracy (%), running statistics (the inference mode)",
           "the correct mode; no number for this model",
           report.fmt(modes["running"])]]
  for b in sorted({sizes[0], sizes[-1]}):
    rows.append([f"batch statistics at eval batch {b}, minus running "
                 f"statistics (points)",
                 "below running statistics (a prediction depends on its "
                 "batch-mates)" if b == sizes[0] else
                 "approaches running statistics as the batch grows",
                 f"{report.fmt(_delta(modes, f'batch_{b}', 'running'))}; "
                 f"accuracy {report.fmt(modes[f'batch_{b}'])}"])
  if len(sizes) > 1:
    means = [100 * modes[f"batch_{b}"]["mean"] for b in sizes]
    rising = all(x < y for x, y in zip(means, means[1:]))
    rows.append(["batch statistics: accuracy rises with the eval batch",
                 "yes (expected)", f"{'yes' if rising else 'no'}: "
                 + " → ".join(f"{m:.2f}" for m in means) + " (batch "
                 + "/".join(map(str, sizes)) + ", means)"])
  rows.append([f"stale minus updated running statistics after "
               f"{config.bn_modes.finetune_steps} fine-tuning steps (points)",
               "below (expected; no paper number)",
               report.fmt(_delta(modes, "stale_finetune", "fresh_finetune"))])
  fixed = _delta(modes, "shift_recalibrated", "shift_stale")
  rows.append(["shifted inputs: re-estimated minus training statistics "
               "(points)", "above: re-estimating recovers accuracy (AdaBN)",
               f"{report.fmt(fixed)}; {report.fmt(modes['shift_stale'])} → "
               f"{report.fmt(modes['shift_recalibrated'])}"])
  return rows


def differences(summary, config) -> str:
  """Each expected direction, held or not, from the numbers."""
  modes, out = summary["modes"], []
  sizes = sorted(int(k[6:]) for k in modes if k.startswith("batch_"))
  small = _delta(modes, f"batch_{sizes[0]}", "running")
  out.append(f"batch statistics at eval batch {sizes[0]} are "
             f"{abs(100 * small['mean']):.1f} points "
             f"{'below' if small['mean'] < 0 else 'above'} running statistics"
             + (", as expected" if small["mean"] < 0 else
                ", unlike the expected direction"))
  big = _delta(modes, f"batch_{sizes[-1]}", "running")
  if len(sizes) > 1:
    small_gap = abs(big["mean"]) <= 0.02
    within = report.within_seed_spread(big)
    out.append(f"at eval batch {sizes[-1]} the difference is "
               f"{100 * big['mean']:+.2f} ± {100 * big['std']:.2f} points"
               + (" (batch statistics of large batches are close to the "
                  "running ones" + (", within the seed spread)" if within
                                    else ")") if small_gap else
                  " (within the seed spread, but not close to the running "
                  "ones)" if within else ""))
  stale = _delta(modes, "stale_finetune", "fresh_finetune")
  worst = min(stale["per_seed"])
  out.append(f"stale statistics after {summary['finetune_steps']} more steps "
             + (f"are {-100 * stale['mean']:.2f} ± {100 * stale['std']:.2f} "
                f"points below updated ones, as expected (the cost varies by "
                f"seed, up to {-100 * worst:.1f} points)"
                if stale["mean"] < 0 else
                f"are not below updated ones ({100 * stale['mean']:+.2f} ± "
                f"{100 * stale['std']:.2f} points): the weights moved too "
                f"little in fine-tuning for the statistics to go stale"))
  shift = _delta(modes, "shift_recalibrated", "shift_stale")
  lost = _delta(modes, "shift_stale", "running")
  out.append(f"the input shift {config.bn_modes.shift_scale:g}·x + "
             f"{config.bn_modes.shift:g} changes accuracy by "
             f"{100 * lost['mean']:+.2f} points with the training statistics, "
             f"and re-estimating them changes it by {100 * shift['mean']:+.2f}"
             f" ± {100 * shift['std']:.2f} points"
             + (", the AdaBN direction" if shift["mean"] > 0 else
                ", not the AdaBN direction"))
  text = "; ".join(out)
  why = ("an MLP's BN normalizes each unit over the batch alone, so at batch "
         "1 every hidden unit is its β and every example gets the same "
         "prediction" if summary["model"] == "mlp" else
         "a convolutional BN also normalizes over the image's positions, so "
         "batch statistics at batch 1 are noisy rather than degenerate")
  return (text[0].upper() + text[1:] + ". No paper states numbers for these "
          f"modes, so only the directions compare; the sizes are this "
          f"model's ({summary['model']}-{summary['depth']} of width "
          f"{summary['width']} on {summary['dataset']} at input "
          f"{tuple(summary['input_shape'])}, {summary['steps']} steps): "
          f"{why}.")


def write_report(path, config, summary):
  """report.md, batch_size_eval.png and learning_curves.png from
  summary.json and metrics.jsonl."""
  modes = summary["modes"]
  rows = [[mode_label(k, config), report.fmt(v), summary["bugs"][k]]
          for k, v in modes.items()]
  sizes = sorted(int(k[6:]) for k in modes if k.startswith("batch_"))
  fig, ax = report.plt.subplots(figsize=(5.5, 3.8))
  acc = [modes[f"batch_{b}"] for b in sizes]
  ax.errorbar(sizes, [100 * a["mean"] for a in acc],
              yerr=[100 * a["std"] for a in acc], marker="o", capsize=3,
              label="batch statistics")
  ax.axhline(100 * modes["running"]["mean"], color="k", linestyle="--",
             label="running statistics")
  ax.set_xscale("log", base=2)
  ax.set_xlabel("eval batch size")
  ax.set_ylabel("test accuracy (%)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  report.save_figure(fig, os.path.join(path, "batch_size_eval.png"))
  report.learning_curves(read_metrics(path),
                         os.path.join(path, "learning_curves.png"))
  o = config.optim
  report.write_page(path, report.Page(
      title=f"bn_modes: {summary['dataset']}",
      claim=claim_of(config),
      config=(
          f"`{summary['model']}`-{summary['depth']} (width "
          f"{summary['width']}) with batch norm on `{summary['dataset']}` at "
          f"input {tuple(summary['input_shape'])}, "
          f"{summary['train_examples']} training / "
          f"{summary['test_examples']} test examples; {o.name} lr {o.lr}, "
          f"batch {config.train.batch_size}, {summary['steps']} steps, then "
          f"{summary['finetune_steps']} more; {len(summary['seeds'])} seeds. "
          f"Every seed's network is then evaluated in each mode of the "
          f"table below."),
      figures=[("Test accuracy with batch statistics vs eval batch size "
                "(mean ± std over seeds); dashed: running statistics",
                "batch_size_eval.png"),
               ("Loss and accuracy vs step (training, then fine-tuning), "
                "mean ± std over seeds", "learning_curves.png")],
      versus=(["quantity", "paper / expected", "ours (mean ± std over seeds)"],
              versus_rows(modes, config)),
      differences=differences(summary, config),
      details=[
          "### Test accuracy (%) by inference mode, mean ± std over seeds\n\n"
          + report.markdown_table(
              ["mode", "accuracy", "the bug it corresponds to"], rows)],
      run=report.run_line(summary, f"Training "
                          f"{summary['train_wall_time_s']:.0f} s.")))


experiments.register("bn_modes", validate=validate, report=write_report)(run)
