"""Reports: the page shape (`page`), the comparison protocol (`compare`),
numbers and tables (`text`), figures (`plots`, matplotlib, loaded on first
use). A report reads only the workdir's files: `report_cli` rebuilds it."""

import importlib

from jaxunknowns.report.compare import (AGREES, DIFFERS, NOT_TESTABLE,
                                        Comparison, Reference, Rows, comparison)
from jaxunknowns.report.page import (PAGE_HEADINGS, Page, claim,
                                     experiment_page, write, write_page,
                                     write_report)
from jaxunknowns.report.text import (count, fmt, listing, markdown_table,
                                     run_line, table)

__all__ = ["AGREES", "DIFFERS", "NOT_TESTABLE", "Comparison", "Reference",
           "Rows", "comparison", "PAGE_HEADINGS", "Page", "claim",
           "experiment_page", "write", "write_page", "write_report", "count",
           "fmt", "listing", "markdown_table", "run_line", "table"]

_PLOTS = ("plot_band", "learning_curves", "save_figure", "subplots",
          "colormap", "figure", "errorbars")


def __getattr__(name):
  # report.plot_band etc. load matplotlib on first use only.
  if name in _PLOTS:
    return getattr(importlib.import_module("jaxunknowns.report.plots"), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
