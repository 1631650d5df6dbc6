"""Safe unpacking of a zipped submission into a work folder.

A provider's zip is untrusted input. Unpacking it must never write outside the work folder, never follow or
create links, never fill the disk, and never recurse into archives inside the archive. The rules:

- a member whose name is absolute, carries a drive letter, or climbs out with ``..`` makes the whole archive
  refused (``HostileDocumentError``): such a name has no innocent reason to exist;
- a symlink (or any other non-regular file, read from the Unix mode bits in ``external_attr``) refuses the
  whole archive for the same reason;
- more members than ``Settings.max_zip_members``, or more than ``Settings.max_uncompressed_mb`` once expanded
  (counted while writing, because the sizes declared in the zip directory can lie), refuses the archive
  (``DocumentTooLargeError``) and removes what was written;
- a nested archive (.zip, .7z, .rar, .tar, .gz, ... by name or by content) is not unpacked: it is listed in
  ``UnpackResult.refused`` with a message, and the other members go on to be screened;
- directory entries, macOS resource forks (``__MACOSX/``, ``._*``) and hidden files are skipped.

The archive itself is only read; the work folder is created fresh by the caller's choice of ``dest``.
"""

from __future__ import annotations

import contextlib
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pipeline.config import Settings
from pipeline.errors import (
    CorruptDocumentError,
    DocumentError,
    DocumentTooLargeError,
    EmptyDocumentError,
    EncryptedDocumentError,
    HostileDocumentError,
)

ARCHIVE_SUFFIXES = (
    ".zip",
    ".7z",
    ".rar",
    ".tar",
    ".gz",
    ".tgz",
    ".bz2",
    ".tbz2",
    ".xz",
    ".txz",
    ".zst",
    ".cab",
    ".arj",
    ".lz",
    ".lzma",
)
# Magic numbers of archive formats. Zip's own ``PK\x03\x04`` is absent on purpose: DOCX files are zips.
ARCHIVE_MAGIC = (
    b"7z\xbc\xaf\x27\x1c",  # 7-Zip
    b"Rar!\x1a\x07",  # RAR 4 and 5
    b"\x1f\x8b",  # gzip
    b"BZh",  # bzip2
    b"\xfd7zXZ\x00",  # xz
    b"\x28\xb5\x2f\xfd",  # zstd
    b"MSCF",  # Windows cabinet
)
SKIPPED_PREFIXES = ("__MACOSX/",)
CHUNK = 1 << 16


@dataclass(frozen=True)
class RefusedMember:
    """A member that was deliberately not unpacked, with the reason."""

    name: str
    code: str
    message: str


@dataclass
class UnpackResult:
    """Where the archive went and what came out of it."""

    root: Path
    files: list[Path] = field(default_factory=list)
    refused: list[RefusedMember] = field(default_factory=list)


def is_zip_submission(path: Path) -> bool:
    """True for a file named ``.zip``: it is unpacked (a damaged one then fails with a clear message).

    The name decides, except for an Office document renamed ``.zip`` (a DOCX is a zip too): that must reach the
    document reader whole, which reads it and warns about the name, rather than have its XML parts screened.
    """
    return path.is_file() and path.suffix.lower() == ".zip" and not _is_office_package(path)


def _is_office_package(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return "[Content_Types].xml" in zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def safe_member_path(name: str) -> PurePosixPath:
    """The member's relative path, or ``HostileDocumentError`` if it could land outside the work folder."""
    # Zips written on Windows sometimes use backslashes; treat them as separators so "..\\x" is caught too.
    cleaned = name.replace("\\", "/")
    if cleaned.startswith("/") or (len(cleaned) > 1 and cleaned[1] == ":") or "\x00" in cleaned:
        raise HostileDocumentError(f"the archive member {name!r} has an absolute path; the archive was refused")
    parts = [p for p in cleaned.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise HostileDocumentError(f"the archive member {name!r} points outside the archive; the archive was refused")
    return PurePosixPath(*parts) if parts else PurePosixPath()


def _is_link_or_special(info: zipfile.ZipInfo) -> bool:
    kind = stat.S_IFMT(info.external_attr >> 16)
    if not kind:  # no file-type bits (written without Unix modes, or permissions only): a plain file or folder
        return False
    return not (stat.S_ISREG(kind) or stat.S_ISDIR(kind))


def _looks_like_archive(name: str, head: bytes) -> bool:
    lowered = name.lower()
    if lowered.endswith(ARCHIVE_SUFFIXES):
        return True
    if len(head) > 262 and head[257:262] == b"ustar":
        return True
    return any(head.startswith(m) for m in ARCHIVE_MAGIC)


def unpack_zip(archive: Path, dest: Path, settings: Settings) -> UnpackResult:
    """Unpack ``archive`` into ``dest`` (created; must not already hold files) under the limits in ``settings``.

    Raises a :class:`~pipeline.errors.DocumentError` subclass naming the archive when the whole archive is refused;
    ``dest`` is then left empty.
    """
    name = archive.name
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CorruptDocumentError("the zip file is damaged or incomplete; please send it again", name=name) from exc
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise FileExistsError(f"work folder {dest} is not empty")
    try:
        with zf:
            result = _unpack(zf, archive, dest, settings)
        if not result.files and not result.refused:
            raise EmptyDocumentError("the zip holds no files to screen")
        return result
    except DocumentError as exc:
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True, exist_ok=True)
        if exc.name is None:
            exc.name = name
        raise
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile, NotImplementedError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True, exist_ok=True)
        raise CorruptDocumentError(
            f"the zip file could not be unpacked ({type(exc).__name__}); please send it again", name=name
        ) from exc


def _unpack(zf: zipfile.ZipFile, archive: Path, dest: Path, settings: Settings) -> UnpackResult:
    infos = zf.infolist()
    if len(infos) > settings.max_zip_members:
        raise DocumentTooLargeError(
            f"the zip holds {len(infos)} entries, more than the limit of {settings.max_zip_members}"
        )
    limit = int(settings.max_uncompressed_mb * 1024 * 1024)
    # Validate every name and type before writing anything: a hostile member refuses the whole archive.
    planned: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    for info in infos:
        rel = safe_member_path(info.filename)
        if _is_link_or_special(info):
            raise HostileDocumentError(
                f"the archive member {info.filename!r} is a link or special file; the archive was refused"
            )
        if info.is_dir() or not rel.parts:
            continue
        if info.filename.startswith(SKIPPED_PREFIXES) or any(p.startswith(".") for p in rel.parts):
            continue
        planned.append((info, rel))
    declared = sum(info.file_size for info, _ in planned)
    if declared > limit:
        raise DocumentTooLargeError(
            f"the zip expands to {declared / 1e6:.0f} MB, more than the limit of {settings.max_uncompressed_mb:g} MB"
        )
    result = UnpackResult(root=dest)
    root = dest.resolve()
    written = 0
    seen: set[str] = set()
    for info, rel in planned:
        key = str(rel).casefold()  # case-insensitive file systems would merge these silently
        if key in seen:
            result.refused.append(
                RefusedMember(str(rel), "duplicate", "the archive holds this file name twice; only the first was kept")
            )
            continue
        seen.add(key)
        if info.flag_bits & 0x1:
            err = EncryptedDocumentError("the file is password-protected inside the zip")
            result.refused.append(RefusedMember(str(rel), err.code, str(err)))
            continue
        target = dest.joinpath(*rel.parts)
        # Defence in depth: the checked name must still resolve inside the work folder.
        if not target.resolve().is_relative_to(root):
            raise HostileDocumentError(f"the archive member {info.filename!r} points outside the archive")
        with zf.open(info) as src:
            head = src.read(512)
            if _looks_like_archive(rel.name, head):
                result.refused.append(
                    RefusedMember(
                        str(rel),
                        "nested_archive",
                        "an archive inside the zip is not opened: unpack it and send its files directly",
                    )
                )
                continue
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "xb") as out:  # "x": never overwrite something already there
                    chunk = head
                    while chunk:
                        written += len(chunk)
                        if written > limit:
                            raise DocumentTooLargeError(
                                f"the zip expands to more than the limit of {settings.max_uncompressed_mb:g} MB"
                            )
                        out.write(chunk)
                        chunk = src.read(CHUNK)
            except OSError as exc:  # e.g. a member name too long for this file system: that member only
                with contextlib.suppress(OSError):
                    target.unlink()  # whatever part was written
                reason = exc.strerror or type(exc).__name__
                result.refused.append(RefusedMember(str(rel), "unreadable", f"could not be unpacked ({reason})"))
                continue
        result.files.append(target)
    return result
