"""The explorer notebook runs end to end (at tiny sizes) in a fresh Jupyter kernel."""

import os
import re

import nbformat
import pytest

nbclient = pytest.importorskip("nbclient")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO_ROOT, "notebooks", "synthesis_explorer.ipynb")
TINY_PARAMETERS = "SIZE_2D = 32\nSIZE_3D = 32\nBATCH = 2"


def test_synthesis_explorer_runs(monkeypatch):
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  code = [cell for cell in nb.cells if cell.cell_type == "code"]
  assert all(not cell.outputs and cell.execution_count is None for cell in code), (
      "the notebook is stored with outputs")

  params = code[0]
  for name in ("SIZE_2D", "SIZE_3D", "BATCH"):
    assert re.search(rf"^{name}\s*=", params.source, re.MULTILINE), (
        f"the first code cell does not define {name}:\n{params.source}")
  params.source = TINY_PARAMETERS

  # The kernel inherits this environment: make `rasd_jax` importable there whatever its
  # working directory.
  path = os.environ.get("PYTHONPATH", "")
  if REPO_ROOT not in path.split(os.pathsep):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [REPO_ROOT, path])))

  client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                   resources={"metadata": {"path": REPO_ROOT}})
  client.execute()  # Raises CellExecutionError if a cell raises.

  outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
  errors = [out for out in outputs if out.output_type == "error"]
  assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
  images = [out for out in outputs
            if out.output_type in ("display_data", "execute_result")
            and "image/png" in out.get("data", {})]
  assert images, "no cell displayed an image"
