"""What the Colab notebooks (colabs/) call, so that no cell copies library code.

    from jaxunknowns import notebook
    summary = notebook.run("configs/imp.py:mnist1d", "/tmp/imp")
    notebook.show("/tmp/imp")          # report.md and every figure, inline

The scale of every run comes from one place: the environment variable
JAXUNKNOWNS_NOTEBOOK_SCALE. Empty (the default) runs a config's own variant
(minutes on a CPU runtime); "runlocal" shrinks every run to seconds (CI
executes every notebook that way); on a GPU/TPU runtime change a notebook's
variant or `--config` overrides instead.
"""

import os
import re
from typing import Any, Mapping, Optional

SCALE_VARIABLE = "JAXUNKNOWNS_NOTEBOOK_SCALE"


def find_root(start: str = "") -> str:
  """The repository root (the folder holding configs/), searched upward
  from `start` (default: the working directory)."""
  path = os.path.abspath(start or os.getcwd())
  while True:
    if os.path.isdir(os.path.join(path, "configs")) and os.path.isdir(
        os.path.join(path, "jaxunknowns")):
      return path
    parent = os.path.dirname(path)
    if parent == path:
      raise FileNotFoundError(
          "no jaxunknowns checkout above " + os.path.abspath(start or ".") +
          ": run the notebook from a clone of the repository")
    path = parent


def scaled(spec: str) -> str:
  """`configs/x.py:variant` with ",runlocal" added when the scale says so."""
  scale = os.environ.get(SCALE_VARIABLE, "").strip()
  if not scale:
    return spec
  path, _, arg = spec.partition(":")
  return f"{path}:{arg},{scale}" if arg else f"{path}:{scale}"


def run(spec: str, workdir: str, overrides: Optional[Mapping[str, Any]] = None,
        overwrite: bool = False):
  """Runs a config as `python -m jaxunknowns.main` would; returns its summary.

  A finished workdir is not rerun (its summary is read back), so re-running
  a notebook cell is instant.
  """
  from jaxunknowns import main, validation  # pylint: disable=g-import-not-at-top
  from jaxunknowns.config_loading import load_config  # pylint: disable=g-import-not-at-top
  spec = scaled(spec)
  if not os.path.isabs(spec):  # a config file of the checkout
    spec = os.path.join(find_root(), spec)
  config = load_config(spec, overrides)
  # Checked against its file's variants, as the command line checks it.
  return main.run(config, workdir, overwrite=overwrite,
                  references=validation.references_of(spec))


def show(workdir: str, figures: bool = True):
  """Displays the run's report.md with its figures inline, where the report
  shows them (a notebook cannot resolve the report's relative image links)."""
  from IPython.display import Image, Markdown, display  # pylint: disable=g-import-not-at-top
  from etils import epath  # pylint: disable=g-import-not-at-top
  from jaxunknowns import paths  # pylint: disable=g-import-not-at-top
  report = os.path.join(workdir, "report.md")
  if not paths.exists(report):
    if figures:  # No report (an unfinished run): whatever figures there are.
      for png in sorted(epath.Path(workdir).glob("*.png")):
        display(Image(data=png.read_bytes(), format="png"))
    return
  lines = paths.read_text(report).splitlines()
  text = []
  for line in lines:
    image = re.fullmatch(r"!\[[^\]]*\]\(([^)]+)\)", line.strip())
    if image is None:
      text.append(line)
      continue
    display(Markdown("\n".join(text)))
    text = []
    path = os.path.join(workdir, image.group(1))
    if figures and paths.exists(path):
      display(Image(data=epath.Path(path).read_bytes(),
                    format=os.path.splitext(path)[1].lstrip(".")))
  display(Markdown("\n".join(text)))
