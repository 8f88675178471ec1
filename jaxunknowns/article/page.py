"""ARTICLE.md and article.html: the article's outline filled in by its stages.

Both pages are rendered from one list of blocks (headings, paragraphs,
commands, figures, tables), built from the article's summary and each
stage's page.json: the stage's claim with its sources, first figure and
comparisons with their verdicts exactly as its own report decided them. A
section's verdict is a count of those verdicts, never a judgement made here.
article.html embeds every figure (base64) and its style, so it opens offline
as one file.
"""

import base64
import collections
import dataclasses
import html
import os
from typing import Any, List, Mapping, Sequence

from jaxunknowns import paths
from jaxunknowns.article import outline
from jaxunknowns.metrics import read_json_object
from jaxunknowns.report import compare
from jaxunknowns.report.page import PAGE_JSON, STATS_NOTE
from jaxunknowns.report.text import duration, markdown_table, run_line
from jaxunknowns.workdir import CONFIG_FILE

TITLE = "What we still don't understand about machine learning, measured"
MARKDOWN, HTML = "ARTICLE.md", "article.html"
SUMMARY_HEADER = ("", "claim", "stage", "verdict", "seeds", "time")


@dataclasses.dataclass(frozen=True)
class Block:
  kind: str             # heading1..3 | text | link | command | figure | table
  text: str = ""        # figure: the caption; table: unused
  label: str = ""       # text: a bold lead-in ('Verdict.')
  path: str = ""        # figure, link: a file relative to the article's folder
  rows: Sequence[Sequence[str]] = ()  # table: header row first


def verdict(status: Mapping[str, Any], page, comparisons) -> str:
  """'agrees (3 of 3)', 'mixed: 2 agree, 1 differ', 'failed', ... counted
  from the stage's comparisons; 'no report' where its page.json (`page`)
  is missing: no comparison is known, not that it has none."""
  if not status:
    return "not run"
  if status.get("status") == "failed":
    return "failed"
  if page is None:
    return "no report"
  counts = collections.Counter(c.verdict for c in comparisons)
  if not counts:
    return "no comparison with a paper"
  if len(counts) == 1:
    (only, n), = counts.items()
    return f"{only} ({n} of {n})"
  plural = {compare.AGREES: "agree", compare.DIFFERS: "differ"}
  return "mixed: " + ", ".join(f"{counts[v]} {plural.get(v, v)}"
                               for v in compare.VERDICTS if counts[v])


def _comparisons(page) -> List[compare.Comparison]:
  return [compare.Comparison(**{**c, "reasons": tuple(c["reasons"])})
          for c in (page or {}).get("comparisons", ())]


def command(config, scale: str) -> str:
  """The command that makes this page: configs/article.py at its scale with
  every article field that differs from the scale's own (the executor
  changes where the stages run, not what they measure). Without the
  repository's configs/ (a wheel), skip and seed_offset where set."""
  # pylint: disable=g-import-not-at-top
  from jaxunknowns.article.experiment import scale_config
  ours = _dotted(config.article.to_dict())
  own = scale_config(scale)
  default = (_dotted(own.article.to_dict()) if own is not None  # no configs/
             else {**ours, "skip": "", "seed_offset": 0})
  flags = [f" --config.article.{k}={v}" for k, v in ours.items()
           if k != "executor" and default.get(k) != v]
  return ("python -m jaxunknowns.main --config=configs/article.py:"
          f"{scale} --workdir=DIR" + "".join(flags))


def _dotted(tree: Mapping[str, Any], prefix: str = "") -> dict:
  out = {}
  for k, v in tree.items():
    out.update(_dotted(v, f"{prefix}{k}.") if isinstance(v, Mapping)
               else {f"{prefix}{k}": v})
  return out


def resumed_note(stages, shown) -> str:
  """Where an earlier run of the article finished some stages (a resumed
  or extended article), the wall time is this run's alone: say so."""
  before = sum(bool(stages[s.stage].get("finished_before")) for s in shown)
  return (f" Of these, {before} finished in an earlier run, whose time the "
          "wall time leaves out; the stage time counts every stage."
          if before else "")


def blocks(root: str, config, summary) -> List[Block]:
  """The whole page, in reading order."""
  stages, scale = summary["stages"], summary["scale"]
  shown = [s for s in outline.SECTIONS if s.stage in stages]
  total = sum(stages[s.stage]["seconds"] for s in shown)
  out = [Block("heading1", TITLE), Block("text", (
      f"Every claim of the article, tested by a run of jaxunknowns at scale "
      f"`{scale}`: {len(shown)} stages, {duration(total)} of stage time in "
      f"all. " + run_line(summary) + resumed_note(stages, shown))),
      Block("text", STATS_NOTE.strip("*")),
      Block("text", "Verdicts are those of each experiment's own comparison "
            "protocol (agrees / differs / not testable here), counted; the "
            "stage's report gives every number and rule."),
      Block("command", command(config, scale))]
  pages = {s.stage: read_json_object(
      os.path.join(root, "stages", s.stage, PAGE_JSON),
      "rebuild the stage's report: python -m jaxunknowns.report_cli "
      f"--workdir={os.path.join(root, 'stages', s.stage)}") for s in shown}
  summary_rows, body = [list(SUMMARY_HEADER)], []
  for q_number, question in enumerate(outline.QUESTIONS, 1):
    sections = [s for s in question.sections if s.stage in stages]
    if not sections:
      continue
    body += [Block("heading2", f"{q_number}. {question.title}"),
             Block("text", question.asks)]
    for s_number, section in enumerate(sections, 1):
      number = f"{q_number}.{s_number}"
      status, page = stages[section.stage], pages[section.stage]
      comparisons = _comparisons(page)
      said = verdict(status, page, comparisons)
      status = {**status, "seeds": _seeds(root, section.stage, status)}
      summary_rows.append([number, section.claim, section.stage, said,
                           str(status["seeds"] or "–"),
                           duration(status["seconds"])])
      body += _section(number, section, config, status, page, comparisons,
                       said)
  return out + [Block("heading2", "The claims and their verdicts"),
                Block("table", rows=summary_rows)] + body


def _seeds(root: str, stage: str, status: Mapping[str, Any]):
  """The stage's seeds as configured (its config.json, else the article's
  record of it: a stage that failed before writing one). Not its summary's
  list of seeds, which names every network it trained: mode_connectivity's
  two per seed read as 6 seeds of 3."""
  folder = os.path.join(root, "stages", stage)
  config = read_json_object(
      os.path.join(folder, CONFIG_FILE), "remove that stage's folder and "
      "rerun the article to run the stage again", "a JSON object of a config")
  return (config or {}).get("seeds", status.get("seeds"))


def _section(number, section, config, status, page, comparisons, said):
  stage = section.stage
  folder = f"stages/{stage}"
  out = [Block("heading3", f"{number} {section.claim}"),
         Block("text", f"{said}; stage `{stage}`, "
               f"{status.get('seeds') or '–'} seeds, "
               f"{duration(status['seconds'])}.", label="Verdict."),
         Block("command", "python -m jaxunknowns.main "
               f"--config={config.article.stages[stage]} "
               f"--workdir=DIR/{folder}" + "".join(
                   f" --config.{k}={v}"
                   for k, v in status.get("overrides", {}).items()))]
  if status.get("status") == "failed":
    return out + [Block("text", status.get("error") or "no error recorded",
                        label="The stage failed.")]
  if page is None:
    return out + [Block("text", f"{folder}/{PAGE_JSON} is missing: rebuild "
                        f"the stage's report (python -m "
                        f"jaxunknowns.report_cli --workdir=DIR/{folder}).",
                        label="No report.")]
  out.append(Block("text", page["claim"], label="The papers."))
  if page["figures"]:
    caption, name = page["figures"][0]
    out.append(Block("figure", caption, path=f"{folder}/{name}"))
  if comparisons:
    out.append(Block("table", rows=[list(compare.HEADER)]
                     + compare.rows(comparisons)))
  return out + [Block("link", f"{folder}/report.md", label="Full report:",
                      path=f"{folder}/report.md")]


# -----------------------------------------------------------------------------
# Renderers
# -----------------------------------------------------------------------------
def markdown(page: Sequence[Block]) -> str:
  parts = []
  for b in page:
    if b.kind.startswith("heading"):
      parts.append("#" * int(b.kind[-1]) + " " + b.text)
    elif b.kind == "text":
      parts.append((f"**{b.label}** " if b.label else "") + b.text)
    elif b.kind == "link":
      parts.append(f"**{b.label}** [{b.text}]({b.path})")
    elif b.kind == "command":
      parts.append(f"```\n{b.text}\n```")
    elif b.kind == "figure":
      parts.append(f"![{b.text}]({b.path})\n\n*{b.text}*")
    elif b.kind == "table":
      parts.append(markdown_table(b.rows[0], b.rows[1:]))
  return "\n\n".join(parts) + "\n"


STYLE = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;
padding:0 1rem;line-height:1.45;color:#222}table{border-collapse:collapse;
font-size:.85rem;margin:1rem 0}td,th{border:1px solid #ccc;padding:.25rem .5rem;
vertical-align:top;text-align:left}th{background:#f3f3f3}pre{background:#f6f6f6;
padding:.5rem;overflow-x:auto}img{max-width:100%}figcaption{font-style:italic;
font-size:.9rem}code{background:#f3f3f3}"""


def _inline(text: str) -> str:
  """Escaped text, `code` spans as <code>."""
  pieces = html.escape(text).split("`")
  return "".join(f"<code>{p}</code>" if i % 2 else p
                 for i, p in enumerate(pieces))


def _figure(root: str, b: Block) -> str:
  file = os.path.join(root, b.path)
  if not paths.exists(file):
    return f"<p><em>Figure missing: {html.escape(b.path)}</em></p>"
  with paths.open_file(file, "rb") as f:  # a gs:// workdir too
    data = base64.b64encode(f.read()).decode("ascii")
  return (f'<figure><img alt="{html.escape(b.text)}" '
          f'src="data:image/png;base64,{data}"><figcaption>'
          f"{_inline(b.text)}</figcaption></figure>")


def to_html(root: str, page: Sequence[Block]) -> str:
  parts = []
  for b in page:
    if b.kind.startswith("heading"):
      level = b.kind[-1]
      parts.append(f"<h{level}>{_inline(b.text)}</h{level}>")
    elif b.kind == "text":
      label = f"<strong>{html.escape(b.label)}</strong> " if b.label else ""
      parts.append(f"<p>{label}{_inline(b.text)}</p>")
    elif b.kind == "link":
      parts.append(f"<p><strong>{html.escape(b.label)}</strong> <a href="
                   f"\"{html.escape(b.path)}\">{html.escape(b.text)}</a></p>")
    elif b.kind == "command":
      parts.append(f"<pre><code>{html.escape(b.text)}</code></pre>")
    elif b.kind == "figure":
      parts.append(_figure(root, b))
    elif b.kind == "table":
      head = "".join(f"<th>{_inline(c)}</th>" for c in b.rows[0])
      body = "".join("<tr>" + "".join(f"<td>{_inline(str(c))}</td>"
                                      for c in row) + "</tr>"
                     for row in b.rows[1:])
      parts.append(f"<table><thead><tr>{head}</tr></thead>"
                   f"<tbody>{body}</tbody></table>")
  return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          f"<title>{html.escape(TITLE)}</title><style>{STYLE}</style></head>"
          "<body>\n" + "\n".join(parts) + "\n</body></html>\n")


def write(root: str, config, summary) -> str:
  """Writes ROOT/ARTICLE.md and ROOT/article.html; returns ARTICLE.md's
  path."""
  page = blocks(root, config, summary)
  paths.write_atomic(os.path.join(root, HTML), to_html(root, page))
  path = os.path.join(root, MARKDOWN)
  paths.write_atomic(path, markdown(page))
  return path
