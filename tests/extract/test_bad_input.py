"""Every kind of bad input ends in a typed DocumentError naming the file, with a message saying what to do."""

from __future__ import annotations

import io
import os
import shutil
import stat
import zipfile
from pathlib import Path

import docx
import pytest
from pypdf import PdfReader, PdfWriter

import pipeline.extract as extract_module
from pipeline.config import Settings
from pipeline.errors import (
    CorruptDocumentError,
    DocumentError,
    DocumentTooLargeError,
    EmptyDocumentError,
    EncryptedDocumentError,
    ScannedDocumentError,
    UnsupportedFormatError,
)
from pipeline.extract import extract
from pipeline.extract.convert import find_soffice
from tests.pdf_factory import build_pdf, image_only_pdf, policy_pages, tiny_png

SETTINGS = Settings()


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _fails(path: Path, error: type[DocumentError], phrase: str, settings: Settings = SETTINGS) -> DocumentError:
    with pytest.raises(error) as info:
        extract(path, settings)
    exc = info.value
    assert type(exc) is error
    assert phrase in exc.args[0]
    assert exc.name == path.name
    assert str(exc).startswith(f"{path.name}: ")
    return exc


def _docx_bytes(text: str = "Staff keep records safe.") -> bytes:
    document = docx.Document()
    document.add_paragraph(text)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _no_program(monkeypatch: pytest.MonkeyPatch, *programs: str) -> None:
    """Hide the named programs from shutil.which (LibreOffice, ocrmypdf), whatever is installed here."""
    real_which = shutil.which

    def which(name: str, *args: object, **kwargs: object) -> str | None:
        return None if name in programs else real_which(name)

    monkeypatch.setattr("shutil.which", which)


def _fake_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, script: str) -> None:
    """Put a shell script called ``name`` first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    program = bin_dir / name
    program.write_text("#!/bin/sh\n" + script)
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")


# --- empty and unreadable files ------------------------------------------------------------------------------


def test_zero_byte_file(tmp_path: Path) -> None:
    _fails(_write(tmp_path, "empty.pdf", b""), EmptyDocumentError, "empty (0 bytes)")


def test_whitespace_only_text(tmp_path: Path) -> None:
    _fails(_write(tmp_path, "blank.txt", b"  \r\n\t\n   \n"), EmptyDocumentError, "only blank space")


def test_missing_file(tmp_path: Path) -> None:
    _fails(tmp_path / "nowhere.pdf", DocumentError, "does not exist")


def test_named_pipe_is_refused_without_opening_it(tmp_path: Path) -> None:
    # Opening a pipe nobody writes to blocks for ever: the file must be refused from its type alone.
    fifo = tmp_path / "policy.txt"
    os.mkfifo(fifo)
    _fails(fifo, UnsupportedFormatError, "pipe or device, not a regular file")


def test_folder_named_as_a_file(tmp_path: Path) -> None:
    (tmp_path / "policy.pdf").mkdir()
    _fails(tmp_path / "policy.pdf", DocumentError, "a folder, not a file")


def test_file_over_size_limit(tmp_path: Path) -> None:
    path = _write(tmp_path, "big.pdf", build_pdf(policy_pages(2)).data)
    _fails(path, DocumentTooLargeError, "over the limit of 0.001 MB", Settings(max_file_mb=0.001))


# --- damaged or disguised PDFs -------------------------------------------------------------------------------


def test_truncated_pdf(tmp_path: Path) -> None:
    data = build_pdf(policy_pages(6)).data
    _fails(_write(tmp_path, "cut.pdf", data[: len(data) * 6 // 10]), CorruptDocumentError, "truncated")


def test_garbage_with_pdf_header(tmp_path: Path) -> None:
    data = b"%PDF-1.7\n" + os.urandom(3000)
    _fails(_write(tmp_path, "garbage.pdf", data), CorruptDocumentError, "could not be read")


def test_garbage_bytes_named_pdf(tmp_path: Path) -> None:
    data = b"\x01\x02" + os.urandom(3000)
    _fails(_write(tmp_path, "garbage.pdf", data), CorruptDocumentError, "its content is not a PDF")


def test_html_named_pdf(tmp_path: Path) -> None:
    html = b"<!doctype html><html><head><title>Policy</title></head><body><p>Our policy</p></body></html>"
    _fails(_write(tmp_path, "policy.pdf", html), UnsupportedFormatError, "web page (HTML), not a PDF")


def test_png_named_pdf(tmp_path: Path) -> None:
    exc = _fails(_write(tmp_path, "scan.pdf", tiny_png()), UnsupportedFormatError, "an image, not a document")
    assert "send the PDF with a text layer" in exc.args[0]


def _encrypt(data: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_pdf_needing_password(tmp_path: Path) -> None:
    data = _encrypt(build_pdf([[("p", "Secret policy.")]]).data, "letmein")
    _fails(_write(tmp_path, "locked.pdf", data), EncryptedDocumentError, "password-protected: remove the password")


def test_pdf_with_empty_user_password_is_screened(tmp_path: Path) -> None:
    data = _encrypt(build_pdf([[("p", "Staff keep records safe.")]]).data, "")
    doc = extract(_write(tmp_path, "restricted.pdf", data), SETTINGS)
    assert doc.text == "Staff keep records safe."
    assert doc.source_format == "pdf"


def test_image_only_pdf_without_ocr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_program(monkeypatch, "ocrmypdf")
    exc = _fails(_write(tmp_path, "scan.pdf", image_only_pdf()), ScannedDocumentError, "no text layer")
    assert "needs OCR" in exc.args[0]


def test_image_only_pdf_with_ocr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in for ocrmypdf that "recognises" a fixed text layer: copies a prepared PDF to its output path.
    recognised = _write(tmp_path, "recognised.pdf", build_pdf([[("p", "Text found by OCR.")]]).data)
    _fake_program(tmp_path, monkeypatch, "ocrmypdf", f'for last; do :; done\ncp "{recognised}" "$last"\n')
    doc = extract(_write(tmp_path, "scan.pdf", image_only_pdf()), SETTINGS)
    assert doc.text == "Text found by OCR."
    assert any("OCR" in warning for warning in doc.warnings)


def test_ocr_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_program(tmp_path, monkeypatch, "ocrmypdf", "echo 'tesseract: not found' >&2\nexit 3\n")
    _fails(_write(tmp_path, "scan.pdf", image_only_pdf()), ScannedDocumentError, "OCR failed")


# --- files with the wrong name -------------------------------------------------------------------------------


def test_plain_text_named_docx_is_screened_as_text(tmp_path: Path) -> None:
    path = _write(tmp_path, "policy.docx", b"Confidentiality policy\n\nStaff keep records safe.\n")
    doc = extract(path, SETTINGS)
    assert doc.source_format == "text"
    assert "Staff keep records safe." in doc.text
    assert any("named .docx" in w and "plain text" in w for w in doc.warnings)


def test_pdf_named_docx_is_read_as_pdf(tmp_path: Path) -> None:
    doc = extract(_write(tmp_path, "policy.docx", build_pdf([[("p", "A PDF really.")]]).data), SETTINGS)
    assert doc.source_format == "pdf"
    assert any("named .docx but holds a PDF" in w for w in doc.warnings)


def test_binary_junk_named_txt(tmp_path: Path) -> None:
    _fails(_write(tmp_path, "notes.txt", b"\x01" + os.urandom(4000)), UnsupportedFormatError, "binary data")


# --- archives ------------------------------------------------------------------------------------------------


def test_zip_without_word_document(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("policies/confidentiality.txt", "Staff keep records safe.")
    _fails(_write(tmp_path, "policies.docx", buffer.getvalue()), UnsupportedFormatError, "not a Word document")


def test_zip_bomb_docx(tmp_path: Path) -> None:
    source = io.BytesIO(_docx_bytes())
    out = io.BytesIO()
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bomb:
        for item in original.infolist():
            bomb.writestr(item, original.read(item.filename))
        bomb.writestr("word/media/filler.bin", b"\0" * (3 * 1024 * 1024))  # 3 MB that compresses to ~3 KB
    data = out.getvalue()
    assert len(data) < 100_000
    path = _write(tmp_path, "bomb.docx", data)
    _fails(path, DocumentTooLargeError, "zip bomb", Settings(max_uncompressed_mb=1))


def test_doc_without_libreoffice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipeline.extract.convert.find_soffice", lambda: None)
    ole2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 1024
    _fails(_write(tmp_path, "old.doc", ole2), UnsupportedFormatError, "unsupported format (.doc): please save as PDF")


def test_doc_converted_by_libreoffice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in for soffice: writes a prepared DOCX where LibreOffice would put the converted file.
    converted = _write(tmp_path, "converted.docx", _docx_bytes("Converted from an old Word file."))
    script = (
        'while [ $# -gt 0 ]; do case "$1" in --outdir) out="$2"; shift;; esac; shift; done\n'
        f'cp "{converted}" "$out/input.docx"\n'
    )
    _fake_program(tmp_path, monkeypatch, "soffice", script)
    ole2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 1024
    doc = extract(_write(tmp_path, "old.doc", ole2), SETTINGS)
    assert doc.source_format == "docx"
    assert "Converted from an old Word file." in doc.text


@pytest.mark.skipif(find_soffice() is None, reason="LibreOffice is not installed")
def test_rtf_converted_by_real_libreoffice(tmp_path: Path) -> None:
    rtf = rb"{\rtf1\ansi{\fonttbl\f0 Arial;}\f0 Confidentiality policy\par Staff keep records safe.\par}"
    doc = extract(_write(tmp_path, "old.rtf", rtf), SETTINGS)
    assert doc.source_format == "docx"
    assert "Staff keep records safe." in doc.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.rtf"]  # nothing written beside the input


def test_libreoffice_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_program(tmp_path, monkeypatch, "soffice", "sleep 30\n")
    ole2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 1024
    path = _write(tmp_path, "slow.doc", ole2)
    _fails(path, CorruptDocumentError, "took longer than 0.5 s", Settings(convert_timeout_s=0.5))


# --- robustness ----------------------------------------------------------------------------------------------


def test_reader_crash_becomes_corrupt_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(data: bytes, settings: Settings) -> None:
        raise KeyError("/Root")

    monkeypatch.setattr(extract_module, "read_pdf", explode)
    path = _write(tmp_path, "odd.pdf", build_pdf([[("p", "Text.")]]).data)
    exc = _fails(path, CorruptDocumentError, "could not be read: KeyError")
    assert "Traceback" not in str(exc)


def test_input_file_is_never_modified(tmp_path: Path) -> None:
    data = build_pdf(policy_pages(2)).data
    path = _write(tmp_path, "policy.pdf", data)
    path.chmod(stat.S_IRUSR)  # read-only: any attempt to write would fail
    before = path.stat().st_mtime_ns
    extract(path, SETTINGS)
    assert path.read_bytes() == data
    assert path.stat().st_mtime_ns == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.pdf"]
