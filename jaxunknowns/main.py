r"""Runs one experiment from an ml_collections config.

  python -m jaxunknowns.main --config=configs/imp.py --workdir=/tmp/imp
  python -m jaxunknowns.main --config=configs/train.py:mnist1d_cnn \
      --config.seeds=8 --workdir=/tmp/cnn

Kept short on purpose (as in Flax's examples): flags, device info, then the
experiment named by `config.experiment`. Mistakes a user can fix end in one
line on stderr and exit status 2, with the workdir left as it was.
"""

import logging as logging_std
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxunknowns.errors import UserError

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, e.g. configs/train.py:variant.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder of the run.")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Delete a workdir that holds a different run.")
flags.mark_flags_as_required(["config", "workdir"])


def run(config, workdir_path: str, overwrite: bool = False):
  """Validates, checks the workdir, then runs; raises UserError on bad input."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxunknowns.experiments import EXPERIMENTS  # pylint: disable=g-import-not-at-top
  from jaxunknowns.workdir import Workdir  # pylint: disable=g-import-not-at-top

  experiment = EXPERIMENTS.get(config.experiment)
  experiment.validate(config)
  workdir = Workdir(workdir_path, config, overwrite=overwrite)
  workdir.check()
  if workdir.finished and not overwrite:
    logging.info("%s already holds a finished run of this config; nothing "
                 "to do (see summary.json, or pass --overwrite to rerun)",
                 workdir.path)
    print(f"already finished: {workdir.file('summary.json')}")
    return None
  logging.info("JAX %s, process %d/%d, devices: %s", jax.__version__,
               jax.process_index(), jax.process_count(), jax.devices())
  return experiment.run(config, workdir)


class _QuietLibraries(logging_std.Filter):
  """Orbax logs every step of every save at INFO; keep its warnings only."""

  def filter(self, record):
    return record.levelno >= logging_std.WARNING or not any(
        f"/{lib}/" in record.pathname for lib in ("orbax", "etils"))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.get_absl_handler().addFilter(_QuietLibraries())
  try:
    run(_CONFIG.value, _WORKDIR.value, _OVERWRITE.value)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
