"""Text of the CSV files people save from spreadsheet programs (labels, catalogue imports)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from pipeline.errors import ConfigError

# The csv module refuses cells over 128 KiB; a label's evidence span can quote a long section. Generous, but
# bounded, so a file that is not really CSV (one giant cell) is still refused rather than read into one field.
FIELD_SIZE_LIMIT = 8 * 1024 * 1024


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


def read_csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """The rows of a CSV file (see :func:`read_csv_text`), each with the line it starts on (a quoted cell can span
    lines); a blank line is an empty row.

    Parsing is strict: a quote that is never closed would otherwise swallow the rest of the file into one cell.

    Raises:
        OSError: the file cannot be read.
        ConfigError: the text is not valid CSV; the message names the file and the line the bad row starts on.
    """
    text = read_csv_text(path)
    # The limit is process-wide in the csv module: only ever raised, never lowered back, so two readers in
    # different threads cannot undo each other's setting.
    if csv.field_size_limit() < FIELD_SIZE_LIMIT:
        csv.field_size_limit(FIELD_SIZE_LIMIT)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for cells in reader:
            rows.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise ConfigError(f"{path.name} line {start}: {_explain(exc)}") from exc
    return rows


def _explain(exc: csv.Error) -> str:
    message = str(exc)
    if "unexpected end of data" in message:
        return 'a quoted cell opened in the row starting here is never closed (a missing ")'
    if "field larger than field limit" in message:
        return f"a cell is longer than {FIELD_SIZE_LIMIT:,} characters"
    if "expected after" in message:
        return 'text follows a closing quote: a quote inside a quoted cell must be doubled ("")'
    return f"not valid CSV ({message})"
