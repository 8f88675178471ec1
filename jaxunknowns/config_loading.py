"""Build a config outside the CLI (notebooks, tests, sweeps), the way
`--config=FILE:ARG --config.FIELD=VALUE` builds it on the command line.

    config = load_config("configs/imp.py:mnist1d,runlocal", {"seeds": 2})
"""

import ast
import importlib.util
import os
from typing import Any, List, Mapping, Optional

import ml_collections

from jaxunknowns import errors
from jaxunknowns.errors import UserError


# The checkout's configs/ folder, where each shipped experiment's own config
# file is (configs/NAME.py); absent from an installed wheel.
CONFIGS_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def load_config(spec: str, overrides: Optional[Mapping[str, Any]] = None,
                root: str = "") -> ml_collections.ConfigDict:
  """`spec` is 'path/to/config.py[:arg]' (relative to `root` if given);
  `overrides` maps dotted fields to values, e.g. {"optim.lr": 0.01}.
  Locked, as the command line's: a misspelt field set afterwards
  (config.train.step = 50) is an error, not a new field that no code reads
  and config.json records. A missing file or an unknown variant is a
  UserError, as on the command line; so is a file that does not run (a
  SyntaxError, a NameError in get_config), whose traceback is the user's
  own file's (the command line's loader gives its last line too)."""
  path, _, arg = spec.partition(":")
  path = os.path.join(root, path) if root else path
  if not os.path.isfile(path):
    raise UserError(f"config file {path} not found")
  try:
    config = config_module(path).get_config(arg)
  except UserError:
    raise
  except ValueError as e:  # an unknown variant (parse_config_arg)
    raise UserError(f"{path}: {e}") from e
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f"could not load {path}: {type(e).__name__}: "
                    f"{errors.first_line(e)}") from e
  config = checked(config, path)
  for dotted, value in (overrides or {}).items():
    set_field(config, dotted, value, where="override")
  config.lock()
  return config


def name_list(value) -> List[str]:
  """The names a tuple-of-names field holds. An entry may hold several,
  comma-separated (the command line turns --config.x=a,b into the one-entry
  tuple ('a,b',)); a bare string is one entry."""
  items = [value] if isinstance(value, str) else list(value)
  return [v.strip() for item in items for v in str(item).split(",")
          if v.strip()]


def from_flag(flag) -> ml_collections.ConfigDict:
  """The config of a `config_flags` flag (its holder or the Flag), read now:
  the flag loads its file lazily, so a missing or broken file surfaces here,
  as a UserError with the loader's last line."""
  try:
    config = flag.value
    # A file that failed to load is an object whose every attribute raises
    # the loader's OSError.
    getattr(config, "experiment", None)
  except OSError as e:
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    raise UserError(f"could not load the config file: {lines[-1]}") from e
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  return checked(config, config_flags.get_config_filename(
      flags.FLAGS[flag.name]))


def checked(config, path: str) -> ml_collections.ConfigDict:
  """`config` if it is one jaxunknowns can run: a ConfigDict that names
  its experiment (what every check and `main.run` read first)."""
  if config is None:
    raise UserError(f"{path}: get_config() returned None, not an "
                    f"ml_collections.ConfigDict: end it with `return config` "
                    f"(see configs/train.py)")
  if not isinstance(config, ml_collections.ConfigDict):
    raise UserError(f"{path}: get_config() returned a "
                    f"{type(config).__name__}, not an ml_collections."
                    f"ConfigDict (see configs/train.py)")
  if "experiment" not in config:
    raise UserError(f"{path}: get_config() returned a config without an "
                    f"'experiment' field: it is not a jaxunknowns config "
                    f"(see configs/train.py)")
  return config


def check_config_file(path: str):
  """UserError unless the Python file at `path` defines get_config at its
  top level, read without running it: a file that is no config (setup.py,
  a training script) would otherwise run its own code, exit or print."""
  try:
    with open(path, encoding="utf-8") as f:
      tree = ast.parse(f.read(), filename=path)
  except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
    return  # the loader's own error names it
  names = {n.name for n in tree.body if isinstance(
      n, (ast.FunctionDef, ast.AsyncFunctionDef))} | {
          t.id for n in tree.body if isinstance(n, ast.Assign)
          for t in n.targets if isinstance(t, ast.Name)} | {
              a.asname or a.name for n in tree.body
              if isinstance(n, ast.ImportFrom) for a in n.names}
  if "get_config" not in names:
    raise UserError(f"{path} defines no get_config(arg) function: it is not "
                    f"a config file (see configs/train.py)")


def check_returns_a_config(spec: str):
  """UserError (`checked`'s) if the config file of `spec` ('path[:arg]')
  returns None from get_config(arg). The command line's loader took None
  for a missing --config: a logged warning, then 'Flag --config must have
  a value other than None', two lines blaming the flag. Run before absl
  loads the file; any other failure is left to that loader's own words."""
  path, colon, arg = spec.partition(":")
  check_config_file(path)
  try:  # called as that loader calls it: without an argument if none given
    config = config_module(path).get_config(*[arg] * bool(colon))
  except Exception:  # pylint: disable=broad-except
    return
  if config is None:
    checked(config, path)


def config_module(path: str):
  """The config file at `path`, imported afresh (get_config, VARIANTS),
  once `check_config_file` has found its get_config."""
  check_config_file(path)
  module_spec = importlib.util.spec_from_file_location(
      "_jaxunknowns_config_" + os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


def set_field(config, dotted: str, value, where: str = "config"):
  """Sets one dotted field ("optim.lr") of `config` in place: the one setter
  that overrides, sweeps and grids share. An unknown field, a group of
  fields, or a value the field's type refuses is a UserError naming the
  field and `where`; a list given for a tuple field becomes a tuple."""
  *parents, leaf = dotted.split(".")
  node = config
  for i, key in enumerate(parents + [leaf]):
    if not hasattr(node, "keys") or key not in node:
      raise UserError(
          f"{where}: no such config field {dotted!r} (see the config file "
          f"and jaxunknowns/config_defaults.py)")
    if i < len(parents):
      node = node[key]
  if hasattr(node[leaf], "keys"):
    raise UserError(f"{where}: {dotted!r} is a group of fields; set its "
                    f"fields one by one (e.g. {dotted}.{next(iter(node[leaf]))})")
  if isinstance(node[leaf], tuple) and isinstance(value, list):
    value = tuple(value)
  try:
    node[leaf] = value
  except (TypeError, ValueError) as e:
    raise UserError(f"{where}: {dotted}={value!r} does not fit the field's "
                    f"type {type(node[leaf]).__name__}") from e
