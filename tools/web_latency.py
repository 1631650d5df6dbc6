"""Measure the self-test latency of a 10-page policy: build the PDF, start the web app once, time warm POSTs.

Usage: ``.venv/bin/python tools/web_latency.py [--runs 5] [--pages 10]``. Prints one JSON object. A measurement,
not a test: the figure depends on the machine and on what else it is running.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SOURCES = [
    "kestrel-advocacy-safeguarding-policy.docx",
    "severn-vale-advocacy-complaints-procedure.docx",
    "brightpath-advocacy-confidentiality.docx",
    "pennine-advocacy-equality-diversity-inclusion-policy.docx",
]


def policy_pdf(pages: int) -> tuple[bytes, int]:
    """A PDF of at least ``pages`` A4 pages of real policy text (the sample policies' blocks, in order)."""
    from xml.sax.saxutils import escape

    from pypdf import PdfReader
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate

    from pipeline.config import Settings
    from pipeline.ingest import IngestedDocument, ingest

    settings = Settings.from_env()
    styles = getSampleStyleSheet()
    blocks: list[tuple[str, str]] = []
    for name in SOURCES:
        got = ingest(ROOT / "sample_policies" / "docs" / name, settings)
        assert isinstance(got, IngestedDocument)
        doc = got.document
        blocks.extend((b.kind, doc.text[b.start : b.end]) for b in doc.blocks)

    def build(count: int) -> bytes:
        out = io.BytesIO()
        story = [
            Paragraph(escape(text), styles["Heading2"] if kind == "heading" else styles["BodyText"])
            for kind, text in blocks[:count]
        ]
        SimpleDocTemplate(out, pagesize=A4, title="Advocacy policies").build(story)
        return out.getvalue()

    low, high = 1, len(blocks)
    while low < high:  # the fewest blocks that fill the pages wanted
        mid = (low + high) // 2
        if len(PdfReader(io.BytesIO(build(mid))).pages) >= pages:
            high = mid
        else:
            low = mid + 1
    data = build(low)
    return data, len(PdfReader(io.BytesIO(data)).pages)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pages", type=int, default=10)
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    from pipeline.config import Settings
    from pipeline.web.app import create_app

    data, pages = policy_pdf(args.pages)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(web_data_dir=Path(tmp) / "data", web_temp_dir=str(Path(tmp) / "uploads"))
        app = create_app(settings)
        with TestClient(app) as client:
            started = time.perf_counter()
            while client.get("/healthz").status_code != 200:
                time.sleep(0.1)
            ready = time.perf_counter() - started
            timings = []
            for _ in range(args.runs + 1):  # the first run warms caches (spaCy, torch kernels)
                t0 = time.perf_counter()
                response = client.post("/self-test", files=[("files", ("policy.pdf", data, "application/pdf"))])
                timings.append(time.perf_counter() - t0)
                assert response.status_code == 200, response.text[:300]
    warm = timings[1:]
    print(
        json.dumps(
            {
                "pages": pages,
                "pdf_kb": round(len(data) / 1024),
                "startup_ready_seconds": round(ready, 2),
                "first_seconds": round(timings[0], 2),
                "warm_median_seconds": round(statistics.median(warm), 2),
                "warm_min_seconds": round(min(warm), 2),
                "warm_max_seconds": round(max(warm), 2),
                "runs": len(warm),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
