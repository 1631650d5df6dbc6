"""Highlighted originals: PDF annotations over the right words, DOCX runs highlighted and commented."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
from datetime import date
from pathlib import Path
from typing import Any

import docx
import pdfplumber
import pytest
from docx.enum.text import WD_COLOR_INDEX
from pypdf import PdfReader, PdfWriter
from pypdf.generic import RectangleObject

from pipeline.config import Settings
from pipeline.evidence_map import area_slots
from pipeline.highlight import (
    HighlightItem,
    IndicatorRef,
    highlight_docx,
    highlight_pdf,
    items_from_report,
    output_name,
    write_highlighted_originals,
)
from pipeline.ingest import IngestedDocument, ingest
from tests.evidence_fixtures import PDF_PAGES, build_submission
from tests.pdf_factory import build_pdf


def words(text: str) -> list[str]:
    """Lower-case words, without pdfplumber's ``(cid:N)`` stand-ins for glyphs it cannot name (bullets)."""
    return re.findall(r"\w+", re.sub(r"\(cid:\d+\)", " ", text).lower())


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def annotated_text(pdf_path: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """For each highlight annotation: its note, the words lying under its quads, and the annotation itself.

    Quads are in PDF user space; pdfplumber keeps user-space x and measures ``top = media box height - y`` (also
    when the media box does not start at 0), so each quad is converted to that frame before cropping. Only
    characters wholly inside a quad (with 1 pt of tolerance) count, so a quad that spilled onto the next line
    would show up as extra words.
    """
    out = []
    reader = PdfReader(pdf_path)
    with pdfplumber.open(pdf_path) as plumber:
        for index, page in enumerate(reader.pages):
            media = page.mediabox
            for ref in page.get("/Annots") or []:
                annot = ref.get_object()
                if annot.get("/Subtype") != "/Highlight":
                    continue
                quads = [float(v) for v in annot["/QuadPoints"]]
                found: list[str] = []
                for q in range(0, len(quads), 8):
                    xs, ys = quads[q : q + 8 : 2], quads[q + 1 : q + 8 : 2]
                    height = float(media.height)
                    bbox = (min(xs) - 1, height - max(ys) - 1, max(xs) + 1, height - min(ys) + 1)
                    region = plumber.pages[index].within_bbox(bbox, relative=False, strict=False)
                    found.append(region.extract_text())
                out.append((str(annot["/Contents"]), " ".join(found), dict(annot)))
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any], Any, Path]:
    folder = tmp_path_factory.mktemp("hl")
    result, report, catalogue = build_submission(folder)
    return result, report, catalogue, folder


def _doc(built: tuple[Any, dict[str, Any], Any, Path], suffix: str) -> IngestedDocument:
    return next(d for d in built[0].documents if d.document.name.endswith(suffix))


# --- PDF ----------------------------------------------------------------------------------------------------


def test_pdf_annotations_land_on_the_passage_words(
    built: tuple[Any, dict[str, Any], Any, Path], tmp_path: Path
) -> None:
    _, report, catalogue, _ = built
    doc = _doc(built, ".pdf").document
    items = items_from_report(report, doc.doc_id, area_slots(report, catalogue))
    assert len(items) >= 4
    before = sha(Path(doc.path))
    outcome = highlight_pdf(Path(doc.path), items, tmp_path / "out.pdf")
    assert sha(Path(doc.path)) == before  # the input is never touched
    assert outcome.placed == len(items) and not outcome.missed
    found = annotated_text(tmp_path / "out.pdf")
    assert len(found) == len(items)  # every passage here sits on one page: one annotation each
    by_note = {note: text for note, text, _ in found}
    for item in items:
        assert words(by_note[item.note]) == words(item.text), item.text


def test_pdf_annotation_note_names_indicators_and_has_an_appearance(
    built: tuple[Any, dict[str, Any], Any, Path], tmp_path: Path
) -> None:
    _, report, catalogue, _ = built
    doc = _doc(built, ".pdf").document
    items = items_from_report(report, doc.doc_id, area_slots(report, catalogue))
    highlight_pdf(Path(doc.path), items, tmp_path / "out.pdf")
    titles = {i["id"]: i["title"] for i in report["indicators"]}
    for note, _, annot in annotated_text(tmp_path / "out.pdf"):
        ids = re.findall(r"^([A-Z]+-\d+) ", note, flags=re.M)
        assert ids and all(f"{i} {titles[i]}" in note for i in ids)
        assert "not a verdict" in note
        assert annot["/T"] == "QPM Pre-screen"
        assert "/N" in annot["/AP"]
        assert int(annot["/F"]) & 4  # printable


def test_highlighted_pdf_opens_and_renders(built: tuple[Any, dict[str, Any], Any, Path], tmp_path: Path) -> None:
    import pypdfium2 as pdfium

    report = built[1]
    doc = _doc(built, ".pdf").document
    highlight_pdf(Path(doc.path), items_from_report(report, doc.doc_id, {}), tmp_path / "out.pdf")
    pdf = pdfium.PdfDocument(tmp_path / "out.pdf")
    assert len(pdf) == len(PDF_PAGES)
    image = pdf[0].render(scale=0.5, draw_annots=True).to_pil()
    plain = pdfium.PdfDocument(doc.path)[0].render(scale=0.5, draw_annots=True).to_pil()
    assert image.tobytes() != plain.tobytes()  # the highlights are drawn
    pdf.close()


def test_pdf_with_offset_media_box_and_crop_box(tmp_path: Path) -> None:
    """Boxes are measured from the visible page's top-left: a crop box and a shifted origin must not move them."""
    built = build_pdf(PDF_PAGES)
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(built.data)))
    for page in writer.pages:
        page.mediabox = RectangleObject([-30, -40, 620, 860])
        page.cropbox = RectangleObject([20, 10, 580, 830])
    src = tmp_path / "cropped.pdf"
    with open(src, "wb") as handle:
        writer.write(handle)
    ingested = ingest(src, Settings.from_env(cache_dir=tmp_path / "cache"), today=date(2026, 1, 1))
    assert isinstance(ingested, IngestedDocument)
    items = [
        HighlightItem(
            text=p.text,
            start=p.start,
            end=p.end,
            boxes=tuple((b.page, b.x0, b.top, b.x1, b.bottom) for b in p.boxes),
            indicators=(IndicatorRef("T-01", "Test", 0.9),),
            passage=p.index,
        )
        for p in ingested.passages
        if p.boxes and len(p.text.split()) > 5
    ]
    assert len(items) >= 4
    highlight_pdf(src, items, tmp_path / "out.pdf")
    found = annotated_text(tmp_path / "out.pdf")
    assert len(found) == len(items)
    for (_, text, _), item in zip(found, sorted(items, key=lambda i: (i.boxes[0][0], i.start)), strict=True):
        assert words(text) == words(item.text)


def test_pdf_passage_over_two_pages_gets_an_annotation_on_each(tmp_path: Path) -> None:
    built = build_pdf(PDF_PAGES)
    src = tmp_path / "two.pdf"
    src.write_bytes(built.data)
    first, second = built.find("1.1 Advocates"), built.find("3.1 Anyone")
    boxes = tuple(
        (line.page, line.x, line.top_from_top - line.size, line.x + 200, line.top_from_top + 3)
        for line in (first, second)
    )
    item = HighlightItem("x", 0, 1, boxes, (IndicatorRef("T-01", "Test", 0.5),), passage=1)
    highlight_pdf(src, [item], tmp_path / "out.pdf")
    reader = PdfReader(tmp_path / "out.pdf")
    assert [len(p.get("/Annots") or []) for p in reader.pages] == [1, 1]


def test_pdf_never_overwrites_its_input(built: tuple[Any, dict[str, Any], Any, Path]) -> None:
    doc = _doc(built, ".pdf").document
    with pytest.raises(ValueError, match="refusing"):
        highlight_pdf(Path(doc.path), [], Path(doc.path))


# --- DOCX ---------------------------------------------------------------------------------------------------


def _highlighted_text(path: Path) -> str:
    document = docx.Document(str(path))
    parts: list[str] = []
    for para in document.paragraphs:
        parts.extend(r.text for r in para.runs if r.font.highlight_color not in (None, WD_COLOR_INDEX.AUTO))
        parts.append("\n")
    return "".join(parts)


def test_docx_runs_highlighted_and_commented(built: tuple[Any, dict[str, Any], Any, Path], tmp_path: Path) -> None:
    _, report, catalogue, _ = built
    doc = _doc(built, ".docx").document
    items = items_from_report(report, doc.doc_id, area_slots(report, catalogue))
    assert items
    before = sha(Path(doc.path))
    out = tmp_path / "out.docx"
    outcome = highlight_docx(Path(doc.path), items, out)
    assert sha(Path(doc.path)) == before
    assert outcome.placed == len(items) and not outcome.missed

    original = docx.Document(doc.path)
    copy = docx.Document(str(out))
    assert [p.text for p in copy.paragraphs] == [p.text for p in original.paragraphs]  # text unchanged
    marked = _highlighted_text(out)
    for item in items:
        assert " ".join(words(item.text)) in " ".join(words(marked))
    comments = list(copy.comments)
    assert len(comments) == len(items)
    for comment, item in zip(comments, items, strict=True):
        assert comment.author == "QPM Pre-screen"
        assert all(f"{ref.id} {ref.title}" in comment.text for ref in item.indicators)


def test_docx_split_runs_keep_their_formatting(tmp_path: Path) -> None:
    src = tmp_path / "in.docx"
    document = docx.Document()
    para = document.add_paragraph()
    para.add_run("Before the passage. Advocates report any ")
    para.add_run("safeguarding concern").bold = True
    para.add_run(" without delay. After the passage.")
    document.save(str(src))
    item = HighlightItem(
        "Advocates report any safeguarding concern without delay.",
        0,
        1,
        (),
        (IndicatorRef("SAFE-01", "Reporting", 0.9),),
    )
    highlight_docx(src, [item], tmp_path / "out.docx")
    runs = docx.Document(str(tmp_path / "out.docx")).paragraphs[0].runs
    lit = [(r.text, bool(r.bold)) for r in runs if r.font.highlight_color == WD_COLOR_INDEX.YELLOW]
    assert lit == [("Advocates report any ", False), ("safeguarding concern", True), (" without delay.", False)]
    unlit = "".join(r.text for r in runs if r.font.highlight_color is None)
    assert unlit == "Before the passage.  After the passage."


def test_docx_list_labels_tables_and_missed_passages(tmp_path: Path) -> None:
    src = tmp_path / "in.docx"
    document = docx.Document()
    document.add_paragraph("Staff must record every decision.", style="List Number")
    table = document.add_table(rows=1, cols=2)
    table.cell(0, 0).text = "Complaints"
    table.cell(0, 1).text = "Answered within twenty working days"
    document.save(str(src))
    items = [
        HighlightItem("1. Staff must record every decision.", 0, 10, (), (IndicatorRef("ACC-02", "Records", 0.8),)),
        HighlightItem(
            "Complaints | Answered within twenty working days", 11, 20, (), (IndicatorRef("COMP-04", "Times", 0.7),)
        ),
        HighlightItem("Nothing like this is in it.", 21, 30, (), (IndicatorRef("X-1", "X", 0.5),)),
    ]
    outcome = highlight_docx(src, items, tmp_path / "out.docx")
    assert outcome.placed == 2
    assert outcome.missed == ["Nothing like this is in it."]
    copy = docx.Document(str(tmp_path / "out.docx"))
    assert copy.paragraphs[0].runs[0].font.highlight_color is not None
    cell_runs = [r for row in copy.tables[0].rows for c in row.cells for p in c.paragraphs for r in p.runs]
    assert all(r.font.highlight_color is not None for r in cell_runs if r.text)  # not the comment mark
    assert len(list(copy.comments)) == 2


# --- per submission -----------------------------------------------------------------------------------------


def test_write_highlighted_originals_reports_why_a_copy_is_missing(
    built: tuple[Any, dict[str, Any], Any, Path], tmp_path: Path
) -> None:
    result, report, catalogue, _ = built
    slots = area_slots(report, catalogue)
    outcomes = {o.name: o for o in write_highlighted_originals(result, report, tmp_path, slots)}
    assert outcomes["riverside-policy.pdf"].result is not None
    assert outcomes["kestrel-safeguarding.docx"].result is not None
    text_doc = next(o for name, o in outcomes.items() if name.endswith(".txt"))
    assert text_doc.result is None and ".pdf and .docx" in (text_doc.reason or "")
    assert sorted(p.name for p in (tmp_path / "highlighted").iterdir()) == [
        "kestrel-safeguarding.docx",
        "riverside-policy.pdf",
    ]
    # A source that changed since screening is not highlighted with stale offsets.
    pdf = _doc(built, ".pdf")
    moved = dataclasses.replace(pdf.document, path=str(tmp_path / "gone.pdf"))
    changed = dataclasses.replace(result, documents=[dataclasses.replace(pdf, document=moved)])
    [outcome] = write_highlighted_originals(changed, report, tmp_path / "again", slots)
    assert outcome.result is None and "no longer" in (outcome.reason or "")


def test_output_names_are_safe_and_unique() -> None:
    used: set[str] = set()
    assert output_name("policy.pdf", used) == "policy.pdf"
    assert output_name("POLICY.pdf", used) == "POLICY-2.pdf"
    assert output_name('..\\evil<"name">.docx', used) == "evil_name_.docx"
    assert output_name("", used) == "document"


def test_copies_follow_the_umask_like_every_other_output(
    built: tuple[Any, dict[str, Any], Any, Path], tmp_path: Path
) -> None:
    import os

    doc = _doc(built, ".pdf").document
    old = os.umask(0o022)
    try:
        out = highlight_pdf(Path(doc.path), items_from_report(built[1], doc.doc_id, {}), tmp_path / "c.pdf").path
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pdf"]  # no temporary file left behind
