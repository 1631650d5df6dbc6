"""Decide what a file really is from its bytes, never from its name alone.

Providers rename files freely ("policy.pdf" that is a saved web page, a scan exported as PNG, a DOCX renamed
.doc), so the extension is only a hint: it decides between plain text and Markdown, and it lets the caller warn
when the name and the content disagree. Everything the tool cannot read is refused here with a message that tells
the provider what to send instead.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import PurePath
from typing import Final, Literal

from pipeline.errors import (
    CorruptDocumentError,
    DocumentError,
    EmptyDocumentError,
    EncryptedDocumentError,
    UnsupportedFormatError,
)

Kind = Literal["pdf", "docx", "docm", "text", "markdown", "legacy"]

# What each kind is usually called; used to warn when a name and its content disagree.
EXPECTED_SUFFIXES: Final[dict[str, frozenset[str]]] = {
    "pdf": frozenset({".pdf"}),
    "docx": frozenset({".docx", ".dotx"}),
    "docm": frozenset({".docm", ".dotm"}),
    "text": frozenset({".txt", ".text", ".md", ".markdown", ""}),
    "markdown": frozenset({".md", ".markdown", ".txt"}),
    "legacy": frozenset({".doc", ".odt", ".rtf", ".dot"}),
}

_MARKDOWN_SUFFIXES: Final = frozenset({".md", ".markdown"})
_OLE2_MAGIC: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# An Office file protected with a password ("Encrypt with password") is an OLE2 container holding this stream,
# whatever its extension; the name is stored in UTF-16LE in the container's directory.
_OLE2_ENCRYPTED_STREAM: Final = "EncryptedPackage".encode("utf-16-le")
_IMAGE_MAGICS: Final[tuple[tuple[bytes, str], ...]] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
# Headers of formats people plausibly upload by mistake; refused by name so the message is useful.
_OTHER_MAGICS: Final[tuple[tuple[bytes, str], ...]] = (
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"%!PS", "a PostScript file"),
)
_ZIP_MAGICS: Final = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_MACRO_CONTENT_TYPE: Final = b"macroenabled"
_ODT_MIMETYPE: Final = b"application/vnd.oasis.opendocument.text"
# How much of a ZIP member we read while sniffing: enough for [Content_Types].xml, too little for a bomb to hurt.
_SNIFF_MEMBER_BYTES: Final = 256 * 1024
_SAMPLE_BYTES: Final = 64 * 1024
# Share of control characters above which decoded "text" is really binary data. Real policies have none
# beyond tab/CR/LF/form feed; random bytes decode to roughly 25% control characters.
_MAX_CONTROL_RATIO: Final = 0.01
_MARKDOWN_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+\S", re.MULTILINE)
_MARKDOWN_SETEXT = re.compile(r"^\S[^\n]*\n ?(?:={3,}|-{3,})[ \t]*$", re.MULTILINE)
_HTML_START = re.compile(
    r"^\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)\b", re.I | re.S
)
_SAVE_AS = "save the policy as PDF or DOCX and upload that instead"


def suffix_of(name: str) -> str:
    """The lower-case extension of a file name, with its dot ("" when there is none)."""
    return PurePath(name).suffix.lower()


def sniff(data: bytes, name: str) -> Kind:
    """Classify a file by its content.

    Returns "pdf", "docx", "docm" (a Word file with macros: read like DOCX, macros never run), "text",
    "markdown" or "legacy" (.doc, .odt, .rtf: readable after conversion by LibreOffice).

    Raises:
        EmptyDocumentError: zero bytes, or text that is only whitespace.
        EncryptedDocumentError: an Office file protected with a password.
        UnsupportedFormatError: anything else (web page, image, archive, binary data), with what to do instead.
        CorruptDocumentError: unrecognisable binary data in a file named like a document (.pdf, .docx, .doc).
    """
    if not data:
        raise EmptyDocumentError("the file is empty (0 bytes): upload the policy again", name=name)
    suffix = suffix_of(name)
    head = data[:1024]

    # PDF allows a little junk before its header, so look in the first kilobyte rather than at byte 0.
    if b"%PDF-" in head:
        return "pdf"
    if data.startswith(_ZIP_MAGICS):
        return _sniff_zip(data, name)
    if data.startswith(_OLE2_MAGIC):
        return _sniff_ole2(data, name, suffix)
    if data.lstrip()[:5] == b"{\\rtf":
        return "legacy"
    for magic, label in _IMAGE_MAGICS:
        if data.startswith(magic):
            raise UnsupportedFormatError(
                f"this file is an image, not a document ({label}): {_SAVE_AS}; "
                "if it is a scan, send the PDF with a text layer (run OCR first)",
                name=name,
            )
    # BMP's two-byte magic is too short to trust alone ("BMA policy..."): its reserved header bytes are zero.
    if data.startswith(b"BM") and len(data) > 26 and data[6:10] == b"\0\0\0\0":
        raise UnsupportedFormatError(f"this file is an image, not a document (BMP): {_SAVE_AS}", name=name)
    for magic, label in _OTHER_MAGICS:
        if data.startswith(magic):
            raise UnsupportedFormatError(f"this file is {label}, not a document: {_SAVE_AS}", name=name)

    text = decode_text(data, name)
    if _HTML_START.match(text[:4096]):
        claimed = f", not a {suffix[1:].upper()}" if suffix and suffix not in {".htm", ".html"} else ""
        raise UnsupportedFormatError(f"this file is a web page (HTML){claimed}: {_SAVE_AS}", name=name)
    if not text.strip():
        raise EmptyDocumentError("the file holds only blank space: upload the policy again", name=name)
    if suffix in _MARKDOWN_SUFFIXES or _MARKDOWN_HEADING.search(text) or _MARKDOWN_SETEXT.search(text):
        return "markdown"
    return "text"


def legacy_suffix(data: bytes) -> str:
    """For a file sniffed as "legacy", the extension LibreOffice should see: ".rtf", ".odt" or ".doc"."""
    if data.lstrip()[:5] == b"{\\rtf":
        return ".rtf"
    if data.startswith(_ZIP_MAGICS):
        return ".odt"
    return ".doc"


def decode_text(data: bytes, name: str = "") -> str:
    """Decode bytes that should be text: UTF-8 (BOM optional), UTF-16 with a BOM, else Windows-1252.

    Raises UnsupportedFormatError when the result is binary data rather than text (NUL bytes, or more than
    1% control characters), so a renamed executable never reaches the readers; CorruptDocumentError instead
    when the name claims a binary document format (a ".pdf" full of noise is a damaged PDF to its sender).
    """
    if data.startswith(b"\xef\xbb\xbf"):
        text = _decode_or_junk(data[3:], "utf-8", name)
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = _decode_or_junk(data, "utf-16", name)
    else:
        if b"\x00" in data[:_SAMPLE_BYTES]:
            raise _binary_error(name)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            # Windows-1252 leaves five byte values undefined; a file using them is not text in any encoding
            # a UK provider would produce, but "replace" keeps a stray one from rejecting a whole policy.
            text = data.decode("cp1252", errors="replace")
    sample = text[:_SAMPLE_BYTES]
    if sample:
        bad = sum(1 for ch in sample if _is_junk_char(ch))
        if bad / len(sample) > _MAX_CONTROL_RATIO:
            raise _binary_error(name)
    return text


def _is_junk_char(ch: str) -> bool:
    code = ord(ch)
    if code < 32:
        return ch not in "\t\n\r\f\v"
    return code == 0x7F or code == 0xFFFD or 0x80 <= code < 0xA0


def _decode_or_junk(data: bytes, encoding: str, name: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        raise _binary_error(name) from None


_CLAIMED_FORMATS: Final = {".pdf": "PDF", ".docx": "Word document", ".docm": "Word document", ".doc": "Word document"}


def _binary_error(name: str) -> DocumentError:
    claimed = _CLAIMED_FORMATS.get(suffix_of(name))
    if claimed:
        # The name promises a document format but no such document is inside: a damaged or mangled file.
        return CorruptDocumentError(
            f"could not be read: the file is named {suffix_of(name)} but its content is not a {claimed} "
            f"(damaged, or not a document at all): {_SAVE_AS}",
            name=name,
        )
    return UnsupportedFormatError(
        f"this file holds binary data, not text or a document format the tool reads: {_SAVE_AS}", name=name
    )


def _sniff_zip(data: bytes, name: str) -> Kind:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        raise UnsupportedFormatError(
            f"this file starts like a ZIP archive or Word document but is damaged or incomplete: {_SAVE_AS}",
            name=name,
        ) from None
    with archive:
        if "word/document.xml" in names:
            content_types = _read_member(archive, "[Content_Types].xml")
            if _MACRO_CONTENT_TYPE in content_types.lower() or "word/vbaProject.bin" in names:
                return "docm"
            return "docx"
        if "mimetype" in names and _read_member(archive, "mimetype").strip() == _ODT_MIMETYPE:
            return "legacy"
        if "xl/workbook.xml" in names:
            what = "an Excel spreadsheet"
        elif "ppt/presentation.xml" in names:
            what = "a PowerPoint presentation"
        else:
            what = "a ZIP archive that is not a Word document"
    raise UnsupportedFormatError(
        f"this file is {what}: {_SAVE_AS} (one file per policy, not an archive)",
        name=name,
    )


def _read_member(archive: zipfile.ZipFile, member: str) -> bytes:
    try:
        with archive.open(member) as handle:
            return handle.read(_SNIFF_MEMBER_BYTES)
    except (KeyError, zipfile.BadZipFile, OSError, ValueError, NotImplementedError, RuntimeError):
        # RuntimeError: an encrypted member; NotImplementedError: an unknown compression method.
        return b""


def _sniff_ole2(data: bytes, name: str, suffix: str) -> Kind:
    if _OLE2_ENCRYPTED_STREAM in data:
        raise EncryptedDocumentError(
            "this Word file is password-protected: remove the password (File > Info > Protect Document) "
            "and upload again",
            name=name,
        )
    # The OLE2 container also holds .xls, .ppt and Outlook .msg files; only the name tells them apart cheaply.
    if suffix in {".xls", ".ppt", ".msg", ".pps"}:
        raise UnsupportedFormatError(
            f"this file is an old Office {suffix} file, not a policy document: {_SAVE_AS}", name=name
        )
    return "legacy"
