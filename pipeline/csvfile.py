"""Text of the CSV files people save from spreadsheet programs (labels, catalogue imports)."""

from __future__ import annotations

from pathlib import Path


def read_csv_text(path: Path) -> str:
    """The text of a CSV file: UTF-8, with or without the byte-order mark Excel writes for "CSV UTF-8", else the
    Windows-1252 code page Excel's plain "CSV" uses on Windows (a byte it leaves undefined becomes U+FFFD).

    Raises:
        OSError: the file cannot be read.
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")
