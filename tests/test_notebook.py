"""notebooks/evaluation.ipynb runs top to bottom (smoke test)."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from pipeline.config import PROJECT_ROOT


@pytest.mark.slow
def test_evaluation_notebook_runs_top_to_bottom() -> None:
    nb = nbformat.read(PROJECT_ROOT / "notebooks" / "evaluation.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(PROJECT_ROOT)}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "macro_f1_3class" in text
