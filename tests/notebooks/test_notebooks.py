"""Every notebook in notebooks/ runs top to bottom without an error (nbclient, a real kernel).

The kernel is this test's own interpreter (a kernelspec written for the test), with the
repository on PYTHONPATH, so the notebooks and the processes they launch import this
checkout's tfdist and launch. Notebooks 02-04 start real local clusters.
"""

import json
import os
import pathlib
import sys
import time

import nbformat
import pytest
from nbclient import NotebookClient

REPO = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
KERNEL = "tfdist-test-python"

pytestmark = pytest.mark.e2e


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """A kernelspec that runs ``sys.executable``, found first through JUPYTER_PATH."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "tfdist test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("TF_CONFIG", raising=False)


def test_there_are_notebooks_stored_without_outputs():
    assert [path.name[:3] for path in NOTEBOOKS] == ["01_", "02_", "03_", "04_", "05_"]
    for path in NOTEBOOKS:
        cells = nbformat.read(path, as_version=4).cells
        code = [cell for cell in cells if cell.cell_type == "code"]
        assert code and not any(cell.outputs or cell.execution_count for cell in code), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, kernel_env):
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, kernel_name=KERNEL, timeout=240,
                            resources={"metadata": {"path": str(path.parent)}})
    started = time.monotonic()
    client.execute()  # Raises CellExecutionError with the cell and traceback on any error.
    assert time.monotonic() - started < 120, f"{path.name} took over two minutes"
    outputs = [output for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
