"""Label files (``document,indicator,expected,evidence``) and matching evidence spans to passages."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.coverage import STATUSES
from pipeline.csvfile import read_csv_text
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


def read_labels(path: Path) -> list[Label]:
    """Read and validate a labels CSV; ``ConfigError`` names the first bad row."""
    try:
        with io.StringIO(read_csv_text(path), newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in LABEL_HEADER[:3] if c not in (reader.fieldnames or [])]
            if missing:
                raise ConfigError(f"{path.name}: header must be {','.join(LABEL_HEADER)} (missing {missing})")
            rows = []
            for n, row in enumerate(reader, start=2):
                expected = (row["expected"] or "").strip().lower()
                if expected not in STATUSES:
                    raise ConfigError(f"{path.name} line {n}: expected must be met, partial or missing")
                rows.append(
                    Label(
                        document=row["document"].strip(),
                        indicator=row["indicator"].strip(),
                        expected=expected,
                        evidence=(row.get("evidence") or "").strip(),
                    )
                )
    except OSError as exc:
        raise ConfigError(f"cannot read labels file {path}: {exc.strerror}") from exc
    return rows


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
