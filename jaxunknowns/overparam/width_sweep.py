"""`width_sweep`: train and test error and capacity measures vs width
(Neyshabur, Tomioka & Srebro 2015; Neyshabur, Li, Bhojanapalli, LeCun &
Srebro 2018).

What runs. For each label-noise level p of `sweep.label_noise` and each width
h of `sweep.widths` (strictly increasing), one *stage*: the model with that
width (`model_config_for_width`: an MLP with `sweep.depth` hidden layers of h
units, a conv net whose first layer has h channels, or a ResNet of width h)
trained on the data with label noise p, all `seeds` at once in one compiled
program (each width compiles once for all its seeds). A stage trains until
every seed's training loss (eval mode, whole training set) is at most
`sweep.stop_train_loss` -- Neyshabur et al. 2018 train "until the
cross-entropy loss reaches 0.01" -- checked every `sweep.check_every` steps,
or for `train.steps` steps (stop_train_loss = 0: a fixed budget, what the
double-descent experiment uses). Then the capacity measures of
analysis/capacity.py are computed from the trained and the initial weights
(the initial weights are re-created from the seeds: initialization is a pure
function of the seed, so a resumed stage measures against the same U_0).

Stages are resumable: each has its own folder stages/noise_P/width_HHHHH with
its checkpoints and, once finished, result.json; a rerun of a killed job
skips finished stages and resumes the interrupted one at its last checkpoint.

Each stage is a `stages.train_stage`; `double_descent` is this sweep with its
own defaults and report.
"""

import time
from typing import Any, Dict, Mapping, Optional

from absl import logging

from jaxunknowns import experiments, validation
from jaxunknowns.analysis import capacity
from jaxunknowns.data import load_dataset
from jaxunknowns.errors import UserError
from jaxunknowns import runs
from jaxunknowns.metrics import MetricWriter, stats
from jaxunknowns.stages import all_below, finite_stats, train_stage
from jaxunknowns.models import create_model
from jaxunknowns.trainer import Trainer

# Models whose width the sweep knows how to set, and how (see
# model_config_for_width).
MLP_MODELS = ("mlp", "residual_mlp")
CONV_MODELS = ("conv2", "conv4", "conv6", "vgg", "vgg11", "vgg13", "vgg16",
               "vgg19")
CONV_BASE_WIDTH = 64  # First-layer channels of conv2/4/6 and VGG at multiplier 1.
RESNET_MODELS = ("resnet",)
SWEEPABLE = MLP_MODELS + CONV_MODELS + RESNET_MODELS


# -----------------------------------------------------------------------------
# Config
# -----------------------------------------------------------------------------
def validate(config):
  validation.validate_base(config)
  check = validation.check
  s = config.sweep
  widths = list(s.widths)
  check(len(widths) >= 1, "sweep.widths", tuple(widths),
        "a non-empty grid of widths")
  check(all(isinstance(w, int) and not isinstance(w, bool) and w >= 1
            for w in widths), "sweep.widths", tuple(widths),
        "positive integers")
  check(all(a < b for a, b in zip(widths, widths[1:])), "sweep.widths",
        tuple(widths), "strictly increasing")
  noise = list(s.label_noise)
  check(len(noise) >= 1 and all(
      isinstance(p, (int, float)) and not isinstance(p, bool) and 0.0 <= p <= 1.0
      for p in noise) and len(set(noise)) == len(noise), "sweep.label_noise",
        tuple(noise), "distinct probabilities p in [0, 1]")
  validation.check_int(s.depth, "sweep.depth", 1, "hidden layers of the MLP")
  check(s.stop_train_loss >= 0, "sweep.stop_train_loss", s.stop_train_loss,
        ">= 0 (0 = train for train.steps)")
  validation.check_int(s.check_every, "sweep.check_every", 1)
  # A variant's own check_every (fashion_full's 2000, runlocal's 20) is the
  # file's: a fixed budget (stop_train_loss=0) must not need it reset too.
  validation.check_applies(config, "sweep.check_every", s.stop_train_loss > 0,
                           "with sweep.stop_train_loss > 0 only (the stopping "
                           "rule's checks)")
  check(0.0 <= s.interpolation_error < 1.0, "sweep.interpolation_error",
        s.interpolation_error, "in [0, 1)")
  check(config.data.label_noise == 0.0, "data.label_noise",
        config.data.label_noise,
        "0 here: the sweep sets the noise of each stage (use sweep.label_noise)")
  validation.check_applies(
      config, "data.shuffle_seed", validation.shuffle_seed_read(
          config.data, corrupts=any(p > 0 for p in noise)),
      validation.shuffle_seed_readers("sweep.label_noise"))
  check(config.train.eval_train, "train.eval_train", config.train.eval_train,
        "True (the sweep reports training error)")
  check(config.model.name in SWEEPABLE, "model.name", config.model.name,
        f"a model with a width to sweep: {', '.join(SWEEPABLE)}")
  # The stages set the model's width themselves (model_config_for_width).
  name = config.model.name
  swept = ("widths" if name in MLP_MODELS else "width_multiplier"
           if name in CONV_MODELS else "width")
  validation.check_applies(config, f"model.{swept}", False,
                           "to no stage: each stage sets it from sweep.widths")
  validation.check_applies(config, "sweep.depth", name in MLP_MODELS,
                           f"to MLPs ({', '.join(MLP_MODELS)}) only")


def model_config_for_width(config, width: int):
  """config.model with its width set to `width` (a copy)."""
  model = config.model.copy_and_resolve_references()
  name = model.name
  if name in MLP_MODELS:
    model.widths = (int(width),) * int(config.sweep.depth)
  elif name in CONV_MODELS:
    model.width_multiplier = width / CONV_BASE_WIDTH
  elif name in RESNET_MODELS:
    model.width = int(width)
  else:
    raise UserError(f"model.name={name!r} has no width to sweep; use one of "
                    f"{', '.join(SWEEPABLE)}")
  return model


def stage_config(config, *, width: Optional[int] = None,
                 label_noise: Optional[float] = None, **data_fields):
  """A copy of the config for one stage: its width, noise and data fields."""
  c = config.copy_and_resolve_references()
  if width is not None:
    c.model = model_config_for_width(config, width)
  if label_noise is not None:
    c.data.label_noise = float(label_noise)
  for k, v in data_fields.items():
    c.data[k] = v
  return c


def width_description(config) -> str:
  name = config.model.name
  if name in MLP_MODELS:
    return f"hidden units per layer ({config.sweep.depth} hidden layer" + (
        "s)" if config.sweep.depth > 1 else ")")
  if name in CONV_MODELS:
    return f"channels of the first conv layer (width_multiplier = h/{CONV_BASE_WIDTH})"
  return "channels of the first ResNet stage"


# -----------------------------------------------------------------------------
# Stages: one Trainer and one resumable training each
# -----------------------------------------------------------------------------
def capacity_measure(trainer: Trainer, state, init_params):
  """analysis.capacity.measure of every run, on the fitted training labels."""
  ds = trainer.dataset
  x, y = ds.train.x, ds.train.y
  n = trainer.config.train.max_train_eval
  if n:
    x, y = x[:n], y[:n]
  return capacity.measure(trainer.model, state["params"], init_params,
                          state["batch_stats"], x, y,
                          num_examples=len(ds.train.y))


# -----------------------------------------------------------------------------
# The sweep
# -----------------------------------------------------------------------------
def noise_name(p: float) -> str:
  return f"noise_{p:g}"


def run_sweep(config, workdir, experiment: str,
              callbacks=lambda trainer, name: ()) -> Dict[str, Any]:
  """The width sweep shared by `width_sweep` and `double_descent`: trains
  every (noise, width) stage and returns the summary. `callbacks(trainer,
  stage name)`: trainer.Callbacks to run while a stage trains."""
  widths = [int(w) for w in config.sweep.widths]
  noise_levels = [float(p) for p in config.sweep.label_noise]
  # Everything that can fail on bad input fails here, before workdir.open():
  # every dataset, every model, and the first stage's trainer.
  datasets = {p: load_dataset(stage_config(config, label_noise=p).data)
              for p in noise_levels}
  for w in widths:
    create_model(model_config_for_width(config, w),
                 datasets[noise_levels[0]].num_classes)
  first = runs.build_trainer(
      stage_config(config, width=widths[0], label_noise=noise_levels[0]),
      dataset=datasets[noise_levels[0]])
  workdir.open()
  writer = MetricWriter(workdir.path)
  seeds = runs.seeds_of(config)
  t_start = time.time()
  stop = (all_below("train", "loss", config.sweep.stop_train_loss)
          if config.sweep.stop_train_loss > 0 else None)
  num_train = len(datasets[noise_levels[0]].train.y)
  # The training error is measured on the first max_train_eval examples.
  train_evaluated = min(config.train.max_train_eval or num_train, num_train)
  curves = []
  for p in noise_levels:
    points = []
    for w in widths:
      trainer = first if first is not None else runs.build_trainer(
          stage_config(config, width=w, label_noise=p), dataset=datasets[p])
      first = None
      name = f"{noise_name(p)}/width_{w:05d}"
      result = train_stage(
          trainer, workdir=workdir, name=name,
          labels={"label_noise": p, "width": w}, seeds=seeds, writer=writer,
          steps=config.train.steps, check_every=config.sweep.check_every,
          stop=stop, callbacks=callbacks(trainer, name),
          measure=capacity_measure if config.sweep.capacity else None)
      del trainer
      points.append(point_summary(w, result))
      logging.info("[%s] width %d: mean train error %.2f%%, test error "
                   "%.2f%% after %d steps", noise_name(p), w,
                   100 * points[-1]["train_error"]["mean"],
                   100 * points[-1]["test_error"]["mean"], result["steps"])
    curves.append({"label_noise": p, "points": points,
                   "interpolation_width": interpolation_width(
                       points, config.sweep.interpolation_error,
                       train_evaluated)})
  writer.close()
  summary = {
      "experiment": experiment, "dataset": config.data.name,
      "model": config.model.name, "depth": config.sweep.depth,
      "width_means": width_description(config),
      "widths": widths, "seeds": seeds,
      "train_examples": num_train,
      "test_examples": len(datasets[noise_levels[0]].test.y),
      "curves": curves,
      "wall_time_s": time.time() - t_start,
      # Each stage's own time, kept in its result.json: the whole run's
      # training time even when this invocation only resumed it.
      "stages_wall_time_s": sum(q["wall_time_s"] for c in curves
                                for q in c["points"]),
      "machine": runs.machine_info(),
  }
  return summary


def point_summary(width: int, result: Mapping[str, Any]) -> Dict[str, Any]:
  ev = result["evals"]
  err = lambda split: stats([1.0 - a for a in ev[split]["accuracy"]])
  point = {"width": width, "num_params": result["num_params"],
           "steps": stats([result["steps"]] * len(result["seeds"])),
           "train_error": err("train"), "test_error": err("test"),
           "train_loss": stats(ev["train"]["loss"]),
           "test_loss": stats(ev["test"]["loss"]),
           "steps_per_second": result["steps_per_second"],
           "wall_time_s": result["wall_time_s"]}
  if "measures" in result:
    point["capacity"] = {k: finite_stats(v)
                         for k, v in sorted(result["measures"].items())}
  return point


def interpolation_width(points, max_train_error: float,
                        num_evaluated: int) -> Optional[int]:
  """The smallest width whose mean training error is <= max_train_error
  (and stays so at every larger width): the interpolation threshold.
  Judged in misclassified examples of the `num_evaluated` the error is
  measured on, each seed's rounded to a whole example: one example of
  10,000 is 1.00017e-4 as 1 − a float32 accuracy, and failed 1e-4."""
  limit = max_train_error * num_evaluated
  found = None
  for point in reversed(points):
    wrong = [round(e * num_evaluated) for e in point["train_error"]["per_seed"]]
    if sum(wrong) / len(wrong) <= limit + 1e-9:
      found = point["width"]
    else:
      break
  return found


def run(config, workdir):
  summary = run_sweep(config, workdir, "width_sweep")
  experiments.finish("width_sweep", workdir, config, summary)
  return summary


experiments.register(
    "width_sweep", validate=validate, own_fields=("data.shuffle_seed",),
    report="jaxunknowns.overparam.width_sweep_report:write",
    multi_process=True)(run)
