"""A run's workdir: its config.json, and the rule that one workdir holds one run.

`check` is read-only and runs before anything is built; `open` creates the
folder and writes config.json, and experiments call it only after their
dataset and model were built without error, so bad input never leaves a
half-written workdir behind.
"""

import json
import os
import shutil
from typing import Any, Dict, List, Optional

import ml_collections

from jaxunknowns.errors import UserError
from jaxunknowns.metrics import read_json, write_json

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"


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


def config_differences(a: Dict[str, Any], b: Dict[str, Any]) -> List[str]:
  fa, fb = _flatten(a), _flatten(b)
  return sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))


class Workdir:
  """The output folder of one run."""

  def __init__(self, path: str, config: ml_collections.ConfigDict,
               overwrite: bool = False):
    self.path = os.path.abspath(path)
    self.config = config
    self.overwrite = overwrite

  def file(self, *names: str) -> str:
    return os.path.join(self.path, *names)

  @property
  def saved_config(self) -> Optional[Dict[str, Any]]:
    return read_json(self.file(CONFIG_FILE))

  @property
  def finished(self) -> bool:
    return os.path.exists(self.file(SUMMARY_FILE))

  def check(self):
    """Refuses a workdir that holds a different run (read-only)."""
    if os.path.exists(self.path) and not os.path.isdir(self.path):
      raise UserError(f"workdir {self.path} exists and is not a folder")
    saved = self.saved_config
    if saved is None or self.overwrite:
      return
    diff = config_differences(saved, config_to_dict(self.config))
    if diff:
      shown = ", ".join(diff[:8]) + (" ..." if len(diff) > 8 else "")
      raise UserError(
          f"workdir {self.path} holds a run with a different config "
          f"(fields differ: {shown}); use another --workdir, or pass "
          f"--overwrite to delete that run")

  def open(self):
    """Creates the folder (emptied first with --overwrite) and config.json."""
    if self.overwrite and os.path.exists(self.path):
      shutil.rmtree(self.path)
      self.overwrite = False
    os.makedirs(self.path, exist_ok=True)
    if self.saved_config is None:
      write_json(self.file(CONFIG_FILE), config_to_dict(self.config))
