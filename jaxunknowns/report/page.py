"""The one shape of every report.md (`Page`), and its atomic writer."""

import dataclasses
import json
import os
from typing import List, Sequence, Tuple

from jaxunknowns import paths
from jaxunknowns.report import compare
from jaxunknowns.report.text import count, run_line


def write_report(path: str, title: str, sections: List[str]):
  """A markdown page of free-form sections (the sweep's aggregate)."""
  paths.write_atomic(path, f"# {title}\n\n"
                     + "\n\n".join(s.strip() for s in sections) + "\n")


# A report's headings, in order (tests check every report.md against them).
CLAIM, CONFIG = "**Claim.**", "**Config.**"
FIGURES, VERSUS = "## Figures", "## Ours beside the paper"
DIFFER, DETAILS, RUN = "**Where and why we differ.**", "## Details", "**Run.**"
PAGE_HEADINGS = (CLAIM, CONFIG, FIGURES, VERSUS, DIFFER, DETAILS, RUN)
STATS_NOTE = ("*Numbers are mean ± sample standard deviation (ddof = 1) over "
              "the n seeds stated beside them.*")
PAGE_JSON = "page.json"


@dataclasses.dataclass
class Page:
  """One experiment's report.md: the papers' `claim`, what ran (`config`),
  `figures` (caption, PNG name), the `comparisons` (their table and the
  "where and why we differ" paragraph), `details` (the experiment's own
  sections) and the `run` line (`run_line`)."""
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
    details = "\n\n".join(d.strip() for d in self.details)
    sections = [
        f"{CLAIM} {self.claim.strip()}", f"{CONFIG} {self.config.strip()}",
        f"{FIGURES}\n\n{figures or 'None.'}",
        f"{VERSUS}\n\n{compare.table(self.comparisons)}",
        f"{DIFFER} {compare.paragraph(self.comparisons).strip()}",
        f"{DETAILS}\n\n{details or 'None.'}", f"{RUN} {self.run.strip()}"]
    return (f"# {self.title}\n\n{STATS_NOTE}\n\n" + "\n\n".join(sections)
            + "\n")


def claim(references) -> str:
  """The claim paragraph: each paper's finding with its source."""
  return " ".join(f"{r.statement.rstrip('.')} ({r.source})."
                  for r in references)


def experiment_page(config, summary, *, references=(), setup: str,
                    run: str = "", optimizer: str = "", **fields) -> Page:
  """The page of a run: title '{experiment}: {model} on {data}', the claim
  of the papers' `references`, the config line every run shares (model,
  data, training set, optimizer, seeds) then the experiment's own `setup`,
  and the run line (`run`: extra figures such as steps/s). `optimizer`:
  the words for an experiment whose runs take their own step sizes, in
  place of config.optim's name and lr, which no run then used."""
  o, m, d = config.optim, config.model.name, config.data.name
  examples = summary.get("train_examples")
  corrupted = compare.corruption(config.data)
  # Nesterov reads β too (optim.OPTIMIZER_FIELDS).
  optimizer = optimizer or (f"{o.name} lr {o.lr:g}" + (
      f" momentum {o.momentum:g}" if o.name in ("momentum", "nesterov")
      else ""))
  shared = (f"`{m}` on `{d}`" + f" with {corrupted}" * bool(corrupted)
            + (f" ({examples:,} training examples)" if examples else "")
            + f", {optimizer}"
            + f", {count(len(summary['seeds']), 'seed')} trained at once")
  fields.setdefault("title", f"{config.experiment}: {m} on {d}")
  fields.setdefault("claim", claim(references))
  return Page(config=f"{shared}; {setup.strip().rstrip('.')}.",
              run=run_line(summary, run), **fields)


def page_data(page: Page) -> dict:
  """What the article reuses: title, claim, figures, comparisons."""
  return {"title": page.title, "claim": page.claim,
          "figures": [list(f) for f in page.figures],
          "comparisons": [dataclasses.asdict(c) for c in page.comparisons]}


def write(path: str, config, summary, **fields) -> str:
  """report.md of the `experiment_page` of a run (its `fields`)."""
  return write_page(path, experiment_page(config, summary, **fields), config)


def write_page(workdir: str, page: Page, config) -> str:
  """WORKDIR/report.md and page.json, atomically; returns report.md's path.
  `config`: the run's, whose data may not be the papers' (compare.on_data_of)."""
  page = dataclasses.replace(page, comparisons=compare.on_data_of(
      page.comparisons, config.data))
  path = os.path.join(workdir, "report.md")
  paths.write_atomic(os.path.join(workdir, PAGE_JSON),
                     json.dumps(page_data(page), indent=1) + "\n")
  paths.write_atomic(path, page.markdown())
  return path
