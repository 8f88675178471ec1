"""A finished train_stage's result.json edited since it was written: a string
where the per-seed numbers were was a TypeError deep in the experiment's
summary (width_sweep.point_summary), and a value too many (3 where the run
has 2 seeds) a summary of the wrong seeds, written without a word. Both are
now one line naming the file and the folder to delete, from Workdir.check
(stages.check_finished, before anything is written) and where the stage
reads it back (stages.train_stage with its seeds). Other stages' results,
which have no such schema, are read as before.
"""

import json

import pytest

from jaxunknowns import stages
from jaxunknowns.errors import UserError

SEEDS = [0, 1]


def trained(**changes):
  """A result.json as train_stage writes it for two seeds (the count of
  metrics rows included), with `changes`."""
  result = {
      "name": "noise_0/width_00008", "labels": {"width": 8},
      "seeds": list(SEEDS), "steps": 20, "stopped_early": False,
      "evals": {"test": {"accuracy": [0.5, 0.25], "loss": [1.0, 2.0]},
                "train": {"accuracy": [0.75, float("nan")],
                          "loss": [0.5, 0.5]}},
      "num_params": 1234, "steps_per_second": None,
      "measures": {"margin": [1.5, None]}, "wall_time_s": 3.0,
      "metrics_jsonl_rows": 0}
  result.update(changes)
  return result


def write(tmp_path, result, name="stage"):
  folder = tmp_path / "stages" / name
  folder.mkdir(parents=True)
  (folder / "result.json").write_text(json.dumps(result))
  return folder


def read_back(folder, seeds=SEEDS):
  """train_stage of a finished stage: its result.json, read back (no
  trainer is touched)."""
  return stages.train_stage(None, workdir=None, name="stage", labels={},
                            seeds=seeds, writer=None, steps=20,
                            folder=str(folder))


def assert_refused(call, folder, *needles):
  with pytest.raises(UserError) as info:
    call()
  message = str(info.value)
  assert "\n" not in message, message
  for needle in (str(folder / "result.json"), "damaged",
                 f"delete the folder {folder}", *needles):
    assert needle in message, (needle, message)


DAMAGE = {
    "a string for per-seed numbers": (
        {"evals": {"test": {"accuracy": "0.5", "loss": [1.0, 2.0]}}},
        "evals.test.accuracy"),
    "a value too many": (
        {"evals": {"test": {"accuracy": [0.5, 0.25, 0.75]}}},
        "evals.test.accuracy"),
    "a string among the numbers": (
        {"evals": {"test": {"accuracy": [0.5, "x"]}}}, "evals.test.accuracy"),
    "evals not an object": ({"evals": [0.5, 0.25]}, "'evals'"),
    "measures not per seed": ({"measures": {"margin": [1.0]}},
                              "measures.margin"),
    "seeds not integers": ({"seeds": "0,1"}, "'seeds'"),
    "steps not a number": ({"steps": "20"}, "'steps'"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_train_stage_result_is_refused_in_one_line(tmp_path,
                                                              damage):
  changes, needle = DAMAGE[damage]
  folder = write(tmp_path, trained(**changes))
  path = str(folder / "result.json")
  before = (folder / "result.json").read_text()
  # Workdir.check's look, before a rerun writes anything.
  assert_refused(lambda: stages.check_finished(path, {}), folder, needle)
  # Where the stage reads it back.
  assert_refused(lambda: read_back(folder), folder, needle)
  assert_refused(lambda: stages.read_result(path), folder, needle)
  assert (folder / "result.json").read_text() == before


def test_seeds_of_another_count_than_the_stage_declares(tmp_path):
  """Consistent in itself (3 seeds, 3 values each), but the run has 2:
  only the stage, which declares its seeds, can tell."""
  three = [0.5, 0.25, 0.75]
  folder = write(tmp_path, trained(
      seeds=[0, 1, 2], evals={"test": {"accuracy": three}},
      measures={"margin": three}))
  stages.check_finished(str(folder / "result.json"), {})
  assert_refused(lambda: read_back(folder), folder,
                 "'seeds' lists 3 seeds, the run has 2")
  assert read_back(folder, seeds=[0, 1, 2])["evals"]["test"]["accuracy"] == (
      three)


def test_results_as_stages_write_them_are_read_as_before(tmp_path):
  """train_stage's (NaN where a run diverged, null measures and pace, a
  field added later: bn_grid's timing), and other stages' results, whose
  fields ("evals" per run of bn_stability's grid, no "seeds") have no
  schema to check."""
  folder = write(tmp_path, trained(train_speed={"median": 1.0},
                                   warmup_s=2.0), "trained")
  stages.check_finished(str(folder / "result.json"), {})
  result = read_back(folder)
  assert result["evals"]["test"]["accuracy"] == [0.5, 0.25]
  assert "metrics_jsonl_rows" not in result
  no_measures = trained()
  del no_measures["measures"]
  read_back(write(tmp_path, no_measures, "no_measures"))
  other = {"norm": "batch", "seed": [0, 1, 0, 1, 0, 1],
           "evals": {"test": {"accuracy": [0.1] * 6}}, "steps": 20}
  folder = write(tmp_path, other, "other")
  stages.check_finished(str(folder / "result.json"), {})
  assert stages.read_result(str(folder / "result.json")) == other
  # A stage without seeds of its own writes what it likes.
  folder = tmp_path / "stages" / "free"
  assert stages.run_stage(str(folder), lambda: {"evals": "anything"}) == {
      "evals": "anything"}
  assert stages.read_result(str(folder / "result.json")) == {
      "evals": "anything"}
