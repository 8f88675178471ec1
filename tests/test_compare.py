"""The comparison protocol (report/compare.py) against hand-made numbers:
each rule flips exactly where its stated threshold says, reasons come only
from material protocol differences, and the writer groups by verdict."""

import math

import pytest

from jaxunknowns.report import compare


def stat(*values):
  return {"mean": sum(values) / len(values), "per_seed": list(values)}


def test_bounds_flip_at_the_threshold_with_slack():
  assert compare.at_least(stat(0.89), 0.90, slack=0.01)[0] is True
  assert compare.at_least(stat(0.8899), 0.90, slack=0.01)[0] is False
  assert compare.at_most(stat(0.105), 0.10, slack=0.005)[0] is True
  assert compare.at_most(stat(0.1051), 0.10, slack=0.005)[0] is False
  assert compare.at_least(None, 0.5) == (None, "not measured")


def test_a_bound_with_a_spread_is_the_one_sided_within():
  """With `spread`, a mean past the edge by at most the spread is not
  testable (the seeds hold both sides); without it (what every seed must
  meet, a level beside a paper's number) the mean alone decides."""
  ratio = stat(0.93, 0.99, 1.05)  # mean 0.99, sample std 0.06
  spread = 2 * 0.06
  assert compare.at_least(ratio, 1.0, scale=1)[0] is False
  holds, text = compare.at_least(ratio, 1.0, scale=1, spread=spread)
  assert holds is None and text == (
      "mean 0.99 < 1.00, by at most 2 × seed std (0.12): " + compare.SPREAD)
  assert compare.at_least(ratio, 1.2, scale=1, spread=spread)[0] is False
  assert compare.at_most(ratio, 0.9, scale=1, spread=spread)[0] is None
  assert compare.at_most(ratio, 0.8, scale=1, spread=spread)[0] is False
  assert compare.at_most(ratio, 1.0, scale=1, spread=spread)[0] is True
  # At the edge exactly (binary fractions): 'at most the spread' is open.
  assert compare.at_least(stat(0.5, 0.5), 0.75, spread=0.25)[0] is None
  assert compare.at_least(stat(0.5, 0.5), 0.875, spread=0.25)[0] is False
  # One seed has no spread (its std is 0): a spread rule cannot decide, as
  # `within` cannot (prune_init's 'shuffled ≥ found' differed on one seed).
  for rule in (compare.at_least, compare.at_most):
    assert rule(stat(0.5), 0.9, spread=0.0) == (None, compare.ONE_SEED)
    assert rule(stat(0.5), 0.1, spread=0.0) == (None, compare.ONE_SEED)
  assert compare.at_least(stat(0.5), 0.9)[0] is False  # no spread rule


def test_beyond_a_number_is_a_direction_by_the_seeds_spread():
  """'BN / no BN below 1': agrees only past 1 by more than 2 × std; a mean
  of 0.99 from 0.70 and 1.28 cannot tell; above 1 by that much differs."""
  assert compare.beyond(stat(0.12, 0.13, 0.14), 1.0, below=True,
                        scale=1) == (
      True, "1 − mean = +0.87, > 2 × seed std (0.02)")
  holds, text = compare.beyond(stat(0.70, 1.28), 1.0, below=True, scale=1)
  assert holds is None and text.endswith(compare.SPREAD)
  assert compare.beyond(stat(1.2, 1.3), 1.0, below=True, scale=1)[0] is False
  assert compare.beyond(stat(1.2, 1.3), 1.0, below=False, scale=1)[0] is True
  assert compare.beyond(stat(0.5), 1.0, below=True) == (None, compare.ONE_SEED)
  # A diverged seed: not finite, never 'the spread cannot tell'.
  holds, text = compare.beyond(stat(0.5, float("nan")), 1.0, below=True)
  assert holds is None and "not finite" in text
  assert "not finite" in compare.at_least({"mean": float("inf")}, 1.0)[1]


def test_greater_needs_twice_the_larger_sample_std():
  """Sample std of (0.5, 0.7) is 0.1414: a gap above 0.2828 agrees, one at
  or below −0.2828 differs, and in between the seeds cannot tell."""
  a, b = stat(0.5, 0.7), stat(0.2, 0.2)
  assert compare.greater(stat(0.88, 0.89), b, a_name="a", b_name="b")[0]
  assert compare.greater(a, stat(0.31, 0.31), a_name="a", b_name="b")[0] is True
  for other in (0.32, 0.6, 0.88):  # gaps +0.28, 0, −0.28
    assert compare.greater(a, stat(other, other), a_name="a",
                           b_name="b")[0] is None
  assert compare.greater(a, stat(0.89, 0.89), a_name="a",
                         b_name="b")[0] is False


def test_paired_removes_the_spread_both_arms_share():
  a = stat(0.80, 0.85, 0.90)
  b = stat(0.78, 0.83, 0.88)      # always 2 points lower, same seeds
  assert compare.greater(a, b, a_name="a", b_name="b")[0] is None
  assert compare.paired_greater(a, b, a_name="a", b_name="b")[0] is True
  assert compare.paired_greater(b, a, a_name="b", b_name="a")[0] is False
  noisy = stat(0.82, 0.80, 0.89)  # per-seed differences -2, +5, +1 points
  assert compare.paired_greater(a, noisy, a_name="a", b_name="b") == (
      None, "a − b per seed = +1.33, within ± 2 × its std (7.02): "
      + compare.SPREAD)
  # Equal on every seed: a tie the measurement cannot break (below).
  assert compare.paired_greater(a, a, a_name="a", b_name="b") == (
      None, "a − b per seed = 0 on every seed: " + compare.TIE)
  assert compare.paired_greater(a, stat(0.8, 0.8), a_name="a",
                                b_name="b")[0] is None


def test_one_seed_is_not_testable_by_the_seed_spread_rules():
  """One seed has a sample std of 0, so '> 2 × std' passed on any gap (a
  published landscape report judged n=1 rows 'agrees' so)."""
  paper = {"mean": 0.5}  # a paper's number: no seeds of ours
  for a, b in ((stat(0.9), stat(0.1)), (stat(0.9), paper),
               (paper, stat(0.1)), (stat(0.9, 0.91), stat(0.1))):
    assert compare.greater(a, b, a_name="a", b_name="b") == (
        None, compare.ONE_SEED)
    # within too: on one seed its margin was the bare tolerance, so a gap
    # that three seeds leave undecided was 'differs' (a settings probe).
    assert compare.within(a, b, a_name="a", b_name="b", tolerance=0.05) == (
        None, compare.ONE_SEED)
  assert compare.paired_greater(stat(0.9), stat(0.1), a_name="a",
                                b_name="b") == (None, compare.ONE_SEED)
  # Two seeds judge: a paper's number beside two seeds of ours too.
  assert compare.greater(stat(0.9, 0.91), paper, a_name="a", b_name="b")[0]
  row = compare.versus("q", compare.Reference("s", "src"), stat(0.9),
                       stat(0.1), ("a", "b"), why_not_testable="other")
  assert (row.verdict, row.reasons) == (compare.NOT_TESTABLE,
                                        (compare.ONE_SEED,))


def test_within_and_monotone():
  assert compare.within(stat(0.549, 0.549), stat(0.54, 0.54), a_name="a", b_name="b",
                        tolerance=0.01)[0] is True
  assert compare.within(stat(0.56, 0.56), stat(0.54, 0.54), a_name="a", b_name="b",
                        tolerance=0.01)[0] is False
  assert compare.monotone([3, 2, 1.5], increasing=False, what="x")[0] is True
  assert compare.monotone([3, 2, 2.05], increasing=False, what="x")[0] is False
  assert compare.monotone([1], increasing=True, what="x")[0] is None


@pytest.mark.parametrize("a", [(math.inf,) * 3, (math.inf, 1.0, 1.0),
                               (math.nan, 1.0, 1.0)])
def test_within_and_monotone_decide_nothing_on_a_diverged_value(a):
  """Every seed at inf has std 0, so |inf − 1| > the bare tolerance read
  'differs', blamed on the protocol; one seed at inf or nan made the margin
  nan, 'the seeds' spread cannot tell'. Divergence says so, as elsewhere."""
  verdict = compare.within(stat(*a), stat(1.0, 1.0, 1.0), a_name="ours",
                           b_name="1", tolerance=0.1)
  assert verdict[0] is None and verdict[1].endswith(compare.DIVERGED), verdict
  row = compare.comparison("q", compare.Reference("s", "src"), "inf",
                           *verdict)
  assert row.verdict == compare.NOT_TESTABLE
  assert row.reasons == (compare.DIVERGED,)
  assert compare.monotone([1.0, math.nan, 3.0], increasing=True,
                          what="x") == (None, f"x: {compare.DIVERGED}")


def test_within_agrees_only_inside_the_tolerance():
  """A gap past the tolerance but inside the seeds' spread was 'agrees'
  (e.g. a 3.37-point gap 'within' a 1-point tolerance, as 2 × std was 5.6):
  now agreement needs the gap within the tolerance, a difference needs it
  beyond the tolerance plus 2 × std, and in between the row is not
  testable, with the spread as its reason."""
  noisy = stat(0.50, 0.56, 0.62)  # mean 0.56, sample std 0.06
  paper = {"mean": 0.48}  # 8 points below ours
  cases = {0.05: None, 0.09: True, 0.2: True}  # tolerance -> verdict
  for tolerance, want in cases.items():
    holds, text = compare.within(noisy, paper, a_name="ours", b_name="paper",
                                 tolerance=tolerance)
    assert holds is want, (tolerance, holds, text)
  holds, text = compare.within(noisy, {"mean": 0.30}, a_name="ours",
                               b_name="paper", tolerance=0.05)
  assert holds is False and text == ("|ours − paper| = 26.00 > 17.00 "
                                     "(tolerance 5 + 2 × seed std)")
  row = compare.versus("q", compare.Reference("s", "src"), noisy, paper,
                       ("ours", "paper"), rule=compare.within, tolerance=0.05)
  assert row.verdict == compare.NOT_TESTABLE and row.reasons == (
      compare.SPREAD,), row
  assert row.rule == ("|ours − paper| = 8.00 > tolerance 5, ≤ 17.00 "
                      "(tolerance 5 + 2 × seed std): " + compare.SPREAD)
  # A paper's level on other data: not testable for that, not the spread.
  level = compare.Reference("s", "src", protocol={"data": "cifar10"})
  row = compare.versus("q", level, noisy, paper, ("ours", "paper"),
                       rule=compare.within, tolerance=0.05, level=True,
                       our_protocol={"data": "mnist1d"})
  assert row.reasons == ("the paper's level is on cifar10, ours on mnist1d",)


def test_rule_texts_tell_the_two_numbers_apart():
  """'0.14 > 0.14' (a published edge_of_stability row) reads as a bug: the
  text shows as many decimals as it takes to tell them apart (up to 6)."""
  holds, text = compare.within(stat(1.14, 1.14), {"mean": 1.0}, a_name="ours",
                               b_name="1", tolerance=0.1399, scale=1)
  assert holds is False and text.startswith("|ours − 1| = 0.1400 > 0.1399")
  assert compare.at_most(stat(0.00086), 0.05, scale=1)[1] == (
      "mean 0.001 ≤ 0.050")  # not 'mean 0.00'
  assert compare.greater(stat(0.5, 0.7), stat(0.2, 0.2), a_name="a",
                         b_name="b")[1] == "a − b = +40.00, > 2 × seed std (28.28)"


def test_only_material_protocol_differences_are_reasons():
  paper = {"steps": 1501, "model": "MLP", "data": "MNIST", "lr": 0.01}
  ours = {"steps": 1500, "model": "mlp", "data": "MNIST-1D", "lr": 0.02}
  reasons = compare.protocol_differences(paper, ours)
  assert reasons == ["data: MNIST in the paper, MNIST-1D here",
                     "lr: 0.01 in the paper, 0.02 here"]
  ref = compare.Reference("x", "Someone 2020, Fig. 1", value=50.0, unit="%",
                          protocol=paper)
  agrees = compare.comparison("q", ref, "51", True, "r", our_protocol=ours)
  differs = compare.comparison("q", ref, "40", False, "r", our_protocol=ours)
  untested = compare.comparison("q", ref, "–", None, "r",
                                why_not_testable="needs CIFAR-10")
  assert agrees.reasons == () and agrees.paper == "50.0%"
  assert differs.verdict == compare.DIFFERS and differs.reasons == tuple(reasons)
  assert untested.reasons == ("needs CIFAR-10",)
  # A row decided by no rule shows '–' in the rule column, not a blank cell.
  blank = compare.comparison("q", ref, "–", None, "")
  assert blank.rule == "–" and compare.rows([blank])[0][-1] == "–"
  text = compare.paragraph([agrees, differs, untested])
  assert text.startswith("As in the paper: q.")
  assert "Unlike the paper: q: r (where our protocol differs: data" in text
  assert text.endswith("Not testable here: q (needs CIFAR-10).")
  with pytest.raises(ValueError):
    compare.Comparison("q", "p", "s", "o", "maybe", "r")


def test_each_rule_at_its_exact_boundary():
  """The rules' stated inequalities, at equality (exact binary fractions):
  'more than' twice the std is strict, 'at or below' minus it, 'within' a
  tolerance and 'at least' a ratio of MATERIAL_RATIO are not; a trend's
  ends 'more than' their spread apart agree, the wrong way 'at or beyond'
  it differ."""
  a, b = stat(0.5, 0.5), stat(0.25, 0.25)  # gap 0.25 exactly, std 0
  for rule in (compare.greater, compare.paired_greater):
    assert rule(a, b, a_name="a", b_name="b")[0] is True
    # Gap +0.25 and −0.25 against 2 × std 0.125 (0.375, 0.5, 0.625 minus
    # 0.25 each, or their per-seed differences from 0.5 and 0.75).
    c = stat(0.375, 0.5, 0.625)
    assert rule(c, stat(0.25, 0.25, 0.25), a_name="a", b_name="b")[0] is None
    assert rule(c, stat(0.75, 0.75, 0.75), a_name="a", b_name="b")[0] is False
  assert compare.within(a, b, a_name="a", b_name="b", tolerance=0.25)[0] is True
  assert compare.within(a, b, a_name="a", b_name="b", tolerance=0.125)[0] is False
  assert compare.protocol_differences({"steps": 100}, {"steps": 125}) == [
      "steps: 100 in the paper, 125 here"]  # 125 / 100 == MATERIAL_RATIO
  assert compare.protocol_differences({"steps": 100}, {"steps": 124}) == []
  assert compare.monotone([1, 2, 2], increasing=True, what="x")[0] is True
  # Ends 0.25 apart, 2 × std 0.25 (0.125 each, as above).
  up = [stat(0.375, 0.5, 0.625), stat(0.625, 0.75, 0.875)]
  assert compare.trend(up, increasing=True, what="x")[0] is None
  assert compare.trend(up, increasing=False, what="x")[0] is False


def test_monotone_needs_the_whole_sequence_to_move():
  """double_descent's sample-wise peaks on digits were n = 200 at h = 8 and
  200 at h = 32 ('no peak' at 16): 'the peak's n rises at every step' and
  'grows with width: agrees' on no growth at all."""
  holds, text = compare.monotone([200, 200], increasing=True, what="the n")
  assert holds is False and text == "the n does not rise overall (200 → 200)"
  assert compare.monotone([100, 100, 100], increasing=False, what="x")[0] is False
  assert compare.monotone([200, 200, 400], increasing=True, what="x")[0] is True


def test_a_bounds_spread_is_printed_nonzero():
  """BN / no BN ratios sit near 1 with a small spread: the text read
  'by more than 2 × seed std (0.00)' where the spread was 0.004."""
  ratio = {"mean": 0.99, "per_seed": [0.988, 0.99, 0.992]}
  assert compare.at_least(ratio, 1.0, scale=1.0, spread=0.004) == (
      False, "mean 0.990 < 1.000, by more than 2 × seed std (0.004)")


def test_trend_judges_reversals_by_the_seeds_spread():
  """randomization's steps to fit at seeds 1000..1002: 7200 ± 300 → 7100 ±
  436 at p = 0.8 → 1.0; `monotone` on the means called the whole trend
  'differs' on that 100-step dip, so the verdict followed the seeds drawn."""
  grid = [stat(3300, 3000, 2800), stat(4400, 4600, 4700),
          stat(6000, 6700, 6300), stat(6500, 6800, 6600),
          stat(7200, 6900, 7500), stat(6800, 6900, 7600)]
  means = [s["mean"] for s in grid]
  assert compare.monotone(means, increasing=True, what="x")[0] is False
  holds, text = compare.trend(grid, increasing=True, what="x")
  # First → last: +4067 against 2 × max(std 252, std 436) = 872 (by hand).
  assert holds is True
  assert text == ("x rises 3033 → 7100, by 4067 (> 2 × seed std, 872); a "
                  "step falls by 100, within 2 × its seed std (872)")
  # A fall larger than its two points' spread is a reversal.
  dip = grid[:4] + [stat(5000, 5100, 4900)] + grid[5:]
  holds, text = compare.trend(dip, increasing=True, what="x")
  # 6633 → 5000, against 2 × max(std 153, std 100) = 306 (by hand).
  assert holds is False and text.endswith(
      "a step falls by 1633, more than 2 × its seed std (306)")
  # No rise beyond the ends' spread: not a trend, even if every step rises.
  flat = [stat(100, 300, 200), stat(150, 350, 250), stat(200, 400, 300)]
  assert compare.monotone([s["mean"] for s in flat], increasing=True,
                          what="x")[0] is True
  for holds, text in (compare.trend(flat, increasing=True, what="x"),
                      compare.trend(flat[::-1], increasing=False, what="x")):
    assert holds is None and text.endswith(compare.SPREAD), text
  # Ends the wrong way within their spread: open; a step down by more
  # than its spread: differs.
  assert compare.trend(flat[::-1], increasing=True, what="x")[0] is None
  assert compare.trend([stat(300, 310, 320), stat(250, 260, 270)],
                       increasing=True, what="x")[0] is False
  # Ends the wrong way by 2 × std or more, in steps each within theirs.
  gentle = [stat(m - 1, m, m + 1) for m in (10, 9.5, 9, 8.5, 8)]
  assert compare.trend(gentle, increasing=True, what="x", digits=1) == (
      False, "x falls 10.0 → 8.0, by 2.0 (≥ 2 × seed std, 2.0); a step "
      "falls by 0.5, within 2 × its seed std (2.0)")
  falling = [stat(9, 10, 11), stat(5, 6, 7), stat(1, 2, 3)]
  assert compare.trend(falling, increasing=False, what="x") == (
      True, "x falls 10 → 2, by 8 (> 2 × seed std, 2); no step rises")
  # A small fall behind a large allowance is still named (it read 'no step
  # falls', from the step nearest to reversing: +5 against 2).
  hidden = [stat(0, 1, 2), stat(5, 6, 7), stat(0.5, 5.5, 10.5)]
  assert compare.trend(hidden, increasing=True, what="x", digits=1)[1] == (
      "x rises 1.0 → 5.5, by 4.5 (≤ 2 × seed std, 10.0); a step falls by "
      "0.5, within 2 × its seed std (10.0): " + compare.SPREAD)
  # Digits enough to show the ends apart and a change as nonzero.
  assert compare.trend([stat(1, 1, 1), stat(1.001, 1.001, 1.001)],
                       increasing=True, what="x")[1] == (
      "x rises 1.000 → 1.001, by 0.001 (> 2 × seed std, 0.000); no step "
      "falls")
  # Flat with no spread differs; a diverged seed is not a trend.
  assert compare.trend([stat(5, 5), stat(5, 5)], increasing=True,
                       what="x") == (
      False, "x is flat 5 → 5, by 0 (≥ 2 × seed std, 0); no step falls")
  assert compare.trend([stat(1, 2), stat(float("nan"), 3)], increasing=True,
                       what="x") == (None, "x: not finite (a seed diverged)")
  # The row names it as its reason, not the caller's default (width_sweep's
  # 'fewer than two widths fit').
  row = compare.comparison("q", compare.Reference("x", "P"), "–", *
                           compare.trend([stat(1, 2), stat(float("nan"), 3)],
                                         increasing=True, what="x"),
                           why_not_testable="fewer than two widths fit")
  assert row.reasons == (compare.DIVERGED,)
  # Unmeasured points are left out; one seed or one point decide nothing.
  assert compare.trend([falling[0], None, falling[2]], increasing=False,
                       what="x")[0] is True
  assert compare.trend([stat(1), stat(5)], increasing=True,
                       what="x") == (None, compare.ONE_SEED)
  assert compare.trend([stat(1, 2)], increasing=True, what="x")[0] is None


def test_a_paired_trend_judges_each_change_by_its_per_seed_spread():
  """bn_modes evaluates each seed's one trained network at every eval batch:
  the seed-to-seed spread (about 10 here) is shared by every point, and
  only the per-seed changes' spread can hide a rise (by hand below)."""
  grid = [stat(10, 20, 30), stat(13, 22, 33), stat(16, 25, 35)]
  assert compare.trend(grid, increasing=True, what="x")[0] is None
  # Changes first → last per seed: 6, 5, 5; std 0.577, 2 × = 1.15.
  assert compare.trend(grid, increasing=True, what="x", paired=True,
                       digits=2) == (
      True, "x rises 20.00 → 25.33, by 5.33 (> 2 × std of the per-seed "
      "changes, 1.15); no step falls")
  # Every seed falls by 1 at the second point: a reversal, though the
  # unpaired spread (2 × 10) would hide it.
  dip = [grid[0], stat(9, 19, 29), grid[2]]
  assert compare.trend(dip, increasing=True, what="x")[0] is None
  holds, text = compare.trend(dip, increasing=True, what="x", paired=True)
  assert holds is False and text.endswith(
      "a step falls by 1, more than 2 × its per-seed std (0)")
  # A seed unmeasured at a point (width_sweep's bound where γ ≤ 0): judged
  # unpaired, as said (it was 'not measured on the same seeds').
  missing = [stat(1, 2, 3), {"mean": 5.5, "per_seed": [5, 6, None]}]
  assert compare.trend(missing, increasing=True, what="x", paired=True) == (
      True, "x rises 2 → 6, by 4 (> 2 × seed std (unpaired: a seed is "
      "unmeasured at some point), 2); no step falls")


def test_a_papers_level_is_not_testable_on_other_data():
  """A paper's accuracy or error level belongs to its dataset: judged on
  another (a stand-in, or data the user chose), the row is not testable
  and says which data, whatever the rule found; on the paper's data, or
  one of the data it names, the rule decides. A direction (level=False) is
  judged across data, with the data as a reason when it differs."""
  ref = compare.Reference("48% test", "P", 48.0, "%",
                          {"data": "cifar10", "steps": 100})
  many = compare.Reference("x", "Q", protocol={"data": "cifar10, svhn/mnist"})
  for holds in (True, False):
    c = compare.comparison("q", ref, "65", holds, "rule text", level=True,
                           our_protocol={"data": "fashion_mnist", "steps": 100})
    assert c.verdict == compare.NOT_TESTABLE and c.rule == "rule text"
    assert c.reasons == ("the paper's level is on cifar10, ours on "
                         "fashion_mnist",)
    same = compare.comparison("q", ref, "47", holds, "r", level=True,
                              our_protocol={"data": "CIFAR10", "steps": 100})
    assert same.verdict == (compare.AGREES if holds else compare.DIFFERS)
  for data in ("svhn", "mnist", "cifar10"):
    assert compare.comparison("q", many, "1", True, "r", level=True,
                              our_protocol={"data": data}
                              ).verdict == compare.AGREES
  # Undeclared data on either side: the rule decides.
  assert compare.comparison("q", compare.Reference("x", "R"), "1", True, "r",
                            level=True, our_protocol={"data": "digits"}
                            ).verdict == compare.AGREES
  direction = compare.comparison("q", ref, "1", False, "r",
                                 our_protocol={"data": "digits"})
  assert direction.verdict == compare.DIFFERS
  assert direction.reasons == ("data: cifar10 in the paper, digits here",)
  # versus and Rows carry it too; an unmeasured row keeps its own reason.
  stat = {"mean": 0.65, "per_seed": [0.64, 0.65, 0.66]}
  v = compare.versus("q", ref, stat, {"mean": 0.48}, ("ours", "paper"),
                     rule=compare.within, tolerance=0.02, level=True,
                     our_protocol={"data": "fashion_mnist"})
  assert v.verdict == compare.NOT_TESTABLE and "cifar10" in v.reasons[0]
  rows = compare.Rows({"data": "fashion_mnist"})
  rows.check("q", ref, "–", (None, "not measured"), level=True, why="no run")
  assert rows[0].reasons == ("no run",)


def test_corrupted_data_decides_no_row():
  """A paper's finding is on its data as published: on a run that corrupts
  its own, every verdict is 'not testable here' with the corruption named;
  on clean data nothing changes."""
  ref = compare.Reference("s", "S", 65.0, "%")
  rows = [compare.comparison("a", ref, "10", True, "r"),
          compare.comparison("b", ref, "10", False, "r"),
          compare.comparison("c", ref, "10", None, "r", why_not_testable="w")]
  assert compare.on_data_of(rows, {"label_noise": 0.0,
                                   "randomization": "none"}) == rows
  for data, what in (({"label_noise": 0.5}, "50% label noise"),
                     ({"randomization": "random_labels"}, "random labels"),
                     ({"randomization": "gaussian", "label_noise": 0.2},
                      "gaussian and 20% label noise")):
    assert compare.corruption(data) == what
    out = compare.on_data_of(rows, data)
    assert [c.verdict for c in out] == [compare.NOT_TESTABLE] * 3
    assert all(c.reasons == (f"the papers' data are as published; this run "
                             f"trains on {what}",) for c in out)
    assert [c.ours for c in out] == ["10"] * 3


def test_two_rules_joined_on_one_seed_give_the_one_seed_reason():
  """max_margin joins two rules ('…; …'): on one seed the row fell back to
  its own reason, which said something untrue of the run."""
  ref = compare.Reference("s", "S")
  row = compare.comparison("q", ref, "0.01 (n=1)", None,
                           f"{compare.ONE_SEED}; {compare.ONE_SEED}",
                           why_not_testable="test error 0 on every seed")
  assert row.reasons == (compare.ONE_SEED,)


def test_within_and_at_most_at_their_exact_edges():
  """The boundaries the docstrings state, at equality: `within` differs only
  *beyond* tolerance + 2 × std (here gap 0.5 = 0.25 + 2 × 0.125: the seeds
  cannot tell), and `at_most` holds at mean == threshold (+ slack)."""
  a, b = stat(0.875, 1.0, 1.125), stat(0.5, 0.5, 0.5)
  assert compare.within(a, b, a_name="a", b_name="b", tolerance=0.25)[0] is None
  assert compare.at_most({"mean": 0.5}, 0.5)[0] is True
  assert compare.at_most({"mean": 0.5}, 0.25, slack=0.25)[0] is True


def test_arms_equal_on_every_seed_are_a_tie_not_a_difference():
  """bn_stability with one init scale compared 1 trainable scale with 1,
  and two arms that never reached a target (both at the cap) or the best lr
  being the reference lr itself: a gap of 0 on every seed read 'differs'.
  A tie is not testable; a gap of 0 with a spread is still judged by it."""
  tie = (stat(601, 601), stat(601, 601))
  for rule in (compare.greater, compare.paired_greater):
    holds, text = rule(*tie, a_name="a", b_name="b", scale=1)
    assert holds is None and text.endswith(compare.TIE), text
    row = compare.comparison("q", compare.Reference("s", "S"), "o", holds,
                             text)
    assert row.verdict == compare.NOT_TESTABLE
    assert row.reasons == (compare.TIE,)
  # Not a tie: equal means, unequal seeds (their spread decides), and a
  # constant gap below zero.
  assert compare.greater(stat(1, 3), stat(2, 2), a_name="a", b_name="b",
                         scale=1)[0] is None
  assert compare.paired_greater(stat(1, 1), stat(2, 2), a_name="a",
                                b_name="b", scale=1)[0] is False


def test_a_paired_bound_judges_the_per_seed_differences():
  """Differences +0.5, +1.5, +1.0 (mean 1.0, 2 × std 1.0) against 'at
  most 0.25': above it by 0.75, within the spread, so undecided; against
  'at most 1.0' it holds; a constant +1.5 against 1.0 differs; one seed
  or mismatched seeds cannot be paired."""
  a, b = stat(1.5, 2.5, 2.0), stat(1.0, 1.0, 1.0)
  assert compare.paired_bound(a, b, 0.25, upper=True, scale=1)[0] is None
  assert compare.paired_bound(a, b, 1.0, upper=True, scale=1)[0] is True
  assert compare.paired_bound(a, b, 1.25, upper=False, slack=0.25,
                              scale=1)[0] is True
  assert compare.paired_bound(stat(2.5, 2.5), stat(1.0, 1.0), 1.0,
                              upper=True, scale=1)[0] is False
  assert compare.paired_bound(stat(1.0), stat(0.0), 1.0, upper=True) == (
      None, compare.ONE_SEED)
  assert compare.paired_bound(stat(1.0, 2.0), stat(0.0), 1.0,
                              upper=True)[0] is None


def test_a_reversal_is_a_fall_beyond_once_its_steps_spread():
  """A step against the trend by more than 2 × the larger std of its two
  points is a reversal (differs), however far the ends move: here the ends
  rise by 20 against an allowance of 2 × 0.707 = 1.414 (by hand), and one
  step falls by 2, beyond 1.414 but within twice it."""
  grid = [stat(m - 0.5, m + 0.5) for m in (0, 10, 8, 20)]  # std 0.707 each
  holds, text = compare.trend(grid, increasing=True, what="x", digits=1)
  assert holds is False
  assert text.endswith("a step falls by 2.0, more than 2 × its seed std "
                       "(1.4)"), text


def test_paired_rules_refuse_arms_measured_on_different_seeds():
  """Pairing takes a − b seed by seed; arms of 3 and 2 seeds share no such
  pairing (zip would silently drop a seed), so the rule decides nothing."""
  a, b = stat(0.9, 0.91, 0.92), stat(0.5, 0.52)
  why = "not measured on the same seeds"
  assert compare.per_seed_differences(a, b) == (None, why)
  assert compare.paired_greater(a, b, a_name="a", b_name="b") == (None, why)
  assert compare.paired_bound(a, b, 0.0, upper=False) == (None, why)


def test_versus_counts_the_seeds_of_ours_beside_a_papers_number():
  """'(n=3)' is how many seeds measured ours: beside a paper's bare {mean}
  (no per_seed, as bn_only's accuracy beside the paper's) it is still 3,
  never dropped. The cell text is written out by hand from fmt's stated
  format (mean ± sample std, in %), the n from the three values given."""
  ref = compare.Reference("50% test", "P", 50.0, "%")
  row = compare.versus("q", ref, stat(0.5, 0.6, 0.7), {"mean": 0.5},
                       ("ours", "paper"), rule=compare.within, tolerance=0.2)
  assert row.ours == "ours 60.00 ± 10.00, paper 50.00 (n=3)", row.ours


def test_rows_check_keeps_a_levels_data_guard():
  """Rows.check(level=True) (imp's accuracy ranges) is a paper's level:
  a rule that decided (here 'differs') on other data than the paper's is
  not testable, with the data named, exactly as `comparison` states; the
  same row on the paper's data keeps the rule's verdict."""
  ref = compare.Reference("61–66%", "P", protocol={"data": "mnist1d"})
  rows = compare.Rows({"data": "fashion_mnist"})
  rows.check("dense test accuracy (%)", ref, "80.00", (False, "far above"),
             level=True)
  assert rows[0].verdict == compare.NOT_TESTABLE, rows[0]
  assert rows[0].reasons == ("the paper's level is on mnist1d, ours on "
                             "fashion_mnist",), rows[0]
  same = compare.Rows({"data": "mnist1d"})
  same.check("dense test accuracy (%)", ref, "80.00", (False, "far above"),
             level=True)
  assert same[0].verdict == compare.DIFFERS, same[0]
