"""Build a config outside the CLI (notebooks, tests, sweeps), the way
`--config=FILE:ARG --config.FIELD=VALUE` builds it on the command line.

    config = load_config("configs/imp.py:mnist1d,runlocal", {"seeds": 2})
"""

import importlib.util
import os
from typing import Any, Mapping, Optional

import ml_collections


def load_config(spec: str, overrides: Optional[Mapping[str, Any]] = None,
                root: str = "") -> ml_collections.ConfigDict:
  """`spec` is 'path/to/config.py[:arg]' (relative to `root` if given);
  `overrides` maps dotted fields to values, e.g. {"optim.lr": 0.01}."""
  path, _, arg = spec.partition(":")
  path = os.path.join(root, path) if root else path
  module_spec = importlib.util.spec_from_file_location(
      "_jaxunknowns_config_" + os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  config = module.get_config(arg)
  with config.unlocked():
    for dotted, value in (overrides or {}).items():
      *parents, leaf = dotted.split(".")
      node = config
      for key in parents:
        node = node[key]
      node[leaf] = value
  return config
