"""tools/render_corpus.py: a labelled text corpus rendered as Word and PDF reads back to the same text."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from pipeline.config import Settings
from pipeline.ingest import ingest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import render_corpus  # the tool is a script beside build_samples.py, not part of the package

BODY = """# Complaints procedure

We take every complaint seriously and reply within ten working days.

The procedure is:

1. Write to the manager.
2. The manager replies within ten working days.
"""


def test_renders_each_format_and_relabels(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "acme__complaints.txt").write_text(BODY, encoding="utf-8")
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "document,indicator,expected,evidence\n"
        "acme__complaints.txt,COMP-04,partial,reply within ten working days\n"
        "other.txt,COMP-01,missing,\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    assert render_corpus.main([str(docs), str(labels), str(out)]) == 0
    for fmt in ("docx", "pdf"):
        with (out / f"labels-{fmt}.csv").open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert [(r["document"], r["indicator"]) for r in rows] == [(f"acme__complaints.{fmt}", "COMP-04")]
        result = ingest(out / fmt / f"acme__complaints.{fmt}", Settings())
        texts = [p.text for p in result.passages]
        assert any("We take every complaint seriously" in t for t in texts), texts
        assert any("The manager replies within ten working days." in t for t in texts), texts
        first = next(p for p in result.passages if "seriously" in p.text)
        assert "Complaints procedure" in first.section
