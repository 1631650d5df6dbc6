"""Which files and submissions the paths a user names hold (before anything is read).

Kept apart from ``pipeline.ingest`` so the command line can check its inputs without importing the readers and
spaCy, which take seconds to load.

Two kinds of name are not screened, in folders, in zips and in a batch folder alike:

- **system files** (:func:`is_system_file`): what operating systems and Office leave beside documents
  (``.DS_Store``, macOS ``._*`` resource forks and ``__MACOSX/``, ``Thumbs.db``, ``desktop.ini``, Word's lock
  files ``~$*``). They are never a policy, so they are ignored without a word;
- **hidden entries** (:func:`is_hidden`): any other name starting with one dot (``.git``, ``.provider``,
  ``.policy.docx``). They are not screened either, but each is reported (code ``hidden``), so a provider's
  folder or policy named that way is never lost silently. Inside a folder or zip only the top-most hidden
  entry is named (``.git/`` once, not every file in it).

A name that merely starts with two dots (``..txt``, ``...notes.docx``) is an ordinary file name: the dot-file
convention is about names like ``.git``; ``..`` as a whole path component is a different matter, refused by
``pipeline.unpack`` as path traversal.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from pipeline.unpack import is_zip_submission

# Lower-cased. The macOS volume folders appear at the top of a USB stick a Mac has written to.
SYSTEM_NAMES = frozenset(
    {
        "thumbs.db",
        "desktop.ini",
        ".ds_store",
        "__macosx",
        ".spotlight-v100",
        ".fseventsd",
        ".trashes",
        ".temporaryitems",
    }
)
# Word and Excel write "~$name.docx" beside a file that is open: a lock holding the user's name, not a document.
OFFICE_LOCK_PREFIX = "~$"
# macOS writes "._name" beside each file copied to a disk without its metadata (or into a zip): never a document.
APPLE_DOUBLE_PREFIX = "._"
HIDDEN_CODE = "hidden"
NOT_A_SUBMISSION = "not_a_submission"


def is_system_file(name: str) -> bool:
    """Whether a file or folder of this name is operating-system or Office clutter, ignored without a word."""
    return name.startswith((OFFICE_LOCK_PREFIX, APPLE_DOUBLE_PREFIX)) or name.lower() in SYSTEM_NAMES


def is_hidden(name: str) -> bool:
    """Whether this name marks a hidden file or folder: one leading dot (``.git``), not two (``..txt``)."""
    return name.startswith(".") and not name.startswith("..")


def is_ignored(name: str) -> bool:
    """Whether a file of this name is never screened: system files, Office lock files, hidden names."""
    return is_system_file(name) or is_hidden(name)


def hidden_message(is_folder: bool) -> str:
    """Why a hidden file or folder of a submission was not screened, and what to do if it matters."""
    if is_folder:
        return "hidden folder (its name starts with '.'), not screened: if it holds policies, rename it without the dot"
    return "hidden file (its name starts with '.'), not screened: if it is a policy, rename it without the dot"


def _walk(folder: Path) -> tuple[list[Path], list[Path]]:
    """The files under ``folder`` to screen, and the top-most hidden entries under it, both sorted."""
    files: list[Path] = []
    hidden: list[Path] = []
    for path in sorted(folder.rglob("*")):
        parts = path.relative_to(folder).parts
        first = next((i for i, part in enumerate(parts) if is_ignored(part)), None)
        if first is None:
            if not path.is_dir():
                files.append(path)
        elif first == len(parts) - 1 and not is_system_file(parts[first]):
            hidden.append(path)  # the hidden entry itself; what is below it is not listed again
    return files, hidden


def walk_inputs(paths: Iterable[Path]) -> tuple[list[Path], list[tuple[str, Path]]]:
    """:func:`collect_files` and :func:`hidden_entries` together, each folder walked once."""
    files: list[Path] = []
    hidden: list[tuple[str, Path]] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        found, hidden_here = _walk(path)
        files.extend(found)
        for entry in hidden_here:
            rel = readable_text(entry.relative_to(path).as_posix())
            hidden.append((rel + "/" if entry.is_dir() else rel, entry))
    return files, hidden


def collect_files(paths: Iterable[Path]) -> list[Path]:
    """The files named, and the files inside folders named (recursively), sorted; hidden and system files are
    skipped (see :func:`hidden_entries` for the hidden ones, which are reported).

    Inside folders every entry that is not a folder counts, pipes and broken links included: reading each then
    says what is wrong with it, where skipping it would hide it from the user.
    """
    return walk_inputs(paths)[0]


def hidden_entries(paths: Iterable[Path]) -> list[tuple[str, Path]]:
    """``(name, path)`` of each top-most hidden entry inside the folders named, which :func:`collect_files` skips.

    ``name`` is the entry's path relative to the folder named, with a trailing ``/`` for a folder
    (``drafts/.old/``). Files named directly are taken as named, hidden or not, so they never appear here.
    """
    return walk_inputs(paths)[1]


def readable_text(text: str) -> str:
    """``text`` (a name from the file system) with bytes that are not UTF-8 shown as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def readable_name(path: Path) -> str:
    """``path``'s file name as text that can be written anywhere (JSON, CSV, a web page).

    A name that is not valid UTF-8 on disk (written by an old Windows zip tool, say) comes back from the file
    system with undecodable bytes that no UTF-8 writer accepts: they are shown as U+FFFD instead.
    """
    return readable_text(path.name)


class BatchItem(NamedTuple):
    """One entry of a batch folder: a submission to screen (``path``), or why it is not one (``problem``)."""

    name: str  # unique output folder name
    path: Path | None  # None when the entry is not screened
    problem: str | None = None
    code: str | None = None  # ``not_a_submission`` or ``hidden`` with a problem


def batch_entries(batch_dir: Path) -> list[BatchItem]:
    """One :class:`BatchItem` for each entry of a batch folder: sub-folders and zips are submissions.

    Names are unique output folder names. A loose file that is not a zip, or a folder without files, is reported
    as a problem (code ``not_a_submission``); so is a hidden entry (code ``hidden``): a provider's folder named
    ``.provider`` must not vanish from the batch without a word. System files (:func:`is_system_file`) are left
    out.
    """
    out: list[BatchItem] = []
    used: set[str] = set()
    for entry in sorted(batch_dir.iterdir(), key=lambda p: p.name.casefold()):
        if is_system_file(entry.name):
            continue
        # A hidden entry keeps its whole name (".acme.zip"): it is only ever shown, never an output folder.
        base = entry.name if entry.is_dir() or is_hidden(entry.name) else entry.stem
        name = base
        n = 2
        while name.casefold() in used:  # "acme/" and "acme.zip" must not share an output folder
            name = f"{base}-{n}"
            n += 1
        used.add(name.casefold())
        shown = readable_name(entry)
        if is_hidden(entry.name):
            problem = (
                f"{shown} is hidden (its name starts with '.') and was not screened: "
                "if it is a provider's submission, rename it without the dot"
            )
            out.append(BatchItem(name, None, problem, HIDDEN_CODE))
        elif entry.is_dir() and not collect_files([entry]):
            out.append(BatchItem(name, None, f"{shown} holds no files to screen", NOT_A_SUBMISSION))
        elif entry.is_dir() or is_zip_submission(entry):
            out.append(BatchItem(name, entry))
        else:
            problem = f"{shown} is not a submission: put each provider's files in a folder or zip"
            out.append(BatchItem(name, None, problem, NOT_A_SUBMISSION))
    return out
