"""Render a labelled text corpus as Word and PDF documents, to measure how much the file format costs.

The dev corpus is plain text (Markdown-like), while providers mostly send Word files and PDFs. This renders
every ``.txt``/``.md`` file of DOCS_DIR with the sample-policy renderers of ``build_samples.py`` (DOCX by
python-docx; PDF by reportlab, with a running header and footer on every page) and writes a copy of the labels
whose ``document`` names point at the rendered files. Then, for each format::

    qpm-screen evaluate OUT_DIR/pdf OUT_DIR/labels-pdf.csv --json

Usage: ``.venv/bin/python tools/render_corpus.py DOCS_DIR LABELS_CSV OUT_DIR [--formats docx,pdf]``.
OUT_DIR must be outside the repository when the corpus is confidential or not ours (the dev corpus is both).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import build_samples  # a sibling script, not a package

RENDERERS = {"docx": build_samples.build_docx, "pdf": build_samples.build_pdf_reportlab}


def render(source_path: Path, dest: Path) -> None:
    """Render one Markdown-like text file at ``dest`` (the format is ``dest``'s extension)."""
    body = source_path.read_text(encoding="utf-8")
    org = source_path.stem.split("__")[0].replace("-", " ").strip().title() or "Organisation"
    meta = {"file": dest.name, "title": source_path.stem, "org": org, "header": f"{org} policy", "footer": org}
    source = build_samples.Source(source_path.stem, source_path, meta, body, build_samples.parse_body(body))
    RENDERERS[dest.suffix.lstrip(".")](source, dest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("docs", type=Path, help="folder of .txt / .md documents")
    parser.add_argument("labels", type=Path, help="labels CSV (document,indicator,expected,evidence)")
    parser.add_argument("out", type=Path, help="output folder: one sub-folder and one labels CSV per format")
    parser.add_argument("--formats", default="docx,pdf", help="comma-separated: docx, pdf (default both)")
    args = parser.parse_args(argv)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(RENDERERS))
    if unknown:
        parser.error(f"unknown format(s): {', '.join(unknown)}")
    sources = sorted(p for p in args.docs.iterdir() if p.suffix in (".txt", ".md"))
    with args.labels.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for fmt in formats:
        folder = args.out / fmt
        folder.mkdir(parents=True, exist_ok=True)
        for path in sources:
            render(path, folder / f"{path.stem}.{fmt}")
        renamed = {p.name: f"{p.stem}.{fmt}" for p in sources}
        with (args.out / f"labels-{fmt}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["document", "indicator", "expected", "evidence"])
            writer.writeheader()
            for row in rows:
                if row["document"] in renamed:
                    writer.writerow({**row, "document": renamed[row["document"]]})
        print(f"{fmt}: {len(sources)} documents in {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
