"""Every mean ± std that README.md, docs/GALLERY.md or a notebook's text
quotes is one a committed run states: a report, a run's README under docs/,
or benchmarks/RESULTS.md, to the quoted number's own decimals (a rerun that
moved a number left the quick start notebook quoting the old one)."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEAN_STD = re.compile(r"(-?\d+(?:\.\d+)?) ± (\d+(?:\.\d+)?)")


def text_of(path):
  """A page's text with the minus sign as '-' (a dropped sign is caught)."""
  return path.read_text().replace("\u2212", "-")


def quoted():
  """(where, text) of the hand-written pages."""
  for name in ("README.md", "docs/GALLERY.md"):
    yield name, text_of(ROOT / name)
  for path in sorted((ROOT / "colabs").glob("*.ipynb")):
    for cell in json.loads(path.read_text())["cells"]:
      if cell["cell_type"] == "markdown":
        yield path.name, "".join(cell["source"]).replace("\u2212", "-")


def stated():
  """Every (mean, std) pair the committed runs' pages state."""
  pages = [p for p in (ROOT / "docs").rglob("*.md") if p.name != "GALLERY.md"]
  pages.append(ROOT / "benchmarks" / "RESULTS.md")
  return {(float(m), float(s)) for p in pages
          for m, s in MEAN_STD.findall(text_of(p))}


def decimals(text):
  return len(text.partition(".")[2])


def matches(mean, std, pairs):
  """A stated pair that rounds to the quoted one."""
  dm, ds = decimals(mean), decimals(std)
  return any(abs(round(m, dm) - float(mean)) < 10 ** -(dm + 3) and
             abs(round(s, ds) - float(std)) < 10 ** -(ds + 3)
             for m, s in pairs)


def test_quoted_means_are_measured():
  pairs = stated()
  unbacked = sorted({f"{where}: {m} ± {s}" for where, text in quoted()
                     for m, s in MEAN_STD.findall(text)
                     if not matches(m, s, pairs)})
  assert not unbacked, unbacked


def test_a_stale_number_is_caught():
  assert matches("0.76", "0.00", {(0.7565, 0.0043)})
  assert not matches("67.00", "0.64", {(67.60, 0.93)})
