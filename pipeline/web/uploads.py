"""Receive a multipart upload straight to a folder, enforcing the limits while the bytes arrive.

Starlette's ``request.form()`` would spool the whole body before any limit could be checked. Here the body is
read chunk by chunk from ``request.stream()`` and fed to python-multipart's streaming parser; every byte is
counted as it arrives, so an oversize or over-count upload is refused (HTTP 413) as soon as it crosses a limit,
without reading the rest. A declared ``Content-Length`` over the limit is refused before the first byte is read.

File contents go only to the request's own folder (never memory in full, never logs). Names are made safe by
:func:`pipeline.web.security.safe_filename`; the safe name is the one shown to the user and used on disk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from io import BufferedWriter
from pathlib import Path

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from pipeline.config import Settings
from pipeline.web.security import safe_filename, unique_name

_MB = 1024 * 1024
#: Room for multipart framing (boundaries, part headers) on top of the files' own bytes.
PER_PART_OVERHEAD = 2048
MAX_FIELD_BYTES = 64 * 1024  # a non-file form field (none is expected) may not be large


@dataclass(frozen=True)
class UploadLimits:
    """How much one upload may carry."""

    max_file_bytes: int
    max_files: int
    max_total_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadLimits:
        """Limits from ``upload_max_file_mb``, ``upload_max_files`` and ``upload_max_total_mb``."""
        return cls(
            max_file_bytes=int(settings.upload_max_file_mb * _MB),
            max_files=settings.upload_max_files,
            max_total_bytes=int(settings.upload_max_total_mb * _MB),
        )

    @property
    def max_body_bytes(self) -> int:
        """The largest request body that can still be within the limits."""
        return self.max_total_bytes + PER_PART_OVERHEAD * (self.max_files + 2)

    def describe(self) -> str:
        """The limits in words, for the page and for error messages."""
        return (
            f"up to {self.max_files} files, each at most {self.max_file_bytes / _MB:g} MB, "
            f"{self.max_total_bytes / _MB:g} MB in total"
        )


class UploadRejected(Exception):
    """The upload as a whole cannot be accepted; ``status_code`` is the HTTP status to answer with."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass
class SavedFile:
    """One uploaded file, saved under its safe name in the request's folder."""

    name: str
    path: Path
    size: int = 0


@dataclass
class _PartState:
    headers: dict[str, str] = field(default_factory=dict)
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    file: SavedFile | None = None
    handle: BufferedWriter | None = None
    is_field: bool = False
    field_name: str = ""
    field_value: bytearray = field(default_factory=bytearray)


class _Receiver:
    """The parser's callbacks: turn parts into files in ``folder``, counting bytes against the limits."""

    def __init__(
        self,
        folder: Path,
        limits: UploadLimits,
        field_name: str,
        fields: dict[str, str] | None,
        before_first_file: Callable[[dict[str, str]], None] | None,
    ) -> None:
        self.folder = folder
        self.limits = limits
        self.field_name = field_name
        self.fields = fields if fields is not None else {}
        self.before_first_file = before_first_file
        self.files: list[SavedFile] = []
        self.taken: set[str] = set()
        self.part = _PartState()
        self.file_bytes = 0

    # -- header callbacks
    def on_part_begin(self) -> None:
        self.part = _PartState()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.part.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.part.header_value += data[start:end]

    def on_header_end(self) -> None:
        name = self.part.header_field.decode("latin-1").strip().lower()
        self.part.headers[name] = self.part.header_value.decode("utf-8", "replace")
        self.part.header_field.clear()
        self.part.header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.part.headers.get("content-disposition", ""))
        field_name = options.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = options.get(b"filename")
        if raw_filename is None:
            self.part.is_field = True  # a plain form field: kept (bounded in size) for the caller
            self.part.field_name = field_name
            return
        filename = raw_filename.decode("utf-8", "replace")
        if field_name != self.field_name or not filename:
            # Another file field, or a file input left empty (a part with no name and no bytes): dropped.
            self.part.is_field = True
            return
        if not self.files and self.before_first_file is not None:
            self.before_first_file(self.fields)  # e.g. the CSRF check, before any byte is written
        if len(self.files) >= self.limits.max_files:
            raise UploadRejected(413, f"too many files: upload at most {self.limits.max_files} at once")
        name = unique_name(safe_filename(filename), self.taken)
        saved = SavedFile(name=name, path=self.folder / name)
        # "xb": never follow or overwrite anything already there (the folder is new and ours anyway).
        self.part.handle = open(saved.path, "xb")  # noqa: SIM115 - closed in on_part_end or close()
        self.part.file = saved
        self.files.append(saved)

    # -- data callbacks
    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        size = end - start
        if self.part.is_field:
            if len(self.part.field_value) + size > MAX_FIELD_BYTES:
                raise UploadRejected(413, "a form field is too large")
            if self.part.field_name:
                self.part.field_value += data[start:end]
            return
        saved, handle = self.part.file, self.part.handle
        if saved is None or handle is None:
            return
        saved.size += size
        self.file_bytes += size
        if saved.size > self.limits.max_file_bytes:
            raise UploadRejected(
                413,
                f"{saved.name} is over the limit of {self.limits.max_file_bytes / _MB:g} MB per file: "
                "compress its images or split it into separate policies",
            )
        if self.file_bytes > self.limits.max_total_bytes:
            raise UploadRejected(
                413, f"the files together are over the limit of {self.limits.max_total_bytes / _MB:g} MB"
            )
        handle.write(data[start:end])

    def on_part_end(self) -> None:
        if self.part.is_field and self.part.field_name and len(self.fields) < 20:
            self.fields[self.part.field_name] = self.part.field_value.decode("utf-8", "replace")
        if self.part.handle is not None:
            self.part.handle.close()
            self.part.handle = None

    def close(self) -> None:
        """Close a file left open by an interrupted upload (the caller deletes the folder)."""
        if self.part.handle is not None:
            self.part.handle.close()
            self.part.handle = None


def boundary_of(content_type: str | None) -> bytes:
    """The multipart boundary of a ``Content-Type`` header; ``UploadRejected(415)`` when it is not multipart."""
    kind, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UploadRejected(415, "send the files as multipart/form-data (the form on the page does this)")
    return boundary


async def receive_files(
    chunks: AsyncIterator[bytes],
    *,
    content_type: str | None,
    content_length: str | None,
    folder: Path,
    limits: UploadLimits,
    field_name: str = "files",
    fields: dict[str, str] | None = None,
    before_first_file: Callable[[dict[str, str]], None] | None = None,
) -> list[SavedFile]:
    """Stream a multipart body into ``folder`` and return the files saved, in upload order.

    Plain form fields (small, at most 20) are put in ``fields`` when given; ``before_first_file(fields)`` runs
    just before the first file is created and may raise ``UploadRejected`` (the CSRF check of a signed-in form).

    Raises:
        UploadRejected: 413 over a limit (checked on ``Content-Length`` first, then on every chunk), 415 not
            multipart, 400 malformed body or no file at all. Bytes after the failing chunk are never read.
    """
    boundary = boundary_of(content_type)
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise UploadRejected(400, "the request's Content-Length is not a number") from None
        if declared > limits.max_body_bytes:
            raise UploadRejected(413, f"the upload is {declared / _MB:.1f} MB: {limits.describe()}")
    receiver = _Receiver(folder, limits, field_name, fields, before_first_file)
    callbacks = {
        "on_part_begin": receiver.on_part_begin,
        "on_header_field": receiver.on_header_field,
        "on_header_value": receiver.on_header_value,
        "on_header_end": receiver.on_header_end,
        "on_headers_finished": receiver.on_headers_finished,
        "on_part_data": receiver.on_part_data,
        "on_part_end": receiver.on_part_end,
    }
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    except (FormParserError, ValueError) as exc:
        raise UploadRejected(400, "the upload's multipart boundary is invalid") from exc
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            # The body as a whole (framing included) is bounded too: many tiny or empty parts are not free.
            if received > limits.max_body_bytes:
                raise UploadRejected(413, f"the upload is too large: {limits.describe()}")
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise UploadRejected(400, "the upload could not be read (malformed multipart body)") from exc
    finally:
        receiver.close()
    if not receiver.files:
        raise UploadRejected(400, "choose at least one file to check")
    return receiver.files
