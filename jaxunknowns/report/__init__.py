"""Reports: one page shape, one comparison protocol, shared plots.

* `page`    the report.md shape (`Page`) and its atomic writer;
* `compare` the comparison protocol: our numbers beside a paper's, verdicts;
* `text`    numbers over seeds, markdown tables, the machine-and-time line;
* `plots`   the figures shared by experiments (imports matplotlib, so it is
            loaded only when a figure is drawn: `report.plots`).

A report reads only the workdir's files, so `report_cli` can rebuild it.
"""

import importlib

from jaxunknowns.report.compare import (AGREES, DIFFERS, NOT_TESTABLE,
                                        Comparison, Reference, comparison)
from jaxunknowns.report.page import (PAGE_HEADINGS, Page, claim,
                                     experiment_page, write_page, write_report)
from jaxunknowns.report.text import fmt, markdown_table, run_line

__all__ = ["AGREES", "DIFFERS", "NOT_TESTABLE", "Comparison", "Reference",
           "comparison", "PAGE_HEADINGS", "Page", "claim", "experiment_page",
           "write_page", "write_report",
           "fmt", "markdown_table", "run_line"]

_PLOTS = ("plot_band", "learning_curves", "save_figure", "plt", "figure",
          "errorbars")


def __getattr__(name):
  # report.plot_band etc. load matplotlib on first use only.
  if name in _PLOTS:
    return getattr(importlib.import_module("jaxunknowns.report.plots"), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
