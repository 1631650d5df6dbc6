"""Which files and submissions the paths a user names hold (before anything is read).

Kept apart from ``pipeline.ingest`` so the command line can check its inputs without importing the readers and
spaCy, which take seconds to load.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pipeline.unpack import is_zip_submission

IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini", ".ds_store"})
# Word and Excel write "~$name.docx" beside a file that is open: a lock holding the user's name, not a document.
OFFICE_LOCK_PREFIX = "~$"


def is_ignored(name: str) -> bool:
    """Whether a file of this name is never a policy: hidden files, system files, Office lock files."""
    return name.startswith((".", OFFICE_LOCK_PREFIX)) or name.lower() in IGNORED_NAMES


def collect_files(paths: Iterable[Path]) -> list[Path]:
    """The files named, and the files inside folders named (recursively), sorted; hidden files are skipped.

    Inside folders every entry that is not a folder counts, pipes and broken links included: reading each then
    says what is wrong with it, where skipping it would hide it from the user.
    """
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(
                p
                for p in sorted(path.rglob("*"))
                if not p.is_dir()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
                and not is_ignored(p.name)
            )
        else:
            out.append(path)
    return out


def readable_name(path: Path) -> str:
    """``path``'s file name as text that can be written anywhere (JSON, CSV, a web page).

    A name that is not valid UTF-8 on disk (written by an old Windows zip tool, say) comes back from the file
    system with undecodable bytes that no UTF-8 writer accepts: they are shown as U+FFFD instead.
    """
    return path.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def batch_entries(batch_dir: Path) -> list[tuple[str, Path | None, str | None]]:
    """``(name, path, problem)`` for each entry of a batch folder: sub-folders and zips are submissions.

    Names are unique output folder names; a loose file that is not a zip, or a folder without files, is reported
    as a problem.
    """
    out: list[tuple[str, Path | None, str | None]] = []
    used: set[str] = set()
    for entry in sorted(batch_dir.iterdir(), key=lambda p: p.name.casefold()):
        if is_ignored(entry.name):
            continue
        base = entry.name if entry.is_dir() else entry.stem
        name = base
        n = 2
        while name.casefold() in used:  # "acme/" and "acme.zip" must not share an output folder
            name = f"{base}-{n}"
            n += 1
        used.add(name.casefold())
        if entry.is_dir() and not collect_files([entry]):
            out.append((name, None, f"{entry.name} holds no files to screen"))
        elif entry.is_dir() or is_zip_submission(entry):
            out.append((name, entry, None))
        else:
            out.append((name, None, f"{entry.name} is not a submission: put each provider's files in a folder or zip"))
    return out
