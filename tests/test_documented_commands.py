"""Every `python -m jaxunknowns.main` command the README and docs/ show
passes the checks a run makes before it starts (the command line's parser,
validation.check_config with the file's references): a new refusal of an
unused or out-of-range setting must not refuse what we tell users to run.
Nothing trains: a command is parsed and checked only."""

import re
import shlex
from pathlib import Path

import pytest
from absl import flags
from ml_collections import config_flags

from jaxunknowns import config_loading, validation

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "ARCHITECTURE.md",
        *sorted((ROOT / "docs").rglob("*.md"))]
# Placeholders of a usage line, not a command.
PLACEHOLDERS = ("NAME", "VARIANT", "SCALE", "...")


def documented_commands():
  """(file, --config arguments) of each distinct command, its backslash
  continuations joined; a command ends at the line's end or a backtick."""
  found = {}
  for doc in DOCS:
    text = re.sub(r"\\\n\s*", " ", doc.read_text())
    for match in re.finditer(r"python -m jaxunknowns\.main ([^`\n]*)", text):
      try:
        words = shlex.split(match.group(1))
      except ValueError:  # prose around an unbalanced quote
        continue
      args = tuple(w for w in words if w.startswith("--config"))
      if args and not any(p in a for a in args for p in PLACEHOLDERS):
        found.setdefault(args, doc.relative_to(ROOT))
  return [(str(doc), args) for args, doc in found.items()]


COMMANDS = documented_commands()
# ml_collections loads each config file with importlib's old load_module.
pytestmark = pytest.mark.filterwarnings(
    "ignore:the load_module\\(\\) method is deprecated:DeprecationWarning")


def test_the_docs_hold_commands_of_every_kind():
  """The extraction finds the README's runs, variants and overrides."""
  assert len(COMMANDS) >= 40, COMMANDS
  flat = [" ".join(args) for _, args in COMMANDS]
  assert "--config=configs/imp.py" in flat
  assert any(":" in a and "--config.seeds=" in a for a in flat)
  assert any("--config.compare=('sgd','sam','asam','sgd_2x')" in a
             for a in flat), flat


@pytest.mark.parametrize("doc,args", COMMANDS,
                         ids=[" ".join(a) for _, a in COMMANDS])
def test_documented_command_passes_the_checks(doc, args):
  del doc
  argv = ["main", *args]
  holder = flags.FlagValues()  # a parser of its own per command
  config_flags.DEFINE_config_file("config", flag_values=holder, sys_argv=argv)
  holder(argv)
  path = config_flags.get_config_filename(holder["config"])
  config = config_loading.checked(holder["config"].value, path)
  validation.check_config(config, validation.references_of(path))
