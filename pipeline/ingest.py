"""Stages 1-2 together: a file on disk becomes an extracted document and its passages, or a typed error."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pipeline.config import Settings
from pipeline.document import ExtractedDocument, Passage
from pipeline.errors import CorruptDocumentError, DocumentError, DocumentTooLargeError
from pipeline.extract import extract
from pipeline.inputs import readable_name
from pipeline.segment import segment


@dataclass
class IngestedDocument:
    """A document ready for matching."""

    document: ExtractedDocument
    passages: list[Passage]


@dataclass
class FailedDocument:
    """A file that could not be read, with the reason in words a provider can act on."""

    name: str
    path: str
    code: str
    message: str


def ingest(path: Path, settings: Settings, *, today: date | None = None) -> IngestedDocument | FailedDocument:
    """Extract and segment one file. Never raises for a bad file: the failure is returned instead."""
    try:
        document = extract(path, settings, today=today)
        words = len(document.text.split())
        if words > settings.max_document_words:  # refused before segmentation, the costly part
            raise DocumentTooLargeError(
                f"the document holds {words:,} words, over the limit of {settings.max_document_words:,}: split it "
                "into separate policies or raise QPM_MAX_DOCUMENT_WORDS",
                name=document.name,
            )
        return IngestedDocument(document=document, passages=segment(document, settings))
    except DocumentError as exc:
        return FailedDocument(name=readable_name(path), path=str(path), code=exc.code, message=_plain(exc))
    except (MemoryError, RecursionError, ValueError, OSError) as exc:  # defensive: a file must not crash a batch
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        message = f"could not be read ({reason})"
        return FailedDocument(readable_name(path), str(path), CorruptDocumentError.code, message)


def _plain(exc: DocumentError) -> str:
    return exc.args[0] if exc.args else str(exc)
