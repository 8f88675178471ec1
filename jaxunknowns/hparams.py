"""Hyperparameters as a run axis: configs that differ only in fields that
change no shape train as the runs of one compiled program.

`python -m jaxunknowns.sweep ... --vmap` (sweep.py) hands the unfinished runs
of a `train` sweep to `train_together`: one Trainer whose run axis holds every
(config, seed) pair, so 8 learning rates x 4 seeds are 32 runs at once. Each
run's per-run values (`optim.RUN_HPARAMS`) live in state["hparams"]; its seed
gives its initialization and data order as in a run of its own. When the
program has finished, every run's workdir receives what a run of its own
would have written: config.json, metrics.jsonl, its initial snapshot, its
final checkpoint, summary.json and the report.

Fields that change shapes or the program (model, batch size, steps, dataset,
optimizer name, ...) cannot share a program: `program_fields` names them and
the sweep falls back to separate runs. `data.label_noise` shares one: each
run's own noisy labels (its config's, drawn as a run of its own draws them)
are rows of a per-run label array (`Trainer.use_run_labels`); the inputs
stay shared.
"""

import hashlib
import json
import os
import time
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import jax
import numpy as np
from absl import logging

from jaxunknowns import metrics as metrics_lib
from jaxunknowns import optim, paths

# The fields whose values may differ between the runs of one program.
RUN_AXIS_FIELDS = (("seed", "data.label_noise")
                   + tuple(f"optim.{h}" for h in optim.RUN_HPARAMS))


def program_fields(fields: Sequence[str]) -> List[str]:
  """The fields among `fields` that need a program of their own."""
  return [f for f in fields if f not in RUN_AXIS_FIELDS]


class RunWriters:
  """The metric writer `Trainer.fit` sees, splitting every row to the
  MetricWriter of the run (workdir) that owns it."""

  def __init__(self, writers, members: Sequence[Sequence[int]],
               run_labels: Sequence[Mapping[str, Any]]):
    # A row's run is known by its labels object, not its position: fit
    # leaves diverged runs out of later rows (on_divergence="record").
    self.writers = writers
    self.owner = {id(run_labels[i]): w for w, m in enumerate(members)
                  for i in m}

  def write(self, step, split, run_labels, values):
    positions = {}  # writer -> the positions of its runs' rows
    for p, labels in enumerate(run_labels):
      positions.setdefault(self.owner[id(labels)], []).append(p)
    for w, mine in positions.items():
      self.writers[w].write(step, split, [run_labels[p] for p in mine],
                            {k: np.asarray(v)[mine] for k, v in values.items()})

  def rewind(self, labels, step, until=None):
    for writer in self.writers:
      writer.rewind(labels, step, until=until)

  def flush(self):
    for writer in self.writers:
      writer.flush()

  def close(self):
    for writer in self.writers:
      writer.close()


def _runs_of(state, members):
  """One run's slice of the state, as a run of its own would hold it."""
  state = {k: v for k, v in state.items() if k != "hparams"}
  index = np.asarray(members)
  return jax.tree.map(lambda a: a[index], state)


def _group(configs):
  """The group's one trainer, the seeds of its runs, each config's members
  (their positions on the run axis) and the per-run values of the fields
  that vary between the configs."""
  from jaxunknowns import runs  # pylint: disable=g-import-not-at-top
  varying = [h for h in optim.RUN_HPARAMS
             if len({c.optim[h] for c in configs}) > 1]
  trainer = runs.build_trainer(configs[0], hparams=varying)
  seeds, members, values = [], [], {h: [] for h in varying}
  for config in configs:
    own = runs.seeds_of(config)
    members.append(range(len(seeds), len(seeds) + len(own)))
    seeds += own
    for h in varying:
      values[h] += [config.optim[h]] * len(own)
  return trainer, seeds, members, values


def hand_out(configs, workdirs, scratch: str, holding=None
             ) -> Tuple[Optional[int], List[str]]:
  """A killed group's progress, for its runs to resume apart (sweep
  --novmap, --executor=ray): each run's slice of the group's newest
  checkpoint, and of its initial snapshot, saved in the run's own workdir
  as a run trained alone to that step holds them. Its metrics.jsonl holds
  the group's rows of it already (RunWriters), and its fit drops those
  after that step. The scratch folder then goes. Returns the step and,
  per config, why it gets nothing and trains from step 0 ('' where it
  resumes): a config with a diverged run, which then diverges as trained
  apart, at its own step, or a workdir that no longer holds the run
  (deleted to retrain it). (None, []) where the group has nothing to hand
  out: killed before its first checkpoint, or its files unreadable; every
  run starts at step 0, and the folder stays until the sweep's runs are
  finished (sweep.drop_group_scratch).
  Building the group's trainer (its data) may fail as any run would: that
  error is raised, and the folder kept for the rerun that follows a fix.
  `holding`: per config, whether its workdir holds checkpoints already (a
  hand-out stopped partway gave it its slice): it is given nothing again,
  and resumes from its own."""
  from jaxunknowns.checkpoints import Checkpoints, abstract  # pylint: disable=g-import-not-at-top
  from jaxunknowns.errors import UserError  # pylint: disable=g-import-not-at-top
  from jaxunknowns.metrics import RowsCut  # pylint: disable=g-import-not-at-top
  group = Checkpoints(os.path.join(scratch, "checkpoints"))
  initial = Checkpoints(os.path.join(scratch, "snapshots"), max_to_keep=None)
  step = None
  try:
    if group.latest_step() is not None:
      trainer, seeds, members, values = _group(configs)
      # Its shapes only: the restores below then hold the group's state
      # twice (the snapshot and the checkpoint), not three times.
      template = abstract(trainer.init_state(seeds, hparams=values))
      try:
        step, state = group.restore_latest(template)
        first = initial.restore_kept(0, template)
      except RowsCut:  # a run's rows cut since: refused, as trained alone
        raise
      except UserError as e:
        logging.warning("the vmapped group's checkpoints in %s cannot be "
                        "handed out (%s); its runs train from step 0",
                        scratch, e)
        step = None
  finally:
    group.close()
    initial.close()
  if step is None:
    return None, []
  finite, why_not = trainer.finite_runs(state), []
  holding = holding or [False] * len(workdirs)
  for workdir, m, held in zip(workdirs, members, holding):
    why_not.append(
        "a run of it diverged" if not finite[list(m)].all() else
        "its workdir holds no run" if workdir.saved_config is None else "")
    if why_not[-1] or held:
      continue
    for folder, at, tree in (("snapshots", 0, first),
                             ("checkpoints", step, state)):
      ck = Checkpoints(workdir.file(folder), max_to_keep=None)
      ck.save(at, _runs_of(tree, m))
      if folder == "checkpoints":
        # No time behind it (the steps/s a run reports are its own, apart),
        # but the rows its metrics.jsonl holds: one cut before the resume
        # is refused, as for any checkpoint (Checkpoints._check_metrics).
        ck.keep_timing(at, 0, 0.0)
      ck.close()
  paths.rmtree(scratch)
  return step, why_not


def train_together(configs, workdirs, scratch: str, names: Sequence[str]):
  """Trains the `train` experiment of every config (same program, per-run
  values of RUN_AXIS_FIELDS) as one vmapped program and writes each
  config's `workdirs` entry (a checked, unopened workdir.Workdir); returns
  per config None, or why it failed (a run of it diverged).
  `scratch`: a folder for the group's own checkpoints (a rerun of the same
  group resumes from them; deleted when every workdir is written), which
  names its runs (`names`, `record_runs`) once their data is built."""
  from jaxunknowns import train  # pylint: disable=g-import-not-at-top
  from jaxunknowns.checkpoints import Checkpoints  # pylint: disable=g-import-not-at-top
  from jaxunknowns.metrics import MetricWriter  # pylint: disable=g-import-not-at-top
  from jaxunknowns.trainer import FitResult  # pylint: disable=g-import-not-at-top
  base = configs[0]
  trainer, seeds, members, values = _group(configs)
  record_runs(scratch, names)
  varying = list(values)
  for workdir in workdirs:
    workdir.open()
  run_labels = [{"seed": s} for s in seeds]
  writer = RunWriters([MetricWriter(w.path) for w in workdirs], members,
                      run_labels)
  if len({c.data.label_noise for c in configs}) > 1:
    from jaxunknowns.data import load_dataset  # pylint: disable=g-import-not-at-top
    labels = {c.data.label_noise: load_dataset(c.data).train.y for c in configs}
    trainer.use_run_labels(np.stack([
        labels[c.data.label_noise] for c, m in zip(configs, members)
        for _ in m]))
  state = trainer.init_state(seeds, hparams=values)
  t0 = time.time()
  logging.info("training %d configs x their seeds = %d runs as one program "
               "(per-run fields: %s)", len(configs), len(seeds),
               ", ".join(["seed"] + [f"optim.{h}" for h in varying] + [
                   "data.label_noise"] * (len({c.data.label_noise
                                               for c in configs}) > 1)))
  # One config's diverging run must not end the others' (each its own
  # config): it fails alone, with what it would have said trained alone.
  result = trainer.fit(
      state, steps=base.train.steps, data_seeds=seeds, writer=writer,
      run_labels=run_labels,
      checkpoint_dir=os.path.join(scratch, "checkpoints"),
      snapshot_dir=os.path.join(scratch, "snapshots"), snapshot_steps=(0,),
      description=f"train x{len(configs)}", on_divergence="record")
  writer.close()
  wall = time.time() - t0
  initial = Checkpoints(os.path.join(scratch, "snapshots"), max_to_keep=None)
  first = initial.restore_kept(0, result.state)  # `state` was donated
  initial.close()
  finite, outcomes = trainer.finite_runs(result.state), []
  for config, workdir, m in zip(configs, workdirs, members):
    if not finite[list(m)].all():
      outcomes.append(diverged(config, workdir))
      continue
    for folder, step, tree in (("snapshots", 0, first),
                               ("checkpoints", base.train.steps, result.state)):
      ck = Checkpoints(workdir.file(folder), max_to_keep=None)
      ck.save(step, _runs_of(tree, m))
      if folder == "checkpoints":  # as a run trained alone keeps it
        ck.keep_timing(step, step, result.wall_time)
      ck.close()
    evals = {split: {k: np.asarray(v)[list(m)] for k, v in metrics.items()}
             for split, metrics in result.evals.items()}
    own = FitResult(None, evals, result.steps_per_second, wall,
                    result.resumed_from)
    train.finish(config, workdir, trainer, own, [seeds[i] for i in m], wall,
                 trained_together={"configs": len(configs),
                                   "runs": len(seeds)})
    outcomes.append(None)
  paths.rmtree(scratch)
  return outcomes


def diverged(config, workdir) -> str:
  """A diverged config's failure, as trainer.TrainingDiverged's `what`
  says it of a run trained alone: its first "diverged" row."""
  from jaxunknowns import trainer  # pylint: disable=g-import-not-at-top
  from jaxunknowns.metrics import read_metrics, select  # pylint: disable=g-import-not-at-top
  row = min(select(read_metrics(workdir.path), split="diverged"),
            key=lambda r: r["step"])
  return trainer.diverged_text(row["loss"], row["step"],
                               {"seed": row["seed"]},
                               trainer.lower_lr(config))


SCRATCH_PREFIX = ".vmapped-"
# In a group's scratch folder: the names of its runs, so that a rerun of a
# changed sweep (whose group has another name) still finds whose
# checkpoints these are (sweep.hand_out_changed_groups), and a resume
# checks each run's metrics rows (metrics.group_members).
RUNS_FILE = metrics_lib.GROUP_RUNS_FILE


def scratch_folder(root: str, names: Sequence[str]) -> str:
  """Where a group of runs keeps its checkpoints while it trains: named by
  the runs, so rerunning the same sweep resumes the same group."""
  digest = hashlib.sha1("\n".join(names).encode()).hexdigest()[:10]
  return os.path.join(root, f"{SCRATCH_PREFIX}{digest}")


def record_runs(scratch: str, names: Sequence[str]):
  """Names the group's runs in its scratch folder (before it trains)."""
  paths.makedirs(scratch)
  paths.write_atomic(os.path.join(scratch, RUNS_FILE),
                     json.dumps(list(names)) + "\n")
