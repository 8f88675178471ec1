"""A run's workdir: its config.json, and the rule that one workdir holds one run.

`check` is read-only and runs before anything is built; `open` creates the
folder and writes config.json, and experiments call it only after their
dataset and model were built without error, so bad input never leaves a
half-written workdir behind. The workdir may be local or on an object store
(gs://...): every file goes through `paths`.
"""

import contextvars
import json
import os
import shutil
import tempfile
from typing import Any, Callable, Dict, List, Optional, Tuple

import ml_collections
from etils import epath

from jaxunknowns import config_defaults, paths
from jaxunknowns.errors import UserError
from jaxunknowns.metrics import METRICS_FILE, read_json_object, write_json

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
SWEEP_FILE = "sweep.json"  # a sweep root's aggregate (sweep.py's SWEEP_JSON)


def _resume_may_change(experiment: Optional[str]) -> Tuple[str, ...]:
  """The fields `experiment` declares a rerun may change (none for a name
  the registry does not know: its run is refused elsewhere)."""
  from jaxunknowns import experiments  # pylint: disable=g-import-not-at-top
  try:
    return experiments.EXPERIMENTS.get(experiment).resume_may_change
  except UserError:
    return ()


def config_to_dict(config: ml_collections.ConfigDict) -> Dict[str, Any]:
  """The config as plain JSON values (tuples become lists)."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


def _flatten(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def config_differences(saved: Dict[str, Any], new: Dict[str, Any],
                       defaults: Optional[Dict[str, Any]] = None) -> List[str]:
  """Fields whose values differ. A field the saved config lacks (it was
  added to the code after that run was written) counts as equal when the
  new config leaves it at what that run did: its default (`defaults`), or
  its config_defaults.BEFORE_FIELD value where the default changed with
  the field; and under `reference.` always: a published number's
  description (its data, its protocol) trains nothing, and the run's
  report keeps the reference its summary recorded."""
  fa, fb = _flatten(saved), _flatten(new)
  fd = {**_flatten(defaults or {}), **config_defaults.BEFORE_FIELD}
  return sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k) and
                not (k not in fa and (k.startswith("reference.") or (
                    k in fd and fd[k] == fb[k]))))


def read_saved(path: str, what: str, missing: str) -> Any:
  """A JSON file a run wrote; a UserError that says what to do when it is
  missing (`missing`: the fix) or damaged."""
  if not paths.isfile(path):
    raise UserError(f"{path} is missing: {missing}")
  try:
    return json.loads(paths.read_text(path))
  except (OSError, ValueError) as e:
    raise UserError(f"{path} is not readable JSON ({type(e).__name__}): the "
                    f"{what} is damaged; rerun the experiment into a new "
                    f"--workdir") from e


def first(names: List[str], n: int) -> str:
  """The first n names, for a one-line message."""
  return ", ".join(names[:n]) + (" ..." if len(names) > n else "")


def _tuples(value):
  """config.json turned the config's tuples into lists; configs use tuples."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def load_finished(path: str):
  """(config, summary) of the finished run in `path`; UserError otherwise."""
  if not paths.isdir(path):
    what = "is a file, not a folder" if paths.exists(path) else "does not exist"
    raise UserError(f"workdir {path} {what} (pass the --workdir of a "
                    f"finished run, or a sweep root)")
  config = read_saved(os.path.join(path, CONFIG_FILE), "run's config",
                      "this is not a run's workdir (pass the --workdir the "
                      "run was started with)")
  summary = read_saved(os.path.join(path, SUMMARY_FILE), "run's summary",
                       "the run has not finished; rerun its command to resume "
                       "it, and the report is written at the end")
  if not isinstance(config, dict) or "experiment" not in config:
    raise UserError(f"{os.path.join(path, CONFIG_FILE)} names no experiment: "
                    f"this is not a jaxunknowns run's config")
  return ml_collections.ConfigDict(_tuples(config)), summary


def require_path(path: Optional[str], flag: str = "--workdir") -> str:
  """`path` unless it is empty: an empty --workdir would resolve to the
  current folder, so a run would write (and --overwrite delete) there."""
  if not str(path or "").strip():
    raise UserError(f"{flag} is empty: pass the folder of the run, e.g. "
                    f"{flag}=/tmp/run")
  return path


# What runs write under a workdir, by name: folders (orbax's and
# TensorBoard's first), and files.
RUN_FOLDERS = ("checkpoints", "snapshots", "tensorboard", "stages")
RUN_FILES = (CONFIG_FILE, SUMMARY_FILE, "metrics.jsonl", "result.json")


# What a kill inside an older version's paths.write_atomic left beside an
# .npz (NAME.tmp.npz, torn or whole; now NAME.npz.tmp): no run reads it (each
# reads its files by their full names) and the next save of NAME.npz makes
# its own. Workdir.check passes it by rather than deleting it: the check
# reads only, so a refused rerun leaves the workdir as it was.
OLD_TEMP_NPZ = ".tmp.npz"


# Folders written collectively by every process of a multi-process run
# (orbax checkpoints: each process saves the shards it holds).
COLLECTIVE_FOLDERS = ("checkpoints", "snapshots")


# Bytes a run's deepest file needs below its workdir (`_check_writable`).
PATH_ROOM = 256


# Called with a workdir's path once `Workdir.open` has emptied it for
# --overwrite (and written its config.json): a Ray task records there that
# its run was overwritten, so a retry resumes it (executors.run_one).
ON_OVERWRITE: contextvars.ContextVar[Optional[Callable[[str], Any]]] = (
    contextvars.ContextVar("on_overwrite", default=None))


class Workdir:
  """The output folder of one run.

  In a multi-process run only process 0 writes the run's files. The other
  processes run the same experiment code unchanged, but `path` and `file()`
  point them at a private scratch folder (deleted by `close`), except for
  checkpoints and snapshots, which orbax writes collectively into the shared
  folder. So no experiment needs an `if process_index() == 0` of its own.
  """

  def __init__(self, path: str, config: ml_collections.ConfigDict,
               overwrite: bool = False):
    import jax  # pylint: disable=g-import-not-at-top
    self.shared_path = paths.absolute(require_path(path))
    self.config = config
    self.overwrite = overwrite
    self.is_main = jax.process_index() == 0
    self.num_processes = jax.process_count()
    self.path = self.shared_path
    if not self.is_main:
      self.path = tempfile.mkdtemp(prefix=f"jaxunknowns_p{jax.process_index()}_")
      # A folder any code puts under the scratch that every process must
      # share (a stage's checkpoints, its result.json) maps to the same
      # folder under the shared workdir (paths.shared).
      paths.register_scratch(self.path, self.shared_path)

  def file(self, *names: str) -> str:
    if not self.is_main and any(n in COLLECTIVE_FOLDERS for n in names):
      return os.path.join(self.shared_path, *names)
    return os.path.join(self.path, *names)

  def close(self):
    """Deletes a non-main process's scratch folder."""
    if not self.is_main:
      paths.unregister_scratch(self.path)
      shutil.rmtree(self.path, ignore_errors=True)

  def _copy_shared_rows(self):
    """A non-main process's metrics.jsonl starts as the shared one: the
    rows of stages an earlier run finished are what experiments read back
    after their stages (double_descent's curves, imp's early stopping), and
    a new scratch folder holds none of them (double_descent's process 1
    failed on no curve at all). From here on every process rewinds and
    appends the same rows, so each reads what process 0 reads."""
    shared = os.path.join(self.shared_path, METRICS_FILE)
    if paths.exists(shared):
      with paths.open_file(shared, "rb") as f:
        paths.write_atomic(self.file(METRICS_FILE), f.read())

  @property
  def saved_config(self) -> Optional[Dict[str, Any]]:
    """The config.json of the run in the workdir; None if there is none. A
    damaged one (a kill mid-copy, an edit) is a UserError: which run the
    workdir holds is unknown, so resuming it could mix two configs."""
    return read_json_object(
        os.path.join(self.shared_path, CONFIG_FILE), "use another --workdir, "
        "or pass --overwrite to delete that run", "a JSON object of a config")

  @property
  def summary_path(self) -> str:
    """The run's summary.json, in the shared folder on every process (its
    log lines name this one, not a scratch copy)."""
    return os.path.join(self.shared_path, SUMMARY_FILE)

  @property
  def finished(self) -> bool:
    """summary.json is there, written under this config: a rerun that
    changed a field its experiment lets a rerun change (the article's
    stages, skip, executor) is a run still to make (Workdir.open removes
    the old summary.json), not one to report as already finished."""
    if not paths.exists(self.summary_path):
      return False
    saved = self.saved_config
    return saved is None or not self.differences(saved)[1]

  def differences(self, saved: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    """The fields where `saved` (a config.json) and this run's config
    differ: (those that make it another run, those its experiment lets a
    rerun change: `Experiment.resume_may_change`)."""
    experiment = self.config.get("experiment")
    defaults = config_defaults.FIELD_DEFAULTS.get(experiment)
    diff = config_differences(saved, config_to_dict(self.config),
                              defaults and config_to_dict(defaults))
    free = _resume_may_change(experiment)
    changeable = [k for k in diff
                  if any(k == f or k.startswith(f + ".") for f in free)]
    return [k for k in diff if k not in changeable], changeable

  def check(self):
    """Refuses a workdir that cannot be written or holds a different run
    (read-only)."""
    self._check_writable()
    if paths.exists(os.path.join(self.shared_path, SWEEP_FILE)):
      raise UserError(
          f"workdir {self.shared_path} is a sweep's root (it holds "
          f"{SWEEP_FILE}; its runs are the folders under it): give a run its "
          "own --workdir")
    self._check_not_foreign()
    if self.overwrite:  # the run there is deleted unread, damaged or not
      self._check_deletable()
      return
    saved = self.saved_config
    if saved is None:
      self._check_no_run_files()
      return
    diff, _ = self.differences(saved)
    if diff:
      raise UserError(
          f"workdir {self.shared_path} holds a run with a different config "
          f"(fields differ: {first(diff, 8)}); use another --workdir, or pass "
          f"--overwrite to delete that run")
    if self.finished:
      self._check_summary()
    else:
      self._check_contents()

  def _check_contents(self):
    """One walk of an unfinished run's workdir (by hand, not rglob: GCS
    refuses recursive patterns), before anything is written: no file where
    a run keeps a folder nor a folder where it keeps a file (resuming would
    train, rewrite metrics.jsonl, then fail on it with a traceback), and
    every finished stage's result.json readable (not a traceback once the
    experiment reaches that stage), and metrics.jsonl still holding the rows
    it held when each finished (stages.check_finished), and every .npz
    readable but an older version's temporary one (OLD_TEMP_NPZ)."""
    from jaxunknowns import stages  # pylint: disable=g-import-not-at-top
    counted = {}  # metrics rows, by run (the article's stages are runs)
    folders = [self.shared_path]
    while folders:
      for entry in sorted(epath.Path(folders.pop()).iterdir()):
        name, is_dir = entry.name, entry.is_dir()
        if name in RUN_FOLDERS and not is_dir:
          self._damaged(str(entry), "a file", "folder")
        elif name in RUN_FILES and is_dir:
          self._damaged(str(entry), "a folder", "file")
        elif name == stages.RESULT_FILE:
          stages.check_finished(str(entry), counted)
        elif name.endswith(OLD_TEMP_NPZ):
          pass  # an older version's temporary file: no run's, read by none
        elif name.endswith(".npz") and not stages.in_finished_run(str(entry)):
          # Written whole (paths.save_npz): a damaged one is outside damage,
          # refused now, not once a resumed stage has rewritten others.
          paths.load_npz(str(entry))
        elif is_dir and name not in RUN_FOLDERS[:3]:
          folders.append(str(entry))  # orbax and TensorBoard own theirs

  def _check_no_run_files(self):
    """A run writes config.json before anything else, so a workdir with a
    run's files but none is damaged (a partial copy, a deleted file): which
    config made them is unknown, and resuming could mix two runs."""
    if not paths.isdir(self.shared_path):
      return
    found = sorted(set(paths.listdir(self.shared_path))
                   & set(RUN_FOLDERS + RUN_FILES))
    if found:
      raise UserError(
          f"workdir {self.shared_path} holds a run's files ({first(found, 3)}) "
          f"but no {CONFIG_FILE}, so which config made them is unknown; move "
          "it away, or choose another --workdir")

  def holds_progress(self) -> bool:
    """Whether anything here would spare a rerun work: a checkpoint or
    snapshot step (a digit-named folder), a stage's result.json, a
    summary.json, anywhere in the tree."""
    folders = [self.shared_path] if paths.isdir(self.shared_path) else []
    while folders:
      folder = folders.pop()
      for name in paths.listdir(folder):
        path = os.path.join(folder, name)
        if name in ("result.json", SUMMARY_FILE) or (
            name.isdigit() and os.path.basename(folder) in COLLECTIVE_FOLDERS):
          return True
        if paths.isdir(path):
          folders.append(path)
    return False

  def _damaged(self, path: str, kind: str, expected: str):
    raise UserError(f"{path} is {kind} where a run keeps its {expected}: the "
                    f"workdir is damaged; move it away to resume, or pass "
                    f"--overwrite to rerun from scratch")

  def _check_summary(self):
    """A finished run's summary.json is what sweeps, the article and reports
    read back: a damaged one (an edit, a partial copy) is refused here, not
    a traceback once they read it. The run can make it again."""
    read_json_object(self.summary_path,
                     "delete it and rerun the same command: the run resumes "
                     "from its checkpoints and writes it again")

  def _check_not_foreign(self):
    """A config.json that parses but names no experiment is another
    program's file, not a run's (every run's config.json has one): it was
    called 'a run with a different config', and the advice, --overwrite,
    deleted the folder's other files. A damaged config.json stays a run's
    (a kill mid-copy), refused or deleted as before."""
    try:
      saved = self.saved_config
    except UserError:
      return
    if saved is not None and "experiment" not in saved:
      raise UserError(
          f"workdir {self.shared_path} holds a {CONFIG_FILE} that names no "
          "experiment, so it is no run of this project's (nothing there is "
          "read, resumed or deleted); choose another --workdir")

  def _check_deletable(self):
    """--overwrite deletes a run's workdir: one with its config.json. A
    folder of other files (a home folder, a typo for another path) is not
    deleted."""
    if not paths.isdir(self.shared_path) or paths.exists(
        os.path.join(self.shared_path, CONFIG_FILE)):
      return
    names = paths.listdir(self.shared_path)
    if names:
      raise UserError(
          f"workdir {self.shared_path} holds files but no run (no "
          f"{CONFIG_FILE}; it has {first(names, 3)}): --overwrite deletes "
          "only a run's workdir; choose another --workdir")

  def _check_writable(self):
    """The workdir, or the folder it will be created in, can be written.
    Read-only: a path that only creating it reveals as impossible (under
    /proc, say) is refused by `open`. An object store's permissions are
    known only by writing: its first write says."""
    if not paths.is_local(self.shared_path):
      return
    existing = self.shared_path
    while not os.path.exists(existing):
      existing = os.path.dirname(existing)
    what = "" if existing == self.shared_path else f" (under {existing})"
    if not os.path.isdir(existing):
      raise UserError(f"workdir {self.shared_path} cannot be a folder: "
                      f"{existing} exists and is not a folder; choose another "
                      f"--workdir")
    if not os.access(existing, os.W_OK | os.X_OK):
      raise UserError(f"workdir {self.shared_path} is not writable{what}: "
                      f"permission denied or a read-only filesystem; choose "
                      f"another --workdir")
    # A run's files lie deep below it: 131 characters measured in imp's
    # runlocal (levels/level_00/checkpoints/20.orbax-checkpoint-tmp/.../d/
    # <32 hex>), more in an article stage. A path that leaves less room
    # failed mid-run with ENAMETOOLONG, leaving files a rerun fails on too.
    limit = os.pathconf(existing, "PC_PATH_MAX")
    length = len(os.fsencode(self.shared_path))  # the limit is in bytes
    if length + PATH_ROOM > limit:
      raise UserError(f"workdir {self.shared_path[:60]}... is {length} "
                      f"bytes long: a run's files need it under "
                      f"{limit - PATH_ROOM} (the filesystem's limit is "
                      f"{limit}); choose a shorter --workdir")

  def open(self):
    """Creates the folder (emptied first with --overwrite) and config.json;
    then, where it was emptied, calls ON_OVERWRITE's function with it."""
    if self.num_processes > 1 and self.overwrite:
      # Nor may process 0 empty it while another still reads the old run
      # (the article's plan reads every stage's files first).
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices("jaxunknowns workdir overwrite")
    if self.is_main:
      if self.overwrite:
        paths.rmtree(self.path)
      created = not paths.exists(self.path)
      try:
        paths.makedirs(self.path)
      except OSError as e:
        raise UserError(f"workdir {self.path} cannot be created: "
                        f"{e.strerror}; choose another --workdir") from e
      saved = self.saved_config
      changed = saved is not None and self.differences(saved)[1]
      if changed:
        # A rerun that changed what its experiment lets it change:
        # config.json records the run going on, never the old settings, and
        # the old run's summary.json describes those settings. It goes
        # first: a kill between the two leaves the old config, unfinished,
        # which resumes.
        if paths.exists(self.summary_path):
          paths.remove(self.summary_path)
      if saved is None or changed:
        try:
          write_json(self.file(CONFIG_FILE), config_to_dict(self.config))
        except BaseException:
          if created:  # a full disk: the workdir goes back to absent
            paths.rmtree(self.path)
          raise
      emptied = ON_OVERWRITE.get() if self.overwrite else None
      if emptied:
        emptied(self.path)
    elif not self.overwrite:
      self._copy_shared_rows()
    self.overwrite = False
    if self.num_processes > 1:
      # No process may create a checkpoint folder before process 0 has
      # emptied the workdir, nor write a row before the others copied them.
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices("jaxunknowns workdir open")


class OpenedTogether(Workdir):
  """A run's Workdir (`main.run`'s), whose first `open` (where a run first
  writes the workdir) is where the processes of a multi-process run agree
  that none of them met bad input on the way there. Each reads its own
  data files: a dataset missing on one host stopped that process alone,
  while process 0 wrote config.json into a new workdir, then stopped on the
  lost peer ('Gloo AllGather failed'). A process that fails before it would
  open the workdir agrees in its place (`agree(error)`, from main), so every
  process raises the failing one's UserError, and nothing is written. In one
  process nothing changes. Sweeps run in one process, so their own
  Workdirs need no agreement."""
  met = False  # this process took part in the agreement

  def agree(self, error: Optional[Exception] = None):
    from jaxunknowns import distributed  # pylint: disable=g-import-not-at-top
    self.met = True
    # Where all failed (a config's error, read alike), each its own line.
    distributed.raise_on_every_process(error, own_where_all_failed=True)

  def open(self):
    if not self.met:
      self.agree()
    super().open()
