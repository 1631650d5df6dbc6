"""Writing a file so that readers see the old file or the new one, never half of either."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target``, on error it is removed.

    The temporary file lives in the same folder so ``os.replace`` is a rename on one file system (atomic on
    POSIX and Windows). Its name starts with a dot so a folder listing during the write does not show it as a
    report.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its files are private (0600) and reports must get the folder's usual permissions (umask).
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        with open(tmp, "xb"):
            pass
        yield tmp
        with open(tmp, "rb+") as handle:  # flush to disk before the rename makes the file visible
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(target: Path, text: str) -> Path:
    """Write UTF-8 text atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target
