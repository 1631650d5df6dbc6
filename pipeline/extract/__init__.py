"""Stage 1: turn one policy file into an :class:`~pipeline.document.ExtractedDocument`, or a typed error.

The file's content decides how it is read (see :mod:`pipeline.extract.detect`); its name only distinguishes
text from Markdown and triggers a warning when it disagrees with the content. The input file is only ever read.
Every failure is a :class:`~pipeline.errors.DocumentError` carrying the file name and a message the provider can
act on: a reader that crashes on a malformed file yields a ``CorruptDocumentError``, never a traceback.
"""

from __future__ import annotations

import hashlib
import stat
from datetime import date
from pathlib import Path

from pipeline.config import Settings
from pipeline.document import ExtractedDocument, SourceFormat
from pipeline.errors import CorruptDocumentError, DocumentError, DocumentTooLargeError, UnsupportedFormatError
from pipeline.extract.base import ReaderOutput
from pipeline.extract.convert import convert_legacy
from pipeline.extract.detect import EXPECTED_SUFFIXES, Kind, legacy_suffix, sniff, suffix_of
from pipeline.extract.docx import read_docx
from pipeline.extract.metadata import analyse
from pipeline.extract.pdf import read_pdf
from pipeline.extract.text import read_text
from pipeline.inputs import readable_name

__all__ = ["extract"]

_MB = 1024 * 1024
_FORMAT_NAMES = {
    "pdf": "a PDF",
    "docx": "a Word document",
    "docm": "a Word document with macros",
    "text": "plain text",
    "markdown": "Markdown text",
    "legacy": "an older word-processor file",
}


def extract(path: Path, settings: Settings | None = None, *, today: date | None = None) -> ExtractedDocument:
    """Read one file into an ExtractedDocument.

    Args:
        path: the file; it is opened read-only and never modified.
        settings: limits and timeouts (defaults from the environment when None).
        today: the date "out of date" is judged against (defaults to the real today).

    Raises:
        DocumentError: a subclass saying why the file cannot be screened; ``.name`` is the file name.
    """
    settings = settings or Settings.from_env()
    name = readable_name(path)
    try:
        data = _read_bytes(path, settings)
        kind = sniff(data, name)
    except DocumentError as exc:
        exc.name = name
        raise
    try:
        output, source_format = _dispatch(data, kind, settings)
        meta = analyse(output, today=today)
    except DocumentError as exc:
        exc.name = name
        raise
    except Exception as exc:  # a reader choking on a malformed file must not surface as a traceback
        raise CorruptDocumentError(f"could not be read: {_short_reason(exc)}", name=name) from exc

    # The metadata step may or may not copy what the reader found; the reader's facts are the fallback.
    if not meta.headers and output.headers:
        meta.headers = list(output.headers)
    if not meta.title and output.title_hint:
        meta.title = output.title_hint

    warnings = list(output.warnings)
    suffix = suffix_of(name)
    if suffix not in EXPECTED_SUFFIXES[kind]:
        shown = suffix or "no extension"
        warnings.insert(0, f"the file is named {shown} but holds {_FORMAT_NAMES[kind]}: it was screened as such")

    digest = hashlib.sha256(data).hexdigest()
    return ExtractedDocument(
        doc_id=digest[:16],
        name=name,
        path=str(path),
        sha256=digest,
        source_format=source_format,
        text=output.text,
        blocks=output.blocks,
        pages=output.pages,
        page_starts=output.page_starts,
        spans=output.spans,
        metadata=meta,
        warnings=warnings,
    )


def _read_bytes(path: Path, settings: Settings) -> bytes:
    limit = int(settings.max_file_mb * _MB)
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError
        if not stat.S_ISREG(info.st_mode):
            # A pipe, socket or device never ends, or blocks until someone writes to it: never open one.
            raise UnsupportedFormatError("could not be opened: this is a pipe or device, not a regular file")
        size = info.st_size
        if size > limit:
            raise DocumentTooLargeError(_too_large(size, settings))
        with path.open("rb") as handle:
            # Read one byte past the limit so a file that grew since stat() is still caught.
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise DocumentError("could not be opened: the file does not exist") from None
    except IsADirectoryError:
        raise DocumentError("could not be opened: this is a folder, not a file") from None
    except PermissionError:
        raise DocumentError("could not be opened: permission denied") from None
    if len(data) > limit:
        raise DocumentTooLargeError(_too_large(len(data), settings))
    return data


def _too_large(size: int, settings: Settings) -> str:
    return (
        f"the file is {size / _MB:.1f} MB, over the limit of {settings.max_file_mb:g} MB: compress its images, "
        "split it into separate policies, or raise QPM_MAX_FILE_MB"
    )


def _dispatch(data: bytes, kind: Kind, settings: Settings) -> tuple[ReaderOutput, SourceFormat]:
    if kind == "pdf":
        return read_pdf(data, settings), "pdf"
    if kind == "legacy":
        data = convert_legacy(data, legacy_suffix(data), settings)
    if kind in ("docx", "docm", "legacy"):
        return read_docx(data, settings, macro_enabled=kind == "docm"), "docx"
    markdown = kind == "markdown"
    return read_text(data, settings, markdown=markdown), "markdown" if markdown else "text"


def _short_reason(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    if len(message) > 120:
        message = message[:117] + "..."
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
