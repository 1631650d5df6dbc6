"""Which files and submissions the paths a user names hold."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from pipeline.inputs import BatchItem, batch_entries, collect_files, hidden_entries, readable_name


def test_collect_files_walks_folders_and_skips_hidden_and_system_files(tmp_path: Path) -> None:
    for name in ("b.pdf", "a/c.docx", "a/.git/x.txt", ".hidden.txt", "Thumbs.db", "a/desktop.ini"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert collect_files([tmp_path]) == [tmp_path / "a" / "c.docx", tmp_path / "b.pdf"]
    assert collect_files([tmp_path / "Thumbs.db"]) == [tmp_path / "Thumbs.db"]  # a file named is taken as named


def test_batch_entries_are_folders_and_zips_with_unique_names(tmp_path: Path) -> None:
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "policy.pdf").write_text("x")
    with zipfile.ZipFile(tmp_path / "Acme.zip", "w") as archive:
        archive.writestr("policy.txt", "x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".DS_Store").write_text("x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".cache").mkdir()
    entries = batch_entries(tmp_path)
    assert [(name, path.name if path else None) for name, path, _, _ in entries] == [
        (".cache", None),  # hidden: not screened, but reported (below)
        ("acme", "acme"),
        ("Acme-2", "Acme.zip"),  # the folder and the zip must not share an output folder
        ("empty", None),
        ("notes", None),
    ]
    problems = {item.name: (item.code, item.problem) for item in entries if item.problem}
    assert problems == {
        ".cache": (
            "hidden",
            ".cache is hidden (its name starts with '.') and was not screened: "
            "if it is a provider's submission, rename it without the dot",
        ),
        "empty": ("not_a_submission", "empty holds no files to screen"),
        "notes": ("not_a_submission", "notes.txt is not a submission: put each provider's files in a folder or zip"),
    }


def test_hidden_batch_entries_are_reported_and_system_files_ignored(tmp_path: Path) -> None:
    # A provider folder named ".provider" used to vanish from the batch without a word.
    for name in (".provider/policy.txt", ".git/config", "acme/policy.txt", "__MACOSX/._acme.zip"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    for name in (".DS_Store", "._acme", "Thumbs.db", "desktop.ini", "~$policy.docx", ".hidden.zip"):
        (tmp_path / name).write_text("x")
    with zipfile.ZipFile(tmp_path / ".hidden.zip", "w") as archive:
        archive.writestr("policy.txt", "x")
    entries = batch_entries(tmp_path)
    assert [(item.name, item.code) for item in entries] == [
        (".git", "hidden"),
        (".hidden.zip", "hidden"),
        (".provider", "hidden"),
        ("acme", None),
    ]
    assert all(item.path is None and "rename it without the dot" in (item.problem or "") for item in entries[:3])
    assert entries[3] == BatchItem("acme", tmp_path / "acme")


def test_names_starting_with_two_dots_are_ordinary_and_hidden_entries_are_listed(tmp_path: Path) -> None:
    names = ("..txt", "a/policy..docx", "a/.draft.docx", "b/.git/x/config", ".notes.txt", "c/~$lock.docx")
    for name in (*names, "c/._fork.docx", "c/.DS_Store"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    # "..txt" used to be skipped as a hidden file; only names with one leading dot are hidden.
    assert collect_files([tmp_path]) == [tmp_path / "..txt", tmp_path / "a" / "policy..docx"]
    # Top-most hidden entries once each (".git/" and not every file in it); system files are not listed.
    assert hidden_entries([tmp_path]) == [
        (".notes.txt", tmp_path / ".notes.txt"),
        ("a/.draft.docx", tmp_path / "a" / ".draft.docx"),
        ("b/.git/", tmp_path / "b" / ".git"),
    ]
    assert hidden_entries([tmp_path / ".notes.txt"]) == []  # a file named is taken as named


def test_pipes_and_broken_links_in_a_folder_are_kept_for_reading_to_report(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.txt")
    (tmp_path / "gone.pdf").symlink_to(tmp_path / "nowhere.pdf")
    (tmp_path / "~$policy.docx").write_bytes(b"lock")  # Word's lock file beside an open document: skipped
    (tmp_path / "sub.pdf").mkdir()  # a folder, whatever its name, is walked, not read
    assert collect_files([tmp_path]) == [tmp_path / "gone.pdf", tmp_path / "pipe.txt"]


def test_readable_name_replaces_bytes_that_are_not_utf8() -> None:
    assert readable_name(Path(os.fsdecode(b"caf\xe9.pdf"))) == "caf\ufffd.pdf"
    assert readable_name(Path("Café policy.pdf")) == "Café policy.pdf"
