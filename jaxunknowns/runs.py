"""What every experiment does before and after training: build the dataset,
model and trainer from the config, and describe the machine for summary.json."""

import platform
from typing import Any, Dict, Mapping

import jax
import numpy as np
from absl import logging

from jaxunknowns.data import load_dataset
from jaxunknowns.metrics import stats
from jaxunknowns.models import create_model
from jaxunknowns.trainer import Trainer


def build_trainer(config, tx_wrapper=None, dataset=None, augment=None,
                  hparams=()) -> Trainer:
  """Dataset, model and trainer; raises UserError before touching the workdir.
  `hparams`: optimizer fields that differ per run (Trainer)."""
  dataset = dataset if dataset is not None else load_dataset(config.data)
  model = create_model(config.model, dataset.num_classes)
  trainer = Trainer(config, dataset, model, tx_wrapper=tx_wrapper,
                    augment=augment, hparams=hparams)
  logging.info("dataset %s: %d train / %d test, input %s, %d classes",
               dataset.name, len(dataset.train.y), len(dataset.test.y),
               tuple(dataset.input_shape), dataset.num_classes)
  logging.info("model %s: %d parameters, %d trainable", config.model.name,
               trainer.param_counts["total"], trainer.param_counts["trainable"])
  return trainer


def seeds_of(config):
  return [config.seed + i for i in range(config.seeds)]


def eval_stats(evals: Mapping[str, Mapping[str, np.ndarray]],
               members=None) -> Dict[str, Dict[str, Any]]:
  """{split: {metric: {mean, std, per_seed}}} over the runs in `members`."""
  out = {}
  for split, values in evals.items():
    out[split] = {}
    for name, v in values.items():
      v = np.asarray(v)
      out[split][name] = stats(v if members is None else v[list(members)])
  return out


def machine_info() -> Dict[str, Any]:
  devices = jax.devices()
  return {"platform": devices[0].platform,
          "device_kind": devices[0].device_kind,
          "num_devices": len(devices),
          "num_processes": jax.process_count(),
          "jax": jax.__version__,
          "python": platform.python_version(),
          "host": platform.machine()}
