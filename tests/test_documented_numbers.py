"""Every mean ± std that README.md, docs/GALLERY.md, a run's README under
docs/ or a notebook's text quotes is one a committed run states, to the
quoted number's own decimals: a generated page (report.md, ARTICLE.md),
benchmarks/RESULTS.md, or a run's JSON files, as the mean and sample std
(ddof = 1, the reports' convention) of its per-seed values. A rerun that
moved a number left the quick start notebook quoting the old one, and run
READMEs written by hand quoted population stds beside their reports'."""

import functools
import json
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEAN_STD = re.compile(r"(-?\d+(?:\.\d+)?) ± (\d+(?:\.\d+)?)")


def text_of(path):
  """A page's text with the minus sign as '-' (a dropped sign is caught)."""
  return path.read_text().replace("\u2212", "-")


def quoted():
  """(where, text) of the hand-written pages."""
  for path in [ROOT / "README.md", ROOT / "docs" / "GALLERY.md",
               *sorted((ROOT / "docs").rglob("README.md"))]:
    yield str(path.relative_to(ROOT)), text_of(path)
  for path in sorted((ROOT / "colabs").glob("*.ipynb")):
    for cell in json.loads(path.read_text())["cells"]:
      if cell["cell_type"] == "markdown":
        yield path.name, "".join(cell["source"]).replace("\u2212", "-")


def stated():
  """Every (mean, std) pair the committed runs state: on their generated
  pages, and in their JSON files, as percentages too."""
  pages = [p for p in (ROOT / "docs").rglob("*.md")
           if p.name not in ("GALLERY.md", "README.md")]
  pages.append(ROOT / "benchmarks" / "RESULTS.md")
  pairs = {(float(m), float(s)) for p in pages
           for m, s in MEAN_STD.findall(text_of(p))}
  for path in (ROOT / "docs").rglob("*.json"):
    for m, s in json_stats(json.loads(path.read_text())):
      pairs |= {(m, s), (100 * m, 100 * s)}
  return pairs


def json_stats(value):
  """(mean, sample std) of each {mean, std} object without per-seed values,
  and of each per-seed list (of a 2-D one, each column: a curve's points)."""
  if isinstance(value, dict):
    if "per_seed" not in value and all(
        isinstance(value.get(k), (int, float)) for k in ("mean", "std")):
      yield float(value["mean"]), float(value["std"])
    for key, item in value.items():
      if key == "per_seed" and isinstance(item, list) and len(item) > 1:
        try:
          seeds = np.asarray(item, dtype=float)
        except (TypeError, ValueError):  # None for an unfinished seed
          continue
        seeds = seeds.reshape(len(item), -1)
        finite = np.all(np.isfinite(seeds), axis=0)
        yield from zip(seeds.mean(axis=0)[finite].tolist(),
                       seeds.std(axis=0, ddof=1)[finite].tolist())
      else:
        yield from json_stats(item)
  elif isinstance(value, list):
    for item in value:
      yield from json_stats(item)


def decimals(text):
  return len(text.partition(".")[2])


@functools.lru_cache(maxsize=None)
def rounded(pairs, dm, ds):
  """The stated pairs rounded to (dm, ds) decimals: looked up, not scanned
  (52k pairs times 600 quoted numbers took 20 s)."""
  return {(round(m, dm), round(s, ds)) for m, s in pairs}


def matches(mean, std, pairs):
  """A stated pair that rounds to the quoted one (Python's `round` gives
  the float nearest the decimal, the float the quoted text parses to)."""
  pairs = pairs if isinstance(pairs, frozenset) else frozenset(pairs)
  return (float(mean), float(std)) in rounded(pairs, decimals(mean),
                                              decimals(std))


def test_quoted_means_are_measured():
  pairs = frozenset(stated())
  unbacked = sorted({f"{where}: {m} ± {s}" for where, text in quoted()
                     for m, s in MEAN_STD.findall(text)
                     if not matches(m, s, pairs)})
  assert not unbacked, unbacked


def test_a_stale_number_is_caught():
  assert matches("0.76", "0.00", {(0.7565, 0.0043)})
  assert not matches("67.00", "0.64", {(67.60, 0.93)})


def test_a_population_std_is_caught():
  """width_sweep's README quoted 13.57 ± 0.15 (ddof = 0) for seeds whose
  report states 13.57 ± 0.19."""
  seeds = [0.1337, 0.1357, 0.1377]
  assert matches("13.57", "0.20", set(json_stats({"per_seed": seeds})) | {
      (100 * m, 100 * s) for m, s in json_stats({"per_seed": seeds})})
  assert not matches("13.57", "0.16", {
      (100 * m, 100 * s) for m, s in json_stats({"per_seed": seeds})})


def _stored_stds(value):
  """(stored std, sample std of per_seed) of each {mean, std, per_seed}
  object whose per-seed values are all numbers."""
  if isinstance(value, dict):
    seeds = value.get("per_seed")
    if (isinstance(value.get("std"), (int, float)) and isinstance(seeds, list)
        and len(seeds) > 1 and all(isinstance(v, (int, float)) and
                                   not isinstance(v, bool) for v in seeds)):
      yield value["std"], float(np.std(np.asarray(seeds, float), ddof=1))
    for item in value.values():
      yield from _stored_stds(item)
  elif isinstance(value, list):
    for item in value:
      yield from _stored_stds(item)


def test_every_committed_summary_stores_the_sample_std():
  """13 committed summaries stored population stds (ddof = 0, from before
  the convention), 18% low at n = 3 beside their reports' ± (which take
  per_seed): a reader of summary.json got another number than the page."""
  for path in sorted((ROOT / "docs").rglob("summary.json")):
    for stored, sample in _stored_stds(json.loads(path.read_text())):
      if np.isfinite(sample):
        assert np.isclose(stored, sample, rtol=1e-4, atol=1e-12), (
            path.relative_to(ROOT), stored, sample)
