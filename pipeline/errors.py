"""Typed errors. Each carries a message a provider or an assessor can act on.

A :class:`DocumentError` concerns one file: the caller records it against that file and goes on with the
others. Anything else is a bug or a configuration problem.
"""

from __future__ import annotations


class QPMError(Exception):
    """Base class for every error the tool raises on purpose."""


class ConfigError(QPMError):
    """A setting, path or catalogue is wrong; the message says which and how to fix it."""


class ModelUnavailableError(ConfigError):
    """The bundled embedding model or a trained artifact cannot be found."""


class CatalogueError(ConfigError):
    """The indicator catalogue is invalid (duplicate id, missing field, unknown area...)."""


class DocumentError(QPMError):
    """A document could not be read. ``code`` is a short stable identifier for reports and tests."""

    code = "unreadable"

    def __init__(self, message: str, *, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name

    def __str__(self) -> str:
        base = super().__str__()
        return f"{self.name}: {base}" if self.name else base


class EmptyDocumentError(DocumentError):
    """The file is empty or holds only whitespace."""

    code = "empty"


class UnsupportedFormatError(DocumentError):
    """The content is not a format the tool reads (or it is disguised as one)."""

    code = "unsupported_format"


class CorruptDocumentError(DocumentError):
    """The file claims a format but is damaged or truncated."""

    code = "corrupt"


class EncryptedDocumentError(DocumentError):
    """The file needs a password."""

    code = "encrypted"


class ScannedDocumentError(DocumentError):
    """A PDF with no text layer (a scan) and no OCR available."""

    code = "scanned"


class DocumentTooLargeError(DocumentError):
    """The file is over a configured size or page limit, or expands beyond one (zip bomb)."""

    code = "too_large"


class HostileDocumentError(DocumentError):
    """The file contains a construct used in attacks (XML entity expansion, path escapes...)."""

    code = "hostile"
