"""Helpers shared by the end-to-end tests (test_cli.py, test_imp.py)."""

import hashlib
import json
from pathlib import Path


def run_in_process(config, workdir, overwrite=False):
  from jaxunknowns import main  # pylint: disable=g-import-not-at-top
  return main.run(config, str(workdir), overwrite)


def read_json(path):
  with open(path) as f:
    return json.load(f)


def snapshot(path):
  """Every entry under `path` with its mtime and (files) content digest."""
  path = Path(path)
  if not path.exists():
    return None
  out = {}
  for p in sorted(path.rglob("*")):
    st = p.stat()
    digest = (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file()
              else "dir")
    out[str(p.relative_to(path))] = (st.st_mtime_ns, digest)
  return out
