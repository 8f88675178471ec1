"""The small shared readers and checks that experiments' `validate`
functions use: config_loading.name_list, validation.check_int,
validation.is_number and validation.check_corruption_grid; and the shared
statistics (metrics.stats: mean, sample std, per seed) and stage runner
(stages: a finished stage is read back, an unfinished one reruns, early
stopping) every experiment reports through."""

import json
import math

import numpy as np
import pytest

from jaxunknowns import config_loading, metrics, stages, validation
from jaxunknowns.errors import UserError


@pytest.mark.parametrize("value,want", [
    (("a", "b"), ["a", "b"]),
    (("a,b",), ["a", "b"]),          # --config.x=a,b on the command line
    ((" a , b ", "c"), ["a", "b", "c"]),
    ("a,b", ["a", "b"]),             # a bare string is one entry
    ("bezier", ["bezier"]),
    ((), []),
    (("",), []),
])
def test_name_list(value, want):
  assert config_loading.name_list(value) == want


def test_check_int_message_and_kinds():
  validation.check_int(3, "x.n", 1)
  validation.check_int(np.int64(0), "x.n", 0)
  with pytest.raises(UserError, match=r"^x\.n=0 is out of range: must be an "
                     r"integer >= 1$"):
    validation.check_int(0, "x.n", 1)
  with pytest.raises(UserError, match=r"must be an integer >= 0 \(0 = all\)$"):
    validation.check_int(-1, "x.n", 0, "0 = all")
  for bad in (True, 2.0, "2"):
    with pytest.raises(UserError, match="x.n"):
      validation.check_int(bad, "x.n", 1)


def test_is_number():
  assert all(validation.is_number(v) for v in (1, 0.5, np.float32(2), np.int8(1)))
  assert not any(validation.is_number(v) for v in (True, "1", None, 1j))


def test_check_corruption_grid():
  validation.check_corruption_grid("g", (0.0, 0.5, 1))
  validation.check_corruption_grid("g", ())
  with pytest.raises(UserError, match=r"g=\(0\.0, 1\.5\) .* probabilities p "
                     r"in \[0, 1\]"):
    validation.check_corruption_grid("g", [0.0, 1.5])
  with pytest.raises(UserError, match="strictly increasing"):
    validation.check_corruption_grid("g", (0.5, 0.5))
  with pytest.raises(UserError, match=r"\[0, 1\]"):
    validation.check_corruption_grid("g", (False, 0.5))


def test_stats_are_mean_sample_std_and_per_seed_by_hand():
  # Squared deviations from 2.5 sum to 5; over n - 1 = 3 (not n = 4).
  assert metrics.stats([1, 2, 3, 4]) == {
      "mean": 2.5, "std": pytest.approx(math.sqrt(5 / 3), rel=1e-12),
      "per_seed": [1.0, 2.0, 3.0, 4.0]}
  assert metrics.stats([0.7]) == {"mean": 0.7, "std": 0.0, "per_seed": [0.7]}
  # Equal values: exactly 0 (numpy's mean of three 0.1s is not 0.1, and
  # the std read 1.7e-17, printed as '0.1 ± 1.7e-17').
  assert metrics.stats([0.1, 0.1, 0.1])["std"] == 0.0
  assert metrics.format_stats([0.5, 0.7], scale=100) == "60.00±14.14"
  # Over the finite values only; the others stay in per_seed as None.
  got = stages.finite_stats([1.0, None, float("nan"), 3.0])
  assert got == {"mean": 2.0, "std": pytest.approx(math.sqrt(2)),
                 "per_seed": [1.0, None, None, 3.0]}
  assert stages.finite_stats([None, float("inf")])["mean"] is None


def test_a_finished_stage_is_read_back_and_an_unfinished_one_reruns(tmp_path):
  calls = []

  def compute():
    calls.append(1)
    if len(calls) == 2:
      raise RuntimeError("killed mid-stage")
    return {"run": len(calls)}

  done = tmp_path / "stages" / "done"
  assert stages.run_stage(str(done), compute) == {"run": 1}
  assert stages.run_stage(str(done), compute) == {"run": 1}
  assert len(calls) == 1  # the resume did not recompute it
  # A stage that stopped before its result (checkpoints only) reruns.
  unfinished = tmp_path / "stages" / "unfinished"
  with pytest.raises(RuntimeError):
    stages.run_stage(str(unfinished), compute)
  assert not (unfinished / stages.RESULT_FILE).exists()
  (unfinished / "checkpoints").mkdir(parents=True)
  assert stages.run_stage(str(unfinished), compute) == {"run": 3}
  assert json.loads((unfinished / stages.RESULT_FILE).read_text()) == {
      "run": 3}


def test_all_below_holds_at_the_threshold_for_every_run():
  stop = stages.all_below("test", "loss", 0.5)
  assert stop({"test": {"loss": np.array([0.5, 0.2])}})
  assert not stop({"test": {"loss": np.array([0.51, 0.2])}})


@pytest.mark.parametrize("threshold,steps", [(1e9, 10), (-1.0, 30)])
def test_train_stage_stops_at_the_first_check_that_says_so(tmp_path,
                                                            threshold, steps):
  """Checks every 10 of 30 steps: a stop that always holds ends the stage
  at step 10 (stopped early), one that never does at 30."""
  from test_trainer import make_trainer, tiny_config  # pylint: disable=g-import-not-at-top
  trainer = make_trainer(tiny_config())
  result = stages.train_stage(
      trainer, workdir=None, name="s", labels={}, seeds=[0],
      writer=metrics.MetricWriter(str(tmp_path), tensorboard=False),
      steps=30, check_every=10, folder=str(tmp_path / "s"),
      stop=stages.all_below("test", "loss", threshold))
  assert result["steps"] == steps
  assert result["stopped_early"] == (steps < 30)


def test_an_empty_tuple_is_the_experiments_call_not_the_field_rules():
  """The field rules judge a tuple's kind, not its length: randomization
  takes an empty ablation (its validate wants *some* stage, not every
  part), which the rules once refused because no variant leaves it empty;
  an empty grid that trains nothing is refused by its experiment, in one
  line naming the field; a tuple of the wrong elements still by the rules."""
  from jaxunknowns.overparam import randomization  # pylint: disable=g-import-not-at-top
  spec = "configs/randomization.py:mnist1d,runlocal"
  references = validation.references_of(spec)
  config = config_loading.load_config(spec, {"ablation.true_labels": (),
                                             "ablation.random_labels": ()})
  validation.check_config(config, references)
  plan = randomization.plan(config)
  assert plan["ablation"] == [] and plan["variants"]
  config = config_loading.load_config(spec, {"randomization.variants": (),
                                             "randomization.corruptions": (),
                                             "ablation.true_labels": (),
                                             "ablation.random_labels": ()})
  with pytest.raises(UserError, match="randomization.variants=()"):
    validation.check_config(config, references)
  config = config_loading.load_config(spec, {"randomization.corruptions":
                                             ("abc",)})
  with pytest.raises(UserError, match="expects a tuple of finite numbers"):
    validation.check_config(config, references)
