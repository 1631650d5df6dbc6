"""The PDF reader: reading order, blocks, running headers, word boxes and pages, on PDFs generated in code."""

from __future__ import annotations

import io
from pathlib import Path

import pdfplumber
import pypdfium2 as pdfium
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4, landscape
from reportlab.pdfbase.pdfmetrics import stringWidth

from pipeline.config import Settings
from pipeline.document import ExtractedDocument
from pipeline.errors import (
    DocumentError,
    DocumentTooLargeError,
    EmptyDocumentError,
    EncryptedDocumentError,
    ScannedDocumentError,
)
from pipeline.extract import extract
from pipeline.extract.base import ReaderOutput
from pipeline.extract.pdf import _CHAR_MAP, _clean_title, read_pdf
from pipeline.highlight import to_user_space
from tests.pdf_factory import BODY_FONT, BODY_SIZE, LOREM, BuiltPdf, build_pdf, policy_pages, turn_in_viewer

SETTINGS = Settings()
HEADER = "Confidentiality Policy v2.1 - Review date March 2026"
FOOTER = "Page {page} of {pages}"


@pytest.fixture(scope="module")
def policy() -> BuiltPdf:
    return build_pdf(policy_pages(5), header=HEADER, footer=FOOTER, title="Confidentiality Policy")


@pytest.fixture(scope="module")
def output(policy: BuiltPdf) -> ReaderOutput:
    return read_pdf(policy.data, SETTINGS)


def _block_texts(out: ReaderOutput) -> list[str]:
    return [out.text[b.start : b.end] for b in out.blocks]


def test_running_header_and_footer_are_removed_and_reported(output: ReaderOutput) -> None:
    assert "Review date March 2026" not in output.text
    assert "Page 2 of 5" not in output.text
    assert output.headers == [HEADER]  # page numbers are noise, not worth reporting


def test_hard_wrapped_lines_are_rejoined(output: ReaderOutput) -> None:
    expected = f"1.2 {LOREM} This is paragraph 2 of section 1."
    assert expected in _block_texts(output)
    assert "\n" not in expected


def test_blocks_headings_and_numbered_items(output: ReaderOutput) -> None:
    by_text = {output.text[b.start : b.end]: b for b in output.blocks}
    heading = by_text["3. Consent"]
    assert heading.kind == "heading"
    assert heading.level == 1
    assert heading.page == 3
    item = by_text[f"3.1 {LOREM} This is paragraph 1 of section 3."]
    assert item.kind == "list_item"
    assert item.label == "3.1"
    bullet = by_text["• Staff record each decision to share information and the reason for it."]
    assert bullet.kind == "list_item"
    assert bullet.label == "•"


def test_offsets_are_consistent(output: ReaderOutput) -> None:
    text = output.text
    previous_end = -2
    for block in output.blocks:
        chunk = text[block.start : block.end]
        assert chunk == chunk.strip() and chunk
        assert block.start >= previous_end + 2  # blocks separated by a blank line
        assert "\n" not in chunk
        previous_end = block.end
    assert output.spans == sorted(output.spans, key=lambda s: s.start)
    for span in output.spans:
        word = text[span.start : span.end]
        assert word and not any(ch.isspace() for ch in word)
    # Every non-space character of the text is covered by a span: nothing was added that is not on the page.
    covered = bytearray(len(text))
    for span in output.spans:
        covered[span.start : span.end] = b"\x01" * (span.end - span.start)
    assert all(covered[i] or text[i].isspace() for i in range(len(text)))


def test_pages(output: ReaderOutput, policy: BuiltPdf) -> None:
    assert output.pages == 5
    assert len(output.page_starts) == 5
    assert output.page_starts[0] == 0
    assert output.page_starts == sorted(output.page_starts)
    for number in range(1, 6):
        start = output.page_starts[number - 1]
        assert output.text.startswith(f"{number}. ", start)  # each page begins with its numbered heading
    for span in output.spans:
        page = sum(1 for s in output.page_starts if s <= span.start)
        assert span.box.page == page


def test_word_box_matches_drawn_position(output: ReaderOutput, policy: BuiltPdf) -> None:
    drawn = policy.find("4.2 Advocates")
    start = output.text.index("4.2 Advocates")
    span = next(s for s in output.spans if s.start == start + len("4.2 "))
    assert output.text[span.start : span.end] == "Advocates"
    expected_x0 = drawn.x + stringWidth("4.2 ", BODY_FONT, BODY_SIZE)
    expected_x1 = expected_x0 + stringWidth("Advocates", BODY_FONT, BODY_SIZE)
    box = span.box
    assert box.page == 4
    assert abs(box.x0 - expected_x0) < 2
    assert abs(box.x1 - expected_x1) < 2
    # The box spans the glyphs: from above the capital height to below the baseline.
    baseline = drawn.top_from_top
    assert baseline - BODY_SIZE - 2 < box.top < baseline - 0.7 * BODY_SIZE
    assert baseline < box.bottom < baseline + 0.3 * BODY_SIZE + 2


def test_word_boxes_agree_with_pdfplumber(output: ReaderOutput, policy: BuiltPdf) -> None:
    with pdfplumber.open(io.BytesIO(policy.data)) as pdf:
        words = pdf.pages[1].extract_words()
    reference = next(w for w in words if w["text"] == "Sharing")
    span = next(s for s in output.spans if output.text[s.start : s.end] == "Sharing")
    for ours, theirs in zip(
        (span.box.x0, span.box.top, span.box.x1, span.box.bottom),
        (reference["x0"], reference["top"], reference["x1"], reference["bottom"]),
        strict=True,
    ):
        assert abs(ours - theirs) < 2


def test_title_hint_from_metadata(output: ReaderOutput) -> None:
    assert output.title_hint == "Confidentiality Policy"
    assert _clean_title("Microsoft Word - Safeguarding Policy.docx") == "Safeguarding Policy"
    assert _clean_title("untitled") == ""


def test_paragraph_continues_across_page_break() -> None:
    built = build_pdf(
        [
            [("h", "Consent"), ("p", "Advocates ask for consent before sharing information and record")],
            [("p", "the answer in the case notes."), ("p", "A new paragraph.")],
        ]
    )
    out = read_pdf(built.data, SETTINGS)
    texts = _block_texts(out)
    joined = "Advocates ask for consent before sharing information and record the answer in the case notes."
    assert joined in texts
    assert "A new paragraph." in texts
    assert out.page_starts[1] == out.text.index("the answer")


def test_lettered_items_and_hyphenated_compounds() -> None:
    built = build_pdf(
        [
            [
                ("p", "The advocate will:"),
                ("li", "(a)", "explain the role;"),
                ("li", "(b)", "support decision-making."),
            ]
        ]
    )
    out = read_pdf(built.data, SETTINGS)
    by_text = {out.text[b.start : b.end]: b for b in out.blocks}
    assert by_text["(a) explain the role;"].label == "(a)"
    assert by_text["(b) support decision-making."].kind == "list_item"


def test_word_bullets_are_normalised() -> None:
    assert "\uf0b7".translate(_CHAR_MAP) == "•"
    assert "\ufb01le".translate(_CHAR_MAP) == "file"


def test_empty_page_is_named_in_a_warning() -> None:
    built = build_pdf([[("p", "Page one text.")], [], [("p", "Page three text.")]])
    out = read_pdf(built.data, SETTINGS)
    assert out.text == "Page one text.\n\nPage three text."
    assert any("page(s) 2" in w for w in out.warnings)
    assert out.page_starts == [0, len("Page one text.\n\n"), len("Page one text.\n\n")]


def test_too_many_pages() -> None:
    built = build_pdf(policy_pages(3))
    with pytest.raises(DocumentTooLargeError, match="3 pages, over the limit of 2"):
        read_pdf(built.data, Settings(max_pages=2))


def _encrypt(data: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_pdf_with_empty_user_password_is_read() -> None:
    data = _encrypt(build_pdf([[("p", "Protected but readable.")]]).data, "")
    out = read_pdf(data, SETTINGS)
    assert out.text == "Protected but readable."


def test_pdf_needing_a_password_is_refused() -> None:
    data = _encrypt(build_pdf([[("p", "Secret.")]]).data, "letmein")
    with pytest.raises(EncryptedDocumentError, match="password-protected: remove the password and upload again"):
        read_pdf(data, SETTINGS)


def test_extract_builds_the_document(tmp_path: Path, policy: BuiltPdf) -> None:
    path = tmp_path / "confidentiality.pdf"
    path.write_bytes(policy.data)
    doc = extract(path, SETTINGS)
    assert isinstance(doc, ExtractedDocument)
    assert doc.source_format == "pdf"
    assert doc.name == "confidentiality.pdf"
    assert len(doc.sha256) == 64 and doc.doc_id == doc.sha256[:16]
    assert doc.pages == 5
    assert HEADER in doc.metadata.headers
    assert doc.page_at(doc.text.index("3. Consent")) == 3
    for block in doc.blocks:
        assert doc.text[block.start : block.end].strip()
    assert path.read_bytes() == policy.data  # the input is never modified


def test_scan_under_a_typed_running_header_counts_as_scanned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name, *args, **kwargs: None)
    built = build_pdf([[], [], []], header="Safeguarding Policy", footer="Page {page} of {pages}")
    with pytest.raises(ScannedDocumentError, match="needs OCR"):
        read_pdf(built.data, SETTINGS)


def test_blank_pdf_is_empty() -> None:
    with pytest.raises(EmptyDocumentError, match="blank"):
        read_pdf(build_pdf([[], []]).data, SETTINGS)


def test_single_page_footer_with_page_label_is_removed() -> None:
    built = build_pdf([[("h", "Complaints"), ("p", "Tell us what went wrong.")]], footer="Complaints | May 2024 Page 1")
    out = read_pdf(built.data, SETTINGS)
    assert out.text == "Complaints\n\nTell us what went wrong."
    assert out.headers == ["Complaints | May 2024 Page 1"]


def test_numbered_list_of_short_items_is_not_headings() -> None:
    built = build_pdf(
        [
            [
                ("h", "Principles"),
                ("p", "Our advocacy is based on these principles:"),
                ("li", "1.", "Independence"),
                ("li", "2.", "Confidentiality"),
                ("li", "3.", "Empowerment"),
            ]
        ]
    )
    out = read_pdf(built.data, SETTINGS)
    kinds = {out.text[b.start : b.end]: (b.kind, b.label) for b in out.blocks}
    assert kinds["Principles"] == ("heading", "")
    assert kinds["2. Confidentiality"] == ("list_item", "2")


@given(st.data())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_damaged_pdfs_fail_cleanly(policy: BuiltPdf, data: st.DataObject) -> None:
    """Overwritten or cut bytes give a result or a DocumentError, never another exception."""
    raw = bytearray(policy.data)
    for _ in range(data.draw(st.integers(1, 20))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(len(raw) // 2, len(raw)))
    try:
        out = read_pdf(bytes(raw[:cut]), SETTINGS)
    except DocumentError:
        return
    for block in out.blocks:
        assert out.text[block.start : block.end].strip()


def test_short_numbered_line_in_body_font_is_a_heading() -> None:
    built = build_pdf(
        [
            [
                ("p", "4.2 Storing records"),
                ("p", "Paper files are kept in a locked cabinet and computers are password protected."),
            ]
        ]
    )
    out = read_pdf(built.data, SETTINGS)
    first = out.blocks[0]
    assert out.text[first.start : first.end] == "4.2 Storing records"
    assert (first.kind, first.level) == ("heading", 2)
    assert out.blocks[1].kind == "paragraph"


def _kinds(built: BuiltPdf) -> dict[str, tuple[str, str]]:
    out = read_pdf(built.data, SETTINGS)
    return {out.text[b.start : b.end]: (b.kind, b.label) for b in out.blocks}


def test_list_numbers_in_a_larger_font_stay_list_items() -> None:
    """Some writers set list numbers bigger than the text; the line is judged by its text, not its number."""
    wrapped = "Write to the trustees at the office address or by email, saying what went wrong and what you want."
    kinds = _kinds(
        build_pdf(
            [
                [
                    ("p", "The procedure is:"),
                    ("li", "1", "Write to the trustees", "14"),
                    ("li", "2", wrapped, "14"),
                    ("li", "3", "A trustee replies within a week", "14"),
                ]
            ],
            width=300,
        )
    )
    assert kinds["1 Write to the trustees"] == ("list_item", "1")
    assert kinds[f"2 {wrapped}"] == ("list_item", "2")
    # The item before wraps onto a second line; the run of numbers still shows a list, not a heading.
    assert kinds["3 A trustee replies within a week"] == ("list_item", "3")


def test_short_list_item_ends_at_the_next_line_back_at_the_margin() -> None:
    kinds = _kinds(
        build_pdf(
            [
                [
                    ("li", "1.", "Independence"),
                    ("li", "2.", "Empowerment"),
                    ("p", "Staff and volunteers follow these principles in all their work."),
                ]
            ]
        )
    )
    assert kinds["2. Empowerment"] == ("list_item", "2")
    assert kinds["Staff and volunteers follow these principles in all their work."] == ("paragraph", "")


def test_standalone_line_in_body_style_is_a_heading_but_not_a_table_row() -> None:
    kinds = _kinds(
        build_pdf(
            [
                [
                    ("p", "Sharing information"),
                    ("p", LOREM),
                    ("row", "Record", "Kept for"),
                    ("row", "Case file", "Six years"),
                    ("p", "When it stands alone with no full stop"),
                    ("p", LOREM),
                ]
            ]
        )
    )
    assert kinds["Sharing information"] == ("heading", "")
    assert kinds["When it stands alone with no full stop"] == ("heading", "")
    assert kinds["Record Kept for"][0] == "paragraph"
    assert kinds["Case file Six years"][0] == "paragraph"


def test_line_left_of_an_indented_list_marker_ends_the_item() -> None:
    """An item whose last line fills the width and has no full stop still ends where the text moves left."""
    words = iter(LOREM.split())
    text = next(words)
    for word in words:
        if stringWidth(f"{text} {word}", BODY_FONT, BODY_SIZE) > 400:
            break
        text = f"{text} {word}"
    kinds = _kinds(build_pdf([[("li", "  1.", text), ("p", "Managers check the records every month.")]]))
    assert kinds[f"1. {text}"] == ("list_item", "1")
    assert kinds["Managers check the records every month."] == ("paragraph", "")


def test_small_print_standing_alone_is_not_a_heading() -> None:
    kinds = _kinds(build_pdf([[("p", "Sharing information"), ("p", LOREM)]], header="Draft for consultation"))
    assert kinds["Draft for consultation"] == ("paragraph", "")
    assert kinds["Sharing information"] == ("heading", "")


def _layout(out: ReaderOutput) -> list[tuple[str, str, int, str, int | None]]:
    return [(out.text[b.start : b.end], b.kind, b.level, b.label, b.page) for b in out.blocks]


@pytest.mark.parametrize("rotate", [90, 180, 270])
def test_page_turned_by_rotate_reads_as_a_viewer_shows_it(rotate: int) -> None:
    """Landscape pages as printers to PDF write them: a portrait page turned by /Rotate, its text drawn sideways
    underneath so that a viewer shows it upright. Lines, blocks, headers and pages read as on a plain page."""
    table: list[tuple[str, ...]] = [
        ("h", "Retention"),
        ("row", "Record", "Kept for"),
        ("row", "Case file", "Six years"),
    ]
    pages = [*policy_pages(3), table]
    plain = read_pdf(build_pdf(pages, header=HEADER, footer=FOOTER, pagesize=landscape(A4)).data, SETTINGS)
    turned = read_pdf(
        build_pdf(pages, header=HEADER, footer=FOOTER, pagesize=landscape(A4), rotate=rotate).data, SETTINGS
    )
    assert _layout(turned) == _layout(plain)
    assert "3.2 Advocates must keep information" in turned.text
    assert "Case file Six years" in _block_texts(turned)
    assert turned.page_starts == plain.page_starts
    assert turned.headers == [HEADER]
    assert not turned.warnings


@pytest.mark.parametrize("rotate", [90, 180, 270])
def test_page_turned_in_a_viewer_reads_in_the_direction_of_its_text(rotate: int) -> None:
    """A page turned with a viewer's "rotate page" has upright text under its /Rotate: PDFium, which orders text
    as the page is displayed, gave its lines in reverse (90) or its columns swapped (180)."""
    data = build_pdf(policy_pages(3), header=HEADER, footer=FOOTER).data
    plain = read_pdf(data, SETTINGS)
    turned = read_pdf(turn_in_viewer(data, rotate), SETTINGS)
    assert _layout(turned) == _layout(plain)
    assert turned.headers == [HEADER]
    # The text is upright in the unrotated page, where boxes are measured: they are the plain page's boxes.
    assert [s.box for s in turned.spans] == pytest.approx([s.box for s in plain.spans])


@pytest.mark.parametrize("rotate", [90, 180, 270])
def test_word_boxes_on_turned_pages_frame_their_words_where_highlights_go(rotate: int) -> None:
    """Boxes stay in the unrotated page, the space pipeline.highlight writes annotations in: placed as it places
    them, each word's box holds exactly that word (PDFium reads the text inside a rectangle of PDF space)."""
    built = build_pdf(policy_pages(1), pagesize=landscape(A4), rotate=rotate)
    out = read_pdf(built.data, SETTINGS)
    page = PdfReader(io.BytesIO(built.data)).pages[0]
    pdf = pdfium.PdfDocument(built.data)
    try:
        textpage = pdf[0].get_textpage()
        for span in out.spans:
            box = span.box
            assert box.x0 < box.x1 and box.top < box.bottom
            assert box.x0 >= 0 and box.x1 <= float(page.mediabox.width)
            assert box.top >= 0 and box.bottom <= float(page.mediabox.height)
            x0, y0, x1, y1 = to_user_space(page, (box.x0, box.top, box.x1, box.bottom))
            assert textpage.get_text_bounded(x0, y0, x1, y1).strip() == out.text[span.start : span.end]
    finally:
        pdf.close()
