"""The comparison protocol: our numbers beside a paper's, each with a verdict.

A report is a list of `Comparison`s, one per quantity a paper states (a
`Reference` of the phenomenon's papers.py): ours as mean ± std over seeds
with n, and a verdict (AGREES, DIFFERS, NOT_TESTABLE) by a stated rule below.
A difference is explained only by the reference's protocol settings that
differ *materially* from ours: never by 1,500 vs 1,501 steps.
"""

import dataclasses
import math
import re
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from jaxunknowns.report.text import fmt, markdown_table, std_of

AGREES, DIFFERS, NOT_TESTABLE = "agrees", "differs", "not testable here"
VERDICTS = (AGREES, DIFFERS, NOT_TESTABLE)
# Why a rule judged by the seeds' spread cannot decide on one seed.
ONE_SEED = "one seed: no spread over seeds to judge the difference by"
# Why a rule cannot decide on more: the seeds' spread holds both outcomes.
SPREAD = "the seeds' spread cannot tell"
# Why a rule cannot decide on a non-finite mean or value.
DIVERGED = "not finite (a seed diverged)"
# Why a direction cannot be decided between arms equal on every seed.
TIE = "a tie the measurement cannot break"

# Two numeric protocol settings differ materially when one is at least this
# many times the other (steps 1,500 vs 1,501 do not; 6,000 vs 50,000 do).
MATERIAL_RATIO = 1.25


@dataclasses.dataclass(frozen=True)
class Reference:
  """A paper's finding, its source ("Frankle & Carbin 2019, Fig. 3"), its
  headline number if any, and its protocol ({"steps": 50000, ...}), whose
  keys are compared with the same keys of our run."""
  statement: str
  source: str
  value: Optional[float] = None
  unit: str = ""
  protocol: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Comparison:
  """One row of "Ours beside the paper"; `reasons`: the material protocol
  differences (DIFFERS) or why it cannot be decided here (NOT_TESTABLE)."""
  quantity: str
  paper: str
  source: str
  ours: str
  verdict: str
  rule: str
  reasons: Tuple[str, ...] = ()

  def __post_init__(self):
    if self.verdict not in VERDICTS:
      raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")


def data_names(value: Any) -> List[str]:
  """The datasets a protocol's "data" names ('mnist/cifar10', 'cifar10,
  svhn, mnist': a finding shown on each)."""
  return [n.strip().lower() for n in re.split(r"[,/]", str(value)) if n.strip()]


def level_elsewhere(reference: Reference,
                    ours: Optional[Mapping[str, Any]]) -> str:
  """Why the paper's own accuracy or error level cannot judge ours: a level
  belongs to its dataset, and ours was measured on another (a stand-in
  such as Fashion-MNIST for CIFAR-10, or data the user chose); '' when the
  data is the paper's or either side does not declare it. Directions (BN
  above no BN, tickets above random) are judged across data; levels not."""
  theirs, here = reference.protocol.get("data"), (ours or {}).get("data")
  if theirs is None or here is None or str(here).lower() in data_names(theirs):
    return ""
  return f"the paper's level is on {theirs}, ours on {here}"


def comparison(quantity: str, reference: Reference, ours: str,
               holds: Optional[bool], rule: str, *,
               paper: Optional[str] = None,
               our_protocol: Optional[Mapping[str, Any]] = None,
               declared: Sequence[str] = (),
               why_not_testable: str = "", level: bool = False) -> Comparison:
  """A Comparison whose verdict is `holds` (None: not testable here, for
  `why_not_testable`); `paper` defaults to the reference's value. On
  DIFFERS the reasons are the reference's protocol settings that differ
  materially from `our_protocol`, plus those a config `declared` in words.
  `level`: ours is judged by the paper's own accuracy or error level, which
  is not testable on other data (`level_elsewhere`)."""
  elsewhere = level_elsewhere(reference, our_protocol) if level else ""
  spread = SPREAD in (rule or "")  # a rule undecided by the seeds' spread
  if elsewhere and (holds is not None or spread):
    holds, why_not_testable, spread = None, elsewhere, False
  verdict = NOT_TESTABLE if holds is None else (AGREES if holds else DIFFERS)
  reasons: Tuple[str, ...] = ()
  if verdict == DIFFERS:
    if our_protocol is not None:
      reasons = tuple(protocol_differences(reference.protocol, our_protocol))
    reasons += tuple(declared)
  elif verdict == NOT_TESTABLE:  # a rule's own reason comes first
    # ONE_SEED inside a rule's text: two rules joined ('…; …') on one seed.
    reasons = (ONE_SEED if ONE_SEED in (rule or "") else SPREAD if spread
               else next((r for r in (DIVERGED, TIE)
                          if (rule or "").endswith(r)), None)
               or why_not_testable or "not measured in this run",)
  if paper is None:
    paper = ("–" if reference.value is None else
             f"{reference.value:.1f}{reference.unit}")
  # An undecided row may have no rule text; its cell says so, never blank.
  return Comparison(quantity=quantity, paper=paper, source=reference.source,
                    ours=ours, verdict=verdict, rule=rule or "–",
                    reasons=reasons)


def versus(quantity: str, reference: Reference, a: Optional["Stat"],
           b: Optional["Stat"], names: Tuple[str, str], *, rule=None,
           scale: float = 100.0, digits: int = 2, sig: bool = False,
           paper: Optional[str] = None,
           our_protocol: Optional[Mapping[str, Any]] = None,
           why_not_testable: str = "", level: bool = False,
           **rule_kw) -> Comparison:
  """'A 88.41 ± 0.12, B 80.03 ± 1.10 (n=3)', decided by `rule(a, b)`
  (default `paired_greater`: arms trained on the same seeds)."""
  holds, text = (rule or paired_greater)(a, b, a_name=names[0],
                                         b_name=names[1], scale=scale,
                                         **rule_kw)
  n = len((a or {}).get("per_seed") or ())
  ours = ", ".join(f"{name} {fmt(s, scale, digits, sig=sig, n=False)}"
                   for name, s in zip(names, (a, b))) + f" (n={n})" * bool(n)
  return comparison(quantity, reference, ours, holds, text, paper=paper,
                    our_protocol=our_protocol,
                    why_not_testable=why_not_testable, level=level)


class Rows(list):
  """The comparisons of one run, measured under its protocol `ours`; `why`:
  the default reason a row is not testable."""

  def __init__(self, ours: Optional[Mapping[str, Any]] = None, why=""):
    super().__init__()
    self.ours, self.why = ours, why

  def check(self, quantity, reference, text, decided, paper=None, why="",
            level=False):
    """One text of ours, decided by a rule: `decided` is the (holds, rule
    text) a rule below returns (at_least, greater, trend, ...)."""
    self.append(comparison(quantity, reference, text, *decided, paper=paper,
                           our_protocol=self.ours,
                           why_not_testable=why or self.why, level=level))

  def versus(self, quantity, reference, a, b, names, why="", **kw):
    """Two stats side by side (`versus`)."""
    self.append(versus(quantity, reference, a, b, names,
                       our_protocol=self.ours,
                       why_not_testable=why or self.why, **kw))


# Rules: each returns (holds, rule text) from {mean, std, per_seed} dicts.
Stat = Mapping[str, Any]


def _digits(x: float, y: float) -> int:
  """Decimals (2 to 6) that tell x from y and show a nonzero x or y as
  nonzero: a rule's text never reads '0.14 > 0.14' or 'mean 0.00'."""
  for d in range(2, 6):
    a, b = f"{x:.{d}f}", f"{y:.{d}f}"
    if ((a != b or x == y) and (float(a) or not x) and (float(b) or not y)):
      return d
  return 6


def _bound(stat, threshold, slack, scale, unit, upper, spread,
           spread_name="2 × seed std"):
  if not _measured(stat):
    return None, "not measured"
  mean = stat["mean"]
  if not math.isfinite(mean):
    return None, f"mean {mean}: {DIVERGED}"
  if spread is not None and _one_seed(stat):  # as `within`: no spread
    return None, ONE_SEED
  spread = spread or 0.0
  edge = threshold + slack if upper else threshold - slack
  holds = mean <= edge if upper else mean >= edge
  sign = ("≤" if holds else ">") if upper else ("≥" if holds else "<")
  slack_text = f" {'+' if upper else '−'} {slack * scale:g}" if slack else ""
  # Enough digits to show a nonzero spread too (never '2 × seed std (0.00)').
  d = max(_digits(mean * scale, edge * scale),
          _digits(spread * scale, spread * scale))
  text = (f"mean {mean * scale:.{d}f}{unit} {sign} "
          f"{threshold * scale:.{d}f}{unit}{slack_text}")
  if spread and not holds:  # say which side of the seeds' spread it is
    beyond = abs(mean - edge) > spread
    text += (f", by {'more than' if beyond else 'at most'} {spread_name} "
             f"({spread * scale:.{d}f})") + f": {SPREAD}" * (not beyond)
    return (False if beyond else None), text
  return holds, text


def at_least(stat: Optional[Stat], threshold: float, *, scale: float = 100.0,
             unit: str = "", slack: float = 0.0, spread: Optional[float] = None,
             spread_name: str = "2 × seed std") -> Tuple[Optional[bool], str]:
  """Ours ≥ threshold − slack (same units as the stat; `scale` for text).
  `spread` (twice the seeds' std, for a mean over seeds that may fall on
  either side, where `within` would be two-sided): below the edge by at
  most it, the seeds cannot tell (SPREAD), and one seed has no spread to
  judge by (ONE_SEED, as in `within`); left None for what every seed must
  meet (all seeds reach the edge) or for a level beside a paper's number.
  `spread_name`: what the spread is twice the std of, in the text."""
  return _bound(stat, threshold, slack, scale, unit, False, spread,
                spread_name)


def at_most(stat: Optional[Stat], threshold: float, *, scale: float = 100.0,
            unit: str = "", slack: float = 0.0, spread: Optional[float] = None,
            spread_name: str = "2 × seed std") -> Tuple[Optional[bool], str]:
  """Ours ≤ threshold + slack (`spread` as in `at_least`)."""
  return _bound(stat, threshold, slack, scale, unit, True, spread,
                spread_name)


def _measured(*stats) -> bool:
  return all(s and s.get("mean") is not None for s in stats)


def _one_seed(*stats) -> bool:
  """A stat of ours from a single seed (a paper's {mean} has no per_seed):
  its sample std is 0, so any difference would pass '> 2 × std'."""
  return any(len((s or {}).get("per_seed") or ()) == 1 for s in stats)


def _direction(gap: float, spread: float, head: str, spread_name: str,
               scale: float) -> Tuple[Optional[bool], str]:
  """A claim 'a above b' from the gap a − b and twice the seeds' std: agrees
  when the gap is above the spread; differs when it is at or below minus
  the spread (no rise is left within the seeds' spread); in between the
  seeds' spread holds both a rise and none, so it cannot tell (a 3-seed run
  whose gap has the paper's sign is not 'unlike the paper'). Arms equal on
  every seed are a tie the measurement could not break, not a difference:
  both at a grid's edge or a cap (never reached), one grid value, or the
  best setting being the reference itself."""
  if not (math.isfinite(gap) and math.isfinite(spread)):
    return None, f"{head} = {gap * scale:+g}: {DIVERGED}"
  if gap == 0 and spread == 0:
    return None, f"{head} = 0 on every seed: {TIE}"
  d = _digits(gap * scale, spread * scale)
  text, s = f"{head} = {gap * scale:+.{d}f}", f"{spread * scale:.{d}f}"
  if gap > spread:
    return True, f"{text}, > {spread_name} ({s})"
  if gap <= -spread:
    return False, f"{text}, ≤ 0 − {spread_name} ({s})"
  return None, f"{text}, within ± {spread_name} ({s}): {SPREAD}"


def beyond(stat: Optional[Stat], threshold: float, *, below: bool,
           scale: float = 100.0) -> Tuple[Optional[bool], str]:
  """Ours past a fixed number (below it, or above) by more than twice the
  seeds' std (`_direction`): a direction against a number, such as BN's
  loss variation over no BN's below 1."""
  if not _measured(stat):
    return None, "not measured"
  if _one_seed(stat):
    return None, ONE_SEED
  t = f"{threshold * scale:g}"
  return _direction(threshold - stat["mean"] if below else
                    stat["mean"] - threshold, 2 * std_of(stat),
                    f"{t} − mean" if below else f"mean − {t}",
                    "2 × seed std", scale)


def greater(a: Optional[Stat], b: Optional[Stat], *, a_name: str, b_name: str,
            scale: float = 100.0) -> Tuple[Optional[bool], str]:
  """a's mean above b's by more than twice the larger sample std: a
  difference the seeds cannot explain (`_direction`)."""
  if not _measured(a, b):
    return None, "not measured"
  if _one_seed(a, b):
    return None, ONE_SEED
  return _direction(a["mean"] - b["mean"], 2 * max(std_of(a), std_of(b)),
                    f"{a_name} − {b_name}", "2 × seed std", scale)


def per_seed_differences(a: Optional[Stat], b: Optional[Stat]
                         ) -> Tuple[Optional[Stat], str]:
  """The per-seed differences a − b of arms on the same seeds, as a stat
  ({mean, per_seed}); or None and why they cannot be taken."""
  pa, pb = ((s or {}).get("per_seed") or [] for s in (a, b))
  if not pa or len(pa) != len(pb) or None in pa or None in pb:
    return None, "not measured on the same seeds"
  if len(pa) == 1:
    return None, ONE_SEED
  diffs = [x - y for x, y in zip(pa, pb)]
  return {"mean": sum(diffs) / len(diffs), "per_seed": diffs}, ""


def paired_greater(a: Optional[Stat], b: Optional[Stat], *, a_name: str,
                   b_name: str, scale: float = 100.0
                   ) -> Tuple[Optional[bool], str]:
  """Arms on the same seeds: the per-seed differences a − b have a mean
  above twice their sample std (`_direction`); pairing removes the
  seed-to-seed spread both arms share."""
  diffs, why = per_seed_differences(a, b)
  if diffs is None:
    return None, why
  return _direction(diffs["mean"], 2 * std_of(diffs),
                    f"{a_name} − {b_name} per seed", "2 × its std", scale)


def paired_bound(a: Optional[Stat], b: Optional[Stat], threshold: float, *,
                 upper: bool, slack: float = 0.0, scale: float = 100.0
                 ) -> Tuple[Optional[bool], str]:
  """Arms on the same seeds: the mean per-seed difference a − b against a
  bound (at most threshold + slack when `upper`, else at least threshold −
  slack), undecided within twice the differences' std of it (`at_least`)."""
  diffs, why = per_seed_differences(a, b)
  if diffs is None:
    return None, why
  return _bound(diffs, threshold, slack, scale, "", upper, 2 * std_of(diffs),
                "2 × its std")


def within(a: Optional[Stat], b: Optional[Stat], *, a_name: str, b_name: str,
           tolerance: float, scale: float = 100.0
           ) -> Tuple[Optional[bool], str]:
  """Agrees when |a − b| is within `tolerance`; differs when it is beyond
  the tolerance plus twice the larger sample std; in between the seeds
  cannot tell (not testable, SPREAD): an agreement needs the means within
  the tolerance, not a spread wide enough to hide the gap."""
  if not _measured(a, b):
    return None, "not measured"
  if _one_seed(a, b):  # no spread to tell a gap past the tolerance by
    return None, ONE_SEED
  gap = abs(a["mean"] - b["mean"])
  margin = tolerance + 2 * max(std_of(a), std_of(b))
  if not (math.isfinite(gap) and math.isfinite(margin)):  # inf > margin
    return None, f"|{a_name} − {b_name}| = {gap * scale:g}: {DIVERGED}"
  d = _digits(gap * scale, (tolerance if gap <= tolerance else margin) * scale)
  head = f"|{a_name} − {b_name}| = {gap * scale:.{d}f}"
  if gap <= tolerance:
    return True, f"{head} ≤ tolerance {tolerance * scale:g}"
  spread = f"{margin * scale:.{d}f} (tolerance {tolerance * scale:g} + 2 × seed std)"
  if gap > margin:
    return False, f"{head} > {spread}"
  return None, f"{head} > tolerance {tolerance * scale:g}, ≤ {spread}: {SPREAD}"


def monotone(values: Sequence[Optional[float]], *, increasing: bool,
             what: str) -> Tuple[Optional[bool], str]:
  """Every step of the sequence goes the stated way, and so does the whole
  of it: a flat sequence (the same n at every width, a saturated 100% at
  every depth) neither rises nor falls. For numbers without a spread over
  seeds (double_descent's peak n); a grid of stats over seeds is `trend`'s."""
  vals = [v for v in values if v is not None]
  if len(vals) < 2:
    return None, "fewer than two points"
  if not all(math.isfinite(v) for v in vals):
    return None, f"{what}: {DIVERGED}"
  steps = [b - a for a, b in zip(vals, vals[1:])]
  worst = min(steps) if increasing else max(steps)
  holds = worst >= 0 if increasing else worst <= 0
  direction = "rises" if increasing else "falls"
  if holds and (vals[-1] <= vals[0] if increasing else vals[-1] >= vals[0]):
    return False, (f"{what} does not {direction.rstrip('s')} overall "
                   f"({vals[0]:.3g} → {vals[-1]:.3g})")
  return holds, (f"{what} {direction} at every step" if holds else
                 f"{what} does not {direction.rstrip('s')} at every step "
                 f"(worst step {worst:+.3g})")


def trend(stats: Sequence[Optional[Stat]], *, increasing: bool, what: str,
          scale: float = 1.0, digits: int = 0, sig: bool = False,
          paired: bool = False) -> Tuple[Optional[bool], str]:
  """A trend over a grid of stats over seeds ('grows with p'): the last
  point beyond the first by more than twice the larger sample std
  (`greater`), and no step the wrong way by more than twice the larger
  std of its two points. A reversal, or a last point on the wrong side of
  the first by that spread or more, differs; otherwise the seeds' spread
  cannot tell. `paired`: the points are runs of the same seeds (one
  network evaluated in several modes, arms of one seed), so each change is
  judged by the spread of its per-seed changes (`paired_greater`), which
  leaves out the seed-to-seed spread the points share; unpaired where a
  seed is unmeasured at some point. `sig`: numbers
  with `digits` significant digits (measures spanning decades). `monotone`
  on the means decides a row by a reversal the seeds' spread explains
  (randomization's steps to fit, 7200 ± 300 → 7100 ± 436 at seeds
  1000..1002), so the verdict followed the seeds drawn; unmeasured points
  are left out, as `monotone` leaves them."""
  vals = [s for s in stats if _measured(s)]
  if len(vals) < 2:
    return None, "fewer than two points"
  if _one_seed(*vals):
    return None, ONE_SEED
  if not all(math.isfinite(v) for s in vals
             for v in [s["mean"], *(s.get("per_seed") or [])] if v is not None):
    return None, f"{what}: {DIVERGED}"
  # A seed unmeasured at some point (a bound undefined where γ ≤ 0) leaves
  # no per-seed change there: the points are judged unpaired, and say so.
  unpaired = paired and any(per_seed_differences(b, a)[0] is None
                            for a, b in zip(vals, vals[1:]))
  paired = paired and not unpaired
  if paired:
    margin = lambda a, b: 2 * std_of(per_seed_differences(b, a)[0])
  else:
    margin = lambda a, b: 2 * max(std_of(a), std_of(b))
  std = ("std of the per-seed changes" if paired else
         "seed std (unpaired: a seed is unmeasured at some point)" if unpaired
         else "seed std")
  sign = 1 if increasing else -1
  gap = sign * (vals[-1]["mean"] - vals[0]["mean"])
  ends = margin(vals[0], vals[-1])
  # Each step's change the claimed way, and its allowance: a reversal goes
  # the wrong way by more than it; the text names the worst reversal, else
  # the largest step the wrong way (never 'no step falls' over a fall).
  steps = [(sign * (b["mean"] - a["mean"]), margin(a, b))
           for a, b in zip(vals, vals[1:])]
  reversals = [s for s in steps if s[0] < -s[1]]
  wrong = (min(reversals, key=lambda s: s[0] + s[1]) if reversals else
           min((s for s in steps if s[0] < 0), default=None))
  direction, against = ("rises", "falls") if increasing else ("falls", "rises")
  # `digits` or more, up to 4 more: enough to tell the ends apart and show
  # a nonzero change or spread as nonzero (never 'rises 1 → 1, by 0').
  fmt = lambda x, d: f"{x * scale:.{d}{'g' if sig else 'f'}}"
  first, last = vals[0]["mean"], vals[-1]["mean"]
  shown = lambda d: (fmt(first, d) != fmt(last, d) or first == last) and all(
      float(fmt(x, d)) or not x for x in (gap, ends, *(wrong or ())))
  d = next((d for d in range(digits, digits + 5) if shown(d)), digits + 4)
  f = lambda x: fmt(x, d)
  beyond = gap > ends if gap > 0 else -gap >= ends
  verb = direction if gap > 0 else against if gap < 0 else "is flat"
  relation = ("≥" if beyond else "<") if gap <= 0 else (">" if beyond else "≤")
  text = (f"{what} {verb} {f(first)} → {f(last)}, by "
          f"{f(abs(gap))} ({relation} 2 × {std}, {f(ends)}); " + (
              f"no step {against}" if wrong is None else
              f"a step {against} by {f(-wrong[0])}, "
              f"{'more than' if reversals else 'within'} 2 × its "
              f"{'per-seed std' if paired else 'seed std'} ({f(wrong[1])})"))
  if reversals or (gap <= 0 and beyond):  # a reversal, or ends the wrong way
    return False, text
  return (True, text) if gap > 0 and beyond else (None, f"{text}: {SPREAD}")


def undecided(why: str = ""):
  """A rule that decides nothing (`versus`'s rule where the row cannot be
  judged here, e.g. no seed reached the edge): the row is not testable."""
  return lambda *args, **kwargs: (None, why)


def _material(paper: Any, ours: Any) -> bool:
  if isinstance(paper, (int, float)) and isinstance(ours, (int, float)):
    lo, hi = sorted((abs(float(paper)), abs(float(ours))))
    return hi > 0 and (lo == 0 or hi / lo >= MATERIAL_RATIO)
  return str(paper).strip().lower() != str(ours).strip().lower()


def _text(value: Any) -> str:
  return f"{value:,}" if isinstance(value, int) else str(value)


def corruption(data_config: Mapping[str, Any]) -> str:
  """What the run's own data.randomization and data.label_noise do to its
  data ('random labels', '50% label noise'); '' for the data as published."""
  r = data_config.get("randomization") or "none"
  p = float(data_config.get("label_noise") or 0.0)
  return " and ".join([r.replace("_", " ")] * (r != "none")
                      + [f"{100 * p:g}% label noise"] * (p > 0))


def on_data_of(comparisons: Sequence[Comparison],
               data_config: Mapping[str, Any]) -> List[Comparison]:
  """The papers' findings are on their data as published: where a run
  corrupts its own (random labels, label noise; an experiment that corrupts
  per stage, as memorization does, keeps data.* clean), no row is decided,
  and each says why (else 10% accuracy on random labels 'differs' from
  65%, with no protocol difference named)."""
  what = corruption(data_config)
  why = f"the papers' data are as published; this run trains on {what}"
  return [dataclasses.replace(c, verdict=NOT_TESTABLE, reasons=(why,))
          for c in comparisons] if what else list(comparisons)


def protocol_differences(paper: Mapping[str, Any],
                         ours: Mapping[str, Any]) -> List[str]:
  """'model: LeNet-300-100 in the paper, MLP 40-100-100-10 here' for each
  key both declare whose values differ materially (see MATERIAL_RATIO)."""
  return [f"{key}: {_text(paper[key])} in the paper, {_text(ours[key])} here"
          for key in paper if key in ours and _material(paper[key], ours[key])]


# The one writer.
HEADER = ("quantity", "paper", "ours (mean ± std over seeds, n)", "verdict",
          "rule")


def rows(comparisons: Sequence[Comparison]) -> List[List[str]]:
  """The cells of `table` under HEADER (the article renders them too)."""
  return [[c.quantity, f"{c.paper} ({c.source})", c.ours, c.verdict, c.rule]
          for c in comparisons]


def table(comparisons: Sequence[Comparison]) -> str:
  return markdown_table(HEADER, rows(comparisons))


def paragraph(comparisons: Sequence[Comparison]) -> str:
  """'As in the paper: …. Unlike the paper: … (where our protocol differs:
  …). Not testable here: … (why).' from the verdicts alone."""
  agree, differ, untestable = ([c for c in comparisons if c.verdict == v]
                               for v in VERDICTS)
  parts = ["As in the paper: " + "; ".join(c.quantity for c in agree) + "."
           ] * bool(agree)
  if differ:
    parts.append("Unlike the paper: " + "; ".join(
        f"{c.quantity}: {c.rule} (" + (
            f"where our protocol differs: {'; '.join(c.reasons)}" if c.reasons
            else "no declared protocol difference explains it") + ")"
        for c in differ) + ".")
  if untestable:
    parts.append("Not testable here: " + "; ".join(
        f"{c.quantity} ({'; '.join(c.reasons)})" for c in untestable) + ".")
  return " ".join(parts) or "No comparison with a paper for this run."
