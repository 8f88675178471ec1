r"""Which verdicts moved between two runs of one experiment or article: the
same config on other seeds, data or settings.

  python -m jaxunknowns.report.verdicts --workdir=A --workdir=B

Reads only each run's page.json (an article's: every stages/*/page.json),
so each side is judged by the rules its report was written under; rebuild
both with `report_cli` first to judge them by today's. Rows are matched by
stage and quantity, then the rest of a stage by quantity with its numbers
masked, in page order: a row that names where it was measured ('step 333'
on A, 'step 400' on B) is still the same row. Prints each side's counts,
how many rows kept their verdict, and a markdown table of the rows that
moved, then the rows that only one side has (a grid of other sizes, an arm
left out).
"""

import os
import re
from typing import Dict, List, Tuple

from jaxunknowns import errors, paths
from jaxunknowns.errors import UserError
from jaxunknowns.metrics import read_json_object
from jaxunknowns.report.compare import AGREES, DIFFERS, NOT_TESTABLE
from jaxunknowns.report.page import PAGE_JSON
from jaxunknowns.report.text import count, markdown_table

Key = Tuple[str, str]  # (stage, quantity); stage '' for a single run.


def pages(workdir: str) -> Dict[str, str]:
  """{stage: page.json path}: {'': ...} for a run, its stages' for an
  article (a stage without page.json failed or was never reported)."""
  root = paths.absolute(workdir).rstrip("/")
  if paths.isfile(os.path.join(root, PAGE_JSON)):
    return {"": os.path.join(root, PAGE_JSON)}
  stages = os.path.join(root, "stages")
  found = {s: os.path.join(stages, s, PAGE_JSON)
           for s in sorted(paths.listdir(stages))} if paths.isdir(stages) else {}
  found = {s: p for s, p in found.items() if paths.isfile(p)}
  if not found:
    raise UserError(f"{workdir} has no {PAGE_JSON} nor stages/*/{PAGE_JSON}: "
                    "give a finished run's or article's workdir, or rebuild "
                    f"its report (python -m jaxunknowns.report_cli "
                    f"--workdir={workdir})")
  return found


def rows(workdir: str) -> Dict[Key, dict]:
  """Every comparison of the run, in page order; a quantity a page states
  twice is numbered ('… (2)') so that no row hides another."""
  out = {}
  for stage, path in pages(workdir).items():
    fix = f"rebuild it: python -m jaxunknowns.report_cli --workdir={workdir}"
    comparisons = read_json_object(path, fix).get("comparisons")
    if not isinstance(comparisons, list) or not all(
        isinstance(c, dict) and isinstance(c.get("quantity"), str)
        and c.get("verdict") in (AGREES, DIFFERS, NOT_TESTABLE)
        for c in comparisons):
      raise UserError(f"{path} is damaged (its comparisons lack a quantity or "
                      f"a verdict): {fix}")
    for c in comparisons:
      key, n = (stage, c["quantity"]), 1
      while key in out:
        n += 1
        key = (stage, f"{c['quantity']} ({n})")
      out[key] = c
  return out


def counts(side: Dict[Key, dict]) -> str:
  """'120 agree, 12 differ, 33 not testable here (165 rows)'."""
  n = {v: sum(c["verdict"] == v for c in side.values())
       for v in (AGREES, DIFFERS, NOT_TESTABLE)}
  return (f"{n[AGREES]} agree, {n[DIFFERS]} differ, {n[NOT_TESTABLE]} "
          f"{NOT_TESTABLE} ({len(side)} rows)")


def pairs(a: Dict[Key, dict], b: Dict[Key, dict]) -> List[Tuple[Key, Key]]:
  """(A's key, B's key) of the rows both sides have, in A's order: the same
  stage and quantity, else the same stage and quantity but for its numbers,
  the n-th such left over in A paired with the n-th in B."""
  masked = lambda k, n: (k[0], re.sub(r"\d+(\.\d+)?", "#", k[1]), n)
  def leftover(side, other):
    seen, out = {}, {}
    for k in (k for k in side if k not in other):
      n = seen[masked(k, 0)] = seen.get(masked(k, 0), 0) + 1
      out[masked(k, n)] = k
    return out
  in_b = leftover(b, a)
  by_shape = {k: in_b[m] for m, k in leftover(a, b).items() if m in in_b}
  return [(k, k if k in b else by_shape[k]) for k in a
          if k in b or k in by_shape]


def moved(a: Dict[Key, dict], b: Dict[Key, dict]) -> List[Tuple[Key, Key]]:
  """The pairs whose verdicts differ."""
  return [(i, j) for i, j in pairs(a, b)
          if a[i]["verdict"] != b[j]["verdict"]]


def flips(a: Dict[Key, dict], b: Dict[Key, dict]) -> List[Tuple[Key, Key]]:
  """The moved rows that go straight between agrees and differs: the seeds
  of each side decided, and they decided opposite ways."""
  return [(i, j) for i, j in moved(a, b)
          if NOT_TESTABLE not in (a[i]["verdict"], b[j]["verdict"])]


def markdown(a_name: str, a: Dict[Key, dict], b_name: str,
             b: Dict[Key, dict]) -> str:
  """The counts, then a table of the moved rows (each side's verdict and
  numbers), then the rows only one side has."""
  both, shift, flip = pairs(a, b), moved(a, b), flips(a, b)
  lines = [f"A = {a_name}: {counts(a)}", f"B = {b_name}: {counts(b)}",
           f"{len(both)} rows in both: {len(both) - len(shift)} keep their "
           f"verdict, {len(flip)} flip between {AGREES} and {DIFFERS}, "
           f"{len(shift) - len(flip)} move to or from {NOT_TESTABLE}."]
  cell = lambda c: f"{c['verdict']}: {c.get('ours', '–')}"
  if shift:
    lines += ["", markdown_table(["stage", "quantity", "A", "B"], [
        [i[0] or "–", i[1] if i == j else f"{i[1]} (B: {j[1]})", cell(a[i]),
         cell(b[j])] for i, j in shift])]
  for name, side, paired in (("A", a, {i for i, _ in both}),
                             ("B", b, {j for _, j in both})):
    only = [k for k in side if k not in paired]
    if only:
      lines += ["", f"Only in {name} ({len(only)}): " + "; ".join(
          f"{stage}: {q}" if stage else q for stage, q in only) + "."]
  return "\n".join(lines) + "\n"


def _cli():
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  workdirs = flags.DEFINE_multi_string(
      "workdir", None, "Two runs' (or articles') workdirs: A, then B.")
  flags.mark_flags_as_required(["workdir"])

  def main(argv):
    errors.refuse_arguments(argv)
    try:
      if len(workdirs.value) != 2:
        raise UserError(f"--workdir given {count(len(workdirs.value), 'time')}"
                        ": give exactly two, A then B")
      a, b = workdirs.value
      print(markdown(a, rows(a), b, rows(b)), end="")
    except (UserError, ImportError) as e:
      error = errors.user_error(e, "")  # a gs:// workdir without gcsfs
      if error is None:
        raise
      errors.exit_with(error)

  app.run(main, flags_parser=errors.parse_flags)


if __name__ == "__main__":
  _cli()
