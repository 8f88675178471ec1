"""End to end on the TFDS catalogue's datasets without a network: configs
written for MNIST and CIFAR-10 run at `runlocal` size on
`tfds.testing.mock_data` (random images of the catalogue's shapes and
classes), through the same `main.run` the CLI calls. The data loaders alone
are tested in test_data.py; here a whole run, its summary and its report.
"""

from pathlib import Path

import pytest
import tensorflow_datasets as tfds

from jaxunknowns import config_loading
from run_helpers import assert_report_rebuilds, run_in_process

ROOT = Path(__file__).resolve().parents[1]


def load_config(spec, overrides):
  return config_loading.load_config(str(ROOT / "configs" / spec), overrides)


@pytest.mark.parametrize("spec, overrides, data, model, params", [
    # ResNet-20 as runlocal shrinks it, with CIFAR's crop + flip.
    ("train.py:cifar10_resnet20,runlocal", {"data.train_size": 0},
     "cifar10", "resnet", None),
    # IMP's Frankle & Carbin LeNet on MNIST: two levels, early stopping on
    # a validation split held out of the mock train split.
    ("imp.py:lenet_mnist,runlocal",
     {"data.train_size": 0, "data.validation_size": 16},
     "mnist", "lenet_300_100",
     784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10),
])
def test_runlocal_on_mock_catalogue_data(tmp_path, spec, overrides, data,
                                         model, params):
  config = load_config(spec, overrides)
  assert config.data.name == data and config.model.name == model
  workdir = tmp_path / "run"
  with tfds.testing.mock_data(num_examples=128):
    summary = run_in_process(config, workdir)
  assert summary["dataset"] == data and summary["model"] == model
  if params:
    assert summary["parameters"]["total"] == params
  text = (workdir / "report.md").read_text()
  assert f"`{model}` on `{data}`" in text or f"{model} on {data}" in text
  assert "Traceback" not in text and " nan" not in text.lower()
  assert_report_rebuilds(workdir)
