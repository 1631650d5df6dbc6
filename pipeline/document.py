"""Plain dataclasses for the first two stages: extracted documents and their passages.

Data flows one way: a file becomes an :class:`ExtractedDocument` (stage 1, ``pipeline.extract``),
which becomes a list of :class:`Passage` (stage 2, ``pipeline.segment``). Later stages only read these.

Offsets are always character offsets into ``ExtractedDocument.text``; the invariant
``document.text[p.start:p.end] == p.text`` holds for every passage and block.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

BlockKind = Literal["heading", "paragraph", "list_item", "table_row"]
SourceFormat = Literal["pdf", "docx", "text", "markdown"]


@dataclass(frozen=True)
class Box:
    """A rectangle on a PDF page: points, origin top-left, in the *unrotated* page (the page's ``/Rotate`` is
    not applied, unlike pdfplumber's boxes on a turned page), which is where annotations are drawn.

    ``top`` and ``bottom`` are measured from the top of the page (PDF user space starts at the bottom:
    convert with ``page_height - top`` when writing annotations).
    """

    page: int  # 1-based
    x0: float
    top: float
    x1: float
    bottom: float

    def as_list(self) -> list[float | int]:
        """The ``[page, x0, top, x1, bottom]`` form used in JSON output."""
        return [self.page, round(self.x0, 2), round(self.top, 2), round(self.x1, 2), round(self.bottom, 2)]


@dataclass(frozen=True)
class TextSpan:
    """Where a run of document text (usually one word) sits on a PDF page."""

    start: int
    end: int
    box: Box


@dataclass(frozen=True)
class Block:
    """A structural unit found by extraction: a heading, a paragraph, a list item or a table row.

    ``level`` is the heading level (1 = top) for headings and the nesting depth for list items.
    ``label`` is a list item's own number or bullet ("3.1", "(a)", "•"), kept inside the text too.
    """

    kind: BlockKind
    start: int
    end: int
    page: int | None = None
    level: int = 0
    label: str = ""


@dataclass
class DocumentMetadata:
    """What a reader learns about a document before reading its content."""

    title: str = ""
    policy_type: str = "other"  # confidentiality | safeguarding | complaints | equality | other
    policy_type_confidence: float = 0.0
    review_date: str | None = None  # ISO date of the next review (or last approval if that is all there is)
    review_date_kind: str | None = None  # "review" | "approved" | "issued"
    out_of_date: bool = False
    version: str | None = None
    language: str = "en"
    headers: list[str] = field(default_factory=list)  # running header/footer lines removed from the text
    word_count: int = 0


@dataclass
class ExtractedDocument:
    """The full text of one file, with its structure and (for PDFs) where each word sits on the page."""

    doc_id: str  # stable: first 16 hex chars of the file's sha256
    name: str  # file name as submitted
    path: str
    sha256: str
    source_format: SourceFormat
    text: str
    blocks: list[Block]
    pages: int
    page_starts: list[int] = field(default_factory=list)  # offset where each page's text starts (PDF)
    spans: list[TextSpan] = field(default_factory=list)  # word boxes, sorted by start (PDF only)
    metadata: DocumentMetadata = field(default_factory=DocumentMetadata)
    warnings: list[str] = field(default_factory=list)

    def page_at(self, offset: int) -> int | None:
        """The 1-based page holding ``offset``, or None for formats without pages."""
        if not self.page_starts:
            return None
        page = 1
        for i, start in enumerate(self.page_starts):
            if start <= offset:
                page = i + 1
            else:
                break
        return page


@dataclass
class Passage:
    """The unit later stages score and highlight: a paragraph, a list item with its lead-in, or a window."""

    doc_id: str
    index: int
    text: str
    start: int
    end: int
    section: list[str]  # heading path, outermost first
    pages: list[int]  # 1-based pages the passage touches; empty for formats without pages
    boxes: list[Box] = field(default_factory=list)
    kind: str = "paragraph"  # paragraph | list_item | table_row | window | heading
    # Text needed to read the passage that is not part of it (a list item's lead-in, a table's header row);
    # kept apart so ``text`` stays an exact slice of the document. Empty when ``text`` is self-contained.
    context: str = ""

    @property
    def page(self) -> int | None:
        """The first page the passage touches."""
        return self.pages[0] if self.pages else None

    @property
    def section_title(self) -> str:
        """The innermost heading, or an empty string."""
        return self.section[-1] if self.section else ""

    def to_json(self) -> dict[str, Any]:
        """The passage as the JSON shape of ``qpm-screen extract --json``."""
        return {
            "text": self.text,
            "page": self.page,
            "pages": self.pages,
            "section": " > ".join(self.section),
            "start": self.start,
            "end": self.end,
            "kind": self.kind,
            "context": self.context,
            "boxes": [b.as_list() for b in self.boxes],
        }


def metadata_dict(meta: DocumentMetadata) -> dict[str, Any]:
    """Metadata as a JSON-ready dict."""
    return asdict(meta)
