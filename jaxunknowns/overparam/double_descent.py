"""`double_descent` in Nakkiran et al.'s (2020) three forms, by
`double_descent.mode`: model-wise (the MNIST-1D authors' notebook), epoch-wise
and sample-wise.

What runs: the width sweep of `width_sweep` (same stages, same resumable
folders stages/noise_P/width_HHHHH), by default an MLP 40-h-h-10 on MNIST-1D
trained for a fixed budget (`sweep.stop_train_loss` = 0: every width gets the
same number of steps, as in the paper), once with 15% label noise and once
without. What it adds is the reading of the curves:

* the interpolation threshold of each curve: the smallest width from which
  the mean training error (on the noisy labels the network is fitted to) is
  at most `sweep.interpolation_error`;
* the test-error peak: the highest interior local maximum of the mean test
  error within two octaves of the threshold (else the highest interior local
  maximum anywhere), and how far it stands above the best smaller width and
  the best larger width.

mode = "epoch": the same stages record train and test error at
`double_descent.record_points` log-spaced steps (a trainer Callback; the
rows go to metrics.jsonl, split "over_training"; summary.json keeps every
seed's curves). The report reads each seed's test-error curve
(`over_training`) after the end of its first descent (the first recorded
step at least half way down from the first recorded error to the lowest):
its largest rise above an earlier minimum (a U's rise counts); its second
descent, the largest s such that the error rises by s above an earlier
minimum and then falls by s (a second descent shows when s >=
PEAK_MIN_GAP); and early stopping's gain, final minus best.

mode = "sample": for every width and each size n of
`double_descent.train_sizes`, a stage trains on the first n examples of the
training set (nested subsets of one noisy, normalized set: the labels and
the normalization do not change with n) for the same `train.steps`. It
reads no threshold and measures no capacity: `sweep.capacity`,
`sweep.stop_train_loss` (with `sweep.check_every`) and
`sweep.interpolation_error` are refused there.
"""

import math
import time
from typing import Any, Dict, Mapping, Optional

import numpy as np

from jaxunknowns import experiments, metrics, runs, validation
from jaxunknowns.data import load_dataset
from jaxunknowns.overparam import width_sweep
from jaxunknowns.stages import train_stage
from jaxunknowns.trainer import Callback, log_spaced_steps

MODES = ("model", "epoch", "sample")
OVER_TRAINING = "over_training"  # metrics.jsonl split of mode "epoch"

# How far (a factor in width) from the interpolation threshold a test-error
# peak may lie and still count as "near" it.
PEAK_WINDOW = 4.0
# A peak "shows" when it stands this far above the best smaller and the best
# larger width (the brief's done-when criterion: 3 points).
PEAK_MIN_GAP = 0.03


def find_peak(curve: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
  """The test-error peak of one curve (see the module docstring), or None
  when the curve has no interior local maximum."""
  points = curve["points"]
  widths = [q["width"] for q in points]
  errs = [q["test_error"]["mean"] for q in points]
  maxima = [i for i in range(1, len(points) - 1)
            if errs[i] >= errs[i - 1] and errs[i] >= errs[i + 1]]
  if not maxima:
    return None
  h_star = curve.get("interpolation_width")
  near = [i for i in maxima if h_star is not None and
          h_star / PEAK_WINDOW <= widths[i] <= h_star * PEAK_WINDOW]
  i = max(near or maxima, key=lambda j: errs[j])
  smaller = min(range(i), key=lambda j: errs[j])
  larger = min(range(i + 1, len(points)), key=lambda j: errs[j])
  gap_smaller, gap_larger = errs[i] - errs[smaller], errs[i] - errs[larger]
  return {
      "width": widths[i], "test_error": points[i]["test_error"],
      "train_error": points[i]["train_error"],
      "near_interpolation": bool(near),
      "octaves_from_interpolation": (math.log2(widths[i] / h_star)
                                     if h_star else None),
      "best_smaller": {"width": widths[smaller],
                       "test_error": points[smaller]["test_error"]},
      "best_larger": {"width": widths[larger],
                      "test_error": points[larger]["test_error"]},
      "gap_to_best_smaller": gap_smaller, "gap_to_best_larger": gap_larger,
      "shows_peak": bool(near) and min(gap_smaller, gap_larger) >= PEAK_MIN_GAP,
  }


def _positive_ints(values) -> bool:
  return all(validation.is_int(v) and v >= 1 for v in values)


def validate(config):
  width_sweep.validate(config)
  d, check = config.double_descent, validation.check
  check(d.mode in MODES, "double_descent.mode", d.mode, " or ".join(MODES))
  if d.mode == "epoch":
    validation.check_int(d.record_points, "double_descent.record_points", 3,
                         "steps at which mode='epoch' records the errors")
  else:
    check(d.record_points == 0, "double_descent.record_points",
          d.record_points, "0: only mode='epoch' records errors over training")
  sizes = tuple(d.train_sizes)
  if d.mode == "sample":
    check(len(sizes) >= 2 and _positive_ints(sizes) and all(
        a < b for a, b in zip(sizes, sizes[1:])), "double_descent.train_sizes",
          sizes, "at least two strictly increasing training-set sizes")
    check(config.data.train_size == 0, "data.train_size",
          config.data.train_size, "0 with mode='sample' (the sizes are "
          "double_descent.train_sizes)")
    # run_samples trains every (width, n) stage for the same train.steps
    # (Nakkiran et al.'s fixed budget), measures no capacity and reads no
    # interpolation threshold in width: these width-sweep settings would be
    # recorded and never used. (sweep.check_every goes with stop_train_loss:
    # width_sweep.validate refuses it without.)
    for field, what in (
        ("sweep.capacity", "the capacity measures"),
        ("sweep.stop_train_loss", "the early stop at a training loss"),
        ("sweep.interpolation_error", "the interpolation threshold in width")):
      validation.check_applies(config, field, False,
                               f"to mode='model' or 'epoch' only ({what}); "
                               "mode='sample' trains every size for "
                               "train.steps")
  else:
    check(not sizes, "double_descent.train_sizes", sizes,
          "(): only mode='sample' varies the training set")


def record_steps(config):
  """mode 'epoch': about `record_points` log-spaced steps that keep the
  trainer's compiled chunk lengths few (trainer.log_spaced_steps)."""
  return log_spaced_steps(config.train.steps,
                          config.double_descent.record_points,
                          config.train.log_every)


def error_recorder(trainer, name):
  """Train and test error of every run at the recorded steps."""
  del name
  def fn(tr, state, step):
    del step
    return {f"{split}_error": 1.0 - ev["accuracy"]
            for split, ev in tr.evaluate_all(state).items()
            if split in ("train", "test")}
  return [Callback(OVER_TRAINING, every=0, fn=fn,
                   steps=tuple(record_steps(trainer.config)))]


# The first descent (from initialization) has ended at the first recorded
# step whose test error is at least this fraction of the way down from the
# first recorded error to the curve's lowest. What comes before is the
# plateau near the initial error (chance, ~90% on 10 classes) and the first
# descent itself: a rise there is a wobble of the untrained network, and the
# "fall" after it is the first descent, not a second one (Nakkiran et al.
# 2020, Sec. 6: the rise and the second descent come after the model has
# learned). Half way cannot be reached on the plateau, whatever its wobbles,
# and is reached inside the first descent of a curve whose first descent
# covers at least half its total fall (all of ours). Taking any later step up
# to the first local minimum after it reads the same: until there the error
# only falls, and a later rise is measured from the lowest error before it.
FIRST_DESCENT_FRACTION = 0.5
READINGS = ("rise", "second_descent", "fall", "early_stopping_gain")


def first_descent_end(errors: np.ndarray) -> int:
  """The index at which the curve's first descent has ended (above)."""
  e = np.asarray(errors, dtype=float)
  target = e[0] - FIRST_DESCENT_FRACTION * (e[0] - e.min())
  return int(np.argmax(e <= target))


def over_training(errors: np.ndarray) -> Dict[str, Any]:
  """One seed's test-error curve over the recorded steps (module doc), after
  its first descent ended at d = first_descent_end: `rise`, the largest
  e[k] - min e[d:k]; `second_descent`, the largest min(rise at k, e[k] -
  min e[k:]) (a rise above an earlier minimum and the fall after it),
  `fall` and `peak_index` that peak's (0 and None where no step both rises
  and falls); `early_stopping_gain`, e[-1] - min e."""
  e = np.asarray(errors, dtype=float)
  d = first_descent_end(e)
  after = e[d:]
  rise = after - np.minimum.accumulate(after)  # above the lowest before
  fall = after - np.minimum.accumulate(after[::-1])[::-1]  # to the lowest after
  both = np.minimum(rise, fall)
  k = int(np.argmax(both))
  peak = bool(both[k] > 0)
  return {"rise": float(rise.max()),
          "second_descent": float(both[k]) if peak else 0.0,
          "fall": float(fall[k]) if peak else 0.0,
          "peak_index": d + k if peak else None, "first_descent_end": d,
          "early_stopping_gain": float(e[-1] - e.min())}


def read_curves(over: Mapping[str, Any]) -> Dict[str, Any]:
  """{reading: mean, std, per_seed} of `over_training` over the seeds'
  test-error curves of one point's summary["over_training"]."""
  readings = [over_training(e) for e in over["test_error"]["per_seed"]]
  return {k: metrics.stats([r[k] for r in readings]) for k in READINGS}


def add_curves(summary, workdir):
  """mode 'epoch': every point's recorded curves (the report reads them:
  `read_curves`)."""
  rows = list(metrics.read_metrics(workdir.path))
  for c in summary["curves"]:
    for q in c["points"]:
      labels = {"label_noise": c["label_noise"], "width": q["width"]}
      curves = {k: metrics.curves(rows, OVER_TRAINING, k, **labels)
                for k in ("train_error", "test_error")}
      seeds = sorted(curves["test_error"])
      steps = sorted(curves["test_error"][seeds[0]])
      per_seed = {k: np.array([[v[s][t] for t in steps] for s in seeds])
                  for k, v in curves.items()}
      q["over_training"] = {
          "steps": steps,
          **{k: {"mean": v.mean(0).tolist(), "per_seed": v.tolist()}
             for k, v in per_seed.items()}}


def run_samples(config, workdir) -> Dict[str, Any]:
  """mode 'sample': a stage per (noise, width, size) on nested subsets."""
  widths = [int(w) for w in config.sweep.widths]
  sizes = [int(n) for n in config.double_descent.train_sizes]
  full = {p: load_dataset(width_sweep.stage_config(config, label_noise=p).data)
          for p in map(float, config.sweep.label_noise)}
  for p, ds in full.items():
    validation.check(sizes[-1] <= len(ds.train.y), "double_descent.train_sizes",
                     tuple(sizes), f"at most the {len(ds.train.y)} training "
                     "examples")
  seeds, t_start = runs.seeds_of(config), time.time()
  trainers = {(p, w, n): runs.build_trainer(
      width_sweep.stage_config(config, width=w, label_noise=p),
      dataset=ds.replace(train=ds.train.take(slice(0, n))))
              for p, ds in full.items() for w in widths for n in sizes}
  workdir.open()
  writer = metrics.MetricWriter(workdir.path)
  curves = []
  for p in full:
    for w in widths:
      points = []
      for n in sizes:
        result = train_stage(
            trainers.pop((p, w, n)), workdir=workdir, seeds=seeds,
            name=f"{width_sweep.noise_name(p)}/width_{w:05d}/n_{n:06d}",
            labels={"label_noise": p, "width": w, "train_size": n},
            writer=writer, steps=config.train.steps)
        points.append({"train_size": n,
                       **width_sweep.point_summary(w, result)})
      curves.append({"label_noise": p, "width": w, "points": points})
  writer.close()
  return {
      "experiment": "double_descent", "dataset": config.data.name,
      "model": config.model.name, "depth": config.sweep.depth,
      "width_means": width_sweep.width_description(config), "widths": widths,
      "train_sizes": sizes, "seeds": seeds,
      "train_examples": sizes[-1], "curves": curves,
      "wall_time_s": time.time() - t_start,
      "stages_wall_time_s": sum(q["wall_time_s"] for c in curves
                                for q in c["points"]),
      "machine": runs.machine_info()}


def run(config, workdir):
  mode = config.double_descent.mode
  if mode == "sample":
    summary = run_samples(config, workdir)
  else:
    summary = width_sweep.run_sweep(
        config, workdir, "double_descent",
        **({"callbacks": error_recorder} if mode == "epoch" else {}))
    for curve in summary["curves"]:
      curve["peak"] = find_peak(curve)
    if mode == "epoch":
      add_curves(summary, workdir)
  summary["mode"] = mode
  if mode != "sample":  # the level the curves' thresholds were read at
    summary["interpolation_error"] = config.sweep.interpolation_error
  experiments.finish("double_descent", workdir, config, summary)
  return summary


experiments.register(
    "double_descent", validate=validate, own_fields=("data.shuffle_seed",),
    report="jaxunknowns.overparam.double_descent_report:write",
    multi_process=True)(run)
