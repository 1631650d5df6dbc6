"""File-type detection works from content, and refuses what cannot be read with an actionable message."""

from __future__ import annotations

import contextlib
import io
import os
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import (
    CorruptDocumentError,
    DocumentError,
    EmptyDocumentError,
    EncryptedDocumentError,
    UnsupportedFormatError,
)
from pipeline.extract.detect import decode_text, legacy_suffix, sniff
from tests.pdf_factory import build_pdf, tiny_png


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    return buffer.getvalue()


DOCX_TYPES = (
    b'<Types><Override ContentType="application/'
    b'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
)
DOCM_TYPES = b'<Types><Override ContentType="application/vnd.ms-word.document.macroEnabled.main+xml"/></Types>'


def test_pdf_is_recognised_whatever_the_name() -> None:
    data = build_pdf([[("p", "Hello")]]).data
    assert sniff(data, "policy.pdf") == "pdf"
    assert sniff(data, "policy.docx") == "pdf"
    assert sniff(b"\r\n" + data, "policy") == "pdf"  # junk before the header is allowed by readers


def test_docx_and_docm_by_content_type() -> None:
    assert sniff(_zip({"[Content_Types].xml": DOCX_TYPES, "word/document.xml": b"<w/>"}), "a.docx") == "docx"
    assert sniff(_zip({"[Content_Types].xml": DOCM_TYPES, "word/document.xml": b"<w/>"}), "a.docx") == "docm"
    vba = {"[Content_Types].xml": DOCX_TYPES, "word/document.xml": b"<w/>", "word/vbaProject.bin": b"x"}
    assert sniff(_zip(vba), "a.docx") == "docm"


def test_legacy_formats() -> None:
    ole2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
    assert sniff(ole2, "a.doc") == "legacy"
    assert legacy_suffix(ole2) == ".doc"
    rtf = b"{\\rtf1\\ansi Hello}"
    assert sniff(rtf, "a.rtf") == "legacy"
    assert legacy_suffix(rtf) == ".rtf"
    odt = _zip({"mimetype": b"application/vnd.oasis.opendocument.text", "content.xml": b"<x/>"})
    assert sniff(odt, "a.odt") == "legacy"
    assert legacy_suffix(odt) == ".odt"


def test_password_protected_office_file() -> None:
    data = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100 + "EncryptedPackage".encode("utf-16-le")
    with pytest.raises(EncryptedDocumentError, match="password-protected"):
        sniff(data, "policy.docx")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"Confidentiality policy\n\nStaff must keep records safe.\n", "text"),
        ("Caf\u00e9 policy \u2013 r\u00e9sum\u00e9".encode(), "text"),
        ("Smart \u2018quotes\u2019 \u2013 dash".encode("cp1252"), "text"),
        (b"\xef\xbb\xbfWith a BOM", "text"),
        ("UTF-16 policy text".encode("utf-16"), "text"),
        (b"# Confidentiality\n\nStaff must keep records safe.\n", "markdown"),
        (b"Confidentiality\n===============\n\nText.\n", "markdown"),
    ],
)
def test_text_and_markdown(data: bytes, expected: str) -> None:
    assert sniff(data, "policy.txt") == expected


def test_markdown_by_name() -> None:
    assert sniff(b"Just words.", "policy.md") == "markdown"


def test_decode_text_fallbacks() -> None:
    assert decode_text("na\u00efve".encode()) == "na\u00efve"
    assert decode_text("\u2018quoted\u2019".encode("cp1252")) == "\u2018quoted\u2019"
    assert decode_text("\u00a3 pounds".encode("utf-16-le").join([b"\xff\xfe", b""])) == "\u00a3 pounds"


def test_empty_and_whitespace() -> None:
    with pytest.raises(EmptyDocumentError, match="empty"):
        sniff(b"", "policy.pdf")
    with pytest.raises(EmptyDocumentError, match="blank"):
        sniff(b"  \n\t \r\n ", "policy.txt")


def test_html_named_pdf() -> None:
    html = b"<!DOCTYPE html>\n<html><head><title>Policy</title></head><body>Text</body></html>"
    with pytest.raises(UnsupportedFormatError, match=r"web page \(HTML\), not a PDF: save the policy as PDF or DOCX"):
        sniff(html, "policy.pdf")
    with pytest.raises(UnsupportedFormatError, match="web page"):
        sniff(b"  <html><body>x</body></html>", "policy.htm")


@pytest.mark.parametrize(
    ("data", "label"),
    [
        (tiny_png(), "PNG"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 32, "JPEG"),
        (b"GIF89a" + b"\x00" * 32, "GIF"),
        (b"II*\x00" + b"\x00" * 32, "TIFF"),
    ],
)
def test_images_are_refused(data: bytes, label: str) -> None:
    with pytest.raises(UnsupportedFormatError, match="an image, not a document") as info:
        sniff(data, "policy.pdf")
    assert label in str(info.value)
    assert "text layer" in str(info.value)


def test_zip_without_word_document() -> None:
    with pytest.raises(UnsupportedFormatError, match="a ZIP archive that is not a Word document"):
        sniff(_zip({"policy.txt": b"hello"}), "policies.docx")
    with pytest.raises(UnsupportedFormatError, match="Excel"):
        sniff(_zip({"xl/workbook.xml": b"<x/>"}), "policies.xlsx")


def test_damaged_zip() -> None:
    with pytest.raises(UnsupportedFormatError, match="damaged"):
        sniff(b"PK\x03\x04" + b"\x00" * 40, "policy.docx")


def test_binary_junk_is_refused() -> None:
    junk = b"ZZ" + os.urandom(4096)
    with pytest.raises(UnsupportedFormatError, match="binary data"):
        sniff(junk, "notes.txt")
    # Named like a document, the same noise is a damaged document to its sender.
    with pytest.raises(CorruptDocumentError, match=r"named \.pdf but its content is not a PDF"):
        sniff(junk, "policy.pdf")


def test_nul_bytes_are_binary() -> None:
    with pytest.raises(UnsupportedFormatError, match="binary data"):
        sniff(b"mostly text\x00\x00\x00 with NULs", "notes.txt")


@given(st.binary(min_size=1, max_size=2048))
@settings(max_examples=200, deadline=None)
def test_sniff_never_crashes(data: bytes) -> None:
    """Any bytes either get a kind or a DocumentError, never another exception."""
    with contextlib.suppress(DocumentError):
        assert sniff(data, "x.pdf") in {"pdf", "docx", "docm", "text", "markdown", "legacy"}


@given(st.text(min_size=1, max_size=500).filter(lambda t: t.strip()))
@settings(max_examples=200, deadline=None)
def test_printable_text_is_text(text: str) -> None:
    """Ordinary prose in UTF-8 is never mistaken for binary data."""
    prose = "".join(ch for ch in text if (ch.isprintable() and ch != "\ufffd") or ch in "\n\t")
    if not prose.strip() or prose.lstrip().startswith(("<", "{\\rtf", "%PDF")):
        return
    try:
        assert sniff(prose.encode(), "notes.txt") in {"text", "markdown"}
    except UnsupportedFormatError as exc:  # only web pages and images may be refused
        assert "web page" in str(exc) or "image" in str(exc)
