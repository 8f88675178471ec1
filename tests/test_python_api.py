"""The library used from Python (a notebook, a script), not the command
line: the same checks, the same errors."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_python_gets_the_command_lines_checks(tmp_path, monkeypatch):
  """From Python, a config was left unlocked (a misspelt field set after
  loading trained and was recorded), a missing file or unknown variant
  raised FileNotFoundError / ValueError, and notebook.run skipped the
  checks the command line makes against the file's variants
  (hessian.tol=-1 ran). A config file outside the checkout could not be
  run at all."""
  from jaxunknowns import config_loading  # pylint: disable=g-import-not-at-top
  from jaxunknowns import notebook as nb  # pylint: disable=g-import-not-at-top
  from jaxunknowns.errors import UserError  # pylint: disable=g-import-not-at-top
  config = config_loading.load_config(f"{ROOT}/configs/train.py:mnist1d_mlp")
  with pytest.raises(AttributeError):
    config.train.step = 50  # train.steps misspelt
  for spec, message in (("configs/nope.py", f"config file {ROOT}/configs/"
                         "nope.py not found"),
                        ("configs/train.py:nope", "unknown variant 'nope'")):
    with pytest.raises(UserError, match=message):
      config_loading.load_config(spec, root=str(ROOT))
  monkeypatch.chdir(ROOT)
  with pytest.raises(UserError, match=r"hessian.tol=-1.0: expects"):
    nb.run("configs/sharpness.py:runlocal", str(tmp_path / "s"),
           {"hessian.tol": -1})
  assert not (tmp_path / "s").exists()
  # A config file of one's own, outside the checkout, run from elsewhere.
  own = tmp_path / "mine.py"
  own.write_text((ROOT / "configs" / "train.py").read_text())
  monkeypatch.chdir(tmp_path)
  with pytest.raises(UserError, match="train.steps=-1"):
    nb.run(f"{own}:mnist1d_mlp,runlocal", str(tmp_path / "w"),
           {"train.steps": -1})
