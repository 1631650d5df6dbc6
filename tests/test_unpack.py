"""Safe zip unpacking: traversal, absolute paths, symlinks, nested archives, bombs and limits are refused."""

from __future__ import annotations

import dataclasses
import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.errors import CorruptDocumentError, DocumentTooLargeError, EmptyDocumentError, HostileDocumentError
from pipeline.unpack import RefusedMember, is_zip_submission, safe_member_path, unpack_zip


def make_zip(path: Path, members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env(cache_dir=tmp_path / "cache")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_unpacks_plain_members_and_leaves_the_archive_untouched(tmp_path: Path, settings: Settings) -> None:
    archive = make_zip(tmp_path / "sub.zip", {"a.txt": b"alpha", "policies/b.md": b"# beta", "__MACOSX/._a.txt": b"x"})
    before = archive.read_bytes()
    result = unpack_zip(archive, tmp_path / "work", settings)
    assert sorted(p.relative_to(tmp_path / "work").as_posix() for p in result.files) == ["a.txt", "policies/b.md"]
    assert (tmp_path / "work" / "policies" / "b.md").read_bytes() == b"# beta"
    assert result.refused == []
    assert archive.read_bytes() == before


@pytest.mark.parametrize(
    "name", ["../escape.txt", "a/../../escape.txt", "/etc/passwd-copy", "C:/windows/x.txt", "..\\..\\evil.txt"]
)
def test_member_escaping_the_work_folder_refuses_the_archive(tmp_path: Path, settings: Settings, name: str) -> None:
    archive = make_zip(tmp_path / "evil.zip", {"ok.txt": b"fine", name: b"payload"})
    with pytest.raises(HostileDocumentError) as info:
        unpack_zip(archive, tmp_path / "work", settings)
    assert info.value.name == "evil.zip"
    assert not any((tmp_path / "work").iterdir())  # nothing was left behind
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_symlink_member_refuses_the_archive(tmp_path: Path, settings: Settings) -> None:
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", b"fine")
        info = zipfile.ZipInfo("link-to-secrets")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(HostileDocumentError, match="link"):
        unpack_zip(archive, tmp_path / "work", settings)
    assert not any((tmp_path / "work").iterdir())


def test_nested_archives_are_refused_with_a_message_and_the_rest_unpacked(tmp_path: Path, settings: Settings) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("deep.txt", b"deep")
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tf:
        data = b"hello"
        ti = tarfile.TarInfo("x.txt")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    archive = make_zip(
        tmp_path / "outer.zip",
        {
            "policy.txt": b"a policy",
            "more.zip": inner.getvalue(),
            "bundle.7z": b"7z\xbc\xaf\x27\x1c rest",
            "disguised.pdf": b"Rar!\x1a\x07\x00 rar content",
            "plain.tar.gz": b"\x1f\x8b\x08 gzip",
            "renamed.bin": tar_bytes.getvalue(),
        },
    )
    result = unpack_zip(archive, tmp_path / "work", settings)
    assert [p.name for p in result.files] == ["policy.txt"]
    refused = {r.name: r for r in result.refused}
    assert set(refused) == {"more.zip", "bundle.7z", "disguised.pdf", "plain.tar.gz", "renamed.bin"}
    assert all(r.code == "nested_archive" and "unpack it" in r.message for r in refused.values())


def test_zip_bomb_is_refused_by_declared_size(tmp_path: Path, settings: Settings) -> None:
    small = dataclasses.replace(settings, max_uncompressed_mb=1.0)
    archive = make_zip(tmp_path / "bomb.zip", {"zeros.txt": b"\0" * (3 * 1024 * 1024)})
    assert archive.stat().st_size < 50_000  # highly compressed
    with pytest.raises(DocumentTooLargeError):
        unpack_zip(archive, tmp_path / "work", small)
    assert not any((tmp_path / "work").iterdir())


def test_zip_bomb_with_lying_sizes_is_stopped_while_writing(tmp_path: Path, settings: Settings) -> None:
    small = dataclasses.replace(settings, max_uncompressed_mb=1.0)
    archive = make_zip(tmp_path / "liar.zip", {"zeros.txt": b"\0" * (3 * 1024 * 1024)}, compression=zipfile.ZIP_STORED)
    # Rewrite the declared sizes in both headers to 10 bytes: only counting while writing can catch it.
    raw = bytearray(archive.read_bytes())
    real = (3 * 1024 * 1024).to_bytes(4, "little")
    raw = bytearray(raw.replace(real, (10).to_bytes(4, "little")))
    archive.write_bytes(bytes(raw))
    with pytest.raises((DocumentTooLargeError, CorruptDocumentError)):
        unpack_zip(archive, tmp_path / "work", small)
    assert snapshot(tmp_path / "work") == {}


def test_member_count_limit(tmp_path: Path, settings: Settings) -> None:
    few = dataclasses.replace(settings, max_zip_members=5)
    archive = make_zip(tmp_path / "many.zip", {f"f{i}.txt": b"x" for i in range(6)})
    with pytest.raises(DocumentTooLargeError, match="6 entries"):
        unpack_zip(archive, tmp_path / "work", few)


def test_damaged_zip_is_a_typed_error(tmp_path: Path, settings: Settings) -> None:
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"PK\x03\x04 truncated")
    assert is_zip_submission(archive)
    with pytest.raises(CorruptDocumentError, match="damaged"):
        unpack_zip(archive, tmp_path / "work", settings)


def test_encrypted_and_duplicate_members_are_listed(tmp_path: Path, settings: Settings) -> None:
    archive = make_zip(tmp_path / "d.zip", {"A.txt": b"one", "dir/x.txt": b"x", "secret.txt": b"ciphertext"})
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("a.txt", b"two")  # the same name on a case-insensitive disk
    # zipfile cannot write encrypted members: set the "encrypted" flag in secret.txt's central directory entry.
    raw = bytearray(archive.read_bytes())
    at = raw.index(b"PK\x01\x02")
    while True:
        name_len = int.from_bytes(raw[at + 28 : at + 30], "little")
        if raw[at + 46 : at + 46 + name_len] == b"secret.txt":
            raw[at + 8] |= 0x1
            break
        at = raw.index(b"PK\x01\x02", at + 4)
    archive.write_bytes(bytes(raw))
    result = unpack_zip(archive, tmp_path / "work", settings)
    codes = {r.name: r.code for r in result.refused}
    assert codes == {"A.txt": "duplicate", "secret.txt": "encrypted"}
    # Two different files that one case-insensitive disk would merge: neither is screened (which is the policy?).
    assert snapshot(tmp_path / "work") == {"dir/x.txt": b"x"}
    message = next(r.message for r in result.refused if r.code == "duplicate")
    assert "2 different files named 'A.txt'" in message and "'a.txt'" in message and "none was screened" in message


def test_work_folder_must_be_empty(tmp_path: Path, settings: Settings) -> None:
    archive = make_zip(tmp_path / "s.zip", {"a.txt": b"a"})
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "existing").write_text("keep")
    with pytest.raises(FileExistsError):
        unpack_zip(archive, tmp_path / "work", settings)
    assert (tmp_path / "work" / "existing").read_text() == "keep"


def test_safe_member_path_normalises() -> None:
    assert safe_member_path("a/./b//c.txt").as_posix() == "a/b/c.txt"
    assert safe_member_path("dir\\file.txt").as_posix() == "dir/file.txt"
    with pytest.raises(HostileDocumentError):
        safe_member_path("x\x00.txt")


def test_a_member_the_file_system_cannot_hold_is_listed_and_the_rest_unpacked(
    tmp_path: Path, settings: Settings
) -> None:
    archive = make_zip(tmp_path / "sub.zip", {"good.txt": b"policy", "x" * 300 + ".txt": b"too long a name"})
    result = unpack_zip(archive, tmp_path / "work", settings)
    assert [p.name for p in result.files] == ["good.txt"]
    refused = [(r.code, r.message) for r in result.refused]
    assert refused == [("unreadable", "could not be unpacked (File name too long)")]


def test_a_zip_without_files_is_an_empty_submission(tmp_path: Path, settings: Settings) -> None:
    archive = make_zip(tmp_path / "sub.zip", {"folder/": b"", "__MACOSX/._x": b"x"})
    with pytest.raises(EmptyDocumentError, match="holds no files to screen"):
        unpack_zip(archive, tmp_path / "work", settings)


def test_an_office_document_renamed_zip_is_a_document_not_a_submission(tmp_path: Path) -> None:
    docx = make_zip(tmp_path / "policy.zip", {"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w/>"})
    assert not is_zip_submission(docx)
    assert is_zip_submission(make_zip(tmp_path / "sub.zip", {"policy.docx": docx.read_bytes()}))


def test_names_that_merely_contain_dots_are_ordinary_files(tmp_path: Path, settings: Settings) -> None:
    # "..txt" used to vanish without a word: its leading dot made it count as a hidden file.
    members = {"..txt": b"one", "policy..docx": b"two", "a..b/c.txt": b"three", "...": b"four", "ok.txt": b"five"}
    result = unpack_zip(make_zip(tmp_path / "dots.zip", members), tmp_path / "work", settings)
    assert snapshot(tmp_path / "work") == {
        "..txt": b"one",
        "policy..docx": b"two",
        "a..b/c.txt": b"three",
        "...": b"four",
        "ok.txt": b"five",
    }
    assert result.refused == [] and result.skipped == []


@pytest.mark.parametrize("name", ["../..txt", "a/../../policy..docx", "..\\policy.docx"])
def test_a_dot_dot_component_beside_dotted_names_still_refuses_the_archive(
    tmp_path: Path, settings: Settings, name: str
) -> None:
    archive = make_zip(tmp_path / "evil.zip", {"..txt": b"fine", name: b"payload"})
    with pytest.raises(HostileDocumentError, match="points outside"):
        unpack_zip(archive, tmp_path / "work", settings)
    assert not any((tmp_path / "work").iterdir())


def test_hidden_members_are_reported_and_system_files_ignored(tmp_path: Path, settings: Settings) -> None:
    members = {
        "policy.txt": b"policy",
        ".draft-policy.txt": b"hidden policy",
        "old/.git/config": b"[core]",
        "old/.git/HEAD": b"ref",
        "__MACOSX/._policy.txt": b"fork",
        "._policy.txt": b"fork",
        "sub/.DS_Store": b"finder",
        "Thumbs.db": b"thumbs",
        "~$policy.docx": b"lock",
    }
    result = unpack_zip(make_zip(tmp_path / "mac.zip", members), tmp_path / "work", settings)
    assert snapshot(tmp_path / "work") == {"policy.txt": b"policy"}
    assert [(r.name, r.code) for r in result.refused] == [(".draft-policy.txt", "hidden"), ("old/.git/", "hidden")]
    assert "hidden file" in result.refused[0].message and "rename it" in result.refused[0].message
    assert "hidden folder" in result.refused[1].message
    assert result.skipped == []


def test_a_zip_of_hidden_files_only_is_not_empty_but_reported(tmp_path: Path, settings: Settings) -> None:
    result = unpack_zip(make_zip(tmp_path / "h.zip", {".policy.txt": b"x"}), tmp_path / "work", settings)
    assert result.files == [] and [r.code for r in result.refused] == ["hidden"]


def test_duplicate_names_identical_copies_are_unpacked_once_different_ones_refused(
    tmp_path: Path, settings: Settings
) -> None:
    archive = tmp_path / "dups.zip"
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("same.txt", b"identical")
        zf.writestr("policy.txt", b"first version")
        zf.writestr("same.txt", b"identical")
        zf.writestr("policy.txt", b"second version")
        zf.writestr("other.txt", b"other")
    result = unpack_zip(archive, tmp_path / "work", settings)
    assert snapshot(tmp_path / "work") == {"same.txt": b"identical", "other.txt": b"other"}
    assert result.skipped == [
        RefusedMember("same.txt", "same_content", "the zip holds this file twice with the same content; screened once")
    ]
    assert [(r.name, r.code) for r in result.refused] == [("policy.txt", "duplicate")]
    assert result.refused[0].message == (
        "the zip holds 2 different files named 'policy.txt'; none was screened, as nobody can tell which is the "
        "policy: send the zip again with only the right one"
    )
