"""Stage 4 output: per indicator, a status (met / partial / missing), a score and the evidence behind it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["met", "partial", "missing"]
STATUSES: tuple[Status, ...] = ("met", "partial", "missing")


@dataclass
class Evidence:
    """A passage that supports an indicator, located so an assessor can find and highlight it."""

    document: str  # file name
    doc_id: str
    passage_index: int
    text: str
    score: float  # probability that this passage evidences the indicator
    section: list[str]
    pages: list[int]
    start: int
    end: int
    boxes: list[list[float | int]]  # [page, x0, top, x1, bottom]
    element: str | None  # id of the essential element this passage best supports

    def reference(self) -> str:
        """Human reference such as ``safeguarding.pdf p.4, s.3.2 Reporting``."""
        parts = [self.document]
        if self.pages:
            parts.append(f"p.{self.pages[0]}")
        if self.section:
            parts.append(f"s.{self.section[-1][:60]}")
        return " ".join(parts[:1]) + (" " + ", ".join(parts[1:]) if len(parts) > 1 else "")

    def to_json(self) -> dict[str, Any]:
        """JSON shape used in report.json."""
        return {
            "document": self.document,
            "doc_id": self.doc_id,
            "passage": self.passage_index,
            "text": self.text,
            "score": round(self.score, 4),
            "section": self.section,
            "pages": self.pages,
            "start": self.start,
            "end": self.end,
            "boxes": self.boxes,
            "element": self.element,
        }


@dataclass
class IndicatorResult:
    """The decision for one indicator over one document or a whole submission."""

    indicator_id: str
    status: Status
    score: float  # in [0, 1]: P(met) + 0.5 * P(partial)
    probabilities: dict[str, float]  # met / partial / missing
    evidence: list[Evidence] = field(default_factory=list)
    elements: dict[str, bool] = field(default_factory=dict)  # element id -> evidenced
    documents: list[str] = field(default_factory=list)  # documents that carry evidence

    def to_json(self) -> dict[str, Any]:
        """JSON shape used in report.json (catalogue fields are added by the report writer)."""
        return {
            "id": self.indicator_id,
            "status": self.status,
            "score": round(self.score, 4),
            "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
            "elements": self.elements,
            "documents": self.documents,
            "evidence": [e.to_json() for e in self.evidence],
        }


@dataclass
class Coverage:
    """Results for every indicator, for one document or for a submission (all its documents together)."""

    scope: str  # a document name, or "submission"
    results: list[IndicatorResult]

    def by_id(self) -> dict[str, IndicatorResult]:
        """Results keyed by indicator id."""
        return {r.indicator_id: r for r in self.results}

    def counts(self) -> dict[str, int]:
        """How many indicators are met, partial and missing."""
        out: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for r in self.results:
            out[r.status] += 1
        return out
