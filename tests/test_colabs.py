"""Every notebook in colabs/ runs top to bottom (on `runlocal` settings), so
a notebook can never silently break."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="pip install -e '.[test]' (nbformat)")
nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[test]' (nbclient)")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "colabs").glob("*.ipynb"))


def test_there_is_a_notebook_per_phenomenon():
  names = {p.stem for p in NOTEBOOKS}
  assert {"quickstart", "lottery_tickets", "batchnorm", "overparameterization",
          "implicit_regularization"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path, monkeypatch):
  monkeypatch.setenv("JAXUNKNOWNS_NOTEBOOK_SCALE", "runlocal")
  monkeypatch.setenv("TMPDIR", str(tmp_path))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  notebook = nbformat.read(path, as_version=4)
  client = nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                                   resources={"metadata": {"path": str(path.parent)}})
  client.execute()  # Raises CellExecutionError on the first failing cell.
  outputs = [o for cell in notebook.cells if cell.cell_type == "code"
             for o in cell.get("outputs", [])]
  assert not [o for o in outputs if o.get("output_type") == "error"]
  # The figures of real runs were displayed inline.
  assert any("image/png" in o.get("data", {}) for o in outputs), path.name
  # No library code in the cells: they call jaxunknowns, they do not define it.
  for cell in notebook.cells:
    if cell.cell_type == "code":
      assert "def " not in cell.source and "class " not in cell.source


def test_show_puts_each_figure_where_the_report_shows_it(tmp_path, monkeypatch):
  """notebook.show: the report's text in pieces, each figure between them
  as an image (a notebook cannot follow report.md's relative links)."""
  import IPython.display  # pylint: disable=g-import-not-at-top
  from jaxunknowns import notebook  # pylint: disable=g-import-not-at-top
  (tmp_path / "a.png").write_bytes(b"\x89PNG a")
  (tmp_path / "b.png").write_bytes(b"\x89PNG b")
  (tmp_path / "report.md").write_text(
      "# t\n\nbefore\n\n![first](a.png)\n\n*first*\n\n![second](b.png)\n\nafter\n")
  shown = []
  monkeypatch.setattr(IPython.display, "display", shown.append)
  # Images go by their bytes (the workdir may be a gs:// path).
  monkeypatch.setattr(IPython.display, "Image",
                      lambda data, format: ("image", data))  # pylint: disable=redefined-builtin
  monkeypatch.setattr(IPython.display, "Markdown", lambda text: ("md", text))
  notebook.show(str(tmp_path))
  assert shown == [("md", "# t\n\nbefore\n"), ("image", b"\x89PNG a"),
                   ("md", "\n*first*\n"), ("image", b"\x89PNG b"),
                   ("md", "\nafter")]
