r"""Sweeps: many runs of one config, each in its own workdir, and one table.

A config file may declare sweeps beside `get_config` (as big_vision does);
fields are dotted names, so they are passed as `**{...}`:

    from jaxunknowns.sweep import grid, zipped

    def get_sweep(arg):          # the same argument as get_config
      return {
          "lr_model": grid(**{"optim.lr": [1e-3, 1e-2],
                              "model.name": ["mlp", "mnist1d_cnn"]}),
          "batch": zipped(**{"train.batch_size": [50, 100, 200],
                             "optim.lr": [5e-3, 1e-2, 2e-2]}),
      }

    python -m jaxunknowns.sweep --config=configs/train.py:mnist1d_mlp \
        --sweep=lr_model --workdir=/tmp/lr_model [--config.seeds=4] \
        [--dry_run] [--aggregate_only] [--overwrite] [--vmap | --novmap]

Every run goes to ROOT/<its overrides>, e.g. ROOT/lr=0.001,name=mlp, and runs
in-process through `jaxunknowns.main.run`, one after another. A finished run
(summary.json present) is skipped, so rerunning the command resumes a sweep.
Every run's config is built and checked before the first one starts, so a
misspelt field fails at once and writes nothing; a check that needs the
data (a batch larger than the training set) comes when its run starts, and
the sweep's last line gives its cause. At the end ROOT/sweep.json,
sweep.md and sweep.png gather the headline numbers of every run (the "final"
section of its summary.json). A `train` sweep over per-run fields only (seed,
data.label_noise, optim.lr/weight_decay/momentum/b1/b2/eps/sam_rho:
hparams.RUN_AXIS_FIELDS) trains its runs as one vmapped program
(`run_vmapped`, hparams.py) unless --novmap.

Importing this module has no side effects (no flags, no JAX), because config
files import `grid` and `zipped` from it.
"""

import copy
import hashlib
import importlib.util
import itertools
import json
import os
import re
import shlex
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence

from jaxunknowns import config_loading, errors, executors, paths, preemption
from jaxunknowns.errors import UserError
from jaxunknowns.workdir import (CONFIG_FILE, SUMMARY_FILE, Workdir,
                                 require_path)
from jaxunknowns.workdir import SWEEP_FILE as SWEEP_JSON

SWEEP_MD, SWEEP_PNG = "sweep.md", "sweep.png"
Overrides = Dict[str, Any]


# -----------------------------------------------------------------------------
# Declaring sweeps (used by config files)
# -----------------------------------------------------------------------------
def _value_lists(kind: str, fields: Mapping[str, Any]) -> Dict[str, list]:
  if not fields:
    raise ValueError(f"{kind}() needs at least one field")
  for name, values in fields.items():
    if not isinstance(values, (list, tuple)) or not values:
      raise ValueError(f"{kind}(): the values of {name!r} must be a non-empty "
                       f"list (got {values!r})")
  return {name: list(values) for name, values in fields.items()}


def grid(**fields: Sequence[Any]) -> List[Overrides]:
  """Every combination of the fields' values; the last field varies fastest.

  grid(**{"optim.lr": [1e-3, 1e-2], "seed": [0, 1]}) -> 4 override dicts.
  """
  fields = _value_lists("grid", fields)
  return [dict(zip(fields, combo))
          for combo in itertools.product(*fields.values())]


def zipped(**fields: Sequence[Any]) -> List[Overrides]:
  """The i-th run takes the i-th value of every field (equal lengths).

  zipped(**{"train.batch_size": [50, 100], "optim.lr": [5e-3, 1e-2]}) -> 2.
  """
  fields = _value_lists("zipped", fields)
  lengths = {name: len(v) for name, v in fields.items()}
  if len(set(lengths.values())) > 1:
    raise ValueError(f"zipped(): every field needs as many values "
                     f"(got {lengths})")
  return [dict(zip(fields, combo)) for combo in zip(*fields.values())]


# -----------------------------------------------------------------------------
# Loading a config file's sweeps
# -----------------------------------------------------------------------------
def load_sweeps(spec: str) -> Dict[str, List[Overrides]]:
  """{name: [overrides, ...]} from the `get_sweep(arg)` of 'file.py[:arg]'."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise UserError(f"config file {path} not found")
  module_spec = importlib.util.spec_from_file_location(
      "_jaxunknowns_sweep_" + os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_sweep"):
    raise UserError(f"{path} declares no sweeps (no get_sweep function; see "
                    f"configs/train.py for an example)")
  try:
    sweeps = module.get_sweep(arg)
  except ValueError as e:  # grid()/zipped() misuse, or an unknown variant
    raise UserError(f"{path} get_sweep({arg!r}): {e}") from e
  except Exception as e:  # pylint: disable=broad-except
    # The file's own mistake: the user's to fix, in one line, as `main`
    # says it for a get_config that fails.
    raise UserError(f"{path} get_sweep({arg!r}) failed: {type(e).__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''}") from e
  wrong = _not_sweeps(sweeps)
  if wrong:
    raise UserError(f"{path} get_sweep({arg!r}) must return a non-empty "
                    f"{{name: [{{'dotted.field': value}}, ...]}} (use grid() "
                    f"or zipped()): {wrong}")
  return sweeps


def _not_sweeps(sweeps: Any) -> str:
  """Which entry of get_sweep's `sweeps`, and which point of it, is not
  {name: [{'dotted.field': value}, ...]}, or '' if none: every sweep of the
  file is refused, so the line must say where to look."""
  if not isinstance(sweeps, dict) or not sweeps:
    return f"it returned {_short(sweeps)}"
  for name, runs in sweeps.items():
    if not isinstance(name, str):
      return f"its sweep name {name!r} is no string"
    if not isinstance(runs, list):
      return f"sweep {name!r} is {_short(runs)}, not a list of points"
    for i, r in enumerate(runs):
      if not isinstance(r, dict):
        return f"sweep {name!r}, point {i} is {_short(r)}, not a dict"
      bad = [k for k in r if not isinstance(k, str)]
      if bad:
        return (f"sweep {name!r}, point {i} ({_point(r)}) has field "
                f"{bad[0]!r}, not a dotted name")
  return ""


def _short(value: Any, text: str = "") -> str:
  """`text`, else repr(value), cut to fit in one line."""
  text = text or repr(value)
  return text if len(text) <= 80 else text[:77] + "..."


def _point(overrides: Overrides) -> str:
  """A point as the user wrote it: "optim.lr=0.1, data.name='a/b'"."""
  return _short(None, ", ".join(f"{k}={v!r}" for k, v in overrides.items()))


def choose_sweep(sweeps: Mapping[str, list], name: Optional[str],
                 config_file: str) -> str:
  valid = ", ".join(sweeps)
  if name is None:
    if len(sweeps) == 1:
      return next(iter(sweeps))
    raise UserError(f"{config_file} declares several sweeps: pass "
                    f"--sweep=NAME, one of: {valid}")
  if name not in sweeps:
    raise UserError(f"unknown sweep {name!r} of {config_file}; valid: {valid}")
  if not sweeps[name]:
    raise UserError(f"sweep {name!r} of {config_file} has no runs")
  return name


# -----------------------------------------------------------------------------
# Expanding a sweep into checked runs
# -----------------------------------------------------------------------------
def swept_fields(runs: Sequence[Overrides]) -> List[str]:
  """The sweep's fields in order of first appearance."""
  return list(dict.fromkeys(k for r in runs for k in r))


def _format_value(v: Any) -> str:
  if isinstance(v, float):
    text = f"{v:g}"
  elif isinstance(v, (list, tuple)):
    text = "-".join(_format_value(x) for x in v) or "none"
  else:
    text = str(v)
  # Folder names that need no quoting in a shell.
  return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


def run_name(overrides: Overrides, fields: Sequence[str]) -> str:
  """'lr=0.001,name=mlp': each field by its last component, unless two of
  the sweep's fields share it (model.name, optim.name: then in full)."""
  leaves = [f.rsplit(".", 1)[-1] for f in fields]
  short = {f: leaf if leaves.count(leaf) == 1 else f
           for f, leaf in zip(fields, leaves)}
  name = ",".join(f"{short[f]}={_format_value(overrides[f])}"
                  for f in fields if f in overrides) or "base"
  if len(name) > 100:  # Keep folder names readable and under OS limits.
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    name = f"{name[:90]}...{digest}"
  return name


def _shown(name: str, overrides: Overrides) -> bool:
  """Whether the run's name shows each of its values as the config file
  writes it (a float to 6 digits); not a list, a path, an object."""
  plain = lambda v: f"{v:g}" if isinstance(v, float) else str(v)
  return len(name) <= 100 and all(
      _format_value(v) == plain(v) for v in overrides.values())


def _why_alike(a: Overrides, b: Overrides) -> str:
  """Why two points' run names are equal, and what to do."""
  if a == b:
    return "the same overrides twice; drop one"
  differ = [f for f in dict.fromkeys([*a, *b]) if a.get(f) != b.get(f)]
  if all(isinstance(p.get(f), float) for f in differ for p in (a, b)):
    return ("their values differ only beyond the 6 significant digits a "
            "run's name shows: make them differ there")
  return (f"a run's folder name writes their {', '.join(differ)} alike (it "
          "keeps only letters, digits and ._+-, and joins a list's items by "
          "-): make the values differ in those")


def apply_overrides(config, overrides: Overrides, where: str):
  """A copy of the locked `config` with dotted fields set
  (`config_loading.set_field`: bad fields are UserErrors naming `where`)."""
  config = copy.deepcopy(config)
  for dotted, value in overrides.items():
    config_loading.set_field(config, dotted, value, where=where)
  return config


def _check_names(config, references):
  """Unknown registry names (model, dataset, optimizer, ...) fail here,
  before any run starts, rather than when the sweep reaches that run."""
  from jaxunknowns import losses, optim  # pylint: disable=g-import-not-at-top
  from jaxunknowns.data.core import DATASETS  # pylint: disable=g-import-not-at-top
  from jaxunknowns.models import MODELS  # pylint: disable=g-import-not-at-top
  from jaxunknowns import validation  # pylint: disable=g-import-not-at-top
  validation.check_config(config, references)
  for registry in (MODELS, DATASETS, optim.OPTIMIZERS, optim.SCHEDULES,
                   losses.LOSSES):
    *parents, leaf = registry.field.split(".")
    node = config
    for key in parents:
      node = node.get(key) if hasattr(node, "get") else None
    if node is not None and leaf in node:
      registry.get(node[leaf])


class Run:
  """One run of a sweep: its overrides, full config and workdir."""

  def __init__(self, name, overrides, config, workdir, references=None):
    self.name, self.overrides = name, overrides
    self.config, self.workdir = config, workdir
    self.references = references  # what main.run checks the fields against

  @property
  def finished(self) -> bool:
    return paths.exists(os.path.join(self.workdir, "summary.json"))

  @property
  def status(self) -> str:
    if self.finished:
      return "finished"
    return "partial" if paths.isdir(self.workdir) else "new"


def plan(base_config, runs: Sequence[Overrides], sweep: str, root: str,
         overwrite: bool = False, references=None) -> List[Run]:
  """Builds and checks every run's config and workdir (read-only);
  `references`: the config file's variants (validation.references_of)."""
  fields = swept_fields(runs)
  # Every point's folder first: two points that would share one are the
  # grid's mistake, refused as such before either point's values are checked.
  names, seen = [run_name(overrides, fields) for overrides in runs], {}
  for i, name in enumerate(names):
    if name in seen:
      j = seen[name]
      raise UserError(f"sweep {sweep!r}: points {j} ({_point(runs[j])}) and "
                      f"{i} ({_point(runs[i])}) would share the run folder "
                      f"{name!r}: {_why_alike(runs[j], runs[i])}")
    seen[name] = i
  planned = []
  for name, overrides in zip(names, runs):
    where = f"sweep {sweep!r}, run {name}"
    if not _shown(name, overrides):  # the point as written, to find it by
      where += f" ({_point(overrides)})"
    config = apply_overrides(base_config, overrides, where)
    try:
      _check_names(config, references)
      workdir = os.path.join(root, name)
      Workdir(workdir, config, overwrite=overwrite).check()
    except UserError as e:
      raise UserError(f"{where}: {e}") from e
    planned.append(Run(name, overrides, config, workdir, references))
  return planned


# What to do instead of one sweep per host of a multi-host cluster.
SEVERAL_HOSTS = ("run the sweep's runs one by one with python -m "
                 "jaxunknowns.main (each uses every host), or run the sweep on "
                 "one host, or with --executor=ray (launch/README.md)")


def check_not_a_run(root: str):
  """A run's workdir is no sweep root: the runs' folders and sweep.* would
  land among its files, which --overwrite (of the runs) never deletes."""
  found = [n for n in (CONFIG_FILE, SUMMARY_FILE)
           if paths.exists(os.path.join(root, n))]
  if found:
    raise UserError(f"sweep workdir {root} is a run's workdir (it holds "
                    f"{', '.join(found)}): give the sweep a folder of its own")


def check_root(root: str, meta: Mapping[str, Any], base_config=None):
  """A sweep root holds one sweep: its sweep.json, if readable, must be of
  this sweep (its name, config file and variant, command-line overrides),
  else aggregating would replace another sweep's table with this one's
  (read-only). Its runs may differ: a grid extended since is the same
  sweep. The config file is compared by name, as one may name it relative
  or absolute. Overrides written differently that build the same config
  (one equal to the file's own value, given or left out) are the same
  sweep: compared with `base_config`, the config this command built."""
  path = os.path.join(root, SWEEP_JSON)
  saved, _ = saved_aggregate(root)
  if saved is None:  # none, or damaged: rebuilt from the runs' summaries
    return

  def key(m, overrides=True):
    file, _, arg = str(m.get("config")).partition(":")
    # As sweep.json holds them: tuples become lists.
    return (m.get("sweep"), os.path.basename(file), arg,
            json.loads(json.dumps(m.get("base_overrides")))
            if overrides else None)

  if key(saved) == key(meta) or (
      key(saved, False) == key(meta, False) and base_config is not None
      and _same_base(meta["config"], saved["base_overrides"], base_config)):
    return
  raise UserError(
      f"sweep workdir {root} holds another sweep ({path}: sweep "
      f"{saved.get('sweep')!r} of {saved.get('config')}, command-line "
      f"overrides {saved.get('base_overrides')}); use another --workdir, "
      f"or pass --overwrite to replace its aggregate")


def _same_base(spec: str, saved_overrides: Mapping[str, Any],
               base_config) -> bool:
  """Whether the config file `spec` with a saved sweep's command-line
  overrides is `base_config`, field for field."""
  from jaxunknowns import config_loading  # pylint: disable=g-import-not-at-top
  from jaxunknowns.workdir import config_to_dict  # pylint: disable=g-import-not-at-top
  try:  # load_config's config is locked, as the command line's
    saved = apply_overrides(config_loading.load_config(spec),
                            saved_overrides, "sweep.json")
  except UserError:
    return False  # a field the file no longer has: not this sweep's base
  return config_to_dict(saved) == config_to_dict(base_config)


def command_line(spec: str, run: Run, base_overrides: Mapping[str, Any],
                 overwrite: bool = False) -> str:
  """The `jaxunknowns.main` command that reruns one run on its own."""
  args = ["python", "-m", "jaxunknowns.main", f"--config={spec}",
          f"--workdir={run.workdir}"] + ["--overwrite"] * overwrite
  for field, value in {**base_overrides, **run.overrides}.items():
    args.append(f"--config.{field}={value}")
  return shlex.join(args)


# -----------------------------------------------------------------------------
# Aggregating summaries
# -----------------------------------------------------------------------------
def _is_stats(obj) -> bool:
  return isinstance(obj, dict) and {"mean", "std"} <= set(obj)


def _collect_stats(obj, prefix: str = "", depth: int = 6) -> Dict[str, dict]:
  """Dotted name -> {mean, std, per_seed} of every statistic in nested dicts
  (lists, e.g. IMP's per-level rows, are not headline numbers). Six levels:
  sam's arms.sam.by_rho.0.05.test_accuracy is five deep, and three found
  none of its numbers."""
  out = {}
  if not isinstance(obj, dict) or depth == 0:
    return out
  for k, v in obj.items():
    if _is_stats(v):
      out[f"{prefix}{k}"] = v
    elif isinstance(v, dict):
      out.update(_collect_stats(v, f"{prefix}{k}.", depth - 1))
  return out


def headline_numbers(summary: Mapping[str, Any]) -> Dict[str, dict]:
  """The "final" section (train: {split: {metric: stats}}) if the summary
  has one, else every statistic the summary holds outside lists."""
  final = summary.get("final")
  return _collect_stats(final if isinstance(final, dict) else summary)


def _headline(metric_names: Sequence[str]) -> Optional[str]:
  for pick in ("test.accuracy",):
    if pick in metric_names:
      return pick
  return next((m for m in metric_names if "accuracy" in m),
              metric_names[0] if metric_names else None)


def _is_percent(metric: str) -> bool:
  return metric.endswith(("accuracy", "error"))


def _fmt_stat(metric: str, stat: Optional[Mapping]) -> str:
  from jaxunknowns import report  # pylint: disable=g-import-not-at-top
  if _is_percent(metric):
    return report.fmt(stat)
  return report.fmt(stat, scale=1.0, digits=4)


def _fmt_cell(v) -> str:
  return f"{v:g}" if isinstance(v, float) else str(v)


def aggregate(runs: Sequence[Run], root: str, meta: Mapping[str, Any],
              failures: Optional[Mapping[str, str]] = None):
  """Writes ROOT/sweep.json, sweep.md and sweep.png from the runs' summaries
  (`failures`: {run name: why} of the runs that failed this time; a run not
  rerun keeps the failure the last aggregate of the same sweep gave it)."""
  from jaxunknowns.metrics import read_json, write_json  # pylint: disable=g-import-not-at-top
  fields = swept_fields([r.overrides for r in runs])
  # Why a run failed, as the last aggregate said: kept while the run is not
  # rerun (--aggregate_only, report_cli), which says nothing of it. A
  # damaged one (not JSON, not a sweep's) remembers nothing: it is what
  # this aggregate replaces (it was a JSONDecodeError traceback here).
  saved = saved_aggregate(root)[0] or {}
  same = all(saved.get(k) == v for k, v in meta.items())
  failed_before = {r.get("name"): r.get("error") for r in saved.get("runs", ())
                   if same and isinstance(r, dict) and r.get("status") == "failed"}
  failed_now = {k: v for k, v in (failures or {}).items() if v}
  rows = []
  for run in runs:
    summary = read_json(os.path.join(run.workdir, "summary.json"))
    if run.name in failed_now:
      # Failed this time: a summary.json there is an earlier run's, put
      # back by --overwrite's refusal, not a result of this config.
      summary = None
    why = failed_now.get(run.name) or failed_before.get(run.name)
    if summary is not None:
      status = "finished"
    elif paths.isdir(run.workdir):  # begun, no summary.json (killed, failed)
      status = "unfinished"
    else:
      status = "missing"
    row = {"name": run.name, "workdir": run.workdir,
           "overrides": run.overrides, "values": _values_used(run, fields),
           "status": status,
           "metrics": headline_numbers(summary or {})}
    if summary is None and why:
      row.update(status="failed", error=why)
    rows.append(row)
  metric_names = list(dict.fromkeys(m for r in rows for m in r["metrics"]))
  headline = _headline(metric_names)
  if headline:  # The headline metric first, the rest as the summaries list them.
    metric_names.remove(headline)
    metric_names.insert(0, headline)
  result = {**meta, "fields": fields, "headline": headline,
            "metrics": metric_names, "runs": rows}
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_index() != 0:  # One writer, as for runs (shared workdirs).
    return result
  figure = _plot(rows, fields, headline, meta, os.path.join(root, SWEEP_PNG))
  write_json(os.path.join(root, SWEEP_JSON), result)
  _write_markdown(os.path.join(root, SWEEP_MD), result, figure)
  return result


def _values_used(run: Run, fields: Sequence[str]) -> Dict[str, Any]:
  """{swept field: the value the run trains with}: its override, else its
  config's own (a run of a mixed sweep that does not set a field keeps the
  base value, which the table and figure showed as '–' and 'None'). The
  config is the planned one, else the run's config.json (a rebuild from
  sweep.json alone); a field of neither is left out (unknown)."""
  from jaxunknowns.metrics import read_json  # pylint: disable=g-import-not-at-top
  from jaxunknowns.validation import value_at  # pylint: disable=g-import-not-at-top
  config = run.config
  if config is None:
    try:
      config = read_json(os.path.join(run.workdir, CONFIG_FILE))
    except (OSError, ValueError):
      config = None  # damaged: the value stays unknown
  values = {}
  for field in fields:
    if field in run.overrides:
      values[field] = run.overrides[field]
    elif hasattr(config, "get"):
      # As sweep.json holds values (tuples become lists).
      values[field] = json.loads(json.dumps(value_at(config, field)))
  return values


def _is_value(v) -> bool:
  """A config value as JSON holds it: a scalar, or a list of values."""
  if isinstance(v, list):
    return all(_is_value(x) for x in v)
  return v is None or isinstance(v, (str, int, float, bool))


def _not_a_sweep(saved: Any) -> str:
  """What shows that a sweep did not write sweep.json's contents `saved`
  ('is a JSON list, not an object'), or '' if it may have."""
  if not isinstance(saved, dict):
    return f"is a JSON {type(saved).__name__}, not an object"
  missing = [k for k in ("config", "sweep", "base_overrides", "runs")
             if k not in saved]
  if missing:
    return f"lacks {', '.join(missing)}"
  kinds = {"config": (str, "a string"), "sweep": (str, "a string"),
           "base_overrides": (dict, "an object"), "runs": (list, "a list")}
  for key, (kind, words) in kinds.items():
    if not isinstance(saved[key], kind):
      return f"has a {key!r} that is not {words}"
  if not saved["runs"]:
    return "lists no runs"
  names = set()
  for i, r in enumerate(saved["runs"]):
    name = r.get("name") if isinstance(r, dict) else None
    # A plain folder name: ROOT/NAME must stay inside the root.
    if (not isinstance(name, str) or name in ("", ".", "..") or
        "/" in name or os.sep in name or name in names):
      return f"has run {i} without a distinct folder name"
    overrides = r.get("overrides")
    if not isinstance(overrides, dict) or not all(
        _is_value(v) for v in overrides.values()):
      return f"has run {name!r} without overrides {{field: value}}"
    names.add(name)
  return ""


def saved_sweep(root: str, saved: Any):
  """(runs, meta) of a sweep.json's contents `saved`; a UserError naming
  what is wrong if a sweep did not write it. A run's workdir is ROOT/NAME
  (as `plan` made it), not the absolute path saved: a root copied or moved
  elsewhere is rebuilt from its own runs, not from the old place."""
  what = _not_a_sweep(saved)
  if what:
    raise UserError(f"{os.path.join(root, SWEEP_JSON)} {what}: it was not "
                    f"written by jaxunknowns.sweep; {REBUILD}")
  runs = [Run(r["name"], r["overrides"], None, os.path.join(root, r["name"]))
          for r in saved["runs"]]
  meta = {k: saved[k] for k in ("config", "sweep", "base_overrides")}
  return runs, meta


# What to do about a damaged sweep.json: the sweep's command rebuilds it
# from its runs' summaries (`saved_aggregate` lets it replace the file).
REBUILD = "rerun the sweep's command with --aggregate_only"


def saved_aggregate(root: str):
  """(ROOT/sweep.json's contents, '') if a sweep wrote it; (None, what is
  wrong) if it is damaged (not JSON: a partial copy; not a sweep's: an
  edit); (None, '') if there is none. A damaged aggregate is rebuilt from
  the runs' summaries by the sweep's command, never read (which sweep it
  was is unknown, so it guards the root against none)."""
  from jaxunknowns.metrics import read_json  # pylint: disable=g-import-not-at-top
  try:
    saved = read_json(os.path.join(root, SWEEP_JSON))
  except (OSError, ValueError) as e:
    return None, f"is not readable JSON ({type(e).__name__})"
  if saved is None:
    return None, ""
  what = _not_a_sweep(saved)
  return (None, what) if what else (saved, "")


def rebuild(root: str):
  """A function that rewrites ROOT's sweep.json/.md/.png from its runs'
  summaries (`report_cli`); reading the saved sweep.json fails first, with
  one line, if it is damaged: its runs are known only from it."""
  path = os.path.join(root, SWEEP_JSON)
  saved, what = saved_aggregate(root)
  if saved is None:
    raise UserError(f"{path} {what}: the sweep's aggregate is damaged; "
                    f"{REBUILD}" if what else f"{path} is missing; {REBUILD}")
  runs, meta = saved_sweep(root, saved)
  return lambda: aggregate(runs, root, meta)


def _write_markdown(path: str, result: Mapping, figure: Optional[str]):
  from jaxunknowns import report  # pylint: disable=g-import-not-at-top
  fields, metrics = result["fields"], result["metrics"]
  header = fields + [m + (" (%)" if _is_percent(m) else "") for m in metrics]
  table = []
  for row in result["runs"]:
    cells = [_fmt_cell(_used(row, f, "–")) for f in fields]
    if row["status"] == "finished":
      cells += [_fmt_stat(m, row["metrics"].get(m)) for m in metrics]
    else:
      cells += [{"missing": "not run"}.get(row["status"], row["status"])
                ] * len(metrics)
    table.append(cells + [f"`{row['name']}`"])
  finished = sum(r["status"] == "finished" for r in result["runs"])
  sections = [
      f"Config `{result['config']}`, sweep `{result['sweep']}`"
      + (f", command-line overrides `{result['base_overrides']}`"
         if result.get("base_overrides") else "")
      + f": {finished} of {len(result['runs'])} runs finished. Each number is "
      "the mean ± std over the run's seeds, from its summary.json.",
      report.markdown_table(header + ["workdir"], table)]
  failed = [r for r in result["runs"] if r["status"] == "failed"]
  if failed:
    sections.append("Failed runs:\n\n" + report.markdown_table(
        ["run", "why"], [[f"`{r['name']}`", r["error"]] for r in failed]))
  if not metrics:
    sections.append("The runs' summary.json files hold no {mean, std} "
                    "statistics outside lists: see each run's report.md."
                    if finished else "No run has finished yet.")
  if figure:
    sections.append(f"![{result['headline']}]({os.path.basename(figure)})")
  report.write_report(path, f"Sweep {result['sweep']}", sections)


def _numeric(values) -> bool:
  return all(isinstance(v, (int, float)) and not isinstance(v, bool)
             for v in values)


def _plot(rows, fields, headline, meta, path) -> Optional[str]:
  """The headline metric vs the first swept field, one line per combination
  of the other fields' values. None if there is nothing to plot."""
  if not fields:
    return None
  x_field, others = fields[0], fields[1:]
  # Ticks for every run whose value is known, finished or not.
  known = [r for r in rows if x_field in r["values"]]
  done = [r for r in known if headline and headline in r["metrics"]]
  if not done:
    return None
  from jaxunknowns.report import plots  # pylint: disable=g-import-not-at-top
  x_values = list(dict.fromkeys(_key(_used(r, x_field)) for r in known))
  numeric = _numeric(x_values)
  scale = 100.0 if _is_percent(headline) else 1.0
  lines: Dict[tuple, list] = {}
  for r in done:
    label = tuple(_key(_used(r, f)) for f in others)
    lines.setdefault(label, []).append(r)
  fig, ax = plots.subplots(figsize=(6, 4))
  for label, members in lines.items():
    xs = [_key(_used(r, x_field)) for r in members]
    pos = xs if numeric else [x_values.index(x) for x in xs]
    order = sorted(range(len(pos)), key=lambda i: pos[i])
    stats = [members[i]["metrics"][headline] for i in order]
    ax.errorbar([pos[i] for i in order], [s["mean"] * scale for s in stats],
                yerr=[s["std"] * scale for s in stats], marker="o", capsize=3,
                label=", ".join(f"{f}={_fmt_cell(v)}"
                                for f, v in zip(others, label)) or None)
  if numeric:
    positive = [float(v) for v in x_values if v is not None and v > 0]
    if len(positive) == len(x_values) and max(positive) >= 10 * min(positive):
      ax.set_xscale("log")  # learning rates, widths: log-spaced grids
  else:
    ax.set_xticks(range(len(x_values)))
    ax.set_xticklabels([_fmt_cell(v) for v in x_values], rotation=20)
  ax.set_xlabel(x_field)
  ax.set_ylabel(headline + (" (%)" if scale == 100.0 else ""))
  ax.set_title(f"{meta['config']} — sweep {meta['sweep']}", fontsize=9)
  ax.grid(alpha=0.3)
  if others:
    ax.legend(fontsize=8)
  fig.tight_layout()
  plots.save_figure(fig, path, dpi=110)
  return path


def _used(row: Mapping[str, Any], field: str, unknown: Any = None) -> Any:
  """A row's value of a swept field (`_values_used`: aggregate makes every
  row anew, so a row always has them)."""
  return row["values"].get(field, unknown)


def _key(v):
  """Hashable form of a swept value (lists, nested too, become tuples)."""
  return tuple(_key(x) for x in v) if isinstance(v, list) else v


# -----------------------------------------------------------------------------
# The driver
# -----------------------------------------------------------------------------
def run_sweep(spec: str, root: str, sweep: Optional[str] = None,
              overrides: Optional[Mapping[str, Any]] = None, *,
              base_config=None, dry_run: bool = False,
              aggregate_only: bool = False, overwrite: bool = False,
              executor: str = "local",
              executor_options: Optional[Mapping[str, Any]] = None,
              vmap: Optional[bool] = None,
              out=None) -> Optional[dict]:
  """Plans, runs (unless finished) and aggregates one sweep of a config.

  `spec` is 'configs/x.py[:arg]'; `overrides` are command-line style
  {dotted field: value} applied to every run; `base_config` is the config
  already built with them (the CLI passes its flag's value). `executor` is
  "local" (one after another, here) or "ray" (`executors.run_ray`, with
  `executor_options`). Runs that fail are listed in sweep.json/sweep.md and
  the sweep then raises a UserError naming them, after aggregating the rest.
  `vmap`: train the unfinished runs as one vmapped program (`run_vmapped`);
  None: whenever they can, False: never.
  """
  from jaxunknowns import config_loading  # pylint: disable=g-import-not-at-top
  out = out or sys.stdout  # Looked up per call: tests capture sys.stdout.
  root = require_path(root)
  if dry_run and aggregate_only:
    raise UserError("--dry_run and --aggregate_only exclude each other")
  if executor not in executors.EXECUTORS:
    raise UserError(f"--executor={executor!r}: must be one of "
                    f"{', '.join(executors.EXECUTORS)}")
  if aggregate_only and overwrite:
    # Nothing is rerun: the sweep would be recorded with this command's
    # overrides over runs trained with others.
    raise UserError("--aggregate_only retrains nothing, so --overwrite would "
                    "only record this command's settings over runs made "
                    "with others: drop --overwrite")
  if executor == "ray":  # before --dry_run says the sweep would run
    executors.check_ray_options(**dict(executor_options or {}))
    if vmap and not aggregate_only:  # before the root is named
      raise UserError("--vmap trains here, in one program: it does not "
                      "combine with --executor=ray")
  if paths.exists(root) and not paths.isdir(root):
    raise UserError(f"sweep workdir {root} exists and is not a folder")
  overrides = dict(overrides or {})
  config_file = spec.partition(":")[0]
  sweeps = load_sweeps(spec)
  name = choose_sweep(sweeps, sweep, config_file)
  # Each run's own value replaces the command line's, so a swept field given
  # there too would be recorded in sweep.json as an override no run used.
  clash = [f for f in overrides if f in swept_fields(sweeps[name])]
  if clash:
    raise UserError(
        f"--config.{clash[0]}={overrides[clash[0]]!r}: sweep {name!r} sets "
        f"{clash[0]} in every run, so this value would be unused; drop it "
        f"from the command line (or choose another sweep)")
  if base_config is None:
    base = config_loading.load_config(spec)
    base.lock()
    base_config = apply_overrides(base, overrides, "command line")
  root = paths.absolute(root)
  from jaxunknowns import validation  # pylint: disable=g-import-not-at-top
  # One sweep at a time in a root (a dry run writes nothing: it needs none).
  with paths.machine_lock(root, "sweep workdir", enabled=not dry_run):
    runs = plan(base_config, sweeps[name], name, root, overwrite,
                validation.references_of(spec))
    meta = {"config": spec, "sweep": name, "base_overrides": overrides}
    check_not_a_run(root)
    if not overwrite:
      check_root(root, meta, base_config)
    damaged = saved_aggregate(root)[1]
    if damaged:  # said, as its failed runs' causes are lost with it
      print(f"{os.path.join(root, SWEEP_JSON)} {damaged}: damaged; the "
            "sweep rebuilds it from its runs' summaries", file=out)
    why_not = vmap and cannot_vmap(runs)
    if why_not:  # asked for, it must be what runs
      raise UserError(f"--vmap: {why_not}, so the runs cannot train as one "
                      "vmapped program; drop --vmap")

    if dry_run:
      print(f"sweep {name!r} of {spec}: {len(runs)} runs under {root}",
            file=out)
      for run in runs:
        # What this command would do to each: --overwrite retrains a run
        # even when finished, from its first step.
        status = (f"{run.status}, --overwrite retrains it"
                  if overwrite and run.status != "new" else run.status)
        print(f"[{status}] {command_line(spec, run, overrides, overwrite)}",
              file=out)
      return None
    if executor == "ray" and not aggregate_only:  # before naming the root
      executors.check_ray_address(**dict(executor_options or {}))
    failures = {}
    created = not paths.exists(root)
    # What each run's folder was: unchanged by a failed attempt, the run
    # wrote nothing (a refusal puts back what --overwrite removed).
    folders_before = {r.name: _folder_state(r) for r in runs}
    # The root names its sweep before any run writes: one killed in its
    # first run leaves no root that another sweep could mix runs into.
    named = not aggregate_only and not paths.exists(
        os.path.join(root, SWEEP_JSON))
    if named:
      paths.makedirs(root)
      aggregate(runs, root, meta)
    if aggregate_only:
      if not any(run.finished for run in runs):
        raise UserError(f"no finished run of sweep {name!r} under {root}; "
                        f"run the sweep first (without --aggregate_only)")
    elif executor == "ray":
      hand_out_group(runs, root, overwrite, out, "--executor=ray")
      failures = executors.run_ray(runs, overwrite, out,
                                   **dict(executor_options or {}))
    else:
      if vmap is False:
        hand_out_group(runs, root, overwrite, out)
      failures, rest = ({}, runs) if vmap is False else run_vmapped(
          runs, root, overwrite, out, asked=bool(vmap))
      failures.update(executors.run_local(rest, overwrite, out))
    failures = {k: v for k, v in failures.items() if v}
    if len(failures) == len(runs) and all(
        _folder_state(r) == folders_before[r.name] for r in runs):
      # Every run stopped on bad input before writing anything (a check
      # that needs the data, e.g. a batch larger than the training set):
      # nothing to aggregate, and the sweep workdir goes back as it was.
      if created:
        paths.rmtree(root)
      elif named:
        for name_ in (SWEEP_JSON, SWEEP_MD, SWEEP_PNG):
          if paths.exists(os.path.join(root, name_)):
            paths.remove(os.path.join(root, name_))
      run_name, why = next(iter(failures.items()))
      raise UserError(f"all {len(runs)} runs of sweep {name!r} failed before "
                      f"writing anything; {run_name}: {why}")
    result = aggregate(runs, root, meta, failures)
    if all(run.finished for run in runs):
      drop_group_scratch(root)
    if failures:
      for run_name, why in failures.items():
        print(f"FAILED {run_name}: {why}", file=out)
      # The first one's cause in the line itself: a run stopped by its input
      # (a check that needs the data) fails the same way on every retry.
      first, why = next(iter(failures.items()))
      more = len(failures) - 1
      raise UserError(
          f"{len(failures)} of {len(runs)} runs of sweep {name!r} failed "
          f"({first}: {why}" + f"; {more} more in sweep.md" * bool(more)
          + f"); the others are aggregated in {os.path.join(root, SWEEP_MD)}"
          "; rerun the command to retry them" + (
              " once each diverged run's value is changed or dropped" if any(
                  executors.IN_A_SWEEP in why for why in failures.values())
              else " once what stopped them is fixed"))
    return result


def _folder_state(run: Run):
  """What changes when a run writes anything: on a local disk every file's
  path, size and time under its folder (a refusal restores the times too);
  elsewhere its config.json (an object store keeps no times to restore)."""
  if paths.is_local(run.workdir):
    return sorted((os.path.join(top, name), st.st_size, st.st_mtime_ns)
                  for top, _, names in os.walk(run.workdir)
                  for name in names
                  for st in [os.stat(os.path.join(top, name))])
  path = os.path.join(run.workdir, "config.json")
  if not paths.exists(path):
    return None
  with paths.open_file(path, "rb") as f:
    return f.read()


def _has_checkpoints(run: Run) -> bool:
  folder = os.path.join(run.workdir, "checkpoints")
  return paths.isdir(folder) and bool(paths.listdir(folder))


def drop_group_scratch(root: str):
  """Removes the checkpoints a killed vmapped group left (its scratch
  folder) once every run of the sweep is finished, trained apart since (a
  group with a run dropped from the sweep, or files that could not be
  handed out; --novmap, --executor=ray and a changed group hand its
  checkpoint out at once, `hand_out_group`, `hand_out_changed_groups`):
  nothing resumes from them then, and they held a checkpoint of every
  run."""
  from jaxunknowns import hparams  # pylint: disable=g-import-not-at-top
  for entry in paths.listdir(root):
    if entry.startswith(hparams.SCRATCH_PREFIX):
      paths.rmtree(os.path.join(root, entry))


def cannot_vmap(runs: Sequence[Run]) -> str:
  """Why the sweep's runs can never share one program (swept fields that
  change it, an experiment other than `train`), or ''."""
  from jaxunknowns import hparams  # pylint: disable=g-import-not-at-top
  other = hparams.program_fields(swept_fields([r.overrides for r in runs]))
  experiment = runs[0].config.experiment
  return (f"swept fields {', '.join(other)} change the compiled program"
          if other else f"experiment {experiment!r} is not 'train'"
          if experiment != "train" else "")


def _group_of(runs: Sequence[Run], overwrite: bool):
  """(the runs a vmapped program trains, the unfinished runs it leaves
  apart). A run with checkpoints of its own (trained apart, then killed)
  resumes from them apart: a group would train it again from step 0, and
  leave those checkpoints beside its own."""
  todo = [r for r in runs if overwrite or not r.finished]
  apart = [] if overwrite else [r for r in todo if _has_checkpoints(r)]
  return [r for r in todo if r not in apart], apart


def _hand_out(group: Sequence[Run], scratch: str, holding, out, how: str):
  """hparams.hand_out of the killed `group`'s checkpoints in `scratch`,
  saying which runs resume apart from it and which train from step 0."""
  from jaxunknowns import hparams  # pylint: disable=g-import-not-at-top
  step, why_not = hparams.hand_out(
      [r.config for r in group], [Workdir(r.workdir, r.config) for r in group],
      scratch, holding=holding)
  if step is None:
    return
  resumed = [r.name for r, why, held in zip(group, why_not, holding)
             if not why and not held]
  if resumed:
    print(f"{how}: {', '.join(resumed)} resume apart from the vmapped "
          f"program's checkpoint at step {step}", file=out)
  for r, why in zip(group, why_not):
    if why:
      print(f"{how}: {r.name} trains from step 0 ({why})", file=out)


def hand_out_changed_groups(runs: Sequence[Run], root: str, out, how: str):
  """A killed vmapped group whose runs are no longer the group this sweep
  would train now (a run added to the grid since, finished apart, or
  given its slice by a hand-out stopped partway): its scratch folder has
  another name, so its runs trained again from step 0, silently. Now each
  of its unfinished runs without checkpoints of its own gets its slice of
  the group's newest checkpoint (as --novmap gives it) and resumes apart. A
  group with a run the sweep no longer has cannot be rebuilt (its config
  is gone): it says so, and its folder goes once every run is finished
  (`drop_group_scratch`)."""
  from jaxunknowns import hparams, metrics  # pylint: disable=g-import-not-at-top
  by_name = {r.name: r for r in runs}
  now = hparams.scratch_folder(root, [r.name for r in _group_of(runs, False)[0]])
  for entry in sorted(paths.listdir(root)) if paths.isdir(root) else ():
    scratch = os.path.join(root, entry)
    names = (metrics.group_runs(scratch)
             if entry.startswith(hparams.SCRATCH_PREFIX) else None)
    if names is None or scratch == now:
      continue
    gone = [n for n in names if n not in by_name]
    group = [by_name[n] for n in names if n in by_name]
    if gone:
      print(f"{how}: the checkpoints of a killed vmapped group ({entry}) are "
            f"not resumed: its runs {', '.join(gone)} are no longer in the "
            "sweep", file=out)
    elif not all(r.finished for r in group):
      _hand_out(group, scratch, [r.finished or _has_checkpoints(r)
                                 for r in group], out, how)


def hand_out_group(runs: Sequence[Run], root: str, overwrite: bool, out,
                   how: str = "--novmap"):
  """Runs trained apart (`how`: --novmap, or --executor=ray, whose tasks
  each train one run) after a vmapped group of them was killed: each run
  resumes from its slice of the group's newest checkpoint
  (hparams.hand_out), not from step 0."""
  from jaxunknowns import hparams  # pylint: disable=g-import-not-at-top
  if overwrite:  # a later rerun of the group must not resume from it
    paths.rmtree(hparams.scratch_folder(
        root, [r.name for r in _group_of(runs, overwrite)[0]]))
    return
  # Another group's first: the runs it hands out hold checkpoints then,
  # and are no longer in the group this sweep would train now.
  hand_out_changed_groups(runs, root, out, how)
  group = _group_of(runs, overwrite)[0]
  scratch = hparams.scratch_folder(root, [r.name for r in group])
  if paths.exists(scratch):
    _hand_out(group, scratch, [False] * len(group), out, how)


def run_vmapped(runs: Sequence[Run], root: str, overwrite: bool, out,
                asked: bool):
  """Trains the unfinished runs as the runs of one compiled program when
  they may share it (hparams.py: only per-run fields swept, the `train`
  experiment, at least two runs); returns ({name: None or why it failed} of
  those runs, the runs left to the executor). Says why not when `asked`
  (--vmap) or when swept fields need programs of their own."""
  from jaxunknowns import hparams  # pylint: disable=g-import-not-at-top
  if not overwrite:
    hand_out_changed_groups(runs, root, out, "vmap")
  todo, apart = _group_of(runs, overwrite)
  scratch = hparams.scratch_folder(root, [r.name for r in todo])
  if not overwrite and paths.exists(scratch) and any(
      Workdir(r.workdir, r.config).saved_config is None for r in todo):
    # A run of the killed group deleted since, to train it again (or every
    # run, by a wipe that left the hidden scratch folder): resumed as one,
    # the group gave it its progress back. Each other run resumes apart
    # from its slice, the deleted ones train from step 0.
    _hand_out(todo, scratch, [False] * len(todo), out, "vmap")
    todo, apart = _group_of(runs, overwrite)
  if apart:
    print(f"vmap: {', '.join(r.name for r in apart)} resume from their own "
          "checkpoints, apart", file=out)
  other = hparams.program_fields(swept_fields([r.overrides for r in runs]))
  why = cannot_vmap(runs) or ("fewer than two runs to train"
                              if len(todo) < 2 else None)
  if why:
    if asked or other:
      print(f"vmap: {why}; the runs train as separate programs", file=out)
    return {}, runs
  print(f"{len(todo)} runs as one vmapped program: "
        f"{', '.join(r.name for r in todo)}", file=out)
  out.flush()
  scratch = hparams.scratch_folder(root, [r.name for r in todo])
  if overwrite:
    paths.rmtree(scratch)
  try:
    # A run that diverges fails alone; the others finish in the program.
    outcomes = [what and f"{what}; {executors.IN_A_SWEEP}"
                for what in hparams.train_together(
                    [r.config for r in todo],
                    [Workdir(r.workdir, r.config, overwrite=overwrite)
                     for r in todo], scratch, [r.name for r in todo])]
  except UserError as e:
    outcomes = [str(e)] * len(todo)
  except Exception as e:  # pylint: disable=broad-except
    if not errors.out_of_memory(e):
      raise
    # N runs in one program hold N times one run's memory: each may fit
    # alone (their config.json, written already, is the same config), from
    # its slice of a killed group's checkpoint where there is one (it was
    # deleted: every run trained from step 0).
    print(f"vmap: out of memory for {len(todo)} runs at once; the runs train "
          "as separate programs", file=out)
    hand_out_group(runs, root, overwrite, out, "vmap")
    return {}, runs
  return ({r.name: o for r, o in zip(todo, outcomes)},
          [r for r in runs if r not in todo])


# -----------------------------------------------------------------------------
# Command line
# -----------------------------------------------------------------------------
def _cli():
  """Flags are defined here, not on import: config files import this module,
  and `python -m jaxunknowns.sweep` loads it a second time through them."""
  from absl import app, flags, logging  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  # Defines --config (with --config.FIELD=VALUE), --workdir and --overwrite.
  from jaxunknowns import errors  # pylint: disable=g-import-not-at-top
  from jaxunknowns import main as main_lib  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("sweep", None, "Name of a sweep of the config's "
                      "get_sweep (optional if it declares only one).")
  flags.DEFINE_bool("dry_run", False, "Print the runs and their commands; "
                    "run and write nothing.")
  flags.DEFINE_bool("aggregate_only", False, "Rebuild sweep.json/.md/.png "
                    "from the finished runs' workdirs; run nothing.")
  flags.DEFINE_enum("executor", "local", list(executors.EXECUTORS),
                    "local: runs one after another here; ray: each run a "
                    "task on the Ray cluster (RAY_ADDRESS or a local one).")
  flags.DEFINE_string("ray_address", "", "Ray cluster address (default: "
                      "RAY_ADDRESS, else start a local cluster).")
  flags.DEFINE_float("ray_cpus", 1, "CPUs each run's Ray task reserves.")
  flags.DEFINE_float("ray_gpus", 0, "GPUs each run's Ray task reserves.")
  flags.DEFINE_string("ray_resources", "", "Other Ray resources each task "
                      "reserves, e.g. TPU=4.")
  flags.DEFINE_bool("vmap", None, "Train the runs as one vmapped program "
                    "(per-run lr, weight decay, momentum, Adam betas/eps, "
                    "SAM rho, label noise, seed); default: whenever only "
                    "such fields are swept.")
  flags.DEFINE_integer("max_retries", 2, "Times a Ray task whose worker died "
                       "(preemption, OOM kill) is retried; it resumes from "
                       "its checkpoint.")
  flag_values = flags.FLAGS

  def sweep_main(argv):
    errors.refuse_arguments(argv)
    sys.unraisablehook = main_lib.quiet_unraisables
    ray_flags = [f"--{n}" for n in ("ray_address", "ray_cpus", "ray_gpus",
                                    "ray_resources", "max_retries")
                 if flag_values[n].present]
    if ray_flags and flag_values.executor != "ray":
      # They configure Ray tasks: with the local executor none would apply.
      errors.exit_with(UserError(
          f"{', '.join(ray_flags)} apply to --executor=ray only (now "
          f"--executor={flag_values.executor}); drop them or pass "
          f"--executor=ray"))
    # main's flags for a multi-process run: a sweep starts no runtime (its
    # runs go one after another here, or to Ray), so they would be unused.
    multi = [f"--{n}" for n in ("distributed", "coordinator_address",
                                "num_processes", "process_id")
             if flag_values[n].present]
    if multi:
      errors.exit_with(UserError(
          f"{', '.join(multi)} apply to python -m jaxunknowns.main only: a "
          f"sweep starts no multi-process runtime; drop them"))
    from jaxunknowns import distributed  # pylint: disable=g-import-not-at-top
    cluster = distributed.cluster_in_environment()
    if (cluster and flag_values.executor == "local"
        and not flag_values.dry_run):
      # Each host would run the whole sweep alone into the one root.
      errors.exit_with(UserError(
          f"{cluster}: a sweep here would run once per host, every copy "
          f"writing the same runs; {SEVERAL_HOSTS}"))
    logging.get_absl_handler().addFilter(main_lib.QuietLibraries())
    if flag_values.executor == "local":  # its runs stop as main's do (Ray
      preemption.install()  # has its own SIGTERM handling in its driver)
    try:
      config_flag = flag_values["config"]
      config = config_loading.from_flag(config_flag)
      run_sweep(config_flags.get_config_filename(config_flag),
                flag_values.workdir, flag_values.sweep,
                config_flags.get_override_values(config_flag),
                base_config=config, dry_run=flag_values.dry_run,
                aggregate_only=flag_values.aggregate_only,
                overwrite=flag_values.overwrite,
                executor=flag_values.executor, vmap=flag_values.vmap,
                executor_options=dict(
                    address=flag_values.ray_address,
                    num_cpus=flag_values.ray_cpus,
                    num_gpus=flag_values.ray_gpus,
                    resources=executors.parse_resources(
                        flag_values.ray_resources),
                    max_retries=flag_values.max_retries))
    except KeyboardInterrupt:  # finished runs stay; the rest resume
      main_lib.exit_interrupted()
    except preemption.Preempted as stopped:  # the same, from its checkpoint
      main_lib.exit_preempted(stopped)
    except Exception as e:  # pylint: disable=broad-except
      # A full or unwritable disk under the root (the aggregate's own
      # files), as `main` says it for a run; anything else is a bug.
      error = errors.user_error(e, flag_values.workdir or ".")
      if error is None:
        raise
      print(f"error: {error}", file=sys.stderr)
      sys.exit(2)

  app.run(sweep_main, flags_parser=main_lib.parse_flags)


if __name__ == "__main__":
  _cli()
