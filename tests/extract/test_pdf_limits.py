"""The PDF reader against hostile and odd files: decompression bombs, lying or empty page trees.

Every file is written in code (``tests.pdf_factory``): a bomb is a few kilobytes that would inflate into
megabytes of drawing instructions if PDFium were given it.
"""

from __future__ import annotations

import io
import re
import tracemalloc
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from pypdf import PdfReader, PdfWriter

from pipeline.config import Settings
from pipeline.errors import (
    CorruptDocumentError,
    DocumentTooLargeError,
    EmptyDocumentError,
    EncryptedDocumentError,
)
from pipeline.extract import extract
from pipeline.extract.pdf import read_pdf
from tests.pdf_factory import (
    HELVETICA,
    PAGE_TEXT,
    PATHS,
    deflate,
    inflating_pdf,
    pages_pdf,
    raw_pdf,
    repeated,
    stream,
)

SETTINGS = Settings()
MB = 1024 * 1024
TEXT = "Advocates keep records safe."
PAGE_BOMB = "page 1 inflates to more than 8 MB of drawing instructions"


def test_content_stream_bomb_is_refused_without_being_held_in_memory() -> None:
    data = inflating_pdf(12)  # 12 MB of path operators: PDFium peaked near 300 MB RSS on it
    assert len(data) < 50_000
    tracemalloc.start()
    try:
        with pytest.raises(DocumentTooLargeError, match=PAGE_BOMB) as caught:
            read_pdf(data, SETTINGS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "export the policy again from the original document" in str(caught.value)
    assert caught.value.code == "too_large"
    assert peak < 4 * MB  # inflated a chunk at a time and counted, never kept


def test_bomb_of_nested_flate_layers_is_refused() -> None:
    data = inflating_pdf(64, layers=2)  # 64 MB of operators in about a kilobyte
    assert len(data) < 5_000
    with pytest.raises(DocumentTooLargeError, match=PAGE_BOMB):
        read_pdf(data, SETTINGS)


def test_bomb_in_a_form_the_page_draws_is_refused() -> None:
    with pytest.raises(DocumentTooLargeError, match=PAGE_BOMB):
        read_pdf(inflating_pdf(12, in_form=True), SETTINGS)


def test_bomb_in_a_form_inside_a_form_named_through_references_is_refused() -> None:
    """Resource and XObject dictionaries are often objects of their own, and forms draw other forms."""

    def nested(megabytes: float) -> bytes:
        filters = b"/Filter /FlateDecode /Type /XObject /Subtype /Form /BBox [0 0 595 842]"
        inner = stream(deflate([PAGE_TEXT, *repeated(PATHS, megabytes)]), filters)  # object 6
        outer = stream(b"/Fm1 Do\n", b"/Type /XObject /Subtype /Form /BBox [0 0 595 842] /Resources 9 0 R")
        return pages_pdf(
            [stream(b"/Fm0 Do\n")],
            resources=b"/XObject 8 0 R",
            extra=[inner, outer, b"<< /Fm0 7 0 R >>", b"<< /XObject << /Fm1 6 0 R >> >>"],
        )

    assert read_pdf(nested(1), SETTINGS).text == TEXT  # the page does draw the inner form
    with pytest.raises(DocumentTooLargeError, match=PAGE_BOMB):
        read_pdf(nested(12), SETTINGS)


def test_bomb_of_spaces_is_refused() -> None:
    """Not only operators: PDFium holds the whole inflated stream while it parses it."""
    with pytest.raises(DocumentTooLargeError, match=PAGE_BOMB):
        read_pdf(inflating_pdf(40, unit=b" "), SETTINGS)


def test_bomb_in_a_file_pypdf_cannot_parse_is_refused() -> None:
    """PDFium reads files pypdf gives up on; the raw scan of every stream still finds the bomb."""
    filters = b"/Filter /FlateDecode"
    junk = b"/Junk " + b"[" * 100_000 + b"]" * 100_000  # pypdf fails on the nesting, PDFium does not
    harmless = pages_pdf([stream(deflate([PAGE_TEXT]), filters)], catalog=junk)
    with pytest.raises(Exception):  # noqa: B017 - the premise: pypdf cannot parse it
        PdfReader(io.BytesIO(harmless)).pages[0].get("/Contents")
    assert read_pdf(harmless, SETTINGS).text == TEXT
    bomb = pages_pdf([stream(deflate([PAGE_TEXT, *repeated(PATHS, 12)]), filters)], catalog=junk)
    with pytest.raises(DocumentTooLargeError, match="part of it inflates to more than 8 MB"):
        read_pdf(bomb, SETTINGS)


def test_bomb_in_a_pdf_encrypted_with_an_empty_password_is_refused() -> None:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(inflating_pdf(12))))
    writer.encrypt(user_password="", owner_password="owner-secret", algorithm="AES-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    with pytest.raises(DocumentTooLargeError, match=PAGE_BOMB):
        read_pdf(buffer.getvalue(), SETTINGS)


def test_pages_together_over_the_document_limit_are_refused() -> None:
    settings = Settings(max_pdf_content_mb=2.5)
    # Mid-page, so that the same line on every page is not taken for a running header.
    text = PAGE_TEXT.replace(b" 760 Td", b" 400 Td")
    page = stream(deflate([text, *repeated(PATHS, 1)]), b"/Filter /FlateDecode")
    assert read_pdf(pages_pdf([page, page]), settings).text == f"{TEXT}\n\n{TEXT}"
    with pytest.raises(DocumentTooLargeError, match=re.escape("its pages together inflates to more than 2.5 MB")):
        read_pdf(pages_pdf([page, page, page]), settings)


def test_page_under_the_limit_is_read() -> None:
    out = read_pdf(inflating_pdf(2), SETTINGS)
    assert out.text == TEXT


def test_large_image_is_not_taken_for_a_bomb() -> None:
    """A scanned page inflates to megabytes legitimately; PDFium does not decode images to read text."""
    image = stream(
        deflate(repeated(b"\x80", 9)),
        b"/Type /XObject /Subtype /Image /Width 3072 /Height 3072 /ColorSpace /DeviceGray "
        b"/BitsPerComponent 8 /Filter /FlateDecode",
    )
    content = stream(PAGE_TEXT + b"q 400 0 0 400 100 100 cm /Im0 Do Q\n")
    out = read_pdf(pages_pdf([content], resources=b"/XObject << /Im0 6 0 R >>", extra=[image]), SETTINGS)
    assert out.text == TEXT


def test_bomb_through_extract_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.pdf"
    path.write_bytes(inflating_pdf(12))
    with pytest.raises(DocumentTooLargeError, match=f"policy.pdf: the PDF cannot be read safely: {PAGE_BOMB}"):
        extract(path, SETTINGS)


def _no_pages() -> bytes:
    buffer = io.BytesIO()
    PdfWriter().write(buffer)
    return buffer.getvalue()


def test_pdf_without_pages_is_empty_not_damaged(tmp_path: Path) -> None:
    data = _no_pages()
    with pytest.raises(pdfium.PdfiumError):
        pdfium.PdfDocument(data)  # the premise: PDFium refuses it as it refuses a damaged file
    path = tmp_path / "blank.pdf"
    path.write_bytes(data)
    with pytest.raises(
        EmptyDocumentError, match=re.escape("blank.pdf: the PDF has no pages: nothing to screen")
    ) as caught:
        extract(path, SETTINGS)
    assert caught.value.code == "empty"


def test_pdf_without_pages_is_told_apart_whatever_pdfium_failed_on_before() -> None:
    """pypdfium2 reports a document without pages with PDFium's last error code, which may be another file's:
    after a password-protected file, an empty one was called password-protected."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pages_pdf([stream(PAGE_TEXT)]))))
    writer.encrypt(user_password="letmein", owner_password="owner-secret", algorithm="AES-128")
    locked = io.BytesIO()
    writer.write(locked)
    with pytest.raises(EncryptedDocumentError):
        read_pdf(locked.getvalue(), SETTINGS)
    with pytest.raises(EmptyDocumentError, match="the PDF has no pages"):
        read_pdf(_no_pages(), SETTINGS)


def test_page_tree_without_kids_is_empty() -> None:
    with pytest.raises(EmptyDocumentError, match="the PDF has no pages"):
        read_pdf(pages_pdf([]), SETTINGS)


def test_page_tree_naming_pages_it_does_not_hold_is_damaged() -> None:
    """PDFium took /Count on trust: five unreadable pages, then "scanned document, needs OCR"."""
    message = "could not be read: it is damaged (its page list names 5 page(s) but none is in the file)"
    with pytest.raises(CorruptDocumentError, match=re.escape(message)):
        read_pdf(pages_pdf([], count=5), SETTINGS)


def test_page_count_that_lies_reads_the_pages_present() -> None:
    out = read_pdf(pages_pdf([stream(PAGE_TEXT)], count=3), SETTINGS)
    assert out.text == TEXT
    assert out.pages == 1
    assert out.page_starts == [0]
    assert out.warnings == ["the PDF declares 3 pages but holds 1: the 1 it holds were read"]


def test_page_count_far_over_the_limit_is_not_taken_on_trust() -> None:
    out = read_pdf(pages_pdf([stream(PAGE_TEXT)], count=100_000), SETTINGS)
    assert out.text == TEXT
    assert out.pages == 1
    assert out.warnings == ["the PDF declares 100000 pages but holds 1: the 1 it holds were read"]


def test_lying_page_count_over_the_limit_says_how_many_pages_there_are_at_least() -> None:
    data = pages_pdf([stream(PAGE_TEXT)] * 3, count=100_000)
    with pytest.raises(DocumentTooLargeError, match="the PDF has more than 2 pages, over the limit of 2"):
        read_pdf(data, Settings(max_pages=2))


def test_measuring_a_damaged_pdf_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    data = pages_pdf([stream(deflate([PAGE_TEXT]), b"/Filter /FlateDecode")])
    at = data.rfind(b"startxref")
    damaged = data[:at] + b"startxref\n999999\n%%EOF\n"  # pypdf warns of the wrong pointer and repairs it
    assert read_pdf(damaged, SETTINGS).text == TEXT
    assert not [r for r in caplog.records if r.name.startswith("pypdf")]


def _form(body: bytes, resources: bytes = b"") -> bytes:
    extra = b"/Filter /FlateDecode /Type /XObject /Subtype /Form /BBox [0 0 595 842]"
    return stream(deflate([body]), extra + (b" /Resources " + resources if resources else b""))


def test_a_form_is_counted_each_time_it_is_drawn() -> None:
    """PDFium parses a form again for every draw: a 480 KB file drawing a 2 MB form 2,000 times grew past 20 GB."""
    form = b"".join(repeated(PATHS, 0.1))  # about 0.1 MB of path operators

    def drawing(times: int) -> bytes:
        page = PAGE_TEXT + b"q /Fm0 Do Q\n" * times
        return pages_pdf([stream(page)], resources=b"/XObject << /Fm0 6 0 R >>", extra=[_form(form)])

    assert read_pdf(drawing(10), SETTINGS).text == TEXT  # about 1 MB drawn
    with pytest.raises(DocumentTooLargeError, match=PAGE_BOMB):
        read_pdf(drawing(100), SETTINGS)  # about 10 MB drawn from a file of a few kilobytes


def test_forms_drawn_by_forms_are_counted_for_every_draw() -> None:
    inner = b"".join(repeated(PATHS, 0.01))  # about 10 KB

    def nested(outer_draws: int) -> bytes:
        outer = _form(b"/Fm1 Do\n" * 30, b"<< /XObject << /Fm1 7 0 R >> >>")  # object 6 draws the inner 30 times
        page = PAGE_TEXT + b"/Fm0 Do\n" * outer_draws
        return pages_pdf([stream(page)], resources=b"/XObject << /Fm0 6 0 R >>", extra=[outer, _form(inner)])

    assert read_pdf(nested(2), SETTINGS).text == TEXT  # 60 draws: 0.6 MB
    with pytest.raises(DocumentTooLargeError, match=PAGE_BOMB):
        read_pdf(nested(30), SETTINGS)  # 900 draws: 9 MB


def test_a_form_that_draws_itself_is_counted_once() -> None:
    looping = _form(b"/Fm0 Do\n", b"<< /XObject << /Fm0 6 0 R >> >>")
    data = pages_pdf([stream(PAGE_TEXT + b"/Fm0 Do\n")], resources=b"/XObject << /Fm0 6 0 R >>", extra=[looping])
    assert read_pdf(data, SETTINGS).text == TEXT


def test_draws_split_between_inflated_chunks_are_counted_once() -> None:
    from collections import Counter

    from pipeline.extract.pdf_content import _decoded_size

    # the first inflated chunk is 1 MiB: end it inside the second operator's name
    body = b" " * (MB - 12) + b"/Fm0 Do\n/Fm1 Do\n" + b"/Fm0 Do\n"
    draws: Counter[bytes] = Counter()
    assert _decoded_size(deflate([body]), ["/FlateDecode"], 10 * MB, draws) == len(body)
    assert draws == Counter({b"Fm0": 2, b"Fm1": 1})


def test_bomb_in_a_type3_font_glyph_is_refused() -> None:
    """PDFium parses a Type 3 glyph's drawing procedure: a 400 KB file with one 200 MB glyph took 4.3 GB."""

    def type3(megabytes: float) -> bytes:
        glyph = stream(deflate([b"0 0 0 0 1000 1000 d1\n", *repeated(PATHS, megabytes)]), b"/Filter /FlateDecode")
        font = (
            b"<< /Type /Font /Subtype /Type3 /FontBBox [0 0 1000 1000] /FontMatrix [0.001 0 0 0.001 0 0] "
            b"/CharProcs << /a 7 0 R >> /Encoding << /Type /Encoding /Differences [97 /a] >> "
            b"/FirstChar 97 /LastChar 97 /Widths [1000] >>"
        )
        content = stream(PAGE_TEXT + b"BT /T3 12 Tf 72 700 Td (aaaa) Tj ET\n")
        page = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 5 0 R "
            b"/Resources << /Font << /F1 3 0 R /T3 6 0 R >> >> >>"
        )
        catalog, pages = b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>"
        return raw_pdf([catalog, pages, HELVETICA, page, content, font, glyph])

    assert read_pdf(type3(0.5), SETTINGS).text.startswith(TEXT)
    with pytest.raises(DocumentTooLargeError, match=PAGE_BOMB):
        read_pdf(type3(12), SETTINGS)
