"""Label files (``document,indicator,expected,evidence``) and matching evidence spans to passages."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipeline.coverage import STATUSES
from pipeline.csvfile import read_csv_rows
from pipeline.errors import ConfigError

LABEL_HEADER = ("document", "indicator", "expected", "evidence")
_NON_WORD = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Label:
    """One gold row: what a careful reader decided for one document and indicator."""

    document: str
    indicator: str
    expected: str
    evidence: str


def read_labels(path: Path, indicator_ids: Iterable[str] = ()) -> list[Label]:
    """Read and validate a labels CSV; ``ConfigError`` names the first bad row and the line it starts on.

    ``indicator_ids`` (a catalogue's ids): an indicator written in another case (``acc-01``) is read as the
    catalogue spells it; ids the catalogue lacks are kept as written, for the caller to report. A second row for
    the same document and indicator is refused: which of the two is meant cannot be known.
    """
    canonical = {ind.casefold(): ind for ind in indicator_ids}
    try:
        rows = read_csv_rows(path)
    except OSError as exc:
        raise ConfigError(f"cannot read labels file {path}: {exc.strerror}") from exc
    header = rows[0][1] if rows else []
    missing = [c for c in LABEL_HEADER[:3] if c not in header]
    if missing:
        raise ConfigError(f"{path.name}: header must be {','.join(LABEL_HEADER)} (missing {missing})")
    column = {name: header.index(name) for name in LABEL_HEADER if name in header}
    needed = max(column[c] for c in LABEL_HEADER[:3]) + 1
    labels: list[Label] = []
    first_line: dict[tuple[str, str], int] = {}
    for line, cells in rows[1:]:
        if not cells:  # a blank line
            continue
        where = f"{path.name} line {line}"
        if len(cells) < needed:
            raise ConfigError(
                f"{where}: {len(cells)} cell(s) where the header has {len(header)}: "
                "each row needs a document, an indicator and an expected status"
            )
        if any(cell.strip() for cell in cells[len(header) :]):
            # unquoted commas in the evidence would otherwise cut it short without a word
            raise ConfigError(
                f"{where}: {len(cells)} cells where the header has {len(header)}: "
                "put the evidence in double quotes if it holds commas"
            )
        raw = cells[column["expected"]]
        expected = raw.strip().lower()
        if expected not in STATUSES:
            raise ConfigError(f"{where}: expected must be met, partial or missing, not {_shown(raw)}")
        indicator = cells[column["indicator"]].strip()
        indicator = canonical.get(indicator.casefold(), indicator)
        document = cells[column["document"]].strip()
        key = (document, indicator.casefold())
        if key in first_line:
            raise ConfigError(
                f"{where}: a second row for {document} {indicator} (the first is line {first_line[key]}); "
                "keep the one that is right"
            )
        first_line[key] = line
        has_evidence = "evidence" in column and column["evidence"] < len(cells)
        evidence = cells[column["evidence"]].strip() if has_evidence else ""
        labels.append(Label(document=document, indicator=indicator, expected=expected, evidence=evidence))
    return labels


def _shown(value: str, limit: int = 40) -> str:
    """A cell quoted for a message, cut short if long (a misplaced evidence span can be paragraphs)."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def normalise(text: str) -> str:
    """Lower-case words separated by single spaces: robust to line wrapping, bullets and punctuation."""
    return _NON_WORD.sub(" ", text.lower()).strip()


def overlaps(passage_text: str, span: str, *, min_share: float = 0.6) -> bool:
    """Whether a passage and a gold evidence span refer to the same words.

    True when one contains the other (after normalising), or when most of the span's words appear in the
    passage in order-free fashion (spans that cross a passage boundary still count for the passage that holds
    most of them).
    """
    p, s = normalise(passage_text), normalise(span)
    if not p or not s:
        return False
    if s in p or (len(p) >= 25 and p in s):
        return True
    span_words = s.split()
    passage_words = set(p.split())
    if len(span_words) < 4:
        return False
    share = sum(1 for w in span_words if w in passage_words) / len(span_words)
    return share >= min_share
