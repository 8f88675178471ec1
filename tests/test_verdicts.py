"""Which verdicts moved between two runs (`report.verdicts`): against the
table docs/results/article_seed1000/README.md was written with by a one-off
script, on hand-made pages whose moves are known, and on bad input."""

import json
import re
import subprocess
import sys

from jaxunknowns.report import verdicts
from run_helpers import ROOT, assert_one_line_error, snapshot

SEEDS_0 = ROOT / "docs" / "article"
SEEDS_1000 = ROOT / "docs" / "results" / "article_seed1000"


def table_rows(text):
  return [l for l in text.splitlines()
          if l.startswith("| ") and not l.startswith("| stage |")]


def cli(*workdirs):
  return subprocess.run(
      [sys.executable, "-m", "jaxunknowns.report.verdicts",
       *(f"--workdir={w}" for w in workdirs)], cwd=ROOT, capture_output=True,
      text=True, timeout=120)


def test_the_committed_seed_rerun_table():
  """The README's counts (how many of how many rows keep their verdict,
  how many flip between agrees and differs) and its rows (those that
  moved, flips included), against the tool on the same page.json files."""
  proc = cli(SEEDS_0, SEEDS_1000)
  assert proc.returncode == 0, proc.stderr[-2000:]
  readme = (SEEDS_1000 / "README.md").read_text()
  total, kept, flips = re.search(
      r"Of the (\d+) comparisons, \*\*(\d+) keep their verdict, and "
      r"(none|one|\d+) flips?", readme).groups()
  flips = {"none": "0", "one": "1"}.get(flips, flips)
  moved = len(table_rows(readme)) - int(flips)
  assert (f"{total} rows in both: {kept} keep their verdict, {flips} flip "
          f"between agrees and differs, {moved} move to or from not testable "
          "here.") in proc.stdout, proc.stdout[:400]
  page = re.search(r"The page says (\d+) agree, (\d+) differ, (\d+) not "
                   r"testable\s+here \(seeds 0–2: (\d+) / (\d+) / (\d+)\)",
                   readme).groups()
  counts = re.findall(r"(\d+) agree, (\d+) differ, (\d+) not testable here "
                      r"\(\d+ rows\)", proc.stdout)
  assert [page[3:], page[:3]] == counts, (page, counts)
  article = re.search(r"the comparisons say: (\d+) agree, (\d+)\s+differ, "
                      r"(\d+) not testable here", (
                          SEEDS_0 / "README.md").read_text()).groups()
  assert article == page[3:], (article, page)
  assert table_rows(proc.stdout) == table_rows(readme)
  assert "Only in" not in proc.stdout  # the 4 step-named rows are paired


def comparison(quantity, verdict, ours="1.00 ± 0.10 (n=3)"):
  return {"quantity": quantity, "paper": "–", "source": "S", "ours": ours,
          "verdict": verdict, "rule": "r", "reasons": []}


def write_page(folder, rows):
  folder.mkdir(parents=True)
  (folder / "page.json").write_text(json.dumps({
      "title": "t", "claim": "c", "figures": [],
      "comparisons": [comparison(*r) for r in rows]}))


def test_moves_flips_and_unmatched_rows(tmp_path):
  a, b = tmp_path / "a", tmp_path / "b"
  write_page(a, [("kept", "agrees"), ("flips", "agrees"),
                 ("to nt", "differs"), ("at step 10", "agrees"),
                 ("at step 20", "differs"), ("gone", "agrees"),
                 ("twice", "agrees"), ("twice", "differs")])
  write_page(b, [("kept", "agrees"), ("flips", "differs"),
                 ("to nt", "not testable here"), ("at step 12", "agrees"),
                 ("at step 25", "agrees"), ("new at 3", "agrees"),
                 ("twice", "agrees"), ("twice", "agrees")])
  ra, rb = verdicts.rows(str(a)), verdicts.rows(str(b))
  assert ("", "twice (2)") in ra  # a repeated quantity hides no row
  assert verdicts.flips(ra, rb) == [
      (("", "flips"),) * 2, (("", "at step 20"), ("", "at step 25")),
      (("", "twice (2)"),) * 2]
  moved = {i[1]: j[1] for i, j in verdicts.moved(ra, rb)}
  # The numbered rows pair in page order: step 20 with step 25, not 12.
  assert moved == {"flips": "flips", "to nt": "to nt",
                   "at step 20": "at step 25", "twice (2)": "twice (2)"}
  text = verdicts.markdown("A", ra, "B", rb)
  assert "A = A: 5 agree, 3 differ, 0 not testable here (8 rows)" in text
  assert "B = B: 6 agree, 1 differ, 1 not testable here (8 rows)" in text
  assert ("7 rows in both: 3 keep their verdict, 3 flip between agrees and "
          "differs, 1 move to or from not testable here.") in text
  assert ("| – | at step 20 (B: at step 25) | differs: 1.00 ± 0.10 (n=3) | "
          "agrees: 1.00 ± 0.10 (n=3) |") in text
  assert "Only in A (1): gone." in text and "Only in B (1): new at 3." in text


def test_an_article_is_matched_stage_by_stage(tmp_path):
  for side, verdict in (("a", "agrees"), ("b", "differs")):
    write_page(tmp_path / side / "stages" / "imp", [("q", "agrees")])
    write_page(tmp_path / side / "stages" / "sam", [("q", verdict)])
    (tmp_path / side / "stages" / "failed").mkdir()  # no page.json
  ra, rb = (verdicts.rows(str(tmp_path / s)) for s in "ab")
  assert list(ra) == [("imp", "q"), ("sam", "q")]
  assert verdicts.moved(ra, rb) == [(("sam", "q"), ("sam", "q"))]


def test_bad_input_is_one_line(tmp_path):
  write_page(tmp_path / "run", [("q", "agrees")])
  empty = tmp_path / "empty"
  empty.mkdir()
  before = snapshot(tmp_path / "run"), snapshot(empty)
  assert_one_line_error(cli(tmp_path / "run", empty), str(empty), "report_cli")
  assert_one_line_error(cli(tmp_path / "run"), "exactly two")
  damaged = tmp_path / "damaged"
  write_page(damaged, [("q", "agrees")])
  (damaged / "page.json").write_text('{"comparisons": [{"quantity": "q"}]}')
  assert_one_line_error(cli(tmp_path / "run", damaged), "damaged")
  (damaged / "page.json").write_text('{"comparisons": [')
  assert_one_line_error(cli(tmp_path / "run", damaged), "damaged")
  assert (snapshot(tmp_path / "run"), snapshot(empty)) == before  # read only
