"""Convert old word-processor formats (.doc, .odt, .rtf) to DOCX with LibreOffice, when it is installed.

LibreOffice runs headless in a private temporary folder with its own throw-away profile, so a conversion never
touches the user's LibreOffice settings, never collides with a running LibreOffice, and leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from pipeline.config import Settings
from pipeline.errors import CorruptDocumentError, UnsupportedFormatError

_SOFFICE_NAMES = ("soffice", "libreoffice")
# Where installers put LibreOffice when they do not add it to PATH (Debian/Ubuntu, tarball installs, macOS,
# Windows).
_SOFFICE_PLACES = (
    "/usr/lib/libreoffice/program/soffice",
    "/usr/local/lib/libreoffice/program/soffice",
    "/opt/libreoffice/program/soffice",
    "/Applications/LibreOffice.app/Contents/MacOS/soffice",
    r"C:\Program Files\LibreOffice\program\soffice.exe",
)


def find_soffice() -> str | None:
    """The path of LibreOffice's command-line program, or None when it is not installed."""
    for candidate in _SOFFICE_NAMES:
        found = shutil.which(candidate)
        if found:
            return found
    for place in _SOFFICE_PLACES:
        if os.path.isfile(place) and os.access(place, os.X_OK):
            return place
    return None


def convert_legacy(data: bytes, suffix: str, settings: Settings) -> bytes:
    """Convert a .doc, .odt or .rtf file (given as bytes) to DOCX bytes.

    ``suffix`` is the format's extension with its dot; LibreOffice picks its import filter from it.

    Raises:
        UnsupportedFormatError: LibreOffice is not installed (the message says which format to send instead).
        CorruptDocumentError: LibreOffice failed, produced nothing, or took longer than
            ``settings.convert_timeout_s``.
    """
    suffix = suffix.lower() if suffix.startswith(".") else f".{suffix.lower()}"
    soffice = find_soffice()
    if soffice is None:
        raise UnsupportedFormatError(f"unsupported format ({suffix}): please save as PDF or DOCX and upload again")

    with tempfile.TemporaryDirectory(prefix="qpm-convert-") as tmp:
        folder = Path(tmp)
        source = folder / f"input{suffix}"
        source.write_bytes(data)
        out_dir = folder / "out"
        out_dir.mkdir()
        profile = folder / "profile"
        command = [
            soffice,
            f"-env:UserInstallation={profile.as_uri()}",
            "--headless",
            "--norestore",
            "--nolockcheck",
            "--convert-to",
            "docx",
            "--outdir",
            str(out_dir),
            str(source),
        ]
        _run_with_timeout(command, settings.convert_timeout_s, cwd=folder, suffix=suffix)
        produced = out_dir / "input.docx"
        if not produced.is_file() or produced.stat().st_size == 0:
            raise CorruptDocumentError(
                f"could not be read: LibreOffice could not convert this {suffix} file; save it as PDF or DOCX"
            )
        return produced.read_bytes()


def _run_with_timeout(command: list[str], timeout_s: float, *, cwd: Path, suffix: str) -> None:
    # soffice forks a worker (soffice.bin); running it in its own session lets a timeout stop the whole group
    # instead of leaving an orphan converting a hostile file forever.
    env = {**os.environ, "HOME": str(cwd)}  # some builds write to $HOME even with a private profile
    with subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as process:
        try:
            _, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise CorruptDocumentError(
                f"could not be read: converting this {suffix} file took longer than {timeout_s:g} s; "
                "save it as PDF or DOCX"
            ) from None
    if process.returncode != 0:
        reason = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise CorruptDocumentError(
            f"could not be read: LibreOffice failed to convert this {suffix} file ({reason[0][:120]}); "
            "save it as PDF or DOCX"
        )


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
    process.wait()
