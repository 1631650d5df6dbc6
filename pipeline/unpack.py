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
- two or more *different* members of the same name (compared as a case-insensitive disk would) are all
  refused (code ``duplicate``): nobody can tell which is the provider's policy, and zip tools disagree on which
  one a user sees when opening the zip. Identical copies of one member are unpacked once, the others listed in
  ``UnpackResult.skipped`` (code ``same_content``): nothing is lost;
- a hidden member (a path component starting with one dot, see :func:`pipeline.inputs.is_hidden`) is not
  unpacked but listed in ``UnpackResult.refused`` (code ``hidden``, the top-most hidden folder once);
- directory entries and system files (``__MACOSX/``, ``._*``, ``.DS_Store``, ``Thumbs.db``, ``~$*``: see
  :func:`pipeline.inputs.is_system_file`) are skipped without a word: they are never a policy.

Every member that holds a file is thus unpacked, refused or skipped with a reason, or is system clutter; none is
dropped silently. A name that only contains dots (``..txt``, ``policy..docx``) is an ordinary name: only a
whole ``..`` path component climbs out.

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
CHUNK = 1 << 16
DUPLICATE_CODE = "duplicate"
SAME_CONTENT_CODE = "same_content"


@dataclass(frozen=True)
class RefusedMember:
    """A member that was deliberately not unpacked, with the reason."""

    name: str
    code: str
    message: str


@dataclass
class UnpackResult:
    """Where the archive went and what came out of it.

    ``refused`` members were not screened and the provider should know (they are reported as errors);
    ``skipped`` ones are identical copies of a member that was unpacked (nothing is lost).
    """

    root: Path
    files: list[Path] = field(default_factory=list)
    refused: list[RefusedMember] = field(default_factory=list)
    skipped: list[RefusedMember] = field(default_factory=list)


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


def _hidden_or_system(rel: PurePosixPath) -> tuple[str, PurePosixPath] | None:
    """``("system", _)`` or ``("hidden", top-most hidden path)`` when a component of ``rel`` makes it so."""
    # Imported here: pipeline.inputs imports this module, and the naming rules belong with the other input rules.
    from pipeline.inputs import is_hidden, is_system_file

    for i, part in enumerate(rel.parts):
        if is_system_file(part):
            return "system", rel
        if is_hidden(part):
            return "hidden", PurePosixPath(*rel.parts[: i + 1])
    return None


def _readable(rel: PurePosixPath) -> str:
    # Zip names are decoded by zipfile (UTF-8 or cp437) and never carry undecodable bytes, but stay safe.
    from pipeline.inputs import readable_text  # imported here: pipeline.inputs imports this module

    return readable_text(rel.as_posix())


def _plan(infos: list[zipfile.ZipInfo], result: UnpackResult) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """The members to unpack; hidden members and conflicting duplicates go to ``result`` with their reason.

    Raises ``HostileDocumentError`` on the first name or type that refuses the whole archive: every member is
    checked before anything is written.
    """
    from pipeline.inputs import HIDDEN_CODE, hidden_message

    candidates: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    hidden: dict[PurePosixPath, bool] = {}  # top-most hidden entry -> is a folder
    for info in infos:
        rel = safe_member_path(info.filename)
        if _is_link_or_special(info):
            raise HostileDocumentError(
                f"the archive member {info.filename!r} is a link or special file; the archive was refused"
            )
        if info.is_dir() or not rel.parts:
            continue  # a folder entry holds nothing; the files in it are members of their own
        kind = _hidden_or_system(rel)
        if kind is not None:
            if kind[0] == "hidden":
                top = kind[1]
                hidden[top] = hidden.get(top, False) or top != rel
            continue
        candidates.append((info, rel))
    for top, is_folder in hidden.items():
        name = _readable(top) + ("/" if is_folder else "")
        result.refused.append(RefusedMember(name, HIDDEN_CODE, hidden_message(is_folder)))

    # Group by name as a case-insensitive file system would see it ("A.txt" and "a.txt" are one file there).
    groups: dict[str, list[tuple[zipfile.ZipInfo, PurePosixPath]]] = {}
    for info, rel in candidates:
        groups.setdefault(str(rel).casefold(), []).append((info, rel))
    planned: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    for group in groups.values():
        first_info, first_rel = group[0]
        if len(group) == 1:
            planned.append(group[0])
            continue
        # The directory's CRC and size: a member that lies about them is not read, but the kept one is checked
        # against its CRC while it is written, and a liar can only hide its own sender's file.
        if all((i.CRC, i.file_size) == (first_info.CRC, first_info.file_size) for i, _ in group):
            planned.append(group[0])
            times = "twice" if len(group) == 2 else f"{len(group)} times"
            for _, rel in group[1:]:
                result.skipped.append(
                    RefusedMember(
                        _readable(rel),
                        SAME_CONTENT_CODE,
                        f"the zip holds this file {times} with the same content; screened once",
                    )
                )
            continue
        spellings = sorted({_readable(rel) for _, rel in group})
        also = f" (spelt {', '.join(repr(n) for n in spellings)}: one name on Windows and macOS)"
        result.refused.append(
            RefusedMember(
                _readable(first_rel),
                DUPLICATE_CODE,
                f"the zip holds {len(group)} different files named {_readable(first_rel)!r}"
                + (also if len(spellings) > 1 else "")
                + "; none was screened, as nobody can tell which is the policy: send the zip again with only "
                "the right one",
            )
        )
    return planned


def _unpack(zf: zipfile.ZipFile, archive: Path, dest: Path, settings: Settings) -> UnpackResult:
    infos = zf.infolist()
    if len(infos) > settings.max_zip_members:
        raise DocumentTooLargeError(
            f"the zip holds {len(infos)} entries, more than the limit of {settings.max_zip_members}"
        )
    limit = int(settings.max_uncompressed_mb * 1024 * 1024)
    result = UnpackResult(root=dest)
    # Validate every name and type before writing anything: a hostile member refuses the whole archive.
    planned = _plan(infos, result)
    declared = sum(info.file_size for info, _ in planned)
    if declared > limit:
        raise DocumentTooLargeError(
            f"the zip expands to {declared / 1e6:.0f} MB, more than the limit of {settings.max_uncompressed_mb:g} MB"
        )
    root = dest.resolve()
    written = 0
    for info, rel in planned:
        if info.flag_bits & 0x1:
            err = EncryptedDocumentError("the file is password-protected inside the zip")
            result.refused.append(RefusedMember(_readable(rel), err.code, str(err)))
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
                        _readable(rel),
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
                result.refused.append(RefusedMember(_readable(rel), "unreadable", f"could not be unpacked ({reason})"))
                continue
        result.files.append(target)
    return result
