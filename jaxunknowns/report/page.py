"""The one shape of every report.md (`Page`), and its atomic writer."""

import dataclasses
import json
import os
from typing import List, Sequence, Tuple

from jaxunknowns import paths
from jaxunknowns.report import compare
from jaxunknowns.report.text import run_line


def _write_text(path: str, text: str):
  paths.write_atomic(path, text)  # Never a half-written report.md.


def write_report(path: str, title: str, sections: List[str]):
  """A markdown page of free-form sections (the sweep's aggregate)."""
  _write_text(path, f"# {title}\n\n"
              + "\n\n".join(s.strip() for s in sections) + "\n")


# The headings of a report, in order; tests check every experiment's
# report.md against them.
CLAIM, CONFIG = "**Claim.**", "**Config.**"
FIGURES, VERSUS = "## Figures", "## Ours beside the paper"
DIFFER, DETAILS, RUN = "**Where and why we differ.**", "## Details", "**Run.**"
PAGE_HEADINGS = (CLAIM, CONFIG, FIGURES, VERSUS, DIFFER, DETAILS, RUN)
# The header line of every page: what "±" means.
STATS_NOTE = ("*Numbers are mean ± sample standard deviation (ddof = 1) over "
              "the n seeds stated beside them.*")


@dataclasses.dataclass
class Page:
  """One experiment's report.md.

  claim:       the paper's finding, with its source and numbers.
  config:      what ran: model, data, optimizer, budget, seeds.
  figures:     (caption, PNG file name in the workdir), in reading order.
  comparisons: the paper's numbers beside ours, one `compare.Comparison` a
               quantity; rendered as the table and the "where and why we
               differ" paragraph (report/compare.py).
  details:     the experiment's own sections (full tables, notes), each
               starting with a '### ' heading or plain text.
  run:         machine and time (`run_line`).
  """
  title: str
  claim: str
  config: str
  figures: Sequence[Tuple[str, str]]
  run: str
  comparisons: Sequence[compare.Comparison] = ()
  details: Sequence[str] = ()

  def markdown(self) -> str:
    figures = "\n\n".join(f"![{caption}]({name})\n\n*{caption}*"
                           for caption, name in self.figures)
    versus = compare.table(self.comparisons)
    differences = compare.paragraph(self.comparisons)
    sections = [
        f"{CLAIM} {self.claim.strip()}",
        f"{CONFIG} {self.config.strip()}",
        f"{FIGURES}\n\n{figures or 'None.'}",
        f"{VERSUS}\n\n{versus}",
        f"{DIFFER} {differences.strip()}",
        f"{DETAILS}\n\n" + ("\n\n".join(d.strip() for d in self.details)
                             or "None."),
        f"{RUN} {self.run.strip()}",
    ]
    return (f"# {self.title}\n\n{STATS_NOTE}\n\n" + "\n\n".join(sections)
            + "\n")


def claim(references) -> str:
  """The claim paragraph: each paper's finding with its source."""
  return " ".join(f"{r.statement.rstrip('.')} ({r.source})." for r in references)


def experiment_page(config, summary, *, references=(), setup: str,
                    run: str = "", **fields) -> Page:
  """The page of a run: title '{experiment}: {model} on {data}', the claim
  of the papers' `references`, the config line every run shares (model,
  data, training set, optimizer, seeds) then the experiment's own `setup`,
  and the run line (`run`: extra figures such as steps/s)."""
  o, m, d = config.optim, config.model.name, config.data.name
  examples = summary.get("train_examples")
  shared = (f"`{m}` on `{d}`" + (f" ({examples:,} training examples)" if
                                 examples else "") + f", {o.name} lr {o.lr:g}"
            + (f" momentum {o.momentum:g}" if o.name == "momentum" else "")
            + f", {len(summary['seeds'])} seeds trained at once")
  fields.setdefault("title", f"{config.experiment}: {m} on {d}")
  fields.setdefault("claim", claim(references))
  return Page(config=f"{shared}; {setup.strip().rstrip('.')}.",
              run=run_line(summary, run), **fields)


PAGE_JSON = "page.json"


def page_data(page: Page) -> dict:
  """What other pages reuse (the article): title, claim, figures and the
  comparisons with their verdicts, as data rather than rendered markdown."""
  return {"title": page.title, "claim": page.claim,
          "figures": [list(f) for f in page.figures],
          "comparisons": [dataclasses.asdict(c) for c in page.comparisons]}


def write_page(workdir: str, page: Page) -> str:
  """Writes WORKDIR/report.md and its data, page.json, atomically; returns
  report.md's path."""
  path = os.path.join(workdir, "report.md")
  _write_text(os.path.join(workdir, PAGE_JSON),
              json.dumps(page_data(page), indent=1) + "\n")
  _write_text(path, page.markdown())
  return path


